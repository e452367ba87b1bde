"""The wheel installs kernels and scenarios inside the stresstest namespace, YAML included."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_claims_only_the_stresstest_name(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v",
                            "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, text=True)
    # setuptools warns of data folders that are not declared packages ("Package would be
    # ignored"): every folder of the wheel is declared, so a user's install is quiet
    assert "would be ignored" not in built.stdout + built.stderr
    wheel = next(tmp_path.glob("stresstest-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"stresstest"}, top
    for required in ("stresstest/kernels/irr.py", "stresstest/kernels/cashflows.py",
                     "stresstest/scenarios/example.yaml", "stresstest/scenarios/default_grid.yaml",
                     "stresstest/scenarios/smoke.yaml", "stresstest/scenarios/montecarlo.yaml",
                     "stresstest/scenarios/named.yaml",
                     "stresstest/scenarios/named/h100-rental-collapse.yaml",
                     "stresstest/scenarios/named/README.md", "stresstest/cli.py"):
        assert required in names, required
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: cuda" in text and "Provides-Extra: test" in text
