"""Closed forms that chapters 3 and 4 print, checked against quadrature or autograd.

* chapter 3: d/dmu E|x| = 2 Phi(mu/sigma) - 1 and d/dmu P(x > 0) = phi(mu/sigma)/sigma
  (``closed_forms.abs_mean_gradient``, ``step_mean_gradient``) against central
  differences of adaptive quadrature, whose break point sits on the kink or jump;
* chapter 3: the gradient in Sigma of E[f(x)], x ~ N(mu, Sigma), is half the mean
  Hessian (Price's theorem; for the chapter's quadratic form it is A);
* chapter 4: the closed-form d x2/d rho and d x2/d sigma2 of the bivariate normal
  (``closed_forms.bivariate_normal_x2_gradients``) against autograd through
  ``torch.linalg.cholesky``;
* chapter 4: ``variance_check.simulate_exponential_max_abs_z``, the simulated yardstick
  for the largest |z| of the exponential variance comparison.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.experiments import closed_forms as cf
from companion.experiments import variance_check as vc

MU_SIGMA = [(-1.3, 0.7), (0.0, 1.0), (0.4, 2.0), (2.5, 1.0)]
H = 1e-4  # central-difference step


def _derivative(expectation, mu, sigma):
    """Central difference in mu of a quadrature expectation."""
    return (expectation(mu + H, sigma) - expectation(mu - H, sigma)) / (2 * H)


@pytest.mark.parametrize("mu,sigma", MU_SIGMA)
def test_abs_mean_gradient_is_derivative_of_quadrature(mu, sigma):
    """2 Phi(mu/sigma) - 1 is d/dmu of E|x| integrated numerically, and also
    E[sign x] integrated numerically (the pathwise estimator's mean)."""
    def mean_abs(m, s):
        return cf.normal_expectation(np.abs, m, s)

    closed = cf.abs_mean_gradient(mu, sigma)
    assert isinstance(closed, float)
    assert _derivative(mean_abs, mu, sigma) == pytest.approx(closed, abs=1e-6)
    assert cf.normal_expectation(np.sign, mu, sigma) == pytest.approx(closed, abs=1e-10)


@pytest.mark.parametrize("mu,sigma", MU_SIGMA)
def test_step_mean_gradient_is_derivative_of_quadrature(mu, sigma):
    """phi(mu/sigma)/sigma is d/dmu of P(x > 0) integrated numerically."""
    def p_positive(m, s):
        return cf.normal_expectation(lambda x: float(x > 0), m, s)

    closed = cf.step_mean_gradient(mu, sigma)
    assert _derivative(p_positive, mu, sigma) == pytest.approx(closed, abs=1e-6)
    # wrong by a factor sigma (the density of eps, not of x) must be caught
    if sigma != 1.0:
        assert _derivative(p_positive, mu, sigma) != pytest.approx(closed * sigma, abs=1e-3)


def test_non_smooth_gradients_are_elementwise():
    mus = np.linspace(-2.5, 2.5, 11)
    for fn in (cf.abs_mean_gradient, cf.step_mean_gradient):
        arr = fn(mus, 1.5)
        assert arr.shape == mus.shape
        np.testing.assert_array_equal(arr, [fn(float(m), 1.5) for m in mus])


def test_non_smooth_gradients_reject_bad_input(raises):
    with raises(ValueError, "sigma", "-1.0"):
        cf.abs_mean_gradient(0.0, -1.0)
    with raises(ValueError, "mu", "nan"):
        cf.step_mean_gradient(float("nan"))
    with raises(TypeError, "mu", "'a'"):
        cf.abs_mean_gradient("a")


@pytest.mark.parametrize("rho,sigma2", [(0.8 / math.sqrt(2.0), math.sqrt(2.0)), (-0.3, 0.5)])
def test_bivariate_x2_gradients_match_autograd_through_cholesky(rho, sigma2, generator):
    """The closed forms equal autograd's per-sample derivatives of x = mu + L z, with L
    from torch.linalg.cholesky of Sigma(rho, sigma2) (sigma1 = 1.3), to rounding."""
    n, s1 = 500, 1.3
    z = torch.randn((n, 2), generator=generator, dtype=torch.float64)
    r = torch.full((n,), rho, dtype=torch.float64, requires_grad=True)
    s2 = torch.full((n,), sigma2, dtype=torch.float64, requires_grad=True)
    cov = torch.stack([torch.stack([s1**2 + 0 * r, r * s1 * s2], -1),
                       torch.stack([r * s1 * s2, s2**2], -1)], -2)
    x2 = (torch.linalg.cholesky(cov) @ z.unsqueeze(-1)).squeeze(-1)[:, 1]
    d_rho, d_s2 = torch.autograd.grad(x2.sum(), (r, s2))
    c_rho, c_s2 = cf.bivariate_normal_x2_gradients(z[:, 0], z[:, 1], rho, sigma2)
    torch.testing.assert_close(c_rho, d_rho, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c_s2, d_s2, rtol=1e-12, atol=1e-12)
    # NumPy arrays give the same numbers
    a_rho, _ = cf.bivariate_normal_x2_gradients(z[:, 0].numpy(), z[:, 1].numpy(), rho, sigma2)
    np.testing.assert_allclose(a_rho, d_rho.numpy(), rtol=1e-12, atol=1e-12)


def test_bivariate_x2_gradients_reject_bad_input(raises):
    with raises(ValueError, "rho", "1.0"):
        cf.bivariate_normal_x2_gradients(0.0, 0.0, 1.0, 1.0)
    with raises(ValueError, "sigma2", "0.0"):
        cf.bivariate_normal_x2_gradients(0.0, 0.0, 0.5, 0.0)


def test_price_theorem_sigma_gradient_is_half_mean_hessian(generator, stats):
    """Price (1958): d E[f(x)]/d Sigma = E[Hessian of f]/2 for x ~ N(mu, Sigma), with the
    entry-wise (symmetric-part) convention of chapter 3's Sigma gradient; for
    f = (x-k)^T A (x-k) the Hessian is 2A, which gives chapter 3's A. Checked for a
    non-quadratic f on paired per-sample pathwise gradients (through mvn_sqrtm) and
    Hessians; the mean Hessian itself (a factor 2 off) must be rejected."""
    from torch.func import hessian, jacfwd, vmap

    from companion.reparam import mvn_sqrtm

    n = 20_000
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    sigma = torch.tensor([[1.0, 0.5], [0.5, 1.5]], dtype=torch.float64)
    z = torch.randn((n, 2), generator=generator, dtype=torch.float64)

    def f(x):
        return torch.cos(x[..., 0] + 0.5 * x[..., 1]) + 0.1 * x[..., 0] ** 2 * x[..., 1] ** 2

    grad_sigma = jacfwd(lambda s: f(mvn_sqrtm(mu, s, z=z)))(sigma)  # (n, 2, 2)
    hess = vmap(hessian(f))(mvn_sqrtm(mu, sigma, z=z))  # (n, 2, 2)
    stats.assert_mean((grad_sigma - hess / 2).reshape(n, 4), 0.0, "grad_Sigma E[f] - E[H]/2")
    stats.assert_mean_differs((grad_sigma - hess).reshape(n, 4), 0.0, "grad_Sigma E[f] - E[H]")


def test_simulated_exponential_z_has_unit_mean_square(seed, stats):
    """For one case the simulated z = (s^2 - V)/SE has E[z^2] = Var[s^2]/SE^2, which is
    1 up to O(1/N): a wrong V or SE moves it."""
    rng = np.random.default_rng(seed)
    for key in ("pathwise", "score_function[baseline=b]"):
        sim = vc.simulate_exponential_max_abs_z([1.0], 2_000, 2_000, rng, keys=[key])
        assert sim.shape == (2_000,) and (sim >= 0).all()
        stats.assert_mean(sim**2, 1.0, f"mean square of simulated z, {key}")


def test_simulated_exponential_z_matches_a_direct_computation(seed):
    """Drawing in chunks (here 4 + 3 repeats of 500000) gives what one draw of all
    repeats gives: the largest |z| over two k, computed by hand from the closed forms."""
    n, r, ks = 500_000, 7, [0.0, 4.0]
    got = vc.simulate_exponential_max_abs_z(ks, n, r, np.random.default_rng(seed), keys=["score_function"])
    rng = np.random.default_rng(seed)
    want = np.zeros(r)
    for k in ks:
        zs = rng.standard_exponential((r, n))
        g = (zs - k) ** 2 * (1 - zs)
        v = cf.exponential_estimator_variance("score_function", k, 1.0)
        se = cf.exponential_variance_standard_error("score_function", k, 1.0, n)
        want = np.maximum(want, np.abs(g.var(axis=1, ddof=1) - v) / se)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_simulated_exponential_z_rejects_bad_input(raises):
    rng = np.random.default_rng(0)
    with raises(ValueError, "n_samples"):
        vc.simulate_exponential_max_abs_z([1.0], 1, 3, rng)
    with raises(TypeError, "rng"):
        vc.simulate_exponential_max_abs_z([1.0], 10, 3, 0)
    with raises(ValueError, "ks"):
        vc.simulate_exponential_max_abs_z([], 10, 3, rng)
    with raises(ValueError, "key", "nope"):
        vc.simulate_exponential_max_abs_z([1.0], 10, 3, rng, keys=["nope"])
    with raises(ValueError, "rate", "-1"):
        vc.simulate_exponential_max_abs_z([1.0], 10, 3, rng, rate=-1.0)
