"""A model push to another dimension in an untyped `vector` column, on the embedded PostgreSQL:
rows of the new dimension used to make pgvector reject the suite's ANN query ("different
vector dimensions 8 and 16") and every cycle failed. Now the cycle reports rows per
dimension, the push alert names old and new dimension and share, the suite runs against the
baseline's dimension (with a note), and the other detectors stay on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Engine

from driftwatch.alerting import PUSHED, AlertEngine, push_candidates
from driftwatch.baseline import capture
from driftwatch.config import settings_from_dict
from driftwatch.cycle import check_collection
from driftwatch.detect.checks import model_version_result
from driftwatch.synthetic import Topics, exact_neighbours, queries_near

from helpers import create_vector_table

OLD, NEW = 8, 16


def test_rows_of_a_new_dimension_are_a_push_not_a_failed_cycle(
    pg_db: str, tmp_path: Path, engine: Engine
) -> None:
    rng = np.random.default_rng(21)
    docs, _ = Topics.make(rng, 6, OLD).sample(rng, 3000)
    create_vector_table(pg_db, "docs", docs, kind="vector")  # untyped: any dimension fits
    queries, _ = queries_near(rng, docs, 80)
    truth = exact_neighbours(queries, docs, 10)
    with (tmp_path / "suite.jsonl").open("w") as f:
        for i, (q, rel) in enumerate(zip(queries, truth, strict=True)):
            f.write(
                json.dumps({"query_id": f"q{i}", "embedding": q.tolist(), "relevant_ids": rel.tolist()})
                + "\n"
            )
    raw = {
        "name": "docs",
        "dsn": pg_db,
        "table": "docs",
        "model_version_column": "model_version",
        "sample_size": 600,
        "null_replicates": 200,
        "cells": 8,
        "reference_suite": {"path": "suite.jsonl", "k": 10},
        "index_health_queries": 10,
        "index_health_interval": "1s",
    }
    settings = settings_from_dict(
        {"collections": [raw], "alerts": {"notifiers": []}}, env={}, base_dir=tmp_path
    )
    collection = settings.collections[0]
    capture(collection, engine, rng)

    pushed, _ = Topics.make(np.random.default_rng(5), 6, NEW).sample(rng, 1000)  # a quarter of the rows
    with psycopg.connect(pg_db, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docs (id, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "vector", "text"])
            for i, vector in enumerate(pushed.astype(np.float32)):
                copy.write_row((10_000 + i, vector, "v2"))
        conn.execute("ANALYZE docs")

    report = check_collection(collection, engine, "pushed", rng)
    assert report.status != "failed", report.error
    results = {r.detector: r for r in report.results}
    dims = report.model_versions["dims"]
    assert set(dims) == {str(OLD), str(NEW)} and 0.15 < dims[str(NEW)] / sum(dims.values()) < 0.35
    version = results["model_version"]
    assert version.drifted and version.details["new_dims"] == [NEW] and version.details["baseline_dim"] == OLD
    assert version.details["new_versions"] == ["v2"]
    assert results["vector_sanity"].details["dims"] == dims  # reported, rows of 16-d counted as wrong_dim
    assert results["vector_sanity"].details["wrong_dim"] == dims[str(NEW)]
    # The suite ran, on the 8-d rows only, and says so.
    recall = results["recall_at_k"]
    assert recall.value is not None and not recall.drifted and recall.details["recall"] > 0.9
    assert results["index_health"].value is not None
    assert any(f"the {OLD}-d rows only" in note for note in report.notes), report.notes
    # Every other detector stays on the baseline's dimension: the 8-d population did not move.
    for name in ("centroid_distance", "spatial_kl"):
        assert results[name].value is not None and not results[name].drifted, results[name].to_dict()
    assert report.sample_size == dims[str(OLD)]

    views = AlertEngine(settings, engine).evaluate(report)
    (page,) = [v for v in views if v.state == "firing"]
    assert page.alertname == PUSHED and page.detector == "model_version"
    assert f"dimension {OLD} → {NEW}" in page.summary and "v1 → v2" in page.summary
    share = round(100 * version.details["new_dim_fraction"])
    assert f"{share}% of sampled rows are of the new dimension" in page.summary


def test_a_new_dimension_without_a_version_column_is_still_a_push() -> None:
    result = model_version_result(["v1"], {"v1": 100}, {}, np.ones(4), dims={8: 70, 16: 30}, baseline_dim=8)
    assert result.drifted and result.value == 0.3 and result.details["new_versions"] == []
    pushed = push_candidates("docs", result)[0]
    assert pushed.condition and pushed.annotations["summary"] == (
        "docs: embedding model pushed: dimension 8 → 16: 30% of sampled rows are of the new dimension "
        "(no new model_version)"
    )
    same = model_version_result(["v1"], {"v1": 100}, {}, np.ones(4), dims={8: 100}, baseline_dim=8)
    assert not same.drifted and not push_candidates("docs", same)[0].condition
