"""Result files: xarray reads them labelled, streaming equals in-memory, writes are atomic."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import memoised, random_portfolio, random_scenario

from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.engine import prepare
from stresstest.backends import make_backend
from stresstest.grid_file import flat_slabs
from stresstest.h5io import chunk_shape
from stresstest.kernels.params import OUTPUTS
from stresstest.presets import list_presets
from stresstest.runner import run_scenario


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 5), (4, 1, 3, 2)])
def test_flat_slabs_cover_every_range_exactly_once(shape):
    total = int(np.prod(shape)) if shape else 1
    flat = np.arange(total).reshape(shape) if shape else np.array(0)
    for a, b in itertools.combinations(range(total + 1), 2):
        seen = []
        for sel, box, off in flat_slabs(shape, a, b):
            block = np.asarray(flat[sel])
            assert block.shape == box
            assert np.array_equal(block.reshape(-1), np.arange(a + off, a + off + block.size))
            seen += block.reshape(-1).tolist()
        assert sorted(seen) == list(range(a, b))
        assert len(list(flat_slabs(shape, a, b))) <= max(1, 2 * len(shape) - 1)


@pytest.mark.parametrize("grid,extra,target", [((32, 32, 32, 31), (6,), 65536), ((5, 7, 3), (), 40),
                                                ((4, 9), (2,), 40), ((7,), (), 3)])
def test_direct_chunks_cover_the_grid_with_edge_chunks(grid, extra, target):
    """Every HDF5 chunk, edge chunks included, is one run of points: the runs of any
    range are whole chunks inside it, and over the whole grid they cover every point
    once, so every chunk is compressed by our threads and none by HDF5 under its lock."""
    from stresstest.grid_file import _DirectChunks

    shape = grid + extra
    chunks = chunk_shape(shape, target)
    plan = _DirectChunks.plan(grid, shape, chunks)
    assert plan is not None
    total = int(np.prod(grid))
    runs = plan.inside(0, total)
    covered = np.zeros(total, int)
    for p0, p1 in runs:
        covered[p0:p1] += 1
        # each run starts at a chunk's origin and holds at most a chunk's points
        origin = np.array(plan.offset(p0)[:len(grid)])
        assert origin[plan.k] % plan.part == 0 and all(origin[plan.k + 1:] == 0)
        assert 0 < p1 - p0 <= plan.points
    assert np.all(covered == 1)
    edges = [r for r in runs if r[1] - r[0] < plan.points]
    assert bool(edges) == (grid[plan.k] % plan.part != 0)
    # a range gets only the chunks wholly inside it
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = sorted(rng.integers(0, total + 1, 2))
        got = plan.inside(a, b) if b > a else []
        assert got == [r for r in runs if a <= r[0] and r[1] <= b]


def test_chunk_shape_is_bounded():
    # whole trailing dims (21*11*7*6 = 9702 elements), then 65536 // 9702 = 6 of the first
    assert chunk_shape((21, 21, 11, 7, 6)) == (6, 21, 11, 7, 6)
    assert chunk_shape((10**7,)) == (1 << 16,)


@pytest.fixture(scope="module")
def smoke_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "smoke.h5"
    res = run_scenario(list_presets()["example"], list_presets()["smoke"], out, backend="numpy",
                   chunk_size=4, progress=False)
    return out, res


def test_xarray_opens_with_labels(smoke_file):
    out, res = smoke_file
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["smoke"], pf)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["npv"].dims == ("utilization", "price")
        assert ds["cluster_irr"].dims == ("utilization", "price", "cluster")
        assert list(ds["cluster"].values) == pf.cluster_names
        assert ds["utilization"].values.tolist() == [-0.2, 0.0, 0.1]
        assert ds["price"].values.tolist() == [0.5, 1.0]
        for name in OUTPUTS:
            assert name in ds and f"cluster_{name}" in ds
            assert ds[name].attrs["units"]
        # labelled selection gives the same numbers as the engine at that flat index
        run = prepare(pf, sc, make_backend("numpy"))
        flat = {k: np.concatenate([c.outputs[k] for c in run.chunks()]) for k in ("npv", "cluster_npv")}
        got = ds["cluster_npv"].sel(utilization=0.1, price=0.5, cluster=pf.cluster_names[2]).item()
        assert got == flat["cluster_npv"][2 * 2 + 0, 2]
        assert np.array_equal(ds["npv"].values.reshape(-1), flat["npv"])
        attrs = ds.attrs
        for key in ("model_version", "stresstest_version", "config", "config_sha256", "backend",
                    "device", "dtype", "created"):
            assert key in attrs, key
        assert attrs["model_version"] == 1 and attrs["backend"] == "numpy" and attrs["dtype"] == "float64"
        cfg = json.loads(attrs["config"])
        assert [c["name"] for c in cfg["portfolio"]["clusters"]] == pf.cluster_names
        assert [a["name"] for a in cfg["scenario"]["axes"]] == ["utilization", "price"]
    assert res.config_sha256 == attrs["config_sha256"]


def test_streamed_file_independent_of_chunk_size(tmp_path, monkeypatch):
    """...and of whether the writing overlaps the computation, and of how often the
    writer's stage fills (a stage of 4 KiB: the run pauses to store it every few chunks)."""
    from stresstest.grid_file import GridWriter

    rng = np.random.default_rng(9)
    pf = random_portfolio(rng, n_clusters=2, horizon=24)
    sc = random_scenario(rng, pf, n_axes=3)
    import yaml

    # write the random inputs as files so the whole pipeline runs
    p_file, s_file = tmp_path / "p.yaml", tmp_path / "s.yaml"
    p_file.write_text(yaml.safe_dump({
        "portfolio": {"horizon_months": pf.horizon_months, "discount_rate": pf.discount_rate},
        "clusters": [{"name": n, **{k: (None if np.isinf(v) else v) for k, v in c.items()}}
                     for n, c in zip(pf.cluster_names, pf.clusters)]}))
    s_file.write_text(yaml.safe_dump({"scenario": {"kind": "grid", "axes": [
        {"param" if a.param else "shock": a.param or a.shock, **({"op": a.spec.op} if a.param else {}),
         "values": a.values.tolist(), "name": a.name, **({"clusters": a.clusters} if a.clusters else {})}
        for a in sc.axes]}}))
    arrays = []
    for cs, overlap, stage in ((1, None, None), (5, None, None), (10**6, None, None),
                               (5, True, 4096), (5, False, 4096), (3, False, 4096)):
        if stage is not None:
            monkeypatch.setattr(GridWriter, "STAGE_BYTES", stage)
        out = tmp_path / f"r{cs}-{overlap}-{stage}.h5"
        res = run_scenario(p_file, s_file, out, backend="numpy", chunk_size=cs, progress=False, overlap=overlap)
        assert 0 < res.writing_s < res.seconds
        with h5py.File(out) as f:
            arrays.append({k: f[k][()] for k in f if k.startswith("cluster_") or k in OUTPUTS})
    for other in arrays[1:]:
        for k, v in arrays[0].items():
            assert np.array_equal(v, other[k], equal_nan=True), k


def test_failed_run_leaves_no_file(tmp_path, monkeypatch):
    from stresstest import engine

    out = tmp_path / "x.h5"

    def boom(self, *args, **kwargs):
        yield from []
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(engine.GridRun, "chunks", boom)
    with pytest.raises(RuntimeError):
        run_scenario(list_presets()["example"], list_presets()["smoke"], out, backend="numpy", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_in_writer_thread_leaves_no_file(tmp_path, monkeypatch):
    from stresstest import grid_file

    def full_disk(self, start, stop, outputs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(grid_file.GridWriter, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run_scenario(list_presets()["example"], list_presets()["smoke"], tmp_path / "x.h5",
                 backend="numpy", chunk_size=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sensitivities,isal", [(False, True), (True, True), (False, False)])
def test_own_deflate_equals_hdf5_filters(tmp_path, monkeypatch, sensitivities, isal):
    """Whole chunks deflated by the writer's threads (ISA-L, or zlib without it) and stored
    with write_direct_chunk read back (h5py, and xarray through h5netcdf) exactly as the
    plain uncompressed file, with the gzip + shuffle filters declared, whatever the
    staging (unfinished chunks carried to the next write) and the chunk layout."""
    import sys

    import stresstest.grid_file as grid_file

    if not isal:
        monkeypatch.setitem(sys.modules, "isal", None)  # import isal fails

    calls = []
    deflate = grid_file._deflate_shuffled
    monkeypatch.setattr(grid_file, "_deflate_shuffled", lambda v, lv: calls.append(v.shape) or deflate(v, lv))
    small = grid_file.chunk_shape
    # chunks of 40 elements: many whole chunks, edge chunks and points split over stages
    monkeypatch.setattr(grid_file, "chunk_shape", lambda shape: small(shape, 40))
    files = {}
    if sensitivities:  # the runs differ only in how they write: one compile of the reverse pass
        from stresstest import jax_adapter

        monkeypatch.setattr(jax_adapter, "sensitivity_chunk_fn", memoised(jax_adapter.sensitivity_chunk_fn))
    for comp, stage in (("gzip", 3000), ("gzip", 2**26), (None, 2**26)):
        monkeypatch.setattr(grid_file.GridWriter, "STAGE_BYTES", stage)
        out = tmp_path / f"{comp}-{stage}.h5"
        run_scenario(list_presets()["example"], list_presets()["smoke"], out,
                 backend="jax" if sensitivities else "numpy", chunk_size=2, compression=comp,
                 sensitivities=sensitivities, progress=False)
        files[(comp, stage)] = out
    assert len(calls) > 10
    plain = files[(None, 2**26)]
    with h5py.File(plain) as f:
        want = {k: f[k][()] for k in f if k in OUTPUTS or k.startswith(("cluster_", "grad_", "slope_", "npv_"))}
    assert ("grad_npv" in want) == sensitivities
    for key in sorted(k for k in files if k[0] == "gzip"):
        with h5py.File(files[key]) as f:
            for k, v in want.items():
                assert f[k].compression == "gzip" and f[k].shuffle, k
                assert np.array_equal(f[k][()], v, equal_nan=True), (key, k)
        with xr.open_dataset(files[key], engine="h5netcdf") as ds:
            assert np.array_equal(ds["cluster_npv"].values, want["cluster_npv"], equal_nan=True)


# ------------------------------------------------------------ existing outputs (issue 23)


def _no_work(monkeypatch):
    """Fail the test if a run gets as far as preparing the computation."""
    from stresstest import engine, runner

    def forbidden(*args, **kwargs):
        raise AssertionError("the run started working")

    monkeypatch.setattr(engine, "prepare", forbidden)
    monkeypatch.setattr(runner, "prepare", forbidden)


@pytest.mark.parametrize("how", ["api", "run_scenario"])
def test_existing_output_is_refused_before_any_work(tmp_path, monkeypatch, how):
    import stresstest
    from stresstest.validation import ConfigError

    out = tmp_path / "r.h5"
    out.write_bytes(b"precious")
    _no_work(monkeypatch)
    with pytest.raises(ConfigError) as err:
        if how == "api":
            stresstest.run("example", "smoke", backend="numpy", output=out)
        else:
            run_scenario(list_presets()["example"], list_presets()["smoke"], out, backend="numpy", progress=False)
    assert err.value.problems == [f"{out}: exists; give --overwrite to replace it"]  # as the CLI says
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


def test_api_overwrite_replaces_the_file(tmp_path):
    import stresstest

    out = tmp_path / "r.h5"
    out.write_bytes(b"precious")
    ds = stresstest.run("example", "smoke", backend="numpy", output=out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
    # the file now holds this run: the engine's numbers at every point
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["smoke"], pf)
    run = prepare(pf, sc, make_backend("numpy"))
    npv = np.concatenate([c.outputs["npv"] for c in run.chunks()])
    with h5py.File(out) as f:
        assert np.array_equal(f["npv"][()].reshape(-1), npv)
    assert np.array_equal(ds["npv"].values.reshape(-1), npv)


# ------------------------------------------------------- labels and units (issue 24)


@pytest.fixture(scope="module")
def default_grid_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("dg") / "stress.h5"
    run_scenario(list_presets()["example"], list_presets()["default_grid"], out, backend="numpy", progress=False)
    return out


def test_base_group_opens_labelled_without_a_warning(default_grid_file):
    """The base group's per-cluster outputs have a `cluster` coordinate (no phony_dim_0,
    no warning from h5netcdf), with the outputs' units and long names."""
    import warnings

    pf = load_portfolio(list_presets()["example"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with xr.open_dataset(default_grid_file, engine="h5netcdf", group="base") as base:
            assert dict(base.sizes) == {"cluster": len(pf.clusters)}
            assert list(base["cluster"].values) == pf.cluster_names
            assert base["cluster_npv"].dims == ("cluster",) and base["npv"].dims == ()
            for name in OUTPUTS:
                assert base[name].attrs["units"] and base[name].attrs["long_name"], name
                assert base[f"cluster_{name}"].attrs["units"] == base[name].attrs["units"], name
            one = float(base["cluster_irr"].sel(cluster="phoenix-b200"))
        with xr.open_dataset(default_grid_file, engine="h5netcdf") as ds:
            assert ds["cluster"].attrs["long_name"] == "cluster name"
    with h5py.File(default_grid_file) as f:
        assert one == f["base/cluster_irr"][pf.cluster_names.index("phoenix-b200")]


def test_axis_coordinates_carry_units_and_long_names(default_grid_file, tmp_path):
    with xr.open_dataset(default_grid_file, engine="h5netcdf") as ds:
        got = {a: (ds[a].attrs["units"], ds[a].attrs["long_name"]) for a in ds["npv"].dims}
    assert got["utilization"][0] == "absolute shift" and "utilization_training" in got["utilization"][1]
    assert got["price"][0] == "scale factor" and "on_demand_price" in got["price"][1]
    assert got["energy"][0] == "scale factor" and "energy_price" in got["energy"][1]
    assert got["obsolescence"][0] == "months" and "next_gen_month" in got["obsolescence"][1]
    # param axes: the parameter table's unit (a scale: a scale factor)
    sc = tmp_path / "s.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n"
                  "    - {param: pue, op: set, values: [1.1, 1.3]}\n"
                  "    - {param: capex_per_gpu, op: scale, values: [0.9, 1.0], clusters: [dallas-h100]}\n"
                  "    - {param: discount_rate, op: shift, values: [0.0, 0.02]}\n")
    out = tmp_path / "p.h5"
    run_scenario(list_presets()["example"], sc, out, backend="numpy", progress=False)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert (ds["pue"].attrs["units"], ds["pue"].attrs["long_name"]) == ("ratio", "pue")
        assert (ds["capex_per_gpu"].attrs["units"], ds["capex_per_gpu"].attrs["long_name"]) == (
            "scale factor", "scale of capex_per_gpu (clusters: dallas-h100)")
        assert (ds["discount_rate"].attrs["units"], ds["discount_rate"].attrs["long_name"]) == (
            "per year", "shift of discount_rate")


def test_default_grid_holds_the_base_case(default_grid_file):
    """The neutral value of every default axis is a grid value exactly, so the base case
    is selected by label and equals the base group (the price and energy axes are
    interpolated between their end points: equal to round-off)."""
    with xr.open_dataset(default_grid_file, engine="h5netcdf") as ds, \
            xr.open_dataset(default_grid_file, engine="h5netcdf", group="base") as base:
        point = ds.sel(utilization=0.0, price=1.0, energy=1.0, obsolescence=0)
        for name in ("npv", "irr", "roi", "revenue", "energy_cost"):
            assert float(point[name]) == pytest.approx(float(base[name]), rel=1e-9, abs=1e-6), name
        assert np.allclose(point["cluster_npv"].values, base["cluster_npv"].values, rtol=1e-9, atol=1e-3)
        assert float(ds["npv"].sel(price=0.4, utilization=-0.2, energy=2.5, obsolescence=-6)) < float(base["npv"])
