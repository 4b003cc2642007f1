"""Feedback proportions as drift signals: quiet under day-to-day noise, loud when a harmful
push halves the click rate. Seeded simulations of a real log's structure: users click in
sessions (a session's propensity is shared by its queries) and the rate wanders over a day."""

from __future__ import annotations

import numpy as np
import pytest

from driftwatch.detect.feedback_rates import RateShift, dispersion


def _hour(rng: np.random.Generator, queries: int, rate: float) -> np.ndarray:
    """0/1 clicks in log order: sessions of 1-7 queries share a propensity drawn around `rate`."""
    out = np.empty(queries, dtype=np.int8)
    at = 0
    while at < queries:
        length = min(int(rng.integers(1, 8)), queries - at)
        propensity = rng.beta(8 * rate, 8 * (1 - rate))
        out[at : at + length] = rng.random(length) < propensity
        at += length
    return out


def _hourly_rate(rate: float, hour: float) -> float:
    """Users click less at night: +-30% through the day."""
    return rate * (1 + 0.3 * np.sin(2 * np.pi * hour / 24))


def _days(rng: np.random.Generator, hours: int, per_hour: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """A baseline window of `hours` hourly cycles: (clicks, which hour each query fell in)."""
    clicks = [_hour(rng, per_hour, _hourly_rate(rate, h)) for h in range(hours)]
    return np.concatenate(clicks), np.repeat(np.arange(hours), per_hour)


def test_dispersion_is_one_for_independent_trials_and_more_for_sessions() -> None:
    rng = np.random.default_rng(1)
    independent = (rng.random(5000) < 0.3).astype(np.int8)
    assert dispersion(independent) < 2.0
    assert dispersion(_hour(rng, 5000, 0.3)) > 2.0  # sessions, seen in consecutive runs
    clicks, hours = _days(rng, 48, 200, 0.4)
    assert dispersion(clicks, hours) > 2.0  # sessions and the hour of day, seen hour by hour


def test_quiet_under_day_to_day_noise() -> None:
    """A two-day baseline of hourly windows; each cycle is one hour at a random time of day."""
    rng = np.random.default_rng(2)
    p_values = []
    for _ in range(300):
        clicks, hours = _days(rng, 48, 200, 0.4)
        baseline = RateShift.fit(clicks, "drop", blocks=hours)
        now = _hour(rng, 200, _hourly_rate(0.4, rng.uniform(0, 24)))
        p_values.append(baseline.score("click_rate", now, alpha=0.05).p_value)
    p = np.array(p_values)
    assert np.mean(p < 0.05) <= 0.08  # at most alpha plus sampling error (300 trials)
    assert 0.4 <= p.mean() <= 0.65


def test_naive_binomial_would_cry_wolf_on_the_same_noise() -> None:
    """The control: without the dispersion correction the same hours alarm far above alpha."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(200):
        clicks, _hours = _days(rng, 48, 200, 0.4)
        naive = RateShift(float(clicks.sum()), float(clicks.size), 1.0, "drop")
        now = _hour(rng, 200, _hourly_rate(0.4, rng.uniform(0, 24)))
        alarms += naive.score("click_rate", now, 0.05).p_value < 0.05
    assert alarms / 200 > 0.12


def test_a_halved_click_rate_fires_and_a_rise_does_not() -> None:
    rng = np.random.default_rng(4)
    clicks, hours = _days(rng, 48, 200, 0.4)
    baseline = RateShift.fit(clicks, "drop", blocks=hours)
    halved = baseline.score("click_rate", _hour(rng, 400, 0.2), alpha=0.001)
    assert halved.drifted and halved.p_value < 0.001
    assert halved.value == pytest.approx(baseline.rate - halved.details["rate"])
    better = baseline.score("click_rate", _hour(rng, 400, 0.6), alpha=0.001)
    assert not better.drifted and better.value < 0


def test_rises_fire_for_rise_detectors() -> None:
    rng = np.random.default_rng(5)
    baseline = RateShift.fit((rng.random(3000) < 0.1).astype(np.int8), "rise")
    worse = baseline.score("negative_feedback_rate", (rng.random(500) < 0.25).astype(np.int8), 0.001)
    assert worse.drifted and worse.value > 0.1
    same = baseline.score("negative_feedback_rate", (rng.random(500) < 0.1).astype(np.int8), 0.001)
    assert not same.drifted


def test_too_few_queries_say_so_and_state_round_trips() -> None:
    rng = np.random.default_rng(6)
    baseline = RateShift.fit(_hour(rng, 1000, 0.3), "drop")
    assert baseline.score("click_rate", np.ones(5), 0.01).details["insufficient"].startswith("5 queries")
    arrays, summary = baseline.state()
    assert RateShift.from_state(arrays, summary) == baseline
    with pytest.raises(ValueError, match="0/1"):
        RateShift.fit(np.array([0, 2, 1]), "drop")
