"""Graded relevance in the reference suite: the optional `relevance` field is parsed
compatibly, kept in driftwatch's store, and reaches ndcg_at_k as grades; plus the query-log
windows' config keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import SuiteObservation, SuiteRun
from driftwatch.detect.ranking_quality import ndcg
from driftwatch.errors import SuiteError
from driftwatch.observe import _graded
from driftwatch.store import repository
from driftwatch.suite import parse_suite


def write(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_relevance_grades_are_parsed_stored_and_scored(tmp_path: Path, engine: Engine) -> None:
    suite = write(
        tmp_path / "suite.jsonl",
        {"query_id": "plain", "embedding": [1, 0], "relevant_ids": ["a", "b"]},
        {"query_id": "graded", "embedding": [0, 1], "relevance": {"c": 3, "d": 1, "e": 0}},
        {"query_id": "both", "embedding": [1, 1], "relevant_ids": ["f"], "relevance": {"f": 2, "g": 1}},
    )
    queries = parse_suite(suite)
    assert [q.relevant_ids for q in queries] == [("a", "b"), ("c", "d"), ("f",)]
    assert queries[0].relevance is None and queries[1].relevance == {"c": 3.0, "d": 1.0, "e": 0.0}
    repository.replace_suite(engine, "docs", queries)
    stored = repository.load_suite(engine, "docs")
    assert [q.relevance for q in stored] == [q.relevance for q in queries]

    graded = _graded(stored)
    assert graded == [{"a": 1.0, "b": 1.0}, {"c": 3.0, "d": 1.0, "e": 0.0}, {"f": 2.0, "g": 1.0}]
    run = SuiteRun(ids=[["b", "a"], ["d", "c"], ["g", "f"]], scores=np.ones((3, 2)))
    observed = SuiteObservation(
        query_ids=[q.query_id for q in stored], relevant=[q.relevant_ids for q in stored], k=2,
        ann=run, exact=None, exact_rows=np.empty(0, int), embedded_with="stored embeddings", graded=graded,
    )  # fmt: skip
    scores = ndcg(observed.ann.ids, observed.gains(), observed.k)
    assert scores[0] == pytest.approx(1.0)  # binary: both relevant ids found, order does not matter
    assert scores[1] < 1.0  # graded: the grade-3 document should have come first
    assert _graded(stored[:1]) is None  # a suite without grades stays binary


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ({"query_id": "q", "embedding": [1], "relevance": {"a": -1}}, "grade of 'a' must be a finite number"),
        (
            {"query_id": "q", "embedding": [1], "relevance": {"a": 0}},
            "needs at least one id with a grade above 0",
        ),
        ({"query_id": "q", "embedding": [1], "relevance": []}, "must be a non-empty object"),
        ({"query_id": "q", "embedding": [1], "relevance": {"a": True}}, "grade of 'a'"),
        (
            {"query_id": "q", "embedding": [1], "relevant_ids": ["b"], "relevance": {"a": 1}},
            "relevant id 'b' has no positive grade",
        ),
    ],
)
def test_bad_relevance_is_named_by_line(tmp_path: Path, record: dict[str, object], why: str) -> None:
    with pytest.raises(SuiteError, match=f"line 1: relevance: {why}"):
        parse_suite(write(tmp_path / "bad.jsonl", record))


def test_query_log_window_keys() -> None:
    config = CollectionSettings(name="d", dsn="postgresql:///x", table="t", query_log={"table": "ql"})
    log = config.query_log
    assert log is not None
    assert (log.follow_up_window, log.late_arrival, log.baseline_window) == (120.0, 900.0, 7 * 86400.0)
    assert log.settle == 300.0  # click_delay (5m) outlasts the follow-up window
    with pytest.raises(ValueError, match=r"baseline_window .* must be at least window"):
        CollectionSettings(
            name="d", dsn="postgresql:///x", table="t",
            query_log={"table": "ql", "window": "2d", "baseline_window": "1d"},
        )  # fmt: skip
