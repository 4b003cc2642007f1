"""The query-side canary: fixed probe texts embedded through the live embedder, compared with
their vectors at baseline capture.

The query path changes before any stored row does: the embedding service is redeployed with
another model, an instruction prefix such as `query: ` is dropped, normalisation or
quantisation changes. The same text through the same model gives the same vector up to
float round-off, so this is a check, not a statistic: a probe whose cosine with its
baseline vector falls below `min_cosine`, or whose norm changed by more than the same
relative error, has moved, and any moved probe is drift.

Why 0.9999 by default: 1 - cos(x, x + e) ~ (|e|/|x|)^2 / 2, so the bound allows a relative
error of sqrt(2e-4) = 1.4% in a probe. bfloat16 inference, the loosest precision models are
served in, rounds each output component by at most 2^-8 = 0.4% (1 - cos <= 8e-6), float16 by
2^-11 (<= 1.2e-7): round-off and batch-order noise stay above the bound. Another model, a
dropped instruction prefix or a changed tokenizer land far below it (cosine 0.3-0.97). int8
output quantisation (about 4e-5) stays above: 0.999999 catches it on deterministic fp32 serving.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from driftwatch.detect.detectors import DriftResult, Stateful
from driftwatch.detect.observation import CanaryProbes

__all__ = ["EmbeddingCanary", "digest"]

NAME = "embedding_canary"
SHOWN = 3  # worst probes named in the details


def digest(text: str) -> str:
    """A short fingerprint of a probe text: a cycle compares only the probes the baseline has."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(vectors, axis=1)
    return vectors / np.where(norms > 0, norms, 1.0)[:, None], norms


@dataclass(frozen=True)
class EmbeddingCanary(Stateful):
    """The probes' vectors at baseline capture. Value: the share of probes that moved
    (threshold 0, like a model push); details say how many and by how much."""

    name: ClassVar[str] = NAME
    vectors: np.ndarray  # float64 copies of the float32 vectors the embedder returned
    digests: list[str]
    min_cosine: float

    @classmethod
    def fit(cls, probes: CanaryProbes, min_cosine: float) -> EmbeddingCanary:
        if probes.vectors is None:
            raise ValueError(probes.error or "the probes were not embedded")
        return cls(
            np.asarray(probes.vectors, dtype=np.float64), [digest(t) for t in probes.texts], float(min_cosine)
        )

    @property
    def norm_tolerance(self) -> float:
        """The relative error |e|/|x| the cosine bound allows (1 - cos ~ (|e|/|x|)^2 / 2); a
        norm that changed by more has moved too (a normalisation change keeps every cosine)."""
        return math.sqrt(2.0 * (1.0 - self.min_cosine))

    def score(self, probes: CanaryProbes | None) -> DriftResult:
        if probes is None:
            return DriftResult.insufficient(NAME, "no [collections.canary] configured")
        if probes.vectors is None:
            return DriftResult.insufficient(NAME, f"probes not embedded this cycle: {probes.error}")
        now = {digest(t): i for i, t in enumerate(probes.texts)}
        pairs = [(i, now[d]) for i, d in enumerate(self.digests) if d in now]
        if not pairs:
            return DriftResult.insufficient(
                NAME, "none of the baseline's probe texts is configured now; capture a new baseline"
            )
        before = self.vectors[[i for i, _ in pairs]]
        after = np.asarray(probes.vectors, dtype=np.float64)[[j for _, j in pairs]]
        details: dict[str, Any] = {"probes": len(pairs), "min_cosine_bound": self.min_cosine}
        if after.shape[1] != before.shape[1]:
            dimension = {"baseline": before.shape[1], "now": after.shape[1]}
            details.update(moved=len(pairs), dimension=dimension, min_cosine=None)
            return DriftResult(NAME, 1.0, 0.0, None, details)
        (unit_before, norm_before), (unit_after, norm_after) = _unit_rows(before), _unit_rows(after)
        cosines = np.einsum("ij,ij->i", unit_before, unit_after)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm_change = np.abs(norm_after / norm_before - 1.0)
        moved = ~(cosines >= self.min_cosine) | ~(norm_change <= self.norm_tolerance)
        worst = np.argsort(cosines)[:SHOWN]
        details.update(
            moved=int(np.count_nonzero(moved)),
            min_cosine=float(cosines.min()),
            median_cosine=float(np.median(cosines)),
            max_norm_change=float(np.nanmax(norm_change)) if np.isfinite(norm_change).any() else None,
            worst_probes=[
                {"text": probes.texts[pairs[i][1]][:80], "cosine": round(float(cosines[i]), 6)}
                for i in worst
                if moved[i]
            ],
        )
        if len(pairs) < len(self.digests):
            details["not_configured"] = len(self.digests) - len(pairs)
        return DriftResult(NAME, float(np.mean(moved)), 0.0, None, details)
