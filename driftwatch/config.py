"""The one TOML config file, validated with pydantic and overridable from the environment.

Env overrides: `DRIFTWATCH_<KEY>__<KEY>...`, e.g. `DRIFTWATCH_SERVER__PORT=9200`,
`DRIFTWATCH_COLLECTIONS__0__DSN=...` or, by name, `DRIFTWATCH_COLLECTIONS__DOCS__DSN=...`;
top-level keys (`DRIFTWATCH_LOG_LEVEL`) need no `__`. A collection with several `sources` is
overridden source by source (`DRIFTWATCH_COLLECTIONS__DOCS__SOURCES__SHARD1__DSN=...`); its
own `DSN` override is refused, since it has none. Any other `DRIFTWATCH_*` variable is
ignored: Kubernetes injects `DRIFTWATCH_PORT=tcp://...`, `DRIFTWATCH_SERVICE_HOST` and the
like into every pod beside a Service named `driftwatch`, and those must not stop the daemon.
Passwords may come only from the environment or a libpq passfile, never the file itself.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from driftwatch.config_errors import describe, passwords_in_file
from driftwatch.config_values import (
    Duration,
    DurationOrZero,
    Identifier,
    Url,
    parse_duration,
    repeated,
    split_qualified_name,
)
from driftwatch.env_overrides import CONFIG_ENV, apply_env
from driftwatch.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("driftwatch.toml")

Metric = Literal["cosine", "l2", "inner_product"]
Severity = Literal["info", "warning", "critical"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    url: Url = "sqlite:///driftwatch.db"

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// SQLAlchemy URL")
        if url.startswith(("postgres://", "postgresql://")):
            # SQLAlchemy would pick psycopg2, which driftwatch does not install.
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9187, ge=1, le=65535)
    external_url: str | None = None  # how people reach this daemon; alerts link to <it>/alerts

    @field_validator("external_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/") if url else url

    @property
    def base_url(self) -> str:
        if self.external_url:
            return self.external_url
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


class QueryLogSettings(_Section):
    table: str
    dsn: Url | None = None
    window: Duration = 3600.0
    max_rows: int = Field(100_000, ge=100, le=10_000_000)  # newest rows read per cycle
    # Fine-tuning candidates from clicks: a query is mined once its clicks have had
    # `click_delay` to arrive; negatives this similar to the positive are likely relevant too.
    click_delay: DurationOrZero = 300.0
    negative_similarity_bound: float = Field(0.95, gt=0, le=1)
    # Off by default: a positive's nearest neighbours are where unlabelled relevant documents
    # are, so hard negatives carry about twice the false negatives of skip-above (BENCHMARKS.md).
    hard_negatives: int = Field(0, ge=0, le=20)
    # A follow-up is the next query of the same session_id within this long; after a query with
    # no click or a thumbs down it is a reformulation.
    follow_up_window: Duration = 120.0
    # Rows whose ts lags their insertion by up to this long are still counted (exactly once).
    late_arrival: DurationOrZero = 900.0
    # The feedback rates' baseline: long enough to span the daily cycle, whose hour-of-day swing
    # is the day-to-day noise a cycle's rate shows (capped by what the log holds).
    baseline_window: Duration = 7 * 86400.0

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        split_qualified_name(table)
        return table

    @model_validator(mode="after")
    def _windows(self) -> QueryLogSettings:
        if self.baseline_window < self.window:
            raise ValueError(
                f"baseline_window ({self.baseline_window:g}s) must be at least window ({self.window:g}s)"
            )
        return self

    @property
    def settle(self) -> float:
        """How old a row must be before a cycle reads it: its clicks (click_delay) and its
        follow-up (follow_up_window) have had time to arrive."""
        return max(self.click_delay, self.follow_up_window)


class ReferenceSuiteSettings(_Section):
    path: Path
    k: int = Field(10, ge=1, le=1000)


class EmbedderSettings(_Section):
    """How `text` in the reference suite is embedded with the live model each cycle."""

    kind: Literal["http", "openai", "sentence_transformers"]
    url: Url | None = None
    model: str | None = None
    api_key_env: str | None = None  # name of the env var that holds the key
    timeout: Duration = 30.0  # longest wait for the next bytes of an answer
    connect_timeout: Duration = 5.0
    batch_size: int = Field(64, ge=1, le=4096)

    @model_validator(mode="after")
    def _complete(self) -> EmbedderSettings:
        if self.kind in ("http", "openai") and not self.url:
            raise ValueError(f"embedder kind {self.kind!r} needs a url")
        if self.kind in ("openai", "sentence_transformers") and not self.model:
            raise ValueError(f"embedder kind {self.kind!r} needs a model")
        return self


MAX_PROBES = 64  # the default canary: the suite's first 64 texts


class CanarySettings(_Section):
    """Probe texts embedded through `[collections.embedder]` at baseline capture and every
    cycle: inline `texts`, a `path` (one a line), or neither: the suite's texts, up to 64.
    `min_cosine` is the round-off bound (detect/canary.py says why 0.9999)."""

    texts: list[str] | None = None
    path: Path | None = None
    min_cosine: float = Field(0.9999, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_source(self) -> CanarySettings:
        if self.texts is not None and self.path is not None:
            raise ValueError("give either texts or path, not both")
        if self.texts is not None:
            if not self.texts:
                raise ValueError("texts must not be empty (leave it out to use the suite's texts)")
            blank = [i for i, t in enumerate(self.texts) if not t.strip()]
            if blank:
                raise ValueError(f"texts[{blank[0]}] is blank")
        return self


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SourceSettings(_Section):
    """One table of a collection spread over several servers (shards, Citus placements):
    `dsn` + `table` (optionally `schema`, then `table` is unqualified). `name` labels it in
    messages, notes and env overrides; it defaults to its position in the list."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    dsn: Url
    table: str
    db_schema: Identifier | None = Field(None, alias="schema")

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        split_qualified_name(table)
        return table

    @field_validator("dsn")
    @classmethod
    def _dsn_not_empty(cls, dsn: str) -> str:
        if not dsn.strip():
            raise ValueError("must not be empty")
        return dsn

    @model_validator(mode="after")
    def _schema_once(self) -> SourceSettings:
        if self.db_schema is not None and split_qualified_name(self.table)[0] is not None:
            raise ValueError("give the schema once: in schema or in table, not both")
        return self

    @property
    def qualified_table(self) -> str:
        """The table as `CollectionSettings.table` spells it (`schema.table` quoted when given apart)."""
        if self.db_schema is None:
            return self.table
        return f"{_quoted(self.db_schema)}.{_quoted(self.table)}"


def _name_sources(sources: Any) -> Any:
    """Sources without a name are named by their position (`0`, `1`, ...)."""
    if not isinstance(sources, list):
        return sources
    named = []
    for i, source in enumerate(sources):
        bare = isinstance(source, dict) and "name" not in source
        named.append({"name": str(i), **source} if bare else source)
    return named


class CollectionSettings(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    # One table (`dsn` + `table`), or the same table spread over several servers (`sources`).
    dsn: Url | None = None
    table: str | None = None
    sources: Annotated[list[SourceSettings], BeforeValidator(_name_sources)] = Field(default_factory=list)
    # With several sources: a cycle goes on without a source that does not answer while the
    # others held at least this share of the rows at baseline capture (docs/design.md).
    min_source_share: float = Field(0.5, gt=0, le=1)
    id_column: Identifier = "id"
    vector_column: Identifier = "embedding"
    metric: Metric = "cosine"
    model_version_column: Identifier | None = None
    created_at_column: Identifier | None = None
    # A column that grows with insertion (a timestamp, an identity or sequence id): the rows
    # past its value at baseline capture are the arrivals each cycle tests on their own.
    # Defaults to created_at_column.
    arrival_column: Identifier | None = None
    text_column: Identifier | None = None
    sample_size: int = Field(20000, ge=100, le=10_000_000)
    interval: Duration | None = None
    cron: str | None = None
    statement_timeout: Duration = 60.0
    false_alarm_rate: float = Field(0.001, gt=0, lt=0.5)  # per detector per cycle
    thresholds: dict[str, float] = Field(default_factory=dict)  # detector name -> fixed threshold
    # A table under twice sample_size is read whole: no sampling noise to calibrate against, so
    # centroid_distance and spatial_kl fire on an effect size (defaults in docs/configuration.md).
    whole_table_effects: dict[str, float] = Field(default_factory=dict)
    cells: int = Field(32, ge=2, le=1024)
    bins: int = Field(10, ge=2, le=100)
    null_replicates: int = Field(1000, ge=50, le=10_000)
    sentinels: int = Field(64, ge=0, le=10_000)
    index_health_queries: int = Field(4, ge=0, le=1000)
    index_health_interval: Duration = 6 * 3600.0
    query_log: QueryLogSettings | None = None
    reference_suite: ReferenceSuiteSettings | None = None
    embedder: EmbedderSettings | None = None
    canary: CanarySettings | None = None

    @field_validator("thresholds", "whole_table_effects")
    @classmethod
    def _known_detectors(cls, thresholds: dict[str, float]) -> dict[str, float]:
        for name in thresholds:
            try:
                _check_detector(name)
            except ValueError as exc:
                raise ValueError(f"unknown detector {name!r}: {exc}") from None
        return thresholds

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str | None) -> str | None:
        if table is not None:
            split_qualified_name(table)
        return table

    @field_validator("dsn")
    @classmethod
    def _dsn_not_empty(cls, dsn: str | None) -> str | None:
        if dsn is not None and not dsn.strip():
            raise ValueError("must not be empty")
        return dsn

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[SourceSettings]) -> list[SourceSettings]:
        if dupes := repeated(s.name for s in sources):
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return sources

    @model_validator(mode="after")
    def _where_rows_are(self) -> CollectionSettings:
        """Either one table (`dsn` + `table`) or `sources`, never both; the query log of a
        collection with several sources lives in one database, which it must name."""
        if self.sources:
            both = [key for key in ("dsn", "table") if getattr(self, key) is not None]
            if both:
                raise ValueError(f"{both[0]}: give either dsn + table or sources, not both")
            if self.query_log is not None and self.query_log.dsn is None:
                raise ValueError(
                    "query_log.dsn: is required with several sources "
                    "(the query log is read from one database)"
                )
            return self
        missing = [key for key in ("dsn", "table") if getattr(self, key) is None]
        if missing:
            also = " (with table)" if len(missing) > 1 else ""
            raise ValueError(f"{missing[0]}: is required{also}, or list the tables under sources")
        return self

    @property
    def several(self) -> bool:
        """Whether the collection's rows are spread over several sources."""
        return bool(self.sources)

    def per_source(self) -> list[tuple[SourceSettings, CollectionSettings]]:
        """Each source with the collection as a one-table collection on it (what the one-source
        readers take); a one-table collection is its own only source."""
        if not self.sources:
            assert self.dsn is not None and self.table is not None
            # Not validated again: the table's own name labels it, whatever characters it holds.
            only = SourceSettings.model_construct(
                name=self.table, dsn=self.dsn, table=self.table, db_schema=None
            )
            return [(only, self)]
        return [
            (s, self.model_copy(update={"dsn": s.dsn, "table": s.qualified_table, "sources": []}))
            for s in self.sources
        ]

    @property
    def tables(self) -> str:
        """The table(s) for messages: `docs`, or `docs_0, docs_1 (3 sources)`."""
        if not self.sources:
            return str(self.table)
        names = sorted({s.qualified_table for s in self.sources})
        return f"{', '.join(names)} ({len(self.sources)} sources)"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"is not a valid crontab expression: {exc}") from None
        return cron

    @model_validator(mode="after")
    def _one_schedule(self) -> CollectionSettings:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either interval or cron, not both")
        if self.canary is not None and self.embedder is None:
            raise ValueError("canary: needs [collections.embedder]: the probes are embedded through it")
        return self

    @property
    def arrivals_by(self) -> str | None:
        """The column that orders arrivals, if the collection has one."""
        return self.arrival_column or self.created_at_column

    @property
    def schema_and_table(self) -> tuple[str | None, str]:
        return split_qualified_name(self.table)

    def urls(self) -> list[str]:
        """The collection's DSNs and embedder URL: what its errors may quote."""
        urls = [s.dsn for s, _ in self.per_source()]
        if self.query_log and self.query_log.dsn:
            urls.append(self.query_log.dsn)
        if self.embedder and self.embedder.url:
            urls.append(self.embedder.url)
        return urls

    @property
    def interval_seconds(self) -> float | None:
        """The schedule's period; None for cron schedules. Defaults to 15 minutes."""
        if self.cron is not None:
            return None
        return self.interval if self.interval is not None else 900.0


def _check_detector(name: str, *also: str) -> None:
    """Detector names come from the registry (imported late: config loads before the math)."""
    from driftwatch.detect.registry import REGISTRY

    if name not in REGISTRY and name not in also:
        choices = ", ".join(repr(n) for n in (*also, *REGISTRY.names()))
        raise ValueError(f"must be one of {choices}")


class AlertRule(_Section):
    """Pages on a detector's verdicts; `any` means every detector but `model_version`, whose
    pushes raise the built-in critical alerts at once."""

    detector: str = "any"  # "any" or a registered detector's name
    severity: Severity = "warning"
    for_cycles: int = Field(1, ge=1, le=1000)
    collection: str | None = None
    threshold: float | None = None
    min_effect: float | None = Field(None, ge=0)

    @field_validator("detector")
    @classmethod
    def _rule_detector(cls, detector: str) -> str:
        _check_detector(detector, "any")
        if detector == "model_version":
            raise ValueError(
                "model_version needs no rule: a new version or a changed sentinel raises the built-in "
                "critical EmbeddingModelVersionPushed / EmbeddingFunctionChanged alerts at once"
            )
        if detector == "embedding_canary":
            raise ValueError(
                "embedding_canary needs no rule: moved probes raise the built-in critical "
                "EmbeddingFunctionChanged alert at once"
            )
        return detector


class NotifierSettings(_Section):
    kind: Literal["log", "webhook", "slack", "alertmanager"]
    url: Url | None = None
    timeout: Duration = 10.0  # longest wait for the next bytes of an answer
    connect_timeout: Duration = 5.0
    send_resolved: bool = True

    @model_validator(mode="after")
    def _needs_url(self) -> NotifierSettings:
        if self.kind != "log":
            if not self.url:
                raise ValueError(f"notifier kind {self.kind!r} needs a url")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
        return self


def _default_rules() -> list[AlertRule]:
    return [AlertRule(detector="any", severity="warning", for_cycles=2)]


def _default_notifiers() -> list[NotifierSettings]:
    return [NotifierSettings(kind="log")]


class AlertSettings(_Section):
    repeat_interval: Duration = 4 * 3600.0
    # A failed delivery is retried after retry_backoff, doubling (with jitter) up to
    # retry_backoff_max, at most max_attempts times; then it is marked failed.
    max_attempts: int = Field(8, ge=1, le=100)
    retry_backoff: Duration = 30.0
    retry_backoff_max: Duration = 1800.0
    rules: list[AlertRule] = Field(default_factory=_default_rules)
    notifiers: list[NotifierSettings] = Field(default_factory=_default_notifiers)
    # Where alerts point for what to do: "https://wiki/driftwatch#{detector}" ({detector} is
    # replaced; without it "#<detector>" is appended). Unset: the text names the command
    # `driftwatch runbook DETECTOR`, which resolves wherever driftwatch is installed.
    runbook_url: str | None = None

    @field_validator("runbook_url")
    @classmethod
    def _runbook_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "{detector}" not in url and "#" in url:
            raise ValueError("has an anchor already: put {detector} where the detector's name goes")
        return url


class Settings(_Section):
    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    collections: list[CollectionSettings] = Field(default_factory=list)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, level: Any) -> Any:
        return level.upper() if isinstance(level, str) else level

    @field_validator("collections")
    @classmethod
    def _unique_names(cls, collections: list[CollectionSettings]) -> list[CollectionSettings]:
        if dupes := repeated(c.name for c in collections):
            raise ValueError(f"collection names must be unique; repeated: {', '.join(dupes)}")
        return collections

    @model_validator(mode="after")
    def _rules_name_known_collections(self) -> Settings:
        names = {c.name for c in self.collections}
        for i, rule in enumerate(self.alerts.rules):
            if rule.collection is not None and rule.collection not in names:
                known = ", ".join(sorted(names)) or "none configured"
                raise ValueError(
                    f"alerts.rules[{i}].collection: no collection named {rule.collection!r} (known: {known})"
                )
        return self

    @property
    def source(self) -> Path | None:
        return self._source

    def collection(self, name: str) -> CollectionSettings:
        for c in self.collections:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.collections) or "none configured"
        raise ConfigError([f"collections: no collection named {name!r} (known: {known})"])

    def all_dsns(self) -> list[str]:
        dsns = [self.store.url]
        for c in self.collections:
            dsns.extend(s.dsn for s, _ in c.per_source())
            if c.query_log and c.query_log.dsn:
                dsns.append(c.query_log.dsn)
        return dsns

    def all_urls(self) -> list[str]:
        """Every configured DSN and URL: where secrets can hide."""
        urls = self.all_dsns() + [n.url for n in self.alerts.notifiers if n.url]
        return urls + [c.embedder.url for c in self.collections if c.embedder and c.embedder.url]


# ---------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override from env, validate. Raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if not config_path.is_file():
        raise ConfigError([f"config file {config_path} not found (create one with `driftwatch init`)"])
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=str(config_path)) from None
    except UnicodeDecodeError:
        raise ConfigError(["not UTF-8 text"], source=str(config_path)) from None
    return settings_from_dict(raw, env=env, base_dir=config_path.parent, source=config_path)


def settings_from_dict(
    raw: dict[str, Any],
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    source: Path | None = None,
) -> Settings:
    env = os.environ if env is None else env
    problems = passwords_in_file(raw)
    merged, origins, env_problems = apply_env(raw, env)
    problems += env_problems
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems += [describe(err, origins) for err in exc.errors()]
    if problems:
        raise ConfigError(problems, source=str(source) if source else None)
    assert settings is not None
    if base_dir is not None:
        settings = _resolve_paths(settings, base_dir)
    settings._source = source
    return settings


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative file paths in the config mean: next to the config file."""
    store_url = settings.store.url
    prefix = "sqlite:///"
    if store_url.startswith(prefix) and store_url != "sqlite:///:memory:":
        db_path = store_url[len(prefix) :]
        if db_path and not Path(db_path).is_absolute():
            store_url = prefix + str((base_dir / db_path).resolve())
    collections = []
    for c in settings.collections:
        suite = c.reference_suite
        if suite is not None and not suite.path.is_absolute():
            suite = suite.model_copy(update={"path": (base_dir / suite.path).resolve()})
        canary = c.canary
        if canary is not None and canary.path is not None and not canary.path.is_absolute():
            canary = canary.model_copy(update={"path": (base_dir / canary.path).resolve()})
        collections.append(c.model_copy(update={"reference_suite": suite, "canary": canary}))
    return settings.model_copy(
        update={
            "store": settings.store.model_copy(update={"url": store_url}),
            "collections": collections,
        }
    )


__all__ = [
    "AlertRule",
    "AlertSettings",
    "CanarySettings",
    "CollectionSettings",
    "EmbedderSettings",
    "NotifierSettings",
    "QueryLogSettings",
    "ReferenceSuiteSettings",
    "ServerSettings",
    "Settings",
    "SourceSettings",
    "StoreSettings",
    "load_config",
    "parse_duration",
    "settings_from_dict",
    "split_qualified_name",
]
