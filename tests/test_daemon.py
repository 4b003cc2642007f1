"""`driftwatch run` as users run it: a subprocess against the embedded PostgreSQL + pgvector,
scraped over real HTTP, alerting a real local receiver, signalled like a container runtime
does, and stopped under by a vector store that goes away and comes back."""

from __future__ import annotations

import itertools
import json
import math
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.orm import Session

from driftwatch import store
from driftwatch.config import load_config
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.store.models import Cycle

from daemon_helpers import (
    Daemon,
    alerts_named,
    insert_pushed_rows,
    make_store,
    prepare,
    slow_embedder,
    wait_for,
    write_config,
    write_suite,
)
from helpers import Receiver, free_port, run_cli, sqlalchemy_url
from promql import dashboard_exprs, documented_metrics, metric_names, rule_exprs

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "driftwatch.json"
RULES = ROOT / "alerts" / "driftwatch.rules.yml"


def test_metrics_readiness_and_a_vector_store_outage(tmp_path: Path, own_server: EmbeddedPostgres) -> None:
    dsn = own_server.create_database("app")
    write_suite(tmp_path / "suite.jsonl", make_store(dsn))
    config = write_config(tmp_path, dsn, port=free_port())
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 2, 20, "two cycles", daemon
        )
        samples = daemon.scrape()
        missing = documented_metrics() - set(samples)
        assert not missing, f"documented but not exported: {sorted(missing)}"
        queried = [*dashboard_exprs(DASHBOARD), *rule_exprs(RULES).values()]
        used = set().union(*(metric_names(expr) for expr in queried)) - {"up"}  # `up` is Prometheus's own
        assert len(used) >= 12 and not used - set(samples), f"queried but not exported: {used - set(samples)}"

        def one(name: str, **labels: str) -> float:
            values = [s.value for s in samples[name] if labels.items() <= s.labels.items()]
            assert len(values) == 1, (name, labels, samples[name])
            return values[0]

        cycles = one("driftwatch_cycles_total", collection="docs")
        assert one("driftwatch_build_info") == 1
        assert one("driftwatch_cycle_failures_total", collection="docs") == 0
        assert one("driftwatch_cycle_duration_seconds_count", collection="docs") == cycles
        assert 0 < one("driftwatch_cycle_duration_seconds_sum", collection="docs") < 30 * cycles
        assert one("driftwatch_cycle_interval_seconds", collection="docs") == 1.0
        assert abs(one("driftwatch_last_cycle_timestamp_seconds", collection="docs") - time.time()) < 15
        assert one("driftwatch_sample_size", collection="docs") == 300
        assert one("driftwatch_model_version_info", collection="docs", model_version="v1") == 1
        assert one("driftwatch_model_version_mixed_ratio", collection="docs") == 0
        assert 0.5 <= one("driftwatch_recall_at_k", collection="docs", k="10") <= 1
        assert one("driftwatch_finetune_candidates_total", collection="docs") == 0
        assert sum(s.value for s in samples["driftwatch_alerts_firing"]) == 0
        detectors = {s.labels["detector"] for s in samples["driftwatch_detector_value"]}
        # No canary, query-log feedback or arrivals configured: those detectors export nothing.
        assert detectors == {
            "centroid_distance", "mean_shift", "spatial_kl", "new_territory", "classifier_two_sample",
            "score_psi", "recall_at_k", "mrr_at_k", "ndcg_at_k", "model_version", "vector_sanity",
            "index_health",
        }  # fmt: skip
        for s in samples["driftwatch_detector_value"] + samples["driftwatch_detector_threshold"]:
            assert math.isfinite(s.value), s
        for s in samples["driftwatch_detector_p_value"]:
            assert 0 <= s.value <= 1, s
        assert {s.value for s in samples["driftwatch_drifted"]} <= {0.0, 1.0}
        assert daemon.get("/readyz")[0] == 200

        own_server.stop()  # the vector store goes away
        wait_for(lambda: daemon.get("/readyz")[0] == 503, 15, "/readyz to turn not-ready", daemon)
        _status, body = daemon.get("/readyz")
        docs = json.loads(body)["collections"]["docs"]  # not ready at once: the newest cycle failed
        assert docs["ready"] is False and docs["reason"].startswith("its last cycle failed: ")
        assert daemon.get("/healthz")[0] == 200  # alive, just not ready
        assert daemon.value("driftwatch_cycle_failures_total", collection="docs") >= 1
        own_server.start()  # and comes back
        wait_for(lambda: daemon.get("/readyz")[0] == 200, 15, "/readyz to turn ready again", daemon)
    finally:
        code, seconds = daemon.stop()
    assert code == 0 and seconds < 10, daemon.output()
    log = daemon.output()
    assert "cannot connect" in log or "connection" in log  # the failure's cause is logged
    assert "Traceback" not in log


@pytest.mark.slow
def test_model_push_alerts_alertmanager_once_across_a_restart(tmp_path: Path, pg_db: str) -> None:
    receiver = Receiver()
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    notifiers = f'[[alerts.notifiers]]\nkind = "alertmanager"\nurl = "{receiver.url}"\n'
    config = write_config(tmp_path, pg_db, port=free_port(), notifiers=notifiers)
    prepare(config)
    engine = store.create_store_engine(load_config(config).store.url)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 1, 20, "a cycle", daemon
        )
        pushed_at = datetime.now(UTC)
        insert_pushed_rows(pg_db, 1000)
        wait_for(
            lambda: alerts_named(receiver, "EmbeddingModelVersionPushed", "firing"), 20, "the alert", daemon
        )
        (alert, arrived), *_ = alerts_named(receiver, "EmbeddingModelVersionPushed", "firing")
        with Session(engine) as session:
            cycles_between = session.scalars(
                select(Cycle).where(
                    Cycle.started_at >= pushed_at, Cycle.finished_at <= datetime.fromtimestamp(arrived, UTC)
                )
            ).all()
        assert 1 <= len(cycles_between) <= 2
        assert alert["labels"] == {
            "alertname": "EmbeddingModelVersionPushed",
            "collection": "docs",
            "detector": "model_version",
            "severity": "critical",
        }
        assert "v1 → v2" in alert["annotations"]["summary"]
        assert "driftwatch baseline capture --collection docs" in alert["annotations"]["description"]
        assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert alert["generatorURL"].startswith(f"http://127.0.0.1:{daemon.port}/alerts")
        status, body = daemon.get("/alerts")
        assert status == 200 and json.loads(body)["alerts"][0]["state"] == "firing"
        # The page goes out before the cycle's gauges are set: wait for them, do not race them.
        wait_for(
            lambda: daemon.value("driftwatch_alerts_firing", collection="docs", severity="critical") == 1,
            20,
            "the firing-alerts gauge",
            daemon,
        )
        assert daemon.value("driftwatch_drifted", collection="docs", detector="model_version") == 1
        shown = run_cli("--config", str(config), "status")
        assert (
            "alert firing since" in shown.stdout and "EmbeddingModelVersionPushed (critical)" in shown.stdout
        )
    finally:
        code, seconds = daemon.stop()
    assert code == 0 and seconds < 10, daemon.output()

    restarted = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: restarted.value("driftwatch_cycles_total", collection="docs") >= 3,
            20,
            "3 cycles",
            restarted,
        )
        assert len(alerts_named(receiver, "EmbeddingModelVersionPushed", "firing")) == 1  # not re-sent
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("DELETE FROM docs WHERE model_version = 'v2'")  # the push is rolled back
        wait_for(
            lambda: alerts_named(receiver, "EmbeddingModelVersionPushed", "resolved"),
            20,
            "resolved",
            restarted,
        )
        # The rotated rows moved every distribution detector, but the push paged once: no EmbeddingDrift.
        assert not alerts_named(receiver, "EmbeddingDrift", "firing")
    finally:
        code, seconds = restarted.stop(signal.SIGINT)
        engine.dispose()
        receiver.close()
    assert code == 0 and seconds < 10, restarted.output()


@pytest.mark.slow
def test_two_replicas_never_run_one_collection_at_once(
    tmp_path: Path, pg: EmbeddedPostgres, pg_db: str
) -> None:
    store_db = f"s_{uuid.uuid4().hex[:12]}"
    store_url = sqlalchemy_url(pg.create_database(store_db))
    embedder = slow_embedder(write_suite(tmp_path / "suite.jsonl", make_store(pg_db)), delay=0.6)
    try:
        # Each cycle waits 0.6 s on the live embedder and runs every 0.5 s on both replicas:
        # without the lock they would overlap all the time.
        common = {"store_url": store_url, "interval": "500ms", "embedder_url": embedder.url}
        first = write_config(tmp_path, pg_db, port=free_port(), name="a.toml", **common)
        second = write_config(tmp_path, pg_db, port=free_port(), name="b.toml", **common)
        prepare(first)
        replicas = [Daemon(first, tmp_path / "a.log"), Daemon(second, tmp_path / "b.log")]
        try:
            time.sleep(8)
            skipped = sum(r.value("driftwatch_cycles_skipped_total", collection="docs") for r in replicas)
            # A replica that skips mirrors the store's newest cycle: both export current state.
            last = [r.value("driftwatch_last_cycle_timestamp_seconds", collection="docs") for r in replicas]
            kl = [
                r.value("driftwatch_detector_value", collection="docs", detector="spatial_kl")
                for r in replicas
            ]
        finally:
            results = [r.stop() for r in replicas]
        assert all(code == 0 and seconds < 10 for code, seconds in results), [r.output() for r in replicas]
        engine = store.create_store_engine(store_url)
        try:
            with Session(engine) as session:
                cycles = session.scalars(
                    select(Cycle).where(Cycle.collection == "docs").order_by(Cycle.started_at)
                ).all()
        finally:
            engine.dispose()
        for before, after in itertools.pairwise(cycles):
            assert before.finished_at <= after.started_at, (before.runner, after.runner)
        assert len(cycles) >= 6 and skipped >= 1
        assert abs(last[0] - last[1]) < 3 and time.time() - max(last) < 15, last
        assert all(math.isfinite(v) for v in kl), kl
        assert all(c.status != "failed" for c in cycles), [c.error for c in cycles if c.error]
    finally:
        embedder.close()
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(store_db)))


def test_sigterm_in_the_middle_of_a_cycle_exits_zero_within_ten_seconds(tmp_path: Path, pg_db: str) -> None:
    """A cycle stuck on a slow embedding service is abandoned after the grace period; it
    leaves no partial cycle in the store."""
    embedder = slow_embedder(write_suite(tmp_path / "suite.jsonl", make_store(pg_db)), delay=0)
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1h", embedder_url=embedder.url)
    try:
        prepare(config)
        embedder.delay = 30  # every cycle from now on waits 30 s on the embedder
        before = embedder.requests
        daemon = Daemon(config, tmp_path / "daemon.log")
        wait_for(lambda: embedder.requests > before, 10, "the cycle to call the embedder", daemon)
        code, seconds = daemon.stop()
        assert code == 0 and seconds < 10, daemon.output()
        assert "unfinished" in daemon.output()
        engine = store.create_store_engine(load_config(config).store.url)
        try:
            with Session(engine) as session:
                assert session.scalars(select(Cycle)).all() == []
        finally:
            engine.dispose()
    finally:
        embedder.close()
