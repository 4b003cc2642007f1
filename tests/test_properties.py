"""Property-based tests (hypothesis) for what reads untrusted input: the config (file values
and env overrides) and the JSONL importers (query log, reference suite). Whatever comes in,
the answer is settings or a ConfigError / QueryLogError / SuiteError that names where the
problem is; never a crash, and nothing loaded that the store could not hold."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from driftwatch.config import settings_from_dict, split_qualified_name
from driftwatch.errors import ConfigError, QueryLogError, SuiteError
from driftwatch.jsonl import MAX_ID_CHARS
from driftwatch.pg.querylog import parse_querylog
from driftwatch.suite import parse_suite

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
COLLECTION_KEYS = [
    "name", "dsn", "table", "id_column", "vector_column", "metric", "model_version_column", "sample_size",
    "interval", "cron", "statement_timeout", "false_alarm_rate", "thresholds", "cells", "query_log",
    "reference_suite", "embedder", "sentinels",
]  # fmt: skip
HOSTILE = st.text(alphabet=string.printable + "\"';\x00é", max_size=70)


def base() -> dict:  # type: ignore[type-arg]
    return {"collections": [{"name": "docs", "dsn": "postgresql://dw@db/app", "table": "docs"}]}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(COLLECTION_KEYS) | st.text(max_size=10), JSON, max_size=4))
def test_any_collection_values_give_settings_or_a_named_error(values: dict) -> None:  # type: ignore[type-arg]
    raw = base()
    raw["collections"][0].update(values)
    try:
        settings_from_dict(raw, env={})
    except ConfigError as exc:
        assert exc.problems
        assert all(p.startswith(("collections", "(top level)")) and ": " in p for p in exc.problems), (
            exc.problems
        )


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet=string.ascii_letters + "_0", min_size=1, max_size=30), st.text(max_size=30)
    )
)
def test_any_env_overrides_give_settings_or_a_named_error(env: dict[str, str]) -> None:
    env = {f"DRIFTWATCH_{k}": v for k, v in env.items()}
    try:
        settings_from_dict(base(), env=env)
    except ConfigError as exc:
        assert exc.problems and all(": " in p for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_hostile_table_names_are_refused_or_quoted_whole(table: str) -> None:
    raw = base()
    raw["collections"][0]["table"] = table
    try:
        parsed = settings_from_dict(raw, env={}).collections[0]
    except ConfigError as exc:
        assert any(p.startswith("collections[0].table") for p in exc.problems), exc.problems
        return
    schema, name = split_qualified_name(parsed.table)
    quoted = (sql.Identifier(schema, name) if schema else sql.Identifier(name)).as_string(None)
    # Quoted, the name is one identifier (or two, with the schema) that reads back exactly:
    # no quote, dot or semicolon in it can end the identifier or the statement.
    assert split_qualified_name(quoted) == (schema, name)


VALID = st.fixed_dictionaries(
    {
        "ts": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        "query_id": st.text(min_size=1, max_size=10).filter(lambda s: s.strip() and "\x00" not in s),
        "result_ids": st.lists(st.integers(0, 50).map(str), min_size=1, max_size=5, unique=True),
    }
).flatmap(
    lambda r: st.fixed_dictionaries(
        {
            **{k: st.just(v) for k, v in r.items()},
            "result_scores": st.lists(
                st.floats(-1, 1), min_size=len(r["result_ids"]), max_size=len(r["result_ids"])
            ),
            "clicked_ids": st.lists(st.sampled_from(r["result_ids"]), unique=True, max_size=2),
        }
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(VALID, min_size=1, max_size=5, unique_by=lambda r: r["query_id"]))
def test_valid_logs_round_trip(tmp_path: Path, records: list[dict]) -> None:  # type: ignore[type-arg]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    parsed = parse_querylog(path)
    assert [q.result_ids for q in parsed] == [r["result_ids"] for r in records]
    assert [q.clicked_ids for q in parsed] == [r["clicked_ids"] for r in records]
    assert [q.ts for q in parsed] == [datetime.fromisoformat(r["ts"]) for r in records]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(st.text(max_size=60), VALID.map(json.dumps), JSON.map(json.dumps)), min_size=1, max_size=5
    )
)
def test_any_lines_load_or_name_the_line(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n")
    try:
        parsed = parse_querylog(path)
    except QueryLogError as exc:
        assert exc.problems and all(
            p.startswith(("line ", "query_embedding", "no queries", "(stopped")) for p in exc.problems
        ), exc.problems
        return
    assert parsed and all(len(q.result_ids) == len(q.result_scores) for q in parsed)


# Ids as they come from real exports, and as they come from broken ones: NUL characters, lone
# surrogates, megabyte-long and empty ids, integers far beyond any float.
IDS = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(10**45), max_value=10**45),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", ""]),
    st.text(alphabet="x", min_size=MAX_ID_CHARS - 1, max_size=MAX_ID_CHARS + 2),
)


def storable(text: str) -> bool:
    return (
        "\x00" not in text and len(text) <= MAX_ID_CHARS and text == text.encode("utf-8", "replace").decode()
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(IDS, st.lists(IDS, min_size=1, max_size=3)), min_size=1, max_size=5))
def test_any_log_ids_load_storable_and_unique_or_name_the_line(tmp_path: Path, rows: list) -> None:  # type: ignore[type-arg]
    lines = [
        json.dumps(
            {
                "ts": "2026-11-01T12:00:00Z",
                "query_id": q,
                "result_ids": ids,
                "result_scores": [0.1] * len(ids),
            }
        )
        for q, ids in rows
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        parsed = parse_querylog(path)
    except QueryLogError as exc:
        assert exc.problems and all(p.startswith("line ") for p in exc.problems), exc.problems
        return
    assert len({q.query_id for q in parsed}) == len(parsed)
    assert all(storable(i) for q in parsed for i in [q.query_id, *q.result_ids])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(IDS, st.lists(IDS, min_size=1, max_size=3), st.lists(IDS, min_size=1, max_size=3)),
        min_size=1,
        max_size=5,
    )
)
def test_any_suite_values_load_storable_and_unique_or_name_the_line(tmp_path: Path, rows: list) -> None:  # type: ignore[type-arg]
    """Embeddings get the same ids' hostile values (huge integers) as coordinates."""
    lines = [
        json.dumps(
            {"query_id": q, "relevant_ids": ids, "embedding": [1, *[v for v in coords if isinstance(v, int)]]}
        )
        for q, ids, coords in rows
    ]
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        parsed = parse_suite(path)
    except SuiteError as exc:
        assert exc.problems and all(p.startswith(("line ", "embedding: mixed")) for p in exc.problems), (
            exc.problems
        )
        return
    assert len({q.query_id for q in parsed}) == len(parsed)
    assert all(storable(i) for q in parsed for i in [q.query_id, *q.relevant_ids])
    assert all(q.embedding is not None and bool(np.isfinite(q.embedding).all()) for q in parsed)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=9, max_value=200_000))
def test_any_nesting_depth_loads_nothing_and_names_the_line(tmp_path: Path, depth: int) -> None:
    nested = "[" * depth + "1" + "]" * depth
    path = tmp_path / "log.jsonl"
    path.write_text('{"ts": "2026-11-01T12:00:00Z", "query_id": "q", "result_ids": ' + nested + "}\n")
    try:
        parse_querylog(path)
    except QueryLogError as exc:
        assert exc.problems == ["line 1: nested deeper than 8 levels"]
    else:
        raise AssertionError("a nested record loaded")
