"""Which mix: the values of some parameters that maximise an objective within tail-risk limits.

`stresstest optimize` (docs/decisions.md, "Which mix: optimize"). The in-sample paths are
the first N paths a Monte Carlo run of the scenario draws (same seed, path indices
0..N-1), drawn once and held on the device in chunks. A mix is applied as a grid point
applies its axes (kernels.shocks.apply_axis_values, each variable a `set` axis from
breakeven.axis_for), then the scenario's events on top (kernels.paths.apply_events), as a
Monte Carlo run of a portfolio file holding that mix would; each iteration evaluates only
the cash flows of the held paths, and forward mode (jax_adapter.value_and_jacobian) gives
every path's outputs with their derivatives in the few variables. The mean, the CVaR in
the Rockafellar-Uryasev form and the smoothed probabilities are taken from those on the
host, where SciPy's SLSQP moves the variables, scaled to [0, 1] over their bounds. Every
answer is checked with the plain definitions (mc_summary's) and re-evaluated on fresh
paths of another seed. The problem's pieces are in optimize_solve.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, BackendError
from .breakeven import axis_for, itemise
from .config import Portfolio, config_json
from .grid_config import is_item_path, is_platform_path, is_scalar_path
from .kernels.params import NAMED_SHOCKS, PARAMS
from .kernels.shocks import ROUNDED, AxisSpec
from .mc_config import MonteCarlo
from .optimize_io import CONSTRAINTS, FRESH_SEED_STEP, METRICS, OBJECTIVES
from .results import Result
from .validation import ConfigError

# In-sample paths by default (the scenario's own count where it has fewer): the bundled
# example on the bundled preset, one variable and a CVaR limit, runs in about 11 s on a
# 2-core CPU, compile included (20,000 paths: about 40 s; benchmarks/bench_decisions.py);
# the held paths take 6 x 8 bytes per path, cluster and month (two seeds' three factors).
# The fresh paths' figures show what the sample's size costs.
DEFAULT_PATHS = 10000
MIN_PATHS = 100  # a 5 % tail of at least 5 paths


@dataclass(frozen=True)
class Variable:
    """One varied parameter: as given (label), its `set` axis and bounds, and its current
    value (breakeven.axis_for's base: over several clusters their weighted mean)."""

    label: str
    param: str
    cluster: str | None
    lo: float
    hi: float
    current: float
    spec: AxisSpec


@dataclass(frozen=True)
class Constraint:
    name: str
    limit: float

    @property
    def text(self) -> str:
        return f"{self.name}<={self.limit:.12g}"


def parse_vary(text: str) -> tuple[str, str | None, float, float]:
    """PARAM[@CLUSTER]=LO..HI -> (param, cluster or None, lo, hi)."""
    head, eq, span = text.partition("=")
    lo_text, dots, hi_text = span.partition("..")
    param, at, cluster = head.strip().rpartition("@") if "@" in head else (head.strip(), "", "")
    if not eq or not dots or not param.strip() or (at and not cluster.strip()):
        raise ConfigError([f"--vary: expected PARAM[@CLUSTER]=LO..HI (e.g. reserved_share=0.2..0.9), got {text!r}"])
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        raise ConfigError([f"--vary {text}: LO and HI must be numbers, got {lo_text!r} and {hi_text!r}"]) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ConfigError([f"--vary {text}: LO must be below HI, both finite numbers"])
    return param.strip(), cluster.strip() if at else None, lo, hi


def _check_param(param: str, text: str) -> None:
    """What --vary refuses before looking the parameter up: a named shock (a scenario's
    move, not a parameter of the mix), a whole month (the outputs move in steps of it:
    no gradient; a grid searches it), a name that is no parameter."""
    if param in NAMED_SHOCKS:
        raise ConfigError([f"--vary {text}: {param} is a named shock (a move of the market, not a parameter "
                           "of the mix); vary a parameter, e.g. reserved_share or contracts.anchor.share"])
    if param in ROUNDED:
        raise ConfigError([f"--vary {text}: {param} is a whole number of months: the outputs move in steps "
                           "of it and have no gradient; compare its values on a grid (stresstest run) instead"])
    if param not in PARAMS and not is_item_path(param) and not is_scalar_path(param):
        raise ConfigError([f"--vary {text}: unknown parameter {param!r} (a cluster parameter, an item field "
                           "by path such as contracts.anchor.share, or a version 2 field such as "
                           "optimization.cost)"])


def parse_variables(pf: Portfolio, texts: list[str] | tuple[str, ...]) -> list[Variable]:
    """The --vary options as variables, refused before any work where a parameter, cluster
    or range is bad, or two of them set the same value. An item path or version 2 field
    makes the portfolio itemised (breakeven.itemise), as a grid axis on it does: load the
    scenario after this, so that its paths are laid out for the items."""
    if not texts:
        raise ConfigError(["--vary: give at least one PARAM[@CLUSTER]=LO..HI"])
    parsed = [parse_vary(t) for t in texts]
    for text, (param, cluster, _, _) in zip(texts, parsed):
        _check_param(param, text)
        if cluster is not None and cluster not in pf.cluster_names:
            raise ConfigError([f"--vary {text}: unknown cluster {cluster!r} (clusters: {', '.join(pf.cluster_names)})"])
        if cluster is not None and is_platform_path(param):
            raise ConfigError([f"--vary {text}: {param} is a field of the portfolio's platform layer, not of a "
                               "cluster: give it without @CLUSTER"])
        itemise(pf, param)
    out = []
    for text, (param, cluster, lo, hi) in zip(texts, parsed):
        clusters = [pf.cluster_names.index(cluster)] if cluster is not None else list(range(len(pf.clusters)))
        try:
            spec, current, (p_lo, p_hi) = axis_for(param, pf, clusters)
        except ConfigError as err:  # breakeven names its own option
            raise ConfigError([p.replace("--param: ", f"--vary {text}: ", 1) for p in err.problems]) from None
        if lo < p_lo or hi > p_hi:
            raise ConfigError([f"--vary {text}: the range {lo:g}..{hi:g} leaves the parameter's range "
                               f"[{p_lo:g}, {p_hi:g}]"])
        out.append(Variable(text.partition("=")[0].strip(), param, cluster, lo, hi, current, spec))
    _check_overlaps(out, len(pf.clusters))
    return out


def _moved(spec: AxisSpec, n_clusters: int) -> np.ndarray:
    """[C] or [C, K] booleans: the clusters (and item slots) a set axis moves."""
    mask = np.ones(n_clusters, dtype=bool) if spec.cluster_mask is None else np.asarray(spec.cluster_mask)
    if spec.item_mask is not None:
        return mask[:, None] & np.asarray(spec.item_mask)
    return mask


def _check_overlaps(vs: list[Variable], n_clusters: int) -> None:
    """Two variables may not set the same value (the later would overwrite the earlier)."""
    for i, a in enumerate(vs):
        for b in vs[i + 1:]:
            shared = set(a.spec.targets) & set(b.spec.targets)
            if shared and (is_platform_path(a.param) or np.any(_moved(a.spec, n_clusters) & _moved(b.spec, n_clusters))):
                raise ConfigError([f"--vary: {a.label} and {b.label} both set {', '.join(sorted(shared))} in the "
                                   "same cluster; give each value one variable"])


def parse_constraint(text: str) -> Constraint:
    """NAME<=LIMIT: cvar_95 in the currency (a loss: minus the mean NPV of the 5 % tail),
    a probability in [0, 1]."""
    name, op, value = text.partition("<=")
    name = name.strip()
    if not op:
        bad = next((o for o in (">=", "==", "<", ">", "=") if o in text), None)
        why = f"the operator {bad!r} is not taken: a constraint is an upper limit, NAME<=LIMIT" if bad else \
            "expected NAME<=LIMIT"
        raise ConfigError([f"--constraint {text!r}: {why} ({', '.join(CONSTRAINTS)})"])
    if name not in CONSTRAINTS:
        raise ConfigError([f"--constraint {text!r}: unknown constraint {name!r} (one of {', '.join(CONSTRAINTS)})"])
    try:
        limit = float(value)
    except ValueError:
        raise ConfigError([f"--constraint {text!r}: the limit {value.strip()!r} is not a number"]) from None
    if not math.isfinite(limit) or (name.startswith("prob_") and not 0.0 <= limit <= 1.0):
        raise ConfigError([f"--constraint {text!r}: the limit must be "
                           + ("a probability from 0 to 1" if name.startswith("prob_") else "a finite amount")])
    return Constraint(name, limit)


def parse_constraints(texts, mc: MonteCarlo) -> list[Constraint]:
    """The --constraint options, each name once; prob_dscr_below_covenant needs the
    scenario's covenant_dscr."""
    out = [parse_constraint(t) for t in texts]
    names = [c.name for c in out]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError([f"--constraint: {name} given {names.count(name)} times; give it once"])
    if "prob_dscr_below_covenant" in names and mc.covenant_dscr is None:
        raise ConfigError([f"--constraint prob_dscr_below_covenant: the scenario {mc.path} gives no covenant_dscr "
                           "(add `covenant_dscr: 1.25`, say, to its scenario block)"])
    return out


def check_events(vs: list[Variable], mc: MonteCarlo) -> None:
    """Refuse a variable that an event of the scenario sets on every path, in every
    cluster it moves: the mix would have no effect on any path."""
    for v in vs:
        moved = _moved(v.spec, len(mc.spec.price_of))
        for ev in mc.events:
            if ev.op != "set" or ev.target not in v.spec.targets or ev.item_mask is not None:
                continue
            covered = np.asarray(ev.mask)
            if moved.ndim == 1 and np.all(covered[moved]):
                raise ConfigError([f"--vary {v.label}: the scenario's event on {ev.param} sets it on every path in "
                                   "every cluster this variable moves: its value would change nothing"])


def fresh_seed(seed: int) -> int:
    """The seed of the fresh paths: the scenario's plus FRESH_SEED_STEP, wrapped into the
    seeds' range (0 .. 2^63 - 1): a Monte Carlo run of the scenario with that seed and N
    paths draws exactly them."""
    return (seed + FRESH_SEED_STEP) % (2**63)


@dataclass(kw_only=True)
class OptimizeResult(Result):
    """An optimize run: the question, the answer (optimum, feasibility, figures in-sample
    and on fresh paths), the current mix's figures and the frontier (optimize_solve)."""

    variables: list[Variable]
    objective: str
    constraints: list[Constraint]
    paths: int
    seed: int
    fresh_seed: int
    answer: object  # optimize_solve.Answer
    current: dict  # "in_sample", "fresh": the current mix's figures (optimize_io.METRICS)
    frontier: object | None  # optimize_solve.Frontier
    settings: dict  # scales and bandwidths, starts, rounds (optimize_solve.Problem.settings)

    kind = "optimize"


def optimize_files(portfolio: str | Path, scenario: str | Path, output: str | Path, *, varies,
                   objective: str = "mean_npv", constraints=(), frontier: int | None = None,
                   paths: int | None = None, starts: int = 1, backend: str = "auto",
                   overwrite: bool = False) -> OptimizeResult:
    """`stresstest optimize` from its files and options: every input checked before any
    work (the output, the objective, the variables, the scenario's kind, the
    constraints, the backend), then run_optimize."""
    from .backends import make_backend
    from .config import load_portfolio
    from .h5io import check_output
    from .loaders import load_scenario

    check_output(Path(output), overwrite)
    if objective not in OBJECTIVES:
        raise ConfigError([f"--objective: unknown objective {objective!r} (one of {', '.join(OBJECTIVES)})"])
    if paths is not None and paths < MIN_PATHS:
        raise ConfigError([f"--paths: at least {MIN_PATHS} (a 5 % tail of 5 paths), got {paths}"])
    pf = load_portfolio(portfolio)
    vs = parse_variables(pf, list(varies))
    mc = load_scenario(scenario, pf)  # after the variables: an item path lays the paths out for items
    if mc.kind != "montecarlo":
        raise ConfigError([f"--scenario {scenario}: a {mc.kind} scenario; optimize chooses a mix on the paths of a "
                           "Monte Carlo scenario (kind: montecarlo), e.g. the bundled preset montecarlo"])
    check_events(vs, mc)
    cons = parse_constraints(list(constraints), mc)
    be = make_backend(backend)
    return run_optimize(pf, mc, vs, cons, Path(output), be, objective=objective, frontier=frontier, paths=paths,
                        starts=starts)


def run_optimize(pf: Portfolio, mc: MonteCarlo, vs: list[Variable], cons: list[Constraint], out: Path,
                 be: Backend, *, objective: str = "mean_npv", frontier: int | None = None,
                 paths: int | None = None, starts: int = 1) -> OptimizeResult:
    """Solve, re-evaluate on fresh paths, sweep the frontier, write the file (atomic).
    The inputs are checked already (variables, constraints); the backend must be JAX."""
    from .h5io import provenance
    from .optimize_io import write_optimize
    from .optimize_solve import Problem, frontier_sweep, solve_best

    if not be.is_jax:
        raise BackendError(f"optimize needs the JAX backend (automatic differentiation); got {be.name}. "
                           "Use --backend jax or auto, with jax installed")
    t0 = time.perf_counter()
    n = paths or min(mc.paths, DEFAULT_PATHS)
    problem = Problem(pf, mc, vs, objective, be, n, fresh_seed(mc.seed))
    answer = solve_best(problem, {c.name: c.limit for c in cons}, starts)
    answer.fresh = problem.metrics(answer.x, fresh=True)
    current = {"in_sample": problem.metrics(None), "fresh": problem.metrics(None, fresh=True)}
    sweep = None
    if frontier:
        others = {c.name: c.limit for c in cons if c.name != "cvar_95"}
        sweep = frontier_sweep(problem, others, frontier, starts)
    cfg, sha = config_json(pf, mc)
    attrs = provenance(pf, mc.name, cfg, sha, be.name, be.device, be.dtype, kind="optimize",
                       objective=objective, paths=n, seed=mc.seed, fresh_seed=problem.fresh_seed)
    result = OptimizeResult(path=Path(out), portfolio=pf, scenario=mc, backend=be.describe(), seconds=0.0,
                            config_sha256=sha, variables=vs, objective=objective, constraints=cons, paths=n,
                            seed=mc.seed, fresh_seed=problem.fresh_seed, answer=answer, current=current,
                            frontier=sweep, settings=problem.settings(starts))
    result.path = write_optimize(out, attrs, summary(result), pf.cluster_names, current_by_cluster(pf, vs))
    result.seconds = time.perf_counter() - t0
    return result


def summary(result: OptimizeResult) -> dict:
    """The question and the answer as plain data: what --json prints and the file holds
    (optimize_io.read_optimize reads the same back)."""
    a = result.answer
    out = {
        "objective": result.objective, "constraints": "; ".join(c.text for c in result.constraints) or "none",
        "limits": {c.name: c.limit for c in result.constraints},
        "met": {c.name: a.met.get(c.name, False) for c in result.constraints},
        "feasible": a.feasible, "message": a.message, "paths": result.paths, "seed": result.seed,
        "fresh_seed": result.fresh_seed,
        "params": [{"label": v.label, "param": v.param, "cluster": v.cluster or "all", "lower": v.lo, "upper": v.hi,
                    "current": v.current, "optimum": value} for v, value in zip(result.variables, a.mix(result.variables))],
        "optimum_metrics": {"in_sample": a.metrics, "fresh": a.fresh},
        "current_metrics": dict(result.current),
        "settings": dict(result.settings),
    }
    fr = result.frontier
    if fr is not None:
        nan = {m: math.nan for m in METRICS}
        out["frontier"] = {"limit": [float(v) for v in fr.limits], "feasible": [p.feasible for p in fr.answers],
                           "mix": [p.mix(result.variables) for p in fr.answers],
                           "metrics": [{"in_sample": p.metrics if p.feasible else nan,
                                        "fresh": p.fresh if p.feasible else nan} for p in fr.answers],
                           "note": fr.note}
    return out


def current_by_cluster(pf: Portfolio, vs: list[Variable]) -> np.ndarray:
    """[variable, cluster]: each cluster's current value of what the variable sets (NaN
    where it does not set it; a platform field's, everywhere)."""
    out = np.full((len(vs), len(pf.clusters)), np.nan)
    for j, v in enumerate(vs):
        if is_platform_path(v.param):
            continue
        moved = _moved(v.spec, len(pf.clusters)).reshape(len(pf.clusters), -1).any(axis=1)
        for c in np.nonzero(moved)[0]:
            out[j, c] = axis_for(v.param, pf, [int(c)])[1]
    return out
