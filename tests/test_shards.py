"""Shards: coverage, shard files, merge checks, resumption, sbatch scripts (no Slurm needed)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import h5_datasets, memoised
from hypothesis import given, settings
from hypothesis import strategies as st

from stresstest.cli import main
from stresstest.shards import shard_name, shard_range
from stresstest.submit import SubmitSpec, scripts

GRID = """scenario:
  kind: grid
  axes:
    - {shock: utilization, values: [-0.3, -0.1, 0.0, 0.1]}
    - {shock: price, linspace: [0.5, 1.3, 5]}
    - {shock: energy, values: [1.0, 2.0]}
"""


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**12), st.data())
def test_shards_are_disjoint_and_cover_the_grid(total, data):
    n = data.draw(st.integers(1, min(total, 5000)))
    edge = 0
    for i in range(n):
        a, b = shard_range(total, i, n)
        assert a == edge and b >= a  # contiguous, in order, no overlap
        edge = b
    assert edge == total
    sizes = [shard_range(total, i, n)[1] - shard_range(total, i, n)[0] for i in range(n)]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def _files(tmp_path):
    sc = tmp_path / "grid.yaml"
    sc.write_text(GRID)
    return sc


def _shard(sc, i, n, out, *extra):
    return CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", f"{i}/{n}", "-o", str(out),
                                     "--backend", "numpy", "-q", *extra])


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), k
        else:
            assert np.array_equal(x, y), k


@pytest.mark.parametrize("n", [1, 3, 7, 40])
def test_merged_shards_equal_a_single_run_bit_for_bit(tmp_path, n):
    sc = _files(tmp_path)
    single = tmp_path / "single.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(single), "--backend", "numpy", "-q",
                                  "--chunk-size", "7"])
    assert r.exit_code == 0, r.output
    for i in range(n):
        assert _shard(sc, i, n, tmp_path / "sh", "--chunk-size", "3").exit_code == 0
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "sh"), "-o", str(tmp_path / "merged.h5")])
    assert r.exit_code == 0, r.output
    _same(h5_datasets(tmp_path / "merged.h5"), h5_datasets(single))


def test_merge_names_missing_and_corrupt_shards_with_the_rerun_command(tmp_path):
    sc = _files(tmp_path)
    sh = tmp_path / "sh"
    for i in range(5):
        _shard(sc, i, 5, sh)
    (sh / shard_name(1, 5)).unlink()
    with h5py.File(sh / shard_name(3, 5), "r+") as f:  # flip data behind the checksum
        f["data/npv"][0] = f["data/npv"][0] + 1.0
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(main, ["merge", str(sh), "-o", str(out)])
    assert r.exit_code == 2
    assert "shard 1 of 5 is missing" in r.output
    assert "shard 3 of 5 is corrupt (checksum mismatch)" in r.output
    assert "--shards 5" in r.output and "--only 1,3" in r.output
    assert not out.exists()
    for i in (1, 3):
        assert _shard(sc, i, 5, sh).exit_code == 0
    assert CliRunner().invoke(main, ["merge", str(sh), "-o", str(out)]).exit_code == 0


def test_merge_refuses_shards_of_another_configuration(tmp_path):
    sc = _files(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(GRID.replace("2.0]", "2.5]"))
    sh = tmp_path / "sh"
    for i in range(3):
        _shard(sc if i != 2 else other, i, 3, sh)
    r = CliRunner().invoke(main, ["merge", str(sh), "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 2 and "different configuration" in r.output and "--only 2" in r.output


def test_rerunning_a_complete_shard_skips_it_and_a_partial_is_recomputed(tmp_path):
    sc = _files(tmp_path)
    sh = tmp_path / "sh"
    r = _shard(sc, 0, 2, sh)
    assert "wrote" in r.output
    r = _shard(sc, 0, 2, sh)
    assert r.exit_code == 0 and "complete already, kept" in r.output
    # a killed task leaves only its temporary file: detected, removed, recomputed
    stale = sh / f".{shard_name(1, 2)}.12345.partial"
    stale.write_bytes(b"half a file")
    r = _shard(sc, 1, 2, sh)
    assert "wrote" in r.output and not stale.exists()
    # a truncated file at the shard's name is recomputed too
    p = sh / shard_name(0, 2)
    p.write_bytes(p.read_bytes()[:500])
    r = _shard(sc, 0, 2, sh)
    assert "wrote" in r.output
    assert CliRunner().invoke(main, ["merge", str(sh), "-o", str(tmp_path / "m.h5")]).exit_code == 0


def test_bad_shard_arguments(tmp_path):
    sc = _files(tmp_path)
    for arg, want in (("3/2", "I must be from 0 to 1"), ("0/0", "N must be from 1"),
                      ("0/41", "N must be from 1 to the grid size (40)"), ("x", "must be I/N")):
        r = _shard(sc, 0, 1, tmp_path / "sh") if False else CliRunner().invoke(
            main, ["run", "-s", str(sc), "--shard", arg, "-o", str(tmp_path / "sh"), "-q"])
        assert r.exit_code == 2 and want in r.output, (arg, r.output)


def test_dry_run_scripts_carry_the_directives(tmp_path):
    sc = _files(tmp_path)
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "12", "--output-dir", str(tmp_path / "o"),
                                  "-o", str(tmp_path / "final.h5"), "--partition", "gpu", "--time", "02:00:00",
                                  "--mem", "16G", "--gpus-per-task", "1", "--cpus-per-task", "4",
                                  "--account", "proj7", "--array-limit", "3", "--dry-run"])
    assert r.exit_code == 0, r.output
    out = r.output
    for line in ("#SBATCH --array=0-11%3", "#SBATCH --partition=gpu", "#SBATCH --time=02:00:00",
                 "#SBATCH --mem=16G", "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --account=proj7", "#SBATCH --job-name=stresstest-merge",
                 f"#SBATCH --output={(tmp_path / 'o').resolve()}/logs/shard-%A_%a.out",
                 '"$(( 0 + SLURM_ARRAY_TASK_ID ))/12"', "merge", str((tmp_path / "final.h5").resolve())):
        assert line in out, line
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_arrays_split_at_max_array_size():
    spec = SubmitSpec("p.yaml", "s.yaml", 2500, "/tmp/x", "/tmp/x.h5")
    arrays, merge = scripts(spec, list(range(2500)), max_array=1001)
    assert [a for a, _ in arrays] == ["0-1000", "0-1000", "0-497"]
    assert '"$(( 1001 + SLURM_ARRAY_TASK_ID ))/2500"' in arrays[1][1]
    assert '"$(( 2002 + SLURM_ARRAY_TASK_ID ))/2500"' in arrays[2][1]
    arrays, _ = scripts(spec, [3, 17, 18, 19, 2400], max_array=1001)
    assert [a for a, _ in arrays] == ["0,14-16", "0"]
    assert "$(( 3 + SLURM_ARRAY_TASK_ID ))" in arrays[0][1]


def test_submit_only_and_limits_are_validated(tmp_path):
    sc = _files(tmp_path)
    for extra, want in ((["--only", "7"], "outside 0..4"), (["--only", "a"], "must list shard indices")):
        r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "5", "--dry-run", *extra])
        assert r.exit_code == 2 and want in r.output
    r = CliRunner().invoke(main, ["submit", "-s", str(sc), "--shards", "41", "--dry-run"])
    assert r.exit_code == 2 and "at most the grid size" in r.output


def test_shard_files_are_named_and_written_atomically(tmp_path):
    sc = _files(tmp_path)
    _shard(sc, 2, 3, tmp_path / "sh")
    names = sorted(p.name for p in (tmp_path / "sh").iterdir())
    assert names == [shard_name(2, 3)]
    with h5py.File(tmp_path / "sh" / shard_name(2, 3)) as f:
        a = f.attrs
        assert (a["start"], a["stop"], a["total"]) == (26, 40, 40)
        assert a["model_version"] == 1 and len(a["config_sha256"]) == 64 and len(a["data_sha256"]) == 64
        assert f["data/cluster_npv"].shape[0] == 14
    assert Path(tmp_path / "sh").is_dir()


def test_monte_carlo_shards_merge_to_the_single_run(tmp_path):
    """Monte Carlo shards hold their paths' summaries; merged, they give the single run's
    numbers bit for bit (sums in blocks fixed by path index), for 1 and 4 shards."""
    import xarray as xr

    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario:\n  kind: montecarlo\n  paths: 3000\n  seed: 9\n  hurdle_irr: 0.1\n"
                  "  events:\n    - {param: next_gen_month, dist: uniform, low: 12, high: 30}\n")
    single = tmp_path / "single.h5"
    assert CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(single), "--backend", "numpy",
                                     "-q"]).exit_code == 0
    for n in (1, 4):
        for i in range(n):
            r = _shard(sc, i, n, tmp_path / f"sh{n}", "--chunk-size", "700")
            assert r.exit_code == 0, r.output
        merged = tmp_path / f"m{n}.h5"
        r = CliRunner().invoke(main, ["merge", str(tmp_path / f"sh{n}"), "-o", str(merged)])
        assert r.exit_code == 0, r.output
        with xr.open_dataset(single, engine="h5netcdf") as a, xr.open_dataset(merged, engine="h5netcdf") as b:
            assert sorted(a.data_vars) == sorted(b.data_vars)
            for k in a.data_vars:
                assert np.array_equal(b[k].values, a[k].values, equal_nan=True), k
            assert b.attrs["paths"] == 3000 and b.attrs["kind"] == "montecarlo"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", "0/2", "-o", str(tmp_path / "x"),
                                  "--sensitivities", "-q"])
    assert r.exit_code == 2 and "whole set's tail" in r.output


def test_a_task_that_sees_several_devices_uses_all_of_them(tmp_path):
    """Three CPU devices stand in for three GPUs (XLA's forced host device count): the
    shard's chunks are spread over all three, and the data equal a one-device run's."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    sc = _files(tmp_path)
    code = (
        "import sys; from stresstest.cli import main; "
        f"sys.argv = ['stresstest', 'run', '-s', {str(sc)!r}, '--shard', '1/2', '-o', {str(tmp_path / 'md')!r}, "
        "'--backend', 'jax', '--chunk-size', '3', '-q']; main()"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = _shard(sc, 1, 2, tmp_path / "one", "--chunk-size", "3")
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", "1/2", "-o", str(tmp_path / "onejax"),
                                  "--backend", "jax", "--chunk-size", "3", "-q"])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "md" / shard_name(1, 2)) as f, \
            h5py.File(tmp_path / "onejax" / shard_name(1, 2)) as g:
        assert f.attrs["devices"] == 3 and g.attrs["devices"] == 1
        assert f.attrs["data_sha256"] == g.attrs["data_sha256"]  # bit for bit
        assert json.loads(f.attrs["origin"])["scenario"] == str(sc.resolve())


def test_merged_sensitivities_say_what_their_nans_mean(tmp_path, monkeypatch):
    """A merged --sensitivities set marks its expected NaNs as a single run does: every
    dataset's `nonfinite_means`, npv_per_pct's "the parameter is never" among them (the
    example's client_loss_month is never), written by the one writer both use. The three
    runs take chunks of one size and share one compiled program (helpers.memoised)."""
    pytest.importorskip("jax")
    from stresstest import jax_adapter

    monkeypatch.setattr(jax_adapter, "sensitivity_chunk_fn", memoised(jax_adapter.sensitivity_chunk_fn))
    sc = _files(tmp_path)
    single = tmp_path / "single.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(single), "--sensitivities", "-q",
                                  "--chunk-size", "20"])
    assert r.exit_code == 0, r.output
    for i in range(2):
        r = CliRunner().invoke(main, ["run", "-s", str(sc), "--shard", f"{i}/2", "-o", str(tmp_path / "sh"),
                                      "--sensitivities", "-q", "--chunk-size", "20"])
        assert r.exit_code == 0, r.output
    merged = tmp_path / "merged.h5"
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "sh"), "-o", str(merged)])
    assert r.exit_code == 0, r.output

    def meanings(path):
        with h5py.File(path, "r") as f:
            return {k: f[k].attrs["nonfinite_means"] for k in f if "nonfinite_means" in f[k].attrs}

    want = meanings(single)
    assert "never" in want["npv_per_pct"] and "irr" in want and "cluster_payback_months" in want
    assert meanings(merged) == want
