"""Keeping database passwords out of files, logs and error messages.

A DSN may reach driftwatch with a password only through the environment (an env
override of the DSN, PGPASSWORD) or a libpq passfile; everything a person can read
goes through `redact` or the `Scrubber` log filter first.
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from psycopg import conninfo

REDACTED = "***"
# password=value or password='quoted value' in a libpq keyword DSN
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _is_uri(dsn: str) -> bool:
    return "://" in dsn or dsn.startswith("sqlite:")


def password_of(dsn: str) -> str | None:
    """The password written inside a DSN or SQLAlchemy URL, or None."""
    if _is_uri(dsn):
        parts = urlsplit(dsn)
        if parts.password:
            return unquote(parts.password)
        query = dict(parse_qsl(parts.query))
        return query.get("password") or None
    try:
        return conninfo.conninfo_to_dict(dsn).get("password") or None
    except Exception:
        # Unparseable keyword DSN: look for the keyword by hand so we still never echo it.
        for token in dsn.split():
            key, _, value = token.partition("=")
            if key.strip() == "password" and value:
                return value.strip("'")
        return None


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***, in the form it was written."""
    if not password_of(dsn):
        return dsn
    if _is_uri(dsn):
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if parts.password:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{hostport}"
        query = [(k, REDACTED if k == "password" else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*/")))
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + REDACTED, dsn)


def known_passwords(dsns: list[str]) -> set[str]:
    """Every password a process may hold: those inside DSNs plus libpq's PGPASSWORD."""
    found = {p for p in (password_of(d) for d in dsns) if p}
    found |= {quote(p, safe="") for p in found}
    if os.environ.get("PGPASSWORD"):
        found.add(os.environ["PGPASSWORD"])
    return found


def scrub(text: str, secrets: set[str]) -> str:
    """Text with every known secret replaced, longest first so no fragment survives."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class Scrubber(logging.Filter):
    """Log filter that rewrites each record so no known password reaches a handler."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = scrub(message, self.secrets)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        record.exc_info = None if record.exc_text else record.exc_info
        return True


__all__ = ["REDACTED", "Scrubber", "known_passwords", "password_of", "redact", "scrub"]
