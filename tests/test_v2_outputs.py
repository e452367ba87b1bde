"""Version 2, part 2 in result files and reports (issue 27): the platform layer's
`platform_npv` and `platform_revenue`, the optimization programmes' `optimization_cost`
and `cluster_optimization_cost`, the platform's share of the NPV, the "when to buy"
figures.

A small portfolio (a cluster ordered at month 12 with a capex decline, a cluster with an
optimization programme, a platform layer) through `stresstest run` (a grid, a grid over
the order month on numpy and JAX, the bundled named set, a two-shard split and merge),
`report` and `inspect`; the files read with xarray. A version 1 run's file has none of
these outputs; Monte Carlo files leave them out.
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from helpers import h5_datasets

from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base
from stresstest.grid_file import output_groups
from stresstest.kernels.metrics import PLATFORM_OUTPUTS, PROGRAMME_OUTPUTS
from stresstest.outputs import CLUSTER_DIM, GROUP_VARIABLES, INDUSTRY_DIM, reserved_names
from stresstest.report import platform_share

PORTFOLIO = """\
portfolio:
  name: v2-outputs
  horizon_months: 48
  discount_rate: 0.1
  platform:
    take_rate: 0.05
    users_max: 2000
    fee_per_user_month: 20
    build_cost: 500000
    launch_month: 6
defaults:
  capex_per_gpu: 30000
  on_demand_price: 2.2
clusters:
  - name: later
    gpus: 64
    reserved_share: 0.4
    reserved_price: 2.0
    order_month: 12
    capex_decline: 0.2
  - name: tuned
    gpus: 32
    reserved_share: 0.3
    reserved_price: 2.1
    optimization:
      cost: 100000
      cost_per_year: 20000
      energy_saving: 0.2
      utilization_gain: 0.05
"""
GRID = """\
scenario:
  kind: grid
  name: v2-outputs-grid
  axes:
    - {shock: price, values: [0.8, 1.0, 1.2]}
    - {shock: energy, values: [1.0, 1.5]}
"""
CLUSTERS = ["later", "tuned"]
AXES = ("price", "energy")
PLATFORM = [name for name, *_ in GROUP_VARIABLES["platform"]]
OPTIMIZATION = [name for name, *_ in GROUP_VARIABLES["optimization"]]


def run_cli(*args, env=None):
    r = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2_outputs")
    (folder / "portfolio.yaml").write_text(PORTFOLIO)
    (folder / "grid.yaml").write_text(GRID)
    return folder


@pytest.fixture(scope="module")
def grid_file(inputs):
    out = inputs / "grid.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o", out, "--backend", "numpy", "-q")
    return out


@pytest.fixture(scope="module")
def named_file(inputs):
    out = inputs / "named.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", "named", "-o", out, "-q")
    return out


def assert_parts_add_up(ds):
    """The platform's NPV and the clusters' add up to the portfolio's; the platform's
    revenue is revenue_by_industry's `platform` column; the clusters' programme costs add
    up to the portfolio's, and the cluster without a programme has none."""
    np.testing.assert_allclose(ds["platform_npv"] + ds["cluster_npv"].sum(CLUSTER_DIM), ds["npv"], rtol=1e-12)
    np.testing.assert_array_equal(ds["revenue_by_industry"].sel(industry="platform"), ds["platform_revenue"])
    np.testing.assert_allclose(ds["cluster_optimization_cost"].sum(CLUSTER_DIM), ds["optimization_cost"],
                               rtol=1e-12)
    assert (ds["cluster_optimization_cost"].sel(cluster="later") == 0).all()
    assert (ds["cluster_optimization_cost"].sel(cluster="tuned") > 0).all()
    assert (ds["platform_revenue"] > 0).all()


def assert_laid_out(ds, dims: tuple[str, ...]):
    """Each output of the two groups with the file's dims (then `cluster`), USD, its long name."""
    for group in ("platform", "optimization"):
        for name, extra, units, long_name in GROUP_VARIABLES[group]:
            assert ds[name].dims == dims + extra, name
            assert ds[name].attrs["units"] == units == "USD"
            assert ds[name].attrs["long_name"] == long_name


# ---------------------------------------------------------------------- the words


def test_the_words_name_the_kernels_outputs_and_axes_cannot_take_them(inputs):
    assert PLATFORM == list(PLATFORM_OUTPUTS)  # the portfolio's only
    assert OPTIMIZATION == [*PROGRAMME_OUTPUTS, *(CLUSTER_DIM + "_" + n for n in PROGRAMME_OUTPUTS)]
    reserved = reserved_names()
    for name in PLATFORM + OPTIMIZATION:
        assert name in reserved
    assert output_groups(load_portfolio(inputs / "portfolio.yaml")) == ("optimization", "platform")
    assert output_groups(load_portfolio("scenarios/example.yaml")) == ()


def test_platform_share_reads_as_a_share_only_of_a_positive_npv():
    assert platform_share(2.0, 8.0) == 0.25
    assert platform_share(-2.0, 8.0) == -0.25  # a platform that loses money
    assert platform_share(12.0, 8.0) == 1.5  # worth more than the portfolio: the clusters lose
    for platform, npv in ((2.0, 0.0), (2.0, -8.0), (-2.0, -8.0), (math.nan, 8.0), (2.0, math.inf)):
        assert math.isnan(platform_share(platform, npv)), (platform, npv)


# ---------------------------------------------------------------------- result files


def test_grid_file_holds_the_platform_and_programme_outputs(inputs, grid_file):
    with xr.open_dataset(grid_file, engine="h5netcdf") as ds:
        assert ds.attrs["model_version"] == 2
        assert list(ds[CLUSTER_DIM].values) == CLUSTERS
        assert list(ds[INDUSTRY_DIM].values)[-1] == "platform"
        assert_laid_out(ds, AXES)
        assert_parts_add_up(ds)
        neutral = ds.sel(price=1.0, energy=1.0)
        with xr.open_dataset(grid_file, engine="h5netcdf", group="base") as base:
            assert_laid_out(base, ())
            assert_parts_add_up(base)
            for name in PLATFORM + OPTIMIZATION:  # the base case is the grid's neutral point
                np.testing.assert_allclose(base[name], neutral[name], rtol=1e-12)
    want = evaluate_base(load_portfolio(inputs / "portfolio.yaml"))
    with h5py.File(grid_file, "r") as f:
        for name in PLATFORM + OPTIMIZATION:
            np.testing.assert_array_equal(f["base"][name][()], want[name])


def test_named_file_holds_them_and_the_summary_prints_the_platforms_npv(inputs, named_file, tmp_path):
    with xr.open_dataset(named_file, engine="h5netcdf") as ds:
        assert_laid_out(ds, ("scenario",))
        assert_parts_add_up(ds)
        with xr.open_dataset(named_file, engine="h5netcdf", group="base") as base:
            assert_parts_add_up(base)
            platform_npv = np.concatenate([[float(base["platform_npv"])], ds["platform_npv"].values])
    text = run_cli("run", inputs / "portfolio.yaml", "-s", "named", "-o", tmp_path / "n.h5", env={"COLUMNS": "200"})
    assert "platform NPV" in text
    rows = json.loads(run_cli("run", inputs / "portfolio.yaml", "-s", "named", "-o", tmp_path / "n.h5", "--json",
                              "--overwrite"))["rows"]
    np.testing.assert_array_equal([r["platform_npv"] for r in rows], platform_npv)


def test_merge_of_two_shards_is_the_single_run(inputs, buy_file, tmp_path):
    """The grid over the order month (buy_file, below), split in two and merged."""
    shards, merged = tmp_path / "shards", tmp_path / "merged.h5"
    for i in range(2):
        run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "buy.yaml", "--shard", f"{i}/2", "-o", shards,
                "--backend", "numpy", "-q")
    run_cli("merge", shards, "-o", merged)
    single, joined = h5_datasets(buy_file), h5_datasets(merged)
    assert single.keys() == joined.keys()
    assert {*PLATFORM, *OPTIMIZATION} <= single.keys()
    assert {f"base/{n}" for n in PLATFORM + OPTIMIZATION} <= single.keys()
    for name in single:
        np.testing.assert_array_equal(single[name], joined[name], err_msg=name)
    with xr.open_dataset(merged, engine="h5netcdf") as ds:
        assert_laid_out(ds, BUY_AXES)
        assert_parts_add_up(ds)


def test_each_group_only_where_the_portfolio_uses_it(tmp_path):
    """A platform without programmes: no optimization_cost; a programme without a
    platform: no platform_npv (and no `platform` label)."""
    head, clusters = PORTFOLIO.split("defaults:\n")
    no_platform = head.split("  platform:\n")[0] + "defaults:\n" + clusters
    no_programme = PORTFOLIO.split("    optimization:\n")[0]
    (tmp_path / "grid.yaml").write_text(GRID)
    for name, text, absent, present in (("no_platform", no_platform, PLATFORM, OPTIMIZATION),
                                        ("no_programme", no_programme, OPTIMIZATION, PLATFORM)):
        (tmp_path / f"{name}.yaml").write_text(text)
        out = tmp_path / f"{name}.h5"
        run_cli("run", tmp_path / f"{name}.yaml", "-s", tmp_path / "grid.yaml", "-o", out, "--backend", "numpy", "-q")
        with h5py.File(out, "r") as f:
            names = set(f) | set(f["base"])
            assert not set(absent) & names, name
            assert set(present) <= set(f) and set(present) <= set(f["base"]), name
            assert ("platform" in [s.decode() for s in f[INDUSTRY_DIM][()]]) == (name == "no_programme")


def test_version_1_files_have_none_of_them(tmp_path):
    out = tmp_path / "v1.h5"
    run_cli("run", "-s", "smoke", "-o", out, "--backend", "numpy", "-q")
    with h5py.File(out, "r") as f:
        assert f.attrs["model_version"] == 1
        names = set(f) | set(f["base"])
    assert not {*PLATFORM, *OPTIMIZATION} & names
    assert "platform" not in json.loads(run_cli("inspect", out, "--json"))
    report = tmp_path / "report"
    run_cli("report", out, "-o", report)
    assert "platform" not in (report / "report.html").read_text().split("<h2>Figures</h2>")[0]


def test_montecarlo_files_leave_them_out(inputs, tmp_path):
    """docs/model.md, Outputs: the summaries are of the version 1 outputs, whose npv
    counts the platform."""
    scenario, out = tmp_path / "mc.yaml", tmp_path / "mc.h5"
    scenario.write_text("scenario:\n  kind: montecarlo\n  name: v2-mc\n  paths: 32\n  seed: 5\n")
    run_cli("run", inputs / "portfolio.yaml", "-s", scenario, "-o", out, "--backend", "numpy", "-q")
    with h5py.File(out, "r") as f:
        assert not {*PLATFORM, *OPTIMIZATION} & set(f)
        assert np.isfinite(f["npv"][()]).all()


# ---------------------------------------------------------------------- reports


def test_run_prints_the_platforms_share_of_the_base_case_npv(inputs, grid_file, tmp_path):
    text = run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o", tmp_path / "g.h5",
                   "--backend", "numpy", env={"COLUMNS": "200"})
    line = next(ln for ln in text.splitlines() if ln.startswith("base case NPV:"))
    assert "platform NPV" in line and "platform share" in line
    parts = json.loads(run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o",
                               tmp_path / "g.h5", "--backend", "numpy", "--json", "--overwrite"))["base_npv_parts"]
    with h5py.File(grid_file, "r") as f:
        npv, platform = float(f["base/npv"][()]), float(f["base/platform_npv"][()])
    assert parts["portfolio"] == npv and parts["platform"] == platform
    assert parts["platform_share"] == pytest.approx(platform / npv, rel=1e-12)


def test_report_gives_the_platforms_share_in_the_summary(grid_file, tmp_path):
    from stresstest.figures import make_report

    done = make_report(grid_file, tmp_path / "report")
    rows = done["tables"]["summary"]
    for row in rows:
        np.testing.assert_equal(row["platform_share"], platform_share(row["platform_npv"], row["npv"]))
    with h5py.File(grid_file, "r") as f:
        assert rows[0]["platform_npv"] == float(f["base/platform_npv"][()])
    worst = next(r for r in rows if r["case"].startswith("worst NPV"))
    assert worst["npv"] < 0 and math.isnan(worst["platform_share"])  # the grid's worst point loses money
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<th>platform share of NPV</th>" in page and "<th>platform NPV (M USD)</th>" in page
    share = f"{100 * rows[0]['platform_share']:.1f} %"
    assert f'<td class="num">{share}</td>' in page and '<td class="num">n/a</td>' in page
    assert done["when_to_buy"] is None  # no axis moves the order month
    assert not any(p.name.startswith("when_to_buy") for p in done["figures"])


def test_inspect_mentions_the_platform_and_the_programmes(grid_file):
    info = json.loads(run_cli("inspect", grid_file, "--json"))
    assert info["platform"]["outputs"] == PLATFORM
    assert info["optimization"]["outputs"] == OPTIMIZATION
    with h5py.File(grid_file, "r") as f:
        base = {k: float(f["base"][k][()]) for k in ("npv", "platform_npv", "optimization_cost")}
    assert info["platform"]["base"]["platform_npv"] == base["platform_npv"]
    assert info["platform"]["base"]["platform_share"] == pytest.approx(base["platform_npv"] / base["npv"])
    assert info["optimization"]["base"] == {"optimization_cost": base["optimization_cost"]}
    text = run_cli("inspect", grid_file, env={"COLUMNS": "200"})
    assert "platform layer: platform_npv, platform_revenue" in text
    assert "optimization programmes: optimization_cost, cluster_optimization_cost" in text


# ---------------------------------------------------------------------- when to buy

BUY = """\
scenario:
  kind: grid
  name: when-to-buy
  axes:
    - {param: order_month, op: set, values: [0, 6, 12]}
    - {shock: energy, values: [1.0, 1.1]}
    - {shock: price, values: [0.7, 1.0, 1.3]}
"""
BUY_AXES = ("order_month", "energy", "price")
BUY_ALONE = """\
scenario:
  kind: grid
  name: when-to-buy-alone
  axes:
    - {param: order_month, op: set, values: [0, 6, 12]}
"""


@pytest.fixture(scope="module")
def buy_file(inputs):
    (inputs / "buy.yaml").write_text(BUY)
    out = inputs / "buy.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "buy.yaml", "-o", out, "--backend", "numpy", "-q")
    return out


def test_a_grid_over_the_order_month_holds_the_outputs(buy_file):
    with xr.open_dataset(buy_file, engine="h5netcdf") as ds:
        assert list(ds["order_month"].values) == [0, 6, 12]
        assert_laid_out(ds, BUY_AXES)
        assert_parts_add_up(ds)
        # the platform's revenue takes a share of the clusters': it moves with the order month
        assert np.ptp(ds["platform_revenue"].sel(energy=1.0, price=1.0).values) > 0


def test_jax_run_over_the_order_month_agrees_with_numpy(inputs, buy_file, tmp_path):
    out = tmp_path / "jax.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "buy.yaml", "-o", out, "--backend", "jax", "-q")
    with xr.open_dataset(out, engine="h5netcdf") as got, xr.open_dataset(buy_file, engine="h5netcdf") as want:
        for name in PLATFORM + OPTIMIZATION:
            assert got[name].dims == want[name].dims
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12)


def test_report_draws_when_to_buy_against_the_axis_that_moves_the_npv_most(buy_file, tmp_path):
    """The price moves the NPV far more than the energy price: it is the other axis; each
    row of the table is that price's best order month, by NPV and by IRR."""
    from stresstest.figures import make_report

    done = make_report(buy_file, tmp_path / "report")
    buy = done["when_to_buy"]
    assert (buy["x"], buy["y"], buy["line"]) == ("order_month", "price", None)
    assert buy["held"] == {"energy": 1.0}
    for name in ("when_to_buy_npv.png", "when_to_buy_irr.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    with xr.open_dataset(buy_file, engine="h5netcdf") as ds:
        plane = ds.sel(energy=1.0)
        rows = done["tables"]["when_to_buy"]["rows"]
        assert [r["price"] for r in rows] == [0.7, 1.0, 1.3]
        for r in rows:
            for k in ("npv", "irr"):
                line = plane[k].sel(price=r["price"])
                assert r[k] == float(line.max())
                assert r[f"best_by_{k}"] == float(line.idxmax("order_month"))
    page = (tmp_path / "report" / "report.html").read_text()
    assert "When to buy" in page and "when_to_buy_npv.png" in page


def test_report_follows_the_heatmaps_axes_and_draws_a_line_for_a_lone_order_month(inputs, buy_file, tmp_path):
    from stresstest.figures import make_report

    done = make_report(buy_file, tmp_path / "xy", x="energy", y="order_month")
    assert (done["when_to_buy"]["x"], done["when_to_buy"]["y"]) == ("order_month", "energy")
    done = make_report(buy_file, tmp_path / "held", at={"order_month": 6})
    assert done["when_to_buy"] is None  # held by --at: no when-to-buy figure
    (inputs / "buy_alone.yaml").write_text(BUY_ALONE)
    alone = inputs / "buy_alone.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "buy_alone.yaml", "-o", alone, "--backend", "numpy",
            "-q")
    done = make_report(alone, tmp_path / "alone")
    assert done["when_to_buy"] == {"x": None, "y": None, "line": "order_month", "held": {}}
    assert (tmp_path / "alone" / "when_to_buy_npv.png").stat().st_size > 0
    (row,) = done["tables"]["when_to_buy"]["rows"]
    with xr.open_dataset(alone, engine="h5netcdf") as ds:
        assert row["npv"] == float(ds["npv"].max()) and row["best_by_npv"] == float(ds["npv"].idxmax())
