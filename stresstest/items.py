"""A cluster's version 2 items: its reserved book as named contracts and its on-demand
pool as segments (MODEL.md, "Contracts", "Segments", "Industries").

A cluster that gives neither keeps version 1's single reserved book and single pool,
and its flows are exactly version 1's: its items are then *implied* (the kernels derive
contracts "anchor" and "others" and one segment from its version 1 keys, after the
shocks move those). A cluster's form is decided by its own keys: `contracts:` (or
`segments:`) next to any of the version 1 keys it replaces is refused, naming both; a
default of the other form is ignored for it.

The kernels carry the items as arrays [C, K] (K the most items of any cluster, padding
items with share 0): item_arrays. A label `industry:` fills the fields an item leaves
out from a profile (industries.py) and files its revenue under that label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import create_model

from .industries import FIELDS, OWN_FIELDS, fill, load_profile
from .kernels.params import IMPLIED_CONTRACTS, IMPLIED_KEYS, INDUSTRY_KEYS, ITEM_FIELDS, ITEM_PARAMS
from .validation import STRICT, ConfigError, check_value, num_text

KINDS = ("contracts", "segments")
SINGULAR = {"contracts": "contract", "segments": "segment"}
# The version 1 keys each list replaces (MODEL.md): given with the list on one cluster: refused
REPLACES = {
    "contracts": ("reserved_share", "reserved_price", "reserved_term_months", "renewal_rate",
                  "renewal_discount", "reserved_utilization", "top_client_share", "client_loss_month"),
    "segments": ("utilization_training", "utilization_inference", "inference_share"),
}
UNLABELLED = "unlabelled"
PLATFORM = "platform"  # the platform layer's revenue, the portfolio's last industry label
SHARE_TOLERANCE = 1e-9  # files: sum of contract shares <= 1, of segment shares = 1, within this
# what padding items hold: no share, so they move nothing (loss month: never)
PADDING = {"contracts.term_months": 1.0, "contracts.loss_month": math.inf}


def _item_model(kind: str):
    fields: dict[str, Any] = {"name": (str, ...), "industry": (Optional[str], None),
                              "sources": (Optional[dict[str, str]], None)}
    fields.update({p.name: (Optional[float], None) for p in ITEM_FIELDS[kind]})
    return create_model(f"{SINGULAR[kind].title()}Model", __config__=STRICT, **fields)


ContractModel = _item_model("contracts")
SegmentModel = _item_model("segments")
MODELS = {"contracts": ContractModel, "segments": SegmentModel}
# the pydantic fields a cluster (and defaults:) gains
LIST_FIELDS: dict[str, Any] = {k: (Optional[list[MODELS[k]]], None) for k in KINDS}  # type: ignore[valid-type]


@dataclass
class Items:
    """One cluster's resolved items: kind -> list of {field: value, "name", "industry"}
    (None: implied by its version 1 keys), and where each value came from."""

    contracts: list[dict] | None = None
    segments: list[dict] | None = None
    origins: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict] | None:
        return self.contracts if kind == "contracts" else self.segments

    @property
    def explicit(self) -> bool:
        return self.contracts is not None or self.segments is not None

    def names(self, kind: str) -> list[str]:
        """The names a path may use for the cluster's items of a kind (implied contracts:
        anchor and others; an implied segment has none: only `segments.*` reaches it)."""
        given = self.of(kind)
        if given is not None:
            return [c["name"] for c in given]
        return list(IMPLIED_CONTRACTS) if kind == "contracts" else []

    def to_dict(self) -> dict:
        out = {}
        for kind in KINDS:
            given = self.of(kind)
            if given is not None:
                out[kind] = [{k: (None if isinstance(v, float) and math.isinf(v) else v)
                              for k, v in item.items()} for item in given]
        return out


def items_from_dict(d: dict) -> Items:
    """Items back from Items.to_dict() (a result file's config)."""
    def restore(item: dict) -> dict:
        out = dict(item)
        if "loss_month" in out and out["loss_month"] is None:
            out["loss_month"] = math.inf
        return out

    return Items(**{k: [restore(i) for i in d[k]] for k in KINDS if d.get(k) is not None})


def given_lists(raw: dict) -> dict[str, list[dict]]:
    """The item lists a cluster's (or defaults:') mapping gives, as plain dicts."""
    return {k: raw[k] for k in KINDS if raw.get(k) is not None}


def resolve_items(raw: dict, defaults: dict, where: str, found, relative_to: Path) -> Items:
    """One cluster's items from its own mapping `raw` and defaults:, each value checked.

    found: the file's findings; found.problem(at, reason) records a problem at a
    `clusters[i].contracts[k].share`-style key, found.problems holds whole lines.
    Industry profiles are loaded relative to the portfolio file's folder.
    """
    problem = found.problem
    items = Items()
    for kind in KINDS:
        own_v1 = [k for k in REPLACES[kind] if k in raw]
        if raw.get(kind) is not None:
            if own_v1:
                problem(f"{where}.{kind}", f"given together with {', '.join(own_v1)}, which {kind} "
                        f"replace; give one form: either {kind} or the version 1 keys")
            lst, at = raw[kind], f"{where}.{kind}"
        elif defaults.get(kind) is not None and not own_v1:
            lst, at = defaults[kind], f"defaults.{kind}"
        else:
            continue
        resolved, origins = _resolve_list(kind, lst, at, found, relative_to)
        setattr(items, kind, resolved)
        items.origins[kind] = origins
    return items


def check_defaults(defaults: dict, found) -> None:
    """defaults: may hold either form of each, not both."""
    problem = found.problem
    for kind in KINDS:
        both = [k for k in REPLACES[kind] if k in defaults]
        if defaults.get(kind) is not None and both:
            problem(f"defaults.{kind}", f"given together with {', '.join(both)}, which {kind} replace; "
                    "defaults: may hold one form")


def _resolve_list(kind: str, lst: list[dict], at: str, found, relative_to: Path):
    problem = found.problem
    single = SINGULAR[kind]
    resolved, origins, seen = [], [], {}
    for k, item in enumerate(lst):
        where = f"{at}[{k}]"
        name = item["name"]
        _check_item_name(kind, where, name, seen, problem)
        seen.setdefault(name, k)
        profile = None
        own = {f: v for f, v in item.items() if f in FIELDS[single] and v is not None}
        if item.get("industry"):
            try:
                profile = load_profile(item["industry"], f"{found.path}: {where}.industry", relative_to)
            except ConfigError as err:
                _profile_refused(err, item["industry"], f"{where}.industry", found)
        values, origin = fill(own, single, profile)
        for f, spec in FIELDS[single].items():
            # a field a refused profile might give is not reported missing: its errors say why
            profile_refused = item.get("industry") and profile is None and f not in OWN_FIELDS[single]
            if f not in values and not profile_refused:
                problem(f"{where}.{f}", _missing(single, f, profile))
            elif origin.get(f) == "file":
                why = check_value(spec, values[f])
                if why:
                    problem(f"{where}.{f}", why)
        if kind == "segments" and values.get("share") is not None and values["share"] <= 0 \
                and check_value(FIELDS[single]["share"], values["share"]) is None:
            problem(f"{where}.share", f"must be > 0 (a segment without share is no segment), got "
                    f"{num_text(values['share'])}")
        values["name"] = name
        values["industry"] = profile.name if profile is not None else None
        resolved.append(values)
        origins.append(origin)
    _check_sums(kind, resolved, at, problem)
    return resolved, origins


def _missing(single: str, f: str, profile) -> str:
    """Why a field has no value: the item's own fields come from no profile or default."""
    if f in OWN_FIELDS[single]:
        return f"required key is missing (every {single} gives its own {f}: no industry profile or default does)"
    if profile is None:
        return f"required key is missing (no default, and the {single} names no industry profile to give it)"
    return f"required key is missing (no default, and the industry profile {profile.name} does not give it)"


def _profile_refused(err: ConfigError, industry: str, at: str, found) -> None:
    """A profile that does not load: its problems, once each however many items name it,
    and where a problem lies inside the profile file, a line at the item's key saying so.
    The fields it would have given are not reported missing (the profile's lines say why)."""
    found.problems.extend(p for p in err.problems if p not in found.problems)
    if any(not p.startswith(f"{found.path}: ") for p in err.problems):
        found.problem(at, f"the industry profile {industry!r} is refused (its own errors name its file)")


def _check_item_name(kind: str, where: str, name: str, seen: dict, problem) -> None:
    if not name.strip():
        problem(f"{where}.name", "must not be empty")
    elif any(ch in name for ch in ".*"):
        problem(f"{where}.name", f"{name!r}: a name may not hold '.' or '*' (paths such as "
                f"{kind}.<name>.share use them)")
    if name in seen:
        problem(f"{where}.name", f"duplicate {SINGULAR[kind]} name {name!r} (also {kind}[{seen[name]}]): "
                f"paths such as {kind}.<name>.share must name one")


def _check_sums(kind: str, resolved: list[dict], at: str, problem) -> None:
    shares = [i.get("share") for i in resolved]
    if any(s is None for s in shares):
        return
    total = sum(shares)
    if kind == "contracts" and total > 1.0 + SHARE_TOLERANCE:
        problem(at, f"the contracts' shares sum to {num_text(total)}: more than the whole cluster "
                "(the sum must be <= 1; the rest is the on-demand pool)")
    if kind == "segments":
        if not resolved:
            problem(at, "must list at least one segment (or leave segments out: one implied segment)")
        elif abs(total - 1.0) > SHARE_TOLERANCE:
            problem(at, f"the segments' shares sum to {num_text(total)}; they split the on-demand pool, "
                    "so they must sum to 1")


# ------------------------------------------------------------------ arrays for the kernels


def industry_labels(items: list[Items], platform: bool = False) -> list[str]:
    """The industry coordinate: labels in order of first appearance (clusters in order,
    contracts before segments), then "unlabelled", then "platform" where the portfolio
    has a platform layer (Portfolio.has_platform: the kernels add its revenue to the
    last label; the clusters' rows hold 0 there)."""
    labels: list[str] = []
    for it in items:
        for kind in KINDS:
            for item in it.of(kind) or []:
                if item.get("industry") and item["industry"] not in labels:
                    labels.append(item["industry"])
    return labels + [UNLABELLED] + ([PLATFORM] if platform else [])


def slots(items: list[Items]) -> dict[str, int]:
    """Item slots per kind: the most items of a cluster (an implied book takes 2
    contracts, an implied pool 1 segment), at least 1."""
    out = {}
    for kind in KINDS:
        implied = len(IMPLIED_CONTRACTS) if kind == "contracts" else 1
        out[kind] = max([1] + [len(it.of(kind)) if it.of(kind) is not None else implied for it in items])
    return out


def item_arrays(items: list[Items], platform: bool = False) -> dict[str, np.ndarray]:
    """The kernels' item arrays: "contracts.<field>" [C, K] and "segments.<field>" [C, J]
    (ITEM_PARAMS), the implied flags [C] and the one-hot industries [C, K, I]
    (industry_labels: with a platform, no item has the last label)."""
    n = slots(items)
    labels = industry_labels(items, platform)
    C = len(items)
    out: dict[str, np.ndarray] = {}
    for name in ITEM_PARAMS:
        kind, f = name.split(".")
        arr = np.full((C, n[kind]), PADDING.get(name, 0.0))
        for c, it in enumerate(items):
            for k, item in enumerate(it.of(kind) or []):
                arr[c, k] = item[f]
        out[name] = arr
    for kind, implied_key, industry_key in zip(KINDS, IMPLIED_KEYS, INDUSTRY_KEYS):
        out[implied_key] = np.array([1.0 if it.of(kind) is None else 0.0 for it in items])
        onehot = np.zeros((C, n[kind], len(labels)))
        for c, it in enumerate(items):
            given = it.of(kind)
            count = len(given) if given is not None else (len(IMPLIED_CONTRACTS) if kind == "contracts" else 1)
            for k in range(count):
                label = (given[k].get("industry") if given is not None else None) or UNLABELLED
                onehot[c, k, labels.index(label)] = 1.0
        out[industry_key] = onehot
    return out
