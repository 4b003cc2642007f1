"""The drift methods bench/peers.py compares: one adapter each, and what they report.

Each adapter runs inside a worker (bench/peers_worker.py) in the virtual environment that
has its library: driftwatch in the project's .venv, each peer in bench/.peers/NAME. The
driver imports this module too, for the metadata only, so only numpy is imported at the
top; every library is imported inside its adapter.

An adapter has two steps. `setup(reference, n, seed)` is what is done once per baseline
(driftwatch's baseline fit, alibi-detect's detector construction, NannyML's fit; Evidently
has none: it keeps the reference and recomputes everything per call). `test(state,
current, seed)` is what every check costs and returns the variants: {"stat": float,
"default": bool}, the statistic oriented so that higher means more drift (the driver
calibrates every method's threshold on it) and the method's own verdict with its
documented defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Variants = dict[str, dict[str, Any]]

DRIFTWATCH_ALPHA = 0.001  # config default `false_alarm_rate`
# driftwatch's population detectors reported on their own next to the cycle's verdict
WATCHED = ("classifier_two_sample", "new_territory", "centroid_distance", "spatial_kl")
PSI_QUERIES = 1000  # live queries per window for score_psi (see its note)
PSI_TOP_K = 10
PSI_REPLICATES = 1000  # config default `null_replicates`


@dataclass(frozen=True)
class Method:
    name: str  # key in results and on the command line
    env: str  # "driftwatch" or the peer venv under bench/.peers/
    label: str  # for the tables
    variants: tuple[str, ...]  # what `test` returns; the first is the method's headline
    default_rule: str  # its own verdict, in words
    nominal: float | None  # the false-alarm rate its default claims (None: a fixed threshold, no claim)
    ladder: str  # how it is cut down when over budget: "none", "equal" or "ratio" (see peers.py)
    quadratic: bool = False  # memory grows with the square of the rows (kernel matrices)
    note: str = ""
    timing_only: bool = False  # measured for cost, not in the power runs


def memory_estimate(method: Method, reference_rows: int, current_rows: int, dim: int) -> float:
    """Bytes a kernel method needs at least (its (m+n)^2 matrix and the copies it makes);
    sizes that cannot fit in memory are not tried."""
    if not method.quadratic:
        return 0.0
    rows = float(reference_rows + current_rows)
    return 3 * 8.0 * rows**2 if method.env == "evidently" else 4 * 4.0 * rows**2


# --- driftwatch -------------------------------------------------------------------------


def _settings(n: int) -> Any:
    """A collection with the config defaults and sample size n (as bench/detection_power.py)."""
    from driftwatch.config import settings_from_dict

    raw = {"name": "bench", "dsn": "postgresql://bench@127.0.0.1/none", "table": "docs", "sample_size": n}
    return settings_from_dict({"collections": [raw]}, env={}).collections[0]


def _observation(rows: np.ndarray) -> Any:
    """The rows as a cycle's (or a capture's) uniform sample of a large table: what `cycle.score`
    and `baseline.fit` see after the read (bench/detection_power.py's `_sample`)."""
    from driftwatch.detect.observation import Observation, VectorSample

    sample = VectorSample(
        vectors=rows, ids=[str(i) for i in range(len(rows))], versions={"v1": len(rows)},
        method="tid", dim=rows.shape[1], rows_sampled=len(rows), null_vectors=0, wrong_dim=0,
        dims_seen={rows.shape[1]: len(rows)}, table_pages=10**6, table_rows_estimate=10**8,
        pages_probed=0,
    )  # fmt: skip
    return Observation(sample=sample, window=None, suite=None, sentinels={})


def _setup_driftwatch(reference: np.ndarray, n: int, seed: int) -> Any:
    """`baseline.fit` on the 6n rows, as `baseline capture` calls it: every registered detector
    fits on n of them and calibrates its null on the other 5n."""
    from driftwatch.baseline import fit

    settings = _settings(n)
    fitted, *_ = fit(settings, _observation(reference), np.random.default_rng(seed), lambda _message: None)
    return settings, fitted


def _stat(p: float | None) -> float:
    return -math.log10(max(p, 1e-300)) if p is not None else 0.0


def _test_driftwatch(state: Any, current: np.ndarray, seed: int) -> Variants:
    """`cycle.score` on the window and the cycle's verdict, `detect.verdict`: Holm over the
    population detectors that measured (no arrivals: the peers see one window, and no query
    log, suite or canary)."""
    from driftwatch.cycle import score
    from driftwatch.detect.verdict import verdict

    settings, fitted = state
    results, _ = score(settings, fitted, _observation(current))
    alpha = settings.false_alarm_rate
    by_name = {r.detector: r for r in results if r.value is not None}
    tested = {name: r.p_value for name, r in by_name.items() if r.p_value is not None}
    # Holm rejects something exactly when the smallest p times the family's size is <= alpha:
    # that product (the Holm-adjusted smallest p) is the verdict's statistic.
    adjusted = min(1.0, min(tested.values()) * len(tested)) if tested else 1.0
    variants: Variants = {
        "verdict": {
            "stat": _stat(adjusted),
            "default": verdict(results, alpha).drift,
            "default_05": verdict(results, 0.05).drift,
        }
    }
    for name in WATCHED:
        result = by_name.get(name)
        if result is None:
            continue
        p = result.p_value
        variants[name] = {
            "stat": float(result.value),
            "default": bool(result.drifted),
            "default_05": p is not None and p <= 0.05,
        }
    first_wave = [by_name[n].p_value for n in ("centroid_distance", "spatial_kl") if n in by_name]
    first_wave = [p for p in first_wave if p is not None]
    if first_wave:  # today's two first-wave detectors alone, on the smaller p-value, no correction
        variants["centroid_or_spatial"] = {
            "stat": _stat(min(first_wave)),
            "default": any(by_name[n].drifted for n in ("centroid_distance", "spatial_kl") if n in by_name),
            "default_05": min(first_wave) <= 0.05,
        }
    return variants


def _top_scores(queries: np.ndarray, corpus_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ corpus_unit.T
    top = -np.partition(-similarity, kth=PSI_TOP_K - 1, axis=1)[:, :PSI_TOP_K]
    return top.max(axis=1).astype(np.float64), top.mean(axis=1).astype(np.float64)


def _setup_driftwatch_psi(reference: np.ndarray, n: int, seed: int) -> Any:
    """score_psi watches the top-1 similarity of live queries against the store. Here the
    store is the baseline's n fit rows, the baseline queries are PSI_QUERIES held-out
    baseline rows and the live queries PSI_QUERIES current rows, scored exactly."""
    from driftwatch.detect.detectors import ScorePSI

    corpus = reference[:n] / np.linalg.norm(reference[:n], axis=1, keepdims=True)
    queries = reference[n : n + min(PSI_QUERIES, len(reference) - n)]
    top1, topk = _top_scores(queries, corpus)
    return ScorePSI.fit(top1, topk, np.random.default_rng(seed), replicates=PSI_REPLICATES), corpus


def _test_driftwatch_psi(state: Any, current: np.ndarray, seed: int) -> Variants:
    psi, corpus = state
    top1, topk = _top_scores(current[:PSI_QUERIES], corpus)
    result = psi.score(top1, topk, DRIFTWATCH_ALPHA)
    default_05 = bool(result.value > psi.null_at(len(top1)).threshold(0.05))
    return {"score_psi": {"stat": result.value, "default": result.drifted, "default_05": default_05}}


# --- Evidently ------------------------------------------------------------------------------


def _frame(rows: np.ndarray) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=[f"e{i}" for i in range(rows.shape[1])])


def _keep(reference: np.ndarray, n: int, seed: int) -> Any:
    return reference


def _evidently(make: Callable[[int], Any]) -> Callable[[Any, np.ndarray, int], Variants]:
    """Evidently's drift methods, called as EmbeddingsDriftMetric.calculate calls them:
    method(current columns, reference columns) -> (score, drift_detected, name). The
    metric also fits a t-SNE of up to 2,500 + 2,500 rows for its plot on every call; that
    is timed on its own (`evidently_report`)."""

    def test(reference: np.ndarray, current: np.ndarray, seed: int) -> Variants:
        score, drifted, _ = make(len(reference))(_frame(current), _frame(reference))
        return {"value": {"stat": float(score), "default": bool(drifted)}}

    return test


def _evidently_model(reference_rows: int) -> Any:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    return model(bootstrap=reference_rows < 1000)  # exactly EmbeddingsDriftMetric's default


def _evidently_mmd(_rows: int) -> Any:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import mmd

    return mmd()


def _evidently_distance(_rows: int) -> Any:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import distance

    return distance()


def _evidently_ratio(_rows: int) -> Any:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import ratio

    return ratio()


def _test_evidently_report(reference: np.ndarray, current: np.ndarray, seed: int) -> Variants:
    """The whole legacy Report with EmbeddingsDriftMetric (default method), as a user runs it."""
    from evidently.legacy.metrics import EmbeddingsDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    ref_df, cur_df = _frame(reference), _frame(current)
    report = Report(metrics=[EmbeddingsDriftMetric("emb")])
    report.run(
        reference_data=ref_df,
        current_data=cur_df,
        column_mapping=ColumnMapping(embeddings={"emb": list(ref_df.columns)}),
    )
    result = report.as_dict()["metrics"][0]["result"]
    return {"value": {"stat": float(result["drift_score"]), "default": bool(result["drift_detected"])}}


# --- alibi-detect ---------------------------------------------------------------------------


def _setup_alibi_mmd(reference: np.ndarray, n: int, seed: int) -> Any:
    """MMDDrift with the pytorch backend and its defaults: Gaussian RBF kernel with the
    bandwidth from the median heuristic on the reference, 100 permutations, p_val 0.05."""
    from alibi_detect.cd import MMDDrift

    return MMDDrift(np.ascontiguousarray(reference), backend="pytorch", p_val=0.05, device="cpu")


def _test_alibi_mmd(detector: Any, current: np.ndarray, seed: int) -> Variants:
    import torch

    torch.manual_seed(seed)
    data = detector.predict(np.ascontiguousarray(current))["data"]
    return {"mmd2": {"stat": float(data["distance"]), "default": bool(data["is_drift"])}}


def _setup_alibi_ks(reference: np.ndarray, n: int, seed: int) -> Any:
    """KSDrift with its defaults: a KS test per dimension, Bonferroni correction, p_val 0.05."""
    from alibi_detect.cd import KSDrift

    return KSDrift(np.ascontiguousarray(reference), p_val=0.05)


def _test_alibi_ks(detector: Any, current: np.ndarray, seed: int) -> Variants:
    data = detector.predict(np.ascontiguousarray(current))["data"]
    smallest = float(np.min(data["p_val"]))
    return {"min_p": {"stat": -math.log10(max(smallest, 1e-300)), "default": bool(data["is_drift"])}}


# --- NannyML --------------------------------------------------------------------------------


def _setup_nannyml_dre(reference: np.ndarray, n: int, seed: int) -> Any:
    """DataReconstructionDriftCalculator with its defaults (PCA keeping 65% of the variance,
    alert outside mean +- 3 sd of the reference chunks). A chunk is one current window, so
    chunk_size = n and the baseline is several chunks."""
    import nannyml as nml

    frame = _frame(reference)
    return nml.DataReconstructionDriftCalculator(column_names=list(frame.columns), chunk_size=n).fit(frame)


def _test_nannyml_dre(calc: Any, current: np.ndarray, seed: int) -> Variants:
    """Its alert is two-sided (outside mean +- 3 sd of the baseline's chunks), so the
    statistic is the distance from that mean in those standard deviations."""
    result = calc.calculate(_frame(current))
    column = ("reconstruction_error", "value")
    frame = result.filter(period="analysis").to_df()
    chunks = result.filter(period="reference").to_df()[column].to_numpy(dtype=float)
    value = float(frame[column].iloc[0])
    spread = max(float(np.nanstd(chunks)), 1e-12)
    alert = bool(frame[("reconstruction_error", "alert")].iloc[0])
    return {
        "reconstruction_error": {"stat": abs(value - float(np.nanmean(chunks))) / spread, "default": alert}
    }


def _setup_nannyml_dc(reference: np.ndarray, n: int, seed: int) -> Any:
    """DomainClassifierCalculator with its defaults (LightGBM, 5-fold CV AUROC per chunk,
    alert outside 0.45-0.65); chunk_size = n as for data reconstruction."""
    import nannyml as nml

    frame = _frame(reference)
    return nml.DomainClassifierCalculator(feature_column_names=list(frame.columns), chunk_size=n).fit(frame)


def _test_nannyml_dc(calc: Any, current: np.ndarray, seed: int) -> Variants:
    frame = calc.calculate(_frame(current)).filter(period="analysis").to_df()
    value = float(frame[("domain_classifier_auroc", "value")].iloc[0])
    alert = bool(frame[("domain_classifier_auroc", "alert")].iloc[0])
    return {"auroc": {"stat": value, "default": alert}}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "driftwatch",
            "driftwatch",
            "driftwatch (cycle verdict)",
            ("verdict", *WATCHED, "centroid_or_spatial"),
            f"Holm over the population detectors that measured, family-wise α = {DRIFTWATCH_ALPHA} "
            "(config default); a detector alone: p <= α",
            DRIFTWATCH_ALPHA,
            "none",
            note="`baseline.fit` on the 6n rows (reference n, held out 5n), `cycle.score` and "
            "`detect.verdict` on the window with the config defaults; no arrivals (one window); "
            "the verdict is calibrated on -log10 of the Holm-adjusted smallest p (the smallest p "
            "times the number of detectors that measured), a detector alone on its value, "
            "'centroid or spatial' on the smaller of those two p-values",
        ),
        Method(
            "driftwatch_psi",
            "driftwatch",
            "driftwatch score_psi",
            ("score_psi",),
            f"PSI > its calibrated threshold at α = {DRIFTWATCH_ALPHA}",
            DRIFTWATCH_ALPHA,
            "none",
            note=f"{PSI_QUERIES} current rows as queries against the baseline's n fit rows (exact top-"
            f"{PSI_TOP_K}); a query-log detector, not part of driftwatch's verdict on the stored vectors",
        ),
        Method(
            "evidently_model",
            "evidently",
            "Evidently model (default)",
            ("value",),
            "ROC AUC > 0.55 (bootstrap when reference < 1,000 rows)",
            None,
            "equal",
            note="SGD domain classifier on a 50/50 split",
        ),
        Method(
            "evidently_mmd",
            "evidently",
            "Evidently mmd",
            ("value",),
            "MMD² > 0.015",
            None,
            "equal",
            quadratic=True,
            note="RBF kernel, median-heuristic bandwidth",
        ),
        Method(
            "evidently_distance",
            "evidently",
            "Evidently distance",
            ("value",),
            "euclidean distance of the means > 0.2",
            None,
            "equal",
        ),
        Method(
            "evidently_ratio",
            "evidently",
            "Evidently ratio",
            ("value",),
            "share of dimensions with normed Wasserstein > 0.1 is > 0.2",
            None,
            "equal",
        ),
        Method(
            "alibi_mmd",
            "alibi",
            "alibi-detect MMDDrift",
            ("mmd2",),
            "permutation p < 0.05",
            0.05,
            "equal",
            quadratic=True,
            note="pytorch backend, 100 permutations",
        ),
        Method(
            "alibi_ks",
            "alibi",
            "alibi-detect KSDrift",
            ("min_p",),
            "min p < 0.05 / d (Bonferroni)",
            0.05,
            "equal",
            note="calibrated on -log10 of the smallest p-value",
        ),
        Method(
            "nannyml_dre",
            "nannyml",
            "NannyML data reconstruction",
            ("reconstruction_error",),
            "outside mean ± 3 sd of the baseline's chunks",
            None,
            "ratio",
            note="chunk = one current window; calibrated on |error - mean| / sd over the baseline's chunks",
        ),
        Method(
            "nannyml_dc",
            "nannyml",
            "NannyML domain classifier",
            ("auroc",),
            "AUROC outside 0.45-0.65",
            None,
            "ratio",
            note="LightGBM, 5-fold CV per chunk, chunk = one current window",
        ),
        Method(
            "evidently_report",
            "evidently",
            "Evidently Report (default method + its t-SNE plot)",
            ("value",),
            "as Evidently model",
            None,
            "none",
            note="cost only",
            timing_only=True,
        ),
    )
}

STEPS: dict[str, tuple[Callable[[np.ndarray, int, int], Any], Callable[[Any, np.ndarray, int], Variants]]] = {
    "driftwatch": (_setup_driftwatch, _test_driftwatch),
    "driftwatch_psi": (_setup_driftwatch_psi, _test_driftwatch_psi),
    "evidently_model": (_keep, _evidently(_evidently_model)),
    "evidently_mmd": (_keep, _evidently(_evidently_mmd)),
    "evidently_distance": (_keep, _evidently(_evidently_distance)),
    "evidently_ratio": (_keep, _evidently(_evidently_ratio)),
    "evidently_report": (_keep, _test_evidently_report),
    "alibi_mmd": (_setup_alibi_mmd, _test_alibi_mmd),
    "alibi_ks": (_setup_alibi_ks, _test_alibi_ks),
    "nannyml_dre": (_setup_nannyml_dre, _test_nannyml_dre),
    "nannyml_dc": (_setup_nannyml_dc, _test_nannyml_dc),
}

# What each environment's worker imports at start (so imports are not timed) and reports the versions of.
ENV_IMPORTS: dict[str, tuple[str, ...]] = {
    "driftwatch": ("driftwatch.detect.detectors",),
    "evidently": (
        "evidently.legacy.metrics.data_drift.embedding_drift_methods",
        "evidently.legacy.report",
        "sklearn",
    ),
    "alibi": ("torch", "alibi_detect.cd"),
    "nannyml": ("nannyml", "sklearn"),
}
ENV_PACKAGES: dict[str, tuple[str, ...]] = {
    "driftwatch": ("driftwatch", "numpy", "scipy"),
    "evidently": ("evidently", "numpy", "scipy", "pandas", "scikit-learn"),
    "alibi": ("alibi-detect", "torch", "numpy", "scipy", "scikit-learn"),
    "nannyml": ("nannyml", "numpy", "scipy", "pandas", "scikit-learn", "lightgbm"),
}
