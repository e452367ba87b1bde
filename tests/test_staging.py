"""kernels/staging.py: branches taken only when needed, and stages compiled apart."""

import numpy as np
import pytest

from stresstest.kernels.staging import stage, when_any


def test_when_any_numpy_runs_only_the_branch_taken():
    calls = []

    def fn(x):
        calls.append("fn")
        return x + 1

    def otherwise(x):
        calls.append("otherwise")
        return x

    x = np.arange(3.0)
    np.testing.assert_array_equal(when_any(np, x > 5, fn, otherwise, x), x)
    np.testing.assert_array_equal(when_any(np, x > 1, fn, otherwise, x), x + 1)
    assert calls == ["otherwise", "fn"]


def test_stage_numpy_is_the_plain_call():
    x = np.linspace(-1, 1, 7)
    np.testing.assert_array_equal(stage(np, lambda a, b: a * b + 1, x, x), x * x + 1)


def test_stage_and_when_any_under_jit_give_fn_and_compile_conditionals():
    jax = pytest.importorskip("jax")
    import stresstest.jax_adapter  # noqa: F401  (float64, as every JAX run of the engine)

    jnp = jax.numpy

    def f(x):
        y = stage(jnp, lambda a: {"s": jnp.sin(a), "c": jnp.cos(a)}, x)
        z = when_any(jnp, x > 10.0, lambda a: a * 0.0 - 1.0, lambda a: a, y["s"])
        return y["c"] + z

    x = jnp.linspace(-3.0, 3.0, 11)
    got = np.asarray(jax.jit(f)(x))
    np.testing.assert_allclose(got, np.cos(np.asarray(x)) + np.sin(np.asarray(x)), rtol=1e-15)
    # NaN in the probed element still gives fn's result (both branches are fn)
    xn = x.at[0].set(jnp.nan)
    got_n = np.asarray(jax.jit(f)(xn))
    np.testing.assert_allclose(got_n[1:], got[1:], rtol=1e-15)
    assert np.isnan(got_n[0])
    # the stage and the branch survive XLA's simplifier as conditionals (fusion boundaries)
    hlo = jax.jit(f).lower(x).compile().as_text()
    assert hlo.count("conditional(") >= 2
    # and differentiate like fn
    g = jax.grad(lambda x: jnp.sum(f(x)))(x)
    np.testing.assert_allclose(np.asarray(g), -np.sin(np.asarray(x)) + np.cos(np.asarray(x)), rtol=1e-13)


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_scan_blocks_folds_in_order_on_numpy_and_under_jit(n_blocks):
    """The fold over blocks against a plain loop: order matters (a running string of
    digits, then a non-commutative recurrence), on numpy and as a lax.scan under jit."""
    from stresstest.kernels.staging import month_blocks, scan_blocks

    blocks = np.arange(n_blocks * 2 * 4, dtype=float).reshape(n_blocks, 2, 4)

    def body(carry, blk, i):
        for j in range(blk.shape[1]):
            carry = carry * 0.5 + blk[:, j] * (i + 1)
        return carry

    want = np.zeros(2)
    for i in range(n_blocks):
        for j in range(4):
            want = want * 0.5 + blocks[i, :, j] * (i + 1)
    np.testing.assert_array_equal(scan_blocks(np, body, np.zeros(2), blocks), want)
    jax = pytest.importorskip("jax")
    import stresstest.jax_adapter  # noqa: F401

    jnp = jax.numpy
    got = jax.jit(lambda b: scan_blocks(jnp, body, jnp.zeros(2), b))(jnp.asarray(blocks))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15)
    assert month_blocks(61) == (1, 61) and month_blocks(601) == (10, 61) and month_blocks(65) == (2, 33)
