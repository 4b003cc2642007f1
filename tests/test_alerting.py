"""The alert engine on a real store (SQLite file) with real HTTP receivers: the state machine,
repeat and resolve notifications, restarts, a failing receiver, the hold-back after a model
push, and each notifier's wire format."""

from __future__ import annotations

import http.client
from datetime import datetime, timedelta

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session

from driftwatch.alerting import CHANGED, DRIFT, PUSHED, AlertEngine
from driftwatch.config import settings_from_dict
from driftwatch.cycle import CollectionReport
from driftwatch.detect.checks import model_version_result
from driftwatch.detect.detectors import DriftResult
from driftwatch.metrics import Metrics
from driftwatch.notify import make_notifiers
from driftwatch.store.models import AlertState, Delivery

from helpers import T0, Clock, GarbageReceiver, Receiver


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def settings(receiver: Receiver, rules: list[dict] | None = None, **alerts: object):  # type: ignore[no-untyped-def]
    raw = {
        "collections": [{"name": "docs", "dsn": "postgresql://x@localhost/app", "table": "docs"}],
        "alerts": {
            "repeat_interval": "1h",
            "retry_backoff": "1m",
            "retry_backoff_max": "10m",
            "rules": rules or [{"detector": "any", "severity": "warning", "for_cycles": 2}],
            "notifiers": [{"kind": "webhook", "url": receiver.url + "/hook"}],
            **alerts,
        },
    }
    return settings_from_dict(raw, env={})


def report(
    kl: float | None = 0.01,
    versions: dict[str | None, int] | None = None,
    cosines: list[float] | None = None,
    queries: dict[str | None, int] | None = None,
) -> CollectionReport:
    """A cycle's verdicts: spatial_kl against a 0.05 threshold, plus a real model_version result."""
    results = [
        DriftResult("spatial_kl", kl, None if kl is None else 0.05, None if kl is None else 0.5),
        DriftResult("centroid_distance", 0.001, 0.01, 0.6),
        model_version_result(
            ["v1"],
            versions or {"v1": 100},
            queries or {},
            np.asarray(cosines if cosines is not None else [1.0] * 8),
        ),
    ]
    status = "drift" if any(r.drifted for r in results) else "ok"
    return CollectionReport("docs", status, T0, 0.1, sample_size=100, results=results)


def alerts_in(receiver: Receiver) -> list[dict]:
    return [a for body in receiver.bodies("/hook") for a in body["alerts"]]  # type: ignore[index]


def step(engine_: AlertEngine, rep: CollectionReport, clock: Clock) -> list[str]:
    views = engine_.evaluate(rep)
    engine_.deliver("docs", 900)
    clock.tick()
    return [f"{v.alertname}/{v.detector}/{v.state}" for v in views]


def test_pending_firing_repeat_resolved(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    assert step(alerts, report(kl=0.2), clock) == [f"{DRIFT}/spatial_kl/pending"]
    assert alerts_in(receiver) == []  # pending never notifies
    assert step(alerts, report(kl=0.2), clock) == [f"{DRIFT}/spatial_kl/firing"]
    fired = alerts_in(receiver)
    assert len(fired) == 1 and fired[0]["status"] == "firing"
    assert fired[0]["labels"] == {
        "alertname": DRIFT,
        "collection": "docs",
        "detector": "spatial_kl",
        "severity": "warning",
    }
    assert "0.2" in fired[0]["annotations"]["summary"] and fired[0]["startsAt"].startswith("2026-11-01T12:00")
    step(alerts, report(kl=0.2), clock)  # 30 min after firing: inside repeat_interval
    assert len(alerts_in(receiver)) == 1
    clock.tick(60)
    step(alerts, report(kl=0.2), clock)  # past repeat_interval: one repeat
    assert len(alerts_in(receiver)) == 2
    assert step(alerts, report(kl=0.01), clock) == [f"{DRIFT}/spatial_kl/resolved"]
    last = alerts_in(receiver)[-1]
    assert last["status"] == "resolved" and last["endsAt"] is not None
    step(alerts, report(kl=0.01), clock)
    assert len(alerts_in(receiver)) == 3  # resolved is sent once


def test_one_drifted_cycle_then_clean_never_notifies(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    for kl in (0.2, 0.01, 0.2, 0.01):
        step(alerts, report(kl=kl), clock)
    assert alerts_in(receiver) == []


def test_no_evidence_keeps_the_state(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """A detector that could not judge (not due, no data) neither resolves nor advances an alert."""
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    step(alerts, report(kl=0.2), clock)
    step(alerts, report(kl=None), clock)
    assert step(alerts, report(kl=0.2), clock) == [f"{DRIFT}/spatial_kl/firing"]
    step(alerts, report(kl=None), clock)
    assert [a["status"] for a in alerts_in(receiver)] == ["firing"]


def test_restart_does_not_resend_before_repeat_interval(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    rules = [{"detector": "spatial_kl", "severity": "critical", "for_cycles": 1}]
    first = AlertEngine(settings(receiver, rules), engine, now=clock)
    step(first, report(kl=0.2), clock)
    assert len(alerts_in(receiver)) == 1
    restarted = AlertEngine(settings(receiver, rules), engine, now=clock)  # a new process, same store
    for _ in range(3):
        assert step(restarted, report(kl=0.2), clock) == [f"{DRIFT}/spatial_kl/firing"]
    assert len(alerts_in(receiver)) == 1
    clock.tick(60)
    step(restarted, report(kl=0.2), clock)
    assert len(alerts_in(receiver)) == 2


def test_failing_receiver_is_retried_and_others_are_not_repeated(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    other = Receiver()
    try:
        clock = Clock()
        config = settings(
            receiver,
            [{"detector": "spatial_kl", "for_cycles": 1}],
            notifiers=[
                {"kind": "webhook", "url": receiver.url + "/hook"},
                {"kind": "alertmanager", "url": other.url},
            ],
        )
        alerts = AlertEngine(config, engine, now=clock)
        receiver.fail_next(2)
        step(alerts, report(kl=0.2), clock)
        assert alerts_in(receiver) == [] and len(other.bodies()) == 1
        with Session(engine) as session:
            row = session.scalars(select(AlertState)).one()
            owed = session.scalars(select(Delivery).where(Delivery.status == "pending")).all()
            assert row.state == "firing" and [d.notifier for d in owed] == ["0:webhook"]
        step(alerts, report(kl=0.2), clock)  # second failure (15 min later: past the 1 min backoff)
        step(alerts, report(kl=0.2), clock)  # delivered now
        assert len(alerts_in(receiver)) == 1 and len(other.bodies()) == 1
    finally:
        other.close()


def test_model_push_pages_once_and_holds_distribution_alerts(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    config = settings(receiver, [{"detector": "any", "severity": "warning", "for_cycles": 1}])
    alerts = AlertEngine(config, engine, now=clock)
    pushed = {"v1": 60, "v2": 40}
    views = step(alerts, report(kl=0.3, versions=pushed), clock)
    assert views == [f"{PUSHED}/model_version/firing"]
    for _ in range(3):  # the push goes on; spatial_kl keeps drifting: still one page
        step(alerts, report(kl=0.3, versions=pushed), clock)
    sent = alerts_in(receiver)
    assert [(a["labels"]["alertname"], a["status"]) for a in sent] == [(PUSHED, "firing")]
    summary, description = sent[0]["annotations"]["summary"], sent[0]["annotations"]["description"]
    assert "v1 → v2" in summary and "40% of sampled rows" in summary
    assert "driftwatch baseline capture --collection docs" in description
    assert "driftwatch adapter fit --collection docs --from-version v1 --to-version v2" in description
    assert sent[0]["labels"]["severity"] == "critical"
    # A baseline for v2 is captured: the push resolves and the distribution alert is judged again.
    views = step(alerts, report(kl=0.3, versions={"v1": 100}), clock)
    assert f"{PUSHED}/model_version/resolved" in views and f"{DRIFT}/spatial_kl/firing" in views
    after = sorted((a["labels"]["alertname"], a["status"]) for a in alerts_in(receiver)[1:])
    assert after == [(DRIFT, "firing"), (PUSHED, "resolved")]


def test_a_new_version_in_the_query_log_alone_is_a_push(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """The application switched its query model before the documents were re-embedded."""
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    views = step(alerts, report(queries={"v1": 25, "v2": 75}), clock)
    assert views == [f"{PUSHED}/model_version/firing"]
    summary = alerts_in(receiver)[0]["annotations"]["summary"]
    assert "v1 → v2" in summary and "0% of sampled rows and 75% of logged queries" in summary


def test_changed_sentinels_without_a_version_raise_function_changed(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver), engine, now=clock)
    views = step(alerts, report(cosines=[1.0] * 6 + [0.2, 0.3]), clock)
    assert views == [f"{CHANGED}/model_version/firing"]
    summary = alerts_in(receiver)[0]["annotations"]["summary"]
    assert "2 of 8 sentinel rows" in summary


def test_min_effect_and_threshold_override(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    rules = [
        {"detector": "spatial_kl", "severity": "warning", "min_effect": 0.5},  # significant, negligible
        {"detector": "centroid_distance", "severity": "info", "threshold": 0.0005},  # stricter than 0.01
    ]
    alerts = AlertEngine(settings(receiver, rules), engine, now=clock)
    views = step(alerts, report(kl=0.2), clock)
    assert views == [f"{DRIFT}/centroid_distance/firing"]
    assert alerts_in(receiver)[0]["labels"]["severity"] == "info"


def test_a_removed_rule_resolves_its_alert(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    rules = [{"detector": "spatial_kl", "severity": "critical"}]
    step(AlertEngine(settings(receiver, rules), engine, now=clock), report(kl=0.2), clock)
    later = AlertEngine(settings(receiver, [{"detector": "recall_at_k"}]), engine, now=clock)
    assert step(later, report(kl=0.2), clock) == [f"{DRIFT}/spatial_kl/resolved"]


def test_wire_formats(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """Alertmanager v2, Slack-compatible and generic webhook bodies, as real receivers get them."""
    clock = Clock()
    config = settings(
        receiver,
        [{"detector": "spatial_kl", "for_cycles": 1}],
        notifiers=[
            {"kind": "alertmanager", "url": receiver.url + "/"},
            {"kind": "slack", "url": receiver.url + "/slack/T000/B000/secret"},
            {"kind": "webhook", "url": receiver.url + "/hook"},
        ],
    )
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"external_url": "https://dw.example"})}
    )
    alerts = AlertEngine(config, engine, now=clock)
    step(alerts, report(kl=0.2), clock)
    (am_body,) = receiver.bodies("/api/v2/alerts")
    assert isinstance(am_body, list) and len(am_body) == 1
    am = am_body[0]
    assert set(am) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert (
        am["labels"]["alertname"] == DRIFT
        and am["generatorURL"] == "https://dw.example/alerts?collection=docs"
    )
    starts, ends = (datetime.fromisoformat(am[k].replace("Z", "+00:00")) for k in ("startsAt", "endsAt"))
    assert ends - starts >= timedelta(hours=1)  # stays active in Alertmanager until the next repeat
    (slack,) = receiver.bodies("/slack/T000/B000/secret")
    assert "[FIRING] EmbeddingDrift" in slack["text"] and "`docs`" in slack["text"]  # type: ignore[index]
    (hook,) = receiver.bodies("/hook")
    assert hook["status"] == "firing" and hook["alerts"][0]["fingerprint"]  # type: ignore[index]
    step(alerts, report(kl=0.01), clock)
    resolved = receiver.bodies("/api/v2/alerts")[-1][0]  # type: ignore[index]
    assert datetime.fromisoformat(resolved["endsAt"].replace("Z", "+00:00")) <= clock.now


def test_unreachable_receiver_error_hides_the_url_secret(engine, caplog) -> None:  # type: ignore[no-untyped-def]
    from helpers import free_port

    clock = Clock()
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXXsecretXXXX"
    config = settings_from_dict(
        {
            "collections": [{"name": "docs", "dsn": "postgresql://x@localhost/app", "table": "docs"}],
            "alerts": {"rules": [{"detector": "spatial_kl"}], "notifiers": [{"kind": "slack", "url": url}]},
        },
        env={},
    )
    alerts = AlertEngine(config, engine, now=clock)
    step(alerts, report(kl=0.2), clock)
    assert "not delivered" in caplog.text and "slack notifier http://127.0.0.1" in caplog.text
    assert "XXXXsecretXXXX" not in caplog.text


def test_a_push_blocks_new_pages_but_lets_old_alerts_resolve(engine, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver, [{"detector": "spatial_kl", "for_cycles": 1}]), engine, now=clock)
    step(alerts, report(kl=0.2), clock)  # fires before the push
    pushed = {"v1": 50, "v2": 50}
    views = step(alerts, report(kl=0.01, versions=pushed), clock)
    assert f"{DRIFT}/spatial_kl/resolved" in views  # the cause went away: resolve, push or not
    views = step(alerts, report(kl=0.3, versions=pushed), clock)
    assert f"{DRIFT}/spatial_kl/firing" not in views  # but no new page while the push stands
    sent = sorted((a["labels"]["alertname"], a["status"]) for a in alerts_in(receiver))
    assert sent == [(DRIFT, "firing"), (DRIFT, "resolved"), (PUSHED, "firing")]


def outcomes(registry: CollectorRegistry, notifier: str) -> dict[str, float]:
    return {
        o: registry.get_sample_value("driftwatch_notifications_total", {"notifier": notifier, "outcome": o})
        or 0
        for o in ("delivered", "retry", "failed")
    }


class Exploding:
    """A notifier plug-in with a bug: raises what the old urllib helper let escape."""

    key, send_resolved, budget = "9:exploding", True, 0.0

    def send(self, alert: object) -> None:
        raise http.client.BadStatusLine("GARBAGE")


def test_a_receiver_answering_garbage_is_retried_with_backoff_then_given_up(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    """A non-HTTP service on a notifier's URL: each attempt fails inside itself, the other
    notifiers deliver at once, retries wait their backoff, and after max_attempts it is over."""
    garbage = GarbageReceiver()
    try:
        clock, registry = Clock(), CollectorRegistry()
        config = settings(
            receiver,
            [{"detector": "spatial_kl", "for_cycles": 1}],
            max_attempts=3,
            notifiers=[
                {"kind": "webhook", "url": garbage.url + "/hook"},
                {"kind": "webhook", "url": receiver.url + "/hook"},
            ],
        )
        metrics = Metrics(registry)
        notifiers = [Exploding(), *make_notifiers(config.alerts.notifiers)]
        alerts = AlertEngine(config, engine, notifiers=notifiers, now=clock, metrics=metrics)
        alerts.evaluate(report(kl=0.2))
        assert alerts.deliver("docs", 900) == 1  # the good receiver, despite the two broken ones
        assert garbage.connections == 1 and len(alerts_in(receiver)) == 1
        assert alerts.deliver("docs", 900) == 0 and garbage.connections == 1  # backoff: not due yet
        for _ in range(6):
            clock.tick(15)  # past every backoff (1 to 10 minutes)
            alerts.deliver("docs", 900)
        assert garbage.connections == 3 and len(alerts_in(receiver)) == 1
        assert outcomes(registry, "0:webhook") == {"delivered": 0, "retry": 2, "failed": 1}
        assert outcomes(registry, "1:webhook") == {"delivered": 1, "retry": 0, "failed": 0}
        with Session(engine) as session:
            rows = {d.notifier: d for d in session.scalars(select(Delivery))}
        assert (
            rows["0:webhook"].status == "failed" and "the answer is not HTTP" in rows["0:webhook"].last_error
        )
        assert rows["9:exploding"].status == "failed" and "BadStatusLine" in rows["9:exploding"].last_error
        assert rows["1:webhook"].status == "delivered" and rows["0:webhook"].attempts == 3
    finally:
        garbage.close()


def test_a_receiver_slower_than_its_timeout_gets_at_most_max_attempts(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    receiver.delay = 3.0
    config = settings(
        receiver,
        [{"detector": "spatial_kl", "for_cycles": 1}],
        max_attempts=2,
        notifiers=[{"kind": "webhook", "url": receiver.url + "/hook", "timeout": "0.3s"}],
    )
    alerts = AlertEngine(config, engine, now=clock)
    alerts.evaluate(report(kl=0.2))
    for _ in range(5):
        alerts.deliver("docs", 900)
        clock.tick(15)
    assert len(receiver.bodies("/hook")) == 2  # each POST arrived, none was answered in time
    with Session(engine) as session:
        (delivery,) = session.scalars(select(Delivery)).all()
    assert delivery.status == "failed" and "timed out" in (delivery.last_error or "")


def test_every_notification_carries_a_stable_idempotency_key(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    alerts = AlertEngine(settings(receiver, [{"detector": "spatial_kl", "for_cycles": 1}]), engine, now=clock)
    receiver.fail_next(1)
    step(alerts, report(kl=0.2), clock)  # the first POST fails ...
    step(alerts, report(kl=0.2), clock)  # ... its retry carries the same key
    step(alerts, report(kl=0.01), clock)  # resolved: a new state change, a new key
    (firing, resolved) = receiver.bodies("/hook")
    keys = [h["Idempotency-Key"] for h in receiver.headers]
    assert keys == [firing["idempotency_key"], resolved["idempotency_key"]]  # type: ignore[index]
    fingerprint = firing["alerts"][0]["fingerprint"]  # type: ignore[index]
    assert keys[0].startswith(f"{fingerprint}-firing-") and keys[1].startswith(f"{fingerprint}-resolved-")
    assert firing["alerts"][0]["changedAt"] == "2026-11-01T12:00:00Z"  # type: ignore[index]
