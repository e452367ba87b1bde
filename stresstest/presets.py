"""Bundled portfolios and scenario files (the package's `scenarios/` data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_PORTFOLIO = "example"
DEFAULT_SCENARIO = "default_grid"


def preset_dir() -> Path:
    return Path(str(resources.files("stresstest.scenarios")))


def list_presets() -> dict[str, Path]:
    """Name (file stem) -> path of every bundled YAML file."""
    return {p.stem: p for p in sorted(preset_dir().glob("*.yaml"))}


def preset_kind(path: Path) -> str:
    """"portfolio" or "scenario", from the file's top-level key."""
    text = path.read_text(encoding="utf-8")
    return "scenario" if "\nscenario:" in "\n" + text else "portfolio"


def resolve(name_or_path: str | None, default: str) -> Path:
    """A path as given when it exists (or looks like a path), else a bundled preset by name."""
    if name_or_path is None:
        return list_presets()[default]
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return p
    presets = list_presets()
    if name_or_path in presets:
        return presets[name_or_path]
    return p  # the loader reports "no such file" naming it


def missing_hint(path: Path) -> str:
    """For a name that is neither a file nor a preset: the closest preset's name, if any."""
    import difflib

    text = str(path)
    if "/" in text or "\\" in text:
        return ""
    bare = Path(text).suffix not in (".yaml", ".yml")
    word = text if bare else Path(text).stem
    match = difflib.get_close_matches(word, list(list_presets()), n=1, cutoff=0.6)
    if match:
        return f" (nor a bundled preset); did you mean {match[0]!r}?"
    return " (nor a bundled preset: stresstest presets lists them)" if bare else ""
