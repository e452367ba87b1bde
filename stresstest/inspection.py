"""`stresstest inspect` and `stresstest show`: what a result file holds, what a portfolio resolves to."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .config import ConfigError, Portfolio
from .kernels.params import CLUSTER_PARAMS

HEADLINE = ("npv", "irr", "roi")


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def describe(path: Path) -> dict:
    """Kind, dimensions, variables, provenance, base case, worst and best points of a result file."""
    import h5py

    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ConfigError([f"{path}: not an HDF5 file"]) from None
    with f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        if "model_version" not in attrs:
            raise ConfigError([f"{path}: not a stresstest result file (no model_version attribute)"])
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        kind = attrs.get("kind", "grid")
        if kind == "shard":
            raise ConfigError([f"{path}: a shard file; merge the set first (stresstest merge)"])
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
        info = {"path": str(path), "kind": kind, "dimensions": scales, "variables": variables,
                "provenance": attrs, "groups": [k for k, v in f.items() if isinstance(v, h5py.Group)]}
        if "base" in f:
            info["base"] = {k: _f(f["base"][k][()]) for k in HEADLINE if k in f["base"]}
        if kind in ("grid", "named"):
            axes = [a["name"] for a in config.get("scenario", {}).get("axes", [])] or (
                ["scenario"] if kind == "named" else [])
            coords = {a: f[a][()] for a in axes if a in f}
            extremes = {}
            for name in HEADLINE:
                if name not in f:
                    continue
                v = f[name][()]
                if not np.isfinite(v).any():
                    continue
                flat = np.where(np.isfinite(v), v, np.nan).ravel()
                for label, k in (("worst", int(np.nanargmin(flat))), ("best", int(np.nanargmax(flat)))):
                    idx = np.unravel_index(k, v.shape)
                    point = {}
                    for a, i in zip(axes, idx):
                        c = coords[a][i]
                        point[a] = c.decode() if isinstance(c, bytes) else (str(c) if isinstance(c, str) else float(c))
                    extremes[f"{label}_{name}"] = {"value": _f(flat[k]), "at": point}
            info["extremes"] = extremes
            info["nonfinite"] = {n: int((~np.isfinite(f[n][()])).sum()) for n in HEADLINE if n in f}
        elif kind == "montecarlo":
            stats = [s.decode() if isinstance(s, bytes) else s for s in f["statistic"][()]]
            info["summary"] = {n: dict(zip(stats, (_f(x) for x in f[n][()]))) for n in HEADLINE if n in f}
            info["risk"] = {k: _f(f[k][()]) for k in ("var_95", "cvar_95", "var_99", "cvar_99",
                                                      "prob_npv_negative") if k in f}
    return info


def print_description(info: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    p = info["provenance"]
    console.print(f"[bold]{info['path']}[/]: {info['kind']} result, portfolio {p.get('portfolio')!r}, "
                  f"scenario {p.get('scenario')!r}")
    console.print(f"  made {p.get('created')} by stresstest {p.get('stresstest_version')} (model "
                  f"{p.get('model_version')}) on {p.get('backend')} {p.get('device')}, {p.get('dtype')}; "
                  f"config sha256 {str(p.get('config_sha256'))[:16]}…")
    dims = ", ".join(f"{k} {v:,}" for k, v in info["dimensions"].items())
    console.print(f"  dimensions: {dims}")
    t = Table(show_header=True, header_style="bold", title="variables")
    t.add_column("name")
    t.add_column("dims")
    t.add_column("units")
    for name, v in sorted(info["variables"].items()):
        t.add_row(name, "(" + ", ".join(v["dims"]) + ")", str(v["units"]))
    console.print(t)
    if info.get("base"):
        console.print("  base case: " + ", ".join(f"{k} {v:.6g}" for k, v in info["base"].items() if v is not None))
    for k, e in info.get("extremes", {}).items():
        at = "  ".join(f"{a}={v}" for a, v in e["at"].items())
        console.print(f"  {k.replace('_', ' ')}: {e['value']:.6g} at {at}")
    for k, v in info.get("risk", {}).items():
        console.print(f"  {k}: {v:.6g}" if v is not None else f"  {k}: -")


def portfolio_table(pf: Portfolio) -> dict:
    """{"clusters": [...], "parameters": [{name, unit, values, origins}]} for `show`."""
    params = []
    for spec in CLUSTER_PARAMS:
        values = [c[spec.name] for c in pf.clusters]
        origins = [o.get(spec.name, "model") for o in (pf.origins or [{} for _ in pf.clusters])]
        params.append({"name": spec.name, "unit": spec.unit,
                       "values": [None if math.isinf(v) else v for v in values], "origins": origins})
    return {"portfolio": pf.name, "horizon_months": pf.horizon_months, "discount_rate": pf.discount_rate,
            "clusters": pf.cluster_names, "labels": pf.labels, "parameters": params}


def print_portfolio_table(pf: Portfolio, table: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]{pf.name}[/]: {len(pf.clusters)} clusters, horizon {pf.horizon_months} months, "
                  f"discount rate {pf.discount_rate:g}")
    t = Table(show_header=True, header_style="bold")
    t.add_column("parameter")
    t.add_column("unit")
    for n in pf.cluster_names:
        t.add_column(n, justify="right")
    for row in table["parameters"]:
        cells = []
        for v, o in zip(row["values"], row["origins"]):
            text = "never" if v is None else f"{v:,.6g}"
            cells.append(text if o == "cluster" else (f"[cyan]{text} d[/]" if o == "defaults" else f"[dim]{text} m[/]"))
        t.add_row(row["name"], row["unit"], *cells)
    console.print(t)
    console.print("plain: given for the cluster;  [cyan]d[/]: from defaults:;  [dim]m[/]: the model's default")
