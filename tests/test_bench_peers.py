"""bench/peers.py on driftwatch's own methods (the peers' environments are built by `make
bench-peers`, not by the tests): the worker protocol, the matched false-alarm calibration,
the report, and `--report-only` remaking the same section from the saved records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from peers_data import ALL, QUICK, Config, draw  # noqa: E402
from peers_report import calibrated_threshold  # noqa: E402


def peers(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), *args], capture_output=True, text=True, timeout=600
    )


def section(text: str) -> str:
    return text[text.index("<!-- peers:begin -->") : text.index("<!-- peers:end -->")]


def test_threshold_lets_at_most_alpha_of_the_null_runs_above_it() -> None:
    null = [float(v) for v in range(100)]
    threshold = calibrated_threshold(null, 0.05)
    assert sum(v > threshold for v in null) == 5
    tied = [1.0] * 10 + [0.5] * 90  # ties at the top: none may be counted as a false alarm
    assert sum(v > calibrated_threshold(tied, 0.05) for v in tied) == 0


def test_a_scenario_draws_the_same_rows_whatever_else_is_drawn() -> None:
    config = Config(1000, 384, 1, ALL)
    baseline_all, windows_all = draw(config, 3, ALL)
    baseline_quick, windows_quick = draw(config, 3, QUICK)
    assert np.array_equal(baseline_all, baseline_quick)
    for index, condition in enumerate(QUICK):
        assert np.array_equal(windows_quick[index], windows_all[ALL.index(condition)])
    assert not np.array_equal(windows_all[0], windows_all[1])


@pytest.mark.slow
def test_quick_run_reports_and_report_only_remakes_the_same_section(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    methods = "driftwatch,driftwatch_psi"
    first = peers("--quick", "--runs", "4", "--methods", methods, "--results", str(results))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = section(first.stdout)
    assert "| driftwatch (centroid or spatial) | 6,000 + 1,000 | 4 |" in text
    assert "4 runs x 3 scenarios" in text
    # the strongest scenarios separate completely from no drift
    records = json.loads(results.read_text())["records"]
    stats: dict[str, list[float]] = {}
    for record in records:
        if record["method"] == "driftwatch" and record["step"] == "test":
            stats.setdefault(record["condition"], []).append(record["variants"]["either"]["stat"])
    assert len(stats["no drift"]) == 4
    assert min(stats["new topic 5%"]) > max(stats["no drift"])

    again = peers("--report-only", "--no-write", "--results", str(results))
    assert again.returncode == 0, again.stderr[-3000:]
    remade = section(again.stdout)
    assert "remade on" in remade and "remade on" not in text  # it says so
    tables = "#### Environments"
    assert remade[remade.index(tables) :] == text[text.index(tables) :]
