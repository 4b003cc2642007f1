"""Least privilege and secrets: driftwatch works with a role that may only SELECT, never
writes to the store it watches, never shows a password anywhere a person or a scraper can
read, and listens on loopback unless told otherwise."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from driftwatch.config import ServerSettings
from driftwatch.pg.session import connect

from daemon_helpers import Daemon, make_store, prepare, wait_for, write_config, write_suite
from helpers import free_port, run_cli

SECRET = "S3cr3t-pw_%&;"  # what a real password looks like: needs URL quoting, has shell characters


def with_role(dsn: str, role: str, password: str | None = None) -> str:
    """The same database, as `role` (the embedded server trusts local connections, so the
    password is carried along and ignored: exactly what must never leak)."""
    parts = urllib.parse.urlsplit(dsn)
    auth = role + (":" + urllib.parse.quote(password, safe="") if password else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@{parts.hostname or ''}"))


@pytest.fixture
def reader(pg_db: str, tmp_path: Path) -> Iterator[str]:
    """A role with nothing but CONNECT, USAGE and SELECT on the two tables it watches (and a
    reference suite for the store, in tmp_path)."""
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    database = urllib.parse.urlsplit(pg_db).path.lstrip("/")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE query_log (ts timestamptz NOT NULL, query_id text NOT NULL, query_text text, "
            "query_embedding vector, model_version text, result_ids text[] NOT NULL, "
            "result_scores real[] NOT NULL, clicked_ids text[] NOT NULL DEFAULT '{}')"
        )
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'dw_reader'").fetchone():
            conn.execute("CREATE ROLE dw_reader LOGIN")
        conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO dw_reader')
        conn.execute("GRANT USAGE ON SCHEMA public TO dw_reader")
        conn.execute("GRANT SELECT ON docs, query_log TO dw_reader")
    yield with_role(pg_db, "dw_reader", SECRET)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("REVOKE ALL ON docs, query_log FROM dw_reader")
        conn.execute("REVOKE ALL ON SCHEMA public FROM dw_reader")
        conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM dw_reader')


def writes(pg_db: str) -> int:
    with psycopg.connect(pg_db) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = 'docs'"
        ).fetchone()
    return int(row[0])


def test_select_only_role_is_enough_and_nothing_is_written(tmp_path: Path, pg_db: str, reader: str) -> None:
    config = write_config(tmp_path, "DSN-FROM-ENV", port=free_port())
    config.write_text(  # the query log too, read through the same SELECT-only role
        config.read_text().replace(
            "[collections.reference_suite]",
            '[collections.query_log]\ntable = "query_log"\n\n[collections.reference_suite]',
        )
    )
    env = {"DRIFTWATCH_COLLECTIONS__DOCS__DSN": reader}
    before = writes(pg_db)
    outputs = []
    for args in (("db", "upgrade"), ("baseline", "capture"), ("check", "--json"), ("status",), ("history",)):
        result = run_cli("--config", str(config), *args, env=env)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode in (0, 1), (args, result.stderr)
    assert json.loads(outputs[2])["collections"]["docs"]["status"] in ("ok", "drift")
    assert writes(pg_db) == before  # the watched table saw no insert, update or delete
    # Even a role that could write cannot through driftwatch's sessions: they are read-only.
    conn = connect(pg_db, 10)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO docs (id) VALUES (-1)")
    finally:
        conn.close()
    as_reader = psycopg.connect(reader, autocommit=True)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_reader.execute("DELETE FROM docs")
    finally:
        as_reader.close()
    quoted = urllib.parse.quote(SECRET, safe="")
    for text in outputs:
        assert SECRET not in text and quoted not in text


@pytest.mark.slow
def test_passwords_never_reach_logs_metrics_status_errors_or_the_store(
    tmp_path: Path, pg_db: str, reader: str
) -> None:
    config = write_config(tmp_path, "DSN-FROM-ENV", port=free_port())
    env = {"DRIFTWATCH_COLLECTIONS__DOCS__DSN": reader, "DRIFTWATCH_CONFIG": str(config)}
    outputs = [run_cli("db", "upgrade", env=env), run_cli("baseline", "capture", env=env)]
    # A second, unreachable collection whose DSN carries another password: its errors must not show it.
    wrong = f"postgresql://dw:{urllib.parse.quote('Wr0ng;pw', safe='')}@127.0.0.1:1/nowhere"
    config.write_text(
        config.read_text().replace(
            "[alerts]",
            '[[collections]]\nname = "elsewhere"\ndsn = "DSN-FROM-ENV"\ntable = "docs"\n'
            'interval = "1s"\n\n[alerts]',
        )
    )
    env["DRIFTWATCH_COLLECTIONS__ELSEWHERE__DSN"] = wrong
    commands = [
        ("baseline", "capture", "--collection", "elsewhere"),
        ("check", "--json"),
        ("status",),
        ("history",),
    ]
    outputs += [run_cli(*args, env=env) for args in commands]
    assert "cannot connect to postgresql://dw:***@127.0.0.1:1/nowhere" in outputs[2].stderr
    daemon = Daemon(config, tmp_path / "daemon.log", env=env)
    try:
        wait_for(
            lambda: daemon.value("driftwatch_cycle_failures_total", collection="elsewhere") >= 1,
            20,
            "a failure",
        )
        served = [daemon.get(path)[1] for path in ("/metrics", "/readyz", "/alerts", "/healthz")]
    finally:
        daemon.stop()
    texts = [r.stdout + r.stderr for r in outputs] + served + [daemon.output()]
    store_bytes = (tmp_path / "store.db").read_bytes()
    for secret in (SECRET, "Wr0ng;pw"):
        for form in (secret, urllib.parse.quote(secret, safe="")):
            assert all(form not in t for t in texts), form
            assert form.encode() not in store_bytes


def test_http_listens_on_loopback_by_default(tmp_path: Path, pg_db: str) -> None:
    assert ServerSettings().host == "127.0.0.1"
    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    port = free_port()
    config = write_config(tmp_path, pg_db, port=port)
    prepare(config)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        listening = [
            line.split()[1]
            for name in ("/proc/net/tcp", "/proc/net/tcp6")
            if Path(name).exists()
            for line in Path(name).read_text().splitlines()[1:]
            if line.split()[3] == "0A"  # LISTEN
        ]
        mine = [address for address in listening if int(address.split(":")[1], 16) == port]
    finally:
        daemon.stop()
    assert mine == ["0100007F:" + f"{port:04X}"]  # 127.0.0.1, and nothing else
