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


def namespace():
    return jnp


def jit(fn):
    """Compile a chunk function whose arguments are all arrays (shapes fixed per run)."""
    return jax.jit(fn)


SENSITIVITY_OUTPUTS = ("npv", "roi", "irr")


def sensitivity_chunk_fn(horizon: int, specs, equity_clusters, chunk: int, n_clusters: int):
    """Chunk function: every output of the model plus its sensitivities (reverse mode).

    Gradients are with respect to the parameters at each grid point (after shocks and
    clipping): grad_npv, grad_roi, grad_irr [S, C, P] for the portfolio outputs,
    grad_cluster_npv [S, C, P] for each cluster's own NPV (equal to grad_npv: a
    cluster's parameters move only its own flows), their discount-rate derivatives,
    npv_per_pct (NPV change for a +1 % relative move of each parameter) and
    slope_<output> [S, A] along each axis (through the shocks, clipping included).
    One batched reverse pass through the flows serves every output.
    """
    from .kernels.cashflows import cash_flows
    from .kernels.metrics import evaluate
    from .kernels.params import PARAM_NAMES
    from .kernels.sensitivity import (capex_gradient, flow_weights, irr_gradient, npv_m_slope,
                                      npv_rate_derivative, roi_gradient)
    from .kernels.shocks import apply_axis_values, axis_point_values

    C = n_clusters
    T1 = horizon + 1

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
        # the forward outputs from the unbroadcast parameters: month factors of
        # unshocked parameters stay [1, C, T] (computed once per chunk)
        p_hoisted, r_hoisted = apply_axis_values(base, rate, specs, point)
        out = dict(evaluate(p_hoisted, jnp.broadcast_to(r_hoisted, (chunk,)), horizon,
                            equity_clusters=equity_clusters))
        irr_m = jnp.expm1(jnp.log1p(out["irr"]) / 12.0)
        cf, flow_pull = jax.vjp(lambda p: jnp.broadcast_to(cash_flows(p, horizon)["cf"], (chunk, C, T1)), p)
        w = flow_weights(r, irr_m, T1)  # [3, S, 1, T+1]
        g = jax.vmap(lambda wk: flow_pull(jnp.broadcast_to(wk, cf.shape))[0])(w)  # name -> [3, S, C]
        g_npv = {k: v[0] for k, v in g.items()}
        g_m = {k: v[2] for k, v in g.items()}
        d_capex = capex_gradient(p)
        total_capex = jnp.sum(p["gpus"] * p["capex_per_gpu"] + p["capex_fixed"], axis=1)
        grad_roi = roi_gradient(stack({k: v[1] for k, v in g.items()}), stack(d_capex), out["roi"],
                                total_capex)
        slope_m = npv_m_slope(jnp.sum(cf, axis=1), irr_m)
        out["grad_npv"] = stack(g_npv)
        out["grad_cluster_npv"] = out["grad_npv"]
        out["grad_roi"] = grad_roi
        out["grad_irr"] = irr_gradient(stack(g_m), slope_m, out["irr"])
        out["grad_cluster_npv_discount_rate"] = npv_rate_derivative(cf, r)
        out["grad_npv_discount_rate"] = jnp.sum(out["grad_cluster_npv_discount_rate"], axis=1)
        out["npv_per_pct"] = out["grad_npv"] * stack(p) * 0.01
        irr_factor = irr_gradient(jnp.ones_like(slope_m), slope_m, out["irr"])
        g_roi = {k: grad_roi[..., i] for i, k in enumerate(PARAM_NAMES)}
        zero_r = jnp.zeros_like(r)
        for name, gp, gr, scale in (("npv", g_npv, out["grad_npv_discount_rate"], None),
                                    ("roi", g_roi, zero_r, None), ("irr", g_m, zero_r, irr_factor)):
            slopes = shock_pull((gp, gr))[0]
            sl = jnp.stack(slopes, axis=-1) if slopes else jnp.zeros((chunk, 0), dtype=r.dtype)
            out["slope_" + name] = sl if scale is None else sl * scale[:, None]
        return out

    return jax.jit(fn)
