"""GPU against CPU: every output on random grids, each GPU backend against numpy on the CPU.

Prints the largest relative difference per backend (float64; the target is 1e-10,
rates compared with an absolute floor since they cross 0) and exits non-zero above it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import random_portfolio, random_scenario  # noqa: E402

from stresstest.backends import make_backend  # noqa: E402
from stresstest.engine import prepare  # noqa: E402


def outputs(pf, sc, backend):
    run = prepare(pf, sc, backend)
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def max_rel_diff(a, b):
    worst = 0.0
    for name in a:
        x, y = a[name], b[name]
        if not np.array_equal(np.isfinite(x), np.isfinite(y)):
            return float("inf")
        ok = np.isfinite(x)
        if ok.any():
            scale = np.maximum(np.abs(y[ok]), np.max(np.abs(y[ok])) * 1e-6 + 1e-12)
            worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / scale)))
    return worst


def main(seeds: int = 6):
    tol = 1e-10
    failed = False
    gpu_backends = []
    for name in ("jax", "cupy"):
        try:
            b = make_backend(name)
            if b.is_gpu:
                gpu_backends.append(b)
            else:
                print(f"{name}: no GPU ({b.describe()})")
        except Exception as exc:
            print(f"{name}: unavailable ({exc})")
    cpu = make_backend("numpy")
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        pf = random_portfolio(rng, n_clusters=4, horizon=int(rng.choice([24, 60, 120])))
        sc = random_scenario(rng, pf, n_axes=3)
        want = outputs(pf, sc, cpu)
        for b in gpu_backends:
            d = max_rel_diff(outputs(pf, sc, b), want)
            flag = "ok" if d <= tol else "FAIL"
            failed |= d > tol
            print(f"seed {seed}: {b.describe():<45} {sc.size:>5} points  max rel diff {d:.2e}  {flag}")
    if not gpu_backends:
        print("no GPU backend found")
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)  # the number of random grids
