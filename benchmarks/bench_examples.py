"""The bundled example portfolios on the default grid: version 1's `example` beside
`example_v2` (contracts, segments, a staged tranche, an optimization programme and a
platform), JAX against the numpy backend in the same process.

A standalone script (never collected by pytest). Each figure is the median of
--repeats passes over the grid after a compile (or warm-up) pass, in
scenario-cluster-months per second, with the resident memory it added
(bench_grid.measure). Run it from the repository root; to compare two checkouts,
run it in each, alternately, and compare the medians.

    python benchmarks/bench_examples.py                      # example and example_v2
    python benchmarks/bench_examples.py --portfolios example --repeats 9
"""

from __future__ import annotations

import argparse
import platform

from bench_grid import measure

from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.presets import list_presets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--portfolios", default="example,example_v2", help="bundled portfolios, comma-separated")
    ap.add_argument("--backends", default="jax,numpy")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    presets = list_presets()
    print(f"{platform.processor() or platform.machine()}; default grid; median of {args.repeats} passes")
    rates = {}
    for name in args.portfolios.split(","):
        pf = load_portfolio(presets[name])
        sc = load_scenario(presets["default_grid"], pf)
        for backend in args.backends.split(","):
            r = measure(pf, sc, backend, args.repeats)
            rates[name, backend] = r["scm_per_s"]
            print(f"{name:<12} {r['backend']:<28} {r['scm_per_s']:.3e} scm/s  median {r['median_s']:.3f} s  "
                  f"compile {r['compile_s']:.1f} s  peak {r['peak_mib']:.0f} MiB  ({len(pf.clusters)} clusters)")
    for name in args.portfolios.split(","):
        if (name, "jax") in rates and (name, "numpy") in rates:
            print(f"{name}: jax / numpy {rates[name, 'jax'] / rates[name, 'numpy']:.1f}x")


if __name__ == "__main__":
    main()
