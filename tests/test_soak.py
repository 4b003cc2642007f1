"""A short soak through bench/soak.py (the full 2,000 cycles are in BENCHMARKS.md): flat
memory after warm-up, no connection left open between cycles, every cycle stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


@pytest.mark.slow
def test_short_soak_passes_its_own_checks() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--cycles", "150", "--warmup", "30", "--no-write"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Cycles stored: 150 of 150; failed: 0. Verdict: pass." in result.stdout
