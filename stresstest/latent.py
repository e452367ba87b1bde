"""The Monte Carlo model at designed inputs: what a global sensitivity analysis evaluates.

A Monte Carlo path is a function of its latent draws: the standard normals z of every
series and month (correlated as x = L z) and each event's uniforms. stresstest/gsa.py
designs evaluations that mix two streams of such draws (gsa.Design); this module
compiles, on a backend, the portfolio's output at those inputs, in fixed-size chunks,
and for DGSM the output's gradient with respect to the independent latent inputs: the
normals z, and each event's drawn value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .backends import Backend, BackendError
from .config import Portfolio
from .engine import GPU_BUDGET, default_chunk_size, equity_clusters
from .kernels.latent import mixed_event_uniforms, mixed_innovations, standard_normals
from .kernels.cashflows import cash_flows
from .kernels.metrics import evaluate, irr_from_root, linear_parts
from .kernels.paths import EventSpec, apply_events, correlated, event_uniforms, event_values, factors_from_innovations
from .mc_config import MonteCarlo

OUTPUT_CHOICES = ("npv", "irr", "roi", "equity_irr")
# parameters the cash flows move by whole months or steps (a renewal cycle, a loss, a
# rounded month): the output jumps in them, and no derivative bounds a jump
_STEPPED = ("client_loss_month", "loss_month", "delivery_months", "term_months", "order_month",
            "debt_term_months", "start_month", "launch_month")
_CPU_BUDGET = 64 * 2**20


def poincare_constant(ev: EventSpec) -> float:
    """The Poincare constant of an event's law, the factor of its DGSM (NaN where the
    derivative bounds nothing: a discrete law, or a parameter the flows move in steps).
    Uniform: (b - a)^2 / pi^2 (exact); normal: sd^2 (exact); triangular: (b - a)^2 / pi^2,
    the Payne-Weinberger bound of a log-concave law on an interval (an upper bound, so
    the DGSM bound stays one)."""
    if ev.dist == "discrete" or ev.param.rpartition(".")[2] in _STEPPED:
        return math.nan
    if ev.dist == "normal":
        return float(ev.args[1]) ** 2
    lo, hi = ev.args[0], ev.args[-1]
    return (hi - lo) ** 2 / math.pi ** 2


def series_volatilities(spec) -> np.ndarray:
    """Each series' volatility (price, utilization, energy, in the series' order); a series
    at 0 draws normals that move nothing."""
    def per(v, n):
        return np.full(n, float(v)) if isinstance(v, (int, float)) else np.asarray(v, dtype=np.float64)

    return np.concatenate([per(spec.price_vol, spec.n_price), per(spec.util_sigma, spec.n_util),
                           per(spec.energy_vol, spec.n_energy)])


def degenerate_event(ev: EventSpec) -> bool:
    """An event whose law is a single value: it draws nothing uncertain."""
    if ev.dist == "discrete":
        return len(set(ev.values)) < 2
    if ev.dist == "normal":
        return ev.args[1] == 0
    return ev.args[0] == ev.args[-1]


@dataclass(frozen=True)
class InputMap:
    """Which series and events are the analysis's inputs. coords: the series that are
    (the Gaussian coordinates of gsa.Law, in the series' order); series_input[k]: the
    input of coords[k]; event_input[e]: the input of event e, -1 for an event that is
    not one (a degenerate law: its draws are the same from either stream)."""

    coords: tuple[int, ...]
    series_input: tuple[int, ...]
    event_input: tuple[int, ...]
    n_inputs: int

    def correlation(self, mc: MonteCarlo) -> np.ndarray:
        """The correlation of the coordinates: the scenario's, restricted to them."""
        R = np.asarray(mc.correlation, dtype=np.float64)
        return R[np.ix_(self.coords, self.coords)]


@dataclass
class LatentModel:
    """The output of the portfolio under the scenario at designed inputs, on a backend;
    `inputs` says which series and events the designs address (InputMap)."""

    portfolio: Portfolio
    scenario: MonteCarlo
    backend: Backend
    output: str
    inputs: InputMap
    chunk: int = 0
    evaluations: int = 0
    _mixed: Callable | None = field(default=None, repr=False)
    _grad: Callable | None = field(default=None, repr=False)
    _args: tuple = field(default=(), repr=False)

    def __post_init__(self):
        pf, be = self.portfolio, self.backend
        if not self.chunk:
            self.chunk = int(default_chunk_size(pf, 4096, GPU_BUDGET if be.is_gpu else _CPU_BUDGET))
        base = {k: be.asarray(v.astype(be.dtype)) for k, v in pf.base_arrays().items()}
        self._args = (base, be.asarray(np.asarray(pf.discount_rate, dtype=be.dtype)))
        self._mixed = be.compile(self._mixed_fn())

    def _inputs(self) -> Callable:
        """(base, rate, eps [E, n, T], draws: per event [E, C]) -> the model's inputs: the
        parameters with the events applied, the rate per evaluation [E], the path factors."""
        mc, xp, dtype = self.scenario, self.backend.xp, self.backend.dtype

        def inputs(base, rate, eps, draws):
            factors = factors_from_innovations(xp, eps, mc.spec, dtype)
            p = apply_events(base, mc.events, draws)
            return p, xp.broadcast_to(xp.reshape(rate, (1,)), (eps.shape[0],)), factors

        return inputs

    def _core(self) -> Callable:
        """(base, rate, eps [E, n, T], draws: per event [E, C]) -> the output [E]."""
        pf, output, inputs = self.portfolio, self.output, self._inputs()
        equity = equity_clusters(pf, self.scenario) if output == "equity_irr" else ()

        def core(base, rate, eps, draws):
            p, r, factors = inputs(base, rate, eps, draws)
            return evaluate(p, r, pf.horizon_months, equity_clusters=equity, factors=factors)[output]

        return core

    def _mixed_fn(self) -> Callable:
        mc, xp, dtype = self.scenario, self.backend.xp, self.backend.dtype
        C = len(self.portfolio.clusters)
        core = self._core()

        def fn(base, rate, key1, i1, key2, i2, mix, keep):
            eps = mixed_innovations(xp, key1, i1, key2, i2, mix, mc.spec, dtype)
            us = mixed_event_uniforms(xp, key1, i1, key2, i2, keep, mc.events, mc.spec, C, dtype)
            draws = [event_values(xp, ev, u1, u2, C) for ev, (u1, u2) in zip(mc.events, us)]
            return core(base, rate, eps, draws)

        return fn

    def __call__(self, design) -> np.ndarray:
        """The output at each evaluation of a gsa.Design, [E] on the host."""
        be, E, im = self.backend, design.size, self.inputs
        keep = np.ones((E, len(im.event_input)), dtype=bool)
        for e, i in enumerate(im.event_input):
            if i >= 0:
                keep[:, e] = design.keep[:, i]
        n = self.scenario.spec.n_series
        out = []
        for a in range(0, E, self.chunk):
            rows = _padded(np.arange(a, min(a + self.chunk, E)), self.chunk)
            mix = np.broadcast_to(np.eye(n), (self.chunk, n, n)).copy()
            mix[:, np.asarray(im.coords)[:, None], np.asarray(im.coords)[None, :]] = design.mix[rows]
            args = (np.uint64(design.key1), design.i1[rows], np.uint64(design.key2), design.i2[rows],
                    mix.astype(be.dtype), keep[rows])
            y = self._mixed(*self._args, *(be.asarray(x) for x in args))
            out.append(np.asarray(y)[: min(self.chunk, E - a)])
        self.evaluations += E
        return np.concatenate(out)

    def _differentiable(self) -> Callable:
        """(base, rate, eps, draws, y) -> the output [E], differentiable in reverse mode at
        a bearable cost. NPV and ROI: the core itself. An IRR: one Newton step from its
        solved value y (kernels.metrics.irr_from_root), the same value, whose derivative
        is the implicit function theorem's; reverse mode through the solver's ladder and
        searches would keep their every temporary (tens of GB for a few hundred paths)."""
        core = self._core()
        if self.output not in ("irr", "equity_irr"):
            return lambda base, rate, eps, draws, y: core(base, rate, eps, draws)
        pf, inputs = self.portfolio, self._inputs()
        equity = equity_clusters(pf, self.scenario) if self.output == "equity_irr" else ()
        row = len(pf.clusters) if self.output == "irr" else -1  # the portfolio's flows, or its equity flows

        def from_root(base, rate, eps, draws, y):
            p, r, factors = inputs(base, rate, eps, draws)
            lin = linear_parts(cash_flows(p, pf.horizon_months, factors), r, equity)
            return irr_from_root(lin["series"][:, row], y)

        return from_root

    def _grad_fn(self) -> Callable:
        """(base, rate, key, rows) -> (Y, the gradient in the correlated innovations
        [E, n, T], per event the gradient in its drawn values [E, k])."""
        from .jax_adapter import value_and_input_gradient

        pf, mc, xp, dtype = self.portfolio, self.scenario, self.backend.xp, self.backend.dtype
        C = len(pf.clusters)
        core, differentiable = self._core(), self._differentiable()

        def on_latent(base, rate, eps, values, y):
            draws = [xp.broadcast_to(v, (v.shape[0], C)) for v in values]
            return differentiable(base, rate, eps, draws, y)

        grad = value_and_input_gradient(on_latent, (2, 3))

        def fn(base, rate, key, rows):
            eps = correlated(xp, standard_normals(xp, key, rows, mc.spec, dtype), mc.spec.chol, dtype)
            us = event_uniforms(xp, key, xp.astype(rows, xp.uint64), mc.events, mc.spec.n_series,
                                mc.spec.horizon, C, dtype)
            values = [event_values(xp, ev, u1, u2, C)[:, : (C if ev.per_cluster else 1)]
                      for ev, (u1, u2) in zip(mc.events, us)]
            y = core(base, rate, eps, [xp.broadcast_to(v, (v.shape[0], C)) for v in values])
            _, (g_eps, g_values) = grad(base, rate, eps, values, y)
            return y, g_eps, [g * g for g in g_values]

        return fn

    def gradients(self, key: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Y [E], G [E, d]) at samples `rows` of the stream `key`: per input, the sum over
        its independent latent coordinates of the Poincare constant times the squared
        derivative (gsa.dgsm_bounds). The Gaussian inputs' latent coordinates are the
        standard normals z of their own correlation (x = L z over the input series, L its
        Cholesky factor): dY/dz = L^T dY/dx, month by month, constant 1."""
        be, im = self.backend, self.inputs
        if not be.is_jax:
            raise BackendError(f"DGSM needs the JAX backend (automatic differentiation); got {be.name}")
        if self._grad is None:
            self._grad = be.compile(self._grad_fn())
        consts = [poincare_constant(ev) for ev in self.scenario.events]
        L = np.linalg.cholesky(im.correlation(self.scenario) + 1e-12 * np.eye(len(im.coords)))
        E = rows.shape[0]
        ys, gs = [], []
        for a in range(0, E, self.chunk):
            n = min(self.chunk, E - a)
            r = _padded(rows[a: a + n], self.chunk)
            y, g_eps, gv2 = self._grad(*self._args, be.asarray(np.uint64(key)), be.asarray(r))
            g_z = np.einsum("kj,ekt->ejt", L, np.asarray(g_eps)[:, list(im.coords), :])
            G = np.zeros((self.chunk, im.n_inputs))
            np.add.at(G.T, np.asarray(im.series_input), (g_z ** 2).sum(axis=-1).T)
            for e, g2 in enumerate(gv2):
                if im.event_input[e] >= 0:
                    G[:, im.event_input[e]] += consts[e] * np.asarray(g2).sum(axis=1)
            ys.append(np.asarray(y)[:n])
            gs.append(G[:n])
        self.evaluations += E
        return np.concatenate(ys), np.concatenate(gs)


def _padded(rows: np.ndarray, size: int) -> np.ndarray:
    """rows padded to `size` with copies of the last (a compiled chunk has one shape)."""
    if rows.shape[0] == size:
        return rows
    return np.concatenate([rows, np.full(size - rows.shape[0], rows[-1], dtype=rows.dtype)])
