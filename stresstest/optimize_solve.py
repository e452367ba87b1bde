"""optimize's problem: the held paths, the compiled evaluations of a mix, the smooth
objective and constraints SLSQP sees, the exact checks at its answers, the frontier.

Variables: x in [0, 1]^k, the mix v = lo + x (hi - lo); with a CVaR constrained or
minimised, one more, tau, the Rockafellar-Uryasev threshold in units of the money scale M.
Per path the device returns the outputs and their derivatives in v (forward mode), the
host takes every term from them:
  mean       E[y] over the paths where y is finite (an IRR may not be)
  CVaR_95    RU(v, t) = t + E[(L - t)+] / (1 - 0.95), L = -NPV; min over t is the CVaR
             (exactly the mean of the 5 % worst paths where 5 % of N is whole)
  P(y < c)   E[sigmoid((c - y) / h)] over the paths where y is finite; h = BANDWIDTH x
             the spread of y over the in-sample paths at the start
Each answer is checked with the plain definitions (exact_metrics, as mc_summary counts);
where it misses a limit, the limit SLSQP sees is tightened by the miss, where it holds a
probability's limit with room it is loosened by the gap (the smoothing's bias), and the
problem solved again from there, at most MAX_ROUNDS times (solve_checked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .breakeven import format_output
from .config import Portfolio
from .kernels.cashflows import cash_flows
from .kernels.metrics import equity_npv, finish, irr_from_root, linear_parts
from .kernels.params import IMPLIED_KEYS, ITEM_PARAMS
from .kernels.paths import apply_events, event_draws, path_factors, seed_key
from .kernels.shocks import AxisSpec, apply_axis_values
from .mc_config import MonteCarlo
from .optimize_io import CONSTRAINTS, OBJECTIVES

ALPHA = 0.95  # the CVaR's level (cvar_95)
BANDWIDTH = 0.05  # of the smoothed indicator, as a share of the output's standard deviation
MAX_ROUNDS = 4  # re-solves with limits moved by the exact checks (solve_checked)
MAX_ITER = 100  # SLSQP iterations per solve
FTOL = 1e-9  # SLSQP's precision goal on the scaled objective (standard deviations)
SLACK_TOL = 1e-6  # how far past a scaled smooth limit SLSQP's answer may be and count as meeting it
CHUNK = 2048  # held paths per compiled call (CPU; a GPU takes them all at once)
OUTPUTS = ("npv", "min_dscr", "equity_npv", "irr")  # per path, at every mix


def own_items(xp, params: dict, axes: tuple[AxisSpec, ...], n_clusters: int) -> dict:
    """Where an axis sets a cluster's implied contracts or segments by path, they become
    the cluster's own (its implied flag 0), as in a portfolio file that gives them
    (breakeven.shifted_portfolio writes them so): apply_events would otherwise derive
    them again from the version 1 keys and undo the mix."""
    out = dict(params)
    for spec in axes:
        if not all(t in ITEM_PARAMS for t in spec.targets):
            continue
        moved = np.ones(n_clusters, dtype=bool) if spec.cluster_mask is None else np.asarray(spec.cluster_mask)
        if spec.item_mask is not None:
            moved = moved & np.asarray(spec.item_mask).any(axis=1)
        for t in spec.targets:
            key = IMPLIED_KEYS[0] if t.startswith("contracts.") else IMPLIED_KEYS[1]
            out[key] = xp.where(xp.asarray(moved)[None, :], 0.0, out[key])
    return out


def mix_outputs_fn(pf: Portfolio, mc: MonteCarlo, axes: tuple[AxisSpec, ...], xp):
    """The pure function (v, current, base, rate, factors, draws, irr0) -> per path NPV,
    min DSCR, equity NPV and IRR [S] at the mix v [k] (current: the portfolio as it is,
    v ignored), on paths given by their factors and event draws. The mix is applied as a
    grid point's axes, then the events, as mc_paths.path_outputs_fn applies them to a
    portfolio's base case. irr0: None, the IRR by the kernels' solver; else the solved
    IRR [S] at this mix, and the IRR is the Newton step from it (kernels.metrics.
    irr_from_root), whose forward-mode derivative is the implicit function's."""
    horizon, C = pf.horizon_months, len(pf.clusters)

    def fn(v, current, base, rate, factors, draws, irr0=None):
        mixed, _ = apply_axis_values(base, rate, axes, tuple(v[j:j + 1] for j in range(len(axes))))
        mixed = own_items(xp, mixed, axes, C)
        p = {k: xp.where(current, base[k], x[0]) for k, x in mixed.items()}
        p = apply_events(p, mc.events, draws)
        S = factors["price"].shape[0]
        r = xp.broadcast_to(xp.reshape(rate, (1,)), (S,))
        fl = cash_flows(p, horizon, factors)
        lin = linear_parts(fl, r, ())
        out = finish(lin, C, ())
        irr = out["irr"] if irr0 is None else irr_from_root(lin["series"][:, C], irr0)
        return {"npv": out["npv"], "min_dscr": out["min_dscr"], "equity_npv": equity_npv(fl, r), "irr": irr}

    return fn


# The compiled evaluations, by what their programs depend on (compiled's key): a notebook
# asking the same question again (other limits or bounds, as many paths) compiles nothing
_COMPILED: dict[tuple, tuple] = {}
_KEEP = 4


def compiled(pf: Portfolio, mc: MonteCarlo, axes: tuple[AxisSpec, ...], be, with_irr: bool) -> tuple:
    """(values, jacobian): mix_outputs_fn compiled, and its outputs' Jacobians in v (the
    IRR's only with_irr, as irr_from_root from the solved IRR given), kept for the
    horizon, clusters, events, axes and backend they were built for (the base case and
    the paths are their arguments)."""
    from .jax_adapter import value_and_jacobian

    key = (pf.horizon_months, len(pf.clusters), mc.events, axes, with_irr, be.name, be.device, str(be.dtype))
    if key not in _COMPILED:
        fn = mix_outputs_fn(pf, mc, axes, be.xp)

        def subset(v, base, rate, factors, draws, irr0):
            out = fn(v, False, base, rate, factors, draws, irr0 if with_irr else None)
            return {name: out[name] for name in OUTPUTS if with_irr or name != "irr"}

        while len(_COMPILED) >= _KEEP:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = (be.compile(fn), value_and_jacobian(subset))
    return _COMPILED[key]


def exact_metrics(out: dict, covenant: float | None) -> dict:
    """The figures of METRICS from per-path outputs, as mc_summary defines them: the mean
    NPV; CVaR 95 minus the mean of the k = ceil(0.05 N) lowest NPVs (the summary's sketch
    bins them; here they are sorted); P(NPV < 0) over every path; P(min DSCR < covenant)
    over the paths whose DSCR is finite (NaN without a covenant or where no path has
    debt); the mean IRR over the paths where it is finite, and how many are not."""
    npv = np.asarray(out["npv"], dtype=np.float64)
    n = npv.size
    k = max(1, math.ceil((1.0 - ALPHA) * n - 1e-9))
    dscr = np.asarray(out["min_dscr"], dtype=np.float64)
    has = np.isfinite(dscr)
    irr = np.asarray(out["irr"], dtype=np.float64)
    finite = np.isfinite(irr)
    return {
        "mean_npv": float(npv.mean()),
        "cvar_95": float(-np.partition(npv, k - 1)[:k].mean()),
        "prob_npv_negative": float(np.count_nonzero(npv < 0) / n),
        "prob_dscr_below_covenant": (float(np.count_nonzero(dscr[has] < covenant) / has.sum())
                                     if covenant is not None and has.any() else math.nan),
        "mean_irr": float(irr[finite].mean()) if finite.any() else math.nan,
        "irr_nonfinite": float(n - finite.sum()),
        "mean_equity_npv": float(np.mean(out["equity_npv"])),
    }


def _spread(y: np.ndarray) -> float:
    """The standard deviation of the finite values of y; where they do not spread, a
    millionth of their size (at least 1e-6): a scale that is never 0."""
    y = y[np.isfinite(y)]
    s = float(np.std(y)) if y.size > 1 else 0.0
    return s if s > 0 else max(float(np.max(np.abs(y))) if y.size else 0.0, 1.0) * 1e-6


class Problem:
    """The held paths (in-sample and fresh), the compiled evaluations of a mix on them,
    and the terms SLSQP sees (mean, RU CVaR, smoothed probabilities) with their gradients
    in x, at scales fixed at the start (the current mix clipped into the bounds)."""

    def __init__(self, pf: Portfolio, mc: MonteCarlo, vs: list, objective: str, be, n: int, fresh_seed: int):
        self.vs, self.k, self.n = vs, len(vs), n
        self.lo = np.array([v.lo for v in vs])
        self.span = np.array([v.hi for v in vs]) - self.lo
        self.objective, self.covenant = objective, mc.covenant_dscr
        self.fresh_seed = fresh_seed
        self.be = be
        self.chunk = n if be.is_gpu else min(n, CHUNK)
        self._base = {k: be.asarray(v) for k, v in pf.base_arrays().items()}
        self._rate = be.asarray(np.asarray(pf.discount_rate, dtype=np.float64))
        self._held = {False: self._draw(pf, mc, mc.seed), True: self._draw(pf, mc, fresh_seed)}
        # the IRR's Jacobian costs a solve of the IRR first (irr_from_root): only for its objective
        with_irr = objective == "mean_irr"
        self._values, self._jacobian = compiled(pf, mc, tuple(v.spec for v in vs), be, with_irr)
        self._with_irr = with_irr
        self._cache: tuple[bytes, tuple] | None = None
        self.x0 = np.clip((np.array([v.current for v in vs]) - self.lo) / self.span, 0.0, 1.0)
        start = self.values(self.x0)
        self.money = _spread(start["npv"])  # M: the NPV's spread at the start
        self.spreads = {name: _spread(start[name]) for name in OBJECTIVES.values()}  # an objective's scale
        self.bandwidth = {"prob_npv_negative": BANDWIDTH * _spread(start["npv"]),
                          "prob_dscr_below_covenant": BANDWIDTH * _spread(start["min_dscr"])}
        self.rounds = 0

    # ------------------------------------------------------------ the paths
    def _draw(self, pf: Portfolio, mc: MonteCarlo, seed: int) -> list:
        """The factors and event draws of paths 0 .. n - 1 of `seed`, by chunk (the last
        padded with the paths after n, whose outputs are dropped)."""
        xp, dtype = self.be.xp, self.be.dtype
        key = seed_key(seed)
        held = []
        for a in range(0, self.n, self.chunk):
            paths = xp.astype(a + xp.arange(self.chunk, dtype=xp.int64), xp.uint64)
            factors = path_factors(xp, key, paths, mc.spec, dtype)
            draws = event_draws(xp, key, paths, mc.events, mc.spec.n_series, pf.horizon_months, len(pf.clusters),
                                dtype)
            held.append((factors, draws))
        return held

    def mix(self, x: np.ndarray) -> np.ndarray:
        return self.lo + np.asarray(x, dtype=np.float64) * self.span

    def _joined(self, parts: list[dict]) -> dict:
        return {k: np.concatenate([np.asarray(p[k]) for p in parts])[: self.n] for k in parts[0]}

    def values(self, x: np.ndarray | None, fresh: bool = False) -> dict:
        """Every path's outputs (OUTPUTS) at the mix x (None: the portfolio as it is)."""
        v = self.be.asarray(self.mix(self.x0 if x is None else x))
        current = self.be.xp.asarray(x is None)
        return self._joined([self._values(v, current, self._base, self._rate, fa, dr)
                             for fa, dr in self._held[fresh]])

    def metrics(self, x: np.ndarray | None, fresh: bool = False) -> dict:
        return exact_metrics(self.values(x, fresh), self.covenant)

    def at(self, x: np.ndarray) -> tuple[dict, dict]:
        """In-sample outputs and their Jacobians in v ([n, k]) at x (the last kept)."""
        key = np.asarray(x, dtype=np.float64).tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        v = self.be.asarray(self.mix(x))
        parts, jacs = [], []
        for fa, dr in self._held[False]:
            irr0 = self._values(v, self.be.xp.asarray(False), self._base, self._rate, fa, dr)["irr"] \
                if self._with_irr else self.be.xp.zeros((self.chunk,))
            value, jac = self._jacobian(v, self._base, self._rate, fa, dr, irr0)
            parts.append(value)
            jacs.append(jac)
        found = (self._joined(parts), self._joined(jacs))
        self._cache = (key, found)
        return found

    # ------------------------------------------------------------ the terms
    def mean(self, x: np.ndarray, name: str) -> tuple[float, np.ndarray]:
        """E[y] over the paths where y is finite, and its gradient in x."""
        out, jac = self.at(x)
        y = out[name]
        ok = np.isfinite(y)
        if not ok.any():
            return math.nan, np.full(self.k, math.nan)
        return float(y[ok].mean()), jac[name][ok].mean(axis=0) * self.span

    def ru(self, x: np.ndarray, t: float) -> tuple[float, np.ndarray, float]:
        """The Rockafellar-Uryasev form t + E[(L - t)+] / (1 - alpha), L = -NPV, and its
        gradients in x and in t."""
        out, jac = self.at(x)
        excess = -out["npv"] - t
        over = excess > 0
        value = t + np.mean(np.where(over, excess, 0.0)) / (1.0 - ALPHA)
        g_x = -np.mean(np.where(over[:, None], jac["npv"], 0.0), axis=0) / (1.0 - ALPHA) * self.span
        return float(value), g_x, 1.0 - float(np.mean(over)) / (1.0 - ALPHA)

    def smoothed(self, x: np.ndarray, name: str) -> tuple[float, np.ndarray]:
        """The smoothed probability E[sigmoid((c - y) / h)] over the paths where y is
        finite (0 where none is: no debt, no covenant to breach) and its gradient in x."""
        out, jac = self.at(x)
        y_name = CONSTRAINTS[name]
        c = 0.0 if name == "prob_npv_negative" else self.covenant
        y = out[y_name]
        ok = np.isfinite(y)
        if not ok.any():
            return 0.0, np.zeros(self.k)
        h = self.bandwidth[name]
        s = 0.5 * (1.0 + np.tanh(0.5 * (c - y[ok]) / h))  # the sigmoid, without overflow
        g = np.sum((s * (1.0 - s) / -h)[:, None] * jac[y_name][ok], axis=0) / ok.sum()
        return float(s.mean()), g * self.span

    def settings(self, starts: int) -> dict:
        """What the file and the JSON say of how the problem was solved."""
        return {"money_scale": self.money, "objective_scale": self.spreads[OBJECTIVES[self.objective]],
                "starts": starts, "cvar_level": ALPHA,
                "bandwidth_share": BANDWIDTH, "bandwidth_npv": self.bandwidth["prob_npv_negative"],
                "bandwidth_dscr": self.bandwidth["prob_dscr_below_covenant"], "chunk": self.chunk,
                "rounds": self.rounds}


# ------------------------------------------------------------------ solving


@dataclass
class Answer:
    """One solve's answer: x in [0, 1]^k, its exact in-sample figures, which limits it
    meets, and (filled in later) the figures on fresh paths."""

    x: np.ndarray
    metrics: dict
    limits: dict
    met: dict
    iterations: int
    message: str = ""
    fresh: dict | None = None
    violation: float = 0.0
    feasible: bool = field(init=False)

    def __post_init__(self):
        self.feasible = all(self.met.values())

    def mix(self, vs) -> list[float]:
        return [v.lo + float(x) * (v.hi - v.lo) for v, x in zip(vs, self.x)]


def _slack(problem: Problem, name: str, limit: float, x: np.ndarray, t: float) -> tuple[float, np.ndarray, float]:
    """limit - the term of constraint `name`, scaled (money by M), and its gradients in x
    and in t."""
    if name == "cvar_95":
        value, g_x, g_t = problem.ru(x, t)
        return (limit - value) / problem.money, -g_x / problem.money, -g_t / problem.money
    value, g_x = problem.smoothed(x, name)
    return limit - value, -g_x, 0.0


def _slsqp(problem: Problem, goal: str, targets: dict, x0: np.ndarray):
    """One SLSQP solve: maximise the objective (goal = its name) or minimise the CVaR
    (goal = "cvar_95") within the bounds and the smooth constraints `targets`."""
    from scipy.optimize import minimize

    k = problem.k
    with_t = goal == "cvar_95" or "cvar_95" in targets
    money = problem.money

    def split(z):
        return z[:k], (z[k] * money if with_t else 0.0)

    def pad(g_x, g_t):
        return np.concatenate([g_x, [g_t * money]]) if with_t else g_x

    def objective(z):
        x, t = split(z)
        if goal == "cvar_95":
            value, g_x, g_t = problem.ru(x, t)
            return value / money, pad(g_x / money, g_t / money)
        scale = problem.spreads[OBJECTIVES[goal]]
        value, g_x = problem.mean(x, OBJECTIVES[goal])
        return -value / scale, pad(-g_x / scale, 0.0)

    def constraint(name):
        def fun(z):
            return _slack(problem, name, targets[name], *split(z))[0]

        def jac(z):
            _, g_x, g_t = _slack(problem, name, targets[name], *split(z))
            return pad(g_x, g_t)

        return {"type": "ineq", "fun": fun, "jac": jac}

    z0 = np.asarray(x0, dtype=np.float64)
    if with_t:  # t starts at the VaR: the RU term's minimum over t
        z0 = np.concatenate([z0, [float(np.quantile(-problem.at(x0)[0]["npv"], ALPHA)) / money]])
    bounds = [(0.0, 1.0)] * k + ([(None, None)] if with_t else [])
    res = minimize(objective, z0, jac=True, method="SLSQP", bounds=bounds,
                   constraints=[constraint(n) for n in targets], options={"maxiter": MAX_ITER, "ftol": FTOL})
    x, t = split(res.x)
    x = np.clip(x, 0.0, 1.0)
    met = all(_slack(problem, n, targets[n], x, t)[0] >= -SLACK_TOL for n in targets)
    return x, int(res.nit), str(res.message), met


def _tolerance(problem: Problem, name: str) -> float:
    """How far past its limit an exact figure may be and still meet it: none for a
    probability (a count of paths), round-off for a CVaR."""
    return 1e-9 * problem.money if name == "cvar_95" else 0.0


def _step(problem: Problem, name: str) -> float:
    """What a tightening adds to the miss: half a path of probability, a millionth of M."""
    return 1e-6 * problem.money if name == "cvar_95" else 0.5 / problem.n


def _scale_of(problem: Problem, name: str) -> float:
    return problem.money if name == "cvar_95" else 1.0


def solve_checked(problem: Problem, goal: str, limits: dict, x0: np.ndarray) -> Answer:
    """Solve from x0 and check the answer exactly; then solve again from the answer
    (MAX_ROUNDS times at most) with each limit SLSQP sees moved by the exact miss: down
    by the miss and a step where the answer misses it, up by the gap where a limit it
    holds at (active) is met with room (the smoothed probability's bias: the exact
    boundary lies further). The best answer that meets every limit is kept, else the
    one that misses them least."""
    targets = dict(limits)
    x, iterations, best = x0, 0, None
    for _ in range(MAX_ROUNDS + 1):
        x, nit, message, smooth_met = _slsqp(problem, goal, targets, x)
        iterations += nit
        m = problem.metrics(x)
        excess = {n: m[n] - lim for n, lim in limits.items()}
        met = {n: bool(e <= _tolerance(problem, n)) for n, e in excess.items()}
        violation = sum(max(0.0, e) / _scale_of(problem, n) for n, e in excess.items())
        a = Answer(x, m, dict(limits), met, iterations, message, violation=violation)
        if _better(problem, goal, a, best):
            best = a
        moved = False
        for n, e in excess.items() if smooth_met else ():  # else SLSQP met not even these: give up
            if not met[n]:
                targets[n] -= e + _step(problem, n)
                moved = True
            elif e < -_step(problem, n) and _active(problem, n, targets[n], x):
                targets[n] -= e
                moved = True
        if not moved:
            break
        problem.rounds += 1
    best.iterations = iterations
    return best


def _active(problem: Problem, name: str, target: float, x: np.ndarray) -> bool:
    """Whether SLSQP's answer holds the smoothed constraint at its target (a probability's;
    a CVaR's RU term is exact at its threshold)."""
    if name == "cvar_95":
        return False
    return abs(target - problem.smoothed(x, name)[0]) <= SLACK_TOL


def _starts(problem: Problem, starts: int) -> list[np.ndarray]:
    """The current mix clipped into the bounds, then the bounds' centre, then points drawn
    uniformly in them (a fixed seed): `starts` of them."""
    out = [problem.x0, np.full(problem.k, 0.5)]
    rng = np.random.default_rng(0)
    while len(out) < starts:
        out.append(rng.uniform(size=problem.k))
    return out[:starts]


def _better(problem: Problem, goal: str, a: Answer, b: Answer | None) -> bool:
    """Whether a beats b: feasible first, then the goal (the objective's mean up, the
    CVaR down), then the smaller miss."""
    if b is None:
        return True
    if a.feasible != b.feasible:
        return a.feasible
    if not a.feasible:
        return a.violation < b.violation
    key = (lambda m: -m["cvar_95"]) if goal == "cvar_95" else (lambda m: m[goal])
    return key(a.metrics) > key(b.metrics)


def solve_best(problem: Problem, limits: dict, starts: int = 1, goal: str | None = None) -> Answer:
    """The best of solve_checked from each start (_starts), with its message."""
    goal = goal or problem.objective
    best = None
    for x0 in _starts(problem, starts):
        a = solve_checked(problem, goal, limits, x0)
        if _better(problem, goal, a, best):
            best = a
    best.message = describe(problem, best, starts)
    return best


def describe(problem: Problem, a: Answer, starts: int) -> str:
    """One sentence: the mix found, or why there is none."""
    mix = ", ".join(f"{v.label}={value:.4g}" for v, value in zip(problem.vs, a.mix(problem.vs)))
    if a.feasible:
        return f"optimum at {mix}"
    misses = [f"{n} {_text(n, a.metrics[n])} > {_text(n, a.limits[n])}" for n, ok in a.met.items() if not ok]
    return (f"no feasible mix in the bounds: the closest found ({mix}) has {', '.join(misses)} "
            f"(searched from {starts} start{'s' if starts > 1 else ''}; more --starts search wider)")


def _text(name: str, value: float) -> str:
    return format_output("npv", value) if name == "cvar_95" else f"{value:.4g}"


# ------------------------------------------------------------------ frontier


@dataclass
class Frontier:
    """Mean vs CVaR: at each CVaR limit the optimal mix (point 0 the lowest CVaR reachable
    in the bounds, the last the optimum without a CVaR limit)."""

    limits: np.ndarray
    answers: list[Answer]
    note: str = ""


def frontier_sweep(problem: Problem, others: dict, n: int, starts: int = 1) -> Frontier:
    """The frontier over n CVaR limits between the lowest CVaR reachable in the bounds and
    the CVaR of the optimum without a CVaR limit, the other constraints kept; each point
    solved from the one before, and re-evaluated on fresh paths."""
    low = solve_best(problem, others, starts, goal="cvar_95")
    high = solve_best(problem, others, starts)
    note = ""
    if not (low.feasible and high.feasible):
        answers = [low] * n
        note = "no mix meets the other constraints: no frontier"
        return Frontier(np.full(n, math.nan), answers, note)
    c_lo, c_hi = low.metrics["cvar_95"], high.metrics["cvar_95"]
    if c_hi <= c_lo:
        note = "the optimum without a CVaR limit has the lowest CVaR reachable: the frontier is one point"
        c_lo, low = c_hi, high
    limits = np.linspace(c_lo, c_hi, n)
    answers = [low]
    x = low.x
    for lim in limits[1:-1]:
        a = solve_checked(problem, problem.objective, {**others, "cvar_95": float(lim)}, x)
        answers.append(a)
        x = a.x if a.feasible else x
    answers.append(high)
    for a in answers:
        a.fresh = problem.metrics(a.x, fresh=True)
    return Frontier(limits, answers[:n], note)
