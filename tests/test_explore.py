"""`stresstest explore` in a real headless browser (Selenium with Debian's chromium and
chromium-driver): the app starts on a free port, the heatmap renders, a slider's move
shows the value xarray reads from the file at that point, a click shows that point's
cash-flow statement with the file's NPV and a command line that reproduces it, every view
renders, no console error, no request leaves 127.0.0.1.

Skipped with the reason where no browser is found, unless STRESSTEST_REQUIRE_BROWSER=1
(.ci/run sets it: there these tests must run). One server (every file at its own route)
and one browser for the module. Screenshots of each view go to $STRESSTEST_SCREENSHOTS,
or a temporary folder (printed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from stresstest.cli import main

GRID = """scenario:
  kind: grid
  name: explore-test
  axes:
    - {shock: utilization, values: [-0.2, -0.1, 0.0, 0.1]}
    - {shock: price, values: [0.6, 0.8, 1.0, 1.2]}
    - {shock: energy, values: [1.0, 1.5, 2.0]}
"""
MC = "scenario: {kind: montecarlo, name: mc-explore, paths: 300, seed: 3}\n"
ROUTES = ("grid", "sens", "named", "mc", "be", "rank", "opt")
WAIT = 30.0  # seconds for a page or an answer to show


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("explore")
    (d / "grid.yaml").write_text(GRID)
    (d / "mc.yaml").write_text(MC)
    out = {k: d / f"{k}.h5" for k in ROUTES}
    _cli("run", "example", "-s", d / "grid.yaml", "-o", out["grid"], "--backend", "numpy", "-q")
    _cli("run", "example", "-s", "named", "-o", out["named"], "--backend", "numpy", "-q")
    _cli("run", "example", "-s", d / "mc.yaml", "-o", out["mc"], "--backend", "numpy", "--save-paths", "-q")
    _cli("run", "example", "-s", "smoke", "-o", out["sens"], "--sensitivities", "-q")
    _cli("breakeven", "example", "--param", "price", "--over", "utilization", "-s", "smoke", "-o", out["be"])
    _cli("rank", "example", "-s", d / "mc.yaml", "-o", out["rank"], "--permutations", "10", "--variance-samples", "50",
         "--sobol-samples", "0", "--dgsm-samples", "0", "--backend", "numpy", "-q")
    write_optimize_file(out["opt"])
    out["grid.yaml"] = d / "grid.yaml"
    return out


def write_optimize_file(path):
    """An optimize file with a frontier of three points, one infeasible, through the
    optimize command's own writer (a real optimize run compiles its gradients for minutes)."""
    from stresstest.optimize_io import METRICS, SAMPLES, write_optimize

    def metrics(npv, cvar):
        return {s: {m: {"mean_npv": npv + k, "cvar_95": cvar - k}.get(m, 0.1) for m in METRICS}
                for k, s in enumerate(SAMPLES)}

    d = {"objective": "mean_npv", "constraints": "cvar_95<=6e7", "feasible": True, "message": "optimum found",
         "paths": 200, "seed": 3, "fresh_seed": 4, "settings": {"starts": 1},
         "params": [{"label": "reserved_share", "param": "reserved_share", "cluster": "all", "lower": 0.2,
                     "upper": 0.9, "current": 0.6, "optimum": 0.8}],
         "optimum_metrics": metrics(2e6, 5.5e7), "current_metrics": metrics(-7e6, 7e7),
         "limits": {"cvar_95": 6e7}, "met": {"cvar_95": True},
         "frontier": {"limit": [5e7, 5.5e7, 6e7], "feasible": [False, True, True], "mix": [[0.9], [0.8], [0.7]],
                      "metrics": [metrics(0.0, 5e7), metrics(2e6, 5.5e7), metrics(3e6, 6e7)], "note": ""}}
    write_optimize(path, {"kind": "optimize", "portfolio": "example-neocloud", "scenario": "mc-explore",
                          "currency": "USD", "model_version": 1}, d, ["a", "b"], np.array([[0.6, 0.6]]))


# ------------------------------------------------------------------ without a browser


def test_missing_extra_is_named_and_nothing_starts(results, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "panel" else real(name, *a))
    r = CliRunner().invoke(main, ["explore", str(results["grid"]), "--no-browser"])
    assert r.exit_code == 2
    assert 'pip install -e ".[explore]"' in r.output and "panel" in r.output
    assert "http://" not in r.output


def test_inputs_that_are_not_the_runs_are_refused(results):
    pytest.importorskip("panel")
    r = CliRunner().invoke(main, ["explore", str(results["grid"]), "--no-browser", "--portfolio", "example",
                                  "-s", "smoke"])
    assert r.exit_code == 2
    assert "not the configuration" in r.output and "http://" not in r.output
    r = CliRunner().invoke(main, ["explore", str(results["mc"]).replace(".h5", ".missing.h5"), "--no-browser"])
    assert r.exit_code == 2 and "no such file" in r.output


def test_the_command_starts_on_a_free_port_and_serves_every_asset(results):
    """The CLI as a user runs it: the address printed, the page and every script and style
    sheet it names served from that address (none from elsewhere), Ctrl-C stops it."""
    pytest.importorskip("panel")
    exe = Path(sys.executable).with_name("stresstest")
    p = subprocess.Popen([str(exe), "explore", str(results["grid"]), "--no-browser"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("explore: http://127.0.0.1:"), (line, p.stderr.read() if p.poll() else "")
        url = line.split()[1]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert port > 0
        html = urllib.request.urlopen(url, timeout=WAIT).read().decode()
        import re

        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any("bokeh" in a for a in assets)
        for a in assets:
            assert not re.match(r"^(https?:)?//", a) or a.startswith(url), a
            if not a.startswith("data:"):
                assert urllib.request.urlopen(url + a.lstrip("./") if not a.startswith("http") else a,
                                              timeout=WAIT).status == 200, a
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=WAIT)
    assert p.returncode == 0


def test_slice_csv_is_the_plane_xarray_reads(results):
    """The grid view's CSV of the plane shown: one row per cell, the held axis in its own
    column, the values exactly as xarray reads them; then after the held axis moves."""
    pytest.importorskip("panel")
    import csv
    import io

    from stresstest.explore import open_source
    from stresstest.explore_grid import GridView

    src = open_source(results["grid"])
    try:
        view = GridView(src)
        ds = xr.open_dataset(results["grid"], engine="h5netcdf")
        for energy in (1.0, 2.0):
            view.on_slider("energy", type("Event", (), {"new": list(ds["energy"].values).index(energy)}))
            rows = list(csv.reader(io.StringIO(view.slice_csv().getvalue())))
            assert rows[0] == ["utilization", "price", "energy", "npv (USD)"]
            assert len(rows) == 1 + 16
            for u, p, e, v in rows[1:]:
                assert float(e) == energy
                assert float(v) == float(ds["npv"].sel(utilization=float(u), price=float(p), energy=energy))
        assert view.csv.filename == "npv_portfolio_utilization_price.csv"
    finally:
        src.f.close()


# ------------------------------------------------------------------ in the browser


def _why_no_browser() -> str | None:
    for module in ("panel", "selenium"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e \".[test,explore]\")"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "chromium not found (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "chromedriver not found (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def server(results):
    why = _why_no_browser()
    if why:
        if os.environ.get("STRESSTEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required here but unavailable: {why}")
        pytest.skip(why)
    from stresstest.explore import make_server, open_source

    # the grid with its input files named: its command lines name them
    sources = {r: open_source(results[r], *(("example", str(results["grid.yaml"])) if r == "grid" else ()))
               for r in ROUTES}
    srv = make_server(sources, port=0)
    srv.start()
    thread = threading.Thread(target=srv.io_loop.start, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}"
    srv.io_loop.add_callback(srv.io_loop.stop)
    thread.join(timeout=10)
    srv.stop()
    for src in sources.values():
        src.f.close()


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,2200",
              "--enable-unsafe-swiftshader",
              # nothing but the loopback address resolves: a request elsewhere fails (and is logged)
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("STRESSTEST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {d}")
    return d


DEEP = """
const [selector] = arguments;
const found = [];
(function walk(root) {
  root.querySelectorAll(selector).forEach((e) => found.push(e));
  root.querySelectorAll('*').forEach((e) => { if (e.shadowRoot) walk(e.shadowRoot); });
})(document);
return found;"""

# where a data point of a named Bokeh figure is on the screen (viewport pixels)
POSITION = """
const [name, x, y] = arguments;
for (const doc of Bokeh.documents) {
  const m = doc.get_model_by_name(name);
  const v = m && Bokeh.index.find_one(m);
  if (!v) continue;
  const r = v.canvas_view.el.getBoundingClientRect();
  return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
}
return null;"""

# the columns of the first renderer of a named figure whose data has `column`
DATA = """
const [name, column] = arguments;
for (const doc of Bokeh.documents) {
  const m = doc.get_model_by_name(name);
  if (!m) continue;
  for (const r of m.renderers) {
    const d = r.data_source && r.data_source.data;
    if (d && column in d) return Array.from(d[column]);
  }
}
return null;"""


def _deep(driver, selector):
    return driver.execute_script(DEEP, selector)


def _wait(what, fn, timeout=WAIT):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _figure_shown(driver, name):
    return driver.execute_script(
        "for (const d of (window.Bokeh ? Bokeh.documents : [])) { const m = d.get_model_by_name(arguments[0]);"
        " if (m && Bokeh.index.find_one(m)) return true; } return false;", name)


def _open(driver, url, figures):
    driver.get(url)
    for name in figures:
        _wait(f"figure {name} at {url}", lambda: _figure_shown(driver, name))


def _readout(driver) -> float:
    return float(_wait("the readout", lambda: _deep(driver, ".readout"))[0].get_attribute("data-value"))


def _click(driver, figure, x, y):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    px, py = driver.execute_script(POSITION, figure, float(x), float(y))
    ab = ActionBuilder(driver)
    ab.pointer_action.move_to_location(int(px), int(py)).click()
    ab.perform()


def _clean_logs(driver, server):
    """No console error, and every request the page made went to the server (or was data:)."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    urls = set()
    for e in driver.get_log("performance"):
        m = json.loads(e["message"])["message"]
        if m["method"] == "Network.requestWillBeSent":
            urls.add(m["params"]["request"]["url"])
    assert urls, "no request seen"
    away = [u for u in urls if not u.startswith((server + "/", "data:", "blob:"))]
    assert not away, away


def test_heatmap_renders_centred_on_zero(results, server, browser, shots):
    _open(browser, f"{server}/grid", ["heatmap"])
    values = _wait("the cells", lambda: browser.execute_script(DATA, "heatmap", "value"))
    ds = xr.open_dataset(results["grid"], engine="h5netcdf")
    plane = ds["npv"].sel(energy=1.0).values / 1e6  # the base case holds energy at 1
    assert len(values) == plane.size == 16
    assert sorted(np.round(values, 6)) == sorted(np.round(plane.ravel(), 6))
    low, high = browser.execute_script(
        "for (const d of Bokeh.documents) { for (const m of d.all_models) {"
        " if (m.type == 'LinearColorMapper') return [m.low, m.high]; } } return null;")
    assert low == pytest.approx(-high) and high == pytest.approx(np.nanmax(np.abs(plane)))
    tools = browser.execute_script("for (const d of Bokeh.documents) { const m = d.get_model_by_name('heatmap');"
                                   " if (m) return m.toolbar.tools.map((t) => t.type); } return null;")
    assert "SaveTool" in tools and "HoverTool" in tools  # the view as PNG; values on hover
    assert _readout(browser) == pytest.approx(float(ds["npv"].sel(utilization=0.0, price=1.0, energy=1.0)), rel=1e-12)
    browser.save_screenshot(str(shots / "grid_heatmap.png"))
    _clean_logs(browser, server)


def test_slider_shows_the_files_value_at_the_point(results, server, browser, shots):
    from selenium.webdriver.common.keys import Keys

    _open(browser, f"{server}/grid", ["heatmap"])
    ds = xr.open_dataset(results["grid"], engine="h5netcdf")
    before = _readout(browser)
    handle = _wait("the energy slider", lambda: _deep(browser, ".noUi-handle"))[0]
    handle.send_keys(Keys.ARROW_RIGHT)  # energy 1.0 -> 1.5
    want = float(ds["npv"].sel(utilization=0.0, price=1.0, energy=1.5))
    got = _wait("the readout to move", lambda: (v := _readout(browser)) != before and v)
    assert got == pytest.approx(want, rel=1e-12)
    plane = ds["npv"].sel(energy=1.5).values / 1e6
    values = _wait("the new plane", lambda: (v := browser.execute_script(DATA, "heatmap", "value"))
                   and sorted(np.round(v, 6)) == sorted(np.round(plane.ravel(), 6)) and v)
    assert len(values) == 16
    browser.save_screenshot(str(shots / "grid_slider_moved.png"))
    _clean_logs(browser, server)


def test_click_shows_the_statement_and_the_command_that_reproduces_it(results, server, browser, shots):
    _open(browser, f"{server}/grid", ["heatmap"])
    _click(browser, "heatmap", -0.1, 0.8)
    ds = xr.open_dataset(results["grid"], engine="h5netcdf")
    want = float(ds["npv"].sel(utilization=-0.1, price=0.8, energy=1.0))
    span = _wait("the statement", lambda: _deep(browser, ".statement-npv"))[0]
    assert float(span.get_attribute("data-value")) == pytest.approx(want, rel=1e-9)
    assert float(_deep(browser, ".file-npv")[0].get_attribute("data-value")) == want
    assert _readout(browser) == want
    command = _deep(browser, "pre.command")[0].get_attribute("textContent")
    words = shlex.split(command)
    assert words[:3] == ["stresstest", "cashflows", "example"]
    assert "--at" in words and "utilization=-0.1" in words and "price=0.8" in words and "energy=1.0" in words
    r = CliRunner().invoke(main, [*words[1:], "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["outputs"]["portfolio"]["npv"] == pytest.approx(want, rel=1e-9)
    # the statement's discounted cash flows add up to the file's NPV (an independent sum)
    st = json.loads(r.output)["scopes"]["portfolio"]
    assert sum(st["discounted_cf"]) == pytest.approx(want, rel=1e-9)
    browser.save_screenshot(str(shots / "grid_point_statement.png"))
    _clean_logs(browser, server)


def test_sensitivities_show_the_tornado_at_the_point(results, server, browser, shots):
    _open(browser, f"{server}/sens", ["heatmap"])
    _click(browser, "heatmap", 0.1, 1.0)
    _wait("the tornado", lambda: _figure_shown(browser, "tornado"))
    ds = xr.open_dataset(results["sens"], engine="h5netcdf")
    m = ds["npv_per_pct"].sel(utilization=0.1, price=1.0).values
    right = browser.execute_script(DATA, "tornado", "right")
    assert max(np.abs(right)) == pytest.approx(10 * np.nanmax(np.abs(m)) / 1e6, rel=1e-9)
    browser.save_screenshot(str(shots / "sensitivities_tornado.png"))
    _clean_logs(browser, server)


def test_named_monte_carlo_and_breakeven_views_render(results, server, browser, shots):
    _open(browser, f"{server}/named", ["line"])
    ds = xr.open_dataset(results["named"], engine="h5netcdf")
    bars = browser.execute_script(DATA, "line", "value")
    assert bars == pytest.approx((ds["npv"].values / 1e6).tolist(), rel=1e-12)
    _click(browser, "line", 0, bars[0] / 2)  # the first set's bar
    span = _wait("the named set's statement", lambda: _deep(browser, ".statement-npv"))[0]
    assert float(span.get_attribute("data-value")) == pytest.approx(float(ds["npv"].values[0]), rel=1e-9)
    browser.save_screenshot(str(shots / "named.png"))
    _clean_logs(browser, server)

    _open(browser, f"{server}/mc", ["histogram", "cdf", "fan", "tails"])
    counts = browser.execute_script(DATA, "histogram", "count")
    paths = xr.open_dataset(results["mc"], group="paths", engine="h5netcdf")
    assert sum(counts) == np.isfinite(paths["npv"].values).sum() == 300
    browser.save_screenshot(str(shots / "montecarlo.png"))
    _clean_logs(browser, server)

    _open(browser, f"{server}/be", ["breakeven"])
    be = xr.open_dataset(results["be"], engine="h5netcdf")
    ys = browser.execute_script(DATA, "breakeven", "y")
    order = np.argsort(be["utilization"].values)
    assert ys == pytest.approx(be["breakeven"].values[order, 0].tolist(), rel=1e-12, nan_ok=True)
    browser.save_screenshot(str(shots / "breakeven.png"))
    _clean_logs(browser, server)


def test_ranked_drivers_and_frontier_render(results, server, browser, shots):
    _open(browser, f"{server}/rank", ["drivers"])
    rank = xr.open_dataset(results["rank"], engine="h5netcdf")
    bars = browser.execute_script(DATA, "drivers", "shapley")
    assert bars[::-1] == pytest.approx(sorted(100 * rank["shapley"].values, reverse=True), rel=1e-12)
    browser.save_screenshot(str(shots / "rank_drivers.png"))
    _clean_logs(browser, server)

    _open(browser, f"{server}/opt", ["frontier", "mix"])
    opt = xr.open_dataset(results["opt"], engine="h5netcdf")
    ok = opt["frontier_feasible"].values.astype(bool)
    m = opt["frontier_metrics"].sel(sample="in_sample")
    assert browser.execute_script(DATA, "frontier", "x") == pytest.approx(
        (m.sel(metric="cvar_95").values[ok] / 1e6).tolist(), rel=1e-12)
    assert browser.execute_script(DATA, "frontier", "y") == pytest.approx(
        (m.sel(metric="mean_npv").values[ok] / 1e6).tolist(), rel=1e-12)
    browser.save_screenshot(str(shots / "optimize_frontier.png"))
    _clean_logs(browser, server)
