r"""Control variates, antithetics and quasi-Monte Carlo against closed forms.

Notation as in ``test_measure_valued``: :math:`x = \mu + \sigma\varepsilon`,
:math:`\varepsilon \sim N(0, 1)`, :math:`\mathbb E\varepsilon^{2j} = (2j-1)!!`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Gamma, Independent, Normal

from companion.control_variates import (
    antithetic_pathwise,
    apply_control_variate,
    optimal_coefficient,
    pathwise_from_noise,
    qmc_pathwise,
    score_function_delta,
    sobol_noise,
)
from companion.estimators import score_function

MU, SIGMA, K = 1.5, 0.8, 1.0
N = 100_000


def normal(p):
    return Normal(p[0], p[1])


def params():
    return torch.tensor([MU, SIGMA], dtype=torch.float64)


def affine(p, e):
    return p[0] + p[1] * e


# --------------------------------------------------------------------------- delta method
def test_delta_method_exact_for_quadratic():
    r"""For :math:`f(x) = (x - k)^2` the Taylor expansion at the mean is :math:`f` itself,
    so with :math:`\beta = 1` every estimate is :math:`\nabla\mathbb E[\tilde f]
    = (f'(\mu), f''(\mu)\sigma) = (2(\mu - k), 2\sigma)`: no variance left."""
    g = score_function_delta(lambda x: (x - K) ** 2, normal, params(), 1000)
    expected = torch.tensor([2 * (MU - K), 2 * SIGMA], dtype=torch.float64).expand(1000, 2)
    assert torch.allclose(g, expected, atol=1e-10)


def test_delta_method_exact_for_quadratic_form():
    r""":math:`f(x) = x^\top A x` under :math:`\mathcal N(\mu, \operatorname{diag}\sigma^2)`,
    :math:`\sigma = e^{s}`: :math:`\nabla_\mu = 2A\mu`, :math:`\partial_{s_j} =
    \sigma_j \cdot 2A_{jj}\sigma_j` (from :math:`\mathbb E f = \mu^\top A\mu + \sum_j A_{jj}\sigma_j^2`);
    exact in every sample."""
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    mu = torch.tensor([1.0, 2.0], dtype=torch.float64)
    s = torch.tensor([0.0, 0.3], dtype=torch.float64)
    g = score_function_delta(
        lambda x: ((x @ a) * x).sum(-1), lambda q: Independent(Normal(q[0], q[1].exp()), 1), torch.stack([mu, s]), 50
    )
    expected = torch.stack([2 * a @ mu, 2 * torch.diagonal(a) * torch.exp(2 * s)])
    assert torch.allclose(g, expected.expand(50, 2, 2), atol=1e-9)


@pytest.mark.parametrize("coefficient", [1.0, "loo"])
def test_delta_method_unbiased_for_exp(seed, stats, coefficient):
    r""":math:`f(x) = e^x`: :math:`\mathbb E f = e^{\mu + \sigma^2/2}`, gradient
    :math:`(1, \sigma)\,e^{\mu + \sigma^2/2}`; unbiased for a fixed :math:`\beta` and for
    leave-one-out :math:`\hat\beta_{-i}`."""
    g = score_function_delta(torch.exp, normal, params(), N, coefficient=coefficient)
    e = math.exp(MU + SIGMA**2 / 2)
    stats.assert_mean(g, (e, SIGMA * e), what=f"delta method, coefficient={coefficient}")


def test_delta_method_reduces_variance_exactly(seed, stats):
    r"""Variance with :math:`\beta = 1` for :math:`f(x) = (x - k)^3`, a cubic.

    :math:`f - \tilde f = \sigma^3\varepsilon^3` (the Taylor remainder at :math:`\mu`),
    so :math:`\hat g_\mu = \sigma^3\varepsilon^3 \cdot \varepsilon/\sigma + \text{const}`: variance
    :math:`\sigma^4(\mathbb E\varepsilon^8 - (\mathbb E\varepsilon^4)^2) = \sigma^4(105 - 9) = 96\sigma^4`,
    against the plain score function's :math:`\operatorname{Var}[f(x)\varepsilon/\sigma]`, which
    the test computes exactly from the polynomial's moments (``stats.poly_moments``)."""
    a = MU - K
    g = score_function_delta(lambda x: (x - K) ** 3, normal, params(), N)
    stats.assert_var(g[:, 0], 96 * SIGMA**4, stats.sample_mu4(g[:, 0]), what="delta-method variance")
    # (a + sigma eps)^3 * eps / sigma as a polynomial in eps.
    poly = np.polynomial.Polynomial([a**3, 3 * a**2 * SIGMA, 3 * a * SIGMA**2, SIGMA**3]) * np.polynomial.Polynomial(
        [0, 1 / SIGMA]
    )
    _, plain_var, _ = stats.poly_moments(poly.coef, stats.normal_moment)
    assert 96 * SIGMA**4 < plain_var
    plain = score_function(lambda x: (x - K) ** 3, normal, params(), N)
    stats.assert_var(plain[:, 0], plain_var, stats.sample_mu4(plain[:, 0]), what="plain score-function variance")


# --------------------------------------------------------------------------- coefficients
def test_optimal_coefficient_recovers_slope(seed, stats):
    r""":math:`g = 3h + \text{noise}` with independent noise: :math:`\beta^* = 3`; the
    batch estimate's standard error is :math:`\sigma_{\text{noise}}/(\sigma_h\sqrt N)`."""
    h = torch.randn(N, 2, dtype=torch.float64)
    g = 3.0 * h + 0.5 * torch.randn(N, 2, dtype=torch.float64)
    beta = optimal_coefficient(g, h)
    stats.assert_within(beta, 3.0, 0.5 / math.sqrt(N), "optimal coefficient", n=N)


def test_batch_coefficient_is_biased_loo_is_not(seed, stats):
    r"""The coefficient estimated from the same samples biases the estimate.

    Take :math:`h = E - 1` with :math:`E \sim \operatorname{Exp}(1)` (so :math:`\mathbb E h = 0`,
    :math:`\mathbb E h^2 = 1`, :math:`\mathbb E h^3 = 2`) and :math:`g = h^3`, target
    :math:`\mathbb E g = 2`. With :math:`N = 2` the batch coefficient is the slope through the
    two points, :math:`\hat\beta = (h_1^3 - h_2^3)/(h_1 - h_2) = h_1^2 + h_1h_2 + h_2^2`, and the
    corrected mean is :math:`\frac{h_1^3 + h_2^3}{2} - \hat\beta\frac{h_1 + h_2}{2} =
    -h_1h_2(h_1 + h_2)`, whose expectation is :math:`0`, not :math:`2`: a bias of
    :math:`-2`. Leave-one-out (:math:`N = 3`) is unbiased.
    """
    reps = 200_000
    h = torch.empty(reps, 2, dtype=torch.float64).exponential_() - 1.0
    # Batches of two along dimension 1: move the sample dimension first.
    est = apply_control_variate(h.T**3, h.T, 0.0, "batch").mean(0)
    stats.assert_mean(est, 0.0, what="batch coefficient, N=2 (closed form: 0)")
    h3 = torch.empty(3, reps, dtype=torch.float64).exponential_() - 1.0
    loo = apply_control_variate(h3**3, h3, 0.0, "loo").mean(0)
    stats.assert_mean(loo, 2.0, what="leave-one-out, N=3")


def test_fixed_coefficient_formula():
    g = torch.tensor([[1.0], [2.0]])
    h = torch.tensor([[3.0], [5.0]])
    out = apply_control_variate(g, h, 4.0, 0.5)
    assert torch.allclose(out, torch.tensor([[1.5], [1.5]]))


# --------------------------------------------------------------------------- antithetics
def test_antithetic_square(seed, stats):
    r"""Pathwise for :math:`f(x) = x^2`: :math:`(2x, 2x\varepsilon)`. Averaged over
    :math:`\pm\varepsilon`: :math:`(2\mu, 2\sigma\varepsilon^2)`, so no variance in
    :math:`\mu` and :math:`4\sigma^2 \cdot 2 = 8\sigma^2` in :math:`\sigma` (fourth central
    moment :math:`16\sigma^4 \cdot 60`: :math:`\mathbb E(\varepsilon^2 - 1)^4 = 105 - 60 + 18 - 4 + 1 = 60`),
    against :math:`(4\mu^2 + 8\sigma^2)/2` for two independent samples."""
    g = antithetic_pathwise(lambda x: x**2, affine, params(), N)
    assert g.shape == (N, 2)
    assert torch.allclose(g[:, 0], torch.full((N,), 2 * MU, dtype=torch.float64))
    stats.assert_mean(g[:, 1], 2 * SIGMA)
    stats.assert_var(g[:, 1], 8 * SIGMA**2, 16 * SIGMA**4 * 60, what="antithetic sigma")


def test_antithetic_uniform_base(seed, stats):
    r"""Exponential by inverse CDF, :math:`x = -\log(u)/\lambda`, :math:`f(x) = x`:
    the pair average :math:`-\tfrac{1}{2}(\log u + \log(1-u))/\lambda` has mean
    :math:`1/\lambda`; its gradient in :math:`\lambda`, mean :math:`-1/\lambda^2`."""
    rate = torch.tensor([2.0], dtype=torch.float64)
    g = antithetic_pathwise(lambda x: x[:, 0], lambda p, u: -torch.log(u) / p, rate, N, noise_shape=(1,),
                            base="uniform")
    stats.assert_mean(g, [-1 / 4.0], what="antithetic exponential")


# --------------------------------------------------------------------------- QMC
def test_sobol_noise_marginals(seed, stats):
    eps = sobol_noise(4096, 3, seed=seed)
    assert eps.shape == (4096, 3) and torch.isfinite(eps).all()
    from scipy import stats as st

    for j in range(3):
        stats.assert_ks(eps[:, j], st.norm.cdf, what=f"Sobol normal coordinate {j}")
    u = sobol_noise(8, 2, base="uniform", seed=seed)
    assert ((u > 0) & (u < 1)).all()


def test_qmc_unbiased_and_lower_variance(seed, stats):
    r""":math:`f(x) = e^x`: gradient :math:`(1, \sigma)e^{\mu + \sigma^2/2}`. Over 400
    scramblings the randomised-QMC mean of 256 points is unbiased, and its variance is
    below a tenth of the Monte Carlo variance of a mean of 256 independent samples
    (by more than 5 standard errors of the sample variance), whose exact
    value is :math:`\operatorname{Var}[e^x]/256` for the :math:`\mu` coordinate
    (:math:`\operatorname{Var} e^x = e^{2\mu + \sigma^2}(e^{\sigma^2} - 1)`)."""
    reps, n = 400, 256
    means = torch.stack([qmc_pathwise(torch.exp, affine, params(), n).mean(0) for _ in range(reps)])
    e = math.exp(MU + SIGMA**2 / 2)
    stats.assert_mean(means, (e, SIGMA * e), what="RQMC mean")
    mc_var = math.exp(2 * MU + SIGMA**2) * (math.exp(SIGMA**2) - 1) / n
    var, se = stats.var_se(means[:, 0])
    stats.assert_above(mc_var / 10, var, se, "a tenth of the MC variance vs the RQMC variance", n=reps)


def test_pathwise_from_noise_matches_formula():
    eps = torch.randn(10, dtype=torch.float64)
    g = pathwise_from_noise(lambda x: x**2, affine, params(), eps)
    x = MU + SIGMA * eps
    assert torch.allclose(g, torch.stack([2 * x, 2 * x * eps], 1))


# --------------------------------------------------------------------------- bad input
def test_bad_input(raises):
    with raises(ValueError, "coefficient must be one of", "'best'"):
        apply_control_variate(torch.ones(3, 1), torch.ones(3, 1), 0.0, "best")
    with raises(ValueError, "coefficient='loo'", "n_samples >= 3", "got 2"):
        apply_control_variate(torch.ones(2, 1), torch.ones(2, 1), 0.0, "loo")
    with raises(ValueError, "g and h", "same shape", "(3, 1) and (3, 2)"):
        apply_control_variate(torch.ones(3, 1), torch.ones(3, 2), 0.0)
    with raises(TypeError, "coefficient must be", "True"):
        apply_control_variate(torch.ones(3, 1), torch.ones(3, 1), 0.0, True)
    with raises(ValueError, "coefficient must be finite", "nan"):
        apply_control_variate(torch.ones(3, 1), torch.ones(3, 1), 0.0, float("nan"))
    with raises(ValueError, "control variate needs a Normal", "got Gamma"):
        score_function_delta(torch.exp, lambda q: Gamma(q[0], q[1]), torch.tensor([1.0, 1.0]), 4)
    with raises(TypeError, "f must be callable", "None"):
        score_function_delta(None, normal, params(), 4)
    with raises(ValueError, "n_samples", "got 0"):
        score_function_delta(torch.exp, normal, params(), 0)
    with raises(ValueError, "base must be one of", "'gumbel'"):
        antithetic_pathwise(torch.exp, affine, params(), 4, base="gumbel")
    with raises(ValueError, "n_pairs", "got 0"):
        antithetic_pathwise(torch.exp, affine, params(), 0)
    with raises(ValueError, "dim must be", "100000"):
        sobol_noise(4, 100_000)
    with raises(TypeError, "noise must be a torch.Tensor", "[1.0]"):
        pathwise_from_noise(torch.exp, affine, params(), [1.0])
    with raises(ValueError, "needs at least 2 samples", "got 1"):
        optimal_coefficient(torch.ones(1, 1), torch.ones(1, 1))
