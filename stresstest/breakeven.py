"""Breakeven and reverse stress: the value of one parameter or shock that meets a target.

The target is an output value: npv=V, irr=R, equity_irr=R, min_dscr=D or
payback_months=M. An IRR target R is solved as "NPV at the annual discount rate R
equals 0" (an equity IRR target: the NPV of the equity flows, where the scope has
debt), the same equation without the IRR solver in the way. The model is scanned on a
grid of the bracket to find sign changes, the one nearest the base value is refined by
Newton steps whose derivative comes from JAX (forward mode), then bisection once a step
would leave the cell. The refined value is re-evaluated by the full model: where that
misses the target, the output jumps over it there (a debt term rounded to whole months,
a threshold month, a pole, a payback that stops happening) and the next sign change is
tried. "No breakeven: the output stays above (below) the target over the whole range"
and "no value meets the target; the output jumps over it between A and B" are answers,
not errors.

Every value is also given in the units of what it moves (value_in_units, unit,
quantity): a price scale as the on-demand price in USD per GPU-hour, an energy scale as
USD per kWh, a utilization shift as the resulting on-demand utilization, an
obsolescence shift as the resulting next_gen_month. A cluster's row gives its own
value; the portfolio's row a weighted mean over the clusters (WEIGHTS).

Version 2 scalars (order_month, capex_decline, optimization.<field>, platform.<field>)
are set as a grid axis sets them (grid_config.resolve_scalar_path): an optimization
field in the clusters that run a programme, and rows for those alone; a platform field
has one value for the portfolio and only the portfolio's row. A whole month (an order,
start or launch month) moves the outputs in steps, so its answer is the jump between
the two whole months either side of the target, as for debt_term_months.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Portfolio
from .grid_config import (is_item_path, is_platform_path, is_scalar_path, item_path_target, resolve_item_path,
                          resolve_scalar_path, scalar_group, scalar_target)
from .items import KINDS, Items
from .kernels.params import ITEM_PARAMS, NAMED_SHOCKS, PARAM_NAMES, PARAMS, V2_SCALARS, named_targets
from .programmes import WITHIN_HORIZON, Scalars
from .kernels.shocks import AxisSpec
from .validation import ConfigError

TARGETS = ("npv", "irr", "min_dscr", "equity_irr", "payback_months")
RATE_TARGETS = ("irr", "equity_irr")  # solved as "NPV of the flows at the rate = 0"
TARGET_NAMES = {"npv": "NPV", "irr": "IRR", "min_dscr": "minimum DSCR", "equity_irr": "equity IRR",
                "payback_months": "payback"}
SHOCK_BRACKETS = {"utilization": (-1.0, 1.0), "price": (0.0, 5.0), "energy": (0.0, 20.0),
                  "obsolescence": (-120.0, 120.0)}
N_SCAN = 401

# What a named shock's value means in the parameter it moves: the quantity it gives
# each cluster (at t = 0, before the next generation) and its unit.
SHOCK_QUANTITIES = {"price": ("on_demand_price", "USD per GPU-hour"),
                    "energy": ("energy_price", "USD per kWh"),
                    "utilization": ("on-demand utilization", "fraction"),
                    "obsolescence": ("next_gen_month", "month")}
# The portfolio row's mean of a quantity over the clusters, weighted as an analyst adds
# them up: prices per GPU-hour by GPUs (every GPU has the same hours in a month), energy
# prices by facility power at full load (GPUs x kW per GPU x PUE: the mean price of a
# kWh bought), utilizations by the on-demand GPUs (GPUs x (1 - reserved_share): the
# share of the on-demand GPU-hours in use); anything else by GPUs.
WEIGHTS = {"energy_price": "mean weighted by facility power",
           "on-demand utilization": "mean weighted by on-demand GPUs",
           "utilization_training": "mean weighted by on-demand GPUs",
           "utilization_inference": "mean weighted by on-demand GPUs"}


# A re-evaluated output within this share of the scale of the target (and of the
# outputs at the ends of the refined cell) meets the target; beyond it the solver has
# found a jump of the output over the target, not an answer. An IRR target is checked
# on the equation solved (NPV at the rate R), whose scale is the NPVs at the cell ends.
REL_TOL = 1e-6
MAX_CELLS = 16  # sign changes refined, nearest the base value first, before giving up


@dataclass
class Breakeven:
    scope: str  # "portfolio" or a cluster name
    value: float | None  # None: no value meets the target (status "none" or "jump")
    bracket: tuple[float, float]
    base_value: float
    achieved: float | None  # the output re-evaluated at the breakeven
    iterations: int
    # solved; none: the output does not cross the target in the bracket; jump: it
    # crosses it only by jumping over it (a step parameter, a threshold, a pole)
    status: str = "solved"
    jump: tuple[float, float] | None = None  # status jump: the values either side of the jump
    jump_outputs: tuple[float, float] | None = None  # the output there (full model)
    # status none: on which side of the target the output stays over the whole bracket
    # (above, below; undefined: the output has no value anywhere, e.g. an equity IRR
    # without debt; mixed: it changes side only across points without a value), and its
    # lowest and highest value on the scan
    side: str | None = None
    output_range: tuple[float, float] | None = None
    # the value in the units of what it moves (see the module's docstring)
    quantity: str = ""  # what value_in_units is: "on_demand_price", "energy_price", ...
    mean: str = ""  # the portfolio's row of a named shock: which mean over the clusters (WEIGHTS)
    unit: str = ""
    set_param: bool = False  # a parameter set (its value is in its own units), not a named shock
    value_in_units: float | None = None
    base_in_units: float | None = None
    jump_in_units: tuple[float, float] | None = None
    base_note: str = ""  # what the portfolio's base value of a set parameter is

    def to_dict(self) -> dict:
        def clean(x):
            return x if x is None or math.isfinite(x) else None

        def pair(p):
            return None if p is None else [clean(float(v)) for v in p]

        return self.__dict__ | {
            "bracket": list(self.bracket), "achieved": None if self.achieved is None else clean(self.achieved),
            "jump": pair(self.jump), "jump_outputs": pair(self.jump_outputs),
            "output_range": pair(self.output_range), "jump_in_units": pair(self.jump_in_units),
            "value_in_units": None if self.value_in_units is None else clean(self.value_in_units),
            "base_in_units": None if self.base_in_units is None else clean(self.base_in_units)}

    def describe(self, target: str) -> str:
        """One line for the terminal: the value (and in units), or why there is none."""
        name, _, level = target.partition("=")
        name = name.strip()
        if self.status == "jump":
            a, b = distinct_texts(*self.jump)
            oa, ob = (format_output(name, v) for v in self.jump_outputs)
            if oa == ob:
                oa, ob = distinct_texts(*self.jump_outputs)
            units = ""
            if self.jump_in_units is not None and self.quantity and not self.set_param:
                ua, ub = distinct_texts(*self.jump_in_units)
                units = f"; {self.quantity} {ua} -> {with_unit(ub, self.unit)}"
                units += f", {self.mean}" if self.mean else ""
            return (f"no value meets the target; the output jumps over it between {a} and {b} "
                    f"({name} {oa} -> {ob}{units}; base {self.base_value:g})")
        if self.value is None:
            what = TARGET_NAMES.get(name, name)
            lo, hi = self.bracket
            span = f"over the whole range [{lo:g}, {hi:g}]"
            if self.side in ("above", "below"):
                seen = ""
                if self.output_range is not None:
                    o_lo, o_hi = (format_output(name, v) for v in self.output_range)
                    seen = f"from {o_lo} to {o_hi}; "
                return (f"no breakeven: {what} stays {self.side} {format_output(name, float(level))} {span} "
                        f"({seen}base {self.base_value:g})")
            if self.side == "undefined":
                why = "no debt; " if name in ("equity_irr", "min_dscr") else ""
                return f"no breakeven: {what} has no value {span} ({why}base {self.base_value:g})"
            return (f"no breakeven in [{lo:g}, {hi:g}]: {what} changes side only across points where "
                    f"it has no value (base {self.base_value:g})")
        text = f"{self.value:.6g}"
        if self.quantity and self.value_in_units is not None:
            if self.set_param:  # the value is in the parameter's units
                text = with_unit(f"{self.value_in_units:.6g}", self.unit)
                if self.scope == "portfolio":
                    text += everywhere(self.quantity)
            else:
                text += f" -> {self.quantity} {with_unit(f'{self.value_in_units:.6g}', self.unit)}"
                text += f", {self.mean}" if self.mean else ""
        base = f"base {self.base_value:g}" + (f", {self.base_note}" if self.base_note else "")
        return f"{text}   ({base}; re-evaluated {name} = {self.achieved:.6g})"


def everywhere(param: str) -> str:
    """Where the portfolio's row sets a parameter: " in every cluster", " in every item it
    names", " in every programme"; "" for the platform's one value."""
    if is_platform_path(param):
        return ""
    if is_item_path(param):
        return " in every item it names"
    return " in every programme" if is_scalar_path(param) and param.startswith("optimization.") else " in every cluster"


def with_unit(text: str, unit: str) -> str:
    """A number as text with its unit: "3.85 USD per GPU-hour", "0.61" (a fraction), "18.5"
    (a month)."""
    if unit in ("", "fraction", "ratio", "1", "month"):
        return text
    return f"{text} {unit}"


def format_output(target: str, v: float | None) -> str:
    """An output value for a sentence: money with k/M/B, payback "never" when infinite."""
    if v is None or math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "never" if target == "payback_months" and v > 0 else f"{v}"
    if target == "npv":
        for div, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
            if abs(v) >= div:
                return f"{v / div:.4g}{suffix}"
    return f"{v:.4g}"


def distinct_texts(a: float, b: float) -> tuple[str, str]:
    """a and b with the fewest significant digits (6 at least) that tell them apart."""
    for digits in range(6, 18):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb:
            break
    return ta, tb


def parse_target(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    name = name.strip()
    if name not in TARGETS or not value:
        raise ConfigError([f"--target: expected one of {', '.join(t + '=VALUE' for t in TARGETS)}, got {text!r}"])
    try:
        level = float(value)
    except ValueError:
        raise ConfigError([f"--target: {value!r} is not a number"]) from None
    if not math.isfinite(level) or (name in RATE_TARGETS and level <= -1.0):
        raise ConfigError([f"--target: {name} must be a finite number"
                           + (" above -1" if name in RATE_TARGETS else "") + f", got {value!r}"])
    return name, level


def moved_params(param: str, itemised: bool = False) -> tuple[str, ...]:
    """The cluster (or portfolio) parameters that --param moves (an item path: its flow
    array, "contracts.price"; a version 2 scalar: its array, named as the path)."""
    if param in NAMED_SHOCKS:
        return named_targets(param, itemised)
    if is_item_path(param):
        return (item_path_target(param)[0],)
    return (param,)


def itemise(portfolio: Portfolio, param: str) -> None:
    """A --param that names an item by path makes the portfolio itemised, as a grid axis
    on one does (grid_config.load_grid): its base arrays carry the items; a version 2
    scalar turns its group of arrays on (Portfolio.use, itemised too)."""
    if is_item_path(param):
        portfolio.itemised = True
    elif is_scalar_path(param) and scalar_target(param)[0] is not None:
        portfolio.use(scalar_group(param))


def param_unit(param: str) -> str:
    """The unit of a parameter's value, or of an item field's or version 2 scalar's named
    by path ("" for a shock)."""
    if is_item_path(param):
        target = item_path_target(param)[0]
        return ITEM_PARAMS[target].unit if target else ""
    spec = PARAMS.get(param) or V2_SCALARS.get(param)
    return spec.unit if spec else ""


def _item_axis(param: str, portfolio: Portfolio, mask: tuple[bool, ...]) -> AxisSpec:
    """The set axis of an item path over the clusters of `mask`; refused where the path is
    malformed or no such cluster has the item (grid_config.resolve_item_path)."""
    target, items, why = resolve_item_path(param, portfolio, mask)
    if why:
        raise ConfigError([f"--param: {param}: {why}"])
    return AxisSpec(param, (target,), "set", mask, items)


def _scalar_axis(param: str, portfolio: Portfolio, mask: tuple[bool, ...]) -> AxisSpec:
    """The set axis of a version 2 scalar over the clusters of `mask` (an optimization
    field: those that run a programme; the platform's: the portfolio); refused where the
    field is unknown, no such cluster runs a programme or the portfolio has no platform
    (grid_config.resolve_scalar_path)."""
    target, moved, why = resolve_scalar_path(param, portfolio, None if all(mask) else mask)
    if why:
        raise ConfigError([f"--param: {param}: {why}"])
    return AxisSpec(param, (target,), "set", moved)


def model_params(portfolio: Portfolio, spec: AxisSpec | None = None, values=()) -> dict[str, np.ndarray]:
    """The parameters as the model uses them: the base case (spec None: [1, C], items
    [1, C, K] with the implied ones derived), or after `spec` at each of `values`
    ([n, C], items [n, C, K]), clipped and balanced (kernels.shocks.apply_axis_values)."""
    from .kernels.shocks import apply_axis_values

    x = np.asarray(values, dtype=np.float64)
    specs, points = ((), ()) if spec is None else ((spec,), (x,))
    n = 1 if spec is None else x.shape[0]
    with np.errstate(all="ignore"):
        p, _ = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate), specs, points)
    return {k: np.broadcast_to(v, (n,) + v.shape[1:]) for k, v in p.items()}


def _on_demand_share(p: dict) -> np.ndarray:
    """The share of each cluster's GPUs in the on-demand pool (1 - the contracts' shares)."""
    if "contracts.share" in p:
        return 1.0 - np.sum(p["contracts.share"], axis=-1)
    return 1.0 - p["reserved_share"]


def _weights(quantity: str, base: dict, clusters: list[int]) -> tuple[np.ndarray, str]:
    """The portfolio row's weights of `quantity` over `clusters` and what the mean is
    (WEIGHTS); base: the parameters as the model uses them, [C] (items [C, K])."""
    g = base["gpus"][clusters]
    if quantity == "energy_price":
        w = g * base["kw_per_gpu"][clusters] * base["pue"][clusters]
    elif quantity in WEIGHTS:  # utilizations: the on-demand GPUs
        w = g * _on_demand_share(base)[clusters]
    else:
        w = g
    if not np.sum(w) > 0:
        return g, "GPU-weighted mean"
    return w, WEIGHTS.get(quantity, "GPU-weighted mean")


def _quantity(param: str, p: dict) -> np.ndarray:
    """Per cluster, what `param` moves, from parameters name -> [n, C] (items [n, C, K])."""
    if param == "utilization":
        if "segments.share" in p:  # the pool's mean utilization, sum_j sigma_j u_j
            return np.sum(p["segments.share"] * p["segments.utilization"], axis=-1)
        w = p["inference_share"]  # the on-demand pool's training/inference blend
        return (1.0 - w) * p["utilization_training"] + w * p["utilization_inference"]
    if param in SHOCK_QUANTITIES:
        return p[SHOCK_QUANTITIES[param][0]]
    return p[param]


ITEM_MEAN = "mean weighted by the GPUs each item covers"


def _item_quantity(spec: AxisSpec, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster, the item field an item path's axis moves, as the mean over the items
    it picks weighted by the GPUs each covers (a contract N r_k, a segment N (1 - sum r)
    sigma_j; a share itself by the cluster's, or its pool's, GPUs; the plain mean where
    they cover none), and that weight: ([n, C], [n, C]), NaN where a cluster has none."""
    target = spec.targets[0]
    kind, field = target.split(".")
    picked = np.asarray(spec.item_mask)[None]  # [1, C, K]
    gpus = p["gpus"] if kind == "contracts" else p["gpus"] * _on_demand_share(p)
    w = gpus[..., None] * (1.0 if field == "share" else p[f"{kind}.share"])
    w = np.where(picked, w, 0.0)
    w = np.where(np.sum(w, axis=-1, keepdims=True) > 0, w, np.where(picked, 1.0, 0.0))
    total = np.sum(w, axis=-1)
    with np.errstate(all="ignore"):
        q = np.sum(np.where(w > 0, w * p[target], 0.0), axis=-1) / total
    return q, total


def _mean(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each row's mean of q [n, C] weighted by w [n, C] over the clusters that have a value."""
    has = w > 0
    with np.errstate(all="ignore"):
        return np.sum(np.where(has, q * w, 0.0), axis=1) / np.sum(np.where(has, w, 0.0), axis=1)


def axis_for(param: str, portfolio: Portfolio, clusters: list[int]) -> tuple[AxisSpec, float, tuple]:
    """The shock that moves `param` (a named shock, a parameter or an item field by path,
    set), its base value and bracket. A parameter's base over several clusters is their
    weighted mean (WEIGHTS); an item field's, its items' (_item_quantity)."""
    mask = tuple(i in clusters for i in range(len(portfolio.clusters)))
    if param in NAMED_SHOCKS:
        _, op, neutral = NAMED_SHOCKS[param]
        return AxisSpec(param, named_targets(param, portfolio.itemised), op, mask), neutral, SHOCK_BRACKETS[param]
    if is_item_path(param):
        axis = _item_axis(param, portfolio, mask)
        spec = ITEM_PARAMS[axis.targets[0]]
        base = float(_mean(*_item_quantity(axis, model_params(portfolio)))[0])
    elif is_scalar_path(param):
        axis = _scalar_axis(param, portfolio, mask)
        spec = V2_SCALARS[param]
        p = _base(portfolio)
        if is_platform_path(param):  # the portfolio's one value
            base = float(p[param][0])
        else:
            moved = _moved(axis, clusters)
            w, _ = _weights(param, p, moved)
            base = float(np.sum(w * p[param][moved]) / np.sum(w))
    elif param in PARAMS:
        axis = AxisSpec(param, (param,), "set", mask)
        spec = PARAMS[param]
        values = np.array([portfolio.clusters[c][param] for c in clusters], dtype=np.float64)
        w, _ = _weights(param, _base(portfolio), clusters)
        with np.errstate(all="ignore"):
            base = float(np.sum(w * values) / np.sum(w)) if np.all(np.isfinite(values)) else math.nan
    else:
        raise ConfigError([f"--param: unknown parameter or shock {param!r}"])
    if not math.isfinite(base):
        base = 0.0
    lo = spec.lo if math.isfinite(spec.lo) else base - 10 * max(abs(base), 1.0)
    hi = spec.hi if math.isfinite(spec.hi) else max(base, lo) + 10 * max(abs(base), 1.0)
    if param in WITHIN_HORIZON:  # an order or launch month: within the horizon
        hi = float(portfolio.horizon_months)
    return axis, base, (lo, hi)


def _moved(spec: AxisSpec, clusters: list[int]) -> list[int]:
    """The clusters of `clusters` that an axis moves (its cluster mask)."""
    return [c for c in clusters if spec.cluster_mask is None or spec.cluster_mask[c]]


def _base(portfolio: Portfolio) -> dict[str, np.ndarray]:
    """The base case's parameters as the model uses them, [C] (items [C, K])."""
    return {k: v[0] for k, v in model_params(portfolio).items()}


def in_units(portfolio: Portfolio, param: str, spec: AxisSpec, scope_cluster: int | None,
             shocked: list[int], values) -> list[float]:
    """Each of `values` (of the shock or parameter) in the units of what it moves: the
    scope cluster's, or the portfolio's weighted mean over `shocked` (as the model uses
    it: clipped, a debt term rounded)."""
    p = model_params(portfolio, spec, values)
    if is_item_path(param):
        q, w = _item_quantity(spec, p)
        if scope_cluster is not None:
            return [float(v) for v in q[:, scope_cluster]]
        return [float(v) for v in _mean(q[:, shocked], w[:, shocked])]
    q = _quantity(param, p)  # [n, C] (the platform's [n, 1])
    if scope_cluster is not None:
        return [float(v) for v in q[:, scope_cluster]]
    if is_platform_path(param):
        return [float(v) for v in q[:, 0]]
    if param not in NAMED_SHOCKS:  # set alike in every cluster it moves
        return [float(v) for v in q[:, _moved(spec, shocked)[0]]]
    name = SHOCK_QUANTITIES[param][0] if param in SHOCK_QUANTITIES else param
    w, _ = _weights(name, _base(portfolio), shocked)
    with np.errstate(all="ignore"):
        return [float(v) for v in np.sum(q[:, shocked] * w, axis=1) / np.sum(w)]


def _describe_units(portfolio: Portfolio, param: str, scope_cluster: int | None, shocked: list[int]):
    """(quantity, unit, mean, base note) of a scope's row."""
    if param in SHOCK_QUANTITIES:
        name, unit = SHOCK_QUANTITIES[param]
        if scope_cluster is not None:
            return name, unit, "", ""
        _, mean = _weights(name, _base(portfolio), shocked)
        return name, unit, mean, ""
    unit = param_unit(param)
    if scope_cluster is not None or is_platform_path(param):
        return param, unit, "", ""
    if is_item_path(param):
        return param, unit, "", f"the items' {ITEM_MEAN}"
    _, mean = _weights(param, _base(portfolio), shocked)
    return param, unit, "", f"the clusters' {mean}"


def _output_fn(portfolio: Portfolio, spec: AxisSpec, target: str, level: float, cluster: int | None, xp):
    """f(x) = output(x) - level for x [n], on the array namespace xp (numpy or jax.numpy).
    An IRR (equity IRR) target gives the NPV of the (equity) flows at the rate `level`,
    NaN for an equity IRR where the scope has no debt. The portfolio's flows carry the
    platform's (which has no debt), and a payback counts from the investment month (a
    cluster's order month, the portfolio's earliest), as kernels/metrics.py has them."""
    from .kernels.cashflows import cash_flows
    from .kernels.metrics import evaluate, from_month, npv, payback_months
    from .kernels.shocks import apply_axis_values

    base = {k: xp.asarray(v) for k, v in portfolio.base_arrays().items()}
    rate0 = xp.asarray(portfolio.discount_rate)

    def f(x):
        p, r = apply_axis_values(base, rate0, (spec,), (x,))
        n = x.shape[0]
        if target == "min_dscr":
            out = evaluate(p, xp.broadcast_to(r, (n,)), portfolio.horizon_months, equity_clusters=())
            v = out["min_dscr"] if cluster is None else out["cluster_min_dscr"][:, cluster]
            return v - level
        fl = cash_flows(p, portfolio.horizon_months)
        cf = fl["cfe" if target == "equity_irr" else "cf"]
        cf = xp.broadcast_to(cf, (n,) + cf.shape[1:])
        flows = xp.sum(cf, axis=1) if cluster is None else cf[:, cluster, :]
        if cluster is None and "platform" in fl:
            flows = flows + xp.broadcast_to(fl["platform"]["cf"], flows.shape)
        if target == "payback_months":
            if "order_month" in fl:
                t_o = xp.broadcast_to(fl["order_month"], cf.shape[:2])
                flows = from_month(flows, xp.min(t_o, axis=1) if cluster is None else t_o[:, cluster])
            return payback_months(flows) - level
        disc = xp.broadcast_to(r, (n,)) if target == "npv" else xp.full((n,), level, dtype=x.dtype)
        v = npv(flows, disc)
        if target == "npv":
            return v - level
        if target == "equity_irr":
            debt = xp.broadcast_to(fl["debt"], (n, cf.shape[1])) != 0
            has_debt = xp.any(debt, axis=1) if cluster is None else debt[:, cluster]
            v = xp.where(has_debt, v, math.nan)
        return v

    return f


def solve(portfolio: Portfolio, param: str, target: str, level: float, *, scope_cluster: int | None,
          shocked: list[int], bracket: tuple[float, float] | None = None, max_iter: int = 60) -> Breakeven:
    """The breakeven of one scope: scan, refine the sign change nearest the base value,
    re-evaluate. A refined value whose re-evaluation misses the target is where the
    output jumps over it; the next sign change is tried (up to MAX_CELLS), and if none
    meets the target the nearest jump is the answer (status "jump")."""
    import array_api_compat.numpy as xnp

    spec, base_value, default_bracket = axis_for(param, portfolio, shocked)
    a, b = bracket or default_bracket
    f_np = _output_fn(portfolio, spec, target, level, scope_cluster, xnp)
    scope = "portfolio" if scope_cluster is None else portfolio.cluster_names[scope_cluster]
    quantity, unit, mean, base_note = _describe_units(portfolio, param, scope_cluster, shocked)

    def units(*values):
        return in_units(portfolio, param, spec, scope_cluster, shocked, values)

    common = dict(quantity=quantity, unit=unit, mean=mean, set_param=param not in NAMED_SHOCKS,
                  base_in_units=units(base_value)[0], base_note=base_note)
    xs = np.linspace(a, b, N_SCAN)
    with np.errstate(all="ignore"):
        fs = f_np(xs)
    sign = np.sign(fs)
    # a payback that never happens (+inf) is on the far side of any target
    valid = np.isfinite(fs) | ((fs == np.inf) if target == "payback_months" else False)
    starts = sign[:-1] != 0
    starts[0] = True  # a zero at the first point is a crossing (elsewhere it ends the cell before)
    cells = np.nonzero(valid[:-1] & valid[1:] & (sign[:-1] * sign[1:] <= 0) & starts)[0]
    if cells.size == 0:
        side, out_range = _side(portfolio, spec, target, level, scope_cluster, xs, fs)
        return Breakeven(scope, None, (a, b), base_value, None, 0, status="none", side=side,
                         output_range=out_range, **common)
    mid = 0.5 * (xs[cells] + xs[cells + 1])
    jump = None
    for k in cells[np.argsort(np.abs(mid - base_value), kind="stable")][:MAX_CELLS]:
        x, lo, hi, it = _refine(portfolio, spec, target, level, scope_cluster, f_np, xs, fs, int(k), max_iter)
        achieved = _achieved(portfolio, spec, target, scope_cluster, x)
        if target in RATE_TARGETS:  # the equation solved, NPV at the rate R = 0 (R may not be the only IRR)
            with np.errstate(all="ignore"):
                ok = meets(0.0, float(f_np(np.asarray([x]))[0]), (fs[k], fs[k + 1]))
        else:
            ok = meets(level, achieved, (fs[k] + level, fs[k + 1] + level))
        if ok:
            return Breakeven(scope, float(x), (a, b), base_value, achieved, it,
                             value_in_units=units(x)[0], **common)
        if jump is None:
            sides = (lo, hi)
            if spec.op == "set":  # the values the model uses (clipped, a debt term rounded)
                from .kernels.shocks import clip_param

                sides = tuple(float(clip_param(np, spec.targets[0], np.float64(v))) for v in sides)
            outputs = tuple(_achieved(portfolio, spec, target, scope_cluster, v) for v in (lo, hi))
            jump = Breakeven(scope, None, (a, b), base_value, None, it, status="jump",
                             jump=(float(sides[0]), float(sides[1])), jump_outputs=outputs,
                             jump_in_units=tuple(units(lo, hi)), **common)
    return jump


def _side(portfolio, spec, target, level, cluster, xs, fs) -> tuple[str, tuple[float, float] | None]:
    """Where no crossing was found: on which side of the target the output stays (from
    the equation solved: an NPV at the rate R above 0 is an IRR above R), and the lowest
    and highest output on the scan (the full model's, for an IRR)."""
    signs = np.sign(fs[~np.isnan(fs)])
    if signs.size == 0:
        return "undefined", None
    if np.all(signs >= 0):
        side = "above"
    elif np.all(signs <= 0):
        side = "below"
    else:
        return "mixed", None
    if target in RATE_TARGETS:
        outputs = _achieved_many(portfolio, spec, target, cluster, xs)
    else:
        outputs = fs + level
    outputs = outputs[~np.isnan(outputs)]
    if outputs.size == 0:
        return side, None
    return side, (float(np.min(outputs)), float(np.max(outputs)))


def meets(level: float, achieved: float, near=()) -> bool:
    """Whether a re-evaluated output meets the target `level`: within REL_TOL of the
    largest of |level| and |near| (the outputs at the ends of the refined scan cell)."""
    if achieved is None or not math.isfinite(achieved):
        return False
    scale = max([abs(level), 1e-300] + [abs(float(v)) for v in near if math.isfinite(v)])
    return abs(achieved - level) <= REL_TOL * scale


def _refine(portfolio, spec, target, level, cluster, f_np, xs, fs, k: int, max_iter: int):
    """Refine the sign change in the scan cell [xs[k], xs[k+1]]: Newton steps with JAX's
    forward-mode derivative while they stay inside the bracket, then bisection (on numpy,
    without a derivative), until the value is met or the bracket is 1e-14 wide.
    Returns (x, lo, hi, iterations), lo and hi the final bracket."""
    lo, hi, f_lo = float(xs[k]), float(xs[k + 1]), float(fs[k])
    if fs[k + 1] == 0:
        return hi, lo, hi, 0
    if f_lo == 0:
        return lo, lo, hi, 0
    from .jax_adapter import namespace, value_and_derivative

    value_and_slope = value_and_derivative(_output_fn(portfolio, spec, target, level, cluster, namespace()))

    def value(x):
        with np.errstate(all="ignore"):
            return float(f_np(np.asarray([x]))[0]), math.nan

    if math.isfinite(f_lo) and math.isfinite(fs[k + 1]):
        x = lo - f_lo * (hi - lo) / (fs[k + 1] - f_lo)
    else:  # a payback that never happens at one end: no secant
        x = 0.5 * (lo + hi)
    newton = True
    it = 0
    finite = np.abs(fs[np.isfinite(fs)])
    scale = max(abs(level), float(np.max(finite)) * 1e-6 if finite.size else 0.0, 1e-12)
    for it in range(1, max_iter + 1):
        fx, dfx = value_and_slope(x) if newton else value(x)
        if abs(fx) <= 1e-12 * scale or hi - lo <= 1e-14 * max(1.0, abs(x)):
            break
        if np.sign(fx) == np.sign(f_lo):
            lo, f_lo = x, fx
        else:
            hi = x
        step = x - fx / dfx if dfx != 0 and math.isfinite(dfx) and math.isfinite(fx) else math.nan
        newton = lo < step < hi
        x = step if newton else 0.5 * (lo + hi)
    return float(x), lo, hi, it


def _achieved_many(portfolio: Portfolio, spec: AxisSpec, target: str, cluster: int | None, xs) -> np.ndarray:
    """The target output by the full model at each of `xs` (IRRs by their solver)."""
    from .kernels.metrics import evaluate
    from .kernels.shocks import apply_axis_values

    xs = np.asarray(xs, dtype=np.float64)
    p, r = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate), (spec,), (xs,))
    with np.errstate(all="ignore"):
        out = evaluate(p, np.broadcast_to(r, (xs.shape[0],)), portfolio.horizon_months)
    return np.asarray(out[target] if cluster is None else out["cluster_" + target][:, cluster], dtype=np.float64)


def _achieved(portfolio: Portfolio, spec: AxisSpec, target: str, cluster: int | None, x: float) -> float:
    """The target output re-evaluated by the full model at the breakeven (IRR by its solver)."""
    return float(_achieved_many(portfolio, spec, target, cluster, [x])[0])


def breakeven(portfolio: Portfolio, param: str, target_text: str, cluster: str | None = None,
              bracket: tuple[float, float] | None = None) -> list[Breakeven]:
    """Portfolio and per-cluster breakevens (or only `cluster`'s). An item path's rows:
    the portfolio's and those of the clusters that have the item; an optimization
    field's, those of the clusters that run a programme; a platform field's, the
    portfolio's alone (the clusters' own outputs leave the platform out)."""
    target, level = parse_target(target_text)
    if cluster is not None and cluster not in portfolio.cluster_names:
        raise ConfigError([f"--cluster: unknown cluster {cluster!r} (clusters: {', '.join(portfolio.cluster_names)})"])
    if cluster is not None and is_platform_path(param):
        raise ConfigError([f"--cluster: {param} is a field of the portfolio's platform layer, which a cluster's "
                           "own outputs leave out: only the portfolio has a breakeven for it"])
    itemise(portfolio, param)
    everyone = list(range(len(portfolio.clusters)))
    out = []
    if cluster is None:
        out.append(solve(portfolio, param, target, level, scope_cluster=None, shocked=everyone, bracket=bracket))
        scopes = [c for c in everyone if _has_own(portfolio, param, c)]
    else:
        scopes = [portfolio.cluster_names.index(cluster)]
    for c in scopes:
        out.append(solve(portfolio, param, target, level, scope_cluster=c, shocked=[c], bracket=bracket))
    return out


def _has_own(portfolio: Portfolio, param: str, c: int) -> bool:
    """Whether cluster c has what `param` moves of its own (an item path: the item it
    names; an optimization field: a programme; a platform field: nothing)."""
    if is_platform_path(param):
        return False
    mask = tuple(i == c for i in range(len(portfolio.clusters)))
    if is_scalar_path(param):
        return resolve_scalar_path(param, portfolio, mask)[2] is None
    if not is_item_path(param):
        return True
    return resolve_item_path(param, portfolio, mask)[2] is None


def shifted_portfolio(portfolio: Portfolio, axis, value: float) -> Portfolio:
    """The portfolio with one grid axis's shock applied at `value`, as a new base case.

    Items are written back as the model then uses them: a cluster's own items with
    their moved fields; implied items the axis moves by path become the cluster's own
    (contracts anchor and others, segment IMPLIED_SEGMENT), the others stay implied
    and follow the version 1 keys. A version 2 scalar the axis moves is written back
    where it moves it (_scalars_after)."""
    import dataclasses

    from .kernels.shocks import apply_axis_values

    p, r = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate),
                             (axis.spec,), (np.asarray([value]),))
    C = len(portfolio.clusters)
    clusters = [{k: float(np.broadcast_to(p[k], (1, C))[0, c]) for k in PARAM_NAMES} for c in range(C)]
    items = portfolio.items
    if portfolio.itemised:
        items = [_items_after(it, {k: v[0, c] for k, v in p.items() if k in ITEM_PARAMS},
                              _moved_by_path(axis.spec, c)) for c, it in enumerate(portfolio.items)]
    scalars, platform = _scalars_after(portfolio, axis.spec, p)
    return dataclasses.replace(portfolio, clusters=clusters, items=items, scalars=scalars, platform=platform,
                               discount_rate=float(np.reshape(r, (-1,))[0]))


def _scalars_after(portfolio: Portfolio, spec: AxisSpec, p: dict) -> tuple[list[Scalars], Scalars | None]:
    """The clusters' version 2 scalars and the platform's after one axis (p: the
    parameters after it, [1, C], the platform's [1, 1]): each scalar the axis moves, as
    the model then uses it (rounded, an order or launch month clipped to the horizon),
    in the clusters it moves; copies, the portfolio's own left as they were."""
    scalars = [Scalars(dict(s.values), dict(s.origins)) for s in portfolio.scalars]
    platform = portfolio.platform
    for t in (t for t in spec.targets if t in V2_SCALARS):
        value = np.asarray(p[t], dtype=np.float64).reshape(-1)
        if t in WITHIN_HORIZON:
            value = np.minimum(value, float(portfolio.horizon_months))
        if is_platform_path(t):
            platform = Scalars({**platform.values, t: float(value[0])}, {**platform.origins, t: "file"})
            continue
        for c, s in enumerate(scalars):
            if spec.cluster_mask is None or spec.cluster_mask[c]:
                s.values[t] = float(value[c] if value.size > 1 else value[0])
                s.origins[t] = "cluster"
    return scalars, platform


# The name of a cluster's implied segment once a path has moved it (shifted_portfolio)
IMPLIED_SEGMENT = "pool"


def _moved_by_path(spec: AxisSpec, c: int) -> set[str]:
    """The kinds of item of cluster c that an axis moves by path (kernels.shocks: an axis
    that also moves version 1 keys leaves implied items to them)."""
    if any(t not in ITEM_PARAMS for t in spec.targets) or (spec.cluster_mask and not spec.cluster_mask[c]):
        return set()
    if spec.item_mask is not None and not any(spec.item_mask[c]):
        return set()
    return {t.split(".")[0] for t in spec.targets}


def _items_after(items: Items, arrays: dict[str, np.ndarray], moved: set[str]) -> Items:
    """A cluster's items with the fields of `arrays` (item name -> [K], after a shock):
    its own items, and the implied ones of the kinds in `moved`; other implied kinds stay
    implied."""
    out = {}
    for kind in KINDS:
        given = items.of(kind)
        if given is None and kind not in moved:
            out[kind] = None
            continue
        rows = given if given is not None else [
            {"name": n, "industry": None} for n in (items.names(kind) or [IMPLIED_SEGMENT])]
        fields = [k.split(".")[1] for k in ITEM_PARAMS if k.startswith(kind + ".")]
        out[kind] = [dict(row, **{f: float(arrays[f"{kind}.{f}"][k]) for f in fields})
                     for k, row in enumerate(rows)]
    return Items(contracts=out["contracts"], segments=out["segments"], origins=items.origins)


STATUS_CODES = {"solved": 0, "none": 1, "jump": 2}  # the curve file's `status`
# the datasets of a curve file besides its axis (write_curve)
CURVE_NAMES = ("scope", "breakeven", "breakeven_in_units", "achieved", "status", "jump_low", "jump_high")
SHOCK_UNITS = {"utilization": "shift of both utilizations", "price": "scale of the on-demand price",
               "energy": "scale of the energy price", "obsolescence": "months (shift of next_gen_month)"}


def _units(param: str | None, target_text: str | None) -> dict:
    """Units of the curve file's datasets: the parameter's (or shock's), the target output's."""
    from .kernels.params import OUTPUT_UNITS

    unit = SHOCK_UNITS.get(param) or param_unit(param)
    in_units_unit = SHOCK_QUANTITIES[param][1] if param in SHOCK_QUANTITIES else unit
    target = (target_text or "").partition("=")[0].strip()
    return {"breakeven": unit, "jump_low": unit, "jump_high": unit, "breakeven_in_units": in_units_unit,
            "achieved": OUTPUT_UNITS.get(target, ""), "status": "1"}


def check_curve_question(portfolio: Portfolio, scenario, over: str, param: str, target_text: str) -> None:
    """Refuse, before any work, a curve that cannot be traced: no such axis, an axis named
    like a dataset of the curve file, an axis that moves what --param moves (the breakeven
    would set the very value the axis gives; for items, the same field of the same
    items), an unknown parameter, item or target."""
    parse_target(target_text)
    everyone = tuple(True for _ in portfolio.clusters)
    if is_item_path(param):
        moved = _item_axis(param, portfolio, everyone)
    elif is_scalar_path(param):
        _scalar_axis(param, portfolio, everyone)
    elif param not in NAMED_SHOCKS and param not in PARAMS:
        raise ConfigError([f"--param: unknown parameter or shock {param!r}"])
    axes = {a.name: a for a in scenario.axes}
    if over not in axes:
        raise ConfigError([f"--over: {scenario.path} has no axis {over!r} (axes: {', '.join(axes) or 'none'})"])
    if over in CURVE_NAMES:
        raise ConfigError([f"--over: {scenario.path}: axis {over!r} shares its name with a dataset of the "
                           f"curve file ({', '.join(CURVE_NAMES)}); give the axis another name"])
    spec = axes[over].spec
    shared = [t for t in spec.targets if t in moved_params(param, portfolio.itemised)]
    if shared and is_item_path(param) and spec.item_mask is not None \
            and not np.any(np.asarray(spec.item_mask) & np.asarray(moved.item_mask)):
        shared = []  # the same field of other items
    if shared:
        raise ConfigError([f"--over: axis {over!r} moves {', '.join(shared)}, which --param {param} also "
                           f"moves: the breakeven would overwrite the axis's value at every point; "
                           f"trace it along another axis, or solve for another parameter"])


def breakeven_curve(portfolio: Portfolio, scenario, over: str, param: str, target_text: str,
                    cluster: str | None = None, bracket=None) -> dict:
    """Breakevens at each value of one axis of a grid (the other axes neutral).

    value [axis, scope] is NaN where no value meets the target; status says why (none:
    no crossing in the bracket; jump: the output jumps over the target between
    jump_low and jump_high); value_in_units: the value in the units of what it moves."""
    itemise(portfolio, param)
    check_curve_question(portfolio, scenario, over, param, target_text)
    axis = {a.name: a for a in scenario.axes}[over]
    rows = [breakeven(shifted_portfolio(portfolio, axis, float(v)), param, target_text, cluster, bracket)
            for v in axis.values]
    scopes = [r.scope for r in rows[0]]

    def grid(get):
        return np.array([[get(r) for r in row] for row in rows], dtype=np.float64)

    return {"axis": axis, "scopes": scopes, "rows": rows,
            "value": grid(lambda r: np.nan if r.value is None else r.value),
            "value_in_units": grid(lambda r: np.nan if r.value_in_units is None else r.value_in_units),
            "achieved": grid(lambda r: np.nan if r.achieved is None else r.achieved),
            "status": np.array([[STATUS_CODES[r.status] for r in row] for row in rows], dtype=np.int8),
            "jump_low": grid(lambda r: np.nan if r.jump is None else r.jump[0]),
            "jump_high": grid(lambda r: np.nan if r.jump is None else r.jump[1])}


def curve_table(curve: dict, param: str) -> list[str]:
    """The --over curve as text: one row per axis value, one column per scope (the
    portfolio and each cluster), then what the cells mean."""
    over = curve["axis"].name
    scopes = curve["scopes"]

    def cell(r: Breakeven) -> str:
        if r.status == "solved":
            return f"{r.value:.6g}"
        if r.status == "jump":
            a, b = distinct_texts(*r.jump)
            return f"jump {a}..{b}"
        return {"above": "above", "below": "below"}.get(r.side, "n/a")

    header = [over] + scopes
    body = [[f"{v:g}"] + [cell(r) for r in row] for v, row in zip(curve["axis"].values, curve["rows"])]
    widths = [max(len(line[j]) for line in [header] + body) for j in range(len(header))]
    lines = ["  " + "  ".join(t.ljust(w) if j == 0 else t.rjust(w) for j, (t, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    what = SHOCK_UNITS.get(param) or param_unit(param)
    lines.append(f"  cells: the breakeven {param}" + (f" ({what})" if what else "")
                 + "; above/below: no breakeven, the output stays above/below the target over the whole "
                   "range; jump A..B: no value meets it, the output jumps over it between A and B")
    return lines


def curve_attrs(portfolio: Portfolio, scenario, param: str, target_text: str, over: str,
                cluster: str | None, bracket) -> dict:
    """The curve file's root attributes: a result file's provenance (h5io.provenance: the
    resolved portfolio and scenario as config, its sha256, versions, backend, created),
    kind = "breakeven", and the question asked (param, target, over, cluster, range)."""
    from .config import config_json
    from .h5io import provenance
    from .jax_adapter import device_name

    cfg, sha = config_json(portfolio, scenario)
    extra = {"kind": "breakeven", "param": param, "target": target_text, "over": over,
             "cluster": cluster or "all"}
    if bracket is not None:
        extra["range"] = np.asarray(bracket, dtype=np.float64)
    jax_device = device_name()  # the derivatives; the scans and re-evaluations run on numpy
    device = "cpu" if jax_device == "cpu" else f"cpu (numpy), {jax_device} (jax)"
    return provenance(portfolio, scenario.name, cfg, sha, "numpy+jax", device, np.float64, **extra)


def write_curve(path, curve: dict, attrs: dict) -> Path:
    """HDF5, written under a temporary name and renamed when complete (h5io.AtomicFile):
    breakeven, breakeven_in_units, achieved, status, jump_low and jump_high [axis, scope],
    with dimension scales."""
    import h5py

    from .h5io import AtomicFile

    param = attrs.get("param")
    quantity = SHOCK_QUANTITIES[param][0] if param in SHOCK_QUANTITIES else param
    long_names = {
        "breakeven": ("value", "value of the parameter or shock meeting the target (NaN: none, see status)"),
        "breakeven_in_units": ("value_in_units", f"the breakeven as {quantity}: each cluster's, for the "
                                                 "portfolio the clusters' weighted mean (docs/model.md)"),
        "achieved": ("achieved", "target output re-evaluated at the breakeven"),
        "status": ("status", "0 solved, 1 none: no crossing in the bracket, 2 jump: the output jumps "
                             "over the target between jump_low and jump_high"),
        "jump_low": ("jump_low", "status 2: the value just below the jump (as the model uses it)"),
        "jump_high": ("jump_high", "status 2: the value just above the jump (as the model uses it)"),
    }
    with AtomicFile(path) as out:
        f = out.f
        for k, v in attrs.items():
            f.attrs[k] = v
        ax = f.create_dataset(curve["axis"].name, data=np.asarray(curve["axis"].values, dtype=np.float64))
        ax.make_scale(curve["axis"].name)
        sc = f.create_dataset("scope", data=np.array(curve["scopes"], dtype=object), dtype=h5py.string_dtype())
        sc.make_scale("scope")
        for name, (key, long_name) in long_names.items():
            if key not in curve:  # a curve from before value_in_units
                continue
            ds = f.create_dataset(name, data=curve[key])
            ds.dims[0].attach_scale(ax)
            ds.dims[1].attach_scale(sc)
            ds.attrs["long_name"] = long_name
        units = _units(param, attrs.get("target"))
        for name, unit in units.items():
            if name in f:
                f[name].attrs["units"] = unit
        f["status"].attrs["flag_values"] = np.array(list(STATUS_CODES.values()), dtype=np.int8)
        f["status"].attrs["flag_meanings"] = " ".join(STATUS_CODES)
        return out.commit()
