"""The query-side canary on a real store, a real HTTP embedding service and a real webhook
receiver: the service switches models (or drops its `query: ` prefix) between two cycles and
EmbeddingFunctionChanged pages in the first cycle after, once; the same model served in
float16 stays quiet; an embedder that is down is a note, not a drift or a failed cycle."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from driftwatch.alerting import CHANGED, PUSHED, AlertEngine
from driftwatch.baseline import capture
from driftwatch.config import Settings, settings_from_dict
from driftwatch.cycle import CollectionReport, check_collection
from driftwatch.detect.canary import EmbeddingCanary
from driftwatch.detect.observation import CanaryProbes
from driftwatch.errors import BaselineError, ConfigError

from helpers import EmbeddingService, Receiver, create_vector_table, free_port

DIM = 48
# fmt: off
WORDS = [
    "river", "bank", "loan", "credit", "money", "stream", "water", "fish", "boat", "engine", "motor",
    "car", "wheel", "road", "bridge", "city", "music", "guitar", "song", "piano", "concert", "film", "movie",
    "actor", "stage", "light", "dark", "night", "day", "sun", "moon", "star", "bread", "cheese", "wine",
    "market", "price", "stock", "trade", "court", "judge", "law", "rule", "game", "team", "score", "goal",
    "coach",
]
# fmt: on


class WordModel:
    """A small but real text embedder: every word and word pair is a direction drawn from
    (seed, token); a text is their normalised sum. `seed` stands for the model's weights and
    `prefix` for the instruction the service puts before each text (as e5 models want)."""

    def __init__(self, seed: int, prefix: str = "", half: bool = False, dim: int = DIM) -> None:
        self.seed, self.prefix, self.half, self.dim = seed, prefix, half, dim

    def _direction(self, token: str) -> np.ndarray:
        key = int.from_bytes(hashlib.sha256(f"{self.seed}/{token}".encode()).digest()[:8], "little")
        return np.random.default_rng(key).standard_normal(self.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            words = (self.prefix + text).lower().split()
            tokens = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            vector = np.sum([self._direction(t) for t in tokens], axis=0)
            out.append(vector / np.linalg.norm(vector))
        vectors = np.asarray(out, dtype=np.float32)
        return vectors.astype(np.float16).astype(np.float32) if self.half else vectors


def sentences(rng: np.random.Generator, count: int, length: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=length)) for _ in range(count)]


@pytest.fixture
def service() -> Iterator[EmbeddingService]:
    running = EmbeddingService(WordModel(seed=1, prefix="query: ").embed)
    yield running
    running.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def build(pg_db: str, tmp_path: Path, url: str, receiver: Receiver, canary: dict[str, Any]) -> Settings:
    """Documents embedded by the service's first model, a suite of text queries with known
    answers, and a config with the embedder, the canary and a webhook."""
    rng = np.random.default_rng(4)
    texts = sentences(rng, 1500, 8)
    docs = WordModel(seed=1, prefix="passage: ").embed(texts)
    create_vector_table(pg_db, "docs", docs, kind=f"vector({DIM})", texts=texts)
    queries = [" ".join(t.split()[:4]) for t in texts[:80]]
    query_vectors = WordModel(seed=1, prefix="query: ").embed(queries)
    truth = np.argsort(-(query_vectors @ docs.T), axis=1)[:, :10]
    with (tmp_path / "suite.jsonl").open("w") as f:
        for i, (q, rel) in enumerate(zip(queries, truth, strict=True)):
            f.write(json.dumps({"query_id": f"q{i}", "text": q, "relevant_ids": rel.tolist()}) + "\n")
    raw = {
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "server": {"port": free_port()},
        "collections": [
            {
                "name": "docs",
                "dsn": pg_db,
                "table": "docs",
                "model_version_column": "model_version",
                "sample_size": 300,
                "null_replicates": 100,
                "cells": 8,
                "reference_suite": {"path": "suite.jsonl", "k": 10},
                "embedder": {"kind": "http", "url": url, "timeout": "10s"},
                "canary": canary,
            }
        ],
        "alerts": {
            "repeat_interval": "1h",
            "rules": [{"detector": "any", "severity": "warning", "for_cycles": 1}],
            "notifiers": [{"kind": "webhook", "url": receiver.url + "/hook"}],
        },
    }
    return settings_from_dict(raw, env={}, base_dir=tmp_path)


def cycle(settings: Settings, engine: Engine, alerts: AlertEngine, name: str) -> CollectionReport:
    report = check_collection(settings.collections[0], engine, name, np.random.default_rng(len(name)))
    report.alerts = [v.to_dict() for v in alerts.evaluate(report)]
    alerts.deliver("docs", 900)
    return report


def pages(receiver: Receiver, name: str) -> list[dict[str, Any]]:
    sent = [a for body in receiver.bodies("/hook") for a in body["alerts"]]  # type: ignore[index]
    return [a for a in sent if a["labels"]["alertname"] == name]


def canary_of(report: CollectionReport) -> Any:
    return next(r for r in report.results if r.detector == "embedding_canary")


def test_a_model_switch_pages_once_in_the_first_cycle_after_it(
    pg_db: str, tmp_path: Path, engine: Engine, service: EmbeddingService, receiver: Receiver
) -> None:
    settings = build(pg_db, tmp_path, service.url, receiver, canary={})  # the suite's texts, up to 64
    captured = capture(settings.collections[0], engine, np.random.default_rng(0))
    assert captured.fitted.states["embedding_canary"].vectors.shape == (64, DIM)
    alerts = AlertEngine(settings, engine)

    steady = cycle(settings, engine, alerts, "steady")
    result = canary_of(steady)
    assert result.value == 0.0 and not result.drifted and result.details["min_cosine"] > 0.99999
    assert pages(receiver, CHANGED) == []

    service.embed = WordModel(seed=2, prefix="query: ").embed  # the service is redeployed with another model
    switched = cycle(settings, engine, alerts, "switched")
    result = canary_of(switched)
    assert switched.status == "drift" and result.drifted and result.details["moved"] == 64
    assert result.details["min_cosine"] < 0.9 and len(result.details["worst_probes"]) == 3
    firing = [a for a in switched.alerts if a["state"] == "firing"]
    assert [(a["alertname"], a["detector"]) for a in firing] == [(CHANGED, "embedding_canary")]
    (page,) = pages(receiver, CHANGED)
    assert page["labels"]["severity"] == "critical" and page["status"] == "firing"
    assert "64 of 64 canary probes moved" in page["annotations"]["summary"]
    assert "driftwatch baseline capture --collection docs" in page["annotations"]["description"]

    for name in ("later-1", "later-2", "later-3"):  # the push goes on: no second page
        later = cycle(settings, engine, alerts, name)
        assert canary_of(later).drifted
    assert len(pages(receiver, CHANGED)) == 1
    assert pages(receiver, PUSHED) == [] and pages(receiver, "EmbeddingDrift") == []  # held by the push

    capture(settings.collections[0], engine, np.random.default_rng(1))  # the new model's baseline
    after = cycle(settings, engine, alerts, "recaptured")
    assert canary_of(after).value == 0.0
    assert [a["status"] for a in pages(receiver, CHANGED)] == ["firing", "resolved"]


def test_a_dropped_query_prefix_fires_and_float16_serving_does_not(
    pg_db: str, tmp_path: Path, engine: Engine, service: EmbeddingService, receiver: Receiver
) -> None:
    probes = sentences(np.random.default_rng(8), 24, 5)
    settings = build(pg_db, tmp_path, service.url, receiver, canary={"texts": probes})
    capture(settings.collections[0], engine, np.random.default_rng(0))
    alerts = AlertEngine(settings, engine)

    service.embed = WordModel(seed=1, prefix="query: ", half=True).embed  # same model, float16 weights
    quiet = canary_of(cycle(settings, engine, alerts, "float16"))
    assert quiet.value == 0.0 and quiet.details["moved"] == 0
    assert 0.9999 < quiet.details["min_cosine"] < 1.0  # round-off is there, and far above the bound
    assert pages(receiver, CHANGED) == []

    service.embed = WordModel(seed=1, prefix="").embed  # the redeploy forgot the `query: ` prefix
    dropped = cycle(settings, engine, alerts, "no-prefix")
    result = canary_of(dropped)
    assert result.drifted and result.details["moved"] == 24
    assert 0.5 < result.details["median_cosine"] < 0.99  # the same model, nearby but not the same
    (page,) = pages(receiver, CHANGED)
    assert "24 of 24 canary probes moved" in page["annotations"]["summary"]
    cycle(settings, engine, alerts, "no-prefix-again")
    assert len(pages(receiver, CHANGED)) == 1


def test_an_unreachable_embedder_is_a_note_not_a_drift(
    pg_db: str, tmp_path: Path, engine: Engine, service: EmbeddingService, receiver: Receiver
) -> None:
    (tmp_path / "probes.txt").write_text("river bank loan\n\nmusic piano concert\ncourt judge law rule\n")
    settings = build(pg_db, tmp_path, service.url, receiver, canary={"path": "probes.txt"})
    captured = capture(settings.collections[0], engine, np.random.default_rng(0))
    assert captured.fitted.states["embedding_canary"].vectors.shape == (3, DIM)
    alerts = AlertEngine(settings, engine)
    service.close()

    report = cycle(settings, engine, alerts, "embedder-down")
    assert report.status != "failed", report.error
    results = {r.detector: r for r in report.results}
    why = results["embedding_canary"].details["insufficient"]
    assert results["embedding_canary"].value is None and "unreachable" in why and "127.0.0.1" in why
    assert "unreachable" in results["recall_at_k"].details["insufficient"]
    assert any("canary probes not embedded" in n for n in report.notes)
    assert any("reference suite not run" in n for n in report.notes)
    assert report.to_json()["notes"] == report.notes
    assert results["centroid_distance"].value is not None  # the rest of the cycle ran
    assert pages(receiver, CHANGED) == []
    with pytest.raises(BaselineError, match="unreachable"):  # but a baseline is never captured without them
        capture(settings.collections[0], engine, np.random.default_rng(2))


def test_a_model_of_another_dimension_fires_and_skips_the_suite_with_a_note(
    pg_db: str, tmp_path: Path, engine: Engine, service: EmbeddingService, receiver: Receiver
) -> None:
    settings = build(
        pg_db, tmp_path, service.url, receiver, canary={"texts": ["river bank", "piano concert"]}
    )
    capture(settings.collections[0], engine, np.random.default_rng(0))
    alerts = AlertEngine(settings, engine)
    service.embed = WordModel(seed=3, prefix="query: ", dim=2 * DIM).embed

    report = cycle(settings, engine, alerts, "wider")
    assert report.status == "drift", report.error  # not a failed cycle: the suite cannot run, it says why
    results = {r.detector: r for r in report.results}
    canary = results["embedding_canary"]
    assert canary.value == 1.0 and canary.details["dimension"] == {"baseline": DIM, "now": 2 * DIM}
    assert f"the embedder returns {2 * DIM}-d vectors" in results["recall_at_k"].details["insufficient"]
    assert any(f"baseline's rows are {DIM}-d" in note for note in report.notes)
    (page,) = pages(receiver, CHANGED)
    assert (
        f"the embedder now returns {2 * DIM}-d vectors, {DIM}-d at baseline" in page["annotations"]["summary"]
    )


def test_canary_config_errors_name_the_key(tmp_path: Path) -> None:
    base = {"name": "docs", "dsn": "postgresql://x@localhost/app", "table": "docs"}
    embedder = {"kind": "http", "url": "http://127.0.0.1:1/embed"}
    cases = [
        ({**base, "canary": {}}, "canary: needs [collections.embedder]"),
        ({**base, "embedder": embedder, "canary": {"texts": ["a"], "path": "p.txt"}}, "either texts or path"),
        ({**base, "embedder": embedder, "canary": {"texts": []}}, "texts must not be empty"),
        ({**base, "embedder": embedder, "canary": {"min_cosine": 1.0}}, "collections[0].canary.min_cosine"),
    ]
    for collection, message in cases:
        with pytest.raises(ConfigError) as error:
            settings_from_dict({"collections": [collection]}, env={})
        assert message in str(error.value), str(error.value)
    rule = {"collections": [base], "alerts": {"rules": [{"detector": "embedding_canary"}]}}
    with pytest.raises(ConfigError, match="embedding_canary needs no rule"):
        settings_from_dict(rule, env={})


def test_the_bound_sits_between_round_off_and_real_changes() -> None:
    """Pure: bfloat16 rounding of every component (the loosest serving precision) stays inside
    the bound; a normalisation change keeps every cosine but moves every norm; another
    dimension moves everything."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((64, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"probe {i}" for i in range(64)]
    canary = EmbeddingCanary.fit(CanaryProbes(texts, vectors), 0.9999)

    bits = vectors.view(np.uint32) + 0x8000  # round to nearest bfloat16: keep the top 16 bits
    bf16 = (bits & 0xFFFF0000).view(np.float32)
    assert canary.score(CanaryProbes(texts, bf16)).details["moved"] == 0
    assert canary.score(CanaryProbes(texts, vectors * 3.0)).details["moved"] == 64  # unnormalised
    wider = canary.score(CanaryProbes(texts, np.hstack([vectors, vectors])))
    assert wider.value == 1.0 and wider.details["dimension"] == {"baseline": 384, "now": 768}
    renamed = canary.score(CanaryProbes([f"other {i}" for i in range(64)], vectors))
    assert renamed.value is None and "capture a new baseline" in renamed.details["insufficient"]
    state = EmbeddingCanary.from_state(*canary.state())
    assert state.score(CanaryProbes(texts, vectors)).value == 0.0 and state.digests == canary.digests
