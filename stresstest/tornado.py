"""Tornado: which assumption moves NPV most, at the base case.

Each parameter is moved by +-10 % (relative). The first-order change comes from the
reverse-mode gradient; the exact change from re-evaluating the model with the moved
value, so a user sees where the linearisation breaks (clips, kinks, curvature).
Per cluster: that cluster's parameter alone. Portfolio: the parameter moved in every
cluster at once (and the discount rate).
"""

from __future__ import annotations

import math

import numpy as np

from .config import Portfolio, Scenario
from .kernels.metrics import evaluate
from .kernels.params import PARAM_NAMES


def base_gradients(portfolio: Portfolio) -> dict[str, np.ndarray]:
    """Outputs and gradients at the base case (a one-point grid), through the JAX adapter."""
    from .backends import make_backend
    from .engine import prepare

    run = prepare(portfolio, Scenario("<base>", "grid", "base", []), make_backend("jax"),
                  sensitivities=True)
    return {k: v[0] for k, v in next(run.chunks()).outputs.items()}


def _revalue(portfolio: Portfolio, moves: list[tuple[str, list[int], float]]) -> np.ndarray:
    """Portfolio NPV after each move (parameter, clusters, factor), one scenario per move."""
    base = portfolio.base_arrays()
    n = len(moves)
    p = {k: np.repeat(v[None, :], n, axis=0) for k, v in base.items()}
    rate = np.full(n, portfolio.discount_rate)
    for s, (name, clusters, factor) in enumerate(moves):
        if name == "discount_rate":
            rate[s] *= factor
        else:
            p[name][s, clusters] *= factor
    with np.errstate(all="ignore"):
        return evaluate(p, rate, portfolio.horizon_months)["npv"]


def tornado(portfolio: Portfolio, move: float = 0.10) -> dict:
    """Rows per scope ("portfolio" and each cluster), ranked by the largest exact |change|."""
    g = base_gradients(portfolio)
    base_npv = float(g["npv"])
    grad = g["grad_npv"]  # [C, P]
    C = len(portfolio.clusters)
    values = np.array([[c[k] for k in PARAM_NAMES] for c in portfolio.clusters])
    scopes: dict[str, list[tuple[str, list[int]]]] = {
        "portfolio": [(k, list(range(C))) for k in PARAM_NAMES] + [("discount_rate", [])]
    }
    for c, name in enumerate(portfolio.cluster_names):
        scopes[name] = [(k, [c]) for k in PARAM_NAMES]
    result = {"base_npv": base_npv, "move": move, "scopes": {}}
    for scope, items in scopes.items():
        rows, moves = [], []
        for name, clusters in items:
            if name == "discount_rate":
                value, g_sum = portfolio.discount_rate, float(g["grad_npv_discount_rate"]) * portfolio.discount_rate
            else:
                k = PARAM_NAMES.index(name)
                vals = values[clusters, k]
                if not np.isfinite(vals).all() or not np.any(vals):
                    continue  # "never" or zero: a relative move changes nothing
                value = float(vals[0]) if len(clusters) == 1 else None
                g_sum = float(np.sum(grad[clusters, k] * vals))
            rows.append({"parameter": name, "value": value, "linear_down": -move * g_sum,
                         "linear_up": move * g_sum})
            moves += [(name, clusters, 1 - move), (name, clusters, 1 + move)]
        exact = _revalue(portfolio, moves) - base_npv if moves else np.zeros(0)
        for i, row in enumerate(rows):
            row["exact_down"], row["exact_up"] = float(exact[2 * i]), float(exact[2 * i + 1])
            row["swing"] = max(abs(row["exact_down"]), abs(row["exact_up"]))
        rows.sort(key=lambda r: -r["swing"] if math.isfinite(r["swing"]) else math.inf)
        result["scopes"][scope] = rows
    return result
