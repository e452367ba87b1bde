"""Outputs of the model (MODEL.md, "Outputs"), per cluster and for the portfolio.

`evaluate` is the whole model: shocked parameters in, every output out. Portfolio
outputs come from the clusters' flows summed month by month.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, is_jax_namespace

from .cashflows import cash_flows
from .irr import annualise, solve_irr
from .params import OUTPUTS


def npv(cf, discount_rate):
    """sum_t CF_t (1+r)^(-t/12); cf [..., T+1], discount_rate broadcastable to [...]."""
    xp = array_namespace(cf)
    t = xp.arange(cf.shape[-1], dtype=cf.dtype)
    r = discount_rate[..., None]
    v = xp.exp(-(t / 12.0) * xp.log1p(r))
    return xp.sum(cf * v, axis=-1)


def payback_months(cf):
    """First month where cumulative CF >= 0, linear inside the month; 0 if CF_0 >= 0; inf if never."""
    xp = array_namespace(cf)
    if is_jax_namespace(xp):
        return _payback_recurrence(xp, cf)
    n_months = cf.shape[-1]
    rows = xp.reshape(cf, (-1, n_months))
    cum = xp.cumulative_sum(rows, axis=-1)
    reached = cum >= 0
    k = xp.argmax(xp.astype(reached, xp.int8), axis=-1)  # first month reached (0 if never)
    base = xp.arange(rows.shape[0], dtype=k.dtype) * n_months
    km1 = xp.maximum(k - 1, 0)
    prev = xp.take(xp.reshape(cum, (-1,)), base + km1)
    flow = xp.take(xp.reshape(rows, (-1,)), base + k)
    crossing = k > 0
    safe_flow = xp.where(crossing & (flow != 0), flow, 1.0)
    months = xp.astype(km1, cf.dtype) + xp.where(crossing, -prev / safe_flow, 0.0)
    months = xp.where(xp.any(reached, axis=-1), months, math.inf)
    return xp.reshape(months, cf.shape[:-1])


def _payback_recurrence(xp, cf):
    """payback_months as one left-to-right pass over the months (for XLA).

    XLA lowers a cumulative sum to a windowed reduction, quadratic in the months and
    slow on the CPU (measured 2.7x this pass on the example grid's chunks); the running
    sum and the first crossing, carried month by month, fuse into one loop instead.
    Same definition, same order of summation.
    """
    cum = cf[..., 0]
    found = cum >= 0
    months = xp.where(found, 0.0, math.inf)
    for t in range(1, cf.shape[-1]):
        flow = cf[..., t]
        nxt = cum + flow
        hit = ~found & (nxt >= 0)  # then flow > -cum > 0
        months = xp.where(hit, (t - 1) - cum / xp.where(hit, flow, 1.0), months)
        found = found | hit
        cum = nxt
    return months


def _masked_min(xp, x, mask, axis=-1):
    big = xp.where(mask, x, math.inf)
    out = xp.min(big, axis=axis)
    return xp.where(xp.any(mask, axis=axis), out, math.nan)


def _safe_ratio(xp, num, den):
    ok = den != 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), math.nan)


def evaluate(p: dict, discount_rate, horizon: int, equity_clusters: tuple[int, ...] | None = None,
             factors: dict | None = None, cumulative: bool = False) -> dict:
    """Every output of MODEL.md.

    p: cluster parameters, name -> [S|1, C]; discount_rate: [S|1]; horizon: T.
    Returns {name: [S] portfolio, "cluster_" + name: [S, C]} for every output.
    equity_clusters: the clusters that can carry debt (static); equity IRRs are solved
    only for them (and the portfolio, when any), the others are NaN as the model says.
    None means every cluster. factors: Monte Carlo path factors (see cash_flows).
    cumulative=True adds "cumulative_cf" [S, T+1], the portfolio's cumulative flow.
    """
    xp = array_namespace(p["gpus"])
    fl = cash_flows(p, horizon, factors)
    cf, cfe = fl["cf"], fl["cfe"]
    S = max(cf.shape[0], discount_rate.shape[0])
    C = cf.shape[1]
    cf = xp.broadcast_to(cf, (S,) + cf.shape[1:])
    cfe = xp.broadcast_to(cfe, (S,) + cfe.shape[1:])
    r = xp.broadcast_to(discount_rate, (S,))

    def full(x):
        return xp.broadcast_to(x, (S, C))

    capex = full(fl["capex"])
    debt = full(fl["debt"])
    A = full(fl["A"])
    has_debt = debt != 0

    pcf = xp.sum(cf, axis=1)  # [S, T+1]
    pcfe = xp.sum(cfe, axis=1)
    out = {}

    # IRRs: one stacked solve for every series of the chunk
    eq = tuple(range(C)) if equity_clusters is None else tuple(equity_clusters)
    series = [cf, pcf[:, None, :]]
    if eq:
        series += [cfe[:, list(eq), :] if len(eq) < C else cfe, pcfe[:, None, :]]
    irr = annualise(solve_irr(xp.concat(series, axis=1)))
    c_irr, p_irr = irr[:, :C], irr[:, C]
    nan_c = xp.full((S,), math.nan, dtype=cf.dtype)
    solved = {c: irr[:, C + 1 + k] for k, c in enumerate(eq)}
    c_eirr = xp.stack([solved.get(c, nan_c) for c in range(C)], axis=1)
    c_eirr = xp.where(has_debt, c_eirr, math.nan)
    p_eirr = irr[:, -1] if eq else nan_c
    p_eirr = xp.where(xp.any(has_debt, axis=1), p_eirr, math.nan)

    # Debt service cover
    elt = xp.broadcast_to(fl["ebitda_less_tax"], (S,) + fl["ebitda_less_tax"].shape[1:])
    month_ok = xp.broadcast_to(fl["dscr_month"], elt.shape)
    safe_A = xp.where(has_debt, A, 1.0)[..., None]
    c_dscr = _masked_min(xp, elt / safe_A, month_ok & has_debt[..., None])
    window = xp.all(month_ok | ~has_debt[..., None], axis=1)  # [S, T]
    den = xp.sum(xp.where(has_debt, A, 0.0), axis=1)  # [S]
    p_ratio = xp.sum(elt, axis=1) / xp.where(den != 0, den, 1.0)[:, None]
    p_dscr = _masked_min(xp, p_ratio, window & (den != 0)[:, None])

    cluster = {
        "npv": npv(cf, r[:, None]),
        "roi": _safe_ratio(xp, xp.sum(cf, axis=-1), capex),
        "irr": c_irr,
        "payback_months": payback_months(cf),
        "equity_irr": c_eirr,
        "min_dscr": c_dscr,
    }
    portfolio = {
        "npv": npv(pcf, r),
        "roi": _safe_ratio(xp, xp.sum(pcf, axis=-1), xp.sum(capex, axis=1)),
        "irr": p_irr,
        "payback_months": payback_months(pcf),
        "equity_irr": p_eirr,
        "min_dscr": p_dscr,
    }
    for name in ("revenue", "energy_cost", "opex", "ebitda"):
        cluster[name] = full(fl[name])
        portfolio[name] = xp.sum(cluster[name], axis=1)
    for name in OUTPUTS:
        out[name] = portfolio[name]
        out["cluster_" + name] = cluster[name]
    if cumulative:
        out["cumulative_cf"] = xp.cumulative_sum(pcf, axis=1)
    return out
