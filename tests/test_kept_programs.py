"""Compiled programs kept between runs (jax_adapter.compile_ahead, issue 29): a program is
read back only where everything it was made from is the same: the values its functions
capture (numbers, arrays, dataclasses such as a grid's axis specs), the arguments' shapes
and types; anything else compiles afresh. A program read back gives the same numbers bit
for bit; a file that cannot be read is replaced.

In-process, with a folder of the test's own: JAX's persistent cache stays off (conftest).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from stresstest.backends import jax_importable, make_backend

pytestmark = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")


@pytest.fixture
def folder(tmp_path):
    from stresstest.jax_adapter import keep_programs_in

    keep_programs_in(str(tmp_path))
    yield tmp_path
    keep_programs_in(None)


def _affine(scale, shift):
    """A jitted closure over a float and an array (a new function object each call)."""
    from stresstest.jax_adapter import jit

    return jit(lambda x: x * scale + shift)


def _programs(folder):
    return sorted(p.name for p in folder.glob("*.program"))


def test_a_program_is_read_back_only_for_the_same_captured_values_and_shapes(folder):
    from stresstest.jax_adapter import compile_ahead

    x = np.arange(4.0)
    shift = np.array([1.0, 2.0, 3.0, 4.0])
    first, kept = compile_ahead(_affine(2.0, shift), x)
    assert not kept and len(_programs(folder)) == 1
    again, kept = compile_ahead(_affine(2.0, shift.copy()), x)  # equal values, other objects
    assert kept
    assert np.array_equal(np.asarray(again(x)), x * 2.0 + shift)
    assert np.array_equal(np.asarray(again(x)), np.asarray(first(x)))
    for fn, arg, want in ((_affine(3.0, shift), x, x * 3.0 + shift),  # another captured float
                          (_affine(2.0, shift[::-1].copy()), x, x * 2.0 + shift[::-1]),  # array bytes
                          (_affine(2.0, shift), np.arange(4, dtype=np.float32), None)):  # argument type
        program, kept = compile_ahead(fn, arg)
        assert not kept
        if want is not None:
            assert np.array_equal(np.asarray(program(arg)), want)
    assert len(_programs(folder)) == 4


def test_a_value_the_key_cannot_capture_compiles_and_keeps_nothing(folder):
    from stresstest.jax_adapter import compile_ahead, jit

    lock = threading.Lock()  # no value the key can state
    program, kept = compile_ahead(jit(lambda x: x + (1.0 if lock else 0.0)), np.zeros(2))
    assert not kept and np.array_equal(np.asarray(program(np.zeros(2))), np.ones(2))
    assert _programs(folder) == []


def test_a_file_that_cannot_be_read_is_compiled_again_and_replaced(folder):
    from stresstest.jax_adapter import compile_ahead

    x = np.ones(3)
    compile_ahead(_affine(5.0, 0.5), x)
    (path,) = folder.glob("*.program")
    path.write_bytes(b"cut short")
    program, kept = compile_ahead(_affine(5.0, 0.5), x)
    assert not kept and np.array_equal(np.asarray(program(x)), x * 5.0 + 0.5)
    assert compile_ahead(_affine(5.0, 0.5), x)[1]


def test_grid_programs_differ_by_their_axis_specs(folder):
    """Two grids of the same shapes whose axes move the price by a factor and by a shift
    compile two programs; each gives the numpy backend's numbers, and a program read back
    the numbers it gave when compiled, bit for bit."""
    from stresstest.config import load_portfolio
    from stresstest.engine import prepare
    from stresstest.grid_config import Axis, Scenario
    from stresstest.jax_adapter import compile_ahead
    from stresstest.kernels.shocks import AxisSpec
    from stresstest.presets import list_presets

    pf = load_portfolio(list_presets()["example"])
    pf = replace(pf, clusters=pf.clusters[:1], horizon_months=12)
    values = np.array([0.9, 1.0, 1.1, 1.2])
    scale = Scenario("<t>", "grid", "t", [Axis("price", AxisSpec("price", ("on_demand_price",), "scale"),
                                                values, None, "price", None)])
    shift = replace(scale, axes=[replace(scale.axes[0], spec=AxisSpec("price", ("on_demand_price",), "shift"),
                                         values=values - 1.0)])
    jx, np_b = make_backend("jax"), make_backend("numpy")

    def outputs(sc):
        run = prepare(pf, sc, jx, factor=False)
        program, kept = compile_ahead(run._fn, *run._args, jx.xp.asarray(0))
        got = {k: np.asarray(v) for k, v in program(*run._args, jx.xp.asarray(0)).items()}
        return got, kept

    def numpy_outputs(sc):
        run = prepare(pf, sc, np_b, factor=False)
        return next(run.chunks()).outputs

    a, kept_a = outputs(scale)
    b, kept_b = outputs(shift)
    assert not kept_a and not kept_b and len(_programs(folder)) == 2
    for got, sc in ((a, scale), (b, shift)):
        want = numpy_outputs(sc)
        assert np.allclose(got["npv"], want["npv"], rtol=1e-12, atol=1e-6)
    assert not np.allclose(a["npv"], b["npv"])  # the shift of 0.1 moves more than a factor of 1.1
    again, kept = outputs(scale)
    assert kept
    for k in a:
        assert np.array_equal(again[k], a[k], equal_nan=True), k
