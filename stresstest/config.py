"""Load and validate portfolio and scenario files (MODEL.md, "Files").

Structure (keys, types, finiteness) is checked by pydantic models with unknown
keys forbidden; ranges, whole numbers and cross-references by the parameter table
of the kernels. Every problem is reported as `file: key.path: reason`, all of them
at once, before any work starts; a mistyped name gets the closest known one. Values
the model takes but that lie far outside realistic ranges (PLAUSIBLE) are kept, with
a warning in the same form (Portfolio.warnings, Scenario.warnings).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .outputs import CLUSTER_DIM, reserved_names
from .kernels.params import (
    CLUSTER_PARAMS,
    NAMED_SHOCKS,
    OPS,
    PARAMS,
    PORTFOLIO_PARAMS,
    Param,
)
from .kernels.shocks import AxisSpec

LABELS = ("gpu", "region", "gpu_market", "power_market")
MAX_AXIS_VALUES = 10_000_000
MAX_GRID_POINTS = 2**62  # flat indices are int64 on every backend
REQUIRED = tuple(p.name for p in CLUSTER_PARAMS if p.default is None and p.name != "reserved_price")


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

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _param_fields() -> dict[str, Any]:
    # Type float with a None default: absent means "use the default", an explicit
    # null is refused (only client_loss_month: null, meaning never, is allowed).
    fields: dict[str, Any] = {p.name: (float, None) for p in CLUSTER_PARAMS}
    return fields


ParamsModel = create_model("ParamsModel", __config__=STRICT, **_param_fields())
DefaultsModel = create_model(
    "DefaultsModel",
    __config__=STRICT,
    **_param_fields(),
    **{k: (Optional[str], None) for k in ("gpu", "region")},
)
ClusterModel = create_model(
    "ClusterModel",
    __config__=STRICT,
    name=(str, ...),
    sources=(Optional[dict[str, str]], None),
    **_param_fields(),
    **{k: (Optional[str], None) for k in LABELS},
)


class PortfolioBlock(BaseModel):
    model_config = STRICT
    name: str = "portfolio"
    horizon_months: float = None  # type: ignore[assignment]
    discount_rate: float = None  # type: ignore[assignment]
    currency: str = "USD"
    sources: Optional[dict[str, str]] = None


class PortfolioFile(BaseModel):
    model_config = STRICT
    portfolio: PortfolioBlock = PortfolioBlock()
    defaults: Optional[DefaultsModel] = None  # type: ignore[valid-type]
    clusters: list[ClusterModel]  # type: ignore[valid-type]


class AxisModel(BaseModel):
    model_config = STRICT
    shock: Optional[str] = None
    param: Optional[str] = None
    op: Optional[str] = None
    values: Optional[list[float]] = None
    linspace: Optional[list[float]] = None
    clusters: Optional[list[str]] = None
    name: Optional[str] = None


class ScenarioBlock(BaseModel):
    model_config = STRICT
    kind: str
    name: Optional[str] = None
    description: Optional[str] = None
    sources: Optional[dict[str, str]] = None
    axes: list[AxisModel] = []


class ScenarioFile(BaseModel):
    model_config = STRICT
    scenario: ScenarioBlock


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


# --------------------------------------------------------------------- portfolio


@dataclass
class Portfolio:
    """A resolved portfolio: every parameter of every cluster filled in."""

    path: str
    name: str
    currency: str
    horizon_months: int
    discount_rate: float
    clusters: list[dict[str, float]]  # name -> value, every PARAM present
    cluster_names: list[str]
    labels: list[dict[str, str]]
    origins: list[dict[str, str]] = field(default_factory=list)  # "cluster", "defaults" or "model"
    sources: dict = field(default_factory=dict)
    cluster_sources: list[dict] = field(default_factory=list)
    # `file: key.path: reason` for each value that looks unrealistic (PLAUSIBLE): the
    # command line prints them as warnings, or refuses the file with --strict
    warnings: list[str] = field(default_factory=list)

    def base_arrays(self) -> dict[str, np.ndarray]:
        return {
            p.name: np.array([c[p.name] for c in self.clusters], dtype=np.float64)
            for p in CLUSTER_PARAMS
        }

    def to_dict(self) -> dict:
        cited = self.cluster_sources or [{} for _ in self.clusters]
        return {
            "name": self.name,
            "currency": self.currency,
            "horizon_months": self.horizon_months,
            "discount_rate": self.discount_rate,
            "sources": self.sources,
            "clusters": [
                {"name": n, **lab, **{k: (None if math.isinf(v) else v) for k, v in c.items()},
                 "sources": src}
                for n, lab, c, src in zip(self.cluster_names, self.labels, self.clusters, cited)
            ],
        }


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


def load_portfolio(path: str | Path) -> Portfolio:
    path = Path(path)
    doc = read_document(path, "portfolio", "keys portfolio, defaults, clusters")
    doc = _nulls_to_absent(doc)  # client_loss_month: null means never (the default)
    try:
        model = PortfolioFile.model_validate(doc)
        structure: list[str] = []
        pb, dm, cms = model.portfolio, model.defaults, list(model.clusters)
    except ValidationError as err:
        # the structure's problems, then the checks of every part that is valid on its own
        structure = pydantic_problems(path, err, PortfolioFile)
        pb = lenient(PortfolioBlock, doc.get("portfolio", {})) or PortfolioBlock()
        dm = lenient(DefaultsModel, doc.get("defaults"))
        raw_clusters = doc.get("clusters")
        cms = [lenient(ClusterModel, c) for c in raw_clusters] if isinstance(raw_clusters, list) else None
    problems: list[str] = []
    warnings: list[str] = []
    horizon = 60.0 if pb.horizon_months is None else pb.horizon_months
    rate = 0.10 if pb.discount_rate is None else pb.discount_rate
    for key, value in (("horizon_months", horizon), ("discount_rate", rate)):
        why = check_value(PORTFOLIO_PARAMS[key], value)
        if why:
            problems.append(f"{path}: portfolio.{key}: {why}")
        elif getattr(pb, key) is not None and implausible(key, value):
            warnings.append(f"{path}: portfolio.{key}: {implausible(key, value)}")
    defaults = dm.model_dump(exclude_none=True) if dm else {}
    for key, value in defaults.items():
        if key in PARAMS:
            why = check_value(PARAMS[key], value)
            if why:
                problems.append(f"{path}: defaults.{key}: {why}")
            elif implausible(key, value):
                warnings.append(f"{path}: defaults.{key}: {implausible(key, value)}")
    if cms is not None and not cms:
        problems.append(f"{path}: clusters: must list at least one cluster")
    clusters, names, labels, origins, sources = [], [], [], [], []
    seen: dict[str, int] = {}
    late_delivery = set()  # where a delivery at or past the horizon is written
    for i, cm in enumerate(cms or []):
        if cm is None:  # not valid on its own: its structure's problems say why
            continue
        raw = cm.model_dump(exclude_none=True)
        name = raw.pop("name")
        where = f"clusters[{i}]"
        if not name.strip():
            problems.append(f"{path}: {where}.name: must not be empty")
        if name in seen:
            problems.append(f"{path}: {where}.name: duplicate cluster name {name!r} (also clusters[{seen[name]}])")
        if name.strip().lower() == "portfolio":
            problems.append(f"{path}: {where}.name: 'portfolio' is reserved: tables, CSV and JSON label the "
                            f"whole portfolio so; give the cluster another name")
        seen.setdefault(name, i)
        sources.append(raw.pop("sources", {}))
        lab = {k: raw.pop(k) for k in LABELS if k in raw}
        for k in ("gpu", "region"):
            if k not in lab and k in defaults:
                lab[k] = defaults[k]
        lab.setdefault("gpu_market", name)
        lab.setdefault("power_market", name)
        values: dict[str, float] = {}
        origin: dict[str, str] = {}
        for spec in CLUSTER_PARAMS:
            if spec.name in raw:
                values[spec.name], origin[spec.name] = raw[spec.name], "cluster"
                why = check_value(spec, raw[spec.name])
                if why:
                    problems.append(f"{path}: {where}.{spec.name}: {why}")
                elif implausible(spec.name, raw[spec.name]):
                    warnings.append(f"{path}: {where}.{spec.name}: {implausible(spec.name, raw[spec.name])}")
            elif spec.name in defaults:
                values[spec.name], origin[spec.name] = defaults[spec.name], "defaults"
            elif spec.default is not None:
                values[spec.name], origin[spec.name] = spec.default, "model"
        for key in REQUIRED:
            if key not in values:
                problems.append(f"{path}: {where}.{key}: required key is missing (no default)")
        if "reserved_price" not in raw and "reserved_price" not in defaults:
            if values.get("reserved_share", 0.0) > 0:
                problems.append(
                    f"{path}: {where}.reserved_price: required when reserved_share > 0 "
                    f"(reserved_share is {num_text(values['reserved_share'])})"
                )
            origin["reserved_price"] = "model"
        delivery = values["delivery_months"]
        if delivery >= horizon and horizon >= 1:
            at = {"cluster": f"{where}.delivery_months", "defaults": "defaults.delivery_months"}.get(
                origin["delivery_months"], f"{where}.delivery_months")
            if at not in late_delivery:
                late_delivery.add(at)
                given = "" if origin["delivery_months"] != "model" else " (the model's default)"
                warnings.append(
                    f"{path}: {at}: {num_text(delivery)} months{given} is at or past the horizon "
                    f"({num_text(horizon)} months): the cluster never goes live within it, so it earns "
                    "nothing and its IRR and ROI mean little")
        clusters.append(values)
        names.append(name)
        labels.append(lab)
        origins.append(origin)
    if structure:
        reported = {problem_key(p, path) for p in structure}
        problems = structure + [p for p in problems if problem_key(p, path) not in reported]
    if problems:
        raise ConfigError(problems)
    return Portfolio(
        path=str(path),
        name=pb.name,
        currency=pb.currency,
        horizon_months=int(horizon),
        discount_rate=float(rate),
        clusters=clusters,
        cluster_names=names,
        labels=labels,
        origins=origins,
        sources=pb.sources or {},
        cluster_sources=sources,
        warnings=warnings,
    )


def _nulls_to_absent(doc: dict) -> dict:
    """`client_loss_month: null` means never: drop it so the default (never) applies."""
    out = dict(doc)
    cl = out.get("clusters")
    if isinstance(cl, list):
        out["clusters"] = [
            {k: v for k, v in c.items() if not (k == "client_loss_month" and v is None)}
            if isinstance(c, dict) else c
            for c in cl
        ]
    d = out.get("defaults")
    if isinstance(d, dict):
        out["defaults"] = {k: v for k, v in d.items() if not (k == "client_loss_month" and v is None)}
    return out


# ---------------------------------------------------------------------- scenario


@dataclass
class Axis:
    name: str
    spec: AxisSpec
    values: np.ndarray
    shock: str | None
    param: str | None
    clusters: list[str] | None

    def to_dict(self) -> dict:
        d = {"name": self.name, "op": self.spec.op, "targets": list(self.spec.targets),
             "values": self.values.tolist()}
        if self.shock:
            d["shock"] = self.shock
        if self.param:
            d["param"] = self.param
        if self.clusters:
            d["clusters"] = self.clusters
        return d

    @property
    def neutral(self) -> float | None:
        return {"scale": 1.0, "shift": 0.0}.get(self.spec.op)


@dataclass
class Scenario:
    path: str
    kind: str
    name: str
    axes: list[Axis]
    warnings: list[str] = field(default_factory=list)  # as Portfolio.warnings

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # exact (Python int): no silent overflow

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "axes": [a.to_dict() for a in self.axes]}


def load_grid(path: Path, doc: dict, portfolio: Portfolio, kinds: tuple[str, ...] = ("grid",)) -> "Scenario":
    """A `kind: grid` scenario from its parsed file (loaders.load_scenario reads it and
    picks the loader by kind; an unknown kind comes here and is named against `kinds`)."""
    block = doc.get("scenario")
    try:
        sb = ScenarioFile.model_validate(doc).scenario
        structure: list[str] = []
        kind, raw_axes = sb.kind, sb.axes
    except ValidationError as err:
        # the structure's problems, then the checks of every axis that is valid on its own
        structure = pydantic_problems(path, err, ScenarioFile)
        sb = None
        kind = block.get("kind") if isinstance(block, dict) and isinstance(block.get("kind"), str) else None
        axes_doc = block.get("axes") if isinstance(block, dict) else None
        raw_axes = [lenient(AxisModel, a, drop="unknown") for a in axes_doc] if isinstance(axes_doc, list) else []
    problems: list[str] = []
    if kind is not None and kind != "grid":
        problems.append(f"{path}: scenario.kind: unknown kind {kind!r}"
                        f"{did_you_mean(kind, kinds)} "
                        f"(this version runs: {', '.join(kinds)})")
    axes: list[Axis] = []
    warnings: list[str] = []
    names: dict[str, int] = {}
    for i, am in enumerate(raw_axes):
        if am is None:  # not valid on its own: its structure's problems say why
            continue
        where = f"scenario.axes[{i}]"
        axis, errs = _resolve_axis(path, where, am, portfolio)
        problems += errs
        if axis is None:
            continue
        if axis.name in names:
            problems.append(
                f"{path}: {where}.name: duplicate axis name {axis.name!r} "
                f"(also scenario.axes[{names[axis.name]}]); give one of them name:"
            )
        names.setdefault(axis.name, i)
        axes.append(axis)
        warnings += _axis_warnings(path, where, am, axis)
    size = math.prod(len(a.values) for a in axes)
    if not problems and not structure and size > MAX_GRID_POINTS:
        problems.append(f"{path}: scenario.axes: the grid has {size:.3g} points, more than the "
                        f"{MAX_GRID_POINTS:.0e} this version can index; split it into several files")
    if structure:
        reported = {problem_key(p, path) for p in structure}
        problems = structure + [p for p in problems if problem_key(p, path) not in reported]
    if problems:
        raise ConfigError(problems)
    return Scenario(str(path), sb.kind, sb.name or path.stem, axes, warnings)


def _axis_warnings(path, where, am: AxisModel, axis: Axis) -> list[str]:
    """An axis that sets a parameter to unrealistic values (PLAUSIBLE): the first such
    value, and how many more."""
    if axis.spec.op != "set":
        return []
    key = "values" if am.values is not None else "linspace"
    odd = [(k, float(v), implausible(t, float(v))) for k, v in enumerate(axis.values)
           for t in axis.spec.targets if implausible(t, float(v))]
    if not odd:
        return []
    k, v, why = odd[0]
    more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
    return [f"{path}: {where}.{key}: value {k} for {axis.spec.targets[0]}: {why}{more}"]


def _resolve_axis(path, where, am: AxisModel, pf: Portfolio):
    """The axis, or None and every problem found: the shock or parameter, the values,
    the clusters and the name are checked independently of one another."""
    problems: list[str] = []

    def bad(key, reason):
        problems.append(f"{path}: {where}{'.' + key if key else ''}: {reason}")

    targets = op = word = None
    if (am.shock is None) == (am.param is None):
        bad("", "give exactly one of shock: or param:")
    elif am.shock is not None:
        word = am.shock
        if am.shock not in NAMED_SHOCKS:
            hint = did_you_mean(am.shock, list(NAMED_SHOCKS) + list(PARAMS) + ["discount_rate"])
            if am.shock in PARAMS or am.shock == "discount_rate":
                hint = f"; {am.shock} is a parameter: give it with param: and op:"
            bad("shock", f"unknown shock {am.shock!r}{hint} (known: {', '.join(NAMED_SHOCKS)}; "
                "any parameter can be an axis with param:)")
        else:
            targets, op, _ = NAMED_SHOCKS[am.shock]
            if am.op is not None and am.op != op:
                bad("op", f"the shock {am.shock} is always a {op}, got {am.op!r}")
    else:
        word = am.param
        if am.param == "horizon_months":
            bad("param", "horizon_months cannot be an axis (it sets the length of every array)")
        elif am.param not in PARAMS and am.param != "discount_rate":
            hint = did_you_mean(am.param, list(PARAMS) + ["discount_rate"])
            if am.param in NAMED_SHOCKS:
                hint = f"; {am.param} is a named shock: give it with shock:"
            bad("param", f"unknown parameter {am.param!r}{hint}")
        elif am.op is None:
            bad("op", "a param axis must give op: scale, shift or set")
        elif am.op not in OPS:
            bad("op", f"must be one of scale, shift, set, got {am.op!r}{did_you_mean(am.op, OPS)}")
        else:
            targets, op = (am.param,), am.op
    # values
    values = None
    if (am.values is None) == (am.linspace is None):
        bad("", "give exactly one of values: or linspace:")
    elif am.values is not None:
        if not am.values:
            bad("values", "must list at least one value")
        else:
            values = np.asarray(am.values, dtype=np.float64)
    else:
        ls = am.linspace
        if len(ls) != 3:
            bad("linspace", f"must be [start, stop, count], got {len(ls)} numbers")
        elif ls[2] != math.floor(ls[2]) or ls[2] < 1:
            bad("linspace", f"count must be a whole number >= 1, got {num_text(ls[2])}")
        elif ls[2] > MAX_AXIS_VALUES:
            bad("linspace", f"count must be at most {MAX_AXIS_VALUES:,}, got {num_text(ls[2])}")
        else:
            values = np.linspace(ls[0], ls[1], int(ls[2]))
    if op == "set" and values is not None:
        specs = [PARAMS.get(t) or PORTFOLIO_PARAMS[t] for t in targets]
        for k, v in enumerate(values):
            for spec in specs:
                why = check_value(spec, float(v))
                if why:
                    bad("values" if am.values is not None else "linspace",
                        f"value {k} for {spec.name}: {why}")
    mask = None
    if am.clusters is not None:
        if am.param == "discount_rate":
            bad("clusters", "discount_rate is a portfolio parameter: clusters: does not apply")
        elif not am.clusters:
            bad("clusters", "must list at least one cluster name (leave it out for all clusters)")
        else:
            for c in am.clusters:
                if c not in pf.cluster_names:
                    bad("clusters", f"unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                        f"(clusters: {', '.join(pf.cluster_names)})")
            if len(set(am.clusters)) != len(am.clusters):
                bad("clusters", "lists a cluster twice")
            mask = tuple(n in am.clusters for n in pf.cluster_names)
    name = am.name if am.name is not None else word
    if name is not None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            bad("name", f"must be a non-empty word of letters, digits, _ or -, got {name!r}")
        reserved = reserved_names()
        if name == CLUSTER_DIM or name.startswith(CLUSTER_DIM + "_"):
            bad("name", f"{name!r} is reserved for the cluster dimension and per-cluster outputs")
        elif name in reserved:
            bad("name", f"{name!r} is reserved: in the result file it names {reserved[name]}; "
                        "give the axis another name:")
    if problems:
        return None, problems
    spec = AxisSpec(name=name, targets=tuple(targets), op=op, cluster_mask=mask)
    return Axis(name, spec, values, am.shock, am.param, am.clusters), problems


def config_json(portfolio: Portfolio, scenario: Scenario) -> tuple[str, str]:
    """The resolved configuration as canonical JSON, and its SHA-256."""
    doc = {"portfolio": portfolio.to_dict(), "scenario": scenario.to_dict()}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text, hashlib.sha256(text.encode()).hexdigest()


def portfolio_from_dict(d: dict, path: str = "<config>") -> Portfolio:
    """The resolved portfolio back from Portfolio.to_dict() (a result file's config)."""
    clusters, names, labels, sources = [], [], [], []
    for c in d["clusters"]:
        names.append(c["name"])
        labels.append({k: c[k] for k in LABELS if k in c})
        sources.append(c.get("sources") or {})
        clusters.append({p.name: (math.inf if c.get(p.name) is None else float(c[p.name]))
                         for p in CLUSTER_PARAMS})
    return Portfolio(path=path, name=d["name"], currency=d["currency"],
                     horizon_months=int(d["horizon_months"]), discount_rate=float(d["discount_rate"]),
                     clusters=clusters, cluster_names=names, labels=labels,
                     sources=d.get("sources") or {}, cluster_sources=sources)


def scenario_from_dict(d: dict, pf: Portfolio, path: str = "<config>") -> Scenario:
    """A grid scenario back from Scenario.to_dict()."""
    axes = []
    for a in d["axes"]:
        clusters = a.get("clusters")
        mask = None if clusters is None else tuple(n in clusters for n in pf.cluster_names)
        spec = AxisSpec(name=a["name"], targets=tuple(a["targets"]), op=a["op"], cluster_mask=mask)
        axes.append(Axis(a["name"], spec, np.asarray(a["values"], dtype=np.float64), a.get("shock"),
                         a.get("param"), clusters))
    return Scenario(path, d["kind"], d["name"], axes)
