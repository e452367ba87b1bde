"""Reports: PNG figures and one self-contained HTML page from a result file.

`make_report(result, out_dir, x=None, y=None, at=None)` reads a result file of any kind
and writes into `out_dir`:

- grid files: heatmaps of the portfolio NPV and IRR over two axes (`x` across, `y` up;
  by default the first two axes with more than one value), every other axis held at
  `at[axis]` or at its neutral value (the coordinate's `neutral` attribute if that value
  is on the axis, else the value nearest to it, else the middle value), in a diverging
  colour map (RdBu, matplotlib's TwoSlopeNorm) white at NPV = 0 and at IRR = discount
  rate, with those contours where the data cross them and a star at the base case
  where it lies in the plane. A grid with one varying axis gets line plots instead;
  a labelled axis (the named scenarios) gets `named_npv.png` and `named_irr.png`, bars
  from the base case to each scenario's value;
- sensitivity files (`run --sensitivities`), in addition: a tornado chart of the 15
  (cluster, parameter) pairs that move the portfolio NPV most for a +-10 % move,
  first order (`npv_per_pct` x 10), at the grid point nearest the base case; step
  parameters (tornado.STEP_PARAMS) marked * "linear estimate unreliable";
- Monte Carlo files: the NPV histogram (needs the per-path NPVs of `--save-paths`) and
  CDF with VaR 95 and CVaR 95 marked (as the terminal gives them, losses, at the NPV
  they come from), the fan chart of the cumulative cash flow, and with
  `--sensitivities` the pathwise changes of mean NPV and CVaR 95 for +1 % of each
  value (`mc_sensitivities.png`);
- breakeven curves (`breakeven --over`): the breakeven value along the axis, per scope;

then `report.html`, which holds the same PNGs as data URIs (base64), so that the page
alone can be mailed or moved: it refers to no other file. Every argument
is checked before anything is written; the files are rendered into a temporary folder
beside `out_dir` and moved into place only when all of them are complete, so a failure
leaves nothing in `out_dir`. Bad arguments raise `ConfigError` naming the file and option.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a backend already in use
    matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .config import ConfigError
from .formats import fmt as table_fmt
from .formats import money, num, pct
from .kernels.params import NAMED_SHOCKS, PARAMS, PORTFOLIO_PARAMS

DPI = 120
TORNADO_TOP = 15
TORNADO_MOVE_PCT = 10.0
_CHUNK_ELEMS = 1 << 20
_FAN = (0.05, 0.25, 0.5, 0.75, 0.95)

# --------------------------------------------------------------------------- formats


def fmt_money(v: float) -> str:
    return money(v, table=True)


def fmt_pct(v: float, digits: int = 2) -> str:
    return pct(v, digits, table=True)


def fmt_num(v: float) -> str:
    return num(v, table=True)


def fmt(name: str, v: float) -> str:
    return table_fmt(name, v, table=True)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _header(name: str, currency: str) -> str:
    return {"npv": f"NPV (M {currency})", "irr": "IRR", "roi": "ROI", "equity_irr": "equity IRR",
            "min_dscr": "min DSCR", "payback_months": "payback (months)"}.get(name, name)


def _mt(s) -> str:
    """Text from a file, shown literally by matplotlib (a `$` would start mathtext)."""
    return str(s).replace("$", r"\$")


def _g(v) -> str:
    """An axis value for titles and tables."""
    if isinstance(v, (str, bytes)):
        return v.decode() if isinstance(v, bytes) else v
    return f"{float(v):g}"


# --------------------------------------------------------------------------- file layout


@dataclass
class AxisInfo:
    name: str
    values: np.ndarray
    op: str | None = None
    targets: tuple[str, ...] = ()
    neutral: float | None = None

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind in "iuf"

    def label(self) -> str:
        return _param_label(self.name, self.op, self.targets)


def _unit(param: str) -> str:
    p = PARAMS.get(param) or PORTFOLIO_PARAMS.get(param)
    u = p.unit if p else ""
    return "months" if u == "month" else u


def _param_label(name: str, op: str | None, targets) -> str:
    targets = tuple(targets or ())
    if op == "scale":
        if targets == (name,) or not targets:
            return f"{name} (scale of its base value)"
        return f"{name} (scale of base {', '.join(targets)})"
    unit = _unit(targets[0]) if targets else _unit(name)
    if op == "shift":
        return f"{name} (shift, {unit})" if unit else f"{name} (shift)"
    return f"{name} ({unit})" if unit else name


def _strings(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "OSU":
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()], dtype=object)
    return a


def _attr(obj, key, default=None):
    v = obj.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _kind(f) -> str | None:
    if _attr(f, "kind") == "montecarlo" and "npv" in f and "statistic" in f:
        return "montecarlo"
    if "breakeven" in f and "over" in f.attrs:
        return "breakeven"
    if "npv" in f and "config" in f.attrs and "base" in f:
        return "sensitivities" if "npv_per_pct" in f else "grid"
    return None


def _axes(f) -> list[AxisInfo]:
    ds = f["npv"]
    names = []
    for i in range(ds.ndim):
        scales = ds.dims[i]
        names.append(scales[0].name.rsplit("/", 1)[-1] if len(scales) else None)
    if any(n is None or n not in f for n in names):
        try:
            cfg_axes = json.loads(_attr(f, "config"))["scenario"]["axes"]
            names = [a["name"] for a in cfg_axes]
        except Exception:  # noqa: BLE001
            names = [n or f"axis{i}" for i, n in enumerate(names)]
    out = []
    for n in names:
        if n in f:
            d = f[n]
            neutral = _attr(d, "neutral")
            targets = _attr(d, "targets", "")
            out.append(AxisInfo(n, _strings(d[()]), _attr(d, "op"),
                                tuple(t for t in str(targets).split(",") if t),
                                float(neutral) if neutral is not None else None))
        else:
            out.append(AxisInfo(n, np.arange(ds.shape[len(out)])))
    return out


def _on_axis(axis: AxisInfo, value: float) -> int | None:
    vals = axis.values.astype(float)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(vals))) if vals.size else 1.0)
    hits = np.flatnonzero(np.abs(vals - value) <= tol)
    return int(hits[0]) if hits.size else None


def _held_index(axis: AxisInfo) -> tuple[int, str]:
    """Where an axis is held by default: its neutral value, the value nearest it, or the middle."""
    if axis.numeric and axis.neutral is not None and axis.values.size:
        i = _on_axis(axis, axis.neutral)
        if i is not None:
            return i, "neutral"
        i = int(np.argmin(np.abs(axis.values.astype(float) - axis.neutral)))
        return i, f"nearest to neutral {axis.neutral:g}"
    return len(axis.values) // 2, "middle value"


# --------------------------------------------------------------------------- plan (validation)


@dataclass
class Plan:
    kind: str
    axes: list[AxisInfo] = field(default_factory=list)
    x: str | None = None
    y: str | None = None
    line: str | None = None  # the one axis of line plots
    held: dict[str, tuple[int, str]] = field(default_factory=dict)  # axis -> (index, how)


def _plan_grid(path: Path, axes: list[AxisInfo], x, y, at: dict) -> tuple[Plan, list[str]]:
    problems: list[str] = []
    names = [a.name for a in axes]
    by_name = {a.name: a for a in axes}
    known = ", ".join(names) or "none"
    for opt, v in (("--x", x), ("--y", y)):
        if v is not None and v not in by_name:
            problems.append(f"{path}: {opt}: unknown axis {v!r} (axes: {known})")
    if x is not None and x == y:
        problems.append(f"{path}: --x/--y: both name the axis {x!r}; give two different axes")
    held_at: dict[str, int] = {}
    for k, v in at.items():
        if k not in by_name:
            problems.append(f"{path}: --at: unknown axis {k!r} (axes: {known})")
            continue
        if k in (x, y):
            which = "--x" if k == x else "--y"
            problems.append(f"{path}: --at: {k}: is the heatmap's {which} axis; it cannot also be held")
            continue
        a = by_name[k]
        try:
            value = float(v)
        except (TypeError, ValueError):
            problems.append(f"{path}: --at: {k}: value must be a number, got {v!r}")
            continue
        if not a.numeric:
            problems.append(f"{path}: --at: {k}: the axis holds labels ({', '.join(map(str, a.values))}), "
                            "not numbers")
            continue
        i = _on_axis(a, value) if math.isfinite(value) else None
        if i is None:
            problems.append(f"{path}: --at: {k}={value:g}: not a value of the axis "
                            f"(values: {', '.join(_g(t) for t in a.values)})")
            continue
        held_at[k] = i
    if problems:
        return Plan("grid"), problems
    free = [a.name for a in axes if len(a.values) > 1 and a.name not in at]
    line = None
    if x is None and y is None:
        if len(free) >= 2:
            x, y = free[0], free[1]
        elif len(free) == 1:
            line = free[0]
    elif y is None:
        rest = [n for n in free if n != x]
        if rest:
            y = rest[0]
        else:
            line, x = x, None
    elif x is None:
        rest = [n for n in free if n != y]
        if rest:
            x = rest[0]
        else:
            line, y = y, None
    plotted = {n for n in (x, y, line) if n}
    held = {}
    for a in axes:
        if a.name in plotted:
            continue
        held[a.name] = (held_at[a.name], "--at") if a.name in held_at else _held_index(a)
    return Plan("grid", axes, x, y, line, held), []


# --------------------------------------------------------------------------- figures


def _new_figure(w=7.0, h=5.0) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, folder: Path, name: str, written: list[str]) -> None:
    try:
        fig.savefig(folder / name, dpi=DPI, format="png")
    finally:
        fig.clear()
    written.append(name)


def _edges(v: np.ndarray) -> np.ndarray:
    v = v.astype(float)
    if v.size == 1:
        half = 0.5 if v[0] == 0 else 0.1 * abs(v[0])
        return np.array([v[0] - half, v[0] + half])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _coords(axis: AxisInfo) -> tuple[np.ndarray, np.ndarray]:
    """Plot positions and the order that sorts them (labels: positions 0..n-1)."""
    if axis.numeric:
        order = np.argsort(axis.values.astype(float), kind="stable")
        return axis.values.astype(float)[order], order
    return np.arange(len(axis.values), dtype=float), np.arange(len(axis.values))


def _diverging_norm(finite: np.ndarray, center: float):
    """A TwoSlopeNorm with vcenter=center over the data; where every value lies on one side
    of it, the empty side mirrors the full one, so the colour of the centre stays white."""
    from matplotlib.colors import TwoSlopeNorm

    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (center - 1.0, center + 1.0)
    if not lo < center < hi:
        half = max(abs(lo - center), abs(hi - center)) or 1.0
        lo, hi = min(lo, center - half), max(hi, center + half)
    return TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)


def _heatmap(folder, name, written, xa: AxisInfo, ya: AxisInfo, z: np.ndarray, *, cbar: str,
             cmap: str, level: float | None, level_label: str, title: str, cell_fmt,
             center: float | None = None, base_xy: tuple[float, float] | None = None) -> None:
    """z: (ny, nx) in the axes' stored order, already in the plotted unit. With `center`, a
    diverging colour map (`cmap`, e.g. RdBu) whose white is at that value (NPV = 0); with
    `base_xy`, the base case (no shock) is marked at that point of the plane."""
    xc, xo = _coords(xa)
    yc, yo = _coords(ya)
    z = np.ma.masked_invalid(z[np.ix_(yo, xo)])
    fig = _new_figure(7.6, 5.6)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    cm = matplotlib.colormaps[cmap].with_extremes(bad="0.85")
    finite = z.compressed()
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    if center is not None:
        norm = _diverging_norm(finite, center)
        mesh = ax.pcolormesh(_edges(xc), _edges(yc), z, cmap=cm, norm=norm, shading="flat")
    else:
        from matplotlib.colors import Normalize

        norm = Normalize(vmin=vmin, vmax=vmax)
        mesh = ax.pcolormesh(_edges(xc), _edges(yc), z, cmap=cm, norm=norm, shading="flat")
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
            setter(ticks, [_mt(t) for t in a.values])
        elif len(ticks) <= 12:
            setter(ticks, [_g(t) for t in ticks])
    ax.set_xlabel(_mt(xa.label()))
    ax.set_ylabel(_mt(ya.label()))
    ax.set_title(_wrap(title, 95), fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    _save(fig, folder, name, written)


def _wrap(text: str, width: int) -> str:
    """A title for matplotlib (literal `$`), wrapped at `width` characters a line."""
    import textwrap

    text = _mt(text).replace(" %", "\u00a0%")  # never "10" at a line's end and "%" on the next
    return "\n".join(textwrap.fill(part, width, break_on_hyphens=False) for part in text.split("\n"))


def _line(folder, name, written, axis: AxisInfo, v: np.ndarray, *, ylabel: str, ref: float | None,
          ref_label: str, base: float | None, title: str) -> None:
    fig = _new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    colour = matplotlib.colormaps["viridis"](0.25)
    if axis.numeric:
        xc, order = _coords(axis)
        ax.plot(xc, v[order], marker="o", color=colour, linewidth=2)
        if axis.neutral is not None:
            ax.axvline(axis.neutral, color="0.4", linestyle=":", linewidth=1.2, label="neutral (no shock)")
        if ref is not None:
            ax.axhline(ref, color="black", linewidth=1.2, linestyle="--", label=ref_label)
        ax.set_xlabel(_mt(axis.label()))
        ax.set_ylabel(ylabel)
    else:  # labelled (named scenarios): bars against the base case, the change written at each
        fig.set_size_inches(7.6, 1.6 + 0.45 * max(len(axis.values), 1))
        pos = np.arange(len(axis.values))
        vals = np.where(np.isfinite(v), v, 0.0)
        has_base = base is not None and _finite(base)
        div = matplotlib.colormaps["RdBu"]
        colours = [colour if not has_base else div(0.2) if x < base else div(0.8) for x in vals]
        start = base if has_base else 0.0  # each bar runs from the base case to the scenario's value
        ax.barh(pos, vals - start, left=start, color=colours, edgecolor="black", linewidth=0.5)
        ax.set_yticks(pos, [_mt(t) for t in axis.values])
        ax.invert_yaxis()
        if ref is not None:
            ax.axvline(ref, color="black", linewidth=1.2, linestyle="--", label=ref_label)
        if has_base:
            ax.axvline(base, color="0.25", linewidth=1.8, linestyle=":", label=f"base case ({base:,.1f})")
            for i, (x, raw) in enumerate(zip(vals, v)):
                text = f"{raw:,.1f} ({raw - base:+,.1f})" if np.isfinite(raw) else "n/a"
                ax.annotate(text, (x, i), xytext=(-4 if x < base else 4, 0), textcoords="offset points",
                            ha="right" if x < base else "left", va="center", fontsize=8,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
            ax.plot([], [], linestyle="none", marker="s", color=div(0.2), label="below the base case")
            ax.plot([], [], linestyle="none", marker="s", color=div(0.8), label="above the base case")
            ax.plot([], [], linestyle="none", label="numbers: value (change vs base)")
            lo, hi = min(float(vals.min()), base, ref or base), max(float(vals.max()), base, ref or base)
            pad = 0.3 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel(ylabel)
        ax.set_ylabel(_mt(axis.name))
    ax.grid(alpha=0.3)
    ax.set_title(_wrap(title, 90), fontsize=10)
    fig.set_layout_engine("constrained")
    if not ax.get_legend_handles_labels()[0]:
        pass
    elif axis.numeric:
        ax.legend(fontsize=8, loc="best")
    else:  # below the chart, clear of the bars and their numbers
        fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=3)
    _save(fig, folder, name, written)


def _tornado(folder, name, written, rows: list[dict], currency: str, title: str, *,
             xlabel: str | None = None, labels: tuple[str, str] | None = None) -> None:
    """Horizontal bars of rows {cluster, parameter, up, down[, step]} (NPV changes in the
    currency). A step parameter (tornado.STEP_PARAMS) is marked * with the footnote
    "linear estimate unreliable: step parameter" under the chart and drawn paler."""
    from .tornado import STEP_MARK, STEP_NOTE

    fig = _new_figure(8.4, 1.9 + 0.36 * max(len(rows), 1))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    labels = labels or (f"+{TORNADO_MOVE_PCT:g} %", f"−{TORNADO_MOVE_PCT:g} %")
    ticks = [_mt(f"{r['cluster']} · {r['parameter']}" + (STEP_MARK if r.get("step") else "")) for r in rows]
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
    ax.set_title(_wrap(title, 80), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if any(r.get("step") for r in rows):
        fig.supxlabel(f"{STEP_MARK} {STEP_NOTE} (its effect moves in steps; the gradient is the slope "
                      "between them, paler bars)", fontsize=8, x=0.01, ha="left")
    _save(fig, folder, name, written)


# --------------------------------------------------------------------------- grid reports


def _extreme(ds, fn) -> tuple[int, float] | None:
    """(flat index, value) of the smallest (fn=np.argmin) or largest finite value, chunk by chunk."""
    if ds.ndim == 0:
        v = float(ds[()])
        return (0, v) if math.isfinite(v) else None
    per = int(np.prod(ds.shape[1:], dtype=np.int64)) if ds.ndim > 1 else 1
    step = max(1, _CHUNK_ELEMS // max(per, 1))
    best = None
    for i in range(0, ds.shape[0], step):
        a = np.asarray(ds[i:i + step], dtype=np.float64).ravel()
        ok = np.isfinite(a)
        if not ok.any():
            continue
        idx = np.flatnonzero(ok)
        j = idx[fn(a[idx])]
        v = float(a[j])
        better = best is None or (v < best[1] if fn is np.argmin else v > best[1])
        if better:
            best = (i * per + int(j), v)
    return best


def _provenance(f, path: Path, kind: str) -> list[tuple[str, str]]:
    rows = [("file", path.name), ("kind", {"grid": "stress grid", "sensitivities": "stress grid with sensitivities",
                                          "montecarlo": "Monte Carlo", "breakeven": "breakeven curve"}[kind])]
    keys = ["portfolio", "scenario", "created", "backend", "device", "dtype", "config_sha256",
            "stresstest_version", "model_version", "currency", "horizon_months", "discount_rate",
            "n_scenarios", "paths", "seed", "param", "target", "over"]
    for k in keys:
        v = _attr(f, k)
        if v is not None:
            rows.append((k, str(v)))
    return rows


def _base_in_plane(plan: Plan, by_name: dict[str, AxisInfo]) -> tuple[float, float] | None:
    """(x, y) of the base case (every shock neutral) where it lies in the heatmap's plane:
    both plotted axes have a neutral value within their span, every other axis is held at
    its neutral value. None otherwise (a held axis shocked, a `set` axis, labels)."""
    for n, (i, _) in plan.held.items():
        a = by_name[n]
        if not a.numeric or a.neutral is None or _on_axis(a, a.neutral) != i:
            return None
    xy = []
    for a in (by_name[plan.x], by_name[plan.y]):
        if not a.numeric or a.neutral is None:
            return None
        edges = _edges(np.sort(a.values.astype(float)))
        if not edges[0] <= a.neutral <= edges[-1]:
            return None
        xy.append(float(a.neutral))
    return xy[0], xy[1]


def _grid_report(f, path: Path, plan: Plan, folder: Path, written: list[str], notes: list[str]) -> dict:
    axes = plan.axes
    by_name = {a.name: a for a in axes}
    currency = str(_attr(f, "currency", "USD"))
    rate = _attr(f, "discount_rate")
    rate_is_axis = any("discount_rate" in a.targets or a.name == "discount_rate" for a in axes)
    shape = f["npv"].shape
    tables: dict = {}

    # summary: base case, worst and best NPV and IRR over the whole grid
    outs = [k for k in ("npv", "irr", "roi") if k in f]
    base = {k: float(f["base"][k][()]) for k in outs if k in f["base"]}
    from .report import merge_cases

    rows = [{"case": "base case (no shock)", "point": {}, "outputs": [], **base}]
    for label, fn in (("worst", np.argmin), ("best", np.argmax)):
        hits = [(out, _extreme(f[out], fn)) for out in ("npv", "irr", "roi") if out in f]
        # one row for a point that is the worst (best) of several outputs: "worst NPV, IRR, ROI"
        for case, names, flat in merge_cases(label, [(out, hit[0]) for out, hit in hits if hit is not None]):
            idx = np.unravel_index(flat, shape) if shape else ()
            point = {a.name: (a.values[i].item() if hasattr(a.values[i], "item") else a.values[i])
                     for a, i in zip(axes, idx)}
            rows.append({"case": case, "outputs": names, "point": point, **{k: float(f[k][idx]) for k in outs}})
    tables["summary"] = rows

    # base case per cluster
    clusters = [str(c) for c in _strings(f["cluster"][()])] if "cluster" in f else []
    per_cluster = []
    for i, c in enumerate(clusters):
        row = {"cluster": c}
        for k in outs:
            key = f"cluster_{k}"
            if key in f["base"]:
                row[k] = float(np.asarray(f["base"][key][()])[i])
        per_cluster.append(row)
    tables["base_by_cluster"] = per_cluster

    held_desc = ", ".join(f"{n} = {_g(by_name[n].values[i])} ({how})" for n, (i, how) in plan.held.items())
    held_title = f"held: {held_desc}" if held_desc else "no other axes to hold"
    tables["held"] = {n: (by_name[n].values[i].item() if hasattr(by_name[n].values[i], "item")
                          else by_name[n].values[i]) for n, (i, _) in plan.held.items()}

    def slab(out: str, keep: list[str]) -> np.ndarray:
        sel = tuple(slice(None) if a.name in keep else plan.held[a.name][0] for a in axes)
        v = np.asarray(f[out][sel], dtype=np.float64)
        order = [a.name for a in axes if a.name in keep]
        return v.transpose([order.index(n) for n in keep]) if len(keep) > 1 else v

    def plain(v):
        return [t.item() if hasattr(t, "item") else t for t in v]

    figs = {}
    if plan.x and plan.y:
        xa, ya = by_name[plan.x], by_name[plan.y]
        base_xy = _base_in_plane(plan, by_name)
        tables["heatmap"] = {"x": plan.x, "y": plan.y, "x_values": plain(xa.values), "y_values": plain(ya.values),
                             "base_case": list(base_xy) if base_xy else None,
                             **{k: slab(k, [plan.y, plan.x]).tolist() for k in ("npv", "irr") if k in f}}
        where_base = (f" The star marks the base case (no shock: {plan.x} = {_g(base_xy[0])}, {plan.y} = "
                      f"{_g(base_xy[1])})." if base_xy else
                      " The base case (no shock) is not in this plane: no star.")
        if "npv" in f:
            z = slab("npv", [plan.y, plan.x]) / 1e6
            _heatmap(folder, "npv_heatmap.png", written, xa, ya, z, cbar=f"NPV (M {currency})", cmap="RdBu",
                     level=0.0, level_label="NPV = 0", title=f"Portfolio NPV (M {currency}); {held_title}",
                     cell_fmt=lambda v: f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}", center=0.0, base_xy=base_xy)
            figs["npv_heatmap.png"] = (f"Portfolio NPV over {plan.x} and {plan.y}; {held_title}. Red: a loss, "
                                       f"blue: a gain, white: NPV = 0 (the black line).{where_base}")
        if "irr" in f:
            z = slab("irr", [plan.y, plan.x]) * 100
            lvl = None if rate is None or rate_is_axis else 100 * float(rate)
            _heatmap(folder, "irr_heatmap.png", written, xa, ya, z, cbar="IRR (% per year)",
                     cmap="cividis" if lvl is None else "RdBu",
                     level=lvl, level_label=f"IRR = discount rate ({lvl:g} %)" if lvl is not None else "",
                     title=f"Portfolio IRR (% per year); {held_title}", cell_fmt=lambda v: f"{v:.1f}",
                     center=lvl, base_xy=base_xy)
            centred = "" if lvl is None else f" White: IRR = the discount rate ({lvl:g} %), where NPV = 0."
            figs["irr_heatmap.png"] = (f"Portfolio IRR over {plan.x} and {plan.y}; {held_title}.{centred} "
                                       f"Grey cells: no IRR (no sign change of the cash flows).{where_base}")
    elif plan.line:
        la = by_name[plan.line]
        tables["line"] = {"axis": plan.line, "values": plain(la.values),
                          **{k: slab(k, [plan.line]).tolist() for k in ("npv", "irr") if k in f}}
        # a labelled axis (the named scenarios) is a bar chart by name against the base case
        what = "named scenario" if plan.line == "scenario" else plan.line
        held = "" if not plan.held else f"; {held_title}"
        names = {k: (f"named_{k}.png" if not la.numeric else f"{k}_line.png") for k in ("npv", "irr")}
        titles = {k: (f"{label} by {what} vs base case{held}" if not la.numeric
                      else f"Portfolio {label} along {plan.line}; {held_title}")
                  for k, label in (("npv", "NPV"), ("irr", "IRR"))}
        if "npv" in f:
            _line(folder, names["npv"], written, la, slab("npv", [plan.line]) / 1e6,
                  ylabel=f"NPV (M {currency})", ref=0.0, ref_label="NPV = 0",
                  base=base.get("npv", math.nan) / 1e6, title=titles["npv"])
            figs[names["npv"]] = (f"{titles['npv']}: each bar the portfolio NPV (M {currency}) with its change "
                                  "against the base case (no shock, the dotted line)." if not la.numeric
                                  else f"{titles['npv']}.")
        if "irr" in f:
            ref = None if rate is None or rate_is_axis else 100 * float(rate)
            _line(folder, names["irr"], written, la, slab("irr", [plan.line]) * 100,
                  ylabel="IRR (% per year)", ref=ref, ref_label=f"discount rate ({ref:g} %)" if ref is not None else "",
                  base=base.get("irr", math.nan) * 100, title=titles["irr"])
            figs[names["irr"]] = (f"{titles['irr']}: each bar the portfolio IRR (% per year) with its change "
                                  "against the base case (percentage points)." if not la.numeric
                                  else f"{titles['irr']}.")
    else:
        notes.append("Every axis of this grid has one value (or is held): no heatmap or line plot to draw.")

    if plan.kind == "sensitivities" and "npv_per_pct" in f:
        idx = {a.name: _held_index(a) for a in axes}
        sel = tuple(idx[a.name][0] for a in axes)
        m = np.asarray(f["npv_per_pct"][sel], dtype=np.float64)  # (cluster, parameter)
        params = [str(p) for p in _strings(f["parameter"][()])]
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
        where = ", ".join(f"{n} = {_g(v)}" for n, v in point.items()) or "the base case"
        where_txt = f"{where} ({'the base case' if exact else 'the grid point nearest the base case'})"
        tables["tornado"] = {"point": point, "rows": trows}
        if trows:
            _tornado(folder, "tornado.png", written, trows, currency,
                     f"Top {len(trows)} (cluster, parameter) by NPV change for ±{TORNADO_MOVE_PCT:g} %\nat {where_txt}")
            step_note = (" * after a name marks a step parameter: linear estimate unreliable (stresstest "
                         "sensitivities gives the exact change)." if any(r["step"] for r in trows) else "")
            figs["tornado.png"] = (f"Tornado at {where_txt}: first-order change of the portfolio NPV for a "
                                   f"±{TORNADO_MOVE_PCT:g} % move of one cluster's parameter (npv_per_pct × "
                                   f"{TORNADO_MOVE_PCT:g}).{step_note}")
        else:
            notes.append("No parameter moves the NPV at the base case: no tornado chart.")
    return {"tables": tables, "captions": figs, "currency": currency, "held_title": held_title}


def _grid_html(res: dict, plan: Plan) -> list[str]:
    cur = res["currency"]
    t = res["tables"]
    parts = ["<h2>Summary</h2>", "<p>Base case, and the worst and best grid points of the whole grid.</p>"]
    outs = [k for k in ("npv", "irr", "roi") if any(k in r for r in t["summary"])]
    parts.append(_table(["case", *(_header(k, cur) for k in outs), "grid point"],
                        [[r["case"], *(fmt(k, r.get(k, math.nan)) for k in outs),
                          ", ".join(f"{n}={_g(v)}" for n, v in r["point"].items()) or "-"]
                         for r in t["summary"]], num_cols=range(1, 1 + len(outs))))
    if t["base_by_cluster"]:
        parts.append("<h3>Base case by cluster</h3>")
        parts.append(_table(["cluster", *(_header(k, cur) for k in outs)],
                            [[r["cluster"], *(fmt(k, r.get(k, math.nan)) for k in outs)]
                             for r in t["base_by_cluster"]], num_cols=range(1, 1 + len(outs))))
    if "tornado" in t and t["tornado"]["rows"]:
        parts.append("<h3>Tornado (first order)</h3>")
        parts.append(_table(["cluster", "parameter", f"NPV change +{TORNADO_MOVE_PCT:g} % (M {cur})",
                             f"NPV change −{TORNADO_MOVE_PCT:g} % (M {cur})"],
                            [[r["cluster"], r["parameter"] + ("*" if r.get("step") else ""), fmt_money(r["up"]),
                              fmt_money(r["down"])] for r in t["tornado"]["rows"]], num_cols=(2, 3)))
        if any(r.get("step") for r in t["tornado"]["rows"]):
            from .tornado import STEP_NOTE

            parts.append(f"<p>* {_e(STEP_NOTE)}</p>")
    return parts


# --------------------------------------------------------------------------- Monte Carlo


def _stat(f, name: str) -> dict[str, float]:
    stats = [str(s) for s in _strings(f["statistic"][()])]
    v = np.asarray(f[name][()], dtype=np.float64)
    return dict(zip(stats, v.tolist()))


def _scalar(f, name):
    return float(f[name][()]) if name in f else None


def _mc_report(f, path: Path, folder: Path, written: list[str], notes: list[str]) -> dict:
    currency = str(_attr(f, "currency", "USD"))
    cm = matplotlib.colormaps["viridis"]
    tables: dict = {}
    outs = [k for k in ("npv", "irr", "roi", "equity_irr", "min_dscr") if k in f]
    stats = {k: _stat(f, k) for k in outs}
    tables["statistics"] = [{"output": k, **{s: stats[k].get(s, math.nan)
                                             for s in ("mean", "stderr", "p5", "p50", "p95", "nonfinite_fraction")}}
                            for k in outs]
    risk = {}
    for k in ("var_95", "cvar_95", "var_99", "cvar_99", "prob_npv_negative", "prob_irr_below_hurdle",
              "prob_dscr_below_covenant"):
        if k in f:
            risk[k] = {"value": _scalar(f, k), "stderr": _scalar(f, f"{k}_stderr")}
    tables["risk"] = risk
    try:
        sc = json.loads(_attr(f, "config"))["scenario"]
    except Exception:  # noqa: BLE001
        sc = {}
    tables["hurdle_irr"], tables["covenant_dscr"] = sc.get("hurdle_irr"), sc.get("covenant_dscr")
    clusters = [str(c) for c in _strings(f["cluster"][()])] if "cluster" in f else []
    crow = []
    for i, c in enumerate(clusters):
        row = {"cluster": c}
        if "cluster_npv" in f:
            cs = np.asarray(f["cluster_npv"][i], dtype=np.float64)
            st = dict(zip([str(s) for s in _strings(f["statistic"][()])], cs.tolist()))
            row["mean"], row["p5"] = st.get("mean", math.nan), st.get("p5", math.nan)
        for k in ("cluster_var_95", "cluster_cvar_95", "tail_contribution_95"):
            if k in f:
                row[k] = float(np.asarray(f[k][()])[i])
        crow.append(row)
    tables["clusters"] = crow

    figs = {}
    npv = stats.get("npv", {})
    var95 = risk.get("var_95", {}).get("value")
    cvar95 = risk.get("cvar_95", {}).get("value")

    from .report import fmt as tfmt  # the terminal's format, so that the legend reads as `run` prints

    def mark(ax, vertical=True):
        # VaR and CVaR are losses (positive: NPV below zero), as `run` prints them; the line
        # stands at the NPV they come from: the 5 % quantile, the mean of the worst 5 %
        for val, lab, at, ls in ((var95, "VaR 95 %", "NPV at P5", "--"),
                                 (cvar95, "CVaR 95 %", "mean NPV of the worst 5 %", ":")):
            if val is not None and _finite(val):
                ax.axvline(-val / 1e6, color="black", linestyle=ls, linewidth=1.6,
                           label=f"{lab} = {tfmt('npv', val)} ({at} = {tfmt('npv', -val)})")
        if _finite(npv.get("mean")):
            ax.axvline(npv["mean"] / 1e6, color=cm(0.6), linestyle="-", linewidth=1.6,
                       label=f"mean NPV = {tfmt('npv', npv['mean'])}")

    has_paths = "paths" in f and "npv" in f["paths"]
    if has_paths:
        ds = f["paths"]["npv"]
        lo, hi = npv.get("min", math.nan), npv.get("max", math.nan)
        if not (_finite(lo) and _finite(hi)) or lo >= hi:
            a = np.asarray(ds[()], dtype=np.float64)
            a = a[np.isfinite(a)]
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
            if lo >= hi:
                lo, hi = lo - 0.5, hi + 0.5
        coarse = np.linspace(lo, hi, 61)
        fine = np.linspace(lo, hi, 2001)
        hc = np.zeros(60)
        hf = np.zeros(2000)
        n = 0
        for i in range(0, ds.shape[0], _CHUNK_ELEMS):
            a = np.asarray(ds[i:i + _CHUNK_ELEMS], dtype=np.float64)
            a = a[np.isfinite(a)]
            n += a.size
            hc += np.histogram(a, coarse)[0]
            hf += np.histogram(a, fine)[0]
        tables["paths_in_histogram"] = n
        fig = _new_figure()
        ax = fig.add_subplot()
        ax.stairs(hc, coarse / 1e6, fill=True, color=cm(0.3), alpha=0.85, label=f"{n:,} paths")
        mark(ax)
        ax.set_xlabel(f"portfolio NPV (M {currency})")
        ax.set_ylabel("paths")
        ax.set_title("Portfolio NPV over the Monte Carlo paths", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, folder, "npv_hist.png", written)
        figs["npv_hist.png"] = ("Histogram of the portfolio NPV over the paths. VaR 95 and CVaR 95 are losses, "
                                "positive below NPV = 0, as the run prints them; their lines stand at the NPV "
                                "they come from: the 5 % quantile (−VaR) and the mean of the worst 5 % (−CVaR).")
        fig = _new_figure()
        ax = fig.add_subplot()
        cdf = np.concatenate([[0.0], np.cumsum(hf)]) / max(n, 1)
        ax.plot(fine / 1e6, cdf, color=cm(0.3), linewidth=2, label="empirical CDF")
        cdf_note = "empirical, from the per-path NPVs"
    else:
        notes.append("The NPV histogram needs the per-path NPVs: run with --save-paths to get it. "
                     "The CDF below is drawn through the quantile statistics only.")
        fig = _new_figure()
        ax = fig.add_subplot()
        qs = [(q, npv.get(k)) for q, k in ((0.01, "p1"), (0.05, "p5"), (0.5, "p50"), (0.95, "p95"), (0.99, "p99"))]
        qs = [(q, v) for q, v in qs if _finite(v)]
        ax.plot([v / 1e6 for _, v in qs], [q for q, _ in qs], marker="o", linestyle=":", color=cm(0.3),
                linewidth=1.2, label="quantiles p1, p5, p50, p95, p99")
        cdf_note = "through the quantile statistics p1, p5, p50, p95, p99 (no per-path NPVs in the file)"
    ax.axhline(0.05, color="0.5", linewidth=0.8)
    mark(ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"portfolio NPV (M {currency})")
    ax.set_ylabel("probability NPV ≤ x")
    ax.set_title("Cumulative distribution of the portfolio NPV", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, folder, "npv_cdf.png", written)
    figs["npv_cdf.png"] = (f"CDF of the portfolio NPV, {cdf_note}. VaR 95 and CVaR 95 (losses, as the run "
                           "prints them) are marked at the 5 % quantile of the NPV (−VaR) and at the mean "
                           "NPV of the worst 5 % (−CVaR).")

    if "cumulative_cf_fan" in f:
        fan = np.asarray(f["cumulative_cf_fan"][()], dtype=np.float64) / 1e6  # (month, q)
        months = np.asarray(f["month"][()]) if "month" in f else np.arange(fan.shape[0])
        qv = np.asarray(f["fan_quantile"][()], dtype=np.float64) if "fan_quantile" in f else np.array(_FAN)
        col = {q: int(np.argmin(np.abs(qv - q))) for q in _FAN if np.min(np.abs(qv - q)) < 1e-9}
        fig = _new_figure(7.6, 5.0)
        ax = fig.add_subplot()
        if 0.05 in col and 0.95 in col:
            ax.fill_between(months, fan[:, col[0.05]], fan[:, col[0.95]], color=cm(0.75), alpha=0.45,
                            linewidth=0, label="5–95 %")
        if 0.25 in col and 0.75 in col:
            ax.fill_between(months, fan[:, col[0.25]], fan[:, col[0.75]], color=cm(0.45), alpha=0.6,
                            linewidth=0, label="25–75 %")
        if 0.5 in col:
            ax.plot(months, fan[:, col[0.5]], color=cm(0.1), linewidth=2, label="median")
        if "cumulative_cf_mean" in f:
            ax.plot(months, np.asarray(f["cumulative_cf_mean"][()], dtype=np.float64) / 1e6, color="black",
                    linestyle="--", linewidth=1.5, label="mean")
        ax.axhline(0, color="0.4", linewidth=0.8)
        ax.set_xlabel("month")
        ax.set_ylabel(f"cumulative cash flow (M {currency})")
        ax.set_title("Cumulative portfolio cash flow over the paths", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, folder, "cumulative_cf_fan.png", written)
        figs["cumulative_cf_fan.png"] = ("Fan chart of the cumulative portfolio cash flow by month: the 5–95 % and "
                                         "25–75 % bands over the paths, the median and the mean.")
    if "grad_mean_npv" in f:
        _mc_sensitivities(f, folder, written, notes, figs, tables, currency, clusters)
    return {"tables": tables, "captions": figs, "currency": currency}


def _mc_sensitivities(f, folder, written, notes, figs, tables, currency, clusters) -> None:
    """The pathwise sensitivities of `run -s <montecarlo> --sensitivities`: per (cluster,
    parameter) the change of the mean NPV and of CVaR 95 for +1 % of the value (gradient x
    value / 100, the values from the file's configuration), the top 15 as bars."""
    from .kernels.params import PARAM_NAMES
    from .report import mc_sensitivity_rows

    import h5py

    grads = {k: np.asarray(f[k][()], dtype=np.float64) for k in f
             if k.startswith("grad_") and isinstance(f[k], h5py.Dataset)}
    params = [str(p) for p in _strings(f["parameter"][()])] if "parameter" in f else list(PARAM_NAMES)
    try:
        cfg = json.loads(_attr(f, "config"))["portfolio"]
        by_name = {c["name"]: c for c in cfg["clusters"]}
        rate = cfg.get("discount_rate")
    except Exception:  # noqa: BLE001 - an old or foreign file: no values to scale by
        by_name, rate = {}, None
    values = [[math.inf if by_name.get(c, {}).get(p, math.nan) is None else by_name.get(c, {}).get(p, math.nan)
               for p in params] for c in clusters]
    if not by_name:
        notes.append("The file holds pathwise sensitivities (grad_mean_npv, grad_cvar_*) but no configuration "
                     "with the parameter values: no chart of the change per +1 %.")
        return
    rows = mc_sensitivity_rows(grads, values, clusters, params, rate)
    tables["sensitivities"] = rows
    top = [r for r in rows if math.isfinite(r["mean_npv"])][:TORNADO_TOP]
    if not top:
        return
    fig = _new_figure(8.4, 1.9 + 0.42 * len(top))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(top))
    cm = matplotlib.colormaps["RdBu"]
    ax.barh(pos - 0.2, [r["mean_npv"] / 1e6 for r in top], height=0.4, color=cm(0.85), edgecolor="black",
            linewidth=0.5, label="Δ mean NPV")
    if all("cvar_95" in r for r in top):
        ax.barh(pos + 0.2, [r["cvar_95"] / 1e6 for r in top], height=0.4, color=cm(0.15), edgecolor="black",
                linewidth=0.5, hatch="//", label="Δ CVaR 95 % (a loss: right is worse)")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(pos, [_mt(f"{r['cluster']} · {r['parameter']}" + ("*" if r.get("step") else "")) for r in top],
                  fontsize=8)
    if any(r.get("step") for r in top):
        from .tornado import STEP_NOTE

        fig.supxlabel(f"* {STEP_NOTE} (the gradient is the slope between steps)", fontsize=8, x=0.01, ha="left")
    ax.invert_yaxis()
    ax.set_xlabel(f"change for +1 % of the value (M {currency})")
    ax.set_title(_wrap(f"Pathwise sensitivities: change for +1 % of one value (top {len(top)} by |Δ mean NPV|)",
                       80), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, folder, "mc_sensitivities.png", written)
    figs["mc_sensitivities.png"] = ("Pathwise sensitivities over the same paths: the change of the mean NPV and "
                                    "of CVaR 95 (a loss, positive is worse) for a +1 % move of one cluster's "
                                    "parameter (gradient × value / 100; the discount rate moves for the "
                                    "whole portfolio).")


def _mc_html(res: dict) -> list[str]:
    cur = res["currency"]
    t = res["tables"]
    parts = ["<h2>Summary</h2>", "<h3>Statistics over the paths</h3>"]
    rows = []
    for r in t["statistics"]:
        k = r["output"]
        rows.append([_header(k, cur), fmt(k, r["mean"]), fmt(k, r["stderr"]), fmt(k, r["p5"]), fmt(k, r["p50"]),
                     fmt(k, r["p95"]), fmt_pct(r["nonfinite_fraction"], 1)])
    parts.append(_table(["output", "mean", "stderr of mean", "p5", "p50", "p95", "not finite"], rows,
                        num_cols=range(1, 7)))
    names = {"var_95": f"VaR 95 (M {cur})", "cvar_95": f"CVaR 95 (M {cur})", "var_99": f"VaR 99 (M {cur})",
             "cvar_99": f"CVaR 99 (M {cur})", "prob_npv_negative": "P(NPV < 0)",
             "prob_irr_below_hurdle": f"P(IRR < hurdle {fmt_pct(t['hurdle_irr'] or math.nan)})",
             "prob_dscr_below_covenant": f"P(min DSCR < covenant {fmt_num(t['covenant_dscr'] or math.nan)})"}
    rows = []
    for k, v in t["risk"].items():
        f_ = fmt_money if k.startswith(("var", "cvar")) else fmt_pct
        rows.append([names[k], f_(v["value"]), f_(v["stderr"]) if v["stderr"] is not None else "-"])
    parts.append("<h3>Risk</h3>")
    parts.append(_table(["measure", "value", "stderr"], rows, num_cols=(1, 2)))
    if t["clusters"]:
        cols = [("mean", f"mean NPV (M {cur})"), ("p5", f"p5 NPV (M {cur})"),
                ("cluster_var_95", f"VaR 95 (M {cur})"), ("cluster_cvar_95", f"CVaR 95 (M {cur})"),
                ("tail_contribution_95", f"mean NPV in the portfolio's worst 5 % (M {cur})")]
        cols = [c for c in cols if any(c[0] in r for r in t["clusters"])]
        parts.append("<h3>By cluster</h3>")
        parts.append(_table(["cluster", *(h for _, h in cols)],
                            [[r["cluster"], *(fmt_money(r.get(k, math.nan)) for k, _ in cols)] for r in t["clusters"]],
                            num_cols=range(1, 1 + len(cols))))
    sens = t.get("sensitivities")
    if sens:
        levels = [k for k in sens[0] if k.startswith("cvar_")]
        parts.append(f"<h3>Sensitivities (pathwise): change for +1 % of one value, the top {min(len(sens), TORNADO_TOP)} "
                     f"of {len(sens)} by |Δ mean NPV|</h3>")
        parts.append(_table(["cluster", "parameter", "value", f"Δ mean NPV (M {cur})",
                             *(f"Δ CVaR {k[5:]} % (M {cur}, a loss)" for k in levels)],
                            [[r["cluster"], r["parameter"] + ("*" if r.get("step") else ""), f"{r['value']:,.6g}",
                              fmt_money(r["mean_npv"]),
                              *(fmt_money(r[k]) for k in levels)] for r in sens[:TORNADO_TOP]],
                            num_cols=range(2, 4 + len(levels))))
        if any(r.get("step") for r in sens[:TORNADO_TOP]):
            from .tornado import STEP_NOTE

            parts.append(f"<p>* {_e(STEP_NOTE)} (the gradient is the slope between steps)</p>")
    return parts


# --------------------------------------------------------------------------- breakeven curves


def _be_report(f, path: Path, folder: Path, written: list[str], notes: list[str]) -> dict:
    over = str(_attr(f, "over"))
    param = str(_attr(f, "param", "parameter"))
    target = str(_attr(f, "target", ""))
    be = np.asarray(f["breakeven"][()], dtype=np.float64)
    xs = np.asarray(f[over][()], dtype=np.float64) if over in f else np.arange(be.shape[0], dtype=float)
    scopes = [str(s) for s in _strings(f["scope"][()])] if "scope" in f else [str(i) for i in range(be.shape[1])]
    order = np.argsort(xs, kind="stable")
    over_label = _param_label(over, NAMED_SHOCKS[over][1], NAMED_SHOCKS[over][0]) if over in NAMED_SHOCKS \
        else over
    y_label = _param_label(param, NAMED_SHOCKS[param][1], NAMED_SHOCKS[param][0]) if param in NAMED_SHOCKS \
        else _param_label(param, "set", (param,))
    fig = _new_figure(7.6, 5.2)
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
                    linestyle=styles[k % len(styles)], marker=markers[k % len(markers)], markersize=4, label=_mt(s))
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
    ax.set_xlabel(_mt(over_label))
    ax.set_ylabel(_mt(f"breakeven {y_label}"))
    ax.set_title(_mt(f"Breakeven {param} for {target} along {over}"), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # every scope empty: no line to name
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, folder, "breakeven.png", written)
    tables = {"over": over, "param": param, "target": target, "scopes": scopes,
              "rows": [{over: float(xs[i]), **{s: float(be[i, j]) for j, s in enumerate(scopes)}} for i in order]}
    return {"tables": tables, "captions": {"breakeven.png": f"Breakeven {param} meeting {target} along {over}, "
                                                            "for the portfolio and each cluster moved alone."}}


def _be_html(res: dict) -> list[str]:
    t = res["tables"]
    return ["<h2>Breakeven values</h2>",
            _table([t["over"], *t["scopes"]], [[_g(r[t["over"]]), *(fmt_num(r[s]) for s in t["scopes"])]
                                               for r in t["rows"]], num_cols=range(1 + len(t["scopes"])))]


# --------------------------------------------------------------------------- HTML

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#111;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.2em}th,td{border:1px solid #bbb;padding:0.25em 0.6em}
th{background:#eee;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:0.9em;color:#333}.note{background:#fff8dc;border-left:4px solid #c90;padding:0.4em 0.8em}
code,pre{font-size:0.85em}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:0.6em}"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _table(head: list[str], rows: list[list[str]], num_cols=()) -> str:
    num = set(num_cols)
    out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if i in num else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _data_uri(path: Path) -> str:
    """A PNG as a data URI, so that the page holds its images and can be mailed alone."""
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _page(title: str, prov: list[tuple[str, str]], body: list[str], captions: dict, written: list[str],
          notes: list[str], config: str | None, folder: Path) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{_e(title)}</h1>", "<h2>Provenance</h2>",
             _table(["field", "value"], [[k, v] for k, v in prov])]
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    parts += body
    parts.append("<h2>Figures</h2>")
    for name in written:
        cap = captions.get(name, name)
        parts.append(f'<figure><img src="{_data_uri(folder / name)}" alt="{_e(cap)}">'
                     f'<figcaption>{_e(cap)} <code>{_e(name)}</code></figcaption></figure>')
    if config:
        try:
            config = json.dumps(json.loads(config), indent=1)
        except ValueError:
            pass
        parts.append("<details><summary>Configuration (JSON, as stored in the file)</summary>"
                     f"<pre>{_e(config)}</pre></details>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry point


def _open(path: Path):
    import h5py

    if not path.exists():
        raise ConfigError([f"{path}: no such file"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a folder, not a result file (shards? merge them first)"])
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ConfigError([f"{path}: not a stresstest result file (not readable as HDF5: {err})"]) from None


def make_report(result: str | Path, out_dir: str | Path, x: str | None = None, y: str | None = None,
                at: dict[str, float] | None = None) -> dict:
    """Writes PNGs and report.html into out_dir; returns {"html": path, "figures": [paths...], "tables": {...}}.

    The dict also holds `kind` (grid, sensitivities, montecarlo, breakeven), and for grids
    `x`, `y` (the heatmap's axes, or None), `line` (the axis of line plots, or None) and
    `held` ({axis: value} of every other axis). Raises ConfigError before writing anything
    when an argument is bad.
    """
    path = Path(result)
    out = Path(out_dir)
    at = dict(at or {})
    if out.exists() and not out.is_dir():
        raise ConfigError([f"{out}: output folder: exists and is not a folder"])
    with _open(path) as f:
        kind = _kind(f)
        if kind is None:
            raise ConfigError([(f"{path}: not a stresstest result file (expected a grid, Monte Carlo or "
                                "breakeven result: no npv with config and base, no kind=montecarlo, no breakeven)")])
        if kind in ("grid", "sensitivities"):
            plan, problems = _plan_grid(path, _axes(f), x, y, at)
            plan.kind = kind
            if problems:
                raise ConfigError(problems)
        else:
            what = "a Monte Carlo result has no grid axes" if kind == "montecarlo" else \
                "a breakeven curve has one axis and no heatmap"
            problems = [f"{path}: {opt}: {what}" for opt, v in (("--x", x), ("--y", y), ("--at", at)) if v]
            if problems:
                raise ConfigError(problems)
            plan = Plan(kind)

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            written: list[str] = []
            notes: list[str] = []
            prov = _provenance(f, path, kind)
            portfolio = _attr(f, "portfolio", "?")
            if kind in ("grid", "sensitivities"):
                res = _grid_report(f, path, plan, tmp, written, notes)
                body = _grid_html(res, plan)
                title = f"Stress report: {portfolio}, scenario {_attr(f, 'scenario', '?')}"
            elif kind == "montecarlo":
                res = _mc_report(f, path, tmp, written, notes)
                body = _mc_html(res)
                title = f"Monte Carlo report: {portfolio}, scenario {_attr(f, 'scenario', '?')}"
            else:
                res = _be_report(f, path, tmp, written, notes)
                body = _be_html(res)
                title = f"Breakeven report: {portfolio}, {_attr(f, 'param')} for {_attr(f, 'target')}"
            page = _page(title, prov, body, res["captions"], written, notes, _attr(f, "config"), tmp)
            (tmp / "report.html").write_text(page, encoding="utf-8")
            names = [*written, "report.html"]
            try:
                if out.exists():
                    raise FileExistsError(out)
                os.rename(tmp, out)  # a new folder appears complete, in one step
            except OSError:
                out.mkdir(exist_ok=True)
                for n in names:
                    os.replace(tmp / n, out / n)
                tmp.rmdir()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    done = {"html": out / "report.html", "figures": [out / n for n in written], "tables": res["tables"],
            "kind": kind, "notes": notes}
    if kind in ("grid", "sensitivities"):
        done.update(x=plan.x, y=plan.y, line=plan.line, held=dict(res["tables"]["held"]))
    return done
