"""Named scenarios: sourced, deterministic shock sets (scenarios/named/) run side by side.

A shock-set file holds one historical or hypothetical event as a list of shocks (the
grid's named shocks or any parameter with scale, shift or set), with the sources of
every number. A scenario file of `kind: named` lists the sets to evaluate; each becomes
one row (and one point of the result file's `scenario` dimension).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ValidationError

from .config import Portfolio
from .kernels.params import NAMED_SHOCKS, OPS, PARAMS
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
    """One shock-set file, validated (against a portfolio's cluster names when given)."""
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
            targets, op, _ = NAMED_SHOCKS[s.shock]
            if s.op is not None and s.op != op:
                problems.append(f"{where}.op: the shock {s.shock} is always a {op}, got {s.op!r}")
            word = s.shock
        else:
            if s.param not in PARAMS:
                problems.append(f"{where}.param: unknown parameter {s.param!r}{did_you_mean(s.param, PARAMS)}")
                continue
            if s.op not in OPS:
                problems.append(f"{where}.op: a param shock must give op: scale, shift or set, got {s.op!r}")
                continue
            targets, op, word = (s.param,), s.op, s.param
            if op == "set":
                why = check_value(PARAMS[s.param], s.value)
                if why:
                    problems.append(f"{where}.value: {why}")
        if word not in m.sources:
            problems.append(f"{where}: no entry for {word!r} in shockset.sources (every number is sourced)")
        if s.clusters is not None and pf is not None:
            for c in s.clusters:
                if c not in pf.cluster_names:
                    problems.append(f"{where}.clusters: unknown cluster {c!r}{did_you_mean(c, pf.cluster_names)} "
                                    f"(clusters: {', '.join(pf.cluster_names)})")
        shocks.append(Shock(word, tuple(targets), op, float(s.value), s.clusters))
    if m.name != path.stem:
        problems.append(f"{path}: shockset.name: must be the file's stem {path.stem!r}, got {m.name!r}")
    if problems:
        raise ConfigError(problems)
    return ShockSet(str(path), m.name, m.title, m.description.strip(), dict(m.sources), shocks)


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
    return NamedScenario(str(path), block.name or Path(path).stem, sets)


def shocked(pf: Portfolio, sets: list[ShockSet]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters [1 + len(sets), C] (row 0: the base case) and the discount rate per row."""
    from .kernels.shocks import apply_op, clip_param

    base = pf.base_arrays()
    rows = [dict(base)]
    for s in sets:
        p = {k: v.copy() for k, v in base.items()}
        for sh in s.shocks:
            mask = np.array([sh.clusters is None or n in sh.clusters for n in pf.cluster_names])
            for t in sh.targets:
                with np.errstate(all="ignore"):
                    moved = clip_param(np, t, apply_op(np, p[t], sh.op, np.float64(sh.value)))
                p[t] = np.where(mask, moved, p[t])
        rows.append(p)
    params = {k: np.stack([r[k] for r in rows]) for k in base}
    return params, np.full(len(rows), pf.discount_rate)
