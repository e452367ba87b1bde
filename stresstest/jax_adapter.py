"""The one place where JAX transforms live.

The kernels are plain array functions; this module turns on 64-bit floats, picks
the device and jit-compiles the chunk function (once per chunk shape: the engine
pads the last chunk so a run compiles exactly once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

# float64 is the project's default; float32 runs still pass float32 arrays in.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from .kernels.cashflows import PLATFORM_KEY, cash_flows  # noqa: E402
from .kernels.factored import evaluate_corners, interpolate, slab_corners  # noqa: E402
from .kernels.metrics import evaluate  # noqa: E402
from .kernels.params import ITEM_NAMES, ITEM_PARAMS, PARAM_NAMES  # noqa: E402
from .kernels.sensitivity import (DIFFERENTIABLE_SCALARS, by_item, by_scalar, capex_gradient,  # noqa: E402
                                  capex_paid, flow_weights, irr_gradient, npv_m_slope, npv_rate_derivative,
                                  roi_gradient)
from .kernels.shocks import apply_axis_values, axis_point_values, with_implied_items  # noqa: E402
from .kernels.staging import stage  # noqa: E402


def gpu_devices() -> list:
    try:
        return [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    except RuntimeError:
        return []


def device_name() -> str:
    gpus = gpu_devices()
    if gpus:
        d = gpus[0]
        return f"cuda:{d.id} ({getattr(d, 'device_kind', 'gpu')})"
    return "cpu"


def device_memory() -> tuple[int, int] | None:
    """(free, total) bytes of the first GPU's allocator (its limit, which preallocation
    sets at a share of the card), or None on the CPU or where the device does not say."""
    gpus = gpu_devices()
    if not gpus:
        return None
    stats = gpus[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit:
        return None
    return int(limit - stats.get("bytes_in_use", 0)), int(limit)


def local_devices(gpu: bool) -> list:
    """The devices of this process on the platform in use (several GPUs, or CPU devices
    where XLA was told to make several)."""
    return gpu_devices() if gpu else jax.local_devices(backend="cpu")


def place(tree, device):
    """A copy of the arrays of `tree` committed to `device`: jitted calls run there."""
    return jax.device_put(tree, device)


def namespace():
    return jnp


def use_compile_cache(path: str | None) -> None:
    """JAX's persistent compilation cache in `path` (programs that took a second or more to
    compile), unless JAX_COMPILATION_CACHE_DIR or an earlier call chose a folder already;
    the programs of compile_ahead kept in the same folder (keep_programs_in)."""
    if not path:
        return
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", path)
    keep_programs_in(jax.config.jax_compilation_cache_dir)


_programs_folder: list[str | None] = [None]


def keep_programs_in(folder: str | None) -> None:
    """compile_ahead keeps the programs it compiles in `folder` and reads them back from
    there (None: none kept)."""
    _programs_folder[0] = folder


def jit(fn, concurrent: bool = False):
    """Compile a chunk function whose arguments are all arrays (shapes fixed per run).

    concurrent: its chunks run on several threads at once (engine.chunk_workers). On the
    CPU, XLA then leaves out its pass that splits each loop of the program into parts for
    its own threads: the other chunk keeps those threads busy, and the parts' hand-offs
    cost CPU time (3 % of W1's and 2 % of W4's paths, the same numbers bit for bit;
    benchmarks/README.md, "Measurements behind design choices in the code")."""
    if concurrent and jax.default_backend() == "cpu":
        return jax.jit(fn, compiler_options=_CONCURRENT_CPU)
    return jax.jit(fn)


_CONCURRENT_CPU = {"xla_disable_hlo_passes": "cpu-parallel-task-assigner"}


def compile_ahead(fn, *args):
    """The jitted `fn` compiled for these arguments now: (the compiled program, True where
    it was read back from the folder of kept programs); (fn, False) where fn is not
    jitted (nothing to compile). The runs call the program it returns for every chunk
    (arguments of the same shapes and types).

    Where a folder is set (keep_programs_in), the program is kept there under a key of
    everything it is made from (_program_file) and read back by later runs: no trace,
    no lowering, no compile. JAX's own cache answers only after the trace and the
    lowering, which took most of a cached first answer's compile phase
    (benchmarks/README.md, "Measurements behind design choices in the code"). JAX's
    cache does not keep these programs too: a program it read back (after a change of
    this package that left the program as it was) could not be written out again, so
    it would never be kept here; one it still holds from before is run, not kept.

    The runs call this in a worker thread (progress.in_worker), so that Ctrl-C is taken
    while XLA compiles, which a call in the main thread would hold back until done."""
    if not hasattr(fn, "lower"):
        return fn, False
    path = _program_file(fn, args)
    kept = _read_program(path) if path is not None else None
    if kept is not None:
        return kept, True
    hits = cache_hits()
    with _not_in_jax_cache(path is not None):
        compiled = fn.lower(*args).compile()
    if path is not None and cache_hits() == hits:  # one JAX's cache read back cannot be written out
        _write_program(path, compiled)
    return compiled, False


def compile_cache_on() -> bool:
    """Whether compiled programs are kept between runs (a folder is set)."""
    return bool(jax.config.jax_compilation_cache_dir)


_cache_hits = [0, False]  # programs read from the persistent cache; listener installed


def cache_hits() -> int:
    """Programs read back from JAX's persistent compilation cache so far in this process
    (JAX's monitoring event; counting starts at the first call of this function)."""
    if not _cache_hits[1]:
        def listen(event, **_):
            if event == "/jax/compilation_cache/cache_hits":
                _cache_hits[0] += 1

        jax.monitoring.register_event_listener(listen)
        _cache_hits[1] = True
    return _cache_hits[0]


# ------------------------------------------------------------------ programs kept between runs

PROGRAM_FORMAT = 1  # of a kept program's file: pickle of (format, payload, in_tree, out_tree)


class _NotStatic(Exception):
    """A value the key cannot capture bit for bit: the program is compiled, not kept."""


def _program_file(fn, args) -> Path | None:
    """Where the program of the jitted fn for args is kept, or None (no folder, or a
    value in fn's closures that the key cannot capture). The key: the program's
    static inputs (_static: the closures of fn, its wrapped functions and bound objects,
    every captured value), the arguments' tree, shapes and types, the source of the
    package's modules the program can be made from (_source_digest), the JAX and jaxlib
    versions, the
    devices, the CPU (its model and instruction set: a program compiled for another's
    would not run), XLA_FLAGS and the numerics settings of JAX."""
    folder = _programs_folder[0]
    if not folder:
        return None
    modules: set[str] = set()
    try:
        static = _static(fn, {}, modules)
    except _NotStatic:
        return None
    leaves, tree = jax.tree_util.tree_flatten(args)
    shapes = (str(tree), tuple(str(jax.typeof(x)) for x in leaves))
    key = repr((PROGRAM_FORMAT, static, shapes, _source_digest(frozenset(modules)), _environment()))
    return Path(folder) / f"stresstest-{hashlib.sha256(key.encode()).hexdigest()}.program"


def _static(x, seen: dict, modules: set):
    """A value as plain nested tuples that say every bit of it the traced program can
    depend on (arrays by their bytes' digest, functions by name and closure); raises
    _NotStatic for anything else. Adds to `modules` the modules of the functions and
    classes met (whose source _source_digest takes)."""
    if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
        return type(x).__name__, repr(x)
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        a = np.ascontiguousarray(np.asarray(x))
        return "array", a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).hexdigest()
    if isinstance(x, (types.ModuleType, type, np.dtype, np.ufunc, types.BuiltinFunctionType)):
        modules.add(getattr(x, "__module__", None) or "")
        return type(x).__name__, getattr(x, "__module__", None), getattr(x, "__qualname__", None), str(x)
    if id(x) in seen:  # a value met before on this walk (or a cycle): which one
        return "seen", seen[id(x)]
    seen[id(x)] = len(seen)
    if isinstance(x, (tuple, list)):
        return type(x).__name__, tuple(_static(v, seen, modules) for v in x)
    if isinstance(x, dict):
        return "dict", tuple((_static(k, seen, modules), _static(v, seen, modules)) for k, v in x.items())
    if isinstance(x, (set, frozenset)):
        return type(x).__name__, tuple(sorted(repr(_static(v, seen, modules)) for v in x))
    if dataclasses.is_dataclass(x):
        modules.add(type(x).__module__)
        return (type(x).__module__, type(x).__qualname__,
                tuple((f.name, _static(getattr(x, f.name), seen, modules)) for f in dataclasses.fields(x)))
    if isinstance(x, functools.partial):
        return "partial", _static(x.func, seen, modules), _static(x.args, seen, modules), _static(
            x.keywords, seen, modules)
    if isinstance(x, types.MethodType):
        return "method", _static(x.__func__, seen, modules), _static(x.__self__, seen, modules)
    if isinstance(x, types.FunctionType):
        modules.add(x.__module__)
        code = x.__code__
        cells = []
        for cell in x.__closure__ or ():
            try:
                cells.append(_static(cell.cell_contents, seen, modules))
            except ValueError:  # a cell not yet filled
                cells.append("empty")
        wrapped = getattr(x, "__wrapped__", None)
        return ("function", x.__module__, x.__qualname__, code.co_filename, code.co_firstlineno, tuple(cells),
                _static(x.__defaults__, seen, modules), _static(x.__kwdefaults__, seen, modules),
                None if wrapped is None else _static(wrapped, seen, modules))
    if callable(x) and hasattr(x, "__wrapped__"):  # jax.jit's function: what it wraps
        return type(x).__qualname__, _static(x.__wrapped__, seen, modules)
    raise _NotStatic(type(x))


@functools.cache
def _source_digest(modules: frozenset) -> str:
    """A digest of the source of this package's modules among `modules` and of every
    module of the package theirs refer to (an imported module, function or class),
    transitively: every function a traced program can call. The command line's and the
    reports' modules are not among them, so editing those keeps the programs."""
    package = __name__.rpartition(".")[0]
    todo, names = [m for m in modules if m == package or m.startswith(package + ".")], set()
    while todo:
        name = todo.pop()
        module = sys.modules.get(name)
        if name in names or module is None:
            continue
        names.add(name)
        for v in vars(module).values():
            ref = v.__name__ if isinstance(v, types.ModuleType) else getattr(v, "__module__", None)
            if isinstance(ref, str) and ref.startswith(package + ".") and ref not in names:
                todo.append(ref)
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0" + Path(sys.modules[name].__file__).read_bytes())
    return h.hexdigest()


def _environment() -> tuple:
    """What else a compiled program depends on: JAX, jaxlib, numpy and array_api_compat
    (the kernels trace through their namespaces), the devices, the CPU, XLA's flags and
    JAX's numerics settings."""
    import platform

    import array_api_compat
    import jaxlib

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = tuple(next((ln for ln in lines if ln.startswith(k)), "") for k in ("model name", "flags"))
    except OSError:
        pass
    devices = jax.devices()
    return (jax.__version__, jaxlib.__version__, np.__version__, array_api_compat.__version__,
            devices[0].platform, tuple(d.device_kind for d in devices), cpu, os.environ.get("XLA_FLAGS", ""),
            jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)


def _read_program(path: Path):
    """The program kept at path, loaded, or None (none there, or unreadable: compiled again)."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        fmt, payload, in_tree, out_tree = pickle.loads(data)  # our own folder, like JAX's cache
        return deserialize_and_load(payload, in_tree, out_tree) if fmt == PROGRAM_FORMAT else None
    except Exception:  # a file cut short, another version's: compiled again and replaced
        return None


def _not_in_jax_cache(on: bool):
    """A context in which this thread's compiles are not written to JAX's persistent
    cache (where on): a thread-local setting of JAX's least compile time for it."""
    from jax._src import config as jax_config  # its settings as thread-local contexts

    least = getattr(jax_config, "persistent_cache_min_compile_time_secs", None) if on else None
    return least(math.inf) if least is not None else contextlib.nullcontext()


def _write_program(path: Path, compiled) -> None:
    """Keep a compiled program at path (a temporary name, then renamed); nothing where it
    cannot be serialised or written (the run goes on)."""
    from jax.experimental.serialize_executable import serialize

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        payload, in_tree, out_tree = serialize(compiled)
        tmp.write_bytes(pickle.dumps((PROGRAM_FORMAT, payload, in_tree, out_tree)))
        os.replace(tmp, path)
    except Exception:  # a program JAX cannot serialise, a full disk: kept by nobody
        with contextlib.suppress(OSError):
            tmp.unlink()


def value_and_derivative(f):
    """x -> (f(x), f'(x)) for a scalar function of one float given as f(array [1]) -> [1],
    by forward mode (one jvp): breakeven's Newton steps."""
    def value_and_slope(x: float) -> tuple[float, float]:
        v, dv = jax.jvp(f, (jnp.asarray([x]),), (jnp.asarray([1.0]),))
        return float(v[0]), float(dv[0])

    return value_and_slope


def value_and_input_gradient(f, argnums: tuple[int, ...]):
    """(*args) -> (f(*args), the gradient of f's sum over its samples with respect to
    args[argnums]): per-sample gradients where each sample's output depends on its own
    inputs alone (the DGSM of stresstest/gsa.py)."""
    def summed(*args):
        y = f(*args)
        return jnp.sum(y), y

    grad = jax.value_and_grad(summed, argnums=argnums, has_aux=True)

    def fn(*args):
        (_, y), g = grad(*args)
        return y, g

    return fn


def value_and_jacobian(f):
    """(x, *args) -> (f(x, *args), its Jacobian in x), compiled; f returns a dict of
    arrays, each Jacobian with x's axis last. Forward mode (jacfwd: one tangent per entry
    of x, the values carried alongside): optimize's few variables against thousands of
    per-path outputs, where reverse mode needs a pass per output (docs/decisions.md)."""
    def both(x, *args):
        jac, value = jax.jacfwd(lambda z: (lambda y: (y, y))(f(z, *args)), has_aux=True)(x)
        return value, jac

    return jax.jit(both)


def tail_weighted_gradient(npv_fn, chunk: int, n_paths: int):
    """The compiled reverse pass of Monte Carlo's pathwise sensitivities.

    npv_fn(base, rate, start) -> NPV [chunk] of the paths start .. start + chunk. Returns
    grad(base, rate, start, cuts) -> ((d/dbase, d/drate) of w @ NPV, w.sum(axis=1)), with
    the weights w [1 + len(cuts), chunk] held fixed (stop_gradient): row 0 every path
    below n_paths (the mean), then per (lo, hi, f) in cuts the tail: 1 below lo, f in the
    boundary bin [lo, hi], 0 above (the paths the summary's CVaR averages)."""
    def weighted(base, rate, start, cuts):
        npv = npv_fn(base, rate, start)
        idx = start + jnp.arange(chunk)
        live = (idx < n_paths).astype(npv.dtype)
        ws = [live]
        for (lo, hi, f) in cuts:
            v = jax.lax.stop_gradient(npv)
            ws.append(live * jnp.where(v < lo, 1.0, jnp.where(v <= hi, f, 0.0)))  # [lo, hi]: the bin
        w = jax.lax.stop_gradient(jnp.stack(ws))
        return w @ npv, w.sum(axis=1)

    return jax.jit(jax.jacrev(weighted, argnums=(0, 1), has_aux=True))


def in_pieces(fn, pieces: int, piece: int):
    """fn(*args, start), the outputs of `piece` rows (paths, grid points) from `start`, as
    the outputs of pieces * piece rows: the pieces evaluated one after another in one
    program (lax.map), each row's arithmetic that of a chunk of `piece` rows."""
    def whole(*args):
        *inputs, start = args
        firsts = start + piece * jnp.arange(pieces, dtype=jnp.int64)
        outs = jax.lax.map(lambda first: fn(*inputs, first), firsts)
        return {k: v.reshape((pieces * piece,) + v.shape[2:]) for k, v in outs.items()}

    return whole


SENSITIVITY_OUTPUTS = ("npv", "roi", "irr")


def _by_subchunks(f, sub: int, n: int, args):
    """f over the leading axis of args in pieces of at most `sub` rows (lax.map), outputs
    re-joined.

    f's outputs carry the scenario axis first, like its arguments. The pieces are as
    even as they can be (84 rows in sub-chunks of 32: three pieces of 28, not 32, 32
    and 20 padded to 32, an eighth of the work on copies); the rows are padded to a
    whole number of pieces with copies of the last row, then trimmed.
    """
    if sub >= n:
        return f(*args)
    pieces = -(-n // sub)
    sub = -(-n // pieces)
    pad = pieces * sub - n

    def split(x):
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)
        return x.reshape((pieces, sub) + x.shape[1:])

    outs = jax.lax.map(lambda a: f(*a), jax.tree_util.tree_map(split, args))
    return jax.tree_util.tree_map(lambda y: y.reshape((pieces * sub,) + y.shape[2:])[:n], outs)


# Scenario-cluster-months per reverse pass on the CPU: the pass keeps about 60 arrays
# of [sub, clusters, months] alive, and this many keep them in the caches (larger
# sub-chunks ran markedly slower; benchmarks/README.md, "Measurements behind design
# choices in the code")
CPU_SUBCHUNK_SCM = 12288


def cpu_subchunk(n_clusters: int, n_months: int) -> int:
    """Scenarios per reverse pass on the CPU: a power of two near CPU_SUBCHUNK_SCM."""
    n = max(1, CPU_SUBCHUNK_SCM // (n_clusters * n_months))
    return 1 << (n.bit_length() - 1)


def sensitivity_chunk_fn(horizon: int, specs, equity_clusters, chunk: int, n_clusters: int,
                         sub: int | None = None, factoring=None, items=None):
    """Chunk function: every output of the model plus its sensitivities (reverse mode).

    Gradients are with respect to the parameters at each grid point (after shocks and
    clipping): grad_npv, grad_roi, grad_irr [S, C, P] for the portfolio outputs,
    grad_cluster_npv [S, C, P] for each cluster's own NPV (equal to grad_npv where the
    portfolio has no platform: a cluster's parameters move only its own flows; with a
    platform, the portfolio's outputs carry its flows, which the take rate ties to every
    cluster's revenue, and a cluster's own NPV leaves them out; without a platform the
    program returns it once, as grad_npv, and the host names it twice: engine.SAME_AS),
    their discount-rate derivatives,
    npv_per_pct (NPV change for a +1 % relative move of each parameter; NaN, not
    applicable, where the parameter is never: +inf) and
    slope_<output> [S, A] along each axis (through the shocks, clipping included).
    One batched reverse pass through the flows serves every output.

    items (a kernels.sensitivity.ItemColumns; required where the base carries item
    arrays): the parameters are then the cluster parameters followed by the items'
    fields by name (ItemColumns): an item field's gradient is the partial derivative
    with respect to that item's value, the other items held (shares not rebalanced); a
    version 1 key of a cluster whose items are implied moves them too (_Report); then
    the version 2 scalars (a platform field's derivative in every cluster's row).

    factoring (a factoring.Factoring, chunks of whole slabs): the outputs come from the
    slabs' corners (kernels/factored.py), and so do the NPV and ROI gradients: their
    weights (discount factors, ones) do not depend on the point, and the gradient of a
    multi-affine flow is multi-affine too, so the corners' gradients interpolate
    exactly. Only the IRR's weight, (1+i*)^-t at each point's own root, is pulled back
    through each grid point's flows, in rows along the interpolated axes
    (_SensitivityLayout.pull_back_in_rows). The function then takes (base, rate, values,
    corner_points, weights, start), start a multiple of the slab.
    """
    gpu = bool(gpu_devices())
    if sub is None:
        sub = chunk if gpu else cpu_subchunk(n_clusters, horizon + 1)
    layout = _SensitivityLayout(horizon, specs, equity_clusters, chunk, n_clusters, sub, factoring, items)
    return jax.jit(layout.chunk_outputs, compiler_options=None if gpu else _xla_reductions())


# XLA's CPU options for the sensitivities: the operations it hands to YNNPACK (the
# matrix products but not the reductions) and an HLO pass left out (the one that splits
# each long sum into blocks of 32 summed apart)
_XLA_REDUCTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
                   "xla_disable_hlo_passes": "tree_reduction_rewriter," + _CONCURRENT_CPU["xla_disable_hlo_passes"]}


@functools.cache
def _xla_reductions() -> dict | None:
    """Compiler options for the sensitivities' chunk function on the CPU: each reduction
    summed by XLA's own loop, in the loop that makes its terms. The reverse passes sum
    many small arrays over the months (every parameter's gradient): YNNPACK's calls for
    them cost more than they save, and without them XLA splits each sum into blocks of
    32 months, a loop of its own each (reduce-window). Both left out, W3 took 28 % less
    time; W1 gained less, and W4, whose sums are long, ran twice as slow, so they keep
    the defaults (benchmarks/README.md, "Measurements behind design choices in the
    code"). The sums' order differs: the sensitivity runs' outputs change in the last
    bits. None where this XLA has no such options (the defaults then)."""
    options = dict(_XLA_REDUCTIONS)
    try:
        jax.jit(lambda x: x.sum(), compiler_options=options).lower(jnp.zeros(2)).compile()
    except Exception:  # an XLA without these options: its defaults
        return None
    return options


def _differentiable(p: dict) -> tuple[str, ...]:
    """The parameters of p whose gradients the sensitivities keep: the cluster
    parameters, then the item arrays where p has them, then the version 2 scalars it
    has but the whole months (DIFFERENTIABLE_SCALARS; not the implied flags, the
    industry labels, the start-month flag nor the months)."""
    return (PARAM_NAMES + (ITEM_NAMES if ITEM_NAMES[0] in p else ())
            + tuple(k for k in DIFFERENTIABLE_SCALARS if k in p))


def _stack_params(g: dict):
    """Gradients by parameter name -> one array, the parameters last: PARAM_NAMES in
    order, then the slots of each item array present (ITEM_NAMES order), then a column
    per version 2 scalar present (the platform's, one for the portfolio, repeated in
    every cluster's row); g's other entries (implied flags, industry labels) are left
    out."""
    rows = g["gpus"].shape
    parts = [jnp.stack([g[k] for k in PARAM_NAMES], axis=-1)] + [g[k] for k in ITEM_NAMES if k in g]
    scalars = [jnp.broadcast_to(g[k], rows) for k in DIFFERENTIABLE_SCALARS if k in g]
    if scalars:
        parts.append(jnp.stack(scalars, axis=-1))
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _first_columns(p: dict) -> dict[str, int]:
    """Where _stack_params puts each differentiable parameter of p: name -> its first
    column (an item array takes one column per slot)."""
    at, out = 0, {}
    for k in _differentiable(p):
        out[k] = at
        at += p[k].shape[-1] if k in ITEM_PARAMS else 1
    return out


def _with_columns(out, columns: dict):
    """out [S, C, Q] with column i replaced by columns[i] (each [S|1, C], broadcast): one
    elementwise expression, which XLA fuses into its consumer (a stack of every column
    broadcast to [S, C] was written out, then read again)."""
    col = jnp.arange(out.shape[-1])
    for i, v in columns.items():
        out = jnp.where(col == i, jnp.broadcast_to(v, out.shape[:-1])[..., None], out)
    return out


def _stack_few(g: dict, p: dict, like):
    """_stack_params of gradients that are zero but for the few parameters g names
    (each [S, C]), shaped like `like` [S, C, Q]."""
    return _with_columns(jnp.zeros_like(like), {at: g[k] for k, at in _first_columns(p).items() if k in g})


def _param_columns(hoisted: dict, like):
    """The cluster parameters as columns [S, C, P] like `like`, from their values before
    broadcasting (hoisted: [1, C] where no axis moves them, [S, C] where one does): the
    unshocked ones stacked once per chunk, the few shocked ones put in their columns."""
    fixed = jnp.stack([hoisted[k][0] if hoisted[k].shape[0] == 1 else jnp.zeros_like(hoisted[k][0])
                       for k in PARAM_NAMES], axis=-1)
    return _with_columns(jnp.broadcast_to(fixed, like.shape),
                         {i: hoisted[k] for i, k in enumerate(PARAM_NAMES) if hoisted[k].shape[0] != 1})


def _unstack_params(a, p: dict) -> dict:
    """The inverse of _stack_params: parameter name -> a[..., i] (an item array of p: its
    slots' columns; the platform's: one row, as p has it)."""
    out = {}
    for k, at in _first_columns(p).items():
        if k in PARAM_NAMES:
            out[k] = a[..., at]
        elif k in ITEM_PARAMS:
            out[k] = a[..., at:at + p[k].shape[-1]]
        else:
            out[k] = a[..., :p[k].shape[-1], at]
    return out


def _monthly_irr(irr):
    """The monthly rate of annual IRRs: the root at which the IRR's weights are taken."""
    return jnp.expm1(jnp.log1p(irr) / 12.0)


# The kinds of weights pulled back through the flows: flow_weights' three (the
# portfolio's NPV, the flows' sum behind ROI, the IRR's NPV_m), and each cluster's own
# NPV, which leaves the platform's flows out (needed only where there is a platform)
NPV, SUM, IRR, OWN_NPV = 0, 1, 2, 3


def _pull_back(pb, pf, w, kinds: tuple[int, ...], horizon: int):
    """One scenario's cash flows and the weights w [K, 1, T+1] pulled back through
    them: (gradients [K, C, Q], the clusters' flows [C, T+1], the platform's [T+1],
    zero without a platform).

    pb: shocked parameters [C] (this scenario's; the platform's [1]); pf: the others
    [1, C], shared by every scenario, so vmap computes their month factors once. Each
    weight applies to every cluster's flows and, but for OWN_NPV, to the platform's.
    Of the arrays' gradients those of _differentiable are kept.
    """
    def flows(pb, pf):
        fl = cash_flows({**{k: v[None] for k, v in pb.items()}, **pf}, horizon)
        platform = fl["platform"]["cf"][0] if "platform" in fl else jnp.zeros(fl["cf"].shape[-1:], fl["cf"].dtype)
        return fl["cf"][0], platform

    (cf, pcf), flow_pull = jax.vjp(flows, pb, pf)
    on = jnp.asarray([0.0 if k == OWN_NPV else 1.0 for k in kinds], dtype=cf.dtype)
    gb, gf = jax.vmap(lambda wk, o: flow_pull((jnp.broadcast_to(wk, cf.shape), wk[0] * o)))(w, on)
    return _stack_params({**gb, **{k: v[:, 0] for k, v in gf.items()}}), cf, pcf


def _scenario_gradients(pb, pf, r, irr_m, kinds: tuple[int, ...], horizon: int):
    """The weights `kinds` (NPV, SUM, IRR, OWN_NPV) for one scenario; returns the
    gradients [K, C, Q], the portfolio's flows [T+1] (the platform's included), dNPV/dr
    of each cluster's flows [C] and of the platform's."""
    w = flow_weights(r[None], irr_m[None], horizon + 1, tuple(NPV if k == OWN_NPV else k for k in kinds))
    g, cf, pcf = _pull_back(pb, pf, w[:, 0], kinds, horizon)
    return (g, jnp.sum(cf, axis=0) + pcf, npv_rate_derivative(cf[None], r[None])[0],
            npv_rate_derivative(pcf[None, None], r[None])[0, 0])


def _kinds(p: dict, *kinds: int) -> tuple[int, ...]:
    """The kinds of weights to pull back, with OWN_NPV where the portfolio has a platform."""
    return kinds + ((OWN_NPV,) if PLATFORM_KEY in p else ())


def _roi_gradient(out: dict, p: dict, g_sum, horizon: int):
    """The ROI's gradient [S, C, Q] from that of the flows' sum; p: the shocked
    parameters, each [S, C] ([S, C, K] for items, [S, 1] the platform's)."""
    total_capex = jnp.sum(capex_paid(p, horizon), axis=1)
    return roi_gradient(g_sum, _stack_few(capex_gradient(p, horizon), p, g_sum), out["roi"], total_capex)


@dataclass(frozen=True, eq=False)
class _Report:
    """Gradients [S, C, Q] as taken through the flows (a column per parameter and per
    item slot) -> as the files hold them [S, C, P'] (docs/model.md, "Sensitivities").

    Without items the two are the same. With items: a version 1 key of a cluster whose
    items are implied (kernels/shocks.py with_implied_items) gains what it moves through
    them, so that its gradient is its total derivative, as in version 1; the item slots
    become the named item columns (kernels/sensitivity.py by_item); the version 2
    scalars' columns follow, NaN where a cluster has no such scalar (by_scalar). p: the
    shocked parameters, each [S, C] ([S, C, K] for items, [S, 1] the platform's);
    columns: the ItemColumns, or None.
    """

    p: dict
    hoisted: dict  # p before broadcasting (apply_axis_values): [1, C] where no axis moves it
    columns: object = None

    def __call__(self, g):
        if self.columns is None:
            return g
        d = _unstack_params(g, self.p)
        items = {k: d[k] for k in ITEM_NAMES}
        keys = {k: self.p[k] for k in PARAM_NAMES}
        _, implied_pull = jax.vjp(lambda keys: with_implied_items(jnp, {**self.p, **keys}), keys)
        through_items = implied_pull(items)[0]
        total = jnp.stack([d[k] + through_items[k] for k in PARAM_NAMES], axis=-1)
        return jnp.concatenate([total, by_item(jnp, items, self.columns), *self._scalars(d)], axis=-1)

    def _scalars(self, d: dict) -> list:
        """The version 2 scalars' columns of d (by name), as a list of none or one array."""
        return [by_scalar(jnp, d, self.columns)] if self.columns.scalars else []

    def per_pct(self, g_npv, report_npv):
        """npv_per_pct [S, C, P']: the NPV's change for a +1 % relative move of each
        parameter (of every item of the cluster at once for a "*" column), first order;
        g_npv in the flows' layout, report_npv in the files'."""
        pv = _param_columns(self.hoisted, report_npv[..., :len(PARAM_NAMES)])
        # a percent move of "never" (client_loss_month = +inf) is not a number: NaN there,
        # by definition and expected (outputs.EXPECTED_WHERE_NEVER), where inf x 0 gave it by chance
        per_pct = jnp.where(jnp.isinf(pv), jnp.nan, report_npv[..., :len(PARAM_NAMES)] * pv * 0.01)
        if self.columns is None:
            return per_pct
        d = _unstack_params(g_npv, self.p)
        moved = {k: jnp.where(jnp.isinf(self.p[k]), jnp.nan, d[k] * self.p[k]) for k in ITEM_NAMES}
        scalars = {k: d[k] * self.p[k] for k in self.columns.scalars}
        return jnp.concatenate([per_pct, by_item(jnp, moved, self.columns) * 0.01,
                                *(x * 0.01 for x in self._scalars(scalars))], axis=-1)


def _gradient_outputs(out: dict, report: _Report, g: dict) -> None:
    """Adds the parameter gradients to `out` (which holds the model's outputs): NPV,
    each cluster's NPV, ROI and IRR [S, C, P'], the discount-rate derivatives and
    npv_per_pct; g: the gradients in the flows' layout [S, C, Q] (npv, own_npv, roi,
    npv_m), slope_m [S], d_rate [S, C] and d_rate_platform [S]."""
    out["grad_npv"] = report(g["npv"])
    if g["own_npv"] is not None:  # else grad_npv's, named twice on the host (engine.SAME_AS)
        out["grad_cluster_npv"] = report(g["own_npv"])
    out["grad_roi"] = report(g["roi"])
    out["grad_irr"] = irr_gradient(report(g["npv_m"]), g["slope_m"], out["irr"])
    out["grad_cluster_npv_discount_rate"] = g["d_rate"]
    out["grad_npv_discount_rate"] = jnp.sum(g["d_rate"], axis=1) + g["d_rate_platform"]
    out["npv_per_pct"] = report.per_pct(g["npv"], out["grad_npv"])


def _by_kind(g, kinds: tuple[int, ...]) -> dict:
    """flow_gradients' gradients g [S, K, C, Q] -> kind -> [S, C, Q]."""
    return {k: g[:, i] for i, k in enumerate(kinds)}


def _flow_results(g: dict, slope_m, d_rate, d_rate_platform, npv_m=None) -> dict:
    """flow_gradients' results by name: the gradients of each weight (g: kind -> [S, C,
    Q]; own_npv None where OWN_NPV was not needed: npv's serves), npv_m where the IRR's
    weight came from another pass, slope_m, d_rate, d_rate_platform."""
    out = {name: g.get(k) for name, k in (("npv", NPV), ("sum", SUM), ("npv_m", IRR), ("own_npv", OWN_NPV))}
    if npv_m is not None:
        out["npv_m"] = npv_m
    return {**out, "slope_m": slope_m, "d_rate": d_rate, "d_rate_platform": d_rate_platform}


def _axis_slopes(out: dict, shock_pull, p: dict, g_npv, g_roi, g_npv_m, slope_m, r, chunk: int) -> None:
    """Adds slope_npv, slope_roi and slope_irr [S, A] to `out`: the parameter gradients
    (in the flows' layout) pulled back through the shocks (shock_pull, clipping, implied
    items and balanced shares included) to the axis values."""
    irr_factor = irr_gradient(jnp.ones_like(slope_m), slope_m, out["irr"])
    zero_r = jnp.zeros_like(r)
    untaken = {k: jnp.zeros_like(v) for k, v in p.items()}  # the flags and labels: no gradient
    for name, gp, gr, scale in (("npv", g_npv, out["grad_npv_discount_rate"], None),
                                ("roi", g_roi, zero_r, None), ("irr", g_npv_m, zero_r, irr_factor)):
        slopes = shock_pull(({**untaken, **_unstack_params(gp, p)}, gr))[0]
        sl = jnp.stack(slopes, axis=-1) if slopes else jnp.zeros((chunk, 0), dtype=r.dtype)
        out["slope_" + name] = sl if scale is None else sl * scale[:, None]


@dataclass(frozen=True)
class _Rows:
    """Points in C order over `shape`, regrouped in rows along the axes `inner` (the
    positions in shape): rows(x) [n, ...] -> [R, I, ...] (I the points of a row, R the
    rows), back(y) its inverse."""

    shape: tuple[int, ...]
    inner: tuple[int, ...]

    @property
    def perm(self) -> tuple[int, ...]:
        return tuple(d for d in range(len(self.shape)) if d not in self.inner) + self.inner

    def rows(self, x):
        k = len(self.shape)
        n_in = math.prod(self.shape[d] for d in self.inner)
        x = jnp.transpose(x.reshape(self.shape + x.shape[1:]), self.perm + tuple(range(k, k + x.ndim - 1)))
        return x.reshape((math.prod(self.shape) // n_in, n_in) + x.shape[k:])

    def back(self, y):
        k = len(self.shape)
        y = y.reshape(tuple(self.shape[d] for d in self.perm) + y.shape[2:])
        y = jnp.transpose(y, tuple(int(i) for i in np.argsort(self.perm)) + tuple(range(k, y.ndim)))
        return y.reshape((math.prod(self.shape),) + y.shape[k:])


@dataclass(frozen=True, eq=False)
class _SensitivityLayout:
    """What a sensitivity chunk function is compiled for (see sensitivity_chunk_fn):
    the shapes and the static structure of one run."""

    horizon: int
    specs: tuple
    equity_clusters: tuple
    chunk: int
    n_clusters: int
    sub: int  # scenarios per reverse pass
    factoring: object = None  # a factoring.Factoring, or None: every point in full
    items: object = None  # a kernels.sensitivity.ItemColumns, or None: no item arrays

    def chunk_outputs(self, base, rate, values, *rest) -> dict:
        """The chunk function: (base, rate, values[, corner_values, weights], start) ->
        the outputs and their sensitivities."""
        *extra, start = rest
        out = self.forward(base, rate, values, *extra, start)
        return {**out, **self.gradient_outputs(base, rate, values, *extra, start, out["irr"], out["roi"])}

    def forward(self, base, rate, values, *rest) -> dict:
        """The model's outputs: (base, rate, values[, corner_values, weights], start) ->
        metrics.evaluate's (factored: from the slabs' corners)."""
        *extra, start = rest
        if self.factoring is None:
            point = axis_point_values(values, start + jnp.arange(self.chunk, dtype=jnp.int64))
            p, r = apply_axis_values(base, rate, self.specs, point)
            return dict(evaluate(p, jnp.broadcast_to(r, (self.chunk,)), self.horizon,
                                 equity_clusters=self.equity_clusters, debt_clusters=self.equity_clusters))
        pc, rc, axes = self.corners(base, rate, values, *extra, start)
        fact = self.factoring
        return dict(evaluate_corners(pc, rc, self.horizon, self.equity_clusters, self.chunk // fact.slab,
                                     fact.shape, axes, debt=self.equity_clusters))

    def corners(self, base, rate, values, corner_values, weights, start):
        """Factored grids: the parameters [lead R, C] and discount rates of the chunk's
        slabs' corner rows, and interpolate's axes."""
        fact = self.factoring
        point, axes = slab_corners(values, corner_values, weights, start, self.chunk // fact.slab, fact)
        pc, rc = apply_axis_values(base, rate, self.specs, point)
        return pc, jnp.broadcast_to(rc, (point[0].shape[0],)), axes

    def gradient_outputs(self, base, rate, values, *rest) -> dict:
        """The sensitivities alone: (base, rate, values[, corner_values, weights], start,
        irr, roi) -> the gradient outputs, given the forward outputs they depend on (the
        portfolio's IRR and ROI at each point)."""
        *extra, start, irr, roi = rest
        point = axis_point_values(values, start + jnp.arange(self.chunk, dtype=jnp.int64))
        (p, r), shock_pull = jax.vjp(lambda point: self.scenario_params(base, rate, point), point)
        # the unbroadcast parameters: month factors of unshocked parameters stay [1, C, T]
        # (computed once per chunk)
        p_hoisted, _ = apply_axis_values(base, rate, self.specs, point)
        irr_m = _monthly_irr(irr)
        if self.factoring is None:
            kinds = _kinds(p_hoisted, NPV, SUM, IRR)
            g, pcf, d_rate, d_rate_p = self.flow_gradients(p_hoisted, r, irr_m, kinds)
            g = _flow_results(_by_kind(g, kinds), npv_m_slope(pcf, irr_m), d_rate, d_rate_p)
        else:
            g = self.factored_gradients((base, rate, values, *extra, start), point, irr_m)
        out = {"irr": irr, "roi": roi}
        g["roi"] = _roi_gradient(out, p, g["sum"], self.horizon)
        _gradient_outputs(out, _Report(p, p_hoisted, self.items), g)
        _axis_slopes(out, shock_pull, p, g["npv"], g["roi"], g["npv_m"], g["slope_m"], r, self.chunk)
        del out["irr"], out["roi"]
        return out

    def scenario_params(self, base, rate, point):
        """The scenarios' parameters from their axis values, each broadcast to [S, C]
        ([S, C, ...] for items), and the discount rate [S]: the map that the axis slopes
        pull back through."""
        p, r = apply_axis_values(base, rate, self.specs, point)
        p = {k: jnp.broadcast_to(x, (self.chunk,) + x.shape[1:]) for k, x in p.items()}
        return p, jnp.broadcast_to(r, (self.chunk,))

    def flow_gradients(self, p_hoisted, r, irr_m, kinds: tuple[int, ...]):
        """Gradients [S, K, C, Q] of the weighted flow sums, the portfolio's flows [S,
        T+1], dNPV/dr of the clusters' flows [S, C] and of the platform's [S]."""
        pb = {k: v for k, v in p_hoisted.items() if v.shape[0] != 1}
        pf = {k: v for k, v in p_hoisted.items() if v.shape[0] == 1}
        n = r.shape[0]
        per_scenario = jax.vmap(lambda pb, r, irr_m: _scenario_gradients(pb, pf, r, irr_m, kinds, self.horizon))
        # the reverse pass runs over sub-chunks of `sub` scenarios (a loop inside the
        # compiled function): its residuals then stay in the CPU's caches
        return _by_subchunks(per_scenario, self.sub, n, (pb, r, irr_m))

    def factored_gradients(self, inputs: tuple, point, irr_m) -> dict:
        """A factored grid (inputs: base, rate, values, corner_values, weights, start;
        point: the chunk's axis values; irr_m: the monthly IRR at each point): the NPV,
        ROI (and own NPV) gradients from the corners, the IRR's pulled back per point;
        flow_gradients' results by name (_flow_results), as every point in full gives.
        The corners' flows and discount-rate derivatives interpolate exactly too (affine
        in the flows): dNPV_m/di and dNPV/dr at each point come from them."""
        g_corners, pcf, d_rate, d_rate_p = self.corner_gradients(*inputs)
        fact = self.factoring
        order = _Rows((self.chunk // fact.slab,) + fact.shape, tuple(1 + d for d in fact.affine))
        moved = tuple(a - fact.k in fact.affine for a in range(len(point)))
        vals = tuple(order.rows(v) if m else order.rows(v)[:, 0] for v, m in zip(point, moved))
        # a stage of its own (kernels/staging.py): faster than fused with the corners'
        # (benchmarks/README.md, "Measurements behind design choices in the code"); the
        # points' order restored outside it, where XLA fuses it into the consumers
        g = stage(jnp, lambda irr_m, vals: self.pull_back_in_rows(inputs[0], inputs[1], vals, moved, irr_m, (IRR,)),
                  order.rows(irr_m), vals)
        return _flow_results(g_corners, npv_m_slope(pcf, irr_m), d_rate, d_rate_p, npv_m=order.back(g)[:, 0])

    def pull_back_in_rows(self, base, rate, vals: tuple, moved: tuple[bool, ...], irr_m, kinds: tuple[int, ...]):
        """flow_gradients' gradients [R, I, K, C, Q] at points in rows (_Rows): vals, each
        axis's values, [R, I] for the axes that move along a row (moved), [R] for the
        others; irr_m [R, I].

        A row runs along the interpolated axes, whose parameters no other axis moves:
        every other parameter is the same along it, and vmap computes what depends on them
        alone (most of the flows) once per row, not once per point."""
        def at_point(vals, irr_m):
            p, r = apply_axis_values(base, rate, self.specs, tuple(v[None] for v in vals))
            return _scenario_gradients({}, p, r[0], irr_m, kinds, self.horizon)[0]

        in_row = jax.vmap(at_point, in_axes=(tuple(0 if m else None for m in moved), 0))
        n_rows, n_in = irr_m.shape
        # rows in sub-chunks of about `sub` points (a loop inside the compiled function):
        # the reverse pass's residuals then stay in the CPU's caches
        return _by_subchunks(jax.vmap(in_row), max(1, self.sub // n_in), n_rows, (vals, irr_m))

    def corner_gradients(self, base, rate, values, corner_values, weights, start) -> tuple:
        """Factored grids: the gradients of the weights that do not depend on the point
        (NPV, SUM, OWN_NPV), from the corners, interpolated (kind -> [S, C, Q], each
        interpolated apart: a slice of one interpolated array was a copy), and the
        portfolio's flows [S, T+1] and the discount-rate derivatives [S, C] and [S]."""
        pc, rc, axes = self.corners(base, rate, values, corner_values, weights, start)
        kinds = _kinds(pc, NPV, SUM)
        g, *rest = self.flow_gradients(pc, rc, jnp.zeros_like(rc), kinds)  # g [lead R, K, C, Q]
        lead = self.chunk // self.factoring.slab

        def points(x):
            return interpolate(x, lead, self.factoring.shape, axes)

        return ({k: points(v) for k, v in _by_kind(g, kinds).items()}, *(points(x) for x in rest))