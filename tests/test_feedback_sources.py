"""The miner's four sources on a simulated user, end to end on PostgreSQL + pgvector: users
search through the HNSW index, click by a position-based model, leave thumbs with a known
noise rate and reformulate failed queries; the log goes in by `querylog import` (session_id,
feedback), a real cycle mines it, `candidates export` filters it. True relevance is known, so
each source's false-negative rate is measured (and printed for BENCHMARKS.md's reader)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from sqlalchemy import Engine

from driftwatch import store
from driftwatch.baseline import capture
from driftwatch.config import load_config
from driftwatch.feedback import FAILED_DEPTH, mine_collection
from driftwatch.monitor import Monitor
from driftwatch.pg.querylog import ddl
from driftwatch.store import repository
from driftwatch.synthetic import Topics, rotation, unit
from driftwatch.synthetic_users import Users, false_negative_rates, simulate_log

from helpers import create_vector_table, run_cli

DIM = 32
USERS = Users(thumbs_noise=0.1, rate_share=0.4)


def _search(dsn: str):  # type: ignore[no-untyped-def]
    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)

    def search(vector: np.ndarray) -> tuple[list[str], list[float]]:
        vector = np.asarray(vector, dtype=np.float32)
        hits = conn.execute(
            "SELECT id::text, 1 - (embedding <=> %s) FROM docs ORDER BY embedding <=> %s LIMIT 10",
            (vector, vector),
        ).fetchall()
        return [h[0] for h in hits], [float(h[1]) for h in hits]

    return conn, search


def _jsonl(rows) -> str:  # type: ignore[no-untyped-def]
    lines = []
    for r in rows:
        line = {
            "ts": r.ts.isoformat(), "query_id": r.query_id, "query_text": r.query_text,
            "query_embedding": [round(float(x), 6) for x in r.query_embedding],
            "model_version": r.model_version, "result_ids": r.result_ids, "result_scores": r.result_scores,
            "clicked_ids": r.clicked_ids, "session_id": r.session_id, "feedback": r.feedback,
        }  # fmt: skip
        lines.append(json.dumps(line) + "\n")
    return "".join(lines)


@pytest.fixture
def world(pg_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
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
model_version_column = "model_version"
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


def test_each_source_mines_honest_triplets_and_a_push_is_not_mined(world, pg_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, docs, rng = world
    conn, search = _search(pg_db)
    start = datetime.now(UTC) - timedelta(hours=20)
    with conn:
        rows, relevant_of = simulate_log(rng, USERS, search, docs, intents=120, visits=5, start=start)
        # A pushed model embeds some queries in another space (the documents are still v1).
        turn = rotation(rng, DIM, np.pi / 2)
        pushed, pushed_truth = simulate_log(
            rng, USERS, search, docs, intents=20, visits=5, start=start + timedelta(hours=12),
            model_version="v2", embed=lambda v: unit(v @ turn.T),
        )  # fmt: skip
    relevant_of.update(pushed_truth)
    log_file = tmp_path / "log.jsonl"
    log_file.write_text(_jsonl(sorted(rows + pushed, key=lambda r: r.ts)))
    imported = run_cli("--config", str(config), "querylog", "import", str(log_file))
    assert imported.returncode == 0, imported.stderr
    thumbs = sum(r.feedback is not None for r in rows + pushed)
    assert f"{thumbs} thumbs" in imported.stdout

    settings = load_config(config)
    engine: Engine = store.create_store_engine(settings.store.url)
    try:
        store.upgrade(engine)
        capture(settings.collections[0], engine, np.random.default_rng(0))
        report = Monitor(settings, engine).run("docs", 900)
        assert report is not None and report.status != "failed", report and report.error
        later = mine_collection(settings.collections[0], engine, datetime.now(UTC) + timedelta(hours=1))
        assert later.left_out.get("model push in progress (queries on v2)", 0) == 0  # mined by the cycle
        counts = repository.candidate_counts(engine)["docs"]
        priorities = {
            source: [c.priority for c in repository.candidates(engine, "docs", None, None, source=source)]
            for source in ("skip_above", "thumbs_down", "follow_up")
        }
    finally:
        engine.dispose()

    out = tmp_path / "all.jsonl"
    exported = run_cli("--config", str(config), "candidates", "export", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    triplets = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(triplets) == counts
    assert {t["model_version"] for t in triplets} == {"v1"}  # the push's queries were not mined
    sources = {t["source"] for t in triplets}
    assert sources == {"skip_above", "thumbs_down", "follow_up"}  # hard negatives are opt-in

    logged = {r.query_id: r for r in rows}
    follow_ups = [t for t in triplets if t["source"] == "follow_up"]
    for t in follow_ups:
        first = logged[t["query_id"]]
        again = logged[t["query_id"][:-1] + "1"]  # its session's reformulation
        assert t["anchor"] == first.query_text and t["positive_id"] in again.clicked_ids
        assert t["negative_id"] in first.result_ids[:FAILED_DEPTH]
    for t in (t for t in triplets if t["source"] == "thumbs_down"):
        row = logged[t["query_id"]]
        assert row.feedback == -1 and t["negative_id"] in row.result_ids[:FAILED_DEPTH]
    # The user said what the query meant: follow-ups rank above thumbs downs and most clicks.
    assert min(priorities["follow_up"]) >= 0.7 > max(priorities["thumbs_down"])
    assert min(priorities["follow_up"]) > np.median(priorities["skip_above"])

    rates = false_negative_rates(
        [(t["anchor"], t["negative_id"], t["source"]) for t in triplets], relevant_of
    )
    naive = float(np.mean([
        i in relevant_of[r.query_text] for r in rows if r.clicked_ids
        for i in r.result_ids if i not in r.clicked_ids
    ]))  # fmt: skip
    print("\nfalse-negative rate per source:", {s: f"{r:.3f} of {n}" for s, (r, n) in rates.items()})
    print(f"every unclicked result of a clicked query: {naive:.3f}")
    assert all(n >= 20 for _, n in rates.values())
    # Skip-above negatives are no worse than any unclicked result (within two standard errors:
    # the ANN's results vary a little between runs) and are mostly truly irrelevant.
    rate, n = rates["skip_above"]
    assert rate < min(0.1, naive + 2 * float(np.sqrt(naive * (1 - naive) / n)))
    assert rates["follow_up"][0] < naive and rates["thumbs_down"][0] < naive

    only = tmp_path / "follow.jsonl"
    filtered = run_cli(
        "--config", str(config), "candidates", "export", "--source", "follow_up",
        "--model-version", "v1", "--output", str(only),
    )  # fmt: skip
    assert filtered.returncode == 0, filtered.stderr
    assert len(only.read_text().splitlines()) == len(follow_ups)
    none = run_cli("--config", str(config), "candidates", "export", "--model-version", "v2")
    assert none.returncode == 0 and none.stdout == ""
