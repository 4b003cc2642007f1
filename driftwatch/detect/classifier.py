"""Classifier two-sample test: can a simple model tell the baseline's rows from today's?

Sees what moves neither the centroid nor the cells: an embedding function that turns or
stretches the space (a new model, a changed preprocessing step) under the same label.

How: rows are projected on the baseline's top principal directions (frozen at fit time,
fitted on held-out rows so the stored reference rows are as fresh to them as current
rows), whitened, and expanded with the pairwise products of the top few coordinates,
which carry a rotation to first order (a turn by t changes the covariance of principal
coordinates i, j by about t (l_j - l_i) and leaves the variances in place). A shrinkage
LDA, closed form, is trained on a random half of the reference and current rows and
scores the other half. Its AUC there is a Mann-Whitney statistic on rows the model never
saw, so under no drift it has the Mann-Whitney null exactly (normal approximation; no
permutations, no refits). Cost O(n d p + n f^2 + f^3) with p <= 64 directions and
f <= 64 + 300 features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

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
    matrix,
    prepared,
    prepared_rows,
    stable_rng,
    too_few,
)

__all__ = ["ClassifierTwoSample"]

_PCA_ROWS = 4096  # held-out rows that place the principal directions
_SHRINK = 0.1  # ridge on the standardised features' covariance, as a share of its mean variance


def _principal(rows: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Top `count` principal directions (count x d) and their standard deviations, by a
    randomised range finder with two power iterations: O(r d count), no d x d matrix."""
    probe = rows @ rng.standard_normal((rows.shape[1], count + 10))
    for _ in range(2):
        probe, _ = np.linalg.qr(probe)
        probe = rows @ (rows.T @ probe)
    basis, _ = np.linalg.qr(probe)
    _, singular, vt = np.linalg.svd(basis.T @ rows, full_matrices=False)
    return vt[:count], singular[:count] / math.sqrt(len(rows) - 1)


def _features(z: np.ndarray, linear: int, quadratic: int) -> np.ndarray:
    """Whitened coordinates, their squares, the products z_i z_j (i < j) of the top
    `quadratic` ones, and the log energy outside the principal directions (last column of
    `z`): a turn of the space leaks variance from the top directions into the rest."""
    top = z[:, :quadratic]
    i, j = np.triu_indices(quadratic, k=1)
    return np.hstack([z[:, :linear], z[:, :linear] ** 2, top[:, i] * top[:, j], z[:, -1:]])


def _lda_scores(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Shrinkage LDA in closed form: w = (S + r I)^-1 (mean_1 - mean_0) on standardised
    features, S the pooled within-class covariance."""
    centre, scale = train.mean(axis=0), train.std(axis=0) + 1e-12
    x = (train - centre) / scale
    means = [x[labels == c].mean(axis=0) for c in (0, 1)]
    within = np.vstack([x[labels == c] - means[c] for c in (0, 1)])
    cov = within.T @ within / max(len(x) - 2, 1)
    cov[np.diag_indices_from(cov)] += _SHRINK * float(np.trace(cov)) / len(cov)
    weights = np.linalg.solve(cov, means[1] - means[0])
    return ((test - centre) / scale) @ weights


@dataclass(frozen=True, eq=False)
class ClassifierTwoSample(Stateful):
    """AUC of a linear model telling current rows from baseline rows, tested on rows it did
    not train on: 0.5 means it cannot tell them apart; well above 0.5 means today's vectors
    differ from the baseline's in a way a model can see (often an embedding model or
    preprocessing change without a new model_version; check what was deployed)."""

    name: ClassVar[str] = "classifier_two_sample"
    metric: str
    mean: np.ndarray  # (d,) held-out mean of prepared rows
    directions: np.ndarray  # (p, d) float32 principal directions
    scales: np.ndarray  # (p,) their standard deviations
    reference: np.ndarray  # (m, p + 1) float32 whitened coordinates and log residual energy
    quadratic: int  # most top coordinates whose products are features

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        metric: str,
        rng: np.random.Generator,
        directions: int = 64,
        quadratic: int = 24,
        reference_rows: int = 20000,
    ) -> ClassifierTwoSample:
        check_metric(metric)
        ref, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref, held)
        if not 1 <= quadratic <= directions:
            raise ValueError(f"need 1 <= quadratic <= directions, got {quadratic} and {directions}")
        pca_rows = prepared_rows(held[:_PCA_ROWS], metric).astype(np.float64)
        mean = pca_rows.mean(axis=0)
        count = min(directions, len(pca_rows) - 2, ref.shape[1])
        basis, scales = _principal(pca_rows - mean, count, rng)
        scales = np.maximum(scales, 1e-12 * max(float(scales[0]), 1e-300))
        partial = cls(
            metric,
            frozen(mean),
            frozen(basis.astype(np.float32)),
            frozen(scales),
            frozen(np.zeros((0, count + 1), np.float32)),
            min(quadratic, count),
        )
        picked = np.sort(rng.choice(len(ref), size=min(reference_rows, len(ref)), replace=False))
        coordinates = partial.coordinates(ref[picked])
        fields = (partial.mean, partial.directions, partial.scales, frozen(coordinates), partial.quadratic)
        return cls(metric, *fields)

    def coordinates(self, vectors: np.ndarray) -> np.ndarray:
        """Whitened principal coordinates (float32) of rows, block by block."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, len(self.mean), "vectors")
        out = [self._whiten(prepared(b, self.metric)) for b in blocks(rows)]
        return np.concatenate(out) if out else np.empty((0, len(self.scales) + 1), np.float32)

    def _whiten(self, rows: np.ndarray) -> np.ndarray:
        centred = rows - self.mean.astype(np.float32)
        projected = centred @ self.directions.T
        residual = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", projected, projected)
        log_residual = np.log(np.maximum(residual, 1e-30))[:, None]
        return np.hstack([projected / self.scales.astype(np.float32), log_residual]).astype(np.float32)

    def sizes(self, n: int) -> tuple[int, int]:
        """(linear, quadratic) coordinates used for n current rows: fewer features for few
        rows, so the trained half can still estimate the direction that separates them."""
        quadratic = max(1, min(self.quadratic, int(math.sqrt(n / 2))))
        return max(quadratic, min(len(self.scales), n // 8)), quadratic

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        current = self.coordinates(vectors)
        n = len(current)
        if few := too_few(self.name, n):
            return few
        rng = stable_rng(n, len(self.reference))  # the same split every time for the same input
        m = min(len(self.reference), max(4 * n, 2000))  # more reference rows than 4n barely help
        reference = self.reference[np.sort(rng.permutation(len(self.reference))[:m])]
        linear, quadratic = self.sizes(n)
        rows = _features(np.vstack([reference, current]).astype(np.float64), linear, quadratic)
        labels = np.r_[np.zeros(m, int), np.ones(n, int)]
        test = np.zeros(m + n, bool)
        test[rng.permutation(m)[: m // 2]] = True
        test[m + rng.permutation(n)[: n // 2]] = True
        scores = _lda_scores(rows[~test], labels[~test], rows[test])
        cur, ref = scores[labels[test] == 1], scores[labels[test] == 0]
        n1, n0 = len(cur), len(ref)
        u = float(sps.mannwhitneyu(cur, ref, alternative="greater", method="asymptotic").statistic)
        sd = math.sqrt(n1 * n0 * (n1 + n0 + 1) / 12.0)
        z = (u - n1 * n0 / 2.0 - 0.5) / sd  # continuity-corrected, as scipy's asymptotic p-value
        p_value = float(sps.norm.sf(z))
        critical = (n1 * n0 / 2.0 + 0.5 + sd * sps.norm.isf(alpha)) / (n1 * n0)
        threshold = critical if fixed_threshold is None else float(fixed_threshold)
        details = {
            "rows": n,
            "tested_current": n1,
            "tested_reference": n0,
            "features": int(rows.shape[1]),
            "directions": linear,
        }
        return DriftResult(self.name, u / (n1 * n0), threshold, p_value, details)
