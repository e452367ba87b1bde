"""Vectorised internal rate of return with fixed shapes and a fixed iteration count.

Rule (MODEL.md, numpy_financial 1.0): of the real monthly rates i > -1 that zero
sum_t F_t (1+i)^-t, return the one closest to 0; NaN where there is none or a flow
is not finite.

Method. The rates are split at i = 0 and each half is mapped onto [0, 1]:
  positive side  x = 1/(1+i) in (0, 1]:  p(x) = sum_t F_t x^t
  negative side  z = 1 + i   in (0, 1]:  q(z) = sum_t F_t z^(T-t)  (= z^T p(1/z))
Both are polynomials evaluated on [0, 1] only, where powers never overflow. Both
are evaluated on a fixed ladder of nodes with one matrix product (cheap at BLAS or
tensor-core speed); on each side the first cell, walking away from i = 0, whose
ends differ in sign brackets the root closest to 0 on that side. Where one side's
cell lies wholly closer to i = 0 than the other's, only its root can win, and only it
is refined, by safeguarded Newton steps (a step that leaves the bracket is replaced by
bisection) from a false-position start; where the two cells overlap in |i|, both are
refined and the closer root wins (ties in |i| to the positive root).

The ladder values are linear in the flows: ladder_values computes them, and a grid
whose flows are affine in some axes interpolates them (kernels/factored.py) before
solve_irr_from_ladder finishes.

A root of even multiplicity (a touch without a sign change), or two roots inside
one cell, is not seen: the same roots are near-degenerate for an eigenvalue solver
too. docs/model.md states this.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, is_cupy_namespace, is_jax_namespace

from .staging import month_blocks, scan_blocks, when_any

# Monthly rate levels |i| of the ladder, from 0 outwards: dense where project
# returns live (a few per cent a month) so that two roots rarely share a cell,
# sparse far out; the same levels on both sides up to 60 % a month.
def _levels(*runs):
    out = []
    for start, stop, step in runs:
        k = 0
        while start + k * step <= stop + 1e-12:
            out.append(round(start + k * step, 10))
            k += 1
    return tuple(sorted(set(out)))


_COMMON = ((0.0, 0.03, 0.0025), (0.035, 0.1, 0.005), (0.11, 0.3, 0.01), (0.33, 0.6, 0.03))
_POS_LEVELS = _levels(*_COMMON) + (0.7, 0.85, 1.0, 1.3, 1.7, 2.5, 4.0, 8.0, 20.0, 100.0)
_NEG_LEVELS = _levels(*_COMMON) + (0.68, 0.76, 0.84, 0.9, 0.94, 0.97, 0.985, 0.995, 0.999, 0.9999)
# After the last level: x = 0 (i = +inf) on the positive side, z = 0 (i = -1) on the negative.

POS_NODES = tuple(1.0 / (1.0 + lv) for lv in _POS_LEVELS) + (0.0,)
NEG_NODES = tuple(1.0 - lv for lv in _NEG_LEVELS) + (0.0,)

def newton_steps(n_months: int) -> int:
    """Safeguarded Newton steps for a horizon (static).

    From the false-position start in a cell of width h = 2.5e-3 the error is about
    h^2 T / 8, then squares (times ~T/2) each step: 3 steps reach 1e-13 at T = 60,
    5 at T = 600. Wide cells far from 0 need a couple more; the tests check 1e-10
    against numpy_financial.
    """
    return 5 if n_months <= 121 else 6 if n_months <= 241 else 8
_TINY = 1e-300


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


def _descending_blocks(xp, coef, reverse):
    """The coefficients of each row in descending degree, front-padded with zeros to whole
    blocks of months and laid out [blocks, n, months per block] (one copy per solve).

    Descending degree is coef reversed for p(x) = sum c_t x^t, and coef itself for the
    reversed polynomial sum c_t x^(T-t). Leading zero coefficients leave Horner's
    values exactly unchanged (0 x + 0 = 0 for finite x)."""
    n, n_months = coef.shape
    n_blocks, width = month_blocks(n_months)
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
    """Safeguarded Newton inside [a, b] where fa and fb differ in sign (or fb == 0).

    Starts from false position; a Newton step that leaves the bracket bisects instead.
    Scale-free: fa, fb and the polynomial may carry any positive factor per row.
    """
    den = fb - fa
    safe_den = xp.where(den != 0, den, 1.0)
    x = xp.where(den != 0, a - fa * (b - a) / safe_den, 0.5 * (a + b))
    x = xp.clip(x, a, b)
    # fb == 0 means the root sits exactly on the near node.
    exact = fb == 0
    x = xp.where(exact, b, x)
    sa = xp.sign(fa)
    poly = _evaluator(xp, coef, reverse)
    for _ in range(n_iter):
        f, df = poly(x)
        same = xp.sign(f) == sa
        a = xp.where(same, x, a)  # a < b always: a starts at the far (smaller) node
        b = xp.where(same, b, x)
        safe_df = xp.where(df != 0, df, 1.0)
        step = xp.where(df != 0, x - f / safe_df, 0.5 * (a + b))
        inside = (step >= a) & (step <= b)
        x_new = xp.where(inside, step, 0.5 * (a + b))
        x = xp.where((f == 0) | exact, x, x_new)
    return x


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
    coefficients in reverse. Rows whose two cells overlap in |i| (rare: none on the
    default grid) also refine the other side, in a second pass taken only when some
    row of the batch needs it.
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
    rate = xp.where(use_neg, x - 1.0, 1.0 / xp.maximum(x, _TINY) - 1.0)

    def other_side(rate, F, an, fan, bn, fbn):
        i_neg = _refine(xp, F, an, fan, bn, fbn, n_iter, reverse=True) - 1.0
        return xp.where(both & (xp.abs(i_neg) < xp.abs(rate)), i_neg, rate)

    rate = when_any(xp, both, other_side, lambda rate, *_: rate, rate, F, an, fan, bn, fbn)
    rate = xp.where(zero_at_0, 0.0, rate)
    return xp.reshape(xp.where(ok, rate, math.nan), batch)


def annualise(monthly):
    """(1 + i)^12 - 1, keeping NaN."""
    xp = array_namespace(monthly)
    return xp.expm1(12.0 * xp.log1p(monthly))
