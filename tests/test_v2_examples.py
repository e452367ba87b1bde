"""The bundled version 2 example, its named scenarios, `show` of items, and the worked
examples of docs/model.md (issues 26 and 27).

- scenarios/example_v2.yaml loads as the file says (a bank `anchor` and a research
  hospital on ashburn-h100 with a four-segment pool and an optimization programme, a
  retailer on phoenix-b200, a plain version 1 dallas-h100, a second B200 tranche ordered
  at month 12, a platform layer), runs on numpy, and its base case is the plain
  reference's, platform and programme included; its base case is a plausible one;
- `show` prints a table of each cluster's contracts and segments with every value's
  origin, in text and --json; a version 1 portfolio's table has none of it;
- `-s customers` (anchor-leaves-month-18) moves only the `anchor` contracts: on
  example_v2 the bank's cluster alone, on example.yaml the clusters whose implied
  largest client holds a share; each shocked cluster matches the reference;
- `-s build-out` on example_v2: platform-adoption-stalls moves the platform alone,
  gpu-prices-fall-30-while-waiting makes the later tranche cheaper and every rent lower,
  each against the reference; a portfolio without a platform refuses the scenario;
- docs/model.md's worked month with contracts and segments and its worked tranche bought
  at month 12 keep their numbers.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import reference_model as ref
from helpers import reference_clusters, reference_platform
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base
from stresstest.kernels.cashflows import cash_flow_lines
from stresstest.kernels.shocks import apply_axis_values
from stresstest.loaders import load_scenario
from stresstest.named_run import evaluate_named
from stresstest.presets import list_presets

EXAMPLE_V2 = list_presets()["example_v2"]
LOSS_PATH, LOSS_MONTH = "contracts.anchor.loss_month", 18.0
TRANCHE = 3  # phoenix-b200-phase2, the cluster ordered at month 12
STALL, CHEAPER = "platform-adoption-stalls", "gpu-prices-fall-30-while-waiting"


def _ok(args) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r.output


def _reference(pf, clusters=None, platform=None) -> dict:
    """The reference's outputs of the portfolio, or of these shocked clusters and platform."""
    if clusters is None:
        clusters, platform = reference_clusters(pf), reference_platform(pf)
    return ref.evaluate(clusters, pf.horizon_months, pf.discount_rate, platform=platform)


def _close(name, got, want, tol=1e-9):
    """Equal to `tol` of the value's scale (at least 1); NaN and inf where the reference has them."""
    got = float(got)
    if not math.isfinite(want):
        assert (math.isnan(got) and math.isnan(want)) or got == want, (name, got, want)
        return
    assert abs(got - want) <= tol * max(1.0, abs(want)), (name, got, want)


def _assert_outputs_match(got: dict, want: dict, row=None) -> None:
    """Every portfolio and cluster output, and version 2's, of `got` (engine outputs;
    `row` picks a scenario row) against the reference's to 1e-9."""
    pick = (lambda x: np.asarray(x)) if row is None else (lambda x: np.asarray(x)[row])
    for name, value in want["portfolio"].items():
        _close(name, pick(got[name]), value)
    for c, outputs in enumerate(want["clusters"]):
        for name, value in outputs.items():
            _close(f"cluster_{name}[{c}]", pick(got["cluster_" + name])[c], value)
    for name in ("optimization_cost", "platform_npv", "platform_revenue"):
        _close(name, pick(got[name]), want["v2"][name])
    for c, value in enumerate(want["v2"]["cluster_optimization_cost"]):
        _close(f"cluster_optimization_cost[{c}]", pick(got["cluster_optimization_cost"])[c], value)
    np.testing.assert_allclose(pick(got["revenue_by_industry"]), list(want["v2"]["revenue_by_industry"].values()),
                               rtol=1e-9)


def _named_run(portfolio, tmp_path) -> tuple[xr.Dataset, xr.Dataset]:
    out = tmp_path / "customers.h5"
    _ok(["run", str(portfolio), "-s", "customers", "-o", str(out), "--backend", "numpy", "-q"])
    with xr.open_dataset(out, engine="h5netcdf") as ds, \
            xr.open_dataset(out, engine="h5netcdf", group="base") as base:
        return ds.load(), base.load()


# ------------------------------------------------------------------ the example


def test_example_v2_resolves_as_written():
    pf = load_portfolio(EXAMPLE_V2)
    assert pf.warnings == []  # every bundled number is realistic
    assert pf.cluster_names == ["ashburn-h100", "phoenix-b200", "dallas-h100", "phoenix-b200-phase2"]
    assert pf.itemised and pf.model_version == 2
    ashburn, phoenix, dallas, tranche = pf.items
    assert [(c["name"], c["industry"]) for c in ashburn.contracts] == [("anchor", "finance"),
                                                                      ("hospital", "healthcare")]
    hospital = ashburn.contracts[1]
    assert (hospital["term_months"], hospital["renewal_rate"]) == (48.0, 0.85)
    assert ashburn.origins["contracts"][1]["term_months"] == "profile healthcare"
    assert [s["name"] for s in ashburn.segments] == ["training", "inference", "finance-low-latency",
                                                     "logistics-optimisation"]
    assert sum(s["share"] for s in ashburn.segments) == pytest.approx(1.0, abs=1e-12)
    assert ashburn.segments[2]["price_multiplier"] == 1.25  # the finance profile
    assert [c["name"] for c in phoenix.contracts] == ["retailer"] and phoenix.segments is None
    assert not dallas.explicit and not tranche.explicit
    assert pf.industries == ["finance", "healthcare", "logistics", "retail", "unlabelled", "platform"]
    # the bank is the largest customer: most GPU-hours times price of the named three and
    # of the second tranche's implied book
    hourly = {c["name"]: c["share"] * g * c["price"] for it, g in zip(pf.items, (2048, 1024))
              for c in it.contracts}
    t = pf.clusters[TRANCHE]
    hourly["tranche"] = t["reserved_share"] * t["gpus"] * t["reserved_price"]
    assert max(hourly, key=hourly.get) == "anchor"
    # the second tranche: ordered at month 12 at a price 10 %/yr lower; the programme on
    # ashburn-h100 alone (its start month left to go-live); the platform in the portfolio
    assert [s.values.get("order_month", 0.0) for s in pf.scalars] == [0.0, 0.0, 0.0, 12.0]
    assert pf.scalars[TRANCHE].values["capex_decline"] == 0.10
    assert [s.programme for s in pf.scalars] == [True, False, False, False]
    assert "optimization.start_month" not in pf.scalars[0].values
    assert pf.scalars[0].values["optimization.utilization_gain"] == 0.05
    platform = reference_platform(pf)
    assert platform == {"build_cost": 5e6, "launch_month": 6.0, "run_cost_per_year": 4e6, "opex_escalation": 0.03,
                        "take_rate": 0.03, "users_max": 3000.0, "adoption_months": 18.0,
                        "fee_per_user_month": 300.0, "fee_growth": 0.0, "margin": 0.7, "tax_rate": 0.21}
    # every number the file gives for the new parts cites its source
    cited = pf.cluster_sources
    assert {"order_month", "capex_decline", "delivery_months", "reserved_price"} <= set(cited[TRANCHE])
    assert {"optimization." + k for k in ("cost", "cost_per_year", "ramp_months", "utilization_gain",
                                          "energy_saving", "opex_saving")} <= set(cited[0])
    assert {"platform." + k for k, v in platform.items() if pf.platform.origins["platform." + k] == "file"} \
        <= set(pf.sources)


def test_example_v2_runs_by_name_and_matches_the_reference(tmp_path):
    """Its base case, platform and programme included, is the plain reference's to 1e-9:
    from the run's file and from the engine."""
    out = tmp_path / "smoke.h5"
    _ok(["run", "example_v2", "-s", "smoke", "-o", str(out), "--backend", "numpy", "-q"])
    pf = load_portfolio(EXAMPLE_V2)
    want = _reference(pf)
    _assert_outputs_match(evaluate_base(pf), want)
    with xr.open_dataset(out, engine="h5netcdf", group="base") as base:
        assert list(base["industry"].values) == pf.industries
        _assert_outputs_match({k: base[k].values for k in base.data_vars}, want)
        assert float(base["revenue_by_industry"].sum()) == pytest.approx(float(base["revenue"]), rel=1e-12)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["model_version"] == 2


def test_example_v2_base_case_is_a_plausible_one():
    """A neocloud that earns a little above its 12 % cost of capital; the later tranche
    pays 10 % less per GPU and pays back within the horizon, counted from its order; the
    programme pays for itself; the platform adds value, less than the clusters."""
    pf = load_portfolio(EXAMPLE_V2)
    base = evaluate_base(pf)
    assert 5e6 < base["npv"] < 30e6 and pf.discount_rate < base["irr"] < 0.20
    assert base["cluster_npv"][TRANCHE] > 0
    assert float(base["cluster_payback_months"][TRANCHE]) == pytest.approx(38.74, abs=0.01)  # months from month 12
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    cm = ref.cluster_monthly(clusters[TRANCHE], pf.horizon_months)
    assert cm["capex"] == pytest.approx(1024 * 49_500, rel=1e-12) and cm["t_o"] == 12
    assert cm["cf"][:12] == [0.0] * 12 and cm["live"].index(1.0) == 16  # live from month 15 (12 + 3)
    assert 0 < base["platform_npv"] < base["npv"] - base["platform_npv"]
    without = [dict(c) for c in clusters]
    del without[0]["optimization"]
    assert base["cluster_npv"][0] > _reference(pf, without, platform)["clusters"][0]["npv"]
    assert base["cluster_optimization_cost"][0] == pytest.approx(3_655_740.41, abs=0.01)


# ---------------------------------------------------------------------- show


def test_show_prints_each_clusters_contracts_and_segments_with_their_origins():
    text = _ok(["show", "example_v2"])
    for title in ("ashburn-h100: contracts", "ashburn-h100: segments", "phoenix-b200: contracts"):
        assert title in text
    assert "dallas-h100: contracts" not in text and "phoenix-b200: segments" not in text
    assert "48 §" in text  # the hospital's term, from the healthcare profile
    assert "replaced by the cluster's contracts or segments" in text
    assert "from the industry profile the item names" in text

    data = json.loads(_ok(["show", "example_v2", "--json"]))
    ashburn, phoenix, dallas, tranche = data["items"]
    assert (dallas["contracts"], dallas["segments"], phoenix["segments"]) == (None, None, None)
    assert (tranche["contracts"], tranche["segments"]) == (None, None)
    hospital = {f["name"]: f for f in ashburn["contracts"][1]["fields"]}
    assert hospital["term_months"] == {"name": "term_months", "unit": "months", "value": 48.0,
                                       "origin": "profile healthcare"}
    assert hospital["share"]["origin"] == "file" and hospital["renewal_discount"]["origin"] == "default"
    assert hospital["loss_month"]["value"] is None  # never
    assert ashburn["segments"][3]["industry"] == "logistics"
    rows = {r["name"]: r["origins"] for r in data["parameters"]}
    assert rows["reserved_share"] == ["replaced", "replaced", "cluster", "cluster"]
    assert rows["inference_share"] == ["replaced", "cluster", "cluster", "cluster"]


def test_show_of_a_version_1_portfolio_has_no_item_tables():
    data = json.loads(_ok(["show", "example", "--json"]))
    assert "items" not in data and "replaced" not in data["origin_legend"]
    text = _ok(["show", "example"])
    assert ": contracts" not in text and "–" not in text


# ------------------------------------------------------ the named scenario


def test_anchor_leaving_moves_only_the_bank_in_example_v2(tmp_path):
    ds, base = _named_run(EXAMPLE_V2, tmp_path)
    assert list(ds["scenario"].values) == ["anchor-leaves-month-18"]
    shocked = ds["cluster_npv"].isel(scenario=0).values
    assert shocked[0] < base["cluster_npv"].values[0]  # the bank's cluster loses
    np.testing.assert_array_equal(shocked[1:], base["cluster_npv"].values[1:])  # the others do not move
    # finance loses the bank's contract revenue from month 18; the pool gains its GPUs
    by_industry = dict(zip(ds["industry"].values, ds["revenue_by_industry"].isel(scenario=0).values))
    before = dict(zip(base["industry"].values, base["revenue_by_industry"].values))
    assert by_industry["finance"] < before["finance"] and by_industry["unlabelled"] > before["unlabelled"]
    assert by_industry["healthcare"] == before["healthcare"] and by_industry["retail"] == before["retail"]

    pf = load_portfolio(EXAMPLE_V2)
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    clusters, platform = ref.apply_path_shock(clusters, platform, LOSS_PATH, "set", LOSS_MONTH)
    want = _reference(pf, ref.balance_shares(clusters), platform)
    np.testing.assert_allclose(shocked, [c["npv"] for c in want["clusters"]], rtol=1e-9)
    assert float(ds["npv"].isel(scenario=0)) == pytest.approx(want["portfolio"]["npv"], rel=1e-9)


def test_anchor_leaving_moves_the_implied_largest_client_in_example(tmp_path):
    """On a version 1 portfolio `anchor` is each cluster's top client: clusters with a
    top_client_share lose it at month 18, the others do not move."""
    ds, base = _named_run(list_presets()["example"], tmp_path)
    assert ds.attrs["model_version"] == 2  # a path shock carries the items
    pf = load_portfolio(list_presets()["example"])
    holds = [c["top_client_share"] * c["reserved_share"] > 0 for c in pf.clusters]
    assert holds == [True, False, False, False, True, False]
    shocked = ds["cluster_npv"].isel(scenario=0).values
    moved = shocked != base["cluster_npv"].values
    assert list(moved) == holds

    clusters = [ref.apply_shock(c, "client_loss_month", "set", LOSS_MONTH) for c in reference_clusters(pf)]
    want = _reference(pf, clusters)
    np.testing.assert_allclose(shocked, [c["npv"] for c in want["clusters"]], rtol=1e-9)


# ------------------------------------------- the build-out named scenarios


def _build_out(tmp_path) -> tuple[xr.Dataset, xr.Dataset, dict]:
    """`run example_v2 -s build-out` (its file: the set rows and the base group) and the
    run's every output, engine side (named_run.evaluate_named: row 0 the base case)."""
    out = tmp_path / "build-out.h5"
    _ok(["run", "example_v2", "-s", "build-out", "-o", str(out), "--backend", "numpy", "-q"])
    pf = load_portfolio(EXAMPLE_V2)
    outputs = evaluate_named(pf, load_scenario(list_presets()["build-out"], pf))
    with xr.open_dataset(out, engine="h5netcdf") as ds, \
            xr.open_dataset(out, engine="h5netcdf", group="base") as base:
        assert list(ds["scenario"].values) == [STALL, CHEAPER]
        return ds.load(), base.load(), outputs


def test_platform_adoption_stalls_moves_the_platform_alone(tmp_path):
    """30 % of the users, three times as slowly: the platform's NPV and revenue fall, the
    clusters' flows do not move; the portfolio's NPV falls by the platform's loss, as the
    reference says."""
    ds, base, outputs = _build_out(tmp_path)
    row = 1 + [STALL, CHEAPER].index(STALL)
    np.testing.assert_array_equal(ds["cluster_npv"].sel(scenario=STALL).values, base["cluster_npv"].values)
    assert outputs["platform_npv"][row] < 0 < outputs["platform_npv"][0]
    assert outputs["platform_revenue"][row] < outputs["platform_revenue"][0]
    assert float(ds["npv"].sel(scenario=STALL)) == pytest.approx(
        float(base["npv"]) - (outputs["platform_npv"][0] - outputs["platform_npv"][row]), rel=1e-12)

    pf = load_portfolio(EXAMPLE_V2)
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    clusters, platform = ref.apply_path_shock(clusters, platform, "platform.users_max", "scale", 0.3)
    clusters, platform = ref.apply_path_shock(clusters, platform, "platform.adoption_months", "scale", 3.0)
    assert (platform["users_max"], platform["adoption_months"]) == pytest.approx((900.0, 54.0))
    _assert_outputs_match(outputs, _reference(pf, ref.balance_shares(clusters), platform), row=row)
    assert float(ds["npv"].sel(scenario=STALL)) == pytest.approx(outputs["npv"][row], rel=1e-12)


def test_gpu_prices_falling_while_waiting_cheapen_the_tranche_and_every_rent(tmp_path):
    """capex_decline set 0.30: the tranche ordered at month 12 pays 70 % of month 0's
    price per GPU, the clusters bought at month 0 what they paid; the rent is 30 % lower
    for every cluster. The clusters bought at month 0 lose; the tranche, cheaper, gains
    more than its lower rents cost it; as the reference says."""
    ds, base, outputs = _build_out(tmp_path)
    row = 1 + [STALL, CHEAPER].index(CHEAPER)
    shocked, before = ds["cluster_npv"].sel(scenario=CHEAPER).values, base["cluster_npv"].values
    assert (shocked[:TRANCHE] < before[:TRANCHE]).all() and shocked[TRANCHE] > before[TRANCHE]
    assert float(ds["npv"].sel(scenario=CHEAPER)) < float(base["npv"])

    pf = load_portfolio(EXAMPLE_V2)
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    clusters = [ref.apply_shock(c, "on_demand_price", "scale", 0.7) for c in clusters]  # version 1 keys first
    clusters, platform = ref.apply_path_shock(clusters, platform, "capex_decline", "set", 0.30)
    capex = [ref.cluster_monthly(c, pf.horizon_months)["capex"] for c in clusters]
    assert capex[TRANCHE] == pytest.approx(1024 * 55_000 * 0.70, rel=1e-12)
    assert capex[:TRANCHE] == [c["gpus"] * c["capex_per_gpu"] for c in pf.clusters[:TRANCHE]]
    _assert_outputs_match(outputs, _reference(pf, ref.balance_shares(clusters), platform), row=row)
    np.testing.assert_allclose(shocked, outputs["cluster_npv"][row], rtol=1e-12)


def test_build_out_on_a_portfolio_without_a_platform_is_refused(tmp_path):
    """The version 1 example has no platform layer: the scenario is refused before any
    work, naming the platform, and writes nothing."""
    out = tmp_path / "refused.h5"
    r = CliRunner().invoke(main, ["run", "example", "-s", "build-out", "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2, r.output
    assert "platform" in r.output and STALL in r.output
    assert not out.exists()


# ---------------------------------------------- docs/model.md's worked month

WORKED = """portfolio: {name: worked, horizon_months: HORIZON, discount_rate: 0.1}
clusters:
  - name: c
    gpus: 1000
    capex_per_gpu: 30000
    on_demand_price: 2.0
    contracts:
      - {name: anchor, share: 0.3, price: 1.9, LOSS industry: finance}
      - {name: lab, share: 0.2, price: 1.8, industry: healthcare}
    segments:
      - {name: training, share: 0.6, utilization: 0.7, price_multiplier: 0.9}
      - {name: low-latency, share: 0.4, industry: finance}
"""


def _worked(tmp_path, horizon=60, loss="loss_month: 10,"):
    path = tmp_path / f"worked_{horizon}_{bool(loss)}.yaml"
    path.write_text(WORKED.replace("HORIZON", str(horizon)).replace("LOSS", loss))
    return path


def _month(path, t: int) -> dict:
    data = json.loads(_ok(["cashflows", str(path), "--cluster", "c", "--json"]))
    lines = data["scopes"]["c"]
    return {k: v[lines["month"].index(t)] for k, v in lines.items()}


def test_the_worked_month_of_docs_model(tmp_path):
    m12 = _month(_worked(tmp_path), 12)
    assert m12["revenue_reserved"] == pytest.approx(262_800.00, abs=1e-6)
    assert m12["revenue"] == pytest.approx(966_403.20, abs=1e-6)
    assert m12["energy"] == pytest.approx(82_770.808224, abs=1e-6)
    assert m12["ebitda"] == pytest.approx(790_932.391776, abs=1e-6)
    assert m12["tax"] == pytest.approx(78_595.80, abs=5e-3)
    assert m12["project_cf"] == pytest.approx(712_336.589503, abs=1e-6)
    # with the bank staying: 730,000 x (0.57 + 0.36 + 0.5 x 0.753 x 1.60)
    assert _month(_worked(tmp_path, loss=""), 12)["revenue"] == pytest.approx(1_118_652.00, abs=1e-6)
    # the month's revenue by industry: 12 months' totals less 11 months'
    by = {T: evaluate_base(load_portfolio(_worked(tmp_path, T)))["revenue_by_industry"] for T in (11, 12)}
    np.testing.assert_allclose(by[12] - by[11], [350_400.00, 262_800.00, 353_203.20], atol=1e-6)


# ---------------------------------------- docs/model.md's worked tranche

TRANCHE_DOC = """portfolio: {name: tranche, horizon_months: 60, discount_rate: 0.1}
clusters:
  - name: tranche
    gpus: 1000
    capex_per_gpu: 30000
    order_month: 12
    capex_decline: 0.2
    delivery_months: 3
    on_demand_price: 2.5
    price_decline: 0.2
    next_gen_month: 100
    reserved_share: 1.0
    reserved_price: 2.0
    energy_escalation: 0
    opex_escalation: 0
    useful_life_years: 5
    debt_fraction: 0.5
"""


def test_the_worked_tranche_of_docs_model(tmp_path):
    """A tranche ordered at month 12: capex at the declined price in month 12 and nothing
    before, live from month 16, its first cycle to month 51 and the renewal at the
    calendar's rent of month 52, depreciation and the loan from month 13, resale four
    years old, payback counted from the order; kernels, run and reference agree."""
    path = tmp_path / "tranche.yaml"
    path.write_text(TRANCHE_DOC)
    pf = load_portfolio(path)
    assert pf.warnings == []
    p, _ = apply_axis_values({k: np.asarray(v) for k, v in pf.base_arrays().items()}, np.asarray(0.1), (), ())
    fl = cash_flow_lines(p, pf.horizon_months)

    def line(name: str, *months: int) -> list[float]:
        """The kernels' line `name` in the months given (1..T)."""
        x = np.broadcast_to(fl["lines"][name], (1, 1, pf.horizon_months))[0, 0]
        return [float(x[t - 1]) for t in months]

    cf, cfe = np.asarray(fl["cf"]).reshape(-1), np.asarray(fl["cfe"]).reshape(-1)
    assert float(fl["capex"].squeeze()) == 24_000_000.0 and float(fl["debt"].squeeze()) == 12_000_000.0
    assert cf[12] == -24_000_000.0 and cfe[12] == -12_000_000.0 and not cf[:12].any() and not cfe[:12].any()
    assert line("revenue", 15, 16, 51) == [0.0, 1_460_000.0, 1_460_000.0]
    assert line("revenue", 52)[0] == pytest.approx(569_027.60, abs=5e-3)
    assert line("energy", 16)[0] == pytest.approx(88_332.92, abs=1e-6) and line("opex", 16) == [75_000.0]
    assert line("ebitda", 16)[0] == pytest.approx(1_296_667.08, abs=1e-6)
    assert line("tax", 16)[0] == pytest.approx(188_300.09, abs=5e-3)
    assert cf[16] == pytest.approx(1_108_366.99, abs=5e-3) and cf[13] == pytest.approx(84_000.0, abs=1e-6)
    assert line("depreciation", 12, 13, 60) == [0.0, 400_000.0, 400_000.0]
    assert line("debt_service", 12, 13, 60) == pytest.approx([0.0, 304_351.00, 304_351.00], abs=5e-3)
    assert line("interest", 12, 13) == pytest.approx([0.0, 100_000.0], abs=1e-6)
    assert float(np.squeeze(fl["lines"]["resale"])) == pytest.approx(7_593_750.0, abs=1e-6)
    assert float(np.squeeze(fl["lines"]["tax_on_sale"])) == pytest.approx(586_687.50, abs=1e-6)
    dscr_months = np.flatnonzero(np.asarray(fl["dscr_month"]).reshape(-1)) + 1
    assert (dscr_months[0], dscr_months[-1], len(dscr_months)) == (16, 60, 45)

    base = evaluate_base(pf)
    assert float(base["payback_months"]) == pytest.approx(24.43, abs=5e-3)  # 36.426 - 12
    assert float(base["npv"]) == pytest.approx(15_735_672.64, abs=5e-3)
    assert float(base["irr"]) == pytest.approx(0.461, abs=5e-4)
    assert float(base["min_dscr"]) == pytest.approx(1.28, abs=5e-3)
    want = _reference(pf)
    _close("npv", base["npv"], want["portfolio"]["npv"])
    _close("payback_months", base["payback_months"], want["portfolio"]["payback_months"])
    np.testing.assert_allclose(cf, want["flows"]["cf"][0], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(cfe, want["flows"]["cfe"][0], rtol=1e-12, atol=1e-6)
    # bought at month 0 the renewal would lock the rent of month 40, not 52
    assert 2.5 * 0.8 ** (52 / 12) * 0.85 == pytest.approx(0.8080, abs=5e-5)
    assert 2.5 * 0.8 ** (40 / 12) * 0.85 == pytest.approx(1.0100, abs=5e-5)
    assert 1_108_366.99 / 304_351.00 == pytest.approx(3.64, abs=5e-3)
