r"""The measure-valued estimator's mathematics: unbiasedness and variance against closed forms.

Notation. :math:`x \sim N(\mu, \sigma^2)`; :math:`R` is a standard Rayleigh variable
(density :math:`r e^{-r^2/2}` on :math:`r > 0`), with :math:`\mathbb E R = \sqrt{\pi/2}`,
:math:`\mathbb E R^2 = 2`, :math:`\operatorname{Var} R = 2 - \pi/2`, and :math:`R^2 \sim
\operatorname{Exp}(1/2)` so :math:`\operatorname{Var} R^2 = 4`; :math:`M` is a standard
double-sided Maxwell variable (density :math:`m^2\varphi(m)`), :math:`\mathbb E M^2 = 3`,
:math:`\mathbb E M^4 = 15`, odd moments 0; :math:`U \sim \mathcal U(0, 1)`.

Every gradient below is checked within 5 standard errors (``stats.assert_mean``) of
its closed form; the estimator is seeded through the ``seed`` fixture.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as st
from torch.distributions import Bernoulli, Exponential, Gamma, Independent, Normal, Poisson

from companion.estimators import measure_valued as exported
from companion.measure_valued import evaluations_per_sample, measure_valued

N = 100_000
MU, SIGMA = 1.5, 0.8


def normal(p):
    return Normal(p[0], p[1])


def normal_logscale(p):
    return Normal(p[0], p[1].exp())


def params():
    return torch.tensor([MU, SIGMA], dtype=torch.float64)


def test_exported_from_estimators():
    assert exported is measure_valued


# --------------------------------------------------------------------------- Normal
def _phi(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


NORMAL_CASES = {
    # f, (d/dmu, d/dsigma) of E[f(x)]
    # E[x^2] = mu^2 + sigma^2.
    "square": (lambda x: x**2, (2 * MU, 2 * SIGMA)),
    # E[e^x] = e^{mu + sigma^2/2}; d/dmu = E, d/dsigma = sigma E.
    "exp": (lambda x: torch.exp(x), (math.exp(MU + SIGMA**2 / 2), SIGMA * math.exp(MU + SIGMA**2 / 2))),
    # E[1{x > 0}] = Phi(mu/sigma); d/dmu = phi(mu/sigma)/sigma, d/dsigma = -mu/sigma^2 phi(mu/sigma).
    "step": (
        lambda x: (x > 0).to(x.dtype),
        (_phi(MU / SIGMA) / SIGMA, -MU / SIGMA**2 * _phi(MU / SIGMA)),
    ),
}


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("case", list(NORMAL_CASES))
def test_normal_unbiased(seed, stats, case, coupling):
    r"""Unbiased for smooth f and for a step, which the pathwise estimator gets wrong (0).

    Closed forms: :math:`\mathbb E x^2 = \mu^2 + \sigma^2`,
    :math:`\mathbb E e^x = e^{\mu + \sigma^2/2}`, :math:`\mathbb E 1\{x > 0\} = \Phi(\mu/\sigma)`,
    differentiated in :math:`\mu` and :math:`\sigma`.
    """
    f, expected = NORMAL_CASES[case]
    g = measure_valued(f, normal, params(), N, coupling=coupling)
    assert g.shape == (N, 2) and g.dtype == torch.float64
    stats.assert_mean(g, expected, what=f"{case}, coupling={coupling}")


def test_chain_rule_through_dist_fn(seed, stats):
    r"""``Normal(p0, exp(p1))``: :math:`\partial_{p_1} = \sigma\,\partial_\sigma`, so
    :math:`\partial_{p_1}\mathbb E x^2 = 2\sigma^2`."""
    p = torch.tensor([MU, math.log(SIGMA)], dtype=torch.float64)
    g = measure_valued(lambda x: x**2, normal_logscale, p, N)
    stats.assert_mean(g, (2 * MU, 2 * SIGMA**2), what="log-scale chain rule")


def test_normal_square_variance_coupled(seed, stats):
    r"""Variance for :math:`f(x) = x^2` with coupling.

    Mean: :math:`x^\pm = \mu \pm \sigma R`, :math:`f(x^+) - f(x^-) = 4\mu\sigma R`, times
    :math:`c = 1/(\sigma\sqrt{2\pi})`: :math:`\hat g_\mu = 4\mu R/\sqrt{2\pi}`, with mean
    :math:`4\mu\sqrt{\pi/2}/\sqrt{2\pi} = 2\mu` and variance
    :math:`\frac{16\mu^2}{2\pi}(2 - \frac\pi2) = \frac{8\mu^2}{\pi}(2 - \frac\pi2)`.

    Scale: :math:`x^+ = \mu + \sigma M`, :math:`x^- = \mu + \sigma U M`, :math:`c = 1/\sigma`:
    :math:`\hat g_\sigma = 2\mu M(1-U) + \sigma M^2 (1 - U^2)`. Mean
    :math:`\sigma \cdot 3 \cdot \frac23 = 2\sigma`; second moment
    :math:`4\mu^2 \cdot 3 \cdot \frac13 + \sigma^2 \cdot 15 \cdot \frac{8}{15} = 4\mu^2 + 8\sigma^2`
    (the cross term has :math:`\mathbb E M^3 = 0`; :math:`\mathbb E(1-U)^2 = \frac13`,
    :math:`\mathbb E(1-U^2)^2 = \frac8{15}`), so the variance is :math:`4\mu^2 + 4\sigma^2`.
    """
    g = measure_valued(lambda x: x**2, normal, params(), N, coupling=True)
    var = (8 * MU**2 / math.pi * (2 - math.pi / 2), 4 * MU**2 + 4 * SIGMA**2)
    stats.assert_var(g, var, stats.sample_mu4(g), what="coupled variance of x^2")


def test_normal_square_variance_uncoupled(seed, stats):
    r"""Variance for :math:`f(x) = x^2` without coupling.

    Mean: :math:`R, R'` independent, :math:`f(\mu + \sigma R) - f(\mu - \sigma R') =
    (2\mu\sigma R + \sigma^2 R^2) + (2\mu\sigma R' - \sigma^2 R'^2)`, a sum of two independent
    terms of variance :math:`4\mu^2\sigma^2 \operatorname{Var}R + \sigma^4\operatorname{Var}R^2
    \pm 4\mu\sigma^3\operatorname{Cov}(R, R^2)`; the covariances cancel in the sum, so
    :math:`\operatorname{Var}\hat g_\mu = \frac{8\mu^2\sigma^2(2 - \pi/2) + 8\sigma^4}{2\pi\sigma^2}
    = \frac4\pi\bigl(\mu^2(2 - \frac\pi2) + \sigma^2\bigr)`.

    Scale: :math:`Z \sim N(0,1)` independent of :math:`M`,
    :math:`\hat g_\sigma = 2\mu(M - Z) + \sigma(M^2 - Z^2)`, second moment
    :math:`4\mu^2(3 + 1) + \sigma^2(15 - 2\cdot 3 + 3) = 16\mu^2 + 12\sigma^2`, variance
    :math:`16\mu^2 + 8\sigma^2`. (Coupling helps the scale always, and the mean only when
    :math:`\mu^2(2 - \pi/2) < \sigma^2`.)
    """
    g = measure_valued(lambda x: x**2, normal, params(), N, coupling=False)
    var = (4 / math.pi * (MU**2 * (2 - math.pi / 2) + SIGMA**2), 16 * MU**2 + 8 * SIGMA**2)
    stats.assert_var(g, var, stats.sample_mu4(g), what="uncoupled variance of x^2")


def test_diagonal_normal_one_coordinate_at_a_time(seed, stats):
    r"""``Independent(Normal(mu, sigma), 1)`` in 3 dimensions, :math:`f(x) = \sum_j w_j x_j^2`:
    :math:`\partial_{\mu_j} = 2 w_j \mu_j`, :math:`\partial_{\sigma_j} = 2 w_j \sigma_j`.

    With coupling the other coordinates cancel in :math:`f(x^+) - f(x^-)`, so each
    coordinate's estimate is the one-dimensional one: its variance is
    :math:`w_j^2 \cdot 8\mu_j^2(2 - \pi/2)/\pi` for the mean (see the coupled test).
    """
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 1.5], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    p = torch.stack([mu, sigma])
    g = measure_valued(lambda x: (w * x**2).sum(-1), lambda q: Independent(Normal(q[0], q[1]), 1), p, N)
    assert g.shape == (N, 2, 3)
    stats.assert_mean(g, torch.stack([2 * w * mu, 2 * w * sigma]), what="diagonal Gaussian")
    var_mu = w**2 * 8 * mu**2 / math.pi * (2 - math.pi / 2)
    stats.assert_var(g[:, 0], var_mu, stats.sample_mu4(g[:, 0]), what="diagonal Gaussian, coupled mean")


# --------------------------------------------------------------------------- Exponential
RATE = 1.7
EXP_CASES = {
    # E[x^2] = 2/rate^2 -> -4/rate^3.
    "square": (lambda x: x**2, -4 / RATE**3),
    # E[e^{-x}] = rate/(rate+1) -> 1/(rate+1)^2.
    "exp": (lambda x: torch.exp(-x), 1 / (RATE + 1) ** 2),
    # E[1{x > 1}] = e^{-rate} -> -e^{-rate}.
    "step": (lambda x: (x > 1).to(x.dtype), -math.exp(-RATE)),
}


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("case", list(EXP_CASES))
def test_exponential_unbiased(seed, stats, case, coupling):
    r""":math:`\partial_\lambda \operatorname{Exp}(\lambda) = \frac1\lambda(\operatorname{Exp}(\lambda)
    - \operatorname{Gamma}(2, \lambda))`; closed forms :math:`\mathbb E x^2 = 2/\lambda^2`,
    :math:`\mathbb E e^{-x} = \lambda/(\lambda + 1)`, :math:`P(x > 1) = e^{-\lambda}`."""
    f, expected = EXP_CASES[case]
    g = measure_valued(f, lambda p: Exponential(p), torch.tensor(RATE, dtype=torch.float64), N, coupling=coupling)
    assert g.shape == (N,)
    stats.assert_mean(g, expected, what=f"exponential {case}")


def test_exponential_square_variance_coupled(seed, stats):
    r"""Coupled: :math:`x^+ = E_1/\lambda`, :math:`x^- = (E_1 + E_2)/\lambda`, so
    :math:`\hat g = \frac1\lambda (x^{+2} - x^{-2}) = -(2E_1E_2 + E_2^2)/\lambda^3`. With
    :math:`\mathbb E E^k = k!`: mean :math:`-(2 + 2)/\lambda^3`, second moment
    :math:`(4\cdot 2\cdot 2 + 4\cdot 1 \cdot 6 + 24)/\lambda^6 = 64/\lambda^6`, variance
    :math:`48/\lambda^6`."""
    g = measure_valued(lambda x: x**2, lambda p: Exponential(p), torch.tensor(RATE, dtype=torch.float64), N)
    stats.assert_var(g, 48 / RATE**6, stats.sample_mu4(g), what="coupled exponential variance")


# --------------------------------------------------------------------------- Poisson
LAM = 2.5


def _poisson_moments(h, lam, kmax=200):
    k = np.arange(kmax)
    pmf = st.poisson.pmf(k, lam)
    values = h(k.astype(np.float64))
    mean = float((pmf * values).sum())
    return mean, float((pmf * (values - mean) ** 2).sum())


def test_poisson_exact_coupled(seed, stats):
    r""":math:`\partial_\lambda p(k) = p(k-1) - p(k)`: :math:`x^+ = K + 1`, :math:`x^- = K`.
    For :math:`f(k) = k^2` the estimate is :math:`2K + 1`: mean :math:`2\lambda + 1 =
    \partial_\lambda(\lambda + \lambda^2)`, variance :math:`4\lambda`; for
    :math:`f(k) = 1\{k \ge 2\}` it is :math:`1\{K = 1\}`, mean
    :math:`\lambda e^{-\lambda} = \partial_\lambda(1 - e^{-\lambda}(1 + \lambda))`."""
    lam = torch.tensor(LAM, dtype=torch.float64)
    g = measure_valued(lambda k: k**2, lambda p: Poisson(p), lam, N)
    # Every estimate is an odd integer 2K + 1.
    assert torch.equal(torch.remainder(g, 2.0), torch.ones_like(g))
    stats.assert_mean(g, 2 * LAM + 1, what="Poisson k^2")
    stats.assert_var(g, 4 * LAM, 16 * (LAM + 3 * LAM**2), what="Poisson k^2 variance")  # mu4 of 2K: 16(l + 3l^2)
    step = measure_valued(lambda k: (k >= 2).to(k.dtype), lambda p: Poisson(p), lam, N)
    stats.assert_mean(step, LAM * math.exp(-LAM), what="Poisson step")


def test_poisson_uncoupled_variance(seed, stats):
    r"""Uncoupled: :math:`(K' + 1)^2 - K^2` with :math:`K, K'` independent, variance
    :math:`\operatorname{Var}(K+1)^2 + \operatorname{Var}K^2`, summed from the pmf."""
    g = measure_valued(lambda k: k**2, lambda p: Poisson(p), torch.tensor(LAM, dtype=torch.float64), N, coupling=False)
    v = _poisson_moments(lambda k: (k + 1) ** 2, LAM)[1] + _poisson_moments(lambda k: k**2, LAM)[1]
    stats.assert_mean(g, 2 * LAM + 1, what="uncoupled Poisson")
    stats.assert_var(g, v, stats.sample_mu4(g), what="uncoupled Poisson variance")


# --------------------------------------------------------------------------- Bernoulli
def test_bernoulli_is_deterministic():
    r""":math:`\partial_\pi \mathbb E[f(x)] = f(1) - f(0)` exactly: every sample gives it."""
    f = lambda x: (x - 0.3) ** 3  # noqa: E731
    g = measure_valued(f, lambda p: Bernoulli(probs=p), torch.tensor(0.2, dtype=torch.float64), 50)
    assert torch.allclose(g, torch.full((50,), 0.7**3 - (-0.3) ** 3, dtype=torch.float64))


def test_bernoulli_logits_and_vector(seed, stats):
    r"""Two Bernoullis from logits :math:`\ell`, :math:`f(x) = (2x_1 + x_2)^2`.
    :math:`\partial_{\ell_j} = \pi_j(1 - \pi_j)\,\partial_{\pi_j}`;
    :math:`\partial_{\pi_1}\mathbb E f = \mathbb E[(2 + x_2)^2 - x_2^2] = 4 + 4\pi_2`,
    :math:`\partial_{\pi_2}\mathbb E f = \mathbb E[(2x_1 + 1)^2 - (2x_1)^2] = 4\pi_1 + 1`."""
    logits = torch.tensor([0.3, -1.0], dtype=torch.float64)
    pi = torch.sigmoid(logits)
    g = measure_valued(lambda x: (2 * x[:, 0] + x[:, 1]) ** 2, lambda p: Bernoulli(logits=p), logits, N)
    expected = pi * (1 - pi) * torch.stack([4 + 4 * pi[1], 4 * pi[0] + 1])
    stats.assert_mean(g, expected, what="Bernoulli logits")
    # Each row takes one of two values: f(1, x2) - f(0, x2) with x2 in {0, 1}.
    assert set(torch.round(g[:, 0] / (pi[0] * (1 - pi[0])), decimals=6).tolist()) <= {4.0, 8.0}


# --------------------------------------------------------------------------- cost and contract
@pytest.mark.parametrize(
    "dist_fn, p, expected",
    [
        (normal, params(), 4),
        (lambda q: Independent(Normal(q[0], q[1]), 1), torch.ones(2, 5, dtype=torch.float64), 20),
        (lambda q: Exponential(q), torch.tensor(1.0), 2),
        (lambda q: Bernoulli(logits=q), torch.zeros(3), 6),
    ],
)
def test_evaluations_counted(dist_fn, p, expected):
    """Two evaluations of f per scalar parameter of the distribution, as documented."""
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return x.reshape(x.shape[0], -1).sum(-1)

    measure_valued(f, dist_fn, p, 7)
    assert len(calls) == expected == evaluations_per_sample(dist_fn(p))
    assert set(calls) == {7}


@pytest.mark.parametrize(
    "p", [torch.tensor([0.0, 1e-20], dtype=torch.float64), torch.tensor([1e6, 1e6])], ids=["tiny_sigma", "huge_float32"]
)
def test_extreme_scale_stays_finite_and_unbiased(p, seed, stats):
    r""":math:`f(x) = x`: :math:`\nabla(\mu, \sigma)\,\mathbb E x = (1, 0)` at any scale. A tiny
    :math:`\sigma` (the weights :math:`1/\sigma` are huge) and huge float32 parameters give
    finite estimates with that mean."""
    g = measure_valued(lambda x: x, normal, p, 20_000)
    assert torch.isfinite(g).all()
    stats.assert_mean(g, [1.0, 0.0], what=f"grad of E[x] at params {p.tolist()}")


def test_float32_shape_and_mean(seed, stats):
    r"""float32 params give float32 estimates of shape (n, 2), unbiased for
    :math:`\nabla\mathbb E x^2 = (2\mu, 2\sigma) = (0, 2)`."""
    g = measure_valued(lambda x: x**2, normal, torch.tensor([0.0, 1.0]), N)
    assert g.shape == (N, 2) and g.dtype == torch.float32
    stats.assert_mean(g, [0.0, 2.0], what="float32 grad of E[x^2]")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(f=3), TypeError, "f must be callable"),
        (dict(dist_fn="normal"), TypeError, "dist_fn must be callable"),
        (dict(params=[1.0, 1.0]), TypeError, "params must be a torch.Tensor"),
        (dict(params=torch.tensor([1.0, float("nan")])), ValueError, "params must be finite"),
        (dict(params=torch.tensor([0.0, -1.0])), ValueError, r"rejected params=\[0.0, -1.0\]"),
        (dict(n_samples=0), ValueError, "n_samples must be an int >= 1, got 0"),
        (dict(n_samples=2.0), TypeError, "n_samples must be an int, got 2.0"),
        (dict(coupling="yes"), TypeError, "coupling must be a bool, got 'yes'"),
        (dict(f=lambda x: x[:2]), ValueError, "f must map a batch"),
        (dict(dist_fn=lambda q: Gamma(q[0].exp(), q[1])), ValueError, "measure_valued supports"),
        (dict(dist_fn=lambda q: 1.0), TypeError, "must return a torch.distributions"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(f=lambda x: x, dist_fn=normal, params=torch.tensor([0.0, 1.0]), n_samples=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        measure_valued(**args)
