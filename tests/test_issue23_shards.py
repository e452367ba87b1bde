"""Issue 23, shards: a set must agree on what changes the numbers (dtype, configuration,
model version, gradients); merge refuses a set that does not, and a rerun recomputes a
shard file computed with other settings instead of keeping it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stresstest.backends import jax_importable
from stresstest.cli import main
from stresstest.shards import shard_name

GRID = """scenario:
  kind: grid
  axes:
    - {shock: utilization, values: [-0.3, -0.1, 0.0, 0.1]}
    - {shock: price, linspace: [0.5, 1.3, 5]}
"""
MC = "scenario:\n  kind: montecarlo\n  paths: 301\n  seed: 3\n"


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _shard(sc, i, n, out, *extra):
    return _invoke("run", "-s", sc, "--shard", f"{i}/{n}", "-o", out, "-q", *extra)


def _scenario(tmp_path, text=GRID, name="grid.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("dtypes", [("float64", "float32", "float32"), ("float32", "float64", "float64")])
def test_merge_refuses_shards_of_mixed_dtype_naming_the_files(tmp_path, dtypes):
    """Before: exit 0 and a file labelled with shard 0's dtype, the others' values cast."""
    sc = _scenario(tmp_path)
    sh = tmp_path / "sh"
    for i, dt in enumerate(dtypes):
        assert _shard(sc, i, 3, sh, "--backend", "numpy", "--dtype", dt).exit_code == 0
    out = tmp_path / "m.h5"
    r = _invoke("merge", sh, "-o", out)
    assert r.exit_code == 2, r.output
    assert not out.exists()
    assert "disagree on dtype" in r.output
    odd, main_dt = dtypes[0], dtypes[1]
    # each side's files are named, with its dtype
    assert f"dtype {odd} in {sh / shard_name(0, 3)}" in r.output
    assert f"dtype {main_dt} in {sh / shard_name(1, 3)}, {sh / shard_name(2, 3)}" in r.output
    assert f"recompute shard 0 with --dtype {main_dt}" in r.output


def test_monte_carlo_merge_refuses_mixed_dtype(tmp_path):
    """Monte Carlo shards keep float64 summaries whatever the dtype: the attribute alone
    differs, and it is checked."""
    sc = _scenario(tmp_path, MC, "mc.yaml")
    sh = tmp_path / "sh"
    assert _shard(sc, 0, 2, sh, "--backend", "numpy").exit_code == 0
    assert _shard(sc, 1, 2, sh, "--backend", "numpy", "--dtype", "float32").exit_code == 0
    out = tmp_path / "m.h5"
    r = _invoke("merge", sh, "-o", out)
    assert r.exit_code == 2 and "disagree on dtype" in r.output and not out.exists()
    assert str(sh / shard_name(0, 2)) in r.output and str(sh / shard_name(1, 2)) in r.output


def test_rerun_with_another_dtype_recomputes_the_shard(tmp_path):
    """Before: "complete already, kept" and the float64 file stayed. Now the shard is
    recomputed in float32, and the merged set equals a single float32 run bit for bit."""
    sc = _scenario(tmp_path)
    sh = tmp_path / "sh"
    assert _shard(sc, 0, 3, sh, "--backend", "numpy").exit_code == 0  # float64
    r = _shard(sc, 0, 3, sh, "--backend", "numpy", "--dtype", "float32")
    assert r.exit_code == 0 and "complete already" not in r.output, r.output
    assert "wrote" in r.output and "was computed with dtype float64 (this run: float32)" in r.output
    with h5py.File(sh / shard_name(0, 3)) as f:
        assert f.attrs["dtype"] == "float32"
    # the same settings again: kept
    r = _shard(sc, 0, 3, sh, "--backend", "numpy", "--dtype", "float32")
    assert "complete already, kept" in r.output
    for i in (1, 2):
        assert _shard(sc, i, 3, sh, "--backend", "numpy", "--dtype", "float32").exit_code == 0
    merged, single = tmp_path / "m.h5", tmp_path / "single.h5"
    assert _invoke("merge", sh, "-o", merged).exit_code == 0
    assert _invoke("run", "-s", sc, "-o", single, "--backend", "numpy", "--dtype", "float32",
                   "-q").exit_code == 0
    with h5py.File(merged) as a, h5py.File(single) as b:
        assert a.attrs["dtype"] == b.attrs["dtype"] == "float32"
        for k in ("npv", "irr", "cluster_npv"):
            assert a[k].dtype == np.float32
            assert np.array_equal(a[k][()], b[k][()], equal_nan=True), k


def test_rerun_of_another_configuration_recomputes_and_of_an_old_summary_format(tmp_path):
    sc = _scenario(tmp_path)
    sh = tmp_path / "sh"
    assert _shard(sc, 1, 2, sh, "--backend", "numpy").exit_code == 0
    other = _scenario(tmp_path, GRID.replace("1.3, 5", "1.4, 5"), "other.yaml")
    r = _shard(other, 1, 2, sh, "--backend", "numpy")
    assert "wrote" in r.output and "config_sha256" in r.output
    # a Monte Carlo shard summed by an older version (no block layout) is not kept either
    mc = _scenario(tmp_path, MC, "mc.yaml")
    msh = tmp_path / "msh"
    assert _shard(mc, 0, 2, msh, "--backend", "numpy").exit_code == 0
    with h5py.File(msh / shard_name(0, 2), "r+") as f:
        del f.attrs["summary_format"]
    assert "wrote" in _shard(mc, 0, 2, msh, "--backend", "numpy").output


@pytest.mark.skipif(not jax_importable(), reason="jax is not installed")
def test_shards_of_different_backends_merge_and_name_both(tmp_path):
    """The backend may differ (same arithmetic, round-off apart): the set merges, the file
    names both backends, and the values agree with a single numpy run to round-off."""
    sc = _scenario(tmp_path)
    sh = tmp_path / "sh"
    assert _shard(sc, 0, 2, sh, "--backend", "numpy").exit_code == 0
    assert _shard(sc, 1, 2, sh, "--backend", "jax").exit_code == 0
    merged, single = tmp_path / "m.h5", tmp_path / "single.h5"
    r = _invoke("merge", sh, "-o", merged)
    assert r.exit_code == 0, r.output
    assert _invoke("run", "-s", sc, "-o", single, "--backend", "numpy", "-q").exit_code == 0
    with h5py.File(merged) as a, h5py.File(single) as b:
        assert a.attrs["backend"] == "numpy, jax" and a.attrs["dtype"] == "float64"
        np.testing.assert_allclose(a["npv"][()], b["npv"][()], rtol=1e-12, atol=1e-6)
