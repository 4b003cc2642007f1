"""The built-in detectors' declarations, in the order `check --json` lists them.

Each entry adapts a detector class to the registry's two calls: `fit` from a baseline
capture, `score` from one cycle. The statistics themselves live in their own modules.
"""

from __future__ import annotations

import numpy as np

from driftwatch.detect.checks import VectorSanity, model_version_result
from driftwatch.detect.detectors import (
    CentroidDistance,
    DriftResult,
    IndexHealth,
    RecallAtK,
    ScorePSI,
    SpatialKL,
)
from driftwatch.detect.observation import Observation
from driftwatch.detect.registry import REGISTRY, Detector, FitInput, Off, ScoreInput, on_arrivals

MIN_BASELINE_QUERIES = 60  # score PSI needs this many baseline queries with scores


def _fit_centroid(inputs: FitInput) -> CentroidDistance:
    s = inputs.settings
    return CentroidDistance.fit(
        inputs.reference, inputs.held_out, inputs.cycle_size, s.metric, inputs.rng, s.null_replicates
    )


def _fit_spatial(inputs: FitInput) -> SpatialKL:
    s = inputs.settings
    return SpatialKL.fit(
        inputs.reference, inputs.held_out, inputs.cycle_size, inputs.rng, s.cells, s.null_replicates
    )


def _suite_scores(observed: Observation) -> tuple[np.ndarray, np.ndarray] | None:
    """(top-1, mean top-k) similarity of the suite's queries that got K results."""
    if observed.suite is None:
        return None
    scores = observed.suite.ann.scores
    complete = np.isfinite(scores[:, 0])
    return scores[complete, 0], np.nanmean(scores[complete], axis=1)


def _fit_psi(inputs: FitInput) -> ScorePSI | Off:
    """From the live query log when it has enough queries, else from the reference suite."""
    s, window = inputs.settings, inputs.observed.window
    if window is not None and window.top1.size >= MIN_BASELINE_QUERIES:
        return ScorePSI.fit(
            window.top1, window.mean_topk, inputs.rng, s.bins, s.null_replicates, source="query_log"
        )
    suite = _suite_scores(inputs.observed)
    if suite is not None and suite[0].size >= MIN_BASELINE_QUERIES:
        return ScorePSI.fit(*suite, inputs.rng, s.bins, s.null_replicates, source="suite")
    have = 0 if window is None else window.top1.size
    return Off(
        f"needs {MIN_BASELINE_QUERIES} baseline queries with scores (query log window had {have}; "
        "a reference suite of that size also works)"
    )


def _score_psi(psi: ScorePSI, inputs: ScoreInput) -> DriftResult:
    observed = inputs.observed
    if psi.source == "query_log":
        if observed.window is None:
            return DriftResult.insufficient("score_psi", "no query log window")
        scores = (observed.window.top1, observed.window.mean_topk)
    else:
        suite = _suite_scores(observed)
        if suite is None:
            return DriftResult.insufficient("score_psi", "no reference suite")
        scores = suite
    result = psi.score(*scores, inputs.alpha, inputs.fixed_threshold)
    result.details["source"] = psi.source
    return result


_NO_SUITE = "no reference suite configured or imported"


def _fit_recall(inputs: FitInput) -> RecallAtK | Off:
    suite = inputs.observed.suite
    if suite is None:
        return Off(_NO_SUITE)
    return RecallAtK.fit(*suite.recall_hits(), suite.k)


def _score_recall(recall: RecallAtK, inputs: ScoreInput) -> DriftResult:
    suite = inputs.observed.suite
    if suite is None:
        return DriftResult.insufficient("recall_at_k", "no reference suite this cycle")
    hits, trials = suite.recall_hits()
    result = recall.score(hits, trials, inputs.alpha, inputs.fixed_threshold)
    worst = np.argsort(hits / np.maximum(trials, 1))[:5]
    result.details["worst_queries"] = [suite.query_ids[i] for i in worst if hits[i] < trials[i]]
    result.details["embedded_with"] = suite.embedded_with
    return result


def _fit_index(inputs: FitInput) -> IndexHealth | Off:
    suite = inputs.observed.suite
    if suite is None:
        return Off(_NO_SUITE)
    if suite.exact is None:
        return Off("index_health_queries = 0")
    return IndexHealth.fit(*suite.overlap_hits())


def _score_index(index: IndexHealth, inputs: ScoreInput) -> DriftResult:
    suite = inputs.observed.suite
    if suite is None or suite.exact is None:
        return DriftResult.insufficient(
            "index_health", f"runs every {inputs.index_health_interval:g}s; not due"
        )
    result = index.score(*suite.overlap_hits(), inputs.alpha, inputs.fixed_threshold)
    result.details["queries_checked"] = [suite.query_ids[i] for i in suite.exact_rows]
    return result


def _score_model_version(_state: None, inputs: ScoreInput) -> DriftResult:
    window = inputs.observed.window
    return model_version_result(
        inputs.baseline_versions,
        inputs.observed.sample.versions,
        window.versions if window else {},
        inputs.sentinel_cosines,
    )


def _fit_sanity(inputs: FitInput) -> VectorSanity:
    return VectorSanity.fit(inputs.reference, inputs.observed.sample.dim)


REGISTRY.register(
    Detector(
        name="centroid_distance",
        meaning="How far the mean of the stored vectors moved from the baseline's mean.",
        action="the stored vectors moved as a whole (new content mix, or a writer change)",
        label="centroid distance",
        state=CentroidDistance,
        fit=_fit_centroid,
        score=lambda state, inputs: state.score(inputs.clean, inputs.alpha, inputs.fixed_threshold),
    )
)
REGISTRY.register(
    Detector(
        name="spatial_kl",
        meaning="How differently the stored vectors fill the baseline's k-means cells (KL divergence).",
        action="a region of the embedding space gained or lost documents; details.top_cells says which",
        label="spatial KL",
        state=SpatialKL,
        fit=_fit_spatial,
        score=lambda state, inputs: state.score(inputs.clean, inputs.alpha, inputs.fixed_threshold),
    )
)
REGISTRY.register(
    Detector(
        name="score_psi",
        meaning="How differently the top similarity scores of queries are distributed (PSI).",
        action="the similarity scores queries get changed shape: the embedding function or queries moved",
        label="score PSI",
        state=ScorePSI,
        fit=_fit_psi,
        score=_score_psi,
    )
)
REGISTRY.register(
    Detector(
        name="recall_at_k",
        meaning="How much of the reference suite's relevant documents the live ANN index stopped finding.",
        action="the reference suite finds fewer of its relevant documents through the live index",
        label="recall@K drop",
        state=RecallAtK,
        fit=_fit_recall,
        score=_score_recall,
    )
)
REGISTRY.register(
    Detector(
        name="model_version",
        meaning="Share of rows or queries on an embedding model version the baseline never saw, "
        "or of sentinel rows whose stored vector changed.",
        action="an embedding model was pushed: re-embed, then capture a new baseline; adapter fit meanwhile",
        label="new-version share",
        score=_score_model_version,
        rule=False,
    )
)
REGISTRY.register(
    Detector(
        name="vector_sanity",
        meaning="Share of sampled rows that are NaN, zero, off the baseline's norm band or of another "
        "dimension.",
        action="the writer stores NaN, zero, off-norm or wrong-dimension vectors",
        label="bad-vector share",
        state=VectorSanity,
        fit=_fit_sanity,
        score=lambda _state, inputs: inputs.screen,
    )
)
REGISTRY.register(
    Detector(
        name="index_health",
        meaning="Share of the exact nearest neighbours the ANN index no longer returns.",
        action="the ANN index returns fewer of the exact nearest neighbours (bloat, stale lists)",
        label="ANN overlap drop",
        state=IndexHealth,
        fit=_fit_index,
        score=_score_index,
        plotted=False,
    )
)

REGISTRY.register(
    on_arrivals(
        REGISTRY["centroid_distance"],
        meaning="How far the mean of the rows that arrived since the baseline is from the baseline's mean.",
        action="what was written since the baseline differs as a whole: a new source, a new content mix "
        "or a writer change; look at the newest rows",
    )
)
REGISTRY.register(
    on_arrivals(
        REGISTRY["spatial_kl"],
        meaning="How differently the rows that arrived since the baseline fill the baseline's cells.",
        action="what was written since the baseline crowds some regions (details.top_cells): a new topic "
        "arriving, or one region's writer changed",
    )
)

__all__ = ["MIN_BASELINE_QUERIES"]
