"""Feedback as drift signals and as training data: calibration of click_rate,
negative_feedback_rate and reformulation_rate under day-to-day noise, their power on a
harmful model push, and the false-negative rate of each triplet source on a simulated user.

The log is simulated with what real ones have: traffic and click propensity that swing with
the hour of day, a small day-to-day shift, and sessions (one user's mood, and a failed query
often asked again within two minutes). A baseline is 7 days of it; a cycle reads 15 minutes.
The detectors run through the registry exactly as a cycle runs them.

    python bench/feedback.py [--baselines 20]
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
from common import machine, markdown_table, write_section
from scipy.special import expit, logit

from driftwatch.detect import catalog  # noqa: F401  (registers the built-in detectors)
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.observation import Observation, QueryWindow
from driftwatch.detect.registry import REGISTRY, FitInput, Off, ScoreInput
from driftwatch.feedback import mine_queries
from driftwatch.pg.querylog import LoggedQuery, normalise_query
from driftwatch.synthetic import Topics, exact_neighbours, unit
from driftwatch.synthetic_users import Users, false_negative_rates, simulate_log

MARK_BEGIN, MARK_END = "<!-- feedback:begin -->", "<!-- feedback:end -->"
DETECTORS = ("click_rate", "negative_feedback_rate", "reformulation_rate")
DAY, CYCLE = 86400.0, 900.0
BASELINE_DAYS, CHECK_DAYS = 7, 3
SESSIONS_PER_HOUR = 1000  # at the daily mean; about 300 queries a 15-minute cycle
ALPHAS = (0.05, 0.01, 0.001)


def simulate(rng: np.random.Generator, days: int, push_from: float | None = None) -> QueryWindow:
    """`days` of a query log: sessions whose first query may fail and be asked again."""
    hours = np.arange(days * 24)
    traffic = 1 + 0.6 * np.sin(2 * np.pi * ((hours % 24) - 8) / 24)
    per_hour = rng.poisson(SESSIONS_PER_HOUR * traffic)
    t0 = np.repeat(hours * 3600.0, per_hour) + rng.uniform(0, 3600, per_hour.sum())
    hod = (t0 / 3600) % 24
    day_shift = rng.normal(0, 0.08, days)[(t0 // DAY).astype(int)]
    mood = rng.normal(0, 0.5, t0.size)  # one session's user and intent
    p = expit(logit(0.6) + 0.35 * np.sin(2 * np.pi * (hod - 3) / 24) + day_shift + mood)
    if push_from is not None:
        p = np.where(t0 >= push_from, p / 2, p)  # a harmful push halves the click propensity
    first = _answers(rng, p)
    again = first["failed"] & (rng.random(t0.size) < 0.5)
    t1 = t0[again] + rng.uniform(5, 90, again.sum())
    second = _answers(rng, np.minimum(1.0, 1.2 * p[again]))
    ts = np.concatenate([t0, t1])
    order = np.argsort(ts, kind="stable")
    clicked = np.concatenate([first["clicked"], second["clicked"]])[order]
    thumbs = np.concatenate([first["thumbs"], second["thumbs"]])[order]
    reformulated = np.concatenate([again, np.zeros(again.sum(), bool)])[order]
    empty = np.empty(0)
    return QueryWindow(
        since=datetime.fromtimestamp(0, UTC), until=datetime.fromtimestamp(days * DAY, UTC),
        top1=empty, mean_topk=empty, versions={}, queries=ts.size, clicked_queries=int(clicked.sum()),
        clicks=int(clicked.sum()), truncated=False, ts=ts[order], clicked=clicked, thumbs=thumbs,
        reformulated=reformulated,
    )  # fmt: skip


def _answers(rng: np.random.Generator, p: np.ndarray) -> dict[str, np.ndarray]:
    clicked = rng.random(p.size) < p
    rated = rng.random(p.size) < 0.3
    down = rated & (rng.random(p.size) < np.where(clicked, 0.1, 0.6))
    thumbs = np.where(rated, np.where(down, -1, 1), 0).astype(np.int8)
    return {"clicked": clicked, "thumbs": thumbs, "failed": ~clicked | down}


def part(window: QueryWindow, start: float, end: float) -> QueryWindow:
    assert window.ts is not None and window.clicked is not None
    assert window.thumbs is not None and window.reformulated is not None
    keep = (window.ts >= start) & (window.ts < end)
    return QueryWindow(
        since=window.since, until=window.until, top1=window.top1, mean_topk=window.mean_topk, versions={},
        queries=int(keep.sum()), clicked_queries=0, clicks=0, truncated=False, ts=window.ts[keep],
        clicked=window.clicked[keep], thumbs=window.thumbs[keep], reformulated=window.reformulated[keep],
    )  # fmt: skip


class _Params:
    name, metric, cells, bins, null_replicates = "bench", "cosine", 2, 2, 50


def _observed(window: QueryWindow) -> Observation:
    return Observation(sample=None, window=window, suite=None, sentinels={})  # type: ignore[arg-type]


def fitted(window: QueryWindow, rng: np.random.Generator) -> dict[str, object]:
    inputs = FitInput(
        reference=np.empty((0, 1)), held_out=np.empty((0, 1)), reference_ids=[], cycle_size=1,
        observed=_observed(window), settings=_Params(), rng=rng, cycle_window=CYCLE,
    )  # fmt: skip
    states = {name: REGISTRY[name].fit(inputs) for name in DETECTORS}
    off = {name: s.why for name, s in states.items() if isinstance(s, Off)}
    if off:
        raise SystemExit(f"detectors off: {off}")
    return states


def scored(states: dict[str, object], window: QueryWindow) -> dict[str, DriftResult]:
    inputs = ScoreInput(
        clean=np.empty((0, 1)), screen=DriftResult.insufficient("vector_sanity", "bench"),
        observed=_observed(window), baseline_versions=[], sentinel_cosines=np.empty(0), alpha=0.001,
        fixed_threshold=None,
    )  # fmt: skip
    return {name: REGISTRY[name].score(states[name], inputs) for name in DETECTORS}


def detectors_table(baselines: int) -> tuple[str, str]:
    """Calibration on quiet days, and power on a pushed day, over `baselines` simulated logs."""
    quiet: dict[str, list[float]] = {n: [] for n in DETECTORS}
    pushed: dict[str, list[float]] = {n: [] for n in DETECTORS}
    first_alarm: dict[str, list[int]] = {n: [] for n in DETECTORS}
    sizes: dict[str, list[int]] = {n: [] for n in DETECTORS}
    for seed in range(baselines):
        rng = np.random.default_rng(seed)
        push_at = (BASELINE_DAYS + CHECK_DAYS) * DAY
        log = simulate(rng, BASELINE_DAYS + CHECK_DAYS + 1, push_from=push_at)
        states = fitted(part(log, 0, BASELINE_DAYS * DAY), rng)
        for start in np.arange(BASELINE_DAYS * DAY, push_at + DAY, CYCLE):
            results = scored(states, part(log, start, start + CYCLE))
            for name, result in results.items():
                if result.p_value is None:
                    continue
                (quiet if start < push_at else pushed)[name].append(result.p_value)
                if start < push_at:
                    sizes[name].append(int(result.details["queries"]))
        for name in DETECTORS:
            alarms = np.flatnonzero(np.array(pushed[name][-96:]) < 0.001)
            first_alarm[name].append(int(alarms[0]) + 1 if alarms.size else 0)
    rows, power_rows = [], []
    for name in DETECTORS:
        p = np.array(quiet[name])
        rows.append(
            [name, f"{len(p):,}", f"{np.median(sizes[name]):.0f}", f"{p.mean():.3f}"]
            + [f"{np.mean(p < a):.4f}" for a in ALPHAS]
        )
        q = np.array(pushed[name])
        firsts = [f for f in first_alarm[name] if f]
        power_rows.append(
            [name, f"{len(q):,}"]
            + [f"{np.mean(q < a):.3f}" for a in (0.01, 0.001)]
            + [f"{np.median(firsts):.0f}" if firsts else "never"]
        )
    calibration = markdown_table(
        ["detector", "quiet cycles", "median queries a cycle", "mean p"] + [f"rate at α={a}" for a in ALPHAS],
        rows,
    )
    power = markdown_table(
        ["detector", "pushed cycles", "power at α=0.01", "power at α=0.001", "median first firing cycle"],
        power_rows,
    )
    return calibration, power


def sources_table(seed: int = 11) -> tuple[str, str]:
    """False-negative rate per triplet source: simulated users on a topic corpus (exact
    search stands in for the index), mined by the pure miner with hard negatives on."""
    rng = np.random.default_rng(seed)
    docs, _ = Topics.make(rng, 20, 64).sample(rng, 5000)
    normed = unit(docs)

    def search(vector: np.ndarray) -> tuple[list[str], list[float]]:
        top = exact_neighbours(vector[None, :], docs, 10)[0]
        return [str(i) for i in top], [float(normed[i] @ unit(vector[None, :])[0]) for i in top]

    users = Users()
    start = datetime.now(UTC) - timedelta(days=1)
    rows, relevant_of = simulate_log(rng, users, search, docs, intents=400, visits=5, start=start)
    by_id = {r.query_id: r for r in rows}
    queries = []
    for r in rows:
        follow = by_id.get(r.query_id[:-1] + "1") if r.query_id.endswith("-0") else None
        failed = not r.clicked_ids or r.feedback == -1
        queries.append(
            LoggedQuery(
                r.ts, r.query_id, r.query_text, r.query_embedding, tuple(r.result_ids), tuple(r.clicked_ids),
                r.model_version, r.feedback or 0,
                tuple(follow.clicked_ids) if follow is not None and failed else (),
            )
        )  # fmt: skip
    elsewhere: dict[str, set[str]] = {}
    for r in rows:
        if r.feedback != -1:
            elsewhere.setdefault(normalise_query(r.query_text), set()).update(r.clicked_ids)
    vectors = {str(i): v for i, v in enumerate(docs)}
    triplets, _ = mine_queries(queries, elsewhere, vectors, similarity_bound=0.95, hard_negatives=2)
    rates = false_negative_rates([(t.anchor, t.negative_id, t.source) for t in triplets], relevant_of)
    naive = float(
        np.mean([i in relevant_of[r.query_text] for r in rows if r.clicked_ids for i in r.result_ids
                 if i not in r.clicked_ids])
    )  # fmt: skip
    counts = Counter(t.source for t in triplets)
    table = markdown_table(
        ["source", "triplets", "false-negative rate"],
        [[s, f"{counts[s]:,}", f"{rate:.3f}"] for s, (rate, _) in rates.items()]
        + [["(every unclicked result of a clicked query)", "", f"{naive:.3f}"]],
    )
    setting = (
        f"{len(rows):,} logged queries from {400 * 5:,} sessions on 5,000 64-d documents in 20 topics; "
        f"users: examination 1/(1+r)^{users.decay}, click {users.click_relevant} if relevant else "
        f"{users.click_other}, thumbs on {users.rate_share:.0%} of answers "
        f"with {users.thumbs_noise:.0%} noise, "
        f"{users.ask_again:.0%} of failed queries asked again; a negative is false when it is among the "
        "intent's 3 truly relevant documents"
    )
    return table, setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", type=int, default=20)
    args = parser.parse_args()
    calibration, power = detectors_table(args.baselines)
    sources, setting = sources_table()
    text = (
        f"{MARK_BEGIN}\n### Feedback signals: calibration, power, and triplet sources\n\n"
        f"Command: `python bench/feedback.py --baselines {args.baselines}` — machine: {machine()}.\n\n"
        f"Simulated logs: {SESSIONS_PER_HOUR:,} sessions an hour at the daily mean, traffic ±60% and click "
        "propensity ±0.35 logit with the hour of day, ±0.08 logit day to day, a session mood of sd 0.5 "
        "logit; 30% of answers rated (thumbs down 10% after a click, 60% without); half the failed "
        "queries asked again within 90 s. Baseline: 7 days; cycles: 15 minutes (the dispersion is learnt "
        f"from 15-minute slices of the baseline); {args.baselines} baselines x {CHECK_DAYS} quiet days.\n\n"
        "Calibration on quiet days (a calibrated test has mean p near 0.5 and rate ≈ α; the discrete, "
        "predictive test is conservative):\n\n"
        f"{calibration}\n\n"
        "Power on a harmful push (the click propensity halved for a day after the quiet days; "
        "reformulations and thumbs down rise as a consequence), share of the day's cycles that fire:\n\n"
        f"{power}\n\n"
        f"False negatives per triplet source ({setting}):\n\n{sources}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
