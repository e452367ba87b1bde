"""Grid throughput: the default grid and a 10^6-point grid, JAX against the numpy baseline.

A standalone script (never collected by pytest). Every figure is the median of
several synchronised runs with compile time reported apart; throughput is in
scenario-cluster-months per second (grid points x clusters x months); peak memory is
the process's resident set sampled during the run, minus what it held before.

    python benchmarks/bench_grid.py                 # default grid + 10^6 grid
    python benchmarks/bench_grid.py --h5 10000000   # also stream a 10^7 grid to HDF5
    python benchmarks/bench_grid.py --backends jax,cupy --sizes 1e7   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from stresstest.backends import make_backend
from stresstest.config import load_portfolio
from stresstest.grid_config import Axis, Scenario
from stresstest.loaders import load_scenario
from stresstest.engine import prepare
from stresstest.kernels.params import NAMED_SHOCKS
from stresstest.kernels.shocks import AxisSpec
from stresstest.presets import list_presets


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every 5 ms."""

    def __enter__(self):
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def grid_of_size(n: int, pf) -> Scenario:
    """The four named shocks with about n points in all (n^(1/4) values each)."""
    side = max(1, round(n ** 0.25))
    sizes = [side, side, side, max(1, round(n / side**3))]
    spans = {"utilization": (-0.4, 0.1), "price": (0.3, 1.4), "energy": (0.5, 3.0),
             "obsolescence": (-18, 18)}
    axes = []
    for (shock, (targets, op, _)), k in zip(NAMED_SHOCKS.items(), sizes):
        axes.append(Axis(shock, AxisSpec(shock, targets, op), np.linspace(*spans[shock], k),
                         shock, None, None))
    return Scenario("<generated>", "grid", f"grid-{n:.0e}", axes)


def measure(pf, sc, backend_name, repeats, limit=None, chunk_size=None, factor=True):
    """factor=False: every grid point evaluated in full (the plain baseline); True: the
    engine's default, axes in which the flows are affine interpolated (docs/model.md)."""
    b = make_backend(backend_name)
    # compile (JAX) or warm-up, apart from the timed runs
    t0 = time.perf_counter()
    run = prepare(pf, sc, b, chunk_size, factor=factor)
    next(run.chunks())
    compile_s = time.perf_counter() - t0
    times, points = [], 0
    with PeakMemory() as mem:
        for _ in range(repeats):
            secs, points = timed_pass(run, limit)
            times.append(secs)
    med = statistics.median(times)
    scm = points * len(pf.clusters) * pf.horizon_months
    label = b.describe() + ("" if run.factoring is not None else ", plain")
    return {"backend": label, "points": points, "compile_s": compile_s, "median_s": med,
            "scm_per_s": scm / med, "peak_mib": mem.delta_mib, "chunk": run.chunk_size, "run": run}


def timed_pass(run, limit):
    """Seconds for one pass over the grid (at most `limit` points) and the points done."""
    n_chunks = run.n_chunks if limit is None else max(1, min(run.n_chunks, -(-limit // run.chunk_size)))
    t0 = time.perf_counter()
    done = 0
    for k, c in enumerate(run.chunks()):
        done += c.stop - c.start
        if k + 1 >= n_chunks:
            break
    return time.perf_counter() - t0, done


def bench_h5(pf, n, backend_name, compression="gzip"):
    from stresstest.runner import run_scenario
    import yaml

    sc = grid_of_size(n, pf)
    with tempfile.TemporaryDirectory() as tmp:
        s_file = Path(tmp) / "grid.yaml"
        s_file.write_text(yaml.safe_dump({"scenario": {"kind": "grid", "axes": [
            {"shock": a.shock, "values": a.values.tolist()} for a in sc.axes]}}))
        out = Path(tmp) / "big.h5"
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            res = run_scenario(pf.path, s_file, out, backend=backend_name, progress=False,
                           compression=compression)
            secs = time.perf_counter() - t0
        size = out.stat().st_size
    scm = sc.size * len(pf.clusters) * pf.horizon_months
    return {"points": sc.size, "seconds": secs, "scm_per_s": scm / secs, "peak_mib": mem.delta_mib,
            "file_mib": size / 2**20, "backend": res.backend, "writing_s": res.writing_s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="jax,numpy")
    ap.add_argument("--sizes", default="default,1e6", help="'default' and/or grid sizes like 1e6")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-limit", type=float, default=2e5,
                    help="numpy baseline runs at most this many points of a large grid")
    ap.add_argument("--h5", type=float, default=0, help="also stream a grid of this size to HDF5")
    ap.add_argument("--chunk-size", type=int, default=None)
    args = ap.parse_args(argv)

    pf = load_portfolio(list_presets()["example"])
    print(f"# stresstest grid benchmark  {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"# portfolio: {pf.name}, {len(pf.clusters)} clusters x {pf.horizon_months} months; "
          f"median of {args.repeats} runs; every output incl. IRR")
    header = f"{'workload':<16}{'backend':<34}{'points':>11}{'compile s':>11}{'median s':>10}" \
             f"{'scm/s':>11}{'vs numpy':>10}{'peak MiB':>10}"
    print(header)
    for size in args.sizes.split(","):
        sc = load_scenario(list_presets()["default_grid"], pf) if size == "default" else grid_of_size(int(float(size)), pf)
        rows = {}
        for bname in args.backends.split(","):
            limit = int(args.numpy_limit) if bname == "numpy" else None
            try:
                rows[bname] = measure(pf, sc, bname, args.repeats, limit, args.chunk_size,
                                      factor=bname != "numpy")
            except Exception as exc:  # a backend missing here is reported, not fatal
                print(f"{sc.name[:15]:<16}{bname:<34} unavailable: {exc}")
        base = rows.get("numpy", {}).get("scm_per_s")
        for r in rows.values():
            ratio = f"{r['scm_per_s'] / base:.1f}x" if base else "-"
            print(f"{sc.name[:15]:<16}{r['backend']:<34}{r['points']:>11,}{r['compile_s']:>11.2f}"
                  f"{r['median_s']:>10.3f}{r['scm_per_s']:>11.3g}{ratio:>10}{r['peak_mib']:>10.0f}")
        sys.stdout.flush()
    if args.h5:
        bname = args.backends.split(",")[0]
        r = bench_h5(pf, int(args.h5), bname)
        print(f"# HDF5 stream: {r['points']:,} points on {r['backend']}: {r['seconds']:.1f} s, "
              f"{r['scm_per_s']:.3g} scm/s incl. writing, peak {r['peak_mib']:.0f} MiB, "
              f"file {r['file_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
