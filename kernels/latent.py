"""Monte Carlo inputs mixed from two streams of draws (a sensitivity analysis's designs).

A global sensitivity analysis (stresstest/gsa.py) evaluates the model at inputs made of
two independent draws: some inputs from one, the others from the other, or drawn given
the first (the conditional law of correlated normals is normal). Each draw is a path
of the counter-based generator (kernels/paths.py) at a sample index of a stream key,
so a design's evaluations do not depend on how they are chunked.
"""

from __future__ import annotations

from .paths import PathSpec, correlated, event_uniforms, normals


def standard_normals(xp, key, rows, spec: PathSpec, dtype):
    """The independent standard normals z [E, n, T] of the samples `rows` of a stream,
    as a Monte Carlo path draws them (path index = sample index)."""
    n, T = spec.n_series, spec.horizon
    z = normals(xp, key, xp.astype(rows, xp.uint64), 0, n * T, dtype)
    return xp.reshape(z, (z.shape[0], n, T))


def mixed_innovations(xp, key1, i1, key2, i2, mix, spec: PathSpec, dtype):
    """eps [E, n, T] = mix x1 + (I - mix) x2 month by month, x1 and x2 the correlated
    innovations of stream 1 at samples i1 and stream 2 at samples i2; mix [E, n, n]."""
    x1 = correlated(xp, standard_normals(xp, key1, i1, spec, dtype), spec.chol, dtype)
    x2 = correlated(xp, standard_normals(xp, key2, i2, spec, dtype), spec.chol, dtype)
    return xp.matmul(mix, x1 - x2) + x2


def mixed_event_uniforms(xp, key1, i1, key2, i2, keep, events, spec: PathSpec, n_clusters: int, dtype):
    """Each event's uniforms (u1, u2), from stream 1 where keep[:, e] ([E, n_events]
    bool) and stream 2 elsewhere."""
    a = event_uniforms(xp, key1, xp.astype(i1, xp.uint64), events, spec.n_series, spec.horizon, n_clusters, dtype)
    b = event_uniforms(xp, key2, xp.astype(i2, xp.uint64), events, spec.n_series, spec.horizon, n_clusters, dtype)
    out = []
    for e, ((a1, a2), (b1, b2)) in enumerate(zip(a, b)):
        k = keep[:, e][:, None]
        out.append((xp.where(k, a1, b1), xp.where(k, a2, b2)))
    return out
