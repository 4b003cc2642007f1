"""Cycle cost against table size, and the sampler against the alternatives.

    .venv/bin/python bench/cycle_cost.py [--rows 100000,1000000,3000000] [--sample 20000] [--rounds 5]

Writes its tables into BENCHMARKS.md (between the cycle-cost markers) and prints them.
Ratios are what to read: every number in one table comes from one run on one machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, load_table, machine, markdown_table, table_exists, write_section

from driftwatch import cycle, store
from driftwatch.baseline import Fitted, capture
from driftwatch.config import settings_from_dict
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.observe import observe
from driftwatch.pg.sampler import sample_collection
from driftwatch.pg.session import Sessions
from driftwatch.store.repository import active_baseline

MARK_BEGIN, MARK_END = "<!-- cycle-cost:begin -->", "<!-- cycle-cost:end -->"


def timed(action) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def copy_seconds(dsn: str, query: sql.Composable) -> float:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
            buffer = b"".join(bytes(c) for c in copy)
        elapsed = time.perf_counter() - started
    assert buffer
    return elapsed


def collection_settings(dsn: str, table: str, size: int):  # type: ignore[no-untyped-def]
    return settings_from_dict(
        {"collections": [{"name": table, "dsn": dsn, "table": table, "model_version_column": "model_version",
                          "sample_size": size, "index_health_queries": 0}]},
        env={},
    ).collections[0]  # fmt: skip


def prepare(settings, engine, rng):  # type: ignore[no-untyped-def]
    """Capture the table's baseline; returns (capture seconds, fitted baseline, dimension)."""
    print(f"{settings.table}: capturing baseline ...", flush=True)
    capture_seconds, _ = timed(lambda: capture(settings, engine, rng))
    baseline = active_baseline(engine, settings.name)
    assert baseline is not None
    return capture_seconds, Fitted.unpack(baseline.arrays, baseline.summary), baseline.sample.shape[1]


def read(settings, engine, rng, fitted, dim: int):  # type: ignore[no-untyped-def]
    """What a cycle reads from these tables, which have no query log and no suite: the sample
    and the sentinel rows."""
    assert settings.query_log is None and settings.reference_suite is None
    with Sessions(settings) as sessions:
        return observe(
            sessions, settings, engine, rng, sample_size=settings.sample_size, expected_dim=dim,
            with_ids=False, window=None, suite=[], exact_rows=np.empty(0, int),
            sentinel_ids=fitted.sentinel_ids,
        )  # fmt: skip


def one_round(settings, engine, rng, fitted, dim: int) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """(read s, detector math s, whole cycle s, sampler alone s) for one table, once."""
    observe_s, observed = timed(lambda: read(settings, engine, rng, fitted, dim))
    score_s, _ = timed(lambda: cycle.score(settings, fitted, observed))
    total_s, _ = timed(lambda: cycle.check_collection(settings, engine, str(uuid.uuid4()), rng))
    size = settings.sample_size
    sample_s, _ = timed(lambda: sample_once(settings, size, rng, dim))
    return observe_s, score_s, total_s, sample_s


def sample_once(settings, size: int, rng, dim: int):  # type: ignore[no-untyped-def]
    """The sampler alone, on a connection of its own (as a cycle's first read)."""
    with Sessions(settings) as sessions:
        return sample_collection(sessions.store, settings, size, rng, expected_dim=dim)


def alternatives(dsn: str, table: str, rows: int, size: int) -> tuple[float, float, float, float]:
    """The other ways to read `size` rows: (first rows, BERNOULLI, SYSTEM, ORDER BY random()) seconds."""
    name, share = sql.Identifier(table), sql.Literal(100.0 * size / rows)
    return (
        copy_seconds(dsn, sql.SQL("SELECT embedding FROM {} LIMIT {}").format(name, size)),
        copy_seconds(dsn, sql.SQL("SELECT embedding FROM {} TABLESAMPLE BERNOULLI ({})").format(name, share)),
        copy_seconds(dsn, sql.SQL("SELECT embedding FROM {} TABLESAMPLE SYSTEM ({})").format(name, share)),
        copy_seconds(dsn, sql.SQL("SELECT embedding FROM {} ORDER BY random() LIMIT {}").format(name, size)),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000,3000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--sample", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5, help="timed cycles per table, interleaved")
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    server = EmbeddedPostgres(data_dir() / "pg")
    dsn = server.start()
    workdir = Path(tempfile.mkdtemp(prefix="dw-bench-"))
    engine = store.create_store_engine(f"sqlite:///{workdir / 'store.db'}")
    store.upgrade(engine)
    rng = np.random.default_rng(0)
    prepared = {}
    for rows in sizes:
        table = f"bench_{rows}_{args.dim}"
        if not table_exists(dsn, table, rows):
            print(f"loading {rows} x {args.dim} into {table} ...", flush=True)
            print(f"  loaded in {load_table(dsn, table, rows, args.dim):.0f}s", flush=True)
        settings = collection_settings(dsn, table, args.sample)
        prepared[rows] = (settings, *prepare(settings, engine, rng))
    # Round-robin over the tables, so a noisy stretch of the machine lands on every size alike.
    rounds: dict[int, list[tuple[float, float, float, float]]] = {rows: [] for rows in sizes}
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds} ...", flush=True)
        for rows in sizes:
            settings, _, fitted, dim = prepared[rows]
            rounds[rows].append(one_round(settings, engine, rng, fitted, dim))
    print("the alternatives, once per table ...", flush=True)
    other = {rows: alternatives(dsn, prepared[rows][0].table, rows, args.sample) for rows in sizes}
    how = {rows: sample_once(prepared[rows][0], args.sample, rng, prepared[rows][3]) for rows in sizes}
    engine.dispose()
    server.stop()

    def median(rows: int, column: int) -> float:
        return statistics.median(r[column] for r in rounds[rows])

    def spread(rows: int, column: int) -> str:
        values = [r[column] for r in rounds[rows]]
        return f"{min(values):.3f}-{max(values):.3f}"

    smallest = median(sizes[0], 2)
    cycle_table = markdown_table(
        ["table rows", "baseline capture s", "cycle s (median)", "cycle s (range)", "read s",
         "detector math s", "math share", "cycle vs smallest"],
        [
            [f"{rows:,}", f"{prepared[rows][1]:.2f}", f"{median(rows, 2):.3f}", spread(rows, 2),
             f"{median(rows, 0):.3f}", f"{median(rows, 1):.3f}", f"{median(rows, 1) / median(rows, 2):.0%}",
             f"{median(rows, 2) / smallest:.2f}x"]
            for rows in sizes
        ],
    )  # fmt: skip
    sampler_rows = []
    slower = {}  # rows -> (BERNOULLI, ORDER BY random()) time as a multiple of the sampler's
    for rows in sizes:
        sample = how[rows]  # which path the sampler took and how many pages it read
        sampled = median(rows, 3)
        first, bernoulli, system, random_order = other[rows]
        slower[rows] = (bernoulli / sampled, random_order / sampled)
        sampler_rows.append(
            [f"{rows:,}", f"{sampled:.3f}", sample.method, f"{sample.pages_probed:,}",
             f"{args.sample / sampled:,.0f}", f"{first:.3f}", f"{first / sampled:.0%}", f"{bernoulli:.3f}",
             f"{slower[rows][0]:.1f}x", f"{system:.3f}", f"{random_order:.3f}", f"{slower[rows][1]:.1f}x"]
        )  # fmt: skip
    sampler_table = markdown_table(
        ["table rows", "driftwatch sampler s", "method", "pages read", "rows/s",
         "raw seq COPY s (first rows, not a sample)", "sampler vs raw", "BERNOULLI s", "BERNOULLI vs sampler",
         "SYSTEM s (biased)", "ORDER BY random() s", "ORDER BY random() vs sampler"],
        sampler_rows,
    )  # fmt: skip
    largest = sizes[-1]
    summary = (
        f"In words: {largest // sizes[0]}x the rows ({largest:,} against {sizes[0]:,}) cost "
        f"{median(largest, 2) / smallest:.2f}x the cycle time (medians; that table's cycles took "
        f"{spread(largest, 2)} s). Detector math is at most "
        f"{max(median(r, 1) / median(r, 2) for r in sizes):.0%} of a cycle. "
        "Time of the alternatives that are samples, as a multiple of the sampler's: "
        + "; ".join(
            f"{rows:,} rows: BERNOULLI {slower[rows][0]:.1f}x, ORDER BY random() {slower[rows][1]:.1f}x"
            for rows in sizes
        )
        + "."
    )
    command = "python bench/cycle_cost.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Cycle cost ({args.dim}-d, sample {args.sample:,})\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. {args.rounds} cycles per table, taken "
        "round-robin across the tables (index health off: it is an exact scan, scheduled separately); "
        "the sampler's time is the median of as many samples, each alternative is timed once.\n\n"
        f"{cycle_table}\n\n### Sampler against the alternatives\n\n{sampler_table}\n\n{summary}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
