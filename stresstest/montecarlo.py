"""Monte Carlo runs: paths in chunks, streaming summaries, pathwise sensitivities, the file.

A chunk is a range [start, start + n) of path indices; its paths are drawn on the
device from (seed, path index) alone (kernels/paths.py), evaluated by the same
kernels as a grid point, and only their outputs come back to the host, where the
summaries (stresstest/summaries.py) absorb them. Nothing holds every path unless
--save-paths streams them to the file.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .backends import Backend, BackendError
from .config import Portfolio, config_json
from .engine import (_GPU_BUDGET, EXPECTED_NONFINITE, Chunk, default_chunk_size,
                     equity_clusters, pipelined)
from .kernels.metrics import evaluate
from .kernels.params import OUTPUTS, PARAM_NAMES
from .kernels.paths import apply_events, event_draws, path_factors, seed_key
from .mc_config import QUANTILES, MonteCarlo
from .summaries import FAN_ALPHA, Moments, Sketch, cvar_from

STATISTICS = ("mean", "std", "stderr", "min", "max") + tuple(f"p{round(q * 100)}" for q in QUANTILES) + (
    "nonfinite_fraction",)
FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LEVELS = (0.95, 0.99)


def path_outputs_fn(pf: Portfolio, mc: MonteCarlo, xp, dtype, chunk: int, equity):
    """The pure chunk function: (base, rate, start) -> every output of every path."""
    key = seed_key(mc.seed)
    spec, events = mc.spec, mc.events
    horizon, C = pf.horizon_months, len(pf.clusters)

    def fn(base, rate, start):
        paths = xp.astype(start + xp.arange(chunk, dtype=xp.int64), xp.uint64)
        factors = path_factors(xp, key, paths, spec, dtype)
        draws = event_draws(xp, key, paths, events, spec.n_series, horizon, C, dtype)
        p = apply_events(base, events, draws)
        r = xp.broadcast_to(xp.reshape(rate, (1,)), (chunk,))
        return evaluate(p, r, horizon, equity_clusters=equity, factors=factors, cumulative=True)

    return fn


@dataclass
class MonteCarloRun:
    portfolio: Portfolio
    scenario: MonteCarlo
    backend: Backend
    chunk_size: int
    _fn: Callable = field(repr=False, default=None)
    _args: tuple = field(repr=False, default=())

    @property
    def total(self) -> int:
        return self.scenario.paths

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        stop = self.total if stop is None else stop
        yield from pipelined(self._fn, self._args, self.backend, start, stop, self.chunk_size)


# CPU chunks of paths are smaller than a grid's: drawing a path adds arrays of [series,
# months] per path (normals, the correlated innovations, the scans), and past about 256
# paths of the example portfolio they leave the caches (1,024 ran 1.6x slower; 2-core VM)
_MC_CPU_BUDGET = 64 * 2**20


def prepare(pf: Portfolio, mc: MonteCarlo, backend: Backend, chunk_size: int | None = None) -> MonteCarloRun:
    chunk = chunk_size or default_chunk_size(pf, mc.paths, _GPU_BUDGET if backend.is_gpu else _MC_CPU_BUDGET)
    chunk = int(min(chunk, mc.paths))
    xp, dtype = backend.xp, backend.dtype
    fn = path_outputs_fn(pf, mc, xp, dtype, chunk, equity_clusters(pf))
    base = {k: backend.asarray(v.astype(dtype)) for k, v in pf.base_arrays().items()}
    rate = backend.asarray(np.asarray(pf.discount_rate, dtype=dtype))
    return MonteCarloRun(pf, mc, backend, chunk, backend.compile(fn), (base, rate))


# ------------------------------------------------------------------ summaries


class Summary:
    """Everything the summary tables need, accumulated chunk by chunk (mergeable)."""

    def __init__(self, n_clusters: int, horizon: int, hurdle: float | None, covenant: float | None,
                 workers: int = 1):
        self.C = n_clusters
        self.workers = workers  # threads absorbing a batch (flush); the results do not depend on it
        self.hurdle, self.covenant = hurdle, covenant
        self.moments = {o: Moments(1 + n_clusters) for o in OUTPUTS}
        self.sketches = {o: [Sketch(extra=n_clusters if (o == "npv" and c == 0) else 0)
                             for c in range(1 + n_clusters)] for o in OUTPUTS}
        self.fan = [Sketch(FAN_ALPHA) for _ in range(horizon + 1)]
        self.fan_moments = Moments(horizon + 1)
        self.n = 0
        # counts for probabilities: [portfolio, clusters...]
        self.npv_negative = np.zeros(1 + n_clusters, dtype=np.int64)
        self.irr_below = np.zeros(1 + n_clusters, dtype=np.int64)
        self.irr_finite = np.zeros(1 + n_clusters, dtype=np.int64)
        self.dscr_below = np.zeros(1 + n_clusters, dtype=np.int64)
        self.dscr_finite = np.zeros(1 + n_clusters, dtype=np.int64)
        # outputs the model never leaves non-finite: name -> (count, first path index)
        self.unexpected: dict[str, tuple[int, int]] = {}
        self._pending: list[dict] = []  # chunks not yet absorbed (see add)

    @staticmethod
    def columns(out: dict, name: str) -> np.ndarray:
        return np.concatenate([out[name][:, None], out["cluster_" + name]], axis=1)

    # Chunks are absorbed in batches of at least this many paths: the accumulators cost
    # about 130 numpy calls per batch whatever its size, as much as computing 1,000 paths.
    # (Absorbing on a thread while the next chunks compute gained nothing measurable on
    # 2 cores, and raised the peak memory.)
    BATCH = 16384
    _SUMMARISED = tuple(OUTPUTS) + tuple("cluster_" + o for o in OUTPUTS) + ("cumulative_cf",)

    def add(self, out: dict, start: int = 0) -> None:
        """Take one chunk's outputs (paths start, start + 1, ...). Non-finite values are
        checked at once; the accumulators take the chunks in batches (flush)."""
        self.n += out["npv"].shape[0]
        for o in OUTPUTS:
            if o not in EXPECTED_NONFINITE:
                bad = ~(np.isfinite(out[o]) & np.isfinite(out["cluster_" + o]).all(axis=1))
                if bad.any():
                    count, first = self.unexpected.get(o, (0, start + int(np.argmax(bad))))
                    self.unexpected[o] = (count + int(bad.sum()), first)
        self._pending.append({k: out[k] for k in self._SUMMARISED})
        if sum(p["npv"].shape[0] for p in self._pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Absorb the chunks taken so far (every reader calls it first)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        out = pending[0] if len(pending) == 1 else {
            k: np.concatenate([p[k] for p in pending]) for k in self._SUMMARISED}
        # every accumulator takes its own columns: independent jobs, each run whole by one
        # thread, so the result does not depend on the number of workers
        jobs = []
        for o in OUTPUTS:
            x = self.columns(out, o)
            jobs.append(partial(self.moments[o].add, x))
            jobs += [partial(sk.add, x[:, c], out["cluster_npv"] if sk.n_extra else None)
                     for c, sk in enumerate(self.sketches[o])]
        cum = out["cumulative_cf"]
        jobs.append(partial(self.fan_moments.add, cum))
        jobs += [partial(sk.add, cum[:, t]) for t, sk in enumerate(self.fan)]
        if self.workers > 1:
            # numpy's log, bincount and sums release the GIL: the sketches absorb in parallel
            with ThreadPoolExecutor(self.workers) as pool:
                for f in [pool.submit(job) for job in jobs]:
                    f.result()
        else:
            for job in jobs:
                job()
        npv = self.columns(out, "npv")
        self.npv_negative += (npv < 0).sum(axis=0)
        irr = self.columns(out, "irr")
        self.irr_finite += np.isfinite(irr).sum(axis=0)
        if self.hurdle is not None:
            self.irr_below += (irr < self.hurdle).sum(axis=0)
        dscr = self.columns(out, "min_dscr")
        self.dscr_finite += np.isfinite(dscr).sum(axis=0)
        if self.covenant is not None:
            self.dscr_below += (dscr < self.covenant).sum(axis=0)

    def merge(self, other: "Summary") -> None:
        self.flush()
        other.flush()
        self.n += other.n
        for o in OUTPUTS:
            self.moments[o].merge(other.moments[o])
            for a, b in zip(self.sketches[o], other.sketches[o]):
                a.merge(b)
        self.fan_moments.merge(other.fan_moments)
        for a, b in zip(self.fan, other.fan):
            a.merge(b)
        for name in ("npv_negative", "irr_below", "irr_finite", "dscr_below", "dscr_finite"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for o, (count, first) in other.unexpected.items():
            c0, f0 = self.unexpected.get(o, (0, first))
            self.unexpected[o] = (c0 + count, min(f0, first))

    # --------------------------------------------------- state for shard files
    _COUNTS = ("npv_negative", "irr_below", "irr_finite", "dscr_below", "dscr_finite")

    def _parts(self):
        """(name, Moments or Sketch) of every accumulator, in a fixed order."""
        self.flush()
        for o in OUTPUTS:
            yield f"{o}.m", self.moments[o]
            for c, sk in enumerate(self.sketches[o]):
                yield f"{o}.s{c}", sk
        yield "fan.m", self.fan_moments
        for t, sk in enumerate(self.fan):
            yield f"fan.s{t}", sk

    def state(self) -> dict[str, np.ndarray]:
        """Every number the summary holds, as flat named arrays (a shard file's data)."""
        self.flush()
        out = {"n": np.array([self.n]), "horizon": np.array([len(self.fan) - 1]),
               "clusters": np.array([self.C])}
        for name in self._COUNTS:
            out[name] = getattr(self, name)
        for key, part in self._parts():
            (_moments_state if isinstance(part, Moments) else _sketch_state)(out, key, part)
        names = sorted(self.unexpected)
        out["unexpected.names"] = np.array(names, dtype="S")
        out["unexpected.values"] = np.array([self.unexpected[k] for k in names], dtype=np.int64).reshape(-1, 2)
        return out

    @classmethod
    def from_state(cls, d: dict, hurdle, covenant) -> "Summary":
        s = cls(int(d["clusters"][0]), int(d["horizon"][0]), hurdle, covenant)
        s.n = int(d["n"][0])
        for name in cls._COUNTS:
            setattr(s, name, np.array(d[name]))
        for key, part in s._parts():
            (_moments_load if isinstance(part, Moments) else _sketch_load)(d, key, part)
        for k, (count, first) in zip(d["unexpected.names"], d["unexpected.values"]):
            s.unexpected[k.decode() if isinstance(k, bytes) else str(k)] = (int(count), int(first))
        return s

    def table(self, o: str) -> np.ndarray:
        """[1 + C, len(STATISTICS)]: the statistics of output o, portfolio first."""
        self.flush()
        m = self.moments[o]
        rows = []
        for c, sk in enumerate(self.sketches[o]):
            q = [sk.quantile(x) for x in QUANTILES]
            lo, hi = sk.extreme(False), sk.extreme(True)
            total = self.n
            nonfinite = (m.nan[c] + m.inf[c]) / total if total else math.nan
            rows.append([m.mean[c] if m.n[c] else math.nan, m.std[c], m.stderr[c], lo, hi, *q, nonfinite])
        return np.array(rows)

    def risk(self) -> dict:
        """VaR, CVaR (with standard errors), probabilities, tail contributions."""
        self.flush()
        out: dict = {}
        for level in LEVELS:
            q = 1.0 - level
            tag = f"{round(level * 100)}"
            per = []
            for c, sk in enumerate(self.sketches["npv"]):
                var = -sk.quantile(q)
                cvar, se = cvar_from(sk, q)
                per.append((var, cvar, se))
            arr = np.array(per)
            out[f"var_{tag}"], out[f"cvar_{tag}"], out[f"cvar_{tag}_stderr"] = arr[0]
            out[f"cluster_var_{tag}"], out[f"cluster_cvar_{tag}"] = arr[1:, 0], arr[1:, 1]
            k, s, _, extra = self.sketches["npv"][0].lower_tail(q)
            out[f"tail_contribution_{tag}"] = extra / k if k else extra * math.nan
        n = self.n

        def prob(count, base):
            with np.errstate(invalid="ignore", divide="ignore"):
                p = count / base
                return p, np.sqrt(p * (1 - p) / base)

        p, se = prob(self.npv_negative, n)
        out["prob_npv_negative"], out["prob_npv_negative_stderr"] = p[0], se[0]
        out["cluster_prob_npv_negative"] = p[1:]
        if self.hurdle is not None:
            p, se = prob(self.irr_below, self.irr_finite)
            out["prob_irr_below_hurdle"], out["prob_irr_below_hurdle_stderr"] = p[0], se[0]
            out["cluster_prob_irr_below_hurdle"] = p[1:]
        if self.covenant is not None:
            p, se = prob(self.dscr_below, self.dscr_finite)
            out["prob_dscr_below_covenant"], out["prob_dscr_below_covenant_stderr"] = p[0], se[0]
            out["cluster_prob_dscr_below_covenant"] = p[1:]
        return out

    def fan_table(self) -> np.ndarray:
        """[T + 1, len(FAN_QUANTILES)] quantiles of the cumulative portfolio cash flow."""
        self.flush()
        return np.array([[sk.quantile(q) for q in FAN_QUANTILES] for sk in self.fan])


def _moments_state(out: dict, key: str, m: Moments) -> None:
    for f in ("n", "mean", "m2", "nan", "inf"):
        out[f"{key}.{f}"] = getattr(m, f)


def _moments_load(d: dict, key: str, m: Moments) -> None:
    for f in ("n", "mean", "m2", "nan", "inf"):
        setattr(m, f, np.array(d[f"{key}.{f}"]))


def _sketch_state(out: dict, key: str, sk: Sketch) -> None:
    out[f"{key}.meta"] = np.array([sk.lo, sk.nan, sk.neg_inf, sk.pos_inf], dtype=np.int64)
    for f in ("counts", "sums", "sqs", "extra", "mins", "maxs"):
        out[f"{key}.{f}"] = getattr(sk, f)


def _sketch_load(d: dict, key: str, sk: Sketch) -> None:
    sk.lo, sk.nan, sk.neg_inf, sk.pos_inf = (int(x) for x in d[f"{key}.meta"])
    for f in ("counts", "sums", "sqs", "extra", "mins", "maxs"):
        setattr(sk, f, np.array(d[f"{key}.{f}"]))


def tail_thresholds(sk: Sketch, q: float) -> tuple[float, float, float] | None:
    """(lower edge, upper edge, weight) of the boundary bin of the lower q-tail: a path
    below the lower edge has weight 1, inside the bin the weight, above it 0. The edges
    are the bin's smallest and largest values seen, so every path lands as the sketch
    binned it."""
    tw = sk.tail_weights(q)
    if tw is None:
        return None
    b, f = tw
    j = b - sk.lo
    return float(sk.mins[j]), float(sk.maxs[j]), f


# ------------------------------------------------------- pathwise sensitivities


def pathwise_gradients(run: MonteCarloRun, thresholds: dict) -> dict:
    """Gradients of mean NPV and of CVaR at each level with respect to every parameter.

    The pathwise method: d E[NPV]/d theta = E[d NPV/d theta] with the draws held fixed
    (common random numbers), and d CVaR_q/d theta = -E[d NPV/d theta | NPV in the tail],
    the tail fixed at the paths the summary's CVaR averages (boundary bin at its
    weight). One reverse pass per chunk of sum_s w_s NPV_s, the weights computed from
    the forward NPVs: a second pass over the paths, after the first found the tails.
    """
    if run.backend.name != "jax":
        raise BackendError(f"Monte Carlo sensitivities need the JAX backend (automatic "
                           f"differentiation); got {run.backend.name}")
    import jax
    import jax.numpy as jnp

    pf, mc = run.portfolio, run.scenario
    chunk, N = run.chunk_size, mc.paths
    levels = [lv for lv in LEVELS if thresholds.get(lv) is not None]
    fn = path_outputs_fn(pf, mc, jnp, run.backend.dtype, chunk, ())

    def weighted(base, rate, start, cuts):
        out = fn(base, rate, start)
        npv = out["npv"]
        idx = start + jnp.arange(chunk)
        live = (idx < N).astype(npv.dtype)
        ws = [live]
        for (lo, hi, f) in cuts:
            v = jax.lax.stop_gradient(npv)
            ws.append(live * jnp.where(v < lo, 1.0, jnp.where(v <= hi, f, 0.0)))  # [lo, hi]: the bin
        w = jax.lax.stop_gradient(jnp.stack(ws))
        return w @ npv, w.sum(axis=1)

    grad = jax.jit(jax.jacrev(weighted, argnums=(0, 1), has_aux=True))
    base, rate = run._args
    cuts = tuple(jnp.asarray(thresholds[lv]) for lv in levels)
    g_base = {k: np.zeros((1 + len(levels), len(pf.clusters))) for k in PARAM_NAMES}
    g_rate = np.zeros(1 + len(levels))
    weight = np.zeros(1 + len(levels))
    for a in range(0, N, chunk):
        (gb, gr), wsum = grad(base, rate, jnp.asarray(a), cuts)
        for k in PARAM_NAMES:
            g_base[k] += np.asarray(gb[k])
        g_rate += np.asarray(gr)
        weight += np.asarray(wsum)
    stacked = np.stack([g_base[k] for k in PARAM_NAMES], axis=-1)  # [1 + L, C, P]
    out = {"grad_mean_npv": stacked[0] / weight[0],
           "grad_mean_npv_discount_rate": g_rate[0] / weight[0]}
    for i, lv in enumerate(levels, start=1):
        tag = f"{round(lv * 100)}"
        out[f"grad_cvar_{tag}"] = -stacked[i] / weight[i]
        out[f"grad_cvar_{tag}_discount_rate"] = -g_rate[i] / weight[i]
    return out


# ------------------------------------------------------------------- the run


@dataclass
class MonteCarloResult:
    path: Path
    portfolio: Portfolio
    scenario: MonteCarlo
    backend: str
    summary: Summary
    gradients: dict | None
    seconds: float
    chunk_size: int
    config_sha256: str

    @property
    def scm(self) -> int:
        return self.scenario.paths * len(self.portfolio.clusters) * self.portfolio.horizon_months


def summary_workers(be: Backend) -> int:
    """Threads for the summaries (Summary.workers): several where the paths are evaluated
    on a GPU, whose host cores are otherwise idle; one on the CPU, where they would take
    cores from XLA's threads (no gain measured on 2 cores: benchmarks/README.md)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1)) if be.is_gpu else 1


def run_montecarlo(pf: Portfolio, mc: MonteCarlo, out: Path, be: Backend, *, chunk_size=None,
                   progress=True, compression="gzip", sensitivities=False,
                   save_paths=False) -> MonteCarloResult:
    from .h5io import provenance
    from .mc_io import MonteCarloWriter
    from .progress import Interrupts, Progress

    if sensitivities and be.name != "jax":
        raise BackendError(f"sensitivities need the JAX backend (automatic differentiation); got "
                           f"{be.name}. Use --backend jax or auto, with jax installed")
    cfg, sha = config_json(pf, mc)
    t0 = time.perf_counter()
    run = prepare(pf, mc, be, chunk_size)
    attrs = provenance(pf, mc.name, cfg, sha, be.name, be.device, be.dtype, kind="montecarlo",
                       paths=mc.paths, seed=mc.seed)
    writer = MonteCarloWriter(out, pf, mc, attrs, be.dtype, compression, save_paths)
    summary = Summary(len(pf.clusters), pf.horizon_months, mc.hurdle_irr, mc.covenant_dscr,
                      summary_workers(be))
    bar = Progress(mc.paths, label="paths", enabled=progress)
    try:
        with writer, Interrupts() as interrupts:
            for chunk in run.chunks():
                interrupts.check()
                summary.add(chunk.outputs, chunk.start)
                if save_paths:
                    writer.write_paths(chunk.start, chunk.stop, chunk.outputs)
                bar.advance(chunk.stop - chunk.start)
            gradients = None
            if sensitivities:
                summary.flush()
                cuts = {lv: tail_thresholds(summary.sketches["npv"][0], 1 - lv) for lv in LEVELS}
                gradients = pathwise_gradients(run, cuts)
            writer.write_summary(summary, gradients)
            path = writer.commit()
    finally:
        bar.close()
    return MonteCarloResult(path, pf, mc, be.describe(), summary, gradients, time.perf_counter() - t0,
                            run.chunk_size, sha)
