"""The IRR solver (kernels/irr.py, issue 29) against the ladder it replaced and
numpy_financial 1.0: roots found on adversarial flows, and W1's cost, in one run.

A standalone script (never collected by pytest).

Adversarial flows (tests/helpers.adversarial_irr_flows): flows whose root closest to 0
is a close pair of roots (1e-4 to 2e-3 a month apart) or a double root, known by
construction, at horizons of 12 to 600 months. Counted for each solver: the closest
root found (within the construction's slack), a rate reported that is not a root (the
polynomial there larger than float64's round-off: helpers.polynomial_residual against
irr._tangency_tolerance), NaN. numpy_financial (eigenvalues of the companion matrix)
runs up to 120 months; its rates are not polished, so instead of a residual it is
counted where it reports a rate closer to 0 than the closest root. The solver runs
compiled (JAX, one program per horizon), the old ladder on numpy.

W1 (benchmarks/bench_workloads.py's: the default grid on the example portfolio, every
output): the engine's chunk function built with the old solver and with the new, on
JAX (the engine's default, affine axes interpolated) and on the plain numpy backend (a
sample of --numpy-limit points), timed in alternated passes in this one process; the
medians, scenario-cluster-months per second and the ratios. The old solver is the file
as it stood at --before, loaded from git history.

    python benchmarks/bench_irr.py                        # 10^5 flows, then W1
    python benchmarks/bench_irr.py --flows 2e4 --repeats 5
    python benchmarks/bench_irr.py --skip-w1 / --skip-flows
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_grid import timed_pass  # noqa: E402
from helpers import adversarial_irr_flows, polynomial_residual  # noqa: E402

import stresstest.kernels.irr as irr  # noqa: E402
import stresstest.kernels.metrics as metrics  # noqa: E402
from stresstest.backends import make_backend  # noqa: E402
from stresstest.config import load_portfolio  # noqa: E402
from stresstest.engine import prepare  # noqa: E402
from stresstest.loaders import load_scenario  # noqa: E402
from stresstest.presets import list_presets  # noqa: E402

# the horizons the flows are drawn at (one compiled program each), and their shares
HORIZONS = (12, 24, 60, 120, 240, 360, 600)
BATCH = 2048  # rows per compiled call


def old_solver(rev: str):
    """kernels/irr.py as it stood at `rev`, as a module of the package (its relative
    imports resolve there)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:kernels/irr.py"], capture_output=True,
                         text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("stresstest.kernels.irr_before", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "stresstest.kernels"
    exec(compile(src, f"{rev}:kernels/irr.py", "exec"), mod.__dict__)
    return mod


def solve_compiled(be, flows: np.ndarray) -> np.ndarray:
    """The solver compiled on `be`, in batches of BATCH rows (the last one padded)."""
    fn = be.compile(irr.solve_irr)
    out = []
    for a in range(0, len(flows), BATCH):
        chunk = flows[a:a + BATCH]
        pad = BATCH - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out.append(be.to_numpy(fn(be.xp.asarray(chunk)))[:BATCH - pad])
    return np.concatenate(out)


def adversarial(args, old) -> None:
    import numpy_financial as npf

    be = make_backend("jax")
    rng = np.random.default_rng(args.seed)
    per = -(-int(float(args.flows)) // (2 * len(HORIZONS)))  # at least --flows in all
    print(f"\n## Adversarial flows: {2 * per * len(HORIZONS):,} ({per:,} of each kind at each of "
          f"{', '.join(map(str, HORIZONS))} months)")
    print(f"{'kind':<9}{'months':>7}{'rows':>8} | {'found new':>10}{'old':>8}{'npf':>8} | "
          f"{'not a root new':>15}{'old':>6}{'npf closer':>11} | {'NaN new':>8}{'old':>7} | {'s new':>6}{'old':>6}{'npf':>6}")
    totals = {}
    for kind in ("pair", "tangency"):
        for T in HORIZONS:
            flows, root, slack = adversarial_irr_flows(rng, per, kind, T)
            t0 = time.perf_counter()
            new = solve_compiled(be, flows)
            t1 = time.perf_counter()
            before = old.solve_irr(flows)
            t2 = time.perf_counter()
            tol = irr._tangency_tolerance(T + 1)
            near = 10 * slack + 1e-12
            row = {"rows": len(root),
                   "found_new": int(np.sum(np.abs(new - root) <= near)),
                   "found_old": int(np.sum(np.abs(before - root) <= near)),
                   "false_new": int(np.sum(polynomial_residual(flows, new) > tol)),
                   "false_old": int(np.sum(polynomial_residual(flows, before) > tol)),
                   "nan_new": int(np.isnan(new).sum()), "nan_old": int(np.isnan(before).sum())}
            s_npf = ""
            if T <= 120:
                t3 = time.perf_counter()
                theirs = np.array([npf.irr(f) for f in flows])
                s_npf = f"{time.perf_counter() - t3:6.1f}"
                row["npf_rows"] = len(root)
                row["found_npf"] = int(np.sum(np.abs(theirs - root) <= near + 1e-9))
                row["closer_npf"] = int(np.sum(np.abs(theirs) < np.abs(root) - near - 1e-9))
            for k, v in row.items():
                totals.setdefault(kind, {}).setdefault(k, 0)
                totals[kind][k] += v
            npf_found = f"{row['found_npf']:>8,}" if "found_npf" in row else f"{'-':>8}"
            npf_closer = f"{row['closer_npf']:>11,}" if "closer_npf" in row else f"{'-':>11}"
            print(f"{kind:<9}{T:>7}{row['rows']:>8,} | {row['found_new']:>10,}{row['found_old']:>8,}{npf_found} | "
                  f"{row['false_new']:>15,}{row['false_old']:>6,}{npf_closer} | {row['nan_new']:>8,}"
                  f"{row['nan_old']:>7,} | {t1 - t0:6.1f}{t2 - t1:6.1f}{s_npf}")
    for kind, t in totals.items():
        n = t["rows"]
        print(f"{kind}: found {t['found_new']:,} of {n:,} ({100 * t['found_new'] / n:.2f} %; the old ladder "
              f"{100 * t['found_old'] / n:.2f} %, numpy_financial {100 * t.get('found_npf', 0) / max(t.get('npf_rows', 1), 1):.2f} "
              f"% of {t.get('npf_rows', 0):,} up to 120 months); rates not a root: {t['false_new']:,} (old "
              f"{t['false_old']:,}); numpy_financial closer than the closest root: {t.get('closer_npf', 0):,}")


@contextlib.contextmanager
def solver(mod):
    """metrics' IRR functions from `mod` while inside (numpy looks them up at each call,
    JAX when it traces)."""
    saved = metrics.ladder_values, metrics.solve_irr_from_ladder
    metrics.ladder_values, metrics.solve_irr_from_ladder = mod.ladder_values, mod.solve_irr_from_ladder
    try:
        yield
    finally:
        metrics.ladder_values, metrics.solve_irr_from_ladder = saved


def w1(args, old) -> None:
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    scm_point = len(pf.clusters) * pf.horizon_months
    runs = {}
    for name, mod in (("before", old), ("after", irr)):
        for backend, factor in (("jax", True), ("numpy", False)):
            with solver(mod):
                t0 = time.perf_counter()
                run = prepare(pf, sc, make_backend(backend), factor=factor)
                next(run.chunks())
                runs[name, backend] = (run, mod, time.perf_counter() - t0)
    limit = {"jax": None, "numpy": int(args.numpy_limit)}
    times = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, (run, mod, _) in runs.items():
            with solver(mod):
                times[key].append(timed_pass(run, limit[key[1]]))
    print(f"\n## W1 (default grid, {sc.size:,} points; numpy on the first {limit['numpy']:,}), "
          f"{args.repeats} alternated passes")
    print(f"{'solver':<8}{'backend':<8}{'compile s':>10}{'median s':>10}{'scm/s':>11}")
    rate = {}
    for key, (run, _, compile_s) in runs.items():
        secs = [s for s, _ in times[key]]
        points = times[key][0][1]
        med = statistics.median(secs)
        rate[key] = points * scm_point / med
        print(f"{key[0]:<8}{key[1]:<8}{compile_s:>10.1f}{med:>10.3f}{rate[key]:>11.3g}")
    pairs = lambda a, b: statistics.median(  # noqa: E731
        [(pb / sb) / (pa / sa) for (sa, pa), (sb, pb) in zip(times[a], times[b])])
    print(f"after / before, paired: JAX {pairs(('before', 'jax'), ('after', 'jax')):.2f}x, "
          f"numpy {pairs(('before', 'numpy'), ('after', 'numpy')):.2f}x")
    for name in ("before", "after"):
        print(f"{name}: JAX / numpy in the same passes {pairs((name, 'numpy'), (name, 'jax')):.1f}x")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", default="1e5", help="adversarial flows in all (half pairs, half tangencies)")
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--before", default="19c29fc", help="the git revision of the old kernels/irr.py")
    ap.add_argument("--repeats", type=int, default=7, help="W1's alternated passes")
    ap.add_argument("--numpy-limit", default="4000", help="W1's points on numpy")
    ap.add_argument("--skip-w1", action="store_true")
    ap.add_argument("--skip-flows", action="store_true")
    args = ap.parse_args(argv)
    import jax

    print(f"# {platform.node()} {platform.processor() or platform.machine()}, JAX {jax.__version__} on "
          f"{jax.default_backend()}, numpy {np.__version__}; old solver: kernels/irr.py at {args.before}")
    old = old_solver(args.before)
    if not args.skip_flows:
        adversarial(args, old)
    if not args.skip_w1:
        w1(args, old)


if __name__ == "__main__":
    main()
