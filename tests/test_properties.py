"""Properties of the model on random valid portfolios (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from helpers import make_axis, random_portfolio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stresstest.backends import make_backend
from stresstest.engine import evaluate_base, prepare
from stresstest.grid_config import Scenario
from stresstest.kernels.cashflows import cash_flows
from stresstest.kernels.metrics import evaluate

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
seeds = st.integers(0, 2**32 - 1)


def _pf(seed, n=None):
    pf = random_portfolio(np.random.default_rng(seed), n_clusters=n)
    return pf


def _npv_with(pf, name, op, values):
    """Portfolio NPV with the parameter(s) moved by each value (numpy kernels)."""
    base = pf.base_arrays()
    rows = []
    for v in values:
        p = {k: x.copy() for k, x in base.items()}
        for t in (name if isinstance(name, tuple) else (name,)):
            p[t] = p[t] * v if op == "scale" else np.clip(p[t] + v, 0.0, 1.0)
        rows.append(p)
    params = {k: np.stack([r[k] for r in rows]) for k in base}
    with np.errstate(all="ignore"):
        return evaluate(params, np.full(len(values), pf.discount_rate), pf.horizon_months)["npv"]


@SETTINGS
@given(seeds, st.lists(st.floats(0.0, 3.0), min_size=2, max_size=6))
def test_npv_never_falls_when_prices_rise(seed, scales):
    pf = _pf(seed)
    npv = _npv_with(pf, "on_demand_price", "scale", sorted(scales))
    tol = 1e-9 * (np.abs(npv).max() + 1.0)
    assert np.all(np.diff(npv) >= -tol), npv


@SETTINGS
@given(seeds, st.lists(st.floats(0.0, 5.0), min_size=2, max_size=6))
def test_npv_never_rises_when_energy_costs_more(seed, scales):
    pf = _pf(seed)
    npv = _npv_with(pf, "energy_price", "scale", sorted(scales))
    tol = 1e-9 * (np.abs(npv).max() + 1.0)
    assert np.all(np.diff(npv) <= tol), npv


@SETTINGS
@given(seeds, st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=6))
def test_npv_never_falls_with_more_utilization_where_an_hour_sells_above_its_power(seed, shifts):
    pf = _pf(seed)
    T = pf.horizon_months
    for c in pf.clusters:  # away from the clip: selling an hour must earn more than its power costs
        t = np.arange(1, T + 1)
        g = np.clip((t - c["next_gen_month"]) / c["next_gen_ramp_months"], 0, 1)
        m = c["on_demand_price"] * (1 - c["price_decline"]) ** (t / 12) * (1 - c["next_gen_price_drop"] * g)
        power = c["kw_per_gpu"] * c["pue"] * c["energy_price"] * (1 + c["energy_escalation"]) ** (t / 12) \
            * (1 - c["idle_power_fraction"])
        assume(np.all(m * (1 + c["priority_share"] * c["priority_premium"]) >= power))
    npv = _npv_with(pf, ("utilization_training", "utilization_inference"), "shift", sorted(shifts))
    tol = 1e-9 * (np.abs(npv).max() + 1.0)
    assert np.all(np.diff(npv) >= -tol), npv


@SETTINGS
@given(seeds)
def test_portfolio_flows_are_the_sum_of_cluster_flows(seed):
    pf = _pf(seed, n=3)
    base = pf.base_arrays()
    together = cash_flows({k: v[None, :] for k, v in base.items()}, pf.horizon_months)["cf"][0]
    for c in range(3):
        alone = cash_flows({k: v[None, c:c + 1] for k, v in base.items()}, pf.horizon_months)["cf"][0, 0]
        np.testing.assert_array_equal(alone, together[c])
    out = evaluate({k: v[None, :] for k, v in base.items()}, np.array([pf.discount_rate]), pf.horizon_months)
    assert out["npv"][0] == np.float64(out["cluster_npv"][0].sum()) or math.isclose(
        out["npv"][0], out["cluster_npv"][0].sum(), rel_tol=1e-12, abs_tol=1e-6)


@SETTINGS
@given(seeds, st.randoms(use_true_random=False))
def test_invariant_to_cluster_order(seed, rnd):
    pf = _pf(seed, n=4)
    order = list(range(4))
    rnd.shuffle(order)
    a = evaluate_base(pf)
    pf.clusters = [pf.clusters[i] for i in order]
    pf.cluster_names = [pf.cluster_names[i] for i in order]
    pf.labels = [pf.labels[i] for i in order]
    b = evaluate_base(pf)
    for k in ("npv", "roi", "revenue", "energy_cost", "opex", "ebitda"):
        assert math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-6), k
    for k in ("irr", "min_dscr", "payback_months"):
        assert (math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12), k
    np.testing.assert_array_equal(a["cluster_npv"][order], b["cluster_npv"])


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seeds, st.integers(1, 40), st.integers(1, 40))
def test_invariant_to_chunk_size(seed, c1, c2):
    pf = _pf(seed, n=2)
    sc = Scenario("<p>", "grid", "p", [
        make_axis("price", ("on_demand_price",), "scale", [0.5, 0.8, 1.0, 1.3], shock="price", names=pf.cluster_names),
        make_axis("energy", ("energy_price",), "scale", [1.0, 1.7, 2.5], shock="energy", names=pf.cluster_names)])
    be = make_backend("numpy")
    runs = []
    for c in (c1, c2):
        chunks = list(prepare(pf, sc, be, c).chunks())
        runs.append({k: np.concatenate([x.outputs[k] for x in chunks]) for k in chunks[0].outputs})
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)


@SETTINGS
@given(seeds)
def test_neutral_shocks_give_the_base_case(seed):
    pf = _pf(seed)
    sc = Scenario("<p>", "grid", "p", [
        make_axis("price", ("on_demand_price",), "scale", [1.0], shock="price", names=pf.cluster_names),
        make_axis("utilization", ("utilization_training", "utilization_inference"), "shift", [0.0],
              shock="utilization", names=pf.cluster_names),
        make_axis("energy", ("energy_price",), "scale", [1.0], shock="energy", names=pf.cluster_names),
        make_axis("obsolescence", ("next_gen_month",), "shift", [0.0], shock="obsolescence", names=pf.cluster_names)])
    out = next(prepare(pf, sc, make_backend("numpy")).chunks()).outputs
    base = evaluate_base(pf)
    for k, v in base.items():
        np.testing.assert_array_equal(out[k][0], v, err_msg=k)
