"""Feedback rates as drift signals: users feel a bad retrieval model before any vector
statistic does — they click less, press thumbs down, and ask again in other words.

Each detector compares one proportion in the cycle's query-log window with the same
proportion in the baseline's window. Queries are not independent — one user's session
shares a mood, and the rate wanders with the hour of day — so a plain binomial test cries
wolf on large windows. The baseline window (which should span the daily cycle) is cut into
blocks as long as a cycle's window, and the spread of the rate between those blocks beyond
binomial noise (the dispersion, >= 1) deflates both windows' counts to effective counts.
The test is then predictive and exact: with the baseline rate uncertain (a Beta posterior
from its effective counts), the current effective count is beta-binomial, and the p-value
is its tail on the side that means harm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.detectors import DriftResult, Stateful

MIN_BASELINE_TRIALS = 100  # fewer baseline queries cannot pin a rate down
MIN_TRIALS = 30  # fewer queries in a cycle's window say too little to test
BLOCKS = 10  # consecutive blocks of the baseline window, for its dispersion


MIN_BLOCK_TRIALS = 10  # blocks with fewer queries are pooled out of the dispersion


def dispersion(outcomes: np.ndarray, blocks: np.ndarray | None = None) -> float:
    """How much more the rate varies between blocks than binomial noise would (Pearson
    chi-square over its degrees of freedom; 1 for independent trials, never below 1).

    `blocks` labels each query's block (e.g. which cycle-long slice of the baseline window it
    fell in); without it, or with fewer than two usable blocks, the queries are cut into
    BLOCKS consecutive runs, which still sees sessions but not the hour of day.
    """
    outcomes = np.asarray(outcomes, dtype=np.float64)
    hits, trials = _block_counts(outcomes, blocks)
    if trials.size < 2:
        return 1.0
    rate = hits.sum() / trials.sum()
    if rate <= 0.0 or rate >= 1.0:
        return 1.0
    chi2 = float(np.sum((hits - trials * rate) ** 2 / (trials * rate * (1 - rate))))
    return max(1.0, chi2 / (trials.size - 1))


def _block_counts(outcomes: np.ndarray, blocks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if blocks is not None:
        labels, index = np.unique(np.asarray(blocks), return_inverse=True)
        trials = np.bincount(index, minlength=labels.size).astype(np.float64)
        hits = np.bincount(index, weights=outcomes, minlength=labels.size)
        usable = trials >= MIN_BLOCK_TRIALS
        if usable.sum() >= 2:
            return hits[usable], trials[usable]
    runs = min(BLOCKS, outcomes.size // MIN_BLOCK_TRIALS)
    if runs < 2:
        return np.empty(0), np.empty(0)
    parts = np.array_split(outcomes, runs)
    return np.array([p.sum() for p in parts]), np.array([p.size for p in parts], dtype=np.float64)


@dataclass(frozen=True)
class RateShift(Stateful):
    """A proportion of queries at baseline time; the value is its move in the harmful
    direction, the p-value the beta-binomial tail of the current count (see the module)."""

    name: ClassVar[str] = "rate_shift"
    successes: float
    trials: float
    dispersion: float
    harmful: str  # "drop" or "rise"

    @classmethod
    def fit(cls, outcomes: np.ndarray, harmful: str, blocks: np.ndarray | None = None) -> RateShift:
        """`outcomes` are 0/1 per query in log order (ts); `blocks` as in `dispersion`."""
        if harmful not in ("drop", "rise"):
            raise ValueError(f"harmful must be 'drop' or 'rise', got {harmful!r}")
        outcomes = np.asarray(outcomes, dtype=np.float64)
        if outcomes.ndim != 1 or not np.isin(outcomes, (0.0, 1.0)).all():
            raise ValueError("outcomes must be a 1-D array of 0/1")
        return cls(float(outcomes.sum()), float(outcomes.size), dispersion(outcomes, blocks), harmful)

    @property
    def rate(self) -> float:
        return self.successes / self.trials

    def _predictive(self, trials: int) -> Any:
        """Beta-binomial for an effective current count, Jeffreys prior on the baseline rate."""
        a = self.successes / self.dispersion + 0.5
        b = (self.trials - self.successes) / self.dispersion + 0.5
        return sps.betabinom(trials, a, b)

    def score(
        self, name: str, outcomes: np.ndarray, alpha: float, fixed_threshold: float | None = None
    ) -> DriftResult:
        outcomes = np.asarray(outcomes, dtype=np.float64)
        if outcomes.size < MIN_TRIALS:
            return DriftResult.insufficient(
                name, f"{outcomes.size} queries in the window; needs {MIN_TRIALS}"
            )
        current = float(outcomes.mean())
        effective = max(1, round(outcomes.size / self.dispersion))
        hits = current * effective
        predictive = self._predictive(effective)
        if self.harmful == "drop":
            value = self.rate - current
            p_value = float(predictive.cdf(np.floor(hits)))
            edge = float(predictive.ppf(alpha)) / effective
            threshold = self.rate - edge
        else:
            value = current - self.rate
            p_value = float(predictive.sf(np.ceil(hits) - 1))
            edge = float(predictive.isf(alpha)) / effective
            threshold = edge - self.rate
        if fixed_threshold is not None:
            threshold = float(fixed_threshold)
        details = {
            "baseline_rate": self.rate,
            "rate": current,
            "queries": int(outcomes.size),
            "baseline_queries": int(self.trials),
            "dispersion": self.dispersion,
        }
        return DriftResult(name, value, max(threshold, 0.0), min(p_value, 1.0), details)


__all__ = ["MIN_BASELINE_TRIALS", "MIN_TRIALS", "RateShift", "dispersion"]
