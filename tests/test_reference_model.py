"""Checks of the plain reference model (tests/reference_model.py) against closed forms.

The reference is the oracle for the vectorised kernels, so it must be right on its
own: these tests compare it with annuity formulas, hand-computed cases and simple
identities, never with the package under test.
"""

import math
import os
import sys

import numpy as np
import numpy_financial as npf
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_model import (  # noqa: E402
    DEFAULTS,
    OUTPUT_NAMES,
    PARAM_NAMES,
    apply_shock,
    cluster_monthly,
    debt_schedule,
    evaluate,
    irr_monthly_to_annual,
    npv,
    payback_months,
)

H = 730.0
REL = 1e-12


def approx(x, rel=REL, abs=1e-9):
    return pytest.approx(x, rel=rel, abs=abs)


def plain(**over):
    """A cluster with every cost, shock and contract switched off: one GPU, live from
    t = 1, on-demand only at 100 % utilization and a flat price, no tax, no resale,
    no debt.  Revenue is a constant H * p0 per month."""
    p = {
        "gpus": 1.0,
        "capex_per_gpu": 1000.0,
        "capex_fixed": 0.0,
        "delivery_months": 0.0,
        "kw_per_gpu": 0.0,
        "idle_power_fraction": 0.0,
        "pue": 1.0,
        "energy_price": 0.0,
        "energy_escalation": 0.0,
        "on_demand_price": 1.0,
        "price_decline": 0.0,
        "next_gen_month": 1.0e6,
        "next_gen_ramp_months": 1.0,
        "next_gen_price_drop": 0.0,
        "next_gen_utilization_drop": 0.0,
        "next_gen_resale_drop": 0.0,
        "reserved_share": 0.0,
        "reserved_price": 0.0,
        "reserved_term_months": 36.0,
        "renewal_rate": 1.0,
        "renewal_discount": 0.0,
        "reserved_utilization": 1.0,
        "top_client_share": 0.0,
        "client_loss_month": math.inf,
        "utilization_training": 1.0,
        "utilization_inference": 1.0,
        "inference_share": 0.5,
        "priority_share": 0.0,
        "priority_premium": 0.0,
        "opex_escalation": 0.0,
        "maintenance_rate": 0.0,
        "software_per_gpu_month": 0.0,
        "colocation_per_kw_month": 0.0,
        "staff_cost_per_year": 0.0,
        "useful_life_years": 6.0,
        "tax_rate": 0.0,
        "resale_decline": 1.0,
        "debt_fraction": 0.0,
        "interest_rate": 0.10,
        "debt_term_months": 48.0,
    }
    assert set(p) == set(PARAM_NAMES)
    p.update(over)
    return p


def default_cluster(**over):
    p = dict(DEFAULTS)
    p.update(gpus=1024.0, capex_per_gpu=31000.0, on_demand_price=2.2, reserved_price=2.0)
    p.update(over)
    assert set(p) == set(PARAM_NAMES)
    return p


def annuity_factor(rate_per_period, n):
    """sum_{t=1..n} (1+rate)^-t."""
    if rate_per_period == 0.0:
        return float(n)
    return (1.0 - (1.0 + rate_per_period) ** (-n)) / rate_per_period


# ---------------------------------------------------------------------------
# parameter list
# ---------------------------------------------------------------------------


def test_param_names():
    assert len(PARAM_NAMES) == 40
    assert len(set(PARAM_NAMES)) == 40
    assert PARAM_NAMES[0] == "gpus" and PARAM_NAMES[-1] == "debt_term_months"
    required = set(PARAM_NAMES) - set(DEFAULTS)
    assert required == {"gpus", "capex_per_gpu", "on_demand_price", "reserved_price"}
    assert DEFAULTS["client_loss_month"] == math.inf


def test_output_keys_and_flow_shapes():
    T = 7
    res = evaluate([plain(), default_cluster()], T, 0.1)
    assert set(res["portfolio"]) == set(OUTPUT_NAMES)
    assert len(res["clusters"]) == 2
    for c in res["clusters"]:
        assert set(c) == set(OUTPUT_NAMES)
    for key in ("cf", "cfe"):
        assert len(res["flows"][key]) == 2
        assert all(len(row) == T + 1 for row in res["flows"][key])


# ---------------------------------------------------------------------------
# (a) constant revenue stream: annuity closed forms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.0, 0.07, 0.25, -0.5])
@pytest.mark.parametrize("T", [1, 13, 60, 240])
def test_constant_revenue_npv_is_annuity(r, T):
    p0 = 2.5
    K = 20000.0
    R = H * p0
    res = evaluate([plain(on_demand_price=p0, capex_per_gpu=K)], T, r)
    c = res["clusters"][0]
    monthly = (1.0 + r) ** (1.0 / 12.0) - 1.0
    assert c["npv"] == approx(-K + R * annuity_factor(monthly, T), rel=1e-11)
    assert c["revenue"] == approx(R * T)
    assert c["ebitda"] == approx(R * T)
    assert c["energy_cost"] == 0.0 and c["opex"] == 0.0
    assert c["roi"] == approx((R * T - K) / K)
    assert res["flows"]["cf"][0] == [-K] + [approx(R)] * T
    # no debt: equity flows are the project flows, equity IRR and DSCR are NaN
    assert res["flows"]["cfe"][0] == res["flows"]["cf"][0]
    assert math.isnan(c["equity_irr"]) and math.isnan(c["min_dscr"])
    # a one-cluster portfolio has the cluster's outputs
    for k in OUTPUT_NAMES:
        x, y = c[k], res["portfolio"][k]
        assert (math.isnan(x) and math.isnan(y)) or x == approx(y), k


@pytest.mark.parametrize("T", [12, 60, 72])
def test_constant_revenue_with_tax_depreciation_and_book_value(T):
    # tax 25 %, straight line over 6 years (72 months >= T); no resale, so the sale
    # books a loss of the remaining book value, which relieves tax at T.
    tau, L, K, p0, r = 0.25, 6.0, 36000.0, 3.0, 0.12
    R = H * p0
    res = evaluate([plain(on_demand_price=p0, capex_per_gpu=K, tax_rate=tau, useful_life_years=L)], T, r)
    dep = K / (12.0 * L)
    book_T = K - dep * T
    cf = res["flows"]["cf"][0]
    assert cf[1] == approx(R * (1 - tau) + tau * dep)
    assert cf[T] == approx(R * (1 - tau) + tau * dep + tau * book_T)
    v = (1.0 + r) ** (-1.0 / 12.0)
    expected = -K + (R * (1 - tau) + tau * dep) * annuity_factor(1 / v - 1, T) + tau * book_T * v**T
    assert res["clusters"][0]["npv"] == approx(expected, rel=1e-11)


def test_depreciation_stops_after_useful_life_and_resale_tax():
    # L = 1 year, T = 24: dep only in months 1..12; book value 0 at T; resale taxed in full.
    K, tau, d_r, T = 1200.0, 0.3, 0.5, 24
    mo = cluster_monthly(plain(capex_per_gpu=K, tax_rate=tau, useful_life_years=1.0, resale_decline=d_r), T)
    assert mo["dep"][1:13] == [approx(100.0)] * 12
    assert mo["dep"][13:] == [0.0] * 12
    assert mo["book_T"] == approx(0.0)
    resale = K * (1 - d_r) ** 2
    assert mo["resale"] == approx(resale)
    R = H * 1.0
    assert mo["cf"][T] == approx(R * (1 - tau) + resale * (1 - tau))


def test_fractional_useful_life_last_partial_month_gets_nothing():
    # 12 L = 18.5: months 1..18 get Capex/18.5, month 19 nothing, book keeps the rest.
    K, T = 1850.0, 30
    mo = cluster_monthly(plain(capex_per_gpu=K, useful_life_years=18.5 / 12.0), T)
    assert mo["dep"][18] == approx(100.0)
    assert mo["dep"][19] == 0.0
    assert mo["book_T"] == approx(50.0)


def test_energy_is_geometric_series():
    N, P, pue, E, gE, phi, T = 8.0, 1.3, 1.25, 0.07, 0.06, 0.3, 36
    p = plain(gpus=N, kw_per_gpu=P, pue=pue, energy_price=E, energy_escalation=gE, idle_power_fraction=phi,
              utilization_training=0.6, utilization_inference=0.6)
    c = evaluate([p], T, 0.1)["clusters"][0]
    busy = 0.6
    q = (1.0 + gE) ** (1.0 / 12.0)
    base = N * P * pue * H * E * (phi + (1 - phi) * busy)
    assert c["energy_cost"] == approx(base * q * (q**T - 1.0) / (q - 1.0))
    assert c["revenue"] == approx(N * H * 0.6 * T)


def test_opex_and_staff_paid_before_go_live():
    N, K, m_r, sw, P, c_k, S, gO, T = 4.0, 30000.0, 0.03, 15.0, 1.3, 120.0, 240000.0, 0.05, 24
    D = 10.0  # live from month 11 on
    p = plain(gpus=N, capex_per_gpu=K, maintenance_rate=m_r, software_per_gpu_month=sw, kw_per_gpu=P,
              colocation_per_kw_month=c_k, staff_cost_per_year=S, opex_escalation=gO, delivery_months=D)
    mo = cluster_monthly(p, T)
    for t in range(1, T + 1):
        e = (1 + gO) ** (t / 12)
        live = 1.0 if t > D else 0.0
        assert mo["opex"][t] == approx(e * (live * (m_r * N * K / 12 + N * sw + N * P * c_k) + S / 12))
        assert mo["revenue"][t] == approx(live * N * H)
    # never live: staff is the only flow
    c = evaluate([plain(staff_cost_per_year=S, delivery_months=100.0)], T, 0.1)["clusters"][0]
    assert c["revenue"] == 0.0
    assert c["opex"] == approx(S / 12 * T)
    assert c["ebitda"] == approx(-S / 12 * T)


def test_partial_go_live_month():
    mo = cluster_monthly(plain(delivery_months=2.25), 5)
    assert mo["live"] == [0.0, 0.0, 0.0, 0.75, 1.0, 1.0]
    assert mo["revenue"][3] == approx(0.75 * H)


# ---------------------------------------------------------------------------
# market, contracts, obsolescence: hand formulas month by month
# ---------------------------------------------------------------------------


def test_reserved_cycles_renewal_price_and_client_loss():
    p0, pR, d, M, rho, delta, k, tL, D = 2.0, 1.8, 0.2, 12.0, 0.5, 0.1, 0.4, 30.0, 0.5
    u = 0.75
    p = plain(on_demand_price=p0, reserved_price=pR, price_decline=d, reserved_term_months=M,
              renewal_rate=rho, renewal_discount=delta, top_client_share=k, client_loss_month=tL,
              delivery_months=D, reserved_share=0.6, reserved_utilization=1.0,
              utilization_training=u, utilization_inference=u)
    mo = cluster_monthly(p, 40)

    def m(t):
        return p0 * (1 - d) ** (t / 12)

    # cycle 0: t - 1 - D < 12 -> t <= 13; cycle 1: t = 14..25 locked at m(13.5); cycle 2 at m(25.5)
    cases = {
        1: (0.5, 0.6, pR),
        13: (1.0, 0.6, pR),
        14: (1.0, 0.3, m(13.5) * (1 - delta)),
        25: (1.0, 0.3, m(13.5) * (1 - delta)),
        26: (1.0, 0.15, m(25.5) * (1 - delta)),
        29: (1.0, 0.15, m(25.5) * (1 - delta)),
        30: (1.0, 0.15 * (1 - k), m(25.5) * (1 - delta)),
        38: (1.0, 0.075 * (1 - k), m(37.5) * (1 - delta)),
    }
    for t, (live, res, pr) in cases.items():
        expected = live * H * (res * pr + (1 - res) * u * m(t))
        assert mo["revenue"][t] == approx(expected), t


def test_next_generation_ramp_and_priority_premium():
    p0, d, t_ng, R, s_p, s_u, s_r, q, pi = 3.0, 0.1, 10.0, 4.0, 0.3, 0.2, 0.5, 0.4, 0.25
    uT, uI, w = 0.9, 0.5, 0.25
    T = 12
    p = plain(on_demand_price=p0, price_decline=d, next_gen_month=t_ng, next_gen_ramp_months=R,
              next_gen_price_drop=s_p, next_gen_utilization_drop=s_u, next_gen_resale_drop=s_r,
              priority_share=q, priority_premium=pi, utilization_training=uT,
              utilization_inference=uI, inference_share=w, resale_decline=0.2)
    mo = cluster_monthly(p, T)
    for t in (1, 10, 11, 12):
        g = min(max((t - t_ng) / R, 0.0), 1.0)
        m = p0 * (1 - d) ** (t / 12) * (1 - s_p * g)
        u = (1 - w) * uT + w * uI - s_u * g
        assert mo["revenue"][t] == approx(H * u * m * (1 + q * pi)), t
    assert mo["resale"] == approx(1000.0 * 0.8 * (1 - s_r * 0.5))


def test_utilization_clipped_at_zero():
    p = plain(utilization_training=0.02, utilization_inference=0.02, next_gen_month=0.0,
              next_gen_utilization_drop=0.5)
    mo = cluster_monthly(p, 3)
    assert mo["revenue"][1:] == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------
# (b) debt: level payment, principal, balances, equity flows
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("i", [0.0, 0.05, 0.10, 0.24])
@pytest.mark.parametrize("Md", [1, 12, 48])
def test_debt_schedule_annuity(i, Md):
    debt = 1.0e6
    s = debt_schedule(debt, i, float(Md), Md + 5)
    j = i / 12
    expected_A = debt / Md if i == 0 else -npf.pmt(j, Md, debt)
    assert s["A"] == approx(expected_A)
    principal = sum(s["A"] - s["I"][t] for t in range(1, Md + 1))
    assert principal == approx(debt, abs=1e-6)
    assert s["B"][0] == approx(debt)
    for t in range(1, Md + 1):
        # balance recursion B_t = B_{t-1}(1+j) - A
        assert s["B"][t] == approx(s["B"][t - 1] * (1 + j) - s["A"], abs=1e-6)
    assert all(b == 0.0 for b in s["B"][Md:])
    assert all(x == 0.0 for x in s["I"][Md + 1:])
    # the lender's PV at the loan rate is zero
    pv = -debt + sum(s["A"] * (1 + j) ** (-t) for t in range(1, Md + 1))
    assert pv == approx(0.0, abs=1e-6)


@pytest.mark.parametrize("Md,T", [(24, 36), (36, 36), (48, 36)])
def test_equity_flows_loan_has_zero_pv_at_loan_rate(Md, T):
    i, theta, K = 0.09, 0.6, 50000.0
    j = i / 12
    p = plain(capex_per_gpu=K, on_demand_price=3.0, debt_fraction=theta, interest_rate=i,
              debt_term_months=float(Md))
    res = evaluate([p], T, 0.1)
    cf, cfe = res["flows"]["cf"][0], res["flows"]["cfe"][0]
    debt = theta * K
    loan = [cfe[t] - cf[t] for t in range(T + 1)]  # tau = 0: pure debt service
    A = -npf.pmt(j, Md, debt)
    assert loan[0] == approx(debt)
    for t in range(1, T):
        assert loan[t] == approx(-A if t <= Md else 0.0)
    if Md <= T:
        assert loan[T] == approx(-A if T <= Md else 0.0)
    else:
        balloon = debt * ((1 + j) ** Md - (1 + j) ** T) / ((1 + j) ** Md - 1)
        assert loan[T] == approx(-A - balloon)
    pv = sum(x * (1 + j) ** (-t) for t, x in enumerate(loan))
    assert pv == approx(0.0, abs=1e-6)
    # the equity IRR is a root of the equity flows
    ie = (1 + res["clusters"][0]["equity_irr"]) ** (1 / 12) - 1
    assert sum(x * (1 + ie) ** (-t) for t, x in enumerate(cfe)) == approx(0.0, abs=1e-6)


def test_equity_flows_interest_tax_shield():
    i, theta, K, tau, Md, T = 0.12, 0.5, 24000.0, 0.3, 12, 24
    p = plain(capex_per_gpu=K, debt_fraction=theta, interest_rate=i, debt_term_months=float(Md), tax_rate=tau)
    res = evaluate([p], T, 0.1)
    cf, cfe = res["flows"]["cf"][0], res["flows"]["cfe"][0]
    s = debt_schedule(theta * K, i, float(Md), T)
    j = i / 12
    B = theta * K
    for t in range(1, T + 1):
        interest = j * B if t <= Md else 0.0
        pay = s["A"] if t <= Md else 0.0
        assert cfe[t] == approx(cf[t] - pay + tau * interest)
        if t <= Md:
            B = B * (1 + j) - pay
    assert cfe[0] == approx(-K + theta * K)


def test_equity_irr_hand_case():
    # T = 1, Md = 1, i = 0: flows CF = [-1000, 1100], CFE = [-500, 600]
    p = plain(on_demand_price=1100.0 / H, debt_fraction=0.5, interest_rate=0.0, debt_term_months=1.0)
    c = evaluate([p], 1, 0.0)["clusters"][0]
    assert c["irr"] == approx(1.1**12 - 1)
    assert c["equity_irr"] == approx(1.2**12 - 1)


# ---------------------------------------------------------------------------
# (c) IRR
# ---------------------------------------------------------------------------


def test_irr_one_month():
    p = plain(on_demand_price=1100.0 / H)
    c = evaluate([p], 1, 0.1)["clusters"][0]
    assert c["irr"] == approx(1.1**12 - 1)


def test_irr_two_months_quadratic():
    a, K = 600.0, 1000.0
    c = evaluate([plain(on_demand_price=a / H, capex_per_gpu=K)], 2, 0.1)["clusters"][0]
    # a x^2 + a x - K = 0, x = 1/(1+i)
    x = (-a + math.sqrt(a * a + 4 * a * K)) / (2 * a)
    i = 1 / x - 1
    assert c["irr"] == approx((1 + i) ** 12 - 1, rel=1e-10)


def test_npv_at_irr_is_zero():
    T = 36
    p = plain(on_demand_price=0.05, capex_per_gpu=1000.0)
    c = evaluate([p], T, 0.1)["clusters"][0]
    r = c["irr"]
    c2 = evaluate([p], T, r)["clusters"][0]
    assert c2["npv"] == approx(0.0, abs=1e-8)
    assert r == approx(evaluate([p], T, 0.0)["clusters"][0]["irr"])


def test_irr_helper_rules():
    # two roots, 10 % and 20 % a month: numpy_financial 1.0 takes the one closest to 0
    assert irr_monthly_to_annual([-100.0, 230.0, -132.0]) == approx(1.1**12 - 1)
    # -100 + 74 (1+i)^-3 = 0  ->  (1+i)^3 = 0.74  ->  annual (1+i)^12 - 1 = 0.74^4 - 1
    assert irr_monthly_to_annual([-100.0, 0.0, 0.0, 74.0]) == approx(0.74**4 - 1)
    assert math.isnan(irr_monthly_to_annual([1.0, 1.0, 1.0]))
    assert math.isnan(irr_monthly_to_annual([-1.0, math.inf, 1.0]))
    assert math.isnan(irr_monthly_to_annual([-1.0, math.nan, 1.0]))
    assert math.isnan(irr_monthly_to_annual([0.0, 0.0]))


# ---------------------------------------------------------------------------
# (d) payback
# ---------------------------------------------------------------------------


def test_payback_interpolation_hand_cases():
    assert payback_months([-1000.0, 400.0, 400.0, 400.0]) == 2.5
    assert payback_months([-1000.0, 0.0, 200.0, 400.0, 400.0, 400.0]) == 4.0  # reaches 0 exactly
    assert payback_months([-1000.0, 100.0, 100.0]) == math.inf
    assert payback_months([0.0, -5.0, 10.0]) == 0.0
    assert payback_months([-10.0, 40.0]) == 0.25


def test_payback_from_model():
    c = evaluate([plain(on_demand_price=400.0 / H)], 3, 0.1)["clusters"][0]
    assert c["payback_months"] == approx(2.5)
    # half-live month 2: CF = [-1000, 0, 200, 400, 400, 400]
    c = evaluate([plain(on_demand_price=400.0 / H, delivery_months=1.5)], 5, 0.1)["clusters"][0]
    assert c["payback_months"] == approx(4.0)
    c = evaluate([plain(on_demand_price=1.0 / H)], 5, 0.1)["clusters"][0]
    assert c["payback_months"] == math.inf
    c = evaluate([plain(capex_per_gpu=0.0)], 5, 0.1)["clusters"][0]
    assert c["payback_months"] == 0.0
    assert math.isnan(c["roi"])  # Capex = 0


# ---------------------------------------------------------------------------
# (e) shocks
# ---------------------------------------------------------------------------


def test_apply_shock_clipping_and_named_shocks():
    p = default_cluster()
    q = apply_shock(p, "utilization", "ignored", 0.25)
    assert q["utilization_training"] == approx(0.95)
    assert q["utilization_inference"] == 1.0  # 0.80 + 0.25 clipped
    assert p["utilization_inference"] == 0.80  # input untouched
    q = apply_shock(p, "utilization", "scale", -0.9)  # op ignored: a shift
    assert q["utilization_training"] == 0.0 and q["utilization_inference"] == 0.0
    assert apply_shock(p, "price", "shift", 0.5)["on_demand_price"] == approx(1.1)
    assert apply_shock(p, "price", "set", -1.0)["on_demand_price"] == 0.0
    assert apply_shock(p, "energy", "shift", 3.0)["energy_price"] == approx(0.24)
    assert apply_shock(p, "obsolescence", "scale", -6.0)["next_gen_month"] == 18.0
    assert apply_shock(p, "obsolescence", "set", -100.0)["next_gen_month"] == -76.0  # unclipped


def test_apply_shock_param_ops():
    p = default_cluster()
    assert apply_shock(p, "debt_term_months", "set", 2.5)["debt_term_months"] == 3.0
    assert apply_shock(p, "debt_term_months", "set", 2.49)["debt_term_months"] == 2.0
    assert apply_shock(p, "debt_term_months", "set", 0.2)["debt_term_months"] == 1.0
    assert apply_shock(p, "debt_term_months", "scale", 0.5)["debt_term_months"] == 24.0
    assert apply_shock(p, "debt_term_months", "shift", 0.5)["debt_term_months"] == 49.0
    assert apply_shock(p, "client_loss_month", "shift", -10.0)["client_loss_month"] == math.inf
    assert apply_shock(p, "client_loss_month", "scale", 0.5)["client_loss_month"] == math.inf
    assert apply_shock(p, "client_loss_month", "set", 12.0)["client_loss_month"] == 12.0
    assert apply_shock(p, "client_loss_month", "set", -5.0)["client_loss_month"] == -5.0
    assert apply_shock(p, "pue", "scale", 0.5)["pue"] == 1.0
    assert apply_shock(p, "price_decline", "shift", -2.0)["price_decline"] == -1.0
    assert apply_shock(p, "price_decline", "shift", 2.0)["price_decline"] == 1.0
    assert apply_shock(p, "energy_escalation", "set", -3.0)["energy_escalation"] == -1.0
    assert apply_shock(p, "useful_life_years", "set", 0.0)["useful_life_years"] == 1.0 / 12.0
    assert apply_shock(p, "tax_rate", "scale", 10.0)["tax_rate"] == 1.0
    assert apply_shock(p, "gpus", "shift", -5000.0)["gpus"] == 0.0
    assert apply_shock(p, "interest_rate", "shift", -1.0)["interest_rate"] == 0.0
    assert apply_shock(p, "staff_cost_per_year", "set", 1e6)["staff_cost_per_year"] == 1e6
    with pytest.raises(KeyError):
        apply_shock(p, "no_such_param", "set", 1.0)
    with pytest.raises(ValueError):
        apply_shock(p, "pue", "multiply", 1.0)


def test_price_shock_moves_renewals_not_signed_contract():
    T = 60
    p = default_cluster(delivery_months=0.0, reserved_term_months=12.0)
    base = cluster_monthly(p, T)
    lo = cluster_monthly(apply_shock(p, "price", "scale", 0.5), T)
    # first cycle (t <= 12): reserved part unchanged, on-demand part halved
    r0, u = p["reserved_share"], 0.75
    for t in (1, 12, 13, 40):
        fixed = base["revenue"][t] - lo["revenue"][t]
        if t <= 12:
            # the difference is exactly half of the on-demand revenue
            m = 2.2 * 0.8 ** (t / 12) * (1 - 0.3 * min(max((t - 24) / 6, 0), 1))
            uu = u - 0.05 * min(max((t - 24) / 6, 0), 1)
            assert fixed == approx(0.5 * 1024 * H * (1 - r0) * uu * m), t
        else:
            # renewals scale too: the whole revenue halves
            assert lo["revenue"][t] == approx(0.5 * base["revenue"][t]), t


# ---------------------------------------------------------------------------
# (f) portfolio = sum of clusters
# ---------------------------------------------------------------------------


def test_portfolio_is_sum_of_clusters():
    T, r = 60, 0.12
    a = default_cluster(debt_fraction=0.5, debt_term_months=36.0, top_client_share=0.3, client_loss_month=20.0)
    b = default_cluster(gpus=512.0, capex_per_gpu=36000.0, on_demand_price=2.8, reserved_price=2.5, pue=1.1,
                        energy_price=0.04, delivery_months=4.5)
    res = evaluate([a, b], T, r)
    pa, pb = res["clusters"]
    port = res["portfolio"]
    cf = [x + y for x, y in zip(res["flows"]["cf"][0], res["flows"]["cf"][1])]
    cfe = [x + y for x, y in zip(res["flows"]["cfe"][0], res["flows"]["cfe"][1])]
    assert port["npv"] == approx(pa["npv"] + pb["npv"], rel=1e-11)
    assert port["npv"] == approx(npv(cf, r), rel=1e-11)
    capex = a["gpus"] * a["capex_per_gpu"] + b["gpus"] * b["capex_per_gpu"]
    assert port["roi"] == approx(sum(cf) / capex)
    assert port["irr"] == approx(irr_monthly_to_annual(cf), rel=1e-9)
    assert port["equity_irr"] == approx(irr_monthly_to_annual(cfe), rel=1e-9)
    assert port["payback_months"] == approx(payback_months(cf))
    for k in ("revenue", "energy_cost", "opex", "ebitda"):
        assert port[k] == approx(pa[k] + pb[k])
    assert math.isnan(pb["equity_irr"]) and not math.isnan(pa["equity_irr"])
    # each cluster evaluated alone gives the same cluster outputs
    alone = evaluate([b], T, r)
    assert alone["clusters"][0]["npv"] == pb["npv"]
    assert alone["flows"]["cf"][0] == res["flows"]["cf"][1]


def test_portfolio_of_identical_clusters_scales():
    T, r = 48, 0.1
    a = default_cluster(debt_fraction=0.4, debt_term_months=30.0)
    one = evaluate([a], T, r)["portfolio"]
    two = evaluate([a, a], T, r)["portfolio"]
    for k in ("npv", "revenue", "energy_cost", "opex", "ebitda"):
        assert two[k] == approx(2 * one[k])
    for k in ("roi", "irr", "equity_irr", "payback_months", "min_dscr"):
        assert two[k] == approx(one[k], rel=1e-9)


def test_empty_portfolio_is_nan_or_zero():
    port = evaluate([], 12, 0.1)["portfolio"]
    assert port["npv"] == 0.0 and port["revenue"] == 0.0
    assert math.isnan(port["roi"]) and math.isnan(port["irr"]) and math.isnan(port["min_dscr"])


# ---------------------------------------------------------------------------
# (g) DSCR
# ---------------------------------------------------------------------------


def test_min_dscr_hand_case():
    # revenue falls 20 %/yr, live from t = 4 (t = 3 half live and excluded), Md = 12, tau = 0.25
    K, p0, d, tau, L, theta, i, Md, T = 12000.0, 2.0, 0.2, 0.25, 5.0, 0.5, 0.06, 12, 24
    p = plain(capex_per_gpu=K, on_demand_price=p0, price_decline=d, tax_rate=tau, useful_life_years=L,
              debt_fraction=theta, interest_rate=i, debt_term_months=float(Md), delivery_months=2.5)
    c = evaluate([p], T, 0.1)["clusters"][0]
    dep = K / (12 * L)
    A = -npf.pmt(i / 12, Md, theta * K)
    # lowest fully live month within the term is t = 12
    nopat_12 = (1 - tau) * H * p0 * (1 - d) ** (12 / 12) + tau * dep
    assert c["min_dscr"] == approx(nopat_12 / A)
    # t = 3 would have been lower (live 0.5): check it was excluded
    nopat_3 = (1 - tau) * 0.5 * H * p0 * (1 - d) ** (3 / 12) + tau * dep
    assert nopat_3 / A < c["min_dscr"]
    # a portfolio of this one cluster has the same min DSCR
    assert evaluate([p], T, 0.1)["portfolio"]["min_dscr"] == approx(c["min_dscr"])


def test_min_dscr_nan_cases():
    # no debt
    c = evaluate([plain()], 12, 0.1)
    assert math.isnan(c["clusters"][0]["min_dscr"]) and math.isnan(c["portfolio"]["min_dscr"])
    # debt, but never fully live within the term (D = 20 > Md = 12)
    p = plain(debt_fraction=0.5, debt_term_months=12.0, delivery_months=20.0)
    c = evaluate([p], 36, 0.1)
    assert math.isnan(c["clusters"][0]["min_dscr"]) and math.isnan(c["portfolio"]["min_dscr"])
    # horizon ends before go-live
    p = plain(debt_fraction=0.5, debt_term_months=12.0, delivery_months=5.0)
    c = evaluate([p], 5, 0.1)
    assert math.isnan(c["clusters"][0]["min_dscr"])


def test_portfolio_min_dscr_window_and_sums():
    T, tau = 24, 0.2
    # debtor A: live from t = 4, term 12, revenue falling
    a = plain(capex_per_gpu=10000.0, on_demand_price=2.0, price_decline=0.3, tax_rate=tau,
              debt_fraction=0.6, interest_rate=0.08, debt_term_months=12.0, delivery_months=2.5)
    # no debt, constant revenue, live from t = 1: counts in the numerator only
    b = plain(capex_per_gpu=5000.0, on_demand_price=1.0, tax_rate=tau)
    # debtor C: live from t = 1, term 6
    c = plain(capex_per_gpu=8000.0, on_demand_price=0.5, tax_rate=tau,
              debt_fraction=0.5, interest_rate=0.0, debt_term_months=6.0)
    dep = {"a": 10000.0 / 72, "b": 5000.0 / 72, "c": 8000.0 / 72}

    def nopat(x, rev):
        return (1 - tau) * rev + tau * dep[x]

    A_a = -npf.pmt(0.08 / 12, 12, 6000.0)
    A_c = 4000.0 / 6

    # A and B: window t = 4..12, minimum at t = 12
    res = evaluate([a, b], T, 0.1)
    num = nopat("a", H * 2.0 * 0.7 ** (12 / 12)) + nopat("b", H * 1.0)
    assert res["portfolio"]["min_dscr"] == approx(num / A_a)

    # A, B and C: window t = 4..6, minimum at t = 6; denominator sums both payments
    res = evaluate([a, b, c], T, 0.1)
    num = nopat("a", H * 2.0 * 0.7 ** (6 / 12)) + nopat("b", H) + nopat("c", 0.5 * H)
    assert res["portfolio"]["min_dscr"] == approx(num / (A_a + A_c))
    assert res["clusters"][2]["min_dscr"] == approx(nopat("c", 0.5 * H) / A_c)

    # window empty: C's term ends before A goes live
    a_late = dict(a, delivery_months=7.0)
    res = evaluate([a_late, c], T, 0.1)
    assert math.isnan(res["portfolio"]["min_dscr"])
    assert not math.isnan(res["clusters"][0]["min_dscr"])


def test_default_cluster_sanity():
    res = evaluate([default_cluster()], 60, 0.10)
    c = res["clusters"][0]
    for k in ("npv", "roi", "irr", "revenue", "energy_cost", "opex", "ebitda"):
        assert math.isfinite(c[k])
    assert c["revenue"] > c["ebitda"] > 0
    assert math.isnan(c["equity_irr"]) and math.isnan(c["min_dscr"])


# ---------------------------------------------------------------------------
# (h) Monte Carlo path factors (MODEL.md, "Stochastic paths")
# ---------------------------------------------------------------------------

import random  # noqa: E402


def random_cluster(rng):
    """A cluster with every feature switched on at random values inside the ranges
    of MODEL.md: delivery, next generation, reserved cycles, client loss, priority,
    opex, tax, resale and (half of the time) debt."""
    return default_cluster(
        gpus=float(rng.randint(1, 2048)),
        capex_per_gpu=rng.uniform(5000.0, 40000.0),
        capex_fixed=rng.uniform(0.0, 1e6),
        delivery_months=rng.choice([0.0, 1.0, 2.5, rng.uniform(0.0, 8.0)]),
        kw_per_gpu=rng.uniform(0.5, 2.0),
        idle_power_fraction=rng.uniform(0.0, 0.5),
        pue=rng.uniform(1.0, 1.6),
        energy_price=rng.uniform(0.02, 0.2),
        energy_escalation=rng.uniform(-0.05, 0.1),
        on_demand_price=rng.uniform(0.5, 4.0),
        price_decline=rng.uniform(-0.1, 0.4),
        next_gen_month=rng.uniform(-5.0, 70.0),
        next_gen_ramp_months=rng.uniform(1.0, 12.0),
        next_gen_price_drop=rng.uniform(0.0, 0.5),
        next_gen_utilization_drop=rng.uniform(0.0, 0.3),
        next_gen_resale_drop=rng.uniform(0.0, 0.5),
        reserved_share=rng.uniform(0.0, 1.0),
        reserved_price=rng.uniform(0.5, 4.0),
        reserved_term_months=rng.choice([6.0, 12.0, 17.5, 36.0]),
        renewal_rate=rng.uniform(0.0, 1.0),
        renewal_discount=rng.uniform(0.0, 0.3),
        reserved_utilization=rng.uniform(0.5, 1.0),
        top_client_share=rng.uniform(0.0, 0.6),
        client_loss_month=rng.choice([math.inf, rng.uniform(0.0, 60.0)]),
        utilization_training=rng.uniform(0.0, 1.0),
        utilization_inference=rng.uniform(0.0, 1.0),
        inference_share=rng.uniform(0.0, 1.0),
        priority_share=rng.uniform(0.0, 0.5),
        priority_premium=rng.uniform(0.0, 0.5),
        opex_escalation=rng.uniform(0.0, 0.06),
        staff_cost_per_year=rng.uniform(0.0, 5e5),
        colocation_per_kw_month=rng.uniform(0.0, 150.0),
        useful_life_years=rng.uniform(2.0, 7.0),
        tax_rate=rng.uniform(0.0, 0.35),
        resale_decline=rng.uniform(-0.1, 0.5),
        debt_fraction=rng.choice([0.0, rng.uniform(0.1, 0.8)]),
        interest_rate=rng.uniform(0.0, 0.15),
        debt_term_months=float(rng.randint(6, 84)),
    )


def _same(x, y):
    return (math.isnan(x) and math.isnan(y)) or x == y


def assert_outputs_identical(a, b):
    for k in OUTPUT_NAMES:
        assert _same(a["portfolio"][k], b["portfolio"][k]), k
        for ca, cb in zip(a["clusters"], b["clusters"]):
            assert _same(ca[k], cb[k]), k
    assert a["flows"] == b["flows"]


@pytest.mark.parametrize("seed", range(6))
def test_identity_factors_reproduce_deterministic_exactly(seed):
    rng = random.Random(seed)
    T = rng.choice([1, 13, 60, 97])
    clusters = [random_cluster(rng) for _ in range(3)]
    base = evaluate(clusters, T, 0.1)
    ident = {"price": [1.0] * T, "util": [0.0] * T, "energy": [1.0] * T}
    assert_outputs_identical(evaluate(clusters, T, 0.1, factors=[ident] * 3), base)
    # None entries and partial dicts mean "no factor" too
    assert_outputs_identical(evaluate(clusters, T, 0.1, factors=[None, {}, {"price": [1.0] * T}]), base)
    for c in clusters:
        mo = cluster_monthly(c, T)
        mf = cluster_monthly(c, T, price_factor=ident["price"], util_shift=ident["util"],
                             energy_factor=ident["energy"])
        assert mf == mo


@pytest.mark.parametrize("c", [0.3, 1.0, 1.7])
def test_constant_price_factor_scales_on_demand_revenue(c):
    # reserved_share = 0: all revenue is on demand, so it scales by exactly c;
    # energy and opex do not depend on the price.
    rng = random.Random(11)
    T = 60
    p = dict(random_cluster(rng), reserved_share=0.0)
    base = cluster_monthly(p, T)
    mo = cluster_monthly(p, T, price_factor=[c] * T)
    for t in range(1, T + 1):
        assert mo["revenue"][t] == approx(c * base["revenue"][t]), t
        assert mo["energy_cost"][t] == base["energy_cost"][t]
        assert mo["opex"][t] == base["opex"][t]
    assert mo["resale"] == base["resale"]
    # closed form on the plain cluster: constant revenue H p0 c per month
    p0 = 2.5
    pl = evaluate([plain(on_demand_price=p0)], T, 0.1, factors=[{"price": [c] * T}])["clusters"][0]
    assert pl["revenue"] == approx(H * p0 * c * T)


def test_time_varying_price_factor_month_by_month():
    # each month's on-demand revenue carries its own P_t (element t-1 is month t)
    rng = random.Random(5)
    T = 36
    p = dict(random_cluster(rng), reserved_share=0.0)
    P = [rng.uniform(0.2, 3.0) for _ in range(T)]
    base = cluster_monthly(p, T)
    mo = cluster_monthly(p, T, price_factor=P)
    for t in range(1, T + 1):
        assert mo["revenue"][t] == approx(P[t - 1] * base["revenue"][t]), t


@pytest.mark.parametrize("c", [0.5, 1.0, 2.3])
def test_energy_factor_scales_energy_cost(c):
    rng = random.Random(7)
    T = 48
    p = random_cluster(rng)
    base = evaluate([p], T, 0.1)["clusters"][0]
    res = evaluate([p], T, 0.1, factors=[{"energy": [c] * T}])["clusters"][0]
    assert res["energy_cost"] == approx(c * base["energy_cost"])
    assert res["revenue"] == base["revenue"] and res["opex"] == base["opex"]
    assert res["ebitda"] == approx(base["ebitda"] - (c - 1.0) * base["energy_cost"], rel=1e-10)
    # month by month with a varying series, closed form on a flat energy price
    X = [1.0 + 0.1 * t for t in range(T)]
    N, P, pue, E, phi = 4.0, 1.2, 1.4, 0.1, 0.25
    pl = plain(gpus=N, kw_per_gpu=P, pue=pue, energy_price=E, idle_power_fraction=phi)
    mo = cluster_monthly(pl, T, energy_factor=X)
    for t in range(1, T + 1):
        assert mo["energy_cost"][t] == approx(N * P * pue * H * E * X[t - 1]), t  # busy = 1


def test_util_shift_clips_at_one_and_zero():
    rng = random.Random(3)
    T = 40
    p = random_cluster(rng)
    full = dict(p, utilization_training=1.0, utilization_inference=1.0, next_gen_utilization_drop=0.0)
    up = cluster_monthly(p, T, util_shift=[2.0] * T)
    ref = cluster_monthly(full, T)
    for key in ("revenue", "energy_cost"):
        for t in range(1, T + 1):
            assert up[key][t] == approx(ref[key][t]), (key, t)
    # pushed below 0: u = 0, as with both utilizations at 0 and no next-gen drop
    down = cluster_monthly(p, T, util_shift=[-2.0] * T)
    idle = cluster_monthly(dict(p, utilization_training=0.0, utilization_inference=0.0,
                                next_gen_utilization_drop=0.0), T)
    for key in ("revenue", "energy_cost"):
        for t in range(1, T + 1):
            assert down[key][t] == approx(idle[key][t]), (key, t)


def test_util_shift_hand_formula_inside_range():
    uT, uI, w, s_u, t_ng, R = 0.6, 0.8, 0.25, 0.2, 5.0, 4.0
    T = 12
    U = [0.05 * ((-1) ** t) * (t % 4) for t in range(T)]
    p = plain(utilization_training=uT, utilization_inference=uI, inference_share=w,
              next_gen_utilization_drop=s_u, next_gen_month=t_ng, next_gen_ramp_months=R)
    mo = cluster_monthly(p, T, util_shift=U)
    for t in range(1, T + 1):
        g = min(max((t - t_ng) / R, 0.0), 1.0)
        u = min(max((1 - w) * uT + w * uI - s_u * g + U[t - 1], 0.0), 1.0)
        assert mo["revenue"][t] == approx(H * u), t


@pytest.mark.parametrize("D,k_lock", [(0.5, 13), (0.0, 13), (2.0, 15), (3.9, 16)])
def test_renewal_locks_price_factor_at_floor_of_cycle_start(D, k_lock):
    # one renewal inside the horizon: tau = D + 1 + M, M = 12, locked at P[floor(tau)].
    # On-demand utilization 0, so the revenue is the reserved part alone.
    M, pR, p0, d, delta, r0, rho, c = 12.0, 1.9, 2.0, 0.2, 0.1, 0.6, 0.5, 1.7
    T = 24
    p = plain(reserved_share=r0, reserved_price=pR, on_demand_price=p0, price_decline=d,
              reserved_term_months=M, renewal_rate=rho, renewal_discount=delta, delivery_months=D,
              utilization_training=0.0, utilization_inference=0.0)
    tau = D + 1.0 + M
    assert math.floor(tau) == k_lock and tau + M > T  # a single renewal
    P = [1.0] * T
    P[k_lock - 1] = c
    P[k_lock] = 0.25  # the month after floor(tau) must not be used
    base = cluster_monthly(p, T)
    mo = cluster_monthly(p, T, price_factor=P)
    for t in range(1, T + 1):
        n = math.floor(max(t - 1 - D, 0.0) / M)
        live = min(max(t - D, 0.0), 1.0)
        if n == 0:
            # first cycle: the signed price p_R, no factor
            assert mo["revenue"][t] == base["revenue"][t], t
            assert mo["revenue"][t] == approx(live * H * r0 * pR), t
        else:
            assert n == 1
            pr = p0 * (1 - d) ** (tau / 12) * (1 - delta)
            assert base["revenue"][t] == approx(H * r0 * rho * pr), t
            assert mo["revenue"][t] == approx(c * base["revenue"][t]), t


def test_renewal_factor_with_on_demand_and_two_renewals():
    # D = 0.5, M = 12: cycles start at 13.5 and 25.5 -> P_13 and P_25.  Month 13 is still
    # in the first cycle: only its on-demand part moves.
    D, M, pR, p0, d, delta, r0, rho, u = 0.5, 12.0, 1.9, 2.0, 0.2, 0.1, 0.6, 0.5, 0.75
    T = 36
    p = plain(reserved_share=r0, reserved_price=pR, on_demand_price=p0, price_decline=d,
              reserved_term_months=M, renewal_rate=rho, renewal_discount=delta, delivery_months=D,
              utilization_training=u, utilization_inference=u)
    rng = random.Random(2)
    P = [rng.uniform(0.5, 1.5) for _ in range(T)]
    mo = cluster_monthly(p, T, price_factor=P)

    def m(t):
        return p0 * (1 - d) ** (t / 12)

    for t in range(1, T + 1):
        n = math.floor(max(t - 1 - D, 0.0) / M)
        res = r0 * rho**n
        if n == 0:
            pr = pR
        else:
            start = D + 1 + n * M
            pr = m(start) * (1 - delta) * P[math.floor(start) - 1]
        live = min(max(t - D, 0.0), 1.0)
        expected = live * H * (res * pr + (1 - res) * u * m(t) * P[t - 1])
        assert mo["revenue"][t] == approx(expected), t


def test_factors_per_cluster_in_portfolio():
    rng = random.Random(9)
    T = 30
    a, b = random_cluster(rng), random_cluster(rng)
    fa = {"price": [rng.uniform(0.5, 1.5) for _ in range(T)],
          "util": [rng.uniform(-0.2, 0.2) for _ in range(T)],
          "energy": [rng.uniform(0.5, 1.5) for _ in range(T)]}
    res = evaluate([a, b], T, 0.1, factors=[fa, None])
    mo_a = cluster_monthly(a, T, price_factor=fa["price"], util_shift=fa["util"], energy_factor=fa["energy"])
    assert res["flows"]["cf"][0] == mo_a["cf"]
    assert res["flows"]["cfe"][0] == mo_a["cfe"]
    assert res["flows"]["cf"][1] == cluster_monthly(b, T)["cf"]
    alone = evaluate([a], T, 0.1, factors=[fa])
    assert alone["clusters"][0]["npv"] == res["clusters"][0]["npv"]
    assert res["portfolio"]["npv"] == approx(res["clusters"][0]["npv"] + res["clusters"][1]["npv"], rel=1e-11)
    # the factors change the result
    assert res["clusters"][0]["npv"] != evaluate([a], T, 0.1)["clusters"][0]["npv"]


def test_factor_length_and_keys_checked():
    p = plain()
    with pytest.raises(ValueError):
        cluster_monthly(p, 12, price_factor=[1.0] * 11)
    with pytest.raises(ValueError):
        cluster_monthly(p, 12, energy_factor=[1.0] * 13)
    with pytest.raises(ValueError):
        evaluate([p, p], 12, 0.1, factors=[None])
    with pytest.raises(KeyError):
        evaluate([p], 12, 0.1, factors=[{"prices": [1.0] * 12}])


def test_payback_kernel_matches_plain_loop(backend):
    """The kernel's payback (a cumulative sum on numpy and CuPy, a month-by-month
    recurrence under JAX) against the plain loop, on hand cases and random rows."""
    from stresstest.kernels.metrics import payback_months as kernel_payback

    rng = np.random.default_rng(42)
    rows = [[-1000.0, 400.0, 400.0, 400.0, 0.0, 0.0], [-1000.0, 0.0, 200.0, 400.0, 400.0, 400.0],
            [-1000.0, 100.0, 100.0, 0.0, 0.0, 0.0], [0.0, -5.0, 10.0, 0.0, 0.0, 0.0],
            [-10.0, 40.0, -100.0, 0.0, 0.0, 0.0], [5.0, -50.0, 10.0, 60.0, 0.0, 0.0]]
    rand = rng.normal(0.3, 1.0, (200, 6))
    rand[:, 0] = -rng.uniform(0, 3, 200)
    flows = np.concatenate([np.array(rows), rand]).reshape(-1, 2, 6)  # a batch axis as well
    want = np.array([payback_months(list(r)) for r in flows.reshape(-1, 6)]).reshape(flows.shape[:-1])
    got = backend.to_numpy(backend.compile(kernel_payback)(backend.asarray(flows)))
    assert np.isinf(want).any() and (want == 0).any() and (np.isfinite(want) & (want > 0)).any()
    assert np.array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert np.allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12)
