"""The one layer that talks to the monitored PostgreSQL (driftwatch.pg.session / tables /
codecs): a whole pass opens one connection per monitored database, counted by the server
itself; its reads share one snapshot; the catalog description, scoped planner settings and
the binary COPY decode behave as the readers rely on."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql
from sqlalchemy import Engine

from driftwatch.baseline import capture
from driftwatch.config import CollectionSettings, Settings, settings_from_dict
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.errors import SourceError
from driftwatch.monitor import Monitor
from driftwatch.pg.codecs import copy_layout, copy_rows
from driftwatch.pg.querylog import LogRead, ddl, read_window
from driftwatch.pg.sampler import fetch_by_ids, sample_collection
from driftwatch.pg.session import Sessions
from driftwatch.pg.suite import run_queries
from driftwatch.pg.tables import AnnIndex, Source
from driftwatch.store import repository

from daemon_helpers import make_store, write_suite
from helpers import create_vector_table

DIM = 16


class SessionCount:
    """Sessions the server has seen established to one database (pg_stat_database.sessions),
    read once every other client has left, so each has reported its own connection."""

    def __init__(self, dsn: str) -> None:
        self.probe = psycopg.connect(dsn, autocommit=True)
        self.probe.execute("SELECT pg_stat_force_next_flush()")  # the probe's own session lands now

    def settled(self) -> int:
        deadline = time.monotonic() + 30
        while self.probe.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "other clients still connected"
            time.sleep(0.05)
        # A backend reports its statistics before it leaves pg_stat_activity.
        self.probe.execute("SELECT pg_stat_clear_snapshot()")
        return int(
            self.probe.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
        )

    def close(self) -> None:
        self.probe.close()


@pytest.fixture
def other_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """A second monitored database, for a query log that lives apart from the vectors."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg.create_database(name)
    yield dsn
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def log_clicked_queries(store_dsn: str, log_dsn: str, docs: np.ndarray, rng: np.random.Generator) -> None:
    """What the application does: search, log ranked ids and scores, and a click below the top."""
    queries = docs[rng.choice(len(docs), 80, replace=False)] + rng.normal(0, 0.05, (80, DIM))
    at = datetime.now(UTC) - timedelta(minutes=30)
    with psycopg.connect(store_dsn) as store, psycopg.connect(log_dsn, autocommit=True) as log:
        register_vector(store)
        log.execute(ddl("query_log", DIM, reader=None))
        register_vector(log)
        for i, q in enumerate(queries.astype(np.float32)):
            hits = store.execute(
                "SELECT id::text, 1 - (embedding <=> %s) FROM docs ORDER BY embedding <=> %s LIMIT 10", (q, q)
            ).fetchall()
            log.execute(
                "INSERT INTO query_log (ts, query_id, query_text, query_embedding, model_version, "
                "result_ids, result_scores, clicked_ids) VALUES (%s, %s, %s, %s, 'v1', %s, %s, %s)",
                (at + timedelta(seconds=i), f"q{i}", f"query {i}", q, [h[0] for h in hits],
                 [h[1] for h in hits], [hits[2][0]]),
            )  # fmt: skip


def configure(dsn: str, tmp_path: Path, log_dsn: str | None) -> Settings:
    raw = {
        "name": "docs",
        "dsn": dsn,
        "table": "docs",
        "model_version_column": "model_version",
        "text_column": "content",
        "sample_size": 300,
        "null_replicates": 100,
        "cells": 8,
        "sentinels": 16,
        "index_health_queries": 8,
        "reference_suite": {"path": str(tmp_path / "suite.jsonl")},
        "query_log": {"table": "query_log", "window": "1d", "click_delay": "0s"}
        | ({"dsn": log_dsn} if log_dsn else {}),
    }
    return settings_from_dict({"collections": [raw]}, env={}, base_dir=tmp_path)


@pytest.mark.parametrize("log_apart", [False, True], ids=["log-in-the-store", "log-in-another-database"])
def test_a_pass_opens_one_connection_per_monitored_database(
    pg_db: str, other_db: str, tmp_path: Path, engine: Engine, log_apart: bool
) -> None:
    """Capture, then a whole pass (sample, query-log window, ANN and exact suite queries,
    sentinels, census, then click mining): one connection to each database it reads."""
    docs = make_store(pg_db)
    write_suite(tmp_path / "suite.jsonl", docs)
    log_dsn = other_db if log_apart else pg_db
    log_clicked_queries(pg_db, log_dsn, docs, np.random.default_rng(1))
    config = configure(pg_db, tmp_path, other_db if log_apart else None)
    watched = [pg_db, other_db] if log_apart else [pg_db]
    counts = [SessionCount(dsn) for dsn in watched]
    try:
        before = [c.settled() for c in counts]
        capture(config.collections[0], engine, np.random.default_rng(2))
        captured = [c.settled() for c in counts]
        report = Monitor(config, engine).run("docs", 900, rng=np.random.default_rng(3))
        after = [c.settled() for c in counts]
    finally:
        for c in counts:
            c.close()
    assert [b - a for a, b in zip(before, captured, strict=True)] == [1] * len(watched)
    assert [b - a for a, b in zip(captured, after, strict=True)] == [1] * len(watched)

    # ... and the pass did read everything it is meant to.
    assert report is not None and report.status != "failed", report and report.error
    results = {r.detector: r for r in report.results}
    assert len(results["index_health"].details["queries_checked"]) == 8  # the exact queries ran
    assert "worst_queries" in results["recall_at_k"].details  # the ANN queries ran
    assert results["score_psi"].details["source"] == "query_log"  # the window was read
    assert results["model_version"].details["sentinels_checked"] == 16  # the sentinels were read
    assert repository.candidate_counts(engine)["docs"] > 0  # mining read clicks and documents


def test_the_reads_of_a_pass_share_one_snapshot(pg_db: str, tmp_path: Path) -> None:
    """Rows committed between two reads of a pass are seen by neither; the next snapshot on
    the same connection sees them."""
    docs = make_store(pg_db, rows=600)
    log_clicked_queries(pg_db, pg_db, docs, np.random.default_rng(4))
    settings = configure(pg_db, tmp_path, None).collections[0]
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)
    new = np.random.default_rng(5).standard_normal((20, DIM)).astype(np.float32)
    new_ids = [str(i) for i in range(10_000, 10_020)]
    with Sessions(settings) as sessions:
        first = sample_collection(sessions.store, settings, 400, np.random.default_rng(0), with_ids=True)
        assert first.method == "full" and first.rows_sampled == 600

        with psycopg.connect(pg_db, autocommit=True) as app:  # the application writes meanwhile
            register_vector(app)
            for row_id, vector in zip(new_ids, new, strict=True):
                app.execute(
                    "INSERT INTO docs (id, embedding, content) VALUES (%s, %s, 'new')", (int(row_id), vector)
                )
            app.execute(
                "INSERT INTO query_log (ts, query_id, result_ids, result_scores) "
                "SELECT now(), 'late' || g, ARRAY['1'], ARRAY[0.5::real] FROM generate_series(1, 5) g"
            )

        window = read_window(sessions.query_log, settings, LogRead(since, until))
        again = sample_collection(sessions.store, settings, 400, np.random.default_rng(0), with_ids=True)
        nearest = run_queries(sessions.store, settings, new, 1)
        assert window.queries == 80 and again.rows_sampled == 600
        assert fetch_by_ids(sessions.store, settings, new_ids) == {}
        assert not set(new_ids) & {ids[0] for ids in nearest.ids}

        sessions.end_snapshot()  # the same connection, a new snapshot: now they are there
        assert read_window(sessions.query_log, settings, LogRead(since, until)).queries == 85
        assert set(fetch_by_ids(sessions.store, settings, new_ids)) == set(new_ids)
        assert {ids[0] for ids in run_queries(sessions.store, settings, new, 1).ids} == set(new_ids)
        assert sessions.connections == 1


def test_planner_settings_of_a_suite_query_end_with_it(pg_db: str) -> None:
    create_vector_table(pg_db, "docs", np.eye(8, dtype=np.float32), kind="vector(8)")
    settings = CollectionSettings(name="d", dsn=pg_db, table="docs")
    with Sessions(settings) as sessions:
        conn = sessions.store.conn
        started = conn.execute("SELECT now(), current_setting('enable_indexscan')").fetchone()
        exact = run_queries(sessions.store, settings, np.eye(8, dtype=np.float32)[:2], 3, exact=True)
        assert [ids[0] for ids in exact.ids] == ["0", "1"]
        # Index scans are back on, and it is still the same transaction (same snapshot).
        assert conn.execute("SELECT now(), current_setting('enable_indexscan')").fetchone() == started
        assert started[1] == "on"


def test_describe_names_type_dimension_and_the_index_opclass(pg_db: str) -> None:
    create_vector_table(pg_db, "docs", np.ones((50, 8), dtype=np.float32), kind="vector(8)")
    create_vector_table(pg_db, "half", np.ones((50, 8), dtype=np.float16), kind="halfvec(8)")
    create_vector_table(pg_db, "bare", np.ones((5, 3), np.float32), kind="vector")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE INDEX docs_ip ON docs USING hnsw (embedding vector_ip_ops) WHERE model_version = 'v1'"
        )
        conn.execute("CREATE INDEX docs_cos ON docs USING hnsw (embedding vector_cosine_ops)")
        conn.execute("CREATE INDEX docs_btree ON docs (embedding)")  # no ANN index
        conn.execute("CREATE INDEX half_l2 ON half USING hnsw (embedding halfvec_l2_ops)")
        conn.execute("CREATE INDEX bare_expr ON bare USING hnsw ((embedding::vector(3)) vector_l2_ops)")

    def describe(table: str):  # type: ignore[no-untyped-def]
        settings = CollectionSettings(name="d", dsn=pg_db, table=table)
        with Sessions(settings) as sessions:
            return sessions.store.describe(Source.of(settings), settings)

    docs, half, bare = describe("docs"), describe("half"), describe("bare")
    assert (docs.kind, docs.dim, docs.opclass) == ("vector", 8, "vector_cosine_ops")
    assert docs.indexes == (
        AnnIndex("docs_cos", "hnsw", "vector_cosine_ops", partial=False),
        AnnIndex("docs_ip", "hnsw", "vector_ip_ops", partial=True),
    )
    assert (half.kind, half.dim, half.opclass) == ("halfvec", 8, "halfvec_l2_ops")
    assert (bare.kind, bare.dim, bare.indexes) == (
        "vector",
        None,
        (),
    )  # an expression index is not the column's


def test_binary_copy_is_checked_against_its_layout(pg_db: str) -> None:
    create_vector_table(pg_db, "docs", np.arange(12, dtype=np.float32).reshape(3, 4), kind="vector(4)")
    query = sql.SQL("SELECT id, true, embedding FROM docs ORDER BY id")
    settings = CollectionSettings(name="d", dsn=pg_db, table="docs")
    with Sessions(settings) as sessions, sessions.store.reading("docs", "copying") as conn:
        rows = copy_rows(conn, query, copy_layout(id="int8", ok="bool", v=4))
        assert rows["id"].tolist() == [0, 1, 2] and rows["ok"].all()
        assert np.array_equal(rows["v"], np.arange(12, dtype=np.float32).reshape(3, 4))
        layout = copy_layout(id="int8", ok="bool", v=4)
        swapped = sql.SQL("SELECT embedding, true, id FROM docs")  # the same row size, other fields
        with pytest.raises(SourceError, match=r"do not match the expected \(id, ok, v\) layout"):
            copy_rows(conn, swapped, layout)
        with pytest.raises(SourceError, match=r"fixed-size \(id, ok, v\) rows"):
            copy_rows(conn, query, copy_layout(id="int8", ok="bool", v=3))
        nulls = sql.SQL("SELECT NULL::int8 FROM generate_series(1, 7)")  # 7 x 6 bytes = 3 x 14
        with pytest.raises(SourceError, match=r"\(id\) layout"):  # a NULL has no fixed size
            copy_rows(conn, nulls, copy_layout(id="int8"))


def _calls(node: ast.AST, module: str, function: str) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    return node.func.attr == function and getattr(node.func.value, "id", None) == module


def test_only_the_session_module_connects_to_a_monitored_database() -> None:
    """Every read of the monitored store goes through driftwatch.pg.session: nothing else in
    the package calls psycopg.connect (the demo and the embedded server own their databases)."""
    package = Path(__file__).resolve().parents[1] / "driftwatch"
    allowed = {package / "pg" / "session.py", package / "demo.py", package / "embedded.py"}
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if path not in allowed and _calls(node, "psycopg", "connect"):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []
