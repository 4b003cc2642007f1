"""bench/knn_feasibility.py's graph and statistics on small synthetic stand-ins (the real
corpus is built by `make bench-data`; nothing here reads it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from knn_feasibility import approx_knn, exact_knn, statistics, thresholds  # noqa: E402


def unit_rows(rng: np.random.Generator, n: int, dim: int = 12) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_exact_knn_is_the_brute_force_order_without_the_row_itself() -> None:
    rows = unit_rows(np.random.default_rng(0), 3000)
    found = exact_knn(rows, 5)
    sim = rows @ rows.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1)[:, :5]
    assert (found == expected).mean() > 0.999  # float ties aside
    assert not (found == np.arange(len(rows))[:, None]).any()


def test_the_approximate_graph_finds_most_true_neighbours_and_never_the_row_itself() -> None:
    rng = np.random.default_rng(1)
    centres = unit_rows(rng, 20) * 3
    rows = centres[rng.integers(0, 20, 4000)] + rng.standard_normal((4000, 12)).astype(np.float32) * 0.3
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    held = rows[:1000]
    graph, _seconds = approx_knn(rows[1000:], held, 5, dim=12, lists=10, probe=3)
    truth = exact_knn(rows[1000:], 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(graph, truth, strict=True)])
    assert recall > 0.8
    assert not (graph == np.arange(len(graph))[:, None]).any()


def test_the_all_neighbours_current_count_has_the_hypergeometric_mean_under_permutation() -> None:
    """Each row's k neighbours are distinct others: P(row and its k neighbours all current)
    is the hypergeometric (n1)_(k+1) / (N)_(k+1), whatever the graph."""
    rng = np.random.default_rng(2)
    rows = unit_rows(rng, 2000)
    graph = exact_knn(rows, 10)
    current = np.r_[np.zeros(1000, bool), np.ones(1000, bool)]
    k = 10
    counts = np.array([statistics(graph, rng.permutation(current), k)[1] for _ in range(400)])
    t = thresholds(k)[1]
    assert t == k  # Binomial(10, 1/2) puts less than 1e-3 at 10 only
    expected = 2000 * np.prod([(1000 - i) / (2000 - i) for i in range(k + 1)])
    assert abs(counts.mean() - expected) < 4 * counts.std() / np.sqrt(len(counts))
    assert sps.binom(k, 0.5).sf(t - 1) < 1e-2
