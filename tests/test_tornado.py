"""Tornado: first-order changes from gradients against exact revaluation and the reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import reference_model as ref
from click.testing import CliRunner

pytest.importorskip("jax")

from stresstest.cli import main  # noqa: E402
from stresstest.config import load_portfolio  # noqa: E402
from stresstest.presets import list_presets  # noqa: E402
from stresstest.tornado import tornado  # noqa: E402


@pytest.fixture(scope="module")
def result():
    pf = load_portfolio(list_presets()["example"])
    return pf, tornado(pf)


def test_exact_column_is_the_reference_model_moved(result):
    pf, res = result
    base = ref.evaluate(pf.clusters, pf.horizon_months, pf.discount_rate)["portfolio"]["npv"]
    assert res["base_npv"] == pytest.approx(base, rel=1e-9)
    name = pf.cluster_names[2]
    for row in res["scopes"][name][:5]:
        moved = [dict(c) for c in pf.clusters]
        moved[2][row["parameter"]] *= 1.1
        want = ref.evaluate(moved, pf.horizon_months, pf.discount_rate)["portfolio"]["npv"] - base
        assert row["exact_up"] == pytest.approx(want, rel=1e-8, abs=1e-3)


def test_linear_equals_exact_where_npv_is_linear(result):
    """NPV is linear in the on-demand price and in the fixed capex: no linearisation error."""
    _, res = result
    rows = {r["parameter"]: r for r in res["scopes"]["portfolio"]}
    for name in ("on_demand_price", "reserved_price"):
        r = rows[name]
        assert r["linear_up"] == pytest.approx(r["exact_up"], rel=1e-9)
        assert r["linear_down"] == pytest.approx(r["exact_down"], rel=1e-9)


def test_ranked_by_swing(result):
    _, res = result
    for rows in res["scopes"].values():
        swings = [r["swing"] for r in rows]
        assert swings == sorted(swings, reverse=True)
        assert len(rows) > 10


def test_cli_json_parses_back():
    r = CliRunner().invoke(main, ["sensitivities", "--json", "--cluster", "dublin-b200"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert set(data["scopes"]) == {"portfolio", "dublin-b200"}
    assert np.isfinite(data["base_npv"])


def test_cli_table_and_unknown_cluster():
    r = CliRunner().invoke(main, ["sensitivities", "--top", "3"])
    assert r.exit_code == 0 and "portfolio" in r.output and "capex_per_gpu" in r.output
    r = CliRunner().invoke(main, ["sensitivities", "--cluster", "nope"])
    assert r.exit_code == 2 and "unknown cluster 'nope'" in r.output
