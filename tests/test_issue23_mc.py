"""Issue 23, Monte Carlo: the summaries are bit for bit the same whatever the chunk size,
the shard split and the order of the merges (numpy backend); the CVaR 99 % standard error
with one tail path is explained, not a bare NaN."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import h5_datasets, random_portfolio

from stresstest.backends import make_backend
from stresstest.cli import main
from stresstest.kernels.params import OUTPUTS
from stresstest.mc_config import load_montecarlo
from stresstest.mc_paths import prepare
from stresstest.mc_summary import Summary
from stresstest.outputs import STATISTICS

MOMENTS = [STATISTICS.index(s) for s in ("mean", "std", "stderr")]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_single_run_rechunked_run_and_merged_shards_are_bit_identical(tmp_path):
    """20,001 paths: a block of 16,384 and a short one; the 3 shards end inside blocks.
    Before: mean, std and stderr differed in the last bits (Chan's merges in another order)."""
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario:\n  kind: montecarlo\n  paths: 20001\n  seed: 9\n  hurdle_irr: 0.1\n"
                  "  covenant_dscr: 1.2\n"
                  "  events:\n    - {param: next_gen_month, dist: uniform, low: 12, high: 30}\n")
    files = {}
    for label, chunk in (("single", None), ("chunk333", "333")):
        files[label] = tmp_path / f"{label}.h5"
        extra = ["--chunk-size", chunk] if chunk else []
        r = _invoke("run", "-s", sc, "-o", files[label], "--backend", "numpy", "-q", *extra)
        assert r.exit_code == 0, r.output
    for i, chunk in enumerate(("700", "1024", "4096")):
        r = _invoke("run", "-s", sc, "--shard", f"{i}/3", "-o", tmp_path / "sh", "--backend", "numpy", "-q",
                    "--chunk-size", chunk)
        assert r.exit_code == 0, r.output
    files["merged"] = tmp_path / "merged.h5"
    r = _invoke("merge", tmp_path / "sh", "-o", files["merged"])
    assert r.exit_code == 0, r.output
    data = {k: h5_datasets(p) for k, p in files.items()}
    ref = data["single"]
    for label in ("chunk333", "merged"):
        other = data[label]
        assert sorted(other) == sorted(ref)
        for o in OUTPUTS:
            for name in (o, "cluster_" + o):
                a, b = ref[name][..., MOMENTS], other[name][..., MOMENTS]
                assert np.array_equal(a, b, equal_nan=True), (label, name, a - b)
        for k in ref:  # and every other number of the file
            if ref[k].dtype.kind == "f":
                assert np.array_equal(ref[k], other[k], equal_nan=True), (label, k)
    # independent: the mean is the paths' mean (to round-off), from a run that keeps them
    r = _invoke("run", "-s", sc, "-o", tmp_path / "paths.h5", "--backend", "numpy", "-q", "--save-paths")
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "paths.h5") as f:
        npv = f["paths/npv"][()]
    mean, std = ref["npv"][STATISTICS.index("mean")], ref["npv"][STATISTICS.index("std")]
    assert mean == pytest.approx(math.fsum(npv) / npv.size, rel=1e-13)
    assert std == pytest.approx(np.std(npv, ddof=1), rel=1e-11)
    assert ref["npv"][STATISTICS.index("stderr")] == pytest.approx(std / math.sqrt(npv.size), rel=1e-15)


def _tables(s: Summary):
    return ({o: s.table(o) for o in OUTPUTS}, s.risk(), s.fan_table(), s.fan_moments.mean)


def _assert_identical(a, b, label):
    (ta, ra, fa, ma), (tb, rb, fb, mb) = a, b
    for o in OUTPUTS:
        assert np.array_equal(ta[o], tb[o], equal_nan=True), (label, o)
    assert ra.keys() == rb.keys()
    for k in ra:
        assert np.array_equal(ra[k], rb[k], equal_nan=True), (label, k)
    assert np.array_equal(fa, fb, equal_nan=True) and np.array_equal(ma, mb), label


def test_summary_bit_identical_for_chunks_shards_and_merge_orders(monkeypatch):
    """Blocks of 1,000 paths (a deep tree over 8 blocks), 7,777 paths: chunk sizes and shard
    edges that divide nothing, merged left to right, right to left, and through the shard
    files' state; against numpy's sums of the same paths."""
    monkeypatch.setattr(Summary, "BLOCK", 1000, raising=False)  # (raising: the code before had none)
    rng = np.random.default_rng(23)
    pf = random_portfolio(rng, n_clusters=2, horizon=24)
    mc = load_montecarlo(Path("<t>.yaml"), {"scenario": {"kind": "montecarlo", "paths": 7777, "seed": 5,
                                                         "hurdle_irr": 0.1}}, pf)
    be = make_backend("numpy")

    def summarise(chunk, start, stop):
        s = Summary(2, 24, mc.hurdle_irr, None)
        for c in prepare(pf, mc, be, chunk).chunks(start, stop):
            s.add(c.outputs, c.start)
        return s

    ref = _tables(summarise(1000, 0, mc.paths))
    _assert_identical(ref, _tables(summarise(333, 0, mc.paths)), "chunks of 333")
    _assert_identical(ref, _tables(summarise(4096, 0, mc.paths)), "chunks of 4096")
    edges = [0, 2593, 2600, 5185, 7777]  # a shard of 7 paths inside a block, others across blocks
    chunks = (257, 1000, 999, 64)

    def shards():
        return [summarise(c, a, b) for c, a, b in zip(chunks, edges[:-1], edges[1:])]

    parts = shards()
    left = parts[0]
    for p in parts[1:]:
        left.merge(p)
    _assert_identical(ref, _tables(left), "merged left to right")
    parts = shards()
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right.merge(p)
    _assert_identical(ref, _tables(right), "merged right to left")
    parts = [Summary.from_state(p.state(), mc.hurdle_irr, None) for p in shards()]
    mixed = parts[2]
    for j in (0, 3, 1):
        mixed.merge(parts[j])
    _assert_identical(ref, _tables(mixed), "through the state, in another order")
    # independent: the moments are those of the paths themselves
    r = prepare(pf, mc, be, 7777)
    out = next(r.chunks()).outputs
    t = ref[0]["npv"]
    for c, x in enumerate(Summary.columns(out, "npv").T):
        assert t[c, STATISTICS.index("mean")] == pytest.approx(math.fsum(x) / x.size, rel=1e-13)
        assert t[c, STATISTICS.index("std")] == pytest.approx(np.std(x, ddof=1), rel=1e-11)


def test_summary_refuses_the_same_paths_twice():
    rng = np.random.default_rng(2)
    pf = random_portfolio(rng, n_clusters=1, horizon=12)
    mc = load_montecarlo(Path("<t>.yaml"), {"scenario": {"kind": "montecarlo", "paths": 50, "seed": 1}}, pf)
    out = next(prepare(pf, mc, make_backend("numpy"), 50).chunks()).outputs
    a, b = Summary(1, 12, None, None), Summary(1, 12, None, None)
    a.add(out, 0)
    b.add(out, 0)
    a.merge(b)
    with pytest.raises(ValueError, match="twice"):
        a.table("npv")


def test_cvar_99_standard_error_with_one_tail_path_is_explained(tmp_path):
    """50 paths: the 1 % tail holds ceil(0.5) = 1 path, whose spread is unknown. Before, the
    table printed a bare nan. The file keeps NaN, with the tail's path count and why."""
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario:\n  kind: montecarlo\n  paths: 50\n  seed: 4\n")
    out = tmp_path / "mc.h5"
    r = _invoke("run", "-s", sc, "-o", out, "--backend", "numpy", "--save-paths")
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "CVaR 99" in ln)
    assert "n/a (1 tail path)" in line and "nan" not in line.lower().replace("n/a", "")
    line95 = next(ln for ln in r.output.splitlines() if "CVaR 95" in ln)
    assert "n/a" not in line95  # 3 tail paths: defined
    with h5py.File(out) as f:
        npv = np.sort(f["paths/npv"][()])
        se99 = f["cvar_99_stderr"]
        assert np.isnan(se99[()]) and se99.attrs["tail_paths"] == 1
        assert "1 path" in se99.attrs["comment"] and "at least 2" in se99.attrs["comment"]
        assert f["cvar_99"].attrs["tail_paths"] == 1
        # the CVaR itself is the worst path (a tail of one path: its bin's mean, exact)
        assert f["cvar_99"][()] == pytest.approx(-npv[0], rel=1e-12)
        se95 = f["cvar_95_stderr"]
        assert se95.attrs["tail_paths"] == 3 and "comment" not in se95.attrs
        tail = npv[:3]  # the asymptotic standard error of docs/model.md, from the paths
        var = -np.quantile(npv, 0.05, method="inverted_cdf")
        want = math.sqrt((tail.var() + 0.95 * (tail.mean() + var) ** 2) / 3)
        assert se95[()] == pytest.approx(want, rel=0.05)
    r = _invoke("run", "-s", sc, "-o", tmp_path / "j.h5", "--backend", "numpy", "--json")
    import json
    risk = json.loads(r.output)["risk"]
    assert risk["cvar_99_tail_paths"] == 1 and risk["cvar_95_tail_paths"] == 3
