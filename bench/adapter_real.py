"""Drift-Adapter on a real model push: how much of a full re-embed's recall@10 each map
recovers from 500 to 5,000 pairs, how long a fit takes, and what `apply` costs per query.

    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_real.py     # both ways; needs `make bench-data`
    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_real.py --old e5 --new minilm   # one push

The corpus (bench/realdata.py): 46k real docstrings embedded by two unrelated 384-d models.
The index is every docstring as the OLD model embedded it; queries are embedded by the NEW
model (as the application embeds queries after the push); the pairs the maps learn from are
other docstrings under both models. Three relevances, exact search, recall@10:

* same text: 1,000 docstrings drawn at random are the queries; the query's own docstring
  must be among the top 10 of the 46k old rows. The re-embed finds it by construction
  (1.0); this is the map's "translation" accuracy, the degenerate query == document case.
* siblings: for the same queries, the other docstrings with the same parent (the methods of
  one class, the functions of one module), the query's own row left out of the index: a
  relevance neither model defines, so the re-embed (new queries, new rows) is an honest
  ceiling, not 1.0. The old model's own query vectors show what a perfect map would reach.
* names: 1,000 other rows; the query is the row's name in words (bench/name_queries.py:
  `dijkstra_path_length` -> "... dijkstra path length", embedded as a query, e5 with its
  "query: " prefix), the one relevant document its docstring. A query text that differs
  from its document, as in the Drift-Adapter paper's MTEB tasks. The maps on docstring pairs
  never see a query text of this kind; the row "with logged queries" gives a fifth of its
  pairs to 1,000 other rows' names under both models (never a test query), as `adapter fit`
  pairs the query log's texts (driftwatch/adapter_queries.py).

Leakage: no query row, and no name query's document, is ever among the pairs. In a store of
millions a few thousand sampled pairs almost never hold the document a given query wants;
in this 46k corpus 5,000 pairs would hold one in nine, and the map could memorise exactly
where those documents lie in the old space.

Nothing is tuned here: `auto` chooses on held-out pairs only, and the fixed training
constants of driftwatch/adapter_train.py were set during development on another draw of
queries and pairs (seed 0); this benchmark draws with --seed (default 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, markdown_table, write_section

from driftwatch.adapter import Adapter, fit

BEGIN, END = "<!-- adapter:begin -->", "<!-- adapter:end -->"
SIZES = (500, 1000, 2000, 5000)
METHODS = ("procrustes", "affine", "mlp", "auto")
LOGGED = 1000  # logged name queries drawn as query pairs; a fifth of each size's pairs is used
WITH_QUERIES = "auto+queries"
RELEVANCES = ("same text", "siblings", "names")
QUERIES = 1000
K = 10
TARGET = 0.95
EXPLANATION = """The maps place nearly every query next to its own document; their remaining
error moves queries among near neighbours, which costs little when the target is one
document and more when it is the old model's whole neighbourhood (siblings), or when the
query is a short phrase unlike the docstrings the maps learned from (names: MiniLM -> e5 at
1,000-2,000 pairs, the rigid Procrustes map does as well on them as the richer maps, which
fit the pairs better). More docstring pairs help slowly (MiniLM -> e5, development draw, seed 0,
mlp: siblings 0.199 at 5,000 pairs, 0.201 at 10,000, 0.207 at 20,000, 0.210 at 40,000
against a re-embed's 0.244; names 0.278, 0.306, 0.311, 0.323 against 0.514). Tried on a
development draw (seed 0, the first 12,288 rows) and not kept, each within about 0.01 of the
mlp at 5,000 pairs (the noise of 1,000 name queries is about 0.015): a wider hidden layer,
larger batches, other temperatures, longer training at a lower rate, input noise, weight decay, batches of
old-space neighbours (hard negatives), an ensemble of five mlps (+0.005 siblings, +0.01
names, five times the cost), a local correction by the out-of-fold residuals of the nearest
pairs (+0.012 siblings, +0.01 names; it would ship the pairs inside the adapter). Logged
queries as pairs help names most: the rows "N of the pairs logged queries" give a fifth of
the same number of pairs to other objects' names under both models (never a test query),
which is what `adapter fit` takes from the query log by default (the logged vector, and the
live model's embedding of the same text); siblings, whose queries are docstrings, do not
move."""


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class Push:
    """The corpus under the old and the new model, the queries and the pair pool."""

    def __init__(self, old_model: str, new_model: str, seed: int) -> None:
        import name_queries
        import realdata  # bench/realdata.py; its cache is built by `make bench-data`

        old, new = realdata.load(old_model), realdata.load(new_model)
        self.title = f"old {old.model.title}, new {new.model.title}"
        self.old, self.new = unit(old.vectors), unit(new.vectors)
        groups: dict[str, int] = defaultdict(lambda: len(groups))
        self.group = np.array([groups[name.rsplit(".", 1)[0]] for name in old.names])
        sizes = np.bincount(self.group)
        rng = np.random.default_rng(seed)
        eligible = np.flatnonzero(sizes[self.group] >= 4)  # at least 3 siblings left in the index
        self.queries = rng.choice(eligible, QUERIES, replace=False)
        self.relevant = np.minimum(K, sizes[self.group[self.queries]] - 1)
        # Name queries: other rows, whose name (not docstring) is the query; its docstring the answer.
        texts, usable = name_queries.usable(old.names)
        usable[self.queries] = False
        self.named = rng.choice(np.flatnonzero(usable), QUERIES, replace=False)
        self.name_texts = [texts[i] for i in self.named]
        here = realdata.data_dir()
        self.name_new = name_queries.vectors(here, new_model, self.name_texts)
        self.name_old = name_queries.vectors(here, old_model, self.name_texts)
        # Pairs: every other docstring; never a query, nor a name query's document.
        held = np.concatenate([self.queries, self.named])
        self.pool = rng.permutation(np.setdiff1d(np.arange(len(self.old)), held))
        # Logged queries: other objects' names under both models, as `adapter fit` pairs the query
        # log's texts (the old vector logged, the new one from the embedder). Never a test query.
        usable[self.named] = False
        logged = rng.choice(np.flatnonzero(usable), LOGGED, replace=False)
        logged_texts = [texts[i] for i in logged]
        self.logged_new = name_queries.vectors(here, new_model, logged_texts)
        self.logged_old = name_queries.vectors(here, old_model, logged_texts)

    def recall(self, query_vectors: np.ndarray, index: np.ndarray) -> tuple[float, float]:
        """(same-text recall@10, sibling recall@10) of query vectors against index rows."""
        scores = unit(query_vectors) @ index.T
        own = scores[np.arange(QUERIES), self.queries]
        same_text = np.mean(np.sum(scores > own[:, None], axis=1) < K)
        scores[np.arange(QUERIES), self.queries] = -np.inf  # siblings: the query's own row left out
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        hits = np.sum(self.group[top] == self.group[self.queries][:, None], axis=1)
        return float(same_text), float(np.mean(hits / self.relevant))

    def name_recall(self, query_vectors: np.ndarray, index: np.ndarray) -> float:
        """Recall@10 of name queries: the named object's docstring among the top 10 rows."""
        scores = unit(query_vectors) @ index.T
        own = scores[np.arange(QUERIES), self.named]
        return float(np.mean(np.sum(scores > own[:, None], axis=1) < K))

    def all_recalls(self, docs: np.ndarray, names: np.ndarray, index: np.ndarray) -> tuple[float, ...]:
        """(same text, siblings, names) of docstring and name query vectors against index rows."""
        return (*self.recall(docs, index), self.name_recall(names, index))


def latency(adapter: Adapter, queries: np.ndarray) -> float:
    """Median microseconds of one `apply` on one query vector (what a search request pays)."""
    times = []
    for row in queries[:300]:
        started = time.perf_counter()
        adapter.apply(row)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)


def run(push: Push, seed: int) -> dict:
    q_new = push.new[push.queries]
    result = {
        "raw": push.all_recalls(q_new, push.name_new, push.old),
        "reembed": push.all_recalls(q_new, push.name_new, push.new),
        "perfect": push.all_recalls(push.old[push.queries], push.name_old, push.old),
        "by_size": {},
    }
    for key in ("raw", "reembed", "perfect"):
        print(key, " ".join(f"{v:.3f}" for v in result[key]), flush=True)
    for size in SIZES:
        pairs = push.pool[:size]
        cells: dict[str, dict | None] = {}
        for method in METHODS:
            try:
                started = time.monotonic()
                adapter = fit(method, push.new[pairs], push.old[pairs], rng=np.random.default_rng(seed))
                seconds = time.monotonic() - started
            except ValueError as exc:  # too few pairs for this method
                print(f"{size} pairs, {method}: {exc}", flush=True)
                cells[method] = None
                continue
            recalls = push.all_recalls(adapter.apply(q_new), adapter.apply(push.name_new), push.old)
            cells[method] = {
                "recall": recalls, "seconds": seconds, "kind": adapter.kind,
                "latency_us": latency(adapter, q_new),
            }  # fmt: skip
            print(f"{size} pairs, {method} ({adapter.kind}): " + ", ".join(
                f"{r} {v:.3f}" for r, v in zip(RELEVANCES, recalls, strict=True)) + f", {seconds:.1f} s",
                flush=True)  # fmt: skip
        cells[WITH_QUERIES] = with_queries(push, size, seed, q_new)
        result["by_size"][size] = cells
    result["every_pair"] = every_pair(push, seed, q_new)
    return result


def every_pair(push: Push, seed: int, q_new: np.ndarray) -> dict:
    """The mlp on every docstring that may be a pair plus the logged queries: not a light
    budget but a bound, how far more pairs of the same kind could take a map."""
    docs, queries = push.pool, len(push.logged_new)
    return {**fit_docs_and_queries(push, "mlp", docs, queries, seed, q_new), "pairs": len(docs) + queries}


def with_queries(push: Push, size: int, seed: int, q_new: np.ndarray) -> dict:
    """`auto` on the same number of pairs, a fifth of them logged queries (adapter_queries.py)."""
    queries = size // 5
    return {
        **fit_docs_and_queries(push, "auto", push.pool[: size - queries], queries, seed, q_new),
        "queries": queries,
    }


def fit_docs_and_queries(
    push: Push, method: str, docs: np.ndarray, queries: int, seed: int, q_new: np.ndarray
) -> dict:
    """`method` fitted on the docstring pairs `docs` and the first `queries` logged queries."""
    new = np.concatenate([push.new[docs], push.logged_new[:queries]])
    old = np.concatenate([push.old[docs], push.logged_old[:queries]])
    started = time.monotonic()
    adapter = fit(method, new, old, rng=np.random.default_rng(seed))
    seconds = time.monotonic() - started
    recalls = push.all_recalls(adapter.apply(q_new), adapter.apply(push.name_new), push.old)
    print(f"{len(docs)} docstrings and {queries} logged queries, {method} ({adapter.kind}): " + ", ".join(
        f"{r} {v:.3f}" for r, v in zip(RELEVANCES, recalls, strict=True)) + f", {seconds:.1f} s",
        flush=True)  # fmt: skip
    return {"recall": recalls, "seconds": seconds, "kind": adapter.kind}


def direction(result: dict, push: Push) -> tuple[str, dict[str, float]]:
    """One push's table and verdict, and auto's share of the re-embed per relevance at 5,000 pairs."""
    reembed, perfect = result["reembed"], result["perfect"]

    def shares(values: tuple[float, ...], with_share: bool = True) -> list[str]:
        if not with_share:
            return [f"{v:.3f}" for v in values]
        return [f"{v:.3f} ({v / r:.0%})" for v, r in zip(values, reembed, strict=True)]

    rows = [
        ["—", "raw (new queries, old index)", *shares(result["raw"]), "—", "—"],
        ["—", "re-embed (new queries, new index)", *shares(reembed, False), "—", "—"],
        ["—", "perfect map (old queries, old index)", *shares(perfect), "—", "—"],
    ]
    for size, cells in result["by_size"].items():
        for method in METHODS:
            entry = cells[method]
            label = f"auto ({entry['kind']})" if method == "auto" and entry else method
            if entry is None:
                rows.append([f"{size:,}", label, "—", "—", "—", "too few pairs", "—"])
                continue
            lat = "—" if method == "auto" else f"{entry['latency_us']:.0f}"
            rows.append([f"{size:,}", label, *shares(entry["recall"]), f"{entry['seconds']:.1f}", lat])
        entry = cells[WITH_QUERIES]
        label = f"auto ({entry['kind']}), {entry['queries']:,} of the pairs logged queries"
        rows.append([f"{size:,}", label, *shares(entry["recall"]), f"{entry['seconds']:.1f}", "—"])
    bound = result["every_pair"]
    label = f"mlp on every other docstring and the {LOGGED:,} logged queries (a bound, not a budget)"
    rows.append([f"{bound['pairs']:,}", label, *shares(bound["recall"]), f"{bound['seconds']:.1f}", "—"])
    headers = ["pairs", "map", *(f"{r} recall@10" for r in RELEVANCES), "fit s", "apply µs/query"]
    largest = result["by_size"][max(SIZES)]
    auto, logged = largest["auto"]["recall"], largest[WITH_QUERIES]["recall"]
    best = [max(a, q) for a, q in zip(auto, logged, strict=True)]
    met = lambda share: "met" if share >= TARGET else "not met"  # noqa: E731
    verdict = "; ".join(
        f"{r} {a / o:.0%}, or {q / o:.0%} with logged queries "
        f"(target {met(b / o)}; a perfect map {p / o:.0%})"
        for r, a, q, b, o, p in zip(RELEVANCES, auto, logged, best, reembed, perfect, strict=True)
    )
    reach = ", ".join(
        f"{r} {v / o:.0%}" for r, v, o in zip(RELEVANCES, bound["recall"], reembed, strict=True)
    )
    text = f"""#### {push.title}

{markdown_table(headers, rows)}

At {max(SIZES):,} pairs `auto` recovers, of the re-embed's recall@10: {verdict}. With every
other docstring and the logged queries as pairs ({bound["pairs"]:,}), the mlp reaches {reach}.
"""
    return text, {r: b / o for r, b, o in zip(RELEVANCES, best, reembed, strict=True)}


def summary(shares: list[dict[str, float]]) -> str:
    """Which relevances meet the target in every push measured, which do not."""
    met = [r for r in RELEVANCES if all(d[r] >= TARGET for d in shares)]
    unmet = [r for r in RELEVANCES if r not in met]
    where = "in both directions" if len(shares) == 2 else "in the push measured"
    said = f"met for {' and '.join(met)} {where}" if met else f"not met for any relevance {where}"
    return said + (f", and not met for {' and '.join(unmet)}" if met and unmet else "")


def section(blocks: list[str], shares: list[dict[str, float]], command: str) -> str:
    joined = "\n".join(blocks)
    return f"""{BEGIN}
### Drift-Adapter on a real model push

`{command}` ({machine()}, one BLAS thread). Index: all 46k docstrings of bench/realdata.py in
the old model; queries in the new model; pairs are other docstrings under both models, never
a query's row nor a name query's document (bench/adapter_real.py says why). Relevance, exact
search, recall@10, {QUERIES:,} queries each: *same text* = a random docstring as the query,
its own docstring the answer (query == document: the re-embed finds it by construction);
*siblings* = for the same queries, the docstrings with the same parent module or class, the
query's own row left out (a relevance neither model defines: the re-embed is an honest
ceiling, not 1.0); *names* = the object's name in words as the query (`dijkstra_path_length`
-> "weighted dijkstra path length", e5 with its "query: " prefix), its docstring the one
answer: a query text that is not its document, the shape of the Drift-Adapter paper's MTEB
tasks. Each cell: mapped recall@10 and its share of the re-embed's. `auto` (the `adapter fit`
default) chooses on held-out pairs only; fit times in seconds on one core shared with other
work (load average {os.getloadavg()[0]:.0f} on 2 cores when the run ended); `apply` latency
is the median of one 384-d query vector at a time. At 500 pairs affine is not well-posed (it
needs 770); the mlp needs 482 (below 770 it starts from Procrustes instead of the ridge map).

**The target (>= 95% of a re-embed's recall@10 with <= 5,000 pairs) is {summary(shares)}**
(below). {EXPLANATION}

{joined}{END}"""


def arguments(description: str) -> argparse.Namespace:
    """The push options this script and bench/adapter_ceiling.py share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--old", help="the index's model (bench/realdata.py name); default: both ways")
    parser.add_argument("--new", help="the queries' model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    args.pushes = [(args.old, args.new)] if args.old and args.new else [("minilm", "e5"), ("e5", "minilm")]
    return args


def command_line(script: str, args: argparse.Namespace) -> str:
    """How to re-run `script` with these options, as its section quotes it."""
    command = f"OMP_NUM_THREADS=1 .venv/bin/python bench/{script}"
    command += f" --old {args.old} --new {args.new}" if args.old and args.new else ""
    return command + (f" --seed {args.seed}" if args.seed != 1 else "")


def publish(text: str, args: argparse.Namespace, begin: str, end: str) -> None:
    """Write the section into BENCHMARKS.md (it is printed too), or with --no-write only print it."""
    if args.no_write:
        print(text)
    else:
        write_section(text, begin, end)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for the one-core fit times the section reports", file=sys.stderr)
    blocks, shares = [], []
    for old, new in args.pushes:
        push = Push(old, new, args.seed)
        block, share = direction(run(push, args.seed), push)
        blocks.append(block)
        shares.append(share)
    publish(section(blocks, shares, command_line("adapter_real.py", args)), args, BEGIN, END)


if __name__ == "__main__":
    main()
