"""The IRR solver on flows built to have a close pair of roots or a double root as the
root closest to 0 (helpers.adversarial_irr_flows): found, never a rate that is not a
root, against numpy_financial 1.0's eigenvalues where they converge."""

from __future__ import annotations

import numpy as np
import numpy_financial as npf
import pytest
from helpers import adversarial_irr_flows, polynomial_residual

import stresstest.kernels.irr as irr
from stresstest.kernels.irr import solve_irr

EPS = 2.0**-53
# (horizon, rows) of each kind: every horizon the issue names, fewer rows where long
HORIZONS = ((12, 200), (37, 150), (60, 200), (120, 150), (240, 50), (600, 30))


@pytest.fixture(scope="module")
def cases():
    """{kind: [(flows, closest root, slack, solved), ...] per horizon}, numpy."""
    rng = np.random.default_rng(29)
    out = {}
    for kind in ("pair", "tangency"):
        out[kind] = []
        for T, n in HORIZONS:
            flows, root, slack = adversarial_irr_flows(rng, n, kind, T)
            out[kind].append((flows, root, slack, solve_irr(flows)))
    return out


@pytest.mark.parametrize("kind", ["pair", "tangency"])
def test_the_closest_root_is_found(cases, kind):
    for flows, root, slack, got in cases[kind]:
        miss = ~(np.abs(got - root) <= 10 * slack + 1e-12)
        assert not miss.any(), (f"{kind}, {flows.shape[1] - 1} months: {miss.sum()} of {len(root)} missed, "
                                f"e.g. got {got[miss][:3]} want {root[miss][:3]}")


@pytest.mark.parametrize("kind", ["pair", "tangency"])
def test_every_reported_rate_is_a_root(cases, kind):
    """|p| at the reported rate, in extended precision, within float64's round-off of
    the polynomial (the solver's own tolerance for a tangency, irr._tangency_tolerance)."""
    for flows, _, _, got in cases[kind]:
        n_months = flows.shape[1]
        residual = polynomial_residual(flows, got)
        assert np.all(residual <= irr._tangency_tolerance(n_months)), (n_months, residual.max())


@pytest.mark.parametrize("kind", ["pair", "tangency"])
def test_against_numpy_financial(cases, kind):
    """Up to 120 months: where the eigenvalue method finds a real root, ours is as close
    to 0 or closer (to the double root's own rounding, the slack), and where it finds
    the constructed root, the same one. It finds a pair's first root nearly always, a
    double root about half the time (as two roots a hair apart, or none)."""
    found = 0
    for flows, root, slack, got in cases[kind]:
        if flows.shape[1] > 121:
            continue
        theirs = np.array([npf.irr(row) for row in flows])
        real = np.isfinite(theirs)
        assert np.all(np.abs(got[real]) <= np.abs(theirs[real]) + 10 * slack[real] + 1e-12)
        same = real & (np.abs(theirs - root) <= 10 * slack + 1e-9)
        assert np.all(np.abs(got[same] - theirs[same]) <= 20 * slack[same] + 1e-9)
        found += int(same.sum())
    assert found > 0  # the comparison compared something


def test_a_near_miss_is_no_root():
    """((x - x0)^2 + e^2) r(x): at e = 0 a double root at x0 (found), at e = 1e-5 the
    polynomial stays about 1e-10 of its scale away from 0 there (no root: NaN, the
    remainder r having none)."""
    L = np.longdouble
    rng = np.random.default_rng(3)
    T, x0 = 60, L(1) / L(1.02)
    rem = np.exp(rng.normal(0, 1, T - 1)).astype(L)
    rows = []
    for e in (L(0), L(1e-5)):
        quad = np.array([x0 * x0 + e * e, -2 * x0, L(1)])
        rows.append(np.convolve(quad, rem).astype(np.float64))
    got = solve_irr(np.array(rows))
    assert got[0] == pytest.approx(0.02, abs=1e-6)
    assert np.isnan(got[1])


def test_powers_form_alike(cases, monkeypatch):
    """CuPy's forms (a table of powers for the Newton steps and the certificate's sums),
    forced on numpy: the same roots to round-off."""
    monkeypatch.setattr(irr, "_powers_form", lambda xp: True)
    for kind in ("pair", "tangency"):
        for flows, _, _, got in cases[kind][:3]:
            np.testing.assert_allclose(solve_irr(flows[:40]), got[:40], rtol=0, atol=1e-10)


def test_jax_alike(cases, compiled_backend):
    """The compiled solver (its certificate inside the first Newton pass, the careful
    search under conditionals and loops) gives numpy's roots, within their slack: the
    roots of a close pair move with the round-off, and a double root rounded one way
    is two roots a hair apart (the first reported), the other way a touch."""
    be = compiled_backend
    fn = be.compile(solve_irr)
    for kind in ("pair", "tangency"):
        flows, _, slack, got = cases[kind][0]
        out = be.to_numpy(fn(be.xp.asarray(flows[:64])))
        assert np.all(np.abs(out - got[:64]) <= 10 * slack[:64] + 1e-12), np.max(np.abs(out - got[:64]))
