"""Reading the application's query log (the table DESIGN.md specifies).

Only aggregates and two float columns cross the wire: the top-1 and mean top-k score
of each query in the window, by binary COPY into numpy, plus per-version counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings, split_qualified_name
from driftwatch.errors import VectorStoreError
from driftwatch.sampler import read_session

_REQUIRED = ("ts", "query_id", "model_version", "result_ids", "result_scores", "clicked_ids")


@dataclass
class QueryWindow:
    since: datetime
    until: datetime
    top1: np.ndarray  # float64, one per query with at least one result
    mean_topk: np.ndarray
    versions: dict[str | None, int]
    queries: int  # rows in the window, including those with no results
    clicked_queries: int  # queries with at least one click
    clicks: int  # clicked ids in all
    truncated: bool  # more rows than max_rows: the newest max_rows were read


def _table(settings: CollectionSettings) -> sql.Composable:
    assert settings.query_log is not None
    schema, name = split_qualified_name(settings.query_log.table)
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


def read_window(settings: CollectionSettings, since: datetime, until: datetime) -> QueryWindow:
    """Scores and model versions of the queries logged in (since, until]."""
    log_settings = settings.query_log
    if log_settings is None:
        raise VectorStoreError(f"collection {settings.name} has no [collections.query_log]")
    table = _table(settings)
    label = log_settings.table
    with read_session(
        log_settings.dsn or settings.dsn, settings.statement_timeout, label, "reading the query log"
    ) as conn:
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
    query = sql.SQL(
        "COPY (SELECT s.result_scores[1]::float8, "
        "(SELECT avg(x)::float8 FROM unnest(s.result_scores) x) "
        "FROM ({}) s WHERE s.result_scores[1] IS NOT NULL) TO STDOUT (FORMAT BINARY)"
    ).format(newest)
    with conn.cursor() as cur, cur.copy(query) as copy:
        buffer = b"".join(bytes(chunk) for chunk in copy)
    header = 19 + int.from_bytes(buffer[15:19], "big") if buffer else 0
    row = np.dtype([("n", ">i2"), ("l1", ">i4"), ("a", ">f8"), ("l2", ">i4"), ("b", ">f8")])
    body = max(0, len(buffer) - header - 2)
    rows = np.frombuffer(buffer, dtype=row, offset=header, count=body // row.itemsize)
    return np.column_stack([rows["a"].astype(np.float64), rows["b"].astype(np.float64)])


def _check_columns(conn: psycopg.Connection, table: sql.Composable, label: str) -> None:
    qualified = table.as_string(conn)
    oid = conn.execute("SELECT to_regclass(%s)::oid", (qualified,)).fetchone()[0]
    if oid is None:
        raise VectorStoreError(f"query_log.table {label} does not exist or is not visible to this role")
    present = {
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,)
        ).fetchall()
    }
    missing = [c for c in _REQUIRED if c not in present]
    if missing:
        raise VectorStoreError(
            f"query_log.table {label} lacks column(s) {', '.join(missing)} "
            "(see `driftwatch querylog ddl` for the expected layout)"
        )


__all__ = ["QueryWindow", "read_window"]
