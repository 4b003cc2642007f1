"""The reference suite's file: JSONL, one query a line,
`{"query_id", "text"?, "embedding"?, "relevant_ids": [...], "relevance"?: {id: grade}}`.
Every problem is reported with its line number and nothing is loaded half-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from driftwatch.detect.observation import ReferenceQuery
from driftwatch.errors import SuiteError
from driftwatch.jsonl import check_id, mixed_dimensions, read_records


def parse_suite(path: Path) -> list[ReferenceQuery]:
    """Read a suite JSONL file; every problem is reported with its line number, none loaded."""
    records, problems = read_records(path, _parse_record)
    queries: list[ReferenceQuery] = []
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


def _parse_record(record: dict[str, Any]) -> ReferenceQuery:
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
    return ReferenceQuery(
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


__all__ = ["parse_suite"]
