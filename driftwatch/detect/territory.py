"""New territory: rows unlike anything in the baseline.

A row is new territory when its distance to the nearest baseline row is larger than all
but a share 1 - q of held-out baseline rows' distances. Under no drift a current row is
exactly as likely to be that far as a held-out row (both are fresh draws measured against
the same frozen anchors), so the count of new-territory rows has an exact,
distribution-free null at any sample size: the radius is an order statistic of the
held-out distances, the share of the population beyond it is Beta(e + 1, h - e)
(e of h held-out rows beyond it), and the count among n current rows is beta-binomial.
The p-value is that null's mid-p (see `_mid_p`).

Cost is bounded, not O(sample x reference): the anchors are a fixed random subset of the
reference, grouped by a coarse k-means quantiser (IVF); a row is compared with the
anchors of its `probe` nearest lists only. That is an approximate nearest neighbour, and
it does not matter: the statistic is the same function at fit and at score time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.results import (
    DriftResult,
    Stateful,
    check_dim,
    check_fit,
    check_metric,
    frozen,
    kmeans,
    matrix,
    prepared_rows,
    spread_positions,
    stable_rng,
    too_few,
)

__all__ = ["NewTerritory"]

_CHUNK = 2048  # rows searched at once: bounds the prepared copy (12 MB at 1536-d) and the distance blocks


def _sq_norms(rows: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", rows, rows)


def _mid_p(null: sps.rv_discrete, count: int) -> float:
    """P(K > count) + P(K = count) / 2: a count is discrete, and at small n most cycles see
    0 or 1 new-territory rows, where P(K >= count) would sit near 1 (mean p 0.7 at n = 60);
    the mid-p has mean 0.5 under the null and alarms at close to alpha."""
    return float(min(1.0, null.sf(count) + 0.5 * null.pmf(count)))


def _critical(null: sps.rv_discrete, alpha: float) -> float:
    """The largest count that does not reject: drifted iff count > this (mid-p <= alpha)."""
    count = int(null.ppf(1.0 - alpha))  # P(K > count) <= alpha; the mid-p may reject a little lower
    while count > 0 and _mid_p(null, count) <= alpha:
        count -= 1
    while _mid_p(null, count + 1) > alpha:
        count += 1
    return float(count)


MAX_SCORED = 5000  # current rows scored at most (a random subset, the same for the same input)


@dataclass(frozen=True, eq=False)
class NewTerritory(Stateful):
    """Share of current rows farther from every baseline row than the baseline's own
    q-quantile: a new topic, or rows embedded by another model, show up here long before
    they move the centroid or the cells. `details["examples"]` are positions in the scored
    array of representative new-territory rows, to show a person what arrived."""

    name: ClassVar[str] = "new_territory"
    metric: str
    anchors: np.ndarray  # (a, d) float32 prepared reference rows, grouped by list
    list_centroids: np.ndarray  # (L, d) float32
    list_starts: np.ndarray  # (L + 1,) int64: anchors[list_starts[i]:list_starts[i+1]] are list i
    probe: int
    quantile: float
    radius: float  # distance to the nearest anchor beyond which a row is new territory
    calibration_rows: int  # h: held-out rows measured
    calibration_beyond: int  # e: of them beyond the radius

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        metric: str,
        rng: np.random.Generator,
        quantile: float = 0.99,
        anchors: int = 4096,
        probe: int = 2,
        calibration_rows: int = 20000,
    ) -> NewTerritory:
        check_metric(metric)
        ref, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref, held)
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
        if anchors < 1 or probe < 1 or calibration_rows < 30:
            raise ValueError("anchors and probe must be at least 1, calibration_rows at least 30")
        picked = np.sort(rng.choice(len(ref), size=min(anchors, len(ref)), replace=False))
        points = prepared_rows(ref, metric, picked)
        lists = max(1, round(float(np.sqrt(len(points)))))
        centres, label = kmeans(points, lists, rng, iterations=8)  # a rough quantiser is enough
        order = np.argsort(label, kind="stable")
        starts = np.searchsorted(label[order], np.arange(lists + 1))
        index = (frozen(points[order]), frozen(centres.astype(np.float32)), frozen(starts.astype(np.int64)))
        partial = cls(metric, *index, int(min(probe, lists)), float(quantile), 0.0, 0, 0)
        distances = np.sort(partial.distances(held[: min(calibration_rows, len(held))]))
        h = len(distances)
        beyond = int(np.floor((1.0 - quantile) * h))
        radius = float(distances[h - beyond - 1])
        beyond = int(np.count_nonzero(distances > radius))  # ties at the radius count as inside
        return cls(
            metric,
            partial.anchors,
            partial.list_centroids,
            partial.list_starts,
            partial.probe,
            float(quantile),
            radius,
            h,
            beyond,
        )

    def distances(self, vectors: np.ndarray, take: np.ndarray | None = None) -> np.ndarray:
        """The distance of each row (of `rows[take]`) to its nearest anchor among the probed
        lists; the rows are prepared a chunk at a time, never copied whole."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, self.anchors.shape[1], "vectors")
        index = np.arange(len(rows)) if take is None else take
        if len(index) == 0:
            return np.empty(0)
        found = [
            self._search(prepared_rows(rows, self.metric, index[start : start + _CHUNK]))
            for start in range(0, len(index), _CHUNK)
        ]
        return np.concatenate(found)

    @cached_property
    def _anchor_norms(self) -> np.ndarray:
        """Squared norms of the anchors, once per loaded baseline (4,096 x d: a pass per chunk
        otherwise)."""
        return _sq_norms(self.anchors)

    @cached_property
    def _centre_norms(self) -> np.ndarray:
        return _sq_norms(self.list_centroids)

    def _search(self, rows: np.ndarray) -> np.ndarray:
        """Squared distances to the nearest anchor of each row's `probe` nearest lists, list by
        list: each list's anchors meet all the rows that probe it in one product."""
        centres, lists = self.list_centroids, len(self.list_centroids)
        to_centre = self._centre_norms[None, :] - 2.0 * (rows @ centres.T)
        if self.probe < lists:
            nearest = np.argpartition(to_centre, self.probe - 1, axis=1)[:, : self.probe].ravel()
        else:
            nearest = np.tile(np.arange(lists), len(rows))
        owner = np.repeat(np.arange(len(rows)), min(self.probe, lists))
        order = np.argsort(nearest, kind="stable")
        bounds = np.searchsorted(nearest[order], np.arange(lists + 1))
        best = np.full(len(rows), np.inf, dtype=np.float32)
        anchor_norms = self._anchor_norms
        for lst in np.flatnonzero(np.diff(bounds)):
            start, stop = int(self.list_starts[lst]), int(self.list_starts[lst + 1])
            if start == stop:
                continue
            who = owner[order[bounds[lst] : bounds[lst + 1]]]  # distinct rows: a row probes a list once
            part = anchor_norms[start:stop][None, :] - 2.0 * (rows[who] @ self.anchors[start:stop].T)
            best[who] = np.minimum(best[who], part.min(axis=1))
        return np.sqrt(np.maximum(best + _sq_norms(rows), 0.0)).astype(np.float64)

    def _null(self, n: int) -> sps.rv_discrete:
        h, e = self.calibration_rows, self.calibration_beyond
        return sps.betabinom(n, e + 1, h - e)

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        rows = matrix(vectors, "vectors")
        scored = np.arange(len(rows))
        if len(rows) > MAX_SCORED:  # bounded cost: a 1% new topic is 50 rows of 5,000, plain to see
            scored = np.sort(stable_rng(len(rows), MAX_SCORED).permutation(len(rows))[:MAX_SCORED])
        distances = self.distances(rows, scored)
        n = len(distances)
        if few := too_few(self.name, n):
            return few
        far = np.flatnonzero(distances > self.radius)
        null = self._null(n)
        p_value = _mid_p(null, len(far))
        threshold = _critical(null, alpha) / n if fixed_threshold is None else float(fixed_threshold)
        h, e = self.calibration_rows, self.calibration_beyond
        details = {
            "rows": n,
            "new_territory_rows": len(far),
            "expected_rows": n * (e + 1) / (h + 1),
            "baseline_share": (e + 1) / (h + 1),
            "radius": self.radius,
            "quantile": self.quantile,
            "examples": [int(scored[i]) for i in spread_positions(far, distances)],
        }
        return DriftResult(self.name, len(far) / n, threshold, p_value, details)
