"""The report of an optimize file: the frontier (the objective against CVaR 95, the current
mix marked) and the mix per cluster (current against optimal), with their tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .fig_common import literal, new_figure
from .fig_html import escape, table
from .fig_read import Plan, attr, plan_without_axes
from .optimize_io import SAMPLES, read_optimize
from .optimize_report import LABELS, limit_text, shown, text

# ------------------------------------------------------------------ report


def plan(f, path: Path, kind: str, x, y, at: dict) -> Plan:
    return plan_without_axes(path, kind, x, y, at, "an optimize file has no grid axes")


def title(f) -> str:
    return f"Which mix: {attr(f, 'portfolio', '?')}, {attr(f, 'objective', '?')} under {attr(f, 'constraints', '?')}"


def _money_or_rate(metric: str, v: float) -> float:
    return v * 100 if metric == "mean_irr" else v / 1e6


def _axis_label(metric: str, currency: str) -> str:
    return "mean IRR (%)" if metric == "mean_irr" else f"{LABELS[metric]} (M {currency})"


def _frontier_figure(d: dict, currency: str):
    """The objective against CVaR 95: the frontier (in-sample, and its mixes on fresh
    paths), the current mix and the optimum."""
    obj = d["objective"]
    fig = new_figure(7.6, 5.2)
    ax = fig.add_subplot()
    fr = d.get("frontier")
    if fr:
        ok = np.asarray(fr["feasible"], dtype=bool)
        for s, style in (("in_sample", dict(color="black", marker="o", linewidth=2)),
                         ("fresh", dict(color="tab:blue", marker="o", linestyle="--", markerfacecolor="none"))):
            xs = np.array([m[s]["cvar_95"] for m in fr["metrics"]])[ok] / 1e6
            ys = np.array([_money_or_rate(obj, m[s][obj]) for m in fr["metrics"]])[ok]
            ax.plot(xs, ys, label="frontier" + (" (fresh paths)" if s == "fresh" else ""), **style)
    for name, pair, style in (("current mix", d["current_metrics"], dict(marker="*", s=220, color="tab:red")),
                              ("optimum", d["optimum_metrics"] if d["feasible"] else None,
                               dict(marker="D", s=80, color="tab:green"))):
        if pair is None:
            continue
        m = pair["in_sample"]
        ax.scatter([m["cvar_95"] / 1e6], [_money_or_rate(obj, m[obj])], label=name, zorder=4, **style)
    for name, lim in d["limits"].items():
        if name == "cvar_95":
            ax.axvline(lim / 1e6, color="grey", linestyle=":", label="CVaR limit")
    ax.set_xlabel(f"CVaR 95 % (M {currency}; a loss: to the left is safer)")
    ax.set_ylabel(_axis_label(obj, currency))
    ax.set_title(literal(f"{LABELS[obj]} against tail risk, {d['paths']:,} in-sample paths"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _mix_figure(d: dict):
    """Bars per variable and cluster: the current value (hatched) and the optimal one."""
    fig = new_figure(7.6, 4.8)
    ax = fig.add_subplot()
    labels, current, optimum = [], [], []
    by = d["current_by_cluster"]
    for j, p in enumerate(d["params"]):
        row = by[j] if by.size else np.array([])
        clusters = [c for c, v in zip(d["clusters"], row) if math.isfinite(v)]
        values = [v for v in row if math.isfinite(v)]
        if not clusters:  # a platform field: the portfolio's one value
            clusters, values = ["portfolio"], [p["current"]]
        for c, v in zip(clusters, values):
            labels.append(f"{p['param']}\n{c}")
            current.append(v)
            optimum.append(p["optimum"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, current, 0.4, label="current", color="lightgrey", edgecolor="black", hatch="//")
    ax.bar(x + 0.2, optimum, 0.4, label="optimum" if d["feasible"] else "closest found (infeasible)",
           color="tab:green" if d["feasible"] else "tab:red", edgecolor="black")
    ax.set_xticks(x, [literal(s) for s in labels], fontsize=7, rotation=30 if len(labels) > 4 else 0,
                  ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("value of the parameter")
    ax.set_title("The mix per cluster: current and optimal", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def build(f, path: Path, plan: Plan, save, notes: list[str]) -> dict:
    d = read_optimize(f)
    currency = str(attr(f, "currency", "USD"))
    save(_frontier_figure(d, currency), "frontier.png")
    save(_mix_figure(d), "mix.png")
    if not d["feasible"]:
        notes.append(d["message"])
    if d.get("frontier", {}).get("note"):
        notes.append(f"Frontier: {d['frontier']['note']}.")
    captions = {"frontier.png": f"{LABELS[d['objective']]} against CVaR 95 % on the in-sample paths"
                                + (", the frontier's mixes also on fresh paths" if d.get("frontier") else "")
                                + "; the star is the portfolio as it is.",
                "mix.png": "Each variable's current value in each cluster it sets (hatched) and its optimal value."}
    return {"tables": d, "captions": captions}


def body(res: dict) -> list[str]:
    d = res["tables"]
    params = table(["variable", "range", "current", "optimum"],
                   [[p["label"], f"{p['lower']:g} .. {p['upper']:g}", f"{p['current']:.4g}", f"{p['optimum']:.4g}"]
                    for p in d["params"]], num_cols=(2, 3))
    figures = table(["figure", "current", "current (fresh)", "optimum", "optimum (fresh)", "limit"],
                    [[LABELS[m], *(text(m, (pair.get(s) or {}).get(m), True)
                                   for pair in (d["current_metrics"], d["optimum_metrics"]) for s in SAMPLES),
                      limit_text(d, m)] for m in shown(d)], num_cols=(1, 2, 3, 4))
    out = [f"<h2>Answer</h2><p>{escape(d['message'])}</p>", "<h2>Variables</h2>", params, "<h2>Figures</h2>", figures]
    fr = d.get("frontier")
    if fr:
        obj = d["objective"]
        rows = [[text("cvar_95", lim, True), *(text(k, m[s].get(k), True) for s in SAMPLES for k in (obj, "cvar_95")),
                 *((f"{v:.4g}" for v in mix) if ok else ("n/a" for _ in mix))]
                for lim, ok, mix, m in zip(fr["limit"], fr["feasible"], fr["mix"], fr["metrics"])]
        out += ["<h2>Frontier</h2>", table(["CVaR limit", LABELS[obj], "CVaR 95 %", f"{LABELS[obj]} (fresh)",
                                            "CVaR (fresh)", *(p["label"] for p in d["params"])], rows,
                                           num_cols=range(5 + len(d["params"])))]
    return out
