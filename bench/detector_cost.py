"""Cost of each population detector: fit on a baseline (n reference + held-out rows) and
score one cycle of n rows, single thread, plus the fit's peak extra memory (numpy's
allocations, by tracemalloc) to show no detector copies the held-out rows.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/detector_cost.py --dim 384 --n 20000 --held-out 100000

Prints a markdown table; synthetic topic clusters (driftwatch.synthetic), timings only.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from driftwatch.detect.detectors import CentroidDistance, ClassifierTwoSample, NewTerritory, SpatialKL
from driftwatch.synthetic import Topics


def rows(topics: Topics, rng: np.random.Generator, count: int) -> np.ndarray:
    out = np.empty((count, topics.centers.shape[1]), np.float32)
    for start in range(0, count, 10_000):
        out[start : start + 10_000] = topics.sample(rng, min(10_000, count - start))[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--held-out", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    topics = Topics.make(rng, 40, args.dim)
    reference, held, current = (
        rows(topics, rng, args.n),
        rows(topics, rng, args.held_out),
        rows(topics, rng, args.n),
    )
    fits: dict[str, Callable[[], Any]] = {
        "centroid_distance": lambda: CentroidDistance.fit(reference, held, args.n, "cosine", rng),
        "spatial_kl": lambda: SpatialKL.fit(reference, held, args.n, rng),
        "new_territory": lambda: NewTerritory.fit(reference, held, "cosine", rng),
        "classifier_two_sample": lambda: ClassifierTwoSample.fit(reference, held, "cosine", rng),
    }
    print(
        "| detector | d | held out | fit s | fit peak extra MiB | score s (n rows) | score s (1,000 rows) |"
    )
    print("|---|---|---|---|---|---|---|")
    tracemalloc.start()
    for name, fit in fits.items():
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        detector = fit()
        fitted = time.perf_counter() - started
        peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        scored = []
        for size in (args.n, 1000):
            started = time.perf_counter()
            detector.score(current[:size], 0.001)
            scored.append(time.perf_counter() - started)
        cells = [name, str(args.dim), f"{args.held_out:,}", f"{fitted:.2f}", f"{peak:.0f}"]
        print("| " + " | ".join([*cells, *(f"{s:.3f}" for s in scored)]) + " |")


if __name__ == "__main__":
    main()
