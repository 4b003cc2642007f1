"""The Prometheus alert rules in alerts/: promtool accepts them, their unit tests pass (each
alert fires where it should and stays quiet where it must not), and they query only metrics
docs/metrics.md lists, so renaming a metric cannot leave an alert that silently never fires.

promtool comes from Debian's `prometheus` package; `make promtool` (and so `make test`)
installs it. Without it these tests fail rather than skip: an unchecked alert is the failure
mode they exist to catch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from promql import documented_metrics, metric_names, rule_exprs

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "driftwatch.rules.yml"
RULE_TESTS = ROOT / "alerts" / "driftwatch.rules.test.yml"


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run `make promtool` (Debian package prometheus)")
    result = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} exited {result.returncode}:\n{output}"
    return output


def test_promtool_checks_the_rules() -> None:
    promtool("check", "rules", str(RULES.relative_to(ROOT)))


def test_promtool_unit_tests_pass() -> None:
    promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))


def test_rules_use_only_exported_metrics() -> None:
    exprs = list(rule_exprs(RULES).values())
    assert len(exprs) == len(re.findall(r"^\s*- alert:", RULES.read_text(), re.MULTILINE)) == 9
    allowed = documented_metrics() | {"up"}
    assert "driftwatch_drifted" in allowed and "driftwatch_cycle_duration_seconds_bucket" in allowed
    for expr in exprs:
        assert metric_names(expr), expr
        assert metric_names(expr) <= allowed, f"not in docs/metrics.md: {metric_names(expr) - allowed}"


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = set(re.findall(r"^\s*- alert:\s*(\w+)", RULES.read_text(), re.MULTILINE))
    cases = re.findall(r"alertname:\s*(\w+)\s*\n\s*exp_alerts:(.*)", RULE_TESTS.read_text())
    fires = {name for name, expected in cases if expected.strip() != "[]"}
    quiet = {name for name, expected in cases if expected.strip() == "[]"}
    assert alerts - fires == set(), "no test where these fire"
    assert alerts - quiet == set(), "no test where these stay quiet"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            '(driftwatch_drifted{detector!~"model_version|recall_at_k"} == 1)\n'
            'unless on (collection) (driftwatch_drifted{detector="model_version"} == 1)',
            {"driftwatch_drifted"},
        ),
        (
            "histogram_quantile(0.9, sum by (le, collection) "
            '(rate(driftwatch_cycle_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))',
            {"driftwatch_cycle_duration_seconds_bucket"},
        ),
        (
            "time() - max by (collection) (driftwatch_last_cycle_timestamp_seconds offset -5m)"
            " > 2 * driftwatch_cycle_interval_seconds @ start()",
            {"driftwatch_last_cycle_timestamp_seconds", "driftwatch_cycle_interval_seconds"},
        ),
        (
            "absent(driftwatch_build_info) unless on () (up{job='driftwatch'} == 0)",
            {"driftwatch_build_info", "up"},
        ),
        ('{__name__="a", job="x"} + {"b.c", le!="1"} + {__name__=~"d.*"}', {"a", "b.c"}),
        ("SUM BY (job) (x) > bool Inf # rate(not_a_metric)\nor count_values(`v`, y)", {"x", "y"}),
        (
            "a * on (c) group_left (d, e) b / ignoring (le) c:rate5m[10m:1m] > $threshold",
            {"a", "b", "c:rate5m"},
        ),
        ('label_replace(up, "dst", "$1", "src", "(.*)") + 0x1f + 1e-3 + .5 - NaN', {"up"}),
        ("increase(x[30m]) / clamp_min(increase(y[30m]), 1) > 0.5", {"x", "y"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
