"""Peak memory of `baseline capture` and of one cycle (`check`), run as the CLI is run.

    .venv/bin/python bench/memory.py [--rows 150000] [--dims 384,768,1536] [--sample 20000]

Each step is its own `driftwatch` process, so its peak RSS (`ru_maxrss` of the child, the
"Maximum resident set size" of `/usr/bin/time -v`) is that step's alone. The tables are
built once by binary COPY in an embedded PostgreSQL under bench/.data and kept. Writes its
table into BENCHMARKS.md between the memory markers and prints it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, machine, markdown_table, table_exists, write_section

from driftwatch.embedded import EmbeddedPostgres
from driftwatch.synthetic import Topics

MARK_BEGIN, MARK_END = "<!-- memory:begin -->", "<!-- memory:end -->"
DRIFTWATCH = Path(sys.executable).with_name("driftwatch")
HOLD_OUT_FACTOR = 5  # as driftwatch.baseline: a capture reads n reference + 5n held-out rows
BEFORE = (
    "Before the memory work of issue 20 (commit a3f990e, the same command and tables): capture "
    "1,303 / 2,401 / 4,598 MB and a cycle 608 / 644 / 815 MB at 384 / 768 / 1536-d. What a cycle "
    "holds at 1536-d now: the interpreter with scipy.stats and the rest imported (~155 MB), the "
    "baseline's fitted state (~62 MB, mostly new_territory's 4,096 anchors), the sample (117 MB), "
    "and the detectors' and the sampler's blocks on top."
)


def copy_rows(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """Rows (id bigint, embedding vector(d), model_version text 'v1') as binary COPY data,
    built by numpy in one piece (no Python object per row)."""
    dim = vectors.shape[1]
    layout = np.dtype(
        [("count", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("v_len", ">i4"), ("v_dim", ">u2"),
         ("v_unused", ">u2"), ("v", ">f4", (dim,)), ("t_len", ">i4"), ("t", "S2")]
    )  # fmt: skip
    rows = np.zeros(len(ids), dtype=layout)
    rows["count"], rows["id_len"], rows["id"] = 3, 8, ids
    rows["v_len"], rows["v_dim"], rows["v"] = 4 + 4 * dim, dim, vectors
    rows["t_len"], rows["t"] = 2, b"v1"
    return rows.tobytes()


def load_table(dsn: str, table: str, rows: int, dim: int, seed: int = 0, chunk: int = 10_000) -> float:
    """Create `table` with `rows` topic-structured unit vectors; returns seconds."""
    rng = np.random.default_rng(seed)
    topics = Topics.make(rng, 40, dim)
    started = time.monotonic()
    name = sql.Identifier(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, embedding vector({}), model_version text)"
            ).format(name, sql.Literal(dim))
        )
        statement = sql.SQL("COPY {} (id, embedding, model_version) FROM STDIN (FORMAT BINARY)").format(name)
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
            for start in range(0, rows, chunk):
                vectors, _ = topics.sample(rng, min(chunk, rows - start))
                copy.write(copy_rows(np.arange(start, start + len(vectors)), vectors))
            copy.write(b"\xff\xff")
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
    return time.monotonic() - started


def write_config(path: Path, dsn: str, tables: list[str], sample: int, store_url: str) -> None:
    lines = [f'[store]\nurl = "{store_url}"\n']
    for table in tables:
        lines.append(
            f'[[collections]]\nname = "{table}"\ndsn = "{dsn}"\ntable = "{table}"\n'
            f'model_version_column = "model_version"\nsample_size = {sample}\nindex_health_queries = 0\n'
        )
    path.write_text("\n".join(lines))


def peak_rss(args: list[str], config: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one `driftwatch` command in its own process:
    `wait4` gives that child's own rusage (what `/usr/bin/time -v` reports)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        command = [str(DRIFTWATCH), "--config", str(config), "--log-level", "WARNING", *args]
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            out.seek(0)
            raise SystemExit(f"driftwatch {' '.join(args)} failed:\n{out.read().decode()}")
    return usage.ru_maxrss / 1024, time.monotonic() - started, code


def measure(dsn: str, table: str, sample: int, workdir: Path) -> tuple[float, float, float, float]:
    """(capture MB, capture s, check MB, check s) for one table, each in a fresh process."""
    config = workdir / f"{table}.toml"
    write_config(config, dsn, [table], sample, f"sqlite:///{workdir / (table + '.db')}")
    upgrade = [str(DRIFTWATCH), "--config", str(config), "db", "upgrade"]
    subprocess.run(upgrade, check=True, capture_output=True)
    capture_mb, capture_s, _ = peak_rss(["baseline", "capture", "--collection", table], config)
    check_mb, check_s, _ = peak_rss(["check", "--no-alerts", "--collection", table], config)
    return capture_mb, capture_s, check_mb, check_s


def baseline_rss() -> float:
    """Peak RSS (MB) of `driftwatch --version`: the interpreter and the imports."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text("")
        return peak_rss(["--version"], config)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--dims", default="384,768,1536")
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--dsn", help="a running server holding the tables (default: the embedded one)")
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    server = None if args.dsn else EmbeddedPostgres(data_dir() / "pg")
    dsn = args.dsn or server.start()
    workdir = Path(tempfile.mkdtemp(prefix="dw-mem-"))
    try:
        loaded = False
        for dim in dims:
            table = f"mem_{args.rows}_{dim}"
            if not table_exists(dsn, table, args.rows):
                print(f"loading {args.rows:,} x {dim} into {table} ...", flush=True)
                print(f"  loaded in {load_table(dsn, table, args.rows, dim):.0f}s", flush=True)
                loaded = True
        if loaded:
            # A child starts with the RSS this process has when it forks, and Linux keeps that
            # peak across exec: after loading the rows here, every measured driftwatch would
            # report at least this process's size. Measure from a fresh process image instead.
            print("tables loaded; measuring from a fresh process", flush=True)
            if server is not None:
                server.stop()
            os.execv(sys.executable, [sys.executable, *sys.argv])
        idle = baseline_rss()
        rows = []
        for dim in dims:
            print(f"{dim}-d: capture and check ...", flush=True)
            table = f"mem_{args.rows}_{dim}"
            capture_mb, capture_s, check_mb, check_s = measure(dsn, table, args.sample, workdir)
            held = args.sample * (1 + HOLD_OUT_FACTOR) * dim * 4 / 2**20  # float32 rows a capture reads
            cycle = args.sample * dim * 4 / 2**20
            rows.append(
                [f"{dim}", f"{held:,.0f}", f"{capture_mb:,.0f}", f"{capture_mb / held:.1f}x",
                 f"{capture_s:.0f}", f"{cycle:,.0f}", f"{check_mb:,.0f}", f"{check_mb / cycle:.1f}x",
                 f"{check_s:.1f}"]
            )  # fmt: skip
            print(rows[-1], flush=True)
    finally:
        if server is not None:
            server.stop()
    table = markdown_table(
        ["dim", "capture rows MB (6n float32)", "capture peak RSS MB", "vs rows", "capture s",
         "cycle rows MB (n float32)", "cycle peak RSS MB", "vs rows", "cycle s"],
        rows,
    )  # fmt: skip
    command = "python bench/memory.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Memory: peak RSS of a capture and of a cycle\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. Tables of {args.rows:,} rows of each "
        f"dimension (synthetic topic-structured unit vectors), sample {args.sample:,}: a capture reads "
        f"n + {HOLD_OUT_FACTOR}n = {args.sample * (1 + HOLD_OUT_FACTOR):,} rows, a cycle n. Each step is "
        "one `driftwatch` CLI process (store: SQLite), peak RSS is its `ru_maxrss`, which is what "
        "`/usr/bin/time -v` reports. `driftwatch --version` (the CLI alone, detectors not imported) "
        f"peaks at {idle:.0f} MB. Seconds are wall time on a shared machine: RSS is what this table is "
        "for. Targets (issue 20): capture <= 1,536 MB and a cycle <= 400 MB at "
        "1536-d.\n\n"
        f"{table}\n\n{BEFORE}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
