"""The first answer: the wall time from `stresstest run --overwrite` to its table, for the
bundled example on its default grid, cold (an empty compile cache) and warm (the cache
filled by an earlier run), the median of several runs.

A standalone script (never collected by pytest). Each run is a fresh process, as a user
types it; its CPU time (user + system, children's rusage) is reported beside the wall
time, because on a shared machine the wall time moves with the other processes and the
CPU time much less. Checkouts named on the command line (clones of other commits: their
`stresstest`, `kernels` and `scenarios` folders, laid out as installed, first on the
path) run in alternation, so that they see the same phases of the machine; with none
named, the installed package runs.

    python benchmarks/bench_first_answer.py --runs 5
    git clone -q . /tmp/before && git -C /tmp/before checkout -q <commit>
    git clone -q . /tmp/after
    python benchmarks/bench_first_answer.py --runs 5 /tmp/before /tmp/after
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def installed_layout(checkout: Path, into: Path) -> Path:
    """A folder holding the checkout's package as pip installs it (stresstest/, with
    kernels/ and scenarios/ inside), to put first on PYTHONPATH."""
    pkg = into / "stresstest"
    shutil.copytree(checkout / "stresstest", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(checkout / "kernels", pkg / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(checkout / "scenarios", pkg / "scenarios", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def one_run(workdir: Path, cache: Path, pythonpath: str | None) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr) of one `stresstest run --overwrite` in workdir."""
    env = dict(os.environ, STRESSTEST_COMPILE_CACHE=str(cache))
    if pythonpath:  # that checkout first, before whatever the environment puts on the path
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    exe = [sys.executable, "-c", "import sys; from stresstest.cli import main; sys.argv[0] = 'stresstest'; main()",
           "run", "--overwrite"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(exe, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"stresstest run failed ({res.returncode}):\n{res.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.stderr


def compile_note(stderr: str) -> str:
    """The run's own note on its compile ("compiled in 5.2 s", "read the compiled ... in 0.3 s")."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("compiled in", "read the compiled"))]
    return lines[-1] if lines else "-"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkouts", type=Path, nargs="*", help="checkouts of commits, run alternately")
    ap.add_argument("--runs", type=int, default=5, help="cold and warm runs of each candidate")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stresstest-first-answer-") as tmp:
        tmp = Path(tmp)
        candidates = {str(c): str(installed_layout(c.resolve(), tmp / f"site{i}")) for i, c in enumerate(args.checkouts)}
        if not candidates:
            candidates = {"the installed package": None}
        rows = {name: {"cold": [], "warm": []} for name in candidates}
        notes = {name: {"cold": "", "warm": ""} for name in candidates}
        for k in range(args.runs):
            for name, path in candidates.items():
                work = tmp / f"run{k}-{list(candidates).index(name)}"
                work.mkdir()
                cache = work / "cache"
                for kind in ("cold", "warm"):  # the cold run fills the cache the warm run reads
                    wall, cpu, err = one_run(work, cache, path)
                    rows[name][kind].append((wall, cpu))
                    notes[name][kind] = compile_note(err)
                print(f"run {k + 1}: {name}: " + ", ".join(
                    f"{kind} {rows[name][kind][-1][0]:.2f} s (CPU {rows[name][kind][-1][1]:.2f} s)"
                    for kind in ("cold", "warm")), flush=True)
        print(f"\n# first answer: `stresstest run --overwrite` (example, default grid), {args.runs} runs each, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
        print("| checkout | kind | median wall s | min wall s | median CPU s | its compile note (last run) |")
        print("|---|---|---|---|---|---|")
        for name in candidates:
            for kind in ("cold", "warm"):
                walls = [w for w, _ in rows[name][kind]]
                cpus = [c for _, c in rows[name][kind]]
                print(f"| {name} | {kind} | {statistics.median(walls):.2f} | {min(walls):.2f} | "
                      f"{statistics.median(cpus):.2f} | {notes[name][kind]} |")


if __name__ == "__main__":
    main()
