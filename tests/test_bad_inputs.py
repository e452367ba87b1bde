"""Bad-input corpus: every file under tests/bad_inputs/ must be refused cleanly.

MODEL.md ("Files"): a bad file is refused before any work, with the file, the key
path and the reason; unknown keys are errors. The CLI prints each problem as
`error: <file>: <key.path>: <reason>` on stderr, exits with code 2 and writes no
output file.

Each case names a portfolio file and a scenario file (one of them bad; the other
is the small valid file next to them) and the problems expected, as
(key path, reason) pairs. The reason is matched as the start of the text after
`<key.path>: ` (some reasons go on to list the choices). A key path of None marks
a problem of the file as a whole (empty, not YAML, not UTF-8); then the reason may
stand anywhere after `<file>: `.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stresstest.cli import main

HERE = Path(__file__).parent / "bad_inputs"
VALID_P = HERE / "valid_portfolio.yaml"
VALID_S = HERE / "valid_scenario.yaml"
VALID_V2 = HERE / "valid_platform_portfolio.yaml"  # with an order month, a programme and a platform


def P(name, *expected):
    """A bad portfolio file, run with the valid scenario."""
    return pytest.param(HERE / name, VALID_S, HERE / name, list(expected), id=name)


def S(name, *expected):
    """A bad scenario file, run against the valid portfolio."""
    return pytest.param(VALID_P, HERE / name, HERE / name, list(expected), id=name)


def S2(name, *expected):
    """A bad scenario file, run against the valid portfolio with version 2 scalars."""
    return pytest.param(VALID_V2, HERE / name, HERE / name, list(expected), id=name)


CASES = [
    # ------------------------------------------------------------ portfolio files
    # YAML-level problems: no key path exists for a parse error; line and column locate it.
    P("p_malformed_yaml.yaml", (None, "not valid YAML")),
    P("p_duplicate_key.yaml", (None, "line 7, column 5: not valid YAML (duplicate key 'gpus')")),
    P("p_top_level_list.yaml", ("(top level)", "must be a mapping")),
    P("p_empty.yaml", (None, "the file is empty")),
    P("p_only_comments.yaml", ("(top level)", "must be a mapping")),
    P("p_not_utf8.yaml", (None, "not a text file (not UTF-8)")),
    P("p_unhashable_key.yaml", (None, "not valid YAML")),
    # types
    P("p_string_for_number.yaml", ("clusters[0].gpus", "must be a number, got 'eight'")),
    P("p_bool_for_number.yaml", ("clusters[1].pue", "must be a number, got the boolean true")),
    P("p_cluster_not_mapping.yaml", ("clusters[1]", "must be a mapping, got 'b'")),
    P("p_nan_value.yaml", ("clusters[0].pue", "must be a finite number, got nan")),
    P("p_inf_value.yaml", ("clusters[1].energy_price", "must be a finite number, got inf")),
    # ranges and whole numbers
    P("p_negative_gpus.yaml", ("clusters[0].gpus", "must be > 0, got -8")),
    P("p_fractional_gpus.yaml", ("clusters[0].gpus", "must be a whole number, got 7.5")),
    P("p_share_above_one.yaml", ("clusters[0].reserved_share", "must be <= 1, got 1.5")),
    P("p_pue_below_one.yaml", ("clusters[1].pue", "must be >= 1, got 0.9")),
    P("p_horizon_zero.yaml", ("portfolio.horizon_months", "must be >= 1, got 0")),
    P("p_horizon_601.yaml", ("portfolio.horizon_months", "must be <= 600, got 601")),
    P("p_horizon_fractional.yaml", ("portfolio.horizon_months", "must be a whole number, got 12.5")),
    P("p_discount_rate_minus_one.yaml", ("portfolio.discount_rate", "must be > -1, got -1")),
    P("p_defaults_out_of_range.yaml", ("defaults.pue", "must be >= 1, got 0.8")),
    P("p_debt_term_fractional.yaml", ("clusters[0].debt_term_months", "must be a whole number, got 47.5")),
    # structure
    P("p_empty_clusters.yaml", ("clusters", "must list at least one cluster")),
    P("p_missing_clusters.yaml", ("clusters", "required key is missing")),
    P("p_duplicate_cluster_names.yaml", ("clusters[1].name", "duplicate cluster name 'a' (also clusters[0])")),
    P("p_cluster_named_portfolio.yaml", ("clusters[1].name", "'portfolio' is reserved")),
    P("p_key_named_str.yaml", ("clusters[0].str", "unknown key")),
    P("p_unknown_key_cluster.yaml", ("clusters[1].gpu_count", "unknown key")),
    P("p_unknown_key_defaults.yaml", ("defaults.power_usage", "unknown key")),
    P("p_unknown_key_portfolio.yaml", ("portfolio.horizon", "unknown key")),
    P("p_unknown_key_top.yaml", ("extras", "unknown key")),
    P("p_missing_on_demand_price.yaml", ("clusters[0].on_demand_price", "required key is missing")),
    P("p_reserved_share_no_price.yaml", ("clusters[1].reserved_price", "required when reserved_share > 0")),
    # all problems at once
    P(
        "p_two_problems.yaml",
        ("clusters[0].tax_rate", "must be <= 1, got 1.2"),
        ("clusters[1].capex_per_gpu", "must be >= 0, got -1"),
    ),
    # ... the structure's and the ranges' together (issue 24)
    P("p_structure_and_ranges.yaml", ("clusters[0].colour", "unknown key"),
      ("clusters[1].pue", "must be >= 1, got 0.9")),
    # a mistyped key gets the closest known one; a file of the other kind is named (issue 24)
    P("p_misspelled_key.yaml", ("clusters[0].on_demand_prize", "unknown key; did you mean 'on_demand_price'?"),
      ("defaults.energy_prices", "unknown key; did you mean 'energy_price'?")),
    P("p_scenario_as_portfolio.yaml", ("(top level)", "this looks like a scenario file; give it with -s")),
    # ------------------------------------------------------------- scenario files
    S("s_malformed_yaml.yaml", (None, "not valid YAML")),
    S("s_duplicate_key.yaml", (None, "line 6, column 7: not valid YAML (duplicate key 'values')")),
    S("s_top_level_list.yaml", ("(top level)", "must be a mapping")),
    S("s_empty.yaml", (None, "the file is empty")),
    S("s_unknown_key_top.yaml", ("seed", "unknown key")),
    S("s_unknown_key_scenario.yaml", ("scenario.paths", "unknown key")),
    S("s_unknown_key_axis.yaml", ("scenario.axes[0].step", "unknown key")),
    S("s_unknown_shock.yaml", ("scenario.axes[0].shock", "unknown shock 'wind'")),
    S("s_misspelled_shock.yaml", ("scenario.axes[0].shock", "unknown shock 'prices'; did you mean 'price'?")),
    S("s_portfolio_as_scenario.yaml", ("(top level)", "this looks like a portfolio file; give it as the "
                                                       "PORTFOLIO argument, not with -s")),
    S("s_problems_in_several_axes.yaml", ("scenario.axes[0].step", "unknown key"),
      ("scenario.axes[1].shock", "unknown shock 'wind'"),
      ("scenario.axes[1].linspace", "count must be a whole number >= 1, got 0")),
    S("s_unknown_param.yaml", ("scenario.axes[0].param", "unknown parameter 'pue_factor'")),
    S("s_param_without_op.yaml", ("scenario.axes[0].op", "a param axis must give op: scale, shift or set")),
    S("s_bad_op.yaml", ("scenario.axes[0].op", "must be one of scale, shift, set, got 'multiply'")),
    S("s_shock_wrong_op.yaml", ("scenario.axes[0].op", "the shock price is always a scale, got 'shift'")),
    S("s_no_shock_or_param.yaml", ("scenario.axes[0]", "give exactly one of shock: or param:")),
    S("s_empty_values.yaml", ("scenario.axes[0].values", "must list at least one value")),
    S("s_linspace_count_zero.yaml", ("scenario.axes[0].linspace", "count must be a whole number >= 1, got 0")),
    S("s_linspace_fractional_count.yaml",
      ("scenario.axes[0].linspace", "count must be a whole number >= 1, got 2.5")),
    S("s_linspace_two_numbers.yaml", ("scenario.axes[0].linspace", "must be [start, stop, count], got 2 numbers")),
    S("s_values_and_linspace.yaml", ("scenario.axes[0]", "give exactly one of values: or linspace:")),
    S("s_duplicate_axis_names.yaml", ("scenario.axes[1].name", "duplicate axis name 'price' (also scenario.axes[0])")),
    S("s_reserved_axis_name.yaml", ("scenario.axes[0].name", "'cluster' is reserved")),
    # names the result file gives its datasets and groups (issue 23)
    S("s_output_axis_name.yaml", ("scenario.axes[0].name", "'npv' is reserved")),
    S("s_base_axis_name.yaml", ("scenario.axes[1].name", "'base' is reserved")),
    S("s_sensitivity_axis_name.yaml", ("scenario.axes[0].name", "'grad_npv' is reserved")),
    S("s_unknown_cluster.yaml", ("scenario.axes[0].clusters", "unknown cluster 'zzz' (clusters: a, b)")),
    S("s_empty_cluster_list.yaml", ("scenario.axes[0].clusters", "must list at least one cluster name")),
    S("s_nan_value.yaml", ("scenario.axes[0].values[1]", "must be a finite number, got nan")),
    S("s_inf_value.yaml", ("scenario.axes[0].linspace[1]", "must be a finite number, got inf")),
    S("s_string_value.yaml", ("scenario.axes[0].values[0]", "must be a number, got 'high'")),
    S("s_bool_value.yaml", ("scenario.axes[0].values[0]", "must be a number, got the boolean true")),
    S("s_horizon_axis.yaml", ("scenario.axes[0].param", "horizon_months cannot be an axis")),
    # the tool names the list and the value's index in the reason ("value 1 for ...")
    S("s_set_out_of_range.yaml",
      ("scenario.axes[0].values", "value 1 for reserved_share: must be <= 1, got 1.2")),
    S("s_kind_not_grid.yaml", ("scenario.kind", "unknown kind 'sobol' (this version runs: grid, montecarlo, named)")),
    S("s_missing_kind.yaml", ("scenario.kind", "required key is missing")),
    # grids too large to hold: refused with the file named, whatever the wording
    S("s_linspace_huge_count.yaml", ("scenario.axes[0].linspace", "count must be at most 10,000,000, got 1e+16")),
    S("s_grid_size_overflow.yaml", ("scenario.axes", "the grid has 1e+24 points, more than the")),
    S("s_grid_over_guard.yaml", (None, "200,000,000 grid points, more than --max-scenarios (100,000,000); give --yes")),
    # Monte Carlo scenario files
    S("m_correlation_not_psd.yaml", ("scenario.correlation", "the correlation matrix is not positive semi-definite")),
    S("m_paths_zero.yaml", ("scenario.paths", "must be a whole number from 1 to")),
    S("m_paths_bool.yaml", ("scenario.paths", "must be a number, got the boolean true")),
    S("m_paths_missing.yaml", ("scenario.paths", "required key is missing")),
    S("m_unknown_process_key.yaml", ("scenario.price.drift", "unknown key")),
    S("m_problems_after_a_structure_error.yaml", ("scenario.energy.volatilty", "unknown key; did you mean 'volatility'"),
      ("scenario.price.volatility", "must be in [0, 5], got 9"), ("scenario.hurdle_irr", "must be > -1, got -2")),
    S("m_nan_volatility.yaml", ("scenario.energy.volatility", "must be a finite number, got nan")),
    S("m_unknown_distribution.yaml", ("scenario.events[0].dist", "unknown distribution 'lognormal'")),
    S("m_misspelled_distribution.yaml",
      ("scenario.events[0].dist", "unknown distribution 'triangle'; did you mean 'triangular'?")),
    S("m_probs_not_one.yaml", ("scenario.events[0].probs", "must sum to 1, got 1.1")),
    S("m_event_unknown_cluster.yaml", ("scenario.events[0].clusters", "unknown cluster 'zz'")),
    S("m_unknown_series.yaml", ("scenario.correlation.pairs[0].b", "unknown series 'price/nowhere'")),
    S("m_grid_key_in_montecarlo.yaml", ("scenario.axes", "unknown key")),
    # ------------------------------------------ version 2: contracts, segments, industries
    P("v2_contract_shares_past_one.yaml", ("clusters[0].contracts", "the contracts' shares sum to 1.2: more than "
                                                                    "the whole cluster")),
    P("v2_segment_shares_not_one.yaml", ("clusters[0].segments", "the segments' shares sum to 0.8; they split the "
                                                                 "on-demand pool, so they must sum to 1")),
    P("v2_unknown_industry.yaml", ("clusters[0].contracts[0].industry", "unknown industry 'banking' (bundled: ")),
    P("v2_duplicate_contract_names.yaml",
      ("clusters[0].contracts[1].name", "duplicate contract name 'bank' (also contracts[0])")),
    P("v2_duplicate_segment_names.yaml",
      ("clusters[0].segments[1].name", "duplicate segment name 'training' (also segments[0])")),
    P("v2_contracts_and_reserved_share.yaml",
      ("clusters[0].contracts", "given together with reserved_share, reserved_price, which contracts replace")),
    P("v2_segments_and_utilization_training.yaml",
      ("clusters[0].segments", "given together with utilization_training, which segments replace")),
    P("v2_contract_missing_price.yaml",
      ("clusters[0].contracts[0].price", "required key is missing (every contract gives its own price")),
    P("v2_segment_missing_utilization.yaml",
      ("clusters[0].segments[1].utilization", "required key is missing (no default, and the segment names no "
                                              "industry profile")),
    P("v2_segment_share_zero.yaml", ("clusters[0].segments[1].share", "must be > 0")),
    P("v2_contract_name_with_dot.yaml",
      ("clusters[0].contracts[0].name", "'acme.bank': a name may not hold '.' or '*'")),
    # a profile's own problems name the profile's file; the portfolio's line names the item
    P("v2_profile_unknown_key.yaml",
      ("clusters[0].segments[0].industry", "the industry profile 'v2_profiles/unknown_key.yaml' is refused")),
    P("v2_profile_sets_price.yaml",
      ("clusters[0].contracts[0].industry", "the industry profile 'v2_profiles/sets_price.yaml' is refused")),
    P("v2_contract_utilization_above_one.yaml", ("clusters[0].contracts[0].utilization", "must be <= 1, got 1.5")),
    P("v2_defaults_both_forms.yaml",
      ("defaults.contracts", "given together with reserved_share, which contracts replace; defaults: may hold one")),
    P("v2_empty_segments.yaml", ("clusters[0].segments", "must list at least one segment")),
    # grid axes on version 2 items by path (the valid portfolio's clusters have implied items)
    S("v2_path_missing_contract.yaml",
      ("scenario.axes[0].param", "no cluster has a contract 'bank' (contracts: a: anchor, others; b: anchor, others)")),
    S("v2_path_unknown_field.yaml", ("scenario.axes[0].param", "unknown field 'colour' of a contract (fields: share,")),
    S("v2_path_implied_segment_by_name.yaml",
      ("scenario.axes[0].param", "none of the clusters given has a segment 'training' (segments: a: one implied "
                                 "segment, reached only by segments.*.utilization)")),
    S("v2_path_set_out_of_range.yaml",
      ("scenario.axes[0].values", "value 1 for contracts.anchor.share: must be <= 1, got 1.5")),
    S("v2_path_empty_name.yaml", ("scenario.axes[0].param", "'contracts..price': the contract's name is empty")),
    S("v2_path_no_item_name.yaml", ("scenario.axes[0].param", "'contracts.price' names no contract: give "
                                                              "contracts.<name>.<field>, or contracts.*.<field>")),
    # Monte Carlo events and series on version 2 items
    S("v2_mc_event_missing_contract.yaml",
      ("scenario.events[0].param", "no cluster has a contract 'acme' (contracts: a: anchor, others; b: anchor, others)")),
    S("v2_mc_unknown_segment_series.yaml",
      ("scenario.correlation.pairs[0].a", "unknown series 'utilization/a/train'; did you mean 'utilization/a'?")),
    # axes and events on version 2 scalars (order month, optimization, platform)
    S2("v2c_platform_axis_with_clusters.yaml",
       ("scenario.axes[0].clusters", "platform.take_rate is a field of the portfolio's platform layer, which is "
                                     "one for the whole portfolio: clusters: does not apply")),
    S("v2c_platform_axis_without_platform.yaml",
      ("scenario.axes[0].param", f"the portfolio {VALID_P} has no platform layer: give platform: in its "
                                 "portfolio: block")),
    S2("v2c_unknown_optimization_field.yaml",
       ("scenario.axes[0].param", "unknown field 'energy_savings' of an optimization programme; did you mean "
                                  "'energy_saving'? (fields: cost, cost_per_year, start_month,")),
    S("v2c_order_month_past_horizon.yaml",
      ("scenario.axes[0].values", "value 2 for order_month: must be <= 24 (the horizon, horizon_months), got 30")),
    S("v2c_optimization_without_programme.yaml",
      ("scenario.axes[0].param", "no cluster runs an optimization programme (programmes: none)")),
    S2("v2c_mc_platform_event_clusters.yaml",
       ("scenario.events[0].clusters", "platform.take_rate is a field of the portfolio's platform layer")),
]


def _stderr(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):  # older click: stderr mixed into output
        return result.output


def _run(portfolio, scenario, out: Path):
    runner = CliRunner()
    return runner.invoke(
        main,
        ["run", str(portfolio), "--scenario", str(scenario), "-o", str(out), "--backend", "numpy", "-q"],
    )


def _describe(result) -> str:
    exc = result.exception
    extra = ""
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback

        extra = "\nuncaught exception:\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)
        )
    return f"exit code {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{_stderr(result)}{extra}"


def _assert_refused(result, bad_file: Path, expected, tmp_path: Path, keep=()):
    info = _describe(result)
    assert not (result.exception is not None and not isinstance(result.exception, SystemExit)), info
    assert result.exit_code == 2, info
    err = _stderr(result)
    assert "Traceback" not in err and "Traceback" not in result.output, info
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, info
    # every line follows the documented format
    for ln in lines:
        assert ln.startswith("error: "), info
    prefix = f"error: {bad_file}: "
    for key, reason in expected:
        if key is None:
            ok = any(ln.startswith(prefix) and reason in ln[len(prefix):] for ln in lines)
        else:
            ok = any(ln.startswith(f"{prefix}{key}: {reason}") for ln in lines)
        want = f"{prefix}{key + ': ' if key else '...'}{reason}"
        assert ok, f"expected a line starting {want!r}\n{info}"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in keep)
    assert left == [], f"files left behind: {left}\n{info}"


@pytest.mark.parametrize("portfolio, scenario, bad_file, expected", CASES)
def test_bad_file_is_refused(portfolio, scenario, bad_file, expected, tmp_path):
    assert bad_file.exists()
    result = _run(portfolio, scenario, tmp_path / "out.h5")
    _assert_refused(result, bad_file, expected, tmp_path)


def test_corpus_is_complete():
    """Every bad file in the folder has a case, and the corpus has at least 24 files."""
    named = {c.values[2].name for c in CASES}
    on_disk = {p.name for pattern in ("[psm]_*.yaml", "v2_*.yaml", "v2c_*.yaml") for p in HERE.glob(pattern)}
    assert on_disk == named
    assert len(on_disk) >= 24


def test_valid_files_run(tmp_path):
    """The helpers themselves are valid: a failure above is the bad file's doing."""
    for portfolio in (VALID_P, VALID_V2):
        out = tmp_path / f"{portfolio.stem}.h5"
        result = _run(portfolio, VALID_S, out)
        assert result.exit_code == 0, _describe(result)
        assert out.is_file()


# ---------------------------------------------------------------- unreadable inputs


def test_directory_as_portfolio(tmp_path):
    d = tmp_path / "portfolio_dir"
    d.mkdir()
    result = _run(d, VALID_S, tmp_path / "out.h5")
    _assert_refused(result, d, [(None, "is a directory")], tmp_path, keep={"portfolio_dir"})


def test_nonexistent_portfolio(tmp_path):
    missing = tmp_path / "no_such_portfolio.yaml"
    result = _run(missing, VALID_S, tmp_path / "out.h5")
    _assert_refused(result, missing, [(None, "no such file")], tmp_path)


def test_nonexistent_scenario(tmp_path):
    missing = tmp_path / "no_such_scenario.yaml"
    result = _run(VALID_P, missing, tmp_path / "out.h5")
    _assert_refused(result, missing, [(None, "no such file")], tmp_path)


def test_unreadable_portfolio(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    f = tmp_path / "locked.yaml"
    shutil.copy(VALID_P, f)
    f.chmod(0)
    try:
        result = _run(f, VALID_S, tmp_path / "out.h5")
        _assert_refused(result, f, [(None, "permission denied")], tmp_path, keep={"locked.yaml"})
    finally:
        f.chmod(0o644)


# -------------------------------------------------------------------- validate


def test_validate_bad_portfolio():
    bad = HERE / "p_pue_below_one.yaml"
    result = CliRunner().invoke(main, ["validate", str(bad)])
    info = _describe(result)
    assert result.exit_code == 2, info
    assert "Traceback" not in result.output, info
    assert f"error: {bad}: clusters[1].pue: must be >= 1, got 0.9" in _stderr(result), info


def test_validate_bad_scenario():
    bad = HERE / "s_unknown_cluster.yaml"
    result = CliRunner().invoke(main, ["validate", "--portfolio", str(VALID_P), str(bad)])
    info = _describe(result)
    assert result.exit_code == 2, info
    assert "Traceback" not in result.output, info
    assert f"error: {bad}: scenario.axes[0].clusters: unknown cluster 'zzz'" in _stderr(result), info


def test_validate_good_and_bad_together():
    """A good file is reported ok, the bad one is an error, and the exit code is 2."""
    bad = HERE / "p_horizon_601.yaml"
    result = CliRunner().invoke(main, ["validate", str(VALID_P), str(bad)])
    info = _describe(result)
    assert result.exit_code == 2, info
    assert f"ok: {VALID_P}" in result.stdout, info
    assert f"error: {bad}: portfolio.horizon_months: must be <= 600, got 601" in _stderr(result), info


def test_validate_unhashable_key():
    bad = HERE / "p_unhashable_key.yaml"
    result = CliRunner().invoke(main, ["validate", str(bad)])
    info = _describe(result)
    assert not (result.exception is not None and not isinstance(result.exception, SystemExit)), info
    assert result.exit_code == 2, info
    assert f"error: {bad}: " in _stderr(result), info


def test_validate_grid_size_overflow():
    """A grid whose point count overflows must be refused, not reported ok with a wrapped count."""
    bad = HERE / "s_grid_size_overflow.yaml"
    result = CliRunner().invoke(main, ["validate", "--portfolio", str(VALID_P), str(bad)])
    info = _describe(result)
    assert result.exit_code == 2, info
    assert f"error: {bad}: " in _stderr(result), info


# ------------------------------------------------- axis names the result file uses


def test_axis_named_like_an_output_is_refused_by_validate_and_run(tmp_path):
    bad = HERE / "s_output_axis_name.yaml"
    want = f"error: {bad}: scenario.axes[0].name: 'npv' is reserved"
    result = CliRunner().invoke(main, ["validate", "--portfolio", str(VALID_P), str(bad)])
    info = _describe(result)
    assert result.exit_code == 2, info
    assert want in _stderr(result) and "Traceback" not in result.output, info
    out = tmp_path / "out.h5"
    result = _run(VALID_P, bad, out)
    _assert_refused(result, bad, [("scenario.axes[0].name", "'npv' is reserved")], tmp_path)
    assert not out.exists()


@pytest.fixture(scope="module")
def written_names(tmp_path_factory):
    """Every root name of a grid result file as written, sensitivities included: the
    writer's own output, independent of the list validation checks against."""
    import h5py

    pytest.importorskip("jax")
    from stresstest.runner import run_scenario

    out = tmp_path_factory.mktemp("names") / "r.h5"
    run_scenario(VALID_P, VALID_S, out, backend="jax", sensitivities=True, progress=False)
    with h5py.File(out) as f:
        names = set(f.keys())
        assert "base" in names and "grad_npv" in names and "cluster_npv" in names
    return sorted(names - {"price"})  # less the grid's own axis


def test_every_name_in_a_result_file_is_refused_as_an_axis_name(written_names, tmp_path):
    """Validation, not the HDF5 writer, refuses each (the writer failed with 'name
    already exists' after all the work), and the API raises the same ConfigError."""
    from stresstest.config import load_portfolio
    from stresstest.loaders import load_scenario
    from stresstest.validation import ConfigError

    pf = load_portfolio(VALID_P)
    for name in written_names:
        sc = tmp_path / f"s_{name}.yaml"
        sc.write_text("scenario:\n  kind: grid\n  axes:\n"
                      f"    - {{shock: price, values: [0.8, 1.0], name: {name}}}\n")
        with pytest.raises(ConfigError) as err:
            load_scenario(sc, pf)
        assert any(p.startswith(f"{sc}: scenario.axes[0].name: {name!r} is reserved")
                   for p in err.value.problems), (name, err.value.problems)


def test_api_refuses_an_axis_named_like_an_output(tmp_path):
    import stresstest
    from stresstest.validation import ConfigError

    bad = HERE / "s_output_axis_name.yaml"
    out = tmp_path / "out.h5"
    with pytest.raises(ConfigError) as err:
        stresstest.run(VALID_P, bad, backend="numpy", output=out)
    assert any(p.startswith(f"{bad}: scenario.axes[0].name: 'npv' is reserved") for p in err.value.problems)
    assert list(tmp_path.iterdir()) == []
