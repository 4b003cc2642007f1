"""Turning what is wrong with a config into sentences that name the key.

pydantic's messages name its own types ("Input should be a valid integer"); a person editing
a TOML file wants `collections[0].sample_size: must be an integer (set by env ...)`.
Passwords written into the file are refused here too, before validation.
"""

from __future__ import annotations

import re
from typing import Any

from driftwatch.env_overrides import format_loc
from driftwatch.secrets import password_of


def passwords_in_file(raw: dict[str, Any]) -> list[str]:
    """Passwords written into the file are refused: files get committed and copied around."""
    found: list[str] = []
    hint = (
        "holds a password; pass it through the environment "
        "(PGPASSWORD or a DRIFTWATCH_... override) or a libpq passfile"
    )

    def check(key: str, value: Any) -> None:
        if isinstance(value, str) and password_of(value):
            found.append(f"{key}: {hint}")

    store = raw.get("store")
    if isinstance(store, dict):
        check("store.url", store.get("url"))
    collections = raw.get("collections")
    if isinstance(collections, list):
        for i, coll in enumerate(collections):
            if isinstance(coll, dict):
                check(f"collections[{i}].dsn", coll.get("dsn"))
                sources = coll.get("sources")
                for j, source in enumerate(sources if isinstance(sources, list) else []):
                    if isinstance(source, dict):
                        check(f"collections[{i}].sources[{j}].dsn", source.get("dsn"))
                if isinstance(coll.get("query_log"), dict):
                    check(f"collections[{i}].query_log.dsn", coll["query_log"].get("dsn"))
    return found


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list (a TOML array, e.g. [[collections]])",
    "model_type": "must be a table",
    "dict_type": "must be a table",
}


_KEY_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def describe(err: Any, origins: dict[tuple[Any, ...], str]) -> str:
    loc = tuple(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind == "greater_than_equal":
        message = f"must be >= {ctx['ge']}"
    elif kind == "greater_than":
        message = f"must be > {ctx['gt']}"
    elif kind == "less_than_equal":
        message = f"must be <= {ctx['le']}"
    elif kind == "literal_error":
        message = f"must be one of {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        message = (
            "must be 1-63 characters of letters, digits, '_', '.', '-' (starting with a letter or digit)"
        )
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
        key = _KEY_PREFIX.match(message)
        if key and loc:  # a section's check that names one of its keys: `collections[0].dsn: ...`
            loc, message = (*loc, *key.group(1).split(".")), message[key.end() :]
    where = format_loc(loc) or "(top level)"
    origin = next(
        (var for at, var in origins.items() if loc and (at[: len(loc)] == loc or loc[: len(at)] == at)),
        None,
    )
    return f"{where}: {message}" + (f" (set by env {origin})" if origin else "")
