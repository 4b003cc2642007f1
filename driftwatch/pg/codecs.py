"""Values crossing the wire to and from the monitored database.

Two paths, one for each size of read:
* bulk (the sample, tuple ids, query-log scores): one binary `COPY ... TO STDOUT` of
  fixed-size rows decoded by a single `np.frombuffer`: no Python object per row, about 10x
  faster than per-row adapters. `copy_layout` names the columns, `decode_copy` checks the
  stream (header, field counts, lengths, vector dimensions) and returns the rows.
* per row (suite query vectors, sentinels, documents, logged query embeddings, pairs):
  pgvector-python's `Vector` / `HalfVector` / `SparseVector`, registered on the connection
  with `register_vector`, and `to_array` for the numpy view the detectors want.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector, SparseVector, Vector
from psycopg import sql

from driftwatch.errors import SourceError

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(COPY_SIGNATURE) + 8  # signature, int32 flags, int32 header-extension length
_TRAILER = 2  # int16 -1
_SCALARS = {"int8": ">i8", "float8": ">f8", "bool": "u1", "tid": [("block", ">u4"), ("offset", ">u2")]}
_TID_BITS = 16  # a tuple id travels in numpy as block << 16 | offset (offsets are < 2^16)


def copy_layout(**columns: str | int) -> np.dtype:
    """The numpy dtype of one binary COPY row: each column is "int8", "float8", "bool", "tid"
    (a `ctid` as sent: uint32 block, uint16 offset; `tids_of` makes them int64), or an int d
    for a float4 `vector(d)` (pgvector's binary form: int16 dim, int16 unused, d floats).
    Fields named with a leading underscore are the wire framing `decode_copy` checks."""
    fields: list[tuple[Any, ...]] = [("_count", ">i2")]
    for name, kind in columns.items():
        fields.append((f"_{name}_len", ">i4"))
        if isinstance(kind, int):
            fields += [(f"_{name}_dim", ">u2"), (f"_{name}_unused", ">u2"), (name, ">f4", (kind,))]
        else:
            fields.append((name, _SCALARS[kind]))
    return np.dtype(fields)


def decode_copy(buffer: bytes, layout: np.dtype) -> np.ndarray:
    """The rows of a binary COPY stream of fixed-size `layout` rows, checked against it."""
    if not buffer:
        return np.empty(0, dtype=layout)
    if buffer[: len(COPY_SIGNATURE)] != COPY_SIGNATURE or len(buffer) < _HEADER + _TRAILER:
        raise SourceError("unexpected binary COPY header from the server")
    start = _HEADER + int.from_bytes(buffer[_HEADER - 4 : _HEADER], "big")
    body = len(buffer) - start - _TRAILER
    names = [n for n in layout.names if not n.startswith("_")]
    if body < 0 or body % layout.itemsize:
        raise SourceError(f"binary COPY stream does not hold fixed-size ({', '.join(names)}) rows")
    rows = np.frombuffer(buffer, dtype=layout, offset=start, count=body // layout.itemsize)
    problems = rows["_count"] != len(names)
    for name in names:
        field = layout.fields[name][0]  # type: ignore[index]
        vector = field.shape != ()
        size = field.itemsize + (4 if vector else 0)
        problems |= rows[f"_{name}_len"] != size
        if vector:
            problems |= (rows[f"_{name}_dim"] != field.shape[0]) | (rows[f"_{name}_unused"] != 0)
    if problems.any():
        raise SourceError(f"binary COPY rows do not match the expected ({', '.join(names)}) layout")
    return rows


def tids_of(column: np.ndarray) -> np.ndarray:
    """A decoded "tid" column as int64 block << 16 | offset (sortable, set-operable)."""
    return (column["block"].astype(np.int64) << _TID_BITS) | column["offset"].astype(np.int64)


def decode_tid_vectors(buffer: bytes, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tuple ids, dimension per row (-1: NULL), vectors of the rows of `dim`) from a binary
    COPY of (ctid, vector) rows.

    All rows of `dim` (the usual case) decode with one frombuffer; a stream with NULL or
    other-dimension vectors is walked row by row (Python, only then), so those rows are
    counted without a placeholder vector computed in SQL for each row."""
    try:
        rows = decode_copy(buffer, copy_layout(tid="tid", v=dim))
        return tids_of(rows["tid"]), np.full(len(rows), dim, np.int64), rows["v"].astype(np.float32)
    except SourceError:
        pass
    tids, dims, offsets = _walk_tid_vectors(buffer)
    keep = offsets[dims == dim]
    vectors = np.empty((len(keep), dim), dtype=np.float32)
    for row, offset in enumerate(keep.tolist()):
        vectors[row] = np.frombuffer(buffer, dtype=">f4", count=dim, offset=offset)
    return tids, dims, vectors


def _walk_tid_vectors(buffer: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tids, dims, offsets of the first float) of each (ctid, vector or NULL) COPY row."""
    if buffer[: len(COPY_SIGNATURE)] != COPY_SIGNATURE or len(buffer) < _HEADER + _TRAILER:
        raise SourceError("unexpected binary COPY header from the server")
    view = memoryview(buffer)
    pos = _HEADER + int.from_bytes(view[_HEADER - 4 : _HEADER], "big")
    tids, dims, offsets = [], [], []
    while True:
        count = int.from_bytes(view[pos : pos + 2], "big", signed=True)
        if count == -1:
            break
        if count != 2 or int.from_bytes(view[pos + 2 : pos + 6], "big") != 6:
            raise SourceError("binary COPY rows do not match the expected (tid, vector) layout")
        block, offset = (
            int.from_bytes(view[pos + 6 : pos + 10], "big"),
            int.from_bytes(view[pos + 10 : pos + 12], "big"),
        )
        tids.append(block << _TID_BITS | offset)
        length = int.from_bytes(view[pos + 12 : pos + 16], "big", signed=True)
        pos += 16
        if length < 0:
            dims.append(-1)
            offsets.append(-1)
            continue
        dim = int.from_bytes(view[pos : pos + 2], "big")
        if length != 4 + 4 * dim:
            raise SourceError("binary COPY rows do not match the expected (tid, vector) layout")
        dims.append(dim)
        offsets.append(pos + 4)
        pos += length
    return np.asarray(tids, np.int64), np.asarray(dims, np.int64), np.asarray(offsets, np.int64)


def copy_bytes(conn: psycopg.Connection, query: sql.Composable) -> bytes:
    """The whole binary COPY stream of `query`."""
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def copy_rows(conn: psycopg.Connection, query: sql.Composable, layout: np.dtype) -> np.ndarray:
    """Run `query` as one binary COPY and decode it in one pass."""
    return decode_copy(copy_bytes(conn, query), layout)


def to_array(value: Vector | HalfVector | SparseVector | None) -> np.ndarray | None:
    """A pgvector value as a float32 numpy vector (halfvec widened, sparsevec made dense)."""
    if value is None:
        return None
    if isinstance(value, Vector | HalfVector | SparseVector):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    raise SourceError(f"expected a pgvector value, got {type(value).__name__}: is the column a vector?")


def to_vector(values: np.ndarray | list[float]) -> Vector:
    """A query vector as a bound parameter (binary, exact float4) rather than SQL text."""
    return Vector(np.asarray(values, dtype=np.float32))


__all__ = [
    "copy_bytes",
    "copy_layout",
    "copy_rows",
    "decode_copy",
    "decode_tid_vectors",
    "to_array",
    "to_vector",
]
