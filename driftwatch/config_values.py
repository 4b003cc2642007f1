"""The value types of the config file: durations, PostgreSQL identifiers, database URLs.

Each is a pydantic `Annotated` type whose validator says what a value must look like, so a
bad value is refused where it is read, with the key named by config.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator

from driftwatch.secrets import ambiguous_userinfo

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names silently (NAMEDATALEN - 1)


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"30s"`, `"15m"`, `"1h30m"`, `"500ms"`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '30s', '15m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"must be a duration such as '30s', '15m' or '1h', not {value!r}")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("must be a duration such as '30s', '15m' or '1h'")
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _duration_or_zero(value: Any) -> float:
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]


def split_qualified_name(name: str) -> tuple[str | None, str]:
    """`schema.table` -> (schema, table); double quotes keep dots and case: `"My.S"."T"`."""
    parts: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(name):
        ch = name[i]
        if quoted:
            if ch == '"' and name[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if quoted:
        raise ValueError(f"unbalanced double quote in {name!r}")
    parts.append(current)
    if len(parts) > 2:
        raise ValueError(f"must be 'table' or 'schema.table', not {name!r}")
    for part in parts:
        check_identifier(part)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_identifier(name: str) -> str:
    if not name:
        raise ValueError("must not be empty")
    if "\x00" in name:
        raise ValueError("must not contain a NUL character")
    if "%" in name:
        # psycopg reads '%' in a query as a placeholder, quoted identifier or not, and every
        # cycle would fail; refused here, where it is named, instead.
        raise ValueError(f"{name!r} contains '%', which driftwatch cannot query; rename it or use a view")
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"is longer than PostgreSQL's {_MAX_IDENTIFIER_BYTES}-byte identifier limit")
    return name


Identifier = Annotated[str, BeforeValidator(lambda v: check_identifier(v) if isinstance(v, str) else v)]


def _unambiguous_url(url: Any) -> Any:
    """Refuse a URL whose user or password holds an unescaped `@` (without echoing it)."""
    if isinstance(url, str) and ambiguous_userinfo(url):
        raise ValueError(
            "its user or password holds an unescaped '@': write it as %40 (libpq would take what "
            "follows the first '@' for the host name, and print it in errors)"
        )
    return url


Url = Annotated[str, BeforeValidator(_unambiguous_url)]


def repeated(names: Iterable[str]) -> list[str]:
    """The names given more than once, sorted: each list of named sections needs them unique."""
    return sorted(name for name, count in Counter(names).items() if count > 1)
