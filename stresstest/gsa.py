"""Global sensitivity analysis: which uncertain input explains the spread of an output.

Three estimators over a model Y = f(X) of random inputs X (docs/decisions.md):

- Shapley effects (Owen 2014; Song, Nelson and Staum 2016): the share of Var[Y] each
  input explains, well defined when inputs are dependent, summing to 1. Random
  permutations; for each, the cost c(J) = E[Var(Y | X_-J)] of the first j inputs J of
  the permutation is estimated from one outer draw of X_-J and `inner` draws of X_J
  given it (Song et al.'s N_o = 1, N_i = 3 recommendation), and the input at position j
  receives c(J_j) - c(J_(j-1)). The draws of one permutation are shared by its d steps
  (common random numbers: every c(J_j) is still unbiased, their differences far less
  noisy). The effects are the mean contributions over the permutations' mean c(all),
  the plain variance of their inner draws (a ratio estimator: they sum to 1); the check
  is that c(all) against the variance of an independent sample, 1 up to the error.
- First-order and total Sobol indices of groups of inputs independent of the rest
  (Saltelli et al. 2010 for the first order, Jansen 1999 for the total), from two
  independent samples A and B and, per group, A with that group's values from B.
- DGSM (Sobol' and Kucherenko 2009): nu_i = E[(dY/dxi)^2] over an input's independent
  latent coordinates, times the Poincare constant of each coordinate's law, over Var[Y]:
  an upper bound on the input's total index, from one gradient pass.

Inputs (Law): named inputs, some owning coordinates of one correlated Gaussian vector
(correlation R, as the Monte Carlo innovations of a month), the others independent of
everything (a scenario's events). Conditional sampling is exact for the Gaussian part:
with X1, X2 independent draws, keeping X1 on the coordinates outside J and taking
X2_J + A (X1_-J - X2_-J), A = R_J,-J R_-J,-J^+, draws X_J from its law given X1_-J
(a design's `mix`, one n x n matrix per evaluation). Independent inputs are kept or
redrawn (a design's `keep`).

The estimators know nothing of portfolios: a model is a callable design -> Y [E]
(numpy), evaluated on whatever device it likes (stresstest/rank.py). Every draw is a
pure function of (stream key, sample index) (kernels/paths.py), so results do not
depend on how the designs are cut into chunks. Confidence intervals are percentile
bootstraps over the estimators' independent units (permutations; sample rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .kernels.paths import seed_key

# the streams of draws, one key each: a design names two (stream_key(seed, tag))
SHAPLEY_OUTER, SHAPLEY_INNER, VARIANCE, SOBOL_A, SOBOL_B, DGSM = 1, 2, 3, 4, 5, 6
BOOTSTRAP = 1000
CONFIDENCE = 0.95


def stream_key(seed: int, tag: int) -> int:
    """The 64-bit key of one stream of draws of a seed (distinct per tag)."""
    return seed_key(seed_key(seed) ^ tag)


@dataclass(frozen=True)
class Law:
    """The joint law of the inputs. names: the d inputs; corr [n, n]: correlation of the
    Gaussian coordinates (n may be 0); gauss_of [n]: the input each coordinate belongs
    to. An input without Gaussian coordinates is independent of every other."""

    names: tuple[str, ...]
    corr: np.ndarray
    gauss_of: tuple[int, ...]

    def __post_init__(self):
        n = len(self.gauss_of)
        if self.corr.shape != (n, n):
            raise ValueError(f"corr is {self.corr.shape}, expected ({n}, {n})")
        if any(not 0 <= i < len(self.names) for i in self.gauss_of):
            raise ValueError("gauss_of names an input that does not exist")

    @property
    def d(self) -> int:
        return len(self.names)

    @property
    def n(self) -> int:
        return len(self.gauss_of)

    def mix(self, J) -> np.ndarray:
        """[n, n]: the Gaussian part of a draw with the inputs J resampled given the rest
        (x = mix x1 + (I - mix) x2; the module docstring)."""
        inside = np.array([i in {int(j) for j in J} for i in self.gauss_of], dtype=bool)
        return self.mixes(inside[None, :])[0]

    def mixes(self, inside: np.ndarray) -> np.ndarray:
        """mix for many sets at once: inside [N, n] marks the coordinates resampled ->
        [N, n, n]. A = R_J,r R_r,r^-1 (r the rest) from one batched solve of the block
        diagonal M = diag(R_r,r, I_J), or its pseudo-inverse where R is singular."""
        n = self.n
        eye = np.eye(n, dtype=bool)
        rest = ~inside
        R = self.corr
        M = np.where(rest[:, :, None] & rest[:, None, :], R, 0.0) + (eye & inside[:, :, None])
        Rjr = np.where(inside[:, :, None] & rest[:, None, :], R, 0.0)
        if self.singular:  # the same method for every set, whichever block it falls in
            A = Rjr @ np.linalg.pinv(M, hermitian=True)
        else:  # every principal block of a positive definite R is one
            A = np.swapaxes(np.linalg.solve(M, np.swapaxes(Rjr, 1, 2)), 1, 2)
        return np.where(rest[:, :, None], eye, A)

    @property
    def singular(self) -> bool:
        """Whether R is singular (series correlated by 1): conditioning then takes the
        pseudo-inverse (the conditional law is the same on R's range)."""
        if self.n == 0:
            return False
        return bool(np.linalg.eigvalsh(self.corr)[0] <= 1e-10)

    def groups(self) -> list[tuple[int, ...]]:
        """The inputs in groups independent of each other: the connected components of
        the inputs joined by a nonzero correlation between their coordinates."""
        parent = list(range(self.d))

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        g = self.gauss_of
        for a in range(self.n):
            for b in range(a + 1, self.n):
                if self.corr[a, b] != 0.0 and g[a] != g[b]:
                    parent[root(g[a])] = root(g[b])
        out: dict[int, list[int]] = {}
        for i in range(self.d):
            out.setdefault(root(i), []).append(i)
        return [tuple(v) for v in sorted(out.values())]


@dataclass(frozen=True)
class Design:
    """E evaluations: the inputs of evaluation e are drawn from stream 1 at sample i1[e]
    and stream 2 at sample i2[e], mixed by mix[e] (Gaussian coordinates) and keep[e]
    (per input: True takes stream 1's independent draws, False stream 2's)."""

    key1: int
    i1: np.ndarray  # [E] int64
    key2: int
    i2: np.ndarray  # [E] int64
    mix: np.ndarray  # [E, n, n]
    keep: np.ndarray  # [E, d] bool

    @property
    def size(self) -> int:
        return int(self.i1.shape[0])


Model = Callable[[Design], np.ndarray]


def plain_design(law: Law, key: int, rows: np.ndarray) -> Design:
    """Draws of stream `key` at samples `rows`, unmixed."""
    E = rows.shape[0]
    return Design(key, rows, key, rows, np.broadcast_to(np.eye(law.n), (E, law.n, law.n)),
                  np.ones((E, law.d), dtype=bool))


def _evaluate(model: Model, design: Design) -> np.ndarray:
    y = np.asarray(model(design), dtype=np.float64)
    if y.shape != (design.size,):
        raise ValueError(f"the model returned shape {y.shape} for {design.size} evaluations")
    return y


def _blocks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, total, size):
        yield a, min(a + size, total)


# ------------------------------------------------------------------ Shapley effects


def permutations(d: int, m: int, seed: int) -> np.ndarray:
    """m random permutations of d inputs [m, d], a function of the seed alone."""
    return np.argsort(np.random.default_rng([seed, SHAPLEY_OUTER]).random((m, d)), axis=1)


def shapley_contributions(model: Model, law: Law, perms: np.ndarray, seed: int, inner: int = 3,
                          block: int = 4096) -> np.ndarray:
    """Each permutation's marginal costs by input, [m, d] (the module docstring):
    contributions[p, perms[p, j]] = c(J_j) - c(J_(j-1)), c estimated from one outer
    draw (sample p of the outer stream) and `inner` draws (samples p inner + k of the
    inner stream) shared by the permutation's steps."""
    m, d = perms.shape
    k1, k2 = stream_key(seed, SHAPLEY_OUTER), stream_key(seed, SHAPLEY_INNER)
    out = np.empty((m, d))
    per_block = max(1, block // (d * inner))
    for a, b in _blocks(m, per_block):
        P = perms[a:b]
        B = b - a
        position = np.argsort(P, axis=1)  # [B, d]: each input's place in its permutation
        keep = position[:, None, :] > np.arange(d)[None, :, None]  # [B, j, input]: not in J_j
        gauss = np.asarray(law.gauss_of, dtype=np.int64)
        mix = law.mixes(~keep[:, :, gauss].reshape(B * d, law.n)) if law.n else np.zeros((B * d, 0, 0))
        rows = np.arange(a, b, dtype=np.int64)
        i1 = np.repeat(rows, d * inner)
        i2 = (rows[:, None, None] * inner + np.arange(inner)[None, None, :]).repeat(d, axis=1).reshape(-1)
        design = Design(k1, i1, k2, i2.astype(np.int64),
                        np.repeat(mix, inner, axis=0),
                        np.repeat(keep.reshape(B * d, law.d), inner, axis=0))
        y = _evaluate(model, design).reshape(B, d, inner)
        cost = np.var(y, axis=2, ddof=1)  # c(J_1) .. c(J_d)
        delta = np.diff(cost, axis=1, prepend=0.0)
        np.put_along_axis(out[a:b], P, delta, axis=1)
    return out


def variance_sample(model: Model, law: Law, n: int, seed: int, block: int = 4096) -> np.ndarray:
    """Y at n independent draws (the variance the effects are shares of)."""
    key = stream_key(seed, VARIANCE)
    return np.concatenate([_evaluate(model, plain_design(law, key, np.arange(a, b, dtype=np.int64)))
                           for a, b in _blocks(n, block)])


def _weights(n: int, replicates: int, rng) -> np.ndarray:
    """Bootstrap resampling as multinomial counts [replicates, n] (each row sums to n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _weighted_var(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sample variances of y under each row of counts w [R, n]."""
    n = y.shape[0]
    mean = w @ y / n
    return (w @ (y * y) / n - mean ** 2) * n / (n - 1)


def _interval(samples: np.ndarray) -> np.ndarray:
    """Percentile interval at CONFIDENCE over the first axis: [..., 2]."""
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    return np.moveaxis(np.nanpercentile(samples, [tail, 100.0 - tail], axis=0), 0, -1)


@dataclass
class ShapleyEffects:
    effects: np.ndarray  # [d], summing to 1
    ci: np.ndarray  # [d, 2]
    total: float  # the check: the permutations' variance over the variance sample's, 1 up to error
    total_ci: np.ndarray  # [2]
    variance: float  # of the variance sample
    variance_ci: np.ndarray  # [2]


def shapley_effects(contrib: np.ndarray, y: np.ndarray, seed: int, replicates: int = BOOTSTRAP) -> ShapleyEffects:
    """Effects = mean contributions over the permutations' mean c(all) (a ratio estimator:
    they sum to 1, and an input that alone moves the output has exactly 1). The check
    `total` compares that c(all) with the variance of the independent sample y: 1 up to
    the estimators' error. Bootstrap intervals resample the permutations and the
    variance sample independently."""
    m = contrib.shape[0]
    V = float(np.var(y, ddof=1))
    whole = contrib.sum(axis=1)  # each permutation's c(all)
    effects = contrib.mean(axis=0) / whole.mean()
    rng = np.random.default_rng([seed, BOOTSTRAP])
    boot_e, boot_t, boot_v = [], [], []
    for a, b in _blocks(replicates, 100):
        wc = _weights(m, b - a, rng)
        wv = _weights(y.shape[0], b - a, rng)
        v = _weighted_var(y, wv)
        w_whole = wc @ whole
        boot_e.append((wc @ contrib) / w_whole[:, None])
        boot_t.append(w_whole / m / v)
        boot_v.append(v)
    return ShapleyEffects(effects, _interval(np.concatenate(boot_e)), float(whole.mean() / V),
                          _interval(np.concatenate(boot_t)), V, _interval(np.concatenate(boot_v)))


# ------------------------------------------------------------------ Sobol indices


@dataclass
class SobolIndices:
    groups: list[tuple[int, ...]]
    first: np.ndarray  # [g]
    first_ci: np.ndarray  # [g, 2]
    total: np.ndarray  # [g]
    total_ci: np.ndarray  # [g, 2]
    variance: float


def sobol_indices(model: Model, law: Law, groups: list[tuple[int, ...]], n: int, seed: int,
                  block: int = 4096, replicates: int = BOOTSTRAP) -> SobolIndices:
    """First-order (Saltelli 2010) and total (Jansen 1999) indices of groups of inputs,
    each group independent of the rest (Law.groups), from n rows of A and B."""
    g = len(groups)
    kA, kB = stream_key(seed, SOBOL_A), stream_key(seed, SOBOL_B)
    fa, fb, fab = [], [], []
    per_block = max(1, block // (g + 2))
    eye = np.eye(law.n)
    swaps = []
    for grp in groups:
        coords = np.array([law.gauss_of[i] in grp for i in range(law.n)], dtype=bool)
        keep = np.ones(law.d, dtype=bool)
        keep[list(grp)] = False
        swaps.append((eye * ~coords[None, :] if law.n else eye, keep))
    for a, b in _blocks(n, per_block):
        rows = np.arange(a, b, dtype=np.int64)
        B = b - a
        fa.append(_evaluate(model, plain_design(law, kA, rows)))
        fb.append(_evaluate(model, plain_design(law, kB, rows)))
        mix = np.concatenate([np.broadcast_to(mx, (B, law.n, law.n)) for mx, _ in swaps])
        keep = np.concatenate([np.broadcast_to(kp, (B, law.d)) for _, kp in swaps])
        y = _evaluate(model, Design(kA, np.tile(rows, g), kB, np.tile(rows, g), mix, keep))
        fab.append(y.reshape(g, B))
    fa, fb, fab = np.concatenate(fa), np.concatenate(fb), np.concatenate(fab, axis=1)
    first_terms = fb[None, :] * (fab - fa[None, :])  # [g, n]
    total_terms = 0.5 * (fa[None, :] - fab) ** 2
    both = np.concatenate([fa, fb])
    V = float(np.var(both, ddof=1))
    rng = np.random.default_rng([seed, SOBOL_A, BOOTSTRAP])
    bf, bt = [], []
    for a, b in _blocks(replicates, 100):
        w = _weights(n, b - a, rng)
        v = _weighted_var(both, np.concatenate([w, w], axis=1))
        bf.append((w @ first_terms.T / n) / v[:, None])
        bt.append((w @ total_terms.T / n) / v[:, None])
    first = first_terms.mean(axis=1) / V
    total = total_terms.mean(axis=1) / V
    return SobolIndices(groups, first, _interval(np.concatenate(bf)), total, _interval(np.concatenate(bt)), V)


# ------------------------------------------------------------------ DGSM


@dataclass
class DgsmBounds:
    bound: np.ndarray  # [d]: Poincare constant x nu / Var[Y], an upper bound on the total index
    ci: np.ndarray  # [d, 2]
    nu: np.ndarray  # [d]: E[sum over the input's coordinates of C (dY/dxi)^2]
    variance: float


def dgsm_bounds(gradient_model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], n: int, seed: int,
                block: int = 4096, replicates: int = BOOTSTRAP) -> DgsmBounds:
    """gradient_model(rows) -> (Y [E], G [E, d]) at samples `rows` of the DGSM stream, G
    the sum over each input's independent coordinates of the Poincare constant times the
    squared derivative (NaN for an input whose derivative does not bound it: a discrete
    law). Bounds with bootstrap intervals over the rows."""
    ys, gs = [], []
    for a, b in _blocks(n, block):
        y, g2 = gradient_model(np.arange(a, b, dtype=np.int64))
        ys.append(np.asarray(y, dtype=np.float64))
        gs.append(np.asarray(g2, dtype=np.float64))
    y, G = np.concatenate(ys), np.concatenate(gs)
    V = float(np.var(y, ddof=1))
    nu = G.mean(axis=0)
    rng = np.random.default_rng([seed, DGSM, BOOTSTRAP])
    boot = []
    for a, b in _blocks(replicates, 100):
        w = _weights(n, b - a, rng)
        boot.append((w @ np.nan_to_num(G) / n) / _weighted_var(y, w)[:, None])
    ci = _interval(np.concatenate(boot))
    ci[~np.isfinite(nu)] = np.nan
    return DgsmBounds(nu / V, ci, nu, V)


def dgsm_stream(seed: int) -> int:
    """The key of the stream DGSM's samples are drawn from."""
    return stream_key(seed, DGSM)
