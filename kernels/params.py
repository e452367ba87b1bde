"""The parameter table of the cash-flow model (MODEL.md, version 1).

Pure data: one row per cluster parameter with its default, its allowed range and
whether a file must give it as a whole number. The configuration loader validates
files against these ranges, and the shock kernel clips shocked values to them, so
both read the same table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODEL_VERSION = 1  # files that use no version 2 field
MODEL_VERSION_2 = 2
HOURS_PER_MONTH = 730.0

INF = math.inf


@dataclass(frozen=True)
class Param:
    name: str
    default: float | None  # None: required
    lo: float = -INF
    hi: float = INF
    integer: bool = False  # a file must give a whole number
    lo_open: bool = False  # the lower bound itself is excluded
    unit: str = ""


def _share(name: str, default: float, unit: str = "fraction") -> Param:
    return Param(name, default, 0.0, 1.0, unit=unit)


CLUSTER_PARAMS: tuple[Param, ...] = (
    # Hardware and capex
    Param("gpus", None, 0.0, INF, integer=True, lo_open=True, unit="GPUs"),  # shocks clip to >= 0
    Param("capex_per_gpu", None, 0.0, unit="USD per GPU"),
    Param("capex_fixed", 0.0, 0.0, unit="USD"),
    Param("delivery_months", 3.0, 0.0, unit="months"),
    # Power and energy
    Param("kw_per_gpu", 1.3, 0.0, unit="kW per GPU"),
    _share("idle_power_fraction", 0.3),
    Param("pue", 1.3, 1.0, unit="ratio"),
    Param("energy_price", 0.08, 0.0, unit="USD per kWh"),
    Param("energy_escalation", 0.02, -1.0, unit="per year"),
    # Market price and obsolescence
    Param("on_demand_price", None, 0.0, unit="USD per GPU-hour"),
    Param("price_decline", 0.20, -1.0, 1.0, unit="per year"),
    Param("next_gen_month", 24.0, unit="month"),
    Param("next_gen_ramp_months", 6.0, 1.0, unit="months"),
    _share("next_gen_price_drop", 0.30),
    _share("next_gen_utilization_drop", 0.05),
    _share("next_gen_resale_drop", 0.20),
    # Reserved contracts and customers
    _share("reserved_share", 0.5),
    Param("reserved_price", 0.0, 0.0, unit="USD per GPU-hour"),
    Param("reserved_term_months", 36.0, 1.0, unit="months"),
    _share("renewal_rate", 0.7),
    _share("renewal_discount", 0.15),
    _share("reserved_utilization", 0.85),
    _share("top_client_share", 0.0),
    Param("client_loss_month", INF, unit="month"),
    # On-demand pool
    _share("utilization_training", 0.70),
    _share("utilization_inference", 0.80),
    _share("inference_share", 0.5),
    _share("priority_share", 0.0),
    Param("priority_premium", 0.25, 0.0, unit="fraction of price"),
    # Operating costs
    Param("opex_escalation", 0.03, -1.0, unit="per year"),
    Param("maintenance_rate", 0.03, 0.0, unit="fraction of GPU capex per year"),
    Param("software_per_gpu_month", 15.0, 0.0, unit="USD per GPU-month"),
    Param("colocation_per_kw_month", 0.0, 0.0, unit="USD per kW-month"),
    Param("staff_cost_per_year", 0.0, 0.0, unit="USD per year"),
    # Depreciation, tax, resale
    Param("useful_life_years", 6.0, 1.0 / 12.0, unit="years"),
    _share("tax_rate", 0.21),
    Param("resale_decline", 0.25, -1.0, 1.0, unit="per year"),
    # Debt
    _share("debt_fraction", 0.0),
    Param("interest_rate", 0.10, 0.0, unit="per year"),
    Param("debt_term_months", 48.0, 1.0, integer=True, unit="months"),
)

PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in CLUSTER_PARAMS)
PARAMS: dict[str, Param] = {p.name: p for p in CLUSTER_PARAMS}

# Version 2: the reserved book as named contracts and the on-demand pool as segments
# (MODEL.md, "Contracts", "Segments"). Fields of one item; default None: a file (or an
# industry profile) must give it. utilization_sigma is the segment's Monte Carlo
# volatility: it shapes the paths, not the flows, so it has no flow array.
CONTRACT_FIELDS: tuple[Param, ...] = (
    _share("share", None),
    Param("price", None, 0.0, unit="USD per GPU-hour"),
    Param("term_months", 36.0, 1.0, unit="months"),
    _share("renewal_rate", 0.7),
    _share("renewal_discount", 0.15),
    _share("utilization", 0.85),
    Param("loss_month", INF, unit="month"),
)
SEGMENT_FIELDS: tuple[Param, ...] = (
    _share("share", None),
    _share("utilization", None),
    Param("price_multiplier", 1.0, 0.0, unit="multiple of the market price"),
    Param("utilization_sigma", 0.10, 0.0, unit="utilization points"),
)
ITEM_FIELDS: dict[str, tuple[Param, ...]] = {"contracts": CONTRACT_FIELDS, "segments": SEGMENT_FIELDS}
NOT_IN_FLOWS = frozenset({"segments.utilization_sigma"})

# The flow arrays of the items, "<kind>.<field>" -> Param; each is [S|1, C, K] (K the
# most items of a cluster; padding items have share 0 and move nothing).
ITEM_PARAMS: dict[str, Param] = {
    f"{kind}.{f.name}": f for kind, fields in ITEM_FIELDS.items() for f in fields
    if f"{kind}.{f.name}" not in NOT_IN_FLOWS
}
ITEM_NAMES: tuple[str, ...] = tuple(ITEM_PARAMS)
# Version 2 scalars of a cluster, in groups: a portfolio whose files use none of a group
# carries none of its arrays (version 1's arrays and file layout stay as they were).
# order_month is a whole month 0..T (the kernels clip a shocked value to the horizon).
ORDER_PARAMS: tuple[Param, ...] = (
    Param("order_month", 0.0, 0.0, INF, integer=True, unit="month"),
    Param("capex_decline", 0.0, -1.0, 1.0, unit="per year"),
)
OPTIMIZATION_PARAMS: tuple[Param, ...] = (
    Param("optimization.cost", 0.0, 0.0, unit="USD"),
    Param("optimization.cost_per_year", 0.0, 0.0, unit="USD per year"),
    # a whole month >= 1; when the file leaves it out (optimization.start_given = 0) the
    # kernels start at ceil(t_o + D), from the shocked order month and delivery
    Param("optimization.start_month", 1.0, 1.0, INF, integer=True, unit="month"),
    Param("optimization.ramp_months", 6.0, 1.0, unit="months"),
    Param("optimization.utilization_gain", 0.0, unit="utilization points"),
    _share("optimization.energy_saving", 0.0),
    _share("optimization.opex_saving", 0.0),
)
OPTIMIZATION_START_GIVEN = "optimization.start_given"  # [C] 1.0 where the file gives start_month
# [1]: the horizon T, carried where a month is bounded by it (order and launch months): a
# shock clips them to it at once, as every other field to its range (kernels/shocks.py)
HORIZON_KEY = "horizon"
# The platform layer, portfolio level: arrays [1] (one column, like a cluster's)
PLATFORM_PARAMS: tuple[Param, ...] = (
    Param("platform.build_cost", 0.0, 0.0, unit="USD"),
    Param("platform.launch_month", 1.0, 1.0, INF, integer=True, unit="month"),
    Param("platform.run_cost_per_year", 0.0, 0.0, unit="USD per year"),
    Param("platform.opex_escalation", 0.03, -1.0, unit="per year"),
    _share("platform.take_rate", 0.0),
    Param("platform.users_max", 0.0, 0.0, unit="users"),
    Param("platform.adoption_months", 12.0, 0.0, lo_open=True, unit="months"),
    Param("platform.fee_per_user_month", 0.0, 0.0, unit="USD per user-month"),
    Param("platform.fee_growth", 0.0, -1.0, unit="per year"),
    _share("platform.margin", 0.7),
    _share("platform.tax_rate", 0.21),
)
V2_SCALARS: dict[str, Param] = {p.name: p for p in ORDER_PARAMS + OPTIMIZATION_PARAMS + PLATFORM_PARAMS}

# One-hot industry of each item, [C, K, I] (not parameters: labels, never shocked)
INDUSTRY_KEYS = ("contracts.industry", "segments.industry")
# 1.0 where a cluster gives no contracts (or segments) and the implied ones stand in
IMPLIED_KEYS = ("contracts.implied", "segments.implied")
# The implied contracts of a cluster without `contracts` (MODEL.md): slot 0 "anchor",
# slot 1 "others"; its implied segment is slot 0 and named only by "*".
IMPLIED_CONTRACTS = ("anchor", "others")

# Portfolio-level parameters. horizon_months fixes array shapes, so it cannot be an axis.
PORTFOLIO_PARAMS: dict[str, Param] = {
    "discount_rate": Param("discount_rate", 0.10, -1.0, lo_open=True, unit="per year"),
    "horizon_months": Param("horizon_months", 60.0, 1.0, 600.0, integer=True, unit="months"),
}

# The four named shocks of a stress grid: (parameters moved, operation, neutral value).
NAMED_SHOCKS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "utilization": (("utilization_training", "utilization_inference"), "shift", 0.0),
    "price": (("on_demand_price",), "scale", 1.0),
    "energy": (("energy_price",), "scale", 1.0),
    "obsolescence": (("next_gen_month",), "shift", 0.0),
}

# What a named shock moves besides, where the portfolio carries items (version 2): the
# `utilization` shock shifts every segment of a cluster with segments of its own
# (kernels/shocks.py leaves the implied ones to the version 1 keys)
NAMED_ITEM_TARGETS: dict[str, tuple[str, ...]] = {"utilization": ("segments.utilization",)}


def named_targets(name: str, itemised: bool) -> tuple[str, ...]:
    """The parameters the named shock `name` moves, in a portfolio with or without items."""
    return NAMED_SHOCKS[name][0] + (NAMED_ITEM_TARGETS.get(name, ()) if itemised else ())


OPS = ("scale", "shift", "set")

OUTPUTS: tuple[str, ...] = (
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

OUTPUT_UNITS: dict[str, str] = {
    "npv": "USD",
    "roi": "1",
    "irr": "per year",
    "payback_months": "months",
    "equity_irr": "per year",
    "min_dscr": "1",
    "revenue": "USD",
    "energy_cost": "USD",
    "opex": "USD",
    "ebitda": "USD",
}

# The cluster parameters in which every cash flow of MODEL.md is affine when the others
# are held fixed (each enters the monthly flows, capex, depreciation, resale, tax and
# debt as a factor or a term, never inside a power, a floor, a clip or a comparison).
# A grid axis that moves only these, without clipping, leaves the flows multi-affine in
# the axis values: kernels/factored.py evaluates such axes at their two end points and
# interpolates, exactly up to round-off.
AFFINE_PARAMS: frozenset[str] = frozenset({
    "gpus", "capex_per_gpu", "capex_fixed",
    "kw_per_gpu", "idle_power_fraction", "pue", "energy_price",
    "on_demand_price", "next_gen_price_drop", "next_gen_resale_drop",
    "reserved_share", "reserved_price", "renewal_discount", "reserved_utilization",
    "top_client_share", "priority_share", "priority_premium",
    "maintenance_rate", "software_per_gpu_month", "colocation_per_kw_month", "staff_cost_per_year",
    "tax_rate", "debt_fraction",
})
