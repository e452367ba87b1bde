"""Monte Carlo on version 2 portfolios (docs/model.md, "Monte Carlo"; MODEL.md, "Segments"
and "Addressing the new fields"): one utilization series per (cluster, segment) with the
segment's volatility, correlated by same_kind; events on item paths; the paths against the
plain reference fed the same factors and draws; version 1 portfolios draw what they drew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
import reference_model as ref
from click.testing import CliRunner
from helpers import load_portfolio_doc, random_portfolio, reference_clusters

from stresstest.backends import jax_importable, make_backend
from stresstest.cli import main
from stresstest.kernels.params import OUTPUTS, PARAM_NAMES
from stresstest.kernels.paths import apply_events, event_draws, path_factors, seed_key
from stresstest.mc_config import load_montecarlo
from stresstest.mc_paths import prepare
from stresstest.montecarlo import run_montecarlo
from stresstest.validation import ConfigError

needs_jax = pytest.mark.skipif(not jax_importable(), reason="jax is not installed")
BAD = Path(__file__).parent / "bad_inputs"

# Cluster a: named contracts (one of them "anchor") and three segments of different
# volatilities; b: version 1 keys (implied anchor/others and one implied segment); c:
# contracts of its own, the implied segment. Volatilities and shares keep the month's
# utilization mostly inside [0, 1].
DOC = {
    "portfolio": {"name": "v2-mc", "horizon_months": 48, "discount_rate": 0.09},
    "defaults": {"gpus": 512, "capex_per_gpu": 28000, "on_demand_price": 2.4, "delivery_months": 2},
    "clusters": [
        {"name": "a", "gpu_market": "h100",
         "contracts": [{"name": "anchor", "share": 0.25, "price": 2.1, "loss_month": 40},
                       {"name": "bank", "share": 0.2, "price": 2.3, "industry": "finance"}],
         "segments": [{"name": "train", "share": 0.5, "utilization": 0.6, "utilization_sigma": 0.12},
                      {"name": "infer", "share": 0.3, "utilization": 0.7, "utilization_sigma": 0.03},
                      {"name": "shop", "share": 0.2, "industry": "retail", "utilization_sigma": 0.07}]},
        {"name": "b", "gpu_market": "h100", "reserved_price": 1.9, "top_client_share": 0.4,
         "utilization_training": 0.55, "utilization_inference": 0.65, "inference_share": 0.3},
        {"name": "c", "contracts": [{"name": "lab", "share": 0.5, "price": 2.0, "industry": "healthcare"}]},
    ],
}


def _pf(tmp_path, doc=DOC):
    return load_portfolio_doc(tmp_path, doc)


def _mc(pf, **block):
    doc = {"scenario": {"kind": "montecarlo", "paths": 200, "seed": 3, **block}}
    return load_montecarlo(Path("<test>.yaml"), doc, pf)


def _all_paths(pf, mc, backend, chunk=None):
    run = prepare(pf, mc, backend, chunk)
    chunks = list(run.chunks())
    return {k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs}


def _drawn(pf, mc):
    """Every path's factors and event draws, as the run draws them."""
    key = seed_key(mc.seed)
    idx = np.arange(mc.paths, dtype=np.uint64)
    f = path_factors(np, key, idx, mc.spec, np.float64)
    d = event_draws(np, key, idx, mc.events, mc.spec.n_series, pf.horizon_months, len(pf.clusters), np.float64)
    return f, d


# ------------------------------------------------------------------ the series


def test_a_segment_series_each_named_after_its_cluster_and_segment(tmp_path):
    pf = _pf(tmp_path)
    mc = _mc(pf)
    assert mc.series == ("price/h100", "price/c", "utilization/a/train", "utilization/a/infer",
                         "utilization/a/shop", "utilization/b", "utilization/c", "energy/a", "energy/b",
                         "energy/c")
    w = 0.3
    blend = (1 - w) * 0.10 + w * 0.04  # b: the scenario's default sigmas, by its inference share
    assert mc.spec.util_sigma == (0.12, 0.03, 0.07, blend, 0.5 * 0.10 + 0.5 * 0.04)
    # per cluster, per segment slot (3 slots): the series it reads; padding slots the cluster's own
    assert mc.spec.util_of == ((0, 1, 2), (3, 3, 3), (4, 4, 4))
    f, _ = _drawn(pf, _mc(pf, paths=5))
    assert f["util"].shape == (5, 3, 3, 48) and f["price"].shape == (5, 3, 48)


def test_version_1_portfolio_keeps_its_series_and_layout():
    pf = random_portfolio(np.random.default_rng(11), n_clusters=3, horizon=24)
    mc = _mc(pf, paths=4)
    assert not pf.itemised and mc.spec.util_of is None
    assert [s for s in mc.series if s.startswith("utilization/")] == [f"utilization/{c}" for c in pf.cluster_names]
    f, _ = _drawn(pf, mc)
    assert f["util"].shape == (4, 3, 24)


def test_each_segment_series_has_its_sigma_and_same_kind_correlation(tmp_path):
    """U_t = a U_{t-1} + s sqrt(1 - a^2) eps_t from U_0 = 0 has Var U_t = s^2 (1 - a^(2t)):
    at t = 48 with a = 0.8, s^2 to 1e-9. Two series of one kind correlate by same_kind in
    every month (the same AR(1) on both), a pair's rho where a pair sets it."""
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=20000, correlation={"same_kind": 0.4, "pairs": [
        {"a": "utilization/a/train", "b": "utilization/b", "rho": -0.3}]})
    f, _ = _drawn(pf, mc)
    u = f["util"][:, :, :, -1]  # [S, C, J] at T
    series = {"train": u[:, 0, 0], "infer": u[:, 0, 1], "shop": u[:, 0, 2], "b": u[:, 1, 0], "c": u[:, 2, 0]}
    sigma = dict(zip(series, mc.spec.util_sigma))
    n = u.shape[0]
    for name, x in series.items():
        assert np.std(x) == pytest.approx(sigma[name], rel=4 / np.sqrt(2 * n)), name
    rho = np.corrcoef(np.stack(list(series.values())))
    names = list(series)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            want = -0.3 if {names[i], names[j]} == {"train", "b"} else 0.4
            assert rho[i, j] == pytest.approx(want, abs=4 / np.sqrt(n)), (names[i], names[j])
    # every month of a series, not only the last: the correlation of the innovations
    months = np.corrcoef(f["util"][:, 0, 0, 5], f["util"][:, 0, 1, 5])[0, 1]
    assert months == pytest.approx(0.4, abs=4 / np.sqrt(n))


# ------------------------------------------------------------------ against the reference


def _reference_path(pf, mc, f, d, s):
    """Path s through the plain reference: the events on cluster parameters first, then
    those on item paths (MODEL.md's order), each cluster taking its own draw, then the
    shares balanced; the factors per cluster, the utilization one series per segment."""
    clusters = reference_clusters(pf)
    for ev, v in zip(mc.events, d):
        if ev.item_mask is None:
            for c in range(len(clusters)):
                if ev.mask[c]:
                    clusters[c] = ref.apply_shock(clusters[c], ev.param, ev.op, float(v[s, c]))
    for ev, v in zip(mc.events, d):
        if ev.item_mask is not None:
            for c in range(len(clusters)):
                if any(ev.item_mask[c]):
                    one = [k == c for k in range(len(clusters))]
                    clusters, _ = ref.apply_path_shock(clusters, None, ev.param, ev.op, float(v[s, c]),
                                                       cluster_mask=one)
    clusters = ref.balance_shares(clusters)
    factors = []
    for c, it in enumerate(pf.items):
        n_seg = len(it.segments) if it.segments is not None else 1
        factors.append({"price": list(f["price"][s, c]), "energy": list(f["energy"][s, c]),
                        "util": [list(f["util"][s, c, j]) for j in range(n_seg)]})
    return ref.evaluate(clusters, pf.horizon_months, pf.discount_rate, factors)


def _assert_matches_reference(pf, mc, out, paths):
    f, d = _drawn(pf, mc)
    for s in paths:
        want = _reference_path(pf, mc, f, d, s)
        for o in ("npv", "roi", "revenue", "energy_cost", "opex", "ebitda", "payback_months"):
            assert out[o][s] == pytest.approx(want["portfolio"][o], rel=1e-9, abs=1e-6), (s, o)
            for c in range(len(pf.clusters)):
                assert out["cluster_" + o][s, c] == pytest.approx(want["clusters"][c][o], rel=1e-9, abs=1e-6), \
                    (s, c, o)
        by_industry = want["v2"]["revenue_by_industry"]
        np.testing.assert_allclose(out["revenue_by_industry"][s], list(by_industry.values()), rtol=1e-9, atol=1e-6)


def test_paths_match_the_plain_reference_with_their_segment_factors(tmp_path):
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=16, utilization={"ar": 0.6}, price={"volatility": 0.5}, events=[
        {"param": "next_gen_month", "dist": "uniform", "low": 10, "high": 40},
        {"param": "contracts.anchor.loss_month", "dist": "uniform", "low": 5, "high": 45, "per_cluster": True},
        {"param": "segments.*.utilization", "op": "shift", "dist": "normal", "mean": 0.0, "sd": 0.05},
        {"param": "contracts.lab.price", "op": "scale", "dist": "triangular", "low": 0.8, "mode": 1.0,
         "high": 1.1}])
    out = _all_paths(pf, mc, make_backend("numpy"))
    _assert_matches_reference(pf, mc, out, range(mc.paths))
    assert np.ptp(out["npv"]) > 0


def test_random_version_2_portfolios_match_the_reference(tmp_path):
    from helpers import random_portfolio_v2

    rng = np.random.default_rng(26)
    for k in range(4):
        pf = load_portfolio_doc(tmp_path, random_portfolio_v2(rng, horizon=int(rng.choice([12, 30]))), f"p{k}.yaml")
        events = [{"param": "segments.*.utilization", "op": "shift", "dist": "normal", "mean": 0.0, "sd": 0.1,
                   "per_cluster": True}]
        if any(it.segments for it in pf.items):  # one segment's share: the others renormalised
            events.append({"param": "segments.s0.share", "op": "scale", "dist": "uniform", "low": 0.3,
                           "high": 2.0, "per_cluster": True})
        if any(it.names("contracts") for it in pf.items):  # past a sum of 1: scaled down
            events.append({"param": "contracts.*.share", "op": "scale", "dist": "uniform", "low": 0.5,
                           "high": 2.5})
        mc = _mc(pf, paths=6, seed=k, correlation={"same_kind": 0.3}, events=events)
        out = _all_paths(pf, mc, make_backend("numpy"))
        _assert_matches_reference(pf, mc, out, range(mc.paths))


def test_results_do_not_depend_on_the_chunk_size(tmp_path):
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=300, events=[{"param": "contracts.*.renewal_rate", "dist": "uniform", "low": 0.4,
                                     "high": 0.9, "per_cluster": True}])
    be = make_backend("numpy")
    a = _all_paths(pf, mc, be, 300)
    for chunk in (7, 64):
        b = _all_paths(pf, mc, be, chunk)
        for o in a:
            np.testing.assert_allclose(b[o], a[o], rtol=1e-12, atol=1e-6, err_msg=f"{o}, chunks of {chunk}")


@needs_jax
def test_numpy_and_jax_give_the_same_version_2_paths(tmp_path):
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=256, events=[{"param": "contracts.anchor.loss_month", "dist": "uniform", "low": 5,
                                     "high": 45}])
    a = _all_paths(pf, mc, make_backend("numpy"), 128)
    b = _all_paths(pf, mc, make_backend("jax"), 128)
    for o in a:
        np.testing.assert_allclose(b[o], a[o], rtol=1e-10, atol=1e-6, err_msg=o)


# ------------------------------------------------------------------ events on item paths


def test_an_event_on_the_anchors_loss_month_moves_only_the_anchors(tmp_path):
    """a's contract "anchor" and b's implied anchor take the draw; a's other contract, b's
    others and c (no anchor) keep every item; c's paths are the same as without the event."""
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=50, events=[{"param": "contracts.anchor.loss_month", "dist": "uniform", "low": 3,
                                    "high": 30, "per_cluster": True}])
    (ev,) = mc.events
    assert ev.item_mask == ((True, False), (True, False), (False, False))
    f, d = _drawn(pf, mc)
    moved = apply_events(pf.base_arrays(), mc.events, d)
    still = apply_events(pf.base_arrays(), (), [])
    loss = np.broadcast_to(moved["contracts.loss_month"], (50, 3, 2))
    np.testing.assert_array_equal(loss[:, 0, 0], d[0][:, 0])
    np.testing.assert_array_equal(loss[:, 1, 0], d[0][:, 1])
    np.testing.assert_array_equal(loss[:, :, 1], np.broadcast_to(still["contracts.loss_month"][:, :, 1], (50, 3)))
    np.testing.assert_array_equal(loss[:, 2], np.broadcast_to(still["contracts.loss_month"][:, 2], (50, 2)))
    for k, v in still.items():
        if k != "contracts.loss_month":
            np.testing.assert_array_equal(moved[k], v, err_msg=k)
    out = _all_paths(pf, mc, make_backend("numpy"))
    calm = _all_paths(pf, _mc(pf, paths=50), make_backend("numpy"))
    np.testing.assert_array_equal(out["cluster_npv"][:, 2], calm["cluster_npv"][:, 2])
    assert np.all(np.abs(out["cluster_npv"][:, :2] - calm["cluster_npv"][:, :2]).max(axis=0) > 1.0)


def test_an_item_event_on_a_version_1_portfolio_draws_its_version_1_paths():
    """The event makes the portfolio itemised (its files say model_version 2), its series
    stay version 1's, and contracts.anchor.loss_month draws what client_loss_month does:
    the same paths to round-off (the flows go through the implied items)."""
    pf = random_portfolio(np.random.default_rng(5), n_clusters=3, horizon=36)
    for c in pf.clusters:
        c["top_client_share"] = 0.5
    v1 = _mc(pf, paths=64, events=[{"param": "client_loss_month", "dist": "uniform", "low": 4, "high": 30,
                                    "per_cluster": True}])
    out_v1 = _all_paths(pf, v1, make_backend("numpy"))
    f_v1, _ = _drawn(pf, v1)
    v2 = _mc(pf, paths=64, events=[{"param": "contracts.anchor.loss_month", "dist": "uniform", "low": 4,
                                    "high": 30, "per_cluster": True}])
    assert pf.itemised and pf.model_version == 2
    assert v2.series == v1.series and v2.spec.util_of == ((0,), (1,), (2,))
    f_v2, _ = _drawn(pf, v2)
    np.testing.assert_array_equal(f_v2["util"][:, :, 0], f_v1["util"])
    np.testing.assert_array_equal(f_v2["price"], f_v1["price"])
    out_v2 = _all_paths(pf, v2, make_backend("numpy"))
    for o in OUTPUTS:
        np.testing.assert_allclose(out_v2[o], out_v1[o], rtol=1e-10, atol=1e-6, err_msg=o)
    assert np.ptp(out_v2["npv"]) > 0


def test_bad_item_events_and_series_are_named(tmp_path):
    pf = _pf(tmp_path)
    cases = [
        (dict(events=[{"param": "contracts.acme.price", "dist": "uniform", "low": 1, "high": 2}]),
         "events[0].param: no cluster has a contract 'acme'"),
        (dict(events=[{"param": "contracts.bank.price", "dist": "uniform", "low": 1, "high": 2,
                       "clusters": ["b", "c"]}]), "none of the clusters given has a contract 'bank'"),
        (dict(events=[{"param": "segments.pool.share", "dist": "uniform", "low": 0.1, "high": 0.2}]),
         "reached only by segments.*.share"),
        (dict(events=[{"param": "segments.train.utilization_sigma", "dist": "uniform", "low": 0, "high": 1}]),
         "cannot be drawn per path"),
        (dict(events=[{"param": "contracts.anchor.prize", "dist": "uniform", "low": 1, "high": 2}]),
         "unknown field 'prize' of a contract; did you mean 'price'?"),
        (dict(events=[{"param": "contracts..price", "dist": "uniform", "low": 1, "high": 2}]),
         "the contract's name is empty"),
        (dict(events=[{"param": "contracts.*.share", "dist": "discrete", "values": [0.2, 1.5],
                       "probs": [0.5, 0.5]}]), "events[0].values[1]: must be <= 1"),
        (dict(events=[{"param": "contracts.*.price", "dist": "uniform", "low": 1, "high": 2},
                      {"param": "contracts.anchor.price", "dist": "uniform", "low": 1, "high": 2}]),
         "events[1].param: contracts.anchor.price draws items that an earlier event (contracts.*.price)"),
        (dict(correlation={"pairs": [{"a": "utilization/a/trian", "b": "price/h100", "rho": 0.1}]}),
         "unknown series 'utilization/a/trian'; did you mean 'utilization/a/train'?"),
        (dict(correlation={"pairs": [{"a": "utilization/a", "b": "price/h100", "rho": 0.1}]}),
         "unknown series 'utilization/a'"),
    ]
    for block, want in cases:
        with pytest.raises(ConfigError) as e:
            _mc(pf, **block)
        assert want in str(e.value), (block, str(e.value))
    # disjoint items of one field are two events, not one drawn twice
    ok = _mc(pf, events=[{"param": "contracts.anchor.price", "dist": "uniform", "low": 1, "high": 2},
                         {"param": "contracts.bank.price", "dist": "uniform", "low": 1, "high": 2}])
    assert len(ok.events) == 2


@pytest.mark.parametrize("name, key, reason", [
    ("v2_mc_event_missing_contract.yaml", "scenario.events[0].param",
     "no cluster has a contract 'acme'"),
    ("v2_mc_unknown_segment_series.yaml", "scenario.correlation.pairs[0].a",
     "unknown series 'utilization/a/train'; did you mean 'utilization/a'?"),
])
def test_bad_monte_carlo_files_are_refused(name, key, reason, tmp_path):
    """The corpus's version 2 Monte Carlo files, against its valid (version 1) portfolio:
    exit 2, the file, key and reason on stderr, no output file."""
    out = tmp_path / "out.h5"
    result = CliRunner().invoke(main, ["run", str(BAD / "valid_portfolio.yaml"), "-s", str(BAD / name),
                                       "-o", str(out), "--backend", "numpy", "-q"])
    assert result.exit_code == 2, result.output
    assert f"error: {BAD / name}: {key}: {reason}" in result.stderr
    assert not out.exists()


# ------------------------------------------------------------------ end to end


def test_cli_runs_a_version_2_portfolio(tmp_path):
    import h5py

    pf_path = tmp_path / "p.yaml"
    load_portfolio_doc(tmp_path, DOC, "p.yaml")
    sc = tmp_path / "mc.yaml"
    sc.write_text("scenario:\n  kind: montecarlo\n  paths: 500\n  seed: 9\n  events:\n"
                  "    - {param: contracts.anchor.loss_month, dist: uniform, low: 6, high: 40}\n")
    out = tmp_path / "mc.h5"
    result = CliRunner().invoke(main, ["run", str(pf_path), "-s", str(sc), "-o", str(out), "--backend", "numpy",
                                       "-q", "--save-paths"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f.attrs["model_version"] == 2 and f.attrs["kind"] == "montecarlo"
        assert np.isfinite(f["npv"][...]).all()


@needs_jax
def test_pathwise_sensitivities_run_on_a_version_2_portfolio(tmp_path):
    """The reverse pass goes through the item arrays and the implied items: a cluster with
    implied items gets its version 1 keys' gradients, which match finite differences of
    the mean with common random numbers."""
    pf = _pf(tmp_path)
    mc = _mc(pf, paths=512, events=[{"param": "contracts.anchor.loss_month", "dist": "uniform", "low": 5,
                                     "high": 45}])
    res = run_montecarlo(pf, mc, tmp_path / "g.h5", make_backend("jax"), chunk_size=256, progress=False,
                         sensitivities=True)
    g = res.gradients["grad_mean_npv"]
    assert g.shape == (3, len(PARAM_NAMES)) and np.isfinite(g).all()
    for c, name in ((1, "reserved_price"), (1, "on_demand_price"), (0, "on_demand_price"), (2, "energy_price")):
        theta = pf.clusters[c][name]
        h = 1e-6 * max(abs(theta), 1.0)
        means = []
        for step in (-h, h):
            pf.clusters[c][name] = theta + step
            means.append(_all_paths(pf, mc, make_backend("numpy"))["npv"].mean())
        pf.clusters[c][name] = theta
        fd = (means[1] - means[0]) / (2 * h)
        assert g[c, PARAM_NAMES.index(name)] == pytest.approx(fd, rel=1e-5, abs=1e-3), (c, name)


def test_two_series_of_one_name_are_refused(tmp_path):
    """A cluster `a/train` (its own pool) and a cluster `a` with a segment `train` would
    both draw `utilization/a/train`: the scenario is refused, naming the series."""
    from stresstest.config import load_portfolio
    from stresstest.loaders import load_scenario
    from stresstest.presets import list_presets
    from stresstest.validation import ConfigError

    doc = {"portfolio": {"name": "clash", "horizon_months": 24},
           "clusters": [{"name": "a/train", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0,
                         "reserved_share": 0.0},
                        {"name": "a", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_share": 0.0,
                         "segments": [{"name": "train", "share": 1.0, "utilization": 0.7}]}]}
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(doc))
    pf = load_portfolio(path)
    with pytest.raises(ConfigError) as err:
        load_scenario(list_presets()["montecarlo"], pf)
    assert any("scenario.utilization: two utilization series would both be named 'utilization/a/train'" in p
               for p in err.value.problems), err.value.problems
