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

from peers import parse_config  # noqa: E402
from peers_data import ALL, QUICK, Config, draw  # noqa: E402
from peers_report import MARK_BEGIN, MARK_END, calibrated_threshold  # noqa: E402
from peers_rerun import RERUN_BEGIN, RERUN_END, history_plans, history_powers, keep_rerun  # noqa: E402


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
    assert "| driftwatch (cycle verdict) | 6,000 + 1,000 | 4 |" in text
    assert "4 runs x 3 scenarios" in text
    # the strongest scenarios separate completely from no drift
    records = json.loads(results.read_text())["records"]
    stats: dict[str, list[float]] = {}
    for record in records:
        if record["method"] == "driftwatch" and record["step"] == "test":
            stats.setdefault(record["condition"], []).append(record["variants"]["verdict"]["stat"])
    assert len(stats["no drift"]) == 4
    assert min(stats["new topic 5%"]) > max(stats["no drift"])

    again = peers("--report-only", "--no-write", "--results", str(results))
    assert again.returncode == 0, again.stderr[-3000:]
    remade = section(again.stdout)
    assert "remade on" in remade and "remade on" not in text  # it says so
    tables = "#### Environments"
    assert remade[remade.index(tables) :] == text[text.index(tables) :]

    rerun = peers("--rerun", "--report-only", "--no-write", "--results", str(results))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    sub = rerun.stdout[rerun.stdout.index(RERUN_BEGIN) : rerun.stdout.index(RERUN_END)]
    assert "| driftwatch (cycle verdict) | 6,000 + 1,000 | 4 |" in sub

    # After a change to driftwatch only its records are made again: --driftwatch-from takes them
    # from that run and keeps the other methods' records of this one.
    newer = json.loads(results.read_text())
    newer["run"] = {
        **newer["run"],
        "command": "python bench/peers.py --methods driftwatch",
        "commit": "abc1234",
    }
    for record in newer["records"]:
        record["seconds"] = 123.0
    later = tmp_path / "driftwatch-only.json"
    later.write_text(json.dumps(newer))
    merged = peers(
        "--rerun", "--report-only", "--no-write", "--results", str(results), "--driftwatch-from", str(later)
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "driftwatch's records were then made again" in merged.stdout and "commit abc1234" in merged.stdout
    kept = json.loads(results.read_text())["records"]
    assert {r["seconds"] == 123.0 for r in kept if r["method"] == "driftwatch"} == {True}
    assert {r["seconds"] == 123.0 for r in kept if r["method"] == "driftwatch_psi"} == {False}


def test_a_size_may_name_its_scenarios_and_methods() -> None:
    template = Config(1000, 384, 30, ALL)
    only = parse_config("5k/768:rotation:driftwatch+evidently_model", template)
    assert (only.n, only.dim, only.runs) == (5000, 768, 30)
    assert {c.family for c in only.conditions} == {"none", "rotation"}  # no drift always: it calibrates
    assert only.runs_method("evidently_model") and not only.runs_method("alibi_ks")
    every = parse_config("1k/384", template)
    assert every.conditions == ALL and every.runs_method("alibi_ks")
    with pytest.raises(ValueError):
        parse_config("1k/384:rotations", template)


FULL_RUN = f"""{MARK_BEGIN}
### driftwatch against Evidently, alibi-detect and NannyML

#### What ran: rows per check (baseline + current) and runs

| method | 1k/384 | 5k/768 |
|---|---|---|
| Evidently model (default) | 6,000 + 1,000 | 5,000 + 5,000 (subsample; over budget at 30,000 + 5,000) |
| NannyML domain classifier | over budget at 1,500 + 250: setup took over 90 s | over budget at 1,872 + 312 |

**5,000 rows, 768-d**: 50 runs

| method | rows | runs | FAR | rotation 0.05 rad | rotation 0.1 rad |
|---|---|---|---|---|---|
| driftwatch (centroid or spatial) | 30,000 + 5,000 | 50 | 0.04 | 0.02 | 0.14 |
| Evidently model (default) | 5,000 + 5,000 | 50 | 0.04 | 0.54 | 1.00 |

{MARK_END}
"""


def test_a_rerun_takes_the_full_runs_sizes_and_powers_and_a_full_run_keeps_the_rerun() -> None:
    plans = history_plans(FULL_RUN)
    assert plans["1k/384"]["evidently_model"].rows == (6000, 1000)
    assert plans["5k/768"]["evidently_model"].rows == (5000, 5000)
    assert plans["5k/768"]["evidently_model"].reason == "over budget at 30,000 + 5,000"
    assert plans["1k/384"]["nannyml_dc"].rows is None
    powers = history_powers(FULL_RUN)
    assert powers[("5k/768", "Evidently model (default)", "rotation 0.05 rad")] == (0.54, 50)
    assert powers[("5k/768", "driftwatch (centroid or spatial)", "rotation 0.1 rad")] == (0.14, 50)
    rerun = f"{RERUN_BEGIN}\nre-run text\n{RERUN_END}"
    with_rerun = FULL_RUN.replace(MARK_END, rerun + "\n\n" + MARK_END)
    assert history_plans(with_rerun) == plans  # the re-run's own tables are not the full run's
    remade = keep_rerun(FULL_RUN.replace("50 runs", "40 runs"), current=with_rerun)
    assert rerun in remade and remade.index(rerun) < remade.index(MARK_END)
    assert "40 runs" in remade
