"""Power of the cycle verdict WITHOUT arrivals (Holm over the population detectors at a 0.1%
cycle false-alarm rate) against a new topic that is a given share of the table, topic by topic:
how much the answer depends on how distinct the topic is.

    .venv/bin/python bench/topic_power.py --topics networkx,keras --share 0.02 --n 20000 --runs 5

Each topic is held out of the corpus in turn (bench/detection_power.py `load_population`); each
run is a fresh cycle scored against one of `--baselines` captures of the remaining topics, the
same `scenario_rows("new topic", ...)` as bench/detection_power.py. Prints one JSON line per run
(stderr) and a markdown table: the verdict's detection rate and each population detector's own
rate at alpha 0.001, with the median p-value.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table
from detection_power import HOLD_OUT_FACTOR, _settings, capture, cycle, load_population, scenario_rows


def topic_runs(topic: str, share: float, n: int, runs: int, baselines: int, seed: int) -> list[dict]:
    pop, _what = load_population(topic=topic)
    settings = _settings(n)
    fitted = []
    for b in range(baselines):
        rng = np.random.default_rng([seed, n, 1000 + b])
        fitted.append(capture(settings, pop.draw(rng, n * (1 + HOLD_OUT_FACTOR)), rng))
    out = []
    for r in range(runs):
        rng = np.random.default_rng([seed, n, 2000 + r, int(share * 1e4)])
        population, _arrivals = scenario_rows("new topic", share, pop, n, rng)
        result = cycle(settings, fitted[r % baselines], population, None)
        row = {
            "topic": topic,
            "run": r,
            "verdict": bool(result["drift_alone"]),
            "p": {k: v.p_value for k, v in result["results"].items() if v.p_value is not None},  # type: ignore[union-attr]
            "drifted": {k: bool(v.drifted) for k, v in result["results"].items() if v.value is not None},  # type: ignore[union-attr]
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
        out.append(row)
    return out


def table(rows: list[dict]) -> str:
    topics = list(dict.fromkeys(r["topic"] for r in rows))
    detectors = list(dict.fromkeys(d for r in rows for d in r["p"] if not d.startswith("arrivals_")))
    lines = []
    for topic in topics:
        mine = [r for r in rows if r["topic"] == topic]
        cells = [f"{np.mean([r['verdict'] for r in mine]):.2f}"]
        for d in detectors:
            rate = np.mean([r["drifted"].get(d, False) for r in mine])
            median = np.median([r["p"].get(d, np.nan) for r in mine])
            cells.append(f"{rate:.2f} (p {median:.1g})")
        lines.append([topic, str(len(mine)), *cells])
    return markdown_table(["topic", "runs", "verdict without arrivals", *detectors], lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", default="networkx,scapy,celery,music21,dask,keras,pandas,numpy")
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baselines", type=int, default=1)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for topic in args.topics.split(","):
        started = time.monotonic()
        rows += topic_runs(topic, args.share, args.n, args.runs, args.baselines, args.seed)
        print(f"{topic}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
