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
from stresstest.tornado import STEP_PARAMS, linear_flag, marked_name, tornado  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def gradients_once_per_file():
    """The base case's gradients (tornado.base_gradients: one compile of the reverse pass)
    computed once per portfolio file's text in this module, not once per call: the
    example's tornado is drawn nine times here and "huge"'s four (tables at two widths
    and their JSON), from the same numbers. Each portfolio's first call runs the real
    function (a copy of its arrays to every caller); the exact changes (_revalue) are
    computed afresh by every call."""
    import stresstest.tornado as tm

    real, done = tm.base_gradients, {}

    def once(portfolio):
        key = open(portfolio.path, "rb").read()
        if key not in done:
            done[key] = real(portfolio)
        return {k: np.array(v, copy=True) for k, v in done[key].items()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tm, "base_gradients", once)
        yield


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


def test_tornado_flags_step_parameters_and_disagreements():
    assert {"debt_term_months", "reserved_term_months", "delivery_months", "next_gen_month",
            "client_loss_month"} <= STEP_PARAMS
    assert "gpus" not in STEP_PARAMS and "on_demand_price" not in STEP_PARAMS
    done = CliRunner().invoke(main, ["sensitivities", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    rows = {r["parameter"]: r for r in data["scopes"]["portfolio"]}
    r = rows["reserved_term_months"]  # the example's +1.36 linear vs -8.10 exact (model version 1)
    assert r["step"] is True and r["linear_unreliable"] == "step parameter"
    assert rows["on_demand_price"]["step"] is False and rows["on_demand_price"]["linear_unreliable"] is None
    done = CliRunner().invoke(main, ["sensitivities", "--top", "5"], env={"COLUMNS": "120"})
    assert done.exit_code == 0, done.output
    text = done.output
    assert "reserved_term_months*" in text
    assert "* linear estimate unreliable: step parameter" in text
    # a non-step row: a sign change or more than 50 % apart is flagged, round-off is not
    row = {"parameter": "pue", "linear_down": 1.0e6, "exact_down": 1.2e6, "linear_up": -1.0e6, "exact_up": -0.9e6}
    assert linear_flag(row, -44e6) is None
    assert linear_flag(row | {"exact_up": 0.3e6}, -44e6) == "linear and exact differ in sign"
    assert linear_flag(row | {"exact_down": 2.5e6}, -44e6) == "linear and exact differ by more than 50 %"
    assert linear_flag(row | {"linear_up": 1e-3, "exact_up": -1e-3}, -44e6) is None


# --------------------------------------------------------------------------- issue 23


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_exact_moves_are_clipped_like_a_grid_axis(tmp_path):
    """A negative discount rate scaled below -1, a utilization scaled above 1 and a debt
    term scaled to a fraction of a month: the tornado's exact change is the grid's (the
    engine's clipping and rounding), not nan or an unrounded term."""
    import stresstest
    from stresstest.config import load_portfolio

    pf_path = _write(tmp_path, "neg.yaml", (
        "portfolio: {name: negrate, horizon_months: 24, discount_rate: -0.95}\n"
        "clusters:\n"
        "  - {name: a, gpus: 64, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_price: 1.8,\n"
        "     utilization_training: 0.95, debt_fraction: 0.5, debt_term_months: 45}\n"
        "  - {name: b, gpus: 32, capex_per_gpu: 35000, on_demand_price: 2.5, reserved_price: 2.2}\n"))
    sc_path = _write(tmp_path, "sc.yaml", (
        "scenario:\n  kind: grid\n  axes:\n"
        "    - {param: discount_rate, op: scale, values: [0.9, 1.0, 1.1]}\n"))
    pf = load_portfolio(pf_path)
    res = tornado(pf)
    grid = stresstest.run(str(pf_path), str(sc_path), backend="numpy")["npv"].values
    row = next(r for r in res["scopes"]["portfolio"] if r["parameter"] == "discount_rate")
    assert np.isfinite(row["exact_up"]) and np.isfinite(row["exact_down"])
    assert res["base_npv"] == pytest.approx(grid[1], rel=1e-9)
    assert row["exact_down"] == pytest.approx(grid[0] - grid[1], rel=1e-9)
    assert row["exact_up"] == pytest.approx(grid[2] - grid[1], rel=1e-9)
    # cluster parameters: one grid per parameter, scaled on cluster a alone
    for name in ("utilization_training", "debt_term_months"):
        sc = _write(tmp_path, f"{name}.yaml", (
            "scenario:\n  kind: grid\n  axes:\n"
            f"    - {{param: {name}, op: scale, values: [0.9, 1.0, 1.1], clusters: [a]}}\n"))
        grid = stresstest.run(str(pf_path), str(sc), backend="numpy")["npv"].values
        row = next(r for r in res["scopes"]["a"] if r["parameter"] == name)
        assert row["exact_down"] == pytest.approx(grid[0] - grid[1], rel=1e-9, abs=1e-6), name
        assert row["exact_up"] == pytest.approx(grid[2] - grid[1], rel=1e-9, abs=1e-6), name


HUGE = ("portfolio: {name: huge, horizon_months: 60, discount_rate: 0.1}\n"
        "clusters:\n"
        "  - {name: giga, gpus: 200000000, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_price: 1.8}\n"
        "  - {name: small, gpus: 32, capex_per_gpu: 35000, on_demand_price: 2.5, reserved_price: 2.2,\n"
        "     capex_fixed: 1234567}\n")

_UNIT = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def _tables(text: str) -> list[tuple[float, list[list[str]]]]:
    """(unit, rows of cells) of each printed table; a row's cells from its first line
    (a folded parameter name continues on the next lines, with empty numeric cells)."""
    import re

    out = []
    for line in text.splitlines():
        m = re.search(r"NPV change, \w+ ?(\S*)\s*$", line)
        if m:
            out.append((_UNIT.get(m.group(1), 1.0), []))
            continue
        if line.startswith("│") and out:
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[1]:  # the value column is filled on a row's first line only
                out[-1][1].append(cells)
            else:
                out[-1][1][-1][0] += cells[0]
    return out


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("which", ["example", "huge"])
def test_table_never_cuts_a_number(tmp_path, width, which):
    """At 80 and 60 columns, every number of the table is whole: it parses and equals
    the JSON value in the table's unit, to the two decimals printed; no ellipsis."""
    args = ["sensitivities", "--top", "6"]
    if which == "huge":
        args.insert(1, str(_write(tmp_path, "huge.yaml", HUGE)))
    r = CliRunner().invoke(main, args, env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    assert "…" not in r.output
    # the table's lines (a configuration warning on stderr is one long line, not the table's)
    assert max(len(line) for line in r.output.splitlines() if not line.startswith("warning:")) <= width
    data = json.loads(CliRunner().invoke(main, args + ["--json"]).stdout)  # warnings go to stderr
    tables = _tables(r.output)
    assert len(tables) == len(data["scopes"])
    for (unit, rows), want in zip(tables, data["scopes"].values()):
        want = want[:6]
        biggest = max(abs(w[k]) for w in want for k in ("linear_down", "exact_down", "linear_up", "exact_up"))
        assert 1 <= biggest / unit < 1000 or (unit == 1.0 and biggest < 1000)
        assert [c[0] for c in rows] == [marked_name(w) for w in want]  # "reserved_term_months*"
        for cells, w in zip(rows, want):
            if w["value"] is None:
                assert cells[1] == "all"
            else:
                assert float(cells[1]) == pytest.approx(w["value"], rel=5e-3)  # 3 digits at least
            for cell, k in zip(cells[2:], ("linear_down", "exact_down", "linear_up", "exact_up")):
                assert float(cell.replace(",", "")) == pytest.approx(w[k] / unit, abs=0.00501)
