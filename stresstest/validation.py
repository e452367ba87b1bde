"""The rules every input file shares: how it is read, how its problems are worded.

A file is one YAML document (duplicate keys refused, 1e5 read as a number); its
structure (keys, types, finiteness) is a pydantic model with unknown keys forbidden,
each of pydantic's errors translated to `file: key.path: reason`, a mistyped key given
the closest known one; a value's range is the kernels' parameter table (check_value).
A loader reports every problem of its file at once (ConfigError), before any work.
Values the model takes but that lie far outside realistic ranges (PLAUSIBLE) draw a
warning in the same form. The portfolio is config.py, the scenario kinds are
grid_config.py, mc_config.py and named.py.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .kernels.params import PARAMS, PORTFOLIO_PARAMS, Param


class ConfigError(Exception):
    """Bad input: one or more `file: key.path: reason` lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def did_you_mean(word: Any, choices) -> str:
    """"; did you mean 'x'?" for the closest of `choices` to a mistyped word, or ""."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# ------------------------------------------------------------------ plausibility

# Values the model takes but that lie far outside what real GPU clusters show: most
# likely a slip of unit (a USD/MWh figure where USD/kWh is expected, a percent where a
# fraction is). A file value below `low` or above `high` draws a warning (`--strict`
# makes it an error). `typical` is the realistic range, from public figures; the bounds
# leave a wide margin around it, so that no realistic file warns (the bundled files are
# tested). `below` and `above` name the likely slip (see _slip).


@dataclass(frozen=True)
class Plausible:
    low: float | None
    high: float | None
    typical: str
    below: str | None = None
    above: str | None = None


PLAUSIBLE: dict[str, Plausible] = {
    # cluster parameters
    "capex_per_gpu": Plausible(1000, 500_000, "10,000-60,000: A100 about 10k (CNBC), H100 all-in 47k-52k "
                               "(H100 Freakonomics), B200 30k-40k plus system (Morgan Stanley)",
                               "thousands", "server"),
    "kw_per_gpu": Plausible(0.2, 10, "0.7-2.2: H100 chip 0.7, DGX H100 1.275 per GPU, B200 about 1.8 "
                            "all-in (NVIDIA)", None, "watts"),
    "pue": Plausible(None, 3, "1.07-1.8: Nordic 1.07-1.15, industry average 1.54-1.58 (Uptime)",
                     None, "percent_ratio"),
    "energy_price": Plausible(0.01, 1.0, "0.03-0.36: Texas industrial 6.6 cents (EIA 2023), Germany "
                              "2022 35.7 euro cents (SMARD)", None, "mwh"),
    "energy_escalation": Plausible(-0.5, 0.5, "about 0.02-0.05", None, "percent"),
    "on_demand_price": Plausible(0.1, 50, "1.5-12.3: H100 marketplace under 2 (2024), AWS p5 12.29 "
                                 "before its 2025 cut", None, "gpu_hour"),
    "reserved_price": Plausible(None, 50, "1.6-3.2: H100 1-year 1.70-2.35, B200 floor 2.80-3.20 "
                                "(SemiAnalysis; RBC via FT)", None, "gpu_hour"),
    "reserved_term_months": Plausible(6, 120, "12-60: 1-year to about 4-year take-or-pay contracts",
                                      "years"),
    "priority_premium": Plausible(None, 3, "about 0.1-0.5", None, "percent"),
    "opex_escalation": Plausible(-0.5, 0.5, "about 0.02-0.04", None, "percent"),
    "maintenance_rate": Plausible(None, 0.3, "0.015-0.08", None, "percent"),
    "software_per_gpu_month": Plausible(None, 1000, "about 15", None, "yearly"),
    "colocation_per_kw_month": Plausible(None, 1000, "140-250 (CBRE H2 2024: 184)", None, "yearly"),
    "useful_life_years": Plausible(1, 20, "3-6 (company filings 2022-25: Nebius 4, Microsoft 6)", None,
                                   "months_for_years"),
    "interest_rate": Plausible(None, 0.5, "0.07-0.15 (CoreWeave's GPU-backed loans 11-15 %)", None,
                               "percent"),
    "debt_term_months": Plausible(6, 240, "24-72", "years"),
    # portfolio parameters
    "discount_rate": Plausible(None, 0.5, "0.08-0.20", None, "percent"),
    "horizon_months": Plausible(12, None, "36-72 (useful lives of 3-6 years)", "years"),
}


def _slip(kind: str | None, v: float) -> str | None:
    """The likely slip of unit behind an implausible value, with the corrected figure."""
    if kind == "percent" and v >= 1:
        return f"rates are fractions, {num_text(v)} % is {num_text(v / 100)}"
    if kind == "percent_ratio" and v >= 100:
        return f"a ratio, not a percent: {num_text(v)} % is {num_text(v / 100)}"
    if kind == "mwh" and v >= 10:
        return f"a USD/MWh figure? {num_text(v)} USD/MWh = {num_text(v / 1000)} USD/kWh"
    if kind == "mwh" and v >= 1:
        return f"US cents? {num_text(v)} cents/kWh = {num_text(v / 100)} USD/kWh"
    if kind == "watts" and v >= 100:
        return f"W instead of kW? {num_text(v)} W = {num_text(v / 1000)} kW"
    if kind == "thousands" and 0 < v < 1000:
        return f"thousands of USD? {num_text(v)} thousand USD = {v * 1000:,.0f} USD"
    if kind == "server":
        return (f"the price of a server? it is per GPU: an 8-GPU server at {v:,.0f} USD is "
                f"{v / 8:,.0f} USD per GPU")
    if kind == "gpu_hour" and v >= 500:
        return f"a monthly price? {num_text(v)} USD per GPU-month = {v / 730:.3g} USD per GPU-hour"
    if kind == "gpu_hour":
        return f"a price per 8-GPU server? {num_text(v)} USD per server-hour = {v / 8:.3g} USD per GPU-hour"
    if kind == "years" and 0 < v <= 10:
        return f"years instead of months? {num_text(v)} years = {num_text(v * 12)} months"
    if kind == "months_for_years" and v >= 12:
        return f"months instead of years? {num_text(v)} months = {v / 12:.3g} years"
    if kind == "yearly":
        return f"a yearly figure? {num_text(v)} a year = {v / 12:.4g} a month"
    return None


def implausible(key: str, value: float) -> str | None:
    """Why a file value of `key` looks unrealistic (with its likely slip), or None."""
    rule = PLAUSIBLE.get(key)
    if rule is None or not math.isfinite(value):
        return None
    spec = PARAMS.get(key) or PORTFOLIO_PARAMS[key]
    unit = f" {spec.unit}" if spec.unit else ""
    band = "\u2013".join(f"{b:,.0f}" if abs(b) >= 1000 else num_text(b)
                          for b in (rule.low, rule.high) if b is not None)
    for side, bound, slip in (("below", rule.low, rule.below), ("above", rule.high, rule.above)):
        if bound is not None and (value < bound if side == "below" else value > bound):
            hint = _slip(slip, value)
            shown = f"{value:,.0f}" if abs(value) >= 10_000 and value == math.floor(value) else num_text(value)
            return (f"{shown}{unit} is far {side} {band} (realistic {rule.typical})"
                    + (f"; {hint}" if hint else ""))
    return None


# --------------------------------------------------------------------------- YAML


def _yaml_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)  # resolve merge keys (<<: *anchor) first
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain word, not a list or mapping",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen[key] = True
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    # YAML 1.1 (PyYAML) reads 1e5 or 2.5e-3 without a dot or a sign as strings; users
    # mean numbers, as YAML 1.2 says. Resolve them as floats.
    import re

    UniqueKeyLoader.yaml_implicit_resolvers = {
        k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    UniqueKeyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return UniqueKeyLoader


def read_yaml(path: str | Path) -> Any:
    """Parse one YAML document, turning every failure into a ConfigError naming the file."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, not a file"])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        from .presets import missing_hint

        raise ConfigError([f"{path}: no such file{missing_hint(path)}"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: cannot be read (permission denied)"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a text file (not UTF-8)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    if not text.strip():
        raise ConfigError([f"{path}: the file is empty"])
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: {where}not valid YAML ({problem})"]) from None


# ------------------------------------------------------------------ pydantic models

# every file's models: unknown keys are errors, no coercion ("5" is not 5), no NaN or inf
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _union_members(tp) -> list:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def keys_at(model, loc: tuple) -> list[str]:
    """The keys the mapping at `loc` (a cleaned pydantic location) of `model` may hold."""
    tps = [model]
    for part in loc:
        nxt = []
        for tp in (m for t in tps for m in _union_members(t)):
            origin = typing.get_origin(tp)
            if isinstance(part, int) and origin is list:
                nxt.append(typing.get_args(tp)[0])
            elif isinstance(part, str) and origin is dict:
                nxt.append(typing.get_args(tp)[1])
            elif isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel) \
                    and part in tp.model_fields:
                nxt.append(tp.model_fields[part].annotation)
        tps = nxt
    return [k for t in tps for m in _union_members(t)
            if isinstance(m, type) and issubclass(m, BaseModel) for k in m.model_fields]


# keys of one scenario kind's block, named when another kind's block holds them
_KIND_KEYS = {"axes": "grid", "sets": "named", **{k: "montecarlo" for k in (
    "paths", "seed", "price", "utilization", "energy", "correlation", "events", "hurdle_irr",
    "covenant_dscr")}}


def _unknown_key(key: Any, siblings: list[str]) -> str:
    """"unknown key", with the closest known key or where the key belongs."""
    if "kind" in siblings and key in _KIND_KEYS:
        return f"unknown key; it belongs to a scenario of kind: {_KIND_KEYS[key]}"
    portfolio_file = bool({"portfolio", "currency", "pue"} & set(siblings))  # a block of a portfolio
    if portfolio_file and key in PARAMS:  # a known key in the wrong block
        return "unknown key; it is a cluster parameter: give it in defaults: or in a cluster"
    if portfolio_file and key in PORTFOLIO_PARAMS:
        return "unknown key; it is a portfolio parameter: give it in the portfolio: block"
    return "unknown key" + did_you_mean(key, siblings)


def pydantic_problems(path: Path, err: ValidationError, model=None) -> list[str]:
    """Each pydantic error as `file: key.path: reason`; with the file's model, an unknown
    key gets the closest known one ("did you mean")."""
    problems = []
    errors = err.errors()
    # a number field typed int | float (exact integers) reports each branch: keep the float one
    float_locs = {tuple(p for p in e["loc"] if p != "float") for e in errors if "float" in e["loc"]}
    for e in errors:
        if "int" in e["loc"] and tuple(p for p in e["loc"] if p != "int") in float_locs:
            continue
        # drop the tags pydantic puts on a union's branches; an unknown key is the last
        # element itself, whatever it is called (a key named "str" is a key)
        tags = ("function-after", "list[float]", "str", "float")
        raw = tuple(e["loc"])
        kind = e["type"]
        keep = raw[-1:] if kind == "extra_forbidden" else ()
        loc = tuple(p for p in raw[:len(raw) - len(keep)] if p not in tags) + keep
        got = e.get("input")
        if kind == "extra_forbidden":
            reason = _unknown_key(loc[-1], keys_at(model, loc[:-1]) if model is not None else [])
        elif kind == "missing":
            reason = "required key is missing"
        elif kind == "float_type":
            reason = f"must be a number, got {_show(got)}"
        elif kind == "finite_number":
            reason = f"must be a finite number, got {_show(got)}"
        elif kind == "string_type":
            reason = f"must be a string, got {_show(got)}"
        elif kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
            want = {"list_type": "a list", "dict_type": "a mapping"}.get(kind, "a mapping")
            reason = f"must be {want}, got {_show(got)}"
        else:
            reason = e["msg"]
        problems.append(f"{path}: {_loc(loc)}: {reason}")
    return problems


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return repr(value)
    return f"{value!r}"


def num_text(x: float) -> str:
    return f"{x:g}" if math.isfinite(x) else str(x)


def check_value(spec: Param, value: float) -> str | None:
    """Reason a file value is out of range, or None."""
    if spec.integer and value != math.floor(value):
        return f"must be a whole number, got {num_text(value)}"
    if spec.lo_open and value <= spec.lo:
        return f"must be > {num_text(spec.lo)}, got {num_text(value)}"
    if value < spec.lo:
        return f"must be >= {num_text(spec.lo)}, got {num_text(value)}"
    if value > spec.hi:
        slip = f" (a percent? {num_text(value)} % is {num_text(value / 100)})" if spec.hi == 1 and value <= 100 else ""
        return f"must be <= {num_text(spec.hi)}, got {num_text(value)}{slip}"
    return None


# ---------------------------------------------------------------------- a document


def wrong_file(path: Path, doc: dict, expected: str) -> str | None:
    """A file of another kind given where a portfolio (or a scenario) is expected."""
    if "shockset" in doc:
        return (f"{path}: (top level): this looks like a named shock set; list it under sets: in a "
                "scenario of kind: named, given with -s")
    if expected == "portfolio" and "scenario" in doc and "clusters" not in doc:
        return f"{path}: (top level): this looks like a scenario file; give it with -s (--scenario)"
    if expected == "scenario" and "scenario" not in doc and ("clusters" in doc or "portfolio" in doc):
        return (f"{path}: (top level): this looks like a portfolio file; give it as the PORTFOLIO "
                "argument, not with -s")
    return None


def read_document(path: Path, expected: str, top: str) -> dict:
    """The YAML mapping in `path`, refused (ConfigError) when it is not a mapping (`top`
    names the keys it should have) or looks like another kind of file than `expected`."""
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top level): must be a mapping with {top}"])
    wrong = wrong_file(path, doc, expected)
    if wrong:
        raise ConfigError([wrong])
    return doc


# ------------------------------------------------------- every problem at once


def lenient(model, raw: Any, drop: str = "any"):
    """`model` validated from the mapping `raw` less the keys it fails on (drop="any"), or
    less its unknown keys only (drop="unknown"); None where that does not validate. The
    failures themselves are reported from the whole file: this only lets the checks of
    the valid parts run, so that every problem of a file shows at once."""
    if not isinstance(raw, dict):
        return None
    data = dict(raw)
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as err:
            bad = {e["loc"][0] for e in err.errors()
                   if e["loc"] and e["loc"][0] in data and (drop == "any" or e["type"] == "extra_forbidden")}
            if not bad:
                return None
            for k in bad:
                del data[k]
    return None


def problem_key(problem: str, path: Path) -> str:
    """The key path of a `file: key.path: reason` line."""
    return problem[len(f"{path}: "):].split(": ", 1)[0]


def structure_first(path: Path, structure: list[str], problems: list[str]) -> list[str]:
    """The structure's problems, then the other checks' problems at keys the structure
    has not reported already (a key both name is worded once, by the structure)."""
    reported = {problem_key(p, path) for p in structure}
    return structure + [p for p in problems if problem_key(p, path) not in reported]
