"""Issue 24: values far outside realistic ranges warn (errors with --strict), mistyped
names get a suggestion, every problem of a file shows at once, files of the wrong kind
are named as such, and the bundled files are realistic (no warning, the neutral value
on every default axis, an example whose base case does not double count the rent's fall).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.kernels.params import NAMED_SHOCKS, PARAMS, PORTFOLIO_PARAMS
from stresstest.presets import list_presets, preset_kind
from stresstest.validation import PLAUSIBLE, ConfigError, implausible

HERE = Path(__file__).parent / "bad_inputs"
VALID_P = HERE / "valid_portfolio.yaml"
VALID_S = HERE / "valid_scenario.yaml"


def _stderr(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):
        return result.output


def _portfolio(tmp_path, portfolio="horizon_months: 60, discount_rate: 0.1", defaults="pue: 1.3",
               cluster="", name="p.yaml") -> Path:
    """A valid two-cluster portfolio; `cluster` entries ("key: value, ...") replace or add
    to the first cluster's."""
    f = tmp_path / name
    a = {"name": "a", "gpus": "8", "capex_per_gpu": "30000", "on_demand_price": "2.0", "reserved_price": "1.8"}
    a.update(item.split(": ") for item in cluster.split(", ") if item)
    f.write_text(f"portfolio: {{name: t, {portfolio}}}\ndefaults: {{{defaults}}}\nclusters:\n"
                 f"  - {{{', '.join(f'{k}: {v}' for k, v in a.items())}}}\n"
                 "  - {name: b, gpus: 16, capex_per_gpu: 35000, on_demand_price: 2.5, reserved_share: 0.0}\n")
    return f


# ---------------------------------------------------------------- plausibility


@pytest.mark.parametrize("where, entry, key_path, expected", [
    ("portfolio", "discount_rate: 12", "portfolio.discount_rate", "rates are fractions, 12 % is 0.12"),
    ("defaults", "energy_price: 80", "defaults.energy_price",
     "far above 0.01\u20131 (realistic 0.03-0.36"),
    ("defaults", "energy_price: 80", "defaults.energy_price", "a USD/MWh figure? 80 USD/MWh = 0.08 USD/kWh"),
    ("cluster", "energy_price: 8.9", "clusters[0].energy_price", "US cents? 8.9 cents/kWh = 0.089 USD/kWh"),
    ("cluster", "capex_per_gpu: 45", "clusters[0].capex_per_gpu", "thousands of USD? 45 thousand USD = 45,000 USD"),
    ("cluster", "capex_per_gpu: 2400000", "clusters[0].capex_per_gpu", "per GPU: an 8-GPU server at 2,400,000 USD"),
    ("cluster", "on_demand_price: 98.32", "clusters[0].on_demand_price",
     "a price per 8-GPU server? 98.32 USD per server-hour = 12.3 USD per GPU-hour"),
    ("cluster", "on_demand_price: 1800", "clusters[0].on_demand_price", "a monthly price?"),
    ("cluster", "pue: 130", "clusters[0].pue", "a ratio, not a percent: 130 % is 1.3"),
    ("cluster", "pue: 4", "clusters[0].pue", "4 ratio is far above 3"),
    ("cluster", "kw_per_gpu: 700", "clusters[0].kw_per_gpu", "W instead of kW? 700 W = 0.7 kW"),
    ("cluster", "useful_life_years: 60", "clusters[0].useful_life_years", "months instead of years? 60 months = 5 years"),
    ("defaults", "interest_rate: 11", "defaults.interest_rate", "rates are fractions, 11 % is 0.11"),
    ("cluster", "maintenance_rate: 3", "clusters[0].maintenance_rate", "rates are fractions, 3 % is 0.03"),
    ("cluster", "reserved_term_months: 3", "clusters[0].reserved_term_months", "years instead of months? 3 years = 36 months"),
    ("portfolio", "horizon_months: 5", "portfolio.horizon_months", "years instead of months? 5 years = 60 months"),
    ("cluster", "delivery_months: 70", "clusters[0].delivery_months",
     "70 months is at or past the horizon (60 months): the cluster never goes live"),
    ("defaults", "delivery_months: 60", "defaults.delivery_months", "at or past the horizon"),
])
def test_implausible_value_warns_naming_the_slip(tmp_path, where, entry, key_path, expected):
    block = {"horizon_months": "60", "discount_rate": "0.1"}
    block.update([entry.split(": ")])
    kw = {"portfolio": {"portfolio": ", ".join(f"{k}: {v}" for k, v in block.items())},
          "defaults": {"defaults": entry}, "cluster": {"cluster": entry}}[where]
    f = _portfolio(tmp_path, **kw)
    pf = load_portfolio(f)  # a warning, not a refusal
    assert any(w.startswith(f"{f}: {key_path}: ") and expected in w for w in pf.warnings), pf.warnings
    # validate prints it as a warning and succeeds; --strict refuses the file
    r = CliRunner().invoke(main, ["validate", str(f)])
    assert r.exit_code == 0, r.output
    assert f"warning: {f}: {key_path}: " in _stderr(r) and f"ok: {f}" in r.stdout
    r = CliRunner().invoke(main, ["validate", "--strict", str(f)])
    assert r.exit_code == 2, r.output
    assert f"error: {f}: {key_path}: " in _stderr(r) and "warning:" not in _stderr(r)
    assert f"ok: {f}" not in r.stdout


def test_delivery_past_the_horizon_from_the_model_default(tmp_path):
    f = _portfolio(tmp_path, portfolio="horizon_months: 3, discount_rate: 0.1")
    pf = load_portfolio(f)
    late = [w for w in pf.warnings if "delivery_months" in w]
    assert [w.split(": ")[1] for w in late] == ["clusters[0].delivery_months", "clusters[1].delivery_months"]
    assert all("(the model's default) is at or past the horizon (3 months)" in w for w in late)


def test_run_warns_and_runs_strict_refuses_before_any_work(tmp_path, monkeypatch):
    f = _portfolio(tmp_path, portfolio="horizon_months: 24, discount_rate: 12", cluster="energy_price: 80")
    out = tmp_path / "out.h5"
    r = CliRunner().invoke(main, ["run", str(f), "-s", str(VALID_S), "-o", str(out), "--backend", "numpy", "-q"])
    assert r.exit_code == 0, r.output
    err = _stderr(r)
    assert f"warning: {f}: portfolio.discount_rate: 12 per year is far above 0.5" in err
    assert f"warning: {f}: clusters[0].energy_price: 80 USD per kWh is far above" in err
    assert out.is_file()

    from stresstest import engine, runner

    def forbidden(*args, **kwargs):
        raise AssertionError("the run started working")

    monkeypatch.setattr(engine, "prepare", forbidden)
    monkeypatch.setattr(runner, "prepare", forbidden)
    strict = tmp_path / "strict.h5"
    r = CliRunner().invoke(main, ["run", str(f), "-s", str(VALID_S), "-o", str(strict), "--backend", "numpy",
                                  "-q", "--strict"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in _stderr(r).splitlines() if ln.strip()]
    assert lines and all(ln.startswith(f"error: {f}: ") for ln in lines), lines
    assert any("discount_rate: 12 per year" in ln for ln in lines)
    assert not strict.exists()


def test_other_commands_print_the_warnings(tmp_path):
    f = _portfolio(tmp_path, cluster="kw_per_gpu: 700")
    r = CliRunner().invoke(main, ["show", str(f), "--json"])
    assert r.exit_code == 0, r.output
    assert f"warning: {f}: clusters[0].kw_per_gpu: 700 kW per GPU" in _stderr(r)


def test_a_set_axis_with_implausible_values_warns(tmp_path):
    sc = tmp_path / "s.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n"
                  "    - {param: discount_rate, op: set, values: [0.08, 10, 12]}\n"
                  "    - {param: energy_price, op: scale, values: [1, 20]}\n")  # a stress, not a slip
    s = load_scenario(sc, load_portfolio(VALID_P))
    assert s.warnings == [f"{sc}: scenario.axes[0].values: value 1 for discount_rate: 10 per year is far "
                          "above 0.5 (realistic 0.08-0.20); rates are fractions, 10 % is 0.1 (and 1 more)"]
    r = CliRunner().invoke(main, ["validate", "-p", str(VALID_P), "--strict", str(sc)])
    assert r.exit_code == 2 and f"error: {sc}: scenario.axes[0].values: value 1" in _stderr(r)


def test_model_defaults_and_bounds_of_the_table_are_consistent():
    """The table covers known keys only; no model default warns; a bound lies inside the
    parameter's range (else the warning could never fire or would fire on every value)."""
    for key, rule in PLAUSIBLE.items():
        spec = PARAMS.get(key) or PORTFOLIO_PARAMS[key]
        assert spec.default is None or implausible(key, spec.default) is None, key
        for bound in (rule.low, rule.high):
            if bound is not None:
                assert spec.lo <= bound <= spec.hi, key


def test_every_bundled_file_is_realistic():
    """The bundled example, grids, Monte Carlo preset and named sets give no warning, also
    with --strict (the ranges are wide enough for any realistic file)."""
    presets = list_presets()
    # the scenarios against example_v2, which every bundled scenario fits (example has no
    # platform, which the build-out set moves)
    pf = load_portfolio(presets["example_v2"])
    assert load_portfolio(presets["example"]).warnings == [] and pf.warnings == []
    for name, path in presets.items():
        if preset_kind(path) == "portfolio":
            assert load_portfolio(path).warnings == [], name
        else:
            assert getattr(load_scenario(path, pf), "warnings", []) == [], name
    r = CliRunner().invoke(main, ["validate", "--strict", "-p", "example_v2", *presets])
    assert r.exit_code == 0, r.output
    assert _stderr(r).strip() == "" and r.stdout.count("ok: ") == len(presets)
    for f in (VALID_P, VALID_S):
        r = CliRunner().invoke(main, ["validate", "--strict", "-p", str(VALID_P), str(f)])
        assert r.exit_code == 0 and _stderr(r).strip() == "", r.output


# ---------------------------------------------------------------- did you mean


def _problems(fn, *args) -> list[str]:
    with pytest.raises(ConfigError) as err:
        fn(*args)
    return err.value.problems


def test_unknown_keys_get_the_closest_known_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("portfolio: {name: t, horizon: 60, pue: 1.3}\n"
                 "defaults: {energy_prices: 0.08, discount_rate: 0.1}\n"
                 "clusters:\n  - {name: a, gpus: 8, capex_per_gpu: 30000, on_demand_prize: 2.0, reserved_share: 0}\n")
    got = _problems(load_portfolio, f)
    for line in (f"{f}: portfolio.horizon: unknown key; did you mean 'horizon_months'?",
                 f"{f}: portfolio.pue: unknown key; it is a cluster parameter: give it in defaults: or in a cluster",
                 f"{f}: defaults.energy_prices: unknown key; did you mean 'energy_price'?",
                 f"{f}: defaults.discount_rate: unknown key; it is a portfolio parameter: give it in the portfolio: block",
                 f"{f}: clusters[0].on_demand_prize: unknown key; did you mean 'on_demand_price'?"):
        assert line in got, got


def test_unknown_shocks_parameters_kinds_and_clusters_get_suggestions(tmp_path):
    pf = load_portfolio(VALID_P)
    sc = tmp_path / "s.yaml"
    sc.write_text("scenario:\n  kind: grid\n  axes:\n"
                  "    - {shock: prices, values: [0.5, 1.0]}\n"
                  "    - {param: energy_prices, op: scale, values: [1, 2]}\n"
                  "    - {param: price, op: scale, values: [1, 2]}\n"
                  "    - {shock: pue, values: [1, 2]}\n"
                  "    - {shock: energy, values: [1, 2], clusters: [aa]}\n")
    got = _problems(load_scenario, sc, pf)
    assert f"{sc}: scenario.axes[0].shock: unknown shock 'prices'; did you mean 'price'?" in " ".join(got)
    assert f"{sc}: scenario.axes[1].param: unknown parameter 'energy_prices'; did you mean 'energy_price'?" in got
    assert f"{sc}: scenario.axes[2].param: unknown parameter 'price'; price is a named shock: give it with shock:" in got
    assert any(p.startswith(f"{sc}: scenario.axes[3].shock: unknown shock 'pue'; pue is a parameter: give it "
                            "with param: and op:") for p in got), got
    assert any(p.startswith(f"{sc}: scenario.axes[4].clusters: unknown cluster 'aa'; did you mean 'a'?")
               for p in got), got
    kind = tmp_path / "k.yaml"
    kind.write_text("scenario:\n  kind: grids\n  axes: []\n")
    assert _problems(load_scenario, kind, pf) == [
        f"{kind}: scenario.kind: unknown kind 'grids'; did you mean 'grid'? (this version runs: grid, montecarlo, named)"]


def test_monte_carlo_and_named_names_get_suggestions(tmp_path):
    pf = load_portfolio(VALID_P)
    mc = tmp_path / "mc.yaml"
    mc.write_text("scenario:\n  kind: montecarlo\n  paths: 10\n  seeds: 3\n  events:\n"
                  "    - {param: next_gen_months, dist: triangular, low: 1, mode: 2, high: 3}\n")
    got = _problems(load_scenario, mc, pf)
    assert f"{mc}: scenario.seeds: unknown key; did you mean 'seed'?" in got, got
    mc.write_text("scenario:\n  kind: montecarlo\n  paths: 10\n  events:\n"
                  "    - {param: next_gen_months, dist: triangle, low: 1, mode: 2, high: 3}\n"
                  "    - {param: next_gen_month, dist: triangle, low: 1, mode: 2, high: 3}\n")
    got = _problems(load_scenario, mc, pf)
    assert f"{mc}: scenario.events[0].param: unknown parameter 'next_gen_months'; did you mean 'next_gen_month'?" in got
    assert any(p.startswith(f"{mc}: scenario.events[1].dist: unknown distribution 'triangle'; did you mean "
                            "'triangular'?") for p in got), got
    named = tmp_path / "n.yaml"
    named.write_text("scenario:\n  kind: named\n  sets: [h100-rental-colapse]\n")
    got = _problems(load_scenario, named, pf)
    assert got[0].startswith(f"{named}: scenario.sets[0]: no shock set 'h100-rental-colapse'; did you mean "
                             "'h100-rental-collapse'?"), got


def test_a_mistyped_preset_name_gets_a_suggestion(tmp_path):
    out = tmp_path / "o.h5"
    r = CliRunner().invoke(main, ["run", "-s", "monte_carlo", "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2, r.output
    assert "error: monte_carlo: no such file (nor a bundled preset); did you mean 'montecarlo'?" in _stderr(r)
    r = CliRunner().invoke(main, ["run", "exmaple", "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2 and "did you mean 'example'?" in _stderr(r), r.output
    assert not out.exists()


def test_a_file_of_the_other_kind_is_named_as_such(tmp_path):
    out = tmp_path / "o.h5"
    r = CliRunner().invoke(main, ["run", str(list_presets()["smoke"]), "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2, r.output
    assert (f"error: {list_presets()['smoke']}: (top level): this looks like a scenario file; give it with -s"
            in _stderr(r))
    r = CliRunner().invoke(main, ["run", "-s", str(VALID_P), "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2, r.output
    assert f"error: {VALID_P}: (top level): this looks like a portfolio file" in _stderr(r)
    shockset = next(iter((list_presets()["named"].parent / "named").glob("*.yaml")))
    r = CliRunner().invoke(main, ["run", str(shockset), "-o", str(out), "--backend", "numpy"])
    assert r.exit_code == 2 and "this looks like a named shock set" in _stderr(r), r.output
    assert not out.exists()


# ------------------------------------------------------- every problem at once


def test_portfolio_structure_and_range_problems_show_together(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("portfolio: {name: t, horizon_months: 601, colour: red}\n"
                 "defaults: {pue: 0.8, energy_price: cheap}\n"
                 "clusters:\n"
                 "  - {name: a, gpus: eight, capex_per_gpu: 30000, on_demand_price: 2.0, reserved_share: 1.5}\n"
                 "  - b\n"
                 "  - {name: c, gpus: 8, capex_per_gpu: -1, on_demand_price: 2.0, reserved_share: 0, gpu_count: 3}\n")
    got = _problems(load_portfolio, f)
    want = [("portfolio.colour", "unknown key"), ("defaults.energy_price", "must be a number, got 'cheap'"),
            ("clusters[0].gpus", "must be a number, got 'eight'"), ("clusters[1]", "must be a mapping"),
            ("clusters[2].gpu_count", "unknown key"),
            # the checks of the parts that are valid on their own
            ("portfolio.horizon_months", "must be <= 600, got 601"), ("defaults.pue", "must be >= 1, got 0.8"),
            ("clusters[0].reserved_share", "must be <= 1, got 1.5"), ("clusters[0].reserved_price", "required"),
            ("clusters[2].capex_per_gpu", "must be >= 0, got -1")]
    for key, reason in want:
        assert any(p.startswith(f"{f}: {key}: {reason}") for p in got), (key, got)
    # a key refused for its type is not also reported missing
    assert not any(p.startswith(f"{f}: clusters[0].gpus: required") for p in got), got
    assert len(got) == len(want), got


def test_scenario_problems_of_every_axis_show_together(tmp_path):
    pf = load_portfolio(VALID_P)
    sc = tmp_path / "s.yaml"
    sc.write_text("scenario:\n  kind: grid\n  seed: 3\n  axes:\n"
                  "    - {shock: price, values: [0.5, 1.0], step: 2}\n"
                  "    - {shock: wind, linspace: [0, 1, 0], clusters: [zzz]}\n"
                  "    - {param: pue, op: set, values: [1.2, .nan]}\n"
                  "    - {shock: energy, values: [1, 2], name: npv}\n")
    got = _problems(load_scenario, sc, pf)
    want = [("scenario.seed", "unknown key; it belongs to a scenario of kind: montecarlo"),
            ("scenario.axes[0].step", "unknown key"),
            ("scenario.axes[1].shock", "unknown shock 'wind'"),
            ("scenario.axes[1].linspace", "count must be a whole number >= 1, got 0"),
            ("scenario.axes[1].clusters", "unknown cluster 'zzz'"),
            ("scenario.axes[2].values[1]", "must be a finite number, got nan"),
            ("scenario.axes[3].name", "'npv' is reserved")]
    for key, reason in want:
        assert any(p.startswith(f"{sc}: {key}: {reason}") for p in got), (key, got)
    assert len(got) == len(want), got


# ------------------------------------------------------------ bundled defaults


def test_every_bundled_grid_holds_the_neutral_value_of_its_named_shocks_exactly():
    pf = load_portfolio(list_presets()["example_v2"])  # every bundled scenario fits it
    grids = 0
    for name, path in list_presets().items():
        if preset_kind(path) != "scenario":
            continue
        sc = load_scenario(path, pf)
        for axis in getattr(sc, "axes", []):
            if axis.shock:
                grids += 1
                neutral = NAMED_SHOCKS[axis.shock][2]
                assert np.count_nonzero(axis.values == neutral) == 1, (name, axis.name, axis.values)
    assert grids >= 6


def test_default_grid_values_are_the_decimals_they_read_as():
    """ds.sel(price=0.4) finds 0.4: no value is a linspace's 0.39999999999999997."""
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    assert sc.shape == (21, 23, 11, 7)
    for axis in sc.axes:
        assert all(float(repr(round(v, 6))) == v for v in axis.values.tolist()), axis.name
    assert [a.values.min() for a in sc.axes] == [-0.4, 0.3, 0.5, -18]
    assert [a.values.max() for a in sc.axes] == [0.1, 1.4, 3.0, 18]


def test_example_does_not_stack_the_rent_decline_on_a_full_next_generation_step():
    """H100 / H200 rents fell 22 % / 29 % in the year Blackwell arrived (FT Alphaville / RBC,
    2025): the trend and the step are one observation, so a cluster's rent may fall by no
    more than about that in the year of its step. The base case then about earns its cost
    of capital, and only the two high-cost European sites fail to earn back their capex."""
    from stresstest.engine import evaluate_base

    pf = load_portfolio(list_presets()["example"])
    for name, c in zip(pf.cluster_names, pf.clusters):
        fall = 1 - (1 - c["price_decline"]) * (1 - c["next_gen_price_drop"])
        assert 0.20 <= fall <= 0.30, (name, fall)
    base = evaluate_base(pf)
    assert abs(base["irr"] - pf.discount_rate) < 0.03, base["irr"]
    losing = [n for n, roi in zip(pf.cluster_names, base["cluster_roi"]) if roi < 0]
    assert losing == ["frankfurt-h200", "dublin-b200"], losing


def test_bundled_files_cite_their_sources_themselves():
    """A user's clone has no shared/ folder: no bundled file points there."""
    root = list_presets()["example"].parent
    for path in [*root.glob("*.yaml"), Path(__file__).parent.parent / "docs" / "model.md"]:
        text = path.read_text(encoding="utf-8")
        assert "shared/" not in text, path
    for name in ("example", "default_grid"):
        assert "FACTS" not in list_presets()[name].read_text(encoding="utf-8"), name


def test_docs_list_every_plausibility_bound():
    text = (Path(__file__).parent.parent / "docs" / "model.md").read_text(encoding="utf-8")
    section = text[text.index("**Plausibility.**"):]
    for key in PLAUSIBLE:
        assert f"`{key}`" in section, key


def test_a_share_given_as_a_percent_is_refused_naming_the_fraction(tmp_path):
    f = _portfolio(tmp_path, cluster="reserved_share: 60, price_decline: 20")
    got = _problems(load_portfolio, f)
    assert f"{f}: clusters[0].reserved_share: must be <= 1, got 60 (a percent? 60 % is 0.6)" in got
    assert f"{f}: clusters[0].price_decline: must be <= 1, got 20 (a percent? 20 % is 0.2)" in got


def test_scenarios_show_suggests_the_closest_named_set():
    r = CliRunner().invoke(main, ["scenarios", "show", "texas-winter-storm"])
    assert r.exit_code == 2
    assert "did you mean 'texas-winter-storm-uri'?" in r.output
