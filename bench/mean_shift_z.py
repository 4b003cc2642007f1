"""Expected z and power of mean-shift tests from population moments (issue 15, Step 1 of
/work/notes/brief-knn2.md): for each held-out topic blended at 2% into n = 20,000 rows, and
for the re-embedded and rotation scenarios, what a quadratic form of the mean difference
would reach, with no sampling beyond the mean itself.

    .venv/bin/python bench/mean_shift_z.py                 # n_eff = n/2 (vs a reference of n rows)
    .venv/bin/python bench/mean_shift_z.py --neff 0.857    # vs the pooled 6n baseline rows

The current mean minus the baseline mean is N(delta, S / n_eff) in the eigenbasis of the base
covariance S; a test sum_i w_i D_i^2 has null cumulants from w_i lambda_i / n_eff, its
threshold from the same three-cumulant gamma the detectors use; power is simulated (3,000
draws). Weights: Euclidean (w = 1, centroid_distance), top-k whitened (w = 1/lambda on the
top k, 0 elsewhere: chi-square(k)), lambda^-a, ridge 1/(lambda + r * mean lambda), ridge 0.1
on the top 128 with one weight for the rest (what a d x 128 state would hold), the largest
whitened coordinate (Bonferroni), and a chi-square on 256 k-means cells. Printed: z/power at
alpha = 0.001/6 (Holm's first step over the population detectors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata
from detection_power import GROWTH, _rotation, load_population

from driftwatch.detect.results import kmeans

ALPHA = 0.001 / 6
TOPICS = "networkx,scapy,celery,music21,dask,keras,pandas,numpy"


def quad(lam: np.ndarray, d: np.ndarray, w: np.ndarray, neff: float, sims: int = 3000) -> tuple[float, float]:
    c = w * lam / neff
    k1, k2, k3 = c.sum(), 2 * (c**2).sum(), 8 * (c**3).sum()
    b = 8 * k2**3 / k3**2
    a = np.sqrt(k2 / (2 * b))
    crit = a * sps.chi2.isf(ALPHA, b) + k1 - a * b
    draws = d + np.random.default_rng(0).standard_normal((sims, len(lam))) * np.sqrt(lam / neff)
    return float((w * d**2).sum() / np.sqrt(k2)), float(np.mean((draws**2 * w).sum(1) > crit))


def row(label: str, base: np.ndarray, new: np.ndarray, share: float, neff: float, cells: dict) -> None:
    lam, vectors = np.linalg.eigh(np.cov(base.T))
    lam, vectors = np.maximum(lam[::-1], 1e-12), vectors[:, ::-1]
    d = vectors.T @ (share * (new.mean(0) - base.mean(0)))
    mean = lam.mean()
    out = [label]
    for k in (8, 16, 32, 64, 128):
        nc = neff * np.sum(d[:k] ** 2 / lam[:k])
        out.append(f"top{k} {nc / np.sqrt(2 * k):.1f}/{sps.ncx2.sf(sps.chi2.isf(ALPHA, k), k, nc):.2f}")

    def rest(k: int, r: float) -> np.ndarray:
        return np.r_[1 / (lam[:k] + r * mean), np.full(len(lam) - k, 1 / (lam[k:].mean() + r * mean))]

    weights = {
        "eucl": np.ones_like(lam),
        "a.25": lam**-0.25,
        "a.5": lam**-0.5,
        "ridge1": 1 / (lam + mean),
        "ridge.3": 1 / (lam + 0.3 * mean),
        "ridge.1": 1 / (lam + 0.1 * mean),
        "ridge.1k128": rest(128, 0.1),
    }
    for name, w in weights.items():
        z, power = quad(lam, d, w, neff)
        out.append(f"{name} {z:.1f}/{power:.2f}")
    t = sps.norm.isf(ALPHA / (2 * len(lam)))
    zs = d / np.sqrt(lam / neff) + np.random.default_rng(1).standard_normal((3000, len(lam)))
    out.append(f"max {np.max(np.abs(d) / np.sqrt(lam / neff)):.1f}/{np.mean(np.abs(zs).max(1) > t):.2f}")
    for k, (centres, q) in cells.items():
        hit = np.bincount(np.argmax(new @ centres.T, 1), minlength=k) / len(new)
        nc = neff * np.sum((share * (hit - q)) ** 2 / np.maximum(q, 1e-9))
        power = sps.ncx2.sf(sps.chi2.isf(ALPHA, k - 1), k - 1, nc)
        out.append(f"cells{k} {nc / np.sqrt(2 * (k - 1)):.1f}/{power:.2f}")
    print(" | ".join(out), flush=True)


def fit_cells(base: np.ndarray, rng: np.random.Generator) -> dict:
    centres, _ = kmeans(base[rng.permutation(len(base))[:10000]].astype(np.float32), 256, rng, iterations=10)
    centres = np.asarray(centres, dtype=np.float64)
    return {256: (centres, np.bincount(np.argmax(base @ centres.T, 1), minlength=256) / len(base))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--neff", type=float, default=0.5, help="n_eff as a share of n")
    args = parser.parse_args()
    neff = args.n * args.neff
    data = realdata.load("minilm")
    vectors, topics = data.vectors.astype(np.float64), data.topics
    rng = np.random.default_rng(0)
    for topic in TOPICS.split(","):
        new, base = vectors[topics == topic], vectors[topics != topic]
        row(f"{topic} 2%", base, new, 0.02, neff, fit_cells(base, rng))
    pop, _ = load_population()
    base = pop.rows.astype(np.float64)
    moved = base.mean(0) + pop.other.astype(np.float64) - pop.both.astype(np.float64)
    for share in (0.01, 0.05):
        row(f"re-embedded {share}", base, moved, share, neff, {})
    for angle in (0.05, 0.1):
        turn = _rotation(base.shape[1], angle, np.random.default_rng(1)).astype(np.float64)
        row(f"rotation {angle}", base, base @ turn.T, GROWTH / (1 + GROWTH), neff, {})


if __name__ == "__main__":
    main()
