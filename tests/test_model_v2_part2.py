"""Version 2, part 2 (issue 27: order month and capex decline, optimization programmes,
the platform layer) audited against the plain-loop reference, every feature of version 2
at once.

- Random portfolios mixing everything (helpers.random_portfolio_v2b: explicit contracts
  and segments with industries, implied ones, order months 0..T/2 with capex declines,
  programmes with and without a start month, a platform layer or none), written as YAML
  and loaded as a user's file is, each at zipped random points (helpers.random_axes_v2b:
  version 1 keys, the discount rate, named shocks, item paths, and axes on order_month,
  capex_decline, optimization.<field> and platform.<field>, some per cluster, resolved
  as a grid file's: a programme's field moves the clusters that run one): every output,
  the clusters' and the portfolio's, revenue by industry in Portfolio.industries' order
  (the platform's label last), optimization_cost, platform_npv and platform_revenue, to
  1e-9 relative (helpers.assert_close's absolute floors; NaN and inf where the reference
  has them). numpy: 25 portfolios x 8 points (200 pairs); JAX, and CuPy on a GPU: 6 x 34
  each (204). The draws leave out what the last group below covers (a shock on a start
  month the file leaves to the default rule; two axes on one order month, launch month
  or adoption time) and capex declines past 60 %/yr (helpers.CAPEX_DECLINE_MAX: nearly
  free GPUs put the IRR past the solver's ladder).
- The seeds of part 1's generator that disagreed while the reference balanced the
  shares after each shock.
- Gradients of the NPVs with respect to capex_decline, optimization.energy_saving,
  optimization.cost, platform.take_rate and platform.margin against central finite
  differences of the reference: in the file's values by JAX through the kernels, the
  shocks of a point (scales and shifts of those fields among them) included; and the
  runs' sensitivities (engine.prepare(..., sensitivities=True): grad_npv,
  grad_cluster_npv, NaN where a cluster runs no programme).
- Minimal cases where the kernels once parted from MODEL.md: a shock on a programme's
  start month that the file leaves to the default rule; two shocks on an order or
  launch month (each clipped to the horizon) or on an adoption time (unclipped).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from helpers import (
    compare_v2_with_reference,
    evaluate_zipped,
    is_path_axis,
    item_path_axis,
    load_portfolio_doc,
    random_axes_v2,
    random_axes_v2b,
    random_portfolio_v2,
    random_portfolio_v2b,
    reference_v2_at,
    scalar_axis,
)

from stresstest.backends import jax_importable, make_backend
from stresstest.engine import prepare, sensitivity_parameters
from stresstest.grid_config import Axis, Scenario
from stresstest.kernels.metrics import evaluate
from stresstest.kernels.params import V2_SCALARS, named_targets
from stresstest.kernels.shocks import AxisSpec, apply_axis_values
from stresstest.programmes import START

NUMPY_SEEDS, NUMPY_POINTS = range(25), 8
COMPILED_SEEDS, COMPILED_POINTS, COMPILED_HORIZON = range(2000, 2006), 34, 37

# ------------------------------------------------------------------ random portfolios


def _drawn(seed, n_points, tmp_path, horizon=None):
    """A random portfolio of every feature (the file's dict, and as loaded from its YAML
    file) and its axes."""
    rng = np.random.default_rng(seed)
    doc = random_portfolio_v2b(rng, horizon=horizon)
    pf = load_portfolio_doc(tmp_path, doc)
    return doc, pf, random_axes_v2b(rng, pf, n_points)


@pytest.mark.parametrize("seed", NUMPY_SEEDS)
def test_random_v2b_portfolios_match_reference_numpy(seed, tmp_path):
    _, pf, axes = _drawn(seed, NUMPY_POINTS, tmp_path)
    outputs = evaluate_zipped(pf, axes, make_backend("numpy"))
    assert compare_v2_with_reference(pf, axes, outputs, range(NUMPY_POINTS)) == NUMPY_POINTS


@pytest.mark.parametrize("seed", COMPILED_SEEDS)
def test_random_v2b_portfolios_match_reference_compiled(seed, compiled_backend, tmp_path):
    """JAX (and CuPy on a GPU): fewer portfolios, more points each, at a horizon of 37
    months (a compile apiece, which grows with the horizon)."""
    _, pf, axes = _drawn(seed, COMPILED_POINTS, tmp_path, horizon=COMPILED_HORIZON)
    outputs = evaluate_zipped(pf, axes, compiled_backend)
    assert compare_v2_with_reference(pf, axes, outputs, range(COMPILED_POINTS)) == COMPILED_POINTS


def test_the_random_portfolios_mix_every_feature(tmp_path):
    """The draws of the two tests above hold every form and every kind of axis."""
    seen, moved = set(), set()
    for seed, n_points, horizon in ([(s, NUMPY_POINTS, None) for s in NUMPY_SEEDS]
                                    + [(s, COMPILED_POINTS, COMPILED_HORIZON) for s in COMPILED_SEEDS]):
        doc, pf, axes = _drawn(seed, n_points, tmp_path, horizon)
        seen.add("platform" if "platform" in doc["portfolio"] else "no platform")
        for c, items, s in zip(doc["clusters"], pf.items, pf.scalars):
            seen.add("itemised cluster" if items.explicit else "version 1 cluster")
            seen.update(k for k in ("contracts", "segments", "capex_decline") if k in c)
            if any(it.get("industry") for kind in ("contracts", "segments") for it in c.get(kind, [])):
                seen.add("industry")
            if c.get("order_month", 0) > 0:
                seen.add("ordered later")
            if s.programme:
                seen.add("start given" if START in s.values else "start by default")
        for a in axes:
            if is_path_axis(a):
                moved.add("item path")
            elif a.shock is not None:
                moved.add("named shock")
            elif a.param in V2_SCALARS:
                moved.add(a.param.partition(".")[0])
            else:
                moved.add("discount rate" if a.param == "discount_rate" else "version 1 key")
    assert seen == {"platform", "no platform", "version 1 cluster", "itemised cluster", "contracts", "segments",
                    "capex_decline", "industry", "ordered later", "start given", "start by default"}
    assert moved == {"item path", "named shock", "discount rate", "version 1 key", "order_month", "capex_decline",
                     "optimization", "platform"}


# ------------------------------------------------------------------ part 1's seeds


@pytest.mark.parametrize("seed", [27, 58, 77, 258])
def test_part_1_seeds_with_two_share_shocks_match_reference(seed, tmp_path):
    """Part 1's generator at the seeds whose points hold two share shocks of one kind:
    they disagreed while the reference balanced the shares after each shock, not once
    per point as the kernels do (docs/model.md, "Order of shocks at a point")."""
    rng = np.random.default_rng(seed)
    pf = load_portfolio_doc(tmp_path, random_portfolio_v2(rng))
    axes = random_axes_v2(rng, pf, 8)
    outputs = evaluate_zipped(pf, axes, make_backend("numpy"))
    assert compare_v2_with_reference(pf, axes, outputs, range(8)) == 8


# ------------------------------------------------------------------ gradients

# Every feature, points and fields away from kinks (months off whole numbers, no clip
# binding): the NPVs are linear in the programme's cost and energy saving and in the
# platform's take rate and margin, smooth in the capex decline.
GRADIENT_DOC = {
    "portfolio": {"name": "gradients", "horizon_months": 48, "discount_rate": 0.09,
                  "platform": {"take_rate": 0.05, "margin": 0.6, "users_max": 3000.0, "fee_per_user_month": 25.0,
                               "launch_month": 4, "build_cost": 2e5, "run_cost_per_year": 1e5}},
    "clusters": [
        {"name": "first", "gpus": 512, "capex_per_gpu": 32000.0, "on_demand_price": 2.4, "reserved_price": 2.1,
         "top_client_share": 0.5, "client_loss_month": 30.5, "debt_fraction": 0.4, "delivery_months": 2.5,
         "next_gen_month": 30.5, "capex_decline": 0.1,
         "optimization": {"cost": 2e5, "cost_per_year": 1e5, "ramp_months": 4.0, "utilization_gain": 0.03,
                          "energy_saving": 0.15, "opex_saving": 0.1}},
        {"name": "second", "gpus": 256, "capex_per_gpu": 30000.0, "on_demand_price": 2.4, "order_month": 9,
         "capex_decline": 0.15, "debt_fraction": 0.3, "delivery_months": 3.5, "next_gen_month": 30.5,
         "contracts": [{"name": "bank", "share": 0.3, "price": 2.3, "term_months": 13.7, "industry": "finance"}],
         "segments": [{"name": "train", "share": 0.7, "utilization": 0.75},
                      {"name": "shop", "share": 0.3, "industry": "retail"}],
         "optimization": {"start_month": 14, "energy_saving": 0.2, "cost": 1e5}},
        {"name": "third", "gpus": 128, "capex_per_gpu": 28000.0, "on_demand_price": 2.0, "reserved_share": 0.0,
         "order_month": 20, "capex_decline": -0.05, "delivery_months": 1.5, "next_gen_month": 30.5},
    ],
}
GRADIENT_FIELDS = ("capex_decline", "optimization.energy_saving", "optimization.cost", "platform.take_rate",
                   "platform.margin")


def _gradient_point(pf) -> list:
    """One point of shocks on both sides of the fields: a named shock, an item path and
    scales and shifts of the fields themselves (the slope then carries their factor)."""
    price = Axis("price", AxisSpec("price", named_targets("price", True), "scale"), np.array([0.9]), "price",
                 None, None)
    return [price, item_path_axis(pf, "segments.shop.utilization", "shift", [-0.05]),
            scalar_axis(pf, "capex_decline", "scale", [1.2]), scalar_axis(pf, "optimization.cost", "scale", [1.5]),
            scalar_axis(pf, "platform.take_rate", "shift", [0.02]), scalar_axis(pf, "platform.margin", "scale", [0.9])]


@pytest.fixture(scope="module")
def gradients(tmp_path_factory):
    """The portfolio of GRADIENT_DOC, its point, and the derivatives of npv,
    cluster_npv and platform_npv in each of GRADIENT_FIELDS' file values, by JAX
    through the kernels: the shocks of the point (apply_axis_values), then every
    output (kernels.metrics.evaluate); one compile for them all. name -> output ->
    [C] ([C, C] for cluster_npv, the cluster moved last; [1] for the platform's)."""
    if not jax_importable():
        pytest.skip("jax is not installed")
    import jax

    pf = load_portfolio_doc(tmp_path_factory.mktemp("gradients"), GRADIENT_DOC)
    axes = _gradient_point(pf)
    backend = make_backend("jax", "float64")
    base = {k: backend.asarray(v) for k, v in pf.base_arrays().items()}
    rate = backend.asarray(np.asarray(pf.discount_rate))
    specs = tuple(a.spec for a in axes)
    values = tuple(backend.asarray(a.values) for a in axes)

    def outputs(fields):
        params, r = apply_axis_values({**base, **fields}, rate, specs, values)
        out = evaluate(params, r, pf.horizon_months)
        return {name: out[name][0] for name in ("npv", "cluster_npv", "platform_npv")}

    jacobian = jax.jit(jax.jacobian(outputs))({name: base[name] for name in GRADIENT_FIELDS})
    by_field = {name: {out: np.asarray(jacobian[out][name]) for out in jacobian} for name in GRADIENT_FIELDS}
    return pf, axes, by_field


def _reference_slopes(pf, axes, name: str, c: int) -> dict:
    """Central differences of the reference's npv, cluster_npv [C] and platform_npv in
    the file's value of `name` (of cluster c, or of the platform), every shock of the
    point applied after the move."""
    held = (pf.platform.values if name.startswith("platform.") else pf.scalars[c].values)[name]
    h = 1e-4 * max(abs(held), 1.0)
    ends = []
    for x in (held + h, held - h):
        moved = copy.deepcopy(pf)
        (moved.platform.values if name.startswith("platform.") else moved.scalars[c].values)[name] = x
        want = reference_v2_at(moved, axes, 0)[0]
        ends.append({"npv": want["portfolio"]["npv"], "platform_npv": want["v2"]["platform_npv"],
                     "cluster_npv": np.array([row["npv"] for row in want["clusters"]])})
    return {out: (ends[0][out] - ends[1][out]) / (2 * h) for out in ends[0]}


@pytest.mark.parametrize("name", GRADIENT_FIELDS)
def test_gradients_of_the_new_fields_against_finite_differences(name, gradients):
    """The derivatives of the portfolio's NPV, each cluster's and the platform's in each
    new field (a programme's: in the clusters that run one) equal the reference's
    central differences to 1e-6."""
    pf, axes, by_field = gradients
    got = by_field[name]
    moved = [0] if name.startswith("platform.") else [c for c, s in enumerate(pf.scalars) if name in s.values]
    for c in moved:
        want = _reference_slopes(pf, axes, name, c)
        for out, slope in want.items():
            np.testing.assert_allclose(got[out][..., c], slope, rtol=1e-6, atol=1e-6 * np.max(np.abs(slope)),
                                       err_msg=f"{name} of cluster {c}: {out}")
    assert np.any(got["npv"] != 0.0), name


@pytest.fixture(scope="module")
def engine_gradients(tmp_path_factory):
    """The portfolio of GRADIENT_DOC at one grid point of shocks that leave GRADIENT_FIELDS
    as the file gives them (the price and an item path), through the runs' sensitivities
    (engine.prepare(..., sensitivities=True) on JAX): (portfolio, axes, outputs of the
    point, the parameter coordinate)."""
    if not jax_importable():
        pytest.skip("jax is not installed")
    pf = load_portfolio_doc(tmp_path_factory.mktemp("engine"), GRADIENT_DOC)
    axes = _gradient_point(pf)[:2]
    run = prepare(pf, Scenario("<gradients>", "grid", "gradients", axes), make_backend("jax", "float64"),
                  sensitivities=True)
    outputs = {k: v[0] for k, v in next(run.chunks()).outputs.items()}
    return pf, axes, outputs, sensitivity_parameters(pf)


@pytest.mark.parametrize("name", GRADIENT_FIELDS)
def test_the_runs_sensitivities_of_the_new_fields_against_finite_differences(name, engine_gradients):
    """The sensitivities' columns of the new fields (docs/model.md, "Sensitivities"):
    grad_npv, the portfolio's NPV in the cluster's value (the platform's in every
    cluster's row), and grad_cluster_npv, the cluster's own NPV (the platform's: 0),
    equal the reference's central differences to 1e-6; NaN in the rows of the clusters
    that run no programme."""
    pf, axes, out, parameters = engine_gradients
    j = parameters.index(name)
    for c, scalars in enumerate(pf.scalars):
        if name.startswith("optimization.") and not scalars.programme:
            assert math.isnan(out["grad_npv"][c, j]) and math.isnan(out["grad_cluster_npv"][c, j]), c
            continue
        want = _reference_slopes(pf, axes, name, 0 if name.startswith("platform.") else c)
        own = 0.0 if name.startswith("platform.") else want["cluster_npv"][c]
        for got, slope, what in ((out["grad_npv"][c, j], want["npv"], "npv"),
                                 (out["grad_cluster_npv"][c, j], own, "cluster npv")):
            assert got == pytest.approx(slope, rel=1e-6, abs=1e-6 * max(abs(want["npv"]), 1.0)), (name, c, what)


# ------------------------------------------------------------------ where the kernels part from MODEL.md

# One GPU on demand at full utilization, a flat price, no cost but a programme's or the
# platform's, a high discount rate so that a month's difference shows in the NPV.
ONE_GPU = {"name": "a", "gpus": 1, "capex_per_gpu": 1000.0, "on_demand_price": 1.0, "reserved_share": 0.0,
           "utilization_training": 1.0, "utilization_inference": 1.0, "delivery_months": 2.0,
           "price_decline": 0.0, "kw_per_gpu": 0.0, "software_per_gpu_month": 0.0, "maintenance_rate": 0.0,
           "tax_rate": 0.0}


def _one_gpu(tmp_path, cluster=None, platform=None):
    block = {"name": "one", "horizon_months": 24, "discount_rate": 0.5}
    if platform is not None:
        block["platform"] = platform
    return load_portfolio_doc(tmp_path, {"portfolio": block, "clusters": [{**ONE_GPU, **(cluster or {})}]})


@pytest.mark.parametrize("op, value", [("set", 8.0), ("shift", 5.0)])
def test_a_default_start_month_moves_under_a_shock(op, value, tmp_path):
    """A one-off cost of 1000 at the start month: the default start is go-live, month
    2; set 8 starts it at month 8, a shift of 5 at month 7 (the reference: a scale or
    shift acts on the default resolved at the shock)."""
    pf = _one_gpu(tmp_path, {"optimization": {"cost": 1000.0}})
    axes = [scalar_axis(pf, "optimization.start_month", op, [value])]
    assert compare_v2_with_reference(pf, axes, evaluate_zipped(pf, axes, make_backend("numpy")), [0]) == 1


@pytest.mark.parametrize("target, first, second", [
    ("order_month", ("set", 30.0), ("scale", 0.5)),  # 30 -> 24, then 12 (kernels: 15)
    ("platform.launch_month", ("set", 30.0), ("scale", 0.5)),  # likewise
    ("platform.adoption_months", ("set", -1.0), ("shift", 7.0)),  # -1, then 6 (kernels: 0, then 7)
])
def test_two_shocks_on_a_month_clip_as_model_md_says(target, first, second, tmp_path):
    """Two axes on one month field at a point, the reference (MODEL.md, "Addressing the
    new fields": each shocked value clipped to its range) against the kernels; T = 24."""
    pf = _one_gpu(tmp_path, platform={"take_rate": 0.5, "users_max": 100.0, "fee_per_user_month": 10.0,
                                      "margin": 1.0, "tax_rate": 0.0})
    axes = [scalar_axis(pf, target, op, [value]) for op, value in (first, second)]
    assert compare_v2_with_reference(pf, axes, evaluate_zipped(pf, axes, make_backend("numpy")), [0]) == 1
