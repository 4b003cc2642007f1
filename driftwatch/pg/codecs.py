"""Values crossing the wire to and from the monitored database.

Two paths, one for each size of read:
* bulk (the sample, tuple ids, query-log scores): one binary `COPY ... TO STDOUT` of
  fixed-size rows decoded by `np.frombuffer`, ~8 MB at a time (`copy_batches`, so a
  large read is never held raw and whole): no Python object per row, about 10x faster
  than per-row adapters. `copy_layout` names the columns, `decode_copy` checks the
  stream (header, field counts, lengths, vector dimensions) and returns the rows. The
  sampler's (ctid, vector) reads may hold NULL and other-dimension rows:
  `tid_vector_batches` decodes runs of whole rows the same way and walks only those odd
  rows, and `VectorBlocks` keeps the vectors in float32 blocks until the kept rows are
  copied out once.
* per row (suite query vectors, sentinels, documents, logged query embeddings, pairs):
  pgvector-python's `Vector` / `HalfVector` / `SparseVector`, registered on the connection
  with `register_vector`, and `to_array` for the numpy view the detectors want.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector, SparseVector, Vector
from psycopg import sql

from driftwatch.errors import SourceError

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(COPY_SIGNATURE) + 8  # signature, int32 flags, int32 header-extension length
_TRAILER = 2  # int16 -1
BATCH_BYTES = 8 << 20  # raw COPY bytes decoded at once
_SCALARS = {"int8": ">i8", "float8": ">f8", "bool": "u1", "tid": [("block", ">u4"), ("offset", ">u2")]}
_TID_BITS = 16  # a tuple id travels in numpy as block << 16 | offset (offsets are < 2^16)
SEGMENT_BYTES = 40 << 20  # vectors read are kept in blocks this large: above glibc's 32 MB mmap bound
BLOCK_ROWS = 8192  # rows gathered at once in VectorBlocks.take
_RUN_ROWS = 1024  # (ctid, vector) rows checked at once: bounds the re-check after an odd row


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


def _rows_start(buffer: bytes, final: bool) -> int | None:
    """Where a binary COPY stream's rows begin (past the signature, flags and header
    extension), or None while the header has not fully arrived."""
    if len(buffer) < _HEADER:
        if final:
            raise SourceError("unexpected binary COPY header from the server")
        return None
    if buffer[: len(COPY_SIGNATURE)] != COPY_SIGNATURE:
        raise SourceError("unexpected binary COPY header from the server")
    return _HEADER + int.from_bytes(buffer[_HEADER - 4 : _HEADER], "big")


class _RowDecoder:
    """Decodes a binary COPY stream of fixed-size `layout` rows piece by piece: the header
    once, then whole rows, carrying a partial row over to the next piece."""

    def __init__(self, layout: np.dtype) -> None:
        self.layout = layout
        self.names = [n for n in layout.names or () if not n.startswith("_")]
        self.rest = b""
        self.started = False

    def feed(self, data: bytes, final: bool = False) -> np.ndarray:
        buffer = self.rest + data if self.rest else data
        if final and not buffer and not self.started:
            return np.empty(0, dtype=self.layout)
        offset = 0
        if not self.started:
            start = _rows_start(buffer, final)
            if start is None:
                self.rest = buffer
                return np.empty(0, dtype=self.layout)
            offset, self.started = start, True
        body = len(buffer) - offset - (_TRAILER if final else 0)
        count = max(body, 0) // self.layout.itemsize
        if final and (body < 0 or body % self.layout.itemsize):
            raise SourceError(f"binary COPY stream does not hold fixed-size ({', '.join(self.names)}) rows")
        rows = np.frombuffer(buffer, dtype=self.layout, offset=offset, count=count)
        self.rest = b"" if final else buffer[offset + count * self.layout.itemsize :]
        self._check(rows)
        return rows

    def _check(self, rows: np.ndarray) -> None:
        problems = rows["_count"] != len(self.names)
        for name in self.names:
            field = self.layout.fields[name][0]  # type: ignore[index]
            vector = field.shape != ()
            size = field.itemsize + (4 if vector else 0)
            problems |= rows[f"_{name}_len"] != size
            if vector:
                problems |= (rows[f"_{name}_dim"] != field.shape[0]) | (rows[f"_{name}_unused"] != 0)
        if problems.any():
            raise SourceError(f"binary COPY rows do not match the expected ({', '.join(self.names)}) layout")


def decode_copy(buffer: bytes, layout: np.dtype) -> np.ndarray:
    """The rows of a binary COPY stream of fixed-size `layout` rows, checked against it."""
    return _RowDecoder(layout).feed(buffer, final=True)


def _raw_batches(
    conn: psycopg.Connection, query: sql.Composable, batch_bytes: int
) -> Iterator[tuple[bytes, bool]]:
    """(raw bytes, is it the last piece) of the binary COPY of `query`, about `batch_bytes` at a time."""
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        pending: list[bytes] = []
        size = 0
        for chunk in copy:
            pending.append(bytes(chunk))
            size += len(chunk)
            if size >= batch_bytes:
                yield b"".join(pending), False
                pending, size = [], 0
        yield b"".join(pending), True


def copy_batches(
    conn: psycopg.Connection, query: sql.Composable, layout: np.dtype, batch_bytes: int = BATCH_BYTES
) -> Iterator[np.ndarray]:
    """Run `query` as one binary COPY and yield its rows decoded in batches of about
    `batch_bytes`: a caller that converts each batch and drops it never holds the raw
    stream whole (a 150k x 1,536-d read is 0.9 GB of it)."""
    decoder = _RowDecoder(layout)
    for data, final in _raw_batches(conn, query, batch_bytes):
        yield decoder.feed(data, final=final)


def copy_chosen_vectors(
    conn: psycopg.Connection, query: sql.Composable, dim: int, tids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tuple ids, dimension per row (-1: NULL), vectors of the rows of `dim`), in tid order,
    of a (ctid, vector) `query` known to return the rows `tids` (sorted) at most.

    Each vector goes from its COPY batch straight to its row of the result, whatever order
    the rows come in: one copy, no intermediate blocks. The slots of rows that are NULL, of
    another dimension or absent are closed up in place at the end."""
    out = np.empty((len(tids), dim), np.float32)
    dims = np.full(len(tids), -2, np.int64)  # -2: not returned
    for part in tid_vector_batches(conn, query, dim):
        rank = np.minimum(np.searchsorted(tids, part.tids), max(len(tids) - 1, 0))
        if len(part.tids) and not np.array_equal(tids[rank], part.tids):
            raise SourceError("the COPY returned rows that were not asked for")
        dims[rank] = part.dims
        good, at = rank[part.dims == dim], 0
        for run in part.runs:
            out[good[at : at + len(run)]] = run
            at += len(run)
    kept = np.flatnonzero(dims == dim)
    if len(kept) < len(tids):
        for start in range(0, len(kept), BLOCK_ROWS):  # kept[i] >= i: each row moves up, read first
            stop = min(start + BLOCK_ROWS, len(kept))
            out[start:stop] = out[kept[start:stop]]
        try:
            out.resize((len(kept), dim))  # gives back the tail's memory
        except ValueError:  # another reference to `out` (a debugger): keep the view instead
            out = out[: len(kept)]
    found = dims != -2
    return tids[found], dims[found], out


def copy_rows(conn: psycopg.Connection, query: sql.Composable, layout: np.dtype) -> np.ndarray:
    """Run `query` as one binary COPY and decode it whole (small reads: tuple ids, scores)."""
    batches = [b for b in copy_batches(conn, query, layout) if len(b)]
    if len(batches) == 1:
        return batches[0]
    return np.concatenate(batches) if batches else np.empty(0, dtype=layout)


def tids_of(column: np.ndarray) -> np.ndarray:
    """A decoded "tid" column as int64 block << 16 | offset (sortable, set-operable)."""
    return (column["block"].astype(np.int64) << _TID_BITS) | column["offset"].astype(np.int64)


@dataclass
class TidVectors:
    """One batch of a (ctid, vector) COPY: each row's tuple id and vector dimension (-1: a
    NULL vector), and the vectors of the rows of the wanted dimension as big-endian runs
    (views into the batch, in row order: the caller converts each once)."""

    tids: np.ndarray
    dims: np.ndarray
    runs: list[np.ndarray]


class _TidVectorDecoder:
    """Decodes a binary COPY of (ctid, vector or NULL) rows piece by piece. Runs of rows of
    `dim` (the usual case) decode with one frombuffer each; a NULL or other-dimension row
    is walked by itself (Python, only then), so those rows are counted without a
    placeholder vector computed in SQL for each row."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.layout = copy_layout(tid="tid", v=dim)
        self.rest = b""
        self.started = self.ended = False

    def feed(self, data: bytes, final: bool = False) -> TidVectors:
        buffer = self.rest + data if self.rest else data
        got = TidVectors([], [], [])  # type: ignore[arg-type]
        pos = self._start(buffer, final)
        if self.ended:  # nothing may follow the trailer
            self.rest, pos = buffer, None
        while pos is not None and not self.ended:
            pos = self._run(buffer, pos, got)
            if pos is not None:
                pos = self._odd_row(buffer, pos, got)
        if final and (not self.ended or self.rest):
            raise SourceError("binary COPY stream does not hold (tid, vector) rows to its end")
        tids, dims = got.tids or [np.empty(0, np.int64)], got.dims or [np.empty(0, np.int64)]
        return TidVectors(np.concatenate(tids), np.concatenate(dims), got.runs)  # type: ignore[arg-type]

    def _start(self, buffer: bytes, final: bool) -> int | None:
        """Where the rows start (past the header), or None when more bytes are needed."""
        if self.started:
            self.rest = b""
            return 0
        start = _rows_start(buffer, final)
        if start is None:
            self.rest = buffer
            return None
        self.started, self.rest = True, b""
        return start

    def _run(self, buffer: bytes, pos: int, got: TidVectors) -> int:
        """Decode the whole rows of `dim` from `pos` on, up to the first other row."""
        size = self.layout.itemsize
        while whole := min((len(buffer) - pos) // size, _RUN_ROWS):
            rows = np.frombuffer(buffer, dtype=self.layout, count=whole, offset=pos)
            good = (rows["_count"] == 2) & (rows["_tid_len"] == 6) & (rows["_v_len"] == 4 + 4 * self.dim)
            good &= (rows["_v_dim"] == self.dim) & (rows["_v_unused"] == 0)
            run = whole if good.all() else int(np.argmin(good))
            if run:
                got.tids.append(tids_of(rows["tid"][:run]))  # type: ignore[attr-defined]
                got.dims.append(np.full(run, self.dim, np.int64))  # type: ignore[attr-defined]
                got.runs.append(rows["v"][:run])
                pos += run * size
            if run < whole:
                break
        return pos

    def _odd_row(self, buffer: bytes, pos: int, got: TidVectors) -> int | None:
        """Walk one row that is not of `dim` (or the trailer); None: it is not whole yet."""
        view = memoryview(buffer)
        if len(buffer) - pos >= 2 and int.from_bytes(view[pos : pos + 2], "big", signed=True) == -1:
            self.ended, self.rest = True, bytes(view[pos + 2 :])
            return pos + 2
        if len(buffer) - pos < 16:
            self.rest = bytes(view[pos:])
            return None
        if (
            int.from_bytes(view[pos : pos + 2], "big") != 2
            or int.from_bytes(view[pos + 2 : pos + 6], "big") != 6
        ):
            raise SourceError("binary COPY rows do not match the expected (tid, vector) layout")
        tid = int.from_bytes(view[pos + 6 : pos + 10], "big") << _TID_BITS | int.from_bytes(
            view[pos + 10 : pos + 12], "big"
        )
        length = int.from_bytes(view[pos + 12 : pos + 16], "big", signed=True)
        dim = -1
        if length >= 0:
            if len(buffer) - pos < 20 + max(length - 4, 0):
                self.rest = bytes(view[pos:])
                return None
            dim = int.from_bytes(view[pos + 16 : pos + 18], "big")
            if length != 4 + 4 * dim or dim == self.dim:  # a row of `dim` here has bad framing
                raise SourceError("binary COPY rows do not match the expected (tid, vector) layout")
        got.tids.append(np.array([tid], np.int64))  # type: ignore[attr-defined]
        got.dims.append(np.array([dim], np.int64))  # type: ignore[attr-defined]
        return pos + 16 + max(length, 0)


class VectorBlocks:
    """Vectors read so far, in the order read, in native float32 segments of `SEGMENT_BYTES`.

    Each COPY batch's big-endian vectors are converted straight into a segment: no second
    copy of a batch, and a segment this large is mmapped, so freeing it in `take` returns
    its memory at once (smaller freed blocks tend to stay in the heap and keep the peak)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.segments: list[np.ndarray] = []
        self.filled = 0  # rows written into the last segment
        self.count = 0

    def add(self, vectors: np.ndarray) -> None:
        done = 0
        while done < len(vectors):
            if not self.segments or self.filled == len(self.segments[-1]):
                rows = max(1, SEGMENT_BYTES // (4 * max(self.dim, 1)))
                self.segments.append(np.empty((rows, self.dim), np.float32))
                self.filled = 0
            segment = self.segments[-1]
            step = min(len(segment) - self.filled, len(vectors) - done)
            segment[self.filled : self.filled + step] = vectors[done : done + step]
            self.filled += step
            done += step
        self.count += len(vectors)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at `positions` (in the order read) as one array, in that order; each
        segment is released once copied, so the peak is the rows read plus one segment."""
        out = np.empty((len(positions), self.dim), np.float32)
        by_position = np.argsort(positions, kind="stable")
        ordered = positions[by_position]
        start = 0
        while self.segments:
            segment = self.segments.pop(0)
            rows = len(segment) if self.segments else self.filled
            low, high = np.searchsorted(ordered, [start, start + rows])
            for part in range(low, high, BLOCK_ROWS):
                stop = min(part + BLOCK_ROWS, high)
                out[by_position[part:stop]] = segment[ordered[part:stop] - start]
            start += rows
            del segment
        return out


def tid_vector_batches(conn: psycopg.Connection, query: sql.Composable, dim: int) -> Iterator[TidVectors]:
    """Run `query` (selecting ctid and a vector) as one binary COPY and yield its rows
    decoded about `BATCH_BYTES` at a time: the raw stream is never held whole."""
    decoder = _TidVectorDecoder(dim)
    for data, final in _raw_batches(conn, query, BATCH_BYTES):
        yield decoder.feed(data, final)


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
    "TidVectors",
    "VectorBlocks",
    "copy_batches",
    "copy_chosen_vectors",
    "copy_layout",
    "copy_rows",
    "decode_copy",
    "tid_vector_batches",
    "tids_of",
    "to_array",
    "to_vector",
]
