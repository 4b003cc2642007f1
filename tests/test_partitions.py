"""Partitioned parents on real PostgreSQL + pgvector: sampled uniformly over all their rows
(range, list and sub-partitioned), each leaf's share as a simple random sample of the union
would give it; arrivals read leaf by leaf; and a partition detached and one attached
between cycles reported as notes in `check --json`, not as drift of the remaining rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from scipy import stats

from driftwatch.cli.main import cli
from driftwatch.config import CollectionSettings, settings_from_dict
from driftwatch.detect.observation import VectorSample
from driftwatch.pg import sampler
from driftwatch.pg.session import Sessions
from driftwatch.synthetic import Topics

DIM = 16


def settings(dsn: str, table: str, **extra: object) -> CollectionSettings:
    raw = {"name": "docs", "dsn": dsn, "table": table, "model_version_column": "model_version", **extra}
    return settings_from_dict({"collections": [raw]}, env={}).collections[0]


def sample(config: CollectionSettings, size: int, rng: np.random.Generator, **extra: object) -> VectorSample:
    """One sample on a connection of its own, as a cycle's first read."""
    with Sessions(config) as sessions:
        return sampler.sample_collection(sessions.store, config, size, rng, **extra)  # type: ignore[arg-type]


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def load(
    dsn: str, table: str, ids: np.ndarray, vectors: np.ndarray, tenants: list[str] | None = None
) -> None:
    """Rows into `table` (a parent routes each to its leaf) by binary COPY, then ANALYZE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            f"COPY {table} (id, tenant, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["int8", "text", "vector", "text"])
            for i, (row_id, vector) in enumerate(zip(ids.tolist(), vectors, strict=True)):
                cp.write_row((row_id, tenants[i] if tenants else "t", vector, "v1"))
        conn.execute(f"ANALYZE {table}")


def marked(rng: np.random.Generator, rows: int, marker: float) -> np.ndarray:
    """Random vectors whose first coordinate names the leaf they were written to."""
    vectors = rng.standard_normal((rows, DIM)).astype(np.float32)
    vectors[:, 0] = marker
    return vectors


def parent_sql(table: str, by: str) -> str:
    return (
        f"CREATE TABLE {table} (id bigint, tenant text, embedding vector({DIM}), model_version text, "
        f"created_at timestamptz DEFAULT now()) PARTITION BY {by}"
    )


def share_test(samples: list[VectorSample], rows: dict[str, int]) -> tuple[np.ndarray, float]:
    """(rows drawn per leaf over all samples, chi-square p-value against the leaves' row shares)."""
    names = sorted(rows)
    drawn = np.array([sum(s.partitions[name]["sampled"] for s in samples) for name in names], dtype=float)
    expected = np.array([rows[name] for name in names], dtype=float)
    expected = expected / expected.sum() * drawn.sum()
    live = expected > 0
    assert np.all(drawn[~live] == 0)
    return drawn, float(stats.chisquare(drawn[live], expected[live]).pvalue)


def test_range_partitions_share_the_sample_in_proportion_to_their_rows(pg_db: str) -> None:
    rng = np.random.default_rng(1)
    sizes = {"public.docs_r0": 20_000, "public.docs_r1": 4_000, "public.docs_r2": 1_000, "public.docs_r3": 0}
    execute(
        pg_db,
        parent_sql("docs", "RANGE (id)"),
        "CREATE TABLE docs_r0 PARTITION OF docs FOR VALUES FROM (0) TO (100000)",
        "CREATE TABLE docs_r1 PARTITION OF docs FOR VALUES FROM (100000) TO (200000)",
        "CREATE TABLE docs_r2 PARTITION OF docs FOR VALUES FROM (200000) TO (300000)",
        "CREATE TABLE docs_r3 PARTITION OF docs FOR VALUES FROM (300000) TO (400000)",
    )
    for leaf, rows in enumerate(sizes.values()):
        if rows:
            load(pg_db, "docs", leaf * 100_000 + np.arange(rows), marked(rng, rows, float(leaf)))
    config = settings(pg_db, "docs")
    draws = [sample(config, 100, np.random.default_rng(10 + i), with_ids=True) for i in range(20)]
    for drawn in draws:
        assert (
            drawn.method == "partitioned" and drawn.rows_sampled == 100 and drawn.vectors.shape == (100, DIM)
        )
        assert set(drawn.partitions) == set(sizes)
        assert {k: v["rows_estimate"] for k, v in drawn.partitions.items()} == sizes
        # Each vector is the one stored under its id, in its own leaf.
        leaf_of_id = np.asarray(drawn.ids, dtype=np.int64) // 100_000
        assert np.array_equal(drawn.vectors[:, 0], leaf_of_id.astype(np.float32))
        assert len(set(drawn.ids or [])) == 100
    counts, p_value = share_test(draws, sizes)
    assert p_value > 1e-3, (counts, p_value)
    # Shares vary from draw to draw as in a simple random sample of the union; a fixed
    # proportional split (80/16/4 every time) would not.
    smallest = [d.partitions["public.docs_r2"]["sampled"] for d in draws]
    assert len(set(smallest)) > 2, smallest


def test_a_leaf_grown_since_its_last_analyze_is_not_under_drawn(pg_db: str) -> None:
    rng = np.random.default_rng(6)
    execute(pg_db, parent_sql("docs", "RANGE (id)"))
    for leaf, bounds in (("docs_a", "FROM (0) TO (100000)"), ("docs_b", "FROM (100000) TO (200000)")):
        execute(
            pg_db,
            f"CREATE TABLE {leaf} PARTITION OF docs FOR VALUES {bounds} WITH (autovacuum_enabled = off)",
        )
    load(pg_db, "docs", np.arange(8_000), marked(rng, 8_000, 0.0))
    load(pg_db, "docs", 100_000 + np.arange(8_000), marked(rng, 8_000, 1.0))  # ANALYZEd at 8,000 each
    with psycopg.connect(pg_db, autocommit=True) as conn:  # docs_b triples, unanalyzed
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docs_b (id, tenant, embedding, model_version) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["int8", "text", "vector", "text"])
            for i, vector in enumerate(marked(rng, 16_000, 1.0)):
                cp.write_row((110_000 + i, "t", vector, "v1"))
    draws = [sample(settings(pg_db, "docs"), 200, np.random.default_rng(30 + i)) for i in range(15)]
    # Estimated by pages now (how full the last pages of each load are makes it approximate).
    estimates = [d.partitions["public.docs_b"]["rows_estimate"] for d in draws]
    assert all(abs(e - 24_000) < 0.15 * 24_000 for e in estimates), estimates
    share = sum(d.partitions["public.docs_b"]["sampled"] for d in draws) / (200 * len(draws))
    assert 0.70 < share < 0.82, share  # 0.75 of the rows; reltuples alone (8,000 each) would give 0.5


def test_list_partitions_with_sub_partitions_and_quoted_names(pg_db: str) -> None:
    rng = np.random.default_rng(2)
    execute(
        pg_db,
        "CREATE SCHEMA tenants",
        parent_sql("docs", "LIST (tenant)"),
        # tenant a is itself partitioned by id range; a leaf in another schema, one with an odd name
        "CREATE TABLE tenants.docs_a PARTITION OF docs FOR VALUES IN ('a') PARTITION BY RANGE (id)",
        "CREATE TABLE tenants.docs_a_low PARTITION OF tenants.docs_a FOR VALUES FROM (0) TO (50000)",
        'CREATE TABLE tenants."Docs A; high" PARTITION OF tenants.docs_a FOR VALUES FROM (50000) TO (100000)',
        "CREATE TABLE docs_bc PARTITION OF docs FOR VALUES IN ('b', 'c')",
        "CREATE TABLE docs_rest PARTITION OF docs DEFAULT",
    )
    plan = [("a", 0, 20_000, 0.0), ("a", 50_000, 4_000, 1.0), ("b", 100_000, 3_000, 2.0),
            ("c", 110_000, 3_000, 2.0), ("z", 200_000, 500, 3.0)]  # fmt: skip
    for tenant, first, rows, marker in plan:
        load(pg_db, "docs", first + np.arange(rows), marked(rng, rows, marker), [tenant] * rows)
    sizes = {"tenants.docs_a_low": 20_000, 'tenants.Docs A; high': 4_000, "public.docs_bc": 6_000,
             "public.docs_rest": 500}  # fmt: skip
    config = settings(pg_db, "docs")
    draws = [sample(config, 120, np.random.default_rng(20 + i)) for i in range(25)]
    for drawn in draws:
        assert set(drawn.partitions) == set(sizes) and drawn.rows_sampled == 120
        per_marker = np.bincount(drawn.vectors[:, 0].astype(int), minlength=4)
        names = ["tenants.docs_a_low", "tenants.Docs A; high", "public.docs_bc", "public.docs_rest"]
        assert per_marker.tolist() == [drawn.partitions[n]["sampled"] for n in names]
    counts, p_value = share_test(draws, sizes)
    assert p_value > 1e-3, (counts, p_value)
    # A parent small enough is read whole, every leaf of it.
    whole = sample(config, 20_000, np.random.default_rng(3))
    assert whole.method == "full" and whole.rows_sampled == sum(sizes.values())


def test_arrivals_are_read_per_leaf(pg_db: str) -> None:
    rng = np.random.default_rng(4)
    execute(
        pg_db,
        parent_sql("docs", "RANGE (id)"),
        "CREATE TABLE docs_old PARTITION OF docs FOR VALUES FROM (0) TO (100000)",
        "CREATE TABLE docs_new PARTITION OF docs FOR VALUES FROM (100000) TO (200000)",
    )
    load(pg_db, "docs", np.arange(5_000), marked(rng, 5_000, 0.0))
    load(pg_db, "docs", 100_000 + np.arange(900), marked(rng, 900, 1.0))
    load(pg_db, "docs", 5_000 + np.arange(300), marked(rng, 300, 0.0))  # arrivals in both leaves
    load(pg_db, "docs", 101_000 + np.arange(600), marked(rng, 600, 1.0))
    config = settings(pg_db, "docs", arrival_column="id")
    with Sessions(config) as sessions:
        # Past id 4999: the last 300 rows of docs_old and every row of docs_new.
        arrivals = sampler.sample_arrivals(sessions.store, config, "4999", 10_000, DIM, rng)
    assert arrivals.total == 300 + 900 + 600
    assert arrivals.sample.partitions == {
        "public.docs_old": {"arrivals": 300, "sampled": 300},
        "public.docs_new": {"arrivals": 1500, "sampled": 1500},
    }
    with Sessions(config) as sessions:
        some = sampler.sample_arrivals(sessions.store, config, "4999", 600, DIM, rng)
    got = {leaf: counts["sampled"] for leaf, counts in some.sample.partitions.items()}
    assert sum(got.values()) == 600 and 40 <= got["public.docs_old"] <= 160  # 100 expected
    assert int(np.sum(some.sample.vectors[:, 0] == 0.0)) == got["public.docs_old"]


def test_a_detached_and_an_attached_partition_are_notes_not_drift(pg_db: str, tmp_path: Path) -> None:
    """Time partitions of one steady stream: the oldest month rolls off (DETACH), a new one
    is attached. The cycle samples the leaves present now, says what changed, and the
    remaining rows (the same distribution as before) raise no alarm."""
    rng = np.random.default_rng(5)
    topics = Topics.make(rng, 6, DIM)
    months = ["2026_01", "2026_02", "2026_03"]
    execute(pg_db, parent_sql("docs", "RANGE (id)"))
    for i, month in enumerate([*months, "2026_04"]):
        bounds = f"FROM ({i * 100_000}) TO ({(i + 1) * 100_000})"
        if month != "2026_04":
            execute(pg_db, f"CREATE TABLE docs_{month} PARTITION OF docs FOR VALUES {bounds}")
        else:  # next month's table is filled on its own, then attached
            execute(pg_db, f"CREATE TABLE docs_{month} (LIKE docs INCLUDING DEFAULTS)")
        table = "docs" if month != "2026_04" else f"docs_{month}"
        load(pg_db, table, i * 100_000 + np.arange(2_500), topics.sample(rng, 2_500)[0])
    execute(pg_db, "CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[[collections]]\nname = "docs"\n'
        f'dsn = "{pg_db}"\ntable = "docs"\nmodel_version_column = "model_version"\nsample_size = 400\n'
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    captured = runner.invoke(cli, ["--config", str(config), "baseline", "capture"])
    assert captured.exit_code == 0, captured.output

    def check() -> dict:  # type: ignore[type-arg]
        result = runner.invoke(cli, ["--config", str(config), "check", "--json"])
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.stdout)["collections"]["docs"]

    before = check()
    assert before["status"] == "ok", before
    assert set(before["partitions"]) == {f"public.docs_{m}" for m in months}
    assert sum(leaf["sampled"] for leaf in before["partitions"].values()) == 400
    assert not any("partitions" in note for note in before.get("notes", []))

    execute(
        pg_db,
        "ALTER TABLE docs DETACH PARTITION docs_2026_01",
        "ALTER TABLE docs ATTACH PARTITION docs_2026_04 FOR VALUES FROM (300000) TO (400000)",
    )
    after = check()
    assert set(after["partitions"]) == {"public.docs_2026_02", "public.docs_2026_03", "public.docs_2026_04"}
    assert sum(leaf["sampled"] for leaf in after["partitions"].values()) == 400
    notes = " | ".join(after["notes"])
    assert "detached since the baseline: public.docs_2026_01 (~2,500 rows then)" in notes, notes
    assert "attached since the baseline: public.docs_2026_04 (~2,500 rows)" in notes, notes
    assert after["status"] == "ok", {k: v for k, v in after["detectors"].items() if v["drifted"]}
