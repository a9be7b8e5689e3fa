"""Tests of companion.experiments.covariance: steps off the covariance cone, and the
pathwise gradients of a quadratic form in mu, L and Sigma."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm

from companion.experiments.covariance import not_positive_definite, quadratic_form_gradients, random_steps

F64 = torch.float64
SIGMA = torch.tensor([[1.0, 0.95], [0.95, 1.0]], dtype=F64)


def test_not_positive_definite_flags_exactly_the_bad_matrices():
    mats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],     # identity
                         [[1.0, 2.0], [2.0, 1.0]],     # eigenvalues 3, -1
                         [[1.0, 1.0], [1.0, 1.0]],     # singular
                         [[2.0, 0.5], [0.5, 1.0]]], dtype=F64)
    assert not_positive_definite(mats).tolist() == [False, True, True, False]


def test_cholesky_exits_match_the_normal_probability(seed, stats):
    """A step on the raw (L21, L11, L22) adds independent N(0, s^2) noise; it leaves the
    Cholesky factors when L11 + e1 <= 0 or L22 + e2 <= 0, with probability
    1 - Phi(L11 / s) Phi(L22 / s). The share over 20000 steps is a binomial proportion."""
    n, s = 20_000, 0.3
    exits = random_steps(SIGMA, s, n, torch.Generator().manual_seed(seed))
    chol = torch.linalg.cholesky(SIGMA)
    p = 1 - norm.cdf(float(chol[0, 0]) / s) * norm.cdf(float(chol[1, 1]) / s)
    stats.assert_proportions([exits.cholesky_fraction * n], n, [p], "Cholesky exits")


def test_sigma_exits_are_the_steps_with_a_negative_eigenvalue(seed):
    """Redrawing the same steps, the share that leaves the cone is the share whose smallest
    eigenvalue is <= 0; the first bad matrix returned is one of them."""
    g = torch.Generator().manual_seed(seed)
    exits = random_steps(SIGMA, 0.3, 2000, g)
    g = torch.Generator().manual_seed(seed)
    steps = 0.3 * torch.randn((2000, 2, 2), generator=g, dtype=F64)
    new = SIGMA + (steps + steps.transpose(1, 2)) / 2
    bad = torch.linalg.eigvalsh(new)[:, 0] <= 0
    assert exits.sigma_fraction == pytest.approx(bad.double().mean().item())
    torch.testing.assert_close(exits.first_bad, new[bad][0])
    assert 0.3 < exits.sigma_fraction < 0.6


def test_quadratic_form_gradients_match_autograd_of_the_expectation(seed, stats):
    """E f = (mu-k)^T A (mu-k) + tr(A L L^T): autograd of this closed form in mu, L and
    Sigma = L L^T gives the exact gradients the function compares with (the Sigma
    gradient treats the entries as independent, A; sigma_12 stored once gets 2 A_12);
    and each Monte Carlo mean lies within 5 standard errors of them (the function reports
    the largest |z| = |mean - exact| / SE of each parameter, a number of standard errors)."""
    mu = torch.tensor([1.0, -0.5], dtype=F64)
    sig = torch.tensor([[1.0, 0.8], [0.8, 2.0]], dtype=F64)
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    k = torch.tensor([0.5, 0.5], dtype=F64)
    z = torch.randn(20_000, 2, dtype=F64)
    rows = quadratic_form_gradients(mu, sig, a, k, z)
    m = mu.clone().requires_grad_(True)
    chol = torch.linalg.cholesky(sig).requires_grad_(True)
    s = sig.clone().requires_grad_(True)
    gm, gl = torch.autograd.grad((m - k) @ a @ (m - k) + torch.trace(a @ chol @ chol.T), (m, chol))
    (gs,) = torch.autograd.grad(torch.trace(a @ s), (s,))
    torch.testing.assert_close(rows["mu"].exact, gm)
    torch.testing.assert_close(rows["L"].exact, gl.tril())
    torch.testing.assert_close(rows["Sigma"].exact, gs)
    assert float(rows["s12"].exact) == pytest.approx(2 * 0.5)
    for name, row in rows.items():
        stats.assert_within(row.max_abs_z, 0.0, 1.0, f"largest |z| of the {name} gradient")


def test_quadratic_form_gradients_detect_a_wrong_map(generator, stats):
    """Control: with z scaled by 2 (the law of N(mu, 4 Sigma)) the L and Sigma gradients
    miss their closed forms by far more than 5 standard errors."""
    gen = generator
    mu, k = torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)
    a = torch.eye(2, dtype=F64)
    rows = quadratic_form_gradients(mu, SIGMA, a, k, 2 * torch.randn(20_000, 2, generator=gen, dtype=F64))
    stats.assert_above([rows["L"].max_abs_z, rows["Sigma"].max_abs_z], 0.0, 1.0, "largest |z| of L, Sigma")


@pytest.mark.parametrize(
    "call, exc, names",
    [
        (lambda: not_positive_definite(torch.ones(2, 3, dtype=F64)), ValueError, ("mats", "(2, 3)")),
        (lambda: random_steps(torch.eye(3, dtype=F64), 0.3, 10, torch.Generator()), ValueError, ("sigma", "(3, 3)")),
        (lambda: random_steps(SIGMA, -0.3, 10, torch.Generator()), ValueError, ("scale", "-0.3")),
        (lambda: random_steps(SIGMA, 0.3, 0, torch.Generator()), ValueError, ("n_steps", "0")),
        (lambda: random_steps(SIGMA, 0.3, 10, 1), TypeError, ("generator", "1")),
        (lambda: quadratic_form_gradients(torch.zeros(2, dtype=F64), SIGMA, SIGMA, torch.zeros(2, dtype=F64),
                                          torch.zeros(5, 3, dtype=F64)), ValueError, ("z must", "(5, 3)")),
        # the closed forms assume A = A^T; a non-symmetric A would give wrong "exact" values
        (lambda: quadratic_form_gradients(torch.zeros(2, dtype=F64), SIGMA, torch.tensor([[1.0, 2.0], [0.0, 1.0]],
                                          dtype=F64), torch.zeros(2, dtype=F64), torch.zeros(5, 2, dtype=F64)),
         ValueError, ("a must be symmetric", "[[1.0, 2.0], [0.0, 1.0]]")),
    ],
)
def test_bad_input_names_the_argument(call, exc, names, raises):
    with raises(exc, *names):
        call()
