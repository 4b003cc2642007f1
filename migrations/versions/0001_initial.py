"""initial schema: baselines, cycles, metric points, alert states, suite, candidates

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Spelled out here, not imported from driftwatch.store.models: a migration must not change
# when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("alertname", sa.String(length=100), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("detector", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive", sa.Integer(), nullable=False),
        sa.Column("active_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("annotations", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_states")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_alert_states_fingerprint")),
    )
    op.create_table(
        "baselines",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("sample_rows", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("sample", sa.LargeBinary(), nullable=False),
        sa.Column("sample_ids", JSON, nullable=False),
        sa.Column("arrays", sa.LargeBinary(), nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_baselines")),
    )
    op.create_index("ix_baselines_collection_created", "baselines", ["collection", "created_at"])

    op.create_table(
        "finetune_candidates",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("query_id", sa.String(length=200), nullable=False),
        sa.Column("anchor", sa.Text(), nullable=False),
        sa.Column("positive", sa.Text(), nullable=False),
        sa.Column("negative", sa.Text(), nullable=False),
        sa.Column("positive_id", sa.String(length=200), nullable=False),
        sa.Column("negative_id", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_candidates")),
        sa.UniqueConstraint(
            "collection",
            "query_id",
            "positive_id",
            "negative_id",
            name=op.f("uq_finetune_candidates_collection"),
        ),
    )
    op.create_index(
        "ix_finetune_candidates_collection_created", "finetune_candidates", ["collection", "created_at"]
    )

    op.create_table(
        "suite_queries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("query_id", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("relevant_ids", JSON, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suite_queries")),
        sa.UniqueConstraint("collection", "query_id", name=op.f("uq_suite_queries_collection")),
    )
    op.create_table(
        "cycles",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("cycle_id", sa.String(length=36), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sample_size", sa.Integer(), nullable=True),
        sa.Column("model_versions", JSON, nullable=True),
        sa.Column("baseline_id", BIG_ID, nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["baselines.id"],
            name=op.f("fk_cycles_baseline_id_baselines"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
        sa.UniqueConstraint("cycle_id", "collection", name=op.f("uq_cycles_cycle_id")),
    )
    op.create_index("ix_cycles_collection_started", "cycles", ["collection", "started_at"])

    op.create_table(
        "metric_points",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("cycle_pk", BIG_ID, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("detector", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(length=200), nullable=True),
        sa.Column("baseline_id", BIG_ID, nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["baselines.id"],
            name=op.f("fk_metric_points_baseline_id_baselines"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["cycle_pk"],
            ["cycles.id"],
            name=op.f("fk_metric_points_cycle_pk_cycles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_points")),
    )
    op.create_index("ix_metric_points_series", "metric_points", ["collection", "detector", "ts"])


def downgrade() -> None:
    op.drop_index("ix_metric_points_series", table_name="metric_points")

    op.drop_table("metric_points")
    op.drop_index("ix_cycles_collection_started", table_name="cycles")

    op.drop_table("cycles")
    op.drop_table("suite_queries")
    op.drop_index("ix_finetune_candidates_collection_created", table_name="finetune_candidates")

    op.drop_table("finetune_candidates")
    op.drop_index("ix_baselines_collection_created", table_name="baselines")

    op.drop_table("baselines")
    op.drop_table("alert_states")
