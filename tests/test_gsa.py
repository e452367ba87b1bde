"""The sensitivity estimators (stresstest/gsa.py) against closed forms.

Small models of their own realize gsa's designs from the counter-based draws
(kernels/paths.py), independently of the project's Monte Carlo model: the Ishigami
function of three independent uniforms (closed-form variance, Sobol indices, Shapley
effects and DGSM) and a linear function of correlated normals (Shapley effects by
enumeration of all subsets, DGSM over its latent normals). Every draw is a fixed
function of (seed, sample), so these tests are deterministic: the tolerances are a few
standard errors of the estimate at its sample size, measured once over 100 to 400 seeds
(the figures are beside each tolerance), and a failure is not a fluke of the day.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from stresstest import gsa
from stresstest.kernels.paths import normals, uniforms

# ------------------------------------------------------------------ realizing a design


def independent_inputs(law: gsa.Law) -> list[int]:
    """The inputs without Gaussian coordinates (each drawn from one uniform)."""
    return [i for i in range(law.d) if i not in law.gauss_of]


def factor(R: np.ndarray) -> np.ndarray:
    """L with L L^T = R: Cholesky, or Q sqrt(lambda) for a singular R (as the Monte Carlo
    configuration factors it)."""
    try:
        return np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(R)
        return vecs * np.sqrt(np.clip(vals, 0.0, None))


def correlate(L: np.ndarray, z: np.ndarray) -> np.ndarray:
    """x = L z row by row [E, n], by elementwise sums: a row's value does not depend on
    how many rows are evaluated together (a BLAS product might)."""
    x = np.zeros_like(z)
    for j in range(z.shape[1]):
        x += z[:, j, None] * L[None, :, j]
    return x


def draws(law: gsa.Law, key: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs of stream `key` at samples `rows`: the Gaussian coordinates x [E, n]
    (x = L z, z the stream's normals from draw 0, L = factor(R)) and one uniform per
    independent input u [E, k] (draw numbers after those of the normals)."""
    rows = np.asarray(rows).astype(np.uint64)
    n = law.n
    x = (correlate(factor(law.corr), normals(np, key, rows, 0, n, np.float64)) if n
         else np.zeros((rows.shape[0], 0)))
    first = 2 * ((n + 1) // 2)
    u = uniforms(np, key, rows, np.arange(first, first + len(independent_inputs(law)), dtype=np.uint64),
                 np.float64)
    return x, u


def realize(law: gsa.Law, design: gsa.Design) -> tuple[np.ndarray, np.ndarray]:
    """A design's inputs: x = mix x1 + (I - mix) x2 per evaluation; an independent
    input's uniform from stream 1 where keep[:, input], else from stream 2."""
    x1, u1 = draws(law, design.key1, design.i1)
    x2, u2 = draws(law, design.key2, design.i2)
    x = x2.copy()
    for j in range(law.n):
        x += design.mix[:, :, j] * (x1 - x2)[:, j, None]
    u = np.where(design.keep[:, independent_inputs(law)], u1, u2)
    return x, u


# ------------------------------------------------------------------ Ishigami

# Ishigami and Homma (1990): Y = sin X1 + a sin^2 X2 + b X3^4 sin X1, X_i ~ U(-pi, pi)
# independent. Its ANOVA terms (Sobol' and Levitan 1999; Saltelli et al., "Global
# Sensitivity Analysis: the Primer", 2008, sec. 4.8):
#   V1 = (1 + b pi^4 / 5)^2 / 2, V2 = a^2 / 8, V3 = 0, V13 = b^2 pi^8 (1/18 - 1/50),
#   V12 = V23 = V123 = 0, V = 1/2 + a^2 / 8 + b pi^4 / 5 + b^2 pi^8 / 18.
# With independent inputs the Shapley effect shares each interaction equally among its
# members (Owen 2014): Sh1 = (V1 + V13 / 2) / V, Sh2 = V2 / V, Sh3 = V13 / (2 V).
A, B = 7.0, 0.1
ISHIGAMI_V1 = (1.0 + B * math.pi ** 4 / 5.0) ** 2 / 2.0
ISHIGAMI_V2 = A ** 2 / 8.0
ISHIGAMI_V13 = B ** 2 * math.pi ** 8 * (1.0 / 18.0 - 1.0 / 50.0)
ISHIGAMI_VAR = 0.5 + A ** 2 / 8.0 + B * math.pi ** 4 / 5.0 + B ** 2 * math.pi ** 8 / 18.0
ISHIGAMI_FIRST = np.array([ISHIGAMI_V1, ISHIGAMI_V2, 0.0]) / ISHIGAMI_VAR
ISHIGAMI_TOTAL = np.array([ISHIGAMI_V1 + ISHIGAMI_V13, ISHIGAMI_V2, ISHIGAMI_V13]) / ISHIGAMI_VAR
ISHIGAMI_SHAPLEY = np.array([ISHIGAMI_V1 + ISHIGAMI_V13 / 2.0, ISHIGAMI_V2, ISHIGAMI_V13 / 2.0]) / ISHIGAMI_VAR
# DGSM: dY/dX1 = cos X1 (1 + b X3^4), dY/dX2 = a sin 2 X2, dY/dX3 = 4 b X3^3 sin X1; with
# E[X^2k] = pi^2k / (2k + 1) on U(-pi, pi) and E[cos^2] = E[sin^2] = 1/2:
#   nu1 = (1 + 2 b pi^4 / 5 + b^2 pi^8 / 9) / 2, nu2 = a^2 / 2, nu3 = 8 b^2 pi^6 / 7.
# The Poincare constant of U(l, h) is (h - l)^2 / pi^2 = 4 here (Sobol' and Kucherenko 2009).
POINCARE_UNIFORM = (2.0 * math.pi) ** 2 / math.pi ** 2
ISHIGAMI_NU = np.array([(1.0 + 2.0 * B * math.pi ** 4 / 5.0 + B ** 2 * math.pi ** 8 / 9.0) / 2.0,
                        A ** 2 / 2.0, 8.0 * B ** 2 * math.pi ** 6 / 7.0])

ISHIGAMI_LAW = gsa.Law(("x1", "x2", "x3"), np.zeros((0, 0)), ())


def ishigami(u: np.ndarray) -> np.ndarray:
    x = math.pi * (2.0 * u - 1.0)
    return np.sin(x[:, 0]) + A * np.sin(x[:, 1]) ** 2 + B * x[:, 2] ** 4 * np.sin(x[:, 0])


def ishigami_model(design: gsa.Design) -> np.ndarray:
    return ishigami(realize(ISHIGAMI_LAW, design)[1])


def ishigami_gradients(seed: int):
    """gradient_model of dgsm_bounds: Y and the Poincare constant times dY/dX_i squared."""
    key = gsa.dgsm_stream(seed)

    def model(rows):
        u = draws(ISHIGAMI_LAW, key, rows)[1]
        x = math.pi * (2.0 * u - 1.0)
        grad = np.stack([np.cos(x[:, 0]) * (1.0 + B * x[:, 2] ** 4), A * np.sin(2.0 * x[:, 1]),
                         4.0 * B * x[:, 2] ** 3 * np.sin(x[:, 0])], axis=1)
        return ishigami(u), POINCARE_UNIFORM * grad ** 2

    return model


# ------------------------------------------------------------------ linear Gaussian

# Y = beta^T X, X ~ N(0, R): input "pair" owns coordinates 0 and 1, "b" coordinate 2,
# "c" coordinate 3 (a zero coefficient, but correlated with b and the pair: its Shapley
# effect is not 0), "idle" an independent uniform Y ignores (every effect 0).
LINEAR_CORR = np.array([[1.0, 0.6, 0.3, 0.0],
                        [0.6, 1.0, -0.2, 0.2],
                        [0.3, -0.2, 1.0, 0.5],
                        [0.0, 0.2, 0.5, 1.0]])
BETA = np.array([1.0, 2.0, -1.5, 0.0])
LINEAR_LAW = gsa.Law(("pair", "b", "c", "idle"), LINEAR_CORR, (0, 0, 1, 2))
IDLE = 3


def linear(x: np.ndarray) -> np.ndarray:
    y = np.zeros(x.shape[0])
    for j, b in enumerate(BETA):
        y += b * x[:, j]
    return y


def linear_model(design: gsa.Design) -> np.ndarray:
    return linear(realize(LINEAR_LAW, design)[0])


def exact_shapley(law: gsa.Law, beta: np.ndarray) -> np.ndarray:
    """Shapley effects of Y = beta^T X, X ~ N(0, R) on the Gaussian coordinates (the
    other inputs ignored), by enumeration of all subsets J of the inputs:
    c(J) = Var E[Y | X_J] = beta^T R[:, J] R[J, J]^-1 R[J, :] beta,
    Sh_i = sum over J without i of |J|! (d - |J| - 1)! / d! (c(J u {i}) - c(J)), / Var Y."""
    d, R = law.d, law.corr

    def cost(J):
        cols = [k for k in range(law.n) if law.gauss_of[k] in J]
        if not cols:
            return 0.0
        RJ = R[:, cols]
        return float(beta @ RJ @ np.linalg.solve(R[np.ix_(cols, cols)], RJ.T @ beta))

    sh = np.zeros(d)
    for i in range(d):
        rest = [k for k in range(d) if k != i]
        for size in range(d):
            w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for J in itertools.combinations(rest, size):
                sh[i] += w * (cost(set(J) | {i}) - cost(set(J)))
    return sh / float(beta @ R @ beta)


def latent_totals(law: gsa.Law, beta: np.ndarray) -> np.ndarray:
    """Total index of each input over its latent normals z (x = L z, so Y = (L^T beta)^T z,
    a sum of independent terms): the sum of (L^T beta)_j^2 over its coordinates / Var Y."""
    g = factor(law.corr).T @ beta
    out = np.zeros(law.d)
    np.add.at(out, list(law.gauss_of), g ** 2)
    return out / float(beta @ law.corr @ beta)


def linear_gradients(seed: int):
    """gradient_model of dgsm_bounds over the latent normals (Poincare constant 1 for a
    standard normal): an input's G sums (dY/dz_j)^2 = (L^T beta)_j^2 over its
    coordinates; the idle input's derivative is 0."""
    key = gsa.dgsm_stream(seed)
    g2 = latent_totals(LINEAR_LAW, BETA) * float(BETA @ LINEAR_CORR @ BETA)

    def model(rows):
        x = draws(LINEAR_LAW, key, rows)[0]
        return linear(x), np.broadcast_to(g2, (rows.shape[0], LINEAR_LAW.d))

    return model


# ------------------------------------------------------------------ checking an estimate

SEED = 20240611
# An estimate unbiased with standard error se lies within 4 se of its target with
# probability 0.99994 (normal approximation): beyond that, the estimator is wrong, not
# unlucky. The standard errors below are the standard deviations of each estimate over
# 100 seeds at the sample size used (400 for the DGSM bounds; the linear DGSM's is the
# delta method's, exact there), rounded up; sizes are chosen so that 4 se is at most a
# fifth of the larger indices. The bootstrap interval's half-width must match 1.96 se
# within [0.6, 1.5] (it ranged over about [0.7, 1.3] x 1.96 se over those seeds).
TOLERANCE_SE = 4.0
WIDTH_RANGE = (0.6, 1.5)


def check_estimate(what: str, got, ci, want, se) -> None:
    """got within TOLERANCE_SE standard errors of the closed form want, want inside the
    bootstrap interval ci [.., 2], and the interval as wide as the standard error says."""
    got, ci, want, se = (np.asarray(v, dtype=np.float64) for v in (got, ci, want, se))
    assert np.all(np.abs(got - want) <= TOLERANCE_SE * se), f"{what}: {got} vs closed form {want} (se {se})"
    assert np.all((ci[..., 0] <= want) & (want <= ci[..., 1])), f"{what}: {want} outside the interval {ci}"
    ratio = (ci[..., 1] - ci[..., 0]) / 2.0 / (1.96 * se)
    assert np.all((WIDTH_RANGE[0] <= ratio) & (ratio <= WIDTH_RANGE[1])), \
        f"{what}: interval {ci} is {ratio} x the width its standard error {se} gives"


# ------------------------------------------------------------------ the law of the inputs


def test_groups_of_a_block_diagonal_correlation():
    """Inputs joined by a nonzero correlation between any of their coordinates form one
    group, also through a chain and across non-adjacent coordinates; an input whose
    coordinates correlate only with each other, or without coordinates, stands alone."""
    R = np.eye(7)
    for a, b, r in [(0, 4, 0.3), (4, 6, -0.2), (1, 2, 0.5), (3, 5, 0.4)]:
        R[a, b] = R[b, a] = r
    # coordinates' inputs: 0->a, 1->b, 2->b, 3->c, 4->d, 5->e, 6->f; input g independent
    law = gsa.Law(tuple("abcdefg"), R, (0, 1, 1, 2, 3, 4, 5))
    assert law.groups() == [(0, 3, 5), (1,), (2, 4), (6,)]
    assert ISHIGAMI_LAW.groups() == [(0,), (1,), (2,)]
    assert LINEAR_LAW.groups() == [(0, 1, 2), (3,)]


SQRT3 = math.sqrt(3.0)
# x2 = (x0 + x1) / sqrt 3 (corr(x0, x1) = 1/2): singular, x3 correlated 0.4 with x0 alone
SINGULAR = np.array([[1.0, 0.5, 1.5 / SQRT3, 0.4],
                     [0.5, 1.0, 1.5 / SQRT3, 0.2],
                     [1.5 / SQRT3, 1.5 / SQRT3, 1.0, 0.6 / SQRT3],
                     [0.4, 0.2, 0.6 / SQRT3, 1.0]])
CONDITIONAL_LAWS = {
    "three_inputs": gsa.Law(("a", "b", "c"), np.array([[1.0, 0.7, -0.3], [0.7, 1.0, 0.2], [-0.3, 0.2, 1.0]]),
                            (0, 1, 2)),
    "grouped_and_independent": gsa.Law(("ab", "c", "u"), np.array([[1.0, -0.5, 0.3], [-0.5, 1.0, 0.4],
                                                                   [0.3, 0.4, 1.0]]), (0, 0, 1)),
    "correlated_by_one": gsa.Law(("a", "b", "c"), np.array([[1.0, 1.0, 0.3], [1.0, 1.0, 0.3], [0.3, 0.3, 1.0]]),
                                 (0, 1, 2)),
    "singular": gsa.Law(("a", "b", "c", "d"), SINGULAR, (0, 1, 2, 3)),
}
# a conditional variance of 0 (singular R) is 0 up to rounding
SINGULAR_SLACK = 1e-9


@pytest.mark.parametrize("law", CONDITIONAL_LAWS.values(), ids=CONDITIONAL_LAWS.keys())
def test_mix_draws_the_conditional_law(law):
    """With x1 fixed and x2 drawn from N(0, R), x = mix x1 + (I - mix) x2 keeps x1 off J
    and has on J the conditional law of the Gaussian formula, for every subset J of the
    inputs: mean R_J,r R_r,r^+ x1_r, covariance R_JJ - R_J,r R_r,r^+ R_r,J (r the rest;
    the pseudo-inverse where R_r,r is singular, x1_r being in its range)."""
    N = 20000
    key1, key2 = gsa.stream_key(SEED, 11), gsa.stream_key(SEED, 12)
    x1 = draws(law, key1, np.zeros(1, dtype=np.int64))[0][0]
    R = law.corr
    for size in range(law.d + 1):
        for J in itertools.combinations(range(law.d), size):
            inside = np.array([g in J for g in law.gauss_of])
            rest = ~inside
            design = gsa.Design(key1, np.zeros(N, dtype=np.int64), key2, np.arange(N, dtype=np.int64),
                                np.broadcast_to(law.mix(J), (N, law.n, law.n)), np.ones((N, law.d), dtype=bool))
            x = realize(law, design)[0]
            np.testing.assert_allclose(x[:, rest], np.broadcast_to(x1[rest], (N, int(rest.sum()))), atol=1e-12,
                                       err_msg=f"J={J}: the kept coordinates moved")
            if not inside.any():
                continue
            A = R[np.ix_(inside, rest)] @ np.linalg.pinv(R[np.ix_(rest, rest)], hermitian=True)
            mean = A @ x1[rest]
            cov = R[np.ix_(inside, inside)] - A @ R[np.ix_(rest, inside)]
            xs = x[:, inside]
            # 5 standard errors: sqrt(var / N) for the mean, sqrt((s_aa s_bb + s_ab^2) / N)
            # for a covariance entry
            var = np.clip(np.diag(cov), 0.0, None)
            mean_se = np.sqrt(var / N)
            assert np.all(np.abs(xs.mean(axis=0) - mean) <= 5 * mean_se + SINGULAR_SLACK), \
                f"J={J}: mean {xs.mean(axis=0)} vs {mean}"
            cov_se = np.sqrt((np.outer(var, var) + cov ** 2) / N)
            got = np.atleast_2d(np.cov(xs, rowvar=False))
            assert np.all(np.abs(got - cov) <= 5 * cov_se + SINGULAR_SLACK), f"J={J}: covariance {got} vs {cov}"


def test_permutations_reproducible_and_uniform():
    """The same seed gives the same permutations, another seed others; every row is a
    permutation, and each input takes each position about m / d times."""
    d, m = 5, 4000
    p = gsa.permutations(d, m, SEED)
    np.testing.assert_array_equal(p, gsa.permutations(d, m, SEED))
    assert not np.array_equal(p, gsa.permutations(d, m, SEED + 1))
    np.testing.assert_array_equal(np.sort(p, axis=1), np.broadcast_to(np.arange(d), (m, d)))
    counts = np.stack([(p == i).sum(axis=0) for i in range(d)])  # [input, position]
    # each count is Binomial(m, 1/d): within 5 standard deviations
    assert np.all(np.abs(counts - m / d) <= 5 * math.sqrt(m / d * (1 - 1 / d))), counts


# ------------------------------------------------------------------ Sobol indices and Shapley effects

# standard errors (sd over 100 seeds, rounded up) at these sizes
ISHIGAMI_ROWS = 8192
ISHIGAMI_FIRST_SE = np.array([0.015, 0.014, 0.013])
ISHIGAMI_TOTAL_SE = np.array([0.017, 0.0085, 0.005])
ISHIGAMI_SOBOL_VAR_SE = 0.19  # Var Y from the rows of A and B
ISHIGAMI_PERMUTATIONS = 4096
VARIANCE_ROWS = 8192
ISHIGAMI_SHAPLEY_SE = np.array([0.018, 0.010, 0.018])
ISHIGAMI_CHECK_SE = 0.024  # ShapleyEffects.total: the permutations' variance over the sample's
ISHIGAMI_SAMPLE_VAR_SE = 0.22  # Var Y from the variance sample (VARIANCE_ROWS)
LINEAR_PERMUTATIONS = 4096
LINEAR_SHAPLEY_SE = np.array([0.007, 0.007, 0.0023])
LINEAR_CHECK_SE = 0.021
LINEAR_SAMPLE_VAR_SE = 0.16  # sqrt(2 / VARIANCE_ROWS) Var Y for a normal Y
LINEAR_ROWS = 2048
LINEAR_GROUP_FIRST_SE, LINEAR_GROUP_TOTAL_SE = 0.033, 0.024


def shapley(model, law, permutations, seed=SEED) -> gsa.ShapleyEffects:
    contrib = gsa.shapley_contributions(model, law, gsa.permutations(law.d, permutations, seed), seed)
    return gsa.shapley_effects(contrib, gsa.variance_sample(model, law, VARIANCE_ROWS, seed), seed)


@pytest.fixture(scope="module")
def linear_effects() -> gsa.ShapleyEffects:
    return shapley(linear_model, LINEAR_LAW, LINEAR_PERMUTATIONS)


def test_ishigami_sobol_indices():
    """First-order and total indices of each input alone, the groups Law.groups gives
    for independent inputs: the closed forms, X3's first order 0 inside its interval."""
    got = gsa.sobol_indices(ishigami_model, ISHIGAMI_LAW, ISHIGAMI_LAW.groups(), ISHIGAMI_ROWS, SEED)
    assert got.groups == [(0,), (1,), (2,)]
    check_estimate("first-order", got.first, got.first_ci, ISHIGAMI_FIRST, ISHIGAMI_FIRST_SE)
    check_estimate("total", got.total, got.total_ci, ISHIGAMI_TOTAL, ISHIGAMI_TOTAL_SE)
    assert abs(got.variance - ISHIGAMI_VAR) <= TOLERANCE_SE * ISHIGAMI_SOBOL_VAR_SE


def check_shapley(got: gsa.ShapleyEffects, want, se, check_se, var, var_se, inputs=slice(None)) -> None:
    """Effects of `inputs` against the closed form; all sum to 1 (a ratio estimator),
    and the check `total` (the permutations' variance over the variance sample's) is 1
    within its interval; the sample's variance against the closed form."""
    check_estimate("Shapley", got.effects[inputs], got.ci[inputs], want[inputs], se)
    assert got.effects.sum() == pytest.approx(1.0, abs=1e-12)
    check_estimate("variance check (total)", got.total, got.total_ci, 1.0, check_se)
    check_estimate("variance", got.variance, got.variance_ci, var, var_se)


def test_ishigami_shapley_effects():
    """Shapley effects of independent inputs: each interaction's variance shared equally
    by its members."""
    check_shapley(shapley(ishigami_model, ISHIGAMI_LAW, ISHIGAMI_PERMUTATIONS), ISHIGAMI_SHAPLEY,
                  ISHIGAMI_SHAPLEY_SE, ISHIGAMI_CHECK_SE, ISHIGAMI_VAR, ISHIGAMI_SAMPLE_VAR_SE)


def test_exact_shapley_reference():
    """The enumeration agrees with the two-input closed form (Iooss and Prieur 2019:
    Y = b1 X1 + b2 X2, unit variances, correlation rho:
    Sh1 V = b1^2 (1 - rho^2 / 2) + rho b1 b2 + b2^2 rho^2 / 2) and with beta_i^2 / sum
    beta^2 for independent inputs; the effects sum to 1."""
    b1, b2, rho = 1.3, -0.7, 0.45
    law = gsa.Law(("x1", "x2"), np.array([[1.0, rho], [rho, 1.0]]), (0, 1))
    V = b1 ** 2 + b2 ** 2 + 2 * rho * b1 * b2
    sh1 = (b1 ** 2 * (1 - rho ** 2 / 2) + rho * b1 * b2 + b2 ** 2 * rho ** 2 / 2) / V
    np.testing.assert_allclose(exact_shapley(law, np.array([b1, b2])), [sh1, 1 - sh1], rtol=1e-12)
    beta = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(exact_shapley(gsa.Law(("a", "b", "c"), np.eye(3), (0, 1, 2)), beta),
                               beta ** 2 / (beta @ beta), rtol=1e-12)
    assert exact_shapley(LINEAR_LAW, BETA).sum() == pytest.approx(1.0, abs=1e-12)


def test_linear_gaussian_shapley_effects(linear_effects):
    """Correlated Gaussian inputs, one owning two coordinates, one with a zero
    coefficient (a nonzero effect through its correlations): the exact effects (the
    idle input's, 0, in test_zero_effect_input)."""
    want = exact_shapley(LINEAR_LAW, BETA)
    assert want[2] > 0.02  # the zero-coefficient input matters through its correlations
    check_shapley(linear_effects, want, LINEAR_SHAPLEY_SE, LINEAR_CHECK_SE, BETA @ LINEAR_CORR @ BETA,
                  LINEAR_SAMPLE_VAR_SE, inputs=slice(IDLE))


def test_linear_gaussian_sobol_of_groups():
    """The correlated inputs form one group that explains all of Y (first order and
    total 1); the idle input none."""
    got = gsa.sobol_indices(linear_model, LINEAR_LAW, LINEAR_LAW.groups(), LINEAR_ROWS, SEED)
    check_estimate("first-order", got.first[0], got.first_ci[0], 1.0, LINEAR_GROUP_FIRST_SE)
    check_estimate("total", got.total[0], got.total_ci[0], 1.0, LINEAR_GROUP_TOTAL_SE)
    check_zero("Sobol first-order", got.first[1], got.first_ci[1])
    check_zero("Sobol total", got.total[1], got.total_ci[1])


# Y ignores the idle input, so with common random numbers every estimate of its effect is
# 0 up to rounding: x = x2 + mix (x1 - x2) is x1 to the last bit only, so Y varies by
# ~1e-16 where nothing is resampled (an effect ~1e-32, an interval of such numbers).
ROUNDING = 1e-12


def check_zero(what: str, got: float, ci) -> None:
    assert abs(got) <= ROUNDING, f"{what}: {got} for an input Y ignores"
    assert ci[0] <= ROUNDING and ci[1] >= -ROUNDING, f"{what}: interval {ci} excludes 0"


def test_zero_effect_input(linear_effects):
    """An input Y ignores has a Shapley effect of 0 with an interval around 0 (its Sobol
    indices and DGSM bound: in their tests)."""
    check_zero("Shapley", linear_effects.effects[IDLE], linear_effects.ci[IDLE])


# ------------------------------------------------------------------ DGSM

ISHIGAMI_DGSM_ROWS = 8192
ISHIGAMI_BOUND_SE = np.array([0.061, 0.146, 0.051])  # over 400 seeds; the delta method agrees
ISHIGAMI_NU_SE = np.array([0.71, 0.77, 1.15])  # sd(C (dY/dX_i)^2) / sqrt(rows); nu2's is 196 / sqrt(8 rows)
LINEAR_DGSM_ROWS = 4096


def test_ishigami_dgsm():
    """nu_i (times the Poincare constant 4) and the bounds 4 nu_i / V against their
    closed forms, each bound above the input's total index."""
    got = gsa.dgsm_bounds(ishigami_gradients(SEED), ISHIGAMI_DGSM_ROWS, SEED)
    want = POINCARE_UNIFORM * ISHIGAMI_NU
    assert np.all(np.abs(got.nu - want) <= TOLERANCE_SE * ISHIGAMI_NU_SE), f"nu {got.nu} vs {want}"
    check_estimate("DGSM bound", got.bound, got.ci, want / ISHIGAMI_VAR, ISHIGAMI_BOUND_SE)
    assert np.all(got.ci[:, 0] >= ISHIGAMI_TOTAL), f"bounds {got.ci} below the total indices {ISHIGAMI_TOTAL}"


def test_linear_gaussian_dgsm():
    """Over the latent normals the bound is the total index (Y is linear in them): nu
    exact (the derivative is constant), the bound off only by the variance's estimate
    (relative se sqrt(2 / (rows - 1))); the bounds of inputs without a latent effect 0."""
    got = gsa.dgsm_bounds(linear_gradients(SEED), LINEAR_DGSM_ROWS, SEED)
    totals = latent_totals(LINEAR_LAW, BETA)
    np.testing.assert_allclose(got.nu, totals * (BETA @ LINEAR_CORR @ BETA), rtol=1e-12)
    # "c" owns the last latent coordinate, whose coefficient (L^T beta)_3 = L_33 beta_3 is 0
    assert totals[2] == 0.0
    check_estimate("DGSM bound", got.bound[:2], got.ci[:2], totals[:2],
                   totals[:2] * math.sqrt(2.0 / (LINEAR_DGSM_ROWS - 1)))
    for i in (2, IDLE):
        check_zero("DGSM", got.bound[i], got.ci[i])


# ------------------------------------------------------------------ chunking


def assert_same_fields(a, b, what: str) -> None:
    for name in vars(a):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f"{what}.{name}")
        else:
            assert x == y, f"{what}.{name}: {x} != {y}"


def test_estimates_independent_of_the_blocks():
    """Every draw is a function of (stream, sample): two block sizes that do not divide
    the sample give the same estimates to the last bit."""
    rows, perms, reps = 600, 300, 50
    p = gsa.permutations(LINEAR_LAW.d, perms, SEED)
    np.testing.assert_array_equal(gsa.shapley_contributions(linear_model, LINEAR_LAW, p, SEED),
                                  gsa.shapley_contributions(linear_model, LINEAR_LAW, p, SEED, block=25))
    np.testing.assert_array_equal(gsa.variance_sample(linear_model, LINEAR_LAW, rows, SEED),
                                  gsa.variance_sample(linear_model, LINEAR_LAW, rows, SEED, block=77))
    assert_same_fields(gsa.sobol_indices(linear_model, LINEAR_LAW, LINEAR_LAW.groups(), rows, SEED, replicates=reps),
                       gsa.sobol_indices(linear_model, LINEAR_LAW, LINEAR_LAW.groups(), rows, SEED, block=50,
                                         replicates=reps), "sobol")
    assert_same_fields(gsa.dgsm_bounds(ishigami_gradients(SEED), rows, SEED, replicates=reps),
                       gsa.dgsm_bounds(ishigami_gradients(SEED), rows, SEED, block=77, replicates=reps), "dgsm")


def test_estimates_independent_of_the_blocks_singular_correlation():
    """The same where R has two coordinates correlated by 1 (which the Monte Carlo
    configuration accepts): Law.mixes takes one method for the whole law (the
    pseudo-inverse where R is singular), so a set's mix does not depend on which block
    it falls in (a per-batch fallback once made it differ by ~1e-22)."""
    law = CONDITIONAL_LAWS["correlated_by_one"]

    def model(design):
        x = realize(law, design)[0]
        return x[:, 0] + 2.0 * x[:, 1] + 3.0 * x[:, 2]

    p = gsa.permutations(law.d, 300, SEED)
    np.testing.assert_array_equal(gsa.shapley_contributions(model, law, p, SEED),
                                  gsa.shapley_contributions(model, law, p, SEED, block=7))
