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
