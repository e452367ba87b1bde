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
from helpers import assert_close, compare_with_reference, random_portfolio, random_scenario, reference_at, run_all

from stresstest.kernels.params import OUTPUTS

@pytest.mark.parametrize("seed", range(60))
def test_random_portfolios_match_reference_numpy(seed):
    from stresstest.backends import make_backend

    _check_seed(seed, make_backend("numpy"))


@pytest.mark.parametrize("seed", range(4))
def test_random_portfolios_match_reference_compiled(seed, compiled_backend):
    """JAX (and CuPy on a GPU) on a subset: each new shape costs a compile."""
    _check_seed(seed, compiled_backend)


def _check_seed(seed, backend):
    rng = np.random.default_rng(1000 + seed)
    pf = random_portfolio(rng)
    sc = random_scenario(rng, pf)
    outputs = run_all(pf, sc, backend, chunk_size=int(rng.integers(1, 8)))
    flats = rng.choice(sc.size, size=min(sc.size, 6), replace=False)
    # 60 seeds x up to 6 points (numpy: 233 pairs), plus 4 seeds per compiled backend
    assert compare_with_reference(pf, sc, outputs, flats) == len(flats)


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
    outputs = run_all(pf, sc, make_backend("numpy"))
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
