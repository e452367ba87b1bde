"""Shared test setup: the environment every test runs in and the backend fixtures.
Helpers the tests import (random portfolios and grids, reference comparisons) are in
tests/helpers.py."""

from __future__ import annotations

import os
import sys

# OpenBLAS's own threads, one per core, spin beside the other xdist worker's and XLA's:
# on 2 cores the reference's IRR (numpy_financial: the eigenvalues of a (T+1)-square
# companion matrix) took 20x longer (7 s, not 0.3 s, at 600 months). One thread each;
# set before numpy is imported (it reads the variable once, when it loads OpenBLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the command line keeps compiled programs in ~/.cache: not from the tests, whose own
# check of the cache (test_cli.py) names a folder of its own
os.environ["STRESSTEST_COMPILE_CACHE"] = "off"
# on a GPU, each xdist worker's JAX would take 75 % of the memory up front: the second
# would find too little; allocate as needed instead (no effect on the CPU)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from stresstest.backends import cupy_available, jax_importable, make_backend  # noqa: E402

# The files that take longest (CPU seconds on the 2-core machine, most first): the workers
# take files in this order, then the others as collected (pyproject.toml: --dist loadfile,
# --no-loadscope-reorder), so the long ones start early and short ones fill the end.
SLOW_FILES_FIRST = (
    "test_readme.py", "test_factoring.py", "test_montecarlo.py", "test_sensitivities.py",
    "test_v2_addressing.py", "test_v2_sensitivities.py", "test_shards.py", "test_horizon.py",
    "test_engine.py", "test_tables_figures.py", "test_model_v2_part2.py", "test_rank.py",
    "test_model_vs_reference.py", "test_model_v2.py", "test_breakeven.py", "test_optimize.py",
    "test_irr.py", "test_cli.py",
)


def pytest_collection_modifyitems(items):
    """The slow files first (SLOW_FILES_FIRST); a stable sort keeps each file's tests
    together and in order (module fixtures set up once)."""
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _backend_params(with_numpy=True):
    out = [pytest.param("numpy", id="numpy")] if with_numpy else []
    out.append(pytest.param("jax", id="jax", marks=pytest.mark.skipif(
        not jax_importable(), reason="jax is not installed")))
    out.append(pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not cupy_available(), reason="no CUDA GPU for CuPy")]))
    return out


@pytest.fixture(params=_backend_params())
def backend(request):
    return make_backend(request.param, "float64")


@pytest.fixture(params=_backend_params(with_numpy=False))
def compiled_backend(request):
    """JAX (and CuPy where a GPU is found): the backends compared with numpy."""
    return make_backend(request.param, "float64")


@pytest.fixture(scope="session")
def smoke_sensitivities(tmp_path_factory):
    """The result file of `stresstest run -s smoke --sensitivities` (the example, JAX),
    made once per worker for the tests that only read it (test_report, test_sensitivities,
    test_tables_figures): one compile of the reverse pass, not one per test."""
    if not jax_importable():
        pytest.skip("jax is not installed")
    from click.testing import CliRunner

    from stresstest.cli import main

    out = tmp_path_factory.mktemp("smoke-sensitivities") / "s.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(out), "--sensitivities", "-q"])
    assert r.exit_code == 0, r.output
    return out
