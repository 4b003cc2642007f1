"""Config: the example validates, bad configs fail naming the key, env overrides apply."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftwatch.cli import cli
from driftwatch.config import load_config, parse_duration, split_qualified_name
from driftwatch.errors import ConfigError

MINIMAL = """
[[collections]]
name = "docs"
dsn = "postgresql://driftwatch@db:5432/app"
table = "public.documents"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "driftwatch.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    return caught.value.problems


def test_init_output_validates(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "driftwatch.toml"
    result = CliRunner().invoke(cli, ["--config", str(target), "init"])
    assert result.exit_code == 0, result.output
    settings = load_config(target, env={})
    [docs] = settings.collections
    assert docs.name == "docs" and docs.metric == "cosine" and docs.sample_size == 20000
    assert docs.interval_seconds == 15 * 60
    assert docs.query_log is not None and docs.query_log.window == 3600
    assert docs.reference_suite is not None and docs.reference_suite.path == (target.parent / "suite.jsonl")
    assert settings.store.url == f"sqlite:///{(target.parent / 'driftwatch.db').resolve()}"
    assert [n.kind for n in settings.alerts.notifiers] == ["log"]
    assert settings.server.host == "127.0.0.1"


def test_defaults_without_collections(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, ""), env={})
    assert settings.collections == [] and settings.server.port == 9187
    assert settings.alerts.rules[0].detector == "any" and settings.alerts.rules[0].for_cycles == 2


BAD_CONFIGS = [
    ("sample_size = 10", "collections[0].sample_size: must be >= 100"),
    ('metric = "dot"', "collections[0].metric: must be one of 'cosine', 'l2' or 'inner_product'"),
    ('interval = "soon"', "collections[0].interval: must be a duration"),
    ('interval = "0s"', "collections[0].interval: must be a positive duration"),
    ('interval = "5m"\ncron = "*/5 * * * *"', "collections[0]: give either interval or cron, not both"),
    ('cron = "61 * * * *"', "collections[0].cron: is not a valid crontab expression"),
    ("sample_sise = 500", "collections[0].sample_sise: unknown key"),
    ('table = "a.b.c"', "collections[0].table: must be 'table' or 'schema.table'"),
    ('table = "\\"unbalanced.docs"', "collections[0].table: unbalanced double quote"),
    ('vector_column = ""', "collections[0].vector_column: must not be empty"),
    (f'id_column = "{"x" * 64}"', "collections[0].id_column: is longer than PostgreSQL's 63-byte"),
    ("statement_timeout = -1", "collections[0].statement_timeout: must be a positive duration"),
    (
        "[collections.reference_suite]\npath = 's.jsonl'\nk = 0",
        "collections[0].reference_suite.k: must be >= 1",
    ),
    ("[collections.query_log]\nwindow = '1h'", "collections[0].query_log.table: is required"),
    (
        "[collections.embedder]\nkind = 'openai'",
        "collections[0].embedder: embedder kind 'openai' needs a url",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_CONFIGS, ids=[e for _, e in BAD_CONFIGS])
def test_bad_collection_setting_names_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    text = MINIMAL
    if extra.startswith("table ="):
        text = text.replace('table = "public.documents"\n', "")
    problems = problems_of(write(tmp_path, text + extra + "\n"))
    assert any(p.startswith(expected) for p in problems), problems


BAD_SECTIONS = [
    ("[server]\nport = 70000", "server.port: must be <= 65535"),
    ("[server]\nport = 'http'", "server.port: must be an integer"),
    ("[store]\nurl = 'mysql://x/y'", "store.url: must be a sqlite:/// or postgresql+psycopg://"),
    ("log_level = 'loud'", "log_level: must be one of"),
    (
        "[[alerts.rules]]\ndetector = 'bogus'",
        "alerts.rules[0].detector: must be one of 'any', 'centroid_distance'",
    ),
    ("[[alerts.rules]]\nfor_cycles = 0", "alerts.rules[0].for_cycles: must be >= 1"),
    ("[[alerts.notifiers]]\nkind = 'webhook'", "alerts.notifiers[0]: notifier kind 'webhook' needs a url"),
    (
        "[[alerts.notifiers]]\nkind = 'slack'\nurl = 'ftp://x'",
        "alerts.notifiers[0]: url must start with http://",
    ),
    ("[[alerts.notifiers]]\nkind = 'pager'", "alerts.notifiers[0].kind: must be one of"),
    (
        "[[collections]]\nname = 'has space'\ndsn = 'x'\ntable = 't'",
        "collections[0].name: must be 1-63 characters",
    ),
    ("[[collections]]\nname = 'a'\ntable = 't'", "collections[0].dsn: is required"),
    ("collections = 'docs'", "collections: must be a list"),
    (MINIMAL + MINIMAL, "collections: collection names must be unique; repeated: docs"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SECTIONS, ids=[e for _, e in BAD_SECTIONS])
def test_bad_section_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_of(write(tmp_path, text + "\n"))
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, MINIMAL + "sample_size = 1\nmetric = 'x'\n[server]\nport = 0\n"))
    assert len(problems) == 3
    message = str(ConfigError(problems, source="f.toml"))
    for key in ("collections[0].sample_size", "collections[0].metric", "server.port"):
        assert key in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, "[server\nport = 1"))[0].startswith("not valid TOML")
    missing = problems_of(tmp_path / "nope.toml")
    assert "not found" in missing[0] and "driftwatch init" in missing[0]


def test_password_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = MINIMAL.replace("driftwatch@db", "driftwatch:hunter2-secret@db")
    text += "[collections.query_log]\ntable = 'ql'\ndsn = 'host=db user=x password=other-secret'\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    message = str(caught.value)
    assert "collections[0].dsn: holds a password" in message
    assert "collections[0].query_log.dsn: holds a password" in message
    assert "hunter2-secret" not in message and "other-secret" not in message


def test_env_overrides_by_index_and_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    env = {
        "DRIFTWATCH_SERVER__PORT": "9300",
        "DRIFTWATCH_COLLECTIONS__DOCS__SAMPLE_SIZE": "500",
        "DRIFTWATCH_COLLECTIONS__0__METRIC": "l2",
        # a password may come from the environment
        "DRIFTWATCH_COLLECTIONS__0__DSN": "postgresql://driftwatch:from-env@db:5432/app",
        "DRIFTWATCH_STORE__URL": "postgresql://dw@store/dw",
        "DRIFTWATCH_ALERTS__NOTIFIERS": '[{"kind": "alertmanager", "url": "http://am:9093"}]',
    }
    settings = load_config(path, env=env)
    docs = settings.collections[0]
    assert settings.server.port == 9300
    assert docs.sample_size == 500 and docs.metric == "l2"
    assert docs.dsn.endswith("from-env@db:5432/app")
    assert settings.store.url == "postgresql+psycopg://dw@store/dw"
    assert settings.alerts.notifiers[0].kind == "alertmanager"


def test_bad_env_override_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    problems = problems_of(path, env={"DRIFTWATCH_SERVER__PORT": "http"})
    assert problems == ["server.port: must be an integer (set by env DRIFTWATCH_SERVER__PORT)"]
    problems = problems_of(path, env={"DRIFTWATCH_COLLECTIONS__7__DSN": "x"})
    assert problems == ["DRIFTWATCH_COLLECTIONS__7__DSN: names no setting in the config file"]
    problems = problems_of(path, env={"DRIFTWATCH_NOPE__X": "1"})
    assert problems == ["nope: unknown key (set by env DRIFTWATCH_NOPE__X)"]


def test_kubernetes_service_variables_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What a pod beside a Service named `driftwatch` gets: none of it is an override."""
    path = write(tmp_path, MINIMAL)
    env = {
        "DRIFTWATCH_PORT": "tcp://10.0.0.7:9187",
        "DRIFTWATCH_PORT_9187_TCP": "tcp://10.0.0.7:9187",
        "DRIFTWATCH_PORT_9187_TCP_ADDR": "10.0.0.7",
        "DRIFTWATCH_PORT_9187_TCP_PORT": "9187",
        "DRIFTWATCH_PORT_9187_TCP_PROTO": "tcp",
        "DRIFTWATCH_SERVICE_HOST": "10.0.0.7",
        "DRIFTWATCH_SERVICE_PORT": "9187",
        "DRIFTWATCH_SERVICE_PORT_METRICS": "9187",
        "DRIFTWATCH_LOG_LEVEL": "debug",  # a top-level key: still an override
    }
    with caplog.at_level("DEBUG", logger="driftwatch.env_overrides"):
        settings = load_config(path, env=env)
    assert settings.server.port == 9187 and settings.log_level == "DEBUG"
    assert "ignoring DRIFTWATCH_PORT:" in caplog.text and "ignoring DRIFTWATCH_SERVICE_HOST:" in caplog.text


def test_two_overrides_of_one_key_name_both(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    env = {
        "DRIFTWATCH_COLLECTIONS__0__SAMPLE_SIZE": "500",
        "DRIFTWATCH_COLLECTIONS__DOCS__SAMPLE_SIZE": "600",
    }
    problems = problems_of(path, env=env)
    assert problems == [
        "collections[0].sample_size: set by both DRIFTWATCH_COLLECTIONS__0__SAMPLE_SIZE and "
        "DRIFTWATCH_COLLECTIONS__DOCS__SAMPLE_SIZE; keep one"
    ]
    whole_and_part = {
        "DRIFTWATCH_ALERTS__NOTIFIERS": '[{"kind": "log"}]',
        "DRIFTWATCH_ALERTS__NOTIFIERS__0__KIND": "log",
    }
    (problem,) = problems_of(path, env=whole_and_part)
    assert "DRIFTWATCH_ALERTS__NOTIFIERS and DRIFTWATCH_ALERTS__NOTIFIERS__0__KIND" in problem


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("DRIFTWATCH_CONFIG", str(path))
    monkeypatch.chdir(tmp_path.parent)
    assert load_config().collections[0].name == "docs"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), (90, 90), ("1.5h", 5400)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "15", "15 minutes", "1h-5m", "m15", True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("documents", (None, "documents")),
        ("public.documents", ("public", "documents")),
        ('"My Schema"."Docs.v2"', ("My Schema", "Docs.v2")),
        ('"we""ird".t', ('we"ird', "t")),  # a doubled quote is a literal quote, as in SQL
        ("docs; DROP TABLE x; --", (None, "docs; DROP TABLE x; --")),  # just a name; quoted later
    ],
)
def test_qualified_names(name: str, parts: tuple[str | None, str]) -> None:
    assert split_qualified_name(name) == parts


@pytest.mark.parametrize("name", ['"; DROP TABLE x; --', "a.b.c", "public.", ".t", "x\x00y"])
def test_bad_qualified_names(name: str) -> None:
    with pytest.raises(ValueError):
        split_qualified_name(name)
