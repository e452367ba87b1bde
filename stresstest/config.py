"""Load and validate portfolio and scenario files (MODEL.md, "Files").

Structure (keys, types, finiteness) is checked by pydantic models with unknown
keys forbidden; ranges, whole numbers and cross-references by the parameter table
of the kernels. Every problem is reported as `file: key.path: reason`, all of them
at once, before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .h5io import CLUSTER_DIM, reserved_names
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
        raise ConfigError([f"{path}: no such file"]) from None
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

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _param_fields() -> dict[str, Any]:
    # Type float with a None default: absent means "use the default", an explicit
    # null is refused (only client_loss_month: null, meaning never, is allowed).
    fields: dict[str, Any] = {p.name: (float, None) for p in CLUSTER_PARAMS}
    return fields


ParamsModel = create_model("ParamsModel", __config__=_STRICT, **_param_fields())
DefaultsModel = create_model(
    "DefaultsModel",
    __config__=_STRICT,
    **_param_fields(),
    **{k: (Optional[str], None) for k in ("gpu", "region")},
)
ClusterModel = create_model(
    "ClusterModel",
    __config__=_STRICT,
    name=(str, ...),
    sources=(Optional[dict[str, str]], None),
    **_param_fields(),
    **{k: (Optional[str], None) for k in LABELS},
)


class PortfolioBlock(BaseModel):
    model_config = _STRICT
    name: str = "portfolio"
    horizon_months: float = None  # type: ignore[assignment]
    discount_rate: float = None  # type: ignore[assignment]
    currency: str = "USD"
    sources: Optional[dict[str, str]] = None


class PortfolioFile(BaseModel):
    model_config = _STRICT
    portfolio: PortfolioBlock = PortfolioBlock()
    defaults: Optional[DefaultsModel] = None  # type: ignore[valid-type]
    clusters: list[ClusterModel]  # type: ignore[valid-type]


class AxisModel(BaseModel):
    model_config = _STRICT
    shock: Optional[str] = None
    param: Optional[str] = None
    op: Optional[str] = None
    values: Optional[list[float]] = None
    linspace: Optional[list[float]] = None
    clusters: Optional[list[str]] = None
    name: Optional[str] = None


class ScenarioBlock(BaseModel):
    model_config = _STRICT
    kind: str
    name: Optional[str] = None
    description: Optional[str] = None
    sources: Optional[dict[str, str]] = None
    axes: list[AxisModel] = []


class ScenarioFile(BaseModel):
    model_config = _STRICT
    scenario: ScenarioBlock


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _pydantic_problems(path: Path, err: ValidationError) -> list[str]:
    problems = []
    errors = err.errors()
    # a number field typed int | float (exact integers) reports each branch: keep the float one
    float_locs = {tuple(p for p in e["loc"] if p != "float") for e in errors if "float" in e["loc"]}
    for e in errors:
        if "int" in e["loc"] and tuple(p for p in e["loc"] if p != "int") in float_locs:
            continue
        loc = tuple(p for p in e["loc"] if p not in ("function-after", "list[float]", "str", "float"))
        got = e.get("input")
        kind = e["type"]
        if kind == "extra_forbidden":
            reason = "unknown key"
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


def _num(x: float) -> str:
    return f"{x:g}" if math.isfinite(x) else str(x)


def check_value(spec: Param, value: float) -> str | None:
    """Reason a file value is out of range, or None."""
    if spec.integer and value != math.floor(value):
        return f"must be a whole number, got {_num(value)}"
    if spec.lo_open and value <= spec.lo:
        return f"must be > {_num(spec.lo)}, got {_num(value)}"
    if value < spec.lo:
        return f"must be >= {_num(spec.lo)}, got {_num(value)}"
    if value > spec.hi:
        return f"must be <= {_num(spec.hi)}, got {_num(value)}"
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


def load_portfolio(path: str | Path) -> Portfolio:
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top level): must be a mapping with keys portfolio, defaults, clusters"])
    # client_loss_month: null means never (the default)
    try:
        model = PortfolioFile.model_validate(_nulls_to_absent(doc))
    except ValidationError as err:
        raise ConfigError(_pydantic_problems(path, err)) from None
    problems: list[str] = []
    pb = model.portfolio
    horizon = 60.0 if pb.horizon_months is None else pb.horizon_months
    rate = 0.10 if pb.discount_rate is None else pb.discount_rate
    for key, value in (("horizon_months", horizon), ("discount_rate", rate)):
        why = check_value(PORTFOLIO_PARAMS[key], value)
        if why:
            problems.append(f"{path}: portfolio.{key}: {why}")
    defaults = model.defaults.model_dump(exclude_none=True) if model.defaults else {}
    for key, value in defaults.items():
        if key in PARAMS:
            why = check_value(PARAMS[key], value)
            if why:
                problems.append(f"{path}: defaults.{key}: {why}")
    if not model.clusters:
        problems.append(f"{path}: clusters: must list at least one cluster")
    clusters, names, labels, origins, sources = [], [], [], [], []
    seen: dict[str, int] = {}
    for i, cm in enumerate(model.clusters):
        raw = cm.model_dump(exclude_none=True)
        name = raw.pop("name")
        where = f"clusters[{i}]"
        if not name.strip():
            problems.append(f"{path}: {where}.name: must not be empty")
        if name in seen:
            problems.append(f"{path}: {where}.name: duplicate cluster name {name!r} (also clusters[{seen[name]}])")
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
                    f"(reserved_share is {_num(values['reserved_share'])})"
                )
            origin["reserved_price"] = "model"
        clusters.append(values)
        names.append(name)
        labels.append(lab)
        origins.append(origin)
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

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # exact (Python int): no silent overflow

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "axes": [a.to_dict() for a in self.axes]}


def load_scenario(path: str | Path, portfolio: Portfolio):
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top level): must be a mapping with the key scenario"])
    block = doc.get("scenario")
    if isinstance(block, dict) and block.get("kind") == "montecarlo":
        from .mc_config import load_montecarlo

        return load_montecarlo(path, doc, portfolio)
    if isinstance(block, dict) and block.get("kind") == "named":
        from .named import load_named

        return load_named(path, doc, portfolio)
    try:
        model = ScenarioFile.model_validate(doc)
    except ValidationError as err:
        raise ConfigError(_pydantic_problems(path, err)) from None
    sb = model.scenario
    problems: list[str] = []
    if sb.kind != "grid":
        problems.append(f"{path}: scenario.kind: unknown kind {sb.kind!r} (this version runs: grid, montecarlo, named)")
    axes: list[Axis] = []
    names: dict[str, int] = {}
    for i, am in enumerate(sb.axes):
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
    size = math.prod(len(a.values) for a in axes)
    if not problems and size > MAX_GRID_POINTS:
        problems.append(f"{path}: scenario.axes: the grid has {size:.3g} points, more than the "
                        f"{MAX_GRID_POINTS:.0e} this version can index; split it into several files")
    if problems:
        raise ConfigError(problems)
    return Scenario(str(path), sb.kind, sb.name or path.stem, axes)


def _resolve_axis(path, where, am: AxisModel, pf: Portfolio):
    problems: list[str] = []

    def bad(key, reason):
        problems.append(f"{path}: {where}{'.' + key if key else ''}: {reason}")

    if (am.shock is None) == (am.param is None):
        bad("", "give exactly one of shock: or param:")
        return None, problems
    if am.shock is not None:
        if am.shock not in NAMED_SHOCKS:
            bad("shock", f"unknown shock {am.shock!r} (known: {', '.join(NAMED_SHOCKS)}; "
                "any parameter can be an axis with param:)")
            return None, problems
        targets, op, _ = NAMED_SHOCKS[am.shock]
        if am.op is not None and am.op != op:
            bad("op", f"the shock {am.shock} is always a {op}, got {am.op!r}")
        word = am.shock
    else:
        word = am.param
        if am.param == "horizon_months":
            bad("param", "horizon_months cannot be an axis (it sets the length of every array)")
            return None, problems
        if am.param not in PARAMS and am.param != "discount_rate":
            bad("param", f"unknown parameter {am.param!r}")
            return None, problems
        if am.op is None:
            bad("op", "a param axis must give op: scale, shift or set")
            return None, problems
        if am.op not in OPS:
            bad("op", f"must be one of scale, shift, set, got {am.op!r}")
            return None, problems
        targets, op = (am.param,), am.op
    # values
    if (am.values is None) == (am.linspace is None):
        bad("", "give exactly one of values: or linspace:")
        return None, problems
    if am.values is not None:
        if not am.values:
            bad("values", "must list at least one value")
            return None, problems
        values = np.asarray(am.values, dtype=np.float64)
    else:
        ls = am.linspace
        if len(ls) != 3:
            bad("linspace", f"must be [start, stop, count], got {len(ls)} numbers")
            return None, problems
        count = ls[2]
        if count != math.floor(count) or count < 1:
            bad("linspace", f"count must be a whole number >= 1, got {_num(count)}")
            return None, problems
        if count > MAX_AXIS_VALUES:
            bad("linspace", f"count must be at most {MAX_AXIS_VALUES:,}, got {_num(count)}")
            return None, problems
        values = np.linspace(ls[0], ls[1], int(count))
    if op == "set":
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
                    bad("clusters", f"unknown cluster {c!r} (clusters: {', '.join(pf.cluster_names)})")
            if len(set(am.clusters)) != len(am.clusters):
                bad("clusters", "lists a cluster twice")
            mask = tuple(n in am.clusters for n in pf.cluster_names)
    name = am.name if am.name is not None else word
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
