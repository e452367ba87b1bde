"""The portfolio file: its clusters, the defaults they share, the portfolio's terms
(docs/model.md, "Files in brief").

Every parameter of every cluster is resolved (the cluster's own value, else defaults:,
else the model's default) and checked by the rules every file shares (validation.py):
every problem is reported as `file: key.path: reason`, all of them at once, before any
work starts. Values the model takes but that lie far outside realistic ranges
(validation.PLAUSIBLE) are kept, with a warning in the same form (Portfolio.warnings).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ValidationError, create_model

from .items import LIST_FIELDS, Items, check_defaults, industry_labels, item_arrays, items_from_dict, resolve_items
from .kernels.params import CLUSTER_PARAMS, HORIZON_KEY, MODEL_VERSION, MODEL_VERSION_2, PARAMS, PORTFOLIO_PARAMS, Param
from .programmes import (CLUSTER_FIELDS, GROUPS, PlatformModel, Scalars, check_default_scalars, groups_in_use,
                         platform_from_dict, platform_to_dict, resolve_platform, resolve_scalars, scalar_arrays,
                         scalars_from_dict, scalars_to_dict, warn_late_order)
from .validation import (STRICT, ConfigError, check_value, implausible, lenient, num_text, pydantic_problems,
                         read_document, structure_first)

LABELS = ("gpu", "region", "gpu_market", "power_market")
REQUIRED = tuple(p.name for p in CLUSTER_PARAMS if p.default is None and p.name != "reserved_price")


# ------------------------------------------------------------------ pydantic models


def _param_fields() -> dict[str, Any]:
    # Type float with a None default: absent means "use the default", an explicit
    # null is refused (only client_loss_month: null, meaning never, is allowed).
    fields: dict[str, Any] = {p.name: (float, None) for p in CLUSTER_PARAMS}
    return fields


DefaultsModel = create_model(
    "DefaultsModel",
    __config__=STRICT,
    **_param_fields(),
    **LIST_FIELDS,
    **CLUSTER_FIELDS,
    **{k: (Optional[str], None) for k in ("gpu", "region")},
)
ClusterModel = create_model(
    "ClusterModel",
    __config__=STRICT,
    name=(str, ...),
    sources=(Optional[dict[str, str]], None),
    **_param_fields(),
    **LIST_FIELDS,
    **CLUSTER_FIELDS,
    **{k: (Optional[str], None) for k in LABELS},
)


class PortfolioBlock(BaseModel):
    model_config = STRICT
    name: str = "portfolio"
    horizon_months: float = None  # type: ignore[assignment]
    discount_rate: float = None  # type: ignore[assignment]
    currency: str = "USD"
    sources: Optional[dict[str, str]] = None
    platform: PlatformModel = None  # type: ignore[valid-type]


class PortfolioFile(BaseModel):
    model_config = STRICT
    portfolio: PortfolioBlock = PortfolioBlock()
    defaults: Optional[DefaultsModel] = None  # type: ignore[valid-type]
    clusters: list[ClusterModel]  # type: ignore[valid-type]


# ---------------------------------------------------------------------- resolved


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
    # version 2: each cluster's contracts and segments (Items(): implied by its version 1 keys)
    items: list[Items] = field(default_factory=list)
    # the kernels carry item arrays: some cluster gives items, or a scenario moves them;
    # any version 2 feature in use makes a portfolio itemised (its files are version 2)
    itemised: bool = False
    # version 2: each cluster's order month, capex decline and optimization programme
    # (Scalars(): none), the portfolio's platform layer (None: none)
    scalars: list[Scalars] = field(default_factory=list)
    platform: Scalars | None = None
    # the groups of version 2 scalars the kernels carry (programmes.GROUPS): those the
    # file uses, and those a scenario moves (use)
    groups: set[str] = field(default_factory=set)

    def __post_init__(self):
        if not self.items:
            self.items = [Items() for _ in self.clusters]
        if not self.scalars:
            self.scalars = [Scalars() for _ in self.clusters]
        self.groups = set(self.groups) | groups_in_use(self.scalars, self.platform)
        self.itemised = self.itemised or any(it.explicit for it in self.items) or bool(self.groups)

    def use(self, group: str) -> None:
        """Carry a group of version 2 scalars (programmes.GROUPS) that the file may not
        use, because a scenario moves it: its arrays hold the model's defaults where the
        file gives nothing, and the portfolio becomes itemised (version 2 files)."""
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r} (groups: {', '.join(GROUPS)})")
        self.groups.add(group)
        self.itemised = True

    @property
    def has_platform(self) -> bool:
        """Whether the kernels carry a platform layer (its revenue: the last industry label)."""
        return "platform" in self.groups

    @property
    def industries(self) -> list[str]:
        """The industry coordinate of its outputs by industry (items.industry_labels, with
        the platform's own label last where it has one)."""
        return industry_labels(self.items, self.has_platform)

    @property
    def model_version(self) -> int:
        """2 where the model's version 2 fields are in use, else 1 (the file attribute)."""
        return MODEL_VERSION_2 if self.itemised else MODEL_VERSION

    def base_arrays(self) -> dict[str, np.ndarray]:
        """Parameter name -> [C] for the kernels; with items, also their arrays [C, K];
        with version 2 scalars, the arrays of each group in use ([C], the platform's [1])."""
        out = {
            p.name: np.array([c[p.name] for c in self.clusters], dtype=np.float64)
            for p in CLUSTER_PARAMS
        }
        if self.itemised:
            out.update(item_arrays(self.items, self.has_platform))
        out.update(scalar_arrays(self.scalars, self.platform, self.groups))
        if self.groups & {"order", "platform"}:  # months a shock clips to the horizon at once
            out[HORIZON_KEY] = np.array([float(self.horizon_months)])
        return out

    def to_dict(self) -> dict:
        cited = self.cluster_sources or [{} for _ in self.clusters]
        out = {
            "name": self.name,
            "currency": self.currency,
            "horizon_months": self.horizon_months,
            "discount_rate": self.discount_rate,
            "sources": self.sources,
            "clusters": [
                {"name": n, **lab, **{k: (None if math.isinf(v) else v) for k, v in c.items()},
                 **it.to_dict(), **scalars_to_dict(sc), "sources": src}
                for n, lab, c, it, sc, src in zip(self.cluster_names, self.labels, self.clusters, self.items,
                                                  self.scalars, cited)
            ],
        }
        if self.itemised:  # a version 1 portfolio's JSON stays as it was
            out["itemised"] = True
        if self.platform is not None:
            out["platform"] = platform_to_dict(self.platform)
        if self.groups:
            out["groups"] = sorted(self.groups)
        return out


def portfolio_from_dict(d: dict, path: str = "<config>") -> Portfolio:
    """The resolved portfolio back from Portfolio.to_dict() (a result file's config)."""
    clusters, names, labels, sources, items, scalars = [], [], [], [], [], []
    for c in d["clusters"]:
        items.append(items_from_dict(c))
        scalars.append(scalars_from_dict(c))
        names.append(c["name"])
        labels.append({k: c[k] for k in LABELS if k in c})
        sources.append(c.get("sources") or {})
        clusters.append({p.name: (math.inf if c.get(p.name) is None else float(c[p.name]))
                         for p in CLUSTER_PARAMS})
    return Portfolio(path=path, name=d["name"], currency=d["currency"],
                     horizon_months=int(d["horizon_months"]), discount_rate=float(d["discount_rate"]),
                     clusters=clusters, cluster_names=names, labels=labels,
                     sources=d.get("sources") or {}, cluster_sources=sources, items=items,
                     itemised=bool(d.get("itemised")), scalars=scalars,
                     platform=platform_from_dict(d.get("platform")), groups=set(d.get("groups", ())))


def config_json(portfolio: Portfolio, scenario) -> tuple[str, str]:
    """The resolved configuration, the portfolio and a scenario of any kind (each by its
    to_dict()), as canonical JSON, and its SHA-256."""
    doc = {"portfolio": portfolio.to_dict(), "scenario": scenario.to_dict()}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text, hashlib.sha256(text.encode()).hexdigest()


# -------------------------------------------------------------------------- file


@dataclass
class _Findings:
    """A file's problems and warnings so far, each `file: key.path: reason`."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, at: str, reason: str) -> None:
        self.problems.append(f"{self.path}: {at}: {reason}")

    def warn(self, at: str, reason: str) -> None:
        """A warning, given once: a value in defaults: that several clusters take is one."""
        line = f"{self.path}: {at}: {reason}"
        if line not in self.warnings:
            self.warnings.append(line)

    def check(self, at: str, spec: Param, value: float, given: bool = True) -> None:
        """A value out of range is a problem; one given in the file (not a default) that
        looks unrealistic (PLAUSIBLE) a warning."""
        why = check_value(spec, value)
        if why:
            self.problem(at, why)
        elif given:
            odd = implausible(spec.name, value)
            if odd:
                self.warn(at, odd)


def load_portfolio(path: str | Path) -> Portfolio:
    """The portfolio in `path`, every parameter of every cluster resolved; ConfigError
    with every problem of the file, the unrealistic values in Portfolio.warnings."""
    path = Path(path)
    pb, dm, cms, structure = _read_portfolio(path)
    found = _Findings(path)
    horizon = 60.0 if pb.horizon_months is None else pb.horizon_months
    rate = 0.10 if pb.discount_rate is None else pb.discount_rate
    for key, value in (("horizon_months", horizon), ("discount_rate", rate)):
        found.check(f"portfolio.{key}", PORTFOLIO_PARAMS[key], value, given=getattr(pb, key) is not None)
    defaults = dm.model_dump(exclude_none=True) if dm else {}
    for key, value in defaults.items():
        if key in PARAMS:
            found.check(f"defaults.{key}", PARAMS[key], value)
    check_defaults(defaults, found)
    check_default_scalars(defaults, found, horizon)
    platform = resolve_platform(pb.platform.model_dump(exclude_none=True) if pb.platform else None, found, horizon)
    if cms is not None and not cms:
        found.problem("clusters", "must list at least one cluster")
    clusters, names, labels, origins, sources, items, scalars = [], [], [], [], [], [], []
    seen: dict[str, int] = {}
    for i, cm in enumerate(cms or []):
        if cm is None:  # not valid on its own: its structure's problems say why
            continue
        where = f"clusters[{i}]"
        raw = cm.model_dump(exclude_none=True)
        _check_name(found, where, raw["name"], seen)
        if platform is not None and raw["name"].strip().lower() == "platform":
            found.problem(f"{where}.name", "'platform' is reserved where the portfolio has a platform "
                          "layer: statements and tables label the platform so; give the cluster another name")
        seen.setdefault(raw["name"], i)
        values, origin = _merge_defaults(raw, defaults)
        own = resolve_items(raw, defaults, where, found, path.parent)
        _check_cluster(found, where, values, origin, horizon, own)
        items.append(own)
        scalars.append(resolve_scalars(raw, defaults, where, found, horizon))
        warn_late_order(found, where, scalars[-1], values["delivery_months"], horizon)
        clusters.append(values)
        names.append(raw["name"])
        labels.append(_labels(raw, defaults))
        origins.append(origin)
        sources.append(raw.get("sources", {}))
    problems = structure_first(path, structure, found.problems)
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
        warnings=found.warnings,
        items=items,
        scalars=scalars,
        platform=platform,
    )


def _read_portfolio(path: Path) -> tuple[PortfolioBlock, Any, list | None, list[str]]:
    """The file's portfolio: block, defaults: and clusters, and its structure's problems.
    Where the whole file does not validate, each part that is valid on its own stands in
    (lenient: its values are still checked), None for one that is not."""
    doc = read_document(path, "portfolio", "keys portfolio, defaults, clusters")
    doc = _nulls_to_absent(doc)  # client_loss_month: null means never (the default)
    try:
        model = PortfolioFile.model_validate(doc)
        return model.portfolio, model.defaults, list(model.clusters), []
    except ValidationError as err:
        raw_clusters = doc.get("clusters")
        return (lenient(PortfolioBlock, doc.get("portfolio", {})) or PortfolioBlock(),
                lenient(DefaultsModel, doc.get("defaults")),
                [lenient(ClusterModel, c) for c in raw_clusters] if isinstance(raw_clusters, list) else None,
                pydantic_problems(path, err, PortfolioFile))


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


def _check_name(found: _Findings, where: str, name: str, seen: dict[str, int]) -> None:
    """A cluster's name: not empty, not an earlier cluster's (`seen`: name -> index), not
    'portfolio' (the word the tables use for the whole)."""
    if not name.strip():
        found.problem(f"{where}.name", "must not be empty")
    if name in seen:
        found.problem(f"{where}.name", f"duplicate cluster name {name!r} (also clusters[{seen[name]}])")
    if name.strip().lower() == "portfolio":
        found.problem(f"{where}.name", "'portfolio' is reserved: tables, CSV and JSON label the whole "
                      "portfolio so; give the cluster another name")


def _merge_defaults(raw: dict, defaults: dict) -> tuple[dict[str, float], dict[str, str]]:
    """One cluster's parameters (`raw`: the cluster's mapping): its own value, else the one
    in defaults:, else the model's default; and where each came from ("cluster",
    "defaults" or "model"). A required parameter given nowhere is left out: _check_cluster
    names it."""
    values: dict[str, float] = {}
    origin: dict[str, str] = {}
    for spec in CLUSTER_PARAMS:
        if spec.name in raw:
            values[spec.name], origin[spec.name] = raw[spec.name], "cluster"
        elif spec.name in defaults:
            values[spec.name], origin[spec.name] = defaults[spec.name], "defaults"
        elif spec.default is not None:
            values[spec.name], origin[spec.name] = spec.default, "model"
    return values, origin


def _check_cluster(found: _Findings, where: str, values: dict[str, float], origin: dict[str, str],
                   horizon: float, items: Items) -> None:
    """One cluster's merged parameters: those it gives itself in range (defaults: are
    checked once, by load_portfolio), every required one given somewhere, a reserved
    price where a reserved share needs one; a delivery at or past the horizon is a
    warning, at the key that sets it."""
    for spec in CLUSTER_PARAMS:
        if origin.get(spec.name) == "cluster":
            found.check(f"{where}.{spec.name}", spec, values[spec.name])
    for key in REQUIRED:
        if key not in values:
            found.problem(f"{where}.{key}", "required key is missing (no default)")
    if origin["reserved_price"] == "model" and values.get("reserved_share", 0.0) > 0 and items.contracts is None:
        found.problem(f"{where}.reserved_price", "required when reserved_share > 0 "
                      f"(reserved_share is {num_text(values['reserved_share'])})")
    delivery = values["delivery_months"]
    if delivery >= horizon and horizon >= 1:
        at = "defaults.delivery_months" if origin["delivery_months"] == "defaults" else f"{where}.delivery_months"
        given = "" if origin["delivery_months"] != "model" else " (the model's default)"
        found.warn(at, f"{num_text(delivery)} months{given} is at or past the horizon "
                   f"({num_text(horizon)} months): the cluster never goes live within it, so it earns "
                   "nothing and its IRR and ROI mean little")


def _labels(raw: dict, defaults: dict) -> dict[str, str]:
    """One cluster's labels: gpu and region fall back to defaults:, each market to the
    cluster's own name (a market of its own)."""
    lab = {k: raw[k] for k in LABELS if k in raw}
    for k in ("gpu", "region"):
        if k not in lab and k in defaults:
            lab[k] = defaults[k]
    lab.setdefault("gpu_market", raw["name"])
    lab.setdefault("power_market", raw["name"])
    return lab
