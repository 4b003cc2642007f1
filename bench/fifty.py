"""Fifty collections, three daemon replicas, one PostgreSQL store.

    .venv/bin/python bench/fifty.py [--collections 50] [--replicas 3] [--interval 10] [--seconds 120]

Each collection is a small table (300 rows of 32-d) in one monitored database of the
embedded server; driftwatch's own store is another database on the same server. The
replicas are real `driftwatch run` processes on one config. While they run, their RSS and
CPU time are read from /proc every second, and the connections each database holds from
pg_stat_activity. Afterwards the store's cycles say whether every collection ran on
schedule, whether any ran twice at once, and how the work spread over the replicas.
Writes its section into BENCHMARKS.md between the fifty markers and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, machine, markdown_table, write_section

from driftwatch.daemon import once_per
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.synthetic import Topics

MARK_BEGIN, MARK_END = "<!-- fifty:begin -->", "<!-- fifty:end -->"
DRIFTWATCH = Path(sys.executable).with_name("driftwatch")
TICK = os.sysconf("SC_CLK_TCK")
BEFORE = (
    "Before issue 20's fixes (commit 3c3711f, 90 s): 782 cycles, every collection 13-18 times where "
    "its schedule allowed 6.6, 515 of them a period another replica had already run: every replica "
    "ran every collection. With a half-period check only (commit d09010f, 120 s): 661 cycles, "
    "median gap 6.9 s; with the period-less-three-jitters check but unaligned schedules (commit "
    "4095793): exactly on schedule, but the replica started first ran 78% of the cycles."
)


def make_tables(dsn: str, count: int, rows: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    topics = Topics.make(rng, 8, dim)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(count):
            vectors, _ = topics.sample(rng, rows)
            conn.execute(f"DROP TABLE IF EXISTS c{i}")
            conn.execute(f"CREATE TABLE c{i} (id bigint PRIMARY KEY, embedding vector({dim}))")
            with conn.cursor().copy(f"COPY c{i} (id, embedding) FROM STDIN") as copy:
                for j, v in enumerate(vectors):
                    copy.write_row((j, "[" + ",".join(f"{x:.6f}" for x in v) + "]"))
            conn.execute(f"ANALYZE c{i}")


def write_config(path: Path, vectors_dsn: str, store_url: str, count: int, interval: int) -> None:
    parts = [f'log_level = "WARNING"\n\n[store]\nurl = "{store_url}"\n']
    for i in range(count):
        parts.append(
            f'[[collections]]\nname = "c{i}"\ndsn = "{vectors_dsn}"\ntable = "c{i}"\nsample_size = 100\n'
            f'null_replicates = 100\ncells = 4\ninterval = "{interval}s"\nindex_health_queries = 0\n'
        )
    path.write_text("\n".join(parts))


@dataclass
class Watch:
    """What the replicas used while they ran: RSS and CPU per process, connections per database."""

    rss: dict[int, list[float]] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # seconds, at the last reading
    connections: dict[str, list[int]] = field(default_factory=dict)

    def read(self, pids: list[int], dsn: str) -> None:
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            self.rss.setdefault(pid, []).append(rss / 1024)
            self.cpu[pid] = (int(stat[11]) + int(stat[12])) / TICK
        with psycopg.connect(dsn) as conn:
            counts = conn.execute(
                "SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid() AND datname IS NOT NULL GROUP BY 1"
            ).fetchall()
        for database, count in counts:
            self.connections.setdefault(database or "-", []).append(count)


def cycles(store_dsn: str) -> list[tuple[str, datetime, datetime, str, str]]:
    with psycopg.connect(store_dsn) as conn:
        return conn.execute(
            "SELECT collection, started_at, finished_at, runner, status FROM cycles "
            "ORDER BY collection, started_at"
        ).fetchall()


def judge(rows: list, names: list[str], interval: float, window: tuple[datetime, datetime]) -> dict:  # type: ignore[type-arg]
    """Per collection: runs, overlaps with another run of itself, runs closer than half an
    interval to the previous one (a period run twice), the longest gap between starts."""
    by_name: dict[str, list] = {n: [] for n in names}  # type: ignore[type-arg]
    for row in rows:
        by_name.setdefault(row[0], []).append(row)
    overlaps = doubles = early = 0
    gaps, runs, failed = [], [], 0
    runners: dict[str, int] = {}
    for runs_of in by_name.values():
        runs.append(len(runs_of))
        for previous, current in itertools.pairwise(runs_of):
            overlaps += current[1] < previous[2]
            doubles += (current[1] - previous[1]).total_seconds() < 0.5 * interval
            early += (current[1] - previous[1]).total_seconds() < once_per(interval) - 0.5  # clock slack
            gaps.append((current[1] - previous[1]).total_seconds())
        for row in runs_of:
            runners[row[3]] = runners.get(row[3], 0) + 1
            failed += row[4] == "failed"
    first = min((row[1] for row in rows), default=window[1])  # the replicas take a while to start
    seconds = (window[1] - first).total_seconds()
    return {
        "runs": runs, "overlaps": overlaps, "doubles": doubles, "gaps": gaps, "runners": runners,
        "failed": failed, "early": early, "expected": seconds / interval, "never": sum(r == 0 for r in runs),
    }  # fmt: skip


def run(args: argparse.Namespace, server: EmbeddedPostgres, workdir: Path) -> tuple[Watch, dict, float]:  # type: ignore[type-arg]
    vectors_dsn = server.create_database("fifty_vectors")
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS fifty_store WITH (FORCE)")
    store_dsn = server.create_database("fifty_store")
    store_url = "postgresql+psycopg://" + store_dsn.split("://", 1)[1]
    make_tables(vectors_dsn, args.collections, 300, 32)
    config = workdir / "driftwatch.toml"
    write_config(config, vectors_dsn, store_url, args.collections, args.interval)
    base = [str(DRIFTWATCH), "--config", str(config)]
    subprocess.run([*base, "db", "upgrade"], check=True, capture_output=True)
    print(f"capturing {args.collections} baselines ...", flush=True)
    subprocess.run([*base, "baseline", "capture"], check=True, capture_output=True)
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM cycles")
    replicas = []
    for r in range(args.replicas):
        env = {**os.environ, "DRIFTWATCH_SERVER__PORT": str(19300 + r)}
        log = (workdir / f"replica{r}.log").open("w")
        replicas.append(subprocess.Popen([*base, "run"], env=env, stdout=log, stderr=subprocess.STDOUT))
    started = datetime.now().astimezone()
    print(f"{args.replicas} replicas running for {args.seconds}s ...", flush=True)
    watch = Watch()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        watch.read([p.pid for p in replicas], server.dsn())
        time.sleep(1.0)
    for process in replicas:
        process.send_signal(signal.SIGTERM)
    for process in replicas:
        process.wait(30)
    finished = datetime.now().astimezone()
    rows = cycles(store_dsn)
    names = [f"c{i}" for i in range(args.collections)]
    verdict = judge(rows, names, args.interval, (started, finished))
    cpu_per_cycle = sum(watch.cpu.values()) / max(len(rows), 1)
    return watch, verdict, cpu_per_cycle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--collections", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--interval", type=int, default=10, help="seconds between a collection's cycles")
    parser.add_argument("--seconds", type=int, default=120)
    args = parser.parse_args()
    server = EmbeddedPostgres(data_dir() / "fifty-pg")  # its own server: stopping it stops no other bench
    server.start()
    workdir = Path(data_dir() / "fifty")
    workdir.mkdir(exist_ok=True)
    try:
        watch, verdict, cpu_per_cycle = run(args, server, workdir)
    finally:
        server.stop()
    per_replica = [
        [
            f"replica {i + 1}",
            f"{max(rss):.0f}",
            f"{statistics.median(rss):.0f}",
            f"{watch.cpu.get(pid, 0):.1f}",
        ]
        for i, (pid, rss) in enumerate(watch.rss.items())
    ]
    runners = verdict["runners"]
    total = sum(runners.values())
    shares = ", ".join(f"{count / total:.0%}" for count in sorted(runners.values(), reverse=True))
    gaps = verdict["gaps"]
    connections = ", ".join(f"{db}: max {max(c)}, median {statistics.median(c):.0f}"
                            for db, c in sorted(watch.connections.items()))  # fmt: skip
    table = markdown_table(["process", "peak RSS MB", "median RSS MB", "CPU s"], per_replica)
    runs = verdict["runs"]
    summary = markdown_table(
        ["what", "measured"],
        [
            ["cycles run (all collections)", f"{total:,} ({verdict['failed']} failed)"],
            ["cycles per collection",
             f"min {min(runs)}, median {statistics.median(runs):.0f}, max {max(runs)} "
             f"(the schedule allows {verdict['expected']:.1f} from the first cycle on)"],
            ["collections that never ran", str(verdict["never"])],
            ["a collection running twice at once (overlapping cycles)", str(verdict["overlaps"])],
            ["a period run twice (starts < interval/2 apart)", str(verdict["doubles"])],
            ["starts closer than the schedule allows (< interval - 3 jitters)", str(verdict["early"])],
            ["gap between a collection's starts, s", f"median {statistics.median(gaps):.1f}, "
             f"p95 {np.quantile(gaps, 0.95):.1f}, max {max(gaps):.1f} (interval {args.interval})"],
            ["share of cycles per replica", shares],
            ["CPU per cycle (all replicas' CPU / cycles), s", f"{cpu_per_cycle:.3f}"],
            ["connections held (pg_stat_activity, per database)", connections],
        ],
    )  # fmt: skip
    command = "python bench/fifty.py " + " ".join(sys.argv[1:])
    text = (
        f"{MARK_BEGIN}\n### Fifty collections, three replicas, one PostgreSQL store\n\n"
        f"Command: `{command.strip()}` — machine: {machine()}. {args.collections} collections of 300 x 32-d "
        f"rows (sample 100), every {args.interval}s, {args.replicas} `driftwatch run` replicas on one "
        f"PostgreSQL store, for {args.seconds}s.\n\n{table}\n\n{summary}\n\n{BEFORE}\n{MARK_END}"
    )
    write_section(text, MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
