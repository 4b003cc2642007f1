"""The sampler against real PostgreSQL + pgvector: uniform (design effect <= 1.5 on an
insertion-ordered table), cost that grows with the sample and not the table, vectors
equal to the stored ones bit for bit, and clear errors on bad tables."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from driftwatch.config import CollectionSettings
from driftwatch.detect.observation import VectorSample
from driftwatch.errors import SourceError
from driftwatch.pg import codecs, sampler
from driftwatch.pg.session import Sessions, connect

from helpers import create_vector_table


def settings(dsn: str, table: str, **extra: object) -> CollectionSettings:
    return CollectionSettings(name="t", dsn=dsn, table=table, model_version_column="model_version", **extra)


def sample_collection(
    config: CollectionSettings, size: int, rng: np.random.Generator, **extra
) -> VectorSample:  # type: ignore[no-untyped-def]
    """One sample on a connection of its own, as a cycle's first read."""
    with Sessions(config) as sessions:
        return sampler.sample_collection(sessions.store, config, size, rng, **extra)


def ordered_table(dsn: str, table: str, rows: int, dim: int, seed: int = 0) -> None:
    """Insertion-ordered: the second half of the rows (by insert time) is a different group."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    vectors[rows // 2 :, 0] = 10.0  # group marker: first coordinate 10 for the newer half
    vectors[: rows // 2, 0] = -10.0
    create_vector_table(dsn, table, vectors)


def heap_blocks(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) FROM pg_statio_user_tables "
            "WHERE relname = %s",
            (table,),
        ).fetchone()
    return int(row[0])


def blocks_read_by(dsn: str, table: str, action) -> int:  # type: ignore[no-untyped-def]
    """Heap blocks (read + hit) `action` touched, from PostgreSQL's own statistics."""
    before = heap_blocks(dsn, table)
    action()
    # The sampler's backend reports its counters when it exits; wait for them to land.
    deadline = time.monotonic() + 10
    after = heap_blocks(dsn, table)
    while after == before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = heap_blocks(dsn, table)
    time.sleep(0.2)
    return heap_blocks(dsn, table) - before


@pytest.mark.parametrize(("dim", "method"), [(96, "tid"), (8, "bernoulli")])
def test_design_effect_on_insertion_ordered_table(pg_db: str, dim: int, method: str) -> None:
    """Wide rows: the sample is a small share of the heap's pages, so tuple-id probing;
    narrow rows: probes would touch much of the heap, so one BERNOULLI pass."""
    rows, size, repeats = 60_000, 300, 120
    ordered_table(pg_db, "ordered", rows, dim=dim)
    rng = np.random.default_rng(42)
    shares = []
    for _ in range(repeats):
        sample = sample_collection(settings(pg_db, "ordered"), size, rng)
        assert sample.method == method and sample.vectors.shape == (size, dim)
        shares.append(float(np.mean(sample.vectors[:, 0] > 0)))
    srs_variance = 0.25 / size * (1 - size / rows)  # a simple random sample's variance of the share
    design_effect = float(np.var(shares, ddof=1)) / srs_variance
    assert abs(np.mean(shares) - 0.5) < 0.02
    assert design_effect <= 1.5, design_effect

    # The same measurement has the power to fail: page-clustered sampling is far worse.
    with psycopg.connect(pg_db) as conn:
        system_shares = [
            conn.execute(
                "SELECT avg(((embedding::real[])[1] > 0)::int) FROM ordered "
                "TABLESAMPLE SYSTEM (%s) REPEATABLE (%s)",
                (100.0 * size / rows, seed),
            ).fetchone()[0]
            for seed in range(40)
        ]
    drawn = np.asarray([x for x in system_shares if x is not None], dtype=float)  # some draws hit no page
    system_effect = float(np.var(drawn, ddof=1)) / srs_variance
    assert system_effect > 3 * design_effect


def test_pages_grow_with_the_sample_not_the_table(pg_db: str) -> None:
    size = 400
    ordered_table(pg_db, "small_t", 20_000, dim=32, seed=1)
    ordered_table(pg_db, "big_t", 200_000, dim=32, seed=2)
    rng = np.random.default_rng(0)
    small = blocks_read_by(pg_db, "small_t", lambda: sample_collection(settings(pg_db, "small_t"), size, rng))
    big = blocks_read_by(pg_db, "big_t", lambda: sample_collection(settings(pg_db, "big_t"), size, rng))
    double = blocks_read_by(
        pg_db, "big_t", lambda: sample_collection(settings(pg_db, "big_t"), 2 * size, rng)
    )
    with psycopg.connect(pg_db) as conn:
        big_pages = conn.execute("SELECT pg_relation_size('big_t') / 8192").fetchone()[0]
    assert big < 0.5 * big_pages, (big, big_pages)  # far from a scan of the big table
    assert big < 2.0 * small, (small, big)  # a 10x larger table costs about the same
    assert 1.3 * big < double < 3.0 * big, (big, double)  # twice the sample costs about twice


def test_sampled_vectors_equal_stored_ones_bit_for_bit(pg_db: str) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5000, 48)).astype(np.float32)
    create_vector_table(pg_db, "exact", vectors)
    sample = sample_collection(settings(pg_db, "exact"), 500, rng, with_ids=True)
    assert sample.ids is not None and len(sample.ids) == 500 == len(set(sample.ids))
    expected = vectors[[int(i) for i in sample.ids]]
    assert np.array_equal(sample.vectors, expected)


def test_small_table_is_read_whole(pg_db: str) -> None:
    vectors = np.random.default_rng(4).standard_normal((150, 16)).astype(np.float32)
    create_vector_table(pg_db, "tiny", vectors, versions=["a"] * 100 + ["b"] * 50)
    sample = sample_collection(settings(pg_db, "tiny"), 100, np.random.default_rng(0), with_ids=True)
    assert sample.method == "full" and sample.vectors.shape == (150, 16)
    assert sample.versions == {"a": 100, "b": 50}
    assert np.array_equal(sample.vectors, vectors[[int(i) for i in sample.ids or []]])


def test_halfvec_column(pg_db: str) -> None:
    vectors = np.random.default_rng(5).standard_normal((300, 12)).astype(np.float16)
    create_vector_table(pg_db, "half", vectors, kind="halfvec(12)")
    sample = sample_collection(settings(pg_db, "half"), 100, np.random.default_rng(0), with_ids=True)
    assert sample.vectors.dtype == np.float32
    assert np.array_equal(sample.vectors, vectors[[int(i) for i in sample.ids or []]].astype(np.float32))


def test_nulls_and_mixed_dimensions_are_counted_not_returned(pg_db: str) -> None:
    rng = np.random.default_rng(6)
    rows: list[np.ndarray | None] = [rng.standard_normal(8).astype(np.float32) for _ in range(400)]
    for i in range(0, 400, 10):
        rows[i] = None  # 40 NULL vectors
    for i in range(5, 400, 20):
        rows[i] = rng.standard_normal(4).astype(np.float32)  # 20 of another model's dimension
    create_vector_table(pg_db, "mixed", rows, kind="vector")
    sample = sample_collection(settings(pg_db, "mixed"), 250, np.random.default_rng(0))
    assert sample.method == "full"
    assert sample.dim == 8 and sample.vectors.shape == (340, 8)
    assert sample.null_vectors == 40 and sample.wrong_dim == 20
    assert sample.dims_seen == {8: 340, 4: 20}
    at_dim_4 = sample_collection(settings(pg_db, "mixed"), 250, np.random.default_rng(0), expected_dim=4)
    assert at_dim_4.vectors.shape == (20, 4) and at_dim_4.wrong_dim == 340


@pytest.mark.parametrize(("dim", "method"), [(96, "tid"), (8, "bernoulli")])
def test_nulls_and_other_dimensions_on_the_drawing_paths(pg_db: str, dim: int, method: str) -> None:
    """Vectors read while drawing (they live in the heap pages): NULL and other-dimension
    rows are counted in the sample's share and the vectors are the stored ones."""
    rng = np.random.default_rng(8)
    rows: list[np.ndarray | None] = [rng.standard_normal(dim).astype(np.float32) for _ in range(20_000)]
    for i in range(0, 20_000, 10):
        rows[i] = None  # 10% NULL
    for i in range(5, 20_000, 25):
        rows[i] = rng.standard_normal(dim // 2).astype(np.float32)  # 4% of another dimension
    create_vector_table(pg_db, "drawn", rows, kind="vector")
    sample = sample_collection(settings(pg_db, "drawn"), 200, rng, expected_dim=dim, with_ids=True)
    assert sample.method == method and sample.rows_sampled == 200
    assert 5 <= sample.null_vectors <= 40 and 1 <= sample.wrong_dim <= 20  # 20 and 8 expected
    assert sample.vectors.shape == (200 - sample.null_vectors - sample.wrong_dim, dim)
    ids = [int(i) for i in sample.ids or []]
    assert ids == sorted(ids) and all(rows[i] is not None and len(rows[i]) == dim for i in ids)  # type: ignore[arg-type]
    assert np.array_equal(sample.vectors, np.stack([rows[i] for i in ids]))  # type: ignore[misc]


def test_nulls_and_other_dimensions_among_toasted_rows(pg_db: str) -> None:
    """TOASTed vectors (600-d: out of line): the draw reads tuple ids, one COPY then puts
    each chosen vector straight into its row of the sample; the NULL and other-dimension
    rows among the chosen leave no gap and no misplaced row."""
    rng = np.random.default_rng(9)
    rows: list[np.ndarray | None] = [rng.standard_normal(600).astype(np.float32) for _ in range(3_000)]
    for i in range(0, 3_000, 7):
        rows[i] = None
    for i in range(3, 3_000, 11):
        rows[i] = rng.standard_normal(300).astype(np.float32)
    create_vector_table(pg_db, "toasted", rows, kind="vector")
    sample = sample_collection(settings(pg_db, "toasted"), 500, rng, expected_dim=600, with_ids=True)
    assert sample.method != "full" and sample.rows_sampled == 500
    assert sample.null_vectors >= 30 and sample.wrong_dim >= 20  # 71 and 45 expected
    assert sample.vectors.shape == (500 - sample.null_vectors - sample.wrong_dim, 600)
    ids = [int(i) for i in sample.ids or []]
    assert np.array_equal(sample.vectors, np.stack([rows[i] for i in ids]))  # type: ignore[misc]


def test_tid_vector_stream_decodes_alike_in_any_pieces(pg_db: str) -> None:
    """The (ctid, vector) COPY is decoded batch by batch: rows of the sample's dimension,
    NULL and other-dimension rows split anywhere between two batches give the same rows
    as the stream decoded whole, and a cut-off stream is a clear error."""
    rng = np.random.default_rng(12)
    rows: list[np.ndarray | None] = [rng.standard_normal(8).astype(np.float32) for _ in range(300)]
    for i in range(3, 300, 17):
        rows[i] = None
    for i in range(5, 300, 23):
        rows[i] = rng.standard_normal(5).astype(np.float32)
    rows[-1] = None  # the last row before the trailer is an odd one
    create_vector_table(pg_db, "streamed", rows, kind="vector")
    query = "COPY (SELECT ctid, embedding FROM streamed ORDER BY id) TO STDOUT (FORMAT BINARY)"
    with psycopg.connect(pg_db) as conn, conn.cursor() as cur, cur.copy(query) as copy:
        stream = b"".join(bytes(chunk) for chunk in copy)
    want_dims = [-1 if r is None else len(r) for r in rows]
    want = np.stack([r for r in rows if r is not None and len(r) == 8])
    for piece in (1, 7, 61, 1000, len(stream)):
        decoder = codecs._TidVectorDecoder(8)
        parts = [
            decoder.feed(stream[at : at + piece], final=at + piece >= len(stream))
            for at in range(0, len(stream), piece)
        ]
        tids = np.concatenate([p.tids for p in parts])
        assert np.concatenate([p.dims for p in parts]).tolist() == want_dims
        assert len(np.unique(tids)) == 300
        assert np.array_equal(np.concatenate([r for p in parts for r in p.runs]).astype(np.float32), want)
    with pytest.raises(SourceError, match="to its end"):
        codecs._TidVectorDecoder(8).feed(stream[:-1], final=True)


def test_empty_table(pg_db: str) -> None:
    create_vector_table(pg_db, "empty", np.empty((0, 8), dtype=np.float32))
    sample = sample_collection(settings(pg_db, "empty"), 100, np.random.default_rng(0))
    assert sample.vectors.shape[0] == 0 and sample.rows_sampled == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"table": "nope"}, "table nope does not exist"),
        ({"vector_column": "missing"}, "vector_column: column 'missing' does not exist"),
        ({"vector_column": "content"}, "column 'content' in cols is of type text, not vector or halfvec"),
        (
            {"id_column": 'x"; DROP TABLE cols; --'},
            "id_column: column 'x\"; DROP TABLE cols; --' does not exist",
        ),
        ({"table": "cols; DROP TABLE cols; --"}, "table cols; DROP TABLE cols; -- does not exist"),
        ({"table": "cols_view"}, "cols_view is a view"),
    ],
)
def test_bad_tables_and_hostile_names_get_clear_errors(pg_db: str, overrides: dict, message: str) -> None:
    create_vector_table(pg_db, "cols", np.ones((10, 4), dtype=np.float32))
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW cols_view AS SELECT * FROM cols")
    config = settings(pg_db, "cols").model_copy(update=overrides)
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace('"', '"')):
        sample_collection(config, 100, np.random.default_rng(0))
    with psycopg.connect(pg_db) as conn:  # and nothing was dropped
        assert conn.execute("SELECT count(*) FROM cols").fetchone()[0] == 10


def test_connections_are_read_only(pg_db: str) -> None:
    create_vector_table(pg_db, "ro", np.ones((10, 4), dtype=np.float32))
    conn = connect(pg_db, statement_timeout=5)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("DELETE FROM ro")
        assert conn.execute("SELECT current_setting('application_name')").fetchone()[0] == "driftwatch"
    finally:
        conn.close()
    with psycopg.connect(pg_db) as check:
        register_vector(check)
        assert check.execute("SELECT count(*) FROM ro").fetchone()[0] == 10


def test_statement_timeout_is_a_clear_error(pg_db: str) -> None:
    """A store that does not answer (here: a table locked by a migration) ends in a clear error."""
    create_vector_table(pg_db, "locked", np.ones((10, 4), dtype=np.float32))
    with psycopg.connect(pg_db) as blocker:
        blocker.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"locked: .*statement_timeout \(0.5s\)"):
            sample_collection(settings(pg_db, "locked", statement_timeout=0.5), 100, np.random.default_rng(0))
        assert time.monotonic() - started < 5
        blocker.rollback()
