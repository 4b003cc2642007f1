"""The scenarios of bench/peers.py and the arrays they draw: one baseline of 6n rows and one
current window of n rows per scenario, from topic-structured unit vectors. A condition's
random stream depends on the condition alone, so a subset of scenarios draws exactly what
the full run draws."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from driftwatch.synthetic import Topics, rotation, unit

BASELINE_FACTOR = 6  # baseline rows per current row: n fit + 5n held out, as `baseline capture`
TOPICS = 40


@dataclass(frozen=True)
class Condition:
    family: str  # none | new_topic | rotation | gradual
    strength: float

    @property
    def label(self) -> str:
        return {
            "none": "no drift",
            "new_topic": f"new topic {self.strength * 100:g}%",
            "rotation": f"rotation {self.strength:g} rad",
            "gradual": f"gradual {self.strength * 100:g}%",
        }[self.family]


# Strengths from barely detectable at 1k rows to obvious at 20k (the issue asks for 2/5/10%
# of new-topic rows; 0.5% and 1% are where the 5k and 20k curves still move).
FAMILIES = {
    "new_topic": (0.005, 0.01, 0.02, 0.05, 0.10),
    "rotation": (0.05, 0.1, 0.2, 0.4),
    "gradual": (0.1, 0.25, 0.5),
}
ALL = (Condition("none", 0.0), *(Condition(f, s) for f, strengths in FAMILIES.items() for s in strengths))
QUICK = (Condition("none", 0.0), Condition("new_topic", 0.05), Condition("rotation", 0.4))
PROBE = (ALL[0], ALL[-1])  # what a probe checks: no drift and the strongest gradual drift
FAMILY_TEXT = {
    "new_topic": "a topic the baseline never saw makes up that share of the current rows",
    "rotation": "the embedding function changes: rows turned by that angle in d/8 random planes "
    "(a quarter of the dimensions), plus isotropic noise of half that size, renormalised",
    "gradual": "the window drifts as it goes: row i comes from a shifted topic mix (new Dirichlet "
    "weights over the same topics) with probability strength x i/n",
}


@dataclass(frozen=True)
class Config:
    n: int
    dim: int
    runs: int
    conditions: tuple[Condition, ...]
    methods: tuple[str, ...] | None = None  # the methods that run at this size; None: all

    @property
    def key(self) -> str:
        return f"{self.n // 1000}k/{self.dim}"

    @property
    def times_report(self) -> bool:
        """Whether the whole Evidently Report (cost only, ~20 s a call) is timed here."""
        return self.dim == 384 and self.n <= 5000

    @property
    def baseline_rows(self) -> int:
        return BASELINE_FACTOR * self.n

    def runs_method(self, name: str) -> bool:
        return self.methods is None or name in self.methods


def conditions_of(families: list[str]) -> tuple[Condition, ...]:
    """No drift (always: it calibrates every threshold) and every strength of those families."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown scenario families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    return tuple(c for c in ALL if c.family == "none" or c.family in families)


# --- data ----------------------------------------------------------------------------------


def world(dim: int) -> Topics:
    return Topics.make(np.random.default_rng([2026, dim]), TOPICS, dim)


def sample(topics: Topics, rng: np.random.Generator, n: int, topic: int | None = None) -> np.ndarray:
    """Topics.sample in float32 (same model: topic centre plus spread/sqrt(d) noise per
    dimension, on the unit sphere), 3x faster for the 20k-row runs."""
    dim = topics.centers.shape[1]
    labels = (
        np.full(n, topic) if topic is not None else rng.choice(len(topics.centers), size=n, p=topics.weights)
    )
    rows = topics.centers[labels].astype(np.float32)
    rows += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(topics.spread / math.sqrt(dim))
    return unit(rows)


def current_window(topics: Topics, condition: Condition, rng: np.random.Generator, n: int) -> np.ndarray:
    dim, s = topics.centers.shape[1], condition.strength
    if condition.family == "none":
        return sample(topics, rng, n)
    if condition.family == "new_topic":
        grown, new = topics.with_new_topic(rng)
        k = round(s * n)
        rows = np.vstack([sample(topics, rng, n - k), sample(grown, rng, k, topic=new)])
        return rows[rng.permutation(n)]
    if condition.family == "rotation":
        turn = rotation(rng, dim, s, planes=dim // 8)
        rows = sample(topics, rng, n) @ turn.T
        rows += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(s / 2 / math.sqrt(dim))
        return unit(rows)
    if condition.family == "gradual":
        shifted = Topics(topics.centers, rng.dirichlet(np.full(len(topics.weights), 2.0)), topics.spread)
        rows = sample(topics, rng, n)
        moved = rng.random(n) < s * np.arange(1, n + 1) / n
        rows[moved] = sample(shifted, rng, int(moved.sum()))
        return rows
    raise ValueError(condition.family)


def draw(config: Config, run: int, conditions: tuple[Condition, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One run: the baseline (6n rows) and one current window per condition (c, n, d)."""
    topics = world(config.dim)
    streams = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence([2026, config.dim, config.n, run]).spawn(1 + len(ALL))
    ]
    baseline = sample(topics, streams[0], config.baseline_rows)
    # a condition's stream depends on the condition alone: --quick draws what the full run draws
    windows = [current_window(topics, c, streams[1 + ALL.index(c)], config.n) for c in conditions]
    return baseline, np.stack(windows)
