"""Tornado: which assumption moves NPV most, at the base case.

Each parameter is moved by +-10 % (relative). The first-order change comes from the
reverse-mode gradient; the exact change from re-evaluating the model with the moved
value, so a user sees where the linearisation breaks (clips, kinks, curvature).
Per cluster: that cluster's parameter alone. Portfolio: the parameter moved in every
cluster at once (and the discount rate).

Where the portfolio carries items (version 2), each named item's fields are bars too,
by path as a grid axis names them (contracts.bank.price, contracts.anchor.share,
segments.train.utilization): per cluster, its own items; for the portfolio, the item
moved in every cluster that has one of that name. A version 1 key that a cluster's own
items replace moves nothing there and has no bar. So are the version 2 scalars the
portfolio uses (capex_decline, optimization.<field> where a cluster runs a programme,
platform.<field> for the portfolio alone), but the whole months (order, start and
launch month): a 10 % move of a month is a step of whole months, whose size depends on
the month itself, and they have no gradient (kernels/sensitivity.py
DIFFERENTIABLE_SCALARS); a grid axis or a breakeven on them answers "when" instead.
"""

from __future__ import annotations

import math

import numpy as np

from .config import Portfolio
from .grid_config import Scenario, is_item_path, is_platform_path, resolve_item_path
from .items import KINDS, REPLACES
from .kernels.metrics import evaluate
from .kernels.params import AFFINE_PARAMS, CLUSTER_PARAMS, ITEM_PARAMS, PARAM_NAMES
from .kernels.shocks import AxisSpec

# Parameters whose effect on the cash flows moves in steps, where a gradient (the slope
# between steps, often 0) says little about a 10 % move: those the shocks round to whole
# numbers (kernels.params integer=True, unless the flows are affine in them, as in gpus:
# kernels.shocks.clip_param rounds debt_term_months), and the months that kernels/cashflows.py
# compares with the month t or cuts into whole contract cycles: the delivery month, the
# reserved term (floor((t - 1 - D) / M)), the next generation's month and the client loss.
STEP_PARAMS: frozenset[str] = frozenset(
    {p.name for p in CLUSTER_PARAMS if p.integer and p.name not in AFFINE_PARAMS}
    | {"delivery_months", "reserved_term_months", "next_gen_month", "client_loss_month"})
# ... and the item fields that act so: a contract's term and loss month
STEP_FIELDS: frozenset[str] = frozenset({"term_months", "loss_month"})


def is_step(parameter: str) -> bool:
    """Whether a bar's parameter (a version 1 key or an item path) moves the flows in steps."""
    if is_item_path(parameter):
        return parameter.rpartition(".")[2] in STEP_FIELDS
    return parameter in STEP_PARAMS

STEP_MARK, DIFFER_MARK = "*", "†"
STEP_NOTE = "linear estimate unreliable: step parameter"
DIFFER_NOTE = "linear estimate unreliable: linear and exact differ in sign or by more than 50 %"
DIFFER_SHARE = 0.5  # |linear - exact| above this share of |exact| flags a row


def linear_flag(row: dict, base_npv: float) -> str | None:
    """Why a tornado row's linear estimate is not to be trusted, or None: "step parameter"
    (STEP_PARAMS), "linear and exact differ in sign" or "... by more than 50 %" on either
    side. Changes below a millionth of |base NPV| (round-off) are never flagged."""
    if is_step(row["parameter"]):
        return "step parameter"
    tiny = 1e-6 * max(abs(base_npv), 1.0)
    for side in ("down", "up"):
        lin, ex = row[f"linear_{side}"], row[f"exact_{side}"]
        if not (math.isfinite(lin) and math.isfinite(ex)) or max(abs(lin), abs(ex)) <= tiny:
            continue
        if lin * ex < 0:
            return "linear and exact differ in sign"
        if abs(lin - ex) > DIFFER_SHARE * abs(ex):
            return "linear and exact differ by more than 50 %"
    return None


def mark_of(flag: str | None) -> str:
    """The marker after a flagged row's parameter: * step parameter, † linear and exact differ."""
    if flag is None:
        return ""
    return STEP_MARK if flag == "step parameter" else DIFFER_MARK


def base_gradients(portfolio: Portfolio) -> dict[str, np.ndarray]:
    """Outputs and gradients at the base case (a one-point grid), through the JAX adapter;
    the gradients' last axis is engine.sensitivity_parameters'."""
    from .backends import make_backend
    from .engine import prepare

    run = prepare(portfolio, Scenario("<base>", "grid", "base", []), make_backend("jax"),
                  sensitivities=True)
    return {k: v[0] for k, v in next(run.chunks()).outputs.items()}


def _axis(portfolio: Portfolio, name: str, clusters: list[int]) -> AxisSpec:
    """The scale axis of a bar: a parameter or an item path in `clusters`, or the discount
    rate or a platform field (the portfolio's)."""
    if name == "discount_rate" or is_platform_path(name):
        return AxisSpec(name, (name,), "scale")
    mask = tuple(c in clusters for c in range(len(portfolio.clusters)))
    if is_item_path(name):
        target, items, _ = resolve_item_path(name, portfolio, mask)
        return AxisSpec(name, (target,), "scale", mask, items)
    return AxisSpec(name, (name,), "scale", mask)


def _revalue(portfolio: Portfolio, moves: list[tuple[str, list[int], float]]) -> np.ndarray:
    """Portfolio NPV after each move (parameter, clusters, factor), one scenario per move.

    Each move is a scale axis (neutral, 1, in the other scenarios), so a moved value is
    clipped (and rounded) exactly as a grid's `scale` axis clips it
    (kernels.shocks.apply_axis_values): a discount rate scaled below -1 becomes
    -1 + 1e-9, a share scaled above 1 becomes 1, a debt term is rounded to whole months;
    implied items follow their version 1 keys, shares are balanced.
    """
    from .kernels.shocks import apply_axis_values

    n = len(moves)
    specs, values = [], []
    for s, (name, clusters, factor) in enumerate(moves):
        specs.append(_axis(portfolio, name, clusters))
        v = np.ones(n)
        v[s] = factor
        values.append(v)
    with np.errstate(all="ignore"):
        p, rate = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate),
                                    tuple(specs), tuple(values))
        return evaluate(p, np.broadcast_to(rate, (n,)), portfolio.horizon_months)["npv"]


def _bars(portfolio: Portfolio, columns) -> dict[str, list[tuple[str, list[int]]]]:
    """Per scope, its bars: (parameter or item path, the clusters it moves). A version 1
    key moves the clusters that do not replace it by items of their own; an item path,
    those that have such an item (Items.names: an implied book's anchor and others); a
    version 2 scalar (columns: engine.sensitivity_items, or None), the clusters that
    have it; a platform field is the portfolio's bar alone (its row: cluster 0's, which
    holds the portfolio's derivative as every row does)."""
    C = len(portfolio.clusters)
    counts = {k: [c for c in range(C) if not any(k in REPLACES[kind] and portfolio.items[c].of(kind) is not None
                                                  for kind in KINDS)] for k in PARAM_NAMES}
    paths: dict[str, list[int]] = {}
    if portfolio.itemised:
        for c, items in enumerate(portfolio.items):
            for kind in KINDS:
                fields = [t.partition(".")[2] for t in ITEM_PARAMS if t.startswith(kind + ".")]
                for name in items.names(kind):
                    for f in fields:
                        paths.setdefault(f"{kind}.{name}.{f}", []).append(c)
    scalars = {}
    for j, name in enumerate(columns.scalars if columns is not None else ()):
        scalars[name] = [0] if is_platform_path(name) else [c for c in range(C) if columns.scalar_present[c][j]]
    scopes = {"portfolio": [(k, counts[k]) for k in PARAM_NAMES if counts[k]] + [("discount_rate", [])]
              + list(paths.items()) + [(k, owners) for k, owners in scalars.items() if owners]}
    for c, name in enumerate(portfolio.cluster_names):
        scopes[name] = ([(k, [c]) for k in PARAM_NAMES if c in counts[k]]
                        + [(path, [c]) for path, owners in paths.items() if c in owners]
                        + [(k, [c]) for k, owners in scalars.items() if c in owners and not is_platform_path(k)])
    return scopes


def _values(portfolio: Portfolio, parameters: list[str]) -> np.ndarray:
    """[C, P] each cluster's value of each parameter of the gradients' axis (an item's as
    the model uses it, implied ones derived; NaN where the cluster lacks the item; a
    version 2 scalar's as the base arrays hold it, the platform's in every row)."""
    from .kernels.shocks import apply_axis_values

    base = portfolio.base_arrays()
    with np.errstate(all="ignore"):
        p, _ = apply_axis_values(base, np.asarray(portfolio.discount_rate), (), ())
    out = np.full((len(portfolio.clusters), len(parameters)), np.nan)
    for j, name in enumerate(parameters):
        if not is_item_path(name):
            out[:, j] = base[name]  # the platform's [1]: every row
            continue
        kind, _, rest = name.partition(".")
        item, _, field = rest.rpartition(".")
        for c, items in enumerate(portfolio.items):
            names = items.names(kind)
            if item in names:
                out[c, j] = p[f"{kind}.{field}"][0, c, names.index(item)]
    return out


def tornado(portfolio: Portfolio, move: float = 0.10) -> dict:
    """Rows per scope ("portfolio" and each cluster), ranked by the largest exact |change|."""
    from .engine import sensitivity_items, sensitivity_parameters

    g = base_gradients(portfolio)
    base_npv = float(g["npv"])
    grad = g["grad_npv"]  # [C, P]
    parameters = sensitivity_parameters(portfolio)
    values = _values(portfolio, parameters)
    result = {"base_npv": base_npv, "move": move, "scopes": {}}
    for scope, bars in _bars(portfolio, sensitivity_items(portfolio)).items():
        rows, moves = [], []
        for name, clusters in bars:
            if name == "discount_rate":
                value, g_sum = portfolio.discount_rate, float(g["grad_npv_discount_rate"]) * portfolio.discount_rate
            else:
                k = parameters.index(name)
                vals = values[clusters, k]
                if not np.isfinite(vals).all() or not np.any(vals):
                    continue  # "never" or zero: a relative move changes nothing
                value = float(vals[0]) if len(clusters) == 1 else None
                g_sum = float(np.sum(grad[clusters, k] * vals))
            rows.append({"parameter": name, "value": value, "linear_down": -move * g_sum,
                         "linear_up": move * g_sum})
            moves += [(name, clusters, 1 - move), (name, clusters, 1 + move)]
        exact = _revalue(portfolio, moves) - base_npv if moves else np.zeros(0)
        for i, row in enumerate(rows):
            row["exact_down"], row["exact_up"] = float(exact[2 * i]), float(exact[2 * i + 1])
            row["swing"] = max(abs(row["exact_down"]), abs(row["exact_up"]))
            row["step"] = is_step(row["parameter"])
            row["linear_unreliable"] = linear_flag(row, base_npv)
        rows.sort(key=lambda r: -r["swing"] if math.isfinite(r["swing"]) else math.inf)
        result["scopes"][scope] = rows
    return result


# The unit of a table's NPV changes: the largest power of 1000 not above its largest
# change, so that no number needs more than 7 characters ("-999.99").
_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
_ROW_KEYS = ("linear_down", "exact_down", "linear_up", "exact_up")


def table_unit(rows: list[dict]) -> tuple[float, str]:
    """(divisor, label) for the NPV changes of `rows`: 1e6 and "M" when the largest is 1-999 M."""
    biggest = max((abs(r[k]) for r in rows for k in _ROW_KEYS if math.isfinite(r[k])), default=0.0)
    if biggest >= 1e15:
        k = 3 * int(math.floor(math.log10(biggest) / 3))
        return 10.0 ** k, f"1e{k}"
    for div, label in _UNITS:
        if biggest >= div:
            return div, label
    return 1.0, ""


def change_text(value: float, unit: float) -> str:
    """One NPV change in the table's unit, two decimals ("nan" where the revaluation failed)."""
    return f"{value / unit:,.2f}" if math.isfinite(value) else str(value)


def value_text(value: float | None) -> str:
    """The parameter's value (all: moved in every cluster), in at most 9 characters."""
    if value is None:
        return "all"
    text = f"{value:g}"
    return text if len(text) <= 8 else f"{value:.3g}"


def print_tornado(portfolio: Portfolio, result: dict, top: int, console=None) -> None:
    """The tornado tables. No number is ever cut: the numeric columns are as wide as their
    longest number, only the parameter names fold on a narrow terminal, and where even
    that cannot fit, each row is one plain line. Each table gives its NPV changes in one
    unit (k, M, B, T), named in its title."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    pct = f"{100 * result['move']:g} %"
    console.print(f"[bold]{portfolio.name}[/]: base NPV {result['base_npv'] / 1e6:,.2f} M "
                  f"{portfolio.currency}; NPV change for -/+{pct} moves (linear from the gradient | "
                  "exact revaluation)")
    headers = ("parameter", "value", f"-{pct}\nlinear", f"-{pct}\nexact", f"+{pct}\nlinear", f"+{pct}\nexact")
    for scope, rows in result["scopes"].items():
        rows = rows[:top]
        unit, label = table_unit(rows)
        cells = [[marked_name(row), value_text(row["value"])]
                 + [change_text(row[k], unit) for k in _ROW_KEYS] for row in rows]
        where = scope if scope == "portfolio" else f"cluster {scope}"
        table = Table(title=f"{where}: NPV change, {portfolio.currency} {label}".rstrip(),
                      show_header=True, header_style="bold")
        for i, col in enumerate(headers):
            if i == 0:
                table.add_column(col, justify="left", overflow="fold", min_width=4)
                continue
            widest = max((len(c[i]) for c in cells), default=1)
            table.add_column(col, justify="right", overflow="fold", no_wrap=True,
                             width=max(widest, max(len(w) for w in col.split("\n"))))
        for c in cells:
            table.add_row(*c)
        # the narrowest the table can be: the parameter column at 4, 3 spaces a column and 1 more
        narrowest = 1 + 3 * len(headers) + 4 + sum(col.width for col in table.columns[1:])
        if narrowest <= console.width:
            console.print(table)
        else:
            console.print(f"[bold]{table.title}[/] ({', '.join(h.replace(chr(10), ' ') for h in headers)})")
            for c in cells:  # too narrow for the table: one line a row, wrapped between numbers
                console.print(f"  {c[0]}: {c[1]}  " + "  ".join(c[2:]))
        for line in footnotes(rows):
            console.print(line, markup=False)


def marked_name(row: dict) -> str:
    """The parameter's name, with its marker where the linear estimate is flagged."""
    flag = row.get("linear_unreliable")
    return f"{row['parameter']}{mark_of(flag)}" if flag else row["parameter"]


def footnotes(rows: list[dict]) -> list[str]:
    """The footnotes of the markers `rows` use: "* linear estimate unreliable: step parameter"."""
    flags = {r.get("linear_unreliable") for r in rows} - {None}
    out = []
    if "step parameter" in flags:
        out.append(f"{STEP_MARK} {STEP_NOTE}")
    if flags - {"step parameter"}:
        out.append(f"{DIFFER_MARK} {DIFFER_NOTE}")
    return out
