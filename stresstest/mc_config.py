"""Monte Carlo scenario files (`kind: montecarlo`): validation and resolution.

The processes, series and correlation rules are MODEL.md's "Stochastic paths"; the
defaults below are its defaults. Validation follows the grid's rules: unknown keys
are errors, every problem is reported as `file: key.path: reason`, before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from pydantic import BaseModel, ValidationError

from .config import Portfolio
from .kernels.params import OPS, PARAMS
from .kernels.paths import MAX_DRAWS, MAX_PATHS, EventSpec, PathSpec
from .validation import (STRICT, ConfigError, check_value, did_you_mean, lenient, num_text, problem_key,
                         pydantic_problems)

KINDS = ("price", "utilization", "energy")
DISTS = {"normal": ("mean", "sd"), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
         "discrete": ("values", "probs")}
PSD_TOL = 1e-10


class PriceProcess(BaseModel):
    model_config = STRICT
    volatility: float = 0.35


class UtilizationProcess(BaseModel):
    model_config = STRICT
    ar: float = 0.8
    sigma_training: float = 0.10
    sigma_inference: float = 0.04


class EnergyProcess(BaseModel):
    model_config = STRICT
    volatility: float = 0.30
    mean_reversion: float = 0.1


class Pair(BaseModel):
    model_config = STRICT
    a: str
    b: str
    rho: float


class Correlation(BaseModel):
    model_config = STRICT
    same_kind: float = 0.5
    between: dict[str, float] = {}
    pairs: list[Pair] = []


class Event(BaseModel):
    model_config = STRICT
    param: str
    dist: str
    op: str = "set"
    clusters: Optional[list[str]] = None
    per_cluster: bool = False
    mean: Optional[float] = None
    sd: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None
    mode: Optional[float] = None
    values: Optional[list[float]] = None
    probs: Optional[list[float]] = None


class MonteCarloBlock(BaseModel):
    model_config = STRICT
    kind: str
    name: Optional[str] = None
    description: Optional[str] = None
    sources: Optional[dict[str, str]] = None
    paths: Union[int, float]
    seed: Union[int, float] = 0
    price: PriceProcess = PriceProcess()
    utilization: UtilizationProcess = UtilizationProcess()
    energy: EnergyProcess = EnergyProcess()
    correlation: Correlation = Correlation()
    events: list[Event] = []
    hurdle_irr: Optional[float] = None
    covenant_dscr: Optional[float] = None


class MonteCarloFile(BaseModel):
    model_config = STRICT
    scenario: MonteCarloBlock


@dataclass
class MonteCarlo:
    """A resolved Monte Carlo scenario."""

    path: str
    name: str
    paths: int
    seed: int
    spec: PathSpec
    events: tuple[EventSpec, ...]
    series: tuple[str, ...]  # "price/<gpu_market>", "utilization/<cluster>", "energy/<power_market>"
    correlation: np.ndarray
    hurdle_irr: float | None
    covenant_dscr: float | None
    processes: dict
    kind: str = "montecarlo"

    @property
    def size(self) -> int:
        return self.paths

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "paths": self.paths, "seed": self.seed,
            "processes": self.processes, "series": list(self.series),
            "correlation": self.correlation.tolist(),
            "events": [{"param": e.param, "dist": e.dist, "args": list(e.args), "values": list(e.values),
                        "op": e.op, "mask": list(e.mask), "per_cluster": e.per_cluster}
                       for e in self.events],
            "hurdle_irr": self.hurdle_irr, "covenant_dscr": self.covenant_dscr,
        }


def load_montecarlo(path: Path, doc: dict, pf: Portfolio) -> MonteCarlo:
    try:
        sb = MonteCarloFile.model_validate(doc).scenario
        structure: list[str] = []
    except ValidationError as err:
        # the structure's problems, then the checks of the parts that are valid on their own
        # (a key that fails is left at its default for them), so every problem shows at once
        structure = pydantic_problems(path, err, MonteCarloFile)
        sb = lenient(MonteCarloBlock, doc.get("scenario"))
        if sb is None:
            raise ConfigError(structure) from None
    problems: list[str] = []

    def bad(key: str, reason: str) -> None:
        problems.append(f"{path}: scenario.{key}: {reason}")

    if sb.paths != math.floor(sb.paths) or not 1 <= sb.paths <= MAX_PATHS:
        bad("paths", f"must be a whole number from 1 to {MAX_PATHS:.3g}, got {num_text(sb.paths)}")
    if (isinstance(sb.seed, float) and (sb.seed != math.floor(sb.seed) or sb.seed >= 2**53)) \
            or not 0 <= sb.seed < 2**63:
        bad("seed", f"must be a whole number from 0 to 2^63 - 1 (written as an integer above 2^53), "
            f"got {num_text(sb.seed) if isinstance(sb.seed, float) else sb.seed}")
    for key, lo, hi, value in (
        ("price.volatility", 0.0, 5.0, sb.price.volatility),
        ("utilization.ar", 0.0, 0.999, sb.utilization.ar),
        ("utilization.sigma_training", 0.0, 1.0, sb.utilization.sigma_training),
        ("utilization.sigma_inference", 0.0, 1.0, sb.utilization.sigma_inference),
        ("energy.volatility", 0.0, 5.0, sb.energy.volatility),
        ("energy.mean_reversion", 0.0, 1.0, sb.energy.mean_reversion),
        ("correlation.same_kind", -1.0, 1.0, sb.correlation.same_kind),
    ):
        if not lo <= value <= hi:
            bad(key, f"must be in [{num_text(lo)}, {num_text(hi)}], got {num_text(value)}")
    if sb.hurdle_irr is not None and sb.hurdle_irr <= -1:
        bad("hurdle_irr", f"must be > -1, got {num_text(sb.hurdle_irr)}")

    # series: price per gpu_market, utilization per cluster, energy per power_market
    gpu_markets = list(dict.fromkeys(c["gpu_market"] for c in pf.labels))
    power_markets = list(dict.fromkeys(c["power_market"] for c in pf.labels))
    series = ([f"price/{m}" for m in gpu_markets] + [f"utilization/{c}" for c in pf.cluster_names]
              + [f"energy/{m}" for m in power_markets])
    kind_of = [s.split("/", 1)[0] for s in series]
    n = len(series)
    draws = 2 * (n * pf.horizon_months + len(sb.events) * len(pf.clusters))
    if draws > MAX_DRAWS:
        bad("events", f"needs {draws:,} draws per path, more than {MAX_DRAWS:,}; shorten the horizon")

    R = np.where(np.equal.outer(kind_of, kind_of), sb.correlation.same_kind, 0.0)
    explicit: dict[tuple[int, int], str] = {}
    for key, rho in sb.correlation.between.items():
        parts = key.split("-")
        if len(parts) != 2 or parts[0] not in KINDS or parts[1] not in KINDS or parts[0] == parts[1]:
            bad(f"correlation.between.{key}", "must name two different kinds, e.g. price-energy "
                f"(kinds: {', '.join(KINDS)})")
            continue
        if not -1 <= rho <= 1:
            bad(f"correlation.between.{key}", f"must be in [-1, 1], got {num_text(rho)}")
            continue
        for i in range(n):
            for j in range(n):
                if {kind_of[i], kind_of[j]} == set(parts):
                    R[i, j] = rho
    for k, pair in enumerate(sb.correlation.pairs):
        where = f"correlation.pairs[{k}]"
        idx = []
        for end in ("a", "b"):
            name = getattr(pair, end)
            if name not in series:
                bad(f"{where}.{end}", f"unknown series {name!r}{did_you_mean(name, series)} "
                    f"(series: {', '.join(series)})")
            else:
                idx.append(series.index(name))
        if len(idx) == 2:
            i, j = idx
            if i == j:
                bad(where, "a series' correlation with itself is 1")
            elif not -1 <= pair.rho <= 1:
                bad(f"{where}.rho", f"must be in [-1, 1], got {num_text(pair.rho)}")
            else:
                R[i, j] = R[j, i] = pair.rho
                explicit[(min(i, j), max(i, j))] = f"scenario.{where}"
    np.fill_diagonal(R, 1.0)

    events = []
    for k, ev in enumerate(sb.events):
        spec, errs = _resolve_event(path, f"scenario.events[{k}]", ev, pf)
        problems += errs
        if spec is not None:
            if any(e.param == spec.param for e in events):
                bad(f"events[{k}].param", f"{spec.param} is drawn by an earlier event too")
            events.append(spec)

    chol = None
    if not problems and not structure:
        chol, why = _factor(R, series, explicit)
        if why:
            problems.append(f"{path}: scenario.correlation: {why}")
    if structure:
        reported = {problem_key(p, path) for p in structure}
        problems = structure + [p for p in problems if problem_key(p, path) not in reported]
    if problems:
        raise ConfigError(problems)

    u = sb.utilization
    w = np.array([c["inference_share"] for c in pf.clusters])
    spec = PathSpec(
        horizon=pf.horizon_months,
        n_price=len(gpu_markets),
        n_energy=len(power_markets),
        price_of=tuple(gpu_markets.index(c["gpu_market"]) for c in pf.labels),
        energy_of=tuple(power_markets.index(c["power_market"]) for c in pf.labels),
        price_vol=sb.price.volatility,
        util_ar=u.ar,
        util_sigma=tuple(float(x) for x in (1 - w) * u.sigma_training + w * u.sigma_inference),
        energy_vol=sb.energy.volatility,
        energy_kappa=sb.energy.mean_reversion,
        chol=tuple(tuple(float(x) for x in row) for row in chol),
    )
    processes = {"price": sb.price.model_dump(), "utilization": u.model_dump(),
                 "energy": sb.energy.model_dump()}
    return MonteCarlo(str(path), sb.name or path.stem, int(sb.paths), int(sb.seed), spec, tuple(events),
                      tuple(series), R, sb.hurdle_irr, sb.covenant_dscr, processes)


def _factor(R: np.ndarray, series: list[str], explicit: dict) -> tuple[np.ndarray | None, str | None]:
    """A factor L with L L^T = R, or the reason R is not a correlation matrix we can use.

    Not positive semi-definite: the offending entries are the off-diagonal ones among the
    series that carry the most negative eigenvalue's eigenvector (the combination of
    series whose variance the matrix makes negative).
    """
    vals, vecs = np.linalg.eigh(R)
    if vals[0] < -PSD_TOL:
        v = vecs[:, 0]
        involved = [i for i in np.argsort(-np.abs(v)) if abs(v[i]) >= 0.25 * np.max(np.abs(v))]
        involved = sorted(involved)
        entries = []
        for a in range(len(involved)):
            for b in range(a + 1, len(involved)):
                i, j = involved[a], involved[b]
                if R[i, j] != 0:
                    src = explicit.get((i, j))
                    entries.append(f"{series[i]}~{series[j]} = {R[i, j]:g}" + (f" ({src})" if src else ""))
        return None, (f"the correlation matrix is not positive semi-definite (smallest eigenvalue "
                      f"{vals[0]:.3g}); offending entries: {'; '.join(entries) or 'see the pairs'}")
    # PSD (possibly singular): L = Q sqrt(max(lambda, 0)) gives L L^T = R exactly up to round-off;
    # Cholesky where it succeeds (the usual case) keeps L triangular
    try:
        return np.linalg.cholesky(R), None
    except np.linalg.LinAlgError:
        return vecs * np.sqrt(np.clip(vals, 0.0, None)), None


def _resolve_event(path, where, ev: Event, pf: Portfolio):
    problems: list[str] = []

    def bad(key, reason):
        problems.append(f"{path}: {where}{'.' + key if key else ''}: {reason}")

    if ev.param == "inference_share":
        bad("param", "inference_share sets the utilization process's volatility; it cannot be drawn "
            "per path (give it per cluster in the portfolio)")
        return None, problems
    if ev.param not in PARAMS:
        bad("param", f"unknown parameter {ev.param!r}{did_you_mean(ev.param, PARAMS)}" + (
            " (the portfolio's discount_rate and horizon cannot be drawn per path)"
            if ev.param in ("discount_rate", "horizon_months") else ""))
        return None, problems
    if ev.op not in OPS:
        bad("op", f"must be one of scale, shift, set, got {ev.op!r}{did_you_mean(ev.op, OPS)}")
    if ev.dist not in DISTS:
        bad("dist", f"unknown distribution {ev.dist!r}{did_you_mean(ev.dist, DISTS)} "
            f"(known: {', '.join(DISTS)})")
        return None, problems
    need = DISTS[ev.dist]
    for key in ("mean", "sd", "low", "high", "mode", "values", "probs"):
        given = getattr(ev, key) is not None
        if given and key not in need:
            bad(key, f"does not apply to dist {ev.dist} (it takes {', '.join(need)})")
        if not given and key in need:
            bad(key, f"dist {ev.dist} needs {key}")
    if problems:
        return None, problems
    values: tuple[float, ...] = ()
    if ev.dist == "normal":
        if ev.sd < 0:
            bad("sd", f"must be >= 0, got {num_text(ev.sd)}")
        args = (ev.mean, ev.sd)
    elif ev.dist == "uniform":
        if ev.high < ev.low:
            bad("high", f"must be >= low ({num_text(ev.low)}), got {num_text(ev.high)}")
        args = (ev.low, ev.high)
    elif ev.dist == "triangular":
        if not ev.low <= ev.mode <= ev.high:
            bad("mode", f"must lie in [low, high] = [{num_text(ev.low)}, {num_text(ev.high)}], got {num_text(ev.mode)}")
        args = (ev.low, ev.mode, ev.high)
    else:
        if not ev.values:
            bad("values", "must list at least one value")
        elif len(ev.probs) != len(ev.values):
            bad("probs", f"must give one probability per value ({len(ev.values)}), got {len(ev.probs)}")
        elif any(p < 0 for p in ev.probs):
            bad("probs", "probabilities must be >= 0")
        elif abs(sum(ev.probs) - 1.0) > 1e-9:
            bad("probs", f"must sum to 1, got {sum(ev.probs):.12g}")
        values = tuple(ev.values or ())
        cum = np.cumsum(ev.probs or [1.0])
        args = tuple(float(x) for x in cum[:-1]) + (1.0,)
        if ev.op == "set" and not problems:
            for k, v in enumerate(values):
                why = check_value(PARAMS[ev.param], v)
                if why:
                    bad(f"values[{k}]", why)
    mask = tuple(True for _ in pf.cluster_names)
    if ev.clusters is not None:
        if not ev.clusters:
            bad("clusters", "must list at least one cluster name (leave it out for all clusters)")
        for c in ev.clusters:
            if c not in pf.cluster_names:
                bad("clusters", f"unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                    f"(clusters: {', '.join(pf.cluster_names)})")
        mask = tuple(n in ev.clusters for n in pf.cluster_names)
    if problems:
        return None, problems
    return EventSpec(ev.param, ev.dist, tuple(float(a) for a in args), ev.op, mask, ev.per_cluster,
                     values), problems
