"""Drift-Adapter: map a new embedding model's query vectors into the old model's space.

After a model push without a full re-embed, queries (new model) and documents (old model)
live in different spaces and recall collapses. Rows of the same documents under both
models (the store mid-re-index, or a side table of re-embedded samples) are paired
examples of the change; a map learned from them lets the application search the old
index with mapped new-model queries until the re-embed finishes:

    vectors = driftwatch.adapter.load("adapter-docs-v1-to-v2.npz").apply(new_model_vectors)

Two maps, both closed-form:

* `procrustes` (the default): an orthogonal map (a rotation, or with a changed dimension a
  semi-orthogonal one). It keeps every angle between queries as the new model made it, has
  nothing to tune and cannot overfit, and embedding spaces learned from similar data are
  often close to a rotation of each other (why Procrustes alignment of embeddings works).
* `affine`: a ridge-regularised affine map x W + b, optionally of reduced rank, for pushes
  that also stretch or shift the space. Its ridge is chosen on a held-out split.

The math (`fit_procrustes`, `fit_affine`, `Adapter`, `load`) needs numpy and scipy only;
the I/O (`driftwatch.adapter_fit`) reads the vector store in a read-only session and the
reference suite from driftwatch's own store.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.linalg import orthogonal_procrustes

from driftwatch.pg.suite import OPERATORS

FORMAT = "driftwatch-adapter"
FORMAT_VERSION = 1
METHODS = ("procrustes", "affine")
HOLD_OUT_SHARE = 0.2  # pairs kept out of the fit to measure it (and, inside fit_affine, to pick the ridge)
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # relative to the mean eigenvalue of the new Gram matrix
Method = Literal["procrustes", "affine"]
Progress = Callable[[str], None]


# ---------------------------------------------------------------- the map


@dataclass(frozen=True, eq=False)
class Adapter:
    """y = x W + b, mapping `to_version` (new model) vectors into the `from_version` (old
    model) space: the versions name the push old -> new, as `adapter fit` does.

    With `normalise` (cosine metric) inputs are L2-normalised before the map, as they were
    when it was fitted, and outputs after it, so the map's own scale never leaks into scores.
    """

    kind: str  # procrustes | affine
    W: np.ndarray  # (new dim, old dim) float32
    b: np.ndarray  # (old dim,) float32; zeros for procrustes
    from_version: str | None  # the old model, whose index is searched
    to_version: str | None  # the new model, whose queries are mapped
    metric: str = "cosine"
    normalise: bool = True
    rank: int | None = None  # affine: rank of W when truncated
    ridge: float | None = None  # affine: relative ridge used

    def __post_init__(self) -> None:
        if self.kind not in METHODS:
            raise ValueError(f"adapter kind must be one of {', '.join(METHODS)}, not {self.kind!r}")
        if self.metric not in OPERATORS:
            raise ValueError(f"adapter metric must be one of {', '.join(OPERATORS)}, not {self.metric!r}")
        W = np.array(self.W, dtype=np.float32)  # a private, read-only copy: frozen means frozen
        b = np.array(self.b, dtype=np.float32)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"adapter needs W of shape (new dim, old dim) and b of shape (old dim,), "
                             f"got {W.shape} and {b.shape}")  # fmt: skip
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError("adapter W or b holds NaN or infinite values")
        W.setflags(write=False)
        b.setflags(write=False)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    @property
    def dim_in(self) -> int:
        """Dimension of the new model's vectors, which `apply` takes."""
        return int(self.W.shape[0])

    @property
    def dim_out(self) -> int:
        """Dimension of the old model's vectors, which `apply` returns."""
        return int(self.W.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Map new-model vectors, one (d,) or many (n, d), into the old space (float32)."""
        x = np.asarray(vectors, dtype=np.float32)
        single = x.ndim == 1
        x = x[None, :] if single else x
        if x.ndim != 2 or x.shape[1] != self.dim_in:
            raise ValueError(
                f"adapter maps {self.dim_in}-dimensional vectors (model {self.to_version}); "
                f"got an array of shape {np.shape(vectors)}"
            )
        if not np.all(np.isfinite(x)):
            rows = np.flatnonzero(~np.all(np.isfinite(x), axis=1))
            raise ValueError(f"vectors hold NaN or infinite values (row {rows[0]} and {len(rows) - 1} more)")
        if self.normalise:
            x = _unit(x)
        y = x @ self.W + self.b
        y = _unit(y) if self.normalise else y
        return (y[0] if single else y).astype(np.float32, copy=False)

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "metric": self.metric,
            "normalise": self.normalise,
            "rank": self.rank,
            "ridge": self.ridge,
            "dim_in": self.dim_in,
            "dim_out": self.dim_out,
        }

    def save(self, path: str | Path) -> Path:
        """Write one `.npz` (W, b and a JSON `meta` string: no pickles) at exactly `path`,
        atomically, so an application never loads half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, W=self.W, b=self.b, meta=np.array(json.dumps(self.metadata())))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def load(path: str | Path) -> Adapter:
    """Read an adapter written by `Adapter.save` (np.load with allow_pickle=False)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a driftwatch adapter file ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a driftwatch adapter file (a single .npy array, not an .npz)")
    with data:
        if not {"W", "b", "meta"} <= set(data.files):
            raise ValueError(f"{path}: not a driftwatch adapter file (needs arrays W, b and meta)")
        arrays = {name: data[name] for name in ("W", "b", "meta")}
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: adapter metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "kind" not in meta:
        raise ValueError(f"{path}: not a driftwatch adapter file (its metadata is not an adapter's)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: adapter format {meta['format_version']} needs a newer driftwatch")
    return Adapter(
        kind=meta["kind"],
        W=arrays["W"],
        b=arrays["b"],
        from_version=meta.get("from_version"),
        to_version=meta.get("to_version"),
        metric=meta.get("metric", "cosine"),
        normalise=bool(meta.get("normalise", True)),
        rank=meta.get("rank"),
        ridge=meta.get("ridge"),
    )


# ---------------------------------------------------------------- fitting


def minimum_pairs(method: str, dim_new: int) -> int:
    """Fewest pairs a method is well-posed with.

    Procrustes: more pairs than the new model has dimensions, or the cross-covariance is
    rank-deficient and part of the rotation is arbitrary. Affine: twice the coefficients
    per output dimension (d_new + 1), so a fifth can be held out to choose the ridge and
    the rest still over-determine the regression.
    """
    if method == "procrustes":
        return dim_new + 1
    if method == "affine":
        return 2 * (dim_new + 1)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def _pairs(new: np.ndarray, old: np.ndarray, metric: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies, L2-normalised for cosine (only direction matters there)."""
    if metric not in OPERATORS:
        raise ValueError(f"metric must be one of {', '.join(OPERATORS)}, not {metric!r}")
    new = np.asarray(new, dtype=np.float64)
    old = np.asarray(old, dtype=np.float64)
    if new.ndim != 2 or old.ndim != 2:
        raise ValueError(f"pairs must be 2-D arrays (rows x dimensions), got {new.shape} and {old.shape}")
    if len(new) != len(old):
        raise ValueError(
            f"mismatched pairs: {len(new)} new vectors but {len(old)} old ones; "
            "row i of each must be the same document"
        )
    for name, rows in (("new", new), ("old", old)):
        if not np.all(np.isfinite(rows)):
            bad = np.flatnonzero(~np.all(np.isfinite(rows), axis=1))
            raise ValueError(f"{name} vectors hold NaN or infinite values (row {bad[0]}, {len(bad)} rows)")
        if metric == "cosine" and np.any(~np.any(rows, axis=1)):
            bad = np.flatnonzero(~np.any(rows, axis=1))
            raise ValueError(f"{name} vectors include all-zero rows (row {bad[0]}): no direction to map")
    needed = minimum_pairs(method, new.shape[1])
    if len(new) < needed:
        why = (
            "more pairs than the new model's dimensions, or the rotation is not determined"
            if method == "procrustes"
            else "2 x (new dimensions + 1): a fifth picks the ridge, the rest over-determine the fit"
        )
        raise ValueError(
            f"too few pairs for {method}: {len(new)} pairs of {new.shape[1]}-d new vectors; "
            f"needs at least {needed} ({why})"
        )
    if metric == "cosine":
        new, old = _unit(new), _unit(old)
    return new, old


def fit_procrustes(
    new: np.ndarray,
    old: np.ndarray,
    *,
    metric: str = "cosine",
    from_version: str | None = None,
    to_version: str | None = None,
) -> Adapter:
    """The orthogonal W minimising ||new W - old|| (rows of a pair aligned).

    No centring: cosine scores are invariant to rotations but not to shifts, so a pure
    rotation of the normalised rows keeps the new model's geometry intact and maps it
    onto the old one; a shift is what the affine method is for. With equal dimensions
    this is scipy's orthogonal Procrustes; when the push changed the dimension, W is the
    semi-orthogonal (d_new, d_old) factor U V^T of the SVD of new^T old (orthonormal
    columns when d_new >= d_old, orthonormal rows otherwise), the same solution with the
    constraint that fits the shape.
    """
    x, y = _pairs(new, old, metric, "procrustes")
    if x.shape[1] == y.shape[1]:
        W, _ = orthogonal_procrustes(x, y)
    else:
        u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
        W = u @ vt
    return Adapter(
        kind="procrustes",
        W=W,
        b=np.zeros(y.shape[1]),
        from_version=from_version,
        to_version=to_version,
        metric=metric,
        normalise=metric == "cosine",
    )


def fit_affine(
    new: np.ndarray,
    old: np.ndarray,
    rank: int | None = None,
    ridge: float | None = None,
    *,
    metric: str = "cosine",
    from_version: str | None = None,
    to_version: str | None = None,
    rng: np.random.Generator | None = None,
) -> Adapter:
    """Ridge regression old ~ new W + b, in closed form, optionally of reduced rank.

    `ridge` is relative (to the mean eigenvalue of the centred new Gram matrix), so one
    grid serves any scale; when None it is chosen from RIDGE_GRID on a held-out fifth of
    the pairs (by mean cosine for cosine, squared error otherwise) and the map refitted on
    all of them. `rank` keeps the best rank-r map (reduced-rank regression: W projected on
    the top r principal directions of the fitted values, the least-squares optimum; a
    plain truncated SVD of W would weigh directions the data never uses).
    """
    x, y = _pairs(new, old, metric, "affine")
    if rank is not None and not 1 <= rank <= min(x.shape[1], y.shape[1]):
        raise ValueError(f"rank must be between 1 and {min(x.shape[1], y.shape[1])}, not {rank}")
    if ridge is not None and not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a non-negative number, not {ridge}")
    if ridge is None:
        rng = rng or np.random.default_rng(0)
        order = rng.permutation(len(x))
        held = held_out_size(len(x))
        test, train = order[:held], order[held:]
        solve = _ridge_solver(x[train], y[train])
        scores = [_agreement(_map(x[test], *solve(r, rank), metric), y[test], metric) for r in RIDGE_GRID]
        ridge = RIDGE_GRID[int(np.argmax(scores))]
    W, b = _ridge_solver(x, y)(ridge, rank)
    return Adapter(
        kind="affine",
        W=W,
        b=b,
        from_version=from_version,
        to_version=to_version,
        metric=metric,
        normalise=metric == "cosine",
        rank=rank,
        ridge=float(ridge),
    )


def _ridge_solver(
    x: np.ndarray, y: np.ndarray
) -> Callable[[float, int | None], tuple[np.ndarray, np.ndarray]]:
    """One eigendecomposition of the Gram matrix, then W(ridge, rank) for any ridge cheaply."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    evals, evecs = np.linalg.eigh(gram)
    evals = np.clip(evals, 0, None)
    projected = evecs.T @ (xc.T @ yc)
    scale = max(float(evals.mean()), 1e-12)

    def solve(ridge: float, rank: int | None) -> tuple[np.ndarray, np.ndarray]:
        W = evecs @ (projected / (evals + ridge * scale + 1e-12 * scale)[:, None])
        if rank is not None and rank < min(W.shape):
            # Fitted values F = xc W; their top-r right singular vectors are the top-r
            # eigenvectors of F^T F = W^T gram W, without forming F (n x d_old).
            _, directions = np.linalg.eigh(W.T @ gram @ W)
            top = directions[:, ::-1][:, :rank]
            W = W @ top @ top.T
        return W, my - mx @ W

    return solve


def _map(x: np.ndarray, W: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    y = x @ W + b
    return _unit(y) if metric == "cosine" else y


def _agreement(mapped: np.ndarray, old: np.ndarray, metric: str) -> float:
    """Higher is better: mean cosine for cosine, negative mean squared error otherwise."""
    if metric == "cosine":
        return mean_cosine(mapped, old)
    return -float(np.mean(np.sum((mapped - old) ** 2, axis=1)))


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine between row i of `a` and row i of `b` (the pairwise fit quality)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.mean(np.sum(_unit(a) * _unit(b), axis=1)))


def fit(
    method: str,
    new: np.ndarray,
    old: np.ndarray,
    *,
    rank: int | None = None,
    metric: str = "cosine",
    from_version: str | None = None,
    to_version: str | None = None,
    rng: np.random.Generator | None = None,
) -> Adapter:
    """`fit_procrustes` or `fit_affine` by name."""
    if method == "procrustes":
        if rank is not None:
            raise ValueError("rank applies to the affine method only; procrustes keeps every dimension")
        return fit_procrustes(new, old, metric=metric, from_version=from_version, to_version=to_version)
    if method == "affine":
        return fit_affine(
            new, old, rank, metric=metric, from_version=from_version, to_version=to_version, rng=rng
        )
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def held_out_size(pairs: int) -> int:
    """Pairs kept out of a fit to measure it."""
    return max(1, round(HOLD_OUT_SHARE * pairs))


__all__ = [
    "METHODS",
    "Adapter",
    "fit",
    "fit_affine",
    "fit_procrustes",
    "held_out_size",
    "load",
    "mean_cosine",
    "minimum_pairs",
]
