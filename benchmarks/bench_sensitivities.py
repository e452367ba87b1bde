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
from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.engine import prepare
from stresstest.presets import list_presets


def compile_time(run):
    t0 = time.perf_counter()
    next(run.chunks())
    return time.perf_counter() - t0


def one_pass(run):
    t0 = time.perf_counter()
    for _chunk in run.chunks():
        pass
    return time.perf_counter() - t0


def paired(fwd, sen, repeats):
    """Alternate forward and gradient passes: this machine's speed drifts, so the ratio
    is taken within each pair and its median reported."""
    times = {"forward": [], "+gradients": []}
    mem = {}
    for _ in range(repeats):
        for name, run in (("forward", fwd), ("+gradients", sen)):
            with PeakMemory() as m:
                times[name].append(one_pass(run))
            mem[name] = max(mem.get(name, 0.0), m.delta_mib)
    ratios = [s / f for f, s in zip(times["forward"], times["+gradients"])]
    return times, mem, ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args(argv)
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    b = make_backend("jax")
    n_params = 40 * len(pf.clusters) + 1
    print(f"# sensitivities on {b.describe()}, {platform.node()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# default grid: {sc.size:,} points x {len(pf.clusters)} clusters x {pf.horizon_months} months; "
          f"gradients of npv, roi, irr and cluster npv for {n_params} parameters, plus axis slopes")
    fwd = prepare(pf, sc, b, args.chunk_size)
    sen = prepare(pf, sc, b, args.chunk_size, sensitivities=True)
    compiled = {"forward": compile_time(fwd), "+gradients": compile_time(sen)}
    times, mem, ratios = paired(fwd, sen, args.repeats)
    scm = sc.size * len(pf.clusters) * pf.horizon_months
    print(f"chunk {fwd.chunk_size} scenarios; {args.repeats} alternating pairs")
    print(f"{'run':<14}{'compile s':>10}{'median s':>10}{'scm/s':>11}{'peak MiB':>10}")
    for name in ("forward", "+gradients"):
        m = statistics.median(times[name])
        print(f"{name:<14}{compiled[name]:>10.2f}{m:>10.3f}{scm / m:>11.3g}{mem[name]:>10.0f}")
    print(f"gradients / forward time: median of paired ratios {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}; target <= 4x)")

if __name__ == "__main__":
    main()
