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


# ------------------------------------------------------------------ SIGTERM (issue 23)
# Slurm sends SIGTERM at a job's time limit and on scancel. It is taken as SIGINT is: the
# run stops at the next chunk boundary, removes its temporary file and exits with 130
# (the CLI's "interrupted" code for both signals).


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_cleanly_with_exit_130(tmp_path, sig):
    out = tmp_path / "r.h5"
    proc = _start(tmp_path, out)
    _wait_for_partial(out, proc)
    proc.send_signal(sig)
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
