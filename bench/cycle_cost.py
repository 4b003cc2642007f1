"""Cycle cost against table size, and the sampler against the alternatives.

    .venv/bin/python bench/cycle_cost.py [--rows 100000,1000000] [--dim 384] [--sample 20000]

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
from driftwatch.repository import active_baseline
from driftwatch.sampler import sample_collection

MARK_BEGIN, MARK_END = "<!-- cycle-cost:begin -->", "<!-- cycle-cost:end -->"


def timed(action, repeats: int = 3) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def copy_seconds(dsn: str, query: sql.Composable) -> float:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
            buffer = b"".join(bytes(c) for c in copy)
        elapsed = time.perf_counter() - started
    assert buffer
    return elapsed


def measure(dsn: str, engine, table: str, rows: int, size: int) -> tuple[tuple, tuple]:  # type: ignore[no-untyped-def]
    """(cycle timings, sampler-vs-alternatives timings) for one table."""
    settings = settings_from_dict(
        {"collections": [{"name": table, "dsn": dsn, "table": table, "model_version_column": "model_version",
                          "sample_size": size, "index_health_queries": 0}]},
        env={},
    ).collections[0]  # fmt: skip
    rng = np.random.default_rng(0)
    print(f"{table}: capturing baseline ...", flush=True)
    capture_seconds, _ = timed(lambda: capture(settings, engine, rng), repeats=1)
    baseline = active_baseline(engine, table)
    assert baseline is not None
    fitted = Fitted.unpack(baseline.arrays, baseline.summary)
    dim = baseline.sample.shape[1]
    now = cycle.datetime.now(cycle.UTC)
    observe_s, observed = timed(lambda: cycle._observe(settings, engine, rng, fitted, dim, now))
    score_s, _ = timed(lambda: cycle.score(settings, fitted, observed))
    total_s, report = timed(lambda: cycle.check_collection(settings, engine, str(uuid.uuid4()), rng))
    # The sampler against the alternatives: same table, same sample size.
    sample_s, sample = timed(lambda: sample_collection(settings, size, rng, expected_dim=dim))  # as cycles do
    name, share = sql.Identifier(table), sql.Literal(100.0 * size / rows)
    seq_copy = copy_seconds(dsn, sql.SQL("SELECT embedding FROM {} LIMIT {}").format(name, size))
    bernoulli = copy_seconds(
        dsn, sql.SQL("SELECT embedding FROM {} TABLESAMPLE BERNOULLI ({})").format(name, share)
    )
    system = copy_seconds(
        dsn, sql.SQL("SELECT embedding FROM {} TABLESAMPLE SYSTEM ({})").format(name, share)
    )
    random_order = copy_seconds(
        dsn, sql.SQL("SELECT embedding FROM {} ORDER BY random() LIMIT {}").format(name, size)
    )
    return (
        (rows, capture_seconds, observe_s, score_s, total_s, report.sample_size),
        (rows, sample_s, seq_copy, bernoulli, system, random_order, sample.pages_probed, sample.method),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--sample", type=int, default=20000)
    args = parser.parse_args()
    server = EmbeddedPostgres(data_dir() / "pg")
    dsn = server.start()
    workdir = Path(tempfile.mkdtemp(prefix="dw-bench-"))
    engine = store.create_store_engine(f"sqlite:///{workdir / 'store.db'}")
    store.upgrade(engine)
    cycle_rows, sampler_rows = [], []
    for rows in (int(r) for r in args.rows.split(",")):
        table = f"bench_{rows}_{args.dim}"
        if not table_exists(dsn, table, rows):
            print(f"loading {rows} x {args.dim} into {table} ...", flush=True)
            print(f"  loaded in {load_table(dsn, table, rows, args.dim):.0f}s", flush=True)
        cycle_row, sampler_row = measure(dsn, engine, table, rows, args.sample)
        cycle_rows.append(cycle_row)
        sampler_rows.append(sampler_row)
    engine.dispose()
    server.stop()

    base = cycle_rows[0]
    cycle_table = markdown_table(
        [
            "table rows",
            "baseline capture s",
            "cycle s",
            "read s",
            "detector math s",
            "math share",
            "cycle vs smallest",
        ],
        [
            [
                f"{r:,}",
                f"{cap:.2f}",
                f"{tot:.3f}",
                f"{obs:.3f}",
                f"{sc:.3f}",
                f"{sc / tot:.0%}",
                f"{tot / base[4]:.2f}x",
            ]
            for r, cap, obs, sc, tot, _ in cycle_rows
        ],
    )
    sampler_table = markdown_table(
        ["table rows", "driftwatch sampler s", "method", "pages read", "rows/s",
         "raw seq COPY s (first rows, not a sample)", "sampler vs raw", "BERNOULLI s", "SYSTEM s (biased)",
         "ORDER BY random() s"],
        [
            [f"{r:,}", f"{s:.3f}", method, f"{pages:,}", f"{args.sample / s:,.0f}", f"{seq:.3f}",
             f"{seq / s:.0%}", f"{b:.3f}", f"{sy:.3f}", f"{rnd:.3f}"]
            for r, s, seq, b, sy, rnd, pages, method in sampler_rows
        ],
    )  # fmt: skip
    command = "python bench/cycle_cost.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Cycle cost ({args.dim}-d, sample {args.sample:,})\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. Median of 3 cycles "
        "(index health off: it is an exact scan, scheduled separately).\n\n"
        f"{cycle_table}\n\n### Sampler against the alternatives\n\n{sampler_table}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
