"""The Prometheus side: every metric docs/design.md names (docs/metrics.md lists them), on a
registry passed in so tests and embedders make their own.

A detector that could not judge this cycle (index health not due, no queries in the window)
leaves its gauges at the last measurement; `driftwatch_detector_last_measured_timestamp_seconds`
marks how old that is (equal to `driftwatch_last_cycle_timestamp_seconds` when it measured in
the newest cycle), and the alert rules and the dashboard count only current readings. A
daemon starting up restores every detector's last reading from the store (`restore`), so a
detector measured by an earlier process (index health by a `check`) is not blank for hours.
Label sets are bounded: collections come from the config, detectors from a fixed list, model
versions are capped per collection.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from driftwatch import __version__
from driftwatch.cycle import CollectionReport
from driftwatch.detect.detectors import DriftResult

MAX_VERSIONS = 10  # model_version label values per collection; the rarest beyond this are dropped
NOTIFICATION_OUTCOMES = ("delivered", "retry", "failed")
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        by_collection = ["collection"]
        by_detector = ["collection", "detector"]

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, by_collection, registry=registry)

        gauge("driftwatch_build_info", "driftwatch build; always 1.", ["version"]).labels(__version__).set(1)
        self.value = gauge(
            "driftwatch_detector_value",
            "Latest detector value, oriented so that higher means more drift (unitless).",
            by_detector,
        )
        self.threshold = gauge(
            "driftwatch_detector_threshold",
            "Threshold the value is compared with: the calibrated no-drift 1-alpha quantile, or a fixed one.",
            by_detector,
        )
        self.p_value = gauge(
            "driftwatch_detector_p_value",
            "p-value of the latest detector value under the calibrated no-drift distribution.",
            by_detector,
        )
        self.drifted = gauge(
            "driftwatch_drifted",
            "1 if the detector's latest value is over its threshold, else 0.",
            by_detector,
        )
        self.measured = gauge(
            "driftwatch_detector_last_measured_timestamp_seconds",
            "Unix time the detector last produced a value.",
            by_detector,
        )
        self.recall = gauge(
            "driftwatch_recall_at_k",
            "Recall@K of the reference suite through the live ANN index (ratio).",
            ["collection", "k"],
        )
        self.version_info = gauge(
            "driftwatch_model_version_info",
            "1 for each embedding model version present in the latest sample.",
            ["collection", "model_version"],
        )
        self.mixed = gauge(
            "driftwatch_model_version_mixed_ratio",
            "Share of sampled rows not on the dominant model version (ratio).",
            by_collection,
        )
        self.duration = Histogram(
            "driftwatch_cycle_duration_seconds",
            "Wall time of one collection's cycle, failed cycles included.",
            by_collection,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.interval = gauge(
            "driftwatch_cycle_interval_seconds", "The collection's schedule period in seconds.", by_collection
        )
        self.cycles = counter("driftwatch_cycles_total", "Cycles this process ran, failed ones included.")
        self.failures = counter("driftwatch_cycle_failures_total", "Cycles that failed; the log says why.")
        self.skipped = counter(
            "driftwatch_cycles_skipped_total",
            "Cycles skipped because another replica held the collection's lock.",
        )
        self.last_success = gauge(
            "driftwatch_last_cycle_timestamp_seconds",
            "Unix time the last successful cycle of the collection finished.",
            by_collection,
        )
        self.sample_size = gauge(
            "driftwatch_sample_size", "Clean vectors scored in the latest cycle.", by_collection
        )
        self.candidates = counter(
            "driftwatch_finetune_candidates_total", "Fine-tuning triplets mined from click feedback."
        )
        self.alerts_firing = gauge(
            "driftwatch_alerts_firing",
            "Alerts of driftwatch's own alert engine now firing.",
            ["collection", "severity"],
        )
        self.buffered = Gauge(
            "driftwatch_store_buffered_cycles",
            "Cycle reports held in memory because driftwatch's own store is unreachable.",
            registry=registry,
        )
        self.notifications = Counter(
            "driftwatch_notifications_total",
            "Notification attempts by outcome: delivered, retry (failed, will be retried), "
            "failed (given up after alerts.max_attempts).",
            ["notifier", "outcome"],
            registry=registry,
        )
        self._versions: dict[str, set[str]] = {}
        self._recall_k: dict[str, str] = {}

    def register_collection(self, name: str, period_seconds: float) -> None:
        """Create the per-collection series at zero, so rate() and absent() work from the first scrape."""
        self.interval.labels(name).set(period_seconds)
        for family in (self.cycles, self.failures, self.skipped, self.candidates):
            family.labels(name)
        for severity in ("info", "warning", "critical"):
            self.alerts_firing.labels(name, severity).set(0)

    def register_notifiers(self, keys: list[str]) -> None:
        """Every notifier's outcomes start at zero, so increase() sees the first failure."""
        for key in keys:
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(key, outcome)

    def notification(self, notifier: str, outcome: str) -> None:
        self.notifications.labels(notifier, outcome).inc()

    def cycle_finished(self, report: CollectionReport, finished_at: float) -> None:
        """Count a cycle this process ran and show its verdicts."""
        self.cycles.labels(report.name).inc()
        self.duration.labels(report.name).observe(report.seconds)
        if report.status == "failed":
            self.failures.labels(report.name).inc()
            return
        self.show(report, finished_at)

    def show(self, report: CollectionReport, finished_at: float) -> None:
        """Set the gauges from a successful cycle: one this process ran, or (on a replica that
        skipped it) the newest one in the store, so every replica exports the same state."""
        name = report.name
        self.last_success.labels(name).set(finished_at)
        if report.sample_size is not None:
            self.sample_size.labels(name).set(report.sample_size)
        for result in report.results:
            if result.value is not None:  # else it could not judge this cycle: the last reading stands
                self.reading(name, result, finished_at)
        self._set_versions(name, report.model_versions)

    def reading(self, name: str, result: DriftResult, measured_at: float) -> None:
        """One detector's measurement, made in the cycle that finished at `measured_at`."""
        assert result.value is not None
        labels = (name, result.detector)
        self.value.labels(*labels).set(result.value)
        if result.threshold is not None:
            self.threshold.labels(*labels).set(result.threshold)
        if result.p_value is not None:
            self.p_value.labels(*labels).set(result.p_value)
        else:
            self._forget(self.p_value, labels)
        self.drifted.labels(*labels).set(1 if result.drifted else 0)
        self.measured.labels(*labels).set(measured_at)
        if result.detector == "recall_at_k" and "recall" in result.details:
            self._set_recall(name, result)

    def _set_recall(self, name: str, result) -> None:  # type: ignore[no-untyped-def]
        k = str(result.details.get("k", ""))
        previous = self._recall_k.get(name)
        if previous is not None and previous != k:
            self._forget(self.recall, (name, previous))
        self._recall_k[name] = k
        self.recall.labels(name, k).set(float(result.details["recall"]))

    def _set_versions(self, name: str, model_versions: dict) -> None:  # type: ignore[type-arg]
        counts: dict[str, int] = dict(model_versions.get("counts") or {})
        if not counts:
            return
        top = sorted(counts, key=lambda v: -counts[v])[:MAX_VERSIONS]
        for gone in self._versions.get(name, set()) - set(top):
            self._forget(self.version_info, (name, gone))
        for version in top:
            self.version_info.labels(name, version).set(1)
        self._versions[name] = set(top)
        total = sum(counts.values())
        self.mixed.labels(name).set((total - counts[top[0]]) / total if total else 0.0)

    def cycle_skipped(self, name: str) -> None:
        self.skipped.labels(name).inc()

    def set_alerts(self, name: str, firing: dict[str, int]) -> None:
        for severity, count in firing.items():
            self.alerts_firing.labels(name, severity).set(count)

    def candidates_mined(self, name: str, count: int) -> None:
        self.candidates.labels(name).inc(count)

    @staticmethod
    def _forget(family: Gauge, labels: tuple[str, ...]) -> None:
        with contextlib.suppress(KeyError):
            family.remove(*labels)


__all__ = ["Metrics"]
