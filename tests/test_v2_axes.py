"""Version 2 item fields addressed by path (docs/model.md, "Addressing the new fields"):
grid axes, named shock sets, breakeven and the tornado, against the plain-loop reference
(tests/reference_model.py: apply_shock for version 1 keys and named shocks, then
apply_path_shock for the paths, as MODEL.md orders them)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from helpers import assert_close, load_portfolio_doc, reference_clusters, reference_v2_at, run_all

import reference_model as ref
from stresstest.backends import make_backend
from stresstest.config import config_json, portfolio_from_dict
from stresstest.engine import grid_point
from stresstest.factoring import plan
from stresstest.grid_config import scenario_from_dict
from stresstest.kernels.metrics import evaluate
from stresstest.kernels.params import MODEL_VERSION_2, OUTPUTS
from stresstest.loaders import load_scenario
from stresstest.named import shocked
from stresstest.validation import ConfigError

# a: its own contracts (one labelled, one lost at month 18) and segments; b: version 1
# keys only (implied anchor and others, one implied segment); c: its own segment, implied
# contracts
V2 = {
    "portfolio": {"name": "v2-axes", "horizon_months": 48, "discount_rate": 0.08},
    "defaults": {"gpus": 512, "capex_per_gpu": 30000, "on_demand_price": 2.4},
    "clusters": [
        {"name": "a", "debt_fraction": 0.5,
         "contracts": [{"name": "bank", "share": 0.3, "price": 2.0, "industry": "finance"},
                       {"name": "lab", "share": 0.2, "price": 1.8, "loss_month": 18, "term_months": 12}],
         "segments": [{"name": "train", "share": 0.6, "utilization": 0.7},
                      {"name": "infer", "share": 0.4, "utilization": 0.8, "price_multiplier": 1.3}]},
        {"name": "b", "reserved_share": 0.6, "reserved_price": 1.9, "top_client_share": 0.4,
         "client_loss_month": 30, "reserved_term_months": 24},
        {"name": "c", "gpus": 256, "reserved_share": 0.3, "reserved_price": 2.1,
         "segments": [{"name": "train", "share": 1.0, "utilization": 0.75}]},
    ],
}
# version 1 only: every item implied
V1 = {
    "portfolio": {"name": "v1-axes", "horizon_months": 36, "discount_rate": 0.1},
    "defaults": {"gpus": 256, "capex_per_gpu": 28000, "on_demand_price": 2.2},
    "clusters": [
        {"name": "x", "reserved_share": 0.7, "reserved_price": 2.0, "top_client_share": 0.5,
         "client_loss_month": 20, "reserved_term_months": 12},
        {"name": "y", "reserved_share": 0.4, "reserved_price": 1.7, "inference_share": 0.8},
    ],
}


def grid_file(tmp_path, axes: list[dict], name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"scenario": {"kind": "grid", "axes": axes}}, sort_keys=False))
    return path


def reference_point(pf, sc, flat: int):
    """The reference's outputs at one grid point: the scenario's axes, each at its value there."""
    point = grid_point(sc, flat)
    axes = [dataclasses.replace(a, values=np.asarray([point[a.name]])) for a in sc.axes]
    return reference_v2_at(pf, axes, 0)[0]


def assert_matches_reference(pf, sc, out, flats):
    labels = pf.industries
    for flat in flats:
        want = reference_point(pf, sc, flat)
        scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters)
        where = f"flat={flat} {grid_point(sc, flat)}"
        for name in OUTPUTS:
            assert_close(name, float(out[name][flat]), want["portfolio"][name], scale, where=where)
            for c in range(len(pf.clusters)):
                assert_close(name, float(out["cluster_" + name][flat, c]), want["clusters"][c][name], scale,
                             where=f"{where} cluster {c}")
        by_industry = want["v2"]["revenue_by_industry"]
        for i, label in enumerate(labels):
            assert_close("revenue", float(out["revenue_by_industry"][flat, i]), by_industry.get(label, 0.0),
                         scale, where=f"{where} industry {label}")


V2_GRIDS = {
    "named and every contract": [
        {"param": "contracts.bank.price", "op": "scale", "values": [0.5, 1.5]},
        {"param": "contracts.*.renewal_rate", "op": "shift", "values": [-0.3, 0.4]}],
    "a loss month and a named segment": [
        {"param": "contracts.lab.loss_month", "op": "set", "values": [6, 40]},
        {"param": "segments.infer.utilization", "op": "set", "values": [0.2, 1.0]}],
    "segment shares renormalised": [
        {"param": "segments.*.price_multiplier", "op": "scale", "values": [0.5, 2.0]},
        {"param": "segments.train.share", "op": "scale", "values": [0.5, 3.0]}],
    "contract shares scaled down, an implied anchor": [
        {"param": "contracts.anchor.share", "op": "set", "values": [0.0, 0.5], "clusters": ["b"]},
        {"param": "contracts.*.share", "op": "scale", "values": [1.0, 2.5]}],
    "the named utilization, then every segment": [
        {"shock": "utilization", "values": [-0.1, 0.2]},
        {"param": "segments.*.utilization", "op": "shift", "values": [-0.5, 0.3]}],
    "implied contracts of chosen clusters": [
        {"param": "contracts.*.term_months", "op": "set", "values": [6, 24]},
        {"param": "contracts.others.utilization", "op": "shift", "values": [-0.2, 0.3], "clusters": ["b", "c"]}],
    "a version 1 key before the path": [
        {"param": "reserved_price", "op": "scale", "values": [0.5, 1.2]},
        {"param": "contracts.anchor.price", "op": "shift", "values": [0.3, -0.5]}],
}
V1_GRIDS = {
    "anchor and others": [
        {"param": "contracts.anchor.share", "op": "set", "values": [0.1, 0.5]},
        {"param": "contracts.others.price", "op": "scale", "values": [0.8, 1.2]}],
    "every contract, the implied segment of one cluster": [
        {"param": "contracts.*.loss_month", "op": "set", "values": [12, 50]},
        {"param": "segments.*.utilization", "op": "shift", "values": [-0.2, 0.1], "clusters": ["x"]}],
    "the implied segment beside a named shock": [
        {"param": "segments.*.price_multiplier", "op": "set", "values": [0.5, 1.5]},
        {"shock": "price", "values": [0.8, 1.2]}],
}


@pytest.mark.parametrize("case", list(V2_GRIDS))
def test_each_path_form_on_a_v2_portfolio_matches_the_reference(tmp_path, case):
    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, V2_GRIDS[case]), pf)
    out = run_all(pf, sc, make_backend("numpy"))
    assert_matches_reference(pf, sc, out, range(sc.size))


@pytest.mark.parametrize("case", list(V1_GRIDS))
def test_each_path_form_on_a_v1_portfolio_matches_the_reference(tmp_path, case):
    pf = load_portfolio_doc(tmp_path, V1)
    assert not pf.itemised
    sc = load_scenario(grid_file(tmp_path, V1_GRIDS[case]), pf)
    assert pf.itemised and pf.model_version == MODEL_VERSION_2  # a path makes it carry items
    out = run_all(pf, sc, make_backend("numpy"))
    assert_matches_reference(pf, sc, out, range(sc.size))


def test_paths_on_the_compiled_backend(tmp_path):
    pytest.importorskip("jax")
    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, V2_GRIDS["contract shares scaled down, an implied anchor"]
                                 + V2_GRIDS["a loss month and a named segment"]), pf)
    out = run_all(pf, sc, make_backend("jax"))
    assert_matches_reference(pf, sc, out, [0, 5, 10, 15])


def test_axes_and_masks_of_the_paths(tmp_path):
    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, [
        {"param": "contracts.lab.loss_month", "op": "set", "values": [12]},
        {"param": "contracts.*.price", "op": "scale", "values": [1.1]},
        {"param": "segments.*.utilization", "op": "shift", "values": [0.1], "clusters": ["b", "c"]},
        {"param": "segments.train.share", "op": "scale", "values": [2.0], "name": "train_share"},
        {"shock": "utilization", "values": [0.0]}]), pf)
    axes = {a.name: a for a in sc.axes}
    # default names: the path as a word
    assert list(axes) == ["contracts_lab_loss_month", "contracts_all_price", "segments_all_utilization",
                          "train_share", "utilization"]
    lab = axes["contracts_lab_loss_month"].spec
    assert lab.targets == ("contracts.loss_month",) and lab.item_mask == ((False, True), (False, False),
                                                                          (False, False))
    assert axes["contracts_all_price"].spec.item_mask == ((True, True),) * 3
    seg = axes["segments_all_utilization"].spec
    assert seg.cluster_mask == (False, True, True) and seg.item_mask == ((False, False), (True, False),
                                                                         (True, False))
    assert axes["train_share"].spec.item_mask == ((True, False), (False, False), (True, False))
    # the named utilization shock moves the segments of an itemised portfolio too
    assert axes["utilization"].spec.targets == ("utilization_training", "utilization_inference",
                                                "segments.utilization")
    # the scenario round-trips through a result file's config with its item masks
    cfg = json.loads(config_json(pf, sc)[0])
    back = scenario_from_dict(cfg["scenario"], portfolio_from_dict(cfg["portfolio"]))
    assert [a.spec for a in back.axes] == [a.spec for a in sc.axes]


def test_v1_axes_keep_a_v1_portfolio_as_it_was(tmp_path):
    pf = load_portfolio_doc(tmp_path, V1)
    sc = load_scenario(grid_file(tmp_path, [{"shock": "utilization", "values": [0.0, 0.1]},
                                            {"param": "reserved_price", "op": "scale", "values": [1.0]}]), pf)
    assert not pf.itemised and pf.model_version == 1
    assert sc.axes[0].spec.targets == ("utilization_training", "utilization_inference")
    assert "contracts.share" not in pf.base_arrays()


def test_the_named_utilization_moves_explicit_segments_and_the_v1_keys_of_implied_ones(tmp_path):
    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, [{"shock": "utilization", "values": [-0.3, 0.0, 0.25]}]), pf)
    out = run_all(pf, sc, make_backend("numpy"))
    assert_matches_reference(pf, sc, out, range(3))
    # it moves every cluster: a and c through their segments, b through u_T and u_I
    for c in range(3):
        assert out["cluster_revenue"][0, c] < out["cluster_revenue"][1, c] < out["cluster_revenue"][2, c]


def test_paths_refused_with_the_names_that_exist(tmp_path):
    pf = load_portfolio_doc(tmp_path, V2)
    path = grid_file(tmp_path, [
        {"param": "contracts.bnak.price", "op": "scale", "values": [1.0]},
        {"param": "segments.train.share", "op": "scale", "values": [1.0], "clusters": ["b"]},
        {"param": "segments.*.utilization_sigma", "op": "set", "values": [0.1]},
        {"param": "contracts.bank.term_months", "op": "set", "values": [0.5]},
        {"param": "contracts.anchor.price", "op": "set", "values": [1.0], "clusters": ["a"]}])
    with pytest.raises(ConfigError) as err:
        load_scenario(path, pf)
    assert err.value.problems == [
        f"{path}: scenario.axes[0].param: no cluster has a contract 'bnak'; did you mean 'bank'? "
        "(contracts: a: bank, lab; b: anchor, others; c: anchor, others)",
        f"{path}: scenario.axes[1].param: none of the clusters given has a segment 'train' "
        "(segments: b: one implied segment, reached only by segments.*.share)",
        f"{path}: scenario.axes[2].param: utilization_sigma shapes only the Monte Carlo paths: a grid axis "
        "or a shock cannot move it (fields: share, utilization, price_multiplier)",
        f"{path}: scenario.axes[3].values: value 0 for contracts.bank.term_months: must be >= 1, got 0.5",
        f"{path}: scenario.axes[4].param: none of the clusters given has a contract 'anchor' "
        "(contracts: a: bank, lab)",
    ]
    v1 = load_portfolio_doc(tmp_path, V1, "v1.yaml")
    with pytest.raises(ConfigError):
        load_scenario(path, v1)
    assert not v1.itemised  # a refused scenario leaves the portfolio as it was


def test_factored_grid_with_a_path_on_implied_contracts(tmp_path):
    """An axis on implied contracts by path clips and balances shares derived from the
    version 1 keys: an axis on those keys is then evaluated in full, not interpolated."""
    pf = load_portfolio_doc(tmp_path, V2)
    share = {"param": "reserved_share", "op": "set", "linspace": [0.2, 0.9, 8]}
    alone = load_scenario(grid_file(tmp_path, [share], "alone.yaml"), pf)
    assert plan(pf, alone, 10**6).affine == (0,)  # interpolated alone
    sc = load_scenario(grid_file(tmp_path, [
        {"param": "contracts.anchor.share", "op": "shift", "values": [0.0, 0.5], "clusters": ["b"]}, share]), pf)
    assert plan(pf, sc, 10**6) is None
    be = make_backend("numpy")
    from stresstest.engine import prepare

    full = np.concatenate([p.outputs["cluster_npv"] for p in prepare(pf, sc, be, factor=False).chunks()])
    assert np.array_equal(run_all(pf, sc, be)["cluster_npv"], full)
    assert_matches_reference(pf, sc, run_all(pf, sc, be), [1, 7, 15])


# ------------------------------------------------------------------ named shock sets


def named_files(tmp_path, shocks: list[dict], sources: dict) -> object:
    shockset = {"shockset": {"name": "paths", "title": "Paths", "sources": sources, "shocks": shocks}}
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(shockset, sort_keys=False))
    scenario = tmp_path / "named.yaml"
    scenario.write_text(yaml.safe_dump({"scenario": {"kind": "named", "sets": ["paths.yaml"]}}))
    return scenario


def reference_named(pf, s):
    clusters = reference_clusters(pf)
    for sh in s.shocks:  # version 1 keys and named shocks first, then the paths
        if sh.word.partition(".")[0] not in ("contracts", "segments"):
            clusters = [ref.apply_shock(c, sh.word, sh.op, sh.value) if sh.clusters is None or n in sh.clusters
                        else c for c, n in zip(clusters, pf.cluster_names)]
    for sh in s.shocks:
        if sh.word.partition(".")[0] in ("contracts", "segments"):
            mask = None if sh.clusters is None else [n in sh.clusters for n in pf.cluster_names]
            clusters, _ = ref.apply_path_shock(clusters, None, sh.word, sh.op, sh.value, cluster_mask=mask)
    return ref.evaluate(ref.balance_shares(clusters), pf.horizon_months, pf.discount_rate)


@pytest.mark.parametrize("doc", [V1, V2], ids=["v1", "v2"])
def test_named_sets_use_paths(tmp_path, doc):
    pf = load_portfolio_doc(tmp_path, doc)
    shocks = [{"param": "contracts.anchor.loss_month", "op": "set", "value": 18},
              {"param": "segments.*.price_multiplier", "op": "scale", "value": 1.2, "clusters": [pf.cluster_names[0]]},
              {"shock": "utilization", "value": -0.1},
              {"param": "reserved_price", "op": "scale", "value": 0.9}]
    sources = {k: "test" for k in ("contracts.anchor.loss_month", "segments.*.price_multiplier", "utilization",
                                   "reserved_price")}
    sc = load_scenario(named_files(tmp_path, shocks, sources), pf)
    assert pf.itemised  # a path makes it carry items, and the named utilization moves segments
    assert sc.sets[0].shocks[2].targets[-1] == "segments.utilization"
    params, rate = shocked(pf, sc.sets)
    with np.errstate(all="ignore"):
        out = evaluate(params, rate, pf.horizon_months)
    want = reference_named(pf, sc.sets[0])
    base = ref.evaluate(reference_clusters(pf), pf.horizon_months, pf.discount_rate)
    scale = sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)
    for row, expected in ((0, base), (1, want)):
        for name in OUTPUTS:
            assert_close(name, float(out[name][row]), expected["portfolio"][name], scale, where=f"row {row}")


def test_named_set_path_refused(tmp_path):
    pf = load_portfolio_doc(tmp_path, V1)
    shocks = [{"param": "contracts.bank.price", "op": "scale", "value": 0.5},
              {"param": "contracts.anchor.share", "op": "set", "value": 1.5},
              {"param": "segments.pool.utilization", "op": "shift", "value": 0.1}]
    sources = {s["param"]: "test" for s in shocks}
    scenario = named_files(tmp_path, shocks, sources)
    with pytest.raises(ConfigError) as err:
        load_scenario(scenario, pf)
    where = f"{tmp_path / 'paths.yaml'}: shockset.shocks"
    assert err.value.problems == [
        f"{where}[0].param: no cluster has a contract 'bank' (contracts: x: anchor, others; y: anchor, others)",
        f"{where}[1].value: must be <= 1, got 1.5 (a percent? 1.5 % is 0.015)",
        f"{where}[2].param: no cluster has a segment 'pool' (segments: x: one implied segment, reached only by "
        "segments.*.utilization; y: one implied segment, reached only by segments.*.utilization)",
    ]
    assert not pf.itemised


# ------------------------------------------------------------------------ breakeven


def reference_npv(pf, path=None, value=None, mask=None) -> dict:
    clusters = reference_clusters(pf)
    if path is not None:
        clusters, _ = ref.apply_path_shock(clusters, None, path, "set", value, cluster_mask=mask)
    return ref.evaluate(ref.balance_shares(clusters), pf.horizon_months, pf.discount_rate)


def test_breakeven_on_a_path_meets_the_target_when_substituted_back(tmp_path):
    pytest.importorskip("jax")
    from stresstest.breakeven import breakeven

    pf = load_portfolio_doc(tmp_path, V2)
    base = reference_npv(pf)
    level = base["portfolio"]["npv"] + 2e6
    rows = breakeven(pf, "contracts.bank.price", f"npv={level!r}")
    assert [r.scope for r in rows] == ["portfolio", "a"]  # only a has a contract "bank"
    port = rows[0]
    assert port.status == "solved" and port.base_value == 2.0 and port.value_in_units == pytest.approx(port.value)
    got = reference_npv(pf, "contracts.bank.price", port.value)["portfolio"]["npv"]
    assert got == pytest.approx(level, rel=1e-9)
    level_a = base["clusters"][0]["npv"] + 1e6
    (row,) = breakeven(pf, "contracts.bank.price", f"npv={level_a!r}", cluster="a")
    got = reference_npv(pf, "contracts.bank.price", row.value)["clusters"][0]["npv"]
    assert row.scope == "a" and got == pytest.approx(level_a, rel=1e-9)
    with pytest.raises(ConfigError, match="none of the clusters given has a contract 'bank'"):
        breakeven(pf, "contracts.bank.price", "npv=0", cluster="b")


def test_breakeven_on_implied_contracts_of_a_v1_portfolio(tmp_path):
    pytest.importorskip("jax")
    from stresstest.breakeven import breakeven

    pf = load_portfolio_doc(tmp_path, V1)
    level = reference_npv(pf)["clusters"][0]["npv"] - 1e6
    (row,) = breakeven(pf, "contracts.anchor.price", f"npv={level!r}", cluster="x")
    assert pf.itemised and row.status == "solved" and row.base_value == 2.0
    got = reference_npv(pf, "contracts.anchor.price", row.value, [True, False])["clusters"][0]["npv"]
    assert got == pytest.approx(level, rel=1e-9)
    # the portfolio's base: the items' prices weighted by the GPUs each contract covers
    rows = breakeven(pf, "contracts.*.price", "npv=0")
    x_gpus, y_gpus = 256 * 0.7, 256 * 0.4  # x: anchor and others at 2.0; y: others only (no top client)
    assert rows[0].base_value == pytest.approx((x_gpus * 2.0 + y_gpus * 1.7) / (x_gpus + y_gpus), rel=1e-12)
    assert [r.base_value for r in rows[1:]] == [2.0, pytest.approx(1.7)]


def test_breakeven_of_the_named_utilization_reports_the_pools_mean_utilization(tmp_path):
    pytest.importorskip("jax")
    from stresstest.breakeven import breakeven

    pf = load_portfolio_doc(tmp_path, V2)
    level = reference_npv(pf)["clusters"][0]["npv"] - 1e6
    (row,) = breakeven(pf, "utilization", f"npv={level!r}", cluster="a")
    assert row.status == "solved" and row.quantity == "on-demand utilization"
    assert row.base_in_units == pytest.approx(0.6 * 0.7 + 0.4 * 0.8, rel=1e-12)
    pool = 0.6 * min(max(0.7 + row.value, 0.0), 1.0) + 0.4 * min(max(0.8 + row.value, 0.0), 1.0)
    assert row.value_in_units == pytest.approx(pool, rel=1e-12)
    clusters = [ref.apply_shock(c, "utilization", "shift", row.value) for c in reference_clusters(pf)]
    got = ref.evaluate(clusters, pf.horizon_months, pf.discount_rate)["clusters"][0]["npv"]
    assert got == pytest.approx(level, rel=1e-9)
    # the portfolio's row: weighted by the on-demand GPUs, N (1 - the contracts' shares)
    port = breakeven(pf, "utilization", "npv=0")[0]
    weights = [512 * 0.5, 512 * 0.4, 256 * 0.7]
    pools = [0.74, 0.5 * 0.7 + 0.5 * 0.8, 0.75]
    assert port.base_in_units == pytest.approx(np.dot(weights, pools) / sum(weights), rel=1e-12)


def test_a_shifted_portfolio_is_the_axis_applied(tmp_path):
    """A breakeven curve's base case at an axis value (items written back) gives the
    outputs of the axis applied."""
    from stresstest.breakeven import model_params, shifted_portfolio
    from stresstest.kernels.shocks import apply_axis_values

    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, [
        {"param": "contracts.*.share", "op": "scale", "values": [0.5, 2.0]},
        {"param": "segments.*.price_multiplier", "op": "scale", "values": [1.5]},
        {"param": "contracts.anchor.price", "op": "shift", "values": [-0.4], "clusters": ["b"]},
        {"shock": "utilization", "values": [-0.2]},
        {"param": "reserved_share", "op": "set", "values": [0.8]}]), pf)
    rate = np.asarray([pf.discount_rate])
    for axis in sc.axes:
        for v in axis.values:
            p, r = apply_axis_values(pf.base_arrays(), np.asarray(pf.discount_rate), (axis.spec,), (np.asarray([v]),))
            want = evaluate(p, np.reshape(r, (1,)), pf.horizon_months)
            shifted = shifted_portfolio(pf, axis, float(v))
            got = evaluate(model_params(shifted), rate, pf.horizon_months)
            for name in ("npv", "cluster_npv", "cluster_revenue", "revenue_by_industry"):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=f"{axis.name}={v} {name}")


def test_a_curve_refuses_an_axis_on_the_items_it_solves_for(tmp_path):
    from stresstest.breakeven import check_curve_question

    pf = load_portfolio_doc(tmp_path, V2)
    sc = load_scenario(grid_file(tmp_path, [
        {"param": "contracts.*.price", "op": "scale", "values": [0.9, 1.1]},
        {"param": "contracts.lab.price", "op": "scale", "values": [0.9, 1.1]},
        {"shock": "utilization", "values": [0.0, 0.1]}]), pf)
    with pytest.raises(ConfigError, match="axis 'contracts_all_price' moves contracts.price, which --param"):
        check_curve_question(pf, sc, "contracts_all_price", "contracts.bank.price", "npv=0")
    with pytest.raises(ConfigError, match="axis 'utilization' moves segments.utilization"):
        check_curve_question(pf, sc, "utilization", "segments.train.utilization", "npv=0")
    check_curve_question(pf, sc, "contracts_lab_price", "contracts.bank.price", "npv=0")  # another item


# -------------------------------------------------------------------------- tornado


def test_tornado_has_a_bar_per_item_field(tmp_path):
    pytest.importorskip("jax")
    from stresstest.tornado import tornado

    pf = load_portfolio_doc(tmp_path, V2)
    res = tornado(pf)
    rows = {scope: {r["parameter"]: r for r in scope_rows} for scope, scope_rows in res["scopes"].items()}
    # each cluster's own items (an implied book: anchor and others), by path
    assert {"contracts.bank.price", "contracts.lab.loss_month", "segments.infer.utilization",
            "segments.train.share"} <= set(rows["a"])
    assert {"contracts.anchor.price", "contracts.others.share"} <= set(rows["b"])
    assert not any(p.startswith("segments.") for p in rows["b"])  # its implied segment: the v1 keys
    assert "reserved_share" not in rows["a"] and "utilization_training" not in rows["c"]  # replaced there
    assert rows["a"]["contracts.lab.loss_month"]["step"] and not rows["a"]["contracts.bank.price"]["step"]
    # the portfolio's bar moves the item in every cluster that has one of that name
    assert rows["portfolio"]["contracts.others.price"]["value"] is None
    assert rows["portfolio"]["contracts.bank.price"]["value"] == 2.0
    base = reference_npv(pf)["portfolio"]["npv"]
    for scope, path, mask in (("a", "contracts.bank.price", [True, False, False]),
                              ("b", "contracts.anchor.price", [False, True, False]),
                              ("portfolio", "contracts.others.price", None),
                              ("a", "segments.infer.utilization", [True, False, False])):
        row = rows[scope][path]
        clusters, _ = ref.apply_path_shock(reference_clusters(pf), None, path, "scale", 1.1, cluster_mask=mask)
        clusters = ref.balance_shares(clusters)
        want = ref.evaluate(clusters, pf.horizon_months, pf.discount_rate)["portfolio"]["npv"] - base
        assert row["exact_up"] == pytest.approx(want, rel=1e-8, abs=1e-3), (scope, path)
        # NPV is linear in a contract's price and, away from its clip, a segment's utilization
        assert row["linear_up"] == pytest.approx(row["exact_up"], rel=1e-8), (scope, path)
