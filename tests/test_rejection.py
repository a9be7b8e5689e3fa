"""Tests of companion.experiments.rejection: Marsaglia-Tsang proposals and their gradients."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats as st

from companion.experiments.rejection import fixed_proposal_mean, marsaglia_tsang, rejection_gradients, transform


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.5])
def test_accepted_proposals_are_gamma(alpha, generator, stats):
    """Accepted d (1 + c eps)^3 are Gamma(alpha, 1): one-sample KS test, 20000 proposals."""
    eps, acc = marsaglia_tsang(alpha, 20_000, generator)
    d = alpha - 1 / 3
    z = d * (1 + eps[acc] / math.sqrt(9 * d)) ** 3
    stats.assert_ks(z, st.gamma(alpha).cdf, what=f"Gamma({alpha}) by Marsaglia-Tsang")


def test_analytic_derivatives_equal_autograd(generator):
    """dh/dalpha and d log pi/dalpha, written out by hand, equal autograd's to rounding.

    h = d (1 + c eps)^3 with d = alpha - 1/3, c = (9d)^(-1/2); log pi = (alpha - 1) log h - h
    - lgamma(alpha) + log(3 d c (1 + c eps)^2), differentiated by autograd with one copy of
    alpha per sample.
    """
    alpha = 2.3
    eps, acc = marsaglia_tsang(alpha, 2000, generator)
    e = eps[acc]
    out = rejection_gradients(alpha, e)
    a = torch.full_like(e, alpha, requires_grad=True)
    d = a - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    h = d * (1 + c * e) ** 3
    log_pi = (a - 1) * torch.log(h) - h - torch.lgamma(a) + torch.log(3 * d * c * (1 + c * e) ** 2)
    (dh,) = torch.autograd.grad(h.sum(), a, retain_graph=True)
    (dlp,) = torch.autograd.grad(log_pi.sum(), a)
    torch.testing.assert_close(out["fixed_proposal"], dh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["score_correction"], h.detach() * dlp, rtol=1e-10, atol=1e-12)


def test_fixed_proposal_gradient_is_biased_and_correction_removes_it(generator, stats):
    """d/dalpha E[z] = d/dalpha alpha = 1. The fixed-proposal gradient averaged over accepted
    proposals misses it by far more than 5 standard errors (at alpha = 2 the bias is about
    +0.0056); adding the score correction of Naesseth et al. (2017) brings the mean within
    5 standard errors of 1 (the bias check is one-sided: the mean exceeds 1). 600000
    proposals, seeded."""
    eps, acc = marsaglia_tsang(2.0, 600_000, generator)
    out = rejection_gradients(2.0, eps[acc])
    fixed, corrected = out["fixed_proposal"], out["corrected"]
    mean, se = stats.mean_se(fixed)
    stats.assert_above(mean, 1.0, se, "fixed-proposal gradient (biased above 1)")
    stats.assert_mean(corrected, 1.0, "score-corrected gradient")
    # and the fixed-proposal mean is the exact biased value, within 5 standard errors
    stats.assert_mean(fixed, fixed_proposal_mean(2.0), "fixed-proposal gradient")


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.0])
def test_fixed_proposal_mean_is_the_monte_carlo_mean(alpha, generator, stats):
    """The quadrature of E_pi[dh/dalpha] against the Gamma density matches the mean of the
    fixed-proposal derivatives of accepted Marsaglia-Tsang proposals (400000 proposals,
    5 standard errors), and exceeds the true 1."""
    eps, acc = marsaglia_tsang(alpha, 400_000, generator)
    fixed = rejection_gradients(alpha, eps[acc])["fixed_proposal"]
    exact = fixed_proposal_mean(alpha)
    stats.assert_mean(fixed, exact, f"fixed-proposal derivative, alpha = {alpha}")
    assert exact > 1.0


def test_fixed_proposal_bias_shrinks_with_alpha(raises):
    """The bias falls as alpha grows (the acceptance rate tends to 1); at alpha = 1 the
    integral is 1.0244, as an independent quadrature of the same integral gave."""
    values = [fixed_proposal_mean(a) for a in (1.0, 2.0, 5.0, 20.0)]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(1.0244, abs=1e-4)
    with raises(ValueError, "alpha", "0.5"):
        fixed_proposal_mean(0.5)


def test_bad_arguments(raises):
    with raises(ValueError, "alpha", "0.5"):
        marsaglia_tsang(0.5, 10)
    with raises(TypeError, "alpha", "'2'"):
        marsaglia_tsang("2", 10)
    with raises(ValueError, "n_proposals", "0"):
        marsaglia_tsang(2.0, 0)
    with raises(TypeError, "eps", "[0.1, 0.2]"):
        rejection_gradients(2.0, [0.1, 0.2])
    with raises(ValueError, "eps must be accepted proposals"):  # the message shows no value
        rejection_gradients(2.0, torch.tensor([-100.0], dtype=torch.float64))


def test_transform_matches_the_module_formula_and_its_inverse(raises):
    """transform(alpha, eps) = d (1 + c eps)^3, and eps = ((z/d)^(1/3) - 1) sqrt(9d) inverts it
    where 1 + c eps > 0 (the proposals the sampler can accept)."""
    eps = torch.linspace(-2.0, 3.0, 50, dtype=torch.float64)   # 1 + c eps > 0
    for alpha in (1.0, 2.0, 7.5):
        d = alpha - 1 / 3
        z = transform(alpha, eps)
        torch.testing.assert_close(z, d * (1 + eps / math.sqrt(9 * d)) ** 3)
        torch.testing.assert_close(((z / d) ** (1 / 3) - 1) * math.sqrt(9 * d), eps)
    with raises(ValueError, "alpha", "0.9"):
        transform(0.9, eps)
