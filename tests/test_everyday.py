"""The everyday commands: run --json, inspect, show, scenarios, named runs, the Python API."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import reference_model as ref
import yaml
from click.testing import CliRunner

import stresstest
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.named import list_library, load_shockset
from stresstest.presets import list_presets


def _ok(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r.output


def test_python_api_equals_what_xarray_reads_from_the_cli_file(tmp_path):
    import xarray as xr

    ds = stresstest.run(None, "smoke", backend="numpy")
    out = tmp_path / "cli.h5"
    _ok(["run", "-s", "smoke", "-o", str(out), "--backend", "numpy", "-q"])
    with xr.open_dataset(out, engine="h5netcdf") as cli:
        assert sorted(ds.data_vars) == sorted(cli.data_vars)
        xr.testing.assert_identical(ds.drop_attrs(), cli.load().drop_attrs())
        for k in ("config", "config_sha256", "model_version", "backend"):
            assert ds.attrs[k] == cli.attrs[k]


def test_run_json_is_parsed_back(tmp_path):
    out = _ok(["run", "-s", "smoke", "-o", str(tmp_path / "g.h5"), "--backend", "numpy", "--json"])
    data = json.loads(out)
    assert data["kind"] == "grid" and data["points"] == 6
    assert 0 < data["writing_seconds"] < data["seconds"]  # the writer's share of the run
    base = next(r for r in data["rows"] if r["case"].startswith("base"))
    pf = load_portfolio(list_presets()["example"])
    want = ref.evaluate(pf.clusters, pf.horizon_months, pf.discount_rate)["portfolio"]["npv"]
    assert base["npv"] == pytest.approx(want, rel=1e-9)
    worst = next(r for r in data["rows"] if r["case"].startswith("worst") and "npv" in r["outputs"])
    assert worst["point"] == {"utilization": -0.2, "price": 0.5}
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario: {kind: montecarlo, paths: 300, seed: 2}\n")
    data = json.loads(_ok(["run", "-s", str(sc), "-o", str(tmp_path / "m.h5"), "--backend", "numpy", "--json"]))
    assert data["kind"] == "montecarlo" and data["paths"] == 300
    assert data["risk"]["cvar_95"] >= data["risk"]["var_95"]


def test_inspect_tells_what_a_file_holds(tmp_path):
    g = tmp_path / "g.h5"
    _ok(["run", "-s", "smoke", "-o", str(g), "--backend", "numpy", "-q"])
    info = json.loads(_ok(["inspect", str(g), "--json"]))
    assert info["kind"] == "grid"
    assert info["dimensions"] == {"utilization": 3, "price": 2, "cluster": 6}
    assert info["variables"]["cluster_npv"]["dims"] == ["utilization", "price", "cluster"]
    assert info["provenance"]["portfolio"] == "example-neocloud"
    import h5py

    with h5py.File(g) as f:
        npv = f["npv"][()]
        assert info["base"]["npv"] == pytest.approx(float(f["base/npv"][()]))
    assert info["extremes"]["worst_npv"]["value"] == pytest.approx(npv.min())
    assert info["extremes"]["best_npv"]["at"] == {"utilization": 0.1, "price": 1.0}
    text = _ok(["inspect", str(g)])
    assert "worst NPV" in text and "cluster_npv" in text
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "nope.h5")])
    assert r.exit_code == 2 and "no such file" in r.output
    (tmp_path / "x.h5").write_text("not hdf5")
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "not an HDF5 file" in r.output


def test_show_marks_where_values_come_from(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("portfolio: {name: t}\ndefaults: {pue: 1.25}\nclusters:\n"
                 "  - {name: a, gpus: 8, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_price: 1.8}\n"
                 "  - {name: b, gpus: 16, capex_per_gpu: 35000, on_demand_price: 2.5, reserved_share: 0, pue: 1.1}\n")
    data = json.loads(_ok(["show", str(p), "--json"]))
    rows = {r["name"]: r for r in data["parameters"]}
    assert rows["pue"]["values"] == [1.25, 1.1] and rows["pue"]["origins"] == ["defaults", "cluster"]
    assert rows["gpus"]["origins"] == ["cluster", "cluster"]
    assert rows["kw_per_gpu"]["origins"] == ["model", "model"]
    assert rows["client_loss_month"]["values"] == [None, None]  # never
    assert data["clusters"] == ["a", "b"]
    assert "pue" in _ok(["show", str(p)])


def test_every_named_set_loads_and_is_sourced():
    lib = list_library()
    assert len(lib) >= 7
    for name, path in lib.items():
        s = load_shockset(path)
        assert s.name == name and s.title and s.shocks
        for sh in s.shocks:
            assert s.sources[sh.word].strip()
    listed = _ok(["scenarios", "list"])
    for name in lib:
        assert name in listed
    shown = json.loads(_ok(["scenarios", "show", next(iter(lib)), "--json"]))
    assert shown["shocks"] and shown["sources"]
    r = CliRunner().invoke(main, ["scenarios", "show", "atlantis"])
    assert r.exit_code == 2 and "no such named scenario" in r.output


def _reference_row(pf, s):
    """The model evaluated directly (the plain reference) with a set's shocks."""
    clusters = []
    for name, c in zip(pf.cluster_names, pf.clusters):
        c = dict(c)
        for sh in s.shocks:
            if sh.clusters is None or name in sh.clusters:
                for t in sh.targets:
                    c = ref.apply_shock(c, t, sh.op, sh.value)
        clusters.append(c)
    return ref.evaluate(clusters, pf.horizon_months, pf.discount_rate)["portfolio"]


def test_each_named_scenario_row_matches_the_model_evaluated_directly(tmp_path):
    import xarray as xr

    out = tmp_path / "named.h5"
    data = json.loads(_ok(["run", "-s", "named", "-o", str(out), "--json"]))
    pf = load_portfolio(list_presets()["example"])
    # the sets `-s named` runs: those scenarios/named.yaml lists (the library holds others,
    # run by other bundled scenarios, e.g. customers)
    listed = yaml.safe_load(list_presets()["named"].read_text())["scenario"]["sets"]
    lib = {n: p for n, p in list_library().items() if n in listed}
    assert lib
    rows = {r["scenario"]: r for r in data["rows"]}
    assert set(lib) <= set(rows) and "base case" in rows
    for name, path in lib.items():
        want = _reference_row(pf, load_shockset(path))
        got = rows[name]
        assert got["npv"] == pytest.approx(want["npv"], rel=1e-9, abs=1e-3), name
        if math.isfinite(want["irr"]):
            assert got["irr"] == pytest.approx(want["irr"], rel=1e-7, abs=1e-9), name
        assert got["npv_change"] == pytest.approx(got["npv"] - rows["base case"]["npv"])
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert list(ds["scenario"].values) == [n for n in rows if n != "base case"]
        assert ds["cluster_npv"].dims == ("scenario", "cluster")
        np.testing.assert_allclose(ds["npv"].values, [rows[n]["npv"] for n in ds["scenario"].values])
    text = _ok(["run", "-s", "named", "-o", str(tmp_path / "n2.h5")])
    assert "h100-rental-collapse" in text and "Δ NPV" in text


def test_named_scenario_files_are_validated(tmp_path):
    s = tmp_path / "bad_set.yaml"
    s.write_text("shockset:\n  name: bad_set\n  title: t\n  sources: {price: x}\n  shocks:\n"
                 "    - {shock: price, value: 0.5}\n    - {param: pue, op: set, value: 0.5}\n"
                 "    - {param: nope, op: set, value: 1}\n    - {shock: energy, value: 2}\n")
    sc = tmp_path / "n.yaml"
    sc.write_text(f"scenario: {{kind: named, sets: [{s}, atlantis]}}\n")
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 2
    assert "shocks[1].value: must be >= 1, got 0.5" in r.output
    assert "shocks[2].param: unknown parameter 'nope'" in r.output
    assert "no entry for 'energy' in shockset.sources" in r.output
    assert "no shock set 'atlantis'" in r.output
    assert not (tmp_path / "o.h5").exists()


def test_report_command_with_axes_chosen_and_held(tmp_path):
    sc = tmp_path / "g.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n    - {shock: utilization, values: [-0.2, 0.0]}\n"
                  "    - {shock: price, values: [0.6, 1.0, 1.2]}\n    - {shock: energy, values: [1.0, 2.0]}\n")
    out = tmp_path / "g.h5"
    _ok(["run", "-s", str(sc), "-o", str(out), "--backend", "numpy", "-q"])
    text = _ok(["report", str(out), "-o", str(tmp_path / "rep"), "--x", "price", "--y", "energy",
                "--at", "utilization=-0.2"])
    assert "wrote" in text
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "utilization = -0.2" in html
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs and all(p in html for p in pngs)
    r = CliRunner().invoke(main, ["report", str(out), "--at", "utilization"])
    assert r.exit_code == 2 and "--at: must be AXIS=VALUE" in r.output
    r = CliRunner().invoke(main, ["report", str(out), "--x", "nope"])
    assert r.exit_code == 2 and "nope" in r.output
    listed = json.loads(_ok(["scenarios", "list", "--json"]))
    assert {d["name"] for d in listed} == set(list_library())
    assert _ok(["run", "-s", "smoke", "-o", str(tmp_path / "q.h5"), "--backend", "numpy", "-q"]).strip() \
        == str(tmp_path / "q.h5")
