"""What every view of `stresstest explore` reads: the result file, opened once and read
slice by slice, the run's portfolio and scenario rebuilt from the file's configuration,
the cash-flow statement at a point, the command line that reproduces it, and the
display units and CSV text the views share.

Reads are lazy: a view asks for one selection of one dataset (`Source.read`), which
h5py turns into a read of the HDF5 chunks that hold it; the last few selections are
kept, so that moving back and forth between two slider positions reads nothing again.
Nothing here imports the web libraries (explore.py checks for them first).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .fig_read import attr, open_result, result_kind, strings
from .formats import RATES
from .validation import ConfigError

KEPT_SLICES = 32  # selections kept in memory (each one plane or less)
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"  # a figure's toolbar; save: the view as PNG
NAMED = "named"  # a grid file whose scenario is kind: named (one labelled axis)
PLACEHOLDERS = ("PORTFOLIO.yaml", "SCENARIO.yaml")  # where the run's input files are not known
# the style of the tables (fig_html.table's markup) and the command line, in their panes
TABLE_CSS = ("table{border-collapse:collapse;margin:0.4em 0 1em;font-size:0.85em}"
             "th,td{border:1px solid #ccc;padding:0.2em 0.5em}th{background:#eee;text-align:left}"
             "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
             "pre.command{background:#f3f3f3;padding:0.6em;white-space:pre-wrap;word-break:break-all}")


class Source:
    """One result file, open read-only for as long as the explorer serves it.

    kind: fig_read.result_kind's answer (grid, sensitivities, montecarlo, breakeven,
    rank, optimize), or "named" for a grid of named shock sets. inputs: how the command lines name the
    run's portfolio and scenario files (`Inputs`)."""

    def __init__(self, path: Path, inputs: "Inputs | None" = None):
        self.path = Path(path)
        self.f = open_result(self.path)
        kind = result_kind(self.f)
        if kind is None:
            self.f.close()
            raise ConfigError([f"{self.path}: not a result file explore can show (a grid, sensitivities, "
                               "Monte Carlo, named, breakeven curve, rank or optimize file); stresstest inspect "
                               "says what it is"])
        try:
            self.config = json.loads(attr(self.f, "config") or "{}")
        except ValueError:
            self.config = {}
        scenario_kind = self.config.get("scenario", {}).get("kind")
        self.kind = NAMED if kind == "grid" and scenario_kind == NAMED else kind
        self.currency = str(attr(self.f, "currency", "USD"))
        rate = attr(self.f, "discount_rate")
        self.discount_rate = None if rate is None else float(rate)
        self.inputs = inputs or Inputs()
        self._slices: OrderedDict = OrderedDict()
        self._portfolio = None
        self._scenario = None

    def title(self) -> str:
        words = {"grid": "stress grid", "sensitivities": "stress grid with sensitivities",
                 "montecarlo": "Monte Carlo", NAMED: "named scenarios", "breakeven": "breakeven curve",
                 "rank": "ranked drivers", "optimize": "which mix (optimize)"}
        return (f"{self.path.name}: {words[self.kind]}, portfolio {attr(self.f, 'portfolio', '?')}, "
                f"scenario {attr(self.f, 'scenario', '?')}")

    def clusters(self) -> list[str]:
        return [str(c) for c in strings(self.f["cluster"][()])] if "cluster" in self.f else []

    def read(self, name: str, sel: tuple = ()) -> np.ndarray:
        """Dataset `name` at selection `sel` (indices and slices), as float64; the last
        KEPT_SLICES selections are kept."""
        key = (name, tuple((s.start, s.stop, s.step) if isinstance(s, slice) else int(s) for s in sel))
        if key in self._slices:
            self._slices.move_to_end(key)
            return self._slices[key]
        ds = self.f[name]
        v = np.asarray(ds[sel] if sel else ds[()], dtype=np.float64)
        self._slices[key] = v
        if len(self._slices) > KEPT_SLICES:
            self._slices.popitem(last=False)
        return v

    def units(self, name: str) -> str:
        return str(attr(self.f[name], "units", "")) if name in self.f else ""

    # -------------------------------------------------------- the run's inputs, rebuilt

    def portfolio(self):
        """The run's portfolio, from the file's configuration (as `merge` rebuilds it)."""
        from .config import portfolio_from_dict

        if self._portfolio is None:
            if "portfolio" not in self.config:
                raise ConfigError([f"{self.path}: the file holds no configuration: no statement can be read"])
            self._portfolio = portfolio_from_dict(self.config["portfolio"])
        return self._portfolio

    def scenario(self):
        """The run's grid or named scenario, from the file's configuration."""
        if self._scenario is None:
            d = self.config["scenario"]
            pf = self.portfolio()
            if d.get("kind") == NAMED:
                self._scenario = named_from_dict(d)
            else:
                from .grid_config import scenario_from_dict

                self._scenario = scenario_from_dict(d, pf)
        return self._scenario

    def statement(self, at: list[str]):
        """The monthly cash-flow statement at the grid point `at` (["AXIS=VALUE", ...], as
        `cashflows --at` takes them), of the portfolio, every cluster and the platform."""
        from .statement import compute, resolve_case

        pf = self.portfolio()
        return compute(pf, resolve_case(pf, self.scenario(), at))

    def command(self, at: list[str]) -> tuple[str, str]:
        """The `stresstest cashflows` command line of the statement at `at`, and a note on
        its file names ("" where they are the run's own)."""
        p, s, note = self.inputs.names(self.config, attr(self.f, "config_sha256"))
        words = ["stresstest", "cashflows", p, "-s", s, *(w for a in at for w in ("--at", a))]
        return " ".join(shlex.quote(w) for w in words), note


def named_from_dict(d: dict):
    """A named scenario back from NamedScenario.to_dict() (a result file's config)."""
    from .named import NamedScenario, Shock, ShockSet

    sets = [ShockSet("<config>", s["name"], s["title"], s["description"], s["sources"],
                     [Shock(sh["word"], tuple(sh["targets"]), sh["op"], float(sh["value"]), sh["clusters"])
                      for sh in s["shocks"]]) for s in d["sets"]]
    return NamedScenario("<config>", d["name"], sets)


def at_text(name: str, value) -> str:
    """AXIS=VALUE as `cashflows --at` takes it: a number in its shortest exact form."""
    if isinstance(value, (str, bytes)):
        return f"{name}={value.decode() if isinstance(value, bytes) else value}"
    return f"{name}={float(value)!r}"


class Inputs:
    """The portfolio and scenario files of the run, as the command lines name them.

    Given (explore --portfolio/--scenario), they were checked against the file's
    config_sha256 before the server started (`check`). Not given, the bundled presets
    whose configuration is the file's are named, found at the first command asked for;
    failing that, the placeholders PORTFOLIO.yaml and SCENARIO.yaml, with a note."""

    def __init__(self, portfolio: str | None = None, scenario: str | None = None):
        self.given = (portfolio, scenario)
        self._found: tuple[str, str, str] | None = None

    def check(self, path: Path, config_sha: str | None) -> None:
        """ConfigError unless the given files make the configuration the file was run with."""
        portfolio, scenario = self.given
        if portfolio is None and scenario is None:
            return
        if portfolio is None or scenario is None:
            missing = "--portfolio" if portfolio is None else "--scenario"
            raise ConfigError([f"{missing}: give both --portfolio and --scenario (the run's two input files)"])
        sha = _config_sha(portfolio, scenario)
        if sha != config_sha:
            raise ConfigError([f"--portfolio {portfolio} --scenario {scenario}: not the configuration {path} was "
                               f"run with (config_sha256 {str(sha)[:12]}…, the file's {str(config_sha)[:12]}…)"])

    def names(self, config: dict, config_sha: str | None) -> tuple[str, str, str]:
        if self.given[0] is not None:
            return self.given[0], self.given[1], ""
        if self._found is None:
            self._found = self._presets(config_sha) or (
                *PLACEHOLDERS, f"PORTFOLIO.yaml and SCENARIO.yaml: the run's input files (portfolio "
                               f"{config.get('portfolio', {}).get('name', '?')}, scenario "
                               f"{config.get('scenario', {}).get('name', '?')}); start explore with "
                               "--portfolio and --scenario to have them named here")
        return self._found

    @staticmethod
    def _presets(config_sha: str | None) -> tuple[str, str, str] | None:
        """(portfolio preset, scenario preset, "") whose configuration has the file's SHA-256."""
        from .presets import list_presets, preset_kind

        presets = {n: p for n, p in list_presets().items()}
        kinds = {n: preset_kind(p) for n, p in presets.items()}
        for pn in (n for n, k in kinds.items() if k == "portfolio"):
            for sn in (n for n, k in kinds.items() if k == "scenario"):
                try:
                    if _config_sha(presets[pn], presets[sn]) == config_sha:
                        return pn, sn, ""
                except ConfigError:
                    continue
        return None


def _config_sha(portfolio, scenario) -> str:
    from .config import config_json, load_portfolio
    from .loaders import load_scenario
    from .presets import resolve

    pf = load_portfolio(resolve(str(portfolio), str(portfolio)))
    sc = load_scenario(resolve(str(scenario), str(scenario)), pf)
    return config_json(pf, sc)[1]


# ------------------------------------------------------------------ display units


def display(name: str, units: str, currency: str) -> tuple[float, str]:
    """(factor, unit) of an output on screen: money in millions of the currency, rates
    and ROI in percent, anything else in its file units."""
    key = name.removeprefix("cluster_")
    if units == currency or units == "USD":
        return 1e-6, f"M {currency}"
    if key in RATES or key == "roi":
        return 100.0, "%"
    if key == "payback_months":
        return 1.0, "months"
    return 1.0, units if units not in ("", "1") else ""


def is_money(name: str, units: str, currency: str) -> bool:
    return display(name, units, currency)[1].startswith("M ")


def number(v: float, unit: str) -> str:
    """A value already in display units, with its unit: "-44.1 M USD", "11.9 %"."""
    if not math.isfinite(v):
        return "n/a" if math.isnan(v) else ("never" if unit == "months" and v > 0 else str(v))
    digits = 1 if abs(v) >= 10 or unit.startswith("M ") else 3
    text = f"{v:,.{digits}f}"
    return f"{text} {unit}" if unit else text


def csv_text(header: list[str], rows) -> str:
    """CSV with a header row; numbers in Python's shortest exact form, NaN as empty."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    for row in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float) else v
                    for v in row])
    return out.getvalue()


def download(label: str, filename: str, fn):
    """A button that downloads fn()'s CSV text as `filename`."""
    import panel as pn

    return pn.widgets.FileDownload(callback=lambda: io.StringIO(fn()), filename=filename, label=label,
                                   color="primary", width=300)
