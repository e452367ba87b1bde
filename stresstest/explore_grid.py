"""The grid view of `stresstest explore`: grids, sensitivities and named scenarios.

Pick an output and a cluster (or the portfolio), put two axes on the heatmap, hold every
other axis with a slider (each starts at the base case: its neutral value, as the report
holds it, fig_read.held_index). Money is drawn in a diverging map centred on zero (red a
loss, blue a gain, as in the report), the IRR centred on the discount rate; the NPV = 0
and IRR = discount rate contours of the chosen scope are drawn over any output; the base
case is a star where it lies in the plane. A grid with one varying axis is a line (bars
by name for the named scenarios). Only the plane shown is read from the file.

A click picks a point, whose details explore_point shows: its value of every output for
the portfolio and each cluster, its tornado, its cash-flow statement and the command line
that reproduces it. The slider of an axis moves the picked point along it too.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import panel as pn
from bokeh.events import Tap
from bokeh.models import (ColorBar, ColumnDataSource, FixedTicker, HoverTool, Legend, LegendItem,
                          LinearColorMapper, Span)
from bokeh.plotting import figure

from .explore_point import PointView
from .explore_source import TOOLS, Source, csv_text, display, is_money, number
from .fig_html import escape
from .fig_read import Plan, base_in_plane, cell_edges, coords, held_index, rate_level, read_axes, value_text
from .kernels.params import OUTPUTS
from .outputs import BASE_GROUP, CLUSTER_DIM, GROUP_VARIABLES
from .statement import PORTFOLIO_SCOPE

NAN_COLOUR = "#d9d9d9"  # the report's grey (0.85) for a cell without a value


@functools.lru_cache(maxsize=None)
def palette(name: str) -> tuple[str, ...]:
    """256 colours of a matplotlib colour map (RdBu: red low, blue high), as the report's."""
    import matplotlib
    from matplotlib.colors import to_hex

    cm = matplotlib.colormaps[name]
    return tuple(to_hex(cm(i / 255)) for i in range(256))


def contour_lines(xc, yc, z: np.ndarray, level: float) -> tuple[list, list]:
    """The lines where z (rows along yc, columns along xc, NaN: no value) crosses `level`."""
    import contourpy

    if len(xc) < 2 or len(yc) < 2 or not np.isfinite(z).any():
        return [], []
    gen = contourpy.contour_generator(np.asarray(xc, float), np.asarray(yc, float), np.ma.masked_invalid(z))
    lines = gen.lines(level)
    return [ln[:, 0].tolist() for ln in lines], [ln[:, 1].tolist() for ln in lines]


def crossing_label(label: str, z: np.ndarray, level: float) -> str:
    """The legend's words for a contour: where the plane does not cross it, says so."""
    v = z[np.isfinite(z)]
    if v.size and (v.max() < level or v.min() > level):
        return f"{label}: nowhere here (all {'below' if v.max() < level else 'above'})"
    return label


class GridView:
    """The page of one grid, sensitivities or named file (one per browser session)."""

    def __init__(self, src: Source):
        self.src = src
        f = src.f
        self.axes = read_axes(f)
        self.by_name = {a.name: a for a in self.axes}
        self.free = [a.name for a in self.axes if len(a.values) > 1]
        self.clusters = src.clusters()
        groups = [name for variables in GROUP_VARIABLES.values() for name, dims, *_ in variables
                  if CLUSTER_DIM not in dims]
        self.outputs = [o for o in (*OUTPUTS, *groups) if o in f]
        self.index = {a.name: held_index(a)[0] for a in self.axes}  # the picked point
        self.picked = False
        self.output = pn.widgets.Select(label="output", value="npv" if "npv" in self.outputs else self.outputs[0],
                                        options={self.label(o): o for o in self.outputs})
        self.scope = pn.widgets.Select(label="cluster", value=PORTFOLIO_SCOPE)
        self.x = pn.widgets.Select(label="x axis (across)", options=self.free,
                                   value=self.free[0] if len(self.free) >= 2 else None,
                                   visible=len(self.free) >= 2)
        self.y = pn.widgets.Select(label="y axis (up)", options=self.free,
                                   value=self.free[1] if len(self.free) >= 2 else None, visible=len(self.free) >= 2)
        self.sliders = pn.Column()
        self.readout = pn.pane.HTML(sizing_mode="stretch_width")
        self.plot = pn.pane.Bokeh()
        self.point = PointView(src, self.axes, self.clusters, self.outputs, self.label)
        self.csv = pn.widgets.FileDownload(callback=self.slice_csv, filename="slice.csv",
                                           label="Download the slice (CSV)", color="primary")
        self.fill_scopes()
        self.output.param.watch(self.on_output, "value")
        self.scope.param.watch(lambda e: self.refresh(), "value")
        self.x.param.watch(lambda e: self.on_axis(e, self.y), "value")
        self.y.param.watch(lambda e: self.on_axis(e, self.x), "value")
        self.draw()

    # ---------------------------------------------------------------- state

    def label(self, name: str) -> str:
        _, unit = display(name, self.src.units(name), self.src.currency)
        return f"{name} ({unit})" if unit else name

    def fill_scopes(self) -> None:
        o = self.output.value
        scopes = [PORTFOLIO_SCOPE] + (self.clusters if f"{CLUSTER_DIM}_{o}" in self.src.f else [])
        self.scope.options = scopes
        if self.scope.value not in scopes:
            self.scope.value = PORTFOLIO_SCOPE

    def dataset(self, output: str) -> tuple[str, tuple]:
        """The dataset of `output` for the chosen scope and the index after the axes."""
        if self.scope.value == PORTFOLIO_SCOPE:
            return output, ()
        return f"{CLUSTER_DIM}_{output}", (self.clusters.index(self.scope.value),)

    def shown(self) -> list[str]:
        """The axes drawn: [x, y] on a heatmap, [the axis] on a line, [] for a single point."""
        return {"plane": [self.x.value, self.y.value], "line": [self.line_axis()], "point": []}[self.mode()]

    def plan(self) -> Plan:
        held = {a.name: (self.index[a.name], "slider") for a in self.axes if a.name not in self.shown()}
        return Plan(self.src.kind, self.axes, self.x.value, self.y.value, held=held)

    def mode(self) -> str:
        return "plane" if len(self.free) >= 2 else "line" if self.free else "point"

    def line_axis(self) -> str | None:
        return self.free[0] if self.free else None

    def point_sel(self) -> tuple:
        return tuple(self.index[a.name] for a in self.axes)

    def plane(self, output: str, keep: list[str]) -> np.ndarray | None:
        """`output` of the chosen scope over the axes `keep` (in that order), the others at
        the picked point; None where the scope has no such output."""
        name, extra = self.dataset(output)
        if name not in self.src.f:
            return None
        sel = tuple(slice(None) if a.name in keep else self.index[a.name] for a in self.axes) + extra
        v = self.src.read(name, sel)
        order = [a.name for a in self.axes if a.name in keep]
        return v.transpose([order.index(n) for n in keep]) if len(keep) > 1 else v

    # ---------------------------------------------------------------- events

    def on_output(self, event) -> None:
        self.fill_scopes()
        self.refresh()

    def on_axis(self, event, other) -> None:
        if event.new == other.value:  # the axis taken is the other one's: they swap
            other.value = event.old
            return
        self.draw()

    def on_slider(self, name: str, event) -> None:
        self.index[name] = int(event.new)
        self.refresh()

    def on_tap(self, event) -> None:
        if self.mode() == "plane":
            for name, v in ((self.x.value, event.x), (self.y.value, event.y)):
                self.index[name] = self.nearest(name, v)
        elif self.mode() == "line":
            self.index[self.line_axis()] = self.nearest(self.line_axis(), event.x)
        self.picked = True
        self.refresh()

    def nearest(self, name: str, v: float) -> int:
        """The axis index of the cell at plot position v."""
        xc, order = coords(self.by_name[name])
        edges = cell_edges(xc)
        return int(order[int(np.clip(np.searchsorted(edges, v) - 1, 0, len(xc) - 1))])

    # ---------------------------------------------------------------- drawing

    def draw(self) -> None:
        """Build the sliders and the figure for the axes shown, then fill them."""
        sliders = []
        for a in self.axes:
            if a.name in self.shown() or len(a.values) < 2:
                continue
            _, order = coords(a)
            opts = {value_text(a.values[i]): int(i) for i in order}
            w = (pn.widgets.DiscreteSlider(label=a.label(), options=opts, value=self.index[a.name])
                 if a.numeric else pn.widgets.Select(label=a.label(), options=opts, value=self.index[a.name]))
            w.param.watch(lambda e, n=a.name: self.on_slider(n, e), "value")
            sliders.append(w)
        self.sliders.objects = sliders
        if self.mode() == "plane":
            self.fig = self.plane_figure()
        elif self.mode() == "line":
            self.fig = self.line_figure()
        else:
            self.fig = None
            self.picked = True
        if self.fig is not None:
            self.fig.on_event(Tap, self.on_tap)
        self.plot.object = self.fig
        self.plot.visible = self.fig is not None
        self.refresh()

    def plane_figure(self):
        xa, ya = self.by_name[self.x.value], self.by_name[self.y.value]
        xe, ye = cell_edges(coords(xa)[0]), cell_edges(coords(ya)[0])
        p = figure(name="heatmap", width=680, height=560, tools=TOOLS, toolbar_location="above",
                   x_range=(xe[0], xe[-1]), y_range=(ye[0], ye[-1]), x_axis_label=xa.label(), y_axis_label=ya.label())
        self.cells = ColumnDataSource({k: [] for k in ("left", "right", "bottom", "top", "x", "y", "value")})
        self.mapper = LinearColorMapper(palette=palette("RdBu"), nan_color=NAN_COLOUR)
        quads = p.quad(left="left", right="right", bottom="bottom", top="top", source=self.cells, line_color=None,
                       fill_color={"field": "value", "transform": self.mapper})
        self.hover = HoverTool(renderers=[quads])
        p.add_tools(self.hover)
        self.zero = ColumnDataSource({"xs": [], "ys": []})
        self.irr_line = ColumnDataSource({"xs": [], "ys": []})
        self.base = ColumnDataSource({"x": [], "y": []})
        self.pick = ColumnDataSource({k: [] for k in ("left", "right", "bottom", "top")})
        items = [LegendItem(label="NPV = 0", renderers=[p.multi_line("xs", "ys", source=self.zero, line_color="black",
                                                                      line_width=2.5)])]
        items.append(LegendItem(label="IRR = discount rate", renderers=[
            p.multi_line("xs", "ys", source=self.irr_line, line_color="black", line_width=2, line_dash="dashed")]))
        items.append(LegendItem(label="base case (no shock)", renderers=[
            p.scatter("x", "y", source=self.base, marker="star", size=22, fill_color="gold", line_color="black")]))
        p.quad(left="left", right="right", bottom="bottom", top="top", source=self.pick, fill_color=None,
               line_color="black", line_width=3)
        self.legend = Legend(items=items, orientation="horizontal", label_text_font_size="9pt")
        p.add_layout(self.legend, "below")
        self.colour_bar = ColorBar(color_mapper=self.mapper, width=14)
        p.add_layout(self.colour_bar, "right")
        for a, ax in ((xa, p.xaxis), (ya, p.yaxis)):
            if not a.numeric:
                ticks, order = coords(a)
                ax.ticker = FixedTicker(ticks=list(ticks))
                ax.major_label_overrides = {float(t): str(a.values[i]) for t, i in zip(ticks, order)}
        return p

    def line_figure(self):
        a = self.by_name[self.line_axis()]
        xc, _ = coords(a)
        p = figure(name="line", width=680, height=460, tools=TOOLS, toolbar_location="above", x_axis_label=a.label())
        self.cells = ColumnDataSource({k: [] for k in ("x", "value", "xtext")})
        if a.numeric:
            p.line("x", "value", source=self.cells, line_width=2, color="#3b528b")
            r = p.scatter("x", "value", source=self.cells, size=9, color="#3b528b")
        else:
            r = p.vbar(x="x", top="value", width=0.7, source=self.cells, color="#3b528b")
            p.xaxis.ticker = FixedTicker(ticks=list(xc))
            p.xaxis.major_label_overrides = {float(t): str(v) for t, v in zip(xc, a.values)}
            p.xaxis.major_label_orientation = 0.6
        self.hover = HoverTool(renderers=[r])
        p.add_tools(self.hover)
        self.pick = ColumnDataSource({"x": [], "value": []})
        p.scatter("x", "value", source=self.pick, size=16, fill_color=None, line_color="black", line_width=3)
        self.reference = Span(dimension="width", location=0, line_color="black", line_dash="dashed", line_width=1.5)
        self.base_span = Span(dimension="width", location=0, line_color="#666666", line_dash="dotted", line_width=1.5)
        p.add_layout(self.reference)
        p.add_layout(self.base_span)
        return p

    def refresh(self) -> None:
        """Fill the figure, the readout and (after a click) the details for the current state."""
        out = self.output.value
        factor, unit = display(out, self.src.units(out), self.src.currency)
        value = math.nan
        if self.mode() == "plane":
            value = self.fill_plane(out, factor, unit)
        elif self.mode() == "line":
            value = self.fill_line(out, factor, unit)
        else:
            name, extra = self.dataset(out)
            value = float(self.src.read(name, self.point_sel() + extra))
        self.csv.filename = f"{out}_{self.scope.value}_{'_'.join(self.shown()) or 'point'}.csv"
        where = ", ".join(f"{a.name} = {value_text(a.values[self.index[a.name]])}" for a in self.axes)
        self.readout.object = (f'<div class="readout" data-output="{escape(out)}" '
                               f'data-scope="{escape(self.scope.value)}" data-value="{value!r}"><b>{escape(out)}</b> '
                               f'of the {escape(self.scope.value)} at '
                               f'{escape(where) or "the only point"}: <b>{escape(number(value * factor, unit))}</b>'
                               f' ({self.where_words()})</div>')
        if self.picked:
            self.point.show(self.index)

    def where_words(self) -> str:
        if self.picked:
            return "the picked point"
        neutral = all(held_index(a) == (self.index[a.name], "neutral") for a in self.axes if len(a.values) > 1)
        return "the base case; click to pick another point" if neutral else "click to pick a point"

    def fill_plane(self, out: str, factor: float, unit: str) -> float:
        """The cells (numbers only: sent as binary arrays), the colours, the contours (NPV = 0;
        IRR = discount rate where the IRR is shown), the base case and the picked cell."""
        xn, yn = self.x.value, self.y.value
        xa, ya = self.by_name[xn], self.by_name[yn]
        xc, xo = coords(xa)
        yc, yo = coords(ya)
        xe, ye = cell_edges(xc), cell_edges(yc)
        z = self.plane(out, [yn, xn])
        zs = z[np.ix_(yo, xo)] * factor  # sorted along both axes, in display units
        jj, ii = (g.ravel() for g in np.meshgrid(np.arange(len(xc)), np.arange(len(yc))))
        data = {"left": xe[jj], "right": xe[jj + 1], "bottom": ye[ii], "top": ye[ii + 1], "x": xc[jj], "y": yc[ii],
                "value": zs.ravel()}
        for a, column, cells, order in ((xa, "x", jj, xo), (ya, "y", ii, yo)):
            if not a.numeric:  # labels: named in the hover by a column of text
                data[column + "text"] = [str(a.values[order[k]]) for k in cells]
        self.cells.data = data
        self.hover.tooltips = [(xa.label(), self.hover_field(xa, "x")), (ya.label(), self.hover_field(ya, "y")),
                               (self.label(out), "@value{0,0.00}")]
        self.colour(out, zs, unit)
        npv = self.plane("npv", [yn, xn])
        npv = None if npv is None else npv[np.ix_(yo, xo)]
        self.zero.data = dict(zip(("xs", "ys"), contour_lines(xc, yc, npv, 0.0) if npv is not None else ([], [])))
        self.legend.items[0].label = {"value": crossing_label("NPV = 0", npv, 0.0) if npv is not None
                                      else "NPV = 0: no NPV here"}
        level = rate_level(self.src.f, self.plan()) if out == "irr" else None
        self.irr_line.data = dict(zip(("xs", "ys"), contour_lines(xc, yc, zs, level) if level is not None
                                      else ([], [])))
        self.legend.items[1].visible = level is not None
        if level is not None:
            self.legend.items[1].label = {"value": crossing_label(f"IRR = discount rate ({level:g} %)", zs, level)}
        base = base_in_plane(self.plan(), self.by_name)
        self.base.data = {"x": [base[0]] if base else [], "y": [base[1]] if base else []}
        j = int(np.flatnonzero(xo == self.index[xn])[0])
        i = int(np.flatnonzero(yo == self.index[yn])[0])
        self.pick.data = {"left": [xe[j]], "right": [xe[j + 1]], "bottom": [ye[i]], "top": [ye[i + 1]]}
        return float(z[self.index[yn], self.index[xn]])

    @staticmethod
    def hover_field(axis, column: str) -> str:
        """The hover's field of an axis: its value, or the text column of its labels."""
        return f"@{column}{{0.[0000]}}" if axis.numeric else f"@{column}text"

    def colour(self, out: str, zs: np.ndarray, unit: str) -> None:
        """Diverging around zero for money, around the discount rate for the IRR (white there),
        cividis for anything else; the colour bar titled with the unit."""
        v = zs[np.isfinite(zs)]
        level = rate_level(self.src.f, self.plan()) if out == "irr" else None
        centre = 0.0 if is_money(out, self.src.units(out), self.src.currency) else level
        if centre is not None:
            half = float(np.max(np.abs(v - centre))) if v.size else 1.0
            half = half or 1.0
            self.mapper.palette, self.mapper.low, self.mapper.high = palette("RdBu"), centre - half, centre + half
        else:
            lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            self.mapper.palette, self.mapper.low, self.mapper.high = palette("cividis"), lo, hi
        self.colour_bar.title = f"{out} of the {self.scope.value}" + (f" ({unit})" if unit else "")
        self.fig.title.text = (f"{out} of the {self.scope.value}" + (f" ({unit})" if unit else "")
                               + (f"; held: {', '.join(self.held_words())}" if self.held_words() else ""))

    def held_words(self) -> list[str]:
        return [f"{a.name} = {value_text(a.values[self.index[a.name]])}" for a in self.axes
                if a.name not in self.shown()]

    def fill_line(self, out: str, factor: float, unit: str) -> float:
        a = self.by_name[self.line_axis()]
        xc, order = coords(a)
        v = self.plane(out, [a.name])[order] * factor
        self.cells.data = {"x": xc, "value": v, "xtext": [value_text(a.values[i]) for i in order]}
        self.hover.tooltips = [(a.label(), "@xtext"), (self.label(out), "@value{0,0.00}")]
        k = int(np.flatnonzero(order == self.index[a.name])[0])
        self.pick.data = {"x": [xc[k]], "value": [v[k]]}
        level = rate_level(self.src.f, self.plan()) if out == "irr" else None
        self.reference.location = 0.0 if is_money(out, self.src.units(out), self.src.currency) else level
        self.reference.visible = self.reference.location is not None
        name, extra = self.dataset(out)
        base = self.src.f.get(BASE_GROUP)
        self.base_span.visible = base is not None and name in base
        if self.base_span.visible:
            self.base_span.location = float(np.asarray(base[name][()]).reshape(-1)[extra[0] if extra else 0]) * factor
        self.fig.yaxis.axis_label = f"{out} of the {self.scope.value}" + (f" ({unit})" if unit else "")
        words = ["dotted: the base case (no shock)"]
        if self.reference.visible:
            words.append("dashed: zero" if self.reference.location == 0.0 else "dashed: the discount rate")
        if self.held_words():
            words.append(f"held: {', '.join(self.held_words())}")
        self.fig.title.text = "; ".join(words)
        return float(self.plane(out, [a.name])[self.index[a.name]])

    # ---------------------------------------------------------------- downloads

    def slice_csv(self):
        """The plane (or line) shown as CSV: one row per cell, the held axes' values in their
        own columns, the output in its file units."""
        import io

        out = self.output.value
        name, extra = self.dataset(out)
        shown = self.shown()
        held = [a.name for a in self.axes if a.name not in shown]
        z = self.plane(out, shown) if shown else self.src.read(name, self.point_sel() + extra)
        header = [*shown, *held, f"{name} ({self.src.units(name) or '1'})"]
        rows = ([*(self.value(n, i) for n, i in zip(shown, idx)), *(self.value(n, self.index[n]) for n in held),
                 float(z[idx])] for idx in np.ndindex(z.shape))
        return io.StringIO(csv_text(header, rows))

    def value(self, name: str, i: int):
        v = self.by_name[name].values[i]
        return v.item() if hasattr(v, "item") else v

    def page(self):
        side = pn.Column(self.output, self.scope, self.x, self.y, self.sliders, self.csv,
                         pn.pane.Markdown("The save icon in a plot's toolbar downloads that view as PNG.",
                                          styles={"font-size": "0.85em"}), width=320)
        main = pn.Column(self.plot, self.point.panel, sizing_mode="stretch_width")
        return pn.Column(self.readout, pn.Row(side, main), sizing_mode="stretch_width")


def view(src: Source):
    return GridView(src).page()
