"""Drift detectors: fitted once on the baseline, frozen, then each cycle scores a current
sample into one `DriftResult` whose value grows with drift.

Calibration (DESIGN.md, "Honest thresholds"): a statistical detector fits its cells,
centroid or bins on a `reference` sample and takes its null distribution from a separate
`held_out` sample of the same population: bootstrap samples of the cycle's size n, scored
against the frozen reference exactly as a cycle is. Held-out rows are fresh data, so the
null includes the reference's real offset from the population and its in-sample biases
(k-means cells hug their own points, quantile bins fit their own data). It also carries
the held-out sample's own noise, so it errs on the safe side, by about
(1/n + 1/m + 1/h) / (1/n + 1/m) in its mean (m reference rows, h held-out rows): make m
and h several times n. The bootstrap treats rows as independent; rows or queries that
arrive in clumps (a bulk import, one user's session) vary more and alarm more often.

`state()` returns (arrays, summary): numpy arrays for an .npz and a JSON-safe dict;
`from_state` rebuilds a detector that scores bit-for-bit the same.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

import numpy as np
from scipy.cluster.vq import kmeans2

from driftwatch.detect.stats import (
    NullModel,
    bin_counts,
    binomial_cdf,
    binomial_lower_bound,
    design_effect,
    fit_null,
    js_divergence,
    kl_divergence,
    psi,
    quantile_edges,
    smoothed_proportions,
)

__all__ = [
    "CentroidDistance",
    "DriftResult",
    "IndexHealth",
    "RecallAtK",
    "ScorePSI",
    "SpatialKL",
    "Stateful",
]

_MIN_SAMPLE = 30  # below this the statistics are mostly noise and the nulls' asymptotics fail
_METRICS = ("cosine", "l2", "inner_product")


@dataclass(frozen=True)
class DriftResult:
    """One detector's verdict for one cycle; `value` is oriented so higher means more drift."""

    detector: str
    value: float | None
    threshold: float | None
    p_value: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.value is not None and self.threshold is not None and self.value > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The shape of one detector in `check --json`."""
        return {
            "value": self.value,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "drifted": self.drifted,
            "details": self.details,
        }

    @classmethod
    def insufficient(cls, detector: str, why: str) -> DriftResult:
        """A detector that cannot judge says why instead of guessing."""
        return cls(detector, None, None, None, {"insufficient": why})


def _frozen(values: Any) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


class Stateful:
    """Persistence of a frozen detector: array fields go to an .npz, the null to JSON as a
    dict, every other field to JSON as it is (Python floats survive JSON exactly)."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        summary: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                summary[f.name] = value.to_dict() if isinstance(value, NullModel) else value
        return arrays, summary

    def typical_null(self, _cycle_size: int) -> NullModel | None:
        """The no-drift distribution a typical cycle is judged by (None: not a calibrated statistic)."""
        null = getattr(self, "null", None)
        return null if isinstance(null, NullModel) else None

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], summary: Mapping[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in arrays:
                values[f.name] = _frozen(arrays[f.name])
            elif f.name == "null":
                values[f.name] = NullModel.from_dict(summary[f.name])
            else:
                values[f.name] = summary[f.name]
        return cls(**values)


def _matrix(values: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of row vectors")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf; run VectorSanity.check first")
    return array


def _inverse_norms(rows: np.ndarray) -> np.ndarray:
    """1/|row| (0 for zero rows), without building a normalised copy of the sample."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def _weighted_mean(rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of (weights * rows) with float32 BLAS per block and float64 across blocks:
    one pass, no upcast copy of the sample, error ~1e-7."""
    total = np.zeros(rows.shape[1], dtype=np.float64)
    for start in range(0, len(rows), 4096):
        block = rows[start : start + 4096]
        w = np.ones(len(block), dtype=rows.dtype) if weights is None else weights[start : start + 4096]
        total += (w.astype(rows.dtype) @ block).astype(np.float64)
    return total / max(len(rows), 1)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0.0, 1.0, norms)


def _check_dim(rows: np.ndarray, dim: int, name: str) -> None:
    if rows.shape[1] != dim:
        raise ValueError(f"{name} have dimension {rows.shape[1]}, the baseline has {dim}")


def _check_fit(reference: np.ndarray, held_out: np.ndarray, n: int, replicates: int) -> None:
    if len(reference) < _MIN_SAMPLE or len(held_out) < _MIN_SAMPLE:
        raise ValueError(f"reference and held_out need at least {_MIN_SAMPLE} rows each")
    _check_dim(held_out, reference.shape[1], "held_out rows")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if replicates < 20:
        raise ValueError(f"replicates must be at least 20, got {replicates}")


def _too_few(name: str, rows: int, what: str = "rows") -> DriftResult | None:
    if rows < _MIN_SAMPLE:
        return DriftResult.insufficient(name, f"{rows} {what}, need at least {_MIN_SAMPLE}")
    return None


def _effective_size(reference_rows: int, held_out_rows: int) -> int:
    """The bootstrap null carries the noise of both samples, so rescaling treats them as one
    reference of this size: 1/m_eff = 1/m + 1/h."""
    return max(1, round(reference_rows * held_out_rows / (reference_rows + held_out_rows)))


def _stable_rng(n: int, pool: int) -> np.random.Generator:
    """A null computed at score time must come out the same every time for the same inputs."""
    return np.random.default_rng([n, pool])


def _judge(null: NullModel, value: float, alpha: float, fixed: float | None) -> tuple[float, float]:
    return (null.threshold(alpha) if fixed is None else float(fixed)), null.p_value(value)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos, as half the squared distance of the unit vectors: no cancellation near 0."""
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0.0 or norm_b == 0.0:
        return 1.0
    return float(0.5 * np.sum((a / norm_a - b / norm_b) ** 2))


def _bootstrap_means(rows: np.ndarray, n: int, replicates: int, rng: np.random.Generator) -> Iterator[Any]:
    """Means of bootstrap samples as count-weighted sums: a bincount and a matmul per block
    of replicates, never n copied rows per replicate."""
    for start in range(0, replicates, 32):
        block = min(32, replicates - start)
        counts = np.stack(
            [np.bincount(rng.integers(0, len(rows), n), minlength=len(rows)) for _ in range(block)]
        )
        yield from (counts @ rows) / n


@dataclass(frozen=True, eq=False)
class CentroidDistance(Stateful):
    """Cosine distance between the baseline's and the current mean vector: moves when the
    whole population shifts (a new topic mix, a new model), not when one region does.

    For metric "cosine" rows are L2-normalised first, the geometry the store searches in;
    for "l2" and "inner_product" the raw rows are averaged.
    """

    name: ClassVar[str] = "centroid_distance"
    metric: str
    centroid: np.ndarray
    null: NullModel

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        n: int,
        metric: str,
        rng: np.random.Generator,
        replicates: int = 1000,
    ) -> CentroidDistance:
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}, got {metric!r}")
        ref = cls._prepare(_matrix(reference, "reference"), metric)
        held = cls._prepare(_matrix(held_out, "held_out"), metric)
        _check_fit(ref, held, n, replicates)
        # The null is conditional on this baseline: fresh rows (bootstrap of the held-out
        # part) against the frozen reference centroid, so the reference's own offset from
        # the population is in the null. Measured (BENCHMARKS.md): a pooled two-sample null
        # is right on average but runs 2-3x hot at small alpha on unlucky baselines.
        centroid = ref.mean(axis=0)
        if not np.any(centroid):
            raise ValueError("the reference centroid is the zero vector; centroid distance is undefined")
        values = [_cosine_distance(centroid, mean) for mean in _bootstrap_means(held, n, replicates, rng)]
        return cls(
            metric, _frozen(centroid), fit_null(np.array(values), n, _effective_size(len(ref), len(held)))
        )

    @staticmethod
    def _prepare(rows: np.ndarray, metric: str) -> np.ndarray:
        return _unit(rows) if metric == "cosine" else rows

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        rows = _matrix(vectors, "vectors", np.float32)  # a cycle's sample is float32; keep it so
        if too_few := _too_few(self.name, len(rows)):
            return too_few
        _check_dim(rows, len(self.centroid), "vectors")
        weights = _inverse_norms(rows) if self.metric == "cosine" else None  # mean of unit rows
        current = _weighted_mean(rows, weights)
        value = _cosine_distance(self.centroid, current)
        null = self.null if len(rows) == self.null.n else self.null.rescaled(len(rows))
        threshold, p_value = _judge(null, value, alpha, fixed_threshold)
        details = {
            "baseline_centroid_norm": float(np.linalg.norm(self.centroid)),
            "current_centroid_norm": float(np.linalg.norm(current)),
        }
        return DriftResult(self.name, value, threshold, p_value, details)


def _nearest(unit_rows: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = unit_rows @ centroids.T.astype(unit_rows.dtype)
    cell = np.argmax(similarity, axis=1)
    return cell, 1.0 - similarity[np.arange(len(cell)), cell]


def _assign(unit_rows: np.ndarray, centroids: np.ndarray, far_distance: float) -> np.ndarray:
    cell, distance = _nearest(unit_rows, centroids)
    return np.where(distance > far_distance, len(centroids), cell)


def _kl_null(held_counts: np.ndarray, n: int, replicates: int, smoothing: float, rng: Any) -> NullModel:
    """Two-sample bootstrap in cell space: a baseline of the held-out size and a current
    sample of n, both drawn from the held-out occupancy, so the null carries the baseline's
    own estimation noise as well as the current sample's."""
    h = int(held_counts.sum())
    share = held_counts / h
    baselines = rng.multinomial(h, share, size=replicates)
    currents = rng.multinomial(n, share, size=replicates)
    values = [
        max(kl_divergence(smoothed_proportions(c, smoothing), smoothed_proportions(b, smoothing)), 0.0)
        for b, c in zip(baselines, currents, strict=True)
    ]
    return fit_null(np.array(values), n, h)


@dataclass(frozen=True, eq=False)
class SpatialKL(Stateful):
    """KL divergence of the current from the baseline occupancy of k cells fitted on the
    baseline (k-means on unit vectors), plus a "far" cell for rows farther from every
    centroid than 99% of the reference (new territory); per-cell terms say *where* the
    population moved. Occupancies are Jeffreys-smoothed, so KL stays finite.

    The baseline occupancy is measured on the held-out rows, not on the reference the cells
    were fitted on: k-means cells hug their own points and the far radius is the
    reference's own 99th percentile, so the reference's occupancy is biased (its far cell
    holds exactly 1%, the population often 2-3%), and that bias would be read as drift in
    every cycle.

    Under no drift the statistic's mean is about k/2 * (1/n + 1/m), so cells are capped at
    n // 20 and reference rows // 20: more cells would drown a real shift in noise.
    """

    name: ClassVar[str] = "spatial_kl"
    centroids: np.ndarray  # (k, d) unit rows
    far_distance: float  # cosine distance to the nearest centroid beyond which a row is far
    reference_counts: np.ndarray  # (k + 1,) occupancy of the reference (fit) rows, far cell last
    held_out_counts: np.ndarray  # (k + 1,) occupancy of the held-out rows: the baseline and the null
    null: NullModel
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
        # float32 halves the memory of a large sample; cell assignment needs no more precision
        ref = _unit(_matrix(reference, "reference", np.float32))
        held = _unit(_matrix(held_out, "held_out", np.float32))
        _check_fit(ref, held, n, replicates)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty cluster is dropped just below
            centroids, _ = kmeans2(ref, max(2, min(cells, len(ref) // 20, n // 20)), minit="++", seed=rng)
        centroids = _unit(centroids)
        centroids = centroids[np.unique(_nearest(ref, centroids)[0])]  # every cell holds reference rows
        far_distance = float(np.quantile(_nearest(ref, centroids)[1], 0.99))
        ref_counts = np.bincount(_assign(ref, centroids, far_distance), minlength=len(centroids) + 1)
        held_counts = np.bincount(_assign(held, centroids, far_distance), minlength=len(centroids) + 1)
        null = _kl_null(held_counts, n, replicates, 0.5, rng)
        return cls(_frozen(centroids), far_distance, _frozen(ref_counts), _frozen(held_counts), null)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Cell index of each row, `cells` for the far cell: lets callers map queries to cells."""
        rows = _matrix(vectors, "vectors", np.float32)
        _check_dim(rows, self.centroids.shape[1], "vectors")
        return self._assign_rows(rows)

    def _assign_rows(self, rows: np.ndarray) -> np.ndarray:
        # cos(row, c) = (row @ c) / |row| for unit centroids: no normalised copy of the sample
        similarity = (rows @ self.centroids.T.astype(np.float32)) * _inverse_norms(rows)[:, None]
        cell = np.argmax(similarity, axis=1)
        distance = 1.0 - similarity[np.arange(len(cell)), cell]
        return np.where(distance > self.far_distance, self.cells, cell)

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        rows = _matrix(vectors, "vectors", np.float32)
        if too_few := _too_few(self.name, len(rows)):
            return too_few
        _check_dim(rows, self.centroids.shape[1], "vectors")
        counts = np.bincount(self._assign_rows(rows), minlength=self.cells + 1)
        baseline = smoothed_proportions(self.held_out_counts, self.smoothing)
        current = smoothed_proportions(counts, self.smoothing)
        value = max(kl_divergence(current, baseline), 0.0)
        null = self.null
        if len(rows) != null.n:  # smoothed small-count KL does not scale like 1/n; the exact null is cheap
            rng = _stable_rng(len(rows), int(self.held_out_counts.sum()))
            null = _kl_null(self.held_out_counts, len(rows), null.replicates, self.smoothing, rng)
        threshold, p_value = _judge(null, value, alpha, fixed_threshold)
        details = {
            "jsd": js_divergence(current, baseline),
            "far_fraction": float(counts[-1] / len(rows)),
            "baseline_far_fraction": float(self.held_out_counts[-1] / self.held_out_counts.sum()),
            "cells": self.cells,
            "top_cells": self._top_cells(baseline, current),
        }
        return DriftResult(self.name, value, threshold, p_value, details)

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


def _score_pairs(top1: Any, mean_topk: Any) -> tuple[np.ndarray, np.ndarray]:
    top1_, topk_ = np.asarray(top1, dtype=np.float64), np.asarray(mean_topk, dtype=np.float64)
    if top1_.ndim != 1 or top1_.shape != topk_.shape:
        raise ValueError("top1 and mean_topk must be 1-D arrays of the same length")
    return top1_, topk_


@dataclass(frozen=True, eq=False)
class ScorePSI(Stateful):
    """PSI of live queries' top-1 similarity scores against baseline quantile bins: moves when
    the embedding function changes (scores fall or spread) or when queries move.

    Queries per cycle vary, so the null is computed at score time for the actual count,
    by bootstrap from the held-out half of the baseline queries (1-D: milliseconds).
    """

    name: ClassVar[str] = "score_psi"
    top1_edges: np.ndarray
    top1_reference_counts: np.ndarray  # fit half, per top-1 bin
    topk_edges: np.ndarray
    topk_reference_counts: np.ndarray  # fit half, per mean-top-k bin
    held_out_top1: np.ndarray
    held_out_topk: np.ndarray
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
        if top1_.size < 2 * _MIN_SAMPLE:
            raise ValueError(f"score_psi needs at least {2 * _MIN_SAMPLE} baseline queries, got {top1_.size}")
        if replicates < 20:
            raise ValueError(f"replicates must be at least 20, got {replicates}")
        order = rng.permutation(top1_.size)
        fit, held = order[: top1_.size // 2], order[top1_.size // 2 :]
        top1_edges, topk_edges = quantile_edges(top1_[fit], bins), quantile_edges(topk_[fit], bins)
        return cls(
            _frozen(top1_edges),
            _frozen(bin_counts(top1_[fit], top1_edges)),
            _frozen(topk_edges),
            _frozen(bin_counts(topk_[fit], topk_edges)),
            _frozen(top1_[held]),
            _frozen(topk_[held]),
            float(np.median(top1_)),
            int(replicates),
            source=source,
        )

    def typical_null(self, _cycle_size: int) -> NullModel:
        """The null at the baseline window's own query count (queries, not rows, per cycle)."""
        return self.null_at(self.held_out_top1.size)

    def null_at(self, n: int) -> NullModel:
        """The no-drift PSI distribution for n current queries; the same every time for a given n."""
        rng = _stable_rng(n, self.held_out_top1.size)
        held = bin_counts(self.held_out_top1, self.top1_edges)
        draws = rng.multinomial(n, held / held.sum(), size=self.replicates)
        values = np.array([psi(c, self.top1_reference_counts, self.eps) for c in draws])
        return fit_null(values, n, _effective_size(int(self.top1_reference_counts.sum()), held.sum()))

    def score(
        self, top1: np.ndarray, mean_topk: np.ndarray, alpha: float, fixed_threshold: float | None = None
    ) -> DriftResult:
        top1_, topk_ = _score_pairs(top1, mean_topk)
        finite = np.isfinite(top1_) & np.isfinite(topk_)
        top1_, topk_ = top1_[finite], topk_[finite]
        if too_few := _too_few(self.name, top1_.size, "queries"):
            return too_few
        value = psi(bin_counts(top1_, self.top1_edges), self.top1_reference_counts, self.eps)
        threshold, p_value = _judge(self.null_at(top1_.size), value, alpha, fixed_threshold)
        details = {
            "psi_mean_topk": psi(bin_counts(topk_, self.topk_edges), self.topk_reference_counts, self.eps),
            "n_queries": int(top1_.size),
            "dropped_non_finite": int(np.count_nonzero(~finite)),
            "bins": int(self.top1_edges.size + 1),
            "baseline_median_top1": self.baseline_median_top1,
            "current_median_top1": float(np.median(top1_)),
        }
        return DriftResult(self.name, value, threshold, p_value, details)


def _hits_trials(hits: Any, trials: Any) -> tuple[np.ndarray, np.ndarray]:
    hits_, trials_ = np.asarray(hits, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    if hits_.ndim != 1 or hits_.shape != trials_.shape:
        raise ValueError("hits and trials must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(hits_)) and np.all(np.isfinite(trials_))):
        raise ValueError("hits and trials must be finite")
    if np.any(hits_ < 0) or np.any(hits_ > trials_):
        raise ValueError("each query needs 0 <= hits <= trials")
    return hits_, trials_


@dataclass(frozen=True)
class _RateDrop(Stateful):
    """A success rate over a query suite at baseline time; the value is the drop from it, and
    drift is a current rate below the baseline's lower confidence bound (Clopper-Pearson on
    counts divided by the suite's design effect, see `stats.design_effect`)."""

    name: ClassVar[str]
    label: ClassVar[str]
    hits: float
    trials: float
    queries: int
    design_effect: float

    @staticmethod
    def _measure(hits: Any, trials: Any) -> tuple[float, float, int, float]:
        hits_, trials_ = _hits_trials(hits, trials)
        if trials_.sum() == 0:
            raise ValueError("the baseline has no trials: every query has an empty relevant set")
        return (
            float(hits_.sum()),
            float(trials_.sum()),
            int(np.count_nonzero(trials_)),
            design_effect(hits_, trials_),
        )

    @property
    def rate(self) -> float:
        return self.hits / self.trials

    def _drop(self, hits: Any, trials: Any, alpha: float, fixed: float | None) -> DriftResult:
        hits_, trials_ = _hits_trials(hits, trials)
        if trials_.sum() == 0:
            return DriftResult.insufficient(self.name, "no queries with relevant ids")
        deff, current = self.design_effect, float(hits_.sum() / trials_.sum())
        lower = binomial_lower_bound(self.hits / deff, self.trials / deff, alpha)
        threshold = self.rate - lower if fixed is None else float(fixed)
        p_value = binomial_cdf(hits_.sum() / deff, trials_.sum() / deff, self.rate)
        details = {
            f"baseline_{self.label}": self.rate,
            self.label: current,
            "queries": int(np.count_nonzero(trials_)),
            "design_effect": deff,
            **self._details(),
        }
        return DriftResult(self.name, self.rate - current, threshold, p_value, details)

    def _details(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class RecallAtK(_RateDrop):
    """Recall@K of a reference suite through the live ANN index.

    hits = relevant ids found in the top K, trials = min(K, number of relevant ids).
    """

    name: ClassVar[str] = "recall_at_k"
    label: ClassVar[str] = "recall"
    k: int

    @classmethod
    def fit(cls, hits: np.ndarray, trials: np.ndarray, k: int) -> RecallAtK:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return cls(*cls._measure(hits, trials), k=int(k))

    def score(
        self, hits: np.ndarray, trials: np.ndarray, alpha: float, fixed_threshold: float | None = None
    ) -> DriftResult:
        return self._drop(hits, trials, alpha, fixed_threshold)

    def _details(self) -> dict[str, Any]:
        return {"k": self.k}


@dataclass(frozen=True)
class IndexHealth(_RateDrop):
    """Overlap of the ANN top-K with the exact top-K, so a degrading index (bloat, stale
    lists, a too-small ef_search) shows up apart from the embeddings."""

    name: ClassVar[str] = "index_health"
    label: ClassVar[str] = "overlap"

    @classmethod
    def fit(cls, overlap_hits: np.ndarray, trials: np.ndarray) -> IndexHealth:
        return cls(*cls._measure(overlap_hits, trials))

    def score(
        self, overlap_hits: np.ndarray, trials: np.ndarray, alpha: float, fixed_threshold: float | None = None
    ) -> DriftResult:
        return self._drop(overlap_hits, trials, alpha, fixed_threshold)
