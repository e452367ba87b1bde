"""Monthly cash flows of every cluster (MODEL.md, "Monthly flows of one cluster").

Shapes: every parameter arrives as an array [S, C] or [1, C] (S scenarios, C
clusters); a parameter that no shock moves stays [1, C], so every month factor
built from it alone ([1, C, T]) is computed once per chunk, not once per scenario.
Months t = 1..T run along the last axis; t = 0 holds the capex only.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .params import HOURS_PER_MONTH as H
from .params import INDUSTRY_KEYS, ITEM_NAMES, OPTIMIZATION_START_GIVEN

PLATFORM_PREFIX = "platform."
PLATFORM_KEY = "platform.take_rate"  # present: the portfolio has a platform layer

# the parameters of the market price m(t)
MARKET_KEYS = ("on_demand_price", "price_decline", "next_gen_month", "next_gen_ramp_months",
               "next_gen_price_drop")


def clip(xp, x, lo, hi):
    """clip with one-sided gradients: 1 on [lo, hi] (bounds included), 0 outside.

    xp.clip's gradient at a bound is 1/2 under JAX, which is neither one-sided
    derivative; this form gives the derivative from inside the range (docs/model.md).
    """
    return xp.where(x < lo, lo, xp.where(x > hi, hi, x))


def _ramp(xp, x):
    return clip(xp, x, 0.0, 1.0)


def _pow(xp, base, expo):
    """base^expo for base >= 0, with 0^0 = 1 and 0^positive = 0 as IEEE pow gives.

    The double where keeps the gradient finite at base = 0 (pow's own derivative is
    infinite there): the derivative in base is taken as 0 at the bound.
    """
    pos = base > 0
    # exp(expo * log base): the log is taken on the (small) parameter array, so the
    # month-sized work is one exp forward and a multiply backward
    log_base = xp.log(xp.where(pos, base, 1.0))
    return xp.where(pos, xp.exp(expo * log_base), xp.where(expo == 0, 1.0, 0.0))


def market_price(xp, p, t, scale=None):
    """m(t) = p0 (1-d)^(t/12) (1 - s_p g(t)) (times `scale` [S|1, C, 1]); t may be fractional.

    Factors constant in t are multiplied together before the month-sized product (here
    and below): the reverse pass then reduces one month array for all of them.
    """
    g = _ramp(xp, (t - p["next_gen_month"]) / p["next_gen_ramp_months"])
    decay = _pow(xp, 1.0 - p["price_decline"], t / 12.0)
    p0 = p["on_demand_price"] if scale is None else p["on_demand_price"] * scale
    return p0 * (decay * (1.0 - p["next_gen_price_drop"] * g)), g


def debt_terms(xp, p, capex):
    """Debt, level payment A, monthly rate j and log1p(j), all [S|1, C, 1].

    Uses expm1/log1p so that A stays accurate for tiny rates; j = 0 takes the
    limit A = Debt/M_d (guarded so that no branch divides by zero).
    """
    debt = p["debt_fraction"] * capex
    j = p["interest_rate"] / 12.0
    md = p["debt_term_months"]
    pos = j > 0
    lj = xp.log1p(xp.where(pos, j, 1.0))
    growth_m1 = xp.expm1(md * lj)  # (1+j)^M - 1
    annuity = debt * xp.where(pos, j, 1.0) * (growth_m1 + 1.0) / growth_m1
    A = xp.where(pos, annuity, debt / md)
    return debt, A, j, lj, growth_m1


def balance(xp, debt, md, j, lj, growth_m1, t):
    """B_t: Debt ((1+j)^M - (1+j)^t) / ((1+j)^M - 1) for t < M_d, 0 from M_d on."""
    pos = j > 0
    b_pos = debt * (growth_m1 - xp.expm1(t * lj)) / growth_m1
    b_zero = debt * (md - t) / md
    return xp.where(t < md, xp.where(pos, b_pos, b_zero), 0.0)


def cash_flows(p: dict, horizon: int, factors: dict | None = None) -> dict:
    """Cash flows of every cluster.

    p: parameter name -> array [S|1, C]. factors (Monte Carlo paths, MODEL.md
    "Stochastic paths"): optional "price" P_t, "util" U_t, "energy" X_t, each
    [S, C, T]; absent ones are P = X = 1, U = 0 (the deterministic flows exactly).
    Returns a dict of arrays:
      cf, cfe [S, C, T+1] (project and equity flows, t = 0..T);
      ebitda_less_tax [S, C, T]; dscr_month [S, C, T] (bool: live and t <= M_d);
      A, debt, capex [S, C]; revenue, energy_cost, opex, ebitda [S, C] (totals).
    """
    return _flows(p, horizon, factors, lines=False)


# The monthly line items of cash_flow_lines, months t = 1..T (each broadcastable to
# [S, C, T]; the resale lines are [S|1, C, 1], paid at T; capex and debt_draw are
# [S|1, C, T+1], months t = 0..T, paid at the order month).
LINES = ("revenue_reserved", "revenue_on_demand", "revenue", "energy", "maintenance", "software",
         "colocation", "staff", "optimization_cost", "opex", "ebitda", "depreciation", "tax", "resale",
         "tax_on_sale", "terminal", "capex", "debt_draw", "debt_service", "balloon", "interest",
         "interest_tax_shield", "balance")
# The platform layer's monthly lines (platform_flows with lines=True), t = 1..T, [S, T]
PLATFORM_LINES = ("revenue", "cost_of_sales", "run_cost", "build_cost", "opex", "ebitda", "tax")


def cash_flow_lines(p: dict, horizon: int, factors: dict | None = None) -> dict:
    """cash_flows' dict, the same arrays bit for bit, plus "lines": the monthly line items
    (LINES) behind them, for the cash-flow statement (stresstest/statement.py).

    revenue, opex, ebitda, tax, terminal, debt_service, balloon and interest_tax_shield
    are the very arrays the flows are built from: cf_t = ebitda_t - tax_t (+ terminal
    at T), cfe_t = cf_t - debt_service_t + interest_tax_shield_t - balloon_t. The splits
    (revenue_reserved + revenue_on_demand = revenue, maintenance + software + colocation
    + staff + optimization_cost = opex, each opex line after an optimization programme's
    saving) and balance (B_t, after month t's scheduled payment; 0 before the order
    month) are computed only here, so they add up to round-off; cash_flows computes none
    of them. capex and debt_draw sit at the order month t_o (0 in version 1), where cf
    and cfe take them. Where the portfolio has a platform, "platform" carries its
    "lines" too (PLATFORM_LINES).
    """
    return _flows(p, horizon, factors, lines=True)


def cycles(xp, x, M):
    """floor(x / M), the whole contract cycles in x months, exact at the boundaries: a
    division rounded one ulp low (XLA's on the CPU gives 24.5 / 24.5 = 1 - 1.1e-16) is
    corrected by the products, which are exact for these whole multiples."""
    n = xp.floor(x / M)
    n = xp.where((n + 1.0) * M <= x, n + 1.0, n)
    return xp.where(n * M > x, n - 1.0, n)


def renewal_factor(xp, price_f, tau, T: float):
    """The path's price factor locked by a renewal starting at tau: P at month
    clamp(floor(tau), 1, T) (MODEL.md, "Stochastic paths"); price_f [S, C, T], tau
    [S|1, C, T] or [S|1, C, K, T] (per contract)."""
    k = xp.astype(clip(xp, xp.floor(tau), 1.0, T), xp.int64) - 1
    if k.ndim == 4:  # per contract: the cluster's one series, for every contract
        price_f = xp.broadcast_to(price_f[:, :, None, :], price_f.shape[:2] + k.shape[2:])
    k = xp.broadcast_to(k, price_f.shape[:1] + k.shape[1:])
    return xp.take_along_axis(price_f, k, axis=-1)


def _contracts(xp, P, t, D, price_f, T: float) -> dict:
    """The reserved book as named contracts (MODEL.md, "Contracts"), month by month.

    Item arrays are P["contracts.<field>"] [S|1, C, K, 1]; returns res (sum of the
    shares still reserved, [S|1, C, T]), revenue (sum of res_k pr_k, per GPU-hour),
    busy (sum of res_k u_R,k) and by_item (res_k pr_k, [S|1, C, K, T]).
    """
    t4 = t[..., None, :]  # [1, 1, 1, T]
    D4 = D[..., None, :]
    M = P["contracts.term_months"]
    n = cycles(xp, xp.maximum(t4 - 1.0 - D4, 0.0), M)
    kept = xp.where(t4 >= P["contracts.loss_month"], 0.0, 1.0)
    res = P["contracts.share"] * _pow(xp, P["contracts.renewal_rate"], n) * kept
    tau_renew = D4 + 1.0 + n * M
    market = {k: P[k][..., None, :] for k in MARKET_KEYS}
    m_renew, _ = market_price(xp, market, tau_renew)
    if price_f is not None:
        m_renew = m_renew * renewal_factor(xp, price_f, tau_renew, T)
    pr = xp.where(n == 0, P["contracts.price"], m_renew * (1.0 - P["contracts.renewal_discount"]))
    by_item = res * pr
    return {"res": xp.sum(res, axis=-2), "revenue": xp.sum(by_item, axis=-2),
            "busy": xp.sum(res * P["contracts.utilization"], axis=-2), "by_item": by_item}


def _segments(xp, P, g, util_f, gain=None) -> dict:
    """The on-demand pool's segments (MODEL.md, "Segments"), month by month.

    u_j,t = clip(u_j - s_u g_t + U_j,t, 0, 1) with the segment arrays [S|1, C, J, 1]
    and util_f (Monte Carlo) [S, C, J, T]; returns demand (sum of sigma_j u_j,t),
    demand_priced (sum of sigma_j mu_j u_j,t) and by_item (sigma_j mu_j u_j,t).
    """
    u_raw = P["segments.utilization"] - P["next_gen_utilization_drop"][..., None, :] * g[..., None, :]
    if gain is not None:  # an optimization programme's Delta u h_t
        u_raw = u_raw + gain[..., None, :]
    if util_f is not None:
        u_raw = u_raw + util_f
    weighted = P["segments.share"] * _ramp(xp, u_raw)
    by_item = weighted * P["segments.price_multiplier"]
    return {"demand": xp.sum(weighted, axis=-2), "demand_priced": xp.sum(by_item, axis=-2),
            "by_item": by_item}


def _by_industry(xp, p, gpu_hours, contract_items, pool_price, segment_items):
    """Revenue over t = 1..T of each industry label, [S, C, I] (MODEL.md, "Industries").

    gpu_hours: N H live_t [S|1, C, T]; contract_items: res_k pr_k [S|1, C, K, T];
    pool_price: od_t m(t)(1 + q pi) (times P_t) [S|1, C, T]; segment_items:
    sigma_j mu_j u_j,t [S|1, C, J, T]; p["contracts.industry"] [1, C, K, I] and
    p["segments.industry"] [1, C, J, I] one-hot labels (padding items: all zero).
    """
    per_contract = xp.sum(gpu_hours[..., None, :] * contract_items, axis=-1)  # [S|1, C, K]
    per_segment = xp.sum((gpu_hours * pool_price)[..., None, :] * segment_items, axis=-1)
    return (xp.sum(per_contract[..., None] * p[INDUSTRY_KEYS[0]], axis=-2)
            + xp.sum(per_segment[..., None] * p[INDUSTRY_KEYS[1]], axis=-2))


def _revenue_v1(xp, P, t, D, live, m_premium, g, factors, T: float, lines: bool) -> dict:
    """Version 1's reserved book (one contract cycle, a top client) and pool (the
    training/inference blend): revenue_t, busy_t and, for the lines, the two parts."""
    N = P["gpus"]
    price_f = factors.get("price")
    # Contract cycles and the reserved book
    M = P["reserved_term_months"]
    n = cycles(xp, xp.maximum(t - 1.0 - D, 0.0), M)
    lost = xp.where(t >= P["client_loss_month"], P["top_client_share"], 0.0)
    res = P["reserved_share"] * _pow(xp, P["renewal_rate"], n) * (1.0 - lost)
    tau_renew = D + 1.0 + n * M
    m_renew, _ = market_price(xp, P, tau_renew)
    if price_f is not None:
        m_renew = m_renew * renewal_factor(xp, price_f, tau_renew, T)
    pr = xp.where(n == 0, P["reserved_price"], m_renew * (1.0 - P["renewal_discount"]))

    # On-demand pool
    w = P["inference_share"]
    u_raw = ((1.0 - w) * P["utilization_training"] + w * P["utilization_inference"]
             - P["next_gen_utilization_drop"] * g)
    if factors.get("gain") is not None:  # an optimization programme's Delta u h_t
        u_raw = u_raw + factors["gain"]
    if factors.get("util") is not None:
        u_raw = u_raw + factors["util"]
    u = _ramp(xp, u_raw)
    od = 1.0 - res

    out = {"revenue": (N * H) * (live * (res * pr + od * u * m_premium)),
           "busy": res * P["reserved_utilization"] + od * u}
    if lines:
        out["revenue_reserved"] = (N * H) * (live * (res * pr))
        out["revenue_on_demand"] = (N * H) * (live * (od * u * m_premium))
    return out


def _revenue_items(xp, p, P, t, D, live, m_premium, g, factors, T: float) -> dict:
    """Version 2's named contracts and segments: revenue_t, busy_t, its two parts and,
    where the items carry industry labels, the revenue by industry."""
    N = P["gpus"]
    book = _contracts(xp, P, t, D, factors.get("price"), T)
    pool = _segments(xp, P, g, factors.get("util"), factors.get("gain"))
    od = 1.0 - book["res"]
    out = {"revenue_reserved": (N * H) * (live * book["revenue"]),
           "revenue_on_demand": (N * H) * (live * (od * pool["demand_priced"] * m_premium)),
           "busy": book["busy"] + od * pool["demand"]}
    out["revenue"] = out["revenue_reserved"] + out["revenue_on_demand"]
    if INDUSTRY_KEYS[0] in p:
        out["revenue_by_industry"] = _by_industry(xp, p, (N * H) * live, book["by_item"],
                                                  od * m_premium, pool["by_item"])
    return out


def _operating_costs(xp, P, t, live, busy, factors, lines: bool, K, started=None, programme=None) -> dict:
    """Energy_t (idle and busy power, PUE, escalation, the path's energy factor) and
    Opex_t (maintenance, software, colocation while live; staff from month 1, or from the
    month after the order, `started`); K: the price paid per GPU. programme (an
    optimization programme, _programme): its savings, then its own cost."""
    N = P["gpus"]
    phi = P["idle_power_fraction"]
    kw = N * P["kw_per_gpu"]
    e_month = live * _pow(xp, 1.0 + P["energy_escalation"], t / 12.0)
    if factors.get("energy") is not None:
        e_month = e_month * factors["energy"]
    out = {"energy": (kw * P["pue"] * H * P["energy_price"]) * (e_month * (phi + (1.0 - phi) * busy))}
    esc = _pow(xp, 1.0 + P["opex_escalation"], t / 12.0)
    staff = P["staff_cost_per_year"] / 12.0
    if started is not None:
        staff = xp.where(started, staff, 0.0)
    out["opex"] = esc * (
        live * (P["maintenance_rate"] * N * K / 12.0 + N * P["software_per_gpu_month"]
                + kw * P["colocation_per_kw_month"])
        + staff
    )
    if programme is not None:
        h = programme["h"]
        out["energy"] = out["energy"] * (1.0 - P["optimization.energy_saving"] * h)
        cost = (xp.where(t == programme["start"], P["optimization.cost"], 0.0)
                + xp.where(t > programme["start"], P["optimization.cost_per_year"] / 12.0 * esc, 0.0))
        out["opex"] = out["opex"] * (1.0 - P["optimization.opex_saving"] * h) + cost
        out["optimization_cost"] = xp.sum(cost, axis=-1)
    if lines:
        esc_live = esc * live
        parts = {"maintenance": esc_live * (P["maintenance_rate"] * N * K / 12.0),
                 "software": esc_live * (N * P["software_per_gpu_month"]),
                 "colocation": esc_live * (kw * P["colocation_per_kw_month"]),
                 "staff": esc * staff}
        if programme is None:
            parts["optimization_cost"] = xp.zeros_like(t)
        else:  # each line after the saving; the programme's cost a line of its own
            kept = 1.0 - P["optimization.opex_saving"] * programme["h"]
            parts = {k: v * kept for k, v in parts.items()}
            parts["optimization_cost"] = cost
        out["opex_lines"] = parts
    return out


def _terminal(xp, P, capex, dep, tau, T: float, K, age) -> dict:
    """The sale at T: resale value, tax on the gain over book value, what is left; K the
    price paid per GPU, age the months owned (T, or T - t_o)."""
    book_T = capex - xp.sum(dep, axis=-1, keepdims=True)
    g_T = _ramp(xp, (T - P["next_gen_month"]) / P["next_gen_ramp_months"])
    resale = P["gpus"] * K * _pow(xp, 1.0 - P["resale_decline"], age / 12.0) * (
        1.0 - P["next_gen_resale_drop"] * g_T)
    tax_on_sale = tau * (resale - book_T)  # tax on the gain over book value
    return {"resale": resale, "tax_on_sale": tax_on_sale, "terminal": resale - tax_on_sale}  # [S|1, C, 1]


def _programme(xp, P, t, t_o, start_after):
    """An optimization programme's month of start t_s and ramp h_t = ramp((t - t_s)/R_s).

    t_s: the file's start month, kept >= 1 and moved to the order month t_o when before
    it; where the file gives none, ceil(t_o + D) (start_after, from the shocked values), >= 1.
    """
    given = xp.maximum(P["optimization.start_month"], 1.0)
    if t_o is not None:
        given = xp.maximum(given, t_o)
    default = xp.maximum(xp.ceil(start_after), 1.0)
    start = xp.where(P[OPTIMIZATION_START_GIVEN] > 0, given, default)
    return {"start": start, "h": _ramp(xp, (t - start) / P["optimization.ramp_months"])}


def _clock(xp, P, T: float):
    """The order month t_o (rounded by the shocks; here clipped to 0..T) and the price
    paid per GPU, K (1 - c_K)^(t_o/12); None and K without a clock (version 1)."""
    if "order_month" not in P:
        return None, P["capex_per_gpu"]
    t_o = clip(xp, P["order_month"], 0.0, T)
    return t_o, P["capex_per_gpu"] * _pow(xp, 1.0 - P["capex_decline"], t_o / 12.0)


def _debt_service(xp, P, capex, t, t_o, started, T: float, tau) -> dict:
    """The loan on the cluster's clock (s = t - t_o months after the draw; s = t without
    an order month): level payments A while s <= M_d, interest on the balance after the
    last payment and its tax shield, the balance left at T repaid from equity (balloon);
    nothing before the draw."""
    md = P["debt_term_months"]
    debt, A, j, lj, growth_m1 = debt_terms(xp, P, capex)
    s = t if t_o is None else t - t_o
    s_T = T if t_o is None else T - t_o
    in_term = s <= md if t_o is None else started & (s <= md)
    interest = j * balance(xp, debt, md, j, lj, growth_m1, s - 1.0)
    if t_o is not None:
        interest = xp.where(started, interest, 0.0)
    b_T = balance(xp, debt, md, j, lj, growth_m1, s_T)
    return {"debt": debt, "A": A, "in_term": in_term, "interest": interest, "s": s,
            "service": xp.where(in_term, A, 0.0), "shield": tau * interest,
            # the balance left at T, repaid from equity
            "balloon": xp.where((t == T) & (md > s_T), b_T, 0.0),
            "balance": lambda months: balance(xp, debt, md, j, lj, growth_m1, months)}


def _flows(p: dict, horizon: int, factors: dict | None, lines: bool) -> dict:
    """cash_flows (lines=False) or cash_flow_lines (lines=True: a static flag)."""
    any_param = p["gpus"]
    xp = array_namespace(any_param)
    dtype = any_param.dtype
    P = {k: v[..., None] for k, v in p.items()}  # [S|1, C, 1] ([S|1, C, K, 1] for items)
    t = xp.reshape(xp.arange(1, horizon + 1, dtype=dtype), (1, 1, horizon))
    T = float(horizon)

    t_o, K = _clock(xp, P, T)  # the cluster's clock starts at t_o; the market's is t
    capex = P["gpus"] * K + P["capex_fixed"]
    D = P["delivery_months"] if t_o is None else t_o + P["delivery_months"]
    live = _ramp(xp, t - D)

    factors = dict(factors or {})
    programme = None
    if "optimization.cost" in P:
        programme = _programme(xp, P, t, t_o, D)
        factors["gain"] = P["optimization.utilization_gain"] * programme["h"]
    premium = 1.0 + P["priority_share"] * P["priority_premium"]
    m_premium, g = market_price(xp, P, t, premium)  # m(t) (1 + s_q q)
    if factors.get("price") is not None:
        m_premium = m_premium * factors["price"]

    if ITEM_NAMES[0] in p:  # version 2: named contracts and segments
        rev = _revenue_items(xp, p, P, t, D, live, m_premium, g, factors, T)
    else:
        rev = _revenue_v1(xp, P, t, D, live, m_premium, g, factors, T, lines)
    revenue = rev["revenue"]
    started = None if t_o is None else t > t_o
    costs = _operating_costs(xp, P, t, live, rev["busy"], factors, lines, K, started, programme)
    energy, opex = costs["energy"], costs["opex"]
    ebitda = revenue - energy - opex

    life_months = 12.0 * P["useful_life_years"]
    if t_o is None:
        dep = xp.where(t <= life_months, capex / life_months, 0.0)
    else:
        dep = xp.where(started & (t - t_o <= life_months), capex / life_months, 0.0)
    tau = P["tax_rate"]
    tax = tau * (ebitda - dep)
    after_tax = ebitda - tax  # EBITDA - Tax

    sale = _terminal(xp, P, capex, dep, tau, T, K, T if t_o is None else T - t_o)
    is_T = t == T
    cf_ops = after_tax + xp.where(is_T, sale["terminal"], 0.0)

    loan = _debt_service(xp, P, capex, t, t_o, started, T, tau)
    debt, A, in_term = loan["debt"], loan["A"], loan["in_term"]
    service, shield, balloon, interest = loan["service"], loan["shield"], loan["balloon"], loan["interest"]
    cfe_ops = cf_ops - service + shield - balloon

    cf_ops, cfe_ops = xp.broadcast_arrays(cf_ops, cfe_ops)
    shape = cf_ops.shape[:2] + (1,)
    if t_o is None:
        cf = xp.concat([xp.broadcast_to(-capex, shape), cf_ops], axis=-1)
        cfe = xp.concat([xp.broadcast_to(debt - capex, shape), cfe_ops], axis=-1)
    else:  # the investment (and the draw) at t_o, nothing before it
        zero = xp.zeros(shape, dtype=dtype)
        t_all = xp.reshape(xp.arange(0, horizon + 1, dtype=dtype), (1, 1, horizon + 1))
        at_order = t_all == t_o
        cf = xp.concat([zero, cf_ops], axis=-1) + xp.where(at_order, -capex, 0.0)
        cfe = xp.concat([zero, cfe_ops], axis=-1) + xp.where(at_order, debt - capex, 0.0)

    out = {
        "cf": cf,
        "cfe": cfe,
        "ebitda_less_tax": after_tax,
        "dscr_month": (live == 1.0) & in_term,
        "A": A[..., 0],
        "debt": debt[..., 0],
        "capex": capex[..., 0],
        "revenue": xp.sum(revenue, axis=-1),
        "energy_cost": xp.sum(energy, axis=-1),
        "opex": xp.sum(opex, axis=-1),
        "ebitda": xp.sum(ebitda, axis=-1),
    }
    if "revenue_by_industry" in rev:
        out["revenue_by_industry"] = rev["revenue_by_industry"]
    if t_o is not None:
        out["order_month"] = t_o[..., 0]
    if programme is not None:
        out["optimization_cost"] = costs["optimization_cost"]
    if PLATFORM_KEY in p:
        out["platform"] = platform_flows(xp, p, revenue, horizon, lines)
    if lines:
        # the investment and the draw at the order month; the balance from it on
        t_all = xp.reshape(xp.arange(0, horizon + 1, dtype=dtype), (1, 1, horizon + 1))
        at_order = t_all == (0.0 if t_o is None else t_o)
        owed = loan["balance"](loan["s"])
        out["lines"] = {
            "revenue_reserved": rev["revenue_reserved"], "revenue_on_demand": rev["revenue_on_demand"],
            "revenue": revenue, "energy": energy, **costs["opex_lines"], "opex": opex, "ebitda": ebitda,
            "depreciation": dep, "tax": tax, **sale,
            "capex": xp.where(at_order, capex, 0.0), "debt_draw": xp.where(at_order, debt, 0.0),
            "debt_service": service, "balloon": balloon, "interest": interest, "interest_tax_shield": shield,
            "balance": owed if t_o is None else xp.where(t >= t_o, owed, 0.0),
        }
    return out


def platform_flows(xp, p: dict, revenue, horizon: int, lines: bool = False) -> dict:
    """The platform layer's monthly flows (MODEL.md, "Platform layer"), portfolio level.

    p["platform.<field>"]: [S|1, 1]; revenue: the clusters' Revenue_t [S|1, C, T].
    Returns cf [S, T+1] (CF^p_t = EBITDA^p_t (1 - tax), nothing at t = 0), the totals
    revenue, opex, ebitda [S] over t = 1..T; with lines=True also "lines", the monthly
    PLATFORM_LINES [S, T] (cost_of_sales (1 - margin) R^p_t, run_cost and build_cost add
    up to opex; tax = tax_rate EBITDA^p_t, so ebitda - tax = CF^p_t to round-off).
    """
    q = {k[len(PLATFORM_PREFIX):]: v for k, v in p.items() if k.startswith(PLATFORM_PREFIX)}
    dtype = revenue.dtype
    t = xp.reshape(xp.arange(1, horizon + 1, dtype=dtype), (1, horizon))
    launch = clip(xp, q["launch_month"], 1.0, float(horizon))
    on = t >= launch
    adoption = q["adoption_months"]
    instant = adoption <= 0.0  # a shocked adoption time <= 0: every user from the launch
    grown = -xp.expm1(-(t - launch + 1.0) / xp.where(instant, 1.0, adoption))
    users = q["users_max"] * xp.where(instant, 1.0, grown)
    fees = users * (q["fee_per_user_month"] * _pow(xp, 1.0 + q["fee_growth"], t / 12.0))
    rev = xp.where(on, q["take_rate"] * xp.sum(revenue, axis=1) + fees, 0.0)
    run = xp.where(on, q["run_cost_per_year"] / 12.0 * _pow(xp, 1.0 + q["opex_escalation"], t / 12.0), 0.0)
    build = xp.where(t == launch, q["build_cost"], 0.0)
    ebitda = q["margin"] * rev - run - build
    cf = ebitda * (1.0 - q["tax_rate"])
    cf, rev, ebitda, run, build = xp.broadcast_arrays(cf, rev, ebitda, run, build)
    zero = xp.zeros(cf.shape[:1] + (1,), dtype=dtype)
    out = {"cf": xp.concat([zero, cf], axis=-1), "revenue": xp.sum(rev, axis=-1),
           "opex": xp.sum((1.0 - q["margin"]) * rev + run + build, axis=-1),
           "ebitda": xp.sum(ebitda, axis=-1)}
    if lines:
        sales = (1.0 - q["margin"]) * rev
        out["lines"] = {"revenue": rev, "cost_of_sales": sales, "run_cost": run, "build_cost": build,
                        "opex": sales + run + build, "ebitda": ebitda, "tax": q["tax_rate"] * ebitda}
    return out
