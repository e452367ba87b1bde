"""Checks of the plain reference model's version 2 features (MODEL.md, "Version 2
additions" and "Version 2 clarifications") against hand-computed cases, closed forms
and numpy_financial, never against the package under test.
"""

import math
import os
import random
import sys

import numpy_financial as npf
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_model import (  # noqa: E402
    DEFAULTS,
    OUTPUT_NAMES,
    PARAM_NAMES,
    V2_OUTPUT_NAMES,
    POOL_KEYS,
    RESERVED_KEYS,
    apply_path_shock,
    apply_shock,
    balance_shares,
    cluster_monthly,
    contract_defaults,
    evaluate,
    explicit_v2,
    implied_contracts,
    implied_segment,
    segment_defaults,
)

H = 730.0
MONEY = {"npv", "revenue", "energy_cost", "opex", "ebitda"}


def approx(x, rel=1e-12, abs=1e-9):
    return pytest.approx(x, rel=rel, abs=abs)


def plain(**over):
    """One GPU live from t = 1, on-demand only at 100 % utilization and a flat price,
    every cost, tax, resale and debt switched off: revenue is H * p0 a month."""
    p = dict(DEFAULTS)
    p.update(
        gpus=1.0, capex_per_gpu=1000.0, delivery_months=0.0, kw_per_gpu=0.0, idle_power_fraction=0.0, pue=1.0,
        energy_price=0.0, energy_escalation=0.0, on_demand_price=1.0, price_decline=0.0, next_gen_month=1.0e6,
        next_gen_ramp_months=1.0, next_gen_price_drop=0.0, next_gen_utilization_drop=0.0,
        next_gen_resale_drop=0.0, reserved_share=0.0, reserved_price=0.0, utilization_training=1.0,
        utilization_inference=1.0, opex_escalation=0.0, maintenance_rate=0.0, software_per_gpu_month=0.0,
        tax_rate=0.0, resale_decline=1.0,
    )
    p.update(over)
    assert set(p) <= set(PARAM_NAMES) | {"contracts", "segments", "order_month", "capex_decline", "optimization"}
    return p


def v2_plain(contracts, segments, **over):
    """plain() in version 2 form: its reserved and pool keys replaced by the lists."""
    p = {k: v for k, v in plain(**over).items() if k not in RESERVED_KEYS + POOL_KEYS}
    p["contracts"] = [contract_defaults(c) for c in contracts]
    p["segments"] = [segment_defaults(s) for s in segments]
    return p


def random_v1_cluster(rng):
    """Every version 1 parameter drawn inside its range, contracts and loss included."""
    u = rng.uniform
    p = dict(DEFAULTS)
    p.update(
        gpus=float(rng.randint(1, 2048)), capex_per_gpu=u(5000.0, 40000.0), capex_fixed=u(0.0, 1e6),
        delivery_months=rng.choice([0.0, 2.5, u(0.0, 8.0)]), kw_per_gpu=u(0.5, 2.0),
        idle_power_fraction=u(0.0, 0.5), pue=u(1.0, 1.6), energy_price=u(0.02, 0.2),
        energy_escalation=u(-0.05, 0.1), on_demand_price=u(0.5, 4.0), price_decline=u(-0.1, 0.4),
        next_gen_month=u(-5.0, 70.0), next_gen_ramp_months=u(1.0, 12.0), next_gen_price_drop=u(0.0, 0.5),
        next_gen_utilization_drop=u(0.0, 0.3), next_gen_resale_drop=u(0.0, 0.5), reserved_share=u(0.0, 1.0),
        reserved_price=u(0.5, 4.0), reserved_term_months=rng.choice([6.0, 12.0, 17.5, 36.0]),
        renewal_rate=u(0.0, 1.0), renewal_discount=u(0.0, 0.3), reserved_utilization=u(0.5, 1.0),
        top_client_share=u(0.0, 0.6), client_loss_month=rng.choice([math.inf, u(0.0, 60.0)]),
        utilization_training=u(0.0, 1.0), utilization_inference=u(0.0, 1.0), inference_share=u(0.0, 1.0),
        priority_share=u(0.0, 0.5), priority_premium=u(0.0, 0.5), opex_escalation=u(0.0, 0.06),
        staff_cost_per_year=u(0.0, 5e5), colocation_per_kw_month=u(0.0, 150.0), useful_life_years=u(2.0, 7.0),
        tax_rate=u(0.0, 0.35), resale_decline=u(-0.1, 0.5), debt_fraction=rng.choice([0.0, u(0.1, 0.8)]),
        interest_rate=u(0.0, 0.15), debt_term_months=float(rng.randint(6, 84)),
    )
    return p


def assert_outputs_close(got, want, scale, rel=1e-12):
    """Every version 1 output of a result within rel (money: of the capex scale too)."""
    for where, g, w in [("portfolio", got["portfolio"], want["portfolio"])] + [
        (f"cluster {i}", a, b) for i, (a, b) in enumerate(zip(got["clusters"], want["clusters"]))
    ]:
        for k in OUTPUT_NAMES:
            x, y = g[k], w[k]
            if math.isnan(y) or math.isinf(y):
                assert (math.isnan(x) and math.isnan(y)) or x == y, (where, k, x, y)
            else:
                atol = rel * scale if k in MONEY else 1e-10 if k == "payback_months" else rel
                assert abs(x - y) <= atol + rel * abs(y), (where, k, x, y)


# ---------------------------------------------------------------------------
# (a) a version 1 cluster written out explicitly has version 1's numbers
# ---------------------------------------------------------------------------


def test_implied_items_follow_model_md():
    p = plain(reserved_share=0.6, reserved_price=1.7, top_client_share=0.25, client_loss_month=14.0,
              reserved_term_months=18.0, renewal_rate=0.6, renewal_discount=0.1, reserved_utilization=0.8,
              utilization_training=0.5, utilization_inference=0.9, inference_share=0.25)
    anchor, others = implied_contracts(p)
    assert anchor == approx_dict(name="anchor", share=0.15, price=1.7, term_months=18.0, renewal_rate=0.6,
                                 renewal_discount=0.1, utilization=0.8, loss_month=14.0, industry=None)
    assert others == approx_dict(name="others", share=0.45, price=1.7, term_months=18.0, renewal_rate=0.6,
                                 renewal_discount=0.1, utilization=0.8, loss_month=math.inf, industry=None)
    seg = implied_segment(p)
    assert seg == approx_dict(name="pool", share=1.0, utilization=0.6, price_multiplier=1.0,
                              utilization_sigma=0.75 * 0.10 + 0.25 * 0.04, industry=None)
    e = explicit_v2(p)
    assert not set(e) & set(RESERVED_KEYS + POOL_KEYS)
    assert e["contracts"] == [anchor, others] and e["segments"] == [seg]
    assert explicit_v2(e) == e


def approx_dict(**kw):
    return {k: approx(v) if isinstance(v, float) and math.isfinite(v) else v for k, v in kw.items()}


@pytest.mark.parametrize("seed", range(12))
def test_explicit_v2_of_random_clusters_gives_v1_numbers(seed):
    rng = random.Random(seed)
    T = rng.choice([1, 13, 60, 97])
    clusters = [random_v1_cluster(rng) for _ in range(rng.randint(1, 3))]
    r = rng.uniform(-0.05, 0.3)
    scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in clusters)
    want = evaluate(clusters, T, r)
    got = evaluate([explicit_v2(c) for c in clusters], T, r)
    assert_outputs_close(got, want, scale)
    # with Monte Carlo factors: v1's one utilization series drives the implied segment
    factors = [{"price": [rng.uniform(0.5, 1.5) for _ in range(T)],
                "util": [rng.uniform(-0.3, 0.3) for _ in range(T)],
                "energy": [rng.uniform(0.5, 1.5) for _ in range(T)]} for _ in clusters]
    want = evaluate(clusters, T, r, factors)
    assert_outputs_close(evaluate([explicit_v2(c) for c in clusters], T, r, factors), want, scale)
    per_segment = [dict(f, util={"pool": f["util"]}) for f in factors]
    assert_outputs_close(evaluate([explicit_v2(c) for c in clusters], T, r, per_segment), want, scale)
    # the version 1 named shocks move the explicit form as they move version 1's keys
    # (utilization: no clipping here, where MODEL.md's two rules would differ)
    for name, value in (("price", 0.7), ("energy", 1.4), ("obsolescence", -6.0), ("utilization", 0.0)):
        moved = [apply_shock(c, name, "", value) for c in clusters]
        assert_outputs_close(evaluate([apply_shock(explicit_v2(c), name, "", value) for c in clusters], T, r),
                             evaluate(moved, T, r), scale)


# ---------------------------------------------------------------------------
# (b) named contracts and segments: a month's revenue by hand
# ---------------------------------------------------------------------------

BANK = {"name": "bank", "share": 0.3, "price": 1.5, "term_months": 12.0, "renewal_rate": 0.5,
        "renewal_discount": 0.2, "utilization": 0.9, "loss_month": 10.0, "industry": "finance"}
LAB = {"name": "lab", "share": 0.2, "price": 1.8, "term_months": 6.0, "renewal_rate": 1.0,
       "renewal_discount": 0.1, "utilization": 0.6, "industry": "healthcare"}
TRAIN = {"name": "train", "share": 0.25, "utilization": 0.6, "price_multiplier": 0.8}
INFER = {"name": "infer", "share": 0.75, "utilization": 0.9, "price_multiplier": 1.3, "industry": "retail"}


def two_by_two(**over):
    kw = dict(gpus=2.0, on_demand_price=2.0, price_decline=0.1, priority_share=0.2, priority_premium=0.5,
              kw_per_gpu=1.0, energy_price=0.1, idle_power_fraction=0.2)
    kw.update(over)
    return v2_plain([BANK, LAB], [TRAIN, INFER], **kw)


def test_contract_lost_and_segments_with_multipliers_by_hand():
    N, T = 2.0, 24
    mo = cluster_monthly(two_by_two(), T)

    def m(t):
        return 2.0 * 0.9 ** (t / 12)

    u_mu = 0.25 * 0.8 * 0.6 + 0.75 * 1.3 * 0.9
    u_bar = 0.25 * 0.6 + 0.75 * 0.9
    # t = 8: bank in its first term; lab renewed once (cycle 1 from t = 7, locked at m(7))
    rev_8 = N * H * (0.3 * 1.5 + 0.2 * m(7) * 0.9 + 0.5 * u_mu * m(8) * 1.1)
    assert mo["revenue"][8] == approx(rev_8)
    busy_8 = 0.3 * 0.9 + 0.2 * 0.6 + 0.5 * u_bar
    assert mo["energy_cost"][8] == approx(N * 1.0 * H * 0.1 * (0.2 + 0.8 * busy_8))
    # t = 9: last month with the bank; t = 10: the bank is gone, its hours join the pool
    assert mo["revenue"][9] == approx(N * H * (0.3 * 1.5 + 0.2 * m(7) * 0.9 + 0.5 * u_mu * m(9) * 1.1))
    assert mo["revenue"][10] == approx(N * H * (0.2 * m(7) * 0.9 + 0.8 * u_mu * m(10) * 1.1))
    # t = 14: lab's cycle 2 (t = 13..18) locked at m(13)
    assert mo["revenue"][14] == approx(N * H * (0.2 * m(13) * 0.9 + 0.8 * u_mu * m(14) * 1.1))
    # by industry: the bank pays p_k for months 1..9; labels in order, contracts first
    by = mo["revenue_by_industry"]
    assert list(by) == ["finance", "healthcare", "unlabelled", "retail"]
    assert by["finance"] == approx(9 * N * H * 0.3 * 1.5)
    lab = sum(N * H * 0.2 * (1.8 if t <= 6 else m(1 + 6 * ((t - 1) // 6)) * 0.9) for t in range(1, T + 1))
    assert by["healthcare"] == approx(lab)
    pool = [1.0 - (0.3 * (t < 10) + 0.2) for t in range(T + 1)]
    assert by["unlabelled"] == approx(sum(N * H * pool[t] * 0.25 * 0.8 * 0.6 * m(t) * 1.1 for t in range(1, T + 1)))
    assert by["retail"] == approx(sum(N * H * pool[t] * 0.75 * 1.3 * 0.9 * m(t) * 1.1 for t in range(1, T + 1)))


def test_contract_defaults_and_required_fields():
    c = contract_defaults({"name": "x", "share": 0.1, "price": 2.0})
    assert c == {"name": "x", "share": 0.1, "price": 2.0, "term_months": 36.0, "renewal_rate": 0.7,
                 "renewal_discount": 0.15, "utilization": 0.85, "loss_month": math.inf, "industry": None}
    assert segment_defaults({"name": "s", "share": 1.0, "utilization": 0.5}) == {
        "name": "s", "share": 1.0, "utilization": 0.5, "price_multiplier": 1.0, "utilization_sigma": 0.10,
        "industry": None}
    with pytest.raises(KeyError):
        contract_defaults({"name": "x", "share": 0.1})
    with pytest.raises(KeyError):
        segment_defaults({"name": "s", "share": 1.0})


def test_version_1_keys_beside_the_lists_are_ignored():
    """A cluster's lists decide its form: stray version 1 keys change nothing."""
    p = two_by_two()
    stray = dict(p, reserved_share=0.9, reserved_price=9.0, top_client_share=1.0, client_loss_month=1.0,
                 utilization_training=0.0, utilization_inference=0.0, inference_share=0.3)
    assert cluster_monthly(stray, 24)["revenue"] == cluster_monthly(p, 24)["revenue"]


def test_empty_contract_list_is_all_on_demand():
    p = v2_plain([], [{"name": "s", "share": 1.0, "utilization": 0.5}], on_demand_price=2.0)
    assert evaluate([p], 12, 0.1)["clusters"][0]["revenue"] == approx(12 * H * 2.0 * 0.5)


# ---------------------------------------------------------------------------
# Monte Carlo: one utilization series per segment
# ---------------------------------------------------------------------------


def test_util_factors_per_segment():
    T = 6
    p = v2_plain([], [{"name": "a", "share": 0.5, "utilization": 0.5},
                      {"name": "b", "share": 0.5, "utilization": 0.7, "price_multiplier": 2.0}])

    def revenue(util):
        return evaluate([p], T, 0.1, factors=[{"util": util}])["clusters"][0]["revenue"]

    assert revenue(None) == approx(T * H * (0.5 * 0.5 + 0.5 * 2.0 * 0.7))
    # a dict by name (b left out: no shift), a list in segment order, one series for all
    assert revenue({"a": [0.1] * T}) == approx(T * H * (0.5 * 0.6 + 0.5 * 2.0 * 0.7))
    assert revenue([[0.1] * T, [0.2] * T]) == approx(T * H * (0.5 * 0.6 + 0.5 * 2.0 * 0.9))
    assert revenue([0.1] * T) == approx(T * H * (0.5 * 0.6 + 0.5 * 2.0 * 0.8))
    # each segment clipped on its own
    assert revenue([[0.9] * T, [-0.9] * T]) == approx(T * H * 0.5 * 1.0)
    with pytest.raises(KeyError):
        revenue({"c": [0.1] * T})
    with pytest.raises(ValueError):
        revenue([[0.1] * T])
    with pytest.raises(ValueError):
        revenue({"a": [0.1] * (T - 1)})


# ---------------------------------------------------------------------------
# (c) path shocks: shares, ranges, implied items, errors
# ---------------------------------------------------------------------------


def shares(cluster, kind):
    return [it["share"] for it in cluster[kind]]


def balanced(p, path, op, value):
    """p after one path shock, its shares then balanced (balance_shares: once per point)."""
    (q,), _ = apply_path_shock([p], None, path, op, value)
    (q,) = balance_shares([q])
    return q


def test_contract_shares_scaled_down_in_proportion_when_sum_exceeds_one():
    contracts = [{"name": "a", "share": 0.5, "price": 1.0}, {"name": "b", "share": 0.3, "price": 1.0},
                 {"name": "c", "share": 0.1, "price": 1.0}]
    p = v2_plain(contracts, [{"name": "s", "share": 1.0, "utilization": 0.5}])
    q = balanced(p, "contracts.a.share", "shift", 0.4)
    assert shares(q, "contracts") == [approx(0.9 / 1.3), approx(0.3 / 1.3), approx(0.1 / 1.3)]
    # each share clipped to [0, 1] first: 1.5 -> 1, then the sum 2.2 scaled to 1
    q = balanced(p, "contracts.*.share", "scale", 3.0)
    assert shares(q, "contracts") == [approx(1.0 / 2.2), approx(0.9 / 2.2), approx(0.3 / 2.2)]
    # a sum below 1 is left alone
    q = balanced(p, "contracts.b.share", "set", 0.0)
    assert shares(q, "contracts") == [0.5, 0.0, 0.1]
    assert shares(p, "contracts") == [0.5, 0.3, 0.1]  # input untouched


def test_segment_shares_renormalised():
    p = v2_plain([], [{"name": "a", "share": 0.5, "utilization": 0.4},
                      {"name": "b", "share": 0.5, "utilization": 0.8}], on_demand_price=1.0)
    q = balanced(p, "segments.a.share", "set", 0.8)
    assert shares(q, "segments") == [approx(0.8 / 1.3), approx(0.5 / 1.3)]
    assert evaluate([q], 1, 0.1)["clusters"][0]["revenue"] == approx(H * (0.8 * 0.4 + 0.5 * 0.8) / 1.3)
    q = balanced(p, "segments.b.share", "scale", 3.0)  # 1.5 -> 1, then renormalised
    assert shares(q, "segments") == [approx(0.5 / 1.5), approx(1.0 / 1.5)]
    # every share 0: no on-demand demand, not an error
    q = balanced(p, "segments.*.share", "set", 0.0)
    assert shares(q, "segments") == [0.0, 0.0]
    assert evaluate([q], 3, 0.1)["clusters"][0]["revenue"] == 0.0


@pytest.mark.parametrize("kind, fields", [("contracts", {"price": 1.0}), ("segments", {"utilization": 0.5})])
def test_shares_balanced_once_after_every_shock_in_either_order(kind, fields):
    """Two share shocks of one kind at a point give the same shares in either order:
    each path shock only clips its share, balance_shares balances once at the end
    (docs/model.md, "Order of shocks at a point"): contracts (0.8, 0.6, 0.1) / 1.5,
    segments (0.2, 0.2) / 0.4.  Balancing after each shock, as the reference did
    before, gave the contracts (40, 36, 5)/81 with a first and (48, 30, 5)/83 with b
    first, the segments (5/8, 3/8) or (4/9, 5/9): the numbers hung on the order of two
    axes that move different items, and random grids (random_axes_v2, seeds 27, 58, 77
    and 258) disagreed with the kernels for it."""
    if kind == "contracts":
        items = [{"name": "a", "share": 0.5, **fields}, {"name": "b", "share": 0.3, **fields},
                 {"name": "c", "share": 0.1, **fields}]
        p = v2_plain(items, [{"name": "s", "share": 1.0, "utilization": 0.5}])
        shocks = [("contracts.a.share", "set", 0.8), ("contracts.b.share", "set", 0.6)]
        want = [0.8 / 1.5, 0.6 / 1.5, 0.1 / 1.5]
    else:
        items = [{"name": "a", "share": 0.6, **fields}, {"name": "b", "share": 0.4, **fields}]
        p = v2_plain([], items)
        shocks = [("segments.a.share", "set", 0.2), ("segments.b.share", "set", 0.2)]
        want = [0.5, 0.5]
    for order in (shocks, shocks[::-1]):
        clusters = [p]
        for path, op, value in order:
            clusters, _ = apply_path_shock(clusters, None, path, op, value)
        (q,) = balance_shares(clusters)
        assert shares(q, kind) == [approx(x) for x in want], order


def test_item_field_ranges_and_ops():
    p = two_by_two()

    def shocked(path, op, value, kind, i, field):
        (q,), _ = apply_path_shock([p], None, path, op, value)
        return q[kind][i][field]

    assert shocked("contracts.bank.price", "scale", 2.0, "contracts", 0, "price") == 3.0
    assert shocked("contracts.bank.price", "shift", -5.0, "contracts", 0, "price") == 0.0
    assert shocked("contracts.lab.term_months", "set", 0.2, "contracts", 1, "term_months") == 1.0
    assert shocked("contracts.*.renewal_rate", "shift", 0.7, "contracts", 0, "renewal_rate") == 1.0
    assert shocked("contracts.*.renewal_discount", "set", -1.0, "contracts", 1, "renewal_discount") == 0.0
    assert shocked("contracts.bank.utilization", "scale", 2.0, "contracts", 0, "utilization") == 1.0
    assert shocked("contracts.bank.loss_month", "shift", -30.0, "contracts", 0, "loss_month") == -20.0
    # loss_month "never" stays never under scale and shift, and set replaces it
    assert shocked("contracts.lab.loss_month", "shift", -30.0, "contracts", 1, "loss_month") == math.inf
    assert shocked("contracts.lab.loss_month", "scale", 0.5, "contracts", 1, "loss_month") == math.inf
    assert shocked("contracts.lab.loss_month", "set", 5.0, "contracts", 1, "loss_month") == 5.0
    assert shocked("segments.infer.utilization", "shift", 0.5, "segments", 1, "utilization") == 1.0
    assert shocked("segments.*.price_multiplier", "shift", -1.0, "segments", 0, "price_multiplier") == 0.0
    assert shocked("segments.train.utilization_sigma", "set", -0.1, "segments", 0, "utilization_sigma") == 0.0
    # the other items are untouched
    (q,), _ = apply_path_shock([p], None, "contracts.bank.price", "set", 9.0)
    assert q["contracts"][1] == contract_defaults(LAB) and q["segments"] == p["segments"]
    for bad in ("contracts.bank.industry", "contracts.bank", "segments.train.price", "pricing.x.share"):
        with pytest.raises(KeyError):
            apply_path_shock([p], None, bad, "set", 1.0)
    with pytest.raises(ValueError):
        apply_path_shock([p], None, "contracts.bank.price", "multiply", 1.0)


def test_paths_to_missing_items():
    a = two_by_two()
    b = v2_plain([{"name": "solo", "share": 0.5, "price": 1.0}], [{"name": "s", "share": 1.0, "utilization": 1.0}])
    # a cluster without the item is unchanged; the other is shocked
    (qa, qb), _ = apply_path_shock([a, b], None, "contracts.solo.price", "set", 2.0)
    assert qa is a and qb["contracts"][0]["price"] == 2.0
    # no selected cluster has it: an error
    with pytest.raises(ValueError):
        apply_path_shock([a, b], None, "contracts.solo.price", "set", 2.0, cluster_mask=[True, False])
    with pytest.raises(ValueError):
        apply_path_shock([a, b], None, "segments.nobody.share", "set", 0.5)
    with pytest.raises(ValueError):
        apply_path_shock([a, b], None, "contracts.bank.price", "set", 2.0, cluster_mask=[True])
    # "*" on an empty contract list finds nothing
    c = v2_plain([], [{"name": "s", "share": 1.0, "utilization": 1.0}])
    with pytest.raises(ValueError):
        apply_path_shock([c], None, "contracts.*.price", "set", 2.0)


def test_paths_on_implied_items_of_a_version_1_cluster():
    T, r = 48, 0.1
    v1 = plain(reserved_share=0.6, reserved_price=1.7, top_client_share=0.25, client_loss_month=14.0,
               reserved_term_months=18.0, renewal_rate=0.6, renewal_discount=0.1, on_demand_price=2.0,
               price_decline=0.2, utilization_training=0.5, utilization_inference=0.7)
    scale = 1000.0

    def check(path, op, value, equivalent_v1):
        (q,), _ = apply_path_shock([v1], None, path, op, value)
        assert_outputs_close(evaluate([q], T, r), evaluate([equivalent_v1], T, r), scale)
        return q

    # the anchor's share: r0 and k move together
    q = check("contracts.anchor.share", "set", 0.3, dict(v1, reserved_share=0.75, top_client_share=0.4))
    assert "reserved_share" not in q and [c["name"] for c in q["contracts"]] == ["anchor", "others"]
    assert "segments" not in q  # only the contracts are written out
    check("contracts.others.share", "scale", 0.0, dict(v1, reserved_share=0.15, top_client_share=1.0))
    check("contracts.*.term_months", "set", 12.0, dict(v1, reserved_term_months=12.0))
    check("contracts.anchor.loss_month", "shift", 10.0, dict(v1, client_loss_month=24.0))
    q = check("segments.*.utilization", "shift", 0.1, dict(v1, utilization_training=0.6, utilization_inference=0.8))
    assert q["segments"][0]["name"] == "pool" and "contracts" not in q
    # the implied segment answers only to "*"
    with pytest.raises(ValueError):
        apply_path_shock([v1], None, "segments.pool.utilization", "shift", 0.1)
    with pytest.raises(ValueError):
        apply_path_shock([v1], None, "contracts.bank.price", "set", 1.0)


def test_named_shocks_on_version_2_clusters():
    p = two_by_two()
    # utilization: every segment's u_j shifted, each clipped
    q = apply_shock(p, "utilization", "ignored", 0.2)
    assert [s["utilization"] for s in q["segments"]] == [approx(0.8), 1.0]
    assert [s["utilization"] for s in p["segments"]] == [0.6, 0.9]
    assert "utilization_training" not in q
    # version 1 keys that the lists replace change nothing
    assert apply_shock(p, "reserved_share", "set", 0.9) == p
    assert apply_shock(p, "utilization_training", "shift", 0.1) == p
    # price: the pool and renewals move with p0, a signed first term does not
    T = 24
    base = cluster_monthly(p, T)
    half = cluster_monthly(apply_shock(p, "price", "", 0.5), T)

    def m(t):
        return 2.0 * 0.9 ** (t / 12)

    u_mu = 0.25 * 0.8 * 0.6 + 0.75 * 1.3 * 0.9
    # t = 5: both contracts in their first term, only the pool halves
    assert base["revenue"][5] - half["revenue"][5] == approx(0.5 * 2 * H * 0.5 * u_mu * m(5) * 1.1)
    # t = 14: the bank is gone, lab renewed at market: everything halves
    assert half["revenue"][14] == approx(0.5 * base["revenue"][14])


# ---------------------------------------------------------------------------
# (g) revenue by industry adds up to revenue
# ---------------------------------------------------------------------------


def random_v2_cluster(rng, labels=("finance", "healthcare", "retail", "logistics", None)):
    p = random_v1_cluster(rng)
    p = {k: v for k, v in p.items() if k not in RESERVED_KEYS + POOL_KEYS}
    n_c = rng.randint(0, 3)
    raw = [rng.uniform(0.0, 1.0) for _ in range(n_c)]
    total = max(1.0, sum(raw) * rng.uniform(1.0, 1.5))
    p["contracts"] = [contract_defaults({
        "name": f"c{i}", "share": x / total, "price": rng.uniform(0.5, 4.0),
        "term_months": rng.choice([6.0, 12.5, 36.0]), "renewal_rate": rng.uniform(0, 1),
        "renewal_discount": rng.uniform(0, 0.3), "utilization": rng.uniform(0.5, 1.0),
        "loss_month": rng.choice([math.inf, rng.uniform(0.0, 60.0)]), "industry": rng.choice(labels)})
        for i, x in enumerate(raw)]
    n_s = rng.randint(1, 3)
    raw = [rng.uniform(0.1, 1.0) for _ in range(n_s)]
    p["segments"] = [segment_defaults({
        "name": f"s{j}", "share": x / sum(raw), "utilization": rng.uniform(0.2, 1.0),
        "price_multiplier": rng.uniform(0.5, 1.5), "industry": rng.choice(labels)})
        for j, x in enumerate(raw)]
    return p


@pytest.mark.parametrize("seed", range(8))
def test_revenue_by_industry_sums_to_revenue(seed):
    rng = random.Random(seed)
    T = rng.choice([1, 24, 60])
    clusters = [random_v2_cluster(rng) for _ in range(3)] + [random_v1_cluster(rng)]
    res = evaluate(clusters, T, 0.1)
    assert set(res["v2"]) == set(V2_OUTPUT_NAMES)
    by = res["v2"]["revenue_by_industry"]
    assert list(by)[-1] == "unlabelled"
    seen = [it["industry"] for c in clusters[:3] for it in c["contracts"] + c["segments"] if it["industry"]]
    assert list(by)[:-1] == list(dict.fromkeys(seen))
    assert sum(by.values()) == approx(res["portfolio"]["revenue"], rel=1e-12, abs=1e-6)
    for row, c in zip(res["v2"]["cluster_revenue_by_industry"], res["clusters"]):
        assert list(row) == list(by)
        assert sum(row.values()) == approx(c["revenue"], rel=1e-12, abs=1e-6)
    # the version 1 cluster's revenue is all unlabelled
    assert res["v2"]["cluster_revenue_by_industry"][3]["unlabelled"] == approx(res["clusters"][3]["revenue"])
    # the model's own labels are not an industry's
    for label in ("unlabelled", "platform"):
        p = dict(clusters[0], segments=[dict(s, industry=label) for s in clusters[0]["segments"]])
        with pytest.raises(ValueError):
            evaluate([p], T, 0.1)
    for x in by:
        assert by[x] == approx(sum(row[x] for row in res["v2"]["cluster_revenue_by_industry"]))


# ---------------------------------------------------------------------------
# (d) order month: the cluster's clock starts at t_o
# ---------------------------------------------------------------------------


def calendar_free(**over):
    """A cluster with every feature on except the calendar's: no price decline, no
    next generation, no escalation; contracts never lost (loss months are calendar)."""
    p = two_by_two(
        price_decline=0.0, next_gen_month=1.0e6, energy_escalation=0.0, opex_escalation=0.0,
        delivery_months=2.5, capex_per_gpu=8000.0, capex_fixed=5000.0, maintenance_rate=0.03,
        software_per_gpu_month=15.0, colocation_per_kw_month=100.0, staff_cost_per_year=20000.0,
        tax_rate=0.21, useful_life_years=3.0, resale_decline=0.25, next_gen_resale_drop=0.2,
        debt_fraction=0.5, interest_rate=0.08, debt_term_months=30.0,
        optimization={"cost": 3000.0, "cost_per_year": 1200.0, "utilization_gain": 0.05,
                      "energy_saving": 0.1, "opex_saving": 0.05},
    )
    p["contracts"] = [dict(c, loss_month=math.inf) for c in p["contracts"]]
    p.update(over)
    return p


@pytest.mark.parametrize("t_o", [1, 7, 24])
@pytest.mark.parametrize("T", [12, 60])
def test_order_month_shifts_the_flows_without_calendar_effects(T, t_o):
    r = 0.12
    base = evaluate([calendar_free()], T, r)
    late = evaluate([calendar_free(order_month=t_o)], T + t_o, r)
    cf0, cf = base["flows"]["cf"][0], late["flows"]["cf"][0]
    assert cf[:t_o] == [0.0] * t_o  # nothing before t_o, not even staff
    assert cf[t_o:] == [approx(x, abs=1e-6) for x in cf0]
    assert late["flows"]["cfe"][0][t_o:] == [approx(x, abs=1e-6) for x in base["flows"]["cfe"][0]]
    b, c = base["clusters"][0], late["clusters"][0]
    assert c["irr"] == approx(b["irr"], rel=1e-9, abs=1e-12)
    assert c["irr"] == approx((1 + npf.irr(cf0)) ** 12 - 1, rel=1e-9)
    assert c["equity_irr"] == approx(b["equity_irr"], rel=1e-9, abs=1e-12)
    assert c["npv"] == approx(b["npv"] * (1 + r) ** (-t_o / 12), rel=1e-11, abs=1e-6)
    monthly = (1 + r) ** (1 / 12) - 1
    assert c["npv"] == approx(npf.npv(monthly, cf), rel=1e-11, abs=1e-6)
    for k in ("roi", "payback_months", "min_dscr", "revenue", "energy_cost", "opex", "ebitda"):
        assert c[k] == approx(b[k], rel=1e-11), k  # payback counts from t_o
    for k in OUTPUT_NAMES:
        assert late["portfolio"][k] == approx(c[k], rel=1e-11), k
    if T == 60:
        assert 0 < c["payback_months"] < T and 0 < c["irr"] and c["min_dscr"] > 0
    assert late["v2"]["optimization_cost"] == approx(base["v2"]["optimization_cost"])


def test_order_month_clock_rules_by_hand():
    # t_o = 4, D = 1.5: live 0.5 in month 6, from month 7 fully; capex at t = 4
    T, t_o, N, K, c_K, L, d_r, tau = 40, 4, 2.0, 12000.0, 0.3, 1.0, 0.25, 0.2
    p = two_by_two(order_month=t_o, delivery_months=1.5, capex_per_gpu=K, capex_decline=c_K,
                   maintenance_rate=0.06, staff_cost_per_year=1200.0, useful_life_years=L, resale_decline=d_r,
                   tax_rate=tau, debt_fraction=0.5, interest_rate=0.12, debt_term_months=48.0)
    mo = cluster_monthly(p, T)
    K_o = K * (1 - c_K) ** (t_o / 12)
    assert mo["capex"] == approx(N * K_o)
    assert mo["live"][4:8] == [0.0, 0.0, 0.5, 1.0]
    assert mo["opex"][1:5] == [0.0] * 4
    assert mo["opex"][5] == approx(100.0)  # staff from t_o + 1, not live yet
    assert mo["opex"][7] == approx(0.06 * N * K_o / 12 + 100.0)  # maintenance on the price paid
    assert mo["dep"][4] == 0.0 and mo["dep"][5] == approx(N * K_o / 12) and mo["dep"][16] == approx(N * K_o / 12)
    assert mo["dep"][17] == 0.0
    assert mo["resale"] == approx(N * K_o * (1 - d_r) ** ((T - t_o) / 12))
    assert mo["cf"][4] == approx(-N * K_o)
    # the loan runs from t_o + 1 to t_o + 48 > T: payments in 5..40, the balance of s = 36 repaid at T
    debt = 0.5 * N * K_o
    A = -npf.pmt(0.01, 48, debt)
    assert mo["cfe"][4] == approx(-N * K_o + debt)
    balance = npf.fv(0.01, 36, -A, debt) * -1
    interest_T = 0.01 * npf.fv(0.01, 35, -A, debt) * -1
    assert mo["cfe"][T] == approx(mo["cf"][T] - A + tau * interest_T - balance)
    assert mo["cfe"][6] == approx(mo["cf"][6] - A + tau * 0.01 * (npf.fv(0.01, 1, -A, debt) * -1))
    # contracts: the bank (loss month 10, calendar) is lost at t = 10 although t_o = 4;
    # lab (6-month terms) renews at t = t_o + D + 1 + 6 = 12.5, locked at m(12.5), whole month 12
    def m(t):
        return 2.0 * 0.9 ** (t / 12)
    u_mu = 0.25 * 0.8 * 0.6 + 0.75 * 1.3 * 0.9
    assert mo["revenue"][9] == approx(N * H * (0.3 * 1.5 + 0.2 * 1.8 + 0.5 * u_mu * m(9) * 1.1))
    assert mo["revenue"][10] == approx(N * H * (0.2 * 1.8 + 0.8 * u_mu * m(10) * 1.1))
    assert mo["revenue"][13] == approx(N * H * (0.2 * m(12.5) * 0.9 + 0.8 * u_mu * m(13) * 1.1))
    price = [1.0] * T
    price[11] = 0.5  # month 12: the renewal locks P at floor(12.5)
    mc = cluster_monthly(p, T, price_factor=price)
    assert mc["revenue"][13] == approx(N * H * (0.2 * m(12.5) * 0.9 * 0.5 + 0.8 * u_mu * m(13) * 1.1))


def test_order_month_dscr_window_and_payback_from_the_investment_month():
    T = 36
    p = plain(on_demand_price=2.0, debt_fraction=0.5, interest_rate=0.0, debt_term_months=6.0, delivery_months=1.0)
    a = evaluate([dict(p, order_month=5)], T, 0.1)["clusters"][0]
    # live from t = 7 (t_o + D + 1), payments 6..11: DSCR months 7..11, each H p0 / A
    A = 500.0 / 6
    assert a["min_dscr"] == approx(H * 2.0 / A)
    # payback: -1000 at t = 5, +1460 a month from t = 7: cumulative >= 0 inside month 7
    assert a["payback_months"] == approx(1.0 + 1000.0 / 1460.0)
    # the portfolio counts from its earliest order month, platform flows before it included
    b = dict(plain(on_demand_price=2.0), order_month=9)
    res = evaluate([dict(p, order_month=5), b], T, 0.1)
    cf = [x + y for x, y in zip(*res["flows"]["cf"])]
    cum = [sum(cf[: t + 1]) for t in range(T + 1)]
    first = next(t for t in range(5, T + 1) if cum[t] >= 0)
    assert res["portfolio"]["payback_months"] == approx(first - 1 + -cum[first - 1] / cf[first] - 5)
    with pytest.raises(ValueError):
        evaluate([dict(p, order_month=T + 1)], T, 0.1)
    with pytest.raises(ValueError):
        evaluate([dict(p, order_month=2.5)], T, 0.1)


def test_order_month_at_the_horizon():
    T = 12
    p = plain(resale_decline=0.5, tax_rate=0.2, order_month=T, capex_per_gpu=1000.0)
    c = evaluate([p], T, 0.1)
    # bought and sold at T: resale = N K, book = capex, no gain; nothing earned
    assert c["flows"]["cf"][0] == [0.0] * T + [approx(0.0)]
    assert c["clusters"][0]["revenue"] == 0.0


def test_order_month_and_capex_decline_paths():
    p = plain()
    (q,), _ = apply_path_shock([p], None, "order_month", "set", 2.5, horizon_months=24)
    assert q["order_month"] == 3.0
    (q,), _ = apply_path_shock([q], None, "order_month", "shift", -0.51, horizon_months=24)
    assert q["order_month"] == 2.0
    (q,), _ = apply_path_shock([q], None, "order_month", "scale", 100.0, horizon_months=24)
    assert q["order_month"] == 24.0
    (q,), _ = apply_path_shock([q], None, "order_month", "shift", -100.0, horizon_months=24)
    assert q["order_month"] == 0.0
    with pytest.raises(ValueError):
        apply_path_shock([p], None, "order_month", "set", 2.0)  # the range needs the horizon
    (q,), _ = apply_path_shock([p], None, "capex_decline", "shift", 1.5)
    assert q["capex_decline"] == 1.0
    (q,), _ = apply_path_shock([p], None, "capex_decline", "set", -3.0)
    assert q["capex_decline"] == -1.0
    # only the selected clusters move
    (a, b), _ = apply_path_shock([p, p], None, "order_month", "set", 5.0, cluster_mask=[False, True],
                                 horizon_months=24)
    assert a is p and b["order_month"] == 5.0


# ---------------------------------------------------------------------------
# (e) platform layer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("launch", [1, 9])
def test_platform_take_rate_adds_its_margin_on_discounted_revenue(launch):
    T, r, take, margin, tax = 48, 0.1, 0.08, 0.6, 0.25
    clusters = [calendar_free(price_decline=0.2), two_by_two(delivery_months=3.5, order_month=2)]
    base = evaluate(clusters, T, r)
    pl = {"take_rate": take, "margin": margin, "tax_rate": tax, "opex_escalation": 0.5, "launch_month": launch}
    res = evaluate(clusters, T, r, platform=pl)
    revenue = [sum(cluster_monthly(c, T)["revenue"][t] for c in clusters) if t >= launch else 0.0
               for t in range(T + 1)]
    monthly = (1 + r) ** (1 / 12) - 1
    added = margin * take * (1 - tax) * npf.npv(monthly, revenue)
    assert res["portfolio"]["npv"] - base["portfolio"]["npv"] == approx(added, rel=1e-10)
    assert res["v2"]["platform_npv"] == approx(added)
    assert res["v2"]["platform_revenue"] == approx(take * sum(revenue))
    assert res["portfolio"]["revenue"] == approx(base["portfolio"]["revenue"] + take * sum(revenue))
    assert res["portfolio"]["opex"] == approx(base["portfolio"]["opex"] + (1 - margin) * take * sum(revenue))
    assert res["portfolio"]["ebitda"] == approx(base["portfolio"]["ebitda"] + margin * take * sum(revenue))
    assert res["portfolio"]["energy_cost"] == base["portfolio"]["energy_cost"]
    # ROI over the clusters' capex; the clusters' own outputs exclude the platform
    capex = sum(cluster_monthly(c, T)["capex"] for c in clusters)
    cf = [sum(col) for col in zip(*res["flows"]["cf"], res["flows"]["platform_cf"])]
    assert res["portfolio"]["roi"] == approx(sum(cf) / capex)
    assert res["portfolio"]["irr"] == approx((1 + npf.irr(cf)) ** 12 - 1, rel=1e-9)
    assert res["clusters"] == base["clusters"]
    by = res["v2"]["revenue_by_industry"]
    assert list(by)[-2:] == ["unlabelled", "platform"] and by["platform"] == res["v2"]["platform_revenue"]
    assert sum(by.values()) == approx(res["portfolio"]["revenue"])
    assert all(row["platform"] == 0.0 for row in res["v2"]["cluster_revenue_by_industry"])


def test_platform_users_fees_and_costs_by_hand():
    T, t_p, U, A, f, g_f = 30, 4, 1000.0, 6.0, 20.0, 0.1
    build, run, g_O, margin, tax = 5000.0, 12000.0, 0.05, 0.7, 0.3
    pl = {"launch_month": t_p, "users_max": U, "adoption_months": A, "fee_per_user_month": f, "fee_growth": g_f,
          "build_cost": build, "run_cost_per_year": run, "opex_escalation": g_O, "margin": margin, "tax_rate": tax}
    res = evaluate([], T, 0.1, platform=pl)
    cf = res["flows"]["platform_cf"]
    assert cf[:t_p] == [0.0] * t_p
    for t in (t_p, 10, T):
        users = U * (1 - math.exp(-(t - t_p + 1) / A))
        rev = users * f * (1 + g_f) ** (t / 12)
        ebitda = margin * rev - run / 12 * (1 + g_O) ** (t / 12) - (build if t == t_p else 0.0)
        assert cf[t] == approx(ebitda * (1 - tax)), t
    # instant adoption when a shock takes adoption_months to 0 or below
    _, fast = apply_path_shock([], pl, "platform.adoption_months", "shift", -10.0)
    assert fast["adoption_months"] == -4.0
    cf = evaluate([], T, 0.1, platform=fast)["flows"]["platform_cf"]
    assert cf[T] == approx((margin * U * f * (1 + g_f) ** (T / 12) - run / 12 * (1 + g_O) ** (T / 12)) * (1 - tax))
    assert res["portfolio"]["npv"] == approx(res["v2"]["platform_npv"])
    with pytest.raises(ValueError):
        evaluate([], T, 0.1, platform=dict(pl, launch_month=T + 1))


def test_platform_counts_in_equity_flows_and_portfolio_dscr():
    T = 24
    a = plain(on_demand_price=2.0, debt_fraction=0.5, interest_rate=0.0, debt_term_months=12.0)
    pl = {"take_rate": 0.1, "margin": 1.0, "tax_rate": 0.0}
    base = evaluate([a], T, 0.1)
    res = evaluate([a], T, 0.1, platform=pl)
    A = 500.0 / 12
    assert base["portfolio"]["min_dscr"] == approx(H * 2.0 / A)
    assert res["portfolio"]["min_dscr"] == approx(H * 2.0 * 1.1 / A)
    assert res["clusters"][0]["min_dscr"] == base["clusters"][0]["min_dscr"]
    cfe = [x + y for x, y in zip(res["flows"]["cfe"][0], res["flows"]["platform_cf"])]
    assert res["portfolio"]["equity_irr"] == approx((1 + npf.irr(cfe)) ** 12 - 1, rel=1e-9)


def test_platform_paths():
    pl = {"take_rate": 0.1}
    _, q = apply_path_shock([], pl, "platform.take_rate", "shift", 2.0)
    assert q["take_rate"] == 1.0 and q["margin"] == 0.7 and pl == {"take_rate": 0.1}
    _, q = apply_path_shock([], pl, "platform.launch_month", "set", 7.5, horizon_months=24)
    assert q["launch_month"] == 8.0
    _, q = apply_path_shock([], pl, "platform.launch_month", "shift", 100.0, horizon_months=24)
    assert q["launch_month"] == 24.0
    _, q = apply_path_shock([], pl, "platform.launch_month", "set", -3.0, horizon_months=24)
    assert q["launch_month"] == 1.0
    for field, op, value, want in (("build_cost", "shift", -1.0, 0.0), ("opex_escalation", "set", -2.0, -1.0),
                                   ("fee_growth", "set", -2.0, -1.0), ("margin", "scale", 2.0, 1.0),
                                   ("tax_rate", "set", -0.1, 0.0), ("users_max", "shift", 5.0, 5.0),
                                   ("fee_per_user_month", "set", -1.0, 0.0), ("run_cost_per_year", "scale", 2.0, 0.0)):
        _, q = apply_path_shock([], pl, f"platform.{field}", op, value)
        assert q[field] == want, field
    with pytest.raises(ValueError):
        apply_path_shock([plain()], pl, "platform.take_rate", "set", 0.2, cluster_mask=[True])
    with pytest.raises(ValueError):
        apply_path_shock([plain()], None, "platform.take_rate", "set", 0.2)
    with pytest.raises(ValueError):
        apply_path_shock([], pl, "platform.launch_month", "set", 2.0)  # the range needs the horizon
    with pytest.raises(KeyError):
        apply_path_shock([], pl, "platform.take", "set", 0.2)


# ---------------------------------------------------------------------------
# (f) optimization programmes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("t_s", [1, 5, 30])
def test_one_off_optimization_cost_reduces_npv_after_tax(t_s):
    T, r, tax, cost = 36, 0.09, 0.3, 25000.0
    p = calendar_free(tax_rate=tax)
    del p["optimization"]
    base = evaluate([p], T, r)
    res = evaluate([dict(p, optimization={"cost": cost, "start_month": t_s})], T, r)
    drop = base["clusters"][0]["npv"] - res["clusters"][0]["npv"]
    assert drop == approx(cost * (1 - tax) * (1 + r) ** (-t_s / 12), rel=1e-10)
    assert res["v2"]["optimization_cost"] == cost and res["v2"]["cluster_optimization_cost"] == [cost]
    assert res["clusters"][0]["opex"] == approx(base["clusters"][0]["opex"] + cost)
    assert base["v2"]["optimization_cost"] == 0.0


def test_optimization_savings_gain_and_running_cost_by_hand():
    T, t_s, R_s, gain, e_s, o_s, per_year = 20, 6, 4.0, 0.05, 0.2, 0.1, 2400.0
    segments = [{"name": "a", "share": 0.5, "utilization": 0.5}, {"name": "b", "share": 0.5, "utilization": 0.98}]
    p = v2_plain([], segments, on_demand_price=2.0, kw_per_gpu=1.0, energy_price=0.1, staff_cost_per_year=1200.0,
                 opex_escalation=0.06)
    base = cluster_monthly(p, T)
    opt = {"start_month": t_s, "ramp_months": R_s, "utilization_gain": gain, "energy_saving": e_s,
           "opex_saving": o_s, "cost_per_year": per_year}
    mo = cluster_monthly(dict(p, optimization=opt), T)
    for t in (5, 6, 8, 10, 20):
        h = min(max((t - t_s) / R_s, 0.0), 1.0)
        u_a, u_b = 0.5 + gain * h, min(0.98 + gain * h, 1.0)
        assert mo["revenue"][t] == approx(H * 2.0 * 0.5 * (u_a + u_b)), t
        busy = 0.5 * (u_a + u_b)
        assert mo["energy_cost"][t] == approx(H * 0.1 * busy * (1 - e_s * h)), t
        e_t = 1.06 ** (t / 12)
        running = per_year / 12 * e_t if t > t_s else 0.0
        assert mo["opex"][t] == approx(base["opex"][t] * (1 - o_s * h) + running), t
        assert mo["optimization_cost"][t] == approx(running)


def test_optimization_start_month_rules():
    T = 24

    def cost_month(**over):
        p = dict(plain(), **over)
        mo = cluster_monthly(p, T)
        return [t for t in range(T + 1) if mo["optimization_cost"][t] != 0.0]

    one_off = {"cost": 100.0}
    assert cost_month(delivery_months=2.5, optimization=one_off) == [3]  # ceil(t_o + D)
    assert cost_month(delivery_months=2.5, order_month=4, optimization=one_off) == [7]
    assert cost_month(delivery_months=0.0, optimization=one_off) == [1]  # clamped to >= 1
    assert cost_month(order_month=6, optimization=dict(one_off, start_month=2)) == [6]  # moved to t_o
    assert cost_month(optimization=dict(one_off, start_month=30)) == []  # beyond the horizon
    # paths: rounded half up, kept >= 1; a default start resolved from the shocked t_o and D
    p = dict(plain(delivery_months=2.5, order_month=4), optimization=one_off)
    (q,), _ = apply_path_shock([p], None, "optimization.start_month", "shift", 1.5)
    assert q["optimization"]["start_month"] == 9.0  # ceil(6.5) + 1.5 = 8.5 -> 9
    (q,), _ = apply_path_shock([p], None, "optimization.start_month", "set", -4.0)
    assert q["optimization"]["start_month"] == 1.0
    assert cost_month(**q) == [4]
    (q,), _ = apply_path_shock([p], None, "optimization.utilization_gain", "set", -3.0)
    assert q["optimization"]["utilization_gain"] == -3.0  # unclipped
    for field, value, want in (("energy_saving", 2.0, 1.0), ("opex_saving", -1.0, 0.0), ("cost", -5.0, 0.0),
                               ("cost_per_year", -5.0, 0.0), ("ramp_months", 0.0, 1.0)):
        (q,), _ = apply_path_shock([p], None, f"optimization.{field}", "set", value)
        assert q["optimization"][field] == want, field
    # a cluster without a programme is left alone; none selected with one: an error
    (a, b), _ = apply_path_shock([plain(), p], None, "optimization.cost", "scale", 2.0)
    assert "optimization" not in a and b["optimization"]["cost"] == 200.0
    with pytest.raises(ValueError):
        apply_path_shock([plain(), p], None, "optimization.cost", "scale", 2.0, cluster_mask=[True, False])
    with pytest.raises(KeyError):
        apply_path_shock([p], None, "optimization.savings", "set", 0.1)


def test_version_2_fields_off_give_version_1_numbers_exactly():
    """order_month 0, capex_decline 0 and a programme that does nothing: version 1 bit for bit."""
    rng = random.Random(7)
    clusters = [random_v1_cluster(rng) for _ in range(3)]
    off = [dict(c, order_month=0, capex_decline=0.0, optimization={}) for c in clusters]
    T = 60
    want = evaluate(clusters, T, 0.1)
    got = evaluate(off, T, 0.1, platform=None)
    assert got["flows"] == want["flows"]
    for g, w in [(got["portfolio"], want["portfolio"])] + list(zip(got["clusters"], want["clusters"])):
        assert all(g[k] == w[k] or (math.isnan(g[k]) and math.isnan(w[k])) for k in OUTPUT_NAMES)
