"""Submit a sharded grid to Slurm: a job array (one shard per task), then a merge job.

Slurm does the distributing; this module writes the sbatch scripts, submits them with
`sbatch --parsable` and says how to follow them. Arrays longer than the cluster's
MaxArraySize are split into several arrays (the merge waits for all of them).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError


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


def parse_only(text: str | None, n: int) -> list[int]:
    if text is None:
        return list(range(n))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError([f"--only: must list shard indices like 3,17 or 4-9, got {part!r}"])
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= a <= b < n:
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
    out, run = [], [indices[0], indices[0]]
    for i in indices[1:]:
        if i == run[1] + 1:
            run[1] = i
        else:
            out.append(run)
            run = [i, i]
    out.append(run)
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


def _directives(spec: SubmitSpec, name: str, log: str) -> list[str]:
    lines = [f"#SBATCH --job-name={name}", f"#SBATCH --output={log}"]
    for key, flag in (("partition", "partition"), ("time", "time"), ("mem", "mem"),
                      ("gpus_per_task", "gpus-per-task"), ("cpus_per_task", "cpus-per-task"),
                      ("account", "account")):
        v = getattr(spec, key)
        if v is not None:
            lines.append(f"#SBATCH --{flag}={v}")
    return lines


def scripts(spec: SubmitSpec, indices: list[int], max_array: int) -> tuple[list[tuple[str, str]], str]:
    """The array scripts (array spec, text) and the merge script (its dependency is added
    at submission). Shard index = offset + SLURM_ARRAY_TASK_ID, so that every array's
    task ids stay below MaxArraySize."""
    out = Path(spec.output_dir).resolve()
    logs = out / "logs"
    py = shlex.quote(sys.executable)
    arrays = []
    # split the indices into groups whose ids, minus the group's offset, fit MaxArraySize
    groups: list[list[int]] = []
    for i in indices:
        if groups and i - groups[-1][0] < max_array:
            groups[-1].append(i)
        else:
            groups.append([i])
    for g in groups:
        offset = g[0]
        ids = _compress([i - offset for i in g])
        limit = f"%{spec.array_limit}" if spec.array_limit else ""
        run = [py, "-m", "stresstest.cli", "run", spec.portfolio, "--scenario", spec.scenario,
               "--shard", "__SHARD__", "-o", str(out), "--backend", spec.backend, "-q"]
        if spec.sensitivities:
            run.append("--sensitivities")
        cmd = " ".join(shlex.quote(a) for a in run).replace(
            "__SHARD__", f'"$(( {offset} + SLURM_ARRAY_TASK_ID ))/{spec.shards}"')
        text = "\n".join(["#!/bin/bash",
                          *_directives(spec, "stresstest-shards", str(logs / "shard-%A_%a.out")),
                          f"#SBATCH --array={ids}{limit}",
                          "set -euo pipefail",
                          f"# shard index = {offset} + SLURM_ARRAY_TASK_ID, of {spec.shards}",
                          cmd, ""])
        arrays.append((f"{ids}{limit}", text))
    merge_cmd = " ".join(shlex.quote(a) for a in [py, "-m", "stresstest.cli", "merge", str(out), "-o",
                                                  str(Path(spec.output).resolve())])
    merge = "\n".join(["#!/bin/bash", *_directives(spec, "stresstest-merge", str(logs / "merge-%j.out")),
                       "set -euo pipefail", merge_cmd, ""])
    return arrays, merge


def submit(spec: SubmitSpec, only: list[int], dry_run: bool = False, env=None) -> dict:
    """Write the scripts into the output folder and submit them (unless dry_run)."""
    out = Path(spec.output_dir)
    arrays, merge = scripts(spec, only, max_array_size(env) if not dry_run else 1001)
    result = {"arrays": [], "merge": None, "output_dir": str(out.resolve()), "scripts": []}
    if dry_run:
        result["scripts"] = [t for _, t in arrays] + [merge]
        return result
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "submit.json").write_text(json.dumps(asdict(spec), indent=2))
    ids = []
    for k, (_, text) in enumerate(arrays):
        path = out / f"shards-{k}.sbatch"
        path.write_text(text)
        ids.append(_sbatch([str(path)], env))
        result["scripts"].append(str(path))
    mpath = out / "merge.sbatch"
    mpath.write_text(merge)
    dep = "afterok:" + ":".join(ids)
    result["merge"] = _sbatch([f"--dependency={dep}", "--kill-on-invalid-dep=yes", str(mpath)], env)
    result["scripts"].append(str(mpath))
    result["arrays"] = ids
    return result


def _sbatch(args: list[str], env) -> str:
    try:
        p = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env,
                           timeout=60)
    except FileNotFoundError:
        raise ConfigError(["sbatch: not found; is Slurm installed here? (--dry-run prints the scripts)"]) from None
    if p.returncode != 0:
        raise ConfigError([f"sbatch {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}"])
    return p.stdout.strip().split(";")[0]
