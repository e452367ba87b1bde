"""Vectorised internal rate of return with fixed shapes: no root lost.

Rule (MODEL.md, numpy_financial 1.0): of the real monthly rates i > -1 that zero
sum_t F_t (1+i)^-t, return the one closest to 0 (ties to the positive root); NaN where
there is none or a flow is not finite. A double root (the flows' NPV touching zero)
counts, and so does each root of a close pair.

Sides. The rates are split at i = 0 and each half is mapped onto [0, 1]:
  positive side  x = 1/(1+i) in (0, 1]:  p(x) = sum_t F_t x^t
  negative side  z = 1 + i   in (0, 1]:  q(z) = sum_t F_t z^(T-t)  (= z^T p(1/z))
Both are polynomials evaluated on [0, 1] only, where powers never overflow.

Fast path (every row). A coarse ladder of nodes on both sides (one matrix product,
linear in the flows); on each side the first cell, walking away from i = 0, whose ends
differ in sign brackets a root. Where one side's cell lies wholly closer to i = 0 than
the other's, its root is refined by safeguarded Newton steps (a step that leaves the
bracket is replaced by bisection) from a false-position start. The answer is kept
where it is sure: Newton's last step was negligible, and a certificate shows it to be
the only root of its side's polynomial beyond the cell's far end, which covers every
rate closer to 0 on both sides (_beyond_far: Descartes' rule of signs on the twice
cumulated, tilted coefficients, computed in the first Newton pass). Rows of real
portfolios at horizons of a few years pass; a row that does not (several roots near
each other, a close pair, a tangency, cells that overlap in |i|, no bracket although
the flows change sign) is searched carefully, out to its candidate root where it has
one.

Careful search (_careful_rates; rows gathered a few hundred at a time, so that it
costs nothing where no row needs it). On each side a fine ladder of the polynomial,
its slope and a bound on its fourth derivative, uniform in u = |ln(1+i)| with cells of
at most _FINE_KAPPA / T out to u = _FINE_DENSE (half the scale on which a polynomial of
degree T can turn), then widening; walked from i = 0 in blocks of cells, out to the
candidate where there is one. A cell is cleared where the cubic through its ends'
values and slopes, with the derivative bound, shows no root there (the value keeping
its sign), or exactly one that is the candidate (_hermite); otherwise it is examined
(the search's one assumption: no subcell holds two extrema without its slope changing
sign): its Taylor expansion to degree
_TAYLOR_DEGREE about its midpoint (one pass over the months), cut into _SUBCELLS, each
searched for an interior extremum (Newton on the slope) and for the first root from
the cell's near end: a sign change, or an extremum within the round-off tolerance of
zero (a tangency, _tangency_tolerance). A root is reported only where the polynomial
is zero to within that tolerance.

The ladder values are linear in the flows: ladder_values computes them, and a grid
whose flows are affine in some axes interpolates them (kernels/factored.py) before
solve_irr_from_ladder finishes from the interpolated flows.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, is_cupy_namespace, is_jax_namespace

from .staging import month_blocks, scan_blocks, when_any

# Monthly rate levels |i| of the coarse ladder, from 0 outwards: a cell of 1-4 % a
# month where project returns live, sparse far out. Coarser cells cost Newton steps,
# finer ones ladder columns (a column of every grid point's values, interpolated and
# searched): this balance measured best (benchmarks/README.md, the IRR section).
_NEAR = (0.0, 0.01, 0.02, 0.035, 0.055, 0.08, 0.12, 0.2, 0.35, 0.75)
_POS_LEVELS = _NEAR + (1.5, 10.0, 100.0)
_NEG_LEVELS = _NEAR + (0.9, 0.99, 0.9999)
# After the last level: x = 0 (i = +inf) on the positive side, z = 0 (i = -1) on the negative.

POS_NODES = tuple(1.0 / (1.0 + lv) for lv in _POS_LEVELS) + (0.0,)
NEG_NODES = tuple(1.0 - lv for lv in _NEG_LEVELS) + (0.0,)

_TINY = 1e-300
# The fast path's Newton error, relative to the root (x or z), below which it has
# converged (_refine); otherwise the careful search finishes the row.
_CONVERGED = 1e-12
_EPS = 2.0**-53  # float64's unit round-off

# The careful search's fine ladder (module docstring): cells of at most _FINE_KAPPA / T
# and _FINE_H_MAX in u = |ln(1+i)| up to _FINE_DENSE (rates from -67 % to +200 % a
# month), then each _FINE_GROWTH times wider, out to _FINE_FAR (i = -0.99991 or about
# +11,000), then 0.
_FINE_KAPPA = 0.5
_FINE_H_MAX = 0.01
_FINE_DENSE = 1.1
_FINE_GROWTH = 1.1
_FINE_FAR = 9.3
_FINE_BLOCK = 32  # cells of the fine ladder evaluated at a time
# A cell's Taylor expansion: its truncation is below 3e-18 of sum |F_t| y^t on a dense
# cell ((KAPPA / 2)^13 / 13!); the subcells it is cut into, and the cells examined per pass.
_TAYLOR_DEGREE = 12
_SUBCELLS = 4
_EVENTS = 4
# Rows searched carefully at a time, and the safeguarded Newton steps on a subcell's
# (cheap, degree-12) expansion.
_CAREFUL_ROWS = 256
_LOCAL_STEPS = 40


def newton_steps(n_months: int) -> int:
    """Safeguarded Newton steps of the fast path for a horizon (static).

    From the false-position start in a cell of width h the error is about h^2 T / 8,
    then squares (times ~T/2) each step: in the 1-4 % cells of the coarse ladder, 3
    steps bring it near 1e-13 at T = 60 and a fourth shows it (_refine's convergence
    test); longer horizons turn faster. A row whose steps had not converged goes to
    the careful search.
    """
    return 4 if n_months <= 121 else 5 if n_months <= 241 else 7


def _ladder(xp, n_months: int, dtype, device):
    """Matrix [T+1, 2G]: column g holds node_g^t (positive side) then node_g^(T-t)."""
    t = xp.arange(n_months, dtype=dtype, device=device)
    T = n_months - 1
    pos = xp.asarray(POS_NODES, dtype=dtype, device=device)
    neg = xp.asarray(NEG_NODES, dtype=dtype, device=device)
    vp = xp.pow(pos[None, :], t[:, None])
    vn = xp.pow(neg[None, :], (T - t)[:, None])
    return xp.concat([vp, vn], axis=1)


def _first_sign_change(xp, vals, nodes):
    """Bracket of the first sign change along the node axis (walking away from i = 0).

    vals: [n, G] polynomial values at nodes (nodes decreasing from 1 to 0), any
    positive scale per row. Returns (has, k, a, fa, b, fb): cell k lies between node
    b = nodes[k] (the cell's near end, closer to i = 0) and a = nodes[k + 1].

    The first cell is the minimum of the indices of the cells that hold a root (one
    fused pass; an argmax or a concatenation costs an extra pass over the values).
    """
    n, G = vals.shape
    pos = vals > 0
    zero = vals == 0
    cell = ~zero[:, :-2] & ((pos[:, :-2] != pos[:, 1:-1]) | zero[:, 1:-1])  # cells 0 .. G-3
    # An exact zero at the far end node (x = 0 or z = 0) is a root at i = +inf or
    # i = -1, outside the rule's range: the last cell then holds no root.
    last = ~zero[:, -2] & ~zero[:, -1] & (pos[:, -2] != pos[:, -1])
    iota = xp.arange(G - 2, dtype=xp.int32)
    k = xp.min(xp.where(cell, iota[None, :], G), axis=1)
    k = xp.minimum(k, xp.where(last, G - 2, G))
    has = k < G
    k = xp.astype(xp.where(has, k, 0), xp.int64)  # flat indices below may pass 2^31
    flat = xp.reshape(vals, (-1,))
    row = xp.arange(n, dtype=xp.int64) * G
    b = xp.take(nodes, k)
    a = xp.take(nodes, k + 1)
    fb = xp.take(flat, row + k)
    fa = xp.take(flat, row + k + 1)
    return has, k, a, fa, b, fb


def _powers_form(xp) -> bool:
    """Whether the polynomials are evaluated from a table of powers (CuPy) rather than by
    Horner's rule. CuPy launches a kernel per array operation, and Horner's rule is a few
    of them per month and Newton step: with the table a chunk launches well under half
    as many kernels (benchmarks/op_count.py counts them). Under XLA (JAX) Horner's rule
    fuses into one loop; on numpy the table is several times slower (a cumulative
    product, wide temporaries). Figures: benchmarks/README.md, "Measurements behind
    design choices in the code"."""
    return is_cupy_namespace(xp)


def _poly_and_slope(xp, coef, x, reverse=False):
    """p(x) = sum_t c_t x^t and p'(x); coef [n, T+1], x [n] (see _evaluator)."""
    return _evaluator(xp, coef, reverse)(x)


def _evaluator(xp, coef, reverse=False):
    """A function x -> (p(x), p'(x)) for the rows of coef [n, T+1], x [n].

    reverse=True evaluates the reversed polynomial sum_t c_t x^(T-t) (the negative
    side) from the same array; reverse may also be a boolean array [n], per row.
    Three forms of the same sums: a table of powers on CuPy (_powers_form); under JAX,
    Horner's rule over blocks of months (_horner_blocks: a compiled program whose size
    does not grow with the horizon); elsewhere Horner's rule month by month.
    """
    if _powers_form(xp):
        return lambda x: _poly_and_slope_powers(xp, coef, x, reverse)
    if is_jax_namespace(xp):
        blocks = _descending_blocks(xp, coef, reverse)
        return lambda x: _horner_blocks(xp, blocks, x)
    return lambda x: _horner(xp, coef, x, reverse)


def _horner(xp, coef, x, reverse=False):
    """Horner's rule month by month (numpy). Rows stay in their natural layout: each
    month reads one column of the coefficients."""
    n_months = coef.shape[1]
    T = n_months - 1
    if isinstance(reverse, bool):
        def c(t):
            return coef[:, T - t] if reverse else coef[:, t]
    else:
        def c(t):
            return xp.where(reverse, coef[:, T - t], coef[:, t])
    p = c(T)
    dp = xp.zeros_like(x)
    for t in range(T - 1, -1, -1):
        dp = dp * x + p
        p = p * x + c(t)
    return p, dp


def _descending_blocks(xp, coef, reverse, max_block: int = 64):
    """The coefficients of each row in descending degree, front-padded with zeros to whole
    blocks of at most max_block months and laid out [blocks, n, months per block] (one
    copy per solve).

    Descending degree is coef reversed for p(x) = sum c_t x^t, and coef itself for the
    reversed polynomial sum c_t x^(T-t). Leading zero coefficients leave Horner's
    values exactly unchanged (0 x + 0 = 0 for finite x)."""
    n, n_months = coef.shape
    n_blocks, width = month_blocks(n_months, max_block)
    if isinstance(reverse, bool):
        desc = coef if reverse else xp.flip(coef, axis=1)
    else:
        desc = xp.where(reverse[:, None], coef, xp.flip(coef, axis=1))
    pad = n_blocks * width - n_months
    if pad:
        desc = xp.concat([xp.zeros((n, pad), dtype=coef.dtype), desc], axis=1)
    return xp.permute_dims(xp.reshape(desc, (n, n_blocks, width)), (1, 0, 2))


def _horner_blocks(xp, blocks, x):
    """Horner's rule from blocks [B, n, W] (_descending_blocks): W months unrolled per
    block (one fused loop over the rows under XLA), the blocks scanned in order."""
    width = blocks.shape[2]

    def body(carry, blk, _):
        p, dp = carry
        for j in range(width):
            dp = dp * x + p
            p = p * x + blk[:, j]
        return p, dp

    zero = xp.zeros_like(x)
    return scan_blocks(xp, body, (zero, zero), blocks)


def _horner_counting_blocks(xp, blocks, x, far, n_months: int):
    """_horner_blocks' p(x), p'(x), and in the same pass over the months the
    certificate's sums beyond `far` (_beyond_far, which defines them; _counts computes
    them in whole arrays): the coefficients read in descending degree (the blocks'
    order), weighted by far^degree (a running product from far^(T + padding)), summed
    twice; the sign changes of the second sums, and the smallest of them that is not
    an exact leading zero. Float carries only. Returns (p, p', sign changes, (S1 at the
    end, smallest))."""
    n_blocks, _, width = blocks.shape
    T = n_months - 1
    pad = n_blocks * width - n_months
    inv = 1.0 / xp.where(far > 0, far, 1.0)

    def body(carry, blk, _):
        p, dp, w, s1, s2, changes, smallest = carry
        for j in range(width):
            c = blk[:, j]
            dp = dp * x + p
            p = p * x + c
            s1 = s1 + c * w
            w = w * inv
            prev, s2 = s2, s2 + s1
            changes = changes + xp.where(s2 * prev < 0, 1.0, 0.0)
            lead = (s1 == 0) & (s2 == 0)
            smallest = xp.minimum(smallest, xp.where(lead, math.inf, xp.abs(s2)))
        return p, dp, w, s1, s2, changes, smallest

    zero = xp.zeros_like(far)
    w0 = xp.pow(far, float(T + pad))
    p, dp, _, s1, s2, changes, smallest = scan_blocks(
        xp, body, (zero, zero, w0, zero, zero, zero, zero + math.inf), blocks)
    changes = changes + xp.where(s1 * s2 < 0, 1.0, 0.0)
    return p, dp, changes, (s1, smallest)


def _poly_and_slope_powers(xp, coef, x, reverse=False):
    """_poly_and_slope in whole-array operations: the powers x^0 .. x^T of each row by a
    cumulative product [n, T+1], their exponents' derivatives k x^(k-1), read in reverse
    order where a row reads its coefficients in reverse, and two row sums. The same sums
    as Horner's rule to round-off (x in [0, 1]: no power overflows)."""
    n, n_months = coef.shape
    dtype = coef.dtype
    ones = xp.ones((n, 1), dtype=dtype)
    powers = xp.cumulative_prod(xp.broadcast_to(x[:, None], (n, n_months - 1)), axis=1)
    P = xp.concat([ones, powers], axis=1)  # x^k, k = 0 .. T
    k = xp.arange(1, n_months, dtype=dtype)
    D = xp.concat([xp.zeros((n, 1), dtype=dtype), k * P[:, :-1]], axis=1)  # d/dx x^k = k x^(k-1)
    if isinstance(reverse, bool):
        if reverse:
            P, D = xp.flip(P, axis=1), xp.flip(D, axis=1)
    else:
        r = reverse[:, None]
        P = xp.where(r, xp.flip(P, axis=1), P)
        D = xp.where(r, xp.flip(D, axis=1), D)
    return xp.sum(coef * P, axis=1), xp.sum(coef * D, axis=1)


def _refine(xp, coef, a, fa, b, fb, n_iter: int, reverse=False):
    """Safeguarded Newton inside [a, b] where fa and fb differ in sign (or fb == 0): the
    root where it is sure; its negative where the certificate does not show it to be
    the only root beyond the far end a (_beyond_far); NaN where Newton had not
    converged (its error not below _CONVERGED). The rows not sure are searched
    carefully.

    Starts from false position; a Newton step that leaves the bracket bisects instead.
    Scale-free: fa, fb and the polynomial may carry any positive factor per row. The
    steps are unrolled (under XLA one fused pass over each row's months per step, the
    row kept in registers), the certificate rides on the first one, and both verdicts
    on the root itself: a second output of the same steps made XLA duplicate them.
    """
    n_months = coef.shape[1]
    far = a
    den = fb - fa
    safe_den = xp.where(den != 0, den, 1.0)
    x = xp.where(den != 0, a - fa * (b - a) / safe_den, 0.5 * (a + b))
    x = xp.clip(x, a, b)
    # fb == 0 means the root sits exactly on the near node.
    exact = fb == 0
    x = xp.where(exact, b, x)
    sa = xp.sign(fa)
    if is_jax_namespace(xp) and not _powers_form(xp):
        blocks = _descending_blocks(xp, coef, reverse)

        def poly(x):
            return _horner_blocks(xp, blocks, x)

        def first(x):
            p, dp, changes, sums = _horner_counting_blocks(xp, blocks, x, far, n_months)
            return p, dp, _beyond_far(xp, coef, far, changes, sums)
    else:
        poly = _evaluator(xp, coef, reverse)
        sure = _beyond_far(xp, coef, far, *_counts(xp, coef, far, reverse))  # whole arrays

        def first(x):
            return (*poly(x), sure)
    prev = before = x
    for k in range(n_iter):
        before, prev = prev, x
        if k == 0:
            f, df, sure = first(x)
        else:
            f, df = poly(x)
        same = xp.sign(f) == sa
        a = xp.where(same, x, a)  # a < b always: a starts at the far (smaller) node
        b = xp.where(same, b, x)
        safe_df = xp.where(df != 0, df, 1.0)
        step = xp.where(df != 0, x - f / safe_df, 0.5 * (a + b))
        inside = (step >= a) & (step <= b)
        x_new = xp.where(inside, step, 0.5 * (a + b))
        x = xp.where((f == 0) | exact, x, x_new)
    # converged: the last step negligible, or quadratic convergence under way (the step
    # at most a quarter of the one before) with the error after it, estimated as
    # step^3 / (step before)^2, negligible
    last, first = xp.abs(x - prev), xp.abs(prev - before)
    settled = (last <= _CONVERGED * x) | ((last <= 0.25 * first) & (last**3 <= 0.1 * _CONVERGED * x * first**2))
    return xp.where(settled, xp.where(sure, x, -x), math.nan)


# The certificate's round-off: its first and second sums add (T + 1) terms each, on
# weights rounded in T products: within 4 (T+1) u sum |c| and 4 (T+1)^2 u sum |c|.
_SUM_ROUNDOFF = 4.0


def _counts(xp, coef, far, reverse):
    """The certificate's sums (_beyond_far) of each row's side polynomial (reverse: the
    negative side's, per row or for all): (sign changes, (S1 at the end, the smallest
    |S2| that is not a leading zero)). Under JAX one pass over the months
    (_horner_counting_blocks, its p and p' at 0 unused: memory that does not grow with
    the horizon, where cumulative sums of every row would), whole-array operations
    elsewhere."""
    if is_jax_namespace(xp) and not _powers_form(xp):
        blocks = _descending_blocks(xp, coef, reverse)
        _, _, changes, sums = _horner_counting_blocks(xp, blocks, xp.zeros_like(far), far, coef.shape[1])
        return changes, sums
    n_months = coef.shape[1]
    # the coefficients in descending degree (the positive side's reversed), each weighted
    # by far^degree; few temporaries of the rows' size at a time (CuPy holds them all)
    if isinstance(reverse, bool):
        reading = coef if reverse else xp.flip(coef, axis=1)
    else:
        reading = xp.where(reverse[:, None], coef, xp.flip(coef, axis=1))
    degree = xp.arange(n_months - 1, -1, -1, dtype=coef.dtype, device=_device(coef))
    s1 = xp.cumulative_sum(reading * xp.pow(far[:, None], degree[None, :]), axis=1)
    s2 = xp.cumulative_sum(s1, axis=1)
    lead = (s1 == 0) & (s2 == 0)
    smallest = xp.min(xp.where(lead, math.inf, xp.abs(s2)), axis=1)
    up = s2 > 0  # past the leading zeros no S2 is 0 unless in doubt
    changes = xp.sum(xp.astype((up[:, 1:] != up[:, :-1]) & ~lead[:, :-1], coef.dtype), axis=1)
    changes = changes + xp.astype(s1[:, -1] * s2[:, -1] < 0, coef.dtype)
    return changes, (s1[:, -1], smallest)


def _beyond_far(xp, coef, far, changes, sums):
    """Whether the side's polynomial P(y) = sum_k c_k y^k has at most one root with
    y > far, for sure: the certificate of the fast path (module docstring).

    Those roots are the roots w in (0, 1) of Q(w) = w^T P(far / w), whose coefficients
    in ascending powers of w are c_k far^k read from k = T down to 0; dividing by
    (1 - w)^2 keeps them and gives the power series whose coefficients are the
    twice-cumulated sums S2 of those (continued past T by S2_T + (m - T) S1_T). By
    Descartes' rule of signs (Laguerre's extension to power series) the roots are at
    most the sign changes of that sequence. y > far is the side's rates from 0 out to
    the bracket's far end, and every rate of the other side. In doubt (not sure): a sum
    within its round-off bound, except the exact zeros that leading zero coefficients
    leave (skipped, as the rule skips zero coefficients), and a far end whose weights
    underflow, far^T < 1e-290.
    """
    n_months = coef.shape[1]
    T = n_months - 1
    s1, smallest = sums
    tol1 = _SUM_ROUNDOFF * n_months * _EPS * xp.sum(xp.abs(coef), axis=1)
    usable = (far > 0) & (T * xp.log(xp.where(far > 0, far, 1.0)) > -660.0)
    doubt = (smallest <= n_months * tol1) | (xp.abs(s1) <= tol1)
    return usable & ~doubt & (changes <= 1)


def _device(x):
    try:
        from array_api_compat import device

        return device(x)
    except Exception:  # pragma: no cover - backends without device support
        return None


def ladder_values(flows):
    """The polynomials of each row of `flows` [..., T+1] on the ladder's nodes, [..., 2G].

    Linear in the flows (one matrix product): a stress grid whose flows are affine in
    some axes takes these values at the axes' end points and interpolates them
    (kernels/factored.py), and solve_irr_from_ladder finishes the solve.
    """
    xp = array_namespace(flows)
    n_months = flows.shape[-1]
    F = xp.where(xp.isfinite(flows), flows, 0.0)
    return xp.matmul(F, _ladder(xp, n_months, flows.dtype, _device(flows)))


def solve_irr(flows, n_iter: int | None = None):
    """Monthly IRR of each row of `flows` [..., T+1] (t = 0..T), shape [...].

    The root closest to 0 among real i > -1; NaN where there is none or any flow in
    the row is not finite.
    """
    return solve_irr_from_ladder(flows, ladder_values(flows), n_iter)


def solve_irr_from_ladder(flows, vals, n_iter: int | None = None):
    """solve_irr given the rows' ladder values `vals` [..., 2G] (ladder_values(flows),
    or their exact interpolation between flows that differ linearly).

    Each side's first sign change gives a cell; where one side's cell lies wholly
    closer to i = 0 than the other's, only that side's root can be the answer, and only
    it is refined: one Newton pass per row, the negative side's rows reading their
    coefficients in reverse, the certificate in its first step. Rows not sure (the
    certificate declined, Newton unconverged, the two sides' cells overlapping in |i|,
    no bracket although the flows change sign) are searched carefully (module
    docstring), in a branch taken only when some row of the batch needs it.
    """
    xp = array_namespace(flows)
    dtype = flows.dtype
    dev = _device(flows)
    batch = flows.shape[:-1]
    n_months = flows.shape[-1]
    F = xp.reshape(flows, (-1, n_months))
    # one pass over the flows: the largest |flow| is NaN or inf where a flow is not
    # finite (such rows are masked at the end) and 0 where every flow is 0
    size = xp.max(xp.abs(F), axis=1)
    finite = xp.isfinite(size)
    nonzero = size > 0

    if n_iter is None:
        n_iter = newton_steps(n_months)
    G = len(POS_NODES)
    vals = xp.reshape(vals, (-1, 2 * G))
    pos_nodes = xp.asarray(POS_NODES, dtype=dtype, device=dev)
    neg_nodes = xp.asarray(NEG_NODES, dtype=dtype, device=dev)
    zero_at_0 = vals[:, 0] == 0
    hp, kp, ap, fap, bp, fbp = _first_sign_change(xp, vals[:, :G], pos_nodes)
    hn, kn, an, fan, bn, fbn = _first_sign_change(xp, vals[:, G:], neg_nodes)
    ok = finite & (hp | hn | zero_at_0) & nonzero

    # |i| at each cell's two ends, on each side
    lp = xp.asarray(_POS_LEVELS + (math.inf,), dtype=dtype, device=dev)
    ln = xp.asarray(_NEG_LEVELS + (1.0,), dtype=dtype, device=dev)
    lp_near, lp_far = xp.take(lp, kp), xp.take(lp, kp + 1)
    ln_near, ln_far = xp.take(ln, kn), xp.take(ln, kn + 1)
    pos_first = hp & (~hn | (lp_far <= ln_near))  # ties in |i| go to the positive root
    neg_first = hn & (~hp | (ln_far < lp_near))
    both = hp & hn & ~pos_first & ~neg_first

    use_neg = neg_first

    # The conditional is also a fusion boundary under XLA (staging.py): fused with the
    # bracket search and its gathers, the Newton steps ran much slower on the CPU
    # (benchmarks/README.md, "Measurements behind design choices in the code").
    def refine(F, a, fa, b, fb, use_neg):
        return _refine(xp, F, a, fa, b, fb, n_iter, reverse=use_neg)

    x = when_any(xp, ok, refine, lambda F, a, *_: a, F, xp.where(use_neg, an, ap),
                  xp.where(use_neg, fan, fap), xp.where(use_neg, bn, bp),
                  xp.where(use_neg, fbn, fbp), use_neg)
    sure = x > 0
    x = xp.abs(x)
    rate = xp.where(use_neg, x - 1.0, 1.0 / xp.maximum(x, _TINY) - 1.0)
    rate = xp.where(zero_at_0, 0.0, rate)
    rate = xp.where(ok, rate, math.nan)
    # the careful search: rows whose cells overlap in |i| (roots on both sides) and rows
    # whose answer is not sure (_refine's negative or NaN), on both sides out to their
    # converged root and two fine cells past it (_fine_step), or else to the far end of
    # their cells; rows without a bracket whose flows change sign, on each side whose
    # certificate does not clear it (_unbracketed)
    hard = finite & nonzero & ok & ~zero_at_0 & (both | ~sure)
    far = xp.where(both, xp.maximum(lp_far, ln_far), xp.where(use_neg, ln_far, lp_far))
    far = xp.where(xp.isnan(rate), far, xp.abs(rate))
    margin = 2.0 * _fine_step(n_months)
    reach_pos = xp.log1p(far) + margin
    reach_neg = xp.where(far < 1.0, -xp.log1p(-xp.where(far < 1.0, far, 0.0)), math.inf) + margin
    hard, reach_pos, reach_neg = when_any(
        xp, finite & nonzero & ~ok, _unbracketed, lambda F, ok, *rest: rest,
        F, ok, hard, reach_pos, reach_neg)
    rate = when_any(xp, hard, _look_closer, lambda rate, *_: rate, rate, F, hard, reach_pos, reach_neg)
    return xp.reshape(rate, batch)


def _unbracketed(F, ok, hard, reach_pos, reach_neg):
    """(hard, reach_pos, reach_neg) with the rows without a bracket whose flows change
    sign: each side searched to its end unless the certificate with far = 1 on the
    other side's polynomial (its roots beyond 1 are this side's) finds at most one root
    there, hence none (no sign change between the side's ends: an even count)."""
    xp = array_namespace(F)
    size = xp.max(xp.abs(F), axis=1)
    mine = ~ok & (xp.max(F, axis=1) > 0) & (xp.min(F, axis=1) < 0) & xp.isfinite(size)
    one = xp.ones_like(size)
    pos_clear = _beyond_far(xp, F, one, *_counts(xp, F, one, True))  # the negative side's polynomial
    neg_clear = _beyond_far(xp, F, one, *_counts(xp, F, one, False))
    hard = hard | (mine & ~(pos_clear & neg_clear))
    reach_pos = xp.where(mine, xp.where(pos_clear, 0.0, math.inf), reach_pos)
    reach_neg = xp.where(mine, xp.where(neg_clear, 0.0, math.inf), reach_neg)
    return hard, reach_pos, reach_neg


def _look_closer(rate, F, hard, reach_pos, reach_neg):
    """rate with the careful search's answer (_careful_rates) in the rows `hard`, each
    side searched out to its reach (in u = |ln(1+i)|): the hard rows are gathered
    _CAREFUL_ROWS at a time, nearest reach first (a group searches as far as its
    farthest row), in rounds that are skipped once none are left, so that the search's
    memory does not grow with the batch."""
    xp = array_namespace(F)
    n = F.shape[0]
    K = min(n, _CAREFUL_ROWS)
    reach = xp.stack([reach_pos, reach_neg], axis=1)
    order = xp.argsort(xp.where(hard, xp.max(reach, axis=1), math.inf), stable=True)
    rank = xp.argsort(order)  # each row's place in that order: the hard rows come first
    slots = xp.arange(K, dtype=rank.dtype, device=_device(F))

    def one_round(rate, _, r):
        first = r * K
        mine = hard & (rank >= first) & (rank < first + K)

        def solve(rate):
            rows = xp.take(order, xp.minimum(first + slots, n - 1))
            found = _careful_rates(xp, xp.take(F, rows, axis=0), xp.take(reach, rows, axis=0),
                                   xp.take(rate, rows))
            return xp.where(mine, xp.take(found, xp.clip(rank - first, 0, K - 1)), rate)

        return when_any(xp, mine, solve, lambda rate: rate, rate)

    return _repeat(xp, -(-n // K), one_round, rate)


def _repeat(xp, n_steps: int, body, carry):
    """body(carry, None, k) for k = 0 .. n_steps-1, as a loop that compiles once under a
    JAX trace (staging.scan_blocks over n_steps empty steps)."""
    steps = xp.zeros((n_steps, 0))
    return scan_blocks(xp, body, carry, steps)


def _fine_step(n_months: int) -> float:
    """The careful search's dense cells' width in u = |ln(1+i)|."""
    return min(_FINE_KAPPA / max(n_months - 1, 1), _FINE_H_MAX)


def _fine_nodes(n_months: int) -> tuple[float, ...]:
    """The careful search's nodes y = exp(-u) on either side, from y = 1 (i = 0) down to
    y = 0 (module docstring, _FINE_*)."""
    h = _fine_step(n_months)
    u = [k * h for k in range(int(math.ceil(_FINE_DENSE / h)) + 1)]
    while u[-1] < _FINE_FAR:
        u.append(u[-1] * _FINE_GROWTH)
    return tuple(math.exp(-v) for v in u) + (0.0,)


def _tangency_tolerance(n_months: int) -> float:
    """|p| at an extremum within this multiple of sum |c_t| y^t (at the cell's midpoint)
    is zero to float64's precision: a tangency (a double root).

    Horner's rule, and the Taylor coefficients computed alike, err by at most about
    2 T u sum |c_t| y^t (Higham, Accuracy and Stability of Numerical Algorithms, 5.1);
    across a dense cell sum |c_t| y^t grows by at most exp(KAPPA / 2) = 1.3 from its
    midpoint, and the flows' own rounding to float64 adds u sum |c_t| y^t: about
    2.6 (T+1) u. Eight (T+1) u leaves three times that, and is below 1e-12 of the
    scale for horizons up to 1,000 months.
    """
    return 8.0 * n_months * _EPS


def _careful_rates(xp, F, reach, cand):
    """The rule's rate for each row of F [K, T+1] by the careful search (module
    docstring): the first root on each side from i = 0, out to that side's reach
    [K, 2] (in u = |ln(1+i)|: positive side, negative side; 0 for none), the closer
    one winning. cand [K]: the fast path's converged root, or NaN; a cell that holds
    it and is certified to hold one root (_hermite) needs no closer look. The fine
    ladder is evaluated _FINE_BLOCK cells at a time, a block only where some row still
    searches that far."""
    K, n_months = F.shape
    dtype = F.dtype
    dev = _device(F)
    nodes = _fine_nodes(n_months)
    N = len(nodes) - 1  # cells
    n_blocks = -(-N // _FINE_BLOCK)
    padded = nodes + (0.0,) * (n_blocks * _FINE_BLOCK + 1 - len(nodes))
    y_all = xp.asarray(padded, dtype=dtype, device=dev)
    u_all = xp.asarray(tuple(-math.log(v) if v > 0 else math.inf for v in padded), dtype=dtype, device=dev)
    t = xp.arange(n_months, dtype=dtype, device=dev)
    fall4 = t * (t - 1.0) * (t - 2.0) * (t - 3.0)  # the fourth derivative of y^t is fall4 y^(t-4)
    coef = xp.concat([F, xp.flip(F, axis=1)], axis=0)  # positive side rows, then negative
    reach = xp.concat([reach[:, 0], reach[:, 1]], axis=0)
    cand = xp.concat([xp.where(cand > 0, 1.0 / (1.0 + cand), math.nan),
                      xp.where(cand < 0, 1.0 + cand, math.nan)], axis=0)
    tol = _tangency_tolerance(n_months)
    steps = xp.arange(_FINE_BLOCK + 1, dtype=xp.int64, device=dev)

    def one_block(found, _, k):
        start = k * _FINE_BLOCK
        near_u = xp.take(u_all, start)
        open_ = xp.isnan(found) & (reach > near_u)

        def scan(found):
            idx = start + steps
            y = xp.take(y_all, idx)  # the block's nodes, near end first
            B = _FINE_BLOCK + 1
            powers = xp.pow(y[None, :], t[:, None])
            slopes = xp.where(t[:, None] > 0, t[:, None] * xp.pow(y[None, :], xp.maximum(t - 1, 0.0)[:, None]), 0.0)
            fourth = xp.where(t[:, None] > 3, fall4[:, None] * xp.pow(y[None, :], xp.maximum(t - 4, 0.0)[:, None]), 0.0)
            signed = xp.matmul(coef, xp.concat([powers, slopes], axis=1))
            absolute = xp.matmul(xp.abs(coef), xp.concat([powers, fourth], axis=1))
            p, dp = signed[:, :B], signed[:, B:]
            # sum |c_t| y^t (the round-off's scale), and a bound on the fourth derivative
            # below each node
            scale, m4 = absolute[:, :B], absolute[:, B:]
            b, a = y[None, :-1], y[None, 1:]
            change = xp.sign(p[:, :-1]) != xp.sign(p[:, 1:])
            clear, one = _hermite(xp, p[:, :-1], p[:, 1:], dp[:, :-1], dp[:, 1:], b - a, a, m4[:, :-1],
                                  tol * scale[:, :-1], n_months)
            inside = (idx[None, :-1] < N) & (xp.take(u_all, idx[:-1])[None, :] < reach[:, None])
            # a cell needs a look unless the interpolation's bound clears it (no sign change
            # of the value, and no root of the cubic within the bound)
            event = (change | ~clear) & inside & open_[:, None]
            count = xp.cumulative_sum(xp.astype(event, xp.int32), axis=1)  # events up to each cell
            first = xp.argmax(xp.astype(event, xp.int8), axis=1)
            holds = (cand[:, None] >= a) & (cand[:, None] <= b) & change & one
            quick = (count[:, -1] > 0) & xp.take_along_axis(holds, first[:, None], axis=1)[:, 0]
            found = xp.where(quick, cand, found)
            return _repeat(xp, -(-_FINE_BLOCK // _EVENTS),
                           lambda found, _, j: _examine(xp, coef, found, y, p, count, j * _EVENTS, tol), found)

        return when_any(xp, open_, scan, lambda found: found, found)

    found = xp.full((2 * K,), math.nan, dtype=dtype, device=dev)
    found = _repeat(xp, n_blocks, one_block, found)
    yp, yn = found[:K], found[K:]
    ip = 1.0 / xp.maximum(yp, _TINY) - 1.0
    i_n = yn - 1.0
    take_neg = ~xp.isnan(i_n) & (xp.isnan(ip) | (xp.abs(i_n) < xp.abs(ip)))
    rate = xp.where(take_neg, i_n, ip)
    return xp.where(xp.sum(F, axis=1) == 0, 0.0, rate)


def _hermite(xp, pb, pa, db, da, h, a, m4, noise, n_months: int):
    """Two certificates for fine cells [a, a + h] from the values pa, pb and slopes da,
    db at their ends, by the cubic that interpolates them (Hermite's): (no root, one
    root). p differs from the cubic by at most m4 h^4 / 384 and its slope by at most
    m4 h^3 / 24 (m4 bounds the fourth derivative on the cell; the cubic's own error
    bounds are h^4 / 384 and sqrt(3) h^3 / 216 times it), plus the values' round-off
    `noise` (the slopes': T / a times it). No root: the cubic keeps one sign with that
    margin at its ends and interior extrema. One root: its slope does, at the ends and
    at the slope's interior extremum (with a sign change of the values, exactly one)."""
    # the cubic in s = (y - a) / h: c0 + c1 s + c2 s^2 + c3 s^3
    c0, c1 = pa, h * da
    c2 = 3.0 * (pb - pa) - h * (2.0 * da + db)
    c3 = 2.0 * (pa - pb) + h * (da + db)
    sig = xp.sign(pa)
    low = xp.minimum(sig * pa, sig * pb)
    disc = c2 * c2 - 3.0 * c1 * c3
    root = xp.sqrt(xp.maximum(disc, 0.0))
    safe3 = xp.where(c3 != 0, c3, 1.0)
    safe2 = xp.where(c2 != 0, c2, 1.0)
    # the cubic's interior extrema: a quadratic's roots, or a linear one's where c3 = 0
    for s, real in (((-c2 + root) / (3.0 * safe3), (c3 != 0) & (disc >= 0)),
                    ((-c2 - root) / (3.0 * safe3), (c3 != 0) & (disc >= 0)),
                    (-c1 / (2.0 * safe2), (c3 == 0) & (c2 != 0))):
        value = ((c3 * s + c2) * s + c1) * s + c0
        low = xp.where(real & (s > 0) & (s < 1), xp.minimum(low, sig * value), low)
    clear = (sig != 0) & (low > m4 * h**4 / 384.0 + noise)
    # the cubic's slope in y, (c1 + 2 c2 s + 3 c3 s^2) / h, at s = 0, 1 and its vertex
    sv = -c2 / (3.0 * safe3)
    d0, d1 = c1, c1 + 2.0 * c2 + 3.0 * c3
    dv = c1 + (2.0 * c2 + 3.0 * c3 * sv) * sv
    sd = xp.sign(d0)
    low_d = xp.minimum(sd * d0, sd * d1)
    low_d = xp.where((c3 != 0) & (sv > 0) & (sv < 1), xp.minimum(low_d, sd * dv), low_d)
    slope_noise = xp.where(a > 0, noise * (n_months - 1) / xp.where(a > 0, a, 1.0), math.inf)
    width = xp.where(h > 0, h, 1.0)  # an empty cell past the last node: not certified
    one = (sd != 0) & (h > 0) & (low_d > width * (m4 * h**3 / 24.0 + slope_noise))
    return clear, one


def _examine(xp, coef, found, y, p, count, first: int, tol: float):
    """found, with the first root in the flagged cells ranked first+1 .. first+_EVENTS
    of each row still without one (count: the rows' running count of flagged cells
    over the block's cells, whose nodes are y and values p)."""
    total = count[:, -1]
    open_ = xp.isnan(found) & (total > first)

    def look(found):
        cells = xp.stack([xp.argmax(xp.astype(count >= first + 1 + e, xp.int8), axis=1)
                          for e in range(_EVENTS)], axis=1)  # [2K, E]
        ranks = first + 1 + xp.arange(_EVENTS, dtype=count.dtype, device=_device(count))
        real = total[:, None] >= ranks[None, :]
        b = xp.take(y, cells)
        a = xp.take(y, cells + 1)
        mid, half = 0.5 * (a + b), 0.5 * (b - a)
        taylor, scale = _taylor_at(xp, coef, mid)
        root = mid + _first_local_root(xp, taylor, half, tol * scale)
        # a root exactly on the far node, which the expansion may miss by round-off
        on_node = (xp.take_along_axis(p, cells + 1, axis=1) == 0) & (a > 0)
        root = xp.where(xp.isnan(root) & on_node, a, root)
        root = xp.where(real & (root > 0), root, math.nan)
        e = xp.argmax(xp.astype(~xp.isnan(root), xp.int8), axis=1)  # the first with a root
        got = xp.take_along_axis(root, e[:, None], axis=1)[:, 0]
        return xp.where(open_, got, found)

    return when_any(xp, open_, look, lambda found: found, found)


def _taylor_at(xp, coef, m):
    """The Taylor coefficients a_k = p^(k)(m) / k!, k = 0 .. _TAYLOR_DEGREE, of each row's
    polynomial p(y) = sum_t c_t y^t at the points m [n, E], as a list of [n, E] arrays,
    and sum_t |c_t| m^t [n, E] (the round-off's scale): from a table of powers m^t
    [n, E, T+1], a_k = sum_t c_t C(t, k) m^(t-k) summed as (c_t m^t) against C(t, k) (one
    matrix product), then divided by m^k (m > 0 on every cell). Whole-array operations:
    a small program under XLA for a path rarely taken."""
    d = _TAYLOR_DEGREE
    n, n_months = coef.shape
    dtype = coef.dtype
    dev = _device(coef)
    t = xp.arange(n_months, dtype=dtype, device=dev)
    weighted = coef[:, None, :] * xp.pow(m[:, :, None], t[None, None, :])  # [n, E, T+1]
    binom = xp.asarray([[float(math.comb(tt, k)) for k in range(d + 1)] for tt in range(n_months)],
                       dtype=dtype, device=dev)
    a = xp.matmul(weighted, binom)  # [n, E, d+1]
    scale = xp.sum(xp.abs(weighted), axis=2)
    return [a[:, :, k] / xp.pow(m, float(k)) for k in range(d + 1)], scale


def _local(xp, a, v, order: int):
    """The expansion sum_k a_k v^k at v and its first `order` derivatives (Horner)."""
    out = [xp.zeros_like(v) for _ in range(order + 1)]
    for k in range(len(a) - 1, -1, -1):
        for j in range(order, 0, -1):
            out[j] = out[j] * v + out[j - 1]
        out[0] = out[0] * v + a[k][..., None]
    for j in range(2, order + 1):
        out[j] = out[j] * math.factorial(j)
    return out


def _newton_in(xp, fn, lo, hi, f_lo, n_steps: int):
    """A zero of fn (x -> (f, f')) in the bracket [lo, hi] (either order) where f has the
    sign of f_lo at lo and the other sign (or 0) at hi: Newton's steps, each replaced by
    bisection where it would leave the bracket or shrinks it less than bisection would
    (Numerical Recipes' rtsafe). Starts from the bracket's middle."""
    s = xp.sign(f_lo)
    settled = 1e-14 * xp.abs(hi - lo)  # a step this small is round-off: stay

    def body(carry, _, __):
        x, lo, hi, last = carry
        f, df = fn(x)
        same = xp.sign(f) == s
        lo = xp.where(same, x, lo)
        hi = xp.where(same, hi, x)
        step = f / xp.where(df != 0, df, 1.0)
        new = x - step
        newton = (df != 0) & (new >= xp.minimum(lo, hi)) & (new <= xp.maximum(lo, hi))
        newton = newton & ((xp.abs(2.0 * step) <= xp.abs(last)) | (xp.abs(step) <= settled))
        mid = 0.5 * (lo + hi)
        x_new = xp.where(f == 0, x, xp.where(newton, new, mid))
        return x_new, lo, hi, xp.where(newton, step, 0.5 * (hi - lo))

    x, _, _, _ = _repeat(xp, n_steps, body, (0.5 * (lo + hi), lo, hi, hi - lo))
    return x


def _first_local_root(xp, a, half, tol):
    """The first root, from the near end v = +half towards v = -half, of a cell's
    expansion sum_k a_k v^k (a: list of [n, E]; half, tol: [n, E]), as v, or NaN.

    The cell is cut into _SUBCELLS; in each, an interior extremum (the slope changing
    sign) is found by Newton on the slope, and the value there decides: of the other
    sign than at the subcell's near end, a root between (a close pair's first root);
    within tol of zero, the extremum itself (a tangency); otherwise a root only if the
    value at the far end has changed sign (after an interior maximum). Newton on the
    value then finds the root in its bracket. The first subcell with a root wins.
    """
    S = _SUBCELLS
    j = xp.arange(S + 1, dtype=half.dtype, device=_device(half))
    v = half[..., None] * (1.0 - 2.0 * j / S)  # [n, E, S+1], near end first
    L, D = _local(xp, a, v, 1)
    vn, vf = v[..., :-1], v[..., 1:]
    Ln, Lf, Dn, Df = L[..., :-1], L[..., 1:], D[..., :-1], D[..., 1:]
    sig = xp.sign(Ln)
    interior = Dn * Df < 0

    def slope(x):
        return tuple(_local(xp, a, x, 2)[1:])

    def value(x):
        return tuple(_local(xp, a, x, 1))

    vc = xp.where(interior, _newton_in(xp, slope, vf, vn, Df, _LOCAL_STEPS), vf)
    gc = sig * _local(xp, a, vc, 0)[0]
    gf = sig * Lf
    T = tol[..., None]
    before = gc < 0  # a root between the near end and the extremum
    touch = interior & ~before & (gc <= T)
    after = ~before & ~touch & (gf < 0)  # past an interior maximum
    lo = xp.where(before, vc, vf)
    hi = xp.where(before, vn, vc)
    f_lo = xp.where(before, gc, gf) * sig
    r = _newton_in(xp, value, lo, hi, f_lo, _LOCAL_STEPS)
    root = xp.where(Ln == 0, vn, xp.where(before | after, r, xp.where(touch, vc, math.nan)))
    has = ~xp.isnan(root)
    first = xp.argmax(xp.astype(has, xp.int8), axis=-1)
    return xp.take_along_axis(root, first[..., None], axis=-1)[..., 0]


def annualise(monthly):
    """(1 + i)^12 - 1, keeping NaN."""
    xp = array_namespace(monthly)
    return xp.expm1(12.0 * xp.log1p(monthly))
