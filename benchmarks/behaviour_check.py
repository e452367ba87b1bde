"""Behaviour unchanged: snapshot the command line's outputs, then compare two snapshots.

A standalone script for refactors (never collected by pytest). `snapshot DIR` runs a
fixed list of commands on the bundled example (default grid, Monte Carlo preset with
--sensitivities, the named library, a 3-shard split and merge, a breakeven curve, and
--json of every table-printing command) and keeps their files and JSON in DIR.
`compare A B` then checks that every dataset of every HDF5 file is equal bit for bit
(NaN equal to NaN) with the same attributes, and that the JSON documents are equal,
leaving out what changes from run to run by design (wall times, creation dates, the
paths of the snapshot folders).

    python benchmarks/behaviour_check.py snapshot /tmp/before
    ... change the code ...
    python benchmarks/behaviour_check.py snapshot /tmp/after
    python benchmarks/behaviour_check.py compare /tmp/before /tmp/after
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# (name, arguments of `stresstest`, what it keeps: "json" or "text" = stdout, else only its files)
COMMANDS = [
    ("grid", ["run", "example", "-s", "default_grid", "-o", "grid.h5", "--json"], "json"),
    ("mc", ["run", "example", "-s", "montecarlo", "--sensitivities", "-o", "mc.h5", "--json"], "json"),
    ("named", ["run", "example", "-s", "named", "-o", "named.h5", "--json"], "json"),
    ("shard0", ["run", "example", "-s", "default_grid", "--shard", "0/3", "-o", "shards", "-q"], None),
    ("shard1", ["run", "example", "-s", "default_grid", "--shard", "1/3", "-o", "shards", "-q"], None),
    ("shard2", ["run", "example", "-s", "default_grid", "--shard", "2/3", "-o", "shards", "-q"], None),
    ("merge", ["merge", "shards", "-o", "merged.h5"], None),
    ("breakeven_curve", ["breakeven", "example", "--param", "price", "--over", "utilization",
                         "-s", "default_grid", "-o", "breakeven.h5", "--json"], "json"),
    ("breakeven", ["breakeven", "example", "--param", "utilization", "--target", "irr=0.12", "--json"], "json"),
    ("sensitivities", ["sensitivities", "example", "--json"], "json"),
    ("show", ["show", "example", "--json"], "json"),
    ("inspect_grid", ["inspect", "grid.h5", "--json"], "json"),
    ("inspect_mc", ["inspect", "mc.h5", "--json"], "json"),
    ("presets", ["presets"], "text"),
    ("scenarios", ["scenarios", "list", "--json"], "json"),
]
# keys whose values change from run to run by design
VOLATILE = {"seconds", "created", "write_seconds", "writing_seconds", "elapsed", "compile_seconds", "path", "output",
            "stresstest_version", "wall_s", "time"}
VOLATILE_ATTRS = {"created", "stresstest_version", "seconds", "shard_checksums"}


def snapshot(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("stresstest") or str(Path(sys.executable).with_name("stresstest"))
    env = dict(os.environ, STRESSTEST_COMPILE_CACHE="off")
    for name, args, keep in COMMANDS:
        done = out / f".{name}.done"
        if done.exists():  # a snapshot cut short resumes where it stopped
            continue
        res = subprocess.run([exe, *args, *(["--overwrite"] if _writes(args) else [])],
                             cwd=out, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"{name}: exit {res.returncode}\n{res.stdout}\n{res.stderr}")
        if keep in ("json", "text"):
            (out / f"{name}.{keep[:4] if keep == 'json' else 'txt'}").write_text(res.stdout)
        done.touch()
        print(f"{name}: ok", flush=True)


def _writes(args: list[str]) -> bool:
    return args[0] in ("run", "merge", "breakeven") and "-o" in args and "--shard" not in args \
        and not (args[0] == "breakeven" and "--over" not in args)


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _h5_items(path: Path) -> dict:
    import h5py
    import numpy as np

    items = {}

    def visit(name, obj):
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in obj.attrs.items()
                 if k not in VOLATILE_ATTRS and not k.startswith(("DIMENSION_LIST", "REFERENCE_LIST"))}
        data = obj[()] if isinstance(obj, h5py.Dataset) else None
        if isinstance(data, np.ndarray) and data.dtype.kind == "O":
            data = data.astype(str)
        items[name] = (data, attrs)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    return items


def _same(a, b) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind == "f":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    return a == b


def compare(a: Path, b: Path) -> int:
    problems = []
    for fa in sorted(a.rglob("*.h5")):
        rel = fa.relative_to(a)
        fb = b / rel
        if not fb.exists():
            problems.append(f"{rel}: missing in {b}")
            continue
        ia, ib = _h5_items(fa), _h5_items(fb)
        for name in sorted(set(ia) | set(ib)):
            if name not in ia or name not in ib:
                problems.append(f"{rel}:{name}: only in {'A' if name in ia else 'B'}")
                continue
            (da, aa), (db, ab) = ia[name], ib[name]
            if not _same(da, db):
                problems.append(f"{rel}:{name}: data differ")
            for k in sorted(set(aa) | set(ab)):
                if k == "config":
                    va, vb = (_strip(json.loads(x)) if isinstance(x, str) else x
                              for x in (aa.get(k), ab.get(k)))
                else:
                    va, vb = aa.get(k), ab.get(k)
                if not _same(va, vb):
                    problems.append(f"{rel}:{name}: attribute {k} differs: {va!r:.80} vs {vb!r:.80}")
    for ja in sorted(a.glob("*.json")):
        jb = b / ja.name
        if not jb.exists():
            problems.append(f"{ja.name}: missing in {b}")
        elif _strip(json.loads(ja.read_text())) != _strip(json.loads(jb.read_text())):
            problems.append(f"{ja.name}: JSON differs")
    for ta in sorted(a.glob("*.txt")):
        tb = b / ta.name
        if not tb.exists() or ta.read_text() != tb.read_text():
            problems.append(f"{ta.name}: text differs")
    n_files = len(list(a.rglob("*.h5"))) + len(list(a.glob("*.json"))) + len(list(a.glob("*.txt")))
    for p in problems:
        print(p)
    print(f"{n_files} files compared: {'equal' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "snapshot":
        snapshot(Path(sys.argv[2]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        raise SystemExit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
