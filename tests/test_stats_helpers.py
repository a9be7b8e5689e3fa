"""The shared test helpers of ``tests/conftest.py`` can fail: each passes on data that
satisfies its claim and raises ``AssertionError`` on data that does not.

Samples are standard normal (mean 0, variance 1, fourth central moment 3); a shift
of 0.1 at n = 40,000 is 20 standard errors of a mean, and a scale of 1.1 changes the
variance by 0.21, about 30 standard errors of a sample variance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

N = 40_000


@pytest.fixture
def normal(generator):
    return torch.randn(N, 2, generator=generator, dtype=torch.float64)


@pytest.fixture
def other(generator):
    return torch.randn(N, 2, generator=generator, dtype=torch.float64)


def test_mean_checks(normal, stats):
    stats.assert_mean(normal, [0.0, 0.0])
    with pytest.raises(AssertionError, match="sample mean"):
        stats.assert_mean(normal + torch.tensor([0.0, 0.1]), [0.0, 0.0], "shifted")
    stats.assert_mean_differs(normal + 0.1, 0.0)
    with pytest.raises(AssertionError):
        stats.assert_mean_differs(normal, 0.0)
    stats.assert_mean_at_most(normal, 0.0)
    stats.assert_mean_at_most(normal - 1.0, 0.0)
    with pytest.raises(AssertionError):
        stats.assert_mean_at_most(normal + 0.1, 0.0)


def test_a_nan_never_passes(normal, stats):
    bad = normal.clone()
    bad[0, 0] = math.nan
    for check in (
        lambda: stats.assert_mean(bad, 0.0),
        lambda: stats.assert_var(bad, 1.0, 3.0),
        lambda: stats.assert_within(math.nan, 0.0, 1.0),
        lambda: stats.assert_same_mean(bad, normal),
        lambda: stats.assert_proportions(np.array([math.nan]), 10, 0.5),
    ):
        with pytest.raises(AssertionError):
            check()


def test_variance_checks(normal, other, stats):
    stats.assert_var(normal, 1.0, 3.0)
    with pytest.raises(AssertionError, match="sample variance"):
        stats.assert_var(1.1 * normal, 1.0, 3.0)
    var, se = stats.var_se(normal)
    np.testing.assert_allclose(se, math.sqrt(2 / N), rtol=0.05)  # (mu4 - sigma^4) / n = 2/n
    np.testing.assert_allclose(stats.sample_mu4(normal), 3.0, rtol=0.1)
    stats.assert_same_var(normal, other)
    with pytest.raises(AssertionError):
        stats.assert_same_var(normal, 1.1 * other)
    stats.assert_var_greater(1.1 * other, normal)
    with pytest.raises(AssertionError):
        stats.assert_var_greater(other, normal)
    # Paired: 1.1 x vs x differ in variance by exactly 0.21 Var[x]; the paired SE is far smaller.
    diff, se_paired = stats.var_diff_se(1.1 * normal, normal, paired=True)
    _, se_indep = stats.var_diff_se(1.1 * normal, other)
    assert (se_paired < se_indep / 3).all()
    stats.assert_var_diff(1.1 * normal, normal, 0.21 * normal.var(0), paired=True)
    stats.assert_var_greater(1.01 * normal, normal, paired=True)
    with pytest.raises(AssertionError):
        stats.assert_var_diff(1.1 * normal, normal, 0.0, paired=True)
    with pytest.raises(ValueError, match="same shape"):
        stats.var_diff_se(normal, normal[:10], paired=True)


def test_two_sample_mean_checks(normal, other, stats):
    stats.assert_same_mean(normal, other)
    with pytest.raises(AssertionError, match="first minus"):
        stats.assert_same_mean(normal + 0.1, other)
    stats.assert_mean_greater(normal + 0.1, other)
    with pytest.raises(AssertionError):
        stats.assert_mean_greater(normal, other)
    stats.assert_means_differ(normal + torch.tensor([0.0, 0.1]), other)
    with pytest.raises(AssertionError):
        stats.assert_means_differ(normal, other)


def test_given_standard_error_checks(stats):
    stats.assert_within([1.0, 2.0], [1.2, 2.0], 0.1)
    with pytest.raises(AssertionError, match="standard errors"):
        stats.assert_within([1.0, 2.0], [1.6, 2.0], 0.1)
    stats.assert_above(2.0, 1.0, 0.1)
    with pytest.raises(AssertionError):
        stats.assert_above(1.4, 1.0, 0.1)
    stats.assert_at_most(1.4, 1.0, 0.1)
    with pytest.raises(AssertionError):
        stats.assert_at_most(1.6, 1.0, 0.1)
    stats.assert_differs([1.0, 3.0], [1.0, 2.0], 0.1)
    with pytest.raises(AssertionError):
        stats.assert_differs([1.0, 2.2], [1.0, 2.0], 0.1)


def test_proportions_and_ks(generator, stats):
    from scipy import stats as st

    n = 100_000
    k = torch.multinomial(torch.tensor([0.2, 0.3, 0.5]), n, replacement=True, generator=generator)
    counts = torch.bincount(k, minlength=3)
    stats.assert_proportions(counts, n, [0.2, 0.3, 0.5])
    with pytest.raises(AssertionError, match="frequency"):
        stats.assert_proportions(counts, n, [0.21, 0.29, 0.5])
    x = torch.randn(20_000, generator=generator, dtype=torch.float64)
    stats.assert_ks(x, st.norm.cdf)
    with pytest.raises(AssertionError, match="KS"):
        stats.assert_ks(x + 0.1, st.norm.cdf)
    with pytest.raises(AssertionError, match="KS"):
        stats.assert_ks_2samp(x, 1.2 * torch.randn(20_000, generator=generator, dtype=torch.float64))


def test_raises_checks_every_name(raises):
    def bad(sigma):
        raise ValueError(f"sigma must be > 0, got {sigma}")

    with raises(ValueError, "sigma", "-1.0"):
        bad(-1.0)
    with pytest.raises(AssertionError):  # pytest.raises' failed match is an AssertionError
        with raises(ValueError, "sigma", "-2.0"):
            bad(-1.0)
    with pytest.raises(TypeError):  # another exception type passes through
        with raises(ValueError, "sigma"):
            raise TypeError("sigma")
    with pytest.raises(ValueError, match="argument's name"):
        raises(ValueError)
