"""The summaries of Monte Carlo paths: streamed chunk by chunk, merged across shards.

The outputs of a chunk of paths (mc_paths.py) come to the host, where the moments,
quantile sketches and counts (summaries.py) absorb them; nothing holds every path.
Summary fixes the order of the floating-point sums by path index alone, so its results
do not depend on the chunk size, the shard split or the order in which shards merge.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from functools import partial
from typing import Callable

import numpy as np

from .kernels.params import OUTPUTS
from .outputs import EXPECTED_NONFINITE, FAN_QUANTILES, LEVELS, QUANTILES
from .summaries import FAN_ALPHA, Moments, Sketch, cvar_from


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
        columns = {o: Summary.columns(out, o) for o in OUTPUTS}  # [paths, 1 + clusters], once
        jobs = self._jobs(out, columns)
        if workers > 1:
            # numpy's log, bincount and sums release the GIL: the sketches absorb in parallel
            with ThreadPoolExecutor(workers) as pool:
                for f in [pool.submit(job) for job in jobs]:
                    f.result()
        else:
            for job in jobs:
                job()
        self._count(columns)

    def _jobs(self, out: dict, columns: dict) -> list[Callable[[], None]]:
        """One job per moments and sketch, each taking its own columns: independent jobs,
        each run whole by one thread, so the result does not depend on the number of workers.
        The sketches read each column contiguous (a column-major copy: the same values in
        the same order, so the same bits; strided columns took 40 % longer for the fan)."""
        jobs = []
        for o in OUTPUTS:
            x = columns[o]
            jobs.append(partial(self.moments[o].add, x))
            xt = np.asfortranarray(x)
            jobs += [partial(sk.add, xt[:, c], out["cluster_npv"] if sk.n_extra else None)
                     for c, sk in enumerate(self.sketches[o])]
        cum = out["cumulative_cf"]
        jobs.append(partial(self.fan_moments.add, cum))
        cum_t = np.asfortranarray(cum)
        jobs += [partial(sk.add, cum_t[:, t]) for t, sk in enumerate(self.fan)]
        return jobs

    def _count(self, columns: dict) -> None:
        """The counts behind the probabilities (negative NPV, IRR below the hurdle, DSCR
        below the covenant, and the finite IRRs and DSCRs they are shares of), from the
        outputs' columns (Summary.columns)."""
        npv = columns["npv"]
        self.npv_negative += (npv < 0).sum(axis=0)
        irr = columns["irr"]
        self.irr_finite += np.isfinite(irr).sum(axis=0)
        if self.hurdle is not None:
            self.irr_below += (irr < self.hurdle).sum(axis=0)
        dscr = columns["min_dscr"]
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
            (moments_state if isinstance(part, Moments) else sketch_state)(out, key, part)
        return out

    def load(self, d: dict) -> None:
        for name in self.COUNTS:
            setattr(self, name, np.array(d[name]))
        for key, part in self.parts():
            (moments_load if isinstance(part, Moments) else sketch_load)(d, key, part)


class MergeTree:
    """Accumulators of blocks of paths in a fixed binary tree over the block index.

    Node (level, i) holds blocks [i 2^level, (i + 1) 2^level): it is node (level - 1, 2i)
    merged with (level - 1, 2i + 1), made as soon as both exist. Which nodes merge, and
    in which order, depends on the block indices alone, never on the order of insertion.
    """

    def __init__(self, nodes: dict[tuple[int, int], Accumulators] | None = None, shared: bool = False):
        self.nodes = {} if nodes is None else nodes  # (level, index) -> its blocks
        self.shared = shared  # nodes belong to another tree too: merged into copies

    def snapshot(self) -> "MergeTree":
        """A tree with the same nodes, whose inserts leave this tree's nodes unchanged."""
        return MergeTree(dict(self.nodes), shared=True)

    def insert(self, level: int, index: int, acc: Accumulators) -> None:
        """Put a node into the tree, merging it with its sibling while that is there."""
        nodes = self.nodes
        while (level, index ^ 1) in nodes:
            sib = nodes.pop((level, index ^ 1))
            left, right = (sib, acc) if index & 1 else (acc, sib)
            if self.shared:
                left = deepcopy(left)
            left.merge(right)
            acc, level, index = left, level + 1, index >> 1
        if (level, index) in nodes:
            raise ValueError(f"the same paths were added twice (blocks of node {(level, index)})")
        nodes[(level, index)] = acc

    def merge(self, other: "MergeTree") -> None:
        """Insert every node of `other` (whose nodes become this tree's)."""
        for (level, index), acc in other.nodes.items():
            self.insert(level, index, acc)

    def fold(self, empty: Callable[[], Accumulators]) -> Accumulators:
        """Every node merged into one: folded left, from the right (the root with empty
        right-hand parts passed through); empty() where the tree has no node. The nodes
        are left unchanged, except that a lone node is returned itself."""
        order = sorted(self.nodes, key=lambda k: k[1] << k[0])
        if not order:
            return empty()
        acc = self.nodes[order[-1]]
        for key in reversed(order[:-1]):
            left = deepcopy(self.nodes[key])
            left.merge(acc)
            acc = left
        return acc


class HeldBlocks:
    """The paths of the blocks not yet whole, by block: [(first path, outputs)], each piece
    views of a chunk's arrays (or a shard file's), held until the block's paths are all
    there. The block size is the caller's (Summary.BLOCK)."""

    def __init__(self):
        self.pieces: dict[int, list[tuple[int, dict]]] = {}

    def __contains__(self, b: int) -> bool:
        return b in self.pieces

    def blocks(self) -> list[int]:
        return sorted(self.pieces)

    def in_order(self, b: int) -> list[tuple[int, dict]]:
        """Block b's pieces in path order."""
        return sorted(self.pieces[b], key=lambda p: p[0])

    def hold(self, b: int, pieces: list[tuple[int, dict]]) -> None:
        self.pieces.setdefault(b, []).extend(pieces)

    def joined(self, b: int, size: int) -> tuple[dict, bool]:
        """The paths held for block b, concatenated in path order, and whether they are all
        of the block's paths (blocks of `size`)."""
        pieces = self.in_order(b)
        edge = pieces[0][0]
        for a, piece in pieces:
            if a < edge:
                raise ValueError(f"paths {a}.. were added twice (block {b})")
            edge = a + piece["npv"].shape[0]
        joined = {k: np.concatenate([p[k] for _, p in pieces]) for k in Summary.SUMMARISED}
        whole = pieces[0][0] == b * size and joined["npv"].shape[0] == size and edge == (b + 1) * size
        return joined, whole

    def take_if_whole(self, b: int, size: int) -> dict | None:
        """Block b's paths, no longer held, if they are all there; else None."""
        if sum(p["npv"].shape[0] for _, p in self.pieces[b]) < size:
            return None
        out, whole = self.joined(b, size)
        if not whole:
            return None
        del self.pieces[b]
        return out


class Summary:
    """Everything the summary tables need, accumulated chunk by chunk (mergeable).

    Bit for bit the same whatever the chunk size, the shard split or the order in which
    shards merge (on a backend whose paths are: numpy's are the same for any chunk size).
    Floating-point sums depend on their order, so the order is fixed by path index alone:
    - the paths fall in blocks of BLOCK by index, [b BLOCK, (b + 1) BLOCK); a block is
      absorbed into its own Accumulators once all its paths are there, in path order
      (HeldBlocks keeps them until then);
    - blocks combine in a fixed binary tree over the block index (MergeTree);
    - reading folds the nodes left, from the right (the tree's root with empty
      right-hand parts passed through), after absorbing the blocks still short.
    A shard whose range starts or ends inside a block keeps that block's paths as they
    are (at most 2 (BLOCK - 1) paths' summarised outputs); merging completes the block.
    Integer counts, minima and maxima do not depend on the order anyway.
    Cost: the tree's merges are about one more pass over each sketch's bins per block, a
    small share of the host summaries and far less than computing the paths
    (benchmarks/README.md, "Measurements behind design choices in the code").
    """

    # Blocks of this many paths: the accumulators cost about 130 numpy calls per block
    # whatever its size, a fixed cost that a large block makes small against computing its
    # paths. (Absorbing on a thread while the next chunks compute gained nothing measurable,
    # and raised the peak memory; benchmarks/README.md.)
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
        self._tree = MergeTree()  # the blocks absorbed
        self._held = HeldBlocks()  # the paths of blocks not yet whole
        self._total: Accumulators | None = None  # every node folded (cached for the readers)

    @staticmethod
    def columns(out: dict, name: str) -> np.ndarray:
        return np.concatenate([out[name][:, None], out["cluster_" + name]], axis=1)

    def _new(self) -> Accumulators:
        return Accumulators(self.C, self.horizon, self.hurdle, self.covenant)

    # ------------------------------------------------------------ taking paths
    def add(self, out: dict, start: int = 0) -> None:
        """Take one chunk's outputs (paths start, start + 1, ...). Non-finite values are
        checked at once; each block of paths is absorbed once it is whole."""
        n = out["npv"].shape[0]
        self.n += n
        self._total = None
        self._note_unexpected(out, start)
        B = self.BLOCK
        a = start
        while a < start + n:
            b = a // B
            e = min(start + n, (b + 1) * B)
            piece = {k: out[k][a - start:e - start] for k in self.SUMMARISED}
            if a == b * B and e == (b + 1) * B and b not in self._held:
                self._leaf(b, piece)
            else:  # held until the block is whole (views of the chunk's arrays, not copies)
                self._held.hold(b, [(a, piece)])
                self._complete(b)
            a = e

    def _note_unexpected(self, out: dict, start: int) -> None:
        """Count the non-finite values of outputs the model never leaves non-finite."""
        for o in OUTPUTS:
            if o not in EXPECTED_NONFINITE:
                bad = ~(np.isfinite(out[o]) & np.isfinite(out["cluster_" + o]).all(axis=1))
                if bad.any():
                    count, first = self.unexpected.get(o, (0, start + int(np.argmax(bad))))
                    self.unexpected[o] = (count + int(bad.sum()), first)

    def _complete(self, b: int) -> None:
        """Absorb held block b if its paths are all there."""
        out = self._held.take_if_whole(b, self.BLOCK)
        if out is not None:
            self._leaf(b, out)

    def _absorbed(self, out: dict) -> Accumulators:
        acc = self._new()
        acc.absorb(out, self.workers)
        return acc

    def _leaf(self, b: int, out: dict) -> None:
        self._tree.insert(0, b, self._absorbed(out))

    def merge(self, other: "Summary") -> None:
        """Absorb another summary's paths (other is used up). The result is the same as
        one summary taking every path, bit for bit, whatever the order of the merges."""
        self.n += other.n
        self._total = None
        self._tree.merge(other._tree)
        for b, pieces in other._held.pieces.items():
            self._held.hold(b, pieces)
            self._complete(b)
        other._tree, other._held = MergeTree(), HeldBlocks()
        for o, (count, first) in other.unexpected.items():
            c0, f0 = self.unexpected.get(o, (0, first))
            self.unexpected[o] = (c0 + count, min(f0, first))

    # ---------------------------------------------------------------- reading
    def total(self) -> Accumulators:
        """Every path's accumulators: the short blocks absorbed, the tree folded (cached;
        the summary itself is left as it was, so more paths can still be added)."""
        if self._total is None:
            tree = self._tree.snapshot()
            for b in self._held.blocks():
                tree.insert(0, b, self._absorbed(self._held.joined(b, self.BLOCK)[0]))
            self._total = tree.fold(self._new)
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
        out: dict = {}
        for level in LEVELS:
            out.update(self._tail(level))
        out.update(self._probabilities())
        return out

    def _tail(self, level: float) -> dict:
        """VaR and CVaR at `level`, portfolio and clusters, and the clusters' tail contributions."""
        t = self.total()
        out: dict = {}
        q = 1.0 - level
        tag = f"{round(level * 100)}"
        per = []
        for sk in t.sketches["npv"]:
            var = -sk.quantile(q)
            cvar, se = cvar_from(sk, q)
            per.append((var, cvar, se))
        arr = np.array(per)
        out[f"var_{tag}"], out[f"cvar_{tag}"], out[f"cvar_{tag}_stderr"] = arr[0]
        out[f"cluster_var_{tag}"], out[f"cluster_cvar_{tag}"] = arr[1:, 0], arr[1:, 1]
        k, _, _, extra = t.sketches["npv"][0].lower_tail(q)
        out[f"cvar_{tag}_tail_paths"] = int(k)
        out[f"tail_contribution_{tag}"] = extra / k if k else extra * math.nan
        return out

    def _probabilities(self) -> dict:
        """P(NPV < 0), and with a hurdle or covenant P(IRR below it) or P(min DSCR below it)
        among the paths where it is finite; each with its binomial standard error."""
        t = self.total()
        out: dict = {}

        def prob(count, base):
            with np.errstate(invalid="ignore", divide="ignore"):
                p = count / base
                return p, np.sqrt(p * (1 - p) / base)

        p, se = prob(t.npv_negative, self.n)
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

    # --------------------------------------------------- state for shard files
    def state(self) -> dict[str, np.ndarray]:
        """Every number the summary holds, as flat named arrays (a shard file's data): the
        tree's nodes, each accumulator's arrays concatenated over the nodes (with their
        lengths), and the paths of blocks not yet whole."""
        out = {"format": np.array([self.STATE_FORMAT]), "block": np.array([self.BLOCK]),
               "n": np.array([self.n]), "horizon": np.array([self.horizon]),
               "clusters": np.array([self.C])}
        self._tree_state(out)
        self._held_state(out)
        names = sorted(self.unexpected)
        out["unexpected.names"] = np.array(names, dtype="S")
        out["unexpected.values"] = np.array([self.unexpected[k] for k in names], dtype=np.int64).reshape(-1, 2)
        return out

    def _tree_state(self, out: dict) -> None:
        nodes = self._tree.nodes
        keys = sorted(nodes)
        out["nodes"] = np.array(keys, dtype=np.int64).reshape(-1, 2)
        states = [nodes[k].state() for k in keys]
        for name in (states[0] if states else {}):
            parts = [np.asarray(s[name]) for s in states]
            out[f"acc.{name}"] = np.concatenate(parts)
            out[f"acc.{name}.len"] = np.array([p.shape[0] for p in parts], dtype=np.int64)

    def _held_state(self, out: dict) -> None:
        pieces = [piece for b in self._held.blocks() for piece in self._held.in_order(b)]
        out["partial.start"] = np.array([a for a, _ in pieces], dtype=np.int64)
        out["partial.len"] = np.array([p["npv"].shape[0] for _, p in pieces], dtype=np.int64)
        if pieces:
            for k in self.SUMMARISED:
                out[f"partial.{k}"] = np.concatenate([p[k] for _, p in pieces])

    @classmethod
    def from_state(cls, d: dict, hurdle, covenant) -> "Summary":
        fmt = int(d["format"][0]) if "format" in d else 1
        if fmt != cls.STATE_FORMAT:
            raise ValueError(f"summary state format {fmt}, this version reads {cls.STATE_FORMAT}")
        if int(d["block"][0]) != cls.BLOCK:
            raise ValueError(f"blocks of {int(d['block'][0])} paths, this version sums blocks of {cls.BLOCK}")
        s = cls(int(d["clusters"][0]), int(d["horizon"][0]), hurdle, covenant)
        s.n = int(d["n"][0])
        s._load_tree(d)
        s._load_held(d)
        for k, (count, first) in zip(d["unexpected.names"], d["unexpected.values"]):
            s.unexpected[k.decode() if isinstance(k, bytes) else str(k)] = (int(count), int(first))
        return s

    def _load_tree(self, d: dict) -> None:
        keys = [tuple(int(x) for x in k) for k in np.asarray(d["nodes"]).reshape(-1, 2)]
        names = [k[4:-4] for k in d if k.startswith("acc.") and k.endswith(".len")]
        edges = {name: np.concatenate([[0], np.cumsum(d[f"acc.{name}.len"])]) for name in names}
        for j, key in enumerate(keys):
            acc = self._new()
            acc.load({name: np.asarray(d[f"acc.{name}"])[edges[name][j]:edges[name][j + 1]]
                      for name in names})
            self._tree.nodes[key] = acc

    def _load_held(self, d: dict) -> None:
        at = 0
        for a, n in zip(np.asarray(d["partial.start"]), np.asarray(d["partial.len"])):
            piece = {k: np.array(d[f"partial.{k}"][at:at + n]) for k in self.SUMMARISED}
            self._held.hold(int(a) // self.BLOCK, [(int(a), piece)])
            at += int(n)


def moments_state(out: dict, key: str, m: Moments) -> None:
    """Moments' arrays into `out`, under `key`.<field> (a shard file's data)."""
    for f in ("n", "mean", "m2", "nan", "inf"):
        out[f"{key}.{f}"] = getattr(m, f)


def moments_load(d: dict, key: str, m: Moments) -> None:
    """Moments' arrays from `d`, as moments_state wrote them."""
    for f in ("n", "mean", "m2", "nan", "inf"):
        setattr(m, f, np.array(d[f"{key}.{f}"]))


def sketch_state(out: dict, key: str, sk: Sketch) -> None:
    """A sketch's bins and counts into `out`, under `key`.<field> (a shard file's data)."""
    out[f"{key}.meta"] = np.array([sk.lo, sk.nan, sk.neg_inf, sk.pos_inf], dtype=np.int64)
    for f in ("counts", "sums", "sqs", "extra", "mins", "maxs"):
        out[f"{key}.{f}"] = getattr(sk, f)


def sketch_load(d: dict, key: str, sk: Sketch) -> None:
    """A sketch's bins and counts from `d`, as sketch_state wrote them."""
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
