"""Reads and writes of driftwatch's own store. Knows rows and arrays, not detector internals.

A cycle is written in one transaction (its row and every metric point), so a crash or a
dying store never leaves half a cycle behind.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer

from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.observation import Counted
from driftwatch.detect.observation import ReferenceQuery as Query
from driftwatch.errors import StoreError
from driftwatch.store import describe_error
from driftwatch.store.models import (
    AlertState,
    Baseline,
    Cycle,
    FeedbackState,
    FinetuneCandidate,
    MetricPoint,
    QueryLogMark,
    SuiteQuery,
)


@dataclass(frozen=True)
class StoredBaseline:
    id: int
    collection: str
    model_version: str | None
    created_at: datetime
    metric: str
    sample: np.ndarray  # the reference sample, float32, exactly as captured
    sample_ids: list[str]
    arrays: dict[str, np.ndarray]
    summary: dict[str, Any]


@dataclass(frozen=True)
class Triplet:
    """One fine-tuning example, as the miner finds it and as it is stored: the query text
    (anchor), a document it should find (positive) and one it should rank lower (negative),
    where the pair came from (`source`), how urgent it is, and the query's model_version."""

    query_id: str
    anchor: str
    positive_id: str
    negative_id: str
    source: str  # skip_above | hard_negative | thumbs_down | follow_up
    priority: float
    model_version: str | None = None
    positive: str = ""  # document texts, filled once the documents are read
    negative: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """Same query text, positive and negative: the same example."""
        return " ".join(self.anchor.lower().split()), self.positive_id, self.negative_id


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uncompressed: exact, and float noise does not compress anyway
    return buffer.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@contextmanager
def guard(engine: Engine) -> Iterator[None]:
    """Turn any database failure into a StoreError with a scrubbed one-line cause."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(describe_error(engine, exc)) from None


def save_baseline(
    engine: Engine,
    collection: str,
    model_version: str | None,
    metric: str,
    sample: np.ndarray,
    sample_ids: list[str],
    arrays: dict[str, np.ndarray],
    summary: dict[str, Any],
) -> int:
    """Store a new baseline and make it the collection's active one; older ones stay for history."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    with guard(engine), Session(engine) as session, session.begin():
        session.execute(update(Baseline).where(Baseline.collection == collection).values(active=False))
        row = Baseline(
            collection=collection,
            model_version=model_version,
            metric=metric,
            sample_rows=sample.shape[0],
            dim=sample.shape[1],
            sample=sample.tobytes(),
            sample_ids=list(sample_ids),
            arrays=_pack(arrays),
            summary=summary,
            active=True,
        )
        session.add(row)
        session.flush()
        return row.id


def active_baseline(engine: Engine, collection: str, with_sample: bool = True) -> StoredBaseline | None:
    """The collection's active baseline; without `with_sample` its reference rows are not read
    (a cycle needs only the fitted state: 120 MB less at 20k x 1,536-d), and `sample` is empty."""
    query = (
        select(Baseline)
        .where(Baseline.collection == collection, Baseline.active.is_(True))
        .order_by(Baseline.created_at.desc(), Baseline.id.desc())
        .limit(1)
    )
    if not with_sample:
        query = query.options(defer(Baseline.sample))
    with guard(engine), Session(engine) as session:
        row = session.scalars(query).first()
        if row is None:
            return None
        if with_sample:
            sample = np.frombuffer(row.sample, dtype=np.float32).reshape(row.sample_rows, row.dim)
        else:
            sample = np.empty((0, row.dim), dtype=np.float32)
        return StoredBaseline(
            id=row.id,
            collection=row.collection,
            model_version=row.model_version,
            created_at=row.created_at,
            metric=row.metric,
            sample=sample,
            sample_ids=list(row.sample_ids),
            arrays=_unpack(row.arrays),
            summary=dict(row.summary),
        )


def save_cycle(
    engine: Engine,
    *,
    cycle_id: str,
    collection: str,
    started_at: datetime,
    finished_at: datetime,
    status: str,
    error: str | None,
    sample_size: int | None,
    model_versions: dict[str, Any] | None,
    baseline_id: int | None,
    results: Sequence[DriftResult],
    runner: str | None = None,
    counted: Counted | None = None,
) -> int:
    """Write a cycle and all its metric points atomically, with the query-log rows it counted
    (`counted`, so the next read skips them); returns the cycle row id."""
    with guard(engine), Session(engine) as session, session.begin():
        cycle = Cycle(
            cycle_id=cycle_id,
            collection=collection,
            started_at=started_at,
            finished_at=finished_at,
            status=status,
            error=error,
            sample_size=sample_size,
            model_versions=model_versions,
            baseline_id=baseline_id,
            runner=runner,
        )
        session.add(cycle)
        session.flush()
        session.add_all(
            MetricPoint(
                cycle_pk=cycle.id,
                ts=started_at,
                collection=collection,
                detector=r.detector,
                value=r.value,
                threshold=r.threshold,
                p_value=r.p_value,
                drifted=r.drifted,
                sample_size=sample_size,
                model_version=(model_versions or {}).get("dominant"),
                baseline_id=baseline_id,
                details=r.details,
            )
            for r in results
        )
        if counted is not None:
            _save_mark(session, collection, counted)
        return cycle.id


def last_cycle_start(engine: Engine, collection: str) -> datetime | None:
    """When the last completed (not failed) cycle of this collection started."""
    with guard(engine), Session(engine) as session:
        return session.scalar(
            select(func.max(Cycle.started_at)).where(Cycle.collection == collection, Cycle.status != "failed")
        )


def last_successes(engine: Engine) -> dict[str, datetime]:
    """When each collection's newest successful (not failed) cycle finished, by any replica."""
    with guard(engine), Session(engine) as session:
        rows = session.execute(
            select(Cycle.collection, func.max(Cycle.finished_at))
            .where(Cycle.status != "failed")
            .group_by(Cycle.collection)
        ).all()
        return {name: finished for name, finished in rows if finished is not None}


def latest_success(engine: Engine, collection: str) -> tuple[Cycle, list[MetricPoint]] | None:
    """The collection's newest successful cycle and its points, whichever replica ran it."""
    with guard(engine), Session(engine) as session:
        cycle = session.scalars(
            select(Cycle)
            .where(Cycle.collection == collection, Cycle.status != "failed")
            .order_by(Cycle.finished_at.desc(), Cycle.id.desc())
            .limit(1)
        ).first()
        if cycle is None:
            return None
        points = session.scalars(select(MetricPoint).where(MetricPoint.cycle_pk == cycle.id)).all()
        return cycle, list(points)


def mined_until(engine: Engine, collection: str) -> datetime | None:
    with guard(engine), Session(engine) as session:
        state = session.get(FeedbackState, collection)
        return state.mined_until if state else None


def save_candidates(engine: Engine, collection: str, candidates: list[Triplet], until: datetime) -> int:
    """Store the candidates not stored before (same query text, positive and negative) and move
    the mining watermark to `until`, in one transaction; returns how many were new."""
    with guard(engine), Session(engine) as session, session.begin():
        positives = sorted({c.positive_id for c in candidates})
        stored = [
            row
            for start in range(0, len(positives), 500)
            for row in session.execute(
                select(
                    FinetuneCandidate.anchor,
                    FinetuneCandidate.positive_id,
                    FinetuneCandidate.negative_id,
                    FinetuneCandidate.query_id,
                ).where(
                    FinetuneCandidate.collection == collection,
                    FinetuneCandidate.positive_id.in_(positives[start : start + 500]),
                )
            )
        ]
        existing = {Triplet(q, anchor, p, n, "", 0.0).key for anchor, p, n, q in stored}
        taken = {(q, p, n) for _, p, n, q in stored}  # the table's unique key
        fresh = []
        for c in candidates:
            if c.key in existing or (c.query_id, c.positive_id, c.negative_id) in taken:
                continue
            existing.add(c.key)
            taken.add((c.query_id, c.positive_id, c.negative_id))
            fresh.append(c)
        session.add_all(
            FinetuneCandidate(
                collection=collection,
                query_id=c.query_id,
                anchor=c.anchor,
                positive=c.positive,
                negative=c.negative,
                positive_id=c.positive_id,
                negative_id=c.negative_id,
                source=c.source,
                priority=c.priority,
                model_version=c.model_version,
            )
            for c in fresh
        )
        state = session.get(FeedbackState, collection)
        if state is None:
            session.add(FeedbackState(collection=collection, mined_until=until, updated_at=datetime.now(UTC)))
        else:
            state.mined_until, state.updated_at = until, datetime.now(UTC)
        return len(fresh)


def candidates(
    engine: Engine,
    collection: str | None,
    since: datetime | None,
    min_priority: float | None,
    model_version: str | None = None,
    source: str | None = None,
) -> list[FinetuneCandidate]:
    """Stored candidates, highest priority first; marks them exported."""
    with guard(engine), Session(engine, expire_on_commit=False) as session, session.begin():
        query = select(FinetuneCandidate)
        if collection:
            query = query.where(FinetuneCandidate.collection == collection)
        if since:
            query = query.where(FinetuneCandidate.created_at >= since)
        if min_priority is not None:
            query = query.where(FinetuneCandidate.priority >= min_priority)
        if model_version is not None:
            query = query.where(FinetuneCandidate.model_version == model_version)
        if source is not None:
            query = query.where(FinetuneCandidate.source == source)
        rows = list(
            session.scalars(query.order_by(FinetuneCandidate.priority.desc(), FinetuneCandidate.id)).all()
        )
        now = datetime.now(UTC)
        for row in rows:
            row.exported_at = now
        return rows


def alert_firing(engine: Engine, collection: str, alertname: str) -> bool:
    """Whether the collection's alert of this name is firing now."""
    with guard(engine), Session(engine) as session:
        found = session.scalar(
            select(func.count(AlertState.id)).where(
                AlertState.collection == collection,
                AlertState.alertname == alertname,
                AlertState.state == "firing",
            )
        )
        return bool(found)


def counted_queries(engine: Engine, collection: str) -> Counted | None:
    """Where the collection's last query-log read ended and what it counted (None before any)."""
    with guard(engine), Session(engine) as session:
        mark = session.get(QueryLogMark, collection)
        if mark is None:
            return None
        return Counted(
            until=mark.read_until,
            keys=np.frombuffer(mark.counted_keys, dtype="<i8").astype(np.int64),
            ts=np.frombuffer(mark.counted_ts, dtype="<f8").astype(np.float64),
        )


def _save_mark(session: Session, collection: str, counted: Counted) -> None:
    values = {
        "read_until": counted.until,
        "counted_keys": np.asarray(counted.keys, dtype="<i8").tobytes(),
        "counted_ts": np.asarray(counted.ts, dtype="<f8").tobytes(),
        "updated_at": datetime.now(UTC),
    }
    mark = session.get(QueryLogMark, collection)
    if mark is None:
        session.add(QueryLogMark(collection=collection, **values))
    else:
        for name, value in values.items():
            setattr(mark, name, value)


def candidate_counts(engine: Engine) -> dict[str, int]:
    with guard(engine), Session(engine) as session:
        rows = session.execute(
            select(FinetuneCandidate.collection, func.count(FinetuneCandidate.id)).group_by(
                FinetuneCandidate.collection
            )
        ).all()
        return {name: int(count) for name, count in rows}


def candidate_sources(engine: Engine, collection: str) -> dict[str, int]:
    """How many stored candidates of the collection came from each source."""
    with guard(engine), Session(engine) as session:
        rows = session.execute(
            select(FinetuneCandidate.source, func.count(FinetuneCandidate.id))
            .where(FinetuneCandidate.collection == collection)
            .group_by(FinetuneCandidate.source)
        ).all()
        return {source: int(count) for source, count in sorted(rows)}


def detector_runs(engine: Engine, collection: str, detector: str) -> tuple[int, datetime | None]:
    """(times this detector produced a value, when it last did)."""
    with guard(engine), Session(engine) as session:
        count, last = session.execute(
            select(func.count(MetricPoint.id), func.max(MetricPoint.ts)).where(
                MetricPoint.collection == collection,
                MetricPoint.detector == detector,
                MetricPoint.value.is_not(None),
            )
        ).one()
        return int(count), last


def replace_suite(engine: Engine, collection: str, queries: list[Query]) -> int:
    """Replace the collection's reference suite in one transaction."""
    with guard(engine), Session(engine) as session, session.begin():
        session.query(SuiteQuery).filter(SuiteQuery.collection == collection).delete()
        session.add_all(
            SuiteQuery(
                collection=collection,
                query_id=q.query_id,
                text=q.text,
                embedding=None if q.embedding is None else np.asarray(q.embedding, np.float32).tobytes(),
                relevant_ids=list(q.relevant_ids),
                relevance=q.relevance,
            )
            for q in queries
        )
    return len(queries)


def load_suite(engine: Engine, collection: str) -> list[Query]:
    with guard(engine), Session(engine) as session:
        rows = session.scalars(
            select(SuiteQuery).where(SuiteQuery.collection == collection).order_by(SuiteQuery.id)
        ).all()
        return [
            Query(
                query_id=r.query_id,
                relevant_ids=tuple(r.relevant_ids),
                text=r.text,
                embedding=None if r.embedding is None else np.frombuffer(r.embedding, dtype=np.float32),
                relevance=dict(r.relevance) if r.relevance else None,
            )
            for r in rows
        ]


def latest_points(engine: Engine, collection: str | None = None) -> list[MetricPoint]:
    """The newest point of every (collection, detector) series."""
    return _newest_points(engine, collection, measured_only=False)


def _newest_points(engine: Engine, collection: str | None, measured_only: bool) -> list[MetricPoint]:
    with guard(engine), Session(engine) as session:
        newest = select(MetricPoint.collection, MetricPoint.detector, func.max(MetricPoint.id).label("id"))
        if measured_only:
            newest = newest.where(MetricPoint.value.is_not(None))
        newest = newest.group_by(MetricPoint.collection, MetricPoint.detector).subquery()
        query = select(MetricPoint).join(newest, MetricPoint.id == newest.c.id)
        if collection:
            query = query.where(MetricPoint.collection == collection)
        return list(session.scalars(query.order_by(MetricPoint.collection, MetricPoint.detector)).all())


def history(engine: Engine, collection: str | None, detector: str | None, limit: int) -> list[MetricPoint]:
    with guard(engine), Session(engine) as session:
        query = select(MetricPoint)
        if collection:
            query = query.where(MetricPoint.collection == collection)
        if detector:
            query = query.where(MetricPoint.detector == detector)
        rows = session.scalars(
            query.order_by(MetricPoint.ts.desc(), MetricPoint.id.desc()).limit(limit)
        ).all()
        return list(reversed(rows))


def latest_measured(engine: Engine, collection: str | None = None) -> list[MetricPoint]:
    """The newest point with a value of every (collection, detector) series: what each
    detector last measured, however many cycles ago (index health runs every few hours)."""
    return _newest_points(engine, collection, measured_only=True)


def cycle_finishes(engine: Engine, cycle_pks: set[int]) -> dict[int, datetime]:
    """When each of these cycles (by row id) finished."""
    if not cycle_pks:
        return {}
    with guard(engine), Session(engine) as session:
        rows = session.execute(select(Cycle.id, Cycle.finished_at).where(Cycle.id.in_(cycle_pks))).all()
        return {pk: finished for pk, finished in rows if finished is not None}


def last_cycles(engine: Engine) -> dict[str, Cycle]:
    """Each collection's newest cycle, failed or not, configured or not."""
    with guard(engine), Session(engine) as session:
        newest = select(func.max(Cycle.id).label("id")).group_by(Cycle.collection).subquery()
        rows = session.scalars(select(Cycle).join(newest, Cycle.id == newest.c.id)).all()
        return {row.collection: row for row in rows}


def baseline_collections(engine: Engine) -> set[str]:
    """The collections with an active baseline (without loading any baseline's arrays)."""
    with guard(engine), Session(engine) as session:
        return set(
            session.scalars(select(Baseline.collection).where(Baseline.active.is_(True)).distinct()).all()
        )


def recent_cycles(engine: Engine, collection: str | None, limit: int) -> list[Cycle]:
    with guard(engine), Session(engine) as session:
        query = select(Cycle)
        if collection:
            query = query.where(Cycle.collection == collection)
        return list(
            session.scalars(query.order_by(Cycle.started_at.desc(), Cycle.id.desc()).limit(limit)).all()
        )


__all__ = [
    "StoredBaseline",
    "Triplet",
    "active_baseline",
    "alert_firing",
    "baseline_collections",
    "candidate_counts",
    "candidate_sources",
    "candidates",
    "counted_queries",
    "cycle_finishes",
    "detector_runs",
    "guard",
    "history",
    "last_cycle_start",
    "last_cycles",
    "last_successes",
    "latest_measured",
    "latest_points",
    "latest_success",
    "load_suite",
    "mined_until",
    "recent_cycles",
    "replace_suite",
    "save_baseline",
    "save_candidates",
    "save_cycle",
]
