r"""The estimators' mathematics: unbiasedness and variance against closed forms.

Notation. For :math:`x \sim N(\mu, \sigma^2)` write :math:`x = \mu + \sigma\varepsilon`
with :math:`\varepsilon \sim N(0, 1)`, :math:`s = \log\sigma`, and, for
:math:`f(x) = (x - k)^2`, :math:`y = x - k = a + \sigma\varepsilon` with :math:`a = \mu - k`.
Gaussian moments: :math:`\mathbb E\varepsilon^{2j} = (2j-1)!!` (1, 3, 15, 105), odd ones 0.

Every per-sample estimate below is a polynomial in the noise, so besides the
hand-derived formula in each docstring the tests compute its exact mean, variance
and fourth central moment from the noise's raw moments (``stats.poly_moments``)
and check the hand formula against them. The fourth moment gives the standard
error of a sample variance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Exponential, Gamma, MultivariateNormal, Normal

from companion.estimators import pathwise, score_function

N = 200_000

MU, K, SIGMA = 1.5, 1.0, 0.8
A_ = MU - K  # a = mu - k


def gauss_logscale(p):
    return Normal(p[0], p[1].exp())


def gauss_scale(p):
    return Normal(p[0], p[1])


def square_k(x):
    return (x - K) ** 2


def params_logscale():
    return torch.tensor([MU, math.log(SIGMA)])


def params_scale():
    return torch.tensor([MU, SIGMA])


def P(*coeffs):
    """A polynomial in the noise, lowest power first."""
    return np.polynomial.Polynomial(np.asarray(coeffs, dtype=np.float64))


# Per-sample estimates as polynomials in eps (a, sigma as above).
Y = P(A_, SIGMA)  # y = a + sigma eps
EPS = P(0.0, 1.0)
SCORE_MU = EPS / SIGMA  # d log p / d mu = (x - mu) / sigma^2 = eps / sigma
SCORE_S = EPS**2 - 1  # d log p / d log sigma = eps^2 - 1
SCORE_SIGMA = (EPS**2 - 1) / SIGMA  # d log p / d sigma
MEAN_F = A_**2 + SIGMA**2  # E[(x - k)^2]
VAR_F = 4 * A_**2 * SIGMA**2 + 2 * SIGMA**4  # Var[(x - k)^2]


def poly_stats(stats, poly):
    return stats.poly_moments(poly.coef, stats.normal_moment)


# ---------------------------------------------------------------------------------------
# Output contract
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", [pathwise, score_function])
def test_shape_is_n_samples_by_params_shape(estimator, seed):
    """Row i is sample i's estimate, one entry per parameter, for 0-d, 1-d and 2-d params."""
    g = estimator(lambda x: x, lambda r: Exponential(r), torch.tensor(2.0), 7)
    assert g.shape == (7,)
    g = estimator(square_k, gauss_logscale, params_logscale(), 5)
    assert g.shape == (5, 2)
    L = torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    g = estimator(lambda x: (x**2).sum(-1), lambda l: MultivariateNormal(torch.zeros(2), scale_tril=l), L, 4)
    assert g.shape == (4, 2, 2)
    g = estimator(square_k, gauss_logscale, params_logscale().double(), 3)
    assert g.dtype == torch.float64 and not g.requires_grad


@pytest.mark.parametrize("estimator", [pathwise, score_function])
def test_same_seed_same_estimates(estimator):
    """The estimators draw from torch's global CPU generator, so a seed fixes their output."""
    torch.manual_seed(123)
    a = estimator(square_k, gauss_logscale, params_logscale(), 1000)
    torch.manual_seed(123)
    b = estimator(square_k, gauss_logscale, params_logscale(), 1000)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------
# Gaussian: unbiasedness
# ---------------------------------------------------------------------------------------


def test_gaussian_pathwise_unbiased_log_sigma(seed, stats):
    r"""Pathwise, :math:`\theta = (\mu, \log\sigma)`, :math:`f(x) = (x-k)^2`.

    :math:`\mathbb E f = (\mu-k)^2 + \sigma^2 = a^2 + e^{2s}`, so
    :math:`\nabla = (2a,\ 2\sigma^2)`.
    """
    g = pathwise(square_k, gauss_logscale, params_logscale(), N)
    stats.assert_mean(g, [2 * A_, 2 * SIGMA**2], "pathwise grad (mu, log sigma)")


def test_gaussian_pathwise_unbiased_sigma(seed, stats):
    r"""Pathwise, :math:`\theta = (\mu, \sigma)`: :math:`\nabla (a^2 + \sigma^2) = (2a,\ 2\sigma)`."""
    g = pathwise(square_k, gauss_scale, params_scale(), N)
    stats.assert_mean(g, [2 * A_, 2 * SIGMA], "pathwise grad (mu, sigma)")


@pytest.mark.parametrize("baseline", [None, 0.7, -3.0, "loo"])
def test_gaussian_score_function_unbiased_log_sigma(baseline, seed, stats):
    r"""Score function, :math:`\theta = (\mu, \log\sigma)`: :math:`\nabla = (2a,\ 2\sigma^2)`.

    Any baseline independent of :math:`x_i` keeps it unbiased, because
    :math:`\mathbb E[\nabla_\theta \log p_\theta(x)] = 0`.
    """
    g = score_function(square_k, gauss_logscale, params_logscale(), N, baseline=baseline)
    stats.assert_mean(g, [2 * A_, 2 * SIGMA**2], f"score grad (mu, log sigma), baseline={baseline}")


@pytest.mark.parametrize("baseline", [None, MEAN_F, "loo"])
def test_gaussian_score_function_unbiased_sigma(baseline, seed, stats):
    r"""Score function, :math:`\theta = (\mu, \sigma)`: :math:`\nabla = (2a,\ 2\sigma)`."""
    g = score_function(square_k, gauss_scale, params_scale(), N, baseline=baseline)
    stats.assert_mean(g, [2 * A_, 2 * SIGMA], f"score grad (mu, sigma), baseline={baseline}")


def test_score_function_needs_no_differentiable_f(seed, stats):
    r"""A step function: :math:`\mathbb E[\mathbf 1\{x > 0\}] = \Phi(\mu/\sigma)`.

    With :math:`\sigma = e^s`: :math:`\partial_\mu = \varphi(\mu/\sigma)/\sigma` and
    :math:`\partial_s = -\varphi(\mu/\sigma)\,\mu/\sigma`. The score function is
    unbiased; the pathwise estimator sees :math:`f' = 0` almost everywhere and returns
    zeros (biased), as its docstring warns.
    """
    mu, sigma = 0.3, 0.9
    params = torch.tensor([mu, math.log(sigma)])
    phi = math.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi)

    def step(x):
        return (x > 0).to(x.dtype)

    g = score_function(step, gauss_logscale, params, N, baseline="loo")
    stats.assert_mean(g, [phi / sigma, -phi * mu / sigma], "score grad of P(x > 0)")
    assert torch.count_nonzero(pathwise(step, gauss_logscale, params, 1000)) == 0


# ---------------------------------------------------------------------------------------
# Gaussian: variances
# ---------------------------------------------------------------------------------------


def test_gaussian_pathwise_variance(seed, stats):
    r"""Per-sample variance of the pathwise estimator, :math:`\theta = (\mu, \log\sigma)`.

    :math:`\hat g_\mu = f'(x) = 2y = 2a + 2\sigma\varepsilon`, so
    :math:`\operatorname{Var} = 4\sigma^2`.
    :math:`\hat g_s = f'(x)\,\partial x/\partial s = 2y\,\sigma\varepsilon
    = 2a\sigma\varepsilon + 2\sigma^2\varepsilon^2`, so
    :math:`\operatorname{Var} = 4a^2\sigma^2 + 4\sigma^4 \operatorname{Var}[\varepsilon^2]
    = 4a^2\sigma^2 + 8\sigma^4` (the cross term has odd moments only).
    With :math:`\theta = (\mu, \sigma)`, :math:`\hat g_\sigma = 2y\varepsilon`:
    :math:`\operatorname{Var} = 4a^2 + 8\sigma^2`.
    """
    polys = [2 * Y, 2 * Y * SIGMA * EPS]
    hand = [4 * SIGMA**2, 4 * A_**2 * SIGMA**2 + 8 * SIGMA**4]
    moments = [poly_stats(stats, p) for p in polys]
    np.testing.assert_allclose([m[1] for m in moments], hand, rtol=1e-12)
    g = pathwise(square_k, gauss_logscale, params_logscale(), N)
    stats.assert_var(g, hand, [m[2] for m in moments], "pathwise variance (mu, log sigma)")

    poly_sigma = 2 * Y * EPS
    mean, var, mu4 = poly_stats(stats, poly_sigma)
    assert var == pytest.approx(4 * A_**2 + 8 * SIGMA**2, rel=1e-12)
    g = pathwise(square_k, gauss_scale, params_scale(), N)
    stats.assert_var(g[:, 1], var, mu4, "pathwise variance (sigma)")


def _score_polys(b: float):
    return [(Y**2 - b) * SCORE_MU, (Y**2 - b) * SCORE_S]


def _score_var_hand(b: float):
    r"""Closed forms of the score-function variance with a constant baseline b (see the test)."""
    var0_mu = A_**4 / SIGMA**2 + 14 * A_**2 + 15 * SIGMA**2
    var0_s = 2 * A_**4 + 60 * A_**2 * SIGMA**2 + 74 * SIGMA**4
    e_fs2_mu = (A_**2 + 3 * SIGMA**2) / SIGMA**2
    e_fs2_s = 2 * A_**2 + 10 * SIGMA**2
    e_s2_mu, e_s2_s = 1 / SIGMA**2, 2.0
    return np.array(
        [
            var0_mu - 2 * b * e_fs2_mu + b**2 * e_s2_mu,
            var0_s - 2 * b * e_fs2_s + b**2 * e_s2_s,
        ]
    )


def test_gaussian_score_function_variance_no_baseline(seed, stats):
    r"""Per-sample variance of the score-function estimator, :math:`\theta = (\mu, \log\sigma)`.

    Scores: :math:`\partial_\mu \log p = \varepsilon/\sigma`,
    :math:`\partial_s \log p = \varepsilon^2 - 1`. With
    :math:`y^2 = a^2 + 2a\sigma\varepsilon + \sigma^2\varepsilon^2`, the even part of
    :math:`y^4` is :math:`a^4 + 6a^2\sigma^2\varepsilon^2 + \sigma^4\varepsilon^4`, so

    * :math:`\mathbb E[\hat g_\mu^2] = \mathbb E[y^4\varepsilon^2]/\sigma^2
      = a^4/\sigma^2 + 18a^2 + 15\sigma^2`, and minus :math:`(2a)^2`:
      :math:`\operatorname{Var} = a^4/\sigma^2 + 14a^2 + 15\sigma^2`;
    * with :math:`\mathbb E[\varepsilon^{2j}(\varepsilon^2-1)^2] = 2, 10, 78` for
      :math:`j = 0, 1, 2`: :math:`\mathbb E[\hat g_s^2] = 2a^4 + 60a^2\sigma^2 + 78\sigma^4`,
      and minus :math:`(2\sigma^2)^2`: :math:`\operatorname{Var} = 2a^4 + 60a^2\sigma^2 + 74\sigma^4`.

    Far larger than the pathwise :math:`4\sigma^2` and :math:`4a^2\sigma^2 + 8\sigma^4`.
    With :math:`\theta = (\mu, \sigma)` the score is :math:`\partial_\sigma\log p = (\varepsilon^2 - 1)/\sigma`,
    so :math:`\hat g_\sigma = \hat g_s/\sigma` and :math:`\operatorname{Var} = (2a^4 + 60a^2\sigma^2 + 74\sigma^4)/\sigma^2`.
    """
    hand = _score_var_hand(0.0)
    moments = [poly_stats(stats, p) for p in _score_polys(0.0)]
    np.testing.assert_allclose([m[1] for m in moments], hand, rtol=1e-12)
    np.testing.assert_allclose([m[0] for m in moments], [2 * A_, 2 * SIGMA**2], rtol=1e-12)
    g = score_function(square_k, gauss_logscale, params_logscale(), N)
    stats.assert_var(g, hand, [m[2] for m in moments], "score variance, no baseline")
    assert (hand > np.array([4 * SIGMA**2, 4 * A_**2 * SIGMA**2 + 8 * SIGMA**4])).all()

    mean, var, mu4 = poly_stats(stats, Y**2 * SCORE_SIGMA)
    assert mean == pytest.approx(2 * SIGMA, rel=1e-12)
    assert var == pytest.approx(hand[1] / SIGMA**2, rel=1e-12)
    g = score_function(square_k, gauss_scale, params_scale(), N)
    stats.assert_var(g[:, 1], var, mu4, "score variance w.r.t. sigma, no baseline")


@pytest.mark.parametrize("b", [MEAN_F, -2.0, 2 * (A_**2 + 5 * SIGMA**2) + 1.0])
def test_gaussian_score_function_variance_constant_baseline(b, seed, stats):
    r"""Variance with a constant baseline b, and the change it makes.

    :math:`\operatorname{Var}[(f - b)\,S] = \mathbb E[f^2 S^2] - 2b\,\mathbb E[f S^2]
    + b^2 \mathbb E[S^2] - g^2` (because :math:`\mathbb E[(f-b)S] = g` for every b), i.e.
    :math:`\operatorname{Var}_b = \operatorname{Var}_0 - 2b\,\mathbb E[fS^2] + b^2\,\mathbb E[S^2]`.
    For :math:`\mu`: :math:`\mathbb E[S^2] = 1/\sigma^2`,
    :math:`\mathbb E[fS^2] = \mathbb E[y^2\varepsilon^2]/\sigma^2 = (a^2 + 3\sigma^2)/\sigma^2`.
    For :math:`s = \log\sigma`: :math:`\mathbb E[S^2] = 2`,
    :math:`\mathbb E[fS^2] = \mathbb E[y^2(\varepsilon^2-1)^2] = 2a^2 + 10\sigma^2`.
    The variance is a parabola in b with minimum at :math:`b^* = \mathbb E[fS^2]/\mathbb E[S^2]`
    (:math:`a^2 + 3\sigma^2` and :math:`a^2 + 5\sigma^2`): the baseline **must** reduce the
    variance for b strictly between 0 and :math:`2b^*`, and must increase it outside.
    :math:`b = \mathbb E f = a^2 + \sigma^2` lies inside for both coordinates; b = -2 and
    :math:`b = 2(a^2 + 5\sigma^2) + 1` lie outside.

    Same seed, so both estimators see the same x: the sample reduction is compared with
    the closed-form one within 5 standard errors of the mean of
    :math:`d_i = (\hat g^0_i - \bar g^0)^2 - (\hat g^b_i - \bar g^b)^2`
    (``stats.assert_var_diff`` with ``paired=True``).
    """
    hand0, handb = _score_var_hand(0.0), _score_var_hand(b)
    moments = [poly_stats(stats, p) for p in _score_polys(b)]
    np.testing.assert_allclose([m[1] for m in moments], handb, rtol=1e-12)

    torch.manual_seed(seed)
    g0 = score_function(square_k, gauss_logscale, params_logscale(), N).double()
    torch.manual_seed(seed)
    gb = score_function(square_k, gauss_logscale, params_logscale(), N, baseline=b).double()
    stats.assert_var(gb, handb, [m[2] for m in moments], f"score variance, baseline {b}")

    bstar = np.array([A_**2 + 3 * SIGMA**2, A_**2 + 5 * SIGMA**2])
    must_reduce = (0 < b) & (b < 2 * bstar)
    assert ((handb < hand0) == must_reduce).all()  # the closed form agrees with the theory

    stats.assert_var_diff(g0, gb, hand0 - handb, f"variance reduction by baseline {b}", paired=True)
    reduction, _ = stats.var_diff_se(g0, gb, paired=True)
    assert ((reduction > 0) == must_reduce).all(), f"reduction {reduction}, must reduce: {must_reduce}"


def test_gaussian_score_function_variance_loo(seed, stats):
    r"""Leave-one-out baseline: variance and its reduction.

    :math:`b_i = \frac1{N-1}\sum_{j\ne i} f(x_j)` is independent of :math:`x_i` with
    :math:`\mathbb E b_i = m = \mathbb E f` and :math:`\operatorname{Var} b_i = \operatorname{Var}f/(N-1)`,
    so :math:`\mathbb E[(f - b_i)^2 S^2] = \mathbb E[(f - m)^2 S^2] + \operatorname{Var}[f]\,\mathbb E[S^2]/(N-1)`:

    .. math:: \operatorname{Var}_{loo} = \operatorname{Var}_{b=m} + \operatorname{Var}[f]\,\mathbb E[S^2]/(N-1),

    with :math:`\operatorname{Var}[f] = 4a^2\sigma^2 + 2\sigma^4`. Distinct rows are
    correlated only by :math:`\operatorname{Cov}(\hat g_i, \hat g_j) = g^2/(N-1)^2`, negligible here.
    Since :math:`m \in (0, 2b^*)` for both coordinates, "loo" must reduce the variance
    below the no-baseline one; with the same x, the sample reduction exceeds 5 standard errors.

    (At N = 1000 the sample variance of these heavy-tailed estimates, kurtosis up to 380, is
    too skewed for a 5-sigma rule; the categorical test checks "loo" with bounded estimates.)
    """
    e_s2 = np.array([1 / SIGMA**2, 2.0])
    hand = _score_var_hand(MEAN_F) + VAR_F * e_s2 / (N - 1)
    mu4 = [poly_stats(stats, p)[2] for p in _score_polys(MEAN_F)]
    torch.manual_seed(seed)
    gl = score_function(square_k, gauss_logscale, params_logscale(), N, baseline="loo").double()
    stats.assert_var(gl, hand, mu4, "score variance, loo")
    assert (hand < _score_var_hand(0.0)).all()
    torch.manual_seed(seed)
    g0 = score_function(square_k, gauss_logscale, params_logscale(), N).double()
    stats.assert_var_greater(g0, gl, "no baseline vs loo", paired=True)


@pytest.mark.parametrize("n", [2, 5])
def test_loo_unbiased_for_small_n(n, seed, stats):
    r"""Leave-one-out stays unbiased even for N = 2 and 5, where including :math:`x_i` would not.

    The mean of the N leave-one-out estimates is
    :math:`\frac1{N-1}\sum_i (f_i - \bar f)\,S_i`, the unbiased sample covariance of f and the
    score, whose expectation is :math:`\operatorname{Cov}(f, S) = \mathbb E[fS] = g`. A
    baseline that includes :math:`x_i` (the plain mean :math:`\bar f`) gives
    :math:`\frac1N\sum_i(f_i - \bar f)S_i`, biased by the factor :math:`(N-1)/N`.

    Here :math:`f(x) = x`, :math:`x \sim N(\mu, \sigma^2)`, :math:`\theta = (\mu, \log\sigma)`:
    :math:`g = (1, 0)`. For the :math:`\mu` coordinate :math:`(x_i - \bar x)S_i = (\varepsilon_i - \bar\varepsilon)\varepsilon_i`,
    so a run's estimate is the sample variance of :math:`N` standard normals, variance
    :math:`2/(N-1)`. R = 600 independent runs; the standard error is from the spread of the
    R run estimates, and the wrong baseline's bias :math:`-1/N` is over 7 of them.
    """
    runs = 600
    params = torch.tensor([0.4, math.log(1.3)])
    est = torch.stack(
        [score_function(lambda x: x, gauss_logscale, params, n, baseline="loo").mean(0) for _ in range(runs)]
    )
    stats.assert_mean(est, [1.0, 0.0], f"mean of loo estimates, n={n}")


# ---------------------------------------------------------------------------------------
# Exponential
# ---------------------------------------------------------------------------------------

RATE = 1.7


def exp_dist(r):
    return Exponential(r)


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("estimator,baseline", [(pathwise, None), (score_function, None), (score_function, "loo")])
def test_exponential_unbiased(power, estimator, baseline, seed, stats):
    r""":math:`x \sim \operatorname{Exp}(\lambda)`: :math:`\mathbb E[x] = 1/\lambda`,
    :math:`\mathbb E[x^2] = 2/\lambda^2`, so the gradients w.r.t. :math:`\lambda` are
    :math:`-1/\lambda^2` and :math:`-4/\lambda^3`."""
    kwargs = {} if baseline is None else {"baseline": baseline}
    g = estimator(lambda x: x**power, exp_dist, torch.tensor(RATE), N, **kwargs)
    expected = -1 / RATE**2 if power == 1 else -4 / RATE**3
    stats.assert_mean(g, expected, f"{estimator.__name__} grad of E[x^{power}] w.r.t. rate")


def test_exponential_variances(seed, stats):
    r"""Per-sample variances for :math:`f(x) = x`, :math:`x = E/\lambda`, :math:`E \sim \operatorname{Exp}(1)`.

    Raw moments :math:`\mathbb E E^k = k!`.
    Pathwise: :math:`\partial x/\partial\lambda = -x/\lambda`, so :math:`\hat g = -E/\lambda^2`
    and :math:`\operatorname{Var} = 1/\lambda^4`.
    Score: :math:`\partial_\lambda \log p = 1/\lambda - x = (1 - E)/\lambda`, so
    :math:`\hat g = E(1 - E)/\lambda^2`, with mean :math:`(1 - 2)/\lambda^2` and
    :math:`\mathbb E\hat g^2 = (2 - 2\cdot 6 + 24)/\lambda^4 = 14/\lambda^4`:
    :math:`\operatorname{Var} = 13/\lambda^4`.
    """
    lam4 = RATE**4
    path_poly, score_poly = P(0, -1) / RATE**2, P(0, 1, -1) / RATE**2
    _, v_path, m4_path = stats.poly_moments(path_poly.coef, stats.exp_moment)
    mean_score, v_score, m4_score = stats.poly_moments(score_poly.coef, stats.exp_moment)
    assert v_path == pytest.approx(1 / lam4, rel=1e-12)
    assert v_score == pytest.approx(13 / lam4, rel=1e-12)
    assert mean_score == pytest.approx(-1 / RATE**2, rel=1e-12)
    g = pathwise(lambda x: x, exp_dist, torch.tensor(RATE), N)
    stats.assert_var(g, v_path, m4_path, "pathwise variance, exponential")
    g = score_function(lambda x: x, exp_dist, torch.tensor(RATE), N)
    stats.assert_var(g, v_score, m4_score, "score variance, exponential")


# ---------------------------------------------------------------------------------------
# Categorical (score function only)
# ---------------------------------------------------------------------------------------

LOGITS = torch.tensor([0.5, -1.0, 2.0, 0.0])
TABLE = torch.tensor([1.0, 3.0, -2.0, 0.5])


def cat_dist(logits):
    return Categorical(logits=logits)


def table_f(k):
    return TABLE[k]


@pytest.mark.parametrize("baseline", [None, 1.0, "loo"])
def test_categorical_score_function_unbiased(baseline, seed, stats):
    r"""Logits :math:`\ell`, :math:`p = \operatorname{softmax}(\ell)`, a table :math:`v`:
    :math:`\mathbb E f = \sum_k p_k v_k = \bar v`, and since
    :math:`\partial p_k/\partial\ell_j = p_k(\delta_{jk} - p_j)`,
    :math:`\nabla_{\ell_j} = p_j (v_j - \bar v)`."""
    p = LOGITS.double().softmax(0)
    expected = p * (TABLE.double() - (p * TABLE.double()).sum())
    g = score_function(table_f, cat_dist, LOGITS, N, baseline=baseline)
    stats.assert_mean(g, expected, f"categorical score grad, baseline={baseline}")


@pytest.mark.parametrize("baseline", [None, "mean", "loo"])
def test_categorical_score_function_variance(baseline, seed, stats):
    r"""Exact variance by enumeration.

    The score of :math:`k` is :math:`\nabla_\ell \log p_k = e_k - p`, so
    :math:`\hat g_j = (v_k - b)(\delta_{jk} - p_j)` takes K values with probabilities
    :math:`p_k`; its variance and fourth central moment are finite sums. For "loo",
    :math:`\operatorname{Var}_{loo} = \operatorname{Var}_{b=\bar v} + \operatorname{Var}[v_k]\,
    \mathbb E[S_j^2]/(N-1)` with :math:`\mathbb E[S_j^2] = p_j(1 - p_j)` (see the Gaussian test).
    """
    p = LOGITS.double().softmax(0).numpy()
    v = TABLE.double().numpy()
    vbar = float((p * v).sum())
    b = 0.0 if baseline is None else vbar
    onehot = np.eye(len(p))
    moments = [stats.moments_from_pmf((v - b) * (onehot[:, j] - p[j]), p) for j in range(len(p))]
    var = np.array([m[1] for m in moments])
    if baseline == "loo":
        var = var + float((p * (v - vbar) ** 2).sum()) * p * (1 - p) / (N - 1)
    kwargs = {"baseline": {None: None, "mean": vbar, "loo": "loo"}[baseline]}
    g = score_function(table_f, cat_dist, LOGITS, N, **kwargs)
    stats.assert_var(g, var, [m[2] for m in moments], f"categorical score variance, baseline={baseline}")


# ---------------------------------------------------------------------------------------
# Multivariate Gaussian with a Cholesky factor
# ---------------------------------------------------------------------------------------

D = 3
MVN_MU = torch.tensor([0.5, -1.0, 0.25])
MVN_A = torch.tensor([[1.0, 0.5, -0.3], [0.2, 2.0, 0.4], [-0.6, 0.1, 0.8]])
MVN_L = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.2, 0.6]])


def quad_form(x):
    return torch.einsum("ni,ij,nj->n", x, MVN_A, x)


def test_mvn_pathwise_grad_and_variance_mu(seed, stats):
    r""":math:`x = \mu + Lz`, :math:`f(x) = x^\top A x`.

    :math:`\mathbb E f = \mu^\top A\mu + \operatorname{tr}(A\Sigma)`, :math:`\Sigma = LL^\top`,
    so :math:`\nabla_\mu = (A + A^\top)\mu`. The pathwise per-sample estimate is
    :math:`\hat g = (A + A^\top)x`, Gaussian with covariance :math:`B\Sigma B^\top`,
    :math:`B = A + A^\top`: its coordinates' variances are the diagonal, and their fourth
    central moments are :math:`3\operatorname{Var}^2`.
    """
    B = (MVN_A + MVN_A.T).double()
    g = pathwise(quad_form, lambda m: MultivariateNormal(m, scale_tril=MVN_L), MVN_MU, N)
    stats.assert_mean(g, B @ MVN_MU.double(), "pathwise grad w.r.t. mu")
    var = torch.diagonal(B @ (MVN_L @ MVN_L.T).double() @ B.T)
    stats.assert_var(g, var, 3 * var**2, "pathwise variance w.r.t. mu")


@pytest.mark.parametrize("baseline", [None, "loo"])
def test_mvn_score_function_grad_mu(baseline, seed, stats):
    r"""Score function w.r.t. :math:`\mu`: :math:`\nabla_\mu = (A + A^\top)\mu`."""
    B = (MVN_A + MVN_A.T).double()
    g = score_function(quad_form, lambda m: MultivariateNormal(m, scale_tril=MVN_L), MVN_MU, N, baseline=baseline)
    stats.assert_mean(g, B @ MVN_MU.double(), f"score grad w.r.t. mu, baseline={baseline}")


def test_mvn_grad_scale_tril(seed, stats):
    r"""Gradient w.r.t. the Cholesky factor :math:`L` of ``MultivariateNormal(scale_tril=L)``.

    :math:`\partial\operatorname{tr}(ALL^\top)/\partial L = (A + A^\top)L`. Pathwise
    (:math:`x = \mu + Lz` uses every entry of L): :math:`\hat g_{jk} = ((A+A^\top)x)_j z_k`,
    with mean :math:`((A+A^\top)\mathbb E[x z^\top])_{jk} = ((A+A^\top)L)_{jk}` in every
    entry. The density depends on the lower triangle only, so the score-function
    estimate is exactly 0 above the diagonal and matches :math:`(A+A^\top)L` below it.
    """
    expected = ((MVN_A + MVN_A.T) @ MVN_L).double()

    def dist_fn(l):
        return MultivariateNormal(MVN_MU, scale_tril=l)

    g = pathwise(quad_form, dist_fn, MVN_L, N)
    stats.assert_mean(g.reshape(N, -1), expected.reshape(-1), "pathwise grad w.r.t. L")
    g = score_function(quad_form, dist_fn, MVN_L, N, baseline="loo")
    upper = torch.triu(torch.ones(D, D, dtype=torch.bool), 1)
    assert torch.count_nonzero(g[:, upper]) == 0
    lower = ~upper
    stats.assert_mean(g[:, lower], expected[lower], "score grad w.r.t. L (lower triangle)")


# ---------------------------------------------------------------------------------------
# Gamma: pathwise through implicit reparameterization (the reverse-mode fallback)
# ---------------------------------------------------------------------------------------


def test_gamma_pathwise_fallback_unbiased(seed, stats):
    r""":math:`x \sim \operatorname{Gamma}(\alpha, \beta)` (rate :math:`\beta`):
    :math:`\mathbb E[x^2] = \alpha(\alpha+1)/\beta^2`, so
    :math:`\nabla = \bigl((2\alpha+1)/\beta^2,\ -2\alpha(\alpha+1)/\beta^3\bigr)`.
    Gamma's ``rsample`` has no forward-mode rule, so this runs the vmap-over-grad path."""
    alpha, beta = 2.0, 3.0
    n = 20_000
    g = pathwise(lambda x: x**2, lambda p: Gamma(p[0], p[1]), torch.tensor([alpha, beta]), n)
    expected = [(2 * alpha + 1) / beta**2, -2 * alpha * (alpha + 1) / beta**3]
    stats.assert_mean(g, expected, "pathwise grad, Gamma")
    s = score_function(lambda x: x**2, lambda p: Gamma(p[0], p[1]), torch.tensor([alpha, beta]), N, baseline="loo")
    stats.assert_mean(s, expected, "score grad, Gamma")


# ---------------------------------------------------------------------------------------
# The same numbers on a GPU
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("estimator,baseline", [(pathwise, None), (score_function, None), (score_function, "loo")])
def test_estimators_match_on_cuda(estimator, baseline):
    """All noise is drawn on the CPU, so params on a GPU give the CPU's numbers (float tolerance)."""
    kwargs = {} if baseline is None else {"baseline": baseline}
    torch.manual_seed(7)
    cpu = estimator(square_k, gauss_logscale, params_logscale(), 10_000, **kwargs)
    torch.manual_seed(7)
    gpu = estimator(square_k, gauss_logscale, params_logscale().cuda(), 10_000, **kwargs)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# What f returns, and how much memory n_samples needs
# ---------------------------------------------------------------------------------------


def _normal(p):
    return Normal(p[0], p[1])


def _gamma(p):
    return Gamma(p[0], p[1])


@pytest.mark.parametrize("estimator", [score_function, pathwise])
@pytest.mark.parametrize("dist_fn", [_normal, _gamma], ids=["normal", "gamma (reverse mode)"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_f_is_an_error_not_a_nan(estimator, dist_fn, bad, raises):
    """f NaN or infinite for some samples: a ValueError with the count and one input,
    never a silently NaN gradient."""
    params = torch.tensor([0.5, 1.0])

    def f(x):
        return torch.where(x > 1.0, torch.full_like(x, bad), x)

    with raises(ValueError, "f returned a non-finite value", "of n_samples=2000", "at x ="):
        estimator(f, dist_fn, params, 2000)


def test_pathwise_non_finite_derivative_is_an_error(raises):
    """f finite, its forward-mode derivative NaN (sqrt at a clamped 0): said so."""
    with raises(ValueError, "derivative of f", "n_samples=500"):
        pathwise(lambda x: torch.sqrt((x - 0.5).clamp_min(0)), _normal, torch.tensor([0.0, 1.0]), 500)


@pytest.mark.parametrize("estimator", [score_function, pathwise])
def test_huge_n_samples_fails_fast_with_the_memory_needed(estimator, raises):
    """10**12 samples need terabytes: a ValueError naming n_samples and the GiB, at once."""
    import time

    start = time.perf_counter()
    with raises(ValueError, "n_samples=1000000000000", "GiB", "available"):
        estimator(lambda x: x, _normal, torch.tensor([0.5, 1.0]), 10**12)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize(
    "dist_fn,params,f",
    [
        (_normal, torch.tensor([0.3, 1.2]), lambda x: x**2),
        (_gamma, torch.tensor([2.3, 1.2]), lambda x: x.sin()),
        (lambda p: Categorical(logits=p), torch.tensor([0.3, -1.0, 2.0]), lambda k: k.float() ** 2),
    ],
    ids=["normal", "gamma", "categorical"],
)
@pytest.mark.parametrize("baseline", [None, "loo"])
def test_chunking_gives_identical_results(dist_fn, params, f, baseline, raises):
    """The samples are drawn at once; only the scores are chunked: bit-identical results."""
    torch.manual_seed(7)
    whole = score_function(f, dist_fn, params, 20_000, baseline=baseline)
    for chunk in (1000, 4097, 19_999):
        torch.manual_seed(7)
        torch.testing.assert_close(
            score_function(f, dist_fn, params, 20_000, baseline=baseline, chunk_size=chunk), whole, rtol=0, atol=0
        )
    with raises(ValueError, "chunk_size", "0"):
        score_function(f, dist_fn, params, 10, chunk_size=0)


def test_loo_baseline_is_the_mean_of_the_others():
    """b_i = (sum_j f_j - f_i) / (n - 1), along any dimension; fewer than 2 values is refused."""
    from companion.estimators import loo_baseline

    f = torch.tensor([[1.0, 2.0, 6.0], [0.0, 3.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(loo_baseline(f), torch.tensor([[4.0, 3.5, 1.5], [3.0, 1.5, 1.5]],
                                                             dtype=torch.float64))
    torch.testing.assert_close(loo_baseline(f, 0), f.flip(0))
    with pytest.raises(ValueError, match="n >= 2"):
        loo_baseline(torch.ones(1))
    with pytest.raises(TypeError, match="values"):
        loo_baseline([1.0, 2.0])


def test_check_baseline_is_the_one_baseline_check():
    """None, a finite number (as a float) or a named baseline; chapter code names its own."""
    from companion.estimators import check_baseline

    assert check_baseline(None, 1) is None and check_baseline(2, 1) == 2.0
    assert check_baseline("loo", 2) == "loo"
    assert check_baseline("mean", 1, named=("loo", "mean")) == "mean"
    with pytest.raises(ValueError, match="baseline must be None, a number or 'loo', got 'mean'"):
        check_baseline("mean", 5)
    with pytest.raises(ValueError, match="n_samples >= 2"):
        check_baseline("loo", 1)
    with pytest.raises(TypeError, match="baseline"):
        check_baseline(True, 5)
    with pytest.raises(ValueError, match="finite"):
        check_baseline(float("nan"), 5)
