"""The Monte Carlo view of `stresstest explore`.

An output and a scope (the portfolio or a cluster): its histogram over the paths (from
the per-path values of `run --save-paths`, read a chunk at a time) and its CDF, empirical
or, without the paths, through the quantile statistics; for the NPV, VaR and CVaR at 95 %
and 99 % marked where they stand (at minus their value: they are losses, as `run` prints
them) and the mean. Then the fan chart of the cumulative cash flow, each cluster's tail
contribution (its mean NPV over the portfolio's worst 5 % and 1 % of paths), the pathwise
sensitivities of a run with --sensitivities, and the statistics and risk tables of the
report (fig_montecarlo). The ranked drivers and the frontier of the same scenario, from
the files of `rank` and `optimize`, are explore_decide's views.
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool, Span
from bokeh.plotting import figure
from bokeh.transform import dodge

from .explore_source import TABLE_CSS, TOOLS, Source, csv_text, display, download, number
from . import fig_montecarlo
from .fig_read import CHUNK_ELEMS, TORNADO_TOP, attr
from .kernels.params import OUTPUTS
from .outputs import CLUSTER_DIM, LEVELS
from .statement import PORTFOLIO_SCOPE

BINS = 60  # the histogram's
FINE_BINS = 2000  # the empirical CDF's
PATHS = "paths"  # the group of --save-paths
COLOURS = {"mean": "#21918c", 95: "black", 99: "#b2182b"}


class MonteCarloView:
    def __init__(self, src: Source):
        self.src = src
        f = src.f
        self.paths = f[PATHS] if PATHS in f else None
        self.clusters = src.clusters()
        self.outputs = [o for o in OUTPUTS if o in f]
        self.output = pn.widgets.Select(label="output", value="npv", options=self.outputs)
        self.scope = pn.widgets.Select(label="cluster", value=PORTFOLIO_SCOPE,
                                       options=[PORTFOLIO_SCOPE, *self.clusters])
        self.hist = ColumnDataSource({k: [] for k in ("left", "right", "count", "text")})
        self.cdf = ColumnDataSource({"x": [], "p": []})
        self.marks = {k: Span(dimension="height", location=0, line_width=2, line_color=c,
                              line_dash="solid" if k == "mean" else "dashed") for k, c in COLOURS.items()}
        self.cvar_marks = {k: Span(dimension="height", location=0, line_width=2, line_color=COLOURS[k],
                                   line_dash="dotted") for k in (95, 99)}
        self.marks_text = pn.pane.HTML(sizing_mode="stretch_width")
        self.hist_fig = self.histogram_figure() if self.paths is not None else None
        self.cdf_fig = self.cdf_figure()
        self.output.param.watch(lambda e: self.refresh(), "value")
        self.scope.param.watch(lambda e: self.refresh(), "value")
        self.refresh()

    # ---------------------------------------------------------------- the distribution

    def unit(self) -> tuple[float, str]:
        return display(self.output.value, self.src.units(self.output.value), self.src.currency)

    def stats(self) -> dict[str, float]:
        o = self.output.value
        if self.scope.value == PORTFOLIO_SCOPE:
            return fig_montecarlo.statistics(self.src.f, o)
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in self.src.f["statistic"][()]]
        row = self.src.read(f"{CLUSTER_DIM}_{o}", (self.clusters.index(self.scope.value),))
        return dict(zip(names, row.tolist()))

    def path_values(self):
        """The chosen output's per-path values, a chunk at a time (finite values only)."""
        o = self.output.value
        if self.scope.value == PORTFOLIO_SCOPE:
            ds, col = self.paths[o], None
        else:
            ds, col = self.paths[f"{CLUSTER_DIM}_{o}"], self.clusters.index(self.scope.value)
        for i in range(0, ds.shape[0], CHUNK_ELEMS):
            a = np.asarray(ds[i:i + CHUNK_ELEMS] if col is None else ds[i:i + CHUNK_ELEMS, col], dtype=np.float64)
            yield a[np.isfinite(a)]

    def histograms(self, st: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(edges, counts, fine edges, fine counts, finite paths) over the statistics' min..max."""
        lo, hi = st.get("min", math.nan), st.get("max", math.nan)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            lo, hi = (lo - 0.5, lo + 0.5) if math.isfinite(lo) else (0.0, 1.0)
        edges, fine = np.linspace(lo, hi, BINS + 1), np.linspace(lo, hi, FINE_BINS + 1)
        counts, fine_counts, n = np.zeros(BINS), np.zeros(FINE_BINS), 0
        for a in self.path_values():
            counts += np.histogram(a, edges)[0]
            fine_counts += np.histogram(a, fine)[0]
            n += a.size
        return edges, counts, fine, fine_counts, n

    def risk(self) -> dict:
        """VaR and CVaR of the chosen scope's NPV at each level (losses), where the file has them."""
        prefix = "" if self.scope.value == PORTFOLIO_SCOPE else f"{CLUSTER_DIM}_"
        out = {}
        for lvl in (round(100 * q) for q in LEVELS):
            for what in ("var", "cvar"):
                name = f"{prefix}{what}_{lvl}"
                if name in self.src.f:
                    v = self.src.read(name)
                    out[(what, lvl)] = float(v if v.ndim == 0 else v[self.clusters.index(self.scope.value)])
        return out

    def refresh(self) -> None:
        o = self.output.value
        factor, unit = self.unit()
        st = self.stats()
        npv = o == "npv"
        if self.paths is not None:
            edges, counts, fine, fine_counts, n = self.histograms(st)
            e = edges * factor
            self.hist.data = {"left": e[:-1], "right": e[1:], "count": counts,
                              "text": [f"{number(a, unit)} .. {number(b, unit)}" for a, b in zip(e[:-1], e[1:])]}
            self.cdf.data = {"x": fine * factor, "p": np.concatenate([[0.0], np.cumsum(fine_counts)]) / max(n, 1)}
            self.hist_fig.title.text = f"{o} of the {self.scope.value} over {n:,} paths"
            self.hist_fig.xaxis.axis_label = f"{o} ({unit})"
        else:
            qs = [(q, st.get(k)) for q, k in ((0.01, "p1"), (0.05, "p5"), (0.5, "p50"), (0.95, "p95"), (0.99, "p99"))]
            qs = [(q, v) for q, v in qs if v is not None and math.isfinite(v)]
            self.cdf.data = {"x": [v * factor for _, v in qs], "p": [q for q, _ in qs]}
        self.cdf_fig.title.text = (f"CDF of the {o} of the {self.scope.value}"
                                   + ("" if self.paths is not None else
                                      " through its quantiles p1, p5, p50, p95, p99 (run --save-paths for "
                                      "the empirical CDF and the histogram)"))
        self.cdf_fig.xaxis.axis_label = f"{o} ({unit})"
        risk = self.risk() if npv else {}
        words = []
        mean = st.get("mean", math.nan)
        self.marks["mean"].location = mean * factor if math.isfinite(mean) else None
        words.append(f'<span style="color:{COLOURS["mean"]}">mean {number(mean * factor, unit)}</span>')
        for lvl in (95, 99):
            var, cvar = risk.get(("var", lvl)), risk.get(("cvar", lvl))
            self.marks[lvl].location = -var * factor if var is not None and math.isfinite(var) else None
            self.cvar_marks[lvl].location = -cvar * factor if cvar is not None and math.isfinite(cvar) else None
            if var is not None:
                words.append(f'<span style="color:{COLOURS[lvl]}">VaR {lvl} % = {number(var * factor, unit)} '
                             f'(dashed, at NPV {number(-var * factor, unit)})</span>')
            if cvar is not None:
                words.append(f'<span style="color:{COLOURS[lvl]}">CVaR {lvl} % = {number(cvar * factor, unit)} '
                             f'(dotted, the mean NPV of the worst {100 - lvl} %)</span>')
        self.marks_text.object = "<p>" + "; ".join(words) + "</p>"

    def histogram_figure(self):
        p = figure(name="histogram", width=640, height=360, tools=TOOLS, toolbar_location="above", y_axis_label="paths")
        r = p.quad(left="left", right="right", bottom=0, top="count", source=self.hist, fill_color="#3b528b",
                   line_color="white", fill_alpha=0.85)
        p.add_tools(HoverTool(renderers=[r], tooltips=[("bin", "@text"), ("paths", "@count{0,0}")]))
        self.add_marks(p)
        return p

    def cdf_figure(self):
        p = figure(name="cdf", width=640, height=360, tools=TOOLS, toolbar_location="above",
                   y_axis_label="probability ≤ x", y_range=(0, 1))
        r = p.line("x", "p", source=self.cdf, line_width=2, color="#3b528b")
        if self.paths is None:
            p.scatter("x", "p", source=self.cdf, size=8, color="#3b528b")
        p.add_tools(HoverTool(renderers=[r], tooltips=[("x", "@x{0,0.[00]}"), ("P(≤ x)", "@p{0.000}")], mode="vline"))
        p.add_layout(Span(dimension="width", location=0.05, line_color="#888888", line_width=1))
        self.add_marks(p)
        return p

    def add_marks(self, p) -> None:
        for s in (*self.marks.values(), *self.cvar_marks.values()):
            p.add_layout(s)

    def distribution_csv(self) -> str:
        factor, unit = self.unit()
        o = self.output.value
        if self.paths is None:
            return csv_text([f"{o} ({unit})", "probability"], zip(self.cdf.data["x"], self.cdf.data["p"]))
        d = self.hist.data
        return csv_text([f"bin low ({unit})", f"bin high ({unit})", "paths"],
                        ([float(a), float(b), float(c)] for a, b, c in zip(d["left"], d["right"], d["count"])))

    # ---------------------------------------------------------------- the other figures

    def fan(self):
        """The cumulative cash flow's fan: 5-95 % and 25-75 % bands, the median and the mean."""
        f = self.src.f
        fan = self.src.read("cumulative_cf_fan") / 1e6
        qv = self.src.read("fan_quantile") if "fan_quantile" in f else np.array([0.05, 0.25, 0.5, 0.75, 0.95])
        col = {round(float(q), 2): j for j, q in enumerate(qv)}
        months = self.src.read("month") if "month" in f else np.arange(fan.shape[0], dtype=float)
        p = figure(name="fan", width=640, height=380, tools=TOOLS, toolbar_location="above", x_axis_label="month",
                   y_axis_label=f"cumulative cash flow (M {self.src.currency})",
                   title="Cumulative portfolio cash flow over the paths")
        if 0.05 in col and 0.95 in col:
            p.varea(months, fan[:, col[0.05]], fan[:, col[0.95]], color="#b5de2b", alpha=0.45, legend_label="5–95 %")
        if 0.25 in col and 0.75 in col:
            p.varea(months, fan[:, col[0.25]], fan[:, col[0.75]], color="#35b779", alpha=0.6, legend_label="25–75 %")
        if 0.5 in col:
            r = p.line(months, fan[:, col[0.5]], line_width=2, color="#31688e", legend_label="median")
            p.add_tools(HoverTool(renderers=[r], tooltips=[("month", "@x"), ("median (M)", "@y{0,0.0}")], mode="vline"))
        if "cumulative_cf_mean" in f:
            p.line(months, self.src.read("cumulative_cf_mean") / 1e6, line_width=1.5, color="black",
                   line_dash="dashed", legend_label="mean")
        p.add_layout(Span(dimension="width", location=0, line_color="#666666", line_width=1))
        p.legend.location = "top_left"
        def csv():
            return csv_text(["month", *(f"q{q:g} (USD)" for q in qv)],
                            ([float(m), *map(float, row * 1e6)] for m, row in zip(months, fan)))

        return pn.Column(pn.pane.Bokeh(p), download("Download the fan (CSV)", "cumulative_cf_fan.csv", csv))

    def tails(self):
        """Each cluster's mean NPV over the portfolio's worst 5 % and 1 % of paths."""
        have = [lvl for lvl in (95, 99) if f"tail_contribution_{lvl}" in self.src.f]
        if not have or not self.clusters:
            return None
        rows = {lvl: self.src.read(f"tail_contribution_{lvl}") for lvl in have}
        p = self.bars("tails", "Tail contributions: each cluster's mean NPV over the portfolio's worst paths",
                      f"mean NPV in the portfolio's tail (M {self.src.currency})", self.clusters,
                      {f"worst {100 - lvl} %": rows[lvl] / 1e6 for lvl in have})
        def csv():
            return csv_text(["cluster", *(f"tail_contribution_{lvl} (USD)" for lvl in have)],
                            ([c, *(float(rows[lvl][i]) for lvl in have)] for i, c in enumerate(self.clusters)))

        return pn.Column(pn.pane.Bokeh(p), download("Download the tail contributions (CSV)",
                                                    "tail_contributions.csv", csv))

    def sensitivities(self, tables: dict):
        """The pathwise sensitivities of a run with --sensitivities (the report's rows:
        the change of the mean NPV and of CVaR 95 for +1 % of one value), the top ones as bars."""
        if "grad_mean_npv" not in self.src.f:
            return None
        fig_montecarlo.sensitivities(self.src.f, lambda fig, name: None, [], {}, tables, self.src.currency,
                                     self.clusters)
        top = [r for r in tables.get("sensitivities", []) if math.isfinite(r["mean_npv"])][:TORNADO_TOP]
        if not top:
            return None
        series = {"Δ mean NPV": np.array([r["mean_npv"] for r in top]) / 1e6}
        if all("cvar_95" in r for r in top):
            series["Δ CVaR 95 % (a loss: right is worse)"] = np.array([r["cvar_95"] for r in top]) / 1e6
        return pn.pane.Bokeh(self.bars(
            "sensitivities", f"Pathwise sensitivities: change for +1 % of one value (top {len(top)})",
            f"change (M {self.src.currency})", [f"{r['cluster']} · {r['parameter']}" + ("*" if r.get("step") else "")
                                                for r in top], series))

    @staticmethod
    def bars(name: str, title: str, xlabel: str, labels: list[str], series: dict[str, np.ndarray]):
        """Horizontal bars, one group per label (top to bottom in the order given), one bar per series."""
        names = labels[::-1]
        p = figure(name=name, y_range=names, width=640, height=120 + 18 * len(names) * max(len(series), 1),
                   tools="save", toolbar_location="above", x_axis_label=xlabel, title=title)
        data = ColumnDataSource({"label": names, **{f"s{k}": v[::-1] for k, v in enumerate(series.values())}})
        width = 0.8 / max(len(series), 1)
        for k, (legend, colour) in enumerate(zip(series, ("#3b528b", "#b2182b", "#5ec962"))):
            off = (k - (len(series) - 1) / 2) * width
            p.hbar(y=dodge("label", -off, range=p.y_range), right=f"s{k}", height=width * 0.9, source=data,
                   color=colour, legend_label=legend)
        p.add_layout(Span(dimension="height", location=0, line_color="black", line_width=1))
        p.legend.location = "bottom_right"
        return p

    def summary(self, tables: dict) -> str:
        """The report's tables: statistics over the paths, risk, by cluster, sensitivities."""
        fig_montecarlo.summary_tables(self.src.f, tables)
        return "".join(fig_montecarlo.body({"currency": self.src.currency, "tables": tables}))

    def page(self):
        f = self.src.f
        side = pn.Column(self.output, self.scope, download("Download the distribution (CSV)", "distribution.csv",
                                                           self.distribution_csv),
                         pn.pane.Markdown("The save icon in a plot's toolbar downloads that view as PNG.",
                                          styles={"font-size": "0.85em"}), width=320)
        figs = [self.marks_text, *(pn.pane.Bokeh(p) for p in (self.hist_fig, self.cdf_fig) if p is not None)]
        if "cumulative_cf_fan" in f:
            figs.append(self.fan())
        tails = self.tails()
        if tails is not None:
            figs.append(tails)
        tables: dict = {}
        sens = self.sensitivities(tables)
        if sens is not None:
            figs.append(sens)
        figs.append(pn.pane.HTML(self.summary(tables), sizing_mode="stretch_width", stylesheets=[TABLE_CSS]))
        head = f"{attr(f, 'paths', '?')} paths, seed {attr(f, 'seed', '?')}"
        return pn.Column(pn.pane.HTML(f"<p>{head}</p>"), pn.Row(side, pn.Column(*figs, sizing_mode="stretch_width")),
                         sizing_mode="stretch_width")


def view(src: Source):
    return MonteCarloView(src).page()
