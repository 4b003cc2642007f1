"""`driftwatch querylog`, `candidates` and `adapter`: click feedback into fine-tuning data, and
the Drift-Adapter that bridges a model push until the store is re-embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from driftwatch.cli.base import CliError, State, collection_names, example, num, progress, store_engine, table


@click.group(help="The application's query log." + example("driftwatch querylog ddl"))
def querylog() -> None:
    pass


@querylog.command(
    "import",
    help="Validate a query-log JSONL file and append it to the collection's query-log table; a file "
    "with any bad line loads nothing. Needs INSERT on that table (the monitor itself only reads)."
    + example("driftwatch querylog import log.jsonl --collection docs"),
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--collection", help="Required when more than one collection is configured.")
@click.pass_obj
def querylog_import(state: State, file: Path, collection: str | None) -> None:
    from driftwatch.pg.querylog import load_querylog, parse_querylog

    names = collection_names(state, collection)
    if len(names) > 1:
        raise CliError(f"several collections are configured; name one with --collection ({', '.join(names)})")
    chosen = state.settings.collection(names[0])
    queries = parse_querylog(file)
    count = load_querylog(chosen, queries)
    clicks = sum(len(q.clicked_ids) for q in queries)
    thumbs = sum(q.feedback is not None for q in queries)
    table_name = chosen.query_log.table if chosen.query_log else "the query log"
    click.echo(
        f"{names[0]}: {count} queries ({clicks} clicks, {thumbs} thumbs) from {file} loaded into {table_name}"
    )


@querylog.command(
    "ddl",
    help="Print the recommended query-log DDL (the table name and vector size come from the config "
    "when it names a query log)." + example("driftwatch querylog ddl --dim 384 | psql app"),
)
@click.option("--collection", help="Use this collection's query_log.table.")
@click.option("--table", help="Table name (default: the config's, else public.query_log).")
@click.option("--dim", type=click.IntRange(1, 16000), help="Dimension of query_embedding.")
@click.option(
    "--reader", default="driftwatch", show_default=True, help="Role to GRANT SELECT to ('' for none)."
)
@click.pass_obj
def querylog_ddl(
    state: State, collection: str | None, table: str | None, dim: int | None, reader: str
) -> None:
    from driftwatch.config import split_qualified_name
    from driftwatch.pg.querylog import ddl

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


@click.group(help="Fine-tuning candidates mined from clicks." + example("driftwatch candidates export"))
def candidates() -> None:
    pass


@candidates.command(
    "export",
    help="Write triplets as JSONL for sentence-transformers (anchor, positive, negative, ...), "
    "highest priority first; each names its source and its query's model_version."
    + example("driftwatch candidates export --model-version v1 --min-priority 0.5 > triplets.jsonl"),
)
@click.option("--collection", help="Only this collection.")
@click.option("--since", type=click.DateTime(), help="Only candidates mined at or after this UTC time.")
@click.option("--min-priority", type=float, help="Only candidates with at least this priority (0-1).")
@click.option("--model-version", help="Only candidates mined from queries on this model version.")
@click.option(
    "--source",
    type=click.Choice(["skip_above", "hard_negative", "thumbs_down", "follow_up"]),
    help="Only candidates from this feedback source.",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@click.pass_obj
def candidates_export(
    state: State,
    collection: str | None,
    since: Any,
    min_priority: float | None,
    model_version: str | None,
    source: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    import json
    from datetime import UTC

    from driftwatch.store import repository

    if collection:
        state.settings.collection(collection)
    engine = store_engine(state)
    try:
        rows = repository.candidates(
            engine,
            collection,
            since.replace(tzinfo=UTC) if since else None,
            min_priority,
            model_version,
            source,
        )
    finally:
        engine.dispose()
    keys = (
        "anchor",
        "positive",
        "negative",
        "query_id",
        "positive_id",
        "negative_id",
        "source",
        "model_version",
    )
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
    "does this every cycle)." + example("driftwatch candidates mine --collection docs"),
)
@click.option("--collection", help="Only this collection.")
@click.pass_obj
def candidates_mine(state: State, collection: str | None) -> None:
    from datetime import UTC, datetime

    from driftwatch.detect.detectors import DriftResult
    from driftwatch.feedback import mine_collection
    from driftwatch.store import repository

    names = [
        n for n in collection_names(state, collection)
        if state.settings.collection(n).query_log and state.settings.collection(n).text_column
    ]  # fmt: skip
    if not names:
        raise CliError("no collection has both [collections.query_log] and text_column: nothing to mine")
    engine = store_engine(state)
    try:
        for name in names:
            latest = {p.detector: p for p in repository.latest_points(engine, name)}
            point = latest.get("spatial_kl")
            spatial = point and DriftResult(
                point.detector, point.value, point.threshold, point.p_value, point.details
            )
            say = progress("feedback")
            say(f"{name}: mining clicks from the query log")
            report = mine_collection(state.settings.collection(name), engine, datetime.now(UTC), spatial)
            say(f"{name}: mined {report.queries} queries")
            left_out = ", ".join(f"{why}: {n}" for why, n in sorted(report.left_out.items())) or "none"
            click.echo(
                f"{name}: {report.new_candidates} new candidates from {report.clicks} clicks on "
                f"{report.queries} queries up to {report.until:%Y-%m-%d %H:%M:%S}Z (left out: {left_out})"
            )
    finally:
        engine.dispose()


@click.group(
    help="Drift-Adapter: map a new model's queries into the old index."
    + example("driftwatch adapter fit --collection docs --from-version v1 --to-version v2")
)
def adapter() -> None:
    pass


@adapter.command(
    "fit",
    help="Learn a map from the new model's space into the old one from rows embedded under both "
    "versions (the store mid-re-index, or --side-table), report recall@K of the reference suite "
    "raw / mapped / fully re-embedded, and save the adapter (.npz) and the report (.json). "
    "Applications apply it with driftwatch.adapter.load(path).apply(query_vectors)."
    + example("driftwatch adapter fit --collection docs --from-version v1 --to-version v2"),
)
@click.option("--collection", help="Required when more than one collection is configured.")
@click.option("--from-version", required=True, help="The old model_version: the index's space.")
@click.option("--to-version", required=True, help="The new model_version: the queries' space.")
@click.option(
    "--method", type=click.Choice(["auto", "procrustes", "affine", "mlp"]), default="auto", show_default=True,
    help="auto: the simplest map within one standard error of the best on held-out pairs; procrustes: "
    "a scaled rotation of the centred vectors; affine: a ridge map; mlp: affine plus a residual MLP "
    "trained contrastively (cosine metric only).",
)  # fmt: skip
@click.option("--rank", type=click.IntRange(1), help="affine only: limit the map to this rank.")
@click.option(
    "--max-pairs", type=click.IntRange(1), default=20000, show_default=True, help="Paired rows to read."
)
@click.option("--side-table", help="A table of re-embedded rows (same columns) holding the new version.")
@click.option(
    "--query-pairs", type=click.IntRange(0), default=None,
    help="Logged old-version queries to embed with the live model and learn from too (short queries sit "
    "where no document does). Default: up to 2000 when the collection has a query log and an embedder; "
    "0: document pairs only.",
)  # fmt: skip
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Path stem for .npz/.json."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.pass_obj
def adapter_fit(
    state: State,
    collection: str | None,
    from_version: str,
    to_version: str,
    method: str,
    rank: int | None,
    max_pairs: int,
    side_table: str | None,
    query_pairs: int | None,
    output: Path | None,
    as_json: bool,
) -> None:
    import json

    from driftwatch.adapter_fit import fit_and_report

    names = collection_names(state, collection)
    if len(names) > 1:
        raise CliError(f"several collections are configured; name one with --collection ({', '.join(names)})")
    engine = store_engine(state)
    try:
        report = fit_and_report(
            state.settings.collection(names[0]),
            engine,
            from_version,
            to_version,
            method=method,  # type: ignore[arg-type]
            rank=rank,
            max_pairs=max_pairs,
            side_table=side_table,
            query_pairs=query_pairs,
            output=output,
            progress=progress("adapter"),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(
        f"{names[0]}: {report.kind} adapter {from_version} <- {to_version} "
        f"fitted on {report.pairs_fit} pairs "
        f"({report.pairs_held_out} held out); held-out cosine {num(report.held_out_cosine_before)} -> "
        f"{num(report.held_out_cosine_after)}"
    )
    if report.query_pairs is not None:
        q = report.query_pairs
        click.echo(
            f"  and {q.fit} logged queries ({q.held_out} held out); held-out cosine "
            f"{num(q.held_out_cosine_before)} -> {num(q.held_out_cosine_after)}"
        )
    recall = report.recall
    if recall is not None:
        rows = [
            ["new queries, old index (raw)", num(recall.raw)],
            ["mapped queries, old index", num(recall.mapped)],
            ["new queries, re-embedded rows (oracle)", num(recall.oracle)],
            ["recovered share (mapped / oracle)", num(report.recovered_share)],
        ]
        click.echo(table([f"recall@{recall.k} over {recall.queries} suite queries", "value"], rows))
    for note in report.notes:
        click.echo(f"  note: {note}")
    click.echo(f"saved {report.adapter_path} and {report.report_path}")


__all__ = ["adapter", "candidates", "querylog"]
