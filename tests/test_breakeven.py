"""Breakeven: the solved value, substituted back into the full model, meets the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import random_portfolio

pytest.importorskip("jax")

from stresstest.breakeven import breakeven, parse_target  # noqa: E402
from stresstest.cli import main  # noqa: E402
from stresstest.config import ConfigError, load_portfolio  # noqa: E402
from stresstest.presets import list_presets  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_portfolio(list_presets()["example"])


@pytest.mark.parametrize("param,target", [
    ("price", "npv=0"), ("utilization", "npv=-5e7"), ("energy", "npv=-6e7"),
    ("on_demand_price", "irr=0.08"), ("capex_per_gpu", "npv=0"), ("obsolescence", "npv=-4.5e7"),
])
def test_breakeven_meets_target_when_substituted_back(example, param, target):
    name, level = parse_target(target)
    rows = breakeven(example, param, target)
    assert len(rows) == 1 + len(example.clusters)
    solved = [r for r in rows if r.value is not None]
    assert solved, "expected at least one breakeven"
    for r in solved:
        assert r.bracket[0] <= r.value <= r.bracket[1]
        assert r.achieved == pytest.approx(level, rel=1e-8, abs=1e-8 * max(1.0, abs(level)) + 1e-6 * (name == "npv"))


def test_min_dscr_target_on_a_cluster(example):
    rows = breakeven(example, "on_demand_price", "min_dscr=1.25", cluster="ashburn-h100")
    assert len(rows) == 1 and rows[0].scope == "ashburn-h100"
    assert rows[0].value is not None
    assert rows[0].achieved == pytest.approx(1.25, rel=1e-8)


def test_no_breakeven_is_an_answer(example):
    rows = breakeven(example, "price", "npv=0", cluster="dallas-h100", bracket=(0.0, 0.5))
    assert rows[0].value is None and rows[0].bracket == (0.0, 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_random_portfolios(seed):
    rng = np.random.default_rng(seed)
    pf = random_portfolio(rng, n_clusters=2, horizon=48)
    for r in breakeven(pf, "price", "npv=0", bracket=(0.0, 20.0)):
        if r.value is not None:
            assert abs(r.achieved) <= 1e-8 * sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)


def test_bad_target_and_param(example):
    with pytest.raises(ConfigError, match="--target"):
        parse_target("ebitda=3")
    with pytest.raises(ConfigError, match="unknown parameter or shock 'nope'"):
        breakeven(example, "nope", "npv=0")


def test_cli_json_and_text():
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert rows[0]["scope"] == "portfolio" and rows[0]["value"] is not None
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--cluster", "dallas-h100",
                                  "--range", "0", "0.5"])
    assert r.exit_code == 0 and "no breakeven in [0, 0.5]" in r.output
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--target", "foo=1"])
    assert r.exit_code == 2 and "--target" in r.output


def test_curve_over_an_axis_substitutes_back_in_the_reference(tmp_path, example):
    import reference_model as ref
    import xarray as xr

    out = tmp_path / "curve.h5"
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--over", "utilization",
                                  "-s", "smoke", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["breakeven"].dims == ("utilization", "scope")
        assert list(ds["scope"].values) == ["portfolio"] + example.cluster_names
        curve = ds["breakeven"].sel(scope="portfolio")
        for u, price in zip(ds["utilization"].values, curve.values):
            moved = [ref.apply_shock(ref.apply_shock(c, "utilization", "shift", float(u)),
                                     "price", "scale", float(price)) for c in example.clusters]
            npv = ref.evaluate(moved, example.horizon_months, example.discount_rate)["portfolio"]["npv"]
            assert abs(npv) <= 1e-8 * sum(c["gpus"] * c["capex_per_gpu"] for c in example.clusters)
        assert curve.values[0] > curve.values[-1]  # lower utilization needs a higher price


def test_curve_unknown_axis(tmp_path):
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--over", "nope", "-s", "smoke",
                                  "-o", str(tmp_path / "c.h5")])
    assert r.exit_code == 2 and "has no axis 'nope'" in r.output
    assert not (tmp_path / "c.h5").exists()
