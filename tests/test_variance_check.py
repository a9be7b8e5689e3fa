"""Tests of companion.experiments.variance_check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.experiments import closed_forms as cf
from companion.experiments.variance_check import (
    KEYS,
    exact_gaussian_variance,
    gaussian_cases,
    gaussian_crossover,
    measure_exponential,
    measure_gaussian,
    per_sample_estimator,
    simulate_max_abs_z,
)


@pytest.mark.parametrize("name", cf.GAUSSIAN_TEST_FUNCTIONS)
@pytest.mark.parametrize("estimator,baseline", [("pathwise", None), ("score_function", None),
                                                ("score_function", "optimal")])
def test_per_sample_estimator_has_the_closed_form_moments(name, estimator, baseline):
    """Integrated over eps (adaptive quadrature), each coordinate's per-sample estimator has
    mean gaussian_gradient and variance gaussian_estimator_variance (the baseline does not
    change the mean because E[s_j] = 0)."""
    k, mu, sigma = 1.3, 0.4, 0.8
    grad = cf.gaussian_gradient(name, k, mu, sigma)
    var = cf.gaussian_estimator_variance(name, estimator, k, mu, sigma, baseline=baseline)
    for col in (0, 1):
        g = per_sample_estimator(name, estimator, k, col, mu, sigma, baseline)
        mean = cf.normal_expectation(g)
        assert mean == pytest.approx(grad[col], rel=1e-8, abs=1e-10)
        assert cf.normal_expectation(lambda e: (g(e) - mean) ** 2) == pytest.approx(var[col], rel=1e-8)


def test_simulated_z_of_a_gaussian_estimator_has_unit_spread(seed, stats):
    """For the pathwise d/dmu estimate of (x-k)^2, 2(c + sigma eps), which is Gaussian, the
    sample variance of N = 2000 draws is nearly normal, so z^2 averages 1 over repeats.
    With 4000 repeats the mean of z^2 has standard error about sqrt(2/4000) = 0.022; the
    tolerance is 5 of those. A wrong SE (say off by 10%) would move it by about 0.2."""
    rng = np.random.default_rng(seed)
    z = simulate_max_abs_z([("quadratic", "pathwise", 2.0, 0, None)], 2000, 4000, rng)
    stats.assert_within((z**2).mean(), 1.0, math.sqrt(2 / 4000), "mean of z^2")


def test_max_over_cases_grows_with_the_number_of_cases(seed):
    """The largest |z| of many independent comparisons is larger than that of one."""
    rng = np.random.default_rng(seed)
    one = simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 500, 300, rng)
    many = simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)] * 10, 500, 300, rng)
    assert np.median(many) > np.median(one) + 0.5


def test_bad_arguments(raises):
    rng = np.random.default_rng(0)
    with raises(ValueError, "col", "2"):
        per_sample_estimator("cos", "pathwise", 1.0, 2)
    with raises(ValueError, "baseline='optimal'", "estimator='pathwise'"):
        per_sample_estimator("cos", "pathwise", 1.0, 0, baseline="optimal")
    with raises(TypeError, "rng", "0"):
        simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 100, 10, 0)
    with raises(ValueError, "cases must not be empty"):  # no value shown
        simulate_max_abs_z([], 100, 10, rng)
    with raises(ValueError, "n_samples", "1"):
        simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 1, 10, rng)


@pytest.mark.parametrize("key", KEYS)
def test_measured_gaussian_variances_match_the_closed_forms(key, seed, stats):
    """measure_gaussian runs the library's estimators: with N = 20000 samples per k every
    measured variance (both coordinates) lies within 5 standard errors
    sqrt((m4 - V^2)/N) of gaussian_estimator_variance. The score function's estimates are
    polynomials of degree 3-4 in eps for the quadratic, so its sample variances are skewed;
    at this N the largest |z| of a correct experiment is still far below 5 (chapter 3's
    simulation)."""
    check = measure_gaussian("quadratic", key, [-1.0, 2.0], 20_000)
    assert check.measured.shape == (2, 2)
    stats.assert_within(check.measured, check.exact, check.se, f"{key} variances, quadratic")
    expo = measure_exponential(key, [0.0, 4.0], 20_000)
    assert expo.measured.shape == (2,)
    stats.assert_within(expo.measured, expo.exact, expo.se, f"{key} variances, exponential")


def test_the_variance_measurement_has_power(seed, stats):
    """Control: the score function's measured variances are far (many SE) from the
    pathwise estimator's exact ones, in every coordinate, so a swapped estimator would
    fail the check above."""
    sf = measure_gaussian("quadratic", "score_function", [2.0], 20_000)
    pw_exact = np.array([exact_gaussian_variance("quadratic", "pathwise", 2.0)])
    stats.assert_above(np.abs(sf.measured - pw_exact), 0.0, sf.se, "|score function - pathwise's exact|")


def test_cases_follow_the_keys(raises):
    cases = gaussian_cases({"cos": [1.0, 2.0]})
    assert len(cases) == len(KEYS) * 2 * 2
    assert cases[0] == ("cos", "pathwise", 1.0, 0, None)
    assert cases[-1] == ("cos", "score_function", 2.0, 1, "optimal")
    with raises(ValueError, "key must be one of", "'score function'"):
        exact_gaussian_variance("cos", "score function", 1.0)
    with raises(ValueError, "key must name a score function", "'pathwise'"):
        gaussian_crossover("cos", 0, "pathwise")
    with raises(TypeError, "k_points", "[]"):
        gaussian_cases([])
    assert gaussian_crossover("exp", 0) == pytest.approx(cf.gaussian_variance_crossover("exp", 0))


def test_comparison_variance_rows_lie_within_5_standard_errors(seed, stats):
    """Chapter 8's variance checks (comparison.variance_checks): for the Gaussian problems
    and the exponential, the measured total variance of the plain score function and of the
    pathwise estimator (N = 20000 samples) lies within 5 standard errors of the closed
    form, where the row's SE is the sum of the coordinates' SE (an upper bound on the SE
    of the sum), so the check is if anything lenient; the rows must all be there."""
    from companion.experiments import comparison

    results = comparison.compare_all(n_samples=20_000, repeats=1, seeds=[seed], time_samples=50)
    rows, check = comparison.variance_checks(results)
    assert rows == [(k, e) for k in ("quadratic", "exp", "cos", "exponential")
                    for e in ("score_function", "pathwise")]
    assert (check.exact > 0).all() and (check.se > 0).all()
    stats.assert_within(check.measured, check.exact, check.se, "chapter 8's total variances")
