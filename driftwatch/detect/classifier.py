"""Classifier two-sample test: can a simple model tell the baseline's rows from today's?

Sees what moves neither the centroid nor the cells: an embedding function that turns or
stretches the space (a new model, a changed preprocessing step) under the same label.

How: rows are projected on random directions whitened on held-out rows (frozen at fit
time; see `_whitening`), and expanded with the squares and pairwise products of the top
few coordinates, which carry a rotation to first order (a turn by t changes the
covariance of coordinates i, j by about t (l_j - l_i) and leaves the variances in place).
A shrinkage LDA, closed form, is trained on a random half of the current rows against the
feature mean and covariance of held-out baseline rows (frozen at fit time), and scores the
other half of the current rows and baseline rows it never trained on: the reference rows
and the held-out rows the fit did not use (half the baseline's rows in all, at most
20,000). Its AUC there is a Mann-Whitney statistic on rows the model never saw, so under
no drift it has the Mann-Whitney null exactly (normal approximation; no permutations, no
refits). The small model (three energies, five coordinates) and the full one are combined
by the Cauchy combination (`_combined`).

Why the baseline side of the training is held-out rows, not the reference: a monitor lives
with one baseline for months, and every cycle compares against the same baseline rows. A
model trained on one half of the reference and tested on the other (as this test first
was) sees the reference's own chance deviation from its population on both sides (the
halves of a fixed set are complements), so a baseline whose reference came out unlucky
gets small p-values in every cycle and a lucky one never alarms: exact on average over
baselines, but over 20 baselines of 2,000 MiniLM rows one user's false-alarm rate at
alpha 0.05 ranged from 0 to 0.28 (a tenth of them above 0.14), and an unlucky reference
(tests/test_calibration.py) had mean p 0.34. Trained against rows no cycle is tested on,
the tested rows' luck meets only the training rows' independent one, and the share of
the AUC's variance that the fixed tested rows carry is kept small by testing against
more of them than current rows; the model also trains against a less noisy baseline side
than half a reference, which adds power.

Cost O(n d p + n f^2 + f^3) on at most 3,000 current rows (drawn before any is
projected), p <= 96 directions and f <= 2 x 64 + 276 + 2 x 32 + 3 = 471 features (the
products of the top 24 coordinates: they carry a turn of an anisotropic space, but their
count grows as the square and the covariance as its square; 32 saw a 0.15 rad turn of a
centred synthetic space a little better at twice the cost, 16 missed it).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.results import (
    BLOCK,
    MIN_SAMPLE,
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

_PCA_ROWS = 8192  # held-out rows that estimate the covariance (directions, whitening)
_SHRINK = 0.1  # ridge on the standardised features' covariance, as a share of its mean variance
_MAX_CURRENT = 3000  # current rows the test uses at most (a random subset, the same for the same input)
_REFERENCE_PER_CURRENT = 8  # reference rows tested per current row, at most all stored
_MOMENT_ROWS = 20000  # held-out rows whose feature mean and covariance are the baseline side of training
_SUMMARY = 8  # features of the small model: the three energies and the top five coordinates


def _whitening(
    rows: np.ndarray, top: int, sketch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(projections, top scales): `top + sketch` random orthonormal directions, each scaled to
    unit variance on the held-out rows.

    Random, not principal: directions fitted to these rows (PCA) make the rows they were
    fitted on look different from every other row — in-sample, the top directions hold too
    much variance and the smallest too little — and a cycle's sample of a finite table is
    full of rows the capture held out, so a fitted basis made the test fire on a table that
    had not changed. A random basis has no in-sample bias (a projection's variance is an
    average over many eigenvalues), and a turn of the space still changes the variances and
    covariances of these coordinates, which the quadratic features see."""
    dim = rows.shape[1]
    count = min(top + sketch, dim)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, count)))
    projected = rows @ basis
    spread = np.maximum(projected.std(axis=0, ddof=1), 1e-12)
    projections = (basis / spread).T
    return projections, spread[:top]


def _features(z: np.ndarray, top: int, linear: int, quadratic: int, sketch: int) -> np.ndarray:
    """Three summaries first (the log energy outside the top directions, last column of
    `z`; the whitened energy of the top directions and of the mixes of the rest), then the
    whitened top coordinates and their squares, the products z_i z_j (i < j) of the top
    `quadratic` ones, and the mixes and their squares."""
    head, mixes = z[:, :linear], z[:, top : top + sketch]
    energy = np.log(np.sum(z[:, :top] ** 2, axis=1) + 1e-12)
    rest = np.log(np.sum(z[:, top:-1] ** 2, axis=1) + 1e-12)
    pairs = quadratic * (quadratic - 1) // 2
    out = np.empty((len(z), 3 + 2 * linear + pairs + 2 * sketch), dtype=np.result_type(z, energy))
    out[:, 0], out[:, 1], out[:, 2] = z[:, -1], energy, rest
    at = 3
    for block in (head, head**2):
        out[:, at : at + linear] = block
        at += linear
    for i in range(quadratic - 1):  # z_i z_j for j > i, written in place: no (rows x pairs) temporaries
        out[:, at : at + quadratic - 1 - i] = z[:, i : i + 1] * z[:, i + 1 : quadratic]
        at += quadratic - 1 - i
    out[:, at : at + sketch], out[:, at + sketch :] = mixes, mixes**2
    return out


def _columns(top: int, quadratic: int, sketch: int, used: tuple[int, int, int]) -> np.ndarray:
    """Where the features of `_features(z, top, *used)` sit among those of the full set
    `_features(z, top, top, quadratic, sketch)`: the same columns, fewer of each kind."""
    linear, pairs_of, mixes = used
    start = 3 + 2 * top  # the pairs of the full set begin here, (i, j) in row-major order
    pairs = [
        start + i * (2 * quadratic - i - 1) // 2 + j - i - 1
        for i in range(pairs_of)
        for j in range(i + 1, pairs_of)
    ]
    start += quadratic * (quadratic - 1) // 2
    return np.r_[
        0:3, 3 : 3 + linear, 3 + top : 3 + top + linear, np.array(pairs, dtype=int),
        start : start + mixes, start + sketch : start + sketch + mixes,
    ].astype(int)  # fmt: skip


def _moments(chunks: Iterator[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, covariance, rows) of feature rows given chunk by chunk (only one chunk is held
    at a time), shifted by the first chunk's mean so the one-pass sums lose no digits;
    float32 products, float64 sums."""
    first = next(chunks)
    shift = first.mean(axis=0)
    total, outer, count = np.zeros(len(shift)), np.zeros((len(shift), len(shift))), 0
    for chunk in itertools.chain([first], chunks):
        centred = chunk - shift
        total += centred.sum(axis=0, dtype=np.float64)
        outer += centred.T @ centred
        count += len(chunk)
    mean = total / count
    covariance = (outer - count * np.outer(mean, mean)) / max(count - 1, 1)
    return mean + shift, covariance, count


def _lda_weights(train: np.ndarray, base_mean: np.ndarray, base_cov: np.ndarray) -> np.ndarray:
    """Shrinkage LDA in closed form: w = (S + r I)^-1 (mean_current - mean_baseline) on
    features standardised by the baseline's spread, S the average of the two sides'
    covariances (the current's from its training rows, at most 1,500: O(1500 f^2)). Float32
    products, a float64 solve: the weights need a few digits, not sixteen."""
    scale = np.sqrt(np.maximum(np.diag(base_cov), 0.0)) + 1e-6
    centre = train.mean(axis=0, dtype=np.float64)
    within = (train - centre.astype(np.float32)) / scale.astype(np.float32)
    cov = (within.T @ within).astype(np.float64) / max(len(within) - 1, 1)
    del within
    cov += base_cov / np.outer(scale, scale)
    cov /= 2.0
    cov[np.diag_indices_from(cov)] += _SHRINK * float(np.trace(cov)) / len(cov)
    return np.linalg.solve(cov, (centre - base_mean) / scale) / scale


def _auc_test(cur: np.ndarray, ref: np.ndarray) -> tuple[float, float, int, int]:
    """(AUC, one-sided Mann-Whitney p-value, current rows, reference rows) of the scores of
    current and reference rows the model did not train on."""
    n1, n0 = len(cur), len(ref)
    ranks = sps.rankdata(np.concatenate([cur, ref]))  # mid-ranks for ties
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0  # Mann-Whitney U of the current rows
    return u / (n1 * n0), _auc_p(u / (n1 * n0), n1, n0), n1, n0


def _digest(rows: np.ndarray) -> int:
    """A seed from the sample's first rows: the same input gets the same split (and the
    same reference rows when there are more than a cycle tests), each cycle another one."""
    return zlib.crc32(np.ascontiguousarray(rows[:64]).tobytes())


def _auc_sd(n1: int, n0: int) -> float:
    return math.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))


def _auc_p(auc: float, n1: int, n0: int) -> float:
    """Mann-Whitney's normal approximation with continuity correction, as scipy's."""
    return float(sps.norm.sf((auc - 0.5 - 0.5 / (n1 * n0)) / _auc_sd(n1, n0)))


def _cauchy(p: float) -> float:
    return math.tan((0.5 - min(max(p, 1e-300), 1.0 - 1e-16)) * math.pi)


def _combined(tests: list[tuple[float, float, int, int]], alpha: float) -> tuple[float, float, float]:
    """(AUC of the more significant model, combined p-value, the AUC that model needs to
    reject at alpha). The models' p-values are combined by the Cauchy combination (Liu
    and Xie 2020): uniform for independent or identical tests and valid in the tail at any
    dependence, where taking the smaller p would be anti-conservative and doubling it
    (Bonferroni) would push the mean p under no drift to 0.6."""
    best = min(range(len(tests)), key=lambda i: tests[i][1])
    auc, p_best, n1, n0 = tests[best]
    others = sum(_cauchy(t[1]) for i, t in enumerate(tests) if i != best)
    p_value = 0.5 - math.atan((_cauchy(p_best) + others) / len(tests)) / math.pi
    needed = len(tests) * _cauchy(alpha) - others  # the best model's Cauchy score that rejects
    p_needed = min(max(0.5 - math.atan(needed) / math.pi, 1e-300), 0.5)
    # When the other model alone rejects, any AUC above chance does: the threshold is 0.5.
    critical = 0.5 + 0.5 / (n1 * n0) + _auc_sd(n1, n0) * float(sps.norm.isf(p_needed))
    return auc, float(p_value), critical


@dataclass(frozen=True, eq=False)
class ClassifierTwoSample(Stateful):
    """AUC of a linear model telling current rows from baseline rows, tested on rows it did
    not train on: 0.5 means it cannot tell them apart; well above 0.5 means today's vectors
    differ from the baseline's in a way a model can see (often an embedding model or
    preprocessing change without a new model_version; check what was deployed)."""

    name: ClassVar[str] = "classifier_two_sample"
    metric: str
    mean: np.ndarray  # (d,) held-out mean of prepared rows
    directions: np.ndarray  # (p + s, d) float32: whitened top directions, then whitened mixes of the rest
    scales: np.ndarray  # (p,) standard deviations of the top directions
    reference: np.ndarray  # (m, p + s + 1) float32 coordinates of the rows cycles are tested against
    # (reference rows, then held-out rows the fit did not use), log residual energy last
    quadratic: int  # most top coordinates whose products are features
    base_mean: np.ndarray  # (f,) feature mean of held-out rows, the full feature set
    base_covariance: np.ndarray  # (f, f) float32 feature covariance of the same rows
    base_rows: int  # how many held-out rows those moments are from

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        held_out: np.ndarray,
        metric: str,
        rng: np.random.Generator,
        directions: int = 64,
        quadratic: int = 24,
        sketch: int = 32,
        reference_rows: int = 20000,
    ) -> ClassifierTwoSample:
        check_metric(metric)
        ref, held = matrix(reference, "reference"), matrix(held_out, "held_out")
        check_fit(ref, held)
        if not 1 <= quadratic <= directions:
            raise ValueError(f"need 1 <= quadratic <= directions, got {quadratic} and {directions}")
        # Half the baseline's rows, the reference first, are what cycles are tested against; the
        # other held-out rows fit the whitening and the moments and are never tested against
        # (a row the whitening was fitted on is no fresh row).
        compared = min(reference_rows, (len(ref) + len(held)) // 2)
        from_held = min(max(compared - len(ref), 0), len(held) - MIN_SAMPLE)
        fitting = held[: len(held) - from_held]
        pca_rows = prepared_rows(fitting[:_PCA_ROWS], metric).astype(np.float64)
        mean = pca_rows.mean(axis=0)
        top = min(directions, len(pca_rows) - 2, ref.shape[1])
        pca_rows -= mean  # in place: one float64 copy of these rows, not two
        projections, scales = _whitening(pca_rows, top, min(sketch, ref.shape[1] - top), rng)
        del pca_rows
        empty = frozen(np.zeros(0))
        partial = cls(
            metric,
            frozen(mean),
            frozen(projections.astype(np.float32)),
            frozen(scales),
            frozen(np.zeros((0, len(projections) + 1), np.float32)),
            min(quadratic, top),
            empty,
            empty,
            0,
        )
        picked = np.sort(rng.choice(len(ref), size=min(compared, len(ref)), replace=False))
        coordinates = np.concatenate(
            [partial.coordinates(ref[picked]), partial.coordinates(held[len(held) - from_held :])]
        )
        full = (partial.top, partial.top, partial.quadratic, len(projections) - partial.top)
        chunks = (_features(partial.coordinates(b), *full) for b in blocks(fitting[:_MOMENT_ROWS]))
        base_mean, base_cov, base_rows = _moments(chunks)
        fields = (partial.mean, partial.directions, partial.scales, frozen(coordinates), partial.quadratic)
        return cls(metric, *fields, frozen(base_mean), frozen(base_cov.astype(np.float32)), base_rows)

    @property
    def top(self) -> int:
        return len(self.scales)

    def coordinates(self, vectors: np.ndarray) -> np.ndarray:
        """Whitened coordinates (float32) of rows and their log residual energy, by block."""
        rows = matrix(vectors, "vectors")
        check_dim(rows, len(self.mean), "vectors")
        out = [self._whiten(prepared(b, self.metric)) for b in blocks(rows)]
        return np.concatenate(out) if out else np.empty((0, len(self.directions) + 1), np.float32)

    def _whiten(self, rows: np.ndarray) -> np.ndarray:
        centred = rows - self.mean.astype(np.float32)
        projected = centred @ self.directions.T
        top = projected[:, : self.top] * self.scales.astype(np.float32)
        residual = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", top, top)
        log_residual = np.log(np.maximum(residual, 1e-30))[:, None]
        return np.hstack([projected, log_residual]).astype(np.float32)

    def sizes(self, n: int) -> tuple[int, int, int]:
        """(top, quadratic, sketch) coordinates used for n current rows: fewer features for
        few rows, so the trained half can still estimate the direction that separates them."""
        quadratic = max(1, min(self.quadratic, int(math.sqrt(n))))
        sketch = min(len(self.directions) - self.top, n // 8)
        return max(quadratic, min(self.top, n // 8)), quadratic, sketch

    def score(self, vectors: np.ndarray, alpha: float, fixed_threshold: float | None = None) -> DriftResult:
        rows_in = matrix(vectors, "vectors")
        n = len(rows_in)
        if few := too_few(self.name, n):
            return few
        rng = stable_rng(n, len(self.reference), _digest(rows_in))  # the same split for the same input
        if n > _MAX_CURRENT:  # bounded cost (chosen before any row is looked at, so no bias)
            rows_in, n = rows_in[np.sort(rng.permutation(n)[:_MAX_CURRENT])], _MAX_CURRENT
        current = self.coordinates(rows_in)
        # Baseline rows tested: their own luck is shared by every cycle, and its weight in the
        # AUC's variance is tested_current / (m + tested_current), a seventeenth at 8n.
        m = min(len(self.reference), max(_REFERENCE_PER_CURRENT * n, 2000))
        picked = np.sort(rng.permutation(len(self.reference))[:m])
        used = self.sizes(n)
        keep = _columns(self.top, self.quadratic, len(self.directions) - self.top, used)
        features = _features(current, self.top, *used)
        order = rng.permutation(n)
        train, tested = features[order[n // 2 :]], features[order[: n // 2]]
        del features
        widths = (_SUMMARY, len(keep)) if len(keep) > _SUMMARY else (len(keep),)
        weights = [
            _lda_weights(
                train[:, :w], self.base_mean[keep[:w]], self.base_covariance[np.ix_(keep[:w], keep[:w])]
            ).astype(np.float32)
            for w in widths
        ]
        scores = np.empty((len(widths), m), np.float32)
        for start in range(0, m, BLOCK):  # reference features a block at a time: no (m x f) copy
            block = _features(self.reference[picked[start : start + BLOCK]], self.top, *used)
            for i, (w, weight) in enumerate(zip(widths, weights, strict=True)):
                scores[i, start : start + len(block)] = block[:, :w] @ weight
        tests = [
            _auc_test(tested[:, :w] @ weight, scores[i])
            for i, (w, weight) in enumerate(zip(widths, weights, strict=True))
        ]
        auc, p_value, critical = _combined(tests, alpha)
        threshold = critical if fixed_threshold is None else float(fixed_threshold)
        n1, n0 = tests[0][2], tests[0][3]
        details = {
            "rows": len(vectors),
            "tested_current": n1,
            "tested_reference": n0,
            "held_out_rows": self.base_rows,  # the rows the model trains against
            "features": len(keep),
            "directions": used[0],
            "auc_small_model": tests[0][0],
            "auc_full_model": tests[-1][0],
        }
        return DriftResult(self.name, auc, threshold, p_value, details)
