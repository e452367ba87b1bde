"""Version 2 outputs in result files and reports (issue 26): revenue by industry.

A small itemised portfolio (two clusters with contracts and segments labelled by
industry, one version 1 cluster) through `stresstest run` (a grid, the bundled named
set), a two-shard split and merge, `report` and `inspect`; the files read with xarray.
A version 1 run's file keeps no industry dimension and says model_version 1.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from helpers import h5_datasets

from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import Chunk, Extremes, describe_nonfinite, evaluate_base, unexpected_nonfinite
from stresstest.grid_file import GridWriter, industry_coordinate
from stresstest.items import UNLABELLED
from stresstest.kernels.metrics import ITEMISED
from stresstest.loaders import load_scenario
from stresstest.outputs import CLUSTER_DIM, INDUSTRY_DIM, INDUSTRY_VARIABLES, reserved_names

HEAD = """\
portfolio:
  name: v2-files
  horizon_months: 36
  discount_rate: 0.1
defaults:
  gpus: 256
  capex_per_gpu: 30000
  on_demand_price: 2.2
clusters:
"""
VERSION_1_CLUSTER = """\
  - name: old
    reserved_price: 1.9
    top_client_share: 0.4
    client_loss_month: 24
"""
PORTFOLIO = HEAD + """\
  - name: east
    contracts:
      - {name: bank, share: 0.3, price: 2.0, industry: finance}
      - {name: lab, share: 0.2, price: 1.8, industry: healthcare, loss_month: 20}
      - {name: misc, share: 0.1, price: 1.9}
    segments:
      - {name: train, share: 0.6, utilization: 0.7}
      - {name: shop, share: 0.4, industry: retail}
  - name: west
    contracts:
      - {name: carrier, share: 0.4, price: 2.1, industry: logistics}
    segments:
      - {name: fraud, share: 0.5, utilization: 0.75, industry: finance}
      - {name: batch, share: 0.5, utilization: 0.6}
""" + VERSION_1_CLUSTER
# labels in order of first appearance (clusters in order, contracts before segments)
INDUSTRIES = ["finance", "healthcare", "retail", "logistics", UNLABELLED]
GRID = """\
scenario:
  kind: grid
  name: v2-grid
  axes:
    - {shock: utilization, values: [-0.2, -0.1, 0.0, 0.1]}
    - {shock: price, values: [0.6, 0.8, 1.0]}
"""
CLUSTERS = ["east", "west", "old"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2_inputs")
    (folder / "portfolio.yaml").write_text(PORTFOLIO)
    (folder / "grid.yaml").write_text(GRID)
    return folder


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def grid_file(inputs):
    out = inputs / "grid.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o", out, "--backend", "numpy", "-q")
    return out


def assert_adds_up(ds):
    """revenue_by_industry sums over industry to revenue, and the clusters' rows to the
    portfolio's (each to round-off of the sums)."""
    np.testing.assert_allclose(ds["revenue_by_industry"].sum(INDUSTRY_DIM), ds["revenue"], rtol=1e-12)
    np.testing.assert_allclose(ds["cluster_revenue_by_industry"].sum(INDUSTRY_DIM), ds["cluster_revenue"],
                               rtol=1e-12)
    np.testing.assert_allclose(ds["cluster_revenue_by_industry"].sum(CLUSTER_DIM), ds["revenue_by_industry"],
                               rtol=1e-12, atol=1e-12 * float(np.abs(ds["revenue"]).max()))


def test_the_words_name_the_kernels_outputs_and_axes_cannot_take_them():
    names = [n for n, *_ in INDUSTRY_VARIABLES]
    assert names == [*ITEMISED, *(CLUSTER_DIM + "_" + n for n in ITEMISED)]
    reserved = reserved_names()
    for name in [INDUSTRY_DIM, *names]:
        assert name in reserved


def test_industry_coordinate_is_the_portfolios_labels_only_where_it_carries_items(inputs):
    pf = load_portfolio(inputs / "portfolio.yaml")
    assert pf.itemised and pf.model_version == 2
    assert industry_coordinate(pf) == INDUSTRIES
    v1 = load_portfolio("scenarios/example.yaml")
    assert industry_coordinate(v1) is None


def test_grid_file_has_the_industry_coordinate_and_dims(grid_file):
    with xr.open_dataset(grid_file, engine="h5netcdf") as ds:
        assert ds.attrs["model_version"] == 2
        assert list(ds[INDUSTRY_DIM].values) == INDUSTRIES
        assert ds["revenue_by_industry"].dims == ("utilization", "price", INDUSTRY_DIM)
        assert ds["cluster_revenue_by_industry"].dims == ("utilization", "price", CLUSTER_DIM, INDUSTRY_DIM)
        assert list(ds[CLUSTER_DIM].values) == CLUSTERS
        for name, _, units, long_name in INDUSTRY_VARIABLES:
            assert ds[name].attrs["units"] == units == "USD"
            assert ds[name].attrs["long_name"] == long_name
        assert "nonfinite_means" not in ds["revenue_by_industry"].attrs  # never NaN by the model
        assert np.isfinite(ds["cluster_revenue_by_industry"]).all()
        assert_adds_up(ds)
        # the version 1 cluster's revenue is all unlabelled, and it has some
        old = ds["cluster_revenue_by_industry"].sel(cluster="old")
        assert (old.sel(industry=UNLABELLED) > 0).all()
        np.testing.assert_array_equal(old.drop_sel(industry=UNLABELLED), 0.0)
        # a label only the second cluster uses
        assert (ds["cluster_revenue_by_industry"].sel(cluster="east", industry="logistics") == 0).all()
        assert (ds["cluster_revenue_by_industry"].sel(cluster="west", industry="logistics") > 0).all()
        neutral = ds.sel(utilization=0.0, price=1.0)
        with xr.open_dataset(grid_file, engine="h5netcdf", group="base") as base:
            assert list(base[INDUSTRY_DIM].values) == INDUSTRIES
            assert base["revenue_by_industry"].dims == (INDUSTRY_DIM,)
            assert base["cluster_revenue_by_industry"].dims == (CLUSTER_DIM, INDUSTRY_DIM)
            assert base["cluster_revenue_by_industry"].attrs["units"] == "USD"
            assert_adds_up(base)
            # the base case is the grid's neutral point (the version 1 cluster's implied
            # contracts and segments included)
            for name in ("revenue", "revenue_by_industry", "cluster_revenue_by_industry", "npv"):
                np.testing.assert_allclose(base[name], neutral[name], rtol=1e-12)


def test_base_case_of_a_version_1_cluster_is_its_own_in_an_itemised_portfolio(inputs, tmp_path):
    pf = load_portfolio(inputs / "portfolio.yaml")
    alone = tmp_path / "old.yaml"
    alone.write_text(HEAD + VERSION_1_CLUSTER)
    v1 = load_portfolio(alone)
    assert not v1.itemised
    with_items, without = evaluate_base(pf), evaluate_base(v1)
    for name in ("npv", "revenue", "opex", "ebitda"):
        np.testing.assert_allclose(with_items["cluster_" + name][2], without["cluster_" + name][0], rtol=1e-12)


def test_chunked_staged_writes_lay_the_industry_outputs_out_alike(inputs, grid_file, tmp_path, monkeypatch):
    """Many small chunks, each staged write flushed at once (partial HDF5 chunks kept over):
    the same datasets as one chunk."""
    out = tmp_path / "small_chunks.h5"
    monkeypatch.setattr(GridWriter, "STAGE_BYTES", 1)
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o", out, "--backend", "numpy",
            "--chunk-size", "5", "-q")
    a, b = h5_datasets(grid_file), h5_datasets(out)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_jax_run_agrees_with_numpy(inputs, grid_file, tmp_path):
    out = tmp_path / "jax.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "-o", out, "--backend", "jax", "-q")
    with xr.open_dataset(out, engine="h5netcdf") as got, xr.open_dataset(grid_file, engine="h5netcdf") as want:
        assert got["cluster_revenue_by_industry"].dims == want["cluster_revenue_by_industry"].dims
        for name in ("revenue_by_industry", "cluster_revenue_by_industry"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10)


def test_named_run_carries_revenue_by_industry(inputs, tmp_path):
    out = tmp_path / "named.h5"
    run_cli("run", inputs / "portfolio.yaml", "-s", "named", "-o", out, "-q")
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["model_version"] == 2
        assert list(ds[INDUSTRY_DIM].values) == INDUSTRIES
        assert ds["revenue_by_industry"].dims == ("scenario", INDUSTRY_DIM)
        assert ds["cluster_revenue_by_industry"].dims == ("scenario", CLUSTER_DIM, INDUSTRY_DIM)
        assert_adds_up(ds)
        # every set has the version 1 cluster's revenue, unlabelled
        assert (ds["cluster_revenue_by_industry"].sel(cluster="old", industry=UNLABELLED) > 0).all()
        with xr.open_dataset(out, engine="h5netcdf", group="base") as base:
            assert base["cluster_revenue_by_industry"].dims == (CLUSTER_DIM, INDUSTRY_DIM)
            assert_adds_up(base)


def test_merge_of_two_shards_is_the_single_run(inputs, grid_file, tmp_path):
    shards, merged = tmp_path / "shards", tmp_path / "merged.h5"
    for i in range(2):
        run_cli("run", inputs / "portfolio.yaml", "-s", inputs / "grid.yaml", "--shard", f"{i}/2", "-o", shards,
                "--backend", "numpy", "-q")
    with h5py.File(shards / "shard-000000-of-000002.h5", "r") as f:
        assert f.attrs["model_version"] == 2
        assert f["data/cluster_revenue_by_industry"].shape[1:] == (len(CLUSTERS), len(INDUSTRIES))
    run_cli("merge", shards, "-o", merged)
    single, joined = h5_datasets(grid_file), h5_datasets(merged)
    assert single.keys() == joined.keys()
    for name in single:
        np.testing.assert_array_equal(single[name], joined[name], err_msg=name)
    with h5py.File(grid_file, "r") as a, h5py.File(merged, "r") as b:
        skip = {"created", "merged_from"}
        assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items()
                                                                        if k not in skip}
    with xr.open_dataset(merged, engine="h5netcdf") as ds:
        assert ds["cluster_revenue_by_industry"].dims == ("utilization", "price", CLUSTER_DIM, INDUSTRY_DIM)
        assert list(ds[INDUSTRY_DIM].values) == INDUSTRIES


def test_report_draws_revenue_by_industry(grid_file, tmp_path):
    out = tmp_path / "report"
    run_cli("report", grid_file, "-o", out)
    assert (out / "revenue_by_industry.png").stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "Base case revenue by industry" in page and "revenue_by_industry.png" in page
    for label in INDUSTRIES:
        assert f"<th>{label}</th>" in page


def test_inspect_names_the_industry_coordinate(grid_file):
    info = json.loads(run_cli("inspect", grid_file, "--json"))
    assert info["industries"] == INDUSTRIES
    assert info["dimensions"][INDUSTRY_DIM] == len(INDUSTRIES)
    assert info["variables"]["cluster_revenue_by_industry"]["dims"] == ["utilization", "price", CLUSTER_DIM,
                                                                       INDUSTRY_DIM]
    text = run_cli("inspect", grid_file)
    assert "industry coordinate" in text and "logistics" in text


def test_version_1_files_have_no_industry_dimension(tmp_path):
    out = tmp_path / "v1.h5"
    run_cli("run", "-s", "smoke", "-o", out, "--backend", "numpy", "-q")
    with h5py.File(out, "r") as f:
        assert f.attrs["model_version"] == 1
        names = set(f) | {f"base/{n}" for n in f["base"]}
        assert not {INDUSTRY_DIM, "base/" + INDUSTRY_DIM} & names
        assert not any("by_industry" in n for n in names)
    report = tmp_path / "report"
    run_cli("report", out, "-o", report)
    assert not (report / "revenue_by_industry.png").exists()
    assert "revenue by industry" not in (report / "report.html").read_text()
    assert "industries" not in json.loads(run_cli("inspect", out, "--json"))


def test_montecarlo_runs_a_version_2_portfolio(inputs, tmp_path):
    """The paths' outputs hold revenue by industry; the summaries leave it out."""
    scenario, out = tmp_path / "mc.yaml", tmp_path / "mc.h5"
    scenario.write_text("scenario:\n  kind: montecarlo\n  name: v2-mc\n  paths: 64\n  seed: 3\n")
    run_cli("run", inputs / "portfolio.yaml", "-s", scenario, "-o", out, "--backend", "numpy", "--save-paths",
            "-q")
    with h5py.File(out, "r") as f:
        assert f.attrs["model_version"] == 2
        assert INDUSTRY_DIM not in f and "revenue_by_industry" not in f
        assert np.isfinite(f["npv"][()]).all()


def test_nonfinite_revenue_by_industry_is_unexpected(inputs):
    """The counting of non-finite values takes the industry axis (and the cluster's before
    it): a NaN in revenue by industry is never the model's answer."""
    pf = load_portfolio(inputs / "portfolio.yaml")
    sc = load_scenario(inputs / "grid.yaml", pf)
    n, C, I = 4, len(CLUSTERS), len(INDUSTRIES)
    by_cluster = np.ones((n, C, I))
    by_cluster[2, 1, 3] = np.nan
    by_cluster[3, 0, 0] = np.inf
    outputs = {"npv": np.arange(n, dtype=float), "irr": np.zeros(n), "roi": np.zeros(n),
               "revenue_by_industry": np.ones((n, I)), "cluster_revenue_by_industry": by_cluster}
    extremes = Extremes()
    extremes.update(Chunk(8, 8 + n, outputs))  # the grid's last four points
    assert extremes.nonfinite == {"cluster_revenue_by_industry": (2, 10)}
    assert unexpected_nonfinite(extremes) == {"cluster_revenue_by_industry": (2, 10)}
    (line,) = describe_nonfinite(sc, extremes)
    assert line.startswith("cluster_revenue_by_industry: 2 non-finite value(s), first at utilization=0.1, "
                           "price=0.8 (UNEXPECTED")
