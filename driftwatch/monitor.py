"""One collection's whole pass, as `driftwatch run` and `driftwatch check` both do it: take the
collection's lock, run the cycle, step the alerts, deliver what is owed, mine the clicks,
update the metrics.

A pass holds one connection per monitored database (`pg.session.Sessions`), opened at its
first read and closed when the pass ends: the cycle reads everything in one snapshot and
ends it, then click mining reads on the same connections in a snapshot of its own.

Nothing here raises for a failing cycle: a down vector store, a down store or a bug becomes
a failed report with its cause, counted and logged, so the daemon keeps going. When
driftwatch's own store is down, reports (computed results, or the failure itself) wait in a
bounded in-memory buffer and are written, with their own timestamps, once it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine

from driftwatch.alerting import AlertEngine
from driftwatch.config import CollectionSettings, Settings
from driftwatch.cycle import CollectionReport, check_collection, failed_report, record
from driftwatch.detect.detectors import DriftResult
from driftwatch.errors import DriftwatchError, StoreError
from driftwatch.feedback import mine_collection
from driftwatch.metrics import Metrics
from driftwatch.pg.session import Sessions
from driftwatch.secrets import known_passwords, scrub
from driftwatch.store import repository
from driftwatch.store.locks import collection_lock

log = logging.getLogger(__name__)

BUFFER_LIMIT = 100  # cycle reports held in memory while driftwatch's own store is down


class Monitor:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        metrics: Metrics | None = None,
        alerts: AlertEngine | None = None,
        mine: bool = True,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.alerts = alerts
        self.mine = mine
        self.unsaved: deque[tuple[str, CollectionReport]] = deque()  # reports the store could not take yet

    def run(
        self,
        name: str,
        period_seconds: float,
        cycle_id: str | None = None,
        rng: np.random.Generator | None = None,
        once_per: float | None = None,
    ) -> CollectionReport | None:
        """The collection's report, or None when another replica holds its lock or (with
        `once_per` seconds, see `daemon.once_per`) started a cycle of it that recently:
        every replica schedules every collection, and without that check each ran it."""
        collection = self.settings.collection(name)
        cycle_id = cycle_id or str(uuid.uuid4())
        started_at, clock = datetime.now(UTC), time.monotonic()
        self._flush()
        try:
            with collection_lock(self.engine, name) as mine:
                why = "another replica is running it" if not mine else self._ran_within(name, once_per)
                if why:
                    log.info("cycle for %s skipped: %s", name, why)
                    if self.metrics:
                        self.metrics.cycle_skipped(name)
                        self._mirror(name)
                    return None
                with Sessions(collection) as sessions:
                    report = self._check(collection, cycle_id, rng, started_at, clock, sessions)
                    if report.unsaved is None:
                        self._alert(report, period_seconds)
                        self._mine(collection, report, sessions)
        except StoreError as exc:  # the lock itself needs the store
            report = failed_report(name, started_at, time.monotonic() - clock, str(exc))
            report.unsaved = str(exc)
            log.error("cycle %s for %s failed: %s", cycle_id, name, exc)
        if report.unsaved is not None:
            self._buffer(cycle_id, report)
        if self.metrics:
            self.metrics.cycle_finished(report, time.time())
        return report

    def _ran_within(self, name: str, seconds: float | None) -> str | None:
        """Why not to run now: a cycle of `name` started less than `seconds` ago (read under
        the collection's lock, so the replica that ran it has stored it)."""
        if seconds is None:
            return None
        last = repository.last_cycle_start(self.engine, name)
        if last is None or (datetime.now(UTC) - last).total_seconds() >= seconds:
            return None
        return f"a replica started one {(datetime.now(UTC) - last).total_seconds():.1f}s ago"

    def _buffer(self, cycle_id: str, report: CollectionReport) -> None:
        """Keep a report the store could not take; the oldest goes when the buffer is full."""
        if len(self.unsaved) == BUFFER_LIMIT:
            lost_id, lost = self.unsaved.popleft()
            log.error("store still down: dropping the buffered cycle %s of %s", lost_id, lost.name)
        self.unsaved.append((cycle_id, report))
        log.warning(
            "store unreachable: cycle %s of %s kept in memory (%d buffered, at most %d): %s",
            cycle_id, report.name, len(self.unsaved), BUFFER_LIMIT, report.unsaved,
        )  # fmt: skip
        if self.metrics:
            self.metrics.buffered.set(len(self.unsaved))

    def _flush(self) -> None:
        """Write buffered reports, oldest first, as soon as the store answers again."""
        while self.unsaved:
            cycle_id, report = self.unsaved[0]
            try:
                record(self.engine, cycle_id, report)
            except StoreError:
                return
            self.unsaved.popleft()
            log.info(
                "store is back: buffered cycle %s of %s (%s) written", cycle_id, report.name, report.status
            )
        if self.metrics:
            self.metrics.buffered.set(0)

    def drain(self, seconds: float) -> int:
        """At shutdown: try to write the buffered reports within `seconds`; returns how many
        could not be written, and logs it. The attempt runs on a daemon thread, so a store
        that hangs cannot hold up the exit."""
        if not self.unsaved:
            return 0
        held = len(self.unsaved)
        writer = threading.Thread(target=self._flush, name="driftwatch-drain", daemon=True)
        writer.start()
        writer.join(seconds)
        dropped = len(self.unsaved)
        if dropped:
            log.error(
                "stopping: %d of %d buffered cycle report(s) could not be written to the store "
                "within %.1fs and are dropped", dropped, held, seconds,
            )  # fmt: skip
        else:
            log.info("stopping: %d buffered cycle report(s) written to the store", held)
        return dropped

    def restore(self, name: str) -> None:
        """At start: the gauges of the store's newest successful cycle, then each detector
        that did not measure in it at its own last reading (with when it was made), so a
        fresh daemon does not show nothing for a detector that runs every few hours."""
        assert self.metrics is not None
        self._mirror(name)
        try:
            latest = repository.latest_success(self.engine, name)
            points = repository.latest_measured(self.engine, name)
            finished = repository.cycle_finishes(self.engine, {p.cycle_pk for p in points})
        except StoreError as exc:
            log.warning("could not read %s's last readings from the store: %s", name, exc)
            return
        newest = latest[0].id if latest else None
        for p in points:
            if p.cycle_pk != newest and p.cycle_pk in finished:
                result = DriftResult(p.detector, p.value, p.threshold, p.p_value, dict(p.details or {}))
                self.metrics.reading(name, result, finished[p.cycle_pk].timestamp())

    def _mirror(self, name: str) -> None:
        """Show the store's newest successful cycle, so this replica's gauges are not stale."""
        assert self.metrics is not None
        try:
            latest = repository.latest_success(self.engine, name)
        except StoreError as exc:
            log.warning("could not read %s's latest cycle from the store: %s", name, exc)
            return
        if latest is None:
            return
        cycle, points = latest
        results = [
            DriftResult(p.detector, p.value, p.threshold, p.p_value, dict(p.details or {})) for p in points
        ]
        finished = cycle.finished_at or cycle.started_at
        report = CollectionReport(
            name,
            cycle.status,
            cycle.started_at,
            (finished - cycle.started_at).total_seconds(),
            sample_size=cycle.sample_size,
            model_versions=dict(cycle.model_versions or {}),
            results=results,
        )
        self.metrics.show(report, finished.timestamp())
        if self.alerts is not None:
            self.metrics.set_alerts(name, self.alerts.firing_counts(name))

    def _check(self, collection, cycle_id, rng, started_at, clock, sessions) -> CollectionReport:  # type: ignore[no-untyped-def]
        try:
            return check_collection(collection, self.engine, cycle_id, rng, sessions)
        except StoreError as exc:  # the store was down before anything could be computed
            log.error("cycle %s for %s failed (store unreachable): %s", cycle_id, collection.name, exc)
            report = failed_report(collection.name, started_at, time.monotonic() - clock, str(exc))
            report.unsaved = str(exc)
            return report
        except Exception as exc:  # a bug must not stop the daemon; its traceback goes to the log
            log.exception("cycle %s for %s failed with an unexpected error", cycle_id, collection.name)
            why = scrub(f"internal error: {type(exc).__name__}: {exc}", known_passwords(collection.urls()))
            report = failed_report(collection.name, started_at, time.monotonic() - clock, why)
            try:
                record(self.engine, cycle_id, report)
            except StoreError as store_exc:
                report.unsaved = str(store_exc)
            return report

    def _mine(self, collection: CollectionSettings, report: CollectionReport, sessions: Sessions) -> None:
        """New clicks become fine-tuning candidates, read on the pass's connections; a failure
        here never fails the cycle."""
        if (
            not self.mine
            or report.status == "failed"
            or not collection.query_log
            or not collection.text_column
        ):
            return
        spatial = next((r for r in report.results if r.detector == "spatial_kl"), None)
        try:
            mined = mine_collection(collection, self.engine, datetime.now(UTC), spatial, sessions)
        except DriftwatchError as exc:
            log.warning("fine-tuning candidates for %s not mined this cycle: %s", collection.name, exc)
            return
        if self.metrics:
            self.metrics.candidates_mined(collection.name, mined.new_candidates)

    def _alert(self, report: CollectionReport, period_seconds: float) -> None:
        if self.alerts is None:
            return
        try:
            report.alerts = [view.to_dict() for view in self.alerts.evaluate(report)]
            self.alerts.deliver(report.name, period_seconds)
            if self.metrics:
                self.metrics.set_alerts(report.name, self.alerts.firing_counts(report.name))
        except StoreError as exc:
            log.error("alerts for %s not evaluated (store unreachable): %s", report.name, exc)
        except Exception:  # the cycle is stored: a bug in alerting must not undo its metrics
            log.exception("alerts for %s failed with an unexpected error", report.name)


__all__ = ["Monitor"]
