"""The pieces behind sensitivities (pure array functions; the JAX adapter differentiates).

The JAX adapter pulls the weights of `flow_weights` back through the cash flows
(one batched reverse pass) and assembles the gradients with these functions. The IRR is
not differentiated through its solver: by the implicit function theorem,

    d i*/d theta = - (dNPV_m/d theta) / (dNPV_m/d i)   at the root i*,

where NPV_m(i) = sum_t CF_t (1+i)^-t is the monthly-rate NPV; dNPV_m/d theta is the
flow gradient weighted by (1+i*)^-t (see flow_weights).
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace



def flow_weights(discount_rate, irr_monthly, n_months: int):
    """Weights w_t [3, S, 1, T+1] of the three flow sums the gradients need.

    Portfolio and cluster NPV, ROI and the IRR's NPV_m are each sum_t w_t CF_t for a
    weight that does not depend on the parameters: the discount factors (1+r)^(-t/12),
    ones (the undiscounted sum behind ROI) and (1+i*)^-t at the IRR's root. One
    batched reverse pass through the flows with these three cotangents gives every
    parameter gradient. NaN IRRs take the weights of i = 0 (their gradient is NaN).
    """
    xp = array_namespace(discount_rate)
    t = xp.arange(n_months, dtype=discount_rate.dtype)[None, :]
    i = xp.where(xp.isfinite(irr_monthly), irr_monthly, 0.0)
    w_npv = xp.exp(-(t / 12.0) * xp.log1p(discount_rate)[:, None])
    w_irr = xp.exp(-t * xp.log1p(i)[:, None])
    return xp.stack([w_npv, xp.ones_like(w_npv), w_irr])[:, :, None, :]


def npv_rate_derivative(cf, discount_rate):
    """d NPV / d r of each row: sum_t CF_t (-t/12) (1+r)^(-t/12 - 1); cf [S, C, T+1], r [S]."""
    xp = array_namespace(cf)
    t = xp.arange(cf.shape[-1], dtype=cf.dtype)
    lr = xp.log1p(discount_rate)[:, None, None]
    return xp.sum(cf * (-t / 12.0) * xp.exp(-(t / 12.0 + 1.0) * lr), axis=-1)


def capex_gradient(p: dict) -> dict:
    """d Capex_c / d theta_c for every parameter (Capex = N K + K_f); p name -> [S, C]."""
    xp = array_namespace(p["gpus"])
    zero = xp.zeros_like(p["gpus"])
    g = {k: zero for k in p}
    g["gpus"] = p["capex_per_gpu"] + zero
    g["capex_per_gpu"] = p["gpus"] + zero
    g["capex_fixed"] = zero + 1.0
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
