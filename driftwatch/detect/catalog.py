"""The built-in detectors' declarations, in the order `check --json` lists them.

Each entry adapts a detector class to the registry's two calls: `fit` from a baseline
capture, `score` from one cycle. The statistics themselves live in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from driftwatch.detect.canary import EmbeddingCanary
from driftwatch.detect.checks import VectorSanity, model_version_result
from driftwatch.detect.classifier import ClassifierTwoSample
from driftwatch.detect.feedback_rates import MIN_BASELINE_TRIALS, RateShift
from driftwatch.detect.mean_shift import MeanShift
from driftwatch.detect.observation import Observation, QueryWindow, SuiteObservation
from driftwatch.detect.population import CentroidDistance, SpatialKL
from driftwatch.detect.ranking import IndexHealth, RecallAtK
from driftwatch.detect.ranking_quality import PairedRanking, ndcg, reciprocal_ranks
from driftwatch.detect.registry import REGISTRY, Detector, FitInput, Off, ScoreInput, on_arrivals
from driftwatch.detect.results import DriftResult
from driftwatch.detect.scores import ScorePSI
from driftwatch.detect.territory import NewTerritory
from driftwatch.detect.units import format_duration

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


def _fit_mean_shift(inputs: FitInput) -> MeanShift:
    return MeanShift.fit(inputs.reference, inputs.held_out, inputs.cycle_size, inputs.settings.metric)


def _population(state: CentroidDistance | MeanShift | SpatialKL, inputs: ScoreInput) -> DriftResult:
    """A sample is judged against the null; a table read whole is no sample: its change is
    real, and judged by a documented effect size (`whole_table_effect`) instead."""
    if inputs.read_whole:
        effect = inputs.whole_table_effect
        return (
            state.compare_whole(inputs.clean) if effect is None else state.compare_whole(inputs.clean, effect)
        )
    if isinstance(state, SpatialKL):
        return state.score(inputs.clean, inputs.alpha, inputs.fixed_threshold)
    mean = inputs.clean_mean(state.metric)  # one pass over the sample for both mean detectors
    return state.score(inputs.clean, inputs.alpha, inputs.fixed_threshold, mean)


def _fit_territory(inputs: FitInput) -> NewTerritory:
    return NewTerritory.fit(inputs.reference, inputs.held_out, inputs.settings.metric, inputs.rng)


def _fit_classifier(inputs: FitInput) -> ClassifierTwoSample:
    return ClassifierTwoSample.fit(inputs.reference, inputs.held_out, inputs.settings.metric, inputs.rng)


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
            return DriftResult.insufficient("score_psi", _suite_missing(observed))
        scores = suite
    result = psi.score(*scores, inputs.alpha, inputs.fixed_threshold)
    result.details["source"] = psi.source
    return result


_NO_SUITE = "no reference suite configured or imported"


def _suite_missing(observed: Observation) -> str:
    """Why a cycle has no suite run: the embedder was down, a new dimension, or none configured."""
    return observed.suite_skipped or "no reference suite this cycle"


def _fit_recall(inputs: FitInput) -> RecallAtK | Off:
    suite = inputs.observed.suite
    if suite is None:
        return Off(_NO_SUITE)
    return RecallAtK.fit(*suite.recall_hits(), suite.k, query_ids=suite.query_ids)


def _score_recall(recall: RecallAtK, inputs: ScoreInput) -> DriftResult:
    suite = inputs.observed.suite
    if suite is None:
        return DriftResult.insufficient("recall_at_k", _suite_missing(inputs.observed))
    hits, trials = suite.recall_hits()
    result = recall.score(hits, trials, inputs.alpha, inputs.fixed_threshold, query_ids=suite.query_ids)
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
    return IndexHealth.fit(*suite.overlap_hits(), query_ids=suite.checked_ids())


def _score_index(index: IndexHealth, inputs: ScoreInput) -> DriftResult:
    suite = inputs.observed.suite
    if suite is None and inputs.observed.suite_skipped:
        return DriftResult.insufficient("index_health", inputs.observed.suite_skipped)
    if suite is None or suite.exact is None:
        return DriftResult.insufficient(
            "index_health", f"runs every {format_duration(inputs.index_health_interval)}; not due"
        )
    hits = suite.overlap_hits()
    result = index.score(*hits, inputs.alpha, inputs.fixed_threshold, query_ids=suite.checked_ids())
    result.details["queries_checked"] = [suite.query_ids[i] for i in suite.exact_rows]
    return result


def _ranking(name: str, per_query: Callable[[SuiteObservation], np.ndarray], **text: str) -> Detector:
    """A paired ranking-quality detector over the reference suite."""

    def fit(inputs: FitInput) -> PairedRanking | Off:
        suite = inputs.observed.suite
        if suite is None:
            return Off(_NO_SUITE)
        return PairedRanking.fit(suite.query_ids, per_query(suite), suite.k)

    def score(state: PairedRanking, inputs: ScoreInput) -> DriftResult:
        suite = inputs.observed.suite
        if suite is None:
            return DriftResult.insufficient(name, _suite_missing(inputs.observed))
        return state.score(name, suite.query_ids, per_query(suite), inputs.alpha, inputs.fixed_threshold)

    return Detector(name=name, state=PairedRanking, fit=fit, score=score, **text)  # type: ignore[arg-type]


def _score_model_version(_state: None, inputs: ScoreInput) -> DriftResult:
    window, sample = inputs.observed.window, inputs.observed.sample
    return model_version_result(
        inputs.baseline_versions,
        sample.versions,
        window.versions if window else {},
        inputs.sentinel_cosines,
        dims=sample.dims_seen,
        baseline_dim=sample.dim,
    )


def _score_sanity(_state: VectorSanity, inputs: ScoreInput) -> DriftResult:
    """The screen's verdict, with the sample's rows per dimension (a push to another dimension
    shows here as rows of a new one)."""
    dims = inputs.observed.sample.dims_seen
    if dims:
        by_count = sorted(dims.items(), key=lambda dc: -dc[1])
        inputs.screen.details["dims"] = {str(d): int(c) for d, c in by_count}
    return inputs.screen


def _fit_canary(inputs: FitInput) -> EmbeddingCanary | Off:
    probes, config = inputs.observed.canary, inputs.settings.canary
    if probes is None or config is None:
        return Off("no [collections.canary] configured (it needs [collections.embedder])")
    if probes.vectors is None:
        return Off(probes.error or "the probes were not embedded")
    return EmbeddingCanary.fit(probes, config.min_cosine)


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
        score=_population,
    )
)
REGISTRY.register(
    Detector(
        name="mean_shift",
        meaning="How far the mean of the stored vectors moved from the mean of every baseline row, "
        "each principal direction in units of its own spread (ridge-whitened).",
        action="the stored vectors moved as a whole along directions where the baseline varies little: "
        "a new topic blended into the table, or a writer change; details.top_axes says which principal "
        "directions moved, spatial_kl's top_cells and new_territory's examples say where",
        label="whitened mean shift",
        state=MeanShift,
        fit=_fit_mean_shift,
        score=_population,
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
        score=_population,
    )
)
REGISTRY.register(
    Detector(
        name="new_territory",
        meaning="Share of rows farther from every baseline row than all but 1% of the baseline's own "
        "held-out rows: content unlike anything the baseline had.",
        action="rows unlike anything in the baseline were written (details.examples points at some): "
        "a new topic, a new source, or garbage; look at them before deciding it is wanted",
        label="new-territory share",
        state=NewTerritory,
        fit=_fit_territory,
        score=lambda state, inputs: state.score(inputs.clean, inputs.alpha, inputs.fixed_threshold),
    )
)
REGISTRY.register(
    Detector(
        name="classifier_two_sample",
        meaning="AUC of a linear model telling current rows from baseline rows, on rows it did not "
        "train on; 0.5 means it cannot tell them apart.",
        action="the vectors changed in a way the centroid and the cells miss, as an unlabelled change "
        "of the embedding function does (a model or preprocessing change without a new "
        "model_version): check the embedding service and the sentinels, then re-embed or re-capture",
        label="classifier AUC",
        state=ClassifierTwoSample,
        fit=_fit_classifier,
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
        name="embedding_canary",
        meaning="Share of the canary's probe texts whose vector from the live embedder moved beyond "
        "float round-off from the baseline's (cosine under min_cosine, or another norm).",
        action="the query-side embedding function changed (another model, a dropped `query: ` prefix, "
        "new normalisation or quantisation) before any row did: roll the embedder back, or re-embed "
        "and capture a new baseline; adapter fit meanwhile",
        label="moved-probe share",
        state=EmbeddingCanary,
        fit=_fit_canary,
        score=lambda state, inputs: state.score(inputs.observed.canary),
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
        score=_score_sanity,
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


def _feedback(
    name: str,
    harmful: str,
    outcomes: Callable[[QueryWindow], Outcomes | None],
    column: str,
    **text: str,
) -> Detector:
    """A detector of one query-log proportion; `outcomes` picks the 0/1 per query."""

    def fit(inputs: FitInput) -> RateShift | Off:
        window = inputs.observed.window
        if window is None:
            return Off("no [collections.query_log] configured")
        picked = outcomes(window)
        if picked is None:
            return Off(f"the query log has no {column} column")
        values, counted = picked
        if values.size < MIN_BASELINE_TRIALS:
            have = values.size
            return Off(f"the baseline's query-log window had {have} queries; needs {MIN_BASELINE_TRIALS}")
        return RateShift.fit(values, harmful, _blocks(window, counted, inputs.cycle_window))

    def score(state: RateShift, inputs: ScoreInput) -> DriftResult:
        window = inputs.observed.window
        picked = outcomes(window) if window is not None else None
        if picked is None:
            return DriftResult.insufficient(name, f"no {column} in this cycle's query-log window")
        return state.score(name, picked[0], inputs.alpha, inputs.fixed_threshold)

    return Detector(name=name, state=RateShift, fit=fit, score=score, **text)  # type: ignore[arg-type]


Outcomes = tuple[np.ndarray, np.ndarray]  # 0/1 per counted query, and which queries counted


def _blocks(window: QueryWindow, counted: np.ndarray, cycle_window: float | None) -> np.ndarray | None:
    """Which cycle-long slice of the baseline window each counted query fell in: the rate's
    spread between slices is the day-to-day noise a cycle's window shows."""
    if window.ts is None or cycle_window is None:
        return None
    ts = window.ts[counted]
    return np.floor((ts - ts.min()) / cycle_window).astype(np.int64) if ts.size else None


def _thumbs_down(window: QueryWindow) -> Outcomes | None:
    """Thumbs down among the queries that got any thumbs."""
    if window.thumbs is None:
        return None
    rated = window.thumbs != 0
    return (window.thumbs[rated] < 0).astype(np.int8), rated


def _reformulated(window: QueryWindow) -> Outcomes | None:
    if window.reformulated is None:
        return None
    return window.reformulated.astype(np.int8), np.ones(window.reformulated.size, bool)


def _clicked(window: QueryWindow) -> Outcomes | None:
    if window.clicked is None:
        return None
    return window.clicked.astype(np.int8), np.ones(window.clicked.size, bool)


REGISTRY.register(
    _ranking(
        "mrr_at_k",
        lambda suite: reciprocal_ranks(suite.ann.ids, suite.relevant, suite.k),
        meaning="How much the suite's mean reciprocal rank of the first relevant document fell, "
        "paired query by query with the baseline.",
        action="relevant documents slipped down the ranking (not necessarily out of the top K): "
        "check ef_search / probes, the index, and new near-duplicate content",
        label="MRR@K drop",
    )
)
REGISTRY.register(
    _ranking(
        "ndcg_at_k",
        lambda suite: ndcg(suite.ann.ids, suite.gains(), suite.k),
        meaning="How much the suite's nDCG@K (graded when the suite grades relevance) fell, paired "
        "query by query with the baseline.",
        action="the ranking of relevant documents got worse: see mrr_at_k and recall_at_k, then the "
        "index and the embedding model",
        label="nDCG@K drop",
    )
)
REGISTRY.register(
    _feedback(
        "click_rate",
        "drop",
        _clicked,
        "clicked_ids",
        meaning="Share of logged queries with at least one click, against the baseline's window "
        "(fires on a drop).",
        action="users click fewer results: retrieval got worse for them (a model push, an index change, "
        "new content crowding out the good answers); compare query-log model_versions and recall_at_k",
        label="click-rate drop",
    )
)
REGISTRY.register(
    _feedback(
        "negative_feedback_rate",
        "rise",
        _thumbs_down,
        "feedback",
        meaning="Share of thumbs down among queries that got any thumbs (fires on a rise).",
        action="users judge answers worse: read the window's thumbs-down queries (candidates export "
        "--source thumbs_down) and compare query-log model_versions",
        label="thumbs-down rise",
    )
)
REGISTRY.register(
    _feedback(
        "reformulation_rate",
        "rise",
        _reformulated,
        "session_id",
        meaning="Share of queries followed, within follow_up_window, by another query of the same "
        "session after no click or a thumbs down (fires on a rise).",
        action="users ask again in other words: the first answers miss; look at the reformulated "
        "queries and the follow_up triplets",
        label="reformulation rise",
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
        REGISTRY["new_territory"],
        meaning="Share of the rows that arrived since the baseline that are unlike anything the "
        "baseline had.",
        action="new rows land where the baseline had nothing (details.examples): a new topic arriving; "
        "decide whether it is wanted, then re-capture",
    )
)
REGISTRY.register(
    on_arrivals(
        REGISTRY["classifier_two_sample"],
        meaning="How well a linear model tells the rows that arrived since the baseline from baseline rows.",
        action="new rows are embedded differently from the old ones: a changed embedding function on the "
        "write path; check the writer's model and preprocessing",
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
