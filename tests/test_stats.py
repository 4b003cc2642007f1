"""The statistics primitives against independent calculations: hand arithmetic, scipy,
closed forms. No database."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftwatch.detect import stats
from driftwatch.detect.stats import (
    NullModel,
    bin_counts,
    binomial_cdf,
    binomial_lower_bound,
    binomial_upper_bound,
    design_effect,
    fit_null,
    holm,
    js_divergence,
    kl_divergence,
    null_from_cumulants,
    psi,
    quantile_edges,
    smoothed_proportions,
)


def test_all_is_exactly_the_public_surface() -> None:
    public = {
        name
        for name, obj in vars(stats).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == stats.__name__
    }
    assert sorted(stats.__all__) == sorted(public)


def test_psi_matches_hand_computation() -> None:
    # current proportions 0.3, 0.5, 0.2 against 0.3, 0.4, 0.3
    expected = 0.0 + 0.1 * math.log(0.5 / 0.4) + (-0.1) * math.log(0.2 / 0.3)
    assert psi([30, 50, 20], [0.3, 0.4, 0.3]) == pytest.approx(expected, rel=1e-12)
    assert psi([30, 50, 20], [0.3, 0.4, 0.3]) == pytest.approx(0.06286086594223741, rel=1e-12)


def test_psi_floors_empty_bins_on_both_sides_then_renormalises() -> None:
    eps = 1e-4
    current = [0.25, 0.0, 0.75]  # counts 10, 0, 30
    reference = [0.5, 0.5, 0.0]
    c = [max(x, eps) for x in current]
    c = [x / sum(c) for x in c]
    r = [max(x, eps) for x in reference]
    r = [x / sum(r) for x in r]
    expected = sum((ci - ri) * math.log(ci / ri) for ci, ri in zip(c, r, strict=True))
    assert psi([10, 0, 30], reference, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(psi([10, 0, 30], reference))


def test_psi_of_identical_histograms_is_zero_and_psi_is_symmetric() -> None:
    assert psi([5, 10, 85], [0.05, 0.1, 0.85]) == pytest.approx(0.0, abs=1e-15)
    assert psi([20, 30, 50], [0.5, 0.3, 0.2]) == pytest.approx(psi([50, 30, 20], [0.2, 0.3, 0.5]), rel=1e-12)


def test_kl_matches_scipy_entropy() -> None:
    rng = np.random.default_rng(7)
    for bins in (2, 5, 33):
        p = rng.dirichlet(np.ones(bins)) * 17.0  # unnormalised on purpose, as entropy accepts
        q = rng.dirichlet(np.ones(bins))
        assert kl_divergence(p, q) == pytest.approx(float(sps.entropy(p, q)), rel=1e-12)
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf == sps.entropy([0.5, 0.5], [1.0, 0.0])
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2.0), rel=1e-12)


def test_js_matches_its_definition() -> None:
    rng = np.random.default_rng(8)
    for bins in (2, 7, 40):
        p, q = rng.dirichlet(np.ones(bins)), rng.dirichlet(np.ones(bins))
        m = 0.5 * (p + q)
        by_hand = 0.5 * sum(a * math.log(a / b) for a, b in zip(p, m, strict=True)) + 0.5 * sum(
            a * math.log(a / b) for a, b in zip(q, m, strict=True)
        )
        assert js_divergence(p, q) == pytest.approx(by_hand, rel=1e-12)
        assert js_divergence(p, q) == pytest.approx(float(jensenshannon(p, q)) ** 2, rel=1e-9)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2.0), rel=1e-12)


def test_smoothed_proportions_are_jeffreys() -> None:
    np.testing.assert_allclose(smoothed_proportions([0, 2, 8]), np.array([0.5, 2.5, 8.5]) / 11.5, rtol=1e-15)
    np.testing.assert_allclose(smoothed_proportions([0, 2, 8], alpha=0.0), [0.0, 0.2, 0.8], rtol=1e-15)
    with pytest.raises(ValueError, match=r"^counts are all zero and alpha is 0: no proportions to smooth$"):
        smoothed_proportions([0, 0], alpha=0.0)


def test_quantile_edges_are_unique_under_ties_and_bins_cover_everything() -> None:
    values = np.array([1.0] * 60 + list(np.linspace(0.0, 0.9, 40)))
    edges = quantile_edges(values, 10)
    assert np.all(np.diff(edges) > 0)
    assert edges.size < 9  # the tie at 1.0 collapsed several quantiles into one edge
    counts = bin_counts(values, edges)
    assert counts.size == edges.size + 1
    assert counts.sum() == values.size
    assert counts[-1] == 60  # the tie has a bin of its own


def test_quantile_edges_split_a_continuous_sample_evenly() -> None:
    values = np.random.default_rng(3).normal(size=10_000)
    counts = bin_counts(values, quantile_edges(values, 10))
    assert counts.tolist() == [1000] * 10


def test_bin_counts_has_open_outer_bins_and_half_open_inner_ones() -> None:
    assert bin_counts([-5.0, 0.0, 0.5, 1.0, 7.0], [0.0, 1.0]).tolist() == [1, 2, 2]
    assert bin_counts([], [0.0]).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"^edges must be strictly increasing$"):
        bin_counts([1.0], [1.0, 1.0])


def test_errors_are_plain_value_errors_with_exact_messages() -> None:
    with pytest.raises(ValueError, match=r"^current_counts has 2 bins, reference_props has 3$"):
        psi([1, 2], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"^current_counts must be non-negative$"):
        psi([1, -2], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"^p must be finite$"):
        kl_divergence([np.nan, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"^bins must be at least 2, got 1$"):
        quantile_edges([1.0, 2.0], 1)
    with pytest.raises(ValueError, match=r"^alpha must be between 0 and 1, got 1.5$"):
        binomial_lower_bound(3, 10, 1.5)


def test_binomial_bounds_are_one_sided_clopper_pearson() -> None:
    alpha = 0.025
    ci = sps.binomtest(37, 120).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    assert binomial_lower_bound(37, 120, alpha) == pytest.approx(ci.low, rel=1e-10)
    assert binomial_upper_bound(37, 120, alpha) == pytest.approx(ci.high, rel=1e-10)
    # closed forms at the edges
    assert binomial_lower_bound(0, 50, 0.01) == 0.0
    assert binomial_upper_bound(0, 50, 0.01) == pytest.approx(1 - 0.01 ** (1 / 50), rel=1e-10)
    assert binomial_upper_bound(50, 50, 0.01) == 1.0
    assert binomial_lower_bound(50, 50, 0.01) == pytest.approx(0.01 ** (1 / 50), rel=1e-10)
    with pytest.raises(ValueError, match=r"^successes must be between 0 and trials \(10\), got 11$"):
        binomial_upper_bound(11, 10, 0.05)


def test_binomial_cdf_matches_scipy_for_whole_counts() -> None:
    for k in (0, 3, 17, 40):
        assert binomial_cdf(k, 40, 0.3) == pytest.approx(float(sps.binom.cdf(k, 40, 0.3)), rel=1e-9)
    assert binomial_cdf(5, 10, 0.0) == 1.0
    assert binomial_cdf(5, 10, 1.0) == 0.0


def test_design_effect_is_the_ratio_estimators_variance_over_the_binomial() -> None:
    rng = np.random.default_rng(10)
    trials = rng.integers(1, 11, size=400)
    rates = rng.beta(2.0, 1.0, size=400)  # queries differ: hits cluster within a query
    hits = rng.binomial(trials, rates)
    r = hits.sum() / trials.sum()
    # the variance of a ratio of sums over clusters, written out
    by_hand = 400 / 399 * sum((h - r * t) ** 2 for h, t in zip(hits, trials, strict=True)) / trials.sum() ** 2
    expected = by_hand / (r * (1 - r) / trials.sum())
    assert design_effect(hits, trials) == pytest.approx(expected, rel=1e-12)
    assert expected > 1.5
    independent = rng.binomial(10, 0.7, size=400)
    assert design_effect(independent, np.full(400, 10)) == pytest.approx(1.0, abs=0.2)
    assert design_effect(10 * rng.binomial(1, 0.7, size=400), np.full(400, 10)) == pytest.approx(10, rel=0.05)
    assert design_effect([3, 3], [3, 3]) == 1.0  # no variance to speak of


def test_null_fitted_to_a_gamma_recovers_its_quantiles() -> None:
    rng = np.random.default_rng(11)
    shape, scale = 4.5, 0.002  # PSI of 10 bins at n=1000 looks like this
    null = fit_null(rng.gamma(shape, scale, size=20_000), n=1000, m=5000)
    truth = sps.gamma(shape, scale=scale)
    for alpha in (0.05, 0.001):
        assert null.threshold(alpha) == pytest.approx(truth.isf(alpha), rel=0.05)
    assert null.p_value(null.threshold(0.01)) == pytest.approx(0.01, rel=1e-6)
    assert null.loc == pytest.approx(0.0, abs=0.1 * null.mean)


def test_null_follows_the_heavier_tail_of_unequal_chi_square_weights() -> None:
    # One dominant direction plus many small ones: the shape of a centroid statistic on
    # anisotropic embeddings. A two-moment gamma under-states this tail.
    rng = np.random.default_rng(12)
    weights = np.array([8.0, 3.0] + [0.3] * 40)
    replicates = (rng.normal(size=(2_000, weights.size)) ** 2) @ weights
    truth = np.quantile((rng.normal(size=(400_000, weights.size)) ** 2) @ weights, 0.999)
    null = fit_null(replicates, n=100, m=1000)
    mean, var = replicates.mean(), replicates.var(ddof=1)
    two_moment = sps.gamma.isf(0.001, mean**2 / var, scale=var / mean)
    assert two_moment < null.threshold(0.001)
    assert abs(null.threshold(0.001) - truth) < abs(two_moment - truth)


def test_null_summaries_and_json_round_trip() -> None:
    rng = np.random.default_rng(13)
    null = fit_null(rng.gamma(3.0, 0.01, size=200), n=500, m=4000)
    assert null.replicates == 200 and null.n == 500 and null.m == 4000
    assert set(null.quantiles) == {"0.5", "0.9", "0.99"}
    assert null.threshold(0.001) > null.quantiles["0.99"] > null.quantiles["0.9"] > null.quantiles["0.5"]
    again = NullModel.from_dict(json.loads(json.dumps(null.to_dict())))
    assert again == null
    assert again.threshold(0.001) == null.threshold(0.001)


def test_rescaled_null_scales_like_one_over_n_plus_one_over_m() -> None:
    null = fit_null(np.random.default_rng(14).gamma(3.0, 0.01, size=500), n=500, m=4000)
    bigger = null.rescaled(2000)
    factor = (1 / 2000 + 1 / 4000) / (1 / 500 + 1 / 4000)
    assert bigger.n == 2000 and bigger.m == 4000
    assert bigger.mean == pytest.approx(null.mean * factor, rel=1e-12)
    assert bigger.threshold(0.001) == pytest.approx(null.threshold(0.001) * factor, rel=1e-9)
    assert bigger.p_value(null.threshold(0.01) * factor) == pytest.approx(0.01, rel=1e-6)
    assert null.rescaled(500) == null


def test_degenerate_null_is_defined_and_never_nan() -> None:
    null = fit_null(np.full(200, 0.25), n=100, m=100)
    assert (null.sd, null.shape, null.scale) == (0.0, 0.0, 0.0)
    assert null.threshold(0.001) == 0.25
    assert null.p_value(0.25) == 1.0
    assert null.p_value(0.2500001) == 0.0
    zeros = fit_null(np.zeros(200), n=100, m=100)
    assert zeros.threshold(0.05) == 0.0 and zeros.p_value(0.0) == 1.0 and zeros.p_value(1e-9) == 0.0
    with pytest.raises(ValueError, match=r"^value must not be NaN$"):
        null.p_value(math.nan)
    with pytest.raises(ValueError, match=r"^replicates must be non-negative$"):
        fit_null(np.array([0.1, -0.2, 0.3]), n=10, m=10)


def test_null_from_cumulants_follows_a_weighted_non_central_chi_square() -> None:
    # Q = sum l_i (z_i + b_i)^2, the squared distance of a Gaussian mean from a point:
    # cumulants in closed form against 400,000 draws.
    rng = np.random.default_rng(3)
    weights = 1.0 / np.arange(1, 41)
    offsets = rng.normal(scale=0.3, size=40)
    draws = ((rng.standard_normal((400_000, 40)) + offsets) ** 2) @ weights
    mean = float(np.sum(weights * (1 + offsets**2)))
    variance = float(np.sum(2 * weights**2 * (1 + 2 * offsets**2)))
    third = float(np.sum(8 * weights**3 * (1 + 3 * offsets**2)))
    null = null_from_cumulants(mean, variance, third, n=10, m=20)
    for alpha in (0.05, 0.01):
        assert null.threshold(alpha) == pytest.approx(np.quantile(draws, 1 - alpha), rel=0.03)
        assert np.mean(draws > null.threshold(alpha)) == pytest.approx(alpha, rel=0.15)
    # Three cumulants cannot know the largest weight, which sets the far tail: measured
    # 1.2-1.4x alpha at 0.001 for weights 1/i (stats.null_from_cumulants says so).
    assert 0.001 < np.mean(draws > null.threshold(0.001)) < 0.0015
    assert null.p_value(float(np.median(draws))) == pytest.approx(0.5, abs=0.02)
    assert NullModel.from_dict(json.loads(json.dumps(null.to_dict()))) == null
    degenerate = null_from_cumulants(0.0, 0.0, 0.0, 1, 1)
    assert degenerate.p_value(0.0) == 1.0 and degenerate.p_value(1e-9) == 0.0


def test_holm_steps_down_and_leaves_out_detectors_without_a_p_value() -> None:
    p_values = {"a": 0.0001, "b": 0.004, "c": 0.03, "d": None, "e": 0.5}
    assert holm(p_values, 0.01) == {"a": True, "b": False, "c": False, "d": False, "e": False}
    # 0.004 <= 0.05/3 and 0.03 > 0.05/2: Holm rejects b where Bonferroni (0.05/4) would not
    assert holm(p_values, 0.05) == {"a": True, "b": True, "c": False, "d": False, "e": False}
    assert holm({"x": 0.01, "y": 0.02}, 0.05) == {"x": True, "y": True}
    assert holm({}, 0.05) == {} and holm({"d": None}, 0.05) == {"d": False}
    with pytest.raises(ValueError, match=r"^p-value of a must be between 0 and 1, got 1.5$"):
        holm({"a": 1.5}, 0.05)


def test_holm_holds_the_family_wise_rate_under_no_drift() -> None:
    rng = np.random.default_rng(4)
    families = rng.uniform(size=(20_000, 6))
    wrong = sum(any(holm({str(i): p for i, p in enumerate(row)}, 0.05).values()) for row in families)
    assert wrong / 20_000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20_000)
    assert wrong / 20_000 > 0.04  # independent tests: Holm is close to exact, not a blunt 6x cut
