"""stresstest: stress tests for portfolios of GPU-cluster investments.

Import is light: numpy only. JAX, CuPy and h5py load when a command needs them.
"""

from .version import __version__

__all__ = ["__version__", "run"]


def run(*args, **kwargs):
    """stresstest.run(portfolio, scenario, ...) -> xarray.Dataset; see stresstest.api.run."""
    from .api import run as _run

    return _run(*args, **kwargs)
