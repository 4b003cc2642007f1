"""The cycle's verdict controls the family-wise false-alarm rate (Holm); rules decide alone."""

from __future__ import annotations

import numpy as np

from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.stats import holm
from driftwatch.detect.verdict import verdict


def test_holm_by_hand() -> None:
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
    # sorted: d .005 <= .05/4; a .01 <= .05/3; c .03 > .05/2 -> stop
    assert {name for name, rejects in holm(p, 0.05).items() if rejects} == {"d", "a"}
    assert holm({"x": 0.06}, 0.05) == {"x": False} and holm({}, 0.05) == {}


def test_family_wise_rate_under_the_null() -> None:
    rng = np.random.default_rng(1)
    any_alarm = holm_alarm = 0
    for _ in range(4000):
        p = dict(enumerate(rng.random(8)))
        any_alarm += min(p.values()) < 0.05
        holm_alarm += any(holm(p, 0.05).values())
    assert any_alarm / 4000 > 0.3  # eight detectors at 5% each: a third of cycles would "drift"
    assert holm_alarm / 4000 < 0.06


def test_rules_and_fixed_thresholds_decide_alone() -> None:
    results = [
        DriftResult("model_version", 0.2, 0.0, None),
        DriftResult("spatial_kl", 0.5, 0.1, 0.02),  # drifted at its own alpha, not after Holm
        DriftResult("centroid_distance", 0.05, 0.01, 0.03),
        DriftResult("score_psi", None, None, None, {"insufficient": "no queries"}),
    ]
    judged = verdict(results, 0.01)
    assert judged.drift and judged.by_rule == ("model_version",) and judged.rejected == ()
    assert judged.tested == 2
    quiet = verdict(results[1:], 0.01)
    assert not quiet.drift
    fixed = verdict(results[1:], 0.01, fixed=frozenset({"spatial_kl"}))
    assert fixed.drift and fixed.by_rule == ("spatial_kl",)
