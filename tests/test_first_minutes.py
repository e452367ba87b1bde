"""The first minutes of a run (issue 24): no false alarm, no silence, no wrong estimate.

- npv_per_pct where the parameter is never (client_loss_month = +inf) is NaN by
  definition, marked in the file and not reported as unexpected; a planted NaN still is,
  with its grid point.
- From the first second the run says what it does on stderr (reading inputs, compiling,
  running, writing), and Ctrl-C while JAX compiles stops the process at once, with no
  file left.
- (The time-left estimate's own tests are in test_progress.py.)

The JAX runs use the 6-point smoke grid of the example portfolio; the two CLI runs of the
sensitivity tests share one compiled program (_one_program), the compile being most of
their time on 2 cores.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import memoised

from stresstest.backends import jax_importable
from stresstest.cli import main
from stresstest.engine import Chunk, Extremes, describe_nonfinite, unexpected_nonfinite
from stresstest.grid_config import Axis, Scenario
from stresstest.kernels.params import PARAM_NAMES
from stresstest.kernels.shocks import AxisSpec

needs_jax = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")

NEVER = PARAM_NAMES.index("client_loss_month")
GPUS = PARAM_NAMES.index("gpus")

# ------------------------------------------------------------------ expected vs unexpected


def _scenario():
    spec = AxisSpec("u", ("utilization_training",), "shift")
    return Scenario("<t>", "grid", "t", [Axis("u", spec, np.array([0.0, 0.1, 0.2, 0.3]), None, "u", None)])


def _chunk(start, n, c, nan_at=()):
    """npv_per_pct of n points (c clusters): NaN in client_loss_month everywhere (never,
    times its zero gradient), and at the (point, cluster, parameter) cells of nan_at."""
    v = np.ones((n, c, len(PARAM_NAMES)))
    v[:, :, NEVER] = np.nan
    for cell in nan_at:
        v[cell] = np.nan
    base = np.zeros(n)
    return Chunk(start, start + n, {"npv": base, "irr": base, "roi": base, "npv_per_pct": v})


def test_a_percent_move_of_never_is_expected_and_a_planted_nan_is_not():
    never = np.zeros((2, len(PARAM_NAMES)), dtype=bool)
    never[:, NEVER] = True
    ex = Extremes(never=never)
    ex.update(_chunk(0, 2, 2))
    assert unexpected_nonfinite(ex) == {}
    assert ex.nonfinite["npv_per_pct"] == (4, 0)
    (line,) = describe_nonfinite(_scenario(), ex)
    assert "expected where the parameter is never" in line and "UNEXPECTED" not in line

    ex.update(_chunk(2, 2, 2, nan_at=[(1, 0, GPUS)]))  # grid point 3, a finite parameter
    assert unexpected_nonfinite(ex) == {"npv_per_pct": (1, 3)}
    (line,) = describe_nonfinite(_scenario(), ex)
    assert line.startswith("npv_per_pct: 1 non-finite value(s), first at u=0.3 (UNEXPECTED")
    assert "8 more expected where the parameter is never" in line

    # without the mask (a caller that does not know the parameters) nothing is excused
    bare = Extremes()
    bare.update(_chunk(0, 2, 2))
    assert unexpected_nonfinite(bare) == {"npv_per_pct": (4, 0)}


_PLANT: list = []  # (flat index, cluster, parameter) of a NaN the next runs' npv_per_pct gets


@pytest.fixture(scope="module")
def _kept_programs():
    """jax_adapter.sensitivity_chunk_fn memoised for the module (helpers.memoised)."""
    from stresstest import jax_adapter

    return memoised(jax_adapter.sensitivity_chunk_fn)


@pytest.fixture
def _one_program(monkeypatch, _kept_programs):
    """jax_adapter.sensitivity_chunk_fn memoised (one compile for this module's runs of
    one shape) and, while _PLANT holds a cell, wrapped to plant a NaN there."""
    from stresstest import jax_adapter

    def memo(*args, **kw):
        fn = _kept_programs(*args, **kw)
        if not _PLANT:
            return fn
        flat, c, p = _PLANT[0]

        def planted(*a):
            import jax.numpy as jnp

            out = dict(fn(*a))
            k = flat - int(a[-1])
            if 0 <= k < out["npv"].shape[0]:
                out["npv_per_pct"] = out["npv_per_pct"].at[k, c, p].set(jnp.nan)
            return out

        return planted

    monkeypatch.setattr(jax_adapter, "sensitivity_chunk_fn", memo)
    yield
    _PLANT.clear()


@needs_jax
def test_example_sensitivities_report_no_unexpected_value(tmp_path, _one_program):
    """The bundled example (every cluster's client_loss_month is never): no UNEXPECTED
    line; npv_per_pct is NaN exactly in client_loss_month's cells, which the file marks;
    and the phases were said on stderr."""
    out = tmp_path / "s.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "--sensitivities", "--backend", "jax", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "UNEXPECTED" not in r.output and "npv_per_pct 36" in r.output.replace("\n", " ")
    with h5py.File(out) as f:
        v = f["npv_per_pct"][()]
        assert np.isnan(v[..., NEVER]).all()
        assert np.isfinite(np.delete(v, NEVER, axis=-1)).all()
        assert "the parameter is never" in f["npv_per_pct"].attrs["nonfinite_means"]
        assert "never paid back" in f["payback_months"].attrs["nonfinite_means"]  # as before
    lines = r.stderr.splitlines()
    assert lines[0] == "reading inputs"
    assert lines[1] == "compiling the grid and gradients for jax on cpu (compile cache off)"
    assert lines[2].startswith("compiled in ") and lines[3] == "running: 6 grid points"
    assert lines[-1] == f"writing {out}"


@needs_jax
def test_a_planted_nan_is_reported_with_its_grid_point(tmp_path, _one_program):
    _PLANT.append((3, 2, GPUS))  # smoke grid point 3: utilization=0, price=1
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "--sensitivities", "--backend", "jax",
                                  "-o", str(tmp_path / "p.h5")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert ("npv_per_pct: 1 non-finite value(s), first at utilization=0, price=1 (UNEXPECTED: check "
            "the inputs; 36 more expected where the parameter is never") in text, r.output


# ------------------------------------------------------------------ phases and Ctrl-C


def test_json_and_quiet_keep_stderr_silent(tmp_path):
    for flag in ("--json", "--quiet"):
        r = CliRunner().invoke(main, ["run", "-s", "smoke", "--backend", "numpy", flag,
                                      "-o", str(tmp_path / f"{flag[2:]}.h5")])
        assert r.exit_code == 0, r.output
        assert r.stderr == "", (flag, r.stderr)
    import json

    json.loads(CliRunner().invoke(main, ["run", "-s", "smoke", "--backend", "numpy", "--json",
                                         "-o", str(tmp_path / "j.h5")]).stdout)


def test_numpy_run_says_its_phases(tmp_path):
    """No compile on numpy: reading, running, writing, each a line in a log."""
    out = tmp_path / "n.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "--backend", "numpy", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == ["reading inputs", "running: 6 grid points", f"writing {out}"]


def _lines(stream, q):
    for line in stream:
        q.put((time.monotonic(), line))
    q.put((time.monotonic(), None))


def _interrupt_the_compile(tmp_path, args):
    """Start `stresstest ARGS` with the compile cache off, SIGINT it a second after it says
    it is compiling; returns (stderr lines before and after the signal with their times
    since the start, the exit code, seconds from the signal to the exit, stdout)."""
    env = dict(os.environ, STRESSTEST_COMPILE_CACHE="off")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "stresstest.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, q), daemon=True).start()
    seen = []
    try:
        while True:
            at, line = q.get(timeout=60)
            assert line is not None, f"ended before compiling: {seen}"
            seen.append((at - t0, line.rstrip("\n")))
            if line.startswith("compiling"):
                break
        time.sleep(1.0)
        assert proc.poll() is None, "the compile ended already"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        latency = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = []
    while (item := q.get(timeout=10))[1] is not None:
        rest.append(item[1])
    return seen, rest, proc.returncode, latency, proc.stdout.read()


@needs_jax
def test_ctrl_c_while_compiling_exits_at_once_with_no_file(tmp_path):
    """SIGINT a second into the compile of a cold `run --sensitivities` (which takes
    10 s or more on 2 cores): exit 130 within 3 s, no result and no partial file. Before
    issue 24 the compile held the signal back (5-15 s) and said nothing for that long."""
    out = tmp_path / "s.h5"
    seen, rest, code, latency, stdout = _interrupt_the_compile(
        tmp_path, ["run", "-s", "smoke", "--sensitivities", "--backend", "jax", "-o", str(out)])
    assert seen[0][1] == "reading inputs" and seen[0][0] < 5, seen  # at once (Python's start-up)
    assert code == 130, rest
    assert latency < 3.0, latency
    assert rest == ["interrupted while compiling: no result file written\n"], rest
    assert stdout == ""
    assert not out.exists() and list(tmp_path.glob(".*")) == []


@needs_jax
def test_ctrl_c_while_a_shard_compiles_exits_at_once_with_no_file(tmp_path):
    """`run --shard` compiles before its file is opened, saying so, and SIGINT there exits
    130 at once with no shard or partial file (before: the compile ran inside the first
    chunk, silently, and the signal waited for it; then the interpreter aborted)."""
    out = tmp_path / "shards"
    _, rest, code, latency, _ = _interrupt_the_compile(
        tmp_path, ["run", "-s", "smoke", "--sensitivities", "--backend", "jax", "--shard", "0/2", "-o", str(out)])
    assert code == 130, rest
    assert latency < 3.0, latency
    assert rest == ["interrupted while compiling: the shard file was not written\n"], rest
    assert not out.exists() or list(out.iterdir()) == []
