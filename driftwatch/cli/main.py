"""The `driftwatch` command: thin click commands over the library (the feedback and adapter
commands live in cli/feedback.py). `check` keeps 0 = no drift, 1 = drift, 2 = error.
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
from driftwatch.cli.base import (
    CliError,
    Root,
    State,
    collection_names,
    example,
    num,
    progress,
    store_engine,
    table,
)
from driftwatch.cli.feedback import adapter, candidates, querylog
from driftwatch.config import CONFIG_ENV, DEFAULT_CONFIG_PATH
from driftwatch.logs import configure_logging
from driftwatch.secrets import redact, scrub

log = logging.getLogger("driftwatch")


@click.group(cls=Root, context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = State(config_path, log_level.upper() if log_level else None)
    configure_logging(ctx.obj.log_level or "INFO", ctx.obj.secrets)


cli.help = (cli.help or "") + example("driftwatch --config /etc/driftwatch.toml check --json")


# ---------------------------------------------------------------- init


@cli.command(help="Write a commented example config that validates as it is." + example("driftwatch init"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, force: bool) -> None:
    target = state.config_path
    if target.exists() and not force:
        raise CliError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = files("driftwatch").joinpath("example_config.toml").read_text(encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}; edit [[collections]], then run `driftwatch db upgrade`")


# ---------------------------------------------------------------- db


@cli.group(help="driftwatch's own store (not the vector store)." + example("driftwatch db upgrade"))
def db() -> None:
    pass


@db.command(
    "upgrade",
    help="Create or migrate the store's tables; harmless when current." + example("driftwatch db upgrade"),
)
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@click.pass_obj
def db_upgrade(state: State, revision: str) -> None:
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
    + example("driftwatch db downgrade base"),
)
@click.argument("revision")
@click.pass_obj
def db_downgrade(state: State, revision: str) -> None:
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    try:
        store.downgrade(engine, revision)
        after = store.current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"store {redact(state.settings.store.url)} now at revision {after or 'base (empty)'}")


@db.command("current", help="Show the store's schema revision." + example("driftwatch db current"))
@click.pass_obj
def db_current(state: State) -> None:
    from driftwatch import store

    engine = store.create_store_engine(state.settings.store.url)
    try:
        current = store.current_revision(engine)
    finally:
        engine.dispose()
    head = store.head_revision()
    note = "up to date" if current == head else f"behind head {head}: run `driftwatch db upgrade`"
    click.echo(f"{current or 'empty'} ({note})")


@cli.group(help="Reference baselines." + example("driftwatch baseline capture --collection docs"))
def baseline() -> None:
    pass


@baseline.command(
    "capture",
    help="Sample each collection and freeze its baseline and calibrated thresholds."
    + example("driftwatch baseline capture --collection docs"),
)
@click.option("--collection", help="Only this collection.")
@click.pass_obj
def baseline_capture(state: State, collection: str | None) -> None:
    from driftwatch.baseline import capture

    engine = store_engine(state)
    started = time.monotonic()
    try:
        for name in collection_names(state, collection):
            chosen = state.settings.collection(name)
            report = capture(chosen, engine, progress=progress("baseline"))
            fitted = report.fitted
            alpha = chosen.false_alarm_rate
            rows = [
                [name, *(num(x) for x in summary)] for name, summary in fitted.null_summaries(alpha).items()
            ]
            click.echo(
                f"{name}: baseline {report.baseline_id} captured ({report.method} sample, "
                f"{report.reference_rows} reference + {report.held_out_rows} held-out rows, "
                f"model {report.model_version or '-'}, {report.seconds:.1f}s)"
            )
            click.echo(table(["detector", "null mean", "null sd", "threshold"], rows))
            for detector, why in sorted(fitted.notes.items()):
                click.echo(f"  {detector}: off ({why})")
    finally:
        engine.dispose()
    log.debug("baseline capture took %.2fs", time.monotonic() - started)


@cli.command(
    help="Run one cycle for every collection; exit 0 = no drift, 1 = drift, 2 = error. Alert rules are "
    "evaluated and notifiers called as the daemon would (state is shared with it)."
    + example("driftwatch check --json")
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--collection", "names", multiple=True, help="Only these collections (repeatable).")
@click.option("--no-alerts", is_flag=True, help="Do not evaluate alert rules or notify anyone.")
@click.pass_obj
def check(state: State, as_json: bool, names: tuple[str, ...], no_alerts: bool) -> None:
    import json
    import uuid
    from datetime import UTC, datetime

    from driftwatch.alerting import AlertEngine
    from driftwatch.cycle import CycleReport, failed_report
    from driftwatch.daemon import period_seconds
    from driftwatch.guidance import annotations as guidance
    from driftwatch.guidance import where_text
    from driftwatch.monitor import Monitor

    settings = state.settings
    chosen = [settings.collection(name) for name in names] or settings.collections
    if not chosen:
        raise CliError(f"{state.config_path}: no [[collections]] configured")
    engine = store_engine(state)
    try:
        alerts = None if no_alerts else AlertEngine(settings, engine)
        monitor = Monitor(settings, engine, alerts=alerts)
        if alerts is not None:
            alerts.retire({c.name for c in settings.collections})
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
        body = report.to_json()
        for coll in body["collections"].values():
            for name, result in coll["detectors"].items():
                if result["drifted"]:
                    result.update(guidance(name, settings.alerts.runbook_url))
        click.echo(scrub(json.dumps(body, indent=2, default=str), state.secrets))
    else:
        for name, coll in report.collections.items():
            title = f"{name}: {coll.status.upper()}"
            if coll.error:
                click.echo(f"{title}: {scrub(coll.error, state.secrets)}")
                continue
            dominant = coll.model_versions.get("dominant")
            click.echo(f"{title} (sample {coll.sample_size}, model {dominant or '-'}, {coll.seconds:.2f}s)")
            rows = [
                [r.detector, num(r.value), num(r.threshold), num(r.p_value), "DRIFT" if r.drifted else "-",
                 str(r.details.get("insufficient", ""))]
                for r in coll.results
            ]  # fmt: skip
            click.echo(table(["detector", "value", "threshold", "p", "drifted", "note"], rows))
            for note in coll.notes:
                click.echo(f"  note: {scrub(note, state.secrets)}")
            for result in coll.results:
                if result.drifted:
                    guide = guidance(result.detector, settings.alerts.runbook_url)
                    click.echo(f"  {result.detector}: do: {guide['action']}; runbook: {guide['runbook']}")
                    if where := where_text(result.details):
                        click.echo(f"    {where}")
            for alert in coll.alerts:
                click.echo(
                    f"  alert {alert['state']}: {alert['alertname']} ({alert['severity']}) {alert['summary']}"
                )
                if alert["state"] == "resolved":
                    click.echo(
                        f"    resolved: {alert['resolved_because'] or 'the condition no longer holds'}"
                    )
                else:
                    click.echo(f"    do: {alert['action']}\n    runbook: {alert['runbook']}")
    sys.exit(report.exit_code)


@cli.command(
    help="Run the daemon: scheduled cycles, alerting, and /metrics, /healthz, /readyz, /alerts over HTTP. "
    "Stops cleanly on SIGTERM or SIGINT." + example("driftwatch run --migrate")
)
@click.option("--migrate", is_flag=True, help="Apply the store's migrations first (handy in containers).")
@click.pass_obj
def run(state: State, migrate: bool) -> None:
    from driftwatch import store
    from driftwatch.daemon import Daemon

    settings = state.settings
    engine = store.create_store_engine(settings.store.url)
    if migrate:
        store.upgrade(engine)
    store.ensure_current(engine)
    sys.exit(Daemon(settings, engine).serve_forever())


@cli.command(
    help="Latest verdict per collection and detector, and the alerts with what to do. With --exit-code: "
    "exit 1 when a configured collection's last cycle found drift, 2 when one failed or never ran."
    + example("driftwatch status --exit-code || page-someone")
)
@click.option("--collection", help="Only this collection.")
@click.option("--exit-code", is_flag=True, help="Exit 0 = no drift, 1 = drift, 2 = failed or no cycle yet.")
@click.pass_obj
def status(state: State, collection: str | None, exit_code: bool) -> None:
    from driftwatch.alerting import AlertEngine
    from driftwatch.store import repository

    settings = state.settings
    engine = store_engine(state)
    try:
        measured = repository.latest_measured(engine, collection)
        newest = {(p.collection, p.detector): p for p in repository.latest_points(engine, collection)}
        last = repository.last_cycles(engine)
        alerts = AlertEngine(settings, engine, notifiers=[]).states(collection)
    finally:
        engine.dispose()
    configured = [c.name for c in settings.collections if collection in (None, c.name)]
    names = sorted(set(configured) | {n for n in last if collection in (None, n)})
    for name in names:
        cycle = last.get(name)
        gone = "" if name in configured else " [not in the config any more: history only]"
        if cycle is None:
            click.echo(f"{name}: no cycle yet; run `driftwatch check`{gone}")
            continue
        error = f": {scrub(cycle.error, state.secrets)}" if cycle.error else ""
        click.echo(f"{name}: last cycle {cycle.started_at:%Y-%m-%d %H:%M:%S}Z {cycle.status}{error}{gone}")
    if measured:
        headers = ["collection", "detector", "measured (UTC)", "value", "threshold", "drifted", "note"]
        rows = [_status_row(p, newest.get((p.collection, p.detector))) for p in measured]
        click.echo(table(headers, rows))
    elif not last:
        click.echo("no results stored yet; run `driftwatch check`")
    active = [a for a in alerts if a.state in ("pending", "firing")]
    for alert in active:
        click.echo("\n".join(alert.lines()))
    if alerts and not active:
        click.echo("no alert pending or firing")
    if exit_code:
        statuses = [last[n].status if n in last else "failed" for n in configured]
        sys.exit(2 if "failed" in statuses else 1 if "drift" in statuses else 0)


def _status_row(point: Any, newest: Any) -> list[str]:
    """A detector's last measurement; when the newest cycle did not measure it, the note says
    why and its verdict is shown as old, not as current."""
    current = newest is None or newest.id == point.id
    drifted = (
        ("DRIFT" if point.drifted else "-") if current else ("DRIFT (old)" if point.drifted else "- (old)")
    )
    note = (
        "" if current else str((newest.details or {}).get("insufficient", "not measured in the newest cycle"))
    )
    return [point.collection, point.detector, f"{point.ts:%Y-%m-%d %H:%M:%S}", num(point.value),
            num(point.threshold), drifted, note]  # fmt: skip


@cli.command(
    help="The stored time series of detector values." + example("driftwatch history --collection docs")
)
@click.option("--collection", help="Only this collection.")
@click.option("--detector", help="Only this detector.")
@click.option("--limit", default=50, show_default=True, help="Newest points to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def history(state: State, collection: str | None, detector: str | None, limit: int, as_json: bool) -> None:
    import json

    from driftwatch.detect.registry import REGISTRY
    from driftwatch.store import repository

    if detector is not None and detector not in REGISTRY:
        raise CliError(f"--detector: unknown detector {detector!r}; known: {', '.join(REGISTRY.names())}")
    engine = store_engine(state)
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
        [f"{p.ts:%Y-%m-%d %H:%M:%S}", p.collection, p.detector, num(p.value), num(p.threshold),
         "DRIFT" if p.drifted else "-"]
        for p in points
    ]  # fmt: skip
    click.echo(table(["at (UTC)", "collection", "detector", "value", "threshold", "drifted"], rows))


@cli.command(
    help="What a detector means and what to do when it fires; every detector without a name."
    + example("driftwatch runbook spatial_kl")
)
@click.argument("detector", required=False)
def runbook(detector: str | None) -> None:
    from driftwatch.detect.registry import REGISTRY

    if detector is not None and detector not in REGISTRY:
        raise CliError(f"unknown detector {detector!r}; known: {', '.join(REGISTRY.names())}")
    for entry in [REGISTRY[detector]] if detector else REGISTRY:
        click.echo(f"{entry.name} ({entry.label})\n  means: {entry.meaning}\n  do:    {entry.action}")


@cli.group(help="The reference query suite." + example("driftwatch suite import suite.jsonl"))
def suite() -> None:
    pass


@suite.command(
    "import",
    help="Load (replace) a collection's reference suite from JSONL; a file with any bad line loads nothing."
    + example("driftwatch suite import suite.jsonl --collection docs"),
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--collection", help="Required when more than one collection is configured.")
@click.pass_obj
def suite_import(state: State, file: Path, collection: str | None) -> None:
    from driftwatch.store import repository
    from driftwatch.suite import parse_suite

    names = collection_names(state, collection)
    if len(names) > 1:
        raise CliError(f"several collections are configured; name one with --collection ({', '.join(names)})")
    queries = parse_suite(file)
    engine = store_engine(state)
    try:
        dims = {len(q.embedding) for q in queries if q.embedding is not None}  # one at most: parsed
        if dims:
            _check_suite_dimension(state, engine, names[0], dims.pop(), file)
        count = repository.replace_suite(engine, names[0], queries)
    finally:
        engine.dispose()
    click.echo(f"{names[0]}: reference suite replaced with {count} queries from {file}")


def _check_suite_dimension(state: State, engine: Any, name: str, dim: int, file: Path) -> None:
    """A suite whose embeddings cannot be compared with the collection's vectors would fail
    every cycle: refuse it now. The baseline knows the collection's dimension; without one,
    the vector column (its declared dimension, or its rows') says."""
    from driftwatch.errors import SourceError
    from driftwatch.pg.sampler import vector_dimension
    from driftwatch.pg.session import Sessions
    from driftwatch.store import repository

    collection = state.settings.collection(name)
    baseline = repository.active_baseline(engine, name)
    if baseline is not None:
        expected: int | None = baseline.sample.shape[1]
    else:
        try:
            with Sessions(collection) as sessions:
                source, one = collection.per_source()[0]  # the sources share one dimension
                expected = vector_dimension(sessions.on(source.dsn), one)
        except SourceError as exc:
            raise CliError(f"{file}: cannot check the suite's dimension against {name}: {exc}") from None
    if expected is not None and expected != dim:
        raise CliError(
            f"{file}: embeddings have {dim} dimensions but {name}'s vectors ({collection.tables}."
            f"{collection.vector_column}) have {expected}; nothing imported"
        )


# ---------------------------------------------------------------- demo


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _show_step(step: str, result: Any) -> None:
    """One demo step's table of detectors, its new alerts and what to do."""
    from driftwatch.demo import STEPS

    cycle = result.step(step)[-1]
    rows = [
        [name, num(r["value"]), num(r["threshold"]), "DRIFT" if r["drifted"] else "-"]
        for name, r in cycle.detectors.items()
    ]
    click.echo("")
    click.echo(table([STEPS[step][0], "value", "threshold", "drifted"], rows))
    for alert in result.new_alerts(step):
        click.echo(
            f"  alert {alert['state']}: {alert['alertname']} ({alert['severity']}): {alert['summary']}"
        )
    click.echo(f"  -> {STEPS[step][1]}\n")


def _show_summary(result: Any) -> None:
    """The recall the demo measured (README quotes this line; tests/test_docs.py) and the candidates."""
    before, after, mapped = (_ratio(result.recall(step)) for step in ("growth", "push", "adapter"))
    click.echo(
        f"recall@10 of the suite through the index: {before} before the push, "
        f"{after} after it, {mapped} with the adapter (a full v2 re-embed, exact search: "
        f"{_ratio(result.reembedded_recall)}); adapter saved as adapter-docs-v1-to-v2.npz"
    )
    sources = ", ".join(f"{n} {source}" for source, n in result.candidate_sources.items())
    click.echo(
        f"fine-tuning candidates mined from the demo's clicks, thumbs and follow-ups: "
        f"{result.candidates} ({sources or 'none'}); queries on v2 are not mined during the push"
    )


def _serve(result: Any, port: int, say: Any) -> None:
    """Go on as a daemon on the demo's store, with its model service still up."""
    from driftwatch import store as store_module
    from driftwatch.daemon import Daemon

    settings = result.settings.model_copy(
        update={"server": result.settings.server.model_copy(update={"port": port})}
    )
    engine = store_module.create_store_engine(settings.store.url)
    say(f"serving http://127.0.0.1:{port}/metrics until Ctrl-C")
    try:
        Daemon(settings, engine).serve_forever()
    finally:
        if result.model is not None:
            result.model.close()


@cli.command(
    help="The whole story on an embedded PostgreSQL + pgvector, no config needed: steady state, a new "
    "topic, a model push, the Drift-Adapter; one table per step." + example("driftwatch demo --plot demo.png")
)
@click.option("--size", type=click.IntRange(2000), default=50_000, show_default=True, help="Documents.")
@click.option(
    "--dim", type=click.IntRange(8, 4096), default=384, show_default=True, help="Vector dimensions."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the steps as one JSON object (progress on stderr)."
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Draw a PNG.")
@click.option(
    "--serve", is_flag=True, help="Afterwards keep running as a daemon with /metrics (Ctrl-C stops)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=9187, show_default=True, help="With --serve.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the data here.")
def demo(
    size: int, dim: int, as_json: bool, plot_path: Path | None, serve: bool, port: int, keep: Path | None
) -> None:
    import json

    from driftwatch.demo import Plan, plot, run_demo
    from driftwatch.embedded import EmbeddedPostgres

    workdir = keep or Path(tempfile.mkdtemp(prefix="driftwatch-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:5.1f}s] {message}", err=as_json)

    def show(step: str, result: Any) -> None:
        if not as_json:
            _show_step(step, result)

    logging.getLogger("driftwatch.feedback").setLevel(logging.WARNING)  # one line a cycle is noise here
    say(f"starting embedded PostgreSQL + pgvector in {workdir / 'pg'}")
    with EmbeddedPostgres(workdir / "pg", delete_on_stop=keep is None) as server:
        say(f"{server.versions()} ready")
        result = run_demo(
            workdir, server.create_database, Plan(docs=size, dim=dim), say, show, keep_model=serve
        )
        if not as_json:
            _show_summary(result)
        if plot_path is not None:
            try:
                say(f"plot written to {plot(result, plot_path)}")
            except ImportError:
                raise CliError("--plot needs matplotlib: pip install 'driftwatch[plot]'") from None
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, default=str))
        say(f"done in {time.monotonic() - started:.1f}s")
        if serve and result.settings is not None:
            _serve(result, port, say)
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)


for group in (querylog, candidates, adapter):
    cli.add_command(group)


def main() -> None:
    cli(prog_name="driftwatch")


if __name__ == "__main__":
    sys.exit(main())
