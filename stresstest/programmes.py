"""A cluster's version 2 scalars and the portfolio's platform layer (MODEL.md, "Order
month", "Optimization programmes", "Platform layer").

`order_month` and `capex_decline` sit beside a cluster's version 1 keys; `optimization:`
is a mapping of its own, and one in defaults: is replaced whole by a cluster's own,
never merged (a programme is one plan: its cost goes with its effects); `platform:` sits
in the portfolio: block. Each is a group of the kernels' arrays (GROUPS): a portfolio
whose file uses none of a group carries none of its arrays, so a version 1 file keeps
version 1's arrays, flows and result files. In a portfolio where some cluster has a
programme, a cluster without one carries cost 0 and no effect, which leaves its flows
as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import create_model

from .kernels.params import OPTIMIZATION_PARAMS, OPTIMIZATION_START_GIVEN, ORDER_PARAMS, PLATFORM_PARAMS, Param
from .validation import STRICT, num_text

# The groups of version 2 scalars, each switched on as a whole (Portfolio.groups)
GROUPS: dict[str, tuple[Param, ...]] = {"order": ORDER_PARAMS, "optimization": OPTIMIZATION_PARAMS,
                                        "platform": PLATFORM_PARAMS}
COST = "optimization.cost"  # every programme holds it (default 0): the mark of one
START = "optimization.start_month"  # absent where the file leaves it out: ceil(t_o + D)
# months a file must give within the horizon (the kernels clip a shocked one to it)
WITHIN_HORIZON = ("order_month", "platform.launch_month")


def field_name(spec: Param) -> str:
    """The key a file uses for a parameter of a mapping ("optimization.cost" -> "cost")."""
    return spec.name.partition(".")[2] or spec.name


def _mapping_model(name: str, params: tuple[Param, ...]):
    return create_model(name, __config__=STRICT, **{field_name(p): (float, None) for p in params})


OptimizationModel = _mapping_model("OptimizationModel", OPTIMIZATION_PARAMS)
PlatformModel = _mapping_model("PlatformModel", PLATFORM_PARAMS)
# the pydantic fields a cluster (and defaults:) gains; `platform` only to refuse it with
# the reason (it is the portfolio's), where "unknown key" would leave the user guessing
CLUSTER_FIELDS: dict[str, Any] = {
    **{p.name: (float, None) for p in ORDER_PARAMS},
    "optimization": (OptimizationModel, None),
    "platform": (Any, None),
}


@dataclass
class Scalars:
    """One cluster's version 2 scalars as resolved (V2_SCALARS name -> value: those its
    file gives, and with a programme every optimization field but an unstated start
    month), and where each came from: "cluster", "defaults" or "model". The platform's:
    every field, from the "file" or the model's "default"."""

    values: dict[str, float] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def programme(self) -> bool:
        """Whether the cluster runs an optimization programme."""
        return COST in self.values


def _check(found, at: str, spec: Param, value: float, horizon: float) -> None:
    """A value's range (Param), and a month the file must give within the horizon."""
    found.check(at, spec, value)
    if spec.name in WITHIN_HORIZON and value > horizon and value == math.floor(value):
        found.problem(at, f"must be <= {num_text(horizon)} (the horizon, horizon_months), got "
                      f"{num_text(value)}: a month past the horizon never comes")


def check_default_scalars(defaults: dict, found, horizon: float) -> None:
    """defaults:' order month, capex decline and programme, checked once (not per cluster)."""
    _refuse_platform(defaults, "defaults", found)
    for spec in ORDER_PARAMS:
        if spec.name in defaults:
            _check(found, f"defaults.{spec.name}", spec, defaults[spec.name], horizon)
    plan = defaults.get("optimization") or {}
    for spec in OPTIMIZATION_PARAMS:
        if field_name(spec) in plan:
            _check(found, f"defaults.optimization.{field_name(spec)}", spec, plan[field_name(spec)], horizon)


def resolve_scalars(raw: dict, defaults: dict, where: str, found, horizon: float) -> Scalars:
    """One cluster's order month, capex decline and programme from its own mapping `raw`,
    else defaults:; the cluster's own values checked (found: the file's findings, as
    config's), and `platform:` under a cluster refused."""
    out = Scalars()
    for spec in ORDER_PARAMS:
        if spec.name in raw:
            out.values[spec.name], out.origins[spec.name] = raw[spec.name], "cluster"
            _check(found, f"{where}.{spec.name}", spec, raw[spec.name], horizon)
        elif spec.name in defaults:
            out.values[spec.name], out.origins[spec.name] = defaults[spec.name], "defaults"
    plan, origin = raw.get("optimization"), "cluster"
    if plan is None:
        plan, origin = defaults.get("optimization"), "defaults"
    if plan is not None:
        for spec in OPTIMIZATION_PARAMS:
            key = field_name(spec)
            if key in plan:
                out.values[spec.name], out.origins[spec.name] = plan[key], origin
                if origin == "cluster":
                    _check(found, f"{where}.optimization.{key}", spec, plan[key], horizon)
            elif spec.name != START:
                out.values[spec.name], out.origins[spec.name] = spec.default, "model"
    _refuse_platform(raw, where, found)
    return out


def _refuse_platform(raw: dict, where: str, found) -> None:
    if "platform" in raw:
        found.problem(f"{where}.platform", "the platform layer is the portfolio's, not a cluster's: "
                      "give platform: in the portfolio: block")


def warn_late_order(found, where: str, s: Scalars, delivery_months: float, horizon: float) -> None:
    """A cluster ordered so late that it goes live (t_o + D) at or past the horizon draws
    a warning at the key that sets the order month (a delivery alone that long has its
    own warning; an order month past the horizon is refused)."""
    t_o = s.values.get("order_month", 0.0)
    if t_o <= 0 or t_o > horizon or delivery_months >= horizon or t_o + delivery_months < horizon:
        return
    at = "defaults.order_month" if s.origins.get("order_month") == "defaults" else f"{where}.order_month"
    found.warn(at, f"ordered at month {num_text(t_o)} with {num_text(delivery_months)} months of delivery, the "
               f"cluster goes live at month {num_text(t_o + delivery_months)}, at or past the horizon "
               f"({num_text(horizon)} months): it earns nothing within it, so its IRR and ROI mean little")


def resolve_platform(block: dict | None, found, horizon: float) -> Scalars | None:
    """The portfolio's platform layer (None without `platform:`), every field resolved
    (the file's value, else the model's default) and checked."""
    if block is None:
        return None
    out = Scalars()
    for spec in PLATFORM_PARAMS:
        key = field_name(spec)
        if key in block:
            out.values[spec.name], out.origins[spec.name] = block[key], "file"
            _check(found, f"portfolio.platform.{key}", spec, block[key], horizon)
        else:
            out.values[spec.name], out.origins[spec.name] = spec.default, "default"
    return out


def default_start_month(s: Scalars, delivery_months: float) -> float:
    """The month a programme whose file gives no start month starts (MODEL.md): the
    cluster's go-live, ceil(t_o + D), at least 1."""
    return max(float(math.ceil(s.values.get("order_month", 0.0) + delivery_months)), 1.0)


def groups_in_use(scalars: list[Scalars], platform: Scalars | None) -> set[str]:
    """The groups of scalars a portfolio's file uses."""
    used = set()
    if any(n in s.values for s in scalars for n in (p.name for p in ORDER_PARAMS)):
        used.add("order")
    if any(s.programme for s in scalars):
        used.add("optimization")
    if platform is not None:
        used.add("platform")
    return used


def scalar_arrays(scalars: list[Scalars], platform: Scalars | None, groups: set[str]) -> dict[str, np.ndarray]:
    """The kernels' arrays of the groups in use: the clusters' [C] (a value the cluster
    does not give: the model's default, which for a cluster without a programme is cost
    0 and no effect), OPTIMIZATION_START_GIVEN [C] (1.0 where the file gives the start
    month), the platform's [1]."""
    out: dict[str, np.ndarray] = {}
    for group in ("order", "optimization"):
        if group in groups:
            for spec in GROUPS[group]:
                out[spec.name] = np.array([s.values.get(spec.name, spec.default) for s in scalars], dtype=np.float64)
    if "optimization" in groups:
        out[OPTIMIZATION_START_GIVEN] = np.array([1.0 if START in s.values else 0.0 for s in scalars])
    if "platform" in groups:
        given = platform.values if platform is not None else {}
        for spec in PLATFORM_PARAMS:
            out[spec.name] = np.array([given.get(spec.name, spec.default)], dtype=np.float64)
    return out


def scalars_to_dict(s: Scalars) -> dict:
    """A cluster's entries of Portfolio.to_dict(): order_month, capex_decline where given,
    `optimization` with its every field (start_month null: ceil(t_o + D)); {} for none."""
    out: dict[str, Any] = {p.name: s.values[p.name] for p in ORDER_PARAMS if p.name in s.values}
    if s.programme:
        out["optimization"] = {field_name(p): s.values.get(p.name) for p in OPTIMIZATION_PARAMS}
    return out


def scalars_from_dict(d: dict) -> Scalars:
    """A cluster's Scalars back from scalars_to_dict (a result file's config)."""
    out = Scalars()
    for spec in ORDER_PARAMS:
        if d.get(spec.name) is not None:
            out.values[spec.name] = float(d[spec.name])
    for spec in OPTIMIZATION_PARAMS:
        value = (d.get("optimization") or {}).get(field_name(spec))
        if value is not None:
            out.values[spec.name] = float(value)
    return out


def platform_to_dict(p: Scalars) -> dict:
    return {field_name(spec): p.values[spec.name] for spec in PLATFORM_PARAMS}


def platform_from_dict(d: dict | None) -> Scalars | None:
    if d is None:
        return None
    return Scalars({spec.name: float(d[field_name(spec)]) for spec in PLATFORM_PARAMS})
