"""Fitting a Drift-Adapter from the stores and reporting what it recovers: paired rows of
the same documents under both model versions are read from the vector store (read-only),
the map is fitted on most of them and measured on the rest, and the reference suite is run
raw, mapped and (where the store is re-embedded enough) against the new rows, as the
application would query. The math lives in `driftwatch.adapter`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Engine

from driftwatch.adapter import (
    HOLD_OUT_SHARE,
    METHODS,
    Adapter,
    Method,
    Progress,
    fit,
    held_out_size,
    mean_cosine,
    minimum_pairs,
)
from driftwatch.adapter_queries import QueryPairs, optional_query_pairs
from driftwatch.config import CollectionSettings, split_qualified_name
from driftwatch.detect.observation import ReferenceQuery, recall_hits
from driftwatch.errors import ConfigError, PairsError, SuiteError
from driftwatch.observe import suite_vectors
from driftwatch.pg.codecs import to_array
from driftwatch.pg.session import Session, Sessions
from driftwatch.pg.suite import run_queries
from driftwatch.pg.tables import Source
from driftwatch.store import repository

ORACLE_MIN_COVERAGE = 0.9  # share of old rows that need a new counterpart before new-vs-new recall means much


# ---------------------------------------------------------------- reading pairs


@dataclass(frozen=True, eq=False)
class Pairs:
    """Vectors of the same documents under both models, row i of each the same id."""

    ids: list[str]
    new: np.ndarray  # float32 (n, d_new): to_version vectors
    old: np.ndarray  # float32 (n, d_old): from_version vectors
    available: int  # ids with a vector under both versions, before the max_pairs cut
    skipped: int  # chosen ids dropped: a vector of a minority dimension, or all zeros

    def __len__(self) -> int:
        return len(self.ids)


def _version_column(collection: CollectionSettings) -> str:
    if not collection.model_version_column:
        raise ConfigError(
            [f"collections.{collection.name}.model_version_column: not set; the adapter needs it to tell "
             "the old model's rows from the new one's"]
        )  # fmt: skip
    return collection.model_version_column


def _side_settings(collection: CollectionSettings, side_table: str | None) -> CollectionSettings:
    if side_table is None:
        return collection
    try:
        split_qualified_name(side_table)
    except ValueError as exc:
        raise ValueError(f"side table {side_table!r}: {exc}") from None
    return collection.model_copy(update={"table": side_table})


def read_pairs(
    session: Session,
    collection: CollectionSettings,
    from_version: str,
    to_version: str,
    max_pairs: int,
    rng: np.random.Generator,
    side_table: str | None = None,
) -> Pairs:
    """Up to `max_pairs` ids with a vector under both versions, and both vectors.

    Old vectors come from the collection's table (rows where the model-version column is
    `from_version`); new ones from the same table, or from `side_table` (same id, vector
    and model-version columns) when the re-embedded sample lives apart. When more ids are
    shared than `max_pairs`, a pseudo-random subset is taken (ordered by a hash of the id
    with a seed from `rng`). Vectors arrive in pgvector's binary form through its psycopg
    loaders; all values are bound parameters.
    """
    if from_version == to_version:
        raise ValueError(f"from_version and to_version are both {from_version!r}: nothing to map")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, not {max_pairs}")
    version_col = _version_column(collection)
    new_settings = _side_settings(collection, side_table)
    old_src, new_src = Source.of(collection), Source.of(new_settings)
    label = old_src.label if side_table is None else f"{old_src.label} + {new_src.label}"
    seed = str(int(rng.integers(2**31)))
    with session.reading(label, "reading paired vectors", vectors=True) as conn:
        session.describe(old_src, collection)  # both tables and their columns exist
        session.describe(new_src, new_settings)
        ver = sql.Identifier(version_col)
        query = sql.SQL(
            """WITH shared AS (
                   SELECT {id} AS id FROM {old_table} WHERE {ver} = %(old)s AND {vec} IS NOT NULL
                   INTERSECT
                   SELECT {id} FROM {new_table} WHERE {ver} = %(new)s AND {vec} IS NOT NULL
               ), chosen AS (
                   SELECT id, count(*) OVER () AS available, hashtext(id::text || %(seed)s) AS draw
                   FROM shared ORDER BY draw, id LIMIT %(limit)s
               )
               SELECT c.id::text, c.available, o.v, n.v
               FROM chosen c
               CROSS JOIN LATERAL (
                   SELECT {vec} AS v FROM {old_table}
                   WHERE {id} = c.id AND {ver} = %(old)s AND {vec} IS NOT NULL LIMIT 1
               ) o
               CROSS JOIN LATERAL (
                   SELECT {vec} AS v FROM {new_table}
                   WHERE {id} = c.id AND {ver} = %(new)s AND {vec} IS NOT NULL LIMIT 1
               ) n
               ORDER BY c.draw, c.id"""
        ).format(
            id=old_src.id_col, vec=old_src.vec_col, ver=ver, old_table=old_src.table, new_table=new_src.table
        )
        params = {"old": from_version, "new": to_version, "seed": seed, "limit": max_pairs}
        rows = conn.cursor(binary=True).execute(query, params).fetchall()
        if not rows:
            hint = how_to_pair(collection, from_version, to_version)
            raise _no_pairs(conn, old_src, new_src, ver, version_col, from_version, to_version, hint)
    return _decode_pairs(rows)


def how_to_pair(collection: CollectionSettings, from_version: str, to_version: str) -> str:
    """How to give `adapter fit` pairs, with the collection's own names, for its errors."""
    c = collection
    side = f"{c.table}_{re.sub(r'[^A-Za-z0-9_]+', '_', to_version)}"
    return (
        f"to provide pairs, re-embed a sample of existing rows (a few thousand: 5,000 is plenty) with the "
        f"{to_version!r} model into the table itself (rows with {c.model_version_column} = {to_version!r}) "
        f"or into a side table with the same columns, e.g. `CREATE TABLE {side} (LIKE {c.table})`, "
        f"fill it with ({c.id_column}, {c.vector_column}, {c.model_version_column} = {to_version!r}) rows, "
        f"then run `driftwatch adapter fit --collection {c.name} --from-version {from_version} "
        f"--to-version {to_version} --side-table {side}`"
    )


def _no_pairs(
    conn: psycopg.Connection, old_src: Source, new_src: Source, ver: sql.Composable,
    version_col: str, from_version: str, to_version: str, hint: str,
) -> PairsError:  # fmt: skip
    """Say which side is missing, and which versions the table does hold."""

    def count(source: Source, version: str) -> int:
        return conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} = %s AND {} IS NOT NULL").format(
                source.table, ver, source.vec_col
            ),
            (version,),
        ).fetchone()[0]

    def present(source: Source) -> str:
        rows = conn.execute(
            sql.SQL("SELECT {}::text, count(*) FROM {} GROUP BY 1 ORDER BY 2 DESC LIMIT 8").format(
                ver, source.table
            )
        ).fetchall()
        return ", ".join(f"{v!r} ({n} rows)" for v, n in rows) or "none: the table is empty"

    for source, version in ((old_src, from_version), (new_src, to_version)):
        if count(source, version) == 0:
            return PairsError(
                f"{source.label}: no rows with a vector where {version_col} = {version!r}; "
                f"versions present: {present(source)}" + (f"; {hint}" if version == to_version else "")
            )
    where = old_src.label if old_src.label == new_src.label else f"{old_src.label} and {new_src.label}"
    return PairsError(
        f"{where}: no id has a vector under both {from_version!r} and {to_version!r} "
        f"({count(old_src, from_version)} rows under {from_version!r}, "
        f"{count(new_src, to_version)} under {to_version!r}); {hint}"
    )


def _decode_pairs(rows: list[tuple[str, int, Any, Any]]) -> Pairs:
    """Keep the pairs of the dominant (old dim, new dim), and drop pairs with an all-zero
    vector (no direction to learn from)."""
    old_rows = [to_array(o) for _, _, o, _ in rows]
    new_rows = [to_array(n) for _, _, _, n in rows]
    sizes = np.array([(o.size, n.size) for o, n in zip(old_rows, new_rows, strict=True)], dtype=np.int64)  # type: ignore[union-attr]
    combos, counts = np.unique(sizes, axis=0, return_counts=True)
    old_size, new_size = combos[int(np.argmax(counts))]
    keep = np.flatnonzero((sizes[:, 0] == old_size) & (sizes[:, 1] == new_size))
    old = np.stack([old_rows[i] for i in keep]).astype(np.float32)  # type: ignore[misc]
    new = np.stack([new_rows[i] for i in keep]).astype(np.float32)  # type: ignore[misc]
    usable = np.any(old, axis=1) & np.any(new, axis=1)
    return Pairs(
        ids=[rows[i][0] for i in keep[usable]],
        new=new[usable],
        old=old[usable],
        available=int(rows[0][1]),
        skipped=len(rows) - int(usable.sum()),
    )


def version_coverage(
    session: Session,
    collection: CollectionSettings,
    from_version: str,
    to_version: str,
    side_table: str | None = None,
) -> tuple[int, int]:
    """(ids with an old vector in the collection's table, how many of them also have a new
    one, in that table or in `side_table`): whether the new vectors are complete enough to
    search them as the oracle (a full re-embed)."""
    ver = sql.Identifier(_version_column(collection))
    source, new_source = Source.of(collection), Source.of(_side_settings(collection, side_table))
    with session.reading(source.label, "counting versions") as conn:
        old_ids, both = conn.execute(
            sql.SQL(
                """SELECT (SELECT count(DISTINCT {id}) FROM {t} WHERE {ver} = %(old)s AND {vec} IS NOT NULL),
                          (SELECT count(*) FROM (
                               SELECT {id} FROM {t} WHERE {ver} = %(old)s AND {vec} IS NOT NULL
                               INTERSECT
                               SELECT {id} FROM {nt} WHERE {ver} = %(new)s AND {vec} IS NOT NULL) s)"""
            ).format(id=source.id_col, t=source.table, nt=new_source.table, ver=ver, vec=source.vec_col),
            {"old": from_version, "new": to_version},
        ).fetchone()
    return int(old_ids), int(both)


# ---------------------------------------------------------------- the suite


@dataclass(frozen=True)
class SuiteRecall:
    """Recall@k of the reference suite's new-model queries, searched as the application would."""

    k: int
    queries: int
    raw: float | None  # new queries vs old rows; None when the dimensions differ (cannot search at all)
    mapped: float  # adapter-mapped new queries vs old rows
    oracle: float | None  # new queries vs new rows; None when too few old rows have a new one
    oracle_coverage: float  # share of old ids that have a new-version row in the table
    query_vectors: str  # the embedder kind, or "stored embeddings"


def evaluate_suite(
    session: Session,
    collection: CollectionSettings,
    adapter: Adapter,
    queries: list[ReferenceQuery],
    coverage: float,
    k: int,
    side_table: str | None = None,
) -> SuiteRecall:
    """Raw, mapped and oracle recall@k through the live index (filtered by model version).

    The queries must be new-model vectors: the live embedder's when one is configured,
    else the stored suite embeddings, which must then come from the new model. The oracle
    searches the new rows where they are: `side_table` when given, else the collection's table.
    """
    column = _version_column(collection)
    if adapter.from_version is None or adapter.to_version is None:
        raise ValueError("evaluate_suite needs an adapter that names its from_version and to_version")
    old, new = adapter.from_version, adapter.to_version
    try:
        vectors, source = suite_vectors(collection, queries, adapter.dim_in)
    except SuiteError as exc:
        raise SuiteError(
            [*exc.problems,
             f"the adapter needs query vectors of the new model {new!r} ({adapter.dim_in} dimensions): "
             "configure [collections.embedder] with it, or import the suite with its embeddings"]
        ) from None  # fmt: skip
    relevant = [q.relevant_ids for q in queries]

    def recall(query_vectors: np.ndarray, version: str, where: CollectionSettings = collection) -> float:
        run = run_queries(session, where, query_vectors, k, where=(column, version))
        hits, trials = recall_hits(run.ids, relevant, k)
        return float(hits.sum() / max(trials.sum(), 1))

    raw = recall(vectors, old) if adapter.dim_in == adapter.dim_out else None
    mapped = recall(adapter.apply(vectors), old)
    new_rows = _side_settings(collection, side_table)
    oracle = recall(vectors, new, new_rows) if coverage >= ORACLE_MIN_COVERAGE else None
    return SuiteRecall(k, len(queries), raw, mapped, oracle, coverage, source)


# ---------------------------------------------------------------- fit and report


@dataclass(frozen=True)
class QueryPairsReport:
    """Logged queries the map also learnt from (driftwatch/adapter_queries.py), and how close
    the held-out ones land to their old vectors."""

    logged: int  # distinct from_version texts read from the query log
    fit: int
    held_out: int
    held_out_cosine_before: float | None  # None when the dimensions differ
    held_out_cosine_after: float | None  # None when none is held out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": "query_log",
            "logged": self.logged,
            "fit": self.fit,
            "held_out": self.held_out,
            "held_out_cosine": {"before": self.held_out_cosine_before, "after": self.held_out_cosine_after},
        }


@dataclass
class AdapterReport:
    collection: str
    table: str
    side_table: str | None
    from_version: str
    to_version: str
    method: str
    metric: str
    dim_new: int
    dim_old: int
    pairs_available: int
    pairs_read: int
    pairs_fit: int
    pairs_held_out: int
    held_out_cosine_before: float | None  # raw new vs old; None when the dimensions differ
    held_out_cosine_after: float
    recall: SuiteRecall | None  # None without a reference suite
    query_pairs: QueryPairsReport | None  # None: fitted on document pairs only
    adapter_path: Path
    report_path: Path
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    adapter: Adapter | None = None

    @property
    def kind(self) -> str:
        """The map fitted: `method`, or for auto the one it chose."""
        return self.adapter.kind if self.adapter else self.method

    @property
    def recovered_share(self) -> float | None:
        """Mapped recall as a share of what a full re-embed gives (oracle)."""
        r = self.recall
        if r is None or r.oracle is None or r.oracle == 0:
            return None
        return r.mapped / r.oracle

    def to_dict(self) -> dict[str, Any]:
        r = self.recall
        return {
            "collection": self.collection,
            "table": self.table,
            "side_table": self.side_table,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "method": self.method,
            "kind": self.kind,
            "selection": self.adapter.selection if self.adapter else None,
            "metric": self.metric,
            "dimensions": {"new": self.dim_new, "old": self.dim_old},
            "rank": self.adapter.rank if self.adapter else None,
            "ridge": self.adapter.ridge if self.adapter else None,
            "pairs": {
                "available": self.pairs_available,
                "read": self.pairs_read,
                "fit": self.pairs_fit,
                "held_out": self.pairs_held_out,
            },
            "held_out_cosine": {"before": self.held_out_cosine_before, "after": self.held_out_cosine_after},
            "query_pairs": None if self.query_pairs is None else self.query_pairs.to_dict(),
            "recall": None
            if r is None
            else {
                "k": r.k,
                "queries": r.queries,
                "raw": r.raw,
                "mapped": r.mapped,
                "oracle": r.oracle,
                "oracle_coverage": r.oracle_coverage,
                "recovered_share": self.recovered_share,
                "query_vectors": r.query_vectors,
            },
            "adapter_path": str(self.adapter_path),
            "report_path": str(self.report_path),
            "seconds": self.seconds,
            "notes": self.notes,
        }


def output_paths(
    output: Path | None, collection: str, from_version: str, to_version: str
) -> tuple[Path, Path]:
    """(<output>.npz, <output>.json); by default adapter-<collection>-<from>-to-<to> in the cwd."""
    if output is None:
        safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", part) for part in (collection, from_version, to_version)]
        stem = Path(f"adapter-{safe[0]}-{safe[1]}-to-{safe[2]}")
    else:
        stem = Path(output)
        if stem.name.endswith((".npz", ".json")):
            stem = stem.with_name(stem.name.rsplit(".", 1)[0])
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def fit_and_report(
    collection: CollectionSettings,
    engine: Engine,
    from_version: str,
    to_version: str,
    *,
    method: Method = "auto",
    rank: int | None = None,
    max_pairs: int = 20000,
    side_table: str | None = None,
    query_pairs: int | None = None,
    output: Path | None = None,
    rng: np.random.Generator | None = None,
    progress: Progress | None = None,
) -> AdapterReport:
    """Read pairs, fit on 80% of them, measure the other 20% and the reference suite, save.

    `query_pairs`: how many logged queries to pair through the embedder (adapter_queries.py);
    None is up to DEFAULT_QUERY_PAIRS when the collection has a query log and an embedder.
    The saved adapter is the one measured (fitted without the held-out pairs), so every
    number in the report describes the file the application loads. The command holds one
    connection to the store throughout (and one to the query log's database, if another).
    """
    with Sessions(collection) as sessions:
        return _fit_and_report(
            sessions, collection, engine, from_version, to_version, method=method, rank=rank,
            max_pairs=max_pairs, side_table=side_table, query_pairs=query_pairs, output=output, rng=rng,
            progress=progress,
        )  # fmt: skip


def _enough_pairs(
    pairs: Pairs, method: str, where: str, from_version: str, to_version: str, hint: str
) -> int:
    """How many pairs to hold out, once there are enough to fit `method` on the rest."""
    dim_new = pairs.new.shape[1]
    held = held_out_size(len(pairs))
    needed = minimum_pairs(method, dim_new)
    if len(pairs) - held < needed:
        total = next(n for n in range(needed, 2 * needed + 10) if n - held_out_size(n) >= needed)
        raise PairsError(
            f"{where}: only {len(pairs)} ids have vectors under both {from_version!r} and {to_version!r} "
            f"(of {pairs.available} shared); {method} on {dim_new}-d vectors needs at least {total} "
            f"({needed} to fit after holding out {HOLD_OUT_SHARE:.0%})"
            + ("; raise --max-pairs" if pairs.available > len(pairs) else f"; {hint}")
        )
    return held


def _suite_recall(
    session: Session,
    collection: CollectionSettings,
    queries: list[ReferenceQuery],
    adapter: Adapter,
    from_version: str,
    to_version: str,
    side_table: str | None,
    notes: list[str],
    say: Progress,
) -> SuiteRecall | None:
    """Recall@K of the reference suite raw, mapped and re-embedded; what it could not measure
    goes into `notes`."""
    if not queries:
        notes.append("no reference suite: recall not measured (driftwatch suite import)")
        return None
    say(f"{collection.name}: measuring recall of {len(queries)} suite queries (raw, mapped, oracle)")
    # The oracle searches the new rows where they live: the side table, or the collection's own.
    old_ids, both = version_coverage(session, collection, from_version, to_version, side_table)
    coverage = both / old_ids if old_ids else 0.0
    k = collection.reference_suite.k if collection.reference_suite else 10
    recall = evaluate_suite(session, collection, adapter, queries, coverage, k, side_table)
    dim_new, dim_old = adapter.W.shape
    if recall.raw is None:
        notes.append(
            f"raw recall not applicable: {to_version!r} vectors have {dim_new} dimensions, "
            f"{from_version!r} rows {dim_old}; they cannot be searched together at all"
        )
    if recall.oracle is None:
        notes.append(
            f"oracle not available: only {coverage:.0%} of {from_version!r} rows have a {to_version!r} "
            f"row in {side_table or collection.table} (needs {ORACLE_MIN_COVERAGE:.0%})"
        )
    if recall.raw is not None and recall.raw > recall.mapped:
        notes.append(
            "raw recall beats mapped recall: are the suite's query vectors really from "
            f"{to_version!r}? Stored embeddings must come from the new model"
        )
    return recall


def _write_atomically(path: Path, text: str) -> None:
    """A reader never sees half a report: write beside it, then rename over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fit_and_report(
    sessions: Sessions,
    collection: CollectionSettings,
    engine: Engine,
    from_version: str,
    to_version: str,
    *,
    method: Method,
    rank: int | None,
    max_pairs: int,
    side_table: str | None,
    query_pairs: int | None,
    output: Path | None,
    rng: np.random.Generator | None,
    progress: Progress | None,
) -> AdapterReport:
    started = time.monotonic()
    rng = rng or np.random.default_rng()
    say = progress or (lambda _message: None)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if rank is not None and method != "affine":
        raise ValueError("rank applies to the affine method only; the other maps keep every dimension")
    npz_path, json_path = output_paths(output, collection.name, from_version, to_version)
    seconds: dict[str, float] = {}
    notes: list[str] = []
    session = sessions.store

    where = collection.table + (f" and {side_table}" if side_table else "")
    say(f"{collection.name}: reading up to {max_pairs} {from_version}/{to_version} pairs from {where}")
    t = time.monotonic()
    pairs = read_pairs(session, collection, from_version, to_version, max_pairs, rng, side_table)
    session.end_snapshot()  # fitting takes a while: hold no snapshot (nor its locks) meanwhile
    seconds["read_pairs"] = time.monotonic() - t
    if pairs.skipped:
        notes.append(f"{pairs.skipped} pairs dropped: an all-zero vector, or another dimension than the rest")
    dim_new, dim_old = pairs.new.shape[1], pairs.old.shape[1]
    hint = how_to_pair(collection, from_version, to_version)
    held = _enough_pairs(pairs, method, where, from_version, to_version, hint)
    order = rng.permutation(len(pairs))
    test, train = order[:held], order[held:]

    t = time.monotonic()
    suite = repository.load_suite(engine, collection.name)
    queries = optional_query_pairs(
        sessions.query_log, collection, from_version, to_version, query_pairs, dims=(dim_new, dim_old),
        exclude={q.text for q in suite if q.text}, seed=str(int(rng.integers(2**31))), notes=notes, say=say,
    )  # fmt: skip
    sessions.end_snapshot()
    q_test, q_train = _split_queries(queries, rng)
    seconds["query_pairs"] = time.monotonic() - t

    fit_new, fit_old = pairs.new[train], pairs.old[train]
    if queries is not None:
        fit_new = np.concatenate([fit_new, queries.new[q_train]])
        fit_old = np.concatenate([fit_old, queries.old[q_train]])
    learnt = f"{len(train)} pairs" + (f" and {len(q_train)} query pairs" if queries is not None else "")
    say(f"{collection.name}: fitting {method} on {learnt} ({dim_new}-d -> {dim_old}-d)")
    t = time.monotonic()
    adapter = fit(
        method, fit_new, fit_old, rank=rank, metric=collection.metric,
        from_version=from_version, to_version=to_version, rng=rng,
    )  # fmt: skip
    seconds["fit"] = time.monotonic() - t
    before = mean_cosine(pairs.new[test], pairs.old[test]) if dim_new == dim_old else None
    after = mean_cosine(adapter.apply(pairs.new[test]), pairs.old[test])

    t = time.monotonic()
    recall = _suite_recall(
        session, collection, suite, adapter, from_version, to_version, side_table, notes, say
    )
    seconds["evaluate"] = time.monotonic() - t

    adapter.save(npz_path)
    seconds["total"] = time.monotonic() - started
    report = AdapterReport(
        collection=collection.name,
        table=collection.table,
        side_table=side_table,
        from_version=from_version,
        to_version=to_version,
        method=method,
        metric=collection.metric,
        dim_new=dim_new,
        dim_old=dim_old,
        pairs_available=pairs.available,
        pairs_read=len(pairs),
        pairs_fit=len(train),
        pairs_held_out=len(test),
        held_out_cosine_before=before,
        held_out_cosine_after=after,
        recall=recall,
        query_pairs=None if queries is None else _query_report(queries, q_train, q_test, adapter),
        adapter_path=npz_path,
        report_path=json_path,
        seconds=seconds,
        notes=notes,
        adapter=adapter,
    )
    _write_atomically(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    say(f"{collection.name}: adapter saved to {npz_path}, report to {json_path}")
    return report


def _split_queries(queries: QueryPairs | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(held out, fitted) rows of the query pairs: the same share as the document pairs, none
    held out of fewer than ten."""
    if queries is None:
        return np.arange(0), np.arange(0)
    order = rng.permutation(len(queries))
    held = held_out_size(len(queries)) if len(queries) >= 10 else 0
    return order[:held], order[held:]


def _query_report(
    queries: QueryPairs, train: np.ndarray, test: np.ndarray, adapter: Adapter
) -> QueryPairsReport:
    same_dim = queries.new.shape[1] == queries.old.shape[1]
    held = len(test) > 0
    return QueryPairsReport(
        logged=queries.logged,
        fit=len(train),
        held_out=len(test),
        held_out_cosine_before=mean_cosine(queries.new[test], queries.old[test])
        if held and same_dim
        else None,
        held_out_cosine_after=mean_cosine(adapter.apply(queries.new[test]), queries.old[test])
        if held
        else None,
    )


__all__ = [
    "AdapterReport",
    "Pairs",
    "QueryPairsReport",
    "SuiteRecall",
    "evaluate_suite",
    "fit_and_report",
    "how_to_pair",
    "output_paths",
    "read_pairs",
    "version_coverage",
]
