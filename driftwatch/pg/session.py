"""Connections to the monitored PostgreSQL: the only place driftwatch opens one.

A `Session` is one read-only connection (statement_timeout, application_name, a connect
timeout) whose reads share one REPEATABLE READ snapshot until `end_snapshot()`: the sample,
the query-log window, the suite's queries and the sentinels of a cycle all see the same
state of the store, and its table descriptions are read once per snapshot.

`Sessions` is what one pass over a collection holds: one `Session` per distinct DSN (the
vector table's, or each source's when the collection lists several, and the query log's when
it names another database), each opened on first use and all closed together. `Monitor`
opens it for a collection's whole pass (the cycle, then the click mining), so a pass costs
one connection per monitored database.

Database failures leave as one-line `SourceError`s naming the table and what was being
done (`Session.reading`); a DSN only ever appears with its password redacted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import psycopg
from pgvector.psycopg import register_vector

from driftwatch.config import CollectionSettings
from driftwatch.errors import SourceError
from driftwatch.pg.tables import Source, VectorColumn, describe
from driftwatch.secrets import redact

log = logging.getLogger(__name__)

APPLICATION_NAME = "driftwatch"
CONNECT_TIMEOUT = 10  # seconds; statement_timeout only starts once connected


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(
    dsn: str, statement_timeout: float, name: str = APPLICATION_NAME, *, read_only: bool = True
) -> psycopg.Connection:
    """A read-only REPEATABLE READ connection: the monitor never writes to the store it
    watches. Only `querylog import`, on a user's explicit command, asks for a writable one."""
    try:
        conn = psycopg.connect(dsn, application_name=name, connect_timeout=CONNECT_TIMEOUT, autocommit=True)
    except psycopg.Error as exc:
        raise SourceError(f"cannot connect to {redact(dsn)}: {first_line(exc)}") from None
    try:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (f"{int(statement_timeout * 1000)}ms",)
        )
        if read_only:
            conn.execute("SELECT set_config('default_transaction_read_only', 'on', false)")
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.autocommit = False  # the first read begins the snapshot; end_snapshot() ends it
    except psycopg.Error as exc:
        conn.close()
        raise SourceError(f"cannot set up a session on {redact(dsn)}: {first_line(exc)}") from None
    return conn


@contextmanager
def translated(label: str, doing: str, statement_timeout: float) -> Iterator[None]:
    """Database failures as one-line VectorStoreErrors naming `label` and what was being done."""
    try:
        yield
    except psycopg.errors.QueryCanceled:
        raise SourceError(f"{label}: {doing} exceeded statement_timeout ({statement_timeout:g}s)") from None
    except psycopg.errors.DataException as exc:
        raise SourceError(f"{label}: {doing} rejected: {first_line(exc)}") from None
    except psycopg.Error as exc:
        raise SourceError(f"{label}: {doing}: {first_line(exc)}") from None


class Session:
    """One read-only connection to one monitored database; its reads share one snapshot."""

    def __init__(self, dsn: str, statement_timeout: float, name: str = APPLICATION_NAME) -> None:
        self.statement_timeout = statement_timeout
        self.conn = connect(dsn, statement_timeout, name)
        self._described: dict[tuple[str | None, ...], VectorColumn] = {}
        self._vectors = False

    @contextmanager
    def reading(self, label: str, doing: str, *, vectors: bool = False) -> Iterator[psycopg.Connection]:
        """The connection for one read; `vectors` registers pgvector's types on it (once) for
        per-row vector values and parameters."""
        with translated(label, doing, self.statement_timeout):
            if vectors and not self._vectors:
                register_vector(self.conn)
                self._vectors = True
            yield self.conn

    @contextmanager
    def scoped(self) -> Iterator[psycopg.Connection]:
        """A savepoint rolled back at the end: planner knobs set (locally) inside it end with it,
        while the snapshot goes on."""
        if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("SELECT 1")  # begin the snapshot here, or the savepoint's end would end it
        with self.conn.transaction(force_rollback=True):
            yield self.conn

    def describe(self, source: Source, collection: CollectionSettings) -> VectorColumn:
        """The collection's table and vector column, read from the catalog once per snapshot."""
        key = (collection.table, collection.id_column, collection.vector_column)
        key += (collection.model_version_column,)
        if key not in self._described:
            self._described[key] = describe(self.conn, source, collection)
        return self._described[key]

    def end_snapshot(self) -> None:
        """End the transaction (releasing its locks and its hold on vacuum); the next read
        begins a new snapshot on the same connection."""
        if not self.conn.closed and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                self.conn.rollback()
            except psycopg.Error as exc:  # a lost connection: the next read says so, with its table
                log.debug("ending the snapshot failed: %s", first_line(exc))
        self._described.clear()

    def close(self) -> None:
        self.conn.close()


class Sessions:
    """One pass's sessions for a collection: one per distinct DSN, opened on first use."""

    def __init__(self, collection: CollectionSettings, name: str = APPLICATION_NAME) -> None:
        self.collection = collection
        self.name = name
        self._open: dict[str, Session] = {}

    def on(self, dsn: str) -> Session:
        """The session on database `dsn`, opened on first use: two sources (or a source and
        the query log) in one database share it, and so share its snapshot."""
        if dsn not in self._open:
            self._open[dsn] = Session(dsn, self.collection.statement_timeout, self.name)
        return self._open[dsn]

    @property
    def store(self) -> Session:
        """The session on the database that holds the collection's table (a collection with
        several sources reads each through `on(source.dsn)`, see `pg.sources`)."""
        if self.collection.dsn is None:
            raise SourceError(
                f"collection {self.collection.name}: this reads one table, and the collection has "
                f"{len(self.collection.sources)} sources"
            )
        return self.on(self.collection.dsn)

    @property
    def query_log(self) -> Session:
        """The session on the query log's database (the store's own when it names no other)."""
        config = self.collection.query_log
        dsn = (config.dsn if config else None) or self.collection.dsn
        assert dsn is not None  # config: several sources need query_log.dsn
        return self.on(dsn)

    @property
    def connections(self) -> int:
        return len(self._open)

    def end_snapshot(self) -> None:
        for session in self._open.values():
            session.end_snapshot()

    def close(self) -> None:
        for session in self._open.values():
            session.close()
        self._open.clear()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def sessions_for(collection: CollectionSettings, given: Sessions | None) -> Iterator[Sessions]:
    """`given` (left open: its owner closes it), or new sessions closed at the end."""
    if given is not None:
        yield given
        return
    with Sessions(collection) as sessions:
        yield sessions


@contextmanager
def writable(dsn: str, statement_timeout: float, label: str, doing: str) -> Iterator[psycopg.Connection]:
    """One writable transaction, for `querylog import` only: all of it commits, or none."""
    conn = connect(dsn, statement_timeout, read_only=False)
    try:
        with translated(label, doing, statement_timeout), conn.transaction():
            register_vector(conn)
            yield conn
    finally:
        conn.close()


__all__ = ["Session", "Sessions", "connect", "first_line", "sessions_for", "translated", "writable"]
