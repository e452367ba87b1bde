"""`stresstest inspect` and `stresstest show`: what a result file holds, what a portfolio resolves to."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Portfolio
from .fig_read import strings
from .industries import FIELDS
from .items import KINDS, REPLACES, SINGULAR, UNLABELLED
from .kernels.params import CLUSTER_PARAMS, OPTIMIZATION_PARAMS, ORDER_PARAMS, PLATFORM_PARAMS
from .optimize_report import inspect_details, inspect_size, inspect_title, print_tables
from .programmes import START, default_start_month, field_name
from .outputs import BASE_GROUP, GROUP_VARIABLES, INDUSTRY_DIM
from .validation import ConfigError

HEADLINE = ("npv", "irr", "roi")


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _attr_value(v):
    """An HDF5 attribute as a plain Python value (an array attribute as a list)."""
    if isinstance(v, np.ndarray) and v.size != 1:
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    return v.item() if hasattr(v, "item") else v


@dataclass(frozen=True)
class Inspector:
    """How `inspect` describes one kind of result file, beyond what every file has
    (dimensions, variables, provenance, base case)."""

    title: Callable  # (f) -> what the file is, in a few words
    size: Callable  # (attrs, scales) -> how much it holds, in the kind's own words
    details: Callable  # (f, attrs, config) -> the kind's own entries of the description


def describe(path: Path) -> dict:
    """Kind, dimensions, variables, provenance, base case, the industry labels of a version 2
    file (its `industry` coordinate) and its outputs of the optimization programmes and the
    platform layer (version2_outputs), and what the kind adds (worst and best points, Monte
    Carlo statistics, a breakeven curve) of a result file."""
    import h5py

    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConfigError([f"{path}: not an HDF5 file"]) from None
    with f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        if "model_version" not in attrs:
            if "breakeven" in f and "over" in attrs:
                raise ConfigError([f"{path}: a breakeven curve from an older stresstest, without provenance "
                                   "(no model_version attribute); write it again with breakeven --over"])
            raise ConfigError([f"{path}: not a stresstest result file (no model_version attribute)"])
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        kind = attrs.get("kind", "grid")
        inspector = INSPECTORS.get(kind)
        if inspector is None:
            raise ConfigError([f"{path}: " + NOT_DESCRIBED.get(
                kind, f"a result of kind {kind!r}, which inspect does not know (it describes "
                      f"{', '.join(INSPECTORS)}); perhaps written by a newer stresstest")])
        scales, variables = {}, {}
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            if ds.attrs.get("CLASS") == b"DIMENSION_SCALE":
                scales[name] = ds.shape[0]
                continue
            dims = [ds.dims[i][0].name.lstrip("/") if len(ds.dims[i]) else f"dim{i}" for i in range(ds.ndim)]
            variables[name] = {"dims": dims, "shape": list(ds.shape),
                               "units": (ds.attrs.get("units", b"") or b"").decode()
                               if isinstance(ds.attrs.get("units", b""), bytes) else ds.attrs.get("units", "")}
        config = json.loads(attrs.pop("config", "{}") or "{}")
        info = {"path": str(path), "kind": kind, "title": inspector.title(f), "size": inspector.size(attrs, scales),
                "dimensions": scales, "variables": variables,
                "provenance": attrs, "groups": [k for k, v in f.items() if isinstance(v, h5py.Group)]}
        if "base" in f:
            info["base"] = {k: _f(f["base"][k][()]) for k in HEADLINE if k in f["base"]}
        if INDUSTRY_DIM in f:
            info["industries"] = [str(s) for s in strings(f[INDUSTRY_DIM][()])]
        info |= version2_outputs(f)
        info |= inspector.details(f, attrs, config)
    return info


def version2_outputs(f) -> dict:
    """The file's outputs of each group of outputs.GROUP_VARIABLES ("optimization",
    "platform"): {group: {"outputs": names, "base": the base case's portfolio values}},
    the platform's with its share of the portfolio NPV (report.platform_share); {} for a
    file without them (version 1, Monte Carlo)."""
    from .report import platform_share

    base = f[BASE_GROUP] if BASE_GROUP in f else {}
    found = {}
    for group, variables in GROUP_VARIABLES.items():
        names = [name for name, *_ in variables if name in f]
        if names:  # the portfolio's values (a cluster_ output is per cluster)
            found[group] = {"outputs": names, "base": {n: float(base[n][()]) for n in names
                                                       if n in base and not base[n].shape}}
    platform = found.get("platform", {}).get("base", {})
    if "platform_npv" in platform and "npv" in base:
        platform["platform_share"] = platform_share(platform["platform_npv"], float(base["npv"][()]))
    for group in found.values():
        group["base"] = {n: _f(v) for n, v in group["base"].items()}
    return found


def _grid_title(f) -> str:
    return "stress grid with sensitivities" if "npv_per_pct" in f else "stress grid"


def _grid_size(attrs: dict, scales: dict) -> str:
    n = attrs.get("n_scenarios")
    return f"{int(n):,} grid points" if n is not None else ""


def _grid_details(f, attrs: dict, config: dict) -> dict:
    return _extremes(f, _config_axes(config))


def _named_size(attrs: dict, scales: dict) -> str:
    return f"{scales.get('scenario', 0):,} named shock sets"


def _named_details(f, attrs: dict, config: dict) -> dict:
    """A named run's file is a grid along one labelled axis, `scenario`."""
    return _extremes(f, _config_axes(config) or ["scenario"])


def _config_axes(config: dict) -> list[str]:
    """The names of the grid axes in the run's config, in the order of the arrays' dimensions."""
    return [a["name"] for a in config.get("scenario", {}).get("axes", [])]


def _extremes(f, axes: list[str]) -> dict:
    """The worst and best point of each headline output over the `axes` (with every output
    there), and how many values of each are not finite."""
    coords = {a: f[a][()] for a in axes if a in f}
    extremes = {}
    arrays = {n: f[n][()] for n in HEADLINE if n in f}
    for name in HEADLINE:
        if name not in f:
            continue
        v = arrays[name]
        if not np.isfinite(v).any():
            continue
        flat = np.where(np.isfinite(v), v, np.nan).ravel()
        for label, k in (("worst", int(np.nanargmin(flat))), ("best", int(np.nanargmax(flat)))):
            idx = np.unravel_index(k, v.shape)
            point = {}
            for a, i in zip(axes, idx):
                c = coords[a][i]
                point[a] = c.decode() if isinstance(c, bytes) else (str(c) if isinstance(c, str) else float(c))
            extremes[f"{label}_{name}"] = {"value": _f(flat[k]), "at": point,
                                           "outputs": {n: _f(a.ravel()[k]) for n, a in arrays.items()}}
    return {"extremes": extremes,
            "nonfinite": {n: int((~np.isfinite(f[n][()])).sum()) for n in HEADLINE if n in f}}


def _mc_size(attrs: dict, scales: dict) -> str:
    seed = f", seed {attrs['seed']}" if "seed" in attrs else ""
    return f"{int(attrs.get('paths', 0)):,} paths{seed}"


def _mc_details(f, attrs: dict, config: dict) -> dict:
    """The headline outputs' statistics and the portfolio NPV's risk measures."""
    stats = [s.decode() if isinstance(s, bytes) else s for s in f["statistic"][()]]
    return {"summary": {n: dict(zip(stats, (_f(x) for x in f[n][()]))) for n in HEADLINE if n in f},
            "risk": {k: _f(f[k][()]) for k in ("var_95", "cvar_95", "var_99", "cvar_99",
                                                "prob_npv_negative") if k in f}}


def _curve_size(attrs: dict, scales: dict) -> str:
    over = attrs.get("over")
    return f"{scales.get(over, 0):,} values of {over}"


_STATUS = {0: "solved", 1: "none", 2: "jump"}  # a breakeven curve's status codes


def _describe_curve(f, attrs: dict, config: dict) -> dict:
    """A breakeven curve: the question, and per scope its values and how many are missing why."""
    over = attrs["over"]
    axis = [float(v) for v in f[over][()]]
    scopes = [s.decode() if isinstance(s, bytes) else str(s) for s in f["scope"][()]]
    value = f["breakeven"][()]
    status = f["status"][()] if "status" in f else np.where(np.isfinite(value), 0, 1)
    low = f["jump_low"][()] if "jump_low" in f else np.full(value.shape, np.nan)
    high = f["jump_high"][()] if "jump_high" in f else np.full(value.shape, np.nan)
    per_scope = {}
    for j, scope in enumerate(scopes):
        points = []
        for i, at in enumerate(axis):
            st = _STATUS.get(int(status[i, j]), str(status[i, j]))
            point = {over: at, "status": st, "value": _f(value[i, j])}
            if st == "jump":
                point["jump"] = [_f(low[i, j]), _f(high[i, j])]
            points.append(point)
        solved = [p["value"] for p in points if p["value"] is not None]
        per_scope[scope] = {"solved": len(solved), "none": sum(p["status"] == "none" for p in points),
                            "jump": sum(p["status"] == "jump" for p in points),
                            "min": min(solved, default=None), "max": max(solved, default=None),
                            "points": points}
    question = {k: attrs.get(k) for k in ("param", "target", "over", "cluster")}
    if "range" in attrs:
        question["range"] = [float(v) for v in attrs["range"]]
    return {"breakeven": question | {over: axis, "scopes": per_scope}}


def _rank_size(attrs: dict, scales: dict) -> str:
    return f"{scales.get('input', 0)} inputs ranked by {attrs.get('output', '?')}, {int(attrs.get('evaluations', 0)):,} evaluations"


def _rank_details(f, attrs: dict, config: dict) -> dict:
    """The inputs, the largest Shapley effect first, with the estimator's variance check."""
    names = [s.decode() if isinstance(s, bytes) else str(s) for s in f["input"][()]]
    sh = f["shapley"][()]
    order = np.argsort(-sh, kind="stable")
    return {"ranking": [{"input": names[i], "shapley": _f(sh[i]), "dgsm_bound": _f(f["dgsm_bound"][i])}
                        for i in order],
            "variance_ratio": _f(attrs.get("variance_ratio"))}


# The file's `kind` attribute (grid where it has none) picks how it is described: a new
# kind is one line here (docs/architecture.md, "Adding a scenario kind").
INSPECTORS = {
    "grid": Inspector(_grid_title, _grid_size, _grid_details),
    "montecarlo": Inspector(lambda f: "Monte Carlo", _mc_size, _mc_details),
    "named": Inspector(lambda f: "named scenarios", _named_size, _named_details),
    "breakeven": Inspector(lambda f: "breakeven curve", _curve_size, _describe_curve),
    "rank": Inspector(lambda f: "drivers ranked (stresstest rank)", _rank_size, _rank_details),
    "optimize": Inspector(inspect_title, inspect_size, inspect_details),
}
# Kinds of file stresstest writes that `inspect` does not describe, and what to do instead.
NOT_DESCRIBED = {"shard": "a shard file; merge the set first (stresstest merge)"}


def print_description(info: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    p = info["provenance"]
    size = f", {info['size']}" if info.get("size") else ""
    console.print(f"[bold]{info['path']}[/]: {info.get('title', info['kind'])}{size}; portfolio "
                  f"{p.get('portfolio')!r}, scenario {p.get('scenario')!r}")
    console.print(f"  made {p.get('created')} by stresstest {p.get('stresstest_version')} (model "
                  f"{p.get('model_version')}) on {p.get('backend')} {p.get('device')}, {p.get('dtype')}; "
                  f"config sha256 {str(p.get('config_sha256'))[:16]}…")
    dims = ", ".join(f"{k} {v:,}" for k, v in info["dimensions"].items())
    console.print(f"  dimensions: {dims}")
    if info.get("industries"):
        console.print(f"  industry coordinate (revenue by industry): {', '.join(info['industries'])}")
    _print_version2(info, console)
    t = Table(show_header=True, header_style="bold", title="variables")
    t.add_column("name")
    t.add_column("dims")
    t.add_column("units")
    for name, v in sorted(info["variables"].items()):
        t.add_row(name, "(" + ", ".join(v["dims"]) + ")", str(v["units"]))
    console.print(t)
    _print_numbers(info, console)
    if "breakeven" in info:
        _print_curve(info["breakeven"], console)
    if "optimize" in info:
        print_tables(info["optimize"], console)


# How `inspect` names each group of outputs.GROUP_VARIABLES
GROUP_WORDS = {"optimization": "optimization programmes", "platform": "platform layer"}


def _print_version2(info: dict, console) -> None:
    """A line per group of version 2 outputs the file holds: its outputs and base case."""
    from .report import fmt, share_text

    for group in (g for g in GROUP_VARIABLES if g in info):
        found, base = info[group], info[group]["base"]
        values = [f"{n} {fmt('npv', base[n])}" for n in found["outputs"] if n in base]
        if "platform_share" in base:
            share = base["platform_share"]
            values.append(f"share of the portfolio NPV {share_text(math.nan if share is None else share)}")
        at = f" (base case: {', '.join(values)})" if values else ""
        console.print(f"  {GROUP_WORDS[group]}: {', '.join(found['outputs'])}{at}", markup=False)


_RISK_LABELS = {"var_95": "VaR 95 %", "cvar_95": "CVaR 95 %", "var_99": "VaR 99 %", "cvar_99": "CVaR 99 %",
                "prob_npv_negative": "P(NPV < 0)"}


def _print_numbers(info: dict, console) -> None:
    """The base case, extremes and Monte Carlo statistics of `describe` in the run summary's
    tables and formats (report.fmt: "-44.1 M", "5.57 %", "14.4 %"). One point that is the
    worst (best) for several outputs is one row ("worst NPV, IRR, ROI")."""
    from rich.table import Table

    from .report import fmt, merge_cases

    extremes = info.get("extremes", {})
    if info.get("base") or extremes:
        t = Table(show_header=True, header_style="bold")
        t.add_column("case")
        currency = info.get("provenance", {}).get("currency") or "USD"
        for n in HEADLINE:
            t.add_column(f"NPV ({currency})" if n == "npv" else n.upper(), justify="right", no_wrap=True)
        t.add_column("point", overflow="fold")
        if info.get("base"):
            t.add_row("base case (no shock)", *(fmt(n, info["base"].get(n)) for n in HEADLINE), "-")
        for label in ("worst", "best"):
            items = [(n, json.dumps(extremes[f"{label}_{n}"]["at"], sort_keys=True))
                     for n in HEADLINE if f"{label}_{n}" in extremes]
            for case, names, _ in merge_cases(label, items):
                e = extremes[f"{label}_{names[0]}"]
                at = e.get("outputs") or {n: extremes[f"{label}_{n}"]["value"] for n in names}
                point = "  ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in e["at"].items())
                t.add_row(case, *(fmt(n, at.get(n)) for n in HEADLINE), point or "-")
        console.print(t)
    summary = info.get("summary", {})
    if summary:
        t = Table(show_header=True, header_style="bold")
        t.add_column("output")
        for col in ("mean", "P5", "P50", "P95"):
            t.add_column(col, justify="right", no_wrap=True)
        for name, stats in summary.items():
            t.add_row(name.upper(), *(fmt(name, stats.get(k)) for k in ("mean", "p5", "p50", "p95")))
        console.print(t)
    risk = info.get("risk", {})
    if risk:
        t = Table(show_header=True, header_style="bold")
        t.add_column("risk of the portfolio NPV")
        t.add_column("value", justify="right", no_wrap=True)
        for k, v in risk.items():
            t.add_row(_RISK_LABELS.get(k, k), fmt(k, v))
        console.print(t)


def _print_curve(be: dict, console) -> None:
    over = be["over"]
    where = "" if be.get("cluster") in (None, "all") else f", cluster {be['cluster']} alone"
    bracket = f" in [{be['range'][0]:g}, {be['range'][1]:g}]" if be.get("range") else ""
    console.print(f"  {be['param']} such that {be['target']}{bracket}, along {over}{where}")
    for scope, s in be["scopes"].items():
        span = f", {s['min']:.6g} to {s['max']:.6g}" if s["solved"] else ""
        console.print(f"  {scope}: solved at {s['solved']} of {len(s['points'])} values{span}; "
                      f"no crossing at {s['none']}, jumps over the target at {s['jump']}")


# Where a resolved value comes from: the mark printed after it in `show`, and its legend.
ORIGINS = {"cluster": ("", "given for the cluster in the file"),
           "defaults": ("†", "from the file's defaults: block"),
           "model": ("‡", "the model's default (not in the file)")}
_ORIGIN_STYLE = {"cluster": "", "defaults": "cyan", "model": "dim"}


# The same for a contract's or a segment's field (Items.origins): the mark and its legend;
# a profile's value is marked by the kind of origin, its name is the item's industry row.
ITEM_ORIGINS = {"file": ("", "given in the file"),
                "profile": ("§", "from the industry profile the item names (its industry row)"),
                "default": ("‡", "the model's default (not in the file)")}
_ITEM_ORIGIN_STYLE = {"file": "", "profile": "green", "default": "dim"}
# A version 1 key of a cluster whose contracts or segments replace it: no value is used.
REPLACED = ("–", "replaced by the cluster's contracts or segments")


def portfolio_table(pf: Portfolio) -> dict:
    """{"clusters": [...], "parameters": [{name, unit, values, origins}]} for `show`.

    A portfolio with contracts or segments also gets "items": per cluster, its resolved
    contracts and segments (null: implied by its version 1 keys), every field with its
    value and origin ("file", "profile NAME" or "default"); the version 1 keys they
    replace have the origin "replaced". Version 2 scalars: where some cluster gives an
    order month or a capex decline, both are rows of "parameters"; "optimization" holds
    each programme (its cluster, every field with its value and origin; a start month the
    file leaves out: the go-live month it defaults to, origin "model"); "platform" the platform
    layer's fields (origin "file" or "default"). A version 1 portfolio's table is as it was."""
    explicit = any(it.explicit for it in pf.items)
    params = []
    for spec in CLUSTER_PARAMS:
        values = [c[spec.name] for c in pf.clusters]
        origins = [o.get(spec.name, "model") for o in (pf.origins or [{} for _ in pf.clusters])]
        if explicit:
            origins = [_replaced_or(it, spec.name, o) for it, o in zip(pf.items, origins)]
        params.append({"name": spec.name, "unit": spec.unit,
                       "values": [None if math.isinf(v) else v for v in values], "origins": origins})
    if "order" in pf.groups:
        params += [{"name": spec.name, "unit": spec.unit,
                    "values": [s.values.get(spec.name, spec.default) for s in pf.scalars],
                    "origins": [s.origins.get(spec.name, "model") for s in pf.scalars]} for spec in ORDER_PARAMS]
    table = {"portfolio": pf.name, "horizon_months": pf.horizon_months, "discount_rate": pf.discount_rate,
             "clusters": pf.cluster_names, "labels": pf.labels, "parameters": params,
             "origin_legend": {k: text for k, (_, text) in ORIGINS.items()}}
    if explicit:
        table["origin_legend"]["replaced"] = REPLACED[1]
        table["items"] = [{"cluster": name, **{kind: _item_rows(it, kind) for kind in KINDS}}
                          for name, it in zip(pf.cluster_names, pf.items)]
        table["item_origin_legend"] = {"file": ITEM_ORIGINS["file"][1],
                                       "profile NAME": ITEM_ORIGINS["profile"][1],
                                       "default": ITEM_ORIGINS["default"][1]}
    programmes = [{"cluster": name, "fields": _programme_rows(s, c["delivery_months"])}
                  for name, s, c in zip(pf.cluster_names, pf.scalars, pf.clusters) if s.programme]
    if programmes:
        table["optimization"] = programmes
    if pf.platform is not None:
        table["platform"] = [{"name": field_name(spec), "unit": spec.unit, "value": pf.platform.values[spec.name],
                              "origin": pf.platform.origins.get(spec.name, "file")} for spec in PLATFORM_PARAMS]
    return table


def _programme_rows(s, delivery_months: float) -> list[dict]:
    """A cluster's optimization programme for `show`: every field as {name, unit, value,
    origin}; a start month the file leaves out is the go-live month it defaults to."""
    rows = []
    for spec in OPTIMIZATION_PARAMS:
        given = spec.name != START or START in s.values
        value = s.values[spec.name] if given else default_start_month(s, delivery_months)
        rows.append({"name": field_name(spec), "unit": spec.unit, "value": value,
                     "origin": s.origins.get(spec.name, "model")})
    return rows


def _replaced_or(items, key: str, origin: str) -> str:
    """"replaced" where the cluster's own contracts or segments replace the version 1 key."""
    return "replaced" if any(items.of(k) is not None and key in REPLACES[k] for k in KINDS) else origin


def _item_rows(items, kind: str) -> list[dict] | None:
    """A cluster's resolved contracts (or segments) for `show`: name, industry and every
    field as {name, unit, value, origin}; None where they are implied."""
    given = items.of(kind)
    if given is None:
        return None
    specs = FIELDS[SINGULAR[kind]]
    return [{"name": item["name"], "industry": item.get("industry"),
             "fields": [{"name": f, "unit": spec.unit,
                         "value": None if math.isinf(item[f]) else item[f], "origin": origin[f]}
                        for f, spec in specs.items()]}
            for item, origin in zip(given, items.origins[kind])]


def _value_text(v: float | None) -> str:
    """A parameter value in full: never, whole numbers with thousands separators, else 6 digits."""
    if v is None:
        return "never"
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{v:,.0f}"
    return f"{v:,.6g}"


def _column_groups(widths: list[int], fixed: int, room: int) -> list[list[int]]:
    """Cluster columns (their widths) packed in order into tables no wider than `room`, each
    table also holding `fixed` columns of text; a cluster too wide even alone gets its own."""
    groups: list[list[int]] = [[]]
    used = fixed
    for i, w in enumerate(widths):
        if groups[-1] and used + w + 3 > room:
            groups.append([])
            used = fixed
        groups[-1].append(i)
        used += w + 3
    return groups


def print_portfolio_table(pf: Portfolio, table: dict, console=None) -> None:
    """Every resolved parameter per cluster. No name is ever cut: the parameter and cluster
    names are printed whole (the clusters split over several tables where the terminal is
    too narrow for all of them, the units wrap); each value carries a mark of its origin
    (none: the cluster's own entry; † defaults:; ‡ the model's default), with a legend.
    The optimization programmes follow (a column per cluster with one, marked as the
    parameters), then the platform layer (none: the file; ‡ the model's default). A
    cluster with contracts or segments gets a table of each after them, every field
    marked by its origin in the same way (none: the file; § the item's industry profile;
    ‡ the model's default)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    console.print(f"[bold]{pf.name}[/]: {len(pf.clusters)} clusters, horizon {pf.horizon_months} months, "
                  f"discount rate {pf.discount_rate:g}")
    legend = Text("where each value comes from:")
    for k, (mark, text) in ORIGINS.items():
        legend.append(f"\n  {mark or 'no mark':<7} {text}", style=_ORIGIN_STYLE[k])
    if "items" in table:
        legend.append(f"\n  {REPLACED[0]:<7} {REPLACED[1]} (tables below)", style="dim")
    rows = table["parameters"]
    cells = [[_parameter_cell(v, o) for v, o in zip(r["values"], r["origins"])] for r in rows]
    styles = [[_ORIGIN_STYLE.get(o, "dim") for o in r["origins"]] for r in rows]
    _print_columns(console, pf.cluster_names, rows, cells, styles, "parameter", legend)
    if "optimization" in table:
        _print_programmes(console, table["optimization"])
    if "platform" in table:
        _print_platform(console, table["platform"])
    if "items" not in table:
        return
    for cluster in table["items"]:
        for kind in KINDS:
            if cluster[kind] is not None:
                console.print(f"[bold]{cluster['cluster']}[/]: {kind}")
                _print_items(console, cluster[kind])
    legend = Text("where each contract or segment value comes from:")
    for k, (mark, text) in ITEM_ORIGINS.items():
        legend.append(f"\n  {mark or 'no mark':<7} {text}", style=_ITEM_ORIGIN_STYLE[k])
    console.print(legend)


def _print_programmes(console, programmes: list[dict]) -> None:
    """One table of the optimization programmes: a row per field, a column per cluster
    with a programme, each value marked by its origin as the parameters are."""
    fields = programmes[0]["fields"]
    rows = [{"name": f["name"], "unit": f["unit"]} for f in fields]
    cells = [[_parameter_cell(p["fields"][k]["value"], p["fields"][k]["origin"]) for p in programmes]
             for k in range(len(fields))]
    styles = [[_ORIGIN_STYLE[p["fields"][k]["origin"]] for p in programmes] for k in range(len(fields))]
    console.print("[bold]optimization programmes[/] (start_month ‡: ceil(order_month + delivery_months))")
    _print_columns(console, [p["cluster"] for p in programmes], rows, cells, styles, "field", None)


def _print_platform(console, fields: list[dict]) -> None:
    """The platform layer's fields, one column, marked as the contracts' (none: the file,
    ‡ the model's default)."""
    cells = [[f"{_value_text(f['value'])} {ITEM_ORIGINS[f['origin']][0] or ' '}"] for f in fields]
    styles = [[_ITEM_ORIGIN_STYLE[f["origin"]]] for f in fields]
    console.print("[bold]platform layer[/], the portfolio's (no mark: in the file; ‡ the model's default)")
    _print_columns(console, ["platform"], [{"name": f["name"], "unit": f["unit"]} for f in fields], cells, styles,
                   "field", None)


def _parameter_cell(v, origin: str) -> str:
    if origin == "replaced":
        return f"{REPLACED[0]} "
    return f"{_value_text(v)} {ORIGINS[origin][0] or ' '}"


def _print_items(console, items: list[dict]) -> None:
    """One table of a cluster's contracts (or segments): a row per field, a column per item."""
    fields = items[0]["fields"]
    rows = [{"name": "industry", "unit": ""}] + [{"name": f["name"], "unit": f["unit"]} for f in fields]
    cells, styles = [[it["industry"] or UNLABELLED for it in items]], [["" for _ in items]]
    for k in range(len(fields)):
        kinds = [it["fields"][k]["origin"].split()[0] for it in items]
        cells.append([f"{_value_text(it['fields'][k]['value'])} {ITEM_ORIGINS[o][0] or ' '}"
                      for it, o in zip(items, kinds)])
        styles.append([_ITEM_ORIGIN_STYLE[o] for o in kinds])
    _print_columns(console, [it["name"] for it in items], rows, cells, styles, "field", None)


def _print_columns(console, names: list[str], rows: list[dict], cells: list[list[str]],
                   styles: list[list[str]], first: str, legend) -> None:
    """Rows of {name, unit} against the named columns, cells[row][column] styled as given.
    No name is ever cut: the columns split over several tables where the terminal is too
    narrow for all of them, the units wrap, and where a column fits no table each value
    goes on a line of its own (after the legend, when one is given)."""
    from rich.table import Table
    from rich.text import Text

    name_w = max(len(r["name"]) for r in rows)
    unit_w = max(max((len(w) for r in rows for w in r["unit"].split()), default=4), len("unit"))
    unit_w = max(unit_w, min(16, max(len(r["unit"]) for r in rows)))
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    fixed = 1 + name_w + 3 + unit_w + 3
    if fixed + max(widths, default=0) + 3 > console.width:  # a column that fits no table: one line a value
        if legend is not None:
            console.print(legend)
        for r, row_cells in zip(rows, cells):
            console.print(f"[bold]{r['name']}[/] ({r['unit']}):" if r["unit"] else f"[bold]{r['name']}[/]:")
            for n, c in zip(names, row_cells):
                console.print(f"  {n}: {c.rstrip()}")
        return
    for group in _column_groups(widths, fixed, console.width):
        t = Table(show_header=True, header_style="bold")
        t.add_column(first, no_wrap=True, min_width=name_w)
        t.add_column("unit", overflow="fold", min_width=min(unit_w, 16), max_width=unit_w)
        for i in group:
            t.add_column(names[i], justify="right", no_wrap=True, min_width=widths[i])
        for r, row_cells, row_styles in zip(rows, cells, styles):
            t.add_row(r["name"], r["unit"], *[Text(row_cells[i], style=row_styles[i]) for i in group])
        console.print(t)
    if legend is not None:
        console.print(legend)
