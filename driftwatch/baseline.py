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
from driftwatch.detect.detectors import Stateful
from driftwatch.detect.observation import Observation, VectorSample
from driftwatch.detect.registry import REGISTRY, FitInput, Off, Registry
from driftwatch.detect.results import BLOCK
from driftwatch.errors import BaselineError
from driftwatch.observe import canary_texts, observe, suite_queries
from driftwatch.pg.querylog import LogRead
from driftwatch.pg.sampler import FULL_READ_FACTOR
from driftwatch.pg.session import Sessions
from driftwatch.store import repository

HOLD_OUT_FACTOR = 5  # held-out pool = 5x the sample: measured to keep false alarms at alpha (BENCHMARKS.md)
MIN_BASELINE_ROWS = 60
FORMAT = 2  # of the stored state; older baselines are re-captured, never misread
Progress = Callable[[str], None]
# Format 1 stored each detector under a short part name.
_FORMAT_1_PARTS = {
    "centroid": "centroid_distance",
    "spatial": "spatial_kl",
    "sanity": "vector_sanity",
    "psi": "score_psi",
    "recall": "recall_at_k",
    "index": "index_health",
}


@dataclass
class Fitted:
    """The frozen detectors of one baseline (by name), and why any registered one is off."""

    states: dict[str, Stateful]
    versions: list[str | None]
    sentinel_ids: list[str]
    sentinel_vectors: np.ndarray
    cycle_size: int  # the sample size cycles will draw, the nulls' n
    notes: dict[str, str] = field(default_factory=dict)
    arrival_column: str | None = None  # rows past `watermark` in it arrived after the capture
    watermark: str | None = None

    def pack(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {"sentinels": self.sentinel_vectors}
        detectors: dict[str, Any] = {}
        for name, detector in self.states.items():
            own_arrays, summary = detector.state()
            arrays.update({f"{name}.{key}": value for key, value in own_arrays.items()})
            detectors[name] = summary
        summary = {
            "format": FORMAT,
            "detectors": detectors,
            "versions": self.versions,
            "sentinel_ids": self.sentinel_ids,
            "cycle_size": self.cycle_size,
            "notes": self.notes,
            "arrival_column": self.arrival_column,
            "watermark": self.watermark,
        }
        return arrays, summary

    def null_summaries(self, alpha: float) -> dict[str, tuple[float, float, float]]:
        """(mean, sd, threshold) of each calibrated detector's no-drift value at its typical size."""
        summaries = {name: state.null_summary(alpha) for name, state in self.states.items()}
        return {name: summary for name, summary in summaries.items() if summary is not None}

    @classmethod
    def unpack(
        cls, arrays: dict[str, np.ndarray], summary: dict[str, Any], registry: Registry = REGISTRY
    ) -> Fitted:
        """Rebuild every registered detector stored in the baseline; one registered after the
        capture, or whose stored state this version cannot read, is off with a note saying so."""
        stored, arrays = _stored_detectors(arrays, summary)
        notes = dict(summary.get("notes", {}))
        states: dict[str, Stateful] = {}
        for detector in registry:
            if detector.state is None or detector.name not in stored:
                if detector.state is not None and detector.name not in notes:
                    notes[detector.name] = (
                        "the baseline was captured before this detector existed; re-capture"
                    )
                continue
            prefix = f"{detector.name}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            try:
                states[detector.name] = detector.state.from_state(own, stored[detector.name])
            except (KeyError, TypeError, ValueError) as exc:
                # An upgrade that changed one detector's state must not stop the others:
                # that detector is off, with a note, until the next capture.
                notes[detector.name] = (
                    f"the baseline's {detector.name} state is from another driftwatch version "
                    f"({type(exc).__name__}: {exc}); re-capture to turn it back on"
                )
        return cls(
            states=states,
            versions=list(summary["versions"]),
            sentinel_ids=list(summary["sentinel_ids"]),
            sentinel_vectors=arrays["sentinels"],
            cycle_size=int(summary["cycle_size"]),
            notes=notes,
            arrival_column=summary.get("arrival_column"),
            watermark=summary.get("watermark"),
        )


def _stored_detectors(
    arrays: dict[str, np.ndarray], summary: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The stored detector states by detector name, reading format 1's part names too."""
    detectors = dict(summary.get("detectors", {}))
    if summary.get("format", 1) >= 2:
        return detectors, arrays
    renamed = {_FORMAT_1_PARTS.get(part, part): state for part, state in detectors.items()}
    if "score_psi" in renamed:
        renamed["score_psi"] = {**renamed["score_psi"], "source": summary.get("psi_source") or "query_log"}
    moved: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        part, _, rest = key.partition(".")
        moved[f"{_FORMAT_1_PARTS[part]}.{rest}" if rest and part in _FORMAT_1_PARTS else key] = value
    return renamed, moved


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
    collection: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator | None = None,
    progress: Progress | None = None,
) -> CaptureReport:
    """Sample, fit every detector, calibrate the nulls, and store the baseline as active."""
    rng = rng or np.random.default_rng()
    say = progress or (lambda _message: None)
    started = time.monotonic()
    n = collection.sample_size
    suite = suite_queries(collection, engine, refresh=True)
    now = datetime.now(UTC)
    window = _baseline_read(collection, now)
    say(f"{collection.name}: sampling up to {n * (1 + HOLD_OUT_FACTOR)} rows from {collection.tables}")
    with Sessions(collection) as sessions:  # one connection and one snapshot per monitored database
        observed = observe(
            sessions,
            collection,
            engine,
            rng,
            sample_size=n * (1 + HOLD_OUT_FACTOR),
            expected_dim=None,
            with_ids=True,
            window=window,
            suite=suite,
            exact_rows=np.arange(min(len(suite), collection.index_health_queries)),
            sentinel_ids=[],
            read_watermark=True,
            probes=canary_texts(collection, engine),
        )
    _embedded_or_fail(collection, observed)
    fitted, reference, reference_ids, held_rows = fit(collection, observed, rng, say)
    sample = observed.sample
    # The held-out rows go before the write: the reference alone is kept, as a copy.
    reference, sample.vectors = reference.copy(), np.empty((0, reference.shape[1]), np.float32)
    arrays, summary = fitted.pack()
    summary["capture"] = {
        "method": sample.method,
        "table_rows_estimate": sample.table_rows_estimate,
        "rows_sampled": sample.rows_sampled,
        "null_vectors": sample.null_vectors,
        "wrong_dim": sample.wrong_dim,
        "held_out_rows": held_rows,
        "suite_queries": len(suite),
        "false_alarm_rate": collection.false_alarm_rate,
        "captured_at": now.isoformat(),
        "partitions": {leaf: counts["rows_estimate"] for leaf, counts in sample.partitions.items()},
    }
    if observed.source_rows is not None:  # several sources: their rows, for the outage rule
        summary["capture"]["sources"] = observed.source_rows
    model_version = fitted.versions[0] if fitted.versions else None
    say(f"{collection.name}: storing baseline ({len(reference)} reference rows, model {model_version})")
    baseline_id = repository.save_baseline(
        engine, collection.name, model_version, collection.metric, reference, reference_ids, arrays, summary
    )
    return CaptureReport(
        baseline_id=baseline_id,
        collection=collection.name,
        model_version=model_version,
        reference_rows=len(reference),
        held_out_rows=held_rows,
        method=sample.method,
        seconds=time.monotonic() - started,
        fitted=fitted,
    )


def _embedded_or_fail(collection: CollectionSettings, observed: Observation) -> None:
    """A baseline without its suite or canary because the embedder blinked would judge every
    later cycle without them: refuse it instead."""
    canary = observed.canary
    why = observed.suite_skipped or (canary.error if canary is not None and canary.texts else None)
    if why:
        raise BaselineError(f"{collection.name}: cannot capture a baseline: {why}")


def fit(
    collection: CollectionSettings,
    observed: Observation,
    rng: np.random.Generator,
    say: Progress,
    registry: Registry = REGISTRY,
) -> tuple[Fitted, np.ndarray, list[str], int]:
    """Fit and calibrate every registered detector from one observation; pure computation.

    The sample is the only copy of its rows: to split it without a second one, its rows (and
    ids) are reordered in place, the usable rows first in a random order; the reference is
    its first rows, the held-out part the rest (views, not copies)."""
    sample = observed.sample
    usable = _usable_rows(sample.vectors)
    if len(usable) < MIN_BASELINE_ROWS:
        raise BaselineError(
            f"{collection.name}: only {len(usable)} usable vectors in {collection.tables} "
            f"({sample.null_vectors} NULL, {sample.wrong_dim} of another dimension); "
            f"a baseline needs at least {MIN_BASELINE_ROWS}"
        )
    order = rng.permutation(usable)
    n = collection.sample_size
    reference_count = min(n, len(order) // 2)
    _reorder(sample, order)  # the usable rows, shuffled, first: reference and held-out are views
    ids = sample.ids or []
    inputs = FitInput(
        reference=sample.vectors[:reference_count],
        held_out=sample.vectors[reference_count : len(order)],
        reference_ids=ids[:reference_count],
        cycle_size=_cycle_size(sample, len(usable), n),
        observed=observed,
        settings=collection,
        rng=rng,
        cycle_window=_cycle_window(collection),
    )
    say(
        f"{collection.name}: fitting {collection.cells} cells and calibrating nulls "
        f"({collection.null_replicates} replicates)"
    )
    states: dict[str, Stateful] = {}
    notes: dict[str, str] = {}
    for detector in registry:
        if detector.state is None:
            continue
        fitted = detector.fit(inputs)
        if isinstance(fitted, Off):
            notes[detector.name] = fitted.why
        else:
            states[detector.name] = fitted
    sentinel_count = min(collection.sentinels, len(inputs.reference_ids))
    result = Fitted(
        states=states,
        versions=[v for v, _ in sorted(sample.versions.items(), key=lambda vc: -vc[1])],
        sentinel_ids=inputs.reference_ids[:sentinel_count],
        sentinel_vectors=inputs.reference[:sentinel_count].copy(),
        cycle_size=inputs.cycle_size,
        notes=notes,
        arrival_column=collection.arrivals_by if observed.watermark is not None else None,
        watermark=observed.watermark,
    )
    return result, inputs.reference, inputs.reference_ids, len(order) - reference_count


def _baseline_read(collection: CollectionSettings, now: datetime) -> LogRead | None:
    """The query log's baseline: baseline_window (default 7 days: the daily cycle's swing is
    the noise a cycle's rates show), as settled as a cycle's read, sampled evenly across it."""
    config = collection.query_log
    if config is None:
        return None
    until = now - timedelta(seconds=config.settle)
    return LogRead(until - timedelta(seconds=config.baseline_window), until, spread=True)


def _cycle_window(collection: CollectionSettings) -> float | None:
    """Seconds of query log one cycle reads: the interval between cycles (the first one reads
    up to `window`)."""
    if collection.query_log is None:
        return None
    return min(collection.interval or collection.query_log.window, collection.query_log.window)


def _usable_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows with finite, non-zero vectors: the only ones a statistic may learn from (checked
    block by block: no float64 copy of the sample)."""
    usable = np.empty(len(vectors), dtype=bool)
    for start in range(0, len(vectors), BLOCK):
        block = vectors[start : start + BLOCK]
        usable[start : start + BLOCK] = np.isfinite(block).all(axis=1) & (block != 0).any(axis=1)
    return np.flatnonzero(usable)


def _reorder(sample: VectorSample, order: np.ndarray) -> None:
    """Reorder the sample's rows in place so that row i is the old row order[i] (the rows not
    in `order` follow), moving rows along the permutation's cycles a block at a time: the
    extra memory is one block, not a second sample."""
    if not sample.vectors.flags.writeable:
        sample.vectors = sample.vectors.copy()
    rows = sample.vectors
    rest = np.setdiff1d(np.arange(len(rows)), order, assume_unique=True)
    moves = np.concatenate([order, rest]).tolist()
    if sample.ids is not None:
        sample.ids[:] = [sample.ids[i] for i in moves]
    done = bytearray(len(moves))
    for start in range(len(moves)):
        if done[start] or moves[start] == start:
            continue
        cycle = [start]
        while moves[cycle[-1]] != start:
            cycle.append(moves[cycle[-1]])
        for i in cycle:
            done[i] = 1
        at = np.asarray(cycle)
        first = rows[start].copy()
        for low in range(0, len(at) - 1, BLOCK):  # rows[c_k] = rows[c_k+1]: read before written
            high = min(low + BLOCK, len(at) - 1)
            rows[at[low:high]] = rows[at[low + 1 : high + 1]]
        rows[at[-1]] = first


def _cycle_size(sample: VectorSample, usable: int, n: int) -> int:
    """The nulls are drawn at the size cycles will see: `n` rows, unless the table is under
    2n rows and cycles read it whole (the baseline's own read is 6n, so its method says
    nothing about the cycles')."""
    table_rows = sample.table_rows_estimate if sample.method != "tid" else None
    return usable if table_rows is not None and table_rows < FULL_READ_FACTOR * n else n


__all__ = ["CaptureReport", "Fitted", "capture", "fit"]
