"""Helpers the tests share: random valid portfolios and grids, the comparison of the
engine's outputs with the plain-loop reference, and array comparisons. Tests import them
from here (never from conftest.py or another test file)."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import reference_model as ref
import yaml

from stresstest.config import Portfolio, load_portfolio
from stresstest.engine import grid_point, prepare
from stresstest.grid_config import Axis, Scenario, resolve_item_path, resolve_scalar_path, scalar_group
from stresstest.industries import BUNDLED
from stresstest.items import KINDS, REPLACES
from stresstest.kernels.metrics import evaluate
from stresstest.kernels.params import (
    CLUSTER_PARAMS,
    ITEM_FIELDS,
    NAMED_SHOCKS,
    NOT_IN_FLOWS,
    OPTIMIZATION_PARAMS,
    ORDER_PARAMS,
    OUTPUTS,
    PARAMS,
    PLATFORM_PARAMS,
    V2_SCALARS,
    named_targets,
)
from stresstest.kernels.shocks import AxisSpec, apply_axis_values
from stresstest.programmes import field_name

# Tolerances keyed by dtype (relative, and absolute for rates that cross 0)
TOL = {"float64": 1e-9, "float32": 2e-4}


def random_cluster(rng: np.random.Generator) -> dict[str, float]:
    """A valid, varied cluster: realistic scales, every parameter drawn."""
    u = rng.uniform
    c = {
        "gpus": float(rng.integers(1, 4096)),
        "capex_per_gpu": u(20_000, 70_000),
        "capex_fixed": u(0, 5e6) * (rng.random() < 0.5),
        "delivery_months": u(0, 12),
        "kw_per_gpu": u(1.0, 2.2),
        "idle_power_fraction": u(0, 0.6),
        "pue": u(1.0, 1.8),
        "energy_price": u(0.03, 0.35),
        "energy_escalation": u(-0.05, 0.1),
        "on_demand_price": u(1.0, 6.0),
        "price_decline": u(-0.2, 0.5),
        "next_gen_month": u(-12, 80),
        "next_gen_ramp_months": u(1, 18),
        "next_gen_price_drop": u(0, 0.6),
        "next_gen_utilization_drop": u(0, 0.3),
        "next_gen_resale_drop": u(0, 0.6),
        "reserved_share": u(0, 1),
        "reserved_price": u(1.0, 5.0),
        "reserved_term_months": u(1, 60),
        "renewal_rate": u(0, 1),
        "renewal_discount": u(0, 0.4),
        "reserved_utilization": u(0.3, 1),
        "top_client_share": u(0, 1),
        "client_loss_month": math.inf if rng.random() < 0.3 else u(-5, 80),
        "utilization_training": u(0.2, 1),
        "utilization_inference": u(0.2, 1),
        "inference_share": u(0, 1),
        "priority_share": u(0, 0.5),
        "priority_premium": u(0, 0.6),
        "opex_escalation": u(-0.02, 0.08),
        "maintenance_rate": u(0, 0.1),
        "software_per_gpu_month": u(0, 50),
        "colocation_per_kw_month": u(0, 250),
        "staff_cost_per_year": u(0, 2e6),
        "useful_life_years": u(1 / 12, 8),
        "tax_rate": u(0, 0.4),
        "resale_decline": u(-0.1, 0.6),
        "debt_fraction": u(0, 0.9) * (rng.random() < 0.6),
        "interest_rate": u(0, 0.2) * (rng.random() < 0.9),
        "debt_term_months": float(rng.integers(1, 90)),
    }
    assert set(c) == {p.name for p in CLUSTER_PARAMS}
    return c


def random_portfolio(rng, n_clusters=None, horizon=None) -> Portfolio:
    n = int(n_clusters or rng.integers(1, 5))
    clusters = [random_cluster(rng) for _ in range(n)]
    names = [f"c{i}" for i in range(n)]
    return Portfolio(
        path="<random>", name="random", currency="USD",
        horizon_months=int(horizon or rng.choice([1, 12, 37, 60, 96])),
        discount_rate=float(rng.uniform(-0.05, 0.3)),
        clusters=clusters, cluster_names=names,
        labels=[{"gpu_market": n_, "power_market": n_} for n_ in names],
    )


def make_axis(name, targets, op, values, clusters=None, shock=None, param=None, names=None):
    mask = None if clusters is None else tuple(n in clusters for n in names)
    return Axis(name, AxisSpec(name, tuple(targets), op, mask), np.asarray(values, dtype=float),
                shock, param, clusters)


def random_scenario(rng, pf: Portfolio, n_axes=None) -> Scenario:
    """Random grid: named shocks and parameter axes with every op, some per cluster."""
    n_axes = int(n_axes if n_axes is not None else rng.integers(1, 4))
    axes = []
    for k in range(n_axes):
        size = int(rng.integers(1, 4))
        if rng.random() < 0.4:
            shock = list(NAMED_SHOCKS)[int(rng.integers(0, 4))]
            targets, op, _ = NAMED_SHOCKS[shock]
            spread = {"scale": (0.2, 1.8), "shift": (-0.5, 0.5)}[op]
            if shock == "obsolescence":
                spread = (-24, 24)
            values = rng.uniform(*spread, size)
            axes.append(make_axis(f"a{k}", targets, op, values, shock=shock, names=pf.cluster_names))
            continue
        if rng.random() < 0.1:
            param = "discount_rate"
            op = str(rng.choice(["scale", "shift", "set"]))
            values = {"scale": rng.uniform(0, 3, size), "shift": rng.uniform(-0.1, 0.1, size),
                      "set": rng.uniform(-0.1, 0.4, size)}[op]
            axes.append(make_axis(f"a{k}", [param], op, values, param=param, names=pf.cluster_names))
            continue
        param = str(rng.choice([p.name for p in CLUSTER_PARAMS]))
        op = str(rng.choice(["scale", "shift", "set"]))
        base = np.array([c[param] for c in pf.clusters])
        finite = base[np.isfinite(base)]
        mag = float(np.max(np.abs(finite))) if finite.size else 10.0
        mag = mag if mag > 0 else 1.0
        spec = PARAMS[param]
        if op == "scale":
            values = rng.uniform(0, 2, size)
        elif op == "shift":
            values = rng.uniform(-0.6, 0.6, size) * mag
        else:
            lo = spec.lo if math.isfinite(spec.lo) else -mag
            hi = spec.hi if math.isfinite(spec.hi) else lo + 2 * mag + 1
            values = rng.uniform(max(lo, -2 * mag), min(hi, max(lo, -2 * mag) + 2 * mag + 1), size)
            if spec.integer:
                values = np.maximum(np.round(values), max(spec.lo, 1))
            values = np.clip(values, spec.lo if spec.lo_open is False else spec.lo + 1, spec.hi)
        clusters = None
        if len(pf.cluster_names) > 1 and rng.random() < 0.4:
            clusters = [pf.cluster_names[0]]
        axes.append(make_axis(f"a{k}", [param], op, values, clusters=clusters, param=param,
                          names=pf.cluster_names))
    return Scenario("<random>", "grid", "random", axes)


MONEY = {"npv", "revenue", "energy_cost", "opex", "ebitda"}


def reference_at(pf, sc, flat):
    """Reference outputs at one grid point: shocks applied by the reference, in axis order."""
    clusters = [dict(c) for c in pf.clusters]
    rate = pf.discount_rate
    for axis, value in zip(sc.axes, grid_point(sc, flat).values()):
        for target in axis.spec.targets:
            if target == "discount_rate":
                rate = {"scale": rate * value, "shift": rate + value, "set": value}[axis.spec.op]
                rate = max(rate, -1 + 1e-9)
                continue
            for i, name in enumerate(pf.cluster_names):
                if axis.clusters is None or name in axis.clusters:
                    clusters[i] = ref.apply_shock(clusters[i], target, axis.spec.op, value)
    return ref.evaluate(clusters, pf.horizon_months, rate), clusters, rate


def close_to(got, want, atol, where, tol=1e-9):
    """got within atol + tol |want| of want; NaN and inf only as themselves."""
    got, want = float(got), float(want)
    if not math.isfinite(want):
        assert (math.isnan(got) and math.isnan(want)) or got == want, f"{where}: {got} vs {want}"
        return
    assert abs(got - want) <= atol + tol * abs(want), f"{where}: {got!r} vs {want!r}"


def npf_annual_irr(flows) -> float:
    """The annual IRR of monthly flows by numpy_financial's root closest to zero."""
    import numpy_financial as npf

    i = float(npf.irr(np.asarray(flows, dtype=np.float64)))
    return math.nan if math.isnan(i) else (1.0 + i) ** 12 - 1.0


def assert_close(name, got, want, scale, tol=1e-9, where=""):
    if isinstance(want, float) and (math.isnan(want) or math.isinf(want)):
        assert (math.isnan(got) and math.isnan(want)) or got == want, f"{where} {name}: {got} vs {want}"
        return
    if name in MONEY:
        atol = tol * scale
    elif name == "payback_months":
        atol = 1e-7
    else:
        atol = tol
    assert abs(got - want) <= atol + tol * abs(want), f"{where} {name}: {got!r} vs {want!r}"


def compare_with_reference(pf, sc, outputs, flats):
    n_checked = 0
    for flat in flats:
        want, clusters, rate = reference_at(pf, sc, flat)
        scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in clusters) + 1.0
        where = f"seed-case flat={flat} point={grid_point(sc, flat)}"
        for name in OUTPUTS:
            assert_close(name, float(outputs[name][flat]), want["portfolio"][name], scale, where=where)
            for c in range(len(pf.clusters)):
                assert_close(f"cluster_{name}[{c}]", float(outputs["cluster_" + name][flat, c]),
                             want["clusters"][c][name], scale, where=where)
        n_checked += 1
    return n_checked


def run_all(pf, sc, backend, chunk_size=None):
    run = prepare(pf, sc, backend, chunk_size)
    parts = list(run.chunks())
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def run_all_checked(pf, sc, backend, chunk_size=None):
    run = prepare(pf, sc, backend, chunk_size)
    parts = list(run.chunks())
    assert [p.start for p in parts] == list(range(0, sc.size, run.chunk_size))
    return {k: np.concatenate([p.outputs[k] for p in parts]) for k in parts[0].outputs}


def assert_same(a, b, rtol, atol_rel=None):
    for name in a:
        x, y = a[name], b[name]
        assert x.shape == y.shape, name
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.array_equal(np.isinf(x), np.isinf(y)), name
        ok = np.isfinite(x)
        scale = np.max(np.abs(y[ok])) if ok.any() else 1.0
        atol = rtol * (scale if atol_rel is None else atol_rel)
        assert np.allclose(x[ok], y[ok], rtol=rtol, atol=atol), (name, np.max(np.abs(x[ok] - y[ok])))


def h5_datasets(path) -> dict:
    """Every dataset of an HDF5 file by its path in the file, read whole."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
    return out


def memoised(fn):
    """fn keeping its results by argument: a call whose arguments equal an earlier call's
    (compared pickled: arrays and dataclasses by content) returns that call's result.
    Around a chunk function's builder (jax_adapter.sensitivity_chunk_fn) it lets the runs
    of one configuration share one jitted function, so one compile per argument shape;
    a run of another configuration builds, and compiles, its own."""
    kept = {}

    def remembered(*args, **kw):
        key = pickle.dumps((args, sorted(kw.items())))
        if key not in kept:
            kept[key] = fn(*args, **kw)
        return kept[key]

    return remembered


# ---------------------------------------------------------------- version 2: items


def random_contracts(rng, n: int) -> list[dict]:
    """n contracts with shares summing below 1; each field but share and price given
    or left to its industry profile and the model's default, about half lost at a
    month, about half labelled with a bundled industry."""
    raw = rng.uniform(0.05, 1.0, n)
    shares = raw / raw.sum() * rng.uniform(0.0, 0.99) if n else raw
    out = []
    for k, share in enumerate(shares):
        c = {"name": f"k{k}", "share": float(share), "price": float(rng.uniform(1.0, 5.0))}
        optional = {"term_months": rng.uniform(1, 60), "renewal_rate": rng.uniform(0, 1),
                    "renewal_discount": rng.uniform(0, 0.4), "utilization": rng.uniform(0.3, 1),
                    "loss_month": rng.uniform(-5, 80)}
        c.update({f: float(v) for f, v in optional.items() if rng.random() < 0.5})
        if rng.random() < 0.5:
            c["industry"] = str(rng.choice(BUNDLED))
        out.append(c)
    return out


def random_segments(rng, n: int) -> list[dict]:
    """n >= 1 segments with shares summing to 1 (round-off); multipliers, volatilities
    and utilizations given or left to an industry profile (every bundled one gives a
    utilization) and the model's default."""
    raw = rng.uniform(0.05, 1.0, n)
    out = []
    for j, share in enumerate(raw / raw.sum()):
        s = {"name": f"s{j}", "share": float(share)}
        if rng.random() < 0.5:
            s["industry"] = str(rng.choice(BUNDLED))
        if "industry" not in s or rng.random() < 0.7:
            s["utilization"] = float(rng.uniform(0, 1))
        if rng.random() < 0.6:
            s["price_multiplier"] = float(rng.uniform(0.5, 1.6))
        if rng.random() < 0.3:
            s["utilization_sigma"] = float(rng.uniform(0, 0.2))
        out.append(s)
    return out


def random_portfolio_v2(rng, n_clusters=None, horizon=None) -> dict:
    """A version 2 portfolio file as a YAML-able dict: 1-3 clusters (random_cluster's
    parameters), each with explicit contracts (0-3) or the implied ones of its version 1
    keys, and explicit segments (1-4) or the implied one; at least one cluster gives a
    list, so the portfolio is itemised. A list replaces its version 1 keys in the file."""
    n = int(n_clusters or rng.integers(1, 4))
    explicit = [{kind: bool(rng.random() < 0.6) for kind in KINDS} for _ in range(n)]
    if not any(any(e.values()) for e in explicit):
        explicit[int(rng.integers(0, n))][str(rng.choice(KINDS))] = True
    clusters = []
    for i, form in enumerate(explicit):
        c = {"name": f"c{i}", **random_cluster(rng)}
        if form["contracts"]:
            c = {k: v for k, v in c.items() if k not in REPLACES["contracts"]}
            c["contracts"] = random_contracts(rng, int(rng.integers(0, 4)))
        elif math.isinf(c["client_loss_month"]):
            del c["client_loss_month"]  # never: the default
        if form["segments"]:
            c = {k: v for k, v in c.items() if k not in REPLACES["segments"]}
            c["segments"] = random_segments(rng, int(rng.integers(1, 5)))
        clusters.append(c)
    return {
        "portfolio": {"name": "random", "currency": "USD",
                      "horizon_months": int(horizon or rng.choice([1, 12, 37, 60, 96])),
                      "discount_rate": float(rng.uniform(-0.05, 0.3))},
        "clusters": clusters,
    }


def load_portfolio_doc(tmp_path, doc: dict, name: str = "portfolio.yaml") -> Portfolio:
    """A portfolio file's dict written as YAML under tmp_path and loaded as a user's file
    is (stresstest.config.load_portfolio)."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_portfolio(path)


def reference_clusters(pf: Portfolio) -> list[dict]:
    """The portfolio's clusters as the reference model takes them: the version 1
    parameters, plus `contracts` and `segments` where the cluster gives them (as
    resolved by the loader: industry profiles and defaults filled in), `order_month`
    and `capex_decline` where given, and its `optimization` programme where it has one
    (start_month None where the file leaves it to the default rule)."""
    out = []
    for params, items, scalars in zip(pf.clusters, pf.items, pf.scalars):
        c = dict(params)
        for kind in KINDS:
            given = items.of(kind)
            if given is not None:
                c[kind] = [dict(item) for item in given]
        c.update({spec.name: scalars.values[spec.name] for spec in ORDER_PARAMS if spec.name in scalars.values})
        if scalars.programme:
            c["optimization"] = {field_name(spec): scalars.values.get(spec.name) for spec in OPTIMIZATION_PARAMS}
        out.append(c)
    return out


def reference_platform(pf: Portfolio) -> dict | None:
    """The portfolio's platform layer as the reference model takes it (field -> value):
    the file's, the model's defaults ({}) where only a scenario uses the group
    (Portfolio.use), None without one."""
    if not pf.has_platform:
        return None
    if pf.platform is None:
        return {}
    return {field_name(spec): pf.platform.values[spec.name] for spec in PLATFORM_PARAMS}


def item_path_axis(pf: Portfolio, path: str, op: str, values, clusters=None) -> Axis:
    """An axis on the items at `path` (contracts.<name>.<field>, segments.*.<field>, ...)
    in the clusters named (None: all), its target and item mask as a grid file's
    (grid_config.resolve_item_path); the path is kept in the axis's `param`."""
    cluster_mask = None if clusters is None else tuple(n in clusters for n in pf.cluster_names)
    target, item_mask, why = resolve_item_path(path, pf, cluster_mask)
    assert why is None, why
    spec = AxisSpec(path, (target,), op, cluster_mask, item_mask)
    return Axis(path, spec, np.asarray(values, dtype=float), None, path, clusters)


def is_path_axis(axis: Axis) -> bool:
    """An axis on items (item_path_axis), not on version 1 keys or a named shock."""
    return axis.spec.item_mask is not None


def reference_v2_at(pf: Portfolio, axes: list[Axis], s: int):
    """Reference outputs with each axis at its value `s` (the axes are zipped, not a
    grid), as MODEL.md and docs/model.md order the shocks of a point: version 1 keys,
    named shocks and the version 2 scalars (order_month, capex_decline,
    optimization.<field>, platform.<field>: the reference's apply_path_shock, within
    the axis's cluster mask) first, in axis order; then the item paths in axis order;
    then the shares balanced once. Returns (outputs, clusters, rate)."""
    clusters, platform = reference_clusters(pf), reference_platform(pf)
    rate = pf.discount_rate
    for axis in axes:
        if is_path_axis(axis):
            continue
        op, value = axis.spec.op, float(axis.values[s])
        if axis.param == "discount_rate":
            rate = max({"scale": rate * value, "shift": rate + value, "set": value}[op], -1 + 1e-9)
        elif axis.param in V2_SCALARS:
            mask = None if axis.spec.cluster_mask is None else list(axis.spec.cluster_mask)
            clusters, platform = ref.apply_path_shock(clusters, platform, axis.param, op, value, cluster_mask=mask,
                                                      horizon_months=pf.horizon_months)
        else:
            for i, name in enumerate(pf.cluster_names):
                if axis.clusters is None or name in axis.clusters:
                    clusters[i] = ref.apply_shock(clusters[i], axis.shock or axis.param, op, value)
    for axis in axes:
        if is_path_axis(axis):
            mask = None if axis.clusters is None else [n in axis.clusters for n in pf.cluster_names]
            clusters, _ = ref.apply_path_shock(clusters, None, axis.param, axis.spec.op,
                                               float(axis.values[s]), cluster_mask=mask)
    clusters = ref.balance_shares(clusters)
    return ref.evaluate(clusters, pf.horizon_months, rate, platform=platform), clusters, rate


def evaluate_zipped(pf: Portfolio, axes: list[Axis], backend) -> dict[str, np.ndarray]:
    """Every output of the kernels at the points s = 0..S-1, point s taking each axis's
    value s (kernels.shocks.apply_axis_values, then kernels.metrics.evaluate), in one
    call on the backend (compiled where it compiles). Outputs as numpy arrays [S, ...]."""
    specs = tuple(a.spec for a in axes)
    base = {k: backend.asarray(v) for k, v in pf.base_arrays().items()}
    rate = backend.asarray(np.asarray(pf.discount_rate))
    values = tuple(backend.asarray(a.values) for a in axes)

    def points(base, rate, values):
        params, r = apply_axis_values(base, rate, specs, values)
        return evaluate(params, r, pf.horizon_months)

    with np.errstate(all="ignore"):
        out = backend.compile(points)(base, rate, values)
    return {k: backend.to_numpy(v) for k, v in out.items()}


# magnitude of an item field's shifts and set values (scale: 0..2 for every field)
ITEM_FIELD_SPAN = {"share": 1.0, "price": 5.0, "term_months": 36.0, "renewal_rate": 1.0,
                   "renewal_discount": 1.0, "utilization": 1.0, "loss_month": 40.0,
                   "price_multiplier": 1.0}


def random_item_path_axis(rng, pf: Portfolio, n_points: int) -> Axis:
    """An item path axis with n_points random values: a path that some selected cluster
    has (explicit names, anchor/others, or "*"), any flow field, any op, values past the
    field's range too (clipped), on every cluster or on one."""
    clusters = None
    if len(pf.cluster_names) > 1 and rng.random() < 0.3:
        clusters = [str(rng.choice(pf.cluster_names))]
    candidates = []
    for items, cname in zip(pf.items, pf.cluster_names):
        if clusters is not None and cname not in clusters:
            continue
        for kind in KINDS:
            names = items.names(kind)
            if names or items.of(kind) is None:  # "*" reaches an implied segment too
                names = names + ["*"]
            candidates += [(kind, n) for n in names if (kind, n) not in candidates]
    kind, name = candidates[int(rng.integers(0, len(candidates)))]
    fields = [f.name for f in ITEM_FIELDS[kind] if f"{kind}.{f.name}" not in NOT_IN_FLOWS]
    field_ = str(rng.choice(fields))
    op = str(rng.choice(["scale", "shift", "set"]))
    span = ITEM_FIELD_SPAN[field_]
    values = {"scale": rng.uniform(0, 2, n_points), "shift": rng.uniform(-0.5, 0.5, n_points) * span,
              "set": rng.uniform(-0.1, 1.1, n_points) * span}[op]
    return item_path_axis(pf, f"{kind}.{name}.{field_}", op, values, clusters)


def random_axes_v2(rng, pf: Portfolio, n_points: int) -> list[Axis]:
    """Zipped axes with n_points values each, in random order: random_scenario's axes
    (version 1 keys with every op, some per cluster; the discount rate; named shocks,
    with their item targets, named_targets(name, True)), their values redrawn from their
    grid values, and 1-3 item path axes (random_item_path_axis)."""
    axes = []
    for a in random_scenario(rng, pf).axes:
        spec = replace(a.spec, targets=named_targets(a.shock, True)) if a.shock else a.spec
        axes.append(Axis(a.name, spec, rng.choice(a.values, n_points), a.shock, a.param, a.clusters))
    axes += [random_item_path_axis(rng, pf, n_points) for _ in range(int(rng.integers(1, 4)))]
    return [axes[i] for i in rng.permutation(len(axes))]


def compare_v2_with_reference(pf: Portfolio, axes: list[Axis], outputs: dict, points) -> int:
    """The kernels' outputs (evaluate_zipped) at `points` against the reference's
    (reference_v2_at): every version 1 output, portfolio and clusters, and revenue by
    industry, portfolio and clusters, each label at its index in the portfolio's industry
    coordinate, Portfolio.industries (the reference's labels must be the same, in the
    same order); where the portfolio carries a programme group, optimization_cost
    (portfolio and clusters), and a platform, platform_npv and platform_revenue.
    Returns the count."""
    labels = pf.industries
    v2_money = (("optimization_cost",) if "optimization" in pf.groups else ()) + (
        ("platform_npv", "platform_revenue") if pf.has_platform else ())
    for s in points:
        want, clusters, rate = reference_v2_at(pf, axes, s)
        scale = sum(c["gpus"] * c["capex_per_gpu"] + c["capex_fixed"] for c in clusters) + 1.0
        where = f"point {s}: " + ", ".join(f"{a.name} {a.spec.op} {float(a.values[s])!r}" for a in axes)
        for name in OUTPUTS:
            assert_close(name, float(outputs[name][s]), want["portfolio"][name], scale, where=where)
            for c in range(len(clusters)):
                assert_close(f"cluster_{name}[{c}]", float(outputs["cluster_" + name][s, c]),
                             want["clusters"][c][name], scale, where=where)
        by_industry = want["v2"]["revenue_by_industry"]
        assert list(by_industry) == labels, where
        for i, label in enumerate(labels):
            # money: assert_close's "revenue" tolerance, absolute floor scaled by capex
            assert_close("revenue", float(outputs["revenue_by_industry"][s, i]), by_industry[label], scale,
                         where=f"{where} revenue_by_industry[{label}]")
            for c, row in enumerate(want["v2"]["cluster_revenue_by_industry"]):
                assert_close("revenue", float(outputs["cluster_revenue_by_industry"][s, c, i]), row[label],
                             scale, where=f"{where} cluster_revenue_by_industry[{c}, {label}]")
        for name in v2_money:  # money: the same tolerance as revenue
            assert_close("revenue", float(outputs[name][s]), want["v2"][name], scale, where=f"{where} {name}")
            if name == "optimization_cost":
                for c, value in enumerate(want["v2"]["cluster_optimization_cost"]):
                    assert_close("revenue", float(outputs["cluster_" + name][s, c]), value, scale,
                                 where=f"{where} cluster_{name}[{c}]")
    return len(points)


# ------------------------------------------- version 2, part 2: build-out, programmes, platform


def random_programme(rng, horizon: int) -> dict:
    """An `optimization:` mapping: each field given or left to its default, the start
    month about half the time (else the default rule, ceil(t_o + D)), some past the
    horizon."""
    u = rng.uniform
    drawn = {"cost": u(0, 2e6), "cost_per_year": u(0, 1e6), "start_month": int(rng.integers(1, horizon + 7)),
             "ramp_months": u(1, 12), "utilization_gain": u(-0.05, 0.2), "energy_saving": u(0, 0.6),
             "opex_saving": u(0, 0.5)}
    return {k: (v if k == "start_month" else float(v)) for k, v in drawn.items() if rng.random() < 0.5}


def random_platform(rng, horizon: int) -> dict:
    """A `platform:` mapping of the portfolio: block, each field given or left to its default."""
    u = rng.uniform
    drawn = {"build_cost": u(0, 5e6), "launch_month": int(rng.integers(1, horizon + 1)),
             "run_cost_per_year": u(0, 3e6), "opex_escalation": u(-0.05, 0.1), "take_rate": u(0, 0.3),
             "users_max": u(0, 2e4), "adoption_months": u(0.5, 36), "fee_per_user_month": u(0, 200),
             "fee_growth": u(-0.1, 0.2), "margin": u(0, 1), "tax_rate": u(0, 0.4)}
    return {k: (v if k == "launch_month" else float(v)) for k, v in drawn.items() if rng.random() < 0.6}


# The fastest capex decline drawn: GPUs nearly free after a wait (a decline near 100 %
# a year) make an IRR of some 1e20 a year, whose root lies in the last, wide cell of
# the IRR solver's ladder (kernels/irr.py), where a few Newton steps do not reach 1e-9.
CAPEX_DECLINE_MAX = 0.6


def random_portfolio_v2b(rng, n_clusters=None, horizon=None) -> dict:
    """A portfolio file as a YAML-able dict with every version 2 feature in the mix:
    random_portfolio_v2's clusters (explicit contracts and segments with industries, or
    the implied items of version 1 keys), each with about even odds an order month
    (0..T/2), a capex decline and an optimization programme (random_programme); a
    platform layer in the portfolio: block in about 2 portfolios of 3."""
    doc = random_portfolio_v2(rng, n_clusters, horizon)
    T = doc["portfolio"]["horizon_months"]
    for c in doc["clusters"]:
        if rng.random() < 0.5:
            c["order_month"] = int(rng.integers(0, T // 2 + 1))
        if rng.random() < 0.5:
            c["capex_decline"] = float(rng.uniform(-0.3, CAPEX_DECLINE_MAX / 2))
        if rng.random() < 0.5:
            c["optimization"] = random_programme(rng, T)
    if rng.random() < 0.7:
        doc["portfolio"]["platform"] = random_platform(rng, T)
    return doc


# magnitude of a version 2 scalar's shifts and set values (scale: 0..2 for every field);
# None: the horizon
SCALAR_SPAN = {"order_month": None, "capex_decline": 1.0, "optimization.cost": 2e6,
               "optimization.cost_per_year": 1e6, "optimization.start_month": None,
               "optimization.ramp_months": 12.0, "optimization.utilization_gain": 0.3,
               "optimization.energy_saving": 1.0, "optimization.opex_saving": 1.0, "platform.build_cost": 5e6,
               "platform.launch_month": None, "platform.run_cost_per_year": 3e6, "platform.opex_escalation": 0.5,
               "platform.take_rate": 1.0, "platform.users_max": 2e4, "platform.adoption_months": 36.0,
               "platform.fee_per_user_month": 200.0, "platform.fee_growth": 0.5, "platform.margin": 1.0,
               "platform.tax_rate": 1.0}
assert set(SCALAR_SPAN) == set(V2_SCALARS)


def scalar_axis(pf: Portfolio, target: str, op: str, values, clusters=None) -> Axis:
    """An axis on a version 2 scalar (order_month, capex_decline, optimization.<field>,
    platform.<field>) of the clusters named (None: all), its target and cluster mask as
    a grid file's (grid_config.resolve_scalar_path: a programme's field moves the
    clusters that run one, the platform's needs a platform layer); the portfolio
    carries the field's group from here on, as load_grid makes it (Portfolio.use)."""
    cluster_mask = None if clusters is None else tuple(n in clusters for n in pf.cluster_names)
    resolved, mask, why = resolve_scalar_path(target, pf, cluster_mask)
    assert why is None, why
    pf.use(scalar_group(resolved))
    return Axis(target, AxisSpec(target, (resolved,), op, mask), np.asarray(values, dtype=float), None, target,
                clusters)


def random_scalar_axis(rng, pf: Portfolio, n_points: int, exclude=()) -> Axis:
    """An axis with n_points random values on a version 2 scalar (but those in
    `exclude`): the order month or capex decline (every cluster or one), a programme's
    field where some cluster has a programme, the platform's where the portfolio has
    one; any op, values past the field's range too (clipped; months rounded, halves
    among them)."""
    targets = ["order_month", "capex_decline"] + [p.name for p in PLATFORM_PARAMS if pf.platform is not None]
    programmes = [n for s, n in zip(pf.scalars, pf.cluster_names) if s.programme]
    if programmes:
        targets += [p.name for p in OPTIMIZATION_PARAMS]
    target = str(rng.choice([t for t in targets if t not in exclude]))
    clusters = None
    if not target.startswith("platform.") and len(pf.cluster_names) > 1 and rng.random() < 0.3:
        clusters = [str(rng.choice(programmes if target.startswith("optimization.") else pf.cluster_names))]
    op = str(rng.choice(["scale", "shift", "set"]))
    span = SCALAR_SPAN[target] or float(pf.horizon_months)
    values = {"scale": rng.uniform(0, 2, n_points), "shift": rng.uniform(-0.5, 0.5, n_points) * span,
              "set": rng.uniform(-0.1, 1.1, n_points) * span}[op]
    if target == "capex_decline":  # past -1 (clipped) but at most 60 %/yr (CAPEX_DECLINE_MAX)
        values = {"scale": values, "shift": values * 0.6, "set": rng.uniform(-1.2, CAPEX_DECLINE_MAX, n_points)}[op]
    if op != "scale" and SCALAR_SPAN[target] is None:
        halves = rng.random(n_points) < 0.3  # a month half way between two: rounded up
        values = np.where(halves, np.round(values) + 0.5, values)
    return scalar_axis(pf, target, op, values, clusters)


def random_axes_v2b(rng, pf: Portfolio, n_points: int) -> list[Axis]:
    """random_axes_v2's axes (version 1 keys, the discount rate, named shocks, item
    paths) and 1-3 axes on version 2 scalars (random_scalar_axis), zipped, in random order."""
    axes = random_axes_v2(rng, pf, n_points)
    for _ in range(int(rng.integers(1, 4))):
        axes.append(random_scalar_axis(rng, pf, n_points))
    return [axes[i] for i in rng.permutation(len(axes))]


def adversarial_irr_flows(rng, n: int, kind: str, horizon: int, max_shift: float | None = None):
    """n rows of monthly flows (horizon + 1 months) whose root closest to 0 is known by
    construction: kind "pair", two simple roots 1e-4 to 2e-3 a month apart, or
    "tangency", a double root; at a monthly rate of 0.1 % to 30 % either way.

    The flows are the coefficients of p(x) = sum_t F_t x^t (x = 1/(1+i)), a product of
    (x - x_j) factors: the pair or the double root, up to two farther simple roots (at
    least 5 % a month farther from 0, either side), up to two near misses (complex pairs
    at 0.3 % to 3 % of the rate off the real line), one of them in about a third of the
    rows closer to 0 than the pair, and a remainder of random positive coefficients
    (no positive real root); computed in extended precision, rounded once, scaled by
    1 to 1e6. Unused factors are (x + 1), whose root x = -1 is no rate.

    Returns (flows [n, horizon+1], the closest root [n], slack [n]): how far float64's
    rounding of the coefficients may move that root (a pair's by u sum |F_t| x^t /
    |p'|, a double root's by the square root of that over p''), times 8 (T+1). Rows
    where the slack passes max_shift (default 1e-8 for pairs, 1e-5 for tangencies) are
    drawn again: the construction would not know their root.
    """
    L = np.longdouble
    T = horizon
    limit = max_shift if max_shift is not None else (1e-8 if kind == "pair" else 1e-5)
    rows, roots, slacks = [], [], []
    have = 0
    while have < n:
        m = 2 * (n - have) + 8
        mag = np.exp(rng.uniform(np.log(1e-3), np.log(0.3), m))
        i0 = np.where(rng.random(m) < 0.6, mag, -mag)
        d = np.exp(rng.uniform(np.log(1e-4), np.log(2e-3), m)) if kind == "pair" else np.zeros(m)
        real = [i0, i0 + np.sign(i0) * d]
        for _ in range(2):  # farther simple roots, or none
            far = np.abs(i0) + 0.05 + rng.exponential(0.2, m)
            side = rng.random(m) < 0.5
            real.append(np.where(rng.random(m) < 0.5, np.nan, np.where(side, far, -np.minimum(far, 0.9))))
        c = np.ones((m, 1), dtype=L)
        for r in real:  # times (x - 1/(1+r)), or (x + 1)
            x_r = np.where(np.isnan(r), -1.0, 0.0) + np.where(np.isnan(r), 0.0, 1.0 / (1.0 + np.nan_to_num(r)))
            c = _times_poly(c, [-x_r.astype(L), np.ones(m, dtype=L)])
        for closer in (False, True):  # near misses: (x - xr)^2 + im^2, or (x + 1)^2
            miss = np.abs(i0) * rng.uniform(0.2, 0.8, m) if closer else np.abs(i0) + 0.02 + rng.exponential(0.1, m)
            use = rng.random(m) < (0.3 if closer else 0.5)
            s = np.where((rng.random(m) < 0.5) & (miss < 0.9), -1.0, 1.0)
            xr = 1.0 / (1.0 + s * miss)
            im = xr * np.exp(rng.uniform(np.log(3e-3), np.log(3e-2), m))
            c = _times_poly(c, [np.where(use, xr * xr + im * im, 1.0).astype(L),
                                np.where(use, -2.0 * xr, 2.0).astype(L), np.ones(m, dtype=L)])
        deg = c.shape[1] - 1
        rem = np.exp(rng.normal(0.0, 1.0, (m, T - deg + 1))) * np.exp(
            -rng.uniform(0.0, 0.05, (m, 1)) * np.arange(T - deg + 1))
        flows = _times_poly(rem.astype(L), [c[:, k] for k in range(deg + 1)])
        flows = (flows * (10.0 ** rng.uniform(0, 6, (m, 1)) * rng.choice([-1.0, 1.0], (m, 1)))).astype(np.float64)
        slack = _root_slack(flows, i0, kind)
        keep = slack <= limit
        rows.append(flows[keep]), roots.append(i0[keep]), slacks.append(slack[keep])
        have += int(keep.sum())
    return np.concatenate(rows)[:n], np.concatenate(roots)[:n], np.concatenate(slacks)[:n]


def _times_poly(c, factor):
    """Rows of polynomial coefficients c [m, k] (ascending) times the polynomial whose
    coefficients (ascending) are the arrays `factor`, row by row."""
    m, k = c.shape
    out = np.zeros((m, k + len(factor) - 1), dtype=c.dtype)
    for j, f in enumerate(factor):
        out[:, j:j + k] += np.asarray(f)[:, None] * c
    return out


def _root_slack(flows, rate, kind: str):
    """adversarial_irr_flows' slack of the root `rate` [m] of each row (see there)."""
    T = flows.shape[1] - 1
    pos = rate >= 0
    y = np.where(pos, 1.0 / (1.0 + rate), 1.0 + rate)
    coef = np.where(pos[:, None], flows, flows[:, ::-1])  # the side's polynomial
    p = dp = ddp = a = np.zeros(len(rate))
    for t in range(T, -1, -1):
        ddp, dp, p = ddp * y + dp, dp * y + p, p * y + coef[:, t]
        a = a * y + np.abs(coef[:, t])
    noise = 8 * (T + 1) * 2.0**-53 * a
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = noise / np.abs(dp) if kind == "pair" else np.sqrt(2 * noise / np.abs(2 * ddp))
    return np.where(pos, shift / y**2, shift)  # in the rate: di = -dx / x^2 on the positive side


def polynomial_residual(flows, rates):
    """|sum_t F_t (1+i)^-t| over sum_t |F_t| (1+i)^-t for each row's rate, evaluated on
    the side where the powers stay below 1, in extended precision: how far a reported
    root is from being one, against the scale of float64's round-off (NaN rates: 0)."""
    L = np.longdouble
    flows = np.asarray(flows)
    rates = np.asarray(rates, dtype=np.float64)
    ok = np.isfinite(rates)
    r = np.where(ok, rates, 0.0)
    pos = r >= 0
    y = np.where(pos, L(1) / (L(1) + r.astype(L)), L(1) + r.astype(L))
    coef = np.where(pos[:, None], flows, flows[:, ::-1]).astype(L)
    p = a = np.zeros(len(r), dtype=L)
    for t in range(coef.shape[1] - 1, -1, -1):
        p = p * y + coef[:, t]
        a = a * y + np.abs(coef[:, t])
    return np.where(ok, np.abs(p) / np.where(a > 0, a, 1), 0.0).astype(np.float64)
