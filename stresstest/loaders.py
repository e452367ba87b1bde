"""Scenario files of every kind, found through one table (docs/architecture.md).

A scenario file's `kind` picks its loader here, and nowhere else: a new kind is a
loader in its own module and one line in LOADERS. Every loader takes the file's path,
its parsed document and the portfolio, and raises ConfigError listing every problem.
"""

from __future__ import annotations

from pathlib import Path

from .config import Portfolio
from .grid_config import load_grid
from .mc_config import load_montecarlo
from .named import load_named
from .validation import read_document

LOADERS = {"grid": load_grid, "montecarlo": load_montecarlo, "named": load_named}
KINDS = tuple(LOADERS)


def load_scenario(path: str | Path, portfolio: Portfolio):
    """The scenario in `path`, of whichever kind its file says (grid when it says none)."""
    path = Path(path)
    doc = read_document(path, "scenario", "the key scenario")
    block = doc.get("scenario")
    kind = block.get("kind") if isinstance(block, dict) else None
    loader = LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None or loader is load_grid:
        return load_grid(path, doc, portfolio, KINDS)
    return loader(path, doc, portfolio)
