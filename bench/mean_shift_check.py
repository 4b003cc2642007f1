"""The mean_shift detector on real rows, outside the cycle: its null (mean p, false alarms at
alpha, over many baselines) and its power against a blended new topic, beside centroid_distance.

    .venv/bin/python bench/mean_shift_check.py --n 2000 --baselines 40 --cycles 10
    .venv/bin/python bench/mean_shift_check.py --n 20000 --topics music21,celery --share 0.02

Draws as bench/detection_power.py does (with replacement, 0.01 rad of jitter); a baseline is
n reference rows and HOLD_OUT_FACTOR x n held-out rows, as a capture takes. `--centred` scores
the population centred on its mean and renormalised (bench/detection_power.py `centred`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_power import HOLD_OUT_FACTOR, centred, load_population, scenario_rows

from driftwatch.detect.mean_shift import MeanShift
from driftwatch.detect.population import CentroidDistance


def run(topic: str, args: argparse.Namespace) -> dict:
    pop, _ = load_population(topic=topic)
    if args.centred:
        pop = centred(pop)
    n = args.n
    out = {"topic": topic, "n": n, "centred": args.centred, "share": args.share}
    p = {"mean_shift": [], "centroid_distance": []}
    for b in range(args.baselines):
        rng = np.random.default_rng([args.seed, n, b])
        rows = pop.draw(rng, n * (1 + HOLD_OUT_FACTOR))
        ref, held = rows[:n], rows[n:]
        detectors = {
            "mean_shift": MeanShift.fit(ref, held, n, "cosine"),
            "centroid_distance": CentroidDistance.fit(ref, held, n, "cosine"),
        }
        for _ in range(args.cycles):
            if args.share > 0:
                current, _ = scenario_rows("new topic", args.share, pop, n, rng)
            else:
                current = pop.draw(rng, n)
            for name, d in detectors.items():
                p[name].append(d.score(current, 0.001).p_value)
    for name, ps in p.items():
        ps = np.array(ps)
        out[name] = {
            "mean_p": round(float(ps.mean()), 3),
            "median_p": float(np.median(ps)),
            **{f"rate@{a}": round(float(np.mean(ps <= a)), 3) for a in (0.05, 0.01, 0.001, 1.7e-4)},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", default="keras")
    parser.add_argument("--share", type=float, default=0.0)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--baselines", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--centred", action="store_true")
    args = parser.parse_args()
    for topic in args.topics.split(","):
        print(json.dumps(run(topic, args)), flush=True)


if __name__ == "__main__":
    main()
