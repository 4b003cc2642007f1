"""The detectors issue 15 added, on seeded synthetic data: new territory sees a small new
cluster and points at it, the classifier test sees a turn of a centred space that the
centroid and the cells do not, the centroid stays quiet in a centred space, the paired
suite test fires on a net loss of 10 of 400 queries and not on churn, tables read whole
are judged by an effect size. No database."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from driftwatch.detect.detectors import (
    CentroidDistance,
    ClassifierTwoSample,
    MeanShift,
    NewTerritory,
    RecallAtK,
    SpatialKL,
    effect_result,
    sign_flip_null,
)
from driftwatch.synthetic import Topics, rotation, unit

DIM = 48


def round_trip(detector: Any) -> Any:
    arrays, summary = detector.state()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        loaded = {name: stored[name] for name in stored.files}
    again = type(detector).from_state(loaded, json.loads(json.dumps(summary, allow_nan=False)))
    for name, array in again.state()[0].items():
        assert array.dtype == arrays[name].dtype and array.tobytes() == arrays[name].tobytes(), name
    return again


@pytest.fixture(scope="module")
def topics() -> Topics:
    return Topics.make(np.random.default_rng(5), 20, DIM, spread=0.7)


def draw(topics: Topics, rng: np.random.Generator, n: int) -> np.ndarray:
    return topics.sample(rng, n)[0]


def test_new_territory_finds_a_two_percent_cluster_and_points_at_it(topics: Topics) -> None:
    rng = np.random.default_rng(6)
    detector = NewTerritory.fit(draw(topics, rng, 4000), draw(topics, rng, 8000), "cosine", rng)
    grown, new = topics.with_new_topic(rng)
    planted = grown.sample(rng, 40, topic=new)[0]
    current = np.vstack([draw(topics, rng, 1960), planted])
    result = detector.score(current, alpha=0.001)
    print(result)
    assert result.drifted and result.p_value is not None and result.p_value < 1e-6
    assert result.details["new_territory_rows"] >= 40
    examples = result.details["examples"]
    assert len(examples) == 20 and sum(i >= 1960 for i in examples) >= 10 and examples[0] >= 1960
    quiet = detector.score(draw(topics, rng, 2000), alpha=0.001)
    assert not quiet.drifted and quiet.p_value is not None and quiet.p_value > 0.001
    again = round_trip(detector)
    assert again.score(current, alpha=0.001) == result


def test_new_territory_threshold_agrees_with_its_p_value(topics: Topics) -> None:
    rng = np.random.default_rng(7)
    detector = NewTerritory.fit(draw(topics, rng, 1000), draw(topics, rng, 3000), "l2", rng, quantile=0.9)
    base = draw(topics, rng, 300)
    far = unit(rng.standard_normal((300, DIM))) * 3.0  # every one of these is new territory
    for extra in range(0, 60, 3):
        result = detector.score(np.vstack([base[: 300 - extra], far[:extra]]), alpha=0.01)
        assert result.drifted == (result.p_value <= 0.01), (extra, result)


def centred_world(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """An anisotropic, centred space (the population mean removed: norm ~0.005)."""
    topics = Topics.make(rng, 30, DIM, spread=0.6)
    shift = topics.sample(rng, 100_000)[0].mean(axis=0)
    return (lambda r, n: topics.sample(r, n)[0] - shift), shift


def test_classifier_sees_a_turn_of_a_centred_space_the_centroid_and_cells_do_not() -> None:
    rng = np.random.default_rng(8)
    sample, _ = centred_world(rng)
    reference, held = sample(rng, 8000), sample(rng, 8000)
    classifier = ClassifierTwoSample.fit(reference, held, "l2", rng)
    centroid = CentroidDistance.fit(reference, held, 2000, "l2", rng)
    cells = SpatialKL.fit(reference, held, 2000, rng)
    found = []
    for _ in range(4):
        turned = sample(rng, 2000) @ rotation(rng, DIM, 0.15, planes=DIM // 8).T
        result = classifier.score(turned, alpha=0.001)
        found.append(
            (result.p_value, centroid.score(turned, 0.001).p_value, cells.score(turned, 0.001).p_value)
        )
        assert result.drifted and result.value is not None and result.value > 0.53
        assert result.p_value is not None and result.p_value < 0.001
    print(found)
    assert all(c > 0.001 and k > 0.001 for _, c, k in found)
    same = classifier.score(sample(rng, 2000), alpha=0.001)
    assert not same.drifted and 0.45 < (same.value or 0) < 0.55
    for size in (40, 300, 2000):  # the threshold and the p-value agree at every size
        for alpha in (0.5, 0.05):
            result = classifier.score(sample(rng, size) @ rotation(rng, DIM, 0.1).T, alpha=alpha)
            assert result.drifted == (result.p_value is not None and result.p_value < alpha), result
    current = sample(rng, 500)
    assert round_trip(classifier).score(current, 0.01) == classifier.score(current, 0.01)


def test_centroid_in_a_centred_space_raises_no_false_alarm_and_reports_norms() -> None:
    rng = np.random.default_rng(9)
    sample, _ = centred_world(rng)
    centroid = CentroidDistance.fit(sample(rng, 4000), sample(rng, 12000), 500, "cosine", rng)
    assert np.linalg.norm(centroid.centroid) < 0.05
    results = [centroid.score(sample(rng, 500), alpha=0.05) for _ in range(200)]
    alarms = sum(r.drifted for r in results)
    low, high = sps.binom.interval(0.999, 200, 0.05)
    print("centred-space false alarms in 200 cycles at 0.05:", alarms)
    assert low <= alarms <= high
    assert 0.4 < np.mean([r.p_value for r in results]) < 0.6
    details = results[0].details
    assert details["baseline_centroid_norm"] < 0.05 and details["current_centroid_norm"] < 0.2
    shifted = centroid.score(sample(rng, 500) + 0.15 * unit(rng.standard_normal((1, DIM))), alpha=0.001)
    assert shifted.drifted  # the mean moved: seen as a distance, not as a direction of noise


def binary_suite(rng: np.random.Generator, queries: int = 400) -> np.ndarray:
    return (rng.uniform(size=queries) < 0.8).astype(float)


def test_paired_recall_catches_ten_of_four_hundred_and_ignores_balanced_churn() -> None:
    rng = np.random.default_rng(10)
    hits, trials = binary_suite(rng), np.ones(400)
    ids = [f"q{i}" for i in range(400)]
    recall = RecallAtK.fit(hits, trials, k=10, query_ids=ids)
    found = np.flatnonzero(hits == 1)
    lost = hits.copy()
    lost[found[:10]] = 0
    result = recall.score(lost, trials, 0.001, None, ids)
    assert result.p_value == pytest.approx(2.0**-10) and result.drifted
    assert result.value == pytest.approx(10 / 400) and result.threshold is not None
    churn = hits.copy()
    churn[found[:15]] = 0
    churn[np.flatnonzero(hits == 0)[:15]] = 1
    quiet = recall.score(churn, trials, 0.001, None, ids)
    assert not quiet.drifted and quiet.p_value is not None and quiet.p_value > 0.5
    assert (quiet.details["worse"], quiet.details["better"]) == (15, 15)
    # A changed suite: 100 queries replaced, the 300 kept still pair by id (in any order).
    kept = np.arange(100, 400)[::-1]
    new_ids = [ids[i] for i in kept] + [f"new{i}" for i in range(100)]
    new_hits = np.r_[lost[kept], np.ones(100)]
    partial = recall.score(new_hits, np.ones(400), 0.001, None, new_ids)
    assert partial.details["queries_paired"] == 300 and partial.details["worse"] == sum(
        1 for i in found[:10] if i >= 100
    )


def test_sign_flip_null_is_mcnemar_for_unit_differences_and_exact_for_others() -> None:
    values, pmf = sign_flip_null(np.ones(12))
    assert np.allclose(pmf[values >= 0][::2], sps.binom.pmf(np.arange(6, 13), 12, 0.5))
    values, pmf = sign_flip_null([1, 2, 3])
    brute = {}
    for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3):
        total = int(signs @ [1, 2, 3])
        brute[total] = brute.get(total, 0) + 1 / 8
    assert {int(v): p for v, p in zip(values, pmf, strict=True) if p > 0} == pytest.approx(brute)


def test_tables_read_whole_are_judged_by_an_effect_size(topics: Topics) -> None:
    rng = np.random.default_rng(11)
    table = draw(topics, rng, 3000)
    reference, held = table[:1000], table[1000:]
    centroid = CentroidDistance.fit(reference, held, 3000, "cosine", rng)
    cells = SpatialKL.fit(reference, held, 3000, rng)
    for detector in (centroid, cells):
        same = detector.compare_whole(table)
        assert same.value == pytest.approx(0.0, abs=1e-6) and same.p_value is None and not same.drifted
        assert same.details["read_whole"] is True
    grown, new = topics.with_new_topic(rng)
    bigger = np.vstack([table, grown.sample(rng, 300, topic=new)[0]])
    assert cells.compare_whole(bigger).drifted and centroid.compare_whole(bigger).drifted
    assert not cells.compare_whole(bigger, threshold=0.2).drifted
    with pytest.raises(ValueError, match=r"^spatial_kl: effect size and threshold must be finite$"):
        effect_result("spatial_kl", float("nan"), 0.1, {})


def test_mean_shift_sees_a_move_along_a_quiet_direction_that_the_euclidean_centroid_misses() -> None:
    """Four loud directions and 44 quiet ones; the mean moves 0.05 along a quiet one. In
    Euclidean units that is ~1.5 null sds (the loud directions' noise), whitened ~40."""
    rng = np.random.default_rng(8)
    spread = np.r_[np.ones(4), np.full(DIM - 4, 0.1)]

    def rows(n: int, shift: float = 0.0) -> np.ndarray:
        out = rng.standard_normal((n, DIM)) * spread
        out[:, 10] += shift
        return out

    reference, held = rows(2000), rows(10000)
    shift = MeanShift.fit(reference, held, 2000, "l2")
    centroid = CentroidDistance.fit(reference, held, 2000, "l2")
    moved = rows(2000, 0.05)
    result = shift.score(moved, alpha=0.001)
    print(result, centroid.score(moved, alpha=0.001))
    assert result.drifted and result.p_value is not None and result.p_value < 1e-6
    assert result.details["top_axes"][0] >= 4  # a quiet axis, not a loud one
    missed = centroid.score(moved, alpha=0.001)
    assert not missed.drifted and missed.p_value is not None and missed.p_value > 0.001
    quiet = shift.score(rows(2000), alpha=0.001)
    assert not quiet.drifted and quiet.p_value is not None and quiet.p_value > 0.001
    again = round_trip(shift)
    assert again.score(moved, alpha=0.001) == result
