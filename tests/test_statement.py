"""The cash-flow statement (`stresstest cashflows`, stresstest/statement.py).

Its columns add up to the run's outputs (NPV, IRR by numpy_financial 1.0, the totals,
equity IRR, min DSCR, payback, ROI) at random grid points of random portfolios; its
lines obey the model's identities; the portfolio is the sum of the clusters; the annual
form sums the monthly; CSV, Excel and HDF5 hold the same numbers; a Monte Carlo path's
statement is the path `run --save-paths` keeps; bad input is refused before any work.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from helpers import close_to, npf_annual_irr, random_portfolio, random_scenario

import stresstest.statement as statement_mod
from stresstest.backends import make_backend
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base, grid_point, prepare
from stresstest.kernels.cashflows import cash_flow_lines, cash_flows
from stresstest.kernels.params import OUTPUTS
from stresstest.presets import list_presets
from stresstest.statement import COLUMN_NAMES, KIND, compute, resolve_case, write

TOL = 1e-9
MONEY = ("npv", "revenue", "energy_cost", "opex", "ebitda")
TOTALS = {"revenue": "revenue", "energy_cost": "energy", "opex": "opex", "ebitda": "ebitda"}


def _payback(cum, cf):
    """First month with cumulative CF >= 0, linear inside the month (docs/model.md)."""
    if cum[0] >= 0:
        return 0.0
    hit = np.nonzero(cum >= 0)[0]
    if not hit.size:
        return math.inf
    k = int(hit[0])
    return (k - 1) - cum[k - 1] / cf[k]


def _run_outputs(pf, sc):
    run = prepare(pf, sc, make_backend("numpy"))
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def _at(sc, flat):
    return [f"{k}={v!r}" for k, v in grid_point(sc, flat).items()]


def _scope_outputs(out, flat, scope, names):
    if scope == "portfolio":
        return {o: float(out[o][flat]) for o in OUTPUTS}
    c = names.index(scope)
    return {o: float(out["cluster_" + o][flat, c]) for o in OUTPUTS}


def _check_adds_up(st, want: dict, rate: float, scale: float, where: str):
    """The statement's columns of one scope against the run's outputs there."""
    for scope in st.scopes:
        w = want(scope)
        col = lambda n: st.column(scope, n)  # noqa: E731
        here = f"{where} {scope}"
        cf, cfe = col("project_cf"), col("equity_cf")
        t = np.arange(cf.shape[0])
        v = (1.0 + rate) ** (-t / 12.0)
        close_to(float(np.sum(cf * v)), w["npv"], TOL * scale, f"{here} npv (discounted CF)")
        close_to(float(np.sum(col("discounted_cf"))), w["npv"], TOL * scale, f"{here} npv (column)")
        irr = npf_annual_irr(cf)
        close_to(w["irr"], irr, 1e-10, f"{here} irr vs numpy_financial")
        for out, line in TOTALS.items():
            close_to(float(np.sum(col(line)[1:])), w[out], TOL * scale, f"{here} {out}")
        has_debt = col("debt_drawdown")[0] != 0
        if has_debt:
            close_to(w["equity_irr"], npf_annual_irr(cfe), 1e-10, f"{here} equity_irr")
        else:
            assert math.isnan(w["equity_irr"]) and np.array_equal(cf, cfe), here
        dscr = col("dscr")
        got = float(np.min(dscr[~np.isnan(dscr)])) if (~np.isnan(dscr)).any() else math.nan
        close_to(got, w["min_dscr"], 0.0, f"{here} min_dscr")
        cum = col("cumulative_cf")
        np.testing.assert_allclose(cum, np.cumsum(cf), rtol=0, atol=TOL * scale)
        close_to(_payback(cum, cf), w["payback_months"], 1e-7, f"{here} payback")
        capex = float(col("capex")[0])
        if capex:
            close_to(float(np.sum(cf)) / capex, w["roi"], TOL, f"{here} roi")


def _check_identities(st, scale):
    atol = TOL * scale
    for scope in st.scopes:
        c = st.table(scope)

        def same(a, b, what):
            np.testing.assert_allclose(a, b, rtol=TOL, atol=atol, err_msg=f"{scope}: {what}")

        same(c["revenue"], c["revenue_reserved"] + c["revenue_on_demand"], "revenue = reserved + on-demand")
        same(c["opex"], c["maintenance"] + c["software"] + c["colocation"] + c["staff"], "opex lines")
        same(c["ebitda"], c["revenue"] - c["energy"] - c["opex"], "EBITDA")
        same(c["terminal_value"], c["resale"] - c["tax_on_sale"], "terminal value")
        same(c["project_cf"][1:-1], (c["ebitda"] - c["tax"])[1:-1], "CF = EBITDA - tax")
        same(c["project_cf"][-1], c["ebitda"][-1] - c["tax"][-1] + c["terminal_value"][-1], "CF_T")
        same(c["project_cf"][0], -c["capex"][0], "CF_0 = -capex")
        same(c["equity_cf"], c["project_cf"] + c["debt_drawdown"] - c["debt_service"]
             + c["interest_tax_shield"], "equity CF")
        same(c["principal"], c["debt_service"] - c["interest"], "principal")
        same(c["balance"][1:], c["balance"][:-1] - c["principal"][1:], "balance amortises")
        same(c["discounted_cf"], c["project_cf"] * c["discount_factor"], "discounted CF")
        assert c["resale"][:-1].tolist() == [0.0] * (len(c["resale"]) - 1)
        assert np.isnan(c["dscr"][0])


@pytest.mark.parametrize("seed", range(16))
def test_statement_adds_up_to_the_run_at_random_grid_points(seed):
    rng = np.random.default_rng(2400 + seed)
    pf = random_portfolio(rng)
    sc = random_scenario(rng, pf)
    out = _run_outputs(pf, sc)
    scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters) + 1.0
    for flat in rng.choice(sc.size, size=min(sc.size, 3), replace=False):
        flat = int(flat)
        case = resolve_case(pf, sc, _at(sc, flat))
        assert case.info["flat_index"] == flat
        st = compute(pf, case)
        where = f"seed {seed} point {grid_point(sc, flat)}"
        rate = float(case.rate[0])
        _check_adds_up(st, lambda s: _scope_outputs(out, flat, s, pf.cluster_names), rate, scale, where)
        # the statement's own outputs are the run's
        for scope in st.scopes:
            for o, v in _scope_outputs(out, flat, scope, pf.cluster_names).items():
                close_to(st.outputs[scope][o], v, TOL * scale if o in MONEY else 1e-10, f"{where} {o}")
        _check_identities(st, scale)
        # the portfolio is the sum of its clusters, month by month
        for j, name in enumerate(st.columns):
            if KIND[name] in ("flow", "stock"):
                np.testing.assert_allclose(st.values[0, :, j], st.values[1:, :, j].sum(axis=0),
                                           rtol=TOL, atol=TOL * scale, err_msg=name)


def test_base_case_adds_up_to_evaluate_base():
    pf = load_portfolio(list_presets()["example"])
    st = statement_mod.statement(pf)
    base = evaluate_base(pf)
    scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters)

    def want(scope):
        if scope == "portfolio":
            return {o: float(base[o]) for o in OUTPUTS}
        c = pf.cluster_names.index(scope)
        return {o: float(base["cluster_" + o][c]) for o in OUTPUTS}

    _check_adds_up(st, want, pf.discount_rate, scale, "example base")
    _check_identities(st, scale)
    assert st.values.shape == (1 + len(pf.clusters), pf.horizon_months + 1, len(COLUMN_NAMES))


@pytest.mark.parametrize("seed", range(40))
def test_line_kernel_leaves_cash_flows_bit_for_bit(seed):
    """cash_flow_lines returns cash_flows' arrays unchanged, with or without path factors."""
    rng = np.random.default_rng(seed)
    pf = random_portfolio(rng)
    T, C, S = pf.horizon_months, len(pf.clusters), 2
    p = {k: np.repeat(v[None, :], S, axis=0) * (1 + 0.1 * rng.random((S, 1))) if k == "energy_price"
         else v[None, :] for k, v in pf.base_arrays().items()}
    factors = None
    if seed % 2:
        factors = {"price": np.exp(0.1 * rng.standard_normal((S, C, T))),
                   "util": 0.05 * rng.standard_normal((S, C, T)),
                   "energy": np.exp(0.1 * rng.standard_normal((S, C, T)))}
    with np.errstate(all="ignore"):
        a, b = cash_flows(p, T, factors), cash_flow_lines(p, T, factors)
    assert set(b) == set(a) | {"lines"}
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k


@pytest.mark.parametrize("horizon", [1, 12, 37, 60])
def test_annual_sums_equal_the_monthly(horizon):
    rng = np.random.default_rng(horizon)
    pf = random_portfolio(rng, n_clusters=3, horizon=horizon)
    st = statement_mod.statement(pf)
    yr = st.annual()
    n_years = math.ceil(horizon / 12) + 1
    assert yr.period == "year" and yr.periods.tolist() == list(range(n_years))
    assert "discount_factor" not in yr.columns
    scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in pf.clusters)
    for scope in st.scopes:
        for name in yr.columns:
            m, y = st.column(scope, name), yr.column(scope, name)
            if KIND[name] == "flow":
                np.testing.assert_allclose(y.sum(), m.sum(), rtol=TOL, atol=TOL * scale)
                assert y[0] == m[0]  # year 0 is month 0 (capex, drawdown)
                for k in range(1, n_years):
                    np.testing.assert_allclose(y[k], m[12 * (k - 1) + 1:12 * k + 1].sum(), rtol=TOL,
                                               atol=TOL * scale)
            elif KIND[name] == "stock":
                ends = [0] + [min(12 * k, horizon) for k in range(1, n_years)]
                assert y.tolist() == m[ends].tolist()
            else:  # DSCR: the year's minimum, so the minimum over years is min DSCR
                assert np.array_equal(np.nanmin(y) if np.isfinite(y).any() else np.nan,
                                      np.nanmin(m) if np.isfinite(m).any() else np.nan, equal_nan=True)
        np.testing.assert_allclose(yr.column(scope, "cumulative_cf"), np.cumsum(yr.column(scope, "project_cf")),
                                   rtol=TOL, atol=TOL * scale)


def _small_statement():
    rng = np.random.default_rng(7)
    pf = random_portfolio(rng, n_clusters=2, horizon=24)
    pf.clusters[0]["debt_fraction"] = 0.5  # a DSCR column with values and NaNs
    return statement_mod.statement(pf)


@pytest.mark.parametrize("annual", [False, True])
def test_csv_round_trips_through_pandas(tmp_path, annual):
    import pandas as pd

    st = _small_statement()
    st = st.annual() if annual else st
    path = write(st, tmp_path / "s.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == ["scope", st.period, *st.columns]
    for k, scope in enumerate(st.scopes):
        part = df[df["scope"] == scope]
        assert part[st.period].tolist() == st.periods.tolist()
        got = part[list(st.columns)].to_numpy(dtype=np.float64)
        assert np.array_equal(got, st.values[k], equal_nan=True), scope
    assert not list(tmp_path.glob(".*partial"))


def test_excel_cells_equal_the_values(tmp_path):
    from openpyxl import load_workbook

    st = _small_statement()
    path = write(st, tmp_path / "s.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == [*st.scopes, "about"]
    for k, scope in enumerate(st.scopes):
        rows = list(wb[scope].iter_rows(values_only=True))
        assert list(rows[0]) == ["month", *st.columns]
        assert [r[0] for r in rows[1:]] == st.periods.tolist()
        for i, r in enumerate(rows[1:]):
            for j, cell in enumerate(r[1:]):
                want = st.values[k, i, j]
                if math.isnan(want):
                    assert cell is None
                else:
                    # openpyxl stores numbers as "%.16g": equal to 16 significant digits
                    assert isinstance(cell, float | int), (scope, i, st.columns[j])
                    assert cell == float("%.16g" % want), (scope, i, st.columns[j])
                    assert abs(cell - want) <= 1e-15 * abs(want), (scope, i, st.columns[j])
    about = {r[0]: r[1] for r in wb["about"].iter_rows(values_only=True) if r and r[0]}
    assert about["case"] == "base case (no shock)" and about["currency"] == "USD"


def test_excel_sheet_names_are_valid_and_unique():
    names = statement_mod.sheet_names(["portfolio", "a/b:c" * 10, "about", "ABOUT"])
    assert len(set(n.lower() for n in names)) == len(names) == 5
    assert all(len(n) <= 31 and not set(n) & set("[]:*?/\\") for n in names)


def test_hdf5_is_xarray_readable(tmp_path):
    st = _small_statement()
    path = write(st, tmp_path / "s.h5")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds.sizes == {"month": 25, "cluster": 2}
        assert ds["cluster"].values.tolist() == list(st.clusters)
        assert ds.attrs["kind"] == "cashflow_statement" and ds["revenue"].dims == ("month",)
        for j, name in enumerate(st.columns):
            assert np.array_equal(ds[name].values, st.values[0, :, j], equal_nan=True), name
            assert ds["cluster_" + name].dims == ("month", "cluster")
            assert np.array_equal(ds["cluster_" + name].values, st.values[1:, :, j].T, equal_nan=True), name
            assert ds[name].attrs["units"] == ("1" if name in ("dscr", "discount_factor") else "USD")
    yr = write(st.select([st.clusters[1]]).annual(), tmp_path / "y.h5")
    with xr.open_dataset(yr, engine="h5netcdf") as ds:
        assert ds.sizes == {"year": 3, "cluster": 1} and "revenue" not in ds and "cluster_revenue" in ds


def test_write_is_atomic(tmp_path, monkeypatch):
    st = _small_statement()

    def half(st, path):
        path.write_text("scope,month\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statement_mod, "write_csv", half)
    with pytest.raises(OSError):
        write(st, tmp_path / "s.csv")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ Monte Carlo

MC_YAML = """\
scenario:
  kind: montecarlo
  paths: 48
  seed: 11
  price: {volatility: 0.4}
  energy: {volatility: 0.3, mean_reversion: 0.1}
  correlation: {same_kind: 0.5, between: {price-utilization: 0.3}}
  events:
    - {param: next_gen_month, dist: triangular, low: 12, mode: 24, high: 36}
    - {param: client_loss_month, dist: discrete, values: [30, 1.0e9], probs: [0.5, 0.5], per_cluster: true}
    - {param: delivery_months, dist: uniform, low: 1, high: 6}
"""


@pytest.mark.parametrize("backend", ["numpy", "auto"])
def test_a_path_is_the_path_run_save_paths_keeps(tmp_path, backend):
    """--path N reads path N of the run: its NPV (discounted CF column and the output) is
    the NPV `run --save-paths` stored for that path, portfolio and clusters."""
    mc = tmp_path / "mc.yaml"
    mc.write_text(MC_YAML)
    out = tmp_path / "mc.h5"
    args = ["run", "-s", str(mc), "-o", str(out), "--save-paths", "-q", "--chunk-size", "7"]
    r = CliRunner().invoke(main, args + ([] if backend == "auto" else ["--backend", backend]))
    assert r.exit_code == 0, r.output
    pf = load_portfolio(list_presets()["example"])
    with xr.open_dataset(out, group="paths", engine="h5netcdf") as ds:
        npv, c_npv = ds["npv"].values, ds["cluster_npv"].values
        irr = ds["irr"].values
    scale = sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)
    tol = TOL if backend == "auto" else 1e-12
    for k in (0, 13, 47):
        r = CliRunner().invoke(main, ["cashflows", "-s", str(mc), "--path", str(k), "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["case"]["path"] == k and doc["case"]["seed"] == 11
        got = np.sum(doc["scopes"]["portfolio"]["discounted_cf"])
        assert abs(got - npv[k]) <= tol * scale, (k, got, npv[k])
        assert abs(doc["outputs"]["portfolio"]["npv"] - npv[k]) <= tol * scale
        assert doc["outputs"]["portfolio"]["irr"] == pytest.approx(irr[k], rel=TOL, abs=1e-10)
        for c, name in enumerate(pf.cluster_names):
            assert abs(np.sum(doc["scopes"][name]["discounted_cf"]) - c_npv[k, c]) <= tol * scale
            if backend == "numpy":  # the same arithmetic on the same draws: bit for bit
                assert doc["outputs"][name]["npv"] == c_npv[k, c]
        if backend == "numpy":
            assert doc["outputs"]["portfolio"]["npv"] == npv[k]


def test_path_statement_adds_up(tmp_path):
    from stresstest.loaders import load_scenario

    mc_path = tmp_path / "mc.yaml"
    mc_path.write_text(MC_YAML)
    pf = load_portfolio(list_presets()["example"])
    mc = load_scenario(mc_path, pf)
    st = statement_mod.statement(pf, mc, path=5)
    scale = sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)
    _check_adds_up(st, lambda s: st.outputs[s], pf.discount_rate, scale, "path 5")
    _check_identities(st, scale)
    base = statement_mod.statement(pf)
    assert not np.array_equal(base.values, st.values)  # the path moved the flows


def test_named_set_is_the_named_run():
    from stresstest.loaders import load_scenario
    from stresstest.named_run import evaluate_named

    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["named"], pf)
    out = evaluate_named(pf, sc)
    k = 2
    st = statement_mod.statement(pf, sc, at=[f"scenario={sc.sets[k - 1].name}"])
    scale = sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)
    _check_adds_up(st, lambda s: _scope_outputs(out, k, s, pf.cluster_names), pf.discount_rate, scale,
                   "named")


def test_a_named_set_that_gives_debt_solves_the_equity_irr(tmp_path):
    """A set that gives debt to clusters with none in the portfolio: the named run solves
    their equity IRR (once NaN for them), equal to numpy_financial's IRR of the equity
    flows of the set's parameters, and the statement of the set agrees."""
    from stresstest.loaders import load_scenario
    from stresstest.named_run import evaluate_named

    pf = load_portfolio(list_presets()["example"])
    free = [c for c, cl in enumerate(pf.clusters) if cl["debt_fraction"] == 0]
    assert free
    (tmp_path / "levered.yaml").write_text(
        "shockset:\n  name: levered\n  title: Levered\n  description: every cluster borrows\n"
        "  sources: {debt_fraction: a test}\n  shocks:\n    - {param: debt_fraction, op: set, value: 0.5}\n")
    (tmp_path / "named.yaml").write_text("scenario:\n  kind: named\n  name: t\n  sets: [levered.yaml]\n")
    sc = load_scenario(tmp_path / "named.yaml", pf)
    out = evaluate_named(pf, sc)
    from stresstest.named import shocked

    params, rate = shocked(pf, sc.sets)
    fl = cash_flows({k: v[1:2] for k, v in params.items()}, pf.horizon_months)
    for c in free:
        want = npf_annual_irr(np.asarray(fl["cfe"])[0, c])
        assert np.isfinite(out["cluster_equity_irr"][1, c])
        close_to(out["cluster_equity_irr"][1, c], want, 1e-10, f"cluster {c}", tol=1e-7)
        assert np.isnan(out["cluster_equity_irr"][0, c])  # no debt in the base case
    st = statement_mod.statement(pf, sc, at=["scenario=levered"])
    assert st.outputs["portfolio"]["equity_irr"] == pytest.approx(out["equity_irr"][1], rel=1e-12)


# ------------------------------------------------------------------ command line


def _invoke(*args):
    return CliRunner().invoke(main, ["cashflows", *args])


def test_table_shows_every_month_of_the_portfolio():
    r = CliRunner(env={"COLUMNS": "120"}).invoke(main, ["cashflows"])
    assert r.exit_code == 0, r.output
    pf = load_portfolio(list_presets()["example"])
    base = evaluate_base(pf)
    assert "cash-flow statement by month, base case (no shock)" in r.output
    assert "portfolio (amounts in USD k" in r.output and f"NPV {base['npv'] / 1e6:,.1f} M" in r.output
    lines = r.output.splitlines()
    for month in range(61):  # every month a row, in every table the columns split into
        assert any(line.startswith(f"│ {month:>5} │") for line in lines), month
    assert "cluster ashburn-h100 (" not in r.output and "--cluster NAME" in r.output
    assert all(len(line) <= 120 for line in lines)
    st = statement_mod.statement(pf)
    last_cf = st.column("portfolio", "project_cf")[60] / 1e3
    assert f"{last_cf:,.1f}" in r.output


def test_table_of_one_cluster_by_year_at_a_narrow_width():
    r = CliRunner(env={"COLUMNS": "60"}).invoke(main, ["cashflows", "--cluster", "lulea-h200", "--annual"])
    assert r.exit_code == 0, r.output
    assert "cluster lulea-h200" in r.output and "by year" in r.output and "portfolio (" not in r.output
    table_lines = [line for line in r.output.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert table_lines and all(len(line) <= 60 for line in table_lines)
    for year in range(6):
        assert any(line.startswith(f"│ {year:>4} │") for line in r.output.splitlines()), year


def test_json_holds_every_scope_and_column():
    r = _invoke("-s", "smoke", "--at", "utilization=-0.2", "--at", "price=0.5", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    pf = load_portfolio(list_presets()["example"])
    assert list(doc["scopes"]) == ["portfolio", *pf.cluster_names]
    assert doc["columns"] == list(COLUMN_NAMES) and doc["period"] == "month"
    assert doc["case"]["point"] == {"utilization": -0.2, "price": 0.5}
    port = doc["scopes"]["portfolio"]
    assert port["month"] == list(range(61)) and port["dscr"][0] is None
    assert doc["outputs"]["portfolio"]["npv"] == pytest.approx(sum(port["discounted_cf"]), rel=1e-12)
    assert doc["units"]["revenue"] == "USD" and doc["units"]["dscr"] == "1"


def test_files_from_the_command_line(tmp_path):
    import pandas as pd

    for suffix in (".csv", ".xlsx", ".h5"):
        out = tmp_path / f"s{suffix}"
        r = _invoke("--annual", "-o", str(out))
        assert r.exit_code == 0, r.output
        assert out.exists() and "wrote" in r.output
    df = pd.read_csv(tmp_path / "s.csv")
    assert set(df["scope"]) == {"portfolio", *load_portfolio(list_presets()["example"]).cluster_names}
    # an existing file is refused without --overwrite, replaced with it
    r = _invoke("-o", str(tmp_path / "s.csv"))
    assert r.exit_code == 2 and "exists" in r.output
    r = _invoke("-o", str(tmp_path / "s.csv"), "--overwrite")
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 7 * 61


def test_at_accepts_a_value_within_1e_9_of_a_grid_value():
    r = _invoke("-s", "smoke", "--at", "utilization=-0.2000000000001", "--at", "price=0.5", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["case"]["point"]["utilization"] == -0.2
    r = _invoke("-s", "smoke", "--at", "utilization=-0.2001", "--at", "price=0.5")
    assert r.exit_code == 2 and "not a value of the axis (values: -0.2, 0, 0.1)" in r.output


@pytest.fixture
def no_work(monkeypatch):
    """Fail any test that computes a statement: refusals come before any work."""
    def boom(*a, **k):
        raise AssertionError("computed before refusing")

    monkeypatch.setattr(statement_mod, "compute", boom)


@pytest.mark.parametrize("args, message", [
    (["-s", "smoke", "--at", "utilisation=0", "--at", "price=0.5", "--at", "utilization=0"],
     "unknown axis 'utilisation' (axes of smoke: utilization, price)"),
    (["-s", "smoke", "--at", "price=0.5"], "missing for axis 'utilization'"),
    (["-s", "smoke", "--at", "price=0.5", "--at", "price=1", "--at", "utilization=0"], "given twice"),
    (["-s", "smoke", "--at", "price", "--at", "utilization=0"], "must be AXIS=VALUE"),
    (["-s", "smoke", "--at", "price=cheap", "--at", "utilization=0"], "must be a number"),
    (["--path", "3"], "--path: needs a Monte Carlo scenario"),
    (["-s", "smoke", "--path", "3"], "--path: needs a Monte Carlo scenario"),
    (["-s", "montecarlo"], "--path: required"),
    (["-s", "montecarlo", "--path", "100000"], "not a path of montecarlo (paths 0..99999)"),
    (["-s", "montecarlo", "--at", "price=1"], "is a Monte Carlo scenario"),
    (["--at", "price=1"], "--at: needs a scenario"),
    (["-s", "named"], "missing for axis 'scenario'"),
    (["-s", "named", "--at", "scenario=nope"], "not a set of named"),
    (["--cluster", "atlantis"], "unknown cluster 'atlantis'"),
    (["-o", "statement.txt"], "unknown format '.txt'"),
    (["-s", "no_such_file.yaml"], "no_such_file.yaml"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch, no_work, args, message):
    monkeypatch.chdir(tmp_path)
    r = _invoke(*args)
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and message in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused_before_any_work(tmp_path, no_work):
    out = tmp_path / "s.xlsx"
    out.write_bytes(b"keep me")
    r = _invoke("-o", str(out))
    assert r.exit_code == 2 and "give --overwrite" in r.output
    assert out.read_bytes() == b"keep me"
