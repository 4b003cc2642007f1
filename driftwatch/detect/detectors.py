"""Drift detectors: fitted once on the baseline, frozen, then each cycle scores a current
sample into one `DriftResult` whose value grows with drift. This module re-exports them
from where they live, so callers import one place:

- `results`: `DriftResult`, `Stateful` (state() / from_state() round-trip bit for bit).
- `population`: `CentroidDistance`, `SpatialKL` (predictive nulls at any n), and
  `effect_result` for tables read whole.
- `mean_shift`: `MeanShift` (the mean moved, ridge-whitened, from the pooled baseline mean).
- `territory`: `NewTerritory` (rows unlike any baseline row; exact beta-binomial null).
- `classifier`: `ClassifierTwoSample` (can a linear model tell the rows apart; exact
  Mann-Whitney null on a held-out half).
- `scores`: `ScorePSI` (live queries' top-1 scores).
- `ranking`: `RecallAtK`, `IndexHealth` (paired per query with the baseline's suite run).
- `stats.holm`: the cycle verdict over the detectors' p-values, family-wise at the
  false-alarm rate.

Calibration (DESIGN.md, "Honest thresholds"): statistical detectors fit their cells,
centroid, anchors or directions on a `reference` sample and calibrate on a separate
`held_out` sample of the same population, which is as fresh to the frozen parts as a
cycle's rows are. Rows are treated as independent; rows that arrive in clumps (a bulk
import, one user's session) vary more and alarm more often.
"""

from __future__ import annotations

from driftwatch.detect.classifier import ClassifierTwoSample
from driftwatch.detect.mean_shift import MeanShift
from driftwatch.detect.population import CentroidDistance, SpatialKL, effect_result
from driftwatch.detect.ranking import IndexHealth, RecallAtK, sign_flip_null
from driftwatch.detect.results import DriftResult, Stateful
from driftwatch.detect.scores import ScorePSI
from driftwatch.detect.stats import holm
from driftwatch.detect.territory import NewTerritory

__all__ = [
    "CentroidDistance",
    "ClassifierTwoSample",
    "DriftResult",
    "IndexHealth",
    "MeanShift",
    "NewTerritory",
    "RecallAtK",
    "ScorePSI",
    "SpatialKL",
    "Stateful",
    "effect_result",
    "holm",
    "sign_flip_null",
]
