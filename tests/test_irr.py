"""The vectorised IRR solver against numpy_financial 1.0 (root closest to 0) and closed forms."""

from __future__ import annotations

import math

import numpy as np
import numpy_financial as npf
import pytest

import stresstest.kernels.irr as irr
from stresstest.kernels.irr import annualise, solve_irr


@pytest.fixture(autouse=True, params=["horner", "powers"])
def polynomial_form(request, monkeypatch):
    """Every test twice: Horner's rule (numpy, JAX) and the table of powers (CuPy's form,
    which cannot run here without a GPU, forced on the same arrays)."""
    if request.param == "powers":
        monkeypatch.setattr(irr, "_powers_form", lambda xp: True)
    return request.param


def _npf(rows):
    return np.array([npf.irr(r) for r in rows])


def _agree(got, want, tol=1e-10):
    both_nan = np.isnan(got) & np.isnan(want)
    err = np.where(both_nan, 0.0, np.abs(got - want))
    bad = ~(err <= tol)
    assert not bad.any(), f"{bad.sum()} rows differ, e.g. got {got[bad][:3]} want {want[bad][:3]}"


def test_closed_form_one_period():
    # -100 then 110: monthly rate exactly 10 %
    got = solve_irr(np.array([[-100.0, 110.0]]))
    assert got[0] == pytest.approx(0.10, abs=1e-14)


def test_closed_form_annuity():
    # A loan of 1000 repaid by 24 level payments at 1 % a month has IRR 1 % a month
    j, n = 0.01, 24
    pay = 1000 * j / (1 - (1 + j) ** -n)
    flows = np.array([[-1000.0] + [pay] * n])
    assert solve_irr(flows)[0] == pytest.approx(j, abs=1e-12)
    assert annualise(solve_irr(flows))[0] == pytest.approx(1.01 ** 12 - 1, abs=1e-12)


def test_two_roots_closest_to_zero():
    # (1+i)^-1 roots at i = 0.1 and i = 0.2 as in -1, 2.3, -1.32 (x = 1/1.1 and 1/1.2)
    flows = np.array([[-1.0, 2.3, -1.32]])
    assert solve_irr(flows)[0] == pytest.approx(0.1, abs=1e-12)
    assert npf.irr(flows[0]) == pytest.approx(0.1, abs=1e-12)


def test_no_sign_change_and_nonfinite_are_nan():
    flows = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0], [-1.0, np.nan, 3.0],
                      [-1.0, np.inf, 3.0], [0.0, 0.0, 0.0]])
    assert np.isnan(solve_irr(flows)).all()


def test_exact_zero_rate():
    assert solve_irr(np.array([[-3.0, 1.0, 1.0, 1.0]]))[0] == 0.0


def test_platform_example_with_far_negative_root():
    flows = np.array([[-1678.87, 771.96, 1814.05, 3520.30, 3552.95, 3584.99, 4789.91, -1]])
    assert solve_irr(flows)[0] == pytest.approx(npf.irr(flows[0]), abs=1e-10)
    assert solve_irr(flows)[0] == pytest.approx(-0.999791, abs=1e-6)


@pytest.mark.parametrize("T", [12, 60, 120])
def test_conventional_flows(T):
    rng = np.random.default_rng(T)
    n = 400
    flows = np.concatenate([-rng.uniform(1e3, 1e5, (n, 1)),
                            rng.normal(0.03, 1, (n, T)) * rng.uniform(1e2, 1e4, (n, 1))], axis=1)
    _agree(solve_irr(flows), _npf(flows))


@pytest.mark.parametrize("T", [6, 24, 60])
def test_several_sign_changes(T):
    rng = np.random.default_rng(7 + T)
    flows = rng.normal(0, 1, (400, T + 1))
    n_changes = np.sum(np.diff(np.sign(flows), axis=1) != 0, axis=1)
    assert (n_changes >= 3).mean() > 0.5  # most rows really have several sign changes
    _agree(solve_irr(flows), _npf(flows))


def test_terminal_outflow_project_flows():
    """Capex, inflows, then a decommissioning outflow: two sign changes, two roots."""
    rng = np.random.default_rng(3)
    T = 60
    flows = np.concatenate([-rng.uniform(1, 2, (300, 1)), rng.uniform(0, 0.1, (300, T))], axis=1)
    flows[:, -1] -= rng.uniform(0, 4, 300)
    _agree(solve_irr(flows), _npf(flows))


def test_600_month_horizons():
    rng = np.random.default_rng(600)
    T = 600
    n = 12
    conv = np.concatenate([-rng.uniform(50, 100, (n, 1)), rng.uniform(0, 1, (n, T))], axis=1)
    mixed = conv.copy()
    mixed[:, 300] -= 150.0  # a mid-life refurbishment: three sign changes
    flows = np.concatenate([conv, mixed])
    _agree(solve_irr(flows), _npf(flows))


def test_batch_shape_and_jax_agrees(compiled_backend):
    rng = np.random.default_rng(11)
    flows = rng.normal(0, 1, (3, 5, 37))
    flows[..., 0] = -10.0
    want = solve_irr(flows)
    xp = compiled_backend.xp
    got = compiled_backend.to_numpy(compiled_backend.compile(solve_irr)(xp.asarray(flows)))
    assert got.shape == (3, 5)
    _agree(got, want, tol=1e-12)
    assert math.isfinite(float(np.nanmax(np.abs(want))))


def _two_roots(i1, i2, T=2):
    """Flows whose only roots are the monthly rates i1 and i2 (times v^(T-2) padding)."""
    v1, v2 = 1 / (1 + i1), 1 / (1 + i2)
    row = np.zeros(T + 1)
    row[:3] = [v1 * v2, -(v1 + v2), 1.0]
    return row


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_roots_in_overlapping_cells_on_both_sides(name):
    """A positive and a negative root whose ladder cells overlap in |i| (the same cell,
    [1 %, 1.25 %] a month): both sides are refined, the one closer to 0 wins; other rows
    of the batch are left as a one-sided refinement gives them."""
    from stresstest.backends import make_backend

    be = make_backend(name)
    rows = np.array([_two_roots(0.011, -0.0105), _two_roots(0.0105, -0.011), _two_roots(0.0112, -0.0118),
                     [-100.0, 60.0, 60.0], _two_roots(0.02, -0.3)])
    got = be.to_numpy(be.compile(solve_irr)(be.xp.asarray(rows)))
    np.testing.assert_allclose(got, [-0.0105, 0.0105, 0.0112, npf.irr(rows[3]), 0.02], rtol=0, atol=1e-13)
    _agree(got, _npf(rows), tol=1e-12)
    # without any overlapping row the second pass is skipped, with the same answers
    alone = be.to_numpy(be.compile(solve_irr)(be.xp.asarray(rows[3:])))
    np.testing.assert_array_equal(alone, got[3:])


@pytest.mark.parametrize("reverse", [False, True, "rows"])
def test_powers_form_equals_horner(reverse):
    """The table of powers gives Horner's sums to round-off, the slope too, at the ends
    of [0, 1] and inside, each row read forwards or in reverse."""
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(5)
    n, T = 64, 60
    coef = rng.normal(size=(n, T + 1)) * rng.uniform(1, 1e4, (n, 1))
    x = np.concatenate([[0.0, 1.0, 1e-3], rng.uniform(0, 1, n - 3)])
    rev = rng.random(n) < 0.5 if reverse == "rows" else reverse
    p_h, dp_h = irr._poly_and_slope(xp, coef, x, rev)
    p_p, dp_p = irr._poly_and_slope_powers(xp, coef, x, rev)
    # by hand: sum_t c_t x^e_t and sum_t c_t e_t x^(e_t - 1), e_t = t or T - t
    e = np.where(np.asarray(rev)[..., None] if reverse == "rows" else rev, T - np.arange(T + 1), np.arange(T + 1))
    e = np.broadcast_to(e, coef.shape)
    want_p = np.sum(coef * x[:, None] ** e, axis=1)
    want_dp = np.sum(coef * e * np.where(e > 0, x[:, None] ** np.maximum(e - 1, 0), 0.0), axis=1)
    scale = np.sum(np.abs(coef), axis=1) * (T + 1)
    for got in (p_h, p_p):
        assert np.max(np.abs(got - want_p) / scale) < 1e-14
    for got in (dp_h, dp_p):
        assert np.max(np.abs(got - want_dp) / (scale * T)) < 1e-14
    assert p_p[0] == coef[0, T if reverse is True or (reverse == "rows" and rev[0]) else 0]
