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

Both end the same way: a set of tuple ids, then one binary `COPY` of their vectors
parsed by a single `np.frombuffer` (no per-row Python objects, `pg.codecs`), inside the
session's read-only REPEATABLE READ snapshot so every query sees the same rows.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import Arrivals, VectorSample
from driftwatch.errors import SourceError
from driftwatch.pg.codecs import copy_batches, copy_layout, copy_rows, to_array
from driftwatch.pg.session import Session
from driftwatch.pg.tables import Source, table_size

log = logging.getLogger(__name__)

FULL_READ_FACTOR = 2  # tables with fewer than 2x sample rows are read whole
BERNOULLI_SHARE = 0.25  # a sequential pass beats random probes that would touch > 1/4 of the heap
MAX_TID_ROUNDS = 8
PILOT_PAGES = 128
MAX_TUPLES_PER_PAGE = 291  # MaxHeapTuplesPerPage for 8 kB pages
_EVERYTHING = sql.SQL("true")
SEGMENT_BYTES = 40 << 20  # vectors found are kept in blocks this large: above glibc's 32 MB mmap bound
BLOCK_ROWS = 8192  # rows gathered at once in _Found.take
_TID_BITS = 16  # a tuple id travels as page << 16 | offset (offsets are < 2^16)
_TIDS = copy_layout(tid="int8")


def _tid_literal(tids: np.ndarray) -> sql.Composable:
    pages, offsets = tids >> _TID_BITS, tids & ((1 << _TID_BITS) - 1)
    text = "{" + ",".join(f'"({p},{o})"' for p, o in zip(pages.tolist(), offsets.tolist(), strict=True)) + "}"
    return sql.SQL("{}::tid[]").format(sql.Literal(text))


_TID_AS_INT8 = sql.SQL("(({ctid}::text::point)[0]::int8 << 16) | (({ctid}::text::point)[1]::int8)").format(
    ctid=sql.SQL("ctid")
)


def _all_tids(conn: psycopg.Connection, source: Source, where: sql.Composable = _EVERYTHING) -> np.ndarray:
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(_TID_AS_INT8, source.table, where)
    return copy_rows(conn, query, _TIDS)["tid"].astype(np.int64)


def _fetch(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int, where: sql.Composable,
    found: _Found,
) -> None:  # fmt: skip
    """Add to `found` the tuple ids and vectors of the matching rows with a `dim`-dimensional
    vector, and the tuple ids of those whose vector is NULL or of another dimension: one pass,
    decoded batch by batch.

    Those odd rows carry a zero placeholder vector so every COPY row has the same size and
    each batch decodes with a single frombuffer.
    """
    usable = sql.SQL("({vec} IS NOT NULL AND vector_dims({vec}) = {dim})").format(
        vec=vec, dim=sql.Literal(dim)
    )
    query = sql.SQL(
        "SELECT {tid}, {usable}, CASE WHEN {usable} THEN {vec} "
        "ELSE array_fill(0::real, ARRAY[{dim}])::vector END FROM {table} WHERE {where}"
    ).format(tid=_TID_AS_INT8, usable=usable, vec=vec, dim=sql.Literal(dim), table=source.table, where=where)
    for rows in copy_batches(conn, query, copy_layout(tid="int8", ok="bool", v=dim)):
        ok = rows["ok"] == 1
        tids = rows["tid"].astype(np.int64)
        found.add(tids[ok], rows["v"] if ok.all() else rows["v"][ok], tids[~ok])


def _dominant_dim(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, where: sql.Composable
) -> int | None:
    row = conn.execute(
        sql.SQL(
            "SELECT vector_dims({vec}) FROM {table} WHERE ({where}) AND {vec} IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC, 1 DESC LIMIT 1"
        ).format(vec=vec, table=source.table, where=where)
    ).fetchone()
    return int(row[0]) if row else None


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


@dataclass
class _Found:
    """Live rows found so far: good tuple ids and their vectors, and odd tuple ids.

    Vectors go straight from each COPY batch (big-endian) into native float32 segments of
    `SEGMENT_BYTES`: no second copy of a batch, and a segment this large is mmapped, so
    freeing it in `take` returns its memory at once (smaller freed blocks tend to stay in
    the heap and keep the peak).
    """

    tids: list[np.ndarray] = field(default_factory=list)
    odd: list[np.ndarray] = field(default_factory=list)
    segments: list[np.ndarray] = field(default_factory=list)
    filled: int = 0  # rows written into the last segment

    def add(self, tids: np.ndarray, vectors: np.ndarray, odd: np.ndarray) -> None:
        self.tids.append(tids)
        self.odd.append(odd)
        done = 0
        while done < len(vectors):
            if not self.segments or self.filled == len(self.segments[-1]):
                dim = vectors.shape[1]
                self.segments.append(np.empty((max(1, SEGMENT_BYTES // (4 * dim)), dim), np.float32))
                self.filled = 0
            segment = self.segments[-1]
            step = min(len(segment) - self.filled, len(vectors) - done)
            segment[self.filled : self.filled + step] = vectors[done : done + step]
            self.filled += step
            done += step

    @property
    def live(self) -> int:
        return sum(len(t) for t in self.tids) + sum(len(o) for o in self.odd)

    def take(self, positions: np.ndarray, dim: int) -> np.ndarray:
        """The vectors at `positions` (in the order found) as one array, in that order; each
        segment is released once copied, so the peak is the rows found plus one segment."""
        out = np.empty((len(positions), dim), np.float32)
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


def _probe_slots(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int | None,
    pages: int, size: int, rng: np.random.Generator, found: _Found,
) -> tuple[int, int, dict[str, float]]:  # fmt: skip
    """Probe random (page, slot) pairs until `size` live rows are found; returns (dim, pages, extra)."""
    bound, density, pilot_pages = _pilot(conn, source, pages, rng)
    slots = pages * bound
    probed = np.empty(0, dtype=np.int64)
    yield_rate = max(density / bound, 1e-3)
    margin = 1.03 + 3.0 / math.sqrt(size)
    for _ in range(MAX_TID_ROUNDS):
        if found.live >= size or len(probed) >= slots:
            break
        want = min(slots - len(probed), math.ceil((size - found.live) / yield_rate * margin) + 16)
        fresh = _fresh_slots(rng, slots, probed, want)
        probed = np.union1d(probed, fresh)
        where = sql.SQL("ctid = ANY({})").format(
            _tid_literal(((fresh // bound) << _TID_BITS) | (fresh % bound + 1))
        )
        if dim is None:
            dim = _dominant_dim(conn, source, vec, where)
            if dim is None:  # no non-null vector among these candidates yet
                found.add(np.empty(0, np.int64), np.empty((0, 1), np.float32), _all_tids(conn, source, where))
                continue
        _fetch(conn, source, vec, dim, where, found)
        yield_rate = max(found.live / len(probed), 1e-3)
    touched = len(np.unique(probed // bound)) + pilot_pages
    extra = {"slot_bound": float(bound), "rows_per_page": density, "slots_probed": float(len(probed))}
    return dim or 0, touched, extra


def _probes_would_touch(pages: int, size: int) -> float:
    """Expected distinct heap pages hit by ~1.1 x size random slot probes."""
    return pages * (1.0 - math.exp(-1.1 * size / pages))


def _bernoulli(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, dim: int | None,
    rows: int, size: int, rng: np.random.Generator, found: _Found,
) -> int | None:  # fmt: skip
    """When probes would visit much of the heap anyway, one sequential BERNOULLI pass is
    cheaper than random page reads, and just as uniform. REPEATABLE with one seed gives
    the same rows to both queries inside this snapshot."""
    slack = 1.1 + 4.0 / math.sqrt(size)
    percent = min(100.0, 100.0 * size * slack / max(rows, 1))
    where = _EVERYTHING
    sampled = sql.SQL("{} TABLESAMPLE BERNOULLI ({}) REPEATABLE ({})").format(
        source.table, sql.Literal(percent), sql.Literal(int(rng.integers(2**31)))
    )
    sampled_source = replace(source, table=sampled)
    dim = dim or _dominant_dim(conn, sampled_source, vec, where)
    if dim is None:
        found.add(np.empty(0, np.int64), np.empty((0, 1), np.float32), _all_tids(conn, sampled_source))
        return None
    _fetch(conn, sampled_source, vec, dim, where, found)
    return dim


def _census(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, tids: np.ndarray
) -> tuple[dict[str | None, int], dict[int, int], int]:
    """Per-version and per-dimension counts, and NULL vectors, of the final sample."""
    version = source.version_col or sql.SQL("NULL::text")
    groups = conn.execute(
        sql.SQL(
            "SELECT {}::text, vector_dims({}), count(*) FROM {} WHERE ctid = ANY({}) GROUP BY 1, 2"
        ).format(version, vec, source.table, _tid_literal(tids))
    ).fetchall()
    versions: dict[str | None, int] = {}
    dims: dict[int, int] = {}
    nulls = 0
    for ver, dim, count in groups:
        versions[ver] = versions.get(ver, 0) + count
        if dim is None:
            nulls += count
        else:
            dims[dim] = dims.get(dim, 0) + count
    return versions, dims, nulls


def _ids_for(conn: psycopg.Connection, source: Source, tids: np.ndarray) -> list[str]:
    """Row ids (as text) in the order of `tids` (sorted)."""
    rows = conn.execute(
        sql.SQL("SELECT {}, {}::text FROM {} WHERE ctid = ANY({})").format(
            _TID_AS_INT8, source.id_col, source.table, _tid_literal(tids)
        )
    ).fetchall()
    by_tid = dict(rows)
    return [by_tid[t] for t in tids.tolist()]


def sample_collection(
    session: Session,
    collection: CollectionSettings,
    size: int,
    rng: np.random.Generator,
    expected_dim: int | None = None,
    with_ids: bool = False,
) -> VectorSample:
    """Draw one near-uniform sample of `size` live rows from the collection's table, in the
    session's snapshot.

    Small tables (< 2 x size rows) are read whole. Rows whose vector is NULL or not of
    `expected_dim` (or, without one, the dominant dimension) are counted, not returned.
    """
    source = Source.of(collection)
    with session.reading(source.label, "sampling") as conn:
        vec = session.describe(source, collection).as_vector(source.vec_col)
        pages, rows_estimate = table_size(conn, source)
        found = _Found()
        drawn = _draw(conn, source, vec, pages, rows_estimate, size, rng, expected_dim, found)
        tids, vectors, odd = _choose(found, drawn.dim or 0, None if drawn.method == "full" else size, rng)
        chosen = np.sort(np.concatenate([tids, odd]))
        versions, dims, nulls = _census(conn, source, vec, chosen) if len(chosen) else ({}, {}, 0)
        ids = _ids_for(conn, source, tids) if with_ids and len(tids) else ([] if with_ids else None)
    if drawn.method == "tid" and len(chosen) < size:
        log.info("%s: sample has %d of %d rows after probing", source.label, len(chosen), size)
    return VectorSample(
        vectors=vectors,
        ids=ids,
        versions=versions,
        method=drawn.method,
        dim=int(drawn.dim or 0),
        rows_sampled=len(chosen),
        null_vectors=nulls,
        wrong_dim=sum(c for d, c in dims.items() if d != drawn.dim),
        dims_seen=dims,
        table_pages=pages,
        table_rows_estimate=drawn.rows_estimate,
        pages_probed=drawn.touched,
        extra=drawn.extra,
    )


@dataclass
class _Drawn:
    """How the live rows in `_Found` were drawn."""

    method: str  # full | bernoulli | tid
    dim: int | None
    rows_estimate: int
    touched: int  # heap pages read
    extra: dict[str, float] = field(default_factory=dict)


def _draw(
    conn: psycopg.Connection, source: Source, vec: sql.Composable, pages: int, rows_estimate: int,
    size: int, rng: np.random.Generator, dim: int | None, found: _Found,
) -> _Drawn:  # fmt: skip
    """Read the whole (small) table, one BERNOULLI pass, or tuple-id probes, into `found`."""
    small = pages < FULL_READ_FACTOR * size or 0 <= rows_estimate < FULL_READ_FACTOR * size
    if small and pages and rows_estimate < 0:  # never analyzed: count, it is a small heap
        rows_estimate = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source.table)).fetchone()[0]
    if pages == 0:
        return _Drawn("full", dim, 0, pages)
    if small and rows_estimate < FULL_READ_FACTOR * size:
        dim = dim or _dominant_dim(conn, source, vec, _EVERYTHING)
        if dim is not None:
            _fetch(conn, source, vec, dim, _EVERYTHING, found)
        else:
            found.add(np.empty(0, np.int64), np.empty((0, 1), np.float32), _all_tids(conn, source))
        return _Drawn("full", dim, int(rows_estimate), pages)
    if _probes_would_touch(pages, size) > BERNOULLI_SHARE * pages:
        dim = _bernoulli(conn, source, vec, dim, rows_estimate, size, rng, found)
        return _Drawn("bernoulli", dim, int(rows_estimate), pages)
    dim, touched, extra = _probe_slots(conn, source, vec, dim, pages, size, rng, found)
    return _Drawn("tid", dim, int(rows_estimate), touched, extra)


def _choose(
    found: _Found, dim: int, size: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep a uniform `size` of the live rows found (all when size is None), in tid order;
    the kept vectors are copied once, out of `found` (which gives them up)."""
    good_tids = np.concatenate(found.tids) if found.tids else np.empty(0, np.int64)
    odd = np.concatenate(found.odd) if found.odd else np.empty(0, np.int64)
    kept = np.arange(len(good_tids))
    if size is not None and len(good_tids) + len(odd) > size:
        keep = np.zeros(len(good_tids) + len(odd), dtype=bool)
        keep[rng.choice(len(keep), size=size, replace=False)] = True
        kept, odd = np.flatnonzero(keep[: len(good_tids)]), odd[keep[len(good_tids) :]]
    kept = kept[np.argsort(good_tids[kept], kind="stable")]
    return good_tids[kept], found.take(kept, dim), np.sort(odd)


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
        vec = session.describe(source, collection).as_vector(source.vec_col)
        every = np.sort(_all_tids(conn, source, after))
        chosen = every if len(every) <= size else np.sort(rng.choice(every, size=size, replace=False))
        found = _Found()
        if len(chosen):
            _fetch(conn, source, vec, dim, sql.SQL("ctid = ANY({})").format(_tid_literal(chosen)), found)
        tids, vectors, odd = _choose(found, dim, None, rng)
        live = np.sort(np.concatenate([tids, odd]))
        versions, dims, nulls = _census(conn, source, vec, live) if len(live) else ({}, {}, 0)
        ids = _ids_for(conn, source, tids) if with_ids and len(tids) else ([] if with_ids else None)
    sample = VectorSample(
        vectors=vectors,
        ids=ids,
        versions=versions,
        method="arrivals",
        dim=dim,
        rows_sampled=len(live),
        null_vectors=nulls,
        wrong_dim=sum(c for d, c in dims.items() if d != dim),
        dims_seen=dims,
        table_pages=0,
        table_rows_estimate=len(every),
        pages_probed=0,
    )
    return Arrivals(sample=sample, total=len(every), watermark=watermark)


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
