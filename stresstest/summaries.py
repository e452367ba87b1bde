"""Streaming summaries of Monte Carlo outputs: moments, quantiles, tail means.

Nothing here holds the paths. Quantiles and tail means come from a log-binned
histogram (the DDSketch idea): a value x with |x| > X_MIN falls in the bin
i = sign(x) ceil((log|x| - log X_MIN) / log(gamma)), gamma = (1 + alpha) / (1 - alpha),
each bin keeping its count, sum and sum of squares (and, for the portfolio NPV, the
sum of every cluster's NPV over the paths in it). Bins depend only on the value, so
sketches of chunks or shards merge exactly by adding counts. The floating-point sums
(here and in Moments) depend on their order; mc_summary.Summary fixes that order by
path index (blocks of paths, combined in a fixed tree), so its results do not depend
on the chunk size or the shard split at all, bit for bit.

Error bounds (docs/model.md, "Monte Carlo"):
- a quantile (the order statistic of rank ceil(q n), as numpy's "inverted_cdf") is
  returned as its bin's representative: within alpha |x| of the exact value, or
  within X_MIN where |x| <= X_MIN;
- a tail mean (CVaR, tail contributions) sums whole bins exactly and takes the
  boundary bin's share at that bin's mean: within 2 alpha |VaR| + X_MIN of the exact.
alpha = 1e-3 for outputs, 1e-2 for the monthly fan of cumulative cash flow.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 1e-3
FAN_ALPHA = 1e-2
X_MIN = 1e-9
LOG_X_MIN = math.log(X_MIN)


class Moments:
    """Count, mean and M2 of the finite values of each column (Chan's parallel merge).

    add and merge are deterministic, but not associative to the last bit: the same values
    absorbed in other batches, or merged in another order, give sums that differ by
    round-off. Callers that promise bit-for-bit results fix the order (mc_summary.Summary).
    """

    def __init__(self, width: int):
        self.n = np.zeros(width, dtype=np.int64)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self.nan = np.zeros(width, dtype=np.int64)
        self.inf = np.zeros(width, dtype=np.int64)

    def add(self, x: np.ndarray) -> None:  # x [N, width]
        x = np.asarray(x, dtype=np.float64)  # float32 runs: the sums in float64 (no copy otherwise)
        fin = np.isfinite(x)
        if fin.all() and x.shape[0]:
            # the common case: the same sums as below, without the masks and in place
            # (several times faster; benchmarks/README.md, "Measurements behind design
            # choices in the code")
            nb = np.full(x.shape[1], x.shape[0], dtype=np.int64)
            first = x[0]
            d = x - first
            md = d.sum(axis=0) / nb
            d -= md
            np.square(d, out=d)
            m2b = d.sum(axis=0)
            mb = first + md
        else:
            self.nan += np.isnan(x).sum(axis=0)
            self.inf += np.isinf(x).sum(axis=0)
            nb = fin.sum(axis=0)
            # shifted by the first finite value of each column: equal values give their
            # value exactly as the mean, and the sums stay small
            first = np.where(fin.any(axis=0), x[np.argmax(fin, axis=0), np.arange(x.shape[1])], 0.0)
            d = np.where(fin, x - first, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                md = np.where(nb > 0, d.sum(axis=0) / np.maximum(nb, 1), 0.0)
                m2b = np.where(fin, (d - md) ** 2, 0.0).sum(axis=0)
                mb = first + md
        n = self.n + nb
        delta = mb - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n > 0, nb / np.maximum(n, 1), 0.0)
        self.mean = self.mean + delta * w
        self.m2 = self.m2 + m2b + delta ** 2 * self.n * w
        self.n = n

    def merge(self, other: "Moments") -> None:
        n = self.n + other.n
        delta = other.mean - self.mean
        w = np.where(n > 0, other.n / np.maximum(n, 1), 0.0)
        self.mean = self.mean + delta * w
        self.m2 = self.m2 + other.m2 + delta ** 2 * self.n * w
        self.n = n
        self.nan += other.nan
        self.inf += other.inf

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 1, np.sqrt(self.m2 / np.maximum(self.n - 1, 1)), np.nan)

    @property
    def stderr(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.std / np.sqrt(self.n)


class Sketch:
    """Log-binned histogram of one series of values, mergeable, with per-bin sums.

    extra: width of an optional companion value summed per bin (each cluster's NPV in
    the bins of the portfolio's NPV). +inf and -inf go to end bins; NaN is counted apart.
    """

    def __init__(self, alpha: float = ALPHA, extra: int = 0):
        self.alpha = alpha
        self.gamma = (1 + alpha) / (1 - alpha)
        self.lg = math.log(self.gamma)
        self.lo = 0  # index of counts[0]
        self.counts = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros(0)
        self.sqs = np.zeros(0)
        self.extra = np.zeros((0, extra))
        self.mins = np.zeros(0)  # per bin: the smallest and largest value seen (exact)
        self.maxs = np.zeros(0)
        self.n_extra = extra
        self.nan = 0
        self.neg_inf = 0
        self.pos_inf = 0

    def index(self, x: np.ndarray) -> np.ndarray:
        # in place, one buffer (several times faster than a temporary per step;
        # benchmarks/README.md, "Measurements behind design choices in the code");
        # log|x| - log X_MIN, not log(|x| / X_MIN), which overflows past 1.8e299;
        # |x| <= X_MIN gives 0 exactly
        a = np.abs(x, dtype=np.float64)
        np.maximum(a, X_MIN, out=a)
        np.log(a, out=a)
        a -= LOG_X_MIN
        a /= self.lg
        np.ceil(a, out=a)
        np.copysign(a, x, out=a)
        return a.astype(np.int64)

    def representative(self, i: np.ndarray) -> np.ndarray:
        i = np.asarray(i)
        # in logs: X_MIN gamma^|i| 2 / (gamma + 1) overflows only past the largest float
        mag = np.exp(np.abs(i) * self.lg + (LOG_X_MIN + math.log(2.0 / (self.gamma + 1.0))))
        return np.where(i == 0, 0.0, np.sign(i) * mag)

    def _grow(self, lo: int, hi: int) -> None:
        if self.counts.size == 0:
            self.lo = lo
            n = hi - lo + 1
            self.counts = np.zeros(n, dtype=np.int64)
            self.sums = np.zeros(n)
            self.sqs = np.zeros(n)
            self.extra = np.zeros((n, self.n_extra))
            self.mins = np.full(n, np.inf)
            self.maxs = np.full(n, -np.inf)
            return
        new_lo = min(lo, self.lo)
        new_hi = max(hi, self.lo + self.counts.size - 1)
        if new_lo == self.lo and new_hi == self.lo + self.counts.size - 1:
            return
        n = new_hi - new_lo + 1
        off = self.lo - new_lo
        fills = {"mins": np.inf, "maxs": -np.inf}
        for name in ("counts", "sums", "sqs", "extra", "mins", "maxs"):
            old = getattr(self, name)
            new = np.full((n,) + old.shape[1:], fills.get(name, 0), dtype=old.dtype)
            new[off:off + old.shape[0]] = old
            setattr(self, name, new)
        self.lo = new_lo

    def add(self, x: np.ndarray, extra: np.ndarray | None = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        fin = np.isfinite(x)
        if fin.all():  # the common case: nothing to count or drop
            fin, xf = slice(None), x
        else:
            self.nan += int(np.isnan(x).sum())
            self.neg_inf += int(np.sum(x == -np.inf))
            self.pos_inf += int(np.sum(x == np.inf))
            xf = x[fin]
        if xf.size == 0:
            return
        i = self.index(xf)
        self._grow(int(i.min()), int(i.max()))
        j = i - self.lo
        n = self.counts.size
        self.counts += np.bincount(j, minlength=n)
        self.sums += np.bincount(j, weights=xf, minlength=n)
        self.sqs += np.bincount(j, weights=xf * xf, minlength=n)
        np.minimum.at(self.mins, j, xf)
        np.maximum.at(self.maxs, j, xf)
        if self.n_extra:
            ef = np.asarray(extra, dtype=np.float64)[fin]
            for c in range(self.n_extra):
                self.extra[:, c] += np.bincount(j, weights=ef[:, c], minlength=n)

    def merge(self, other: "Sketch") -> None:
        self.nan += other.nan
        self.neg_inf += other.neg_inf
        self.pos_inf += other.pos_inf
        if other.counts.size == 0:
            return
        self._grow(other.lo, other.lo + other.counts.size - 1)
        off = other.lo - self.lo
        sl = slice(off, off + other.counts.size)
        self.counts[sl] += other.counts
        self.sums[sl] += other.sums
        self.sqs[sl] += other.sqs
        self.extra[sl] += other.extra
        self.mins[sl] = np.minimum(self.mins[sl], other.mins)
        self.maxs[sl] = np.maximum(self.maxs[sl], other.maxs)

    @property
    def n(self) -> int:
        """Values ordered by the sketch: every one but NaN."""
        return int(self.counts.sum()) + self.neg_inf + self.pos_inf

    def extreme(self, largest: bool) -> float:
        """The exact smallest or largest value (NaN when there is none)."""
        if largest and self.pos_inf:
            return math.inf
        if not largest and self.neg_inf:
            return -math.inf
        nz = np.flatnonzero(self.counts)
        if nz.size == 0:
            return -math.inf if largest and self.neg_inf else (math.inf if self.pos_inf else math.nan)
        return float(self.maxs[nz[-1]] if largest else self.mins[nz[0]])

    def quantile(self, q: float) -> float:
        """The order statistic of rank ceil(q n) (q in (0, 1]), to within the bound."""
        n = self.n
        if n == 0:
            return math.nan
        k = max(1, math.ceil(q * n - 1e-9))
        if k <= self.neg_inf:
            return -math.inf
        k -= self.neg_inf
        cum = np.cumsum(self.counts)
        if cum.size == 0 or k > cum[-1]:
            return math.inf
        b = int(np.searchsorted(cum, k))
        # the bin's representative, kept inside the values the bin has seen: within the
        # bound, and exact where the bin holds one distinct value (ties, a single path)
        rep = float(self.representative(self.lo + b))
        return float(min(max(rep, self.mins[b]), self.maxs[b]))

    def lower_tail(self, q: float):
        """Sums over the k = ceil(q n) smallest values: (k, sum, sum of squares, extra sums).

        Whole bins exactly; the boundary bin contributes its share at its mean.
        """
        n = self.n
        k = max(1, math.ceil(q * n - 1e-9)) if n else 0
        extra = np.zeros(self.n_extra)
        if k == 0:
            return 0, math.nan, math.nan, extra * math.nan
        if self.neg_inf:
            return k, -math.inf, math.inf, extra * math.nan
        cum = np.cumsum(self.counts)
        if k > cum[-1]:  # the tail reaches +inf
            return k, math.inf, math.inf, extra + math.inf
        b = int(np.searchsorted(cum, k))
        below = int(cum[b - 1]) if b else 0
        f = (k - below) / self.counts[b]
        s = self.sums[:b].sum() + f * self.sums[b]
        sq = self.sqs[:b].sum() + f * self.sqs[b]
        ex = self.extra[:b].sum(axis=0) + f * self.extra[b]
        return k, float(s), float(sq), ex

    def tail_weights(self, q: float):
        """(b, f): the boundary bin b of the lower q-tail and its weight f. A path in a lower
        bin is in the tail with weight 1, in bin b with weight f, in a higher bin with 0."""
        n = self.n
        k = max(1, math.ceil(q * n - 1e-9))
        cum = np.cumsum(self.counts)
        if self.neg_inf or cum.size == 0 or k > cum[-1]:
            return None
        b = int(np.searchsorted(cum, k))
        below = int(cum[b - 1]) if b else 0
        return self.lo + b, (k - below) / self.counts[b]


def cvar_from(sk: Sketch, q: float) -> tuple[float, float]:
    """CVaR at level 1 - q (minus the mean of the lower q-tail) and its standard error.

    The standard error includes the uncertainty of the tail's edge (the VaR) itself:
    asymptotically Var = [Var_tail + (1 - q)(mean_tail - quantile_q)^2] / k. With k = 1
    (fewer than 1 / q paths) it is NaN: one path gives no spread to estimate, and both
    terms would read 0 (the tail's mean is its edge). The file and the table say so.
    """
    k, s, sq, _ = sk.lower_tail(q)
    if k == 0 or not math.isfinite(s):
        return -s / k if k else math.nan, math.nan
    mean = s / k
    var_tail = max(sq / k - mean * mean, 0.0)
    edge = sk.quantile(q)
    var = var_tail + (1.0 - q) * (mean - edge) ** 2
    return -mean, math.sqrt(var / k) if k > 1 else math.nan
