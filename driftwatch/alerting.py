"""The alert engine: turns each cycle's detector verdicts into alerts that move through
inactive → pending → firing → resolved, kept in the store so a restart neither forgets a
firing alert nor pages for it again before `repeat_interval`.

A model push is one event, so it pages once: the query-side canary's moved probes, a new
`model_version` or vector dimension, or sentinel rows whose stored vectors changed raise a
critical alert at once — the first of them pages, the others wait while it fires — and while
it stands the collection's distribution alerts are held back (their values are still
recorded) until a baseline for the new version is captured.

Delivery is an outbox (store.models.Delivery): the state change and one row per notifier
that owes it are committed together. Delivery is at-least-once, and bounded: each attempt is
claimed in the store before it is sent, retried with exponential backoff and jitter, and
given up (logged, counted as `failed`) after `alerts.max_attempts`. A crash between a POST
and recording it resends the same notification with the same idempotency key, at most
`max_attempts` times in all; any exception a notifier raises stays inside that attempt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from driftwatch.config import Settings
from driftwatch.cycle import CollectionReport
from driftwatch.detect.detectors import DriftResult
from driftwatch.detect.registry import REGISTRY
from driftwatch.errors import NotifyError
from driftwatch.guidance import BACK_UNDER, LEFT_CONFIG, NEW_BASELINE, RULE_GONE, annotations, where_text
from driftwatch.notify import Alert, Notifier, make_notifiers
from driftwatch.store.locks import lock_alert_state
from driftwatch.store.models import AlertState, Delivery, utcnow
from driftwatch.store.repository import guard

if TYPE_CHECKING:
    from driftwatch.metrics import Metrics

log = logging.getLogger(__name__)

PUSHED = "EmbeddingModelVersionPushed"
CHANGED = "EmbeddingFunctionChanged"
DRIFT = "EmbeddingDrift"


@dataclass(frozen=True)
class Candidate:
    """What one cycle says about one alert: is its condition true (None = no evidence)?"""

    labels: dict[str, str]
    for_cycles: int
    condition: bool | None
    value: float | None
    annotations: dict[str, str]
    held: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


def fingerprint(labels: dict[str, str]) -> str:
    """Stable id of an alert: its label set, as Alertmanager identifies alerts."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _labels(alertname: str, collection: str, detector: str, severity: str) -> dict[str, str]:
    return {"alertname": alertname, "collection": collection, "detector": detector, "severity": severity}


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%" if share >= 0.01 or share == 0 else f"{100 * share:.2g}%"


def _share(counts: dict[str, int], versions: list[str]) -> str:
    total = sum(counts.values())
    return _pct(sum(c for v, c in counts.items() if v in versions) / total if total else 0.0)


def push_candidates(
    collection: str, result: DriftResult | None, canary: DriftResult | None = None
) -> list[Candidate]:
    """The built-in critical alerts of a model push: from the model_version result (a new
    version or dimension; changed sentinel rows) and from the query-side canary."""
    details = result.details if result is not None else {}
    if result is None or result.value is None:
        empty = [
            Candidate(_labels(name, collection, "model_version", "critical"), 1, None, None, {})
            for name in (PUSHED, CHANGED)
        ]
        return [*empty, canary_candidate(collection, canary)]
    new = [str(v) for v in details.get("new_versions", [])]
    new_dims = [int(d) for d in details.get("new_dims", [])]
    before = [str(v) for v in details.get("baseline_versions", [])]
    old = before[0] if before else "unversioned"
    capture = f"driftwatch baseline capture --collection {collection}"
    target = new[0] if new else "NEW"
    adapter = f"driftwatch adapter fit --collection {collection} --from-version {old} --to-version {target}"
    pushed = Candidate(
        _labels(PUSHED, collection, "model_version", "critical"),
        1,
        bool(new or new_dims),
        result.value,
        {
            "summary": f"{collection}: {_push_summary(details, old, new, new_dims)}",
            "description": (
                "Queries and documents embedded by different models do not share a space: retrieval degrades "
                f"without an error. {_held(collection)} Once every row is re-embedded, capture the new "
                f"baseline: `{capture}`. Until then, `{adapter}` maps new-model queries into the old index."
            ),
        },
    )
    changed_rows, checked = int(details.get("sentinels_changed", 0)), int(details.get("sentinels_checked", 0))
    changed = Candidate(
        _labels(CHANGED, collection, "model_version", "critical"),
        1,
        changed_rows > 0 and not new and not new_dims,
        changed_rows / checked if checked else None,
        {
            "summary": (
                f"{collection}: {changed_rows} of {checked} sentinel rows have a different stored vector "
                "under the same id, with no new model_version: the embedding function changed in place"
            ),
            "description": (
                f"Something re-embedded rows without a version change. {_held(collection)} If the change is "
                f"intended, capture a new baseline: `{capture}`; see also `driftwatch adapter fit`."
            ),
        },
    )
    return [pushed, changed, canary_candidate(collection, canary)]


def _held(collection: str) -> str:
    return (
        f"Distribution alerts for {collection} are held back (values still recorded) until a baseline "
        "for the new version exists."
    )


def _push_summary(details: dict[str, Any], old: str, new: list[str], new_dims: list[int]) -> str:
    """`v1 → v2` with the shares on it, and `dimension 8 → 16` with its share."""
    parts = []
    if new:
        counts, logged = details.get("versions", {}), details.get("querylog_versions", {})
        shares = [f"{_share(counts, new)} of sampled rows"]
        if logged:
            shares.append(f"{_share(logged, new)} of logged queries")
        mixed = _pct(float(details.get("mixed_fraction", 0.0)))
        parts.append(
            f"embedding model version pushed: {old} → {', '.join(new)}; {' and '.join(shares)} "
            f"are on it (mixed-version fraction {mixed})"
        )
    if new_dims:
        share = _pct(float(details.get("new_dim_fraction", 0.0)))
        dims = f"dimension {details.get('baseline_dim')} → {', '.join(map(str, new_dims))}"
        moved = f"{dims}: {share} of sampled rows are of the new dimension"
        parts.append(moved if new else f"embedding model pushed: {moved} (no new model_version)")
    return "; ".join(parts)


def canary_candidate(collection: str, result: DriftResult | None) -> Candidate:
    """EmbeddingFunctionChanged from the canary: the live embedder moved the probe texts, on
    the query side, before any stored row changed."""
    labels = _labels(CHANGED, collection, "embedding_canary", "critical")
    if result is None or result.value is None:
        return Candidate(labels, 1, None, None, {})
    d = result.details
    if d.get("dimension"):
        dims = d["dimension"]
        how = f"the embedder now returns {dims['now']}-d vectors, {dims['baseline']}-d at baseline"
    else:
        how = (
            f"lowest cosine with its baseline vector {d.get('min_cosine', float('nan')):.4f}, median "
            f"{d.get('median_cosine', float('nan')):.4f}; round-off stays above {d.get('min_cosine_bound')}"
        )
    capture = f"driftwatch baseline capture --collection {collection}"
    return Candidate(
        labels,
        1,
        result.drifted,
        result.value,
        {
            "summary": (
                f"{collection}: the query-side embedding function changed: {d.get('moved', 0)} of "
                f"{d.get('probes', 0)} canary probes moved ({how})"
            ),
            "description": (
                "The live embedder no longer embeds the canary's probe texts as at baseline capture: "
                "another model, a dropped instruction prefix such as `query: `, or new normalisation or "
                "quantisation. "
                f"Queries embedded now miss documents embedded before. {_held(collection)} Unintended: roll "
                f"the embedding service back. Intended: re-embed the rows, then `{capture}`; meanwhile "
                f"`driftwatch adapter fit --collection {collection}` maps new queries into the old index."
            ),
        },
    )


def one_page_per_push(candidates: list[Candidate], firing: set[str]) -> list[Candidate]:
    """A push pages once: the canary usually sees it first, then rows or logged queries carry
    the new version. While one of the push alerts fires (`firing`: fingerprints), the others
    are held back; when both start in one cycle, the canary's pages."""
    canary = next(c for c in candidates if c.labels["detector"] == "embedding_canary")
    others = [c for c in candidates if c is not canary]
    canary_up = canary.fingerprint in firing or bool(canary.condition)
    other_up = any(c.fingerprint in firing for c in others)
    return [
        replace(canary, held=other_up and canary.fingerprint not in firing),
        *(replace(c, held=canary_up and c.fingerprint not in firing) for c in others),
    ]


def rule_candidates(settings: Settings, report: CollectionReport, held: bool) -> list[Candidate]:
    """One candidate per (rule, detector); a rule naming a detector beats `any` on the same labels."""
    results = {r.detector: r for r in report.results}
    chosen: dict[str, tuple[bool, Candidate]] = {}
    for rule in settings.alerts.rules:
        if rule.collection not in (None, report.name):
            continue
        specific = rule.detector != "any"
        for detector in (rule.detector,) if specific else REGISTRY.rule_names():
            result = results.get(detector)
            value = None if result is None else result.value
            threshold = (
                rule.threshold if rule.threshold is not None else (result.threshold if result else None)
            )
            if value is None or threshold is None:
                condition = None
            else:
                condition = value > threshold and (rule.min_effect is None or value >= rule.min_effect)
            labels = _labels(DRIFT, report.name, detector, rule.severity)
            candidate = Candidate(
                labels,
                rule.for_cycles,
                condition,
                value,
                _drift_text(report.name, detector, result, threshold, settings.alerts.runbook_url),
                held,
            )
            if specific or not chosen.get(candidate.fingerprint, (False,))[0]:
                chosen[candidate.fingerprint] = (specific, candidate)
    return [c for _, c in chosen.values()]


def _drift_text(
    collection: str,
    detector: str,
    result: DriftResult | None,
    threshold: float | None,
    runbook_url: str | None,
) -> dict[str, str]:
    if result is None or result.value is None:
        return {}
    p = f", p={result.p_value:.2g}" if result.p_value is not None else ""
    guide = annotations(detector, runbook_url)
    where = where_text(result.details)
    text = {
        "summary": f"{collection}: {detector} = {result.value:.4g} over threshold {threshold:.4g}{p}",
        "description": f"{where + ' ' if where else ''}What to do: {guide['action']}. "
        f"Runbook: {guide['runbook']}",
    }
    return {**text, "where": where} if where else text


@dataclass(frozen=True)
class AlertView:
    """An alert as `check --json`, `/alerts` and the metrics report it."""

    alertname: str
    state: str
    severity: str
    detector: str
    collection: str
    summary: str
    active_since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    fingerprint: str
    action: str = ""  # what to do (the detector's registry entry)
    runbook: str = ""  # where its runbook entry is: a URL, or the `driftwatch runbook` command
    description: str = ""
    resolved_because: str | None = None
    where: str = ""  # which rows a regional detector is about, when it says

    def to_dict(self) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "state": self.state,
            "severity": self.severity,
            "detector": self.detector,
            "collection": self.collection,
            "summary": self.summary,
            "description": self.description,
            "action": self.action,
            "runbook": self.runbook,
            "active_since": _iso(self.active_since),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
            "resolved_because": self.resolved_because,
            "where": self.where or None,
            "fingerprint": self.fingerprint,
        }

    def lines(self) -> list[str]:
        """The alert as `status` and `check` print it: what happened, then what to do."""
        since = self.resolved_at if self.state == "resolved" else self.active_since
        when = f" since {since:%Y-%m-%d %H:%M:%S}Z" if since else ""
        head = f"alert {self.state}{when}: {self.alertname} ({self.severity}) {self.summary}"
        if self.state == "resolved":
            return [head, f"  resolved: {self.resolved_because or 'the condition no longer holds'}"]
        where = [f"  {self.where}"] if self.where else []
        return [head, *where, f"  do: {self.action}", f"  runbook: {self.runbook}"]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _view(row: AlertState, runbook_url: str | None) -> AlertView:
    notes = row.annotations or {}
    guide = annotations(row.detector, runbook_url)
    return AlertView(
        row.alertname,
        row.state,
        row.severity,
        row.detector,
        row.collection,
        str(notes.get("summary", "")),
        row.active_since,
        row.fired_at,
        row.resolved_at,
        row.fingerprint,
        action=guide["action"],
        runbook=guide["runbook"],
        description=str(notes.get("description", "")),
        resolved_because=notes.get("resolved_because") if row.state == "resolved" else None,
        where=str(notes.get("where", "")),
    )


def _public(notes: dict[str, Any] | None) -> dict[str, str]:
    """Annotations as receivers get them: driftwatch's own bookkeeping (keys starting with
    "_") stays in the store."""
    return {str(k): str(v) for k, v in (notes or {}).items() if not str(k).startswith("_") and v is not None}


def _why_resolved(row: AlertState, baseline_id: int | None) -> str:
    """Why a condition that held no longer does: the baseline it was measured against was
    replaced, or the value itself came back."""
    before = (row.annotations or {}).get("_baseline_id")
    if before is not None and baseline_id is not None and before != baseline_id:
        return NEW_BASELINE
    return BACK_UNDER


def idempotency_key(fingerprint: str, event: str, changed_at: datetime) -> str:
    """The same for every resend of one notification: the alert, its state change, and when."""
    return f"{fingerprint}-{event}-{changed_at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"


class AlertEngine:
    """Evaluates one collection's cycle against the rules, then delivers what is owed."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        notifiers: list[Notifier] | None = None,
        now: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.notifiers = make_notifiers(settings.alerts.notifiers) if notifiers is None else notifiers
        self.now = now
        self.metrics = metrics
        self.rng = rng or random.Random()

    # ------------------------------------------------------------ evaluation

    def evaluate(self, report: CollectionReport) -> list[AlertView]:
        """Step every alert of the collection; returns those pending, firing or just resolved.

        A failed cycle is no evidence either way: states stay as they are.
        """
        if report.status == "failed":
            return [v for v in self.states(report.name) if v.state in ("pending", "firing")]
        now = self.now()
        results = {r.detector: r for r in report.results}
        pushes = push_candidates(report.name, results.get("model_version"), results.get("embedding_canary"))
        held = any(c.condition for c in pushes)
        with guard(self.engine), Session(self.engine, expire_on_commit=False) as session, session.begin():
            lock_alert_state(session, report.name)
            rows = {
                r.fingerprint: r
                for r in session.scalars(select(AlertState).where(AlertState.collection == report.name))
            }
            firing = {fp for fp, row in rows.items() if row.state == "firing"}
            pushes = one_page_per_push(pushes, firing)
            candidates = {c.fingerprint: c for c in pushes + rule_candidates(self.settings, report, held)}
            for fp, candidate in candidates.items():
                row = rows.get(fp)
                if row is None:
                    if not candidate.condition:
                        continue
                    row = rows[fp] = self._new_row(candidate, now)
                    session.add(row)
                event = self._step(row, candidate, now, _why_resolved(row, report.baseline_id))
                if candidate.condition and not candidate.held:
                    row.annotations = {**(row.annotations or {}), "_baseline_id": report.baseline_id}
                self._owe(session, row, event, now)
            for fp, row in rows.items():
                if fp not in candidates and row.state in ("pending", "firing"):
                    self._owe(session, row, self._step(row, None, now, RULE_GONE), now)
            touched = [r for r in rows.values() if r.state in ("pending", "firing") or r.resolved_at == now]
            ordered = sorted(touched, key=lambda r: (r.alertname, r.detector, r.severity))
            return [_view(r, self.settings.alerts.runbook_url) for r in ordered]

    def retire(self, configured: set[str]) -> list[AlertView]:
        """Resolve the pending and firing alerts of collections no longer in the config (no
        cycle will ever step them again) and deliver the resolve notifications now."""
        now = self.now()
        retired: list[AlertState] = []
        with guard(self.engine), Session(self.engine, expire_on_commit=False) as session, session.begin():
            active = session.scalars(select(AlertState).where(AlertState.state.in_(("pending", "firing"))))
            for row in active:
                if row.collection not in configured:
                    self._owe(session, row, self._step(row, None, now, LEFT_CONFIG), now)
                    retired.append(row)
        for name in sorted({r.collection for r in retired}):
            log.info("alerts of %s resolved: %s", name, LEFT_CONFIG)
            self.deliver(name, 0.0)
        return [_view(r, self.settings.alerts.runbook_url) for r in retired]

    def _new_row(self, candidate: Candidate, now: datetime) -> AlertState:
        labels = candidate.labels
        return AlertState(
            fingerprint=candidate.fingerprint,
            alertname=labels["alertname"],
            collection=labels["collection"],
            detector=labels["detector"],
            severity=labels["severity"],
            state="inactive",
            consecutive=0,
            labels=labels,
            annotations=candidate.annotations,
            updated_at=now,
        )

    def _step(self, row: AlertState, candidate: Candidate | None, now: datetime, because: str) -> str | None:
        """One transition of the state machine; `candidate=None` means the alert no longer exists.
        Returns the notification it owes: "firing", "resolved" or None; a resolve records
        `because` (why) with the alert."""
        row.updated_at = now
        if candidate is not None and (
            candidate.condition is None or (candidate.held and candidate.condition)
        ):
            return None  # no evidence (not due, too little data), or held back by a push: no new page
        if candidate is not None and candidate.condition:
            row.consecutive += 1
            row.last_value = candidate.value
            row.annotations = candidate.annotations
            if row.state == "firing":
                since = row.last_notified_at
                repeat = self.settings.alerts.repeat_interval
                return "firing" if since is None or (now - since).total_seconds() >= repeat else None
            if row.state in ("inactive", "resolved"):
                row.active_since, row.fired_at, row.resolved_at = now, None, None
            if row.consecutive >= candidate.for_cycles:
                row.state, row.fired_at = "firing", now
                return "firing"
            row.state = "pending"
            return None
        row.consecutive = 0
        if row.state == "firing":
            row.state, row.resolved_at = "resolved", now
            row.annotations = {**(row.annotations or {}), "resolved_because": because}
            return "resolved"
        if row.state == "pending":
            row.state, row.active_since = "inactive", None
        return None

    def _owe(self, session: Session, row: AlertState, event: str | None, now: datetime) -> None:
        """Write the outbox rows of a new notification; older ones not yet sent are superseded."""
        if event is None:
            return
        session.execute(
            update(Delivery)
            .where(Delivery.fingerprint == row.fingerprint, Delivery.status == "pending")
            .values(status="superseded", updated_at=now)
        )
        key = idempotency_key(row.fingerprint, event, now)
        for notifier in self.notifiers:
            if event == "firing" or notifier.send_resolved:
                session.add(
                    Delivery(
                        fingerprint=row.fingerprint, collection=row.collection, notifier=notifier.key,
                        event=event, idempotency_key=key, status="pending", attempts=0,
                        next_attempt_at=now, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
        row.last_notified_at = now

    # ------------------------------------------------------------ delivery

    def deliver(self, collection: str, period_seconds: float) -> int:
        """Attempt every notification of the collection that is due; returns how many were delivered.
        A failed attempt is retried after a backoff, up to `alerts.max_attempts` in all."""
        now = self.now()
        with guard(self.engine), Session(self.engine, expire_on_commit=False) as session:
            due = session.scalars(
                select(Delivery)
                .where(
                    Delivery.collection == collection,
                    Delivery.status == "pending",
                    Delivery.next_attempt_at <= now,
                )
                .order_by(Delivery.id)
            ).all()
            fingerprints = {d.fingerprint for d in due}
            alerts = {
                a.fingerprint: a
                for a in session.scalars(select(AlertState).where(AlertState.fingerprint.in_(fingerprints)))
            }
        valid_for = timedelta(seconds=self.settings.alerts.repeat_interval + 3 * period_seconds)
        notifiers = {n.key: n for n in self.notifiers}
        delivered = 0
        for delivery in due:
            notifier, alert = notifiers.get(delivery.notifier), alerts.get(delivery.fingerprint)
            if notifier is None or alert is None:
                self._finish(delivery, "failed", "notifier no longer configured", now)
                continue
            delivered += self._attempt(notifier, delivery, self._alert(alert, delivery, valid_for))
        return delivered

    def _attempt(self, notifier: Notifier, delivery: Delivery, alert: Alert) -> int:
        """Claim one attempt, send it, record the outcome; 1 if delivered. Never raises for a
        notifier's failure, whatever it is: other notifiers and the cycle carry on."""
        if not self._claim(delivery, notifier):
            return 0  # another process (the daemon, a `check`) has this attempt
        try:
            notifier.send(alert)
        except Exception as exc:  # any failure of a receiver or a notifier stays in this attempt
            why = str(exc) if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, NotifyError):
                log.error("notifier %s raised unexpectedly", notifier.key, exc_info=True)
            if delivery.attempts >= self.settings.alerts.max_attempts:
                log.error(
                    "%s %s for %s not delivered by %s after %d attempts; giving up: %s",
                    alert.name, alert.status, delivery.collection, notifier.key, delivery.attempts, why,
                )  # fmt: skip
                self._finish(delivery, "failed", why, self.now())
            else:
                log.warning(
                    "%s %s for %s not delivered by %s (attempt %d of %d, next in %.0fs): %s",
                    alert.name, alert.status, delivery.collection, notifier.key, delivery.attempts,
                    self.settings.alerts.max_attempts,
                    (delivery.next_attempt_at - self.now()).total_seconds(), why,
                )  # fmt: skip
                self._record_error(delivery, why)
                self._count(notifier.key, "retry")
            return 0
        self._finish(delivery, "delivered", None, self.now())
        return 1

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: exponential, capped, with jitter (half to all of it),
        so receivers coming back up are not hit by every sender in the same second."""
        alerts = self.settings.alerts
        delay = min(alerts.retry_backoff_max, alerts.retry_backoff * 2 ** min(attempts - 1, 30))
        return delay * self.rng.uniform(0.5, 1.0)

    def _claim(self, delivery: Delivery, notifier: Notifier) -> bool:
        """Count the attempt and push the next one past this attempt's timeouts plus a backoff,
        atomically: if another process claimed it first, the update matches no row."""
        now = self.now()
        attempts = delivery.attempts + 1
        next_at = now + timedelta(seconds=notifier.budget + self.backoff(attempts))
        with guard(self.engine), Session(self.engine) as session, session.begin():
            claimed = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery.id,
                    Delivery.attempts == delivery.attempts,
                    Delivery.status == "pending",
                )
                .values(attempts=attempts, next_attempt_at=next_at, updated_at=now)
            ).rowcount
        if claimed:
            delivery.attempts, delivery.next_attempt_at = attempts, next_at
        return bool(claimed)

    def _record_error(self, delivery: Delivery, why: str) -> None:
        with guard(self.engine), Session(self.engine) as session, session.begin():
            session.execute(update(Delivery).where(Delivery.id == delivery.id).values(last_error=why[:2000]))

    def _finish(self, delivery: Delivery, status: str, why: str | None, now: datetime) -> None:
        with guard(self.engine), Session(self.engine) as session, session.begin():
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(status=status, last_error=None if why is None else why[:2000], updated_at=now)
            )
        self._count(delivery.notifier, status)

    def _count(self, notifier: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notification(notifier, outcome)

    def _alert(self, row: AlertState, delivery: Delivery, valid_for: timedelta) -> Alert:
        resolved = delivery.event == "resolved"
        changed = delivery.created_at
        return Alert(
            fingerprint=row.fingerprint,
            status=delivery.event,
            labels=dict(row.labels),
            annotations={
                **_public(row.annotations),
                **annotations(row.detector, self.settings.alerts.runbook_url),
            },
            starts_at=row.active_since or row.fired_at or changed,
            ends_at=(row.resolved_at or changed) if resolved else changed + valid_for,
            generator_url=f"{self.settings.server.base_url}/alerts?collection={row.collection}",
            idempotency_key=delivery.idempotency_key,
            changed_at=changed,
            value=row.last_value,
        )

    # ------------------------------------------------------------ reading

    def states(self, collection: str | None = None) -> list[AlertView]:
        """Every alert that is not inactive, newest first."""
        with guard(self.engine), Session(self.engine) as session:
            query = select(AlertState).where(AlertState.state != "inactive")
            if collection:
                query = query.where(AlertState.collection == collection)
            rows = session.scalars(query.order_by(AlertState.updated_at.desc())).all()
            return [_view(r, self.settings.alerts.runbook_url) for r in rows]

    def firing_counts(self, collection: str) -> dict[str, int]:
        counts = {"info": 0, "warning": 0, "critical": 0}
        for view in self.states(collection):
            if view.state == "firing":
                counts[view.severity] = counts.get(view.severity, 0) + 1
        return counts


__all__ = [
    "CHANGED",
    "DRIFT",
    "PUSHED",
    "AlertEngine",
    "AlertView",
    "Candidate",
    "canary_candidate",
    "fingerprint",
    "idempotency_key",
    "one_page_per_push",
    "push_candidates",
]
