"""The command line through click's runner: run, validate, info, presets, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import xarray as xr
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base
from stresstest.presets import list_presets


def test_run_smoke_prints_table_and_writes_file(tmp_path):
    out = tmp_path / "s.h5"
    r = CliRunner().invoke(main, ["run", "--scenario", "smoke", "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    assert "base case (no shock)" in r.output and "worst NPV" in r.output and "best IRR" in r.output
    # the printed base NPV is the model's base case
    base = evaluate_base(load_portfolio(list_presets()["example"]))
    assert f"{base['npv'] / 1e6:,.1f} M" in r.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["npv"].shape == (3, 2)
        worst = float(ds["npv"].min())
    assert f"{worst / 1e6:,.1f} M" in r.output


def test_run_default_grid_in_a_fresh_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["run", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "stress.h5").exists()
    with xr.open_dataset(tmp_path / "stress.h5", engine="h5netcdf") as ds:
        assert ds["npv"].dims == ("utilization", "price", "energy", "obsolescence")
        assert ds.attrs["n_scenarios"] == ds["npv"].size
        assert np.isfinite(ds["npv"].values).all()


def test_float32_on_request(tmp_path):
    out = tmp_path / "f.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(out), "--dtype", "float32",
                                  "--backend", "numpy", "-q"])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["npv"].dtype == np.float32 and ds.attrs["dtype"] == "float32"


def test_unknown_backend_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["run", "--backend", "tpu", "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 2
    assert not (tmp_path / "o.h5").exists()


def test_validate_presets_ok():
    r = CliRunner().invoke(main, ["validate", "example", "default_grid", "smoke"])
    assert r.exit_code == 0, r.output
    assert r.output.count("ok: ") == 3


def test_presets_lists_bundled_files():
    r = CliRunner().invoke(main, ["presets"])
    assert r.exit_code == 0
    for name in ("example", "default_grid", "smoke"):
        assert name in r.output


def test_info_json():
    r = CliRunner().invoke(main, ["info", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["numpy"] == np.__version__
    assert "auto backend" in data and "jax devices" in data


def test_import_is_light():
    code = ("import sys, stresstest, stresstest.cli, stresstest.config; "
            "heavy = [m for m in ('jax', 'cupy', 'h5py', 'xarray') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_runs(tmp_path):
    exe = subprocess.run([sys.executable, "-m", "stresstest.cli", "--version"],
                         capture_output=True, text=True)
    assert exe.returncode == 0 and "stresstest" in exe.stdout


def test_unexpected_infinity_is_reported_with_its_grid_point(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("scenario:\n  kind: grid\n  axes:\n"
                    "    - {param: energy_price, op: scale, values: [1.0, 1.0e308]}\n")
    out = tmp_path / "o.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(grid), "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "npv:" in text and "first at energy_price=1e+308" in text and "UNEXPECTED" in text
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert np.isfinite(ds["npv"].values[0]) and not np.isfinite(ds["npv"].values[1])


def test_every_option_of_every_command_has_help():
    """`--help` explains every option: none is listed with its name alone."""
    import click

    def commands(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from commands(sub, path + (name,))
        else:
            yield path, cmd

    bare = [(" ".join(path), p.opts[0]) for path, cmd in commands(main, ("stresstest",))
            for p in cmd.params if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert bare == []
    # and the help page of a command shows them
    out = CliRunner().invoke(main, ["submit", "--help"]).output
    assert "Slurm account" in out and "CPU cores per array task" in out
