"""Query pairs for the Drift-Adapter: what users asked, under both models.

Document pairs teach a map where documents go. A query is often another kind of text (a few
words where the documents are paragraphs) and sits where no document does, and a map learnt
from documents alone is least accurate exactly there: on a real push, name-like queries got
back about half of a re-embed's recall@10 from 5,000 document pairs (BENCHMARKS.md, "Drift-
Adapter on a real model push"). The query log already holds, for each query asked before the
push, its text and the vector the old model gave it; the live embedder, serving the new model
now, gives the other half of the pair.

The reference suite's texts are left out: the suite measures the adapter, and a query the map
was fitted on would flatter it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from driftwatch.adapter import Progress, row_cosines
from driftwatch.config import CollectionSettings
from driftwatch.embedders import EmbedderError, make_embedder
from driftwatch.errors import PairsError, SourceError
from driftwatch.pg.querylog import normalise_query, read_version_queries
from driftwatch.pg.session import Session

DEFAULT_QUERY_PAIRS = 2000  # logged queries embedded anew when the log and the embedder are configured
SAME_MODEL_COSINE = 0.9999  # the canary's round-off bound: above it the embedder is still the old model


@dataclass(frozen=True, eq=False)
class QueryPairs:
    """Logged query texts, the new model's vectors of them (row i of `new`) and the vectors the
    old model gave them when they were asked (row i of `old`)."""

    texts: list[str]
    new: np.ndarray  # float32 (n, d_new)
    old: np.ndarray  # float32 (n, d_old)
    logged: int  # distinct texts read from the log under from_version
    left_out: dict[str, int] = field(default_factory=dict)  # why -> texts not paired

    def __len__(self) -> int:
        return len(self.texts)


def wanted(collection: CollectionSettings, requested: int | None) -> int:
    """How many query pairs to read: `requested`, or by default DEFAULT_QUERY_PAIRS when the
    collection has both a query log and an embedder (else none). Asking for some without
    either is an error that names what is missing."""
    missing = [
        f"[collections.{section}]"
        for section, value in (("query_log", collection.query_log), ("embedder", collection.embedder))
        if value is None
    ]
    if requested is None:
        return 0 if missing else DEFAULT_QUERY_PAIRS
    if requested and missing:
        raise ValueError(
            f"--query-pairs {requested}: collection {collection.name} has no {' and no '.join(missing)}; "
            "query pairs are logged query texts (query_log) embedded by the new model (embedder)"
        )
    return requested


def read_query_pairs(
    session: Session,
    collection: CollectionSettings,
    from_version: str,
    to_version: str,
    limit: int,
    *,
    dims: tuple[int, int],
    exclude: set[str],
    seed: str,
    say: Progress,
) -> QueryPairs:
    """Up to `limit` logged queries of `from_version` (none of the `exclude` texts), embedded
    through the collection's embedder. `dims` is (new, old) of the document pairs: query pairs
    must match them. Raises PairsError when the embedder still serves the old model."""
    excluded = {normalise_query(t) for t in exclude}
    rows = read_version_queries(session, collection, from_version, limit + len(excluded), seed)
    left_out: dict[str, int] = {}

    def leave(why: str, count: int) -> None:
        if count:
            left_out[why] = left_out.get(why, 0) + count

    kept = [(t, v) for t, v in rows if normalise_query(t) not in excluded]
    leave("a reference suite text (the suite measures the adapter)", len(rows) - len(kept))
    kept = kept[:limit]
    dim_new, dim_old = dims
    usable = [
        (t, v) for t, v in kept if v is not None and v.size == dim_old and np.isfinite(v).all() and v.any()
    ]
    leave(f"a logged vector that is not a finite, non-zero {dim_old}-d vector", len(kept) - len(usable))
    if not usable:
        return QueryPairs(
            [], np.empty((0, dim_new), np.float32), np.empty((0, dim_old), np.float32), len(rows), left_out
        )
    texts = [t for t, _ in usable]
    say(f"{collection.name}: embedding {len(texts)} logged {from_version} query texts with the live model")
    new = make_embedder(collection.embedder).embed(texts)  # type: ignore[arg-type]  # wanted() checked it
    if new.shape[1] != dim_new:
        raise PairsError(
            f"the embedder returns {new.shape[1]}-d vectors, but {to_version!r} rows have {dim_new}: "
            f"is [collections.embedder] serving {to_version!r}? (--query-pairs 0 fits on document pairs only)"
        )
    old = np.stack([v for _, v in usable]).astype(np.float32)
    good = np.isfinite(new).all(axis=1) & new.any(axis=1)
    leave("the embedder gave a zero or non-finite vector", int((~good).sum()))
    new, old, texts = new[good], old[good], [t for t, g in zip(texts, good, strict=True) if g]
    if dim_new == dim_old and len(texts):
        bound = collection.canary.min_cosine if collection.canary else SAME_MODEL_COSINE
        same = float(np.median(row_cosines(new, old)))
        if same >= bound:
            raise PairsError(
                f"the embedder still gives the {from_version!r} vectors of logged queries (median "
                f"cosine {same:.5f}): point [collections.embedder] at the {to_version!r} model, "
                "or pass --query-pairs 0"
            )
    return QueryPairs(texts, new.astype(np.float32), old, len(rows), left_out)


def optional_query_pairs(
    session: Session,
    collection: CollectionSettings,
    from_version: str,
    to_version: str,
    requested: int | None,
    *,
    dims: tuple[int, int],
    exclude: set[str],
    seed: str,
    notes: list[str],
    say: Progress,
) -> QueryPairs | None:
    """Query pairs as `adapter fit` takes them: by default (requested None) a failure to get
    them is a note and the fit goes on with document pairs; asked for explicitly, it is an error."""
    limit = wanted(collection, requested)
    if not limit:
        return None
    try:
        pairs = read_query_pairs(
            session,
            collection,
            from_version,
            to_version,
            limit,
            dims=dims,
            exclude=exclude,
            seed=seed,
            say=say,
        )
    except (EmbedderError, PairsError, SourceError) as exc:  # embedder down or stale; log unreadable
        if requested is not None:
            raise
        notes.append(f"no query pairs: {exc}")
        return None
    for why, count in pairs.left_out.items():
        notes.append(f"{count} logged queries not paired: {why}")
    if not len(pairs):
        notes.append(
            f"no query pairs: the query log holds no {from_version!r} query with text and vector"
            + (" outside the reference suite" if exclude else "")
        )
        return None
    return pairs


__all__ = ["DEFAULT_QUERY_PAIRS", "QueryPairs", "optional_query_pairs", "read_query_pairs", "wanted"]
