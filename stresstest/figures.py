"""Reports: PNG figures and one self-contained HTML page from a result file.

`make_report(result, out_dir, x=None, y=None, at=None)` reads a result file of any kind
and writes into `out_dir`:

- grid files: heatmaps of the portfolio NPV and IRR over two axes (`x` across, `y` up;
  by default the first two axes with more than one value), every other axis held at
  `at[axis]` or at its neutral value (the coordinate's `neutral` attribute if that value
  is on the axis, else the value nearest to it, else the middle value), in a diverging
  colour map (RdBu, matplotlib's TwoSlopeNorm) white at NPV = 0 and at IRR = discount
  rate, with those contours where the data cross them and a star at the base case
  where it lies in the plane. A grid with one varying axis gets line plots instead;
  a labelled axis (the named scenarios) gets `named_npv.png` and `named_irr.png`, bars
  from the base case to each scenario's value;
- grid files with an axis that moves the clusters' `order_month`, in addition: "when to
  buy", the portfolio NPV and IRR over that axis (across) and the other axis along which
  the NPV moves most (or the other of `x` and `y` where they name the order month), each
  row's best order month ringed (`when_to_buy_npv.png`, `when_to_buy_irr.png`; lines where
  it is the only varying axis), and a table of the best order month by NPV and by IRR;
- grid and named files of a version 2 portfolio (with `revenue_by_industry`), in addition:
  the base case's revenue by industry, a stacked bar per cluster and one for the
  portfolio (`revenue_by_industry.png`), and its table; with a platform layer
  (`platform_npv`), the summary table gives each row's platform NPV and its share of the
  portfolio NPV (n/a where the portfolio NPV is not positive);
- sensitivity files (`run --sensitivities`), in addition: a tornado chart of the 15
  (cluster, parameter) pairs that move the portfolio NPV most for a +-10 % move,
  first order (`npv_per_pct` x 10), at the grid point nearest the base case; step
  parameters (tornado.STEP_PARAMS) marked * "linear estimate unreliable";
- Monte Carlo files: the NPV histogram (needs the per-path NPVs of `--save-paths`) and
  CDF with VaR 95 and CVaR 95 marked (as the terminal gives them, losses, at the NPV
  they come from), the fan chart of the cumulative cash flow, and with
  `--sensitivities` the pathwise changes of mean NPV and CVaR 95 for +1 % of each
  value (`mc_sensitivities.png`);
- breakeven curves (`breakeven --over`): the breakeven value along the axis, per scope;

then `report.html`, which holds the same PNGs as data URIs (base64), so that the page
alone can be mailed or moved: it refers to no other file. Every argument
is checked before anything is written; the files are rendered into a temporary folder
beside `out_dir` and moved into place only when all of them are complete, so a failure
leaves nothing in `out_dir`. Bad arguments raise `ConfigError` naming the file and option.

The file's kind (fig_read.result_kind) picks its builder in `REPORTS`: fig_grid (grids,
sensitivities; the named scenarios' bars in fig_named), fig_montecarlo, fig_breakeven.
Reading and planning are in fig_read, the shared plot helpers in fig_common, the page in
fig_html; this module only checks the output folder, renders and moves it into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from . import fig_breakeven, fig_grid, fig_montecarlo, fig_optimize, rank_report
from .fig_common import DPI
from .fig_html import page
from .fig_read import attr, open_result, provenance, result_kind
from .validation import ConfigError


@dataclass(frozen=True)
class ReportKind:
    """How one kind of result file becomes a report."""

    plan: Callable  # (f, path, kind, x, y, at) -> fig_read.Plan; ConfigError for a bad option
    build: Callable  # (f, path, plan, save, notes) -> {"tables", "captions", ...}; save(fig, name)
    body: Callable  # (the build's answer) -> the HTML body's parts
    title: Callable  # (f) -> the page's title
    done_fields: Callable = lambda plan, res: {}  # what make_report's answer adds for the kind


GRID = ReportKind(fig_grid.plan, fig_grid.build, fig_grid.body, fig_grid.title, fig_grid.done_fields)
REPORTS = {
    "grid": GRID,
    "sensitivities": GRID,
    "montecarlo": ReportKind(fig_montecarlo.plan, fig_montecarlo.build, fig_montecarlo.body, fig_montecarlo.title),
    "breakeven": ReportKind(fig_breakeven.plan, fig_breakeven.build, fig_breakeven.body, fig_breakeven.title),
    "rank": ReportKind(rank_report.plan, rank_report.build, rank_report.body, rank_report.title),
    "optimize": ReportKind(fig_optimize.plan, fig_optimize.build, fig_optimize.body, fig_optimize.title),
}


def _save(fig: Figure, folder: Path, name: str, written: list[str]) -> None:
    try:
        fig.savefig(folder / name, dpi=DPI, format="png")
    finally:
        fig.clear()
    written.append(name)


def make_report(result: str | Path, out_dir: str | Path, x: str | None = None, y: str | None = None,
                at: dict[str, float] | None = None) -> dict:
    """Writes PNGs and report.html into out_dir; returns {"html": path, "figures": [paths...], "tables": {...}}.

    The dict also holds `kind` (grid, sensitivities, montecarlo, breakeven), and for grids
    `x`, `y` (the heatmap's axes, or None), `line` (the axis of line plots, or None),
    `held` ({axis: value} of every other axis) and `when_to_buy` (the same four of the
    "when to buy" figures, or None). Raises ConfigError before writing anything when an
    argument is bad.
    """
    path = Path(result)
    out = Path(out_dir)
    at = dict(at or {})
    if out.exists() and not out.is_dir():
        raise ConfigError([f"{out}: output folder: exists and is not a folder"])
    with open_result(path) as f:
        kind = result_kind(f)
        if kind is None:
            raise ConfigError([(f"{path}: not a stresstest result file (expected a grid, Monte Carlo or "
                                "breakeven result: no npv with config and base, no kind=montecarlo, no breakeven)")])
        report = REPORTS[kind]
        plan = report.plan(f, path, kind, x, y, at)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            written: list[str] = []
            notes: list[str] = []
            res = _render(f, path, kind, report, plan, tmp, written, notes)
            _move_into_place(tmp, out, [*written, "report.html"])
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    done = {"html": out / "report.html", "figures": [out / n for n in written], "tables": res["tables"],
            "kind": kind, "notes": notes}
    done.update(report.done_fields(plan, res))
    return done


def _render(f, path: Path, kind: str, report: ReportKind, plan, folder: Path, written: list[str],
            notes: list[str]) -> dict:
    """The kind's figures and report.html, into `folder`; returns the build's answer."""
    def save(fig: Figure, name: str) -> None:
        _save(fig, folder, name, written)

    res = report.build(f, path, plan, save, notes)
    text = page(report.title(f), provenance(f, path, kind), report.body(res), res["captions"], written, notes,
                attr(f, "config"), folder)
    (folder / "report.html").write_text(text, encoding="utf-8")
    return res


def _move_into_place(tmp: Path, out: Path, names: list[str]) -> None:
    """A new folder appears complete, in one step; into an existing one, file by file."""
    try:
        if out.exists():
            raise FileExistsError(out)
        os.rename(tmp, out)
    except OSError:
        out.mkdir(exist_ok=True)
        for n in names:
            os.replace(tmp / n, out / n)
        tmp.rmdir()
