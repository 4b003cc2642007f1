"""Every channel an alert is read on says what to do and where the runbook entry is, and a
resolve says why: the alert engine on a real store (SQLite file), real HTTP receivers, the
`log` notifier's real log records, and the runbook command the default reference names."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from driftwatch.alerting import DRIFT, PUSHED, AlertEngine
from driftwatch.config import settings_from_dict
from driftwatch.cycle import CollectionReport
from driftwatch.detect.checks import model_version_result
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.registry import REGISTRY
from driftwatch.errors import ConfigError
from driftwatch.guidance import (
    BACK_UNDER,
    LEFT_CONFIG,
    NEW_BASELINE,
    RULE_GONE,
    runbook_reference,
    where_text,
)

from helpers import T0, Clock, Receiver, run_cli


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def settings(receiver: Receiver, rules: list[dict] | None = None, collections=("docs",), **alerts: object):  # type: ignore[no-untyped-def]
    raw = {
        "collections": [
            {"name": name, "dsn": "postgresql://x@localhost/app", "table": name} for name in collections
        ],
        "alerts": {
            "rules": rules or [{"detector": "spatial_kl", "for_cycles": 1}],
            "notifiers": [{"kind": "webhook", "url": receiver.url + "/hook"}, {"kind": "log"}],
            **alerts,
        },
    }
    return settings_from_dict(raw, env={})


def report(
    kl: float, baseline_id: int = 1, new_version: bool = False, name: str = "docs"
) -> CollectionReport:
    details = {"top_cells": [{"cell": 3, "change": 0.12, "examples": [{"id": "17", "text": "tax forms"}]}]}
    versions = {"v2": 30, "v1": 70} if new_version else {"v1": 100}
    results = [
        DriftResult("spatial_kl", kl, 0.05, 0.5, details),
        model_version_result(["v1"], versions, {}, np.ones(4)),
    ]
    status = "drift" if any(r.drifted for r in results) else "ok"
    return CollectionReport(name, status, T0, 0.1, sample_size=100, results=results, baseline_id=baseline_id)


def hook_alerts(receiver: Receiver) -> list[dict]:
    return [a for body in receiver.bodies("/hook") for a in body["alerts"]]  # type: ignore[index]


def run(engine_: AlertEngine, rep: CollectionReport, clock: Clock) -> list[str]:
    views = engine_.evaluate(rep)
    engine_.deliver(rep.name, 900)
    clock.tick()
    return [f"{v.alertname}/{v.state}" for v in views]


def test_every_channel_carries_the_action_and_the_runbook(engine, receiver, caplog) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    with caplog.at_level(logging.INFO, logger="driftwatch.notify"):
        assert run(alerts, report(kl=0.2), clock) == [f"{DRIFT}/firing"]
    action = REGISTRY["spatial_kl"].action
    (sent,) = hook_alerts(receiver)
    assert sent["annotations"]["action"] == action
    assert sent["annotations"]["runbook"] == "driftwatch runbook spatial_kl"
    assert "runbook_url" not in sent["annotations"]  # only when a URL is configured
    assert "_baseline_id" not in sent["annotations"]  # bookkeeping stays in the store
    assert action in sent["annotations"]["description"]
    assert "cell 3 (+12.0 pts): id 17 'tax forms'" in sent["annotations"]["description"]
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT FIRING")]
    assert f"do: {action}" in line and "runbook: driftwatch runbook spatial_kl" in line
    assert "| Where: cell 3 (+12.0 pts): id 17 'tax forms'. |" in line
    (view,) = alerts.states("docs")
    assert view.to_dict()["action"] == action and view.to_dict()["runbook"] == "driftwatch runbook spatial_kl"
    where = "  Where: cell 3 (+12.0 pts): id 17 'tax forms'."
    assert view.lines()[1:] == [where, f"  do: {action}", "  runbook: driftwatch runbook spatial_kl"]


def test_a_configured_runbook_url_is_the_link(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    config = settings(receiver, runbook_url="https://wiki.example/driftwatch/{detector}")
    run(AlertEngine(config, engine, now=clock), report(kl=0.2), clock)
    (sent,) = hook_alerts(receiver)
    assert sent["annotations"]["runbook_url"] == "https://wiki.example/driftwatch/spatial_kl"
    assert sent["annotations"]["runbook"] == "https://wiki.example/driftwatch/spatial_kl"
    assert (
        runbook_reference("recall_at_k", "https://wiki.example/dw") == "https://wiki.example/dw#recall_at_k"
    )


@pytest.mark.parametrize("url", ["wiki.example/dw", "https://wiki.example/dw#alerts"])
def test_a_runbook_url_that_cannot_work_is_refused(url: str) -> None:
    raw = {"alerts": {"runbook_url": url}}
    with pytest.raises(ConfigError, match=r"alerts\.runbook_url"):
        settings_from_dict(raw, env={})


def test_a_resolve_says_the_value_came_back(engine, receiver, caplog) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    run(alerts, report(kl=0.2), clock)
    with caplog.at_level(logging.INFO, logger="driftwatch.notify"):
        assert run(alerts, report(kl=0.01), clock) == [f"{DRIFT}/resolved"]
    resolved = hook_alerts(receiver)[-1]
    assert resolved["status"] == "resolved" and resolved["annotations"]["resolved_because"] == BACK_UNDER
    assert any(f"resolved: {BACK_UNDER}" in r.getMessage() for r in caplog.records)
    (view,) = alerts.states("docs")
    assert view.resolved_because == BACK_UNDER and view.lines()[1] == f"  resolved: {BACK_UNDER}"


def test_a_resolve_says_a_new_baseline_was_captured(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    assert f"{PUSHED}/firing" in run(alerts, report(kl=0.01, new_version=True, baseline_id=1), clock)
    # a baseline of the new version: v2 is no longer new, and the cells moved with it
    views = run(alerts, report(kl=0.01, baseline_id=2), clock)
    assert f"{PUSHED}/resolved" in views
    pushed = [a for a in hook_alerts(receiver) if a["labels"]["alertname"] == PUSHED]
    assert (
        pushed[-1]["status"] == "resolved" and pushed[-1]["annotations"]["resolved_because"] == NEW_BASELINE
    )
    assert pushed[0]["annotations"]["action"] == REGISTRY["model_version"].action


def test_a_resolve_says_the_rule_or_the_collection_left_the_config(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    both = settings(receiver, collections=("docs", "faq"))
    first = AlertEngine(both, engine, now=clock)
    run(first, report(kl=0.2), clock)
    run(first, report(kl=0.2, name="faq"), clock)
    without_rule = AlertEngine(settings(receiver, [{"detector": "recall_at_k"}]), engine, now=clock)
    assert run(without_rule, report(kl=0.2), clock) == [f"{DRIFT}/resolved"]
    assert hook_alerts(receiver)[-1]["annotations"]["resolved_because"] == RULE_GONE
    retired = without_rule.retire({"docs"})  # faq left the config: nothing will step it again
    assert [(v.collection, v.state, v.resolved_because) for v in retired] == [
        ("faq", "resolved", LEFT_CONFIG)
    ]
    last = hook_alerts(receiver)[-1]  # delivered at once, though no cycle of faq will run
    assert last["labels"]["collection"] == "faq" and last["annotations"]["resolved_because"] == LEFT_CONFIG
    assert without_rule.retire({"docs"}) == []


def test_where_text_reads_cells_and_new_territory_rows_generically() -> None:
    details = {
        "top_cells": [
            {"cell": "far", "change": 0.08, "examples": [{"id": "9", "text": "x" * 200}, {"id": "10"}]},
            {"cell": 2, "change": -0.05, "examples": []},
        ],
        "examples": [{"id": "42", "text": "a new topic"}],
    }
    text = where_text(details)
    assert text.startswith("Where: cell far (+8.0 pts): id 9 'xxx")
    assert "…', id 10; cell 2 (-5.0 pts); new-territory rows: id 42 'a new topic'." in text
    assert where_text({"examples": [3, 5]}) == ""  # positions never resolved to rows say nothing
    assert where_text({}) == ""


def test_runbook_command_prints_every_registered_entry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = run_cli("runbook", "spatial_kl", cwd=tmp_path)
    assert out.returncode == 0 and REGISTRY["spatial_kl"].action in out.stdout
    everything = run_cli("runbook", cwd=tmp_path)
    assert all(f"{d.name} (" in everything.stdout for d in REGISTRY)
    unknown = run_cli("runbook", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "known: centroid_distance" in unknown.stderr
