"""Against a real single-node Slurm (tests/slurm/slurm_up.sh): submit, merge, cancel, rerun.

Needs root and Debian's slurm-wlm and munge. Skipped with the reason where they are
absent, unless STRESSTEST_REQUIRE_SLURM=1 (CI sets it: there these tests must run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.shards import shard_name

HERE = Path(__file__).parent / "slurm"
SMALL_MERGE = ["--merge-mem", "500M"]  # the default (8G) may exceed a small test machine
GRID = """scenario:
  kind: grid
  axes:
    - {shock: utilization, values: [-0.3, -0.1, 0.0, 0.1]}
    - {shock: price, linspace: [0.5, 1.3, 5]}
"""


def _why_not() -> str | None:
    for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test Slurm runs its daemons as root"
    return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = _why_not()
    if why:
        if os.environ.get("STRESSTEST_REQUIRE_SLURM") == "1":
            pytest.fail(f"Slurm required here but unavailable: {why}")
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", str(HERE / "slurm_up.sh"), str(d)], capture_output=True, text=True, timeout=120)
    if up.returncode != 0:
        subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(d)], timeout=60)
        pytest.fail(f"slurm did not start:\n{up.stdout}\n{up.stderr}")
    env = dict(os.environ, SLURM_CONF=str(d / "slurm.conf"))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, timeout=30)
        subprocess.run(["bash", str(HERE / "slurm_down.sh"), str(d)], timeout=120)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _wait(job_ids, env, timeout=240):
    """Until none of the jobs is pending or running (squeue; sacct needs slurmdbd)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        q = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"], capture_output=True,
                           text=True, env=env)
        if not q.stdout.strip():
            return
        time.sleep(1)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout} s")


def _state(job, env) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
    for part in out.split():
        if part.startswith("JobState="):
            return part.split("=", 1)[1]
    return "GONE"


def _ids(output: str) -> list[str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("watch: squeue -j "))
    return line.split("squeue -j ")[1].split()[0].split(",")


def _data(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.kind == "f":
            assert np.array_equal(a[k], b[k], equal_nan=True), k
        else:
            assert np.array_equal(a[k], b[k]), k


def test_submit_four_shards_then_merge_equals_a_single_run(slurm, tmp_path):
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    out = tmp_path / "out"
    merged = tmp_path / "merged.h5"
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "4", "--output-dir", str(out),
                                  "-o", str(merged), "--backend", "numpy", "--array-limit", "2", *SMALL_MERGE])
    assert r.exit_code == 0, r.output
    ids = _ids(r.output)
    assert len(ids) == 2  # the array and the merge
    _wait(ids, slurm)
    logs = "\n".join(p.read_text() for p in (out / "logs").iterdir())
    assert merged.exists(), logs
    assert len(list((out / "logs").glob("shard-*.out"))) == 4 and "merged" in logs
    single = tmp_path / "single.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(single), "--backend", "numpy", "-q"])
    assert r.exit_code == 0
    _same(_data(merged), _data(single))


def test_cancelled_task_is_named_by_merge_and_rerun_completes_the_set(slurm, tmp_path):
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    out = tmp_path / "out"
    merged = tmp_path / "merged.h5"
    # submitted held (sbatch reads SBATCH_HOLD), so task 2 is cancelled before it can run
    os.environ["SBATCH_HOLD"] = "1"
    try:
        r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "4", "--output-dir", str(out),
                                      "-o", str(merged), "--backend", "numpy", *SMALL_MERGE])
    finally:
        os.environ.pop("SBATCH_HOLD")
    assert r.exit_code == 0, r.output
    array, merge_job = _ids(r.output)
    # held: every task pending (squeue), the merge waiting too
    st = _status(out)
    assert st["indices"]["pending"] == [0, 1, 2, 3] and st["jobs"]["arrays"] == [array], st
    assert "PENDING" in st["details"]["2"] and st["jobs"]["merge"] == merge_job
    assert st["jobs"]["merge_state"].startswith("PENDING")
    subprocess.run(["scancel", f"{array}_2"], env=slurm, check=True)
    subprocess.run(["scontrol", "release", array], env=slurm, check=True)
    subprocess.run(["scontrol", "release", merge_job], env=slurm, check=True)
    _wait([array], slurm)
    _wait([merge_job], slurm, timeout=30)  # --kill-on-invalid-dep: the merge is cancelled, not left pending
    assert not merged.exists()
    assert _state(merge_job, slurm) in ("CANCELLED", "GONE")
    # status: three done, the cancelled one missing (cancelled while pending, Slurm keeps no
    # record of it; sacct has no slurmdbd here)
    st = _status(out)
    assert st["indices"]["done"] == [0, 1, 3] and st["indices"]["missing"] == [2], st
    assert st["slurm"]["squeue"] == "ok" and st["slurm"]["sacct"].startswith("unavailable")
    assert st["rerun"].endswith("--only 2")
    table = CliRunner().invoke(main, ["status", str(out)]).output
    assert "  done           3  0-1,3" in table and "sacct unavailable" in table
    r = CliRunner().invoke(main, ["merge", str(out), "-o", str(merged)])
    assert r.exit_code == 2
    assert "shard 2 of 4 is missing" in r.output
    rerun = next(ln for ln in r.output.splitlines() if ln.startswith("rerun only these: "))
    assert "--only 2" in rerun and "--shards 4" in rerun and str(sc.resolve()) in rerun
    assert f"-o {merged}" in rerun
    argv = rerun.split("rerun only these: stresstest ")[1].split()
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 0, r.output
    _wait(_ids(r.output), slurm)
    assert (out / shard_name(2, 4)).exists()
    assert merged.exists(), "\n".join(p.read_text() for p in (out / "logs").iterdir())
    st = _status(out)
    assert st["counts"]["done"] == 4 and st["rerun"] is None and st["merged_file"]["exists"]


def _status(out) -> dict:
    r = CliRunner().invoke(main, ["status", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_status_names_failed_tasks_from_slurm(slurm, tmp_path):
    """Tasks that fail (here: the scenario file broken after submission) are failed in
    status, with Slurm's state; sacct cannot answer without slurmdbd, scontrol does."""
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    out = tmp_path / "out"
    os.environ["SBATCH_HOLD"] = "1"
    try:
        r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "2", "--output-dir", str(out),
                                      "-o", str(tmp_path / "m.h5"), "--backend", "numpy", *SMALL_MERGE])
    finally:
        os.environ.pop("SBATCH_HOLD")
    assert r.exit_code == 0, r.output
    array, merge_job = _ids(r.output)
    sc.write_text("scenario: [broken")
    subprocess.run(["scontrol", "release", array], env=slurm, check=True)
    subprocess.run(["scontrol", "release", merge_job], env=slurm, check=True)
    _wait([array, merge_job], slurm)
    st = _status(out)
    assert st["indices"]["failed"] == [0, 1], st
    assert st["details"]["0"].startswith(f"Slurm job {array}_0: FAILED"), st["details"]
    assert st["slurm"]["scontrol"] == "ok" and st["slurm"]["sacct"].startswith("unavailable")
    table = CliRunner().invoke(main, ["status", str(out)]).output
    assert "  failed         2  0-1" in table and f"  1: Slurm job {array}_1: FAILED" in table
    assert "sacct unavailable" in table and st["rerun"].endswith("--only 0-1")


def test_hostile_values_reach_slurm_intact_and_run_nothing(slurm, tmp_path):
    """Spaces, quotes, $( ), backticks, #, % and non-ASCII in the folders, the file names
    and a pass-through value. Before: sbatch refused the script ("Invalid directive found
    in batch script"), and a newline in --partition wrote a shell line into both scripts."""
    d = tmp_path / "my dir $(touch INJECTED) `touch INJECTED2` 'q' \"dq\" é #x %j"
    d.mkdir()
    sc = d / "grid 'x' $(touch INJECTED3).yaml"
    sc.write_text(GRID)
    out = d / "out"
    merged = d / "merged é.h5"
    flag = tmp_path / "INJECTED4"
    comment = f"c $(touch {flag}) `touch {flag}` 'q' \"dq\" é # %j"
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "2", "--output-dir", str(out), "-o",
                                  str(merged), "--backend", "numpy", "--sbatch-option", f"--comment={comment}",
                                  "--merge-partition", "debug", *SMALL_MERGE])
    assert r.exit_code == 0, r.output
    ids = _ids(r.output)
    job = subprocess.run(["scontrol", "show", "job", ids[0]], capture_output=True, text=True, env=slurm).stdout
    assert f"Comment={comment}" in job
    _wait(ids, slurm)
    logs = out / "logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        [f"shard-{ids[0]}_0.out", f"shard-{ids[0]}_1.out", f"merge-{ids[1]}.out"]), list(logs.iterdir())
    assert (out / shard_name(0, 2)).exists() and (out / shard_name(1, 2)).exists()
    assert merged.exists(), "\n".join(p.read_text() for p in logs.iterdir())
    for where in (tmp_path, d, out, Path.cwd(), Path("/tmp")):
        assert not list(where.glob("INJECTED*")), where
    # a newline in a value is refused before anything is written or submitted
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "2", "--output-dir", str(tmp_path / "o2"),
                                  "--partition", "debug\necho INJECTED", *SMALL_MERGE])
    assert r.exit_code == 2 and "--partition" in r.output and not (tmp_path / "o2").exists()


def test_sbatch_options_and_merge_limits_reach_slurm(slurm, tmp_path):
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    os.environ["SBATCH_HOLD"] = "1"
    try:
        r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "2", "--output-dir", str(tmp_path / "o"),
                                      "--time", "2:00:00", "--sbatch-option=--comment=shards",
                                      "--sbatch-option=--nice=5", "--merge-time", "7", "--merge-mem", "300M",
                                      "--merge-sbatch-option=--comment=the merge"])
    finally:
        os.environ.pop("SBATCH_HOLD")
    assert r.exit_code == 0, r.output
    array, merge_job = _ids(r.output)
    try:
        a = subprocess.run(["scontrol", "show", "job", f"{array}_0"], capture_output=True, text=True,
                           env=slurm).stdout
        m = subprocess.run(["scontrol", "show", "job", merge_job], capture_output=True, text=True,
                           env=slurm).stdout
        assert "Comment=shards" in a and "Nice=5" in a and "TimeLimit=02:00:00" in a
        assert "Comment=the merge" in m and "TimeLimit=00:07:00" in m and "MinMemoryNode=300M" in m
        assert f"Dependency=afterok:{array}" in m
    finally:
        subprocess.run(["scancel", array, merge_job], env=slurm)
