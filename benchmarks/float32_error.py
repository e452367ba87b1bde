"""float32 against float64 on W1 (the default grid on the example portfolio): how far the
outputs move when a run asks for --dtype float32.

    python benchmarks/float32_error.py [--backend jax]

NPV errors are reported relative to the portfolio's capex (a dollar error means little
without the scale) and to |NPV| where |NPV| is above 1 % of capex; IRR errors in
absolute annual rate; and the points where one precision finds an IRR and the other not.
"""

from __future__ import annotations

import argparse

import numpy as np

from stresstest.backends import make_backend
from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.engine import prepare
from stresstest.presets import list_presets


def run(pf, sc, backend, dtype):
    r = prepare(pf, sc, make_backend(backend, dtype))
    chunks = list(r.chunks())
    return {k: np.concatenate([c.outputs[k] for c in chunks]).astype(np.float64) for k in chunks[0].outputs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="jax")
    args = ap.parse_args(argv)
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    a, b = run(pf, sc, args.backend, "float64"), run(pf, sc, args.backend, "float32")
    capex = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters)
    d = np.abs(b["npv"] - a["npv"])
    big = np.abs(a["npv"]) > 0.01 * capex
    print(f"# float32 vs float64 on {args.backend}, default grid ({sc.size:,} points), capex {capex / 1e6:.0f} M")
    print(f"NPV  |error| / capex: median {np.median(d) / capex:.2e}, max {d.max() / capex:.2e}")
    print(f"NPV  |error| / |NPV| where |NPV| > 1 % of capex: median {np.median(d[big] / np.abs(a['npv'][big])):.2e}, "
          f"max {np.max(d[big] / np.abs(a['npv'][big])):.2e}")
    both = np.isfinite(a["irr"]) & np.isfinite(b["irr"])
    e = np.abs(b["irr"] - a["irr"])[both]
    print(f"IRR  |error| (annual rate): median {np.median(e):.2e}, 99th pct {np.quantile(e, 0.99):.2e}, "
          f"max {e.max():.2e} over {both.sum():,} points")
    print(f"IRR  found by one precision only: {int((np.isfinite(a['irr']) != np.isfinite(b['irr'])).sum())} points")
    for name in ("roi", "min_dscr"):
        both = np.isfinite(a[name]) & np.isfinite(b[name])
        e = np.abs(b[name] - a[name])[both]
        print(f"{name.upper():<4} |error|: median {np.median(e):.2e}, max {e.max():.2e}")


if __name__ == "__main__":
    main()
