"""Array backends: numpy, JAX (CPU or GPU) and CuPy, chosen automatically or by name.

Heavy libraries are imported here, inside functions, only when a backend is asked
for, so `import stresstest` stays fast and works without jax or cupy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

BACKENDS = ("auto", "jax", "cupy", "numpy")
DTYPES = {"float64": np.float64, "float32": np.float32}


class BackendError(RuntimeError):
    """A backend that was asked for cannot run here."""


COMPILE_CACHE_ENV = "STRESSTEST_COMPILE_CACHE"
_OFF = ("0", "off", "no", "false", "none")
_keep_compiled = False


def compile_cache_dir(environ=os.environ) -> str | None:
    """The folder where JAX keeps compiled programs between runs, or None for none.

    STRESSTEST_COMPILE_CACHE names the folder, or turns the cache off (off, 0, no,
    false, none); unset, it is $XDG_CACHE_HOME/stresstest/jax (~/.cache/stresstest/jax). A
    folder that cannot be made or written gives None: the run compiles as without it.
    """
    value = environ.get(COMPILE_CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if not value:
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        value = os.path.join(base, "stresstest", "jax")
    try:
        os.makedirs(value, exist_ok=True)
    except OSError:
        return None
    return value if os.access(value, os.W_OK | os.X_OK) else None


def keep_compiled_programs() -> None:
    """JAX backends made from now on keep their compiled programs (compile_cache_dir):
    a later run of the same shapes skips the compile, whatever the parameter values, which
    are arguments. The command line calls this; library callers choose."""
    global _keep_compiled
    _keep_compiled = True


@dataclass
class Backend:
    name: str  # numpy, jax or cupy
    device: str  # e.g. "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)"
    xp: Any  # the array namespace
    dtype: Any  # numpy dtype of the computation
    _jit: Callable[[Callable, bool], Callable] | None = None
    _memory: Callable[[], tuple[int, int] | None] | None = None

    def memory(self) -> tuple[int, int] | None:
        """(free, total) bytes of the GPU's memory this backend allocates from, or None
        (the CPU, or a device that does not say)."""
        try:
            return self._memory() if self._memory is not None else None
        except Exception:  # a driver that cannot say: the engine falls back to a fixed budget
            return None

    def asarray(self, x):
        """Host data onto the backend; floating data in the run's dtype."""
        a = np.asarray(x)
        return self.xp.asarray(a, dtype=self.dtype if a.dtype.kind == "f" else None)

    @property
    def is_jax(self) -> bool:
        """JAX's namespace (asked of array-api-compat, not of the name): the backend that
        compiles with jit, takes gradients and spreads chunks over several devices."""
        from array_api_compat import is_jax_namespace

        return is_jax_namespace(self.xp)

    def to_numpy(self, x) -> np.ndarray:
        from array_api_compat import is_cupy_namespace

        if is_cupy_namespace(self.xp):
            return x.get()
        return np.asarray(x)

    def compile(self, fn: Callable, concurrent: bool = False) -> Callable:
        """fn compiled (JAX) or as it is. concurrent: calls of it run on several threads
        at once (engine.chunk_workers), which the compiled program may be shaped for."""
        return self._jit(fn, concurrent) if self._jit is not None else fn

    @property
    def is_gpu(self) -> bool:
        return not self.device.startswith("cpu")

    def describe(self) -> str:
        return f"{self.name} on {self.device}, {np.dtype(self.dtype).name}"


def jax_gpu_devices() -> list:
    try:
        from .jax_adapter import gpu_devices

        return gpu_devices()
    except ImportError:
        return []


def cupy_available() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:
        return False


def jax_importable() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def make_backend(name: str = "auto", dtype: str = "float64") -> Backend:
    """Backend by name; "auto": JAX on a GPU, else CuPy on a GPU, else JAX on the CPU, else numpy."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    np_dtype = DTYPES[dtype]
    if name == "auto":
        if jax_importable() and jax_gpu_devices():
            name = "jax"
        elif cupy_available():
            name = "cupy"
        elif jax_importable():
            name = "jax"
        else:
            name = "numpy"
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend("numpy", "cpu", xp, np_dtype)
    if name == "jax":
        if not jax_importable():
            raise BackendError("backend jax: jax is not installed (pip install 'stresstest[cuda]' or jax)")
        from . import jax_adapter

        if _keep_compiled:
            jax_adapter.use_compile_cache(compile_cache_dir())
        return Backend("jax", jax_adapter.device_name(), jax_adapter.namespace(), np_dtype,
                       jax_adapter.jit, jax_adapter.device_memory)
    if not cupy_available():
        raise BackendError("backend cupy: CuPy is not installed or finds no usable GPU")
    import array_api_compat.cupy as xp
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return Backend("cupy", f"cuda:{dev.id} ({gpu})", xp, np_dtype, _memory=_cupy_memory)


def _cupy_memory() -> tuple[int, int]:
    """(free, total) bytes of the current GPU, counting the blocks CuPy's pool holds free."""
    import cupy

    free, total = cupy.cuda.runtime.memGetInfo()
    return int(free + cupy.get_default_memory_pool().free_bytes()), int(total)
