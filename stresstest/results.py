"""What a run hands back: the fields every kind of run shares, once (docs/architecture.md).

Each kind's result (runner.RunResult for a grid, montecarlo.MonteCarloResult,
named_run.NamedResult) adds its own fields to these; the printers and the API read the
shared ones alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Portfolio


@dataclass(kw_only=True)
class Result:
    path: Path  # the result file written
    portfolio: Portfolio
    scenario: Any  # the scenario of the run's kind (its `size` points or paths)
    backend: str  # what computed it, as the run summary says it
    seconds: float  # wall time of the run, compilation and writing included
    config_sha256: str  # of the resolved configuration, as in the file

    @property
    def scm(self) -> int:
        """Scenario-cluster-months evaluated: points (or paths) x clusters x months."""
        return self.scenario.size * len(self.portfolio.clusters) * self.portfolio.horizon_months
