"""Ranking quality of the reference suite: MRR@K and nDCG@K, each judged as a paired test.

Recall@K counts whether relevant documents are in the top K; these two also see *where*:
a relevant document slipping from rank 1 to rank 8 costs MRR and nDCG while recall stays.
The suite is the same every cycle, so each query is paired with itself at baseline time and
the test asks whether the per-query losses outweigh the gains: a sign-flip randomisation
test on the per-query differences (exact in its limit; under no change a loss and a gain
of the same size are equally likely). Only queries present in both runs are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftwatch.detect.detectors import DriftResult, Stateful

Ranked = Sequence[Sequence[str]]  # per query, the ids in rank order
MIN_PAIRED = 10  # fewer paired queries say too little to test
FLIPS = 20_000  # randomisation replicates: p-values resolve to 5e-5


def reciprocal_ranks(
    retrieved: Sequence[Sequence[str]], relevant: Sequence[Sequence[str]], k: int
) -> np.ndarray:
    """Per query: 1 / rank of the first relevant id in the top K, or 0."""
    out = np.zeros(len(retrieved))
    for i, (found, wanted) in enumerate(zip(retrieved, relevant, strict=True)):
        wanted_set = set(wanted)
        rank = next((r for r, doc in enumerate(found[:k], start=1) if doc in wanted_set), None)
        out[i] = 0.0 if rank is None else 1.0 / rank
    return out


def ndcg(retrieved: Ranked, gains: Sequence[Mapping[str, float]], k: int) -> np.ndarray:
    """Per query: DCG of the top K over the ideal DCG (graded gains; 1 for binary relevance)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(len(retrieved))
    for i, (found, gain) in enumerate(zip(retrieved, gains, strict=True)):
        ideal = np.sort(np.array([g for g in gain.values() if g > 0], dtype=np.float64))[::-1][:k]
        if ideal.size == 0:
            continue
        got = np.array([gain.get(doc, 0.0) for doc in found[:k]], dtype=np.float64)
        out[i] = float(got @ discounts[: got.size]) / float(ideal @ discounts[: ideal.size])
    return out


def random_sign_means(differences: np.ndarray, replicates: int = FLIPS) -> np.ndarray:
    """Means of the differences with random signs: what a paired mean looks like under no change.
    Seeded by the data, so a cycle's verdict is reproducible."""
    seed = np.frombuffer(np.round(differences, 12).tobytes(), dtype=np.uint8).sum() + differences.size
    rng = np.random.default_rng(int(seed))
    signs = rng.integers(0, 2, size=(replicates, differences.size), dtype=np.int8) * 2 - 1
    return (signs @ differences) / differences.size


@dataclass(frozen=True)
class PairedRanking(Stateful):
    """Per-query values of a ranking metric at baseline time; the value of a cycle is the mean
    drop over the paired queries."""

    query_ids: list[str]
    values: np.ndarray
    k: int

    @classmethod
    def fit(cls, query_ids: Sequence[str], values: np.ndarray, k: int) -> PairedRanking:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(query_ids),) or not np.all(np.isfinite(values)):
            raise ValueError("values must be one finite number per query id")
        return cls(list(query_ids), values, int(k))

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else 0.0

    def score(
        self,
        name: str,
        query_ids: Sequence[str],
        values: np.ndarray,
        alpha: float,
        fixed_threshold: float | None = None,
    ) -> DriftResult:
        now = dict(zip(query_ids, np.asarray(values, dtype=np.float64), strict=True))
        paired = [(before, now[q]) for q, before in zip(self.query_ids, self.values, strict=True) if q in now]
        if len(paired) < MIN_PAIRED:
            return DriftResult.insufficient(name, f"{len(paired)} suite queries pair with the baseline's")
        before, after = np.array(paired).T
        drops = before - after
        value = float(drops.mean())
        changed = drops[drops != 0]
        details: dict[str, Any] = {
            "k": self.k,
            "baseline": float(before.mean()),
            "current": float(after.mean()),
            "paired_queries": len(paired),
            "worse": int(np.count_nonzero(drops > 0)),
            "better": int(np.count_nonzero(drops < 0)),
        }
        if changed.size == 0:
            threshold, p_value = 0.0, 1.0
        else:
            null = random_sign_means(changed) * changed.size / drops.size
            threshold = float(np.quantile(null, 1 - alpha))
            p_value = float((np.count_nonzero(null >= value - 1e-12) + 1) / (null.size + 1))
        if fixed_threshold is not None:
            threshold = float(fixed_threshold)
        return DriftResult(name, value, threshold, p_value, details)


__all__ = ["MIN_PAIRED", "PairedRanking", "ndcg", "random_sign_means", "reciprocal_ranks"]
