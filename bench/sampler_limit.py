"""The sampler against its physical limit: a bare binary COPY of as many *known* random rows.

    .venv/bin/python bench/sampler_limit.py --build 100000:384,1000000:384,10000000:384,100000:1536,...
    .venv/bin/python bench/sampler_limit.py [--tables 100000:384,...] [--sample 20000] [--rounds 7]

`--build` loads the tables (unlogged, random unit vectors, binary COPY straight from numpy)
into the benchmark server under bench/.data and prints how long each took; it is never part
of `make test`. The timing run then, per round and per table, times
* the sampler: `sample_collection` on a fresh session (the cycle's first read), and
* the limit: `COPY (SELECT embedding FROM t WHERE ctid = ANY(tids)) TO STDOUT (FORMAT BINARY)`
  of `--sample` tuple ids drawn uniformly from the table's live tuples beforehand (so no
  choosing at all), on a fresh connection, plus decoding the stream into a float32 array,
interleaved round-robin (sampler, limit, next table, ...) so a busy stretch of the shared
machine lands on both alike; the table reports medians and their ratio. Both read cold
rows: each round draws fresh random rows, as each cycle does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, machine, markdown_table, write_section

from driftwatch.config import settings_from_dict
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.pg.codecs import COPY_SIGNATURE, copy_layout, copy_rows, decode_copy
from driftwatch.pg.sampler import sample_collection
from driftwatch.pg.session import Sessions

MARK_BEGIN, MARK_END = "<!-- sampler-limit:begin -->", "<!-- sampler-limit:end -->"
CHUNK = 100_000


def table_name(rows: int, dim: int) -> str:
    return f"limit_{rows}_{dim}"


def parse_tables(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        rows, dim = item.split(":")
        pairs.append((int(rows), int(dim)))
    return pairs


def load(dsn: str, rows: int, dim: int, seed: int = 0) -> float:
    """Create the table and fill it by binary COPY of rows packed by numpy; returns seconds
    (load, then VACUUM ANALYZE so the visibility map and reltuples are as on a settled table)."""
    name = sql.Identifier(table_name(rows, dim))
    layout = np.dtype(
        [("count", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("v_len", ">i4"), ("v_dim", ">u2"),
         ("v_unused", ">u2"), ("v", ">f4", (dim,))]
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (id bigint, embedding vector({}))").format(
                name, sql.Literal(dim)
            )
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} (id, embedding) FROM STDIN (FORMAT BINARY)").format(name)
        ) as cp:
            cp.write(COPY_SIGNATURE + b"\x00" * 8)
            for start in range(0, rows, CHUNK):
                n = min(CHUNK, rows - start)
                block = np.empty(n, dtype=layout)
                block["count"], block["id_len"], block["v_len"] = 2, 8, 4 + 4 * dim
                block["id"] = np.arange(start, start + n)
                block["v_dim"], block["v_unused"] = dim, 0
                vectors = rng.standard_normal((n, dim), dtype=np.float32)
                block["v"] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
                cp.write(block.tobytes())
            cp.write(b"\xff\xff")
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    return time.monotonic() - started


def builds_file() -> Path:
    return data_dir() / "sampler-limit-builds.json"


def build(dsn: str, tables: list[tuple[int, int]]) -> None:
    """Load the tables; each one's build time and size go to a file the timing run reports."""
    builds = json.loads(builds_file().read_text()) if builds_file().exists() else {}
    for rows, dim in tables:
        print(f"loading {rows:,} x {dim} ...", flush=True)
        seconds = load(dsn, rows, dim)
        with psycopg.connect(dsn) as conn:
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s))", (table_name(rows, dim),)
            ).fetchone()[0]
        print(f"  {table_name(rows, dim)}: built in {seconds:.0f} s, {size}", flush=True)
        builds[table_name(rows, dim)] = {"seconds": round(seconds), "size": size}
        builds_file().write_text(json.dumps(builds, indent=1))


def built(tables: list[tuple[int, int]]) -> str:
    """What building the tables took, as the build recorded it."""
    builds = json.loads(builds_file().read_text()) if builds_file().exists() else {}
    said = [
        f"{rows:,} x {dim}: {builds[name]['seconds']} s, {builds[name]['size']}"
        for rows, dim in tables
        if (name := table_name(rows, dim)) in builds
    ]
    return "; ".join(said) if said else "not recorded"


def all_tids(dsn: str, table: str) -> np.ndarray:
    """Every live tuple id of the table, as page << 16 | offset (read once, untimed)."""
    query = sql.SQL(
        "SELECT ((ctid::text::point)[0]::int8 << 16) | (ctid::text::point)[1]::int8 FROM {}"
    ).format(sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        return copy_rows(conn, query, copy_layout(tid="int8"))["tid"].astype(np.int64)


def limit_seconds(dsn: str, table: str, tids: np.ndarray, dim: int) -> float:
    """A bare binary COPY of the vectors of `tids`, decoded to float32: the physical limit."""
    text = "{" + ",".join(f'"({t >> 16},{t & 0xFFFF})"' for t in tids.tolist()) + "}"
    query = sql.SQL("SELECT embedding FROM {} WHERE ctid = ANY({}::tid[])").format(
        sql.Identifier(table), sql.Literal(text)
    )
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
            buffer = b"".join(bytes(chunk) for chunk in copy)
        vectors = decode_copy(buffer, copy_layout(v=dim))["v"].astype(np.float32)
    elapsed = time.perf_counter() - started
    assert len(vectors) == len(tids)
    return elapsed


def sampler_seconds(dsn: str, table: str, size: int, dim: int, rng: np.random.Generator) -> tuple[float, str]:
    settings = settings_from_dict(
        {"collections": [{"name": table, "dsn": dsn, "table": table, "sample_size": size}]}, env={}
    ).collections[0]
    started = time.perf_counter()
    with Sessions(settings) as sessions:
        sample = sample_collection(sessions.store, settings, size, rng, expected_dim=dim)
    elapsed = time.perf_counter() - started
    assert sample.vectors.shape == (size, dim), sample.vectors.shape
    return elapsed, sample.method


def run(dsn: str, tables: list[tuple[int, int]], size: int, rounds: int) -> str:
    rng = np.random.default_rng(1)
    tids = {key: all_tids(dsn, table_name(*key)) for key in tables}
    timings: dict[tuple[int, int], dict[str, list[float]]] = {k: {"sampler": [], "limit": []} for k in tables}
    methods: dict[tuple[int, int], str] = {}
    for number in range(rounds):
        print(f"round {number + 1}/{rounds} ...", flush=True)
        for key in tables:
            table, dim = table_name(*key), key[1]
            chosen = np.sort(rng.choice(tids[key], size=size, replace=False))
            first, second = ("sampler", "limit") if number % 2 == 0 else ("limit", "sampler")
            for which in (first, second):
                if which == "sampler":
                    seconds, methods[key] = sampler_seconds(dsn, table, size, dim, rng)
                else:
                    seconds = limit_seconds(dsn, table, chosen, dim)
                timings[key][which].append(seconds)
    rows = []
    for key in tables:
        sampler, limit = (statistics.median(timings[key][w]) for w in ("sampler", "limit"))
        spread = f"{min(timings[key]['sampler']):.3f}-{max(timings[key]['sampler']):.3f}"
        paired = [s / b for s, b in zip(timings[key]["sampler"], timings[key]["limit"], strict=True)]
        rows.append(
            [f"{key[0]:,}", str(key[1]), methods[key], f"{sampler:.3f}", spread, f"{limit:.3f}",
             f"{sampler / limit:.2f}x", f"{statistics.median(paired):.2f}x"]
        )  # fmt: skip
    return markdown_table(
        ["table rows", "dim", "sampler path", "sampler s (median)", "sampler s (range)",
         "bare tid-list COPY s (median)", "sampler / limit (medians)", "sampler / limit (median of rounds)"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", help="rows:dim,... tables to (re)load, then exit")
    parser.add_argument("--tables", default="100000:384,1000000:384,100000:1536,1000000:1536")
    parser.add_argument("--sample", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    server = EmbeddedPostgres(data_dir() / "pg-limit")
    dsn = server.start()
    try:
        if args.build:
            build(dsn, parse_tables(args.build))
            return
        table = run(dsn, parse_tables(args.tables), args.sample, args.rounds)
    finally:
        server.stop()
    command = "python bench/sampler_limit.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Sampler against its physical limit (sample {args.sample:,})\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. {args.rounds} rounds; in each, every "
        "table's sampler run and bare tid-list COPY run back to back (alternating which goes first), "
        "each on a fresh connection and a fresh random set of rows; medians.\n\n"
        f"{table}\n\nBuilding the tables (`--build`: unlogged, binary COPY from numpy, then VACUUM ANALYZE; "
        f"never part of `make test`) took: {built(parse_tables(args.tables))}.\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
