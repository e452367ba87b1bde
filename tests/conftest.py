"""Shared test setup: float64 everywhere, backends, random portfolios and grids."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the command line keeps compiled programs in ~/.cache: not from the tests, whose own
# check of the cache (test_cli.py) names a folder of its own
os.environ["STRESSTEST_COMPILE_CACHE"] = "off"
# on a GPU, each xdist worker's JAX would take 75 % of the memory up front: the second
# would find too little; allocate as needed instead (no effect on the CPU)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from stresstest.backends import cupy_available, jax_importable, make_backend  # noqa: E402
from stresstest.config import Axis, Portfolio, Scenario  # noqa: E402
from stresstest.kernels.params import CLUSTER_PARAMS, NAMED_SHOCKS, PARAMS  # noqa: E402
from stresstest.kernels.shocks import AxisSpec  # noqa: E402

# Tolerances keyed by dtype (relative, and absolute for rates that cross 0)
TOL = {"float64": 1e-9, "float32": 2e-4}


def _backend_params(with_numpy=True):
    out = [pytest.param("numpy", id="numpy")] if with_numpy else []
    out.append(pytest.param("jax", id="jax", marks=pytest.mark.skipif(
        not jax_importable(), reason="jax is not installed")))
    out.append(pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not cupy_available(), reason="no CUDA GPU for CuPy")]))
    return out


@pytest.fixture(params=_backend_params())
def backend(request):
    return make_backend(request.param, "float64")


@pytest.fixture(params=_backend_params(with_numpy=False))
def compiled_backend(request):
    """JAX (and CuPy where a GPU is found): the backends compared with numpy."""
    return make_backend(request.param, "float64")


def random_cluster(rng: np.random.Generator) -> dict[str, float]:
    """A valid, varied cluster: realistic scales, every parameter drawn."""
    u = rng.uniform
    c = {
        "gpus": float(rng.integers(1, 4096)),
        "capex_per_gpu": u(20_000, 70_000),
        "capex_fixed": u(0, 5e6) * (rng.random() < 0.5),
        "delivery_months": u(0, 12),
        "kw_per_gpu": u(1.0, 2.2),
        "idle_power_fraction": u(0, 0.6),
        "pue": u(1.0, 1.8),
        "energy_price": u(0.03, 0.35),
        "energy_escalation": u(-0.05, 0.1),
        "on_demand_price": u(1.0, 6.0),
        "price_decline": u(-0.2, 0.5),
        "next_gen_month": u(-12, 80),
        "next_gen_ramp_months": u(1, 18),
        "next_gen_price_drop": u(0, 0.6),
        "next_gen_utilization_drop": u(0, 0.3),
        "next_gen_resale_drop": u(0, 0.6),
        "reserved_share": u(0, 1),
        "reserved_price": u(1.0, 5.0),
        "reserved_term_months": u(1, 60),
        "renewal_rate": u(0, 1),
        "renewal_discount": u(0, 0.4),
        "reserved_utilization": u(0.3, 1),
        "top_client_share": u(0, 1),
        "client_loss_month": math.inf if rng.random() < 0.3 else u(-5, 80),
        "utilization_training": u(0.2, 1),
        "utilization_inference": u(0.2, 1),
        "inference_share": u(0, 1),
        "priority_share": u(0, 0.5),
        "priority_premium": u(0, 0.6),
        "opex_escalation": u(-0.02, 0.08),
        "maintenance_rate": u(0, 0.1),
        "software_per_gpu_month": u(0, 50),
        "colocation_per_kw_month": u(0, 250),
        "staff_cost_per_year": u(0, 2e6),
        "useful_life_years": u(1 / 12, 8),
        "tax_rate": u(0, 0.4),
        "resale_decline": u(-0.1, 0.6),
        "debt_fraction": u(0, 0.9) * (rng.random() < 0.6),
        "interest_rate": u(0, 0.2) * (rng.random() < 0.9),
        "debt_term_months": float(rng.integers(1, 90)),
    }
    assert set(c) == {p.name for p in CLUSTER_PARAMS}
    return c


def random_portfolio(rng, n_clusters=None, horizon=None) -> Portfolio:
    n = int(n_clusters or rng.integers(1, 5))
    clusters = [random_cluster(rng) for _ in range(n)]
    names = [f"c{i}" for i in range(n)]
    return Portfolio(
        path="<random>", name="random", currency="USD",
        horizon_months=int(horizon or rng.choice([1, 12, 37, 60, 96])),
        discount_rate=float(rng.uniform(-0.05, 0.3)),
        clusters=clusters, cluster_names=names,
        labels=[{"gpu_market": n_, "power_market": n_} for n_ in names],
    )


def _axis(name, targets, op, values, clusters=None, shock=None, param=None, names=None):
    mask = None if clusters is None else tuple(n in clusters for n in names)
    return Axis(name, AxisSpec(name, tuple(targets), op, mask), np.asarray(values, dtype=float),
                shock, param, clusters)


def random_scenario(rng, pf: Portfolio, n_axes=None) -> Scenario:
    """Random grid: named shocks and parameter axes with every op, some per cluster."""
    n_axes = int(n_axes if n_axes is not None else rng.integers(1, 4))
    axes = []
    for k in range(n_axes):
        size = int(rng.integers(1, 4))
        if rng.random() < 0.4:
            shock = list(NAMED_SHOCKS)[int(rng.integers(0, 4))]
            targets, op, _ = NAMED_SHOCKS[shock]
            spread = {"scale": (0.2, 1.8), "shift": (-0.5, 0.5)}[op]
            if shock == "obsolescence":
                spread = (-24, 24)
            values = rng.uniform(*spread, size)
            axes.append(_axis(f"a{k}", targets, op, values, shock=shock, names=pf.cluster_names))
            continue
        if rng.random() < 0.1:
            param = "discount_rate"
            op = str(rng.choice(["scale", "shift", "set"]))
            values = {"scale": rng.uniform(0, 3, size), "shift": rng.uniform(-0.1, 0.1, size),
                      "set": rng.uniform(-0.1, 0.4, size)}[op]
            axes.append(_axis(f"a{k}", [param], op, values, param=param, names=pf.cluster_names))
            continue
        param = str(rng.choice([p.name for p in CLUSTER_PARAMS]))
        op = str(rng.choice(["scale", "shift", "set"]))
        base = np.array([c[param] for c in pf.clusters])
        finite = base[np.isfinite(base)]
        mag = float(np.max(np.abs(finite))) if finite.size else 10.0
        mag = mag if mag > 0 else 1.0
        spec = PARAMS[param]
        if op == "scale":
            values = rng.uniform(0, 2, size)
        elif op == "shift":
            values = rng.uniform(-0.6, 0.6, size) * mag
        else:
            lo = spec.lo if math.isfinite(spec.lo) else -mag
            hi = spec.hi if math.isfinite(spec.hi) else lo + 2 * mag + 1
            values = rng.uniform(max(lo, -2 * mag), min(hi, max(lo, -2 * mag) + 2 * mag + 1), size)
            if spec.integer:
                values = np.maximum(np.round(values), max(spec.lo, 1))
            values = np.clip(values, spec.lo if spec.lo_open is False else spec.lo + 1, spec.hi)
        clusters = None
        if len(pf.cluster_names) > 1 and rng.random() < 0.4:
            clusters = [pf.cluster_names[0]]
        axes.append(_axis(f"a{k}", [param], op, values, clusters=clusters, param=param,
                          names=pf.cluster_names))
    return Scenario("<random>", "grid", "random", axes)
