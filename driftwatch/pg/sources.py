"""A collection read through one table, or through several: the same table sharded over
PostgreSQL servers by the application, or Citus shard placements on its workers.

`reader()` gives `observe` one interface either way. `OneTable` calls the one-source readers
(`pg.sampler`, `pg.suite`) exactly as they are. `ManyTables` calls the same functions once per
source, each on its own database's session (one connection per database per pass, each read
in that database's REPEATABLE READ snapshot), and merges:

* The sample: each source's live rows are estimated from the catalog (`pg_class.reltuples`,
  counted when the table was never analyzed), and the sample is allocated in proportion with
  systematic random rounding (E[n_i] = n N_i / N exactly, sum n), so the union is a uniform
  sample of all the rows as far as the estimates are right: keep them fresh with ANALYZE
  (autovacuum does). When all the sources together hold fewer than 2n rows, each is read
  whole, as one table would be. The largest source is sampled first and its dimension is
  asked of the others.
* The suite: every query's top K from each source, merged by similarity (ties by id), which
  is what an application merging its shards' answers (or a Citus coordinator) returns.
* Rows by id (sentinels, documents): looked up in every source; ids must be unique across them.
* Arrivals: a watermark per source (stored as JSON), each source's arrivals sampled, and
  the union cut down to a uniform sample of all of them (multivariate hypergeometric counts).

A source driftwatch cannot connect to is down. A capture needs every source. A cycle goes on
without the down ones while the answering sources held at least `min_source_share` of the
rows at baseline capture; it is then partial (`ManyTables.partial` says which source, and
why): the suite is not run, and the cycle holds back the verdicts of detectors that read the
store's rows. Below that share, or on any other error of a source (a missing table, a
timeout), the pass fails with a `SourceError` naming the source.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from psycopg import sql

from driftwatch.config import CollectionSettings, SourceSettings
from driftwatch.detect.observation import Arrivals, SuiteRun, VectorSample
from driftwatch.errors import SourceError
from driftwatch.pg.sampler import (
    FULL_READ_FACTOR,
    arrival_watermark,
    fetch_by_ids,
    fetch_documents,
    sample_arrivals,
    sample_collection,
)
from driftwatch.pg.session import Session, Sessions
from driftwatch.pg.suite import run_queries
from driftwatch.pg.tables import Source, table_size

log = logging.getLogger(__name__)

Documents = dict[str, tuple[np.ndarray | None, str | None]]


class OneTable:
    """A collection with one table: the one-source readers, unchanged."""

    partial: str | None = None

    def __init__(self, sessions: Sessions, collection: CollectionSettings) -> None:
        self.sessions, self.collection = sessions, collection

    def tables(self) -> list[tuple[Session, CollectionSettings]]:
        return [(self.sessions.store, self.collection)]

    @property
    def rows(self) -> dict[str, int] | None:
        return None

    def sample(
        self, size: int, rng: np.random.Generator, expected_dim: int | None, with_ids: bool
    ) -> VectorSample:
        store = self.sessions.store
        return sample_collection(
            store, self.collection, size, rng, expected_dim=expected_dim, with_ids=with_ids
        )

    def run_queries(self, vectors: np.ndarray, k: int, exact: bool, dim: int) -> SuiteRun:
        return run_queries(self.sessions.store, self.collection, vectors, k, exact=exact, dim=dim)

    def fetch_by_ids(self, ids: list[str]) -> dict[str, np.ndarray]:
        return fetch_by_ids(self.sessions.store, self.collection, ids)

    def watermark(self) -> str | None:
        return arrival_watermark(self.sessions.store, self.collection)

    def arrivals(
        self, watermark: str, size: int, dim: int, rng: np.random.Generator, with_ids: bool
    ) -> Arrivals | None:
        store = self.sessions.store
        return sample_arrivals(store, self.collection, watermark, size, dim, rng, with_ids=with_ids)


@dataclass
class _Part:
    """One source of a collection: its settings, the collection as a one-table view of it,
    and, once opened, its session and live-row estimate (or why it did not answer)."""

    source: SourceSettings
    collection: CollectionSettings
    session: Session | None = None
    rows: int = 0
    error: str | None = None

    @property
    def label(self) -> str:
        return f"source {self.source.name} ({self.source.qualified_table})"


class ManyTables:
    """A collection with several sources, read source by source and merged (module docstring)."""

    def __init__(
        self,
        sessions: Sessions,
        collection: CollectionSettings,
        baseline_rows: Mapping[str, int] | None = None,
        every_source: bool = False,
    ) -> None:
        self.collection = collection
        self.parts = [_Part(source, one) for source, one in collection.per_source()]
        for part in self.parts:
            try:
                part.session = sessions.on(part.source.dsn)
            except SourceError as exc:  # cannot connect: the source is down
                part.error = str(exc)
                continue
            with _naming(part):
                part.rows = live_rows(part.session, part.collection)
        self.up = [p for p in self.parts if p.session is not None]
        self.partial = outage(collection, self.parts, baseline_rows, every_source)

    def tables(self) -> list[tuple[Session, CollectionSettings]]:
        return [(p.session, p.collection) for p in self.up if p.session is not None]

    @property
    def rows(self) -> dict[str, int]:
        """Live rows per answering source (estimates), stored with a baseline for the outage rule."""
        return {p.source.name: p.rows for p in self.up}

    def sample(
        self, size: int, rng: np.random.Generator, expected_dim: int | None, with_ids: bool
    ) -> VectorSample:
        """A uniform sample of `size` rows of all answering sources (module docstring)."""
        rows = [p.rows for p in self.up]
        whole = sum(rows) < FULL_READ_FACTOR * size
        wanted = [size] * len(rows) if whole else allocate(rows, size, rng)
        samples: dict[int, VectorSample] = {}
        dim = expected_dim
        for i in sorted(range(len(rows)), key=lambda i: -rows[i]):  # largest first: it names the dimension
            if wanted[i] == 0:
                continue
            part = self.up[i]
            with _naming(part):
                got = sample_collection(
                    part.session, part.collection, wanted[i], rng, expected_dim=dim, with_ids=with_ids
                )
            dim = dim or got.dim or None
            samples[i] = got if whole else trim(got, wanted[i], rng)
        merged = merge_samples([samples[i] for i in sorted(samples)], dim or 0, with_ids)
        method = (
            "full" if whole else ("tid" if "tid" in {s.method for s in samples.values()} else "bernoulli")
        )
        return replace(merged, method=method, table_rows_estimate=sum(rows))

    def run_queries(self, vectors: np.ndarray, k: int, exact: bool, dim: int) -> SuiteRun:
        """Each source's top K for every query, merged into one top K."""
        runs = []
        for part in self.up:
            with _naming(part):
                runs.append(run_queries(part.session, part.collection, vectors, k, exact=exact, dim=dim))
        return merge_runs(runs, k)

    def fetch_by_ids(self, ids: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for part in self.up:
            with _naming(part):
                for row_id, vector in fetch_by_ids(part.session, part.collection, ids).items():
                    found.setdefault(row_id, vector)
        return found

    def watermark(self) -> str | None:
        """Each source's arrival watermark, as one JSON text (None when no source has rows)."""
        marks = {}
        for part in self.up:
            with _naming(part):
                marks[part.source.name] = arrival_watermark(part.session, part.collection)
        if all(mark is None for mark in marks.values()):
            return None
        return json.dumps({"sources": marks}, sort_keys=True)

    def arrivals(
        self, watermark: str, size: int, dim: int, rng: np.random.Generator, with_ids: bool
    ) -> Arrivals | None:
        """A uniform sample of up to `size` of the rows past each source's watermark (None
        when the baseline's watermark is not one per source: capture a new baseline)."""
        marks = source_watermarks(watermark)
        if marks is None:
            return None
        got: list[Arrivals] = []
        for part in self.up:
            mark = marks.get(part.source.name)
            if mark is None:  # empty at capture, or added since: no watermark to count from
                continue
            with _naming(part):
                got.append(
                    sample_arrivals(part.session, part.collection, mark, size, dim, rng, with_ids=with_ids)
                )
        totals = np.asarray([a.total for a in got], dtype=np.int64)
        keep = rng.multivariate_hypergeometric(totals, min(int(totals.sum()), size)) if len(got) else []
        samples = [trim(a.sample, int(n), rng) for a, n in zip(got, keep, strict=True)]
        merged = replace(
            merge_samples(samples, dim, with_ids), method="arrivals", table_rows_estimate=int(totals.sum())
        )
        return Arrivals(sample=merged, total=int(totals.sum()), watermark=watermark)


def reader(
    sessions: Sessions,
    collection: CollectionSettings,
    baseline_rows: Mapping[str, int] | None = None,
    every_source: bool = False,
) -> OneTable | ManyTables:
    """The collection's reader: its one table, or its several sources (`every_source`: a
    baseline capture, which no source may miss)."""
    if not collection.several:
        return OneTable(sessions, collection)
    return ManyTables(sessions, collection, baseline_rows, every_source)


@contextmanager
def _naming(part: _Part) -> Iterator[None]:
    """A source's SourceError with the source's name in front."""
    try:
        yield
    except SourceError as exc:
        raise SourceError(f"{part.label}: {exc}") from None


def live_rows(session: Session, collection: CollectionSettings) -> int:
    """A table's live rows from the catalog (counted when it was never analyzed)."""
    source = Source.of(collection)
    with session.reading(source.label, "estimating its rows") as conn:
        session.describe(source, collection)  # a missing table or column fails here, by name
        pages, rows = table_size(conn, source)
        if pages == 0:
            return 0
        if rows < 0:
            log.info("%s was never analyzed: counting its rows (ANALYZE it)", source.label)
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source.table)).fetchone()[0]
    return int(rows)


def outage(
    collection: CollectionSettings,
    parts: list[_Part],
    baseline_rows: Mapping[str, int] | None,
    every_source: bool,
) -> str | None:
    """The outage rule: None when every source answered; a note for a partial cycle; or a
    SourceError when the answering sources are too small a share (or this is a capture)."""
    down = [p for p in parts if p.error is not None]
    if not down:
        return None
    named = "; ".join(f"{p.label} is down: {p.error}" for p in down)
    if every_source:
        raise SourceError(f"{collection.name}: {named}; a baseline needs every source")
    share = answering_share(parts, baseline_rows)
    if share < collection.min_source_share:
        raise SourceError(
            f"{collection.name}: {named}; the sources that answered held {share:.0%} of the rows, "
            f"under min_source_share ({collection.min_source_share:.0%})"
        )
    return (
        f"{named}: this cycle read the other sources only ({share:.0%} of the rows); the reference suite "
        "was not run and the verdicts of detectors that read the store's rows are held back"
    )


def answering_share(parts: list[_Part], baseline_rows: Mapping[str, int] | None) -> float:
    """The answering sources' share of the rows: by the baseline's per-source counts when it
    has them; else by this cycle's estimates, a down source counted as the mean answering one."""
    up = {p.source.name for p in parts if p.error is None}
    known = baseline_rows or {}
    if all(p.source.name in known for p in parts) and sum(known[p.source.name] for p in parts) > 0:
        weights = {p.source.name: float(known[p.source.name]) for p in parts}
    else:
        answering = [p.rows for p in parts if p.error is None]
        mean = float(np.mean(answering)) if answering else 0.0
        weights = {p.source.name: float(p.rows if p.error is None else mean) for p in parts}
    total = sum(weights.values())
    if total <= 0:
        return len(up) / len(parts)
    return sum(w for name, w in weights.items() if name in up) / total


def allocate(rows: list[int], size: int, rng: np.random.Generator) -> list[int]:
    """`size` split in proportion to `rows` by systematic random rounding: each share is its
    expected value rounded down or up, E[n_i] = size * rows_i / sum exactly, and they sum to `size`."""
    weights = np.asarray(rows, dtype=np.float64)
    if weights.sum() <= 0:
        return [0] * len(rows)
    edges = np.concatenate([[0.0], np.cumsum(weights) / weights.sum() * size])
    edges[-1] = size  # exact, whatever the float sum
    return np.diff(np.floor(edges + rng.random())).astype(int).tolist()


def _scaled(counts: Mapping[object, int], total: int, rng: np.random.Generator) -> dict[object, int]:
    keys = list(counts)
    shares = allocate([counts[k] for k in keys], total, rng) if keys else []
    return {k: n for k, n in zip(keys, shares, strict=True) if n}


def trim(sample: VectorSample, keep: int, rng: np.random.Generator) -> VectorSample:
    """A uniform `keep` of a source's sample (a source read whole that the allocation wanted
    less of, or arrivals): the vectors and ids kept exactly; the per-version counts and the
    set-aside rows' dimensions, which the sampler counts but does not return row by row,
    scaled to the kept share."""
    if sample.rows_sampled <= keep:
        return sample
    good = len(sample.vectors)
    chosen = rng.choice(sample.rows_sampled, size=keep, replace=False)
    kept = np.sort(chosen[chosen < good])
    nulls = int(np.count_nonzero((chosen >= good) & (chosen < good + sample.null_vectors)))
    wrong = keep - len(kept) - nulls
    others = {d: c for d, c in sample.dims_seen.items() if d != sample.dim}
    dims = {**_scaled(others, wrong, rng), **({sample.dim: len(kept)} if len(kept) else {})}
    return replace(
        sample,
        vectors=sample.vectors[kept],
        ids=[sample.ids[i] for i in kept.tolist()] if sample.ids is not None else None,
        versions=_scaled(sample.versions, keep, rng),  # type: ignore[arg-type]
        rows_sampled=keep,
        null_vectors=nulls,
        wrong_dim=wrong,
        dims_seen=dims,  # type: ignore[arg-type]
    )


def merge_samples(samples: list[VectorSample], dim: int, with_ids: bool) -> VectorSample:
    """The union of the sources' samples, in source order."""

    def total(counts: list[Mapping]) -> dict:
        out: dict = {}
        for c in counts:
            for key, n in c.items():
                out[key] = out.get(key, 0) + n
        return out

    vectors = [s.vectors for s in samples if len(s.vectors)]
    return VectorSample(
        vectors=np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32),
        ids=[i for s in samples for i in (s.ids or [])] if with_ids else None,
        versions=total([s.versions for s in samples]),
        method=samples[0].method if samples else "full",
        dim=dim,
        rows_sampled=sum(s.rows_sampled for s in samples),
        null_vectors=sum(s.null_vectors for s in samples),
        wrong_dim=sum(s.wrong_dim for s in samples),
        dims_seen=total([s.dims_seen for s in samples]),
        table_pages=sum(s.table_pages for s in samples),
        table_rows_estimate=sum(s.table_rows_estimate for s in samples),
        pages_probed=sum(s.pages_probed for s in samples),
    )


def merge_runs(runs: list[SuiteRun], k: int) -> SuiteRun:
    """One top K per query from each source's top K: by similarity, ties by id, so the merge
    does not depend on the order of the sources."""
    queries = len(runs[0].ids) if runs else 0
    ids: list[list[str]] = []
    scores = np.full((queries, k), np.nan)
    for q in range(queries):
        found = [(float(run.scores[q, j]), row) for run in runs for j, row in enumerate(run.ids[q])]
        top = sorted(found, key=lambda f: (-f[0], f[1]))[:k]
        ids.append([row for _, row in top])
        scores[q, : len(top)] = [score for score, _ in top]
    return SuiteRun(ids=ids, scores=scores)


def source_watermarks(watermark: str) -> dict[str, str | None] | None:
    """The per-source watermarks of a several-source baseline; None for another baseline's."""
    try:
        marks = json.loads(watermark)
    except ValueError:
        return None
    if not isinstance(marks, dict) or not isinstance(marks.get("sources"), dict):
        return None
    return marks["sources"]


def fetch_documents_everywhere(
    sessions: Sessions, collection: CollectionSettings, ids: list[str], *, with_text: bool = True
) -> Documents:
    """(vector, text) of the given rows, looked up in each of the collection's sources."""
    if not collection.several:
        return fetch_documents(sessions.store, collection, ids, with_text=with_text)
    found: Documents = {}
    for part in (_Part(source, one) for source, one in collection.per_source()):
        with _naming(part):
            rows = fetch_documents(sessions.on(part.source.dsn), part.collection, ids, with_text=with_text)
        for row_id, document in rows.items():
            found.setdefault(row_id, document)
    return found


__all__ = [
    "ManyTables",
    "OneTable",
    "allocate",
    "answering_share",
    "fetch_documents_everywhere",
    "live_rows",
    "merge_runs",
    "merge_samples",
    "outage",
    "reader",
    "source_watermarks",
    "trim",
]
