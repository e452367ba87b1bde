"""A stress run from files to a result file: what `stresstest run` delegates to."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import make_backend
from .config import Portfolio, config_json, load_portfolio
from .grid_config import Scenario
from .loaders import load_scenario
from .engine import Extremes, evaluate_base, prepare
from .h5io import check_output, provenance
from .progress import Interrupts, Progress, compile_ahead
from .results import Result
from .validation import ConfigError


@dataclass(kw_only=True)
class RunResult(Result):
    """A grid run's result."""

    base: dict[str, np.ndarray]
    extremes: Extremes
    chunk_size: int
    writing_s: float = 0.0  # in the writer: staging, compressing, storing, committing


def load_inputs(portfolio_path, scenario_path) -> tuple[Portfolio, Scenario]:
    pf = load_portfolio(portfolio_path)
    sc = load_scenario(scenario_path, pf)
    return pf, sc


def run_scenario(portfolio_path, scenario_path, output, *, backend: str = "auto", dtype: str = "float64",
             chunk_size: int | None = None, progress: bool = True,
             compression: str | None = "gzip", sensitivities: bool = False, save_paths: bool = False,
             overwrite: bool = False, max_scenarios: int | None = None, overlap: bool | None = None,
             inputs: tuple[Portfolio, Scenario] | None = None):
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
    stage of outputs (grid_file.GridWriter.STAGE_BYTES) is compressed and stored.

    inputs: the portfolio and scenario as load_inputs reads those files, where the caller
    has read them already (the command line checks them first), so that they are not
    read twice.
    """
    status = Progress(enabled=progress)
    # signals are recorded from the start and taken at the next phase or chunk: Python's own
    # handler would raise KeyboardInterrupt anywhere, even inside JAX's import, where a
    # callback swallows it and the run went on
    with Interrupts() as interrupts:
        try:
            status.phase("reading inputs")
            return _run_scenario(status, interrupts, portfolio_path, scenario_path, output, backend, dtype,
                             chunk_size, compression, sensitivities, save_paths, overwrite, max_scenarios,
                             overlap, inputs)
        finally:
            status.close()


def _run_scenario(status, interrupts, portfolio_path, scenario_path, output, backend, dtype, chunk_size,
              compression, sensitivities, save_paths, overwrite, max_scenarios, overlap, inputs):
    pf, sc = inputs or load_inputs(portfolio_path, scenario_path)
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
    return RUNS[sc.kind](pf, sc, out, be, status=status, interrupts=interrupts, chunk_size=chunk_size,
                         compression=compression, sensitivities=sensitivities, save_paths=save_paths,
                         overlap=overlap)


def run_grid_file(pf, sc, out: Path, be, *, status: Progress, interrupts, chunk_size=None, compression="gzip",
                  sensitivities=False, overlap=None, **_) -> RunResult:
    """A `kind: grid` run: every grid point in chunks, written as they come."""
    from .engine import never_parameters
    from .grid_file import GridWriter, industry_coordinate, output_groups

    cfg, sha = config_json(pf, sc)
    t0 = time.perf_counter()
    run = prepare(pf, sc, be, chunk_size, sensitivities=sensitivities)
    # the program compiles in a worker while this thread evaluates the base case and
    # makes the file (whose context removes it if the compile is interrupted)
    compiling = compile_ahead(run._fn, run._args, be, status, "the grid and gradients" if sensitivities else "the grid")
    base = evaluate_base(pf, be.dtype)
    attrs = provenance(pf, sc.name, cfg, sha, be.name, be.device, be.dtype, n_scenarios=sc.size)
    extremes = Extremes(never=never_parameters(pf, sc) if sensitivities else None)
    writer = GridWriter(out, sc.axes, pf.cluster_names, attrs, be.dtype, compression, sensitivities,
                        industry_coordinate(pf), output_groups(pf))
    with writer:
        run._fn = compiling.program()
        status.begin(sc.size, "grid points")
        if be.is_gpu if overlap is None else overlap:
            _write_beside(run, writer, extremes, status, interrupts)
        else:
            _write_between(run, writer, extremes, status, interrupts)
        status.phase(f"writing {out}")
        writer.write_base(base)
        path = writer.commit()
    how = be.describe() + (f"; {run.factoring.describe(sc)}" if run.factoring is not None else "")
    return RunResult(path=path, portfolio=pf, scenario=sc, backend=how, base=base, extremes=extremes,
                     seconds=time.perf_counter() - t0, chunk_size=run.chunk_size, config_sha256=sha,
                     writing_s=writer.seconds)


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
        program = compile_ahead(run._fn, run._args, be, bar, "the shard's chunks").program()
        if len(run.devices()) == 1:  # a compiled program runs on the device it was compiled for
            run._fn = program

    with Interrupts():
        return run_shard(pf, sc, out, i, n, be, chunk_size=chunk_size, progress=progress,
                         sensitivities=sensitivities, prepared=compile_first,
                         origin={"portfolio": str(Path(portfolio_path).resolve()),
                                 "scenario": str(Path(scenario_path).resolve())})


def _run_montecarlo(pf, sc, out, be, *, status, chunk_size=None, compression="gzip", sensitivities=False,
                    save_paths=False, **_):
    from .montecarlo import run_montecarlo

    return run_montecarlo(pf, sc, out, be, chunk_size=chunk_size, progress=status.enabled,
                          compression=compression, sensitivities=sensitivities, save_paths=save_paths,
                          status=status)


def _run_named(pf, sc, out, be, *, status, compression="gzip", **_):
    from .named_run import run_named

    status.phase(f"running: {sc.size:,} named shock sets")
    return run_named(pf, sc, out, be, compression)


# Each scenario kind's run, found by the scenario's kind (loaders.LOADERS finds its loader):
# a new kind is one module in the runs layer and one line here (docs/architecture.md).
RUNS = {"grid": run_grid_file, "montecarlo": _run_montecarlo, "named": _run_named}
