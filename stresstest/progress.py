"""Progress reporting: what a run is doing, from its first second, on stderr.

A run goes through phases: reading inputs, compiling (JAX), running (counted: grid
points or paths), writing. On a terminal the phase is a rich spinner with the time spent
in it, and a counted phase a bar; in Slurm logs and pipes, where a bar's carriage returns
are noise, each phase is a plain line when it starts and a counted phase adds a line
every `every_s` seconds. Disabled (--quiet, --json), nothing is printed.

The time left of a counted phase comes from that phase's own rate, measured after its
first step (Estimate): a first chunk carries one-off costs (a compile, the first touch of
memory) that say nothing about the rest.
"""

from __future__ import annotations

import sys
import threading
import time


class Estimate:
    """Time left of one counted phase: the rate of the work done after its first step.

    The first step (a chunk) is timed but not used: it may carry a compile or other
    one-off costs, which made the old estimate (done / elapsed since the start) far too
    long (benchmarks/README.md, "Measurements behind design choices in the code"). From
    the second step on, the rate is (done since the first step) / (time since the first
    step), so the estimate is exact for steady steps whatever the first cost.
    """

    def __init__(self, total: int, now: float):
        self.total = total
        self.t0 = now
        self.done = 0
        self._ref: tuple[int, float] | None = None  # (done, time) at the end of the first step
        self._last: tuple[int, float] | None = None

    def add(self, n: int, now: float) -> None:
        self.done += n
        if self._ref is None:
            self._ref = (self.done, now)
        else:
            self._last = (self.done, now)

    def rate(self) -> float | None:
        """Units per second after the first step; None before a second step."""
        if self._ref is None or self._last is None:
            return None
        (d0, t0), (d1, t1) = self._ref, self._last
        if d1 <= d0 or t1 <= t0:
            return None
        return (d1 - d0) / (t1 - t0)

    def seconds_left(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        rate = self.rate()
        return None if rate is None else (self.total - self.done) / rate


def duration(seconds: float) -> str:
    """A duration for people: 7 s, 3 min 05 s, 2 h 04 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _left(est: Estimate) -> str:
    left = est.seconds_left()
    return "estimating the time left" if left is None else f"about {duration(left)} left"


class Progress:
    """Phases and counted work on `stream` (stderr): a live display on a terminal, plain
    lines elsewhere (the stream's isatty decides).

    Progress(total, label) starts counting at once (as before phases existed);
    Progress() starts with no phase, and phase(), begin() and note() say what follows.
    `clock` (time.monotonic) is for tests.
    """

    def __init__(self, total: int | None = None, label: str = "grid points", *, enabled: bool = True,
                 stream=None, delay_s: float = 2.0, every_s: float = 10.0, clock=time.monotonic):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.delay_s = delay_s  # kept for callers; the display now starts with the first phase
        self.every_s = every_s
        self.clock = clock
        self.t0 = clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.label = label
        self.done = 0
        self.estimate: Estimate | None = None
        self.last_line = self.t0
        self._live = None
        self._task = None
        if total is not None:
            self.begin(total, label, announce=False)

    # ---------------------------------------------------------------- phases

    def phase(self, text: str) -> None:
        """A step that is not counted (reading inputs, compiling, writing), shown at once.
        A boundary, like advance: a recorded signal stops the run here."""
        check_interrupts()
        self.estimate = None
        if not self.enabled:
            return
        if self.tty:
            self._show(text, None)
        else:
            self._line(text)

    def begin(self, total: int, label: str, announce: bool = True) -> None:
        """A counted phase of `total` units named `label`, with its own estimate (a
        boundary, like phase)."""
        check_interrupts()
        self.total, self.label, self.done = total, label, 0
        now = self.clock()
        self.estimate = Estimate(total, now)
        self.last_line = now
        if not self.enabled:
            return
        if self.tty:
            self._show(f"running: {label}", total)
        elif announce:
            self._line(f"running: {total:,} {label}")

    def note(self, text: str) -> None:
        """A one-off fact (how long the compile took), kept on screen and in logs."""
        if not self.enabled:
            return
        if self.tty and self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self._line(text)

    def advance(self, n: int) -> None:
        """Count n more done; a chunk boundary, where a recorded signal stops the run
        (Interrupts)."""
        self.done += n
        now = self.clock()
        if self.estimate is not None:
            self.estimate.add(n, now)
        check_interrupts()
        if not self.enabled or self.estimate is None:
            return
        if self.tty:
            if self._live is not None and self._task is not None:
                self._live.update(self._task, completed=self.done, left=_left(self.estimate))
        elif now - self.last_line >= self.every_s:
            self.last_line = now
            self._line(self.status_line(now))

    def status_line(self, now: float | None = None) -> str:
        """The plain line of a counted phase: done, share, time in the phase, time left."""
        now = self.clock() if now is None else now
        est = self.estimate
        share = 100 * self.done / self.total if self.total else 100.0
        elapsed = now - est.t0 if est is not None else now - self.t0
        tail = "done" if self.done >= (self.total or 0) else _left(est) if est is not None else ""
        return (f"{self.done:,}/{self.total:,} {self.label} ({share:.1f} %), "
                f"{duration(elapsed)} elapsed, {tail}").rstrip(", ")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._task = None

    # ---------------------------------------------------------------- output

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _show(self, text: str, total: int | None) -> None:
        """The terminal's one live row: a spinner, the phase, a bar where counted."""
        if self._live is None:
            self._live = _live_display(self.stream)
            self._live.start()
        if self._task is not None:
            self._live.remove_task(self._task)
        self._task = self._live.add_task(text, total=total, left="" if total is None else _left(self.estimate))


def _live_display(stream):
    """rich's live row: spinner, phase, (bar, count and time left where counted), time in it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, SpinnerColumn
    from rich.progress import Progress as Live
    from rich.progress import TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Counted(ProgressColumn):
        """A column shown only in a counted phase (a phase without a total has no bar)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def render(self, task):
            return self.inner.render(task) if task.total is not None else Text("")

    return Live(SpinnerColumn(), TextColumn("{task.description}"), Counted(BarColumn()),
                Counted(MofNCompleteColumn()), TextColumn("{task.fields[left]}"), TimeElapsedColumn(),
                console=Console(file=stream), transient=True)


class CompileInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a program compiled (Worker): the compile was abandoned,
    so the process should leave at once (the CLI exits 130 without the interpreter's
    teardown, which the abandoned thread could hold up)."""


def in_worker(work, *, name: str = "stresstest-worker", poll_s: float = 0.05):
    """work() in a daemon thread while this thread waits for it, taking signals at once
    (Worker.wait); work's exception, if any, is raised here, else its result returned."""
    return Worker(work, name=name).wait(poll_s)


class Worker:
    """work() started at once in a daemon thread; wait() waits for it in this thread.

    Python runs signal handlers in the main thread only, between bytecodes: while that
    thread is inside one long C++ call (XLA compiling a program: seconds), a
    Ctrl-C waits for the call to return. Here the C++ call runs in a worker, and the
    main thread may do other work until it waits, in steps of poll_s: a signal recorded
    by an active Interrupts, or raised by Python's own handler, stops the wait within
    poll_s, and KeyboardInterrupt is raised. The worker is abandoned (a daemon thread: it
    ends with the process)."""

    def __init__(self, work, *, name: str = "stresstest-worker"):
        self._result: list = []
        self._error: list[BaseException] = []

        def target():
            try:
                self._result.append(work())
            except BaseException as exc:  # raised in the waiting thread
                self._error.append(exc)

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def wait(self, poll_s: float = 0.05):
        """work()'s result, or its exception raised here; KeyboardInterrupt where a
        signal comes while waiting."""
        while self._thread.is_alive():
            self._thread.join(poll_s)
            check_interrupts()
        if self._error:
            raise self._error[0]
        return self._result[0]


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


def compile_ahead(fn, args, backend, status: "Progress", what: str = "the chunks", extra: tuple = ()) -> "Compiling":
    """JAX: start compiling fn for (*args, first start, *extra) before the first chunk, in
    a worker thread, saying so; the caller may prepare its file meanwhile, then takes
    the program with Compiling.program(). Other backends, and functions that are not
    jitted, have nothing to compile here (program() returns fn)."""
    if not backend.is_jax or not hasattr(fn, "lower"):
        return Compiling(fn)
    from .jax_adapter import compile_ahead as compile_now, compile_cache_on

    how = "first run of these shapes; cached afterwards" if compile_cache_on() else "compile cache off"
    status.phase(f"compiling {what} for {backend.name} on {backend.device} ({how})")
    worker = Worker(lambda: compile_now(fn, *args, backend.xp.asarray(0), *extra), name="stresstest-compile")
    return Compiling(fn, worker, status)


class Compiling:
    """A program compiling in a worker thread (compile_ahead), or fn itself where nothing
    compiles. program() waits for it, taking Ctrl-C and SIGTERM at once (Worker), which
    it raises as CompileInterrupted; a temporary file made meanwhile is the caller's to
    remove (its writer's context does)."""

    def __init__(self, fn, worker: Worker | None = None, status: "Progress | None" = None):
        self.fn, self.worker, self.status = fn, worker, status
        self.t0 = time.perf_counter()

    def program(self):
        """The function to call for the chunks: the compiled program (jax_adapter.compile_ahead:
        read back from the folder of kept programs where it is there), or fn; says how long
        the compile (or the read) took."""
        if self.worker is None:
            return self.fn
        try:
            program, kept = self.worker.wait()
        except KeyboardInterrupt as exc:
            raise CompileInterrupted() from exc
        took = time.perf_counter() - self.t0
        self.status.note(f"read the compiled program from the cache in {took:.1f} s" if kept
                         else f"compiled in {took:.1f} s")
        return program
