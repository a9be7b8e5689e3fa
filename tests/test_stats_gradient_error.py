"""Tests of companion.stats against estimates whose bias and covariance are known."""

from __future__ import annotations

import math

import pytest
import torch

from companion.stats import gradient_error

P, R, SIGMA = 1000, 400, 0.5


def _draws(bias, generator):
    g = torch.ones(P)
    noise = SIGMA * torch.randn(R, P, generator=generator, dtype=torch.float64)
    return g + bias + noise, g


def test_unbiased_estimates_show_no_bias_beyond_the_noise(generator, stats):
    """Estimates g + N(0, s^2 I): V = P s^2, so relative variance P s^2 / |g|^2 = s^2 (|g|^2 = P).
    The corrected squared bias |m - g|^2 - V^/R has mean 0 and sd about sqrt(2P) s^2 / R, so the
    relative bias stays below sqrt(5 sqrt(2P) s^2 / R) / |g|. The uncorrected |m - g| / |g| would
    be about the noise floor s / sqrt(R) instead, which the test shows is far larger. The
    relative variance's SE is that of a pooled sample variance of P (R - 1) degrees of freedom,
    s^2 sqrt(2 / (P (R - 1)))."""
    est, g = _draws(torch.zeros(P), generator)
    e = gradient_error(est, g)
    stats.assert_within(e.relative_variance, SIGMA**2, SIGMA**2 * math.sqrt(2 / (P * (R - 1))), "relative variance")
    # |g|^2 = P, so relative_bias^2 * P = max(0, corrected squared bias)
    stats.assert_at_most(e.relative_bias**2 * P, 0.0, math.sqrt(2 * P) * SIGMA**2 / R, "corrected squared bias")
    bound = math.sqrt(stats.Z * math.sqrt(2 * P) * SIGMA**2 / R) / math.sqrt(P)
    uncorrected = float((est.mean(0) - g).norm() / g.norm())  # what a missing correction reports
    assert uncorrected > 1.5 * bound
    assert e.noise_floor == pytest.approx(SIGMA / math.sqrt(R), rel=0.1)
    assert e.cosine > 0.99
    assert e.relative_mse(4) == pytest.approx(e.relative_bias**2 + e.relative_variance / 4)


def test_a_known_orthogonal_bias_is_recovered(generator, stats):
    """Bias b orthogonal to g with |b| = |g| / 2: relative bias 0.5, cosine of E[g^] = g + b with g
    is |g| / sqrt(|g|^2 + |b|^2) = 1 / sqrt(1.25). Var of the corrected |b|^2 is about
    4 s^2 |b|^2 / R (plus the sqrt(2P) s^2 / R term), so 5 SE around the truth."""
    b = torch.zeros(P, dtype=torch.float64)
    b[: P // 2], b[P // 2 :] = 1.0, -1.0
    b *= 0.5  # |b| = 0.5 sqrt(P) = |g| / 2, and b . g = 0
    est, g = _draws(b, generator)
    e = gradient_error(est, g)
    b2 = float(b.square().sum())
    se_b2 = math.sqrt(4 * SIGMA**2 * b2 / R + 2 * P * SIGMA**4 / R**2)
    stats.assert_within(e.relative_bias**2 * P, b2, se_b2, "corrected squared bias")
    assert e.cosine == pytest.approx(1 / math.sqrt(1.25), abs=0.02)


def test_bad_inputs():
    with pytest.raises(ValueError, match="estimates"):
        gradient_error(torch.ones(1, 3), torch.ones(3))
    with pytest.raises(ValueError, match="exact"):
        gradient_error(torch.ones(4, 3), torch.ones(2))
    with pytest.raises(ValueError, match="zero"):
        gradient_error(torch.ones(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        gradient_error(torch.full((4, 3), float("nan")), torch.ones(3))
    with pytest.raises(TypeError, match="estimates"):
        gradient_error([[1.0]], torch.ones(1))
    with pytest.raises(TypeError, match="n"):
        gradient_error(torch.randn(4, 3), torch.ones(3)).relative_mse(1.5)
