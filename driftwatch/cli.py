"""The `driftwatch` command: thin click commands over the library.

Library errors (DriftwatchError) become a one-paragraph message and exit status 2 here,
and nowhere else; `check` keeps 0 = no drift, 1 = drift, 2 = error.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import click

from driftwatch import __version__
from driftwatch.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, Settings, load_config
from driftwatch.errors import DriftwatchError
from driftwatch.logs import configure_logging
from driftwatch.secrets import known_passwords, redact, scrub

log = logging.getLogger("driftwatch")


class CliError(click.ClickException):
    """Any error the CLI reports; exit status 2, as `check` promises for errors."""

    exit_code = 2


class NotAvailableYet(CliError):
    def __init__(self, command: str, arrives_with: str) -> None:
        super().__init__(
            f"`driftwatch {command}` is not available yet in driftwatch {__version__}; "
            f"it arrives with {arrives_with}. Nothing was done."
        )


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DriftwatchError as exc:
            secrets = ctx.obj.secrets if isinstance(ctx.obj, _State) else set()
            raise CliError(scrub(str(exc), secrets)) from None


class _State:
    """What the commands share: the config path, and the settings once loaded."""

    def __init__(self, config_path: Path, log_level: str | None) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self._settings: Settings | None = None
        self.secrets: set[str] = known_passwords([])

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            settings = load_config(self.config_path)
            self.secrets = known_passwords(settings.all_dsns())
            configure_logging(self.log_level or settings.log_level, self.secrets)
            self._settings = settings
        return self._settings


def _example(text: str) -> str:
    """Append an example block that click prints verbatim in --help."""
    return f"\n\n\b\nExample:\n  {text}"


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="The driftwatch TOML config file.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Overrides log_level from the config.",
)
@click.version_option(__version__, prog_name="driftwatch")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, log_level: str | None) -> None:
    """Drift monitor for embedding retrieval on PostgreSQL + pgvector."""
    ctx.obj = _State(config_path, log_level.upper() if log_level else None)
    configure_logging(ctx.obj.log_level or "INFO", ctx.obj.secrets)


cli.help = (cli.help or "") + _example("driftwatch --config /etc/driftwatch.toml check --json")


# ---------------------------------------------------------------- init


@cli.command(help="Write a commented example config that validates as it is." + _example("driftwatch init"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: _State, force: bool) -> None:
    target = state.config_path
    if target.exists() and not force:
        raise CliError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = files("driftwatch").joinpath("example_config.toml").read_text(encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}; edit [[collections]], then run `driftwatch db upgrade`")


# ---------------------------------------------------------------- db


@cli.group(help="driftwatch's own store (not the vector store)." + _example("driftwatch db upgrade"))
def db() -> None:
    pass


@db.command(
    "upgrade",
    help="Create or migrate the store's tables; harmless when current." + _example("driftwatch db upgrade"),
)
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@click.pass_obj
def db_upgrade(state: _State, revision: str) -> None:
    from driftwatch import store

    settings = state.settings
    engine = store.create_store_engine(settings.store.url)
    try:
        before = store.current_revision(engine)
        store.upgrade(engine, revision)
        after = store.current_revision(engine)
    finally:
        engine.dispose()
    where = redact(settings.store.url)
    if before == after:
        click.echo(f"store {where} already at revision {after}")
    else:
        click.echo(f"store {where} upgraded from {before or 'empty'} to {after}")


@db.command(
    "downgrade",
    help="Migrate the store down to REVISION ('base' drops every table)."
    + _example("driftwatch db downgrade base"),
)
@click.argument("revision")
@click.pass_obj
def db_downgrade(state: _State, revision: str) -> None:
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    try:
        store.downgrade(engine, revision)
        after = store.current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"store {redact(state.settings.store.url)} now at revision {after or 'base (empty)'}")


@db.command("current", help="Show the store's schema revision." + _example("driftwatch db current"))
@click.pass_obj
def db_current(state: _State) -> None:
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    try:
        current = store.current_revision(engine)
    finally:
        engine.dispose()
    head = store.head_revision()
    note = "up to date" if current == head else f"behind head {head}: run `driftwatch db upgrade`"
    click.echo(f"{current or 'empty'} ({note})")


# ---------------------------------------------------------------- not yet available

_DETECTORS_RELEASE = "the detectors (baseline, sampling and checks)"
_FEEDBACK_RELEASE = "click-feedback mining and the Drift-Adapter"


def _engine(state: _State):  # type: ignore[no-untyped-def]
    """The store's engine, refusing a schema this release does not know."""
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    store.ensure_current(engine)
    return engine


def _collections(state: _State, name: str | None) -> list[str]:
    settings = state.settings
    if name:
        return [settings.collection(name).name]
    if not settings.collections:
        raise CliError(f"{state.config_path}: no [[collections]] configured")
    return [c.name for c in settings.collections]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


@cli.group(help="Reference baselines." + _example("driftwatch baseline capture --collection docs"))
def baseline() -> None:
    pass


@baseline.command(
    "capture",
    help="Sample each collection and freeze its baseline and calibrated thresholds."
    + _example("driftwatch baseline capture --collection docs"),
)
@click.option("--collection", help="Only this collection.")
@click.pass_obj
def baseline_capture(state: _State, collection: str | None) -> None:
    from driftwatch.baseline import capture

    engine = _engine(state)
    started = time.monotonic()
    try:
        for name in _collections(state, collection):
            settings = state.settings.collection(name)
            report = capture(settings, engine, progress=lambda m: click.echo(f"  {m}", err=True))
            fitted = report.fitted
            rows = [
                [detector.name, _num(detector.null.mean), _num(detector.null.sd), _num(
                    detector.null.threshold(settings.false_alarm_rate))]
                for detector in (fitted.centroid, fitted.spatial)
            ]  # fmt: skip
            if fitted.psi is not None:
                null = fitted.psi.null_at(fitted.psi.held_out_top1.size)
                rows.append(
                    [
                        "score_psi",
                        _num(null.mean),
                        _num(null.sd),
                        _num(null.threshold(settings.false_alarm_rate)),
                    ]
                )
            click.echo(
                f"{name}: baseline {report.baseline_id} captured ({report.method} sample, "
                f"{report.reference_rows} reference + {report.held_out_rows} held-out rows, "
                f"model {report.model_version or '-'}, {report.seconds:.1f}s)"
            )
            click.echo(_table(["detector", "null mean", "null sd", "threshold"], rows))
            for detector, why in sorted(fitted.notes.items()):
                click.echo(f"  {detector}: off ({why})")
    finally:
        engine.dispose()
    log.debug("baseline capture took %.2fs", time.monotonic() - started)


@cli.command(
    help="Run one cycle for every collection; exit 0 = no drift, 1 = drift, 2 = error. Alert rules are "
    "evaluated and notifiers called as the daemon would (state is shared with it)."
    + _example("driftwatch check --json")
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--collection", "names", multiple=True, help="Only these collections (repeatable).")
@click.option("--no-alerts", is_flag=True, help="Do not evaluate alert rules or notify anyone.")
@click.pass_obj
def check(state: _State, as_json: bool, names: tuple[str, ...], no_alerts: bool) -> None:
    import json
    import uuid
    from datetime import UTC, datetime

    from driftwatch.alerting import AlertEngine
    from driftwatch.cycle import CycleReport, failed_report
    from driftwatch.daemon import period_seconds
    from driftwatch.monitor import Monitor

    settings = state.settings
    chosen = [settings.collection(name) for name in names] or settings.collections
    if not chosen:
        raise CliError(f"{state.config_path}: no [[collections]] configured")
    engine = _engine(state)
    try:
        monitor = Monitor(settings, engine, alerts=None if no_alerts else AlertEngine(settings, engine))
        cycle_id, started = str(uuid.uuid4()), datetime.now(UTC)
        reports = {}
        for collection in chosen:
            report = monitor.run(collection.name, period_seconds(collection), cycle_id)
            busy = "another driftwatch process is running this collection's cycle right now; try again"
            reports[collection.name] = report or failed_report(collection.name, started, 0.0, busy)
        report = CycleReport(cycle_id=cycle_id, started_at=started, collections=reports)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        for name, coll in report.collections.items():
            title = f"{name}: {coll.status.upper()}"
            if coll.error:
                click.echo(f"{title}: {scrub(coll.error, state.secrets)}")
                continue
            dominant = coll.model_versions.get("dominant")
            click.echo(f"{title} (sample {coll.sample_size}, model {dominant or '-'}, {coll.seconds:.2f}s)")
            rows = [
                [r.detector, _num(r.value), _num(r.threshold), _num(r.p_value), "DRIFT" if r.drifted else "-",
                 str(r.details.get("insufficient", ""))]
                for r in coll.results
            ]  # fmt: skip
            click.echo(_table(["detector", "value", "threshold", "p", "drifted", "note"], rows))
            for alert in coll.alerts:
                click.echo(
                    f"  alert {alert['state']}: {alert['alertname']} ({alert['severity']}) {alert['summary']}"
                )
    sys.exit(report.exit_code)


@cli.command(
    help="Run the daemon: scheduled cycles, alerting, and /metrics, /healthz, /readyz, /alerts over HTTP. "
    "Stops cleanly on SIGTERM or SIGINT." + _example("driftwatch run --migrate")
)
@click.option("--migrate", is_flag=True, help="Apply the store's migrations first (handy in containers).")
@click.pass_obj
def run(state: _State, migrate: bool) -> None:
    from driftwatch import store
    from driftwatch.daemon import Daemon

    settings = state.settings
    engine = store.create_store_engine(settings.store.url)
    if migrate:
        store.upgrade(engine)
    store.ensure_current(engine)
    sys.exit(Daemon(settings, engine).serve_forever())


@cli.command(help="Latest verdict per collection and detector." + _example("driftwatch status"))
@click.option("--collection", help="Only this collection.")
@click.pass_obj
def status(state: _State, collection: str | None) -> None:
    from driftwatch import repository

    engine = _engine(state)
    try:
        points = repository.latest_points(engine, collection)
        cycles = repository.recent_cycles(engine, collection, 50)
    finally:
        engine.dispose()
    last: dict[str, Any] = {}
    for cycle in cycles:
        last.setdefault(cycle.collection, cycle)
    for name, cycle in sorted(last.items()):
        error = f": {scrub(cycle.error, state.secrets)}" if cycle.error else ""
        click.echo(f"{name}: last cycle {cycle.started_at:%Y-%m-%d %H:%M:%S}Z {cycle.status}{error}")
    if not points:
        click.echo("no results stored yet; run `driftwatch check`")
        return
    rows = [
        [p.collection, p.detector, f"{p.ts:%Y-%m-%d %H:%M:%S}", _num(p.value), _num(p.threshold),
         "DRIFT" if p.drifted else "-"]
        for p in points
    ]  # fmt: skip
    click.echo(_table(["collection", "detector", "at (UTC)", "value", "threshold", "drifted"], rows))


@cli.command(
    help="The stored time series of detector values." + _example("driftwatch history --collection docs")
)
@click.option("--collection", help="Only this collection.")
@click.option("--detector", help="Only this detector.")
@click.option("--limit", default=50, show_default=True, help="Newest points to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def history(state: _State, collection: str | None, detector: str | None, limit: int, as_json: bool) -> None:
    import json

    from driftwatch import repository

    engine = _engine(state)
    try:
        points = repository.history(engine, collection, detector, limit)
    finally:
        engine.dispose()
    if as_json:
        for p in points:
            click.echo(json.dumps({
                "ts": p.ts.isoformat(), "collection": p.collection, "detector": p.detector, "value": p.value,
                "threshold": p.threshold, "p_value": p.p_value, "drifted": p.drifted,
                "sample_size": p.sample_size, "model_version": p.model_version, "details": p.details,
            }))  # fmt: skip
        return
    rows = [
        [f"{p.ts:%Y-%m-%d %H:%M:%S}", p.collection, p.detector, _num(p.value), _num(p.threshold),
         "DRIFT" if p.drifted else "-"]
        for p in points
    ]  # fmt: skip
    click.echo(_table(["at (UTC)", "collection", "detector", "value", "threshold", "drifted"], rows))


@cli.group(help="The reference query suite." + _example("driftwatch suite import suite.jsonl"))
def suite() -> None:
    pass


@suite.command(
    "import",
    help="Load (replace) a collection's reference suite from JSONL; a file with any bad line loads nothing."
    + _example("driftwatch suite import suite.jsonl --collection docs"),
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--collection", help="Required when more than one collection is configured.")
@click.pass_obj
def suite_import(state: _State, file: Path, collection: str | None) -> None:
    from driftwatch import repository
    from driftwatch.suite import parse_suite

    names = _collections(state, collection)
    if len(names) > 1:
        raise CliError(f"several collections are configured; name one with --collection ({', '.join(names)})")
    queries = parse_suite(file)
    engine = _engine(state)
    try:
        count = repository.replace_suite(engine, names[0], queries)
    finally:
        engine.dispose()
    click.echo(f"{names[0]}: reference suite replaced with {count} queries from {file}")


@cli.group(help="The application's query log." + _example("driftwatch querylog ddl"))
def querylog() -> None:
    pass


@querylog.command(
    "import",
    help="Validate a query-log JSONL file and append it to the collection's query-log table; a file "
    "with any bad line loads nothing. Needs INSERT on that table (the monitor itself only reads)."
    + _example("driftwatch querylog import log.jsonl --collection docs"),
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--collection", help="Required when more than one collection is configured.")
@click.pass_obj
def querylog_import(state: _State, file: Path, collection: str | None) -> None:
    from driftwatch.querylog import load_querylog, parse_querylog

    names = _collections(state, collection)
    if len(names) > 1:
        raise CliError(f"several collections are configured; name one with --collection ({', '.join(names)})")
    settings = state.settings.collection(names[0])
    queries = parse_querylog(file)
    count = load_querylog(settings, queries)
    clicks = sum(len(q.clicked_ids) for q in queries)
    assert settings.query_log is not None
    click.echo(
        f"{names[0]}: {count} queries ({clicks} clicks) from {file} loaded into {settings.query_log.table}"
    )


@querylog.command(
    "ddl",
    help="Print the recommended query-log DDL (the table name and vector size come from the config "
    "when it names a query log)." + _example("driftwatch querylog ddl --dim 384 | psql app"),
)
@click.option("--collection", help="Use this collection's query_log.table.")
@click.option("--table", help="Table name (default: the config's, else public.query_log).")
@click.option("--dim", type=click.IntRange(1, 16000), help="Dimension of query_embedding.")
@click.option(
    "--reader", default="driftwatch", show_default=True, help="Role to GRANT SELECT to ('' for none)."
)
@click.pass_obj
def querylog_ddl(
    state: _State, collection: str | None, table: str | None, dim: int | None, reader: str
) -> None:
    from driftwatch.config import split_qualified_name
    from driftwatch.querylog import ddl

    if table is None and (collection or state.config_path.exists()):
        configured = [
            c.query_log.table
            for c in state.settings.collections
            if c.query_log and (collection is None or c.name == collection)
        ]
        table = configured[0] if configured else None
    table = table or "public.query_log"
    try:
        split_qualified_name(table)
    except ValueError as exc:
        raise CliError(f"--table: {exc}") from None
    click.echo(ddl(table, dim, reader or None))


@cli.group(help="Fine-tuning candidates mined from clicks." + _example("driftwatch candidates export"))
def candidates() -> None:
    pass


@candidates.command(
    "export",
    help="Write triplets as JSONL for sentence-transformers (anchor, positive, negative, ...), "
    "highest priority first." + _example("driftwatch candidates export --min-priority 0.5 > triplets.jsonl"),
)
@click.option("--collection", help="Only this collection.")
@click.option("--since", type=click.DateTime(), help="Only candidates mined at or after this UTC time.")
@click.option("--min-priority", type=float, help="Only candidates with at least this priority (0-1).")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@click.pass_obj
def candidates_export(
    state: _State,
    collection: str | None,
    since: Any,
    min_priority: float | None,
    fmt: str,
    output: Path | None,
) -> None:
    import json
    from datetime import UTC

    from driftwatch import repository

    if collection:
        state.settings.collection(collection)
    engine = _engine(state)
    try:
        rows = repository.candidates(
            engine, collection, since.replace(tzinfo=UTC) if since else None, min_priority
        )
    finally:
        engine.dispose()
    keys = ("anchor", "positive", "negative", "query_id", "positive_id", "negative_id", "source")
    lines = [json.dumps({k: getattr(r, k) for k in keys}, ensure_ascii=False) for r in rows]
    text = "".join(line + "\n" for line in lines)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(lines)} triplets to {output}", err=True)


@candidates.command(
    "mine",
    help="Turn the clicks logged since the last run into fine-tuning candidates now (the daemon "
    "does this every cycle)." + _example("driftwatch candidates mine --collection docs"),
)
@click.option("--collection", help="Only this collection.")
@click.pass_obj
def candidates_mine(state: _State, collection: str | None) -> None:
    from datetime import UTC, datetime

    from driftwatch import repository
    from driftwatch.detectors import DriftResult
    from driftwatch.feedback import mine_collection

    names = [
        n for n in _collections(state, collection)
        if state.settings.collection(n).query_log and state.settings.collection(n).text_column
    ]  # fmt: skip
    if not names:
        raise CliError("no collection has both [collections.query_log] and text_column: nothing to mine")
    engine = _engine(state)
    try:
        for name in names:
            latest = {p.detector: p for p in repository.latest_points(engine, name)}
            point = latest.get("spatial_kl")
            spatial = point and DriftResult(
                point.detector, point.value, point.threshold, point.p_value, point.details
            )
            report = mine_collection(state.settings.collection(name), engine, datetime.now(UTC), spatial)
            left_out = ", ".join(f"{why}: {n}" for why, n in sorted(report.left_out.items())) or "none"
            click.echo(
                f"{name}: {report.new_candidates} new candidates from {report.clicks} clicks on "
                f"{report.queries} queries up to {report.until:%Y-%m-%d %H:%M:%S}Z (left out: {left_out})"
            )
    finally:
        engine.dispose()


@cli.group(
    help="Drift-Adapter: map a new model's queries into the old index."
    + _example("driftwatch adapter fit --collection docs --from-version v1 --to-version v2")
)
def adapter() -> None:
    pass


@adapter.command(
    "fit",
    help="Learn a map from the new embedding space into the old one."
    + _example("driftwatch adapter fit --collection docs --from-version v1 --to-version v2"),
)
def adapter_fit() -> None:
    raise NotAvailableYet("adapter fit", _FEEDBACK_RELEASE)


# ---------------------------------------------------------------- demo


@cli.command(
    help="Start an embedded PostgreSQL + pgvector and show driftwatch on it; needs no config."
    + _example("driftwatch demo")
)
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the data here.")
def demo(keep: Path | None) -> None:
    from driftwatch import store
    from driftwatch.embedded import EmbeddedPostgres

    workdir = keep or Path(tempfile.mkdtemp(prefix="driftwatch-demo-"))
    started = time.monotonic()
    click.echo(f"[1/3] starting embedded PostgreSQL + pgvector in {workdir / 'pg'} ...")
    with EmbeddedPostgres(workdir / "pg", delete_on_stop=keep is None) as server:
        import psycopg

        with psycopg.connect(server.dsn()) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
            vector_version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        click.echo(f"      PostgreSQL {pg_version}, pgvector {vector_version}")
        click.echo("[2/3] creating driftwatch's own store and applying migrations ...")
        store_url = "postgresql+psycopg://" + server.create_database("driftwatch").split("://", 1)[1]
        engine = store.create_store_engine(store_url)
        try:
            store.upgrade(engine)
            from sqlalchemy import inspect

            tables = sorted(t for t in inspect(engine).get_table_names() if t != "alembic_version")
            revision = store.current_revision(engine)
        finally:
            engine.dispose()
        click.echo(f"      revision {revision}: {', '.join(tables)}")
        click.echo("[3/3] stopping the embedded server ...")
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(
        f"done in {time.monotonic() - started:.1f}s. The drift walk-through (growth, a model push, "
        "the adapter) comes next; `driftwatch baseline capture` and `driftwatch check` already "
        "work on your own tables (see README)."
    )


def main() -> None:
    cli(prog_name="driftwatch")


if __name__ == "__main__":
    sys.exit(main())
