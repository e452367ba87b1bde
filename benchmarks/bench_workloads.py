"""The four workloads of the performance issue, each against the plain numpy backend and
the machine's roofline, in one run.

    W1  the default four-shock grid on the example portfolio, every output
    W2  a large grid streamed to HDF5 (--w2 points, default 10^7), the I/O included
    W3  W1 with the full sensitivity set
    W4  Monte Carlo paths with summaries (--w4 paths, default 10^6)

A standalone script (never collected by pytest). Compile time is reported apart; every
time is the median of --repeats synchronised runs; throughput is in scenario- (or path-)
cluster-months per second; peak memory is the resident set above the level at entry.

Roofline: XLA's cost analysis of the compiled chunk function gives its floating-point
operations and the bytes it accesses per chunk; divided by the chunk's
scenario-cluster-months they give the kernel's needs per scm. The machine's ceilings are
measured here, just before and after each workload's timed runs (the higher of the two
counts): a large matrix product (arithmetic) and a large copy (bandwidth). The limit is
min(flops/s / flops-per-scm, bytes/s / bytes-per-scm), printed beside the achieved rate.
On a GPU every output of every chunk is also copied to the host: a third ceiling (a
256 MiB array copied back) over the outputs' bytes per scm is a third roof.

XLA counts a conditional at its costlier branch, taken or not. The IRR's second Newton
pass (kernels/irr.py, `other_side`: rows whose two brackets overlap in |i|) is such a
branch, rarely taken; the flops the limit divides by are those of the chunk function
compiled without it when the numpy baseline (W4's on a sample of the paths) has no row
that takes it (XLA's own count is printed beside them), and XLA's count otherwise.

On a GPU the roofline share is the target (>= 50 %); CuPy has no cost analysis, so its
limit uses JAX's count of the same workload when JAX ran first in the same process.

Workloads run one after another, each on every backend of --backend in turn (W1, W3,
W4, W2), and a summary table closes the run, also when `timeout` stops it (SIGTERM);
--budget skips the workloads that would start after that many seconds.

    python benchmarks/bench_workloads.py                 # CPU, every workload
    python benchmarks/bench_workloads.py --only W1,W3 --repeats 5
    python benchmarks/bench_workloads.py --w2 1e6 --w4 1e5   # quicker
    python benchmarks/bench_workloads.py --backend jax,cupy --only W1,W3,W4 --w1 1e7 --w3 1e6 \
        --w4 1e7 --numpy-repeats 1 --numpy-limit 20000 --no-plain --budget 100   # the GPU check's
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import tempfile
import time

import numpy as np
from bench_grid import PeakMemory, bench_h5, grid_of_size, measure, timed_pass

from stresstest.backends import BackendError, make_backend
from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.engine import prepare
from stresstest.presets import list_presets


def ceilings(backend) -> tuple[float, float, float | None]:
    """(flop/s of a 2048^2 float64 matrix product, bytes/s of a 256 MiB copy, bytes/s of a
    256 MiB array copied from a GPU to the host, None on the CPU), medians."""
    xp = backend.xp
    a = backend.asarray(np.random.default_rng(0).random((2048, 2048)))
    mm = backend.compile(lambda a: a @ a)
    cp = backend.compile(lambda x: x * 1.0000001)
    x = backend.asarray(np.ones(32 * 2**20))  # 256 MiB of float64
    for f, arg in ((mm, a), (cp, x)):
        backend.to_numpy(f(arg)[:1])
    t_mm, t_cp, t_host = [], [], []
    for _ in range(5):
        t0 = time.perf_counter()
        backend.to_numpy(mm(a)[:1])
        t_mm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        y = cp(x)
        backend.to_numpy(y[:1])
        t_cp.append(time.perf_counter() - t0)
        if backend.is_gpu:  # a fresh array each time: JAX keeps an array's host copy
            t0 = time.perf_counter()
            backend.to_numpy(y)
            t_host.append(time.perf_counter() - t0)
    del xp
    host = x.nbytes / statistics.median(t_host) if t_host else None
    return 2 * 2048**3 / statistics.median(t_mm), 2 * x.nbytes / statistics.median(t_cp), host


# the CPU targets of issue 29 for W1 and W4 (scenario-cluster-months per second), W1's
# ratio to the numpy backend in the same run, and W3's time against W1's
W1_TARGET, W4_TARGET, W1_NUMPY_RATIO, W3_OVER_W1 = 8e7, 2e7, 15, 3.0


def cost_per_scm(run, scm_per_chunk: int) -> tuple[float, float, float, float, float] | None:
    """(flops, bytes XLA accesses, bytes that must move) per scenario-cluster-month, the
    chunk function's scratch memory (bytes), and the bytes of its outputs per scm (on a
    GPU they cross to the host: every output of every chunk is copied back).

    The flops and accessed bytes come from XLA's cost analysis of the compiled chunk
    function (JAX only); accessed bytes count every intermediate, much of which stays in
    the caches. The bytes that must move are the chunk's inputs and outputs: the
    compulsory traffic, the bandwidth roof's denominator. The scratch is XLA's temporary
    buffer: above 32 MiB (glibc's largest mmap threshold) the CPU runtime's allocation
    of it is a fresh mapping on every call, and every page of it faults once per chunk
    (benchmarks/README.md).
    """
    fn = run._fn
    if not hasattr(fn, "lower"):
        return None
    try:
        import jax
        import jax.numpy as jnp

        compiled = fn.lower(*run._args, jnp.asarray(0)).compile()
        cost = compiled.cost_analysis()
        if isinstance(cost, list):
            cost = cost[0]
        outs = jax.eval_shape(fn, *run._args, jnp.asarray(0))
        out = sum(np.prod(o.shape) * o.dtype.itemsize for o in jax.tree_util.tree_leaves(outs))
        io = out + sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(run._args))
        try:
            temp = float(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # not every backend reports it
            temp = float("nan")
        # XLA's cost analysis counts a loop's body once: a chunk evaluated in pieces
        # (engine.CPU_PIECES, one lax.map) is counted as one piece
        per_counted = scm_per_chunk * getattr(run, "piece_size", run.chunk_size) / run.chunk_size
        return (cost["flops"] / per_counted, cost["bytes accessed"] / per_counted, io / scm_per_chunk,
                temp, out / scm_per_chunk)
    except Exception:  # cost analysis is best effort across JAX versions
        return None


def around(b, timed):
    """(timed(), (flop/s, bytes/s, host bytes/s or None), note): the ceilings measured just
    before and just after the timed runs, and the higher of each pair. A shared machine's
    speed can drift widely within minutes (benchmarks/README.md, "Measurements behind
    design choices in the code"); ceilings measured in another phase than the workload
    would misstate its share."""
    c0 = ceilings(b)
    out = timed()
    c1 = ceilings(b)
    note = (f"ceilings before/after: {c0[0] / 1e9:.1f}/{c1[0] / 1e9:.1f} GFLOP/s, "
            f"{c0[1] / 1e9:.1f}/{c1[1] / 1e9:.1f} GB/s")
    if c0[2] is not None:
        note += f", to the host {c0[2] / 1e9:.1f}/{c1[2] / 1e9:.1f} GB/s"
    host = max(c0[2], c1[2]) if c0[2] is not None else None
    return out, (max(c0[0], c1[0]), max(c0[1], c1[1]), host), note


# kernels.irr's conditional branches that few rows take (the second side's Newton pass)
RARE_BRANCHES = ("other_side",)


@contextlib.contextmanager
def rare_branches(mode: str):
    """mode "skip": kernels.irr's rare branches fall through (for the cost analysis of a
    chunk function prepared inside); mode "count": yields [rows that took one, rows],
    counted on eager (numpy) runs inside."""
    import stresstest.kernels.irr as irr

    orig, tally = irr.when_any, [0, 0]

    def patched(xp, pred, fn, otherwise, *operands):
        if fn.__name__ not in RARE_BRANCHES:
            return orig(xp, pred, fn, otherwise, *operands)
        if mode == "skip":
            return otherwise(*operands)
        tally[0] += int(np.count_nonzero(np.asarray(pred)))
        tally[1] += int(np.asarray(pred).size)
        return orig(xp, pred, fn, otherwise, *operands)

    irr.when_any = patched
    try:
        yield tally
    finally:
        irr.when_any = orig


def executed_flops(make_run, scm_of, taken) -> tuple[float | None, str]:
    """Flops per scm that the chunk function executes on this workload, and a note:
    `make_run()` prepares the JAX run, `scm_of(run)` gives its scm per chunk, and `taken`
    is (rows that took a rare branch, rows), counted by rare_branches("count") on a numpy
    run of the workload or a sample of it."""
    if taken[0]:
        return None, f"; the IRR's second-side pass taken in {taken[0]:,} of {taken[1]:,} row solves, counted in full"
    with rare_branches("skip"):
        run = make_run()
        c = cost_per_scm(run, scm_of(run))
    if c is None:
        return None, ""
    return c[0], f"; the IRR's second-side pass, taken in none of {taken[1]:,} row solves on numpy, left out"


def roofline(run, scm_per_chunk, peaks, achieved, target=None, executed=(None, ""),
             cost=None) -> tuple[str, float | None, tuple | None]:
    """(the roofline line, achieved / limit, the cost used); with `target` (scm/s), the
    line also says how the target compares with the limit: a target above it cannot be
    met on this machine at this flop count. `peaks`: the ceilings (around(...)); on a GPU
    the copy of the outputs to the host is a third roof. `executed`: executed_flops(...),
    the flops the limit divides by when known. `cost`: cost_per_scm of the same workload
    on JAX, for a backend without a cost analysis (CuPy runs the same array program: the
    same flops and the same inputs and outputs)."""
    peak_flops, peak_bw, peak_host = peaks
    c = cost_per_scm(run, scm_per_chunk)
    borrowed = c is None and cost is not None
    if c is None:
        if cost is None:
            return "roofline: no cost analysis on this backend", None, None
        c, executed = cost, (cost[0], " (JAX's count of the same program)")
    counted, accessed, must, temp, out = c
    flops = executed[0] or counted
    used = (flops, accessed, must, temp, out)
    roofs = {"compute": peak_flops / flops, "memory": peak_bw / must}
    if peak_host is not None:
        roofs["host-copy"] = peak_host / out
    bound = min(roofs, key=roofs.get)
    limit = roofs[bound]
    what = (f"{flops:.0f} flop executed ({counted:.0f} counted by XLA{executed[1]})"
            if executed[0] and not borrowed else f"{flops:.0f} flop{executed[1]}")
    scratch = "" if borrowed else f"; XLA scratch {temp / 2**20:.1f} MiB a chunk"
    text = (f"roofline: {what}, {must:.1f} B to move per scm"
            + ("" if borrowed else f" ({accessed:.0f} B accessed by XLA)")
            + (f", {out:.2f} B of outputs to the host per scm" if peak_host is not None else "")
            + f" -> limit {limit:.3g} scm/s ({bound}-bound); achieved {achieved:.3g} = "
            f"{100 * achieved / limit:.1f} %{scratch}"
            + (f"; the target {target:.3g} is {100 * target / limit:.0f} % of the limit" if target else ""))
    return text, achieved / limit, used


def mc_run(pf, paths, backend_name, chunk=None):
    """The bundled Monte Carlo scenario with `paths` paths, prepared on a backend."""
    from stresstest.mc_paths import prepare as mc_prepare

    mc = load_scenario(list_presets()["montecarlo"], pf)
    mc.paths = paths
    return mc_prepare(pf, mc, make_backend(backend_name), chunk)


def mc_measure(pf, paths, backend_name, repeats, chunk=None):
    """The run's median seconds, with the summaries as `stresstest run` keeps them (its
    threads, Summary.workers, and the chunks computed ahead of them, chunks_ahead);
    "summary_s" is the median host time spent in them."""
    from stresstest.mc_summary import Summary
    from stresstest.montecarlo import chunks_ahead, summary_workers

    t0 = time.perf_counter()
    run = mc_run(pf, paths, backend_name, chunk)
    mc, b = run.scenario, run.backend
    next(run.chunks(0, run.chunk_size))
    compile_s = time.perf_counter() - t0
    times, summary_s = [], []
    workers = summary_workers(b)
    with PeakMemory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            s = Summary(len(pf.clusters), pf.horizon_months, mc.hurdle_irr, mc.covenant_dscr, workers)
            host = 0.0
            for c in run.chunks(ahead=chunks_ahead(run)):
                t1 = time.perf_counter()
                s.add(c.outputs, c.start)
                host += time.perf_counter() - t1
            t1 = time.perf_counter()
            s.risk()
            summary_s.append(host + time.perf_counter() - t1)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    pcm = paths * len(pf.clusters) * pf.horizon_months
    return {"backend": b.describe(), "compile_s": compile_s, "median_s": med, "scm_per_s": pcm / med,
            "peak_mib": mem.delta_mib, "run": run, "chunk": run.chunk_size,
            "summary_s": statistics.median(summary_s), "workers": workers}


def normal_draw_bound(pf, spec) -> tuple[float, float, float]:
    """(normals per path-cluster-month, numpy's ziggurat normals/s on one core, the
    path-cluster-months/s that its rate on every core would allow for the draws alone).

    An independent ceiling for W4 on the CPU: each path needs one standard normal per
    series and month (MODEL.md), whatever generator draws them."""
    per_pcm = spec.n_series / len(pf.clusters)
    g = np.random.default_rng(0)
    buf = np.empty(4_000_000)
    g.standard_normal(out=buf)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        g.standard_normal(out=buf)
        rates.append(buf.size / (time.perf_counter() - t0))
    rate = max(rates)
    return per_pcm, rate, rate * (os.cpu_count() or 1) / per_pcm


def w2(pf, n, backend_name, compression, pairs, label):
    """W2: the grid computed alone (every chunk summarised as a run does) and streamed to
    HDF5 through `stresstest run`'s own path, alternated in pairs; the compiled chunk
    function is shared (compiled once, apart), so the pairs differ only by the writing."""
    import stresstest.runner as runner
    from stresstest.engine import Extremes

    sc2 = grid_of_size(n, pf)
    b = make_backend(backend_name)
    compiled = {}

    def shared_prepare(pf_, sc_, be, chunk_size=None, sensitivities=False):
        key = (sc_.size, sensitivities)
        if key not in compiled:
            compiled[key] = prepare(pf_, sc_, be, chunk_size, sensitivities=sensitivities)
        return compiled[key]

    runner.prepare = shared_prepare
    t0 = time.perf_counter()
    run = shared_prepare(pf, sc2, b)
    next(run.chunks(0, run.chunk_size))
    compile_s = time.perf_counter() - t0
    alone, streamed, ratios, writer, last = [], [], [], [], None
    for _ in range(pairs):
        with PeakMemory():
            t0 = time.perf_counter()
            ex = Extremes()
            for c in run.chunks():
                ex.update(c)
            alone.append(time.perf_counter() - t0)
        last = bench_h5(pf, n, backend_name, compression)
        streamed.append(last["seconds"])
        ratios.append(streamed[-1] / alone[-1])
        writer.append(last["writing_s"] / (last["seconds"] - last["writing_s"]))
    med = statistics.median(streamed)
    over = statistics.median(ratios) - 1
    line("W2", {"backend": last["backend"], "compile_s": compile_s, "median_s": med,
                "scm_per_s": sc2.size * len(pf.clusters) * pf.horizon_months / med, "peak_mib": last["peak_mib"]})
    print(f"     W2: {sc2.size:,} points; compute alone {statistics.median(alone):.1f} s, streamed to HDF5 "
          f"{med:.1f} s: writing adds {100 * over:.0f} % (median of {pairs} paired ratios; target <= 20 %); "
          f"file {last['file_mib']:.0f} MiB ({label}); peak {last['peak_mib']:.0f} MiB (target <= 2048)")
    how = "beside the computation" if b.is_gpu else "with the computation paused"
    print(f"     W2: time in the writer ({how}) {100 * statistics.median(writer):.0f} % of the rest of the "
          f"streamed run (median of {pairs}; per run: {', '.join(f'{100 * w:.0f}' for w in writer)} %)")
    return over, last["peak_mib"], sc2.size


def line(name, r, ratio=None):
    rs = f"{ratio:.1f}x" if ratio else "-"
    print(f"{name:<5}{r['backend']:<30}{r['compile_s']:>10.2f}{r['median_s']:>10.3f}{r['scm_per_s']:>11.3g}"
          f"{rs:>9}{r['peak_mib']:>10.0f}")


# the performance issue's GPU targets: W1 on JAX, CuPy's W1 against JAX's, and the share
# of the roofline limit every workload should reach on a GPU
GPU_W1_TARGET, CUPY_WITHIN, GPU_ROOF_SHARE = 2e10, 3.0, 0.5


class Table:
    """One row per workload and backend, printed together at the end (the GPU check's table)."""

    def __init__(self):
        self.rows = []

    def add(self, workload, backend, size, r=None, ratio=None, roof=None, verdict="", note=""):
        self.rows.append((workload, backend, size, r, ratio, roof, verdict, note))

    def print(self):
        print("\n# summary")
        print("| workload | backend | size | compile s | median s | scm/s | vs numpy | peak MiB | of roofline "
              "| target |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for w, be, size, r, ratio, roof, verdict, note in self.rows:
            if r is None:
                print(f"| {w} | {be} | {size} | - | - | - | - | - | - | {note} |")
                continue
            print(f"| {w} | {be} | {size} | {r['compile_s']:.1f} | {r['median_s']:.3f} | {r['scm_per_s']:.3g} | "
                  f"{f'{ratio:.1f}x' if ratio else '-'} | {r['peak_mib']:.0f} | "
                  f"{f'{100 * roof:.0f} %' if roof else '-'} | {verdict}{'; ' + note if note else ''} |")


def met(ok: bool, what: str) -> str:
    return f"{what}: {'met' if ok else 'NOT met'}"


def roof_met(roof: float | None) -> str:
    """The GPU target on the share of the roofline limit."""
    return met(roof is not None and roof >= GPU_ROOF_SHARE, ">= 50 % of the roofline")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="W1,W2,W3,W4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="jax",
                    help="a backend, or several separated by commas (jax,cupy): the numpy baselines "
                         "run once and every backend goes in one table")
    ap.add_argument("--w1", default="default",
                    help="W1's grid: 'default' (the bundled default grid) or a number of points of "
                         "the same four shocks (a GPU size: 1e7)")
    ap.add_argument("--w3", default="default", help="W3's grid, as --w1")
    ap.add_argument("--w2", type=float, default=1e7)
    ap.add_argument("--w4", type=float, default=1e6)
    ap.add_argument("--compression", default="gzip", help="W2's HDF5 compression: gzip, lzf or none")
    ap.add_argument("--w2-pairs", type=int, default=1,
                    help="W2: pairs of (compute alone, streamed to HDF5) runs, alternated")
    ap.add_argument("--numpy-limit", type=float, default=2e5,
                    help="the numpy baselines of W1 run at most this many grid points")
    ap.add_argument("--numpy-repeats", type=int, default=None, help="default: --repeats")
    ap.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                    help="W1 also on the backend evaluating every point in full")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds: a workload that would start after this is skipped (0: none)")
    return ap.parse_args(argv)


def header(b):
    """The heading of a backend's rows (`line`'s columns)."""
    print(f"\n# {b.describe()}")
    print(f"{'':<5}{'backend':<30}{'compile s':>10}{'median s':>10}{'scm/s':>11}{'vs numpy':>9}"
          f"{'peak MiB':>10}")


class Workloads:
    """One run of the script: its options, the example portfolio, the summary table, the
    numpy baselines (run once, whatever the backends) and JAX's cost figures (which
    CuPy's roofline borrows, and its W1 time, which CuPy's is held against)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t_start = time.perf_counter()
        self.np_repeats = args.numpy_repeats or args.repeats
        self.limit = int(args.numpy_limit)
        self.pf = load_portfolio(list_presets()["example"])
        self.table = Table()
        self.base, self.jax_costs, self.jax_w1 = {}, {}, None

    def scm_chunk(self, run) -> int:
        """Scenario-cluster-months of one chunk of `run`."""
        return run.chunk_size * len(self.pf.clusters) * self.pf.horizon_months

    def grid(self, size):
        """The grid of --w1 or --w3: the bundled default grid, or that many points."""
        pf = self.pf
        return load_scenario(list_presets()["default_grid"], pf) if size == "default" else grid_of_size(
            int(float(size)), pf)

    def numpy_sample(self, sc):
        """The points the numpy baselines run on a grid: all, or the first --numpy-limit."""
        return None if sc.size <= self.limit else self.limit

    def numpy_baselines(self, sc, label):
        """The plain numpy backend on W1's grid (a sample of at most --numpy-limit points),
        and numpy interpolated alike, counting its IRR rows that take the rare branch."""
        if label not in self.base:
            plain = measure(self.pf, sc, "numpy", self.np_repeats, limit=self.numpy_sample(sc), factor=False)
            with rare_branches("count") as taken:
                factored = measure(self.pf, sc, "numpy", self.np_repeats, limit=self.numpy_sample(sc))
            self.base[label] = (plain, factored, taken)
        return self.base[label]

    def numpy_w4(self, n):
        """W4's numpy baseline, once: (its measure, rare-branch rows taken, paths)."""
        if "W4" not in self.base:
            # numpy on a sample: a twentieth of the paths, at most 50,000 (the GPU check's
            # 10^7 paths would otherwise give numpy 500,000, past its time limit)
            sample = min(max(1000, n // 20), 50_000)
            with rare_branches("count") as taken4:
                self.base["W4"] = (mc_measure(self.pf, sample, "numpy", 1), taken4, sample)
        return self.base["W4"]

    def alternated_ratio(self, w1, np_plain, sc) -> float:
        """W1's ratio to numpy from alternated passes (backend, then numpy), the median of
        the pairs' ratios: the separate runs are minutes apart, and this machine's speed
        drifts."""
        pairs, secs = [], []
        for _ in range(self.np_repeats):
            t_b, n_b = timed_pass(w1["run"], None)
            t_n, n_n = timed_pass(np_plain["run"], self.numpy_sample(sc))
            pairs.append((n_b / t_b) / (n_n / t_n))
            secs.append(f"{t_b:.3f}/{t_n:.2f}")
        paired = statistics.median(pairs)
        print(f"     W1 vs numpy in {len(pairs)} alternated pairs: median {paired:.1f}x "
              f"({', '.join(f'{p:.1f}' for p in pairs)}; s per pass {', '.join(secs)})")
        return paired

    def w1_verdicts(self, name, gpu, w1, roof, ratio, paired) -> list[str]:
        """W1 against its targets: on a GPU the rate (JAX) or the distance to JAX (CuPy)
        and the roofline share, on the CPU the rate and the ratio to numpy."""
        if gpu:
            verdicts = [roof_met(roof)]
            if name == "jax":
                verdicts.insert(0, met(w1["scm_per_s"] >= GPU_W1_TARGET, ">= 2e10"))
            elif self.jax_w1 is not None:
                within = self.jax_w1["scm_per_s"] / w1["scm_per_s"]
                verdicts.insert(0, met(within <= CUPY_WITHIN, f"within 3x of JAX ({within:.2f}x)"))
            return verdicts
        return [met(w1["scm_per_s"] >= W1_TARGET, f">= {W1_TARGET:.0e}"),
                met(paired >= W1_NUMPY_RATIO, f">= {W1_NUMPY_RATIO}x numpy ({paired:.1f}x in alternated pairs, "
                                              f"{ratio:.1f}x from the separate medians)")]

    def run_w1(self, name, b):
        """W1: the engine's default (affine axes interpolated) on the backend, the same
        backend evaluating every point in full, and the plain numpy backend as the baseline."""
        args, pf = self.args, self.pf
        gpu = b.is_gpu
        sc = self.grid(args.w1)
        w1, peaks, note = around(b, lambda: measure(pf, sc, name, args.repeats))
        np_plain, np_fact, taken = self.numpy_baselines(sc, args.w1)
        ratio = w1["scm_per_s"] / np_plain["scm_per_s"]
        line("W1", w1, ratio)
        if args.plain:
            w1_plain = measure(pf, sc, name, args.repeats, factor=False)
            line("", w1_plain, w1_plain["scm_per_s"] / np_plain["scm_per_s"])
        line("", np_plain)
        line("", np_fact, np_fact["scm_per_s"] / np_plain["scm_per_s"])
        print(f"     W1 vs numpy with the same interpolation: {w1['scm_per_s'] / np_fact['scm_per_s']:.1f}x"
              + (f" (numpy on {np_plain['points']:,} of {sc.size:,} points)" if np_plain["points"] < sc.size
                 else ""))
        paired = self.alternated_ratio(w1, np_plain, sc)
        run = w1["run"]
        ex = executed_flops(lambda: prepare(pf, sc, b), self.scm_chunk, taken) if name == "jax" else (None, "")
        text, roof, used = roofline(run, self.scm_chunk(run), peaks, w1["scm_per_s"],
                                    None if gpu else W1_TARGET, ex, cost=self.jax_costs.get("W1"))
        print(f"     {note}\n     {text}")
        if name == "jax":
            self.jax_costs["W1"], self.jax_w1 = used, w1
        verdicts = self.w1_verdicts(name, gpu, w1, roof, ratio, paired)
        self.table.add("W1", name, f"{sc.size:,} points", w1, paired, roof, "; ".join(verdicts))

    def run_w3(self, name, b):
        """W3: W1's grid with every gradient, timed in pairs against the forward pass."""
        from bench_sensitivities import compile_time, paired

        args, pf = self.args, self.pf
        sc = self.grid(args.w3)
        fwd, sen = prepare(pf, sc, b), prepare(pf, sc, b, sensitivities=True)
        c_s = compile_time(sen)
        compile_time(fwd)
        (times, mem, ratios), peaks, note = around(b, lambda: paired(fwd, sen, args.repeats))
        med = statistics.median(times["+gradients"])
        scm = sc.size * len(pf.clusters) * pf.horizon_months
        w3 = {"backend": b.describe(), "compile_s": c_s, "median_s": med, "scm_per_s": scm / med,
              "peak_mib": mem["+gradients"]}
        line("W3", w3)
        r3 = statistics.median(ratios)
        print(f"     W3 / W1 time: median of paired ratios {r3:.2f}x (target <= {W3_OVER_W1:g}x)")
        if args.w3 in self.base:  # W1's grid: its numpy baseline counted the IRR rows
            taken = self.base[args.w3][2]
        else:
            with rare_branches("count") as taken:
                measure(pf, sc, "numpy", 1, limit=self.numpy_sample(sc))
        ex = executed_flops(lambda: prepare(pf, sc, b, sensitivities=True), self.scm_chunk, taken)
        text, roof, _ = roofline(sen, self.scm_chunk(sen), peaks, scm / med, executed=ex)
        print(f"     {note}\n     {text}")
        verdicts = [met(r3 <= W3_OVER_W1, f"<= {W3_OVER_W1:g}x W1 ({r3:.2f}x)")]
        if b.is_gpu:
            verdicts.append(roof_met(roof))
        self.table.add("W3", name, f"{sc.size:,} points", w3, None, roof, "; ".join(verdicts))

    def run_w2(self, name, b):
        """W2: a large grid streamed to HDF5 (the function `w2`)."""
        args = self.args
        compression = None if args.compression == "none" else args.compression
        over, peak, points = w2(self.pf, int(args.w2), name, compression, args.w2_pairs, args.compression)
        self.table.add("W2", name, f"{points:,} points", None,
                       note=f"{met(over <= 0.2, f'writing adds {100 * over:.0f} % <= 20 %')}; "
                            f"{met(peak <= 2048, f'peak {peak:.0f} MiB <= 2 GiB')}")

    def run_w4(self, name, b):
        """W4: Monte Carlo paths with summaries, against numpy on a sample of the paths."""
        pf = self.pf
        n = int(self.args.w4)
        w4, peaks, note = around(b, lambda: mc_measure(pf, n, name, self.args.repeats))
        np4, taken4, sample = self.numpy_w4(n)
        ratio = w4["scm_per_s"] / np4["scm_per_s"]
        line("W4", w4, ratio)
        line("", np4)
        run = w4["run"]
        ex = executed_flops(lambda: mc_run(pf, n, name), self.scm_chunk, taken4) if name == "jax" else (None, "")
        text, roof, used = roofline(run, self.scm_chunk(run), peaks, w4["scm_per_s"],
                                    None if b.is_gpu else W4_TARGET, ex, cost=self.jax_costs.get("W4"))
        print(f"     {note}\n     {text}  ({n:,} paths; numpy on {sample:,})")
        print(f"     summaries on the host: {w4['summary_s']:.3f} s of the {w4['median_s']:.3f} s "
              f"({100 * w4['summary_s'] / w4['median_s']:.0f} %), {w4['workers']} thread(s)")
        if not b.is_gpu:
            per_pcm, rate, bound = normal_draw_bound(pf, run.scenario.spec)
            print(f"     the draws alone: {per_pcm:.0f} standard normals per path-cluster-month; numpy's "
                  f"ziggurat makes {rate:.3g}/s on one core, so {os.cpu_count()} cores of it allow at most "
                  f"{bound:.3g} path-cluster-months/s before any cash flow (the target is "
                  f"{100 * W4_TARGET / bound:.0f} % of that)")
        if name == "jax":
            self.jax_costs["W4"] = used
        verdict = (roof_met(roof) if b.is_gpu
                   else met(w4["scm_per_s"] >= W4_TARGET, f">= {W4_TARGET:.0e}"))
        self.table.add("W4", name, f"{n:,} paths", w4, ratio, roof, verdict)

    def run_all(self, backends):
        """Workload by workload, every backend in turn, W2 (the longest) last; W3 on JAX
        only (the gradients need it), W2 on the first backend only."""
        args = self.args
        only = set(args.only.split(","))
        plan = [("W1", args.w1, self.run_w1, None), ("W3", args.w3, self.run_w3, "jax"),
                ("W4", f"{args.w4:.0e}", self.run_w4, None), ("W2", f"{args.w2:.0e}", self.run_w2, "first")]
        for workload, size, fn, which in plan:
            if workload not in only:
                continue
            for k, (name, b) in enumerate(backends):
                if which == "jax" and name != "jax":
                    self.table.add(workload, name, size, note="gradients need JAX")
                    continue
                if which == "first" and k > 0:
                    continue
                if args.budget and time.perf_counter() - self.t_start > args.budget:
                    self.table.add(workload, name, size, note=f"skipped: past the {args.budget:.0f} s budget")
                    continue
                header(b)
                fn(name, b)


def open_backends(names, table) -> list:
    """(name, backend) for each of --backend that is available, its ceilings printed; an
    unavailable one goes into the table as such."""
    backends = []
    for name in names:
        try:
            b = make_backend(name)
        except BackendError as exc:
            table.add("-", name, "-", note=f"backend unavailable: {exc}")
            continue
        flops, bw, host = ceilings(b)
        print(f"# {b.describe()}: ceilings {flops / 1e9:.1f} GFLOP/s (2048^2 matmul), {bw / 1e9:.1f} GB/s "
              "(copy)" + (f", {host / 1e9:.1f} GB/s to the host" if host else "")
              + "; measured again around each workload's timed runs")
        backends.append((name, b))
    return backends


def main(argv=None):
    work = Workloads(parse_args(argv))

    def stop(signum, frame):  # `timeout` ends the run: the table of what was measured still prints
        raise SystemExit(f"stopped by signal {signum} after {time.perf_counter() - work.t_start:.0f} s")

    signal.signal(signal.SIGTERM, stop)
    print(f"# stresstest workloads  {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()} "
          f"{os.cpu_count()} cpus")
    try:
        work.run_all(open_backends(work.args.backend.split(","), work.table))
    finally:
        work.table.print()
        print(f"# {time.perf_counter() - work.t_start:.0f} s in all")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
