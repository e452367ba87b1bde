"""Faults: SIGKILL and SIGINT mid-run, a full disk, a read-only folder, an existing output.

The runs are real processes (`python -m stresstest.cli run`) on a grid that takes a few
seconds on the numpy backend, signalled once their temporary file appears. The full and
read-only file systems are small tmpfs mounts (root, as in CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stresstest.cli import main

GRID = """scenario:
  kind: grid
  axes:
    - {shock: utilization, linspace: [-0.4, 0.1, 40]}
    - {shock: price, linspace: [0.3, 1.4, 40]}
    - {shock: energy, linspace: [0.5, 3.0, 40]}
"""


def _start(tmp_path, out: Path) -> subprocess.Popen:
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    return subprocess.Popen([sys.executable, "-m", "stresstest.cli", "run", "-s", str(sc), "-o", str(out),
                             "--backend", "numpy", "--chunk-size", "256", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_partial(out: Path, proc, timeout=60) -> Path:
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = list(out.parent.glob(f".{out.name}.*.partial"))
        if found:
            time.sleep(0.5)  # well inside the run
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never started writing")


def test_sigkill_leaves_no_file_at_the_output_name_and_a_rerun_completes(tmp_path):
    out = tmp_path / "r.h5"
    proc = _start(tmp_path, out)
    partial = _wait_for_partial(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not out.exists()
    assert partial.exists()  # nobody could clean up after SIGKILL ...
    r = CliRunner().invoke(main, ["run", "-s", str(tmp_path / "grid.yaml"), "-o", str(out),
                                  "--backend", "numpy", "-q"])
    assert r.exit_code == 0, r.output
    assert out.exists() and not partial.exists()  # ... the rerun removes the dead run's file
    assert list(tmp_path.glob(".*.partial")) == []


def test_sigint_stops_cleanly_with_exit_130(tmp_path):
    out = tmp_path / "r.h5"
    proc = _start(tmp_path, out)
    _wait_for_partial(out, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: no result file written" in stderr and "Traceback" not in stderr
    assert not out.exists() and list(tmp_path.glob(".*.partial")) == []


@pytest.fixture
def tmpfs(tmp_path):
    """A mount factory: tmpfs of a given size, optionally read-only; unmounted after."""
    mounts = []

    def make(size: str, readonly: bool = False) -> Path:
        d = tmp_path / f"mnt{len(mounts)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}); CI runs as root and can")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_full_disk_gives_a_clear_error_and_no_partial_file(tmp_path, tmpfs):
    d = tmpfs("400k")
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    # in a process of its own, as a user runs it: after a failed write HDF5's library state
    # is not to be trusted, and the command exits right after reporting
    p = subprocess.run([sys.executable, "-m", "stresstest.cli", "run", "-s", str(sc), "-o", str(d / "r.h5"),
                        "--backend", "numpy", "-q", "--compression", "none"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "cannot write (No space left on device)" in p.stderr and "Traceback" not in p.stderr
    assert list(d.iterdir()) == []


def test_read_only_folder_is_refused_before_any_work(tmp_path, tmpfs):
    d = tmpfs("1m", readonly=True)
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(d / "r.h5"), "--backend", "numpy", "-q"])
    assert r.exit_code == 2, r.output
    assert f"error: {d / 'r.h5'}: cannot write in {d} (Read-only file system)" in r.output
    assert list(d.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "r.h5"
    out.write_bytes(b"precious")
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(out), "--backend", "numpy", "-q"])
    assert r.exit_code == 2 and "exists; give --overwrite to replace it" in r.output
    assert out.read_bytes() == b"precious"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(out), "--backend", "numpy", "-q", "--overwrite"])
    assert r.exit_code == 0 and out.read_bytes()[:4] == b"\x89HDF"
    assert os.listdir(tmp_path) == ["r.h5"]


# ------------------------------------------------------------------ SIGTERM (issue 23)
# Slurm sends SIGTERM at a job's time limit and on scancel. It is taken as SIGINT is: the
# run stops at the next chunk boundary, removes its temporary file and exits with 130
# (the CLI's "interrupted" code for both signals).


def test_sigterm_stops_cleanly_like_sigint(tmp_path):
    out = tmp_path / "r.h5"
    proc = _start(tmp_path, out)
    _wait_for_partial(out, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "interrupted: no result file written" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert list(tmp_path.glob(".*.partial")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]


def test_sigterm_stops_a_shard_run_cleanly(tmp_path):
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    shards = tmp_path / "shards"
    proc = subprocess.Popen([sys.executable, "-m", "stresstest.cli", "run", "-s", str(sc), "-o", str(shards),
                             "--shard", "0/1", "--backend", "numpy", "--chunk-size", "256", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (shards.is_dir() and list(shards.glob(".*.partial"))):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 60, "the shard run never started writing"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the run
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "interrupted: the shard file was not written" in stderr and "Traceback" not in stderr
    assert list(shards.iterdir()) == []
