"""The pieces behind sensitivities (pure array functions; the JAX adapter differentiates).

The JAX adapter pulls the weights of `flow_weights` back through the cash flows
(one batched reverse pass) and assembles the gradients with these functions. The IRR is
not differentiated through its solver: by the implicit function theorem,

    d i*/d theta = - (dNPV_m/d theta) / (dNPV_m/d i)   at the root i*,

where NPV_m(i) = sum_t CF_t (1+i)^-t is the monthly-rate NPV; dNPV_m/d theta is the
flow gradient weighted by (1+i*)^-t (see flow_weights).

Version 2 items: the gradients of the item arrays [.., C, K] (one column per slot) are
laid out for the files by item name instead (ItemColumns, by_item). Version 2 scalars
(capex_decline, optimization.<field>, platform.<field>) follow them, one column each
(by_scalar); a whole month (order, start, launch month) has none: the flows move in
steps of it, and its derivative is not taken (DIFFERENTIABLE_SCALARS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from array_api_compat import array_namespace

from .params import ITEM_FIELDS, ITEM_PARAMS, PARAM_NAMES, V2_SCALARS

# In a parameter name <kind>.*.<field>: every item of the kind of the cluster at once
EVERY_ITEM = "*"
# The version 2 scalars with a gradient: all but the whole months (order_month,
# optimization.start_month, platform.launch_month), in kernels.params.V2_SCALARS order
DIFFERENTIABLE_SCALARS: tuple[str, ...] = tuple(n for n, spec in V2_SCALARS.items() if not spec.integer)


@dataclass(frozen=True)
class ItemColumns:
    """The version 2 part of the parameter coordinate of the sensitivities (docs/model.md,
    "Sensitivities"): the items, per kind, contracts then segments, the item names in
    order of first appearance over the clusters, then "*" (every item of the cluster: the
    derivative of a common shift of them all), and for each name the kind's fields:
    `contracts.bank.price`, ..., `segments.*.utilization`; then the version 2 scalars
    the kernels carry (DIFFERENTIABLE_SCALARS of the groups in use): `capex_decline`,
    `optimization.energy_saving`, `platform.take_rate`, ...

    parts: per kind, (its flow arrays, select [C][K][N], present [C][N]): slot k of
    cluster c counts in the kind's item column n where select says so, and cluster c has
    item n where present says so (every cluster has "*"). scalars: the scalars' names;
    scalar_present [C][len(scalars)]: False where cluster c has no such scalar (an
    optimization field where it runs no programme). Static: hashable tuples.
    """

    names: tuple[str, ...]
    parts: tuple[tuple[tuple[str, ...], tuple, tuple], ...]
    scalars: tuple[str, ...] = ()
    scalar_present: tuple[tuple[bool, ...], ...] = ()

    @property
    def some_absent(self) -> bool:
        """Whether some cluster lacks an item another has, or a scalar (its columns are then NaN)."""
        return (any(not all(row) for _, _, present in self.parts for row in present)
                or any(not all(row) for row in self.scalar_present))


def item_columns(slot_names: list[dict[str, list[str | None]]], slots: dict[str, int],
                 scalars: dict[str, tuple[bool, ...]] | None = None) -> ItemColumns:
    """The ItemColumns of clusters whose items of each kind have slot_names[c][kind], in
    slot order (None: an item without a name, a version 1 cluster's implied segment,
    reached only by "*"); slots: the item arrays' width per kind; scalars: the version 2
    scalars with a column (DIFFERENTIABLE_SCALARS order), each with whether each
    cluster has it."""
    names: list[str] = []
    parts = []
    for kind, fields in ITEM_FIELDS.items():
        arrays = tuple(f"{kind}.{f.name}" for f in fields if f"{kind}.{f.name}" in ITEM_PARAMS)
        items: list[str] = []
        for cluster in slot_names:
            items += [n for n in cluster[kind] if n is not None and n not in items]
        items.append(EVERY_ITEM)
        select = tuple(
            tuple(tuple(k < len(own) and (item == EVERY_ITEM or own[k] == item) for item in items)
                  for k in range(slots[kind]))
            for own in (cluster[kind] for cluster in slot_names))
        present = tuple(tuple(item == EVERY_ITEM or item in cluster[kind] for item in items)
                        for cluster in slot_names)
        names += [f"{kind}.{item}.{a.split('.', 1)[1]}" for item in items for a in arrays]
        parts.append((arrays, select, present))
    scalars = scalars or {}
    present = tuple(zip(*scalars.values())) if scalars else ()
    return ItemColumns(tuple(names), tuple(parts), tuple(scalars), tuple(tuple(row) for row in present))


def parameter_names(columns: ItemColumns | None) -> tuple[str, ...]:
    """The parameter coordinate of the sensitivities: the cluster parameters, then the
    item columns, then the version 2 scalars' (columns None: a portfolio without item
    arrays)."""
    return PARAM_NAMES + (columns.names + columns.scalars if columns is not None else ())


def by_item(xp, arrays: dict, columns: ItemColumns):
    """Item arrays name -> [..., C, K] (by slot) as the item columns [..., C, N]: each the
    sum over the slots it selects (its item's, or every item's for "*"), NaN where the
    cluster has no such item."""
    out = []
    for names, select, present in columns.parts:
        g = xp.stack([arrays[n] for n in names], axis=-1)  # [..., C, K, F]
        picked = xp.where(xp.asarray(select)[..., None], g[..., None, :], 0.0)  # [..., C, K, N, F]
        v = xp.where(xp.asarray(present)[..., None], xp.sum(picked, axis=-3), math.nan)
        out.append(xp.reshape(v, v.shape[:-2] + (v.shape[-2] * v.shape[-1],)))
    return xp.concat(out, axis=-1)


def by_scalar(xp, arrays: dict, columns: ItemColumns):
    """Version 2 scalars name -> [..., C] (a cluster's) or [..., 1] (the platform's) as
    their columns [..., C, len(columns.scalars)]: the platform's value in every
    cluster's row, NaN where the cluster has no such scalar."""
    present = xp.asarray(columns.scalar_present, dtype=xp.bool)  # [C, n]
    C = present.shape[0]
    v = xp.stack([xp.broadcast_to(arrays[n], arrays[n].shape[:-1] + (C,)) for n in columns.scalars], axis=-1)
    return xp.where(present, v, math.nan)


def flow_weights(discount_rate, irr_monthly, n_months: int, rows: tuple[int, ...] = (0, 1, 2)):
    """Weights w_t [K, S, 1, T+1] of the flow sums the gradients need, those of `rows`
    (0, 1, 2: all three, in this order).

    Portfolio and cluster NPV (0), ROI (1) and the IRR's NPV_m (2) are each sum_t w_t CF_t
    for a weight that does not depend on the parameters: the discount factors
    (1+r)^(-t/12), ones (the undiscounted sum behind ROI) and (1+i*)^-t at the IRR's
    root. One batched reverse pass through the flows with these cotangents gives every
    parameter gradient. NaN IRRs take the weights of i = 0 (their gradient is NaN).
    """
    xp = array_namespace(discount_rate)
    t = xp.arange(n_months, dtype=discount_rate.dtype)[None, :]
    shape = (discount_rate.shape[0], n_months)

    def weight(row):
        if row == 0:
            return xp.exp(-(t / 12.0) * xp.log1p(discount_rate)[:, None])
        if row == 1:
            return xp.ones(shape, dtype=discount_rate.dtype)
        i = xp.where(xp.isfinite(irr_monthly), irr_monthly, 0.0)
        return xp.exp(-t * xp.log1p(i)[:, None])

    return xp.stack([weight(row) for row in rows])[:, :, None, :]


def npv_rate_derivative(cf, discount_rate):
    """d NPV / d r of each row: sum_t CF_t (-t/12) (1+r)^(-t/12 - 1); cf [S, C, T+1], r [S]."""
    xp = array_namespace(cf)
    t = xp.arange(cf.shape[-1], dtype=cf.dtype)
    lr = xp.log1p(discount_rate)[:, None, None]
    return xp.sum(cf * (-t / 12.0) * xp.exp(-(t / 12.0 + 1.0) * lr), axis=-1)


def _price_factor(xp, p: dict, horizon: int):
    """The price paid per GPU as a share of capex_per_gpu, (1 - c_K)^(t_o/12) with the
    order month clipped to 0..T (MODEL.md, "Order month"), and its derivative in c_K
    (taken as 0 where 1 - c_K = 0, as the flows take a power's); (1, 0) without one."""
    if "order_month" not in p:
        return 1.0, 0.0
    e = xp.where(p["order_month"] < 0.0, 0.0, xp.where(p["order_month"] > horizon, float(horizon),
                                                        p["order_month"])) / 12.0
    base = 1.0 - p["capex_decline"]
    pos = base > 0
    log_base = xp.log(xp.where(pos, base, 1.0))
    factor = xp.where(pos, xp.exp(e * log_base), xp.where(e == 0, 1.0, 0.0))
    return factor, xp.where(pos, -e * xp.exp((e - 1.0) * log_base), 0.0)


def capex_paid(p: dict, horizon: int):
    """Each cluster's capex, N K_o + K_f, K_o = K (1 - c_K)^(t_o/12) [S, C]."""
    xp = array_namespace(p["gpus"])
    return p["gpus"] * p["capex_per_gpu"] * _price_factor(xp, p, horizon)[0] + p["capex_fixed"]


def capex_gradient(p: dict, horizon: int) -> dict:
    """d Capex_c / d theta_c (capex_paid: N K_o + K_f) for the parameters it depends on,
    name -> [S, C]: gpus, capex_per_gpu, capex_fixed and capex_decline where p has one;
    every other derivative is 0 (the order month's too: a whole month without a
    gradient)."""
    xp = array_namespace(p["gpus"])
    zero = xp.zeros_like(p["gpus"])
    factor, slope = _price_factor(xp, p, horizon)
    g = {"gpus": p["capex_per_gpu"] * factor + zero, "capex_per_gpu": p["gpus"] * factor + zero,
         "capex_fixed": zero + 1.0}
    if "capex_decline" in p:
        g["capex_decline"] = p["gpus"] * p["capex_per_gpu"] * slope + zero
    return g


def roi_gradient(g_sum, d_capex, roi, total_capex):
    """ROI = sum CF / sum Capex: (d sum CF - ROI d Capex) / sum Capex, NaN at zero capex.

    g_sum, d_capex: [S, C, P]; roi, total_capex: [S].
    """
    xp = array_namespace(g_sum)
    ok = total_capex != 0
    inv = xp.where(ok, 1.0 / xp.where(ok, total_capex, 1.0), math.nan)[:, None, None]
    return (g_sum - roi[:, None, None] * d_capex) * inv


def npv_m_slope(pcf, irr_monthly):
    """dNPV_m/di at the root: sum_t -t CF_t (1+i)^(-t-1); pcf [S, T+1]."""
    xp = array_namespace(pcf)
    t = xp.arange(pcf.shape[-1], dtype=pcf.dtype)
    i = xp.where(xp.isfinite(irr_monthly), irr_monthly, 0.0)
    return xp.sum(-t[None, :] * pcf * xp.exp(-(t[None, :] + 1.0) * xp.log1p(i)[:, None]), axis=-1)


def irr_gradient(g_npv_m, slope, irr_annual):
    """Annual IRR gradient from dNPV_m/dtheta (g_npv_m [S, ...]) by the implicit function theorem.

    irr = (1+i)^12 - 1, so dirr/dtheta = 12 (1+i)^11 di/dtheta. NaN where the IRR is
    NaN or the root is not simple (slope 0).
    """
    xp = array_namespace(g_npv_m)
    i = xp.expm1(xp.log1p(irr_annual) / 12.0)
    ok = xp.isfinite(irr_annual) & (slope != 0)
    safe = xp.where(ok, slope, 1.0)
    factor = xp.where(ok, -12.0 * xp.exp(11.0 * xp.log1p(i)) / safe, math.nan)
    extra = (1,) * (g_npv_m.ndim - 1)
    return g_npv_m * xp.reshape(factor, factor.shape + extra)
