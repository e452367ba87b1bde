"""`stresstest rank`: which uncertain driver of a Monte Carlo scenario matters most.

The inputs are the scenario's: each price, utilization and energy series (its normals
of every month, correlated with the other series as the scenario says) and each event
(its draws); user groups merge several into one. The output (portfolio NPV, IRR, ROI or
equity IRR per path) is ranked three ways (stresstest/gsa.py, docs/decisions.md):
Shapley effects (dependent inputs), Sobol indices of the groups independent of each
other, DGSM bounds from the pathwise gradients. The model at designed inputs is
stresstest/latent.py; this module builds the inputs' law, runs the estimators with a
progress count, and writes the file (kind "rank", an `input` coordinate).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import gsa
from .backends import Backend
from .config import Portfolio
from .latent import OUTPUT_CHOICES, InputMap, LatentModel, degenerate_event, series_volatilities
from .mc_config import MonteCarlo
from .results import Result
from .validation import ConfigError


@dataclass(frozen=True)
class RankSettings:
    """How much work each estimator does (docs/decisions.md: their error)."""

    output: str = "npv"
    permutations: int = 10000
    inner: int = 3
    variance_samples: int = 20000
    sobol_samples: int = 8000
    dgsm_samples: int = 8000
    seed: int | None = None  # None: the scenario's seed
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, members) merged into one input

    def check(self) -> None:
        problems = []
        if self.output not in OUTPUT_CHOICES:
            problems.append(f"--output: must be one of {', '.join(OUTPUT_CHOICES)}, got {self.output!r}")
        for name, lo in (("permutations", 10), ("inner", 2), ("variance_samples", 10), ("sobol_samples", 0),
                         ("dgsm_samples", 0)):
            v = getattr(self, name)
            if v < lo:
                problems.append(f"--{name.replace('_', '-')}: must be at least {lo}, got {v}")
        if problems:
            raise ConfigError(problems)


def parse_group(text: str) -> tuple[str, tuple[str, ...]]:
    """--group NAME=INPUT,INPUT,... -> (NAME, members)."""
    name, eq, rest = text.partition("=")
    members = tuple(m.strip() for m in rest.split(",") if m.strip())
    if not eq or not name.strip() or len(members) < 2:
        raise ConfigError([f"--group {text!r}: write NAME=INPUT,INPUT (two inputs or more; "
                           "`stresstest rank --list-inputs` names them)"])
    return name.strip(), members


def scenario_inputs(mc: MonteCarlo) -> tuple[str, ...]:
    """The scenario's inputs before grouping: its series, then one per event
    ("event/<param>", numbered where two events draw the same parameter)."""
    names = list(mc.series)
    total = Counter(ev.param for ev in mc.events)
    count: Counter = Counter()
    for ev in mc.events:
        count[ev.param] += 1
        names.append(f"event/{ev.param}" + (f"#{count[ev.param]}" if total[ev.param] > 1 else ""))
    return tuple(names)


def list_inputs_text(portfolio_path, scenario_path) -> str:
    """`rank --list-inputs`: the scenario's inputs, one a line, with what each draws."""
    from .runner import load_inputs

    pf, mc = load_inputs(portfolio_path, scenario_path)
    if mc.kind != "montecarlo":
        raise ConfigError([f"{scenario_path}: a {mc.kind} scenario; rank needs a Monte Carlo scenario"])
    names = scenario_inputs(mc)
    n = len(mc.series)
    lines = [f"{mc.name}: {len(names)} inputs ({n} series of monthly innovations, {len(names) - n} events)"]
    width = max(len(x) for x in names) + 2
    for i, name in enumerate(names):
        what = ("its normals, every month, correlated with the other series" if i < n else
                f"{mc.events[i - n].dist} draws" + (", one per cluster" if mc.events[i - n].per_cluster else ""))
        lines.append(f"  {name:<{width}}{what}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Inputs:
    """The inputs after grouping: names, what each holds, and which series and events they
    address (latent.InputMap); `still` names the scenario's inputs that draw nothing (a
    volatility of 0, a law of one value), left out: they explain no variance, and
    conditioning on them would hand shares to inputs that do not move the output."""

    names: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]  # per input: the scenario inputs it holds
    map: InputMap
    still: tuple[str, ...]

    def law(self, mc: MonteCarlo) -> gsa.Law:
        return gsa.Law(self.names, self.map.correlation(mc), self.map.series_input)


def grouped_inputs(mc: MonteCarlo, groups=()) -> Inputs:
    """The scenario's uncertain inputs with each group merged into one, placed where its
    first member was; ConfigError naming an unknown, still or twice-grouped input."""
    raw = scenario_inputs(mc)
    n = len(mc.series)
    moving = [v > 0 for v in series_volatilities(mc.spec)] + [not degenerate_event(ev) for ev in mc.events]
    still = tuple(r for r, m in zip(raw, moving) if not m)
    owner: dict[str, str] = {}
    problems = []
    for name, members in groups:
        if name in raw and name not in members:
            problems.append(f"--group {name}: the name of an input of the scenario; choose another")
        for m in members:
            if m not in raw:
                problems.append(f"--group {name}: no input {m!r} in the scenario (its inputs: {', '.join(raw)})")
            elif m in still:
                problems.append(f"--group {name}: {m!r} draws nothing (a volatility of 0 or a law of one value)")
            elif m in owner:
                problems.append(f"--group {name}: {m!r} is already in group {owner[m]!r}")
            else:
                owner[m] = name
    if not problems and not any(moving):
        problems.append(f"{mc.path}: the scenario draws nothing uncertain (every volatility 0, every event's "
                        "law a single value): there is no spread to explain")
    if problems:
        raise ConfigError(problems)
    names: list[str] = []
    members: dict[str, list[str]] = {}
    for r, m in zip(raw, moving):
        if not m:
            continue
        label = owner.get(r, r)
        if label not in members:
            names.append(label)
            members[label] = []
        members[label].append(r)
    index = {r: names.index(owner.get(r, r)) for r, m in zip(raw, moving) if m}
    coords = tuple(k for k in range(n) if moving[k])
    im = InputMap(coords, tuple(index[raw[k]] for k in coords),
                  tuple(index.get(r, -1) for r in raw[n:]), len(names))
    return Inputs(tuple(names), tuple(tuple(members[x]) for x in names), im, still)


@dataclass(kw_only=True)
class RankResult(Result):
    settings: RankSettings
    inputs: Inputs
    shapley: gsa.ShapleyEffects
    sobol: gsa.SobolIndices | None
    dgsm: gsa.DgsmBounds | None
    dgsm_note: str
    evaluations: int

    def order(self) -> list[int]:
        """The inputs, the largest Shapley effect first."""
        return sorted(range(len(self.inputs.names)), key=lambda i: -self.shapley.effects[i])


class NonFiniteOutput(ConfigError):
    """The ranked output is not finite at some evaluations (a path without an IRR root)."""


@dataclass
class _Checked:
    """The model, its outputs checked finite and counted on the progress bar."""

    model: LatentModel
    what: str
    status: object
    interrupts: object = None  # a progress.Interrupts: a signal stops the run between blocks
    estimator: str = ""

    def __call__(self, design: gsa.Design) -> np.ndarray:
        if self.interrupts is not None:
            self.interrupts.check()
        y = self.model(design)
        self._check(y, design.i1)
        return y

    def gradients(self, key: int, rows: np.ndarray):
        y, g = self.model.gradients(key, rows)
        self._check(y, rows)
        return y, g

    def _check(self, y: np.ndarray, samples: np.ndarray) -> None:
        bad = ~np.isfinite(y)
        if bad.any():
            first = int(np.argmax(bad))
            raise NonFiniteOutput([
                f"{self.what} is not finite at {int(bad.sum()):,} of {y.shape[0]:,} evaluations of the "
                f"{self.estimator} design (the first at its sample {int(samples[first])}): the model leaves it "
                "undefined there (an IRR without a root, an equity IRR without debt; docs/model.md). Rank an "
                "output defined on every path: --output npv or roi"])
        self.status.advance(y.shape[0])


def planned_evaluations(s: RankSettings, law: gsa.Law, gradients: bool) -> int:
    """The evaluations a run makes (its progress count)."""
    groups = len(law.groups())
    sobol = s.sobol_samples * (groups + 2) if groups > 1 else 0
    return s.permutations * law.d * s.inner + s.variance_samples + sobol + (s.dgsm_samples if gradients else 0)


def rank_files(portfolio_path, scenario_path, output, *, settings: RankSettings, backend: str = "auto",
               dtype: str = "float64", overwrite: bool = False, progress: bool = True) -> RankResult:
    """`stresstest rank`: the inputs read and every option checked before any work (a
    scenario that is not a Monte Carlo one, a bad group, an output that may not be
    written: ConfigError); a signal stops the run between blocks of evaluations, no file
    written."""
    from .backends import make_backend
    from .h5io import check_output
    from .progress import Interrupts, Progress
    from .runner import load_inputs

    pf, mc = load_inputs(portfolio_path, scenario_path)
    if mc.kind != "montecarlo":
        raise ConfigError([f"{scenario_path}: a {mc.kind} scenario; rank needs a Monte Carlo scenario "
                           "(kind: montecarlo), whose uncertain inputs it ranks"])
    settings.check()
    grouped_inputs(mc, settings.groups)
    if output is not None:
        check_output(Path(output), overwrite)
    be = make_backend(backend, dtype)
    status = Progress(enabled=progress)
    try:
        with Interrupts() as interrupts:
            return run_rank(pf, mc, be, None if output is None else Path(output), settings, status, interrupts)
    finally:
        status.close()


def run_rank(pf: Portfolio, mc: MonteCarlo, backend: Backend, out: Path | None, settings: RankSettings,
             status, interrupts=None) -> RankResult:
    """Every estimator on the scenario's inputs; the file written to `out` (atomically)
    unless None. status: a progress.Progress; interrupts: a progress.Interrupts."""
    from .config import config_json

    settings.check()
    seed = mc.seed if settings.seed is None else settings.seed
    inputs = grouped_inputs(mc, settings.groups)
    law = inputs.law(mc)
    t0 = time.perf_counter()
    status.phase("compiling the model")
    model = LatentModel(pf, mc, backend, settings.output, inputs.map)
    checked = _Checked(model, settings.output, status, interrupts)
    status.begin(planned_evaluations(settings, law, backend.is_jax), "evaluations")
    checked.estimator = "variance"
    y = gsa.variance_sample(checked, law, settings.variance_samples, seed)
    checked.estimator = "Shapley"
    contrib = gsa.shapley_contributions(checked, law, gsa.permutations(law.d, settings.permutations, seed), seed,
                                        settings.inner)
    shapley = gsa.shapley_effects(contrib, y, seed)
    groups = law.groups()
    sobol = None
    if len(groups) > 1 and settings.sobol_samples:
        checked.estimator = "Sobol"
        sobol = gsa.sobol_indices(checked, law, groups, settings.sobol_samples, seed)
    dgsm, note = None, ""
    if not backend.is_jax:
        note = f"DGSM needs the JAX backend (automatic differentiation); this run used {backend.name}"
    elif settings.dgsm_samples:
        checked.estimator = "DGSM"
        key = gsa.dgsm_stream(seed)
        dgsm = gsa.dgsm_bounds(lambda rows: checked.gradients(key, rows), settings.dgsm_samples, seed)
    cfg, sha = config_json(pf, mc)
    result = RankResult(path=out, portfolio=pf, scenario=mc, backend=backend.describe(),
                        seconds=time.perf_counter() - t0, config_sha256=sha, settings=settings, inputs=inputs,
                        shapley=shapley, sobol=sobol, dgsm=dgsm, dgsm_note=note, evaluations=model.evaluations)
    if out is not None:
        status.phase(f"writing {out}")
        write_rank(out, result, backend, cfg, seed)
    return result


LONG_NAMES = {
    "shapley": "Shapley effect: the share of Var[output] the input explains (dependent inputs; they sum to 1)",
    "shapley_ci": "95 % bootstrap interval of the Shapley effect (over permutations and the variance sample)",
    "dgsm_bound": "DGSM bound: Poincare constant x E[(d output / d latent)^2] / Var[output], an upper bound on "
                  "the total Sobol index of the input's independent latent coordinates (NaN: not applicable)",
    "dgsm_bound_ci": "95 % bootstrap interval of the DGSM bound",
    "sobol_first": "first-order Sobol index of the group (inputs independent of the other groups)",
    "sobol_first_ci": "95 % bootstrap interval of the first-order index",
    "sobol_total": "total Sobol index of the group",
    "sobol_total_ci": "95 % bootstrap interval of the total index",
    "input_group": "the independent group (index on the group axis) the input belongs to",
}


def write_rank(path: Path, r: RankResult, backend: Backend, cfg: str, seed: int) -> Path:
    """HDF5 (atomic): per input the Shapley effect, its interval, the DGSM bound; per
    independent group the Sobol indices; dimension scales input, group, bound."""
    import h5py

    from .h5io import AtomicFile, provenance

    s = r.settings
    names = r.inputs.names
    d = len(names)
    attrs = provenance(r.portfolio, r.scenario.name, cfg, r.config_sha256, backend.name, backend.device,
                       backend.dtype, kind="rank", output=s.output, seed=seed, permutations=s.permutations,
                       inner=s.inner, variance_samples=s.variance_samples, sobol_samples=s.sobol_samples,
                       dgsm_samples=s.dgsm_samples if r.dgsm is not None else 0, evaluations=r.evaluations,
                       seconds=r.seconds, variance=r.shapley.variance, variance_ci=r.shapley.variance_ci,
                       variance_ratio=r.shapley.total, variance_ratio_ci=r.shapley.total_ci, dgsm_note=r.dgsm_note,
                       still_inputs=", ".join(r.inputs.still))
    groups = r.sobol.groups if r.sobol is not None else []
    member_of = np.full(d, -1, dtype=np.int64)
    for g, grp in enumerate(groups):
        member_of[list(grp)] = g
    with AtomicFile(path) as out:
        f = out.f
        for k, v in attrs.items():
            f.attrs[k] = v
        text = h5py.string_dtype()
        scales = {}
        for dim, values in (("input", names), ("bound", ("low", "high")),
                            ("group", tuple(" + ".join(names[i] for i in grp) for grp in groups))):
            ds = f.create_dataset(dim, data=np.array(values, dtype=object), dtype=text)
            ds.make_scale(dim)
            scales[dim] = ds
        f.create_dataset("input_members", data=np.array([", ".join(m) for m in r.inputs.members], dtype=object),
                         dtype=text).dims[0].attach_scale(scales["input"])
        nan = np.full(d, math.nan)
        data = {
            "shapley": (r.shapley.effects, ("input",)),
            "shapley_ci": (r.shapley.ci, ("input", "bound")),
            "dgsm_bound": (r.dgsm.bound if r.dgsm is not None else nan, ("input",)),
            "dgsm_bound_ci": (r.dgsm.ci if r.dgsm is not None else np.full((d, 2), math.nan), ("input", "bound")),
            "input_group": (member_of, ("input",)),
        }
        if r.sobol is not None:
            data.update({"sobol_first": (r.sobol.first, ("group",)), "sobol_first_ci": (r.sobol.first_ci, ("group", "bound")),
                         "sobol_total": (r.sobol.total, ("group",)), "sobol_total_ci": (r.sobol.total_ci, ("group", "bound"))})
        for name, (values, dims) in data.items():
            ds = f.create_dataset(name, data=np.asarray(values))
            for i, dim in enumerate(dims):
                ds.dims[i].attach_scale(scales[dim])
            ds.attrs["long_name"] = LONG_NAMES[name]
        return out.commit()


def rank_rows(r: RankResult) -> list[dict]:
    """The ranked table as plain data, the largest Shapley effect first."""
    groups = r.sobol.groups if r.sobol is not None else []
    alone = {grp[0]: g for g, grp in enumerate(groups) if len(grp) == 1}
    rows = []
    for i in r.order():
        row = {"input": r.inputs.names[i], "members": list(r.inputs.members[i]),
               "shapley": float(r.shapley.effects[i]), "shapley_ci": [float(x) for x in r.shapley.ci[i]],
               "dgsm_bound": None, "dgsm_bound_ci": None, "sobol_first": None, "sobol_total": None}
        if r.dgsm is not None and math.isfinite(r.dgsm.bound[i]):
            row["dgsm_bound"] = float(r.dgsm.bound[i])
            row["dgsm_bound_ci"] = [float(x) for x in r.dgsm.ci[i]]
        if i in alone:
            g = alone[i]
            row["sobol_first"] = float(r.sobol.first[g])
            row["sobol_total"] = float(r.sobol.total[g])
        rows.append(row)
    return rows


def rank_json(r: RankResult) -> dict:
    """Everything `rank --json` prints."""
    groups = []
    if r.sobol is not None:
        for g, grp in enumerate(r.sobol.groups):
            groups.append({"inputs": [r.inputs.names[i] for i in grp], "first": float(r.sobol.first[g]),
                           "first_ci": [float(x) for x in r.sobol.first_ci[g]], "total": float(r.sobol.total[g]),
                           "total_ci": [float(x) for x in r.sobol.total_ci[g]]})
    s = r.settings
    return {"path": None if r.path is None else str(r.path), "portfolio": r.portfolio.name,
            "scenario": r.scenario.name, "output": s.output, "backend": r.backend, "seconds": r.seconds,
            "evaluations": r.evaluations, "variance": r.shapley.variance,
            "variance_ci": [float(x) for x in r.shapley.variance_ci], "variance_ratio": r.shapley.total,
            "variance_ratio_ci": [float(x) for x in r.shapley.total_ci], "inputs": rank_rows(r), "groups": groups,
            "dgsm_note": r.dgsm_note or None, "still_inputs": list(r.inputs.still),
            "settings": {"permutations": s.permutations, "inner": s.inner, "variance_samples": s.variance_samples,
                         "sobol_samples": s.sobol_samples, "dgsm_samples": s.dgsm_samples}}
