"""The layers of the package (docs/architecture.md), checked by walking the imports with ast.

Every `import` and `from ... import` counts, also those inside functions (a lazy import
hides a dependency from the reader, not from the rule). Three rules:
- no module imports from a higher layer than its own;
- no two modules import each other, directly or round a loop;
- no module imports another module's private name (a leading underscore).
A new module must be given its layer in LAYERS: the test fails for a module it does not know.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stresstest"

# lowest first; a module may import from its own layer and those below
LAYERS = {
    "kernels": ["kernels"],
    "words": ["version", "outputs"],
    "config": ["presets", "validation", "industries", "items", "programmes", "config", "grid_config", "mc_config",
               "named", "loaders"],
    "compute": ["backends", "jax_adapter", "factoring", "engine", "tornado", "mc_paths", "latent"],
    "stats": ["summaries", "mc_summary", "gsa"],
    "files": ["h5io", "grid_file", "mc_io", "optimize_io"],
    "runs": ["results", "progress", "montecarlo", "named_run", "shards", "runner", "breakeven", "submit", "rank",
             "optimize_solve", "optimize"],
    "reports": ["formats", "report", "fig_read", "fig_common", "fig_html", "fig_named", "fig_grid", "fig_montecarlo",
                "fig_breakeven", "figures", "inspection", "statement", "rank_report",
                "optimize_report", "fig_optimize", "explore_source", "explore_point", "explore_grid", "explore_mc",
                "explore_curve", "explore_decide", "explore"],
    "interfaces": ["cli", "api", "__init__"],
}
LEVEL = {m: i for i, (_, mods) in enumerate(LAYERS.items()) for m in mods}


def _modules() -> dict[str, Path]:
    """Module name (relative to the package: 'engine', 'kernels' for the kernels) -> file."""
    out = {f.stem: f for f in PACKAGE.glob("*.py")}
    out["kernels"] = ROOT / "kernels"  # installed as stresstest.kernels: one unit here
    return out


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module imported, name imported or '', line) for every import of the file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("stresstest"):
                continue
            if node.level > 1:
                continue  # none in the package's flat layout
            parts = (node.module or "").split(".")
            if node.level == 0:
                parts = parts[1:]  # drop "stresstest"
            target = parts[0] if parts and parts[0] else ""
            for alias in node.names:
                if not target:  # from . import x  /  from stresstest import x
                    found.append((alias.name if (PACKAGE / f"{alias.name}.py").exists()
                                  else "__init__", alias.name, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "stresstest":
                    found.append((parts[1] if len(parts) > 1 else "__init__", "", node.lineno))
    return found


def _edges() -> dict[str, list[tuple[str, str, int]]]:
    mods = _modules()
    edges = {}
    for name, path in mods.items():
        if name == "kernels":
            continue  # pure array maths: checked by test_kernels_import_nothing_of_the_package
        edges[name] = [(t, n, line) for t, n, line in _imports(path) if t != name]
    return edges


def test_every_module_has_a_layer():
    unknown = sorted(set(_modules()) - set(LEVEL))
    assert not unknown, f"give these modules a layer in LAYERS (docs/architecture.md): {unknown}"


def _upward(edges) -> list[str]:
    return [f"{m}.py:{line} imports {t} ({_layer(t)}) from layer {_layer(m)}"
            for m, imps in edges.items() for t, _, line in imps if LEVEL[t] > LEVEL[m]]


def _loops(edges) -> list[list[str]]:
    graph = {m: {t for t, _, _ in imps} for m, imps in edges.items()}
    loops, state, stack = [], {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                loops.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return loops


def test_no_module_imports_from_a_higher_layer():
    upward = _upward(_edges())
    assert not upward, "\n".join(upward)


def test_no_import_loops():
    loops = _loops(_edges())
    assert not loops, "\n".join(" -> ".join(loop) for loop in loops)


def test_no_private_names_across_modules():
    private = [f"{m}.py:{line} imports {t}.{n}" for m, imps in _edges().items()
               for t, n, line in imps if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    assert not private, "\n".join(private)


def test_kernels_import_nothing_of_the_package():
    """The kernels are pure array functions: no import of stresstest's other modules, nor
    of click, h5py, yaml or the file system's helpers."""
    bad = []
    for f in (ROOT / "kernels").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for n in names:
                if n.split(".")[0] in ("stresstest", "click", "h5py", "yaml", "rich", "pydantic"):
                    bad.append(f"kernels/{f.name}: {n}")
        if isinstance(node, ast.ImportFrom) and node.level > 1:
            bad.append(f"kernels/{f.name}: relative import above the kernels")
    assert not bad, bad


def test_the_checker_sees_a_planted_loop_and_an_upward_import(tmp_path):
    """The rules can fail: an upward import, a loop through an import inside a function,
    and a private name, planted in two files, are all found."""
    (tmp_path / "config.py").write_text("from .report import fmt, _width\n")
    (tmp_path / "report.py").write_text("def fmt():\n    from stresstest.config import load\n")
    edges = {m: _imports(tmp_path / f"{m}.py") for m in ("config", "report")}
    assert _upward(edges) == ["config.py:1 imports report (reports) from layer config"] * 2
    assert _loops(edges) == [["config", "report", "config"]]
    assert [n for _, n, _ in edges["config"] if n.startswith("_")] == ["_width"]


def _layer(m: str) -> str:
    return next(name for name, mods in LAYERS.items() if m in mods)


def test_tests_import_shared_helpers_from_helpers_only():
    """A test file takes shared helpers from tests/helpers.py, never from conftest.py (which
    pytest loads itself) or from another test file (whose tests it would drag along)."""
    bad = []
    for f in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{f.relative_to(ROOT)}: {m}" for m in mods
                    if m.split(".")[0] == "conftest" or m.split(".")[0].startswith("test_")]
    assert not bad, bad
