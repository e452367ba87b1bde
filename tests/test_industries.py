"""Industry profiles (stresstest/industries.py): the bundled files, the loader's errors,
the order in which an item's fields are filled, and `stresstest industries list|show`."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from stresstest.cli import main
from stresstest.validation import ConfigError
from stresstest.industries import BUNDLED, FIELDS, PROFILE_FIELDS, fill, industry_dir, load_profile

WHERE = "p.yaml: clusters[0].contracts[1].industry"


def _write(tmp_path, block: dict, name: str = "mine.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"industry": block}))
    return path


def _problems(path_or_name, **kw) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_profile(str(path_or_name), WHERE, **kw)
    return err.value.problems


def test_the_bundled_folder_holds_exactly_the_bundled_profiles():
    assert sorted(p.stem for p in industry_dir().glob("*.yaml")) == sorted(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_number_has_a_source_and_lies_in_range(name):
    profile = load_profile(name, WHERE)
    assert profile.name == name and profile.description
    assert profile.fields(), "a profile sets at least one field"
    # the one field without a default: every profile gives it, so the label alone makes a segment whole
    assert "utilization" in profile.segment
    for kind in FIELDS:
        for field, (value, source) in profile.section(kind).items():
            spec = FIELDS[kind][field]
            assert spec.lo <= value <= spec.hi, (kind, field, value)
            assert len(source) > 40, (kind, field, source)
            # no public figure exists for any industry: each number says so and is an assumption
            assert "No public figure" in source and f"{kind}.{field}" in profile.assumptions
            assert "../shared" not in source and "MODEL.md" not in source


def test_the_profiles_carry_the_seeds_claims():
    finance, healthcare, retail, logistics = (load_profile(n, WHERE) for n in
                                              ("finance", "healthcare", "retail", "logistics"))
    default = {kind: {f: p.default for f, p in fields.items()} for kind, fields in FIELDS.items()}
    assert finance.segment["price_multiplier"][0] > default["segment"]["price_multiplier"]
    assert finance.segment["utilization_sigma"][0] < default["segment"]["utilization_sigma"]
    assert 48 <= healthcare.contract["term_months"][0] <= 60
    assert healthcare.contract["renewal_rate"][0] > default["contract"]["renewal_rate"]
    assert retail.segment["utilization_sigma"][0] == 0.04
    assert logistics.segment["utilization"][0] >= 0.9
    assert max(p.segment["utilization"][0] for p in (finance, healthcare, retail)) < 0.9


def test_a_profile_file_of_ones_own(tmp_path):
    path = _write(tmp_path, {"description": "Batch rendering.", "segment": {
        "utilization": {"value": 0.6, "source": "our 2025 logs"}}}, "render.yaml")
    profile = load_profile(str(path), WHERE)
    assert profile.name == "render" and profile.segment == {"utilization": (0.6, "our 2025 logs")}
    assert profile.contract == {} and profile.assumptions == frozenset()
    # a relative path is read from the referring file's folder
    assert load_profile("render.yaml", WHERE, relative_to=tmp_path).path == str(path)


def test_unknown_industry_names_the_key_the_label_and_the_known_ones():
    [problem] = _problems("finanse")
    assert problem.startswith(f"{WHERE}: unknown industry 'finanse'; did you mean 'finance'?")
    assert all(name in problem for name in BUNDLED)


def test_a_missing_profile_file_names_the_key_and_the_path(tmp_path):
    [problem] = _problems(tmp_path / "nowhere.yaml")
    assert problem == f"{WHERE}: no industry profile file {str(tmp_path / 'nowhere.yaml')!r}"


def test_a_number_without_a_source(tmp_path):
    path = _write(tmp_path, {"description": "x", "contract": {"term_months": {"value": 48}}})
    assert _problems(path) == [f"{path}: industry.contract.term_months.source: required key is missing"]


def test_a_blank_source(tmp_path):
    path = _write(tmp_path, {"description": "x", "contract": {"term_months": {"value": 48, "source": " "}}})
    [problem] = _problems(path)
    assert problem.startswith(f"{path}: industry.contract.term_months.source: must say where")


def test_an_unknown_key_gets_the_closest_known_one(tmp_path):
    path = _write(tmp_path, {"description": "x", "segment": {
        "utilisation": {"value": 0.8, "source": "s"}}})
    assert _problems(path) == [
        f"{path}: industry.segment.utilisation: unknown key; did you mean 'utilization'?"]


def test_a_value_out_of_range_and_every_problem_at_once(tmp_path):
    path = _write(tmp_path, {"description": "x",
                             "contract": {"term_months": {"value": 0.5, "source": "s"}},
                             "segment": {"utilization": {"value": 1.5, "source": "s"}}})
    assert _problems(path) == [
        f"{path}: industry.contract.term_months.value: must be >= 1, got 0.5",
        f"{path}: industry.segment.utilization.value: must be <= 1, got 1.5 (a percent? 1.5 % is 0.015)",
    ]


def test_a_profile_cannot_set_what_belongs_to_the_customer(tmp_path):
    path = _write(tmp_path, {"description": "x", "contract": {
        "share": {"value": 0.5, "source": "s"}, "price": {"value": 2.0, "source": "s"},
        "renewal_rate": {"value": 2, "source": "s"}}})
    assert _problems(path) == [
        f"{path}: industry.contract.share: a profile cannot set share: every contract gives its own",
        f"{path}: industry.contract.price: a profile cannot set price: every contract gives its own",
        f"{path}: industry.contract.renewal_rate.value: must be <= 1, got 2 (a percent? 2 % is 0.02)",
    ]


def test_a_file_that_is_not_a_profile(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("clusters: []\n")
    assert _problems(path) == [f"{path}: industry: required key is missing", f"{path}: clusters: unknown key"]
    path.write_text("- 1\n")
    assert _problems(path) == [f"{path}: (top level): must be a mapping with the key industry"]


def test_fill_takes_the_item_then_the_profile_then_the_default():
    healthcare = load_profile("healthcare", WHERE)
    item = {"name": "pharma", "share": 0.3, "price": 2.1, "renewal_rate": 0.6, "industry": "healthcare"}
    filled, origins = fill(item, "contract", healthcare)
    assert filled == {**item, "term_months": 48.0, "renewal_discount": 0.15, "utilization": 0.85,
                      "loss_month": float("inf")}
    assert origins == {"name": "file", "share": "file", "price": "file", "renewal_rate": "file",
                       "industry": "file", "term_months": "profile healthcare",
                       "renewal_discount": "default", "utilization": "default", "loss_month": "default"}
    assert item == {"name": "pharma", "share": 0.3, "price": 2.1, "renewal_rate": 0.6,
                    "industry": "healthcare"}, "the item itself is left as it was"


def test_fill_a_segment_with_and_without_a_profile():
    finance = load_profile("finance", WHERE)
    filled, origins = fill({"name": "trading", "share": 0.2, "utilization_sigma": 0.08}, "segment", finance)
    assert filled == {"name": "trading", "share": 0.2, "utilization_sigma": 0.08,
                      "utilization": 0.75, "price_multiplier": 1.25}
    assert origins["utilization"] == origins["price_multiplier"] == "profile finance"
    assert origins["utilization_sigma"] == "file"
    # no profile: the defaults, and a segment's utilization (no default) stays absent
    filled, origins = fill({"name": "rest", "share": 0.8}, "segment", None)
    assert filled == {"name": "rest", "share": 0.8, "price_multiplier": 1.0, "utilization_sigma": 0.10}
    assert "utilization" not in origins and origins["price_multiplier"] == "default"


def test_a_profile_sets_only_fields_that_have_no_owner():
    assert PROFILE_FIELDS == {"contract": ("term_months", "renewal_rate", "renewal_discount", "utilization"),
                              "segment": ("utilization", "price_multiplier", "utilization_sigma")}


def test_cli_list():
    r = CliRunner().invoke(main, ["industries", "list"])
    assert r.exit_code == 0, r.output
    for name in BUNDLED:
        assert name in r.output
    assert "contract.term_months" in r.output and "segment.price_multiplier" in r.output
    r = CliRunner().invoke(main, ["industries", "list", "--json"])
    rows = json.loads(r.output)
    assert [row["name"] for row in rows] == list(BUNDLED)
    assert rows[1]["fields"] == load_profile("healthcare", WHERE).fields()


def test_cli_show_bundled_and_file(tmp_path):
    r = CliRunner().invoke(main, ["industries", "show", "healthcare"])
    assert r.exit_code == 0, r.output
    assert "contract.term_months = 48  (assumption to calibrate)" in r.output
    assert "source: No public figure" in r.output
    path = _write(tmp_path, {"description": "Ours.", "segment": {"utilization": {"value": 0.6, "source": "logs"}}})
    r = CliRunner().invoke(main, ["industries", "show", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["segment"] == {"utilization": {"value": 0.6, "source": "logs", "assumption": False}}


def test_cli_show_refuses_an_unknown_name_or_a_bad_file_with_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["industries", "show", "retial"])
    assert r.exit_code == 2
    assert "error: industries show: unknown industry 'retial'; did you mean 'retail'?" in r.output
    path = _write(tmp_path, {"description": "x", "segment": {"utilization": {"value": 1.5, "source": "s"}}})
    r = CliRunner().invoke(main, ["industries", "show", str(path)])
    assert r.exit_code == 2
    assert f"error: {path}: industry.segment.utilization.value: must be <= 1, got 1.5 " in r.output
