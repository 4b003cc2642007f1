"""JSONL files people hand to driftwatch (reference suites, query logs): every problem is
named by its line number, and a file with any problem loads nothing.

Beyond JSON itself, a line is refused when it holds what would fail later, far from the
file: an integer too long for a float (a 400-digit one), nesting deeper than any record
needs (Python's parser would hit its recursion limit), a lone UTF-16 surrogate or a NUL
character (neither can be stored as PostgreSQL text).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_PROBLEMS = 50  # a broken export is explained by its first fifty problems
MAX_DEPTH = 8  # records are flat objects of lists: deeper nesting is not a record
MAX_INT_DIGITS = 30  # beyond, an integer is no id and no coordinate (a float32 overflows at 39)
MAX_ID_CHARS = 200  # ids are stored in String(200) columns


def read_records(path: Path, parse: Callable[[dict[str, Any]], T]) -> tuple[list[tuple[int, T]], list[str]]:
    """(line number, parse(object)) for every non-blank line, and `line N: ...` problems; `parse`
    raises ValueError naming the field."""
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return [], [f"{path}: file not found"]
    except IsADirectoryError:
        return [], [f"{path}: is a directory"]
    records: list[tuple[int, T]] = []
    problems: list[str] = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: not UTF-8 text (byte {exc.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            records.append((number, parse(decode_line(line))))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"(stopped after {MAX_PROBLEMS} problems)")
            break
    return records, problems


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def decode_line(line: str) -> dict[str, Any]:
    """One line as a JSON object, or ValueError saying what is wrong with it."""
    if _depth(line) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    record = json.loads(line, parse_int=_bounded_int)  # NaN: refused by the field, which is named
    if not isinstance(record, dict):
        raise ValueError("must be a JSON object")
    _check_strings(record)
    return record


def _depth(line: str) -> int:
    """The deepest bracket nesting, outside strings: checked before parsing, because
    Python's parser recurses and 100k levels would exhaust the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_strings(value: Any, where: str = "") -> None:
    """Every key and string must be storable as PostgreSQL text: no NUL, no lone surrogate."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where or "a field name")
            _check_strings(item, where or key)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, where)
    elif isinstance(value, str):
        _check_text(value, where)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{where}: holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: holds a lone surrogate (an escape like \\ud800 with no pair)") from None


def check_id(value: Any, name: str) -> str:
    """An id as text: a non-empty string or an integer, at most MAX_ID_CHARS characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{name}: ids must be strings or integers")
    text = str(value)
    if not text.strip():
        raise ValueError(f"{name}: ids must be non-empty")
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"{name}: an id of {len(text)} characters (at most {MAX_ID_CHARS})")
    return text


def mixed_dimensions(field: str, first_line_of: dict[int, int]) -> list[str]:
    """A problem when vectors in one file have more than one length."""
    if len(first_line_of) <= 1:
        return []
    described = ", ".join(f"{d} (first on line {n})" for d, n in sorted(first_line_of.items()))
    return [f"{field}: mixed dimensions {described}"]


__all__ = ["MAX_ID_CHARS", "check_id", "decode_line", "mixed_dimensions", "read_records"]
