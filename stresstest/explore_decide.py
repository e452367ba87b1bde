"""The decision views of `stresstest explore`, on the files of a Monte Carlo scenario that
`rank` and `optimize` write (issue 28).

rank: which driver matters most: each input's Shapley effect (its share of the output's
variance) with its 95 % interval as a whisker, and the DGSM bound on its total index,
largest first; the Sobol indices of the independent groups and the check of the variance
in the report's tables (rank_report). optimize: the frontier (the objective against CVaR
95 on the in-sample paths, its mixes on fresh paths too) with the current mix and the
optimum marked, each point's mix in its hover; the mix per cluster, current against
optimal; the answer, the variables and the figures in the report's tables (fig_optimize).
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool, Span, Whisker
from bokeh.plotting import figure
from bokeh.transform import dodge

from . import fig_optimize, rank_report
from .explore_source import TABLE_CSS, TOOLS, Source, csv_text, download
from .fig_read import Plan
from .optimize_io import SAMPLES, read_optimize
from .optimize_report import LABELS


def report_tables(module, src: Source) -> tuple[dict, list[str]]:
    """The report's tables of the file (module: rank_report or fig_optimize) and its notes;
    the report's own figures are drawn and dropped."""
    notes: list[str] = []
    res = module.build(src.f, src.path, Plan(src.kind), lambda fig, name: None, notes)
    return res, notes


def notes_html(notes: list[str]) -> str:
    return "".join(f"<p><i>{n}</i></p>" for n in notes)


def rank_view(src: Source):
    res, notes = report_tables(rank_report, src)
    rows = res["tables"]["rows"]  # the largest effect first
    names = [r["input"] for r in rows][::-1]
    data = ColumnDataSource({"input": names, **{k: [100 * r[k] for r in rows][::-1]
                                                for k in ("shapley", "low", "high", "dgsm_bound")}})
    ends = [v for k in ("low", "high", "dgsm_bound") for v in data.data[k] if math.isfinite(v)]
    lo, hi = min([0.0, *ends]), min(max([1.0, *ends]), 100.0)  # the intervals' whole span (a bound capped)
    p = figure(name="drivers", y_range=names, x_range=(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo)),
               width=680, height=140 + 26 * len(names), tools="save,reset",
               toolbar_location="above", x_axis_label="share of the output's variance (%)",
               title=rank_report.title(src.f))
    bars = p.hbar(y="input", right="shapley", height=0.6, source=data, color="#3b6ea8",
                  legend_label="Shapley effect (95 % interval)")
    p.add_layout(Whisker(source=data, base="input", lower="low", upper="high", dimension="width",
                         line_color="#222222"))
    bounded = [(n, b) for n, b in zip(data.data["input"], data.data["dgsm_bound"]) if math.isfinite(b)]
    bound = ColumnDataSource({"input": [n for n, _ in bounded], "x": [min(b, 100.0) for _, b in bounded]})
    if bound.data["x"]:
        p.scatter("x", "input", source=bound, marker="dash", angle=math.pi / 2, size=18, line_width=3,
                  color="#c0392b", legend_label="DGSM bound on the total index (capped at 100 %)")
    p.add_tools(HoverTool(renderers=[bars], tooltips=[("input", "@input"), ("Shapley effect", "@shapley{0.0} %"),
                                                      ("95 % interval", "@low{0.0} .. @high{0.0} %"),
                                                      ("DGSM bound", "@dgsm_bound{0.0} %")]))
    p.add_layout(Span(dimension="height", location=0, line_color="black", line_width=1))
    p.add_layout(p.legend[0], "below")
    def csv():
        keys = ["input", "shapley", "low", "high", "dgsm_bound"]
        return csv_text(keys, ([r[k] for k in keys] for r in rows))

    return pn.Column(pn.pane.HTML(notes_html(notes), sizing_mode="stretch_width"), pn.pane.Bokeh(p),
                     download("Download the ranking (CSV)", "drivers.csv", csv),
                     pn.pane.HTML("".join(rank_report.body(res)), sizing_mode="stretch_width",
                                  stylesheets=[TABLE_CSS]))


def scaled(metric: str, v: float) -> float:
    """A figure on screen: rates in percent, money in millions."""
    return 100 * v if metric == "mean_irr" else v / 1e6


def optimize_view(src: Source):
    d = read_optimize(src.f)
    res, notes = report_tables(fig_optimize, src)
    obj = d["objective"]
    cur = src.currency
    unit = "%" if obj == "mean_irr" else f"M {cur}"
    p = figure(name="frontier", width=680, height=460, tools=TOOLS, toolbar_location="above",
               x_axis_label=f"CVaR 95 % (M {cur}; a loss: to the left is safer)",
               y_axis_label=f"{LABELS[obj]} ({unit})",
               title=f"{LABELS[obj]} against tail risk, {d['paths']:,} in-sample paths")
    fr = d.get("frontier")
    labels = [q["label"] for q in d["params"]]
    if fr:
        ok = np.asarray(fr["feasible"], dtype=bool)
        mixes = [", ".join(f"{n} = {v:.4g}" for n, v in zip(labels, mix)) for mix, good in zip(fr["mix"], ok) if good]
        for s, dash, colour in (("in_sample", "solid", "black"), ("fresh", "dashed", "#1f77b4")):
            pts = ColumnDataSource({"x": [m[s]["cvar_95"] / 1e6 for m, good in zip(fr["metrics"], ok) if good],
                                    "y": [scaled(obj, m[s][obj]) for m, good in zip(fr["metrics"], ok) if good],
                                    "mix": mixes})
            legend = "frontier" + (" (fresh paths)" if s == "fresh" else "")
            p.line("x", "y", source=pts, line_width=2, line_dash=dash, color=colour, legend_label=legend)
            r = p.scatter("x", "y", source=pts, size=8, color=colour, legend_label=legend,
                          fill_color=colour if s == "in_sample" else "white")
            p.add_tools(HoverTool(renderers=[r], tooltips=[("CVaR 95 % (M)", "@x{0,0.00}"),
                                                           (f"{LABELS[obj]} ({unit})", "@y{0,0.00}"), ("mix", "@mix")]))
    for name, pair, marker, colour, size in (("current mix", d["current_metrics"], "star", "#d62728", 22),
                                             ("optimum", d["optimum_metrics"] if d["feasible"] else None,
                                              "diamond", "#2ca02c", 16)):
        if pair is not None:
            m = pair["in_sample"]
            p.scatter([m["cvar_95"] / 1e6], [scaled(obj, m[obj])], marker=marker, size=size, color=colour,
                      line_color="black", legend_label=name)
    if "cvar_95" in d["limits"]:
        p.add_layout(Span(dimension="height", location=d["limits"]["cvar_95"] / 1e6, line_color="grey",
                          line_dash="dotted", line_width=2))
    p.add_layout(p.legend[0], "right")
    parts = [pn.pane.HTML(notes_html([d["message"], *notes]), sizing_mode="stretch_width"), pn.pane.Bokeh(p),
             pn.pane.Bokeh(mix_figure(d))]
    if fr:
        figures = [f"{s}_{k}" for s in SAMPLES for k in (obj, "cvar_95")]

        def csv():
            return csv_text(["cvar_limit", "feasible", *figures, *labels],
                            ([lim, int(good), *(m[s][k] for s in SAMPLES for k in (obj, "cvar_95")), *mix]
                             for lim, good, mix, m in zip(fr["limit"], fr["feasible"], fr["mix"], fr["metrics"])))

        parts.append(download("Download the frontier (CSV)", "frontier.csv", csv))
    parts.append(pn.pane.HTML("".join(fig_optimize.body(res)), sizing_mode="stretch_width", stylesheets=[TABLE_CSS]))
    return pn.Column(*parts)


def mix_figure(d: dict):
    """Per variable and cluster it sets: the current value and the optimal one."""
    labels, current, optimum = [], [], []
    for j, q in enumerate(d["params"]):
        row = d["current_by_cluster"][j] if d["current_by_cluster"].size else np.array([])
        where = [(c, v) for c, v in zip(d["clusters"], row) if math.isfinite(v)] or [("portfolio", q["current"])]
        for c, v in where:
            labels.append(f"{q['param']} · {c}")
            current.append(v)
            optimum.append(q["optimum"])
    data = ColumnDataSource({"label": labels, "current": current, "optimum": optimum})
    p = figure(name="mix", x_range=labels, width=680, height=380, tools="save", toolbar_location="above",
               y_axis_label="value of the parameter", title="The mix per cluster: current and optimal")
    p.vbar(x=dodge("label", -0.2, range=p.x_range), top="current", width=0.38, source=data, color="#bbbbbb",
           line_color="black", legend_label="current")
    p.vbar(x=dodge("label", 0.2, range=p.x_range), top="optimum", width=0.38, source=data,
           color="#2ca02c" if d["feasible"] else "#d62728", line_color="black",
           legend_label="optimum" if d["feasible"] else "closest found (infeasible)")
    p.xaxis.major_label_orientation = 0.5 if len(labels) > 4 else 0
    p.add_layout(p.legend[0], "right")
    return p
