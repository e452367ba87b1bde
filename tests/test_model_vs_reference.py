"""Every output of the kernels against the plain loop reference (tests/reference_model.py).

At least 200 random portfolio/grid-point pairs: random portfolios (every parameter
drawn), random grids (named shocks and parameter axes with every op, some per
cluster), each grid point's shocks applied by the reference one by one.
"""

from __future__ import annotations

import math

import numpy as np
import numpy_financial as npf
import pytest
import reference_model as ref
from conftest import random_portfolio, random_scenario

from stresstest.engine import grid_point, prepare
from stresstest.kernels.params import OUTPUTS

MONEY = {"npv", "revenue", "energy_cost", "opex", "ebitda"}


def reference_at(pf, sc, flat):
    """Reference outputs at one grid point: shocks applied by the reference, in axis order."""
    clusters = [dict(c) for c in pf.clusters]
    rate = pf.discount_rate
    for axis, value in zip(sc.axes, grid_point(sc, flat).values()):
        for target in axis.spec.targets:
            if target == "discount_rate":
                rate = {"scale": rate * value, "shift": rate + value, "set": value}[axis.spec.op]
                rate = max(rate, -1 + 1e-9)
                continue
            for i, name in enumerate(pf.cluster_names):
                if axis.clusters is None or name in axis.clusters:
                    clusters[i] = ref.apply_shock(clusters[i], target, axis.spec.op, value)
    return ref.evaluate(clusters, pf.horizon_months, rate), clusters, rate


def assert_close(name, got, want, scale, tol=1e-9, where=""):
    if isinstance(want, float) and (math.isnan(want) or math.isinf(want)):
        assert (math.isnan(got) and math.isnan(want)) or got == want, f"{where} {name}: {got} vs {want}"
        return
    if name in MONEY:
        atol = tol * scale
    elif name == "payback_months":
        atol = 1e-7
    else:
        atol = tol
    assert abs(got - want) <= atol + tol * abs(want), f"{where} {name}: {got!r} vs {want!r}"


def _compare(pf, sc, outputs, flats):
    n_checked = 0
    for flat in flats:
        want, clusters, rate = reference_at(pf, sc, flat)
        scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in clusters) + 1.0
        where = f"seed-case flat={flat} point={grid_point(sc, flat)}"
        for name in OUTPUTS:
            assert_close(name, float(outputs[name][flat]), want["portfolio"][name], scale, where=where)
            for c in range(len(pf.clusters)):
                assert_close(f"cluster_{name}[{c}]", float(outputs["cluster_" + name][flat, c]),
                             want["clusters"][c][name], scale, where=where)
        n_checked += 1
    return n_checked


def _run_all(pf, sc, backend, chunk_size=None):
    run = prepare(pf, sc, backend, chunk_size)
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


@pytest.mark.parametrize("seed", range(60))
def test_random_portfolios_match_reference_numpy(seed):
    from stresstest.backends import make_backend

    _check_seed(seed, make_backend("numpy"))


@pytest.mark.parametrize("seed", range(8))
def test_random_portfolios_match_reference_compiled(seed, compiled_backend):
    """JAX (and CuPy on a GPU) on a subset: each new shape costs a compile."""
    _check_seed(seed, compiled_backend)


def _check_seed(seed, backend):
    rng = np.random.default_rng(1000 + seed)
    pf = random_portfolio(rng)
    sc = random_scenario(rng, pf)
    outputs = _run_all(pf, sc, backend, chunk_size=int(rng.integers(1, 8)))
    flats = rng.choice(sc.size, size=min(sc.size, 6), replace=False)
    # 60 seeds x up to 6 points (numpy: 233 pairs), plus 8 seeds per compiled backend
    assert _compare(pf, sc, outputs, flats) == len(flats)


def test_example_preset_base_case_matches_reference():
    from stresstest.config import load_portfolio
    from stresstest.engine import evaluate_base
    from stresstest.presets import list_presets

    pf = load_portfolio(list_presets()["example"])
    got = evaluate_base(pf)
    want = ref.evaluate(pf.clusters, pf.horizon_months, pf.discount_rate)
    scale = sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)
    for name in OUTPUTS:
        assert_close(name, float(got[name]), want["portfolio"][name], scale)


@pytest.mark.parametrize("seed", range(10))
def test_npv_and_irr_agree_with_numpy_financial(seed):
    """Portfolio flows from the reference; NPV and IRR from the kernels vs numpy_financial."""
    from stresstest.backends import make_backend

    rng = np.random.default_rng(seed)
    pf = random_portfolio(rng, horizon=int(rng.choice([24, 60, 120])))
    sc = random_scenario(rng, pf, n_axes=1)
    outputs = _run_all(pf, sc, make_backend("numpy"))
    for flat in range(sc.size):
        want, _, rate = reference_at(pf, sc, flat)
        cf = np.sum(np.array(want["flows"]["cf"]), axis=0)
        monthly = (1 + rate) ** (1 / 12) - 1
        # numpy_financial's npv discounts the first value by (1+r)^0
        assert outputs["npv"][flat] == pytest.approx(npf.npv(monthly, cf), rel=1e-9, abs=1e-6)
        irr = npf.irr(cf)
        if math.isnan(irr):
            assert math.isnan(outputs["irr"][flat])
        else:
            assert outputs["irr"][flat] == pytest.approx((1 + irr) ** 12 - 1, rel=1e-9, abs=1e-10)
