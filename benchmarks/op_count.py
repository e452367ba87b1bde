"""Array operations per chunk: what an eager backend launches, against XLA's fused loops.

CuPy runs each array operation as a kernel of its own (a launch of some microseconds,
and a pass over its operands through the GPU's memory); XLA (JAX) fuses them into a few
loops. This script counts, for W1 (the default grid) and W4 (Monte Carlo paths) on the
example portfolio at the GPU's chunk size, the operations of the chunk function in the
forms the kernels take on each backend: traced by JAX (jaxpr equations, nested calls
and a conditional's taken branch included), with the eager forms (numpy, CuPy) forced
where they differ from JAX's. Views (reshape, broadcast, slices, flips) launch nothing
on CuPy and are counted apart. Beside them, the fusions XLA compiles the same chunk
function into on this machine's backend. Machine-independent apart from that last
column; it needs jax.

    python benchmarks/op_count.py
"""

from __future__ import annotations

import collections
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VIEWS = {"reshape", "broadcast_in_dim", "squeeze", "expand_dims", "slice", "rev", "transpose"}
CALLS = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat"}


def _nbytes(v) -> int:
    aval = getattr(v, "aval", None)
    shape = getattr(aval, "shape", None)
    if shape is None:
        return 0
    n = 1
    for d in shape:
        n *= int(d)
    return n * aval.dtype.itemsize


def count(jaxpr, tally: collections.Counter) -> int:
    """Tally the primitives of a jaxpr and return the bytes its launching operations read
    and write (each operand and result once: what an eager backend moves through memory
    when nothing stays in a cache). Calls are entered; a conditional counts its costlier
    branch (the kernels' conditionals that are rarely taken are left out by the caller:
    bench_workloads.rare_branches)."""
    traffic = 0
    for e in jaxpr.eqns:
        name = e.primitive.name
        if name == "cond":
            branches = []
            for br in e.params["branches"]:
                t = collections.Counter()
                branches.append((count(br.jaxpr, t), t))
            b, t = max(branches, key=lambda bt: sum(bt[1].values()))
            tally.update(t)
            traffic += b
            continue
        subs = [v for v in e.params.values() if hasattr(v, "jaxpr") or hasattr(v, "eqns")]
        if name in CALLS and subs:
            for s in subs:
                traffic += count(getattr(s, "jaxpr", s), tally)
            continue
        tally[name] += 1
        if name not in VIEWS:
            traffic += sum(_nbytes(v) for v in e.invars) + sum(_nbytes(v) for v in e.outvars)
    return traffic


@contextlib.contextmanager
def eager_forms(powers: bool):
    """The kernels' eager forms under a JAX trace: payback by cumulative sums (numpy,
    CuPy) and, with powers, the IRR's polynomials from a table of powers (CuPy)."""
    import stresstest.kernels.irr as irr
    import stresstest.kernels.metrics as metrics

    saved = metrics.is_jax_namespace, irr._powers_form
    metrics.is_jax_namespace = lambda xp: False
    irr._powers_form = lambda xp: powers
    try:
        yield
    finally:
        metrics.is_jax_namespace, irr._powers_form = saved


def fusions(fn, args) -> int | None:
    """Fusions and library calls in the entry computation XLA compiles fn into."""
    try:
        import jax.numpy as jnp

        text = fn.lower(*args, jnp.asarray(0)).compile().as_text()
    except Exception:  # best effort across JAX versions
        return None
    entry = text[text.find("ENTRY"):]
    entry = entry[:entry.find("\n}")]
    return sum(1 for line in entry.splitlines() if " fusion(" in line or "custom-call(" in line)


def main() -> None:
    import jax
    import jax.numpy as jnp

    from bench_workloads import rare_branches
    from stresstest.backends import make_backend
    from stresstest.config import load_portfolio
    from stresstest.loaders import load_scenario
    from stresstest.engine import GPU_BUDGET, default_chunk_size, prepare
    from stresstest.mc_paths import prepare as mc_prepare
    from stresstest.presets import list_presets

    be = make_backend("jax")
    pf = load_portfolio(list_presets()["example"])
    sc = load_scenario(list_presets()["default_grid"], pf)
    mc = load_scenario(list_presets()["montecarlo"], pf)
    grid_chunk = default_chunk_size(pf, sc.size, GPU_BUDGET)

    def w1():
        run = prepare(pf, sc, be, chunk_size=grid_chunk)
        return run._fn, run._args, run.chunk_size

    def w4():
        run = mc_prepare(pf, mc, be, chunk_size=default_chunk_size(pf, mc.paths, GPU_BUDGET))
        return run._fn, run._args, run.chunk_size

    print(f"# {be.describe()}, jax {jax.__version__}; example portfolio, GPU chunk sizes")
    print(f"{'workload':<10}{'form':<34}{'chunk':>7}{'ops':>7}{'views':>7}{'KB/point':>10}"
          f"{'  largest op counts'}")
    for label, make in (("W1", w1), ("W4", w4)):
        for form, ctx in (("JAX (Horner, payback recurrence)", contextlib.nullcontext()),
                          ("numpy (Horner, cumulative sums)", eager_forms(False)),
                          ("CuPy (powers, cumulative sums)", eager_forms(True))):
            with ctx, rare_branches("skip"):
                fn, args, chunk = make()
                plain = getattr(fn, "__wrapped__", fn)  # the traced function: a jit with compiler options
                jaxpr = jax.make_jaxpr(lambda *a: plain(*a))(*args, jnp.asarray(0)).jaxpr  # cannot nest
                t = collections.Counter()
                traffic = count(jaxpr, t)
                fused = fusions(fn, args) if form.startswith("JAX") else None
            views = sum(v for k, v in t.items() if k in VIEWS)
            ops = sum(t.values()) - views
            top = ", ".join(f"{k} {v}" for k, v in t.most_common() if k not in VIEWS)
            top = top[:48] + ("..." if len(top) > 48 else "")
            print(f"{label:<10}{form:<34}{chunk:>7}{ops:>7}{views:>7}{traffic / chunk / 1e3:>10.1f}  {top}")
            if fused is not None:
                print(f"{'':<10}{'  XLA fusions and calls, ' + jax.default_backend():<34}{'':>7}{fused:>7}")


if __name__ == "__main__":
    main()
