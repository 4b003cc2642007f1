"""driftwatch's own database: engine set-up and Alembic migrations.

SQLite (a file next to the config) by default, PostgreSQL when replicas share work.
Migrations run inside one transaction under an advisory lock on PostgreSQL, so two
replicas starting together cannot both apply the same revision.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from driftwatch.errors import StoreError
from driftwatch.secrets import known_passwords, redact, scrub

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(str(importlib.resources.files("driftwatch.migrations")))
_MIGRATION_LOCK_KEY = 0x64726966  # "drif": one advisory lock id for schema changes


def create_store_engine(url: str) -> Engine:
    """An engine with the settings a long-running sidecar wants for its own store."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A running cycle holds one connection for its collection lock and uses one more for its
    # reads and writes; the daemon runs up to four at once, and /readyz needs one too.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=4,
        max_overflow=8,
        connect_args={"application_name": "driftwatch-store", "connect_timeout": 10},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (status, Grafana) never block a cycle
    cursor.close()


def describe_error(engine: Engine, exc: BaseException) -> str:
    """A one-paragraph cause with any password scrubbed out."""
    url = engine.url.render_as_string(hide_password=False)
    cause = getattr(exc, "orig", None) or exc
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return scrub(
        f"store {redact(url)}: {message}",
        known_passwords([url]),
    )


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StoreError(describe_error(engine, exc)) from None


def _migrate(engine: Engine, action: str, revision: str) -> None:
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            getattr(command, action)(cfg, revision)
    except SQLAlchemyError as exc:
        raise StoreError(describe_error(engine, exc)) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`; a store already there is left as it is."""
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _migrate(engine, "downgrade", revision)


def ensure_current(engine: Engine) -> None:
    """Refuse to run against a store whose schema is behind or ahead of this release."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise StoreError(
            f"store schema is at {current or 'nothing'} but this driftwatch needs {head}: "
            "run `driftwatch db upgrade`"
        )


__all__ = [
    "create_store_engine",
    "current_revision",
    "downgrade",
    "ensure_current",
    "head_revision",
    "upgrade",
]
