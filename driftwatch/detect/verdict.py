"""One verdict per cycle. Each detector tests at `false_alarm_rate` on its own; with a dozen
detectors, "any of them drifted" would be wrong about a dozen times as often. The cycle's
verdict (status `drift`, exit code 1) instead controls the family-wise false-alarm rate:
Holm's step-down procedure over the p-values of the detectors that measured this cycle.

A detector that judges by a rule rather than a p-value (a model push, a fixed threshold the
user set) decides for itself: its verdict is not a statistical guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from driftwatch.detect.results import DriftResult
from driftwatch.detect.stats import holm


@dataclass(frozen=True)
class Verdict:
    """Which detectors make the cycle's drift verdict, and why."""

    drift: bool
    rejected: tuple[str, ...]  # by Holm, at the family-wise rate
    by_rule: tuple[str, ...]  # drifted by their own rule (no p-value, or a fixed threshold)
    tested: int  # detectors with a p-value in the family

    def to_dict(self) -> dict[str, object]:
        return {
            "drift": self.drift,
            "method": "holm",
            "rejected": list(self.rejected),
            "by_rule": list(self.by_rule),
            "tested": self.tested,
        }


def verdict(results: Sequence[DriftResult], alpha: float, fixed: frozenset[str] = frozenset()) -> Verdict:
    """The cycle's verdict over the detectors that measured; `fixed` names those whose
    threshold the user fixed."""
    measured = [r for r in results if r.value is not None]
    by_rule = tuple(r.detector for r in measured if r.drifted and (r.p_value is None or r.detector in fixed))
    family = {r.detector: r.p_value for r in measured if r.p_value is not None and r.detector not in fixed}
    rejected = tuple(sorted(name for name, rejects in holm(family, alpha).items() if rejects))
    return Verdict(bool(rejected or by_rule), rejected, by_rule, len(family))


__all__ = ["Verdict", "verdict"]
