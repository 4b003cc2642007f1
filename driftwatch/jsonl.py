"""JSONL files people hand to driftwatch (reference suites, query logs): every problem is
named by its line number, and a file with any problem loads nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_PROBLEMS = 50  # a broken export is explained by its first fifty problems


def read_records(path: Path, parse: Callable[[dict[str, Any]], T]) -> tuple[list[tuple[int, T]], list[str]]:
    """(line number, parse(object)) for every non-blank line, and `line N: ...` problems; `parse`
    raises ValueError naming the field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], [f"{path}: file not found"]
    except UnicodeDecodeError:
        return [], [f"{path}: not UTF-8 text"]
    records: list[tuple[int, T]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("must be a JSON object")
            records.append((number, parse(record)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"(stopped after {MAX_PROBLEMS} problems)")
            break
    return records, problems


def mixed_dimensions(field: str, first_line_of: dict[int, int]) -> list[str]:
    """A problem when vectors in one file have more than one length."""
    if len(first_line_of) <= 1:
        return []
    described = ", ".join(f"{d} (first on line {n})" for d, n in sorted(first_line_of.items()))
    return [f"{field}: mixed dimensions {described}"]


__all__ = ["mixed_dimensions", "read_records"]
