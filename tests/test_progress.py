"""Progress: phases said at once, plain periodic lines when the stream is not a terminal (Slurm
logs, pipes), the time left from the rate after the first chunk; signals at boundaries."""

import io
import os
import signal
import threading
import time

import numpy as np
import pytest

from stresstest.progress import Interrupts, Progress


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(100, stream=stream, every_s=0.0)
    for _ in range(4):
        bar.advance(25)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("100/100 grid points (100.0 %)")
    assert "\r" not in stream.getvalue()


def test_quiet_prints_nothing():
    stream = io.StringIO()
    bar = Progress(10, stream=stream, every_s=0.0, enabled=False)
    bar.advance(10)
    bar.close()
    assert stream.getvalue() == ""


# ------------------------------------------------------- signals at chunk boundaries


class NotTaken(Exception):
    """The signal reached the handler outside stresstest (it was not taken)."""


@pytest.fixture(autouse=True)
def _outer_handlers():
    """Handlers that fail the test, not kill pytest, where a signal is not taken."""
    def outer(signum, frame):
        raise NotTaken(signal.Signals(signum).name)

    old = {s: signal.signal(s, outer) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def _deliver(signum):
    """Send a signal to this process and let Python run its handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # handlers run between bytecodes of the main thread


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_is_taken_at_the_next_boundary(signum):
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        with Interrupts() as interrupts:
            _deliver(signum)  # recorded, not raised here
            reached = True
            interrupts.check()
    assert reached
    assert signal.getsignal(signum) is before  # the previous handler is back


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_interrupts_at_once(signum):
    with pytest.raises(KeyboardInterrupt):
        with Interrupts():
            _deliver(signum)
            _deliver(signum)
            raise AssertionError("not reached")


def test_progress_advance_is_a_boundary():
    """Loops that only report progress (a shard's) stop at their next advance."""
    bar = Progress(10, enabled=False)
    bar.advance(1)  # no Interrupts active: nothing to check
    with pytest.raises(KeyboardInterrupt):
        with Interrupts():
            bar.advance(1)
            _deliver(signal.SIGTERM)
            bar.advance(1)
            raise AssertionError("not reached")
    bar.advance(1)  # outside: nothing pending
    assert bar.done == 4


# ------------------------------------------------------- phases and the time left (issue 24)

from stresstest.progress import Estimate, duration  # noqa: E402


class Clock:
    """A clock the test moves."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_the_estimate_leaves_out_the_first_chunk():
    """A first chunk of 30 s (the compile) then chunks of 100 points a second: after a few
    chunks the time left is within 20 % of the truth (the old done / elapsed said 8x)."""
    est = Estimate(2000, now=0.0)
    assert est.seconds_left() is None
    t = 30.0
    est.add(100, t)
    assert est.seconds_left() is None  # one step says nothing of the rate
    for k in range(3):
        t += 1.0
        est.add(100, t)
    truth = (2000 - 400) / 100
    assert est.seconds_left() == pytest.approx(truth, rel=0.2)
    assert est.seconds_left() == pytest.approx(truth, rel=1e-12)  # steady steps: exact
    old = (2000 - 400) / (400 / t)
    assert old > 5 * truth
    for _ in range(16):
        t += 1.0
        est.add(100, t)
    assert est.seconds_left() == 0.0


def test_the_estimate_of_uneven_steps_stays_near_the_truth():
    """Steps of 0.5-1.5 s around 1 s for 100 points, after a slow first one: within 20 %."""
    rng = np.random.default_rng(0)
    steps = rng.uniform(0.5, 1.5, 60)
    est = Estimate(100 * 61, now=0.0)
    est.add(100, 45.0)
    t = 45.0
    for k, dt in enumerate(steps[:10]):
        t += dt
        est.add(100, t)
    truth = steps[10:].sum()
    assert est.seconds_left() == pytest.approx(truth, rel=0.2)


def test_plain_lines_give_each_phase_its_own_estimate():
    """The plain (log) mode: phase lines at once, periodic lines with the time left from
    the rate after the first chunk, and a second counted phase at another rate (Monte
    Carlo, then its sensitivities pass) starts an estimate of its own."""
    clock = Clock()
    stream = io.StringIO()
    bar = Progress(enabled=True, stream=stream, every_s=0.0, clock=clock)
    bar.phase("reading inputs")
    clock.t = 1.0
    bar.phase("compiling the paths for jax on cpu (compile cache off)")
    clock.t = 15.0
    bar.note("compiled in 14.0 s")
    bar.begin(1000, "paths")
    clock.t = 35.0  # a slow first chunk
    bar.advance(100)
    for _ in range(3):
        clock.t += 1.0
        bar.advance(100)
    clock.t += 1.0
    bar.advance(600)  # the rest
    bar.begin(1000, "paths, sensitivities pass")  # 10x slower
    for k in range(4):
        clock.t += 10.0
        bar.advance(100)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[:4] == ["reading inputs", "compiling the paths for jax on cpu (compile cache off)",
                         "compiled in 14.0 s", "running: 1,000 paths"]
    assert lines[4] == "100/1,000 paths (10.0 %), 20 s elapsed, estimating the time left"
    assert lines[7] == "400/1,000 paths (40.0 %), 23 s elapsed, about 6 s left"  # truth: 6 s
    assert lines[8] == "1,000/1,000 paths (100.0 %), 24 s elapsed, done"
    assert lines[9] == "running: 1,000 paths, sensitivities pass"
    assert lines[10].endswith("estimating the time left")
    assert lines[13] == "400/1,000 paths, sensitivities pass (40.0 %), 40 s elapsed, about 1 min 00 s left"


def test_plain_lines_every_few_seconds():
    clock = Clock()
    stream = io.StringIO()
    bar = Progress(1000, stream=stream, every_s=10.0, clock=clock)
    for _ in range(50):
        clock.t += 1.0
        bar.advance(20)
    assert len(stream.getvalue().splitlines()) == 5


def test_terminal_shows_a_spinner_then_a_bar_with_the_time_left():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = Clock()
    stream = Tty()
    bar = Progress(enabled=True, stream=stream, clock=clock)
    bar.phase("compiling the grid for jax on cpu")
    bar.begin(400, "grid points")
    for _ in range(3):
        clock.t += 1.0
        bar.advance(100)
    bar._live.refresh()
    bar.close()
    text = stream.getvalue()
    assert "compiling the grid for jax on cpu" in text
    assert "300/400" in text and "about 1 s left" in text


def test_phases_are_boundaries():
    bar = Progress(enabled=False)
    with pytest.raises(KeyboardInterrupt):
        with Interrupts():
            bar.phase("reading inputs")
            _deliver(signal.SIGINT)
            bar.phase("compiling")
            raise AssertionError("not reached")


def test_duration_reads_well():
    assert [duration(s) for s in (0.4, 7, 59.6, 61, 3599, 7440)] == [
        "0 s", "7 s", "1 min 00 s", "1 min 01 s", "59 min 59 s", "2 h 04 min"]


def test_a_signal_while_a_worker_runs_is_taken_at_once():
    """in_worker: the main thread waits in short steps, so a signal recorded meanwhile
    stops the wait at once, while the worker (here: a 5 s sleep standing for XLA's
    compile) is left behind."""
    from stresstest.progress import in_worker

    assert in_worker(lambda: 42) == 42
    with pytest.raises(ValueError):
        in_worker(lambda: int("x"))
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Interrupts():
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            in_worker(lambda: time.sleep(5))
    assert time.monotonic() - t0 < 1.0
