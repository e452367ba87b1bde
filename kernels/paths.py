"""Stochastic paths (MODEL.md, "Stochastic paths"): counter-based draws and the processes.

Every random number is a pure function of (seed, path index, draw number): the
splitmix64 generator's output at position (path << 24) | draw of the seed's stream. No generator state travels
between chunks, so any chunk size, shard count or backend yields the same paths; the
integer hashing is exact on every backend, so numpy, JAX and CuPy draw bit-identical
uniforms (normals then agree to the last bits of log, sqrt and cos).

Draw numbers of one path (T months, n series, E events, C clusters):
  normal k = j T + t - 1 of series j, month t (1..T), with h = ceil(n T / 2): Box-Muller
      on uniforms 2k and 2k + 1 (cosine) for k < h, on 2(k - h) and 2(k - h) + 1 (sine) after
  event e, cluster c: uniforms 2 (n T + e C + c) and that + 1
Series order j: price per GPU market, then utilization, then energy per power market
(PathSpec). The utilization series are, clusters in order, one per cluster without
segments of its own (its implied segment) and one per segment of a cluster with
segments, in the segments' order: a version 1 portfolio has one per cluster, as it always
had, and so draws the same paths bit for bit.
Paths are limited to 2^40 and draws per path to 2^24 (checked by the configuration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from .cashflows import PLATFORM_PREFIX
from .params import ITEM_NAMES

DRAW_BITS = 24
MAX_PATHS = 1 << 40
MAX_DRAWS = 1 << DRAW_BITS

_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def seed_key(seed: int) -> int:
    """The 64-bit key of a seed (a Python int, computed once on the host)."""
    z = (seed * _GOLDEN + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _mix(xp, z):
    m1 = xp.asarray(_M1, dtype=xp.uint64)
    m2 = xp.asarray(_M2, dtype=xp.uint64)
    z = (z ^ (z >> 30)) * m1
    z = (z ^ (z >> 27)) * m2
    return z ^ (z >> 31)


def uniforms(xp, key: int, paths, draws, dtype):
    """Uniforms in (0, 1) for every (path, draw): paths [S] uint64, draws [K] -> [S, K].

    splitmix64 at position counter = (path << 24) | draw of the stream seeded by the key:
    mix(key + counter * golden). The 53 top bits, offset by half a step: never 0, never 1.
    """
    counter = (paths[:, None] << DRAW_BITS) | draws[None, :]
    z = _mix(xp, xp.asarray(key, dtype=xp.uint64) + counter * xp.asarray(_GOLDEN, dtype=xp.uint64))
    top = xp.astype(z >> 11, xp.float64)
    return xp.astype((top + 0.5) * (2.0 ** -53), dtype)


def normals(xp, key: int, paths, first: int, count: int, dtype):
    """`count` standard normals per path from uniforms first, first + 1, ... [S, count].

    Box-Muller on pairs: with h = ceil(count / 2), uniforms 2k and 2k + 1 (from `first`)
    give normal k (cosine) and normal h + k (sine), k < h; an odd count drops the last sine.
    """
    pairs = (count + 1) // 2
    draws = xp.asarray(first, dtype=xp.uint64) + 2 * xp.arange(pairs, dtype=xp.uint64)
    u1 = uniforms(xp, key, paths, draws, dtype)
    u2 = uniforms(xp, key, paths, draws + xp.asarray(1, dtype=xp.uint64), dtype)
    r = xp.sqrt(-2.0 * xp.log(u1))
    cos, sin = sincos_2pi(xp, u2)
    return xp.concat([r * cos, r * sin], axis=1)[:, :count]


# Taylor coefficients of sin(x)/x and cos(x) in x^2, highest first; on |x| <= pi/4 the
# first omitted terms are below 7e-17 relative (x^17/17!, x^18/18!)
_SIN = tuple((-1) ** j / math.factorial(2 * j + 1) for j in range(7, -1, -1))
_COS = tuple((-1) ** j / math.factorial(2 * j) for j in range(8, -1, -1))


def sincos_2pi(xp, u):
    """(cos 2 pi u, sin 2 pi u) for u in [0, 1], to about 2e-16 absolute.

    One exact reduction serves both: with k = round(4 u) (the nearest quarter turn),
    w = u - k/4 is exact (Sterbenz) and in [-1/8, 1/8]; the polynomials on x = 2 pi w are
    evaluated by Horner's rule and the quarter turns rotate them. Several times faster
    than the two library calls on XLA's CPU backend, and more accurate near the zeros,
    where cos(2 pi u) inherits the rounding of its argument.
    """
    k = xp.round(4.0 * u)
    w = u - 0.25 * k
    q = xp.astype(k, xp.int64) % 4
    x = (2.0 * math.pi) * w
    x2 = x * x
    s = _SIN[0]
    for c in _SIN[1:]:
        s = s * x2 + c
    s = s * x
    c_ = _COS[0]
    for c in _COS[1:]:
        c_ = c_ * x2 + c
    cos = xp.where(q == 0, c_, xp.where(q == 1, -s, xp.where(q == 2, -c_, s)))
    sin = xp.where(q == 0, s, xp.where(q == 1, c_, xp.where(q == 2, -s, -c_)))
    return cos, sin


def ar1_scan(xp, b, phi: float):
    """y_t = phi y_{t-1} + b_t along the last axis, y_0 = b_0 (so y_{-1} = 0).

    One matrix product with the lower-triangular Toeplitz matrix of phi^(t-k): no
    powers of 1/phi (stable for any phi), and on the CPU several times faster than
    log2(T) shifted passes over arrays that outgrow the caches.
    """
    T = b.shape[-1]
    k = np.arange(T)
    lag = k[None, :] - k[:, None]  # [k, t]: t - k
    m = np.where(lag >= 0, float(phi) ** np.maximum(lag, 0), 0.0)
    return xp.matmul(b, xp.asarray(m, dtype=b.dtype))


@dataclass(frozen=True)
class PathSpec:
    """Static description of the processes of a Monte Carlo scenario (numbers as tuples).

    Series order: price per gpu_market, utilization series (the module docstring), energy
    per power_market. chol: lower-triangular factor of the innovations' correlation,
    n x n (row-major tuple of tuples). price_of / energy_of: for each cluster, the index
    of its market's series. util_of: for each cluster and segment slot (version 2: the
    portfolio carries items), the index of the slot's utilization series among them
    (padding slots name any: their share is 0); None: one series per cluster, in
    cluster order (version 1).
    """

    horizon: int
    n_price: int
    n_energy: int
    price_of: tuple[int, ...]
    energy_of: tuple[int, ...]
    price_vol: float | tuple[float, ...]  # annual; one for every market, or one per price series
    util_ar: float
    util_sigma: tuple[float, ...]  # per utilization series: its stationary deviation
    energy_vol: float | tuple[float, ...]  # annual; one for every market, or one per energy series
    energy_kappa: float
    chol: tuple[tuple[float, ...], ...]
    util_of: tuple[tuple[int, ...], ...] | None = None

    @property
    def n_clusters(self) -> int:
        return len(self.price_of)

    @property
    def n_util(self) -> int:
        return len(self.util_sigma)

    @property
    def n_series(self) -> int:
        return self.n_price + self.n_util + self.n_energy


def innovations(xp, key: int, paths, spec: PathSpec, dtype):
    """Correlated standard normal innovations [S, n_series, T]."""
    n, T = spec.n_series, spec.horizon
    z = normals(xp, key, paths, 0, n * T, dtype)
    z = xp.reshape(z, (z.shape[0], n, T))
    if all(spec.chol[i][j] == (1.0 if i == j else 0.0) for i in range(n) for j in range(n)):
        return z
    return correlated(xp, z, spec.chol, dtype)


def correlated(xp, z, chol, dtype):
    """Correlated innovations L z over the series axis: z [S, n, T] -> [S, n, T]."""
    L = xp.asarray(chol, dtype=dtype)
    # contract the series axis directly (a broadcast matmul of L over the paths is a
    # batched product, several times slower on XLA's CPU backend; benchmarks/README.md,
    # "Measurements behind design choices in the code")
    return xp.permute_dims(xp.tensordot(z, L, axes=([1], [1])), (0, 2, 1))


def path_factors(xp, key: int, paths, spec: PathSpec, dtype) -> dict:
    """Monthly factors of every cluster: price P, utilization shift U, energy X, each
    [S, C, T]; with spec.util_of, U per segment slot, [S, C, J, T] (the cash flows'
    version 2 layout)."""
    return factors_from_innovations(xp, innovations(xp, key, paths, spec, dtype), spec, dtype)


def factors_from_innovations(xp, eps, spec: PathSpec, dtype) -> dict:
    """The factors of path_factors from given correlated innovations eps [S, n_series, T]
    (a sensitivity analysis supplies its own: stresstest/rank.py)."""
    T = spec.horizon
    ip, ic = spec.n_price, spec.n_price + spec.n_util
    # price: log P_t = sum_{s<=t} (sigma/sqrt(12) eps_s - sigma^2/24), E[P_t] = 1
    sp = _per_series(xp, spec.price_vol, spec.n_price, dtype)
    log_p = ar1_scan(xp, (sp / math.sqrt(12.0)) * eps[:, :ip, :] - sp * sp / 24.0, 1.0)
    price = xp.exp(log_p)
    # utilization: AR(1) from U_0 = 0 with stationary deviation s
    a = spec.util_ar
    s = _per_series(xp, spec.util_sigma, spec.n_util, dtype)
    util = ar1_scan(xp, s * math.sqrt(max(1.0 - a * a, 0.0)) * eps[:, ip:ic, :], a)
    if spec.util_of is not None:
        util = _by_segment_slot(xp, util, spec.util_of)
    # energy: x_t = (1 - kappa) x_{t-1} + sigma/sqrt(12) eps_t, X_t = exp(x_t - Var[x_t]/2)
    phi = 1.0 - spec.energy_kappa
    se = _per_series(xp, spec.energy_vol, spec.n_energy, dtype) / math.sqrt(12.0)
    x = ar1_scan(xp, se * eps[:, ic:, :], phi)
    t = xp.arange(1, T + 1, dtype=dtype)
    var = se * se * _geometric_sum(xp, phi * phi, t)
    energy = xp.exp(x - 0.5 * var)
    return {
        "price": xp.take(price, xp.asarray(spec.price_of), axis=1),
        "util": util,
        "energy": xp.take(energy, xp.asarray(spec.energy_of), axis=1),
    }


def _per_series(xp, value, n: int, dtype):
    """A process parameter as [1, n, 1] for its n series: one value for all (a float) or
    one per series (a tuple); a float stays a Python float (the same arithmetic as before
    per-market values existed)."""
    if isinstance(value, (int, float)):
        return float(value)
    return xp.reshape(xp.asarray(value, dtype=dtype), (1, n, 1))


def _by_segment_slot(xp, util, util_of: tuple[tuple[int, ...], ...]):
    """The utilization series [S, n_util, T] laid out per cluster and segment slot,
    [S, C, J, T]: slot (c, j) takes series util_of[c][j]."""
    C, J = len(util_of), len(util_of[0])
    picked = xp.take(util, xp.asarray([i for row in util_of for i in row]), axis=1)
    return xp.reshape(picked, (util.shape[0], C, J, util.shape[-1]))


def _geometric_sum(xp, q: float, t):
    """sum_{j=0}^{t-1} q^j for q in [0, 1] (t exact where q = 1)."""
    if q == 1.0:
        return t
    return (1.0 - q ** t) / (1.0 - q)


@dataclass(frozen=True)
class EventSpec:
    """A parameter drawn per path: dist normal (a, b = mean, sd), uniform (low, high),
    triangular (low, mode, high) or discrete (values, cumulative probabilities); op
    applies the draw to the parameter (set, shift or scale); mask: clusters it touches;
    per_cluster: one draw per cluster instead of one shared by them.

    param is a cluster parameter, the path of an item field (contracts.<name>.<field>,
    segments.*.<field>, ...: MODEL.md, "Addressing the new fields"), whose item_mask
    says, per cluster and item slot, which items the draw moves, or a version 2 scalar:
    a cluster's (order_month, capex_decline, optimization.<field>: one column per
    cluster, as a cluster parameter) or the platform's (platform.<field>: one column
    for the portfolio, which takes the path's one draw; mask and per_cluster do not
    apply)."""

    param: str
    dist: str
    args: tuple[float, ...]
    op: str
    mask: tuple[bool, ...]
    per_cluster: bool
    values: tuple[float, ...] = ()
    item_mask: tuple[tuple[bool, ...], ...] | None = None

    @property
    def target(self) -> str:
        return event_target(self.param)


def event_target(param: str) -> str:
    """The parameter array an event on `param` moves: the parameter itself, or for an item
    path <kind>.<name>.<field> the field's array <kind>.<field> (item names hold no dot,
    cluster parameters none at all)."""
    kind, _, rest = param.partition(".")
    return f"{kind}.{rest.rpartition('.')[2]}" if rest else param


def event_draws(xp, key: int, paths, events: tuple[EventSpec, ...], n_series: int, horizon: int,
                n_clusters: int, dtype) -> list:
    """The drawn value of each event, [S, C] (one draw shared across clusters unless per_cluster)."""
    return [event_values(xp, ev, u1, u2, n_clusters)
            for ev, (u1, u2) in zip(events, event_uniforms(xp, key, paths, events, n_series, horizon, n_clusters,
                                                          dtype))]


def event_uniforms(xp, key: int, paths, events: tuple[EventSpec, ...], n_series: int, horizon: int,
                   n_clusters: int, dtype) -> list:
    """Each event's two uniforms (u1, u2), each [S, k] (k = C for a per_cluster event, else
    1): draws 2 (n T + e C + c) and that + 1 of the path (the module docstring)."""
    out = []
    base = 2 * n_series * horizon
    for e, ev in enumerate(events):
        first = base + 2 * e * n_clusters
        k = n_clusters if ev.per_cluster else 1
        draws = xp.asarray(first, dtype=xp.uint64) + 2 * xp.arange(k, dtype=xp.uint64)
        out.append((uniforms(xp, key, paths, draws, dtype),
                    uniforms(xp, key, paths, draws + xp.asarray(1, dtype=xp.uint64), dtype)))
    return out


def event_values(xp, ev: EventSpec, u, u2, n_clusters: int):
    """An event's drawn values [S, C] from its uniforms u, u2 ([S, k]; u2 serves only the
    normal law's Box-Muller): the inverse distribution function of its law."""
    if ev.dist == "uniform":
        lo, hi = ev.args
        v = lo + (hi - lo) * u
    elif ev.dist == "triangular":
        lo, mode, hi = ev.args
        fc = (mode - lo) / (hi - lo) if hi > lo else 0.5
        left = lo + xp.sqrt(u * (hi - lo) * (mode - lo))
        right = hi - xp.sqrt((1.0 - u) * (hi - lo) * (hi - mode))
        v = xp.where(u < fc, left, right)
    elif ev.dist == "normal":
        mean, sd = ev.args
        v = mean + sd * xp.sqrt(-2.0 * xp.log(u)) * sincos_2pi(xp, u2)[0]
    elif ev.dist == "discrete":
        cum = ev.args  # cumulative probabilities, last = 1
        vals = xp.asarray(ev.values, dtype=u.dtype)
        idx = xp.zeros(u.shape, dtype=xp.int64)
        for c in cum[:-1]:
            idx = idx + xp.astype(u > c, xp.int64)
        v = xp.take(vals, xp.reshape(idx, (-1,)))
        v = xp.reshape(v, u.shape)
    else:  # pragma: no cover - the configuration refuses other names
        raise ValueError(f"unknown distribution {ev.dist!r}")
    return xp.broadcast_to(v, (v.shape[0], n_clusters))


def apply_events(base: dict, events: tuple[EventSpec, ...], draws: list) -> dict:
    """Parameters [S, C] for the drawn events ([1, C] for the others; the platform's
    [S|1, 1]), clipped to range (a month rounded to a whole one, as a grid's shocks).

    Version 2 (items in base, [C, K]): in the order of a grid's shocks
    (shocks.apply_axis_values): the events on cluster parameters first, then the implied
    items derived from them, then the events on item paths (each draw applied to the
    items of its item_mask), then the shares balanced. Items come out [S|1, C, K].
    """
    from .shocks import apply_op, balance_shares, clip_param, shock_scalar, with_implied_items

    xp = array_namespace(draws[0]) if draws else None
    params = {k: v[None, ...] for k, v in base.items()}
    for ev, v in zip(events, draws):
        if ev.item_mask is not None:
            continue
        platform = ev.param.startswith(PLATFORM_PREFIX)
        if platform:  # one column: the path's one draw
            v = v[:, :1]
        mask = None if platform or all(ev.mask) else ev.mask
        params = shock_scalar(xp, params, ev.param, ev.op, v, mask)
    if ITEM_NAMES[0] not in params:
        return params
    xp = xp or array_namespace(params[ITEM_NAMES[0]])
    params.update(with_implied_items(xp, params))
    for ev, v in zip(events, draws):
        if ev.item_mask is None:
            continue
        x = params[ev.target]
        moved = clip_param(xp, ev.target, apply_op(xp, x, ev.op, v[:, :, None]))
        params[ev.target] = xp.where(xp.asarray(ev.item_mask)[None], moved, x)
    return balance_shares(xp, params)
