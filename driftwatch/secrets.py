"""Keeping passwords and tokens out of files, logs, error messages and the store.

A DSN may reach driftwatch with a password only through the environment (an env
override of the DSN, PGPASSWORD) or a libpq passfile; everything a person can read
goes through `redact` or the `Scrubber` log filter first. The other configured URLs
(embedder, webhooks, Alertmanager) count too: their userinfo and query-string values
(`?api-key=...`) are secrets.

The scrubber replaces whole secrets, never pieces of words: with PGPASSWORD=postgres,
"postgresql://" stays as it is (replacing the substring would both mangle the text and
reveal the password).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from psycopg import conninfo

REDACTED = "***"
# password=value or password='quoted value' in a libpq keyword DSN
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
# Characters that continue a word, a URL-encoded value or a token: a secret is replaced only
# where it is not part of something longer.
_WORD = r"A-Za-z0-9_.~%+\-"
MIN_QUERY_SECRET = 6  # shorter query values and user names (`v=1`, `fmt=json`, `bot`) are
# redacted inside URLs, not replaced everywhere in the text


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


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def ambiguous_userinfo(url: str) -> bool:
    """True when a URL's authority holds more than one `@`: libpq splits at the first, Python
    at the last, so a password with an unescaped `@` would be half host, half password."""
    if "://" not in url:
        return False
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    return authority.count("@") > 1


def redact(dsn: str) -> str:
    """The DSN (or any configured URL) with its secrets replaced by ***, in the form it was
    written: a password, and for http(s) URLs the whole userinfo and every query value."""
    if _is_http(dsn):
        return _redact_http(dsn)
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


def _redact_http(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = [(k, REDACTED) for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def url_secrets(url: str) -> set[str]:
    """The secrets inside one configured URL or DSN."""
    if not _is_http(url):
        found = {p for p in [password_of(url)] if p}
    else:
        try:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError:
            return set()
        found = {unquote(parts.password)} if parts.password else set()
        # A user name may be the token itself (https://TOKEN@host); short ones are just names.
        if parts.username and len(parts.username) >= MIN_QUERY_SECRET:
            found.add(unquote(parts.username))
        found |= {v for _, v in query if len(v) >= MIN_QUERY_SECRET}
    if ambiguous_userinfo(url):  # config refuses these; should one get here, no half may show
        userinfo = url.split("://", 1)[1].rpartition("@")[0]
        halves = {piece for part in userinfo.split(":", 1)[1:] for piece in part.split("@")}
        found |= {piece for piece in halves if len(piece) >= 3}
    return found


def known_passwords(urls: Iterable[str]) -> set[str]:
    """Every secret a process may hold: those inside the configured DSNs and URLs (as written,
    URL-quoted and JSON-escaped) plus libpq's PGPASSWORD."""
    found: set[str] = set()
    for url in urls:
        found |= url_secrets(url)
    if os.environ.get("PGPASSWORD"):
        found.add(os.environ["PGPASSWORD"])
    found |= {quote(p, safe="") for p in found}
    found |= {json.dumps(p)[1:-1] for p in found}
    return {p for p in found if p}


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first
    if not ordered:
        return None
    alternatives = "|".join(re.escape(s) for s in ordered)
    # Whole secrets only: not inside a longer word, and never a URL scheme ("postgres://").
    return re.compile(rf"(?<![{_WORD}])(?:{alternatives})(?![{_WORD}])(?!://)")


def scrub(text: str, secrets: set[str]) -> str:
    """Text with every known secret replaced where it stands as a whole."""
    pattern = _pattern(secrets)
    return text if pattern is None else pattern.sub(REDACTED, text)


class Scrubber(logging.Filter):
    """Log filter that rewrites each record so no known password reaches a handler."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)
        self._pattern = _pattern(self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self._pattern.sub(REDACTED, message)
        record.args = None
        if record.exc_text:
            record.exc_text = self._pattern.sub(REDACTED, record.exc_text)
        record.exc_info = None if record.exc_text else record.exc_info
        return True


__all__ = [
    "REDACTED",
    "Scrubber",
    "ambiguous_userinfo",
    "known_passwords",
    "password_of",
    "redact",
    "scrub",
    "url_secrets",
]
