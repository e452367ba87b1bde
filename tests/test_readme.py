"""The README, followed line by line as a new user would, in a fresh checkout and venv.

The tracked files (`git ls-files`) are copied into a temporary folder: no .venv, no result
files. The quick start's first command, `make run`, creates .venv there and installs
(pip's own cache, ~/.cache/pip, is used as a user's would be: still a fresh venv). Then
every step of the README runs in README order (tests/readme_commands.py says what a step
is): shell commands through `bash -o pipefail -c`, files written from the named YAML
blocks, each python block as a script of its own. Shell commands that change the shell
(`. .venv/bin/activate`, `source`, `export`, `cd`, `eval`) run once and are then put
before every later command, as in the one terminal a user types into. Nothing else is
added: a bare `stresstest` works only if the README has said how to get it on PATH.

A step fails on a non-zero exit or a "Traceback" in its output; the test reports every
failing step with its command and output. The few commands that cannot run here are in
EXCLUDED, each with its reason.

About 2-4 minutes on 2 cores (most of it `make run`'s install and JAX compiles; the
compiled-program cache is a fresh folder, as for a new user).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from readme_commands import Step, steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# (pattern matched against the whole command, what runs instead (None: nothing), why)
EXCLUDED: list[tuple[str, str | None, str]] = [
    (r"make test", None,
     "runs the whole test suite, this test included: recursive, and ~11 minutes"),
    (r"(\.venv/bin/)?(python3? -m )?pytest\b.*", None,
     "the test suite again (recursive); CI runs it through `make test`"),
    (r"stresstest rank\b(?!.*--list-inputs).*",
     "{} --permutations 100 --variance-samples 1000 --sobol-samples 200 --dgsm-samples 200",
     "the default budgets take a minute or more per command on 2 cores; the same command with "
     "small budgets runs every estimator and writes the same file (tests/test_rank.py checks the "
     "estimates)"),
    (r"stresstest optimize\b(?!.*--paths).*", "{} --paths 2000",
     "10,000 paths by default, about 20 s on 2 cores beside the other test worker; the same "
     "command on the scenario's first 2,000 paths runs every step (tests/test_optimize.py "
     "checks the answers)"),
    (r"stresstest submit\b(?!.*--dry-run).*", "{} --dry-run",
     "submits to Slurm, which needs sbatch and a running slurmctld; --dry-run builds and "
     "prints the same sbatch scripts and submits nothing (tests/test_slurm.py runs a real "
     "single-node Slurm)"),
]
# a step prints (and fails) with at most this much of its output
OUTPUT_TAIL = 6000
STEP_TIMEOUT = 900
STATEFUL = re.compile(r"(\.|source|export|cd|eval)\s")
PLACEHOLDER = re.compile(r"\.\.\.|…|<[A-Za-z_ -]+>")


def _excluded(command: str) -> tuple[str | None, str] | None:
    for pattern, instead, why in EXCLUDED:
        if re.fullmatch(pattern, command):
            return (instead.format(command) if instead else None), why
    return None


def _copy_tracked(dest: Path) -> None:
    try:
        # tracked files, and new ones not yet added that git would not ignore (a fresh
        # clone of a commit has only the former)
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, check=True,
                                capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e}): the test copies the tracked files")
    for name in listed.decode().split("\0"):
        src = ROOT / name
        if not name or not os.path.lexists(src) or src.is_dir():
            continue                      # deleted in the work tree, or a submodule
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)


def _user_env(tmp: Path) -> dict[str, str]:
    """This process's environment less what the test run adds: no venv on PATH, no
    pytest, make or JAX settings; the compiled-program cache in a fresh folder."""
    drop = ("PYTEST_", "STRESSTEST_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME",
            "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "XLA_", "JAX_", "CONDA_PREFIX", "COV_CORE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    env["PATH"] = os.pathsep.join(path)
    env["STRESSTEST_COMPILE_CACHE"] = str(tmp / "compile-cache")
    env.pop("PS1", None)
    return env


def _run(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    try:
        done = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        return 124, out + f"\n[killed after {STEP_TIMEOUT} s]"
    return done.returncode, done.stdout.decode(errors="replace")


def _report(step: Step, command: str, rc: int, out: str) -> str:
    tail = out if len(out) <= OUTPUT_TAIL else "[...]\n" + out[-OUTPUT_TAIL:]
    return f"{step.where()}\n$ {command}\nexit {rc}\n{tail.rstrip()}\n"


def test_readme_steps_parse():
    """The README has a quick start that begins with `make run`, and its commands are
    runnable as written: no `...` or <PLACEHOLDER> to fill in."""
    found = steps((ROOT / "README.md").read_text())
    assert found and found[0].kind == "command" and found[0].text == "make run", found[:1]
    bad = [f"{s.where()}: {s.text}" for s in found
           if s.kind == "command" and PLACEHOLDER.search(s.text)]
    assert not bad, "commands with a placeholder to fill in:\n" + "\n".join(bad)


def test_readme_lists_every_preset():
    """The README's `stresstest presets` line names every file `stresstest presets` lists."""
    from stresstest.presets import list_presets

    line = next((s.text for s in steps((ROOT / "README.md").read_text())
                 if s.kind == "command" and s.text == "stresstest presets"), None)
    assert line, "the README shows no `stresstest presets` command"
    raw = next(raw for raw in (ROOT / "README.md").read_text().splitlines()
               if raw.startswith("stresstest presets") and "#" in raw)
    words = set(re.findall(r"[\w-]+", raw.split("#", 1)[1]))
    missing = set(list_presets()) - words
    assert not missing, f"the README's presets comment misses {sorted(missing)}: {raw}"


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path):
    work = tmp_path / "stresstest"
    work.mkdir()
    t_copy = time.perf_counter()
    _copy_tracked(work)
    t_copy = time.perf_counter() - t_copy
    scripts = tmp_path / "readme-python"
    scripts.mkdir()
    env = _user_env(tmp_path)
    prelude: list[str] = []
    failures: list[str] = []
    timings: list[tuple[float, str]] = []
    t_all = time.perf_counter()
    try:
        for step in steps((work / "README.md").read_text()):
            if step.kind == "file":
                (work / step.name).write_text(step.text)
                continue
            if step.kind == "python":
                script = scripts / f"readme_line_{step.line}.py"
                script.write_text(step.text)
                command = f"python {script}"
            else:
                command = step.text
                skip = _excluded(command)
                if skip is not None:
                    instead, why = skip
                    print(f"excluded {step.where()}: {command}  ({why})")
                    if instead is None:
                        continue
                    command = instead
            t0 = time.perf_counter()
            rc, out = _run("\n".join(prelude + [command]), work, env)
            timings.append((time.perf_counter() - t0, command))
            if rc != 0 or "Traceback" in out:
                failures.append(_report(step, command, rc, out))
                if step.text == "make run":
                    break                 # nothing after it can run
            elif step.kind == "command" and STATEFUL.match(command + " "):
                prelude.append(command)
    finally:
        total = time.perf_counter() - t_all
        print(f"\nREADME steps, {total:.0f} s in all (the copy before: {t_copy:.1f} s):")
        for seconds, command in timings:
            print(f"{seconds:7.1f} s  {command[:100]}")
        t_rm = time.perf_counter()
        shutil.rmtree(work / ".venv", ignore_errors=True)   # ~1 GB; keep the rest
        print(f"removing the venv: {time.perf_counter() - t_rm:.1f} s")
    assert not failures, (f"{len(failures)} README step(s) failed:\n\n" + "\n".join(failures))
