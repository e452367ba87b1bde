"""A short fuzz of the loaders inside the suite (the long run: python tests/fuzz/fuzz_loader.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_loader import run  # noqa: E402


def test_loaders_raise_only_their_own_error_on_generated_documents():
    counts = run(8)  # about 1,800 documents on an idle 2-core machine, 900 beside another worker
    assert counts["tried"] > 500
    assert counts["refused"] > 0
