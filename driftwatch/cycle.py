"""One cycle: observe each collection, score it against its baseline, store the verdicts.

A collection that fails (store unreachable, no baseline, bad suite) is recorded as a
failed cycle with its cause and no metric points; the other collections go on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from driftwatch.baseline import Fitted
from driftwatch.config import DETECTORS, CollectionSettings, Settings
from driftwatch.detect.checks import model_version_result
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.observation import Observation, VectorSample
from driftwatch.errors import BaselineError, DriftwatchError, StoreError
from driftwatch.observe import observe, suite_queries
from driftwatch.pg.suite import overlap_hits, recall_hits, rotating_subset
from driftwatch.secrets import known_passwords, scrub
from driftwatch.store import repository
from driftwatch.store.repository import PointRecord

log = logging.getLogger(__name__)


@dataclass
class CollectionReport:
    name: str
    status: str  # ok | drift | failed
    started_at: datetime
    seconds: float
    sample_size: int | None = None
    model_versions: dict[str, Any] = field(default_factory=dict)
    results: list[DriftResult] = field(default_factory=list)
    error: str | None = None
    baseline_id: int | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # set by the alert engine
    unsaved: str | None = None  # why driftwatch's own store could not record it (yet)

    @property
    def finished_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.seconds)

    @property
    def drifted(self) -> list[str]:
        return [r.detector for r in self.results if r.drifted]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "sample_size": self.sample_size,
            "model_versions": self.model_versions,
            "detectors": {r.detector: r.to_dict() for r in self.results},
            "alerts": self.alerts,
            "baseline_id": self.baseline_id,
            "duration_seconds": round(self.seconds, 3),
        }
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class CycleReport:
    cycle_id: str
    started_at: datetime
    collections: dict[str, CollectionReport]

    @property
    def exit_code(self) -> int:
        """0 = no drift, 1 = drift, 2 = some collection could not be checked."""
        if any(c.status == "failed" for c in self.collections.values()):
            return 2
        return 1 if any(c.status == "drift" for c in self.collections.values()) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "started_at": self.started_at.isoformat(),
            "collections": {name: c.to_json() for name, c in self.collections.items()},
        }


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_cycle(
    settings: Settings, engine: Engine, names: list[str] | None = None, rng: np.random.Generator | None = None
) -> CycleReport:
    """Check every (or the named) collection once; one cycle id groups them."""
    cycle_id = str(uuid.uuid4())
    started = datetime.now(UTC)
    chosen = [settings.collection(n) for n in names] if names else settings.collections
    reports = {c.name: check_collection(c, engine, cycle_id, rng) for c in chosen}
    return CycleReport(cycle_id=cycle_id, started_at=started, collections=reports)


def check_collection(
    settings: CollectionSettings, engine: Engine, cycle_id: str, rng: np.random.Generator | None = None
) -> CollectionReport:
    rng = rng or np.random.default_rng()
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    baseline_id = None
    try:
        baseline = repository.active_baseline(engine, settings.name)
        if baseline is None:
            capture = f"driftwatch baseline capture --collection {settings.name}"
            raise BaselineError(f"{settings.name}: no baseline yet; run `{capture}`")
        baseline_id = baseline.id
        fitted = Fitted.unpack(baseline.arrays, baseline.summary)
        observed = _observe(settings, engine, rng, fitted, baseline.sample.shape[1], started_at)
        results, clean_rows = score(settings, fitted, observed)
    except StoreError:
        raise  # nowhere to record it: the caller reports the store as down
    except DriftwatchError as exc:
        report = CollectionReport(
            settings.name,
            "failed",
            started_at,
            time.monotonic() - clock,
            error=scrub(str(exc), known_passwords(settings.urls())),  # it is stored: no secrets
            baseline_id=baseline_id,
        )
        log.error("cycle %s for %s failed: %s", cycle_id, settings.name, exc)
        _store_or_mark(engine, cycle_id, report)
        return report
    sample = observed.sample
    versions = {_key(v): c for v, c in sorted(sample.versions.items(), key=lambda vc: -vc[1])}
    model_versions = {"dominant": next(iter(versions), None), "counts": versions}
    status = "drift" if any(r.drifted for r in results) else "ok"
    report = CollectionReport(
        name=settings.name,
        status=status,
        started_at=started_at,
        seconds=time.monotonic() - clock,
        sample_size=clean_rows,
        model_versions=model_versions,
        results=results,
        baseline_id=baseline_id,
    )
    _store_or_mark(engine, cycle_id, report)
    return report


def _store_or_mark(engine: Engine, cycle_id: str, report: CollectionReport) -> None:
    """The store went down during the cycle: the computed report is kept, marked unsaved, for
    the caller to buffer and write later."""
    try:
        _store(engine, cycle_id, report)
    except StoreError as exc:
        report.unsaved = str(exc)


def failed_report(name: str, started_at: datetime, seconds: float, error: str) -> CollectionReport:
    return CollectionReport(name, "failed", started_at, seconds, error=error)


def record(engine: Engine, cycle_id: str, report: CollectionReport) -> None:
    """Store a report the cycle itself could not record (an unexpected error, or the store was
    down); it keeps its own start and finish times."""
    _store(engine, cycle_id, report)


def _key(version: str | None) -> str:
    return "null" if version is None else version


def _observe(
    settings: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator,
    fitted: Fitted,
    dim: int,
    now: datetime,
) -> Observation:
    since = repository.last_cycle_start(engine, settings.name)
    window = None
    if settings.query_log is not None:
        oldest = now - timedelta(seconds=settings.query_log.window)
        window = (max(since, oldest) if since else oldest, now)
    suite = suite_queries(settings, engine) if fitted.recall is not None else []
    runs, last_run = repository.detector_runs(engine, settings.name, "index_health")
    due = last_run is None or (now - last_run).total_seconds() >= settings.index_health_interval
    exact_rows = rotating_subset(len(suite), settings.index_health_queries, runs) if due else np.empty(0, int)
    return observe(
        settings,
        engine,
        rng,
        sample_size=settings.sample_size,
        expected_dim=dim,
        with_ids=False,
        window=window,
        suite=suite,
        exact_rows=exact_rows,
        sentinel_ids=fitted.sentinel_ids,
    )


def score(
    settings: CollectionSettings, fitted: Fitted, observed: Observation
) -> tuple[list[DriftResult], int]:
    """Every detector's verdict on one observation, in DESIGN.md's order, and how many
    sampled rows were clean enough for the statistics."""
    alpha = settings.false_alarm_rate
    fixed = settings.thresholds.get
    sample = observed.sample
    clean, sanity = fitted.sanity.check(_with_set_aside(sample), alpha, fixed("vector_sanity"))
    results = {
        "vector_sanity": sanity,
        "centroid_distance": fitted.centroid.score(clean, alpha, fixed("centroid_distance")),
        "spatial_kl": fitted.spatial.score(clean, alpha, fixed("spatial_kl")),
        "score_psi": _psi(fitted, observed, alpha, fixed("score_psi")),
    }
    suite = observed.suite
    if fitted.recall is not None and suite is not None:
        hits, trials = recall_hits(suite.ann.ids, suite.relevant, suite.k)
        recall = fitted.recall.score(hits, trials, alpha, fixed("recall_at_k"))
        worst = np.argsort(hits / np.maximum(trials, 1))[:5]
        recall.details["worst_queries"] = [suite.query_ids[i] for i in worst if hits[i] < trials[i]]
        recall.details["embedded_with"] = suite.embedded_with
        results["recall_at_k"] = recall
    else:
        results["recall_at_k"] = DriftResult.insufficient(
            "recall_at_k", fitted.notes.get("recall_at_k", "no suite")
        )
    if fitted.index is not None and suite is not None and suite.exact is not None:
        ann_subset = [suite.ann.ids[i] for i in suite.exact_rows]
        health = fitted.index.score(
            *overlap_hits(ann_subset, suite.exact.ids, suite.k), alpha, fixed("index_health")
        )
        health.details["queries_checked"] = [suite.query_ids[i] for i in suite.exact_rows]
        results["index_health"] = health
    else:
        why = fitted.notes.get("index_health") or f"runs every {settings.index_health_interval:g}s; not due"
        results["index_health"] = DriftResult.insufficient("index_health", why)
    cosines = _sentinel_cosines(fitted, observed.sentinels)
    querylog_versions = observed.window.versions if observed.window else {}
    results["model_version"] = model_version_result(
        fitted.versions, sample.versions, querylog_versions, cosines
    )
    return [results[name] for name in DETECTORS], len(clean)


def _with_set_aside(sample: VectorSample) -> np.ndarray | list[np.ndarray | None]:
    """The sample as the sanity check should count it: the sampler already set NULL and
    other-dimension rows aside, so they come back here as None / empty rows. Only in that
    (rare) case is the array split into per-row views."""
    if not sample.null_vectors and not sample.wrong_dim:
        return sample.vectors
    other = np.empty(0, dtype=np.float32)  # any length but the expected one counts as wrong_dim
    return [*sample.vectors, *([None] * sample.null_vectors), *([other] * sample.wrong_dim)]


def _psi(fitted: Fitted, observed: Observation, alpha: float, fixed: float | None) -> DriftResult:
    if fitted.psi is None:
        return DriftResult.insufficient("score_psi", fitted.notes.get("score_psi", "no baseline scores"))
    if fitted.psi_source == "query_log":
        if observed.window is None:
            return DriftResult.insufficient("score_psi", "no query log window")
        top1, mean_topk = observed.window.top1, observed.window.mean_topk
    else:
        if observed.suite is None:
            return DriftResult.insufficient("score_psi", "no reference suite")
        scores = observed.suite.ann.scores
        complete = np.isfinite(scores[:, 0])
        top1, mean_topk = scores[complete, 0], np.nanmean(scores[complete], axis=1)
    result = fitted.psi.score(top1, mean_topk, alpha, fixed)
    result.details["source"] = fitted.psi_source
    return result


def _sentinel_cosines(fitted: Fitted, current: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine between each sentinel's baseline vector and its vector now (NaN if the shape changed)."""
    out = []
    for row_id, before in zip(fitted.sentinel_ids, fitted.sentinel_vectors, strict=True):
        now = current.get(row_id)
        if now is None:
            continue  # the row was deleted: not an embedding change
        if now.shape != before.shape:
            out.append(np.nan)
            continue
        denominator = float(np.linalg.norm(before) * np.linalg.norm(now))
        out.append(float(before @ now) / denominator if denominator else np.nan)
    return np.asarray(out, dtype=np.float64)


def _store(engine: Engine, cycle_id: str, report: CollectionReport) -> None:
    points = [
        PointRecord(r.detector, r.value, r.threshold, r.p_value, r.drifted, r.details) for r in report.results
    ]
    repository.save_cycle(
        engine,
        cycle_id=cycle_id,
        collection=report.name,
        started_at=report.started_at,
        finished_at=report.finished_at,
        status=report.status,
        error=report.error,
        sample_size=report.sample_size,
        model_versions=report.model_versions or None,
        baseline_id=report.baseline_id,
        points=points,
        runner=runner_name(),
    )


__all__ = [
    "CollectionReport",
    "CycleReport",
    "check_collection",
    "failed_report",
    "record",
    "run_cycle",
    "score",
]
