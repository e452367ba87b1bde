"""Plot helpers every kind's figures share: a headless figure, titles shown literally and
wrapped, cell edges and plot positions of an axis, the tornado's sizes."""

from __future__ import annotations

import math
import sys

import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a backend already in use
    matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .fig_read import AxisInfo

DPI = 120
TORNADO_TOP = 15
TORNADO_MOVE_PCT = 10.0


def finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def literal(s) -> str:
    """Text from a file, shown literally by matplotlib (a `$` would start mathtext)."""
    return str(s).replace("$", r"\$")


def wrap(text: str, width: int) -> str:
    """A title for matplotlib (literal `$`), wrapped at `width` characters a line."""
    import textwrap

    text = literal(text).replace(" %", "\u00a0%")  # never "10" at a line's end and "%" on the next
    return "\n".join(textwrap.fill(part, width, break_on_hyphens=False) for part in text.split("\n"))


def new_figure(w=7.0, h=5.0) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def cell_edges(v: np.ndarray) -> np.ndarray:
    v = v.astype(float)
    if v.size == 1:
        half = 0.5 if v[0] == 0 else 0.1 * abs(v[0])
        return np.array([v[0] - half, v[0] + half])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def coords(axis: AxisInfo) -> tuple[np.ndarray, np.ndarray]:
    """Plot positions and the order that sorts them (labels: positions 0..n-1)."""
    if axis.numeric:
        order = np.argsort(axis.values.astype(float), kind="stable")
        return axis.values.astype(float)[order], order
    return np.arange(len(axis.values), dtype=float), np.arange(len(axis.values))
