"""MRR@K and nDCG@K of the reference suite, paired query by query with the baseline."""

from __future__ import annotations

import numpy as np
import pytest

from driftwatch.detect.ranking_quality import PairedRanking, ndcg, reciprocal_ranks


def test_reciprocal_rank_and_ndcg_by_hand() -> None:
    retrieved = [["a", "b", "c"], ["x", "y", "z"], ["q", "r", "s"]]
    assert list(reciprocal_ranks(retrieved, [("b",), ("z", "y"), ("nope",)], k=3)) == [0.5, 0.5, 0.0]
    gains = [{"a": 1.0}, {"z": 3.0, "x": 1.0}, {}]
    got = ndcg(retrieved, gains, k=3)
    ideal = 3 + 1 / np.log2(3)
    assert got[0] == 1.0 and got[1] == pytest.approx((1 + 3 / np.log2(4)) / ideal) and got[2] == 0.0


def _suite(rng: np.random.Generator, queries: int = 400) -> tuple[list[str], np.ndarray]:
    ids = [f"q{i}" for i in range(queries)]
    return ids, 1.0 / rng.integers(1, 11, size=queries)


def test_balanced_churn_is_quiet_and_a_net_loss_fires() -> None:
    rng = np.random.default_rng(7)
    ids, before = _suite(rng)
    baseline = PairedRanking.fit(ids, before, k=10)
    churn = before.copy()
    moved = rng.choice(400, size=60, replace=False)
    churn[moved] = 1.0 / rng.integers(1, 11, size=60)  # ranks reshuffle both ways
    quiet = baseline.score("mrr_at_k", ids, churn, alpha=0.001)
    assert not quiet.drifted and quiet.p_value > 0.001
    worse = before.copy()
    losers = rng.choice(np.flatnonzero(before >= 0.5), size=20, replace=False)
    worse[losers] = 0.0  # 20 of 400 queries lose their relevant document from the top K
    loud = baseline.score("mrr_at_k", ids, worse, alpha=0.001)
    assert loud.drifted and loud.p_value < 0.001 and loud.details["worse"] == 20
    assert loud.value == pytest.approx((before - worse).mean())


def test_calibration_under_symmetric_noise() -> None:
    rng = np.random.default_rng(8)
    ids, before = _suite(rng, 200)
    baseline = PairedRanking.fit(ids, before, k=10)
    p_values = []
    for _ in range(200):
        now = before.copy()
        moved = rng.choice(200, size=40, replace=False)
        now[moved] = before[rng.permutation(moved)]  # the same values, shuffled across queries
        p_values.append(baseline.score("ndcg_at_k", ids, now, alpha=0.05).p_value)
    assert np.mean(np.array(p_values) < 0.05) <= 0.09


def test_only_shared_queries_pair_and_state_round_trips() -> None:
    rng = np.random.default_rng(9)
    ids, before = _suite(rng, 50)
    baseline = PairedRanking.fit(ids, before, k=10)
    assert baseline.score("mrr_at_k", ids[:5], before[:5], 0.01).details["insufficient"].startswith("5 suite")
    assert baseline.score("mrr_at_k", ids[10:], before[10:], 0.01).details["paired_queries"] == 40
    arrays, summary = baseline.state()
    again = PairedRanking.from_state(arrays, summary)
    assert again.query_ids == baseline.query_ids and np.array_equal(again.values, baseline.values)
