"""Everything one cycle (or a baseline capture) reads from the vector store, in one place
and in one snapshot per monitored database.

The detectors then work on these plain arrays and never see a connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from sqlalchemy import Engine

from driftwatch.config import MAX_PROBES, CollectionSettings
from driftwatch.detect.observation import CanaryProbes, Observation, ReferenceQuery, SuiteObservation
from driftwatch.embedders import EmbedderError, make_embedder
from driftwatch.errors import ConfigError, SuiteError
from driftwatch.pg.querylog import LogRead, read_window
from driftwatch.pg.session import Session, Sessions
from driftwatch.pg.sources import ManyTables, OneTable, reader
from driftwatch.pg.tables import Source, check_index_metric
from driftwatch.store import repository
from driftwatch.suite import parse_suite

STORED = "stored embeddings"  # the suite's vectors came from its file, not the live embedder

SUITE_PARTIAL = "reference suite not run: a source is down, and its top K would be missing"
ARRIVALS_UNMARKED = (
    "arrivals not read: the baseline's watermark is not one per source; capture a new baseline"
)

log = logging.getLogger(__name__)


def suite_queries(
    collection: CollectionSettings, engine: Engine, refresh: bool = False
) -> list[ReferenceQuery]:
    """The stored suite; at baseline time (`refresh`) re-imported from the configured file."""
    config = collection.reference_suite
    if refresh and config is not None and config.path.exists():
        repository.replace_suite(engine, collection.name, parse_suite(config.path))
    return repository.load_suite(engine, collection.name)


def suite_vectors(
    collection: CollectionSettings, queries: list[ReferenceQuery], dim: int | None
) -> tuple[np.ndarray, str]:
    """Query vectors: text through the live embedder when one is configured, else stored
    embeddings; checked against the collection's dimension `dim` when it is known."""
    if collection.embedder is not None and all(q.text for q in queries):
        vectors = make_embedder(collection.embedder).embed([q.text or "" for q in queries])
        source = collection.embedder.kind
    else:
        missing = [q.query_id for q in queries if q.embedding is None]
        if missing:
            raise SuiteError(
                [f"query {missing[0]!r} (and {len(missing) - 1} more) has text but no embedding, "
                 "and no [collections.embedder] is configured"]
            )  # fmt: skip
        vectors = np.stack([np.asarray(q.embedding, dtype=np.float32) for q in queries])
        source = STORED
    if dim is not None:
        check_dimension(vectors, dim)
    return vectors, source


def canary_texts(collection: CollectionSettings, engine: Engine) -> list[str] | None:
    """The canary's probe texts: inline, one a line from its file, or the stored suite's texts
    (up to 64); None when the collection has no [collections.canary]."""
    config = collection.canary
    if config is None:
        return None
    if config.texts is not None:
        return list(config.texts)
    if config.path is not None:
        key = f"collections[{collection.name}].canary.path"
        try:
            lines = config.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise ConfigError([f"{key}: cannot read {config.path}: {why}"]) from None
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise ConfigError([f"{key}: {config.path} has no probe texts (one a line)"])
        return texts
    return [q.text for q in repository.load_suite(engine, collection.name) if q.text][:MAX_PROBES]


def embed_probes(collection: CollectionSettings, texts: list[str] | None) -> CanaryProbes | None:
    """The probes through the live embedder; an embedder that cannot be reached is a reason
    the canary gives this cycle, not a failed cycle."""
    if texts is None or collection.embedder is None:
        return None
    if not texts:
        why = "no probe texts: the reference suite has none; give [collections.canary] texts or path"
        return CanaryProbes([], None, why)
    try:
        return CanaryProbes(texts, make_embedder(collection.embedder).embed(texts))
    except EmbedderError as exc:
        return CanaryProbes(texts, None, str(exc))


def check_dimension(vectors: np.ndarray, dim: int) -> None:
    if vectors.shape[1] != dim:
        raise SuiteError([f"suite embeddings have {vectors.shape[1]} dimensions, the collection has {dim}"])


def _graded(suite: list[ReferenceQuery]) -> list[dict[str, float]] | None:
    """Per query id -> grade when the suite grades any query (the others: 1 per relevant id)."""
    if not any(q.relevance for q in suite):
        return None
    return [q.relevance or dict.fromkeys(q.relevant_ids, 1.0) for q in suite]


def check_metric(store: Session, collection: CollectionSettings) -> None:
    """Fail on a `metric` the column's ANN index does not answer, naming its operator class
    and the right metric; warn when the column has no ANN index at all."""
    source = Source.of(collection)
    with store.reading(source.label, "reading the vector column's indexes"):
        column = store.describe(source, collection)
    warning = check_index_metric(column, collection.metric, f"{collection.table}.{collection.vector_column}")
    if warning:
        log.warning("%s: %s", collection.name, warning)


def observe(
    sessions: Sessions,
    collection: CollectionSettings,
    engine: Engine,
    rng: np.random.Generator,
    *,
    sample_size: int,
    expected_dim: int | None,
    with_ids: bool,
    window: LogRead | None,
    suite: list[ReferenceQuery],
    exact_rows: np.ndarray,
    sentinel_ids: list[str],
    arrivals_after: str | None = None,
    read_watermark: bool = False,
    probes: list[str] | None = None,
    baseline_rows: Mapping[str, int] | None = None,
) -> Observation:
    """Read the sample, the query-log window, the suite's ANN (and exact) queries and the
    sentinels in one snapshot of each database, then end the snapshot (its locks and its
    hold on vacuum go while the detectors score; the connections stay for the pass).

    The suite and the canary's `probes` are embedded first, so a slow embedder never holds a
    snapshot open; an embedder that cannot be reached skips them with a note. With
    `arrivals_after` (a cycle of a collection with an arrival column) the rows past that
    watermark are sampled too; with `read_watermark` (a capture) the watermark itself is read.

    A collection with several sources is read through each (`pg.sources`); `baseline_rows`
    (rows per source at capture) decide whether a cycle may go on without a down source. A
    capture (`read_watermark`) needs every source.
    """
    notes: list[str] = []
    embedded, skipped = _embed_suite(collection, suite)
    canary = embed_probes(collection, probes)
    try:
        tables = reader(sessions, collection, baseline_rows, every_source=read_watermark)
        for session, one in tables.tables():
            check_metric(session, one)  # before the sample's cost: a wrong metric fails in seconds
        sample = tables.sample(sample_size, rng, expected_dim, with_ids)
        queries = None
        if window and collection.query_log:
            queries = read_window(sessions.query_log, collection, window)
        observed_suite = None
        if tables.partial is not None and embedded is not None:
            embedded, skipped = (
                None,
                "reference suite not run: a source is down, and its top K would be missing",
            )
        if embedded is not None and sample.dim:
            skipped = _other_dimension(embedded, sample.dim) if expected_dim is not None else None
            if skipped is None:
                observed_suite = _run_suite(tables, collection, suite, embedded, sample.dim, exact_rows)
                if len(sample.dims_seen) > 1:
                    notes.append(_dims_note(sample.dims_seen, sample.dim))
        sentinels = tables.fetch_by_ids(sentinel_ids) if sentinel_ids else {}
        arrivals, watermark = None, None
        if arrivals_after is not None and sample.dim:
            arrivals = tables.arrivals(arrivals_after, sample_size, sample.dim, rng, with_ids)
            if arrivals is None:
                notes.append(
                    "arrivals not read: the baseline's watermark is not one per source; capture a new one"
                )
        if read_watermark:
            watermark = tables.watermark()
    finally:
        sessions.end_snapshot()
    if canary is not None and canary.error:
        notes.append(f"canary probes not embedded: {canary.error}")
    if tables.partial is not None:
        notes.insert(0, tables.partial)
    return Observation(
        sample=sample,
        window=queries,
        suite=observed_suite,
        sentinels=sentinels,
        arrivals=arrivals,
        watermark=watermark,
        canary=canary,
        notes=[skipped, *notes] if skipped else notes,
        suite_skipped=skipped,
        source_rows=tables.rows,
        partial=tables.partial,
    )


def _embed_suite(
    collection: CollectionSettings, suite: list[ReferenceQuery]
) -> tuple[tuple[np.ndarray, str] | None, str | None]:
    """The suite's query vectors, or why it is skipped this cycle (the embedder is down)."""
    if not suite:
        return None, None
    try:
        return suite_vectors(collection, suite, None), None
    except EmbedderError as exc:
        return None, f"reference suite not run: {exc}"


def _other_dimension(embedded: tuple[np.ndarray, str], dim: int) -> str | None:
    """Why a cycle skips the suite: the live embedder now answers in another dimension than
    the baseline's rows (the canary names the push). Stored embeddings of another dimension
    are a broken suite file: an error."""
    vectors, embedded_with = embedded
    if vectors.shape[1] != dim and embedded_with != STORED:
        return (
            f"the embedder returns {vectors.shape[1]}-d vectors, the baseline's rows are {dim}-d: "
            "the reference suite was not run"
        )
    check_dimension(vectors, dim)
    return None


def _run_suite(
    tables: OneTable | ManyTables,
    collection: CollectionSettings,
    suite: list[ReferenceQuery],
    embedded: tuple[np.ndarray, str],
    dim: int,
    exact_rows: np.ndarray,
) -> SuiteObservation:
    """The suite through the live index (and exactly, for `exact_rows`), against rows of `dim`."""
    vectors, embedded_with = embedded
    k = collection.reference_suite.k if collection.reference_suite else 10
    ann = tables.run_queries(vectors, k, exact=False, dim=dim)
    exact = None
    if len(exact_rows):
        exact = tables.run_queries(vectors[exact_rows], k, exact=True, dim=dim)
    return SuiteObservation(
        query_ids=[q.query_id for q in suite],
        relevant=[q.relevant_ids for q in suite],
        k=k,
        ann=ann,
        exact=exact,
        exact_rows=exact_rows,
        embedded_with=embedded_with,
        graded=_graded(suite),
    )


def _dims_note(dims: dict[int, int], dim: int) -> str:
    seen = ", ".join(f"{count} rows of {d}-d" for d, count in sorted(dims.items(), key=lambda dc: -dc[1]))
    return (
        f"the sample holds vectors of {len(dims)} dimensions ({seen}): the reference suite ran against "
        f"the {dim}-d rows only (the baseline's), and so did every other detector"
    )


__all__ = [
    "canary_texts",
    "check_dimension",
    "check_metric",
    "embed_probes",
    "observe",
    "suite_queries",
    "suite_vectors",
]
