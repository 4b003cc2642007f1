"""A collection spread over several servers: one table sharded by id over three embedded
PostgreSQL servers (the shared one and two started here), read through the production path.

The shards hold unequal shares (1/2, 1/3, 1/6 by `id % 6`) and the smallest holds a topic of
its own, so a cycle that silently lost it would look like drift: the outage rule must say so
and not page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector

from driftwatch.cli.main import cli
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.detect.observation import ReferenceQuery
from driftwatch.embedded import EmbeddedPostgres
from driftwatch.errors import ConfigError
from driftwatch.observe import observe
from driftwatch.pg.session import Sessions
from driftwatch.pg.sources import allocate, merge_runs, reader, trim
from driftwatch.synthetic import Topics, exact_neighbours, queries_near

from helpers import create_vector_table

DIM = 16
ROWS = 3600
SHARD_OF = (0, 0, 0, 1, 1, 2)  # id % 6 -> server: shares 1/2, 1/3, 1/6
SENTINELS = ["0", "3", "5"]  # one row on each server


def _shard(ids: np.ndarray) -> np.ndarray:
    return np.asarray(SHARD_OF)[np.asarray(ids) % 6]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors): shard 2's rows come from a topic no other shard has."""
    rng = np.random.default_rng(20)
    topics, own = Topics.make(rng, 6, DIM).with_new_topic(rng)
    ids = np.arange(ROWS)
    vectors, _ = topics.sample(rng, ROWS)
    on_two = _shard(ids) == 2
    vectors[on_two], _ = topics.sample(rng, int(on_two.sum()), topic=own)
    return ids, vectors.astype(np.float32)


@pytest.fixture(scope="module")
def servers(
    pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[EmbeddedPostgres]]:
    """The shared server and two more, which the outage test stops and starts again (their
    data stays until the module ends)."""
    extra = [EmbeddedPostgres(tmp_path_factory.mktemp(f"shard{i}") / "data") for i in (1, 2)]
    for server in extra:
        server.start()
    yield [pg, *extra]
    for server in extra:
        server.delete_on_stop = True
        server.stop()


@pytest.fixture(scope="module")
def shards(servers: list[EmbeddedPostgres], data: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """The DSN of `docs` on each server, holding that shard's rows; and on the shared server a
    database `whole` with every row in one `docs`, to compare with."""
    ids, vectors = data
    dsns = []
    for i, server in enumerate(servers):
        dsn = server.create_database("shard")
        mine = _shard(ids) == i
        create_vector_table(dsn, "docs", vectors[mine], kind=f"vector({DIM})", ids=ids[mine].tolist())
        dsns.append(dsn)
    create_vector_table(servers[0].create_database("whole"), "docs", vectors, kind=f"vector({DIM})")
    return dsns


def _sources(dsns: list[str]) -> list[dict[str, str]]:
    return [{"name": f"s{i}", "dsn": dsn, "table": "docs"} for i, dsn in enumerate(dsns)]


def _collection(**raw: object) -> CollectionSettings:
    base = {"name": "docs", "sample_size": 300, "cells": 8, "null_replicates": 100}
    return settings_from_dict({"collections": [{**base, **raw}]}, env={}).collections[0]


def test_allocation_is_proportional_in_expectation_and_exact_in_sum() -> None:
    rng = np.random.default_rng(1)
    rows = [1800, 1200, 600, 0, 7]
    draws = np.array([allocate(rows, 600, rng) for _ in range(4000)])
    assert (draws.sum(axis=1) == 600).all()
    expected = 600 * np.asarray(rows) / sum(rows)
    assert (np.abs(draws - expected) < 1).all()  # rounded down or up, never further
    assert np.allclose(draws.mean(axis=0), expected, atol=0.05)


def test_merged_top_k_is_ordered_by_similarity_with_ties_by_id() -> None:
    from driftwatch.detect.observation import SuiteRun

    one = SuiteRun(ids=[["b", "x"]], scores=np.array([[0.9, 0.5]]))
    two = SuiteRun(ids=[["a", "y"]], scores=np.array([[0.9, 0.7]]))
    for runs in ([one, two], [two, one]):
        merged = merge_runs(runs, 3)
        assert merged.ids == [["a", "b", "y"]]
        assert merged.scores.tolist() == [[0.9, 0.9, 0.7]]


def test_trim_keeps_a_uniform_share_of_rows_and_scales_what_it_only_counts() -> None:
    from driftwatch.detect.observation import VectorSample

    rng = np.random.default_rng(6)
    sample = VectorSample(
        vectors=rng.standard_normal((100, DIM)).astype(np.float32),
        ids=[str(i) for i in range(100)],
        versions={"v1": 60, "v2": 48},
        method="full",
        dim=DIM,
        rows_sampled=108,
        null_vectors=5,
        wrong_dim=3,
        dims_seen={DIM: 100, 8: 3},
        table_pages=3,
        table_rows_estimate=108,
        pages_probed=3,
    )
    kept_good = []
    for _ in range(400):
        cut = trim(sample, 54, rng)
        assert len(cut.vectors) + cut.null_vectors + cut.wrong_dim == cut.rows_sampled == 54
        assert sum(cut.versions.values()) == 54 and sum(cut.dims_seen.values()) == 54 - cut.null_vectors
        rows = [int(i) for i in cut.ids or []]
        assert np.array_equal(cut.vectors, sample.vectors[rows])  # each id with its own vector
        kept_good.append(len(rows))
    assert abs(np.mean(kept_good) - 54 * 100 / 108) < 0.5
    assert trim(sample, 200, rng) is sample


def test_the_union_sample_takes_each_source_in_proportion(shards: list[str]) -> None:
    collection = _collection(sources=_sources(shards))
    with Sessions(collection) as sessions:
        tables = reader(sessions, collection)
        sample = tables.sample(600, np.random.default_rng(2), None, with_ids=True)
        assert sessions.connections == 3
    assert tables.rows == {"s0": 1800, "s1": 1200, "s2": 600}
    assert sample.method != "full" and sample.table_rows_estimate == ROWS
    ids = np.asarray([int(i) for i in sample.ids or []])
    assert len(ids) == 600 == len(set(ids.tolist())) == len(sample.vectors)
    counts = np.bincount(_shard(ids), minlength=3)
    shares = np.array([0.5, 1 / 3, 1 / 6])
    assert (np.abs(counts - 600 * shares) <= 3 * np.sqrt(600 * shares * (1 - shares))).all(), counts


def test_recall_from_merged_top_k_equals_one_table(servers, shards, data, engine) -> None:  # type: ignore[no-untyped-def]
    """The suite through three shards (merged top K) and through one table of the same rows."""
    ids, vectors = data
    rng = np.random.default_rng(3)
    queries, _ = queries_near(rng, vectors, 40)
    near = exact_neighbours(queries, vectors, 25)
    suite = [
        ReferenceQuery(
            f"q{i}", tuple(str(ids[j]) for j in rng.choice(near[i], 10, replace=False)), embedding=q
        )
        for i, q in enumerate(queries)
    ]
    whole = servers[0].dsn("whole")
    seen = {}
    for name, collection in (
        ("sharded", _collection(sources=_sources(shards))),
        ("one table", _collection(dsn=whole, table="docs")),
    ):
        with Sessions(collection) as sessions:
            seen[name] = observe(
                sessions, collection, engine, np.random.default_rng(4), sample_size=300, expected_dim=DIM,
                with_ids=True, window=None, suite=suite, exact_rows=np.arange(4), sentinel_ids=SENTINELS,
            )  # fmt: skip
    assert set(seen["sharded"].sentinels) == set(SENTINELS)
    sharded, single = seen["sharded"].suite, seen["one table"].suite
    assert sharded is not None and single is not None
    assert sharded.ann.ids == single.ann.ids
    assert sharded.exact is not None and single.exact is not None and sharded.exact.ids == single.exact.ids
    hits, trials = sharded.recall_hits()
    assert np.array_equal((hits, trials), single.recall_hits())
    assert 0.2 < hits.sum() / trials.sum() < 0.8  # a recall that could differ, not 0 or 1


def _write_config(tmp_path: Path, dsns: list[str], suite: Path) -> Path:
    lines = [
        "[store]",
        f'url = "sqlite:///{tmp_path / "store.db"}"',
        "[[collections]]",
        'name = "docs"',
        "sample_size = 300",
        "cells = 8",
        "null_replicates = 100",
        "sentinels = 16",
        'arrival_column = "id"',
        "min_source_share = 0.6",
        "[collections.reference_suite]",
        f'path = "{suite}"',
    ]
    for i, dsn in enumerate(dsns):
        lines += ["[[collections.sources]]", f'name = "s{i}"', f'dsn = "{dsn}"', 'table = "docs"']
    config = tmp_path / "driftwatch.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _add_rows(dsns: list[str], ids: range, rng: np.random.Generator) -> None:
    vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    for i, vector in zip(ids, vectors, strict=True):
        with psycopg.connect(dsns[SHARD_OF[i % 6]], autocommit=True) as conn:
            register_vector(conn)
            conn.execute(
                "INSERT INTO docs (id, embedding) VALUES (%s, %s)", (i, vector / np.linalg.norm(vector))
            )


def test_capture_and_check_through_three_servers_and_the_outage_rule(
    servers: list[EmbeddedPostgres], shards: list[str], data, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ids, vectors = data
    rng = np.random.default_rng(5)
    queries, _ = queries_near(rng, vectors, 30)
    near = exact_neighbours(queries, vectors, 20)
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        "".join(
            json.dumps(
                {
                    "query_id": f"q{i}",
                    "embedding": q.tolist(),
                    "relevant_ids": [str(ids[j]) for j in near[i][::2]],
                }
            )
            + "\n"
            for i, q in enumerate(queries)
        )
    )
    config = _write_config(tmp_path, shards, suite)
    runner = CliRunner()

    def check() -> tuple[int, dict]:  # type: ignore[type-arg]
        result = runner.invoke(cli, ["--config", str(config), "check", "--json"])
        return result.exit_code, json.loads(result.stdout)["collections"]["docs"]

    assert runner.invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    captured = runner.invoke(cli, ["--config", str(config), "baseline", "capture"])
    assert captured.exit_code == 0, captured.output

    code, quiet = check()
    assert code == 0 and quiet["status"] == "ok", quiet
    assert quiet["detectors"]["recall_at_k"]["value"] is not None
    assert quiet["detectors"]["model_version"]["details"]["sentinels_checked"] == 16  # found across sources

    _add_rows(shards, range(ROWS, ROWS + 60), rng)  # arrivals on every shard, past each one's own watermark
    code, arrived = check()
    assert code in (0, 1), arrived
    assert arrived["detectors"]["arrivals_centroid_distance"]["details"]["arrived"] == 60

    servers[2].stop()  # the smallest shard (1/6 of the rows, a topic of its own) goes down
    try:
        code, partial = check()
        assert code == 0 and partial["status"] == "ok", partial
        down = [note for note in partial["notes"] if "source s2 (docs) is down" in note]
        assert down and "(83% of the rows)" in down[0], partial["notes"]  # 5/6 of the rows at capture
        assert partial["detectors"]["recall_at_k"]["value"] is None  # the suite did not run
        held = [partial["detectors"][d] for d in ("spatial_kl", "centroid_distance")]
        assert all(d["value"] is None and not d["drifted"] and "partial_value" in d["details"] for d in held)
        # Without the rule this cycle would have paged: the missing topic shows as drift.
        assert any(d["details"]["partial_value"] > d["details"]["partial_threshold"] for d in held)

        refused = runner.invoke(cli, ["--config", str(config), "baseline", "capture"])
        assert refused.exit_code != 0 and "source s2 (docs) is down" in refused.output
        assert "a baseline needs every source" in refused.output

        servers[1].stop()  # now only half the rows answer: under min_source_share 0.6
        code, failed = check()
        assert code == 2 and failed["status"] == "failed", failed
        assert "source s1 (docs) is down" in failed["error"] and "source s2 (docs) is down" in failed["error"]
        assert "held 50% of the rows, under min_source_share (60%)" in failed["error"]
    finally:
        for server in servers[1:]:
            server.start()


def _problems(raw: dict, env: dict[str, str] | None = None) -> list[str]:  # type: ignore[type-arg]
    try:
        settings_from_dict({"collections": [{"name": "docs", **raw}]}, env=env or {})
    except ConfigError as exc:
        return exc.problems
    return []


ONE = {"dsn": "postgresql://ro@db0/app", "table": "docs"}
BAD_SOURCES = [
    ({"sources": [ONE], **ONE}, "collections[0].dsn: give either dsn + table or sources, not both"),
    (
        {"sources": [ONE], "table": "docs"},
        "collections[0].table: give either dsn + table or sources, not both",
    ),
    ({"table": "docs"}, "collections[0].dsn: is required, or list the tables under sources"),
    ({"sources": [ONE, {"table": "docs"}]}, "collections[0].sources[1].dsn: is required"),
    ({"sources": [{**ONE, "colour": "red"}]}, "collections[0].sources[0].colour: unknown key"),
    (
        {"sources": [{**ONE, "name": "a"}, {**ONE, "name": "a"}]},
        "collections[0].sources: source names must be unique; repeated: a",
    ),
    (
        {"sources": [{**ONE, "table": "s.docs", "schema": "s"}]},
        "collections[0].sources[0]: give the schema once: in schema or in table, not both",
    ),
    (
        {"sources": [{**ONE, "dsn": "postgresql://ro:secret@db0/app"}]},
        "collections[0].sources[0].dsn: holds a password",
    ),
    (
        {"sources": [ONE], "query_log": {"table": "log"}},
        "collections[0].query_log.dsn: is required with several sources",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_SOURCES, ids=[e for _, e in BAD_SOURCES])
def test_several_sources_config_errors_name_the_key(raw: dict, expected: str) -> None:  # type: ignore[type-arg]
    problems = _problems(raw)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_two_sources_and_a_schema_are_valid() -> None:
    two = [ONE, {"dsn": "postgresql://ro@db1/app", "table": "docs", "schema": "My S"}]
    collection = settings_from_dict({"collections": [{"name": "docs", "sources": two}]}, env={}).collections[
        0
    ]
    assert [s.name for s in collection.sources] == ["0", "1"]
    assert [one.table for _, one in collection.per_source()] == ["docs", '"My S"."docs"']
    assert collection.urls()[:2] == ["postgresql://ro@db0/app", "postgresql://ro@db1/app"]


def test_env_overrides_reach_a_source_by_name_and_the_single_form_is_refused_beside_sources() -> None:
    raw = {"name": "docs", "sources": [{"name": "shard1", "dsn": "postgresql://ro@db1/app", "table": "docs"}]}
    env = {"DRIFTWATCH_COLLECTIONS__DOCS__SOURCES__SHARD1__DSN": "postgresql://ro:pw@db9/app"}
    collection = settings_from_dict({"collections": [raw]}, env=env).collections[0]
    assert collection.sources[0].dsn == "postgresql://ro:pw@db9/app" and collection.dsn is None
    assert collection.per_source()[0][1].dsn == "postgresql://ro:pw@db9/app"
    with pytest.raises(ConfigError) as refused:
        settings_from_dict(
            {"collections": [raw]}, env={"DRIFTWATCH_COLLECTIONS__DOCS__DSN": "postgresql://x/app"}
        )
    assert "collections[0].dsn: give either dsn + table or sources, not both" in str(refused.value)
    assert "DRIFTWATCH_COLLECTIONS__DOCS__DSN" in str(refused.value)


def test_a_partial_cycle_holds_back_what_reads_rows_and_keeps_the_query_log_and_the_canary() -> None:
    from driftwatch.cycle import held_back
    from driftwatch.detect.detectors import DriftResult

    fired = {
        name: DriftResult(name, 0.9, 0.1, 1e-6, {})
        for name in ("centroid_distance", "arrivals_spatial_kl", "model_version", "click_rate", "score_psi")
    }
    fired["embedding_canary"] = DriftResult("embedding_canary", 0.5, 0.0, None, {})
    kept = {r.detector: r for r in held_back(list(fired.values()), "source s2 (docs) is down")}
    assert {n for n, r in kept.items() if r.drifted} == {"click_rate", "score_psi", "embedding_canary"}
    for name in ("centroid_distance", "arrivals_spatial_kl", "model_version"):
        details = kept[name].details
        assert kept[name].value is None and details["insufficient"] == "source s2 (docs) is down"
        assert (details["partial_value"], details["partial_threshold"]) == (0.9, 0.1)
