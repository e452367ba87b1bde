"""Issue 23, breakeven: a jump over the target is not an answer; the --over curve file is
refused where it exists (--overwrite), written atomically, carries a result file's
provenance, and `inspect` describes it."""

from __future__ import annotations

import hashlib
import json
import math

import h5py
import numpy as np
import pytest
import reference_model as ref
from click.testing import CliRunner

pytest.importorskip("jax")

from stresstest.breakeven import breakeven  # noqa: E402
from stresstest.cli import main  # noqa: E402
from stresstest.config import load_portfolio  # noqa: E402
from stresstest.kernels.params import MODEL_VERSION  # noqa: E402

# Two clusters, one with debt: its first-term reserved contracts end at month 39 (3 months
# of delivery + 36) without renewal, so a loan running into month 40 meets the lower cash
# flows after them, and the portfolio's minimum DSCR falls from about 3.6 to about 1.05
# between a 39- and a 40-month term (terms are whole months).
JUMPY = """\
portfolio: {name: jumpy, horizon_months: 60, discount_rate: 0.1}
clusters:
  - {name: levered, gpus: 512, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_price: 2.6,
     reserved_share: 0.9, reserved_term_months: 36, renewal_rate: 0.0, delivery_months: 3,
     debt_fraction: 0.5, debt_term_months: 48, next_gen_month: 100}
  - {name: plain, gpus: 256, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_price: 1.8}
"""
GRID = """\
scenario:
  kind: grid
  axes:
    - {shock: price, values: [0.2, 1.0]}
"""
TARGET = 1.5
PROVENANCE = ("model_version", "stresstest_version", "config", "config_sha256", "backend", "device",
              "dtype", "created")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("jumpy")
    (d / "p.yaml").write_text(JUMPY)
    (d / "sc.yaml").write_text(GRID)
    return d


def _ref_min_dscr(pf, term: int, price: float = 1.0) -> float:
    """The plain reference model's portfolio minimum DSCR at a debt term (every cluster)."""
    moved = [ref.apply_shock(ref.apply_shock(c, "debt_term_months", "set", term), "price", "scale", price)
             for c in pf.clusters]
    return ref.evaluate(moved, pf.horizon_months, pf.discount_rate)["portfolio"]["min_dscr"]


def _ref_jump(pf, price: float = 1.0) -> tuple[int, int, float, float]:
    """The whole-month terms either side of the reference's crossing of TARGET nearest
    the base term (48), and the DSCRs there; no whole-month term meets TARGET."""
    d = {n: _ref_min_dscr(pf, n, price) for n in range(1, 61)}
    assert all(abs(v - TARGET) > 1e-3 for v in d.values() if math.isfinite(v))
    crossings = [n for n in range(1, 60) if (d[n] - TARGET) * (d[n + 1] - TARGET) < 0]
    n = min(crossings, key=lambda n: abs(n + 0.5 - 48))
    return n, n + 1, d[n], d[n + 1]


def test_a_jump_over_the_target_is_not_a_breakeven(files):
    pf = load_portfolio(files / "p.yaml")
    a, b, da, db = _ref_jump(pf)
    assert (a, b) == (39, 40) and da > 3 and db < 1.1  # the portfolio the issue describes
    rows = breakeven(pf, "debt_term_months", f"min_dscr={TARGET}", bracket=(1.0, 60.0))
    port = rows[0]
    assert port.scope == "portfolio"
    assert port.status == "jump" and port.value is None and port.achieved is None
    assert port.jump == (a, b)
    assert port.jump_outputs == pytest.approx((da, db), rel=1e-9)
    plain = rows[2]  # no debt: no DSCR, nothing crosses
    assert plain.scope == "plain" and plain.status == "none" and plain.value is None


def test_cli_says_no_value_meets_the_target(files):
    pf = load_portfolio(files / "p.yaml")
    a, b, _, _ = _ref_jump(pf)
    args = ["breakeven", str(files / "p.yaml"), "--param", "debt_term_months", "--target",
            f"min_dscr={TARGET}", "--cluster", "levered"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert f"no value meets the target; the output jumps over it between {a} and {b}" in r.output
    assert "39.5" not in r.output and "re-evaluated" not in r.output
    r = CliRunner().invoke(main, args + ["--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)
    assert row["status"] == "jump" and row["value"] is None and row["jump"] == [a, b]


def test_curve_marks_jumps_and_inspect_describes_it(files, tmp_path):
    import xarray as xr

    pf = load_portfolio(files / "p.yaml")
    out = tmp_path / "curve.h5"
    r = CliRunner().invoke(main, ["breakeven", str(files / "p.yaml"), "--param", "debt_term_months",
                                  "--target", f"min_dscr={TARGET}", "--over", "price",
                                  "-s", str(files / "sc.yaml"), "-o", str(out), "--range", "1", "60",
                                  "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    jumps = {price: _ref_jump(pf, price) for price in (0.2, 1.0)}
    assert data["scopes"] == ["portfolio", "levered", "plain"]
    for i, price in enumerate(data["values"]):
        assert data["breakeven"][i][0] is None and data["status"][i][0] == "jump"
        assert data["jump"][i][0] == list(jumps[price][:2])
        assert data["status"][i][2] == "none"
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert np.isnan(ds["breakeven"].values).all()
        assert list(ds["status"].sel(scope="portfolio").values) == [2, 2]
        assert list(ds["jump_low"].sel(scope="portfolio").values) == [jumps[p][0] for p in (0.2, 1.0)]
        assert list(ds["jump_high"].sel(scope="portfolio").values) == [jumps[p][1] for p in (0.2, 1.0)]
        assert ds.attrs["kind"] == "breakeven" and ds["breakeven"].attrs["units"] == "months"

    # provenance: the root attributes of a grid result file
    with h5py.File(out) as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    for key in PROVENANCE:
        assert key in attrs, key
    assert attrs["model_version"] == MODEL_VERSION
    assert attrs["config_sha256"] == hashlib.sha256(attrs["config"].encode()).hexdigest()
    config = json.loads(attrs["config"])
    assert config["portfolio"]["name"] == "jumpy"
    assert [c["name"] for c in config["portfolio"]["clusters"]] == ["levered", "plain"]
    assert [a["name"] for a in config["scenario"]["axes"]] == ["price"]
    assert (attrs["param"], attrs["target"], attrs["over"]) == ("debt_term_months", f"min_dscr={TARGET}", "price")

    r = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["kind"] == "breakeven" and info["title"] == "breakeven curve"
    assert info["dimensions"] == {"price": 2, "scope": 3}
    assert info["variables"]["breakeven"]["dims"] == ["price", "scope"]
    be = info["breakeven"]
    assert (be["param"], be["target"], be["over"], be["range"]) == (
        "debt_term_months", f"min_dscr={TARGET}", "price", [1.0, 60.0])
    port = be["scopes"]["portfolio"]
    assert (port["solved"], port["none"], port["jump"]) == (0, 0, 2)
    assert [p["jump"] for p in port["points"]] == [list(jumps[p][:2]) for p in (0.2, 1.0)]
    assert be["scopes"]["plain"]["none"] == 2
    r = CliRunner().invoke(main, ["inspect", str(out)], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "breakeven curve, 2 values of price" in r.output
    assert "debt_term_months such that min_dscr=1.5 in [1, 60], along price" in r.output
    assert "portfolio: solved at 0 of 2 values; no crossing at 0, jumps over the target at 2" in r.output


def test_inspect_names_every_kind(tmp_path):
    """A grid, a Monte Carlo and a named result each described in their own words."""
    g, m, n = tmp_path / "g.h5", tmp_path / "m.h5", tmp_path / "n.h5"
    (tmp_path / "mc.yaml").write_text("scenario: {kind: montecarlo, paths: 300, seed: 2}\n")
    for path, sc in ((g, "smoke"), (m, str(tmp_path / "mc.yaml")), (n, "named")):
        r = CliRunner().invoke(main, ["run", "-s", sc, "-o", str(path), "--backend", "numpy", "-q"])
        assert r.exit_code == 0, r.output
    want = {g: ("grid", "stress grid", "6 grid points"), m: ("montecarlo", "Monte Carlo", "300 paths, seed 2")}
    with h5py.File(n) as f:
        want[n] = ("named", "named scenarios", f"{f['scenario'].shape[0]} named shock sets")
    for path, (kind, title, size) in want.items():
        info = json.loads(CliRunner().invoke(main, ["inspect", str(path), "--json"]).output)
        assert (info["kind"], info["title"], info["size"]) == (kind, title, size)
        text = CliRunner().invoke(main, ["inspect", str(path)], env={"COLUMNS": "150"}).output
        assert f"{title}, {size}; portfolio 'example-neocloud'" in text
    text = CliRunner().invoke(main, ["inspect", str(m)], env={"COLUMNS": "150"}).output
    with h5py.File(m) as f:
        stats = [s.decode() for s in f["statistic"][()]]
        mean = float(f["npv"][stats.index("mean")])
    # the Monte Carlo summary: its numbers (in the text in whatever format inspect prints)
    info = json.loads(CliRunner().invoke(main, ["inspect", str(m), "--json"]).output)
    assert info["summary"]["npv"]["mean"] == pytest.approx(mean, rel=1e-12)
    assert "mean" in text


def test_curve_output_is_refused_where_it_exists_before_any_work(files, tmp_path, monkeypatch):
    import stresstest.breakeven as be

    grid = tmp_path / "grid.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(grid), "--backend", "numpy", "-q"])
    assert r.exit_code == 0, r.output
    before = grid.read_bytes()
    calls = []
    real_curve = be.breakeven_curve
    monkeypatch.setattr(be, "breakeven_curve", lambda *a, **k: calls.append(1) or real_curve(*a, **k))
    args = ["breakeven", "--param", "price", "--over", "utilization", "-s", "smoke"]
    r = CliRunner().invoke(main, args + ["-o", str(grid)])
    assert r.exit_code == 2
    assert f"error: {grid}: exists; give --overwrite to replace it" in r.output
    assert grid.read_bytes() == before and not calls  # refused before any work
    # the default name, breakeven.h5, likewise
    monkeypatch.chdir(tmp_path)
    (tmp_path / "breakeven.h5").write_bytes(before)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "breakeven.h5: exists; give --overwrite" in r.output
    assert (tmp_path / "breakeven.h5").read_bytes() == before and not calls
    # --overwrite replaces it, with a breakeven curve
    r = CliRunner().invoke(main, args + ["-o", str(grid), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert calls
    with h5py.File(grid) as f:
        assert f.attrs["kind"] == "breakeven" and "npv" not in f
    assert not list(tmp_path.glob(".*.partial"))


def test_curve_is_written_atomically(files, tmp_path, monkeypatch):
    """A write that fails half-way leaves the existing file as it was and no temporary
    file; the file is written under a temporary name and renamed into place."""
    import os

    import stresstest.breakeven as be
    import stresstest.h5io as h5io
    from stresstest.loaders import load_scenario

    pf = load_portfolio(files / "p.yaml")
    sc = load_scenario(files / "sc.yaml", pf)
    curve = be.breakeven_curve(pf, sc, "price", "utilization", "npv=0", "plain")
    attrs = be.curve_attrs(pf, sc, "utilization", "npv=0", "price", "plain", None)
    out = tmp_path / "curve.h5"
    out.write_bytes(b"an older file")
    broken = dict(curve, jump_high=np.array([[object()]], dtype=object))  # the last dataset fails
    with pytest.raises(TypeError):
        be.write_curve(out, broken, attrs)
    assert out.read_bytes() == b"an older file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(h5io.os, "replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    be.write_curve(out, curve, attrs)
    assert renames == [(h5io.temp_path(out), out)]
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "breakeven"
        assert f["breakeven"][:, 0] == pytest.approx(curve["value"][:, 0], nan_ok=True)


def test_an_over_axis_named_like_a_curve_dataset_is_refused(files, tmp_path):
    """An --over axis called `status` (or any dataset name of the curve file) would clash
    with the file's own dataset: refused before any work, exit 2, no file."""
    sc = tmp_path / "named_status.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n    - {shock: price, name: status, values: [0.5, 1.0]}\n")
    out = tmp_path / "c.h5"
    r = CliRunner().invoke(main, ["breakeven", str(files / "p.yaml"), "--param", "utilization",
                                  "--over", "status", "-s", str(sc), "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert "shares its name with a dataset of the curve file" in r.output
    assert not out.exists() and not list(tmp_path.glob(".*.partial"))


def test_report_says_a_jump_is_a_jump(files, tmp_path):
    """The report of a curve with jumps says the output jumps over the target there, not
    that there is no breakeven in the bracket (issue 24); a scope without a crossing keeps
    that note."""
    out = tmp_path / "curve.h5"
    r = CliRunner().invoke(main, ["breakeven", str(files / "p.yaml"), "--param", "debt_term_months",
                                  "--target", f"min_dscr={TARGET}", "--over", "price",
                                  "-s", str(files / "sc.yaml"), "-o", str(out), "--range", "1", "60"])
    assert r.exit_code == 0, r.output
    with h5py.File(out) as f:
        status = f["status"][()]
        scopes = [s.decode() if isinstance(s, bytes) else s for s in f["scope"][()]]
    jumped = [s for j, s in enumerate(scopes) if (status[:, j] == 2).any()]
    none = [s for j, s in enumerate(scopes) if (status[:, j] == 1).any()]
    assert jumped == ["portfolio", "levered"] and none == ["plain"]
    r = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert ("the output jumps over the target (gaps in the curve) for: " + ", ".join(jumped) + ".") in html
    assert "No breakeven in the bracket at some or all points (gaps in the curve) for: plain." in html
