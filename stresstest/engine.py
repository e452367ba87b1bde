"""The stress-grid engine: chunked evaluation of a grid on a backend.

The grid is never materialised: a chunk is a range [start, start+n) of flat C-order
indices, and its shocked parameters are built on the device from the indices. Every
chunk has the same shape (the last is padded and trimmed), so JAX compiles once.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .backends import Backend, BackendError
from .config import Portfolio
from .factoring import Factoring
from .factoring import plan as plan_factoring
from .grid_config import Scenario
from .items import KINDS, Items, slots
from .kernels.factored import evaluate_corners, slab_corners
from .kernels.metrics import evaluate
from .kernels.params import ITEM_NAMES, OUTPUTS, PARAM_NAMES
from .kernels.sensitivity import DIFFERENTIABLE_SCALARS, ItemColumns, by_item, item_columns, parameter_names
from .kernels.shocks import apply_axis_values, shocked_params
from .outputs import (EXPECTED_NONFINITE, EXPECTED_WHERE_NEVER, PER_PARAMETER, SUMMARY_OUTPUTS, expected_reason,
                      output_name)

# Bytes of working memory per scenario-cluster-month, measured roughly (about 60
# float64 temporaries live at once, more in the IRR solve); sets the default chunk.
_BYTES_PER_SCM = 8 * 80
# CPU: about the size of the caches' reach; chunks twice as large ran much slower
# (benchmarks/README.md, "Measurements behind design choices in the code")
_DEFAULT_BUDGET = 128 * 2**20
GPU_BUDGET = 4 * 2**30  # GPU: large chunks keep thousands of cores busy (where its memory is unknown)
# GPU chunks of a grid fill a share of the device's memory, so that each chunk's fixed
# costs (its launch, the copy of each output back, the conditionals' predicates; on CuPy
# a kernel per array operation, hundreds a chunk: benchmarks/op_count.py) spread over
# many points: an eighth of the device's memory, at most half of what is free.
_GPU_SHARE = 8
_GPU_MAX_POINTS = 2**20
# A grid point's working memory on a GPU, in units of gpu_unit_per_point (the estimate
# of XLA's CPU scratch for the first IRR solve). CuPy runs each operation as it comes:
# its live arrays, measured with tracemalloc on numpy running CuPy's forms of the same
# operations, were 1.2-4.3 times that unit on 7 portfolios of 1-8 clusters and 12-600
# months (tests check 3).
# JAX: XLA's buffers on a GPU, not yet measured there; taken as 4 units.
GPU_FOOTPRINT = {"cupy": 5, "jax": 4}
# CPU: XLA's scratch buffer for a chunk stays within this. Above 32 MiB (glibc's largest
# mmap threshold) the runtime maps it afresh on every call and each of its pages faults
# once, and chunks past it ran much slower than half as many points (benchmarks/README.md,
# "Measurements behind design choices in the code"). A slab of two chunks stays near 28 MiB.
_CPU_SCRATCH = 12 * 2**20
# JAX on the CPU: a chunk's program evaluates up to this many pieces of the size above
# one after another (jax_adapter.in_pieces): each call's fixed costs (its launch, the
# hand-off between threads, the copy to the host) spread over more points while XLA's
# scratch stays a piece's. W1's pass took 23 % less time in chunks of 8 pieces of 462
# points than in chunks of 462, and W4 15 % less in 8 pieces of 256 paths
# (benchmarks/README.md, "Measurements behind design choices in the code").
CPU_PIECES = 8


def cpu_pieces(backend: Backend, total: int, piece: int) -> int:
    """Pieces a chunk holds (CPU_PIECES): several for JAX on the CPU, as many as `total`
    rows fill; one elsewhere (numpy and CuPy run each operation as it comes, and a GPU's
    chunks are large already)."""
    if not backend.is_jax or backend.is_gpu:
        return 1
    return max(1, min(CPU_PIECES, total // max(1, piece)))


def equity_clusters(portfolio: Portfolio, scenario=None) -> tuple[int, ...]:
    """Clusters that can carry debt at some grid point, Monte Carlo path or named set: debt
    in the portfolio, or a grid axis (a Scenario's axes), a path event (a MonteCarlo's
    events) or a set's shock (a NamedScenario's sets) that moves their debt_fraction. The
    others' equity IRR is NaN unsolved, and their debt service cover NaN uncomputed
    (metrics.evaluate's debt_clusters)."""
    names = portfolio.cluster_names
    masks = [a.spec.cluster_mask for a in getattr(scenario, "axes", ()) if "debt_fraction" in a.spec.targets]
    masks += [e.mask for e in getattr(scenario, "events", ()) if e.param == "debt_fraction"]
    masks += [None if sh.clusters is None else tuple(n in sh.clusters for n in names)
              for s in getattr(scenario, "sets", ()) for sh in s.shocks if "debt_fraction" in sh.targets]
    return tuple(i for i, c in enumerate(portfolio.clusters)
                 if c["debt_fraction"] > 0 or any(m is None or m[i] for m in masks))


def irr_rows(portfolio: Portfolio, scenario: Scenario | None = None) -> int:
    """IRR rows a grid point solves: every cluster, the portfolio and, with debt, the
    equity flows of each cluster that carries debt at some grid point (equity_clusters)
    and the portfolio's."""
    debt = len(equity_clusters(portfolio, scenario))
    return len(portfolio.clusters) + 1 + debt + (1 if debt else 0)


def scratch_per_point(portfolio: Portfolio, scenario: Scenario | None = None) -> int:
    """XLA's CPU scratch per grid point (bytes), estimated: 21 bytes per IRR row and
    month plus 250 per row (the IRR ladder's 28 columns and the solve's temporaries).
    Measured per row at 12/36/60 months: 600/1,192/1,768 on plain chunks, 442-555 /
    897-1,144 / 1,281-1,705 on factored slabs; the fit is within 25 % of both (a test
    compiles such chunks and checks it)."""
    return irr_rows(portfolio, scenario) * (21 * (portfolio.horizon_months + 1) + 250)


def gpu_unit_per_point(portfolio: Portfolio, scenario: Scenario | None = None) -> int:
    """The unit GPU_FOOTPRINT counts a grid point's GPU memory in (bytes): 8 per IRR row
    and month plus 1,640 per row. It was the CPU scratch estimate of the first IRR solve,
    and CuPy's live arrays were measured against it; the CPU estimate has since been
    refitted to the smaller solve (scratch_per_point), this unit has not."""
    return irr_rows(portfolio, scenario) * (8 * (portfolio.horizon_months + 1) + 1640)


def default_chunk_size(portfolio: Portfolio, total: int, budget: int = _DEFAULT_BUDGET,
                       scratch: int | None = None, scenario: Scenario | None = None) -> int:
    """Scenarios per chunk: a power of two within the memory budget and, where `scratch`
    is given (the CPU), within that much of XLA's scratch (scratch_per_point for the
    scenario's grid, whose axes may give debt to clusters that have none)."""
    per_scenario = len(portfolio.clusters) * (portfolio.horizon_months + 1) * _BYTES_PER_SCM
    n = max(1, budget // per_scenario)
    if scratch is not None:
        n = max(1, min(n, scratch // scratch_per_point(portfolio, scenario)))
    return _power_of_two(n, total)


def _power_of_two(n: int, total: int) -> int:
    """The largest power of two <= n, at most total (and at least 1)."""
    return int(max(1, min(1 << (max(1, int(n)).bit_length() - 1), total)))


def gpu_chunk_size(portfolio: Portfolio, total: int, backend: Backend, scenario: Scenario | None = None) -> int:
    """Grid points per chunk on a GPU: a power of two whose working memory
    (GPU_FOOTPRINT x gpu_unit_per_point a point) fits in an eighth of the device's memory
    and half of its free memory; the fixed 4 GiB budget where the device does not say."""
    mem = backend.memory()
    if mem is None:
        return default_chunk_size(portfolio, total, GPU_BUDGET)
    free, size = mem
    budget = min(size // _GPU_SHARE, free // 2)
    per_point = GPU_FOOTPRINT.get(backend.name, max(GPU_FOOTPRINT.values())) * gpu_unit_per_point(
        portfolio, scenario)
    return _power_of_two(min(_GPU_MAX_POINTS, budget // per_point), total)


# Outputs a chunk function may leave out where they are another output: a chunk's
# program returns each array once (an output returned twice is a copy in XLA) and the
# host names it twice. Without a platform a cluster's own NPV moves with its parameters
# as the portfolio's does, so their gradients are one array (jax_adapter.sensitivity_chunk_fn).
SAME_AS = {"grad_cluster_npv": "grad_npv"}


@dataclass
class Chunk:
    start: int
    stop: int
    outputs: dict[str, np.ndarray]


@dataclass
class GridRun:
    """A prepared grid evaluation: the compiled chunk function and its inputs on the device."""

    portfolio: Portfolio
    scenario: Scenario
    backend: Backend
    chunk_size: int
    equity: tuple[int, ...]  # clusters whose equity IRR is solved
    factoring: Factoring | None = None  # axes interpolated between end points (factoring.py)
    _fn: Callable = field(repr=False, default=None)
    _args: tuple = field(repr=False, default=())
    piece: int = 0  # rows the chunk's program evaluates at a time (0: the whole chunk; CPU_PIECES)
    workers: int = 1  # chunks computing at once (chunk_workers; sensitivity_workers)

    @property
    def piece_size(self) -> int:
        """Rows evaluated at a time inside a chunk: the unit of XLA's scratch."""
        return self.piece or self.chunk_size

    @property
    def total(self) -> int:
        return self.scenario.size

    @property
    def n_chunks(self) -> int:
        return -(-self.total // self.chunk_size)

    def devices(self) -> list:
        """The devices this run can use at once: every local GPU (or forced CPU device)
        under JAX, else one."""
        if not self.backend.is_jax:
            return [None]
        from .jax_adapter import local_devices

        return local_devices(self.backend.is_gpu) or [None]

    def chunks(self, first: int = 0, last: int | None = None, device=None,
               pause: Callable[[], bool] | None = None) -> Iterator[Chunk]:
        """The chunks of the flat range [first, last) (default: the whole grid), on `device`
        (JAX: the inputs are committed there, so the compiled function runs there).
        pause: see `pipelined`."""
        b = self.backend
        last = self.total if last is None else last
        args = self._args
        if device is not None:
            from .jax_adapter import place

            args = place(args, device)
        yield from pipelined(self._fn, args, b, first, last, self.chunk_size,
                             aligned=self.factoring is not None, pause=pause, workers=self.workers)


def chunk_workers(backend: Backend) -> int:
    """Threads that launch a run's chunks (pipelined): two for JAX on the CPU, one
    elsewhere. XLA's CPU runtime runs the chunks launched from one thread one after
    another, each program's operations mostly one at a time; chunks launched from two
    threads run at once, and took 26 % less time for W4's paths and 13 % for W1 on the
    2-core VM (benchmarks/README.md, "Measurements behind design choices in the code").
    The numbers do not change: each chunk is the same program on its own inputs."""
    return min(2, os.cpu_count() or 1) if backend.is_jax and not backend.is_gpu else 1


def sensitivity_workers(backend: Backend) -> int:
    """Chunks of a sensitivity run computing at once: twice chunk_workers where that is
    more than one (JAX on the CPU). The reverse passes' program has stretches of small
    operations one after another (its loops, its stages), in which a chunk leaves a core
    idle; four chunks at once on the 2-core VM kept both busier than two: W3 0.392 ->
    0.369 s, CPU time 0.740 -> 0.727 s, the forward grids unchanged (benchmarks/README.md,
    "Measurements behind design choices in the code"). The numbers do not change."""
    n = chunk_workers(backend)
    return 2 * n if n > 1 else n


def pipelined(fn, args, backend: Backend, first: int, last: int, size: int,
              aligned: bool = False, pause: Callable[[], bool] | None = None, workers: int = 1,
              ahead: int = 1) -> Iterator[Chunk]:
    """Chunks of fn(*args, start) over [first, last), in order, one computing ahead of the
    one handed out (workers > 1: that many computing at once, each launched and copied to
    the host by a thread of its own, chunk_workers; and up to `ahead` computed ahead).

    aligned=True: fn only starts at multiples of `size` (whole slabs of a factored
    grid), so a range that starts elsewhere begins with the rest of its chunk.

    JAX and CuPy return before the device has finished: the next chunk is launched
    before the current one is copied to the host, so the device keeps computing while
    the caller summarises and writes (and while a writer thread holds the GIL).

    pause: asked before each launch; when it says True, the chunks computing are handed
    out first and the next is launched only when the caller asks for more, so that
    nothing computes while the caller works on the last of them (a CPU run's
    compression, which would otherwise take cores from the computation).
    """
    starts = range((first // size) * size, last, size) if aligned else range(first, last, size)
    spans = ((at, max(at, first), min(at + size, last)) for at in starts)
    if workers > 1:
        yield from _in_workers(fn, args, backend, spans, pause, workers, max(workers, ahead))
        return
    ahead = None
    for at, start, stop in spans:
        if ahead is not None and pause is not None and pause():
            yield _to_host(backend, *ahead)
            ahead = None
        # overflow to inf or NaN is reported per grid point (Extremes), not warned
        with np.errstate(all="ignore"):
            out = fn(*args, backend.xp.asarray(at))
        if ahead is not None:
            yield _to_host(backend, *ahead)
        ahead = (start, stop, start - at, out)
    if ahead is not None:
        yield _to_host(backend, *ahead)


def _to_host(backend: Backend, start: int, stop: int, offset: int, out: dict) -> Chunk:
    rows = slice(offset, offset + stop - start)
    host = {name: backend.to_numpy(v)[rows] for name, v in out.items()}
    for name, same in SAME_AS.items():
        if name not in host and same in host:
            host[name] = host[same]
    return Chunk(start, stop, host)


def _in_workers(fn, args, backend: Backend, spans: Iterator, pause, workers: int, ahead: int) -> Iterator[Chunk]:
    """pipelined's chunks with `workers` threads, each launching a chunk and copying it
    to the host, handed out in order; up to `ahead` are computed (or computing) beyond
    the one the caller holds."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    def compute(at: int, start: int, stop: int) -> Chunk:
        with np.errstate(all="ignore"):
            out = fn(*args, backend.xp.asarray(at))
        return _to_host(backend, start, stop, start - at, out)

    with ThreadPoolExecutor(workers, thread_name_prefix="stresstest-chunks") as pool:
        computing: deque = deque()

        def launch(n: int) -> None:
            for span in itertools.islice(spans, n):
                computing.append(pool.submit(compute, *span))

        launch(ahead)
        while computing:
            if pause is not None and pause():  # the chunks computing first, then more when asked
                while computing:
                    yield computing.popleft().result()
                launch(ahead)
                continue
            chunk = computing.popleft().result()
            launch(1)
            yield chunk


def max_slab(portfolio: Portfolio, scenario: Scenario | None = None) -> int:
    """Largest slab a factored grid is cut into (points): two CPU chunks' worth, so that
    a CPU chunk of one slab keeps its scratch under glibc's 32 MiB mmap ceiling: slabs
    within it made W2's grid faster than evaluating every point, a slab past it ran
    slower than the smaller chunks (benchmarks/README.md, "Measurements behind design
    choices in the code"). It depends on the portfolio and the grid alone, so every
    backend and device factors a grid alike."""
    return 2 * default_chunk_size(portfolio, 2**62, scratch=_CPU_SCRATCH, scenario=scenario)


def prepare(portfolio: Portfolio, scenario: Scenario, backend: Backend, chunk_size: int | None = None,
            sensitivities: bool = False, factor: bool = True, slab_limit: int | None = None) -> GridRun:
    """Compile (JAX) the chunk function of a grid; sensitivities=True adds the gradients.

    factor=True interpolates the axes in which the flows are affine (factoring.py);
    its chunks then hold whole slabs (the chunk size is rounded to a multiple of one).
    factor=False evaluates every grid point in full (the plain baseline).
    """
    total = scenario.size
    if chunk_size is None:
        if backend.is_gpu and not sensitivities:
            chunk = gpu_chunk_size(portfolio, total, backend, scenario)
        elif backend.is_gpu:  # the reverse passes' memory: the fixed budget
            chunk = default_chunk_size(portfolio, total, GPU_BUDGET)
        else:
            chunk = default_chunk_size(portfolio, total, _DEFAULT_BUDGET, _CPU_SCRATCH, scenario)
    else:
        chunk = int(min(chunk_size, total))
    if chunk < 1:
        raise ValueError("chunk size must be at least 1")
    limit = max_slab(portfolio, scenario) if slab_limit is None else slab_limit
    fact = plan_factoring(portfolio, scenario, limit) if factor else None
    if fact is not None:
        chunk = max(1, chunk // fact.slab) * fact.slab
    xp = backend.xp
    dtype = backend.dtype
    horizon = portfolio.horizon_months
    specs = tuple(a.spec for a in scenario.axes)
    equity = equity_clusters(portfolio, scenario)

    base = {k: backend.asarray(v.astype(dtype)) for k, v in portfolio.base_arrays().items()}
    rate = backend.asarray(np.asarray(portfolio.discount_rate, dtype=dtype))
    values = tuple(backend.asarray(a.values.astype(dtype)) for a in scenario.axes)

    def chunk_fn(base, rate, values, start):
        flat = start + xp.arange(chunk, dtype=xp.int64)
        params, r = shocked_params(base, rate, specs, values, flat)
        return evaluate(params, r, horizon, equity_clusters=equity, debt_clusters=equity)

    # the sensitivities' reverse passes keep their chunks: in pieces they ran 7 % slower
    pieces = cpu_pieces(backend, total, chunk) if chunk_size is None and not sensitivities else 1
    run = GridRun(portfolio, scenario, backend, chunk * pieces, equity, fact, piece=chunk,
                  workers=sensitivity_workers(backend) if sensitivities else chunk_workers(backend))
    if sensitivities and not backend.is_jax:
        raise BackendError(
            f"sensitivities need the JAX backend (automatic differentiation); got {backend.name}. "
            "Use --backend jax or auto, with jax installed")
    if fact is not None:
        run._fn, run._args = _factored(portfolio, scenario, backend, chunk, equity, fact, sensitivities,
                                       (base, rate, values), pieces)
        return run
    if sensitivities:
        from .jax_adapter import sensitivity_chunk_fn

        run._fn = sensitivity_chunk_fn(horizon, specs, equity, chunk, len(portfolio.clusters),
                                       items=sensitivity_items(portfolio))
    else:
        run._fn = backend.compile(chunk_in_pieces(chunk_fn, pieces, chunk), chunk_workers(backend) > 1)
    run._args = (base, rate, values)
    return run


def chunk_in_pieces(fn: Callable, pieces: int, piece: int) -> Callable:
    """fn of `piece` rows as a function of pieces * piece rows (jax_adapter.in_pieces;
    fn itself for one piece, on any backend)."""
    if pieces == 1:
        return fn
    from .jax_adapter import in_pieces

    return in_pieces(fn, pieces, piece)


def _factored(portfolio: Portfolio, scenario: Scenario, backend: Backend, chunk: int,
              equity: tuple[int, ...], fact: Factoring, sensitivities: bool, inputs: tuple, pieces: int = 1):
    """The chunk function of a factored grid and its arguments (inputs = base, rate,
    values on the backend; then corner values, weights): a piece is `chunk // slab`
    whole slabs, starting at a multiple of the slab, and a chunk `pieces` pieces."""
    dtype = backend.dtype
    horizon = portfolio.horizon_months
    specs = tuple(a.spec for a in scenario.axes)
    lead = chunk // fact.slab
    # the corner rows of one slab: C order over the slab's axes, interpolated ones at their ends
    grids = np.meshgrid(*fact.reduced_values(scenario), indexing="ij")
    corner_values = tuple(backend.asarray(g.reshape(-1).astype(dtype)) for g in grids)
    weights = tuple((backend.asarray(w0.astype(dtype)), backend.asarray(w1.astype(dtype)))
                    for w0, w1 in fact.weights)
    args = (*inputs, corner_values, weights)
    if sensitivities:
        from .jax_adapter import sensitivity_chunk_fn

        return sensitivity_chunk_fn(horizon, specs, equity, chunk, len(portfolio.clusters),
                                    factoring=fact, items=sensitivity_items(portfolio)), args

    def chunk_fn(base, rate, values, corner_values, weights, start):
        point, axes = slab_corners(values, corner_values, weights, start, lead, fact)
        params, r = apply_axis_values(base, rate, specs, point)
        return evaluate_corners(params, r, horizon, equity, lead, fact.shape, axes, debt=equity)

    return backend.compile(chunk_in_pieces(chunk_fn, pieces, chunk), chunk_workers(backend) > 1), args


def evaluate_base(portfolio: Portfolio, dtype=np.float64) -> dict[str, np.ndarray]:
    """The base case: every parameter as in the portfolio file, no shock.

    One scenario: numpy evaluates it at once, where a jit would cost a compile. It goes
    through the shocks with no axis all the same: where the portfolio carries items
    (version 2), that is where a cluster without contracts or segments of its own gets
    its implied ones from its version 1 keys (kernels.shocks.apply_axis_values).
    """
    from .backends import make_backend

    backend = make_backend("numpy", np.dtype(dtype).name)
    base = {k: backend.asarray(v.astype(backend.dtype)) for k, v in portfolio.base_arrays().items()}
    with np.errstate(all="ignore"):
        params, rate = apply_axis_values(base, backend.asarray(np.asarray(portfolio.discount_rate,
                                                                          dtype=backend.dtype)), (), ())
        out = evaluate(params, rate, portfolio.horizon_months, equity_clusters=equity_clusters(portfolio))
    return {k: backend.to_numpy(v)[0] for k, v in out.items()}


# ------------------------------------------------------------------ the sensitivities' parameters

def _slot_names(items: Items, kind: str) -> list[str | None]:
    """A cluster's item names of a kind in slot order; [None] for an implied segment,
    which has no name (only `segments.*` reaches it)."""
    if kind == "segments" and items.of(kind) is None:
        return [None]
    return items.names(kind)


def sensitivity_items(portfolio: Portfolio) -> ItemColumns | None:
    """The version 2 part of the sensitivities' parameter coordinate (kernels/sensitivity.py
    ItemColumns: the items, then the version 2 scalars of the groups in use but the whole
    months, an optimization field present where the cluster runs a programme), or None
    where the kernels carry no item arrays (version 1)."""
    if not portfolio.itemised:
        return None
    arrays = portfolio.base_arrays()
    scalars = {n: tuple(not n.startswith("optimization.") or s.programme for s in portfolio.scalars)
               for n in DIFFERENTIABLE_SCALARS if n in arrays}
    return item_columns([{kind: _slot_names(it, kind) for kind in KINDS} for it in portfolio.items],
                        slots(portfolio.items), scalars)


def sensitivity_parameters(portfolio: Portfolio) -> list[str]:
    """The `parameter` coordinate of the sensitivities (docs/model.md, "Sensitivities"):
    the cluster parameters, then, where the portfolio carries items, the items' fields
    by name (contracts.anchor.price, ..., segments.*.utilization), then its version 2
    scalars (capex_decline, optimization.energy_saving, platform.take_rate, ...)."""
    return list(parameter_names(sensitivity_items(portfolio)))


# ------------------------------------------------------------------ summaries

# never_parameters' cells: the parameter is never (+inf); the cluster has no such item
# (or no optimization programme)
NEVER, ABSENT = 1, 2


def never_parameters(portfolio: Portfolio, scenario: Scenario) -> np.ndarray:
    """[cluster, parameter] (sensitivity_parameters) NEVER where a parameter is never
    (+inf) at every grid point (for a "*" item column: some item's), ABSENT where the
    cluster has no item of that name, or no programme for an optimization field, 0
    elsewhere.

    The same at every point: a scale or shift of never is still never, and a set axis
    (finite values only: the loader refuses others) makes it finite on every value of the
    axis for the clusters it moves. So one point, the first, says it for all."""
    base = {k: v.astype(np.float64) for k, v in portfolio.base_arrays().items()}
    values = tuple(np.asarray(a.values, dtype=np.float64) for a in scenario.axes)
    specs = tuple(a.spec for a in scenario.axes)
    with np.errstate(all="ignore"):
        params, _ = shocked_params(base, np.asarray(portfolio.discount_rate, dtype=np.float64), specs,
                                   values, np.zeros(1, dtype=np.int64))
    first = {k: v[0] for k, v in params.items()}
    never = np.stack([np.isposinf(np.broadcast_to(first[k], (len(portfolio.clusters),)))
                      for k in PARAM_NAMES], axis=-1)
    cells = np.where(never, NEVER, 0).astype(np.int8)
    items = sensitivity_items(portfolio)
    if items is None:
        return cells
    inf = by_item(np, {k: np.isposinf(first[k]).astype(np.float64) for k in ITEM_NAMES}, items)
    item_cells = np.where(np.isnan(inf), ABSENT, np.where(inf > 0, NEVER, 0)).astype(np.int8)
    scalar_cells = np.where(np.asarray(items.scalar_present, dtype=bool), 0, ABSENT).astype(np.int8)
    return np.concatenate([cells, item_cells, scalar_cells.reshape(len(portfolio.clusters), -1)], axis=-1)


@dataclass
class Extremes:
    """Worst and best grid points of the summary outputs, and non-finite counts.

    nonfinite: every non-finite value per output, (count, first flat index);
    unexpected: those no reason covers (EXPECTED_NONFINITE for a whole output,
    EXPECTED_WHERE_NEVER for the cells of parameters that are never,
    EXPECTED_WHERE_ABSENT for those of items a cluster lacks), likewise.
    never: [cluster, parameter] cells of parameters that are never or absent
    (never_parameters; True counts as NEVER); without it no cell of a per-parameter
    output is expected to be non-finite."""

    worst: dict[str, tuple[float, int, dict]] = field(default_factory=dict)
    best: dict[str, tuple[float, int, dict]] = field(default_factory=dict)
    nonfinite: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (count, first flat index)
    unexpected: dict[str, tuple[int, int]] = field(default_factory=dict)
    never: np.ndarray | None = None

    def update(self, chunk: Chunk) -> None:
        """Fold one chunk in: (value, flat index, the summary outputs there) per extreme."""
        for name in SUMMARY_OUTPUTS:
            v = chunk.outputs[name]
            finite = np.isfinite(v)
            if not finite.any():
                continue
            # the first finite minimum and maximum (non-finite values never win)
            for table, k, better in ((self.worst, int(np.argmin(np.where(finite, v, np.inf))), np.less),
                                     (self.best, int(np.argmax(np.where(finite, v, -np.inf))), np.greater)):
                if name not in table or better(v[k], table[name][0]):
                    at = {o: float(chunk.outputs[o][k]) for o in SUMMARY_OUTPUTS}
                    table[name] = (float(v[k]), chunk.start + k, at)
        for name, v in chunk.outputs.items():
            bad = ~np.isfinite(v)
            if not bad.any():
                continue
            _count(self.nonfinite, name, bad, chunk.start)
            if EXPECTED_NONFINITE.get(output_name(name)):
                continue
            if name in PER_PARAMETER and self.never is not None and v.shape[-2:] == self.never.shape:
                # a percent move is not applicable where never or absent; a gradient where absent
                bad = bad & ~((self.never > 0) if name in EXPECTED_WHERE_NEVER else (self.never == ABSENT))
            if bad.any():
                _count(self.unexpected, name, bad, chunk.start)


def _count(table: dict, name: str, bad: np.ndarray, start: int) -> None:
    """Add a chunk's non-finite cells `bad` (leading axis: its points) to table[name]."""
    count, first = table.get(name, (0, -1))
    where = start + int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1)))
    table[name] = (count + int(bad.sum()), first if first >= 0 else where)


def grid_point(scenario: Scenario, flat: int) -> dict[str, float]:
    """Axis values at a flat grid index."""
    if not scenario.axes:
        return {}
    idx = np.unravel_index(flat, scenario.shape)
    return {a.name: float(a.values[i]) for a, i in zip(scenario.axes, idx)}


def unexpected_nonfinite(extremes: Extremes) -> dict[str, tuple[int, int]]:
    """Non-finite outputs that the model never produces on valid inputs: (count, first
    flat index) of the values no reason covers (EXPECTED_NONFINITE, EXPECTED_WHERE_NEVER)."""
    return dict(extremes.unexpected)


def describe_nonfinite(scenario: Scenario, extremes: Extremes) -> list[str]:
    """One line per output with non-finite values: how many, the first grid point, and
    whether the model says so (with its reason) or not (UNEXPECTED, counted and placed
    apart from the expected values of the same output)."""
    def at(flat):
        return ", ".join(f"{k}={v:g}" for k, v in grid_point(scenario, flat).items()) or "the only point"

    absent = extremes.never is not None and bool(np.any(extremes.never == ABSENT))
    lines = []
    for name, (count, first) in sorted(extremes.nonfinite.items()):
        why = expected_reason(name, absent)
        if name in extremes.unexpected:
            bad, where = extremes.unexpected[name]
            rest = count - bad
            also = f"; {rest} more expected where {why}" if rest and why else ""
            lines.append(f"{name}: {bad} non-finite value(s), first at {at(where)} "
                         f"(UNEXPECTED: check the inputs{also})")
        else:
            lines.append(f"{name}: {count} non-finite value(s), first at {at(first)} (expected where {why})")
    return lines


__all__ = ["prepare", "evaluate_base", "Extremes", "grid_point", "OUTPUTS", "never_parameters"]
