"""Plain, independent reference implementation of the cash-flow model (MODEL.md, version 1).

This module is the test oracle for the vectorised kernels.  It is deliberately
simple: pure Python floats (IEEE float64), the ``math`` module, one cluster and
one scenario at a time, and an explicit ``for`` loop over the months.  The only
third-party dependency is ``numpy_financial`` 1.0.0, used for the IRR root
(its rule: the real root closest to zero).

Conventions fixed by the project where MODEL.md leaves room:

* months t = 0..T; t = 0 carries only CF_0 = -Capex; H = 730 hours per month;
* live_t = clip(t - D, 0, 1); g(t) = clip((t - t_ng)/R, 0, 1);
  m(t) = p0 (1-d)^(t/12) (1 - s_p g(t)) for any (possibly fractional) t;
* n_t = floor(max(t-1-D, 0)/M); res_t = r0 rho^n_t (1 - k [t >= t_L]);
  pr_t = p_R if n_t == 0 else m(D + 1 + n_t M) (1 - delta);
* Dep_t = Capex/(12 L) for 1 <= t <= 12 L (literally), Book_T = Capex - sum Dep;
* level-payment debt, balance repaid at T when the term runs past the horizon;
* DSCR over months with live_t == 1 exactly and t <= M_d;
* payback interpolated linearly inside the month, 0 if CF_0 >= 0, inf if never.

Monte Carlo path factors (MODEL.md, "Stochastic paths"), optional, for one path:

* price factor P_t > 0: on-demand revenue uses m(t) P_t; a renewal locked at the
  cycle start tau = D + 1 + n M (n >= 1) uses m(tau) (1 - delta) P_k with
  k = clip(floor(tau), 1, T); the first cycle keeps p_R with no factor;
* utilization shift U_t: u_t = clip((1-w) u_T + w u_I - s_u g(t) + U_t, 0, 1);
* energy factor X_t > 0: the energy price is E (1+g_E)^(t/12) X_t;
* each factor is a sequence of length T, element t-1 being month t; None means
  no factor (P = X = 1, U = 0), and then the flows are the deterministic ones.
  Factors 1 and 0 give bit-identical flows, since x*1.0 and x+0.0 are exact.
"""

from __future__ import annotations

import math

import numpy as np
import numpy_financial as npf

HOURS_PER_MONTH = 730.0

# The cluster parameter config keys, in MODEL.md order.
PARAM_NAMES: tuple[str, ...] = (
    # Hardware and capex
    "gpus",
    "capex_per_gpu",
    "capex_fixed",
    "delivery_months",
    # Power and energy
    "kw_per_gpu",
    "idle_power_fraction",
    "pue",
    "energy_price",
    "energy_escalation",
    # Market price and obsolescence
    "on_demand_price",
    "price_decline",
    "next_gen_month",
    "next_gen_ramp_months",
    "next_gen_price_drop",
    "next_gen_utilization_drop",
    "next_gen_resale_drop",
    # Reserved contracts and customers
    "reserved_share",
    "reserved_price",
    "reserved_term_months",
    "renewal_rate",
    "renewal_discount",
    "reserved_utilization",
    "top_client_share",
    "client_loss_month",
    # On-demand pool
    "utilization_training",
    "utilization_inference",
    "inference_share",
    "priority_share",
    "priority_premium",
    # Operating costs
    "opex_escalation",
    "maintenance_rate",
    "software_per_gpu_month",
    "colocation_per_kw_month",
    "staff_cost_per_year",
    # Depreciation, tax, resale
    "useful_life_years",
    "tax_rate",
    "resale_decline",
    # Debt
    "debt_fraction",
    "interest_rate",
    "debt_term_months",
)

# Documented defaults (MODEL.md).  Required keys (gpus, capex_per_gpu,
# on_demand_price, and reserved_price when reserved_share > 0) have none.
DEFAULTS: dict[str, float] = {
    "capex_fixed": 0.0,
    "delivery_months": 3.0,
    "kw_per_gpu": 1.3,
    "idle_power_fraction": 0.3,
    "pue": 1.3,
    "energy_price": 0.08,
    "energy_escalation": 0.02,
    "price_decline": 0.20,
    "next_gen_month": 24.0,
    "next_gen_ramp_months": 6.0,
    "next_gen_price_drop": 0.30,
    "next_gen_utilization_drop": 0.05,
    "next_gen_resale_drop": 0.20,
    "reserved_share": 0.5,
    "reserved_term_months": 36.0,
    "renewal_rate": 0.7,
    "renewal_discount": 0.15,
    "reserved_utilization": 0.85,
    "top_client_share": 0.0,
    "client_loss_month": math.inf,
    "utilization_training": 0.70,
    "utilization_inference": 0.80,
    "inference_share": 0.5,
    "priority_share": 0.0,
    "priority_premium": 0.25,
    "opex_escalation": 0.03,
    "maintenance_rate": 0.03,
    "software_per_gpu_month": 15.0,
    "colocation_per_kw_month": 0.0,
    "staff_cost_per_year": 0.0,
    "useful_life_years": 6.0,
    "tax_rate": 0.21,
    "resale_decline": 0.25,
    "debt_fraction": 0.0,
    "interest_rate": 0.10,
    "debt_term_months": 48.0,
}

DEFAULT_DISCOUNT_RATE = 0.10
DEFAULT_HORIZON_MONTHS = 60

OUTPUT_NAMES: tuple[str, ...] = (
    "npv",
    "roi",
    "irr",
    "payback_months",
    "equity_irr",
    "min_dscr",
    "revenue",
    "energy_cost",
    "opex",
    "ebitda",
)

# ---------------------------------------------------------------------------
# Shocks
# ---------------------------------------------------------------------------

_INF = math.inf

# (low, high) clip range of a shocked value; None = unclipped.
SHOCK_RANGES: dict[str, tuple[float, float] | None] = {}
for _k in (
    "reserved_share",
    "top_client_share",
    "inference_share",
    "priority_share",
    "renewal_rate",
    "renewal_discount",
    "utilization_training",
    "utilization_inference",
    "reserved_utilization",
    "idle_power_fraction",
    "debt_fraction",
    "tax_rate",
    "next_gen_price_drop",
    "next_gen_utilization_drop",
    "next_gen_resale_drop",
):
    SHOCK_RANGES[_k] = (0.0, 1.0)
for _k in ("price_decline", "resale_decline"):
    SHOCK_RANGES[_k] = (-1.0, 1.0)
for _k in ("energy_escalation", "opex_escalation"):
    SHOCK_RANGES[_k] = (-1.0, _INF)
for _k in (
    "gpus",
    "capex_per_gpu",
    "capex_fixed",
    "delivery_months",
    "kw_per_gpu",
    "energy_price",
    "on_demand_price",
    "reserved_price",
    "priority_premium",
    "maintenance_rate",
    "software_per_gpu_month",
    "colocation_per_kw_month",
    "staff_cost_per_year",
    "interest_rate",
):
    SHOCK_RANGES[_k] = (0.0, _INF)
for _k in ("pue", "next_gen_ramp_months", "reserved_term_months", "debt_term_months"):
    SHOCK_RANGES[_k] = (1.0, _INF)
SHOCK_RANGES["useful_life_years"] = (1.0 / 12.0, _INF)
SHOCK_RANGES["next_gen_month"] = None
SHOCK_RANGES["client_loss_month"] = None
del _k
assert set(SHOCK_RANGES) == set(PARAM_NAMES), set(PARAM_NAMES) ^ set(SHOCK_RANGES)

# Named shocks of a stress grid: name -> (op, targets)
NAMED_SHOCKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "utilization": ("shift", ("utilization_training", "utilization_inference")),
    "price": ("scale", ("on_demand_price",)),
    "energy": ("scale", ("energy_price",)),
    "obsolescence": ("shift", ("next_gen_month",)),
}


def _clip(x: float, lo: float, hi: float) -> float:
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def _apply_op(old: float, op: str, value: float) -> float:
    if op == "set":
        return float(value)
    if math.isinf(old):
        # inf (e.g. client_loss_month = never) stays inf under scale and shift
        return old
    if op == "scale":
        return old * value
    if op == "shift":
        return old + value
    raise ValueError(f"unknown shock op {op!r}")


def apply_shock(params: dict, param: str, op: str, value: float) -> dict:
    """Return a copy of one cluster's resolved params with one shock applied.

    ``param`` is a cluster config key or one of the named shocks ``utilization``
    (shift of both utilizations), ``price`` (scale of on_demand_price), ``energy``
    (scale of energy_price), ``obsolescence`` (shift of next_gen_month); for named
    shocks ``op`` is ignored.  The result is clipped to the range of MODEL.md.
    """
    out = dict(params)
    if param in NAMED_SHOCKS:
        op, targets = NAMED_SHOCKS[param]
    elif param in SHOCK_RANGES:
        if op not in ("scale", "shift", "set"):
            raise ValueError(f"unknown shock op {op!r}")
        targets = (param,)
    else:
        raise KeyError(f"unknown parameter {param!r}")
    for key in targets:
        x = _apply_op(float(out[key]), op, float(value))
        if key == "debt_term_months":
            x = float(math.floor(x + 0.5))
        rng = SHOCK_RANGES[key]
        if rng is not None:
            x = _clip(x, rng[0], rng[1])
        out[key] = x
    return out


# ---------------------------------------------------------------------------
# IRR
# ---------------------------------------------------------------------------


def irr_monthly_to_annual(flows: list[float]) -> float:
    """Monthly IRR by numpy_financial 1.0.0 (real root closest to 0), annualised."""
    vals = [float(x) for x in flows]
    if any(not math.isfinite(x) for x in vals):
        return math.nan
    i = float(npf.irr(np.array(vals, dtype=np.float64)))
    if math.isnan(i):
        return math.nan
    return (1.0 + i) ** 12 - 1.0


# ---------------------------------------------------------------------------
# One cluster
# ---------------------------------------------------------------------------


def debt_schedule(debt: float, annual_rate: float, term: float, horizon: int) -> dict:
    """Level-payment loan: payment A, balances B_0..B_T, interest I_0..I_T (I_0 = 0)."""
    md = term
    j = annual_rate / 12.0
    if debt == 0.0:
        return {"A": 0.0, "B": [0.0] * (horizon + 1), "I": [0.0] * (horizon + 1), "j": j}
    if j == 0.0:
        payment = debt / md
    else:
        payment = debt * j / (1.0 - (1.0 + j) ** (-md))
    balances = []
    for t in range(horizon + 1):
        if t >= md:
            b = 0.0
        elif j == 0.0:
            b = debt * (md - t) / md
        else:
            b = debt * ((1.0 + j) ** md - (1.0 + j) ** t) / ((1.0 + j) ** md - 1.0)
        balances.append(b)
    interest = [0.0]
    for t in range(1, horizon + 1):
        interest.append(j * balances[t - 1] if t <= md else 0.0)
    return {"A": payment, "B": balances, "I": interest, "j": j}


def _factor_series(name: str, values, T: int, default: float) -> list[float]:
    """A path factor as a list indexed t = 0..T (entry 0 unused), from a sequence of
    length T whose element t-1 is month t; None gives the constant ``default``."""
    out = [default] * (T + 1)
    if values is None:
        return out
    vals = [float(x) for x in values]
    if len(vals) != T:
        raise ValueError(f"{name} factor must have length T = {T}, got {len(vals)}")
    for t in range(1, T + 1):
        out[t] = vals[t - 1]
    return out


def cluster_monthly(
    p: dict,
    horizon_months: int,
    price_factor=None,
    util_shift=None,
    energy_factor=None,
) -> dict:
    """All monthly series of one cluster, each a list indexed t = 0..T (t = 0 entries
    of the operating series are 0), plus the scalars capex, debt, A, M_d.

    Optional Monte Carlo path factors (sequences of length T, element t-1 = month t):
    ``price_factor`` P_t, ``util_shift`` U_t, ``energy_factor`` X_t, as in the module
    docstring.  None means no factor."""
    T = int(horizon_months)
    H = HOURS_PER_MONTH
    Pf = _factor_series("price", price_factor, T, 1.0)
    Us = _factor_series("util", util_shift, T, 0.0)
    Xf = _factor_series("energy", energy_factor, T, 1.0)

    N = float(p["gpus"])
    K = float(p["capex_per_gpu"])
    Kf = float(p["capex_fixed"])
    D = float(p["delivery_months"])
    P = float(p["kw_per_gpu"])
    phi = float(p["idle_power_fraction"])
    pue = float(p["pue"])
    E = float(p["energy_price"])
    gE = float(p["energy_escalation"])
    p0 = float(p["on_demand_price"])
    d = float(p["price_decline"])
    t_ng = float(p["next_gen_month"])
    R = float(p["next_gen_ramp_months"])
    s_p = float(p["next_gen_price_drop"])
    s_u = float(p["next_gen_utilization_drop"])
    s_r = float(p["next_gen_resale_drop"])
    r0 = float(p["reserved_share"])
    pR = float(p["reserved_price"])
    M = float(p["reserved_term_months"])
    rho = float(p["renewal_rate"])
    delta = float(p["renewal_discount"])
    uR = float(p["reserved_utilization"])
    k = float(p["top_client_share"])
    tL = float(p["client_loss_month"])
    uT = float(p["utilization_training"])
    uI = float(p["utilization_inference"])
    w = float(p["inference_share"])
    q = float(p["priority_share"])
    pi = float(p["priority_premium"])
    gO = float(p["opex_escalation"])
    m_r = float(p["maintenance_rate"])
    sw = float(p["software_per_gpu_month"])
    c_k = float(p["colocation_per_kw_month"])
    S = float(p["staff_cost_per_year"])
    L = float(p["useful_life_years"])
    tau = float(p["tax_rate"])
    d_r = float(p["resale_decline"])
    theta = float(p["debt_fraction"])
    i_rate = float(p["interest_rate"])
    Md = float(p["debt_term_months"])

    def g(t: float) -> float:
        return _clip((t - t_ng) / R, 0.0, 1.0)

    def market(t: float) -> float:
        return p0 * (1.0 - d) ** (t / 12.0) * (1.0 - s_p * g(t))

    capex = N * K + Kf
    debt = theta * capex
    sched = debt_schedule(debt, i_rate, Md, T)
    A = sched["A"]
    B = sched["B"]
    I = sched["I"]

    zeros = [0.0] * (T + 1)
    live_s = list(zeros)
    revenue_s = list(zeros)
    energy_s = list(zeros)
    opex_s = list(zeros)
    ebitda_s = list(zeros)
    dep_s = list(zeros)
    tax_s = list(zeros)
    cf_s = list(zeros)
    cfe_s = list(zeros)
    nopat_s = list(zeros)  # EBITDA_t - Tax_t (DSCR numerator)

    cf_s[0] = -capex
    cfe_s[0] = -capex + debt

    life_months = 12.0 * L
    for t in range(1, T + 1):
        live = _clip(t - D, 0.0, 1.0)
        gt = g(t)
        m_t = market(t) * Pf[t]

        n = math.floor(max(t - 1 - D, 0.0) / M)
        lost = 1.0 if t >= tL else 0.0
        res = r0 * rho ** n * (1.0 - k * lost)
        if n == 0:
            pr = pR
        else:
            start = D + 1.0 + n * M
            k_lock = int(_clip(float(math.floor(start)), 1.0, float(T)))
            pr = market(start) * (1.0 - delta) * Pf[k_lock]

        u = _clip((1.0 - w) * uT + w * uI - s_u * gt + Us[t], 0.0, 1.0)
        od = 1.0 - res

        revenue = live * N * H * (res * pr + od * u * m_t * (1.0 + q * pi))
        busy = res * uR + od * u
        energy = live * N * P * pue * H * E * (1.0 + gE) ** (t / 12.0) * Xf[t] * (phi + (1.0 - phi) * busy)
        e_t = (1.0 + gO) ** (t / 12.0)
        opex = e_t * (live * (m_r * N * K / 12.0 + N * sw + N * P * c_k) + S / 12.0)
        ebitda = revenue - energy - opex

        dep = capex / (12.0 * L) if t <= life_months else 0.0
        tax = tau * (ebitda - dep)
        cf = ebitda - tax

        live_s[t] = live
        revenue_s[t] = revenue
        energy_s[t] = energy
        opex_s[t] = opex
        ebitda_s[t] = ebitda
        dep_s[t] = dep
        tax_s[t] = tax
        nopat_s[t] = ebitda - tax
        cf_s[t] = cf

    book_T = capex
    for t in range(1, T + 1):
        book_T -= dep_s[t]
    resale = N * K * (1.0 - d_r) ** (T / 12.0) * (1.0 - s_r * g(T))
    cf_s[T] += resale - tau * (resale - book_T)

    for t in range(1, T + 1):
        pay = A if t <= Md else 0.0
        cfe = cf_s[t] - pay + tau * I[t]
        if t == T and Md > T:
            cfe -= B[T]
        cfe_s[t] = cfe

    return {
        "capex": capex,
        "debt": debt,
        "A": A,
        "M_d": Md,
        "balance": B,
        "interest": I,
        "book_T": book_T,
        "resale": resale,
        "live": live_s,
        "revenue": revenue_s,
        "energy_cost": energy_s,
        "opex": opex_s,
        "ebitda": ebitda_s,
        "dep": dep_s,
        "tax": tax_s,
        "nopat": nopat_s,
        "cf": cf_s,
        "cfe": cfe_s,
    }


# ---------------------------------------------------------------------------
# Metrics from flows
# ---------------------------------------------------------------------------


def npv(cf: list[float], discount_rate: float) -> float:
    total = 0.0
    for t, x in enumerate(cf):
        total += x * (1.0 + discount_rate) ** (-t / 12.0)
    return total


def payback_months(cf: list[float]) -> float:
    cum = cf[0]
    if cum >= 0.0:
        return 0.0
    for t in range(1, len(cf)):
        prev = cum
        cum = prev + cf[t]
        if cum >= 0.0:
            return (t - 1) + (-prev) / cf[t]
    return math.inf


def _sum_months(series: list[float]) -> float:
    total = 0.0
    for t in range(1, len(series)):
        total += series[t]
    return total


def _metrics(cf, cfe, capex, has_debt, min_dscr, totals, discount_rate) -> dict:
    total_cf = 0.0
    for x in cf:
        total_cf += x
    return {
        "npv": npv(cf, discount_rate),
        "roi": total_cf / capex if capex != 0.0 else math.nan,
        "irr": irr_monthly_to_annual(cf),
        "payback_months": payback_months(cf),
        "equity_irr": irr_monthly_to_annual(cfe) if has_debt else math.nan,
        "min_dscr": min_dscr,
        "revenue": totals["revenue"],
        "energy_cost": totals["energy_cost"],
        "opex": totals["opex"],
        "ebitda": totals["ebitda"],
    }


def evaluate(clusters: list[dict], horizon_months: int, discount_rate: float, factors=None) -> dict:
    """Evaluate one scenario: per-cluster and portfolio outputs plus the flows.

    ``factors`` (one Monte Carlo path) is None or a list with one entry per cluster,
    each None or a dict with optional keys "price", "util", "energy" (sequences of
    length T, element t-1 = month t) passed to ``cluster_monthly``."""
    T = int(horizon_months)
    r = float(discount_rate)
    if factors is None:
        factors = [None] * len(clusters)
    if len(factors) != len(clusters):
        raise ValueError(f"factors must have one entry per cluster ({len(clusters)}), got {len(factors)}")
    monthly = []
    for c, f in zip(clusters, factors):
        f = {} if f is None else f
        unknown = set(f) - {"price", "util", "energy"}
        if unknown:
            raise KeyError(f"unknown factor keys {sorted(unknown)}")
        monthly.append(
            cluster_monthly(
                c,
                T,
                price_factor=f.get("price"),
                util_shift=f.get("util"),
                energy_factor=f.get("energy"),
            )
        )

    cluster_out = []
    for mo in monthly:
        has_debt = mo["debt"] != 0.0
        min_dscr = math.nan
        if has_debt:
            best = None
            for t in range(1, T + 1):
                if mo["live"][t] == 1.0 and t <= mo["M_d"]:
                    x = mo["nopat"][t] / mo["A"]
                    if best is None or x < best:
                        best = x
            if best is not None:
                min_dscr = best
        totals = {key: _sum_months(mo[key]) for key in ("revenue", "energy_cost", "opex", "ebitda")}
        cluster_out.append(_metrics(mo["cf"], mo["cfe"], mo["capex"], has_debt, min_dscr, totals, r))

    # Portfolio: month-by-month sums over clusters.
    pcf = [0.0] * (T + 1)
    pcfe = [0.0] * (T + 1)
    pnopat = [0.0] * (T + 1)
    pcapex = 0.0
    for mo in monthly:
        pcapex += mo["capex"]
        for t in range(T + 1):
            pcf[t] += mo["cf"][t]
            pcfe[t] += mo["cfe"][t]
            pnopat[t] += mo["nopat"][t]
    debtors = [mo for mo in monthly if mo["debt"] != 0.0]
    p_has_debt = len(debtors) > 0
    p_min_dscr = math.nan
    if p_has_debt:
        denom = 0.0
        for mo in debtors:
            denom += mo["A"]
        best = None
        for t in range(1, T + 1):
            in_window = True
            for mo in debtors:
                if not (mo["live"][t] == 1.0 and t <= mo["M_d"]):
                    in_window = False
                    break
            if in_window:
                x = pnopat[t] / denom
                if best is None or x < best:
                    best = x
        if best is not None:
            p_min_dscr = best
    p_totals = {}
    for key in ("revenue", "energy_cost", "opex", "ebitda"):
        series = [0.0] * (T + 1)
        for mo in monthly:
            for t in range(T + 1):
                series[t] += mo[key][t]
        p_totals[key] = _sum_months(series)
    portfolio = _metrics(pcf, pcfe, pcapex, p_has_debt, p_min_dscr, p_totals, r)

    return {
        "portfolio": portfolio,
        "clusters": cluster_out,
        "flows": {
            "cf": [list(mo["cf"]) for mo in monthly],
            "cfe": [list(mo["cfe"]) for mo in monthly],
        },
    }
