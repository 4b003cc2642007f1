"""delivery outbox: one row per notification a notifier owes, with its attempts and idempotency key

The per-alert `undelivered` list of 0002 becomes rows of `deliveries`; notifications still
owed when upgrading stay owed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Spelled out here, not imported from driftwatch.store.models: a migration must not change
# when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

alert_states = sa.table(
    "alert_states",
    sa.column("fingerprint", sa.String),
    sa.column("collection", sa.String),
    sa.column("state", sa.String),
    sa.column("last_notified_at", WHEN),
    sa.column("updated_at", WHEN),
    sa.column("undelivered", JSON),
)


def _key(fingerprint: str, event: str, at: datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{fingerprint}-{event}-{at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


def upgrade() -> None:
    deliveries = op.create_table(
        "deliveries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("notifier", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("idempotency_key", "notifier", name=op.f("uq_deliveries_idempotency_key")),
    )
    op.create_index("ix_deliveries_collection_status", "deliveries", ["collection", "status"])
    now = datetime.now(UTC)
    rows = []
    for row in op.get_bind().execute(sa.select(alert_states)):
        event = "resolved" if row.state == "resolved" else "firing"
        changed = row.last_notified_at or row.updated_at or now
        for notifier in row.undelivered or []:
            rows.append(
                {
                    "fingerprint": row.fingerprint, "collection": row.collection, "notifier": notifier,
                    "event": event, "idempotency_key": _key(row.fingerprint, event, changed),
                    "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None,
                    "created_at": now, "updated_at": now,
                }
            )  # fmt: skip
    if rows:
        op.bulk_insert(deliveries, rows)
    with op.batch_alter_table("alert_states") as batch:
        batch.drop_column("undelivered")


def downgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.add_column(sa.Column("undelivered", JSON, nullable=False, server_default="[]"))
    bind = op.get_bind()
    owed: dict[str, list[str]] = {}
    pending = sa.text("SELECT fingerprint, notifier FROM deliveries WHERE status = 'pending'")
    for fingerprint, notifier in bind.execute(pending):
        owed.setdefault(fingerprint, []).append(notifier)
    for fingerprint, notifiers in owed.items():
        bind.execute(
            alert_states.update()
            .where(alert_states.c.fingerprint == fingerprint)
            .values(undelivered=notifiers)
        )
    op.drop_index("ix_deliveries_collection_status", table_name="deliveries")
    op.drop_table("deliveries")
