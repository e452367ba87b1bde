"""Issue 24: batch scripts built safely, sbatch pass-through options, the merge job's own
limits, the dry run's merge submission, submit without Slurm, ranges in reports and
--only, `stresstest status`, shell completion. (No Slurm needed: tests/test_slurm.py
runs the same against a real one.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.shards import shard_name

GRID = """scenario:
  kind: grid
  axes:
    - {shock: utilization, values: [-0.3, -0.1, 0.0, 0.1]}
    - {shock: price, linspace: [0.5, 1.3, 5]}
    - {shock: energy, values: [1.0, 2.0]}
"""
# 4 x 5 x 10 = 200 points, for a set of 200 shards
GRID200 = GRID.replace("values: [1.0, 2.0]", "linspace: [0.5, 2.0, 10]")
HOSTILE = "my dir $(touch INJECTED) `touch INJECTED2` 'q' \"dq\" é #x %j"


def _grid(tmp_path, text=GRID, name="grid.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _submit(sc, tmp_path, *extra, env=None):
    return CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "4", "--output-dir", str(tmp_path / "o"),
                                     "-o", str(tmp_path / "final.h5"), "--backend", "numpy", *extra], env=env)


def _sections(output: str) -> dict[str, str]:
    """A dry run's output -> {script file name: its text and its sbatch line}."""
    out = {}
    for part in output.split("==> ")[1:]:
        head, _, body = part.partition(" <==\n")
        out[Path(head).name] = body
    return out


def _sbatch_lines(script: str) -> list[str]:
    """The arguments sbatch reads from the #SBATCH lines, parsed by sbatch's own rules
    (src/sbatch/opt.c, _get_argument): white space ends an argument unless quoted,
    single or double quotes, a backslash escapes the next character, an unquoted #
    ends the line."""
    args = []
    for line in script.splitlines()[1:]:
        if not line.startswith("#SBATCH"):
            break
        rest, arg, quote, esc = line[len("#SBATCH"):].lstrip(), "", None, False
        for ch in rest:
            if esc:
                arg, esc = arg + ch, False
            elif ch == "\\":
                esc = True
            elif quote:
                if ch == quote:
                    quote = None
                else:
                    arg += ch
            elif ch in "\"'":
                quote = ch
            elif ch == "#" or ch.isspace():
                break
            else:
                arg += ch
        args.append(arg)
    return args


# ---------------------------------------------------------------- 1. pass-through options

def test_sbatch_options_pass_through_to_the_arrays_and_the_merge(tmp_path):
    sc = _grid(tmp_path)
    r = _submit(sc, tmp_path, "--sbatch-option=--qos=high", "--sbatch-option", "--exclusive",
                "--sbatch-option", "--comment=two words", "--merge-sbatch-option=--qos=low", "--dry-run")
    assert r.exit_code == 0, r.output
    s = _sections(r.output)
    shards, merge = s["shards-0.sbatch"], s["merge.sbatch"]
    assert "#SBATCH --qos=high\n" in shards and "#SBATCH --exclusive\n" in shards
    assert '#SBATCH --comment="two words"\n' in shards
    assert "--comment=two words" in _sbatch_lines(shards)
    assert "#SBATCH --qos=low\n" in merge and "qos=high" not in merge and "exclusive" not in merge
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value, want", [
    ("-q high", "give sbatch's long form"),
    ("qos=high", "give sbatch's long form"),
    ("--qos high", "must be one sbatch option"),
    ("--", "must be one sbatch option"),
    ("--partition=gpu", "use --partition"),
    ("--time=1:00:00", "use --time"),
    ("--array=0-3", "submit writes it itself"),
    ("--arr=0-3", "--array is not passed through"),
    ("--output=/tmp/x", "submit writes it itself"),
    ("--dependency=afterok:1", "submit writes it itself"),
    ("--comment=a\nhostname", "control character '\\n'"),
])
def test_malformed_sbatch_options_are_refused(tmp_path, value, want):
    sc = _grid(tmp_path)
    r = _submit(sc, tmp_path, "--sbatch-option", value, "--dry-run")
    assert r.exit_code == 2 and "--sbatch-option" in r.output and want in r.output, r.output


def test_merge_options_refuse_what_the_merge_sets(tmp_path):
    sc = _grid(tmp_path)
    r = _submit(sc, tmp_path, "--merge-sbatch-option=--mem=2G", "--dry-run")
    assert r.exit_code == 2 and "use --merge-mem" in r.output
    # the merge may ask for cores (the shards' --cpus-per-task is not the merge's)
    r = _submit(sc, tmp_path, "--merge-sbatch-option=--cpus-per-task=4", "--dry-run")
    assert r.exit_code == 0 and "#SBATCH --cpus-per-task=4" in _sections(r.output)["merge.sbatch"]


# ---------------------------------------------------------------- 2. the merge job's limits

def test_merge_job_has_its_own_small_limits(tmp_path):
    """Before: the merge job took the shards' --partition gpu, --time, --mem and GPUs."""
    sc = _grid(tmp_path)
    r = _submit(sc, tmp_path, "--partition", "gpu", "--time", "2-00:00:00", "--mem", "64G", "--gpus-per-task",
                "2", "--cpus-per-task", "8", "--account", "proj7", "--dry-run")
    assert r.exit_code == 0, r.output
    s = _sections(r.output)
    shards, merge = _sbatch_lines(s["shards-0.sbatch"]), _sbatch_lines(s["merge.sbatch"])
    assert {"--partition=gpu", "--time=2-00:00:00", "--mem=64G", "--gpus-per-task=2"} <= set(shards)
    assert not any(a.startswith(("--partition", "--gpus", "--cpus")) for a in merge), merge
    assert {"--time=00:30:00", "--mem=8G", "--account=proj7"} <= set(merge)
    r = _submit(sc, tmp_path, "--partition", "gpu", "--merge-partition", "cpu", "--merge-time", "10",
                "--merge-mem", "2G", "--dry-run")
    merge = _sbatch_lines(_sections(r.output)["merge.sbatch"])
    assert {"--partition=cpu", "--time=10", "--mem=2G"} <= set(merge)


@pytest.mark.parametrize("args, want", [
    (["--merge-time", "half an hour"], "--merge-time: 'half an hour' is not a Slurm time"),
    (["--time", "1h"], "--time: '1h' is not a Slurm time"),
    (["--merge-mem", "lots"], "--merge-mem: 'lots' is not a Slurm memory size"),
    (["--mem", "8 G"], "--mem: '8 G' is not a Slurm memory size"),
    (["--merge-partition", ""], "--merge-partition: must not be empty"),
])
def test_limits_are_validated(tmp_path, args, want):
    r = _submit(_grid(tmp_path), tmp_path, *args, "--dry-run")
    assert r.exit_code == 2 and want in r.output, r.output


# ---------------------------------------------------------------- 3. the dry run's merge submission

def test_dry_run_prints_every_submission_with_the_dependency_placeholder(tmp_path):
    sc = _grid(tmp_path)
    r = _submit(sc, tmp_path, "--dry-run")
    assert r.exit_code == 0, r.output
    out = (tmp_path / "o").resolve()
    assert f"$ sbatch --parsable {out}/shards-0.sbatch\n" in r.output
    assert (f"$ sbatch --parsable --dependency=afterok:<array job id> --kill-on-invalid-dep=yes "
            f"{out}/merge.sbatch\n") in r.output
    assert list(_sections(r.output)) == ["shards-0.sbatch", "merge.sbatch"]
    # several arrays (more shards than MaxArraySize): the merge waits for each
    big = _grid(tmp_path, GRID.replace("values: [1.0, 2.0]", "linspace: [0.5, 2.0, 60]"), "big.yaml")
    r = CliRunner().invoke(main, ["submit", "-s", str(big), "--shards", "1200", "--output-dir", str(out),
                                  "--dry-run"])
    assert r.exit_code == 0, r.output
    assert list(_sections(r.output)) == ["shards-0.sbatch", "shards-1.sbatch", "merge.sbatch"]
    assert "--dependency=afterok:<array job id 0>:<array job id 1> --kill-on-invalid-dep=yes" in r.output
    assert not out.exists()


# ---------------------------------------------------------------- 4. submit without Slurm

def test_submit_without_sbatch_refuses_and_writes_nothing(tmp_path):
    """Before: submit made the folder, logs/ and submit.json, then failed on sbatch (exit 2)."""
    sc = _grid(tmp_path)
    bare = tmp_path / "bin"  # a PATH without sbatch (the interpreter is called by its path)
    bare.mkdir()
    env = dict(os.environ, PATH=str(bare))
    out = tmp_path / "o"
    p = subprocess.run([sys.executable, "-m", "stresstest.cli", "submit", "-s", str(sc), "--shards", "4",
                        "--output-dir", str(out), "-o", str(tmp_path / "m.h5")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "sbatch not found on PATH" in p.stderr and "nothing was written" in p.stderr
    assert not out.exists() and not (tmp_path / "m.h5").exists()
    out.mkdir()  # an existing folder (a rerun) is left as it was
    p = subprocess.run([sys.executable, "-m", "stresstest.cli", "submit", "-s", str(sc), "--shards", "4",
                        "--output-dir", str(out), "--only", "1"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2 and list(out.iterdir()) == []
    # the dry run needs no Slurm
    r = _submit(sc, tmp_path, "--dry-run", env={"PATH": str(bare)})
    assert r.exit_code == 0 and "merge.sbatch" in r.output


# ---------------------------------------------------------------- 5. ranges

def test_ranges_and_only():
    from stresstest.shards import ranges
    from stresstest.submit import parse_only

    assert ranges([]) == "" and ranges([5]) == "5" and ranges([3, 4, 5, 9]) == "3-5,9"
    assert ranges([i for i in range(200) if i != 17]) == "0-16,18-199"
    assert ranges([1, 3, 2, 2, 7]) == "1-3,7"
    assert parse_only("0-16,18-199", 200) == [i for i in range(200) if i != 17]
    assert parse_only(" 3 , 4-6,9", 10) == [3, 4, 5, 6, 9]
    assert parse_only("4-9", 10) == list(range(4, 10))


@pytest.mark.parametrize("only, want", [
    ("5-3", "a range runs from low to high"), ("1-", "must list shard indices"), ("-3", "must list shard"),
    ("1,,2", "must list shard"), ("", "must list shard"), ("a", "must list shard"), ("1-2-3", "must list"),
    ("0-4", "outside 0..3"), ("1.5", "must list shard"),
])
def test_malformed_only_is_refused(tmp_path, only, want):
    r = _submit(_grid(tmp_path), tmp_path, "--only", only, "--dry-run")
    assert r.exit_code == 2 and want in r.output, (only, r.output)


def test_missing_shards_are_reported_as_ranges(tmp_path):
    """Before: 199 lines 'shard i of 200 is missing' and --only 0,1,2,...,199."""
    sc = _grid(tmp_path, GRID200)
    sh = tmp_path / "sh"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", "17/200", "-o", str(sh), "--backend", "numpy",
                                  "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["merge", str(sh), "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 2
    assert f"{sh}: shards 0-16,18-199 of 200 are missing (199 files shard-IIIIII-of-000200.h5)" in r.output
    assert r.output.count("\n") < 5
    rerun = next(ln for ln in r.output.splitlines() if ln.startswith("rerun only these: "))
    assert rerun.endswith("--only 0-16,18-199")
    # and the rerun's --only is read back as the 199 shards
    argv = shlex.split(rerun.split("rerun only these: stresstest ")[1])
    assert argv[:4] == ["submit", "PORTFOLIO", "--scenario", "SCENARIO"]  # no submit.json here
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), *argv[4:], "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "#SBATCH --array=0-16,18-199" in r.output


# ---------------------------------------------------------------- 6. status

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_status_of_a_folder_of_shards(tmp_path):
    """Done (checksummed), running (a partial file of a live process), failed (corrupt),
    missing (no file, or a stale partial file of a dead process): table and JSON."""
    sc = _grid(tmp_path)
    sh = tmp_path / "sh"
    for i in (0, 1, 2, 5, 6):
        assert CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", f"{i}/8", "-o", str(sh), "--backend",
                                         "numpy", "-q"]).exit_code == 0
    with h5py.File(sh / shard_name(6, 8), "r+") as f:  # data changed behind the checksum
        f["data/npv"][0] = f["data/npv"][0] + 1.0
    dead = _dead_pid()
    (sh / f".{shard_name(3, 8)}.{dead}.partial").write_bytes(b"half a file")
    (sh / f".{shard_name(4, 8)}.{os.getpid()}.partial").write_bytes(b"being written")
    r = CliRunner().invoke(main, ["status", str(sh), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["shards"] == 8
    assert st["indices"] == {"done": [0, 1, 2, 5], "running": [4], "pending": [], "failed": [6],
                             "missing": [3, 7]}
    assert st["ranges"]["done"] == "0-2,5" and st["counts"]["missing"] == 2
    assert st["details"]["6"] == "corrupt (checksum mismatch)"
    assert f"stale partial file of PID {dead}" in st["details"]["3"]
    assert f"PID {os.getpid()}" in st["details"]["4"]
    assert st["rerun"].endswith("--shards 8 --output-dir " + str(sh) + " --only 3,6-7")
    r = CliRunner().invoke(main, ["status", str(sh)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "  done           4  0-2,5" in lines and "  missing        2  3,7" in lines
    assert "  failed         1  6" in lines and "  running        1  4" in lines and "  pending        0  -" in lines
    assert "  6: corrupt (checksum mismatch)" in lines
    assert any(ln.startswith("rerun the failed and missing ones: stresstest submit") for ln in lines)
    # not a shard folder: exit 2
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["status", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "not a shard set" in r.output
    assert CliRunner().invoke(main, ["status", str(tmp_path / "nope")]).exit_code == 2


def test_status_without_slurm_commands_degrades(tmp_path):
    """submit.json names jobs, but squeue, sacct and scontrol are not there: the files say
    what they can, and the output says which commands did not answer."""
    sc = _grid(tmp_path)
    sh = tmp_path / "sh"
    assert CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", "0/4", "-o", str(sh), "--backend",
                                     "numpy", "-q"]).exit_code == 0
    (sh / "submit.json").write_text(json.dumps({
        "portfolio": "/p.yaml", "scenario": str(sc), "shards": 4, "output_dir": str(sh),
        "output": str(tmp_path / "m.h5"), "partition": "gpu", "sbatch_options": ["--qos=high"],
        "submissions": [{"indices": "0-3", "arrays": [{"job": "41", "offset": 0, "indices": "0-3"}],
                         "merge": "42"}]}))
    bare = tmp_path / "bin"
    bare.mkdir()
    r = CliRunner().invoke(main, ["status", str(sh), "--json"], env={"PATH": str(bare)})
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["indices"]["done"] == [0] and st["indices"]["missing"] == [1, 2, 3]
    assert st["slurm"]["squeue"] == "unavailable (not installed)"
    assert st["slurm"]["sacct"] == "unavailable (not installed)"
    assert st["jobs"] == {"arrays": ["41"], "merge": "42", "merge_state": None}
    assert st["merged_file"] == {"path": str(tmp_path / "m.h5"), "exists": False}
    assert "--partition gpu" in st["rerun"] and "--sbatch-option=--qos=high" in st["rerun"]
    assert st["rerun"].endswith("--only 1-3")


def test_status_reads_squeue_and_sacct(tmp_path):
    """Stand-ins for squeue and sacct print what Slurm prints: a running task, a pending
    one, a failed one; the merge job pending on its dependency."""
    sh = tmp_path / "sh"
    sh.mkdir()
    (sh / "submit.json").write_text(json.dumps({
        "portfolio": "/p.yaml", "scenario": "/s.yaml", "shards": 5, "output_dir": str(sh), "output": "/m.h5",
        "submissions": [{"indices": "0-4", "arrays": [{"job": "70", "offset": 0, "indices": "0-4"}], "merge": "71"},
                        {"indices": "3", "arrays": [{"job": "80", "offset": 3, "indices": "3"}], "merge": "81"}]}))
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "squeue").write_text("#!/bin/sh\nprintf '70|1|72|RUNNING|None\\n70|2|73|PENDING|Resources\\n"
                                 "81|N/A|81|PENDING|Dependency\\n99|0|100|RUNNING|None\\n'\n")
    (bin_ / "sacct").write_text("#!/bin/sh\nprintf '70_0|FAILED\\n70_3|COMPLETED\\n80_0|TIMEOUT\\n70_4|CANCELLED by 0\\n'\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    r = CliRunner().invoke(main, ["status", str(sh), "--json"], env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["indices"] == {"done": [], "running": [1], "pending": [2], "failed": [0, 3, 4], "missing": []}
    assert st["details"]["2"] == "Slurm job 70_2: PENDING (Resources)"
    assert st["details"]["0"].startswith("Slurm job 70_0: FAILED")
    assert st["details"]["3"].startswith("Slurm job 80_0: TIMEOUT")  # the rerun's job, not the first one's
    assert st["details"]["4"].startswith("Slurm job 70_4: CANCELLED")
    assert st["jobs"]["merge"] == "81" and st["jobs"]["merge_state"] == "PENDING Dependency"
    assert st["slurm"] == {"squeue": "ok", "sacct": "ok"}


# ---------------------------------------------------------------- 7. values in scripts

# NUL only in the plain options: a path option's click.Path stats the value first, and a
# real command line cannot hold NUL anyway
_CONTROL_CASES = [(o, b) for o in ("--partition", "--account", "--time", "--mem", "--merge-partition",
                                   "--merge-time", "--merge-mem", "--output-dir", "-o")
                  for b in ("gpu\necho INJECTED", "gpu\recho INJECTED", "gpu\x00x", "a\tb")
                  if not ("\x00" in b and o in ("--output-dir", "-o"))]


@pytest.mark.parametrize(("option", "bad"), _CONTROL_CASES)
def test_control_characters_are_refused_naming_the_option(tmp_path, option, bad):
    """Before: --partition $'gpu\\necho INJECTED' wrote `echo INJECTED` as a line of both scripts."""
    sc = _grid(tmp_path)
    args = ["submit", "-s", str(sc), "--shards", "4", "--dry-run", "--output-dir", str(tmp_path / "o"), option,
            str(tmp_path / bad) if option in ("--output-dir", "-o") else bad]
    r = CliRunner().invoke(main, args)
    name = {"-o": "--output"}.get(option, option)
    assert r.exit_code == 2, r.output
    assert f"error: {name}: " in r.output and "control character" in r.output and "INJECTED\n" not in r.output


def test_a_backslash_in_the_output_folder_is_refused(tmp_path):
    r = _submit(_grid(tmp_path), tmp_path, "--output-dir", str(tmp_path / "a\\b"), "--dry-run")
    assert r.exit_code == 2 and "--output-dir" in r.output and "backslash" in r.output


def test_hostile_values_are_quoted(tmp_path):
    """Spaces, quotes, $( ), backticks, #, % and non-ASCII in paths and pass-through
    values: each #SBATCH line reads back (by sbatch's rules) as the value given, each
    command line (by the shell's) as the arguments given. Before: a space in the output
    folder made sbatch refuse the script ("Invalid directive")."""
    d = tmp_path / HOSTILE
    d.mkdir()
    sc = _grid(d, name="grid 'x'.yaml")
    comment = "c $(touch /tmp/INJECTED) `id` 'q' \"dq\" é # %j \\"
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "4", "--output-dir", str(d / "out"),
                                  "-o", str(d / "m.h5"), "--backend", "numpy", "--sbatch-option",
                                  f"--comment={comment}", "--merge-partition", "a b", "--dry-run"])
    assert r.exit_code == 0, r.output
    s = _sections(r.output)
    shards, merge = s["shards-0.sbatch"], s["merge.sbatch"]
    logs = str(d / "out" / "logs").replace("%", "%%")
    assert _sbatch_lines(shards) == ["--job-name=stresstest-shards", f"--output={logs}/shard-%A_%a.out",
                                     f"--comment={comment}", "--array=0-3"]
    assert _sbatch_lines(merge) == ["--job-name=stresstest-merge", f"--output={logs}/merge-%j.out",
                                    "--partition=a b", "--time=00:30:00", "--mem=8G"]
    run = next(ln for ln in shards.splitlines() if " run " in ln)
    argv = shlex.split(run.replace('"$(( 0 + SLURM_ARRAY_TASK_ID ))/4"', "I/4"))
    from stresstest.presets import list_presets

    assert argv[3:] == ["run", str(list_presets()["example"].resolve()), "--scenario", str(sc), "--shard",
                        "I/4", "-o", str(d / "out"), "--backend", "numpy", "-q"]
    mline = next(ln for ln in merge.splitlines() if " merge " in ln)
    assert shlex.split(mline)[3:] == ["merge", str(d / "out"), "-o", str(d / "m.h5")]
    # the shell runs the command lines as they are: every argument arrives intact, nothing else runs
    fake = tmp_path / "args.py"
    fake.write_text("import json, sys; print(json.dumps(sys.argv[1:]))")
    cmd = run.replace(shlex.quote(sys.executable), shlex.quote(sys.executable) + " " + str(fake), 1)
    p = subprocess.run(["bash", "-c", "SLURM_ARRAY_TASK_ID=2; " + cmd], capture_output=True, text=True,
                       cwd=tmp_path)
    assert json.loads(p.stdout)[2:] == ["run", argv[4], "--scenario", str(sc), "--shard", "2/4", "-o",
                                        str(d / "out"), "--backend", "numpy", "-q"]
    assert not list(tmp_path.glob("INJECTED*")) and not Path("INJECTED").exists()


def test_sbatch_value_quotes_only_what_needs_it():
    from stresstest.submit import sbatch_value

    assert sbatch_value("gpu") == "gpu" and sbatch_value("01:00:00") == "01:00:00"
    assert sbatch_value("/a/b-c_d.e/%A_%a.out") == "/a/b-c_d.e/%A_%a.out"
    assert sbatch_value("a b") == '"a b"' and sbatch_value("") == '""'
    assert sbatch_value('a"b\\c') == '"a\\"b\\\\c"'
    assert sbatch_value("x#y") == '"x#y"' and sbatch_value("é") == '"é"'


# ---------------------------------------------------------------- 8. shell completion

def _complete(words: str, *, cword: int | None = None) -> list[tuple[str, str]]:
    parts = words.split(" ")
    env = {"_STRESSTEST_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1 if cword is None else cword)}
    r = CliRunner().invoke(main, [], env=env, prog_name="stresstest")
    assert r.exit_code == 0, r.output
    return [tuple(ln.split(",", 1)) for ln in r.output.splitlines()]


def test_shell_completion_of_parameters_presets_and_named_scenarios():
    assert _complete("stresstest breakeven --param on_dem") == [("plain", "on_demand_price")]
    got = _complete("stresstest breakeven --param ")
    assert ("plain", "utilization") in got and ("plain", "debt_term_months") in got and len(got) > 40
    assert ("plain", "montecarlo") in _complete("stresstest run -s mont")
    assert ("plain", "montecarlo") in _complete("stresstest submit --scenario mont")
    assert ("plain", "example") in _complete("stresstest run exa")
    assert ("plain", "example") not in _complete("stresstest run -s exa")  # a portfolio, not a scenario
    assert _complete("stresstest scenarios show eu-") == [("plain", "eu-energy-crisis-2022")]
    # files: the shell completes them where no preset matches
    assert ("file", "./my") in _complete("stresstest run ./my")
    assert ("file", "x") in _complete("stresstest validate x")
    assert ("dir", "ru") in _complete("stresstest status ru")
    assert ("dir", "ru") in _complete("stresstest merge ru")


def test_shell_completion_through_the_installed_command():
    exe = Path(sys.executable).with_name("stresstest")
    if not exe.exists():
        pytest.skip("no stresstest entry point next to the interpreter")
    env = dict(os.environ, _STRESSTEST_COMPLETE="bash_complete", COMP_WORDS="stresstest run -s mont",
               COMP_CWORD="3")
    p = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "plain,montecarlo" in p.stdout.splitlines(), p.stdout + p.stderr
    env["_STRESSTEST_COMPLETE"] = "bash_source"
    p = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    assert re.search(r"complete .*-F _stresstest_completion stresstest", p.stdout)
