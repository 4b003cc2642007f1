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
from driftwatch.config import CollectionSettings, QueryLogSettings
from driftwatch.detect.canary import EmbeddingCanary
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.feedback_rates import RateShift
from driftwatch.detect.observation import Counted, Observation, VectorSample
from driftwatch.detect.registry import REGISTRY, Registry, ScoreInput
from driftwatch.detect.scores import ScorePSI
from driftwatch.detect.verdict import Verdict, verdict
from driftwatch.errors import BaselineError, DriftwatchError, StoreError
from driftwatch.observe import canary_texts, observe, suite_queries
from driftwatch.pg.partitions import changes_since
from driftwatch.pg.querylog import LogRead, counted_after
from driftwatch.pg.session import Sessions, sessions_for
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
    notes: list[str] = field(default_factory=list)  # what the cycle could not do as usual, and why
    counted: Counted | None = None  # the query-log rows it counted, stored with it
    partitions: dict[str, dict[str, int]] = field(default_factory=dict)  # leaf -> rows estimate, sampled

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
        if self.notes:
            body["notes"] = self.notes
        if self.partitions:
            body["partitions"] = self.partitions
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
    collection: CollectionSettings,
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
        baseline = repository.active_baseline(engine, collection.name, with_sample=False)
        if baseline is None:
            capture = f"driftwatch baseline capture --collection {collection.name}"
            raise BaselineError(f"{collection.name}: no baseline yet; run `{capture}`")
        baseline_id, dim = baseline.id, baseline.sample.shape[1]
        captured = baseline.summary.get("capture") or {}
        rows = captured.get("sources")
        fitted = Fitted.unpack(baseline.arrays, baseline.summary)
        del baseline  # its arrays were copied into `fitted`: not twice in memory for the cycle
        previous = repository.counted_queries(engine, collection.name) if collection.query_log else None
        with sessions_for(collection, sessions) as reads:
            observed = _observe(collection, engine, rng, fitted, dim, started_at, reads, previous, rows)
            observed.notes += changes_since(captured.get("partitions", {}), _leaf_rows(observed.sample))
            results, clean_rows = score(collection, fitted, observed)
            if observed.partial is not None:
                results = held_back(results, observed.partial)
            results = locate(reads, collection, fitted, observed, results)
    except StoreError:
        raise  # nowhere to record it: the caller reports the store as down
    except DriftwatchError as exc:
        report = CollectionReport(
            collection.name,
            "failed",
            started_at,
            time.monotonic() - clock,
            error=scrub(str(exc), known_passwords(collection.urls())),  # it is stored: no secrets
            baseline_id=baseline_id,
        )
        log.error("cycle %s for %s failed: %s", cycle_id, collection.name, exc)
        _store_or_mark(engine, cycle_id, report)
        return report
    sample = observed.sample
    versions = {_key(v): c for v, c in sorted(sample.versions.items(), key=lambda vc: -vc[1])}
    model_versions: dict[str, Any] = {"dominant": next(iter(versions), None), "counts": versions}
    if sample.dims_seen:
        by_count = sorted(sample.dims_seen.items(), key=lambda dc: -dc[1])
        model_versions["dims"] = {str(d): c for d, c in by_count}
    for note in observed.notes:
        log.warning("cycle %s for %s: %s", cycle_id, collection.name, note)
    judged = verdict(results, collection.false_alarm_rate, frozenset(collection.thresholds))
    status = "drift" if judged.drift else "ok"
    report = CollectionReport(
        name=collection.name,
        status=status,
        started_at=started_at,
        seconds=time.monotonic() - clock,
        sample_size=clean_rows,
        model_versions=model_versions,
        results=results,
        baseline_id=baseline_id,
        verdict=judged,
        notes=observed.notes,
        partitions=sample.partitions,
    )
    if observed.window is not None and collection.query_log is not None:
        report.counted = counted_after(previous, observed.window, collection.query_log.late_arrival)
    _store_or_mark(engine, cycle_id, report)
    return report


def _leaf_rows(sample: VectorSample) -> dict[str, int]:
    """A partitioned parent's leaves and their live-row estimates (empty for a plain table)."""
    return {leaf: counts["rows_estimate"] for leaf, counts in sample.partitions.items()}


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
    collection: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator,
    fitted: Fitted,
    dim: int,
    now: datetime,
    sessions: Sessions | None = None,
    counted: Counted | None = None,
    source_rows: dict[str, int] | None = None,
) -> Observation:
    window = None
    if collection.query_log is not None:
        window = log_read(
            collection.query_log, now, counted, repository.last_cycle_start(engine, collection.name)
        )
    suite = suite_queries(collection, engine) if "recall_at_k" in fitted.states else []
    _, last_run = repository.detector_runs(engine, collection.name, "index_health")
    due = last_run is None or (now - last_run).total_seconds() >= collection.index_health_interval
    # The same queries the baseline checked, so each pairs with itself (a paired test).
    exact_rows = np.arange(min(len(suite), collection.index_health_queries)) if due else np.empty(0, int)
    with sessions_for(collection, sessions) as reads:
        return observe(
            reads,
            collection,
            engine,
            rng,
            sample_size=collection.sample_size,
            expected_dim=dim,
            with_ids=True,  # so the regional detectors can name representative rows (where.py)
            window=window,
            suite=suite,
            exact_rows=exact_rows,
            sentinel_ids=fitted.sentinel_ids,
            arrivals_after=_arrivals_after(collection, fitted),
            probes=canary_texts(collection, engine) if "embedding_canary" in fitted.states else None,
            baseline_rows=source_rows,
        )


def log_read(
    config: QueryLogSettings, now: datetime, counted: Counted | None, last_start: datetime | None
) -> LogRead:
    """The rows a cycle counts: ts after where the last read ended (at most `window` back) and
    at least `settle` old, read with a `late_arrival` overlap, less what was counted before."""
    until = now - timedelta(seconds=config.settle)
    oldest = until - timedelta(seconds=config.window)
    since = counted.until if counted is not None else last_start
    since = max(since, oldest) if since else oldest
    return LogRead(min(since, until), until, seen=counted, late_arrival=config.late_arrival)


def _arrivals_after(collection: CollectionSettings, fitted: Fitted) -> str | None:
    """The baseline's watermark, while the config orders arrivals by the same column."""
    if fitted.watermark is None or collection.arrivals_by != fitted.arrival_column:
        return None
    return fitted.watermark


def score(
    collection: CollectionSettings,
    fitted: Fitted,
    observed: Observation,
    registry: Registry = REGISTRY,
    timings: dict[str, float] | None = None,
) -> tuple[list[DriftResult], int]:
    """Every registered detector's verdict on one observation, in registration order, and how
    many sampled rows were clean enough for the statistics; `timings` collects each
    detector's seconds (the benchmarks' cost table)."""
    alpha = collection.false_alarm_rate
    fixed = collection.thresholds.get
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
        index_health_interval=collection.index_health_interval,
        arrivals=arrivals,
        read_whole=observed.sample.method == "full",
    )
    results = []
    for detector in registry:
        started = time.perf_counter()
        owner = detector.fitted_as
        state = fitted.states.get(owner) if owner else None
        if owner is not None and state is None:
            why = fitted.notes.get(owner, "not fitted on this baseline")
            results.append(DriftResult.insufficient(detector.name, why))
        else:
            own = replace(
                inputs,
                fixed_threshold=fixed(detector.name),
                whole_table_effect=collection.whole_table_effects.get(detector.name),
            )
            results.append(detector.score(state, own))
        if timings is not None:
            timings[detector.name] = timings.get(detector.name, 0.0) + time.perf_counter() - started
    return results, len(clean)


# Detectors whose statistic is of the query log or the live embedder, not of the store's rows:
# a down source of a collection with several leaves them whole.
_NOT_OF_ROWS = (RateShift, ScorePSI, EmbeddingCanary)


def held_back(results: list[DriftResult], why: str, registry: Registry = REGISTRY) -> list[DriftResult]:
    """A partial cycle (a source down) keeps the values of detectors that read the store's
    rows, but holds back their verdicts: a sample missing a source's rows differs from the
    baseline because of the outage, and that must not page as drift."""
    out = []
    for result in results:
        detector = registry.detectors.get(result.detector)
        owner = registry.detectors.get(detector.fitted_as or "") if detector is not None else None
        if result.value is None or (owner is not None and issubclass(owner.state or object, _NOT_OF_ROWS)):
            out.append(result)
            continue
        details = {**result.details, "insufficient": why, "partial_value": result.value}
        out.append(
            DriftResult(result.detector, None, None, None, {**details, "partial_threshold": result.threshold})
        )
    return out


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
        counted=report.counted,
    )


__all__ = [
    "CollectionReport",
    "CycleReport",
    "check_collection",
    "failed_report",
    "record",
    "score",
]
