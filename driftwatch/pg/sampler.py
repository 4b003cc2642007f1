"""Sampling the monitored table's rows, and looking rows up by id (sentinels, documents).

A near-uniform sample whose cost grows with the sample, not the table:

* `tid` (the default): draw uniformly random tuple slots (page, line pointer) without
  replacement from pages x M, where M bounds the line pointers per page, and fetch
  them with a TID Scan (`ctid = ANY(...)`). Empty and dead slots return nothing, so
  the rows that come back are a simple random sample of the live tuples: no page
  clustering (the flaw of `TABLESAMPLE SYSTEM` when drift follows insert order) and
  about sample * M / (rows per page) page probes, however big the table. M comes from
  a pilot of ~128 random pages (max line pointer seen, +25% when pages differ).
* `bernoulli`: when the probes would touch more than a quarter of the heap anyway (the
  sample is a large share of the table), one sequential `TABLESAMPLE BERNOULLI` pass is
  cheaper than random page reads, and exactly uniform too.
* `full`: tables with fewer than 2x sample rows are read whole.
* a partitioned parent: the sample is split over its leaves as a simple random sample of
  their union would fall, and each leaf's share drawn by the paths above (`pg.partitions`).

Rows are chosen before vectors are kept: a uniform `size` of the live rows found, by tuple
id. When the vectors live in the heap pages (no TOAST: rows per page x vector bytes fit a
page), the probes and the BERNOULLI pass read them as they go and the few rows found beyond
`size` are dropped: one visit per page. When they are TOASTed, the draw reads tuple ids
only (heap pages, no detoasting) and one binary `COPY` then fetches the chosen rows'
vectors, each detoasted once. Either way the COPY stream is decoded ~8 MB at a time by
`np.frombuffer` (no per-row Python objects, `pg.codecs`) into float32 blocks, and the kept
rows are copied out of them once, into the sample, freeing each block as it goes: the raw
stream is never held whole, nor the vectors twice. All inside the session's read-only
REPEATABLE READ snapshot so every query sees the same rows.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import Arrivals, VectorSample
from driftwatch.errors import SourceError
from driftwatch.pg.codecs import (
    VectorBlocks,
    copy_chosen_vectors,
    copy_layout,
    copy_rows,
    tid_vector_batches,
    tids_of,
    to_array,
)
from driftwatch.pg.partitions import Leaf, allocate, counted, leaves
from driftwatch.pg.session import Session
from driftwatch.pg.tables import Source, VectorColumn, table_size

log = logging.getLogger(__name__)

FULL_READ_FACTOR = 2  # tables with fewer than 2x sample rows are read whole
BERNOULLI_SHARE = 0.25  # a sequential pass beats random probes that would touch > 1/4 of the heap
MAX_TID_ROUNDS = 8
PILOT_PAGES = 128
MAX_TUPLES_PER_PAGE = 291  # MaxHeapTuplesPerPage for 8 kB pages
BLOCK_BYTES = 8192
_EVERYTHING = sql.SQL("true")
_TID_BITS = 16  # a tuple id travels as page << 16 | offset (offsets are < 2^16)
_TIDS = copy_layout(tid="tid")


def _tid_literal(tids: np.ndarray) -> sql.Composable:
    """A tid[] literal of int64 tuple ids (no tid type travels as a bound binary parameter)."""
    pages, offsets = tids >> _TID_BITS, tids & ((1 << _TID_BITS) - 1)
    text = "{" + ",".join(map('"({},{})"'.format, pages.tolist(), offsets.tolist())) + "}"
    return sql.SQL("{}::tid[]").format(sql.Literal(text))


def _all_tids(conn: psycopg.Connection, source: Source, where: sql.Composable = _EVERYTHING) -> np.ndarray:
    query = sql.SQL("SELECT ctid FROM {} WHERE {}").format(source.table, where)
    return tids_of(copy_rows(conn, query, _TIDS)["tid"])


def _tid_in(tids: np.ndarray) -> sql.Composable:
    return sql.SQL("ctid = ANY({})").format(_tid_literal(tids))


def _dim_counts(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, where: sql.Composable
) -> dict[int, int]:
    """Rows per vector dimension among the matching rows (NULL vectors left out)."""
    query = sql.SQL(
        "SELECT vector_dims({vec}), count(*) FROM {table} WHERE ({where}) AND {vec} IS NOT NULL GROUP BY 1"
    )
    rows = conn.execute(query.format(vec=vec, table=source.table, where=where)).fetchall()
    return {int(d): int(c) for d, c in rows}


def _dominant(counts: dict[int, int]) -> int | None:
    """The most common dimension (the larger one on a tie), None when there is none."""
    return max(counts, key=lambda d: (counts[d], d)) if counts else None


def _dominant_dim(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, where: sql.Composable
) -> int | None:
    return _dominant(_dim_counts(conn, source, vec, where))


def _pilot(
    conn: psycopg.Connection, source: Source, pages: int, rng: np.random.Generator
) -> tuple[int, float, int]:
    """(slot bound M, live tuples per page, pages read) from a few random pages."""
    chosen = rng.choice(pages, size=min(pages, PILOT_PAGES), replace=False).astype(np.int64)
    rows = conn.execute(
        sql.SQL(
            """SELECT pg.p, c.n, c.top
               FROM unnest(%s::int8[]) AS pg(p)
               CROSS JOIN LATERAL (
                   SELECT count(*) AS n, coalesce(max((t.ctid::text::point)[1]), 0)::int AS top
                   FROM {} t
                   WHERE t.ctid >= format('(%%s,0)', pg.p)::tid
                     AND t.ctid < format('(%%s,0)', pg.p + 1)::tid
               ) c"""
        ).format(source.table),
        (chosen.tolist(),),
    ).fetchall()
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    density = float(arr[:, 1].mean()) if len(arr) else 0.0
    tops = arr[:, 2]
    top = int(tops.max()) if len(arr) else 0
    # Fixed-width rows fill every page alike; when >10% of pages stop short of the fullest
    # one, widths vary and an unseen page may hold more: leave 25% headroom.
    uneven = len(arr) and float(np.mean(tops < top)) > 0.1
    bound = min(MAX_TUPLES_PER_PAGE, math.ceil(top * 1.25) if uneven else top)
    return max(bound, 1), density, len(chosen)


def _fresh_slots(rng: np.random.Generator, total: int, used: np.ndarray, count: int) -> np.ndarray:
    """`count` distinct slot numbers in [0, total) not already in `used` (sorted)."""
    if count >= total - len(used):
        return np.setdiff1d(np.arange(total, dtype=np.int64), used)
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        draw = rng.choice(total, size=min(total, int((count - len(chosen)) * 1.1) + 8), replace=False)
        draw = np.setdiff1d(draw.astype(np.int64), np.union1d(used, chosen))
        chosen = np.concatenate([chosen, rng.permutation(draw)[: count - len(chosen)]])
    return chosen


def _probe_tids(
    conn: psycopg.Connection, source: Source, pages: int, size: int, rng: np.random.Generator,
    reader: Reader | None,
) -> tuple[list[_Batch], int, dict[str, float]]:  # fmt: skip
    """Probe random (page, slot) pairs until `size` live rows are found: (what each round
    found, pages touched, details). Without a `reader` only tuple ids come back."""
    bound, density, pilot_pages = _pilot(conn, source, pages, rng)
    slots = pages * bound
    probed = np.empty(0, dtype=np.int64)
    found: list[_Batch] = []
    live = 0
    yield_rate = max(density / bound, 1e-3)
    margin = 1.03 + 3.0 / math.sqrt(size)
    for _ in range(MAX_TID_ROUNDS):
        if live >= size or len(probed) >= slots:
            break
        want = min(slots - len(probed), math.ceil((size - live) / yield_rate * margin) + 16)
        fresh = _fresh_slots(rng, slots, probed, want)
        probed = np.union1d(probed, fresh)
        where = _tid_in(((fresh // bound) << _TID_BITS) | (fresh % bound + 1))
        found.append(reader(where) if reader else _Batch(_all_tids(conn, source, where)))
        live += len(found[-1].tids)
        yield_rate = max(live / len(probed), 1e-3)
    touched = len(np.unique(probed // bound)) + pilot_pages
    extra = {"slot_bound": float(bound), "rows_per_page": density, "slots_probed": float(len(probed))}
    return found, touched, extra


def _probes_would_touch(pages: int, size: int) -> float:
    """Expected distinct heap pages hit by ~1.1 x size random slot probes."""
    return pages * (1.0 - math.exp(-1.1 * size / pages))


def _bernoulli_tids(
    conn: psycopg.Connection, source: Source, rows: int, size: int, rng: np.random.Generator,
    reader: Reader | None,
) -> _Batch:  # fmt: skip
    """When probes would visit much of the heap anyway, one sequential BERNOULLI pass (over
    the tuple ids alone without a `reader`) is cheaper than random page reads, and just as
    uniform."""
    slack = 1.1 + 4.0 / math.sqrt(size)
    percent = min(100.0, 100.0 * size * slack / max(rows, 1))
    sampled = sql.SQL("{} TABLESAMPLE BERNOULLI ({}) REPEATABLE ({})").format(
        source.table, sql.Literal(percent), sql.Literal(int(rng.integers(2**31)))
    )
    return reader(_EVERYTHING, sampled) if reader else _Batch(_all_tids(conn, replace(source, table=sampled)))


@dataclass
class _Batch:
    """Rows found by one or more reads: tuple ids, and with a reader where their vectors are."""

    tids: np.ndarray
    dims: np.ndarray | None = None  # each row's vector dimension; -1 for a NULL vector
    at: np.ndarray | None = None  # each row's position in `store`; -1 when not of the sample's dimension
    store: VectorBlocks | None = None  # the vectors read (shared by the reads of one heap)

    @classmethod
    def joined(cls, batches: list[_Batch]) -> _Batch:
        if len(batches) == 1:
            return batches[0]
        tids = np.concatenate([b.tids for b in batches]) if batches else np.empty(0, np.int64)
        if not batches or batches[0].store is None:
            return cls(tids)
        dims = np.concatenate([b.dims for b in batches])  # type: ignore[misc]
        return cls(tids, dims, np.concatenate([b.at for b in batches]), batches[0].store)  # type: ignore[misc]

    def take(self, keep: np.ndarray | None = None) -> _Batch:
        """The rows whose tuple ids are in `keep` (all: None), in tid order (no vector copied)."""
        order = np.argsort(self.tids, kind="stable")
        chosen = order if keep is None else order[np.isin(self.tids[order], keep)]
        if self.store is None or self.dims is None or self.at is None:
            return _Batch(self.tids[chosen])
        return _Batch(self.tids[chosen], self.dims[chosen], self.at[chosen], self.store)

    def vectors(self) -> np.ndarray:
        """The rows' vectors of the sample's dimension, in row order: copied once out of
        the store, which gives them up (so call this once)."""
        assert self.store is not None and self.at is not None
        return self.store.take(self.at[self.at >= 0])


Reader = Callable[..., _Batch]  # (where[, table]) -> the matching rows with their vectors


@dataclass
class _Drawn:
    """Which live rows of one heap were drawn, and how."""

    method: str  # full | bernoulli | tid
    tids: np.ndarray | None  # None: every row (a small table read whole)
    rows_estimate: int
    touched: int  # heap pages read
    extra: dict[str, float] = field(default_factory=dict)
    read: _Batch | None = None  # the chosen rows' vectors, when read while drawing


def _draw_tids(
    conn: psycopg.Connection, source: Source, pages: int, rows_estimate: int, size: int,
    rng: np.random.Generator, *, listed: bool = False, reader: Reader | None = None,
) -> _Drawn:  # fmt: skip
    """The tuple ids of a uniform `size` of the heap's live rows (all of them for a small
    heap: as None, or listed when `listed`), by a whole read, one BERNOULLI pass, or probes.

    With a `reader` (vectors stored in the heap pages themselves) the BERNOULLI pass and the
    probes read the vectors as they go, and the few found beyond `size` are dropped: one
    visit per page instead of two. Without one (TOASTed vectors) only tuple ids are read."""
    small = pages < FULL_READ_FACTOR * size or 0 <= rows_estimate < FULL_READ_FACTOR * size
    if small and pages and rows_estimate < 0:  # never analyzed: count, it is a small heap
        rows_estimate = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source.table)).fetchone()[0]
    if pages == 0:
        return _Drawn("full", np.empty(0, np.int64), 0, pages)
    if small and rows_estimate < FULL_READ_FACTOR * size:
        tids = _keep(_all_tids(conn, source), size, rng) if listed else None
        return _Drawn("full", tids, int(rows_estimate), pages)
    if _probes_would_touch(pages, size) > BERNOULLI_SHARE * pages:
        found = _bernoulli_tids(conn, source, rows_estimate, size, rng, reader)
        drawn = _Drawn("bernoulli", None, int(rows_estimate), pages)
    else:
        batches, touched, extra = _probe_tids(conn, source, pages, size, rng, reader)
        found = _Batch.joined(batches)
        drawn = _Drawn("tid", None, int(rows_estimate), touched, extra)
    drawn.tids = _keep(found.tids, size, rng)
    drawn.read = found.take(drawn.tids) if reader else None
    return drawn


def _keep(tids: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """A uniform `size` of `tids` (all of them when fewer, or size is None), sorted."""
    if size is not None and len(tids) > size:
        tids = rng.choice(tids, size=size, replace=False)
    return np.sort(tids)


@dataclass
class _Rows:
    """The sampled rows of one heap, in tuple-id order."""

    tids: np.ndarray  # every sampled row
    dims: np.ndarray  # each row's vector dimension; -1 for a NULL vector
    vectors: np.ndarray  # float32, the rows whose dimension is the sample's, in order
    versions: dict[str | None, int]
    ids: list[str] | None


def _read_batch(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int, store: VectorBlocks,
    where: sql.Composable, table: sql.Composable | None = None,
) -> _Batch:  # fmt: skip
    """The matching rows' tuple ids, with their vectors added to `store`: one binary COPY,
    each vector detoasted once, decoded batch by batch (in the order read: a synchronized
    seq scan starts mid-heap, `_Batch.take` puts the rows in tid order)."""
    query = sql.SQL("SELECT ctid, {} FROM {} WHERE {}").format(vec, table or source.table, where)
    tids, dims, at = [], [], []
    for part in tid_vector_batches(conn, query, dim):
        good = part.dims == dim
        positions = np.full(len(part.tids), -1, np.int64)
        positions[good] = np.arange(store.count, store.count + int(good.sum()))
        for run in part.runs:
            store.add(run)
        tids.append(part.tids)
        dims.append(part.dims)
        at.append(positions)
    return _Batch(np.concatenate(tids), np.concatenate(dims), np.concatenate(at), store)


def _density(pages: int, rows: int) -> float:
    """Live rows per heap page (infinite when unknown: no read while drawing)."""
    return rows / pages if pages and rows >= 0 else math.inf


def _reader(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int | None, density: float
) -> Reader | None:
    """A reader that fetches vectors while drawing, when they live in the heap pages (rows
    per page x vector bytes fit a page: no TOAST) and the dimension is known; else None."""
    if not dim or density * (4 * dim + 8) > BLOCK_BYTES:
        return None
    return functools.partial(_read_batch, conn, source, vec, dim, VectorBlocks(dim))


def _read(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int,
    tids: np.ndarray | None, with_ids: bool, batch: _Batch | None = None,
) -> _Rows:  # fmt: skip
    """The vectors (one binary COPY, each detoasted once, unless `batch` has them already),
    model versions and ids (heap only: no vector read again) of the rows `tids` of one heap
    (every row: None)."""
    if tids is not None and not len(tids):
        return _Rows(tids, tids, np.empty((0, dim), np.float32), {}, [] if with_ids else None)
    needed = batch is None or with_ids or source.version_col is not None  # else no query names the rows
    where = _tid_in(tids) if tids is not None and needed else _EVERYTHING
    if batch is None and tids is not None:  # the chosen rows: straight into the result
        query = sql.SQL("SELECT ctid, {} FROM {} WHERE {}").format(vec, source.table, where)
        found, dims, vectors = copy_chosen_vectors(conn, query, dim, tids)
    else:
        if batch is None:  # every row of a small heap
            batch = _read_batch(conn, source, vec, dim, VectorBlocks(dim), where)
            batch = batch if np.all(batch.tids[1:] > batch.tids[:-1]) else batch.take()
        assert batch.dims is not None
        found, dims, vectors = batch.tids, batch.dims, batch.vectors()
    rows = _Rows(found, dims, vectors, _versions(conn, source, where, len(found)), None)
    if with_ids:
        rows.ids = _ids_for(conn, source, where, dims == dim)
    return rows


def _versions(
    conn: psycopg.Connection, source: Source, where: sql.Composable, rows: int
) -> dict[str | None, int]:
    """Sampled rows per model version (all None without a version column)."""
    if source.version_col is None:
        return {None: rows} if rows else {}
    groups = conn.execute(
        sql.SQL("SELECT {}::text, count(*) FROM {} WHERE {} GROUP BY 1").format(
            source.version_col, source.table, where
        )
    ).fetchall()
    return {version: int(count) for version, count in groups}


def _ids_for(conn: psycopg.Connection, source: Source, where: sql.Composable, keep: np.ndarray) -> list[str]:
    """Row ids (as text) of the sampled rows (`where`, in this snapshot: the same rows, in
    tuple-id order) that `keep` marks: heap pages only, no vector read again."""
    rows = conn.execute(
        sql.SQL("SELECT {}::text FROM {} WHERE {} ORDER BY ctid").format(source.id_col, source.table, where)
    ).fetchall()
    if len(rows) != len(keep):
        raise SourceError(f"{source.label}: the sampled rows changed while their ids were read")
    return [row[0] for row, kept in zip(rows, keep.tolist(), strict=True) if kept]


def _heaps(
    conn: psycopg.Connection, source: Source, column: VectorColumn
) -> list[tuple[Source, Leaf | None]]:
    """The heaps holding the collection's rows: the table itself, or a partitioned parent's leaves."""
    if not column.partitioned:
        return [(source, None)]
    return [
        (replace(source, table=leaf.table, label=f"{source.label} (partition {leaf.name})"), leaf)
        for leaf in leaves(conn, column.relid, source.label)
    ]


def _sample_of(
    parts: list[tuple[Source, _Rows]], dim: int, counts: tuple[int, int, int], *, method: str, **more: object
) -> VectorSample:
    """One VectorSample from the rows of one or more heaps; counts: (pages, rows estimate, pages read)."""
    dims = np.concatenate([rows.dims for _, rows in parts]) if parts else np.empty(0, np.int64)
    seen = {int(d): int(c) for d, c in zip(*np.unique(dims[dims >= 0], return_counts=True), strict=True)}
    versions: dict[str | None, int] = {}
    for _, rows in parts:
        for version, count in rows.versions.items():
            versions[version] = versions.get(version, 0) + count
    vectors = [rows.vectors for _, rows in parts if len(rows.vectors)]
    with_ids = any(rows.ids is not None for _, rows in parts)
    return VectorSample(
        vectors=(vectors[0] if len(vectors) == 1 else np.concatenate(vectors)) if vectors
        else np.empty((0, dim), np.float32),
        ids=[i for _, rows in parts for i in rows.ids or []] if with_ids else None,
        versions=versions,
        method=method,
        dim=dim,
        rows_sampled=len(dims),
        null_vectors=int(np.sum(dims < 0)),
        wrong_dim=sum(c for d, c in seen.items() if d != dim),
        dims_seen=seen,
        table_pages=counts[0],
        table_rows_estimate=counts[1],
        pages_probed=counts[2],
        **more,  # type: ignore[arg-type]
    )  # fmt: skip


def sample_collection(
    session: Session,
    collection: CollectionSettings,
    size: int,
    rng: np.random.Generator,
    expected_dim: int | None = None,
    with_ids: bool = False,
) -> VectorSample:
    """Draw one near-uniform sample of `size` live rows from the collection's table (over
    all its leaves when it is a partitioned parent), in the session's snapshot.

    Small tables (< 2 x size rows) are read whole. Rows whose vector is NULL or not of
    `expected_dim` (or, without one, the declared or else the dominant dimension) are
    counted, not returned. Rows are chosen by tuple id, and each chosen row's vector is
    read once: during the draw when vectors live in the heap pages, after it when TOASTed.
    """
    source = Source.of(collection)
    with session.reading(source.label, "sampling") as conn:
        column = session.describe(source, collection)
        vec = column.as_vector(source.vec_col)
        if column.partitioned:
            return _sample_partitioned(conn, source, column, vec, size, rng, expected_dim, with_ids)
        pages, rows_estimate = table_size(conn, source)
        reader = _reader(conn, source, vec, expected_dim or column.dim, _density(pages, rows_estimate))
        drawn = _draw_tids(conn, source, pages, rows_estimate, size, rng, reader=reader)
        dim = expected_dim or column.dim
        if not dim:  # an untyped column at capture: the most common dimension among the drawn rows
            where = _EVERYTHING if drawn.tids is None else _tid_in(drawn.tids)
            dim = _dominant_dim(conn, source, vec, where) or 0
        rows = _read(conn, source, vec, dim, drawn.tids, with_ids, drawn.read)
    if drawn.method == "tid" and len(rows.tids) < size:
        log.info("%s: sample has %d of %d rows after probing", source.label, len(rows.tids), size)
    counts = (pages, drawn.rows_estimate, drawn.touched)
    return _sample_of([(source, rows)], dim, counts, method=drawn.method, extra=drawn.extra)


def _sample_partitioned(
    conn: psycopg.Connection, source: Source, column: VectorColumn, vec: sql.Composable, size: int,
    rng: np.random.Generator, expected_dim: int | None, with_ids: bool,
) -> VectorSample:  # fmt: skip
    """A uniform sample of a partitioned parent's rows: the sample size is split over the
    leaves as a simple random sample of their union would fall (`partitions.allocate`), and
    each leaf's share is drawn inside it by tuple id like a table of its own."""
    heaps = _heaps(conn, source, column)
    live = [counted(conn, leaf) for _, leaf in heaps if leaf is not None]
    whole = sum(live) < FULL_READ_FACTOR * size  # like a small table: every row of every leaf
    shares = allocate(live, sum(live) if whole else size, rng)
    dim = expected_dim or column.dim
    drawn = []
    for (heap, leaf), rows, share in zip(heaps, live, shares.tolist(), strict=True):
        assert leaf is not None
        if share == 0 and not whole:
            drawn.append(_Drawn("tid", np.empty(0, np.int64), rows, 0))
            continue
        reader = _reader(conn, heap, vec, dim, _density(leaf.pages, rows))
        drawn.append(
            _draw_tids(conn, heap, leaf.pages, rows, max(share, 1), rng, listed=not whole, reader=reader)
        )
    if dim is None:
        counts: dict[int, int] = {}
        for (heap, _), got in zip(heaps, drawn, strict=True):
            if got.tids is None or len(got.tids):
                where = _EVERYTHING if got.tids is None else _tid_in(got.tids)
                for d, c in _dim_counts(conn, heap, vec, where).items():
                    counts[d] = counts.get(d, 0) + c
        dim = _dominant(counts) or 0
    parts = [
        (heap, _read(conn, heap, vec, dim, got.tids, with_ids, got.read))
        for (heap, _), got in zip(heaps, drawn, strict=True)
    ]
    per_leaf = {
        leaf.name: {"rows_estimate": rows, "sampled": len(part.tids)}
        for (_, leaf), rows, (_, part) in zip(heaps, live, parts, strict=True)
        if leaf is not None
    }
    counts_ = (sum(leaf.pages for _, leaf in heaps if leaf), sum(live), sum(got.touched for got in drawn))
    method = "full" if whole else "partitioned"
    return _sample_of(
        parts, dim, counts_, method=method, extra={"leaves": float(len(heaps))}, partitions=per_leaf
    )


def vector_dimension(session: Session, collection: CollectionSettings) -> int | None:
    """The collection's vector dimension: the declared one, or for an untyped column the
    most common among its rows (None for an empty one)."""
    source = Source.of(collection)
    with session.reading(source.label, "reading the vector dimension") as conn:
        column = session.describe(source, collection)
        if column.dim is not None:
            return column.dim
        return _dominant_dim(conn, source, column.as_vector(source.vec_col), _EVERYTHING)


def arrival_watermark(session: Session, collection: CollectionSettings) -> str | None:
    """The arrival column's largest value in this snapshot, as text (None: no arrival column,
    or an empty table). Rows past it, later, are the arrivals."""
    if collection.arrivals_by is None:
        return None
    source = Source.of(collection)
    with session.reading(source.label, "reading the arrival watermark") as conn:
        row = conn.execute(
            sql.SQL("SELECT max({})::text FROM {}").format(
                sql.Identifier(collection.arrivals_by), source.table
            )
        ).fetchone()
    return row[0] if row else None


def sample_arrivals(
    session: Session,
    collection: CollectionSettings,
    watermark: str,
    size: int,
    dim: int,
    rng: np.random.Generator,
    with_ids: bool = False,
) -> Arrivals:
    """A uniform sample of up to `size` rows past `watermark` in the arrival column (all of
    them when fewer). The tuple ids of every arrival are listed first — through an index on
    the arrival column when there is one, and without reading a vector — then only the
    chosen rows' vectors are fetched, so the cost is the arrivals' tids plus the sample."""
    source = Source.of(collection)
    after = sql.SQL("{} > {}").format(sql.Identifier(collection.arrivals_by or ""), sql.Literal(watermark))
    with session.reading(source.label, "sampling arrivals") as conn:
        column = session.describe(source, collection)
        vec = column.as_vector(source.vec_col)
        heaps = _heaps(conn, source, column)  # a partitioned parent's arrivals are read leaf by leaf
        every = [np.sort(_all_tids(conn, heap, after)) for heap, _ in heaps]
        total = sum(len(tids) for tids in every)
        owner = np.repeat(np.arange(len(heaps)), [len(tids) for tids in every])
        picked = np.arange(total) if total <= size else np.sort(rng.choice(total, size=size, replace=False))
        flat = np.concatenate(every) if every else np.empty(0, np.int64)
        parts = [
            (heap, _read(conn, heap, vec, dim, np.sort(flat[picked[owner[picked] == i]]), with_ids))
            for i, (heap, _) in enumerate(heaps)
        ]
    per_leaf = {
        leaf.name: {"arrivals": len(tids), "sampled": len(part.tids)}
        for (_, leaf), tids, (_, part) in zip(heaps, every, parts, strict=True)
        if leaf is not None
    }
    sample = _sample_of(parts, dim, (0, total, 0), method="arrivals", partitions=per_leaf)
    return Arrivals(sample=sample, total=total, watermark=watermark)


def fetch_by_ids(session: Session, collection: CollectionSettings, ids: list[str]) -> dict[str, np.ndarray]:
    """Current vectors of the given rows (sentinels); rows gone since are simply absent."""
    documents = fetch_documents(session, collection, ids, with_text=False)
    return {row_id: vector for row_id, (vector, _) in documents.items() if vector is not None}


def fetch_documents(
    session: Session, collection: CollectionSettings, ids: list[str], *, with_text: bool = True
) -> dict[str, tuple[np.ndarray | None, str | None]]:
    """(vector, text) of the given rows, by id; rows that do not exist are absent."""
    if not ids:
        return {}
    source = Source.of(collection)
    if with_text and source.text_col is None:
        raise SourceError(f"collection {collection.name}: text_column is not configured")
    with session.reading(source.label, "row lookup", vectors=True) as conn:
        column = session.describe(source, collection)
        rows = conn.execute(
            sql.SQL(
                "SELECT {id}::text, {vec}, {text}::text FROM {table} WHERE {id} = ANY(%s::text[]::{type}[])"
            ).format(
                id=source.id_col,
                vec=source.vec_col,
                text=source.text_col if with_text else sql.SQL("NULL"),
                table=source.table,
                type=column.id_type,  # the column's own type, so its index answers
            ),
            (list(ids),),
        ).fetchall()
    return {row_id: (to_array(vector), body) for row_id, vector, body in rows}


__all__ = ["FULL_READ_FACTOR", "fetch_by_ids", "fetch_documents", "sample_collection"]
