"""Sensitivities of a version 2 portfolio (issue 26): the gradients of every item field.

A portfolio with explicit contracts and segments (industries among them), a cluster
whose items are all implied by its version 1 keys, and one with contracts of its own but
an implied segment. At every grid point each parameter column is checked against a
central finite difference of kernels.metrics.evaluate on numpy, the points and steps
chosen away from kinks (contract terms, delivery and loss months off whole months):
- an item column (contracts.bank.price): that item's value at the grid point moved, the
  other items held and no share rebalanced;
- a "*" column: every item of the kind of the cluster moved by the same step;
- a version 1 key of a cluster with implied items: the key moved and the implied items
  derived again (kernels.shocks.with_implied_items), which is what its total derivative
  means.
The NaN cells are exactly the items a cluster lacks; the slopes along the axes match
differences through the whole shock pipeline; a version 1 portfolio's file keeps its
parameter coordinate, and its version 1 keys' gradients are the same whether the kernels
carry its items (implied) or not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("jax")

from stresstest.backends import make_backend  # noqa: E402
from stresstest.engine import (ABSENT, NEVER, never_parameters, prepare, sensitivity_items,  # noqa: E402
                               sensitivity_parameters)
from stresstest.kernels.metrics import evaluate  # noqa: E402
from stresstest.kernels.params import ITEM_PARAMS, PARAM_NAMES  # noqa: E402
from stresstest.kernels.shocks import apply_axis_values, axis_point_values, with_implied_items  # noqa: E402
from stresstest.presets import list_presets  # noqa: E402
from stresstest.runner import load_inputs, run_scenario  # noqa: E402

REL_STEP = 1e-6

PORTFOLIO = """
portfolio: {name: v2-sensitivities, horizon_months: 48, discount_rate: 0.09}
defaults:
  gpus: 800
  capex_per_gpu: 28000
  on_demand_price: 2.3
  delivery_months: 2.5
  next_gen_month: 30.5
  debt_fraction: 0.3
clusters:
  - name: explicit
    contracts:
      - {name: bank, share: 0.3, price: 2.0, term_months: 13.7, industry: finance}
      - {name: lab, share: 0.2, price: 1.8, term_months: 11.3, loss_month: 18.5, industry: healthcare}
    segments:
      - {name: train, share: 0.6, utilization: 0.7}
      - {name: shop, share: 0.4, industry: retail}
  - name: implied
    reserved_share: 0.45
    reserved_price: 1.9
    reserved_term_months: 13.3
    top_client_share: 0.4
    client_loss_month: 30.5
    utilization_training: 0.62
    utilization_inference: 0.74
    inference_share: 0.35
  - name: mixed
    contracts:
      - {name: bank, share: 0.25, price: 2.1, term_months: 17.2, renewal_rate: 0.6}
    utilization_training: 0.66
"""

# the implied cluster alone: a version 1 portfolio
VERSION_1 = PORTFOLIO.split("clusters:")[0] + "clusters:\n  - name: implied\n" + (
    PORTFOLIO.split("  - name: implied\n")[1].split("  - name: mixed")[0])

GRID = """
scenario:
  kind: grid
  name: v2-axes
  axes:
    - {shock: utilization, values: [-0.04, 0.03]}
    - {shock: price, values: [0.85, 0.95, 1.0, 1.1]}
    - {param: contracts.bank.price, op: scale, values: [0.9, 1.15]}
    - {param: segments.train.utilization, op: shift, values: [-0.05, 0.02]}
"""

# the version 1 keys an implied book or pool is derived from (kernels/shocks.py implied_items)
IMPLIED_FROM = {
    "contracts": ("reserved_share", "reserved_price", "reserved_term_months", "renewal_rate",
                  "renewal_discount", "reserved_utilization", "top_client_share", "client_loss_month"),
    "segments": ("utilization_training", "utilization_inference", "inference_share"),
}


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    """The portfolio, its grid, the sensitivities of the full reverse pass (engine.prepare,
    not factored), and the result file of a run as the command line makes it (factored
    where it can be) with what the run says computed it (RunResult.backend)."""
    tmp = tmp_path_factory.mktemp("v2s")
    portfolio, grid = _write(tmp, "p.yaml", PORTFOLIO), _write(tmp, "g.yaml", GRID)
    pf, sc = load_inputs(portfolio, grid)
    full = _all(prepare(pf, sc, make_backend("jax"), sensitivities=True, factor=False))
    done = run_scenario(portfolio, grid, tmp / "v2.h5", backend="jax", sensitivities=True, progress=False)
    return pf, sc, full, done.path, done.backend


def _all(run) -> dict:
    chunks = [c.outputs for c in run.chunks()]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _points(pf, sc):
    """The shocked parameters (each [S, C] or [S, C, K]) and discount rates [S] of every grid point."""
    base = {k: v.astype(np.float64) for k, v in pf.base_arrays().items()}
    values = tuple(np.asarray(a.values, dtype=np.float64) for a in sc.axes)
    point = axis_point_values(values, np.arange(sc.size))
    p, r = apply_axis_values(base, np.asarray(pf.discount_rate), tuple(a.spec for a in sc.axes), point)
    return {k: np.broadcast_to(v, (sc.size,) + v.shape[1:]).copy() for k, v in p.items()}, np.broadcast_to(r, (sc.size,))


def _columns(pf):
    """Each column of the parameter coordinate: (name, kind, item or None, field)."""
    out = []
    for name in sensitivity_parameters(pf):
        if name in PARAM_NAMES:
            out.append((name, None, None, name))
        else:
            kind, rest = name.split(".", 1)
            item, field = rest.rsplit(".", 1)
            out.append((name, kind, item, field))
    return out


def _slots(pf, c, kind, item):
    """The slots of cluster c that a column's item picks ("*": every item), [] if none."""
    it = pf.items[c]
    names = it.names(kind)
    if item == "*":
        return list(range(1 if kind == "segments" and it.of(kind) is None else len(names)))
    return [names.index(item)] if item in names else []


def _moved(p, s, c, column, pf, h):
    """The parameters of point s with column's value of cluster c moved by h."""
    name, kind, item, field = column
    q = {k: v[s:s + 1].copy() for k, v in p.items()}
    if kind is None:
        q[name][0, c] += h
        # a cluster whose items are implied: they follow the key (its total derivative)
        q.update(with_implied_items(np, q))
    else:
        for k in _slots(pf, c, kind, item):
            q[f"{kind}.{field}"][0, c, k] += h
    return q


def _value(p, s, c, column, pf):
    """The column's value at point s for cluster c (a "*" column: its items' values)."""
    name, kind, item, field = column
    if kind is None:
        return [p[name][s, c]]
    return [p[f"{kind}.{field}"][s, c, k] for k in _slots(pf, c, kind, item)]


def _fd(p, r, s, c, column, pf, h, horizon):
    """Outputs at the column's value - h, + h of cluster c at point s (rows 0 and 1)."""
    lo, hi = _moved(p, s, c, column, pf, -h), _moved(p, s, c, column, pf, h)
    batch = {k: np.concatenate([lo[k], hi[k]]) for k in lo}
    with np.errstate(all="ignore"):
        return evaluate(batch, np.repeat(r[s:s + 1], 2), horizon, equity_clusters=tuple(range(len(pf.clusters))))


def test_every_item_field_has_a_column_named_by_path(v2):
    pf, *_ = v2
    names = sensitivity_parameters(pf)
    assert names[:len(PARAM_NAMES)] == list(PARAM_NAMES)
    items = names[len(PARAM_NAMES):]
    contract_fields = [k.split(".")[1] for k in ITEM_PARAMS if k.startswith("contracts.")]
    segment_fields = [k.split(".")[1] for k in ITEM_PARAMS if k.startswith("segments.")]
    want = ([f"contracts.{n}.{f}" for n in ("bank", "lab", "anchor", "others", "*") for f in contract_fields]
            + [f"segments.{n}.{f}" for n in ("train", "shop", "*") for f in segment_fields])
    assert items == want


def test_gradients_match_central_differences(v2):
    pf, sc, out, _, _ = v2
    p, r = _points(pf, sc)
    horizon = pf.horizon_months
    checked = 0
    for s in range(sc.size):
        for c in range(len(pf.clusters)):
            for j, column in enumerate(_columns(pf)):
                name, kind, item, field = column
                values = _value(p, s, c, column, pf)
                if not values:  # the cluster has no such item
                    continue
                if kind is None and name not in IMPLIED_FROM["contracts"] + IMPLIED_FROM["segments"] + (
                        "gpus", "on_demand_price"):
                    continue  # version 1's other keys: tests/test_sensitivities.py
                if not all(math.isfinite(v) for v in values):  # never: no move, no derivative
                    assert out["grad_npv"][s, c, j] == 0.0
                    assert math.isnan(out["npv_per_pct"][s, c, j])
                    continue
                h = REL_STEP * max(max(abs(v) for v in values), 1.0)
                f = _fd(p, r, s, c, column, pf, h, horizon)
                where = f"point {s} cluster {pf.cluster_names[c]} {name}"
                for grad, key, scale in (("grad_npv", "npv", 1e-9), ("grad_roi", "roi", 1e-13),
                                         ("grad_irr", "irr", 1e-12)):
                    central = (f[key][1] - f[key][0]) / (2 * h)
                    got = out[grad][s, c, j]
                    atol = scale * (abs(f[key][0]) + 1.0) / h
                    assert abs(got - central) <= 2e-5 * abs(central) + atol, f"{grad} {where}: {got} vs {central}"
                central = (f["cluster_npv"][1, c] - f["cluster_npv"][0, c]) / (2 * h)
                assert out["grad_cluster_npv"][s, c, j] == pytest.approx(central, rel=2e-5, abs=1e-3 / h)
                checked += 1
    assert checked > 400


def test_nan_exactly_where_a_cluster_lacks_the_item(v2):
    pf, sc, out, _, _ = v2
    absent = np.array([[not _value(_points(pf, sc)[0], 0, c, col, pf) for col in _columns(pf)]
                       for c in range(len(pf.clusters))])
    assert absent.any() and not absent[:, :len(PARAM_NAMES)].any()
    assert np.isfinite(out["irr"]).all()
    for name in ("grad_npv", "grad_roi", "grad_irr", "grad_cluster_npv"):
        assert (np.isnan(out[name]) == absent[None]).all(), name
    cells = never_parameters(pf, sc)
    assert ((cells == ABSENT) == absent).all()
    # a percent move: not applicable where the item is absent or its value is never
    assert (np.isnan(out["npv_per_pct"]) == (cells > 0)[None]).all()
    # never: client_loss_month's default, the "others" contract, bank's default loss month
    never = [(pf.cluster_names[c], sensitivity_parameters(pf)[j]) for c, j in zip(*np.nonzero(cells == NEVER))]
    assert ("implied", "contracts.others.loss_month") in never and ("implied", "contracts.*.loss_month") in never
    assert ("explicit", "contracts.bank.loss_month") in never and ("explicit", "client_loss_month") in never
    assert ("implied", "client_loss_month") not in never


def test_per_pct_of_every_item_is_the_sum_over_the_items(v2):
    pf, sc, out, _, _ = v2
    p, _ = _points(pf, sc)
    cols = _columns(pf)
    index = {col[0]: j for j, col in enumerate(cols)}
    for j, (name, kind, item, field) in enumerate(cols):
        for c in range(len(pf.clusters)):
            values = _value(p, 0, c, cols[j], pf)
            if kind is None or not values or not all(map(math.isfinite, values)):
                continue
            if item != "*":
                assert out["npv_per_pct"][0, c, j] == pytest.approx(out["grad_npv"][0, c, j] * values[0] * 0.01,
                                                                   rel=1e-12, abs=1e-9)
                continue
            named = [index[f"{kind}.{n}.{field}"] for n in pf.items[c].names(kind)]
            if named:  # the items with a name of their own: the "*" column adds theirs up
                assert out["npv_per_pct"][0, c, j] == pytest.approx(out["npv_per_pct"][0, c, named].sum(),
                                                                   rel=1e-9, abs=1e-6)
                assert out["grad_npv"][0, c, j] == pytest.approx(out["grad_npv"][0, c, named].sum(),
                                                                rel=1e-9, abs=1e-6)


def test_slopes_along_the_axes_match_differences_through_the_shocks(v2):
    pf, sc, out, _, _ = v2
    base = {k: v.astype(np.float64) for k, v in pf.base_arrays().items()}
    specs = tuple(a.spec for a in sc.axes)
    values = tuple(np.asarray(a.values, dtype=np.float64) for a in sc.axes)
    for s in range(sc.size):
        point = axis_point_values(values, np.array([s]))
        for a in range(len(sc.axes)):
            h = 1e-6
            rows = []
            for sign in (-1.0, 1.0):
                moved = tuple(v + sign * h if i == a else v for i, v in enumerate(point))
                q, rr = apply_axis_values(base, np.asarray(pf.discount_rate), specs, moved)
                with np.errstate(all="ignore"):
                    rows.append(evaluate(q, np.broadcast_to(rr, (1,)), pf.horizon_months,
                                         equity_clusters=tuple(range(len(pf.clusters))))["npv"][0])
            central = (rows[1] - rows[0]) / (2 * h)
            assert out["slope_npv"][s, a] == pytest.approx(central, rel=2e-5, abs=1e-3), (s, sc.axes[a].name)


def test_factored_grid_gives_the_same_sensitivities(v2):
    import h5py

    _, _, full, path, how = v2
    assert "price interpolated" in how, how
    for name in ("grad_npv", "grad_roi", "grad_irr", "npv_per_pct", "slope_npv"):
        with h5py.File(path, "r") as f:  # the file's grid axes, flattened as the run's points
            a, b = full[name], f[name][()].reshape(full[name].shape)
        assert (np.isnan(a) == np.isnan(b)).all(), name
        ok = np.isfinite(a)
        assert np.allclose(a[ok], b[ok], rtol=1e-9, atol=1e-9 * np.abs(a[ok]).max()), name


def test_version_1_keys_of_implied_items_equal_version_1_gradients(tmp_path):
    """A version 1 portfolio whose kernels carry items (as when a scenario names an item
    path): its version 1 keys' gradients are version 1's, now through the implied items."""
    g = _write(tmp_path, "g.yaml", "scenario:\n  kind: grid\n  axes:\n"
               "    - {shock: utilization, values: [-0.04, 0.03]}\n    - {shock: price, values: [0.8, 1.1]}\n")
    backend = make_backend("jax")
    pf, sc = load_inputs(_write(tmp_path, "p.yaml", VERSION_1), g)
    assert not pf.itemised and sensitivity_items(pf) is None
    plain = next(prepare(pf, sc, backend, sensitivities=True, factor=False).chunks()).outputs
    pf.itemised = True
    assert sensitivity_parameters(pf)[len(PARAM_NAMES)] == "contracts.anchor.share"
    carried = next(prepare(pf, sc, backend, sensitivities=True, factor=False).chunks()).outputs
    for name in ("grad_npv", "grad_roi", "grad_irr", "npv_per_pct"):
        a, b = plain[name], carried[name][..., :len(PARAM_NAMES)]
        assert (np.isnan(a) == np.isnan(b)).all(), name
        ok = np.isfinite(a)
        assert np.allclose(a[ok], b[ok], rtol=1e-9, atol=1e-7), name
    assert np.allclose(plain["slope_npv"], carried["slope_npv"], rtol=1e-9)


def test_version_1_file_keeps_its_parameter_coordinate(tmp_path):
    import h5py

    out = tmp_path / "s.h5"
    run_scenario(_write(tmp_path, "p.yaml", VERSION_1), list_presets()["smoke"], out, backend="jax",
                 sensitivities=True, progress=False)
    with h5py.File(out, "r") as f:
        assert f.attrs["model_version"] == 1
        assert [n.decode() for n in f["parameter"][()]] == list(PARAM_NAMES)
        assert "long_name" not in f["parameter"].attrs
        assert "nonfinite_means" not in f["grad_npv"].attrs
        assert f["grad_npv"].shape[-1] == len(PARAM_NAMES)


def test_version_2_file_labels_the_item_columns(v2):
    import h5py

    pf, _, _, out, _ = v2
    with h5py.File(out, "r") as f:
        assert [n.decode() for n in f["parameter"][()]] == sensitivity_parameters(pf)
        assert "has no item" in f["grad_npv"].attrs["nonfinite_means"]
        assert "never" in f["npv_per_pct"].attrs["nonfinite_means"]
        assert "has no item" in f["npv_per_pct"].attrs["nonfinite_means"]
