"""Drift-Adapter: the maps on synthetic model pushes (pure numpy), then end to end on
real PostgreSQL + pgvector, with every reported recall recomputed here by exact search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from pgvector.psycopg import register_vector
from psycopg import sql
from sqlalchemy import Engine

from driftwatch import adapter, adapter_fit, adapter_train
from driftwatch.adapter import fit_affine, fit_procrustes, mean_cosine
from driftwatch.adapter_fit import Pairs, fit_and_report
from driftwatch.cli.main import cli
from driftwatch.config import CollectionSettings, QueryLogSettings
from driftwatch.detect.observation import ReferenceQuery, SuiteRun
from driftwatch.errors import ConfigError, PairsError, SourceError
from driftwatch.pg import suite
from driftwatch.pg.session import Sessions
from driftwatch.store import repository
from driftwatch.synthetic import Topics, exact_neighbours, queries_near, rotation, unit

from helpers import EmbeddingService, run_cli

DIM = 32
K = 10


def read_pairs(config: CollectionSettings, *args, **extra) -> Pairs:  # type: ignore[no-untyped-def]
    with Sessions(config) as sessions:
        return adapter_fit.read_pairs(sessions.store, config, *args, **extra)


def run_queries(config: CollectionSettings, vectors: np.ndarray, k: int, **extra) -> SuiteRun:  # type: ignore[no-untyped-def]
    with Sessions(config) as sessions:
        return suite.run_queries(sessions.store, config, vectors, k, **extra)


def corpus(seed: int, n: int = 3000, dim: int = DIM) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    docs, _ = Topics.make(rng, topics=20, dim=dim).sample(rng, n)
    return rng, docs


def push(rng: np.random.Generator, rows: np.ndarray, turn: np.ndarray, noise: float) -> np.ndarray:
    """A model push: the same content in a rotated space, plus the new model's own noise."""
    moved = rows @ turn
    return unit(moved + rng.standard_normal(moved.shape) * noise / np.sqrt(moved.shape[1]))


def semi_orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) with orthonormal columns (rows >= cols) or orthonormal rows."""
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    return (q if rows >= cols else q.T).astype(np.float32)


# ---------------------------------------------------------------- the math


def test_procrustes_recovers_a_rotation_to_a_wholly_new_space() -> None:
    rng, old = corpus(1, n=1500)
    turn = rotation(rng, DIM, np.pi / 2)  # every plane turned a right angle: nothing in common
    new = push(rng, old, turn, noise=0.02)
    fitted = fit_procrustes(new[:1200], old[:1200], from_version="v1", to_version="v2")
    assert mean_cosine(new[1200:], old[1200:]) < 0.1  # unmapped, the spaces are unrelated
    assert mean_cosine(fitted.apply(new[1200:]), old[1200:]) > 0.999
    assert np.abs(fitted.W - turn.T).max() < 0.01  # old = new R^T: the inverse rotation itself
    assert fitted.kind == "procrustes"
    assert np.allclose(fitted.b, old[:1200].mean(axis=0), atol=1e-6)  # centred: the old mean added back
    assert np.allclose(fitted.mean_new, new[:1200].mean(axis=0), atol=1e-6)
    scale = np.linalg.norm(fitted.W[:, 0])
    assert 0.9 < scale <= 1 and np.allclose(fitted.W.T @ fitted.W, scale**2 * np.eye(DIM), atol=1e-5)


@pytest.mark.parametrize(("dim_new", "dim_old"), [(48, 32), (32, 48)])
def test_procrustes_across_a_change_of_dimension(dim_new: int, dim_old: int) -> None:
    rng, content = corpus(2, n=1500, dim=min(dim_new, dim_old))
    # Both models see the same 32-d content, each embedded in its own space by a random
    # semi-orthogonal map (the larger one has directions the other never uses).
    d = content.shape[1]
    to_new = semi_orthogonal(rng, d, dim_new) if dim_new > d else np.eye(d)
    to_old = semi_orthogonal(rng, d, dim_old) if dim_old > d else np.eye(d)
    old = unit(content @ to_old)
    new = push(rng, content @ to_new, rotation(rng, dim_new, np.pi / 2), noise=0.05)
    fitted = fit_procrustes(new[:1200], old[:1200])
    assert fitted.W.shape == (dim_new, dim_old)
    gram = fitted.W.T @ fitted.W if dim_new >= dim_old else fitted.W @ fitted.W.T
    scale = np.sqrt(gram[0, 0])  # a scaled semi-orthogonal map
    assert np.allclose(gram, scale**2 * np.eye(min(dim_new, dim_old)), atol=1e-5)
    assert mean_cosine(fitted.apply(new[1200:]), old[1200:]) > 0.99
    assert fitted.apply(new[0]).shape == (dim_old,)


def test_retrieval_scores_rank_each_query_against_every_candidate() -> None:
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    queries = np.array([[1.0, 0.1], [0.6, 0.8], [-1.0, -0.1]])
    # query 0 belongs with candidate 1: candidates 0 and 2 score higher, so rank 3
    rr, hit = adapter.retrieval_scores(queries, candidates, np.array([1, 2, 3]), "cosine", k=2)
    assert np.allclose(rr, [1 / 3, 1, 1]) and hit.tolist() == [False, True, True]
    rr_l2, _ = adapter.retrieval_scores(queries * 3, candidates, np.array([0, 0, 3]), "l2")
    assert np.allclose(rr_l2, [1, 1 / 3, 1])  # (1.8, 2.4) is nearer (0.7, 0.7) and (0, 1) than (1, 0)


def test_affine_beats_procrustes_when_the_push_stretches_the_space() -> None:
    rng, old = corpus(3)
    turned = old @ rotation(rng, DIM, np.pi / 2)
    # Each direction stretched by its own factor (0.3 to 3): linear, but not a rotation.
    new = push(rng, unit(turned * np.geomspace(0.3, 3, DIM)), np.eye(DIM), noise=0.05)
    train, test = slice(0, 2400), slice(2400, None)
    rotated = fit_procrustes(new[train], old[train])
    affine = fit_affine(new[train], old[train])
    rotated_cos = mean_cosine(rotated.apply(new[test]), old[test])
    affine_cos = mean_cosine(affine.apply(new[test]), old[test])
    assert affine_cos > 0.95
    assert affine_cos > rotated_cos + 0.03, (affine_cos, rotated_cos)
    assert affine.ridge is not None and affine.ridge in adapter.RIDGE_GRID  # chosen on held-out pairs
    low = fit_affine(new[train], old[train], rank=8, ridge=0.01)
    assert np.linalg.matrix_rank(low.W, tol=1e-4) == 8 and low.rank == 8
    assert mean_cosine(low.apply(new[test]), old[test]) < affine_cos  # fewer directions, worse fit


def test_mlp_recovers_what_a_linear_map_cannot_and_auto_picks_it_only_then() -> None:
    """A push through a random one-hidden-layer ReLU network: no linear map undoes it, the
    contrastively trained residual MLP does much better, and `auto` sees that on held-out
    pairs; on a plain rotation `auto` keeps Procrustes (the one-standard-error rule)."""
    rng, old = corpus(13, n=4000)
    lift, mix = rng.standard_normal((DIM, 64)), rng.standard_normal((64, DIM))
    new = push(rng, unit(np.maximum(3 * old @ lift - 1, 0) @ mix), np.eye(DIM), noise=0.05)
    train, judge = np.arange(3000), np.arange(3000, 4000)

    def held_out(fitted: adapter.Adapter) -> tuple[float, float]:
        rr, hit = adapter.retrieval_scores(fitted.apply(new[judge]), old, judge, "cosine")
        return float(rr.mean()), float(hit.mean())

    affine = held_out(fit_affine(new[train], old[train]))
    mlp = adapter.fit("mlp", new[train], old[train], rng=np.random.default_rng(0))
    assert mlp.kind == "mlp" and mlp.mlp is not None and mlp.mlp[2].any()  # the residual trained
    assert held_out(mlp)[1] > affine[1] + 0.08, (held_out(mlp), affine)  # recall@10 of own document
    auto = adapter.fit("auto", new[train], old[train], rng=np.random.default_rng(0))
    assert auto.kind == "mlp" and auto.selection is not None and set(auto.selection) == set(adapter.KINDS)
    assert auto.selection["mlp"] > auto.selection["affine"] > auto.selection["procrustes"]

    rng, old = corpus(14, n=3000)
    new = push(rng, old, rotation(rng, DIM, np.pi / 2), noise=0.05)
    assert adapter.fit("auto", new, old, rng=np.random.default_rng(0)).kind == "procrustes"
    with pytest.raises(ValueError, match="the mlp map is trained on cosine scores"):
        adapter.fit("mlp", new, old, metric="l2")
    # Too few pairs for the ridge map (66 at 32-d) but enough for the mlp started from Procrustes.
    assert set(adapter.fit("auto", new[:60], old[:60]).selection or ()) == {"procrustes", "mlp"}
    assert set(adapter.fit("auto", new[:45], old[:45]).selection or ()) == {"procrustes"}  # too few for more


def test_mlp_below_the_ridge_maps_floor_starts_from_procrustes() -> None:
    """With fewer pairs than the ridge map needs, the mlp trains from the Procrustes map (no
    ridge to choose), so `auto` can weigh it; on held-out pairs, where 96 training pairs
    overfit it, `auto` keeps Procrustes."""
    dim = 64
    rng, old = corpus(15, n=1120, dim=dim)
    lift, mix = rng.standard_normal((dim, 128)), rng.standard_normal((128, dim))
    new = push(rng, unit(np.maximum(3 * old @ lift - 1, 0) @ mix), np.eye(dim), noise=0.05)
    few, judge = np.arange(120), np.arange(120, 1120)
    assert adapter.minimum_pairs("mlp", dim) < len(few) < adapter.minimum_pairs("affine", dim)
    with pytest.raises(ValueError, match="too few pairs for affine"):
        fit_affine(new[few], old[few])
    mlp = adapter.fit("mlp", new[few], old[few], rng=np.random.default_rng(0))
    assert mlp.kind == "mlp" and mlp.ridge is None and mlp.mlp is not None  # the Procrustes start
    auto = adapter.fit("auto", new[few], old[few], rng=np.random.default_rng(0))
    assert set(auto.selection or ()) == {"procrustes", "mlp"} and auto.kind == "procrustes"
    mapped, turned = (
        adapter.retrieval_scores(m.apply(new[judge]), old, judge, "cosine")[0].mean() for m in (mlp, auto)
    )
    assert turned > mapped, (turned, mapped)  # auto's choice was the better map on unseen pairs
    with pytest.raises(ValueError, match=r"too few pairs for mlp: 70 pairs .* at least 81"):
        adapter.fit("mlp", new[:70], old[:70])


def test_mlp_loss_is_at_rest_at_the_old_vectors_themselves() -> None:
    """The contrastive targets are the old model's own similarities: a map that returns
    exactly the old vectors gets no gradient, even among near-duplicate documents (which a
    one-hot target would push apart); any other map does."""
    rng, old = corpus(16, n=256)
    old = old.astype(np.float32)
    params = {
        "W": np.eye(DIM, dtype=np.float32), "b": np.zeros(DIM, np.float32),
        "W1": rng.standard_normal((DIM, 8)).astype(np.float32), "b1": np.zeros(8, np.float32),
        "W2": np.zeros((8, DIM), np.float32),
    }  # fmt: skip
    assert (old @ old.T)[~np.eye(len(old), dtype=bool)].max() > 0.9  # near-duplicates in the batch
    at_rest = adapter_train._gradients(params, old, old)
    assert max(float(np.abs(g).max()) for g in at_rest.values()) < 1e-4
    params["W"] = rotation(rng, DIM, 0.3).astype(np.float32)
    assert float(np.abs(adapter_train._gradients(params, old, old)["W"]).max()) > 1e-2


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rng, old = corpus(4, n=600)
    new = push(rng, old, rotation(rng, DIM, np.pi / 2), noise=0.1)
    for fitted in (
        fit_procrustes(new, old, from_version="v1", to_version="v2"),
        fit_affine(new, old, rank=16),
        adapter.fit("mlp", new, old),
    ):
        path = fitted.save(tmp_path / f"{fitted.kind}.npz")
        with np.load(path, allow_pickle=False) as raw:  # no pickles: safe to load from anywhere
            extra = {"W1", "b1", "W2"} if fitted.kind == "mlp" else set()
            assert set(raw.files) == {"W", "b", "mean_new", "meta"} | extra
        loaded = adapter.load(path)
        queries = rng.standard_normal((50, DIM)).astype(np.float32)
        assert np.array_equal(loaded.apply(queries), fitted.apply(queries))
        assert loaded.apply(queries).dtype == np.float32
        assert np.allclose(np.linalg.norm(loaded.apply(queries), axis=1), 1, atol=1e-5)  # cosine: unit
        assert loaded.metadata() == fitted.metadata()
    assert adapter.load(tmp_path / "procrustes.npz").from_version == "v1"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.save(tmp_path / "array.npy", np.eye(3))
    np.savez(tmp_path / "other.npz", W=np.eye(3), b=np.zeros(3), meta=np.array('{"format": "x"}'))
    for name in ("junk.npz", "array.npy", "other.npz"):
        with pytest.raises(ValueError, match="not a driftwatch adapter file"):
            adapter.load(tmp_path / name)
    # A format-1 file (no mean_new, x W + b) still loads and maps as it did.
    W, b = rotation(rng, DIM, 1.0).astype(np.float32), np.full(DIM, 0.1, np.float32)
    meta = {"format": "driftwatch-adapter", "format_version": 1, "kind": "affine", "metric": "cosine"}
    np.savez(tmp_path / "v1.npz", W=W, b=b, meta=np.array(json.dumps(meta)))
    queries = unit(rng.standard_normal((5, DIM))).astype(np.float32)
    assert np.allclose(adapter.load(tmp_path / "v1.npz").apply(queries), unit(queries @ W + b), atol=1e-6)


def test_bad_inputs_are_explained() -> None:
    rng, old = corpus(5, n=200)
    new = push(rng, old, rotation(rng, DIM, np.pi / 2), noise=0.1)
    with pytest.raises(ValueError, match="mismatched pairs: 200 new vectors but 199 old"):
        fit_procrustes(new, old[:-1])
    with pytest.raises(ValueError, match=r"too few pairs for procrustes: 20 pairs .* at least 33"):
        fit_procrustes(new[:20], old[:20])
    with pytest.raises(ValueError, match=r"too few pairs for affine: 60 pairs .* at least 66"):
        fit_affine(new[:60], old[:60])
    broken = new.copy()
    broken[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"new vectors hold NaN or infinite values \(row 7"):
        fit_procrustes(broken, old)
    with pytest.raises(ValueError, match="rank must be between 1 and 32"):
        fit_affine(new, old, rank=40)
    with pytest.raises(ValueError, match="2-D arrays"):
        fit_procrustes(new[0], old[0])
    fitted = fit_procrustes(new, old, to_version="v2")
    with pytest.raises(ValueError, match=r"maps 32-dimensional vectors \(model v2\); got .* shape \(3, 16\)"):
        fitted.apply(np.ones((3, 16)))
    with pytest.raises(ValueError, match="NaN or infinite values"):
        fitted.apply(np.full(DIM, np.nan))


# ---------------------------------------------------------------- end to end on PostgreSQL


def create_versioned_table(
    dsn: str, table: str, rows: list[tuple[int, str, np.ndarray]], dim: int | None
) -> None:
    """(id, model_version, embedding) with one row per id and version, as mid-re-index;
    `dim` None leaves the column untyped, so it can hold several dimensions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        name = sql.Identifier(table)
        kind = sql.SQL("vector") if dim is None else sql.SQL("vector({})").format(sql.Literal(dim))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint, model_version text, embedding {}, "
                "PRIMARY KEY (id, model_version))"
            ).format(name, kind)
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} (id, model_version, embedding) FROM STDIN (FORMAT BINARY)").format(name)
        ) as copy:
            copy.set_types(["int8", "text", "vector"])
            for row_id, version, vector in rows:
                copy.write_row((row_id, version, np.asarray(vector, dtype=np.float32)))
        conn.execute(sql.SQL("ANALYZE {}").format(name))


def exact_recall(
    queries: np.ndarray, docs: np.ndarray, doc_ids: np.ndarray, relevant: list[set[str]]
) -> float:
    top = exact_neighbours(queries, docs, K)
    hits = sum(len({str(doc_ids[j]) for j in row} & rel) for row, rel in zip(top, relevant, strict=True))
    return hits / sum(min(K, len(rel)) for rel in relevant)


def make_suite(
    engine: Engine, rng: np.random.Generator, old: np.ndarray, to_new, n: int = 200
) -> tuple[np.ndarray, list[set[str]]]:
    """Queries near documents; relevant = the exact old-model top-10; stored embeddings are
    the new model's (what a live embedder would now return)."""
    queries_old, _ = queries_near(rng, old, n)
    relevant = [{str(j) for j in row} for row in exact_neighbours(queries_old, old, K)]
    queries_new = to_new(queries_old)
    suite = [
        ReferenceQuery(query_id=f"q{i}", relevant_ids=tuple(sorted(rel)), embedding=queries_new[i])
        for i, rel in enumerate(relevant)
    ]
    repository.replace_suite(engine, "docs", suite)
    return queries_new, relevant


def test_fit_and_report_mid_reindex(pg_db: str, engine: Engine, tmp_path: Path) -> None:
    rng, old = corpus(6)
    turn = rotation(rng, DIM, np.pi / 2)
    new = push(rng, old, turn, noise=0.05)
    reembedded = np.sort(rng.choice(len(old), size=2850, replace=False))  # 95% of the corpus so far
    rows = [(i, "v1", old[i]) for i in range(len(old))] + [(int(i), "v2", new[i]) for i in reembedded]
    create_versioned_table(pg_db, "docs", rows, DIM)
    with psycopg.connect(pg_db, autocommit=True) as conn:  # one index over both versions, as in production
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
    queries_new, relevant = make_suite(engine, rng, old, lambda q: push(rng, q, turn, noise=0.05))
    settings = CollectionSettings(name="docs", dsn=pg_db, table="docs", model_version_column="model_version")

    pairs = read_pairs(settings, "v1", "v2", 500, np.random.default_rng(7))
    assert len(pairs) == 500 and pairs.available == 2850 and pairs.skipped == 0
    index = np.array([int(i) for i in pairs.ids])
    assert np.allclose(pairs.old, old[index], atol=1e-6) and np.allclose(pairs.new, new[index], atol=1e-6)
    again = read_pairs(settings, "v1", "v2", 500, np.random.default_rng(7))
    assert again.ids == pairs.ids  # the seeded subset is reproducible

    # New-model queries sit next to the v2 rows in the shared HNSW graph: only an iterative
    # scan (pgvector 0.8, set by run_queries for filtered searches) still finds 10 v1 rows.
    filtered = run_queries(settings, queries_new, K, where=("model_version", "v1"))
    assert all(len(found) == K for found in filtered.ids)

    messages: list[str] = []
    report = fit_and_report(
        settings, engine, "v1", "v2", max_pairs=2000, output=tmp_path / "adapter",
        rng=np.random.default_rng(8), progress=messages.append,
    )  # fmt: skip
    recall = report.recall
    assert recall is not None and recall.k == K and recall.queries == 200
    assert report.pairs_read == 2000 and report.pairs_held_out == 400 and report.pairs_fit == 1600
    assert report.held_out_cosine_before < 0.1 and report.held_out_cosine_after > 0.99
    assert recall.raw is not None and recall.raw < 0.2  # new queries against the old index: collapse
    assert recall.oracle is not None and recall.oracle_coverage == pytest.approx(0.95)
    assert recall.mapped >= 0.95 * recall.oracle
    assert report.recovered_share == pytest.approx(recall.mapped / recall.oracle)
    assert messages and report.adapter_path == tmp_path / "adapter.npz"

    # Recompute each recall by exact numpy search over the same rows, with the saved file.
    # The report's numbers went through the HNSW index (filtered by version, iterative
    # scan), which may miss a true neighbour now and then: allow 0.03 on 2,000 slots.
    loaded = adapter.load(report.adapter_path)
    assert np.array_equal(loaded.apply(queries_new), report.adapter.apply(queries_new))
    ids = np.arange(len(old))
    assert recall.raw == pytest.approx(exact_recall(queries_new, old, ids, relevant), abs=0.03)
    assert recall.mapped == pytest.approx(
        exact_recall(loaded.apply(queries_new), old, ids, relevant), abs=0.03
    )
    oracle = exact_recall(queries_new, new[reembedded], reembedded, relevant)
    assert recall.oracle == pytest.approx(oracle, abs=0.03)

    saved = json.loads(report.report_path.read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert saved["recall"]["mapped"] == recall.mapped and saved["pairs"]["fit"] == 1600
    assert saved["adapter_path"] == str(tmp_path / "adapter.npz")


def test_side_table_with_a_new_dimension(pg_db: str, engine: Engine, tmp_path: Path) -> None:
    """The store stays on v1 (32-d); a side table holds 1,500 documents re-embedded by a
    48-d model. No v2 rows in the table itself, so no oracle; raw search is impossible."""
    rng, old = corpus(9)
    lift = semi_orthogonal(rng, DIM, 48)
    turn = rotation(rng, 48, np.pi / 2)
    to_new = lambda rows: push(rng, rows @ lift, turn, noise=0.05)  # noqa: E731
    new = to_new(old)
    create_versioned_table(pg_db, "docs", [(i, "v1", old[i]) for i in range(len(old))], DIM)
    create_versioned_table(pg_db, "docs_v2", [(i, "v2", new[i]) for i in range(1500)], 48)
    queries_new, relevant = make_suite(engine, rng, old, to_new, n=100)
    settings = CollectionSettings(name="docs", dsn=pg_db, table="docs", model_version_column="model_version")
    report = fit_and_report(
        settings, engine, "v1", "v2", method="affine", side_table="docs_v2", output=tmp_path / "side.npz"
    )
    assert (report.dim_new, report.dim_old) == (48, 32) and report.pairs_available == 1500
    assert report.held_out_cosine_before is None and report.held_out_cosine_after > 0.98
    recall = report.recall
    assert recall is not None and recall.raw is None and recall.oracle is None
    assert recall.oracle_coverage == 0.5 and report.recovered_share is None  # half the rows: no oracle
    assert recall.mapped > 0.85
    assert recall.mapped == pytest.approx(
        exact_recall(
            adapter.load(tmp_path / "side.npz").apply(queries_new), old, np.arange(len(old)), relevant
        ),
        abs=0.03,
    )
    assert any(
        "oracle not available: only 50% of 'v1' rows have a 'v2' row in docs_v2" in n for n in report.notes
    )
    assert json.loads((tmp_path / "side.json").read_text())["recall"]["oracle"] is None


def test_store_problems_are_named(pg_db: str, engine: Engine) -> None:
    _, old = corpus(10, n=200)
    rows = [(i, "v1", old[i]) for i in range(100)] + [(i, "v2", old[i]) for i in range(100, 200)]
    rows += [(i, "v3", old[i]) for i in range(20)]
    create_versioned_table(pg_db, "docs", rows, DIM)
    settings = CollectionSettings(name="docs", dsn=pg_db, table="docs", model_version_column="model_version")
    draw = np.random.default_rng(0)
    with pytest.raises(PairsError, match=r"docs: no rows .* model_version = 'v9'.*'v1' \(100"):
        read_pairs(settings, "v9", "v2", 100, draw)
    example = (
        "driftwatch adapter fit --collection docs --from-version v1 --to-version v2 --side-table docs_v2"
    )
    with pytest.raises(PairsError, match="docs: no id has a vector under both 'v1' and 'v2'") as caught:
        read_pairs(settings, "v1", "v2", 100, draw)
    assert example in str(caught.value) and "CREATE TABLE docs_v2 (LIKE docs)" in str(caught.value)
    with pytest.raises(PairsError, match=r"no rows with a vector where model_version = 'v7'") as caught:
        read_pairs(settings, "v1", "v7", 100, draw)
    assert "--to-version v7 --side-table docs_v7" in str(caught.value)  # the new side: say how to add it
    with pytest.raises(PairsError, match=r"only 20 ids .* auto on 32-d vectors needs at least 41") as caught:
        fit_and_report(settings, engine, "v1", "v3", rng=draw)
    assert "--side-table docs_v3" in str(caught.value)
    with pytest.raises(SourceError, match="docs_side does not exist"):
        read_pairs(settings, "v1", "v2", 100, draw, side_table="docs_side")
    with pytest.raises(ConfigError, match="model_version_column: not set"):
        read_pairs(settings.model_copy(update={"model_version_column": None}), "v1", "v2", 100, draw)
    with pytest.raises(ValueError, match="rank applies to the affine method only"):
        fit_and_report(settings, engine, "v1", "v2", rank=4, rng=draw)


def test_oracle_from_a_complete_side_table(pg_db: str, engine: Engine, tmp_path: Path) -> None:
    """The store is still all v1; a side table holds the v2 vectors of every row (a re-embed
    written apart before the switch). The oracle searches the side table, so the report says
    what share of a full re-embed's recall the adapter recovers."""
    rng, old = corpus(15, n=2000)
    turn = rotation(rng, DIM, np.pi / 2)
    new = push(rng, old, turn, noise=0.05)
    create_versioned_table(pg_db, "docs", [(i, "v1", old[i]) for i in range(len(old))], DIM)
    create_versioned_table(pg_db, "docs_v2", [(i, "v2", new[i]) for i in range(len(old))], DIM)
    queries_new, relevant = make_suite(engine, rng, old, lambda q: push(rng, q, turn, noise=0.05), n=100)
    settings = CollectionSettings(name="docs", dsn=pg_db, table="docs", model_version_column="model_version")
    report = fit_and_report(
        settings, engine, "v1", "v2", method="procrustes", side_table="docs_v2", max_pairs=800,
        output=tmp_path / "side", rng=np.random.default_rng(3),
    )  # fmt: skip
    recall = report.recall
    assert recall is not None and recall.oracle_coverage == 1.0 and recall.oracle is not None
    oracle = exact_recall(queries_new, new, np.arange(len(new)), relevant)
    assert recall.oracle == pytest.approx(oracle, abs=0.03)  # new queries, new rows: the side table's
    assert report.recovered_share == pytest.approx(recall.mapped / recall.oracle)
    assert report.recovered_share > 0.9 and recall.raw is not None and recall.raw < 0.2
    assert json.loads(report.report_path.read_text())["recall"]["recovered_share"] == report.recovered_share


def test_pairs_of_odd_rows_and_halfvec_columns(pg_db: str) -> None:
    """Pairs with a vector of a minority dimension or an all-zero vector are dropped and
    counted; halfvec columns are read through a cast to vector."""
    rng, old = corpus(11, n=100)
    new = push(rng, old, rotation(rng, DIM, np.pi / 2), noise=0.05)
    rows = [(i, "v1", old[i]) for i in range(100)] + [(i, "v2", new[i]) for i in range(90)]
    rows += [(i, "v2", new[i, :16]) for i in range(90, 95)] + [(95, "v2", np.zeros(DIM))]
    create_versioned_table(pg_db, "mixed", rows, None)
    settings = CollectionSettings(name="m", dsn=pg_db, table="mixed", model_version_column="model_version")
    pairs = read_pairs(settings, "v1", "v2", 1000, np.random.default_rng(0))
    assert (len(pairs), pairs.available, pairs.skipped) == (90, 96, 6)
    assert pairs.new.shape == (90, DIM) and pairs.new.dtype == np.float32
    create_versioned_table(pg_db, "half", [(i, v, vec) for i, v, vec in rows if len(vec) == DIM], DIM)
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE half ALTER COLUMN embedding TYPE halfvec(32)")
    halves = read_pairs(
        settings.model_copy(update={"table": "half"}), "v1", "v2", 1000, np.random.default_rng(0)
    )
    index = np.array([int(i) for i in halves.ids])
    assert len(halves) == 90 and np.allclose(halves.new, new[index], atol=2e-3)  # half precision


def test_cli_fits_reports_and_names_a_missing_version(pg_db: str, engine: Engine, tmp_path: Path) -> None:
    """`driftwatch adapter fit` as a user runs it, on the same kind of mid-re-index store: one
    real subprocess (a --json fit); the table output and a missing version in-process (click's
    runner), since each subprocess spends seconds importing numpy and scipy."""
    rng, old = corpus(11, n=1500)
    turn = rotation(rng, DIM, np.pi / 2)
    new = push(rng, old, turn, noise=0.05)
    rows = [(i, "v1", old[i]) for i in range(len(old))] + [(i, "v2", new[i]) for i in range(len(old))]
    create_versioned_table(pg_db, "docs", rows, DIM)
    make_suite(engine, rng, old, lambda q: push(rng, q, turn, noise=0.05), n=100)
    config = tmp_path / "driftwatch.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[[collections]]\nname = "docs"\n'
        f'dsn = "{pg_db}"\ntable = "docs"\nmodel_version_column = "model_version"\n'
    )
    args = ["--config", str(config), "adapter", "fit", "--from-version", "v1"]
    result = run_cli(*args, "--to-version", "v2", "--output", str(tmp_path / "a"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recall"]["raw"] < 0.2 and report["recall"]["mapped"] >= 0.95 * report["recall"]["oracle"]
    assert report["method"] == "auto" and report["kind"] in adapter.KINDS
    assert set(report["selection"]) == set(adapter.KINDS)  # 1,200 pairs of 32-d: all three weighed
    assert (tmp_path / "a.npz").exists() and json.loads((tmp_path / "a.json").read_text()) == report
    fixed = ["--to-version", "v2", "--method", "affine", "-o", str(tmp_path / "b")]
    shown = CliRunner().invoke(cli, [*args, *fixed])
    assert shown.exit_code == 0, shown.output
    assert "docs: affine adapter v1 <- v2 fitted on 1200 pairs (300 held out)" in shown.output
    missing = CliRunner().invoke(cli, [*args, "--to-version", "v9"])
    assert missing.exit_code == 2 and isinstance(missing.exception, SystemExit)  # a usage error, no traceback
    assert "v9" in missing.output and "--side-table docs_v9" in missing.output  # how to provide the pairs
    assert "mapped queries, old index" in shown.output and "recovered share" in shown.output
    unpaired = CliRunner().invoke(cli, [*args, *fixed, "--query-pairs", "3"])
    assert unpaired.exit_code == 2 and isinstance(unpaired.exception, SystemExit)
    assert "no [collections.query_log] and no [collections.embedder]" in unpaired.output


# ---------------------------------------------------------------- query pairs from the query log


def log_queries(dsn: str, texts: list[str], vectors: np.ndarray, version: str) -> None:
    from driftwatch.pg.querylog import ddl

    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(ddl("query_log", DIM, reader=None))
        with conn.cursor().copy(
            "COPY query_log (query_id, query_text, query_embedding, model_version, result_ids, "
            "result_scores) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "vector", "text", "text[]", "float4[]"])
            for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                copy.write_row((f"l{i}", text, np.asarray(vector, np.float32), version, ["1"], [0.5]))


def test_logged_queries_teach_the_map_where_queries_sit(pg_db: str, engine: Engine, tmp_path: Path) -> None:
    """The new model marks queries: a question-like component (which documents lack) shears
    them along a direction documents do use, as a `query: ` prefix does. A map fitted on
    document pairs alone cannot see it and carries the shear into the old space; fitted with
    the logged queries too (their text embedded anew, the logged vector as the old side), it
    undoes it. The suite's own texts, though logged, are never paired."""
    rng, docs = corpus(21)
    docs[:, 28:] = 0  # documents never carry the question component (dims 28-31)
    docs = unit(docs)
    question, along = np.eye(DIM)[31], unit(np.r_[rng.standard_normal(28), np.zeros(4)])
    turn = rotation(rng, DIM, np.pi / 2)

    def model_v2(meaning: np.ndarray) -> np.ndarray:
        return unit((meaning + np.outer(meaning @ question, along)) @ turn)

    def asked(n: int) -> np.ndarray:
        near, _ = queries_near(rng, docs, n)
        near[:, 28:] = 0
        return unit(unit(near) + 0.8 * question)

    suite_old, logged_old = asked(100), asked(400)
    meaning = {f"suite {i}": q for i, q in enumerate(suite_old)} | {
        f"asked {i}": q for i, q in enumerate(logged_old)
    }
    texts = [f"asked {i}" for i in range(400)] + ["suite 0"]  # a user once asked a suite query too
    log_queries(pg_db, texts, np.vstack([logged_old, suite_old[:1]]), "v1")
    paired = np.sort(rng.choice(len(docs), 1000, replace=False))
    create_versioned_table(pg_db, "docs", [(i, "v1", docs[i]) for i in range(len(docs))], DIM)
    reembedded = model_v2(docs[paired])
    create_versioned_table(
        pg_db, "docs_v2", [(int(i), "v2", v) for i, v in zip(paired, reembedded, strict=True)], DIM
    )
    relevant = [{str(j) for j in row} for row in exact_neighbours(suite_old, docs, K)]
    suite_queries = [
        ReferenceQuery(query_id=f"q{i}", relevant_ids=tuple(sorted(r)), text=f"suite {i}")
        for i, r in enumerate(relevant)
    ]
    repository.replace_suite(engine, "docs", suite_queries)
    service = EmbeddingService(lambda texts: model_v2(np.stack([meaning[t] for t in texts])))
    try:
        settings = CollectionSettings(
            name="docs", dsn=pg_db, table="docs", model_version_column="model_version",
            query_log={"table": "query_log"}, embedder={"kind": "http", "url": service.url},
        )  # fmt: skip

        def fit_with(query_pairs: int | None, stem: str) -> adapter_fit.AdapterReport:
            return fit_and_report(
                settings, engine, "v1", "v2", method="affine", side_table="docs_v2", query_pairs=query_pairs,
                output=tmp_path / stem, rng=np.random.default_rng(4),
            )  # fmt: skip

        documents_only, with_queries = fit_with(0, "docs-only"), fit_with(None, "with-queries")
        assert documents_only.query_pairs is None
        q = with_queries.query_pairs
        assert q is not None and (q.logged, q.fit, q.held_out) == (401, 320, 80)
        assert any("1 logged queries not paired: a reference suite text" in n for n in with_queries.notes)
        assert q.held_out_cosine_after is not None and q.held_out_cosine_after > 0.99
        assert documents_only.recall is not None and with_queries.recall is not None
        assert documents_only.recall.mapped < 0.6 < 0.9 < with_queries.recall.mapped
        suite_new = model_v2(suite_old)
        for report in (documents_only, with_queries):  # recomputed by exact search with the saved file
            mapped = adapter.load(report.adapter_path).apply(suite_new)
            exact = exact_recall(mapped, docs, np.arange(len(docs)), relevant)
            assert report.recall.mapped == pytest.approx(exact, abs=0.03)
        saved = json.loads(with_queries.report_path.read_text())["query_pairs"]
        assert saved["source"] == "query_log" and saved["fit"] == 320

        # The service still serves the old model: asked for, query pairs are an error; by
        # default, a note, and the fit goes on with document pairs.
        service.embed = lambda texts: unit(np.stack([meaning[t] for t in texts]))
        with pytest.raises(PairsError, match=r"embedder still gives the 'v1' vectors .*--query-pairs 0"):
            fit_with(200, "stale")
        stale = fit_with(None, "stale")
        assert stale.query_pairs is None and any(
            "no query pairs: the embedder still gives" in n for n in stale.notes
        )
        unlogged = settings.model_copy(update={"query_log": QueryLogSettings(table="docs")})  # no query_text
        no_texts = fit_and_report(unlogged, engine, "v1", "v2", side_table="docs_v2", output=tmp_path / "nt")
        assert no_texts.query_pairs is None and any(
            n.startswith("no query pairs: query_log.table docs lacks column(s) ts, query_text")
            for n in no_texts.notes
        )
        with pytest.raises(
            ValueError, match=r"--query-pairs 5: collection docs has no \[collections.embedder\]"
        ):
            fit_and_report(
                settings.model_copy(update={"embedder": None}), engine, "v1", "v2", side_table="docs_v2",
                query_pairs=5, output=tmp_path / "none",
            )  # fmt: skip
    finally:
        service.close()
