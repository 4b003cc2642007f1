"""Are the thresholds honest? False-alarm rates under no drift, against the target alpha.

    .venv/bin/python bench/calibration.py [--baselines 10] [--cycles 1000] [--n 400]

Each baseline is captured the way `baseline capture` does it (a reference part of n rows
and a held-out part of 5n); each cycle is a fresh simple random sample of n rows from the
same population. Pure numpy: the sampler's uniformity is tested separately. Writes its
table into BENCHMARKS.md between the calibration markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_section

from driftwatch.baseline import HOLD_OUT_FACTOR
from driftwatch.detect import stats
from driftwatch.detect.detectors import CentroidDistance, ScorePSI, SpatialKL
from driftwatch.synthetic import Topics

ALPHAS = (0.05, 0.01, 0.001)
MARK_BEGIN, MARK_END = "<!-- calibration:begin -->", "<!-- calibration:end -->"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baselines", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--cells", type=int, default=16)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    topics = Topics.make(rng, 24, args.dim)
    population, _ = topics.sample(rng, 200_000)
    scores = rng.beta(8, 3, size=200_000)  # a skewed top-1 score distribution
    n = args.n
    alarms = {name: np.zeros(len(ALPHAS)) for name in ("centroid_distance", "spatial_kl", "score_psi")}
    worst = {name: 0.0 for name in alarms}
    for b in range(args.baselines):
        picked = rng.choice(len(population), (1 + HOLD_OUT_FACTOR) * n, replace=False)
        reference, held_out = population[picked[:n]], population[picked[n:]]
        centroid = CentroidDistance.fit(reference, held_out, n, "cosine", rng)
        spatial = SpatialKL.fit(reference, held_out, n, rng, args.cells)
        baseline_scores = scores[rng.choice(len(scores), 4 * n, replace=False)]
        psi = ScorePSI.fit(baseline_scores, baseline_scores, rng)
        thresholds = {
            "centroid_distance": [centroid.threshold_at(n, a) for a in ALPHAS],
            "spatial_kl": [spatial.null.threshold(a) for a in ALPHAS],
            "score_psi": [psi.null_at(n).threshold(a) for a in ALPHAS],
        }
        here = {name: np.zeros(len(ALPHAS)) for name in alarms}
        for _ in range(args.cycles):
            rows = population[rng.choice(len(population), n, replace=False)]
            current = scores[rng.choice(len(scores), n, replace=False)]
            values = {
                "centroid_distance": centroid.score(rows, 0.05).value,
                "spatial_kl": spatial.score(rows, 0.05).value,
                # what ScorePSI.score computes, without re-deriving the null every call
                "score_psi": stats.psi(
                    stats.bin_counts(current, psi.top1_edges), psi.top1_baseline_counts, psi.eps
                ),
            }
            for name, value in values.items():
                here[name] += np.array([value > t for t in thresholds[name]])
        for name in alarms:
            alarms[name] += here[name]
            worst[name] = max(worst[name], here[name][1] / args.cycles)
        print(f"baseline {b + 1}/{args.baselines} done", flush=True)
    total = args.baselines * args.cycles
    rows = [
        [name, *(f"{alarms[name][i] / total:.4f}" for i in range(len(ALPHAS))), f"{worst[name]:.4f}"]
        for name in alarms
    ]
    table = markdown_table(
        ["detector", *(f"rate at α={a}" for a in ALPHAS), "worst baseline at α=0.01"], rows
    )
    command = "python bench/calibration.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Calibration: false-alarm rate under no drift\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. {args.baselines} baselines x "
        f"{args.cycles} cycles, n = {n} rows (queries) per cycle, d = {args.dim}, {args.cells} cells, "
        f"held-out pool {HOLD_OUT_FACTOR}n. A calibrated detector's rate equals α; the unconditional "
        "rate is what the design controls, single baselines scatter around it.\n\n"
        f"{table}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
