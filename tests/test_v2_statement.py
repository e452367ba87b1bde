"""The cash-flow statement of a version 2 portfolio (`stresstest cashflows`, issues 26/27).

On scenarios/example_v2.yaml (named contracts and segments, a version 1 cluster among
them, a tranche ordered at month 12 with a capex decline, an optimization programme, a
platform layer), at its base case, at grid points that move the order month, the
programme and the platform, at a named set and on a Monte Carlo path, and on random
portfolios with items:
- every scope's lines add up (revenue = reserved + on-demand + platform, the opex lines
  to opex, CF = EBITDA - tax + terminal - capex, the debt balance month by month);
- every scope's totals are the run's outputs to 1e-9 (npv, revenue, energy_cost, opex,
  ebitda, optimization_cost, platform_npv, irr by numpy_financial, roi, equity IRR, min
  DSCR, payback counted from the order month);
- the version 1 cluster inside the itemised portfolio has the flows it has in a version
  1 file (the base case derives its implied items);
- capex and the debt draw sit at the order month, and nothing comes before it;
- the platform is a scope of its own, counted in the portfolio's;
- CSV, Excel, HDF5 and JSON carry the new columns and the platform scope.
A version 1 statement's columns are unchanged (tests/test_statement.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from helpers import close_to, evaluate_zipped, load_portfolio_doc, npf_annual_irr, random_axes_v2, random_portfolio_v2

import stresstest.statement as statement_mod
from stresstest.backends import make_backend
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base, grid_point, prepare
from stresstest.grid_config import Scenario
from stresstest.kernels.cashflows import PLATFORM_LINES, cash_flow_lines, cash_flows
from stresstest.kernels.params import OUTPUTS
from stresstest.kernels.shocks import apply_axis_values
from stresstest.loaders import load_scenario
from stresstest.presets import list_presets
from stresstest.statement import (COLUMN_NAMES, KIND, PLATFORM_COLUMNS, PLATFORM_SCOPE, PORTFOLIO_SCOPE,
                                  PROGRAMME_COLUMNS, compute, resolve_case, write)

TOL = 1e-9
EXAMPLE_V2 = list_presets()["example_v2"]
TRANCHE, ORDER = "phoenix-b200-phase2", 12  # ordered at month 12
V1_CLUSTER = "dallas-h100"  # version 1 keys inside the itemised portfolio
PROGRAMME = "ashburn-h100"
TOTALS = {"revenue": "revenue", "energy_cost": "energy", "opex": "opex", "ebitda": "ebitda"}
OPEX_LINES = ("maintenance", "software", "colocation", "staff") + PROGRAMME_COLUMNS + PLATFORM_COLUMNS[1:]

GRID = """\
scenario:
  kind: grid
  name: build-out-grid
  axes:
    - {param: order_month, op: set, values: [0, 12, 30], clusters: [phoenix-b200-phase2]}
    - {shock: price, values: [0.8, 1.0]}
    - {param: platform.take_rate, op: set, values: [0.0, 0.03]}
    - {param: optimization.energy_saving, op: scale, values: [0.0, 1.0]}
    - {param: contracts.anchor.loss_month, op: set, values: [1.0e9, 20]}
"""
BASE_POINT = {"order_month": 12, "price": 1.0, "platform_take_rate": 0.03,
              "optimization_energy_saving": 1.0, "contracts_anchor_loss_month": 1e9}

MC = """\
scenario:
  kind: montecarlo
  paths: 16
  seed: 5
  price: {volatility: 0.4}
  utilization: {ar: 0.8, sigma_training: 0.15, sigma_inference: 0.05}
  energy: {volatility: 0.3, mean_reversion: 0.1}
  events:
    - {param: order_month, dist: discrete, values: [6, 18], probs: [0.5, 0.5], clusters: [phoenix-b200-phase2]}
    - {param: platform.users_max, dist: uniform, low: 1000, high: 4000}
"""


# ------------------------------------------------------------------ checks


def _payback(cf, t_f: int):
    """MODEL.md, version 2: the first t >= t_f with cumulative CF (from t = 0) >= 0,
    linear inside the month, minus t_f; 0 when it is >= 0 at t_f; inf if never."""
    cum = np.cumsum(cf)
    if cum[t_f] >= 0:
        return 0.0
    hit = np.nonzero(cum[t_f:] >= 0)[0]
    if not hit.size:
        return math.inf
    k = t_f + int(hit[0])
    return (k - 1) - cum[k - 1] / cf[k] - t_f


def _order_months(st) -> dict[str, int]:
    """Each cluster's order month: the month of its capex (0 when it has none)."""
    return {c: int(np.argmax(st.column(c, "capex") != 0)) for c in st.clusters}


def _check_lines(st, scale: float) -> None:
    """The identities of every scope's lines (costs positive, flows signed)."""
    atol = TOL * scale
    absent = np.zeros(len(st.periods))  # the columns of a programme or a platform the portfolio lacks
    for scope in st.scopes:
        c = {name: absent for name in PROGRAMME_COLUMNS + PLATFORM_COLUMNS} | st.table(scope)

        def same(a, b, what):
            np.testing.assert_allclose(a, b, rtol=TOL, atol=atol, err_msg=f"{scope}: {what}")

        same(c["revenue"], c["revenue_reserved"] + c["revenue_on_demand"] + c["revenue_platform"], "revenue")
        same(c["opex"], sum(c[k] for k in OPEX_LINES), "opex = its lines")
        same(c["ebitda"], c["revenue"] - c["energy"] - c["opex"], "EBITDA")
        same(c["terminal_value"], c["resale"] - c["tax_on_sale"], "terminal value")
        same(c["project_cf"], c["ebitda"] - c["tax"] + c["terminal_value"] - c["capex"], "project CF")
        same(c["equity_cf"], c["project_cf"] + c["debt_drawdown"] - c["debt_service"]
             + c["interest_tax_shield"], "equity CF")
        same(c["principal"], c["debt_service"] - c["interest"], "principal")
        same(c["balance"][0], c["debt_drawdown"][0], "balance at month 0")
        same(c["balance"][1:], c["balance"][:-1] + c["debt_drawdown"][1:] - c["principal"][1:], "balance")
        same(c["discounted_cf"], c["project_cf"] * c["discount_factor"], "discounted CF")
        same(c["cumulative_cf"], np.cumsum(c["project_cf"]), "cumulative CF")
        assert not c["resale"][:-1].any() and np.isnan(c["dscr"][0]), scope
        assert (c["debt_drawdown"] != 0).sum() <= (len(st.clusters) if scope == PORTFOLIO_SCOPE else 1)


def _check_sums(st, scale: float) -> None:
    """The portfolio is its clusters and its platform, month by month."""
    for j, name in enumerate(st.columns):
        if KIND[name] in ("flow", "stock"):
            np.testing.assert_allclose(st.values[0, :, j], st.values[1:, :, j].sum(axis=0), rtol=TOL,
                                       atol=TOL * scale, err_msg=name)


def _check_totals(st, want, scale: float, where: str) -> None:
    """Every scope's totals against `want(scope)`, the run's outputs there (the platform's:
    its NPV and revenue, and the portfolio's opex and EBITDA less the clusters')."""
    atol = TOL * scale
    rate = float(st.case.rate[0])  # the point's (an axis may move it)
    t_o = _order_months(st)
    for scope in st.scopes:
        w = want(scope)
        col = lambda n: st.column(scope, n)  # noqa: E731
        here = f"{where} {scope}"
        cf = col("project_cf")
        v = (1.0 + rate) ** (-np.arange(cf.shape[0]) / 12.0)
        close_to(np.sum(cf * v), w["npv"], atol, f"{here} npv")
        close_to(np.sum(col("discounted_cf")), w["npv"], atol, f"{here} npv (column)")
        for out, line in TOTALS.items():
            close_to(np.sum(col(line)[1:]), w[out], atol, f"{here} {out}")
        if "optimization_cost" in w:
            close_to(np.sum(col("optimization_cost")), w["optimization_cost"], atol, f"{here} optimization_cost")
        if scope == PLATFORM_SCOPE:
            continue
        close_to(w["irr"], npf_annual_irr(cf), 1e-10, f"{here} irr")
        if col("debt_drawdown").any():
            close_to(w["equity_irr"], npf_annual_irr(col("equity_cf")), 1e-10, f"{here} equity_irr")
        dscr = col("dscr")
        close_to(np.nanmin(dscr) if (~np.isnan(dscr)).any() else math.nan, w["min_dscr"], 0.0, f"{here} dscr")
        t_f = min(t_o.values()) if scope == PORTFOLIO_SCOPE else t_o[scope]
        close_to(_payback(cf, t_f), w["payback_months"], 1e-7, f"{here} payback")
        close_to(np.sum(cf) / np.sum(col("capex")), w["roi"], TOL, f"{here} roi")
    if st.with_platform:
        w = want(PORTFOLIO_SCOPE)
        close_to(np.sum(st.column(PLATFORM_SCOPE, "discounted_cf")), w["platform_npv"], atol, "platform_npv")
        close_to(np.sum(st.column(PLATFORM_SCOPE, "revenue")), w["platform_revenue"], atol, "platform_revenue")


def _scale(pf) -> float:
    return sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters) + 1.0


def _wanted(out: dict, s: int, names: list[str]):
    """want(scope) for _check_totals from a run's outputs at row s."""
    def want(scope):
        if scope == PORTFOLIO_SCOPE:
            return {k: float(np.asarray(v)[s]) for k, v in out.items()
                    if not k.startswith("cluster_") and np.ndim(v) == 1}
        if scope == PLATFORM_SCOPE:
            clusters = {k: float(np.sum(out["cluster_" + k][s])) for k in ("opex", "ebitda")}
            return {"npv": out["platform_npv"][s], "revenue": out["platform_revenue"][s], "energy_cost": 0.0,
                    **{k: out[k][s] - clusters[k] for k in clusters}}
        c = names.index(scope)
        return {k[len("cluster_"):]: float(np.asarray(v)[s, c]) for k, v in out.items()
                if k.startswith("cluster_") and np.ndim(v) == 2}
    return want


def _run(pf, sc) -> dict:
    run = prepare(pf, sc, make_backend("numpy"))
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


@pytest.fixture(scope="module")
def example():
    return load_portfolio(EXAMPLE_V2)


@pytest.fixture(scope="module")
def base(example):
    return statement_mod.statement(example)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grid.yaml"
    path.write_text(GRID)
    pf = load_portfolio(EXAMPLE_V2)
    sc = load_scenario(path, pf)
    return pf, sc, _run(pf, sc)


def _flat(sc, point: dict) -> int:
    return next(f for f in range(sc.size) if grid_point(sc, f) == point)


# ------------------------------------------------------------------ example_v2


def test_base_case_adds_up_to_the_grid_runs_base_point(base, grid):
    """Every scope of the base case: lines add up, totals are the grid run's at its base
    point (and evaluate_base's) to 1e-9, platform and programme included."""
    pf, sc, out = grid
    assert base.scopes == (PORTFOLIO_SCOPE, *pf.cluster_names, PLATFORM_SCOPE) and base.with_platform
    assert base.clusters == tuple(pf.cluster_names)
    assert set(PROGRAMME_COLUMNS + PLATFORM_COLUMNS) <= set(base.columns)
    scale = _scale(pf)
    _check_lines(base, scale)
    _check_sums(base, scale)
    flat = _flat(sc, BASE_POINT)
    _check_totals(base, _wanted(out, flat, pf.cluster_names), scale, "base vs grid")
    ev = evaluate_base(pf)
    _check_totals(base, _wanted({k: np.asarray(v)[None] for k, v in ev.items()}, 0, pf.cluster_names),
                  scale, "base vs evaluate_base")
    # the statement's own outputs are the run's
    for o in (*OUTPUTS, "optimization_cost", "platform_npv", "platform_revenue"):
        close_to(base.outputs[PORTFOLIO_SCOPE][o], out[o][flat], TOL * scale, o)
    assert base.outputs[PLATFORM_SCOPE]["npv"] == float(ev["platform_npv"])
    assert math.isnan(base.outputs[PLATFORM_SCOPE]["irr"]) and base.outputs[PLATFORM_SCOPE]["energy_cost"] == 0.0


@pytest.mark.parametrize("flat", range(0, 48, 3))
def test_grid_points_add_up_to_the_run(grid, flat):
    """Points that move the tranche's order month, the price, the platform's take, the
    programme's saving and the anchor's loss month: each statement is the run's point."""
    pf, sc, out = grid
    st = compute(pf, resolve_case(pf, sc, [f"{k}={v!r}" for k, v in grid_point(sc, flat).items()]))
    scale = _scale(pf)
    _check_lines(st, scale)
    _check_sums(st, scale)
    _check_totals(st, _wanted(out, flat, pf.cluster_names), scale, f"point {flat}")
    assert _order_months(st)[TRANCHE] == min(grid_point(sc, flat)["order_month"], pf.horizon_months)


def test_a_version_1_cluster_keeps_its_version_1_flows(example, base, tmp_path):
    """dallas-h100 (version 1 keys) inside the itemised portfolio: its implied contracts
    and segment are derived at the base case, so its lines are those of the same cluster
    in a version 1 file (revenue, not 0)."""
    doc = yaml.safe_load(EXAMPLE_V2.read_text())
    doc["portfolio"].pop("platform")
    doc["clusters"] = [c for c in doc["clusters"] if c["name"] == V1_CLUSTER]
    v1 = load_portfolio_doc(tmp_path, doc)
    assert not v1.itemised and example.itemised
    alone = statement_mod.statement(v1)
    assert alone.columns == COLUMN_NAMES and alone.scopes == (PORTFOLIO_SCOPE, V1_CLUSTER)
    assert base.column(V1_CLUSTER, "revenue").sum() > 1e7
    for name in COLUMN_NAMES:
        np.testing.assert_allclose(base.column(V1_CLUSTER, name), alone.column(V1_CLUSTER, name), rtol=1e-12,
                                   atol=1e-6, equal_nan=True, err_msg=name)


def test_capex_and_the_draw_at_the_order_month_and_nothing_before(example, base):
    """The tranche ordered at month 12 pays N K (1 - c_K) and draws its debt there; every
    line before is 0; its balance is the draw from then on, until it amortises."""
    capex, draw = base.column(TRANCHE, "capex"), base.column(TRANCHE, "debt_drawdown")
    assert np.flatnonzero(capex).tolist() == [ORDER] and np.flatnonzero(draw).tolist() == [ORDER]
    assert capex[ORDER] == pytest.approx(1024 * 55_000 * 0.9, rel=1e-12)
    assert draw[ORDER] == pytest.approx(0.5 * capex[ORDER], rel=1e-12)
    before = base.values[base.scopes.index(TRANCHE), :ORDER]
    money = [j for j, c in enumerate(base.columns) if KIND[c] != "factor" and c != "dscr"]
    assert not before[:, money].any()
    assert np.isnan(base.column(TRANCHE, "dscr")[:ORDER + 1]).all()
    balance = base.column(TRANCHE, "balance")
    assert balance[ORDER] == draw[ORDER] and balance[ORDER + 1] < draw[ORDER]
    assert base.column(TRANCHE, "depreciation")[ORDER] == 0 and base.column(TRANCHE, "depreciation")[ORDER + 1] > 0
    # the portfolio pays each cluster's capex in its own month
    port = base.column(PORTFOLIO_SCOPE, "capex")
    assert np.flatnonzero(port).tolist() == [0, ORDER]
    assert port[ORDER] == capex[ORDER]
    # by year: month 12 falls in year 1
    yearly = base.annual()
    assert yearly.column(TRANCHE, "capex").tolist()[:2] == [0.0, capex[ORDER]]


def test_the_programme_is_a_line_of_opex(example, base, tmp_path):
    """optimization_cost: the one-off cost at its start month (month 1 here), then the
    yearly cost, escalated; its sum is the output; 0 for the clusters without one; the
    savings sit in the energy and opex lines."""
    line = base.column(PROGRAMME, "optimization_cost")
    assert line[0] == 0 and line[1] == 1_000_000.0
    assert line[2] == pytest.approx(500_000 / 12 * 1.03 ** (2 / 12), rel=1e-12)
    assert np.sum(line) == pytest.approx(base.outputs[PROGRAMME]["optimization_cost"], rel=1e-12)
    for c in example.cluster_names:
        if c != PROGRAMME:
            assert not base.column(c, "optimization_cost").any()
    # the saving: maintenance after it, (1 - o_s h_t) of the line without the programme
    no_saving = _shocked(example, tmp_path, "optimization.opex_saving", 0.0)
    h = np.clip((np.arange(61) - 1) / 6.0, 0, 1)
    np.testing.assert_allclose(base.column(PROGRAMME, "maintenance"),
                               no_saving.column(PROGRAMME, "maintenance") * (1 - 0.10 * h), rtol=1e-12)


def _shocked(pf, tmp_path, param: str, value: float):
    """The statement with `param` set to `value` by a one-point grid."""
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"scenario": {"kind": "grid", "name": "one", "axes": [
        {"param": param, "op": "set", "values": [value]}]}}))
    return statement_mod.statement(pf, load_scenario(path, pf))


def test_the_platform_is_a_scope_counted_in_the_portfolio(example, base):
    """Launched at month 6: nothing before; the build cost that month; its revenue a take
    of the clusters' plus user fees; opex = cost of sales + run + build; CF^p = EBITDA -
    tax; the clusters carry none of its lines; the portfolio's flows include it."""
    pl = base.table(PLATFORM_SCOPE)
    assert not pl["revenue"][:6].any() and pl["revenue"][6] > 0
    assert np.flatnonzero(pl["build_cost_platform"]).tolist() == [6] and pl["build_cost_platform"][6] == 5e6
    clusters_revenue = sum(base.column(c, "revenue") for c in example.cluster_names)
    users = 3000 * (1 - np.exp(-(np.arange(61) - 6 + 1) / 18))
    want = np.where(np.arange(61) >= 6, 0.03 * clusters_revenue + users * 300, 0.0)
    np.testing.assert_allclose(pl["revenue"], want, rtol=1e-12)
    np.testing.assert_allclose(pl["revenue_platform"], pl["revenue"], rtol=0)
    np.testing.assert_allclose(pl["cost_of_sales_platform"], 0.3 * pl["revenue"], rtol=1e-12)
    np.testing.assert_allclose(pl["tax"], 0.21 * pl["ebitda"], rtol=1e-12)
    assert not pl["capex"].any() and not pl["debt_drawdown"].any() and np.isnan(pl["dscr"]).all()
    assert np.array_equal(pl["equity_cf"], pl["project_cf"])
    for c in example.cluster_names:
        for name in PLATFORM_COLUMNS:
            assert not base.column(c, name).any(), (c, name)
    np.testing.assert_allclose(base.column(PORTFOLIO_SCOPE, "revenue_platform"), pl["revenue"], rtol=0)
    # --cluster leaves the platform out, as it leaves the portfolio
    one = base.select([TRANCHE])
    assert one.scopes == (TRANCHE,) and not one.with_platform and one.clusters == (TRANCHE,)


def test_line_kernel_leaves_cash_flows_bit_for_bit_on_version_2(example):
    """cash_flow_lines returns cash_flows' arrays (the platform's too) unchanged."""
    base = {k: np.asarray(v) for k, v in example.base_arrays().items()}
    p, _ = apply_axis_values(base, np.asarray(example.discount_rate), (), ())
    with np.errstate(all="ignore"):
        a, b = cash_flows(p, example.horizon_months), cash_flow_lines(p, example.horizon_months)
    assert set(b) == set(a) | {"lines"}
    for k in a:
        if k == "platform":
            assert set(b[k]) == set(a[k]) | {"lines"} and set(b[k]["lines"]) == set(PLATFORM_LINES)
            assert all(np.array_equal(a[k][q], b[k][q]) for q in a[k])
        else:
            assert np.array_equal(a[k], b[k], equal_nan=True), k


def test_a_named_set_is_the_named_run(example):
    """build-out's platform-adoption-stalls: the statement's totals are the named run's."""
    from stresstest.named_run import evaluate_named

    pf = load_portfolio(EXAMPLE_V2)
    sc = load_scenario(list_presets()["build-out"], pf)
    out = evaluate_named(pf, sc)
    k = 1 + [s.name for s in sc.sets].index("platform-adoption-stalls")
    st = statement_mod.statement(pf, sc, at=["scenario=platform-adoption-stalls"])
    scale = _scale(pf)
    _check_lines(st, scale)
    _check_totals(st, _wanted(out, k, pf.cluster_names), scale, "named")
    assert st.outputs[PORTFOLIO_SCOPE]["platform_npv"] < 0  # docs/model.md: -$8.6M


def test_a_path_is_the_path_run_save_paths_keeps(tmp_path):
    """A Monte Carlo path that draws the tranche's order month and the platform's users:
    its lines add up and its NPVs are the run's path NPVs."""
    mc = tmp_path / "mc.yaml"
    mc.write_text(MC)
    out = tmp_path / "mc.h5"
    r = CliRunner().invoke(main, ["run", str(EXAMPLE_V2), "-s", str(mc), "-o", str(out), "--save-paths", "-q",
                                  "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(out, group="paths", engine="h5netcdf") as ds:
        npv, c_npv = ds["npv"].values, ds["cluster_npv"].values
    pf = load_portfolio(EXAMPLE_V2)
    sc = load_scenario(mc, pf)
    scale = _scale(pf)
    months = set()
    for k in (0, 3, 11):
        st = statement_mod.statement(pf, sc, path=k)
        _check_lines(st, scale)
        _check_sums(st, scale)
        _check_totals(st, lambda s: st.outputs[s], scale, f"path {k}")
        close_to(np.sum(st.column(PORTFOLIO_SCOPE, "discounted_cf")), npv[k], TOL * scale, f"path {k} npv")
        for c, name in enumerate(pf.cluster_names):
            close_to(np.sum(st.column(name, "discounted_cf")), c_npv[k, c], TOL * scale, f"path {k} {name}")
        months.add(_order_months(st)[TRANCHE])
    assert months <= {6, 18}


@pytest.mark.parametrize("seed", range(6))
def test_random_itemised_portfolios_add_up_at_random_points(tmp_path, seed):
    """Random portfolios with contracts and segments (some clusters with version 1 keys),
    axes on item paths, version 1 keys and named shocks: the statement at a point is the
    run's there."""
    rng = np.random.default_rng(9100 + seed)
    pf = load_portfolio_doc(tmp_path, random_portfolio_v2(rng))
    axes = random_axes_v2(rng, pf, 1)  # one value each: the grid's one point, no --at
    sc = Scenario(path="<random>", kind="grid", name="random", axes=axes)
    out = evaluate_zipped(pf, axes, make_backend("numpy"))
    st = compute(pf, resolve_case(pf, sc))
    scale = _scale(pf)
    _check_lines(st, scale)
    _check_sums(st, scale)
    _check_totals(st, _wanted(out, 0, pf.cluster_names), scale, f"seed {seed}")


# ------------------------------------------------------------------ files


def test_files_carry_the_new_columns_and_the_platform(base, tmp_path):
    """CSV, Excel, HDF5 and JSON: every column (optimization_cost and the platform's lines
    included) of every scope (the platform's too), as the statement holds them."""
    import pandas as pd
    from openpyxl import load_workbook

    df = pd.read_csv(write(base, tmp_path / "s.csv"))
    assert list(df.columns) == ["scope", "month", *base.columns]
    for k, scope in enumerate(base.scopes):
        got = df[df["scope"] == scope][list(base.columns)].to_numpy(dtype=np.float64)
        assert np.array_equal(got, base.values[k], equal_nan=True), scope

    wb = load_workbook(write(base, tmp_path / "s.xlsx"))
    assert wb.sheetnames == [*base.scopes, "about"]
    rows = list(wb[PLATFORM_SCOPE].iter_rows(values_only=True))
    assert list(rows[0]) == ["month", *base.columns]
    j = base.columns.index("revenue_platform")
    assert [r[1 + j] for r in rows[1:]] == [float("%.16g" % x) for x in base.column(PLATFORM_SCOPE, "revenue_platform")]
    about = [r for r in wb["about"].iter_rows(values_only=True) if r and r[0]]
    head = next(r for r in about if r[0] == "outputs at this point")
    assert {"optimization_cost", "platform_npv", "platform_revenue"} <= set(head)
    by_scope = {r[0]: dict(zip(head[1:], r[1:])) for r in about if r[0] in base.scopes}
    assert by_scope[PORTFOLIO_SCOPE]["platform_npv"] == pytest.approx(base.outputs[PORTFOLIO_SCOPE]["platform_npv"])
    assert by_scope[PLATFORM_SCOPE]["npv"] == pytest.approx(base.outputs[PLATFORM_SCOPE]["npv"])
    assert by_scope[PLATFORM_SCOPE]["irr"] is None and by_scope[TRANCHE]["platform_npv"] is None

    with xr.open_dataset(write(base, tmp_path / "s.h5"), engine="h5netcdf") as ds:
        assert ds.sizes == {"month": 61, "cluster": len(base.clusters)}
        assert ds["cluster"].values.tolist() == list(base.clusters)
        for j, name in enumerate(base.columns):
            assert np.array_equal(ds[name].values, base.values[0, :, j], equal_nan=True), name
            assert np.array_equal(ds["cluster_" + name].values, base.values[1:-1, :, j].T, equal_nan=True), name
            assert ds["platform_" + name].dims == ("month",)
            assert np.array_equal(ds["platform_" + name].values, base.values[-1, :, j], equal_nan=True), name
        assert ds.attrs["model_version"] == 2
        assert json.loads(ds.attrs["outputs_json"])[PLATFORM_SCOPE]["irr"] is None
    with xr.open_dataset(write(base.select([TRANCHE]).annual(), tmp_path / "y.h5"), engine="h5netcdf") as ds:
        assert ds.sizes == {"year": 6, "cluster": 1} and not any(v.startswith("platform_") for v in ds)


def test_json_from_the_command_line():
    r = CliRunner().invoke(main, ["cashflows", str(EXAMPLE_V2), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    pf = load_portfolio(EXAMPLE_V2)
    assert list(doc["scopes"]) == [PORTFOLIO_SCOPE, *pf.cluster_names, PLATFORM_SCOPE]
    assert set(PROGRAMME_COLUMNS + PLATFORM_COLUMNS) <= set(doc["columns"])
    assert doc["units"]["optimization_cost"] == "USD"
    base = evaluate_base(pf)
    assert doc["outputs"][PLATFORM_SCOPE]["npv"] == float(base["platform_npv"])
    assert sum(doc["scopes"][V1_CLUSTER]["revenue"]) == pytest.approx(float(base["cluster_revenue"][2]), rel=1e-12)
    capex = doc["scopes"][TRANCHE]["capex"]
    assert capex.index(max(capex)) == ORDER
