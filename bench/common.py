"""Shared set-up for the benchmarks: an embedded server and synthetic tables of any size."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from driftwatch.synthetic import Topics


def machine() -> str:
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {python}, {datetime.now(UTC):%Y-%m-%d}"


def load_table(dsn: str, table: str, rows: int, dim: int, seed: int = 0, chunk: int = 50_000) -> float:
    """Create `table` with `rows` topic-structured vectors by binary COPY; returns seconds."""
    rng = np.random.default_rng(seed)
    topics = Topics.make(rng, 40, dim)
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        name = sql.Identifier(table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, embedding vector({}), model_version text)"
            ).format(name, sql.Literal(dim))
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} (id, embedding, model_version) FROM STDIN (FORMAT BINARY)").format(name)
        ) as copy:
            copy.set_types(["int8", "vector", "text"])
            for start in range(0, rows, chunk):
                vectors, _ = topics.sample(rng, min(chunk, rows - start))
                for offset, vector in enumerate(vectors):
                    copy.write_row((start + offset, vector, "v1"))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    return time.monotonic() - started


def table_exists(dsn: str, table: str, rows: int) -> bool:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (table,)
        ).fetchone()
    return bool(found) and abs(found[0] - rows) < 0.01 * rows


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def data_dir() -> Path:
    path = Path(__file__).resolve().parent / ".data"
    path.mkdir(exist_ok=True)
    return path


def write_section(text: str, begin: str, end: str) -> None:
    """Replace (or append) the marked section of BENCHMARKS.md with `text`, and print it."""
    print(text)
    path = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in current:
        head, rest = current.split(begin, 1)
        current = head + text + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + text + "\n"
    path.write_text(current)
