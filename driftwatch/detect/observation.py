"""What one cycle (or a baseline capture) saw of the monitored store, as plain arrays.

The `pg` package fills these; detectors read them and never see a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass
class VectorSample:
    """A sample of a collection: vectors of the dominant dimension plus what was set aside."""

    vectors: np.ndarray  # float32, rows x dim, in heap order
    ids: list[str] | None  # only when asked for (baseline capture, sentinels)
    versions: dict[str | None, int]  # model_version -> rows in the sample
    method: str  # full | bernoulli | tid
    dim: int
    rows_sampled: int  # rows picked, before setting aside nulls and wrong dimensions
    null_vectors: int
    wrong_dim: int
    dims_seen: dict[int, int]
    table_pages: int
    table_rows_estimate: int
    pages_probed: int
    extra: dict[str, float] = field(default_factory=dict)
    # A partitioned parent's leaves (schema.table) -> {"rows_estimate" (or "arrivals"), "sampled"}.
    partitions: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class QueryWindow:
    since: datetime
    until: datetime
    top1: np.ndarray  # float64, one per query with at least one result
    mean_topk: np.ndarray
    versions: dict[str | None, int]
    queries: int  # rows in the window, including those with no results
    clicked_queries: int  # queries with at least one click
    clicks: int  # clicked ids in all
    truncated: bool  # more rows than max_rows: the newest max_rows were read
    # Per query, in log order (ts); None when the log lacks the column behind it.
    ts: np.ndarray | None = None  # float64 epoch seconds
    clicked: np.ndarray | None = None  # bool: at least one click
    thumbs: np.ndarray | None = None  # int8: +1 up, -1 down, 0 none (the `feedback` column)
    reformulated: np.ndarray | None = None  # bool: a follow-up came after no click or a thumbs down
    keys: np.ndarray | None = None  # int64 hash of each query_id: what a later read must not count again


@dataclass(frozen=True)
class Counted:
    """The query-log rows earlier cycles counted that a later, overlapping read may see again
    (their ts is within late_arrival of the last read's end), by the hash of their query_id."""

    until: datetime  # where the last read ended
    keys: np.ndarray  # int64
    ts: np.ndarray  # float64 epoch seconds, to forget rows once no read can reach them


@dataclass(frozen=True)
class ReferenceQuery:
    """One query of the reference suite: its relevant ids, and its text or stored embedding."""

    query_id: str
    relevant_ids: tuple[str, ...]
    text: str | None = None
    embedding: np.ndarray | None = None  # float32
    relevance: dict[str, float] | None = None  # id -> grade (graded relevance), when the suite grades


@dataclass(frozen=True)
class SuiteRun:
    """Top-K ids and similarity scores per query (higher score = closer)."""

    ids: list[list[str]]
    scores: np.ndarray  # (queries, K), NaN where fewer than K rows came back


def recall_hits(
    retrieved: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: relevant ids found in the top K, and how many could have been (min(K, |relevant|))."""
    pairs = zip(retrieved, relevant, strict=True)
    hits = [len(set(found[:k]) & set(wanted)) for found, wanted in pairs]
    trials = [min(k, len(wanted)) for wanted in relevant]
    return np.array(hits, dtype=np.int64), np.array(trials, dtype=np.int64)


@dataclass
class SuiteObservation:
    query_ids: list[str]
    relevant: list[tuple[str, ...]]
    k: int
    ann: SuiteRun
    exact: SuiteRun | None  # exact top-K of the `exact_rows` subset, when index health ran
    exact_rows: np.ndarray
    embedded_with: str  # "stored embeddings" or the embedder kind
    graded: list[dict[str, float]] | None = None  # per query, id -> relevance grade, when the suite grades

    def gains(self) -> list[dict[str, float]]:
        """Per query, id -> gain for nDCG: the suite's grades, or 1 for every relevant id."""
        if self.graded is not None:
            return self.graded
        return [dict.fromkeys(relevant, 1.0) for relevant in self.relevant]

    def recall_hits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per query: relevant ids in the ANN top K, and how many could be found."""
        return recall_hits(self.ann.ids, self.relevant, self.k)

    def checked_ids(self) -> list[str]:
        """The query ids index health checked (exact top-K) this time."""
        return [self.query_ids[i] for i in self.exact_rows]

    def overlap_hits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per checked query: exact top-K ids the ANN index also returned, out of the exact list's length."""
        if self.exact is None:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return recall_hits([self.ann.ids[i] for i in self.exact_rows], self.exact.ids, self.k)


@dataclass
class Arrivals:
    """The rows that arrived after the baseline's watermark (a sample of them when many)."""

    sample: VectorSample
    total: int  # rows past the watermark in this snapshot
    watermark: str  # the arrival column's value at baseline capture, as text


@dataclass
class CanaryProbes:
    """The canary's probe texts and their vectors from the live embedder (None, with the
    `error`, when the embedder could not be reached)."""

    texts: list[str]
    vectors: np.ndarray | None
    error: str | None = None


@dataclass
class Observation:
    sample: VectorSample
    window: QueryWindow | None
    suite: SuiteObservation | None
    sentinels: dict[str, np.ndarray]
    arrivals: Arrivals | None = None
    watermark: str | None = None  # at capture: the arrival column's largest value in the snapshot
    canary: CanaryProbes | None = None
    notes: list[str] = field(default_factory=list)  # what this cycle could not do as usual, and why
    suite_skipped: str | None = None  # why the reference suite did not run (embedder down, new dimension)
    source_rows: dict[str, int] | None = None  # live rows per source, for a collection with several
    partial: str | None = None  # which source was down, when a cycle read only the others


__all__ = [
    "Arrivals",
    "CanaryProbes",
    "Counted",
    "Observation",
    "QueryWindow",
    "ReferenceQuery",
    "SuiteObservation",
    "SuiteRun",
    "VectorSample",
    "recall_hits",
]
