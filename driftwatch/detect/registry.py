"""The detector registry: each detector is declared once, and everything else derives from
the declaration — which names config accepts (thresholds, alert rules), what a baseline
capture fits and stores, what a cycle scores and in which order, the alert text, the
metrics' label values and the demo's plot axes.

A declaration is a small frozen record of plain functions: `fit` turns a baseline capture
into the detector's frozen state (or an `Off` saying why it cannot be fitted), `score` turns
one cycle into a `DriftResult`. Both see only plain arrays (`FitInput`, `ScoreInput`), never
a connection, so this module stays pure.

Adding a detector: write its class (fit, score, `Stateful` persistence), declare it with
`register(Detector(...))` next to it, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from driftwatch.detect.detectors import DriftResult, Stateful
from driftwatch.detect.observation import Observation
from driftwatch.detect.results import matrix, prepared_mean


class CanaryParams(Protocol):
    @property
    def min_cosine(self) -> float: ...


class CollectionParams(Protocol):
    """The collection settings a detector may read (config's `CollectionSettings` has them)."""

    name: str
    metric: str
    cells: int
    bins: int
    null_replicates: int

    @property
    def canary(self) -> CanaryParams | None: ...


@dataclass(frozen=True)
class Off:
    """A detector that cannot be fitted on this baseline, and why (shown in every cycle)."""

    why: str


@dataclass(frozen=True)
class FitInput:
    """What a baseline capture offers a detector: clean reference rows (fit the statistic),
    clean held-out rows of the same population (calibrate its null), and what else was read."""

    reference: np.ndarray
    held_out: np.ndarray
    reference_ids: list[str]
    cycle_size: int  # the sample size cycles will draw
    observed: Observation
    settings: CollectionParams
    rng: np.random.Generator
    cycle_window: float | None = None  # seconds of query log a cycle reads, if there is a log


@dataclass(frozen=True)
class ScoreInput:
    """What one cycle offers a detector. `clean` are the sampled rows that passed the vector
    sanity screen; `screen` is that screen's own verdict."""

    clean: np.ndarray
    screen: DriftResult
    observed: Observation
    baseline_versions: list[str | None]
    sentinel_cosines: np.ndarray
    alpha: float
    fixed_threshold: float | None
    index_health_interval: float = 0.0
    arrivals: np.ndarray | None = None  # clean rows among the arrivals, when the collection has them
    read_whole: bool = False  # `clean` is the whole table, not a sample
    whole_table_effect: float | None = None  # the effect size a whole-table comparison fires at
    # Per cycle, what several detectors need of `clean` (its prepared mean, by metric): computed
    # by the first that asks. Shared by the per-detector copies `dataclasses.replace` makes.
    memo: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def clean_mean(self, metric: str) -> np.ndarray:
        """The clean rows' prepared mean: `centroid_distance` and `mean_shift` both start from
        it, and one pass over a 20,000 x 1,536 sample is a sixth of a cycle's math."""
        if metric not in self.memo:
            self.memo[metric] = prepared_mean(matrix(self.clean, "vectors"), metric)
        return self.memo[metric]


Fit = Callable[[FitInput], "Stateful | Off"]
Score = Callable[[Any, ScoreInput], DriftResult]


def _nothing_to_fit(_inputs: FitInput) -> Off:
    return Off("nothing to fit")


@dataclass(frozen=True)
class Detector:
    """One detector's declaration.

    `meaning` is one sentence a person on call understands; `action` is what to do when it
    fires (alert text and runbook line); `label` names its value on plot axes and dashboards.
    `state` is the class stored with the baseline (None for a detector with no fitted state,
    whose `score` then receives None); `state_from` names another detector whose fitted
    state this one scores with (the arrival detectors reuse the population's). `rule` says
    whether `detector = "any"` alert rules cover it (model pushes page through their own
    built-in alerts instead).
    """

    name: str
    meaning: str
    action: str
    label: str
    score: Score
    state: type[Stateful] | None = None
    fit: Fit = _nothing_to_fit
    state_from: str | None = None
    rule: bool = True
    plotted: bool = True

    @property
    def fitted_as(self) -> str | None:
        """Whose fitted state `score` receives: its own, another detector's, or none."""
        return self.state_from or (self.name if self.state is not None else None)


@dataclass
class Registry:
    """Detectors by name, in declaration order (the order of `check --json`)."""

    detectors: dict[str, Detector] = field(default_factory=dict)

    def register(self, detector: Detector) -> Detector:
        if detector.name in self.detectors:
            raise ValueError(f"detector {detector.name!r} is already registered")
        self.detectors[detector.name] = detector
        return detector

    def unregister(self, name: str) -> None:
        self.detectors.pop(name, None)

    def __iter__(self) -> Iterator[Detector]:
        return iter(list(self.detectors.values()))

    def __contains__(self, name: object) -> bool:
        return name in self.detectors

    def __getitem__(self, name: str) -> Detector:
        return self.detectors[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.detectors)

    def rule_names(self) -> tuple[str, ...]:
        """The detectors an `any` alert rule covers."""
        return tuple(d.name for d in self if d.rule)

    def actions(self) -> Mapping[str, str]:
        return {d.name: d.action for d in self}


MIN_ARRIVALS = 30  # fewer arrived rows than this say too little to test


def on_arrivals(population: Detector, meaning: str, action: str) -> Detector:
    """The same statistic on the rows that arrived since the baseline, scored with the
    population detector's fitted state: drift comes in with new rows, and a sample of the
    whole table dilutes them."""
    name = f"arrivals_{population.name}"

    def score(state: Any, inputs: ScoreInput) -> DriftResult:
        if inputs.arrivals is None:
            return DriftResult.insufficient(name, "no arrival_column (or created_at_column) configured")
        arrived = inputs.observed.arrivals
        counts = {"arrived": arrived.total if arrived else 0, "read": len(inputs.arrivals)}
        if len(inputs.arrivals) < MIN_ARRIVALS:
            return DriftResult(
                name, None, None, None, {**counts, "insufficient": f"fewer than {MIN_ARRIVALS} arrived rows"}
            )
        result = population.score(state, replace(inputs, clean=inputs.arrivals, read_whole=False))
        return replace(result, detector=name, details={**result.details, **counts})

    return Detector(
        name=name,
        meaning=meaning,
        action=action,
        label=f"arrivals: {population.label}",
        score=score,
        state_from=population.name,
    )


REGISTRY = Registry()
register = REGISTRY.register


__all__ = [
    "MIN_ARRIVALS",
    "REGISTRY",
    "CollectionParams",
    "Detector",
    "FitInput",
    "Off",
    "Registry",
    "ScoreInput",
    "on_arrivals",
    "register",
]
