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
from .grid_config import (PLATFORM_CLUSTERS, is_item_path, is_platform_path, is_scalar_path, item_path_target,
                          resolve_item_path, resolve_scalar_path, scalar_group, scalar_target, scalar_value_problem)
from .items import slots
from .kernels.params import ITEM_PARAMS, NOT_IN_FLOWS, OPS, PARAMS, V2_SCALARS
from .kernels.paths import MAX_DRAWS, MAX_PATHS, EventSpec, PathSpec, event_target
from .validation import (STRICT, ConfigError, check_value, did_you_mean, lenient, num_text, pydantic_problems,
                         structure_first)

KINDS = ("price", "utilization", "energy")
DISTS = {"normal": ("mean", "sd"), "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
         "discrete": ("values", "probs")}
PSD_TOL = 1e-10


class PriceProcess(BaseModel):
    model_config = STRICT
    volatility: float = 0.35
    by_market: dict[str, float] = {}  # gpu_market -> its own volatility


class UtilizationProcess(BaseModel):
    model_config = STRICT
    ar: float = 0.8
    sigma_training: float = 0.10
    sigma_inference: float = 0.04


class EnergyProcess(BaseModel):
    model_config = STRICT
    volatility: float = 0.30
    mean_reversion: float = 0.1
    by_market: dict[str, float] = {}  # power_market -> its own volatility


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
    series: tuple[str, ...]  # PathSeries.names
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
                        "op": e.op, "mask": list(e.mask), "per_cluster": e.per_cluster,
                        **({} if e.item_mask is None else {"item_mask": [list(r) for r in e.item_mask]})}
                       for e in self.events],
            "hurdle_irr": self.hurdle_irr, "covenant_dscr": self.covenant_dscr,
        }


@dataclass(frozen=True)
class PathSeries:
    """The stochastic series of a portfolio's paths, in the order of the correlation
    matrix and of the kernels' draws (kernels/paths.py): price per GPU market,
    utilization, energy per power market (each market once, in the order the clusters
    first name it). Utilization: clusters in order, one series for a cluster without
    segments of its own (`utilization/<cluster>`, version 1's) and one per segment of a
    cluster with segments (`utilization/<cluster>/<segment>`, in the segments' order).
    Which series exist, and which of them each cluster reads, is decided here alone."""

    gpu_markets: tuple[str, ...]
    clusters: tuple[str, ...]
    power_markets: tuple[str, ...]
    price_of: tuple[int, ...]  # per cluster: its GPU market's index in gpu_markets
    energy_of: tuple[int, ...]  # per cluster: its power market's index in power_markets
    segments: tuple[tuple[str, ...] | None, ...]  # per cluster: its segments' names; None: implied

    @classmethod
    def of(cls, pf: Portfolio) -> "PathSeries":
        gpu = tuple(dict.fromkeys(c["gpu_market"] for c in pf.labels))
        power = tuple(dict.fromkeys(c["power_market"] for c in pf.labels))
        segments = tuple(None if it.segments is None else tuple(s["name"] for s in it.segments)
                         for it in pf.items)
        return cls(gpu, tuple(pf.cluster_names), power,
                   tuple(gpu.index(c["gpu_market"]) for c in pf.labels),
                   tuple(power.index(c["power_market"]) for c in pf.labels), segments)

    @property
    def utilization(self) -> tuple[tuple[int, str | None], ...]:
        """The utilization series as (cluster index, segment name; None: the cluster's one)."""
        return tuple((c, seg) for c, own in enumerate(self.segments) for seg in (own or (None,)))

    @property
    def names(self) -> tuple[str, ...]:
        """"price/<gpu_market>", "utilization/<cluster>[/<segment>]", "energy/<power_market>"."""
        util = tuple(f"utilization/{self.clusters[c]}" + ("" if seg is None else f"/{seg}")
                     for c, seg in self.utilization)
        return (tuple(f"price/{m}" for m in self.gpu_markets) + util
                + tuple(f"energy/{m}" for m in self.power_markets))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Each series' kind (one of KINDS)."""
        return tuple(s.split("/", 1)[0] for s in self.names)

    def util_of(self, n_slots: int) -> tuple[tuple[int, ...], ...]:
        """Per cluster and segment slot (n_slots a cluster), the index of the slot's
        utilization series among them; a padding slot (no segment) takes the cluster's
        first."""
        first: dict[int, int] = {}
        for i, (c, _) in enumerate(self.utilization):
            first.setdefault(c, i)
        return tuple(tuple(first[c] + (j if j < len(own or (None,)) else 0) for j in range(n_slots))
                     for c, own in enumerate(self.segments))


class _Problems:
    """The problems found so far, as `file: key.path: reason` lines, every key under one
    prefix (`scenario`, `scenario.events[2]`)."""

    def __init__(self, path: Path, prefix: str = "scenario"):
        self.path, self.prefix = path, prefix
        self.lines: list[str] = []

    def bad(self, key: str, reason: str) -> None:
        self.lines.append(f"{self.path}: {self.prefix}.{key}: {reason}")


# the processes' settings and the correlation within a kind, each with its range
RANGES = (
    ("price.volatility", 0.0, 5.0),
    ("utilization.ar", 0.0, 0.999),
    ("utilization.sigma_training", 0.0, 1.0),
    ("utilization.sigma_inference", 0.0, 1.0),
    ("energy.volatility", 0.0, 5.0),
    ("energy.mean_reversion", 0.0, 1.0),
    ("correlation.same_kind", -1.0, 1.0),
)


def load_montecarlo(path: Path, doc: dict, pf: Portfolio) -> MonteCarlo:
    """The Monte Carlo scenario of the file `path` (its parsed `doc`) for the portfolio;
    ConfigError with every problem of the file."""
    sb, structure = _read_block(path, doc)
    found = _Problems(path)
    _check_settings(found, sb)
    series = PathSeries.of(pf)
    _check_series_names(found, series)
    _check_by_market(found, sb, series)
    _check_draws(found, series, sb.events, pf)
    R, explicit = _correlation(found, sb.correlation, series)
    events = _events(found, sb.events, pf)
    chol = None if found.lines or structure else _factor_or_problem(found, R, series, explicit)
    problems = structure_first(path, structure, found.lines)
    if problems:
        raise ConfigError(problems)
    if any(e.item_mask is not None for e in events):
        pf.itemised = True  # its base arrays carry the items the events move
    for group in {scalar_group(e.param) for e in events if e.param in V2_SCALARS}:
        pf.use(group)  # and the groups of version 2 scalars they draw (itemised too)
    # by_market only where given: files of scenarios without it keep their configuration text
    processes = {"price": sb.price.model_dump(exclude={"by_market"} if not sb.price.by_market else None),
                 "utilization": sb.utilization.model_dump(),
                 "energy": sb.energy.model_dump(exclude={"by_market"} if not sb.energy.by_market else None)}
    return MonteCarlo(str(path), sb.name or path.stem, int(sb.paths), int(sb.seed), _path_spec(sb, pf, series, chol),
                      tuple(events), series.names, R, sb.hurdle_irr, sb.covenant_dscr, processes)


def _check_series_names(found: _Problems, series: PathSeries) -> None:
    """Each series a name of its own: a cluster named `a/train` without segments and a
    cluster `a` with a segment `train` would both draw `utilization/a/train`."""
    names = series.names
    for name in sorted({n for n in names if names.count(n) > 1}):
        found.bad("utilization", f"two utilization series would both be named {name!r} (a cluster whose name "
                  "holds '/' beside a cluster's segment): rename the cluster or the segment")


def _read_block(path: Path, doc: dict) -> tuple[MonteCarloBlock, list[str]]:
    """The scenario block and the problems of its structure. A block with structural
    problems is read less the keys that fail (left at their defaults), so that the checks
    of the parts valid on their own still run and every problem shows at once."""
    try:
        return MonteCarloFile.model_validate(doc).scenario, []
    except ValidationError as err:
        structure = pydantic_problems(path, err, MonteCarloFile)
        sb = lenient(MonteCarloBlock, doc.get("scenario"))
        if sb is None:
            raise ConfigError(structure) from None
        return sb, structure


def _check_settings(found: _Problems, sb: MonteCarloBlock) -> None:
    """The number of paths, the seed, the processes' settings (RANGES) and the hurdle."""
    if sb.paths != math.floor(sb.paths) or not 1 <= sb.paths <= MAX_PATHS:
        found.bad("paths", f"must be a whole number from 1 to {MAX_PATHS:.3g}, got {num_text(sb.paths)}")
    if (isinstance(sb.seed, float) and (sb.seed != math.floor(sb.seed) or sb.seed >= 2**53)) \
            or not 0 <= sb.seed < 2**63:
        found.bad("seed", f"must be a whole number from 0 to 2^63 - 1 (written as an integer above 2^53), "
                  f"got {num_text(sb.seed) if isinstance(sb.seed, float) else sb.seed}")
    for key, lo, hi in RANGES:
        block, name = key.split(".")
        value = getattr(getattr(sb, block), name)
        if not lo <= value <= hi:
            found.bad(key, f"must be in [{num_text(lo)}, {num_text(hi)}], got {num_text(value)}")
    if sb.hurdle_irr is not None and sb.hurdle_irr <= -1:
        found.bad("hurdle_irr", f"must be > -1, got {num_text(sb.hurdle_irr)}")


def _check_by_market(found: _Problems, sb: MonteCarloBlock, series: PathSeries) -> None:
    """A volatility by market names a market of the portfolio, in the range of the
    process's one volatility."""
    for kind, markets, key in (("price", series.gpu_markets, "gpu_market"),
                               ("energy", series.power_markets, "power_market")):
        for name, vol in getattr(sb, kind).by_market.items():
            if name not in markets:
                found.bad(f"{kind}.by_market.{name}", f"no cluster has {key} {name!r} (the portfolio's: "
                          f"{', '.join(markets)})")
            elif not 0.0 <= vol <= 5.0:
                found.bad(f"{kind}.by_market.{name}", f"must be in [0, 5], got {num_text(vol)}")


def _check_draws(found: _Problems, series: PathSeries, events: list[Event], pf: Portfolio) -> None:
    """A path's uniforms (two per series and month, two per event and cluster: the draw
    numbers of kernels/paths.py) must fit the counter's 2^24 draws per path."""
    draws = 2 * (len(series.names) * pf.horizon_months + len(events) * len(pf.clusters))
    if draws > MAX_DRAWS:
        found.bad("events", f"needs {draws:,} draws per path, more than {MAX_DRAWS:,}; shorten the horizon")


def _correlation(found: _Problems, corr: Correlation, series: PathSeries) -> tuple[np.ndarray, dict]:
    """The series' correlation matrix: same_kind within a kind, 0 across, then the
    `between` rules by pair of kinds, then the pairs of series; and, for the problems of
    a matrix that is not a correlation, the key that set each entry given by pairs."""
    kinds = series.kinds
    R = np.where(np.equal.outer(kinds, kinds), corr.same_kind, 0.0)
    _between_kinds(found, R, corr.between, kinds)
    explicit = _between_series(found, R, corr.pairs, series.names)
    np.fill_diagonal(R, 1.0)
    return R, explicit


def _between_kinds(found: _Problems, R: np.ndarray, between: dict[str, float], kinds: tuple[str, ...]) -> None:
    """correlation.between: `kind-kind: rho` sets every entry between series of the two kinds."""
    n = len(kinds)
    for key, rho in between.items():
        parts = key.split("-")
        if len(parts) != 2 or parts[0] not in KINDS or parts[1] not in KINDS or parts[0] == parts[1]:
            found.bad(f"correlation.between.{key}", "must name two different kinds, e.g. price-energy "
                      f"(kinds: {', '.join(KINDS)})")
            continue
        if not -1 <= rho <= 1:
            found.bad(f"correlation.between.{key}", f"must be in [-1, 1], got {num_text(rho)}")
            continue
        for i in range(n):
            for j in range(n):
                if {kinds[i], kinds[j]} == set(parts):
                    R[i, j] = rho


def _between_series(found: _Problems, R: np.ndarray, pairs: list[Pair], names: tuple[str, ...]) -> dict:
    """correlation.pairs: each sets the entry of two named series. Returns (i, j), i < j ->
    the key of the pair that set it."""
    explicit: dict[tuple[int, int], str] = {}
    for k, pair in enumerate(pairs):
        where = f"correlation.pairs[{k}]"
        idx = []
        for end in ("a", "b"):
            name = getattr(pair, end)
            if name not in names:
                found.bad(f"{where}.{end}", f"unknown series {name!r}{did_you_mean(name, names)} "
                          f"(series: {', '.join(names)})")
            else:
                idx.append(names.index(name))
        if len(idx) == 2:
            i, j = idx
            if i == j:
                found.bad(where, "a series' correlation with itself is 1")
            elif not -1 <= pair.rho <= 1:
                found.bad(f"{where}.rho", f"must be in [-1, 1], got {num_text(pair.rho)}")
            else:
                R[i, j] = R[j, i] = pair.rho
                explicit[(min(i, j), max(i, j))] = f"scenario.{where}"
    return explicit


def _events(found: _Problems, events: list[Event], pf: Portfolio) -> list[EventSpec]:
    """The events resolved, those with problems left out (their problems in `found`); a
    parameter drawn by two events is a problem of the second."""
    out: list[EventSpec] = []
    for k, ev in enumerate(events):
        own = _Problems(found.path, f"scenario.events[{k}]")
        spec = _resolve_event(own, ev, pf)
        found.lines += own.lines
        if spec is not None:
            if any(e.param == spec.param for e in out):
                found.bad(f"events[{k}].param", f"{spec.param} is drawn by an earlier event too")
            else:
                for e in out:
                    if _same_items(e, spec):
                        found.bad(f"events[{k}].param", f"{spec.param} draws items that an earlier "
                                  f"event ({e.param}) draws too")
                        break
            out.append(spec)
    return out


def _same_items(a: EventSpec, b: EventSpec) -> bool:
    """Whether two events on item paths move a field of the same item."""
    if a.item_mask is None or b.item_mask is None or a.target != b.target:
        return False
    return any(x and y for ra, rb in zip(a.item_mask, b.item_mask) for x, y in zip(ra, rb))


def _factor_or_problem(found: _Problems, R: np.ndarray, series: PathSeries, explicit: dict) -> np.ndarray | None:
    """_factor's factor of R, or None with its reason in `found`."""
    chol, why = _factor(R, series.names, explicit)
    if why:
        found.bad("correlation", why)
    return chol


def _path_spec(sb: MonteCarloBlock, pf: Portfolio, series: PathSeries, chol: np.ndarray) -> PathSpec:
    """The kernels' description of the processes. A utilization series' volatility is, for
    a cluster without segments, its blend of training's and inference's by its inference
    share; for a segment, its own utilization_sigma. Where the portfolio carries items,
    the cash flows take the utilization per segment slot (util_of)."""
    u = sb.utilization
    sigma = []
    for c, seg in series.utilization:
        if seg is None:
            w = pf.clusters[c]["inference_share"]
            sigma.append(float((1 - w) * u.sigma_training + w * u.sigma_inference))
        else:
            sigma.append(float({s["name"]: s for s in pf.items[c].segments}[seg]["utilization_sigma"]))
    return PathSpec(
        horizon=pf.horizon_months,
        n_price=len(series.gpu_markets),
        n_energy=len(series.power_markets),
        price_of=series.price_of,
        energy_of=series.energy_of,
        price_vol=_volatilities(sb.price, series.gpu_markets),
        util_ar=u.ar,
        util_sigma=tuple(sigma),
        energy_vol=_volatilities(sb.energy, series.power_markets),
        energy_kappa=sb.energy.mean_reversion,
        chol=tuple(tuple(float(x) for x in row) for row in chol),
        util_of=series.util_of(slots(pf.items)["segments"]) if pf.itemised else None,
    )


def _volatilities(process, markets: tuple[str, ...]) -> float | tuple[float, ...]:
    """A process's volatility: its one value, or one per market where by_market gives some."""
    if not process.by_market:
        return float(process.volatility)
    return tuple(float(process.by_market.get(m, process.volatility)) for m in markets)


def _factor(R: np.ndarray, series: tuple[str, ...], explicit: dict) -> tuple[np.ndarray | None, str | None]:
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


def _resolve_event(found: _Problems, ev: Event, pf: Portfolio) -> EventSpec | None:
    """The event, or None with its problems in `found` (the event's own). The parameter,
    operation and distribution come first: the arguments are checked only for a known
    distribution given the arguments it takes."""
    if not _drawable(found, ev.param):
        return None
    if ev.op not in OPS:
        found.bad("op", f"must be one of scale, shift, set, got {ev.op!r}{did_you_mean(ev.op, OPS)}")
    if ev.dist not in DISTS:
        found.bad("dist", f"unknown distribution {ev.dist!r}{did_you_mean(ev.dist, DISTS)} "
                  f"(known: {', '.join(DISTS)})")
        return None
    _check_arguments_given(found, ev)
    if is_platform_path(ev.param):
        _check_platform_event(found, ev)
    if found.lines:
        return None
    args, values = _distribution(found, ev, pf.horizon_months)
    mask = _cluster_mask(found, ev.clusters, pf)
    if found.lines:
        return None
    items = None
    if is_item_path(ev.param):
        _, items, why = resolve_item_path(ev.param, pf, None if all(mask) else mask)
        if why:
            found.bad("param", why)
            return None
    elif is_scalar_path(ev.param):
        _, moved, why = resolve_scalar_path(ev.param, pf, None if all(mask) else mask)
        if why:
            found.bad("param", why)
            return None
        mask = mask if moved is None else moved  # an optimization field: the programmes
    return EventSpec(ev.param, ev.dist, tuple(float(a) for a in args), ev.op, mask, ev.per_cluster, values,
                     items)


def _check_platform_event(found: _Problems, ev: Event) -> None:
    """An event on the platform layer draws its one value per path: no clusters:, no
    per_cluster."""
    if ev.clusters is not None:
        found.bad("clusters", PLATFORM_CLUSTERS.format(path=ev.param))
    if ev.per_cluster:
        found.bad("per_cluster", f"{ev.param} is a field of the portfolio's platform layer: one draw per path, "
                  "per_cluster does not apply")


def _drawable(found: _Problems, param: str) -> bool:
    """Whether a path may draw `param`: a cluster parameter other than inference_share,
    the path of an item field other than a segment's utilization_sigma, or a version 2
    scalar (order_month, capex_decline, optimization.<field>, platform.<field>)."""
    if is_item_path(param):
        return _drawable_path(found, param)
    if is_scalar_path(param):
        why = scalar_target(param)[1]
        if why:
            found.bad("param", why)
        return why is None
    if param == "inference_share":
        found.bad("param", "inference_share sets the utilization process's volatility; it cannot be drawn "
                  "per path (give it per cluster in the portfolio)")
        return False
    if param not in PARAMS:
        found.bad("param", f"unknown parameter {param!r}{did_you_mean(param, list(PARAMS) + list(V2_SCALARS))}" + (
            " (the portfolio's discount_rate and horizon cannot be drawn per path)"
            if param in ("discount_rate", "horizon_months") else ""))
        return False
    return True


def _drawable_path(found: _Problems, param: str) -> bool:
    """An item path by its form, as a grid axis's (grid_config.item_path_target; which
    clusters have the item is resolve_item_path's to say). A segment's
    utilization_sigma sets its series' volatility: not drawn per path."""
    if event_target(param) in NOT_IN_FLOWS:
        found.bad("param", f"{param}: utilization_sigma sets the segment's utilization series' volatility; "
                  "it cannot be drawn per path (give it per segment in the portfolio)")
        return False
    _, why = item_path_target(param)
    if why:
        found.bad("param", why)
    return why is None


def _value_problem(param: str, value: float, horizon: int) -> str | None:
    """Why an event may not set `param` to `value`: out of the cluster parameter's, the
    item field's or the version 2 scalar's range (a month of those: within the horizon)."""
    if param in V2_SCALARS:
        return scalar_value_problem(param, value, horizon)
    return check_value(PARAMS.get(param) or ITEM_PARAMS[event_target(param)], value)


def _check_arguments_given(found: _Problems, ev: Event) -> None:
    """Exactly the arguments the distribution takes (DISTS) are given."""
    need = DISTS[ev.dist]
    for key in ("mean", "sd", "low", "high", "mode", "values", "probs"):
        given = getattr(ev, key) is not None
        if given and key not in need:
            found.bad(key, f"does not apply to dist {ev.dist} (it takes {', '.join(need)})")
        if not given and key in need:
            found.bad(key, f"dist {ev.dist} needs {key}")


def _distribution(found: _Problems, ev: Event, horizon: int) -> tuple[tuple, tuple[float, ...]]:
    """The kernels' arguments of the event's distribution and, for a discrete one, its
    values; the arguments' problems in `found` (horizon: the portfolio's, for a discrete
    set of months)."""
    if ev.dist == "normal":
        if ev.sd < 0:
            found.bad("sd", f"must be >= 0, got {num_text(ev.sd)}")
        return (ev.mean, ev.sd), ()
    if ev.dist == "uniform":
        if ev.high < ev.low:
            found.bad("high", f"must be >= low ({num_text(ev.low)}), got {num_text(ev.high)}")
        return (ev.low, ev.high), ()
    if ev.dist == "triangular":
        if not ev.low <= ev.mode <= ev.high:
            found.bad("mode", f"must lie in [low, high] = [{num_text(ev.low)}, {num_text(ev.high)}], "
                      f"got {num_text(ev.mode)}")
        return (ev.low, ev.mode, ev.high), ()
    return _discrete(found, ev, horizon)


def _discrete(found: _Problems, ev: Event, horizon: int) -> tuple[tuple, tuple[float, ...]]:
    """A discrete distribution: its cumulative probabilities (the last exactly 1) and its
    values, which an event that sets the parameter must give within its range."""
    if not ev.values:
        found.bad("values", "must list at least one value")
    elif len(ev.probs) != len(ev.values):
        found.bad("probs", f"must give one probability per value ({len(ev.values)}), got {len(ev.probs)}")
    elif any(p < 0 for p in ev.probs):
        found.bad("probs", "probabilities must be >= 0")
    elif abs(sum(ev.probs) - 1.0) > 1e-9:
        found.bad("probs", f"must sum to 1, got {sum(ev.probs):.12g}")
    values = tuple(ev.values or ())
    cum = np.cumsum(ev.probs or [1.0])
    args = tuple(float(x) for x in cum[:-1]) + (1.0,)
    if ev.op == "set" and not found.lines:
        for k, v in enumerate(values):
            why = _value_problem(ev.param, v, horizon)
            if why:
                found.bad(f"values[{k}]", why)
    return args, values


def _cluster_mask(found: _Problems, clusters: list[str] | None, pf: Portfolio) -> tuple[bool, ...]:
    """For each cluster, whether the event draws for it: every cluster, or those named."""
    if clusters is None:
        return tuple(True for _ in pf.cluster_names)
    if not clusters:
        found.bad("clusters", "must list at least one cluster name (leave it out for all clusters)")
    for c in clusters:
        if c not in pf.cluster_names:
            found.bad("clusters", f"unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                      f"(clusters: {', '.join(pf.cluster_names)})")
    return tuple(n in clusters for n in pf.cluster_names)
