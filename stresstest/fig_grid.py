"""A grid's figures and tables: NPV and IRR heatmaps over two axes (white at NPV = 0 and
at IRR = discount rate, a star at the base case), lines along one axis (bars by name for
the named scenarios, fig_named), the "when to buy" figures of a grid with an axis on the
order month, the tornado of a sensitivities file, the base case's revenue by industry of
a version 2 file, and the HTML body (with the platform layer's NPV and share where the
file has one)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from .fig_common import literal, new_figure, wrap
from .fig_html import escape, fmt, fmt_money, header, table
from .fig_named import named_bars
from .fig_read import (TORNADO_MOVE_PCT, TORNADO_TOP, AxisInfo, Plan, attr, base_in_plane, cell_edges, coords,
                       extreme, held_index, plan_grid, plan_when_to_buy, rate_level, read_axes, strings, value_text)
from .items import UNLABELLED
from .outputs import BASE_GROUP, INDUSTRY_DIM
from .validation import ConfigError


PLATFORM_NPV = "platform_npv"  # outputs.GROUP_VARIABLES: a file with a platform layer
WHEN_TO_BUY = "when_to_buy"  # the figures' names, their table's and make_report's key


def plan(f, path: Path, kind: str, x, y, at: dict) -> Plan:
    """The grid's plan: which axes are drawn, where the others are held; ConfigError for bad options."""
    p, problems = plan_grid(path, read_axes(f), x, y, at)
    p.kind = kind
    if problems:
        raise ConfigError(problems)
    p.buy = plan_when_to_buy(f, p, x, y)
    return p


def title(f) -> str:
    return f"Stress report: {attr(f, 'portfolio', '?')}, scenario {attr(f, 'scenario', '?')}"


def done_fields(plan: Plan, res: dict) -> dict:
    """What make_report's answer says of a grid: the drawn axes and where the others are
    held, and those of the "when to buy" figures (None without them)."""
    buy = plan.buy and {"x": plan.buy.x, "y": plan.buy.y, "line": plan.buy.line,
                        "held": dict(res["tables"][WHEN_TO_BUY]["held"])}
    return {"x": plan.x, "y": plan.y, "line": plan.line, "held": dict(res["tables"]["held"]), WHEN_TO_BUY: buy}


def diverging_norm(finite: np.ndarray, center: float):
    """A TwoSlopeNorm with vcenter=center over the data; where every value lies on one side
    of it, the empty side mirrors the full one, so the colour of the centre stays white."""
    from matplotlib.colors import TwoSlopeNorm

    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (center - 1.0, center + 1.0)
    if not lo < center < hi:
        half = max(abs(lo - center), abs(hi - center)) or 1.0
        lo, hi = min(lo, center - half), max(hi, center + half)
    return TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)


def heatmap(save, name, xa: AxisInfo, ya: AxisInfo, z: np.ndarray, *, cbar: str,
            cmap: str, level: float | None, level_label: str, title: str, cell_fmt,
            center: float | None = None, base_xy: tuple[float, float] | None = None,
            best: str | None = None) -> None:
    """z: (ny, nx) in the axes' stored order, already in the plotted unit. With `center`, a
    diverging colour map (`cmap`, e.g. RdBu) whose white is at that value (NPV = 0); with
    `base_xy`, the base case (no shock) is marked at that point of the plane; with `best`
    (the legend's words), each row's largest value is ringed."""
    xc, xo = coords(xa)
    yc, yo = coords(ya)
    z = np.ma.masked_invalid(z[np.ix_(yo, xo)])
    fig = new_figure(7.6, 5.6)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    cm = matplotlib.colormaps[cmap].with_extremes(bad="0.85")
    finite = z.compressed()
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    if center is not None:
        norm = diverging_norm(finite, center)
        mesh = ax.pcolormesh(cell_edges(xc), cell_edges(yc), z, cmap=cm, norm=norm, shading="flat")
    else:
        from matplotlib.colors import Normalize

        norm = Normalize(vmin=vmin, vmax=vmax)
        mesh = ax.pcolormesh(cell_edges(xc), cell_edges(yc), z, cmap=cm, norm=norm, shading="flat")
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label(cbar)
    if center is not None:  # each half of a diverging bar gets its own ticks, the centre one
        from matplotlib.ticker import MaxNLocator

        lo = MaxNLocator(5).tick_values(norm.vmin, center)
        hi = MaxNLocator(5).tick_values(center, norm.vmax)
        ticks = sorted({float(t) for t in (*lo, *hi) if norm.vmin <= t <= norm.vmax
                        and abs(float(norm(t)) - 0.5) >= 0.05} | {float(center)})  # none crowding the centre
        cb.set_ticks(ticks)
    handles = []
    if (level is not None and finite.size and vmin < level < vmax and len(xc) >= 2 and len(yc) >= 2):
        ax.contour(xc, yc, z, levels=[level], colors="black", linewidths=2.0, linestyles="solid")
        cb.ax.axhline(level, color="black", linewidth=2.0)
        handles.append(Line2D([], [], color="black", linewidth=2.0, label=level_label))
    elif level is not None and finite.size:  # say so, rather than leave the reader to look for the line
        side = "below" if vmax <= level else "above"
        handles.append(Line2D([], [], color="none", label=f"{level_label}: nowhere here (all {side})"))
    if base_xy is not None:
        ax.plot([base_xy[0]], [base_xy[1]], linestyle="none", marker="*", markersize=16,
                markerfacecolor="gold", markeredgecolor="black", markeredgewidth=1.2, zorder=5)
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=12, markerfacecolor="gold",
                              markeredgecolor="black", label="base case (no shock)"))
    if best is not None:
        for i, j in best_cells(z):
            ax.plot([xc[j]], [yc[i]], linestyle="none", marker="o", markersize=20, markerfacecolor="none",
                    markeredgecolor="black", markeredgewidth=1.6, zorder=4)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none",
                              markeredgecolor="black", markeredgewidth=1.6, label=best))
    if z.size <= 120:
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                if z.mask is not np.ma.nomask and z.mask[i, j]:
                    continue
                frac = float(norm(float(z[i, j])))
                dark = abs(frac - 0.5) > 0.3 if center is not None else frac < 0.55
                under_star = base_xy is not None and np.isclose(xc[j], base_xy[0]) and np.isclose(yc[i], base_xy[1])
                ax.annotate(cell_fmt(float(z[i, j])), (xc[j], yc[i]), xytext=(0, -11 if under_star else 0),
                            textcoords="offset points", ha="center", va="top" if under_star else "center",
                            fontsize=7, color="white" if dark else "black")
    for a, setter, ticks in ((xa, ax.set_xticks, xc), (ya, ax.set_yticks, yc)):
        if not a.numeric:
            setter(ticks, [literal(t) for t in a.values])
        elif len(ticks) <= 12:
            setter(ticks, [value_text(t) for t in ticks])
    ax.set_xlabel(literal(xa.label()))
    ax.set_ylabel(literal(ya.label()))
    ax.set_title(wrap(title, 95), fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    save(fig, name)


def best_cells(z: np.ma.MaskedArray) -> list[tuple[int, int]]:
    """(row, column) of each row's largest value (the first of equals); rows without a
    value are left out."""
    return [(i, int(np.ma.argmax(row))) for i, row in enumerate(z) if row.count()]


def line_plot(save, name, axis: AxisInfo, v: np.ndarray, *, ylabel: str, ref: float | None,
              ref_label: str, base: float | None, title: str, best: str | None = None) -> None:
    """v along a numeric axis as a line, or as bars by label (named_bars); with `best`
    (the legend's words), the largest value of a line is ringed."""
    fig = new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    colour = matplotlib.colormaps["viridis"](0.25)
    if axis.numeric:
        xc, order = coords(axis)
        ax.plot(xc, v[order], marker="o", color=colour, linewidth=2)
        if best is not None:
            for _, j in best_cells(np.ma.masked_invalid(v[order][None, :])):
                ax.plot([xc[j]], [v[order][j]], linestyle="none", marker="o", markersize=16,
                        markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.6, label=best)
        if axis.neutral is not None:
            ax.axvline(axis.neutral, color="0.4", linestyle=":", linewidth=1.2, label="neutral (no shock)")
        if ref is not None:
            ax.axhline(ref, color="black", linewidth=1.2, linestyle="--", label=ref_label)
        ax.set_xlabel(literal(axis.label()))
        ax.set_ylabel(ylabel)
    else:  # labelled (named scenarios): bars against the base case, the change written at each
        named_bars(fig, ax, axis, v, colour, ylabel=ylabel, ref=ref, ref_label=ref_label, base=base)
    ax.grid(alpha=0.3)
    ax.set_title(wrap(title, 90), fontsize=10)
    fig.set_layout_engine("constrained")
    if not ax.get_legend_handles_labels()[0]:
        pass
    elif axis.numeric:
        ax.legend(fontsize=8, loc="best")
    else:  # below the chart, clear of the bars and their numbers
        fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=3)
    save(fig, name)


def tornado_bars(save, name, rows: list[dict], currency: str, title: str, *,
                 xlabel: str | None = None, labels: tuple[str, str] | None = None) -> None:
    """Horizontal bars of rows {cluster, parameter, up, down[, step]} (NPV changes in the
    currency). A step parameter (tornado.STEP_PARAMS) is marked * with the footnote
    "linear estimate unreliable: step parameter" under the chart and drawn paler."""
    from .tornado import STEP_MARK, STEP_NOTE

    fig = new_figure(8.4, 1.9 + 0.36 * max(len(rows), 1))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    labels = labels or (f"+{TORNADO_MOVE_PCT:g} %", f"−{TORNADO_MOVE_PCT:g} %")
    ticks = [literal(f"{r['cluster']} · {r['parameter']}" + (STEP_MARK if r.get("step") else "")) for r in rows]
    pos = np.arange(len(rows))
    up = np.array([r["up"] for r in rows], dtype=float) / 1e6
    down = np.array([r["down"] for r in rows], dtype=float) / 1e6
    alpha = np.array([0.45 if r.get("step") else 1.0 for r in rows])
    cm = matplotlib.colormaps["cividis"]
    for i in range(len(rows)):
        ax.barh(pos[i], up[i], color=cm(0.85), edgecolor="black", linewidth=0.5, alpha=alpha[i],
                label=labels[0] if i == 0 else None)
        ax.barh(pos[i], down[i], color=cm(0.15), edgecolor="black", linewidth=0.5, hatch="//", alpha=alpha[i],
                label=labels[1] if i == 0 else None)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(pos, ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or f"NPV change for ±{TORNADO_MOVE_PCT:g} % of the parameter, first order (M {currency})")
    ax.set_title(wrap(title, 80), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if any(r.get("step") for r in rows):
        fig.supxlabel(f"{STEP_MARK} {STEP_NOTE} (its effect moves in steps; the gradient is the slope "
                      "between them, paler bars)", fontsize=8, x=0.01, ha="left")
    save(fig, name)


def build(f, path: Path, plan: Plan, save, notes: list[str]) -> dict:
    """The grid's tables and figures: heatmaps over plan.x and plan.y, or lines (bars for
    labels) along plan.line, the "when to buy" figures where an axis moves the order month
    (plan.buy), the tornado of a sensitivities file, and the base case's revenue by
    industry where the file has it (version 2)."""
    currency = str(attr(f, "currency", "USD"))
    tables: dict = {}
    base, clusters, held_title = summary_tables(f, plan, tables)
    figs = {}
    if plan.x and plan.y:
        draw_heatmaps(f, plan, save, tables, figs, currency, held_title)
    elif plan.line:
        draw_lines(f, plan, save, tables, figs, currency, held_title, base)
    else:
        notes.append("Every axis of this grid has one value (or is held): no heatmap or line plot to draw.")
    if plan.buy is not None:
        draw_when_to_buy(f, plan.buy, save, tables, figs, currency, base)
    if plan.kind == "sensitivities" and "npv_per_pct" in f:
        draw_tornado(f, plan, save, notes, tables, figs, currency, clusters)
    if INDUSTRY_REVENUE in f:
        draw_industry_revenue(f, save, tables, figs, currency, clusters)
    return {"tables": tables, "captions": figs, "currency": currency, "held_title": held_title}


def summary_tables(f, plan: Plan, tables: dict) -> tuple[dict, list[str], str]:
    """Fills tables' summary (base case, worst and best NPV and IRR over the whole grid;
    where the file has a platform layer, each row's platform NPV and its share of the
    portfolio's, report.platform_share), base_by_cluster and held; returns the base case's
    outputs, the clusters and the title part saying where the other axes are held."""
    axes = plan.axes
    shape = f["npv"].shape
    # summary: base case, worst and best NPV and IRR over the whole grid
    outs = [k for k in ("npv", "irr", "roi") if k in f]
    base = {k: float(f["base"][k][()]) for k in outs if k in f["base"]}
    from .report import merge_cases, platform_share

    rows = [{"case": "base case (no shock)", "point": {}, "outputs": [], **base}]
    platform = [float(f[BASE_GROUP][PLATFORM_NPV][()])] if PLATFORM_NPV in f else None
    for label, fn in (("worst", np.argmin), ("best", np.argmax)):
        hits = [(out, extreme(f[out], fn)) for out in ("npv", "irr", "roi") if out in f]
        # one row for a point that is the worst (best) of several outputs: "worst NPV, IRR, ROI"
        for case, names, flat in merge_cases(label, [(out, hit[0]) for out, hit in hits if hit is not None]):
            idx = np.unravel_index(flat, shape) if shape else ()
            point = {a.name: (a.values[i].item() if hasattr(a.values[i], "item") else a.values[i])
                     for a, i in zip(axes, idx)}
            rows.append({"case": case, "outputs": names, "point": point, **{k: float(f[k][idx]) for k in outs}})
            if platform is not None:
                platform.append(float(f[PLATFORM_NPV][idx]))
    if platform is not None:
        for row, value in zip(rows, platform):
            row[PLATFORM_NPV] = value
            row["platform_share"] = platform_share(value, row.get("npv", math.nan))
    tables["summary"] = rows

    # base case per cluster
    clusters = [str(c) for c in strings(f["cluster"][()])] if "cluster" in f else []
    per_cluster = []
    for i, c in enumerate(clusters):
        row = {"cluster": c}
        for k in outs:
            key = f"cluster_{k}"
            if key in f["base"]:
                row[k] = float(np.asarray(f["base"][key][()])[i])
        per_cluster.append(row)
    tables["base_by_cluster"] = per_cluster

    tables["held"] = held_values(plan)
    return base, clusters, held_text(plan)


def held_text(plan: Plan) -> str:
    """The part of a title that says where the axes not drawn are held."""
    by_name = {a.name: a for a in plan.axes}
    desc = ", ".join(f"{n} = {value_text(by_name[n].values[i])} ({how})" for n, (i, how) in plan.held.items())
    return f"held: {desc}" if desc else "no other axes to hold"


def held_values(plan: Plan) -> dict:
    """{axis: value} where each axis not drawn is held."""
    by_name = {a.name: a for a in plan.axes}
    return {n: (by_name[n].values[i].item() if hasattr(by_name[n].values[i], "item") else by_name[n].values[i])
            for n, (i, _) in plan.held.items()}


def slab(f, plan: Plan, out: str, keep: list[str]) -> np.ndarray:
    """The output `out` over the axes `keep` (in that order), every other axis held."""
    sel = tuple(slice(None) if a.name in keep else plan.held[a.name][0] for a in plan.axes)
    v = np.asarray(f[out][sel], dtype=np.float64)
    order = [a.name for a in plan.axes if a.name in keep]
    return v.transpose([order.index(n) for n in keep]) if len(keep) > 1 else v


def plain(v):
    return [t.item() if hasattr(t, "item") else t for t in v]


def draw_heatmaps(f, plan: Plan, save, tables: dict, figs: dict, currency: str, held_title: str) -> None:
    by_name = {a.name: a for a in plan.axes}
    xa, ya = by_name[plan.x], by_name[plan.y]
    base_xy = base_in_plane(plan, by_name)
    tables["heatmap"] = {"x": plan.x, "y": plan.y, "x_values": plain(xa.values), "y_values": plain(ya.values),
                         "base_case": list(base_xy) if base_xy else None,
                         **{k: slab(f, plan, k, [plan.y, plan.x]).tolist() for k in ("npv", "irr") if k in f}}
    where_base = (f" The star marks the base case (no shock: {plan.x} = {value_text(base_xy[0])}, {plan.y} = "
                  f"{value_text(base_xy[1])})." if base_xy else
                  " The base case (no shock) is not in this plane: no star.")
    if "npv" in f:
        z = slab(f, plan, "npv", [plan.y, plan.x]) / 1e6
        heatmap(save, "npv_heatmap.png", xa, ya, z, cbar=f"NPV (M {currency})", cmap="RdBu",
                level=0.0, level_label="NPV = 0", title=f"Portfolio NPV (M {currency}); {held_title}",
                cell_fmt=lambda v: f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}", center=0.0, base_xy=base_xy)
        figs["npv_heatmap.png"] = (f"Portfolio NPV over {plan.x} and {plan.y}; {held_title}. Red: a loss, "
                                   f"blue: a gain, white: NPV = 0 (the black line).{where_base}")
    if "irr" in f:
        z = slab(f, plan, "irr", [plan.y, plan.x]) * 100
        lvl = rate_level(f, plan)
        heatmap(save, "irr_heatmap.png", xa, ya, z, cbar="IRR (% per year)",
                cmap="cividis" if lvl is None else "RdBu",
                level=lvl, level_label=f"IRR = discount rate ({lvl:g} %)" if lvl is not None else "",
                title=f"Portfolio IRR (% per year); {held_title}", cell_fmt=lambda v: f"{v:.1f}",
                center=lvl, base_xy=base_xy)
        centred = "" if lvl is None else f" White: IRR = the discount rate ({lvl:g} %), where NPV = 0."
        figs["irr_heatmap.png"] = (f"Portfolio IRR over {plan.x} and {plan.y}; {held_title}.{centred} "
                                   f"Grey cells: no IRR (no sign change of the cash flows).{where_base}")


def draw_lines(f, plan: Plan, save, tables: dict, figs: dict, currency: str, held_title: str,
               base: dict) -> None:
    """Lines along plan.line, or bars by name (named_bars) where its values are labels."""
    by_name = {a.name: a for a in plan.axes}
    la = by_name[plan.line]
    tables["line"] = {"axis": plan.line, "values": plain(la.values),
                      **{k: slab(f, plan, k, [plan.line]).tolist() for k in ("npv", "irr") if k in f}}
    # a labelled axis (the named scenarios) is a bar chart by name against the base case
    what = "named scenario" if plan.line == "scenario" else plan.line
    held = "" if not plan.held else f"; {held_title}"
    names = {k: (f"named_{k}.png" if not la.numeric else f"{k}_line.png") for k in ("npv", "irr")}
    titles = {k: (f"{label} by {what} vs base case{held}" if not la.numeric
                  else f"Portfolio {label} along {plan.line}; {held_title}")
              for k, label in (("npv", "NPV"), ("irr", "IRR"))}
    if "npv" in f:
        line_plot(save, names["npv"], la, slab(f, plan, "npv", [plan.line]) / 1e6,
                  ylabel=f"NPV (M {currency})", ref=0.0, ref_label="NPV = 0",
                  base=base.get("npv", math.nan) / 1e6, title=titles["npv"])
        figs[names["npv"]] = (f"{titles['npv']}: each bar the portfolio NPV (M {currency}) with its change "
                              "against the base case (no shock, the dotted line)." if not la.numeric
                              else f"{titles['npv']}.")
    if "irr" in f:
        ref = rate_level(f, plan)
        line_plot(save, names["irr"], la, slab(f, plan, "irr", [plan.line]) * 100,
                  ylabel="IRR (% per year)", ref=ref, ref_label=f"discount rate ({ref:g} %)" if ref is not None else "",
                  base=base.get("irr", math.nan) * 100, title=titles["irr"])
        figs[names["irr"]] = (f"{titles['irr']}: each bar the portfolio IRR (% per year) with its change "
                              "against the base case (percentage points)." if not la.numeric
                              else f"{titles['irr']}.")


def draw_when_to_buy(f, plan: Plan, save, tables: dict, figs: dict, currency: str, base: dict) -> None:
    """The "when to buy" figures (plan: fig_read.plan_when_to_buy): the portfolio NPV and
    IRR over the order-month axis (across) and the other axis, each row's best order month
    ringed, or along the order-month axis alone as lines with the best month ringed; their
    table gives the best order month by NPV and by IRR for each value of the other axis."""
    by_name = {a.name: a for a in plan.axes}
    month = plan.x or plan.line
    other = plan.y
    ma = by_name[month]
    held = held_text(plan)
    keep = [other, month] if other else [month]
    values = {k: slab(f, plan, k, keep) for k in ("npv", "irr") if k in f}
    rows = []
    for i, v in enumerate(by_name[other].values if other else [None]):
        row = {other: plain([v])[0]} if other else {}
        for k, z in values.items():
            z = np.atleast_2d(z)[i]
            ok = np.isfinite(z)
            j = int(np.argmax(np.where(ok, z, -np.inf))) if ok.any() else None
            row[f"best_by_{k}"] = plain([ma.values[j]])[0] if j is not None else None
            row[k] = float(z[j]) if j is not None else math.nan
        rows.append(row)
    tables[WHEN_TO_BUY] = {"axis": month, "other": other, "held": held_values(plan), "rows": rows}
    against = f" and {other}" if other else ""
    best = f"best {month}" + (f" for each {other}" if other else "")
    for k, label, unit, scale in (("npv", "NPV", f"M {currency}", 1e-6), ("irr", "IRR", "% per year", 100.0)):
        if k not in values:
            continue
        name = f"{WHEN_TO_BUY}_{k}.png"
        title = f"When to buy: portfolio {label} ({unit}) by {month}{against}; {held}"
        lvl = 0.0 if k == "npv" else rate_level(f, plan)
        lvl_label = "NPV = 0" if k == "npv" else f"IRR = discount rate ({lvl:g} %)" if lvl is not None else ""
        if other:
            heatmap(save, name, ma, by_name[other], values[k] * scale, cbar=f"{label} ({unit})",
                    cmap="cividis" if lvl is None else "RdBu", level=lvl, level_label=lvl_label, title=title,
                    cell_fmt=(lambda v: f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}") if k == "npv"
                    else (lambda v: f"{v:.1f}"), center=lvl, base_xy=base_in_plane(plan, by_name), best=best)
        else:
            line_plot(save, name, ma, values[k] * scale, ylabel=f"{label} ({unit})", ref=lvl, ref_label=lvl_label,
                      base=base.get(k, math.nan) * scale, title=title, best=best)
        figs[name] = (f"{title}. The clusters' order month moves the price paid (capex_decline) and every "
                      f"clock of the cluster; a ring marks the {best}, where the portfolio {label} is highest.")


def draw_tornado(f, plan: Plan, save, notes: list[str], tables: dict, figs: dict, currency: str,
                 clusters: list[str]) -> None:
    """The TORNADO_TOP (cluster, parameter) pairs that move the NPV most for ±TORNADO_MOVE_PCT,
    first order, at the grid point nearest the base case."""
    axes = plan.axes
    idx = {a.name: held_index(a) for a in axes}
    sel = tuple(idx[a.name][0] for a in axes)
    m = np.asarray(f["npv_per_pct"][sel], dtype=np.float64)  # (cluster, parameter)
    params = [str(p) for p in strings(f["parameter"][()])]
    swing = np.abs(m) * TORNADO_MOVE_PCT
    flat = [(float(swing[c, p]), c, p) for c in range(m.shape[0]) for p in range(m.shape[1])
            if np.isfinite(swing[c, p]) and swing[c, p] > 0]
    flat.sort(key=lambda t: -t[0])
    from .tornado import STEP_PARAMS

    trows = [{"cluster": clusters[c] if c < len(clusters) else str(c), "parameter": params[p],
              "up": float(m[c, p]) * TORNADO_MOVE_PCT, "down": -float(m[c, p]) * TORNADO_MOVE_PCT,
              "step": params[p] in STEP_PARAMS}
             for _, c, p in flat[:TORNADO_TOP]]
    point = {a.name: (a.values[idx[a.name][0]].item() if hasattr(a.values[idx[a.name][0]], "item")
                      else a.values[idx[a.name][0]]) for a in axes}
    exact = all(how == "neutral" for _, how in idx.values())
    where = ", ".join(f"{n} = {value_text(v)}" for n, v in point.items()) or "the base case"
    where_txt = f"{where} ({'the base case' if exact else 'the grid point nearest the base case'})"
    tables["tornado"] = {"point": point, "rows": trows}
    if trows:
        tornado_bars(save, "tornado.png", trows, currency,
                     f"Top {len(trows)} (cluster, parameter) by NPV change for ±{TORNADO_MOVE_PCT:g} %\nat {where_txt}")
        step_note = (" * after a name marks a step parameter: linear estimate unreliable (stresstest "
                     "sensitivities gives the exact change)." if any(r["step"] for r in trows) else "")
        figs["tornado.png"] = (f"Tornado at {where_txt}: first-order change of the portfolio NPV for a "
                               f"±{TORNADO_MOVE_PCT:g} % move of one cluster's parameter (npv_per_pct × "
                               f"{TORNADO_MOVE_PCT:g}).{step_note}")
    else:
        notes.append("No parameter moves the NPV at the base case: no tornado chart.")


INDUSTRY_REVENUE = "revenue_by_industry"
PORTFOLIO_BAR = "portfolio"


def draw_industry_revenue(f, save, tables: dict, figs: dict, currency: str, clusters: list[str]) -> None:
    """The base case's revenue over months 1..T by industry: one stacked bar per cluster
    and one for the portfolio (its revenue_by_industry, which the clusters' rows add up
    to), a segment per industry label; `unlabelled` in grey."""
    base = f[BASE_GROUP]
    industries = [str(s) for s in strings(f[INDUSTRY_DIM][()])]
    rows = [*zip(clusters, np.asarray(base["cluster_" + INDUSTRY_REVENUE][()], dtype=np.float64)),
            (PORTFOLIO_BAR, np.asarray(base[INDUSTRY_REVENUE][()], dtype=np.float64))]
    tables[INDUSTRY_REVENUE] = {"industries": industries,
                                "rows": [{"scope": n, **dict(zip(industries, map(float, v)))} for n, v in rows]}
    fig = new_figure(max(6.0, 2.2 + 0.9 * len(rows)), 5.0)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(rows), dtype=float)
    pos[-1] += 0.5  # the portfolio's bar apart from the clusters'
    values = np.array([v for _, v in rows]) / 1e6  # (bar, industry), M
    palette = matplotlib.colormaps["tab10"]
    bottom = np.zeros(len(rows))
    for j, industry in enumerate(industries):
        colour = "0.7" if industry == UNLABELLED else palette(j % 10)
        ax.bar(pos, values[:, j], bottom=bottom, color=colour, edgecolor="black", linewidth=0.5,
               label=literal(industry))
        bottom += values[:, j]
    ax.set_xticks(pos, [literal(n) for n, _ in rows])
    ax.axvline(pos[-1] - 0.75, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_ylabel(f"revenue, months 1..T (M {currency})")
    ax.set_title(wrap("Base case revenue by industry, per cluster and for the portfolio", 80), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper", title="industry")
    save(fig, "revenue_by_industry.png")
    figs["revenue_by_industry.png"] = (f"Base case (no shock): revenue over months 1..T (M {currency}) by the "
                                       "industry of its contracts and segments, one bar per cluster and the "
                                       "portfolio's on the right; unlabelled: items without an industry.")


def body(res: dict) -> list[str]:
    from .report import share_text

    cur = res["currency"]
    t = res["tables"]
    parts = ["<h2>Summary</h2>", "<p>Base case, and the worst and best grid points of the whole grid.</p>"]
    outs = [k for k in ("npv", "irr", "roi") if any(k in r for r in t["summary"])]
    platform = any(PLATFORM_NPV in r for r in t["summary"])
    extra = [f"platform NPV (M {cur})", "platform share of NPV"] if platform else []
    parts.append(table(["case", *(header(k, cur) for k in outs), *extra, "grid point"],
                        [[r["case"], *(fmt(k, r.get(k, math.nan)) for k in outs),
                          *((fmt_money(r[PLATFORM_NPV]), share_text(r["platform_share"], table=True))
                            if platform else ()),
                          ", ".join(f"{n}={value_text(v)}" for n, v in r["point"].items()) or "-"]
                         for r in t["summary"]], num_cols=range(1, 1 + len(outs) + len(extra))))
    if platform:
        parts.append("<p>The platform layer's NPV is part of the portfolio's (the clusters' exclude it); its "
                     "share is platform NPV / portfolio NPV, n/a where the portfolio NPV is not positive.</p>")
    if t["base_by_cluster"]:
        parts.append("<h3>Base case by cluster</h3>")
        parts.append(table(["cluster", *(header(k, cur) for k in outs)],
                            [[r["cluster"], *(fmt(k, r.get(k, math.nan)) for k in outs)]
                             for r in t["base_by_cluster"]], num_cols=range(1, 1 + len(outs))))
    if "tornado" in t and t["tornado"]["rows"]:
        parts.append("<h3>Tornado (first order)</h3>")
        parts.append(table(["cluster", "parameter", f"NPV change +{TORNADO_MOVE_PCT:g} % (M {cur})",
                             f"NPV change −{TORNADO_MOVE_PCT:g} % (M {cur})"],
                            [[r["cluster"], r["parameter"] + ("*" if r.get("step") else ""), fmt_money(r["up"]),
                              fmt_money(r["down"])] for r in t["tornado"]["rows"]], num_cols=(2, 3)))
        if any(r.get("step") for r in t["tornado"]["rows"]):
            from .tornado import STEP_NOTE

            parts.append(f"<p>* {escape(STEP_NOTE)}</p>")
    if WHEN_TO_BUY in t:
        parts += when_to_buy_table(t[WHEN_TO_BUY], cur)
    if INDUSTRY_REVENUE in t:
        by = t[INDUSTRY_REVENUE]
        parts.append(f"<h3>Base case revenue by industry (M {escape(cur)}, months 1..T)</h3>")
        parts.append(table(["", *by["industries"], "total"],
                            [[r["scope"], *(fmt_money(r[i]) for i in by["industries"]),
                              fmt_money(sum(r[i] for i in by["industries"]))] for r in by["rows"]],
                            num_cols=range(1, 2 + len(by["industries"]))))
    return parts


def when_to_buy_table(buy: dict, currency: str) -> list[str]:
    """The best order month by NPV and by IRR, for each value of the other axis."""
    other, month = buy["other"], buy["axis"]
    head = ([other] if other else []) + [f"best {month} by NPV", header("npv", currency),
                                         f"best {month} by IRR", header("irr", currency)]
    rows = [([value_text(r[other])] if other else [])
            + [value_text(r["best_by_npv"]) if r.get("best_by_npv") is not None else "n/a", fmt("npv", r.get("npv")),
               value_text(r["best_by_irr"]) if r.get("best_by_irr") is not None else "n/a", fmt("irr", r.get("irr"))]
            for r in buy["rows"]]
    first = 1 if other else 0
    return [f"<h3>When to buy: the best {escape(month)}</h3>", table(head, rows, num_cols=range(first, first + 4))]
