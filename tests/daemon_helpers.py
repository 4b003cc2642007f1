"""Driving `driftwatch run` as a subprocess: a small store and suite, a config, the daemon
process with its log, and a slow embedding service for cycles that must take a while."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftwatch import store
from driftwatch.baseline import capture
from driftwatch.config import load_config
from driftwatch.synthetic import Topics, exact_neighbours, queries_near, rotation

from helpers import EmbeddingService, Receiver, create_vector_table

DIM = 16


def make_store(dsn: str, rows: int = 2000, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    docs, _ = Topics.make(rng, 8, DIM).sample(rng, rows)
    create_vector_table(dsn, "docs", docs, kind=f"vector({DIM})")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
    return docs


def write_suite(path: Path, docs: np.ndarray, n: int = 80) -> dict[str, list[float]]:
    """A reference suite with known answers; returns each query's text -> embedding."""
    rng = np.random.default_rng(5)
    queries, _ = queries_near(rng, docs, n)
    truth = exact_neighbours(queries, docs, 10)
    lines = [
        json.dumps(
            {
                "query_id": f"q{i}",
                "text": f"query {i}",
                "embedding": q.tolist(),
                "relevant_ids": [str(r) for r in rel],
            }
        )
        for i, (q, rel) in enumerate(zip(queries, truth, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")
    return {f"query {i}": q.tolist() for i, q in enumerate(queries)}


def slow_embedder(vectors: dict[str, list[float]], delay: float) -> EmbeddingService:
    """The suite's vectors behind a real HTTP embedding service that takes `delay` seconds an
    answer, as a remote model under load does."""
    return EmbeddingService(lambda texts: [vectors[t] for t in texts], delay=delay)


def write_config(
    tmp_path: Path,
    dsn: str,
    *,
    port: int,
    store_url: str | None = None,
    interval: str = "1s",
    sample_size: int = 300,
    notifiers: str = '[[alerts.notifiers]]\nkind = "log"\n',
    name: str = "driftwatch.toml",
    embedder_url: str | None = None,
    alerts: str = "",
) -> Path:
    embedder = (
        f'[collections.embedder]\nkind = "http"\nurl = "{embedder_url}"\ntimeout = "60s"\n'
        if embedder_url
        else ""
    )
    config = tmp_path / name
    config.write_text(
        f"""
[store]
url = "{store_url or f"sqlite:///{tmp_path / 'store.db'}"}"

[server]
port = {port}

[[collections]]
name = "docs"
dsn = "{dsn}"
table = "docs"
model_version_column = "model_version"
sample_size = {sample_size}
null_replicates = 100
cells = 8
interval = "{interval}"
index_health_interval = "1h"

[collections.reference_suite]
path = "suite.jsonl"
k = 10

{embedder}
[alerts]
repeat_interval = "1h"
{alerts}

[[alerts.rules]]
detector = "any"
for_cycles = 2

{notifiers}
"""
    )
    return config


def prepare(config: Path) -> None:
    """`db upgrade` and `baseline capture`, done in-process for speed."""
    settings = load_config(config)
    engine = store.create_store_engine(settings.store.url)
    try:
        store.upgrade(engine)
        capture(settings.collections[0], engine, np.random.default_rng(0))
    finally:
        engine.dispose()


class Daemon:
    """A `driftwatch run` subprocess with its log in a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = int(re.search(r"port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
        self.log = log
        self._out = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftwatch", "--config", str(config), "run"],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_for(lambda: self.get("/healthz")[0] == 200, 20, "the daemon to answer /healthz", self)
        except BaseException:  # a daemon that never came up must not outlive the test
            self.process.kill()
            self.process.wait()
            self._out.close()
            raise

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def scrape(self) -> dict[str, list]:  # type: ignore[type-arg]
        status, text = self.get("/metrics")
        assert status == 200
        samples: dict[str, list] = {}  # type: ignore[type-arg]
        for family in text_string_to_metric_families(text):
            samples.setdefault(family.name, [])
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
        return samples

    def value(self, name: str, **labels: str) -> float:
        matches = [s.value for s in self.scrape().get(name, []) if labels.items() <= s.labels.items()]
        return matches[0] if matches else math.nan

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal it; (exit status, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._out.close()
        return code, time.monotonic() - started

    def output(self) -> str:
        return self.log.read_text()


# A wait is a liveness bound, not a speed assertion: a busy 2-core CI box runs several times
# slower than a quiet one, and a passing wait returns as soon as its condition holds.
PATIENCE = 3


def wait_for(condition: Callable[[], bool], seconds: float, what: str, daemon: Daemon | None = None) -> None:
    seconds *= PATIENCE
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if daemon is not None and daemon.process.poll() is not None:
            pytest.fail(f"daemon exited ({daemon.process.returncode}) waiting for {what}:\n{daemon.output()}")
        time.sleep(0.1)
    log = f"\n{daemon.output()}" if daemon is not None else ""
    pytest.fail(f"timed out after {seconds}s waiting for {what}{log}")


def insert_pushed_rows(dsn: str, count: int) -> None:
    """What a model push looks like to the store: new rows, a new version, a rotated space."""
    rng = np.random.default_rng(9)
    docs, _ = Topics.make(np.random.default_rng(3), 8, DIM).sample(rng, count)
    pushed = docs @ rotation(rng, DIM, np.pi / 2).T
    rows = [(100_000 + i, "[" + ",".join(f"{x:.6f}" for x in v) + "]", "v2") for i, v in enumerate(pushed)]
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        conn.cursor().copy("COPY docs (id, embedding, model_version) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def alerts_named(receiver: Receiver, name: str, status: str) -> list[tuple[dict, float]]:  # type: ignore[type-arg]
    found = []
    for body, at in receiver.timed("/api/v2/alerts"):
        for alert in body:  # type: ignore[attr-defined]
            ended = alert.get("endsAt")
            is_resolved = ended is not None and datetime.fromisoformat(
                ended.replace("Z", "+00:00")
            ) <= datetime.now(UTC)
            if alert["labels"]["alertname"] == name and (status == "resolved") == is_resolved:
                found.append((alert, at))
    return found
