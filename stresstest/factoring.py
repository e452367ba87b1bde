"""Which axes of a stress grid are evaluated at their end points and interpolated.

A grid is laid out in C order: a "slab" is the block of the innermost axes from some
axis k on, and consecutive slabs step through the outer axes. Inside a slab, an axis
that moves only parameters in which the flows are affine (params.AFFINE_PARAMS), and
never pushes them out of their ranges, is evaluated at its two end values and
interpolated (kernels/factored.py). A slab may also hold only a block of axis k's
values (Factoring.blocks), where that axis is the one to interpolate and too long to
fit whole; consecutive slabs then take its blocks in turn. The plan depends on the
grid alone, never on the chunk size, the shard or the backend, so every grid point is
computed the same way in every run: results do not depend on how the grid is cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import Portfolio
from .grid_config import Scenario
from .items import REPLACES
from .kernels.params import AFFINE_PARAMS, ITEM_PARAMS
from .kernels.shocks import param_range

# At most this many interpolated axes (2^k corners per point of the other axes).
MAX_AFFINE_AXES = 3


@dataclass(frozen=True)
class Factoring:
    """k: the first axis of the slab; shape: the slab's axis sizes; affine: positions in
    the slab of the interpolated axes; weights: (w0, w1) per interpolated axis, float64.

    blocks > 1: axis k is longer than the slab allows and is interpolated in blocks:
    each slab holds shape[0] of its values (the slabs of one outer point take its
    blocks in turn), all of them interpolated between the axis's two end values, so
    the results are those of one slab over the whole axis. Its weights then have
    shape[0] * blocks entries (the whole axis); slab_weights picks a slab's block.
    """

    k: int
    shape: tuple[int, ...]
    affine: tuple[int, ...]
    weights: tuple[tuple[np.ndarray, np.ndarray], ...]
    blocks: int = 1

    @property
    def slab(self) -> int:
        return math.prod(self.shape)

    @property
    def corners(self) -> int:
        """Rows evaluated per slab."""
        return self.slab // math.prod(self.shape[d] for d in self.affine) * 2 ** len(self.affine)

    def reduced_values(self, scenario: Scenario) -> list[np.ndarray]:
        """Each slab axis's values in the corner rows: an interpolated axis has its end values."""
        out = []
        for j, a in enumerate(scenario.axes[self.k:]):
            v = np.asarray(a.values, dtype=np.float64)
            out.append(np.array([v.min(), v.max()]) if j in self.affine else v)
        return out

    def describe(self, scenario: Scenario) -> str:
        names = [scenario.axes[self.k + d].name for d in self.affine]
        blocks = f", {names[0]} in blocks of {self.shape[0]}" if self.blocks > 1 else ""
        return (f"{', '.join(names)} interpolated between end points "
                f"({self.slab / self.corners:.0f}x fewer flow evaluations{blocks})")


def interpolable(portfolio: Portfolio, scenario: Scenario, i: int) -> bool:
    """Axis i moves only affine parameters, alone, and never out of their ranges."""
    axis = scenario.axes[i]
    spec = axis.spec
    if len(axis.values) < 3 or not all(t in AFFINE_PARAMS for t in spec.targets):
        return False
    others = {t for j, a in enumerate(scenario.axes) if j != i for t in a.spec.targets}
    # an axis on items by path moves, in a cluster without items of its own, the items
    # implied by the version 1 keys they replace: its clip and the shares' balance are
    # not affine in those keys
    others |= {k for t in others if t in ITEM_PARAMS for k in REPLACES[t.partition(".")[0]]}
    if others & set(spec.targets):
        return False  # another axis moves the same parameter
    v = np.asarray(axis.values, dtype=np.float64)
    if not np.all(np.isfinite(v)) or v.min() == v.max():
        return False
    for c, cluster in enumerate(portfolio.clusters):
        if spec.cluster_mask is not None and not spec.cluster_mask[c]:
            continue
        for name in spec.targets:
            lo, hi = param_range(name)
            x = cluster[name]
            moved = v if spec.op == "set" else (x * v if spec.op == "scale" else x + v)
            if not np.all(np.isfinite(moved)) or moved.min() < lo or moved.max() > hi:
                return False  # clipped somewhere: not affine there
    return True


def plan(portfolio: Portfolio, scenario: Scenario, max_slab: int) -> Factoring | None:
    """The factoring of a grid, or None where nothing would be saved.

    The slab starts at the outermost axis that keeps it within max_slab points; its
    interpolable axes (the largest MAX_AFFINE_AXES of them) are interpolated. Where none
    is, but the axis just outside the slab is, that axis is interpolated in blocks
    (Factoring.blocks): a slab is then a block of its values, the longest one whose
    length divides the axis and keeps the slab within max_slab points.
    """
    shape = scenario.shape
    for k in range(len(shape)):
        if math.prod(shape[k:]) <= max_slab:
            break
    else:
        return None
    cand = [j - k for j in range(k, len(shape)) if interpolable(portfolio, scenario, j)]
    cand = sorted(sorted(cand, key=lambda d: -shape[k + d])[:MAX_AFFINE_AXES])
    blocks = 1
    if not cand:
        inner = math.prod(shape[k:])
        if k == 0 or not interpolable(portfolio, scenario, k - 1):
            return None
        n = shape[k - 1]
        length = max(d for d in range(1, n + 1) if n % d == 0 and d * inner <= max_slab)
        k, blocks, cand = k - 1, n // length, [0]
    weights = []
    for d in cand:
        v = np.asarray(scenario.axes[k + d].values, dtype=np.float64)
        lo, hi = v.min(), v.max()
        w1 = (v - lo) / (hi - lo)
        weights.append((1.0 - w1, w1))
    slab_shape = (shape[k] // blocks,) + tuple(shape[k + 1:])
    f = Factoring(k, slab_shape, tuple(cand), tuple(weights), blocks)
    return f if f.corners * 2 <= f.slab else None
