"""The application's query log (the table DESIGN.md specifies): its DDL, reading score
windows and clicks, and loading a JSONL log into it.

For scores only aggregates and two float columns cross the wire: the top-1 and mean top-k
score of each query in the window, by binary COPY into numpy, plus per-version counts.
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
from driftwatch.detect.observation import QueryWindow
from driftwatch.errors import QueryLogError, VectorStoreError
from driftwatch.jsonl import check_id, mixed_dimensions, read_records
from driftwatch.pg.codecs import copy_layout, copy_rows, to_array
from driftwatch.pg.session import Session, writable
from driftwatch.pg.tables import column_names, qualified

_REQUIRED = ("ts", "query_id", "model_version", "result_ids", "result_scores", "clicked_ids")
_SCORES = copy_layout(top1="float8", mean_topk="float8")


def _log_table(settings: CollectionSettings) -> tuple[QueryLogSettings, sql.Composable]:
    if settings.query_log is None:
        raise VectorStoreError(f"collection {settings.name} has no [collections.query_log]")
    return settings.query_log, qualified(settings.query_log.table)


def read_window(
    session: Session, settings: CollectionSettings, since: datetime, until: datetime
) -> QueryWindow:
    """Scores and model versions of the queries logged in (since, until], in the session's snapshot."""
    log_settings, table = _log_table(settings)
    label = log_settings.table
    with session.reading(label, "reading the query log") as conn:
        _check_columns(conn, table, label)
        # Literals, not parameters: the same clause goes into a COPY, which cannot bind.
        window = sql.SQL("ts > {} AND ts <= {}").format(sql.Literal(since), sql.Literal(until))
        groups = conn.execute(
            sql.SQL(
                "SELECT model_version::text, count(*), "
                "count(*) FILTER (WHERE cardinality(clicked_ids) > 0), "
                "coalesce(sum(cardinality(clicked_ids)), 0) FROM {} WHERE {} GROUP BY 1"
            ).format(table, window)
        ).fetchall()
        versions = {version: count for version, count, _, _ in groups}
        clicked_queries = sum(g[2] for g in groups)
        clicks = int(sum(g[3] for g in groups))
        total = sum(versions.values())
        newest = sql.SQL(
            "SELECT result_scores FROM {} WHERE {} AND cardinality(result_scores) > 0 "
            "ORDER BY ts DESC LIMIT {}"
        ).format(table, window, sql.Literal(log_settings.max_rows))
        scores = _score_pairs(conn, newest)
    finite = np.isfinite(scores).all(axis=1)
    scores = scores[finite]
    return QueryWindow(
        since=since,
        until=until,
        top1=scores[:, 0].copy(),
        mean_topk=scores[:, 1].copy(),
        versions=versions,
        queries=total,
        clicked_queries=clicked_queries,
        clicks=clicks,
        truncated=total > log_settings.max_rows,
    )


def _score_pairs(conn: psycopg.Connection, newest: sql.Composable) -> np.ndarray:
    """(top-1, mean top-k) per query as an (n, 2) float64 array, by one binary COPY."""
    rows = copy_rows(
        conn,
        sql.SQL(
            "SELECT s.result_scores[1]::float8, (SELECT avg(x)::float8 FROM unnest(s.result_scores) x) "
            "FROM ({}) s WHERE s.result_scores[1] IS NOT NULL"
        ).format(newest),
        _SCORES,
    )
    return np.column_stack([rows["top1"].astype(np.float64), rows["mean_topk"].astype(np.float64)])


def _check_columns(
    conn: psycopg.Connection, table: sql.Composable, label: str, required: tuple[str, ...] = _REQUIRED
) -> None:
    present = column_names(conn, table)
    if present is None:
        raise VectorStoreError(f"query_log.table {label} does not exist or is not visible to this role")
    missing = [c for c in required if c not in present]
    if missing:
        raise VectorStoreError(
            f"query_log.table {label} lacks column(s) {', '.join(missing)} "
            "(see `driftwatch querylog ddl` for the expected layout)"
        )


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
)


def ddl(table: str = "public.query_log", dim: int | None = None, reader: str | None = "driftwatch") -> str:
    """The recommended DDL, with an index for the monitor's time-window reads."""
    _, name = split_qualified_name(table)
    quoted = qualified(table).as_string()
    width = max(len(c) for c, _, _ in COLUMNS)
    lines = []
    for i, (column, kind, why) in enumerate(COLUMNS):
        comma = "," if i < len(COLUMNS) - 1 else " "
        typed = kind.format(dim=f"({dim})" if dim else "")
        lines.append(f"  {column.ljust(width)} {typed}{comma}  -- {why}")
    index = sql.Identifier(f"{name}_ts_idx").as_string()
    out = [f"CREATE TABLE IF NOT EXISTS {quoted} (", *lines, ");"]
    out.append(f"CREATE INDEX IF NOT EXISTS {index} ON {quoted} (ts);")
    if reader:
        out.append(
            f"GRANT SELECT ON {quoted} TO {sql.Identifier(reader).as_string()};  -- the monitor only reads it"
        )
    return "\n".join(out)


# ---------------------------------------------------------------- clicks


@dataclass(frozen=True)
class LoggedQuery:
    """One logged query with at least one click."""

    ts: datetime
    query_id: str
    query_text: str | None
    embedding: np.ndarray | None
    result_ids: tuple[str, ...]
    clicked_ids: tuple[str, ...]


def read_clicks(
    session: Session, settings: CollectionSettings, since: datetime | None, until: datetime, limit: int
) -> list[LoggedQuery]:
    """Queries with clicks logged in (since, until], oldest first, at most `limit`."""
    log_settings, table = _log_table(settings)
    label = log_settings.table
    with session.reading(label, "reading clicks", vectors=True) as conn:
        _check_columns(conn, table, label)
        lower = sql.SQL("ts > %s AND ") if since else sql.SQL("")
        rows = conn.execute(
            sql.SQL(
                "SELECT ts, query_id, query_text, query_embedding, result_ids, clicked_ids FROM {} "
                "WHERE {}ts <= %s AND cardinality(clicked_ids) > 0 ORDER BY ts LIMIT %s"
            ).format(table, lower),
            ([since] if since else []) + [until, limit],
        ).fetchall()
    return [
        LoggedQuery(
            ts=ts,
            query_id=str(query_id),
            query_text=text,
            embedding=to_array(vector),
            result_ids=tuple(str(r) for r in results or () if r is not None),
            clicked_ids=tuple(str(c) for c in clicked or () if c is not None),
        )
        for ts, query_id, text, vector, results, clicked in rows
    ]


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split())


def clicked_for_queries(
    session: Session, settings: CollectionSettings, texts: list[str], until: datetime, lookback: timedelta
) -> dict[str, set[str]]:
    """Every id clicked for each (normalised) query text anywhere in the log's last `lookback`:
    a document some user chose for this query is no negative for it."""
    log_settings, table = _log_table(settings)
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

    def row(self) -> tuple[Any, ...]:
        vector = None if self.query_embedding is None else Vector(self.query_embedding)
        return (
            self.ts, self.query_id, self.query_text, vector, self.model_version,
            self.result_ids, self.result_scores, self.clicked_ids,
        )  # fmt: skip


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
    return ImportedQuery(
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


def load_querylog(settings: CollectionSettings, queries: list[ImportedQuery]) -> int:
    """Append the queries to the log table in one transaction: all of them or none.

    The only write driftwatch ever makes to the application's database, and only on this
    explicit command; it needs INSERT on the log table (the monitor itself only reads).
    """
    if settings.query_log is None:
        raise QueryLogError([f"collection {settings.name} has no [collections.query_log] table to load into"])
    log_settings, table = _log_table(settings)
    label = log_settings.table
    dsn = log_settings.dsn or settings.dsn
    with writable(dsn, settings.statement_timeout, label, "loading queries (none loaded)") as conn:
        _check_columns(conn, table, label, required=tuple(_FIELDS))
        columns = sql.SQL(", ").join(sql.Identifier(c) for c, _, _ in COLUMNS)
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
            for query in queries:
                copy.write_row(query.row())
    return len(queries)


__all__ = [
    "COLUMNS",
    "ImportedQuery",
    "LoggedQuery",
    "clicked_for_queries",
    "ddl",
    "load_querylog",
    "normalise_query",
    "parse_querylog",
    "read_clicks",
    "read_window",
]
