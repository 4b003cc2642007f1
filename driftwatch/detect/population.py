"""Population detectors on the stored vectors: where the mean is (`CentroidDistance`) and
how rows spread over cells (`SpatialKL`).

Nulls are predictive (pooled): the no-drift distribution of the statistic for a fresh
sample of n rows given everything the baseline saw, computed for whatever n a cycle
scores (a full sample, or 30 rows that arrived since the baseline). Under no drift the
p-value is then uniform on average over baselines, instead of counting the held-out
pool's noise twice as a bootstrap from that pool does (BENCHMARKS.md, centroid null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.results import (
    DriftResult,
    Stateful,
    blocks,
    check_dim,
    check_fit,
    check_metric,
    frozen,
    judge,
    kmeans,
    matrix,
    prepared,
    prepared_mean,
    prepared_rows,
    stable_rng,
    too_few,
)
from driftwatch.detect.stats import (
    NullModel,
    fit_null,
    js_divergence,
    kl_divergence,
    null_from_cumulants,
    smoothed_proportions,
)

__all__ = ["CentroidDistance", "SpatialKL", "effect_result"]

_GROUP = 1024  # rows per covariance group: three groups estimate tr(S^2), tr(S^3) unbiasedly


def effect_result(name: str, value: float, threshold: float, details: dict[str, Any]) -> DriftResult:
    """A comparison of two populations known exactly (a table small enough to be read
    whole, at baseline time and now): the difference is real, not sampling noise, so there
    is no p-value; it is drift when the effect size exceeds a documented, configurable
    `threshold`. Such results stay out of the Holm family (p_value None)."""
    if not (math.isfinite(value) and math.isfinite(threshold)):
        raise ValueError(f"{name}: effect size and threshold must be finite")
    return DriftResult(
        name,
        float(value),
        float(threshold),
        None,
        {**details, "read_whole": True, "effect_threshold": float(threshold)},
    )


def _sums(rows: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """(sum of prepared rows, sum of their squared norms), float64 across float32 blocks."""
    total, squares = np.zeros(rows.shape[1]), 0.0
    for block in blocks(rows):
        part = prepared(block, metric)
        total += part.sum(axis=0, dtype=np.float64)
        squares += float(np.einsum("ij,ij->", part, part, dtype=np.float64))
    return total, squares


def _moments(held: np.ndarray, metric: str, offset: np.ndarray) -> tuple[float, float, float, float]:
    """Unbiased tr(S^2), tr(S^3), d'S d and d'S^2 d for the population covariance S and the
    offset d, from three disjoint groups of held-out rows, each centred on its own mean:
    a product of independent unbiased covariances is unbiased, where the eigenvalues of one
    sample covariance are not (in 1,536-d they overstate tr(S^2) several times)."""
    size = min(_GROUP, len(held) // 3)
    groups = []
    for g in range(3):
        rows = prepared_rows(held[g * size : (g + 1) * size], metric).astype(np.float64)
        groups.append(rows - rows.mean(axis=0))
    scale = size - 1.0
    gram = {(a, b): groups[a] @ groups[b].T for a, b in ((0, 1), (1, 2), (2, 0))}
    trace2 = float(np.mean([np.sum(g * g) for g in gram.values()])) / scale**2
    trace3 = float(np.trace(gram[0, 1] @ gram[1, 2] @ gram[2, 0])) / scale**3
    pushed = [g.T @ (g @ offset) / scale for g in groups]  # S_g d, one estimate per group
    spread = float(np.mean([offset @ p for p in pushed]))
    spread2 = float(np.mean([pushed[a] @ pushed[b] for a, b in gram]))
    return trace2, trace3, spread, spread2


@dataclass(frozen=True, eq=False)
class CentroidDistance(Stateful):
    """Euclidean distance between the baseline's and the current mean vector: moves when the
    whole population shifts (a new topic mix, a new model), not when one region does.

    Rows are L2-normalised first for metric "cosine" (the geometry the store searches in),
    raw for "l2" and "inner_product". A distance, never the angle between two means: in a
    centred space the mean is near zero and its direction is noise.

    Null (exact for a Gaussian mean, any n): given the baseline, the current mean of n fresh
    rows is N(pooled mean of reference and held-out, S (1/n + 1/(m+h))), so the squared
    distance to the reference centroid is a weighted non-central chi-square whose first
    three cumulants need only tr(S), tr(S^2), tr(S^3) and the offset d = pooled mean -
    reference centroid; a shifted gamma with those cumulants gives threshold and p-value.
    """

    name: ClassVar[str] = "centroid_distance"
    metric: str
    centroid: np.ndarray  # mean of the (prepared) reference rows
    offset: np.ndarray  # pooled mean - centroid
    pooled_rows: int  # m + h
    trace: float  # tr(S)
    trace2: float  # tr(S^2)
    trace3: float  # tr(S^3)
    offset_spread: float  # d'S d
    offset_spread2: float  # d'S^2 d
    cycle_size: int

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        n: int,
        metric: str,
        rng: np.random.Generator | None = None,
        replicates: int = 1000,
    ) -> CentroidDistance:
        """`rng` and `replicates` are accepted for the callers' sake: the null is closed-form."""
        check_metric(metric)
        ref, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref, held, n, replicates)
        (ref_sum, ref_squares), (held_sum, held_squares) = _sums(ref, metric), _sums(held, metric)
        m, h = len(ref), len(held)
        centroid, held_mean = ref_sum / m, held_sum / h
        if metric == "cosine" and not np.any(centroid):
            raise ValueError("the reference rows are all zero; centroid distance is undefined")
        offset = h / (m + h) * (held_mean - centroid)
        within = ref_squares - m * centroid @ centroid + held_squares - h * held_mean @ held_mean
        trace = max(float(within) / (m + h - 2), 0.0)
        trace2, trace3, spread, spread2 = _moments(held, metric, offset)
        return cls(
            metric, frozen(centroid), frozen(offset), m + h, trace, trace2, trace3, spread, spread2, int(n)
        )

    def null_at(self, n: int) -> NullModel:
        """No-drift distribution of the squared distance for a current mean of n rows."""
        s = 1.0 / n + 1.0 / self.pooled_rows
        delta = float(self.offset @ self.offset)
        mean = s * self.trace + delta
        variance = 2 * s**2 * self.trace2 + 4 * s * self.offset_spread
        third = 8 * s**3 * self.trace3 + 24 * s**2 * self.offset_spread2
        return null_from_cumulants(mean, variance, third, n, self.pooled_rows)

    @property
    def null(self) -> NullModel:
        """The null at the fitted cycle size, of the *squared* distance (see `null_at`)."""
        return self.null_at(self.cycle_size)

    def null_summary(self, alpha: float, n: int | None = None) -> tuple[float, float, float]:
        """(mean, sd, threshold at alpha) of the no-drift distance for n rows (the cycle size
        by default), in the units of `value`: for `baseline capture` to print."""
        null = self.null_at(n or self.cycle_size)
        if null.scale == 0.0:
            return math.sqrt(null.mean), 0.0, math.sqrt(null.mean)
        mean = float(sps.gamma(null.shape, loc=null.loc, scale=null.scale).expect(np.sqrt))
        return mean, math.sqrt(max(null.mean - mean**2, 0.0)), math.sqrt(null.threshold(alpha))

    def threshold_at(self, n: int, alpha: float) -> float:
        """The distance a no-drift mean of n rows exceeds with probability alpha."""
        return math.sqrt(self.null_at(n).threshold(alpha))

    def current_mean(self, vectors: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """(prepared mean of the rows, rows); `mean` when the cycle has it already."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, len(self.centroid), "vectors")
        return (prepared_mean(rows, self.metric) if mean is None else mean), len(rows)

    def score(
        self,
        vectors: np.ndarray,
        alpha: float,
        fixed_threshold: float | None = None,
        mean: np.ndarray | None = None,
    ) -> DriftResult:
        current, n = self.current_mean(vectors, mean)
        if few := too_few(self.name, n):
            return few
        squared = float(np.sum((current - self.centroid) ** 2))
        null = self.null_at(n)
        threshold, p_value = _judged_distance(null, squared, alpha, fixed_threshold)
        details = {
            "baseline_centroid_norm": float(np.linalg.norm(self.centroid)),
            "current_centroid_norm": float(np.linalg.norm(current)),
            "noise_distance": math.sqrt(null.mean),  # typical distance at this n with no drift
            "relative_shift": math.sqrt(squared / self.trace) if self.trace > 0 else None,
            "rows": n,
        }
        return DriftResult(self.name, math.sqrt(squared), threshold, p_value, details)

    def compare_whole(self, vectors: np.ndarray, threshold: float = 0.05) -> DriftResult:
        """For a table read whole at baseline and now: the means' distance in units of the
        population's spread, sqrt(tr S) (the root-mean-square distance of a row from the
        mean); 0.05 means the mean moved 5% of that. See `effect_result`."""
        current, n = self.current_mean(vectors)
        if few := too_few(self.name, n):
            return few
        baseline = self.centroid + self.offset  # the mean of every baseline row
        distance = float(np.linalg.norm(current - baseline))
        effect = distance / math.sqrt(self.trace) if self.trace > 0 else 0.0
        details = {"distance": distance, "rows": n, "current_centroid_norm": float(np.linalg.norm(current))}
        return effect_result(self.name, effect, threshold, details)


def _judged_distance(
    null: NullModel, squared: float, alpha: float, fixed_threshold: float | None
) -> tuple[float, float]:
    """(threshold on the distance, p-value) of a squared distance: the null is of the square,
    the value a person reads is its root, so the threshold is reported as a root too."""
    threshold, p_value = judge(null, squared, alpha, None)
    return (math.sqrt(threshold) if fixed_threshold is None else float(fixed_threshold)), p_value


def _nearest(unit_rows: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = unit_rows @ centroids.T.astype(unit_rows.dtype)
    cell = np.argmax(similarity, axis=1)
    return cell, 1.0 - similarity[np.arange(len(cell)), cell]


def _kl_null(baseline_counts: np.ndarray, n: int, replicates: int, smoothing: float, rng: Any) -> NullModel:
    """Predictive null in cell space: occupancies drawn from the posterior given the
    held-out counts (Dirichlet, Jeffreys prior), then n rows from each, each scored against
    the held-out occupancy exactly as a cycle is."""
    shares = rng.dirichlet(baseline_counts + 0.5, size=replicates)
    currents = np.array([rng.multinomial(n, p) for p in shares], dtype=np.float64)
    baseline = smoothed_proportions(baseline_counts, smoothing)
    current = (currents + smoothing) / (n + smoothing * currents.shape[1])
    values = np.maximum(np.sum(current * np.log(current / baseline), axis=1), 0.0)
    return fit_null(values, n, int(baseline_counts.sum()))


@dataclass(frozen=True, eq=False)
class SpatialKL(Stateful):
    """KL divergence of the current from the baseline occupancy of k cells fitted on the
    baseline (k-means on unit vectors), plus a "far" cell for rows farther from every
    centroid than 99% of the reference (new territory); per-cell terms say *where* the
    population moved. Occupancies are Jeffreys-smoothed, so KL stays finite.

    The baseline occupancy is measured on the held-out rows, not on the reference the cells
    were fitted on: k-means cells hug their own points, so the reference's occupancy is
    biased and that bias would be read as drift in every cycle. The null is the predictive
    one for any n (`_kl_null`).

    Under no drift the statistic's mean is about k/2 * (1/n + 1/h), so cells are capped at
    n // 20 and reference rows // 20: more cells would drown a real shift in noise.
    """

    name: ClassVar[str] = "spatial_kl"
    centroids: np.ndarray  # (k, d) unit rows
    far_distance: float  # cosine distance to the nearest centroid beyond which a row is far
    reference_counts: np.ndarray  # (k + 1,) occupancy of the reference (fit) rows, far cell last
    held_out_counts: np.ndarray  # (k + 1,) occupancy of the held-out rows: the baseline and the null
    null: NullModel  # at the fitted cycle size; other sizes get theirs at score time
    smoothing: float = 0.5  # Jeffreys; frozen with the baseline like everything else

    @property
    def cells(self) -> int:
        return len(self.centroids)

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        n: int,
        rng: np.random.Generator,
        cells: int = 32,
        replicates: int = 1000,
    ) -> SpatialKL:
        ref_rows, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref_rows, held, n, replicates)
        ref = prepared_rows(ref_rows, "cosine")  # one float32 copy of the reference, none of held-out
        centroids, _ = kmeans(ref, max(2, min(cells, len(ref) // 20, n // 20)), rng)
        centroids = prepared(centroids, "cosine")
        centroids = centroids[np.unique(_nearest(ref, centroids)[0])]  # every cell holds reference rows
        far_distance = float(np.quantile(_nearest(ref, centroids)[1], 0.99))
        partial = cls(
            frozen(centroids),
            far_distance,
            frozen(np.zeros(1)),
            frozen(np.zeros(1)),
            NullModel(1, 1, 0.0, 0.0, {}, 0.0, 0.0, 0),
        )
        ref_counts = partial.counts(ref).astype(np.float64)
        held_counts = partial.counts(held).astype(np.float64)
        null = _kl_null(held_counts, n, replicates, 0.5, rng)
        return cls(frozen(centroids), far_distance, frozen(ref_counts), frozen(held_counts), null)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Cell index of each row, `cells` for the far cell: lets callers map queries to cells."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, self.centroids.shape[1], "vectors")
        return np.concatenate([self._assign_rows(b) for b in blocks(rows)]) if len(rows) else np.empty(0, int)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """Occupancy of the k cells and the far cell, block by block."""
        total = np.zeros(self.cells + 1, dtype=np.int64)
        for block in blocks(rows):
            total += np.bincount(self._assign_rows(block), minlength=self.cells + 1)
        return total

    def _assign_rows(self, rows: np.ndarray) -> np.ndarray:
        """Nearest cell by cosine without a normalised copy of the rows: a row's norm scales
        all its similarities alike, so the raw products pick the same cell, and only the
        chosen one is divided by the norm (a zero row is at distance 1, as a unit row
        orthogonal to every centroid)."""
        block = np.asarray(rows, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        raw = block @ self.centroids.T.astype(np.float32)
        cell = np.argmax(raw, axis=1)
        cosine = raw[np.arange(len(cell)), cell] / np.where(norms > 0, norms, np.inf)
        return np.where(1.0 - cosine > self.far_distance, self.cells, cell)

    def null_summary(self, alpha: float, n: int | None = None) -> tuple[float, float, float]:
        """(mean, sd, threshold at alpha) of the no-drift KL for n rows (the cycle size by default)."""
        null = self.null_at(n or self.null.n)
        return null.mean, null.sd, null.threshold(alpha)

    def null_at(self, n: int) -> NullModel:
        if n == self.null.n:
            return self.null
        rng = stable_rng(n, int(self.held_out_counts.sum()))  # the same null every time for this n
        return _kl_null(self.held_out_counts, n, self.null.replicates, self.smoothing, rng)

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        rows = matrix(vectors, "vectors")
        if few := too_few(self.name, len(rows)):
            return few
        check_dim(rows, self.centroids.shape[1], "vectors")
        counts = self.counts(rows)
        baseline = smoothed_proportions(self.held_out_counts, self.smoothing)
        current = smoothed_proportions(counts, self.smoothing)
        value = max(kl_divergence(current, baseline), 0.0)
        threshold, p_value = judge(self.null_at(len(rows)), value, alpha, fixed_threshold)
        details = {
            "jsd": js_divergence(current, baseline),
            "far_fraction": float(counts[-1] / len(rows)),
            "baseline_far_fraction": float(self.held_out_counts[-1] / self.held_out_counts.sum()),
            "cells": self.cells,
            "top_cells": self._top_cells(baseline, current),
        }
        return DriftResult(self.name, value, threshold, p_value, details)

    def compare_whole(self, vectors: np.ndarray, threshold: float = 0.01) -> DriftResult:
        """For a table read whole at baseline and now: Jensen-Shannon divergence (nats, at
        most ln 2) of the current occupancy from the whole baseline's (reference plus
        held-out rows); 0.01 is about 3% of the rows moving into a cell that held none.
        See `effect_result`."""
        rows = matrix(vectors, "vectors")
        if few := too_few(self.name, len(rows)):
            return few
        check_dim(rows, self.centroids.shape[1], "vectors")
        counts = self.counts(rows)
        baseline = self.reference_counts + self.held_out_counts
        details = {"cells": self.cells, "rows": len(rows), "far_fraction": float(counts[-1] / len(rows))}
        return effect_result(self.name, js_divergence(counts, baseline), threshold, details)

    def _top_cells(self, baseline: np.ndarray, current: np.ndarray) -> list[dict[str, Any]]:
        change = current - baseline
        return [
            {
                "cell": "far" if i == self.cells else int(i),
                "baseline": float(baseline[i]),
                "current": float(current[i]),
                "change": float(change[i]),
                "contribution": float(current[i] * math.log(current[i] / baseline[i])),
            }
            for i in np.argsort(-np.abs(change), kind="stable")[:5]
        ]
