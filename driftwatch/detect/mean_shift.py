"""Mean shift in whitened units: the squared distance of the current mean from the mean of
every baseline row, each principal direction weighted by 1 / (its variance + a ridge).

Why next to `CentroidDistance`: the Euclidean distance weights every direction by its
variance, so a new topic's offset competes with the noise of all dimensions, and it
measures from the reference centroid, whose own noise (1/m) adds to the current mean's.
Here the current mean is compared with the pooled mean of reference and held-out rows
(noise 1/(m + h), h = 5m), and the directions are ridge-whitened: on the real corpus at a
2% blended topic and n = 20,000 that multiplies the expected z of mid-distinct topics by 1.7-3
(bench/mean_shift_z.py; bench/topic_power.py measures it). The ridge (0.1 x the mean variance) keeps
near-empty directions from dominating: with none, any rounding change would alarm.

The weights come from one part of the held-out rows, the null's moments from another, so
both are frozen at capture and the null does not reuse the rows that chose the weights.
Null (predictive, any n): given the baseline, the current mean of n fresh rows minus the
pooled mean is N(0, S (1/n + 1/(m+h))), so the statistic is a weighted chi-square with
cumulants 2^(j-1) (j-1)! s^j tr((W S)^j), s = 1/n + 1/(m+h); `null_from_cumulants` turns
them into a shifted gamma. The whitened spectrum is flat at the top, so three cumulants
describe the tail better than for the Euclidean distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from driftwatch.detect.population import _GROUP, _judged_distance, _moments, _sums, effect_result
from driftwatch.detect.results import (
    DriftResult,
    Stateful,
    blocks,
    check_dim,
    check_fit,
    check_metric,
    frozen,
    matrix,
    prepared,
    prepared_mean,
    prepared_rows,
    too_few,
)
from driftwatch.detect.stats import NullModel, null_from_cumulants

__all__ = ["MeanShift"]

AXES = 384  # principal directions weighted one by one (all of them at 384-d); the rest share one weight
RIDGE = 0.1  # added to every variance, as a share of the mean variance
_FIT_ROWS = 8192  # held-out rows the directions are fitted on, and the null on, at most (O(rows d^2) once)


def _covariance(rows: np.ndarray, metric: str) -> np.ndarray:
    """Sample covariance (float64, d x d) of the prepared rows, a block at a time: float32
    products summed in float64 around the first block's mean, so no float64 copy of the rows
    (100 MB for 8,192 rows at 1,536-d) is ever made."""
    shift, outer, total, count = None, None, None, 0
    for block in blocks(rows):
        part = prepared(block, metric)
        if shift is None:
            shift = part.mean(axis=0)
            outer, total = np.zeros((part.shape[1], part.shape[1])), np.zeros(part.shape[1])
        centred = part - shift
        outer += centred.T @ centred
        total += centred.sum(axis=0, dtype=np.float64)
        count += len(part)
    if shift is None or count < 2:
        raise ValueError("need at least two rows for a covariance")
    mean = total / count
    return (outer - count * np.outer(mean, mean)) / (count - 1)


@dataclass(frozen=True, eq=False)
class MeanShift(Stateful):
    """`value` is sqrt((current mean - baseline mean)' W (current mean - baseline mean)),
    W = sum_i w_i v_i v_i' + w_rest (I - sum_i v_i v_i'), in units of the whitened spread."""

    name: ClassVar[str] = "mean_shift"
    metric: str
    pooled: np.ndarray  # mean of every (prepared) baseline row, reference and held-out
    axes: np.ndarray  # (k, d) principal directions of the held-out rows
    weights: np.ndarray  # (k,) 1 / (variance + ridge) along each
    rest_weight: float  # 1 / (mean remaining variance + ridge), every other direction
    pooled_rows: int  # m + h
    trace: float  # tr(W S)
    trace2: float  # tr((W S)^2)
    trace3: float  # tr((W S)^3)
    cycle_size: int

    @classmethod
    def fit(cls, reference: np.ndarray, held_out: np.ndarray, n: int, metric: str) -> MeanShift:
        check_metric(metric)
        ref, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref, held, n)
        (ref_sum, _), (held_sum, _) = _sums(ref, metric), _sums(held, metric)
        pooled = (ref_sum + held_sum) / (len(ref) + len(held))
        # Directions from the first part of the held-out rows, the null's moments from the next.
        split = min(_FIT_ROWS, len(held) // 2)
        variances, vectors = np.linalg.eigh(_covariance(held[:split], metric))
        variances, vectors = np.maximum(variances[::-1], 0.0), vectors[:, ::-1]
        k = min(AXES, len(variances) - 1)
        ridge = RIDGE * float(variances.mean())
        if ridge <= 0.0:
            raise ValueError("the held-out rows do not vary; mean shift is undefined")
        weights = 1.0 / (variances[:k] + ridge)
        rest_weight = 1.0 / (float(variances[k:].mean()) + ridge)
        axes = vectors[:, :k].T.astype(np.float32)
        shift = cls(metric, frozen(pooled), frozen(axes), frozen(weights), rest_weight, 1, 0.0, 0.0, 0.0, n)
        # tr(W S) from the moment rows' covariance (d x d), never a whitened float64 copy of them
        # all; tr((W S)^2) and tr((W S)^3) from three groups of whitened rows (`_moments`).
        moments = held[split : 2 * split]
        trace = shift.whitened_trace(_covariance(moments, metric))
        grouped = shift.whitened(prepared_rows(moments[: 3 * _GROUP], metric)).astype(np.float32)
        trace2, trace3, _, _ = _moments(grouped, "l2", np.zeros(grouped.shape[1]))
        return cls(
            metric,
            frozen(pooled),
            frozen(axes),
            frozen(weights),
            rest_weight,
            len(ref) + len(held),
            trace,
            trace2,
            trace3,
            int(n),
        )

    def whitened_trace(self, covariance: np.ndarray) -> float:
        """tr(W S) for a covariance S: rest_weight tr(S) plus each axis's extra weight times
        its variance v' S v."""
        axes = self.axes.astype(np.float64)
        along = np.sum((axes @ covariance) * axes, axis=1)
        extra = float(np.sum((self.weights - self.rest_weight) * along))
        return self.rest_weight * float(np.trace(covariance)) + extra

    def whitened(self, rows: np.ndarray) -> np.ndarray:
        """Rows (already prepared) times W^(1/2), float64."""
        rows = np.asarray(rows, dtype=np.float64)
        along = rows @ self.axes.T.astype(np.float64)
        scale = np.sqrt(self.weights) - math.sqrt(self.rest_weight)
        return math.sqrt(self.rest_weight) * rows + (along * scale) @ self.axes.astype(np.float64)

    def null_at(self, n: int) -> NullModel:
        """No-drift distribution of the squared whitened distance for a current mean of n rows."""
        s = 1.0 / n + 1.0 / self.pooled_rows
        return null_from_cumulants(
            s * self.trace, 2 * s**2 * self.trace2, 8 * s**3 * self.trace3, n, self.pooled_rows
        )

    @property
    def null(self) -> NullModel:
        return self.null_at(self.cycle_size)

    def current_offset(self, vectors: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """(prepared mean of the rows - the pooled baseline mean, rows); `mean` when the cycle
        has it already."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, len(self.pooled), "vectors")
        current = prepared_mean(rows, self.metric) if mean is None else mean
        return current - self.pooled, len(rows)

    def squared(self, offset: np.ndarray) -> float:
        return float(np.sum(self.whitened(offset[None, :]) ** 2))

    def score(
        self,
        vectors: np.ndarray,
        alpha: float,
        fixed_threshold: float | None = None,
        mean: np.ndarray | None = None,
    ) -> DriftResult:
        offset, n = self.current_offset(vectors, mean)
        if few := too_few(self.name, n):
            return few
        squared = self.squared(offset)
        null = self.null_at(n)
        threshold, p_value = _judged_distance(null, squared, alpha, fixed_threshold)
        along = offset @ self.axes.T.astype(np.float64) * np.sqrt(self.weights)
        details = {
            "noise_distance": math.sqrt(null.mean),  # typical value at this n with no drift
            "top_axes": [int(i) for i in np.argsort(-np.abs(along))[:5]],  # principal directions moved most
            "rows": n,
        }
        return DriftResult(self.name, math.sqrt(squared), threshold, p_value, details)

    def compare_whole(self, vectors: np.ndarray, threshold: float = 0.05) -> DriftResult:
        """A table read whole: the whitened distance in units of the whitened spread,
        sqrt(tr(W S)), as `CentroidDistance.compare_whole` does unwhitened."""
        offset, n = self.current_offset(vectors)
        if few := too_few(self.name, n):
            return few
        distance = math.sqrt(self.squared(offset))
        effect = distance / math.sqrt(self.trace) if self.trace > 0 else 0.0
        return effect_result(self.name, effect, threshold, {"distance": distance, "rows": n})
