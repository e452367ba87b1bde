"""Fuzz the file loaders: generated YAML documents thrown at load_portfolio and load_scenario.

Any exception other than the project's own ConfigError is a failure (a crash, a
traceback a user would see). The documents are built by hypothesis from the real keys
(valid files mutated: keys dropped, renamed, values replaced by other types, extreme
numbers, NaN and infinity, deep nesting, unicode) and from raw text.

    python tests/fuzz/fuzz_loader.py --seconds 600      # the long run (prints the count)
    pytest tests/fuzz                                   # a short run inside the suite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stresstest.config import load_portfolio
from stresstest.loaders import load_scenario
from stresstest.kernels.params import CLUSTER_PARAMS
from stresstest.validation import ConfigError

KEYS = [p.name for p in CLUSTER_PARAMS] + ["name", "gpu", "region", "gpu_market", "power_market", "sources",
                                          "portfolio", "defaults", "clusters", "scenario", "kind", "axes",
                                          "shock", "param", "op", "values", "linspace", "paths", "seed",
                                          "price", "utilization", "energy", "correlation", "events", "dist",
                                          "sets", "horizon_months", "discount_rate", "hurdle_irr", "pairs"]
VALID_PORTFOLIO = {
    "portfolio": {"name": "f", "horizon_months": 24, "discount_rate": 0.1},
    "defaults": {"pue": 1.3},
    "clusters": [{"name": "a", "gpus": 8, "capex_per_gpu": 30000, "on_demand_price": 2.0, "reserved_price": 1.8},
                 {"name": "b", "gpus": 16, "capex_per_gpu": 35000, "on_demand_price": 2.5, "reserved_share": 0}],
}
VALID_SCENARIOS = [
    {"scenario": {"kind": "grid", "axes": [{"shock": "price", "values": [0.5, 1.0]},
                                           {"param": "pue", "op": "set", "linspace": [1.1, 1.5, 3]}]}},
    {"scenario": {"kind": "montecarlo", "paths": 100, "seed": 1,
                  "correlation": {"pairs": [{"a": "price/a", "b": "energy/a", "rho": 0.3}]},
                  "events": [{"param": "next_gen_month", "dist": "triangular", "low": 1, "mode": 2, "high": 3}]}},
    {"scenario": {"kind": "named", "sets": ["h100-rental-collapse"]}},
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from([0, -1, 1e308, -1e308, 5e-324, 2**63, "1e5", ".nan", "", "null"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                                                 inner, max_size=4)), max_leaves=12)


@st.composite
def mutated(draw, base):
    """A valid document with random edits along random paths."""
    import copy

    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        node = doc
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else range(len(node))))
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "rename", "add"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(key)
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


documents = st.one_of(
    mutated(VALID_PORTFOLIO).map(lambda d: ("portfolio", d)),
    st.sampled_from(VALID_SCENARIOS).flatmap(mutated).map(lambda d: ("scenario", d)),
    values.map(lambda d: (("portfolio", "scenario")[len(str(d)) % 2], d)),
)
raw_text = st.text(max_size=200)

COUNT = {"tried": 0, "refused": 0}


def _check(kind: str, text: str, tmp: Path, pf_path: Path) -> None:
    f = tmp / "doc.yaml"
    f.write_bytes(text.encode("utf-8", errors="replace"))
    COUNT["tried"] += 1
    try:
        if kind == "portfolio":
            load_portfolio(f)
        else:
            load_scenario(f, load_portfolio(pf_path))
    except ConfigError as err:
        COUNT["refused"] += 1
        for line in err.problems:
            assert line.startswith(str(f)), f"problem not naming the file: {line!r}"
    # anything else propagates: a failure


def run(seconds: float) -> dict:
    """Batches of 300 generated documents (a fresh random seed each) until `seconds` pass.

    Generation only, no shrinking: a failure stops the run at once and hypothesis prints
    the document that caused it.
    """
    tmp = Path(tempfile.mkdtemp(prefix="stresstest-fuzz-"))
    pf_path = tmp / "valid.yaml"
    pf_path.write_text(yaml.safe_dump(VALID_PORTFOLIO))
    deadline = time.time() + seconds

    @settings(max_examples=300, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(documents.map(lambda kd: (kd[0], yaml.safe_dump(kd[1], allow_unicode=True))),
                     st.tuples(st.sampled_from(["portfolio", "scenario"]), raw_text)))
    def batch(kd):
        _check(kd[0], kd[1], tmp, pf_path)

    while time.time() < deadline:
        batch()
    return dict(COUNT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600)
    args = ap.parse_args(argv)
    t0 = time.time()
    counts = run(args.seconds)
    print(f"fuzzed the loaders for {time.time() - t0:.0f} s: {counts['tried']:,} documents tried, "
          f"{counts['refused']:,} refused with a ConfigError, the rest accepted; no other exception")
    return 0


if __name__ == "__main__":
    sys.exit(main())
