"""Version 2 scalars addressed by path (docs/model.md, "Addressing part 2's fields"):
order_month, capex_decline, optimization.<field> and platform.<field> as grid axes, named
shock sets, Monte Carlo events, breakeven parameters, tornado bars and gradients, against
the plain-loop reference (tests/reference_model.py: apply_path_shock(..., horizon_months=T)
in axis order with the version 1 keys, evaluate(..., platform=)), and the closed form of a
cluster ordered later with no calendar effect."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import (assert_close, compare_v2_with_reference, load_portfolio_doc, reference_clusters,
                     reference_platform, run_all)

import reference_model as ref
from stresstest.backends import jax_importable, make_backend
from stresstest.breakeven import breakeven, breakeven_curve, shifted_portfolio
from stresstest.config import config_json, portfolio_from_dict
from stresstest.engine import ABSENT, evaluate_base, grid_point, never_parameters, prepare, sensitivity_parameters
from stresstest.factoring import plan
from stresstest.grid_config import scenario_from_dict
from stresstest.kernels.metrics import evaluate
from stresstest.kernels.params import MODEL_VERSION_2, OUTPUTS
from stresstest.kernels.paths import apply_events, event_draws, path_factors, seed_key
from stresstest.kernels.shocks import apply_axis_values, axis_point_values
from stresstest.loaders import load_scenario
from stresstest.mc_config import load_montecarlo
from stresstest.mc_paths import prepare as prepare_paths
from stresstest.named import shocked
from stresstest.validation import ConfigError

needs_jax = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")

# a: its own contracts and segments, a programme with its own start month; b: version 1
# keys, a tranche ordered at month 6 with a capex decline; c: version 1 keys, a programme
# that starts at go-live (no start month); a platform. Months off whole numbers where a
# ramp or a cycle would put a kink on a gradient's point.
DOC = {
    "portfolio": {"name": "v2-addressing", "horizon_months": 48, "discount_rate": 0.09,
                  "platform": {"build_cost": 2e6, "launch_month": 4, "run_cost_per_year": 1.2e6,
                               "take_rate": 0.04, "users_max": 500, "adoption_months": 9.5,
                               "fee_per_user_month": 250, "fee_growth": 0.02, "margin": 0.65}},
    "defaults": {"gpus": 512, "capex_per_gpu": 30000, "on_demand_price": 2.4, "delivery_months": 2.5,
                 "next_gen_month": 30.5},
    "clusters": [
        {"name": "a", "debt_fraction": 0.4,
         "contracts": [{"name": "bank", "share": 0.3, "price": 2.0, "term_months": 13.7, "industry": "finance"},
                       {"name": "lab", "share": 0.2, "price": 1.8, "term_months": 11.3, "loss_month": 18.5}],
         "segments": [{"name": "train", "share": 0.6, "utilization": 0.7},
                      {"name": "infer", "share": 0.4, "utilization": 0.8, "price_multiplier": 1.3}],
         "optimization": {"cost": 4e5, "cost_per_year": 2e5, "start_month": 4, "ramp_months": 6.5,
                          "utilization_gain": 0.03, "energy_saving": 0.1, "opex_saving": 0.05}},
        {"name": "b", "reserved_share": 0.6, "reserved_price": 1.9, "top_client_share": 0.4,
         "client_loss_month": 30.5, "reserved_term_months": 23.7, "order_month": 6, "capex_decline": 0.15},
        {"name": "c", "gpus": 256, "reserved_share": 0.3, "reserved_price": 2.1,
         "optimization": {"cost": 1e5, "ramp_months": 5.5, "energy_saving": 0.2}},
    ],
}
# version 1 keys only, no version 2 field
PLAIN = {
    "portfolio": {"name": "plain", "horizon_months": 36, "discount_rate": 0.1},
    "defaults": {"gpus": 256, "capex_per_gpu": 28000, "on_demand_price": 2.2},
    "clusters": [{"name": "x", "reserved_share": 0.5, "reserved_price": 2.0},
                 {"name": "y", "reserved_share": 0.3, "reserved_price": 1.7}],
}


@pytest.fixture
def pf(tmp_path):
    return load_portfolio_doc(tmp_path, DOC)


def grid(tmp_path, pf, axes: list[dict], name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"scenario": {"kind": "grid", "axes": axes}}, sort_keys=False))
    return load_scenario(path, pf)


def zipped(sc, flats):
    """The grid's axes as zipped axes over `flats` (helpers.compare_v2_with_reference's form)."""
    points = [grid_point(sc, f) for f in flats]
    return [dataclasses.replace(a, values=np.asarray([p[a.name] for p in points])) for a in sc.axes]


def assert_grid_matches_reference(pf, sc, out, flats):
    picked = {k: v[list(flats)] for k, v in out.items()}
    assert compare_v2_with_reference(pf, zipped(sc, flats), picked, range(len(flats))) == len(flats)


EVERY_FORM = [
    {"param": "order_month", "op": "set", "values": [0, 6, 12], "clusters": ["b"]},
    {"param": "capex_decline", "op": "shift", "values": [0.0, 0.1]},
    {"param": "optimization.energy_saving", "op": "set", "values": [0.0, 0.3]},
    {"param": "optimization.start_month", "op": "shift", "values": [0, 3], "clusters": ["a"]},
    {"param": "platform.take_rate", "op": "scale", "values": [0.5, 2.0]},
    {"param": "platform.launch_month", "op": "shift", "values": [0, 5]},
]


def test_every_path_form_matches_the_reference_at_every_grid_point(pf, tmp_path):
    sc = grid(tmp_path, pf, EVERY_FORM)
    assert [a.name for a in sc.axes] == ["order_month", "capex_decline", "optimization_energy_saving",
                                         "optimization_start_month", "platform_take_rate", "platform_launch_month"]
    # optimization.*: the clusters that run a programme (all clusters: a and c); the platform: no mask
    assert sc.axes[2].spec.cluster_mask == (True, False, True)
    assert sc.axes[3].spec.cluster_mask == (True, False, False)
    assert sc.axes[0].spec.cluster_mask == (False, True, False) and sc.axes[4].spec.cluster_mask is None
    out = run_all(pf, sc, make_backend("numpy"))
    assert_grid_matches_reference(pf, sc, out, range(sc.size))


@needs_jax
def test_every_path_form_matches_the_reference_on_jax(pf, tmp_path):
    sc = grid(tmp_path, pf, EVERY_FORM)
    out = run_all(pf, sc, make_backend("jax"))
    assert_grid_matches_reference(pf, sc, out, range(0, sc.size, 7))


# every field of the programme and the platform, with each op, past its range too (clipped)
FIELDS = [
    ("optimization.cost", "scale", [0.0, 3.0]), ("optimization.cost_per_year", "set", [0.0, 5e5]),
    ("optimization.start_month", "set", [1, 40]), ("optimization.ramp_months", "shift", [-10.0, 6.0]),
    ("optimization.utilization_gain", "set", [-0.2, 0.4]), ("optimization.opex_saving", "shift", [-0.5, 2.0]),
    ("platform.build_cost", "scale", [0.0, 2.0]), ("platform.run_cost_per_year", "shift", [-5e6, 1e6]),
    ("platform.opex_escalation", "set", [-0.5, 0.2]), ("platform.users_max", "scale", [0.3, 4.0]),
    ("platform.adoption_months", "shift", [-20.0, 10.0]), ("platform.fee_per_user_month", "set", [0.0, 900.0]),
    ("platform.fee_growth", "shift", [-3.0, 0.1]), ("platform.margin", "scale", [0.5, 3.0]),
    ("platform.tax_rate", "set", [0.0, 0.4]), ("platform.launch_month", "scale", [0.1, 30.0]),
    ("order_month", "shift", [-10.0, 7.4]), ("capex_decline", "scale", [-3.0, 9.0]),
]


@pytest.mark.parametrize("param, op, values", FIELDS, ids=[f[0] for f in FIELDS])
def test_each_field_matches_the_reference(pf, tmp_path, param, op, values):
    # beside a neutral price axis: a grid on the platform alone is test_a_grid_on_the_platform_alone's
    sc = grid(tmp_path, pf, [{"param": param, "op": op, "values": values}, {"shock": "price", "values": [1.0]}])
    out = run_all(pf, sc, make_backend("numpy"))
    assert_grid_matches_reference(pf, sc, out, range(sc.size))


def test_a_grid_on_the_platform_alone(pf, tmp_path):
    sc = grid(tmp_path, pf, [{"param": "platform.take_rate", "op": "set", "values": [0.01, 0.05]}])
    out = run_all(pf, sc, make_backend("numpy"))
    assert_grid_matches_reference(pf, sc, out, range(sc.size))


def test_a_start_month_left_to_go_live_moves_from_it(pf, tmp_path):
    """c's programme starts at go-live (ceil(t_o + D) = 3): a shift moves it from there
    and makes it the programme's own (MODEL.md, "Version 2 clarifications")."""
    sc = grid(tmp_path, pf, [{"param": "optimization.start_month", "op": "shift", "values": [0, 4],
                              "clusters": ["c"]}])
    out = run_all(pf, sc, make_backend("numpy"))
    assert_grid_matches_reference(pf, sc, out, range(sc.size))


def test_an_axis_turns_its_group_on_a_portfolio_without_it(tmp_path):
    """An order month axis on a version 1 portfolio: the order arrays at 0 elsewhere, the
    files version 2, its numbers the reference's; at order month 0 version 1's exactly."""
    pf = load_portfolio_doc(tmp_path, PLAIN)
    assert pf.groups == set() and pf.model_version == 1
    sc = grid(tmp_path, pf, [{"param": "order_month", "op": "set", "values": [0, 9], "clusters": ["y"]},
                             {"param": "capex_decline", "op": "set", "values": [0.0, 0.3]}])
    assert pf.groups == {"order"} and pf.model_version == MODEL_VERSION_2
    np.testing.assert_array_equal(pf.base_arrays()["order_month"], [0.0, 0.0])
    out = run_all(pf, sc, make_backend("numpy"))
    assert_grid_matches_reference(pf, sc, out, range(sc.size))
    plain = evaluate_base(load_portfolio_doc(tmp_path, PLAIN, "plain.yaml"))
    for name in OUTPUTS:
        np.testing.assert_allclose(out[name][0], plain[name], rtol=1e-12, atol=1e-6, err_msg=name)


def test_config_round_trip_rebuilds_the_masks(pf, tmp_path):
    sc = grid(tmp_path, pf, EVERY_FORM)
    text, _ = config_json(pf, sc)
    doc = json.loads(text)
    pf2 = portfolio_from_dict(doc["portfolio"])
    sc2 = scenario_from_dict(doc["scenario"], pf2)
    assert [a.spec for a in sc2.axes] == [a.spec for a in sc.axes]
    assert pf2.groups == pf.groups


def test_refusals_name_what_there_is(pf, tmp_path):
    with pytest.raises(ConfigError) as err:
        grid(tmp_path, pf, [{"param": "optimization.energy_saving", "op": "set", "values": [0.1], "clusters": ["b"]},
                            {"param": "platform.take_rate", "op": "set", "values": [0.1], "clusters": ["a"]},
                            {"param": "platform.colour", "op": "set", "values": [1]},
                            {"param": "platform.launch_month", "op": "set", "values": [0, 49]},
                            {"param": "order_month", "op": "set", "values": [6.5]}])
    text = "\n".join(err.value.problems)
    assert "axes[0].param: none of the clusters given runs an optimization programme (programmes: a, c)" in text
    assert "axes[1].clusters: platform.take_rate is a field of the portfolio's platform layer" in text
    assert "axes[2].param: unknown field 'colour' of the platform layer (fields: build_cost," in text
    assert "axes[3].values: value 0 for platform.launch_month: must be >= 1, got 0" in text
    assert "axes[3].values: value 1 for platform.launch_month: must be <= 48 (the horizon" in text
    assert "axes[4].values: value 0 for order_month: must be a whole number, got 6.5" in text
    plain = load_portfolio_doc(tmp_path, PLAIN, "plain.yaml")
    with pytest.raises(ConfigError, match=r"the portfolio .*plain.yaml has no platform layer"):
        grid(tmp_path, plain, [{"param": "platform.users_max", "op": "scale", "values": [2]}])
    # the default name of optimization.cost would be the output optimization_cost's
    sc = grid(tmp_path, pf, [{"param": "optimization.cost", "op": "scale", "values": [1, 2]}])
    assert sc.axes[0].name == "optimization_cost_axis"


# ------------------------------------------------------------------ the closed form


def test_an_order_month_axis_discounts_the_cluster_bought_at_0(tmp_path):
    """No calendar effect (flat rent, no escalation, no next generation within reach, no
    capex decline): the cluster ordered at t_o within T is the cluster bought at 0 within
    T - t_o, t_o months later: NPV times (1 + r)^(-t_o/12), the same IRR, payback, cover."""
    doc = {"portfolio": {"name": "calm", "horizon_months": 60, "discount_rate": 0.08},
           "clusters": [{"name": "k", "gpus": 256, "capex_per_gpu": 30000, "capex_fixed": 1e6,
                         "on_demand_price": 2.2, "price_decline": 0.0, "next_gen_month": 1000,
                         "energy_escalation": 0.0, "opex_escalation": 0.0, "reserved_share": 0.4,
                         "reserved_price": 2.0, "staff_cost_per_year": 3e5, "debt_fraction": 0.5,
                         "debt_term_months": 30, "delivery_months": 2.5}]}
    pf = load_portfolio_doc(tmp_path, doc)
    months = [0, 6, 12, 18]
    sc = grid(tmp_path, pf, [{"param": "order_month", "op": "set", "values": months}])
    out = run_all(pf, sc, make_backend("numpy"))
    for i, t_o in enumerate(months):
        shorter = dict(doc, portfolio=dict(doc["portfolio"], horizon_months=60 - t_o))
        at_0 = evaluate_base(load_portfolio_doc(tmp_path, shorter, f"short{t_o}.yaml"))
        assert out["npv"][i] == pytest.approx(at_0["npv"] * 1.08 ** (-t_o / 12), rel=1e-10)
        for name in ("irr", "equity_irr", "payback_months", "min_dscr", "roi"):
            assert out[name][i] == pytest.approx(at_0[name], rel=1e-9, abs=1e-12), (t_o, name)


# ------------------------------------------------------------------ the factored grid


def test_no_scalar_axis_is_interpolated_and_the_factored_grid_is_exact(pf, tmp_path):
    sc = grid(tmp_path, pf, [{"param": "platform.take_rate", "op": "set", "values": [0.01, 0.03, 0.05]},
                             {"param": "capex_decline", "op": "set", "values": [0.0, 0.1, 0.2]},
                             {"param": "order_month", "op": "set", "values": [0, 6, 12], "clusters": ["b"]},
                             {"shock": "price", "values": [0.6, 0.8, 1.0, 1.2]},
                             {"shock": "energy", "values": [0.5, 1.0, 1.5, 2.0]}])
    fact = plan(pf, sc, 64)
    assert fact is not None and sorted(sc.axes[fact.k + d].name for d in fact.affine) == ["energy", "price"]
    backend = make_backend("numpy")
    factored = run_all(pf, sc, backend)
    full = {k: np.concatenate([c.outputs[k] for c in prepare(pf, sc, backend, factor=False).chunks()])
            for k in factored}
    for k, v in full.items():
        np.testing.assert_allclose(factored[k], v, rtol=1e-9, atol=1e-3, err_msg=k)


# ------------------------------------------------------------------ named shock sets


def test_named_sets_move_scalars_as_the_reference_does(pf, tmp_path):
    (tmp_path / "stall.yaml").write_text(yaml.safe_dump({"shockset": {
        "name": "stall", "title": "platform adoption stalls", "sources": {"platform.users_max": "A",
                                                                         "platform.adoption_months": "A"},
        "shocks": [{"param": "platform.users_max", "op": "scale", "value": 0.3},
                   {"param": "platform.adoption_months", "op": "scale", "value": 3}]}}))
    (tmp_path / "wait.yaml").write_text(yaml.safe_dump({"shockset": {
        "name": "wait", "title": "GPU prices fall while waiting",
        "sources": {"price": "A", "order_month": "A", "capex_decline": "A", "optimization.energy_saving": "A"},
        "shocks": [{"shock": "price", "value": 0.7},
                   {"param": "order_month", "op": "set", "value": 18, "clusters": ["b"]},
                   {"param": "capex_decline", "op": "set", "value": 0.3, "clusters": ["b"]},
                   {"param": "optimization.energy_saving", "op": "set", "value": 0.25}]}}))
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({"scenario": {"kind": "named", "sets": ["stall.yaml", "wait.yaml"]}}))
    sc = load_scenario(path, pf)
    params, rate = shocked(pf, sc.sets)
    out = evaluate(params, rate, pf.horizon_months)
    for row, moves in ((1, [("platform.users_max", "scale", 0.3, None),
                            ("platform.adoption_months", "scale", 3, None)]),
                       (2, [("order_month", "set", 18, [False, True, False]),
                            ("capex_decline", "set", 0.3, [False, True, False]),
                            ("optimization.energy_saving", "set", 0.25, None)])):
        clusters, platform = reference_clusters(pf), reference_platform(pf)
        if row == 2:
            clusters = [ref.apply_shock(c, "price", "scale", 0.7) for c in clusters]
        for path_, op, value, mask in moves:
            clusters, platform = ref.apply_path_shock(clusters, platform, path_, op, value, cluster_mask=mask,
                                                      horizon_months=pf.horizon_months)
        want = ref.evaluate(ref.balance_shares(clusters), pf.horizon_months, pf.discount_rate, platform=platform)
        for name in ("npv", "irr", "roi", "payback_months", "min_dscr"):
            assert_close(name, float(out[name][row]), want["portfolio"][name], 1e8, where=f"row {row}")
        assert_close("revenue", float(out["platform_npv"][row]), want["v2"]["platform_npv"], 1e8)


def test_a_set_on_a_scalar_turns_its_group_on(tmp_path):
    pf = load_portfolio_doc(tmp_path, PLAIN)
    (tmp_path / "later.yaml").write_text(yaml.safe_dump({"shockset": {
        "name": "later", "title": "ordered later", "sources": {"order_month": "A", "utilization": "A"},
        "shocks": [{"param": "order_month", "op": "set", "value": 12}, {"shock": "utilization", "value": -0.1}]}}))
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({"scenario": {"kind": "named", "sets": ["later.yaml"]}}))
    sc = load_scenario(path, pf)
    assert pf.groups == {"order"} and pf.itemised
    assert "segments.utilization" in sc.sets[0].shocks[1].targets  # the named shock's item targets too


# ------------------------------------------------------------------ Monte Carlo events


def _mc(pf, events, paths=40):
    doc = {"scenario": {"kind": "montecarlo", "paths": paths, "seed": 5, "events": events}}
    return load_montecarlo(Path("<test>.yaml"), doc, pf)


def test_events_on_order_month_and_users_move_only_what_they_should(pf):
    mc = _mc(pf, [{"param": "order_month", "dist": "uniform", "low": 3, "high": 20, "clusters": ["b"],
                   "per_cluster": True},
                  {"param": "platform.users_max", "dist": "triangular", "low": 100, "mode": 400, "high": 900}])
    key, idx = seed_key(mc.seed), np.arange(mc.paths, dtype=np.uint64)
    f = path_factors(np, key, idx, mc.spec, np.float64)
    d = event_draws(np, key, idx, mc.events, mc.spec.n_series, pf.horizon_months, len(pf.clusters), np.float64)
    base = pf.base_arrays()
    moved, still = apply_events(base, mc.events, d), apply_events(base, (), [])
    order = np.broadcast_to(moved["order_month"], (mc.paths, 3))
    np.testing.assert_array_equal(order[:, 1], np.floor(d[0][:, 1] + 0.5))  # whole months, halves up
    assert np.all(order[:, 1] == np.round(order[:, 1])) and len(set(order[:, 1])) > 5
    np.testing.assert_array_equal(order[:, [0, 2]], np.broadcast_to(base["order_month"][[0, 2]], (mc.paths, 2)))
    users = np.broadcast_to(moved["platform.users_max"], (mc.paths, 1))
    np.testing.assert_array_equal(users[:, 0], d[1][:, 0])
    for k, v in still.items():
        if k not in ("order_month", "platform.users_max"):
            np.testing.assert_array_equal(moved[k], v, err_msg=k)
    out = {k: np.concatenate([c.outputs[k] for c in prepare_paths(pf, mc, make_backend("numpy")).chunks()])
           for k in ("npv", "cluster_npv", "irr", "platform_npv")}
    for s in range(0, mc.paths, 5):
        clusters, platform = reference_clusters(pf), reference_platform(pf)
        clusters, platform = ref.apply_path_shock(clusters, platform, "order_month", "set", float(d[0][s, 1]),
                                                  cluster_mask=[False, True, False], horizon_months=48)
        clusters, platform = ref.apply_path_shock(clusters, platform, "platform.users_max", "set",
                                                  float(d[1][s, 0]), horizon_months=48)
        factors = [{"price": list(f["price"][s, c]), "energy": list(f["energy"][s, c]),
                    "util": [list(f["util"][s, c, j]) for j in range(len(it.segments or [None]))]}
                   for c, it in enumerate(pf.items)]
        want = ref.evaluate(ref.balance_shares(clusters), 48, pf.discount_rate, factors, platform=platform)
        assert out["npv"][s] == pytest.approx(want["portfolio"]["npv"], rel=1e-9), s
        assert out["platform_npv"][s] == pytest.approx(want["v2"]["platform_npv"], rel=1e-9), s
        for c in range(3):
            assert out["cluster_npv"][s, c] == pytest.approx(want["clusters"][c]["npv"], rel=1e-9), (s, c)


def test_an_event_on_a_programme_draws_for_the_clusters_that_run_one(pf):
    mc = _mc(pf, [{"param": "optimization.energy_saving", "dist": "uniform", "low": 0.0, "high": 0.5,
                   "per_cluster": True}], paths=8)
    assert mc.events[0].mask == (True, False, True)
    with pytest.raises(ConfigError, match="per_cluster does not apply"):
        _mc(pf, [{"param": "platform.take_rate", "dist": "uniform", "low": 0, "high": 0.1, "per_cluster": True}])
    with pytest.raises(ConfigError, match=r"values\[1\]: must be <= 48 \(the horizon"):
        _mc(pf, [{"param": "order_month", "dist": "discrete", "values": [6, 60], "probs": [0.5, 0.5]}])


# ------------------------------------------------------------------ breakeven


def test_breakeven_on_the_take_rate_meets_its_target(pf):
    base = evaluate_base(pf)
    target = base["npv"] + 3e6
    (row,) = breakeven(pf, "platform.take_rate", f"npv={target}")  # the portfolio's row alone
    assert row.scope == "portfolio" and row.status == "solved" and row.unit == "fraction"
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    clusters, platform = ref.apply_path_shock(clusters, platform, "platform.take_rate", "set", row.value)
    want = ref.evaluate(clusters, 48, pf.discount_rate, platform=platform)
    assert want["portfolio"]["npv"] == pytest.approx(target, rel=1e-6)
    with pytest.raises(ConfigError, match="--cluster: platform.take_rate is a field of the portfolio's platform"):
        breakeven(pf, "platform.take_rate", "npv=0", cluster="a")


def test_breakeven_on_a_programme_has_rows_for_the_clusters_that_run_one(pf):
    rows = breakeven(pf, "optimization.energy_saving", "irr=0.05")
    assert [r.scope for r in rows] == ["portfolio", "a", "c"]
    for r in rows:
        if r.status == "solved":
            assert r.achieved == pytest.approx(0.05, abs=1e-6)


def test_breakeven_on_the_order_month_is_a_jump_between_whole_months(pf):
    """A whole month has no value in between: the answer is the two months either side of
    the crossing, with the reference's outputs there."""
    (row,) = breakeven(pf, "order_month", "npv=0", cluster="b")
    assert row.status == "jump" and row.value is None
    a, b = row.jump
    assert a == math.floor(a) and b == a + 1 and 6 < a < 48
    npvs = []
    for t_o in (a, b):
        clusters, platform = ref.apply_path_shock(reference_clusters(pf), reference_platform(pf), "order_month",
                                                  "set", t_o, cluster_mask=[False, True, False], horizon_months=48)
        npvs.append(ref.evaluate(clusters, 48, pf.discount_rate, platform=platform)["clusters"][1]["npv"])
    assert npvs[0] > 0 > npvs[1]
    assert row.jump_outputs == pytest.approx(tuple(npvs), rel=1e-9)


def test_shifted_portfolio_writes_the_scalars_back_and_a_curve_follows_it(pf, tmp_path):
    sc = grid(tmp_path, pf, [{"param": "order_month", "op": "set", "values": [0, 12], "clusters": ["b"]},
                             {"param": "platform.users_max", "op": "scale", "values": [0.5, 2.0]}])
    moved = shifted_portfolio(pf, sc.axes[0], 12.0)
    assert moved.scalars[1].values["order_month"] == 12.0 and pf.scalars[1].values["order_month"] == 6.0
    assert "order_month" not in moved.scalars[0].values
    assert shifted_portfolio(pf, sc.axes[1], 2.0).platform.values["platform.users_max"] == 1000.0
    assert pf.platform.values["platform.users_max"] == 500.0
    curve = breakeven_curve(pf, sc, "order_month", "platform.take_rate", "npv=0")
    assert curve["scopes"] == ["portfolio"] and curve["value"].shape == (2, 1)


# ------------------------------------------------------------------ gradients


@pytest.fixture(scope="module")
def sensitivities(tmp_path_factory):
    """(portfolio, grid, outputs) of one --sensitivities run on DOC, shared by the tests
    below (one compile of the reverse pass, not one per test); they only read it."""
    pytest.importorskip("jax")
    tmp = tmp_path_factory.mktemp("v2a-sensitivities")
    pf = load_portfolio_doc(tmp, DOC)
    sc = grid(tmp, pf, [{"param": "capex_decline", "op": "set", "values": [0.05, 0.2]},
                        {"param": "platform.take_rate", "op": "set", "values": [0.02, 0.06]},
                        {"param": "order_month", "op": "set", "values": [6, 12], "clusters": ["b"]}])
    run = prepare(pf, sc, make_backend("jax"), sensitivities=True)
    chunks = list(run.chunks())
    return pf, sc, {k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs}


def _point(pf, sc, flat):
    values = tuple(np.asarray(a.values) for a in sc.axes)
    p, r = apply_axis_values(pf.base_arrays(), np.asarray(pf.discount_rate), tuple(a.spec for a in sc.axes),
                             axis_point_values(values, np.asarray([flat])))
    return {k: np.array(np.broadcast_to(v, (1,) + v.shape[1:])) for k, v in p.items()}, np.broadcast_to(r, (1,))


def test_the_coordinate_has_the_scalars_but_the_months(sensitivities):
    pf, sc, out = sensitivities
    names = sensitivity_parameters(pf)
    scalars = names[names.index("capex_decline"):]
    assert scalars[:7] == ["capex_decline", "optimization.cost", "optimization.cost_per_year",
                           "optimization.ramp_months", "optimization.utilization_gain",
                           "optimization.energy_saving", "optimization.opex_saving"]
    assert "platform.take_rate" in scalars and len(scalars) == 7 + 10
    assert not {"order_month", "optimization.start_month", "platform.launch_month"} & set(names)
    assert out["grad_npv"].shape[-1] == len(names)
    # b runs no programme: its optimization cells are NaN, and expected so
    j = names.index("optimization.energy_saving")
    assert np.isnan(out["grad_npv"][:, 1, j]).all() and np.isfinite(out["grad_npv"][:, [0, 2], j]).all()
    assert never_parameters(pf, sc)[1, j] == ABSENT and never_parameters(pf, sc)[0, j] == 0
    # the platform's derivative in every cluster's row; a cluster's own NPV leaves it out
    k = names.index("platform.take_rate")
    assert np.all(out["grad_npv"][:, :, k] == out["grad_npv"][:, :1, k])
    assert np.all(out["grad_cluster_npv"][:, :, k] == 0.0)


@pytest.mark.parametrize("name", ["capex_decline", "optimization.energy_saving", "platform.take_rate",
                                  "optimization.cost", "platform.margin", "gpus", "on_demand_price"])
def test_gradients_match_central_differences(sensitivities, name):
    """grad_npv, grad_cluster_npv, grad_roi, grad_irr of each cluster's value (the
    platform's: its one value) against central differences of the kernels at the point;
    a version 1 key's portfolio gradient carries the platform's take of its revenue."""
    pf, sc, out = sensitivities
    names = sensitivity_parameters(pf)
    j = names.index(name)
    for flat in range(sc.size):
        p, r = _point(pf, sc, flat)
        for c in range(p[name].shape[-1]):
            if np.isnan(out["grad_npv"][flat, c, j]):
                continue
            h = 1e-6 * max(abs(float(p[name][0, c])), 1.0)
            sides = []
            for step in (h, -h):
                q = {k: v.copy() for k, v in p.items()}
                q[name][0, c] += step
                sides.append(evaluate(q, r, pf.horizon_months))
            for grad, output in (("grad_npv", "npv"), ("grad_roi", "roi"), ("grad_irr", "irr")):
                fd = (sides[0][output][0] - sides[1][output][0]) / (2 * h)
                assert out[grad][flat, c, j] == pytest.approx(fd, rel=2e-5, abs=1e-9 * max(abs(fd), 1e-3)), \
                    (flat, name, c, grad)
            fd = (sides[0]["cluster_npv"][0] - sides[1]["cluster_npv"][0]) / (2 * h)
            own = out["grad_cluster_npv"][flat, :, j]
            if name.startswith("platform."):
                assert np.all(own == 0.0) and np.allclose(fd, 0.0)
            else:
                assert own[c] == pytest.approx(fd[c], rel=2e-5, abs=1e-6), (flat, name, c)


def test_the_discount_rate_derivative_carries_the_platform(sensitivities):
    pf, sc, out = sensitivities
    for flat in (0, sc.size - 1):
        p, r = _point(pf, sc, flat)
        h = 1e-7
        up, down = (evaluate(p, r + step, pf.horizon_months)["npv"][0] for step in (h, -h))
        fd = (up - down) / (2 * h)
        assert out["grad_npv_discount_rate"][flat] == pytest.approx(fd, rel=1e-6)


@needs_jax
def test_factored_sensitivities_equal_the_full_ones(pf, tmp_path):
    sc = grid(tmp_path, pf, [{"param": "platform.take_rate", "op": "set", "values": [0.01, 0.05]},
                             {"shock": "price", "values": [0.6, 0.8, 1.0, 1.2]},
                             {"shock": "energy", "values": [0.5, 1.0, 1.5, 2.0]}])

    def run(factor):
        r = prepare(pf, sc, make_backend("jax"), sensitivities=True, factor=factor)
        assert (r.factoring is not None) == factor
        parts = list(r.chunks())
        return {k: np.concatenate([c.outputs[k] for c in parts]) for k in parts[0].outputs}

    a, b = run(True), run(False)
    for k in ("grad_npv", "grad_cluster_npv", "grad_roi", "grad_irr", "grad_npv_discount_rate", "slope_npv"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-8, atol=1e-6, err_msg=k)


# ------------------------------------------------------------------ tornado


def test_tornado_has_bars_for_the_scalars_but_the_months(pf):
    pytest.importorskip("jax")
    from stresstest.tornado import tornado

    result = tornado(pf)
    portfolio = {r["parameter"]: r for r in result["scopes"]["portfolio"]}
    for name in ("capex_decline", "platform.take_rate", "platform.users_max", "optimization.energy_saving"):
        assert name in portfolio, name
    assert not {"order_month", "optimization.start_month", "platform.launch_month"} & set(portfolio)
    assert not any(r["parameter"].startswith("platform.") for r in result["scopes"]["a"])
    assert not any(r["parameter"].startswith("optimization.") for r in result["scopes"]["b"])
    assert "optimization.energy_saving" in {r["parameter"] for r in result["scopes"]["c"]}
    # the take rate: linear in the platform's flows, so the linear and exact changes agree
    row = portfolio["platform.take_rate"]
    assert row["value"] == 0.04 and row["exact_up"] == pytest.approx(row["linear_up"], rel=1e-9)
    clusters, platform = ref.apply_path_shock(reference_clusters(pf), reference_platform(pf), "platform.take_rate",
                                              "scale", 1.1)
    want = ref.evaluate(clusters, 48, pf.discount_rate, platform=platform)["portfolio"]["npv"]
    assert row["exact_up"] == pytest.approx(want - result["base_npv"], rel=1e-9)
