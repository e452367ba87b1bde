"""Numerical edges: degenerate markets and sizes give finite results that match the plain
reference; non-finite outputs carry their meaning in the file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference_model as ref
from helpers import random_cluster

from stresstest.config import Portfolio
from stresstest.engine import evaluate_base

EDGES = {
    "utilization 0 everywhere": dict(utilization_training=0.0, utilization_inference=0.0, reserved_share=0.0),
    "price 0": dict(on_demand_price=0.0, reserved_price=0.0),
    "energy price 0": dict(energy_price=0.0),
    "1 GPU": dict(gpus=1.0),
    "10^6 GPUs": dict(gpus=1e6),
}


def _pf(overrides, horizon=60, seed=0):
    rng = np.random.default_rng(seed)
    clusters = []
    for _ in range(2):
        c = random_cluster(rng)
        c.update(overrides)
        clusters.append(c)
    return Portfolio(path="<edge>", name="edge", currency="USD", horizon_months=horizon, discount_rate=0.1,
                     clusters=clusters, cluster_names=["a", "b"],
                     labels=[{"gpu_market": "a", "power_market": "a"}, {"gpu_market": "b", "power_market": "b"}])


def _check_against_reference(pf):
    got = evaluate_base(pf)
    want = ref.evaluate(pf.clusters, pf.horizon_months, pf.discount_rate)
    for k in ("npv", "roi", "revenue", "energy_cost", "opex", "ebitda"):
        assert math.isfinite(got[k]), k
        assert got[k] == pytest.approx(want["portfolio"][k], rel=1e-9, abs=1e-6), k
    for k in ("irr", "equity_irr", "min_dscr", "payback_months"):
        w = want["portfolio"][k]
        if math.isnan(w):
            assert math.isnan(got[k]), k
        elif math.isinf(w):
            assert got[k] == w, k
        else:
            assert got[k] == pytest.approx(w, rel=1e-7, abs=1e-9), k
    return got


@pytest.mark.parametrize("name", list(EDGES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_markets_and_sizes_are_finite_and_match_the_reference(name, seed):
    got = _check_against_reference(_pf(EDGES[name], seed=seed))
    if name == "price 0":
        assert got["revenue"] == 0.0
    if name == "energy price 0":
        assert got["energy_cost"] == 0.0


def test_600_month_horizon_matches_the_reference():
    _check_against_reference(_pf({}, horizon=600, seed=4))


def test_irr_nan_and_its_meaning_is_in_the_file(tmp_path):
    """Price 0 and no resale: the flows never turn positive, no rate zeroes them."""
    import xarray as xr
    from click.testing import CliRunner

    from stresstest.cli import main

    p = tmp_path / "p.yaml"
    p.write_text("portfolio: {name: dead}\nclusters:\n  - {name: a, gpus: 8, capex_per_gpu: 30000, "
                 "on_demand_price: 0, reserved_share: 0, resale_decline: 1, tax_rate: 0}\n")
    s = tmp_path / "s.yaml"
    s.write_text("scenario: {kind: grid, axes: [{shock: energy, values: [1.0, 2.0]}]}\n")
    r = CliRunner().invoke(main, ["run", str(p), "-s", str(s), "-o", str(tmp_path / "o.h5"), "--backend", "numpy"])
    assert r.exit_code == 0, r.output
    assert "irr 2" in r.output and "no IRR root" in r.output  # counted, with the model's reason
    with xr.open_dataset(tmp_path / "o.h5", engine="h5netcdf") as ds:
        assert np.isnan(ds["irr"].values).all()
        assert "no rate zeroes the flows" in ds["irr"].attrs["nonfinite_means"]
        assert "never paid back" in ds["payback_months"].attrs["nonfinite_means"]


def test_contract_cycles_are_exact_at_their_boundaries_on_every_backend():
    """floor(x / M) as the plain reference takes it (Python's correctly rounded division),
    for the months x a cycle count sees (t - 1 - t_o - D: whole and half months) and
    terms whole or not: XLA's division on the CPU gives 24.5 / 24.5 just below 1, which
    put a renewal one cycle late on JAX (kernels/cashflows.cycles)."""
    import math

    from stresstest.jax_adapter import namespace  # float64 on, as every run has it
    from stresstest.kernels.cashflows import cycles

    jnp = namespace()
    xs = np.arange(0.0, 600.0, 0.5)
    for M in (24.5, 36.0, 23.7, 12.25, 1.0, 7.3, 3.3, 48.5):
        want = [float(math.floor(x / M)) for x in xs.tolist()]
        for xp in (np, jnp):
            got = np.asarray(cycles(xp, xp.asarray(xs), xp.asarray(M))).tolist()
            assert got == want, (xp.__name__, M, [(x, g, w) for x, g, w in zip(xs, got, want) if g != w][:3])
