"""Rule-based checks: the rows no statistic should see (vector sanity) and model-version
changes (new versions, sentinel rows whose stored vector changed). They share
`DriftResult` with the statistical detectors but need no null distribution: a bad row or
a new model is drift by definition, weighed against the baseline's own rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from driftwatch.detect.results import DriftResult, Stateful, blocks
from driftwatch.detect.stats import binomial_upper_bound

__all__ = ["VectorSanity", "model_version_result", "sanitize"]

SENTINEL_COSINE = 0.999  # float32 round trips stay far above this; another model lands far below
Vectors = np.ndarray | Sequence[Any]


def _screen(
    vectors: Vectors, dim: int | None, band: tuple[float, float] | None
) -> tuple[np.ndarray, dict[str, int]]:
    """Clean rows and fault counts; each bad row counts once, first of: wrong_dim, nan (NaN,
    inf or NULL), zero, off_norm (only with a norm band)."""
    if isinstance(vectors, np.ndarray) and vectors.dtype != object:
        if vectors.ndim != 2:
            raise ValueError("vectors must be a 2-D array or a list of 1-D arrays")
        dim = vectors.shape[1] if dim is None else int(dim)
        total, missing = len(vectors), 0
        rows = (
            vectors.astype(np.float32, copy=False)
            if vectors.shape[1] == dim
            else np.empty((0, dim), np.float32)
        )
    else:
        items = [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors]
        lengths = Counter(a.size for a in items if a is not None and a.ndim == 1)
        if dim is None:
            dim = lengths.most_common(1)[0][0] if lengths else 0
        total, missing = len(items), sum(a is None for a in items)
        fitting = [a for a in items if a is not None and a.ndim == 1 and a.size == dim]
        rows = np.stack(fitting) if fitting else np.empty((0, dim), np.float32)
    finite = np.all(np.isfinite(rows), axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are already excluded
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))  # float32: ample for a norm band
    zero = finite & (norms == 0.0)
    off = finite & ~zero & ((norms < band[0]) | (norms > band[1])) if band else np.zeros_like(finite)
    counts = {
        "nan": missing + int(np.count_nonzero(~finite)),
        "zero": int(np.count_nonzero(zero)),
        "off_norm": int(np.count_nonzero(off)),
        "wrong_dim": total - missing - len(rows),
        "total": total,
    }
    keep = finite & ~zero & ~off
    return (rows if keep.all() else rows[keep]), counts


def sanitize(vectors: Vectors, expected_dim: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Clean rows (float32, 2-D) and fault counts, before any baseline exists (so no norm band).

    Without `expected_dim` a 2-D array keeps its width and a list takes its most common length.
    """
    return _screen(vectors, expected_dim, None)


@dataclass(frozen=True)
class VectorSanity(Stateful):
    """Rows no statistic should see: NaN/inf or NULL, all-zero, off the baseline's norm band,
    or of the wrong dimension. Value is the bad fraction; the threshold is the baseline's
    upper confidence bound on it."""

    name: ClassVar[str] = "vector_sanity"
    expected_dim: int
    norm_low: float
    norm_high: float
    baseline_bad: int
    baseline_rows: int

    @classmethod
    def fit(cls, reference: Vectors, expected_dim: int) -> VectorSanity:
        """The band [q0.001 * 0.9, q0.999 * 1.1] of reference norms: ~[0.9, 1.1] for unit vectors,
        wide enough for float32 rounding, tight enough to catch unnormalised writes."""
        if expected_dim < 1:
            raise ValueError(f"expected_dim must be at least 1, got {expected_dim}")
        if not isinstance(reference, np.ndarray):
            reference = list(reference)  # screened twice below
        clean, _ = sanitize(reference, expected_dim)
        if len(clean) == 0:
            raise ValueError("the reference has no usable vectors")
        norms = np.concatenate([np.linalg.norm(b.astype(np.float64), axis=1) for b in blocks(clean)])
        low, high = float(np.quantile(norms, 0.001) * 0.9), float(np.quantile(norms, 0.999) * 1.1)
        kept, counts = _screen(reference, expected_dim, (low, high))
        return cls(int(expected_dim), low, high, counts["total"] - len(kept), counts["total"])

    def check(
        self, vectors: Vectors, alpha: float, fixed_threshold: float | None = None
    ) -> tuple[np.ndarray, DriftResult]:
        clean, counts = _screen(vectors, self.expected_dim, (self.norm_low, self.norm_high))
        if counts["total"] == 0:
            return clean, DriftResult.insufficient(self.name, "no vectors to check")
        bad = counts["total"] - len(clean)
        upper = binomial_upper_bound(self.baseline_bad, self.baseline_rows, alpha)
        threshold = upper if fixed_threshold is None else float(fixed_threshold)
        # One-sided Fisher exact test: is the current bad rate higher than the baseline's?
        table = [[bad, len(clean)], [self.baseline_bad, self.baseline_rows - self.baseline_bad]]
        p_value = float(sps.fisher_exact(table, alternative="greater").pvalue)
        details: dict[str, Any] = {
            **counts,
            "baseline_bad": self.baseline_bad,
            "baseline_rows": self.baseline_rows,
            "norm_band": [self.norm_low, self.norm_high],
        }
        return clean, DriftResult(self.name, bad / counts["total"], threshold, p_value, details)


def _by_count(counts: Mapping[str | None, int]) -> dict[str, int]:
    """JSON objects need string keys: a NULL version is reported as "null"."""
    ordered = sorted(counts.items(), key=lambda vc: -vc[1])
    return {"null" if v is None else str(v): int(c) for v, c in ordered}


def _share(counts: Mapping[str | None, int], versions: set[str | None]) -> float:
    total = sum(counts.values())
    return sum(c for v, c in counts.items() if v in versions) / total if total else 0.0


def model_version_result(
    baseline_versions: Sequence[str | None],
    sample_counts: Mapping[str | None, int],
    querylog_counts: Mapping[str | None, int],
    sentinel_cosines: np.ndarray | None,
    dims: Mapping[int, int] | None = None,
    baseline_dim: int | None = None,
) -> DriftResult:
    """A model push is not a statistic: any row or query on a version the baseline never saw,
    any sampled row of another dimension than the baseline's (`dims`: rows per dimension, from
    an untyped `vector` column), or any sentinel row whose stored vector changed under the
    same id, is drift (threshold 0).

    `baseline_versions` may list one version per baseline row or the distinct versions most
    common first; either way the most frequent (then the first) is the dominant one. A NaN
    sentinel cosine counts as changed.
    """
    name = "model_version"
    cosines = np.array([], dtype=np.float64) if sentinel_cosines is None else np.ravel(sentinel_cosines)
    sample_total = sum(sample_counts.values())
    if not sample_total and not sum(querylog_counts.values()) and cosines.size == 0:
        return DriftResult.insufficient(name, "no rows, queries or sentinels to check")
    seen = {v for counts in (sample_counts, querylog_counts) for v, c in counts.items() if c > 0}
    new = sorted(seen - set(baseline_versions), key=lambda v: "" if v is None else str(v))
    dominant = Counter(baseline_versions).most_common(1)[0][0] if baseline_versions else None
    mixed = sum(c for v, c in sample_counts.items() if v != dominant) / sample_total if sample_total else 0.0
    changed = int(np.count_nonzero(~(cosines >= SENTINEL_COSINE)))
    dims = {int(d): int(c) for d, c in (dims or {}).items() if c > 0}
    new_dims = sorted(d for d in dims if baseline_dim and d != baseline_dim)
    dims_total = sum(dims.values())
    new_dim_share = sum(dims[d] for d in new_dims) / dims_total if dims_total else 0.0
    value = max(
        _share(sample_counts, set(new)),
        _share(querylog_counts, set(new)),
        changed / cosines.size if cosines.size else 0.0,
        new_dim_share,
    )
    details = {
        "baseline_versions": list(dict.fromkeys(baseline_versions)),
        "versions": _by_count(sample_counts),
        "querylog_versions": _by_count(querylog_counts),
        "new_versions": new,
        "mixed_fraction": float(mixed),
        "sentinels_checked": int(cosines.size),
        "sentinels_changed": changed,
        "baseline_dim": baseline_dim,
        "dims": {str(d): c for d, c in sorted(dims.items(), key=lambda dc: -dc[1])},
        "new_dims": new_dims,
        "new_dim_fraction": float(new_dim_share),
    }
    return DriftResult(name, float(value), 0.0, None, details)
