"""Soak: thousands of back-to-back cycles in one process against the embedded PostgreSQL,
through the same path the daemon takes (lock, sample, query log, suite, alerts, click
mining, metrics). Memory must stay flat after warm-up, connections must not leak, and every
cycle must be stored. Exits non-zero when one of those fails.

    .venv/bin/python bench/soak.py                     # 2,000 cycles; rewrites its BENCHMARKS.md section
    .venv/bin/python bench/soak.py --cycles 200 --no-write
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_section

from driftwatch import store
from driftwatch.alerting import AlertEngine
from driftwatch.baseline import capture
from driftwatch.config import settings_from_dict
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.metrics import Metrics
from driftwatch.monitor import Monitor
from driftwatch.pg.querylog import ddl
from driftwatch.store.models import Cycle
from driftwatch.synthetic import Topics, exact_neighbours, queries_near

MARK_BEGIN, MARK_END = "<!-- soak:begin -->", "<!-- soak:end -->"
DIM = 64


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def connections(dsn: str) -> int:
    with psycopg.connect(dsn, application_name="soak-probe") as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'driftwatch%%'"
            ).fetchone()[0]
        )


def build(dsn: str, workdir: Path, rng: np.random.Generator) -> None:
    """A table of 5,000 topic-structured vectors, a query log with clicks, a suite."""
    docs, _ = Topics.make(rng, 12, DIM).sample(rng, 5000)
    queries, _ = queries_near(rng, docs, 200)
    truth = exact_neighbours(queries, docs, 10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector({DIM}), content text)")
        with conn.cursor().copy("COPY docs (id, embedding, content) FROM STDIN") as copy:
            for i, v in enumerate(docs):
                copy.write_row((i, "[" + ",".join(f"{x:.6f}" for x in v) + "]", f"doc {i}"))
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
        conn.execute(ddl("query_log", DIM, reader=None))
        now = datetime.now(UTC)
        with conn.cursor().copy(
            "COPY query_log (ts, query_id, query_text, result_ids, result_scores, clicked_ids) FROM STDIN"
        ) as copy:
            for j, ids in enumerate(truth):
                copy.write_row(
                    (now - timedelta(minutes=30) + timedelta(seconds=j), f"q{j}", f"query {j}",
                     [str(i) for i in ids], [0.9 - 0.01 * k for k in range(10)], [str(ids[3])])
                )  # fmt: skip
    with (workdir / "suite.jsonl").open("w") as f:
        for j in range(40):
            f.write(json.dumps({"query_id": f"s{j}", "embedding": queries[j].tolist(),
                                "relevant_ids": [str(i) for i in truth[j]]}) + "\n")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200, help="cycles before the memory reference point")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    workdir = Path(tempfile.mkdtemp(prefix="driftwatch-soak-"))
    with EmbeddedPostgres(workdir / "pg", delete_on_stop=True) as server:
        dsn = server.create_database("app")
        build(dsn, workdir, rng)
        raw = {
            "store": {"url": f"sqlite:///{workdir / 'store.db'}"},
            "collections": [{
                "name": "docs", "dsn": dsn, "table": "docs", "text_column": "content",
                "sample_size": 100, "null_replicates": 50, "cells": 8, "index_health_interval": "1s",
                "query_log": {"table": "query_log", "window": "1h", "click_delay": "0s"},
                "reference_suite": {"path": str(workdir / "suite.jsonl")},
            }],
        }  # fmt: skip
        settings = settings_from_dict(raw, env={})
        engine = store.create_store_engine(settings.store.url)
        store.upgrade(engine)
        capture(settings.collections[0], engine, rng)
        monitor = Monitor(settings, engine, Metrics(CollectorRegistry()), AlertEngine(settings, engine))
        checkpoints: list[list[str]] = []
        reference_rss = reference_conns = None
        failed = 0
        started = time.monotonic()
        for cycle in range(1, args.cycles + 1):
            report = monitor.run("docs", 0.0, rng=rng)
            failed += report is None or report.status == "failed"
            if cycle == args.warmup:
                gc.collect()
                reference_rss, reference_conns = rss_mib(), connections(dsn)
            if cycle % max(1, args.cycles // 10) == 0 or cycle == args.warmup:
                gc.collect()
                elapsed = time.monotonic() - started
                checkpoints.append(
                    [f"{cycle:,}", f"{rss_mib():.1f}", str(connections(dsn)), f"{1000 * elapsed / cycle:.0f}"]
                )
                print(f"cycle {cycle}: rss {rss_mib():.1f} MiB, connections {connections(dsn)}", flush=True)
        gc.collect()
        final_rss, final_conns = rss_mib(), connections(dsn)
        with Session(engine) as session:
            stored = session.scalar(select(func.count(Cycle.id)))
        engine.dispose()
    growth = (final_rss - reference_rss) / reference_rss if reference_rss else float("nan")
    ok = growth < 0.10 and final_conns <= (reference_conns or 0) and stored == args.cycles and not failed
    headers = ["after cycle", "RSS (MiB)", "driftwatch connections open", "ms per cycle (mean so far)"]
    table = markdown_table(headers, checkpoints)
    text = (
        f"{MARK_BEGIN}\n### Soak: {args.cycles:,} cycles in one process\n\n"
        f"`.venv/bin/python bench/soak.py --cycles {args.cycles}` (also `make bench-soak`); {machine()}.\n"
        f"Each cycle: lock, sample 100 of 5,000 64-d rows, query-log window, 40-query suite through HNSW, "
        f"index health, alert engine, click mining, metrics; no pause between cycles.\n\n{table}\n\n"
        f"RSS after warm-up (cycle {args.warmup:,}) {reference_rss:.1f} MiB, at the end {final_rss:.1f} MiB: "
        f"growth {100 * growth:+.1f}% (limit +10%). Connections open to the vector store between cycles: "
        f"{reference_conns} after warm-up, {final_conns} at the end. Cycles stored: {stored:,} of "
        f"{args.cycles:,}; failed: {failed}. Verdict: {'pass' if ok else 'FAIL'}.\n{MARK_END}"
    )
    if args.no_write:
        print(text)
    else:
        write_section(text, MARK_BEGIN, MARK_END)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
