"""Drift-Adapter on a real model push: how much of a full re-embed's recall@10 each map
recovers from 500 to 5,000 pairs, how long a fit takes, and what `apply` costs per query.

    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_real.py     # both ways; needs `make bench-data`
    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_real.py --old e5 --new minilm   # one push

The corpus (bench/realdata.py): 46k real docstrings embedded by two unrelated 384-d models.
The index is every docstring as the OLD model embedded it; 1,000 docstrings drawn at random
are the queries, embedded by the NEW model (as the application embeds queries after the
push); the pairs the maps learn from are other docstrings under both models (never a
query). Two relevances, exact search, recall@10:

* same text: the query's own docstring must be among the top 10 of the 46k old rows. The
  re-embed finds it by construction (1.0); this is the map's "translation" accuracy.
* siblings: the other docstrings with the same parent (the methods of one class, the
  functions of one module), the query's own row left out of the index: a relevance neither
  model defines, so the re-embed (new queries, new rows) is an honest ceiling, not 1.0. The
  old model's own query vectors show what a perfect map would reach.

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
QUERIES = 1000
K = 10
TARGET = 0.95


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


class Push:
    """The corpus under the old and the new model, the queries and the pair pool."""

    def __init__(self, old_model: str, new_model: str, seed: int) -> None:
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
        self.pool = rng.permutation(np.setdiff1d(np.arange(len(self.old)), self.queries))
        self.relevant = np.minimum(K, sizes[self.group[self.queries]] - 1)

    def recall(self, query_vectors: np.ndarray, index: np.ndarray) -> tuple[float, float]:
        """(same-text recall@10, sibling recall@10) of query vectors against index rows."""
        scores = unit(query_vectors) @ index.T
        own = scores[np.arange(QUERIES), self.queries]
        same_text = np.mean(np.sum(scores > own[:, None], axis=1) < K)
        scores[np.arange(QUERIES), self.queries] = -np.inf  # siblings: the query's own row left out
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        hits = np.sum(self.group[top] == self.group[self.queries][:, None], axis=1)
        return float(same_text), float(np.mean(hits / self.relevant))


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
        "raw": push.recall(q_new, push.old),
        "reembed": push.recall(q_new, push.new),
        "perfect": push.recall(push.old[push.queries], push.old),
        "by_size": {},
    }
    print(f"raw {result['raw']}, re-embed {result['reembed']}, perfect map {result['perfect']}", flush=True)
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
            same, siblings = push.recall(adapter.apply(q_new), push.old)
            cells[method] = {
                "same": same, "siblings": siblings, "seconds": seconds, "kind": adapter.kind,
                "latency_us": latency(adapter, q_new),
            }  # fmt: skip
            print(f"{size} pairs, {method} ({adapter.kind}): same text {same:.3f}, siblings "
                  f"{siblings:.3f}, {seconds:.1f} s", flush=True)  # fmt: skip
        result["by_size"][size] = cells
    return result


def direction(result: dict, push: Push) -> str:
    """One push's paragraph, table and verdict."""
    (raw_same, raw_sib), (re_same, re_sib) = result["raw"], result["reembed"]
    perfect_sib = result["perfect"][1]

    def cell(entry: dict | None, which: str, oracle: float) -> str:
        if entry is None:
            return "—"
        return f"{entry[which]:.3f} ({entry[which] / oracle:.0%})"

    rows = []
    for size, cells in result["by_size"].items():
        auto = cells["auto"]
        rows.append(
            [f"{size:,}"]
            + [cell(cells[m], "same", re_same) for m in METHODS]
            + [cell(cells[m], "siblings", re_sib) for m in METHODS]
            + [auto["kind"], " / ".join(f"{cells[m]['seconds']:.1f}" if cells[m] else "—" for m in METHODS)]
        )
    headers = (
        ["pairs"] + [f"same text: {m}" for m in METHODS] + [f"siblings: {m}" for m in METHODS]
        + ["auto chose", "fit s (" + " / ".join(METHODS) + ")"]
    )  # fmt: skip
    at_most = result["by_size"][max(SIZES)]
    lat = ", ".join(f"{m} {at_most[m]['latency_us']:.0f} µs" for m in METHODS[:3] if at_most[m])
    auto_same = at_most["auto"]["same"] / re_same
    auto_sib = at_most["auto"]["siblings"] / re_sib
    met = lambda share: "met" if share >= TARGET else "not met"  # noqa: E731
    return f"""#### {push.title}

Raw (new queries, old index): {raw_same:.3f} same text, {raw_sib:.3f} siblings. Re-embed:
{re_same:.3f} same text (by construction), {re_sib:.3f} siblings; a perfect map (the old model's
own query vectors) {perfect_sib:.3f} siblings.

{markdown_table(headers, rows)}

At 5,000 pairs auto recovers **{auto_same:.0%} of the re-embed's same-text recall@10 (target
{met(auto_same)})** and **{auto_sib:.0%} of its sibling recall@10 (target {met(auto_sib)})**; a
perfect map would reach {perfect_sib / re_sib:.0%} of the latter. Per-query latency of `apply`
(one 384-d vector, median, at 5,000 pairs): {lat}.
"""


def section(blocks: list[str], command: str) -> str:
    joined = "\n".join(blocks)
    return f"""{BEGIN}
### Drift-Adapter on a real model push

`{command}` ({machine()}, one BLAS thread). Index: all 46k docstrings of bench/realdata.py in
the old model; {QUERIES:,} random docstrings as queries in the new model; pairs are other
docstrings under both models (never a query). Relevance, exact search, recall@10: *same text*
= the query's own docstring among the top 10 of the old index (the re-embed finds it by
construction); *siblings* = the docstrings with the same parent module or class, the query's
own row left out (a relevance neither model defines: the re-embed is an honest ceiling, not
1.0). Each cell: mapped recall@10 and its share of the re-embed's. `auto` (the `adapter fit`
default) chooses on held-out pairs only; fit times in seconds on one core shared with other
work (load average {os.getloadavg()[0]:.0f} on 2 cores when the run ended). At 500 pairs only
Procrustes is well-posed (affine needs 770 pairs, mlp 962).

**The target (>= 95% of a re-embed's recall@10 with <= 5,000 pairs) is met for the same-text
relevance in both directions, and not met for sibling relevance** (below). The maps place
nearly every query next to its own document; their remaining error moves queries among near
neighbours, which costs little when the target is one document and more when it is the old
model's whole neighbourhood. More pairs help slowly (MiniLM -> e5, development split: mlp
siblings 0.197 at 5,000 pairs, 0.201 at 10,000, 0.208 at 20,000, against a re-embed's 0.244).

{joined}{END}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="the index's model (bench/realdata.py name); default: both ways")
    parser.add_argument("--new", help="the queries' model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for the one-core fit times the section reports", file=sys.stderr)
    pushes = [(args.old, args.new)] if args.old and args.new else [("minilm", "e5"), ("e5", "minilm")]
    blocks = []
    for old, new in pushes:
        push = Push(old, new, args.seed)
        blocks.append(direction(run(push, args.seed), push))
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_real.py"
    command += f" --old {args.old} --new {args.new}" if args.old and args.new else ""
    command += f" --seed {args.seed}" if args.seed != 1 else ""
    text = section(blocks, command)
    if args.no_write:
        print(text)
    else:
        write_section(text, BEGIN, END)


if __name__ == "__main__":
    main()
