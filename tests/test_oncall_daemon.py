"""The daemon as the person on call meets it, against the embedded PostgreSQL + pgvector: a
push fired through the default `log` notifier says what to do and where the runbook is; a
daemon started after a `check` ran index health shows that reading from the store, marked
with when it was made; `/readyz` is not ready without a baseline or after a failed cycle;
the landing page at `/` lists collections, alerts and endpoints in a real headless browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from driftwatch import store
from driftwatch.baseline import capture
from driftwatch.config import load_config
from driftwatch.daemon import Daemon as InProcessDaemon
from driftwatch.detect.registry import REGISTRY
from driftwatch.store.models import Cycle, MetricPoint

from daemon_helpers import (
    Daemon,
    insert_pushed_rows,
    make_store,
    prepare,
    wait_for,
    write_config,
    write_suite,
)
from helpers import free_port, run_cli

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's chromium, headless, on a throw-away profile (`make chromium` installs it)."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: run `make chromium` (Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="driftwatch-chromium-") as profile:
        return subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
        )


def index_health_point(config: Path) -> tuple[float, float]:
    """(value, finish time of its cycle) of the newest index_health reading in the store."""
    engine = store.create_store_engine(load_config(config).store.url)
    try:
        with Session(engine) as session:
            point, finished = session.execute(
                select(MetricPoint, Cycle.finished_at)
                .join(Cycle, Cycle.id == MetricPoint.cycle_pk)
                .where(MetricPoint.detector == "index_health", MetricPoint.value.is_not(None))
                .order_by(MetricPoint.id.desc())
            ).first()
            return float(point.value), finished.timestamp()
    finally:
        engine.dispose()


def test_push_via_log_notifier_index_health_from_the_store_and_the_landing_page(
    tmp_path: Path, pg_db: str
) -> None:
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="2s")
    prepare(config)
    checked = run_cli("--config", str(config), "check", cwd=tmp_path)  # runs index health (due: never ran)
    assert checked.returncode == 0, checked.stderr
    value, measured_at = index_health_point(config)

    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycles_total", collection="docs") >= 1, 30, "a cycle", daemon
        )
        labels = {"collection": "docs", "detector": "index_health"}
        # not due again for an hour, yet shown: the reading of the `check`, with its own time
        assert daemon.value("driftwatch_detector_value", **labels) == pytest.approx(value)
        assert daemon.value("driftwatch_detector_last_measured_timestamp_seconds", **labels) == pytest.approx(
            measured_at
        )
        newest = daemon.value("driftwatch_last_cycle_timestamp_seconds", collection="docs")
        assert newest > measured_at  # marked as older than the newest cycle
        assert daemon.value("driftwatch_detector_last_measured_timestamp_seconds",
                            collection="docs", detector="spatial_kl") == pytest.approx(newest)  # fmt: skip
        assert "every 2s" in daemon.output()

        insert_pushed_rows(pg_db, 1500)
        wait_for(
            lambda: "ALERT FIRING EmbeddingModelVersionPushed" in daemon.output(), 60, "the push", daemon
        )
        (line,) = [
            ln for ln in daemon.output().splitlines() if "ALERT FIRING EmbeddingModelVersionPushed" in ln
        ]
        assert f"do: {REGISTRY['model_version'].action}" in line
        assert "runbook: driftwatch runbook model_version" in line

        status, page = daemon.get("/")
        assert status == 200 and page.startswith("<!DOCTYPE html>")
        url = f"http://127.0.0.1:{daemon.port}/"
        dom = chromium(url, "--dump-dom")
        assert dom.returncode == 0, dom.stderr
        for text in ("docs", "EmbeddingModelVersionPushed", "driftwatch runbook model_version", "/metrics",
                     "/readyz", "/alerts", REGISTRY["model_version"].action):  # fmt: skip
            assert text in dom.stdout, text
        shot = Path(os.environ.get("DRIFTWATCH_SCREENSHOT", tmp_path / "landing.png"))
        taken = chromium(url, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
        assert taken.returncode == 0, taken.stderr
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        daemon.stop()


def test_readiness_needs_a_baseline_and_a_successful_newest_cycle(tmp_path: Path, pg_db: str) -> None:
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    config = write_config(tmp_path, pg_db, port=free_port(), interval="1h")
    settings = load_config(config)
    engine = store.create_store_engine(settings.store.url)
    try:
        store.upgrade(engine)
        daemon = InProcessDaemon(settings, engine)

        def reason() -> str | None:
            ready, body = daemon.readiness()
            docs = body["collections"]["docs"]
            assert ready is docs["ready"]
            return docs["reason"]

        assert reason() == "no baseline: run `driftwatch baseline capture --collection docs`"
        capture(settings.collections[0], engine, np.random.default_rng(0))
        assert reason() == "no successful cycle yet"
        assert daemon.monitor.run("docs", 3600.0).status == "ok"
        assert reason() is None
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("ALTER TABLE docs RENAME TO docs_moved")
        assert daemon.monitor.run("docs", 3600.0).status == "failed"
        assert reason().startswith("its last cycle failed: table docs does not exist")  # type: ignore[union-attr]
        page = daemon.landing()
        assert "FAILED" in page and "table docs does not exist" in page and "/readyz" in page
    finally:
        engine.dispose()
