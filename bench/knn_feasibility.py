"""Feasibility of a nearest-neighbour two-sample statistic for a blended new topic (issue 15:
a 2% new topic without arrivals at n = 20,000), idealised: exact kNN over the pooled
reference + current rows, no cost limit, and its null by permuting the labels over that
label-free graph (exact for any statistic of the graph and the labels).

    .venv/bin/python bench/knn_feasibility.py --topic keras --seeds 2,6,7,8,9,10
    .venv/bin/python bench/knn_feasibility.py --topic keras --seeds 2,6,9 --thin 5000
    .venv/bin/python bench/knn_feasibility.py --oracle

Rows are drawn WITHOUT replacement by default (`--replace` draws like bench/detection_power.py,
with replacement plus 0.01 rad of jitter): with replacement, 400 draws of a 1,330-text topic
hold ~60 pairs of copies of one text, which are each other's nearest neighbours and would
inflate exactly this statistic. Statistics per k: Schilling's count (current rows' neighbours
that are current) and tail counts (current rows with at least t of their k neighbours current,
t where Binomial(k, 1/2) has 1e-2, 1e-3, 1e-4 above it). `--thin m` keeps m rows of each sample
before the graph is built: what a bounded-cost version (a subsample) would see.

`--cells` replaces the graph by counts in the Voronoi cells of 4,096 reference rows (what
new_territory's anchors would give for free) against held-out rows, a G-test, permutation null.

`--oracle` prints, per topic, what a test that KNEW the topic's direction would reach at a
share of 2% and n = 20,000: z of the mean along the topic's centroid offset, and along a
cross-fitted shrunk LDA direction (an upper bound no blind detector reaches).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata

JITTER = 0.01
TOPICS = "networkx,scapy,celery,music21,dask,keras,pandas,numpy"


def _jitter(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = rows + rng.standard_normal(rows.shape).astype(np.float32) * (JITTER / np.sqrt(rows.shape[1]))
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def exact_knn(rows: np.ndarray, k: int) -> np.ndarray:
    """The k nearest rows of each row (cosine on unit rows), itself excluded, nearest first."""
    out = np.empty((len(rows), k), dtype=np.int64)
    for s in range(0, len(rows), 2048):
        sim = rows[s : s + 2048] @ rows.T
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
        idx = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, idx, 1), axis=1)
        out[s : s + 2048] = np.take_along_axis(idx, order, 1)
    return out


def approx_knn(
    rows: np.ndarray, fit_rows: np.ndarray, k: int, dim: int, lists: int, probe: int
) -> tuple[np.ndarray, dict]:
    """A bounded-cost, label-free kNN graph: rows projected on the top `dim` principal axes and
    IVF lists, both fitted on `fit_rows` (held-out rows: neither sample), a row's candidates
    being the rows that have its nearest list among their `probe` nearest. Returns the graph
    and the seconds of each step (the projection's and lists' fit excluded: a baseline does it)."""
    from driftwatch.detect.results import kmeans

    rng = np.random.default_rng(0)
    centre = fit_rows.mean(0)
    _, _, axes = np.linalg.svd(fit_rows[:10000] - centre, full_matrices=False)
    axes = axes[:dim].T.astype(np.float32)
    centres, _ = kmeans((fit_rows[:10000] - centre) @ axes, lists, rng, iterations=8)
    seconds: dict = {}
    t = time.monotonic()
    points = (rows - centre) @ axes
    seconds["project"] = time.monotonic() - t
    t = time.monotonic()
    norms = np.einsum("ij,ij->i", points, points)
    to_centre = np.einsum("ij,ij->i", centres, centres)[None, :] - 2.0 * (points @ centres.T)
    near = (
        np.argpartition(to_centre, probe - 1, axis=1)[:, :probe]
        if probe > 1
        else to_centre.argmin(1)[:, None]
    )
    primary = np.take_along_axis(
        near, to_centre[np.arange(len(points))[:, None], near].argmin(1)[:, None], 1
    )[:, 0]
    seconds["assign"] = time.monotonic() - t
    t = time.monotonic()
    member_list, member_row = near.ravel(), np.repeat(np.arange(len(points)), probe)
    order = np.argsort(member_list, kind="stable")
    bounds = np.searchsorted(member_list[order], np.arange(lists + 1))
    q_order = np.argsort(primary, kind="stable")
    q_bounds = np.searchsorted(primary[q_order], np.arange(lists + 1))
    out = np.full((len(points), k), -1, dtype=np.int64)
    for lst in range(lists):
        queries = q_order[q_bounds[lst] : q_bounds[lst + 1]]
        cands = member_row[order[bounds[lst] : bounds[lst + 1]]]
        if len(queries) == 0:
            continue
        d = norms[cands][None, :] - 2.0 * (points[queries] @ points[cands].T)
        d[queries[:, None] == cands[None, :]] = np.inf
        kk = min(k, len(cands) - 1)
        idx = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        out[queries, :kk] = cands[idx]
    seconds["search"] = time.monotonic() - t
    missing = out < 0
    out[missing] = np.flatnonzero(~missing.any(1))[0] if missing.any() else 0  # too small lists: rare
    return out, {key: round(v, 3) for key, v in seconds.items()} | {"short_rows": int(missing.any(1).sum())}


def thresholds(k: int) -> list[int]:
    return [int(sps.binom(k, 0.5).isf(a)) + 1 for a in (1e-2, 1e-3, 1e-4)]


def statistics(neighbours: np.ndarray, current: np.ndarray, k: int) -> np.ndarray:
    """Schilling's count over current rows, then the tail counts."""
    same = current[neighbours[:, :k]].sum(1)[current]
    return np.array([same.sum(), *[np.count_nonzero(same >= t) for t in thresholds(k)]], float)


def run(data: realdata.RealData, args: argparse.Namespace, seed: int) -> dict:
    vectors, topics, n = data.vectors, data.topics, args.n
    rng = np.random.default_rng(seed)
    base, new = np.flatnonzero(topics != args.topic), np.flatnonzero(topics == args.topic)
    m = round(args.share * n)
    if args.replace:
        ref = _jitter(vectors[base[rng.integers(0, len(base), n)]], rng)
        cur = _jitter(vectors[base[rng.integers(0, len(base), n - m)]], rng)
        arrived = _jitter(vectors[new[rng.integers(0, len(new), m)]], rng)
    else:
        order = rng.permutation(base)
        ref, cur = vectors[order[:n]], vectors[order[n : 2 * n - m]]
        arrived = vectors[rng.choice(new, m, replace=False)] if m else vectors[:0]
    rows = np.concatenate([ref, cur, arrived])
    current = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    is_new = np.r_[np.zeros(2 * n - m, bool), np.ones(m, bool)]
    if args.thin:
        keep = np.r_[rng.choice(n, args.thin, replace=False), n + rng.choice(n, args.thin, replace=False)]
        rows, current, is_new = rows[keep], current[keep], is_new[keep]
    started = time.monotonic()
    steps: dict = {}
    if args.approx:  # held-out rows: corpus rows in neither sample (drawn with replacement: fresh draws)
        dim, lists, probe = (int(v) for v in args.approx.split(","))
        spare = order[2 * n :] if not args.replace else base[rng.integers(0, len(base), n)]
        neighbours, steps = approx_knn(rows, vectors[spare], max(args.ks), dim, lists, probe)
    else:
        neighbours = exact_knn(rows, max(args.ks))
    seconds = round(time.monotonic() - started, 1)
    out: dict = {
        "topic": args.topic,
        "seed": seed,
        "thin": args.thin,
        "approx": args.approx,
        "knn_s": seconds,
    }
    out |= steps
    if m:  # the share of new rows whose nearest neighbour is new; among their 10 nearest; current
        out["new_nn1_new"] = float(is_new[neighbours[is_new, 0]].mean())
        out["new_nn10_new"] = float(is_new[neighbours[is_new, :10]].mean())
        out["new_nn1_cur"] = float(current[neighbours[is_new, 0]].mean())  # null: 0.5
    prng = np.random.default_rng(seed + 99)
    for k in args.ks:
        observed = statistics(neighbours, current, k)
        null = np.array([statistics(neighbours, prng.permutation(current), k) for _ in range(args.perms)])
        sd = null.std(0)
        sd[sd == 0] = np.nan
        out[f"k{k}"] = {
            "t": thresholds(k),
            "obs": observed.tolist(),
            "null_mean": [round(float(v), 1) for v in null.mean(0)],
            "null_sd": [round(float(v), 2) for v in sd],
            "z": [round(float(v), 2) for v in (observed - null.mean(0)) / sd],
            "p_mc": (((null >= observed).sum(0) + 1) / (args.perms + 1)).round(4).tolist(),
        }
    return out


def cells(data: realdata.RealData, args: argparse.Namespace, seed: int, anchors: int = 4096) -> dict:
    """The cheap relative of the kNN graph: the current rows' and held-out rows' counts in the
    Voronoi cells of `anchors` reference rows (new_territory's anchors), a G-test over the
    cells and its permutation null. Held-out rows: the reference rows that are not anchors."""
    vectors, topics, n = data.vectors, data.topics, args.n
    rng = np.random.default_rng(seed)
    base, new = np.flatnonzero(topics != args.topic), np.flatnonzero(topics == args.topic)
    m = round(args.share * n)
    order = rng.permutation(base)
    ref = vectors[order[:n]]
    arrived = vectors[rng.choice(new, m, replace=False)] if m else vectors[:0]
    cur = np.concatenate([vectors[order[n : 2 * n - m]], arrived])
    pick = rng.choice(n, anchors, replace=False)
    points, held = ref[pick], np.delete(ref, pick, axis=0)

    def cell(rows: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.argmax(rows[s : s + 4096] @ points.T, axis=1) for s in range(0, len(rows), 4096)]
        )

    in_cell = np.r_[cell(cur), cell(held)]
    current = np.r_[np.ones(len(cur), bool), np.zeros(len(held), bool)]

    def g_test(labels: np.ndarray) -> float:
        c = np.bincount(in_cell[labels], minlength=anchors).astype(float)
        h = np.bincount(in_cell[~labels], minlength=anchors).astype(float)
        ec = (c + h) * labels.mean()
        eh = c + h - ec
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(c > 0, c * np.log(c / ec), 0) + np.where(h > 0, h * np.log(h / eh), 0)
        return float(2 * np.nansum(g))

    observed = g_test(current)
    prng = np.random.default_rng(seed + 7)
    null = np.array([g_test(prng.permutation(current)) for _ in range(args.perms)])
    return {
        "topic": args.topic,
        "seed": seed,
        "cells_holding_new_rows": len(np.unique(in_cell[len(cur) - m : len(cur)])) if m else 0,
        "z": round(float((observed - null.mean()) / null.std()), 2),
        "p_mc": round(float(((null >= observed).sum() + 1) / (args.perms + 1)), 4),
    }


def oracle(data: realdata.RealData, share: float = 0.02, n: int = 20_000) -> None:
    vectors, topics = data.vectors.astype(np.float64), data.topics
    rng = np.random.default_rng(0)
    for topic in TOPICS.split(","):
        new, base = vectors[topics == topic], vectors[topics != topic]
        offset = new.mean(0) - base.mean(0)
        along_b, along_n = base @ offset, new @ offset
        mean_z = share * (along_n.mean() - along_b.mean()) / along_b.std() * np.sqrt(n / 2)
        ni, bi = (
            rng.permutation(np.flatnonzero(topics == topic)),
            rng.permutation(np.flatnonzero(topics != topic)),
        )
        halves = ((ni[: len(ni) // 2], bi[: len(bi) // 2]), (ni[len(ni) // 2 :], bi[len(bi) // 2 :]))
        deltas = []
        for train, test in (halves, halves[::-1]):
            cov = np.cov(vectors[train[1]].T)
            cov = 0.8 * cov + 0.2 * np.trace(cov) / len(cov) * np.eye(len(cov))
            w = np.linalg.solve(cov, vectors[train[0]].mean(0) - vectors[train[1]].mean(0))
            pb, pn = vectors[test[1]] @ w, vectors[test[0]] @ w
            deltas.append((pn.mean() - pb.mean()) / pb.std())
        lda_z = share * np.mean(deltas) * np.sqrt(n / 2)
        texts = int(np.sum(topics == topic))
        print(f"{topic}: {texts} texts, oracle z at {share:.0%}: mean offset {mean_z:.1f}, LDA {lda_z:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", default="keras")
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seeds", default="2")
    parser.add_argument("--ks", default="10,20,30,50")
    parser.add_argument("--perms", type=int, default=1000)
    parser.add_argument("--thin", type=int, default=0)
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--approx", default="", help="dim,lists,probe: the bounded-cost graph")
    parser.add_argument("--oracle", action="store_true")
    parser.add_argument("--cells", action="store_true", help="the anchor-cell G-test instead of the graph")
    args = parser.parse_args()
    args.ks = [int(k) for k in args.ks.split(",")]
    data = realdata.load("minilm")
    if args.oracle:
        oracle(data)
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        print(json.dumps(cells(data, args, seed) if args.cells else run(data, args, seed)), flush=True)


if __name__ == "__main__":
    main()
