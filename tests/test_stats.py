"""Tests of companion.stats: the noise floor is removed, the standard error is right."""

from __future__ import annotations

import math

import pytest
import torch

from companion import stats as companion_stats
from companion.stats import mean_agreement, paired_difference


def _gaussian_estimates(generator, n, beta, scale):
    """Rows ``exact + beta + scale * eps`` with ``eps`` standard normal, exact = (1, -2, 0.5)."""
    exact = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    eps = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return exact + torch.as_tensor(beta, dtype=torch.float64) + eps * torch.as_tensor(scale, dtype=torch.float64), exact


def test_noise_floor_is_removed_for_an_unbiased_estimator(generator, stats):
    r"""For rows :math:`g^\star + \varepsilon_i` (no bias), :math:`\mathbb E\lVert\bar g - g^\star\rVert^2
    = \operatorname{tr}\Sigma / N`, so the raw squared bias averages to the floor and the
    corrected one to zero. Over R replications the corrected mean is within 5 standard
    errors of 0, the raw one within 5 of the floor and so not of 0 (a mutation that
    forgets the floor fails).
    """
    reps, n, scale = 400, 50, [1.0, 2.0, 0.5]
    b2, raw2 = [], []
    for _ in range(reps):
        est, exact = _gaussian_estimates(generator, n, [0.0, 0.0, 0.0], scale)
        r = companion_stats.bias_estimate(est, exact)
        b2.append(r.bias_sq)
        raw2.append(r.raw_bias**2)
    stats.assert_mean(torch.tensor(b2), 0.0, "corrected squared bias, no bias")
    floor = sum(s * s for s in scale) / n
    stats.assert_mean(torch.tensor(raw2), floor, "raw squared bias: the noise floor")
    stats.assert_mean_differs(torch.tensor(raw2), 0.0, "raw squared bias")


def test_bias_and_its_standard_error_on_a_known_bias(generator, stats):
    r"""Rows :math:`g^\star + \beta + \operatorname{diag}(s)\varepsilon`: the squared bias is
    :math:`\lVert\beta\rVert^2`, and its estimator has variance
    :math:`4\beta^\top\Sigma\beta/N + 2\operatorname{tr}\Sigma^2/N^2` (the variance of a
    squared Gaussian norm, :math:`\bar g - g^\star \sim \mathcal N(\beta, \Sigma/N)`) plus
    :math:`\operatorname{Var}[\operatorname{tr}S/N] = 2\operatorname{tr}\Sigma^2/((N-1)N^2)`
    (S is independent of the mean for Gaussian rows).
    Over replications: the mean of the estimates matches :math:`\lVert\beta\rVert^2` and
    their variance the exact one (5 standard errors each; the variance's from the sample
    fourth moment, as the squared norm is skewed), and the mean reported standard error
    matches the exact one to within 20 % (it is a plug-in estimate, clipped below, so
    not unbiased).
    """
    beta, scale, n, reps = [0.1, 0.0, -0.05], [1.0, 2.0, 0.5], 400, 1500
    b2, se = [], []
    for _ in range(reps):
        est, exact = _gaussian_estimates(generator, n, beta, scale)
        r = companion_stats.bias_estimate(est, exact)
        b2.append(r.bias_sq)
        se.append(r.bias_sq_se)
    b2 = torch.tensor(b2, dtype=torch.float64)
    stats.assert_mean(b2, sum(b * b for b in beta), "squared bias")
    sigma = torch.tensor(scale, dtype=torch.float64) ** 2
    tr_sigma2 = float((sigma**2).sum())
    exact_var = 4 * float((torch.tensor(beta, dtype=torch.float64) ** 2 * sigma).sum()) / n + 2 * tr_sigma2 / n**2
    stats.assert_var(b2, exact_var + 2 * tr_sigma2 / ((n - 1) * n**2), stats.sample_mu4(b2), "squared bias")
    assert float(torch.tensor(se).mean()) == pytest.approx(math.sqrt(exact_var), rel=0.2)


def test_resolved_flag_and_fields(generator, stats):
    """A bias of 0.2 with 10^4 samples of unit noise is resolved; no bias is not. The bias is
    within 5 standard errors (0.01 each, the first coordinate's mean) of 0.2 and the variance
    (the trace of the sample covariance of 3 unit coordinates, SE :math:`\\sqrt{6/(n-1)}`) of 3."""
    n = 10_000
    est, exact = _gaussian_estimates(generator, n, [0.2, 0.0, 0.0], [1.0, 1.0, 1.0])
    r = companion_stats.bias_estimate(est, exact)
    assert r.resolved()
    stats.assert_within(r.bias, 0.2, 1 / math.sqrt(n), "bias")
    assert r.relative_bias == pytest.approx(r.bias / float(exact.norm()))
    stats.assert_within(r.variance, 3.0, math.sqrt(6 / (n - 1)), "variance")
    assert r.noise_floor == pytest.approx(math.sqrt(r.variance / 10_000))
    assert r.mse(10) == pytest.approx(max(r.bias_sq, 0) + r.variance / 10)
    est0, exact0 = _gaussian_estimates(generator, 10_000, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert not companion_stats.bias_estimate(est0, exact0).resolved()


def test_mse_formula_and_bad_input():
    assert companion_stats.mse(0.01, 2.0, 100) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="batch_size"):
        companion_stats.mse(0.0, 1.0, 0)
    with pytest.raises(ValueError, match="variance"):
        companion_stats.mse(0.0, float("nan"), 1)
    with pytest.raises(ValueError, match="estimates"):
        companion_stats.bias_estimate(torch.zeros(1, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="exact"):
        companion_stats.bias_estimate(torch.zeros(5, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="estimates"):
        companion_stats.bias_estimate(torch.full((5, 3), float("nan")), torch.zeros(3))


def test_paired_difference_mean_and_standard_error(seed):
    """d_i = a_i - b_i: mean and SE = sd(d) / sqrt(n), checked against a direct computation."""
    a, b = torch.randn(50), torch.randn(50)
    mean, se = paired_difference(a, b)
    d = (a - b).double()
    assert mean == pytest.approx(float(d.mean()), rel=1e-12)
    assert se == pytest.approx(float(d.std()) / math.sqrt(50), rel=1e-12)
    with pytest.raises(ValueError, match="same length"):
        paired_difference(a, b[:10])


def test_mean_agreement_matches_chance_and_detects_a_shift(seed, stats):
    """Equal means: the share of |t| > 3 matches the t distribution's tail.

    With 4000 independent coordinates and 30 rows each, the Welch statistic is close to a
    Student t with about 58 degrees of freedom, P(|t| > 3) ~ 0.4%; the observed share is a
    binomial proportion with SE sqrt(p (1 - p) / 4000), and the check allows 5 of them.
    A shift of one standard deviation per coordinate (t around 3.9) is detected in most.
    """
    a, b = torch.randn(30, 4000), 3.0 * torch.randn(30, 4000)
    share, expected = mean_agreement(a, b)
    assert 0.002 < expected < 0.008
    stats.assert_proportions(share * 4000, 4000, expected, "share of |t| > 3")
    shifted, _ = mean_agreement(a + 1.0, torch.randn(30, 4000))
    assert shifted > 0.5
    with pytest.raises(ValueError, match="threshold"):
        mean_agreement(a, b, threshold=0)
