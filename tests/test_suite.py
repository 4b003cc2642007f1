"""Reference suite JSONL parsing, ANN vs exact runs, and the query-log reader, on real
PostgreSQL + pgvector."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import QueryWindow, SuiteRun, recall_hits
from driftwatch.errors import QueryLogError, SourceError, SuiteError
from driftwatch.pg import querylog, suite
from driftwatch.pg.querylog import parse_querylog
from driftwatch.pg.session import Sessions
from driftwatch.suite import parse_suite

from helpers import create_vector_table, run_cli


def run_queries(config: CollectionSettings, vectors: np.ndarray, k: int, **extra) -> SuiteRun:  # type: ignore[no-untyped-def]
    with Sessions(config) as sessions:
        return suite.run_queries(sessions.store, config, vectors, k, **extra)


def read_window(config: CollectionSettings, since: datetime, until: datetime) -> QueryWindow:
    with Sessions(config) as sessions:
        return querylog.read_window(sessions.query_log, config, querylog.LogRead(since, until))


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_valid_suite(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        [
            json.dumps({"query_id": "a", "embedding": [1, 0, 0], "relevant_ids": [1, 2, 2]}),
            "",
            json.dumps({"query_id": 7, "text": "hello", "embedding": [0, 1.5, 0], "relevant_ids": ["x"]}),
        ],
    )
    queries = parse_suite(path)
    assert [q.query_id for q in queries] == ["a", "7"]
    assert queries[0].relevant_ids == ("1", "2")  # ids are strings, duplicates dropped
    assert queries[1].text == "hello" and queries[1].embedding is not None
    assert queries[1].embedding.dtype == np.float32


def test_every_bad_line_is_named_and_nothing_loads(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path,
        [
            json.dumps({"query_id": "ok", "embedding": [1, 0], "relevant_ids": [1]}),
            "{not json",
            json.dumps({"query_id": "", "embedding": [1, 0], "relevant_ids": [1]}),
            json.dumps({"query_id": "b", "embedding": [1, 0], "relevant_ids": []}),
            json.dumps({"query_id": "c", "embedding": [0, 0], "relevant_ids": [1]}),
            json.dumps({"query_id": "d", "embedding": [1, "x"], "relevant_ids": [1]}),
            json.dumps({"query_id": "ok", "embedding": [1, 0], "relevant_ids": [1]}),
            json.dumps({"query_id": "e", "relevant_ids": [1]}),
            json.dumps({"query_id": "f", "embedding": [1, 0, 0], "relevant_ids": [1], "extra": 1}),
            json.dumps([1, 2]),
        ],
    )
    with pytest.raises(SuiteError) as caught:
        parse_suite(path)
    problems = caught.value.problems
    expected = [
        "line 2: not valid JSON",
        "line 3: query_id: required",
        "line 4: relevant_ids: required",
        "line 5: embedding: is all zeros",
        "line 6: embedding: must be a list of numbers",
        "line 7: query_id 'ok' repeats line 1",
        "line 8: needs an embedding",
        "line 9: unknown field(s) extra",
        "line 10: must be a JSON object",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_crashes_on_arbitrary_lines(tmp_path_factory: pytest.TempPathFactory, line: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "suite.jsonl"
    path.write_bytes(line.encode("utf-8", "surrogatepass"))  # lone surrogates make invalid UTF-8
    try:
        parse_suite(path)
    except SuiteError as exc:
        assert exc.problems  # always explained


def test_recall_and_overlap_hits() -> None:
    hits, trials = recall_hits([["1", "2", "3"], ["9"]], [("1", "3", "7"), ("1",)], k=2)
    assert hits.tolist() == [1, 0] and trials.tolist() == [2, 1]
    overlap, total = recall_hits([["1", "2"], ["3", "4"]], [["2", "1"], ["3", "5"]], k=2)
    assert overlap.tolist() == [2, 1] and total.tolist() == [2, 2]


@pytest.mark.parametrize(("metric", "opclass"), [("cosine", "vector_cosine_ops"), ("l2", "vector_l2_ops"),
                                                 ("inner_product", "vector_ip_ops")])  # fmt: skip
def test_ann_matches_exact_and_scores_follow_the_metric(pg_db: str, metric: str, opclass: str) -> None:
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((2000, 16)).astype(np.float32)
    create_vector_table(pg_db, "docs", docs, kind="vector(16)")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"CREATE INDEX ON docs USING hnsw (embedding {opclass})")
    settings_ = CollectionSettings(name="d", dsn=pg_db, table="docs", metric=metric)
    queries = docs[:20] + 0.01
    ann = run_queries(settings_, queries, 5)
    exact = run_queries(settings_, queries, 5, exact=True)
    hits, trials = recall_hits(ann.ids, exact.ids, 5)
    assert hits.sum() / trials.sum() > 0.9
    # Numpy agrees with the exact scan on the top hit and its score.
    if metric == "cosine":
        sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
            docs / np.linalg.norm(docs, axis=1, keepdims=True)
        ).T
    elif metric == "l2":
        sims = -np.linalg.norm(queries[:, None, :] - docs[None, :, :], axis=2)
    else:
        sims = queries @ docs.T
    assert [ids[0] for ids in exact.ids] == [str(i) for i in sims.argmax(axis=1)]
    assert np.allclose(exact.scores[:, 0], sims.max(axis=1), atol=1e-4)


def test_suite_with_wrong_dimension_is_a_clear_error(pg_db: str) -> None:
    create_vector_table(pg_db, "docs", np.ones((10, 4), dtype=np.float32), kind="vector(4)")
    with pytest.raises(SourceError, match="docs: suite query rejected: different vector dimensions"):
        run_queries(CollectionSettings(name="d", dsn=pg_db, table="docs"), np.ones((2, 3), np.float32), 5)


def test_query_log_window(pg_db: str) -> None:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ql (ts timestamptz, query_id text, query_text text, query_embedding vector(3), "
            "model_version text, result_ids text[], result_scores real[], clicked_ids text[])"
        )
        now = datetime.now(UTC)
        rows = [
            (now - timedelta(minutes=90), "old", "v1", ["a"], [0.9]),  # outside the window
            (now - timedelta(minutes=30), "q1", "v1", ["a", "b"], [0.8, 0.6]),
            (now - timedelta(minutes=20), "q2", "v2", ["c"], [0.5]),
            (now - timedelta(minutes=10), "q3", None, [], []),  # no results: counted, not scored
        ]
        for ts, qid, ver, ids, scores in rows:
            conn.execute(
                "INSERT INTO ql (ts, query_id, model_version, result_ids, result_scores, clicked_ids) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (ts, qid, ver, ids, scores, ids[:2] if qid == "q1" else []),
            )
    settings_ = CollectionSettings(name="d", dsn=pg_db, table="docs", query_log={"table": "ql"})
    window = read_window(settings_, now - timedelta(hours=1), now)
    assert window.queries == 3 and window.versions == {"v1": 1, "v2": 1, None: 1}
    assert window.clicked_queries == 1 and window.clicks == 2
    assert sorted(window.top1.round(4).tolist()) == [0.5, 0.8]
    assert sorted(window.mean_topk.round(4).tolist()) == [0.5, 0.7]
    missing = CollectionSettings(name="d", dsn=pg_db, table="docs", query_log={"table": "nope"})
    with pytest.raises(SourceError, match=r"query_log\.table nope does not exist"):
        read_window(missing, now - timedelta(hours=1), now)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE ql_bad (ts timestamptz, query_id text)")
    bad = CollectionSettings(name="d", dsn=pg_db, table="docs", query_log={"table": "ql_bad"})
    with pytest.raises(SourceError, match="lacks column"):
        read_window(bad, now - timedelta(hours=1), now)


SUITE_OK = json.dumps({"query_id": "ok", "embedding": [1, 0], "relevant_ids": ["1"]})
LOG_OK = json.dumps(
    {"ts": "2026-11-01T12:00:00Z", "query_id": "ok", "result_ids": ["1"], "result_scores": [0.5]}
)
HOSTILE_LINES = [
    (
        '{"query_id": "a", "embedding": [' + "9" * 400 + ', 1], "relevant_ids": ["1"]}',
        "integer of 400 digits",
    ),
    (
        '{"query_id": "a", "relevant_ids": ["1"], "embedding": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "nested",
    ),
    (
        '{"query_id": "a\\ud800", "embedding": [1, 0], "relevant_ids": ["1"]}',
        "query_id: holds a lone surrogate",
    ),
    (
        '{"query_id": "a\\u0000b", "embedding": [1, 0], "relevant_ids": ["1"]}',
        "query_id: holds a NUL character",
    ),
    (
        json.dumps({"query_id": "x" * 1_000_000, "embedding": [1, 0], "relevant_ids": ["1"]}),
        "query_id: an id of 1000000 characters",
    ),
    (SUITE_OK, "query_id 'ok' repeats line 1"),
]


@pytest.mark.parametrize(("line", "problem"), HOSTILE_LINES, ids=[p for _, p in HOSTILE_LINES])
def test_hostile_suite_lines_get_a_line_numbered_error(tmp_path: Path, line: str, problem: str) -> None:
    path = write_lines(tmp_path, [SUITE_OK, line])
    with pytest.raises(SuiteError) as caught:
        parse_suite(path)
    assert any(p.startswith("line 2: ") and problem in p for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(("line", "problem"), HOSTILE_LINES, ids=[p for _, p in HOSTILE_LINES])
def test_hostile_query_log_lines_get_a_line_numbered_error(tmp_path: Path, line: str, problem: str) -> None:
    """The same hostile values, in a query log's fields."""
    record = json.loads(LOG_OK)
    fields = line.replace('"embedding"', '"query_embedding"').replace('"relevant_ids"', '"result_ids"')
    fields = fields.replace('["1"]}', '["1"], "result_scores": [0.5], "ts": "2026-11-01T12:00:00Z"}')
    if line == SUITE_OK:
        fields = json.dumps(record)
    path = write_lines(tmp_path, [json.dumps(record), fields])
    with pytest.raises(QueryLogError) as caught:
        parse_querylog(path)
    assert any(p.startswith("line 2: ") and problem in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_suite_import_refuses_another_dimension(tmp_path: Path, pg_db: str) -> None:
    """The collection's vectors are 4-d; a 3-d suite would break every cycle: refused, nothing stored."""
    create_vector_table(pg_db, "docs", np.ones((10, 4), dtype=np.float32), kind="vector(4)")
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n'
        f'[[collections]]\nname = "docs"\ndsn = "{pg_db}"\ntable = "docs"\n'
    )
    assert run_cli("--config", str(config), "db", "upgrade").returncode == 0
    suite = write_lines(
        tmp_path, [json.dumps({"query_id": "q", "embedding": [1, 0, 0], "relevant_ids": ["1"]})]
    )
    result = run_cli("--config", str(config), "suite", "import", str(suite))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "embeddings have 3 dimensions but docs's vectors (docs.embedding) have 4" in result.stderr
    right = write_lines(
        tmp_path, [json.dumps({"query_id": "q", "embedding": [1, 0, 0, 0], "relevant_ids": ["1"]})]
    )
    result = run_cli("--config", str(config), "suite", "import", str(right))
    assert result.returncode == 0 and "replaced with 1 queries" in result.stdout


def test_a_percent_in_a_column_name_is_refused_up_front(tmp_path: Path, pg_db: str) -> None:
    """psycopg would read the '%' as a placeholder in every cycle's query."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute('CREATE TABLE "docs%v1" (id bigint PRIMARY KEY, "emb%" vector(3))')
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[[collections]]\nname = "docs"\n'
        f'dsn = "{pg_db}"\ntable = "docs%v1"\nvector_column = "emb%"\n'
    )
    result = run_cli("--config", str(config), "baseline", "capture")
    assert result.returncode == 2
    assert "collections[0].table: 'docs%v1' contains '%'" in result.stderr
    assert "collections[0].vector_column: 'emb%' contains '%'" in result.stderr
