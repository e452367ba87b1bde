"""stresstest: stress tests for portfolios of GPU-cluster investments.

Import is light: numpy only. JAX, CuPy and h5py load when a command needs them.
"""

__version__ = "0.1.0"
