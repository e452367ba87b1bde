"""Progress reporting: a bar on a terminal (after a couple of seconds), plain lines elsewhere.

In Slurm logs and pipes a bar's carriage returns are noise, so there the progress is a
line every `every_s` seconds.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "grid points", *, enabled: bool = True,
                 stream=None, delay_s: float = 2.0, every_s: float = 10.0):
        self.total = total
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay_s = delay_s
        self.every_s = every_s
        self.done = 0
        self.t0 = time.monotonic()
        self.last_line = self.t0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._task = None

    def advance(self, n: int) -> None:
        """Count n more done; a chunk boundary, where a recorded signal stops the run
        (Interrupts)."""
        self.done += n
        check_interrupts()
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if self._bar is None and now - self.t0 >= self.delay_s and self.done < self.total:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar
                from rich.progress import TextColumn, TimeRemainingColumn

                self._bar = Bar(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(file=self.stream),
                                transient=True)
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=self.total)
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
        elif now - self.last_line >= self.every_s:
            self.last_line = now
            elapsed = now - self.t0
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"{self.done}/{self.total} {self.label} ({100 * self.done / self.total:.1f} %), "
                  f"{elapsed:.0f} s elapsed, about {eta:.0f} s left", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM taken at chunk boundaries: the handler only records
    the signal, and `check()` raises KeyboardInterrupt between chunks, so that the
    writer's context removes its temporary file. An interrupt raised anywhere else could
    land inside a queue's or a lock's bookkeeping (the writer thread's queue) and leave
    it stuck. A second signal before the next boundary interrupts at once.

    SIGTERM is what Slurm sends at a job's time limit and on scancel (then SIGKILL after
    its KillWait, 30 s by default); it is handled as SIGINT is, and the CLI exits with
    130 for both ("interrupted: ... not written").

    Every Progress.advance is a chunk boundary too: it checks every active Interrupts,
    so loops that only report their progress (a shard's, on any thread) stop there.
    Only the main thread can set signal handlers; elsewhere this does nothing."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal
        import threading

        self.hit = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self._old[signum] = signal.signal(signum, self._handle)
        _ACTIVE.append(self)
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        if self in _ACTIVE:
            _ACTIVE.remove(self)
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old = {}


_ACTIVE: list[Interrupts] = []  # entered and not yet left, innermost last


def check_interrupts() -> None:
    """Raise KeyboardInterrupt where an active Interrupts has recorded a signal."""
    for interrupts in list(_ACTIVE):
        interrupts.check()
