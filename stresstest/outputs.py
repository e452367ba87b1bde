"""The words every layer shares: output names, statistics, quantiles, the names a result
file uses, and what an expected NaN means. One definition each, at the bottom of the
house (docs/architecture.md): the loaders check axis names against them, the engine
counts non-finite values with them, the writers lay files out with them, the reports
print them.
"""

from __future__ import annotations

from .kernels.params import OUTPUTS

# ------------------------------------------------------------------ what runs print first

SUMMARY_OUTPUTS = ("npv", "irr", "roi")

# ------------------------------------------------------------------ Monte Carlo statistics

QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
STATISTICS = ("mean", "std", "stderr", "min", "max") + tuple(f"p{round(q * 100)}" for q in QUANTILES) + (
    "nonfinite_fraction",)
FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LEVELS = (0.95, 0.99)  # VaR and CVaR confidence levels

# ------------------------------------------------------------------ expected non-finite values

# Where a non-finite value is part of the model's answer rather than a fault
EXPECTED_NONFINITE = {
    "irr": "no rate zeroes the flows",
    "equity_irr": "no debt, or no rate zeroes the equity flows",
    "min_dscr": "no debt, or no month both live and within the loan term",
    "payback_months": "never paid back within the horizon (+inf)",
    "roi": "capex is zero",
    "grad_irr": "the IRR is NaN",
    "slope_irr": "the IRR is NaN",
}

# Where a non-finite value is expected only at some of its cells: a per-parameter output
# (axes..., cluster, parameter) whose value is not applicable where the parameter is
# never (+inf: client_loss_month's default). npv_per_pct = gradient x value x 1 %: a
# percent move of never is not a number, so it is NaN there by definition (jax_adapter);
# anywhere else a non-finite npv_per_pct is a fault and is reported as one.
EXPECTED_WHERE_NEVER = {
    "npv_per_pct": "the parameter is never (+inf): not applicable, a percent move of never is not a number",
}


def output_name(name: str) -> str:
    """The output a dataset holds: `cluster_npv` -> `npv`."""
    return name[len(CLUSTER_DIM) + 1:] if name.startswith(CLUSTER_DIM + "_") else name


# Where a per-parameter output is NaN at the cells of an item a cluster does not have:
# the parameter coordinate of a portfolio with version 2 items names the items of every
# cluster (kernels/sensitivity.py ItemColumns), and moving an item one lacks is no move;
# so is moving the optimization programme of a cluster that runs none
EXPECTED_WHERE_ABSENT = ("the cluster has no item of that name (an item of another cluster), or no "
                         "optimization programme for an optimization field: not applicable")


def expected_reason(name: str, absent: bool = False) -> str | None:
    """Why an output may hold NaN or inf (the file's `nonfinite_means`), or None.
    absent: the parameter coordinate names items that some clusters lack, which adds
    EXPECTED_WHERE_ABSENT to the per-parameter outputs' reasons."""
    why = EXPECTED_NONFINITE.get(output_name(name)) or EXPECTED_WHERE_NEVER.get(name)
    if absent and name in PER_PARAMETER:
        return f"{why}; or {EXPECTED_WHERE_ABSENT}" if why else EXPECTED_WHERE_ABSENT
    return why


# ------------------------------------------------------------------ names in a result file

# The root names of a grid file besides its axes (the axes' coordinates share the root,
# so an axis may not take any of these: the loader refuses them, from reserved_names()).
CLUSTER_DIM = "cluster"  # the cluster names; per-cluster outputs are "cluster_" + output
BASE_GROUP = "base"  # the base case's outputs
PARAMETER_DIM = "parameter"  # --sensitivities: the cluster parameters (then the items' fields)
AXIS_DIM = "axis"  # --sensitivities: the grid's axes, for the slopes along them
INDUSTRY_DIM = "industry"  # version 2: the industry labels (items.industry_labels)
PER_UNIT = "USD per unit of the parameter"
# --sensitivities: (name, dims after the grid's, units, long name)
SENSITIVITY_VARIABLES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    *((name, (CLUSTER_DIM, PARAMETER_DIM), units,
       f"derivative of the {what} with respect to each cluster's parameter") for name, units, what in (
        ("grad_npv", PER_UNIT, "portfolio NPV"),
        ("grad_roi", "1 per unit of the parameter", "portfolio ROI"),
        ("grad_irr", "per year per unit of the parameter", "portfolio IRR (implicit function theorem)"),
        ("grad_cluster_npv", PER_UNIT, "each cluster's own NPV"))),
    ("npv_per_pct", (CLUSTER_DIM, PARAMETER_DIM), "USD",
     "first-order change of the portfolio NPV for a +1 % relative move of the parameter"),
    ("grad_npv_discount_rate", (), "USD per unit of discount_rate",
     "derivative of the portfolio NPV with respect to discount_rate"),
    ("grad_cluster_npv_discount_rate", (CLUSTER_DIM,), "USD per unit of discount_rate",
     "derivative of each cluster's NPV with respect to discount_rate"),
    *(("slope_" + name, (AXIS_DIM,), f"{units} per unit of the axis",
       f"derivative of the portfolio {name} along each axis (through the shocks)")
      for name, units in (("npv", "USD"), ("roi", "1"), ("irr", "per year"))),
)


# Version 2, where the portfolio carries items: revenue by industry, (name, dims after
# the grid's, units, long name); the kernels return them as metrics.ITEMISED says
INDUSTRY_VARIABLES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("revenue_by_industry", (INDUSTRY_DIM,), "USD",
     "total revenue over months 1..T by industry of the contract or segment"),
    (CLUSTER_DIM + "_revenue_by_industry", (CLUSTER_DIM, INDUSTRY_DIM), "USD",
     "total revenue over months 1..T by industry of the contract or segment (per cluster)"),
)

# Version 2, part 2: the outputs of the optimization programmes (portfolio and clusters)
# and of the platform layer (the portfolio's only), under the group of the kernels'
# arrays that returns them (programmes.GROUPS; metrics.PROGRAMME_OUTPUTS,
# PLATFORM_OUTPUTS): (name, dims after the grid's, units, long name)
GROUP_VARIABLES: dict[str, tuple[tuple[str, tuple[str, ...], str, str], ...]] = {
    "optimization": (
        ("optimization_cost", (), "USD",
         "total cost of the optimization programmes over months 1..T (one-off and yearly, in opex)"),
        (CLUSTER_DIM + "_optimization_cost", (CLUSTER_DIM,), "USD",
         "total cost of the optimization programme over months 1..T (per cluster; 0 without one)"),
    ),
    "platform": (
        ("platform_npv", (), "USD",
         "net present value of the platform layer's cash flows (part of npv, in no cluster_npv)"),
        ("platform_revenue", (), "USD",
         "total revenue of the platform layer over months 1..T (part of revenue, in no cluster_revenue)"),
    ),
}


# The outputs of --sensitivities with a value per cluster and parameter
PER_PARAMETER = tuple(name for name, dims, *_ in SENSITIVITY_VARIABLES if PARAMETER_DIM in dims)


def reserved_names() -> dict[str, str]:
    """Every root name a grid result file may hold besides its axes' coordinates, with
    what it holds there: the names the grid writer writes (one list, read by both)."""
    names = {CLUSTER_DIM: "the cluster dimension", BASE_GROUP: "the group of base-case outputs"}
    for name in OUTPUTS:
        names[name] = "an output"
        names[CLUSTER_DIM + "_" + name] = "a per-cluster output"
    names[PARAMETER_DIM] = "the parameter dimension of --sensitivities"
    names[AXIS_DIM] = "the axis dimension of --sensitivities"
    for name, *_ in SENSITIVITY_VARIABLES:
        names[name] = "an output of --sensitivities"
    names[INDUSTRY_DIM] = "the industry dimension of version 2 files"
    for name, *_ in INDUSTRY_VARIABLES:
        names[name] = "an output by industry"
    for group, variables in GROUP_VARIABLES.items():
        for name, *_ in variables:
            names[name] = f"a version 2 output ({group})"
    return names
