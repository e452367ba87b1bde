"""`stresstest explore` on a 10^7-point grid file: how soon the first view shows, in how much memory.

A standalone script (never collected by pytest). It makes the file once: the example
portfolio on four axes of 100 x 100 x 100 x 10 points (utilization, price, energy,
obsolescence), written by the grid writer exactly as a run lays a file out (every output
and every cluster's, gzip-compressed chunks, the config of the run), with values from a
smooth formula in place of the model's (the explorer's reads see only the layout; the model
itself takes minutes on 10^7 points: benchmarks/README.md, W2). Then it measures:

1. `stresstest explore FILE --no-browser` as a user starts it, in a fresh process:
   seconds until the address is printed (imports, the file opened and checked, the server
   up), then until the first page is served (the session's view built: every read of
   the first view, the figure's data in the page), and the server's peak resident memory
   (VmHWM) after it;
2. with --browser (needs selenium, chromium and chromium-driver): the seconds from asking
   headless chromium for the page to the heatmap drawn, the server's VmHWM after it.

    python benchmarks/bench_explore.py                    # makes /tmp/explore_bench/grid_1e7.h5 once
    python benchmarks/bench_explore.py --browser --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

AXES = """scenario:
  kind: grid
  name: explore-1e7
  axes:
    - {shock: utilization, linspace: [-0.3, 0.1, 100]}
    - {shock: price, linspace: [0.5, 1.5, 100]}
    - {shock: energy, linspace: [0.5, 2.5, 100]}
    - {shock: obsolescence, linspace: [-24, 12, 10]}
"""
CHUNK = 1 << 18  # points written at once


def make_file(path: Path) -> float:
    """The 10^7-point grid file (see the module's docstring); seconds taken."""
    from stresstest.config import config_json, load_portfolio
    from stresstest.engine import evaluate_base
    from stresstest.grid_file import GridWriter
    from stresstest.h5io import provenance
    from stresstest.kernels.params import OUTPUTS
    from stresstest.loaders import load_scenario
    from stresstest.presets import list_presets

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "grid.yaml").write_text(AXES)
        pf = load_portfolio(list_presets()["example"])
        sc = load_scenario(Path(d) / "grid.yaml", pf)
    cfg, sha = config_json(pf, sc)
    attrs = provenance(pf, sc.name, cfg, sha, "synthetic", "cpu", np.float64, n_scenarios=sc.size)
    writer = GridWriter(path, sc.axes, pf.cluster_names, attrs, np.float64, "gzip")
    shares = np.linspace(0.5, 1.5, len(pf.clusters)) / len(pf.clusters)
    values = [np.asarray(a.values, dtype=np.float64) for a in sc.axes]
    for start in range(0, sc.size, CHUNK):
        stop = min(start + CHUNK, sc.size)
        u, p, e, o = (v[i] for v, i in zip(values, np.unravel_index(np.arange(start, stop), sc.shape)))
        npv = 4e8 * u + 3e8 * (p - 1.0) - 6e7 * (e - 1.0) + 2e6 * o - 1e6
        out = {}
        for name in OUTPUTS:
            v = {"npv": npv, "irr": 0.12 + npv / 3e9, "roi": npv / 3.4e8, "equity_irr": 0.15 + npv / 2e9,
                 "min_dscr": 1.5 + npv / 4e8, "payback_months": 48 - npv / 2e7}.get(name, 4e8 + npv)
            out[name] = v
            out["cluster_" + name] = v[:, None] * shares[None, :]
        writer.write(start, stop, out)
    writer.write_base(evaluate_base(pf, np.float64))
    writer.commit()
    return time.perf_counter() - t0


def vm_hwm(pid: int) -> float:
    """A process's peak resident memory, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system): less sensitive than wall time to other
    work on a shared machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(path: Path):
    """`stresstest explore PATH --no-browser` as a user starts it: (process, url, seconds to the address)."""
    exe = shutil.which("stresstest", path=str(Path(sys.executable).parent)) or "stresstest"
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, "explore", str(path), "--no-browser"], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("explore: "):
        p.kill()
        raise SystemExit(f"explore did not start: {line!r}")
    return p, line.split()[1], time.perf_counter() - t0


def first_page(path: Path) -> dict:
    p, url, up = start_server(path)
    try:
        t0 = time.perf_counter()
        html = urllib.request.urlopen(url, timeout=120).read()
        page = time.perf_counter() - t0
        return {"address": up, "page": page, "total": up + page, "cpu": cpu_seconds(p.pid), "hwm": vm_hwm(p.pid),
                "bytes": len(html)}
    finally:
        p.terminate()
        p.wait()


def in_browser(path: Path) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    p, url, up = start_server(path)
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        t0 = time.perf_counter()
        driver.get(url)
        shown = ("for (const d of (window.Bokeh ? Bokeh.documents : [])) { const m = d.get_model_by_name('heatmap');"
                 " if (m && Bokeh.index.find_one(m)) return true; } return false;")
        while not driver.execute_script(shown):
            if time.perf_counter() - t0 > 120:
                raise SystemExit("the heatmap did not show in 120 s")
            time.sleep(0.02)
        return {"address": up, "drawn": time.perf_counter() - t0, "cpu": cpu_seconds(p.pid), "hwm": vm_hwm(p.pid)}
    finally:
        driver.quit()
        p.terminate()
        p.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=Path(tempfile.gettempdir()) / "explore_bench" / "grid_1e7.h5",
                    help="the 10^7-point file (made when missing)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh servers per figure; the median is reported")
    ap.add_argument("--browser", action="store_true", help="also time the heatmap drawn in headless chromium")
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    if not args.file.exists():
        args.file.parent.mkdir(parents=True, exist_ok=True)
        print(f"making {args.file} ...", flush=True)
        print(f"  made in {make_file(args.file):.1f} s, {args.file.stat().st_size / 2**20:,.0f} MiB")
    import h5py

    with h5py.File(args.file) as f:
        print(f"file: {args.file}, {f.attrs['n_scenarios']:,} points, shape {f['npv'].shape}, chunks "
              f"{f['npv'].chunks}, {args.file.stat().st_size / 2**20:,.0f} MiB")
    runs = [first_page(args.file) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    each = ", ".join("%.2f s / %.0f MiB" % (r["total"], r["hwm"]) for r in runs)
    print(f"explore --no-browser, median of {len(runs)} fresh servers: address printed after {med['address']:.2f} s, "
          f"first page served {med['page']:.2f} s later ({med['total']:.2f} s from the command), "
          f"{med['bytes'] / 1024:,.0f} KiB, the server's CPU time {med['cpu']:.2f} s; server peak memory "
          f"{med['hwm']:.0f} MiB "
          f"(each: {each})")
    if args.browser:
        runs = [in_browser(args.file) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        each = ", ".join("%.2f s" % r["drawn"] for r in runs)
        print(f"in headless chromium, median of {len(runs)}: the heatmap drawn {med['drawn']:.2f} s after asking for "
              f"the page ({med['address'] + med['drawn']:.2f} s from the command, the server's CPU time "
              f"{med['cpu']:.2f} s); server peak memory "
              f"{med['hwm']:.0f} MiB (each: {each})")


if __name__ == "__main__":
    main()
