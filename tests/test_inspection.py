"""`inspect` finds a result file's kind in one table, inspection.INSPECTORS: every kind a
scenario can have is in it, and a kind it does not know is named in a clear error."""

from __future__ import annotations

import shutil

import h5py
import pytest
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.inspection import INSPECTORS, NOT_DESCRIBED
from stresstest.loaders import LOADERS
from stresstest.report import JSON_BODIES, PRINTERS
from stresstest.runner import RUNS


def test_every_kind_that_can_be_run_can_be_inspected():
    kinds = set(LOADERS) | set(RUNS) | set(PRINTERS) | set(JSON_BODIES)
    assert kinds <= set(INSPECTORS), kinds - set(INSPECTORS)
    assert "breakeven" in INSPECTORS  # written by breakeven --over, not by a scenario
    assert not set(NOT_DESCRIBED) & set(INSPECTORS)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspect") / "g.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(path), "--backend", "numpy", "-q"])
    assert r.exit_code == 0, r.output
    return path


def _with_kind(grid, tmp_path, kind: str):
    path = tmp_path / f"{kind}.h5"
    shutil.copy(grid, path)
    with h5py.File(path, "a") as f:
        f.attrs["kind"] = kind
    return path


def test_unknown_kind_is_named_in_a_clear_error(grid, tmp_path):
    path = _with_kind(grid, tmp_path, "tornado")
    for args in (["inspect", str(path)], ["inspect", "--json", str(path)]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, r.output
        assert (f"error: {path}: a result of kind 'tornado', which inspect does not know (it describes "
                f"{', '.join(INSPECTORS)}); perhaps written by a newer stresstest") in r.output
        assert "Traceback" not in r.output


def test_shard_is_refused_with_what_to_do(grid, tmp_path):
    path = _with_kind(grid, tmp_path, "shard")
    r = CliRunner().invoke(main, ["inspect", str(path)])
    assert r.exit_code == 2
    assert f"error: {path}: a shard file; merge the set first (stresstest merge)" in r.output
