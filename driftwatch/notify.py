"""Where alerts go: the log, a generic JSON webhook, a Slack-compatible incoming webhook, or
Alertmanager's v2 API. Each notifier is one small class with one `send` method; the alert
engine decides *what* to send and *when*, a notifier only how.

Webhook URLs are secrets (a Slack incoming-webhook URL is its own credential), so errors and
logs name a notifier by kind and host only.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from driftwatch import __version__
from driftwatch.config import NotifierSettings
from driftwatch.errors import NotifyError

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

    def send(self, alerts: list[Alert]) -> None:
        """Deliver or raise NotifyError; never partially succeed silently."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def describe_url(url: str) -> str:
    """`https://hooks.slack.com/…`: enough to find the receiver, nothing that grants access."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


class LogNotifier:
    """Alerts as log lines: the default, and the audit trail when a receiver is down."""

    kind: ClassVar[str] = "log"

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        self.key = key
        self.send_resolved = settings.send_resolved

    def send(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            level = logging.WARNING if alert.status == "firing" else logging.INFO
            log.log(
                level,
                "ALERT %s %s: %s",
                alert.status.upper(),
                alert.title(),
                alert.annotations.get("summary", ""),
            )


def post_json(url: str, body: Any, timeout: float, kind: str) -> None:
    """POST `body` as JSON; any failure is a NotifyError naming the kind and host only."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"driftwatch/{__version__}"},
    )
    where = f"{kind} notifier {describe_url(url)}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"{where}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"{where}: {getattr(exc, 'reason', exc)}") from None


class _HttpNotifier:
    """What the HTTP kinds share; each subclass says how a batch of alerts becomes a body."""

    kind: ClassVar[str]

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        assert settings.url is not None  # validated by NotifierSettings
        self.key = key
        self.url = settings.url
        self.timeout = settings.timeout
        self.send_resolved = settings.send_resolved

    def payload(self, alerts: list[Alert]) -> Any:
        return [a.labels for a in alerts]

    def send(self, alerts: list[Alert]) -> None:
        if alerts:
            post_json(self.url, self.payload(alerts), self.timeout, self.kind)


class WebhookNotifier(_HttpNotifier):
    """Generic JSON, shaped like Alertmanager's webhook body so existing receivers understand it."""

    kind: ClassVar[str] = "webhook"

    def payload(self, alerts: list[Alert]) -> dict[str, Any]:
        firing = any(a.status == "firing" for a in alerts)
        return {
            "version": "4",
            "receiver": "driftwatch",
            "status": "firing" if firing else "resolved",
            "alerts": [
                {
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": _iso(a.starts_at),
                    "endsAt": _iso(a.ends_at) if a.status == "resolved" else None,
                    "generatorURL": a.generator_url,
                    "fingerprint": a.fingerprint,
                    "value": a.value,
                }
                for a in alerts
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

    def payload(self, alerts: list[Alert]) -> dict[str, Any]:
        lines = []
        for a in alerts:
            icon = (
                ":white_check_mark:"
                if a.status == "resolved"
                else self._ICON.get(a.labels.get("severity", ""), "")
            )
            head = f"{icon} *[{a.status.upper()}] {a.name}* `{a.labels.get('collection', '')}`"
            lines.append(f"{head}\n{a.annotations.get('summary', '')}")
            if a.status == "firing" and a.annotations.get("description"):
                lines.append(f">{a.annotations['description']}")
        return {"text": "\n".join(lines)}


class AlertmanagerNotifier(_HttpNotifier):
    """`POST /api/v2/alerts`: Alertmanager groups, silences and routes from here on."""

    kind: ClassVar[str] = "alertmanager"

    def __init__(self, key: str, settings: NotifierSettings) -> None:
        super().__init__(key, settings)
        base = self.url.rstrip("/")
        self.url = base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"

    def payload(self, alerts: list[Alert]) -> list[dict[str, Any]]:
        body = []
        for a in alerts:
            item: dict[str, Any] = {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": _iso(a.starts_at),
                "generatorURL": a.generator_url,
            }
            if a.ends_at is not None:
                item["endsAt"] = _iso(a.ends_at)
            body.append(item)
        return body


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
    "post_json",
]
