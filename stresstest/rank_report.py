"""The ranked drivers: the table `rank` prints, and the bar chart `report` draws from a
rank file (kind "rank": stresstest/rank.py writes it)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .fig_common import literal, new_figure
from .fig_html import escape, fmt_num, table
from .fig_read import Plan, attr, plan_without_axes, strings

OUTPUT_TITLES = {"npv": "portfolio NPV", "irr": "portfolio IRR", "roi": "portfolio ROI",
                 "equity_irr": "portfolio equity IRR"}


def _share(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"


def _interval(ci) -> str:
    return "" if ci is None or not all(math.isfinite(x) for x in ci) else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def print_rank(report: dict, console=None) -> None:
    """The ranked table of rank.rank_json's answer: Shapley effect with its interval, the
    Sobol indices where the input is independent of the others, the DGSM bound."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"{report['portfolio']} under {report['scenario']}: what drives the "
                  f"{OUTPUT_TITLES[report['output']]} ({report['evaluations']:,} evaluations, "
                  f"{report['seconds']:.1f} s, {report['backend']})")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("#", justify="right")
    t.add_column("input", no_wrap=True)
    for head in ("Shapley", "95 % interval", "Sobol S1/ST", "DGSM"):
        t.add_column(head, justify="right", no_wrap=True)
    for i, row in enumerate(report["inputs"], start=1):
        sobol = "-" if row["sobol_first"] is None else f"{_share(row['sobol_first'])} / {_share(row['sobol_total'])}"
        t.add_row(str(i), row["input"], _share(row["shapley"]), _interval(row["shapley_ci"]), sobol,
                  _share(row["dgsm_bound"]))
    console.print(t)
    lo, hi = report["variance_ratio_ci"]
    spread = (f" (standard deviation {report['variance'] ** 0.5 / 1e6:,.1f} M)" if report["output"] == "npv"
              else "")
    console.print(f"Shapley effects: shares of the output's variance{spread}, summing to 100 %. Check: the "
                  f"permutations' variance is {100 * report['variance_ratio']:.1f} % of an independent sample's "
                  f"(95 % interval [{100 * lo:.1f}, {100 * hi:.1f}]; 100 % up to the estimators' error)")
    for g in report["groups"]:
        if len(g["inputs"]) > 1:
            console.print(f"independent group of {len(g['inputs'])} correlated inputs ({', '.join(g['inputs'][:3])}"
                          f"{', ...' if len(g['inputs']) > 3 else ''}): Sobol first {_share(g['first'])}, "
                          f"total {_share(g['total'])}")
    if report.get("still_inputs"):
        console.print(f"left out, drawing nothing (a volatility of 0 or a law of one value): "
                      f"{', '.join(report['still_inputs'])}")
    if report.get("dgsm_note"):
        console.print(f"DGSM: {report['dgsm_note']}")
    if report.get("path"):
        console.print(f"wrote {report['path']}")


# ------------------------------------------------------------------ report (figures.REPORTS)


def plan(f, path: Path, kind: str, x, y, at: dict) -> Plan:
    return plan_without_axes(path, kind, x, y, at, "a rank file has no grid axes")


def title(f) -> str:
    return f"What drives the {OUTPUT_TITLES.get(str(attr(f, 'output')), 'output')}: {attr(f, 'portfolio', '?')}"


def build(f, path: Path, plan: Plan, save, notes: list[str]) -> dict:
    names = [str(s) for s in strings(f["input"][()])]
    sh = np.asarray(f["shapley"][()], dtype=np.float64)
    ci = np.asarray(f["shapley_ci"][()], dtype=np.float64)
    dg = np.asarray(f["dgsm_bound"][()], dtype=np.float64)
    order = np.argsort(-sh, kind="stable")
    fig = new_figure(7.6, 0.9 + 0.32 * len(names))
    ax = fig.add_subplot()
    ypos = np.arange(len(names))[::-1]
    err = np.abs(np.stack([sh[order] - ci[order, 0], ci[order, 1] - sh[order]]))
    ax.barh(ypos, 100 * sh[order], xerr=100 * err, color="#3b6ea8", ecolor="#222", capsize=2,
            label="Shapley effect (95 % interval)")
    shown = np.isfinite(dg[order])
    if shown.any():
        ax.scatter(100 * np.minimum(dg[order][shown], 1.0), ypos[shown], marker="|", s=120, color="#c0392b",
                   label="DGSM bound on the total index (capped at 100 %)", zorder=3)
    ax.set_yticks(ypos, [literal(names[i]) for i in order], fontsize=8)
    ax.set_xlabel("share of the output's variance (%)")
    ax.set_xlim(left=min(0.0, 100 * float(np.nanmin(ci[:, 0]))) if len(names) else 0.0)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_title(literal(title(f)), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save(fig, "drivers.png")
    ratio = attr(f, "variance_ratio")
    lo_hi = np.asarray(attr(f, "variance_ratio_ci", [math.nan, math.nan]), dtype=np.float64)
    notes.append(f"The Shapley effects sum to 100 %. Check: the permutations' variance is {100 * float(ratio):.1f} % "
                 f"of an independent sample's (95 % interval [{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}] %); "
                 "100 % up to the estimators' error.")
    note = attr(f, "dgsm_note", "")
    if note:
        notes.append(f"DGSM: {note}.")
    rows = [{"input": names[i], "shapley": float(sh[i]), "low": float(ci[i, 0]), "high": float(ci[i, 1]),
             "dgsm_bound": float(dg[i])} for i in order]
    groups = []
    if "sobol_first" in f:
        for g, label in enumerate(strings(f["group"][()])):
            groups.append({"group": str(label), "first": float(f["sobol_first"][g]),
                           "total": float(f["sobol_total"][g])})
    return {"tables": {"rows": rows, "groups": groups},
            "captions": {"drivers.png": "Which driver matters most: each input's Shapley effect (its share of "
                                        "the output's variance, correlated inputs sharing what they explain "
                                        "together) with its 95 % bootstrap interval, and the DGSM upper bound "
                                        "on the total index of its independent part."}}


def body(res: dict) -> list[str]:
    t = res["tables"]
    out = ["<h2>Drivers, ranked</h2>",
           table(["input", "Shapley effect", "low", "high", "DGSM bound"],
                 [[escape(r["input"]), fmt_num(r["shapley"]), fmt_num(r["low"]), fmt_num(r["high"]),
                   fmt_num(r["dgsm_bound"])] for r in t["rows"]], num_cols=range(1, 5))]
    if t["groups"]:
        out += ["<h2>Sobol indices of the independent groups</h2>",
                table(["group", "first order", "total"],
                      [[escape(g["group"]), fmt_num(g["first"]), fmt_num(g["total"])] for g in t["groups"]],
                      num_cols=(1, 2))]
    return out
