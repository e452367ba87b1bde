"""Control flow for the kernels that compiles well: branches taken only when needed,
and stages that XLA compiles apart.

Both are control flow, not transforms: under a JAX trace they become lax.cond (its
branches are separate computations), elsewhere (numpy, CuPy, JAX run eagerly) plain
Python. JAX is imported only when the arrays are JAX's.

Why stages: XLA fuses elementwise work into its consumers across a whole chunk
function. On the CPU some of those fusions ran slower than the same work compiled
apart (the IRR's Newton steps fused with the bracket search's gathers; the
interpolation of a factored grid fused into the finish): benchmarks/README.md,
"Measurements behind design choices in the code". A conditional's branches are fusion
boundaries, and its operands are materialised once.
"""

from __future__ import annotations

from array_api_compat import is_jax_namespace


def _traced(x) -> bool:
    try:
        import jax
    except ImportError:  # pragma: no cover - jax missing: nothing is traced
        return False
    return isinstance(x, jax.core.Tracer)


def when_any(xp, pred, fn, otherwise, *operands):
    """fn(*operands) if any(pred) else otherwise(*operands), computing only the branch
    taken (both must return the same shapes)."""
    if is_jax_namespace(xp) and _traced(pred):
        import jax

        return jax.lax.cond(xp.any(pred), fn, otherwise, *operands)
    return fn(*operands) if bool(xp.any(pred)) else otherwise(*operands)


def stage(xp, fn, *operands):
    """fn(*operands), compiled as a stage of its own under a JAX trace.

    The conditional's predicate is a comparison of one float element of the first
    operand with itself, which XLA cannot fold (NaN != NaN); both branches are fn, so
    the result is fn's whichever way it goes. Only where JAX's default backend is the
    CPU: the stages were measured there, and on a GPU a conditional may read its predicate
    back to the host.
    """
    if not is_jax_namespace(xp):
        return fn(*operands)
    import jax

    if jax.default_backend() != "cpu":
        return fn(*operands)

    leaves = [x for x in jax.tree_util.tree_leaves(operands) if _traced(x)]
    floats = [x for x in leaves if xp.isdtype(x.dtype, "real floating")]
    if not floats:
        return fn(*operands)
    probe = xp.reshape(floats[0], (-1,))[0]
    return jax.lax.cond(probe == probe, fn, fn, *operands)


def scan_blocks(xp, body, carry, blocks):
    """Fold body(carry, block, index) over the leading axis of `blocks`, returning the
    last carry: jax.lax.scan where the arrays are JAX's, a Python loop elsewhere.

    Why: a recurrence over months written as a Python loop is unrolled by a JAX trace,
    and XLA's compile time and memory grow much faster than the horizon (at horizons of
    a few hundred months a chunk compiled for minutes or ran out of memory;
    benchmarks/README.md, "Measurements behind design choices in the code").
    Callers unroll a fixed block of months inside `body` (fusable, and cheap to compile)
    and scan over the blocks, so the program's size no longer depends on the horizon.
    `index` is the block's position (a traced integer under JAX).
    """
    if is_jax_namespace(xp):
        import jax

        n = blocks.shape[0]
        if n == 1:  # one block: no loop at all (the program of an unrolled recurrence)
            return body(carry, blocks[0], 0)
        idx = xp.arange(n, dtype=xp.int32)

        def step(c, xs):
            blk, i = xs
            return body(c, blk, i), None

        return jax.lax.scan(step, carry, (blocks, idx))[0]
    for i in range(blocks.shape[0]):
        carry = body(carry, blocks[i], i)
    return carry


def month_blocks(n_months: int, max_block: int = 64) -> tuple[int, int]:
    """(number of blocks, months per block) covering n_months with blocks of at most
    max_block months, as even as possible (the last block is padded)."""
    n_blocks = -(-n_months // max_block)
    return n_blocks, -(-n_months // n_blocks)
