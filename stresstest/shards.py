"""Shards of a grid for batch systems: run one slice, check the set, merge into one file.

Shard i of N holds the flat grid range [i*S//N, (i+1)*S//N) (S grid points): the
slices are disjoint and cover the grid for every N from 1 to S. A shard file holds
that range's outputs as flat arrays, the range, the total, the model version, the
config hash, the dtype, the backend and a SHA-256 of its data; it is written under a
temporary name and renamed when complete, so a file at a shard's name is complete or
corrupt, never half-written. `merge` checks the set (whole, and agreeing on everything
that changes the numbers: MUST_AGREE) and writes the same file a single run writes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .version import __version__
from .config import config_json, portfolio_from_dict
from .grid_config import scenario_from_dict
from .h5io import AtomicPath, provenance
from .kernels.params import MODEL_VERSION, MODEL_VERSION_2

MODEL_VERSIONS = (MODEL_VERSION, MODEL_VERSION_2)  # the model versions this version reads
from .validation import ConfigError

SHARD_RE = re.compile(r"^shard-(\d{6})-of-(\d{6})\.h5$")
READ_BLOCK = 1 << 20  # rows per read when checking or merging

# What every shard of a set must agree on, because it changes the numbers: the
# configuration (its hash covers the portfolio and the scenario), the model version, the
# floating-point precision (a float32 shard among float64 ones would be cast up, or the
# float64 ones cast down) and whether gradients were computed (other datasets). A set that
# disagrees is refused by merge, and a shard file that disagrees with a rerun is not
# "complete already": it is recomputed.
# The backend (and device) may differ: numpy, JAX and CuPy evaluate the same arithmetic
# and agree to round-off (1e-13 relative, docs/model.md), the precision being the same, so
# such a set merges and the merged file's `backend` and `device` name each one (the merged
# data equal a single run bit for bit only when every shard ran on that run's backend).
# The chunk size may differ too: no grid point or Monte Carlo path depends on it, nor do
# the Monte Carlo summaries (summed in blocks fixed by path index).
MUST_AGREE = ("config_sha256", "model_version", "dtype", "sensitivities")


class ShardError(Exception):
    """A shard set that cannot be merged: the problems and the command that repairs it."""

    def __init__(self, problems: list[str], rerun: str | None):
        self.problems = problems
        self.rerun = rerun
        super().__init__("\n".join(problems + ([f"rerun the missing ones: {rerun}"] if rerun else [])))


def parse_shard(text: str, total: int) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError([f"--shard: must be I/N (shard I of N, counting from 0), got {text!r}"])
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or n > total:
        raise ConfigError([f"--shard: N must be from 1 to the grid size ({total:,}), got {n}"])
    if not 0 <= i < n:
        raise ConfigError([f"--shard: I must be from 0 to {n - 1}, got {i}"])
    return i, n


def shard_range(total: int, i: int, n: int) -> tuple[int, int]:
    return i * total // n, (i + 1) * total // n


def shard_name(i: int, n: int) -> str:
    return f"shard-{i:06d}-of-{n:06d}.h5"


def _digest(datasets: dict) -> str:
    """SHA-256 over the datasets in name order, each read in blocks of rows."""
    h = hashlib.sha256()
    for name in sorted(datasets):
        ds = datasets[name]
        h.update(name.encode() + b"\0" + str(ds.dtype).encode() + str(ds.shape).encode())
        for a in range(0, ds.shape[0], READ_BLOCK):
            h.update(np.ascontiguousarray(ds[a:a + READ_BLOCK]).tobytes())
    return h.hexdigest()


@dataclass
class ShardInfo:
    path: Path
    index: int
    count: int
    start: int
    stop: int
    total: int
    sha: str
    model_version: int = MODEL_VERSION
    dtype: str = "float64"
    sensitivities: int = 0
    backend: str = ""
    device: str = ""

    def setting(self, name: str):
        """The value of a MUST_AGREE attribute."""
        return self.sha if name == "config_sha256" else getattr(self, name)


def read_shard(path: Path) -> ShardInfo:
    """Open a shard file and verify its data against its checksum (ValueError if not)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if a.get("kind") != "shard":
                raise ValueError("not a shard file")
            info = ShardInfo(path, int(a["shard_index"]), int(a["shard_count"]), int(a["start"]),
                             int(a["stop"]), int(a["total"]), str(a["config_sha256"]),
                             int(a["model_version"]), str(a["dtype"]), int(a["sensitivities"]),
                             str(a["backend"]), str(a["device"]))
            if int(a["model_version"]) not in MODEL_VERSIONS:
                raise ValueError(f"model version {a['model_version']}, this version reads "
                                 f"{' and '.join(map(str, MODEL_VERSIONS))}")
            if a.get("scenario_kind") == "montecarlo":
                from .mc_summary import Summary

                fmt, block = int(a.get("summary_format", 1)), int(a.get("summary_block", 0))
                if (fmt, block) != (Summary.STATE_FORMAT, Summary.BLOCK):
                    raise ValueError(f"summaries of format {fmt} in blocks of {block} paths, this "
                                     f"version merges format {Summary.STATE_FORMAT} in blocks of {Summary.BLOCK}")
            data = {k: v for k, v in f["data"].items()}
            grid = a.get("scenario_kind", "grid") == "grid"
            if grid and any(v.shape[0] != info.stop - info.start for v in data.values()):
                raise ValueError("data shorter than its range")
            if _digest(data) != a["data_sha256"]:
                raise ValueError("checksum mismatch")
    except (OSError, KeyError) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    return info


def run_shard(pf, sc, out_dir: Path, index: int, count: int, be, *, chunk_size=None, progress=True,
              sensitivities=False, origin: dict | None = None, prepared=None) -> tuple[Path, bool]:
    """Evaluate shard `index` of `count` into out_dir. Returns (path, computed): a complete,
    valid file of the same config is kept (computed False); anything else is recomputed.
    prepared(run, bar), when given, is called once the run is prepared and before any file is
    opened (the command line compiles there, saying so, where Ctrl-C is taken at once)."""
    import h5py

    from .engine import prepare
    from .progress import Progress

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / shard_name(index, count)
    cfg, sha = config_json(pf, sc)
    if path.exists():
        try:
            info = read_shard(path)
        except ValueError:
            info = None  # corrupt, truncated or of another version: recomputed
        if info is not None and (info.index, info.count) == (index, count):
            want = {"config_sha256": sha, "model_version": pf.model_version, "dtype": np.dtype(be.dtype).name,
                    "sensitivities": int(sensitivities)}
            differ = [k for k in MUST_AGREE if info.setting(k) != want[k]]
            if not differ:
                return path, False
            # computed with other settings: not this run's shard, so recomputed (and replaced)
            what = ", ".join(f"{k} {_short(info.setting(k))} (this run: {_short(want[k])})" for k in differ)
            print(f"note: {path} was computed with {what}: recomputing it", file=sys.stderr)
    for stale in out_dir.glob(f".{path.name}.*.partial"):  # left by a killed task
        stale.unlink(missing_ok=True)
    start, stop = shard_range(sc.size, index, count)
    kind = sc.kind
    if kind == "montecarlo":
        from .mc_paths import prepare as mc_prepare
        from .mc_summary import Summary
        from .montecarlo import summary_workers

        if sensitivities:
            raise ConfigError(["--sensitivities: Monte Carlo gradients need the whole set's tail "
                               "first; run them in one process (without --shard)"])
        run = mc_prepare(pf, sc, be, chunk_size)
    else:
        run = prepare(pf, sc, be, chunk_size, sensitivities=sensitivities)
    out = AtomicPath(path)
    bar = Progress(stop - start, label="paths" if kind == "montecarlo" else "grid points", enabled=progress)
    try:
        if prepared is not None:
            prepared(run, bar)
        with out, h5py.File(out.tmp, "w") as f:
            attrs = {
                "kind": "shard", "scenario_kind": kind, "shard_index": index, "shard_count": count,
                "start": start, "stop": stop, "total": sc.size, "model_version": pf.model_version,
                "stresstest_version": __version__, "config": cfg, "config_sha256": sha,
                "backend": be.name, "device": be.device, "dtype": np.dtype(be.dtype).name,
                "sensitivities": int(sensitivities), "chunk_size": run.chunk_size,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "origin": json.dumps(origin or {}),
                "devices": 1 if kind == "montecarlo" else len(run.devices()),
            }
            if kind == "montecarlo":
                attrs.update(summary_format=Summary.STATE_FORMAT, summary_block=Summary.BLOCK)
            for k, v in attrs.items():
                f.attrs[k] = v
            g = f.create_group("data")
            datasets = {}
            if kind == "montecarlo":
                summary = Summary(len(pf.clusters), pf.horizon_months, sc.hurdle_irr, sc.covenant_dscr,
                                  summary_workers(run.backend))
                for chunk in run.chunks(start, stop):
                    summary.add(chunk.outputs, chunk.start)
                    bar.advance(chunk.stop - chunk.start)
                for name, v in summary.state().items():
                    datasets[name] = g.create_dataset(name, data=v)
            else:
                _grid_shard(run, start, stop, g, datasets, bar)
            f.attrs["data_sha256"] = _digest(datasets)
        out.commit()
    except BaseException:
        out.abort()
        raise
    finally:
        bar.close()
    return path, True


def check_set(directory: Path) -> tuple[list[ShardInfo], dict]:
    """Every shard of the set in `directory`, verified; ShardError naming what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError([f"{directory}: not a folder of shards"], None)
    found = sorted(p for p in directory.iterdir() if SHARD_RE.match(p.name))
    if not found:
        raise ShardError([f"{directory}: no shard files (shard-IIIIII-of-NNNNNN.h5)"], None)
    counts = {int(SHARD_RE.match(p.name).group(2)) for p in found}
    problems: list[str] = []
    if len(counts) > 1:
        problems.append(f"{directory}: shards of different set sizes {sorted(counts)}; keep one set per folder")
    n = max(counts)
    good: dict[int, ShardInfo] = {}
    bad: list[int] = []
    shas: dict[str, list[int]] = {}
    for p in found:
        i = int(SHARD_RE.match(p.name).group(1))
        if int(SHARD_RE.match(p.name).group(2)) != n:
            continue
        try:
            info = read_shard(p)
        except ValueError as exc:
            problems.append(f"{p}: shard {i} of {n} is corrupt ({exc})")
            bad.append(i)
            continue
        if (info.index, info.count) != (i, n):
            problems.append(f"{p}: its contents say shard {info.index} of {info.count}")
            bad.append(i)
            continue
        good[i] = info
        shas.setdefault(info.sha, []).append(i)
    if len(shas) > 1:
        main_sha = max(shas, key=lambda s: len(shas[s]))
        for sha, idx in shas.items():
            if sha != main_sha:
                problems.append(f"{directory}: shards {ranges(idx)} come from a different configuration "
                                f"(config_sha256 {sha[:12]}…, the others {main_sha[:12]}…)")
                bad += idx
    # the other settings that change the numbers (MUST_AGREE): the odd shards are named, with
    # how to recompute them (submit knows no --dtype, so no rerun command for these)
    odd: list[int] = []
    for name in MUST_AGREE[1:]:
        groups: dict = {}
        for i, info in sorted(good.items()):
            if i not in bad:
                groups.setdefault(info.setting(name), []).append(i)
        if len(groups) < 2:
            continue
        main = max(groups, key=lambda v: (len(groups[v]), -groups[v][0]))  # most shards, then shard 0's
        listed = "; ".join(f"{name} {_short(v)} in {_files([good[i].path for i in idx])}"
                           for v, idx in sorted(groups.items(), key=lambda kv: kv[1][0]))
        others = sorted(i for v, idx in groups.items() if v != main for i in idx)
        fix = {"dtype": f"--dtype {main}", "sensitivities": "--sensitivities" if main else "without --sensitivities",
               "model_version": f"this version (model version {MODEL_VERSION})"}[name]
        which = f"shard{'s' * (len(others) > 1)} {ranges(others)}"
        problems.append(f"{directory}: the shards disagree on {name}, which changes the numbers: {listed}. "
                        f"A set is merged only from shards computed alike: recompute {which} "
                        f"with {fix} (stresstest run … --shard I/{n} -o {directory}), or every shard with "
                        "the same settings")
        odd += others
    missing = [i for i in range(n) if i not in good and i not in bad and i not in odd]
    if len(missing) == 1:
        problems.append(f"{directory / shard_name(missing[0], n)}: shard {missing[0]} of {n} is missing")
    elif missing:
        problems.append(f"{directory}: shards {ranges(missing)} of {n} are missing ({len(missing)} files "
                        f"shard-IIIIII-of-{n:06d}.h5)")
    infos = [good[i] for i in sorted(good) if i not in bad and i not in odd]
    if not problems:
        total = infos[0].total
        edge = 0
        for info in infos:
            if info.start != edge or info.total != total:
                problems.append(f"{info.path}: covers [{info.start}, {info.stop}) but the set needs "
                                f"[{edge}, …) of {total}")
            edge = info.stop
        if edge != total:
            problems.append(f"{directory}: the shards end at {edge}, the grid has {total} points")
    if problems:
        redo = sorted(set(missing) | set(bad))
        raise ShardError(problems, rerun_command(directory, n, redo) if redo else None)
    import h5py

    with h5py.File(infos[0].path, "r") as f:
        meta = {k: f.attrs[k] for k in ("config", "config_sha256", "backend", "device", "dtype",
                                        "sensitivities", "origin", "scenario_kind")}
    # backends and devices may differ (MUST_AGREE): the merged file names every one
    for k in ("backend", "device"):
        meta[k] = ", ".join(dict.fromkeys(getattr(info, k) for info in infos))
    return infos, meta


def ranges(idx) -> str:
    """Indices as runs: 0,1,2,...,16,18,...,199 -> 0-16,18-199 (what --only and Slurm's
    --array read)."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(idx)):
        if run and i == run[1] + 1:
            run[1] = i
            continue
        if run:
            out.append(f"{run[0]}-{run[1]}" if run[1] > run[0] else f"{run[0]}")
        run = [i, i]
    if run:
        out.append(f"{run[0]}-{run[1]}" if run[1] > run[0] else f"{run[0]}")
    return ",".join(out)


def _short(value) -> str:
    """An attribute's value in a message (a hash shortened)."""
    text = str(value)
    return text[:12] + "…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def _files(paths: list[Path], most: int = 4) -> str:
    """Shard files in a message: the first few, then how many more."""
    names = [str(p) for p in paths[:most]]
    if len(paths) > most:
        names.append(f"and {len(paths) - most} more")
    return ", ".join(names)


def rerun_command(directory: Path, n: int, indices: list[int]) -> str:
    """The `stresstest submit` that recomputes only these shards (from the set's submit.json)."""
    spec_path = Path(directory) / "submit.json"
    args = ["stresstest", "submit"]
    spec = None
    if spec_path.exists():
        try:
            spec = json.loads(spec_path.read_text())
        except ValueError:
            spec = None
    if isinstance(spec, dict) and spec.get("portfolio"):
        args += [spec["portfolio"], "--scenario", spec["scenario"]]
        for key, flag in (("partition", "--partition"), ("time", "--time"), ("mem", "--mem"),
                          ("gpus_per_task", "--gpus-per-task"), ("cpus_per_task", "--cpus-per-task"),
                          ("account", "--account"), ("array_limit", "--array-limit"), ("backend", "--backend"),
                          ("merge_partition", "--merge-partition"), ("merge_time", "--merge-time"),
                          ("merge_mem", "--merge-mem")):
            if spec.get(key) is not None:
                args += [flag, str(spec[key])]
        for key, flag in (("sbatch_options", "--sbatch-option"), ("merge_sbatch_options", "--merge-sbatch-option")):
            for o in spec.get(key) or []:
                args.append(f"{flag}={o}")
        if spec.get("sensitivities"):
            args.append("--sensitivities")
        if spec.get("output"):
            args += ["-o", spec["output"]]
    else:
        args += ["PORTFOLIO", "--scenario", "SCENARIO"]
    args += ["--shards", str(n), "--output-dir", str(directory), "--only", ranges(indices)]
    return " ".join(shlex.quote(a) for a in args)


PARTIAL_RE = re.compile(r"^\.(shard-(\d{6})-of-(\d{6})\.h5)\.(\d+)\.partial$")


def scan_set(directory: Path, n: int | None = None) -> dict:
    """Each shard's file, judged as merge judges it, for `stresstest status`:
    done {i: ShardInfo} (complete, checksum right, agreeing with the set on MUST_AGREE),
    bad {i: why} (corrupt, another shard's contents, or disagreeing with the set),
    partial {i: [PIDs]} (temporary files of writing tasks, or of killed ones), n (the
    set's size: as given, else from the file names; None where neither says), notes."""
    directory = Path(directory)
    notes: list[str] = []
    found = [(p, SHARD_RE.match(p.name)) for p in directory.iterdir()]
    found = [(p, int(m.group(1)), int(m.group(2))) for p, m in found if m]
    counts = sorted({c for _, _, c in found})
    if n is None and counts:
        n = max(counts)
    if n is not None and any(c != n for c in counts):
        notes.append(f"files of other set sizes ({', '.join(str(c) for c in counts if c != n)}) are ignored: "
                     f"this set has {n} shards")
    done: dict[int, ShardInfo] = {}
    bad: dict[int, str] = {}
    for p, i, c in sorted(found, key=lambda t: t[1]):
        if c != n:
            continue
        try:
            info = read_shard(p)
        except ValueError as exc:
            bad[i] = f"corrupt ({exc})"
            continue
        if (info.index, info.count) != (i, n):
            bad[i] = f"its contents say shard {info.index} of {info.count}"
            continue
        done[i] = info
    # agreement with the set, as merge wants it: the most common value of each setting
    for name in MUST_AGREE:
        groups: dict = {}
        for i, info in done.items():
            groups.setdefault(info.setting(name), []).append(i)
        if len(groups) < 2:
            continue
        main = max(groups, key=lambda v: (len(groups[v]), -min(groups[v])))
        for v, idx in groups.items():
            if v != main:
                for i in idx:
                    bad[i] = f"computed with {name} {_short(v)} (the set: {_short(main)})"
                    del done[i]
    partial: dict[int, list[int]] = {}
    for p in directory.iterdir():
        m = PARTIAL_RE.match(p.name)
        if m and int(m.group(3)) == n:
            partial.setdefault(int(m.group(2)), []).append(int(m.group(4)))
    return {"n": n, "done": done, "bad": bad, "partial": partial, "notes": notes}


def merge(directory: Path, output: Path, compression: str | None = "gzip") -> Path:
    """Check the set and write the single result file (atomically)."""
    import h5py

    from .engine import evaluate_base
    from .grid_file import GridWriter, industry_coordinate, output_groups

    infos, meta = check_set(directory)
    cfg = json.loads(meta["config"])
    pf = portfolio_from_dict(cfg["portfolio"])
    if meta["scenario_kind"] == "montecarlo":
        return _merge_montecarlo(infos, meta, cfg, pf, output, compression)
    sc = scenario_from_dict(cfg["scenario"], pf)
    if config_json(pf, sc)[1] != meta["config_sha256"]:
        raise ShardError([f"{directory}: the shards' configuration does not round-trip "
                          "(written by another version?)"], None)
    dtype = np.dtype(meta["dtype"])
    attrs = provenance(pf, sc.name, meta["config"], meta["config_sha256"], meta["backend"], meta["device"],
                       dtype, n_scenarios=sc.size, merged_from=f"{len(infos)} shards")
    writer = GridWriter(output, sc.axes, pf.cluster_names, attrs, dtype, compression,
                        bool(meta["sensitivities"]), industry_coordinate(pf), output_groups(pf))
    with writer:
        for info in infos:
            with h5py.File(info.path, "r") as f:
                data = f["data"]
                for a in range(info.start, info.stop, READ_BLOCK):
                    b = min(a + READ_BLOCK, info.stop)
                    block = {k: v[a - info.start:b - info.start] for k, v in data.items()}
                    writer.write(a, b, block)
        writer.write_group("base", evaluate_base(pf, dtype))
        return writer.commit()


def _merge_montecarlo(infos, meta, cfg, pf, output: Path, compression) -> Path:
    """Monte Carlo shards hold their paths' summaries; merged in shard order."""
    from types import SimpleNamespace

    import h5py

    from .mc_io import MonteCarloWriter
    from .mc_summary import Summary

    scd = cfg["scenario"]
    mc = SimpleNamespace(paths=int(scd["paths"]), hurdle_irr=scd["hurdle_irr"],
                         covenant_dscr=scd["covenant_dscr"])
    total = None
    for info in infos:
        with h5py.File(info.path, "r") as f:
            part = Summary.from_state({k: v[()] for k, v in f["data"].items()}, mc.hurdle_irr,
                                      mc.covenant_dscr)
        total = part if total is None else (total.merge(part) or total)
    attrs = provenance(pf, scd["name"], meta["config"], meta["config_sha256"], meta["backend"], meta["device"],
                       str(meta["dtype"]), kind="montecarlo", paths=mc.paths, seed=int(scd["seed"]),
                       merged_from=f"{len(infos)} shards")
    writer = MonteCarloWriter(output, pf, mc, attrs, np.dtype(str(meta["dtype"])), compression)
    with writer:
        writer.write_summary(total, None)
        return writer.commit()


def _grid_shard(run, start: int, stop: int, group, datasets: dict, bar) -> None:
    """The shard's range, split over every device the task sees (one thread each; JAX
    releases the GIL while it computes), written into `group` under a lock."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    devices = run.devices()
    lock = threading.Lock()

    def work(device, a: int, b: int) -> None:
        for chunk in run.chunks(a, b, device):
            with lock:
                for name, v in chunk.outputs.items():
                    if name not in datasets:
                        datasets[name] = group.create_dataset(name, shape=(stop - start,) + v.shape[1:],
                                                              dtype=v.dtype)
                    datasets[name][chunk.start - start:chunk.stop - start] = v
                bar.advance(chunk.stop - chunk.start)

    if len(devices) == 1:
        work(devices[0], start, stop)
        return
    n = len(devices)
    # whole chunks per device, so each device evaluates the same chunks a single run would
    step = run.chunk_size
    n_chunks = -(-(stop - start) // step)
    edges = [start + min(stop - start, (k * n_chunks // n) * step) for k in range(n)] + [stop]
    with ThreadPoolExecutor(n, thread_name_prefix="stresstest-device") as pool:
        futures = [pool.submit(work, d, a, b) for d, a, b in zip(devices, edges[:-1], edges[1:]) if b > a]
        for f in futures:
            f.result()
