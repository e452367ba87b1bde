"""What `stresstest optimize` prints: the terminal tables, the --json body and `inspect`'s
description, from optimize.summary's dict (the run) or optimize_io.read_optimize's (the
file). The report's figures are in fig_optimize.py."""

from __future__ import annotations

import math

from .formats import fmt
from .optimize_io import METRICS, SAMPLES, read_optimize

LABELS = {"mean_npv": "mean NPV", "cvar_95": "CVaR 95 %", "prob_npv_negative": "P(NPV < 0)",
          "prob_dscr_below_covenant": "P(DSCR < covenant)", "mean_irr": "mean IRR",
          "irr_nonfinite": "paths without an IRR", "mean_equity_npv": "mean equity NPV"}
# the formats.fmt name of each figure
FORMAT_AS = {"mean_npv": "npv", "mean_equity_npv": "npv", "mean_irr": "irr"}


def text(metric: str, value, table_form: bool = False) -> str:
    """A figure as the terminal (or a report table) writes it."""
    if metric == "irr_nonfinite":
        return "-" if value is None or not math.isfinite(value) else f"{int(value):,}"
    return fmt(FORMAT_AS.get(metric, metric), value, table_form)


def limit_text(d: dict, metric: str) -> str:
    if metric not in d["limits"]:
        return ""
    mark = "" if d["met"][metric] else " (missed)"
    return f"<= {text(metric, d['limits'][metric])}{mark}"


def shown(d: dict) -> list[str]:
    """The figures worth a row: the objective and the constraints first, then the rest
    (the DSCR only with a covenant, the IRR's count only where some path has none)."""
    first = [d["objective"], *d["limits"]]
    rows = first + [m for m in METRICS if m not in first]
    have = [d["current_metrics"]["in_sample"], (d["optimum_metrics"] or {}).get("in_sample") or {}]
    return [m for m in rows if any(math.isfinite(h.get(m, math.nan)) and (m != "irr_nonfinite" or h.get(m))
                                   for h in have)]


def print_tables(d: dict, console) -> None:
    """The answer, the variables (range, current, optimum), the figures (current and
    optimum, in-sample and fresh, against their limits) and the frontier."""
    from rich import box
    from rich.table import Table

    colour = "green" if d["feasible"] else "red"
    console.print(f"[{colour}]{escape_markup(d['message'])}[/]")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for head in ("variable", "range", "current", "optimum"):
        t.add_column(head, justify="left" if head == "variable" else "right", no_wrap=True)
    for p in d["params"]:
        t.add_row(p["label"], f"{p['lower']:g} .. {p['upper']:g}", f"{p['current']:.4g}", f"{p['optimum']:.4g}")
    console.print(t)
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("figure", no_wrap=True)
    for head in ("current", "fresh", "optimum", "fresh", "limit"):
        t.add_column(head, justify="right", no_wrap=True)
    cur, opt = d["current_metrics"], d["optimum_metrics"]
    for m in shown(d):
        t.add_row(LABELS[m], *(text(m, (pair.get(s) or {}).get(m)) for pair in (cur, opt) for s in SAMPLES),
                  limit_text(d, m))
    console.print(t)
    console.print(f"current: the portfolio as it is; fresh: the same mix on {d['paths']:,} paths of seed "
                  f"{d['fresh_seed']}, which the search did not see")
    fr = d.get("frontier")
    if fr:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="frontier: the best mix at each CVaR 95 % limit")
        obj = d["objective"]
        for head in ("CVaR limit", LABELS[obj], "CVaR 95 %", "fresh", "fresh CVaR",
                     *(f"v{j}" for j in range(1, len(d["params"]) + 1))):
            t.add_column(head, justify="right", no_wrap=True)
        for lim, ok, mix, m in zip(fr["limit"], fr["feasible"], fr["mix"], fr["metrics"]):
            t.add_row(text("cvar_95", lim), *(text(k, m[s].get(k)) for s in SAMPLES for k in (obj, "cvar_95")),
                      *((f"{v:.4g}" for v in mix) if ok else ("-" for _ in mix)))
        console.print(t)
        console.print("  ".join(f"v{j} = {p['label']}" for j, p in enumerate(d["params"], start=1)))
        if fr.get("note"):
            console.print(f"frontier: {fr['note']}")


def escape_markup(s: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(s)


def print_optimize(result, console=None) -> None:
    """report.PRINTERS["optimize"]: the run's question, its tables and the file written."""
    from rich.console import Console

    from .optimize import summary

    console = console or Console()
    d = summary(result)
    console.print(f"[bold]{escape_markup(result.portfolio.name)}[/]: maximise {LABELS[d['objective']]} over "
                  f"{len(d['params'])} variable{'s' if len(d['params']) > 1 else ''} on {d['paths']:,} paths of "
                  f"{escape_markup(result.scenario.name)} (seed {d['seed']}); constraints: "
                  + (", ".join(f"{LABELS[n]} <= {text(n, lim)}" for n, lim in d["limits"].items()) or "none"))
    print_tables(d, console)
    console.print(f"wrote {result.path} in {result.seconds:.1f} s ({result.backend})")


def optimize_json(result) -> dict:
    """report.JSON_BODIES["optimize"]: optimize.summary's dict."""
    from .optimize import summary

    return summary(result)


# ------------------------------------------------------------------ inspect


def inspect_title(f) -> str:
    return "which mix (stresstest optimize)"


def inspect_size(attrs: dict, scales: dict) -> str:
    points = f", a frontier of {scales['frontier_point']} points" if "frontier_point" in scales else ""
    return (f"{scales.get('param', 0)} variable{'s' if scales.get('param', 0) != 1 else ''} on "
            f"{int(attrs.get('paths', 0)):,} paths, seed {attrs.get('seed')}{points}")


def inspect_details(f, attrs: dict, config: dict) -> dict:
    d = read_optimize(f)
    d.pop("current_by_cluster")
    return {"optimize": d}
