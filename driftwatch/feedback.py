"""Feedback → fine-tuning triplets (anchor = query text, positive = a document the user wanted,
negative = one the user saw and did not want). Four sources, each a `source` in the export:

* `skip_above`: documents ranked above a click but not clicked were examined and judged worse,
  the most reliable implicit negative a click log gives.
* `hard_negative` (opt-in): unclicked results below the click that lie closest to the
  positive, which teach fine distinctions but sit where unlabelled relevant documents are.
* `thumbs_down`: the answer shown (its top FAILED_DEPTH results) to a query that got a thumbs
  down becomes negatives for that query, against a positive the log knows for it: the click
  on its follow-up, else the document most clicked (or thumbed up) for the same query text.
  A thumbs-up answer's clicked results, or its top result when nothing was clicked, are
  positives for that text.
* `follow_up`: a query reformulated (no click or a thumbs down, then another query of the
  session within follow_up_window) whose follow-up got a click: the clicked document is a
  positive for the *original* query too — the user told you what it meant — against the
  original's shown answer. Its priority is high: the model missed the answer entirely.

Every source drops likely false negatives the same way: documents clicked (or thumbed up)
for the same query anywhere in the recent log, and documents so similar to the positive
(cosine >= a bound) that they are probably relevant too.

Priority says which triplets to train on first: a click deep in the ranking says more (the
model put the right answer low), a follow-up says most, and a query that falls in a region
where `spatial_kl` found the corpus growing is the domain the model is missing.

While a model push is in progress (a query version the baseline never saw, or the push alert
firing) queries of the new version are not mined: their results come from a broken window.
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
from driftwatch.errors import ConfigError
from driftwatch.pg.querylog import LoggedQuery, clicked_for_queries, normalise_query, read_clicks
from driftwatch.pg.session import Sessions, sessions_for
from driftwatch.pg.sources import fetch_documents_everywhere
from driftwatch.store import repository
from driftwatch.store.repository import Triplet

log = logging.getLogger(__name__)

CLICKED_ELSEWHERE_LOOKBACK = timedelta(days=30)  # how far back "clicked for the same query" looks
MAX_QUERIES_PER_RUN = 5000  # the rest waits for the next run; the watermark keeps the place
LOOKUP_CHUNK = 5000  # ids per document lookup
FAILED_DEPTH = 5  # a failed answer's top results are what the user judged: its negatives
PUSHED_ALERT = (
    "EmbeddingModelVersionPushed"  # alerting.PUSHED (not imported: alerting imports feedback's peers)
)
SOURCES = ("skip_above", "hard_negative", "thumbs_down", "follow_up")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else 0.0


def depth_weight(rank: int, shown: int) -> float:
    """0 for a click on the first result, 1 for one on the last: log-discounted like DCG."""
    return math.log2(1 + rank) / math.log2(shown) if shown > 1 else 0.0


@dataclass
class _Negatives:
    """The false-negative filters every source shares, and the count of what they left out."""

    vectors: dict[str, np.ndarray]
    bound: float
    left_out: Counter[str] = field(default_factory=Counter)

    def similarity(self, doc: str, positive: np.ndarray, relevant: set[str]) -> float | None:
        """Cosine of `doc` to the positive, or None when it cannot be a negative (and why is counted)."""
        if doc in relevant:
            return None
        vector = self.vectors.get(doc)
        if vector is None:
            self.left_out["negative no longer in the store"] += 1
            return None
        if vector.shape != positive.shape:  # mid-push in an untyped column: not comparable
            self.left_out["negative of another dimension than the positive"] += 1
            return None
        similarity = _cosine(positive, vector)
        if similarity >= self.bound:
            self.left_out["negative too similar to the positive"] += 1
            return None
        return similarity

    def keep(self, docs: list[str], positive: np.ndarray, relevant: set[str]) -> dict[str, float]:
        found = {doc: self.similarity(doc, positive, relevant) for doc in docs}
        return {doc: s for doc, s in found.items() if s is not None}


def _chosen_for_text(queries: list[LoggedQuery]) -> dict[str, Counter[str]]:
    """Per normalised query text, the documents users chose for it: clicks on answers not
    thumbed down, thumbs-up answers' top result when nothing was clicked, follow-up clicks."""
    chosen: dict[str, Counter[str]] = {}
    for query in queries:
        if not query.query_text:
            continue
        counts = chosen.setdefault(normalise_query(query.query_text), Counter())
        if query.feedback >= 0:
            counts.update(query.clicked_ids)
        if query.feedback > 0 and not query.clicked_ids and query.result_ids:
            counts[query.result_ids[0]] += 1
        counts.update(query.follow_up_clicked)
    return chosen


def mine_queries(
    queries: list[LoggedQuery],
    clicked_elsewhere: dict[str, set[str]],
    vectors: dict[str, np.ndarray],
    *,
    similarity_bound: float,
    hard_negatives: int,
    in_grown_region: Callable[[np.ndarray], bool] | None = None,
) -> tuple[list[Triplet], Counter[str]]:
    """Triplets from the queries' clicks, thumbs and follow-ups (pure: no I/O), deduplicated
    (the highest priority of one query text, positive and negative wins), and what was left out why."""
    filters = _Negatives(vectors, similarity_bound)
    chosen = _chosen_for_text(queries)
    best: dict[tuple[str, str, str], Triplet] = {}
    for query in queries:
        if not query.query_text or not query.query_text.strip():
            filters.left_out["query without text"] += 1
            continue
        text = normalise_query(query.query_text)
        relevant = set(chosen.get(text, ())) | clicked_elsewhere.get(text, set())
        boost = bool(in_grown_region and query.embedding is not None and in_grown_region(query.embedding))
        found = _from_clicks(query, relevant, filters, hard_negatives, boost)
        wanted = chosen.get(text, Counter()) + Counter(clicked_elsewhere.get(text, ()))
        found += _from_failure(query, relevant, wanted, filters, boost)
        for triplet in found:
            kept = best.get(triplet.key)
            if kept is None or triplet.priority > kept.priority:
                best[triplet.key] = triplet
            else:
                filters.left_out["duplicate"] += 1
    return list(best.values()), filters.left_out


def _from_clicks(
    query: LoggedQuery, relevant: set[str], filters: _Negatives, hard_negatives: int, boost: bool
) -> list[Triplet]:
    """skip_above (and opt-in hard_negative) triplets of a query's clicks; a thumbs-up answer
    without clicks has its top result as the positive. A thumbs-down answer's clicks did not
    satisfy: no positives from them."""
    if query.feedback < 0:
        return []
    results = list(query.result_ids)
    positives = list(dict.fromkeys(query.clicked_ids))
    if not positives and query.feedback > 0 and results:
        positives = results[:1]
    found = []
    for clicked in positives:
        if clicked not in results:
            filters.left_out["click not among the results"] += 1
            continue
        positive = filters.vectors.get(clicked)
        if positive is None:
            filters.left_out["clicked document no longer in the store"] += 1
            continue
        rank = results.index(clicked)
        priority = round(0.7 * depth_weight(rank, len(results)) + 0.3 * boost, 4)
        considered = results[:rank] + (results[rank + 1 :] if hard_negatives else [])
        negatives = filters.keep(considered, positive, relevant)
        above = [doc for doc in results[:rank] if doc in negatives]
        below = sorted((d for d in results[rank + 1 :] if d in negatives), key=lambda d: -negatives[d])
        found += [_triplet(query, clicked, d, "skip_above", priority) for d in above]
        found += [
            _triplet(query, clicked, d, "hard_negative", round(priority / 2, 4))
            for d in below[:hard_negatives]
        ]
    return found


def _from_failure(
    query: LoggedQuery, relevant: set[str], chosen: Counter[str], filters: _Negatives, boost: bool
) -> list[Triplet]:
    """follow_up and thumbs_down triplets: the failed answer's top results against what the
    user wanted (the follow-up's click), or for a thumbs down what others chose for the text."""
    failed = query.feedback < 0 or (not query.clicked_ids and query.follow_up_clicked)
    if not failed:
        return []
    shown = list(query.result_ids[:FAILED_DEPTH])
    if query.follow_up_clicked:
        pairs = [
            (doc, "follow_up", round(0.7 + 0.3 * boost, 4)) for doc in dict.fromkeys(query.follow_up_clicked)
        ]
    else:
        known = [doc for doc, _ in chosen.most_common()]
        if not known:
            filters.left_out["thumbs down without a known positive"] += 1
            return []
        pairs = [(known[0], "thumbs_down", round(0.5 + 0.3 * boost, 4))]
    found = []
    for wanted, source, priority in pairs:
        positive = filters.vectors.get(wanted)
        if positive is None:
            filters.left_out["wanted document no longer in the store"] += 1
            continue
        negatives = filters.keep(
            [d for d in shown if d != wanted], positive, relevant | set(query.clicked_ids)
        )
        found += [_triplet(query, wanted, doc, source, priority) for doc in shown if doc in negatives]
    return found


def _triplet(query: LoggedQuery, positive: str, negative: str, source: str, priority: float) -> Triplet:
    assert query.query_text is not None
    return Triplet(
        query.query_id,
        query.query_text,
        positive,
        negative,
        source,
        priority,
        model_version=query.model_version,
    )


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
    reads: Sessions, collection: CollectionSettings, since: datetime, until: datetime
) -> tuple[list[LoggedQuery], dict[str, set[str]], dict[str, tuple[np.ndarray | None, str | None]]]:
    """The clicked queries (at most MAX_QUERIES_PER_RUN), what else was clicked for their texts,
    and the (vector, text) of every document they showed: one snapshot, ended after."""
    queries = read_clicks(reads.query_log, collection, since, until, MAX_QUERIES_PER_RUN)
    if len(queries) == MAX_QUERIES_PER_RUN:
        until = queries[-1].ts
    texts = sorted({q.query_text for q in queries if q.query_text})
    elsewhere = clicked_for_queries(reads.query_log, collection, texts, until, CLICKED_ELSEWHERE_LOOKBACK)
    ids = sorted({doc for q in queries for doc in (*q.result_ids, *q.follow_up_clicked)} | _union(elsewhere))
    documents: dict[str, tuple[np.ndarray | None, str | None]] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        documents.update(fetch_documents_everywhere(reads, collection, ids[start : start + LOOKUP_CHUNK]))
    reads.end_snapshot()
    return queries, elsewhere, documents


def _union(sets: dict[str, set[str]]) -> set[str]:
    return set().union(*sets.values()) if sets else set()


def held_versions(engine: Engine, collection: str) -> Callable[[str | None], bool]:
    """Which query model versions not to mine while a model push is in progress: a version the
    active baseline never saw, and, while the push alert fires, any but the baseline's main one.
    An unversioned baseline holds nothing back but the firing alert's case; a NULL query
    version is unknown and mined."""
    baseline = repository.active_baseline(engine, collection)
    versions = list(baseline.summary.get("versions", [])) if baseline else []
    known = {v for v in versions if v is not None}
    main = versions[0] if versions else None
    firing = repository.alert_firing(engine, collection, PUSHED_ALERT)

    def held(version: str | None) -> bool:
        if version is None:
            return False
        return (bool(known) and version not in known) or (firing and version != main)

    return held


def mine_collection(
    collection: CollectionSettings,
    engine: Engine,
    now: datetime,
    spatial: DriftResult | None = None,
    sessions: Sessions | None = None,
) -> MiningReport:
    """Mine the clicks logged since the last run (up to `click_delay` ago) into stored candidates.

    `sessions`: the pass's connections (`Monitor` hands over the cycle's, so mining opens none
    of its own); the mining reads begin a snapshot of their own on them, after `now`.
    """
    config = collection.query_log
    if config is None or collection.text_column is None:
        raise ConfigError(
            [f"collections.{collection.name}: mining clicks needs [collections.query_log] and text_column"]
        )
    since = repository.mined_until(engine, collection.name) or now - timedelta(seconds=config.window)
    until = now - timedelta(seconds=config.settle)  # clicks, thumbs and follow-ups have arrived
    report = MiningReport(collection.name, since, until)
    if until <= since:
        return report
    with sessions_for(collection, sessions) as reads:
        queries, elsewhere, documents = _read_clicks(reads, collection, since, until)
    if len(queries) == MAX_QUERIES_PER_RUN:
        report.until = until = queries[-1].ts  # the rest on the next run
    report.queries, report.clicks = len(queries), sum(len(q.clicked_ids) for q in queries)
    held = held_versions(engine, collection.name)
    pushed = Counter(q.model_version for q in queries if held(q.model_version))
    vectors = {doc: vector for doc, (vector, _) in documents.items() if vector is not None}
    triplets, left_out = mine_queries(
        [q for q in queries if not held(q.model_version)],
        elsewhere,
        vectors,
        similarity_bound=config.negative_similarity_bound,
        hard_negatives=config.hard_negatives,
        in_grown_region=grown_region(engine, collection.name, spatial),
    )
    for version, count in pushed.items():
        left_out[f"model push in progress (queries on {version})"] += count
    complete = []
    for triplet in triplets:
        positive, negative = documents[triplet.positive_id][1], documents[triplet.negative_id][1]
        if not positive or not negative:
            left_out["document without text"] += 1
            continue
        complete.append(replace(triplet, positive=positive, negative=negative))
    report.new_candidates = repository.save_candidates(engine, collection.name, complete, until)
    report.left_out = dict(left_out)
    log.info(
        "%s: %d new fine-tuning candidates from %d clicks on %d queries (%s)",
        collection.name,
        report.new_candidates,
        report.clicks,
        report.queries,
        ", ".join(f"{why}: {n}" for why, n in sorted(left_out.items())) or "nothing left out",
    )
    return report


__all__ = [
    "FAILED_DEPTH",
    "SOURCES",
    "MiningReport",
    "Triplet",
    "depth_weight",
    "grown_region",
    "held_versions",
    "mine_collection",
    "mine_queries",
]
