"""Faults injected for real into a running `driftwatch run`: the vector store dies in the
middle of a cycle, driftwatch's own store goes away, the vector store hangs on a lock, and
the daemon is SIGKILLed mid-cycle. Each time the daemon keeps going, says why, stores no
half cycle, loses no result and sends no alert twice."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from driftwatch import store
from driftwatch.config import load_config
from driftwatch.detect.registry import REGISTRY
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.store.models import AlertState, Cycle, Delivery, MetricPoint

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
from helpers import Receiver, free_port, sqlalchemy_url


def stored(config: Path) -> list[tuple[Cycle, int]]:
    """Every cycle row with its number of metric points."""
    engine = store.create_store_engine(load_config(config).store.url)
    try:
        with Session(engine) as session:
            counts = dict(
                session.execute(
                    select(MetricPoint.cycle_pk, func.count()).group_by(MetricPoint.cycle_pk)
                ).all()
            )
            cycles = session.scalars(select(Cycle).order_by(Cycle.started_at)).all()
            return [(c, counts.get(c.id, 0)) for c in cycles]
    finally:
        engine.dispose()


def assert_no_half_cycles(rows: list[tuple[Cycle, int]]) -> None:
    for cycle, points in rows:
        assert cycle.finished_at is not None
        expected = 0 if cycle.status == "failed" else len(REGISTRY.names())  # one point per detector
        assert points == expected, (cycle.status, points, cycle.error)


def test_vector_store_dies_mid_cycle_and_comes_back(tmp_path: Path, own_server: EmbeddedPostgres) -> None:
    dsn = own_server.create_database("app")
    embedder = slow_embedder(write_suite(tmp_path / "suite.jsonl", make_store(dsn)), delay=0)
    config = write_config(tmp_path, dsn, port=free_port(), interval="1s", embedder_url=embedder.url)
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 1, 20, "a cycle", daemon
        )
        embedder.delay = 2.0  # the next cycle waits on the embedder ...
        asked = embedder.requests
        wait_for(lambda: embedder.requests > asked, 10, "a cycle in flight", daemon)
        own_server.stop()  # ... and the vector store dies under it
        embedder.delay = 0
        wait_for(
            lambda: daemon.value("driftwatch_cycle_failures_total", collection="docs") >= 1, 20, "a failure"
        )
        back = datetime.now(UTC)
        own_server.start()
        wait_for(
            lambda: any(c.status != "failed" and c.started_at > back for c, _ in stored(config)),
            20,
            "a successful cycle after the store came back",
            daemon,
        )
        assert daemon.get("/healthz")[0] == 200
    finally:
        code, _ = daemon.stop()
        embedder.close()
    rows = stored(config)
    failed = [c for c, _ in rows if c.status == "failed"]
    assert failed and all("connect" in (c.error or "") or "connection" in (c.error or "") for c in failed), [
        c.error for c in failed
    ]
    assert_no_half_cycles(rows)
    log = daemon.output()
    assert code == 0 and "failed" in log and "Traceback" not in log


def test_own_store_outage_loses_no_cycle(tmp_path: Path, pg_db: str, own_server: EmbeddedPostgres) -> None:
    """driftwatch's own (PostgreSQL) store goes away: cycles wait in memory and are written,
    with their own times, when it returns; every cycle the daemon counted is stored."""
    store_url = sqlalchemy_url(own_server.create_database("driftwatch"))
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1s", store_url=store_url)
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 2, 20, "two cycles", daemon
        )
        own_server.stop()
        wait_for(lambda: daemon.value("driftwatch_store_buffered_cycles") >= 2, 20, "buffered cycles", daemon)
        assert daemon.get("/healthz")[0] == 200 and daemon.get("/readyz")[0] == 503
        own_server.start()
        wait_for(
            lambda: daemon.value("driftwatch_store_buffered_cycles") == 0, 20, "the buffer to drain", daemon
        )
        wait_for(lambda: daemon.get("/readyz")[0] == 200, 20, "ready again", daemon)
    finally:
        counted_before_stop = daemon.value("driftwatch_cycles_total", collection="docs")
        code, _ = daemon.stop()
    rows = stored(config)
    assert code == 0
    assert len(rows) >= counted_before_stop  # nothing the daemon ran was lost
    outage = [c for c, _ in rows if c.status == "failed" and "store" in (c.error or "")]
    assert len(outage) >= 2  # recorded as failed once the store returned
    assert_no_half_cycles(rows)
    assert "store is back" in daemon.output()


def test_a_hanging_vector_store_hits_statement_timeout_and_the_daemon_answers(
    tmp_path: Path, pg_db: str
) -> None:
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1s")
    config.write_text(
        config.read_text().replace('interval = "1s"', 'interval = "1s"\nstatement_timeout = "1s"')
    )
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    blocker = psycopg.connect(pg_db)
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 1, 20, "a cycle", daemon
        )
        blocker.execute("LOCK TABLE docs IN ACCESS EXCLUSIVE MODE")  # every read of docs now waits
        started = time.monotonic()
        while time.monotonic() - started < 3:
            tick = time.monotonic()
            assert daemon.get("/healthz")[0] == 200 and time.monotonic() - tick < 1.0  # responsive
            time.sleep(0.2)
        wait_for(lambda: "statement_timeout" in daemon.output(), 10, "the timeout to be reported", daemon)
        blocker.rollback()  # the lock goes
        released = datetime.now(UTC)
        wait_for(
            lambda: any(c.status != "failed" and c.started_at > released for c, _ in stored(config)),
            20,
            "recovery",
        )
    finally:
        blocker.close()
        code, _ = daemon.stop()
    timed_out = [c for c, _ in stored(config) if "statement_timeout" in (c.error or "")]
    assert timed_out and code == 0
    assert "exceeded statement_timeout (1s)" in (timed_out[0].error or "")


@pytest.mark.slow
def test_sigkill_mid_cycle_leaves_a_consistent_store_and_no_double_page(tmp_path: Path, pg_db: str) -> None:
    receiver = Receiver()
    embedder = slow_embedder(write_suite(tmp_path / "suite.jsonl", make_store(pg_db)), delay=0)
    notifiers = f'[[alerts.notifiers]]\nkind = "alertmanager"\nurl = "{receiver.url}"\n'
    config = write_config(
        tmp_path, pg_db, port=free_port(), interval="1s", notifiers=notifiers, embedder_url=embedder.url
    )
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        insert_pushed_rows(pg_db, 1000)
        wait_for(
            lambda: alerts_named(receiver, "EmbeddingModelVersionPushed", "firing"), 20, "the page", daemon
        )
        embedder.delay = 30  # the next cycle hangs on the embedder ...
        asked = embedder.requests
        wait_for(lambda: embedder.requests > asked, 10, "a cycle in flight", daemon)
        daemon.process.send_signal(signal.SIGKILL)  # ... and the process is killed in the middle of it
        daemon.process.wait(10)
        embedder.delay = 0
        restarted = Daemon(config, tmp_path / "daemon.log")
        try:
            before = len(stored(config))
            wait_for(
                lambda: len(stored(config)) >= before + 3, 30, "three cycles after the restart", restarted
            )
        finally:
            code, _ = restarted.stop()
        assert code == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
        embedder.close()
        receiver.close()
    assert len(alerts_named(receiver, "EmbeddingModelVersionPushed", "firing")) == 1  # not paged twice
    rows = stored(config)
    assert_no_half_cycles(rows)
    engine = store.create_store_engine(load_config(config).store.url)
    try:
        with Session(engine) as session:
            states = session.scalars(select(AlertState)).all()
            owed = session.scalars(select(Delivery).where(Delivery.status == "pending")).all()
    finally:
        engine.dispose()
    pushed = [s for s in states if s.alertname == "EmbeddingModelVersionPushed"]
    assert len(pushed) == 1 and pushed[0].state == "firing" and owed == []
