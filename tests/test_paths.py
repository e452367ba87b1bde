"""Path draws and processes (MODEL.md, "Stochastic paths") against their definitions.

Statistical checks use 4 standard errors; every draw is a fixed function of (seed,
path), so these tests are deterministic (a failure is not a fluke of the day).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import random_portfolio

from stresstest.kernels import paths as kp
from stresstest.kernels.paths import PathSpec


def _spec(n_price=2, n_clusters=3, n_energy=2, horizon=36, corr=None, **kw):
    n = n_price + n_clusters + n_energy
    R = np.eye(n) if corr is None else corr
    L = np.linalg.cholesky(R)
    args = dict(horizon=horizon, n_price=n_price, n_energy=n_energy,
                price_of=tuple(i % n_price for i in range(n_clusters)),
                energy_of=tuple(i % n_energy for i in range(n_clusters)),
                price_vol=0.35, util_ar=0.8, util_sigma=(0.1, 0.07, 0.04)[:n_clusters] + (0.1,) * max(0, n_clusters - 3),
                energy_vol=0.30, energy_kappa=0.1, chol=tuple(tuple(r) for r in L))
    args.update(kw)
    return PathSpec(**args)


def test_seed_key_and_uniforms_are_a_plain_splitmix64_and_box_muller():
    """Independent check of the hash: splitmix64's finaliser written with Python ints."""
    M = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    key = kp.seed_key(7)
    assert key == mix((7 * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & M)
    paths = np.array([0, 5, 123456789], dtype=np.uint64)
    draws = np.array([0, 1, 77], dtype=np.uint64)
    u = kp.uniforms(np, key, paths, draws, np.float64)
    for i, p in enumerate(paths):
        for j, d in enumerate(draws):
            z = mix((key + ((int(p) << 24) | int(d)) * 0x9E3779B97F4A7C15) & M)
            assert u[i, j] == ((z >> 11) + 0.5) * 2.0 ** -53
    # Box-Muller pairs: with h = 3 pairs, normal k < 3 the cosine of uniforms 2k, 2k + 1,
    # normal 3 + k the sine of the same pair
    z = kp.normals(np, key, paths, 10, 5, np.float64)
    uu = kp.uniforms(np, key, paths, np.arange(10, 16, dtype=np.uint64), np.float64)
    for k in range(5):
        pair = k if k < 3 else k - 3
        u1, u2 = uu[:, 10 - 10 + 2 * pair], uu[:, 2 * pair + 1]
        trig = np.cos if k < 3 else np.sin
        r = np.sqrt(-2 * np.log(u1))
        # the library's trig inherits the rounding of 2 pi u (about 1e-16 absolute)
        np.testing.assert_allclose(z[:, k], r * trig(2 * np.pi * u2), rtol=1e-15, atol=2e-15 * r.max())


def test_sincos_2pi_against_the_library_and_exact_at_quarter_turns():
    rng = np.random.default_rng(5)
    u = np.concatenate([rng.random(200_000), np.linspace(0, 1, 4097), [1e-300, 0.5 - 2**-53, 0.75 + 2**-53]])
    c, s = kp.sincos_2pi(np, u)
    assert np.abs(c - np.cos(2 * np.pi * u)).max() < 1.5e-15
    assert np.abs(s - np.sin(2 * np.pi * u)).max() < 1.5e-15
    assert np.abs(c * c + s * s - 1).max() < 1e-15
    quarter = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    c, s = kp.sincos_2pi(np, quarter)
    assert np.array_equal(c, [1, 0, -1, 0, 1]) and np.array_equal(s, [0, 1, 0, -1, 0])
    # odd about 1/2 and symmetric about each quarter, as the true functions are
    v = rng.random(1000) * 0.25
    c1, s1 = kp.sincos_2pi(np, v)
    c2, s2 = kp.sincos_2pi(np, 0.5 - v)
    np.testing.assert_allclose(c2, -c1, atol=4e-16)
    np.testing.assert_allclose(s2, s1, atol=4e-16)


def test_uniforms_bit_identical_on_jax_and_normals_to_round_off():
    jnp = pytest.importorskip("jax.numpy")
    import stresstest.jax_adapter  # noqa: F401  (64-bit on)

    key = kp.seed_key(2026)
    paths = np.arange(1000, 1500, dtype=np.uint64)
    draws = np.arange(0, 400, dtype=np.uint64)
    un = kp.uniforms(np, key, paths, draws, np.float64)
    uj = np.asarray(kp.uniforms(jnp, key, jnp.asarray(paths), jnp.asarray(draws), jnp.float64))
    assert np.array_equal(un, uj)
    zn = kp.normals(np, key, paths, 0, 200, np.float64)
    zj = np.asarray(kp.normals(jnp, key, jnp.asarray(paths), 0, 200, jnp.float64))
    np.testing.assert_allclose(zj, zn, rtol=1e-13, atol=1e-13)
    spec = _spec()
    fn = kp.path_factors(np, key, paths, spec, np.float64)
    fj = kp.path_factors(jnp, key, jnp.asarray(paths), spec, jnp.float64)
    for k in fn:
        np.testing.assert_allclose(np.asarray(fj[k]), fn[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_draws_depend_only_on_seed_and_path():
    key = kp.seed_key(3)
    spec = _spec()
    whole = kp.path_factors(np, key, np.arange(0, 300, dtype=np.uint64), spec, np.float64)
    part = kp.path_factors(np, key, np.arange(120, 170, dtype=np.uint64), spec, np.float64)
    for k in whole:
        assert np.array_equal(whole[k][120:170], part[k])
    other = kp.path_factors(np, kp.seed_key(4), np.arange(120, 170, dtype=np.uint64), spec, np.float64)
    assert not np.allclose(other["price"], part["price"])


def test_uniforms_are_uniform():
    u = kp.uniforms(np, kp.seed_key(1), np.arange(20000, dtype=np.uint64),
                    np.arange(50, dtype=np.uint64), np.float64).ravel()
    assert 0 < u.min() and u.max() < 1
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = u.size / 20
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 50  # 19 degrees of freedom: P(chi2 > 50) ~ 1e-4


def test_ar1_scan_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(4, 3, 37))
    for phi in (0.0, 0.5, 0.9, 1.0, -0.7, 1.05):
        y = kp.ar1_scan(np, b, phi)
        ref = np.zeros_like(b)
        for t in range(b.shape[-1]):
            ref[..., t] = b[..., t] + (phi * ref[..., t - 1] if t else 0.0)
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


N_STAT = 40000


@pytest.fixture(scope="module")
def draws():
    corr = np.eye(7)
    corr[0, 1] = corr[1, 0] = 0.5
    corr[2, 3] = corr[3, 2] = -0.3
    corr[0, 5] = corr[5, 0] = 0.4
    spec = _spec(corr=corr, horizon=24)
    paths = np.arange(N_STAT, dtype=np.uint64)
    key = kp.seed_key(11)
    return spec, corr, kp.innovations(np, key, paths, spec, np.float64), kp.path_factors(np, key, paths, spec,
                                                                                       np.float64)


def test_price_factor_mean_one_and_log_variance(draws):
    spec, _, _, f = draws
    P = f["price"]  # [N, C, T]
    s = spec.price_vol
    for t in (1, 6, 12, 24):
        x = P[:, 0, t - 1]
        se = x.std(ddof=1) / math.sqrt(x.size)
        assert abs(x.mean() - 1.0) < 4 * se, (t, x.mean(), se)
        lv = np.log(x).var(ddof=1)
        want = s * s * t / 12
        se_var = want * math.sqrt(2.0 / (x.size - 1))
        assert abs(lv - want) < 4 * se_var, (t, lv, want)


def test_energy_factor_mean_one_and_utilization_variance(draws):
    spec, _, _, f = draws
    X = f["energy"][:, 0, :]
    for t in (1, 12, 24):
        x = X[:, t - 1]
        assert abs(x.mean() - 1.0) < 4 * x.std(ddof=1) / math.sqrt(x.size)
    U = f["util"]
    a = spec.util_ar
    for c in range(3):
        s = spec.util_sigma[c]
        for t in (1, 12, 24):
            want = s * s * (1 - a * a) * (1 - a ** (2 * t)) / (1 - a * a)
            v = U[:, c, t - 1].var(ddof=1)
            assert abs(v - want) < 4 * want * math.sqrt(2.0 / (U.shape[0] - 1))
            assert abs(U[:, c, t - 1].mean()) < 4 * math.sqrt(want / U.shape[0])


def test_innovation_correlations_match_the_matrix(draws):
    _, corr, eps, _ = draws
    e = eps.transpose(0, 2, 1).reshape(-1, corr.shape[0])
    sample = np.corrcoef(e, rowvar=False)
    n = e.shape[0]
    se = (1 - corr ** 2) / math.sqrt(n)
    assert np.all(np.abs(sample - corr) <= 4 * se + 1e-12), np.abs(sample - corr).max()
    # and no correlation across months
    lag = np.corrcoef(eps[:, 0, 1:].ravel(), eps[:, 0, :-1].ravel())[0, 1]
    assert abs(lag) < 4 / math.sqrt(eps[:, 0, 1:].size)


def test_event_distributions():
    rng = np.random.default_rng(1)
    pf = random_portfolio(rng, n_clusters=2, horizon=24)
    key = kp.seed_key(5)
    paths = np.arange(30000, dtype=np.uint64)
    evs = (
        kp.EventSpec("next_gen_month", "triangular", (12.0, 24.0, 40.0), "set", (True, True), False),
        kp.EventSpec("delivery_months", "uniform", (0.0, 6.0), "set", (True, False), True),
        kp.EventSpec("pue", "normal", (1.3, 0.05), "set", (True, True), True),
        kp.EventSpec("client_loss_month", "discrete", (0.2, 0.5, 1.0), "set", (True, True), True,
                     (12.0, 24.0, 1e9)),
    )
    d = kp.event_draws(np, key, paths, evs, 7, 24, 2, np.float64)
    tri = d[0][:, 0]
    assert np.array_equal(d[0][:, 0], d[0][:, 1])  # shared draw
    assert abs(tri.mean() - (12 + 24 + 40) / 3) < 4 * tri.std() / math.sqrt(tri.size)
    assert tri.min() >= 12 and tri.max() <= 40
    uni = d[1]
    assert not np.array_equal(uni[:, 0], uni[:, 1])  # per cluster
    assert abs(uni[:, 0].mean() - 3.0) < 4 * math.sqrt(3.0) / math.sqrt(uni.shape[0])
    nor = d[2][:, 0]
    assert abs(nor.mean() - 1.3) < 4 * 0.05 / math.sqrt(nor.size)
    assert abs(nor.std() - 0.05) < 4 * 0.05 / math.sqrt(2 * nor.size)
    disc = d[3][:, 0]
    for v, p in ((12.0, 0.2), (24.0, 0.3), (1e9, 0.5)):
        frac = np.mean(disc == v)
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / disc.size)
    params = kp.apply_events(pf.base_arrays(), evs, d)
    assert np.all(params["delivery_months"][:, 1] == pf.clusters[1]["delivery_months"])  # masked out
    assert params["pue"].min() >= 1.0  # clipped to its range
