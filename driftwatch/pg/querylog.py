"""The application's query log (the table docs/design.md specifies): its DDL, reading the
monitor's windows and the miner's feedback, and loading a JSONL log into it.

For a window only cheap per-query columns cross the wire, by one binary COPY into numpy: a
hash of the query_id, ts, the click count, the thumbs, whether it was reformulated (computed
in SQL), the top-1 and mean top-k score and a model-version code.

`ts` is when the query ran. A cycle reads the rows whose ts is between the previous read's
end and `settle` ago (clicks and follow-ups have had time to arrive), plus an overlap of
`late_arrival` before it: rows an application buffered and wrote late are still counted, and
the hashes of rows already counted (kept in driftwatch's store) keep them from counting twice.
A row whose ts lags its insertion by more than late_arrival is never counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql

from driftwatch.config import CollectionSettings, QueryLogSettings, split_qualified_name
from driftwatch.detect.observation import Counted, QueryWindow
from driftwatch.errors import QueryLogError, SourceError
from driftwatch.jsonl import check_id, mixed_dimensions, read_records
from driftwatch.pg.codecs import copy_layout, copy_rows, to_array
from driftwatch.pg.session import Session, writable
from driftwatch.pg.tables import column_names, qualified

_REQUIRED = ("ts", "query_id", "model_version", "result_ids", "result_scores", "clicked_ids")
OPTIONAL = ("session_id", "feedback")  # each feeds its own detector and triplet source when present
_ROWS = copy_layout(
    key="int8", ts="float8", clicks="int8", thumbs="int8", reformulated="bool",
    top1="float8", mean_topk="float8", version="int8",
)  # fmt: skip


def _log_table(collection: CollectionSettings) -> tuple[QueryLogSettings, sql.Composable]:
    if collection.query_log is None:
        raise SourceError(f"collection {collection.name} has no [collections.query_log]")
    return collection.query_log, qualified(collection.query_log.table)


@dataclass(frozen=True)
class LogRead:
    """Which rows one read of the log counts: ts in (since - late_arrival, until], less the
    rows earlier cycles counted (`seen`). `spread` (a baseline) samples the window evenly when
    it holds more than max_rows, instead of keeping the newest."""

    since: datetime
    until: datetime
    seen: Counted | None = None
    spread: bool = False
    late_arrival: float = 0.0


def read_window(session: Session, collection: CollectionSettings, read: LogRead) -> QueryWindow:
    """Per query in the window, in log order: its scores, clicks, thumbs, whether it was
    reformulated, and its model version, by one binary COPY in the session's snapshot.

    Reformulations are found in SQL: the next query of the same session (a window function)
    within follow_up_window, after no click or a thumbs down. The read reaches follow_up_window
    past `until` so the last queries' follow-ups are seen.
    """
    log_settings, table = _log_table(collection)
    label = log_settings.table
    lower = read.since - timedelta(seconds=read.late_arrival)
    window = sql.SQL("ts > {} AND ts <= {}").format(sql.Literal(lower), sql.Literal(read.until))
    with session.reading(label, "reading the query log") as conn:
        present = _check_columns(conn, table, label)
        groups = conn.execute(
            sql.SQL("SELECT model_version::text, count(*) FROM {} WHERE {} GROUP BY 1 ORDER BY 1").format(
                table, window
            )
        ).fetchall()
        names = [v for v, _ in groups]
        total = sum(c for _, c in groups)
        query = _rows_query(table, present, lower, read, names, log_settings, total)
        rows = copy_rows(conn, query, _ROWS) if total else np.empty(0, _ROWS)
    rows = rows[np.argsort(rows["ts"], kind="stable")]
    if read.seen is not None:
        rows = rows[~np.isin(rows["key"], read.seen.keys)]
    codes = np.bincount(rows["version"], minlength=len(names) + 1)
    versions: dict[str | None, int] = {
        (names[i - 1] if i else None): int(c) for i, c in enumerate(codes) if c
    }
    scores = np.column_stack([rows["top1"], rows["mean_topk"]]).astype(np.float64)
    finite = np.isfinite(scores).all(axis=1)
    has = present.__contains__
    return QueryWindow(
        since=read.since,
        until=read.until,
        top1=scores[finite, 0].copy(),
        mean_topk=scores[finite, 1].copy(),
        versions=versions,
        queries=len(rows) if total <= log_settings.max_rows else total,
        clicked_queries=int(np.count_nonzero(rows["clicks"])),
        clicks=int(rows["clicks"].sum()),
        truncated=total > log_settings.max_rows,
        ts=rows["ts"].astype(np.float64),
        clicked=rows["clicks"] > 0,
        thumbs=rows["thumbs"].astype(np.int8) if has("feedback") else None,
        reformulated=rows["reformulated"].astype(bool) if has("session_id") else None,
        keys=rows["key"].astype(np.int64),
    )


def _rows_query(
    table: sql.Composable,
    present: set[str],
    lower: datetime,
    read: LogRead,
    versions: list[str | None],
    config: QueryLogSettings,
    total: int,
) -> sql.Composable:
    """The per-query COPY: literals, not parameters, since COPY cannot bind."""
    follow = timedelta(seconds=config.follow_up_window)
    thumbs = sql.SQL("coalesce(feedback, 0)::int8") if "feedback" in present else sql.SQL("0::int8")
    failed = sql.SQL("(cardinality(clicked_ids) = 0{})").format(
        sql.SQL(" OR feedback = -1") if "feedback" in present else sql.SQL("")
    )
    if "session_id" in present:
        # NULL session ids form no session: their lead() is ignored.
        next_ts = sql.SQL(
            "CASE WHEN session_id IS NOT NULL "
            "THEN lead(ts) OVER (PARTITION BY session_id ORDER BY ts, query_id) END"
        )
        reach = read.until + follow
    else:
        next_ts, reach = sql.SQL("NULL::timestamptz"), read.until
    inner = sql.SQL(
        "SELECT ts, query_id, clicked_ids, result_scores, model_version::text AS model_version, "
        "{thumbs} AS thumbs, {failed} AS failed, {next_ts} AS next_ts "
        "FROM {table} WHERE ts > {lower} AND ts <= {reach}"
    ).format(
        thumbs=thumbs, failed=failed, next_ts=next_ts, table=table,
        lower=sql.Literal(lower), reach=sql.Literal(reach),
    )  # fmt: skip
    limit = sql.SQL("")
    sampled = sql.SQL("")
    if total > config.max_rows:
        if read.spread:
            sampled = sql.SQL(" AND random() < {}").format(sql.Literal(config.max_rows / total))
        else:
            limit = sql.SQL(" ORDER BY s.ts DESC LIMIT {}").format(sql.Literal(config.max_rows))
    return sql.SQL(
        "SELECT hashtextextended(s.query_id::text, 0), extract(epoch FROM s.ts)::float8, "
        "coalesce(cardinality(s.clicked_ids), 0)::int8, s.thumbs, "
        "coalesce(s.failed AND s.next_ts <= s.ts + {follow}, false), "
        "coalesce(s.result_scores[1]::float8, 'NaN'), "
        "coalesce((SELECT avg(x)::float8 FROM unnest(s.result_scores) x), 'NaN'), "
        "coalesce(array_position({versions}::text[], s.model_version), 0)::int8 "
        "FROM ({inner}) s WHERE s.ts > {lower} AND s.ts <= {until}{sampled}{limit}"
    ).format(
        follow=sql.Literal(follow), versions=sql.Literal(versions), inner=inner,
        lower=sql.Literal(lower), until=sql.Literal(read.until), sampled=sampled, limit=limit,
    )  # fmt: skip


def counted_after(previous: Counted | None, window: QueryWindow, late_arrival: float) -> Counted:
    """What the next read must not count again: the rows counted so far whose ts is recent
    enough (after until - late_arrival) to fall in its overlap."""
    keys, ts = window.keys, window.ts
    if keys is None or ts is None:
        keys, ts = np.empty(0, np.int64), np.empty(0, np.float64)
    if previous is not None:
        keys, ts = np.concatenate([previous.keys, keys]), np.concatenate([previous.ts, ts])
    keep = ts > window.until.timestamp() - late_arrival
    return Counted(until=window.until, keys=keys[keep], ts=ts[keep])


def _check_columns(
    conn: psycopg.Connection, table: sql.Composable, label: str, required: tuple[str, ...] = _REQUIRED
) -> set[str]:
    """The table's columns, once every required one is there."""
    present = column_names(conn, table)
    if present is None:
        raise SourceError(f"query_log.table {label} does not exist or is not visible to this role")
    missing = [c for c in required if c not in present]
    if missing:
        raise SourceError(
            f"query_log.table {label} lacks column(s) {', '.join(missing)} "
            "(see `driftwatch querylog ddl` for the expected layout)"
        )
    return present


# ---------------------------------------------------------------- DDL

COLUMNS = (
    ("ts", "timestamptz NOT NULL DEFAULT now()", "when the query ran"),
    ("query_id", "text NOT NULL", "the application's id for this query"),
    ("query_text", "text", "what was asked: the anchor of fine-tuning triplets"),
    ("query_embedding", "vector{dim}", "the query vector as searched"),
    ("model_version", "text", "the model that embedded the query"),
    ("result_ids", "text[] NOT NULL", "ids returned, best first"),
    ("result_scores", "real[] NOT NULL", "their similarity scores, higher = closer, same order"),
    ("clicked_ids", "text[] NOT NULL DEFAULT '{{}}'", "ids the user clicked; update as clicks arrive"),
    ("session_id", "text", "optional: one user's consecutive queries (follow-ups, reformulations)"),
    ("feedback", "smallint CHECK (feedback IN (-1, 1))", "optional: +1 thumbs up, -1 thumbs down, NULL none"),
)


def ddl(table: str = "public.query_log", dim: int | None = None, reader: str | None = "driftwatch") -> str:
    """The recommended DDL, with the indexes its documented writes and reads need: ts for the
    monitor's window reads, a unique query_id for the application's click and feedback
    `UPDATE ... WHERE query_id = ...` (and the monitor's de-duplication of late rows), and
    (session_id, ts) for follow-up lookups."""
    _, name = split_qualified_name(table)
    quoted = qualified(table).as_string()
    width = max(len(c) for c, _, _ in COLUMNS)
    lines = []
    for i, (column, kind, why) in enumerate(COLUMNS):
        comma = "," if i < len(COLUMNS) - 1 else " "
        typed = kind.format(dim=f"({dim})" if dim else "")
        lines.append(f"  {column.ljust(width)} {typed}{comma}  -- {why}")
    out = [f"CREATE TABLE IF NOT EXISTS {quoted} (", *lines, ");"]
    for suffix, spec in (
        ("ts_idx", "INDEX IF NOT EXISTS {} ON {} (ts);"),
        ("query_id_key", "UNIQUE INDEX IF NOT EXISTS {} ON {} (query_id);"),
        ("session_idx", "INDEX IF NOT EXISTS {} ON {} (session_id, ts) WHERE session_id IS NOT NULL;"),
    ):
        out.append("CREATE " + spec.format(sql.Identifier(f"{name}_{suffix}").as_string(), quoted))
    if reader:
        out.append(
            f"GRANT SELECT ON {quoted} TO {sql.Identifier(reader).as_string()};  -- the monitor only reads it"
        )
    return "\n".join(out)


# ---------------------------------------------------------------- clicks


@dataclass(frozen=True)
class LoggedQuery:
    """One logged query that says something about relevance: a click, a thumbs up or down, or a
    reformulation whose follow-up got a click."""

    ts: datetime
    query_id: str
    query_text: str | None
    embedding: np.ndarray | None
    result_ids: tuple[str, ...]
    clicked_ids: tuple[str, ...]
    model_version: str | None = None
    feedback: int = 0  # +1 thumbs up, -1 thumbs down, 0 none
    follow_up_clicked: tuple[str, ...] = ()  # clicks on its follow-up, when it was reformulated


def read_clicks(
    session: Session, collection: CollectionSettings, since: datetime | None, until: datetime, limit: int
) -> list[LoggedQuery]:
    """Queries logged in (since, until] with a click, a thumbs, or a reformulation whose
    follow-up (same session, within follow_up_window) got a click; oldest first, at most `limit`."""
    log_settings, table = _log_table(collection)
    label = log_settings.table
    with session.reading(label, "reading clicks", vectors=True) as conn:
        present = _check_columns(conn, table, label)
        thumbs = sql.SQL("coalesce(feedback, 0)") if "feedback" in present else sql.SQL("0")
        follow = sql.SQL("'{}'::text[]")
        reach, windowed = until, sql.SQL("")
        if "session_id" in present:
            windowed = sql.SQL(" WINDOW w AS (PARTITION BY session_id ORDER BY ts, query_id)")
            reach = until + timedelta(seconds=log_settings.follow_up_window)
            follow = sql.SQL(
                "CASE WHEN session_id IS NOT NULL AND (cardinality(clicked_ids) = 0 OR {thumbs} = -1) "
                "AND lead(ts) OVER w <= ts + {within} THEN lead(clicked_ids) OVER w ELSE '{{}}' END"
            ).format(thumbs=thumbs, within=sql.Literal(timedelta(seconds=log_settings.follow_up_window)))
        lower = sql.SQL("ts > {} AND ").format(sql.Literal(since)) if since else sql.SQL("")
        rows = conn.execute(
            sql.SQL(
                "SELECT * FROM (SELECT ts, query_id, query_text, query_embedding, result_ids, clicked_ids, "
                "model_version::text, {thumbs}::int AS thumbs, {follow} AS follow_up_clicked FROM {table} "
                "WHERE {lower}ts <= %s{windowed}) s "
                "WHERE s.ts <= %s AND (cardinality(s.clicked_ids) > 0 OR s.thumbs <> 0 "
                "OR cardinality(s.follow_up_clicked) > 0) ORDER BY s.ts LIMIT %s"
            ).format(thumbs=thumbs, follow=follow, table=table, lower=lower, windowed=windowed),
            (reach, until, limit),
        ).fetchall()
    return [
        LoggedQuery(
            ts=ts,
            query_id=str(query_id),
            query_text=text,
            embedding=to_array(vector),
            result_ids=_id_tuple(results),
            clicked_ids=_id_tuple(clicked),
            model_version=version,
            feedback=int(feedback),
            follow_up_clicked=_id_tuple(follow_up),
        )
        for ts, query_id, text, vector, results, clicked, version, feedback, follow_up in rows
    ]


RECENT_ROWS_PER_QUERY = 50  # logged rows read per query text wanted: bounded, whatever the log's size


def read_version_queries(
    session: Session, collection: CollectionSettings, model_version: str, limit: int, seed: str
) -> list[tuple[str, np.ndarray | None]]:
    """Up to `limit` distinct query texts logged under `model_version`, each with the vector it
    was searched with (its newest): what the model gave for what users ask. They are drawn
    (by a seeded hash of the text) from the version's newest RECENT_ROWS_PER_QUERY x `limit`
    rows, which the ts index reaches however long the log is."""
    log_settings, table = _log_table(collection)
    label = log_settings.table
    with session.reading(label, "reading logged queries", vectors=True) as conn:
        _check_columns(conn, table, label, required=("ts", "query_text", "query_embedding", "model_version"))
        rows = (
            conn.cursor(binary=True)
            .execute(
                sql.SQL(
                    "SELECT query_text, query_embedding FROM ("
                    "SELECT DISTINCT ON (query_text) query_text, query_embedding FROM ("
                    "SELECT query_text, query_embedding, ts FROM {} WHERE model_version = %(version)s "
                    "AND btrim(query_text) <> '' AND query_embedding IS NOT NULL "
                    "ORDER BY ts DESC LIMIT %(recent)s) r ORDER BY query_text, ts DESC) q "
                    "ORDER BY hashtext(query_text || %(seed)s), query_text LIMIT %(limit)s"
                ).format(table),
                {
                    "version": model_version,
                    "seed": seed,
                    "limit": limit,
                    "recent": RECENT_ROWS_PER_QUERY * limit,
                },
            )
            .fetchall()
        )
    return [(text, to_array(vector)) for text, vector in rows]


def _id_tuple(values: list[Any] | None) -> tuple[str, ...]:
    return tuple(str(v) for v in values or () if v is not None)


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split())


def clicked_for_queries(
    session: Session, collection: CollectionSettings, texts: list[str], until: datetime, lookback: timedelta
) -> dict[str, set[str]]:
    """Every id clicked for each (normalised) query text anywhere in the log's last `lookback`:
    a document some user chose for this query is no negative for it."""
    log_settings, table = _log_table(collection)
    if not texts:
        return {}
    with session.reading(log_settings.table, "reading clicks") as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT lower(query_text), array_agg(DISTINCT c) FROM {}, unnest(clicked_ids) c "
                "WHERE ts > %s AND ts <= %s AND lower(query_text) = ANY(%s) GROUP BY 1"
            ).format(table),
            (until - lookback, until, sorted({t.lower() for t in texts})),
        ).fetchall()
    out: dict[str, set[str]] = {}
    for text, ids in rows:
        out.setdefault(normalise_query(text), set()).update(str(i) for i in ids)
    return out


# ---------------------------------------------------------------- JSONL import

_FIELDS = {c for c, _, _ in COLUMNS}
_REQUIRED_FIELDS = ("ts", "query_id", "result_ids", "result_scores")


@dataclass
class ImportedQuery:
    ts: datetime
    query_id: str
    query_text: str | None
    query_embedding: list[float] | None
    model_version: str | None
    result_ids: list[str]
    result_scores: list[float]
    clicked_ids: list[str] = field(default_factory=list)
    session_id: str | None = None
    feedback: int | None = None

    def row(self, columns: tuple[str, ...]) -> tuple[Any, ...]:
        vector = None if self.query_embedding is None else Vector(self.query_embedding)
        values = {**vars(self), "query_embedding": vector}
        return tuple(values[c] for c in columns)


def parse_querylog(path: Path) -> list[ImportedQuery]:
    """Validate a JSONL query log; every problem is reported as `line N: field: what`, and a
    file with any problem loads nothing."""
    records, problems = read_records(path, _parse_logged)
    dims: dict[int, int] = {}
    seen: dict[str, int] = {}
    for number, query in records:
        if query.query_id in seen:
            problems.append(f"line {number}: query_id {query.query_id!r} repeats line {seen[query.query_id]}")
        seen.setdefault(query.query_id, number)
        if query.query_embedding is not None:
            dims.setdefault(len(query.query_embedding), number)
    problems += mixed_dimensions("query_embedding", dims)
    if not records and not problems:
        problems.append("no queries in the file")
    if problems:
        raise QueryLogError(problems, source=str(path))
    return [query for _, query in records]


def _parse_logged(record: dict[str, Any]) -> ImportedQuery:
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (expected {', '.join(c for c, _, _ in COLUMNS)})")
    for name in _REQUIRED_FIELDS:
        if record.get(name) is None:
            raise ValueError(f"{name}: required")
    result_ids = _ids(record["result_ids"], "result_ids")
    if len(set(result_ids)) != len(result_ids):
        raise ValueError("result_ids: an id appears twice")
    scores = _numbers(record["result_scores"], "result_scores")
    if len(scores) != len(result_ids):
        raise ValueError(f"result_scores: {len(scores)} scores for {len(result_ids)} result_ids")
    clicked = _ids(record.get("clicked_ids") or [], "clicked_ids")
    stray = [c for c in clicked if c not in result_ids]
    if stray:
        raise ValueError(f"clicked_ids: {stray[0]!r} is not among result_ids")
    embedding = record.get("query_embedding")
    if embedding is not None:
        embedding = _numbers(embedding, "query_embedding")
        if not embedding:
            raise ValueError("query_embedding: empty")
    session_id = record.get("session_id")
    feedback = record.get("feedback")
    if feedback is not None and (type(feedback) is not int or feedback not in (1, -1)):
        raise ValueError(f"feedback: {feedback!r} is not 1 (thumbs up), -1 (thumbs down) or null")
    return ImportedQuery(
        session_id=None if session_id is None else _text(session_id, "session_id", allow_number=True),
        feedback=feedback,
        ts=_timestamp(record["ts"]),
        query_id=check_id(record["query_id"], "query_id"),
        query_text=None if record.get("query_text") is None else _text(record["query_text"], "query_text"),
        query_embedding=embedding,
        model_version=None
        if record.get("model_version") is None
        else _text(record["model_version"], "model_version"),
        result_ids=result_ids,
        result_scores=scores,
        clicked_ids=clicked,
    )


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("ts: must be an ISO 8601 string such as 2026-11-01T12:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts: {value!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError(f"ts: {value!r} has no timezone (write 2026-11-01T12:00:00Z or +02:00)")
    return moment


def _text(value: Any, name: str, allow_number: bool = False) -> str:
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a non-empty string")
    if "\x00" in value:
        raise ValueError(f"{name}: must not contain a NUL character")
    return value


def _ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{name}: must be a list of ids")
    return [check_id(v, name) for v in value]


def _numbers(value: Any, name: str) -> list[float]:
    if not isinstance(value, list):
        raise ValueError(f"{name}: must be a list of numbers")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise ValueError(f"{name}: {item!r} is not a finite number")
        out.append(float(item))
    return out


def load_querylog(collection: CollectionSettings, queries: list[ImportedQuery]) -> int:
    """Append the queries to the log table in one transaction: all of them or none.

    The only write driftwatch ever makes to the application's database, and only on this
    explicit command; it needs INSERT on the log table (the monitor itself only reads).
    """
    if collection.query_log is None:
        why = f"collection {collection.name} has no [collections.query_log] table to load into"
        raise QueryLogError([why])
    log_settings, table = _log_table(collection)
    label = log_settings.table
    dsn = log_settings.dsn or collection.dsn
    used = {c for c in OPTIONAL if any(getattr(q, c) is not None for q in queries)}
    with writable(dsn, collection.statement_timeout, label, "loading queries (none loaded)") as conn:
        present = _check_columns(conn, table, label, required=tuple(c for c in _FIELDS if c not in OPTIONAL))
        lacking = sorted(used - present)
        if lacking:
            raise QueryLogError(
                [f"the file has {', '.join(lacking)} but {label} lacks the column (`querylog ddl`)"]
            )
        names = tuple(c for c, _, _ in COLUMNS if c in present)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in names)
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
            for query in queries:
                copy.write_row(query.row(names))
    return len(queries)


__all__ = [
    "COLUMNS",
    "OPTIONAL",
    "ImportedQuery",
    "LogRead",
    "LoggedQuery",
    "clicked_for_queries",
    "counted_after",
    "ddl",
    "load_querylog",
    "normalise_query",
    "parse_querylog",
    "read_clicks",
    "read_window",
]
