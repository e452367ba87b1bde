"""A breakeven curve's figure and table (`breakeven --over`): the breakeven value along the
axis, per scope (the portfolio, each cluster moved alone)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from .fig_common import literal, new_figure
from .fig_html import fmt_num, table
from .fig_read import Plan, attr, param_label, plan_without_axes, strings, value_text
from .kernels.params import NAMED_SHOCKS


def plan(f, path: Path, kind: str, x, y, at: dict) -> Plan:
    return plan_without_axes(path, kind, x, y, at, "a breakeven curve has one axis and no heatmap")


def title(f) -> str:
    return f"Breakeven report: {attr(f, 'portfolio', '?')}, {attr(f, 'param')} for {attr(f, 'target')}"


def build(f, path: Path, plan: Plan, save, notes: list[str]) -> dict:
    over = str(attr(f, "over"))
    param = str(attr(f, "param", "parameter"))
    target = str(attr(f, "target", ""))
    be = np.asarray(f["breakeven"][()], dtype=np.float64)
    xs = np.asarray(f[over][()], dtype=np.float64) if over in f else np.arange(be.shape[0], dtype=float)
    scopes = [str(s) for s in strings(f["scope"][()])] if "scope" in f else [str(i) for i in range(be.shape[1])]
    order = np.argsort(xs, kind="stable")
    over_label = param_label(over, NAMED_SHOCKS[over][1], NAMED_SHOCKS[over][0]) if over in NAMED_SHOCKS \
        else over
    y_label = param_label(param, NAMED_SHOCKS[param][1], NAMED_SHOCKS[param][0]) if param in NAMED_SHOCKS \
        else param_label(param, "set", (param,))
    fig = new_figure(7.6, 5.2)
    ax = fig.add_subplot()
    cm = matplotlib.colormaps["viridis"]
    styles = ["--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1))]
    markers = ["s", "^", "v", "D", "x", "+", "*"]
    k = 0
    for j, s in enumerate(scopes):
        v = be[order, j]
        if not np.isfinite(v).any():
            continue
        if s == "portfolio":
            ax.plot(xs[order], v, color="black", linewidth=2.6, marker="o", label="portfolio", zorder=3)
        else:
            ax.plot(xs[order], v, color=cm(0.15 + 0.7 * k / max(len(scopes) - 2, 1)), linewidth=1.4,
                    linestyle=styles[k % len(styles)], marker=markers[k % len(markers)], markersize=4, label=literal(s))
            k += 1
    gap = ~np.isfinite(be)
    jumps = gap & (np.asarray(f["status"][()]) == 2) if "status" in f else np.zeros_like(gap)  # 2: jump
    missing = [s for j, s in enumerate(scopes) if (gap[:, j] & ~jumps[:, j]).any()]
    jumped = [s for j, s in enumerate(scopes) if jumps[:, j].any()]
    if missing:
        notes.append("No breakeven in the bracket at some or all points (gaps in the curve) for: "
                     + ", ".join(missing) + ".")
    if jumped:
        notes.append("No value meets the target at some or all points: the output jumps over the target "
                     "(gaps in the curve) for: " + ", ".join(jumped) + ".")
    ax.set_xlabel(literal(over_label))
    ax.set_ylabel(literal(f"breakeven {y_label}"))
    ax.set_title(literal(f"Breakeven {param} for {target} along {over}"), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # every scope empty: no line to name
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "breakeven.png")
    tables = {"over": over, "param": param, "target": target, "scopes": scopes,
              "rows": [{over: float(xs[i]), **{s: float(be[i, j]) for j, s in enumerate(scopes)}} for i in order]}
    return {"tables": tables, "captions": {"breakeven.png": f"Breakeven {param} meeting {target} along {over}, "
                                                            "for the portfolio and each cluster moved alone."}}


def body(res: dict) -> list[str]:
    t = res["tables"]
    return ["<h2>Breakeven values</h2>",
            table([t["over"], *t["scopes"]], [[value_text(r[t["over"]]), *(fmt_num(r[s]) for s in t["scopes"])]
                                               for r in t["rows"]], num_cols=range(1 + len(t["scopes"])))]
