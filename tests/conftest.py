"""Shared fixtures: one embedded PostgreSQL 18 + pgvector per test session, a fresh
database per test that wants one. No test mocks the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine

from driftwatch import store
from driftwatch.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", delete_on_stop=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """DSN of a new, empty database (with pgvector) dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = pg.create_database(name)
    yield dsn
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """driftwatch's own store in a fresh, migrated SQLite file."""
    eng = store.create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A server this test may stop and start (the shared one serves the other tests)."""
    server = EmbeddedPostgres(tmp_path / "pg", delete_on_stop=False)
    server.start()
    yield server
    server.delete_on_stop = True
    server.stop()
