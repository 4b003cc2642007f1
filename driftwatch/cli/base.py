"""What every `driftwatch` command shares: the error type the CLI reports, the state passed
between commands (config path, settings once loaded, known secrets), and small helpers.

Library errors (DriftwatchError) become a one-paragraph message and exit status 2 in `Root`,
and nowhere else.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from driftwatch.config import Settings, load_config
from driftwatch.errors import DriftwatchError
from driftwatch.logs import configure_logging
from driftwatch.secrets import known_passwords, scrub


class CliError(click.ClickException):
    """Any error the CLI reports; exit status 2, as `check` promises for errors."""

    exit_code = 2


class Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DriftwatchError as exc:
            secrets = ctx.obj.secrets if isinstance(ctx.obj, State) else set()
            raise CliError(scrub(str(exc), secrets)) from None


class State:
    """What the commands share: the config path, and the settings once loaded."""

    def __init__(self, config_path: Path, log_level: str | None) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self._settings: Settings | None = None
        self.secrets: set[str] = known_passwords([])

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_config(self.config_path)
            self.secrets = known_passwords(settings.all_urls())
            configure_logging(self.log_level or settings.log_level, self.secrets)
            self._settings = settings
        return self._settings


def example(text: str) -> str:
    """Append an example block that click prints verbatim in --help."""
    return f"\n\n\b\nExample:\n  {text}"


def progress(what: str) -> Callable[[str], None]:
    """Phase lines of a long step (baseline capture, adapter fit, mining a large log): on a
    terminal, echoed with the time since the step began, so a person sees it move; otherwise
    (a container, cron, CI) one log record per phase, with its timestamp, for the logs."""
    started = time.monotonic()
    on_terminal = sys.stderr.isatty()
    log = logging.getLogger(f"driftwatch.{what}")

    def report(message: str) -> None:
        elapsed = time.monotonic() - started
        if on_terminal:
            click.echo(f"  [{elapsed:6.1f}s] {message}", err=True)
        else:
            log.info("%s (%.1fs)", message, elapsed)

    return report


def store_engine(state: State) -> Engine:
    """The store's engine, refusing a schema this release does not know."""
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    store.ensure_current(engine)
    return engine


def collection_names(state: State, name: str | None) -> list[str]:
    settings = state.settings
    if name:
        return [settings.collection(name).name]
    if not settings.collections:
        raise CliError(f"{state.config_path}: no [[collections]] configured")
    return [c.name for c in settings.collections]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


__all__ = [
    "CliError",
    "Root",
    "State",
    "collection_names",
    "example",
    "num",
    "progress",
    "store_engine",
    "table",
]
