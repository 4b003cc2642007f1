"""Metric names used by a PromQL expression, so tests can check that alert rules and
dashboards only query metrics driftwatch exports (docs/metrics.md): a renamed metric
would otherwise leave an alert that never fires or a panel that stays empty.

Not a PromQL parser, a tokenizer that knows which identifiers are not metric names:
keywords and aggregation operators, function calls, label lists after by / without / on /
ignoring / group_left / group_right, label names inside {...}, string literals, numbers
and durations, [range] and [subquery:step] brackets, comments, and Grafana template
variables ($var, ${var}). A name given as {__name__="x"} or {"x"} counts too.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The PromQL lexer's keywords (case-insensitive): binary and modifier keywords, aggregation
# operators, and the Inf / NaN literals. Function names are not keywords; a '(' after an
# identifier is what makes it a function call.
BINARY_AND_MODIFIERS = {"and", "or", "unless", "atan2", "bool", "offset"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk"}
AGGREGATIONS |= {"count_values", "quantile", "limitk", "limit_ratio"}
KEYWORDS = frozenset(BINARY_AND_MODIFIERS | LABEL_LISTS | AGGREGATIONS | {"inf", "nan"})

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<number>\.?\d[\w.]*)
    | (?P<ident>[A-Za-z_:][\w:]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (not label names, functions or keywords)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"]
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            end = _closing(tokens, i)
            names |= _names_in_matchers(tokens[i + 1 : end])
            i = end
        elif text == "[":  # a range or subquery: durations and variables only
            i = _closing(tokens, i)
        elif kind == "ident" and text.lower() in LABEL_LISTS and following == "(":
            i = _closing(tokens, i + 1)
        elif kind == "ident" and text.lower() not in KEYWORDS and following != "(":
            names.add(text)
        i += 1
    return names


def _closing(tokens: list[tuple[str | None, str]], start: int) -> int:
    """Index of the bracket that closes the one at `start` (the last token if none does)."""
    opening = tokens[start][1]
    closing = {"(": ")", "[": "]", "{": "}"}[opening]
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i][1] == opening:
            depth += 1
        elif tokens[i][1] == closing:
            depth -= 1
            if depth == 0:
                return i
    return len(tokens) - 1


def _names_in_matchers(tokens: list[tuple[str | None, str]]) -> set[str]:
    """Metric names in the label matchers between { and }: `__name__="x"` or a bare `"x"`."""
    names = set()
    matcher: list[tuple[str | None, str]] = []
    for token in [*tokens, ("other", ",")]:
        if token != ("other", ","):
            matcher.append(token)
            continue
        if len(matcher) == 1 and matcher[0][0] == "string":
            names.add(_unquote(matcher[0][1]))
        elif len(matcher) == 3 and matcher[1][1] == "=" and matcher[2][0] == "string":
            label = _unquote(matcher[0][1]) if matcher[0][0] == "string" else matcher[0][1]
            if label == "__name__":
                names.add(_unquote(matcher[2][1]))
        matcher = []
    return names


def _unquote(literal: str) -> str:
    return literal[1:-1] if literal.startswith("`") else ast.literal_eval(literal)


def documented_metrics() -> set[str]:
    """Metric names in the table of docs/metrics.md, with the series a histogram adds."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|", text, re.MULTILINE)
    names = {name for name, _ in rows}
    names |= {name + s for name, kind in rows if kind == "histogram" for s in ("_bucket", "_sum", "_count")}
    return names


def rule_exprs(path: Path) -> dict[str, str]:
    """alert name -> expr of a Prometheus rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_exprs(path: Path) -> list[str]:
    """Every PromQL `expr` in a Grafana dashboard: panel targets and annotations."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(path.read_text()))
    return found
