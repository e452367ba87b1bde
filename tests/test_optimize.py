"""`stresstest optimize`: its answers against a brute-force grid search on the same paths,
whose figures come from the ordinary Monte Carlo machinery (mc_paths.path_outputs_fn on a
portfolio whose parameter is set in its configuration) and plain numpy; a mix's figures
against a Monte Carlo run of a portfolio file holding that mix; the fresh paths against a
run of the next seed; the pathwise Jacobians against central differences; infeasible
limits, bad inputs, the file, inspect and report."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from stresstest.backends import jax_importable, make_backend
from stresstest.breakeven import shifted_portfolio
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import equity_clusters
from stresstest.grid_config import Axis
from stresstest.loaders import load_scenario
from stresstest.mc_config import load_montecarlo
from stresstest.mc_paths import path_outputs_fn, prepare
from stresstest.montecarlo import run_montecarlo
from stresstest.optimize import fresh_seed, optimize_files, parse_variables
from stresstest.optimize_solve import Problem, frontier_sweep, solve_best
from stresstest.validation import ConfigError

pytestmark = pytest.mark.skipif(not jax_importable(), reason="optimize needs jax")

N = 1000  # in-sample paths: the scenario's (a 5 % tail of 50 paths)
# Two clusters whose on-demand pool earns more than their reserved contracts on average
# but carries the price risk: more reserved capacity lowers both the mean NPV and the
# CVaR, so a CVaR limit binds (mean 11.2 M / CVaR 7.8 M at no reserved capacity, 9.9 M /
# 3.0 M at all of it).
PORTFOLIO = {
    "portfolio": {"name": "two-markets", "horizon_months": 36, "discount_rate": 0.1},
    "defaults": {"price_decline": 0.05, "next_gen_price_drop": 0.1, "next_gen_month": 30,
                 "reserved_term_months": 12, "utilization_training": 0.8, "utilization_inference": 0.85,
                 "reserved_utilization": 0.9},
    "clusters": [
        {"name": "east", "gpu": "H100", "region": "us-virginia", "gpus": 512, "capex_per_gpu": 30000,
         "on_demand_price": 3.0, "reserved_price": 1.9, "reserved_share": 0.5, "top_client_share": 0.5,
         "debt_fraction": 0.5, "debt_term_months": 36, "interest_rate": 0.08, "energy_price": 0.08},
        {"name": "west", "gpu": "H200", "region": "us-oregon", "gpus": 256, "capex_per_gpu": 36000,
         "on_demand_price": 3.6, "reserved_price": 2.6, "reserved_share": 0.3, "energy_price": 0.06},
    ],
}
SCENARIO = {"scenario": {"kind": "montecarlo", "name": "test-paths", "paths": N, "seed": 11,
                         "price": {"volatility": 0.5}, "covenant_dscr": 1.3,
                         "events": [{"param": "next_gen_month", "dist": "triangular", "low": 18, "mode": 28,
                                     "high": 36}]}}
CVAR_LIMIT = 5e6  # binds at reserved_share about 0.56


@dataclasses.dataclass
class Files:
    portfolio: Path
    scenario: Path
    folder: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    d = tmp_path_factory.mktemp("optimize")
    (d / "pf.yaml").write_text(yaml.safe_dump(PORTFOLIO, sort_keys=False))
    (d / "mc.yaml").write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    return Files(d / "pf.yaml", d / "mc.yaml", d)


def _problem(files: Files, varies: list[str], objective: str = "mean_npv") -> Problem:
    """optimize's problem (the limits are the solve's, given to solve_best)."""
    pf = load_portfolio(files.portfolio)
    vs = parse_variables(pf, varies)
    mc = load_scenario(files.scenario, pf)
    return Problem(pf, mc, vs, objective, make_backend("jax"), N, fresh_seed(mc.seed))


@pytest.fixture(scope="module")
def one(files) -> Problem:
    """reserved_share in every cluster; built for the mean IRR (its Jacobian too), solved
    for the mean NPV where a test names that goal."""
    return _problem(files, ["reserved_share=0..1"], "mean_irr")


# The two variables: the anchor contract of east (implied, r0 k = 0.25: a share of it set
# by path makes the contracts east's own) and west's reserved share
TWO = ["contracts.anchor.share@east=0.1..0.5", "reserved_share@west=0.1..0.6"]


@pytest.fixture(scope="module")
def two(files) -> Problem:
    return _problem(files, TWO)


class Reference:
    """Per-path outputs of the Monte Carlo chunk function (mc_paths.path_outputs_fn, the one
    `stresstest run` evaluates), on a portfolio whose parameters are set in its clusters'
    configuration, an anchor share as a file giving east's contracts would
    (breakeven.shifted_portfolio); compiled once for the itemised layout (which draws the
    same paths as the version 1 one), the base case an argument."""

    def __init__(self, files: Files):
        self.pf = load_portfolio(files.portfolio)
        self.pf.itemised = True
        mc = load_scenario(files.scenario, self.pf)
        self.be = make_backend("jax")
        self.fn = self.be.compile(path_outputs_fn(self.pf, mc, self.be.xp, self.be.dtype, N,
                                                  equity_clusters(self.pf)))
        self.rate = self.be.asarray(np.asarray(self.pf.discount_rate))
        (self.anchor,) = parse_variables(load_portfolio(files.portfolio), TWO[:1])

    def portfolio(self, settings: dict, anchor: float | None = None):
        """settings: (param, cluster name or None for every cluster) -> value; anchor: east's
        anchor share."""
        pf = with_values(self.pf, settings)
        if anchor is None:
            return pf
        v = self.anchor
        return shifted_portfolio(pf, Axis("anchor", v.spec, np.array([anchor]), None, v.param, None), anchor)

    def outputs(self, settings: dict, anchor: float | None = None) -> dict:
        base = {k: self.be.asarray(v) for k, v in self.portfolio(settings, anchor).base_arrays().items()}
        out = self.fn(base, self.rate, self.be.xp.asarray(0))
        return {k: np.asarray(out[k]) for k in ("npv", "min_dscr", "irr")}


def with_values(pf, settings: dict):
    clusters = [dict(c) for c in pf.clusters]
    for (param, cluster), value in settings.items():
        for name, c in zip(pf.cluster_names, clusters):
            if cluster in (None, name):
                c[param] = float(value)
    return dataclasses.replace(pf, clusters=clusters)


def figures(out: dict) -> dict:
    """Mean NPV, CVaR 95 (minus the mean of the 5 % lowest), P(NPV < 0) and P(min DSCR <
    1.3, the scenario's covenant) among the paths with a DSCR, plainly."""
    npv = np.sort(out["npv"])
    dscr = out["min_dscr"][np.isfinite(out["min_dscr"])]
    return {"mean_npv": npv.mean(), "cvar_95": -npv[: len(npv) // 20].mean(), "prob_npv_negative": np.mean(npv < 0),
            "prob_dscr_below_covenant": np.mean(dscr < 1.3)}


@pytest.fixture(scope="module")
def reference(files) -> Reference:
    return Reference(files)


STEP = 0.02  # of the one-variable grid


@pytest.fixture(scope="module")
def grid(reference) -> list[tuple[tuple, dict]]:
    """reserved_share in every cluster from 0 to 1, by STEP: the reference's figures."""
    return [((x,), figures(reference.outputs({("reserved_share", None): x}))) for x in np.arange(0, 1 + 1e-9, STEP)]


def _grid_best(rows: list[tuple[tuple, dict]], limits: dict) -> tuple[tuple, dict]:
    """The grid point of highest mean NPV among those meeting every limit."""
    feasible = [(x, f) for x, f in rows if all(f[n] <= lim for n, lim in limits.items())]
    return max(feasible, key=lambda r: r[1]["mean_npv"])


def test_a_mix_is_a_monte_carlo_run_of_the_portfolio_file_holding_it(one, files, tmp_path):
    """The in-sample paths at reserved_share = 0.37 are those `stresstest run` evaluates for
    the portfolio file with reserved_share: 0.37 in every cluster (numpy, every path)."""
    doc = yaml.safe_load(files.portfolio.read_text())
    for c in doc["clusters"]:
        c["reserved_share"] = 0.37
    pf = load_portfolio(_write(tmp_path / "mix.yaml", doc))
    mc = load_scenario(files.scenario, pf)
    out = run_montecarlo(pf, mc, tmp_path / "mc.h5", make_backend("numpy"), progress=False, save_paths=True)
    import h5py

    with h5py.File(out.path) as f:
        want = {k: f["paths"][k][()] for k in ("npv", "min_dscr", "irr")}
    got = one.values(np.array([0.37]))
    for k, w in want.items():
        np.testing.assert_allclose(got[k], w, rtol=1e-9, atol=1e-6, err_msg=k)


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_one_variable_against_a_grid_search(one, reference, grid):
    """reserved_share under a CVaR limit that binds: the optimum is the grid's best feasible
    point within a grid step, and meets the limit by the reference's own figures."""
    (x_grid,), f_grid = _grid_best(grid, {"cvar_95": CVAR_LIMIT})
    assert 0.1 < x_grid < 0.9  # the limit binds inside the bounds
    a = solve_best(one, {"cvar_95": CVAR_LIMIT}, goal="mean_npv")
    assert a.feasible
    (x_opt,) = a.mix(one.vs)
    assert abs(x_opt - x_grid) <= STEP
    at = figures(reference.outputs({("reserved_share", None): x_opt}))
    assert at["cvar_95"] <= CVAR_LIMIT * (1 + 1e-9)
    assert at["mean_npv"] >= f_grid["mean_npv"] - 1e-6 * abs(f_grid["mean_npv"])
    assert at["mean_npv"] == pytest.approx(a.metrics["mean_npv"], rel=1e-9)
    assert at["cvar_95"] == pytest.approx(a.metrics["cvar_95"], rel=1e-9)


def test_two_variables_against_a_grid_search(two, reference):
    """East's anchor contract and west's reserved share, each within its own bounds, under
    a CVaR limit: the optimum beats every feasible point of an 11 x 11 grid, by no more
    than the mean moves in a grid cell, lies within a cell of the grid's best, and meets
    the limit."""
    anchor, west = np.linspace(0.1, 0.5, 11), np.linspace(0.1, 0.6, 11)
    rows = [((a, w), figures(reference.outputs({("reserved_share", "west"): w}, anchor=a)))
            for a in anchor for w in west]
    limit = 5.5e6
    (a_grid, w_grid), f_grid = _grid_best(rows, {"cvar_95": limit})
    opt = solve_best(two, {"cvar_95": limit})
    assert opt.feasible
    a_opt, w_opt = opt.mix(two.vs)
    at = figures(reference.outputs({("reserved_share", "west"): w_opt}, anchor=a_opt))
    assert at["cvar_95"] <= limit * (1 + 1e-9)
    means = np.array([f["mean_npv"] for _, f in rows]).reshape(11, 11)
    cell = max(np.abs(np.diff(means, axis=0)).max(), np.abs(np.diff(means, axis=1)).max())
    assert f_grid["mean_npv"] - 1e-6 * cell <= at["mean_npv"] <= f_grid["mean_npv"] + 2 * cell
    assert abs(a_opt - a_grid) <= 0.04 + 1e-9 and abs(w_opt - w_grid) <= 0.05 + 1e-9


def test_bounds_are_honoured(two):
    """Without a limit the mean NPV rises as reserved capacity falls: the optimum sits on the
    lower bounds exactly, never past them."""
    a = solve_best(two, {})
    assert a.feasible and a.mix(two.vs) == pytest.approx([0.1, 0.1], abs=1e-12)


@pytest.mark.parametrize("name,limit", [("prob_npv_negative", 0.15), ("prob_dscr_below_covenant", 0.2)])
def test_a_probability_limit_is_met_exactly_at_the_answer(one, reference, grid, name, limit):
    """A probability limit through the smoothed indicator, checked with the plain count: the
    reference's count at the answer meets it, and the answer is the grid's best within a
    step (the DSCR's among the paths with debt: west has none, east has)."""
    a = solve_best(one, {name: limit}, goal="mean_npv")
    assert a.feasible and a.metrics[name] <= limit
    (x_opt,) = a.mix(one.vs)
    assert figures(reference.outputs({("reserved_share", None): x_opt}))[name] <= limit
    (x_grid,), _ = _grid_best(grid, {name: limit})
    assert 0 < x_grid < 1
    assert abs(x_opt - x_grid) <= STEP + 1e-9


def test_an_infeasible_limit_is_an_answer(one):
    """A CVaR below the lowest reachable (3.0 M at all capacity reserved) has no mix: the
    answer says so and names the closest mix found, at the bound."""
    a = solve_best(one, {"cvar_95": 1e6}, goal="mean_npv")
    assert not a.feasible and not a.met["cvar_95"]
    assert a.message.startswith("no feasible mix in the bounds")
    assert a.mix(one.vs)[0] == pytest.approx(1.0, abs=1e-6)


def test_fresh_paths_are_the_next_seed(one, files):
    """The fresh figures at the answer are a Monte Carlo run of the scenario with seed + 1 at
    that mix (numpy), and differ from the in-sample ones."""
    a = solve_best(one, {"cvar_95": CVAR_LIMIT}, goal="mean_npv")
    fresh = one.metrics(a.x, fresh=True)
    pf = load_portfolio(files.portfolio)
    doc = yaml.safe_load(files.scenario.read_text())
    doc["scenario"]["seed"] = 12
    pf = with_values(pf, {("reserved_share", None): a.mix(one.vs)[0]})
    mc = load_montecarlo(Path("fresh.yaml"), doc, pf)
    out = next(iter(prepare(pf, mc, make_backend("numpy"), N).chunks())).outputs
    want = figures(out)
    for k in want:
        assert fresh[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    assert fresh["cvar_95"] != pytest.approx(a.metrics["cvar_95"], rel=1e-3)


def test_the_frontier_runs_from_the_lowest_cvar_to_the_unconstrained_optimum(one, reference):
    """The mean IRR's frontier: from all capacity reserved (the lowest CVaR) to none (the
    best mean IRR), both rising between, each point within its limit."""
    fr = frontier_sweep(one, {}, 4)
    cvar = [p.metrics["cvar_95"] for p in fr.answers]
    mean = [p.metrics["mean_irr"] for p in fr.answers]
    ends = [reference.outputs({("reserved_share", None): x}) for x in (1.0, 0.0)]
    assert cvar[0] == pytest.approx(figures(ends[0])["cvar_95"], rel=1e-6)
    assert mean[-1] == pytest.approx(np.mean(ends[1]["irr"]), rel=1e-9)
    assert all(p.feasible for p in fr.answers)
    assert np.all(np.diff(cvar) > 0) and np.all(np.diff(mean) > 0)
    assert all(c <= lim * (1 + 1e-9) for c, lim in zip(cvar, fr.limits))
    assert all(p.fresh is not None for p in fr.answers)


def test_equity_npv_is_the_equity_flows_discounted(files):
    """kernels.metrics.equity_npv against a plain loop over the clusters' equity flows (the
    flows equity_irr solves: where a cluster has debt, the NPV at its equity IRR is 0)."""
    from stresstest.engine import evaluate_base
    from stresstest.kernels.cashflows import cash_flows
    from stresstest.kernels.metrics import equity_npv

    pf = load_portfolio(files.portfolio)
    p = {k: v[None] for k, v in pf.base_arrays().items()}
    fl = cash_flows(p, pf.horizon_months)
    cfe = np.asarray(fl["cfe"])[0]
    r = pf.discount_rate
    want = sum(cfe[c, t] / (1 + r) ** (t / 12) for c in range(cfe.shape[0]) for t in range(cfe.shape[1]))
    assert float(equity_npv(fl, np.asarray([r]))[0]) == pytest.approx(want, rel=1e-12)
    east_irr = float(evaluate_base(pf)["cluster_equity_irr"][0])
    at_irr = sum(cfe[0, t] / (1 + east_irr) ** (t / 12) for t in range(cfe.shape[1]))
    assert abs(at_irr) <= 1e-6 * np.abs(cfe[0]).sum()


def test_jacobians_match_central_differences(one):
    """Per path, d/dv of NPV, IRR (a Newton step from the solved root), min DSCR and
    equity NPV against central differences of the outputs themselves."""
    x, h = np.array([0.4]), 1e-5
    _, jac = one.at(x)
    up, down = one.values(x + h), one.values(x - h)
    for k in ("npv", "irr", "min_dscr", "equity_npv"):
        fd = (up[k] - down[k]) / (2 * h * one.span[0])
        np.testing.assert_allclose(jac[k][:, 0], fd, rtol=1e-5, atol=1e-7 * np.nanmax(np.abs(fd)), err_msg=k)


BAD = [
    (["--vary", "utilisation=0..1"], "unknown parameter 'utilisation'"),
    (["--vary", "reserved_share=0.8..0.2"], "LO must be below HI"),
    (["--vary", "reserved_share=0..1.5"], "leaves the parameter's range [0, 1]"),
    (["--vary", "reserved_share@north=0..1"], "unknown cluster 'north'"),
    (["--vary", "reserved_share"], "expected PARAM[@CLUSTER]=LO..HI"),
    (["--vary", "price=0.5..2"], "is a named shock"),
    (["--vary", "debt_term_months=12..48"], "whole number of months"),
    (["--vary", "reserved_share=0..1", "--constraint", "var_95<=1e6"], "unknown constraint 'var_95'"),
    (["--vary", "reserved_share=0..1", "--constraint", "cvar_95>=1e6"], "the operator '>=' is not taken"),
    (["--vary", "reserved_share=0..1", "--constraint", "prob_npv_negative<=1.5"], "a probability from 0 to 1"),
    (["--vary", "reserved_share=0..1", "--objective", "max_npv"], "unknown objective 'max_npv'"),
    (["--vary", "reserved_share=0..1", "-s", "smoke"], "a grid scenario"),
    (["--vary", "reserved_share=0..1", "--vary", "reserved_share@east=0..1"], "both set reserved_share"),
    (["--vary", "next_gen_month=12..36"], "the scenario's event on next_gen_month sets it on every path"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_inputs_are_refused_before_any_work(files, args, message):
    out = files.folder / "bad.h5"
    cli = ["optimize", str(files.portfolio), "-s", str(files.scenario), "-o", str(out)] + args
    r = CliRunner().invoke(main, cli)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert not out.exists()


def test_a_covenant_constraint_needs_the_scenarios_covenant(files, tmp_path):
    doc = yaml.safe_load(files.scenario.read_text())
    del doc["scenario"]["covenant_dscr"]
    with pytest.raises(ConfigError, match="gives no covenant_dscr"):
        optimize_files(files.portfolio, _write(tmp_path / "nocov.yaml", doc), tmp_path / "o.h5",
                       varies=["reserved_share=0..1"], constraints=["prob_dscr_below_covenant<=0.1"])


def test_the_command_the_file_inspect_and_report(files, two, reference, tmp_path):
    """The two variables (the programs `two` compiled: kept for the same question) and an
    infeasible limit: exit 0, feasible false in the JSON and the file; the figures at the
    mix found, in-sample and fresh, are the Monte Carlo runs (numpy; seed and seed + 1) of
    the portfolio with that mix, east's anchor contract its own (breakeven.shifted_portfolio)
    as a file giving it; the file opens in xarray with its param coordinate; inspect
    describes it; report draws it."""
    import xarray as xr

    out = tmp_path / "opt.h5"
    args = [a for v in TWO for a in ("--vary", v)]
    r = CliRunner().invoke(main, ["optimize", str(files.portfolio), "-s", str(files.scenario), "--paths", str(N),
                                  *args, "--constraint", "cvar_95<=1", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["kind"] == "optimize" and d["feasible"] is False and d["met"] == {"cvar_95": False}
    assert d["message"].startswith("no feasible mix in the bounds")
    anchor, west = (p["optimum"] for p in d["params"])
    moved = reference.portfolio({("reserved_share", "west"): west}, anchor=anchor)
    for sample, seed in (("in_sample", 11), ("fresh", 12)):
        doc = yaml.safe_load(files.scenario.read_text())
        doc["scenario"]["seed"] = seed
        want = figures(next(iter(prepare(moved, load_montecarlo(Path("mc.yaml"), doc, moved),
                                         make_backend("numpy"), N).chunks())).outputs)
        for k, w in want.items():
            assert d["optimum_metrics"][sample][k] == pytest.approx(w, rel=1e-9, abs=1e-12), (sample, k)
    assert d["optimum_metrics"]["in_sample"]["mean_npv"] != d["optimum_metrics"]["fresh"]["mean_npv"]
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert list(ds["param"].values) == ["contracts.anchor.share@east", "reserved_share@west"]
        assert ds.attrs["feasible"] == 0 and ds.attrs["kind"] == "optimize"
        assert float(ds["optimum"].sel(param="reserved_share@west")) == pytest.approx(west)
        assert float(ds["optimum_metrics"].sel(sample="fresh", metric="mean_npv")) == pytest.approx(
            d["optimum_metrics"]["fresh"]["mean_npv"])
        assert math.isnan(float(ds["current_by_cluster"].sel(param="reserved_share@west", cluster="east")))
    r = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["optimize"]["feasible"] is False
    r = CliRunner().invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    assert "no feasible mix in the bounds" in r.output and "fresh" in r.output
    assert f"{d['optimum_metrics']['fresh']['mean_npv'] / 1e6:,.1f} M" in r.output
    r = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"frontier.png", "mix.png", "report.html"}


def test_the_api_with_a_frontier(files, two):
    """api.optimize (the programs `two` compiled, kept for the same question): a Dataset with
    the param coordinate and the frontier, its optimum the solver's for the same limit, the
    frontier's CVaR rising to the optimum without a limit, each point's mix in the bounds."""
    from stresstest import api

    ds = api.optimize(files.portfolio, files.scenario, vary=TWO, constraints=["cvar_95<=5.5e6"], paths=N, frontier=3)
    assert list(ds["param"].values) == ["contracts.anchor.share@east", "reserved_share@west"]
    assert ds.attrs["feasible"] == 1 and int(ds["met"].sel(constraint="cvar_95")) == 1
    want = solve_best(two, {"cvar_95": 5.5e6}).mix(two.vs)
    np.testing.assert_allclose(ds["optimum"].values, want, atol=1e-9)
    cvar = ds["frontier_metrics"].sel(sample="in_sample", metric="cvar_95").values
    assert np.all(np.diff(cvar) > 0) and np.all(ds["frontier_feasible"].values == 1)
    assert np.all(cvar <= ds["frontier_cvar_limit"].values * (1 + 1e-9))
    mix = ds["frontier_mix"].values
    assert np.all((mix >= ds["lower"].values - 1e-12) & (mix <= ds["upper"].values + 1e-12))
