"""Capturing a baseline: one large sample, split into a reference part (fits the cells,
the centroid, the bin edges) and a held-out part (draws each detector's null), so the
thresholds are calibrated at the configured sample size and not biased low.

Everything statistical is frozen here and stored with the model version, so a value
today is comparable with one last month.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from driftwatch.config import CollectionSettings
from driftwatch.detect.checks import VectorSanity
from driftwatch.detect.detectors import CentroidDistance, IndexHealth, RecallAtK, ScorePSI, SpatialKL
from driftwatch.detect.observation import Observation
from driftwatch.errors import BaselineError
from driftwatch.observe import observe, suite_queries
from driftwatch.pg.sampler import FULL_READ_FACTOR
from driftwatch.pg.session import Sessions
from driftwatch.pg.suite import overlap_hits, recall_hits
from driftwatch.store import repository

HOLD_OUT_FACTOR = 5  # held-out pool = 5x the sample: measured to keep false alarms at alpha (BENCHMARKS.md)
MIN_BASELINE_ROWS = 60
MIN_BASELINE_QUERIES = 60
Progress = Callable[[str], None]
# Field of `Fitted` -> the detector class that stores and restores it.
PARTS: dict[str, Any] = {
    "centroid": CentroidDistance,
    "spatial": SpatialKL,
    "sanity": VectorSanity,
    "psi": ScorePSI,
    "recall": RecallAtK,
    "index": IndexHealth,
}


@dataclass
class Fitted:
    """The frozen detectors of one baseline, and why any of them is off."""

    centroid: CentroidDistance
    spatial: SpatialKL
    sanity: VectorSanity
    psi: ScorePSI | None
    recall: RecallAtK | None
    index: IndexHealth | None
    versions: list[str | None]
    sentinel_ids: list[str]
    sentinel_vectors: np.ndarray
    psi_source: str | None  # "query_log" | "suite"
    cycle_size: int  # the sample size cycles will draw, the nulls' n
    notes: dict[str, str] = field(default_factory=dict)

    def pack(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {"sentinels": self.sentinel_vectors}
        detectors: dict[str, Any] = {}
        for part in PARTS:
            detector = getattr(self, part)
            if detector is None:
                continue
            part_arrays, summary = detector.state()
            arrays.update({f"{part}.{name}": value for name, value in part_arrays.items()})
            detectors[part] = summary
        summary = {
            "detectors": detectors,
            "versions": self.versions,
            "sentinel_ids": self.sentinel_ids,
            "psi_source": self.psi_source,
            "cycle_size": self.cycle_size,
            "notes": self.notes,
        }
        return arrays, summary

    @classmethod
    def unpack(cls, arrays: dict[str, np.ndarray], summary: dict[str, Any]) -> Fitted:
        parts: dict[str, Any] = {}
        for part, detector_class in PARTS.items():
            state = summary["detectors"].get(part)
            if state is None:
                parts[part] = None
                continue
            prefix = f"{part}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            parts[part] = detector_class.from_state(own, state)
        return cls(
            **parts,
            versions=list(summary["versions"]),
            sentinel_ids=list(summary["sentinel_ids"]),
            sentinel_vectors=arrays["sentinels"],
            psi_source=summary["psi_source"],
            cycle_size=int(summary["cycle_size"]),
            notes=dict(summary.get("notes", {})),
        )


@dataclass
class CaptureReport:
    baseline_id: int
    collection: str
    model_version: str | None
    reference_rows: int
    held_out_rows: int
    method: str
    seconds: float
    fitted: Fitted


def capture(
    settings: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator | None = None,
    progress: Progress | None = None,
) -> CaptureReport:
    """Sample, fit every detector, calibrate the nulls, and store the baseline as active."""
    rng = rng or np.random.default_rng()
    say = progress or (lambda _message: None)
    started = time.monotonic()
    n = settings.sample_size
    suite = suite_queries(settings, engine, refresh=True)
    now = datetime.now(UTC)
    window = (now - timedelta(seconds=settings.query_log.window), now) if settings.query_log else None
    say(f"{settings.name}: sampling up to {n * (1 + HOLD_OUT_FACTOR)} rows from {settings.table}")
    with Sessions(settings) as sessions:  # one connection and one snapshot per monitored database
        observed = observe(
            sessions,
            settings,
            engine,
            rng,
            sample_size=n * (1 + HOLD_OUT_FACTOR),
            expected_dim=None,
            with_ids=True,
            window=window,
            suite=suite,
            exact_rows=np.arange(min(len(suite), settings.index_health_queries)),
            sentinel_ids=[],
        )
    fitted, reference, reference_ids, held_rows = fit(settings, observed, rng, say)
    arrays, summary = fitted.pack()
    sample = observed.sample
    summary["capture"] = {
        "method": sample.method,
        "table_rows_estimate": sample.table_rows_estimate,
        "rows_sampled": sample.rows_sampled,
        "null_vectors": sample.null_vectors,
        "wrong_dim": sample.wrong_dim,
        "held_out_rows": held_rows,
        "suite_queries": len(suite),
        "false_alarm_rate": settings.false_alarm_rate,
        "captured_at": now.isoformat(),
    }
    model_version = fitted.versions[0] if fitted.versions else None
    say(f"{settings.name}: storing baseline ({len(reference)} reference rows, model {model_version})")
    baseline_id = repository.save_baseline(
        engine, settings.name, model_version, settings.metric, reference, reference_ids, arrays, summary
    )
    return CaptureReport(
        baseline_id=baseline_id,
        collection=settings.name,
        model_version=model_version,
        reference_rows=len(reference),
        held_out_rows=held_rows,
        method=sample.method,
        seconds=time.monotonic() - started,
        fitted=fitted,
    )


def fit(
    settings: CollectionSettings, observed: Observation, rng: np.random.Generator, say: Progress
) -> tuple[Fitted, np.ndarray, list[str], int]:
    """Fit and calibrate every detector from one observation; pure computation."""
    sample = observed.sample
    vectors = sample.vectors
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1) if len(vectors) else np.empty(0)
    usable = (
        np.flatnonzero(np.isfinite(vectors).all(axis=1) & (norms > 0)) if len(vectors) else np.empty(0, int)
    )
    if len(usable) < MIN_BASELINE_ROWS:
        raise BaselineError(
            f"{settings.name}: only {len(usable)} usable vectors in {settings.table} "
            f"({sample.null_vectors} NULL, {sample.wrong_dim} of another dimension); "
            f"a baseline needs at least {MIN_BASELINE_ROWS}"
        )
    order = rng.permutation(usable)
    n = settings.sample_size
    reference_count = min(n, len(order) // 2)
    reference_rows, held_rows = order[:reference_count], order[reference_count:]
    reference, held_out = vectors[reference_rows], vectors[held_rows]
    ids = sample.ids or []
    reference_ids = [ids[i] for i in reference_rows] if ids else []
    # The nulls are drawn at the size cycles will see: `n` rows, unless the table is under
    # 2n rows and cycles read it whole (the baseline's own read is 6n, so its method says
    # nothing about the cycles').
    table_rows = sample.table_rows_estimate if sample.method != "tid" else None
    cycle_size = len(usable) if table_rows is not None and table_rows < FULL_READ_FACTOR * n else n
    replicates = settings.null_replicates
    say(f"{settings.name}: fitting {settings.cells} cells and calibrating nulls ({replicates} replicates)")
    centroid = CentroidDistance.fit(reference, held_out, cycle_size, settings.metric, rng, replicates)
    spatial = SpatialKL.fit(reference, held_out, cycle_size, rng, settings.cells, replicates)
    sanity = VectorSanity.fit(reference, sample.dim)
    notes: dict[str, str] = {}
    psi, psi_source = _fit_psi(settings, observed, rng, notes)
    recall = index = None
    suite = observed.suite
    if suite is None:
        notes["recall_at_k"] = notes["index_health"] = "no reference suite configured or imported"
    else:
        hits, trials = recall_hits(suite.ann.ids, suite.relevant, suite.k)
        recall = RecallAtK.fit(hits, trials, suite.k)
        if suite.exact is not None:
            ann_subset = [suite.ann.ids[i] for i in suite.exact_rows]
            index = IndexHealth.fit(*overlap_hits(ann_subset, suite.exact.ids, suite.k))
        else:
            notes["index_health"] = "index_health_queries = 0"
    versions = [v for v, _ in sorted(sample.versions.items(), key=lambda vc: -vc[1])]
    sentinel_count = min(settings.sentinels, len(reference_ids))
    fitted = Fitted(
        centroid=centroid,
        spatial=spatial,
        sanity=sanity,
        psi=psi,
        recall=recall,
        index=index,
        versions=versions,
        sentinel_ids=reference_ids[:sentinel_count],
        sentinel_vectors=reference[:sentinel_count].copy(),
        psi_source=psi_source,
        cycle_size=cycle_size,
        notes=notes,
    )
    return fitted, reference, reference_ids, len(held_rows)


def _fit_psi(
    settings: CollectionSettings, observed: Observation, rng: np.random.Generator, notes: dict[str, str]
) -> tuple[ScorePSI | None, str | None]:
    """Score PSI from the live query log when it has enough queries, else from the suite."""
    window = observed.window
    if window is not None and window.top1.size >= MIN_BASELINE_QUERIES:
        return ScorePSI.fit(
            window.top1, window.mean_topk, rng, settings.bins, settings.null_replicates
        ), "query_log"
    suite = observed.suite
    if suite is not None:
        scores = suite.ann.scores
        complete = np.isfinite(scores[:, 0])
        if complete.sum() >= MIN_BASELINE_QUERIES:
            top1 = scores[complete, 0]
            mean_topk = np.nanmean(scores[complete], axis=1)
            return ScorePSI.fit(top1, mean_topk, rng, settings.bins, settings.null_replicates), "suite"
    have = 0 if window is None else window.top1.size
    notes["score_psi"] = (
        f"needs {MIN_BASELINE_QUERIES} baseline queries with scores (query log window had {have}; "
        "a reference suite of that size also works)"
    )
    return None, None


__all__ = ["CaptureReport", "Fitted", "capture", "fit"]
