"""Control flow for the kernels that compiles well: branches taken only when needed,
and stages that XLA compiles apart.

Both are control flow, not transforms: under a JAX trace they become lax.cond (its
branches are separate computations), elsewhere (numpy, CuPy, JAX run eagerly) plain
Python. JAX is imported only when the arrays are JAX's.

Why stages: XLA fuses elementwise work into its consumers across a whole chunk
function. On the CPU some of those fusions ran far slower than the same work compiled
apart (the IRR's Newton steps fused with the bracket search's gathers: 2x; the
interpolation of a factored grid fused into the finish: 1.3x), measured in
benchmarks/README.md. A conditional's branches are fusion boundaries, and its
operands are materialised once.
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
