"""Monte Carlo paths: the outputs of a chunk of paths, and their pathwise gradients.

A chunk is a range [start, start + n) of path indices; its paths are drawn on the
device from (seed, path index) alone (kernels/paths.py), evaluated by the same
kernels as a grid point, and only their outputs come back to the host. What is done
with them (summaries, files) is decided above this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .backends import Backend, BackendError
from .config import Portfolio
from .engine import (GPU_BUDGET, Chunk, chunk_in_pieces, chunk_workers, cpu_pieces, default_chunk_size,
                     equity_clusters, pipelined)
from .kernels.metrics import evaluate
from .kernels.params import PARAM_NAMES
from .kernels.paths import apply_events, event_draws, path_factors, seed_key
from .mc_config import MonteCarlo
from .outputs import LEVELS


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
        return evaluate(p, r, horizon, equity_clusters=equity, factors=factors, cumulative=True,
                        debt_clusters=equity)

    return fn


@dataclass
class MonteCarloRun:
    portfolio: Portfolio
    scenario: MonteCarlo
    backend: Backend
    chunk_size: int
    _fn: Callable = field(repr=False, default=None)
    _args: tuple = field(repr=False, default=())
    piece: int = 0  # paths the chunk's program evaluates at a time (0: the whole chunk)

    @property
    def total(self) -> int:
        return self.scenario.paths

    @property
    def piece_size(self) -> int:
        """Paths evaluated at a time inside a chunk (prepare): the unit of the working
        memory, which the sensitivities' reverse pass takes as its chunk."""
        return self.piece or self.chunk_size

    def devices(self) -> list:
        """The devices the paths run on: one (a grid run may split over several)."""
        return [self.backend.device]

    def chunks(self, start: int = 0, stop: int | None = None, ahead: int = 1) -> Iterator[Chunk]:
        """The chunks of paths [start, stop), in order; ahead: how many may be computed
        beyond the one handed out where the chunks have threads of their own
        (engine.pipelined)."""
        stop = self.total if stop is None else stop
        yield from pipelined(self._fn, self._args, self.backend, start, stop, self.chunk_size,
                             workers=chunk_workers(self.backend), ahead=ahead)


# CPU chunks of paths are smaller than a grid's: drawing a path adds arrays of [series,
# months] per path (normals, the correlated innovations, the scans), and past about 256
# paths of the example portfolio they leave the caches; larger chunks ran markedly slower
# (benchmarks/README.md, "Measurements behind design choices in the code")
_MC_CPU_BUDGET = 64 * 2**20


def prepare(pf: Portfolio, mc: MonteCarlo, backend: Backend, chunk_size: int | None = None) -> MonteCarloRun:
    """The paths' chunk function and its inputs. chunk_size: paths a chunk (default: a
    memory budget's; JAX on the CPU then runs several such pieces a chunk,
    engine.cpu_pieces)."""
    chunk = chunk_size or default_chunk_size(pf, mc.paths, GPU_BUDGET if backend.is_gpu else _MC_CPU_BUDGET)
    chunk = int(min(chunk, mc.paths))
    pieces = cpu_pieces(backend, mc.paths, chunk) if chunk_size is None else 1
    xp, dtype = backend.xp, backend.dtype
    fn = chunk_in_pieces(path_outputs_fn(pf, mc, xp, dtype, chunk, equity_clusters(pf, mc)), pieces, chunk)
    base = {k: backend.asarray(v.astype(dtype)) for k, v in pf.base_arrays().items()}
    rate = backend.asarray(np.asarray(pf.discount_rate, dtype=dtype))
    return MonteCarloRun(pf, mc, backend, chunk * pieces, backend.compile(fn, chunk_workers(backend) > 1),
                         (base, rate), piece=chunk)


# ------------------------------------------------------- pathwise sensitivities


@dataclass
class GradientPass:
    """The reverse pass of the pathwise sensitivities over every path of a run.

    The pathwise method: d E[NPV]/d theta = E[d NPV/d theta] with the draws held fixed
    (common random numbers), and d CVaR_q/d theta = -E[d NPV/d theta | NPV in the tail],
    the tail fixed at the paths the summary's CVaR averages (boundary bin at its
    weight). One reverse pass per chunk of sum_s w_s NPV_s, the weights computed from
    the forward NPVs: a second pass over the paths, after the first found the tails.

    fn(*args, start, *extra) is the pass's chunk function, compiled on its first call
    (a caller may compile it ahead, as for the forward pass).
    """

    run: MonteCarloRun
    levels: tuple[float, ...]  # the CVaR levels with a tail (rows 1.. of the weights)
    fn: Callable
    args: tuple
    extra: tuple  # the tails' (lower edge, upper edge, weight), one per level

    def gradients(self, advance: Callable[[int], None] | None = None) -> dict:
        """Gradients of mean NPV and of CVaR at each level with respect to every parameter.
        advance(n): called after each chunk with its number of paths (a progress count)."""
        run = self.run
        chunk, N, C = run.piece_size, run.total, len(run.portfolio.clusters)
        rows = 1 + len(self.levels)
        g_base = {k: np.zeros((rows, C)) for k in PARAM_NAMES}
        g_rate, weight = np.zeros(rows), np.zeros(rows)
        xp = run.backend.xp
        for a in range(0, N, chunk):
            (gb, gr), wsum = self.fn(*self.args, xp.asarray(a), *self.extra)
            for k in PARAM_NAMES:
                g_base[k] += np.asarray(gb[k])
            g_rate += np.asarray(gr)
            weight += np.asarray(wsum)
            if advance is not None:
                advance(min(a + chunk, N) - a)
        return self._named(np.stack([g_base[k] for k in PARAM_NAMES], axis=-1), g_rate, weight)

    def _named(self, stacked: np.ndarray, g_rate: np.ndarray, weight: np.ndarray) -> dict:
        """The weighted sums [1 + L, C, P] (and the rate's [1 + L]) as the file's gradients."""
        out = {"grad_mean_npv": stacked[0] / weight[0],
               "grad_mean_npv_discount_rate": g_rate[0] / weight[0]}
        for i, lv in enumerate(self.levels, start=1):
            tag = f"{round(lv * 100)}"
            out[f"grad_cvar_{tag}"] = -stacked[i] / weight[i]
            out[f"grad_cvar_{tag}_discount_rate"] = -g_rate[i] / weight[i]
        return out


def gradient_pass(run: MonteCarloRun, thresholds: dict) -> GradientPass:
    """The sensitivities pass of `run`, the CVaR tails cut at `thresholds` (level -> the
    boundary bin's (lower edge, upper edge, weight), or None where the level has no tail)."""
    if not run.backend.is_jax:
        raise BackendError(f"Monte Carlo sensitivities need the JAX backend (automatic "
                           f"differentiation); got {run.backend.name}")
    from .jax_adapter import tail_weighted_gradient

    jnp = run.backend.xp  # jax.numpy
    pf, mc = run.portfolio, run.scenario
    levels = tuple(lv for lv in LEVELS if thresholds.get(lv) is not None)
    fn = path_outputs_fn(pf, mc, jnp, run.backend.dtype, run.piece_size, ())
    grad = tail_weighted_gradient(lambda base, rate, start: fn(base, rate, start)["npv"], run.piece_size, mc.paths)
    cuts = tuple(jnp.asarray(thresholds[lv]) for lv in levels)
    return GradientPass(run, levels, grad, run._args, (cuts,))
