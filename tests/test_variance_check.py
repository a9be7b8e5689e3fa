"""Tests of companion.experiments.variance_check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.experiments import closed_forms as cf
from companion.experiments.variance_check import per_sample_estimator, simulate_max_abs_z


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


def test_simulated_z_of_a_gaussian_estimator_has_unit_spread(seed):
    """For the pathwise d/dmu estimate of (x-k)^2, 2(c + sigma eps), which is Gaussian, the
    sample variance of N = 2000 draws is nearly normal, so z^2 averages 1 over repeats.
    With 4000 repeats the mean of z^2 has standard error about sqrt(2/4000) = 0.022; the
    tolerance is 5 of those. A wrong SE (say off by 10%) would move it by about 0.2."""
    rng = np.random.default_rng(seed)
    z = simulate_max_abs_z([("quadratic", "pathwise", 2.0, 0, None)], 2000, 4000, rng)
    assert abs((z**2).mean() - 1.0) < 5 * math.sqrt(2 / 4000)


def test_max_over_cases_grows_with_the_number_of_cases(seed):
    """The largest |z| of many independent comparisons is larger than that of one."""
    rng = np.random.default_rng(seed)
    one = simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 500, 300, rng)
    many = simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)] * 10, 500, 300, rng)
    assert np.median(many) > np.median(one) + 0.5


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="col"):
        per_sample_estimator("cos", "pathwise", 1.0, 2)
    with pytest.raises(ValueError, match="baseline"):
        per_sample_estimator("cos", "pathwise", 1.0, 0, baseline="optimal")
    with pytest.raises(TypeError, match="rng"):
        simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 100, 10, 0)
    with pytest.raises(ValueError, match="cases"):
        simulate_max_abs_z([], 100, 10, rng)
    with pytest.raises(ValueError, match="n_samples"):
        simulate_max_abs_z([("cos", "pathwise", 1.0, 0, None)], 1, 10, rng)
