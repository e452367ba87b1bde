"""Progress: plain periodic lines when the stream is not a terminal (Slurm logs, pipes)."""

import io
import signal

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
    import os
    import time

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
