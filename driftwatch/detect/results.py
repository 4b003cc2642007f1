"""What every detector shares: the `DriftResult` a cycle reports, persistence of a frozen
detector (`Stateful`), and the input checks and block-wise helpers that keep a large
sample from being copied.

Memory rule for fitting: a baseline may hold 20k reference rows and 100k held-out rows
of 1,536 floats; nothing here makes a second full-size copy of either (rows are read in
blocks of `BLOCK`, upcast or normalised per block).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

import numpy as np

from driftwatch.detect.stats import NullModel

__all__ = [
    "BLOCK",
    "METRICS",
    "MIN_SAMPLE",
    "DriftResult",
    "Stateful",
    "blocks",
    "check_dim",
    "check_fit",
    "check_metric",
    "frozen",
    "judge",
    "kmeans",
    "matrix",
    "prepared",
    "prepared_mean",
    "prepared_rows",
    "spread_positions",
    "stable_rng",
    "too_few",
]

MIN_SAMPLE = 30  # below this the statistics are mostly noise and the nulls' asymptotics fail
METRICS = ("cosine", "l2", "inner_product")
BLOCK = 4096


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


def frozen(values: Any) -> np.ndarray:
    """A read-only copy that keeps its dtype (float32 anchors stay float32, ids stay strings),
    so a detector restored from its state computes bit for bit as the fitted one."""
    array = np.array(values)
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

    def null_summary(self, alpha: float, n: int | None = None) -> tuple[float, float, float] | None:
        """(mean, sd, threshold at alpha) of the no-drift value at n (by default the size the
        detector was calibrated for); None for a detector that is not a calibrated statistic."""
        return None

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], summary: Mapping[str, Any]) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in arrays:
                values[f.name] = frozen(arrays[f.name])
            elif f.name == "null":
                values[f.name] = NullModel.from_dict(summary[f.name])
            else:
                values[f.name] = summary[f.name]
        return cls(**values)


def matrix(values: Any, name: str) -> np.ndarray:
    """A 2-D float array, as given when it already is one (no upcast copy of a big sample);
    finiteness is checked block by block."""
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        array = array.astype(np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of row vectors")
    for block in blocks(array):
        if not np.all(np.isfinite(block)):
            raise ValueError(f"{name} contains NaN or inf; run VectorSanity.check first")
    return array


def blocks(rows: np.ndarray, size: int = BLOCK) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def prepared(block: np.ndarray, metric: str) -> np.ndarray:
    """One block as float32, unit rows for cosine (zero rows stay zero)."""
    rows = np.asarray(block, dtype=np.float32)
    if metric != "cosine":
        return rows
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return rows * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]


def prepared_mean(rows: np.ndarray, metric: str) -> np.ndarray:
    """Mean of the prepared rows, float64 sums across float32 blocks. For cosine a block's sum
    of unit rows is its inverse norms times the block (one matrix-vector product): no
    normalised copy is written, which halves the pass."""
    total = np.zeros(rows.shape[1])
    for block in blocks(rows):
        if metric != "cosine":
            total += block.sum(axis=0, dtype=np.float64)
            continue
        part = np.asarray(block, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        total += inverse @ part
    return total / max(len(rows), 1)


def prepared_rows(rows: np.ndarray, metric: str, take: np.ndarray | None = None) -> np.ndarray:
    """`rows[take]` prepared (float32, unit rows for cosine) into one new array, block by block:
    the selected rows are copied once, never gathered first and concatenated after."""
    if take is not None and take.dtype == bool:
        take = np.flatnonzero(take)
    count = len(rows) if take is None else len(take)
    out = np.empty((count, rows.shape[1]), dtype=np.float32)
    for start in range(0, count, BLOCK):
        stop = min(start + BLOCK, count)
        out[start:stop] = prepared(rows[start:stop] if take is None else rows[take[start:stop]], metric)
    return out


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def check_dim(rows: np.ndarray, dim: int, name: str) -> None:
    if rows.shape[1] != dim:
        raise ValueError(f"{name} have dimension {rows.shape[1]}, the baseline has {dim}")


def check_fit(reference: np.ndarray, held_out: np.ndarray, n: int = 1, replicates: int = 20) -> None:
    if len(reference) < MIN_SAMPLE or len(held_out) < MIN_SAMPLE:
        raise ValueError(f"reference and held_out need at least {MIN_SAMPLE} rows each")
    check_dim(held_out, reference.shape[1], "held_out rows")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if replicates < 20:
        raise ValueError(f"replicates must be at least 20, got {replicates}")


def too_few(name: str, rows: int, what: str = "rows") -> DriftResult | None:
    if rows < MIN_SAMPLE:
        return DriftResult.insufficient(name, f"{rows} {what}, need at least {MIN_SAMPLE}")
    return None


def stable_rng(*keys: int) -> np.random.Generator:
    """A null computed at score time must come out the same every time for the same inputs."""
    return np.random.default_rng([int(k) for k in keys])


def judge(null: NullModel, value: float, alpha: float, fixed: float | None) -> tuple[float, float]:
    return (null.threshold(alpha) if fixed is None else float(fixed)), null.p_value(value)


def spread_positions(positions: np.ndarray, order_by: np.ndarray, count: int = 20) -> list[int]:
    """Up to `count` of `positions`, evenly spread over their ranking by `order_by`
    (largest first): representative rows, not only the most extreme ones."""
    if len(positions) == 0:
        return []
    ranked = positions[np.argsort(-order_by[positions], kind="stable")]
    picks = np.unique(np.linspace(0, len(ranked) - 1, min(count, len(ranked))).round().astype(int))
    return [int(i) for i in ranked[picks]]


def _nearest_centre(
    points: np.ndarray, centres: np.ndarray, norms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(label, squared distance) of each point's nearest centre, by one matrix product."""
    squared = np.einsum("ij,ij->i", centres, centres)[None, :] - 2.0 * (points @ centres.T)
    label = np.argmin(squared, axis=1)
    return label, np.maximum(squared[np.arange(len(points)), label] + norms, 0.0)


def kmeans(
    points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding and Lloyd iterations in BLAS (scipy's kmeans2 seeds through
    cdist and took 25 s on 20k x 1,536 rows): (centres, label of each point). Empty
    clusters keep their centre."""
    k = min(k, len(points))
    norms = np.einsum("ij,ij->i", points, points)
    centres = np.empty((k, points.shape[1]), dtype=points.dtype)
    centres[0] = points[rng.integers(len(points))]
    nearest = np.maximum(norms - 2.0 * (points @ centres[0]) + centres[0] @ centres[0], 0.0)
    for c in range(1, k):
        total = float(nearest.sum())
        pick = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres[c] = points[pick]
        to_new = norms - 2.0 * (points @ centres[c]) + centres[c] @ centres[c]
        nearest = np.minimum(nearest, np.maximum(to_new, 0.0))
    for _ in range(iterations):
        label, _ = _nearest_centre(points, centres, norms)
        members = np.zeros((len(points), k), dtype=points.dtype)
        members[np.arange(len(points)), label] = 1.0
        counts = members.sum(axis=0)
        filled = counts > 0
        centres[filled] = (members.T @ points)[filled] / counts[filled, None]
    return centres, _nearest_centre(points, centres, norms)[0]
