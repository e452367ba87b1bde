"""Reports (stresstest.figures.make_report): PNGs and report.html from every kind of result file."""

from __future__ import annotations

import base64
import json
import re
import struct

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.figures import make_report
from stresstest.validation import ConfigError

GRID4 = """
scenario:
  kind: grid
  name: four-axes
  axes:
    - {shock: utilization, values: [-0.2, 0.0, 0.1]}
    - {shock: price, values: [0.5, 1.0, 1.2]}
    - {shock: energy, values: [1.0, 2.0]}
    - {shock: obsolescence, values: [-12, 6]}
"""

LINE = """
scenario:
  kind: grid
  name: one-varying-axis
  axes:
    - {shock: price, linspace: [0.6, 1.4, 5]}
    - {shock: energy, values: [1.5]}
"""

MC = "scenario: {kind: montecarlo, name: mc-test, paths: %d, seed: 1}\n"


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    (d / "grid4.yaml").write_text(GRID4)
    (d / "line.yaml").write_text(LINE)
    (d / "mc.yaml").write_text(MC % 2000)
    (d / "mcp.yaml").write_text(MC % 500)
    out = {k: d / f"{k}.h5" for k in ("smoke", "grid4", "line", "mc", "mcp", "be")}
    _cli("run", "-s", "smoke", "-o", out["smoke"], "--backend", "numpy", "-q")
    _cli("run", "-s", d / "grid4.yaml", "-o", out["grid4"], "--backend", "numpy", "-q")
    _cli("run", "-s", d / "line.yaml", "-o", out["line"], "--backend", "numpy", "-q")
    _cli("run", "-s", d / "mc.yaml", "-o", out["mc"], "--backend", "numpy", "-q")
    _cli("run", "-s", d / "mcp.yaml", "-o", out["mcp"], "--backend", "numpy", "-q", "--save-paths")
    _cli("breakeven", "--param", "price", "--over", "utilization", "-s", "smoke", "-o", out["be"])
    return out


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_written(done, expect: set[str]):
    html_path = done["html"]
    assert html_path.name == "report.html" and html_path.exists()
    page = html_path.read_text(encoding="utf-8")
    names = {p.name for p in done["figures"]}
    assert names == expect
    for p in done["figures"]:
        assert p.parent == html_path.parent
        w, h = png_size(p)
        assert 400 <= w <= 4000 and 250 <= h <= 4000, (p.name, w, h)
        # the page holds the PNG itself (a data URI), so that it can be mailed alone
        assert f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"' in page
    # every img in the page is one of the PNGs written, embedded; nothing refers to another file
    assert len(re.findall(r"<img ", page)) == len(names)
    assert not [u for u in re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', page, re.I)
                if not u.startswith("data:")]
    assert sorted(x.name for x in html_path.parent.iterdir()) == sorted(names | {"report.html"})
    assert not list(html_path.parent.parent.glob("*.partial"))
    return page


def money(v):  # the report's money format: millions, two decimals
    return f"{v / 1e6:,.2f}"


# --------------------------------------------------------------------------- grids


def test_grid_report(files, tmp_path):
    done = make_report(files["smoke"], tmp_path / "rep")
    page = check_written(done, {"npv_heatmap.png", "irr_heatmap.png"})
    assert done["kind"] == "grid" and (done["x"], done["y"]) == ("utilization", "price") and done["held"] == {}
    with h5py.File(files["smoke"]) as f:
        base_npv, base_irr = float(f["base/npv"][()]), float(f["base/irr"][()])
        sha, created = f.attrs["config_sha256"], f.attrs["created"]
    assert f"<td>base case (no shock)</td><td class=\"num\">{money(base_npv)}</td>" \
           f"<td class=\"num\">{100 * base_irr:.2f} %</td>" in page
    assert sha in page and created in page and "example-neocloud" in page and "<h1>" in page
    with xr.open_dataset(files["smoke"], engine="h5netcdf") as ds:
        npv = ds["npv"].values
        i, j = np.unravel_index(np.argmin(npv), npv.shape)
        at = {"utilization": float(ds["utilization"][i]), "price": float(ds["price"][j])}
        assert np.allclose(np.array(done["tables"]["heatmap"]["npv"]), npv.T)  # (y=price, x=utilization)
    row = next(r for r in done["tables"]["summary"] if r["case"].startswith("worst NPV"))
    assert row["npv"] == pytest.approx(float(npv.min())) and row["point"] == pytest.approx(at)
    assert money(float(npv.min())) in page and money(float(npv.max())) in page
    assert "utilization=-0.2, price=0.5" in page


def test_heatmap_axes_and_held_values(files, tmp_path):
    done = make_report(files["grid4"], tmp_path / "default")
    check_written(done, {"npv_heatmap.png", "irr_heatmap.png"})
    # energy's neutral 1.0 is on the axis; obsolescence's neutral 0 is not: the nearest value, 6
    assert (done["x"], done["y"]) == ("utilization", "price")
    assert done["held"] == {"energy": 1.0, "obsolescence": 6.0}
    page = done["html"].read_text()
    assert "energy = 1 (neutral)" in page and "obsolescence = 6 (nearest to neutral 0)" in page

    done = make_report(files["grid4"], tmp_path / "chosen", x="price", y="obsolescence", at={"utilization": -0.2})
    page = check_written(done, {"npv_heatmap.png", "irr_heatmap.png"})
    assert (done["x"], done["y"]) == ("price", "obsolescence")
    assert done["held"] == {"utilization": -0.2, "energy": 1.0}
    assert "utilization = -0.2 (--at)" in page
    hm = done["tables"]["heatmap"]
    with xr.open_dataset(files["grid4"], engine="h5netcdf") as ds:
        want = ds["npv"].sel(utilization=-0.2, energy=1.0).transpose("obsolescence", "price").values
        want_irr = ds["irr"].sel(utilization=-0.2, energy=1.0).transpose("obsolescence", "price").values
    assert hm["x_values"] == [0.5, 1.0, 1.2] and hm["y_values"] == [-12.0, 6.0]
    assert np.allclose(np.array(hm["npv"]), want) and np.allclose(np.array(hm["irr"]), want_irr, equal_nan=True)

    # only y given: x is the first other varying axis that is not held
    done = make_report(files["grid4"], tmp_path / "only-y", y="energy", at={"obsolescence": -12})
    assert (done["x"], done["y"]) == ("utilization", "energy")
    assert done["held"] == {"price": 1.0, "obsolescence": -12.0}


def test_one_varying_axis_gives_line_plots(files, tmp_path):
    done = make_report(files["line"], tmp_path / "rep")
    page = check_written(done, {"npv_line.png", "irr_line.png"})
    assert done["x"] is None and done["y"] is None and done["line"] == "price"
    assert done["held"] == {"energy": 1.5}  # no neutral on the axis: its only value
    with xr.open_dataset(files["line"], engine="h5netcdf") as ds:
        assert np.allclose(done["tables"]["line"]["npv"], ds["npv"].isel(energy=0).values)
    assert "energy = 1.5" in page


def _labelled_file(path, portfolio="pf", clusters=("a", "b")):
    """A file laid out like a named-scenario run: one labelled axis `scenario`."""
    names = ["h100 collapse", "energy <crisis>"]
    with h5py.File(path, "w") as f:
        f.attrs.update({"portfolio": portfolio, "scenario": "named", "currency": "USD", "discount_rate": 0.1,
                        "config": json.dumps({"portfolio": {}, "scenario": {"kind": "named"}}),
                        "config_sha256": "0" * 64, "created": "2026-01-01T00:00:00+00:00", "backend": "numpy"})
        sc = f.create_dataset("scenario", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        sc.make_scale("scenario")
        cl = f.create_dataset("cluster", data=np.array(clusters, dtype=object), dtype=h5py.string_dtype())
        cl.make_scale("cluster")
        for k, v in {"npv": [-2e6, 3e6], "irr": [0.05, 0.15], "roi": [-0.1, 0.2]}.items():
            ds = f.create_dataset(k, data=np.array(v))
            ds.dims[0].attach_scale(sc)
            c = f.create_dataset(f"cluster_{k}", data=np.tile(np.array(v)[:, None] / 2, (1, len(clusters))))
            c.dims[0].attach_scale(sc)
            c.dims[1].attach_scale(cl)
        g = f.create_group("base")
        for k, v in {"npv": 1.5e6, "irr": 0.11, "roi": 0.05}.items():
            g[k] = v
            g[f"cluster_{k}"] = np.full(len(clusters), v / 2)


def test_labelled_axis_and_escaping(tmp_path):
    src = tmp_path / "named.h5"
    _labelled_file(src, portfolio="<script>alert(1)</script>", clusters=("a&b", "c"))
    done = make_report(src, tmp_path / "rep")
    page = check_written(done, {"named_npv.png", "named_irr.png"})
    assert done["line"] == "scenario"
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&amp;b" in page and "a&b" not in page
    assert "scenario=energy &lt;crisis&gt;" in page  # the best NPV's point, escaped
    assert money(1.5e6) in page
    with pytest.raises(ConfigError, match="--at: scenario"):
        make_report(src, tmp_path / "bad", x="scenario", at={"scenario": 1.0})


# --------------------------------------------------------------------------- sensitivities


def test_sensitivity_tornado(smoke_sensitivities, tmp_path):
    done = make_report(smoke_sensitivities, tmp_path / "rep")
    page = check_written(done, {"npv_heatmap.png", "irr_heatmap.png", "tornado.png"})
    assert done["kind"] == "sensitivities"
    _, h = png_size(done["figures"][-1])
    assert h > 600  # 15 bars
    with xr.open_dataset(smoke_sensitivities, engine="h5netcdf") as ds:
        m = ds["npv_per_pct"].sel(utilization=0.0, price=1.0)  # the base case is on the grid
        s = (abs(m) * 10).stack(pair=("cluster", "parameter"))
        top = s.sortby(s, ascending=False).isel(pair=slice(0, 15))
        want = [(str(c), str(p)) for c, p in top["pair"].values]
        first = float(m.sel(cluster=want[0][0], parameter=want[0][1])) * 10
    rows = done["tables"]["tornado"]["rows"]
    assert [(r["cluster"], r["parameter"]) for r in rows] == want
    assert rows[0]["up"] == pytest.approx(first) and rows[0]["down"] == pytest.approx(-first)
    assert done["tables"]["tornado"]["point"] == {"utilization": 0.0, "price": 1.0}
    assert f"<td>{want[0][0]}</td><td>{want[0][1]}</td><td class=\"num\">{money(first)}</td>" in page
    assert "(the base case)" in page


# --------------------------------------------------------------------------- Monte Carlo


def test_montecarlo_without_paths(files, tmp_path):
    done = make_report(files["mc"], tmp_path / "rep")
    page = check_written(done, {"npv_cdf.png", "cumulative_cf_fan.png"})
    assert done["kind"] == "montecarlo"
    assert "--save-paths" in page and "histogram" in page
    with xr.open_dataset(files["mc"], engine="h5netcdf") as ds:
        npv = ds["npv"].to_series()
        var95, cvar95, p_neg = float(ds["var_95"]), float(ds["cvar_95"]), float(ds["prob_npv_negative"])
        assert ds.attrs["paths"] == 2000
    for stat in ("mean", "p5", "p50", "p95"):
        assert f'<td class="num">{money(npv[stat])}</td>' in page
    assert f"<td>VaR 95 (M USD)</td><td class=\"num\">{money(var95)}</td>" in page
    assert f"<td>CVaR 95 (M USD)</td><td class=\"num\">{money(cvar95)}</td>" in page
    assert f"{100 * p_neg:.2f} %" in page
    assert "<td>paths</td><td>2000</td>" in page and "<td>seed</td><td>1</td>" in page


def test_montecarlo_with_paths(files, tmp_path):
    done = make_report(files["mcp"], tmp_path / "rep")
    page = check_written(done, {"npv_hist.png", "npv_cdf.png", "cumulative_cf_fan.png"})
    assert done["tables"]["paths_in_histogram"] == 500
    assert "--save-paths" not in page


# --------------------------------------------------------------------------- breakeven


def test_breakeven_curve(files, tmp_path):
    done = make_report(files["be"], tmp_path / "rep")
    page = check_written(done, {"breakeven.png"})
    assert done["kind"] == "breakeven"
    with xr.open_dataset(files["be"], engine="h5netcdf") as ds:
        port = ds["breakeven"].sel(scope="portfolio").values
        assert list(ds["utilization"].values) == [-0.2, 0.0, 0.1]
    assert [r["portfolio"] for r in done["tables"]["rows"]] == pytest.approx(list(port))
    for v in port:
        assert f"{v:.4g}" in page


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kw, option, reason", [
    ({"x": "nope"}, "--x", "unknown axis 'nope'"),
    ({"y": "nope"}, "--y", "unknown axis 'nope'"),
    ({"x": "price", "y": "price"}, "--x/--y", "two different axes"),
    ({"at": {"nope": 1.0}}, "--at", "unknown axis 'nope'"),
    ({"at": {"energy": 1.7}}, "--at", "energy=1.7: not a value of the axis"),
    ({"at": {"energy": "high"}}, "--at", "value must be a number"),
    ({"x": "energy", "at": {"energy": 1.0}}, "--at", "cannot also be held"),
])
def test_bad_options(files, tmp_path, kw, option, reason):
    out = tmp_path / "rep"
    with pytest.raises(ConfigError) as err:
        make_report(files["grid4"], out, **kw)
    msg = str(err.value)
    assert msg.startswith(f"{files['grid4']}: {option}: ") and reason in msg, msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_files(files, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    cases = [(text, "not a stresstest result file"), (other, "not a stresstest result file"),
             (tmp_path / "missing.h5", "no such file"), (tmp_path, "is a folder")]
    for path, reason in cases:
        out = tmp_path / "rep"
        with pytest.raises(ConfigError) as err:
            make_report(path, out)
        assert str(err.value).startswith(f"{path}: ") and reason in str(err.value)
        assert not out.exists()
    for key, kind in (("mc", "Monte Carlo"), ("be", "breakeven")):
        with pytest.raises(ConfigError, match=f"--x: a {kind}"):
            make_report(files[key], tmp_path / "rep", x="price")
        with pytest.raises(ConfigError, match="--at"):
            make_report(files[key], tmp_path / "rep", at={"price": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.h5", "other.h5"]


def test_existing_folder_untouched_on_error_and_updated_on_success(files, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError):
        make_report(files["smoke"], out, at={"price": 3.0})
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    done = make_report(files["smoke"], out)
    assert sorted(p.name for p in out.iterdir()) == ["irr_heatmap.png", "keep.txt", "npv_heatmap.png",
                                                     "report.html"]
    assert len(done["figures"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temporary folder left beside it


def test_cli_report(files, tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["report", str(files["grid4"]), "-o", str(out), "--x", "price",
                                  "--y", "utilization", "--at", "energy=2"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and (out / "npv_heatmap.png").exists()
    assert "energy = 2 (--at)" in (out / "report.html").read_text()
    r = CliRunner().invoke(main, ["report", str(files["grid4"]), "-o", str(tmp_path / "bad"), "--x", "nope"])
    assert r.exit_code != 0 and "--x: unknown axis 'nope'" in r.output
    assert not (tmp_path / "bad").exists()
