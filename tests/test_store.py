"""The store: migrations up, down and up again on SQLite and on real PostgreSQL, models
and migrations in agreement, arrays read back bit for bit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from driftwatch import store
from driftwatch.errors import StoreError
from driftwatch.store.models import Base, Baseline, Cycle, MetricPoint

from helpers import run_cli, sqlalchemy_url

TABLES = {
    "alert_states", "baselines", "cycles", "deliveries", "feedback_state",
    "finetune_candidates", "metric_points", "query_log_marks", "suite_queries",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = sqlalchemy_url(request.getfixturevalue("pg_db"))
    eng = store.create_store_engine(url)
    yield eng
    eng.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    assert store.current_revision(engine) is None
    store.upgrade(engine)
    assert tables(engine) == TABLES
    assert store.current_revision(engine) == store.head_revision()
    store.upgrade(engine)  # twice is harmless
    store.downgrade(engine, "base")
    assert tables(engine) == set()
    assert store.current_revision(engine) is None
    store.upgrade(engine)
    assert tables(engine) == TABLES
    store.ensure_current(engine)


def test_models_match_migrations(engine: Engine) -> None:
    store.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_ensure_current_refuses_an_old_schema(engine: Engine) -> None:
    with pytest.raises(StoreError, match="run `driftwatch db upgrade`"):
        store.ensure_current(engine)


def test_arrays_and_times_round_trip_exactly(engine: Engine) -> None:
    store.upgrade(engine)
    rng = np.random.default_rng(7)
    sample = rng.standard_normal((50, 384)).astype(np.float32)
    started = datetime(2026, 11, 22, 7, 30, 0, 123456, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        baseline = Baseline(
            collection="docs",
            model_version="e5-v2",
            metric="cosine",
            sample_rows=sample.shape[0],
            dim=sample.shape[1],
            sample=sample.tobytes(),
            sample_ids=[str(i) for i in range(50)],
            arrays=b"",
            summary={"null": {"centroid_distance": {"mean": 1e-4, "q": [0.1, 0.2]}}},
        )
        session.add(baseline)
        session.flush()
        cycle = Cycle(
            cycle_id="c1", collection="docs", started_at=started, status="ok", baseline_id=baseline.id
        )
        session.add(cycle)
        session.flush()
        session.add(
            MetricPoint(
                cycle_pk=cycle.id,
                ts=started,
                collection="docs",
                detector="spatial_kl",
                value=0.01,
                threshold=0.02,
                p_value=0.4,
                drifted=False,
                details={"top_cells": [3, 7]},
            )
        )
    with Session(engine) as session:
        stored = session.scalars(select(Baseline)).one()
        back = np.frombuffer(stored.sample, dtype=np.float32).reshape(stored.sample_rows, stored.dim)
        assert np.array_equal(back, sample)
        assert stored.summary["null"]["centroid_distance"]["q"] == [0.1, 0.2]
        point = session.scalars(select(MetricPoint)).one()
        assert point.ts == started and point.ts.tzinfo is not None
        assert point.details == {"top_cells": [3, 7]}


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    store.upgrade(engine)
    with Session(engine) as session, pytest.raises(Exception, match="timezone-aware"):
        session.add(Cycle(cycle_id="c", collection="d", started_at=datetime(2026, 1, 1), status="ok"))
        session.commit()


def test_unreachable_store_is_a_clear_error() -> None:
    engine = store.create_store_engine("postgresql+psycopg://dw:pw-not-shown@127.0.0.1:1/dw")
    with pytest.raises(StoreError) as caught:
        store.upgrade(engine)
    message = str(caught.value)
    assert "127.0.0.1" in message and "pw-not-shown" not in message and "***" in message


def test_cli_db_upgrade_on_empty_postgres_twice(tmp_path: Path, pg_db: str) -> None:
    config = tmp_path / "driftwatch.toml"
    config.write_text(f'[store]\nurl = "{sqlalchemy_url(pg_db)}"\n')
    first = run_cli("--config", str(config), "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty to" in first.stdout
    second = run_cli("--config", str(config), "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert "already at revision" in second.stdout
    eng = store.create_store_engine(sqlalchemy_url(pg_db))
    try:
        assert tables(eng) == TABLES
    finally:
        eng.dispose()
    current = run_cli("--config", str(config), "db", "current")
    assert "up to date" in current.stdout
    down = run_cli("--config", str(config), "db", "downgrade", "base")
    assert down.returncode == 0 and "base (empty)" in down.stdout
