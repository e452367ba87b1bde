"""A Monte Carlo file's figures and tables: the NPV histogram (needs the per-path NPVs of
`--save-paths`) and CDF with VaR 95 and CVaR 95 marked, the fan chart of the cumulative
cash flow, the pathwise sensitivities (`mc_sensitivities.png`), and the HTML body."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np

from .fig_common import finite, literal, new_figure, wrap
from .fig_html import escape, fmt, fmt_money, fmt_num, fmt_pct, header, table
from .fig_read import CHUNK_ELEMS, TORNADO_TOP, Plan, attr, plan_without_axes, strings


def plan(f, path: Path, kind: str, x, y, at: dict) -> Plan:
    return plan_without_axes(path, kind, x, y, at, "a Monte Carlo result has no grid axes")


def title(f) -> str:
    return f"Monte Carlo report: {attr(f, 'portfolio', '?')}, scenario {attr(f, 'scenario', '?')}"


FAN = (0.05, 0.25, 0.5, 0.75, 0.95)


def statistics(f, name: str) -> dict[str, float]:
    stats = [str(s) for s in strings(f["statistic"][()])]
    v = np.asarray(f[name][()], dtype=np.float64)
    return dict(zip(stats, v.tolist()))


def scalar(f, name):
    return float(f[name][()]) if name in f else None


def build(f, path: Path, plan: Plan, save, notes: list[str]) -> dict:
    """The Monte Carlo file's tables and figures: the NPV histogram (with --save-paths) and
    CDF, the fan chart of the cumulative cash flow, the pathwise sensitivities."""
    currency = str(attr(f, "currency", "USD"))
    tables: dict = {}
    stats, clusters = summary_tables(f, tables)
    figs = {}
    draw_distribution(f, save, notes, tables, figs, currency, stats)
    if "cumulative_cf_fan" in f:
        draw_fan(f, save, figs, currency)
    if "grad_mean_npv" in f:
        sensitivities(f, save, notes, figs, tables, currency, clusters)
    return {"tables": tables, "captions": figs, "currency": currency}


def summary_tables(f, tables: dict) -> tuple[dict, list[str]]:
    """Fills tables' statistics, risk, hurdle_irr, covenant_dscr and clusters; returns the
    statistics by output and the clusters."""
    outs = [k for k in ("npv", "irr", "roi", "equity_irr", "min_dscr") if k in f]
    stats = {k: statistics(f, k) for k in outs}
    tables["statistics"] = [{"output": k, **{s: stats[k].get(s, math.nan)
                                             for s in ("mean", "stderr", "p5", "p50", "p95", "nonfinite_fraction")}}
                            for k in outs]
    risk = {}
    for k in ("var_95", "cvar_95", "var_99", "cvar_99", "prob_npv_negative", "prob_irr_below_hurdle",
              "prob_dscr_below_covenant"):
        if k in f:
            risk[k] = {"value": scalar(f, k), "stderr": scalar(f, f"{k}_stderr")}
    tables["risk"] = risk
    try:
        sc = json.loads(attr(f, "config"))["scenario"]
    except Exception:  # noqa: BLE001
        sc = {}
    tables["hurdle_irr"], tables["covenant_dscr"] = sc.get("hurdle_irr"), sc.get("covenant_dscr")
    clusters = [str(c) for c in strings(f["cluster"][()])] if "cluster" in f else []
    crow = []
    for i, c in enumerate(clusters):
        row = {"cluster": c}
        if "cluster_npv" in f:
            cs = np.asarray(f["cluster_npv"][i], dtype=np.float64)
            st = dict(zip([str(s) for s in strings(f["statistic"][()])], cs.tolist()))
            row["mean"], row["p5"] = st.get("mean", math.nan), st.get("p5", math.nan)
        for k in ("cluster_var_95", "cluster_cvar_95", "tail_contribution_95"):
            if k in f:
                row[k] = float(np.asarray(f[k][()])[i])
        crow.append(row)
    tables["clusters"] = crow
    return stats, clusters


def risk_marks(ax, tables: dict, stats: dict) -> None:
    """VaR 95 and CVaR 95 are losses (positive: NPV below zero), as `run` prints them; the line
    stands at the NPV they come from: the 5 % quantile, the mean of the worst 5 %. And the mean."""
    from .report import fmt as tfmt  # the terminal's format, so that the legend reads as `run` prints

    cm = matplotlib.colormaps["viridis"]
    npv = stats.get("npv", {})
    risk = tables["risk"]
    var95 = risk.get("var_95", {}).get("value")
    cvar95 = risk.get("cvar_95", {}).get("value")
    for val, lab, at, ls in ((var95, "VaR 95 %", "NPV at P5", "--"),
                             (cvar95, "CVaR 95 %", "mean NPV of the worst 5 %", ":")):
        if val is not None and finite(val):
            ax.axvline(-val / 1e6, color="black", linestyle=ls, linewidth=1.6,
                       label=f"{lab} = {tfmt('npv', val)} ({at} = {tfmt('npv', -val)})")
    if finite(npv.get("mean")):
        ax.axvline(npv["mean"] / 1e6, color=cm(0.6), linestyle="-", linewidth=1.6,
                   label=f"mean NPV = {tfmt('npv', npv['mean'])}")


def draw_distribution(f, save, notes: list[str], tables: dict, figs: dict, currency: str, stats: dict) -> None:
    """The NPV histogram and empirical CDF from the per-path NPVs, or without them the CDF
    through the quantile statistics."""
    cm = matplotlib.colormaps["viridis"]
    npv = stats.get("npv", {})
    has_paths = "paths" in f and "npv" in f["paths"]
    if has_paths:
        ds = f["paths"]["npv"]
        lo, hi = npv.get("min", math.nan), npv.get("max", math.nan)
        if not (finite(lo) and finite(hi)) or lo >= hi:
            a = np.asarray(ds[()], dtype=np.float64)
            a = a[np.isfinite(a)]
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
            if lo >= hi:
                lo, hi = lo - 0.5, hi + 0.5
        coarse = np.linspace(lo, hi, 61)
        fine = np.linspace(lo, hi, 2001)
        hc = np.zeros(60)
        hf = np.zeros(2000)
        n = 0
        for i in range(0, ds.shape[0], CHUNK_ELEMS):
            a = np.asarray(ds[i:i + CHUNK_ELEMS], dtype=np.float64)
            a = a[np.isfinite(a)]
            n += a.size
            hc += np.histogram(a, coarse)[0]
            hf += np.histogram(a, fine)[0]
        tables["paths_in_histogram"] = n
        fig = new_figure()
        ax = fig.add_subplot()
        ax.stairs(hc, coarse / 1e6, fill=True, color=cm(0.3), alpha=0.85, label=f"{n:,} paths")
        risk_marks(ax, tables, stats)
        ax.set_xlabel(f"portfolio NPV (M {currency})")
        ax.set_ylabel("paths")
        ax.set_title("Portfolio NPV over the Monte Carlo paths", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save(fig, "npv_hist.png")
        figs["npv_hist.png"] = ("Histogram of the portfolio NPV over the paths. VaR 95 and CVaR 95 are losses, "
                                "positive below NPV = 0, as the run prints them; their lines stand at the NPV "
                                "they come from: the 5 % quantile (−VaR) and the mean of the worst 5 % (−CVaR).")
        fig = new_figure()
        ax = fig.add_subplot()
        cdf = np.concatenate([[0.0], np.cumsum(hf)]) / max(n, 1)
        ax.plot(fine / 1e6, cdf, color=cm(0.3), linewidth=2, label="empirical CDF")
        cdf_note = "empirical, from the per-path NPVs"
    else:
        notes.append("The NPV histogram needs the per-path NPVs: run with --save-paths to get it. "
                     "The CDF below is drawn through the quantile statistics only.")
        fig = new_figure()
        ax = fig.add_subplot()
        qs = [(q, npv.get(k)) for q, k in ((0.01, "p1"), (0.05, "p5"), (0.5, "p50"), (0.95, "p95"), (0.99, "p99"))]
        qs = [(q, v) for q, v in qs if finite(v)]
        ax.plot([v / 1e6 for _, v in qs], [q for q, _ in qs], marker="o", linestyle=":", color=cm(0.3),
                linewidth=1.2, label="quantiles p1, p5, p50, p95, p99")
        cdf_note = "through the quantile statistics p1, p5, p50, p95, p99 (no per-path NPVs in the file)"
    ax.axhline(0.05, color="0.5", linewidth=0.8)
    risk_marks(ax, tables, stats)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"portfolio NPV (M {currency})")
    ax.set_ylabel("probability NPV ≤ x")
    ax.set_title("Cumulative distribution of the portfolio NPV", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, "npv_cdf.png")
    figs["npv_cdf.png"] = (f"CDF of the portfolio NPV, {cdf_note}. VaR 95 and CVaR 95 (losses, as the run "
                           "prints them) are marked at the 5 % quantile of the NPV (−VaR) and at the mean "
                           "NPV of the worst 5 % (−CVaR).")


def draw_fan(f, save, figs: dict, currency: str) -> None:
    """The fan chart of the cumulative cash flow: 5-95 % and 25-75 % bands, median, mean."""
    cm = matplotlib.colormaps["viridis"]
    fan = np.asarray(f["cumulative_cf_fan"][()], dtype=np.float64) / 1e6  # (month, q)
    months = np.asarray(f["month"][()]) if "month" in f else np.arange(fan.shape[0])
    qv = np.asarray(f["fan_quantile"][()], dtype=np.float64) if "fan_quantile" in f else np.array(FAN)
    col = {q: int(np.argmin(np.abs(qv - q))) for q in FAN if np.min(np.abs(qv - q)) < 1e-9}
    fig = new_figure(7.6, 5.0)
    ax = fig.add_subplot()
    if 0.05 in col and 0.95 in col:
        ax.fill_between(months, fan[:, col[0.05]], fan[:, col[0.95]], color=cm(0.75), alpha=0.45,
                        linewidth=0, label="5–95 %")
    if 0.25 in col and 0.75 in col:
        ax.fill_between(months, fan[:, col[0.25]], fan[:, col[0.75]], color=cm(0.45), alpha=0.6,
                        linewidth=0, label="25–75 %")
    if 0.5 in col:
        ax.plot(months, fan[:, col[0.5]], color=cm(0.1), linewidth=2, label="median")
    if "cumulative_cf_mean" in f:
        ax.plot(months, np.asarray(f["cumulative_cf_mean"][()], dtype=np.float64) / 1e6, color="black",
                linestyle="--", linewidth=1.5, label="mean")
    ax.axhline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel("month")
    ax.set_ylabel(f"cumulative cash flow (M {currency})")
    ax.set_title("Cumulative portfolio cash flow over the paths", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, "cumulative_cf_fan.png")
    figs["cumulative_cf_fan.png"] = ("Fan chart of the cumulative portfolio cash flow by month: the 5–95 % and "
                                     "25–75 % bands over the paths, the median and the mean.")


def sensitivities(f, save, notes, figs, tables, currency, clusters) -> None:
    """The pathwise sensitivities of `run -s <montecarlo> --sensitivities`: per (cluster,
    parameter) the change of the mean NPV and of CVaR 95 for +1 % of the value (gradient x
    value / 100, the values from the file's configuration), the top 15 as bars."""
    from .kernels.params import PARAM_NAMES
    from .report import mc_sensitivity_rows

    import h5py

    grads = {k: np.asarray(f[k][()], dtype=np.float64) for k in f
             if k.startswith("grad_") and isinstance(f[k], h5py.Dataset)}
    params = [str(p) for p in strings(f["parameter"][()])] if "parameter" in f else list(PARAM_NAMES)
    try:
        cfg = json.loads(attr(f, "config"))["portfolio"]
        by_name = {c["name"]: c for c in cfg["clusters"]}
        rate = cfg.get("discount_rate")
    except Exception:  # noqa: BLE001 - an old or foreign file: no values to scale by
        by_name, rate = {}, None
    values = [[math.inf if by_name.get(c, {}).get(p, math.nan) is None else by_name.get(c, {}).get(p, math.nan)
               for p in params] for c in clusters]
    if not by_name:
        notes.append("The file holds pathwise sensitivities (grad_mean_npv, grad_cvar_*) but no configuration "
                     "with the parameter values: no chart of the change per +1 %.")
        return
    rows = mc_sensitivity_rows(grads, values, clusters, params, rate)
    tables["sensitivities"] = rows
    top = [r for r in rows if math.isfinite(r["mean_npv"])][:TORNADO_TOP]
    if not top:
        return
    fig = new_figure(8.4, 1.9 + 0.42 * len(top))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(top))
    cm = matplotlib.colormaps["RdBu"]
    ax.barh(pos - 0.2, [r["mean_npv"] / 1e6 for r in top], height=0.4, color=cm(0.85), edgecolor="black",
            linewidth=0.5, label="Δ mean NPV")
    if all("cvar_95" in r for r in top):
        ax.barh(pos + 0.2, [r["cvar_95"] / 1e6 for r in top], height=0.4, color=cm(0.15), edgecolor="black",
                linewidth=0.5, hatch="//", label="Δ CVaR 95 % (a loss: right is worse)")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(pos, [literal(f"{r['cluster']} · {r['parameter']}" + ("*" if r.get("step") else "")) for r in top],
                  fontsize=8)
    if any(r.get("step") for r in top):
        from .tornado import STEP_NOTE

        fig.supxlabel(f"* {STEP_NOTE} (the gradient is the slope between steps)", fontsize=8, x=0.01, ha="left")
    ax.invert_yaxis()
    ax.set_xlabel(f"change for +1 % of the value (M {currency})")
    ax.set_title(wrap(f"Pathwise sensitivities: change for +1 % of one value (top {len(top)} by |Δ mean NPV|)",
                       80), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, "mc_sensitivities.png")
    figs["mc_sensitivities.png"] = ("Pathwise sensitivities over the same paths: the change of the mean NPV and "
                                    "of CVaR 95 (a loss, positive is worse) for a +1 % move of one cluster's "
                                    "parameter (gradient × value / 100; the discount rate moves for the "
                                    "whole portfolio).")


def body(res: dict) -> list[str]:
    cur = res["currency"]
    t = res["tables"]
    parts = ["<h2>Summary</h2>", "<h3>Statistics over the paths</h3>"]
    rows = []
    for r in t["statistics"]:
        k = r["output"]
        rows.append([header(k, cur), fmt(k, r["mean"]), fmt(k, r["stderr"]), fmt(k, r["p5"]), fmt(k, r["p50"]),
                     fmt(k, r["p95"]), fmt_pct(r["nonfinite_fraction"], 1)])
    parts.append(table(["output", "mean", "stderr of mean", "p5", "p50", "p95", "not finite"], rows,
                        num_cols=range(1, 7)))
    names = {"var_95": f"VaR 95 (M {cur})", "cvar_95": f"CVaR 95 (M {cur})", "var_99": f"VaR 99 (M {cur})",
             "cvar_99": f"CVaR 99 (M {cur})", "prob_npv_negative": "P(NPV < 0)",
             "prob_irr_below_hurdle": f"P(IRR < hurdle {fmt_pct(t['hurdle_irr'] or math.nan)})",
             "prob_dscr_below_covenant": f"P(min DSCR < covenant {fmt_num(t['covenant_dscr'] or math.nan)})"}
    rows = []
    for k, v in t["risk"].items():
        f_ = fmt_money if k.startswith(("var", "cvar")) else fmt_pct
        rows.append([names[k], f_(v["value"]), f_(v["stderr"]) if v["stderr"] is not None else "-"])
    parts.append("<h3>Risk</h3>")
    parts.append(table(["measure", "value", "stderr"], rows, num_cols=(1, 2)))
    if t["clusters"]:
        cols = [("mean", f"mean NPV (M {cur})"), ("p5", f"p5 NPV (M {cur})"),
                ("cluster_var_95", f"VaR 95 (M {cur})"), ("cluster_cvar_95", f"CVaR 95 (M {cur})"),
                ("tail_contribution_95", f"mean NPV in the portfolio's worst 5 % (M {cur})")]
        cols = [c for c in cols if any(c[0] in r for r in t["clusters"])]
        parts.append("<h3>By cluster</h3>")
        parts.append(table(["cluster", *(h for _, h in cols)],
                            [[r["cluster"], *(fmt_money(r.get(k, math.nan)) for k, _ in cols)] for r in t["clusters"]],
                            num_cols=range(1, 1 + len(cols))))
    sens = t.get("sensitivities")
    if sens:
        levels = [k for k in sens[0] if k.startswith("cvar_")]
        parts.append(f"<h3>Sensitivities (pathwise): change for +1 % of one value, the top {min(len(sens), TORNADO_TOP)} "
                     f"of {len(sens)} by |Δ mean NPV|</h3>")
        parts.append(table(["cluster", "parameter", "value", f"Δ mean NPV (M {cur})",
                             *(f"Δ CVaR {k[5:]} % (M {cur}, a loss)" for k in levels)],
                            [[r["cluster"], r["parameter"] + ("*" if r.get("step") else ""), f"{r['value']:,.6g}",
                              fmt_money(r["mean_npv"]),
                              *(fmt_money(r[k]) for k in levels)] for r in sens[:TORNADO_TOP]],
                            num_cols=range(2, 4 + len(levels))))
        if any(r.get("step") for r in sens[:TORNADO_TOP]):
            from .tornado import STEP_NOTE

            parts.append(f"<p>* {escape(STEP_NOTE)} (the gradient is the slope between steps)</p>")
    return parts
