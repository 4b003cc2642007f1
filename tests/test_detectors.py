"""Detectors on seeded synthetic populations: calibrated under no drift, alarmed by the
drift each one exists for, and bit-identical after a state round trip. No database."""

from __future__ import annotations

import inspect
import io
import json
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from scipy.linalg import expm

from driftwatch.detect import classifier, detectors, population, ranking, results, scores, territory
from driftwatch.detect.checks import VectorSanity, model_version_result, sanitize
from driftwatch.detect.detectors import (
    CentroidDistance,
    DriftResult,
    IndexHealth,
    RecallAtK,
    ScorePSI,
    SpatialKL,
)

DIM = 64
TOPICS = 20
# A seeded, well-calibrated detector lands outside this interval once in 1,000 runs.
LOW, HIGH = (int(x) for x in sps.binom.interval(0.999, 200, 0.05))


class Topics:
    """A topic-structured population on the unit sphere: unequal gaussian clusters."""

    def __init__(self, rng: np.random.Generator, topics: int = TOPICS, spread: float = 0.12) -> None:
        centers = rng.normal(size=(topics, DIM))
        self.centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        weights = 1.0 / np.arange(1, topics + 1)
        self.weights = weights / weights.sum()
        self.spread = spread

    def around(self, rng: np.random.Generator, center: np.ndarray, size: int) -> np.ndarray:
        rows = center + self.spread * rng.normal(size=(size, DIM))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        topic = rng.choice(len(self.weights), size=size, p=self.weights)
        rows = self.centers[topic] + self.spread * rng.normal(size=(size, DIM))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def json_round_trip(result: DriftResult) -> dict[str, Any]:
    as_dict = result.to_dict()
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    return as_dict


@pytest.mark.parametrize("module", [results, population, territory, classifier, scores, ranking])
def test_all_is_exactly_the_public_surface(module: Any) -> None:
    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    }
    constants = {name for name in module.__all__ if name.isupper()}
    assert sorted(module.__all__) == sorted(public | constants)


def test_detectors_re_exports_every_detector_for_the_callers() -> None:
    for name in detectors.__all__:
        assert getattr(detectors, name).__module__.startswith("driftwatch.detect.")
    defined = {
        name for module in (population, territory, classifier, scores, ranking) for name in module.__all__
    }
    assert defined <= set(detectors.__all__)


def test_drift_result_derives_drifted_and_matches_the_check_json_shape() -> None:
    result = DriftResult("centroid_distance", 0.2, 0.1, 0.0001, {"k": 1})
    assert result.drifted
    assert result.to_dict() == {
        "value": 0.2,
        "threshold": 0.1,
        "p_value": 0.0001,
        "drifted": True,
        "details": {"k": 1},
    }
    assert not DriftResult("x", 0.1, 0.1, None, {}).drifted
    empty = DriftResult.insufficient("score_psi", "no query log")
    assert empty.to_dict() == {
        "value": None,
        "threshold": None,
        "p_value": None,
        "drifted": False,
        "details": {"insufficient": "no query log"},
    }


# Calibration: a reference and a held-out sample 20x the cycle size keep the null's own
# noise (about 1/h) small, so the count below tests the method, not a small baseline.
N_CYCLE = 400
Baseline = tuple[Topics, CentroidDistance, SpatialKL]


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    rng = np.random.default_rng(20240601)
    topics = Topics(rng)
    reference, held_out = topics.draw(rng, 8000), topics.draw(rng, 8000)
    centroid = CentroidDistance.fit(reference, held_out, N_CYCLE, "cosine", rng)
    spatial = SpatialKL.fit(reference, held_out, N_CYCLE, rng)
    return topics, centroid, spatial


def test_false_alarms_under_no_drift_match_alpha(baseline: Baseline) -> None:
    topics, centroid, spatial = baseline
    rng = np.random.default_rng(7)
    alarms = {"centroid_distance": 0, "spatial_kl": 0}
    for _ in range(200):
        current = topics.draw(rng, N_CYCLE)  # a fresh sample of the same population each cycle
        alarms["centroid_distance"] += centroid.score(current, alpha=0.05).drifted
        alarms["spatial_kl"] += spatial.score(current, alpha=0.05).drifted
    print("false alarms in 200 no-drift cycles at alpha=0.05:", alarms)
    for count in alarms.values():
        assert LOW <= count <= HIGH
    for null in (centroid.null_at(N_CYCLE), spatial.null):
        assert null.threshold(0.001) > null.quantiles["0.99"]


def test_population_shift_alarms_and_names_where(baseline: Baseline) -> None:
    topics, centroid, spatial = baseline
    rng = np.random.default_rng(8)
    new_topic = rng.normal(size=DIM)
    new_topic /= np.linalg.norm(new_topic)
    newcomers = topics.around(rng, new_topic, N_CYCLE // 10)
    current = np.vstack([topics.draw(rng, N_CYCLE - len(newcomers)), newcomers])
    for detector in (centroid, spatial):
        result = detector.score(current, alpha=0.001)
        json_round_trip(result)
        assert result.drifted, result
        assert result.p_value is not None and result.p_value < 0.001
    details = spatial.score(current, alpha=0.001).details
    cells, counts = np.unique(spatial.assign(newcomers), return_counts=True)
    holding = {"far" if c == spatial.cells else int(c) for c, k in zip(cells, counts, strict=True) if k >= 8}
    top = details["top_cells"][0]
    assert top["cell"] in holding
    assert top["change"] > 0 and top["contribution"] > 0
    assert details["far_fraction"] > details["baseline_far_fraction"]


def test_overfitted_cells_do_not_raise_alarms_because_the_null_is_held_out() -> None:
    # 32 cells on 1,000 rows in 64 dimensions hug their own points: fresh rows land in the
    # far cell several times as often as reference rows. A null bootstrapped from the
    # reference itself alarms on nearly every cycle; the held-out null must not.
    rng = np.random.default_rng(13)
    topics = Topics(rng, spread=0.2)
    spatial = SpatialKL.fit(topics.draw(rng, 1000), topics.draw(rng, 1000), 1000, rng)
    held_far = spatial.held_out_counts[-1] / spatial.held_out_counts.sum()
    assert held_far > 1.5 * spatial.reference_counts[-1] / spatial.reference_counts.sum()
    alarms = sum(spatial.score(topics.draw(rng, 1000), alpha=0.05).drifted for _ in range(200))
    assert alarms <= HIGH


def test_cosine_centroid_ignores_row_norms_and_l2_does_not() -> None:
    rng = np.random.default_rng(14)
    topics = Topics(rng)
    reference, held_out, current = topics.draw(rng, 600), topics.draw(rng, 600), topics.draw(rng, 300)
    scales = rng.uniform(0.2, 5.0, size=(300, 1))
    for metric, same in (("cosine", True), ("l2", False)):
        detector = CentroidDistance.fit(reference, held_out, 300, metric, np.random.default_rng(1))
        plain = detector.score(current, alpha=0.001).value
        scaled = detector.score(current * scales, alpha=0.001).value
        assert (plain == pytest.approx(scaled, rel=1e-6)) is same  # float32 rows


def test_spatial_kl_caps_cells_and_exposes_assignments(baseline: Baseline) -> None:
    topics, _, spatial = baseline
    assert spatial.cells <= N_CYCLE // 20
    cells = spatial.assign(topics.draw(np.random.default_rng(9), 500))
    assert cells.min() >= 0 and cells.max() <= spatial.cells
    assert spatial.reference_counts[-1] / spatial.reference_counts.sum() == pytest.approx(0.01, abs=0.002)


def test_other_sample_sizes_use_a_null_for_that_size(baseline: Baseline) -> None:
    topics, centroid, spatial = baseline
    current = topics.draw(np.random.default_rng(10), 4 * N_CYCLE)
    result = centroid.score(current, alpha=0.001)
    assert result.threshold == pytest.approx(centroid.threshold_at(4 * N_CYCLE, 0.001))
    assert result.threshold < np.sqrt(centroid.null_at(N_CYCLE).threshold(0.001))
    first, second = spatial.score(current, alpha=0.001), spatial.score(current, alpha=0.001)
    assert first == second  # a null computed at score time is deterministic
    assert first.threshold is not None and first.threshold < spatial.null.threshold(0.001)


def test_fixed_threshold_replaces_the_calibrated_one(baseline: Baseline) -> None:
    topics, centroid, _ = baseline
    current = topics.draw(np.random.default_rng(11), N_CYCLE)
    calibrated = centroid.score(current, alpha=0.001)
    fixed = centroid.score(current, alpha=0.001, fixed_threshold=0.0)
    assert fixed.threshold == 0.0 and fixed.drifted
    assert fixed.p_value == calibrated.p_value


def test_too_few_rows_is_insufficient_not_an_error(baseline: Baseline) -> None:
    topics, centroid, spatial = baseline
    few = topics.draw(np.random.default_rng(12), 10)
    for detector in (centroid, spatial):
        result = detector.score(few, alpha=0.001)
        assert result.value is None and result.threshold is None and not result.drifted
        assert result.details == {"insufficient": "10 rows, need at least 30"}


def top_scores(queries: np.ndarray, documents: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    similarity = np.sort(queries @ documents.T, axis=1)[:, ::-1]
    return similarity[:, 0], similarity[:, :k].mean(axis=1)


def synthetic_scores(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    top1 = 0.35 + 0.5 * rng.beta(5.0, 2.0, size)
    return top1, top1 - 0.15 * rng.beta(2.0, 5.0, size)


def test_score_psi_false_alarms_match_alpha() -> None:
    rng = np.random.default_rng(21)
    detector = ScorePSI.fit(*synthetic_scores(rng, 8000), rng)
    alarms = sum(detector.score(*synthetic_scores(rng, 400), alpha=0.05).drifted for _ in range(200))
    print("score_psi false alarms in 200 no-drift cycles at alpha=0.05:", alarms)
    assert LOW <= alarms <= HIGH
    null = detector.null_at(400)
    assert null.threshold(0.001) > null.quantiles["0.99"]


def test_score_psi_sees_an_embedding_function_change() -> None:
    rng = np.random.default_rng(22)
    topics = Topics(rng)
    documents = topics.draw(rng, 2000)
    detector = ScorePSI.fit(*top_scores(topics.draw(rng, 4000), documents), rng)
    queries = topics.draw(rng, 500)
    same = detector.score(*top_scores(queries, documents), alpha=0.001)
    assert not same.drifted, same
    # A new model: every query vector turned by a small random rotation, documents left as they were.
    skew = rng.normal(size=(DIM, DIM))
    rotation = expm(0.15 * (skew - skew.T))
    changed = detector.score(*top_scores(queries @ rotation, documents), alpha=0.001)
    json_round_trip(changed)
    assert changed.drifted, changed
    assert changed.details["current_median_top1"] < changed.details["baseline_median_top1"]
    assert changed.details["psi_mean_topk"] > same.details["psi_mean_topk"]
    assert changed.details["n_queries"] == 500


def test_score_psi_needs_thirty_queries_and_drops_non_finite_scores() -> None:
    rng = np.random.default_rng(23)
    detector = ScorePSI.fit(*synthetic_scores(rng, 1000), rng)
    top1, topk = synthetic_scores(rng, 40)
    top1[:15] = np.nan
    result = detector.score(top1, topk, alpha=0.001)
    assert result.details == {"insufficient": "25 queries, need at least 30"}
    result = detector.score(*synthetic_scores(rng, 100), alpha=0.001)
    assert result.details["dropped_non_finite"] == 0 and result.value is not None


def test_recall_is_paired_per_query_and_reports_the_drop() -> None:
    rng = np.random.default_rng(31)
    trials = np.full(200, 10)
    hits = rng.binomial(10, 0.8, size=200)
    recall = RecallAtK.fit(hits, trials, k=10)
    assert recall.rate == hits.sum() / 2000
    one_down = hits.copy()
    one_down[np.flatnonzero(one_down)[:20]] -= 1  # 20 queries each lose one of ten: one point
    result = recall.score(one_down, trials, alpha=0.001)
    json_round_trip(result)
    assert result.value == pytest.approx(0.01) and result.drifted  # paired: 20 losses, no gains
    assert result.p_value == pytest.approx(2.0**-20)
    assert (result.details["worse"], result.details["better"], result.details["queries_paired"]) == (
        20,
        0,
        200,
    )
    assert result.details["baseline_recall"] == recall.rate and result.details["k"] == 10
    better = recall.score(np.minimum(hits + 1, 10), trials, alpha=0.001)
    assert better.value is not None and better.value < 0 and not better.drifted
    assert not recall.score(hits, trials, alpha=0.001).drifted
    assert recall.score(hits, trials, alpha=0.001).p_value == 1.0


def test_recall_and_index_health_edge_cases() -> None:
    assert RecallAtK.fit([3, 5], [5, 5], k=5).score([0], [0], alpha=0.01).details == {
        "insufficient": "no suite query with relevant ids is paired with the baseline"
    }
    with pytest.raises(
        ValueError, match=r"^the baseline has no trials: every query has an empty relevant set$"
    ):
        RecallAtK.fit([0, 0], [0, 0], k=10)
    with pytest.raises(ValueError, match=r"^each query needs 0 <= hits <= trials$"):
        IndexHealth.fit([11], [10])
    with pytest.raises(ValueError, match=r"^query id 'q1' appears more than once$"):
        IndexHealth.fit([1, 1], [1, 1], query_ids=["q1", "q1"])
    health = IndexHealth.fit(np.full(300, 10), np.full(300, 10))  # a perfect baseline
    degraded = health.score(np.full(300, 9), np.full(300, 10), alpha=0.001)
    assert degraded.drifted and degraded.value == pytest.approx(0.1)
    assert degraded.details["baseline_overlap"] == 1.0 and degraded.details["overlap"] == 0.9
    assert not health.score(np.full(300, 10), np.full(300, 10), alpha=0.001).drifted


def test_vector_sanity_counts_excludes_and_returns_clean_rows_exactly() -> None:
    rng = np.random.default_rng(41)
    reference = Topics(rng).draw(rng, 1000).astype(np.float32)
    sanity = VectorSanity.fit(reference, expected_dim=DIM)
    assert 0.85 < sanity.norm_low < 0.95 and 1.05 < sanity.norm_high < 1.15
    assert sanity.baseline_bad == 0 and sanity.baseline_rows == 1000
    current = Topics(rng).draw(rng, 100).astype(np.float32)
    current[[3, 4]] = np.nan
    current[5, 7] = np.inf
    current[[10, 11]] = 0.0
    current[[20, 21, 22, 23]] *= 5.0
    rows: list[Any] = [*current, np.ones(DIM - 1, np.float32), np.ones(DIM + 3, np.float32), None]
    clean, result = sanity.check(rows, alpha=0.001)
    good = np.setdiff1d(np.arange(100), [3, 4, 5, 10, 11, 20, 21, 22, 23])
    assert clean.dtype == np.float32 and np.array_equal(clean, current[good])
    details = json_round_trip(result)["details"]
    assert {k: details[k] for k in ("nan", "zero", "off_norm", "wrong_dim", "total")} == {
        "nan": 4,  # two NaN rows, one inf, one NULL
        "zero": 2,
        "off_norm": 4,
        "wrong_dim": 2,
        "total": 103,
    }
    assert result.value == pytest.approx(12 / 103)
    assert result.threshold == pytest.approx(1 - 0.001 ** (1 / 1000))
    assert result.drifted and result.p_value is not None and result.p_value < 1e-6
    clean_again, fine = sanity.check(current[good], alpha=0.001)
    assert np.array_equal(clean_again, current[good]) and fine.value == 0.0 and not fine.drifted


def test_sanitize_works_before_a_baseline_exists() -> None:
    matrix = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 0.0], [30.0, 40.0]], dtype=np.float64)
    clean, counts = sanitize(matrix)
    assert np.array_equal(clean, np.array([[1.0, 0.0], [30.0, 40.0]], dtype=np.float32))
    assert counts == {"nan": 1, "zero": 1, "off_norm": 0, "wrong_dim": 0, "total": 4}
    clean, counts = sanitize([[1.0, 2.0, 3.0], [1.0, 2.0], [4.0, 5.0, 6.0]])
    assert clean.shape == (2, 3) and counts["wrong_dim"] == 1
    clean, counts = sanitize(matrix, expected_dim=3)
    assert clean.shape == (0, 3) and counts["wrong_dim"] == 4
    empty, counts = VectorSanity.fit(matrix, 2).check([], alpha=0.01)
    assert counts.details == {"insufficient": "no vectors to check"} and empty.shape == (0, 2)


def test_model_version_new_version_mixed_store_and_changed_sentinels() -> None:
    pushed = model_version_result(
        ["v1"], {"v1": 900, "v2": 100}, {"v1": 30, "v2": 70}, np.array([1.0, 0.99995, 0.41, 0.2])
    )
    details = json_round_trip(pushed)["details"]
    assert pushed.drifted and pushed.threshold == 0.0 and pushed.p_value is None
    assert pushed.value == pytest.approx(0.7)  # 70% of queries already on v2
    assert details["new_versions"] == ["v2"]
    assert details["mixed_fraction"] == pytest.approx(0.1)
    assert details["versions"] == {"v1": 900, "v2": 100}
    assert details["querylog_versions"] == {"v2": 70, "v1": 30}
    assert (details["sentinels_checked"], details["sentinels_changed"]) == (4, 2)

    # No version column at all: only the sentinels can tell, and they do.
    silent = model_version_result([None], {None: 1000}, {}, np.array([1.0] * 18 + [0.3, np.nan]))
    assert silent.drifted and silent.value == pytest.approx(0.1)
    assert json_round_trip(silent)["details"]["versions"] == {"null": 1000}

    # An old minority version is mixed, not new: reported, not alarmed.
    steady = model_version_result(["v1", "v1", "v0"], {"v1": 80, "v0": 20}, {"v1": 5}, np.ones(10))
    assert not steady.drifted and steady.value == 0.0
    assert steady.details["mixed_fraction"] == pytest.approx(0.2)
    assert steady.details["baseline_versions"] == ["v1", "v0"]
    assert model_version_result(["v1"], {}, {}, None).details == {
        "insufficient": "no rows, queries or sentinels to check"
    }


def round_trip(detector: Any) -> Any:
    arrays, summary = detector.state()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        loaded = {name: stored[name] for name in stored.files}
    return type(detector).from_state(loaded, json.loads(json.dumps(summary, allow_nan=False)))


def assert_same_state(a: Any, b: Any) -> None:
    """Bit for bit: the same arrays (dtype and bytes) and the same JSON summary."""
    (arrays_a, summary_a), (arrays_b, summary_b) = a.state(), b.state()
    assert summary_a == summary_b and arrays_a.keys() == arrays_b.keys()
    for name, array in arrays_a.items():
        assert array.dtype == arrays_b[name].dtype and array.tobytes() == arrays_b[name].tobytes(), name


def test_state_round_trip_scores_identically(baseline: Baseline) -> None:
    topics, centroid, spatial = baseline
    rng = np.random.default_rng(51)
    for size in (N_CYCLE, 333):  # at the null's size, and at one computed or rescaled at score time
        current = topics.draw(rng, size)
        for detector in (centroid, spatial):
            assert_same_state(round_trip(detector), detector)
            assert round_trip(detector).score(current, alpha=0.001) == detector.score(current, alpha=0.001)
    psi_detector = ScorePSI.fit(*synthetic_scores(rng, 1000), rng)
    scores = synthetic_scores(rng, 250)
    assert round_trip(psi_detector).score(*scores, alpha=0.001) == psi_detector.score(*scores, alpha=0.001)
    hits, trials = rng.binomial(10, 0.7, size=50), np.full(50, 10)
    ids = [f"q{i}" for i in range(50)]
    for rate in (RecallAtK.fit(hits, trials, k=10, query_ids=ids), IndexHealth.fit(hits, trials, ids)):
        again = round_trip(rate)
        assert_same_state(again, rate)
        assert again.score(hits // 2, trials, 0.01, None, ids) == rate.score(
            hits // 2, trials, 0.01, None, ids
        )
    sanity = VectorSanity.fit(current, DIM)
    again = round_trip(sanity)
    assert again == sanity
    assert again.check(current, alpha=0.01)[1] == sanity.check(current, alpha=0.01)[1]
