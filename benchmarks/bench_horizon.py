"""Compile time and peak memory against the horizon (JAX on the CPU).

A standalone script (never collected by pytest). For each horizon, a fresh process
loads the bundled example portfolio with `horizon_months` replaced, prepares the
default grid (plain and with --sensitivities) and compiles its chunk function; it
reports the compile time (lower + compile), one chunk's run time, the throughput of
that chunk in scenario-cluster-months per second, and the process's peak resident
memory (ru_maxrss, which includes the compiler's). Each figure is the median of
--repeats fresh processes (JAX's compile cache is off). The numpy backend's time for
the same chunk, in the same process, is the baseline.

    python benchmarks/bench_horizon.py                       # 60, 120, 240, 600 months
    python benchmarks/bench_horizon.py --horizons 60,600 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def one(horizon: int, sensitivities: bool) -> dict:
    """In a child process: prepare, compile and run one chunk; returns the figures."""
    import dataclasses
    import resource

    import numpy as np

    from stresstest.backends import make_backend
    from stresstest.config import load_portfolio
    from stresstest.loaders import load_scenario
    from stresstest.engine import prepare
    from stresstest.presets import list_presets

    presets = list_presets()
    pf = load_portfolio(presets["example"])
    pf = dataclasses.replace(pf, horizon_months=horizon)
    sc = load_scenario(presets["default_grid"], pf)
    jax_be = make_backend("jax", "float64")
    t0 = time.perf_counter()
    run = prepare(pf, sc, jax_be, sensitivities=sensitivities)
    start = jax_be.xp.asarray(0)
    lowered = run._fn.lower(*run._args, start)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t1 = time.perf_counter()
        out = compiled(*run._args, start)
        for v in out.values():
            v.block_until_ready()
        times.append(time.perf_counter() - t1)
    points = run.chunk_size if run.factoring is None else run.chunk_size
    scm = points * len(pf.clusters) * horizon
    row = {
        "horizon": horizon,
        "mode": "sensitivities" if sensitivities else "grid",
        "chunk_points": points,
        "compile_s": compile_s,
        "chunk_s": min(times),
        "scm_per_s": scm / min(times),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if not sensitivities:
        np_be = make_backend("numpy", "float64")
        np_run = prepare(pf, sc, np_be, chunk_size=run.chunk_size)
        t1 = time.perf_counter()
        with np.errstate(all="ignore"):
            np_run._fn(*np_run._args, np.asarray(0))
        row["numpy_chunk_s"] = time.perf_counter() - t1
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--horizons", default="60,120,240,600")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (median)")
    ap.add_argument("--modes", default="grid,sensitivities")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        horizon, mode = args.child.split(":")
        print(json.dumps(one(int(horizon), mode == "sensitivities")))
        return
    env = dict(os.environ, STRESSTEST_COMPILE_CACHE="off", JAX_ENABLE_X64="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; example portfolio, default grid, JAX CPU float64")
    print(f"{'horizon':>7} {'mode':>13} {'compile s':>10} {'peak MiB':>9} {'chunk s':>8} "
          f"{'scm/s':>9} {'vs numpy':>8}")
    for mode in args.modes.split(","):
        for horizon in (int(h) for h in args.horizons.split(",")):
            rows = []
            for _ in range(args.repeats):
                res = subprocess.run([sys.executable, __file__, "--child", f"{horizon}:{mode}"],
                                     capture_output=True, text=True, env=env, check=True)
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]
                   if isinstance(rows[0][k], (int, float))}
            ratio = (f"{med['numpy_chunk_s'] / med['chunk_s']:.1f}x" if "numpy_chunk_s" in med else "-")
            print(f"{horizon:>7} {mode:>13} {med['compile_s']:>10.2f} {med['peak_mib']:>9.0f} "
                  f"{med['chunk_s']:>8.3f} {med['scm_per_s']:>9.2e} {ratio:>8}", flush=True)


if __name__ == "__main__":
    main()
