"""Monte Carlo runs: paths in chunks, streaming summaries, pathwise sensitivities, the file.

The paths and their gradients are computed in mc_paths.py, summarised on the host in
mc_summary.py; this module drives a whole run from inputs to file: the compiles, the
chunks, the sensitivities pass after the tails are known, and the file (mc_io.py).
Nothing holds every path unless --save-paths streams them to the file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .backends import Backend, BackendError
from .config import Portfolio, config_json
from .mc_config import MonteCarlo
from .mc_paths import MonteCarloRun, gradient_pass, prepare
from .mc_summary import Summary, tail_thresholds
from .outputs import LEVELS
from .results import Result


@dataclass(kw_only=True)
class MonteCarloResult(Result):
    """A Monte Carlo run's result: the summaries and, with --sensitivities, the gradients."""

    summary: Summary
    gradients: dict | None
    chunk_size: int


def summary_workers(be: Backend) -> int:
    """Threads for the summaries (Summary.workers): several where the paths are evaluated
    on a GPU, whose host cores are otherwise idle; one on the CPU, where they would take
    cores from XLA's threads (no gain measured there: benchmarks/README.md, "Measurements
    behind design choices in the code")."""
    return max(1, min(8, (os.cpu_count() or 1) - 1)) if be.is_gpu else 1


def chunks_ahead(run: MonteCarloRun) -> int:
    """Chunks of paths computed ahead of the summaries: a block's worth (Summary.BLOCK
    paths, about 14 MiB of outputs for the example), so that the chunks' threads go on
    computing while the summaries absorb a whole block at once; with two chunks ahead
    they waited for it (benchmarks/README.md, "Measurements behind design choices in the
    code")."""
    return max(1, Summary.BLOCK // run.chunk_size)


def run_montecarlo(pf: Portfolio, mc: MonteCarlo, out: Path, be: Backend, *, chunk_size=None,
                   progress=True, compression="gzip", sensitivities=False,
                   save_paths=False, status=None) -> MonteCarloResult:
    """status: the run's progress.Progress (phases and counts on stderr), or None for one
    of its own (enabled by `progress`). The paths' compile, and with sensitivities the
    gradients' compile, are phases of their own; Ctrl-C stops either at once
    (progress.CompileInterrupted)."""
    from .h5io import provenance
    from .mc_io import MonteCarloWriter
    from .progress import Interrupts, Progress, compile_ahead

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
            compiling = compile_ahead(run._fn, run._args, be, bar, "the paths")
            writer = MonteCarloWriter(out, pf, mc, attrs, be.dtype, compression, save_paths)
            with writer:  # made while the program compiles; removed if the compile is interrupted
                run._fn = compiling.program()
                bar.begin(mc.paths, "paths")
                for chunk in run.chunks(ahead=chunks_ahead(run)):
                    interrupts.check()
                    summary.add(chunk.outputs, chunk.start)
                    if save_paths:
                        writer.write_paths(chunk.start, chunk.stop, chunk.outputs)
                    bar.advance(chunk.stop - chunk.start)
                gradients = pathwise_gradients(run, summary, bar) if sensitivities else None
                bar.phase(f"writing {out}")
                writer.write_summary(summary, gradients)
                path = writer.commit()
    finally:
        if status is None:
            bar.close()
    return MonteCarloResult(path=path, portfolio=pf, scenario=mc, backend=be.describe(), summary=summary,
                            gradients=gradients, seconds=time.perf_counter() - t0, chunk_size=run.chunk_size,
                            config_sha256=sha)


def pathwise_gradients(run: MonteCarloRun, summary: Summary, status) -> dict:
    """The sensitivities pass (mc_paths.GradientPass), the CVaR tails cut where the summary
    of every path put them. status (a progress.Progress): the pass's own compile and its
    own count of paths (its rate is not the forward pass's), each chunk a boundary where a
    signal stops it."""
    from .progress import compile_ahead

    cuts = {lv: tail_thresholds(summary.sketches["npv"][0], 1 - lv) for lv in LEVELS}
    grads = gradient_pass(run, cuts)
    grads.fn = compile_ahead(grads.fn, grads.args, run.backend, status, "the sensitivities pass",
                             extra=grads.extra).program()
    status.begin(run.total, "paths, sensitivities pass")
    return grads.gradients(status.advance)
