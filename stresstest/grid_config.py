"""The grid scenario file (`kind: grid`): axes of shocks and parameters, every point of
their product evaluated (docs/model.md, "The grid").

Each axis is a named shock or any parameter with its operation (scale, shift, set),
its values, and optionally the clusters it applies to. Validation follows the rules
every file shares (validation.py): every problem of every axis is reported as
`file: key.path: reason`, all at once, before any work; an axis that sets a parameter
to unrealistic values draws a warning (Scenario.warnings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ValidationError

from .config import Portfolio
from .kernels.params import NAMED_SHOCKS, OPS, PARAMS, PORTFOLIO_PARAMS
from .kernels.shocks import AxisSpec
from .outputs import CLUSTER_DIM, reserved_names
from .validation import (STRICT, ConfigError, check_value, did_you_mean, implausible, lenient, num_text,
                         pydantic_problems, structure_first)

MAX_AXIS_VALUES = 10_000_000
MAX_GRID_POINTS = 2**62  # flat indices are int64 on every backend


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
    problems = structure_first(path, structure, problems)
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


# an axis's problems as (key under the axis, reason): _resolve_axis adds the file and the axis
_Found = list[tuple[str, str]]


def _resolve_axis(path, where, am: AxisModel, pf: Portfolio):
    """The axis, or None and every problem found: the shock or parameter, the values,
    the clusters and the name are checked independently of one another."""
    if (am.shock is None) == (am.param is None):
        targets, op, word, found = None, None, None, [("", "give exactly one of shock: or param:")]
    elif am.shock is not None:
        word = am.shock
        targets, op, found = _shock_target(am)
    else:
        word = am.param
        targets, op, found = _param_target(am)
    values, more = _axis_values(am)
    found += more
    if op == "set" and values is not None:
        found += _set_value_problems(am, targets, values)
    mask, more = _axis_mask(am, pf)
    found += more
    name = am.name if am.name is not None else word  # a shock or parameter names its axis
    if name is not None:
        found += _name_problems(name)
    problems = [f"{path}: {where}{'.' + key if key else ''}: {reason}" for key, reason in found]
    if problems:
        return None, problems
    spec = AxisSpec(name=name, targets=tuple(targets), op=op, cluster_mask=mask)
    return Axis(name, spec, values, am.shock, am.param, am.clusters), problems


def _shock_target(am: AxisModel) -> tuple[tuple[str, ...] | None, str | None, _Found]:
    """A named shock's parameters and operation (NAMED_SHOCKS); an op: may only repeat it."""
    if am.shock not in NAMED_SHOCKS:
        hint = did_you_mean(am.shock, list(NAMED_SHOCKS) + list(PARAMS) + ["discount_rate"])
        if am.shock in PARAMS or am.shock == "discount_rate":
            hint = f"; {am.shock} is a parameter: give it with param: and op:"
        return None, None, [("shock", f"unknown shock {am.shock!r}{hint} (known: {', '.join(NAMED_SHOCKS)}; "
                                      "any parameter can be an axis with param:)")]
    targets, op, _ = NAMED_SHOCKS[am.shock]
    if am.op is not None and am.op != op:
        return targets, op, [("op", f"the shock {am.shock} is always a {op}, got {am.op!r}")]
    return targets, op, []


def _param_target(am: AxisModel) -> tuple[tuple[str, ...] | None, str | None, _Found]:
    """A parameter axis's parameter (any cluster parameter, or discount_rate) and its op:."""
    if am.param == "horizon_months":
        return None, None, [("param", "horizon_months cannot be an axis (it sets the length of every array)")]
    if am.param not in PARAMS and am.param != "discount_rate":
        hint = did_you_mean(am.param, list(PARAMS) + ["discount_rate"])
        if am.param in NAMED_SHOCKS:
            hint = f"; {am.param} is a named shock: give it with shock:"
        return None, None, [("param", f"unknown parameter {am.param!r}{hint}")]
    if am.op is None:
        return None, None, [("op", "a param axis must give op: scale, shift or set")]
    if am.op not in OPS:
        return None, None, [("op", f"must be one of scale, shift, set, got {am.op!r}{did_you_mean(am.op, OPS)}")]
    return (am.param,), am.op, []


def _axis_values(am: AxisModel) -> tuple[np.ndarray | None, _Found]:
    """The axis's values: listed (values:) or evenly spaced (linspace: [start, stop, count])."""
    if (am.values is None) == (am.linspace is None):
        return None, [("", "give exactly one of values: or linspace:")]
    if am.values is not None:
        if not am.values:
            return None, [("values", "must list at least one value")]
        return np.asarray(am.values, dtype=np.float64), []
    ls = am.linspace
    if len(ls) != 3:
        return None, [("linspace", f"must be [start, stop, count], got {len(ls)} numbers")]
    if ls[2] != math.floor(ls[2]) or ls[2] < 1:
        return None, [("linspace", f"count must be a whole number >= 1, got {num_text(ls[2])}")]
    if ls[2] > MAX_AXIS_VALUES:
        return None, [("linspace", f"count must be at most {MAX_AXIS_VALUES:,}, got {num_text(ls[2])}")]
    return np.linspace(ls[0], ls[1], int(ls[2])), []


def _set_value_problems(am: AxisModel, targets: tuple[str, ...], values: np.ndarray) -> _Found:
    """A set axis's values out of range for a parameter they set."""
    key = "values" if am.values is not None else "linspace"
    specs = [PARAMS.get(t) or PORTFOLIO_PARAMS[t] for t in targets]
    found = []
    for k, v in enumerate(values):
        for spec in specs:
            why = check_value(spec, float(v))
            if why:
                found.append((key, f"value {k} for {spec.name}: {why}"))
    return found


def _axis_mask(am: AxisModel, pf: Portfolio) -> tuple[tuple[bool, ...] | None, _Found]:
    """The clusters the axis applies to (clusters:) as a mask over the portfolio's; None
    for all of them."""
    if am.clusters is None:
        return None, []
    if am.param == "discount_rate":
        return None, [("clusters", "discount_rate is a portfolio parameter: clusters: does not apply")]
    if not am.clusters:
        return None, [("clusters", "must list at least one cluster name (leave it out for all clusters)")]
    found = [("clusters", f"unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                          f"(clusters: {', '.join(pf.cluster_names)})")
             for c in am.clusters if c not in pf.cluster_names]
    if len(set(am.clusters)) != len(am.clusters):
        found.append(("clusters", "lists a cluster twice"))
    return tuple(n in am.clusters for n in pf.cluster_names), found


def _name_problems(name: str) -> _Found:
    """An axis's name: a word, and not one the result file uses for something else."""
    found = []
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        found.append(("name", f"must be a non-empty word of letters, digits, _ or -, got {name!r}"))
    reserved = reserved_names()
    if name == CLUSTER_DIM or name.startswith(CLUSTER_DIM + "_"):
        found.append(("name", f"{name!r} is reserved for the cluster dimension and per-cluster outputs"))
    elif name in reserved:
        found.append(("name", f"{name!r} is reserved: in the result file it names {reserved[name]}; "
                              "give the axis another name:"))
    return found
