"""The page at `/`: what a person opening the daemon's address needs first — each
collection's state, the alerts now pending or firing with what to do, and the endpoints —
as Prometheus exporters do. One small HTML document, no script, no external asset: it must
render behind any proxy and in any browser, and every value is HTML-escaped (collection
names, summaries and errors come from config and data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from driftwatch.alerting import AlertView

ENDPOINTS = {
    "/metrics": "Prometheus metrics",
    "/healthz": "liveness: the process and its scheduler",
    "/readyz": "readiness: baselines, newest cycles, the store (JSON)",
    "/alerts": "the alert engine's states (JSON)",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 72em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 0.35em 0.6em;
vertical-align: top; border-bottom: 1px solid #ddd; } th { background: #f3f3f3; }
.ok { color: #1a7f37; font-weight: 600; } .drift, .firing, .critical { color: #c0392b; font-weight: 600; }
.failed, .pending, .warning { color: #b9770e; font-weight: 600; } .none { color: #777; }
code { background: #f3f3f3; padding: 0 0.25em; } .muted { color: #666; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class CollectionRow:
    """One collection as the page shows it."""

    name: str
    status: str  # ok | drift | failed | no cycle yet
    last_cycle: datetime | None
    baseline: bool
    ready: bool
    reason: str | None
    drifted: list[str]
    error: str | None = None


def _status(row: CollectionRow) -> str:
    css = row.status if row.status in ("ok", "drift", "failed") else "none"
    text = escape(row.status.upper() if css != "none" else row.status)
    return f'<span class="{css}">{text}</span>'


def _collection(row: CollectionRow) -> str:
    when = f"{row.last_cycle:%Y-%m-%d %H:%M:%S} UTC" if row.last_cycle else "-"
    drifted = ", ".join(f"<code>{escape(d)}</code>" for d in row.drifted) or "-"
    ready = "yes" if row.ready else f"no: {escape(row.reason or '')}"
    note = f'<div class="muted">{escape(row.error)}</div>' if row.error else ""
    return (
        f"<tr><td><b>{escape(row.name)}</b></td><td>{_status(row)}{note}</td><td>{when}</td>"
        f"<td>{'yes' if row.baseline else 'no'}</td><td>{drifted}</td><td>{ready}</td></tr>"
    )


def _alert(view: AlertView) -> str:
    since = f"{view.active_since:%Y-%m-%d %H:%M:%S} UTC" if view.active_since else "-"
    runbook = escape(view.runbook)
    is_url = view.runbook.startswith(("http://", "https://"))
    link = f'<a href="{runbook}">{runbook}</a>' if is_url else f"<code>{runbook}</code>"
    return (
        f'<tr><td class="{escape(view.state)}">{escape(view.state)}</td>'
        f'<td><b>{escape(view.alertname)}</b><div class="muted">{escape(view.collection)} / '
        f'{escape(view.detector)}</div></td><td class="{escape(view.severity)}">{escape(view.severity)}</td>'
        f"<td>{since}</td><td>{escape(view.summary)}"
        + (f'<div class="muted">{escape(view.where)}</div>' if view.where else "")
        + f"<div><b>Do:</b> {escape(view.action)}</div>"
        f"<div><b>Runbook:</b> {link}</div></td></tr>"
    )


def render(
    version: str, collections: list[CollectionRow], alerts: list[AlertView], problem: str | None
) -> str:
    """The whole page; `problem` (the store is down) replaces what could not be read."""
    rows = "".join(_collection(c) for c in collections)
    active = [a for a in alerts if a.state in ("pending", "firing")]
    alert_rows = "".join(_alert(a) for a in active)
    endpoints = "".join(
        f'<li><a href="{path}">{path}</a> <span class="muted">{escape(what)}</span></li>'
        for path, what in ENDPOINTS.items()
    )
    warning = f'<p class="failed">{escape(problem)}</p>' if problem else ""
    alerts_html = (
        "<table><tr><th>state</th><th>alert</th><th>severity</th><th>since</th>"
        f"<th>what happened, what to do</th></tr>{alert_rows}</table>"
        if active
        else '<p class="none">No alert pending or firing.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>driftwatch</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>driftwatch</h1><p class="muted">Drift monitor for embedding retrieval on PostgreSQL + pgvector,
version {escape(version)}.</p>{warning}
<h2>Collections</h2>
<table><tr><th>collection</th><th>last cycle</th><th>at</th><th>baseline</th><th>drifted detectors</th>
<th>ready</th></tr>{rows}</table>
<h2>Alerts</h2>{alerts_html}
<h2>Endpoints</h2><ul>{endpoints}</ul>
</body></html>
"""


def collection_rows(
    names: list[str],
    readiness: dict[str, Any],
    cycles: dict[str, Any],
    baselines: set[str],
    drifted: dict[str, list[str]],
) -> list[CollectionRow]:
    """The configured collections, from /readyz's verdicts and the newest stored cycles."""
    rows = []
    for name in names:
        ready = readiness.get("collections", {}).get(name, {})
        cycle = cycles.get(name)
        rows.append(
            CollectionRow(
                name=name,
                status=cycle.status if cycle is not None else "no cycle yet",
                last_cycle=cycle.started_at if cycle is not None else None,
                baseline=name in baselines,
                ready=bool(ready.get("ready")),
                reason=ready.get("reason"),
                drifted=drifted.get(name, []),
                error=cycle.error if cycle is not None and cycle.status == "failed" else None,
            )
        )
    return rows


__all__ = ["ENDPOINTS", "CollectionRow", "collection_rows", "render"]
