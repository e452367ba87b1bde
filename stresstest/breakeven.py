"""Breakeven and reverse stress: the value of one parameter or shock that meets a target.

The target is an output value: npv=V, irr=R or min_dscr=D. An IRR target R is solved
as "NPV at the annual discount rate R equals 0", the same equation without the IRR
solver in the way. The model is scanned on a grid of the bracket to find sign changes,
the one nearest the base value is refined by Newton steps whose derivative comes from
JAX (forward mode) and bisection whenever a step would leave the cell. "No breakeven
in [a, b]" is an answer, not an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import ConfigError, Portfolio
from .kernels.params import NAMED_SHOCKS, PARAMS
from .kernels.shocks import AxisSpec

TARGETS = ("npv", "irr", "min_dscr")
SHOCK_BRACKETS = {"utilization": (-1.0, 1.0), "price": (0.0, 5.0), "energy": (0.0, 20.0),
                  "obsolescence": (-120.0, 120.0)}
N_SCAN = 401


@dataclass
class Breakeven:
    scope: str  # "portfolio" or a cluster name
    value: float | None  # None: no breakeven in the bracket
    bracket: tuple[float, float]
    base_value: float
    achieved: float | None  # the output re-evaluated at the breakeven
    iterations: int

    def to_dict(self) -> dict:
        return self.__dict__ | {"bracket": list(self.bracket)}


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
    import array_api_compat.numpy as xnp
    import jax
    import jax.numpy as jnp

    from . import jax_adapter  # noqa: F401  (float64)

    spec, base_value, default_bracket = axis_for(param, portfolio, shocked)
    a, b = bracket or default_bracket
    f_np = _output_fn(portfolio, spec, target, level, scope_cluster, xnp)
    f_jx = _output_fn(portfolio, spec, target, level, scope_cluster, jnp)
    scope = "portfolio" if scope_cluster is None else portfolio.cluster_names[scope_cluster]
    xs = np.linspace(a, b, N_SCAN)
    with np.errstate(all="ignore"):
        fs = f_np(xs)
    sign = np.sign(fs)
    cells = np.nonzero(np.isfinite(fs[:-1]) & np.isfinite(fs[1:]) & (sign[:-1] * sign[1:] <= 0)
                       & (sign[:-1] != 0))[0]
    if cells.size == 0:
        return Breakeven(scope, None, (a, b), base_value, None, 0)
    mid = 0.5 * (xs[cells] + xs[cells + 1])
    k = int(cells[np.argmin(np.abs(mid - base_value))])
    lo, hi, f_lo = xs[k], xs[k + 1], fs[k]
    if fs[k + 1] == 0:
        x = float(xs[k + 1])
        return Breakeven(scope, x, (a, b), base_value, _achieved(portfolio, spec, target, scope_cluster, x), 0)

    def value_and_slope(x):
        v, dv = jax.jvp(lambda z: f_jx(z), (jnp.asarray([x]),), (jnp.asarray([1.0]),))
        return float(v[0]), float(dv[0])

    x = lo - f_lo * (hi - lo) / (fs[k + 1] - f_lo)
    it = 0
    scale = max(abs(level), float(np.nanmax(np.abs(fs))) * 1e-6, 1e-12)
    for it in range(1, max_iter + 1):
        fx, dfx = value_and_slope(x)
        if abs(fx) <= 1e-12 * scale or hi - lo <= 1e-14 * max(1.0, abs(x)):
            break
        if np.sign(fx) == np.sign(f_lo):
            lo, f_lo = x, fx
        else:
            hi = x
        step = x - fx / dfx if dfx != 0 else math.nan
        x = step if lo < step < hi else 0.5 * (lo + hi)
    return Breakeven(scope, float(x), (a, b), base_value,
                     _achieved(portfolio, spec, target, scope_cluster, x), it)


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


def breakeven_curve(portfolio: Portfolio, scenario, over: str, param: str, target_text: str,
                    cluster: str | None = None, bracket=None) -> dict:
    """Breakevens at each value of one axis of a grid (the other axes neutral)."""
    axes = {a.name: a for a in scenario.axes}
    if over not in axes:
        raise ConfigError([f"--over: {scenario.path} has no axis {over!r} (axes: {', '.join(axes) or 'none'})"])
    axis = axes[over]
    rows = [breakeven(shifted_portfolio(portfolio, axis, float(v)), param, target_text, cluster, bracket)
            for v in axis.values]
    scopes = [r.scope for r in rows[0]]
    value = np.array([[np.nan if r.value is None else r.value for r in row] for row in rows])
    achieved = np.array([[np.nan if r.achieved is None else r.achieved for r in row] for row in rows])
    return {"axis": axis, "scopes": scopes, "value": value, "achieved": achieved}


def write_curve(path, curve: dict, attrs: dict) -> None:
    """HDF5 (atomic): breakeven [axis, scope] and achieved, with dimension scales."""
    import os
    from pathlib import Path

    import h5py

    from .h5io import temp_path

    path = Path(path)
    tmp = temp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            ax = f.create_dataset(curve["axis"].name, data=curve["axis"].values)
            ax.make_scale(curve["axis"].name)
            sc = f.create_dataset("scope", data=np.array(curve["scopes"], dtype=object),
                                  dtype=h5py.string_dtype())
            sc.make_scale("scope")
            for name, long_name in (("breakeven", "value of the parameter or shock meeting the target"),
                                    ("achieved", "target output re-evaluated at the breakeven")):
                ds = f.create_dataset(name, data=curve[name if name != "breakeven" else "value"])
                ds.dims[0].attach_scale(ax)
                ds.dims[1].attach_scale(sc)
                ds.attrs["long_name"] = long_name
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
