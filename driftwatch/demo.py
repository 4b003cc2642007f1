"""`driftwatch demo`: why driftwatch exists, in under a minute, with nothing but the package.

An embedded PostgreSQL + pgvector holds a topic-structured corpus with an HNSW index; an
application searches it and logs what it showed, what users clicked (a position-based click
model), their thumbs and their sessions (a failed query is often asked again), a minute
late as buffering applications do; its embedding model is a small local HTTP service, so
the reference suite is embedded "live" exactly as with a real model server. Then four
steps, each checked by the real monitor (sampler, detectors, alert engine, feedback miner),
two cycles a step:

1. steady state: users keep searching, nothing else changes. Nothing should fire; the
   feedback rates (clicks, thumbs down, reformulations) are measured against the baseline's.
2. corpus growth: a new topic arrives. centroid_distance and spatial_kl move.
3. a model push: the application's query model is replaced; the documents are not
   re-embedded. The canary (probe texts through the embedder) pages first, in the cycle
   before any query is logged on v2; then score_psi, recall_at_k and model_version fire;
   users click less and ask again (click_rate, reformulation_rate); still one page reaches
   the log, and the new version's queries are not mined while the push is in progress.
4. the Drift-Adapter: a sample of documents re-embedded under the new model, a map fitted
   on it, applied to the queries. Recall comes back.

Only the users and the embedding model are simulated; everything driftwatch does is real.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from prometheus_client import CollectorRegistry

from driftwatch import store
from driftwatch.adapter import Adapter
from driftwatch.adapter_fit import fit_and_report
from driftwatch.alerting import AlertEngine
from driftwatch.baseline import capture
from driftwatch.config import Settings, settings_from_dict
from driftwatch.cycle import CollectionReport
from driftwatch.detect.registry import REGISTRY
from driftwatch.metrics import Metrics
from driftwatch.monitor import Monitor
from driftwatch.pg.querylog import ddl
from driftwatch.synthetic import Topics, exact_neighbours, rotation, unit
from driftwatch.synthetic_users import LOG_COLUMNS, Users, run_session

log = logging.getLogger(__name__)
Say = Callable[[str], None]

STEPS = {
    "steady": (
        "steady state: users search, the corpus stays as it is",
        "Nothing to do: every detector is under its calibrated threshold, the feedback rates included.",
    ),
    "growth": (
        "corpus growth: a new topic arrives",
        "New content: the arrivals_* detectors see it in the new rows first, spatial_kl's top cell and "
        "new_territory's examples say where. Add suite queries about it and watch "
        "recall; once the growth is wanted, `driftwatch baseline capture` makes it the new normal.",
    ),
    "push": (
        "model push: queries on model v2, documents still v1",
        "Queries and documents live in different spaces: users click less and reformulate more. Re-embed "
        "the store, and meanwhile `driftwatch adapter fit` maps v2 queries into the v1 index.",
    ),
    "adapter": (
        "Drift-Adapter fitted and applied to the queries",
        "Most of the recall is back while the store is re-embedded (a new model never returns quite "
        "the old top-10); when re-embedding is done, capture a v2 baseline and retire the adapter.",
    ),
}


@dataclass(frozen=True)
class Plan:
    docs: int = 50_000
    dim: int = 384
    topics: int = 24
    queries_per_cycle: int = 120
    suite: int = 100
    seed: int = 7

    @property
    def sample_size(self) -> int:
        return max(500, min(4000, self.docs // 10))


class ModelServer:
    """The application's embedding model behind driftwatch's `http` embedder protocol.

    Texts map to their true (v1) meaning; `version = "v2"` swaps in another model (a rotation
    into a wholly new space, plus noise); `adapter` is what the application applies to its
    query vectors after `adapter fit`.
    """

    def __init__(self, dim: int, rng: np.random.Generator) -> None:
        self.meaning: dict[str, np.ndarray] = {}
        self.version = "v1"
        self.adapter: Adapter | None = None
        self._turn = rotation(rng, dim, np.pi / 2)
        self._rng = np.random.default_rng(rng.integers(1 << 31))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
                vectors = server.embed(np.stack([server.meaning_of(t) for t in texts]))
                body = json.dumps({"embeddings": vectors.tolist()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/embed"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def meaning_of(self, text: str) -> np.ndarray:
        """A reformulation ("question 3 (again 1)", synthetic_users) means what its first
        wording meant."""
        return self.meaning[text.split(" (again ")[0]]

    def model_v2(self, vectors: np.ndarray) -> np.ndarray:
        noise = self._rng.standard_normal(vectors.shape) * (0.05 / np.sqrt(vectors.shape[1]))
        return unit(vectors @ self._turn.T + noise)

    def embed(self, meaning: np.ndarray) -> np.ndarray:
        vectors = meaning if self.version == "v1" else self.model_v2(meaning)
        return self.adapter.apply(vectors) if self.adapter is not None else vectors

    @property
    def label(self) -> str:
        return self.version

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@dataclass
class DemoCycle:
    step: str
    detectors: dict[str, dict[str, Any]]
    alerts: list[dict[str, Any]]
    sample_size: int | None


@dataclass
class DemoResult:
    cycles: list[DemoCycle] = field(default_factory=list)
    adapter: dict[str, Any] | None = None
    candidates: int = 0
    candidate_sources: dict[str, int] = field(default_factory=dict)  # skip_above, thumbs_down, follow_up
    reembedded_recall: float | None = None  # the suite on model v2 against a fully re-embedded store
    model: ModelServer | None = None  # still serving, when asked to keep it
    seconds: float = 0.0
    settings: Settings | None = None

    def step(self, name: str) -> list[DemoCycle]:
        return [c for c in self.cycles if c.step == name]

    def recall(self, name: str) -> float | None:
        """The suite's recall@K through the live index in the step's last cycle."""
        cycles = self.step(name)
        details = cycles[-1].detectors.get("recall_at_k", {}).get("details", {}) if cycles else {}
        return details.get("recall")

    def new_alerts(self, name: str) -> list[dict[str, Any]]:
        """Alert transitions first seen in this step (a firing alert is listed once)."""
        seen = {(a["fingerprint"], a["state"]) for c in self.cycles[: self._first(name)] for a in c.alerts}
        out = []
        for cycle in self.step(name):
            for alert in cycle.alerts:
                if (alert["fingerprint"], alert["state"]) not in seen:
                    seen.add((alert["fingerprint"], alert["state"]))
                    out.append(alert)
        return out

    def _first(self, name: str) -> int:
        return next((i for i, c in enumerate(self.cycles) if c.step == name), len(self.cycles))

    def to_json(self) -> dict[str, Any]:
        steps = []
        for name, (title, advice) in STEPS.items():
            cycles = self.step(name)
            if not cycles:
                continue
            steps.append(
                {
                    "step": name,
                    "title": title,
                    "detectors": cycles[-1].detectors,
                    "drifted": sorted({d for c in cycles for d, r in c.detectors.items() if r["drifted"]}),
                    "alerts": self.new_alerts(name),
                    "cycles": [c.detectors for c in cycles],
                    "advice": advice,
                }
            )
        return {
            "steps": steps,
            "adapter": self.adapter,
            "reembedded_recall": self.reembedded_recall,
            "suite_recall": {name: self.recall(name) for name in STEPS},
            "finetune_candidates": self.candidates,
            "finetune_candidate_sources": self.candidate_sources,
            "seconds": round(self.seconds, 1),
        }


class Application:
    """What the monitored application does: search through the index and log each query with
    its session, what users clicked, and their thumbs (the simulated users of
    `synthetic_users`: position-biased clicks, noisy thumbs, reformulations of failed queries).
    Users ask about a pool of intents, so the same question comes from several users."""

    INTENTS = 200
    USERS = Users(rate_share=0.5, pause=(1.0, 5.0))

    def __init__(
        self, dsn: str, topics: Topics, docs: np.ndarray, model: ModelServer, rng: np.random.Generator
    ):
        self.dsn, self.topics, self.docs, self.model, self.rng = dsn, topics, docs, model, rng
        self.asked = 0
        self.intents, _ = topics.sample(rng, self.INTENTS)
        self.topic_intents: dict[int, np.ndarray] = {}

    def add_documents(self, vectors: np.ndarray, topic_names: np.ndarray) -> None:
        start = len(self.docs)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            register_vector(conn)
            with conn.cursor().copy(
                "COPY docs (id, embedding, model_version, content) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "vector", "text", "text"])
                for i, (vector, topic) in enumerate(zip(vectors, topic_names, strict=True)):
                    copy.write_row((start + i, vector, "v1", f"document {start + i} about topic {topic}"))
            conn.execute("ANALYZE docs")
        self.docs = np.vstack([self.docs, vectors])

    def _intent(self, topic: int | None) -> tuple[str, np.ndarray]:
        if topic is None:
            j = int(self.rng.integers(self.INTENTS))
            self.model.meaning[f"question {j}"] = self.intents[j]  # `adapter fit` embeds logged texts
            return f"question {j}", self.intents[j]
        if topic not in self.topic_intents:
            self.topic_intents[topic], _ = self.topics.sample(self.rng, self.INTENTS // 4, topic)
        j = int(self.rng.integers(len(self.topic_intents[topic])))
        self.model.meaning[f"question {j} on topic {topic}"] = self.topic_intents[topic][j]
        return f"question {j} on topic {topic}", self.topic_intents[topic][j]

    def search(self, count: int, topic: int | None = None, topic_share: float = 0.0) -> None:
        """`count` users search (a share of them about `topic`), each a session whose queries
        are logged with ranked results, scores, clicks, thumbs and the session id. The log is
        written a minute after the fact, as a buffering application does: the monitor still
        counts every row once (late_arrival)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            register_vector(conn)

            def search(vector: np.ndarray) -> tuple[list[str], list[float]]:
                vector = np.asarray(vector, dtype=np.float32)
                hits = conn.execute(
                    "SELECT id::text, 1 - (embedding <=> %s) FROM docs ORDER BY embedding <=> %s LIMIT 10",
                    (vector, vector),
                ).fetchall()
                return [h[0] for h in hits], [float(h[1]) for h in hits]

            start = datetime.now(UTC) - timedelta(seconds=90)
            about = [
                topic if topic is not None and self.rng.random() < topic_share else None for _ in range(count)
            ]
            texts, meanings = zip(*(self._intent(a) for a in about), strict=True)
            truth = exact_neighbours(np.stack(meanings), self.docs, 3)  # one pass over the corpus
            rows = []
            for i, (text, meaning) in enumerate(zip(texts, meanings, strict=True)):
                relevant = {str(j) for j in truth[i]}
                self.asked += 1
                session = run_session(
                    self.rng, self.USERS, search, meaning, relevant,
                    name=f"u{self.asked}", text=text, noise=0.3,
                    start=start + timedelta(milliseconds=100 * i), model_version=self.model.label,
                    embed=lambda v: self.model.embed(v[None, :])[0],
                )  # fmt: skip
                rows += [row.as_tuple() for row in session.rows]
            with conn.cursor().copy(f"COPY query_log ({LOG_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def _reembedded_recall(model: ModelServer, meaning: np.ndarray, docs: np.ndarray, truth: np.ndarray) -> float:
    """Recall@10 of the suite if every document were re-embedded with v2: the ceiling an adapter
    aims at (exact search; the demo knows each document's v2 vector)."""
    found = exact_neighbours(model.model_v2(meaning), model.model_v2(docs), truth.shape[1])
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def _config(workdir: Path, dsn: str, plan: Plan, model_url: str) -> Settings:
    raw = {
        "store": {"url": f"sqlite:///{workdir / 'driftwatch.db'}"},
        "collections": [
            {
                "name": "docs",
                "dsn": dsn,
                "table": "docs",
                "model_version_column": "model_version",
                "created_at_column": "created_at",  # new rows are tested on their own: arrivals_*
                "text_column": "content",
                "sample_size": plan.sample_size,
                "null_replicates": 200,
                "cells": 16,
                "interval": "30s",
                "false_alarm_rate": 0.001,
                "query_log": {
                    "table": "query_log",
                    "window": "1h",
                    "click_delay": "0s",
                    "follow_up_window": "10s",
                },
                "reference_suite": {"path": str(workdir / "suite.jsonl"), "k": 10},
                "embedder": {"kind": "http", "url": model_url, "timeout": "30s"},
                "canary": {},  # the suite's texts are the probes
            }
        ],
        "alerts": {"rules": [{"detector": "any", "severity": "warning", "for_cycles": 2}]},
    }
    return settings_from_dict(raw, env={})


def _cycle(step: str, report: CollectionReport) -> DemoCycle:
    detectors = {
        r.detector: {
            "value": r.value, "threshold": r.threshold, "drifted": r.drifted, "p_value": r.p_value,
            "details": r.details,
        }
        for r in report.results
    }  # fmt: skip
    if report.status == "failed":
        raise RuntimeError(f"demo cycle failed: {report.error}")
    return DemoCycle(step, detectors, list(report.alerts), report.sample_size)


def run_demo(
    workdir: Path,
    pg_dsn_for: Callable[[str], str],
    plan: Plan,
    say: Say,
    on_step: Callable[[str, DemoResult], None] | None = None,
    keep_model: bool = False,
) -> DemoResult:
    """The whole walk-through on a running embedded server (`pg_dsn_for(db)` creates a database).

    With `keep_model`, the model service stays up (`result.model`) for a daemon to go on with.
    """
    started = time.monotonic()
    rng = np.random.default_rng(plan.seed)
    result = DemoResult()
    dsn = pg_dsn_for("app")
    say(f"building a corpus of {plan.docs:,} {plan.dim}-d vectors in {plan.topics} topics")
    topics = Topics.make(rng, plan.topics, plan.dim)
    docs, labels = topics.sample(rng, plan.docs)
    model = ModelServer(plan.dim, rng)
    try:
        app = _build_store(dsn, plan, topics, docs, labels, model, rng, say)
        say(f"writing a reference suite of {plan.suite} queries with known answers")
        suite_meaning, truth = _write_suite(workdir / "suite.jsonl", topics, app, model, plan.suite, rng)
        settings = _config(workdir, dsn, plan, model.url)
        result.settings = settings
        collection = settings.collections[0]
        engine = store.create_store_engine(settings.store.url)
        store.upgrade(engine)
        say("users search for a while; capturing the baseline")
        app.search(2 * plan.queries_per_cycle)
        captured = capture(collection, engine, rng, progress=say)
        say(
            f"baseline {captured.baseline_id}: {captured.reference_rows} reference rows, "
            "thresholds calibrated"
        )
        registry = CollectorRegistry()
        monitor = Monitor(settings, engine, Metrics(registry), AlertEngine(settings, engine))

        def check(step: str) -> None:
            report = monitor.run("docs", 30.0, rng=rng)
            assert report is not None
            result.cycles.append(_cycle(step, report))

        def two_cycles(step: str, **search: Any) -> None:
            for _ in range(2):
                app.search(plan.queries_per_cycle, **search)
                check(step)
            if on_step:
                on_step(step, result)

        say(f"step 1/4: {STEPS['steady'][0]}")
        # No new documents: even same-topic ones displace some of the suite's exact top-10.
        two_cycles("steady")

        say(f"step 2/4: {STEPS['growth'][0]}")
        grown, new_topic = topics.with_new_topic(rng)
        app.topics = grown
        fresh, fresh_labels = grown.sample(rng, plan.docs // 8, new_topic)
        app.add_documents(fresh, fresh_labels)
        two_cycles("growth", topic=new_topic, topic_share=0.3)
        say("the growth is wanted: `driftwatch baseline capture` makes it the new normal")
        capture(collection, engine, rng)

        say(f"step 3/4: {STEPS['push'][0]}")
        model.version = "v2"
        check("push")  # the model service is redeployed; no query on v2 is logged yet: the canary sees it
        two_cycles("push")

        say(f"step 4/4: {STEPS['adapter'][0]}")
        reembedded = _reembed_side_table(dsn, app, model, rng)
        report = fit_and_report(
            collection, engine, "v1", "v2", side_table="docs_v2", max_pairs=len(reembedded),
            output=workdir / "adapter-docs-v1-to-v2", rng=rng, progress=say,
        )  # fmt: skip
        result.adapter = report.to_dict()
        result.reembedded_recall = _reembedded_recall(model, suite_meaning, app.docs, truth)
        model.adapter = report.adapter
        two_cycles("adapter")
        from driftwatch.store import repository

        result.candidates = repository.candidate_counts(engine).get("docs", 0)
        result.candidate_sources = repository.candidate_sources(engine, "docs")
        engine.dispose()
    finally:
        if keep_model:
            result.model = model
        else:
            model.close()
    result.seconds = time.monotonic() - started
    return result


def _build_store(
    dsn: str,
    plan: Plan,
    topics: Topics,
    docs: np.ndarray,
    labels: np.ndarray,
    model: ModelServer,
    rng: np.random.Generator,
    say: Say,
) -> Application:
    """The application's tables (documents, query log, a side table for re-embedding), its
    documents, and its HNSW index."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE docs (id bigint PRIMARY KEY, embedding vector({plan.dim}), "
            "model_version text, content text, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(ddl("query_log", plan.dim, reader=None))
        conn.execute("CREATE TABLE docs_v2 (LIKE docs INCLUDING ALL)")
    app = Application(dsn, topics, np.empty((0, plan.dim), np.float32), model, rng)
    app.add_documents(docs, labels)
    say("building the HNSW index (the application's ANN index)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        conn.execute(
            "CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 12, ef_construction = 32)"
        )
    return app


def _write_suite(
    path: Path, topics: Topics, app: Application, model: ModelServer, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A reference suite with known answers (exact neighbours of each query's meaning)."""
    meanings, _ = topics.sample(rng, size)
    truth = exact_neighbours(meanings, app.docs, 10)
    with path.open("w") as f:
        for i, (meaning, relevant) in enumerate(zip(meanings, truth, strict=True)):
            model.meaning[f"suite query {i}"] = meaning
            line = {
                "query_id": f"s{i}",
                "text": f"suite query {i}",
                "relevant_ids": [str(r) for r in relevant],
            }
            f.write(json.dumps(line) + "\n")
    return meanings, truth


def _reembed_side_table(
    dsn: str, app: Application, model: ModelServer, rng: np.random.Generator
) -> np.ndarray:
    """A re-index under way: some documents' v2 vectors in the side table (the adapter's pairs)."""
    reembedded = rng.choice(len(app.docs), size=min(3000, len(app.docs) // 4), replace=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        copying = "COPY docs_v2 (id, embedding, model_version, content) FROM STDIN (FORMAT BINARY)"
        with conn.cursor().copy(copying) as copy:
            copy.set_types(["int8", "vector", "text", "text"])
            for i, vector in zip(reembedded, model.model_v2(app.docs[reembedded]), strict=True):
                copy.write_row((int(i), vector, "v2", f"document {i}"))
    return reembedded


SHORT = {"steady": "steady state", "growth": "new topic", "push": "model push", "adapter": "adapter applied"}


def plot(result: DemoResult, path: Path) -> Path:
    """Each detector's value per cycle against its threshold, with the steps marked."""
    import matplotlib  # an optional extra: driftwatch[plot]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d in REGISTRY if d.plotted]
    growth = [i for i, c in enumerate(result.cycles) if c.step == "growth"]
    recaptured = growth[-1] + 1.5 if growth else None
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.0 * len(shown)), sharex=True)
    x = np.arange(1, len(result.cycles) + 1)
    colours = {"steady": "#e8f4e8", "growth": "#fff3d6", "push": "#fde2e2", "adapter": "#e3ecfb"}
    for ax, detector in zip(axes, shown, strict=True):
        name = detector.name
        values = [c.detectors.get(name, {}).get("value") for c in result.cycles]
        limits = [c.detectors.get(name, {}).get("threshold") for c in result.cycles]
        drifted = [bool(c.detectors.get(name, {}).get("drifted")) for c in result.cycles]
        v = np.array([np.nan if a is None else a for a in values], dtype=float)
        t = np.array([np.nan if a is None else a for a in limits], dtype=float)
        for i, cycle in enumerate(result.cycles):
            ax.axvspan(i + 0.5, i + 1.5, color=colours.get(cycle.step, "white"), lw=0)
        ax.plot(x, v, "-", color="#1f4e79", lw=1.5)
        ax.scatter(x, v, c=["#c0392b" if d else "#1f4e79" for d in drifted], zorder=3, s=28)
        ax.step(x, t, where="mid", ls="--", color="#555555", lw=1)
        ax.set_ylabel(detector.label, fontsize=8)
        if recaptured is not None:
            ax.axvline(recaptured, color="#555555", lw=0.8, ls=":")
        ax.tick_params(labelsize=7)
    starts = {}
    for i, cycle in enumerate(result.cycles):
        starts.setdefault(cycle.step, i + 1)
    for step, at in starts.items():
        axes[0].annotate(
            SHORT[step],
            (at + 0.5, 1.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=8,
        )
    axes[-1].set_xlabel(
        "cycle (red dot: over threshold; dashed: calibrated threshold; dotted: baseline re-captured)",
        fontsize=8,
    )
    fig.suptitle("driftwatch demo: each detector's signature per cause", fontsize=10, y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["STEPS", "DemoResult", "ModelServer", "Plan", "plot", "run_demo"]
