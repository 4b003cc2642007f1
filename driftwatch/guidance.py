"""What a person reading an alert needs beside the numbers: what to do, where the runbook
entry is, why an alert resolved, and (for the regional detectors) which rows it is about.

Every channel — the log notifier, webhooks, Slack, Alertmanager, `/alerts`, `status`,
`check` — reads the same three annotations, derived here from the detector registry (the
one source of the what-to-do text) and `alerts.runbook_url`:

* `action`: the registry's one-line what-to-do of the alert's detector;
* `runbook`: where its runbook entry is: the configured URL, or (by default, so the
  reference resolves outside this repository) the command `driftwatch runbook DETECTOR`;
* `runbook_url`: the same URL, only when one is configured (Alertmanager's and Grafana's name).
"""

from __future__ import annotations

from typing import Any

from driftwatch.detect.registry import REGISTRY, Registry

# Why an alert resolved; the `resolved_because` annotation carries one of these.
BACK_UNDER = "the value fell back under its threshold"
NEW_BASELINE = "a new baseline was captured"
LEFT_CONFIG = "the collection left the config"
RULE_GONE = "its alert rule left the config"
CONDITION_GONE = "the condition no longer holds"

EXAMPLE_TEXT_CHARS = 80  # of a representative row's text in an alert; details keep more


def runbook_reference(detector: str, runbook_url: str | None) -> str:
    """The runbook entry of a detector: a URL when `alerts.runbook_url` is set, else the
    command that prints it."""
    if runbook_url is None:
        return f"driftwatch runbook {detector}"
    if "{detector}" in runbook_url:
        return runbook_url.replace("{detector}", detector)
    return f"{runbook_url}#{detector}"


def action(detector: str, registry: Registry = REGISTRY) -> str:
    """The registry's what-to-do line; a detector it does not know (an alert stored by an
    older release) gets a pointer to the runbook instead of nothing."""
    if detector in registry:
        return registry[detector].action
    return f"no runbook entry for {detector!r} in this release; see `driftwatch runbook`"


def annotations(detector: str, runbook_url: str | None) -> dict[str, str]:
    """The guidance annotations every alert of `detector` carries."""
    out = {"action": action(detector), "runbook": runbook_reference(detector, runbook_url)}
    if runbook_url is not None:
        out["runbook_url"] = out["runbook"]
    return out


def where_text(details: dict[str, Any]) -> str:
    """One sentence on *where* a regional detector moved: its top cells (or new-territory
    rows) with a few representative ids and the start of their text; empty if it has none."""
    parts = []
    for cell in details.get("top_cells", [])[:3]:
        change = 100 * float(cell.get("change", 0.0))
        rows = _rows_text(cell.get("examples", []))
        parts.append(f"cell {cell.get('cell')} ({change:+.1f} pts){rows}")
    if isinstance(details.get("examples"), list) and details["examples"]:
        rows = _rows_text(details["examples"])
        if rows:
            parts.append(f"new-territory rows{rows}")
    return "Where: " + "; ".join(parts) + "." if parts else ""


def _rows_text(examples: list[Any]) -> str:
    shown = []
    for example in examples[:3]:
        if not isinstance(example, dict):
            continue  # positions not resolved to rows (no ids read): nothing to show
        text = example.get("text")
        if isinstance(text, str) and text:
            clipped = text if len(text) <= EXAMPLE_TEXT_CHARS else text[: EXAMPLE_TEXT_CHARS - 1] + "…"
            shown.append(f"id {example.get('id')} {clipped!r}")
        else:
            shown.append(f"id {example.get('id')}")
    return f": {', '.join(shown)}" if shown else ""


__all__ = [
    "BACK_UNDER",
    "CONDITION_GONE",
    "LEFT_CONFIG",
    "NEW_BASELINE",
    "RULE_GONE",
    "action",
    "annotations",
    "runbook_reference",
    "where_text",
]
