"""How far any light map can go on the real push: the maps of driftwatch/adapter.py fitted on
every docstring (about 44k pairs, nine times what `adapter fit` is meant to need), then on
every docstring and 6,000 other name queries, then, as a bound and not a result, on those and
the 1,000 test name queries themselves. If even these stay far below a re-embed, the gap is
the model pair (what one model's query vector says about the other's), not the pair count.

    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_ceiling.py             # both ways, seed 1
    OMP_NUM_THREADS=1 .venv/bin/python bench/adapter_ceiling.py --old e5 --new minilm --seed 0 --no-write

The draw, queries, relevances and leakage rules are bench/adapter_real.py's (Push). The other
name queries are 6,000 rows' names that are neither a test query nor a test name query's
document, embedded by both models (bench/name_queries.py, cached). The mlp here may train
for CEILING_STEPS Adam steps and wait CEILING_PATIENCE held-out evaluations for a gain
(the product's MAX_STEPS and PATIENCE bound a fit's time), still stopped on held-out
pairs. Prints a table; writes nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import name_queries
import realdata
from adapter_real import RELEVANCES, Push, arguments, command_line, publish, unit
from common import machine, markdown_table

from driftwatch import adapter_train
from driftwatch.adapter import fit

OTHER_QUERIES = 6000
PRODUCT_PAIRS = 5000
CEILING_STEPS = 3000
CEILING_PATIENCE = 20  # held-out evaluations without gain before stopping (the product's: 3)
BEGIN, END = "<!-- adapter-ceiling:begin -->", "<!-- adapter-ceiling:end -->"


def other_queries(push: Push, model_new: str, model_old: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(new, old) vectors of 6,000 other rows' name queries: never a test query's row, never a
    test name query's document (the draw of the development runs, so the cache serves it)."""
    texts, usable = name_queries.usable(realdata.load("minilm").names)
    usable[push.queries] = False
    usable[push.named] = False
    rows = np.random.default_rng(100 + seed).choice(np.flatnonzero(usable), OTHER_QUERIES, replace=False)
    chosen = [texts[i] for i in rows]
    here = realdata.data_dir()
    return (
        unit(name_queries.vectors(here, model_new, chosen)),
        unit(name_queries.vectors(here, model_old, chosen)),
    )


def fitted(method: str, new: np.ndarray, old: np.ndarray, seed: int, steps: int | None = None):
    """`fit(method)`; with `steps`, the mlp trains up to that many Adam steps, with
    CEILING_PATIENCE (the product's bounds restored afterwards)."""
    bounds = adapter_train.MAX_STEPS, adapter_train.PATIENCE
    if steps:
        adapter_train.MAX_STEPS, adapter_train.PATIENCE = steps, CEILING_PATIENCE
    try:
        return fit(method, new, old, rng=np.random.default_rng(seed))
    finally:
        adapter_train.MAX_STEPS, adapter_train.PATIENCE = bounds


def measure(push: Push, old_model: str, new_model: str, seed: int) -> str:
    q_new = push.new[push.queries]
    reembed = push.all_recalls(q_new, push.name_new, push.new)
    perfect = push.all_recalls(push.old[push.queries], push.name_old, push.old)
    other_new, other_old = other_queries(push, new_model, old_model, seed)
    docs = push.pool
    test_new, test_old = unit(push.name_new), unit(push.name_old)
    runs = [
        (f"mlp, {PRODUCT_PAIRS:,} docstring pairs (the product)", "mlp", docs[:PRODUCT_PAIRS], (), None),
        (f"affine (ridge), all {len(docs):,} docstrings", "affine", docs, (), None),
        (f"mlp, all {len(docs):,} docstrings", "mlp", docs, (), CEILING_STEPS),
        (f"mlp, all docstrings + {OTHER_QUERIES:,} other name queries", "mlp", docs,
         ((other_new, other_old),), CEILING_STEPS),
        ("mlp, the same + the 1,000 TEST name queries (a bound, not a result)", "mlp", docs,
         ((other_new, other_old), (test_new, test_old)), CEILING_STEPS),
    ]  # fmt: skip
    share = lambda v, r: f"{v:.3f} ({v / r:.0%})"  # noqa: E731
    rows = [
        ["re-embed (new queries, new index)", *(f"{v:.3f}" for v in reembed), "—"],
        ["perfect map (old queries, old index)", *map(share, perfect, reembed), "—"],
    ]
    for label, method, rows_used, extra, steps in runs:
        new = np.concatenate([push.new[rows_used], *(e[0] for e in extra)])
        old = np.concatenate([push.old[rows_used], *(e[1] for e in extra)])
        started = time.monotonic()
        adapter = fitted(method, new, old, seed, steps)
        seconds = time.monotonic() - started
        recalls = push.all_recalls(adapter.apply(q_new), adapter.apply(push.name_new), push.old)
        print(
            f"{label}: " + ", ".join(f"{r} {v:.3f}" for r, v in zip(RELEVANCES, recalls, strict=True)),
            flush=True,
        )
        rows.append([f"{label}, {len(new):,} pairs", *map(share, recalls, reembed), f"{seconds:.0f}"])
    headers = ["map", *(f"{r} recall@10" for r in RELEVANCES), "fit s"]
    return f"#### {push.title} (seed {seed})\n\n{markdown_table(headers, rows)}\n"


def section(blocks: list[str], command: str) -> str:
    joined = "\n".join(blocks)
    return f"""{BEGIN}
### How far any light map goes on the same push

`{command}` ({machine()}, one BLAS thread). The draw, queries and relevances of the section
above; each cell is recall@10 and its share of the re-embed's. The maps are fitted on far more
than `adapter fit` is meant to need: every docstring that may be a pair (44k, nine times 5,000),
then with {OTHER_QUERIES:,} other objects' names under both models (what a long query log would
give), then, as a bound and not a result, with the 1,000 test name queries themselves. Here
the mlp may train {CEILING_STEPS:,} Adam steps and wait {CEILING_PATIENCE} held-out evaluations
for a gain (the product bounds a fit's time more tightly), still stopped on held-out pairs. If
even these stay far below a re-embed, the gap is the model pair (what one model's query
vector says about the other's), not the number of pairs: no map of these kinds, applied to
each query at search time, comes near 95% of a re-embed on these relevances between these
two models, even one fitted on the test queries themselves.

{joined}{END}"""


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    blocks = [measure(Push(old, new, args.seed), old, new, args.seed) for old, new in args.pushes]
    publish(section(blocks, command_line("adapter_ceiling.py", args)), args, BEGIN, END)


if __name__ == "__main__":
    main()
