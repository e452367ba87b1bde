"""Outputs of the model (MODEL.md, "Outputs"), per cluster and for the portfolio.

`evaluate` is the whole model: shocked parameters in, every output out. Portfolio
outputs come from the clusters' flows summed month by month.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, is_jax_namespace

from .cashflows import cash_flows
from .irr import annualise, ladder_values, solve_irr_from_ladder
from .params import OUTPUTS
from .staging import month_blocks, scan_blocks


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


def from_month(cf, t_f):
    """cf [..., T+1] read from month t_f [...] (a whole month) on: row k holds CF at
    t_f + k, zero past T, and row 0 the cumulative flow up to t_f (flows before the
    investment, a platform's, still count); payback_months of it counts from t_f."""
    xp = array_namespace(cf)
    n = cf.shape[-1]
    k = xp.arange(n, dtype=xp.int64)
    idx = xp.astype(t_f, xp.int64)[..., None] + k
    inside = idx < n
    idx = xp.where(inside, idx, n - 1)
    head = xp.take_along_axis(xp.cumulative_sum(cf, axis=-1), idx[..., :1], axis=-1)
    return xp.where(k == 0, head, xp.where(inside, xp.take_along_axis(cf, idx, axis=-1), 0.0))


def _payback_recurrence(xp, cf):
    """payback_months as one left-to-right pass over the months (for XLA).

    XLA lowers a cumulative sum to a windowed reduction, quadratic in the months and
    slow on the CPU (benchmarks/README.md, "Measurements behind design choices in the
    code"); the running sum and the first crossing, carried month by month, fuse into
    one loop instead.
    The months are unrolled in blocks and the blocks scanned (staging.scan_blocks), so
    the compiled program does not grow with the horizon. Same definition, same order of
    summation; the padding months after T carry no flow and cannot cross (a running
    sum not yet >= 0 stays below 0).
    """
    batch = cf.shape[:-1]
    n_months = cf.shape[-1]
    rows = xp.reshape(cf, (-1, n_months))
    cum = rows[:, 0]
    found = cum >= 0
    months = xp.where(found, 0.0, math.inf)
    if n_months > 1:
        n_blocks, width = month_blocks(n_months - 1)
        rest = rows[:, 1:]
        pad = n_blocks * width - (n_months - 1)
        if pad:
            rest = xp.concat([rest, xp.zeros((rows.shape[0], pad), dtype=cf.dtype)], axis=1)
        blocks = xp.permute_dims(xp.reshape(rest, (rows.shape[0], n_blocks, width)), (1, 0, 2))

        def body(carry, blk, b):
            cum, found, months = carry
            first = b * width  # t - 1 of the block's first month
            for j in range(width):
                flow = blk[:, j]
                nxt = cum + flow
                hit = ~found & (nxt >= 0)  # then flow > -cum > 0
                months = xp.where(hit, (first + j) - cum / xp.where(hit, flow, 1.0), months)
                found = found | hit
                cum = nxt
            return cum, found, months

        months = scan_blocks(xp, body, (cum, found, months), blocks)[2]
    return xp.reshape(months, batch)


def _masked_min(xp, x, mask, axis=-1):
    big = xp.where(mask, x, math.inf)
    out = xp.min(big, axis=axis)
    return xp.where(xp.any(mask, axis=axis), out, math.nan)


def _safe_ratio(xp, num, den):
    ok = den != 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), math.nan)


def evaluate(p: dict, discount_rate, horizon: int, equity_clusters: tuple[int, ...] | None = None,
             factors: dict | None = None, cumulative: bool = False,
             debt_clusters: tuple[int, ...] | None = None) -> dict:
    """Every output of MODEL.md.

    p: cluster parameters, name -> [S|1, C]; discount_rate: [S|1]; horizon: T.
    Returns {name: [S] portfolio, "cluster_" + name: [S, C]} for every output.
    equity_clusters: the clusters that can carry debt (static); equity IRRs are solved
    only for them (and the portfolio, when any), the others are NaN as the model says.
    None means every cluster. factors: Monte Carlo path factors (see cash_flows).
    cumulative=True adds "cumulative_cf" [S, T+1], the portfolio's cumulative flow.
    debt_clusters: the clusters whose debt may be non-zero in `p` (static; None: every
    cluster); the debt service cover is computed for them alone, the others' is NaN
    as for any cluster without debt. A caller that passes a narrower equity_clusters
    to skip the equity IRRs still gets every cluster's cover.
    """
    fl = cash_flows(p, horizon, factors)
    C = fl["cf"].shape[1]
    eq = tuple(range(C)) if equity_clusters is None else tuple(equity_clusters)
    return finish(linear_parts(fl, discount_rate, eq, debt_clusters), C, eq, cumulative, debt_clusters)


# Outputs with an axis of their own after the cluster's (version 2): revenue by industry
ITEMISED = ("revenue_by_industry",)
# Version 2 outputs of the portfolio only (the platform layer) and of clusters and portfolio
PLATFORM_OUTPUTS = ("platform_npv", "platform_revenue")
PROGRAMME_OUTPUTS = ("optimization_cost",)

# What linear_parts returns: every entry but these is linear in the cash flows (the
# order month, version 2, is a parameter no factored axis moves).
NOT_LINEAR = ("dscr_month", "order_month")


def linear_parts(fl: dict, discount_rate, eq: tuple[int, ...], debt_clusters: tuple[int, ...] | None = None) -> dict:
    """The quantities of every output that are linear in the cash flows, per scenario.

    fl: cash_flows' dict; discount_rate [S|1]; eq: the clusters whose equity IRR is
    solved; debt_clusters: the clusters that may carry debt (None: every one; as
    evaluate has it). Every entry has the scenario axis first: the IRR series (each
    cluster's flows, the portfolio's, the equity flows of `eq` and the portfolio's
    equity flows) [S, Q, T+1] with their ladder values [S, Q, 2G], EBITDA less tax of
    the debt_clusters [S, D, T] and of the portfolio [S, T] (the debt service cover's
    numerators), and the per-cluster NPV, flow sum, capex, debt, level payment and
    totals [S, C]. Where the flows are affine in some grid axes, each of these is the
    same affine function of them (kernels/factored.py interpolates them); "dscr_month"
    (live and in the loan term, [S|1, D, T]) is not, and no such axis moves it.
    """
    xp = array_namespace(fl["cf"])
    cf, cfe = fl["cf"], fl["cfe"]
    S = max(cf.shape[0], discount_rate.shape[0],
            fl["platform"]["cf"].shape[0] if fl.get("platform") is not None else 1)
    C = cf.shape[1]
    cf = xp.broadcast_to(cf, (S,) + cf.shape[1:])
    cfe = xp.broadcast_to(cfe, (S,) + cfe.shape[1:])
    r = xp.broadcast_to(discount_rate, (S,))

    def full(x):
        return xp.broadcast_to(x, (S, C))

    platform = fl.get("platform")
    p_cf, p_cfe = xp.sum(cf, axis=1), xp.sum(cfe, axis=1)
    if platform is not None:  # the portfolio's flows carry the platform's (no debt)
        pl_cf = xp.broadcast_to(platform["cf"], (S, cf.shape[-1]))
        p_cf, p_cfe = p_cf + pl_cf, p_cfe + pl_cf
    series = [cf, p_cf[:, None, :]]
    if eq:
        series += [cfe[:, list(eq), :] if len(eq) < C else cfe, p_cfe[:, None, :]]
    series = xp.concat(series, axis=1)
    elt = xp.broadcast_to(fl["ebitda_less_tax"], (S,) + fl["ebitda_less_tax"].shape[1:])
    p_elt = xp.sum(elt, axis=1)
    if platform is not None:  # the platform's flows count in the portfolio's numerator
        p_elt = p_elt + pl_cf[:, 1:]
    out = {
        "series": series,
        "ladder": ladder_values(series),
        "elt": _of_clusters(elt, debt_clusters),
        "p_elt": p_elt,
        "dscr_month": _of_clusters(fl["dscr_month"], debt_clusters),
        "npv": npv(cf, r[:, None]),
        "cf_sum": xp.sum(cf, axis=-1),
    }
    for name in ("capex", "debt", "A", "revenue", "energy_cost", "opex", "ebitda"):
        out[name] = full(fl[name])
    for name in ITEMISED + PROGRAMME_OUTPUTS + ("order_month",):  # version 2
        if name in fl:
            out[name] = xp.broadcast_to(fl[name], (S,) + fl[name].shape[1:])
    if platform is not None:
        out["platform_npv"] = npv(pl_cf, r)
        out["platform_cf_sum"] = xp.sum(pl_cf[:, 1:], axis=-1)  # the platform's CF^p, months 1..T
        for name in ("revenue", "opex", "ebitda"):
            out["platform_" + name] = xp.broadcast_to(platform[name], (S,))
    return out


def _of_clusters(x, clusters: tuple[int, ...] | None):
    """x [S|1, C, ...] at the clusters named (None: every one)."""
    if clusters is None or tuple(clusters) == tuple(range(x.shape[1])):
        return x
    return x[:, list(clusters)]


def finish(lin: dict, C: int, eq: tuple[int, ...], cumulative: bool = False,
           debt_clusters: tuple[int, ...] | None = None) -> dict:
    """Every output from linear_parts' quantities (see evaluate; debt_clusters as
    given to linear_parts)."""
    series = lin["series"]
    xp = array_namespace(series)
    S = series.shape[0]
    capex, debt, A = lin["capex"], lin["debt"], lin["A"]
    has_debt = debt != 0
    cf, pcf = series[:, :C], series[:, C]

    # IRRs: one stacked solve for every series of the chunk
    irr = annualise(solve_irr_from_ladder(series, lin["ladder"]))
    c_irr, p_irr = irr[:, :C], irr[:, C]
    nan_c = xp.full((S,), math.nan, dtype=series.dtype)
    solved = {c: irr[:, C + 1 + k] for k, c in enumerate(eq)}
    c_eirr = xp.stack([solved.get(c, nan_c) for c in range(C)], axis=1)
    c_eirr = xp.where(has_debt, c_eirr, math.nan)
    p_eirr = irr[:, -1] if eq else nan_c
    p_eirr = xp.where(xp.any(has_debt, axis=1), p_eirr, math.nan)

    # Debt service cover, over the clusters that may carry debt (the others have none:
    # NaN, and nothing in the portfolio's denominator or window)
    elt = lin["elt"]  # [S, D, T]
    d_debt, d_A = _of_clusters(has_debt, debt_clusters), _of_clusters(A, debt_clusters)
    month_ok = xp.broadcast_to(lin["dscr_month"], elt.shape)
    safe_A = xp.where(d_debt, d_A, 1.0)[..., None]
    d_dscr = _masked_min(xp, elt / safe_A, month_ok & d_debt[..., None])
    if d_dscr.shape[1] == C:
        c_dscr = d_dscr
    else:
        at = {c: k for k, c in enumerate(debt_clusters)}
        c_dscr = xp.stack([d_dscr[:, at[c]] if c in at else nan_c for c in range(C)], axis=1)
    window = xp.all(month_ok | ~d_debt[..., None], axis=1)  # [S, T]
    den = xp.sum(xp.where(d_debt, d_A, 0.0), axis=1)  # [S]
    p_ratio = lin["p_elt"] / xp.where(den != 0, den, 1.0)[:, None]
    p_dscr = _masked_min(xp, p_ratio, window & (den != 0)[:, None])

    # two calls: one over [S, C + 1] rows, a concatenation of the two, ran far slower
    # under XLA on the CPU (benchmarks/README.md, "Measurements behind design choices
    # in the code")
    if "order_month" in lin:  # counted from the investment month: each cluster's t_o, the earliest
        t_o = xp.broadcast_to(lin["order_month"], (S, C))
        payback = xp.concat([payback_months(from_month(cf, t_o)),
                             payback_months(from_month(pcf, xp.min(t_o, axis=1)))[:, None]], axis=1)
    else:
        payback = xp.concat([payback_months(cf), payback_months(pcf)[:, None]], axis=1)
    cluster = {
        "npv": lin["npv"],
        "roi": _safe_ratio(xp, lin["cf_sum"], capex),
        "irr": c_irr,
        "payback_months": payback[:, :C],
        "equity_irr": c_eirr,
        "min_dscr": c_dscr,
    }
    cf_total = xp.sum(lin["cf_sum"], axis=1)
    npv_total = xp.sum(lin["npv"], axis=1)
    if "platform_npv" in lin:
        cf_total = cf_total + lin["platform_cf_sum"]
        npv_total = npv_total + lin["platform_npv"]
    portfolio = {
        "npv": npv_total,
        "roi": _safe_ratio(xp, cf_total, xp.sum(capex, axis=1)),
        "irr": p_irr,
        "payback_months": payback[:, C],
        "equity_irr": p_eirr,
        "min_dscr": p_dscr,
    }
    out = {}
    for name in ("revenue", "energy_cost", "opex", "ebitda") + ITEMISED + PROGRAMME_OUTPUTS:
        if name in lin:
            cluster[name] = lin[name]
            portfolio[name] = xp.sum(cluster[name], axis=1)
    if "platform_npv" in lin:  # the portfolio's totals include the platform's
        for name in ("revenue", "opex", "ebitda"):
            portfolio[name] = portfolio[name] + lin["platform_" + name]
        if "revenue_by_industry" in portfolio:  # under its own label, the last
            by = portfolio["revenue_by_industry"]
            last = xp.arange(by.shape[-1]) == by.shape[-1] - 1
            portfolio["revenue_by_industry"] = by + xp.where(last, lin["platform_revenue"][:, None], 0.0)
    for name in OUTPUTS + tuple(n for n in ITEMISED + PROGRAMME_OUTPUTS if n in cluster):
        out[name] = portfolio[name]
        out["cluster_" + name] = cluster[name]
    if "platform_npv" in lin:
        for name in PLATFORM_OUTPUTS:
            out[name] = lin[name]
    if cumulative:
        out["cumulative_cf"] = xp.cumulative_sum(pcf, axis=1)
    return out


def equity_npv(fl: dict, discount_rate):
    """The NPV of the portfolio's equity flows at the discount rate [S]: each cluster's
    CF^e (its flows after the loan is drawn and served, the flows equity_irr solves)
    summed with the platform's flows (which carry no debt), discounted as `npv`.
    Optimize's mean_equity_npv; not an entry of OUTPUTS, which every file lays out."""
    xp = array_namespace(fl["cfe"])
    flows = xp.sum(fl["cfe"], axis=1)
    if fl.get("platform") is not None:
        flows = flows + fl["platform"]["cf"]
    S = max(flows.shape[0], discount_rate.shape[0])
    return npv(xp.broadcast_to(flows, (S, flows.shape[-1])), xp.broadcast_to(discount_rate, (S,)))


def irr_from_root(flows, irr_annual):
    """The annual IRR of `flows` [S, T+1] as one Newton step on NPV_m(i) = sum_t F_t (1+i)^-t
    from its root, irr_annual [S] (the solver's, given as an input). Its value is the root
    again (the step is zero there, up to rounding); differentiated in forward mode, the
    step carries the implicit function theorem's derivative -(dNPV_m/dtheta)/(dNPV_m/di),
    which the solver's own iterations (brackets, bisection) need not. NaN where the IRR is,
    or where the root is not simple (slope 0)."""
    xp = array_namespace(flows)
    i0 = xp.expm1(xp.log1p(irr_annual) / 12.0)
    finite = xp.isfinite(i0)
    i = xp.where(finite, i0, 0.0)[:, None]
    t = xp.arange(flows.shape[-1], dtype=flows.dtype)[None, :]
    v = xp.exp(-t * xp.log1p(i))
    value = xp.sum(flows * v, axis=-1)
    slope = xp.sum(-t * flows * v / (1.0 + i), axis=-1)
    ok = finite & (slope != 0)
    step = i[:, 0] - value / xp.where(ok, slope, 1.0)
    return xp.where(ok, xp.expm1(12.0 * xp.log1p(step)), math.nan)
