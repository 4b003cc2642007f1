"""Arrivals: drift comes in with new rows, and a sample of the whole table dilutes it 50 to 1.
Each cycle also samples the rows past the baseline's watermark in the arrival column and
tests them on their own, against the same baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from driftwatch.baseline import capture
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.cycle import check_collection
from driftwatch.synthetic import Topics

from helpers import create_vector_table

DIM = 32
ARRIVAL_DETECTORS = ("arrivals_centroid_distance", "arrivals_spatial_kl")


def _settings(dsn: str, tmp_path: Path, **extra: object) -> CollectionSettings:
    raw = {"name": "docs", "dsn": dsn, "table": "docs", "sample_size": 1000, "cells": 16, **extra}
    return settings_from_dict({"collections": [raw]}, env={}, base_dir=tmp_path).collections[0]


def _append(dsn: str, vectors: np.ndarray, first_id: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docs (id, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "vector", "text"])
            for i, vector in enumerate(vectors):
                copy.write_row((first_id + i, vector, "v1"))
        conn.execute("ANALYZE docs")


@pytest.mark.slow
def test_a_one_percent_new_topic_is_caught_by_arrivals_in_its_first_cycle(
    pg_db: str, tmp_path: Path, engine
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(21)
    topics = Topics.make(rng, 12, DIM)
    create_vector_table(pg_db, "docs", topics.sample(rng, 50_000)[0], kind=f"vector({DIM})")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE INDEX ON docs (id)")
    settings = _settings(pg_db, tmp_path, arrival_column="id", sample_size=600)
    fitted = capture(settings, engine, rng).fitted
    assert fitted.arrival_column == "id" and fitted.watermark == "49999"

    # A week of ordinary growth: 2,500 rows of the same topics, sampled 600 at a time.
    _append(pg_db, topics.sample(rng, 2500)[0], 50_000)
    alarms = {name: 0 for name in ARRIVAL_DETECTORS}
    for i in range(50):
        report = check_collection(settings, engine, f"quiet-{i}", np.random.default_rng(100 + i))
        results = {r.detector: r for r in report.results}
        for name in ARRIVAL_DETECTORS:
            assert results[name].details["arrived"] == 2500 and results[name].details["read"] == 600
            alarms[name] += results[name].drifted
    assert alarms == dict.fromkeys(ARRIVAL_DETECTORS, 0)

    # A new topic, 1% of the table, arrives with it.
    grown, new_topic = topics.with_new_topic(rng)
    _append(pg_db, grown.sample(rng, 500, new_topic)[0], 60_000)
    report = check_collection(settings, engine, "grown", rng)
    results = {r.detector: r for r in report.results}
    assert results["arrivals_spatial_kl"].drifted, results["arrivals_spatial_kl"]
    assert results["arrivals_spatial_kl"].details["arrived"] == 3000


def test_arrivals_by_created_at_and_none_without_a_column(pg_db: str, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(22)
    topics = Topics.make(rng, 6, DIM)
    create_vector_table(pg_db, "docs", topics.sample(rng, 3000)[0], kind=f"vector({DIM})")
    with psycopg.connect(pg_db, autocommit=True) as conn:  # the original rows were written a day ago
        conn.execute("UPDATE docs SET created_at = now() - interval '1 day'")
    settings = _settings(pg_db, tmp_path, created_at_column="created_at", sample_size=200)
    fitted = capture(settings, engine, rng).fitted
    assert fitted.arrival_column == "created_at" and fitted.watermark is not None
    _append(pg_db, topics.sample(rng, 40)[0], 10_000)  # created_at defaults to now()
    results = {r.detector: r for r in check_collection(settings, engine, "one", rng).results}
    arrived = results["arrivals_centroid_distance"]
    assert arrived.details["arrived"] == 40 and arrived.details["read"] == 40 and arrived.value is not None

    plain = _settings(pg_db, tmp_path, sample_size=200)
    capture(plain, engine, rng)
    results = {r.detector: r for r in check_collection(plain, engine, "two", rng).results}
    assert "arrival_column" in results["arrivals_spatial_kl"].details["insufficient"]
