"""Reading a result file for the report: its kind, its axes, the plan of what to draw.

`result_kind(f)` tells a grid, sensitivities, Monte Carlo or breakeven file apart;
`read_axes(f)` gives the grid's axes (`AxisInfo`: values, op, targets, neutral value);
`plan_grid` checks `--x`, `--y`, `--at` against them and says which axes are drawn and
where every other one is held (`Plan`); `plan_when_to_buy` plans the "when to buy" figure
of a grid with an axis on the clusters' order month; `plan_without_axes` refuses those
options for a file without grid axes. Nothing here draws or writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .kernels.params import OPTIMIZATION_PARAMS, ORDER_PARAMS, PARAMS, PLATFORM_PARAMS, PORTFOLIO_PARAMS
from .validation import ConfigError

CHUNK_ELEMS = 1 << 20  # values read at once
# the version 2 scalars an axis may move (programmes.GROUPS), for their units
SCALAR_PARAMS = {p.name: p for p in ORDER_PARAMS + OPTIMIZATION_PARAMS + PLATFORM_PARAMS}
ORDER_MONTH = "order_month"  # an axis moving it gets the "when to buy" figure


def value_text(v) -> str:
    """An axis value for titles and tables."""
    if isinstance(v, (str, bytes)):
        return v.decode() if isinstance(v, bytes) else v
    return f"{float(v):g}"


@dataclass
class AxisInfo:
    name: str
    values: np.ndarray
    op: str | None = None
    targets: tuple[str, ...] = ()
    neutral: float | None = None

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind in "iuf"

    def label(self) -> str:
        return param_label(self.name, self.op, self.targets)


def param_unit(param: str) -> str:
    p = PARAMS.get(param) or PORTFOLIO_PARAMS.get(param) or SCALAR_PARAMS.get(param)
    u = p.unit if p else ""
    return "months" if u == "month" else u


def param_label(name: str, op: str | None, targets) -> str:
    targets = tuple(targets or ())
    if op == "scale":
        if targets == (name,) or not targets:
            return f"{name} (scale of its base value)"
        return f"{name} (scale of base {', '.join(targets)})"
    unit = param_unit(targets[0]) if targets else param_unit(name)
    if op == "shift":
        return f"{name} (shift, {unit})" if unit else f"{name} (shift)"
    return f"{name} ({unit})" if unit else name


def strings(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "OSU":
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()], dtype=object)
    return a


def attr(obj, key, default=None):
    v = obj.attrs.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def result_kind(f) -> str | None:
    if attr(f, "kind") == "rank" and "shapley" in f:
        return "rank"
    if attr(f, "kind") == "optimize" and "optimum" in f:
        return "optimize"
    if attr(f, "kind") == "montecarlo" and "npv" in f and "statistic" in f:
        return "montecarlo"
    if "breakeven" in f and "over" in f.attrs:
        return "breakeven"
    if "npv" in f and "config" in f.attrs and "base" in f:
        return "sensitivities" if "npv_per_pct" in f else "grid"
    return None


def read_axes(f) -> list[AxisInfo]:
    ds = f["npv"]
    names = []
    for i in range(ds.ndim):
        scales = ds.dims[i]
        names.append(scales[0].name.rsplit("/", 1)[-1] if len(scales) else None)
    if any(n is None or n not in f for n in names):
        try:
            cfg_axes = json.loads(attr(f, "config"))["scenario"]["axes"]
            names = [a["name"] for a in cfg_axes]
        except Exception:  # noqa: BLE001
            names = [n or f"axis{i}" for i, n in enumerate(names)]
    out = []
    for n in names:
        if n in f:
            d = f[n]
            neutral = attr(d, "neutral")
            targets = attr(d, "targets", "")
            out.append(AxisInfo(n, strings(d[()]), attr(d, "op"),
                                tuple(t for t in str(targets).split(",") if t),
                                float(neutral) if neutral is not None else None))
        else:
            out.append(AxisInfo(n, np.arange(ds.shape[len(out)])))
    return out


def on_axis(axis: AxisInfo, value: float) -> int | None:
    vals = axis.values.astype(float)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(vals))) if vals.size else 1.0)
    hits = np.flatnonzero(np.abs(vals - value) <= tol)
    return int(hits[0]) if hits.size else None


def held_index(axis: AxisInfo) -> tuple[int, str]:
    """Where an axis is held by default: its neutral value, the value nearest it, or the middle."""
    if axis.numeric and axis.neutral is not None and axis.values.size:
        i = on_axis(axis, axis.neutral)
        if i is not None:
            return i, "neutral"
        i = int(np.argmin(np.abs(axis.values.astype(float) - axis.neutral)))
        return i, f"nearest to neutral {axis.neutral:g}"
    return len(axis.values) // 2, "middle value"


@dataclass
class Plan:
    kind: str
    axes: list[AxisInfo] = field(default_factory=list)
    x: str | None = None
    y: str | None = None
    line: str | None = None  # the one axis of line plots
    held: dict[str, tuple[int, str]] = field(default_factory=dict)  # axis -> (index, how)
    buy: "Plan | None" = None  # the "when to buy" figure's own plan (plan_when_to_buy)


def plan_grid(path: Path, axes: list[AxisInfo], x, y, at: dict) -> tuple[Plan, list[str]]:
    problems: list[str] = []
    names = [a.name for a in axes]
    by_name = {a.name: a for a in axes}
    known = ", ".join(names) or "none"
    for opt, v in (("--x", x), ("--y", y)):
        if v is not None and v not in by_name:
            problems.append(f"{path}: {opt}: unknown axis {v!r} (axes: {known})")
    if x is not None and x == y:
        problems.append(f"{path}: --x/--y: both name the axis {x!r}; give two different axes")
    held_at: dict[str, int] = {}
    for k, v in at.items():
        if k not in by_name:
            problems.append(f"{path}: --at: unknown axis {k!r} (axes: {known})")
            continue
        if k in (x, y):
            which = "--x" if k == x else "--y"
            problems.append(f"{path}: --at: {k}: is the heatmap's {which} axis; it cannot also be held")
            continue
        a = by_name[k]
        try:
            value = float(v)
        except (TypeError, ValueError):
            problems.append(f"{path}: --at: {k}: value must be a number, got {v!r}")
            continue
        if not a.numeric:
            problems.append(f"{path}: --at: {k}: the axis holds labels ({', '.join(map(str, a.values))}), "
                            "not numbers")
            continue
        i = on_axis(a, value) if math.isfinite(value) else None
        if i is None:
            problems.append(f"{path}: --at: {k}={value:g}: not a value of the axis "
                            f"(values: {', '.join(value_text(t) for t in a.values)})")
            continue
        held_at[k] = i
    if problems:
        return Plan("grid"), problems
    free = [a.name for a in axes if len(a.values) > 1 and a.name not in at]
    line = None
    if x is None and y is None:
        if len(free) >= 2:
            x, y = free[0], free[1]
        elif len(free) == 1:
            line = free[0]
    elif x is None or y is None:  # one given: the other is the first free axis, else a line
        given = y if x is None else x
        rest = [n for n in free if n != given]
        if not rest:
            line, x, y = given, None, None
        elif x is None:
            x = rest[0]
        else:
            y = rest[0]
    plotted = {n for n in (x, y, line) if n}
    held = {}
    for a in axes:
        if a.name in plotted:
            continue
        held[a.name] = (held_at[a.name], "--at") if a.name in held_at else held_index(a)
    return Plan("grid", axes, x, y, line, held), []


def plan_when_to_buy(f, plan: Plan, x=None, y=None) -> Plan | None:
    """The plan of the "when to buy" figure of a grid with an axis that moves the clusters'
    order month (MODEL.md, "Order month"), None without one (or where --at holds it).

    The order-month axis goes across, against the other of `--x` and `--y` (x, y) where
    they name it and another axis, else against the other free axis along which the
    portfolio NPV moves most (max − min, every other axis where the plan holds it or at
    its default: held_index), or alone as a line where it is the only free axis. Every
    other axis is held as the plan holds it, or at its default."""
    by_name = {a.name: a for a in plan.axes}

    def free(a: AxisInfo) -> bool:
        return len(a.values) > 1 and plan.held.get(a.name, (0, ""))[1] != "--at"

    buy = next((a for a in plan.axes if ORDER_MONTH in a.targets and a.numeric and free(a)), None)
    if buy is None:
        return None
    rest = {a.name: plan.held.get(a.name) or held_index(a) for a in plan.axes}
    if x and y and buy.name in (x, y):
        other = y if buy.name == x else x
    else:
        def spread(a: AxisInfo) -> float:
            sel = tuple(slice(None) if b is a else rest[b.name][0] for b in plan.axes)
            v = np.asarray(f["npv"][sel], dtype=np.float64)
            v = v[np.isfinite(v)]
            return float(v.max() - v.min()) if v.size else 0.0

        others = [a for a in plan.axes if a is not buy and free(a)]
        other = max(others, key=spread).name if others else None  # the first of equals
    held = {n: rest[n] for n in by_name if n not in (buy.name, other)}
    if other is None:
        return Plan(plan.kind, plan.axes, line=buy.name, held=held)
    return Plan(plan.kind, plan.axes, x=buy.name, y=other, held=held)


def extreme(ds, fn) -> tuple[int, float] | None:
    """(flat index, value) of the smallest (fn=np.argmin) or largest finite value, chunk by chunk."""
    if ds.ndim == 0:
        v = float(ds[()])
        return (0, v) if math.isfinite(v) else None
    per = int(np.prod(ds.shape[1:], dtype=np.int64)) if ds.ndim > 1 else 1
    step = max(1, CHUNK_ELEMS // max(per, 1))
    best = None
    for i in range(0, ds.shape[0], step):
        a = np.asarray(ds[i:i + step], dtype=np.float64).ravel()
        ok = np.isfinite(a)
        if not ok.any():
            continue
        idx = np.flatnonzero(ok)
        j = idx[fn(a[idx])]
        v = float(a[j])
        better = best is None or (v < best[1] if fn is np.argmin else v > best[1])
        if better:
            best = (i * per + int(j), v)
    return best


# what a report's provenance table calls each kind of file (the kind's name where absent)
KIND_LABELS = {"grid": "stress grid", "sensitivities": "stress grid with sensitivities", "montecarlo": "Monte Carlo",
               "breakeven": "breakeven curve", "rank": "drivers ranked (stresstest rank)",
               "optimize": "which mix (stresstest optimize)"}


def provenance(f, path: Path, kind: str) -> list[tuple[str, str]]:
    rows = [("file", path.name), ("kind", KIND_LABELS.get(kind, kind))]
    keys = ["portfolio", "scenario", "created", "backend", "device", "dtype", "config_sha256",
            "stresstest_version", "model_version", "currency", "horizon_months", "discount_rate",
            "n_scenarios", "paths", "seed", "param", "target", "over", "output", "permutations", "evaluations"]
    for k in keys:
        v = attr(f, k)
        if v is not None:
            rows.append((k, str(v)))
    return rows


def open_result(path: Path):
    import h5py

    if not path.exists():
        raise ConfigError([f"{path}: no such file"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a folder, not a result file (shards? merge them first)"])
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ConfigError([f"{path}: not a stresstest result file (not readable as HDF5: {err})"]) from None


def plan_without_axes(path: Path, kind: str, x, y, at: dict, what: str) -> Plan:
    """The plan of a file without grid axes: `--x`, `--y` and `--at` refused (`what` says why)."""
    problems = [f"{path}: {opt}: {what}" for opt, v in (("--x", x), ("--y", y), ("--at", at)) if v]
    if problems:
        raise ConfigError(problems)
    return Plan(kind)


# Shared by the report's figures and the explorer's views, which import no matplotlib
TORNADO_TOP = 15
TORNADO_MOVE_PCT = 10.0


def cell_edges(v: np.ndarray) -> np.ndarray:
    v = v.astype(float)
    if v.size == 1:
        half = 0.5 if v[0] == 0 else 0.1 * abs(v[0])
        return np.array([v[0] - half, v[0] + half])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def coords(axis: AxisInfo) -> tuple[np.ndarray, np.ndarray]:
    """Plot positions and the order that sorts them (labels: positions 0..n-1)."""
    if axis.numeric:
        order = np.argsort(axis.values.astype(float), kind="stable")
        return axis.values.astype(float)[order], order
    return np.arange(len(axis.values), dtype=float), np.arange(len(axis.values))


def base_in_plane(plan: Plan, by_name: dict[str, AxisInfo]) -> tuple[float, float] | None:
    """(x, y) of the base case (every shock neutral) where it lies in the heatmap's plane:
    both plotted axes have a neutral value within their span, every other axis is held at
    its neutral value. None otherwise (a held axis shocked, a `set` axis, labels)."""
    for n, (i, _) in plan.held.items():
        a = by_name[n]
        if not a.numeric or a.neutral is None or on_axis(a, a.neutral) != i:
            return None
    xy = []
    for a in (by_name[plan.x], by_name[plan.y]):
        if not a.numeric or a.neutral is None:
            return None
        edges = cell_edges(np.sort(a.values.astype(float)))
        if not edges[0] <= a.neutral <= edges[-1]:
            return None
        xy.append(float(a.neutral))
    return xy[0], xy[1]


def rate_level(f, plan: Plan) -> float | None:
    """The discount rate in % (the IRR's reference), None where absent or an axis of the grid."""
    rate = attr(f, "discount_rate")
    rate_is_axis = any("discount_rate" in a.targets or a.name == "discount_rate" for a in plan.axes)
    return None if rate is None or rate_is_axis else 100 * float(rate)
