"""A stress run from files to a result file: what `stresstest run` delegates to."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import make_backend
from .config import ConfigError, Portfolio, Scenario, config_json, load_portfolio, load_scenario
from .engine import Extremes, evaluate_base, prepare
from .h5io import provenance
from .progress import Interrupts, Progress


@dataclass
class RunResult:
    path: Path
    portfolio: Portfolio
    scenario: Scenario
    backend: str
    base: dict[str, np.ndarray]
    extremes: Extremes
    seconds: float
    chunk_size: int
    config_sha256: str
    writing_s: float = 0.0  # in the writer: staging, compressing, storing, committing

    @property
    def scm(self) -> int:
        """Scenario-cluster-months evaluated."""
        return self.scenario.size * len(self.portfolio.clusters) * self.portfolio.horizon_months


def load_inputs(portfolio_path, scenario_path) -> tuple[Portfolio, Scenario]:
    pf = load_portfolio(portfolio_path)
    sc = load_scenario(scenario_path, pf)
    return pf, sc


def check_output(path: Path, overwrite: bool = True) -> None:
    """Refuse, before any work, an output that cannot or may not be written: the one
    rule for every writer (run, the API, merge, breakeven's curve).

    The folder must exist and take a new file (a probe file is made and removed: this
    catches read-only file systems, which permission bits do not show to root). An
    existing file is kept unless overwrite (callers pass it explicitly: the default,
    True, is kept for callers written before the rule). Temporary files of killed runs
    (whose process is gone) next to the output are removed.
    """
    import tempfile

    from .h5io import remove_stale_partials

    if path.is_dir():
        raise ConfigError([f"{path}: the output is a directory"])
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError([f"{path}: the output folder {parent} does not exist"])
    if path.exists() and not overwrite:
        raise ConfigError([f"{path}: exists; give --overwrite to replace it"])
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".stresstest-probe-"):
            pass
    except OSError as exc:
        raise ConfigError([f"{path}: cannot write in {parent} ({exc.strerror or exc})"]) from None
    remove_stale_partials(path)


def run_grid(portfolio_path, scenario_path, output, *, backend: str = "auto", dtype: str = "float64",
             chunk_size: int | None = None, progress: bool = True,
             compression: str | None = "gzip", sensitivities: bool = False, save_paths: bool = False,
             overwrite: bool = False, max_scenarios: int | None = None, overlap: bool | None = None):
    """A grid run, or a Monte Carlo run when the scenario says kind: montecarlo.

    An existing output is refused (ConfigError, before any work) unless overwrite.
    SIGINT and SIGTERM stop the run at the next chunk boundary with KeyboardInterrupt,
    its temporary file removed (progress.Interrupts); during JAX's compile, which comes
    before the temporary file, at once with progress.CompileInterrupted.

    progress: say on stderr what the run is doing, from its start (progress.Progress:
    reading inputs, compiling, running with a bar or periodic lines, writing).

    overlap: whether a grid's outputs are compressed and written in a second thread while
    the next chunk computes. By default they are where the computation runs on a GPU. On
    the CPU the two would share its cores, so there the computation pauses while each full
    stage of outputs (h5io.GridWriter.STAGE_BYTES) is compressed and stored.
    """
    status = Progress(enabled=progress)
    # signals are recorded from the start and taken at the next phase or chunk: Python's own
    # handler would raise KeyboardInterrupt anywhere, even inside JAX's import, where a
    # callback swallows it and the run went on
    with Interrupts() as interrupts:
        try:
            status.phase("reading inputs")
            return _run_grid(status, interrupts, portfolio_path, scenario_path, output, backend, dtype,
                             chunk_size, compression, sensitivities, save_paths, overwrite, max_scenarios,
                             overlap)
        finally:
            status.close()


def _run_grid(status, interrupts, portfolio_path, scenario_path, output, backend, dtype, chunk_size,
              compression, sensitivities, save_paths, overwrite, max_scenarios, overlap):
    from .engine import never_parameters
    from .h5io import GridWriter

    pf, sc = load_inputs(portfolio_path, scenario_path)
    if max_scenarios is not None and sc.size > max_scenarios:
        what = "paths" if sc.kind == "montecarlo" else "grid points"
        raise ConfigError([f"{scenario_path}: {sc.size:,} {what}, more than --max-scenarios "
                           f"({max_scenarios:,}); give --yes to run it anyway, or raise the guard"])
    out = Path(output)
    check_output(out, overwrite)
    if save_paths and sc.kind != "montecarlo":
        raise ConfigError([f"{scenario_path}: --save-paths applies to Monte Carlo scenarios "
                           f"(this one is kind: {sc.kind})"])
    be = make_backend(backend, dtype)
    if sc.kind == "named":
        status.phase(f"running: {sc.size:,} named shock sets")
        return run_named(pf, sc, out, be, compression)
    if sc.kind == "montecarlo":
        from .montecarlo import run_montecarlo

        return run_montecarlo(pf, sc, out, be, chunk_size=chunk_size, progress=status.enabled,
                              compression=compression, sensitivities=sensitivities,
                              save_paths=save_paths, status=status)
    cfg, sha = config_json(pf, sc)
    t0 = time.perf_counter()
    run = prepare(pf, sc, be, chunk_size, sensitivities=sensitivities)
    base = evaluate_base(pf, be.dtype)
    attrs = provenance(pf, sc.name, cfg, sha, be.name, be.device, be.dtype, n_scenarios=sc.size)
    extremes = Extremes(never=never_parameters(pf, sc) if sensitivities else None)
    compile_ahead(run._fn, run._args, be, status, "the grid and gradients" if sensitivities else "the grid")
    status.begin(sc.size, "grid points")
    writer = GridWriter(out, sc.axes, pf.cluster_names, attrs, be.dtype, compression, sensitivities)
    with writer:
        if be.is_gpu if overlap is None else overlap:
            _write_beside(run, writer, extremes, status, interrupts)
        else:
            _write_between(run, writer, extremes, status, interrupts)
        status.phase(f"writing {out}")
        writer.write_base(base)
        path = writer.commit()
    how = be.describe() + (f"; {run.factoring.describe(sc)}" if run.factoring is not None else "")
    return RunResult(path, pf, sc, how, base, extremes, time.perf_counter() - t0, run.chunk_size, sha,
                     writer.seconds)


def compile_ahead(fn, args, backend, status: Progress, what: str = "the chunks", extra: tuple = ()) -> None:
    """JAX: compile fn for (*args, first start, *extra) before the first chunk, saying so,
    in a worker thread, so that Ctrl-C and SIGTERM stop the compile at once
    (progress.in_worker) with progress.CompileInterrupted. Other backends, and functions
    that are not jitted, have nothing to compile here."""
    if backend.name != "jax" or not hasattr(fn, "lower"):
        return
    from .jax_adapter import cache_hits, compile_ahead as compile_now, compile_cache_on
    from .progress import CompileInterrupted, in_worker

    how = "first run of these shapes; cached afterwards" if compile_cache_on() else "compile cache off"
    status.phase(f"compiling {what} for {backend.name} on {backend.device} ({how})")
    hits, t0 = cache_hits(), time.perf_counter()
    try:
        in_worker(lambda: compile_now(fn, *args, backend.xp.asarray(0), *extra), name="stresstest-compile")
    except KeyboardInterrupt as exc:
        raise CompileInterrupted() from exc
    took = time.perf_counter() - t0
    status.note(f"read the compiled program from the cache in {took:.1f} s" if cache_hits() > hits
                else f"compiled in {took:.1f} s")


def _write_between(run, writer, extremes, bar, interrupts) -> None:
    """The chunks written by this thread; the next chunk is launched only after a write
    that compresses and stores a full stage (the chunks in between still compute while
    this thread summarises and stages the last one)."""
    for chunk in run.chunks(pause=writer.due):
        interrupts.check()
        writer.write(chunk.start, chunk.stop, chunk.outputs)
        extremes.update(chunk)
        bar.advance(chunk.stop - chunk.start)


def _write_beside(run, writer, extremes, bar, interrupts) -> None:
    """The chunks written by a second thread while the next chunk computes (HDF5 and the
    backends release the GIL); at most two chunks wait in the queue."""
    pending: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def drain():
        while (chunk := pending.get()) is not None:
            if not failure:
                try:
                    writer.write(chunk.start, chunk.stop, chunk.outputs)
                except BaseException as exc:  # reported by the main thread
                    failure.append(exc)

    thread = threading.Thread(target=drain, name="stresstest-writer", daemon=True)
    thread.start()
    try:
        for chunk in run.chunks():
            interrupts.check()
            if failure:
                break
            pending.put(chunk)
            extremes.update(chunk)
            bar.advance(chunk.stop - chunk.start)
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]


def run_one_shard(portfolio_path, scenario_path, output, shard: str, *, backend="auto", dtype="float64",
                  chunk_size=None, progress=True, sensitivities=False):
    """`run --shard I/N`: one shard of a grid into the folder `output`.

    SIGINT and SIGTERM stop it at the next chunk boundary (every Progress.advance is
    one) with KeyboardInterrupt; run_shard then removes its temporary file."""
    from .shards import parse_shard, run_shard

    pf, sc = load_inputs(portfolio_path, scenario_path)
    i, n = parse_shard(shard, sc.size)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError([f"{out}: with --shard, -o names a folder for the shard files"])
    be = make_backend(backend, dtype)
    def compile_first(run, bar):
        compile_ahead(run._fn, run._args, be, bar, "the shard's chunks")

    with Interrupts():
        return run_shard(pf, sc, out, i, n, be, chunk_size=chunk_size, progress=progress,
                         sensitivities=sensitivities, prepared=compile_first,
                         origin={"portfolio": str(Path(portfolio_path).resolve()),
                                 "scenario": str(Path(scenario_path).resolve())})


@dataclass
class NamedResult:
    path: Path
    portfolio: Portfolio
    scenario: object
    backend: str
    rows: list
    seconds: float
    config_sha256: str


def run_named(pf, sc, out: Path, be, compression="gzip") -> NamedResult:
    """A `kind: named` run: each shock set evaluated directly (numpy; a handful of rows)."""
    from .named import evaluate_named, rows, write_named

    t0 = time.perf_counter()
    cfg, sha = config_json(pf, sc)
    outputs = evaluate_named(pf, sc)
    attrs = provenance(pf, sc.name, cfg, sha, "numpy", "cpu", np.float64, n_scenarios=sc.size, kind="named")
    path = write_named(out, pf, sc, outputs, attrs, compression)
    return NamedResult(path, pf, sc, "numpy on cpu, float64", rows(pf, sc, outputs),
                       time.perf_counter() - t0, sha)
