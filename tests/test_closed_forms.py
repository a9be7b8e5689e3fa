"""Tests of companion.experiments.closed_forms: closed forms against quadrature, and both against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Exponential, Normal

from companion.experiments import closed_forms as cf
from companion.estimators import pathwise, score_function

NAMES = cf.GAUSSIAN_TEST_FUNCTIONS
ESTIMATORS = {"pathwise": pathwise, "score_function": score_function}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0.0, 0.7, 2.5])
@pytest.mark.parametrize("mu,sigma", [(1.0, 1.0), (-0.4, 0.6)])
def test_expectation_matches_quadrature(name, k, mu, sigma):
    """The closed-form E[f(x)] equals adaptive quadrature and Gauss-Hermite quadrature.

    E[(x-k)^2] = (mu-k)^2 + sigma^2 (bias plus variance); E[exp(-k x^2)] completes the
    square; E[cos kx] is the real part of the characteristic function exp(i k mu - k^2 sigma^2/2).
    """
    f = cf._f_and_df(name, k)[0]
    closed = cf.gaussian_expectation(name, k, mu, sigma)
    assert cf.normal_expectation(f, mu, sigma) == pytest.approx(closed, rel=1e-10, abs=1e-13)
    assert cf.normal_expectation(f, mu, sigma, method="gauss_hermite") == pytest.approx(closed, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0.3, 1.7])
def test_gradient_is_derivative_of_expectation(name, k):
    """gaussian_gradient is the derivative of gaussian_expectation (central differences, step 1e-5)."""
    mu, sigma, h = 0.8, 1.3, 1e-5
    d_mu = (cf.gaussian_expectation(name, k, mu + h, sigma) - cf.gaussian_expectation(name, k, mu - h, sigma)) / (2 * h)
    d_sigma = (cf.gaussian_expectation(name, k, mu, sigma + h) - cf.gaussian_expectation(name, k, mu, sigma - h)) / (2 * h)
    g = cf.gaussian_gradient(name, k, mu, sigma)
    assert g[0] == pytest.approx(d_mu, rel=1e-7, abs=1e-9)
    assert g[1] == pytest.approx(d_sigma, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("estimator", cf.ESTIMATORS)
@pytest.mark.parametrize("k", [-2.0, 0.0, 1.0, 3.0])
@pytest.mark.parametrize("mu,sigma", [(1.0, 1.0), (0.3, 2.0)])
def test_quadratic_closed_form_matches_quadrature(estimator, k, mu, sigma):
    """The quadratic's closed-form variances equal their numerical integrals.

    Derivation (c = mu - k, x = mu + sigma eps, E eps^(2m) = 1, 1, 3, 15, 105):
    pathwise g_mu = 2(c + s eps): variance 4 s^2; g_sigma = 2(c + s eps) eps: E g^2 =
    4(c^2 + 3 s^2), mean 2s, variance 4c^2 + 8s^2. Score g_mu = (c + s eps)^2 eps / s:
    E g^2 = (c^4 + 18 c^2 s^2 + 15 s^4)/s^2, mean 2c; g_sigma = (c + s eps)^2 (eps^2 - 1)/s:
    E g^2 = (2c^4 + 60 c^2 s^2 + 78 s^4)/s^2, mean 2s.
    """
    closed = cf.gaussian_estimator_variance("quadratic", estimator, k, mu, sigma, method="closed_form")
    quad = cf.gaussian_estimator_variance("quadratic", estimator, k, mu, sigma, method="quadrature")
    assert closed == pytest.approx(quad, rel=1e-9)


def test_cos_pathwise_mu_variance_closed_form():
    """For cos(kx), the pathwise d/dmu estimate is -k sin(kx); its variance is closed form.

    E[k^2 sin^2 kx] = k^2 (1 - E cos 2kx)/2 = k^2 (1 - exp(-2 k^2 s^2) cos 2k mu)/2, and
    E[-k sin kx] = -k exp(-k^2 s^2/2) sin k mu, so V = that minus the squared mean.
    """
    for k in (0.5, 2.0, 6.0):
        mu, s = 1.0, 1.0
        expect = k**2 * (1 - math.exp(-2 * k**2 * s**2) * math.cos(2 * k * mu)) / 2
        expect -= (k * math.exp(-(k**2) * s**2 / 2) * math.sin(k * mu)) ** 2
        assert cf.gaussian_estimator_variance("cos", "pathwise", k, mu, s)[0] == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("estimator", cf.ESTIMATORS)
@pytest.mark.parametrize("k", [0.5, 2.0])
def test_monte_carlo_mean_and_variance_match(name, estimator, k, seed, stats):
    """companion.estimators' per-sample estimates have the closed-form mean and variance.

    The mean is within 5 standard errors sqrt(V/N) of gaussian_gradient; the sample
    variance within 5 standard errors sqrt((m4 - V^2)/N) of gaussian_estimator_variance,
    with m4 the fourth central moment from quadrature. Seeded.
    """
    n = 40_000
    params = torch.tensor([1.0, 1.0], dtype=torch.float64)
    g = ESTIMATORS[estimator](cf.test_function(name, k), lambda p: Normal(p[0], p[1]), params, n)
    mean = cf.gaussian_gradient(name, k, 1.0, 1.0)
    var = cf.gaussian_estimator_variance(name, estimator, k, 1.0, 1.0)
    se_var = cf.gaussian_variance_standard_error(name, estimator, k, 1.0, 1.0, n_samples=n)
    stats.assert_within(g.mean(0), mean, np.sqrt(np.asarray(var) / n), f"{estimator} mean, {name}, k={k}")
    stats.assert_within(g.var(0), var, se_var, f"{estimator} variance, {name}, k={k}")


def test_variance_standard_error_is_the_spread_of_sample_variances():
    """The SE formula sqrt((m4 - V^2)/N) predicts the spread of sample variances across repeats.

    200 repeats of N = 500 samples of the score-function d/dmu estimate for the quadratic
    (k = 1): the standard deviation of the 200 sample variances estimates SE with relative
    error about 1/sqrt(2 * 200) = 5% (more for heavy tails); we allow 35%.
    """
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((200, 500))
    k, mu, s = 1.0, 1.0, 1.0
    g = (mu + s * eps - k) ** 2 * eps / s
    spread = g.var(axis=1, ddof=1).std(ddof=1)
    se = cf.gaussian_variance_standard_error("quadratic", "score_function", k, mu, s, n_samples=500)[0]
    assert spread == pytest.approx(se, rel=0.35)


def test_exponential_closed_forms():
    """Exponential: E[(z-k)^2] = 2/l^2 - 2k/l + k^2, and its derivative in l, against quadrature."""
    k, lam = 1.3, 0.7
    from scipy import integrate

    val, _ = integrate.quad(lambda z: (z - k) ** 2 * lam * math.exp(-lam * z), 0, math.inf, epsabs=0, epsrel=1e-12)
    assert cf.exponential_expectation(k, lam) == pytest.approx(val, rel=1e-10)
    h = 1e-5
    fd = (cf.exponential_expectation(k, lam + h) - cf.exponential_expectation(k, lam - h)) / (2 * h)
    assert cf.exponential_gradient(k, lam) == pytest.approx(fd, rel=1e-7)


@pytest.mark.parametrize("estimator", cf.ESTIMATORS)
@pytest.mark.parametrize("k,lam", [(0.0, 1.0), (1.5, 2.0), (4.0, 0.8)])
def test_exponential_variance_matches_quadrature_and_monte_carlo(estimator, k, lam, seed, stats):
    """Exponential variances: the closed form against quadrature and against Monte Carlo.

    Pathwise estimate -2 (z - k) z / l and score estimate (z - k)^2 (1/l - z), from
    dz/dl = -z/l and d/dl log p = 1/l - z; with E z^n = n!/l^n the variances are
    4(k^2 l^2 - 8kl + 20)/l^6 and (k^4 l^4 - 12k^3 l^3 + 80 k^2 l^2 - 296 k l + 488)/l^6.
    Monte Carlo: N = 40000 seeded samples, within 5 standard errors.
    """
    from scipy import integrate

    if estimator == "pathwise":
        def g(z):
            return -2 * (z - k) * z / lam
    else:
        def g(z):
            return (z - k) ** 2 * (1 / lam - z)
    mean = cf.exponential_gradient(k, lam)
    quad, _ = integrate.quad(lambda z: (g(z) - mean) ** 2 * lam * math.exp(-lam * z), 0, math.inf, epsabs=0, epsrel=1e-12)
    var = cf.exponential_estimator_variance(estimator, k, lam)
    assert var == pytest.approx(quad, rel=1e-9)

    n = 40_000
    est = ESTIMATORS[estimator](lambda z: (z - k) ** 2, lambda p: Exponential(p), torch.tensor(lam, dtype=torch.float64), n)
    se = cf.exponential_variance_standard_error(estimator, k, lam, n_samples=n)
    stats.assert_within(est.mean(), mean, math.sqrt(var / n), f"{estimator} mean")
    stats.assert_within(est.var(), var, se, f"{estimator} variance")


def test_score_function_variance_exceeds_pathwise_for_quadratic():
    """For (x-k)^2 at mu = sigma = 1 the score function is noisier at every k (Mohamed et al. 2020, Fig. 2)."""
    for k in np.linspace(-3, 3, 13):
        pw = cf.gaussian_estimator_variance("quadratic", "pathwise", k)
        sf = cf.gaussian_estimator_variance("quadratic", "score_function", k)
        assert sf[0] > pw[0] and sf[1] > pw[1]


def test_bad_arguments(raises):
    with raises(ValueError, "name", "'cubic'"):
        cf.gaussian_expectation("cubic", 1.0, 0.0, 1.0)
    with raises(ValueError, "estimator", "'reinforce'"):
        cf.gaussian_estimator_variance("quadratic", "reinforce", 1.0)
    with raises(ValueError, "sigma", "-1.0"):
        cf.gaussian_gradient("cos", 1.0, 0.0, -1.0)
    with raises(TypeError, "k must", "'one'"):
        cf.test_function("cos", "one")
    with raises(ValueError, "k must be >= 0", "-1.0"):
        cf.test_function("exp", -1.0)
    with raises(ValueError, "rate", "0.0"):
        cf.exponential_estimator_variance("pathwise", 1.0, 0.0)
    with raises(ValueError, "method='closed_form'", "name='cos'"):
        cf.gaussian_estimator_variance("cos", "pathwise", 1.0, method="closed_form")
    with raises(ValueError, "mu", "nan"):
        cf.gaussian_expectation("quadratic", 1.0, float("nan"), 1.0)
    with raises(TypeError, "h must be callable", "3.0"):
        cf.normal_expectation(3.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0.5, 2.0])
def test_optimal_baseline_minimises_the_variance(name, k):
    """b*_j = E[f s_j^2]/E[s_j^2] is the minimum of the parabola Var[(f - b) s_j] in b.

    Var[(f - b) s] = Var[f s] - 2b E[f s^2] + b^2 E[s^2] (E s = 0), so moving b by
    +-0.3 from b* must raise the variance by exactly 0.09 E[s_j^2], with
    E[s_mu^2] = 1/sigma^2 and E[s_sigma^2] = 2/sigma^2. Checked by quadrature of the
    per-sample estimator at the shifted baselines.
    """
    mu, sigma = 0.7, 1.3
    b = cf.gaussian_optimal_baseline(name, k, mu, sigma)
    v_opt = cf.gaussian_estimator_variance(name, "score_function", k, mu, sigma, method="quadrature", baseline="optimal")
    means = cf.gaussian_gradient(name, k, mu, sigma)
    e_s2 = (1 / sigma**2, 2 / sigma**2)
    for d in (-0.3, 0.3):
        shifted = (b[0] + d, b[1] + d)
        for j, g in enumerate(cf._gaussian_per_sample(name, "score_function", k, mu, sigma, shifted)):
            v = cf._eps_moment(g, 2, means[j])
            assert v == pytest.approx(v_opt[j] + d**2 * e_s2[j], rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("k", [-2.0, 0.0, 1.0, 3.0])
@pytest.mark.parametrize("mu,sigma", [(1.0, 1.0), (0.3, 2.0)])
def test_quadratic_optimal_baseline_closed_form(k, mu, sigma):
    """Closed forms of the score function with b* for (x-k)^2 equal their integrals.

    Derivation (c = mu - k, x = mu + s eps): E[f eps^2] = E[(c + s eps)^2 eps^2] =
    c^2 + 3s^2, so b*_mu = c^2 + 3s^2; E[f (eps^2-1)^2] = c^2 (3 - 2 + 1) + s^2 (15 - 6 + 1)
    = 2c^2 + 10 s^2 and E[(eps^2-1)^2] = 2, so b*_sigma = c^2 + 5 s^2. The minimal
    variance is Var[f s] - E[f s^2]^2/E[s^2]:
    mu: c^4/s^2 + 14c^2 + 15s^2 - (c^2 + 3s^2)^2/s^2 = 8c^2 + 6s^2;
    sigma: 2c^4/s^2 + 60c^2 + 74s^2 - (2c^2 + 10s^2)^2/(2s^2) = 40c^2 + 24s^2.
    """
    c = mu - k
    b = cf.gaussian_optimal_baseline("quadratic", k, mu, sigma)
    assert b == pytest.approx((c**2 + 3 * sigma**2, c**2 + 5 * sigma**2))
    f = cf._f_and_df("quadratic", k)[0]
    b_quad = (cf.normal_expectation(lambda e: f(mu + sigma * e) * e**2),
              cf.normal_expectation(lambda e: f(mu + sigma * e) * (e**2 - 1) ** 2) / 2)
    assert b == pytest.approx(b_quad, rel=1e-9)
    closed = cf.gaussian_estimator_variance("quadratic", "score_function", k, mu, sigma, baseline="optimal")
    quad = cf.gaussian_estimator_variance("quadratic", "score_function", k, mu, sigma, method="quadrature",
                                          baseline="optimal")
    assert closed == pytest.approx((8 * c**2 + 6 * sigma**2, 40 * c**2 + 24 * sigma**2), rel=1e-12)
    assert closed == pytest.approx(quad, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [0.5, 2.0])
def test_optimal_baseline_monte_carlo(name, k, seed, stats):
    """score_function(baseline=b*_j) has the closed-form mean and variance, coordinate by coordinate.

    The library applies one scalar baseline to every coordinate, so each coordinate j
    is measured in its own call with b*_j. N = 40000 seeded samples; the mean within
    5 standard errors sqrt(V/N), the sample variance within 5 standard errors
    sqrt((m4 - V^2)/N) of the closed form (m4 by quadrature).
    """
    n = 40_000
    params = torch.tensor([1.0, 1.0], dtype=torch.float64)
    b = cf.gaussian_optimal_baseline(name, k)
    mean = cf.gaussian_gradient(name, k, 1.0, 1.0)
    var = cf.gaussian_estimator_variance(name, "score_function", k, baseline="optimal")
    se_var = cf.gaussian_variance_standard_error(name, "score_function", k, n_samples=n, baseline="optimal")
    for j in range(2):
        g = score_function(cf.test_function(name, k), lambda p: Normal(p[0], p[1]), params, n, baseline=b[j])[:, j]
        stats.assert_within(g.mean(), mean[j], math.sqrt(var[j] / n), f"mean of coordinate {j}")
        stats.assert_within(g.var(), var[j], se_var[j], f"variance of coordinate {j}")


def test_optimal_baseline_bad_arguments(raises):
    with raises(ValueError, "baseline", "'loo'"):
        cf.gaussian_estimator_variance("exp", "score_function", 1.0, baseline="loo")
    with raises(ValueError, "estimator='score_function'", "estimator='pathwise'"):
        cf.gaussian_estimator_variance("exp", "pathwise", 1.0, baseline="optimal")
    with raises(ValueError, "baseline", "'best'"):
        cf.gaussian_variance_standard_error("cos", "score_function", 1.0, baseline="best")
    with raises(ValueError, "sigma", "0.0"):
        cf.gaussian_optimal_baseline("cos", 1.0, 0.0, 0.0)


@pytest.mark.parametrize("k,lam", [(0.0, 1.0), (1.5, 2.0), (4.0, 0.8)])
def test_exponential_optimal_baseline(k, lam):
    """Score function with b* for z ~ Exp(l), f = (z-k)^2.

    s = 1/l - z, E s^2 = 1/l^2. E[f s^2] by quadrature over the density l e^{-lz}
    gives b* = k^2 - 6k/l + 14/l^2; the variance Var[(f - b*) s], also by quadrature,
    is (16 (k l - 4)^2 + 36)/l^6. Both are checked, and b* beats b* +- 0.5.
    """
    from scipy import integrate

    def expect(h):
        return integrate.quad(lambda z: h(z) * lam * math.exp(-lam * z), 0, math.inf, epsabs=0, epsrel=1e-12)[0]

    b = cf.exponential_optimal_baseline(k, lam)
    assert b == pytest.approx(expect(lambda z: (z - k) ** 2 * (1 / lam - z) ** 2) * lam**2, rel=1e-9)
    mean = cf.exponential_gradient(k, lam)

    def var(bb):
        return expect(lambda z: (((z - k) ** 2 - bb) * (1 / lam - z) - mean) ** 2)

    v = cf.exponential_estimator_variance("score_function", k, lam, baseline="optimal")
    assert v == pytest.approx(var(b), rel=1e-9)
    assert v < var(b + 0.5) and v < var(b - 0.5)


def test_exponential_optimal_baseline_monte_carlo(seed, stats, raises):
    """score_function(baseline=b*) on Exp(l): mean and variance within 5 standard errors (N = 40000)."""
    k, lam, n = 2.0, 1.0, 40_000
    b = cf.exponential_optimal_baseline(k, lam)
    est = score_function(lambda z: (z - k) ** 2, lambda p: Exponential(p), torch.tensor(lam, dtype=torch.float64),
                         n, baseline=b)
    var = cf.exponential_estimator_variance("score_function", k, lam, baseline="optimal")
    se = cf.exponential_variance_standard_error("score_function", k, lam, n_samples=n, baseline="optimal")
    stats.assert_within(est.mean(), cf.exponential_gradient(k, lam), math.sqrt(var / n), "mean")
    stats.assert_within(est.var(), var, se, "variance")
    with raises(ValueError, "baseline='optimal'", "estimator='pathwise'"):
        cf.exponential_estimator_variance("pathwise", k, lam, baseline="optimal")


@pytest.mark.parametrize("name", ["exp", "cos"])
@pytest.mark.parametrize("col", [0, 1])
@pytest.mark.parametrize("baseline", [None, "optimal"])
def test_variance_crossover_is_where_the_variances_meet(name, col, baseline):
    """At the crossover the two exact variances are equal; just below, the score function is
    the noisier (for these f the pathwise estimate f' grows with k while f stays bounded)."""
    k = cf.gaussian_variance_crossover(name, col, baseline)
    sf = cf.gaussian_estimator_variance(name, "score_function", k, baseline=baseline)[col]
    pw = cf.gaussian_estimator_variance(name, "pathwise", k)[col]
    assert sf == pytest.approx(pw, rel=1e-5)
    k_lo = k - 0.05
    assert (cf.gaussian_estimator_variance(name, "score_function", k_lo, baseline=baseline)[col]
            > cf.gaussian_estimator_variance(name, "pathwise", k_lo)[col])


def test_variance_crossover_values_and_errors(raises):
    """Independent quadrature put the exp(-k x^2) crossovers at k = 0.87 / 1.00 without
    a baseline and 0.36 / 0.75 with b*; the quadratic never crosses."""
    assert cf.gaussian_variance_crossover("exp", 0) == pytest.approx(0.87, abs=0.005)
    assert cf.gaussian_variance_crossover("exp", 1) == pytest.approx(1.00, abs=0.005)
    assert cf.gaussian_variance_crossover("exp", 0, "optimal") == pytest.approx(0.36, abs=0.005)
    assert cf.gaussian_variance_crossover("exp", 1, "optimal") == pytest.approx(0.75, abs=0.005)
    with raises(ValueError, "do not cross", "'quadratic'", "col=0"):
        cf.gaussian_variance_crossover("quadratic", 0)
    with raises(ValueError, "col", "2"):
        cf.gaussian_variance_crossover("exp", 2)


@pytest.mark.parametrize("mu, c", [(1.0, 0.0), (1.0, 8.0), (-0.7, -4.0), (2.0, 3.5)])
def test_square_score_moments_match_quadrature(mu, c, raises):
    """Chapter 2's term (x^2 + c)(x - mu), x ~ N(mu, 1): the closed-form variance and the
    Gauss-Hermite fourth central moment agree with adaptive quadrature of (g - 2 mu)^2 and
    (g - 2 mu)^4 (the mean is 2 mu for every c, the score having mean zero)."""
    var, m4 = cf.square_score_moments(mu, c)

    def g(e):
        return ((mu + e) ** 2 + c) * e

    assert cf.normal_expectation(g) == pytest.approx(2 * mu, abs=1e-10)
    assert var == pytest.approx(cf.normal_expectation(lambda e: (g(e) - 2 * mu) ** 2), rel=1e-10)
    assert m4 == pytest.approx(cf.normal_expectation(lambda e: (g(e) - 2 * mu) ** 4), rel=1e-9)
    # the parabola's minimum is at c = -(mu^2 + 3), where the variance is 8 mu^2 + 6
    assert cf.square_score_moments(mu, -(mu**2 + 3))[0] == pytest.approx(8 * mu**2 + 6)
    with raises(TypeError, "c must", "'8'"):
        cf.square_score_moments(mu, "8")


@pytest.mark.parametrize("estimator, baseline", [("pathwise", None), ("score_function", None),
                                                 ("score_function", "optimal")])
@pytest.mark.parametrize("k, lam", [(0.0, 1.0), (4.0, 1.0), (1.5, 2.0)])
def test_exponential_estimator_moments_match_quadrature(estimator, baseline, k, lam):
    """Mean, variance and fourth central moment of the exponential's per-sample estimators
    (pathwise -2(z-k)z/lambda, score (z-k)^2 (1/lambda - z) minus b* times the score),
    integrated against lambda e^{-lambda z} by adaptive quadrature; the mean is the exact
    gradient, the variance the closed form of exponential_estimator_variance."""
    from scipy import integrate

    mean, var, m4 = cf.exponential_estimator_moments(estimator, k, lam, baseline)
    b = cf.exponential_optimal_baseline(k, lam) if baseline else 0.0

    def g(z):
        if estimator == "pathwise":
            return -2 * (z - k) * z / lam
        return ((z - k) ** 2 - b) * (1 / lam - z)

    def expect(h):
        return integrate.quad(lambda z: h(z) * lam * math.exp(-lam * z), 0, math.inf, epsrel=1e-12)[0]

    assert mean == pytest.approx(cf.exponential_gradient(k, lam), rel=1e-10, abs=1e-12)
    assert var == pytest.approx(expect(lambda z: (g(z) - mean) ** 2), rel=1e-8)
    assert var == pytest.approx(cf.exponential_estimator_variance(estimator, k, lam, baseline), rel=1e-12)
    assert m4 == pytest.approx(expect(lambda z: (g(z) - mean) ** 4), rel=1e-7)
