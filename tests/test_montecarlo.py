"""Monte Carlo runs: against the deterministic model, the plain reference, exact in-memory
summaries and finite differences with common random numbers; invariance to chunking,
shards and backend; the file and the command line."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import reference_model as ref
from helpers import random_portfolio

from stresstest.backends import jax_importable, make_backend
from stresstest.engine import evaluate_base
from stresstest.kernels.params import OUTPUTS, PARAM_NAMES
from stresstest.kernels.paths import apply_events, event_draws, path_factors, seed_key
from stresstest.mc_config import load_montecarlo
from stresstest.mc_paths import prepare
from stresstest.mc_summary import Summary
from stresstest.montecarlo import run_montecarlo
from stresstest.outputs import STATISTICS
from stresstest.summaries import ALPHA, X_MIN, Moments, Sketch, cvar_from
from stresstest.validation import ConfigError

needs_jax = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")


def _mc(pf, **block):
    doc = {"scenario": {"kind": "montecarlo", "paths": 2000, "seed": 1, **block}}
    return load_montecarlo(Path("<test>.yaml"), doc, pf)


def _pf(seed=0, n=3, horizon=36):
    rng = np.random.default_rng(seed)
    pf = random_portfolio(rng, n_clusters=n, horizon=horizon)
    pf.labels[-1]["gpu_market"] = pf.labels[0]["gpu_market"]  # two clusters share a price series
    return pf


def _all_paths(pf, mc, backend, chunk=None):
    run = prepare(pf, mc, backend, chunk)
    chunks = list(run.chunks())
    return {k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs}


ZERO = dict(price={"volatility": 0.0}, utilization={"sigma_training": 0.0, "sigma_inference": 0.0},
            energy={"volatility": 0.0})


@pytest.mark.parametrize("name", ["numpy", pytest.param("jax", marks=needs_jax)])
def test_zero_volatility_is_the_deterministic_model_exactly(name, tmp_path):
    """numpy: bit for bit (P = X = 1 and U = 0 enter as exact * 1 and + 0). JAX compiles the
    path program apart from the deterministic one, so there the last bits may differ."""
    pf = _pf(1)
    mc = _mc(pf, paths=300, **ZERO)
    be = make_backend(name)
    res = run_montecarlo(pf, mc, tmp_path / "z.h5", be, chunk_size=128, progress=False, save_paths=True)
    base = evaluate_base(pf)
    rel = 0.0 if name == "numpy" else 1e-13
    npv = res.summary.table("npv")
    assert npv[0, STATISTICS.index("mean")] == pytest.approx(base["npv"], rel=rel, abs=0)
    assert npv[0, STATISTICS.index("std")] <= rel * abs(base["npv"])
    for stat in ("min", "max", "p1", "p50", "p99"):  # ties: the sketch returns the value itself
        assert npv[0, STATISTICS.index(stat)] == pytest.approx(base["npv"], rel=rel, abs=0), stat
    for c in range(len(pf.clusters)):
        assert npv[1 + c, STATISTICS.index("mean")] == pytest.approx(base["cluster_npv"][c], rel=rel, abs=0)
    with h5py.File(tmp_path / "z.h5") as f:  # every path the run computed (--save-paths)
        paths = {o: f["paths"][o][()] for o in OUTPUTS}
    for o in OUTPUTS:
        want = np.broadcast_to(base[o], paths[o].shape)
        if name == "numpy":
            np.testing.assert_array_equal(paths[o], want, err_msg=o)
        else:
            np.testing.assert_allclose(paths[o], want, rtol=1e-12, atol=1e-9, err_msg=o)


def _reference_paths(pf, mc):
    """The loop reference on each path in turn, fed the factors and event draws the
    kernels draw: (the path's cluster parameters, the reference's outputs)."""
    key = seed_key(mc.seed)
    idx = np.arange(mc.paths, dtype=np.uint64)
    f = path_factors(np, key, idx, mc.spec, np.float64)
    d = event_draws(np, key, idx, mc.events, mc.spec.n_series, pf.horizon_months, len(pf.clusters), np.float64)
    params = apply_events(pf.base_arrays(), mc.events, d)
    for s in range(mc.paths):
        clusters = [{k: float(np.broadcast_to(v, (mc.paths, len(pf.clusters)))[s, c]) for k, v in params.items()}
                    for c in range(len(pf.clusters))]
        factors = [{"price": list(f["price"][s, c]), "util": list(f["util"][s, c]),
                    "energy": list(f["energy"][s, c])} for c in range(len(pf.clusters))]
        yield clusters, ref.evaluate(clusters, pf.horizon_months, pf.discount_rate, factors)


def test_paths_match_the_plain_reference_with_the_same_factors():
    """Each path through the kernels = the loop reference fed the same factors and draws."""
    pf = _pf(2, n=3, horizon=30)
    mc = _mc(pf, paths=12, events=[
        {"param": "next_gen_month", "dist": "uniform", "low": 6, "high": 24},
        {"param": "delivery_months", "dist": "discrete", "values": [0, 2.5], "probs": [0.5, 0.5],
         "per_cluster": True}],
        price={"volatility": 0.6}, energy={"volatility": 0.5})
    be = make_backend("numpy")
    out = _all_paths(pf, mc, be)
    checked = 0
    for s, (_, want) in enumerate(_reference_paths(pf, mc)):
        for o in ("npv", "roi", "revenue", "energy_cost", "ebitda"):
            assert out[o][s] == pytest.approx(want["portfolio"][o], rel=1e-9, abs=1e-6), (s, o)
            for c in range(len(pf.clusters)):
                assert out["cluster_" + o][s, c] == pytest.approx(want["clusters"][c][o], rel=1e-9, abs=1e-6)
        checked += 1
    assert checked == mc.paths
    assert np.ptp(out["npv"]) > 0  # the paths differ


@pytest.mark.parametrize("name", ["numpy", pytest.param("jax", marks=needs_jax)])
def test_a_drawn_debt_fraction_gives_equity_irr_and_dscr_to_clusters_without_debt(name):
    """A path event on debt_fraction gives debt to clusters that have none in the
    portfolio: their equity IRR is solved and their debt service cover computed on every
    path, as the loop reference has them (the equity IRR was once NaN for them)."""
    pf = _pf(4, n=3, horizon=30)
    pf.clusters[0]["debt_fraction"] = 0.5
    for c in pf.clusters[1:]:
        c["debt_fraction"] = 0.0
    mc = _mc(pf, paths=10, events=[{"param": "debt_fraction", "dist": "uniform", "low": 0.3, "high": 0.6,
                                    "per_cluster": True}], price={"volatility": 0.4})
    out = _all_paths(pf, mc, make_backend(name))
    solved = 0
    for s, (clusters, want) in enumerate(_reference_paths(pf, mc)):
        assert all(c["debt_fraction"] >= 0.3 for c in clusters)
        for o in ("equity_irr", "min_dscr"):
            for c in range(len(pf.clusters)):
                w = want["clusters"][c][o]
                got = out["cluster_" + o][s, c]
                if math.isnan(w):
                    assert math.isnan(got), (s, c, o)
                else:
                    assert got == pytest.approx(w, rel=1e-8, abs=1e-10), (s, c, o)
                    solved += c > 0
            w = want["portfolio"][o]
            assert out[o][s] == pytest.approx(w, rel=1e-8, abs=1e-10, nan_ok=True), (s, o)
    assert solved >= mc.paths  # the clusters without debt of their own got answers


@needs_jax
def test_jax_cpu_chunks_of_several_pieces_give_numpys_paths():
    """JAX on the CPU evaluates several pieces of the default chunk in one program
    (engine.cpu_pieces): every path as numpy draws and evaluates it, the last chunk
    padded and trimmed."""
    pf = _pf(5)
    mc = _mc(pf, paths=2100, events=[{"param": "next_gen_month", "dist": "uniform", "low": 6, "high": 24}])
    run = prepare(pf, mc, make_backend("jax"))
    assert run.chunk_size > run.piece_size and run.chunk_size % run.piece_size == 0
    assert mc.paths % run.chunk_size
    got = _all_paths(pf, mc, make_backend("jax"))
    want = _all_paths(pf, mc, make_backend("numpy"))
    for o in want:
        np.testing.assert_allclose(got[o], want[o], rtol=1e-10, atol=1e-6, err_msg=o)


@needs_jax
def test_numpy_and_jax_give_the_same_paths():
    pf = _pf(3)
    mc = _mc(pf, paths=700, events=[{"param": "client_loss_month", "dist": "triangular", "low": 5,
                                     "mode": 20, "high": 30, "per_cluster": True}])
    a = _all_paths(pf, mc, make_backend("numpy"), 256)
    b = _all_paths(pf, mc, make_backend("jax"), 256)
    for o in a:
        np.testing.assert_allclose(b[o], a[o], rtol=1e-10, atol=1e-6, err_msg=o)


@needs_jax
def test_same_seed_same_results_for_chunks_of_1000_and_65536_and_for_shards():
    pf = _pf(4, n=2, horizon=24)
    mc = _mc(pf, paths=66000, hurdle_irr=0.1)
    be = make_backend("jax")
    results = []
    for chunk in (1000, 65536):
        run = prepare(pf, mc, be, chunk)
        s = Summary(2, 24, mc.hurdle_irr, None)
        for c in run.chunks():
            s.add(c.outputs, c.start)
        results.append(s)
    # 4 shards (contiguous path ranges) merged
    run = prepare(pf, mc, be, 4096)
    edges = np.linspace(0, mc.paths, 5).astype(int)
    merged = None
    for a, b in zip(edges[:-1], edges[1:]):
        s = Summary(2, 24, mc.hurdle_irr, None)
        for c in run.chunks(int(a), int(b)):
            s.add(c.outputs, c.start)
        merged = s if merged is None else (merged.merge(s) or merged)
    results.append(merged)
    first = results[0]
    for other in results[1:]:
        for o in OUTPUTS:
            np.testing.assert_allclose(other.table(o), first.table(o), rtol=1e-11, atol=1e-9, err_msg=o)
        ra, rb = first.risk(), other.risk()
        for k in ra:
            np.testing.assert_allclose(rb[k], ra[k], rtol=1e-11, atol=1e-9, err_msg=k)
        np.testing.assert_allclose(other.fan_table(), first.fan_table(), rtol=1e-12)


def test_summary_in_blocks_of_1000_equals_one_block(monkeypatch):
    pf = _pf(6, n=2, horizon=24)
    mc = _mc(pf, paths=5000, hurdle_irr=0.1)
    run = prepare(pf, mc, make_backend("numpy"), 300)
    chunks = list(run.chunks())
    whole = Summary(2, 24, mc.hurdle_irr, None)
    for c in chunks:
        whole.add(c.outputs, c.start)
    monkeypatch.setattr(Summary, "BLOCK", 1000)  # 5 blocks of 1,000 paths
    batched = Summary(2, 24, mc.hurdle_irr, None)
    for c in chunks:
        batched.add(c.outputs, c.start)
    for o in OUTPUTS:
        np.testing.assert_allclose(batched.table(o), whole.table(o), rtol=1e-12, atol=1e-9, err_msg=o)
    assert batched.moments["npv"].n[0] == whole.moments["npv"].n[0] == 5000
    np.testing.assert_allclose(batched.fan_table(), whole.fan_table(), rtol=1e-12)


def _exact_quantile(x, q):
    return np.quantile(x, q, method="inverted_cdf")


def _exact_cvar(x, q):
    k = math.ceil(q * x.size - 1e-9)
    return -np.sort(x)[:k].mean()


def _states_equal(a: Summary, b: Summary) -> bool:
    sa, sb = a.state(), b.state()
    return sa.keys() == sb.keys() and all(
        np.array_equal(sa[k], sb[k], equal_nan=sa[k].dtype.kind == "f") for k in sa)


def test_summary_the_same_on_any_number_of_threads(monkeypatch):
    """Each accumulator takes its columns whole on one thread: the state is bit for bit
    the same for 1, 3 or 4 threads, in one block or several."""
    pf = _pf(8)
    mc = _mc(pf, paths=3000, hurdle_irr=0.1, covenant_dscr=1.2)
    out = _all_paths(pf, mc, make_backend("numpy"))
    summaries = []
    for workers, block in ((1, Summary.BLOCK), (4, Summary.BLOCK), (3, 700), (1, 700)):
        monkeypatch.setattr(Summary, "BLOCK", block)
        s = Summary(len(pf.clusters), pf.horizon_months, mc.hurdle_irr, mc.covenant_dscr, workers)
        for a in range(0, 3000, 500):
            s.add({k: v[a:a + 500] for k, v in out.items()}, a)
        summaries.append(s)
    assert _states_equal(summaries[0], summaries[1])
    assert _states_equal(summaries[2], summaries[3])


def test_moments_of_float32_outputs_are_summed_in_float64():
    x = np.random.default_rng(4).normal(1e7, 3e6, (3000, 3)).astype(np.float32)
    m = Moments(3)
    for a in range(0, 3000, 1000):
        m.add(x[a:a + 1000])
    exact = x.astype(np.float64)
    assert np.allclose(m.mean, exact.mean(axis=0), rtol=1e-14, atol=0)
    assert np.allclose(m.std, exact.std(axis=0, ddof=1), rtol=1e-12, atol=0)


def test_moments_match_numpy_over_the_finite_values_in_any_batches():
    rng = np.random.default_rng(9)
    x = rng.normal(3.0, 2.0, size=(3000, 4)) * 1e6
    x[rng.random(3000) < 0.1, 1] = np.nan
    x[rng.random(3000) < 0.05, 1] = np.inf
    x[rng.random(3000) < 0.05, 1] = -np.inf
    x[:, 2] = np.nan
    x[:1000, 3] = 7.25  # a constant stretch, then finite noise
    cases = ((0, 3000), (0, 1000, 1001, 3000), (0, 500, 1700, 3000))
    # with non-finite columns, and all finite (columns 0 and 3 alone)
    for data, cuts in [(x, c) for c in cases] + [(x[:, [0, 3]], c) for c in cases]:
        m = Moments(data.shape[1])
        for a, b in zip(cuts[:-1], cuts[1:]):
            m.add(data[a:b])
        for j in range(data.shape[1]):
            f = data[np.isfinite(data[:, j]), j]
            assert m.n[j] == f.size
            assert m.nan[j] == np.isnan(data[:, j]).sum() and m.inf[j] == np.isinf(data[:, j]).sum()
            if f.size:
                assert m.mean[j] == pytest.approx(f.mean(), rel=1e-13)
                assert m.std[j] == pytest.approx(f.std(ddof=1), rel=1e-11)
            else:
                assert np.isnan(m.std[j])
    first = Moments(1)
    first.add(np.full((10, 1), 7.25))
    assert first.mean[0] == 7.25 and first.m2[0] == 0.0


def test_streaming_quantiles_and_cvar_within_the_bound_on_a_million_values():
    rng = np.random.default_rng(8)
    n = 1_000_000
    # a skewed, fat-tailed mixture crossing zero, like an NPV distribution
    x = np.where(rng.random(n) < 0.1, rng.standard_t(3, n) * 8e7 - 1e8, rng.normal(2e7, 3e7, n))
    x[:10] = 0.0
    sk = Sketch()
    for part in np.array_split(x, 37):
        sk.add(part)
    for q in (0.01, 0.05, 0.5, 0.95, 0.99):
        exact = _exact_quantile(x, q)
        assert abs(sk.quantile(q) - exact) <= ALPHA * abs(exact) + X_MIN, q
    for q in (0.05, 0.01):
        exact = _exact_cvar(x, q)
        var = -_exact_quantile(x, q)
        got, se = cvar_from(sk, q)
        assert abs(got - exact) <= 2 * ALPHA * abs(var) + X_MIN, (q, got, exact)
        tail = np.sort(x)[:math.ceil(q * n)]
        # the asymptotic standard error: the tail's spread plus its edge's (the VaR's)
        want = math.sqrt((tail.var() + (1 - q) * (tail.mean() + var) ** 2) / tail.size)
        assert se == pytest.approx(want, rel=0.01)
    assert sk.extreme(False) == x.min() and sk.extreme(True) == x.max()
    # tail contribution: the extra columns split the same way
    parts = np.stack([0.3 * x, 0.7 * x], axis=1)
    sk2 = Sketch(extra=2)
    sk2.add(x, parts)
    k, s, _, extra = sk2.lower_tail(0.05)
    assert extra.sum() == pytest.approx(s, rel=1e-12)
    assert extra[0] / s == pytest.approx(0.3, rel=1e-9)


def test_sketch_counts_nonfinite_values_apart_and_orders_the_infinities():
    rng = np.random.default_rng(12)
    finite = rng.normal(1e6, 1e5, 1000)
    mixed = np.concatenate([rng.normal(1e6, 1e5, 100), [np.nan] * 7, [np.inf] * 3, [-np.inf] * 2])
    sk = Sketch()
    sk.add(finite)  # all finite
    sk.add(mixed)
    assert (sk.nan, sk.pos_inf, sk.neg_inf) == (7, 3, 2)
    assert sk.n == 1100 + 5 and int(sk.counts.sum()) == 1100
    assert sk.extreme(False) == -np.inf and sk.extreme(True) == np.inf
    assert sk.quantile(1 / sk.n) == -np.inf and sk.quantile(1.0) == np.inf
    both = np.concatenate([finite, mixed[:100]])
    exact = _exact_quantile(both, 0.5)  # 2 values below on the left, 3 above: the same rank
    assert abs(sk.quantile((math.ceil(0.5 * 1100) + 2) / sk.n) - exact) <= ALPHA * abs(exact)


def test_sketch_orders_values_near_the_largest_floats():
    """log|x| - log X_MIN: the bins of values past 1.8e299 are finite (log(|x| / X_MIN)
    overflowed to an infinite bin)."""
    x = np.array([5e300, -5e300, 1.7e308, 0.0, -1e-10, 3.0, 2e299, -7e305])
    sk = Sketch()
    with np.errstate(over="ignore"):  # the bins' sums of squares overflow
        sk.add(x)
    assert np.all(np.isfinite(sk.index(x))) and sk.n == x.size
    assert sk.extreme(True) == 1.7e308 and sk.extreme(False) == -7e305
    for k in range(1, x.size + 1):
        exact = np.sort(x)[k - 1]
        assert abs(sk.quantile(k / x.size) - exact) <= ALPHA * abs(exact) + X_MIN, k


def _check_every_column(ds, dp):
    """Each output's quantiles, min and max, portfolio and every cluster, against the
    saved paths (a sketch fed another column's values fails)."""
    for o in OUTPUTS:
        for name, table, values in ((o, ds[o].values[None], dp[o].values[:, None]),
                                    ("cluster_" + o, ds["cluster_" + o].values, dp["cluster_" + o].values)):
            for c in range(values.shape[1]):
                v = values[:, c][~np.isnan(values[:, c])]
                row = table[c]
                if v.size == 0:
                    assert np.isnan(row[STATISTICS.index("p50")]), (name, c)
                    continue
                assert row[STATISTICS.index("min")] == v.min(), (name, c)
                assert row[STATISTICS.index("max")] == v.max(), (name, c)
                for q in (1, 5, 50, 95, 99):
                    exact, got = _exact_quantile(v, q / 100), row[STATISTICS.index(f"p{q}")]
                    if np.isinf(exact):
                        assert got == exact, (name, c, q)
                    else:
                        assert abs(got - exact) <= ALPHA * abs(exact) + X_MIN, (name, c, q, got, exact)


@pytest.mark.parametrize("name", ["numpy", pytest.param("jax", marks=needs_jax)])
def test_summaries_of_a_run_agree_with_its_saved_paths(name, tmp_path, monkeypatch):
    """On numpy, and on JAX with the summaries absorbed on three threads (as on a GPU)."""
    import xarray as xr

    import stresstest.montecarlo as montecarlo

    if name == "jax":
        monkeypatch.setattr(montecarlo, "summary_workers", lambda be: 3)
    pf = _pf(5)
    mc = _mc(pf, paths=5000, hurdle_irr=0.15, covenant_dscr=1.3)
    res = run_montecarlo(pf, mc, tmp_path / "m.h5", make_backend(name), chunk_size=999,
                         progress=False, save_paths=True)
    with xr.open_dataset(res.path, engine="h5netcdf") as ds, \
            xr.open_dataset(res.path, engine="h5netcdf", group="paths") as dp:
        _check_every_column(ds, dp)
        npv = dp["npv"].values
        assert npv.shape == (5000,)
        st = ds["npv"]
        assert float(st.sel(statistic="mean")) == pytest.approx(npv.mean(), rel=1e-12)
        assert float(st.sel(statistic="std")) == pytest.approx(npv.std(ddof=1), rel=1e-10)
        for q in (1, 5, 50, 95, 99):
            exact = _exact_quantile(npv, q / 100)
            assert abs(float(st.sel(statistic=f"p{q}")) - exact) <= ALPHA * abs(exact) + X_MIN
        for lvl in (95, 99):
            q = round(1 - lvl / 100, 12)
            assert abs(float(ds[f"var_{lvl}"]) + _exact_quantile(npv, q)) <= ALPHA * abs(_exact_quantile(npv, q))
            exact = _exact_cvar(npv, q)
            assert abs(float(ds[f"cvar_{lvl}"]) - exact) <= 2 * ALPHA * abs(_exact_quantile(npv, q)) + 1e-6
        assert float(ds["prob_npv_negative"]) == np.mean(npv < 0)
        irr = dp["irr"].values
        fin = np.isfinite(irr)
        assert float(ds["prob_irr_below_hurdle"]) == pytest.approx(np.mean(irr[fin] < 0.15), abs=1e-15)
        # tail contribution: each cluster's mean NPV over the portfolio's worst 5 %
        order = np.argsort(npv)[:math.ceil(0.05 * 5000)]
        want = dp["cluster_npv"].values[order].mean(axis=0)
        got = ds["tail_contribution_95"].values
        assert np.abs(got - want).max() <= 2 * ALPHA * abs(_exact_quantile(npv, 0.05)) + 1e-6
        assert got.sum() == pytest.approx(-float(ds["cvar_95"]), rel=1e-9)
        # fan of cumulative cash flow
        cum = dp["cumulative_cf"].values
        for j, q in enumerate(ds["fan_quantile"].values):
            exact = np.quantile(cum, q, axis=0, method="inverted_cdf")
            got = ds["cumulative_cf_fan"].values[:, j]
            assert np.all(np.abs(got - exact) <= 1e-2 * np.abs(exact) + X_MIN)
        assert ds["cluster_npv"].dims == ("cluster", "statistic")
        assert ds.attrs["kind"] == "montecarlo" and ds.attrs["paths"] == 5000


@needs_jax
def test_pathwise_gradients_match_finite_differences_with_common_random_numbers(tmp_path):
    """2,000 paths in chunks of 512 (three whole and a short one; 4,000 in 1,024s before,
    the same layout: each central difference is two numpy runs of every path, most of the
    test's time); the worst 5 % lie in more than one chunk (asserted)."""
    pf = _pf(6, n=2, horizon=30)
    for c in pf.clusters:  # keep every path away from clip kinks in the checked parameters
        c.update(utilization_training=0.6, utilization_inference=0.6, next_gen_utilization_drop=0.05)
    paths, chunk = 2000, 512
    mc = _mc(pf, paths=paths, events=[{"param": "next_gen_month", "dist": "uniform", "low": 6, "high": 30}])
    be = make_backend("jax")
    res = run_montecarlo(pf, mc, tmp_path / "g.h5", be, chunk_size=chunk, progress=False, sensitivities=True)
    g_mean, g_cvar = res.gradients["grad_mean_npv"], res.gradients["grad_cvar_95"]
    assert g_mean.shape == (2, len(PARAM_NAMES))
    tail = np.argsort(_all_paths(pf, mc, make_backend("numpy"))["npv"])[:math.ceil(0.05 * paths)]
    assert len(set(tail // chunk)) > 1, "the CVaR tail should cross chunks"
    checked = 0
    # each parameter on one of the two clusters, taking turns (two numpy runs a check)
    for j, name in enumerate(("on_demand_price", "energy_price", "pue", "capex_per_gpu", "reserved_price",
                              "staff_cost_per_year", "tax_rate", "next_gen_month")):
        k = PARAM_NAMES.index(name)
        for c in (j % 2,):
            theta = pf.clusters[c][name]
            h = 1e-5 * max(abs(theta), 1.0)
            vals = []
            for d in (-h, h):
                pf.clusters[c][name] = theta + d
                npv = _all_paths(pf, mc, make_backend("numpy"))["npv"]
                vals.append((npv.mean(), _exact_cvar(npv, 0.05)))
            pf.clusters[c][name] = theta
            fd_mean = (vals[1][0] - vals[0][0]) / (2 * h)
            fd_cvar = (vals[1][1] - vals[0][1]) / (2 * h)
            if name == "next_gen_month":  # drawn per path (set): the base value has no effect
                assert g_mean[c, k] == 0.0 and abs(fd_mean) < 1e-6
                continue
            assert g_mean[c, k] == pytest.approx(fd_mean, rel=1e-5, abs=1e-6), (name, c)
            scale = abs(fd_cvar) + 1e-3 * abs(g_mean[c, k]) + 1e-6
            assert abs(g_cvar[c, k] - fd_cvar) <= 2e-3 * scale + 1e-3 * abs(fd_cvar), (name, c, g_cvar[c, k], fd_cvar)
            checked += 1
    assert checked == 7
    h = 1e-6
    vals = []
    for d in (-h, h):
        pf.discount_rate += d
        vals.append(_all_paths(pf, mc, make_backend("numpy"))["npv"].mean())
        pf.discount_rate -= d
    assert res.gradients["grad_mean_npv_discount_rate"] == pytest.approx((vals[1] - vals[0]) / (2 * h), rel=1e-5)


def test_correlation_not_psd_names_the_entries():
    pf = _pf(7, n=3)
    names = [f"price/{pf.labels[0]['gpu_market']}", f"energy/{pf.labels[0]['power_market']}",
             f"utilization/{pf.cluster_names[0]}"]
    with pytest.raises(ConfigError) as e:
        _mc(pf, events=[{"param": "inference_share", "dist": "uniform", "low": 0, "high": 1}])
    assert "inference_share" in str(e.value) and "cannot be drawn" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _mc(pf, seed=2**53 + 1.0)
    assert "scenario.seed" in str(e.value)
    assert _mc(pf, seed=2**53 + 1).seed == 2**53 + 1  # an integer is taken exactly
    with pytest.raises(ConfigError) as e:
        _mc(pf, correlation={"same_kind": 0.0, "pairs": [
            {"a": names[0], "b": names[1], "rho": 0.9}, {"a": names[0], "b": names[2], "rho": 0.9},
            {"a": names[1], "b": names[2], "rho": -0.9}]})
    msg = str(e.value)
    assert "not positive semi-definite" in msg and "scenario.correlation" in msg
    for n in names:
        assert n in msg
    assert "pairs[0]" in msg and "pairs[2]" in msg


def test_bad_monte_carlo_keys_are_named():
    pf = _pf(8)
    cases = [
        (dict(paths=0), "scenario.paths"),
        (dict(paths=1.5), "scenario.paths"),
        (dict(price={"volatility": -0.1}), "price.volatility"),
        (dict(price={"vol": 0.1}), "price.vol: unknown key"),
        (dict(utilization={"ar": 1.0}), "utilization.ar"),
        (dict(correlation={"between": {"price-gold": 0.2}}), "correlation.between.price-gold"),
        (dict(correlation={"pairs": [{"a": "price/x", "b": "energy/y", "rho": 0.1}]}), "unknown series"),
        (dict(events=[{"param": "pue", "dist": "gamma"}]), "unknown distribution"),
        (dict(events=[{"param": "pue", "dist": "uniform", "low": 1.2}]), "needs high"),
        (dict(events=[{"param": "pue", "dist": "normal", "mean": 1.3, "sd": 0.1, "low": 1}]), "does not apply"),
        (dict(events=[{"param": "nope", "dist": "uniform", "low": 1, "high": 2}]), "unknown parameter"),
        (dict(events=[{"param": "pue", "dist": "discrete", "values": [1.1, 1.2], "probs": [0.5, 0.4]}]),
         "must sum to 1"),
        (dict(events=[{"param": "pue", "dist": "discrete", "values": [0.5], "probs": [1.0]}]), "values[0]"),
        (dict(events=[{"param": "pue", "dist": "triangular", "low": 1.1, "mode": 2, "high": 1.5}]), "mode"),
        (dict(events=[{"param": "pue", "dist": "uniform", "low": 1.1, "high": 1.5, "clusters": ["zz"]}]),
         "unknown cluster"),
        (dict(hurdle_irr=-2), "hurdle_irr"),
        (dict(axes=[]), "axes: unknown key"),
    ]
    for block, want in cases:
        with pytest.raises(ConfigError) as e:
            _mc(pf, **block)
        assert want in str(e.value), (block, str(e.value))
        assert str(e.value).startswith("<test>.yaml: scenario")


def test_cli_runs_a_monte_carlo_file(tmp_path):
    from click.testing import CliRunner

    from stresstest.cli import main

    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario:\n  kind: montecarlo\n  paths: 400\n  seed: 3\n  hurdle_irr: 0.12\n"
                  "  events:\n    - {param: next_gen_month, dist: triangular, low: 12, mode: 24, high: 36}\n")
    out = tmp_path / "mc.h5"
    r = CliRunner().invoke(main, ["run", "-s", str(sc), "-o", str(out), "--backend", "numpy", "--save-paths"])
    assert r.exit_code == 0, r.output
    for word in ("400 paths", "CVaR 95 %", "P(NPV < 0)", "P(IRR < 12 %)", "tail contribution"):
        assert word in r.output, word
    assert out.exists()
    r = CliRunner().invoke(main, ["validate", str(sc)])
    assert r.exit_code == 0 and "400 paths" in r.output
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(tmp_path / "g.h5"), "--save-paths"])
    assert r.exit_code == 2 and "--save-paths applies to Monte Carlo" in r.output
    assert not (tmp_path / "g.h5").exists()
