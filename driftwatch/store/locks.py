"""One runner per collection across replicas: a PostgreSQL advisory lock on driftwatch's own
store, held on a dedicated connection for the whole cycle.

A session lock dies with its connection, so a replica that crashes or loses the store
releases the collection at once; there is nothing to expire or clean up. A SQLite store
has no such lock: run one daemon per SQLite file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from driftwatch.errors import StoreError
from driftwatch.store import describe_error

LOCK_NAMESPACE = 0x6477  # "dw": the first key of the two-key advisory lock space


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


__all__ = ["collection_lock", "lock_key"]
