"""Everything one cycle (or a baseline capture) reads from the vector store, in one place
and in one snapshot per monitored database.

The detectors then work on these plain arrays and never see a connection.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import Observation, SuiteObservation
from driftwatch.embedders import make_embedder
from driftwatch.errors import SuiteError
from driftwatch.pg.querylog import read_window
from driftwatch.pg.sampler import arrival_watermark, fetch_by_ids, sample_arrivals, sample_collection
from driftwatch.pg.session import Session, Sessions
from driftwatch.pg.suite import SuiteQuery, parse_suite, run_queries
from driftwatch.pg.tables import Source, check_index_metric
from driftwatch.store import repository

log = logging.getLogger(__name__)


def suite_queries(settings: CollectionSettings, engine: Engine, refresh: bool = False) -> list[SuiteQuery]:
    """The stored suite; at baseline time (`refresh`) re-imported from the configured file."""
    config = settings.reference_suite
    if refresh and config is not None and config.path.exists():
        repository.replace_suite(engine, settings.name, parse_suite(config.path))
    return repository.load_suite(engine, settings.name)


def suite_vectors(
    settings: CollectionSettings, queries: list[SuiteQuery], dim: int | None
) -> tuple[np.ndarray, str]:
    """Query vectors: text through the live embedder when one is configured, else stored
    embeddings; checked against the collection's dimension `dim` when it is known."""
    if settings.embedder is not None and all(q.text for q in queries):
        vectors = make_embedder(settings.embedder).embed([q.text or "" for q in queries])
        source = settings.embedder.kind
    else:
        missing = [q.query_id for q in queries if q.embedding is None]
        if missing:
            raise SuiteError(
                [f"query {missing[0]!r} (and {len(missing) - 1} more) has text but no embedding, "
                 "and no [collections.embedder] is configured"]
            )  # fmt: skip
        vectors = np.stack([np.asarray(q.embedding, dtype=np.float32) for q in queries])
        source = "stored embeddings"
    if dim is not None:
        check_dimension(vectors, dim)
    return vectors, source


def check_dimension(vectors: np.ndarray, dim: int) -> None:
    if vectors.shape[1] != dim:
        raise SuiteError([f"suite embeddings have {vectors.shape[1]} dimensions, the collection has {dim}"])


def check_metric(store: Session, settings: CollectionSettings) -> None:
    """Fail on a `metric` the column's ANN index does not answer, naming its operator class
    and the right metric; warn when the column has no ANN index at all."""
    source = Source.of(settings)
    with store.reading(source.label, "reading the vector column's indexes"):
        column = store.describe(source, settings)
    warning = check_index_metric(column, settings.metric, f"{settings.table}.{settings.vector_column}")
    if warning:
        log.warning("%s: %s", settings.name, warning)


def observe(
    sessions: Sessions,
    settings: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator,
    *,
    sample_size: int,
    expected_dim: int | None,
    with_ids: bool,
    window: tuple[datetime, datetime] | None,
    suite: list[SuiteQuery],
    exact_rows: np.ndarray,
    sentinel_ids: list[str],
    arrivals_after: str | None = None,
    read_watermark: bool = False,
) -> Observation:
    """Read the sample, the query-log window, the suite's ANN (and exact) queries and the
    sentinels in one snapshot of each database, then end the snapshot (its locks and its
    hold on vacuum go while the detectors score; the connections stay for the pass).

    The suite is embedded first, so a slow embedder never holds a snapshot open. With
    `arrivals_after` (a cycle of a collection with an arrival column) the rows past that
    watermark are sampled too; with `read_watermark` (a capture) the watermark itself is read.
    """
    embedded = suite_vectors(settings, suite, None) if suite else None
    try:
        store = sessions.store
        check_metric(store, settings)  # before the sample's cost: a wrong metric fails in seconds
        sample = sample_collection(
            store, settings, sample_size, rng, expected_dim=expected_dim, with_ids=with_ids
        )
        queries = (
            read_window(sessions.query_log, settings, *window) if window and settings.query_log else None
        )
        observed_suite = None
        if embedded is not None and sample.dim:
            vectors, embedded_with = embedded
            check_dimension(vectors, sample.dim)
            k = settings.reference_suite.k if settings.reference_suite else 10
            ann = run_queries(store, settings, vectors, k)
            exact = (
                run_queries(store, settings, vectors[exact_rows], k, exact=True) if len(exact_rows) else None
            )
            observed_suite = SuiteObservation(
                query_ids=[q.query_id for q in suite],
                relevant=[q.relevant_ids for q in suite],
                k=k,
                ann=ann,
                exact=exact,
                exact_rows=exact_rows,
                embedded_with=embedded_with,
            )
        sentinels = fetch_by_ids(store, settings, sentinel_ids) if sentinel_ids else {}
        arrivals, watermark = None, None
        if arrivals_after is not None and sample.dim:
            arrivals = sample_arrivals(
                store, settings, arrivals_after, sample_size, sample.dim, rng, with_ids=with_ids
            )
        if read_watermark:
            watermark = arrival_watermark(store, settings)
    finally:
        sessions.end_snapshot()
    return Observation(
        sample=sample,
        window=queries,
        suite=observed_suite,
        sentinels=sentinels,
        arrivals=arrivals,
        watermark=watermark,
    )


__all__ = ["check_dimension", "check_metric", "observe", "suite_queries", "suite_vectors"]
