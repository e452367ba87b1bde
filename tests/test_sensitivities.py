"""Gradients by reverse mode against central finite differences of the plain kernels.

For each random portfolio and grid point, every parameter of every cluster is moved
by +-h (float64, relative step 1e-5) and the model re-evaluated with the numpy
backend. Where the two one-sided differences agree the function is smooth there and
the gradient must match the central difference to 1e-5 relative; at a kink (they
differ) the gradient must be finite and equal one of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_axis, random_portfolio

pytest.importorskip("jax")

from stresstest import jax_adapter  # noqa: E402
from stresstest.backends import make_backend  # noqa: E402
from stresstest.engine import prepare  # noqa: E402
from stresstest.grid_config import Scenario  # noqa: E402
from stresstest.kernels.metrics import evaluate  # noqa: E402
from stresstest.kernels.params import PARAM_NAMES  # noqa: E402
from stresstest.kernels.shocks import shocked_params  # noqa: E402

REL_STEP = 1e-5


def _scenario(rng, pf, kind):
    if kind == "named":
        axes = [make_axis("utilization", ("utilization_training", "utilization_inference"), "shift",
                      rng.uniform(-0.3, 0.1, 2), shock="utilization", names=pf.cluster_names),
                make_axis("price", ("on_demand_price",), "scale", rng.uniform(0.4, 1.4, 2), shock="price",
                      names=pf.cluster_names)]
    else:
        axes = [make_axis("pue", ("pue",), "set", rng.uniform(1.05, 1.6, 2), clusters=[pf.cluster_names[0]],
                      param="pue", names=pf.cluster_names),
                make_axis("discount_rate", ("discount_rate",), "shift", rng.uniform(-0.05, 0.05, 2),
                      param="discount_rate", names=pf.cluster_names)]
    return Scenario("<test>", "grid", kind, axes)


def _portfolio(rng, n_clusters, horizon):
    pf = random_portfolio(rng, n_clusters=n_clusters, horizon=horizon)
    for c in pf.clusters:  # same static equity set for every seed: one compile per config
        c["debt_fraction"] = max(c["debt_fraction"], 0.2)
    return pf


def _fd_outputs(params, rate, horizon, c, steps):
    """For each (name, h) of `steps`: the outputs at theta - h, theta, theta + h of that
    parameter of cluster c (rows 3j .. 3j + 2 of one batch: each row is evaluated alone)."""
    n = len(steps)
    batch = {k: np.repeat(v, 3 * n, axis=0) for k, v in params.items()}
    for j, (name, h) in enumerate(steps):
        batch[name][3 * j, c] -= h
        batch[name][3 * j + 2, c] += h
    r = np.repeat(rate, 3 * n)
    with np.errstate(all="ignore"):
        out = evaluate(batch, r, horizon)
    return {name: {k: v[3 * j:3 * j + 3] for k, v in out.items()} for j, (name, _) in enumerate(steps)}


def _check(g, f_lo, f_0, f_hi, h, atol, what):
    d_plus, d_minus, central = (f_hi - f_0) / h, (f_0 - f_lo) / h, (f_hi - f_lo) / (2 * h)
    assert math.isfinite(g), f"{what}: gradient {g} not finite"
    smooth = abs(d_plus - d_minus) <= 1e-4 * (abs(d_plus) + abs(d_minus)) + 2 * atol
    if smooth:
        assert abs(g - central) <= 1e-5 * abs(central) + atol, f"{what}: grad {g} vs FD {central}"
        return "smooth"
    near = min(abs(g - d_plus), abs(g - d_minus))
    assert near <= 1e-3 * max(abs(d_plus), abs(d_minus)) + atol, \
        f"{what}: kink, grad {g} vs one-sided {d_minus}, {d_plus}"
    return "kink"


CONFIGS = [("named", 3, 60), ("param", 2, 24)]


@pytest.mark.parametrize("kind,n_clusters,horizon", CONFIGS)
def test_gradients_match_finite_differences(kind, n_clusters, horizon, monkeypatch):
    if kind == "param":  # the reverse pass in sub-chunks of one scenario (a lax.map loop)
        monkeypatch.setattr(jax_adapter, "CPU_SUBCHUNK_SCM", 1)
    backend = make_backend("jax")
    counts = {"smooth": 0, "kink": 0, "points": 0}
    run = None
    for seed in range(13):
        rng = np.random.default_rng(7000 + seed)
        pf = _portfolio(rng, n_clusters, horizon)
        sc = _scenario(rng, pf, kind)
        if run is None:
            run = prepare(pf, sc, backend, sensitivities=True)
        # same shapes and static structure: reuse the compiled function with new inputs
        run._args = (
            {k: backend.asarray(v) for k, v in pf.base_arrays().items()},
            backend.asarray(np.asarray(pf.discount_rate)),
            tuple(backend.asarray(a.values) for a in sc.axes),
        )
        out = next(run.chunks()).outputs
        for flat in range(sc.size):
            params, rate = shocked_params(pf.base_arrays(), np.asarray(pf.discount_rate),
                                          tuple(a.spec for a in sc.axes),
                                          tuple(a.values for a in sc.axes), np.array([flat]))
            params = {k: np.broadcast_to(v, (1, n_clusters)).copy() for k, v in params.items()}
            rate = np.broadcast_to(rate, (1,)).copy()
            counts["points"] += 1
            for c in range(n_clusters):
                # client_loss_month = never (not finite) is left out
                steps = [(name, REL_STEP * max(abs(params[name][0, c]), 1.0)) for name in PARAM_NAMES
                         if math.isfinite(params[name][0, c])]
                moved = _fd_outputs(params, rate, horizon, c, steps)
                for name, h in steps:
                    k, theta, f = PARAM_NAMES.index(name), params[name][0, c], moved[name]
                    where = f"seed {seed} point {flat} cluster {c} {name}={theta:g}"
                    scale = abs(f["npv"][1]) + 1.0
                    atol_money = 1e-12 * scale / h
                    counts[_check(out["grad_npv"][flat, c, k], *f["npv"], h, atol_money,
                                  "npv " + where)] += 1
                    _check(out["grad_cluster_npv"][flat, c, k], *f["cluster_npv"][:, c], h,
                           1e-12 * (abs(f["cluster_npv"][1, c]) + 1.0) / h, "cluster npv " + where)
                    _check(out["grad_roi"][flat, c, k], *f["roi"], h, 1e-13 / h, "roi " + where)
                    if np.isfinite(f["irr"]).all() and math.isfinite(out["irr"][flat]):
                        _check(out["grad_irr"][flat, c, k], *f["irr"], h, 1e-11 / h, "irr " + where)
                    assert out["npv_per_pct"][flat, c, k] == pytest.approx(
                        out["grad_npv"][flat, c, k] * theta * 0.01, rel=1e-12, abs=1e-9)
            # discount rate: portfolio and per-cluster NPV
            h = REL_STEP
            r3 = rate[0] + np.array([-h, 0.0, h])
            p3 = {k: np.repeat(v, 3, axis=0) for k, v in params.items()}
            f = evaluate(p3, r3, horizon)
            _check(out["grad_npv_discount_rate"][flat], *f["npv"], h, 1e-12 * abs(f["npv"][1]) / h, "dr")
            for c in range(n_clusters):
                _check(out["grad_cluster_npv_discount_rate"][flat, c], *f["cluster_npv"][:, c], h,
                       1e-12 * (abs(f["cluster_npv"][1, c]) + 1) / h, "cluster dr")
    assert counts["points"] >= 50
    assert counts["smooth"] > 10 * counts["kink"]  # kinks are the exception, not the rule


def test_slopes_along_axes_match_finite_differences():
    """slope_<output>: derivative along each axis through the shocks (clipping included)."""
    backend = make_backend("jax")
    rng = np.random.default_rng(99)
    pf = _portfolio(rng, 2, 36)
    sc = _scenario(rng, pf, "named")
    run = prepare(pf, sc, backend, sensitivities=True)
    out = next(run.chunks()).outputs
    for flat in range(sc.size):
        idx = np.unravel_index(flat, sc.shape)
        for a, axis in enumerate(sc.axes):
            v0 = axis.values[idx[a]]
            h = 1e-6 * max(abs(v0), 1.0)
            vals = []
            for dv in (-h, 0.0, h):
                point = [ax.values[i:i + 1].copy() for ax, i in zip(sc.axes, idx)]
                point[a] = point[a] + dv
                p, r = shocked_params(pf.base_arrays(), np.asarray(pf.discount_rate),
                                      tuple(x.spec for x in sc.axes), tuple(point), np.array([0]))
                p = {k: np.broadcast_to(v, (1, 2)) for k, v in p.items()}
                vals.append(evaluate(p, np.broadcast_to(r, (1,)), pf.horizon_months))
            for name, atol in (("npv", 1e-12 * abs(vals[1]["npv"][0]) / h), ("roi", 1e-13 / h),
                               ("irr", 1e-11 / h)):
                f = [v[name][0] for v in vals]
                if np.isfinite(f).all():
                    _check(out["slope_" + name][flat, a], *f, h, atol, f"slope {name} {axis.name}")


def test_sensitivities_independent_of_subchunks(monkeypatch):
    """The CPU's reverse pass runs in sub-chunks (padded): any size gives the same numbers."""
    backend = make_backend("jax")
    rng = np.random.default_rng(11)
    pf = _portfolio(rng, 3, 30)
    sc = Scenario("<test>", "grid", "named", [
        make_axis("utilization", ("utilization_training", "utilization_inference"), "shift",
              np.linspace(-0.3, 0.1, 5), shock="utilization", names=pf.cluster_names),
        make_axis("price", ("on_demand_price",), "scale", np.array([0.5, 0.9, 1.3]), shock="price",
              names=pf.cluster_names)])
    results = []
    for scm in (2 * 3 * 31, 10**9):  # sub-chunks of 2 (7 padded to 8), whole
        monkeypatch.setattr(jax_adapter, "CPU_SUBCHUNK_SCM", scm)
        run = prepare(pf, sc, backend, chunk_size=7, sensitivities=True)  # 7 + 7 + 1 (padded)
        chunks = list(run.chunks())
        results.append({k: np.concatenate([c.outputs[k] for c in chunks]) for k in chunks[0].outputs})
    monkeypatch.setattr(jax_adapter, "CPU_SUBCHUNK_SCM", 3 * 3 * 31)
    assert jax_adapter.cpu_subchunk(3, 31) == 2  # 3 scenarios' worth: the power of two below
    monkeypatch.undo()
    assert jax_adapter.cpu_subchunk(3, 31) == 128  # the default: 12288 // 93 = 132, a power of two below
    for other in results[1:]:
        for k, v in results[0].items():
            np.testing.assert_allclose(other[k], v, rtol=1e-12, atol=1e-9, err_msg=k)
    assert results[0]["grad_npv"].shape == (15, 3, len(PARAM_NAMES))


def test_gradients_finite_at_kinks():
    """Parameters sitting exactly on a clip or ramp bound still give finite gradients."""
    backend = make_backend("jax")
    rng = np.random.default_rng(5)
    pf = _portfolio(rng, 2, 24)
    c = pf.clusters[0]
    c.update(delivery_months=3.0, next_gen_month=12.0, renewal_rate=0.0, price_decline=1.0,
             utilization_training=1.0, utilization_inference=1.0, reserved_share=1.0,
             interest_rate=0.0, energy_escalation=-1.0)
    sc = _scenario(rng, pf, "named")
    run = prepare(pf, sc, backend, sensitivities=True)
    out = next(run.chunks()).outputs
    for name in ("grad_npv", "grad_roi", "grad_cluster_npv", "npv_per_pct", "slope_npv"):
        assert np.isfinite(out[name]).all(), name
    assert np.isfinite(out["grad_irr"][np.isfinite(out["irr"])]).all()


def test_sensitivities_need_jax(tmp_path):
    from click.testing import CliRunner

    from stresstest.cli import main

    out = tmp_path / "o.h5"
    r = CliRunner().invoke(main, ["run", "-s", "smoke", "-o", str(out), "--backend", "numpy",
                                  "--sensitivities"])
    assert r.exit_code == 2 and "need the JAX backend" in r.output
    assert not out.exists()


def test_sensitivity_file_opens_labelled(smoke_sensitivities):
    import xarray as xr

    out = smoke_sensitivities
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds["grad_npv"].dims == ("utilization", "price", "cluster", "parameter")
        assert ds["slope_irr"].dims == ("utilization", "price", "axis")
        assert list(ds["parameter"].values) == list(PARAM_NAMES)
        assert list(ds["axis"].values) == ["utilization", "price"]
        assert ds["grad_npv"].attrs["units"] == "USD per unit of the parameter"
        g = ds["grad_npv"].sel(utilization=0.0, price=1.0, parameter="on_demand_price")
        assert (g > 0).all()  # a higher rent never lowers NPV
