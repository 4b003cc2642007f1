"""Synthetic embeddings with the structure real ones have: topics as clusters on the
unit sphere with unequal sizes, and model pushes as rotations of the space.

Used by `driftwatch demo`, the tests and the benchmarks; nothing here talks to a database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.where(norms == 0, 1, norms)).astype(np.float32)


@dataclass(frozen=True)
class Topics:
    """Cluster centres on the unit sphere and how often each topic is written about."""

    centers: np.ndarray  # (topics, dim)
    weights: np.ndarray  # (topics,), sums to 1
    spread: float  # within-topic noise per dimension, relative to a unit centre

    @classmethod
    def make(cls, rng: np.random.Generator, topics: int, dim: int, spread: float = 0.6) -> Topics:
        weights = rng.dirichlet(np.full(topics, 2.0))
        return cls(unit(rng.standard_normal((topics, dim))), weights, spread)

    def sample(
        self, rng: np.random.Generator, n: int, topic: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`n` unit vectors and their topic labels (all from `topic` when given)."""
        labels = (
            np.full(n, topic) if topic is not None else rng.choice(len(self.centers), size=n, p=self.weights)
        )
        noise = rng.standard_normal((n, self.centers.shape[1])) * (
            self.spread / np.sqrt(self.centers.shape[1])
        )
        return unit(self.centers[labels] + noise), labels

    def with_new_topic(self, rng: np.random.Generator) -> tuple[Topics, int]:
        """The same topics plus one new one (its index is returned), for corpus-growth scenarios."""
        center = unit(rng.standard_normal((1, self.centers.shape[1])))
        centers = np.vstack([self.centers, center])
        return Topics(centers, np.append(self.weights, 0.0), self.spread), len(centers) - 1


def rotation(rng: np.random.Generator, dim: int, angle: float, planes: int | None = None) -> np.ndarray:
    """An orthogonal map that turns `planes` random 2-D planes by `angle` radians.

    angle = pi/2 over dim/2 planes is a wholly new embedding space (a model push);
    small angles over few planes are a mild change of the embedding function.
    """
    planes = dim // 2 if planes is None else min(planes, dim // 2)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 2 * planes)))
    turn = np.eye(dim)
    c, s = np.cos(angle), np.sin(angle)
    for p in range(planes):
        u, v = basis[:, 2 * p], basis[:, 2 * p + 1]
        turn += (c - 1) * (np.outer(u, u) + np.outer(v, v)) + s * (np.outer(v, u) - np.outer(u, v))
    return turn.astype(np.float32)


def queries_near(
    rng: np.random.Generator, docs: np.ndarray, n: int, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Queries made by perturbing random documents: (queries, index of the source document)."""
    source = rng.choice(len(docs), size=n, replace=False)
    jitter = rng.standard_normal((n, docs.shape[1])) * (noise / np.sqrt(docs.shape[1]))
    return unit(docs[source] + jitter), source


def exact_neighbours(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """Indices of each query's k nearest documents by cosine (ground truth for a suite)."""
    similarity = unit(queries) @ unit(docs).T
    top = np.argpartition(-similarity, kth=min(k, docs.shape[0] - 1), axis=1)[:, :k]
    order = np.take_along_axis(-similarity, top, axis=1).argsort(axis=1)
    return np.take_along_axis(top, order, axis=1)


__all__ = ["Topics", "exact_neighbours", "queries_near", "rotation", "unit"]
