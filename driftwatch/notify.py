"""Where alerts go: the log, a generic JSON webhook, a Slack-compatible incoming webhook, or
Alertmanager's v2 API. Each notifier is one small class with one `send` method that delivers
one notification; the alert engine decides *what* to send, *when*, and how often to retry,
a notifier only how.

Every notification carries a stable idempotency key (the alert's fingerprint, its state
change and when it happened): a resend after a crash carries the same key, in the JSON body
and, for the HTTP kinds, in an `Idempotency-Key` header, so a receiver can drop repeats.

Webhook URLs are secrets (a Slack incoming-webhook URL is its own credential), so errors and
logs name a notifier by kind and host only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

import httpx

from driftwatch.config import NotifierSettings
from driftwatch.errors import NotifyError
from driftwatch.outbound import describe_url, make_client, post_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One alert as every notifier sees it; `labels` identify it, `annotations` explain it."""

    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None  # firing: when a receiver may consider it stale; resolved: when it ended
    generator_url: str
    idempotency_key: str  # the same for every resend of this state change, across restarts
    changed_at: datetime  # when the state change (or the repeat) this notification tells of happened
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    def title(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items() if k != "alertname")
        return f"{self.name}{{{labels}}}"


class Notifier(Protocol):
    key: str  # stable across restarts: "<index>:<kind>"
    send_resolved: bool
    budget: float  # seconds one failed attempt can take at most (its timeouts)

    def send(self, alert: Alert) -> None:
        """Deliver one notification or raise NotifyError."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class LogNotifier:
    """Alerts as log lines: the default, and the audit trail when a receiver is down."""

    kind: ClassVar[str] = "log"
    budget = 0.0

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        self.key = key
        self.send_resolved = settings.send_resolved

    def send(self, alert: Alert) -> None:
        """One line a notification: what happened, then (firing) what to do and where the
        runbook entry is, or (resolved) why it resolved."""
        notes = alert.annotations
        if alert.status == "firing":
            level = logging.WARNING
            where = f" | {notes['where']}" if notes.get("where") else ""
            guide = f"{where} | do: {notes.get('action', '-')} | runbook: {notes.get('runbook', '-')}"
        else:
            level = logging.INFO
            guide = f" | resolved: {notes.get('resolved_because', 'the condition no longer holds')}"
        log.log(
            level,
            "ALERT %s %s: %s%s (idempotency key %s)",
            alert.status.upper(),
            alert.title(),
            notes.get("summary", ""),
            guide,
            alert.idempotency_key,
        )


class _HttpNotifier:
    """What the HTTP kinds share; each subclass says how an alert becomes a body."""

    kind: ClassVar[str]

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        assert settings.url is not None  # validated by NotifierSettings
        self.key = key
        self.url = settings.url
        self.timeout = settings.timeout
        self.connect_timeout = settings.connect_timeout
        self.send_resolved = settings.send_resolved
        self._client: httpx.Client | None = None

    @property
    def budget(self) -> float:
        """The longest one attempt may take to fail: connect, then a read timeout."""
        return min(self.connect_timeout, self.timeout) + self.timeout

    def payload(self, alert: Alert) -> Any:
        return [alert.labels]

    def send(self, alert: Alert) -> None:
        if self._client is None:  # one pooled client per notifier, made on first use
            self._client = make_client(self.connect_timeout, self.timeout)
        where = f"{self.kind} notifier {describe_url(self.url)}"
        headers = {"Idempotency-Key": alert.idempotency_key}
        post_json(self._client, self.url, self.payload(alert), where, NotifyError, headers)


class WebhookNotifier(_HttpNotifier):
    """Generic JSON, shaped like Alertmanager's webhook body so existing receivers understand it."""

    kind: ClassVar[str] = "webhook"

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {
            "version": "4",
            "receiver": "driftwatch",
            "status": alert.status,
            "idempotency_key": alert.idempotency_key,
            "alerts": [
                {
                    "status": alert.status,
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "startsAt": _iso(alert.starts_at),
                    "endsAt": _iso(alert.ends_at) if alert.status == "resolved" else None,
                    "generatorURL": alert.generator_url,
                    "fingerprint": alert.fingerprint,
                    "changedAt": _iso(alert.changed_at),
                    "value": alert.value,
                }
            ],
        }


class SlackNotifier(_HttpNotifier):
    """Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat all read `text`)."""

    kind: ClassVar[str] = "slack"
    _ICON: ClassVar[dict[str, str]] = {
        "critical": ":red_circle:",
        "warning": ":warning:",
        "info": ":information_source:",
    }

    def payload(self, alert: Alert) -> dict[str, Any]:
        icon = (
            ":white_check_mark:"
            if alert.status == "resolved"
            else self._ICON.get(alert.labels.get("severity", ""), "")
        )
        head = f"{icon} *[{alert.status.upper()}] {alert.name}* `{alert.labels.get('collection', '')}`"
        notes = alert.annotations
        lines = [f"{head}\n{notes.get('summary', '')}"]
        if alert.status == "firing" and notes.get("description"):
            lines.append(f">{notes['description']}")
        runbook = notes.get("runbook", "")
        if alert.status == "firing" and runbook and runbook not in notes.get("description", ""):
            lines.append(f"Runbook: {runbook}")
        if alert.status == "resolved" and notes.get("resolved_because"):
            lines.append(f"Resolved: {notes['resolved_because']}")
        return {"text": "\n".join(lines)}


class AlertmanagerNotifier(_HttpNotifier):
    """`POST /api/v2/alerts`: Alertmanager groups, silences and routes from here on."""

    kind: ClassVar[str] = "alertmanager"

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        super().__init__(key, settings)
        base = self.url.rstrip("/")
        self.url = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"

    def payload(self, alert: Alert) -> list[dict[str, Any]]:
        item: dict[str, Any] = {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": _iso(alert.starts_at),
            "generatorURL": alert.generator_url,
        }
        if alert.ends_at is not None:
            item["endsAt"] = _iso(alert.ends_at)
        return [item]


KINDS: dict[str, type[LogNotifier] | type[_HttpNotifier]] = {
    "log": LogNotifier,
    "webhook": WebhookNotifier,
    "slack": SlackNotifier,
    "alertmanager": AlertmanagerNotifier,
}


def make_notifiers(settings: list[NotifierSettings]) -> list[Notifier]:
    return [KINDS[s.kind](f"{i}:{s.kind}", s) for i, s in enumerate(settings)]


__all__ = [
    "Alert",
    "AlertmanagerNotifier",
    "LogNotifier",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
    "describe_url",
    "make_notifiers",
]
