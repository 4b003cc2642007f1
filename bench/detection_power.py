"""Detection power and calibration of every population and arrival detector, and of the cycle's
Holm verdict, on real sentence embeddings.

    make bench-data                                   # once: embeds the corpus (bench/realdata.py)
    .venv/bin/python bench/detection_power.py [--quick] [--sizes 2000,10000,20000] [--runs 40]

It runs driftwatch's own code for everything statistical: `baseline.fit` (the capture's split
into reference and held-out rows, every registered detector's fit) and `cycle.score` (every
registered detector, then `detect.verdict`), on the arrays a capture and a cycle would read.
Only the reads are replaced: a table is a population of real embeddings (the corpus of
bench/realdata.py, all-MiniLM-L6-v2; its second model, multilingual-e5-small, for unlabelled
re-embedding), and a sample is an iid draw from it. The corpus has ~46k texts, fewer than a
capture at the default sample reads (6 x 20k), so draws are with replacement plus a small
jitter (a smoothed bootstrap: 0.01 rad, a tenth of a typical nearest-neighbour angle), which
is exactly the iid setting the nulls claim; the sampler's uniformity is tested on its own.

Scenarios (each cycle after a fresh capture; power at a cycle false-alarm rate of 0.1%):
  * none                   the same population: calibration (mean p, false alarms at alpha)
  * new topic s%           the table grows 10%, of which a held-out topic is s% of the table
  * re-embedded s%         s% of the table re-embedded by the other model, same label
  * rotation r rad         the arriving rows (10% growth) turned by r radians
  * centred                calibration of a mean-centred model's space (the centroid near 0)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_section

from driftwatch.baseline import HOLD_OUT_FACTOR, Fitted, fit
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.cycle import score
from driftwatch.detect.observation import Arrivals, Observation, VectorSample
from driftwatch.detect.registry import REGISTRY
from driftwatch.detect.verdict import verdict

MARK_BEGIN, MARK_END = "<!-- detection-power:begin -->", "<!-- detection-power:end -->"
ALPHAS = (0.05, 0.01, 0.001)
CYCLE_RATE = 0.001  # the cycle's family-wise false-alarm rate the power is measured at
JITTER = 0.01  # radians of smoothing noise per drawn row
GROWTH = 0.10
NO_ARRIVALS = "verdict without arrivals"  # Holm over the population detectors alone


@dataclass
class Population:
    """Real rows to draw from: the table's topics, a held-out topic, the other model's vectors."""

    rows: np.ndarray  # unit float32, the table's topics
    other: np.ndarray  # texts of the table's topics by the other model
    new_topic: np.ndarray  # a topic the baseline never saw
    both: np.ndarray | None = None  # the texts of `other` by the table's model, row for row

    def draw(self, rng: np.random.Generator, n: int, source: np.ndarray | None = None) -> np.ndarray:
        pool = self.rows if source is None else source
        picked = pool[rng.integers(0, len(pool), size=n)]
        return _jitter(picked, rng)


def _jitter(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(rows.shape).astype(np.float32) * (JITTER / np.sqrt(rows.shape[1]))
    out = rows + noise
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _sample(vectors: np.ndarray) -> VectorSample:
    return VectorSample(
        vectors=vectors, ids=[str(i) for i in range(len(vectors))], versions={"v1": len(vectors)},
        method="tid", dim=vectors.shape[1], rows_sampled=len(vectors), null_vectors=0, wrong_dim=0,
        dims_seen={vectors.shape[1]: len(vectors)}, table_pages=10**6, table_rows_estimate=10**8,
        pages_probed=0,
    )  # fmt: skip


def _settings(n: int) -> CollectionSettings:
    raw = {"name": "bench", "dsn": "postgresql://bench@127.0.0.1/none", "table": "docs", "sample_size": n}
    return settings_from_dict({"collections": [raw]}, env={}).collections[0]


def capture(settings: CollectionSettings, rows: np.ndarray, rng: np.random.Generator) -> Fitted:
    observed = Observation(sample=_sample(rows), window=None, suite=None, sentinels={})
    fitted, *_ = fit(settings, observed, rng, lambda _message: None)
    return fitted


def cycle(
    settings: CollectionSettings, fitted: Fitted, population: np.ndarray, arrivals: np.ndarray | None
) -> dict[str, object]:
    observed = Observation(sample=_sample(population), window=None, suite=None, sentinels={})
    if arrivals is not None:
        observed.arrivals = Arrivals(_sample(arrivals), total=len(arrivals), watermark="0")
    results, _ = score(settings, fitted, observed)
    judged = verdict(results, CYCLE_RATE)
    # What a collection without an arrival column would conclude: the population detectors alone.
    alone = verdict([r for r in results if not r.detector.startswith("arrivals_")], CYCLE_RATE)
    return {"results": {r.detector: r for r in results}, "drift": judged.drift, "drift_alone": alone.drift}


def scenario_rows(
    name: str, strength: float, pop: Population, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(population sample of n, arrivals sample) under one scenario."""
    arriving = n  # a table of >= 10n rows grew 10%: the cycle reads n of its arrivals
    if name == "none":
        return pop.draw(rng, n), pop.draw(rng, arriving)
    if name == "new topic":
        share_of_table = strength  # the new topic is this share of the grown table
        share_of_arrivals = share_of_table * (1 + GROWTH) / GROWTH
        population = _mix(pop.draw(rng, n), pop.draw(rng, n, pop.new_topic), share_of_table, rng)
        arrivals = _mix(
            pop.draw(rng, arriving), pop.draw(rng, arriving, pop.new_topic), share_of_arrivals, rng
        )
        return population, arrivals
    if name == "re-embedded":
        # The same texts, some stored by the other model: draw rows once, swap a share of them.
        # (`pop` is then the population of texts both models embedded, see `power`.)
        picked = rng.integers(0, len(pop.rows), size=n)
        swapped = rng.random(n) < strength
        rows = np.where(swapped[:, None], pop.other[picked], pop.rows[picked])
        return _jitter(rows.astype(np.float32), rng), pop.draw(rng, arriving)
    if name == "rotation":
        turn = _rotation(pop.rows.shape[1], strength, rng)
        arrivals = (pop.draw(rng, arriving) @ turn.T).astype(np.float32)
        turned = (pop.draw(rng, n) @ turn.T).astype(np.float32)
        population = _mix(pop.draw(rng, n), turned, GROWTH / (1 + GROWTH), rng)
        return population, arrivals
    raise ValueError(name)


def _mix(base: np.ndarray, other: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    take = rng.random(len(base)) < share
    out = base.copy()
    out[take] = other[take]
    return out


def _rotation(dim: int, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Every vector turned by `angle`: dim/2 random planes."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    turn = np.eye(dim)
    c, s = np.cos(angle), np.sin(angle)
    for i in range(0, dim - 1, 2):
        u, v = basis[:, i : i + 1], basis[:, i + 1 : i + 2]
        turn = turn + (c - 1) * (u @ u.T + v @ v.T) + s * (v @ u.T - u @ v.T)
    return turn.astype(np.float32)


def _other_model(realdata: Any) -> tuple[np.ndarray, str, int]:
    """The second model's vectors: the finished array, or the rows its build has embedded so far
    (its parts directory), in corpus order."""
    try:
        other = realdata.load("e5")
        return other.vectors, other.model.title, len(other.vectors)
    except FileNotFoundError:
        model = realdata.MODELS["e5"]
        parts_dir = realdata.vectors_path(model).with_suffix(".parts")
        parts = sorted(parts_dir.glob("[0-9]*.npy"))
        if not parts:
            raise
        vectors = np.concatenate([np.load(part) for part in parts]).astype(np.float32)
        return vectors, f"{model.title} (the first {len(vectors):,} texts)", len(vectors)


def load_population(seed: int = 0, topic: str = "") -> tuple[Population, str]:
    import realdata

    primary = realdata.load("minilm")
    other, other_title, embedded = _other_model(realdata)
    topics = primary.topics
    names, counts = np.unique(topics, return_counts=True)
    held = topic or names[np.argsort(counts)[len(counts) // 2]]  # by default a topic of median size
    if held not in names:
        raise SystemExit(f"--topic {held!r} is not a topic of the corpus")
    table, new = realdata.split_topics(topics, [held])
    both = table[table < embedded]  # rows the other model has embedded too
    what = (
        f"{len(primary.vectors):,} docstrings of {len(names)} Python distributions (topic = distribution); "
        f"held-out topic `{held}` ({len(new):,} texts); table model {primary.model.title}; re-embedding "
        f"draws {len(both):,} texts embedded by both it and {other_title}"
    )
    population = Population(primary.vectors[table], other[both], primary.vectors[new])
    population.both = primary.vectors[both]
    return population, what


def centred(pop: Population) -> Population:
    mean = pop.rows.mean(axis=0)

    def shift(rows: np.ndarray) -> np.ndarray:
        out = rows - mean
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    both = None if pop.both is None else shift(pop.both)
    return Population(shift(pop.rows), shift(pop.other), shift(pop.new_topic), both)


SCENARIOS = (
    ("new topic", (0.005, 0.01, 0.02, 0.05)),
    ("re-embedded", (0.01, 0.05, 0.2)),
    ("rotation", (0.02, 0.05, 0.1, 0.2)),
)


def _label(name: str, strength: float) -> str:
    return f"{name} {strength:g} rad" if name == "rotation" else f"{name} {100 * strength:g}%"


def calibrate(pop: Population, n: int, baselines: int, cycles: int, seed: int) -> dict[str, object]:
    """p-values of every detector that measured, and the verdict's alarms, under no drift."""
    settings = _settings(n)
    p_values: dict[str, list[float]] = {}
    alarms = total = 0
    for b in range(baselines):
        rng = np.random.default_rng([seed, n, b])
        fitted = capture(settings, pop.draw(rng, n * (1 + HOLD_OUT_FACTOR)), rng)
        for _ in range(cycles):
            out = cycle(settings, fitted, *scenario_rows("none", 0.0, pop, n, rng))
            for name, result in out["results"].items():  # type: ignore[union-attr]
                if result.p_value is not None:
                    p_values.setdefault(name, []).append(result.p_value)
            alarms += bool(out["drift"])
            total += 1
    return {"p": p_values, "alarms": alarms, "cycles": total}


def power(pop: Population, n: int, baselines: int, runs: int, seed: int) -> dict[str, dict[str, float]]:
    """Per scenario: the verdict's detection rate at a 0.1% cycle false-alarm rate, and each
    detector's own at alpha 0.001."""
    settings = _settings(n)
    table: dict[str, dict[str, float]] = {}
    for name, strengths in SCENARIOS:
        # Re-embedding needs texts both models embedded: that population gets its own baselines.
        space = (
            Population(pop.both, pop.other, pop.new_topic)
            if name == "re-embedded" and pop.both is not None
            else pop
        )
        fitted_all = []
        for b in range(baselines):
            rng = np.random.default_rng([seed, n, 1000 + b])
            fitted_all.append(capture(settings, space.draw(rng, n * (1 + HOLD_OUT_FACTOR)), rng))
        for strength in strengths:
            hits: dict[str, int] = {}
            for r in range(runs):
                rng = np.random.default_rng([seed, n, 2000 + r, int(strength * 1e4)])
                out = cycle(
                    settings, fitted_all[r % baselines], *scenario_rows(name, strength, space, n, rng)
                )
                hits["verdict"] = hits.get("verdict", 0) + bool(out["drift"])
                hits[NO_ARRIVALS] = hits.get(NO_ARRIVALS, 0) + bool(out["drift_alone"])
                for detector, result in out["results"].items():  # type: ignore[union-attr]
                    if result.value is not None:
                        hits[detector] = hits.get(detector, 0) + result.drifted
            table[_label(name, strength)] = {k: v / runs for k, v in hits.items()}
    return table


def cost(dims: tuple[int, ...], n: int, seed: int) -> dict[int, dict[str, float]]:
    """Seconds per detector for one cycle of n rows and n arrivals (topic-structured synthetic
    rows: the cost depends on the shape, not the content)."""
    from driftwatch.synthetic import Topics

    out: dict[int, dict[str, float]] = {}
    for dim in dims:
        rng = np.random.default_rng([seed, dim])
        topics = Topics.make(rng, 40, dim)
        settings = _settings(n)
        fitted = capture(settings, topics.sample(rng, n * (1 + HOLD_OUT_FACTOR))[0], rng)
        observed = Observation(
            sample=_sample(topics.sample(rng, n)[0]), window=None, suite=None, sentinels={}
        )
        observed.arrivals = Arrivals(_sample(topics.sample(rng, n)[0]), total=n, watermark="0")
        timings: dict[str, float] = {}
        repeats = 3
        for _ in range(repeats):
            score(settings, fitted, observed, timings=timings)
        out[dim] = {k: v / repeats for k, v in timings.items()}
    return out


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _calibration_table(result: dict) -> str:  # type: ignore[type-arg]
    rows = []
    for name, ps in result["p"].items():
        p = np.asarray(ps)
        rows.append([name, str(p.size), _fmt(p.mean()), *[f"{np.mean(p < a):.3f}" for a in ALPHAS]])
    rate = result["alarms"] / result["cycles"]
    rows.append(["**verdict**", str(result["cycles"]), "-", "-", "-", f"{rate:.3f}"])
    headers = ["detector", "cycles", "mean p", "FA at 0.05", "FA at 0.01", "FA at 0.001"]
    return markdown_table(headers, rows)


def _power_table(table: dict[str, dict[str, float]]) -> str:
    names = REGISTRY.names()
    detectors = sorted({d for row in table.values() for d in row} - {"verdict", NO_ARRIVALS}, key=names.index)
    rows = [
        [scenario, *[_fmt(row.get(d, 0.0)) for d in ("verdict", NO_ARRIVALS, *detectors)]]
        for scenario, row in table.items()
    ]
    return markdown_table(["scenario", "verdict", NO_ARRIVALS, *detectors], rows)


def _cost_table(costs: dict[int, dict[str, float]], n: int) -> str:
    detectors = sorted({d for per in costs.values() for d in per}, key=REGISTRY.names().index)
    rows = [[d, *[f"{costs[dim].get(d, 0.0) * 1000:.0f} ms" for dim in costs]] for d in detectors]
    rows.append(["**all**", *[f"{sum(costs[dim].values()):.2f} s" for dim in costs]])
    return markdown_table(["detector", *[f"{n // 1000}k x {dim}" for dim in costs]], rows)


def report(what: str, runs: dict, args: argparse.Namespace) -> str:  # type: ignore[type-arg]
    command = " ".join([".venv/bin/python", "bench/detection_power.py", *sys.argv[1:]])
    lines = [
        MARK_BEGIN,
        "## Detection power and calibration on real embeddings (issue 15)",
        "",
        f"`{command}` on {machine()}.",
        f"Data: {what}. Each cycle is scored by `cycle.score` against a baseline fitted by `baseline.fit` "
        f"(reference n rows, held-out {HOLD_OUT_FACTOR}n); rows are iid draws from the corpus with "
        f"{JITTER} rad of jitter (see the script's docstring). Arrivals: the table grew 10%, the cycle "
        "reads n of the new rows.",
        "",
        "### Calibration under no drift",
        "",
        "Mean p (target 0.50 ± 0.05) and the false-alarm rate at each alpha (target: alpha, within "
        "sampling error), per detector that measured; the last row is the cycle verdict (Holm at "
        f"{CYCLE_RATE}).",
    ]
    for label, key in (("real space", "calib"), ("centred space (mean subtracted, renormalised)", "centred")):
        for n, result in runs[key].items():
            lines += ["", f"**{label}, n = {n:,}**", "", _calibration_table(result)]
    lines += [
        "",
        "### Power at a cycle false-alarm rate of 0.1%",
        "",
        "Share of cycles whose verdict is drift (first column), and each detector's own detection rate "
        "at its alpha 0.001. Targets: a 1% new topic caught in the first cycle with power >= 0.9 when "
        "arrivals are available; a 2% new topic with power >= 0.8 at the default sample without them "
        "(the population detectors); 5% unlabelled re-embedding with power >= 0.9.",
    ]
    for n, table in runs["power"].items():
        lines += ["", f"**n = {n:,}, {args.runs} runs per row**", "", _power_table(table)]
    lines += ["", "### Cost of the detector math per cycle (one core)", ""]
    lines += [_cost_table(runs["cost"], args.cost_n), MARK_END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,10000,20000")
    parser.add_argument("--baselines", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=50, help="calibration cycles per baseline (0: none)")
    parser.add_argument(
        "--calibration-baselines",
        type=int,
        default=0,
        help="baselines for calibration (default --baselines): many baselines with few cycles each "
        "average out one baseline's luck, which every cycle against it shares",
    )
    parser.add_argument("--runs", type=int, default=20, help="cycles per power scenario (0: no power runs)")
    parser.add_argument("--cost-n", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; prints, does not write")
    parser.add_argument("--print-only", action="store_true", help="print the section, do not write it")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost table")
    parser.add_argument("--cost-only", action="store_true", help="print the cost table only")
    parser.add_argument("--topic", default="", help="the held-out topic (default: one of median size)")
    parser.add_argument("--scenarios", default="", help="comma-separated scenario names to run (default all)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.baselines, args.cycles, args.runs, args.cost_n = "1000", 2, 10, 4, 2000
    sizes = [int(s) for s in args.sizes.split(",")]
    calibration_baselines = args.calibration_baselines or args.baselines
    if args.scenarios:
        wanted = {name.strip() for name in args.scenarios.split(",")}
        global SCENARIOS
        SCENARIOS = tuple(item for item in SCENARIOS if item[0] in wanted)
    pop, what = load_population(topic=args.topic)
    flat = centred(pop)
    runs: dict = {"calib": {}, "centred": {}, "power": {}}  # type: ignore[type-arg]
    runs["cost"] = {} if args.no_cost else cost((384, 1536), args.cost_n, seed=4)
    print(f"cost measured: {runs['cost']}", file=sys.stderr, flush=True)
    if args.cost_only:
        print(_cost_table(runs["cost"], args.cost_n))
        return
    for n in sizes:  # the section is rewritten after each size: a long run shows what it has
        started = time.monotonic()
        if args.runs:
            runs["power"][n] = power(pop, n, args.baselines, args.runs, seed=3)
        if args.cycles:
            runs["calib"][n] = calibrate(pop, n, calibration_baselines, args.cycles, seed=1)
            runs["centred"][n] = calibrate(flat, n, calibration_baselines, args.cycles, seed=2)
        print(f"n = {n}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        text = report(what, runs, args)
        if args.quick or args.print_only:
            print(text, flush=True)
        else:
            write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
