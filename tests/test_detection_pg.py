"""Detection power through the real path — a pgvector table, a baseline capture, cycles —
for the changes issue 15 names: an unlabelled re-embedding (a rotated space under the same
model_version), a centred space (no false alarms from a near-zero centroid), a net loss of
10 of 400 suite queries (the paired recall test), and the cycle's Holm verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from driftwatch.baseline import capture
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.cycle import check_collection
from driftwatch.synthetic import Topics, exact_neighbours, queries_near, rotation, unit

from helpers import create_vector_table

DIM = 32


def _collection(dsn: str, tmp_path: Path, **extra: object) -> CollectionSettings:
    raw = {"name": "docs", "dsn": dsn, "table": "docs", "sample_size": 2000, "cells": 16, **extra}
    return settings_from_dict({"collections": [raw]}, env={}, base_dir=tmp_path).collections[0]


def _results(report) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {r.detector: r for r in report.results}


@pytest.mark.slow
def test_an_unlabelled_re_embedding_is_flagged(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """A fifth of the rows re-embedded by a slightly different function (a 0.5 rad turn of the
    space), same model_version and no sentinel rows: no push alert can see it; the statistics must."""
    rng = np.random.default_rng(31)
    docs, _ = Topics.make(rng, 12, DIM).sample(rng, 20_000)
    create_vector_table(pg_db, "docs", docs, kind=f"vector({DIM})")
    collection = _collection(pg_db, tmp_path, model_version_column="model_version", sentinels=0)
    capture(collection, engine, rng)
    quiet = check_collection(collection, engine, "quiet", rng)
    assert quiet.status == "ok", [r.detector for r in quiet.results if r.drifted]
    turn = rotation(rng, DIM, 0.5)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        register_vector(conn)
        ids = conn.execute("SELECT id, embedding FROM docs WHERE id % 5 = 0").fetchall()
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE docs SET embedding = %s WHERE id = %s",
                [(unit(np.asarray(v.to_numpy()) @ turn.T).ravel(), i) for i, v in ids],
            )
    report = check_collection(collection, engine, "turned", rng)
    results = _results(report)
    assert report.status == "drift" and report.verdict is not None and report.verdict.rejected
    assert results["model_version"].value == 0  # the label says nothing happened
    assert any(results[d].drifted for d in ("classifier_two_sample", "centroid_distance", "spatial_kl"))


@pytest.mark.slow
def test_a_centred_space_raises_no_false_alarm(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """Mean-centred unit vectors (centroid norm ~0.01): the direction of the mean is noise, and
    the Euclidean centroid with its predictive null must not alarm on it."""
    rng = np.random.default_rng(32)
    docs, _ = Topics.make(rng, 12, DIM).sample(rng, 12_000)
    centred = unit(docs - docs.mean(axis=0))
    create_vector_table(pg_db, "docs", centred, kind=f"vector({DIM})")
    collection = _collection(pg_db, tmp_path, sample_size=1000)
    fitted = capture(collection, engine, rng).fitted
    assert np.linalg.norm(fitted.states["centroid_distance"].centroid) < 0.05
    alarms = 0
    for i in range(20):
        report = check_collection(collection, engine, f"c{i}", np.random.default_rng(100 + i))
        alarms += report.status == "drift"
        assert not _results(report)["centroid_distance"].drifted
    assert alarms == 0


def test_a_net_loss_of_ten_suite_queries_in_400_fires_and_the_verdict_is_holm(
    pg_db: str, tmp_path: Path, engine
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(33)
    docs, _ = Topics.make(rng, 12, DIM).sample(rng, 6000)
    create_vector_table(pg_db, "docs", docs, kind=f"vector({DIM})")
    queries, _ = queries_near(rng, docs, 400)
    nearest = exact_neighbours(queries, docs, 1)[:, 0]  # one relevant document per query
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        "".join(
            json.dumps({"query_id": f"q{i}", "embedding": q.tolist(), "relevant_ids": [str(nearest[i])]})
            + "\n"
            for i, q in enumerate(queries)
        )
    )
    collection = _collection(
        pg_db,
        tmp_path,
        sample_size=500,
        reference_suite={"path": str(suite), "k": 10},
        index_health_queries=0,
    )
    capture(collection, engine, rng)
    before = _results(check_collection(collection, engine, "before", rng))["recall_at_k"]
    assert not before.drifted
    # Ten queries whose relevant document the index found lose it: the documents are deleted.
    found = [
        i
        for i in range(400)
        if before.details.get("worst_queries") is None or f"q{i}" not in before.details["worst_queries"]
    ]
    lost = [int(nearest[i]) for i in found[:10]]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("DELETE FROM docs WHERE id = ANY(%s)", (lost,))
    report = check_collection(collection, engine, "after", rng)
    recall = _results(report)["recall_at_k"]
    assert recall.drifted and recall.p_value is not None and recall.p_value < 0.001, recall
    assert recall.details["net_lost"] >= 10 - recall.details["better"]
    verdict = report.verdict
    assert verdict is not None and verdict.to_dict()["method"] == "holm"
    assert verdict.tested == sum(r.p_value is not None and r.value is not None for r in report.results)
    assert (report.status == "drift") == verdict.drift
