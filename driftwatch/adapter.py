"""Drift-Adapter: map a new embedding model's query vectors into the old model's space.

After a model push without a full re-embed, queries (new model) and documents (old model)
live in different spaces and recall collapses. Rows of the same documents under both
models (the store mid-re-index, or a side table of re-embedded samples) are paired
examples of the change; a map learned from them lets the application search the old
index with mapped new-model queries until the re-embed finishes:

    vectors = driftwatch.adapter.load("adapter-docs-v1-to-v2.npz").apply(new_model_vectors)

Every map works on centred vectors: y = (x - mean_new) W + b [+ relu(z W1 + b1) W2], with
b the old model's mean. Two unrelated models each put their vectors in a narrow cone around
their own mean; a map of uncentred vectors spends itself on moving one cone onto the other.

* `procrustes`: a scaled orthogonal map of the centred vectors (a rotation, or with a changed
  dimension a semi-orthogonal one). Nothing to tune, cannot overfit.
* `affine`: a ridge-regularised linear map of the centred vectors, optionally of reduced
  rank, for pushes that also stretch the space. Its ridge is chosen on held-out pairs by
  retrieval (`retrieval_scores`), not by cosine to the partner.
* `mlp`: the affine map fine-tuned together with a one-hidden-layer residual network by a
  contrastive loss over the pairs (driftwatch.adapter_train, numpy only): what recall@10
  measures is whether a query lands nearer its own document than the others, and that is
  what the loss rewards.
* `auto` (the default): fits the three on most of the pairs and keeps the one that retrieves
  the rest best, preferring the simpler map unless the richer one is clearly better.

The math (`fit_procrustes`, `fit_affine`, `fit`, `Adapter`, `load`) needs numpy and scipy only;
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

from driftwatch.pg.suite import OPERATORS

FORMAT = "driftwatch-adapter"
FORMAT_VERSION = 2  # 2: mean_new and the residual MLP's arrays; version 1 files still load
KINDS = ("procrustes", "affine", "mlp")  # what a fitted map is
METHODS = (*KINDS, "auto")  # what `fit` accepts
HOLD_OUT_SHARE = 0.2  # pairs kept out of the fit to measure it (and, inside fit_affine, to pick the ridge)
MAX_JUDGED = 2000  # held-out queries a map is judged on (enough for a standard error of ~0.005)
MAX_CANDIDATES = 5000  # old vectors they are ranked among: bounds judging cost at large max_pairs
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # relative to the mean eigenvalue of the new Gram matrix
Method = Literal["procrustes", "affine", "mlp", "auto"]
Progress = Callable[[str], None]


# ---------------------------------------------------------------- the map


@dataclass(frozen=True, eq=False)
class Adapter:
    """y = z W + b (+ relu(z W1 + b1) W2 for `mlp`) with z = x - mean_new, mapping
    `to_version` (new model) vectors into the `from_version` (old model) space: the versions
    name the push old -> new, as `adapter fit` does.

    With `normalise` (cosine metric) inputs are L2-normalised before the map, as they were
    when it was fitted, and outputs after it, so the map's own scale never leaks into scores.
    """

    kind: str  # procrustes | affine | mlp
    W: np.ndarray  # (new dim, old dim) float32
    b: np.ndarray  # (old dim,) float32: the old model's mean (plus what the fit moved)
    from_version: str | None  # the old model, whose index is searched
    to_version: str | None  # the new model, whose queries are mapped
    metric: str = "cosine"
    normalise: bool = True
    rank: int | None = None  # affine: rank of W when truncated
    ridge: float | None = None  # affine, mlp: relative ridge of the linear part
    mean_new: np.ndarray | None = None  # (new dim,): subtracted first; None = zeros (format 1)
    mlp: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # W1 (new, h), b1 (h,), W2 (h, old)
    selection: dict[str, float] | None = None  # auto: each map's held-out mean reciprocal rank

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"adapter kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.metric not in OPERATORS:
            raise ValueError(f"adapter metric must be one of {', '.join(OPERATORS)}, not {self.metric!r}")
        W = np.array(self.W, dtype=np.float32)  # a private, read-only copy: frozen means frozen
        b = np.array(self.b, dtype=np.float32)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError(f"adapter needs W of shape (new dim, old dim) and b of shape (old dim,), "
                             f"got {W.shape} and {b.shape}")  # fmt: skip
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError("adapter W or b holds NaN or infinite values")
        mean = (
            np.zeros(W.shape[0], np.float32) if self.mean_new is None else np.array(self.mean_new, np.float32)
        )
        if mean.shape != (W.shape[0],) or not np.all(np.isfinite(mean)):
            raise ValueError(f"adapter mean_new must be {W.shape[0]} finite numbers, got shape {mean.shape}")
        mlp = None if self.mlp is None else tuple(np.array(a, dtype=np.float32) for a in self.mlp)
        if (mlp is None) != (self.kind != "mlp"):
            raise ValueError("an mlp adapter needs its W1, b1, W2 arrays, and only an mlp adapter has them")
        if mlp is not None:
            W1, b1, W2 = mlp
            width = W1.shape[1] if W1.ndim == 2 else -1
            if W1.shape != (W.shape[0], width) or b1.shape != (width,) or W2.shape != (width, W.shape[1]):
                raise ValueError(
                    f"adapter MLP arrays of shapes {[a.shape for a in mlp]} do not fit W {W.shape}"
                )
            if not all(np.all(np.isfinite(a)) for a in mlp):
                raise ValueError("adapter MLP arrays hold NaN or infinite values")
        for array in (W, b, mean, *(mlp or ())):
            array.setflags(write=False)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "mean_new", mean)
        object.__setattr__(self, "mlp", mlp)

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
        z = x - self.mean_new
        y = z @ self.W + self.b
        if self.mlp is not None:
            W1, b1, W2 = self.mlp
            y += np.maximum(z @ W1 + b1, 0) @ W2
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
            "mlp_width": None if self.mlp is None else int(self.mlp[0].shape[1]),
            "selection": self.selection,
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
                mlp = dict(zip(("W1", "b1", "W2"), self.mlp, strict=True)) if self.mlp is not None else {}
                meta = np.array(json.dumps(self.metadata()))
                np.savez(fh, W=self.W, b=self.b, mean_new=self.mean_new, meta=meta, **mlp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _checked_mlp(
    kind: str, arrays: tuple[np.ndarray, ...] | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, ...] | None:
    """Float32 copies of the residual MLP's (W1, b1, W2), which an mlp adapter (only) has."""
    mlp = None if arrays is None else tuple(np.array(a, dtype=np.float32) for a in arrays)
    if (mlp is None) != (kind != "mlp"):
        raise ValueError("an mlp adapter needs its W1, b1, W2 arrays, and only an mlp adapter has them")
    if mlp is None:
        return None
    W1, b1, W2 = mlp
    width = W1.shape[1] if W1.ndim == 2 else -1
    if W1.shape != (shape[0], width) or b1.shape != (width,) or W2.shape != (width, shape[1]):
        raise ValueError(f"adapter MLP arrays of shapes {[a.shape for a in mlp]} do not fit W {shape}")
    if not all(np.all(np.isfinite(a)) for a in mlp):
        raise ValueError("adapter MLP arrays hold NaN or infinite values")
    return mlp


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
        arrays = {name: data[name] for name in data.files}
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError:
        raise ValueError(f"{path}: adapter metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "kind" not in meta:
        raise ValueError(f"{path}: not a driftwatch adapter file (its metadata is not an adapter's)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: adapter format {meta['format_version']} needs a newer driftwatch")
    has_mlp = {"W1", "b1", "W2"} <= set(arrays)
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
        mean_new=arrays.get("mean_new"),
        mlp=(arrays["W1"], arrays["b1"], arrays["W2"]) if has_mlp else None,
        selection=meta.get("selection"),
    )


# ---------------------------------------------------------------- fitting


def minimum_pairs(method: str, dim_new: int) -> int:
    """Fewest pairs a method is well-posed with.

    Procrustes: more pairs than the new model has dimensions, or the cross-covariance is
    rank-deficient and part of the rotation is arbitrary. Affine: twice the coefficients
    per output dimension (d_new + 1), so a fifth can be held out to choose the ridge and the
    rest still over-determine the regression. Mlp: what Procrustes needs once a fifth is
    held out to stop the training (it starts from Procrustes when there are too few pairs
    for the ridge map; held-out retrieval, not the count, then says whether it helped).
    Auto needs what Procrustes needs and weighs the others only when there are enough pairs.
    """
    if method in ("procrustes", "auto"):
        return dim_new + 1
    if method == "affine":
        return 2 * (dim_new + 1)
    if method == "mlp":
        needed = dim_new + 1
        return next(n for n in range(needed, 2 * needed + 10) if n - held_out_size(n) >= needed)
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
        why = {
            "affine": "2 x (new dimensions + 1): a fifth picks the ridge, the rest over-determine the fit",
            "mlp": "more pairs than the new model's dimensions once a fifth is held out to stop the training",
        }.get(method, "more pairs than the new model's dimensions, or the rotation is not determined")
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
    """The scaled orthogonal map of the centred pairs: W = s U V^T from the SVD U S V^T of
    (new - mean_new)^T (old - mean_old), s = trace(S) / ||new - mean_new||^2, b = mean_old.

    Centring matters: unrelated models each sit in a cone around their own mean, and an
    uncentred rotation spends its freedom on turning one mean onto the other. The scale
    matters once the old mean is added back (it sets how far a query strays from the mean).
    With a changed dimension U V^T is semi-orthogonal (orthonormal columns when d_new >=
    d_old, orthonormal rows otherwise), the same solution under the constraint that fits.
    """
    x, y = _pairs(new, old, metric, "procrustes")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    u, singular, vt = np.linalg.svd(xc.T @ yc, full_matrices=False)
    scale = float(singular.sum() / max(float(np.sum(xc * xc)), 1e-12))
    return Adapter(
        kind="procrustes",
        W=scale * (u @ vt),
        b=my,
        from_version=from_version,
        to_version=to_version,
        metric=metric,
        normalise=metric == "cosine",
        mean_new=mx,
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
    """Ridge regression old - mean_old ~ (new - mean_new) W, closed form, optionally of reduced rank.

    `ridge` is relative (to the mean eigenvalue of the centred new Gram matrix), so one
    grid serves any scale; when None it is chosen from RIDGE_GRID on a held-out fifth of
    the pairs by retrieval (`retrieval_scores`: where each held-out query's own document
    ranks among all the pairs' old vectors) and the map refitted on all of them. `rank`
    keeps the best rank-r map (reduced-rank regression: W projected on the top r principal
    directions of the fitted values, the least-squares optimum).
    """
    x, y = _pairs(new, old, metric, "affine")
    if rank is not None and not 1 <= rank <= min(x.shape[1], y.shape[1]):
        raise ValueError(f"rank must be between 1 and {min(x.shape[1], y.shape[1])}, not {rank}")
    if ridge is not None and not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a non-negative number, not {ridge}")
    if ridge is None:
        test, train = split_held_out(len(x), rng or np.random.default_rng(0))
        solve = _ridge_solver(x[train], y[train])

        judged, candidates = judging_set(test, len(x))

        def score(r: float) -> float:
            W, b, mean = solve(r, rank)
            mapped = _map(x[judged], W, b, mean, metric)
            return float(retrieval_scores(mapped, y[candidates], np.arange(len(judged)), metric)[0].mean())

        ridge = max(RIDGE_GRID, key=score)
    W, b, mean = _ridge_solver(x, y)(ridge, rank)
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
        mean_new=mean,
    )


def _ridge_solver(
    x: np.ndarray, y: np.ndarray
) -> Callable[[float, int | None], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One eigendecomposition of the Gram matrix, then (W, b, mean_new) for any ridge cheaply."""
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    evals, evecs = np.linalg.eigh(gram)
    evals = np.clip(evals, 0, None)
    projected = evecs.T @ (xc.T @ yc)
    scale = max(float(evals.mean()), 1e-12)

    def solve(ridge: float, rank: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        W = evecs @ (projected / (evals + ridge * scale + 1e-12 * scale)[:, None])
        if rank is not None and rank < min(W.shape):
            # Fitted values F = xc W; their top-r right singular vectors are the top-r
            # eigenvectors of F^T F = W^T gram W, without forming F (n x d_old).
            _, directions = np.linalg.eigh(W.T @ gram @ W)
            top = directions[:, ::-1][:, :rank]
            W = W @ top @ top.T
        return W, my, mx

    return solve


def _map(x: np.ndarray, W: np.ndarray, b: np.ndarray, mean: np.ndarray, metric: str) -> np.ndarray:
    y = (x - mean) @ W + b
    return _unit(y) if metric == "cosine" else y


def retrieval_scores(
    mapped: np.ndarray, candidates: np.ndarray, partner: np.ndarray, metric: str, k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Per mapped query: (1 / rank of its own document among `candidates`, whether that rank <= k).

    Row i of `mapped` belongs with row partner[i] of `candidates` (old vectors). This is how
    maps are judged, not the mean cosine to the partner: a search only asks whether the query
    lands nearer its own document than the others, and a map can raise the cosine while
    crowding queries together. Among a few thousand candidates recall@10 is nearly 1.0 for
    any decent map and cannot tell them apart (against a full index it does); the reciprocal
    rank keeps ranking below the top. Ties count against the query.
    """
    score = _scorer(metric)
    reciprocal = np.empty(len(mapped))
    for start in range(0, len(mapped), 1024):
        chunk = slice(start, start + 1024)
        scores = score(mapped[chunk], candidates)
        own = scores[np.arange(scores.shape[0]), partner[chunk]]
        reciprocal[chunk] = 1.0 / np.sum(scores >= own[:, None], axis=1)
    return reciprocal, reciprocal >= 1.0 / k


def judging_set(held: np.ndarray, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows to judge, candidate rows to rank them among, the judged rows first).

    At most MAX_JUDGED queries, among at most MAX_CANDIDATES old vectors (their own and a
    fixed-seed sample of the other pairs'), so judging costs the same at 5,000 pairs as at 50,000.
    """
    judged = held[:MAX_JUDGED]
    others = np.setdiff1d(np.arange(pairs), judged)
    room = max(0, MAX_CANDIDATES - len(judged))
    if len(others) > room:
        others = np.sort(np.random.default_rng(0).choice(others, room, replace=False))
    return judged, np.concatenate([judged, others])


def _scorer(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Higher is nearer, as pgvector's operator for the metric orders."""
    if metric == "cosine":
        return lambda q, c: _unit(q) @ _unit(c).T
    if metric == "inner_product":
        return lambda q, c: q @ c.T
    return lambda q, c: 2 * q @ c.T - np.sum(c * c, axis=1)  # -||q - c||^2 + ||q||^2


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between row i of `a` and row i of `b`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(_unit(a) * _unit(b), axis=1)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine between row i of `a` and row i of `b` (the pairwise fit quality)."""
    return float(np.mean(row_cosines(a, b)))


def split_held_out(pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, the rest), a random HOLD_OUT_SHARE of `pairs` held out."""
    order = rng.permutation(pairs)
    held = held_out_size(pairs)
    return order[:held], order[held:]


def held_out_size(pairs: int) -> int:
    """Pairs kept out of a fit to measure it."""
    return max(1, round(HOLD_OUT_SHARE * pairs))


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
    """Fit a map by name: procrustes, affine, mlp, or auto (`driftwatch.adapter_train.choose`)."""
    from driftwatch import adapter_train  # it builds on this module

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if rank is not None and method != "affine":
        raise ValueError("rank applies to the affine method only; the other maps keep every dimension")
    versions = {"from_version": from_version, "to_version": to_version}
    rng = rng or np.random.default_rng(0)
    if method == "procrustes":
        return fit_procrustes(new, old, metric=metric, **versions)
    if method == "affine":
        return fit_affine(new, old, rank, metric=metric, rng=rng, **versions)
    if method == "mlp":
        return adapter_train.fit_mlp(new, old, metric=metric, rng=rng, **versions)
    return adapter_train.choose(new, old, metric=metric, rng=rng, **versions)


__all__ = [
    "KINDS",
    "METHODS",
    "Adapter",
    "fit",
    "fit_affine",
    "fit_procrustes",
    "held_out_size",
    "judging_set",
    "load",
    "mean_cosine",
    "row_cosines",
    "minimum_pairs",
    "retrieval_scores",
    "split_held_out",
]
