"""Environment overrides of the config file: `DRIFTWATCH_A__B__C=value` sets `a.b.c`, a list
item by index or by name (`DRIFTWATCH_COLLECTIONS__DOCS__DSN`). The double underscore is the
point: Kubernetes injects `DRIFTWATCH_PORT=tcp://...` and `DRIFTWATCH_SERVICE_HOST` for any
Service named driftwatch, and a single-underscore name can never be mistaken for a setting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "DRIFTWATCH_"
CONFIG_ENV = "DRIFTWATCH_CONFIG"
# Top-level keys that hold a single value: their overrides are DRIFTWATCH_<KEY>, no `__`.
_TOP_LEVEL_SCALARS = frozenset({"log_level"})

log = logging.getLogger(__name__)


def format_loc(loc: tuple[Any, ...]) -> str:
    """`collections[0].dsn` from pydantic's ('collections', 0, 'dsn')."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _override_path(var: str) -> list[str] | None:
    """The key path a variable overrides, or None when it is not an override at all."""
    if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
        return None
    rest = var[len(ENV_PREFIX) :]
    if "__" in rest:
        return [k.lower() for k in rest.split("__")]
    if rest.lower() in _TOP_LEVEL_SCALARS:
        return [rest.lower()]
    log.debug("ignoring %s: not a DRIFTWATCH_SECTION__KEY override (Kubernetes service variable?)", var)
    return None


def apply_env(
    raw: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[Any, ...], str], list[str]]:
    """Merge DRIFTWATCH_A__B__C=value into the parsed file; remember which env var set what."""
    merged = json.loads(json.dumps(raw, default=str))
    origins: dict[tuple[Any, ...], str] = {}
    problems: list[str] = []
    for var in sorted(env):
        keys = _override_path(var)
        if keys is None:
            continue
        if not all(keys):
            problems.append(f"{var}: malformed override name (use DRIFTWATCH_SECTION__KEY)")
            continue
        try:
            loc = _locate(merged, keys)
        except (KeyError, IndexError):
            problems.append(f"{var}: names no setting in the config file")
            continue
        clash = next((v for at, v in origins.items() if at[: len(loc)] == loc or loc[: len(at)] == at), None)
        if clash is not None:
            problems.append(f"{format_loc(loc)}: set by both {clash} and {var}; keep one")
            continue
        _assign(merged, loc, _env_value(env[var]))
        origins[loc] = var
    return merged, origins, problems


def _locate(merged: dict[str, Any], keys: list[str]) -> tuple[Any, ...]:
    """The location `keys` name in the merged config (a list item by index or by name)."""
    node: Any = merged
    loc: list[Any] = []
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _list_index(node, key)
            loc.append(index)
            node = None if last else node[index]
        elif isinstance(node, dict):
            loc.append(key)
            node = None if last else node.get(key, {})
        else:
            raise KeyError(key)
    return tuple(loc)


def _assign(merged: dict[str, Any], loc: tuple[Any, ...], value: Any) -> None:
    node: Any = merged
    for part in loc[:-1]:
        node = node[part] if isinstance(node, list) else node.setdefault(part, {})
    node[loc[-1]] = value


def _list_index(items: list[Any], key: str) -> int:
    if key.isdigit():
        index = int(key)
        if index >= len(items):
            raise IndexError(key)
        return index
    for i, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name", "")).lower() == key:
            return i
    raise KeyError(key)


def _env_value(text: str) -> Any:
    """Env values are strings; JSON arrays/objects are parsed so lists can be overridden."""
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


__all__ = ["CONFIG_ENV", "ENV_PREFIX", "apply_env", "format_loc"]
