"""How numbers are written, once, for the terminal and for the HTML report's tables.

Two forms of the same rules: the terminal's (`table=False`) carries its unit in the cell
("-44.1 M", "4 months") and shows a non-finite value as Python writes it ("nan", "inf");
a table's (`table=True`, the HTML report) leaves the unit to the column header ("NPV (M
USD)"), shows money with two decimals and a non-finite value as "n/a". Rates, shares and
probabilities are percent in both.
"""

from __future__ import annotations

import math

MONEY = ("npv", "revenue", "energy_cost", "opex", "ebitda", "var", "cvar", "tail_contribution",
         "mean_npv")
RATES = ("irr", "equity_irr")


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _blank(value, table: bool) -> str:
    if value is None:
        return "-" if not table else "n/a"
    return "n/a" if table else str(float(value))


def money(value, table: bool = False) -> str:
    """Millions of the currency: "-44.1 M" (terminal), "-44.12" (table)."""
    if not _finite(value):
        return _blank(value, table)
    return f"{float(value) / 1e6:,.2f}" if table else f"{float(value) / 1e6:,.1f} M"


def pct(value, digits: int = 2, table: bool = False) -> str:
    """A rate, share or probability given as a fraction, in percent: "5.57 %"."""
    if not _finite(value):
        return _blank(value, table)
    return f"{100 * float(value):.{digits}f} %"


def num(value, table: bool = False) -> str:
    """Any other number: four significant digits in a table, six on the terminal."""
    if not _finite(value):
        return _blank(value, table)
    return f"{float(value):.4g}" if table else f"{float(value):.6g}"


def fmt(name: str, value, table: bool = False) -> str:
    """One number as the terminal (or a report table) shows it. `name` is an output (npv,
    irr, roi, equity_irr, min_dscr, payback_months, revenue, ...), its per-cluster form
    (cluster_npv), its standard error (cvar_95_stderr) or a risk measure (var_95, cvar_99,
    tail_contribution_95, prob_npv_negative, ...)."""
    if value is None or not _finite(value):
        return _blank(value, table)
    key = name.removeprefix("cluster_").removesuffix("_stderr")
    if key in MONEY or key.split("_")[0] in ("var", "cvar") or key.startswith("tail_contribution"):
        return money(value, table)
    if key in RATES:
        return pct(value, 2, table)
    if key == "roi":
        return pct(value, 1, table)
    if key.startswith("prob_"):
        return pct(value, 2, table)
    if key == "min_dscr":
        return f"{float(value):.2f}"
    if key == "payback_months":
        return f"{float(value):.0f}" if table else f"{float(value):.0f} months"
    return num(value, table)
