"""`driftwatch run`: one scheduled job per collection and one HTTP server.

The scheduler (APScheduler 3) runs each collection on its own interval or crontab, one
instance at a time, coalescing missed runs, with a little jitter so replicas and
collections do not all hit the database in the same second. The HTTP server answers
`/metrics` (Prometheus), `/healthz` (the process and its scheduler are alive), `/readyz`
(the store answers and every collection had a successful cycle within twice its period)
and `/alerts` (the alert engine's states, which alert links point to).

Notifications still owed are retried every `DELIVERY_TICK_SECONDS`, not only after a cycle,
so a retry's backoff holds whatever the schedule.

On SIGTERM/SIGINT no new cycle starts; a running one gets `STOP_GRACE_SECONDS` to finish.
One that does not is abandoned: a cycle is stored in one transaction, so an abandoned
cycle leaves nothing behind, and the process exits 0 either way. Cycle reports buffered
while the store was down get what is left of the grace to be written; the log says how
many were dropped.

On a SQLite store the daemon holds a lock on the store file for its lifetime: a second
daemon on the same file is refused at start (replicas need a PostgreSQL store).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry, make_wsgi_app
from sqlalchemy import Engine

from driftwatch import __version__
from driftwatch.alerting import AlertEngine
from driftwatch.config import CollectionSettings, Settings
from driftwatch.detect.units import format_duration
from driftwatch.errors import ConfigError, StoreError
from driftwatch.httpserver import HttpServer
from driftwatch.landing import ENDPOINTS, collection_rows, render
from driftwatch.metrics import Metrics
from driftwatch.monitor import Monitor
from driftwatch.store import repository
from driftwatch.store.locks import daemon_lock

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 8.0  # SIGTERM to exit stays under 10 s
MAX_JITTER_SECONDS = 30.0
DELIVERY_TICK_SECONDS = 5.0


def period_seconds(collection: CollectionSettings) -> float:
    """The schedule's period; for a crontab the longest of its next gaps (for staleness)."""
    if collection.cron is None:
        assert collection.interval_seconds is not None
        return collection.interval_seconds
    trigger = CronTrigger.from_crontab(collection.cron, timezone=UTC)
    fire = trigger.get_next_fire_time(None, datetime.now(UTC))
    gaps = []
    for _ in range(8):
        following = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if fire is None or following is None:
            break
        gaps.append((following - fire).total_seconds())
        fire = following
    return max(gaps) if gaps else 86400.0


def jitter_seconds(period: float) -> float:
    return min(0.1 * period, MAX_JITTER_SECONDS)


def once_per(period: float) -> float:
    """How long after a cycle of a collection started (on any replica) no replica starts
    another: the period less three jitters, since one replica's own fires may come two
    jitters early. Every replica schedules every collection; without this, each ran it."""
    return period - 3 * jitter_seconds(period)


def make_trigger(collection: CollectionSettings, period: float) -> BaseTrigger:
    """Interval schedules are aligned to the clock, at an offset set by the collection's name:
    every replica fires a collection at the same moments (give or take the jitter, which
    picks the one that runs it, so work spreads), and collections are spread over the period.
    Unaligned, the replica started first always fired first and ran nearly everything."""
    jitter = jitter_seconds(period)
    if collection.cron is None:
        offset = zlib.crc32(collection.name.encode()) % max(1, int(period * 1000)) / 1000
        aligned = datetime.fromtimestamp(offset, UTC)
        return IntervalTrigger(seconds=period, jitter=jitter, timezone=UTC, start_date=aligned)
    trigger = CronTrigger.from_crontab(collection.cron, timezone=UTC)
    trigger.jitter = jitter
    return trigger


def _respond(start_response: Callable[..., Any], status: str, body: Any) -> Iterable[bytes]:
    data = (json.dumps(body, indent=2, default=str) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class Daemon:
    """The scheduler, the HTTP server and the per-collection bookkeeping they share."""

    def __init__(self, settings: Settings, engine: Engine, registry: CollectorRegistry | None = None) -> None:
        if not settings.collections:
            raise ConfigError(["collections: none configured: nothing to monitor"])
        self.settings = settings
        self.engine = engine
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.alerts = AlertEngine(settings, engine, metrics=self.metrics)
        self.metrics.register_notifiers([n.key for n in self.alerts.notifiers])
        self.monitor = Monitor(settings, engine, self.metrics, self.alerts)
        self.periods = {c.name: period_seconds(c) for c in settings.collections}
        self.started_at = datetime.now(UTC)
        self.stopping = False
        self._running: set[str] = set()
        self._last_seconds: dict[str, float] = {}
        self._idle = threading.Condition()
        self._scheduler: BackgroundScheduler | None = None
        self._http: HttpServer | None = None
        self._store_lock: IO[bytes] | None = None
        self._metrics_app = make_wsgi_app(self.registry)
        for name, period in self.periods.items():
            self.metrics.register_collection(name, period)
            self.monitor.restore(name)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._store_lock = daemon_lock(self.engine)
        try:  # no cycle will step the alerts of a collection that left the config: resolve them
            self.alerts.retire(set(self.periods))
        except StoreError as exc:
            log.warning("alerts of collections that left the config not resolved now: %s", exc)
        host, port = self.settings.server.host, self.settings.server.port
        try:
            self._http = HttpServer((host, port), self.app, ipv6=":" in host)
        except OSError as exc:
            raise ConfigError([f"server: cannot listen on {host}:{port}: {exc.strerror or exc}"]) from None
        threading.Thread(target=self._http.serve_forever, name="driftwatch-http", daemon=True).start()
        workers = max(1, min(4, len(self.settings.collections)))
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)}, timezone=UTC
        )
        now = datetime.now(UTC)
        for collection in self.settings.collections:
            period = self.periods[collection.name]
            self._scheduler.add_job(
                self._job,
                make_trigger(collection, period),
                args=[collection.name],
                id=collection.name,
                name=f"cycle {collection.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(period)),
                next_run_time=now + timedelta(seconds=random.uniform(0, min(1.0, 0.1 * period))),
            )
        self._scheduler.add_job(
            self._deliver,
            IntervalTrigger(seconds=DELIVERY_TICK_SECONDS, timezone=UTC),
            id="deliver",
            name="retry owed notifications",
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()
        schedules = ", ".join(
            f"{c.name} ({'cron ' + c.cron if c.cron else f'every {format_duration(self.periods[c.name])}'})"
            for c in self.settings.collections
        )
        log.info("driftwatch %s serving %s/metrics; collections: %s", __version__, self._url(), schedules)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> bool:
        """Stop scheduling, wait up to `grace` seconds for running cycles; True if none was abandoned."""
        self.stopping = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + grace
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            abandoned = sorted(self._running)
        self.monitor.drain(max(1.0, deadline - time.monotonic()))
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._store_lock is not None:
            self._store_lock.close()  # the lock goes with the file
            self._store_lock = None
        if abandoned:
            log.warning(
                "stopping with the cycle of %s unfinished; nothing of it is stored", ", ".join(abandoned)
            )
            return False
        self.engine.dispose()
        return True

    def serve_forever(self) -> int:
        """Run until SIGTERM or SIGINT; always exits 0 within ten seconds of the signal."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        self.start()
        while not stop.wait(0.5):
            pass
        if not self.stop():
            logging.shutdown()
            os._exit(0)  # worker threads would otherwise be joined at exit, however long they take
        return 0

    def _job(self, name: str) -> None:
        if self.stopping:
            return
        with self._idle:
            self._running.add(name)
        try:
            report = self.monitor.run(name, self.periods[name], once_per=once_per(self.periods[name]))
            if report is not None:
                self._last_seconds[name] = report.seconds
        except Exception:  # the scheduler must never lose a collection's job to a bug
            log.exception("cycle for %s crashed", name)
        finally:
            with self._idle:
                self._running.discard(name)
                self._idle.notify_all()

    def _deliver(self) -> None:
        """Retry what is owed between cycles; a cycle delivers too, the outbox keeps them apart."""
        if self.stopping:
            return
        for name, period in self.periods.items():
            try:
                self.alerts.deliver(name, period)
            except StoreError as exc:
                log.debug("owed notifications of %s not retried now: %s", name, exc)
            except Exception:
                log.exception("retrying owed notifications of %s failed", name)

    def _url(self) -> str:
        return self.settings.server.base_url

    # ------------------------------------------------------------ HTTP

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the store answers and every collection has a baseline, its newest
        cycle succeeded, and that success is within 2x its period (plus its last cycle's
        duration). A fresh daemon is not ready until each collection's first cycle succeeds:
        until then it would serve nothing but old or no verdicts."""
        if self.stopping:
            return False, {"ready": False, "reason": "stopping"}
        try:
            baselines = repository.baseline_collections(self.engine)
            newest = repository.last_cycles(self.engine)
            last = repository.last_successes(self.engine)
        except StoreError as exc:
            return False, {"ready": False, "store": str(exc)}
        now = datetime.now(UTC)
        collections = {name: self._collection_readiness(name, period, name in baselines,
                                                        newest.get(name), last.get(name), now)
                       for name, period in self.periods.items()}  # fmt: skip
        ready = all(c["ready"] for c in collections.values())
        return ready, {"ready": ready, "store": "ok", "collections": collections}

    def _collection_readiness(
        self, name: str, period: float, baseline: bool, cycle: Any, success: datetime | None, now: datetime
    ) -> dict[str, Any]:
        allowed = 2 * period + self._last_seconds.get(name, 0.0)
        age = (now - success).total_seconds() if success else None
        if not baseline:
            reason = f"no baseline: run `driftwatch baseline capture --collection {name}`"
        elif cycle is not None and cycle.status == "failed":
            reason = f"its last cycle failed: {cycle.error or 'see the log'}"
        elif success is None:
            reason = "no successful cycle yet"
        elif age is not None and age > allowed:
            reason = f"no successful cycle for {format_duration(age)} (allowed {format_duration(allowed)})"
        else:
            reason = None
        return {
            "ready": reason is None,
            "reason": reason,
            "fresh": age is not None and age <= allowed,
            "last_success": success.isoformat() if success else None,
            "age_seconds": None if age is None else round(age, 3),
            "allowed_seconds": round(allowed, 3),
        }

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            alive = self._scheduler is not None and (self._scheduler.running or self.stopping)
            return _respond(
                start_response, "200 OK" if alive else "503 Service Unavailable", {"alive": alive}
            )
        if path == "/readyz":
            ready, body = self.readiness()
            return _respond(start_response, "200 OK" if ready else "503 Service Unavailable", body)
        if path == "/alerts":
            try:
                views = self.alerts.states()
            except StoreError as exc:
                return _respond(start_response, "503 Service Unavailable", {"error": str(exc)})
            return _respond(start_response, "200 OK", {"alerts": [v.to_dict() for v in views]})
        if path == "/":
            page = self.landing().encode()
            start_response(
                "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]
            )
            return [page]
        missing = {"error": f"no such endpoint {path}", "endpoints": ["/", *ENDPOINTS]}
        return _respond(start_response, "404 Not Found", missing)

    def landing(self) -> str:
        """The page at `/`: collections, their state, the alerts with what to do, the endpoints."""
        names = list(self.periods)
        try:
            _ready, readiness = self.readiness()
            cycles = repository.last_cycles(self.engine)
            baselines = repository.baseline_collections(self.engine)
            drifted: dict[str, list[str]] = {}
            for point in repository.latest_points(self.engine):
                if point.drifted and point.collection in self.periods:
                    drifted.setdefault(point.collection, []).append(point.detector)
            alerts = self.alerts.states()
        except StoreError as exc:
            rows = collection_rows(names, {}, {}, set(), {})
            return render(__version__, rows, [], f"driftwatch's own store is unreachable: {exc}")
        rows = collection_rows(names, readiness, cycles, baselines, drifted)
        return render(__version__, rows, [a for a in alerts if a.collection in self.periods], None)


__all__ = ["Daemon", "make_trigger", "once_per", "period_seconds"]
