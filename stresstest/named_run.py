"""Named scenarios, run: every shock set of a `kind: named` scenario evaluated at once
(numpy; a handful of rows), one row per set beside the base case, written as a result file
whose one axis is the set's name."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Portfolio, config_json
from .engine import equity_clusters
from .grid_file import GridWriter, industry_coordinate, output_groups
from .h5io import provenance
from .kernels.metrics import evaluate
from .named import NamedScenario, shocked
from .results import Result


def evaluate_named(pf: Portfolio, sc: NamedScenario) -> dict[str, np.ndarray]:
    """Every output for the base case (row 0) and each set (numpy: a handful of rows)."""
    params, rate = shocked(pf, sc.sets)
    with np.errstate(all="ignore"):
        return evaluate(params, rate, pf.horizon_months, equity_clusters=equity_clusters(pf, sc))


def rows(pf: Portfolio, sc: NamedScenario, out: dict) -> list[dict]:
    """One row per set (and the base case first) with the headline outputs, and the
    platform layer's NPV (platform_npv) where the portfolio has one."""
    names = ["base case"] + [s.name for s in sc.sets]
    titles = ["no shock"] + [s.title for s in sc.sets]
    result = []
    for i, (n, t) in enumerate(zip(names, titles)):
        result.append({"scenario": n, "title": t, "npv": float(out["npv"][i]), "irr": float(out["irr"][i]),
                       "roi": float(out["roi"][i]), "min_dscr": float(out["min_dscr"][i]),
                       "npv_change": float(out["npv"][i] - out["npv"][0])})
        if "platform_npv" in out:
            result[-1]["platform_npv"] = float(out["platform_npv"][i])
    return result


@dataclass
class _LabelAxis:
    """The `scenario` dimension of a named run's file: set names as a string coordinate."""

    name: str
    values: np.ndarray
    clusters: None = None
    neutral: None = None


def write_named(path: Path, pf: Portfolio, sc: NamedScenario, out: dict, attrs: dict,
                compression="gzip") -> Path:
    """The result file: every output with dims (scenario[, cluster][, industry]), plus the
    base group (a version 2 portfolio's outputs by industry and of its groups, as a grid's)."""
    axis = _LabelAxis("scenario", np.array([s.name for s in sc.sets], dtype=object))
    writer = GridWriter(path, [axis], pf.cluster_names, attrs, np.float64, compression,
                        industries=industry_coordinate(pf), groups=output_groups(pf))
    with writer:
        writer.write(0, len(sc.sets), {k: np.asarray(v)[1:] for k, v in out.items()})
        writer.write_base({k: np.asarray(v)[0] for k, v in out.items()})
        writer.f["scenario"].attrs["titles"] = "\n".join(s.title for s in sc.sets)
        return writer.commit()


@dataclass(kw_only=True)
class NamedResult(Result):
    """A named run's result: one row per set, the base case first."""

    rows: list


def run_named(pf, sc, out: Path, be, compression="gzip") -> NamedResult:
    """A `kind: named` run: each shock set evaluated directly (numpy; a handful of rows)."""
    t0 = time.perf_counter()
    cfg, sha = config_json(pf, sc)
    outputs = evaluate_named(pf, sc)
    attrs = provenance(pf, sc.name, cfg, sha, "numpy", "cpu", np.float64, n_scenarios=sc.size, kind="named")
    path = write_named(out, pf, sc, outputs, attrs, compression)
    return NamedResult(path=path, portfolio=pf, scenario=sc, backend="numpy on cpu, float64",
                       rows=rows(pf, sc, outputs), seconds=time.perf_counter() - t0, config_sha256=sha)
