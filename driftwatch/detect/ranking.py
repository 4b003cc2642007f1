"""Ranking detectors on the reference suite: recall@K through the live index and the
index's overlap with exact search, each a paired test against the baseline's own run.

The suite is the same queries every cycle, so a fresh-sample null is the wrong question:
what changed is which queries got worse. Each query present in the baseline and now (by
query id, with the same number of relevant ids) is a pair; the statistic is the net number
of hits lost, and its null is exact: with no change in the system, a query that got worse
was as likely to get better, so the signs of the per-query differences are fair coin flips
(a sign-flip test; with one relevant id per query it is exactly McNemar's test on the
discordant queries). Ten queries lost and none gained out of 400 gives p = 2^-10 < 0.001;
balanced churn (HNSW's randomness, ties reordered) does not fire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.results import DriftResult, Stateful, frozen

__all__ = ["IndexHealth", "RecallAtK", "sign_flip_null"]

_EXACT_LIMIT = 50_000  # total |difference| above which the normal approximation is used


def _hits_trials(hits: Any, trials: Any) -> tuple[np.ndarray, np.ndarray]:
    hits_, trials_ = np.asarray(hits, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    if hits_.ndim != 1 or hits_.shape != trials_.shape:
        raise ValueError("hits and trials must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(hits_)) and np.all(np.isfinite(trials_))):
        raise ValueError("hits and trials must be finite")
    if np.any(hits_ < 0) or np.any(hits_ > trials_):
        raise ValueError("each query needs 0 <= hits <= trials")
    if np.any(hits_ != np.round(hits_)) or np.any(trials_ != np.round(trials_)):
        raise ValueError("hits and trials must be whole counts")
    return hits_, trials_


def _ids(query_ids: Sequence[str] | None, size: int) -> np.ndarray:
    """Query ids as strings; without ids, queries pair by position."""
    ids = [str(i) for i in range(size)] if query_ids is None else [str(q) for q in query_ids]
    if len(ids) != size:
        raise ValueError(f"{len(ids)} query ids for {size} queries")
    if len(set(ids)) != len(ids):
        repeated = next(q for q, c in Counter(ids).items() if c > 1)
        raise ValueError(f"query id {repeated!r} appears more than once")
    return np.array(ids, dtype=str)


def sign_flip_null(magnitudes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact distribution of sum(e_i * a_i) for fair random signs e_i and whole a_i > 0:
    (values, probabilities). Built per distinct magnitude (a binomial on a grid of 2a) and
    convolved, so it costs O(#magnitudes x total^2) at worst, milliseconds for a suite."""
    counts = Counter(int(a) for a in np.asarray(magnitudes) if a > 0)
    total = sum(a * c for a, c in counts.items())
    pmf = np.ones(1)
    for a, c in sorted(counts.items()):
        step = np.zeros(2 * a * c + 1)
        step[:: 2 * a] = sps.binom.pmf(np.arange(c + 1), c, 0.5)
        pmf = np.convolve(pmf, step)
    return np.arange(-total, total + 1), pmf


def _paired_test(loss: np.ndarray, alpha: float) -> tuple[float, float]:
    """(p-value of the net loss sum(loss), critical net loss: the smallest that rejects)."""
    observed, magnitudes = float(loss.sum()), np.abs(loss[loss != 0])
    if magnitudes.sum() > _EXACT_LIMIT:  # large suites x large K: the CLT is exact enough
        sd = float(np.sqrt(np.sum(magnitudes**2)))
        return float(sps.norm.sf((observed - 0.5) / sd)), float(np.ceil(sd * sps.norm.isf(alpha) + 0.5))
    values, pmf = sign_flip_null(magnitudes)
    tail = np.cumsum(pmf[::-1])[::-1]  # P(S >= value)
    p_value = float(min(1.0, tail[values >= observed][0])) if observed <= values[-1] else 0.0
    rejecting = values[tail <= alpha]
    critical = float(rejecting[0]) if len(rejecting) else float(values[-1] + 1)
    return p_value, critical


@dataclass(frozen=True, eq=False)
class _PairedRate(Stateful):
    """Per-query hits of the baseline's run, by query id; the value is the drop of the rate
    on the queries paired with the baseline, higher = worse."""

    name: ClassVar[str]
    label: ClassVar[str]
    query_ids: np.ndarray  # str
    hits: np.ndarray  # baseline hits per query
    trials: np.ndarray  # baseline trials per query

    @staticmethod
    def _baseline(hits: Any, trials: Any, query_ids: Sequence[str] | None) -> tuple[np.ndarray, ...]:
        hits_, trials_ = _hits_trials(hits, trials)
        if trials_.sum() == 0:
            raise ValueError("the baseline has no trials: every query has an empty relevant set")
        return frozen(_ids(query_ids, len(hits_))), frozen(hits_), frozen(trials_)

    @property
    def rate(self) -> float:
        return float(self.hits.sum() / self.trials.sum())

    def _drop(
        self, hits: Any, trials: Any, alpha: float, fixed: float | None, query_ids: Sequence[str] | None
    ) -> DriftResult:
        hits_, trials_ = _hits_trials(hits, trials)
        ids = _ids(query_ids, len(hits_))
        _, mine, theirs = np.intersect1d(self.query_ids, ids, assume_unique=True, return_indices=True)
        same = (self.trials[mine] == trials_[theirs]) & (self.trials[mine] > 0)
        mine, theirs = mine[same], theirs[same]
        if len(mine) == 0:
            why = "no suite query with relevant ids is paired with the baseline"
            return DriftResult.insufficient(self.name, why)
        base, now, total = self.hits[mine], hits_[theirs], float(self.trials[mine].sum())
        loss = base - now
        p_value, critical = _paired_test(loss, alpha)
        threshold = (critical - 0.5) / total if fixed is None else float(fixed)
        current_total = trials_.sum()
        details = {
            f"baseline_{self.label}": float(base.sum() / total),
            self.label: float(now.sum() / total),
            f"{self.label}_all_queries": float(hits_.sum() / current_total) if current_total else None,
            "queries": int(np.count_nonzero(trials_)),
            "queries_paired": len(mine),
            "baseline_queries": int(np.count_nonzero(self.trials)),
            "worse": int(np.count_nonzero(loss > 0)),
            "better": int(np.count_nonzero(loss < 0)),
            "net_lost": float(loss.sum()),
            **self._details(),
        }
        return DriftResult(self.name, float(loss.sum() / total), threshold, p_value, details)

    def _details(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, eq=False)
class RecallAtK(_PairedRate):
    """Recall@K of a reference suite through the live ANN index, paired per query with the
    baseline's run (exact sign-flip / McNemar test, see the module docstring).

    hits = relevant ids found in the top K, trials = min(K, number of relevant ids).
    """

    name: ClassVar[str] = "recall_at_k"
    label: ClassVar[str] = "recall"
    k: int

    @classmethod
    def fit(
        cls, hits: np.ndarray, trials: np.ndarray, k: int, query_ids: Sequence[str] | None = None
    ) -> RecallAtK:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return cls(*cls._baseline(hits, trials, query_ids), k=int(k))

    def score(
        self,
        hits: np.ndarray,
        trials: np.ndarray,
        alpha: float,
        fixed_threshold: float | None = None,
        query_ids: Sequence[str] | None = None,
    ) -> DriftResult:
        return self._drop(hits, trials, alpha, fixed_threshold, query_ids)

    def _details(self) -> dict[str, Any]:
        return {"k": self.k}


@dataclass(frozen=True, eq=False)
class IndexHealth(_PairedRate):
    """Overlap of the ANN top-K with the exact top-K, paired per query with the baseline's
    run, so a degrading index (bloat, stale lists, a too-small ef_search) shows up apart
    from the embeddings. Only queries checked both at baseline time and now are paired."""

    name: ClassVar[str] = "index_health"
    label: ClassVar[str] = "overlap"

    @classmethod
    def fit(
        cls, overlap_hits: np.ndarray, trials: np.ndarray, query_ids: Sequence[str] | None = None
    ) -> IndexHealth:
        return cls(*cls._baseline(overlap_hits, trials, query_ids))

    def score(
        self,
        overlap_hits: np.ndarray,
        trials: np.ndarray,
        alpha: float,
        fixed_threshold: float | None = None,
        query_ids: Sequence[str] | None = None,
    ) -> DriftResult:
        return self._drop(overlap_hits, trials, alpha, fixed_threshold, query_ids)
