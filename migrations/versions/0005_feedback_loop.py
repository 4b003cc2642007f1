"""feedback loop: the query-log read mark (late rows counted once), the model_version of each
fine-tuning candidate, graded relevance of suite queries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Spelled out here, not imported from driftwatch.store.models: a migration must not change
# when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "query_log_marks",
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("read_until", WHEN, nullable=False),
        sa.Column("counted_keys", sa.LargeBinary(), nullable=False),
        sa.Column("counted_ts", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("collection", name=op.f("pk_query_log_marks")),
    )
    with op.batch_alter_table("finetune_candidates") as batch:
        batch.add_column(sa.Column("model_version", sa.String(length=200), nullable=True))
    with op.batch_alter_table("suite_queries") as batch:
        batch.add_column(sa.Column("relevance", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suite_queries") as batch:
        batch.drop_column("relevance")
    with op.batch_alter_table("finetune_candidates") as batch:
        batch.drop_column("model_version")
    op.drop_table("query_log_marks")
