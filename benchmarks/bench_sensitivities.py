"""Cost of the full sensitivity set against the forward evaluation of the same grid (JAX).

A standalone script (never collected by pytest). Both runs use the same chunks on the
same backend in one process; figures are medians of several synchronised runs with
compile time apart. The issue's target: gradients at most 4x the forward time.

    python benchmarks/bench_sensitivities.py [--repeats 5] [--chunk-size N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from bench_grid import PeakMemory

from stresstest.backends import make_backend
from stresstest.config import load_portfolio, load_scenario
from stresstest.engine import prepare
from stresstest.presets import list_presets


def timed(run, repeats):
    t0 = time.perf_counter()
    next(run.chunks())
    compile_s = time.perf_counter() - t0
    times = []
    with PeakMemory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _chunk in run.chunks():
                pass
            times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times), mem.delta_mib


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args(argv)
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    b = make_backend("jax")
    n_params = 40 * len(pf.clusters) + 1
    print(f"# sensitivities on {b.describe()}, {platform.node()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# default grid: {sc.size:,} points x {len(pf.clusters)} clusters x {pf.horizon_months} months; "
          f"gradients of npv, roi, irr and cluster npv for {n_params} parameters, plus axis slopes")
    fwd = timed(prepare(pf, sc, b, args.chunk_size), args.repeats)
    sen = timed(prepare(pf, sc, b, args.chunk_size, sensitivities=True), args.repeats)
    scm = sc.size * len(pf.clusters) * pf.horizon_months
    print(f"{'run':<14}{'compile s':>10}{'median s':>10}{'scm/s':>11}{'peak MiB':>10}")
    for name, (c, m, mem) in (("forward", fwd), ("+gradients", sen)):
        print(f"{name:<14}{c:>10.2f}{m:>10.3f}{scm / m:>11.3g}{mem:>10.0f}")
    print(f"gradients / forward time: {sen[1] / fwd[1]:.2f}x (target <= 4x)")


if __name__ == "__main__":
    main()
