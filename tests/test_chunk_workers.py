"""Chunks computed by several threads at once (engine.pipelined with workers, issue 29):
handed out in order with the numbers one thread gives, at most `workers` computing
beyond the one the caller holds, really at once, none launched while a pause lets the
caller work alone, and a failure raised to the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stresstest.backends import make_backend
from stresstest.engine import chunk_workers, pipelined


def _counting(x):
    """fn for pipelined, recording the starts it was called with (in the workers)."""
    started: list[int] = []
    lock = threading.Lock()

    def fn(x, at):
        with lock:
            started.append(int(at))
        return {"v": x + at, "w": np.full(4, float(at))}

    return fn, started


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("first, aligned", [(0, False), (5, False), (5, True)])
def test_chunks_in_order_with_one_threads_numbers(workers, first, aligned):
    x = np.arange(4.0)
    fn1, _ = _counting(x)
    fnw, _ = _counting(x)
    b = make_backend("numpy")
    one = list(pipelined(fn1, (x,), b, first, 30, 4, aligned=aligned))
    many = list(pipelined(fnw, (x,), b, first, 30, 4, aligned=aligned, workers=workers))
    assert [(c.start, c.stop) for c in many] == [(c.start, c.stop) for c in one]
    assert one[0].start == first and one[-1].stop == 30
    for a, c in zip(one, many):
        for k in a.outputs:
            assert np.array_equal(a.outputs[k], c.outputs[k])


@pytest.mark.parametrize("pause_every", [None, 3])
def test_at_most_workers_ahead_and_none_while_paused(pause_every):
    """While the caller holds chunk i, no chunk past i + workers has started; after a
    pause, none past the chunks already computing until the caller has them all."""
    workers, x = 2, np.arange(4.0)
    fn, started = _counting(x)
    handed: list[int] = []

    def pause():
        return pause_every is not None and len(handed) % pause_every == pause_every - 1

    draining_to = None  # after a pause: the chunks computing then, handed out with nothing new
    for c in pipelined(fn, (x,), make_backend("numpy"), 0, 40, 4, pause=pause if pause_every else None,
                       workers=workers):
        i = c.start // 4
        handed.append(i)
        if draining_to is not None and i > draining_to:
            draining_to = None
        allowed = draining_to if draining_to is not None else i + workers
        assert max(started) // 4 <= allowed, (i, sorted(started))
        if draining_to is None and pause():  # what pipelined asks before launching the next
            draining_to = i + workers
    assert handed == list(range(10))


def test_up_to_ahead_chunks_computed_beyond_the_one_held():
    """ahead > workers: the threads go on computing while the caller holds a chunk, up to
    `ahead` beyond it (the Monte Carlo summaries absorb a block of paths at once)."""
    x = np.arange(4.0)
    fn, started = _counting(x)
    done = threading.Event()

    def fn_all(x, at):
        out = fn(x, at)
        if len(started) == 7:  # the chunk held (0) and six ahead
            done.set()
        return out

    gen = pipelined(fn_all, (x,), make_backend("numpy"), 0, 40, 4, workers=2, ahead=6)
    first = next(gen)
    assert first.start == 0
    assert done.wait(20)  # computed while the caller holds chunk 0
    assert max(started) // 4 == 6
    assert [c.start for c in gen] == list(range(4, 40, 4))


def test_two_chunks_compute_at_once():
    """Two workers run fn at the same time (each waits for the other at a barrier)."""
    barrier = threading.Barrier(2, timeout=20)

    def fn(x, at):
        barrier.wait()  # passes only when two calls are in it together
        return {"v": x + at}

    x = np.arange(2.0)
    chunks = list(pipelined(fn, (x,), make_backend("numpy"), 0, 8, 2, workers=2))
    assert [c.start for c in chunks] == [0, 2, 4, 6]


def test_a_failing_chunk_is_raised_to_the_caller():
    def fn(x, at):
        if int(at) == 8:
            raise ValueError("chunk 8 failed")
        return {"v": x + at}

    with pytest.raises(ValueError, match="chunk 8 failed"):
        list(pipelined(fn, (np.zeros(2),), make_backend("numpy"), 0, 20, 4, workers=2))


def test_workers_only_for_jax_on_the_cpu():
    assert chunk_workers(make_backend("numpy")) == 1
    pytest.importorskip("jax")
    jax_b = make_backend("jax")
    assert chunk_workers(jax_b) == (1 if jax_b.is_gpu else min(2, __import__("os").cpu_count() or 1))


def test_a_sensitivity_run_computes_twice_the_chunks_at_once():
    """A grid run takes chunk_workers' threads, a sensitivity run twice as many where
    there are several (JAX on the CPU), one where there is one."""
    from stresstest.config import load_portfolio
    from stresstest.engine import prepare, sensitivity_workers
    from stresstest.loaders import load_scenario
    from stresstest.presets import list_presets

    assert sensitivity_workers(make_backend("numpy")) == 1
    pytest.importorskip("jax")
    jax_b = make_backend("jax")
    n = chunk_workers(jax_b)
    assert sensitivity_workers(jax_b) == (2 * n if n > 1 else 1)
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["smoke"], pf)
    assert prepare(pf, sc, jax_b).workers == n
    assert prepare(pf, sc, make_backend("numpy")).workers == 1
    assert prepare(pf, sc, jax_b, sensitivities=True).workers == sensitivity_workers(jax_b)
