"""Tables and figures (issue 24): what `show`, `run`, `inspect`, `sensitivities` print and
what `report` draws. The figures are checked as matplotlib objects (Agg backend): the
colour map's norm, titles inside the figure, legend texts, marker positions; not pixels."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stresstest import figures
from stresstest.backends import jax_importable
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.figures import make_report
from stresstest.kernels.params import PARAM_NAMES
from stresstest.presets import list_presets
from stresstest.report import fmt

needs_jax = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")


def _ok(args, **kw):
    r = CliRunner().invoke(main, [str(a) for a in args], **kw)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture()
def drawn(monkeypatch):
    """{png name: the matplotlib Figure} of every figure make_report saves (kept, not cleared)."""
    kept = {}

    def keep(fig, folder, name, written):
        fig.savefig(folder / name, dpi=figures.DPI, format="png")
        written.append(name)
        kept[name] = fig

    monkeypatch.setattr(figures, "_save", keep)
    return kept


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "smoke.h5"
    _ok(["run", "-s", "smoke", "-o", out, "--backend", "numpy", "-q"])
    return out


def _inside(fig, artist) -> bool:
    """Whether an artist, as drawn, lies wholly inside the figure (not clipped by its edge)."""
    renderer = fig.canvas.get_renderer()
    box = artist.get_window_extent(renderer)
    w, h = fig.canvas.get_width_height()
    return box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= w + 0.5 and box.y1 <= h + 0.5


# --------------------------------------------------------------------------- 1. show


@pytest.mark.parametrize("width", [120, 80])
def test_show_never_cuts_a_name_and_says_where_values_come_from(width):
    """Every parameter and cluster name whole at 120 and 80 columns (no ellipsis, no line
    wider than the terminal); the origin is a mark with a legend in words, never a letter
    after the number that reads as a unit ("3 m")."""
    text = _ok(["show"], env={"COLUMNS": str(width)})
    pf = load_portfolio(list_presets()["example"])
    assert "…" not in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("warning:")) <= width
    words = set(re.findall(r"[\w.-]+", text))
    for name in [*PARAM_NAMES, *pf.cluster_names]:
        assert name in words, name
    assert not re.search(r"\d [md] ", text) and not re.search(r"never [md]\b", text)
    assert "from the file's defaults: block" in text and "the model's default (not in the file)" in text
    assert "given for the cluster in the file" in text
    # the marks: pue of ashburn-h100 comes from defaults:, kw_per_gpu's idle_power_fraction from the model
    row = next(line for line in text.splitlines() if line.startswith("│ idle_power_fraction "))
    assert "0.3 ‡" in row
    row = next(line for line in text.splitlines() if line.startswith("│ pue "))
    assert "1.3 †" in row
    data = json.loads(_ok(["show", "--json"]))
    assert set(data["origin_legend"]) == {"cluster", "defaults", "model"}


def test_show_prints_whole_numbers_in_full():
    text = _ok(["show"], env={"COLUMNS": "200"})
    assert "2,000,000" in text and "2e+06" not in text  # dublin-b200's capex_fixed


# --------------------------------------------------------------------------- 2. run's summary


def test_one_point_worst_for_every_output_is_one_row(tmp_path):
    out = _ok(["run", "-s", "smoke", "-o", tmp_path / "g.h5", "--backend", "numpy"], env={"COLUMNS": "160"})
    cases = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    cases = [c for c in cases if c]
    assert cases == ["base case (no shock)", "worst NPV, IRR, ROI", "best NPV, IRR, ROI"]
    data = json.loads(_ok(["run", "-s", "smoke", "-o", tmp_path / "j.h5", "--backend", "numpy", "--json"]))
    rows = data["rows"]
    assert [r["case"] for r in rows] == cases
    assert rows[1]["outputs"] == ["npv", "irr", "roi"] and rows[1]["point"] == {"utilization": -0.2, "price": 0.5}


def test_cases_merge_only_where_the_point_is_the_same():
    from stresstest.report import merge_cases

    assert merge_cases("worst", [("npv", 5), ("irr", 7), ("roi", 5)]) == [
        ("worst NPV, ROI", ["npv", "roi"], 5), ("worst IRR", ["irr"], 7)]
    assert merge_cases("best", []) == []


# --------------------------------------------------------------------------- 3. inspect


def test_inspect_prints_numbers_as_run_does(smoke, tmp_path):
    with h5py.File(smoke) as f:
        base = {k: float(f["base"][k][()]) for k in ("npv", "irr", "roi")}
        npv = f["npv"][()]
    text = _ok(["inspect", smoke], env={"COLUMNS": "160"})
    row = next(line for line in text.splitlines() if "base case (no shock)" in line)
    for k, v in base.items():
        assert fmt(k, v) in row, (k, row)
    assert re.fullmatch(r"-?[\d,]+\.\d M", fmt("npv", base["npv"]))  # "-44.1 M"
    worst = next(line for line in text.splitlines() if "worst NPV, IRR, ROI" in line)
    assert fmt("npv", float(npv.min())) in worst
    assert not re.search(r"\de[+-]\d\d", text) and "0.0556" not in text  # no raw floats
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario: {kind: montecarlo, paths: 300, seed: 3}\n")
    mc = tmp_path / "mc.h5"
    _ok(["run", "-s", sc, "-o", mc, "--backend", "numpy", "-q"])
    with h5py.File(mc) as f:
        var95, p_neg = float(f["var_95"][()]), float(f["prob_npv_negative"][()])
    text = _ok(["inspect", mc], env={"COLUMNS": "160"})
    assert re.search(rf"VaR 95 %\s*│\s*{re.escape(fmt('var_95', var95))}", text)
    assert f"{100 * p_neg:.2f} %" in text


def test_fmt_covers_every_kind_of_number():
    assert fmt("npv", -44.1e6) == "-44.1 M" and fmt("revenue", 1.5e9) == "1,500.0 M"
    assert fmt("irr", 0.0557) == "5.57 %" and fmt("equity_irr", 0.1) == "10.00 %" and fmt("roi", 0.144) == "14.4 %"
    assert fmt("var_95", 12.3e6) == "12.3 M" and fmt("cluster_cvar_99", 1e6) == "1.0 M"
    assert fmt("prob_npv_negative", 0.5) == "50.00 %" and fmt("min_dscr", 1.234) == "1.23"
    assert fmt("npv", None) == "-" and fmt("npv", float("nan")) == "nan"


# --------------------------------------------------------------------------- 4. heatmaps


def test_npv_heatmap_is_diverging_at_zero_with_the_base_case_marked(smoke, tmp_path, drawn):
    from matplotlib.colors import TwoSlopeNorm

    done = make_report(smoke, tmp_path / "rep")
    for name, center in (("npv_heatmap.png", 0.0), ("irr_heatmap.png", 12.0)):  # the example's rate: 12 %
        ax = drawn[name].axes[0]
        mesh = ax.collections[0]
        assert isinstance(mesh.norm, TwoSlopeNorm) and mesh.norm.vcenter == pytest.approx(center), name
        assert mesh.get_cmap().name.startswith("RdBu")
        assert mesh.norm.vmin < center < mesh.norm.vmax
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "base case (no shock)" in labels, labels
        star = next(line for line in ax.get_lines() if line.get_marker() == "*")
        assert (star.get_xdata()[0], star.get_ydata()[0]) == (0.0, 1.0)  # utilization 0, price 1
    assert done["tables"]["heatmap"]["base_case"] == [0.0, 1.0]
    assert "base case" in done["html"].read_text()


def test_heatmap_contour_at_npv_zero_and_no_star_off_the_plane(tmp_path, drawn):
    from matplotlib.colors import TwoSlopeNorm

    sc = tmp_path / "g.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n    - {shock: utilization, values: [-0.2, 0.0, 0.1]}\n"
                  "    - {shock: price, values: [0.6, 1.0, 1.6]}\n    - {shock: energy, values: [1.5, 2.0]}\n")
    out = tmp_path / "g.h5"
    _ok(["run", "-s", sc, "-o", out, "--backend", "numpy", "-q"])
    with h5py.File(out) as f:
        npv = f["npv"][:, :, 0]
    assert npv.min() < 0 < npv.max()  # the plane crosses NPV = 0
    done = make_report(out, tmp_path / "rep")
    assert done["held"] == {"energy": 1.5}  # energy shocked: the base case is not in this plane
    ax = drawn["npv_heatmap.png"].axes[0]
    assert isinstance(ax.collections[0].norm, TwoSlopeNorm) and ax.collections[0].norm.vcenter == 0.0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "NPV = 0" in labels and "base case (no shock)" not in labels
    assert not [line for line in ax.get_lines() if line.get_marker() == "*"]
    contour = next(c for c in ax.get_children() if type(c).__name__.endswith("ContourSet"))
    assert list(contour.levels) == [0.0]
    assert done["tables"]["heatmap"]["base_case"] is None


# --------------------------------------------------------------------------- 5. tornado title


@needs_jax
def test_tornado_title_is_not_clipped(tmp_path, drawn):
    sc = tmp_path / "g.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n    - {shock: utilization, values: [-0.1, 0.0]}\n"
                  "    - {shock: price, values: [1.0, 1.2]}\n    - {shock: energy, values: [1.0]}\n"
                  "    - {shock: obsolescence, values: [0]}\n"
                  "    - {param: next_gen_utilization_drop, op: scale, values: [1.0]}\n")
    out = tmp_path / "s.h5"
    _ok(["run", "-s", sc, "-o", out, "--sensitivities", "-q"])
    make_report(out, tmp_path / "rep")
    fig = drawn["tornado.png"]
    ax = fig.axes[0]
    fig.canvas.draw()
    assert "next_gen_utilization_drop = 1" in ax.get_title().replace("\n", " ")
    assert _inside(fig, ax.title)
    for label in ax.get_yticklabels():
        assert _inside(fig, label), label.get_text()


# --------------------------------------------------------------------------- 6. VaR sign


def test_cdf_legend_gives_var_as_the_terminal_does(tmp_path, drawn):
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario: {kind: montecarlo, paths: 600, seed: 5}\n")
    out = tmp_path / "mc.h5"
    text = _ok(["run", "-s", sc, "-o", out, "--backend", "numpy", "--save-paths"], env={"COLUMNS": "160"})
    with h5py.File(out) as f:
        var95, cvar95 = float(f["var_95"][()]), float(f["cvar_95"][()])
        p5 = float(f["npv"][list(f["statistic"][()]).index(b"p5")])
    assert var95 > 0  # the example loses money at P5: VaR is a positive loss
    assert re.search(rf"VaR 95 %\s*│\s*{re.escape(fmt('npv', var95))}", text)  # the terminal
    make_report(out, tmp_path / "rep")
    for name in ("npv_cdf.png", "npv_hist.png"):
        ax = drawn[name].axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        want = f"VaR 95 % = {fmt('npv', var95)} (NPV at P5 = {fmt('npv', -var95)})"
        assert want in labels, labels
        assert f"CVaR 95 % = {fmt('npv', cvar95)} (mean NPV of the worst 5 % = {fmt('npv', -cvar95)})" in labels
        line = next(ln for ln in ax.get_lines() if ln.get_label() == want)
        assert line.get_xdata()[0] == pytest.approx(-var95 / 1e6)
        assert line.get_xdata()[0] == pytest.approx(p5 / 1e6, rel=2e-3)  # the line stands at P5


# --------------------------------------------------------------------------- 7. one mailable page


def test_report_html_embeds_its_images(smoke, tmp_path):
    import base64

    done = make_report(smoke, tmp_path / "rep")
    page = done["html"].read_text()
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) == len(done["figures"]) == 2
    for uri, png in zip(imgs, done["figures"]):
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]) == png.read_bytes()
    refs = re.findall(r'\b(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', page, re.I)
    assert refs and all(r.startswith("data:") for r in refs), [r[:40] for r in refs]
    assert "url(" not in page.lower()


# --------------------------------------------------------------------------- 8. named scenarios


def test_named_bar_chart_is_named_and_titled(tmp_path, drawn):
    out = tmp_path / "named.h5"
    _ok(["run", "-s", "named", "-o", out, "--backend", "numpy", "-q"])
    done = make_report(out, tmp_path / "rep")
    assert {p.name for p in done["figures"]} == {"named_npv.png", "named_irr.png"}
    ax = drawn["named_npv.png"].axes[0]
    assert ax.get_title() == "NPV by named scenario vs base case"
    assert drawn["named_irr.png"].axes[0].get_title() == "IRR by named scenario vs base case"
    legend = [t.get_text() for t in drawn["named_npv.png"].legends[0].get_texts()]
    with h5py.File(out) as f:
        base = float(f["base/npv"][()])
        npv = f["npv"][()]
    assert f"base case ({base / 1e6:,.1f})" in legend
    # each bar runs from the base case to the scenario's NPV
    bars = ax.patches
    assert len(bars) == len(npv)
    for bar, v in zip(bars, npv):
        assert bar.get_x() == pytest.approx(base / 1e6)
        assert bar.get_x() + bar.get_width() == pytest.approx(v / 1e6)
    assert "along scenario" not in done["html"].read_text()


# --------------------------------------------------------------------------- 9. MC sensitivities


@pytest.fixture(scope="module")
def mc_sens(tmp_path_factory):
    if not jax_importable():
        pytest.skip("jax is not installed")
    """One run (a compile of the paths and of the reverse pass), its terminal summary as
    `run` prints it at 160 columns and its `run --json` body, both from the run's result
    (the command line's own printing of a Monte Carlo run with --sensitivities: the README's
    `stresstest run -s my_mc.yaml --sensitivities`, tests/test_readme.py)."""
    import io

    from rich.console import Console

    from stresstest.presets import resolve
    from stresstest.report import print_mc_summary, run_json
    from stresstest.runner import run_scenario

    d = tmp_path_factory.mktemp("mcs")
    (d / "mc.yaml").write_text("scenario: {kind: montecarlo, paths: 256, seed: 4}\n")
    result = run_scenario(resolve(None, "example"), str(d / "mc.yaml"), d / "mc.h5", backend="jax",
                          progress=False, sensitivities=True)
    out = io.StringIO()
    print_mc_summary(result, Console(file=out, width=160))
    data = json.loads(json.dumps(run_json(result)))
    return d / "mc.h5", out.getvalue(), data


def test_mc_sensitivities_in_the_terminal_per_one_percent(mc_sens):
    path, text, data = mc_sens
    pf = load_portfolio(list_presets()["example"])
    with h5py.File(path) as f:
        g = f["grad_mean_npv"][()]
        gc = f["grad_cvar_95"][()]
    vals = np.array([[c[k] for k in PARAM_NAMES] for c in pf.clusters])
    with np.errstate(invalid="ignore"):
        per = np.where(np.isfinite(vals), g * vals / 100, 0.0)
    c, p = np.unravel_index(np.argmax(np.abs(per)), per.shape)
    rows = data["sensitivities"]["rows"]
    top = rows[0] if rows[0]["parameter"] != "discount_rate" else rows[1]
    assert (top["cluster"], top["parameter"]) == (pf.cluster_names[c], PARAM_NAMES[p])
    assert top["mean_npv"] == pytest.approx(per[c, p], rel=1e-6)
    assert top["cvar_95"] == pytest.approx(gc[c, p] * vals[c, p] / 100, rel=1e-6)
    means = [abs(r["mean_npv"]) for r in rows]
    assert means == sorted(means, reverse=True)
    assert "pathwise sensitivities" in text
    line = next(ln for ln in text.splitlines() if PARAM_NAMES[p] in ln and pf.cluster_names[c] in ln)
    assert f"{per[c, p] / 1e6:+,.2f} M" in line


def test_mc_sensitivities_bar_chart_in_the_report(mc_sens, tmp_path, drawn):
    path, _, data = mc_sens
    done = make_report(path, tmp_path / "rep")
    assert "mc_sensitivities.png" in {p.name for p in done["figures"]}
    ax = drawn["mc_sensitivities.png"].axes[0]
    rows = done["tables"]["sensitivities"]
    assert [(r["cluster"], r["parameter"]) for r in rows[:5]] == \
        [(r["cluster"], r["parameter"]) for r in data["sensitivities"]["rows"][:5]]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0].startswith(f"{rows[0]['cluster']} · {rows[0]['parameter']}")
    assert ax.patches[0].get_width() == pytest.approx(rows[0]["mean_npv"] / 1e6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "Δ mean NPV" and labels[1].startswith("Δ CVaR 95 %")
    page = done["html"].read_text()
    assert "Sensitivities (pathwise)" in page and "does not chart them" not in page


# --------------------------------------------------------------------------- 10. step parameters


def test_tornado_footnote_for_a_differing_row(monkeypatch):
    from rich.console import Console

    from stresstest import tornado as tm

    pf = load_portfolio(list_presets()["example"])
    rows = [{"parameter": "pue", "value": None, "linear_down": 1e6, "exact_down": -1e6, "linear_up": -1e6,
             "exact_up": 1e6, "swing": 1e6, "step": False, "linear_unreliable": "linear and exact differ in sign"}]
    console = Console(width=100, record=True)
    tm.print_tornado(pf, {"base_npv": -44e6, "move": 0.1, "scopes": {"portfolio": rows}}, 10, console)
    text = console.export_text()
    assert "pue†" in text and f"† {tm.DIFFER_NOTE}" in text and "step parameter" not in text


@needs_jax
def test_tornado_figure_marks_step_parameters(smoke_sensitivities, tmp_path, drawn):
    done = make_report(smoke_sensitivities, tmp_path / "rep")
    rows = done["tables"]["tornado"]["rows"]
    assert any(r["step"] for r in rows), [r["parameter"] for r in rows]  # phoenix-b200 · delivery_months
    fig = drawn["tornado.png"]
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    for r, t in zip(rows, ticks):
        assert t.endswith("*") == r["step"], t
    assert "linear estimate unreliable: step parameter" in fig.get_supxlabel()
    assert "linear estimate unreliable: step parameter" in done["html"].read_text()


# --------------------------------------------------------------------------- old files


def test_reports_open_files_without_the_newer_attributes(smoke, tmp_path, drawn):
    """A grid file whose axes carry no neutral/op attributes (older writers), and a Monte
    Carlo file with gradients but no configuration values: the report draws what it can."""
    import shutil

    old = tmp_path / "old.h5"
    shutil.copy(smoke, old)
    with h5py.File(old, "r+") as f:
        for a in ("utilization", "price"):
            for k in ("neutral", "op", "targets"):
                if k in f[a].attrs:
                    del f[a].attrs[k]
    done = make_report(old, tmp_path / "rep")
    assert done["tables"]["heatmap"]["base_case"] is None  # no neutral: no star, no failure
    assert {p.name for p in done["figures"]} == {"npv_heatmap.png", "irr_heatmap.png"}

    mc = tmp_path / "mc.h5"
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario: {kind: montecarlo, paths: 200, seed: 1}\n")
    _ok(["run", "-s", sc, "-o", mc, "--backend", "numpy", "-q"])
    with h5py.File(mc, "r+") as f:
        f["parameter"] = np.array([n.encode() for n in PARAM_NAMES])
        f["grad_mean_npv"] = np.ones((6, len(PARAM_NAMES)))
        f["grad_mean_npv_discount_rate"] = 1.0
        cfg = json.loads(f.attrs["config"])
        cfg["portfolio"] = {}
        f.attrs["config"] = json.dumps(cfg)
    done = make_report(mc, tmp_path / "rep-mc")
    assert "mc_sensitivities.png" not in {p.name for p in done["figures"]}
    assert any("no configuration" in n for n in done["notes"])
