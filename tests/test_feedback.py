"""Click feedback → fine-tuning candidates, end to end on PostgreSQL + pgvector: a corpus
where true relevance is known, an application that searches through the HNSW index and
logs what it showed, users who click by a position-based click model, the log loaded by
`querylog import`, mined by a real cycle, exported by `candidates export`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from prometheus_client import CollectorRegistry
from psycopg import sql

from driftwatch import store
from driftwatch.baseline import capture
from driftwatch.config import load_config
from driftwatch.feedback import mine_collection, mine_queries
from driftwatch.metrics import Metrics
from driftwatch.monitor import Monitor
from driftwatch.pg.querylog import COLUMNS, LoggedQuery, ddl
from driftwatch.store import repository
from driftwatch.synthetic import Topics, exact_neighbours, queries_near, unit

from helpers import create_vector_table, run_cli

DIM = 32
KEYS = {"anchor", "positive", "negative", "query_id", "positive_id", "negative_id", "source", "model_version"}


def simulate_log(dsn: str, path: Path, rng: np.random.Generator, docs: np.ndarray) -> dict[str, set[str]]:
    """Users search, the application logs the ranked results, users click by a position-based
    model (examined with probability 1/(1+rank)^0.8, clicked if examined with probability 0.85
    when relevant, 0.08 when not). Returns the truly relevant ids of each query text."""
    queries, sources = queries_near(rng, docs, 150, noise=0.6)
    neighbours = exact_neighbours(docs[sources], docs, 3)  # the source document and its two nearest
    relevant = {f"query {j}": {str(i) for i in neighbours[j]} for j in range(len(queries))}
    start = datetime.now(UTC) - timedelta(hours=3)
    lines = []
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        for j, q in enumerate(queries):
            hits = conn.execute(
                "SELECT id::text, 1 - (embedding <=> %s) FROM docs ORDER BY embedding <=> %s LIMIT 10", (q, q)
            ).fetchall()
            ids = [h[0] for h in hits]
            for session in range(4):
                examined = rng.random(len(ids)) < 1 / (1 + np.arange(len(ids))) ** 0.8
                attractive = np.array([0.85 if i in relevant[f"query {j}"] else 0.08 for i in ids])
                clicked = [
                    i for i, e, a in zip(ids, examined, attractive, strict=True) if e and rng.random() < a
                ]
                lines.append(
                    {
                        "ts": (start + timedelta(seconds=60 * j + session)).isoformat(),
                        "query_id": f"q{j}-s{session}",
                        "query_text": f"query {j}",
                        "query_embedding": [round(float(x), 6) for x in q],
                        "model_version": "v1",
                        "result_ids": ids,
                        "result_scores": [float(h[1]) for h in hits],
                        "clicked_ids": clicked,
                    }
                )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return relevant


@pytest.fixture
def setup(pg_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(21)
    docs, _ = Topics.make(rng, 10, DIM).sample(rng, 3000)
    create_vector_table(pg_db, "docs", docs, kind=f"vector({DIM})")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
        conn.execute(ddl("query_log", DIM, reader=None))
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path / "store.db"}"

[[collections]]
name = "docs"
dsn = "{pg_db}"
table = "docs"
text_column = "content"
sample_size = 300
null_replicates = 100
cells = 8

[collections.query_log]
table = "query_log"
window = "1d"
click_delay = "0s"
"""
    )
    return config, docs, rng


def test_clicks_become_honest_triplets(setup, pg_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, docs, rng = setup
    log_file = tmp_path / "log.jsonl"
    relevant = simulate_log(pg_db, log_file, rng, docs)
    imported = run_cli("--config", str(config), "querylog", "import", str(log_file))
    assert imported.returncode == 0, imported.stderr
    assert "600 queries" in imported.stdout

    settings = load_config(config)
    engine_ = store.create_store_engine(settings.store.url)
    store.upgrade(engine_)
    capture(settings.collections[0], engine_, np.random.default_rng(0))
    registry = CollectorRegistry()
    monitor = Monitor(settings, engine_, Metrics(registry))
    report = monitor.run("docs", 900)
    assert report is not None and report.status != "failed", report and report.error
    stored = repository.candidate_counts(engine_)["docs"]
    assert stored > 100
    assert registry.get_sample_value("driftwatch_finetune_candidates_total", {"collection": "docs"}) == stored
    monitor.run("docs", 900)  # nothing new since: no candidate twice
    assert repository.candidate_counts(engine_)["docs"] == stored
    engine_.dispose()

    out = tmp_path / "triplets.jsonl"
    exported = run_cli("--config", str(config), "candidates", "export", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    triplets = [json.loads(line) for line in out.read_text().splitlines()]  # every line is JSON
    assert len(triplets) == stored
    assert all(set(t) == KEYS and all(isinstance(v, str) and v for v in t.values()) for t in triplets)
    keys = [(t["anchor"], t["positive_id"], t["negative_id"]) for t in triplets]
    assert len(set(keys)) == len(keys), "duplicate triplets"

    logged = {line["query_id"]: line for line in map(json.loads, log_file.read_text().splitlines())}
    for t in triplets:
        row = logged[t["query_id"]]
        assert t["positive_id"] in row["clicked_ids"]  # every positive was clicked
        assert t["negative_id"] in row["result_ids"] and t["negative_id"] not in row["clicked_ids"]
        assert t["anchor"] == row["query_text"]
        assert t["positive"] == f"doc {t['positive_id']}" and t["negative"] == f"doc {t['negative_id']}"
    skip_above = float(np.mean([t["negative_id"] in relevant[t["anchor"]] for t in triplets]))
    assert {t["source"] for t in triplets} == {"skip_above"}  # hard negatives are opt-in
    # Every unclicked result of a clicked query taken as a negative, for comparison.
    naive = float(np.mean([
        i in relevant[row["query_text"]]
        for row in logged.values() if row["clicked_ids"]
        for i in row["result_ids"] if i not in row["clicked_ids"]
    ]))  # fmt: skip
    # Opt-in hard negatives, mined from the same log by the same code.
    now = datetime.now(UTC)
    queries = [
        LoggedQuery(now, r["query_id"], r["query_text"], None, (*r["result_ids"],), (*r["clicked_ids"],))
        for r in logged.values() if r["clicked_ids"]
    ]  # fmt: skip
    vectors = {str(i): v for i, v in enumerate(docs)}
    elsewhere: dict[str, set[str]] = {}
    for row in logged.values():
        elsewhere.setdefault(row["query_text"], set()).update(row["clicked_ids"])
    with_hard, _ = mine_queries(queries, elsewhere, vectors, similarity_bound=0.95, hard_negatives=2)
    hard = float(
        np.mean([t.negative_id in relevant[t.anchor] for t in with_hard if t.source == "hard_negative"])
    )
    print(
        f"\n{len(triplets)} triplets; truly relevant negatives: skip-above {skip_above:.3f}, "
        f"opt-in hard negatives {hard:.3f}, every unclicked result {naive:.3f}"
    )
    assert skip_above < 0.06 and skip_above < naive / 1.5
    assert hard < 0.2


def test_skip_above_priorities_and_filters() -> None:
    """The pure miner on one hand-made query: what is a negative and what is not."""
    rng = np.random.default_rng(0)
    vectors = {str(i): v for i, v in enumerate(unit(rng.standard_normal((8, 16))))}
    vectors["7"] = unit(vectors["5"] + 0.01 * rng.standard_normal(16))  # a near-duplicate of the positive
    query = LoggedQuery(
        ts=datetime.now(UTC),
        query_id="q1",
        query_text="How to  Reindex",
        embedding=None,
        result_ids=("0", "1", "2", "3", "4", "5", "6", "7"),
        clicked_ids=("5",),
    )
    triplets, left_out = mine_queries(
        [query, query],  # the same query logged twice gives each triplet once
        {"how to reindex": {"2"}},  # "2" was clicked for this query elsewhere in the log
        vectors,
        similarity_bound=0.95,
        hard_negatives=1,
    )
    by_source: dict[str, list[str]] = {}
    for t in triplets:
        by_source.setdefault(t.source, []).append(t.negative_id)
    assert sorted(by_source["skip_above"]) == ["0", "1", "3", "4"]
    assert by_source["hard_negative"] == ["6"]  # "7" is too similar to the positive
    assert left_out["negative too similar to the positive"] >= 1 and left_out["duplicate"] == 5
    skip = next(t for t in triplets if t.source == "skip_above")
    assert skip.priority == pytest.approx(0.7 * np.log2(6) / np.log2(8), abs=1e-4)  # click at rank 5 of 8
    shallow, _ = mine_queries(
        [LoggedQuery(query.ts, "q2", "x", None, query.result_ids, ("1",))],
        {},
        vectors,
        similarity_bound=0.95,
        hard_negatives=0,
    )
    assert shallow[0].priority < skip.priority  # a click deeper in the ranking says more


GOOD = {"ts": "2026-11-01T12:00:00Z", "query_id": "ok", "result_ids": ["1", 2], "result_scores": [0.9, 0.8]}
BAD_LINES = [
    (json.dumps({**GOOD, "ts": "2026-11-01T12:00:00"}), "ts", "timezone"),
    (json.dumps({**GOOD, "result_scores": [0.9]}), "result_scores", "1 scores for 2"),
    (json.dumps({**GOOD, "clicked_ids": ["3"]}), "clicked_ids", "not among"),
    (json.dumps({**GOOD, "query_id": ""}), "query_id", "non-empty"),
    (json.dumps({**GOOD, "result_scores": [0.9, float("nan")]}), "result_scores", "finite"),
    (json.dumps({**GOOD, "clicks": []}), "clicks", "unknown field"),
    (json.dumps(GOOD)[:-1], "not valid JSON", ""),
]


@pytest.mark.parametrize(("line", "field", "why"), BAD_LINES, ids=[b[1] for b in BAD_LINES])
def test_a_bad_line_loads_nothing(setup, pg_db: str, tmp_path: Path, line: str, field: str, why: str) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = setup
    first, second, fourth = (json.dumps({**GOOD, "query_id": q}) for q in ("q1", "q2", "q4"))
    path = tmp_path / "log.jsonl"
    path.write_text(f"{first}\n{second}\n{line}\n{fourth}\n")
    result = run_cli("--config", str(config), "querylog", "import", str(path))
    assert result.returncode == 2
    assert f"line 3: {field}" in result.stderr and why in result.stderr, result.stderr
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT count(*) FROM query_log").fetchone()[0] == 0


def test_ddl_quotes_hostile_names_and_creates_the_contract_table(setup, pg_db: str) -> None:  # type: ignore[no-untyped-def]
    name = 'log"; DROP TABLE docs; --'
    text = ddl('"' + name.replace('"', '""') + '"', dim=8, reader=None)  # as written in the config
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(text)
        oid = conn.execute(
            "SELECT to_regclass(%s::text)::oid", (sql.Identifier(name).as_string(conn),)
        ).fetchone()[0]
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 ORDER BY attnum",
            (oid,),
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 3000  # nothing was dropped
    assert [c[0] for c in columns] == [c for c, _, _ in COLUMNS]
    assert dict(columns)["query_embedding"] == "vector(8)" and dict(columns)["result_scores"] == "real[]"


def test_ddl_command_prints_the_configured_table(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = setup
    result = run_cli("--config", str(config), "querylog", "ddl", "--dim", "384")
    assert result.returncode == 0, result.stderr
    assert 'CREATE TABLE IF NOT EXISTS "query_log"' in result.stdout and "vector(384)" in result.stdout


def test_a_query_log_with_nulls_and_unknown_ids_is_counted_not_fatal(setup, pg_db: str) -> None:  # type: ignore[no-untyped-def]
    config, _, _ = setup
    now = datetime.now(UTC)
    rows = [
        (now, "a", None, None, None, ["1", "2"], [0.9, 0.8], ["2"]),  # no query text
        (
            now,
            "b",
            "x",
            None,
            None,
            ["1", None, "999999"],
            [0.9, None, 0.7],
            ["999999"],
        ),  # unknown doc, NULLs
        (now, "c", "y", None, None, ["5", "999998", "6"], [0.9, 0.8, 0.7], ["6"]),  # an unknown negative
        (now, "d", "z", None, None, [], [], []),  # nothing shown
    ]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        for row in rows:
            conn.execute(
                "INSERT INTO query_log (ts, query_id, query_text, query_embedding, model_version, "
                "result_ids, result_scores, clicked_ids) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
    settings = load_config(config)
    engine_ = store.create_store_engine(settings.store.url)
    try:
        store.upgrade(engine_)
        capture(settings.collections[0], engine_, np.random.default_rng(0))
        report = Monitor(settings, engine_).run("docs", 900)
        assert report is not None and report.status != "failed", report and report.error
        mined = mine_collection(settings.collections[0], engine_, datetime.now(UTC) + timedelta(hours=2))
    finally:
        engine_.dispose()
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 3000  # read, never written
    # The cycle's own mining waits `settle` (follow_up_window) for feedback to arrive; the later
    # run takes what is left: together, the one usable triplet.
    assert mined.new_candidates <= 1
    stored_rows = run_cli("--config", str(config), "candidates", "export")
    triplets = [json.loads(line) for line in stored_rows.stdout.splitlines()]
    assert [(t["query_id"], t["positive_id"], t["negative_id"]) for t in triplets] == [("c", "6", "5")]
