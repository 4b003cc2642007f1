"""Alert delivery and the daemon's edges, as users hit them: `driftwatch run` subprocesses on
the embedded PostgreSQL + pgvector, real HTTP receivers on 127.0.0.1 (one that answers
garbage, one that dies with its sender), SIGKILL between a POST and its recording, two
daemons on one SQLite file, `check` from cron beside a daemon, a burst of 300 connections,
and SIGTERM while the store is down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from driftwatch.embedded import EmbeddedPostgres

from daemon_helpers import (
    Daemon,
    alerts_named,
    insert_pushed_rows,
    make_store,
    prepare,
    wait_for,
    write_config,
    write_suite,
)
from helpers import GarbageReceiver, Receiver, free_port, run_cli, sqlalchemy_url

PUSHED = "EmbeddingModelVersionPushed"
KUBERNETES = {  # what a pod beside a Service named `driftwatch` gets
    "DRIFTWATCH_PORT": "tcp://10.0.0.7:9187",
    "DRIFTWATCH_PORT_9187_TCP": "tcp://10.0.0.7:9187",
    "DRIFTWATCH_SERVICE_HOST": "10.0.0.7",
    "DRIFTWATCH_SERVICE_PORT": "9187",
}
FAST_RETRIES = 'max_attempts = 3\nretry_backoff = "1s"\nretry_backoff_max = "2s"\n'


def webhook(url: str) -> str:
    return f'[[alerts.notifiers]]\nkind = "webhook"\nurl = "{url}"\ntimeout = "2s"\nconnect_timeout = "1s"\n'


def pushes(receiver: Receiver) -> list[object]:
    return [b for b in receiver.bodies("/hook") if b["alerts"][0]["labels"]["alertname"] == PUSHED]  # type: ignore[index]


def test_a_garbage_receiver_never_stops_cycles_metrics_or_other_notifiers(tmp_path: Path, pg_db: str) -> None:
    """Also: the pod's Kubernetes service variables do not stop the daemon from starting."""
    garbage, receiver = GarbageReceiver(), Receiver()
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    notifiers = (
        webhook(garbage.url + "/hook")
        + f'[[alerts.notifiers]]\nkind = "alertmanager"\nurl = "{receiver.url}"\n'
    )
    config = write_config(tmp_path, pg_db, port=free_port(), notifiers=notifiers, alerts=FAST_RETRIES)
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log", env=KUBERNETES)
    try:
        insert_pushed_rows(pg_db, 1000)
        wait_for(lambda: alerts_named(receiver, PUSHED, "firing"), 30, "the page", daemon)
        failed = {"notifier": "0:webhook", "outcome": "failed"}
        wait_for(lambda: daemon.value("driftwatch_notifications_total", **failed) == 1, 40, "give-up", daemon)
        cycles = daemon.value("driftwatch_cycles_total", collection="docs")
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= cycles + 3,
            30,
            "cycles",
            daemon,
        )
        assert daemon.value("driftwatch_cycle_failures_total", collection="docs") == 0
        assert daemon.value("driftwatch_alerts_firing", collection="docs", severity="critical") == 1
        retried = daemon.value("driftwatch_notifications_total", notifier="0:webhook", outcome="retry")
        delivered = daemon.value(
            "driftwatch_notifications_total", notifier="1:alertmanager", outcome="delivered"
        )
    finally:
        code, _ = daemon.stop()
        garbage.close()
        receiver.close()
    assert code == 0
    assert garbage.connections == 3 and retried == 2  # max_attempts, then nothing more
    assert delivered == 1 and len(alerts_named(receiver, PUSHED, "firing")) == 1
    assert "giving up: webhook notifier http://127.0.0.1" in daemon.output()
    assert "Traceback" not in daemon.output()


def test_sigkill_between_post_and_recording_resends_the_same_key(tmp_path: Path, pg_db: str) -> None:
    """At-least-once, bounded: the receiver kills the daemon after getting each of the first
    three POSTs, before answering; every restart resends, and every POST de-duplicates by
    its key to exactly one per state change."""
    receiver = Receiver()
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(
        tmp_path, pg_db, port=free_port(), notifiers=webhook(receiver.url + "/hook"),
        alerts='max_attempts = 8\nretry_backoff = "1s"\nretry_backoff_max = "2s"\n',
    )  # fmt: skip
    prepare(config)
    kills, running = [], [Daemon(config, tmp_path / "daemon.log")]

    def die_before_answering(path: str, body: object, headers: dict[str, str]) -> None:
        if len(kills) < 3:
            kills.append(headers["Idempotency-Key"])
            os.kill(running[-1].process.pid, signal.SIGKILL)

    receiver.before_answer = die_before_answering
    try:
        insert_pushed_rows(pg_db, 1000)
        for killed in range(1, 4):
            wait_for(
                lambda k=killed: len(kills) >= k and running[-1].process.poll() is not None, 40, "a kill"
            )
            running.append(Daemon(config, tmp_path / "daemon.log"))
        wait_for(lambda: len(receiver.bodies("/hook")) >= 4, 40, "the fourth POST", running[-1])
        time.sleep(3)  # a fifth would come after the answered fourth only if delivery were not recorded
    finally:
        code, _ = running[-1].stop()
        receiver.close()
    assert code == 0
    bodies, headers = receiver.bodies("/hook"), receiver.headers
    keys = [h["Idempotency-Key"] for h in headers]
    assert len(bodies) == 4 and keys == [b["idempotency_key"] for b in bodies]  # type: ignore[index]
    changes = {(b["alerts"][0]["fingerprint"], b["status"], b["alerts"][0]["changedAt"]) for b in bodies}  # type: ignore[index]
    assert len(set(keys)) == len(changes) == 1  # one state change, sent 4 times, one key
    assert Counter(keys).most_common(1)[0][1] == 4 and kills == keys[:3]


def test_one_daemon_per_sqlite_store_and_check_beside_it_never_double_pages(
    tmp_path: Path, pg_db: str
) -> None:
    receiver = Receiver()
    receiver.delay = 1.0  # slow enough for `check` and the daemon to overlap in delivery
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(
        tmp_path, pg_db, port=free_port(), interval="2s", notifiers=webhook(receiver.url + "/hook")
    )
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        second = config.with_name("second.toml")
        second.write_text(config.read_text().replace(f"port = {daemon.port}", f"port = {free_port()}"))
        refused = run_cli("--config", str(second), "run")
        assert refused.returncode == 2
        assert (
            f"another driftwatch daemon (pid {daemon.process.pid}) is running on the SQLite store"
            in refused.stderr
        )
        assert "replicas need a PostgreSQL store" in refused.stderr
        insert_pushed_rows(pg_db, 1000)
        with ThreadPoolExecutor(3) as pool:  # cron runs overlapping with each other and the daemon
            checks = list(pool.map(lambda _: run_cli("--config", str(config), "check", "--json"), range(6)))
        wait_for(lambda: pushes(receiver), 30, "the page", daemon)
        time.sleep(4)
    finally:
        code, _ = daemon.stop()
        receiver.close()
    assert code == 0 and all(c.returncode in (0, 1) for c in checks), [c.stderr[-500:] for c in checks]
    keys = [h["Idempotency-Key"] for h in receiver.headers]
    assert keys and len(keys) == len(set(keys)), keys  # every notification POSTed once, by one process
    assert len(pushes(receiver)) == 1


def test_metrics_answers_under_a_burst_idle_and_slow_clients(tmp_path: Path, pg_db: str) -> None:
    """300 connections at once: 200 that never send a byte, 60 that trickle half a request,
    40 real scrapes; every scrape is answered, and the daemon's thread count stays bounded."""
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1h")
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    sockets: list[socket.socket] = []
    try:
        for i in range(260):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            if i >= 200:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            sockets.append(s)

        def scrape(_: int) -> int:
            return daemon.get("/metrics")[0]

        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(scrape, range(40)))
        threads = int(subprocess.run(
            ["ps", "-o", "nlwp=", "-p", str(daemon.process.pid)], capture_output=True, text=True, check=True
        ).stdout)  # fmt: skip
        assert daemon.get("/healthz")[0] == 200
    finally:
        for s in sockets:
            s.close()
        code, _ = daemon.stop()
    assert statuses == [200] * 40 and code == 0
    assert threads < 40  # not one thread per connection: 300 connections were open


def test_sigterm_with_reports_buffered_for_a_down_store_says_what_was_dropped(
    tmp_path: Path, pg_db: str, own_server: EmbeddedPostgres
) -> None:
    store_url = sqlalchemy_url(own_server.create_database("driftwatch"))
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1s", store_url=store_url)
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 1, 20, "a cycle", daemon
        )
        own_server.stop()
        wait_for(lambda: daemon.value("driftwatch_store_buffered_cycles") >= 2, 30, "buffered cycles", daemon)
    finally:
        code, seconds = daemon.stop()
    own_server.start()
    output = daemon.output()
    assert code == 0 and seconds < 15, output
    assert "buffered cycle report(s) could not be written to the store" in output and "are dropped" in output


def test_buffered_reports_are_written_at_stop_when_the_store_answers(engine) -> None:  # type: ignore[no-untyped-def]
    """The other half of the drain: a store that answers again gets the buffer before exit."""
    from datetime import UTC, datetime

    from driftwatch.config import settings_from_dict
    from driftwatch.cycle import failed_report
    from driftwatch.monitor import Monitor
    from driftwatch.store import repository

    settings = settings_from_dict(
        {"collections": [{"name": "docs", "dsn": "postgresql://x@localhost/app", "table": "docs"}]}, env={}
    )
    monitor = Monitor(settings, engine)
    for i in range(3):
        report = failed_report("docs", datetime.now(UTC), 0.1, "store unreachable")
        report.unsaved = "store unreachable"
        monitor._buffer(f"00000000-0000-0000-0000-00000000000{i}", report)
    assert monitor.drain(5.0) == 0 and not monitor.unsaved
    assert len(repository.recent_cycles(engine, "docs", 10)) == 3
