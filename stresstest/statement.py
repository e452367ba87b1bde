"""The cash-flow statement (`stresstest cashflows`): the model's monthly line items.

A statement is read off the model's own kernels (kernels/cashflows.cash_flow_lines,
numpy backend) at one point: the base case, a grid point, a named shock set or one
Monte Carlo path (the run's draws, by seed and path index). Its columns are the very
arrays the flows are built from, so they add up to the run's outputs (NPV, IRR, the
totals, equity IRR, min DSCR, payback): tests/test_statement.py checks each, and
tests/test_v2_statement.py on version 2 portfolios.

Layout: `values` [scope, period, column], scopes the portfolio, the clusters, then
the platform layer where the portfolio has one (its flows count in the portfolio's),
periods months 0..T (or years 0..ceil(T/12) with --annual). Sign convention: costs
are positive numbers in their own lines (energy, opex lines, depreciation, tax, capex,
debt service ...), flows are signed (EBITDA, project CF, equity CF). The columns of an
optimization programme and of a platform appear only where the portfolio has them, so
a version 1 statement keeps its columns. docs/model.md, "The cash-flow statement",
describes every column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import Portfolio
from .kernels.metrics import PLATFORM_OUTPUTS, PROGRAMME_OUTPUTS
from .kernels.params import OUTPUTS
from .validation import ConfigError

# (key, terminal header, kind): kind "flow" sums over a year, "stock" takes the year's
# last month, "ratio" the year's minimum (DSCR), "factor" is monthly only.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("revenue_reserved", "revenue\nreserved", "flow"),
    ("revenue_on_demand", "revenue\non-demand", "flow"),
    ("revenue_platform", "platform\nrevenue", "flow"),
    ("revenue", "revenue", "flow"),
    ("energy", "energy", "flow"),
    ("maintenance", "maintenance", "flow"),
    ("software", "software", "flow"),
    ("colocation", "colocation", "flow"),
    ("staff", "staff", "flow"),
    ("optimization_cost", "optimization\ncost", "flow"),
    ("cost_of_sales_platform", "platform cost\nof sales", "flow"),
    ("run_cost_platform", "platform\nrun cost", "flow"),
    ("build_cost_platform", "platform\nbuild cost", "flow"),
    ("opex", "opex", "flow"),
    ("ebitda", "EBITDA", "flow"),
    ("depreciation", "depreciation", "flow"),
    ("tax", "tax", "flow"),
    ("resale", "resale", "flow"),
    ("tax_on_sale", "tax on\nsale", "flow"),
    ("terminal_value", "terminal\nvalue", "flow"),
    ("capex", "capex", "flow"),
    ("project_cf", "project\nCF", "flow"),
    ("discount_factor", "discount\nfactor", "factor"),
    ("discounted_cf", "discounted\nCF", "flow"),
    ("cumulative_cf", "cumulative\nCF", "stock"),
    ("debt_drawdown", "debt\ndrawdown", "flow"),
    ("debt_service", "debt\nservice", "flow"),
    ("interest", "interest", "flow"),
    ("principal", "principal", "flow"),
    ("balance", "balance", "stock"),
    ("interest_tax_shield", "interest\ntax shield", "flow"),
    ("equity_cf", "equity\nCF", "flow"),
    ("dscr", "DSCR", "ratio"),
)
# the columns of a portfolio with an optimization programme, and with a platform layer
PROGRAMME_COLUMNS = ("optimization_cost",)
PLATFORM_COLUMNS = ("revenue_platform", "cost_of_sales_platform", "run_cost_platform", "build_cost_platform")
# the columns of every statement (version 1's all)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS if c[0] not in PROGRAMME_COLUMNS + PLATFORM_COLUMNS)
KIND = {c[0]: c[2] for c in COLUMNS}
HEADER = {c[0]: c[1] for c in COLUMNS}
LONG_NAMES = {
    "revenue_reserved": "revenue from the reserved (take-or-pay) book",
    "revenue_on_demand": "revenue from the on-demand pool, priority premium included",
    "revenue_platform": "the platform's revenue: take rate x the clusters' revenue + user fees",
    "revenue": "revenue (reserved + on-demand, and the platform's where there is one)",
    "energy": "energy cost",
    "maintenance": "maintenance (opex line)",
    "software": "software and licences (opex line)",
    "colocation": "colocation rent (opex line)",
    "staff": "staff cost (opex line)",
    "optimization_cost": "the optimization programme's cost (opex line; its savings are in the other lines)",
    "cost_of_sales_platform": "the platform's cost of sales, (1 - margin) x its revenue (opex line)",
    "run_cost_platform": "the platform's run cost (opex line)",
    "build_cost_platform": "the platform's build cost, expensed at launch (opex line)",
    "opex": "operating cost (the opex lines summed)",
    "ebitda": "EBITDA = revenue - energy - opex",
    "depreciation": "straight-line depreciation",
    "tax": "tax on EBITDA - depreciation (negative: loss relief)",
    "resale": "resale value of the GPU hardware at the horizon",
    "tax_on_sale": "tax on the gain of the sale over book value",
    "terminal_value": "resale - tax on sale",
    "capex": "capital expenditure (at the order month; month 0 in version 1)",
    "project_cf": "project cash flow = EBITDA - tax + terminal value - capex",
    "discount_factor": "(1 + discount rate)^(-month/12)",
    "discounted_cf": "project cash flow x discount factor",
    "cumulative_cf": "cumulative project cash flow (end of period)",
    "debt_drawdown": "debt drawn (at the order month, with the capex)",
    "debt_service": "level payment in the loan term, plus the balance left at the horizon",
    "interest": "interest on the balance at the start of the month",
    "principal": "debt service - interest",
    "balance": "debt outstanding after the period's payments",
    "interest_tax_shield": "tax rate x interest, added back to equity",
    "equity_cf": "equity cash flow = project CF + drawdown - debt service + interest tax shield",
    "dscr": "debt service cover ratio (EBITDA - tax) / level payment; annual: the year's minimum",
}
FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".h5": "h5", ".hdf5": "h5", ".nc": "h5"}
PORTFOLIO_SCOPE = "portfolio"
PLATFORM_SCOPE = "platform"
# --at: a value within this of a grid value (absolute, or relative to the value) picks it
AT_TOLERANCE = 1e-9


def units(currency: str) -> dict[str, str]:
    return {name: ("1" if kind in ("ratio", "factor") else currency) for name, kind in KIND.items()}


def statement_columns(programme: bool, platform: bool) -> tuple[str, ...]:
    """The columns of a statement, in COLUMNS' order: every statement's, and those of an
    optimization programme and of a platform layer where the portfolio has them."""
    extra = (PROGRAMME_COLUMNS if programme else ()) + (PLATFORM_COLUMNS if platform else ())
    return tuple(c[0] for c in COLUMNS if c[0] in COLUMN_NAMES or c[0] in extra)


# --------------------------------------------------------------------- the point


@dataclass
class Case:
    """Where the statement is read: the shocked parameters [1, C], the discount rate [1],
    the Monte Carlo factors (or None) and a description for the reader."""

    kind: str  # base, grid, named or path
    label: str
    params: dict
    rate: np.ndarray
    factors: dict | None = None
    equity: tuple[int, ...] = ()
    info: dict = field(default_factory=dict)


def output_format(path: Path) -> str:
    """csv, xlsx or h5, from the file's suffix; ConfigError otherwise."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError([f"-o {path}: unknown format {Path(path).suffix or '(no suffix)'!r}; "
                           "give a name ending in .csv, .xlsx or .h5"])
    return fmt


def check_clusters(pf: Portfolio, clusters) -> None:
    for c in clusters:
        if c not in pf.cluster_names:
            raise ConfigError([f"--cluster: unknown cluster {c!r} (clusters: {', '.join(pf.cluster_names)})"])


def _values_text(values, limit: int = 20) -> str:
    v = [f"{x:g}" for x in np.asarray(values, dtype=float)]
    if len(v) > limit:
        return f"{', '.join(v[:10])}, ..., {', '.join(v[-5:])} ({len(v)} values)"
    return ", ".join(v)


def _parse_at(at) -> tuple[dict[str, str], list[str]]:
    held, problems = {}, []
    for item in at:
        if "=" not in item:
            problems.append(f"--at: must be AXIS=VALUE, got {item!r}")
            continue
        k, v = (s.strip() for s in item.split("=", 1))
        if k in held:
            problems.append(f"--at: axis {k!r} given twice")
        held[k] = v
    return held, problems


def resolve_case(pf: Portfolio, scenario=None, at=(), path: int | None = None) -> Case:
    """The point of a statement, every input checked (ConfigError lists the problems)
    before anything is computed. scenario: None (base case) or a loaded scenario."""
    from .engine import equity_clusters
    from .kernels.shocks import apply_axis_values

    at = tuple(at)
    base = {k: v.astype(np.float64) for k, v in pf.base_arrays().items()}
    rate = np.asarray(pf.discount_rate, dtype=np.float64)
    if scenario is None:
        if at:
            raise ConfigError(["--at: needs a scenario with axes (-s FILE, kind: grid or named)"])
        if path is not None:
            raise ConfigError(["--path: needs a Monte Carlo scenario (-s FILE with kind: montecarlo)"])
        # through the shocks with no axis, as engine.evaluate_base: a version 2 portfolio's
        # clusters without items of their own get the implied ones from their version 1 keys
        with np.errstate(all="ignore"):
            params, r = apply_axis_values(base, rate, (), ())
        return Case("base", "base case (no shock)", params, r, equity=equity_clusters(pf),
                    info={"case": "base"})
    kind = scenario.kind
    if kind == "montecarlo":
        if at:
            raise ConfigError([f"--at: {scenario.path} is a Monte Carlo scenario; pick a path "
                               "with --path N"])
        if path is None:
            raise ConfigError([f"--path: required with the Monte Carlo scenario {scenario.path} "
                               f"(a path index, 0..{scenario.paths - 1})"])
        return _path_case(pf, scenario, path, base, rate)
    if path is not None:
        raise ConfigError([f"--path: needs a Monte Carlo scenario; {scenario.path} is kind: {kind} "
                           "(pick its point with --at)"])
    held, problems = _parse_at(at)
    if kind == "named":
        return _named_case(pf, scenario, held, problems)
    return _grid_case(pf, scenario, held, problems, base, rate)


def _grid_case(pf, sc, held: dict, problems: list, base, rate) -> Case:
    from .engine import equity_clusters
    from .kernels.shocks import shocked_params

    names = [a.name for a in sc.axes]
    for k in held:
        if k not in names:
            problems.append(f"--at: unknown axis {k!r} (axes of {sc.name}: {', '.join(names) or 'none'})")
    index = []
    for a in sc.axes:
        if a.name not in held:
            if len(a.values) == 1:  # a single value: nothing to choose
                index.append(0)
                continue
            problems.append(f"--at: missing for axis {a.name!r} (give --at {a.name}=VALUE; "
                            f"values: {_values_text(a.values)})")
            continue
        text = held[a.name]
        try:
            v = float(text)
        except ValueError:
            problems.append(f"--at: {a.name}: value must be a number, got {text!r}")
            continue
        gap = np.abs(a.values - v)
        ok = gap <= AT_TOLERANCE * np.maximum(1.0, np.abs(a.values))
        if not ok.any():
            problems.append(f"--at: {a.name}={text}: not a value of the axis (values: "
                            f"{_values_text(a.values)})")
            continue
        index.append(int(np.argmax(ok)))
    if problems:
        raise ConfigError(problems)
    flat = int(np.ravel_multi_index(tuple(index), sc.shape)) if sc.axes else 0
    specs = tuple(a.spec for a in sc.axes)
    values = tuple(a.values.astype(np.float64) for a in sc.axes)
    with np.errstate(all="ignore"):  # the engine's own shocks, at flat index `flat`
        params, r = shocked_params(base, rate, specs, values, np.asarray([flat], dtype=np.int64))
    point = {a.name: float(a.values[i]) for a, i in zip(sc.axes, index)}
    label = ", ".join(f"{k}={v:g}" for k, v in point.items()) or "the only point"
    return Case("grid", f"scenario {sc.name}, {label}", params, r, equity=equity_clusters(pf, sc),
                info={"case": "grid", "scenario": sc.name, "point": point, "flat_index": flat})


def _named_case(pf, sc, held: dict, problems: list) -> Case:
    from .engine import equity_clusters
    from .named import shocked

    sets = [s.name for s in sc.sets]
    for k in held:
        if k != "scenario":
            problems.append(f"--at: unknown axis {k!r} (a named scenario has one axis, scenario: "
                            f"--at scenario=NAME)")
    if "scenario" not in held:
        problems.append(f"--at: missing for axis 'scenario' (give --at scenario=NAME; sets: {', '.join(sets)})")
    elif held["scenario"] not in sets:
        problems.append(f"--at: scenario={held['scenario']}: not a set of {sc.name} (sets: {', '.join(sets)})")
    if problems:
        raise ConfigError(problems)
    chosen = sc.sets[sets.index(held["scenario"])]
    params, r = shocked(pf, [chosen])
    return Case("named", f"scenario {sc.name}, set {chosen.name} ({chosen.title})",
                {k: v[1:2] for k, v in params.items()}, r[1:2], equity=equity_clusters(pf, sc),
                info={"case": "named", "scenario": sc.name, "set": chosen.name})


def _path_case(pf, mc, path: int, base, rate) -> Case:
    """Path `path` of a Monte Carlo run: its factors and events drawn exactly as
    mc_paths.path_outputs_fn draws them, from (seed, path index) alone."""
    from .engine import equity_clusters
    from .kernels.paths import apply_events, event_draws, path_factors, seed_key

    if not 0 <= path < mc.paths:
        raise ConfigError([f"--path: {path} is not a path of {mc.name} (paths 0..{mc.paths - 1})"])
    key = seed_key(mc.seed)
    paths = np.asarray([path], dtype=np.uint64)
    dtype = np.dtype(np.float64)
    with np.errstate(all="ignore"):
        factors = path_factors(np, key, paths, mc.spec, dtype)
        draws = event_draws(np, key, paths, mc.events, mc.spec.n_series, pf.horizon_months,
                            len(pf.clusters), dtype)
        params = apply_events(base, mc.events, draws)
    r = np.broadcast_to(np.reshape(rate, (1,)), (1,))
    return Case("path", f"scenario {mc.name}, path {path} (seed {mc.seed})", params, r, factors,
                equity_clusters(pf, mc), info={"case": "path", "scenario": mc.name, "path": path,
                                           "seed": mc.seed})


# ------------------------------------------------------------------- computing


@dataclass
class Statement:
    portfolio: Portfolio
    case: Case
    period: str  # "month" or "year"
    periods: np.ndarray  # int
    columns: tuple[str, ...]
    scopes: tuple[str, ...]
    values: np.ndarray  # [scope, period, column]
    outputs: dict[str, dict[str, float]]  # scope -> the run's outputs at this point
    with_portfolio: bool = True  # scopes[0] is the portfolio (select() leaves it out)
    with_platform: bool = False  # scopes[-1] is the platform layer (select() leaves it out)

    @property
    def clusters(self) -> tuple[str, ...]:
        first = 1 if self.with_portfolio else 0
        return self.scopes[first:len(self.scopes) - (1 if self.with_platform else 0)]

    def column(self, scope: str, name: str) -> np.ndarray:
        """One column of one scope ("portfolio" or a cluster's name)."""
        return self.values[self._index(scope), :, self.columns.index(name)]

    def _index(self, scope: str) -> int:
        if self.with_portfolio and scope == PORTFOLIO_SCOPE:
            return 0
        if self.with_platform and scope == PLATFORM_SCOPE:
            return len(self.scopes) - 1
        return (1 if self.with_portfolio else 0) + list(self.clusters).index(scope)

    def table(self, scope: str) -> dict[str, np.ndarray]:
        return {name: self.column(scope, name) for name in self.columns}

    def select(self, clusters) -> "Statement":
        """Only these clusters (the portfolio and the platform left out), in the order given."""
        if not clusters:
            return self
        keep = [self._index(c) for c in clusters]
        return replace(self, scopes=tuple(clusters), values=self.values[keep],
                       outputs={c: self.outputs[c] for c in clusters}, with_portfolio=False,
                       with_platform=False)

    def annual(self) -> "Statement":
        """By year: year 0 is month 0 (capex, drawdown), year y months 12(y-1)+1..12y (the
        last year may be short). Flows are sums, balance and cumulative CF the year's last
        month, DSCR the year's minimum over its qualifying months (so the minimum over the
        years is min DSCR); the discount factor is left out (discounted CF is summed)."""
        if self.period == "year":
            return self
        T = int(self.periods[-1])
        years = np.concatenate([[0], (np.arange(1, T + 1) + 11) // 12])
        n_years = int(years[-1]) + 1
        cols = tuple(c for c in self.columns if KIND[c] != "factor")
        out = np.full((len(self.scopes), n_years, len(cols)), np.nan)
        first = np.searchsorted(years, np.arange(n_years))
        last = np.searchsorted(years, np.arange(n_years), side="right") - 1
        for j, c in enumerate(cols):
            x = self.values[:, :, self.columns.index(c)]
            if KIND[c] == "flow":
                out[:, :, j] = np.add.reduceat(x, first, axis=1)
            elif KIND[c] == "stock":
                out[:, :, j] = x[:, last]
            else:
                for y in range(n_years):
                    part = x[:, first[y]:last[y] + 1]
                    seen = ~np.isnan(part)
                    out[:, y, j] = np.where(seen.any(axis=1),
                                            np.min(np.where(seen, part, np.inf), axis=1), np.nan)
        return replace(self, period="year", periods=np.arange(n_years), columns=cols, values=out)

    def to_json(self, output: str | None = None) -> dict:
        def clean(v):
            v = float(v)
            return v if math.isfinite(v) else None

        pf = self.portfolio
        return {
            "portfolio": pf.name, "currency": pf.currency, "horizon_months": pf.horizon_months,
            "case": {**self.case.info, "label": self.case.label},
            "period": self.period, "columns": list(self.columns),
            "units": {c: units(pf.currency)[c] for c in self.columns},
            "scopes": {s: {self.period: [int(p) for p in self.periods],
                           **{c: [clean(v) for v in self.column(s, c)] for c in self.columns}}
                       for s in self.scopes},
            "outputs": {s: {k: clean(v) for k, v in o.items()} for s, o in self.outputs.items()},
            "output": output,
        }


def compute(pf: Portfolio, case: Case) -> Statement:
    """The monthly statement of the portfolio, every cluster and the platform layer (where
    there is one) at `case`, from the kernels (numpy): cash_flow_lines for the lines,
    evaluate for the outputs."""
    from .kernels.cashflows import cash_flow_lines
    from .kernels.metrics import evaluate

    T, C = pf.horizon_months, len(pf.clusters)
    with np.errstate(all="ignore"):
        fl = cash_flow_lines(case.params, T, case.factors)
        res = evaluate(case.params, case.rate, T, equity_clusters=case.equity, factors=case.factors)
    L = fl["lines"]
    platform = fl.get("platform")
    columns = statement_columns("optimization_cost" in fl, platform is not None)

    def monthly(x):  # months 1..T -> [C, T+1] with month 0 = 0
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C, T))[0]
        return np.concatenate([np.zeros((C, 1)), x], axis=1)

    def every_month(x):  # months 0..T, [S|1, C, T+1] -> [C, T+1]
        return np.array(np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C, T + 1))[0])

    def at_end(x):  # [S|1, C, 1] paid at T
        out = np.zeros((C, T + 1))
        out[:, T] = np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C, 1))[0, :, 0]
        return out

    one = lambda a: np.broadcast_to(np.asarray(a), (1, C))[0]  # noqa: E731  [S|1, C] -> [C]
    debt, A = one(fl["debt"]), one(fl["A"])
    cf, cfe = every_month(fl["cf"]), every_month(fl["cfe"])
    r = float(np.asarray(case.rate).reshape(-1)[0])
    t = np.arange(T + 1, dtype=np.float64)
    v = np.exp(-(t / 12.0) * np.log1p(r))  # as kernels.metrics.npv discounts

    cols = {name: monthly(L[name]) for name in (
        "revenue_reserved", "revenue_on_demand", "revenue", "energy", "maintenance", "software",
        "colocation", "staff", "optimization_cost", "opex", "ebitda", "depreciation", "tax", "interest",
        "interest_tax_shield")}
    for name in PLATFORM_COLUMNS:  # the clusters' share of the platform's lines: none
        cols[name] = np.zeros((C, T + 1))
    cols["resale"] = at_end(L["resale"])
    cols["tax_on_sale"] = at_end(L["tax_on_sale"])
    cols["terminal_value"] = at_end(L["terminal"])
    cols["capex"] = every_month(L["capex"])  # at the order month, as cf takes it
    cols["project_cf"] = cf
    cols["discount_factor"] = np.broadcast_to(v, (C, T + 1)).copy()
    cols["discounted_cf"] = cf * v
    cols["cumulative_cf"] = np.cumsum(cf, axis=-1)
    cols["debt_drawdown"] = every_month(L["debt_draw"])
    balloon = monthly(L["balloon"])
    cols["debt_service"] = monthly(L["debt_service"]) + balloon
    cols["principal"] = cols["debt_service"] - cols["interest"]
    balance = monthly(L["balance"]) - balloon
    balance[:, 0] = cols["debt_drawdown"][:, 0]
    cols["balance"] = balance
    cols["equity_cf"] = cfe
    # DSCR: as kernels.metrics.finish, month by month (NaN where the month does not count)
    elt = np.broadcast_to(fl["ebitda_less_tax"], (1, C, T))[0]
    month_ok = np.broadcast_to(fl["dscr_month"], (1, C, T))[0]
    has_debt = debt != 0
    with np.errstate(all="ignore"):
        c_dscr = np.where(month_ok & has_debt[:, None], elt / np.where(has_debt, A, 1.0)[:, None], np.nan)
    cols["dscr"] = np.concatenate([np.full((C, 1), np.nan), c_dscr], axis=1)

    # the portfolio: sums month by month (as the kernels sum the clusters' flows, the
    # platform's added), its own cumulative flow, and the pooled DSCR of kernels.metrics.finish
    plat = None if platform is None else _platform_columns(platform, v)
    port = {}
    for name, x in cols.items():
        port[name] = np.sum(x, axis=0)
        if plat is not None and KIND[name] == "flow":
            port[name] = port[name] + plat[name]
    port["discount_factor"] = v.copy()
    port["cumulative_cf"] = np.cumsum(port["project_cf"])
    window = np.all(month_ok | ~has_debt[:, None], axis=0)
    den = np.sum(np.where(has_debt, A, 0.0))
    p_elt = np.sum(elt, axis=0)
    if plat is not None:  # the platform's flows count in the numerator
        p_elt = p_elt + plat["project_cf"][1:]
    with np.errstate(all="ignore"):
        ratio = p_elt / (den if den != 0 else 1.0)
    port["dscr"] = np.concatenate([[np.nan], np.where(window & (den != 0), ratio, np.nan)])

    blocks = [port, *({name: x[c] for name, x in cols.items()} for c in range(C))]
    scopes = [PORTFOLIO_SCOPE, *pf.cluster_names]
    if plat is not None:
        blocks.append(plat)
        scopes.append(PLATFORM_SCOPE)
    values = np.stack([np.stack([b[name] for name in columns], axis=-1) for b in blocks])
    return Statement(pf, case, "month", np.arange(T + 1), columns, tuple(scopes), values,
                     _outputs(pf, res, platform), with_platform=plat is not None)


def _platform_columns(platform: dict, v: np.ndarray) -> dict[str, np.ndarray]:
    """The platform layer's columns [T+1] from platform_flows' lines: its revenue and
    costs, EBITDA, tax and CF^p (project and equity CF: it carries no debt and no
    capex); 0 in the clusters' lines, no DSCR."""
    pl = {k: np.concatenate([[0.0], np.asarray(x, dtype=np.float64)[0]]) for k, x in platform["lines"].items()}
    cf = np.asarray(platform["cf"], dtype=np.float64)[0]
    out = {name: np.zeros_like(cf) for name in KIND}
    out.update({"revenue_platform": pl["revenue"], "revenue": pl["revenue"],
                "cost_of_sales_platform": pl["cost_of_sales"], "run_cost_platform": pl["run_cost"],
                "build_cost_platform": pl["build_cost"], "opex": pl["opex"], "ebitda": pl["ebitda"],
                "tax": pl["tax"], "project_cf": cf, "discount_factor": v.copy(), "discounted_cf": cf * v,
                "cumulative_cf": np.cumsum(cf), "equity_cf": cf, "dscr": np.full_like(cf, np.nan)})
    return out


def _outputs(pf: Portfolio, res: dict, platform: dict | None) -> dict[str, dict[str, float]]:
    """The run's outputs per scope: OUTPUTS, and optimization_cost where there is a
    programme; the portfolio's platform_npv and platform_revenue, and the platform's own
    NPV and totals (its opex and EBITDA the kernels' totals; no capex, so NaN for the
    ratios, IRRs and payback) where there is a platform."""
    first = lambda x: np.asarray(x).reshape(-1)[0]  # noqa: E731  [1] -> scalar
    own = OUTPUTS + tuple(o for o in PROGRAMME_OUTPUTS if o in res)
    outputs = {PORTFOLIO_SCOPE: {o: float(first(res[o]))
                                 for o in own + tuple(o for o in PLATFORM_OUTPUTS if o in res)}}
    for c, name in enumerate(pf.cluster_names):
        outputs[name] = {o: float(np.asarray(res["cluster_" + o])[0, c]) for o in own}
    if platform is not None:
        outputs[PLATFORM_SCOPE] = {o: math.nan for o in OUTPUTS} | {
            "npv": float(first(res["platform_npv"])), "revenue": float(first(res["platform_revenue"])),
            "energy_cost": 0.0, "opex": float(first(platform["opex"])),
            "ebitda": float(first(platform["ebitda"]))}
    return outputs


def statement(pf: Portfolio, scenario=None, at=(), path: int | None = None, clusters=(),
              annual: bool = False) -> Statement:
    """The statement at a point (see resolve_case), of the portfolio, every cluster and
    the platform layer, or of `clusters` only; by year with annual=True."""
    check_clusters(pf, clusters)
    st = compute(pf, resolve_case(pf, scenario, at, path))
    st = st.select(list(clusters))
    return st.annual() if annual else st


# --------------------------------------------------------------------- writing


def write(st: Statement, path: Path) -> Path:
    """Write the statement to `path` (.csv, .xlsx or .h5) under a temporary name in the
    same folder, renamed into place when complete (removed if anything fails)."""
    from .h5io import AtomicPath

    fmt = output_format(Path(path))
    with AtomicPath(path) as out:
        {"csv": write_csv, "xlsx": write_xlsx, "h5": write_h5}[fmt](st, out.tmp)
        return out.commit()


def _cell(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else ("" if math.isnan(v) else repr(float(v)))


def write_csv(st: Statement, path: Path) -> None:
    """One row per (scope, period), one column per line: scope, month (or year), then the
    lines; numbers in Python's shortest round-trip form, NaN (a DSCR month that does not
    count) as an empty field."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["scope", st.period, *st.columns])
        for k, s in enumerate(st.scopes):
            block = st.values[k]
            for i, p in enumerate(st.periods):
                w.writerow([s, int(p), *(_cell(x) for x in block[i])])


def sheet_names(scopes) -> list[str]:
    """Excel sheet names for the scopes (31 characters, no []:*?/\\), unique, plus 'about'."""
    out: list[str] = []
    for s in (*scopes, "about"):
        base = "".join("_" if ch in '[]:*?/\\' else ch for ch in s)[:31] or "_"
        name, k = base, 1
        while name.lower() in (n.lower() for n in out):
            k += 1
            name = f"{base[:31 - len(str(k)) - 1]}~{k}"
        out.append(name)
    return out


def output_names(st: Statement) -> list[str]:
    """The outputs any scope of the statement holds: OUTPUTS, then version 2's."""
    extra = [o for o in PROGRAMME_OUTPUTS + PLATFORM_OUTPUTS if any(o in st.outputs[s] for s in st.scopes)]
    return [*OUTPUTS, *extra]


def write_xlsx(st: Statement, path: Path) -> None:
    """One sheet per scope (the portfolio first): a header row of column names, then one
    row per period, numbers stored as numbers (NaN: an empty cell); a last sheet 'about'
    with the point, the units and the run's outputs per scope (empty where a scope has
    none: the platform's IRR, a cluster's platform_npv)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    from .version import __version__

    wb = Workbook()
    wb.remove(wb.active)
    names = sheet_names(st.scopes)
    fmt = {"ratio": "0.000", "factor": "0.000000"}
    for k, sheet in enumerate(names[:-1]):
        ws = wb.create_sheet(sheet)
        ws.append([st.period, *st.columns])
        block = st.values[k]
        for i, p in enumerate(st.periods):
            ws.append([int(p), *(float(x) if math.isfinite(x) else None for x in block[i])])
        for j, c in enumerate(st.columns, start=2):
            letter = get_column_letter(j)
            ws.column_dimensions[letter].width = max(14, len(c) + 2)
            number_format = fmt.get(KIND[c], "#,##0.00")
            for row in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                row[0].number_format = number_format
        ws.freeze_panes = "B2"
    about = wb.create_sheet(names[-1])
    pf = st.portfolio
    for k, v in (("portfolio", pf.name), ("case", st.case.label), ("currency", pf.currency),
                 ("period", st.period), ("horizon_months", pf.horizon_months),
                 ("model_version", pf.model_version), ("stresstest_version", __version__),
                 ("sheets", ", ".join(f"{n} = {s}" for n, s in zip(names, st.scopes)))):
        about.append([k, v])
    about.append([])
    names = output_names(st)
    about.append(["outputs at this point", *names])
    for s in st.scopes:
        got = [st.outputs[s].get(o, math.nan) for o in names]
        about.append([s, *(x if math.isfinite(x) else None for x in got)])
    about.column_dimensions["A"].width = 24
    wb.save(path)


def write_h5(st: Statement, path: Path) -> None:
    """xarray-readable HDF5 (h5netcdf): dims `month` (or `year`) and `cluster`; the
    portfolio's lines under their names (dims month), each cluster's as cluster_<line>
    (dims month, cluster) and the platform's as platform_<line> (dims month), as in a
    result file."""
    import xarray as xr

    from .version import __version__

    pf = st.portfolio
    u = units(pf.currency)
    data = {}
    first = 1 if st.with_portfolio else 0
    clusters = slice(first, first + len(st.clusters))
    for j, c in enumerate(st.columns):
        attrs = {"units": u[c], "long_name": LONG_NAMES[c]}
        if st.with_portfolio:
            data[c] = xr.Variable((st.period,), st.values[0, :, j], attrs)
        data["cluster_" + c] = xr.Variable((st.period, "cluster"), st.values[clusters, :, j].T, attrs)
        if st.with_platform:
            data["platform_" + c] = xr.Variable((st.period,), st.values[-1, :, j], attrs)
    ds = xr.Dataset(data, coords={st.period: np.asarray(st.periods, dtype=np.int64),
                                  "cluster": np.array(list(st.clusters), dtype=object)})
    ds.attrs.update({
        "kind": "cashflow_statement", "portfolio": pf.name, "currency": pf.currency,
        "horizon_months": pf.horizon_months, "case": st.case.label,
        "case_json": json.dumps(st.case.info), "period": st.period,
        "outputs_json": json.dumps({s: {k: (v if math.isfinite(v) else None) for k, v in o.items()}
                                    for s, o in st.outputs.items()}),
        "model_version": pf.model_version, "stresstest_version": __version__,
    })
    ds.to_netcdf(path, engine="h5netcdf")


# -------------------------------------------------------------------- printing

_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def money_unit(values: np.ndarray) -> tuple[float, str]:
    """(divisor, label): the smallest of 1, k, M, B, T in which the largest amount has at
    most six digits before the point."""
    finite = np.abs(values[np.isfinite(values)])
    biggest = float(finite.max()) if finite.size else 0.0
    for div, label in reversed(_UNITS):
        if biggest / div < 1e6:
            return div, label
    return _UNITS[0]


def _text(name: str, v: float, unit: float) -> str:
    if not math.isfinite(v):
        return "-" if math.isnan(v) else str(v)
    if KIND[name] == "ratio":
        return f"{v:.2f}"
    if KIND[name] == "factor":
        return f"{v:.4f}"
    return f"{v / unit + 0.0:,.1f}"


def _headline(o: dict, platform: bool = False) -> str:
    from .report import fmt

    if platform:  # no capex: no IRR, ROI, payback or DSCR of its own
        return (f"NPV {fmt('npv', o['npv'])} (platform_npv, counted in the portfolio's), "
                f"revenue {fmt('revenue', o['revenue'])}")
    def pct(x):
        return "-" if not math.isfinite(x) else f"{100 * x:.2f} %"

    pay = o["payback_months"]
    return (f"NPV {fmt('npv', o['npv'])}, IRR {pct(o['irr'])}, ROI {fmt('roi', o['roi'])}, "
            f"equity IRR {pct(o['equity_irr'])}, min DSCR "
            f"{'-' if not math.isfinite(o['min_dscr']) else format(o['min_dscr'], '.2f')}, "
            f"payback {'never' if math.isinf(pay) else format(pay, '.1f') + ' months'}")


def print_statement(st: Statement, console=None, scopes=None) -> None:
    """The statement as rich tables: every period a row; the columns split into as many
    tables as the terminal's width needs (the period repeated in each), numbers never cut;
    amounts in one unit per scope, named in its title. scopes: the indices of the scopes
    to print (default: all)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    pf = st.portfolio
    console.print(f"[bold]{pf.name}[/]: cash-flow statement by {st.period}, {st.case.label}")
    for k, s in enumerate(st.scopes):
        if scopes is not None and k not in scopes:
            continue
        money = [j for j, c in enumerate(st.columns) if KIND[c] in ("flow", "stock")]
        unit, label = money_unit(st.values[k][:, money])
        is_platform = st.with_platform and k == len(st.scopes) - 1
        where = ("portfolio" if st.with_portfolio and k == 0 else "platform layer" if is_platform
                 else f"cluster {s}")
        console.print(f"[bold]{where}[/] (amounts in {pf.currency}{' ' + label if label else ''}, "
                      f"DSCR a ratio)")
        console.print(_headline(st.outputs[s], is_platform))
        cells = {c: [_text(c, x, unit) for x in st.values[k][:, j]] for j, c in enumerate(st.columns)}
        widths = {c: max(max((len(x) for x in cells[c]), default=1),
                         max(len(w) for w in HEADER[c].split("\n"))) for c in st.columns}
        pw = max(len(st.period), len(str(int(st.periods[-1]))))
        groups, cur, used = [], [], 1 + pw + 3
        for c in st.columns:
            if cur and used + widths[c] + 3 > console.width:
                groups.append(cur)
                cur, used = [], 1 + pw + 3
            cur.append(c)
            used += widths[c] + 3
        groups.append(cur)
        for g in groups:
            table = Table(show_header=True, header_style="bold")
            table.add_column(st.period, justify="right", no_wrap=True, width=pw)
            for c in g:
                table.add_column(HEADER[c], justify="right", no_wrap=True, width=widths[c])
            for i, p in enumerate(st.periods):
                table.add_row(str(int(p)), *(cells[c][i] for c in g))
            console.print(table)
