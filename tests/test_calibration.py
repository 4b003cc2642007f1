"""Calibration of every population detector's p-value under no drift, over many seeded
baselines (a p-value is uniform on average over baselines; for one baseline it is
conditional on that baseline's luck), at sample sizes other than the fitted one: the
null is computed for whatever n a cycle scores. No database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from driftwatch.detect.detectors import (
    CentroidDistance,
    ClassifierTwoSample,
    MeanShift,
    NewTerritory,
    ScorePSI,
    SpatialKL,
)
from driftwatch.synthetic import Topics

DIM = 24
BASELINES, WINDOWS = 30, 10
SIZES = (60, 400, 1500)  # the fitted cycle size is 400
SAMPLES = BASELINES * WINDOWS * len(SIZES)


def world(centred: bool) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Topic clusters on the sphere; `centred` subtracts the population mean (norm ~0.01)."""
    topics = Topics.make(np.random.default_rng(99), 12, DIM, spread=0.8)
    shift = topics.sample(np.random.default_rng(98), 100_000)[0].mean(axis=0) if centred else 0.0

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return topics.sample(rng, n)[0] - shift

    return draw


def p_values(
    fit: Callable[[np.ndarray, np.ndarray, np.random.Generator], Any], centred: bool = False
) -> np.ndarray:
    draw, found = world(centred), []
    for b in range(BASELINES):
        rng = np.random.default_rng([17, b])
        detector = fit(draw(rng, 1500), draw(rng, 6000), rng)
        found += [detector.score(draw(rng, n), 0.05).p_value for _ in range(WINDOWS) for n in SIZES]
    return np.array(found)


def assert_uniform(p: np.ndarray, name: str) -> None:
    """Mean p 0.5 +- 0.05 (the issue's target) and the false-alarm rate at 0.05 inside a
    binomial interval widened 1.5x for windows sharing a baseline."""
    rate = float(np.mean(p < 0.05))
    low, high = sps.binom.interval(0.999, len(p), 0.05)
    half = 1.5 * (high - low) / 2 / len(p)
    print(f"{name}: mean p {p.mean():.3f}, rate at 0.05 {rate:.4f}, at 0.01 {np.mean(p < 0.01):.4f}")
    assert 0.45 <= p.mean() <= 0.55
    assert abs(rate - 0.05) <= half


@pytest.mark.parametrize("metric,centred", [("cosine", False), ("cosine", True), ("l2", True)])
def test_centroid_p_value_is_uniform_at_any_n(metric: str, centred: bool) -> None:
    assert_uniform(
        p_values(lambda r, h, rng: CentroidDistance.fit(r, h, 400, metric, rng), centred), "centroid"
    )


@pytest.mark.parametrize("metric,centred", [("cosine", False), ("cosine", True), ("l2", True)])
def test_mean_shift_p_value_is_uniform_at_any_n(metric: str, centred: bool) -> None:
    assert_uniform(p_values(lambda r, h, rng: MeanShift.fit(r, h, 400, metric), centred), "mean_shift")


def test_spatial_kl_p_value_is_uniform_at_any_n() -> None:
    assert_uniform(p_values(lambda r, h, rng: SpatialKL.fit(r, h, 400, rng, cells=16, replicates=300)), "kl")


def test_new_territory_p_value_is_uniform_at_any_n() -> None:
    fit = lambda r, h, rng: NewTerritory.fit(r, h, "cosine", rng, quantile=0.95, anchors=1500)  # noqa: E731
    assert_uniform(p_values(fit), "new_territory")


def test_classifier_p_value_is_uniform_at_any_n() -> None:
    fit = lambda r, h, rng: ClassifierTwoSample.fit(r, h, "cosine", rng, directions=12, quadratic=6)  # noqa: E731
    assert_uniform(p_values(fit), "classifier")


def test_classifier_p_value_is_uniform_for_an_unlucky_reference() -> None:
    """A monitor lives with one baseline, and every cycle is tested against its reference
    rows. Here each reference is the unluckiest of 300 captures (its mean the farthest from
    the population's, in the population's own metric); over captures that keep it and draw
    their other rows afresh, the p-value must still be uniform. Trained on one half of the
    reference and tested on the other, the classifier saw the reference's own deviation on
    both sides of every cycle (mean p 0.29-0.38, false alarms at 0.05 in 16-19% of cycles);
    trained against held-out rows, that deviation meets only their independent one."""
    draw, found = world(centred=True), []
    population = draw(np.random.default_rng(1), 100_000)
    centre, precision = population.mean(axis=0), np.linalg.inv(np.cov(population.T))
    for r in range(6):
        rng = np.random.default_rng([19, r])
        candidates = [draw(rng, 400) for _ in range(300)]
        offsets = [c.mean(axis=0) - centre for c in candidates]
        reference = candidates[int(np.argmax([o @ precision @ o for o in offsets]))]
        for _ in range(5):
            detector = ClassifierTwoSample.fit(reference, draw(rng, 2000), "cosine", rng)
            found += [detector.score(draw(rng, 400), 0.05).p_value for _ in range(10)]
    assert_uniform(np.array(found), "classifier, unlucky reference")


def test_score_psi_p_value_is_uniform_at_any_n() -> None:
    found = []
    for b in range(BASELINES):
        rng = np.random.default_rng([18, b])
        detector = ScorePSI.fit(*scores(rng, 4000), rng, replicates=300)
        found += [detector.score(*scores(rng, n), 0.05).p_value for _ in range(WINDOWS) for n in SIZES]
    assert_uniform(np.array(found), "score_psi")


def scores(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    top1 = 0.35 + 0.5 * rng.beta(5.0, 2.0, size)
    return top1, top1 - 0.15 * rng.beta(2.0, 5.0, size)
