"""Command line: parses, delegates to the library, prints. No arithmetic here."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from .version import __version__
from .backends import BACKENDS, DTYPES, BackendError, keep_compiled_programs
from .presets import DEFAULT_PORTFOLIO, DEFAULT_SCENARIO, list_presets, preset_kind, resolve
from .submit import MERGE_MEM, MERGE_TIME
from .validation import ConfigError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _io_reason(err: OSError) -> str:
    """The system's reason for a failed write; HDF5 wraps it in a long message with errno."""
    import os
    import re

    if err.errno:
        return os.strerror(err.errno)
    if err.strerror and len(err.strerror) < 120:
        return err.strerror
    m = re.search(r"errno = (\d+)", str(err))
    if m:
        return os.strerror(int(m.group(1)))
    return str(err)[:200]


def _exit_after_io_failure() -> None:
    """Exit 1 without the interpreter's teardown: after a write that failed (a full disk),
    HDF5 keeps the half-closed file in its library state and its exit handler crashes
    trying to flush it again. The temporary file is already removed; nothing else waits."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_FAILURE)


def _exit_during_compile(message: str) -> None:
    """Exit 130 at once after Ctrl-C or SIGTERM during a compile (before any file): the
    compile thread is left inside XLA, and the interpreter's teardown would wait on it or
    abort under it ("FATAL: exception not rethrown")."""
    import os

    click.echo(message, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


@contextmanager
def _command_exits(written: str, output=None):
    """The exits of a command that computes and writes a file: bad input (2, the problems),
    Ctrl-C or SIGTERM during a compile or after (130), a failed write of `output` (1; None:
    the command's writer reports its own). `written` names the file in the messages
    ("result file", "rank file")."""
    from .progress import CompileInterrupted

    try:
        yield
    except (ConfigError, BackendError) as err:
        _fail_input(err)
    except CompileInterrupted:
        _exit_during_compile(f"interrupted while compiling: no {written} written")
    except KeyboardInterrupt:
        click.echo(f"interrupted: no {written} written", err=True)
        sys.exit(130)
    except OSError as err:  # the disk filled up, the folder went away, ...
        if output is None:
            raise
        click.echo(f"error: {output}: cannot write ({_io_reason(err)}); no {written} written", err=True)
        _exit_after_io_failure()


def _fail_input(err: Exception) -> None:
    lines = err.problems if isinstance(err, ConfigError) else [str(err)]
    for line in lines:
        click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_BAD_INPUT)


STRICT_HELP = "Refuse (exit 2) values far outside realistic ranges instead of warning about them."


def _warn(lines, strict: bool = False) -> None:
    """The inputs' plausibility warnings (validation.PLAUSIBLE) as `warning: FILE: key.path:
    reason` on stderr; with --strict they are errors (exit 2)."""
    lines = list(dict.fromkeys(lines))
    if strict and lines:
        _fail_input(ConfigError(lines))
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _check_inputs(portfolio, scenario, strict: bool):
    """Load a run's inputs before it, for their problems and warnings; returns them (the
    portfolio and the scenario) for a run that can take them."""
    from .config import load_portfolio
    from .loaders import load_scenario

    try:
        pf = load_portfolio(portfolio)
        sc = load_scenario(scenario, pf)
    except ConfigError as err:
        _fail_input(err)
    _warn(pf.warnings + getattr(sc, "warnings", []), strict)
    return pf, sc


def _complete_names(names, incomplete, help=None):
    from click.shell_completion import CompletionItem

    return [CompletionItem(n, help=help) for n in names if n.startswith(incomplete)]


def _complete_file_or_preset(kind):
    """Shell completion of a file argument that also takes a bundled preset's name: the
    presets of that kind, then files (a shell offers files where no preset matches)."""

    def complete(ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        presets = [n for n, p in list_presets().items() if kind is None or preset_kind(p) == kind]
        return [CompletionItem(incomplete, type="file"),
                *_complete_names(presets, incomplete, f"bundled {kind or 'preset'}")]

    return complete


def _complete_dir(ctx, param, incomplete):
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


def _complete_param(ctx, param, incomplete):
    """--param: the parameter table (kernels/params.py) and the named shocks."""
    from .kernels.params import NAMED_SHOCKS, PARAM_NAMES

    return (_complete_names(NAMED_SHOCKS, incomplete, "named shock")
            + _complete_names(PARAM_NAMES, incomplete, "parameter"))


def _complete_named_set(ctx, param, incomplete):
    from .named import list_library

    return _complete_names(list_library(), incomplete, "named scenario")


_complete_portfolio = _complete_file_or_preset("portfolio")
_complete_scenario = _complete_file_or_preset("scenario")
_complete_input = _complete_file_or_preset(None)


BACKEND_HELP = "auto: JAX on a GPU, else CuPy on a GPU, else JAX on the CPU, else numpy."
COMPRESSION_HELP = ("HDF5 filter of the result datasets. gzip: shuffle + deflate (grids are "
                    "compressed in parallel threads); lzf: HDF5's own filter, in one thread (on a "
                    "10^6-point grid slower to write than gzip, for files about as large); none: "
                    "fastest to write, files about twice as large.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stresstest")
def main() -> None:
    """Stress-test the returns of a portfolio of GPU clusters.

    Compiled JAX programs are kept in ~/.cache/stresstest/jax, so a rerun of the same
    shapes skips the compile; STRESSTEST_COMPILE_CACHE names another folder, or off.
    """
    keep_compiled_programs()


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--scenario", "-s", "scenario", default=None, shell_complete=_complete_scenario,
              help=f"Scenario file or bundled preset name [default: {DEFAULT_SCENARIO}].")
@click.option("-o", "--output", default="stress.h5", show_default=True, type=click.Path(),
              help="HDF5 result file.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help=BACKEND_HELP)
@click.option("--dtype", type=click.Choice(tuple(DTYPES)), default="float64", show_default=True,
              help="Floating-point precision of the whole evaluation; float32 is faster on most GPUs, "
                   "its error against float64 is in docs/model.md.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Grid points per chunk [default: sized to keep memory near 128 MiB on a CPU]; "
                   "on a grid with interpolated axes, rounded down to whole slabs (at least one).")
@click.option("--compression", type=click.Choice(["gzip", "lzf", "none"]), default="gzip",
              show_default=True, help=COMPRESSION_HELP)
@click.option("--sensitivities", is_flag=True,
              help="Also write gradients of NPV, ROI and IRR for every parameter (needs JAX).")
@click.option("--shard", default=None, metavar="I/N",
              help="Evaluate only shard I of N (from 0) into the folder -o names; see merge.")
@click.option("--save-paths", is_flag=True,
              help="Monte Carlo: also write every path's outputs (group 'paths' of the file).")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no table.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--max-scenarios", type=click.IntRange(min=1), default=100_000_000, show_default=True,
              help="Refuse larger grids (or path sets) unless --yes: a guard against typos in linspace counts.")
@click.option("--yes", "-y", is_flag=True, help="Run a grid larger than --max-scenarios.")
@click.option("--strict", is_flag=True, help=STRICT_HELP)
def run(portfolio, scenario, output, backend, dtype, chunk_size, compression, sensitivities, shard,
        save_paths, quiet, as_json, overwrite, max_scenarios, yes, strict):
    """Evaluate PORTFOLIO (file or preset; default: the bundled example) on a grid of shocks
    or a Monte Carlo set of paths (the scenario's kind)."""
    from .report import PRINTERS, run_json
    from .progress import CompileInterrupted
    from .runner import run_scenario, run_one_shard

    inputs = _check_inputs(resolve(portfolio, DEFAULT_PORTFOLIO), resolve(scenario, DEFAULT_SCENARIO), strict)
    if shard is not None:
        if save_paths:
            _fail_input(ConfigError(["--save-paths: not with --shard (a shard keeps its paths' "
                                     "summaries); run the paths you want to keep in one process"]))
        try:
            path, computed = run_one_shard(resolve(portfolio, DEFAULT_PORTFOLIO),
                                           resolve(scenario, DEFAULT_SCENARIO), output, shard,
                                           backend=backend, dtype=dtype, chunk_size=chunk_size,
                                           progress=not quiet, sensitivities=sensitivities)
        except (ConfigError, BackendError) as err:
            _fail_input(err)
        except CompileInterrupted:
            _exit_during_compile("interrupted while compiling: the shard file was not written")
        except KeyboardInterrupt:
            click.echo("interrupted: the shard file was not written", err=True)
            sys.exit(130)
        click.echo(f"{'wrote' if computed else 'complete already, kept'} {path}")
        return

    with _command_exits("result file", output):
        result = run_scenario(
            resolve(portfolio, DEFAULT_PORTFOLIO),
            resolve(scenario, DEFAULT_SCENARIO),
            output,
            backend=backend,
            dtype=dtype,
            chunk_size=chunk_size,
            progress=not (quiet or as_json),
            compression=None if compression == "none" else compression,
            sensitivities=sensitivities,
            save_paths=save_paths,
            overwrite=overwrite,
            max_scenarios=None if yes else max_scenarios,
            inputs=inputs,
        )
    if as_json:
        click.echo(json.dumps(run_json(result), indent=2))
    elif not quiet:
        PRINTERS[result.scenario.kind](result)
    else:
        click.echo(str(result.path))


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--scenario", "-s", "scenario", default=None, shell_complete=_complete_scenario,
              help=f"Scenario file or preset [default: {DEFAULT_SCENARIO}].")
@click.option("--shards", type=click.IntRange(min=1), required=True, help="Number of shards N.")
@click.option("--output-dir", default="shards", show_default=True, type=click.Path(),
              help="Folder for shard files, scripts and logs.")
@click.option("-o", "--output", default="stress.h5", show_default=True, type=click.Path(),
              help="The merged result file the merge job writes.")
@click.option("--partition", default=None, help="Slurm partition (sbatch --partition).")
@click.option("--time", "time_", default=None, help="Per task, e.g. 01:00:00.")
@click.option("--mem", default=None, help="Per task, e.g. 8G.")
@click.option("--gpus-per-task", type=click.IntRange(min=0), default=None,
              help="GPUs per array task (sbatch --gpus-per-task); a task uses every GPU it sees.")
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=None,
              help="CPU cores per array task (sbatch --cpus-per-task).")
@click.option("--account", default=None, help="Slurm account to charge (sbatch --account).")
@click.option("--array-limit", type=click.IntRange(min=1), default=None,
              help="At most K array tasks at once (--array=...%K).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help=BACKEND_HELP)
@click.option("--sensitivities", is_flag=True,
              help="Each shard also writes the gradients (as run --sensitivities; needs JAX).")
@click.option("--sbatch-option", "sbatch_options", multiple=True, metavar="--NAME[=VALUE]",
              help="Another sbatch option for the shard arrays, in its long form (repeatable), "
                   "e.g. --sbatch-option=--qos=high --sbatch-option=--exclusive.")
@click.option("--merge-partition", default=None,
              help="Slurm partition of the merge job [default: the cluster's default partition]; "
                   "the merge needs no GPU.")
@click.option("--merge-time", default=MERGE_TIME, show_default=True, help="Time limit of the merge job.")
@click.option("--merge-mem", default=MERGE_MEM, show_default=True, help="Memory of the merge job.")
@click.option("--merge-sbatch-option", "merge_sbatch_options", multiple=True, metavar="--NAME[=VALUE]",
              help="Another sbatch option for the merge job (repeatable), e.g. --merge-sbatch-option=--qos=low.")
@click.option("--only", default=None, metavar="LIST",
              help="Only these shard indices and ranges, e.g. 3,17 or 0-16,18-199 (reruns).")
@click.option("--dry-run", is_flag=True,
              help="Print the sbatch scripts and the sbatch command lines; submit and write nothing.")
def submit(portfolio, scenario, shards, output_dir, output, partition, time_, mem, gpus_per_task,
           cpus_per_task, account, array_limit, backend, sensitivities, sbatch_options, merge_partition,
           merge_time, merge_mem, merge_sbatch_options, only, dry_run):
    """Run a grid as a Slurm job array of SHARDS tasks, then a merge job."""
    from .runner import load_inputs
    from .submit import SubmitSpec, check_text, parse_only
    from .submit import submit as do_submit

    try:
        for opt, v in (("PORTFOLIO", portfolio), ("--scenario", scenario), ("--output-dir", output_dir),
                       ("--output", output)):
            if v is not None:
                check_text(opt, v)  # before any path is made of it
        pf_path = resolve(portfolio, DEFAULT_PORTFOLIO).resolve()
        sc_path = resolve(scenario, DEFAULT_SCENARIO).resolve()
        pf, sc = load_inputs(pf_path, sc_path)
        _warn(pf.warnings + getattr(sc, "warnings", []))
        if sc.kind == "montecarlo" and sensitivities:
            raise ConfigError(["--sensitivities: Monte Carlo gradients need the whole set's tail "
                               "first; run them in one process (without shards)"])
        what = "paths" if sc.kind == "montecarlo" else "the grid size"
        if shards > sc.size:
            raise ConfigError([f"--shards: at most {what} ({sc.size:,}), got {shards}"])
        indices = parse_only(only, shards)
        spec = SubmitSpec(str(pf_path), str(sc_path), shards, str(Path(output_dir).resolve()), str(Path(output).resolve()),
                          partition, time_, mem, gpus_per_task, cpus_per_task, account, array_limit,
                          backend, sensitivities, list(sbatch_options), merge_partition, merge_time, merge_mem,
                          list(merge_sbatch_options))
        result = do_submit(spec, indices, dry_run)
    except ConfigError as err:
        _fail_input(err)
    if dry_run:
        import shlex

        for path, text, argv in result["submissions"]:
            click.echo(f"==> {path} <==")
            click.echo(text)
            click.echo(f"$ {' '.join(a if a.startswith('--dependency=') else shlex.quote(a) for a in argv)}")
            click.echo("")
        return
    click.echo(f"submitted {len(indices)} shard task(s) of {shards}: array job(s) "
               f"{', '.join(result['arrays'])}; merge job {result['merge']} (after they succeed)")
    click.echo(f"output folder: {result['output_dir']} (logs in logs/); merged file: {output}")
    ids = ",".join(result["arrays"] + [result["merge"]])
    click.echo(f"watch: squeue -j {ids}    details: scontrol show job {result['merge']}")
    import shlex

    click.echo(f"status: stresstest status {shlex.quote(result['output_dir'])}")


@main.command()
@click.argument("directory", type=click.Path(), shell_complete=_complete_dir)
@click.option("-o", "--output", required=True, type=click.Path(), help="The merged result file.")
@click.option("--compression", type=click.Choice(["gzip", "lzf", "none"]), default="gzip",
              show_default=True, help=COMPRESSION_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def merge(directory, output, compression, overwrite):
    """Check a folder of shard files and merge them into one result file."""
    from .h5io import check_output
    from .shards import ShardError
    from .shards import merge as do_merge

    try:
        check_output(Path(output), overwrite)
        path = do_merge(Path(directory), Path(output), None if compression == "none" else compression)
    except ConfigError as err:
        _fail_input(err)
    except ShardError as err:
        for line in err.problems:
            click.echo(f"error: {line}", err=True)
        if err.rerun:
            click.echo(f"rerun only these: {err.rerun}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"merged {directory} into {path}")


@main.command()
@click.argument("directory", type=click.Path(), shell_complete=_complete_dir)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(directory, as_json):
    """Where a shard set stands: each shard done, running, pending, failed or missing.

    From the files (a shard is done when its file is complete and its checksum right, as
    merge checks them), and from squeue and sacct where they answer (scontrol where sacct
    cannot: a cluster without slurmdbd)."""
    from .submit import STATES, set_status

    try:
        st = set_status(Path(directory))
    except ConfigError as err:
        _fail_input(err)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    jobs = st["jobs"]
    head = f"{st['directory']}: {st['shards']} shards"
    if jobs["arrays"]:
        head += f"; array job(s) {', '.join(jobs['arrays'])}"
    click.echo(head)
    click.echo(f"  {'state':<8} {'count':>7}  shards")
    for s in STATES:
        click.echo(f"  {s:<8} {st['counts'][s]:>7}  {st['ranges'][s] or '-'}")
    details = st["details"]
    for s in ("running", "pending", "failed", "missing"):
        rows = [(i, details[str(i)]) for i in st["indices"][s] if str(i) in details]
        if rows:
            click.echo(f"{s}:")
            for i, d in rows[:20]:
                click.echo(f"  {i}: {d}")
            if len(rows) > 20:
                click.echo(f"  … and {len(rows) - 20} more (--json lists every one)")
    if jobs["merge"]:
        click.echo(f"merge job {jobs['merge']}: {jobs['merge_state'] or 'not known to Slurm (ended?)'}")
    if st["merged_file"]:
        f = st["merged_file"]
        click.echo(f"merged file: {f['path']} ({'written' if f['exists'] else 'not written yet'})")
    for note in st["notes"]:
        click.echo(f"note: {note}")
    click.echo("slurm: " + "; ".join(f"{k} {v}" for k, v in st["slurm"].items()))
    if st["rerun"]:
        click.echo(f"rerun the failed and missing ones: {st['rerun']}")


@main.command()
@click.argument("files", nargs=-1, required=True, shell_complete=_complete_input)
@click.option("--portfolio", "-p", default=None, shell_complete=_complete_portfolio,
              help="Portfolio that scenario files refer to [default: the bundled example].")
@click.option("--strict", is_flag=True, help=STRICT_HELP)
def validate(files, portfolio, strict):
    """Check portfolio and scenario FILES (or preset names) without running anything.

    Values far outside realistic ranges (a USD/MWh price where USD/kWh is expected, a
    percent where a fraction is) are warnings, errors with --strict."""
    from .config import load_portfolio
    from .loaders import load_scenario

    problems: list[str] = []
    warnings: list[str] = []
    pf = None
    for f in files:
        path = resolve(f, f)
        try:
            kind = preset_kind(path) if path.is_file() else "portfolio"
        except (OSError, UnicodeDecodeError):
            kind = "portfolio"
        try:
            if kind == "scenario":
                if pf is None:
                    pf = load_portfolio(resolve(portfolio, DEFAULT_PORTFOLIO))
                    (problems if strict else warnings).extend(pf.warnings)
                sc = load_scenario(path, pf)
                what = "paths" if sc.kind == "montecarlo" else "grid points"
                found, ok = getattr(sc, "warnings", []), f"scenario {sc.name!r}, {sc.size:,} {what}"
            else:
                p = load_portfolio(path)
                pf = pf or p
                found, ok = p.warnings, f"portfolio {p.name!r}, {len(p.clusters)} clusters"
            (problems if strict else warnings).extend(found)
            if not (strict and found):
                click.echo(f"ok: {path}: {ok}")
        except ConfigError as err:
            problems += err.problems
    _warn(warnings)
    problems = list(dict.fromkeys(problems))
    if problems:
        for line in problems:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows per table.")
@click.option("--cluster", "clusters", multiple=True, help="Only these clusters (and the portfolio).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every row) instead of tables.")
def sensitivities(portfolio, top, clusters, as_json):
    """Tornado at the base case: NPV change for a +-10 % move of each parameter."""
    from .backends import jax_importable
    from .config import load_portfolio
    from .tornado import print_tornado, tornado

    if not jax_importable():
        _fail_input(BackendError("sensitivities need JAX (automatic differentiation): pip install jax"))
    try:
        pf = load_portfolio(resolve(portfolio, DEFAULT_PORTFOLIO))
        for c in clusters:
            if c not in pf.cluster_names:
                raise ConfigError([f"--cluster: unknown cluster {c!r} (clusters: {', '.join(pf.cluster_names)})"])
    except ConfigError as err:
        _fail_input(err)
    _warn(pf.warnings)
    result = tornado(pf)
    if clusters:
        result["scopes"] = {k: v for k, v in result["scopes"].items() if k == "portfolio" or k in clusters}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_tornado(pf, result, top)


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--param", "param", required=True, shell_complete=_complete_param,
              help="A parameter (its value is set) or a named shock: utilization, price, energy, obsolescence.")
@click.option("--target", default="npv=0", show_default=True,
              help="npv=V, irr=R, equity_irr=R, min_dscr=D or payback_months=M.")
@click.option("--cluster", default=None, help="Only this cluster: shock it alone, target its own output.")
@click.option("--range", "bracket", type=(float, float), default=None,
              help="Bracket to search [default: the parameter's range or the shock's usual span].")
@click.option("--over", default=None,
              help="Trace the breakeven along this axis of the scenario grid (others neutral).")
@click.option("--scenario", "-s", "scenario", default=None, shell_complete=_complete_scenario,
              help=f"Scenario for --over [default: {DEFAULT_SCENARIO}].")
@click.option("-o", "--output", default="breakeven.h5", show_default=True, type=click.Path(),
              help="HDF5 file for the --over curve.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --over output file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def breakeven(portfolio, param, target, cluster, bracket, over, scenario, output, overwrite, as_json):
    """Value of a parameter or shock at which an output meets a target, per cluster and portfolio.

    Where the output jumps over the target (a debt term in whole months, a threshold),
    no value meets it: the answer names the values either side of the jump."""
    from .backends import jax_importable
    from .breakeven import breakeven as solve_breakeven
    from .breakeven import breakeven_curve
    from .config import load_portfolio
    from .loaders import load_scenario

    if not jax_importable():
        _fail_input(BackendError("breakeven needs JAX (automatic differentiation): pip install jax"))
    try:
        if over is not None:
            from .h5io import check_output

            check_output(Path(output), overwrite)
        pf = load_portfolio(resolve(portfolio, DEFAULT_PORTFOLIO))
        if over is not None:
            sc = load_scenario(resolve(scenario, DEFAULT_SCENARIO), pf)
            curve = breakeven_curve(pf, sc, over, param, target, cluster, bracket)
        else:
            rows = solve_breakeven(pf, param, target, cluster, bracket)
    except ConfigError as err:
        _fail_input(err)
    _warn(pf.warnings)
    if over is not None:
        _breakeven_curve_out(pf, sc, curve, param, target, over, cluster, bracket, output, as_json)
        return
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    click.echo(f"{pf.name}: {param} such that {target}")
    for r in rows:
        click.echo(f"  {r.scope:<18} {r.describe(target)}")


def _breakeven_curve_out(pf, sc, curve, param, target, over, cluster, bracket, output, as_json) -> None:
    """Write the --over curve file and print it (every scope per axis value)."""
    from .breakeven import curve_attrs, curve_table, write_curve

    try:
        write_curve(output, curve, curve_attrs(pf, sc, param, target, over, cluster, bracket))
    except KeyboardInterrupt:
        click.echo("interrupted: no breakeven file written", err=True)
        sys.exit(130)
    except OSError as err:
        click.echo(f"error: {output}: cannot write ({_io_reason(err)}); no breakeven file written", err=True)
        _exit_after_io_failure()
    rows = curve["rows"]
    if as_json:
        click.echo(json.dumps({"over": over, "values": np.asarray(curve["axis"].values).tolist(),
                               "scopes": curve["scopes"],
                               "breakeven": [[r.value for r in row] for row in rows],
                               "status": [[r.status for r in row] for row in rows],
                               "jump": [[None if r.jump is None else list(r.jump) for r in row] for row in rows],
                               "side": [[r.side for r in row] for row in rows],
                               "value_in_units": [[r.to_dict()["value_in_units"] for r in row] for row in rows],
                               "quantity": [r.quantity for r in rows[0]], "unit": rows[0][0].unit,
                               "output": str(output)}, indent=2))
        return
    click.echo(f"{pf.name}: {param} such that {target}, along {over}; wrote {output}")
    for line in curve_table(curve, param):
        click.echo(line)


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--scenario", "-s", "scenario", default="montecarlo", show_default=True,
              shell_complete=_complete_scenario, help="The Monte Carlo scenario whose inputs are ranked.")
@click.option("-o", "--output-file", "output_file", default="rank.h5", show_default=True, type=click.Path(),
              help="HDF5 file of the indices (an `input` coordinate).")
@click.option("--output", "output", type=click.Choice(("npv", "irr", "roi", "equity_irr")), default="npv",
              show_default=True, help="The portfolio output whose spread is explained.")
@click.option("--group", "groups", multiple=True, metavar="NAME=INPUT,INPUT",
              help="Rank these inputs as one (repeatable); --list-inputs names them.")
@click.option("--permutations", type=click.IntRange(min=10), default=10000, show_default=True,
              help="Random permutations of the Shapley estimator (its error falls as 1/sqrt).")
@click.option("--inner", type=click.IntRange(min=2), default=3, show_default=True,
              help="Conditional draws per permutation step (Song et al. advise 3).")
@click.option("--variance-samples", type=click.IntRange(min=10), default=20000, show_default=True,
              help="Paths for the output's variance.")
@click.option("--sobol-samples", type=click.IntRange(min=0), default=8000, show_default=True,
              help="Rows of the Sobol estimators (0: none).")
@click.option("--dgsm-samples", type=click.IntRange(min=0), default=8000, show_default=True,
              help="Paths of the DGSM gradient pass (0: none; needs JAX).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="[default: the scenario's seed]")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help=BACKEND_HELP)
@click.option("--list-inputs", is_flag=True, help="List the scenario's inputs and stop.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no table.")
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def rank(portfolio, scenario, output_file, output, groups, permutations, inner, variance_samples, sobol_samples,
         dgsm_samples, seed, backend, list_inputs, quiet, as_json, overwrite):
    """Which uncertain input of a Monte Carlo scenario drives the spread of an output most:
    Shapley effects (correlated inputs), Sobol indices of independent groups, DGSM bounds
    (docs/decisions.md)."""
    from .rank import RankSettings, list_inputs_text, parse_group, rank_files, rank_json
    from .rank_report import print_rank

    with _command_exits("rank file", output_file):
        if list_inputs:
            click.echo(list_inputs_text(resolve(portfolio, DEFAULT_PORTFOLIO), resolve(scenario, None)))
            return
        settings = RankSettings(output=output, permutations=permutations, inner=inner,
                                variance_samples=variance_samples, sobol_samples=sobol_samples,
                                dgsm_samples=dgsm_samples, seed=seed, groups=tuple(parse_group(g) for g in groups))
        result = rank_files(resolve(portfolio, DEFAULT_PORTFOLIO), resolve(scenario, None), output_file,
                            settings=settings, backend=backend, overwrite=overwrite, progress=not (quiet or as_json))
    report = rank_json(result)
    if as_json:
        click.echo(json.dumps(report, indent=2, allow_nan=False))
    elif quiet:
        click.echo(str(result.path))
    else:
        print_rank(report)


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--scenario", "-s", "scenario", default="montecarlo", show_default=True,
              shell_complete=_complete_scenario, help="The Monte Carlo scenario whose paths the mix is chosen on.")
@click.option("--vary", "varies", multiple=True, required=True, metavar="PARAM[@CLUSTER]=LO..HI",
              help="A parameter to choose between LO and HI (repeatable): a cluster parameter, an item field by "
                   "path (contracts.anchor.share) or a version 2 field; set in every cluster that has it, or in "
                   "CLUSTER alone.")
@click.option("--objective", default="mean_npv", show_default=True,
              help="What to maximise: mean_npv, mean_irr or mean_equity_npv.")
@click.option("--constraint", "constraints", multiple=True, metavar="NAME<=LIMIT",
              help="An upper limit (repeatable): cvar_95<=USD (a loss), prob_npv_negative<=P, "
                   "prob_dscr_below_covenant<=P (the scenario's covenant_dscr).")
@click.option("--frontier", type=click.IntRange(min=2), default=None, metavar="N",
              help="Also sweep the CVaR 95 limit over N values: the best mix at each (the efficient frontier).")
@click.option("--paths", type=click.IntRange(min=100), default=None,
              help="In-sample paths: the scenario's first N [default: the smaller of its paths and 10000].")
@click.option("--starts", type=click.IntRange(min=1), default=1, show_default=True,
              help="Starting points of the local search: the current mix, the bounds' centre, then random ones.")
@click.option("-o", "--output", default="optimize.h5", show_default=True, type=click.Path(),
              help="HDF5 file of the answer.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help=BACKEND_HELP)
def optimize(portfolio, scenario, varies, objective, constraints, frontier, paths, starts, output, overwrite,
             as_json, backend):
    """Which mix is best within tail-risk limits: the values of the --vary parameters that
    maximise the objective on the scenario's paths, every constraint met (docs/decisions.md).
    "No feasible mix in the bounds" is an answer (exit 0, feasible false)."""
    from .optimize import optimize_files
    from .report import PRINTERS, run_json

    with _command_exits("optimize file", output):
        result = optimize_files(resolve(portfolio, DEFAULT_PORTFOLIO), resolve(scenario, None), output,
                                varies=varies, objective=objective, constraints=constraints, frontier=frontier,
                                paths=paths, starts=starts, backend=backend, overwrite=overwrite)
    _warn(result.portfolio.warnings + getattr(result.scenario, "warnings", []))
    if as_json:
        click.echo(json.dumps(run_json(result), indent=2))
    else:
        PRINTERS[result.kind](result)


@main.command()
@click.argument("portfolio", required=False)
@click.option("--scenario", "-s", "scenario", default=None,
              help="Grid, named or Monte Carlo scenario (file or preset) to read a point of "
                   "[default: none, the base case].")
@click.option("--at", "at", multiple=True, metavar="AXIS=VALUE",
              help="The grid point: a value of each axis (within 1e-9 of one of its values); "
                   "a named scenario: --at scenario=SET.")
@click.option("--path", "path_index", type=click.IntRange(min=0), default=None, metavar="N",
              help="Monte Carlo: path N, with the run's draws (seed and path index).")
@click.option("--cluster", "clusters", multiple=True,
              help="Only these clusters' statements (the portfolio's left out).")
@click.option("--annual", is_flag=True,
              help="By year: flows summed, year 0 = month 0, DSCR the year's minimum.")
@click.option("-o", "--output", default=None, type=click.Path(),
              help="Write FILE.csv, FILE.xlsx or FILE.h5 (every scope) instead of the table.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every scope and column).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def cashflows(portfolio, scenario, at, path_index, clusters, annual, output, as_json, overwrite):
    """The cash-flow statement of PORTFOLIO month by month (or by year): revenue, energy,
    opex lines, EBITDA, depreciation, tax, resale, debt, project and equity cash flow and
    DSCR, at the base case, a grid point (--at), a named set or a Monte Carlo path (--path).

    The table shows the portfolio (or the --cluster statements); files and --json hold the
    portfolio and every cluster. Columns: docs/model.md, "The cash-flow statement"."""
    from .config import load_portfolio
    from .loaders import load_scenario
    from .statement import (check_clusters, compute, output_format, print_statement,
                            resolve_case, write)

    try:
        if output is not None:
            from .h5io import check_output

            output_format(Path(output))
            check_output(Path(output), overwrite)
        pf = load_portfolio(resolve(portfolio, DEFAULT_PORTFOLIO))
        check_clusters(pf, clusters)
        sc = load_scenario(resolve(scenario, scenario), pf) if scenario is not None else None
        case = resolve_case(pf, sc, at, path_index)
    except ConfigError as err:
        _fail_input(err)
    _warn(pf.warnings)
    st = compute(pf, case).select(list(clusters))
    if annual:
        st = st.annual()
    if output is not None:
        try:
            write(st, Path(output))
        except KeyboardInterrupt:
            click.echo("interrupted: no statement file written", err=True)
            sys.exit(130)
        except OSError as err:
            click.echo(f"error: {output}: cannot write ({_io_reason(err)}); no statement file written",
                       err=True)
            _exit_after_io_failure()
    if as_json:
        click.echo(json.dumps(st.to_json(output), indent=2))
    elif output is not None:
        what = (f"the portfolio and {len(st.clusters)} clusters" if st.with_portfolio
                else ", ".join(st.clusters))
        click.echo(f"wrote {output}: cash-flow statement by {st.period} of {what}, {case.label}")
    else:
        print_statement(st, scopes=None if clusters else [0])
        if not clusters:
            click.echo("per cluster: --cluster NAME; every scope: -o FILE.csv|.xlsx|.h5 or --json")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json):
    """Versions, backends and devices found."""
    from .report import environment_info

    data = environment_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>18}: {value}")


@main.command()
@click.argument("result", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(result, as_json):
    """What a RESULT file holds: kind, axes and sizes, outputs, provenance, base, worst and best."""
    from .inspection import describe, print_description

    try:
        info = describe(Path(result))
    except ConfigError as err:
        _fail_input(err)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        print_description(info)


@main.command()
@click.argument("portfolio", required=False, shell_complete=_complete_portfolio)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(portfolio, as_json):
    """Every resolved parameter of every cluster, marking values from defaults: or the model."""
    from .config import load_portfolio
    from .inspection import portfolio_table, print_portfolio_table

    try:
        pf = load_portfolio(resolve(portfolio, DEFAULT_PORTFOLIO))
    except ConfigError as err:
        _fail_input(err)
    _warn(pf.warnings)
    table = portfolio_table(pf)
    if as_json:
        click.echo(json.dumps(table, indent=2))
    else:
        print_portfolio_table(pf, table)


@main.command()
@click.argument("result", type=click.Path())
@click.option("-o", "--output", "out_dir", default=None, type=click.Path(),
              help="Folder for the PNGs and report.html [default: RESULT's name + _report].")
@click.option("--x", "x", default=None, help="Axis across heatmaps [default: the first varying axis].")
@click.option("--y", "y", default=None, help="Axis up heatmaps [default: the second varying axis].")
@click.option("--at", "at", multiple=True, metavar="AXIS=VALUE",
              help="Hold another axis at this value (default: its neutral value).")
def report(result, out_dir, x, y, at):
    """PNG figures and one HTML page from a RESULT file (grid, sensitivities, Monte Carlo)."""
    from .figures import make_report

    held = {}
    try:
        for item in at:
            if "=" not in item:
                raise ConfigError([f"--at: must be AXIS=VALUE, got {item!r}"])
            k, v = item.split("=", 1)
            try:
                held[k.strip()] = float(v)
            except ValueError:
                raise ConfigError([f"--at: {k}: value must be a number, got {v!r}"]) from None
        path = Path(result)
        out = Path(out_dir) if out_dir else path.with_name(path.stem + "_report")
        done = make_report(path, out, x=x, y=y, at=held)
    except ConfigError as err:
        _fail_input(err)
    click.echo(f"wrote {done['html']} and {len(done['figures'])} figures")


@main.command()
@click.argument("result", type=click.Path())
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port on 127.0.0.1 [default: a free one].")
@click.option("--no-browser", is_flag=True, help="Print the address only; open no browser.")
@click.option("--portfolio", default=None, shell_complete=_complete_portfolio,
              help="The run's portfolio (file or preset), named in the command lines shown; checked "
                   "against the file [default: the bundled preset that matches, else PORTFOLIO.yaml].")
@click.option("--scenario", "-s", "scenario", default=None, shell_complete=_complete_scenario,
              help="The run's scenario (file or preset), as --portfolio.")
def explore(result, port, no_browser, portfolio, scenario):
    """Explore a RESULT file (grid, sensitivities, named, Monte Carlo, breakeven curve, rank,
    optimize) in the browser: a local web app on 127.0.0.1, until Ctrl-C. Needs the extra
    pip install -e ".[explore]"."""
    from .explore import serve

    try:
        serve(Path(result), port, not no_browser, portfolio, scenario,
              echo=lambda line: click.echo(line) or sys.stdout.flush())
    except ConfigError as err:
        _fail_input(err)


@main.group()
def scenarios():
    """The library of named, sourced shock sets (scenarios/named)."""


@scenarios.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scenarios_list(as_json):
    """Every named shock set: name and title."""
    from .named import list_library, load_shockset

    sets = [load_shockset(p) for p in list_library().values()]
    if as_json:
        click.echo(json.dumps([{"name": s.name, "title": s.title, "path": s.path} for s in sets], indent=2))
        return
    for s in sets:
        click.echo(f"{s.name:<28} {s.title}")
    click.echo("run them side by side: stresstest run -s named")


@scenarios.command("show")
@click.argument("name", shell_complete=_complete_named_set)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def scenarios_show(name, as_json):
    """One named shock set: its shocks and their sources."""
    from .named import list_library, load_shockset

    lib = list_library()
    try:
        if name not in lib:
            from .validation import did_you_mean

            raise ConfigError([f"{name}: no such named scenario{did_you_mean(name, lib)} (known: {', '.join(lib)})"])
        s = load_shockset(lib[name])
    except ConfigError as err:
        _fail_input(err)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    click.echo(f"{s.name}: {s.title}")
    if s.description:
        click.echo(f"  {s.description}")
    for sh in s.shocks:
        where = f" on {', '.join(sh.clusters)}" if sh.clusters else ""
        click.echo(f"  - {sh.word}: {sh.op} {sh.value:g}{where}")
        click.echo(f"      source: {s.sources[sh.word]}")


@main.command()
def presets():
    """The bundled portfolio and scenario files."""
    for name, path in list_presets().items():
        click.echo(f"{name:<16} {preset_kind(path):<10} {path}")


def _complete_industry(ctx, param, incomplete):
    from click.shell_completion import CompletionItem

    from .industries import BUNDLED

    return [CompletionItem(incomplete, type="file"), *_complete_names(BUNDLED, incomplete, "bundled industry")]


@main.group()
def industries():
    """Industry profiles: the defaults an `industry:` label gives a contract or a segment."""


@industries.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def industries_list(as_json):
    """Every bundled profile: name, description and the fields it sets."""
    from .industries import bundled_table

    rows = bundled_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<12} {row['description']}")
        click.echo(f"{'':<12} sets {', '.join(row['fields'])}")
    click.echo("each number and its source: stresstest industries show NAME")


@industries.command("show")
@click.argument("name", metavar="NAME|FILE", shell_complete=_complete_industry)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def industries_show(name, as_json):
    """One profile, bundled or a file: each number, its source, and whether it is an
    assumption to calibrate."""
    from .industries import load_profile

    try:
        profile = load_profile(name, "industries show")
    except ConfigError as err:
        _fail_input(err)
    data = profile.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{profile.name}: {profile.description}")
    for kind in ("contract", "segment"):
        for field, number in data[kind].items():
            flag = "  (assumption to calibrate)" if number["assumption"] else ""
            click.echo(f"  {kind}.{field} = {number['value']:g}{flag}")
            click.echo(f"      source: {number['source']}")


if __name__ == "__main__":  # pragma: no cover
    main()
