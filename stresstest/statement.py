"""The cash-flow statement (`stresstest cashflows`): the model's monthly line items.

A statement is read off the model's own kernels (kernels/cashflows.cash_flow_lines,
numpy backend) at one point: the base case, a grid point, a named shock set or one
Monte Carlo path (the run's draws, by seed and path index). Its columns are the very
arrays the flows are built from, so they add up to the run's outputs (NPV, IRR, the
totals, equity IRR, min DSCR, payback): tests/test_statement.py checks each.

Layout: `values` [scope, period, column], scopes the portfolio then the clusters,
periods months 0..T (or years 0..ceil(T/12) with --annual). Sign convention: costs
are positive numbers in their own lines (energy, opex lines, depreciation, tax, capex,
debt service ...), flows are signed (EBITDA, project CF, equity CF). docs/model.md,
"The cash-flow statement", describes every column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import Portfolio
from .kernels.params import OUTPUTS
from .validation import ConfigError

# (key, terminal header, kind): kind "flow" sums over a year, "stock" takes the year's
# last month, "ratio" the year's minimum (DSCR), "factor" is monthly only.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("revenue_reserved", "revenue\nreserved", "flow"),
    ("revenue_on_demand", "revenue\non-demand", "flow"),
    ("revenue", "revenue", "flow"),
    ("energy", "energy", "flow"),
    ("maintenance", "maintenance", "flow"),
    ("software", "software", "flow"),
    ("colocation", "colocation", "flow"),
    ("staff", "staff", "flow"),
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
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
KIND = {c[0]: c[2] for c in COLUMNS}
HEADER = {c[0]: c[1] for c in COLUMNS}
LONG_NAMES = {
    "revenue_reserved": "revenue from the reserved (take-or-pay) book",
    "revenue_on_demand": "revenue from the on-demand pool, priority premium included",
    "revenue": "revenue (reserved + on-demand)",
    "energy": "energy cost",
    "maintenance": "maintenance (opex line)",
    "software": "software and licences (opex line)",
    "colocation": "colocation rent (opex line)",
    "staff": "staff cost (opex line)",
    "opex": "operating cost (maintenance + software + colocation + staff)",
    "ebitda": "EBITDA = revenue - energy - opex",
    "depreciation": "straight-line depreciation",
    "tax": "tax on EBITDA - depreciation (negative: loss relief)",
    "resale": "resale value of the GPU hardware at the horizon",
    "tax_on_sale": "tax on the gain of the sale over book value",
    "terminal_value": "resale - tax on sale",
    "capex": "capital expenditure (month 0)",
    "project_cf": "project cash flow = EBITDA - tax + terminal value - capex",
    "discount_factor": "(1 + discount rate)^(-month/12)",
    "discounted_cf": "project cash flow x discount factor",
    "cumulative_cf": "cumulative project cash flow (end of period)",
    "debt_drawdown": "debt drawn (month 0)",
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
# --at: a value within this of a grid value (absolute, or relative to the value) picks it
AT_TOLERANCE = 1e-9


def units(currency: str) -> dict[str, str]:
    return {name: ("1" if KIND[name] in ("ratio", "factor") else currency) for name in COLUMN_NAMES}


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

    at = tuple(at)
    base = {k: v.astype(np.float64) for k, v in pf.base_arrays().items()}
    rate = np.asarray(pf.discount_rate, dtype=np.float64)
    if scenario is None:
        if at:
            raise ConfigError(["--at: needs a scenario with axes (-s FILE, kind: grid or named)"])
        if path is not None:
            raise ConfigError(["--path: needs a Monte Carlo scenario (-s FILE with kind: montecarlo)"])
        return Case("base", "base case (no shock)", {k: v[None, :] for k, v in base.items()},
                    rate.reshape(1), equity=equity_clusters(pf), info={"case": "base"})
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
                {k: v[1:2] for k, v in params.items()}, r[1:2], equity=equity_clusters(pf),
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
                equity_clusters(pf), info={"case": "path", "scenario": mc.name, "path": path,
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

    @property
    def clusters(self) -> tuple[str, ...]:
        return self.scopes[1:] if self.with_portfolio else self.scopes

    def column(self, scope: str, name: str) -> np.ndarray:
        """One column of one scope ("portfolio" or a cluster's name)."""
        return self.values[self._index(scope), :, self.columns.index(name)]

    def _index(self, scope: str) -> int:
        if self.with_portfolio and scope == PORTFOLIO_SCOPE:
            return 0
        return (1 if self.with_portfolio else 0) + list(self.clusters).index(scope)

    def table(self, scope: str) -> dict[str, np.ndarray]:
        return {name: self.column(scope, name) for name in self.columns}

    def select(self, clusters) -> "Statement":
        """Only these clusters (the portfolio left out), in the order given."""
        if not clusters:
            return self
        keep = [self._index(c) for c in clusters]
        return replace(self, scopes=tuple(clusters), values=self.values[keep],
                       outputs={c: self.outputs[c] for c in clusters}, with_portfolio=False)

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
    """The monthly statement of every cluster and the portfolio at `case`, from the
    kernels (numpy): cash_flow_lines for the lines, evaluate for the outputs."""
    from .kernels.cashflows import cash_flow_lines
    from .kernels.metrics import evaluate

    T, C = pf.horizon_months, len(pf.clusters)
    with np.errstate(all="ignore"):
        fl = cash_flow_lines(case.params, T, case.factors)
        res = evaluate(case.params, case.rate, T, equity_clusters=case.equity, factors=case.factors)
    L = fl["lines"]

    def monthly(x):  # months 1..T -> [C, T+1] with month 0 = 0
        x = np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C, T))[0]
        return np.concatenate([np.zeros((C, 1)), x], axis=1)

    def at_zero(x):  # [C] at month 0, 0 after
        out = np.zeros((C, T + 1))
        out[:, 0] = np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C))[0]
        return out

    def at_end(x):  # [S|1, C, 1] paid at T
        out = np.zeros((C, T + 1))
        out[:, T] = np.broadcast_to(np.asarray(x, dtype=np.float64), (1, C, 1))[0, :, 0]
        return out

    one = lambda a: np.broadcast_to(np.asarray(a), (1, C))[0]  # noqa: E731  [S|1, C] -> [C]
    debt, A, capex = one(fl["debt"]), one(fl["A"]), one(fl["capex"])
    cf = np.broadcast_to(fl["cf"], (1, C, T + 1))[0]
    cfe = np.broadcast_to(fl["cfe"], (1, C, T + 1))[0]
    r = float(np.asarray(case.rate).reshape(-1)[0])
    t = np.arange(T + 1, dtype=np.float64)
    v = np.exp(-(t / 12.0) * np.log1p(r))  # as kernels.metrics.npv discounts

    cols = {name: monthly(L[name]) for name in (
        "revenue_reserved", "revenue_on_demand", "revenue", "energy", "maintenance", "software",
        "colocation", "staff", "opex", "ebitda", "depreciation", "tax", "interest",
        "interest_tax_shield")}
    cols["resale"] = at_end(L["resale"])
    cols["tax_on_sale"] = at_end(L["tax_on_sale"])
    cols["terminal_value"] = at_end(L["terminal"])
    cols["capex"] = at_zero(capex)
    cols["project_cf"] = np.array(cf)
    cols["discount_factor"] = np.broadcast_to(v, (C, T + 1)).copy()
    cols["discounted_cf"] = cf * v
    cols["cumulative_cf"] = np.cumsum(cf, axis=-1)
    cols["debt_drawdown"] = at_zero(debt)
    balloon = monthly(L["balloon"])
    cols["debt_service"] = monthly(L["debt_service"]) + balloon
    cols["principal"] = cols["debt_service"] - cols["interest"]
    balance = monthly(L["balance"]) - balloon
    balance[:, 0] = debt
    cols["balance"] = balance
    cols["equity_cf"] = np.array(cfe)
    # DSCR: as kernels.metrics.finish, month by month (NaN where the month does not count)
    elt = np.broadcast_to(fl["ebitda_less_tax"], (1, C, T))[0]
    month_ok = np.broadcast_to(fl["dscr_month"], (1, C, T))[0]
    has_debt = debt != 0
    with np.errstate(all="ignore"):
        c_dscr = np.where(month_ok & has_debt[:, None], elt / np.where(has_debt, A, 1.0)[:, None], np.nan)
    cols["dscr"] = np.concatenate([np.full((C, 1), np.nan), c_dscr], axis=1)

    # the portfolio: sums month by month (as the kernels sum the clusters' flows), its own
    # cumulative flow, and the pooled DSCR of kernels.metrics.finish
    port = {}
    for name, x in cols.items():
        port[name] = np.sum(x, axis=0)
    port["discount_factor"] = v.copy()
    port["cumulative_cf"] = np.cumsum(port["project_cf"])
    window = np.all(month_ok | ~has_debt[:, None], axis=0)
    den = np.sum(np.where(has_debt, A, 0.0))
    with np.errstate(all="ignore"):
        ratio = np.sum(elt, axis=0) / (den if den != 0 else 1.0)
    port["dscr"] = np.concatenate([[np.nan], np.where(window & (den != 0), ratio, np.nan)])

    values = np.empty((1 + C, T + 1, len(COLUMN_NAMES)))
    for j, name in enumerate(COLUMN_NAMES):
        values[0, :, j] = port[name]
        values[1:, :, j] = cols[name]
    outputs = {PORTFOLIO_SCOPE: {o: float(np.asarray(res[o])[0]) for o in OUTPUTS}}
    for c, name in enumerate(pf.cluster_names):
        outputs[name] = {o: float(np.asarray(res["cluster_" + o])[0, c]) for o in OUTPUTS}
    return Statement(pf, case, "month", np.arange(T + 1), COLUMN_NAMES,
                     (PORTFOLIO_SCOPE, *pf.cluster_names), values, outputs)


def statement(pf: Portfolio, scenario=None, at=(), path: int | None = None, clusters=(),
              annual: bool = False) -> Statement:
    """The statement at a point (see resolve_case), of the portfolio and every cluster, or
    of `clusters` only; by year with annual=True."""
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


def write_xlsx(st: Statement, path: Path) -> None:
    """One sheet per scope (the portfolio first): a header row of column names, then one
    row per period, numbers stored as numbers (NaN: an empty cell); a last sheet 'about'
    with the point, the units and the run's outputs per scope."""
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
    about.append(["outputs at this point", *OUTPUTS])
    for s in st.scopes:
        about.append([s, *(st.outputs[s][o] if math.isfinite(st.outputs[s][o]) else None for o in OUTPUTS)])
    about.column_dimensions["A"].width = 24
    wb.save(path)


def write_h5(st: Statement, path: Path) -> None:
    """xarray-readable HDF5 (h5netcdf): dims `month` (or `year`) and `cluster`; the
    portfolio's lines under their names (dims month), each cluster's as cluster_<line>
    (dims month, cluster), as in a result file."""
    import xarray as xr

    from .version import __version__

    pf = st.portfolio
    u = units(pf.currency)
    data = {}
    first = 1 if st.with_portfolio else 0
    for j, c in enumerate(st.columns):
        attrs = {"units": u[c], "long_name": LONG_NAMES[c]}
        if st.with_portfolio:
            data[c] = xr.Variable((st.period,), st.values[0, :, j], attrs)
        data["cluster_" + c] = xr.Variable((st.period, "cluster"), st.values[first:, :, j].T, attrs)
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


def _headline(o: dict) -> str:
    from .report import fmt

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
        where = "portfolio" if st.with_portfolio and k == 0 else f"cluster {s}"
        console.print(f"[bold]{where}[/] (amounts in {pf.currency}{' ' + label if label else ''}, "
                      f"DSCR a ratio)")
        console.print(_headline(st.outputs[s]))
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
