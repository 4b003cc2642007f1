"""alert delivery outbox: which notifiers still owe an alert's latest notification

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.add_column(sa.Column("undelivered", JSON, nullable=False, server_default="[]"))
        batch.create_index("ix_alert_states_collection", ["collection"])


def downgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.drop_index("ix_alert_states_collection")
        batch.drop_column("undelivered")
