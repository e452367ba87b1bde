"""The differentiable pieces behind sensitivities (pure array functions, no transforms).

`core` maps shocked parameters to the outputs whose gradients the product reports;
the JAX adapter differentiates it (reverse mode, one pass per output). The IRR is
not differentiated through its solver: by the implicit function theorem,

    d i*/d theta = - (dNPV_m/d theta) / (dNPV_m/d i)   at the root i*,

where NPV_m(i) = sum_t CF_t (1+i)^-t is the monthly-rate NPV. `core` returns NPV_m
with the weights (1+i*)^-t held fixed, so its gradient is dNPV_m/d theta.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from .cashflows import cash_flows
from .metrics import npv


def core(p: dict, discount_rate, cluster_rate, horizon: int, irr_monthly):
    """Portfolio npv [S], roi [S], cluster npv [S, C], NPV_m at fixed weights [S], flows [S, T+1].

    p: name -> [S, C] (full shape); discount_rate: [S]; cluster_rate: the same rate as
    [S, C], a separate input so that each cluster's NPV has its own rate derivative;
    irr_monthly: [S] portfolio monthly IRR, a constant here.
    """
    xp = array_namespace(discount_rate)
    fl = cash_flows(p, horizon)
    S = discount_rate.shape[0]
    cf = xp.broadcast_to(fl["cf"], (S,) + fl["cf"].shape[1:])
    pcf = xp.sum(cf, axis=1)
    capex = xp.sum(xp.broadcast_to(fl["capex"], (S, cf.shape[1])), axis=1)
    safe_capex = xp.where(capex != 0, capex, 1.0)
    roi = xp.where(capex != 0, xp.sum(pcf, axis=-1) / safe_capex, math.nan)
    t = xp.arange(pcf.shape[-1], dtype=pcf.dtype)
    i = xp.where(xp.isfinite(irr_monthly), irr_monthly, 0.0)
    w = xp.exp(-t[None, :] * xp.log1p(i)[:, None])
    return (npv(pcf, discount_rate), roi, npv(cf, cluster_rate), xp.sum(pcf * w, axis=-1), pcf)


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
