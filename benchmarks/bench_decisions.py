"""Decision support's costs on the bundled example portfolio and the bundled `montecarlo`
preset (docs/decisions.md): one function per command, each run as a user runs it, the
command in a fresh process, in seconds, the median of --repeats runs.

A standalone script (never collected by pytest); run it from the repository root, on an
idle machine (the figures are wall times).

    python benchmarks/bench_decisions.py optimize
    python benchmarks/bench_decisions.py rank
    python benchmarks/bench_decisions.py optimize --repeats 5 --paths 10000

optimize: one varied parameter (reserved_share in every cluster) and one constraint
(cvar_95 <= 40 M), twice: cold (compiled programs not kept, STRESSTEST_COMPILE_CACHE=off:
the compile counted, as on a first run) and warm (the command line's cache of compiled
programs filled by a run before). Each line also gives the seconds the run reports (from
loading the inputs to the file written, without starting Python and importing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRESSTEST = [sys.executable, "-m", "stresstest.cli"]


def timed(argv: list[str], env: dict) -> tuple[float, dict]:
    """Wall seconds of one command, and its --json answer."""
    t0 = time.perf_counter()
    done = subprocess.run(STRESSTEST + argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return wall, json.loads(done.stdout)


def cold_and_warm(name: str, argv: list[str], repeats: int, folder: Path, describe) -> list[str]:
    """One line per condition: cold (compiled programs not kept) and warm (the cache filled
    by a run before); describe(answer) says what the last run's --json answered."""
    lines = []
    cache = folder / "compile-cache"
    for label, env in (("cold", {**os.environ, "STRESSTEST_COMPILE_CACHE": "off"}),
                       ("warm", {**os.environ, "STRESSTEST_COMPILE_CACHE": str(cache)})):
        if label == "warm":
            timed(argv, env)  # fills the cache
        runs = [timed(argv, env) for _ in range(repeats)]
        lines.append(f"{name} {label}: {statistics.median(w for w, _ in runs):.1f} s wall, "
                     f"{statistics.median(a['seconds'] for _, a in runs):.1f} s in the run "
                     f"({describe(runs[-1][1])}; runs: {', '.join(f'{w:.1f}' for w, _ in runs)} s)")
    return lines


def bench_optimize(repeats: int, paths: int | None, folder: Path) -> list[str]:
    argv = ["optimize", "--vary", "reserved_share=0..1", "--constraint", "cvar_95<=40e6",
            "-o", str(folder / "optimize.h5"), "--overwrite", "--json"]
    if paths:
        argv += ["--paths", str(paths)]
    return cold_and_warm("optimize", argv, repeats, folder,
                         lambda a: f"{a['paths']:,} paths, {a['message']}")


def bench_rank(repeats: int, paths: int | None, folder: Path) -> list[str]:
    """rank with its default budgets (Shapley effects, Sobol indices, DGSM); --paths does
    not apply: rank draws its own samples."""
    argv = ["rank", "-o", str(folder / "rank.h5"), "--overwrite", "--json"]
    return cold_and_warm("rank", argv, repeats, folder,
                         lambda a: f"{a['evaluations']:,} evaluations, variance check "
                                   f"{100 * a['variance_ratio']:.1f} %")


COMMANDS = {"optimize": bench_optimize, "rank": bench_rank}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commands", nargs="+", choices=sorted(COMMANDS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paths", type=int, default=None, help="in-sample paths [default: the command's]")
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; median of {args.repeats} runs")
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as tmp:
        for name in args.commands:
            for line in COMMANDS[name](args.repeats, args.paths, Path(tmp)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
