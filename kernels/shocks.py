"""Shocks: move parameters at each grid point, then clip them to their ranges.

A grid point is identified by its flat index in the Cartesian product of the axes
(C order, the first axis slowest). The shocked parameters of a chunk of points are
computed from the flat indices on the device, so a chunk needs nothing from the
host but its first index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from array_api_compat import array_namespace

from .params import PARAMS, PORTFOLIO_PARAMS

# Where a range excludes its bound (discount_rate > -1), clip just inside it.
_OPEN_EPS = 1e-9


@dataclass(frozen=True)
class AxisSpec:
    """Static description of one axis: which parameters it moves and how.

    targets: parameter names (a named shock may move two); op: scale, shift or set;
    cluster_mask: per cluster, True where the shock applies (None: all clusters).
    """

    name: str
    targets: tuple[str, ...]
    op: str
    cluster_mask: tuple[bool, ...] | None = None


def param_range(name: str) -> tuple[float, float]:
    spec = PARAMS.get(name) or PORTFOLIO_PARAMS[name]
    lo = spec.lo + _OPEN_EPS if spec.lo_open and name == "discount_rate" else spec.lo
    return lo, spec.hi


def apply_op(xp, x, op: str, v):
    """One operation on a value that may be +-inf (client_loss_month = never)."""
    if op == "set":
        return v + 0.0 * xp.where(xp.isfinite(x), x, 0.0)
    if op == "scale":
        moved = x * v
    else:
        moved = x + v
    # inf stays inf: "never" scaled or shifted is still never
    return xp.where(xp.isfinite(x), moved, x)


def clip_param(xp, name: str, x):
    lo, hi = param_range(name)
    if name == "debt_term_months":
        x = xp.floor(x + 0.5)
    if lo > -math.inf:
        x = xp.where(x < lo, lo, x)  # one-sided gradient at the bound, as cashflows.clip
    if hi < math.inf:
        x = xp.where(x > hi, hi, x)
    return x


def grid_indices(xp, flat, sizes: tuple[int, ...]):
    """Per-axis indices of flat C-order indices `flat` [S] in a grid of `sizes`."""
    idx = []
    stride = 1
    strides = []
    for n in reversed(sizes):
        strides.append(stride)
        stride *= n
    strides.reverse()
    for n, st in zip(sizes, strides):
        idx.append((flat // st) % n)
    return idx


def axis_point_values(axis_values, flat) -> tuple:
    """Each axis's value at the grid points `flat`: a tuple of [S] arrays."""
    xp = array_namespace(flat)
    sizes = tuple(int(v.shape[0]) for v in axis_values)
    return tuple(xp.take(v, ix) for v, ix in zip(axis_values, grid_indices(xp, flat, sizes)))


def apply_axis_values(base: dict, discount_rate, axes: tuple[AxisSpec, ...], point_values):
    """Parameters after applying, in axis order, each axis's value per scenario.

    base: name -> [C]; discount_rate: []; point_values: tuple of [S] (one per axis).
    Returns (params name -> [S, C] for shocked names, [1, C] otherwise; discount [S] or [1]).
    Differentiable in point_values: the slope of an output along an axis.
    """
    xp = array_namespace(discount_rate)
    params = {k: v[None, :] for k, v in base.items()}
    rate = xp.reshape(discount_rate, (1,))
    for spec, v in zip(axes, point_values):
        for name in spec.targets:
            if name == "discount_rate":
                rate = clip_param(xp, name, apply_op(xp, rate, spec.op, v))
                continue
            x = params[name]
            moved = clip_param(xp, name, apply_op(xp, x, spec.op, v[:, None]))
            if spec.cluster_mask is not None:
                mask = xp.asarray(spec.cluster_mask)
                moved = xp.where(mask[None, :], moved, x)
            params[name] = moved
    return params, rate


def shocked_params(base: dict, discount_rate, axes: tuple[AxisSpec, ...], axis_values, flat):
    """Parameters at the grid points `flat` (flat C-order indices [S]); see apply_axis_values."""
    return apply_axis_values(base, discount_rate, axes, axis_point_values(axis_values, flat))
