"""Submit a sharded grid to Slurm: a job array (one shard per task), then a merge job;
and say where a submitted set stands (`status`).

Slurm does the distributing; this module writes the sbatch scripts, submits them with
`sbatch --parsable` and says how to follow them. Arrays longer than the cluster's
MaxArraySize are split into several arrays (the merge waits for all of them).

Every value that goes into a script is checked or quoted (`check_text`, `sbatch_value`,
`shlex.quote`): sbatch reads an `#SBATCH` line itself, without a shell, splitting it at
white space unless quoted, ending it at an unquoted `#` and taking a backslash as an
escape; a newline would end the line and start a shell line of the script. So values
holding control characters are refused (exit 2, naming the option), `#SBATCH` values
other than plain words go in double quotes with `\\` and `"` escaped, and the command
lines are quoted for the shell.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .shards import ranges
from .validation import ConfigError

MERGE_TIME = "00:30:00"
MERGE_MEM = "8G"

# Options submit writes itself: a pass-through option may not set them (nor abbreviate
# them: sbatch, like getopt, takes a unique prefix of a long option for the option).
_OWN = ("array", "output", "job-name", "dependency", "kill-on-invalid-dep", "parsable", "wrap")
SHARD_OWN = {**{k: None for k in _OWN}, "partition": "--partition", "time": "--time", "mem": "--mem",
             "gpus-per-task": "--gpus-per-task", "cpus-per-task": "--cpus-per-task", "account": "--account"}
MERGE_OWN = {**{k: None for k in _OWN}, "partition": "--merge-partition", "time": "--merge-time",
             "mem": "--merge-mem", "account": "--account"}
_TIME_RE = re.compile(r"(?:\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}"
                      r"|infinite|unlimited)", re.I)
_MEM_RE = re.compile(r"\d+[KMGT]?", re.I)
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@%+=-]*")  # needs no quotes on an #SBATCH line
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class SubmitSpec:
    portfolio: str
    scenario: str
    shards: int
    output_dir: str
    output: str
    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    account: str | None = None
    array_limit: int | None = None
    backend: str = "auto"
    sensitivities: bool = False
    sbatch_options: list[str] = field(default_factory=list)
    merge_partition: str | None = None
    merge_time: str | None = MERGE_TIME
    merge_mem: str | None = MERGE_MEM
    merge_sbatch_options: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> SubmitSpec:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_text(option: str, value: str) -> str:
    """Refuse a value a batch script cannot carry: control characters (a newline would
    end the #SBATCH line and start a shell line)."""
    m = _CONTROL.search(value)
    if m:
        raise ConfigError([f"{option}: {value!r} holds the control character {m.group()!r}; a batch script "
                           "cannot carry it (a newline would start a line of its own)"])
    return value


def sbatch_value(value: str) -> str:
    """A value as sbatch reads it from an #SBATCH line: plain words as they are, anything
    else in double quotes, with backslash and double quote escaped (sbatch's own rules)."""
    if value and _PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_sbatch_option(option: str, text: str, own: dict) -> tuple[str, str | None]:
    """`--name=value` or `--name` (an sbatch long option) -> (name, value)."""
    check_text(option, text)
    if not text.startswith("--"):
        raise ConfigError([f"{option}: {text!r}: give sbatch's long form, --name=value or --name "
                           "(e.g. --qos=high, --exclusive)"])
    m = re.fullmatch(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?", text, re.S)
    if not m:
        raise ConfigError([f"{option}: {text!r}: must be one sbatch option, --name=value or --name "
                           "(the value after '=', e.g. --qos=high)"])
    name, value = m.group(1), m.group(2)
    for mine, instead in own.items():
        if mine.startswith(name):
            how = f"use {instead}" if instead else "submit writes it itself"
            raise ConfigError([f"{option}: {text!r}: --{mine} is not passed through ({how})"])
    return name, value


def validate(spec: SubmitSpec) -> None:
    """Every value that goes into a script: no control characters, and the forms Slurm
    reads (ConfigError naming the option)."""
    for opt, v in (("PORTFOLIO", spec.portfolio), ("--scenario", spec.scenario), ("--output-dir", spec.output_dir),
                   ("--output", spec.output), ("--partition", spec.partition), ("--time", spec.time),
                   ("--mem", spec.mem), ("--account", spec.account), ("--merge-partition", spec.merge_partition),
                   ("--merge-time", spec.merge_time), ("--merge-mem", spec.merge_mem)):
        if v is not None:
            check_text(opt, v)
    for opt, v in (("--time", spec.time), ("--merge-time", spec.merge_time)):
        if v is not None and not _TIME_RE.fullmatch(v):
            raise ConfigError([f"{opt}: {v!r} is not a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                               "D-HH:MM:SS or UNLIMITED"])
    for opt, v in (("--mem", spec.mem), ("--merge-mem", spec.merge_mem)):
        if v is not None and not _MEM_RE.fullmatch(v):
            raise ConfigError([f"{opt}: {v!r} is not a Slurm memory size: a whole number, megabytes, or with "
                               "a unit K, M, G or T (e.g. 16G)"])
    for opt, v in (("--partition", spec.partition), ("--merge-partition", spec.merge_partition),
                   ("--account", spec.account)):
        if v is not None and not v.strip():
            raise ConfigError([f"{opt}: must not be empty"])
    if "\\" in spec.output_dir:
        raise ConfigError([f"--output-dir: {spec.output_dir!r} holds a backslash, which turns off Slurm's "
                           "file name patterns (%A, %a, %j) in the log paths; choose a folder without one"])
    for o in spec.sbatch_options:
        check_sbatch_option("--sbatch-option", o, SHARD_OWN)
    for o in spec.merge_sbatch_options:
        check_sbatch_option("--merge-sbatch-option", o, MERGE_OWN)


def parse_only(text: str | None, n: int) -> list[int]:
    """--only: indices and ranges, comma separated (3,17 or 0-16,18-199)."""
    if text is None:
        return list(range(n))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ConfigError([f"--only: must list shard indices and ranges like 3,17 or 0-16,18-199, "
                               f"got {part!r} in {text!r}"])
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a > b:
            raise ConfigError([f"--only: {part}: a range runs from low to high ({b}-{a})"])
        if b >= n:
            raise ConfigError([f"--only: {part} is outside 0..{n - 1}"])
        out.update(range(a, b + 1))
    return sorted(out)


def max_array_size(env=None) -> int:
    """MaxArraySize from `scontrol show config` (Slurm's default 1001 where it is not said)."""
    try:
        text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                              check=True, env=env, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 1001
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else 1001


def _compress(indices: list[int]) -> str:
    """3,4,5,9 -> 3-5,9 (Slurm's --array syntax)."""
    return ranges(indices)


def _log_path(out: Path, name: str) -> str:
    """A log path under the output folder: its own '%' doubled (a literal % in Slurm's
    file name patterns), the pattern's kept."""
    return str(out / "logs").replace("%", "%%") + "/" + name


def _directives(name: str, log: str, pairs, passthrough: list[str]) -> list[str]:
    lines = [f"#SBATCH --job-name={name}", f"#SBATCH --output={sbatch_value(log)}"]
    for flag, v in pairs:
        if v is not None:
            lines.append(f"#SBATCH --{flag}={sbatch_value(str(v))}")
    for o in passthrough:
        k, v = check_sbatch_option("--sbatch-option", o, {})
        lines.append(f"#SBATCH --{k}" + ("" if v is None else f"={sbatch_value(v)}"))
    return lines


def scripts(spec: SubmitSpec, indices: list[int], max_array: int) -> tuple[list[tuple[str, str]], str]:
    """The array scripts (array spec, text) and the merge script (its dependency is added
    at submission). Shard index = offset + SLURM_ARRAY_TASK_ID, so that every array's
    task ids stay below MaxArraySize."""
    validate(spec)
    out = Path(spec.output_dir).resolve()
    py = shlex.quote(sys.executable)
    arrays = []
    shard_pairs = (("partition", spec.partition), ("time", spec.time), ("mem", spec.mem),
                   ("gpus-per-task", spec.gpus_per_task), ("cpus-per-task", spec.cpus_per_task),
                   ("account", spec.account))
    for g in _groups(indices, max_array):
        offset = g[0]
        ids = _compress([i - offset for i in g])
        limit = f"%{spec.array_limit}" if spec.array_limit else ""
        run = [spec.portfolio, "--scenario", spec.scenario, "--shard", "__SHARD__", "-o", str(out),
               "--backend", spec.backend, "-q"]
        if spec.sensitivities:
            run.append("--sensitivities")
        cmd = " ".join([py, "-m", "stresstest.cli", "run"] + [
            f'"$(( {offset} + SLURM_ARRAY_TASK_ID ))/{spec.shards}"' if a == "__SHARD__" else shlex.quote(a)
            for a in run])
        text = "\n".join(["#!/bin/bash",
                          *_directives("stresstest-shards", _log_path(out, "shard-%A_%a.out"), shard_pairs,
                                       spec.sbatch_options),
                          f"#SBATCH --array={ids}{limit}",
                          "set -euo pipefail",
                          f"# shard index = {offset} + SLURM_ARRAY_TASK_ID, of {spec.shards}",
                          cmd, ""])
        arrays.append((f"{ids}{limit}", text))
    merge_cmd = " ".join([py] + [shlex.quote(a) for a in ["-m", "stresstest.cli", "merge", str(out), "-o",
                                                          str(Path(spec.output).resolve())]])
    merge_pairs = (("partition", spec.merge_partition), ("time", spec.merge_time), ("mem", spec.merge_mem),
                   ("account", spec.account))
    merge = "\n".join(["#!/bin/bash",
                       *_directives("stresstest-merge", _log_path(out, "merge-%j.out"), merge_pairs,
                                    spec.merge_sbatch_options),
                       "set -euo pipefail", merge_cmd, ""])
    return arrays, merge


def _groups(indices: list[int], max_array: int) -> list[list[int]]:
    """The indices in groups whose ids, minus the group's first (its offset), fit MaxArraySize."""
    groups: list[list[int]] = []
    for i in indices:
        if groups and i - groups[-1][0] < max_array:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _merge_args(ids: list[str], path: Path) -> list[str]:
    return [f"--dependency=afterok:{':'.join(ids)}", "--kill-on-invalid-dep=yes", str(path)]


def sbatch_found(env=None) -> bool:
    return shutil.which("sbatch", path=(env if env is not None else os.environ).get("PATH")) is not None


def submit(spec: SubmitSpec, only: list[int], dry_run: bool = False, env=None) -> dict:
    """Write the scripts into the output folder and submit them (unless dry_run).

    Without sbatch on PATH it refuses before writing anything. The dry run returns the
    scripts and the sbatch command lines (the merge's with a placeholder for the array
    job ids)."""
    out = Path(spec.output_dir)
    if not dry_run and not sbatch_found(env):
        scripts(spec, only, 1001)  # the inputs' own errors first
        raise ConfigError(["submit: sbatch not found on PATH: Slurm's commands are needed to submit (nothing was "
                           "written). `--dry-run` prints the scripts; `stresstest run … --shard I/N` runs a "
                           "shard under any scheduler"])
    max_array = max_array_size(env) if not dry_run else 1001
    arrays, merge = scripts(spec, only, max_array)
    groups = _groups(only, max_array)
    outr = out.resolve()
    result = {"arrays": [], "merge": None, "output_dir": str(outr), "scripts": [], "submissions": []}
    if dry_run:
        placeholders = [f"<array job id {k}>" if len(arrays) > 1 else "<array job id>" for k in range(len(arrays))]
        for k, (_, text) in enumerate(arrays):
            path = outr / f"shards-{k}.sbatch"
            result["submissions"].append((str(path), text, ["sbatch", "--parsable", str(path)]))
        mpath = outr / "merge.sbatch"
        result["submissions"].append((str(mpath), merge, ["sbatch", "--parsable", *_merge_args(placeholders, mpath)]))
        result["scripts"] = [t for _, t in arrays] + [merge]
        return result
    (out / "logs").mkdir(parents=True, exist_ok=True)
    record = asdict(spec)
    old = _read_json(out / "submit.json")
    record["submissions"] = old.get("submissions", []) if old.get("shards") == spec.shards else []
    this = {"indices": ranges(only), "arrays": [], "merge": None}
    record["submissions"].append(this)
    (out / "submit.json").write_text(json.dumps(record, indent=2))
    ids = []
    for k, (_, text) in enumerate(arrays):
        path = out / f"shards-{k}.sbatch"
        path.write_text(text)
        ids.append(_sbatch([str(path)], env))
        this["arrays"].append({"job": ids[-1], "offset": groups[k][0], "indices": ranges(groups[k])})
        (out / "submit.json").write_text(json.dumps(record, indent=2))
        result["scripts"].append(str(path))
    mpath = out / "merge.sbatch"
    mpath.write_text(merge)
    result["merge"] = this["merge"] = _sbatch(_merge_args(ids, mpath), env)
    (out / "submit.json").write_text(json.dumps(record, indent=2))
    result["scripts"].append(str(mpath))
    result["arrays"] = ids
    return result


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _sbatch(args: list[str], env) -> str:
    try:
        p = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env,
                           timeout=60)
    except FileNotFoundError:
        raise ConfigError(["sbatch: not found; is Slurm installed here? (--dry-run prints the scripts)"]) from None
    if p.returncode != 0:
        raise ConfigError([f"sbatch {shlex.join(args)}: {p.stderr.strip() or p.stdout.strip()}"])
    return p.stdout.strip().split(";")[0]


# --------------------------------------------------------------------------- status

STATES = ("done", "running", "pending", "failed", "missing")
_LIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD"}


def _run(argv: list[str], env) -> tuple[str | None, str]:
    """(stdout, '') or (None, why it could not answer)."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    except FileNotFoundError:
        return None, "not installed"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    if p.returncode != 0:
        return None, (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()[-1]
    return p.stdout, ""


def _job_tasks(text: str, jobs: set[str], merge: str | None) -> tuple[dict[tuple[str, int], tuple], tuple | None]:
    """Lines 'arrayjob|task|jobid|state|reason' -> {(array job, task id): (state, reason)}
    and the merge job's (state, reason)."""
    tasks: dict[tuple[str, int], tuple] = {}
    merge_state = None
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4:
            continue
        array, task, job, state = parts[:4]
        reason = parts[4] if len(parts) > 4 else ""
        state = state.split()[0] if state.strip() else ""
        if array in jobs and task.isdigit():
            tasks[(array, int(task))] = (state, reason)
        elif merge is not None and merge in (job, array):
            merge_state = (state, reason)
    return tasks, merge_state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def set_status(directory: Path, env=None) -> dict:
    """Where a shard set stands: each shard done (a complete file whose checksum and
    settings merge accepts), running, pending, failed or missing, from the files, and
    from squeue and sacct where they answer (scontrol where sacct cannot: no slurmdbd)."""
    from .shards import rerun_command, scan_set

    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError([f"{directory}: not a folder of shards"])
    record = _read_json(directory / "submit.json")
    scan = scan_set(directory, record.get("shards"))
    n = scan["n"]
    if n is None:
        raise ConfigError([f"{directory}: no shard files (shard-IIIIII-of-NNNNNN.h5) and no submit.json: "
                           "not a shard set"])
    # each shard's latest job: (array job id, offset) from the submissions in submit.json
    latest: dict[int, str] = {}
    offsets: dict[str, int] = {}
    merges: list[str] = []
    for sub in record.get("submissions", []) if record.get("shards") == n else []:
        for a in sub.get("arrays", []):
            offsets[str(a["job"])] = int(a["offset"])
            try:
                for i in _parse_ranges(a.get("indices", "")):
                    latest[i] = str(a["job"])
            except ValueError:
                pass
        if sub.get("merge"):
            merges.append(str(sub["merge"]))
    merge = merges[-1] if merges else None
    slurm: dict[str, str] = {}
    live: dict[tuple[str, int], tuple] = {}
    ended: dict[tuple[str, int], tuple] = {}
    merge_state: tuple | None = None
    if offsets:
        text, why = _run(["squeue", "-h", "-r", "-o", "%F|%K|%i|%T|%r"], env)
        slurm["squeue"] = "ok" if text is not None else f"unavailable ({why})"
        if text is not None:
            live, merge_state = _job_tasks(text, set(offsets), merge)
        ids = list(offsets) + ([merge] if merge else [])
        text, why = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State"], env)
        slurm["sacct"] = "ok" if text is not None else f"unavailable ({why})"
        lines = []
        if text is not None:
            for line in text.splitlines():
                jid, _, st = line.partition("|")
                m = re.fullmatch(r"(\d+)_(\d+)", jid)
                lines.append(f"{m.group(1)}|{m.group(2)}|{jid}|{st}" if m else f"{jid}|N/A|{jid}|{st}")
        else:
            # no accounting database: the controller still knows the jobs that ended lately
            answered = []
            for jid in ids:
                out, why = _run(["scontrol", "-o", "show", "job", jid], env)
                answered.append(out is not None)
                for line in (out or "").splitlines():
                    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
                    lines.append(f"{kv.get('ArrayJobId', kv.get('JobId', ''))}|{kv.get('ArrayTaskId', 'N/A')}|"
                                 f"{kv.get('JobId', '')}|{kv.get('JobState', '')}|{kv.get('Reason', '')}")
            slurm["scontrol"] = "ok" if any(answered) else f"unavailable ({why})"
        ended, mstate = _job_tasks("\n".join(lines), set(offsets), merge)
        merge_state = merge_state or mstate
    else:
        slurm["squeue"] = "not asked (no job ids in submit.json)"

    state: dict[int, str] = {}
    detail: dict[int, str] = {}
    for i in range(n):
        job = latest.get(i)
        key = (job, i - offsets[job]) if job is not None else None
        q, e = live.get(key), ended.get(key)
        partial = scan["partial"].get(i, [])
        alive = [p for p in partial if _pid_alive(p)]
        if i in scan["done"]:
            state[i] = "done"
        elif q and q[0] in _LIVE:
            state[i], detail[i] = "running", f"Slurm job {job}_{i - offsets[job]}: {q[0]}"
        elif alive:
            state[i], detail[i] = "running", f"partial file of PID {alive[0]}, running here"
        elif q and q[0] in _WAITING:
            reason = f" ({q[1]})" if q[1] and q[1] != "None" else ""
            state[i], detail[i] = "pending", f"Slurm job {job}_{i - offsets[job]}: {q[0]}{reason}"
        elif i in scan["bad"]:
            state[i], detail[i] = "failed", scan["bad"][i]
        elif e and e[0] and e[0] not in _LIVE | _WAITING:
            reason = f" ({e[1]})" if e[1] and e[1] != "None" else ""
            word = "but no shard file" if e[0].startswith("COMPLETED") else "no shard file written"
            state[i], detail[i] = "failed", f"Slurm job {job}_{i - offsets[job]}: {e[0]}{reason}, {word}"
        else:
            state[i] = "missing"
            if partial:
                detail[i] = (f"stale partial file of PID {partial[0]} (not running here"
                             f"{', nor in squeue' if 'squeue' in slurm and slurm['squeue'] == 'ok' else ''})")
    by = {s: [i for i in range(n) if state[i] == s] for s in STATES}
    redo = by["failed"] + by["missing"]
    output = record.get("output")
    return {
        "directory": str(directory.resolve()),
        "shards": n,
        "counts": {s: len(v) for s, v in by.items()},
        "ranges": {s: ranges(v) for s, v in by.items()},
        "indices": by,
        "details": {str(i): d for i, d in sorted(detail.items())},
        "jobs": {"arrays": sorted(offsets, key=int), "merge": merge,
                 "merge_state": None if merge_state is None else " ".join(x for x in merge_state if x and x != "None")},
        "merged_file": None if not output else {"path": output, "exists": Path(output).exists()},
        "slurm": slurm,
        "notes": scan["notes"],
        "rerun": rerun_command(directory, n, sorted(redo)) if redo else None,
    }


def _parse_ranges(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out
