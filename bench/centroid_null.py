"""The centroid detector's null: today's bootstrap against a predictive candidate.

    .venv/bin/python bench/centroid_null.py [--baselines 100] [--windows 100]

Today's null bootstraps n rows *with replacement* from the held-out pool (h rows) and measures
their mean's distance to the frozen reference centroid; the pool's own offset from the
population then enters twice (once in its mean, once in the resampling), so the null sits
too high. The candidate is the predictive null of a Gaussian location model: replicates
centred on the pooled mean (n·c_ref + h·m_H)/(n+h), bootstrap deviations scaled by
sqrt(1 + n/(n+h)) for that mean's own uncertainty. Measured here, not adopted: the
calibration table (fresh no-drift windows against each baseline) and power at a matched
false-alarm rate (one window per baseline and scenario, thresholds from the no-drift
windows, as in bench/peers.py). Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_section
from peers_data import Condition, current_window, sample, world

from driftwatch.detect.detectors import CentroidDistance
from driftwatch.detect.stats import NullModel, fit_null

MARK_BEGIN, MARK_END = "<!-- centroid-null:begin -->", "<!-- centroid-null:end -->"
REPLICATES = 1000
SETTINGS = ((1000, 384, 5), (1000, 384, 2), (400, 64, 5), (400, 16, 5))  # (n, d, held-out factor)
SCENARIOS = (Condition("new_topic", 0.01), Condition("new_topic", 0.02), Condition("rotation", 0.2),
             Condition("gradual", 0.25))  # fmt: skip


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos(a, b) as CentroidDistance measures it: half the squared distance of the unit vectors."""
    return float(0.5 * np.sum((a / np.linalg.norm(a) - b / np.linalg.norm(b)) ** 2))


def bootstrap_means(rows: np.ndarray, n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `replicates` bootstrap samples of n rows, drawn one replicate at a time as
    CentroidDistance.fit draws its own, as count-weighted sums of the rows."""
    counts = np.stack(
        [np.bincount(rng.integers(0, len(rows), n), minlength=len(rows)) for _ in range(replicates)]
    )
    return (counts @ rows) / n


def nulls(baseline: np.ndarray, n: int, rng: np.random.Generator) -> tuple[CentroidDistance, NullModel]:
    """(today's null, the predictive candidate) for one baseline of (1 + factor) n unit rows."""
    reference, held = baseline[:n], baseline[n:]
    today = CentroidDistance.fit(reference, held, n, "cosine", rng, REPLICATES)
    centroid, pool_mean, h = today.centroid, held.mean(axis=0), len(held)
    pooled = (n * centroid + h * pool_mean) / (n + h)
    scale = np.sqrt(1 + n / (n + h))
    values = [
        cosine_distance(centroid, pooled + scale * (mean - pool_mean))
        for mean in bootstrap_means(held, n, REPLICATES, rng)
    ]
    return today, fit_null(np.array(values), n, n)


def calibration(n: int, dim: int, factor: int, baselines: int, windows: int) -> list[str]:
    topics = world(dim)
    p_values: dict[str, list[float]] = {"today": [], "predictive": []}
    for b in range(baselines):
        rng = np.random.default_rng([2026, n, dim, factor, b])
        today, predictive = nulls(sample(topics, rng, (1 + factor) * n), n, rng)
        for _ in range(windows):
            scored = today.score(sample(topics, rng, n), 0.01)  # the library's own scoring path
            p_values["today"].append(scored.p_value)
            p_values["predictive"].append(predictive.p_value(scored.value))
    rows = []
    for name, values in p_values.items():
        p = np.array(values)
        rows.append([f"{n:,}", str(dim), f"{factor}n", name, f"{p.mean():.3f}",
                     *(f"{np.mean(p < a):.4f}" for a in (0.05, 0.01, 0.001))])  # fmt: skip
    print("\n".join(" ".join(r) for r in rows), flush=True)
    return rows


def power(n: int, dim: int, baselines: int) -> list[list[str]]:
    topics = world(dim)
    stats: dict[str, dict[str, list[float]]] = {k: {} for k in ("raw distance", "today", "predictive")}
    for b in range(baselines):
        rng = np.random.default_rng([2027, n, dim, b])
        today, predictive = nulls(sample(topics, rng, 6 * n), n, rng)
        for condition in (Condition("none", 0.0), *SCENARIOS):
            scored = today.score(current_window(topics, condition, rng, n), 0.01)
            value = scored.value
            strengths = {
                "raw distance": value,
                "today": -np.log10(max(scored.p_value, 1e-300)),
                "predictive": -np.log10(max(predictive.p_value(value), 1e-300)),
            }
            for name, stat in strengths.items():
                stats[name].setdefault(condition.label, []).append(stat)
    rows = []
    for name, by_condition in stats.items():
        threshold = np.quantile(by_condition["no drift"], 0.95)
        rows.append(
            [name, *(f"{np.mean(np.array(by_condition[c.label]) > threshold):.2f}" for c in SCENARIOS)]
        )
    print("\n".join(" ".join(r) for r in rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", type=int, default=100, help="baselines per calibration row")
    parser.add_argument("--windows", type=int, default=100, help="no-drift windows per baseline")
    parser.add_argument("--power-baselines", type=int, default=200, help="runs for the power table")
    args = parser.parse_args()
    calibrated = [row for n, d, f in SETTINGS for row in calibration(n, d, f, args.baselines, args.windows)]
    powered = power(1000, 384, args.power_baselines)
    command = ("python bench/centroid_null.py " + " ".join(sys.argv[1:])).strip()
    text = (
        f"{MARK_BEGIN}\n### Centroid null: today's bootstrap against a predictive candidate\n\n"
        f"Command: `{command}` — machine: {machine()}. {args.baselines} baselines x {args.windows} "
        f"no-drift windows per row, {REPLICATES} replicates per null; a calibrated null has mean p 0.5 "
        "and alarms at each α on that share of windows. Not adopted yet (see the script's docstring).\n\n"
        + markdown_table(
            ["n", "d", "held out", "null", "mean p", "rate at α=0.05", "rate at α=0.01", "rate at α=0.001"],
            calibrated,
        )
        + f"\n\nPower at a matched 5% false-alarm rate, 1,000 rows, 384-d, {args.power_baselines} runs "
        "(one baseline each; thresholds from the no-drift windows):\n\n"
        + markdown_table(["statistic", *(c.label for c in SCENARIOS)], powered)
        + f"\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
