"""Industry profiles: the defaults an `industry:` label gives a contract or a segment.

MODEL.md, "Industries": a contract or a segment of the on-demand pool may name an
industry, bundled (scenarios/industries/) or a user's profile file, and the profile fills
the fields the item leaves out; the item's own values win, and the model's defaults fill
the rest. A profile file holds one `industry:` block:

    industry:
      description: "Signs long research contracts that renew."
      contract: {term_months: {value: 48, source: "...", assumption: true}}
      segment: {utilization: {value: 0.7, source: "...", assumption: true}}

Every number carries its source, because the four bundled profiles rest on no public
figure: each source says so, gives the claim behind the number and marks it
`assumption: true`, a value to calibrate. A profile may not set a contract's share,
price or loss month, nor a segment's share: those belong to the customer, not its industry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ValidationError, create_model

from .validation import STRICT, ConfigError, check_value, did_you_mean, pydantic_problems, read_yaml
from .kernels.params import CONTRACT_FIELDS, SEGMENT_FIELDS, Param
from .presets import preset_dir

BUNDLED = ("finance", "healthcare", "retail", "logistics")

# Every field of a contract and of a segment with its default and range (the kernels'
# table): "contract" / "segment" -> field -> Param; default None: the item (or, for a
# segment's utilization, its profile) must give it.
FIELDS: dict[str, dict[str, Param]] = {
    "contract": {p.name: p for p in CONTRACT_FIELDS},
    "segment": {p.name: p for p in SEGMENT_FIELDS},
}
# The fields an item always gives itself: a profile describes an industry, not a customer.
OWN_FIELDS = {"contract": ("share", "price", "loss_month"), "segment": ("share",)}
PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(f for f in fields if f not in OWN_FIELDS[kind]) for kind, fields in FIELDS.items()
}


class Sourced(BaseModel):
    """One number of a profile and where it comes from."""

    model_config = STRICT
    value: float
    source: str
    assumption: bool = False


def _section(kind: str):
    return create_model(f"{kind.title()}Defaults", __config__=STRICT,
                        **{f: (Optional[Sourced], None) for f in PROFILE_FIELDS[kind]})


class IndustryBlock(BaseModel):
    model_config = STRICT
    description: str
    contract: Optional[_section("contract")] = None  # type: ignore[valid-type]
    segment: Optional[_section("segment")] = None  # type: ignore[valid-type]


class IndustryFile(BaseModel):
    model_config = STRICT
    industry: IndustryBlock


@dataclass(frozen=True)
class Profile:
    """A loaded profile. `contract` and `segment` map a field to (value, source);
    `assumptions` holds "contract.term_months"-style names of the numbers marked as
    assumptions to calibrate."""

    name: str
    description: str
    contract: dict[str, tuple[float, str]]
    segment: dict[str, tuple[float, str]]
    path: str
    assumptions: frozenset[str]

    def section(self, kind: str) -> dict[str, tuple[float, str]]:
        return self.contract if kind == "contract" else self.segment

    def fields(self) -> list[str]:
        """The fields it sets, as "contract.term_months", "segment.utilization", ..."""
        return [f"{kind}.{f}" for kind in FIELDS for f in self.section(kind)]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "path": self.path,
                **{kind: {f: {"value": v, "source": s, "assumption": f"{kind}.{f}" in self.assumptions}
                          for f, (v, s) in self.section(kind).items()} for kind in FIELDS}}


def industry_dir() -> Path:
    return preset_dir() / "industries"


def load_profile(name_or_path: str, where: str, relative_to: Path | None = None) -> Profile:
    """The bundled profile of that name, or the profile file at that path (relative to
    the folder `relative_to`, the referring file's, when given). `where` is the
    `file: key.path` that names it, for the error about an unknown name or a missing file."""
    path = _locate(name_or_path, where, relative_to)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: (top level): must be a mapping with the key industry"])
    problems, doc = _own_fields_refused(path, doc)
    try:
        block = IndustryFile.model_validate(doc).industry
    except ValidationError as err:
        raise ConfigError(problems + pydantic_problems(path, err, IndustryFile)) from None
    sections: dict[str, dict[str, tuple[float, str]]] = {}
    assumptions = set()
    for kind in FIELDS:
        given = getattr(block, kind)
        sections[kind] = {}
        for field in PROFILE_FIELDS[kind]:
            number = getattr(given, field) if given is not None else None
            if number is None:
                continue
            key = f"{path}: industry.{kind}.{field}"
            why = check_value(FIELDS[kind][field], number.value)
            if why:
                problems.append(f"{key}.value: {why}")
            if not number.source.strip():
                problems.append(f"{key}.source: must say where the number comes from (where no public "
                                "figure exists, say so, give the reason and mark it assumption: true)")
            if number.assumption:
                assumptions.add(f"{kind}.{field}")
            sections[kind][field] = (number.value, number.source.strip())
    if problems:
        raise ConfigError(problems)
    return Profile(path.stem, block.description.strip(), sections["contract"], sections["segment"],
                   str(path), frozenset(assumptions))


def _locate(name_or_path: str, where: str, relative_to: Path | None) -> Path:
    """The file of a bundled name, or the path as given; ConfigError for anything else."""
    if name_or_path in BUNDLED:
        return industry_dir() / f"{name_or_path}.yaml"
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path or "\\" in name_or_path:
        if relative_to is not None and not p.is_absolute():
            p = Path(relative_to) / p
        if not p.is_file():
            raise ConfigError([f"{where}: no industry profile file {str(p)!r}"])
        return p
    raise ConfigError([f"{where}: unknown industry {name_or_path!r}{did_you_mean(name_or_path, BUNDLED)} "
                       f"(bundled: {', '.join(BUNDLED)}; or the path of a profile file, ending in .yaml)"])


def _own_fields_refused(path: Path, doc: dict) -> tuple[list[str], dict]:
    """A problem for each field of the item's own (share, price, loss month) that a
    profile gives, and the document without them (so that they are not also unknown keys)."""
    block = doc.get("industry")
    if not isinstance(block, dict):
        return [], doc
    problems, trimmed = [], dict(block)
    for kind, own in OWN_FIELDS.items():
        section = block.get(kind)
        if isinstance(section, dict):
            problems += [f"{path}: industry.{kind}.{field}: a profile cannot set {field}: every {kind} "
                         "gives its own" for field in own if field in section]
            trimmed[kind] = {f: v for f, v in section.items() if f not in own}
    return problems, {**doc, "industry": trimmed}


def fill(item: dict, kind: str, profile: Profile | None) -> tuple[dict, dict[str, str]]:
    """The contract or segment `item` (kind "contract" or "segment") with every field it
    leaves out taken from `profile`, else from the model's default (FIELDS); a field with
    neither stays absent. Also where each field came from: "file", "profile NAME" or
    "default"."""
    filled = dict(item)
    origins = {k: "file" for k in item}
    defaults = profile.section(kind) if profile is not None else {}
    for field, spec in FIELDS[kind].items():
        if field in item:
            continue
        if field in defaults:
            filled[field] = defaults[field][0]
            origins[field] = f"profile {profile.name}"
        elif spec.default is not None:
            filled[field] = spec.default
            origins[field] = "default"
    return filled, origins


def bundled_table() -> list[dict]:
    """One row per bundled profile: name, description, the fields it sets and its file."""
    rows = []
    for name in BUNDLED:
        p = load_profile(name, "bundled profiles")
        rows.append({"name": p.name, "description": p.description, "fields": p.fields(), "path": p.path})
    return rows
