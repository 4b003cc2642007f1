"""The reference query suite run through the live index (its file format: driftwatch/suite.py).

Queries run as the application's would: `ORDER BY <vector> <op> q LIMIT K` with the
operator of the configured metric, so the ANN index (HNSW / IVFFlat) answers them.
Index health compares that with an exact scan (index scans disabled in the transaction).
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import SuiteRun
from driftwatch.pg.codecs import to_vector
from driftwatch.pg.session import Session
from driftwatch.pg.tables import Source

OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}


def run_queries(
    session: Session,
    collection: CollectionSettings,
    vectors: np.ndarray,
    k: int,
    exact: bool = False,
    where: tuple[str, str] | None = None,
    dim: int | None = None,
) -> SuiteRun:
    """Top-K neighbours of each query vector, through the ANN index (or exactly), in the
    session's snapshot.

    `where` = (column, value) restricts the search to rows with `column = value` (a model
    version, mid-re-index), the way an application filters; pgvector >= 0.8 then scans
    HNSW / IVFFlat iteratively so the filter still leaves K rows. Planner settings hold for
    this call only (a savepoint rolled back after it).

    `dim`: in an untyped `vector` column (no dimension in its type) rows of another dimension
    make pgvector reject the whole query ("different vector dimensions"); the search then
    keeps to rows of `dim`, as the application's queries of that model must. A typed column
    holds one dimension and an ANN index needs one, so it gets no filter.
    """
    source = Source.of(collection)
    op = sql.SQL(OPERATORS[collection.metric])
    with session.reading(source.label, "suite query", vectors=True) as conn, session.scoped():
        column = session.describe(source, collection)
        if exact:
            for knob in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
                conn.execute("SELECT set_config(%s, 'off', true)", (knob,))
        elif k > 40:  # hnsw.ef_search bounds how many rows an HNSW scan can return
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(k),))
        condition, params = sql.SQL(""), [[to_vector(v) for v in vectors]]
        if dim is not None and column.dim is None:
            condition = sql.SQL(" AND vector_dims({}) = {}").format(source.vec_col, sql.Literal(int(dim)))
        if where is not None:
            condition += sql.SQL(" AND {} = %s").format(sql.Identifier(where[0]))
            params.append(where[1])
            if not exact:
                _iterative_scans(conn)
        query = column.like_column(sql.SQL("q.v"))
        rows = conn.execute(
            sql.SQL(
                """SELECT q.ord, r.id, r.distance
                   FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, ord)
                   CROSS JOIN LATERAL (
                       SELECT {id}::text AS id, {vec} {op} {query} AS distance
                       FROM {table} WHERE {vec} IS NOT NULL{condition}
                       ORDER BY {vec} {op} {query} LIMIT %s
                   ) r
                   ORDER BY q.ord, r.distance"""
            ).format(
                id=source.id_col,
                vec=source.vec_col,
                op=op,
                query=query,
                table=source.table,
                condition=condition,
            ),
            (*params, k),
        ).fetchall()
    ids: list[list[str]] = [[] for _ in range(len(vectors))]
    scores = np.full((len(vectors), k), np.nan)
    for ordinal, row_id, distance in rows:
        i = ordinal - 1
        scores[i, len(ids[i])] = similarity(collection.metric, float(distance))
        ids[i].append(row_id)
    return SuiteRun(ids=ids, scores=scores)


def _iterative_scans(conn: psycopg.Connection) -> None:
    """Let filtered ANN scans go on until K rows pass the filter (pgvector 0.8); older
    pgvector rejects the settings, and then the scan is what it always was."""
    for knob in ("hnsw.iterative_scan", "ivfflat.iterative_scan"):
        try:
            with conn.transaction():  # a savepoint: a rejected setting must not abort the session
                conn.execute("SELECT set_config(%s, 'relaxed_order', true)", (knob,))
        except psycopg.Error:
            pass


def similarity(metric: str, distance: float) -> float:
    """pgvector's distance as a similarity (higher = closer) for each metric."""
    if metric == "cosine":
        return 1.0 - distance
    return -distance  # l2: negated distance; inner_product: <#> is the negative inner product


__all__ = [
    "OPERATORS",
    "run_queries",
    "similarity",
]
