"""Tests of companion.stats.variance_check, VarianceCheck and sample_variance_se.

For N independent draws with variance V and fourth central moment m4 the sample
variance s^2 has Var[s^2] = (m4 - V^2 (N-3)/(N-1)) / N, so to leading order in 1/N
SE(s^2) = sqrt((m4 - V^2) / N); for a standard normal m4 = 3, SE = sqrt(2/N).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.stats import VarianceCheck, sample_variance_se, variance_check


def test_z_is_measured_minus_exact_over_se():
    c = variance_check([1.1, 2.0, 3.0], torch.tensor([1.0, 2.2, 3.0], dtype=torch.float64), np.array([0.05, 0.1, 0.5]))
    np.testing.assert_allclose(c.z, [2.0, -2.0, 0.0], atol=1e-12)
    assert c.max_abs_z == pytest.approx(2.0)
    assert c.size == 3
    assert c[1].measured == 2.0 and c[1].exact == 2.2
    flat = VarianceCheck.concat([c, c[:2]])
    assert flat.size == 5
    np.testing.assert_allclose(flat.z, [2.0, -2.0, 0.0, 2.0, -2.0], atol=1e-12)


def test_sample_variance_se_is_the_spread_of_sample_variances(seed, stats):
    """R = 4000 sample variances of N = 400 standard normals: their z-scores against
    V = 1 with SE = sample_variance_se(1, 3, N) have mean 0 and variance 1 (up to the
    O(1/N) terms, a skew of order sqrt(8/N) = 0.14 that moves neither by 5 SE). A wrong SE
    (by 10%) moves the variance of z by 0.2, about 9 of its standard errors."""
    r, n = 4000, 400
    x = torch.randn(r, n, dtype=torch.float64)
    se = sample_variance_se(1.0, 3.0, n)
    assert se == pytest.approx(math.sqrt(2 / n))
    z = variance_check(x.var(1), np.ones(r), np.full(r, se)).z
    stats.assert_mean(z, 0.0, "z of a sample variance")
    # Var[z^2 - 1] for z ~ N(0, 1) is 2; the mean of z^2 is 1 within 5 SE.
    stats.assert_mean(z**2, 1.0, "mean of z^2")


def test_ratio_standard_error_is_the_spread_of_measured_ratios(seed, stats):
    """Two independent sample variances of N = 2000 draws, normals of variance 4 and 1:
    r = s_a^2 / s_b^2 has mean 4 (to O(1/N)) and, by the delta method, standard error
    4 * sqrt(2/N + 2/N) = 0.179. Over R = 3000 repetitions the z-scores of r against
    the exact 4 have mean 0 and mean square 1 within 5 standard errors."""
    r, n = 3000, 2000
    a = 2.0 * torch.randn(r, n, dtype=torch.float64)
    b = torch.randn(r, n, dtype=torch.float64)
    se_a, se_b = sample_variance_se(4.0, 3 * 16.0, n), sample_variance_se(1.0, 3.0, n)
    ca = variance_check(a.var(1), np.full(r, 4.0), np.full(r, se_a))
    cb = variance_check(b.var(1), np.ones(r), np.full(r, se_b))
    ratio = ca.ratio(cb)
    np.testing.assert_allclose(ratio.exact, 4.0)
    np.testing.assert_allclose(ratio.se / ratio.measured, math.sqrt(4 / n), rtol=1e-12)
    z = (ratio.measured - ratio.exact) / (ratio.exact * math.sqrt(4 / n))
    stats.assert_mean(z, 0.0, "z of a variance ratio")
    stats.assert_mean(z**2, 1.0, "mean square z of a variance ratio")


@pytest.mark.parametrize(
    "call, exc, names",
    [
        (lambda: variance_check([1.0, 2.0], [1.0], [0.1, 0.1]), ValueError,
         ("measured, exact and se must have one shape", "(2,), (1,)")),
        (lambda: variance_check([1.0], [1.0], [0.0]), ValueError, ("se must", "[0.0]")),
        (lambda: variance_check([float("nan")], [1.0], [0.1]), ValueError, ("measured", "[nan]")),
        (lambda: variance_check([-1.0], [1.0], [0.1]), ValueError, ("variances", "measured=[-1.0]")),
        (lambda: variance_check("1.0", [1.0], [0.1]), TypeError, ("measured", "'1.0'")),
        (lambda: variance_check([1.0], None, [0.1]), TypeError, ("exact", "None")),
        (lambda: sample_variance_se(1.0, 0.5, 10), ValueError, ("fourth_moment", "0.5")),
        (lambda: sample_variance_se(1.0, 3.0, 0), ValueError, ("n_samples", "0")),
        (lambda: sample_variance_se(-1.0, 3.0, 10), ValueError, ("variance must", "-1.0")),
        (lambda: variance_check([1.0], [1.0], [0.1]).ratio([1.0]), TypeError, ("other", "list")),
        (lambda: variance_check([1.0], [1.0], [0.1]).ratio(variance_check([1.0, 2.0], [1.0, 2.0], [0.1, 0.1])),
         ValueError, ("other must have shape (1,)", "(2,)")),
        (lambda: VarianceCheck.concat([]), TypeError, ("checks", "[]")),
    ],
)
def test_bad_input_names_the_argument(call, exc, names, raises):
    with raises(exc, *names):
        call()
