"""Engine: backends agree, chunk size does not matter, JAX compiles once, shocks clip."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_same, make_axis, random_portfolio, random_scenario, run_all_checked

from stresstest.backends import make_backend
from stresstest.engine import default_chunk_size, prepare
from stresstest.kernels.params import NAMED_SHOCKS

NAMED = {k: (t, op) for k, (t, op, _) in NAMED_SHOCKS.items()}


@pytest.mark.parametrize("seed", range(2))  # a compile each; test_model_vs_reference has more
def test_backends_agree_on_random_grids(seed, compiled_backend):
    rng = np.random.default_rng(500 + seed)
    pf = random_portfolio(rng, n_clusters=3)
    sc = random_scenario(rng, pf, n_axes=3)
    want = run_all_checked(pf, sc, make_backend("numpy"))
    got = run_all_checked(pf, sc, compiled_backend)
    # rates (irr, roi) near 0 need an absolute floor; money is relative to the largest value
    assert_same(got, want, rtol=1e-10)


@pytest.mark.parametrize("backend_name", ["numpy", "jax"])
def test_chunk_size_does_not_change_results(backend_name):
    rng = np.random.default_rng(42)
    pf = random_portfolio(rng, n_clusters=2, horizon=36)
    sc = random_scenario(rng, pf, n_axes=3)
    b = make_backend(backend_name)
    results = [run_all_checked(pf, sc, b, cs) for cs in (1, 7, sc.size)]
    for other in results[1:]:
        assert_same(other, results[0], rtol=1e-13)


@pytest.mark.parametrize("factor", [True, False])
def test_jax_cpu_chunks_in_pieces_equal_numpy(factor):
    """JAX on the CPU runs several pieces of the default chunk in one program (engine.
    cpu_pieces): the same numbers as numpy's chunks, the last chunk padded and trimmed."""
    pytest.importorskip("jax")
    from stresstest.engine import CPU_PIECES

    rng = np.random.default_rng(7)
    pf = random_portfolio(rng, n_clusters=4, horizon=120)  # default pieces of 256 points or fewer
    axes = [make_axis(shock, *NAMED[shock], np.linspace(lo, hi, n), shock=shock, names=pf.cluster_names)
            for shock, (lo, hi), n in (("utilization", (-0.3, 0.1), 9), ("price", (0.5, 1.3), 11),
                                       ("energy", (0.8, 2.5), 13))]
    from stresstest.grid_config import Scenario

    sc = Scenario("<t>", "grid", "t", axes)
    b = make_backend("jax")
    run = prepare(pf, sc, b, factor=factor)
    pieces = run.chunk_size // run.piece_size
    assert run.chunk_size == pieces * run.piece_size and 1 < pieces <= CPU_PIECES
    assert sc.size % run.chunk_size  # the last chunk is padded
    got = run_all_checked(pf, sc, b)
    want = run_all_checked(pf, sc, make_backend("numpy"))
    assert_same(got, want, rtol=1e-10)


@pytest.mark.parametrize("pause_every", [None, 1, 3])
def test_pipeline_computes_one_chunk_ahead_unless_paused(pause_every):
    """Each chunk is launched before the one before it is handed out, except after a
    chunk that `pause` asks for: then nothing is launched until the caller asks for more."""
    from stresstest.engine import pipelined

    launched, held = [], []

    def fn(x, at):
        launched.append(int(at))
        return {"v": x + at}

    def pause():
        return pause_every is not None and len(held) % pause_every == pause_every - 1

    x = np.arange(4.0)
    chunks = []
    for c in pipelined(fn, (x,), make_backend("numpy"), 0, 22, 4,
                       pause=None if pause_every is None else pause):
        held.append(len(launched))  # chunks launched while the caller holds this one
        chunks.append(c)
    assert [(c.start, c.stop) for c in chunks] == [(a, min(a + 4, 22)) for a in range(0, 22, 4)]
    for c in chunks:
        assert np.array_equal(c.outputs["v"], (x + c.start)[: c.stop - c.start])
    for i, n in enumerate(held):
        paused = pause_every is not None and i % pause_every == pause_every - 1
        assert n == min(i + (1 if paused else 2), len(chunks)), (i, held)


def test_jax_compiles_once_per_run():
    import jax

    rng = np.random.default_rng(3)
    pf = random_portfolio(rng, n_clusters=2, horizon=24)
    sc = random_scenario(rng, pf, n_axes=2)
    run = prepare(pf, sc, make_backend("jax"), chunk_size=max(1, sc.size // 3))
    list(run.chunks())
    n_compiled = run._fn._cache_size()
    list(run.chunks())  # every chunk, the padded last one included, reuses the compiled code
    assert run._fn._cache_size() == n_compiled == 1
    assert isinstance(run._fn, type(jax.jit(lambda x: x)))


@pytest.mark.parametrize("seed", range(6))
def test_cover_of_the_clusters_that_can_borrow_is_every_clusters_cover(seed):
    """The grid computes the debt service cover over the clusters that can carry debt
    somewhere on the grid (engine.equity_clusters; the others have none): the same
    outputs as over every cluster, for portfolios with and without debt and grids that
    move debt_fraction on some clusters."""
    from stresstest.engine import equity_clusters
    from stresstest.kernels.metrics import evaluate
    from stresstest.kernels.shocks import shocked_params

    rng = np.random.default_rng(100 + seed)
    pf = random_portfolio(rng, n_clusters=4, horizon=24)
    for c in pf.clusters:
        c["debt_fraction"] = float(rng.choice([0.0, 0.0, 0.5]))
        c["debt_term_months"] = pf.horizon_months  # a live month in the term wherever the grid delivers
    sc = random_scenario(rng, pf, n_axes=2)
    if seed % 2:
        mask = [True, False, True, False]
        sc.axes.append(make_axis("d", ["debt_fraction"], "set", np.array([0.0, 0.4]), param="debt_fraction",
                                 names=pf.cluster_names, clusters=[n for n, m in zip(pf.cluster_names, mask) if m]))
    eq = equity_clusters(pf, sc)
    base = {k: v.astype(np.float64) for k, v in pf.base_arrays().items()}
    values = tuple(np.asarray(a.values, dtype=np.float64) for a in sc.axes)
    with np.errstate(all="ignore"):
        p, r = shocked_params(base, np.asarray(pf.discount_rate), tuple(a.spec for a in sc.axes), values,
                              np.arange(sc.size, dtype=np.int64))
        narrow = evaluate(p, r, pf.horizon_months, equity_clusters=eq, debt_clusters=eq)
        every = evaluate(p, r, pf.horizon_months, equity_clusters=eq)
    debt = np.broadcast_to(p["debt_fraction"], (sc.size, 4))
    assert not np.any(debt[:, [c for c in range(4) if c not in eq]] > 0)
    for name in ("min_dscr", "cluster_min_dscr"):
        np.testing.assert_array_equal(narrow[name], every[name], err_msg=name)
    finite = np.isfinite(every["cluster_min_dscr"])
    assert not finite[:, [c for c in range(4) if c not in eq]].any()
    assert finite.any() or not eq, "no cover anywhere: the test would compare only NaNs"


def test_default_chunk_bounds_memory():
    rng = np.random.default_rng(0)
    pf = random_portfolio(rng, n_clusters=6, horizon=600)
    c = default_chunk_size(pf, 10**9)
    assert 1 <= c and c * 6 * 601 * 8 * 80 <= 256 * 2**20
    assert default_chunk_size(pf, 5) == 5


def _named_grid(pf, sizes):
    """The four named shocks, with sizes[k] values on the k-th."""
    from stresstest.grid_config import Scenario
    from stresstest.kernels.params import NAMED_SHOCKS

    spans = {"utilization": (-0.4, 0.1), "price": (0.3, 1.4), "energy": (0.5, 3.0), "obsolescence": (-18, 18)}
    axes = [make_axis(shock, targets, op, np.linspace(*spans[shock], k), shock=shock, names=pf.cluster_names)
            for (shock, (targets, op, _)), k in zip(NAMED_SHOCKS.items(), sizes)]
    return Scenario("<t>", "grid", "t", axes)


def _fake_gpu(name, memory):
    """A backend that says it is a GPU with `memory` (free, total bytes), computing with numpy."""
    from stresstest.backends import Backend

    np_backend = make_backend("numpy")
    return Backend(name, "cuda:0 (a test's stand-in)", np_backend.xp, np.float64, _memory=memory)


@pytest.mark.parametrize("name", ["jax", "cupy"])
def test_gpu_chunks_fill_a_share_of_the_device_memory(name):
    from stresstest.engine import GPU_BUDGET, GPU_FOOTPRINT, gpu_chunk_size, gpu_unit_per_point

    rng = np.random.default_rng(1)
    pf = random_portfolio(rng, n_clusters=6, horizon=60)
    per_point = GPU_FOOTPRINT[name] * gpu_unit_per_point(pf)
    for free, total in ((140e9, 141e9), (10e9, 80e9), (20e9, 24e9), (1e6, 24e9)):
        be = _fake_gpu(name, lambda f=free, t=total: (int(f), int(t)))
        c = gpu_chunk_size(pf, 10**12, be)
        budget = min(total / 8, free / 2)
        assert c & (c - 1) == 0  # a power of two
        assert c * per_point <= budget or c == 1
        assert 2 * c * per_point > budget or c == 2**20  # the largest one within it, or the cap
        assert gpu_chunk_size(pf, 1000, be) == min(c, 1000)
    # a device that does not say, or whose driver fails to: the fixed budget
    for memory in (lambda: None, lambda: 1 / 0):
        assert gpu_chunk_size(pf, 10**12, _fake_gpu(name, memory)) == default_chunk_size(pf, 10**12, GPU_BUDGET)


def test_gpu_sized_chunks_give_the_cpu_results():
    """A grid prepared for a (stand-in) GPU of 24 GB takes the memory's chunks, whole slabs
    of its factored axes, and gives the numpy backend's numbers chunk for chunk."""
    from stresstest.engine import gpu_chunk_size

    rng = np.random.default_rng(8)
    pf = random_portfolio(rng, n_clusters=3, horizon=24)
    sc = _named_grid(pf, (8, 6, 7, 8))  # slabs of 336 points: one utilization value each
    be = _fake_gpu("jax", lambda: (int(3e6), int(24e9)))
    run = prepare(pf, sc, be)
    want_chunk = gpu_chunk_size(pf, sc.size, be, sc)
    if run.factoring is not None:
        want_chunk = max(1, want_chunk // run.factoring.slab) * run.factoring.slab
    assert run.chunk_size == want_chunk < sc.size  # several chunks
    got = run_all_checked(pf, sc, be)
    assert_same(got, run_all_checked(pf, sc, make_backend("numpy"), chunk_size=7), rtol=1e-12)


def test_cupy_forms_fit_the_gpu_footprint(monkeypatch):
    """CuPy evaluates each operation as it comes; its live arrays per grid point, measured
    with tracemalloc on numpy running CuPy's forms of the same operations (the table of
    powers), stay within the GPU_FOOTPRINT the chunk size plans for, short and long
    horizons, factored or not."""
    import tracemalloc

    import stresstest.kernels.irr as irr
    from stresstest.engine import GPU_FOOTPRINT, gpu_unit_per_point

    be = make_backend("numpy")
    monkeypatch.setattr(irr, "_powers_form", lambda xp: True)
    for seed, n_clusters, horizon, factor in ((0, 1, 12, True), (5, 6, 240, False), (6, 1, 600, False)):
        rng = np.random.default_rng(seed)
        pf = random_portfolio(rng, n_clusters=n_clusters, horizon=horizon)
        sc = _named_grid(pf, (16, 8, 8, 10))
        unit = prepare(pf, sc, be, chunk_size=1, factor=factor).chunk_size  # a slab where factored
        peaks = []
        for chunk in (max(1, 200 // unit) * unit, max(3, 800 // unit) * unit):
            run = prepare(pf, sc, be, chunk_size=chunk, factor=factor)
            tracemalloc.start()
            at = tracemalloc.get_traced_memory()[0]
            run._fn(*run._args, be.xp.asarray(0))
            peaks.append((run.chunk_size, tracemalloc.get_traced_memory()[1] - at))
            tracemalloc.stop()
        (c0, p0), (c1, p1) = peaks
        assert c1 > c0, (sc.size, peaks)
        per_point = (p1 - p0) / (c1 - c0)
        assert 0 < per_point <= GPU_FOOTPRINT["cupy"] * gpu_unit_per_point(pf, sc), (seed, per_point)


@pytest.mark.parametrize("horizon,n_clusters,debt,factor", [(12, 6, 0.3, True), (12, 1, 0.5, False),
                                                           (12, 1, 0.5, True), (12, 6, 0.0, True)])
def test_cpu_chunks_keep_xla_scratch_under_the_mmap_ceiling(horizon, n_clusters, debt, factor):
    """XLA's scratch for a default CPU chunk, factored (a slab of up to two chunks) or
    not, stays below 32 MiB, above which every call maps it afresh and faults on each
    page (57 to 70 MB for these portfolios with the cap at 64 MiB). debt 0: a debt-free
    portfolio whose grid gives every cluster debt (an axis of debt_fraction instead of
    energy), so the equity IRRs are solved (47 MB when the estimate ignored the grid)."""
    jax = pytest.importorskip("jax")
    from stresstest.grid_config import Scenario
    from stresstest.engine import scratch_per_point
    from stresstest.kernels.params import NAMED_SHOCKS

    rng = np.random.default_rng(3)
    pf = random_portfolio(rng, n_clusters=n_clusters, horizon=horizon)
    for c in pf.clusters:
        c["debt_fraction"] = debt
    names = pf.cluster_names
    axes = []
    if debt == 0:
        axes.append(make_axis("debt_fraction", ("debt_fraction",), "set", np.linspace(0.0, 0.6, 160),
                          param="debt_fraction", names=names))
    for shock, values in (("energy", np.linspace(0.5, 3.0, 160)), ("obsolescence", np.arange(-30.0, 32.0))):
        if debt == 0 and shock == "energy":
            continue
        targets, op, _ = NAMED_SHOCKS[shock]
        axes.append(make_axis(shock, targets, op, values, shock=shock, names=names))
    sc = Scenario("<t>", "grid", "t", axes)
    run = prepare(pf, sc, make_backend("jax"), factor=factor)
    assert (run.factoring is not None) == factor
    temp = run._fn.lower(*run._args, jax.numpy.asarray(0)).compile().memory_analysis().temp_size_in_bytes
    assert temp < 32 * 2**20, (run.chunk_size, temp)
    # and the estimate behind the chunk size is within 25 % of XLA's figure
    assert abs(run.piece_size * scratch_per_point(pf, sc) / temp - 1) < 0.25, (run.piece_size, temp)


def test_named_shock_moves_both_utilizations_and_clips():
    from stresstest.grid_config import Axis
    from stresstest.kernels.shocks import AxisSpec, shocked_params
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(1)
    pf = random_portfolio(rng, n_clusters=2)
    base = pf.base_arrays()
    spec = AxisSpec("utilization", ("utilization_training", "utilization_inference"), "shift")
    values = (np.array([-2.0, 0.05, 2.0]),)
    p, _ = shocked_params(base, np.asarray(0.1), (spec,), values, np.arange(3))
    for name in spec.targets:
        assert np.all(p[name][0] == 0.0) and np.all(p[name][2] == 1.0)
        assert np.allclose(p[name][1], np.clip(base[name] + 0.05, 0, 1))
    del Axis, xp


def test_per_cluster_axis_leaves_other_clusters():
    from stresstest.kernels.shocks import AxisSpec, shocked_params

    rng = np.random.default_rng(2)
    pf = random_portfolio(rng, n_clusters=3)
    base = pf.base_arrays()
    spec = AxisSpec("p", ("on_demand_price",), "scale", (False, True, False))
    p, _ = shocked_params(base, np.asarray(0.1), (spec,), (np.array([0.5, 2.0]),), np.arange(2))
    assert np.array_equal(p["on_demand_price"][:, [0, 2]], np.tile(base["on_demand_price"][[0, 2]], (2, 1)))
    assert np.allclose(p["on_demand_price"][:, 1], base["on_demand_price"][1] * np.array([0.5, 2.0]))


def test_debt_term_rounds_half_up_after_shock():
    from stresstest.kernels.shocks import AxisSpec, shocked_params

    base = {"debt_term_months": np.array([10.0])}
    spec = AxisSpec("d", ("debt_term_months",), "shift")
    p, _ = shocked_params(base, np.asarray(0.1), (spec,), (np.array([0.5, 1.49, -20.0]),), np.arange(3))
    assert p["debt_term_months"][:, 0].tolist() == [11.0, 11.0, 1.0]
