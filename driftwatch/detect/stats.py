"""The statistics the detectors share: divergences between histograms, bins frozen at
baseline time, binomial confidence bounds, and the null model that turns a drift
statistic into a threshold and a p-value at a given sample size.

Pure numpy/scipy on purpose: nothing here knows about databases or detectors, so every
number a detector reports can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

__all__ = [
    "NullModel",
    "bin_counts",
    "binomial_cdf",
    "binomial_lower_bound",
    "binomial_upper_bound",
    "design_effect",
    "fit_null",
    "holm",
    "js_divergence",
    "kl_divergence",
    "null_from_cumulants",
    "psi",
    "quantile_edges",
    "smoothed_proportions",
]

_NULL_QUANTILES = ("0.5", "0.9", "0.99")


def _vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


def _distribution(values: Any, name: str) -> np.ndarray:
    array = _vector(values, name)
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"{name} must have a positive sum")
    return array / total


def _pair(p: Any, q: Any, p_name: str, q_name: str) -> tuple[np.ndarray, np.ndarray]:
    p_, q_ = _distribution(p, p_name), _distribution(q, q_name)
    if p_.shape != q_.shape:
        raise ValueError(f"{p_name} has {p_.size} bins, {q_name} has {q_.size}")
    return p_, q_


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")


def psi(current_counts: Any, reference_props: Any, eps: float = 1e-4) -> float:
    """Population stability index of a current histogram against frozen reference proportions.

    `eps` floors empty bins on both sides (then each side is renormalised) so one empty
    bin yields a large but finite contribution instead of infinity.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    current, reference = _pair(current_counts, reference_props, "current_counts", "reference_props")
    current = np.maximum(current, eps)
    current /= current.sum()
    reference = np.maximum(reference, eps)
    reference /= reference.sum()
    return float(np.sum((current - reference) * np.log(current / reference)))


def kl_divergence(p: Any, q: Any) -> float:
    """KL(p || q) in nats, both normalised first (as `scipy.stats.entropy(p, q)`); inf where q = 0 < p."""
    p_, q_ = _pair(p, q, "p", "q")
    return float(np.sum(special.rel_entr(p_, q_)))


def js_divergence(p: Any, q: Any) -> float:
    """Jensen-Shannon divergence in nats: symmetric and bounded by ln 2, readable when KL explodes."""
    p_, q_ = _pair(p, q, "p", "q")
    mid = 0.5 * (p_ + q_)
    return float(0.5 * np.sum(special.rel_entr(p_, mid)) + 0.5 * np.sum(special.rel_entr(q_, mid)))


def smoothed_proportions(counts: Any, alpha: float = 0.5) -> np.ndarray:
    """Additive (Jeffreys, alpha=0.5) smoothing: an empty cell keeps a small share, so KL stays finite."""
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    array = _vector(counts, "counts")
    if np.any(array < 0):
        raise ValueError("counts must be non-negative")
    denominator = array.sum() + alpha * array.size
    if denominator <= 0:
        raise ValueError("counts are all zero and alpha is 0: no proportions to smooth")
    return (array + alpha) / denominator


def quantile_edges(values: Any, bins: int) -> np.ndarray:
    """Interior bin edges at the baseline's quantiles, frozen for the life of the baseline.

    Ties can make several quantiles equal; duplicates are dropped, so a heavy tie gets one
    bin of its own and fewer than `bins` bins may result.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    array = _vector(values, "values")
    if array.size == 0:
        raise ValueError("values must not be empty")
    return np.unique(np.quantile(array, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_counts(values: Any, edges: Any) -> np.ndarray:
    """Counts in len(edges)+1 bins [-inf, e0), [e0, e1), ..., [e_last, +inf)."""
    array = _vector(values, "values")
    edges_ = _vector(edges, "edges")
    if np.any(np.diff(edges_) <= 0):
        raise ValueError("edges must be strictly increasing")
    return np.bincount(np.searchsorted(edges_, array, side="right"), minlength=edges_.size + 1)


def _check_counts(successes: float, trials: float) -> None:
    if not (math.isfinite(successes) and math.isfinite(trials)):
        raise ValueError("successes and trials must be finite")
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be between 0 and trials ({trials}), got {successes}")


def binomial_lower_bound(successes: float, trials: float, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound: the rate is at least this with confidence 1-alpha.

    Non-integer counts are accepted (the beta form is continuous), for effective sample sizes.
    """
    _check_counts(successes, trials)
    _check_alpha(alpha)
    if successes == 0:
        return 0.0
    return float(sps.beta.ppf(alpha, successes, trials - successes + 1))


def binomial_upper_bound(successes: float, trials: float, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound: the rate is at most this with confidence 1-alpha."""
    _check_counts(successes, trials)
    _check_alpha(alpha)
    if successes == trials:
        return 1.0
    return float(sps.beta.isf(alpha, successes + 1, trials - successes))


def binomial_cdf(successes: float, trials: float, p: float) -> float:
    """P(X <= successes) for X ~ Binomial(trials, p), in the beta form that also takes effective counts."""
    _check_counts(successes, trials)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be between 0 and 1, got {p}")
    if successes >= trials or p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    return float(sps.beta.sf(p, successes + 1, trials - successes))


def design_effect(hits: Any, trials: Any) -> float:
    """How much wider than a binomial over all trials the uncertainty of sum(hits)/sum(trials)
    is when trials come in clusters (queries) whose hits rise and fall together: a query that
    misses one relevant id tends to miss them all. Kish's design effect, the ratio
    estimator's variance over the binomial one; floored at 1, so dividing counts by it
    never makes a bound narrower than the plain binomial."""
    hits_, trials_ = _vector(hits, "hits"), _vector(trials, "trials")
    if hits_.shape != trials_.shape:
        raise ValueError(f"hits has {hits_.size} entries, trials has {trials_.size}")
    total, clusters = trials_.sum(), np.count_nonzero(trials_)
    rate = hits_.sum() / total if total > 0 else 0.0
    if clusters < 2 or rate <= 0.0 or rate >= 1.0:
        return 1.0
    ratio_variance = clusters / (clusters - 1) * np.sum((hits_ - rate * trials_) ** 2) / total**2
    return max(1.0, float(ratio_variance / (rate * (1.0 - rate) / total)))


@dataclass(frozen=True)
class NullModel:
    """The no-drift distribution of one statistic for a current sample of `n` rows
    compared with a reference of effective size `m`: a gamma (`shape`, `scale`), shifted
    by `loc`, fitted to bootstrap replicates.

    Drift statistics (PSI, KL, cosine distance of means) are asymptotically weighted sums
    of chi-square variables, whose tail a gamma follows well, so a thousand replicates give
    a usable quantile at alpha = 0.001 where an empirical one would need a hundred thousand.
    The two-moment gamma (Satterthwaite) is exact for equal weights (histogram
    divergences) but, by Cauchy-Schwarz, under-states the skew of unequal ones; for the
    centroid of a topic-structured population it fired 4x too often at alpha = 0.001. So
    the fit also matches the skewness (Pearson type III), never below the two-moment
    gamma's, which keeps `loc` at 0 or above. The skewness is what needs ~1,000 replicates;
    with 200 the tail was still 2x too light on average and 14x on an unlucky baseline.

    A degenerate null (every replicate equal, `scale == 0`) has threshold `mean`, p-value
    1 for values at or below it and 0 above: any change at all is then surprising.
    """

    n: int
    m: int
    mean: float
    sd: float
    quantiles: dict[str, float]
    shape: float
    scale: float
    replicates: int
    loc: float = 0.0

    def threshold(self, alpha: float) -> float:
        """The value a no-drift cycle exceeds with probability alpha."""
        _check_alpha(alpha)
        if self.scale == 0.0:
            return self.mean
        return float(self.loc + sps.gamma.isf(alpha, self.shape, scale=self.scale))

    def p_value(self, value: float) -> float:
        """Probability that a no-drift cycle scores at least `value`."""
        if math.isnan(value):
            raise ValueError("value must not be NaN")
        if self.scale == 0.0:
            return 1.0 if value <= self.mean else 0.0
        return float(sps.gamma.sf(value - self.loc, self.shape, scale=self.scale))

    def rescaled(self, n_new: int) -> NullModel:
        """The same null at another current-sample size: these statistics scale like 1/n + 1/m.

        Exact only asymptotically; a detector that can afford it recomputes the null instead.
        """
        if n_new < 1:
            raise ValueError(f"n_new must be at least 1, got {n_new}")
        factor = (1.0 / n_new + 1.0 / self.m) / (1.0 / self.n + 1.0 / self.m)
        return replace(
            self,
            n=int(n_new),
            mean=self.mean * factor,
            sd=self.sd * factor,
            quantiles={key: value * factor for key, value in self.quantiles.items()},
            scale=self.scale * factor,
            loc=self.loc * factor,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "m": self.m,
            "mean": self.mean,
            "sd": self.sd,
            "quantiles": dict(self.quantiles),
            "shape": self.shape,
            "scale": self.scale,
            "loc": self.loc,
            "replicates": self.replicates,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NullModel:
        return cls(
            n=int(data["n"]),
            m=int(data["m"]),
            mean=float(data["mean"]),
            sd=float(data["sd"]),
            quantiles={str(key): float(value) for key, value in data["quantiles"].items()},
            shape=float(data["shape"]),
            scale=float(data["scale"]),
            replicates=int(data["replicates"]),
            loc=float(data.get("loc", 0.0)),
        )


def fit_null(replicates: np.ndarray, n: int, m: int) -> NullModel:
    """Fit a shifted gamma by the method of moments (mean, sd, skewness) to bootstrap
    replicates of a non-negative statistic (see `NullModel`).

    A spread below 1e-9 of the mean is rounding noise, not a distribution: the null is
    then degenerate rather than a gamma with an absurd shape.
    """
    values = _vector(replicates, "replicates")
    if values.size < 3:
        raise ValueError(f"need at least 3 replicates, got {values.size}")
    if np.any(values < 0):
        raise ValueError("replicates must be non-negative")
    if n < 1 or m < 1:
        raise ValueError(f"n and m must be at least 1, got n={n}, m={m}")
    mean = float(values.mean())
    sd = float(values.std(ddof=1))
    quantiles = {key: float(np.quantile(values, float(key))) for key in _NULL_QUANTILES}
    if mean <= 0.0 or sd <= 1e-9 * mean:
        return NullModel(int(n), int(m), mean, 0.0, quantiles, 0.0, 0.0, int(values.size))
    skew = max(float(sps.skew(values, bias=False)), 2.0 * sd / mean)
    shape, scale = 4.0 / skew**2, sd * skew / 2.0
    loc = max(0.0, mean - shape * scale)  # >= 0 by the floor on skew; max() only absorbs rounding
    return NullModel(int(n), int(m), mean, sd, quantiles, shape, scale, int(values.size), loc)


def null_from_cumulants(mean: float, variance: float, third: float, n: int, m: int) -> NullModel:
    """The shifted gamma (Pearson type III) with these first three cumulants, as a
    `NullModel`: for statistics whose cumulants are known in closed form at any n (a squared
    distance of means is a weighted non-central chi-square), so no replicates are drawn.
    The skewness is floored as in `fit_null` (never below the two-moment gamma's).

    Three cumulants cannot see the largest weight, which alone sets the far tail: for
    weights falling like 1/i the false-alarm rate at the threshold is alpha at 0.05 and
    0.01, 1.2-1.4 alpha at 0.001 and up to 2 alpha at 0.0001 (measured, tests/test_stats.py);
    for the flatter spectra of real embeddings it is closer."""
    if not (math.isfinite(mean) and math.isfinite(variance) and math.isfinite(third)):
        raise ValueError("cumulants must be finite")
    if n < 1 or m < 1:
        raise ValueError(f"n and m must be at least 1, got n={n}, m={m}")
    if mean <= 0.0 or variance <= 0.0:
        return NullModel(
            int(n), int(m), max(mean, 0.0), 0.0, {k: max(mean, 0.0) for k in _NULL_QUANTILES}, 0.0, 0.0, 0
        )
    sd = math.sqrt(variance)
    skew = max(third / sd**3, 2.0 * sd / mean)
    shape, scale = 4.0 / skew**2, sd * skew / 2.0
    loc = max(0.0, mean - shape * scale)
    quantiles = {key: float(loc + sps.gamma.ppf(float(key), shape, scale=scale)) for key in _NULL_QUANTILES}
    return NullModel(int(n), int(m), float(mean), sd, quantiles, shape, scale, 0, loc)


def holm(p_values: dict[str, float | None], false_alarm_rate: float) -> dict[str, bool]:
    """Which detectors reject with the family-wise false-alarm rate held at
    `false_alarm_rate` (Holm's step-down: the i-th smallest of m p-values is compared with
    rate / (m - i), stopping at the first that fails). Detectors without a p-value (they
    did not run, or are rules, not tests) are left out of the family and reported False.

    Holm holds the family-wise rate for any dependence between the tests, so detectors
    that look at the same sample need no independence assumption."""
    _check_alpha(false_alarm_rate)
    tested = {name: p for name, p in p_values.items() if p is not None}
    for name, p in tested.items():
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"p-value of {name} must be between 0 and 1, got {p}")
    rejects = dict.fromkeys(p_values, False)
    ordered = sorted(tested.items(), key=lambda item: (item[1], item[0]))
    for rank, (name, p) in enumerate(ordered):
        if p > false_alarm_rate / (len(ordered) - rank):
            break
        rejects[name] = True
    return rejects
