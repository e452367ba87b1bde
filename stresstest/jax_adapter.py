"""The one place where JAX transforms live.

The kernels are plain array functions; this module turns on 64-bit floats, picks
the device and jit-compiles the chunk function (once per chunk shape: the engine
pads the last chunk so a run compiles exactly once).
"""

from __future__ import annotations

import jax

# float64 is the project's default; float32 runs still pass float32 arrays in.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402


def gpu_devices() -> list:
    try:
        return [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    except RuntimeError:
        return []


def device_name() -> str:
    gpus = gpu_devices()
    if gpus:
        d = gpus[0]
        return f"cuda:{d.id} ({getattr(d, 'device_kind', 'gpu')})"
    return "cpu"


def namespace(dtype: str):
    return jnp


def jit(fn):
    """Compile a chunk function whose arguments are all arrays (shapes fixed per run)."""
    return jax.jit(fn)


SENSITIVITY_OUTPUTS = ("npv", "roi", "irr")


def sensitivity_chunk_fn(horizon: int, specs, equity_clusters, chunk: int, n_clusters: int):
    """Chunk function: every output of the model plus its sensitivities (reverse mode).

    Gradients are with respect to the parameters at each grid point (after shocks and
    clipping): grad_npv, grad_roi, grad_irr [S, C, P] for the portfolio outputs,
    grad_cluster_npv [S, C, P] for each cluster's own NPV, their discount-rate
    derivatives, npv_per_pct (NPV change for a +1 % relative move of each parameter)
    and slope_<output> [S, A] along each axis (through the shocks, clipping included).
    One reverse pass per output, sharing one forward pass.
    """
    from .kernels.metrics import evaluate
    from .kernels.params import PARAM_NAMES
    from .kernels.sensitivity import core, irr_gradient, npv_m_slope
    from .kernels.shocks import apply_axis_values, axis_point_values

    C = n_clusters

    def stack(g):
        return jnp.stack([g[k] for k in PARAM_NAMES], axis=-1)

    def fn(base, rate, values, start):
        flat = start + jnp.arange(chunk, dtype=jnp.int64)
        point = axis_point_values(values, flat)

        def shock(point):
            p, r = apply_axis_values(base, rate, specs, point)
            p = {k: jnp.broadcast_to(x, (chunk, C)) for k, x in p.items()}
            return p, jnp.broadcast_to(r, (chunk,))

        (p, r), shock_pull = jax.vjp(shock, point)
        out = dict(evaluate(p, r, horizon, equity_clusters=equity_clusters))
        irr_m = jnp.expm1(jnp.log1p(out["irr"]) / 12.0)
        r_c = jnp.broadcast_to(r[:, None], (chunk, C))
        prim, pull = jax.vjp(lambda p, r, r_c: core(p, r, r_c, horizon, irr_m), p, r, r_c)

        def grad_of(k):
            cot = [jnp.zeros_like(x) for x in prim]
            cot[k] = jnp.ones_like(prim[k])
            return pull(tuple(cot))

        g_npv, g_npv_r, _ = grad_of(0)
        g_roi, g_roi_r, _ = grad_of(1)
        g_cnpv, _, g_cnpv_rc = grad_of(2)
        g_m, g_m_r, _ = grad_of(3)
        slope_m = npv_m_slope(prim[4], irr_m)
        out["grad_npv"] = stack(g_npv)
        out["grad_roi"] = stack(g_roi)
        out["grad_irr"] = irr_gradient(stack(g_m), slope_m, out["irr"])
        out["grad_cluster_npv"] = stack(g_cnpv)
        out["grad_npv_discount_rate"] = g_npv_r
        out["grad_cluster_npv_discount_rate"] = g_cnpv_rc
        out["npv_per_pct"] = out["grad_npv"] * stack(p) * 0.01
        irr_factor = irr_gradient(jnp.ones_like(slope_m), slope_m, out["irr"])
        for name, g, g_r, scale in (("npv", g_npv, g_npv_r, None), ("roi", g_roi, g_roi_r, None),
                                    ("irr", g_m, g_m_r, irr_factor)):
            slopes = shock_pull((g, g_r))[0]
            s = jnp.stack(slopes, axis=-1) if slopes else jnp.zeros((chunk, 0), dtype=r.dtype)
            out["slope_" + name] = s if scale is None else s * scale[:, None]
        return out

    return jax.jit(fn)
