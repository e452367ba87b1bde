"""Version 2, part 2 from the file's side (issue 27): order_month and capex_decline per
cluster, optimization programmes, the platform layer in the portfolio: block.

Loading (what each cluster resolves to, which arrays the kernels get), closed forms
through the command line on the numpy backend (a cluster ordered later, a take-rate
platform, a one-off programme cost), a mixed portfolio against the plain-loop reference,
version 1 unchanged, what `show` and `run` print, and the refused files
tests/bad_inputs/v2b_*.yaml.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import reference_model as ref
from stresstest.cli import main
from stresstest.config import load_portfolio, portfolio_from_dict
from stresstest.engine import evaluate_base
from stresstest.items import industry_labels
from stresstest.kernels.cashflows import cash_flows
from stresstest.kernels.params import (OPTIMIZATION_PARAMS, OPTIMIZATION_START_GIVEN, ORDER_PARAMS, PARAM_NAMES,
                                       PLATFORM_PARAMS)
from stresstest.kernels.shocks import apply_axis_values

HERE = Path(__file__).parent / "bad_inputs"
VALID_P, VALID_S = HERE / "valid_portfolio.yaml", HERE / "valid_scenario.yaml"  # test_bad_inputs.py's

# One cluster without calendar effects: a flat market (no price decline, no next
# generation within any horizon), no escalation, no client lost; with debt and staff,
# so that the loan's and the staff's clocks count too.
FLAT = {"name": "a", "gpus": 64, "capex_per_gpu": 30000, "on_demand_price": 2.2, "reserved_share": 0.4,
        "reserved_price": 2.0, "price_decline": 0.0, "next_gen_month": 10000, "energy_escalation": 0.0,
        "opex_escalation": 0.0, "staff_cost_per_year": 120000, "debt_fraction": 0.5, "delivery_months": 3}
GRID = {"scenario": {"kind": "grid", "axes": [{"shock": "price", "values": [0.9, 1.0]}]}}


def _doc(clusters, horizon=48, rate=0.1, defaults=None, platform=None) -> dict:
    block = {"name": "t", "horizon_months": horizon, "discount_rate": rate}
    if platform is not None:
        block["platform"] = platform
    doc = {"portfolio": block, "clusters": clusters}
    if defaults is not None:
        doc["defaults"] = defaults
    return doc


def _write(tmp_path: Path, doc: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _load(tmp_path: Path, doc: dict):
    return load_portfolio(_write(tmp_path, doc))


def _run_cli(tmp_path: Path, doc: dict, name: str) -> dict:
    """`stresstest run` of the portfolio `doc` on a two-point price grid (numpy): the
    grid's outputs and the base group's, as arrays, and the file's attributes."""
    portfolio, scenario = _write(tmp_path, doc, f"{name}.yaml"), _write(tmp_path, GRID, f"{name}_s.yaml")
    out = tmp_path / f"{name}.h5"
    result = CliRunner().invoke(main, ["run", str(portfolio), "-s", str(scenario), "-o", str(out),
                                       "--backend", "numpy", "-q"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        return {"grid": {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)},
                "base": {k: f["base"][k][()] for k in f["base"]}, "attrs": dict(f.attrs)}


# ---------------------------------------------------------------------- loading


def test_a_programme_in_defaults_is_replaced_whole_by_a_clusters_own(tmp_path):
    defaults = {"gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0,
                "optimization": {"cost": 100000, "energy_saving": 0.2, "start_month": 6}}
    pf = _load(tmp_path, _doc([{"name": "a"}, {"name": "b", "optimization": {"cost_per_year": 50000}}],
                              defaults=defaults))
    a, b = pf.scalars
    assert a.values["optimization.cost"] == 100000 and a.origins["optimization.cost"] == "defaults"
    assert a.values["optimization.energy_saving"] == 0.2 and a.values["optimization.start_month"] == 6
    assert a.values["optimization.ramp_months"] == 6 and a.origins["optimization.ramp_months"] == "model"
    # b's own mapping stands alone: nothing of defaults' programme is merged in
    assert b.values["optimization.cost_per_year"] == 50000 and b.origins["optimization.cost_per_year"] == "cluster"
    assert b.values["optimization.cost"] == 0 and b.origins["optimization.cost"] == "model"
    assert b.values["optimization.energy_saving"] == 0 and "optimization.start_month" not in b.values
    arrays = pf.base_arrays()
    np.testing.assert_array_equal(arrays["optimization.energy_saving"], [0.2, 0.0])
    np.testing.assert_array_equal(arrays[OPTIMIZATION_START_GIVEN], [1.0, 0.0])


def test_start_month_flag_and_clusters_without_a_programme(tmp_path):
    """start_given is 1 only where the file gives the start month; a cluster without a
    programme carries cost 0 and no effect (the Param defaults), and no flag."""
    base = {"gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0}
    pf = _load(tmp_path, _doc([{"name": "a", **base, "optimization": {"start_month": 9, "opex_saving": 0.1}},
                               {"name": "b", **base, "optimization": {"opex_saving": 0.1}},
                               {"name": "c", **base}]))
    arrays = pf.base_arrays()
    np.testing.assert_array_equal(arrays[OPTIMIZATION_START_GIVEN], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(arrays["optimization.start_month"], [9.0, 1.0, 1.0])
    for spec in OPTIMIZATION_PARAMS:
        assert arrays[spec.name][2] == spec.default
    assert [s.programme for s in pf.scalars] == [True, True, False]
    assert "order_month" not in arrays and not any(k.startswith("platform.") for k in arrays)


def test_platform_arrays_have_one_column_with_the_models_defaults(tmp_path):
    cluster = {"name": "a", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0}
    pf = _load(tmp_path, _doc([cluster], platform={"take_rate": 0.05, "launch_month": 12}))
    arrays = pf.base_arrays()
    for spec in PLATFORM_PARAMS:
        assert arrays[spec.name].shape == (1,)
        want = {"platform.take_rate": 0.05, "platform.launch_month": 12}.get(spec.name, spec.default)
        assert arrays[spec.name][0] == want, spec.name
    assert pf.platform.origins["platform.take_rate"] == "file"
    assert pf.platform.origins["platform.margin"] == "default"
    assert pf.has_platform and pf.itemised and pf.model_version == 2
    assert not any(k.startswith("optimization.") for k in arrays) and "order_month" not in arrays
    # the platform's revenue is the last industry label; no item carries it
    assert industry_labels(pf.items, pf.has_platform) == ["unlabelled", "platform"]
    assert arrays["contracts.industry"].shape[-1] == 2 and not arrays["contracts.industry"][..., 1].any()


def test_order_month_alone_switches_on_its_group_only(tmp_path):
    cluster = {"name": "a", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0}
    pf = _load(tmp_path, _doc([cluster, {**cluster, "name": "b", "capex_decline": 0.2}]))
    arrays = pf.base_arrays()
    assert pf.groups == {"order"} and pf.itemised
    np.testing.assert_array_equal(arrays["order_month"], [0.0, 0.0])
    np.testing.assert_array_equal(arrays["capex_decline"], [0.0, 0.2])
    assert not any(k.startswith(("optimization.", "platform.")) for k in arrays)
    assert "contracts.share" in arrays  # itemised: the item arrays, revenue by industry


def test_an_order_that_goes_live_past_the_horizon_is_a_warning(tmp_path):
    cluster = {"name": "a", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0}
    pf = _load(tmp_path, _doc([{**cluster, "order_month": 22}, {**cluster, "name": "b", "order_month": 20}],
                              horizon=24))
    assert pf.warnings == [f"{tmp_path / 'p.yaml'}: clusters[0].order_month: ordered at month 22 with 3 months of "
                           "delivery, the cluster goes live at month 25, at or past the horizon (24 months): it earns "
                           "nothing within it, so its IRR and ROI mean little"]


def test_a_version_1_portfolio_keeps_its_arrays_and_json(tmp_path):
    pf = load_portfolio(VALID_P)
    assert list(pf.base_arrays()) == list(PARAM_NAMES)
    assert not pf.itemised and pf.model_version == 1 and pf.groups == set() and pf.platform is None
    d = pf.to_dict()
    assert set(d) == {"name", "currency", "horizon_months", "discount_rate", "sources", "clusters"}
    for c in d["clusters"]:
        assert set(c) == {"name", "gpu_market", "power_market", "sources", *PARAM_NAMES}
    assert portfolio_from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_a_scenario_may_switch_on_a_group_the_file_does_not_use():
    pf = load_portfolio(VALID_P)
    pf.use("order")
    arrays = pf.base_arrays()
    assert pf.itemised and pf.model_version == 2
    np.testing.assert_array_equal(arrays["order_month"], [0.0, 0.0])
    assert portfolio_from_dict(json.loads(json.dumps(pf.to_dict()))).groups == {"order"}
    with pytest.raises(ValueError, match="unknown group"):
        pf.use("tranche")


def test_every_new_field_round_trips_through_the_config_json(tmp_path):
    base = {"gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0}
    doc = _doc([{"name": "a", **base, "order_month": 12, "capex_decline": 0.1,
                 "optimization": {"cost": 5e4, "start_month": 14, "utilization_gain": 0.05}},
                {"name": "b", **base, "optimization": {"energy_saving": 0.3}},
                {"name": "c", **base}],
               platform={"take_rate": 0.1, "users_max": 500, "fee_per_user_month": 30, "margin": 0.6})
    pf = _load(tmp_path, doc)
    d = json.loads(json.dumps(pf.to_dict()))
    assert d["clusters"][1]["optimization"]["start_month"] is None  # the default rule
    back = portfolio_from_dict(d)
    assert back.to_dict() == d
    want, got = pf.base_arrays(), back.base_arrays()
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _flows(arrays: dict, horizon: int) -> dict:
    """The kernels' cash flows of base arrays, implied items derived as in a run."""
    p, _ = apply_axis_values({k: np.asarray(v) for k, v in arrays.items()}, np.asarray(0.1), (), ())
    with np.errstate(all="ignore"):
        return cash_flows(p, horizon)


def test_a_cluster_without_a_programme_keeps_its_flows_bit_for_bit(tmp_path):
    """In a portfolio where another cluster has a programme, the kernels leave the flows
    of one without (cost 0, no effect) exactly as without the group's arrays."""
    cluster = dict(FLAT)
    pf = _load(tmp_path, _doc([{**cluster, "optimization": {"cost": 1e5, "energy_saving": 0.3, "opex_saving": 0.2,
                                                            "utilization_gain": 0.1}},
                               {**cluster, "name": "b"}]))
    arrays = pf.base_arrays()
    without = {k: v for k, v in arrays.items() if not k.startswith("optimization.")}
    with_group, without_group = _flows(arrays, 48), _flows(without, 48)
    for name in ("cf", "cfe", "ebitda_less_tax", "revenue", "energy_cost", "opex"):
        np.testing.assert_array_equal(with_group[name][:, 1], without_group[name][:, 1], err_msg=name)
        assert not np.array_equal(with_group[name][:, 0], without_group[name][:, 0]), name


# ----------------------------------------------------------- against the reference


def _reference_inputs(pf) -> tuple[list[dict], dict | None]:
    """The portfolio as tests/reference_model.py takes it: each cluster's version 1
    parameters, its contracts and segments where it gives them, its order month,
    capex decline and programme (start_month None: the default rule); the platform."""
    clusters = []
    for params, items, s in zip(pf.clusters, pf.items, pf.scalars):
        c = dict(params)
        for kind in ("contracts", "segments"):
            if items.of(kind) is not None:
                c[kind] = [dict(item) for item in items.of(kind)]
        for spec in ORDER_PARAMS:
            if spec.name in s.values:
                c[spec.name] = s.values[spec.name]
        if s.programme:
            c["optimization"] = {spec.name.partition(".")[2]: s.values.get(spec.name) for spec in OPTIMIZATION_PARAMS}
        clusters.append(c)
    platform = None if pf.platform is None else {
        spec.name.partition(".")[2]: pf.platform.values[spec.name] for spec in PLATFORM_PARAMS}
    return clusters, platform


MIXED = _doc(
    [{"name": "first", "gpus": 512, "capex_per_gpu": 32000, "on_demand_price": 2.4, "reserved_price": 2.1,
      "top_client_share": 0.5, "client_loss_month": 30, "debt_fraction": 0.4, "staff_cost_per_year": 3e5,
      "optimization": {"cost": 2e5, "cost_per_year": 1e5, "ramp_months": 4, "utilization_gain": 0.06,
                       "energy_saving": 0.15, "opex_saving": 0.1}},
     {"name": "second", "gpus": 256, "capex_per_gpu": 30000, "on_demand_price": 2.4, "order_month": 18,
      "capex_decline": 0.15, "debt_fraction": 0.3,
      "contracts": [{"name": "bank", "share": 0.3, "price": 2.3, "industry": "finance"}],
      "segments": [{"name": "train", "share": 0.7, "utilization": 0.75},
                   {"name": "shop", "share": 0.3, "industry": "retail"}],
      "optimization": {"start_month": 12, "energy_saving": 0.2}},
     {"name": "third", "gpus": 128, "capex_per_gpu": 28000, "on_demand_price": 2.0, "reserved_share": 0.0,
      "order_month": 30}],
    horizon=72,
    platform={"take_rate": 0.04, "users_max": 2000, "adoption_months": 9, "fee_per_user_month": 40,
              "fee_growth": 0.03, "launch_month": 6, "build_cost": 5e5, "run_cost_per_year": 2e5, "margin": 0.65},
)


def test_a_mixed_portfolio_matches_the_reference(tmp_path):
    """Every version 2 feature at once, from the file through the base case, against the
    plain loops (1e-9 of each output's scale)."""
    pf = _load(tmp_path, MIXED)
    got = evaluate_base(pf)
    clusters, platform = _reference_inputs(pf)
    want = ref.evaluate(clusters, pf.horizon_months, pf.discount_rate, platform=platform)
    for name, value in want["portfolio"].items():
        if name in got:
            _close(name, got[name], value)
    for c, row in enumerate(want["clusters"]):
        for name, value in row.items():
            if "cluster_" + name in got:
                _close(f"{name}[{c}]", got["cluster_" + name][c], value)
    for name in ("optimization_cost", "platform_npv", "platform_revenue"):
        _close(name, got[name], want["v2"][name])
    labels = industry_labels(pf.items, pf.has_platform)
    assert labels[-2:] == ["unlabelled", "platform"]
    for i, label in enumerate(labels):
        _close(f"revenue_by_industry[{label}]", got["revenue_by_industry"][i], want["v2"]["revenue_by_industry"][label])


def _close(name, got, want, tol=1e-9):
    got = float(got)
    if want is None or (isinstance(want, float) and not math.isfinite(want)):
        assert not math.isfinite(got) or want is None, (name, got, want)
        return
    assert abs(got - want) <= tol * max(1.0, abs(want)), (name, got, want)


def test_the_result_file_files_the_platforms_revenue_under_its_own_label(tmp_path):
    pf = _load(tmp_path, MIXED)
    res = _run_cli(tmp_path, MIXED, "mixed")
    labels = [x.decode() for x in res["grid"]["industry"]]
    assert labels == industry_labels(pf.items, True)
    np.testing.assert_allclose(res["base"]["revenue_by_industry"], evaluate_base(pf)["revenue_by_industry"],
                               rtol=1e-12)
    assert res["grid"]["revenue_by_industry"].shape == (2, len(labels))


# ------------------------------------------------------- closed forms, command line


def test_ordered_later_same_irr_and_npv_discounted(tmp_path):
    """A cluster without calendar effects ordered at t_o (the horizon longer by t_o):
    the same IRRs, payback and cover, its NPV times (1 + r)^(-t_o/12)."""
    t_o, r = 12, 0.1
    now = _run_cli(tmp_path, _doc([FLAT], horizon=48, rate=r), "now")
    later = _run_cli(tmp_path, _doc([{**FLAT, "order_month": t_o}], horizon=48 + t_o, rate=r), "later")
    assert now["attrs"]["model_version"] == 1 and later["attrs"]["model_version"] == 2
    for where in ("grid", "base"):
        a, b = now[where], later[where]
        np.testing.assert_allclose(b["npv"], a["npv"] * (1 + r) ** (-t_o / 12), rtol=1e-9)
        np.testing.assert_allclose(b["cluster_npv"], a["cluster_npv"] * (1 + r) ** (-t_o / 12), rtol=1e-9)
        for name in ("irr", "equity_irr", "cluster_irr", "payback_months", "min_dscr", "roi", "revenue"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-9, atol=1e-10, err_msg=f"{where} {name}")


def test_a_take_rate_platform_adds_its_share_of_the_discounted_revenue(tmp_path):
    """A platform with only a take rate tau (margin mu, tax): NPV + mu tau (1 - tax) of
    the clusters' revenue discounted month by month (launched at month 1)."""
    tau, mu, tax, r = 0.08, 0.6, 0.25, 0.1
    cluster = {**FLAT, "price_decline": 0.2, "next_gen_month": 30}  # calendar effects are fine here
    doc = _doc([cluster, {**cluster, "name": "b", "gpus": 32}], horizon=48, rate=r)
    plain = _run_cli(tmp_path, doc, "plain")
    withp = _run_cli(tmp_path, {**doc, "portfolio": {**doc["portfolio"],
                                                     "platform": {"take_rate": tau, "margin": mu, "tax_rate": tax}}},
                     "platform")
    statement = CliRunner().invoke(main, ["cashflows", str(tmp_path / "plain.yaml"), "--json"])
    assert statement.exit_code == 0, statement.output
    revenue = json.loads(statement.output)["scopes"]["portfolio"]["revenue"]  # months 0..48
    discounted = sum(v * (1 + r) ** (-t / 12) for t, v in enumerate(revenue))
    total = sum(revenue)
    base_p, base_w = plain["base"], withp["base"]
    _close("npv", base_w["npv"], float(base_p["npv"]) + mu * tau * (1 - tax) * discounted)
    _close("platform_npv", base_w["platform_npv"], mu * tau * (1 - tax) * discounted)
    _close("platform_revenue", base_w["platform_revenue"], tau * total)
    _close("revenue", base_w["revenue"], (1 + tau) * total)
    # the clusters' own exclude it (the same to round-off: the version 1 file takes version 1's branch)
    np.testing.assert_allclose(base_w["cluster_npv"], base_p["cluster_npv"], rtol=1e-12)
    assert np.all(withp["grid"]["npv"] > plain["grid"]["npv"])


def test_a_one_off_programme_cost_lowers_npv_by_its_discounted_after_tax_value(tmp_path):
    c, t_s, tax, r = 250000.0, 10, 0.21, 0.1
    plain = _run_cli(tmp_path, _doc([FLAT], rate=r), "plain")
    cost = _run_cli(tmp_path, _doc([{**FLAT, "tax_rate": tax, "optimization": {"cost": c, "start_month": t_s}}],
                                   rate=r), "cost")
    drop = c * (1 - tax) * (1 + r) ** (-t_s / 12)
    for where in ("grid", "base"):
        np.testing.assert_allclose(cost[where]["npv"], plain[where]["npv"] - drop, rtol=1e-9)
    _close("optimization_cost", cost["base"]["optimization_cost"], c)


def test_a_version_1_portfolio_runs_as_before(tmp_path):
    """No version 2 field: a version 1 file (no industry, no version 2 output) whose
    outputs are the reference's."""
    res = _run_cli(tmp_path, yaml.safe_load(VALID_P.read_text()), "v1")
    assert res["attrs"]["model_version"] == 1
    names = set(res["grid"]) | set(res["base"])
    assert not names & {"industry", "revenue_by_industry", "platform_npv", "optimization_cost"}
    pf = load_portfolio(VALID_P)
    want = ref.evaluate([dict(c) for c in pf.clusters], pf.horizon_months, pf.discount_rate)
    for name, value in want["portfolio"].items():
        _close(name, res["base"][name], value)


# ------------------------------------------------------------------ show and run


def test_show_prints_the_order_month_the_programmes_and_the_platform(tmp_path):
    path = _write(tmp_path, MIXED)
    result = CliRunner().invoke(main, ["show", str(path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    text = result.output
    for word in ("order_month", "capex_decline", "optimization programmes", "utilization_gain",
                 "platform layer", "take_rate", "adoption_months"):
        assert word in text, word
    table = json.loads(CliRunner().invoke(main, ["show", str(path), "--json"]).output)
    rows = {r["name"]: r for r in table["parameters"]}
    assert rows["order_month"]["values"] == [0, 18, 30]
    assert rows["order_month"]["origins"] == ["model", "cluster", "cluster"]
    programmes = {p["cluster"]: {f["name"]: f for f in p["fields"]} for p in table["optimization"]}
    assert set(programmes) == {"first", "second"}
    # first gives no start month: it starts at delivery, ceil(0 + 3); second's 12 stands
    assert programmes["first"]["start_month"] == {"name": "start_month", "unit": "month", "value": 3.0,
                                                  "origin": "model"}
    # second's 12, before its order month 18, shows as the file gives it (the kernels start it at 18)
    assert programmes["second"]["start_month"]["value"] == 12
    assert programmes["second"]["start_month"]["origin"] == "cluster"
    platform = {f["name"]: f for f in table["platform"]}
    assert platform["margin"]["value"] == 0.65 and platform["margin"]["origin"] == "file"
    assert platform["tax_rate"]["origin"] == "default"


def test_show_of_a_version_1_portfolio_has_no_version_2_entries():
    table = json.loads(CliRunner().invoke(main, ["show", str(VALID_P), "--json"]).output)
    assert not {"optimization", "platform", "items"} & set(table)
    assert [r["name"] for r in table["parameters"]] == list(PARAM_NAMES)


def test_run_prints_the_platform_npv_beside_the_clusters(tmp_path):
    doc = _doc([FLAT, {**FLAT, "name": "b"}], platform={"take_rate": 0.05})
    portfolio, scenario = _write(tmp_path, doc), _write(tmp_path, GRID, "s.yaml")
    result = CliRunner().invoke(main, ["run", str(portfolio), "-s", str(scenario), "-o", str(tmp_path / "r.h5"),
                                       "--backend", "numpy"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("base case NPV:"))
    assert line.startswith("base case NPV: clusters ") and "(a " in line and ", b " in line
    assert "), platform NPV " in line
    result = CliRunner().invoke(main, ["run", str(portfolio), "-s", str(scenario), "-o", str(tmp_path / "r.h5"),
                                       "--backend", "numpy", "--json", "--overwrite"])
    parts = json.loads(result.output)["base_npv_parts"]
    assert set(parts["clusters"]) == {"a", "b"} and parts["platform"] > 0
    plain = CliRunner().invoke(main, ["run", str(VALID_P), "-s", str(VALID_S), "-o", str(tmp_path / "v1.h5"),
                                      "--backend", "numpy"])
    assert "platform NPV" not in plain.output


# ------------------------------------------------------------------ refused files


def V(name, *expected):
    """A refused portfolio file of the corpus (tests/bad_inputs/v2b_*.yaml), run with
    the valid scenario; expected: (key path, start of the reason) pairs."""
    return pytest.param(HERE / name, list(expected), id=name)


HORIZON = "must be <= 24 (the horizon, horizon_months), got "
V2B_CASES = [
    V("v2b_order_month_past_horizon.yaml", ("clusters[0].order_month", HORIZON + "30")),
    V("v2b_order_month_fractional.yaml", ("clusters[1].order_month", "must be a whole number, got 6.5")),
    V("v2b_capex_decline_above_one.yaml", ("clusters[1].capex_decline", "must be <= 1, got 1.5")),
    V("v2b_defaults_order_month_past_horizon.yaml", ("defaults.order_month", HORIZON + "36")),
    V("v2b_optimization_negative_cost.yaml", ("clusters[0].optimization.cost", "must be >= 0, got -50000")),
    V("v2b_energy_saving_above_one.yaml", ("clusters[0].optimization.energy_saving", "must be <= 1, got 1.5")),
    V("v2b_ramp_months_zero.yaml", ("clusters[0].optimization.ramp_months", "must be >= 1, got 0")),
    V("v2b_start_month_zero.yaml", ("clusters[0].optimization.start_month", "must be >= 1, got 0")),
    V("v2b_optimization_unknown_key.yaml",
      ("clusters[0].optimization.energy_savings", "unknown key; did you mean 'energy_saving'?")),
    V("v2b_optimization_not_mapping.yaml", ("clusters[1].optimization", "must be a mapping, got 0.2")),
    V("v2b_defaults_optimization_out_of_range.yaml",
      ("defaults.optimization.opex_saving", "must be <= 1, got 1.2")),
    V("v2b_platform_margin_above_one.yaml", ("portfolio.platform.margin", "must be <= 1, got 1.2")),
    V("v2b_launch_month_zero.yaml", ("portfolio.platform.launch_month", "must be >= 1, got 0")),
    V("v2b_launch_month_past_horizon.yaml", ("portfolio.platform.launch_month", HORIZON + "25")),
    V("v2b_adoption_months_zero.yaml", ("portfolio.platform.adoption_months", "must be > 0, got 0")),
    V("v2b_take_rate_negative.yaml", ("portfolio.platform.take_rate", "must be >= 0, got -0.1")),
    V("v2b_platform_unknown_key.yaml",
      ("portfolio.platform.fee_per_user", "unknown key; did you mean 'fee_per_user_month'?")),
    V("v2b_cluster_named_platform.yaml", ("clusters[1].name", "'platform' is reserved where the portfolio has a "
                                                               "platform layer")),
    V("v2b_platform_under_cluster.yaml",
      ("clusters[1].platform", "the platform layer is the portfolio's, not a cluster's: give platform: in the "
                               "portfolio: block")),
]


@pytest.mark.parametrize("bad_file, expected", V2B_CASES)
def test_a_bad_version_2_file_is_refused(bad_file, expected, tmp_path):
    """As tests/test_bad_inputs.py's corpus: exit 2, every line on stderr `error: <file>:
    <key>: <reason>`, no traceback, no output file."""
    result = CliRunner().invoke(main, ["run", str(bad_file), "-s", str(VALID_S), "-o", str(tmp_path / "out.h5"),
                                       "--backend", "numpy", "-q"])
    info = f"exit code {result.exit_code}\n{result.output}"
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), info
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith(f"error: {bad_file}: ") for ln in lines), info
    for key, reason in expected:
        assert any(ln.startswith(f"error: {bad_file}: {key}: {reason}") for ln in lines), (key, reason, info)
    assert list(tmp_path.iterdir()) == [], info


def test_the_v2b_corpus_is_complete():
    assert {p.name for p in HERE.glob("v2b_*.yaml")} == {c.values[0].name for c in V2B_CASES}
    assert len(V2B_CASES) >= 10


def test_a_programme_saving_all_energy_removes_it_after_its_ramp(tmp_path):
    """Closed form (issue 27): energy_saving 1 from start month t_s over a ramp of R
    months multiplies month t's energy by 1 - clip((t - t_s) / R, 0, 1): the same energy
    as without the programme up to t_s, none from t_s + R on."""
    from stresstest.kernels.cashflows import cash_flow_lines

    ts, ramp = 10, 4
    plain = _load(tmp_path, _doc([dict(FLAT)]))
    saved = _load(tmp_path, _doc([{**FLAT, "optimization": {"energy_saving": 1.0, "start_month": ts,
                                                             "ramp_months": ramp}}]))

    def energy(pf):
        p, _ = apply_axis_values(pf.base_arrays(), np.asarray(pf.discount_rate), (), ())
        return np.asarray(cash_flow_lines(p, pf.horizon_months)["lines"]["energy"])[0, 0]

    e0, e1 = energy(plain), energy(saved)
    t = np.arange(1, plain.horizon_months + 1)
    h = np.clip((t - ts) / ramp, 0.0, 1.0)
    assert np.all(e0[t >= ts + ramp] > 0) and np.all(e1[t >= ts + ramp] == 0.0)
    np.testing.assert_allclose(e1, e0 * (1.0 - h), rtol=1e-13, atol=0.0)
    np.testing.assert_array_equal(e1[t <= ts], e0[t <= ts])
