"""driftwatch's own tables (not the monitored store): baselines, cycles, metric points,
alert states, reference-suite queries and fine-tuning candidates.

Arrays are stored exactly, as raw little-endian float32 bytes plus their shape, so a
baseline read back next month gives bit-for-bit the statistics it was captured with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are UTC and timezone-aware on the way out, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("driftwatch stores timezone-aware datetimes only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Baseline(Base):
    """A frozen reference: the sample, its fitted statistics and each detector's null."""

    __tablename__ = "baselines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(63))
    model_version: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    metric: Mapped[str] = mapped_column(String(20))
    sample_rows: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    sample: Mapped[bytes] = mapped_column(LargeBinary)  # float32, C order, sample_rows x dim
    sample_ids: Mapped[list[str]] = mapped_column(Json)
    arrays: Mapped[bytes] = mapped_column(LargeBinary)  # .npz: centroid, cells, bin edges, sentinels
    summary: Mapped[dict[str, Any]] = mapped_column(Json)  # nulls (mean, sd, quantiles), settings
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (Index("ix_baselines_collection_created", "collection", "created_at"),)


class Cycle(Base):
    """One run of the detectors for one collection; `cycle_id` groups a multi-collection check."""

    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(String(36))
    collection: Mapped[str] = mapped_column(String(63))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # ok | drift | failed
    error: Mapped[str | None] = mapped_column(Text)
    sample_size: Mapped[int | None] = mapped_column(Integer)
    model_versions: Mapped[dict[str, Any] | None] = mapped_column(Json)
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("baselines.id", ondelete="SET NULL"))
    runner: Mapped[str | None] = mapped_column(String(200))  # host:pid, to tell replicas apart

    __table_args__ = (
        UniqueConstraint("cycle_id", "collection"),
        Index("ix_cycles_collection_started", "collection", "started_at"),
    )


class MetricPoint(Base):
    """One detector's verdict in one cycle: the time series Grafana and `history` read."""

    __tablename__ = "metric_points"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cycle_pk: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    collection: Mapped[str] = mapped_column(String(63))
    detector: Mapped[str] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)
    sample_size: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(200))
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("baselines.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    __table_args__ = (Index("ix_metric_points_series", "collection", "detector", "ts"),)


class AlertState(Base):
    """Where one alert stands in inactive → pending → firing → resolved; survives restarts."""

    __tablename__ = "alert_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    alertname: Mapped[str] = mapped_column(String(100))
    collection: Mapped[str] = mapped_column(String(63))
    detector: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="inactive")
    consecutive: Mapped[int] = mapped_column(Integer, default=0)
    active_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_value: Mapped[float | None] = mapped_column(Float)
    labels: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_alert_states_collection", "collection"),)


class Delivery(Base):
    """The outbox: one notification one notifier owes, written with the state change it tells of.

    Each attempt is claimed (attempts + 1, next_attempt_at moved past the attempt's timeouts
    plus a backoff) in its own transaction before the POST, so two processes never send the
    same attempt, a crash between the POST and recording it costs one attempt, and no
    notification is sent more than `max_attempts` times.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # the alert
    collection: Mapped[str] = mapped_column(String(63))
    notifier: Mapped[str] = mapped_column(String(100))  # "<index>:<kind>"
    event: Mapped[str] = mapped_column(String(16))  # firing | resolved
    idempotency_key: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed|superseded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("idempotency_key", "notifier"),
        Index("ix_deliveries_collection_status", "collection", "status"),
    )


class SuiteQuery(Base):
    """A reference-suite query with the ids a correct retrieval must return."""

    __tablename__ = "suite_queries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(63))
    query_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32
    relevant_ids: Mapped[list[str]] = mapped_column(Json)
    relevance: Mapped[dict[str, float] | None] = mapped_column(Json)  # id -> grade, when the suite grades
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("collection", "query_id"),)


class FinetuneCandidate(Base):
    """A (query, clicked doc, skipped doc) triplet mined from click feedback."""

    __tablename__ = "finetune_candidates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(63))
    query_id: Mapped[str] = mapped_column(String(200))
    anchor: Mapped[str] = mapped_column(Text)
    positive: Mapped[str] = mapped_column(Text)
    negative: Mapped[str] = mapped_column(Text)
    positive_id: Mapped[str] = mapped_column(String(200))
    negative_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))  # skip_above | hard_negative | thumbs_down | follow_up
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    model_version: Mapped[str | None] = mapped_column(String(200))  # of the query that produced it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("collection", "query_id", "positive_id", "negative_id"),
        Index("ix_finetune_candidates_collection_created", "collection", "created_at"),
    )


class QueryLogMark(Base):
    """Where a collection's last query-log read ended, and the rows it (and earlier reads)
    counted that the next, overlapping read may see again: written with the cycle that read
    them, so a row is counted once even when it is logged late (up to late_arrival)."""

    __tablename__ = "query_log_marks"

    collection: Mapped[str] = mapped_column(String(63), primary_key=True)
    read_until: Mapped[datetime] = mapped_column(UTCDateTime)
    counted_keys: Mapped[bytes] = mapped_column(LargeBinary)  # int64 little-endian: query_id hashes
    counted_ts: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian: their ts
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedbackState(Base):
    """How far the query log has been mined for fine-tuning candidates, per collection."""

    __tablename__ = "feedback_state"

    collection: Mapped[str] = mapped_column(String(63), primary_key=True)
    mined_until: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ = [
    "AlertState",
    "Base",
    "Baseline",
    "Cycle",
    "Delivery",
    "FeedbackState",
    "FinetuneCandidate",
    "MetricPoint",
    "QueryLogMark",
    "SuiteQuery",
    "utcnow",
]
