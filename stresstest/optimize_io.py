"""The HDF5 file of `stresstest optimize` (docs/decisions.md, "Which mix: optimize").

Root (xarray.open_dataset(path, engine="h5netcdf")), attribute kind = "optimize":
  coordinates  param (the varied parameters as given), cluster, sample (in_sample,
               fresh), metric (METRICS), constraint (the names given), and with
               --frontier frontier_point (0 .. N-1)
  lower, upper, current, optimum (param); param_name, param_cluster (param)
  current_by_cluster (param, cluster): each cluster's current value, NaN where the
    variable does not move it
  optimum_metrics, current_metrics (sample, metric)
  limit, met (constraint)
  frontier_cvar_limit, frontier_feasible (frontier_point), frontier_mix
    (frontier_point, param), frontier_metrics (frontier_point, sample, metric)
Root attributes besides the provenance: objective, constraints, feasible (1 or 0),
message, paths, seed, fresh_seed, solver_<setting> (the scales, bandwidths, starts and
re-solves: optimize_solve.Problem.settings) and with --frontier frontier_note.
Written under a temporary name and renamed when complete (h5io.AtomicFile).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .h5io import AtomicFile

# The objective's name -> the per-path output whose mean it is
OBJECTIVES = {"mean_npv": "npv", "mean_irr": "irr", "mean_equity_npv": "equity_npv"}
# The constraint's name -> the per-path output it is taken from (each an upper limit)
CONSTRAINTS = {"cvar_95": "npv", "prob_npv_negative": "npv", "prob_dscr_below_covenant": "min_dscr"}
# The figures of a mix, exact over a set of paths (optimize_solve.exact_metrics)
METRICS = ("mean_npv", "cvar_95", "prob_npv_negative", "prob_dscr_below_covenant", "mean_irr", "irr_nonfinite",
           "mean_equity_npv")
SAMPLES = ("in_sample", "fresh")
FRESH_SEED_STEP = 1  # the fresh paths' seed: the scenario's plus this (optimize.fresh_seed)

METRIC_TEXT = {
    "mean_npv": "mean portfolio NPV",
    "cvar_95": "CVaR 95 % of the portfolio NPV (minus the mean of its 5 % lower tail: a loss)",
    "prob_npv_negative": "share of paths with portfolio NPV < 0",
    "prob_dscr_below_covenant": "share of the paths with a DSCR whose portfolio min DSCR is below the covenant",
    "mean_irr": "mean portfolio IRR over the paths where it is finite",
    "irr_nonfinite": "paths whose portfolio IRR is not finite (left out of mean_irr)",
    "mean_equity_npv": "mean NPV of the portfolio's equity flows at the discount rate",
}


def _labels(f, name: str, labels) -> object:
    import h5py

    ds = f.create_dataset(name, data=np.array(list(labels), dtype=object), dtype=h5py.string_dtype())
    ds.make_scale(name)
    return ds


def _var(f, name: str, data, scales, long_name: str, units: str = ""):
    import h5py

    arr = np.asarray(data)
    if arr.dtype.kind in "UO":
        ds = f.create_dataset(name, data=np.array(arr, dtype=object), dtype=h5py.string_dtype())
    else:
        ds = f.create_dataset(name, data=arr.astype(np.int8 if arr.dtype == bool else np.float64))
    for i, s in enumerate(scales):
        ds.dims[i].attach_scale(s)
    ds.attrs["long_name"] = long_name
    if units:
        ds.attrs["units"] = units
    return ds


def _metric_table(pair: dict) -> np.ndarray:
    """[sample, metric] of {"in_sample": figures, "fresh": figures} (NaN where absent)."""
    return np.array([[float((pair.get(s) or {}).get(m, np.nan)) for m in METRICS] for s in SAMPLES])


# Root attributes of the answer besides the provenance (the rest of optimize.summary is datasets)
SUMMARY_ATTRS = ("objective", "constraints", "feasible", "message", "paths", "seed", "fresh_seed")


def write_optimize(path, attrs: dict, d: dict, clusters: list[str], by_cluster: np.ndarray) -> Path:
    """The file from optimize.summary's dict, the cluster names and each cluster's current
    value of each variable ([param, cluster])."""
    with AtomicFile(path) as out:
        f = out.f
        settings = {f"solver_{k}": v for k, v in d["settings"].items()}
        for k, v in {**attrs, **{k: d[k] for k in SUMMARY_ATTRS}, **settings}.items():
            f.attrs[k] = int(v) if isinstance(v, bool) else v
        ps = d["params"]
        param = _labels(f, "param", [p["label"] for p in ps])
        cluster = _labels(f, "cluster", clusters)
        sample = _labels(f, "sample", SAMPLES)
        metric = _labels(f, "metric", METRICS)
        constraint = _labels(f, "constraint", list(d["limits"]))
        for name, key, text in (("param_name", "param", "the parameter each variable sets"),
                                ("param_cluster", "cluster", "the cluster it sets it in (all: every cluster that "
                                                             "has it)")):
            _var(f, name, [p[key] for p in ps], (param,), text)
        for key, text in (("lower", "lower bound of the variable"), ("upper", "upper bound of the variable"),
                          ("current", "the current value (over several clusters their weighted mean, as "
                                      "breakeven reports it)"),
                          ("optimum", "the optimal mix (where feasible = 0, the mix found closest to meeting "
                                      "the constraints)")):
            _var(f, key, [p[key] for p in ps], (param,), text)
        _var(f, "current_by_cluster", by_cluster, (param, cluster),
             "each cluster's current value (NaN: the variable does not set it in the cluster)")
        _var(f, "optimum_metrics", _metric_table(d["optimum_metrics"]), (sample, metric),
             "the figures of the optimum on the in-sample and on fresh paths")
        _var(f, "current_metrics", _metric_table(d["current_metrics"]), (sample, metric),
             "the figures of the portfolio as it is (the current mix) on the same paths")
        _var(f, "limit", list(d["limits"].values()), (constraint,), "the constraint's upper limit")
        _var(f, "met", np.asarray(list(d["met"].values()), dtype=bool), (constraint,),
             "1 where the optimum meets the constraint on the in-sample paths (checked exactly)")
        fr = d.get("frontier")
        if fr is not None:
            f.attrs["frontier_note"] = fr["note"]
            point = f.create_dataset("frontier_point", data=np.arange(len(fr["limit"]), dtype=np.int64))
            point.make_scale("frontier_point")
            _var(f, "frontier_cvar_limit", fr["limit"], (point,), "the CVaR 95 limit of the frontier's point",
                 attrs.get("currency", "USD"))
            _var(f, "frontier_feasible", np.asarray(fr["feasible"], dtype=bool), (point,),
                 "1 where a mix meets every constraint at the point")
            _var(f, "frontier_mix", fr["mix"], (point, param), "the optimal mix at the point")
            _var(f, "frontier_metrics", np.stack([_metric_table(p) for p in fr["metrics"]]),
                 (point, sample, metric), "the figures of the point's mix, in-sample and on fresh paths")
        return out.commit()


def read_optimize(f) -> dict:
    """An optimize file (an open h5py.File) as optimize.summary's dict, with the cluster
    names and current_by_cluster: for `inspect` and `report`."""
    def texts(name):
        return [x.decode() if isinstance(x, bytes) else str(x) for x in f[name][()]]

    def table(name):
        arr = np.asarray(f[name][()], dtype=np.float64)
        return {s: dict(zip(METRICS, (float(x) for x in row))) for s, row in zip(SAMPLES, arr)}

    attrs = {k: v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v
             for k, v in f.attrs.items()}
    out = {k: attrs.get(k) for k in SUMMARY_ATTRS}
    out["feasible"] = bool(out["feasible"])
    columns = [texts("param"), texts("param_name"), texts("param_cluster")] + \
        [np.asarray(f[k][()], dtype=np.float64) for k in ("lower", "upper", "current", "optimum")]
    out["params"] = [{"label": label, "param": name, "cluster": cl, "lower": float(lo), "upper": float(hi),
                      "current": float(cur), "optimum": float(opt)}
                     for label, name, cl, lo, hi, cur, opt in zip(*columns)]
    out["optimum_metrics"], out["current_metrics"] = table("optimum_metrics"), table("current_metrics")
    names = texts("constraint")
    out["limits"] = {n: float(v) for n, v in zip(names, f["limit"][()])}
    out["met"] = {n: bool(v) for n, v in zip(names, f["met"][()])}
    out["settings"] = {k[len("solver_"):]: v for k, v in attrs.items() if k.startswith("solver_")}
    out["clusters"] = texts("cluster")
    out["current_by_cluster"] = np.asarray(f["current_by_cluster"][()], dtype=np.float64)
    if "frontier_point" in f:
        metrics = np.asarray(f["frontier_metrics"][()], dtype=np.float64)
        out["frontier"] = {
            "limit": [float(v) for v in f["frontier_cvar_limit"][()]],
            "feasible": [bool(v) for v in f["frontier_feasible"][()]],
            "mix": np.asarray(f["frontier_mix"][()], dtype=np.float64).tolist(),
            "metrics": [{s: dict(zip(METRICS, (float(x) for x in row))) for s, row in zip(SAMPLES, p)}
                        for p in metrics],
            "note": attrs.get("frontier_note", ""),
        }
    return out
