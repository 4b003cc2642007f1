"""Passwords never reach a file, a log line or an error message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from driftwatch.secrets import Scrubber, known_passwords, password_of, redact, scrub

from helpers import run_cli

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        (f"postgresql://dw:{SECRET}@db:5432/app", "postgresql://dw:***@db:5432/app"),
        (
            f"postgresql+psycopg://dw:{SECRET}@db/app?sslmode=require",
            "postgresql+psycopg://dw:***@db/app?sslmode=require",
        ),
        (f"postgresql://dw@db/app?password={SECRET}", "postgresql://dw@db/app?password=***"),
        (f"host=db user=dw password={SECRET} dbname=app", "host=db user=dw password=*** dbname=app"),
        ("postgresql://dw@db/app", "postgresql://dw@db/app"),
        ("sqlite:////var/lib/driftwatch.db", "sqlite:////var/lib/driftwatch.db"),
    ],
)
def test_redact(dsn: str, redacted: str) -> None:
    assert redact(dsn) == redacted
    assert SECRET not in redact(dsn)
    assert (password_of(dsn) == SECRET) == (dsn != redacted)


def test_url_quoted_password_is_known_in_both_forms() -> None:
    secrets = known_passwords(["postgresql://dw:p%40ss%2Fword@db/app"])
    assert "p@ss/word" in secrets and "p%40ss%2Fword" in secrets
    assert scrub("failed for p@ss/word", secrets) == "failed for ***"


def test_scrubber_cleans_messages_args_and_tracebacks() -> None:
    record_logger = logging.getLogger("test.scrub")
    captured: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(Scrubber({SECRET}))
    record_logger.addHandler(handler)
    try:
        record_logger.error("connecting with %s", f"postgresql://u:{SECRET}@h/d")
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            record_logger.exception("cycle failed")
    finally:
        record_logger.removeHandler(handler)
    text = "\n".join(captured)
    assert "connecting with postgresql://u:***@h/d" in text
    assert "RuntimeError: boom ***" in text
    assert SECRET not in text


def test_cli_never_prints_a_password_from_env(tmp_path: Path) -> None:
    """The password arrives by env (allowed), the store is unreachable, and the error and
    every log line (at DEBUG) still hide it."""
    config = tmp_path / "driftwatch.toml"
    config.write_text('[store]\nurl = "sqlite:///x.db"\n')
    env = {
        "DRIFTWATCH_STORE__URL": f"postgresql+psycopg://dw:{SECRET}@127.0.0.1:1/dw",
        "PGPASSWORD": "pgpassword-" + SECRET,
    }
    result = run_cli("--config", str(config), "--log-level", "DEBUG", "db", "upgrade", env=env)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "127.0.0.1" in output and "Error:" in output
    assert SECRET not in output


def test_cli_refuses_password_in_file_without_echoing_it(tmp_path: Path) -> None:
    config = tmp_path / "driftwatch.toml"
    config.write_text(f'[store]\nurl = "postgresql+psycopg://dw:{SECRET}@db/dw"\n')
    result = run_cli("--config", str(config), "db", "upgrade")
    assert result.returncode == 2
    assert "store.url: holds a password" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_whole_secrets_only_never_pieces_of_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """PGPASSWORD=postgres must not turn every "postgresql://" into "***ql://"."""
    monkeypatch.setenv("PGPASSWORD", "postgres")
    secrets = known_passwords(["postgresql://dw@db/app"])
    text = 'connect postgresql://dw@db/app as postgres://dw:postgres@db failed: password "postgres"'
    assert (
        scrub(text, secrets)
        == 'connect postgresql://dw@db/app as postgres://dw:***@db failed: password "***"'
    )


def test_every_configured_url_has_its_userinfo_and_query_values_scrubbed() -> None:
    url = "https://bot-account:Tok3n-Pa55@embed.example/v1?api-key=ApiKey-123456&v=1"
    secrets = known_passwords([url])
    assert {"Tok3n-Pa55", "ApiKey-123456", "bot-account"} <= secrets and "1" not in secrets
    assert redact(url) == "https://***@embed.example/v1?api-key=***&v=***"
    text = scrub(f"embedder {url} failed; retry v=1", secrets)
    assert "Tok3n-Pa55" not in text and "ApiKey-123456" not in text and "retry v=1" in text


def test_a_password_with_an_unescaped_at_is_refused_without_showing_either_half(tmp_path: Path) -> None:
    """libpq splits `u:p@ss@host` at the first `@` and prints `ss@host` as the host name."""
    config = tmp_path / "driftwatch.toml"
    config.write_text('[[collections]]\nname = "docs"\ndsn = "FROM-ENV"\ntable = "docs"\n')
    env = {"DRIFTWATCH_COLLECTIONS__DOCS__DSN": "postgresql://dw:First@Sec0nd-half@127.0.0.1:1/app"}
    result = run_cli("--config", str(config), "--log-level", "DEBUG", "check", "--json", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "collections[0].dsn: its user or password holds an unescaped '@'" in output
    assert "Sec0nd-half" not in output and "First" not in output


def test_an_embedder_token_reaches_no_output_and_not_the_store(tmp_path: Path, pg_db: str) -> None:
    """A failing embedder whose URL carries user:password and ?api-key=: `check --json` (at
    DEBUG), `status` and the store file never show either; PGPASSWORD=postgres mangles nothing."""
    from daemon_helpers import make_store, prepare, write_config, write_suite
    from helpers import free_port

    write_suite(tmp_path / "suite.jsonl", make_store(pg_db))
    url = f"http://bot:Pa55-Embed@127.0.0.1:{free_port()}/embed?api-key=ApiKey-Secret-77"
    port = free_port()
    prepare(write_config(tmp_path, pg_db, port=port))  # the baseline, before the embedder breaks
    config = write_config(tmp_path, pg_db, port=port, embedder_url=url)
    env = {"PGPASSWORD": "postgres"}
    check = run_cli("--config", str(config), "--log-level", "DEBUG", "check", "--json", env=env)
    status = run_cli("--config", str(config), "status", env=env)
    outputs = check.stdout + check.stderr + status.stdout + status.stderr
    assert check.returncode in (0, 1, 2) and "embedder http://127.0.0.1:" in outputs  # the failure is told
    store_bytes = (tmp_path / "store.db").read_bytes()
    for secret in ("Pa55-Embed", "ApiKey-Secret-77"):
        assert secret not in outputs and secret.encode() not in store_bytes
    assert "***ql://" not in outputs
