"""Plot helpers every kind's figures share: a headless figure, titles shown literally and
wrapped. (Cell edges and plot positions of an axis, the tornado's sizes: fig_read, which
the explorer's views share without importing matplotlib.)"""

from __future__ import annotations

import math
import sys

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a backend already in use
    matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


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


