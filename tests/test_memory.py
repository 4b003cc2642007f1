"""Memory bounds of a capture and a cycle, measured on real `driftwatch` processes: the peak
RSS of each (its own `wait4` rusage) must stay within a wide multiple of the bytes of the
rows it holds at once. A float64 copy of the sample, or a second full copy, breaks it.
The real figures at 384 to 1,536 dimensions are in BENCHMARKS.md (bench/memory.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from driftwatch.baseline import HOLD_OUT_FACTOR, _reorder, _usable_rows
from driftwatch.detect.observation import VectorSample
from driftwatch.synthetic import Topics

DIM = 1536
SAMPLE = 1000  # a capture reads n + 5n = 6,000 rows: 37 MB of float32
ROWS = SAMPLE * (1 + HOLD_OUT_FACTOR)
MB = 2**20


def _load(dsn: str, table: str, rows: int, dim: int) -> None:
    """`rows` unit vectors by one binary COPY built by numpy (seconds, not minutes)."""
    rng = np.random.default_rng(7)
    vectors, _ = Topics.make(rng, 20, dim).sample(rng, rows)
    layout = np.dtype(
        [("count", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("v_len", ">i4"), ("v_dim", ">u2"),
         ("v_unused", ">u2"), ("v", ">f4", (dim,))]
    )  # fmt: skip
    data = np.zeros(rows, dtype=layout)
    data["count"], data["id_len"], data["id"] = 2, 8, np.arange(rows)
    data["v_len"], data["v_dim"], data["v"] = 4 + 4 * dim, dim, vectors
    name = sql.Identifier(table)
    with psycopg.connect(dsn, autocommit=True) as conn:
        create = sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, embedding vector({}))")
        conn.execute(create.format(name, dim))
        statement = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + data.tobytes() + b"\xff\xff")
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))


# A parent whose only job is to fork the command and report its peak: ru_maxrss outlives
# exec, so a child spawned straight from this (large) test process would report at least
# the test's own RSS; forked from a small interpreter it reports its own.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print("PEAK", usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _peak_mb(*args: str) -> float:
    """Peak RSS (MB) of one `python ARGS` process, from its own rusage."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, *args], capture_output=True, text=True, timeout=300
    )
    _, peak, code = done.stdout.strip().splitlines()[-1].split()
    assert int(code) in (0, 1), done.stdout + done.stderr
    return int(peak) / 1024


def test_capture_and_cycle_stay_within_a_few_times_their_rows(pg_db: str, tmp_path: Path) -> None:
    _load(pg_db, "docs", ROWS, DIM)
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[[collections]]\nname = "docs"\n'
        f'dsn = "{pg_db}"\ntable = "docs"\nsample_size = {SAMPLE}\nindex_health_queries = 0\n'
        "null_replicates = 100\ncells = 8\n"
    )
    cli = ["-m", "driftwatch", "--config", str(config), "--log-level", "WARNING"]
    subprocess.run([sys.executable, *cli, "db", "upgrade"], check=True, capture_output=True)
    # The interpreter with everything a capture and a cycle import, and nothing read yet.
    imports = "import driftwatch.cli.main, driftwatch.baseline, driftwatch.cycle, driftwatch.monitor"
    base = _peak_mb("-c", imports)
    capture = _peak_mb(*cli, "baseline", "capture")
    check = _peak_mb(*cli, "check", "--no-alerts")
    # Bounds: the interpreter, plus 6x the bytes of the rows held at once. Measured on this
    # table: capture 5.1x (8x before float64 copies and double copies were removed), the
    # cycle 4.2x its sample and fitted state (8x before); a float64 copy of the capture's
    # rows alone adds 2x.
    rows_read = ROWS * DIM * 4 / MB  # the capture holds them all at once (the table is read whole)
    assert capture - base < 6 * rows_read, (base, capture, rows_read)
    cycle_rows = 2 * SAMPLE * DIM * 4 / MB  # its sample, and the fitted state (<= the reference rows)
    assert check - base < 6 * cycle_rows, (base, check, cycle_rows)


def test_reorder_splits_a_sample_in_place_without_a_copy() -> None:
    """The capture's reference / held-out split moves rows in place: same rows as fancy
    indexing would give, ids moved along, unusable rows (NaN, zero) after the usable ones."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5000, 16)).astype(np.float32)
    vectors[10] = 0.0
    vectors[20, 3] = np.nan
    ids = [str(i) for i in range(len(vectors))]
    sample = VectorSample(vectors.copy(), list(ids), {}, "full", 16, 5000, 0, 0, {}, 0, 0, 0)
    buffer = sample.vectors.ctypes.data
    usable = _usable_rows(sample.vectors)
    assert len(usable) == 4998 and 10 not in usable and 20 not in usable
    order = rng.permutation(usable)
    _reorder(sample, order)
    assert sample.vectors.ctypes.data == buffer  # the same memory, rows moved
    assert np.array_equal(sample.vectors[: len(order)], vectors[order])
    assert sample.ids[: len(order)] == [ids[i] for i in order]
    assert sorted(sample.ids[len(order) :]) == ["10", "20"]
