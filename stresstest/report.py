"""Terminal output: the run summary table and the environment report."""

from __future__ import annotations

import math
import os
import platform

from .engine import describe_nonfinite, grid_point, unexpected_nonfinite
from .formats import fmt, pct
from .optimize_report import optimize_json, print_optimize
from .outputs import QUANTILES, STATISTICS, SUMMARY_OUTPUTS

def change_text(value: float) -> str:
    """A signed change of money in millions, two decimals ("+1.10 M", "-0.04 M")."""
    return f"{value / 1e6:+,.2f} M" if math.isfinite(value) else str(value)


def merge_cases(label: str, items: list[tuple[str, object]]) -> list[tuple[str, list[str], object]]:
    """Extremes of several outputs at one point become one case: [("worst", "npv", p), ("worst",
    "irr", p)] -> ("worst NPV, IRR", ["npv", "irr"], p). `items` are (output, key) in order;
    outputs with equal keys (the same grid point) share a row, placed at the first of them."""
    groups: dict[object, list[str]] = {}
    for name, key in items:
        groups.setdefault(key, []).append(name)
    return [(f"{label} {', '.join(n.upper() for n in names)}", names, key) for key, names in groups.items()]


def summary_rows(result) -> list[dict]:
    """Rows of the summary: base case, then the worst and best grid points per output.

    Where one grid point is the worst (or best) for several outputs, it is one row, its
    case naming them all ("worst NPV, IRR, ROI") and `outputs` listing them."""
    rows = [{"case": "base case (no shock)", "point": {}, "outputs": [],
             **{k: float(result.base[k]) for k in SUMMARY_OUTPUTS}}]
    for label, table in (("worst", result.extremes.worst), ("best", result.extremes.best)):
        items = [(name, table[name][1]) for name in SUMMARY_OUTPUTS if name in table]
        for case, names, flat in merge_cases(label, items):
            _, _, at = table[names[0]]
            rows.append({"case": case, "outputs": names, "flat_index": flat,
                         "point": grid_point(result.scenario, flat), **at})
    return rows


def platform_share(platform_npv: float, npv: float) -> float:
    """The platform layer's share of the portfolio NPV, platform_npv / npv, where that reads
    as a share: NaN where the portfolio NPV is not positive (a share of a loss, or of
    nothing, says nothing) or either is not finite. A platform that loses money has a
    negative share; one worth more than the whole portfolio (the clusters' NPV below 0)
    a share above 100 %."""
    if not (math.isfinite(platform_npv) and math.isfinite(npv)) or npv <= 0:
        return math.nan
    return platform_npv / npv


def share_text(share: float, table: bool = False) -> str:
    """platform_share in percent, one decimal; where it is NaN, why ("n/a: NPV ≤ 0")."""
    return pct(share, 1) if math.isfinite(share) else "n/a" if table else "n/a: portfolio NPV ≤ 0"


def npv_parts(result) -> dict | None:
    """The base case's NPV in its parts where the portfolio has a platform layer: each
    cluster's and the platform's, which add up to the portfolio's (MODEL.md, "Platform
    layer"), with the portfolio's and the platform's share of it (platform_share); None
    without a platform."""
    base = result.base
    if "platform_npv" not in base:
        return None
    npv, platform = float(base["npv"]), float(base["platform_npv"])
    return {"clusters": {n: float(v) for n, v in zip(result.portfolio.cluster_names, base["cluster_npv"])},
            "platform": platform, "portfolio": npv, "platform_share": platform_share(platform, npv)}


def print_run_summary(result, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    pf, sc = result.portfolio, result.scenario
    rate = result.scm / result.seconds if result.seconds > 0 else float("nan")
    console.print(
        f"[bold]{pf.name}[/]: {len(pf.clusters)} clusters, {pf.horizon_months} months; "
        f"scenario [bold]{sc.name}[/], {sc.size:,} grid points; {result.backend}"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("case")
    table.add_column(f"NPV ({pf.currency})", justify="right")
    table.add_column("IRR", justify="right")
    table.add_column("ROI", justify="right")
    table.add_column("shocks at that point")
    for row in summary_rows(result):
        point = "  ".join(f"{k}={v:g}" for k, v in row["point"].items()) or "-"
        table.add_row(row["case"], *(fmt(n, row[n]) for n in SUMMARY_OUTPUTS), point)
    console.print(table)
    parts = npv_parts(result)
    if parts is not None:
        clusters = parts["clusters"]
        console.print(f"base case NPV: clusters {fmt('npv', sum(clusters.values()))} ("
                      + ", ".join(f"{n} {fmt('npv', v)}" for n, v in clusters.items())
                      + f"), platform NPV {fmt('npv', parts['platform'])} (portfolio NPV "
                      f"{fmt('npv', parts['portfolio'])}; platform share {share_text(parts['platform_share'])})",
                      markup=False)
    unexpected = unexpected_nonfinite(result.extremes)
    for line in describe_nonfinite(sc, result.extremes):
        if line.split(":")[0] in unexpected:
            console.print(f"[red]{line}[/]")
    expected = [f"{n} {c:,}" for n, (c, _) in sorted(result.extremes.nonfinite.items())
                if n not in unexpected]
    if expected:
        console.print(f"[dim]non-finite where the model says so (no debt, no IRR root, never paid "
                      f"back, a percent move of a parameter that is never; docs/model.md): "
                      f"{', '.join(expected)}[/]")
    console.print(
        f"wrote {result.path} in {result.seconds:.2f} s, compilation included "
        f"({rate:.3g} scenario-cluster-months/s, chunks of {result.chunk_size:,}; "
        f"{result.writing_s:.2f} s of it in the HDF5 writer)"
    )


def mc_rows(result) -> dict:
    """The Monte Carlo summary as plain data: statistics of NPV, IRR, ROI, then the risk block."""

    s = result.summary
    rows = {}
    for name in SUMMARY_OUTPUTS:
        rows[name] = {k: float(v) for k, v in zip(STATISTICS, s.table(name)[0])}
    risk = {k: (v if isinstance(v, int) else float(v) if v is not None and getattr(v, "ndim", 0) == 0
                else [float(x) for x in v]) for k, v in s.risk().items()}  # ints: cvar_*_tail_paths
    data = {"paths": result.scenario.paths, "seed": result.scenario.seed, "statistics": rows,
            "risk": risk, "quantiles": list(QUANTILES),
            "unexpected_nonfinite": {k: {"count": c, "first_path": f} for k, (c, f) in s.unexpected.items()}}
    sens = _result_sensitivities(result)
    if sens is not None:
        data["sensitivities"] = {"per": "+1 % of the value (gradient x value / 100)", "rows": sens}
    return data


MC_SENSITIVITY_TOP = 10


def mc_sensitivity_rows(gradients: dict, values, clusters, params, discount_rate: float | None) -> list[dict]:
    """The pathwise sensitivities of a Monte Carlo run as changes for a +1 % move.

    gradients: grad_mean_npv and grad_cvar_<lvl> [cluster, parameter] (d/d value) with their
    *_discount_rate scalars; values [cluster, parameter]: the base values. Per (cluster,
    parameter) and for the discount rate (cluster "portfolio"): mean_npv, cvar_<lvl> = the
    gradient x value / 100, the change for a +1 % (relative) move of that one value (a CVaR
    is a loss: positive is worse); step: a step parameter (tornado.STEP_PARAMS), whose
    gradient is the slope between steps. Ranked by |mean_npv|; "never" and zero values,
    which a relative move leaves unchanged, are left out.
    """
    import numpy as np

    from .tornado import STEP_PARAMS

    keys = ["grad_mean_npv"] + sorted(k for k in gradients if k.startswith("grad_cvar_")
                                      and not k.endswith("_discount_rate"))
    names = {k: "mean_npv" if k == "grad_mean_npv" else k.removeprefix("grad_") for k in keys}
    vals = np.asarray(values, dtype=np.float64)
    rows = []
    for c, cluster in enumerate(clusters):
        for j, param in enumerate(params):
            v = float(vals[c, j])
            if not math.isfinite(v) or v == 0:
                continue
            rows.append({"cluster": cluster, "parameter": param, "value": v, "step": param in STEP_PARAMS,
                         **{names[k]: float(np.asarray(gradients[k])[c, j]) * v / 100 for k in keys}})
    if discount_rate and all(f"{k}_discount_rate" in gradients for k in keys):
        rows.append({"cluster": "portfolio", "parameter": "discount_rate", "value": float(discount_rate), "step": False,
                     **{names[k]: float(gradients[f"{k}_discount_rate"]) * discount_rate / 100 for k in keys}})
    rows.sort(key=lambda r: -abs(r["mean_npv"]) if math.isfinite(r["mean_npv"]) else math.inf)
    return rows


def _result_sensitivities(result) -> list[dict] | None:
    """mc_sensitivity_rows of a Monte Carlo run with --sensitivities (None without)."""
    if not getattr(result, "gradients", None):
        return None
    from .kernels.params import PARAM_NAMES

    pf = result.portfolio
    values = [[c[k] for k in PARAM_NAMES] for c in pf.clusters]
    return mc_sensitivity_rows(result.gradients, values, pf.cluster_names, PARAM_NAMES, pf.discount_rate)


def print_mc_sensitivities(rows: list[dict], currency: str, console, top: int = MC_SENSITIVITY_TOP) -> None:
    """The top rows of mc_sensitivity_rows as a table: the change of mean NPV and of each
    CVaR for +1 % of one value."""
    from rich.table import Table

    # CVaR 95 only, so that the table fits 80 columns (CVaR 99, from a 1 % tail: run --json, report)
    levels = [k for k in ("cvar_95",) if rows and k in rows[0]]
    console.print(f"pathwise sensitivities: change in {currency} for +1 % of one value, the top "
                  f"{min(top, len(rows))} of {len(rows)} by |Δ mean NPV| (all in run --json)")
    t = Table(show_header=True, header_style="bold")
    t.add_column("cluster", overflow="fold")
    t.add_column("parameter", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("Δ mean NPV", justify="right", no_wrap=True)
    for k in levels:
        t.add_column(f"Δ CVaR {k[5:]} %\n(loss)", justify="right", no_wrap=True)
    from .tornado import STEP_MARK, STEP_NOTE

    for r in rows[:top]:
        t.add_row(r["cluster"], r["parameter"] + (STEP_MARK if r.get("step") else ""), f"{r['value']:,.6g}",
                  change_text(r["mean_npv"]), *(change_text(r[k]) for k in levels))
    console.print(t)
    if any(r.get("step") for r in rows[:top]):
        console.print(f"{STEP_MARK} {STEP_NOTE} (the gradient is the slope between steps)", markup=False)


def print_mc_summary(result, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    pf, mc = result.portfolio, result.scenario
    data = mc_rows(result)
    console.print(
        f"[bold]{pf.name}[/]: {len(pf.clusters)} clusters, {pf.horizon_months} months; Monte Carlo "
        f"[bold]{mc.name}[/], {mc.paths:,} paths (seed {mc.seed}); {result.backend}"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("output")
    for col in ("mean", "± s.e.", "P5", "P50", "P95"):
        table.add_column(col, justify="right")
    for name in SUMMARY_OUTPUTS:
        st = data["statistics"][name]
        table.add_row(name.upper(), fmt(name, st["mean"]), fmt(name, st["stderr"]),
                      fmt(name, st["p5"]), fmt(name, st["p50"]), fmt(name, st["p95"]))
    console.print(table)
    r = data["risk"]
    risk = Table(show_header=True, header_style="bold")
    risk.add_column("risk of the portfolio NPV")
    risk.add_column("value", justify="right")
    risk.add_column("± s.e.", justify="right")
    for lvl in ("95", "99"):
        risk.add_row(f"VaR {lvl} %", fmt("npv", r[f"var_{lvl}"]), "")
        se, k = r[f"cvar_{lvl}_stderr"], r.get(f"cvar_{lvl}_tail_paths")
        if not math.isfinite(se) and k is not None and k < 2:  # no spread to estimate it from
            se_text = f"n/a ({k} tail path{'' if k == 1 else 's'})"
        else:
            se_text = fmt("npv", se)
        risk.add_row(f"CVaR {lvl} %", fmt("npv", r[f"cvar_{lvl}"]), se_text)
    probs = [("prob_npv_negative", "P(NPV < 0)")]
    if mc.hurdle_irr is not None:
        probs.append(("prob_irr_below_hurdle", f"P(IRR < {100 * mc.hurdle_irr:g} %)"))
    if mc.covenant_dscr is not None:
        probs.append(("prob_dscr_below_covenant", f"P(min DSCR < {mc.covenant_dscr:g})"))
    for key, label in probs:
        v, se = r[key], r[key + "_stderr"]
        risk.add_row(label, f"{100 * v:.2f} %" if math.isfinite(v) else str(v),
                     f"{100 * se:.2f} %" if math.isfinite(se) else "")
    console.print(risk)
    tail = r["tail_contribution_95"]
    console.print("tail contribution (mean NPV in the portfolio's worst 5 %): " + ", ".join(
        f"{n} {fmt('npv', v)}" for n, v in zip(pf.cluster_names, tail)))
    if "sensitivities" in data:
        print_mc_sensitivities(data["sensitivities"]["rows"], pf.currency, console)
    for name, d in data["unexpected_nonfinite"].items():
        console.print(f"[red]{name}: {d['count']:,} paths non-finite (UNEXPECTED), first at path "
                      f"{d['first_path']}[/]")
    rate = result.scm / result.seconds if result.seconds > 0 else float("nan")
    console.print(f"wrote {result.path} in {result.seconds:.2f} s, compilation included "
                  f"({rate:.3g} path-cluster-months/s, chunks of {result.chunk_size:,})")


def print_named_summary(result, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    pf, sc = result.portfolio, result.scenario
    console.print(f"[bold]{pf.name}[/]: {len(pf.clusters)} clusters, {pf.horizon_months} months; "
                  f"named scenarios [bold]{sc.name}[/], {sc.size} sets")
    table = Table(show_header=True, header_style="bold")
    table.add_column("scenario")
    table.add_column(f"NPV ({pf.currency})", justify="right")
    table.add_column("Δ NPV", justify="right")
    table.add_column("IRR", justify="right")
    table.add_column("ROI", justify="right")
    table.add_column("min DSCR", justify="right")
    platform = any("platform_npv" in r for r in result.rows)  # a portfolio with a platform layer
    if platform:
        table.add_column("platform NPV", justify="right")
    for r in result.rows:
        dscr = f"{r['min_dscr']:.2f}" if math.isfinite(r["min_dscr"]) else "-"
        table.add_row(f"{r['scenario']}\n[dim]{r['title']}[/]", fmt("npv", r["npv"]), fmt("npv", r["npv_change"]),
                      fmt("irr", r["irr"]), fmt("roi", r["roi"]), dscr,
                      *((fmt("npv", r["platform_npv"]),) if platform else ()))
    console.print(table)
    console.print(f"wrote {result.path} in {result.seconds:.2f} s")


def environment_info() -> dict:
    import numpy as np

    from .version import __version__
    from .backends import cupy_available, jax_gpu_devices, make_backend

    data = {
        "stresstest": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }
    from importlib import metadata

    for dist in ("jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x", "h5py", "array-api-compat",
                 "pydantic", "click"):
        try:
            data[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if not dist.startswith("cupy"):
                data[dist] = "not installed"
    data["jax devices"] = ", ".join(str(d) for d in jax_gpu_devices()) or "cpu only"
    data["cupy gpu"] = "yes" if cupy_available() else "no"
    try:
        data["auto backend"] = make_backend("auto").describe()
    except Exception as exc:  # pragma: no cover - reported, not raised
        data["auto backend"] = f"unavailable ({exc})"
    data["compile cache"] = compile_cache_summary()
    return data


def compile_cache_summary(environ=os.environ) -> str:
    """Where the command line keeps compiled programs, how many and their size, or off."""
    from .backends import compile_cache_dir

    path = compile_cache_dir(environ)
    if path is None:
        return "off"
    files = [e for e in os.scandir(path) if e.is_file()]
    mib = sum(e.stat().st_size for e in files) / 2**20
    return f"{path} ({len(files)} programs, {mib:.1f} MiB)"


def run_json(result) -> dict:
    """The printed summary of any run as plain data (`run --json`)."""
    import math as _m

    def clean(x):
        if isinstance(x, float):
            return x if _m.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if hasattr(x, "item"):
            return clean(x.item())
        return x

    kind = getattr(result, "kind", None) or result.scenario.kind  # a kind of run of its own (optimize)
    head = {"path": str(result.path), "kind": kind, "portfolio": result.portfolio.name,
            "scenario": result.scenario.name, "backend": result.backend, "seconds": result.seconds,
            "config_sha256": result.config_sha256}
    return clean({**head, **JSON_BODIES[kind](result)})


def _grid_json(result) -> dict:
    body = {"points": result.scenario.size, "writing_seconds": result.writing_s, "rows": summary_rows(result),
            "nonfinite": {n: c for n, (c, _) in result.extremes.nonfinite.items()}}
    parts = npv_parts(result)
    if parts is not None:
        body["base_npv_parts"] = parts
    return body


# Each scenario kind's terminal summary and --json body, found by the result's kind (the
# runs find theirs in runner.RUNS; docs/architecture.md)
PRINTERS = {"grid": print_run_summary, "montecarlo": print_mc_summary, "named": print_named_summary,
            "optimize": print_optimize}
JSON_BODIES = {"grid": _grid_json, "montecarlo": mc_rows, "named": lambda result: {"rows": result.rows},
               "optimize": optimize_json}
