"""The grid scenario file (`kind: grid`): axes of shocks and parameters, every point of
their product evaluated (docs/model.md, "The grid").

Each axis is a named shock or any parameter with its operation (scale, shift, set),
its values, and optionally the clusters it applies to. A parameter may also be a
version 2 item field named by path (docs/model.md, "Addressing the new fields"):
`contracts.<name>.<field>`, `contracts.*.<field>`, `segments.<name>.<field>` or
`segments.*.<field>` (resolve_item_path), or a version 2 scalar: `order_month`,
`capex_decline`, `optimization.<field>`, `platform.<field>` (resolve_scalar_path).
Validation follows the rules
every file shares (validation.py): every problem of every axis is reported as
`file: key.path: reason`, all at once, before any work; an axis that sets a parameter
to unrealistic values draws a warning (Scenario.warnings).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ValidationError

from .config import Portfolio
from .items import KINDS, SINGULAR, Items, slots
from .kernels.params import (ITEM_FIELDS, ITEM_PARAMS, NAMED_SHOCKS, OPS, PARAMS, PORTFOLIO_PARAMS, V2_SCALARS,
                             named_targets)
from .kernels.shocks import AxisSpec
from .outputs import CLUSTER_DIM, reserved_names
from .programmes import GROUPS, WITHIN_HORIZON
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
        items = resolve_item_path(a["param"], pf, mask)[1] if is_item_path(a.get("param")) else None
        if is_scalar_path(a.get("param")):
            mask = resolve_scalar_path(a["param"], pf, mask)[1]
        spec = AxisSpec(name=a["name"], targets=tuple(a["targets"]), op=a["op"], cluster_mask=mask,
                        item_mask=items)
        axes.append(Axis(a["name"], spec, np.asarray(a["values"], dtype=np.float64), a.get("shock"),
                         a.get("param"), clusters))
    return Scenario(path, d["kind"], d["name"], axes)


def load_grid(path: Path, doc: dict, portfolio: Portfolio, kinds: tuple[str, ...] = ("grid",)) -> "Scenario":
    """A `kind: grid` scenario from its parsed file (loaders.load_scenario reads it and
    picks the loader by kind; an unknown kind comes here and is named against `kinds`).

    An axis on an item path or a version 2 scalar makes the portfolio itemised
    (Portfolio.itemised: its base arrays carry the items, its files say model_version
    2), decided before any axis is built, since the named `utilization` shock then moves
    segments too (named_targets); an axis on a scalar turns on its group of arrays
    (Portfolio.use: an order month axis on a portfolio that orders everything at 0)."""
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
    itemised = portfolio.itemised or any(am is not None and (is_item_path(am.param) or is_scalar_path(am.param))
                                         for am in raw_axes)
    for i, am in enumerate(raw_axes):
        if am is None:  # not valid on its own: its structure's problems say why
            continue
        where = f"scenario.axes[{i}]"
        axis, errs = _resolve_axis(path, where, am, portfolio, itemised)
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
    portfolio.itemised = itemised
    for group in {scalar_group(t) for a in axes for t in a.spec.targets if t in V2_SCALARS}:
        portfolio.use(group)
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


def _resolve_axis(path, where, am: AxisModel, pf: Portfolio, itemised: bool):
    """The axis, or None and every problem found: the shock or parameter, the values,
    the clusters and the name are checked independently of one another. itemised:
    whether the portfolio carries items in this run (load_grid)."""
    items = None
    if (am.shock is None) == (am.param is None):
        targets, op, word, found = None, None, None, [("", "give exactly one of shock: or param:")]
    elif am.shock is not None:
        word = am.shock
        targets, op, found = _shock_target(am, itemised)
    else:
        word = am.param
        targets, op, found = _param_target(am)
    values, more = _axis_values(am)
    found += more
    if op == "set" and values is not None:
        found += _set_value_problems(am, targets, values, pf.horizon_months)
    mask, more = _axis_mask(am, pf)
    found += more
    if targets is not None and is_item_path(am.param):
        items, more = _item_mask_problems(am, pf, mask)
        found += more
    if targets is not None and is_scalar_path(am.param):
        mask, more = _scalar_mask_problems(am, pf, mask)
        found += more
    name = am.name if am.name is not None else word  # a shock or parameter names its axis
    if am.name is None and isinstance(word, str) and "." in word:
        name = path_axis_name(word)
    if name is not None:
        found += _name_problems(name)
    problems = [f"{path}: {where}{'.' + key if key else ''}: {reason}" for key, reason in found]
    if problems:
        return None, problems
    spec = AxisSpec(name=name, targets=tuple(targets), op=op, cluster_mask=mask, item_mask=items)
    return Axis(name, spec, values, am.shock, am.param, am.clusters), problems


def _shock_target(am: AxisModel, itemised: bool) -> tuple[tuple[str, ...] | None, str | None, _Found]:
    """A named shock's parameters (named_targets: with items, `utilization` moves the
    segments too) and operation (NAMED_SHOCKS); an op: may only repeat it."""
    if am.shock not in NAMED_SHOCKS:
        hint = did_you_mean(am.shock, list(NAMED_SHOCKS) + list(PARAMS) + ["discount_rate"])
        if am.shock in PARAMS or am.shock == "discount_rate":
            hint = f"; {am.shock} is a parameter: give it with param: and op:"
        return None, None, [("shock", f"unknown shock {am.shock!r}{hint} (known: {', '.join(NAMED_SHOCKS)}; "
                                      "any parameter can be an axis with param:)")]
    op = NAMED_SHOCKS[am.shock][1]
    targets = named_targets(am.shock, itemised)
    if am.op is not None and am.op != op:
        return targets, op, [("op", f"the shock {am.shock} is always a {op}, got {am.op!r}")]
    return targets, op, []


def _param_target(am: AxisModel) -> tuple[tuple[str, ...] | None, str | None, _Found]:
    """A parameter axis's parameter (any cluster parameter, discount_rate, an item field
    by path: its flow array, "contracts.price", or a version 2 scalar) and its op:."""
    if am.param == "horizon_months":
        return None, None, [("param", "horizon_months cannot be an axis (it sets the length of every array)")]
    if is_item_path(am.param) or is_scalar_path(am.param):
        target, why = (item_path_target if is_item_path(am.param) else scalar_target)(am.param)
        if why:
            return None, None, [("param", why)]
        targets: tuple[str, ...] = (target,)
    elif am.param not in PARAMS and am.param != "discount_rate":
        hint = did_you_mean(am.param, list(PARAMS) + list(V2_SCALARS) + ["discount_rate"])
        if am.param in NAMED_SHOCKS:
            hint = f"; {am.param} is a named shock: give it with shock:"
        return None, None, [("param", f"unknown parameter {am.param!r}{hint}")]
    else:
        targets = (am.param,)
    if am.op is None:
        return None, None, [("op", "a param axis must give op: scale, shift or set")]
    if am.op not in OPS:
        return None, None, [("op", f"must be one of scale, shift, set, got {am.op!r}{did_you_mean(am.op, OPS)}")]
    return targets, am.op, []


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


def _set_value_problems(am: AxisModel, targets: tuple[str, ...], values: np.ndarray, horizon: int) -> _Found:
    """A set axis's values out of range for a parameter they set (an item field: its
    field's range, named by the axis's path; a version 2 scalar: its range and, for a
    month, the horizon: scalar_value_problem)."""
    key = "values" if am.values is not None else "linspace"
    found = []
    for k, v in enumerate(values):
        for t in targets:
            if t in V2_SCALARS:
                label, why = t, scalar_value_problem(t, float(v), horizon)
            else:
                label = am.param if t in ITEM_PARAMS else t
                why = check_value(ITEM_PARAMS.get(t) or PARAMS.get(t) or PORTFOLIO_PARAMS[t], float(v))
            if why:
                found.append((key, f"value {k} for {label}: {why}"))
    return found


def _axis_mask(am: AxisModel, pf: Portfolio) -> tuple[tuple[bool, ...] | None, _Found]:
    """The clusters the axis applies to (clusters:) as a mask over the portfolio's; None
    for all of them."""
    if am.clusters is None:
        return None, []
    if am.param == "discount_rate":
        return None, [("clusters", "discount_rate is a portfolio parameter: clusters: does not apply")]
    if is_platform_path(am.param):
        return None, [("clusters", PLATFORM_CLUSTERS.format(path=am.param))]
    if not am.clusters:
        return None, [("clusters", "must list at least one cluster name (leave it out for all clusters)")]
    found = [("clusters", f"unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                          f"(clusters: {', '.join(pf.cluster_names)})")
             for c in am.clusters if c not in pf.cluster_names]
    if len(set(am.clusters)) != len(am.clusters):
        found.append(("clusters", "lists a cluster twice"))
    return tuple(n in am.clusters for n in pf.cluster_names), found


def _item_mask_problems(am: AxisModel, pf: Portfolio, mask) -> tuple[tuple | None, _Found]:
    """An item path's mask over the selected clusters' item slots (resolve_item_path);
    nothing to check where clusters: selects no known cluster (_axis_mask says why)."""
    if mask is not None and not any(mask):
        return None, []
    _, items, why = resolve_item_path(am.param, pf, mask)
    return items, ([("param", why)] if why else [])


def _scalar_mask_problems(am: AxisModel, pf: Portfolio, mask) -> tuple[tuple | None, _Found]:
    """A version 2 scalar's cluster mask (resolve_scalar_path: an optimization field
    moves the programmes of the selected clusters); nothing to check where clusters:
    selects no known cluster (_axis_mask says why)."""
    if mask is not None and not any(mask):
        return mask, []
    _, mask, why = resolve_scalar_path(am.param, pf, mask)
    return mask, ([("param", why)] if why else [])


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


# ------------------------------------------------------------------ item paths


def is_item_path(word) -> bool:
    """Whether a parameter names a version 2 item field by path (contracts.<name>.<field>,
    segments.*.<field>, ...) rather than a version 1 key."""
    return isinstance(word, str) and "." in word and word.partition(".")[0] in KINDS


def item_path_target(word: str) -> tuple[str | None, str | None]:
    """The flow array an item path moves ("contracts.anchor.price" -> "contracts.price"),
    or None and why the path is malformed: no item name, an empty one, an unknown field."""
    kind, _, rest = word.partition(".")
    name, dot, field = rest.rpartition(".")
    single = SINGULAR[kind]
    fields = [t.partition(".")[2] for t in ITEM_PARAMS if t.startswith(kind + ".")]
    shape = f"{kind}.<name>.<field>, or {kind}.*.<field> for every {single}"
    if not dot:
        return None, f"{word!r} names no {single}: give {shape}"
    if not name.strip():
        return None, f"{word!r}: the {single}'s name is empty: give {shape}"
    target = f"{kind}.{field}"
    if target in ITEM_PARAMS:
        return target, None
    if field in (f.name for f in ITEM_FIELDS[kind]):  # a field without a flow array
        return None, (f"{field} shapes only the Monte Carlo paths: a grid axis or a shock cannot move it "
                      f"(fields: {', '.join(fields)})")
    return None, f"unknown field {field!r} of a {single}{did_you_mean(field, fields)} (fields: {', '.join(fields)})"


def _item_slots(items: Items, kind: str, name: str) -> list[int]:
    """The slots of a cluster's items that `name` ("*": all) picks: an implied book's
    anchor and others, an implied pool's one segment only by "*" (Items.names)."""
    names = items.names(kind)
    if name != "*":
        return [names.index(name)] if name in names else []
    count = 1 if kind == "segments" and items.of(kind) is None else len(names)
    return list(range(count))


def resolve_item_path(word: str, pf: Portfolio, cluster_mask: tuple[bool, ...] | None = None):
    """(target, item mask, None) for an item path on the clusters of cluster_mask (None:
    all), or (None, None, why not). The mask holds, per cluster, per item slot of the
    kind (items.slots), True where the path moves the item (AxisSpec.item_mask). A
    path that names an item no selected cluster has is refused, naming the items that
    exist; a cluster that lacks it is left unchanged."""
    target, why = item_path_target(word)
    if why:
        return None, None, why
    kind, _, rest = word.partition(".")
    name, _, field = rest.rpartition(".")
    width = slots(pf.items)[kind]
    chosen = [cluster_mask is None or bool(cluster_mask[c]) for c in range(len(pf.items))]
    rows = []
    for c, items in enumerate(pf.items):
        hits = _item_slots(items, kind, name) if chosen[c] else []
        rows.append(tuple(k in hits for k in range(width)))
    if any(any(r) for r in rows):
        return target, tuple(rows), None
    listed, known = [], []
    for c, items in enumerate(pf.items):
        if not chosen[c]:
            continue
        names = items.names(kind)
        known += names
        if kind == "segments" and items.of(kind) is None:
            listed.append(f"{pf.cluster_names[c]}: one implied segment, reached only by segments.*.{field}")
        else:
            listed.append(f"{pf.cluster_names[c]}: {', '.join(names) or 'none'}")
    which = "no cluster" if cluster_mask is None else "none of the clusters given"
    what = f"has {kind}" if name == "*" else f"has a {SINGULAR[kind]} {name!r}{did_you_mean(name, known)}"
    return None, None, f"{which} {what} ({kind}: {'; '.join(listed)})"


def path_axis_name(word: str) -> str:
    """A path axis's default name, a word the result file can use:
    "contracts.*.price" -> "contracts_all_price"; one the result file reserves takes
    "_axis" ("optimization.cost" -> "optimization_cost_axis", beside the output
    optimization_cost)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", word.replace("*", "all"))
    return name + "_axis" if name in reserved_names() else name


# ------------------------------------------------------------------ version 2 scalars


# The mappings whose fields a path names as <mapping>.<field>: a cluster's optimization
# programme and the portfolio's platform layer (MODEL.md, "Addressing the new fields")
MAPPINGS = ("optimization", "platform")
PLATFORM_CLUSTERS = ("{path} is a field of the portfolio's platform layer, which is one for the whole "
                     "portfolio: clusters: does not apply")


def is_scalar_path(word) -> bool:
    """Whether a parameter names a version 2 scalar (order_month, capex_decline,
    optimization.<field>, platform.<field>: kernels.params.V2_SCALARS) or tries to: a
    mapping's field that does not exist is one too (scalar_target says why)."""
    return isinstance(word, str) and (word in V2_SCALARS or word.partition(".")[0] in MAPPINGS)


def is_platform_path(word) -> bool:
    """Whether a parameter names a field of the platform layer (no clusters: for it)."""
    return is_scalar_path(word) and word.startswith("platform.")


def scalar_target(word: str) -> tuple[str | None, str | None]:
    """The array a version 2 scalar moves (named as the path itself), or None and why
    not: a field the mapping does not have, with the fields it has."""
    if word in V2_SCALARS:
        return word, None
    kind, _, field = word.partition(".")
    fields = [spec.name.partition(".")[2] for spec in GROUPS[kind]]
    what = "an optimization programme" if kind == "optimization" else "the platform layer"
    return None, f"unknown field {field!r} of {what}{did_you_mean(field, fields)} (fields: {', '.join(fields)})"


def scalar_group(target: str) -> str:
    """The group of arrays (programmes.GROUPS, Portfolio.use) that holds a version 2 scalar."""
    return next(group for group, params in GROUPS.items() if any(p.name == target for p in params))


def scalar_value_problem(target: str, value: float, horizon: float) -> str | None:
    """Why a value a scenario sets a version 2 scalar to is refused, or None: out of the
    field's range (whole months for the months), or a month the file must give within
    the horizon (order_month, launch_month) past it."""
    why = check_value(V2_SCALARS[target], value)
    if why is None and target in WITHIN_HORIZON and value > horizon:
        why = (f"must be <= {num_text(horizon)} (the horizon, horizon_months), got {num_text(value)}: "
               "a month past the horizon never comes")
    return why


def resolve_scalar_path(word: str, pf: Portfolio, cluster_mask: tuple[bool, ...] | None = None):
    """(target, cluster mask, None) for a version 2 scalar on the clusters of
    cluster_mask (None: all), or (None, None, why not).

    order_month, capex_decline: every selected cluster. optimization.<field>: the
    programmes of the selected clusters; a cluster without one is left as it is (as an
    item a cluster lacks) and a selection with no programme is refused, naming the
    clusters that run one. platform.<field>: the portfolio's platform layer (mask None),
    refused where the portfolio has none."""
    target, why = scalar_target(word)
    if why:
        return None, None, why
    kind = word.partition(".")[0]
    if kind == "platform":
        if pf.platform is None:
            return None, None, (f"the portfolio {pf.path} has no platform layer: give platform: in its "
                                "portfolio: block to stress one")
        return target, None, None
    if kind != "optimization":
        return target, cluster_mask, None
    mask = tuple((cluster_mask is None or bool(cluster_mask[c])) and s.programme for c, s in enumerate(pf.scalars))
    if any(mask):
        return target, None if all(mask) else mask, None
    running = [n for n, s in zip(pf.cluster_names, pf.scalars) if s.programme]
    which = "no cluster" if cluster_mask is None else "none of the clusters given"
    return None, None, (f"{which} runs an optimization programme (programmes: {', '.join(running) or 'none'}): "
                        "a path moves the programmes there are; give a cluster optimization: in the portfolio "
                        "to add one")
