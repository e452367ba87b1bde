"""Named scenarios: sourced, deterministic shock sets (scenarios/named/) run side by side.

A shock-set file holds one historical or hypothetical event as a list of shocks (the
grid's named shocks or any parameter with scale, shift or set, a version 2 field by
path too: `contracts.anchor.loss_month`, `order_month`, `optimization.energy_saving`,
`platform.users_max`, as a grid axis names it), with the sources
of every number. A scenario file of `kind: named` lists the sets to evaluate; each becomes
one row (and one point of the result file's `scenario` dimension).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ValidationError

from .config import Portfolio
from .grid_config import (PLATFORM_CLUSTERS, is_item_path, is_platform_path, is_scalar_path, item_path_target,
                          resolve_item_path, resolve_scalar_path, scalar_group, scalar_target, scalar_value_problem)
from .kernels.params import ITEM_PARAMS, NAMED_SHOCKS, OPS, PARAMS, V2_SCALARS, named_targets
from .validation import STRICT, ConfigError, pydantic_problems, check_value, did_you_mean, read_yaml


class ShockModel(BaseModel):
    model_config = STRICT
    shock: Optional[str] = None
    param: Optional[str] = None
    op: Optional[str] = None
    value: float
    clusters: Optional[list[str]] = None


class ShockSetBlock(BaseModel):
    model_config = STRICT
    name: str
    title: str
    description: str = ""
    sources: dict[str, str]
    shocks: list[ShockModel]


class ShockSetFile(BaseModel):
    model_config = STRICT
    shockset: ShockSetBlock


class NamedBlock(BaseModel):
    model_config = STRICT
    kind: str
    name: Optional[str] = None
    description: Optional[str] = None
    sources: Optional[dict[str, str]] = None
    sets: list[str]


class NamedFile(BaseModel):
    model_config = STRICT
    scenario: NamedBlock


@dataclass
class Shock:
    word: str  # the shock or parameter name
    targets: tuple[str, ...]
    op: str
    value: float
    clusters: list[str] | None


@dataclass
class ShockSet:
    path: str
    name: str
    title: str
    description: str
    sources: dict[str, str]
    shocks: list[Shock]

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description,
                "sources": self.sources,
                "shocks": [{"word": s.word, "targets": list(s.targets), "op": s.op, "value": s.value,
                            "clusters": s.clusters} for s in self.shocks]}


@dataclass
class NamedScenario:
    path: str
    name: str
    sets: list[ShockSet]
    kind: str = "named"

    @property
    def size(self) -> int:
        return len(self.sets)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "sets": [s.to_dict() for s in self.sets]}


def library_dir() -> Path:
    from .presets import preset_dir

    return preset_dir() / "named"


def list_library() -> dict[str, Path]:
    d = library_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def load_shockset(path: Path, pf: Portfolio | None = None) -> ShockSet:
    """One shock-set file, validated (against a portfolio's clusters and items when given)."""
    path = Path(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top level): must be a mapping with the key shockset"])
    try:
        m = ShockSetFile.model_validate(doc).shockset
    except ValidationError as err:
        raise ConfigError(pydantic_problems(path, err, ShockSetFile)) from None
    problems: list[str] = []
    shocks = []
    for i, s in enumerate(m.shocks):
        where = f"{path}: shockset.shocks[{i}]"
        if (s.shock is None) == (s.param is None):
            problems.append(f"{where}: give exactly one of shock: or param:")
            continue
        if s.shock is not None:
            if s.shock not in NAMED_SHOCKS:
                problems.append(f"{where}.shock: unknown shock {s.shock!r}"
                                f"{did_you_mean(s.shock, NAMED_SHOCKS)} (known: {', '.join(NAMED_SHOCKS)})")
                continue
            op = NAMED_SHOCKS[s.shock][1]
            targets = named_targets(s.shock, pf is not None and pf.itemised)
            if s.op is not None and s.op != op:
                problems.append(f"{where}.op: the shock {s.shock} is always a {op}, got {s.op!r}")
            word = s.shock
        else:
            target, why = _param_target(s.param)
            if why:
                problems.append(f"{where}.param: {why}")
                continue
            if s.op not in OPS:
                problems.append(f"{where}.op: a param shock must give op: scale, shift or set, got {s.op!r}")
                continue
            targets, op, word = (target,), s.op, s.param
            if op == "set":
                if target in V2_SCALARS:  # a month within the horizon, where the portfolio says it
                    why = scalar_value_problem(target, s.value, pf.horizon_months if pf else float("inf"))
                else:
                    why = check_value(ITEM_PARAMS.get(target) or PARAMS[target], s.value)
                if why:
                    problems.append(f"{where}.value: {why}")
        if word not in m.sources:
            problems.append(f"{where}: no entry for {word!r} in shockset.sources (every number is sourced)")
        if pf is not None:
            problems += _cluster_problems(where, s, pf)
        shocks.append(Shock(word, tuple(targets), op, float(s.value), s.clusters))
    if m.name != path.stem:
        problems.append(f"{path}: shockset.name: must be the file's stem {path.stem!r}, got {m.name!r}")
    if problems:
        raise ConfigError(problems)
    return ShockSet(str(path), m.name, m.title, m.description.strip(), dict(m.sources), shocks)


def _param_target(param: str) -> tuple[str | None, str | None]:
    """A param shock's parameter: a cluster parameter, an item field by path (its flow
    array, "contracts.loss_month") or a version 2 scalar; or None and why not."""
    if is_item_path(param):
        return item_path_target(param)
    if is_scalar_path(param):
        return scalar_target(param)
    if param not in PARAMS:
        return None, f"unknown parameter {param!r}{did_you_mean(param, list(PARAMS) + list(V2_SCALARS))}"
    return param, None


def _cluster_problems(where: str, s: ShockModel, pf: Portfolio) -> list[str]:
    """A shock's clusters: each one the portfolio's, none for the platform layer; an item
    path must name an item some selected cluster has (grid_config.resolve_item_path), a
    version 2 scalar what the selection has (resolve_scalar_path: a programme, a platform)."""
    problems = [f"{where}.clusters: unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                f"(clusters: {', '.join(pf.cluster_names)})"
                for c in s.clusters or () if c not in pf.cluster_names]
    if s.clusters is not None and is_platform_path(s.param):
        problems.append(f"{where}.clusters: {PLATFORM_CLUSTERS.format(path=s.param)}")
    mask = _cluster_mask(pf, s.clusters)
    if mask is not None and not any(mask):
        return problems
    for is_path, resolve in ((is_item_path, resolve_item_path), (is_scalar_path, resolve_scalar_path)):
        why = resolve(s.param, pf, mask)[2] if is_path(s.param) else None
        if why:
            problems.append(f"{where}.param: {why}")
    return problems


def _cluster_mask(pf: Portfolio, clusters: list[str] | None) -> tuple[bool, ...] | None:
    return None if clusters is None else tuple(n in clusters for n in pf.cluster_names)


def _masks(pf: Portfolio, sh: Shock) -> tuple[tuple | None, tuple | None]:
    """A shock's cluster mask and item mask: an item path's items, a version 2 scalar's
    clusters (an optimization field: the selected clusters' programmes)."""
    mask = _cluster_mask(pf, sh.clusters)
    if is_item_path(sh.word):
        return mask, resolve_item_path(sh.word, pf, mask)[1]
    if is_scalar_path(sh.word):
        return resolve_scalar_path(sh.word, pf, mask)[1], None
    return mask, None


def load_named(path: Path, doc: dict, pf: Portfolio) -> NamedScenario:
    try:
        block = NamedFile.model_validate(doc).scenario
    except ValidationError as err:
        raise ConfigError(pydantic_problems(path, err, NamedFile)) from None
    if not block.sets:
        raise ConfigError([f"{path}: scenario.sets: must list at least one shock set"])
    lib = list_library()
    sets, problems = [], []
    for i, ref in enumerate(block.sets):
        p = Path(ref)
        if ref in lib:
            p = lib[ref]
        elif not p.is_absolute():
            p = Path(path).parent / ref
        if not p.is_file():
            problems.append(f"{path}: scenario.sets[{i}]: no shock set {ref!r}{did_you_mean(ref, lib)} "
                            f"(library: {', '.join(lib)})")
            continue
        try:
            sets.append(load_shockset(p, pf))
        except ConfigError as err:
            problems += err.problems
    names = [s.name for s in sets]
    for n in set(names):
        if names.count(n) > 1:
            problems.append(f"{path}: scenario.sets: {n!r} is listed twice")
    if problems:
        raise ConfigError(problems)
    _itemise(pf, sets)
    return NamedScenario(str(path), block.name or Path(path).stem, sets)


def _itemise(pf: Portfolio, sets: list[ShockSet]) -> None:
    """A set that names items or version 2 scalars by path makes the portfolio itemised
    (its base arrays carry the items; its files say model_version 2), and the named
    shocks of every set then move what they move where there are items (named_targets);
    a scalar's group of arrays is turned on (Portfolio.use)."""
    shocks = [sh for s in sets for sh in s.shocks]
    was = pf.itemised
    for sh in shocks:
        if is_scalar_path(sh.word):
            pf.use(scalar_group(sh.targets[0]))
        elif is_item_path(sh.word):
            pf.itemised = True
    if pf.itemised and not was:
        for sh in shocks:
            if sh.word in NAMED_SHOCKS:
                sh.targets = named_targets(sh.word, True)


def shocked(pf: Portfolio, sets: list[ShockSet]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters [1 + len(sets), C] (item arrays [1 + len(sets), C, K]; row 0: the base
    case) and the discount rate per row. Each set's shocks are the axes of a one-point
    grid (kernels.shocks.apply_axis_values): in the order listed, version 1 keys before
    item fields, as MODEL.md orders them."""
    from .kernels.shocks import AxisSpec, apply_axis_values

    base = pf.base_arrays()
    rate = np.asarray(pf.discount_rate, dtype=np.float64)
    rows = []
    for s in [None] + list(sets):
        specs, values = [], []
        for sh in s.shocks if s is not None else ():
            specs.append(AxisSpec(sh.word, sh.targets, sh.op, *_masks(pf, sh)))
            values.append(np.asarray([sh.value], dtype=np.float64))
        with np.errstate(all="ignore"):
            p, _ = apply_axis_values(base, rate, tuple(specs), tuple(values))
        rows.append({k: np.broadcast_to(v, (1,) + base[k].shape) for k, v in p.items()})
    params = {k: np.concatenate([r[k] for r in rows]) for k in base}
    return params, np.full(len(rows), pf.discount_rate)
