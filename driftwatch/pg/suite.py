"""The reference query suite: parsing its JSONL, and running it through the live index.

Queries run as the application's would: `ORDER BY <vector> <op> q LIMIT K` with the
operator of the configured metric, so the ANN index (HNSW / IVFFlat) answers them.
Index health compares that with an exact scan (index scans disabled in the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import SuiteRun
from driftwatch.errors import SuiteError
from driftwatch.jsonl import check_id, mixed_dimensions, read_records
from driftwatch.pg.codecs import to_vector
from driftwatch.pg.session import Session
from driftwatch.pg.tables import Source

OPERATORS = {"cosine": "<=>", "l2": "<->", "inner_product": "<#>"}


@dataclass(frozen=True)
class SuiteQuery:
    query_id: str
    relevant_ids: tuple[str, ...]
    text: str | None = None
    embedding: np.ndarray | None = None  # float32
    relevance: dict[str, float] | None = None  # id -> grade (graded relevance), when the suite grades


def parse_suite(path: Path) -> list[SuiteQuery]:
    """Read a suite JSONL file; every problem is reported with its line number, none loaded."""
    records, problems = read_records(path, _parse_record)
    queries: list[SuiteQuery] = []
    seen: dict[str, int] = {}
    dims: dict[int, int] = {}
    for number, query in records:
        if query.query_id in seen:
            problems.append(f"line {number}: query_id {query.query_id!r} repeats line {seen[query.query_id]}")
            continue
        seen[query.query_id] = number
        if query.embedding is not None:
            dims.setdefault(len(query.embedding), number)
        queries.append(query)
    problems += mixed_dimensions("embedding", dims)
    if not queries and not problems:
        problems.append("no queries in the file")
    if problems:
        raise SuiteError(problems, source=str(path))
    return queries


def _parse_record(record: dict[str, Any]) -> SuiteQuery:
    unknown = set(record) - {"query_id", "text", "embedding", "relevant_ids", "relevance"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    relevance = _relevance(record.get("relevance"))
    if relevance is not None and record.get("relevant_ids") is None:
        record = {**record, "relevant_ids": [i for i, g in relevance.items() if g > 0]}
    query_id = record.get("query_id")
    if not isinstance(query_id, str | int) or isinstance(query_id, bool) or str(query_id) == "":
        raise ValueError("query_id: required, a non-empty string")
    query_id = check_id(record["query_id"], "query_id")
    relevant = record.get("relevant_ids")
    if not isinstance(relevant, list) or not relevant:
        raise ValueError("relevant_ids: required, a non-empty list of ids")
    relevant = [check_id(r, "relevant_ids") for r in relevant]
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError("text: must be a string")
    embedding = record.get("embedding")
    vector = None
    if embedding is not None:
        if not isinstance(embedding, list) or not embedding:
            raise ValueError("embedding: must be a non-empty list of numbers")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in embedding):
            raise ValueError("embedding: must be a list of numbers")
        vector = np.asarray(embedding, dtype=np.float32)
        if not np.all(np.isfinite(vector)):
            raise ValueError("embedding: holds NaN or infinite values")
        if not np.any(vector):
            raise ValueError("embedding: is all zeros")
    if text is None and vector is None:
        raise ValueError("needs an embedding, or text and an embedder")
    relevant_ids = tuple(dict.fromkeys(str(r) for r in relevant))
    if relevance is not None:
        ungraded = [r for r in relevant_ids if relevance.get(r, 0.0) <= 0]
        if ungraded:
            raise ValueError(f"relevance: relevant id {ungraded[0]!r} has no positive grade")
    return SuiteQuery(
        query_id=str(query_id),
        relevant_ids=relevant_ids,
        text=text,
        embedding=vector,
        relevance=relevance,
    )


def _relevance(value: Any) -> dict[str, float] | None:
    """The optional `relevance` field: {id: grade}, grades finite and >= 0, at least one > 0
    (ids graded 0 are judged and not relevant)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValueError("relevance: must be a non-empty object of id -> grade")
    grades: dict[str, float] = {}
    for doc, grade in value.items():
        if (
            isinstance(grade, bool)
            or not isinstance(grade, int | float)
            or not np.isfinite(grade)
            or grade < 0
        ):
            raise ValueError(f"relevance: grade of {doc!r} must be a finite number >= 0, not {grade!r}")
        grades[str(doc)] = float(grade)
    if not any(g > 0 for g in grades.values()):
        raise ValueError("relevance: needs at least one id with a grade above 0")
    return grades


def run_queries(
    session: Session,
    settings: CollectionSettings,
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
    source = Source.of(settings)
    op = sql.SQL(OPERATORS[settings.metric])
    with session.reading(source.label, "suite query", vectors=True) as conn, session.scoped():
        column = session.describe(source, settings)
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
        scores[i, len(ids[i])] = similarity(settings.metric, float(distance))
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
    "SuiteQuery",
    "parse_suite",
    "run_queries",
    "similarity",
]
