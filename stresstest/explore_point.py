"""A picked point of a grid, sensitivities or named file in `stresstest explore`.

Its value of every output for the portfolio and each cluster (one read of one cell per
dataset), its tornado where the file has gradients (npv_per_pct at the point: the
portfolio NPV's first-order change for ±10 % of each cluster's parameter), its cash-flow
statement (statement.py, read off the kernels at the point as `cashflows --at` reads it;
by year or by month, of any scope) with its NPV beside the file's, and the command line
that reproduces it.
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
from bokeh.plotting import figure

from .explore_source import TABLE_CSS, Source, at_text
from .fig_html import escape, fmt, table
from .fig_read import TORNADO_MOVE_PCT, TORNADO_TOP, AxisInfo, strings
from .outputs import CLUSTER_DIM
from .statement import HEADER, KIND, PLATFORM_SCOPE, PORTFOLIO_SCOPE, money_unit

PLATFORM_NPV = "platform_npv"  # the platform scope's NPV in a grid file (outputs.GROUP_VARIABLES)


def tornado_rows(m: np.ndarray, clusters: list[str], params: list[str]) -> list[dict]:
    """The TORNADO_TOP (cluster, parameter) pairs of npv_per_pct [cluster, parameter] at one
    point that move the portfolio NPV most for ±TORNADO_MOVE_PCT, first order."""
    from .tornado import STEP_PARAMS

    swing = np.abs(m) * TORNADO_MOVE_PCT
    ranked = sorted(((float(swing[c, p]), c, p) for c in range(m.shape[0]) for p in range(m.shape[1])
                     if np.isfinite(swing[c, p]) and swing[c, p] > 0), key=lambda t: -t[0])
    return [{"cluster": clusters[c], "parameter": params[p], "up": float(m[c, p]) * TORNADO_MOVE_PCT,
             "down": -float(m[c, p]) * TORNADO_MOVE_PCT, "step": params[p] in STEP_PARAMS}
            for _, c, p in ranked[:TORNADO_TOP]]


class PointView:
    """The details of the picked point; `panel` is what the page shows."""

    def __init__(self, src: Source, axes: list[AxisInfo], clusters: list[str], outputs: list[str], label):
        self.src, self.axes, self.clusters, self.outputs, self.label = src, axes, clusters, outputs, label
        self.sel: tuple = ()
        self.statement = None
        self.scope = pn.widgets.Select(label="statement of", width=220)
        self.period = pn.widgets.RadioButtonGroup(options=["by year", "by month"], value="by year")
        self.table = pn.pane.HTML(sizing_mode="stretch_width", stylesheets=[TABLE_CSS])
        self.scope.param.watch(lambda e: self.show_statement(), "value")
        self.period.param.watch(lambda e: self.show_statement(), "value")
        self.panel = pn.Column(pn.pane.Markdown(
            "*Click a cell for its values, its tornado, its cash-flow statement and the command line "
            "that reproduces it.*"), sizing_mode="stretch_width")

    def show(self, index: dict[str, int]) -> None:
        """The point at `index` (an axis index for every axis)."""
        self.sel = tuple(index[a.name] for a in self.axes)
        at = [at_text(a.name, a.values[index[a.name]]) for a in self.axes]
        parts = [self.outputs_table(at)]
        if "npv_per_pct" in self.src.f:
            parts.append(self.tornado())
        self.statement = self.src.statement(at)
        scopes = list(self.statement.scopes)
        self.scope.options = scopes
        if self.scope.value not in scopes:
            self.scope.value = scopes[0]
        self.show_statement()
        command, note = self.src.command(at)
        parts += [pn.pane.HTML(f"<h3>Cash-flow statement ({escape(self.statement.case.label)})</h3>"),
                  pn.Row(self.scope, self.period), self.table,
                  pn.pane.HTML("<h3>The command that reproduces it</h3>"
                               f'<pre class="command">{escape(command)}</pre>'
                               + (f"<p><i>{escape(note)}</i></p>" if note else ""), sizing_mode="stretch_width",
                               stylesheets=[TABLE_CSS])]
        self.panel.objects = parts

    def outputs_table(self, at: list[str]):
        f = self.src.f
        scopes = [PORTFOLIO_SCOPE] + self.clusters
        rows = []
        for o in self.outputs:
            row = [self.label(o)]
            for k, s in enumerate(scopes):
                name = o if k == 0 else f"{CLUSTER_DIM}_{o}"
                row.append(fmt(o, float(self.src.read(name, self.sel + ((k - 1,) if k else ())))) if name in f else "")
            rows.append(row)
        where = ", ".join(at) or "the only point"
        return pn.pane.HTML(f"<h3>The point {escape(where)}</h3>"
                            + table(["output", *scopes], rows, num_cols=range(1, len(scopes) + 1)),
                            sizing_mode="stretch_width", stylesheets=[TABLE_CSS])

    def tornado(self):
        m = self.src.read("npv_per_pct", self.sel)
        params = [str(p) for p in strings(self.src.f["parameter"][()])]
        rows = tornado_rows(m, self.clusters, params)
        if not rows:
            return pn.pane.Markdown("No parameter moves the NPV at this point: no tornado.")
        names = [f"{r['cluster']} · {r['parameter']}" + ("*" if r["step"] else "") for r in rows][::-1]
        p = figure(name="tornado", y_range=names, width=680, height=140 + 24 * len(rows), tools="save",
                   toolbar_location="above", x_axis_label=f"NPV change, first order (M {self.src.currency})",
                   title=f"Tornado at this point: ±{TORNADO_MOVE_PCT:g} % of one cluster's parameter")
        p.hbar(y=names, right=[r["up"] / 1e6 for r in rows][::-1], height=0.4, color="#f1c232",
               legend_label=f"+{TORNADO_MOVE_PCT:g} %")
        p.hbar(y=names, right=[r["down"] / 1e6 for r in rows][::-1], height=0.4, color="#3d4b7a",
               legend_label=f"−{TORNADO_MOVE_PCT:g} %")
        p.legend.location = "bottom_right"
        step = any(r["step"] for r in rows)
        return pn.Column(pn.pane.Bokeh(p), *([pn.pane.Markdown("\\* a step parameter: linear estimate unreliable "
                                                               "(`stresstest sensitivities` gives the exact change)")]
                                             if step else []))

    def file_npv(self, scope: str) -> float:
        """The scope's NPV in the result file at the point (NaN where the file has none)."""
        if scope == PORTFOLIO_SCOPE:
            name, extra = "npv", ()
        elif scope == PLATFORM_SCOPE:
            name, extra = PLATFORM_NPV, ()
        else:
            name, extra = f"{CLUSTER_DIM}_npv", (self.clusters.index(scope),)
        return float(self.src.read(name, self.sel + extra)) if name in self.src.f else math.nan

    def show_statement(self) -> None:
        """The statement of the chosen scope, by year or month, amounts in one unit; its NPV
        (the kernels' at this point) beside its discounted cash flows summed and the file's."""
        st = self.statement
        if st is None or self.scope.value not in st.scopes:
            return
        scope = self.scope.value
        npv = st.outputs[scope]["npv"]
        discounted = float(np.sum(st.column(scope, "discounted_cf")))
        if self.period.value == "by year":
            st = st.annual()
        k = st.scopes.index(scope)
        money = [j for j, c in enumerate(st.columns) if KIND[c] in ("flow", "stock")]
        unit, word = money_unit(st.values[k][:, money])

        def cell(c, v):
            if not math.isfinite(v):
                return "-"
            return f"{v:.2f}" if KIND[c] == "ratio" else f"{v:.4f}" if KIND[c] == "factor" else f"{v / unit:,.1f}"

        rows = [[str(int(p)), *(cell(c, v) for c, v in zip(st.columns, st.values[k][i]))]
                for i, p in enumerate(st.periods)]
        in_file = self.file_npv(scope)
        cur = escape(self.src.currency)
        self.table.object = (
            f'<p>NPV of the statement: <b><span class="statement-npv" data-value="{npv!r}">{npv:,.0f}</span> '
            f'{cur}</b> (its discounted CF summed: {discounted:,.0f}); in the result file at this point: '
            f'<span class="file-npv" data-value="{in_file!r}">{in_file:,.0f}</span>. Amounts in '
            f'{cur}{" " + word if word else ""}, DSCR a ratio.</p><div style="overflow-x:auto">'
            + table([st.period, *(HEADER[c].replace("\n", " ") for c in st.columns)], rows,
                    num_cols=range(len(st.columns) + 1)) + "</div>")
