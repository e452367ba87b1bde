"""The named scenarios' figures: a labelled axis drawn as bars, each running from the base
case (no shock) to the scenario's value, with the change written at its end."""

from __future__ import annotations

import matplotlib
import numpy as np

from .fig_common import finite, literal
from .fig_read import AxisInfo


def named_bars(fig, ax, axis: AxisInfo, v: np.ndarray, colour, *, ylabel: str, ref: float | None,
               ref_label: str, base: float | None) -> None:
    """Bars of `v` by the axis's labels on `ax` (of `fig`), below or above the base case in
    the two ends of RdBu, with the reference line `ref` (NPV = 0, the discount rate)."""
    fig.set_size_inches(7.6, 1.6 + 0.45 * max(len(axis.values), 1))
    pos = np.arange(len(axis.values))
    vals = np.where(np.isfinite(v), v, 0.0)
    has_base = base is not None and finite(base)
    div = matplotlib.colormaps["RdBu"]
    colours = [colour if not has_base else div(0.2) if x < base else div(0.8) for x in vals]
    start = base if has_base else 0.0  # each bar runs from the base case to the scenario's value
    ax.barh(pos, vals - start, left=start, color=colours, edgecolor="black", linewidth=0.5)
    ax.set_yticks(pos, [literal(t) for t in axis.values])
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
    ax.set_ylabel(literal(axis.name))
