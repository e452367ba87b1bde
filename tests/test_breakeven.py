"""Breakeven: the solved value, substituted back into the full model, meets the target."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import random_portfolio

pytest.importorskip("jax")

from stresstest.breakeven import breakeven, parse_target  # noqa: E402
from stresstest.cli import main  # noqa: E402
from stresstest.config import load_portfolio  # noqa: E402
from stresstest.kernels.params import NAMED_SHOCKS  # noqa: E402
from stresstest.presets import list_presets  # noqa: E402
from stresstest.validation import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_portfolio(list_presets()["example"])


@pytest.mark.parametrize("param,op,at,output", [
    ("price", "scale", 1.3, "npv"), ("utilization", "shift", -0.1, "npv"), ("energy", "scale", 2.5, "npv"),
    ("on_demand_price", "set", 3.5, "irr"), ("capex_per_gpu", "set", 40000.0, "npv"),
    ("obsolescence", "shift", -6.0, "npv"),
])
def test_breakeven_meets_target_when_substituted_back(example, param, op, at, output):
    # the target: the reference model's portfolio output at a value of the parameter, so
    # the portfolio has a breakeven whatever the example's numbers
    level = _ref_at(example, {param: (op, at)})[output]
    target = f"{output}={level!r}"
    name, _ = parse_target(target)
    rows = breakeven(example, param, target)
    assert len(rows) == 1 + len(example.clusters)
    solved = [r for r in rows if r.value is not None]
    assert rows[0].value is not None, rows[0]
    for r in solved:
        assert r.bracket[0] <= r.value <= r.bracket[1]
        assert r.achieved == pytest.approx(level, rel=1e-8, abs=1e-8 * max(1.0, abs(level)) + 1e-6 * (name == "npv"))
    # and in the reference model
    got = _ref_at(example, {param: (op, rows[0].value)})[output]
    assert got == pytest.approx(level, rel=1e-7, abs=1e-7 * (name == "irr") + _npv_tol(example) * (name == "npv"))


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
    for bad in ("npv=nan", "irr=-1", "equity_irr=-1.5", "payback_months=inf"):
        with pytest.raises(ConfigError, match="--target"):
            parse_target(bad)
    assert parse_target("equity_irr=0.15") == ("equity_irr", 0.15)
    assert parse_target("payback_months=36") == ("payback_months", 36.0)
    with pytest.raises(ConfigError, match="unknown parameter or shock 'nope'"):
        breakeven(example, "nope", "npv=0")


def test_cli_json_and_text():
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert rows[0]["scope"] == "portfolio" and rows[0]["value"] is not None
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--cluster", "dallas-h100",
                                  "--range", "0", "0.5"])
    assert r.exit_code == 0 and "no breakeven: NPV stays below 0 over the whole range [0, 0.5]" in r.output
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


# --------------------------------------------------------------------------- issue 24
# Answers in the units of what they move, weighted portfolio rows, which side of the
# target, equity IRR and payback targets, every scope along --over, --over refused on
# the parameter solved for. Every expected value is computed here from the portfolio's
# own numbers or by the plain reference model, never copied from an output; targets are
# the reference model's outputs at chosen values, so the tests hold whatever the
# example's numbers.


def _gpu_mean(pf, values, weights=None):
    w = [c["gpus"] for c in pf.clusters] if weights is None else weights
    return sum(wi * v for wi, v in zip(w, values)) / sum(w)


def _ref_at(pf, moves: dict, cluster: int | None = None) -> dict:
    """The reference model's outputs with `moves` {param or shock: (op, value)} applied to
    every cluster (cluster None) or to `cluster` alone; that scope's outputs."""
    import reference_model as ref

    moved = []
    for i, c in enumerate(pf.clusters):
        if cluster is None or i == cluster:
            for name, (op, v) in moves.items():
                c = ref.apply_shock(c, name, op, v)
        moved.append(c)
    out = ref.evaluate(moved, pf.horizon_months, pf.discount_rate)
    return out["portfolio"] if cluster is None else out["clusters"][cluster]


def _npv_tol(pf):
    return 1e-8 * sum(c["gpus"] * c["capex_per_gpu"] for c in pf.clusters)


def test_price_scale_in_usd_per_gpu_hour(example):
    """A price scale is also the on-demand price it gives: each cluster's price times the
    scale, the portfolio's GPU-weighted mean; setting that price meets the target."""
    prices = [c["on_demand_price"] for c in example.clusters]
    level = _ref_at(example, {"price": ("scale", 1.3)})["npv"]
    port = breakeven(example, "price", f"npv={level!r}")[0]
    assert port.value is not None
    assert port.unit == "USD per GPU-hour" and port.quantity == "on_demand_price"
    assert port.mean == "GPU-weighted mean"
    assert port.value_in_units == pytest.approx(port.value * _gpu_mean(example, prices), rel=1e-12)
    assert port.base_in_units == pytest.approx(_gpu_mean(example, prices), rel=1e-12)
    for i in (0, 4):  # a cluster with debt, one with most of its GPUs reserved
        name = example.cluster_names[i]
        level = _ref_at(example, {"price": ("scale", 1.3)}, i)["npv"]
        (r,) = breakeven(example, "price", f"npv={level!r}", cluster=name)
        assert r.value is not None and r.mean == ""
        assert r.value_in_units == pytest.approx(r.value * prices[i], rel=1e-12)
        # the price in USD per GPU-hour, set in the reference model, meets the target
        npv = _ref_at(example, {"on_demand_price": ("set", r.value_in_units)}, i)["npv"]
        assert abs(npv - level) <= _npv_tol(example)
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    for row, price in zip(data[1:], prices):
        assert row["unit"] == "USD per GPU-hour" and row["quantity"] == "on_demand_price"
        if row["value"] is not None:
            assert row["value_in_units"] == pytest.approx(row["value"] * price, rel=1e-12)
    solved = [(row, price) for row, price in zip(data[1:], prices) if row["value"] is not None]
    assert solved
    r = CliRunner().invoke(main, ["breakeven", "--param", "price"])
    row, price = solved[0]
    assert (f"{row['value']:.6g} -> on_demand_price {row['value'] * price:.6g} USD per GPU-hour   (base 1;"
            in r.output)
    if data[0]["value"] is not None:
        assert (f"-> on_demand_price {data[0]['value'] * _gpu_mean(example, prices):.6g} USD per GPU-hour, "
                "GPU-weighted mean   (base 1;") in r.output


def test_energy_utilization_obsolescence_in_units(example):
    """energy: USD per kWh (portfolio: weighted by facility power); utilization: the
    resulting on-demand utilization (training/inference blend, portfolio weighted by the
    on-demand GPUs); obsolescence: the resulting next_gen_month (portfolio GPU-weighted)."""
    cs = example.clusters

    def solved(shock, at, cluster=None):
        i = None if cluster is None else example.cluster_names.index(cluster)
        level = _ref_at(example, {shock: (NAMED_SHOCKS[shock][1], at)}, i)["npv"]
        rows = breakeven(example, shock, f"npv={level!r}", cluster=cluster)
        assert rows[0].value is not None
        return rows[0], i

    # energy
    power = [c["gpus"] * c["kw_per_gpu"] * c["pue"] for c in cs]
    energy = [c["energy_price"] for c in cs]
    port, _ = solved("energy", 2.5)
    assert port.unit == "USD per kWh" and port.quantity == "energy_price"
    assert port.mean == "mean weighted by facility power"
    assert port.value_in_units == pytest.approx(port.value * _gpu_mean(example, energy, power), rel=1e-12)
    r, i = solved("energy", 2.5, "phoenix-b200")
    assert r.value_in_units == pytest.approx(r.value * energy[i], rel=1e-12)
    level = _ref_at(example, {"energy": ("scale", 2.5)}, i)["npv"]
    npv = _ref_at(example, {"energy_price": ("set", r.value_in_units)}, i)["npv"]
    assert abs(npv - level) <= _npv_tol(example)

    # utilization: the blend of the shifted (clipped) utilizations
    def blend(c, v):
        ut = min(max(c["utilization_training"] + v, 0.0), 1.0)
        ui = min(max(c["utilization_inference"] + v, 0.0), 1.0)
        return (1 - c["inference_share"]) * ut + c["inference_share"] * ui

    port, _ = solved("utilization", -0.1)
    on_demand = [c["gpus"] * (1 - c["reserved_share"]) for c in cs]
    assert port.mean == "mean weighted by on-demand GPUs" and port.quantity == "on-demand utilization"
    assert port.value_in_units == pytest.approx(
        _gpu_mean(example, [blend(c, port.value) for c in cs], on_demand), rel=1e-12)
    r, i = solved("utilization", -0.1, "dallas-h100")
    assert r.value_in_units == pytest.approx(blend(cs[i], r.value), rel=1e-12)

    # obsolescence
    port, _ = solved("obsolescence", -6.0)
    assert port.unit == "month" and port.quantity == "next_gen_month"
    assert port.value_in_units == pytest.approx(
        _gpu_mean(example, [c["next_gen_month"] + port.value for c in cs]), rel=1e-12)
    r, i = solved("obsolescence", -6.0, "ashburn-h100")
    assert r.value_in_units == pytest.approx(cs[i]["next_gen_month"] + r.value)
    level = _ref_at(example, {"obsolescence": ("shift", -6.0)}, i)["npv"]
    npv = _ref_at(example, {"next_gen_month": ("set", r.value_in_units)}, i)["npv"]
    assert abs(npv - level) <= _npv_tol(example)


def test_portfolio_base_of_a_parameter_is_weighted(example):
    """The portfolio row of a parameter set in every cluster: its base is the clusters'
    GPU-weighted mean (energy_price: weighted by facility power), and the answer is the
    one value that, set in every cluster, meets the target."""
    cs = example.clusters
    prices = [c["on_demand_price"] for c in cs]
    level = _ref_at(example, {"on_demand_price": ("set", 3.5)})["npv"]
    port = breakeven(example, "on_demand_price", f"npv={level!r}")[0]
    assert port.base_value == pytest.approx(_gpu_mean(example, prices), rel=1e-12)
    assert port.base_value != pytest.approx(float(np.mean(prices)), rel=1e-6)
    assert port.base_note == "the clusters' GPU-weighted mean" and port.value_in_units == port.value
    npv = _ref_at(example, {"on_demand_price": ("set", port.value)})["npv"]
    assert abs(npv - level) <= _npv_tol(example)
    r = CliRunner().invoke(main, ["breakeven", "--param", "on_demand_price", "--target", f"npv={level!r}"])
    assert (f"{port.value:.6g} USD per GPU-hour in every cluster   (base {port.base_value:g}, "
            "the clusters' GPU-weighted mean;") in r.output
    power = [c["gpus"] * c["kw_per_gpu"] * c["pue"] for c in cs]
    port = breakeven(example, "energy_price", "npv=0")[0]
    assert port.base_value == pytest.approx(_gpu_mean(example, [c["energy_price"] for c in cs], power), rel=1e-12)


def test_no_breakeven_says_on_which_side(example):
    """No crossing: the answer says on which side of the target the output stays over the
    whole range, and its lowest and highest value there (the reference model's, at the
    scanned points)."""
    from stresstest.breakeven import N_SCAN

    i = example.cluster_names.index("phoenix-b200")
    scales = np.linspace(0, 5, N_SCAN)
    npvs = [_ref_at(example, {"price": ("scale", float(s))}, i)["npv"] for s in scales]
    below = min(npvs) - 1e6  # a target under every NPV of the range
    (r,) = breakeven(example, "price", f"npv={below!r}", cluster="phoenix-b200")
    assert r.status == "none" and r.side == "above"
    assert r.output_range == pytest.approx((min(npvs), max(npvs)), rel=1e-9)
    res = CliRunner().invoke(main, ["breakeven", "--param", "price", "--cluster", "phoenix-b200",
                                    "--target", f"npv={below!r}"])
    assert (f"no breakeven: NPV stays above {below / 1e6:.4g} M over the whole range [0, 5] "
            f"(from {min(npvs) / 1e6:.4g} M to {max(npvs) / 1e6:.4g} M; base 1)") in res.output
    res = CliRunner().invoke(main, ["breakeven", "--param", "price", "--cluster", "phoenix-b200",
                                    "--target", f"npv={below!r}", "--json"])
    (row,) = json.loads(res.output)
    assert row["side"] == "above" and row["output_range"] == pytest.approx([min(npvs), max(npvs)], rel=1e-9)
    above = max(npvs) + 1e6
    (r,) = breakeven(example, "price", f"npv={above!r}", cluster="phoenix-b200")
    assert r.side == "below" and r.output_range == pytest.approx((min(npvs), max(npvs)), rel=1e-9)
    # an IRR target: its side from NPV at the rate, its range the IRRs themselves
    irrs = [_ref_at(example, {"price": ("scale", float(s))}, i)["irr"] for s in (0.0, 5.0)]
    low = min(irrs) - 0.01
    (r,) = breakeven(example, "price", f"irr={low!r}", cluster="phoenix-b200")
    assert r.side == "above"
    assert r.output_range[0] == pytest.approx(min(irrs), rel=1e-7)  # the IRR rises with the price
    assert r.output_range[1] == pytest.approx(max(irrs), rel=1e-7)


def test_equity_irr_target(example):
    """equity_irr=R: the NPV of the equity flows at R is 0; the reference model's equity
    IRR at the solved value is R. A scope without debt has no equity IRR: no breakeven."""
    level = _ref_at(example, {"price": ("scale", 1.2)})["equity_irr"]
    rows = breakeven(example, "price", f"equity_irr={level!r}")
    port = rows[0]
    assert port.status == "solved" and port.achieved == pytest.approx(level, abs=1e-9)
    assert _ref_at(example, {"price": ("scale", port.value)})["equity_irr"] == pytest.approx(level, abs=1e-9)
    for r, c in zip(rows[1:], example.clusters):
        if c.get("debt_fraction", 0.0) == 0.0:
            assert r.status == "none" and r.side == "undefined" and r.value is None
    i = example.cluster_names.index("ashburn-h100")
    level = _ref_at(example, {"price": ("scale", 1.2)}, i)["equity_irr"]
    (r,) = breakeven(example, "price", f"equity_irr={level!r}", cluster="ashburn-h100")
    assert r.status == "solved"
    assert _ref_at(example, {"price": ("scale", r.value)}, i)["equity_irr"] == pytest.approx(level, abs=1e-9)
    # a debt fraction decides whether there is an equity IRR at all
    j = example.cluster_names.index("dallas-h100")
    level = _ref_at(example, {"debt_fraction": ("set", 0.4)}, j)["equity_irr"]
    (r,) = breakeven(example, "debt_fraction", f"equity_irr={level!r}", cluster="dallas-h100")
    assert r.status == "solved" and r.value > 0
    assert _ref_at(example, {"debt_fraction": ("set", r.value)}, j)["equity_irr"] == pytest.approx(level, abs=1e-9)
    res = CliRunner().invoke(main, ["breakeven", "--param", "price", "--target", "equity_irr=0.15",
                                    "--cluster", "ashburn-h100"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["breakeven", "--param", "price", "--target", "equity_irr=0.1",
                                    "--cluster", "dallas-h100"])
    assert res.exit_code == 0 and "equity IRR has no value over the whole range [0, 5] (no debt;" in res.output


def test_payback_target(example):
    """payback_months=M, solved on the output (a step-ish function): the reference
    model's payback at the solved value is M; where the payback stops happening (never)
    the output jumps over a target beyond the horizon."""
    level = _ref_at(example, {"price": ("scale", 1.4)})["payback_months"]
    assert math.isfinite(level)
    port = breakeven(example, "price", f"payback_months={level!r}")[0]
    assert port.status == "solved"
    assert _ref_at(example, {"price": ("scale", port.value)})["payback_months"] == pytest.approx(level, rel=1e-8)
    for name in example.cluster_names:
        i = example.cluster_names.index(name)
        level = _ref_at(example, {"capex_per_gpu": ("scale", 0.8)}, i)["payback_months"]
        if not math.isfinite(level):
            continue
        (r,) = breakeven(example, "capex_per_gpu", f"payback_months={level!r}", cluster=name)
        assert r.status == "solved", r
        assert _ref_at(example, {"capex_per_gpu": ("set", r.value)}, i)["payback_months"] == pytest.approx(
            level, rel=1e-8)
    # beyond the horizon: from never paid back to paid back within it, never 80 months
    i = example.cluster_names.index("dallas-h100")
    (r,) = breakeven(example, "price", "payback_months=80", cluster="dallas-h100")
    assert r.status == "jump" and r.value is None
    low, high = r.jump
    assert math.isinf(_ref_at(example, {"price": ("scale", low)}, i)["payback_months"])
    assert _ref_at(example, {"price": ("scale", high)}, i)["payback_months"] <= example.horizon_months
    assert math.isinf(r.jump_outputs[0]) and r.jump_outputs[1] <= example.horizon_months
    res = CliRunner().invoke(main, ["breakeven", "--param", "price", "--target", "payback_months=80",
                                    "--cluster", "dallas-h100"])
    assert res.exit_code == 0 and "(payback_months never -> " in res.output


def test_curve_prints_every_scope(tmp_path, example):
    """--over: a table with a row per axis value and a column per scope, the values those
    of the curve file."""
    import h5py

    out = tmp_path / "c.h5"
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--over", "utilization", "-s", "smoke",
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1].split() == ["utilization", "portfolio"] + example.cluster_names
    with h5py.File(out) as f:
        values, be, st = f["utilization"][()], f["breakeven"][()], f["status"][()]
        in_units = f["breakeven_in_units"][()]
        assert f["breakeven_in_units"].attrs["units"] == "USD per GPU-hour"
    for i, v in enumerate(values):
        cells = lines[2 + i].split()
        assert float(cells[0]) == v
        for j in range(len(example.clusters) + 1):
            if st[i, j] == 0:
                assert cells[1 + j] == f"{be[i, j]:.6g}"
            else:
                assert cells[1 + j] in ("above", "below")
    prices = [c["on_demand_price"] for c in example.clusters]
    np.testing.assert_allclose(in_units[:, 1:], be[:, 1:] * np.array(prices), rtol=1e-12)
    r = CliRunner().invoke(main, ["breakeven", "--param", "price", "--over", "utilization", "-s", "smoke",
                                  "-o", str(out), "--overwrite", "--json"])
    data = json.loads(r.output)
    assert data["unit"] == "USD per GPU-hour" and data["quantity"][0] == "on_demand_price"
    np.testing.assert_allclose(np.array(data["value_in_units"], dtype=float), in_units, rtol=1e-12)
    assert {s for row in data["side"] for s in row} <= {None, "above", "below"}


@pytest.mark.parametrize("param,over,axis", [
    ("price", "price", "{shock: price, values: [0.5, 1.0]}"),
    ("on_demand_price", "price", "{shock: price, values: [0.5, 1.0]}"),
    ("utilization", "utilization_inference", "{param: utilization_inference, op: shift, values: [-0.1, 0.0]}"),
    ("obsolescence", "next_gen_month",
     "{param: next_gen_month, op: set, values: [12, 24], clusters: [dallas-h100]}"),
])
def test_curve_along_what_the_param_moves_is_refused(tmp_path, monkeypatch, param, over, axis):
    """--over on an axis that moves what --param moves: exit 2, a clear message, before
    any work (nothing solved, no file)."""
    import stresstest.breakeven as be

    sc = tmp_path / "sc.yaml"
    sc.write_text(f"scenario:\n  kind: grid\n  axes:\n    - {axis}\n    - {{shock: energy, values: [1.0]}}\n")
    calls = []
    monkeypatch.setattr(be, "solve", lambda *a, **k: calls.append(1))
    out = tmp_path / "c.h5"
    r = CliRunner().invoke(main, ["breakeven", "--param", param, "--over", over, "-s", str(sc), "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert f"error: --over: axis '{over}' moves" in r.output and f"which --param {param} also moves" in r.output
    assert not calls and not out.exists()
    # another axis of the same scenario is fine
    monkeypatch.undo()
    r = CliRunner().invoke(main, ["breakeven", "--param", param, "--over", "energy", "-s", str(sc), "-o", str(out),
                                  "--cluster", "dallas-h100"])
    assert r.exit_code == 0, r.output
