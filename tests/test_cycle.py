"""Baseline capture and check cycles end to end on PostgreSQL + pgvector, with synthetic
topic-structured embeddings generated here: no drift stays quiet at the configured rate,
a new topic moves the population detectors, a changed embedding function moves the
score, recall and model-version detectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from sqlalchemy import select
from sqlalchemy.orm import Session

from driftwatch.baseline import capture
from driftwatch.cli import cli
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.cycle import check_collection
from driftwatch.detect.registry import REGISTRY
from driftwatch.errors import BaselineError
from driftwatch.store.models import Cycle, MetricPoint
from driftwatch.synthetic import Topics, exact_neighbours, queries_near, rotation, unit

from helpers import create_vector_table, run_cli

DIM = 32


def make_store(dsn: str, rng: np.random.Generator, rows: int, topics: Topics) -> np.ndarray:
    docs, _ = topics.sample(rng, rows)
    create_vector_table(dsn, "docs", docs, kind=f"vector({DIM})")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
    return docs


def write_suite(path: Path, rng: np.random.Generator, docs: np.ndarray, n: int, k: int = 10) -> None:
    queries, _ = queries_near(rng, docs, n)
    truth = exact_neighbours(queries, docs, k)
    with path.open("w") as f:
        for i, (q, rel) in enumerate(zip(queries, truth, strict=True)):
            f.write(
                json.dumps({"query_id": f"q{i}", "embedding": q.tolist(), "relevant_ids": rel.tolist()})
                + "\n"
            )


def create_query_log(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE query_log (ts timestamptz NOT NULL, query_id text NOT NULL, query_text text,
                query_embedding vector({DIM}), model_version text, result_ids text[] NOT NULL,
                result_scores real[] NOT NULL, clicked_ids text[] NOT NULL DEFAULT '{{}}')"""
        )


def log_queries(dsn: str, queries: np.ndarray, version: str, at: datetime, k: int = 10) -> None:
    """What the application does: search through the index, log ranked ids and scores."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        for i, q in enumerate(queries):
            hits = conn.execute(
                "SELECT id::text, 1 - (embedding <=> %s) FROM docs ORDER BY embedding <=> %s LIMIT %s",
                (q, q, k),
            ).fetchall()
            conn.execute(
                "INSERT INTO query_log (ts, query_id, model_version, result_ids, result_scores) "
                "VALUES (%s, %s, %s, %s, %s)",
                (
                    at + timedelta(milliseconds=i),
                    f"{version}-{i}",
                    version,
                    [h[0] for h in hits],
                    [h[1] for h in hits],
                ),
            )


def collection(dsn: str, tmp_path: Path, **extra: object) -> CollectionSettings:
    raw = {
        "name": "docs",
        "dsn": dsn,
        "table": "docs",
        "model_version_column": "model_version",
        "text_column": "content",
        "sample_size": 400,
        "null_replicates": 200,
        "cells": 8,
        **extra,
    }
    settings = settings_from_dict({"collections": [raw]}, env={}, base_dir=tmp_path)
    return settings.collections[0]


@pytest.mark.slow
def test_no_drift_false_alarms_match_alpha(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """100 cycles of fresh samples from an unchanged table; alpha = 0.1 so the expected
    count (10 per detector) is large enough to catch both too many and too few alarms."""
    rng = np.random.default_rng(11)
    topics = Topics.make(rng, 12, DIM)
    make_store(pg_db, rng, 30_000, topics)
    settings = collection(pg_db, tmp_path, false_alarm_rate=0.1, index_health_queries=0)
    capture(settings, engine, rng)
    alarms = {"centroid_distance": 0, "spatial_kl": 0, "vector_sanity": 0, "model_version": 0}
    for i in range(100):
        report = check_collection(settings, engine, f"null-{i}", np.random.default_rng(1000 + i))
        assert report.status in ("ok", "drift"), report.error
        for name in alarms:
            alarms[name] += name in report.drifted
    # 99.9% binomial interval for 100 cycles at p = 0.1 is [2, 21]: too many alarms means
    # thresholds too tight, none at all means they are too loose to detect anything.
    assert 2 <= alarms["centroid_distance"] <= 21, alarms
    assert 2 <= alarms["spatial_kl"] <= 21, alarms
    assert alarms["vector_sanity"] == 0 and alarms["model_version"] == 0, alarms
    with Session(engine) as session:
        assert session.query(Cycle).count() == 100
        assert session.query(MetricPoint).count() == 100 * len(REGISTRY.names())


def test_new_topic_moves_centroid_and_spatial_kl_and_names_the_region(
    pg_db: str, tmp_path: Path, engine
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    topics = Topics.make(rng, 12, DIM)
    make_store(pg_db, rng, 20_000, topics)
    settings = collection(pg_db, tmp_path, sample_size=1000)
    fitted = capture(settings, engine, rng).fitted
    quiet = check_collection(settings, engine, "before", rng)
    assert quiet.status == "ok", [r.to_dict() for r in quiet.results if r.drifted]

    grown, new_topic = topics.with_new_topic(rng)
    fresh, _ = grown.sample(rng, 2_222, topic=new_topic)  # 10% of rows after growth
    with psycopg.connect(pg_db, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docs (id, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "vector", "text"])
            for i, v in enumerate(fresh):
                copy.write_row((100_000 + i, v, "v1"))
    report = check_collection(settings, engine, "after", rng)
    results = {r.detector: r for r in report.results}
    assert results["centroid_distance"].drifted and results["spatial_kl"].drifted
    assert not results["model_version"].drifted
    # Where did the mass go? The new topic's cell (or the far cell) must lead the list.
    # Where did the mass go? The cell that gained most must be one the new rows fall in.
    landing = np.bincount(
        fitted.states["spatial_kl"].assign(fresh), minlength=fitted.states["spatial_kl"].cells + 1
    ) / len(fresh)
    regions = {
        "far" if c == fitted.states["spatial_kl"].cells else int(c) for c in np.flatnonzero(landing > 0.25)
    }
    top = max(results["spatial_kl"].details["top_cells"], key=lambda cell: cell["change"])
    assert top["cell"] in regions and top["change"] > 0.03, (regions, results["spatial_kl"].details)


def test_embedding_function_change_moves_score_recall_and_model_version(
    pg_db: str, tmp_path: Path, engine
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(13)
    topics = Topics.make(rng, 12, DIM)
    docs = make_store(pg_db, rng, 8_000, topics)
    suite_path = tmp_path / "suite.jsonl"
    write_suite(suite_path, rng, docs, 150)
    create_query_log(pg_db)
    now = datetime.now(UTC)
    log_queries(pg_db, queries_near(rng, docs, 300)[0], "v1", now - timedelta(minutes=30))
    settings = collection(
        pg_db,
        tmp_path,
        sample_size=1000,
        query_log={"table": "query_log", "window": "1h"},
        reference_suite={"path": "suite.jsonl", "k": 10},
        index_health_queries=20,
        index_health_interval="1s",
    )
    fitted = capture(settings, engine, rng).fitted
    psi, recall = fitted.states["score_psi"], fitted.states.get("recall_at_k")
    assert psi.source == "query_log" and recall is not None and recall.rate > 0.8
    steady = check_collection(settings, engine, "steady", rng)
    assert "recall_at_k" not in steady.drifted and "model_version" not in steady.drifted

    # The model behind the store is replaced (rows re-embedded in place, same version label),
    # and the application's new queries come through the new model too.
    turn = rotation(rng, DIM, np.pi / 3)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        register_vector(conn)
        ids, vectors = zip(*conn.execute("SELECT id, embedding FROM docs").fetchall(), strict=True)
        new = unit(np.stack([v.to_numpy() for v in vectors]) @ turn.T)
        with conn.cursor() as cur:
            cur.executemany("UPDATE docs SET embedding = %s WHERE id = %s", list(zip(new, ids, strict=True)))
    shifted_queries = unit(queries_near(rng, docs, 300)[0] @ turn.T @ rotation(rng, DIM, 0.6).T)
    # A cycle reads rows at least `settle` (click_delay, 5m) old, and counts late ones once.
    log_queries(pg_db, shifted_queries, "v1", datetime.now(UTC) - timedelta(minutes=6))
    report = check_collection(settings, engine, "pushed", rng)
    results = {r.detector: r for r in report.results}
    assert results["recall_at_k"].drifted, results["recall_at_k"].to_dict()
    assert results["score_psi"].drifted, results["score_psi"].to_dict()
    assert results["model_version"].drifted and results["model_version"].details["sentinels_changed"] > 0


@pytest.mark.slow
def test_check_cli_json_and_exit_codes(pg_db: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    topics = Topics.make(rng, 8, DIM)
    make_store(pg_db, rng, 3_000, topics)
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///store.db"\n\n[[collections]]\nname = "docs"\ndsn = "{pg_db}"\n'
        'table = "docs"\nmodel_version_column = "model_version"\nsample_size = 500\ncells = 8\n'
    )
    assert run_cli("--config", str(config), "db", "upgrade").returncode == 0
    no_baseline = run_cli("--config", str(config), "check")
    assert no_baseline.returncode == 2 and "no baseline yet" in no_baseline.stdout + no_baseline.stderr
    captured = run_cli("--config", str(config), "baseline", "capture")
    assert captured.returncode == 0, captured.stderr
    assert "baseline 1 captured" in captured.stdout and "spatial_kl" in captured.stdout
    checked = run_cli("--config", str(config), "check", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    body = json.loads(checked.stdout)
    assert set(body) == {"cycle_id", "started_at", "collections"}
    docs = body["collections"]["docs"]
    assert {"sample_size", "model_versions", "detectors", "alerts"} <= set(docs)
    assert list(docs["detectors"]) == list(REGISTRY.names())  # every registered one, in order
    assert {"centroid_distance", "recall_at_k", "model_version", "embedding_canary"} <= set(docs["detectors"])
    for verdict in docs["detectors"].values():
        assert set(verdict) == {"value", "threshold", "p_value", "drifted", "details"}
    assert docs["sample_size"] == 500 and docs["model_versions"]["dominant"] == "v1"
    # A new model version appears in the store: drift, exit 1.
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("UPDATE docs SET model_version = 'v2' WHERE id % 3 = 0")
    pushed = run_cli("--config", str(config), "check")
    assert pushed.returncode == 1, pushed.stdout + pushed.stderr
    assert "model_version" in pushed.stdout and "DRIFT" in pushed.stdout
    status = run_cli("--config", str(config), "status")
    assert status.returncode == 0 and "model_version" in status.stdout
    history = run_cli("--config", str(config), "history", "--detector", "model_version", "--json")
    points = [json.loads(line) for line in history.stdout.splitlines()]
    assert [p["drifted"] for p in points] == [False, True]


def test_bad_input_is_reported_and_nothing_half_written(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(15)
    create_vector_table(pg_db, "docs", np.empty((0, DIM), dtype=np.float32))
    settings = collection(pg_db, tmp_path)
    with pytest.raises(BaselineError, match="only 0 usable vectors"):
        capture(settings, engine, rng)

    clean, _ = Topics.make(rng, 5, DIM).sample(rng, 3000)
    create_vector_table(pg_db, "docs", clean)
    whole = settings.model_copy(update={"sample_size": 2000})  # tables under 2x the sample are read whole
    capture(whole, engine, rng)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"UPDATE docs SET embedding = array_fill(0, ARRAY[{DIM}])::vector WHERE id % 100 = 0")
        conn.execute("UPDATE docs SET embedding = NULL WHERE id % 100 = 50")
        conn.execute(
            f"UPDATE docs SET embedding = array_fill(1, ARRAY[{DIM // 2}])::vector WHERE id % 250 = 25"
        )
    report = check_collection(whole, engine, "sanity", rng)
    sanity = {r.detector: r for r in report.results}["vector_sanity"]
    assert (sanity.details["zero"], sanity.details["nan"], sanity.details["wrong_dim"]) == (30, 30, 12)
    assert sanity.drifted and sanity.value == pytest.approx(72 / 3000)
    assert report.sample_size == 3000 - 72  # excluded from the other statistics

    broken = settings.model_copy(update={"vector_column": "missing"})
    failed = check_collection(broken, engine, "broken", rng)
    assert failed.status == "failed" and "column 'missing' does not exist" in (failed.error or "")
    with Session(engine) as session:
        row = session.scalars(select(Cycle).where(Cycle.cycle_id == "broken")).one()
        assert row.status == "failed" and "missing" in (row.error or "")
        assert session.query(MetricPoint).filter(MetricPoint.cycle_pk == row.id).count() == 0


def test_check_keeps_going_past_a_failing_collection(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(16)
    make_store(pg_db, rng, 2_000, Topics.make(rng, 5, DIM))
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f"""[store]
url = "sqlite:///{tmp_path / "store.db"}"

[[collections]]
name = "good"
dsn = "{pg_db}"
table = "docs"
sample_size = 300
cells = 4

[[collections]]
name = "bad"
dsn = "{pg_db}"
table = "absent"
sample_size = 300
"""
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    good = runner.invoke(cli, ["--config", str(config), "baseline", "capture", "--collection", "good"])
    assert good.exit_code == 0, good.output
    checked = runner.invoke(cli, ["--config", str(config), "check", "--json"])
    report = json.loads(checked.stdout)["collections"]
    assert report["good"]["status"] in ("ok", "drift")
    assert report["bad"]["status"] == "failed" and "no baseline yet" in report["bad"]["error"]
    assert checked.exit_code == 2


def test_fixed_thresholds_replace_calibrated_ones(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(17)
    make_store(pg_db, rng, 3_000, Topics.make(rng, 5, DIM))
    calibrated = collection(pg_db, tmp_path, sample_size=500)
    fitted = capture(calibrated, engine, rng).fitted
    # The baseline read the whole table (3,000 < 6 x 500), but cycles will draw 500 rows:
    # the nulls must be calibrated for 500.
    assert (
        fitted.cycle_size == 500
        and fitted.states["centroid_distance"].null.n == 500
        and fitted.states["spatial_kl"].null.n == 500
    )
    fixed = calibrated.model_copy(update={"thresholds": {"spatial_kl": 1e-9, "centroid_distance": 10.0}})
    results = {r.detector: r for r in check_collection(fixed, engine, "fixed", rng).results}
    assert results["spatial_kl"].threshold == 1e-9 and results["spatial_kl"].drifted
    assert results["centroid_distance"].threshold == 10.0 and not results["centroid_distance"].drifted
    assert results["spatial_kl"].p_value is not None  # still judged against the calibrated null
