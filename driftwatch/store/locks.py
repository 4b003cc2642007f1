"""One runner per collection across replicas: a PostgreSQL advisory lock on driftwatch's own
store, held on a dedicated connection for the whole cycle.

A session lock dies with its connection, so a replica that crashes or loses the store
releases the collection at once; there is nothing to expire or clean up. A SQLite store
has no such lock, so it serves one daemon: `daemon_lock` holds an exclusive lock on
`<store file>.lock` for the daemon's life and refuses a second one.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from driftwatch.errors import StoreError
from driftwatch.store import describe_error

LOCK_NAMESPACE = 0x6477  # "dw": the first key of the two-key advisory lock space
ALERTS_NAMESPACE = 0x6461  # "da": a collection's alert state, held for one transaction


def lock_key(collection: str) -> int:
    """A signed 32-bit key; two names that collide only serialise each other's cycles."""
    key = zlib.crc32(collection.encode())
    return key - (1 << 32) if key >= 1 << 31 else key


@contextmanager
def collection_lock(engine: Engine, collection: str) -> Iterator[bool]:
    """Yields True when this process may run the collection's cycle now, False when another holds it."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    params = {"ns": LOCK_NAMESPACE, "key": lock_key(collection)}
    try:
        conn = engine.connect()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"), params).scalar())
        conn.commit()
    except SQLAlchemyError as exc:
        raise StoreError(describe_error(engine, exc)) from None
    try:
        yield got
    finally:
        try:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), params)
                conn.commit()
        except SQLAlchemyError:
            conn.invalidate()  # a dead connection took its lock with it; never pool a maybe-locked one
        finally:
            conn.close()


def daemon_lock(engine: Engine) -> IO[bytes] | None:
    """For a SQLite store, an exclusive lock on `<file>.lock` held while the returned file is
    open (the kernel drops it when the process dies, SIGKILL included); None for PostgreSQL,
    whose replicas share work through advisory locks. `flock` on a separate file: SQLite's
    own POSIX locks on the database file must not be disturbed."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    path = Path(database).resolve().with_name(Path(database).name + ".lock")
    try:
        handle = path.open("a+b")
    except OSError as exc:
        raise StoreError(f"cannot create the store lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "unknown"
        handle.close()
        raise StoreError(
            f"another driftwatch daemon (pid {holder}) is running on the SQLite store {database}: "
            "a SQLite store serves one daemon. Stop the other one, or give this one its own store; "
            'replicas need a PostgreSQL store ([store] url = "postgresql+psycopg://..."), where '
            "they share the collections through advisory locks"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle


def lock_alert_state(session: Session, collection: str) -> None:
    """Take the write lock before reading a collection's alert state to change it, so a
    `check` beside the daemon waits for the daemon's step instead of repeating it from a
    stale read (and paging twice). PostgreSQL: a transaction advisory lock; SQLite: a write
    that changes nothing, which makes SQLite take its single writer lock now."""
    if session.get_bind().dialect.name == "postgresql":
        params = {"ns": ALERTS_NAMESPACE, "key": lock_key(collection)}
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), params)
    else:
        session.execute(text("UPDATE alert_states SET id = id WHERE 1 = 0"))


__all__ = ["collection_lock", "daemon_lock", "lock_alert_state", "lock_key"]
