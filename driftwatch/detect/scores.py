"""Score PSI: the top-1 similarity of live queries against baseline bins.

The null is predictive at any query count: bin shares drawn from the posterior given the
held-out half's counts (Dirichlet, Jeffreys prior), then n queries from each, scored
against the held-out half's shares exactly as a cycle is. The fit half only places the
bin edges (quantile bins fitted on their own data hold exactly equal counts, so that
half says nothing about the bins' true shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from driftwatch.detect.results import MIN_SAMPLE, DriftResult, Stateful, frozen, judge, stable_rng, too_few
from driftwatch.detect.stats import NullModel, bin_counts, fit_null, psi, quantile_edges

__all__ = ["ScorePSI"]


def _score_pairs(top1: Any, mean_topk: Any) -> tuple[np.ndarray, np.ndarray]:
    top1_, topk_ = np.asarray(top1, dtype=np.float64), np.asarray(mean_topk, dtype=np.float64)
    if top1_.ndim != 1 or top1_.shape != topk_.shape:
        raise ValueError("top1 and mean_topk must be 1-D arrays of the same length")
    return top1_, topk_


def _psi_rows(currents: np.ndarray, baseline: np.ndarray, eps: float) -> np.ndarray:
    """`stats.psi` of each row of counts against one baseline, vectorised over replicates."""
    current = np.maximum(currents / currents.sum(axis=1, keepdims=True), eps)
    current /= current.sum(axis=1, keepdims=True)
    reference = np.maximum(baseline / baseline.sum(), eps)
    reference /= reference.sum()
    return np.sum((current - reference) * np.log(current / reference), axis=1)


@dataclass(frozen=True, eq=False)
class ScorePSI(Stateful):
    """PSI of live queries' top-1 similarity scores against baseline quantile bins: moves when
    the embedding function changes (scores fall or spread) or when queries move."""

    name: ClassVar[str] = "score_psi"
    top1_edges: np.ndarray
    top1_baseline_counts: np.ndarray  # held-out half, per top-1 bin: the baseline and the null
    topk_edges: np.ndarray
    topk_baseline_counts: np.ndarray  # held-out half, per mean-top-k bin
    baseline_median_top1: float
    replicates: int = 1000
    eps: float = 1e-4
    source: str = "query_log"  # which scores the bins describe: "query_log" or "suite"

    @classmethod
    def fit(
        cls,
        top1: np.ndarray,
        mean_topk: np.ndarray,
        rng: np.random.Generator,
        bins: int = 10,
        replicates: int = 1000,
        source: str = "query_log",
    ) -> ScorePSI:
        top1_, topk_ = _score_pairs(top1, mean_topk)
        if not (np.all(np.isfinite(top1_)) and np.all(np.isfinite(topk_))):
            raise ValueError("baseline scores must be finite")
        if top1_.size < 2 * MIN_SAMPLE:
            raise ValueError(f"score_psi needs at least {2 * MIN_SAMPLE} baseline queries, got {top1_.size}")
        if replicates < 20:
            raise ValueError(f"replicates must be at least 20, got {replicates}")
        order = rng.permutation(top1_.size)
        fit, held = order[: top1_.size // 2], order[top1_.size // 2 :]
        top1_edges, topk_edges = quantile_edges(top1_[fit], bins), quantile_edges(topk_[fit], bins)
        return cls(
            frozen(top1_edges),
            frozen(bin_counts(top1_[held], top1_edges).astype(np.float64)),
            frozen(topk_edges),
            frozen(bin_counts(topk_[held], topk_edges).astype(np.float64)),
            float(np.median(top1_)),
            int(replicates),
            source=source,
        )

    def null_at(self, n: int) -> NullModel:
        """The no-drift PSI distribution for n current queries; the same every time for a given n."""
        baseline = self.top1_baseline_counts
        rng = stable_rng(n, int(baseline.sum()))
        shares = rng.dirichlet(baseline + 0.5, size=self.replicates)
        draws = np.array([rng.multinomial(n, p) for p in shares], dtype=np.float64)
        return fit_null(_psi_rows(draws, baseline, self.eps), n, int(baseline.sum()))

    def null_summary(self, alpha: float, n: int | None = None) -> tuple[float, float, float]:
        """(mean, sd, threshold at alpha) of the no-drift PSI for n queries (by default as
        many as the baseline's held-out half)."""
        null = self.null_at(n or int(self.top1_baseline_counts.sum()))
        return null.mean, null.sd, null.threshold(alpha)

    def score(
        self, top1: np.ndarray, mean_topk: np.ndarray, alpha: float, fixed_threshold: float | None = None
    ) -> DriftResult:
        top1_, topk_ = _score_pairs(top1, mean_topk)
        finite = np.isfinite(top1_) & np.isfinite(topk_)
        top1_, topk_ = top1_[finite], topk_[finite]
        if few := too_few(self.name, top1_.size, "queries"):
            return few
        value = psi(bin_counts(top1_, self.top1_edges), self.top1_baseline_counts, self.eps)
        threshold, p_value = judge(self.null_at(top1_.size), value, alpha, fixed_threshold)
        details = {
            "psi_mean_topk": psi(bin_counts(topk_, self.topk_edges), self.topk_baseline_counts, self.eps),
            "n_queries": int(top1_.size),
            "dropped_non_finite": int(np.count_nonzero(~finite)),
            "bins": int(self.top1_edges.size + 1),
            "baseline_median_top1": self.baseline_median_top1,
            "current_median_top1": float(np.median(top1_)),
        }
        return DriftResult(self.name, value, threshold, p_value, details)
