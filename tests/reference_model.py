"""Plain, independent reference implementation of the cash-flow model (MODEL.md,
version 1 and the version 2 additions).

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

Version 2 (MODEL.md, "Version 2 additions" and "clarifications").  A cluster without
any version 2 field gives version 1's numbers bit for bit: its implied contracts
"anchor" and "others" are computed by version 1's single formula (the same flows,
summed), its implied segment "pool" (share 1, multiplier 1) multiplies by 1.0 exactly.
Choices where MODEL.md leaves room:

* form: a cluster's ``contracts`` (``segments``) list, when present, decides its form;
  the version 1 keys it replaces are ignored if also present, and a shock on such a
  key changes nothing for that cluster (as a path to an item a cluster lacks);
* contract and segment dicts are resolved by :func:`contract_defaults` and
  :func:`segment_defaults`; ``industry`` None is unlabelled; an empty contract list is
  an all on-demand cluster, an empty segment list an empty pool (u-bar = 0);
* revenue by industry: a contract's revenue is live N H res_k pr_k; a segment's is
  live N H od sigma_j mu_j u_{j,t} m(t) (1 + q pi); they add up to Revenue_t to
  round-off.  Labels in order of first appearance over the clusters in order, each
  cluster's contracts before its segments, then "unlabelled" (always present), then
  "platform"; an item may not use those two labels (ValueError);
* path shocks on a version 1 cluster's implied items write out that kind of item
  explicitly (:func:`explicit_v2` for one kind); the implied segment is then named
  "pool".  Version 1 key shocks must come first (MODEL.md's order), since afterwards
  the replaced keys no longer count;
* share shocks: each share clipped to [0, 1] by its shock; the shares are balanced once
  per point, after every shock of the point (:func:`balance_shares`: contracts divided
  by their sum when it exceeds 1, segments by theirs when it is above 0), as
  docs/model.md orders it: balancing after each shock would make the numbers depend
  on the order of two axes that move different items.  :func:`evaluate` takes the
  shares as given;
* Monte Carlo: ``util`` may be one series for every segment (version 1's one series),
  a list of series in segment order, or a dict segment name -> series (a segment left
  out has no shift; an unknown name is an error);
* order month: ``order_month`` must be a whole month 0..T (``launch_month`` 1..T),
  else ValueError.  Month t_o holds -Capex (+Debt in the equity flows) and, when the
  programme starts then, its one-off cost; everything else starts after t_o.  The
  loan's schedule runs on the cluster's clock s = t - t_o;
* optimization: a cluster without a programme has a zero one (start never), which
  leaves version 1's flows bit for bit.  ``start_month`` None is the default
  max(ceil(t_o + D), 1) from the evaluated t_o and D; an explicit start before t_o
  moves to t_o.  A scale or shift of a default start acts on the default resolved at
  the time of the shock.  The saving multiplies all of version 1's Opex_t (staff
  included); the energy saving multiplies the energy cost after the Monte Carlo
  factor; cost_per_year escalates with the cluster's opex_escalation on the calendar;
* platform: the take rate applies to the clusters' summed revenue of the month
  (partial go-live included); its CF counts in the portfolio's CF, equity flows, DSCR
  numerator and payback (cumulative from t = 0, so platform flows before the earliest
  t_o count; months counted from the earliest t_o); ROI's denominator is the clusters'
  capex; ``platform_npv`` and ``platform_revenue`` are 0 without a platform;
* whole-month fields under a shock (order_month, start_month, launch_month) are
  clipped, then rounded half up: the bounds are whole months, so this equals
  rounding first, and inf stays inf.  ``utilization_gain``, ``adoption_months`` and
  ``loss_month`` are unclipped.
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

# Version 2's outputs (evaluate()["v2"]), by their names in the result file.
V2_OUTPUT_NAMES: tuple[str, ...] = (
    "revenue_by_industry",
    "cluster_revenue_by_industry",
    "optimization_cost",
    "cluster_optimization_cost",
    "platform_npv",
    "platform_revenue",
)

# ---------------------------------------------------------------------------
# Version 2 items: contracts, segments, optimization programme, platform
# ---------------------------------------------------------------------------

# The version 1 keys that a cluster's ``contracts`` (resp. ``segments``) replace.
RESERVED_KEYS: tuple[str, ...] = (
    "reserved_share",
    "reserved_price",
    "reserved_term_months",
    "renewal_rate",
    "renewal_discount",
    "reserved_utilization",
    "top_client_share",
    "client_loss_month",
)
POOL_KEYS: tuple[str, ...] = ("utilization_training", "utilization_inference", "inference_share")

CONTRACT_DEFAULTS: dict = {
    "term_months": 36.0,
    "renewal_rate": 0.7,
    "renewal_discount": 0.15,
    "utilization": 0.85,
    "loss_month": math.inf,
    "industry": None,
}
SEGMENT_DEFAULTS: dict = {"price_multiplier": 1.0, "utilization_sigma": 0.10, "industry": None}
# start_month None: the default, go-live (see default_start_month)
OPTIMIZATION_DEFAULTS: dict = {
    "cost": 0.0,
    "cost_per_year": 0.0,
    "start_month": None,
    "ramp_months": 6.0,
    "utilization_gain": 0.0,
    "energy_saving": 0.0,
    "opex_saving": 0.0,
}
PLATFORM_DEFAULTS: dict = {
    "build_cost": 0.0,
    "launch_month": 1,
    "run_cost_per_year": 0.0,
    "opex_escalation": 0.03,
    "take_rate": 0.0,
    "users_max": 0.0,
    "adoption_months": 12.0,
    "fee_per_user_month": 0.0,
    "fee_growth": 0.0,
    "margin": 0.7,
    "tax_rate": 0.21,
}

# Monte Carlo utilization volatilities of training and inference demand (v1's sigma_T, sigma_I).
SIGMA_TRAINING = 0.10
SIGMA_INFERENCE = 0.04

# Names of a version 1 cluster's implied items.
ANCHOR, OTHERS, POOL = "anchor", "others", "pool"
UNLABELLED = "unlabelled"
PLATFORM = "platform"  # the platform layer's revenue in revenue_by_industry


def _filled(what: str, item: dict, required: tuple[str, ...], defaults: dict) -> dict:
    missing = [key for key in required if key not in item]
    unknown = set(item) - set(required) - set(defaults)
    if missing or unknown:
        raise KeyError(f"{what} {item.get('name')!r}: missing {missing}, unknown {sorted(unknown)}")
    return {**defaults, **item}


def contract_defaults(contract: dict) -> dict:
    """A contract with MODEL.md's defaults filled in; name, share and price are required."""
    return _filled("contract", contract, ("name", "share", "price"), CONTRACT_DEFAULTS)


def segment_defaults(segment: dict) -> dict:
    """A segment with MODEL.md's defaults filled in; name, share and utilization are required."""
    return _filled("segment", segment, ("name", "share", "utilization"), SEGMENT_DEFAULTS)


def optimization_defaults(opt: dict) -> dict:
    """An optimization programme with MODEL.md's defaults filled in."""
    return _filled("optimization", opt, (), OPTIMIZATION_DEFAULTS)


def platform_defaults(platform: dict) -> dict:
    """The platform layer with MODEL.md's defaults filled in."""
    return _filled("platform", platform, (), PLATFORM_DEFAULTS)


def implied_contracts(p: dict) -> list[dict]:
    """A version 1 cluster's reserved book as MODEL.md's two implied contracts: "anchor"
    (the largest client, share r0 k, lost at t_L) and "others" (share r0 (1 - k), never
    lost), both at p_R with v1's term, renewal and utilization."""
    r0 = float(p["reserved_share"])
    k = float(p["top_client_share"])
    common = {
        "price": float(p["reserved_price"]),
        "term_months": float(p["reserved_term_months"]),
        "renewal_rate": float(p["renewal_rate"]),
        "renewal_discount": float(p["renewal_discount"]),
        "utilization": float(p["reserved_utilization"]),
        "industry": None,
    }
    return [
        {"name": ANCHOR, "share": r0 * k, "loss_month": float(p["client_loss_month"]), **common},
        {"name": OTHERS, "share": r0 * (1.0 - k), "loss_month": math.inf, **common},
    ]


def implied_segment(p: dict) -> dict:
    """A version 1 cluster's on-demand pool as MODEL.md's one implied segment: the
    blended utilization (1-w) u_T + w u_I, multiplier 1, blended Monte Carlo sigma."""
    w = float(p["inference_share"])
    return {
        "name": POOL,
        "share": 1.0,
        "utilization": (1.0 - w) * float(p["utilization_training"]) + w * float(p["utilization_inference"]),
        "price_multiplier": 1.0,
        "utilization_sigma": (1.0 - w) * SIGMA_TRAINING + w * SIGMA_INFERENCE,
        "industry": None,
    }


def _with_explicit_contracts(p: dict) -> dict:
    out = {k: v for k, v in p.items() if k not in RESERVED_KEYS}
    out["contracts"] = implied_contracts(p)
    return out


def _with_explicit_segment(p: dict) -> dict:
    out = {k: v for k, v in p.items() if k not in POOL_KEYS}
    out["segments"] = [implied_segment(p)]
    return out


def explicit_v2(p: dict) -> dict:
    """The cluster rewritten with explicit ``contracts`` and ``segments`` in place of
    the version 1 keys they replace: the same flows, to round-off.  Lists the cluster
    already has are kept."""
    out = dict(p)
    if out.get("contracts") is None:
        out = _with_explicit_contracts(out)
    if out.get("segments") is None:
        out = _with_explicit_segment(out)
    return out


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

# Ranges of the items' numeric fields (MODEL.md, "Addressing the new fields").
CONTRACT_RANGES: dict[str, tuple[float, float] | None] = {
    "share": (0.0, 1.0),
    "price": (0.0, _INF),
    "term_months": (1.0, _INF),
    "renewal_rate": (0.0, 1.0),
    "renewal_discount": (0.0, 1.0),
    "utilization": (0.0, 1.0),
    "loss_month": None,
}
SEGMENT_RANGES: dict[str, tuple[float, float] | None] = {
    "share": (0.0, 1.0),
    "utilization": (0.0, 1.0),
    "price_multiplier": (0.0, _INF),
    "utilization_sigma": (0.0, _INF),
}
OPTIMIZATION_RANGES: dict[str, tuple[float, float] | None] = {
    "cost": (0.0, _INF),
    "cost_per_year": (0.0, _INF),
    "start_month": (1.0, _INF),
    "ramp_months": (1.0, _INF),
    "utilization_gain": None,  # the month's utilization is clipped anyway
    "energy_saving": (0.0, 1.0),
    "opex_saving": (0.0, 1.0),
}
# A high bound of None is the horizon T.
PLATFORM_RANGES: dict[str, tuple[float, float | None] | None] = {
    "build_cost": (0.0, _INF),
    "launch_month": (1.0, None),
    "run_cost_per_year": (0.0, _INF),
    "opex_escalation": (-1.0, _INF),
    "take_rate": (0.0, 1.0),
    "users_max": (0.0, _INF),
    "adoption_months": None,  # <= 0: adoption is instant
    "fee_per_user_month": (0.0, _INF),
    "fee_growth": (-1.0, _INF),
    "margin": (0.0, 1.0),
    "tax_rate": (0.0, 1.0),
}
CLUSTER_V2_RANGES: dict[str, tuple[float, float | None]] = {"order_month": (0.0, None), "capex_decline": (-1.0, 1.0)}
# Month fields: a shocked value is rounded to a whole month, halves up.
WHOLE_MONTH_FIELDS = ("order_month", "start_month", "launch_month")

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


def _round_half_up(x: float) -> float:
    return float(math.floor(x + 0.5)) if math.isfinite(x) else x


def _shocked(old: float, op: str, value: float, rng: tuple[float, float] | None) -> float:
    """One value under one shock, clipped to ``rng`` (None: unclipped)."""
    x = _apply_op(float(old), op, float(value))
    if rng is not None:
        x = _clip(x, rng[0], rng[1])
    return x


def _replaced_by_items(params: dict, key: str) -> bool:
    """True when ``key`` is a version 1 key that the cluster's version 2 list replaces
    (a reserved key beside ``contracts``, a pool key beside ``segments``)."""
    if key in RESERVED_KEYS:
        return params.get("contracts") is not None
    if key in POOL_KEYS:
        return params.get("segments") is not None
    return False


def apply_shock(params: dict, param: str, op: str, value: float) -> dict:
    """Return a copy of one cluster's resolved params with one shock applied.

    ``param`` is a cluster config key or one of the named shocks ``utilization``
    (shift of both utilizations, or of every segment's utilization on a cluster with
    ``segments``), ``price`` (scale of on_demand_price), ``energy`` (scale of
    energy_price), ``obsolescence`` (shift of next_gen_month); for named shocks ``op``
    is ignored.  The result is clipped to the range of MODEL.md.  A version 1 key that
    the cluster's ``contracts`` or ``segments`` replace changes nothing.
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
    if param == "utilization" and out.get("segments") is not None:
        out["segments"] = [
            dict(s, utilization=_shocked(s["utilization"], op, value, SEGMENT_RANGES["utilization"]))
            for s in out["segments"]
        ]
        return out
    for key in targets:
        if _replaced_by_items(out, key):
            continue
        x = _apply_op(float(out[key]), op, float(value))
        if key == "debt_term_months":
            x = _round_half_up(x)
        rng = SHOCK_RANGES[key]
        if rng is not None:
            x = _clip(x, rng[0], rng[1])
        out[key] = x
    return out


def _balanced(items: list[dict], kind: str) -> list[dict]:
    """Contracts scaled down in proportion when their shares sum past 1, segments
    renormalised to sum 1 (left at 0 when every share is 0)."""
    total = 0.0
    for it in items:
        total += float(it["share"])
    if (kind == "contracts" and total > 1.0) or (kind == "segments" and total > 0.0):
        return [dict(it, share=float(it["share"]) / total) for it in items]
    return items


def balance_shares(clusters: list[dict]) -> list[dict]:
    """Copies of the clusters with their shares balanced: call it once per point, after
    every shock of the point (apply_shock, apply_path_shock), as docs/model.md orders
    it.  Each cluster's explicit contracts are scaled down in proportion when their
    shares sum past 1, its explicit segments renormalised to sum 1 (all 0 stays 0: a
    pool without demand).  Implied items need nothing: their shares come from
    version 1 keys already in range."""
    out = []
    for c in clusters:
        c = dict(c)
        for kind in ("contracts", "segments"):
            if c.get(kind) is not None:
                c[kind] = _balanced(c[kind], kind)
        out.append(c)
    return out


def _shock_items(c: dict, kind: str, name: str, field: str, op: str, value: float) -> dict | None:
    """The cluster with a path shock on its contracts or segments, or None when it has
    no item of that name.  A version 1 cluster's implied items are addressable as
    MODEL.md says (contracts: anchor, others, *; its segment: * only) and are written
    out explicitly, for that kind only, when shocked."""
    if c.get(kind) is None:
        if kind == "contracts" and name in ("*", ANCHOR, OTHERS):
            c = _with_explicit_contracts(c)
        elif kind == "segments" and name == "*":
            c = _with_explicit_segment(c)
        else:
            return None
    resolve = contract_defaults if kind == "contracts" else segment_defaults
    items = [resolve(it) for it in c[kind]]
    hits = [it for it in items if name == "*" or it["name"] == name]
    if not hits:
        return None
    rng = (CONTRACT_RANGES if kind == "contracts" else SEGMENT_RANGES)[field]
    for it in hits:
        it[field] = _shocked(it[field], op, value, rng)
    return dict(c, **{kind: items})


def _shocked_field(old: float, op: str, value: float, field: str, rng, horizon_months) -> float:
    """A version 2 field under one shock: clipped to its range (a high bound None is
    the horizon), whole-month fields rounded half up (after the clip, which has whole
    bounds, so that inf stays inf)."""
    if rng is not None and rng[1] is None:
        if horizon_months is None:
            raise ValueError(f"a shock on {field} needs horizon_months for its range")
        rng = (rng[0], float(horizon_months))
    x = _shocked(old, op, value, rng)
    return _round_half_up(x) if field in WHOLE_MONTH_FIELDS else x


def _shock_optimization(c: dict, field: str, op: str, value: float) -> dict | None:
    """The cluster with a shock on its optimization programme, or None without one.
    A scale or shift of a default start month acts on the default resolved now, from
    the cluster's (already shocked) order month and delivery."""
    if c.get("optimization") is None:
        return None
    opt = optimization_defaults(c["optimization"])
    old = opt[field]
    if field == "start_month" and old is None:
        old = default_start_month(int(c.get("order_month", 0)), float(c["delivery_months"]))
    opt[field] = _shocked_field(old, op, value, field, OPTIMIZATION_RANGES[field], None)
    return dict(c, optimization=opt)


def apply_path_shock(
    clusters: list[dict],
    platform: dict | None,
    path: str,
    op: str,
    value: float,
    cluster_mask=None,
    horizon_months: int | None = None,
) -> tuple[list[dict], dict | None]:
    """Return copies of the clusters and the platform with one shock on a version 2
    field addressed by path (MODEL.md, "Addressing the new fields").

    Paths: ``contracts.<name>.<field>``, ``contracts.*.<field>``,
    ``segments.<name>.<field>``, ``segments.*.<field>``, ``optimization.<field>``,
    ``platform.<field>`` (no ``cluster_mask``), ``order_month``, ``capex_decline``.
    ``op`` is scale, shift or set as in :func:`apply_shock` (inf stays inf under scale
    and shift); the result is clipped to its range, whole-month fields are rounded
    half up (``order_month`` and ``launch_month`` need ``horizon_months`` for their
    range); shares are not balanced here: :func:`balance_shares` does it once, after
    every shock of the point.  ``cluster_mask`` (one bool per cluster, None:
    all) selects the clusters.  A cluster without the item is unchanged; a path that
    no selected cluster has raises ValueError.  Shocks on version 1 keys
    (:func:`apply_shock`) must be applied first, as MODEL.md orders them: a path shock
    on a version 1 cluster's implied items writes them out explicitly, after which the
    version 1 keys they replace no longer count.
    """
    if op not in ("scale", "shift", "set"):
        raise ValueError(f"unknown shock op {op!r}")
    kind, _, rest = path.partition(".")
    if kind == "platform":
        if rest not in PLATFORM_RANGES:
            raise KeyError(f"unknown path {path!r}")
        if cluster_mask is not None:
            raise ValueError(f"path {path!r}: the platform takes no clusters")
        if platform is None:
            raise ValueError(f"path {path!r}: the portfolio has no platform")
        pl = platform_defaults(platform)
        pl[rest] = _shocked_field(pl[rest], op, value, rest, PLATFORM_RANGES[rest], horizon_months)
        return list(clusters), pl

    if path in CLUSTER_V2_RANGES:
        default = {"order_month": 0, "capex_decline": 0.0}[path]

        def shock(c):
            x = _shocked_field(c.get(path, default), op, value, path, CLUSTER_V2_RANGES[path], horizon_months)
            return dict(c, **{path: x})

    elif kind == "optimization" and rest in OPTIMIZATION_RANGES:

        def shock(c):
            return _shock_optimization(c, rest, op, value)

    else:
        name, _, field = rest.rpartition(".")
        ranges = {"contracts": CONTRACT_RANGES, "segments": SEGMENT_RANGES}.get(kind)
        if ranges is None or not name or field not in ranges:
            raise KeyError(f"unknown path {path!r}")

        def shock(c):
            return _shock_items(c, kind, name, field, op, value)

    mask = [True] * len(clusters) if cluster_mask is None else [bool(x) for x in cluster_mask]
    if len(mask) != len(clusters):
        raise ValueError(f"cluster_mask must have one entry per cluster ({len(clusters)}), got {len(mask)}")
    out = []
    found = False
    for c, selected in zip(clusters, mask):
        shocked = shock(c) if selected else None
        found = found or shocked is not None
        out.append(c if shocked is None else shocked)
    if not found:
        raise ValueError(f"path {path!r}: no selected cluster has this item")
    return out, platform


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


def _whole_month(name: str, value, lo: int, hi: int) -> int:
    """A month given as a whole number in lo..hi (order_month, launch_month)."""
    x = float(value)
    if x != math.floor(x) or not lo <= x <= hi:
        raise ValueError(f"{name} must be a whole month in {lo}..{hi}, got {value!r}")
    return int(x)


def default_start_month(t_o: int, D: float) -> float:
    """An optimization programme's start when the file gives none: go-live, ceil(t_o + D), at least 1."""
    return float(max(math.ceil(t_o + D), 1))


class _Programme:
    """A cluster's optimization programme resolved on its clock; without a programme
    every effect is zero (start never), so the flows are version 1's bit for bit."""

    def __init__(self, opt: dict | None, t_o: int, D: float):
        o = optimization_defaults({} if opt is None else opt)
        if opt is None:
            self.start = math.inf
        elif o["start_month"] is None:
            self.start = default_start_month(t_o, D)
        else:
            self.start = max(float(o["start_month"]), float(t_o))  # an explicit start before t_o moves to t_o
        self.ramp_months = float(o["ramp_months"])
        self.gain = float(o["utilization_gain"])
        self.energy_saving = float(o["energy_saving"])
        self.opex_saving = float(o["opex_saving"])
        self.one_off = float(o["cost"])
        self.per_year = float(o["cost_per_year"])

    def ramp(self, t: int) -> float:
        """h_t = ramp((t - t_s)/R_s)."""
        return _clip((t - self.start) / self.ramp_months, 0.0, 1.0)

    def cost(self, t: int, e_t: float) -> float:
        """The programme's own cost in month t: the one-off at t_s, then cost_per_year/12 escalated."""
        one_off = self.one_off if t == self.start else 0.0
        running = self.per_year / 12.0 * e_t if t > self.start else 0.0
        return one_off + running


def _is_series(values) -> bool:
    return len(values) > 0 and np.ndim(values[0]) == 0


def _segment_util_shifts(values, segments: list[dict], T: int) -> list[list[float]]:
    """U_{j,t} for each segment, indexed t = 0..T.  ``values`` is None (no shift), one
    series (the same shift for every segment: version 1's one series of a cluster
    without segments), a list of series in segment order, or a dict segment name ->
    series (a segment left out has no shift)."""
    if values is None or (not isinstance(values, dict) and _is_series(values)):
        return [_factor_series("util", values, T, 0.0)] * len(segments)
    names = [s["name"] for s in segments]
    if isinstance(values, dict):
        unknown = set(values) - set(names)
        if unknown:
            raise KeyError(f"util factors for unknown segments {sorted(unknown)}; segments: {names}")
        return [_factor_series("util", values.get(n), T, 0.0) for n in names]
    if len(values) != len(segments):
        raise ValueError(f"util factors must have one series per segment ({len(segments)}), got {len(values)}")
    return [_factor_series("util", v, T, 0.0) for v in values]


def cluster_monthly(
    p: dict,
    horizon_months: int,
    price_factor=None,
    util_shift=None,
    energy_factor=None,
) -> dict:
    """All monthly series of one cluster, each a list indexed t = 0..T (t = 0 entries
    of the operating series are 0; "optimization_cost" is the programme's own cost,
    inside "opex"), plus the scalars capex, debt, A, M_d, t_o and the revenue over
    t = 1..T by industry label ("unlabelled" for items without one) in order of first
    appearance, contracts before segments.

    Optional Monte Carlo path factors (sequences of length T, element t-1 = month t):
    ``price_factor`` P_t, ``util_shift`` U_t (or one such series per segment, see
    :func:`_segment_util_shifts`), ``energy_factor`` X_t, as in the module docstring.
    None means no factor."""
    T = int(horizon_months)
    H = HOURS_PER_MONTH
    Pf = _factor_series("price", price_factor, T, 1.0)
    Xf = _factor_series("energy", energy_factor, T, 1.0)
    contracts = None if p.get("contracts") is None else [contract_defaults(c) for c in p["contracts"]]
    segments = [implied_segment(p)] if p.get("segments") is None else [segment_defaults(s) for s in p["segments"]]
    Us = _segment_util_shifts(util_shift, segments, T)
    t_o = _whole_month("order_month", p.get("order_month", 0), 0, T)
    c_K = float(p.get("capex_decline", 0.0))

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
    if contracts is None:
        r0 = float(p["reserved_share"])
        pR = float(p["reserved_price"])
        M = float(p["reserved_term_months"])
        rho = float(p["renewal_rate"])
        delta = float(p["renewal_discount"])
        uR = float(p["reserved_utilization"])
        k = float(p["top_client_share"])
        tL = float(p["client_loss_month"])
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
    programme = _Programme(p.get("optimization"), t_o, D)

    def g(t: float) -> float:
        return _clip((t - t_ng) / R, 0.0, 1.0)

    def market(t: float) -> float:
        return p0 * (1.0 - d) ** (t / 12.0) * (1.0 - s_p * g(t))

    def renewal_price(start: float, discount: float) -> float:
        k_lock = int(_clip(float(math.floor(start)), 1.0, float(T)))
        return market(start) * (1.0 - discount) * Pf[k_lock]

    def book_month(t: int) -> list[tuple[float, float, float]]:
        """(res, pr, u_R) of each contract in month t: cycles on the cluster's clock,
        loss months and renewal prices on the calendar."""
        if contracts is None:
            # version 1's formula for the implied anchor and others together
            n = math.floor(max(t - 1 - t_o - D, 0.0) / M)
            lost = 1.0 if t >= tL else 0.0
            res = r0 * rho ** n * (1.0 - k * lost)
            pr = pR if n == 0 else renewal_price(t_o + D + 1.0 + n * M, delta)
            return [(res, pr, uR)]
        book = []
        for c in contracts:
            n = math.floor(max(t - 1 - t_o - D, 0.0) / float(c["term_months"]))
            kept = 1.0 if t < float(c["loss_month"]) else 0.0
            res = float(c["share"]) * float(c["renewal_rate"]) ** n * kept
            if n == 0:
                pr = float(c["price"])
            else:
                pr = renewal_price(t_o + D + 1.0 + n * float(c["term_months"]), float(c["renewal_discount"]))
            book.append((res, pr, float(c["utilization"])))
        return book

    book_labels = [None] if contracts is None else [c["industry"] for c in contracts]
    item_labels = book_labels + [s["industry"] for s in segments]
    if UNLABELLED in item_labels or PLATFORM in item_labels:
        raise ValueError(f"industry labels {UNLABELLED!r} and {PLATFORM!r} are the model's own")
    item_revenue = [0.0] * len(item_labels)

    K_o = K * (1.0 - c_K) ** (t_o / 12.0)  # the price per GPU paid at t_o
    capex = N * K_o + Kf
    debt = theta * capex
    sched = debt_schedule(debt, i_rate, Md, T - t_o)  # on the cluster's clock s = t - t_o
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
    programme_s = list(zeros)  # the optimization programme's own cost

    life_months = 12.0 * L
    for t in range(1, T + 1):
        live = _clip(t - t_o - D, 0.0, 1.0)
        gt = g(t)
        m_t = market(t) * Pf[t]

        book = book_month(t)
        res = 0.0
        book_revenue = 0.0
        book_busy = 0.0
        for i, (res_k, pr_k, uR_k) in enumerate(book):
            res += res_k
            book_revenue += res_k * pr_k
            book_busy += res_k * uR_k
            item_revenue[i] += live * N * H * (res_k * pr_k)
        od = 1.0 - res

        h = programme.ramp(t)
        u_bar = 0.0  # sigma-weighted utilization (power)
        u_mu = 0.0  # sigma- and multiplier-weighted utilization (revenue)
        for j, seg in enumerate(segments):
            u_j = _clip(float(seg["utilization"]) - s_u * gt + programme.gain * h + Us[j][t], 0.0, 1.0)
            weight = float(seg["share"]) * float(seg["price_multiplier"])
            u_bar += float(seg["share"]) * u_j
            u_mu += weight * u_j
            item_revenue[len(book) + j] += live * N * H * (od * (weight * u_j) * m_t * (1.0 + q * pi))

        revenue = live * N * H * (book_revenue + od * u_mu * m_t * (1.0 + q * pi))
        busy = book_busy + od * u_bar
        energy = live * N * P * pue * H * E * (1.0 + gE) ** (t / 12.0) * Xf[t] * (phi + (1.0 - phi) * busy)
        energy = energy * (1.0 - programme.energy_saving * h)
        e_t = (1.0 + gO) ** (t / 12.0)
        staff = S / 12.0 if t > t_o else 0.0
        opex = e_t * (live * (m_r * N * K_o / 12.0 + N * sw + N * P * c_k) + staff)
        programme_s[t] = programme.cost(t, e_t)
        opex = opex * (1.0 - programme.opex_saving * h) + programme_s[t]
        ebitda = revenue - energy - opex

        dep = capex / (12.0 * L) if t_o < t <= t_o + life_months else 0.0
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

    cf_s[t_o] += -capex
    book_T = capex
    for t in range(1, T + 1):
        book_T -= dep_s[t]
    resale = N * K_o * (1.0 - d_r) ** ((T - t_o) / 12.0) * (1.0 - s_r * g(T))
    cf_s[T] += resale - tau * (resale - book_T)

    for t in range(t_o, T + 1):
        s = t - t_o
        pay = A if 1 <= s <= Md else 0.0
        cfe = cf_s[t] - pay + tau * I[s]
        if t == T and Md > T - t_o:
            cfe -= B[T - t_o]
        cfe_s[t] = cfe
    cfe_s[t_o] += debt

    revenue_by_industry: dict = {}
    for label, total in zip(item_labels, item_revenue):
        label = UNLABELLED if label is None else label
        revenue_by_industry[label] = revenue_by_industry.get(label, 0.0) + total

    return {
        "revenue_by_industry": revenue_by_industry,
        "t_o": t_o,
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
        "optimization_cost": programme_s,
    }


# ---------------------------------------------------------------------------
# Metrics from flows
# ---------------------------------------------------------------------------


def npv(cf: list[float], discount_rate: float) -> float:
    total = 0.0
    for t, x in enumerate(cf):
        total += x * (1.0 + discount_rate) ** (-t / 12.0)
    return total


def payback_months(cf: list[float], start: int = 0) -> float:
    """Months from the investment month ``start`` (a cluster's t_o, the portfolio's
    earliest) to the first t >= start with cumulative CF >= 0, interpolated linearly
    inside the month; 0 when the cumulative CF at ``start`` is >= 0, inf if never."""
    cum = cf[0]
    for t in range(1, start + 1):
        cum += cf[t]
    if cum >= 0.0:
        return 0.0
    for t in range(start + 1, len(cf)):
        prev = cum
        cum = prev + cf[t]
        if cum >= 0.0:
            return (t - 1 - start) + (-prev) / cf[t]
    return math.inf


def _sum_months(series: list[float]) -> float:
    total = 0.0
    for t in range(1, len(series)):
        total += series[t]
    return total


def _metrics(cf, cfe, capex, has_debt, min_dscr, totals, discount_rate, start) -> dict:
    total_cf = 0.0
    for x in cf:
        total_cf += x
    return {
        "npv": npv(cf, discount_rate),
        "roi": total_cf / capex if capex != 0.0 else math.nan,
        "irr": irr_monthly_to_annual(cf),
        "payback_months": payback_months(cf, start),
        "equity_irr": irr_monthly_to_annual(cfe) if has_debt else math.nan,
        "min_dscr": min_dscr,
        "revenue": totals["revenue"],
        "energy_cost": totals["energy_cost"],
        "opex": totals["opex"],
        "ebitda": totals["ebitda"],
    }


def _services_debt(mo: dict, t: int) -> bool:
    """Month t counts for DSCR: fully live and within the loan's term on the cluster's clock."""
    return mo["live"][t] == 1.0 and mo["t_o"] < t <= mo["t_o"] + mo["M_d"]


def platform_monthly(platform: dict, cluster_revenue: list[float], T: int) -> dict:
    """The platform layer's monthly series, each indexed t = 0..T: revenue R^p (the
    take on the clusters' summed revenue plus user fees), opex ((1 - margin) R^p plus
    run and build costs), EBITDA and CF = EBITDA (1 - tax_rate); 0 before launch."""
    pl = platform_defaults(platform)
    t_p = _whole_month("launch_month", pl["launch_month"], 1, T)
    users_max = float(pl["users_max"])
    adoption = float(pl["adoption_months"])
    fee = float(pl["fee_per_user_month"])
    g_f = float(pl["fee_growth"])
    take = float(pl["take_rate"])
    margin = float(pl["margin"])
    run_cost = float(pl["run_cost_per_year"])
    g_O = float(pl["opex_escalation"])
    tax = float(pl["tax_rate"])
    out = {key: [0.0] * (T + 1) for key in ("revenue", "opex", "ebitda", "cf")}
    for t in range(t_p, T + 1):
        # adoption_months <= 0 (a shocked value): every user from launch
        users = users_max if adoption <= 0.0 else users_max * (1.0 - math.exp(-(t - t_p + 1) / adoption))
        revenue = take * cluster_revenue[t] + users * fee * (1.0 + g_f) ** (t / 12.0)
        costs = run_cost / 12.0 * (1.0 + g_O) ** (t / 12.0) + (float(pl["build_cost"]) if t == t_p else 0.0)
        ebitda = margin * revenue - costs
        out["revenue"][t] = revenue
        out["opex"][t] = (1.0 - margin) * revenue + costs
        out["ebitda"][t] = ebitda
        out["cf"][t] = ebitda * (1.0 - tax)
    return out


def evaluate(
    clusters: list[dict],
    horizon_months: int,
    discount_rate: float,
    factors=None,
    platform: dict | None = None,
) -> dict:
    """Evaluate one scenario: per-cluster and portfolio outputs plus the flows.

    ``factors`` (one Monte Carlo path) is None or a list with one entry per cluster,
    each None or a dict with optional keys "price", "util", "energy" (sequences of
    length T, element t-1 = month t; "util" may also be one series per segment, as a
    list in segment order or a dict segment name -> series) passed to
    ``cluster_monthly``.  ``platform`` is the portfolio's platform layer (None: none).

    Returns "portfolio" and "clusters" (version 1's outputs, OUTPUT_NAMES; the
    portfolio's include the platform, the clusters' do not), "flows" ("cf", "cfe" per
    cluster, "platform_cf" or None) and "v2", version 2's outputs by their file names
    (V2_OUTPUT_NAMES): "revenue_by_industry" (label -> USD over t = 1..T, labels in
    order of first appearance, clusters in order and contracts before segments, then
    "unlabelled", then "platform" with the platform's revenue when there is one),
    "cluster_revenue_by_industry" (one such dict per cluster, same labels, 0 under
    "platform"), "optimization_cost", "cluster_optimization_cost" (one per cluster),
    "platform_npv" and "platform_revenue" (0 without a platform)."""
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
                if _services_debt(mo, t):
                    x = mo["nopat"][t] / mo["A"]
                    if best is None or x < best:
                        best = x
            if best is not None:
                min_dscr = best
        totals = {key: _sum_months(mo[key]) for key in ("revenue", "energy_cost", "opex", "ebitda")}
        cluster_out.append(_metrics(mo["cf"], mo["cfe"], mo["capex"], has_debt, min_dscr, totals, r, mo["t_o"]))

    # Portfolio: month-by-month sums over clusters, plus the platform layer.
    series = {key: [0.0] * (T + 1) for key in ("cf", "cfe", "nopat", "revenue", "energy_cost", "opex", "ebitda")}
    pcapex = 0.0
    for mo in monthly:
        pcapex += mo["capex"]
        for key, s in series.items():
            for t in range(T + 1):
                s[t] += mo[key][t]
    plat = None
    if platform is not None:
        plat = platform_monthly(platform, series["revenue"], T)
        for key, plat_key in (("cf", "cf"), ("cfe", "cf"), ("nopat", "cf"), ("revenue", "revenue"),
                              ("opex", "opex"), ("ebitda", "ebitda")):
            for t in range(T + 1):
                series[key][t] += plat[plat_key][t]
    debtors = [mo for mo in monthly if mo["debt"] != 0.0]
    p_has_debt = len(debtors) > 0
    p_min_dscr = math.nan
    if p_has_debt:
        denom = 0.0
        for mo in debtors:
            denom += mo["A"]
        best = None
        for t in range(1, T + 1):
            if all(_services_debt(mo, t) for mo in debtors):
                x = series["nopat"][t] / denom
                if best is None or x < best:
                    best = x
        if best is not None:
            p_min_dscr = best
    p_totals = {key: _sum_months(series[key]) for key in ("revenue", "energy_cost", "opex", "ebitda")}
    start = min((mo["t_o"] for mo in monthly), default=0)
    portfolio = _metrics(series["cf"], series["cfe"], pcapex, p_has_debt, p_min_dscr, p_totals, r, start)

    labels = []
    for mo in monthly:
        labels += [x for x in mo["revenue_by_industry"] if x != UNLABELLED and x not in labels]
    labels.append(UNLABELLED)
    by_industry = {}
    for x in labels:
        total = 0.0
        for mo in monthly:
            total += mo["revenue_by_industry"].get(x, 0.0)
        by_industry[x] = total
    platform_revenue = 0.0 if plat is None else _sum_months(plat["revenue"])
    if plat is not None:
        labels.append(PLATFORM)
        by_industry[PLATFORM] = platform_revenue
    cluster_by_industry = [{x: mo["revenue_by_industry"].get(x, 0.0) for x in labels} for mo in monthly]
    cluster_optimization_cost = [_sum_months(mo["optimization_cost"]) for mo in monthly]
    optimization_cost = 0.0
    for x in cluster_optimization_cost:
        optimization_cost += x

    return {
        "portfolio": portfolio,
        "clusters": cluster_out,
        "flows": {
            "cf": [list(mo["cf"]) for mo in monthly],
            "cfe": [list(mo["cfe"]) for mo in monthly],
            "platform_cf": None if plat is None else list(plat["cf"]),
        },
        "v2": {
            "revenue_by_industry": by_industry,
            "cluster_revenue_by_industry": cluster_by_industry,
            "optimization_cost": optimization_cost,
            "cluster_optimization_cost": cluster_optimization_cost,
            "platform_npv": 0.0 if plat is None else npv(plat["cf"], r),
            "platform_revenue": platform_revenue,
        },
    }
