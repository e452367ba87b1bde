"""The bundled version 2 example, its named scenario, `show` of items, and the worked
month of docs/model.md (issue 26).

- scenarios/example_v2.yaml loads as the file says (a bank `anchor` and a research
  hospital on ashburn-h100 with a four-segment pool, a retailer on phoenix-b200, a plain
  version 1 dallas-h100), runs on numpy, and its base case is the plain reference's;
- `show` prints a table of each cluster's contracts and segments with every value's
  origin, in text and --json; a version 1 portfolio's table has none of it;
- `-s customers` (anchor-leaves-month-18) moves only the `anchor` contracts: on
  example_v2 the bank's cluster alone, on example.yaml the clusters whose implied
  largest client holds a share; each shocked cluster matches the reference;
- docs/model.md's worked month with contracts and segments keeps its numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import reference_model as ref
from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.engine import evaluate_base
from stresstest.items import industry_labels
from stresstest.presets import list_presets

EXAMPLE_V2 = list_presets()["example_v2"]
LOSS_PATH, LOSS_MONTH = "contracts.anchor.loss_month", 18.0


def _ok(args) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r.output


def _reference_clusters(pf) -> list[dict]:
    """The clusters as the reference model takes them: version 1 keys, plus the
    resolved contracts and segments where a cluster lists them."""
    out = []
    for params, items in zip(pf.clusters, pf.items):
        c = dict(params)
        for kind in ("contracts", "segments"):
            if items.of(kind) is not None:
                c[kind] = [dict(item) for item in items.of(kind)]
        out.append(c)
    return out


def _named_run(portfolio, tmp_path) -> tuple[xr.Dataset, xr.Dataset]:
    out = tmp_path / "customers.h5"
    _ok(["run", str(portfolio), "-s", "customers", "-o", str(out), "--backend", "numpy", "-q"])
    with xr.open_dataset(out, engine="h5netcdf") as ds, \
            xr.open_dataset(out, engine="h5netcdf", group="base") as base:
        return ds.load(), base.load()


# ------------------------------------------------------------------ the example


def test_example_v2_resolves_as_written():
    pf = load_portfolio(EXAMPLE_V2)
    assert pf.warnings == []  # every bundled number is realistic
    assert pf.cluster_names == ["ashburn-h100", "phoenix-b200", "dallas-h100"]
    assert pf.itemised and pf.model_version == 2
    ashburn, phoenix, dallas = pf.items
    assert [(c["name"], c["industry"]) for c in ashburn.contracts] == [("anchor", "finance"),
                                                                      ("hospital", "healthcare")]
    hospital = ashburn.contracts[1]
    assert (hospital["term_months"], hospital["renewal_rate"]) == (48.0, 0.85)
    assert ashburn.origins["contracts"][1]["term_months"] == "profile healthcare"
    assert [s["name"] for s in ashburn.segments] == ["training", "inference", "finance-low-latency",
                                                     "logistics-optimisation"]
    assert sum(s["share"] for s in ashburn.segments) == pytest.approx(1.0, abs=1e-12)
    assert ashburn.segments[2]["price_multiplier"] == 1.25  # the finance profile
    assert [c["name"] for c in phoenix.contracts] == ["retailer"] and phoenix.segments is None
    assert not dallas.explicit
    assert industry_labels(pf.items) == ["finance", "healthcare", "logistics", "retail", "unlabelled"]
    # the bank is the largest customer: most GPU-hours times price of the three
    hourly = {c["name"]: c["share"] * g * c["price"] for it, g in zip(pf.items, (2048, 1024))
              for c in it.contracts}
    assert max(hourly, key=hourly.get) == "anchor"


def test_example_v2_runs_by_name_and_matches_the_reference(tmp_path):
    out = tmp_path / "smoke.h5"
    _ok(["run", "example_v2", "-s", "smoke", "-o", str(out), "--backend", "numpy", "-q"])
    pf = load_portfolio(EXAMPLE_V2)
    want = ref.evaluate(_reference_clusters(pf), pf.horizon_months, pf.discount_rate)
    with xr.open_dataset(out, engine="h5netcdf", group="base") as base:
        assert list(base["industry"].values) == industry_labels(pf.items)
        np.testing.assert_allclose(base["cluster_npv"].values, [c["npv"] for c in want["clusters"]],
                                   rtol=1e-9)
        np.testing.assert_allclose(base["revenue_by_industry"].values,
                                   list(want["v2"]["revenue_by_industry"].values()), rtol=1e-9)
        assert float(base["revenue_by_industry"].sum()) == pytest.approx(float(base["revenue"]), rel=1e-12)
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["model_version"] == 2


# ---------------------------------------------------------------------- show


def test_show_prints_each_clusters_contracts_and_segments_with_their_origins():
    text = _ok(["show", "example_v2"])
    for title in ("ashburn-h100: contracts", "ashburn-h100: segments", "phoenix-b200: contracts"):
        assert title in text
    assert "dallas-h100: contracts" not in text and "phoenix-b200: segments" not in text
    assert "48 §" in text  # the hospital's term, from the healthcare profile
    assert "replaced by the cluster's contracts or segments" in text
    assert "from the industry profile the item names" in text

    data = json.loads(_ok(["show", "example_v2", "--json"]))
    ashburn, phoenix, dallas = data["items"]
    assert (dallas["contracts"], dallas["segments"], phoenix["segments"]) == (None, None, None)
    hospital = {f["name"]: f for f in ashburn["contracts"][1]["fields"]}
    assert hospital["term_months"] == {"name": "term_months", "unit": "months", "value": 48.0,
                                       "origin": "profile healthcare"}
    assert hospital["share"]["origin"] == "file" and hospital["renewal_discount"]["origin"] == "default"
    assert hospital["loss_month"]["value"] is None  # never
    assert ashburn["segments"][3]["industry"] == "logistics"
    rows = {r["name"]: r["origins"] for r in data["parameters"]}
    assert rows["reserved_share"] == ["replaced", "replaced", "cluster"]
    assert rows["inference_share"] == ["replaced", "cluster", "cluster"]


def test_show_of_a_version_1_portfolio_has_no_item_tables():
    data = json.loads(_ok(["show", "example", "--json"]))
    assert "items" not in data and "replaced" not in data["origin_legend"]
    text = _ok(["show", "example"])
    assert ": contracts" not in text and "–" not in text


# ------------------------------------------------------ the named scenario


def test_anchor_leaving_moves_only_the_bank_in_example_v2(tmp_path):
    ds, base = _named_run(EXAMPLE_V2, tmp_path)
    assert list(ds["scenario"].values) == ["anchor-leaves-month-18"]
    shocked = ds["cluster_npv"].isel(scenario=0).values
    assert shocked[0] < base["cluster_npv"].values[0]  # the bank's cluster loses
    np.testing.assert_array_equal(shocked[1:], base["cluster_npv"].values[1:])  # the others do not move
    # finance loses the bank's contract revenue from month 18; the pool gains its GPUs
    by_industry = dict(zip(ds["industry"].values, ds["revenue_by_industry"].isel(scenario=0).values))
    before = dict(zip(base["industry"].values, base["revenue_by_industry"].values))
    assert by_industry["finance"] < before["finance"] and by_industry["unlabelled"] > before["unlabelled"]
    assert by_industry["healthcare"] == before["healthcare"] and by_industry["retail"] == before["retail"]

    pf = load_portfolio(EXAMPLE_V2)
    clusters, _ = ref.apply_path_shock(_reference_clusters(pf), None, LOSS_PATH, "set", LOSS_MONTH)
    want = ref.evaluate(clusters, pf.horizon_months, pf.discount_rate)
    np.testing.assert_allclose(shocked, [c["npv"] for c in want["clusters"]], rtol=1e-9)
    assert float(ds["npv"].isel(scenario=0)) == pytest.approx(want["portfolio"]["npv"], rel=1e-9)


def test_anchor_leaving_moves_the_implied_largest_client_in_example(tmp_path):
    """On a version 1 portfolio `anchor` is each cluster's top client: clusters with a
    top_client_share lose it at month 18, the others do not move."""
    ds, base = _named_run(list_presets()["example"], tmp_path)
    assert ds.attrs["model_version"] == 2  # a path shock carries the items
    pf = load_portfolio(list_presets()["example"])
    holds = [c["top_client_share"] * c["reserved_share"] > 0 for c in pf.clusters]
    assert holds == [True, False, False, False, True, False]
    shocked = ds["cluster_npv"].isel(scenario=0).values
    moved = shocked != base["cluster_npv"].values
    assert list(moved) == holds

    clusters = [ref.apply_shock(c, "client_loss_month", "set", LOSS_MONTH) for c in _reference_clusters(pf)]
    want = ref.evaluate(clusters, pf.horizon_months, pf.discount_rate)
    np.testing.assert_allclose(shocked, [c["npv"] for c in want["clusters"]], rtol=1e-9)


# ---------------------------------------------- docs/model.md's worked month

WORKED = """portfolio: {name: worked, horizon_months: HORIZON, discount_rate: 0.1}
clusters:
  - name: c
    gpus: 1000
    capex_per_gpu: 30000
    on_demand_price: 2.0
    contracts:
      - {name: anchor, share: 0.3, price: 1.9, LOSS industry: finance}
      - {name: lab, share: 0.2, price: 1.8, industry: healthcare}
    segments:
      - {name: training, share: 0.6, utilization: 0.7, price_multiplier: 0.9}
      - {name: low-latency, share: 0.4, industry: finance}
"""


def _worked(tmp_path, horizon=60, loss="loss_month: 10,"):
    path = tmp_path / f"worked_{horizon}_{bool(loss)}.yaml"
    path.write_text(WORKED.replace("HORIZON", str(horizon)).replace("LOSS", loss))
    return path


def _month(path, t: int) -> dict:
    data = json.loads(_ok(["cashflows", str(path), "--cluster", "c", "--json"]))
    lines = data["scopes"]["c"]
    return {k: v[lines["month"].index(t)] for k, v in lines.items()}


def test_the_worked_month_of_docs_model(tmp_path):
    m12 = _month(_worked(tmp_path), 12)
    assert m12["revenue_reserved"] == pytest.approx(262_800.00, abs=1e-6)
    assert m12["revenue"] == pytest.approx(966_403.20, abs=1e-6)
    assert m12["energy"] == pytest.approx(82_770.808224, abs=1e-6)
    assert m12["ebitda"] == pytest.approx(790_932.391776, abs=1e-6)
    assert m12["tax"] == pytest.approx(78_595.80, abs=5e-3)
    assert m12["project_cf"] == pytest.approx(712_336.589503, abs=1e-6)
    # with the bank staying: 730,000 x (0.57 + 0.36 + 0.5 x 0.753 x 1.60)
    assert _month(_worked(tmp_path, loss=""), 12)["revenue"] == pytest.approx(1_118_652.00, abs=1e-6)
    # the month's revenue by industry: 12 months' totals less 11 months'
    by = {T: evaluate_base(load_portfolio(_worked(tmp_path, T)))["revenue_by_industry"] for T in (11, 12)}
    np.testing.assert_allclose(by[12] - by[11], [350_400.00, 262_800.00, 353_203.20], atol=1e-6)
