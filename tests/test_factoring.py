"""Factored grids (axes in which the flows are affine, interpolated between end points).

The claim behind them, that every flow is affine in each parameter of AFFINE_PARAMS, is
checked on the plain loop reference (not the kernels); the factored engine is checked
against the reference at every grid point and against the plain engine on every
backend; and its results do not depend on the chunk size or the range a shard starts at.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference_model as ref
from helpers import make_axis, random_cluster, random_portfolio
from helpers import compare_with_reference

from stresstest.backends import make_backend
from stresstest.engine import prepare
from stresstest.factoring import plan
from stresstest.grid_config import Scenario
from stresstest.kernels.factored import interpolate
from stresstest.kernels.params import AFFINE_PARAMS, NAMED_SHOCKS, PARAMS

FLOW_KEYS = ("cf", "cfe", "revenue", "energy_cost", "opex", "ebitda", "tax", "interest")
SCALARS = ("capex", "debt", "A")


def _affine_defect(cluster, name, lo, hi, horizon=60):
    """Largest |f(mid) - (f(lo) + f(hi)) / 2| over the reference's flows, relative to their scale."""
    vals = [ref.cluster_monthly({**cluster, name: v}, horizon) for v in (lo, 0.5 * (lo + hi), hi)]
    worst = 0.0
    for key in FLOW_KEYS + SCALARS:
        a, m, b = (np.atleast_1d(np.asarray(v[key], dtype=float)) for v in vals)
        scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1.0)
        worst = max(worst, float(np.max(np.abs(m - 0.5 * (a + b)))) / scale)
    return worst


def _span(name, rng):
    spec = PARAMS[name]
    lo = spec.lo if math.isfinite(spec.lo) else -10.0
    hi = spec.hi if math.isfinite(spec.hi) else lo + 10.0
    a, b = sorted(rng.uniform(lo, hi, 2))
    return a, b


@pytest.mark.parametrize("seed", range(3))
def test_affine_params_are_affine_in_the_reference(seed):
    rng = np.random.default_rng(seed)
    cluster = random_cluster(rng)
    for name in sorted(AFFINE_PARAMS):
        lo, hi = _span(name, rng)
        assert _affine_defect(cluster, name, lo, hi) < 1e-9, name


def test_the_affinity_check_can_fail():
    # parameters that enter through powers, floors or clips are not affine
    rng = np.random.default_rng(7)
    cluster = {**random_cluster(rng), "delivery_months": 2.0, "renewal_rate": 0.5, "reserved_share": 0.5,
               "reserved_term_months": 6.0, "debt_fraction": 0.5}
    for name, lo, hi in (("delivery_months", 0.5, 7.3), ("price_decline", -0.3, 0.6),
                         ("renewal_rate", 0.1, 0.9), ("interest_rate", 0.0, 0.3)):
        assert _affine_defect(cluster, name, lo, hi) > 1e-6, name


def _named(name, values, names, clusters=None):
    targets, op, _ = NAMED_SHOCKS[name]
    return make_axis(name, targets, op, values, clusters=clusters, shock=name, names=names)


def _param(name, op, values, names, clusters=None, label=None):
    return make_axis(label or name, [name], op, values, clusters=clusters, param=name, names=names)


def _portfolio(seed, n=3, horizon=48):
    pf = random_portfolio(np.random.default_rng(seed), n_clusters=n, horizon=horizon)
    for c in pf.clusters:  # every cluster carries debt: equity IRR and DSCR are exercised
        c["debt_fraction"] = max(c["debt_fraction"], 0.3)
    return pf


def test_plan_picks_unclipped_affine_axes():
    pf = _portfolio(1)
    names = pf.cluster_names
    sc = Scenario("<t>", "grid", "t", [
        _named("utilization", np.linspace(-0.2, 0.1, 4), names),
        _named("price", np.linspace(0.3, 1.4, 6), names),
        _named("energy", np.linspace(0.5, 3.0, 5), names),
        _named("obsolescence", [-6.0, 0.0, 6.0], names)])
    f = plan(pf, sc, 10**6)
    assert f is not None and f.k == 0 and f.affine == (1, 2)  # price and energy, not utilization
    assert f.corners == 4 * 3 * 4 and f.slab == sc.size
    # the slab keeps within the limit: then only the inner axes can be interpolated
    f = plan(pf, sc, 5 * 3)
    assert f is not None and f.k == 2 and f.affine == (0,)
    # an axis that clips somewhere (a scale below 1 of pue) is evaluated in full
    clipped = Scenario("<t>", "grid", "t", [_param("pue", "scale", [0.5, 1.0, 1.5, 2.0], names)])
    assert plan(pf, clipped, 10**6) is None
    # two axes moving the same parameter are evaluated in full
    twice = Scenario("<t>", "grid", "t", [_named("price", [0.5, 1.0, 1.5, 2.0], names),
                                         _param("on_demand_price", "shift", [0.0, 0.1, 0.2, 0.3], names)])
    assert plan(pf, twice, 10**6) is None
    # too few values to save anything
    assert plan(pf, Scenario("<t>", "grid", "t", [_named("price", [0.5, 1.5], names)]), 10**6) is None


def _blocked_grid(pf, n_energy=8):
    names = pf.cluster_names
    return Scenario("<t>", "grid", "t", [
        _named("utilization", [-0.1, 0.0, 0.05], names),
        _named("energy", np.linspace(0.5, 3.0, n_energy), names),
        _named("obsolescence", [-6.0, 0.0, 3.0, 6.0, 12.0], names)])


def test_plan_cuts_an_affine_axis_outside_the_slab_into_blocks():
    pf = _portfolio(2)
    sc = _blocked_grid(pf)
    # a slab of 20 points holds only obsolescence (5), which is not affine: energy (8), the
    # next axis out, goes in blocks of 4 values (the longest divisor of 8 that fits)
    f = plan(pf, sc, 20)
    assert f is not None and (f.k, f.shape, f.affine, f.blocks) == (1, (4, 5), (0,), 2)
    assert f.slab == 20 and f.corners == 10 and len(f.weights[0][0]) == 8
    assert "energy in blocks of 4" in f.describe(sc)
    assert plan(pf, sc, 40).blocks == 1  # the whole axis fits: no blocks
    # 7 values: no divisor but 1 fits beside 5 points in 20, and a block of 1 saves nothing
    assert plan(pf, _blocked_grid(pf, 7), 20) is None
    # the axis outside the slab is not affine either
    names = pf.cluster_names
    sc = Scenario("<t>", "grid", "t", [_named("obsolescence", [-6.0, 0.0, 6.0, 9.0], names),
                                      _param("delivery_months", "set", [0.0, 1.0, 2.0, 3.0, 4.0], names)])
    assert plan(pf, sc, 5) is None


def _grids(pf):
    names = pf.cluster_names
    yield Scenario("<t>", "grid", "t", [
        _named("utilization", [-0.1, 0.0, 0.05], names),
        _named("price", np.linspace(0.3, 1.4, 5), names),
        _named("energy", [0.5, 1.0, 2.0, 3.0], names),
        _named("obsolescence", [-6.0, 6.0], names)])
    yield Scenario("<t>", "grid", "t", [
        _param("delivery_months", "set", [0.0, 4.5], names),
        _param("gpus", "scale", [0.0, 0.5, 1.0, 2.0], names, clusters=[names[0]]),
        _param("debt_fraction", "set", [0.0, 0.2, 0.5, 0.8], names),  # 0: no debt, NaN equity IRR
        _param("tax_rate", "set", [0.0, 0.1, 0.35], names, clusters=names[1:])])
    yield Scenario("<t>", "grid", "t", [
        _param("discount_rate", "set", [0.05, 0.15], names),
        _param("reserved_share", "set", [0.0, 0.3, 0.6, 1.0], names),
        _param("staff_cost_per_year", "shift", [0.0, 1e6, 5e6], names),
        _param("priority_premium", "set", [0.0, 0.3, 0.6, 0.9], names)])


@pytest.mark.parametrize("seed", range(3))
def test_factored_grid_matches_the_reference_everywhere(seed):
    pf = _portfolio(100 + seed)
    for sc in _grids(pf):
        run = prepare(pf, sc, make_backend("numpy"), slab_limit=10**6)
        assert run.factoring is not None, sc.axes
        chunks = list(run.chunks())
        outputs = {k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs}
        assert compare_with_reference(pf, sc, outputs, range(sc.size)) == sc.size


def _all(run, first=0, last=None):
    chunks = list(run.chunks(first, last))
    return {k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs}, chunks


def test_factored_equals_plain_on_every_backend(backend):
    from helpers import assert_same

    pf = _portfolio(200)
    # numpy: every grid; a compiled backend the first two (two compiles a grid; the
    # third's parameters are numpy's and the reference's in the test above)
    grids = list(_grids(pf))
    for sc in grids if backend.name == "numpy" else grids[:2]:
        fac, _ = _all(prepare(pf, sc, backend, slab_limit=10**6))
        plain, _ = _all(prepare(pf, sc, backend, factor=False))
        assert_same(fac, plain, rtol=1e-10)


@pytest.mark.parametrize("backend_name", ["numpy", "jax"])
def test_factored_results_do_not_depend_on_chunks_or_ranges(backend_name):
    pf = _portfolio(300)
    sc = next(_grids(pf))
    be = make_backend(backend_name)
    sizes = (1, 40, 97, sc.size) if backend_name == "numpy" else (1, 97)  # a JAX compile each
    runs = [prepare(pf, sc, be, chunk_size=cs, slab_limit=40) for cs in sizes]
    slab = runs[0].factoring.slab
    assert slab == 40 and [r.chunk_size for r in runs] == [{1: 40, 40: 40, 97: 80}.get(s, s) for s in sizes]
    whole, _ = _all(runs[0])
    for r in runs[1:]:
        got, chunks = _all(r)
        assert [c.start for c in chunks] == list(range(0, sc.size, r.chunk_size))
        if backend_name == "numpy":
            for k in whole:
                np.testing.assert_array_equal(got[k], whole[k], err_msg=k)
        else:  # another chunk shape is another compiled program: round-off may differ
            from helpers import assert_same

            assert_same(got, whole, rtol=1e-13)
    # a range that starts inside a slab (a shard) gives the same rows
    for first, last in ((7, 93), (41, 42), (0, 1), (sc.size - 3, sc.size)):
        got, chunks = _all(runs[-1 if backend_name == "jax" else 2], first, last)
        assert chunks[0].start == first and chunks[-1].stop == last
        for k in whole:
            np.testing.assert_array_equal(got[k], whole[k][first:last], err_msg=k)


def test_blocked_axis_matches_the_reference_and_plain_in_any_chunks(backend):
    """An axis interpolated in blocks (Factoring.blocks): every point as the plain
    evaluation and (numpy) the reference, whatever the chunk size or the range's start."""
    from helpers import assert_same

    pf = _portfolio(310)
    sc = _blocked_grid(pf)
    plain, _ = _all(prepare(pf, sc, backend, factor=False))
    sizes = (20, 60) if backend.name == "numpy" else (40,)
    for cs in sizes:
        run = prepare(pf, sc, backend, chunk_size=cs, slab_limit=20)
        assert run.factoring.blocks == 2 and run.chunk_size == cs
        got, _ = _all(run)
        assert_same(got, plain, rtol=1e-10)
        for first, last in ((13, 97), (41, 42), (sc.size - 7, sc.size)):
            part, chunks = _all(run, first, last)
            assert chunks[0].start == first and chunks[-1].stop == last
            for k in got:
                np.testing.assert_array_equal(part[k], got[k][first:last], err_msg=k)
    if backend.name == "numpy":
        assert compare_with_reference(pf, sc, got, range(sc.size)) == sc.size


def test_interpolation_returns_end_values_exactly():
    import array_api_compat.numpy as xp

    lo = np.array([[1.0, np.inf], [3.0, 0.1]])
    hi = np.array([[2.0, 5.0], [np.nan, 0.3]])
    corners = np.stack([lo, hi])  # [2, 2, 2]: lead 1, one axis of 2 end values
    w1 = np.array([0.0, 0.25, 1.0])
    with np.errstate(invalid="ignore"):  # inf * 0 in the mixed value that is not taken
        out = interpolate(xp.asarray(corners), 1, (3,), ((0, 1.0 - w1, w1),))
    np.testing.assert_array_equal(out[0], lo)
    np.testing.assert_array_equal(out[2], hi)
    assert out[1, 0, 0] == 0.75 * 1.0 + 0.25 * 2.0


def test_factored_sensitivities_equal_the_plain_ones_and_finite_differences():
    """NPV and ROI gradients interpolated from the corners, the IRR's pulled back per point:
    the same as the point-by-point reverse pass, and as central differences of the reference."""
    from helpers import assert_same
    from helpers import reference_at

    from stresstest.kernels.params import PARAM_NAMES

    be = make_backend("jax")
    pf = _portfolio(400, n=2, horizon=36)
    grids = list(_grids(pf))
    results = []
    # the named shocks, and an axis cut into blocks (each grid: a factored and a plain compile of
    # the reverse pass; parameter axes' factored gradients: test_v2_addressing)
    for sc, limit in ((grids[0], 10**6), (_blocked_grid(pf), 20)):
        run = prepare(pf, sc, be, sensitivities=True, slab_limit=limit)
        assert run.factoring is not None and run.factoring.blocks == (2 if limit == 20 else 1)
        results.append(_all(run)[0])
        plain, _ = _all(prepare(pf, sc, be, sensitivities=True, factor=False))
        assert_same(results[-1], plain, rtol=1e-10)
    sc, fac = grids[0], results[0]
    flat = int(np.ravel_multi_index((1, 2, 1, 0), sc.shape))  # inside the price and energy ranges
    for c, name in ((0, "energy_price"), (1, "on_demand_price"), (0, "gpus"), (1, "delivery_months")):
        _, clusters, rate = reference_at(pf, sc, flat)
        h = 1e-6 * max(abs(clusters[c][name]), 1.0)
        f = []
        for dv in (-h, h):
            moved = [dict(x) for x in clusters]
            moved[c][name] += dv
            f.append(ref.evaluate(moved, pf.horizon_months, rate)["portfolio"])
        p = PARAM_NAMES.index(name)
        for out, scale in (("npv", 1e-6 * abs(f[0]["npv"]) / h + 1e-3), ("roi", 1e-7 / h)):
            fd = (f[1][out] - f[0][out]) / (2 * h)
            assert abs(fac["grad_" + out][flat, c, p] - fd) <= scale + 1e-5 * abs(fd), (out, name)


def test_run_names_the_interpolated_axes_and_writes_the_plain_numbers(tmp_path):
    import xarray as xr
    from click.testing import CliRunner

    from stresstest.cli import main
    from stresstest.config import load_portfolio
    from stresstest.loaders import load_scenario
    from stresstest.presets import list_presets

    grid = tmp_path / "g.yaml"
    grid.write_text("scenario:\n  kind: grid\n  axes:\n"
                    "    - {shock: obsolescence, values: [-6, 0]}\n"
                    "    - {shock: price, linspace: [0.4, 1.2, 5]}\n"
                    "    - {shock: energy, values: [0.5, 1.0, 2.0]}\n")
    out = tmp_path / "g.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(grid), "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    assert "price, energy interpolated between end points" in r.output
    pf = load_portfolio(list_presets()["example"])
    plain, _ = _all(prepare(pf, load_scenario(grid, pf), make_backend("numpy"), factor=False))
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        for name in ("npv", "irr", "cluster_equity_irr", "min_dscr", "payback_months"):
            got = ds[name].values.reshape(plain[name].shape)
            np.testing.assert_allclose(got, plain[name], rtol=1e-10, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("seed", range(12))
def test_random_interpolable_grids_equal_plain_evaluation(seed):
    """Random portfolios, one to three random interpolable axes (any affine parameter, op
    and cluster subset, values kept in range) beside a random other axis."""
    from helpers import assert_same

    rng = np.random.default_rng(900 + seed)
    pf = random_portfolio(rng, n_clusters=int(rng.integers(1, 4)), horizon=int(rng.choice([12, 37, 60])))
    names = pf.cluster_names
    axes = [_param("delivery_months", "shift", [0.0, 2.5], names)] if rng.random() < 0.5 else []
    for j, name in enumerate(rng.choice(sorted(AFFINE_PARAMS), int(rng.integers(1, 4)), replace=False)):
        spec = PARAMS[name]
        base = np.array([c[name] for c in pf.clusters])
        n = int(rng.integers(4, 7))
        lo = spec.lo if math.isfinite(spec.lo) else 0.0
        hi = spec.hi if math.isfinite(spec.hi) else lo + 3 * max(base.max(), 1.0)
        room = (lo - base.min(), hi - base.max())  # shifts that keep every cluster in range
        op = str(rng.choice(["scale", "shift", "set"]))
        if op == "shift" and room[1] <= room[0]:
            op = "set"
        if op == "set":
            values = rng.uniform(lo, hi, n)
        elif op == "scale":  # keep base * v in [lo, hi]
            top = min(2.0, hi / base.max()) if base.max() > 0 else 2.0
            bottom = lo / base.min() if lo > 0 else 0.0
            values = rng.uniform(bottom, max(bottom, top), n)
        else:
            values = rng.uniform(*room, n)
        clusters = [names[0]] if len(names) > 1 and rng.random() < 0.3 else None
        axes.append(_param(str(name), op, values, names, clusters=clusters, label=f"a{j}"))
    rng.shuffle(axes)
    sc = Scenario("<t>", "grid", "t", axes)
    be = make_backend("numpy")
    run = prepare(pf, sc, be, slab_limit=10**6)
    assert run.factoring is not None  # every generated axis but delivery_months is interpolable
    fac, _ = _all(run)
    plain, _ = _all(prepare(pf, sc, be, factor=False))
    assert_same(fac, plain, rtol=1e-10)
