"""Breakeven and reverse stress: the value of one parameter or shock that meets a target.

The target is an output value: npv=V, irr=R or min_dscr=D. An IRR target R is solved
as "NPV at the annual discount rate R equals 0", the same equation without the IRR
solver in the way. The model is scanned on a grid of the bracket to find sign changes,
the one nearest the base value is refined by Newton steps whose derivative comes from
JAX (forward mode), then bisection once a step would leave the cell. The refined value
is re-evaluated by the full model: where that misses the target, the output jumps over
it there (a debt term rounded to whole months, a threshold month, a pole) and the next
sign change is tried. "No breakeven in [a, b]" and "no value meets the target; the
output jumps over it between A and B" are answers, not errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, Portfolio
from .kernels.params import NAMED_SHOCKS, PARAMS
from .kernels.shocks import AxisSpec

TARGETS = ("npv", "irr", "min_dscr")
SHOCK_BRACKETS = {"utilization": (-1.0, 1.0), "price": (0.0, 5.0), "energy": (0.0, 20.0),
                  "obsolescence": (-120.0, 120.0)}
N_SCAN = 401


# A re-evaluated output within this share of the scale of the target (and of the
# outputs at the ends of the refined cell) meets the target; beyond it the solver has
# found a jump of the output over the target, not an answer. An IRR target is checked
# on the equation solved (NPV at the rate R), whose scale is the NPVs at the cell ends.
REL_TOL = 1e-6
MAX_CELLS = 16  # sign changes refined, nearest the base value first, before giving up


@dataclass
class Breakeven:
    scope: str  # "portfolio" or a cluster name
    value: float | None  # None: no value meets the target (status "none" or "jump")
    bracket: tuple[float, float]
    base_value: float
    achieved: float | None  # the output re-evaluated at the breakeven
    iterations: int
    # solved; none: the output does not cross the target in the bracket; jump: it
    # crosses it only by jumping over it (a step parameter, a threshold, a pole)
    status: str = "solved"
    jump: tuple[float, float] | None = None  # status jump: the values either side of the jump
    jump_outputs: tuple[float, float] | None = None  # the output there (full model)

    def to_dict(self) -> dict:
        def clean(x):
            return x if x is None or math.isfinite(x) else None

        return self.__dict__ | {
            "bracket": list(self.bracket), "achieved": None if self.achieved is None else clean(self.achieved),
            "jump": None if self.jump is None else list(self.jump),
            "jump_outputs": None if self.jump_outputs is None else [clean(v) for v in self.jump_outputs]}

    def describe(self, target: str) -> str:
        """One line for the terminal: the value, or why there is none."""
        name = target.split("=")[0]
        if self.status == "jump":
            a, b = distinct_texts(*self.jump)
            oa, ob = distinct_texts(*self.jump_outputs)
            return (f"no value meets the target; the output jumps over it between {a} and {b} "
                    f"({name} {oa} -> {ob}; base {self.base_value:g})")
        if self.value is None:
            return f"no breakeven in [{self.bracket[0]:g}, {self.bracket[1]:g}] (base {self.base_value:g})"
        return f"{self.value:.6g}   (base {self.base_value:g}; re-evaluated {name} = {self.achieved:.6g})"


def distinct_texts(a: float, b: float) -> tuple[str, str]:
    """a and b with the fewest significant digits (6 at least) that tell them apart."""
    for digits in range(6, 18):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb:
            break
    return ta, tb


def parse_target(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    name = name.strip()
    if name not in TARGETS or not value:
        raise ConfigError([f"--target: expected one of {', '.join(t + '=VALUE' for t in TARGETS)}, got {text!r}"])
    try:
        return name, float(value)
    except ValueError:
        raise ConfigError([f"--target: {value!r} is not a number"]) from None


def axis_for(param: str, portfolio: Portfolio, clusters: list[int]) -> tuple[AxisSpec, float, tuple]:
    """The shock that moves `param` (a named shock or a parameter, set), its base value and bracket."""
    mask = tuple(i in clusters for i in range(len(portfolio.clusters)))
    if param in NAMED_SHOCKS:
        targets, op, neutral = NAMED_SHOCKS[param]
        return AxisSpec(param, targets, op, mask), neutral, SHOCK_BRACKETS[param]
    if param not in PARAMS:
        raise ConfigError([f"--param: unknown parameter or shock {param!r}"])
    spec = PARAMS[param]
    base = float(np.mean([portfolio.clusters[c][param] for c in clusters]))
    if not math.isfinite(base):
        base = 0.0
    lo = spec.lo if math.isfinite(spec.lo) else base - 10 * max(abs(base), 1.0)
    hi = spec.hi if math.isfinite(spec.hi) else max(base, lo) + 10 * max(abs(base), 1.0)
    return AxisSpec(param, (param,), "set", mask), base, (lo, hi)


def _output_fn(portfolio: Portfolio, spec: AxisSpec, target: str, level: float, cluster: int | None, xp):
    """f(x) = output(x) - level for x [n], on the array namespace xp (numpy or jax.numpy)."""
    from .kernels.cashflows import cash_flows
    from .kernels.metrics import evaluate, npv
    from .kernels.shocks import apply_axis_values

    base = {k: xp.asarray(v) for k, v in portfolio.base_arrays().items()}
    rate0 = xp.asarray(portfolio.discount_rate)

    def f(x):
        p, r = apply_axis_values(base, rate0, (spec,), (x,))
        n = x.shape[0]
        if target == "min_dscr":
            out = evaluate(p, xp.broadcast_to(r, (n,)), portfolio.horizon_months, equity_clusters=())
            v = out["min_dscr"] if cluster is None else out["cluster_min_dscr"][:, cluster]
            return v - level
        cf = cash_flows(p, portfolio.horizon_months)["cf"]
        cf = xp.broadcast_to(cf, (n,) + cf.shape[1:])
        flows = xp.sum(cf, axis=1) if cluster is None else cf[:, cluster, :]
        disc = xp.broadcast_to(r, (n,)) if target == "npv" else xp.full((n,), level, dtype=x.dtype)
        v = npv(flows, disc)
        return v - level if target == "npv" else v

    return f


def solve(portfolio: Portfolio, param: str, target: str, level: float, *, scope_cluster: int | None,
          shocked: list[int], bracket: tuple[float, float] | None = None, max_iter: int = 60) -> Breakeven:
    """The breakeven of one scope: scan, refine the sign change nearest the base value,
    re-evaluate. A refined value whose re-evaluation misses the target is where the
    output jumps over it; the next sign change is tried (up to MAX_CELLS), and if none
    meets the target the nearest jump is the answer (status "jump")."""
    import array_api_compat.numpy as xnp

    spec, base_value, default_bracket = axis_for(param, portfolio, shocked)
    a, b = bracket or default_bracket
    f_np = _output_fn(portfolio, spec, target, level, scope_cluster, xnp)
    scope = "portfolio" if scope_cluster is None else portfolio.cluster_names[scope_cluster]
    xs = np.linspace(a, b, N_SCAN)
    with np.errstate(all="ignore"):
        fs = f_np(xs)
    sign = np.sign(fs)
    cells = np.nonzero(np.isfinite(fs[:-1]) & np.isfinite(fs[1:]) & (sign[:-1] * sign[1:] <= 0)
                       & (sign[:-1] != 0))[0]
    if cells.size == 0:
        return Breakeven(scope, None, (a, b), base_value, None, 0, status="none")
    mid = 0.5 * (xs[cells] + xs[cells + 1])
    jump = None
    for k in cells[np.argsort(np.abs(mid - base_value), kind="stable")][:MAX_CELLS]:
        x, lo, hi, it = _refine(portfolio, spec, target, level, scope_cluster, f_np, xs, fs, int(k), max_iter)
        achieved = _achieved(portfolio, spec, target, scope_cluster, x)
        if target == "irr":  # the equation solved, NPV at the rate R = 0 (R may not be the only IRR)
            with np.errstate(all="ignore"):
                ok = meets(0.0, float(f_np(np.asarray([x]))[0]), (fs[k], fs[k + 1]))
        else:
            ok = meets(level, achieved, (fs[k] + level, fs[k + 1] + level))
        if ok:
            return Breakeven(scope, float(x), (a, b), base_value, achieved, it)
        if jump is None:
            sides = (lo, hi)
            if spec.op == "set":  # the values the model uses (clipped, a debt term rounded)
                from .kernels.shocks import clip_param

                sides = tuple(float(clip_param(np, param, np.float64(v))) for v in sides)
            outputs = tuple(_achieved(portfolio, spec, target, scope_cluster, v) for v in (lo, hi))
            jump = Breakeven(scope, None, (a, b), base_value, None, it, status="jump",
                             jump=(float(sides[0]), float(sides[1])), jump_outputs=outputs)
    return jump


def meets(level: float, achieved: float, near=()) -> bool:
    """Whether a re-evaluated output meets the target `level`: within REL_TOL of the
    largest of |level| and |near| (the outputs at the ends of the refined scan cell)."""
    if achieved is None or not math.isfinite(achieved):
        return False
    scale = max([abs(level), 1e-300] + [abs(float(v)) for v in near if math.isfinite(v)])
    return abs(achieved - level) <= REL_TOL * scale


def _refine(portfolio, spec, target, level, cluster, f_np, xs, fs, k: int, max_iter: int):
    """Refine the sign change in the scan cell [xs[k], xs[k+1]]: Newton steps with JAX's
    forward-mode derivative while they stay inside the bracket, then bisection (on numpy,
    without a derivative), until the value is met or the bracket is 1e-14 wide.
    Returns (x, lo, hi, iterations), lo and hi the final bracket."""
    lo, hi, f_lo = float(xs[k]), float(xs[k + 1]), float(fs[k])
    if fs[k + 1] == 0:
        return hi, lo, hi, 0
    import jax
    import jax.numpy as jnp

    from . import jax_adapter  # noqa: F401  (float64)

    f_jx = _output_fn(portfolio, spec, target, level, cluster, jnp)

    def value_and_slope(x):
        v, dv = jax.jvp(lambda z: f_jx(z), (jnp.asarray([x]),), (jnp.asarray([1.0]),))
        return float(v[0]), float(dv[0])

    def value(x):
        with np.errstate(all="ignore"):
            return float(f_np(np.asarray([x]))[0]), math.nan

    x = lo - f_lo * (hi - lo) / (fs[k + 1] - f_lo)
    newton = True
    it = 0
    scale = max(abs(level), float(np.nanmax(np.abs(fs))) * 1e-6, 1e-12)
    for it in range(1, max_iter + 1):
        fx, dfx = value_and_slope(x) if newton else value(x)
        if abs(fx) <= 1e-12 * scale or hi - lo <= 1e-14 * max(1.0, abs(x)):
            break
        if np.sign(fx) == np.sign(f_lo):
            lo, f_lo = x, fx
        else:
            hi = x
        step = x - fx / dfx if dfx != 0 else math.nan
        newton = lo < step < hi
        x = step if newton else 0.5 * (lo + hi)
    return float(x), lo, hi, it


def _achieved(portfolio: Portfolio, spec: AxisSpec, target: str, cluster: int | None, x: float) -> float:
    """The target output re-evaluated by the full model at the breakeven (IRR by its solver)."""
    from .kernels.metrics import evaluate
    from .kernels.shocks import apply_axis_values

    p, r = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate), (spec,),
                             (np.asarray([x]),))
    with np.errstate(all="ignore"):
        out = evaluate(p, np.broadcast_to(r, (1,)), portfolio.horizon_months)
    return float(out[target][0] if cluster is None else out["cluster_" + target][0, cluster])


def breakeven(portfolio: Portfolio, param: str, target_text: str, cluster: str | None = None,
              bracket: tuple[float, float] | None = None) -> list[Breakeven]:
    """Portfolio and per-cluster breakevens (or only `cluster`'s)."""
    target, level = parse_target(target_text)
    if cluster is not None and cluster not in portfolio.cluster_names:
        raise ConfigError([f"--cluster: unknown cluster {cluster!r} (clusters: {', '.join(portfolio.cluster_names)})"])
    everyone = list(range(len(portfolio.clusters)))
    out = []
    if cluster is None:
        out.append(solve(portfolio, param, target, level, scope_cluster=None, shocked=everyone, bracket=bracket))
        scopes = everyone
    else:
        scopes = [portfolio.cluster_names.index(cluster)]
    for c in scopes:
        out.append(solve(portfolio, param, target, level, scope_cluster=c, shocked=[c], bracket=bracket))
    return out


def shifted_portfolio(portfolio: Portfolio, axis, value: float) -> Portfolio:
    """The portfolio with one grid axis's shock applied at `value`, as a new base case."""
    import dataclasses

    from .kernels.shocks import apply_axis_values

    p, r = apply_axis_values(portfolio.base_arrays(), np.asarray(portfolio.discount_rate),
                             (axis.spec,), (np.asarray([value]),))
    clusters = [{k: float(np.broadcast_to(v, (1, len(portfolio.clusters)))[0, c]) for k, v in p.items()}
                for c in range(len(portfolio.clusters))]
    return dataclasses.replace(portfolio, clusters=clusters, discount_rate=float(np.reshape(r, (-1,))[0]))


STATUS_CODES = {"solved": 0, "none": 1, "jump": 2}  # the curve file's `status`
# the datasets of a curve file besides its axis (write_curve)
CURVE_NAMES = ("scope", "breakeven", "achieved", "status", "jump_low", "jump_high")
SHOCK_UNITS = {"utilization": "shift of both utilizations", "price": "scale of the on-demand price",
               "energy": "scale of the energy price", "obsolescence": "months (shift of next_gen_month)"}


def _units(param: str | None, target_text: str | None) -> dict:
    """Units of the curve file's datasets: the parameter's (or shock's), the target output's."""
    from .kernels.params import OUTPUT_UNITS

    unit = SHOCK_UNITS.get(param) or (PARAMS[param].unit if param in PARAMS else "")
    target = (target_text or "").partition("=")[0].strip()
    return {"breakeven": unit, "jump_low": unit, "jump_high": unit,
            "achieved": OUTPUT_UNITS.get(target, ""), "status": "1"}


def breakeven_curve(portfolio: Portfolio, scenario, over: str, param: str, target_text: str,
                    cluster: str | None = None, bracket=None) -> dict:
    """Breakevens at each value of one axis of a grid (the other axes neutral).

    value [axis, scope] is NaN where no value meets the target; status says why (none:
    no crossing in the bracket; jump: the output jumps over the target between
    jump_low and jump_high)."""
    axes = {a.name: a for a in scenario.axes}
    if over not in axes:
        raise ConfigError([f"--over: {scenario.path} has no axis {over!r} (axes: {', '.join(axes) or 'none'})"])
    if over in CURVE_NAMES:
        raise ConfigError([f"--over: {scenario.path}: axis {over!r} shares its name with a dataset of the "
                           f"curve file ({', '.join(CURVE_NAMES)}); give the axis another name"])
    axis = axes[over]
    rows = [breakeven(shifted_portfolio(portfolio, axis, float(v)), param, target_text, cluster, bracket)
            for v in axis.values]
    scopes = [r.scope for r in rows[0]]

    def grid(get):
        return np.array([[get(r) for r in row] for row in rows], dtype=np.float64)

    return {"axis": axis, "scopes": scopes, "rows": rows,
            "value": grid(lambda r: np.nan if r.value is None else r.value),
            "achieved": grid(lambda r: np.nan if r.achieved is None else r.achieved),
            "status": np.array([[STATUS_CODES[r.status] for r in row] for row in rows], dtype=np.int8),
            "jump_low": grid(lambda r: np.nan if r.jump is None else r.jump[0]),
            "jump_high": grid(lambda r: np.nan if r.jump is None else r.jump[1])}


def curve_attrs(portfolio: Portfolio, scenario, param: str, target_text: str, over: str,
                cluster: str | None, bracket) -> dict:
    """The curve file's root attributes: a result file's provenance (h5io.provenance: the
    resolved portfolio and scenario as config, its sha256, versions, backend, created),
    kind = "breakeven", and the question asked (param, target, over, cluster, range)."""
    from .config import config_json
    from .h5io import provenance
    from .jax_adapter import device_name

    cfg, sha = config_json(portfolio, scenario)
    extra = {"kind": "breakeven", "param": param, "target": target_text, "over": over,
             "cluster": cluster or "all"}
    if bracket is not None:
        extra["range"] = np.asarray(bracket, dtype=np.float64)
    jax_device = device_name()  # the derivatives; the scans and re-evaluations run on numpy
    device = "cpu" if jax_device == "cpu" else f"cpu (numpy), {jax_device} (jax)"
    return provenance(portfolio, scenario.name, cfg, sha, "numpy+jax", device, np.float64, **extra)


def write_curve(path, curve: dict, attrs: dict) -> Path:
    """HDF5, written under a temporary name and renamed when complete (h5io.AtomicFile):
    breakeven, achieved, status, jump_low and jump_high [axis, scope], with dimension
    scales."""
    import h5py

    from .h5io import AtomicFile, temp_path

    class CurveFile(AtomicFile):
        def __init__(self, path):
            self.path = Path(path)
            self.tmp = temp_path(self.path)
            self.f = h5py.File(self.tmp, "w")

    long_names = {
        "breakeven": ("value", "value of the parameter or shock meeting the target (NaN: none, see status)"),
        "achieved": ("achieved", "target output re-evaluated at the breakeven"),
        "status": ("status", "0 solved, 1 none: no crossing in the bracket, 2 jump: the output jumps "
                             "over the target between jump_low and jump_high"),
        "jump_low": ("jump_low", "status 2: the value just below the jump (as the model uses it)"),
        "jump_high": ("jump_high", "status 2: the value just above the jump (as the model uses it)"),
    }
    with CurveFile(path) as out:
        f = out.f
        for k, v in attrs.items():
            f.attrs[k] = v
        ax = f.create_dataset(curve["axis"].name, data=np.asarray(curve["axis"].values, dtype=np.float64))
        ax.make_scale(curve["axis"].name)
        sc = f.create_dataset("scope", data=np.array(curve["scopes"], dtype=object), dtype=h5py.string_dtype())
        sc.make_scale("scope")
        for name, (key, long_name) in long_names.items():
            ds = f.create_dataset(name, data=curve[key])
            ds.dims[0].attach_scale(ax)
            ds.dims[1].attach_scale(sc)
            ds.attrs["long_name"] = long_name
        units = _units(attrs.get("param"), attrs.get("target"))
        for name, unit in units.items():
            f[name].attrs["units"] = unit
        f["status"].attrs["flag_values"] = np.array(list(STATUS_CODES.values()), dtype=np.int8)
        f["status"].attrs["flag_meanings"] = " ".join(STATUS_CODES)
        return out.commit()
