"""Click feedback → fine-tuning triplets (anchor = query text, positive = a clicked document,
negative = a document the user saw and passed over).

Negatives come from *skip-above*: documents ranked above a click but not clicked were
examined and judged worse, which is the most reliable implicit negative a click log gives.
Optionally *hard negatives*: unclicked results below the click that lie closest to the
positive (the positive's own neighbours that the search surfaced), which teach the model
the fine distinctions. Likely false negatives are removed: documents clicked for the same
query anywhere in the recent log, and documents so similar to the positive (cosine ≥ a
bound) that they are probably relevant too. Hard negatives stay riskier all the same: a
relevant document's nearest neighbours are where the unlabelled relevant documents are,
so they are off unless `hard_negatives` asks for them.

Priority says which triplets to train on first: a click deep in the ranking says more
(the model put the right answer low), and a query that falls in a region where
`spatial_kl` found the corpus growing is the domain the model is missing.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from driftwatch.baseline import Fitted
from driftwatch.config import CollectionSettings
from driftwatch.detect.detectors import DriftResult
from driftwatch.errors import DriftwatchError
from driftwatch.pg.querylog import LoggedQuery, clicked_for_queries, normalise_query, read_clicks
from driftwatch.pg.sampler import fetch_documents
from driftwatch.pg.session import Sessions, sessions_for
from driftwatch.store import repository

log = logging.getLogger(__name__)

CLICKED_ELSEWHERE_LOOKBACK = timedelta(days=30)  # how far back "clicked for the same query" looks
MAX_QUERIES_PER_RUN = 5000  # the rest waits for the next run; the watermark keeps the place
LOOKUP_CHUNK = 5000  # ids per document lookup


@dataclass(frozen=True)
class Triplet:
    query_id: str
    anchor: str
    positive_id: str
    negative_id: str
    source: str  # skip_above | hard_negative
    priority: float
    positive: str = ""
    negative: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return normalise_query(self.anchor), self.positive_id, self.negative_id

    def record(self) -> repository.CandidateRecord:
        return repository.CandidateRecord(
            self.query_id, self.anchor, self.positive, self.negative,
            self.positive_id, self.negative_id, self.source, self.priority,
        )  # fmt: skip


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else 0.0


def depth_weight(rank: int, shown: int) -> float:
    """0 for a click on the first result, 1 for one on the last: log-discounted like DCG."""
    return math.log2(1 + rank) / math.log2(shown) if shown > 1 else 0.0


def _negative_similarity(
    doc: str,
    positive: np.ndarray,
    relevant: set[str],
    vectors: dict[str, np.ndarray],
    bound: float,
    left_out: Counter[str],
) -> float | None:
    """Cosine of `doc` to the positive, or None when it cannot be a negative (and why is counted)."""
    if doc in relevant:
        return None
    vector = vectors.get(doc)
    if vector is None:
        left_out["negative no longer in the store"] += 1
        return None
    if vector.shape != positive.shape:  # mid-push in an untyped column: not comparable
        left_out["negative of another dimension than the positive"] += 1
        return None
    similarity = _cosine(positive, vector)
    if similarity >= bound:
        left_out["negative too similar to the positive"] += 1
        return None
    return similarity


def mine_queries(
    queries: list[LoggedQuery],
    clicked_elsewhere: dict[str, set[str]],
    vectors: dict[str, np.ndarray],
    *,
    similarity_bound: float,
    hard_negatives: int,
    in_grown_region: Callable[[np.ndarray], bool] | None = None,
) -> tuple[list[Triplet], Counter[str]]:
    """Triplets from clicked queries (pure: no I/O), deduplicated, and what was left out why."""
    chosen: dict[tuple[str, str, str], Triplet] = {}
    left_out: Counter[str] = Counter()
    for query in queries:
        if not query.query_text or not query.query_text.strip():
            left_out["query without text"] += 1
            continue
        results = list(query.result_ids)
        relevant = set(query.clicked_ids) | clicked_elsewhere.get(normalise_query(query.query_text), set())
        boost = bool(in_grown_region and query.embedding is not None and in_grown_region(query.embedding))
        for clicked in dict.fromkeys(query.clicked_ids):
            if clicked not in results:
                left_out["click not among the results"] += 1
                continue
            positive = vectors.get(clicked)
            if positive is None:
                left_out["clicked document no longer in the store"] += 1
                continue
            rank = results.index(clicked)
            priority = round(0.7 * depth_weight(rank, len(results)) + 0.3 * boost, 4)

            considered = results[:rank] + (results[rank + 1 :] if hard_negatives else [])
            negatives = {
                doc: similarity
                for doc in considered
                if (
                    similarity := _negative_similarity(
                        doc, positive, relevant, vectors, similarity_bound, left_out
                    )
                )
                is not None
            }
            above = [doc for doc in results[:rank] if doc in negatives]
            below = sorted((d for d in results[rank + 1 :] if d in negatives), key=lambda d: -negatives[d])
            found = [
                Triplet(query.query_id, query.query_text, clicked, d, "skip_above", priority) for d in above
            ]
            found += [
                Triplet(query.query_id, query.query_text, clicked, d, "hard_negative", round(priority / 2, 4))
                for d in below[:hard_negatives]
            ]
            for triplet in found:
                kept = chosen.get(triplet.key)
                if kept is None or triplet.priority > kept.priority:
                    chosen[triplet.key] = triplet
                else:
                    left_out["duplicate"] += 1
    return list(chosen.values()), left_out


@dataclass
class MiningReport:
    collection: str
    since: datetime | None
    until: datetime
    queries: int = 0
    clicks: int = 0
    new_candidates: int = 0
    left_out: dict[str, int] = field(default_factory=dict)


def grown_region(
    engine: Engine, collection: str, spatial: DriftResult | None
) -> Callable[[np.ndarray], bool] | None:
    """A test for "this query falls in a cell where spatial_kl found the corpus growing", or
    None when spatial_kl saw no significant growth."""
    if spatial is None or not spatial.drifted:
        return None
    grown = {c["cell"] for c in spatial.details.get("top_cells", []) if c.get("change", 0) > 0}
    if not grown:
        return None
    baseline = repository.active_baseline(engine, collection)
    if baseline is None:
        return None
    cells = Fitted.unpack(baseline.arrays, baseline.summary).states.get("spatial_kl")
    if cells is None:
        return None
    far = cells.cells

    def test(vector: np.ndarray) -> bool:
        if vector.shape[0] != cells.centroids.shape[1]:
            return False
        cell = int(cells.assign(vector[None, :])[0])
        return ("far" if cell == far else cell) in grown

    return test


def _read_clicks(
    reads: Sessions, settings: CollectionSettings, since: datetime, until: datetime
) -> tuple[list[LoggedQuery], dict[str, set[str]], dict[str, tuple[np.ndarray | None, str | None]]]:
    """The clicked queries (at most MAX_QUERIES_PER_RUN), what else was clicked for their texts,
    and the (vector, text) of every document they showed: one snapshot, ended after."""
    queries = read_clicks(reads.query_log, settings, since, until, MAX_QUERIES_PER_RUN)
    if len(queries) == MAX_QUERIES_PER_RUN:
        until = queries[-1].ts
    texts = sorted({q.query_text for q in queries if q.query_text})
    elsewhere = clicked_for_queries(reads.query_log, settings, texts, until, CLICKED_ELSEWHERE_LOOKBACK)
    ids = sorted({doc for q in queries for doc in q.result_ids})
    documents: dict[str, tuple[np.ndarray | None, str | None]] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        documents.update(fetch_documents(reads.store, settings, ids[start : start + LOOKUP_CHUNK]))
    reads.end_snapshot()
    return queries, elsewhere, documents


def mine_collection(
    settings: CollectionSettings,
    engine: Engine,
    now: datetime,
    spatial: DriftResult | None = None,
    sessions: Sessions | None = None,
) -> MiningReport:
    """Mine the clicks logged since the last run (up to `click_delay` ago) into stored candidates.

    `sessions`: the pass's connections (`Monitor` hands over the cycle's, so mining opens none
    of its own); the mining reads begin a snapshot of their own on them, after `now`.
    """
    config = settings.query_log
    if config is None or settings.text_column is None:
        raise DriftwatchError(
            f"collection {settings.name}: mining clicks needs [collections.query_log] and text_column"
        )
    since = repository.mined_until(engine, settings.name) or now - timedelta(seconds=config.window)
    until = now - timedelta(seconds=config.click_delay)
    report = MiningReport(settings.name, since, until)
    if until <= since:
        return report
    with sessions_for(settings, sessions) as reads:
        queries, elsewhere, documents = _read_clicks(reads, settings, since, until)
    if len(queries) == MAX_QUERIES_PER_RUN:
        report.until = until = queries[-1].ts  # the rest on the next run
    report.queries, report.clicks = len(queries), sum(len(q.clicked_ids) for q in queries)
    vectors = {doc: vector for doc, (vector, _) in documents.items() if vector is not None}
    triplets, left_out = mine_queries(
        queries,
        elsewhere,
        vectors,
        similarity_bound=config.negative_similarity_bound,
        hard_negatives=config.hard_negatives,
        in_grown_region=grown_region(engine, settings.name, spatial),
    )
    complete = []
    for triplet in triplets:
        positive, negative = documents[triplet.positive_id][1], documents[triplet.negative_id][1]
        if not positive or not negative:
            left_out["document without text"] += 1
            continue
        complete.append(replace(triplet, positive=positive, negative=negative))
    report.new_candidates = repository.save_candidates(
        engine, settings.name, [t.record() for t in complete], until
    )
    report.left_out = dict(left_out)
    log.info(
        "%s: %d new fine-tuning candidates from %d clicks on %d queries (%s)",
        settings.name,
        report.new_candidates,
        report.clicks,
        report.queries,
        ", ".join(f"{why}: {n}" for why, n in sorted(left_out.items())) or "nothing left out",
    )
    return report


__all__ = ["MiningReport", "Triplet", "depth_weight", "grown_region", "mine_collection", "mine_queries"]
