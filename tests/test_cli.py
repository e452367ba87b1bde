"""The command line through click's runner: run, validate, info, presets, exit codes."""

from __future__ import annotations

import json
import re
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
    assert "base case (no shock)" in r.output and "worst NPV" in r.output
    # the best-IRR row (with the best NPV's where the two are the same point)
    assert re.search(r"best (NPV, )?IRR", r.output), r.output
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
    assert data["compile cache"] == "off"  # the suite turns it off (conftest)


def test_info_names_the_compile_cache_and_counts_its_programs(tmp_path):
    from stresstest.report import compile_cache_summary

    folder = tmp_path / "cc"
    assert compile_cache_summary({"STRESSTEST_COMPILE_CACHE": str(folder)}) == f"{folder} (0 programs, 0.0 MiB)"
    (folder / "jit_a-cache").write_bytes(b"x" * 2**20)
    (folder / "jit_b-cache").write_bytes(b"x" * 2**19)
    assert compile_cache_summary({"STRESSTEST_COMPILE_CACHE": str(folder)}) == f"{folder} (2 programs, 1.5 MiB)"
    assert compile_cache_summary({"STRESSTEST_COMPILE_CACHE": "off"}) == "off"


def test_import_is_light():
    code = ("import sys, stresstest, stresstest.cli, stresstest.config, stresstest.grid_config; "
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


def test_compile_cache_folder_from_the_environment(tmp_path):
    from stresstest.backends import compile_cache_dir

    for off in ("off", "0", "No", " false "):
        assert compile_cache_dir({"STRESSTEST_COMPILE_CACHE": off}) is None
    named = tmp_path / "a" / "b"
    assert compile_cache_dir({"STRESSTEST_COMPILE_CACHE": str(named)}) == str(named) and named.is_dir()
    xdg = tmp_path / "xdg"
    assert compile_cache_dir({"XDG_CACHE_HOME": str(xdg)}) == str(xdg / "stresstest" / "jax")
    assert (xdg / "stresstest" / "jax").is_dir()
    (tmp_path / "file").write_text("")
    assert compile_cache_dir({"STRESSTEST_COMPILE_CACHE": str(tmp_path / "file" / "x")}) is None


def test_a_rerun_takes_its_compiled_programs_from_the_cache(tmp_path):
    """The first run writes the compiled programs to the named folder; the second (other
    parameter values: they are arguments, not constants) reads every one back and writes
    none; results equal those of a run without the cache, bit for bit."""
    import os

    import h5py
    import yaml

    cache = tmp_path / "cache"
    pf = yaml.safe_load(open(list_presets()["example"]))
    pf2 = tmp_path / "moved.yaml"
    for c in pf["clusters"]:
        c["energy_price"] = 0.123
    pf2.write_text(yaml.safe_dump(pf))

    def run(portfolio, out, cache_value):
        env = dict(os.environ, STRESSTEST_COMPILE_CACHE=cache_value, JAX_LOG_COMPILES="1",
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        r = subprocess.run([sys.executable, "-m", "stresstest.cli", "run", str(portfolio), "-s", "smoke",
                            "--backend", "jax", "-o", str(tmp_path / out)],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return r.stderr

    first = run(list_presets()["example"], "a.h5", str(cache))
    written = sorted(os.listdir(cache))
    assert written, first
    second = run(list_presets()["example"], "b.h5", str(cache))
    assert "read the compiled program from the cache" in second, second
    assert sorted(os.listdir(cache)) == written
    run(pf2, "c.h5", str(cache))
    assert sorted(os.listdir(cache)) == written  # new values, the same programs
    run(list_presets()["example"], "d.h5", "off")
    assert sorted(os.listdir(cache)) == written
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b, \
            h5py.File(tmp_path / "d.h5") as d, h5py.File(tmp_path / "c.h5") as c:
        for k in ("npv", "irr", "cluster_npv", "min_dscr"):
            assert np.array_equal(a[k][()], d[k][()], equal_nan=True), k
            assert np.array_equal(b[k][()], d[k][()], equal_nan=True), k
        assert not np.array_equal(c["npv"][()], d["npv"][()])  # the moved portfolio did run
