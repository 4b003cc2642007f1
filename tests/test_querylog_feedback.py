"""The query-log window reader on the real embedded PostgreSQL: thumbs, follow-ups and
reformulations computed in SQL over sessions, and late rows counted exactly once across
cycles (the read overlaps by late_arrival; what earlier cycles counted is kept in the store)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import Engine

from driftwatch.config import CollectionSettings
from driftwatch.cycle import log_read
from driftwatch.errors import QueryLogError
from driftwatch.pg.querylog import LogRead, counted_after, ddl, load_querylog, parse_querylog, read_window
from driftwatch.pg.session import Sessions
from driftwatch.store import repository

from helpers import run_cli

INSERT = (
    "INSERT INTO query_log (ts, query_id, result_ids, result_scores, clicked_ids, session_id, feedback) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def settings_for(dsn: str, **log: object) -> CollectionSettings:
    config = {"table": "query_log", "click_delay": "0s", "follow_up_window": "2m", **log}
    return CollectionSettings(name="docs", dsn=dsn, table="docs", query_log=config)


def read(settings: CollectionSettings, since: datetime, until: datetime, **kw: object):  # type: ignore[no-untyped-def]
    with Sessions(settings) as sessions:
        return read_window(sessions.query_log, settings, LogRead(since, until, **kw))  # type: ignore[arg-type]


def test_ddl_creates_the_indexes_the_writes_and_reads_need(pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(ddl("query_log", 4, reader=None))
        indexes = dict(
            conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'query_log'")
        )
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN UPDATE query_log SET feedback = -1 WHERE query_id = 'q1'")
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(INSERT, (datetime.now(UTC), "x", ["a"], [0.5], [], "s", 2))
    assert "UNIQUE" in indexes["query_log_query_id_key"]
    assert "(ts)" in indexes["query_log_ts_idx"]
    assert "(session_id, ts)" in indexes["query_log_session_idx"]
    assert "query_log_query_id_key" in plan  # the click / thumbs UPDATE does not scan the log


def test_thumbs_follow_ups_and_reformulations(pg_db: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t = now - timedelta(minutes=30)
    s = timedelta(seconds=1)
    rows = [
        # session A: no click, asked again 30 s later -> reformulated; the follow-up is clicked
        (t, "a1", ["d1", "d2"], [0.9, 0.8], [], "A", None),
        (t + 30 * s, "a2", ["d3"], [0.7], ["d3"], "A", 1),
        # session B: clicked, then another query 10 s later -> a follow-up, not a reformulation
        (t + 60 * s, "b1", ["d1"], [0.9], ["d1"], "B", None),
        (t + 70 * s, "b2", ["d2"], [0.8], [], "B", None),
        # session C: clicked but thumbs down, asked again -> reformulated
        (t + 100 * s, "c1", ["d4"], [0.6], ["d4"], "C", -1),
        (t + 150 * s, "c2", ["d5"], [0.6], ["d5"], "C", None),
        # session D: no click, next query 5 minutes later -> outside follow_up_window
        (t + 200 * s, "d1", ["d1"], [0.5], [], "D", None),
        (t + 500 * s, "d2", ["d1"], [0.5], [], "D", None),
        # no session: no click, but nothing can follow it
        (t + 600 * s, "n1", ["d1"], [0.5], [], None, -1),
        # session E: the window ends between the query and its follow-up: still seen
        (t + 20 * 60 * s - s, "e1", ["d1"], [0.5], [], "E", None),
        (t + 20 * 60 * s + 20 * s, "e2", ["d1"], [0.5], [], "E", None),
    ]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(ddl("query_log", None, reader=None))
        for row in rows:
            conn.execute(INSERT, row)
    window = read(settings_for(pg_db), t - s, t + 20 * 60 * s)
    order = ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2", "n1", "e1"]
    assert window.queries == len(order)
    expected = {"a1", "c1", "e1"}
    assert window.reformulated is not None and window.thumbs is not None and window.clicked is not None
    assert [q for q, r in zip(order, window.reformulated, strict=True) if r] == sorted(expected)
    assert window.thumbs.tolist() == [0, 1, 0, 0, -1, 0, 0, 0, -1, 0]
    assert window.clicked.tolist() == [False, True, True, False, True, True, False, False, False, False]
    assert window.ts is not None and np.all(np.diff(window.ts) > 0)  # log order


def test_a_log_without_the_optional_columns_has_no_feedback_arrays(pg_db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE query_log (ts timestamptz, query_id text, query_text text, model_version text, "
            "result_ids text[], result_scores real[], clicked_ids text[])"
        )
        conn.execute(
            "INSERT INTO query_log (ts, query_id, result_ids, result_scores, clicked_ids) "
            "VALUES (%s, 'q', '{a}', '{0.5}', '{a}')",
            (now - timedelta(minutes=5),),
        )
    window = read(settings_for(pg_db), now - timedelta(hours=1), now)
    assert window.queries == 1 and window.clicked is not None and window.clicked.tolist() == [True]
    assert window.thumbs is None and window.reformulated is None


def _cycle(settings: CollectionSettings, engine: Engine, now: datetime) -> np.ndarray:
    """One cycle's read, as check_collection does it: the stored mark, the overlapping read,
    the new mark stored with a cycle row. Returns the query-id hashes it counted."""
    assert settings.query_log is not None
    previous = repository.counted_queries(engine, settings.name)
    window = read(settings, **vars(log_read(settings.query_log, now, previous, None)))
    repository.save_cycle(
        engine, cycle_id=f"c{now.timestamp()}", collection=settings.name, started_at=now, finished_at=now,
        status="ok", error=None, sample_size=None, model_versions=None, baseline_id=None, results=[],
        counted=counted_after(previous, window, settings.query_log.late_arrival),
    )  # fmt: skip
    assert window.keys is not None
    return window.keys


def test_late_rows_are_counted_exactly_once(pg_db: str, engine: Engine) -> None:
    """Cycles a minute apart; between them the application writes rows whose ts lags 1-10
    minutes (a buffered writer). Every row is counted by exactly one cycle; a row lagging more
    than late_arrival (documented) is not counted at all."""
    settings = settings_for(pg_db, late_arrival="15m", window="1h", follow_up_window="1s")
    rng = np.random.default_rng(3)
    clock = datetime.now(UTC) - timedelta(hours=2)  # simulated time: the read only looks at ts
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(ddl("query_log", None, reader=None))
    counted: Counter[int] = Counter()
    counted.update(_cycle(settings, engine, clock).tolist())  # the first cycle: an empty log
    written, too_late = [], []
    for minute in range(40):
        clock += timedelta(minutes=1)
        with psycopg.connect(pg_db, autocommit=True) as conn:
            for i in range(int(rng.integers(3, 9))):
                lag = timedelta(seconds=float(rng.uniform(60, 600)))
                query_id = f"m{minute}-{i}"
                conn.execute(INSERT, (clock - lag, query_id, ["d"], [0.5], [], None, None))
                written.append(query_id)
            if minute == 30:
                conn.execute(INSERT, (clock - timedelta(minutes=25), "beyond", ["d"], [0.5], [], None, None))
                too_late.append("beyond")
        counted.update(_cycle(settings, engine, clock).tolist())
    clock += timedelta(minutes=20)  # the rows written last are read once they are old enough
    counted.update(_cycle(settings, engine, clock).tolist())
    with psycopg.connect(pg_db) as conn:
        keys = dict(conn.execute("SELECT query_id, hashtextextended(query_id, 0) FROM query_log"))
    assert len(written) > 150
    assert [q for q in written if counted[keys[q]] != 1] == []  # every row once
    assert counted[keys["beyond"]] == 0  # lagging beyond late_arrival: not counted
    assert sum(counted.values()) == len(written)
    mark = repository.counted_queries(engine, "docs")
    assert mark is not None and mark.keys.size < len(written) / 3  # only the overlap is remembered


def test_import_accepts_session_and_feedback(pg_db: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(ddl("query_log", None, reader=None))
    log_file = tmp_path / "log.jsonl"
    log_file.write_text(
        '{"ts": "2026-11-01T12:00:00Z", "query_id": "q1", "result_ids": ["a"], "result_scores": [0.5], '
        '"session_id": "s1", "feedback": -1}\n'
        '{"ts": "2026-11-01T12:00:30Z", "query_id": "q2", "result_ids": ["b"], "result_scores": [0.5], '
        '"clicked_ids": ["b"], "session_id": "s1", "feedback": null}\n'
    )
    settings = settings_for(pg_db)
    assert load_querylog(settings, parse_querylog(log_file)) == 2
    with psycopg.connect(pg_db) as conn:
        stored = conn.execute("SELECT query_id, session_id, feedback FROM query_log ORDER BY ts").fetchall()
    assert stored == [("q1", "s1", -1), ("q2", "s1", None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"ts": "2026-11-01T12:00:00Z", "query_id": "q3", "result_ids": [], "result_scores": [], '
        '"feedback": 0}\n'
    )
    with pytest.raises(QueryLogError, match=r"line 1: feedback: 0 is not 1"):
        parse_querylog(bad)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE old_log (LIKE query_log)")
        conn.execute("ALTER TABLE old_log DROP COLUMN feedback")
    old = CollectionSettings(name="docs", dsn=pg_db, table="docs", query_log={"table": "old_log"})
    with pytest.raises(QueryLogError, match="feedback but old_log lacks the column"):
        load_querylog(old, parse_querylog(log_file))
    ddl_out = run_cli("querylog", "ddl", "--table", "app.log")
    assert "session_id" in ddl_out.stdout and "feedback" in ddl_out.stdout
