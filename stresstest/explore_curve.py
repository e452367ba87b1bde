"""The breakeven-curve view of `stresstest explore` (`breakeven --over`): the breakeven
value along the axis for the portfolio and each cluster moved alone, a scope at a time
or all together, with the status of each point (a gap where no value meets the target
in the bracket, or where the output jumps over it) and the table as CSV."""

from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from .breakeven import STATUS_CODES
from .explore_source import TOOLS, Source, csv_text, download
from .fig_read import attr, param_label, strings
from .kernels.params import NAMED_SHOCKS

ALL = "every scope"
WORDS = {"solved": "met", "none": "no breakeven in the bracket", "jump": "the output jumps over the target"}
STATUS = {code: WORDS[name] for name, code in STATUS_CODES.items()}  # the file's status codes, in words


def label(name: str, op_default: str) -> str:
    """An axis or parameter with its unit, as the report labels it."""
    if name in NAMED_SHOCKS:
        return param_label(name, NAMED_SHOCKS[name][1], NAMED_SHOCKS[name][0])
    return param_label(name, op_default, (name,))


class CurveView:
    def __init__(self, src: Source):
        f = src.f
        self.src = src
        self.over = str(attr(f, "over"))
        self.param = str(attr(f, "param", "parameter"))
        self.target = str(attr(f, "target", ""))
        self.be = src.read("breakeven")
        self.status = src.read("status") if "status" in f else np.zeros_like(self.be)
        self.xs = src.read(self.over) if self.over in f else np.arange(self.be.shape[0], dtype=float)
        self.scopes = [str(s) for s in strings(f["scope"][()])] if "scope" in f else \
            [str(i) for i in range(self.be.shape[1])]
        self.order = np.argsort(self.xs, kind="stable")
        self.scope = pn.widgets.Select(label="scope", options=[ALL, *self.scopes], value=ALL)
        self.plot = pn.pane.Bokeh()
        self.scope.param.watch(lambda e: self.draw(), "value")
        self.draw()

    def draw(self) -> None:
        p = figure(name="breakeven", width=680, height=460, tools=TOOLS, toolbar_location="above",
                   x_axis_label=label(self.over, "set"), y_axis_label=f"breakeven {label(self.param, 'set')}",
                   title=f"Breakeven {self.param} for {self.target} along {self.over}")
        shown = self.scopes if self.scope.value == ALL else [self.scope.value]
        colours = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725", "#b2182b", "#f1a340", "#998ec3")
        for k, s in enumerate(shown):
            j = self.scopes.index(s)
            v = self.be[self.order, j]
            src = ColumnDataSource({"x": self.xs[self.order], "y": v,
                                    "status": [STATUS.get(int(c), str(c)) for c in self.status[self.order, j]]})
            width = 3 if s == "portfolio" else 1.6
            colour = "black" if s == "portfolio" else colours[k % len(colours)]
            p.line("x", "y", source=src, line_width=width, color=colour, legend_label=s)
            r = p.scatter("x", "y", source=src, size=7, color=colour, legend_label=s)
            p.add_tools(HoverTool(renderers=[r], tooltips=[("scope", s), (self.over, "@x"),
                                                           (f"breakeven {self.param}", "@y"), ("status", "@status")]))
        p.legend.click_policy = "hide"
        self.plot.object = p

    def csv(self) -> str:
        return csv_text([self.over, *self.scopes],
                        ([float(self.xs[i]), *map(float, self.be[i])] for i in self.order))

    def page(self):
        side = pn.Column(self.scope, download("Download the curve (CSV)", "breakeven.csv", self.csv),
                         pn.pane.Markdown("Gaps: no value meets the target there (hover a point for why). The save "
                                          "icon in the toolbar downloads the view as PNG.",
                                          styles={"font-size": "0.85em"}), width=320)
        return pn.Row(side, self.plot)


def view(src: Source):
    return CurveView(src).page()
