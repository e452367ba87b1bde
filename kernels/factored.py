"""Stress grids whose flows are affine in some axes: end points, then interpolation.

Every quantity of metrics.linear_parts (the flows, their IRR ladder values, NPVs,
totals, capex, debt) is linear in the cash flows, and the cash flows are affine in
each parameter of params.AFFINE_PARAMS. A grid axis that moves only such parameters
(without clipping) therefore leaves them multi-affine in that axis's value: they are
evaluated with the axis at its two end values only, and every other value on the axis
is the exact linear interpolation (1 - w) X_lo + w X_hi, w = (v - lo) / (hi - lo).
With k such axes a slab of the grid needs 2^k corner evaluations per point of its
other axes instead of one full evaluation per grid point; only the non-linear finish
(IRR bracket and Newton steps, payback, DSCR minimum) runs per grid point.

Layout: the corners of `lead` slabs are rows [lead * R, ...] in C order over the
slab's axes, where an interpolated axis has size 2 (its two end values); `expand`
returns rows [lead * P, ...] in the grid's own C order (P the slab's point count), so
no transposition is needed. At w = 0 and w = 1 the end value is returned exactly.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .cashflows import cash_flows
from .metrics import NOT_LINEAR, finish, linear_parts
from .shocks import axis_point_values
from .staging import stage


def _layout(x, lead: int, shape: tuple[int, ...], axes: tuple):
    """x's corner rows as [lead, *reduced shape, *rest], and the slabs' point count."""
    xp = array_namespace(x)
    rest = tuple(x.shape[1:])
    reduced = list(shape)
    for d, _, _ in axes:
        reduced[d] = 2
    rows, points = lead, 1
    for r, s in zip(reduced, shape):
        rows, points = rows * r, points * s
    return xp.reshape(xp.broadcast_to(x, (rows, *rest)), (lead, *reduced, *rest)), points


def interpolate(x, lead: int, shape: tuple[int, ...], axes: tuple) -> object:
    """x [lead * prod(reduced shape), *rest] -> [lead * prod(shape), *rest].

    shape: the slab's axis sizes; axes: (position in shape, w0, w1) for each
    interpolated axis, whose reduced size is 2, with weights [n] shared by the slabs or
    [lead, n] per slab (slab_weights). Other axes keep their size.
    """
    xp = array_namespace(x)
    rest = tuple(x.shape[1:])
    y, n = _layout(x, lead, shape, axes)
    for d, w0, w1 in axes:
        ax = 1 + d
        lo = y[(slice(None),) * ax + (slice(0, 1),)]
        hi = y[(slice(None),) * ax + (slice(1, 2),)]
        wshape = [1] * y.ndim
        wshape[ax] = shape[d]
        if w0.ndim == 2:  # a block of the axis per slab
            wshape[0] = lead
        a = xp.reshape(w0, tuple(wshape))
        b = xp.reshape(w1, tuple(wshape))
        mixed = a * lo + b * hi
        # the end values exactly, even where the other end is not finite
        y = xp.where(b == 0, lo, xp.where(a == 0, hi, mixed))
    return xp.reshape(y, (lead * n, *rest))


def _constant(x, lead: int, shape: tuple[int, ...], axes: tuple):
    """An entry that no interpolated axis moves: its first corner, broadcast."""
    xp = array_namespace(x)
    if x.shape[0] == 1:
        return x
    rest = tuple(x.shape[1:])
    y, n = _layout(x, lead, shape, axes)
    for d, _, _ in axes:
        y = y[(slice(None),) * (1 + d) + (slice(0, 1),)]
    return xp.reshape(xp.broadcast_to(y, (lead, *shape, *rest)), (lead * n, *rest))


def expand(lin: dict, lead: int, shape: tuple[int, ...], axes: tuple) -> dict:
    """metrics.linear_parts of the corners -> the same for every grid point of the slabs."""
    return {k: (_constant if k in NOT_LINEAR else interpolate)(v, lead, shape, axes)
            for k, v in lin.items()}


def interpolated_axes(affine: tuple[int, ...], weights: tuple) -> tuple:
    """The `axes` argument of interpolate: (position in the slab, w0, w1) per axis."""
    return tuple((d, w0, w1) for d, (w0, w1) in zip(affine, weights))


def slab_weights(axes: tuple, start, slab: int, lead: int, blocks: int) -> tuple:
    """interpolate's `axes` for `lead` slabs from flat index `start`: where the slab's
    first axis is cut into `blocks` blocks (factoring.Factoring.blocks), its weights
    over the whole axis become each slab's block of them, [lead, n]."""
    if blocks == 1:
        return axes
    xp = array_namespace(start)
    (d, w0, w1), rest = axes[0], axes[1:]
    n = w0.shape[0] // blocks
    block = (start // slab + xp.arange(lead, dtype=xp.int64)) % blocks
    at = xp.reshape(block[:, None] * n + xp.arange(n, dtype=xp.int64)[None, :], (-1,))
    return ((d, xp.reshape(xp.take(w0, at), (lead, n)), xp.reshape(xp.take(w1, at), (lead, n))),
            *rest)


def corner_points(values, k: int, corner_values, start, slab: int, lead: int, blocks: int = 1) -> tuple:
    """Each axis's value in the corner rows of `lead` slabs, the first at flat index `start`.

    values: every axis's values (the outer ones, values[:k], are taken at the slabs'
    outer indices); corner_values: the slab axes' values over one slab's corner rows
    (C order, an interpolated axis at its two end values), each [R]. blocks > 1: the
    first slab axis is cut into that many slabs (the same corners for each).
    """
    xp = array_namespace(start)
    R = corner_values[0].shape[0]
    outer = (start // slab + xp.arange(lead, dtype=xp.int64)) // blocks
    outer_vals = axis_point_values(values[:k], outer) if k else ()
    point = tuple(xp.reshape(xp.broadcast_to(v[:, None], (lead, R)), (-1,)) for v in outer_vals)
    return point + tuple(xp.reshape(xp.broadcast_to(v[None, :], (lead, R)), (-1,)) for v in corner_values)


def slab_corners(values, corner_values, weights, start, lead: int, plan) -> tuple:
    """(corner_points, interpolate's axes) for `lead` slabs of a factoring plan from flat
    index `start` (plan: factoring.Factoring; its k, slab, affine and blocks are used)."""
    point = corner_points(values, plan.k, corner_values, start, plan.slab, lead, plan.blocks)
    axes = slab_weights(interpolated_axes(plan.affine, weights), start, plan.slab, lead, plan.blocks)
    return point, axes


def evaluate_corners(p: dict, discount_rate, horizon: int, eq: tuple[int, ...], lead: int,
                     shape: tuple[int, ...], axes: tuple, debt: tuple[int, ...] | None = None) -> dict:
    """Every output at every point of `lead` slabs from their corner rows' parameters
    (metrics.evaluate for a factored grid; debt: its debt_clusters)."""
    C = p["gpus"].shape[1]
    lin = linear_parts(cash_flows(p, horizon), discount_rate, eq, debt)
    xp = array_namespace(lin["series"])
    positions = tuple(d for d, _, _ in axes)

    def points(lin, weights):
        return expand(lin, lead, shape, interpolated_axes(positions, weights))

    # the interpolation as a stage of its own (staging.py): fused into the finish it
    # ran slower on the CPU (benchmarks/README.md, "Measurements behind design choices
    # in the code")
    return finish(stage(xp, points, lin, tuple((w0, w1) for _, w0, w1 in axes)), C, eq, debt_clusters=debt)
