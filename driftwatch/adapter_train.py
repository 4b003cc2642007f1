"""The trained Drift-Adapter (`mlp`) and the choice between maps (`auto`), numpy only.

Two unrelated models disagree by more than a linear map. The `mlp` map starts from the
ridge (affine) map, or from Procrustes when the pairs are too few to choose a ridge, and
trains it together with a one-hidden-layer residual network,

    y = z W + b + relu(z W1 + b1) W2        (z = x - mean_new; W2 starts at zero)

with Adam on a symmetric in-batch contrastive loss: each mapped query must score the old
vectors of its batch as the old vector of its own document does (and each old vector the
mapped queries likewise). That is what recall@10 asks of a map (rank the documents as the
old model ranks them), where a mean-cosine or squared-error loss only asks the mapped
vector to come close to its partner, however close the neighbours are. The targets are the
old model's own similarities (softmax at the same temperature), not InfoNCE's one-hot
"own document only", which pays a map for pushing a query away from its document's old
neighbours: with them the old vectors themselves are the loss's minimum. Training stops at
the epoch whose map retrieves a held-out slice of the pairs best.

`choose` fits procrustes, affine and mlp on most of the pairs, scores each on the rest by
retrieval (`retrieval_scores`), and keeps the simplest map within one standard error of the
best (the one-standard-error rule); the winner is refitted on every pair (the mlp for the
number of steps its held-out evaluation found best).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from driftwatch.adapter import (
    Adapter,
    _pairs,
    fit_affine,
    fit_procrustes,
    judging_set,
    minimum_pairs,
    retrieval_scores,
    split_held_out,
)

TEMPERATURE = 0.05  # of the contrastive loss, on cosine scores
LEARNING_RATE = 1e-3
BATCH = 256
MAX_STEPS = 400  # Adam steps at most (about 25 epochs of 4,000 pairs): bounds fit time
EVALUATE_EVERY = 25  # Adam steps between held-out evaluations (a fixed count: tiny sets get steps too)
PATIENCE = 3  # evaluations without a better held-out score before training stops
BETAS = (0.9, 0.999)
SIMPLER_FIRST = ("procrustes", "affine", "mlp")


def fit_mlp(
    new: np.ndarray,
    old: np.ndarray,
    *,
    metric: str = "cosine",
    width: int | None = None,
    from_version: str | None = None,
    to_version: str | None = None,
    rng: np.random.Generator | None = None,
) -> Adapter:
    """The affine map plus a residual MLP, trained contrastively (module docstring).

    A fifth of the pairs is held out to stop the training; the rest train it. `width`
    defaults to the old dimension. Only for the cosine metric: the loss compares directions.
    """
    if metric != "cosine":
        raise ValueError(
            f"the mlp map is trained on cosine scores; for the {metric} metric use procrustes or affine"
        )
    x, y = _pairs(new, old, metric, "mlp")
    fitted, _ = _train(x, y, rng or np.random.default_rng(0), width)
    return replace(fitted, from_version=from_version, to_version=to_version)


def _train(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, width: int | None, steps: int | None = None
) -> tuple[Adapter, int]:
    """(the mlp adapter, the Adam steps it took). Without `steps`, training stops at the best
    held-out evaluation (a fifth of the pairs held out); with `steps`, every pair trains for
    exactly that many steps (the refit after `choose` has found the count)."""
    stop, train = split_held_out(len(x), rng) if steps is None else (np.arange(0), np.arange(len(x)))
    base = _start(x[train], y[train], rng)
    params = _initial(base, width or y.shape[1], rng)
    mean = base.mean_new.astype(np.float32)
    z, targets = (x - mean).astype(np.float32), y.astype(np.float32)
    best, best_steps, waited = dict(params), 0, 0
    best_score = _held_out(params, z, targets, stop) if steps is None else 0.0
    adam = _Adam(params)
    steps_per_epoch = max(1, len(train) // BATCH)
    for step in range(MAX_STEPS if steps is None else steps):
        if step % steps_per_epoch == 0:
            order = rng.permutation(train)
        batch = order[(step % steps_per_epoch) * BATCH :][:BATCH]
        adam.step(params, _gradients(params, z[batch], targets[batch]))
        if steps is None and (step + 1) % EVALUATE_EVERY == 0:
            score = _held_out(params, z, targets, stop)
            if score > best_score:
                best, best_score, best_steps, waited = (
                    {k: v.copy() for k, v in params.items()},
                    score,
                    step + 1,
                    0,
                )
            elif (waited := waited + 1) >= PATIENCE:
                break
    if steps is not None:
        best, best_steps = params, steps
    fitted = Adapter(
        kind="mlp",
        W=best["W"],
        b=best["b"],
        from_version=None,
        to_version=None,
        metric="cosine",
        normalise=True,
        ridge=base.ridge,
        mean_new=mean,
        mlp=(best["W1"], best["b1"], best["W2"]),
    )
    return fitted, best_steps


def _start(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Adapter:
    """The linear map training starts from: the ridge map where there are pairs enough to
    choose its ridge, else Procrustes (well-posed from d + 1 pairs), so the mlp, and `auto`
    with it, can be weighed at a thousand pairs, where the contrastive training gains most."""
    if len(x) >= minimum_pairs("affine", x.shape[1]):
        return fit_affine(x, y, metric="cosine", rng=rng)
    return fit_procrustes(x, y, metric="cosine")


def _initial(base: Adapter, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The start map, and a hidden layer whose output weights are zero: training starts
    from the linear map exactly."""
    dim_in, dim_out = base.W.shape
    return {
        "W": base.W.astype(np.float32).copy(),
        "b": base.b.astype(np.float32).copy(),
        "W1": (rng.standard_normal((dim_in, width)) * np.sqrt(2.0 / dim_in)).astype(np.float32),
        "b1": np.zeros(width, np.float32),
        "W2": np.zeros((width, dim_out), np.float32),
    }


def _forward(params: dict[str, np.ndarray], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.maximum(z @ params["W1"] + params["b1"], 0)
    return z @ params["W"] + params["b"] + hidden @ params["W2"], hidden


def _held_out(params: dict[str, np.ndarray], z: np.ndarray, old: np.ndarray, rows: np.ndarray) -> float:
    """Mean reciprocal rank of held-out queries' own documents among the pairs' old vectors."""
    judged, candidates = judging_set(rows, len(z))
    mapped = _forward(params, z[judged])[0]
    return float(retrieval_scores(mapped, old[candidates], np.arange(len(judged)), "cosine")[0].mean())


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _gradients(params: dict[str, np.ndarray], z: np.ndarray, old: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the symmetric contrastive loss of one batch: the cross-entropy between
    how mapped query i scores the batch's old vectors and how old vector i itself scores
    them (and the same by column). With a one-hot target (InfoNCE) the loss pays a map for
    pushing a query away from its document's old neighbours; with the old model's own
    similarities as the target, the old vectors themselves are the best map."""
    out, hidden = _forward(params, z)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    mapped = out / norm
    target = old / np.linalg.norm(old, axis=1, keepdims=True)
    logits = mapped @ target.T / TEMPERATURE
    wanted = _softmax(target @ target.T / TEMPERATURE, axis=1)  # symmetric: rows = columns
    d_logits = (_softmax(logits, 1) + _softmax(logits, 0) - wanted - wanted.T) / (2 * len(z))
    d_mapped = d_logits @ target / TEMPERATURE
    d_out = (d_mapped - mapped * np.sum(mapped * d_mapped, axis=1, keepdims=True)) / norm
    d_hidden = (d_out @ params["W2"].T) * (hidden > 0)
    return {
        "W": z.T @ d_out,
        "b": d_out.sum(axis=0),
        "W1": z.T @ d_hidden,
        "b1": d_hidden.sum(axis=0),
        "W2": hidden.T @ d_out,
    }


class _Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updating them in place."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = BETAS
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            params[k] -= (LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(params[k].dtype)


def choose(
    new: np.ndarray,
    old: np.ndarray,
    *,
    metric: str = "cosine",
    from_version: str | None = None,
    to_version: str | None = None,
    rng: np.random.Generator | None = None,
) -> Adapter:
    """The `auto` method: the simplest map within one standard error of the best (module docstring).

    Affine and mlp are weighed only with enough pairs for them (minimum_pairs), mlp only
    for the cosine metric. The adapter's `selection` records each map's held-out score.
    """
    rng = rng or np.random.default_rng(0)
    x, y = _pairs(new, old, metric, "auto")
    judge, rest = split_held_out(len(x), rng)
    kinds = [k for k in SIMPLER_FIRST if len(rest) >= minimum_pairs(k, x.shape[1])]
    kinds = [k for k in kinds if k != "mlp" or metric == "cosine"]
    judged, candidates = judging_set(judge, len(x))
    own = np.arange(len(judged))  # judged rows come first among the candidates
    scores: dict[str, np.ndarray] = {}
    mlp_steps = 0
    for kind in kinds:
        if kind == "mlp":
            adapter, mlp_steps = _train(x[rest], y[rest], rng, None)
        else:
            adapter = _fit_kind(kind, x[rest], y[rest], metric, rng)
        scores[kind] = retrieval_scores(adapter.apply(x[judged]), y[candidates], own, metric)[0]
    best = max(kinds, key=lambda kind: scores[kind].mean())
    chosen = next(kind for kind in kinds if _within_one_se(scores[kind], scores[best]))
    if chosen == "mlp":  # every pair, for as many steps as held-out pairs found best
        final = _train(x, y, rng, None, steps=mlp_steps)[0] if mlp_steps else _start(x, y, rng)
    else:
        final = _fit_kind(chosen, x, y, metric, rng)
    selection = {kind: round(float(s.mean()), 4) for kind, s in scores.items()}
    return replace(final, from_version=from_version, to_version=to_version, selection=selection)


def _within_one_se(simple: np.ndarray, best: np.ndarray) -> bool:
    """The one-standard-error rule: a simpler map whose held-out score is within one standard
    error (of the paired difference) of the best one's is kept, as the less likely to overfit."""
    gap = best - simple
    return bool(gap.mean() <= gap.std(ddof=1) / np.sqrt(len(gap)))


def _fit_kind(kind: str, x: np.ndarray, y: np.ndarray, metric: str, rng: np.random.Generator) -> Adapter:
    if kind == "procrustes":
        return fit_procrustes(x, y, metric=metric)
    return fit_affine(x, y, metric=metric, rng=rng)


__all__ = ["choose", "fit_mlp"]
