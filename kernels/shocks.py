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

from .params import (HORIZON_KEY, IMPLIED_KEYS, ITEM_NAMES, ITEM_PARAMS, OPTIMIZATION_START_GIVEN, PARAMS,
                     PORTFOLIO_PARAMS, V2_SCALARS)

# whole months: a shocked value is rounded to the nearest month, halves up (MODEL.md)
ROUNDED = frozenset({"debt_term_months", "order_month", "optimization.start_month", "platform.launch_month"})

# Where a range excludes its bound (discount_rate > -1), clip just inside it.
_OPEN_EPS = 1e-9


@dataclass(frozen=True)
class AxisSpec:
    """Static description of one axis: which parameters it moves and how.

    targets: parameter names (a named shock may move two); op: scale, shift or set;
    cluster_mask: per cluster, True where the shock applies (None: all clusters).
    Targets of version 2 items (contracts.share, segments.utilization, ...) are moved
    after every version 1 parameter, as MODEL.md orders them (apply_axis_values).
    """

    name: str
    targets: tuple[str, ...]
    op: str
    cluster_mask: tuple[bool, ...] | None = None
    # per cluster, per item slot: True where a target "contracts.<field>" or
    # "segments.<field>" (params.ITEM_PARAMS) is moved; None: every item
    item_mask: tuple[tuple[bool, ...], ...] | None = None


def param_range(name: str) -> tuple[float, float]:
    spec = PARAMS.get(name) or ITEM_PARAMS.get(name) or V2_SCALARS.get(name) or PORTFOLIO_PARAMS[name]
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


# months bounded by the horizon T (the params' HORIZON_KEY); and a bound that holds for
# files only: a shocked adoption time <= 0 means instant adoption (MODEL.md)
HORIZON_BOUNDED = frozenset({"order_month", "platform.launch_month"})
FILE_ONLY_LOWER = frozenset({"platform.adoption_months"})
START_MONTH = "optimization.start_month"


def clip_param(xp, name: str, x, horizon=None):
    """A shocked value back in its range (rounded first where it is a whole month);
    horizon: T, for the months it bounds."""
    lo, hi = param_range(name)
    if name in FILE_ONLY_LOWER:
        lo = -math.inf
    if name in ROUNDED:
        x = xp.floor(x + 0.5)
    if lo > -math.inf:
        x = xp.where(x < lo, lo, x)  # one-sided gradient at the bound, as cashflows.clip
    if hi < math.inf:
        x = xp.where(x > hi, hi, x)
    if horizon is not None and name in HORIZON_BOUNDED:
        x = xp.where(x > horizon, horizon, x)
    return x


def shock_scalar(xp, params: dict, name: str, op: str, v, mask=None):
    """params with the cluster (or platform) field `name` moved by op v ([S, C] or
    [S, 1]) where mask ([C] booleans, None: everywhere) and clipped. A programme's start
    month left to its default moves from that default, ceil(t_o + D) as the shocked
    order month and delivery stand at this shock, and is given from then on."""
    x = params[name]
    if name == START_MONTH:
        t_o = params.get("order_month", 0.0)
        if HORIZON_KEY in params:
            t_o = xp.where(t_o > params[HORIZON_KEY], params[HORIZON_KEY], t_o)
        default = xp.maximum(xp.ceil(t_o + params["delivery_months"]), 1.0)
        x = xp.where(params[OPTIMIZATION_START_GIVEN] > 0, x, default)
    moved = clip_param(xp, name, apply_op(xp, x, op, v), params.get(HORIZON_KEY))
    out = dict(params)
    if mask is not None:
        moved = xp.where(xp.asarray(mask)[None, :], moved, params[name])
    out[name] = moved
    if name == START_MONTH:
        given = xp.ones_like(moved) if mask is None else xp.where(xp.asarray(mask)[None, :], 1.0, 0.0)
        out[OPTIMIZATION_START_GIVEN] = xp.maximum(params[OPTIMIZATION_START_GIVEN], given)
    return out


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

    base: name -> [C] ([C, K] for items); discount_rate: []; point_values: tuple of [S]
    (one per axis). Returns (params name -> [S, C] for shocked names, [1, C] otherwise
    ([S|1, C, K] for items); discount [S] or [1]). Differentiable in point_values: the
    slope of an output along an axis.

    Version 2 (items in base): the version 1 parameters move first; then the clusters
    without contracts or segments of their own get their implied ones from them; then
    the items move (a named shock's item targets first, then the paths, each in axis
    order), each field clipped to its range; last, once per point, contract shares
    summing past 1 are scaled down in proportion and segment shares renormalised.
    """
    xp = array_namespace(discount_rate)
    params = {k: v[None, ...] for k, v in base.items()}
    rate = xp.reshape(discount_rate, (1,))
    for spec, v in zip(axes, point_values):
        for name in spec.targets:
            if name in ITEM_PARAMS:
                continue
            if name == "discount_rate":
                rate = clip_param(xp, name, apply_op(xp, rate, spec.op, v))
                continue
            params = shock_scalar(xp, params, name, spec.op, v[:, None], spec.cluster_mask)
    if ITEM_NAMES[0] not in params:
        return params, rate
    params.update(with_implied_items(xp, params))
    # a named shock's item targets (it moves version 1 keys too) before the path shocks:
    # version 1 keys' shocks come first, whatever the form of the cluster's items
    named = [(spec, v) for spec, v in zip(axes, point_values) if any(t not in ITEM_PARAMS for t in spec.targets)]
    paths = [(spec, v) for spec, v in zip(axes, point_values) if all(t in ITEM_PARAMS for t in spec.targets)]
    for spec, v in named + paths:
        for name in spec.targets:
            if name not in ITEM_PARAMS:
                continue
            x = params[name]
            moved = clip_param(xp, name, apply_op(xp, x, spec.op, v[:, None, None]))
            mask = _item_mask(xp, spec, x.shape[1:])[None]
            if any(t not in ITEM_PARAMS for t in spec.targets):
                # a shock on version 1 keys and items alike (the named `utilization`): a
                # cluster with implied items took it through its version 1 keys already
                kind = IMPLIED_KEYS[0] if name.startswith("contracts.") else IMPLIED_KEYS[1]
                mask = mask & (params[kind][..., None] == 0)
            params[name] = xp.where(mask, moved, x)
    return balance_shares(xp, params), rate


def _item_mask(xp, spec: AxisSpec, shape: tuple[int, int]):
    """[C, K] booleans: the items an axis moves (its item mask within its clusters)."""
    mask = xp.ones(shape, dtype=xp.bool)
    if spec.item_mask is not None:
        mask = xp.asarray(spec.item_mask)
    if spec.cluster_mask is not None:
        mask = mask & xp.asarray(spec.cluster_mask)[:, None]
    return mask


def _with_lead(xp, arrays):
    """The arrays broadcast to one leading (scenario) size, each keeping its other axes."""
    n = max(a.shape[0] for a in arrays)
    return [xp.broadcast_to(a, (n,) + a.shape[1:]) for a in arrays]


def implied_items(xp, params: dict) -> dict:
    """The implied items of a cluster without contracts or segments (MODEL.md): for every
    cluster, contracts "anchor" (share r0 k, price p_R, loss month t_L) and "others"
    (share r0 (1 - k), never lost) in slots 0 and 1, both with M, rho, delta and u_R, and
    one segment (share 1, u = (1 - w) u_T + w u_I, multiplier 1) in slot 0. The other
    slots keep the given arrays. Returns item name -> [S|1, C, K] (every cluster:
    with_implied_items picks the implied clusters' rows)."""
    r0, k = params["reserved_share"], params["top_client_share"]
    w = params["inference_share"]
    never = xp.full_like(params["client_loss_month"], math.inf)
    one = xp.ones_like(r0)
    pairs = {
        "contracts.share": (r0 * k, r0 * (1.0 - k)),
        "contracts.price": (params["reserved_price"],) * 2,
        "contracts.term_months": (params["reserved_term_months"],) * 2,
        "contracts.renewal_rate": (params["renewal_rate"],) * 2,
        "contracts.renewal_discount": (params["renewal_discount"],) * 2,
        "contracts.utilization": (params["reserved_utilization"],) * 2,
        "contracts.loss_month": (params["client_loss_month"], never),
        "segments.share": (one,),
        "segments.utilization": ((1.0 - w) * params["utilization_training"] + w * params["utilization_inference"],),
        "segments.price_multiplier": (one,),
    }
    out = {}
    for name, values in pairs.items():
        given = params[name]
        parts = _with_lead(xp, [xp.stack(_with_lead(xp, list(values)), axis=-1), given[..., len(values):]])
        # the given slots only: where no cluster's items are implied there may be fewer
        out[name] = xp.concat(parts, axis=-1)[..., :given.shape[-1]]
    return out


def with_implied_items(xp, params: dict) -> dict:
    """The item arrays with the implied clusters' rows replaced by implied_items'."""
    derived = implied_items(xp, params)
    out = {}
    for name, full in derived.items():
        flag = params[IMPLIED_KEYS[0] if name.startswith("contracts.") else IMPLIED_KEYS[1]]
        out[name] = xp.where(flag[..., None] > 0, full, params[name])
    return out


def balance_shares(xp, params: dict) -> dict:
    """Contract shares summing past 1 scaled down in proportion; segment shares
    renormalised to sum to 1 (all 0 stays 0: a pool without demand)."""
    out = dict(params)
    share = params["contracts.share"]
    total = xp.sum(share, axis=-1, keepdims=True)
    over = total > 1.0
    out["contracts.share"] = xp.where(over, share / xp.where(over, total, 1.0), share)
    seg = params["segments.share"]
    total = xp.sum(seg, axis=-1, keepdims=True)
    some = total > 0.0
    out["segments.share"] = xp.where(some, seg / xp.where(some, total, 1.0), seg)
    return out


def shocked_params(base: dict, discount_rate, axes: tuple[AxisSpec, ...], axis_values, flat):
    """Parameters at the grid points `flat` (flat C-order indices [S]); see apply_axis_values."""
    return apply_axis_values(base, discount_rate, axes, axis_point_values(axis_values, flat))
