"""Helpers the tests share: random valid portfolios and grids, the comparison of the
engine's outputs with the plain-loop reference, and array comparisons. Tests import them
from here (never from conftest.py or another test file)."""

from __future__ import annotations

import math

import numpy as np
import reference_model as ref

from stresstest.config import Portfolio
from stresstest.engine import grid_point, prepare
from stresstest.grid_config import Axis, Scenario
from stresstest.kernels.params import CLUSTER_PARAMS, NAMED_SHOCKS, OUTPUTS, PARAMS
from stresstest.kernels.shocks import AxisSpec

# Tolerances keyed by dtype (relative, and absolute for rates that cross 0)
TOL = {"float64": 1e-9, "float32": 2e-4}


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


def make_axis(name, targets, op, values, clusters=None, shock=None, param=None, names=None):
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
            axes.append(make_axis(f"a{k}", targets, op, values, shock=shock, names=pf.cluster_names))
            continue
        if rng.random() < 0.1:
            param = "discount_rate"
            op = str(rng.choice(["scale", "shift", "set"]))
            values = {"scale": rng.uniform(0, 3, size), "shift": rng.uniform(-0.1, 0.1, size),
                      "set": rng.uniform(-0.1, 0.4, size)}[op]
            axes.append(make_axis(f"a{k}", [param], op, values, param=param, names=pf.cluster_names))
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
        axes.append(make_axis(f"a{k}", [param], op, values, clusters=clusters, param=param,
                          names=pf.cluster_names))
    return Scenario("<random>", "grid", "random", axes)


MONEY = {"npv", "revenue", "energy_cost", "opex", "ebitda"}


def reference_at(pf, sc, flat):
    """Reference outputs at one grid point: shocks applied by the reference, in axis order."""
    clusters = [dict(c) for c in pf.clusters]
    rate = pf.discount_rate
    for axis, value in zip(sc.axes, grid_point(sc, flat).values()):
        for target in axis.spec.targets:
            if target == "discount_rate":
                rate = {"scale": rate * value, "shift": rate + value, "set": value}[axis.spec.op]
                rate = max(rate, -1 + 1e-9)
                continue
            for i, name in enumerate(pf.cluster_names):
                if axis.clusters is None or name in axis.clusters:
                    clusters[i] = ref.apply_shock(clusters[i], target, axis.spec.op, value)
    return ref.evaluate(clusters, pf.horizon_months, rate), clusters, rate


def assert_close(name, got, want, scale, tol=1e-9, where=""):
    if isinstance(want, float) and (math.isnan(want) or math.isinf(want)):
        assert (math.isnan(got) and math.isnan(want)) or got == want, f"{where} {name}: {got} vs {want}"
        return
    if name in MONEY:
        atol = tol * scale
    elif name == "payback_months":
        atol = 1e-7
    else:
        atol = tol
    assert abs(got - want) <= atol + tol * abs(want), f"{where} {name}: {got!r} vs {want!r}"


def compare_with_reference(pf, sc, outputs, flats):
    n_checked = 0
    for flat in flats:
        want, clusters, rate = reference_at(pf, sc, flat)
        scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in clusters) + 1.0
        where = f"seed-case flat={flat} point={grid_point(sc, flat)}"
        for name in OUTPUTS:
            assert_close(name, float(outputs[name][flat]), want["portfolio"][name], scale, where=where)
            for c in range(len(pf.clusters)):
                assert_close(f"cluster_{name}[{c}]", float(outputs["cluster_" + name][flat, c]),
                             want["clusters"][c][name], scale, where=where)
        n_checked += 1
    return n_checked


def run_all(pf, sc, backend, chunk_size=None):
    run = prepare(pf, sc, backend, chunk_size)
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def run_all_checked(pf, sc, backend, chunk_size=None):
    run = prepare(pf, sc, backend, chunk_size)
    parts = list(run.chunks())
    assert [p.start for p in parts] == list(range(0, sc.size, run.chunk_size))
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def assert_same(a, b, rtol, atol_rel=None):
    for name in a:
        x, y = a[name], b[name]
        assert x.shape == y.shape, name
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.array_equal(np.isinf(x), np.isinf(y)), name
        ok = np.isfinite(x)
        scale = np.max(np.abs(y[ok])) if ok.any() else 1.0
        atol = rtol * (scale if atol_rel is None else atol_rel)
        assert np.allclose(x[ok], y[ok], rtol=rtol, atol=atol), (name, np.max(np.abs(x[ok] - y[ok])))


def h5_datasets(path) -> dict:
    """Every dataset of an HDF5 file by its path in the file, read whole."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
    return out
