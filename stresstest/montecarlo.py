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
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .backends import Backend, BackendError
from .config import Portfolio, config_json
from .engine import (GPU_BUDGET, Chunk, default_chunk_size,
                     equity_clusters, pipelined)
from .kernels.metrics import evaluate
from .kernels.params import OUTPUTS, PARAM_NAMES
from .kernels.paths import apply_events, event_draws, path_factors, seed_key
from .mc_config import MonteCarlo
from .outputs import EXPECTED_NONFINITE, FAN_QUANTILES, LEVELS, QUANTILES
from .results import Result
from .summaries import FAN_ALPHA, Moments, Sketch, cvar_from



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
    chunk = chunk_size or default_chunk_size(pf, mc.paths, GPU_BUDGET if backend.is_gpu else _MC_CPU_BUDGET)
    chunk = int(min(chunk, mc.paths))
    xp, dtype = backend.xp, backend.dtype
    fn = path_outputs_fn(pf, mc, xp, dtype, chunk, equity_clusters(pf))
    base = {k: backend.asarray(v.astype(dtype)) for k, v in pf.base_arrays().items()}
    rate = backend.asarray(np.asarray(pf.discount_rate, dtype=dtype))
    return MonteCarloRun(pf, mc, backend, chunk, backend.compile(fn), (base, rate))


# ------------------------------------------------------------------ summaries


class Accumulators:
    """The summaries of one set of paths: moments, sketches and counts (absorb, merge)."""

    def __init__(self, n_clusters: int, horizon: int, hurdle: float | None, covenant: float | None):
        self.hurdle, self.covenant = hurdle, covenant
        self.moments = {o: Moments(1 + n_clusters) for o in OUTPUTS}
        self.sketches = {o: [Sketch(extra=n_clusters if (o == "npv" and c == 0) else 0)
                             for c in range(1 + n_clusters)] for o in OUTPUTS}
        self.fan = [Sketch(FAN_ALPHA) for _ in range(horizon + 1)]
        self.fan_moments = Moments(horizon + 1)
        # counts for probabilities: [portfolio, clusters...]
        self.npv_negative = np.zeros(1 + n_clusters, dtype=np.int64)
        self.irr_below = np.zeros(1 + n_clusters, dtype=np.int64)
        self.irr_finite = np.zeros(1 + n_clusters, dtype=np.int64)
        self.dscr_below = np.zeros(1 + n_clusters, dtype=np.int64)
        self.dscr_finite = np.zeros(1 + n_clusters, dtype=np.int64)

    COUNTS = ("npv_negative", "irr_below", "irr_finite", "dscr_below", "dscr_finite")

    def absorb(self, out: dict, workers: int = 1) -> None:
        """Take the outputs of a set of paths (arrays of Summary.SUMMARISED)."""
        # every accumulator takes its own columns: independent jobs, each run whole by one
        # thread, so the result does not depend on the number of workers
        jobs = []
        for o in OUTPUTS:
            x = Summary.columns(out, o)
            jobs.append(partial(self.moments[o].add, x))
            jobs += [partial(sk.add, x[:, c], out["cluster_npv"] if sk.n_extra else None)
                     for c, sk in enumerate(self.sketches[o])]
        cum = out["cumulative_cf"]
        jobs.append(partial(self.fan_moments.add, cum))
        jobs += [partial(sk.add, cum[:, t]) for t, sk in enumerate(self.fan)]
        if workers > 1:
            # numpy's log, bincount and sums release the GIL: the sketches absorb in parallel
            with ThreadPoolExecutor(workers) as pool:
                for f in [pool.submit(job) for job in jobs]:
                    f.result()
        else:
            for job in jobs:
                job()
        npv = Summary.columns(out, "npv")
        self.npv_negative += (npv < 0).sum(axis=0)
        irr = Summary.columns(out, "irr")
        self.irr_finite += np.isfinite(irr).sum(axis=0)
        if self.hurdle is not None:
            self.irr_below += (irr < self.hurdle).sum(axis=0)
        dscr = Summary.columns(out, "min_dscr")
        self.dscr_finite += np.isfinite(dscr).sum(axis=0)
        if self.covenant is not None:
            self.dscr_below += (dscr < self.covenant).sum(axis=0)

    def merge(self, other: "Accumulators") -> None:
        """Absorb `other`, the paths that follow this set's (the order matters to the last bit)."""
        for o in OUTPUTS:
            self.moments[o].merge(other.moments[o])
            for a, b in zip(self.sketches[o], other.sketches[o]):
                a.merge(b)
        self.fan_moments.merge(other.fan_moments)
        for a, b in zip(self.fan, other.fan):
            a.merge(b)
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def parts(self):
        """(name, Moments or Sketch) of every accumulator, in a fixed order."""
        for o in OUTPUTS:
            yield f"{o}.m", self.moments[o]
            for c, sk in enumerate(self.sketches[o]):
                yield f"{o}.s{c}", sk
        yield "fan.m", self.fan_moments
        for t, sk in enumerate(self.fan):
            yield f"fan.s{t}", sk

    def state(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in self.COUNTS}
        for key, part in self.parts():
            (_moments_state if isinstance(part, Moments) else _sketch_state)(out, key, part)
        return out

    def load(self, d: dict) -> None:
        for name in self.COUNTS:
            setattr(self, name, np.array(d[name]))
        for key, part in self.parts():
            (_moments_load if isinstance(part, Moments) else _sketch_load)(d, key, part)


class Summary:
    """Everything the summary tables need, accumulated chunk by chunk (mergeable).

    Bit for bit the same whatever the chunk size, the shard split or the order in which
    shards merge (on a backend whose paths are: numpy's are the same for any chunk size).
    Floating-point sums depend on their order, so the order is fixed by path index alone:
    - the paths fall in blocks of BLOCK by index, [b BLOCK, (b + 1) BLOCK); a block is
      absorbed into its own Accumulators once all its paths are there, in path order;
    - blocks combine in a fixed binary tree over the block index: node (level, i) is
      node (level - 1, 2i) merged with (level - 1, 2i + 1), made as soon as both exist;
    - reading folds the nodes left, from the right (the tree's root with empty
      right-hand parts passed through), after absorbing the blocks still short.
    A shard whose range starts or ends inside a block keeps that block's paths as they
    are (at most 2 (BLOCK - 1) paths' summarised outputs); merging completes the block.
    Integer counts, minima and maxima do not depend on the order anyway.
    Cost: the tree's merges are about one more pass over each sketch's bins per block
    (+20 % of the host summaries on the example, 1 thread: 0.29 s per 66,000 paths, where
    computing those paths on the CPU took 15 s).
    """

    # Blocks of this many paths: the accumulators cost about 130 numpy calls per block
    # whatever its size, as much as computing 1,000 paths. (Absorbing on a thread while the
    # next chunks compute gained nothing measurable on 2 cores, and raised the peak memory.)
    # The value changes the last bits of the sums: shards merge only with the same.
    BLOCK = 16384
    STATE_FORMAT = 2  # of state(): 2 = blocks in a tree (1 was one running accumulator)
    SUMMARISED = tuple(OUTPUTS) + tuple("cluster_" + o for o in OUTPUTS) + ("cumulative_cf",)

    def __init__(self, n_clusters: int, horizon: int, hurdle: float | None, covenant: float | None,
                 workers: int = 1):
        self.C, self.horizon = n_clusters, horizon
        self.workers = workers  # threads absorbing a block; the results do not depend on it
        self.hurdle, self.covenant = hurdle, covenant
        self.n = 0
        # outputs the model never leaves non-finite: name -> (count, first path index)
        self.unexpected: dict[str, tuple[int, int]] = {}
        self._nodes: dict[tuple[int, int], Accumulators] = {}  # (level, index) -> its blocks
        self._partial: dict[int, list[tuple[int, dict]]] = {}  # block -> [(first path, outputs)]
        self._total: Accumulators | None = None  # every node folded (cached for the readers)

    @staticmethod
    def columns(out: dict, name: str) -> np.ndarray:
        return np.concatenate([out[name][:, None], out["cluster_" + name]], axis=1)

    def _new(self) -> Accumulators:
        return Accumulators(self.C, self.horizon, self.hurdle, self.covenant)

    def add(self, out: dict, start: int = 0) -> None:
        """Take one chunk's outputs (paths start, start + 1, ...). Non-finite values are
        checked at once; each block of paths is absorbed once it is whole."""
        n = out["npv"].shape[0]
        self.n += n
        self._total = None
        for o in OUTPUTS:
            if o not in EXPECTED_NONFINITE:
                bad = ~(np.isfinite(out[o]) & np.isfinite(out["cluster_" + o]).all(axis=1))
                if bad.any():
                    count, first = self.unexpected.get(o, (0, start + int(np.argmax(bad))))
                    self.unexpected[o] = (count + int(bad.sum()), first)
        B = self.BLOCK
        a = start
        while a < start + n:
            b = a // B
            e = min(start + n, (b + 1) * B)
            if a == b * B and e == (b + 1) * B and b not in self._partial:
                self._leaf(b, {k: out[k][a - start:e - start] for k in self.SUMMARISED})
            else:  # held until the block is whole (views of the chunk's arrays, not copies)
                piece = {k: out[k][a - start:e - start] for k in self.SUMMARISED}
                self._partial.setdefault(b, []).append((a, piece))
                self._complete(b)
            a = e

    def _block_outputs(self, b: int) -> tuple[dict, bool]:
        """The paths held for block b, concatenated in path order, and whether they are all
        of the block's paths."""
        pieces = sorted(self._partial[b], key=lambda p: p[0])
        edge = pieces[0][0]
        for a, piece in pieces:
            if a < edge:
                raise ValueError(f"paths {a}.. were added twice (block {b})")
            edge = a + piece["npv"].shape[0]
        joined = {k: np.concatenate([p[k] for _, p in pieces]) for k in self.SUMMARISED}
        whole = pieces[0][0] == b * self.BLOCK and joined["npv"].shape[0] == self.BLOCK \
            and edge == (b + 1) * self.BLOCK
        return joined, whole

    def _complete(self, b: int) -> None:
        if sum(p["npv"].shape[0] for _, p in self._partial[b]) < self.BLOCK:
            return
        out, whole = self._block_outputs(b)
        if whole:
            del self._partial[b]
            self._leaf(b, out)

    def _leaf(self, b: int, out: dict) -> None:
        acc = self._new()
        acc.absorb(out, self.workers)
        self._insert(self._nodes, 0, b, acc, copy=False)

    @staticmethod
    def _insert(nodes: dict, level: int, index: int, acc: Accumulators, copy: bool) -> None:
        """Put a node into the tree, merging it with its sibling while that is there. With
        copy, the nodes already in `nodes` are left unchanged (merged into copies)."""
        while (level, index ^ 1) in nodes:
            sib = nodes.pop((level, index ^ 1))
            left, right = (sib, acc) if index & 1 else (acc, sib)
            if copy:
                left = deepcopy(left)
            left.merge(right)
            acc, level, index = left, level + 1, index >> 1
        if (level, index) in nodes:
            raise ValueError(f"the same paths were added twice (blocks of node {(level, index)})")
        nodes[(level, index)] = acc

    def flush(self) -> None:
        """Kept for callers: blocks are absorbed as soon as they are whole."""

    def merge(self, other: "Summary") -> None:
        """Absorb another summary's paths (other is used up). The result is the same as
        one summary taking every path, bit for bit, whatever the order of the merges."""
        self.n += other.n
        self._total = None
        for (level, index), acc in other._nodes.items():
            self._insert(self._nodes, level, index, acc, copy=False)
        for b, pieces in other._partial.items():
            self._partial.setdefault(b, []).extend(pieces)
            self._complete(b)
        other._nodes, other._partial = {}, {}
        for o, (count, first) in other.unexpected.items():
            c0, f0 = self.unexpected.get(o, (0, first))
            self.unexpected[o] = (c0 + count, min(f0, first))

    def total(self) -> Accumulators:
        """Every path's accumulators: the short blocks absorbed, the tree folded (cached;
        the summary itself is left as it was, so more paths can still be added)."""
        if self._total is None:
            nodes = dict(self._nodes)
            for b in sorted(self._partial):
                acc = self._new()
                acc.absorb(self._block_outputs(b)[0], self.workers)
                self._insert(nodes, 0, b, acc, copy=True)
            order = sorted(nodes, key=lambda k: k[1] << k[0])
            if not order:
                self._total = self._new()
            else:
                acc = nodes[order[-1]]
                for key in reversed(order[:-1]):
                    left = deepcopy(nodes[key])
                    left.merge(acc)
                    acc = left
                self._total = acc
        return self._total

    # the accumulators of every path, for the readers
    moments = property(lambda self: self.total().moments)
    sketches = property(lambda self: self.total().sketches)
    fan = property(lambda self: self.total().fan)
    fan_moments = property(lambda self: self.total().fan_moments)
    npv_negative = property(lambda self: self.total().npv_negative)
    irr_below = property(lambda self: self.total().irr_below)
    irr_finite = property(lambda self: self.total().irr_finite)
    dscr_below = property(lambda self: self.total().dscr_below)
    dscr_finite = property(lambda self: self.total().dscr_finite)

    # --------------------------------------------------- state for shard files
    def state(self) -> dict[str, np.ndarray]:
        """Every number the summary holds, as flat named arrays (a shard file's data): the
        tree's nodes, each accumulator's arrays concatenated over the nodes (with their
        lengths), and the paths of blocks not yet whole."""
        out = {"format": np.array([self.STATE_FORMAT]), "block": np.array([self.BLOCK]),
               "n": np.array([self.n]), "horizon": np.array([self.horizon]),
               "clusters": np.array([self.C])}
        keys = sorted(self._nodes)
        out["nodes"] = np.array(keys, dtype=np.int64).reshape(-1, 2)
        states = [self._nodes[k].state() for k in keys]
        for name in (states[0] if states else {}):
            parts = [np.asarray(s[name]) for s in states]
            out[f"acc.{name}"] = np.concatenate(parts)
            out[f"acc.{name}.len"] = np.array([p.shape[0] for p in parts], dtype=np.int64)
        pieces = [(a, p) for b in sorted(self._partial) for a, p in sorted(self._partial[b], key=lambda x: x[0])]
        out["partial.start"] = np.array([a for a, _ in pieces], dtype=np.int64)
        out["partial.len"] = np.array([p["npv"].shape[0] for _, p in pieces], dtype=np.int64)
        if pieces:
            for k in self.SUMMARISED:
                out[f"partial.{k}"] = np.concatenate([p[k] for _, p in pieces])
        names = sorted(self.unexpected)
        out["unexpected.names"] = np.array(names, dtype="S")
        out["unexpected.values"] = np.array([self.unexpected[k] for k in names], dtype=np.int64).reshape(-1, 2)
        return out

    @classmethod
    def from_state(cls, d: dict, hurdle, covenant) -> "Summary":
        fmt = int(d["format"][0]) if "format" in d else 1
        if fmt != cls.STATE_FORMAT:
            raise ValueError(f"summary state format {fmt}, this version reads {cls.STATE_FORMAT}")
        if int(d["block"][0]) != cls.BLOCK:
            raise ValueError(f"blocks of {int(d['block'][0])} paths, this version sums blocks of {cls.BLOCK}")
        s = cls(int(d["clusters"][0]), int(d["horizon"][0]), hurdle, covenant)
        s.n = int(d["n"][0])
        keys = [tuple(int(x) for x in k) for k in np.asarray(d["nodes"]).reshape(-1, 2)]
        names = [k[4:-4] for k in d if k.startswith("acc.") and k.endswith(".len")]
        edges = {name: np.concatenate([[0], np.cumsum(d[f"acc.{name}.len"])]) for name in names}
        for j, key in enumerate(keys):
            acc = s._new()
            acc.load({name: np.asarray(d[f"acc.{name}"])[edges[name][j]:edges[name][j + 1]]
                      for name in names})
            s._nodes[key] = acc
        at = 0
        for a, n in zip(np.asarray(d["partial.start"]), np.asarray(d["partial.len"])):
            piece = {k: np.array(d[f"partial.{k}"][at:at + n]) for k in cls.SUMMARISED}
            s._partial.setdefault(int(a) // cls.BLOCK, []).append((int(a), piece))
            at += int(n)
        for k, (count, first) in zip(d["unexpected.names"], d["unexpected.values"]):
            s.unexpected[k.decode() if isinstance(k, bytes) else str(k)] = (int(count), int(first))
        return s

    def table(self, o: str) -> np.ndarray:
        """[1 + C, len(STATISTICS)]: the statistics of output o, portfolio first."""
        t = self.total()
        m = t.moments[o]
        rows = []
        for c, sk in enumerate(t.sketches[o]):
            q = [sk.quantile(x) for x in QUANTILES]
            lo, hi = sk.extreme(False), sk.extreme(True)
            total = self.n
            nonfinite = (m.nan[c] + m.inf[c]) / total if total else math.nan
            rows.append([m.mean[c] if m.n[c] else math.nan, m.std[c], m.stderr[c], lo, hi, *q, nonfinite])
        return np.array(rows)

    def risk(self) -> dict:
        """VaR, CVaR (with standard errors), probabilities, tail contributions.

        cvar_<level>_tail_paths: the number of paths k in the tail the CVaR averages. Its
        standard error needs the tail's spread, so k >= 2: with one tail path (fewer than
        100 paths at 99 %) the standard error is NaN, and the table says why.
        """
        t = self.total()
        out: dict = {}
        for level in LEVELS:
            q = 1.0 - level
            tag = f"{round(level * 100)}"
            per = []
            for c, sk in enumerate(t.sketches["npv"]):
                var = -sk.quantile(q)
                cvar, se = cvar_from(sk, q)
                per.append((var, cvar, se))
            arr = np.array(per)
            out[f"var_{tag}"], out[f"cvar_{tag}"], out[f"cvar_{tag}_stderr"] = arr[0]
            out[f"cluster_var_{tag}"], out[f"cluster_cvar_{tag}"] = arr[1:, 0], arr[1:, 1]
            k, s, _, extra = t.sketches["npv"][0].lower_tail(q)
            out[f"cvar_{tag}_tail_paths"] = int(k)
            out[f"tail_contribution_{tag}"] = extra / k if k else extra * math.nan
        n = self.n

        def prob(count, base):
            with np.errstate(invalid="ignore", divide="ignore"):
                p = count / base
                return p, np.sqrt(p * (1 - p) / base)

        p, se = prob(t.npv_negative, n)
        out["prob_npv_negative"], out["prob_npv_negative_stderr"] = p[0], se[0]
        out["cluster_prob_npv_negative"] = p[1:]
        if self.hurdle is not None:
            p, se = prob(t.irr_below, t.irr_finite)
            out["prob_irr_below_hurdle"], out["prob_irr_below_hurdle_stderr"] = p[0], se[0]
            out["cluster_prob_irr_below_hurdle"] = p[1:]
        if self.covenant is not None:
            p, se = prob(t.dscr_below, t.dscr_finite)
            out["prob_dscr_below_covenant"], out["prob_dscr_below_covenant_stderr"] = p[0], se[0]
            out["cluster_prob_dscr_below_covenant"] = p[1:]
        return out

    def fan_table(self) -> np.ndarray:
        """[T + 1, len(FAN_QUANTILES)] quantiles of the cumulative portfolio cash flow."""
        return np.array([[sk.quantile(q) for q in FAN_QUANTILES] for sk in self.total().fan])


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


def pathwise_gradients(run: MonteCarloRun, thresholds: dict, status=None) -> dict:
    """Gradients of mean NPV and of CVaR at each level with respect to every parameter.

    The pathwise method: d E[NPV]/d theta = E[d NPV/d theta] with the draws held fixed
    (common random numbers), and d CVaR_q/d theta = -E[d NPV/d theta | NPV in the tail],
    the tail fixed at the paths the summary's CVaR averages (boundary bin at its
    weight). One reverse pass per chunk of sum_s w_s NPV_s, the weights computed from
    the forward NPVs: a second pass over the paths, after the first found the tails.

    status (a progress.Progress): the pass's own compile and its own count of paths
    (its rate is not the forward pass's), each chunk a boundary where a signal stops it.
    """
    if not run.backend.is_jax:
        raise BackendError(f"Monte Carlo sensitivities need the JAX backend (automatic "
                           f"differentiation); got {run.backend.name}")
    from .jax_adapter import namespace, tail_weighted_gradient

    jnp = namespace()
    pf, mc = run.portfolio, run.scenario
    chunk, N = run.chunk_size, mc.paths
    levels = [lv for lv in LEVELS if thresholds.get(lv) is not None]
    fn = path_outputs_fn(pf, mc, jnp, run.backend.dtype, chunk, ())
    grad = tail_weighted_gradient(lambda base, rate, start: fn(base, rate, start)["npv"], chunk, N)
    base, rate = run._args
    cuts = tuple(jnp.asarray(thresholds[lv]) for lv in levels)
    g_base = {k: np.zeros((1 + len(levels), len(pf.clusters))) for k in PARAM_NAMES}
    g_rate = np.zeros(1 + len(levels))
    weight = np.zeros(1 + len(levels))
    if status is not None:
        from .progress import compile_ahead

        compile_ahead(grad, (base, rate), run.backend, status, "the sensitivities pass",
                      extra=(cuts,))
        status.begin(N, "paths, sensitivities pass")
    for a in range(0, N, chunk):
        (gb, gr), wsum = grad(base, rate, jnp.asarray(a), cuts)
        for k in PARAM_NAMES:
            g_base[k] += np.asarray(gb[k])
        g_rate += np.asarray(gr)
        weight += np.asarray(wsum)
        if status is not None:
            status.advance(min(a + chunk, N) - a)
    stacked = np.stack([g_base[k] for k in PARAM_NAMES], axis=-1)  # [1 + L, C, P]
    out = {"grad_mean_npv": stacked[0] / weight[0],
           "grad_mean_npv_discount_rate": g_rate[0] / weight[0]}
    for i, lv in enumerate(levels, start=1):
        tag = f"{round(lv * 100)}"
        out[f"grad_cvar_{tag}"] = -stacked[i] / weight[i]
        out[f"grad_cvar_{tag}_discount_rate"] = -g_rate[i] / weight[i]
    return out


# ------------------------------------------------------------------- the run


@dataclass(kw_only=True)
class MonteCarloResult(Result):
    """A Monte Carlo run's result: the summaries and, with --sensitivities, the gradients."""

    summary: Summary
    gradients: dict | None
    chunk_size: int


def summary_workers(be: Backend) -> int:
    """Threads for the summaries (Summary.workers): several where the paths are evaluated
    on a GPU, whose host cores are otherwise idle; one on the CPU, where they would take
    cores from XLA's threads (no gain measured on 2 cores: benchmarks/README.md)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1)) if be.is_gpu else 1


def run_montecarlo(pf: Portfolio, mc: MonteCarlo, out: Path, be: Backend, *, chunk_size=None,
                   progress=True, compression="gzip", sensitivities=False,
                   save_paths=False, status=None) -> MonteCarloResult:
    """status: the run's progress.Progress (phases and counts on stderr), or None for one
    of its own (enabled by `progress`). The paths' compile, and with sensitivities the
    gradients' compile, are phases of their own; Ctrl-C stops either at once
    (progress.CompileInterrupted)."""
    from .h5io import provenance
    from .mc_io import MonteCarloWriter
    from .progress import Interrupts, Progress
    from .progress import compile_ahead

    if sensitivities and not be.is_jax:
        raise BackendError(f"sensitivities need the JAX backend (automatic differentiation); got "
                           f"{be.name}. Use --backend jax or auto, with jax installed")
    cfg, sha = config_json(pf, mc)
    t0 = time.perf_counter()
    run = prepare(pf, mc, be, chunk_size)
    attrs = provenance(pf, mc.name, cfg, sha, be.name, be.device, be.dtype, kind="montecarlo",
                       paths=mc.paths, seed=mc.seed)
    summary = Summary(len(pf.clusters), pf.horizon_months, mc.hurdle_irr, mc.covenant_dscr,
                      summary_workers(be))
    bar = status if status is not None else Progress(enabled=progress)
    try:
        # signals held from before the compile until the temporary file is renamed or removed
        with Interrupts() as interrupts:
            compile_ahead(run._fn, run._args, be, bar, "the paths")
            bar.begin(mc.paths, "paths")
            writer = MonteCarloWriter(out, pf, mc, attrs, be.dtype, compression, save_paths)
            with writer:
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
                    gradients = pathwise_gradients(run, cuts, bar)
                bar.phase(f"writing {out}")
                writer.write_summary(summary, gradients)
                path = writer.commit()
    finally:
        if status is None:
            bar.close()
    return MonteCarloResult(path=path, portfolio=pf, scenario=mc, backend=be.describe(), summary=summary,
                            gradients=gradients, seconds=time.perf_counter() - t0, chunk_size=run.chunk_size,
                            config_sha256=sha)
