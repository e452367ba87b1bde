"""Version 2 of the model (issue 26: contracts, segments, industries) audited three ways.

- Random version 2 portfolios (helpers.random_portfolio_v2), written as YAML files and
  loaded as a user's are, each at zipped random points (version 1 keys with every op,
  the discount rate, named shocks with their item targets, item paths on named,
  implied and "*" items, some per cluster): every output, revenue by industry included,
  against the plain-loop reference (tests/reference_model.py) to 1e-9. numpy: 24
  portfolios x 8 points (192 pairs); JAX, and CuPy on a GPU: 4 x 16 each (64 pairs).
- Version 1 portfolios against the same clusters rewritten in the file as explicit
  contracts "anchor" and "others" and one segment (reference_model.explicit_v2): every
  output to 1e-12, at the base case and under the shocks that act alike on both forms
  (the comment above EQUIVALENT_PATHS).
- A worked case, one contract lost at t_L and two segments with multipliers, through
  the runs' base case and a grid's route; a second contract and two path shocks; and
  the order of shocks at a point (segment shares balanced once, after every shock; the
  named utilization before item paths on either form of a pool): numbers computed by
  hand.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import reference_model as ref
from helpers import (
    MONEY,
    assert_close,
    compare_v2_with_reference,
    evaluate_zipped,
    item_path_axis,
    load_portfolio_doc,
    random_axes_v2,
    random_portfolio,
    random_portfolio_v2,
    random_scenario,
)

from stresstest.backends import make_backend
from stresstest.engine import evaluate_base
from stresstest.grid_config import Axis
from stresstest.items import KINDS, REPLACES
from stresstest.kernels.params import named_targets
from stresstest.kernels.shocks import AxisSpec

# ------------------------------------------------------------------ random portfolios


@pytest.mark.parametrize("seed", range(24))
def test_random_v2_portfolios_match_reference_numpy(seed, tmp_path):
    _check_v2_seed(seed, make_backend("numpy"), 8, tmp_path)


@pytest.mark.parametrize("seed", range(4))
def test_random_v2_portfolios_match_reference_compiled(seed, compiled_backend, tmp_path):
    """JAX (and CuPy on a GPU): fewer portfolios, more points each, at a horizon of 37
    months (a compile apiece, which grows with the horizon)."""
    _check_v2_seed(1000 + seed, compiled_backend, 16, tmp_path, horizon=37)


def _check_v2_seed(seed, backend, n_points, tmp_path, horizon=None):
    rng = np.random.default_rng(seed)
    pf = load_portfolio_doc(tmp_path, random_portfolio_v2(rng, horizon=horizon))
    assert pf.itemised and pf.model_version == 2
    axes = random_axes_v2(rng, pf, n_points)
    outputs = evaluate_zipped(pf, axes, backend)
    assert compare_v2_with_reference(pf, axes, outputs, range(n_points)) == n_points


# ------------------------------------------------------------------ the rewrite

# The shocks under which a version 1 cluster and its explicit rewrite give the same
# numbers (MODEL.md: the implied items are exactly version 1):
# - every version 1 key that the items do not replace, and the discount rate, every op;
# - the named shocks price, energy and obsolescence;
# - the named shock utilization, as shifts that clip neither u_T nor u_I of any cluster:
#   version 1 clips each, the rewrite clips their blend (1 - w) u_T + w u_I, so the two
#   part where a clip binds;
# - these replaced keys as the one contract path that holds the same number with the
#   same range, same op and value on both sides (reserved_share and top_client_share are
#   left out: the rewrite's two shares clip separately, v1's product r0 k does not):
EQUIVALENT_PATHS = {
    "reserved_price": "contracts.*.price",
    "reserved_term_months": "contracts.*.term_months",
    "renewal_rate": "contracts.*.renewal_rate",
    "renewal_discount": "contracts.*.renewal_discount",
    "reserved_utilization": "contracts.*.utilization",
    "client_loss_month": "contracts.anchor.loss_month",
}
REWRITE_TOL = 1e-12


@pytest.mark.parametrize("seed", range(10))
def test_v1_portfolio_and_its_explicit_rewrite_agree_numpy(seed, tmp_path):
    backend = make_backend("numpy")
    v1, v2, axes_v1, axes_v2 = _rewritten(seed, tmp_path, 8)
    _assert_same_outputs(v1, evaluate_zipped(v1, [], backend), evaluate_zipped(v2, [], backend))
    _assert_same_outputs(v1, evaluate_zipped(v1, axes_v1, backend), evaluate_zipped(v2, axes_v2, backend))


@pytest.mark.parametrize("seed", range(1))  # a compile each; numpy runs 10 seeds
def test_v1_portfolio_and_its_explicit_rewrite_agree_compiled(seed, compiled_backend, tmp_path):
    v1, v2, axes_v1, axes_v2 = _rewritten(100 + seed, tmp_path, 8, horizon=37)
    _assert_same_outputs(v1, evaluate_zipped(v1, axes_v1, compiled_backend),
                         evaluate_zipped(v2, axes_v2, compiled_backend))


def _rewritten(seed, tmp_path, n_points, horizon=None):
    """A random version 1 portfolio and its rewrite, both loaded from YAML, and the same
    random points as axes on each (EQUIVALENT_PATHS and the comment above it)."""
    rng = np.random.default_rng(seed)
    pf = random_portfolio(rng, horizon=horizon)
    v1 = load_portfolio_doc(tmp_path, _portfolio_doc(pf, pf.clusters), "v1.yaml")
    v2 = load_portfolio_doc(tmp_path, _portfolio_doc(pf, [ref.explicit_v2(c) for c in pf.clusters]), "v2.yaml")
    assert (v1.model_version, v2.model_version) == (1, 2)
    assert all(it.contracts is not None and it.segments is not None for it in v2.items)
    u = [c[k] for c in v1.clusters for k in ("utilization_training", "utilization_inference")]
    axes_v1, axes_v2 = [], []
    drawn = random_scenario(rng, v1, n_axes=4).axes
    n_util = sum(a.shock == "utilization" for a in drawn)  # their sum must not clip either
    for a in drawn:
        values = rng.choice(a.values, n_points)
        if a.shock == "utilization":
            values = rng.uniform(-min(u), 1.0 - max(u), n_points) / n_util
        if a.param in EQUIVALENT_PATHS:
            twin = item_path_axis(v2, EQUIVALENT_PATHS[a.param], a.spec.op, values, a.clusters)
        elif a.param in REPLACES["contracts"] + REPLACES["segments"]:
            continue
        else:
            spec = replace(a.spec, targets=named_targets(a.shock, True)) if a.shock else a.spec
            twin = Axis(a.name, spec, values, a.shock, a.param, a.clusters)
        axes_v1.append(Axis(a.name, a.spec, values, a.shock, a.param, a.clusters))
        axes_v2.append(twin)
    return v1, v2, axes_v1, axes_v2


def _portfolio_doc(pf, clusters) -> dict:
    """A portfolio file's dict: pf's block, the clusters as given (never and None left
    out: the defaults say so)."""
    def plain(d: dict) -> dict:
        return {k: v for k, v in d.items() if v is not None and not (isinstance(v, float) and math.isinf(v))}

    rows = []
    for name, c in zip(pf.cluster_names, clusters):
        row = {"name": name, **plain({k: v for k, v in c.items() if k not in KINDS})}
        row.update({kind: [plain(item) for item in c[kind]] for kind in KINDS if kind in c})
        rows.append(row)
    return {"portfolio": {"name": pf.name, "currency": pf.currency, "horizon_months": pf.horizon_months,
                          "discount_rate": pf.discount_rate},
            "clusters": rows}


def _assert_same_outputs(v1, want: dict, got: dict):
    """Every version 1 output equal to REWRITE_TOL relative (an absolute floor of it times
    the capex for money; NaN and inf in the same places); the rewrite's revenue by
    industry all "unlabelled", equal to its revenue."""
    scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in v1.clusters) + 1.0
    for name, y in want.items():
        x = got[name]
        assert x.shape == y.shape, name
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        finite = np.isfinite(y)
        assert np.array_equal(x[~finite], y[~finite], equal_nan=True), name
        floor = REWRITE_TOL * (scale if name.removeprefix("cluster_") in MONEY else 1.0)
        err = np.abs(x[finite] - y[finite]) - REWRITE_TOL * np.abs(y[finite])
        assert np.all(err <= floor), (name, np.max(np.abs(x[finite] - y[finite])))
    assert got["revenue_by_industry"].shape[-1] == 1  # unlabelled
    np.testing.assert_allclose(got["revenue_by_industry"][..., 0], got["revenue"], rtol=REWRITE_TOL)
    np.testing.assert_allclose(got["cluster_revenue_by_industry"][..., 0], got["cluster_revenue"],
                               rtol=REWRITE_TOL)


# ------------------------------------------------------------------ worked case by hand

# One cluster of 10 GPUs (capex 10 000) live from month 1, a flat market price p0 = 3 and
# no next generation within T = 12 months, energy 0.1 USD/kWh at 1 kW and PUE 1 with no
# idle draw, no other cost, no tax, no resale, no debt, discount rate 0: N H = 7 300
# GPU-hours a month; the energy of a month is 730 busy_t.
#   lab (healthcare): share 0.5, price 2.0, utilization 0.9, lost at month 7, a term
#   longer than the horizon (no renewal);
#   shop (retail): share 0.6, utilization 0.5, price multiplier 1.5;
#   batch (unlabelled): share 0.4, utilization 1.0, multiplier 1.0.
# u-bar = 0.6 0.5 + 0.4 1.0 = 0.7; u-bar^mu = 0.6 1.5 0.5 + 0.4 1.0 1.0 = 0.85.
CLUSTER = {
    "name": "a", "gpus": 10, "capex_per_gpu": 1000.0, "delivery_months": 0.0, "on_demand_price": 3.0,
    "price_decline": 0.0, "kw_per_gpu": 1.0, "pue": 1.0, "idle_power_fraction": 0.0, "energy_price": 0.1,
    "energy_escalation": 0.0, "maintenance_rate": 0.0, "software_per_gpu_month": 0.0, "tax_rate": 0.0,
    "resale_decline": 1.0,
}
LAB = {"name": "lab", "share": 0.5, "price": 2.0, "term_months": 120.0, "utilization": 0.9,
       "loss_month": 7.0, "industry": "healthcare"}
SEGMENTS = [{"name": "shop", "share": 0.6, "utilization": 0.5, "price_multiplier": 1.5, "industry": "retail"},
            {"name": "batch", "share": 0.4, "utilization": 1.0}]


def _worked(tmp_path, contracts):
    doc = {"portfolio": {"name": "worked", "horizon_months": 12, "discount_rate": 0.0},
           "clusters": [{**CLUSTER, "contracts": contracts, "segments": SEGMENTS}]}
    return load_portfolio_doc(tmp_path, doc)


def _assert_by_hand(pf, got: dict, by_hand: dict, s=None):
    """got: outputs of one scenario (s None) or of points (s: the point)."""
    at = (lambda x: x) if s is None else (lambda x: x[s])
    for name, want in by_hand.items():
        if name == "revenue_by_industry":
            labels = pf.industries
            assert labels == list(want)
            for i, label in enumerate(labels):
                assert float(at(got[name])[i]) == pytest.approx(want[label], rel=1e-12), label
                assert float(at(got["cluster_" + name])[0, i]) == pytest.approx(want[label], rel=1e-12), label
        else:
            assert float(at(got[name])) == pytest.approx(want, rel=1e-12), name


def test_one_contract_lost_and_two_segments_by_hand(tmp_path):
    """Months 1-6: res = 0.5, od = 0.5; per GPU-hour 0.5 2.0 + 0.5 0.85 3 = 2.275,
    busy = 0.5 0.9 + 0.5 0.7 = 0.8. Months 7-12: res = 0, od = 1: 2.55, busy 0.7."""
    pf = _worked(tmp_path, [LAB])
    revenue = 7300 * (6 * 2.275 + 6 * 2.55)  # 211 335
    energy = 730 * (6 * 0.8 + 6 * 0.7)  # 6 570
    by_hand = {
        "revenue": revenue,
        "energy_cost": energy,
        "opex": 0.0,
        "ebitda": revenue - energy,
        "npv": revenue - energy - 10_000,
        "roi": (revenue - energy - 10_000) / 10_000,
        "payback_months": 10_000 / (7300 * 2.275 - 730 * 0.8),  # within month 1
        "revenue_by_industry": {
            "healthcare": 7300 * 6 * 0.5 * 2.0,  # lab until month 7: 43 800
            "retail": 7300 * (6 * 0.5 + 6 * 1.0) * 0.6 * 1.5 * 0.5 * 3,  # od sigma mu u p0: 88 695
            "unlabelled": 7300 * (6 * 0.5 + 6 * 1.0) * 0.4 * 1.0 * 3,  # 78 840
        },
    }
    got = evaluate_base(pf)  # the runs' base case
    _assert_by_hand(pf, got, by_hand)
    assert math.isnan(got["min_dscr"]) and math.isnan(got["equity_irr"])  # no debt
    _assert_by_hand(pf, evaluate_zipped(pf, [], make_backend("numpy")), by_hand, s=0)  # a grid's route


OTHERS = {"name": "others", "share": 0.2, "price": 1.5, "term_months": 120.0, "utilization": 0.5}


def test_lost_earlier_and_a_segment_share_set_by_hand(tmp_path):
    """A second contract, others (share 0.2, price 1.5, utilization 0.5, never lost), and
    one point of two path shocks: lab's loss month shifted by -3 (lost at month 4) and
    batch's share set to 0.9, so the shares 0.6 and 0.9 renormalise to 0.4 and 0.6:
    u-bar = 0.4 0.5 + 0.6 = 0.8, u-bar^mu = 0.4 1.5 0.5 + 0.6 = 0.9. Months 1-3: res 0.7,
    od 0.3, per GPU-hour 1.0 + 0.3 + 0.3 0.9 3 = 2.11, busy 0.45 + 0.1 + 0.3 0.8 = 0.79;
    months 4-12: res 0.2, od 0.8: 0.3 + 0.8 0.9 3 = 2.46, busy 0.1 + 0.8 0.8 = 0.74."""
    pf = _worked(tmp_path, [LAB, OTHERS])
    axes = [item_path_axis(pf, "contracts.lab.loss_month", "shift", [-3.0]),
            item_path_axis(pf, "segments.batch.share", "set", [0.9])]
    revenue = 7300 * (3 * 2.11 + 9 * 2.46)  # 207 831
    energy = 730 * (3 * 0.79 + 9 * 0.74)  # 6 591.9
    by_hand = {
        "revenue": revenue,
        "energy_cost": energy,
        "npv": revenue - energy - 10_000,
        "revenue_by_industry": {
            "healthcare": 7300 * 3 * 0.5 * 2.0,  # 21 900
            "retail": 7300 * (3 * 0.3 + 9 * 0.8) * 0.4 * 1.5 * 0.5 * 3,  # 53 217
            "unlabelled": 7300 * (12 * 0.2 * 1.5 + (3 * 0.3 + 9 * 0.8) * 0.6 * 1.0 * 3),  # 132 714
        },
    }
    got = evaluate_zipped(pf, axes, make_backend("numpy"))
    _assert_by_hand(pf, got, by_hand, s=0)
    assert compare_v2_with_reference(pf, axes, got, [0]) == 1


def test_two_share_shocks_balance_once_in_either_order_by_hand(tmp_path):
    """Shares are balanced once, after every shock of the point (docs/model.md): shop
    set 0.2 and batch set 0.2 give (0.2, 0.2) -> (0.5, 0.5), whichever axis comes first.
    u-bar^mu = 0.5 1.5 0.5 + 0.5 = 0.875; months 1-6: 1.3 + 0.3 0.875 3 = 2.0875, months
    7-12: 0.3 + 0.8 0.875 3 = 2.4; the reference (reference_model.balance_shares) agrees.
    (Balancing after each shock would give (5/8, 3/8) in this order and (4/9, 5/9) in
    the other: the numbers would hang on the order of two axes that move different
    segments.)"""
    pf = _worked(tmp_path, [LAB, OTHERS])
    axes = [item_path_axis(pf, "segments.shop.share", "set", [0.2]),
            item_path_axis(pf, "segments.batch.share", "set", [0.2])]
    revenue = 7300 * 6 * (2.0875 + 2.4)  # 196 552.5
    for order in (axes, axes[::-1]):
        got = evaluate_zipped(pf, order, make_backend("numpy"))
        _assert_by_hand(pf, got, {"revenue": revenue}, s=0)
        assert compare_v2_with_reference(pf, order, got, [0]) == 1


def test_named_utilization_acts_before_item_paths_on_either_form(tmp_path):
    """MODEL.md: version 1 keys' shocks first, then path shocks. The named utilization
    shock is one shock, whatever form a cluster's pool has: a version 1 cluster (its
    pool implied) and its explicit rewrite must give the same numbers at the point
    (segments.*.utilization set 0.5, then utilization shift -0.2), the set last: the
    pool's utilization 0.5 on both."""
    pool = {"utilization_training": 0.9, "utilization_inference": 0.7, "inference_share": 0.5}
    clusters = {"implied": {**CLUSTER, "reserved_share": 0.0, **pool},
                "explicit": {**CLUSTER, "contracts": [],
                             "segments": [{"name": "pool", "share": 1.0, "utilization": 0.8}]}}
    forms = []
    for name, cluster in clusters.items():
        doc = {"portfolio": {"name": name, "horizon_months": 12, "discount_rate": 0.0}, "clusters": [cluster]}
        forms.append(load_portfolio_doc(tmp_path, doc, f"{name}.yaml"))
    forms[0].itemised = True  # a scenario addresses its items
    revenue = 7300 * 12 * 0.5 * 3.0  # no contract: od = 1, u = 0.5
    for pf in forms:
        named = Axis("u", AxisSpec("u", named_targets("utilization", True), "shift"), np.array([-0.2]),
                     "utilization", None, None)
        axes = [item_path_axis(pf, "segments.*.utilization", "set", [0.5]), named]
        got = evaluate_zipped(pf, axes, make_backend("numpy"))
        assert_close("revenue", float(got["revenue"][0]), revenue, 1e4, where=pf.path)
