"""One cycle: observe each collection, score it against its baseline, store the verdicts.

A collection that fails (store unreachable, no baseline, bad suite) is recorded as a
failed cycle with its cause and no metric points; the other collections go on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from driftwatch.baseline import Fitted
from driftwatch.config import CollectionSettings
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.observation import Observation, VectorSample
from driftwatch.detect.registry import REGISTRY, Registry, ScoreInput
from driftwatch.detect.verdict import Verdict, verdict
from driftwatch.errors import BaselineError, DriftwatchError, StoreError
from driftwatch.observe import observe, suite_queries
from driftwatch.pg.session import Sessions, sessions_for
from driftwatch.pg.suite import rotating_subset
from driftwatch.secrets import known_passwords, scrub
from driftwatch.store import repository
from driftwatch.where import locate

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
    verdict: Verdict | None = None  # the cycle's family-wise verdict (None for a failed cycle)

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
        if self.verdict is not None:
            body["verdict"] = self.verdict.to_dict()
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


def check_collection(
    settings: CollectionSettings,
    engine: Engine,
    cycle_id: str,
    rng: np.random.Generator | None = None,
    sessions: Sessions | None = None,
) -> CollectionReport:
    """Observe, score and store one collection's cycle; `sessions` are the pass's connections
    to the monitored databases (`Monitor` passes its own; without, the cycle opens and closes one)."""
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
        with sessions_for(settings, sessions) as reads:
            observed = _observe(settings, engine, rng, fitted, baseline.sample.shape[1], started_at, reads)
            results, clean_rows = score(settings, fitted, observed)
            results = locate(reads, settings, fitted, observed, results)
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
    judged = verdict(results, settings.false_alarm_rate, frozenset(settings.thresholds))
    status = "drift" if judged.drift else "ok"
    report = CollectionReport(
        name=settings.name,
        status=status,
        started_at=started_at,
        seconds=time.monotonic() - clock,
        sample_size=clean_rows,
        model_versions=model_versions,
        results=results,
        baseline_id=baseline_id,
        verdict=judged,
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
    sessions: Sessions | None = None,
) -> Observation:
    since = repository.last_cycle_start(engine, settings.name)
    window = None
    if settings.query_log is not None:
        oldest = now - timedelta(seconds=settings.query_log.window)
        window = (max(since, oldest) if since else oldest, now)
    suite = suite_queries(settings, engine) if "recall_at_k" in fitted.states else []
    runs, last_run = repository.detector_runs(engine, settings.name, "index_health")
    due = last_run is None or (now - last_run).total_seconds() >= settings.index_health_interval
    exact_rows = rotating_subset(len(suite), settings.index_health_queries, runs) if due else np.empty(0, int)
    with sessions_for(settings, sessions) as reads:
        return observe(
            reads,
            settings,
            engine,
            rng,
            sample_size=settings.sample_size,
            expected_dim=dim,
            with_ids=True,  # so the regional detectors can name representative rows (where.py)
            window=window,
            suite=suite,
            exact_rows=exact_rows,
            sentinel_ids=fitted.sentinel_ids,
            arrivals_after=_arrivals_after(settings, fitted),
        )


def _arrivals_after(settings: CollectionSettings, fitted: Fitted) -> str | None:
    """The baseline's watermark, while the config orders arrivals by the same column."""
    if fitted.watermark is None or settings.arrivals_by != fitted.arrival_column:
        return None
    return fitted.watermark


def score(
    settings: CollectionSettings, fitted: Fitted, observed: Observation, registry: Registry = REGISTRY
) -> tuple[list[DriftResult], int]:
    """Every registered detector's verdict on one observation, in registration order, and how
    many sampled rows were clean enough for the statistics."""
    alpha = settings.false_alarm_rate
    fixed = settings.thresholds.get
    sanity = fitted.states["vector_sanity"]
    clean, screen = sanity.check(_with_set_aside(observed.sample), alpha, fixed("vector_sanity"))
    arrivals = None
    if observed.arrivals is not None:
        arrivals, _ = sanity.check(_with_set_aside(observed.arrivals.sample), alpha)
    inputs = ScoreInput(
        clean=clean,
        screen=screen,
        observed=observed,
        baseline_versions=fitted.versions,
        sentinel_cosines=_sentinel_cosines(fitted, observed.sentinels),
        alpha=alpha,
        fixed_threshold=None,
        index_health_interval=settings.index_health_interval,
        arrivals=arrivals,
    )
    results = []
    for detector in registry:
        owner = detector.fitted_as
        state = fitted.states.get(owner) if owner else None
        if owner is not None and state is None:
            why = fitted.notes.get(owner, "not fitted on this baseline")
            results.append(DriftResult.insufficient(detector.name, why))
        else:
            results.append(detector.score(state, replace(inputs, fixed_threshold=fixed(detector.name))))
    return results, len(clean)


def _with_set_aside(sample: VectorSample) -> np.ndarray | list[np.ndarray | None]:
    """The sample as the sanity check should count it: the sampler already set NULL and
    other-dimension rows aside, so they come back here as None / empty rows. Only in that
    (rare) case is the array split into per-row views."""
    if not sample.null_vectors and not sample.wrong_dim:
        return sample.vectors
    other = np.empty(0, dtype=np.float32)  # any length but the expected one counts as wrong_dim
    return [*sample.vectors, *([None] * sample.null_vectors), *([other] * sample.wrong_dim)]


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
        results=report.results,
        runner=runner_name(),
    )


__all__ = [
    "CollectionReport",
    "CycleReport",
    "check_collection",
    "failed_report",
    "record",
    "score",
]
