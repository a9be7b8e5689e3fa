r"""Exact gradients and estimator variances for the book's test problems.

Chapters 3, 4 and 8 measure the score-function and pathwise estimators on problems
whose answers are known, so that every measured variance can be set against its
exact value. This module holds those exact values.

**Gaussian problems** (the setting of Figures 2 and 3 of Mohamed et al., 2020):
:math:`x \sim \mathcal N(\mu, \sigma^2)`, written :math:`x = \mu + \sigma\varepsilon`
with :math:`\varepsilon \sim \mathcal N(0, 1)`, and one of three test functions

.. math::

    f_{\text{quadratic}}(x) = (x - k)^2, \qquad
    f_{\text{exp}}(x) = e^{-k x^2}, \qquad
    f_{\text{cos}}(x) = \cos(k x).

The per-sample estimators of :math:`\nabla_{(\mu,\sigma)} \mathbb E[f(x)]`, as
:func:`companion.estimators.pathwise` and :func:`companion.estimators.score_function`
compute them for ``Normal(mu, sigma)``, are

.. math::

    \text{pathwise:}\quad (\hat g_\mu, \hat g_\sigma)
      &= \bigl(f'(x),\; f'(x)\,\varepsilon\bigr), \\
    \text{score function:}\quad (\hat g_\mu, \hat g_\sigma)
      &= \Bigl(f(x)\,\frac{\varepsilon}{\sigma},\; f(x)\,\frac{\varepsilon^2 - 1}{\sigma}\Bigr),

since :math:`\partial_\mu \log p = (x-\mu)/\sigma^2 = \varepsilon/\sigma` and
:math:`\partial_\sigma \log p = -1/\sigma + (x-\mu)^2/\sigma^3 = (\varepsilon^2-1)/\sigma`.
Their variances are closed forms for the quadratic and are integrated numerically
(adaptive quadrature in float64, :func:`normal_expectation`) for the
other two, where the closed forms exist but are long.

The score function is also given with its **optimal constant baseline** (chapter 2),
one per coordinate :math:`j`, :math:`b^\star_j = \mathbb E[f\,s_j^2]/\mathbb E[s_j^2]`
with :math:`s_j` the score (:func:`gaussian_optimal_baseline`), so that the
comparison with the pathwise estimator can be made at equal footing
(``baseline="optimal"``).

**Exponential problem** (chapter 4): :math:`z \sim \operatorname{Exp}(\lambda)`,
:math:`z = -\log(u)/\lambda`, :math:`f(z) = (z - k)^2`, with the estimators
:math:`f'(z)\,\partial z/\partial\lambda = -f'(z)\,z/\lambda` (pathwise) and
:math:`f(z)(1/\lambda - z)` (score function). Every quantity is a polynomial in
:math:`z` and :math:`\mathbb E[z^n] = n!/\lambda^n`, so all of it is exact.

**Non-smooth functions** (chapter 3): :math:`\partial_\mu \mathbb E|x|` and
:math:`\partial_\mu P(x > 0)` for :math:`x \sim \mathcal N(\mu, \sigma^2)`
(:func:`abs_mean_gradient`, :func:`step_mean_gradient`).

**Sequential inverse CDF** (chapter 4): the per-sample derivatives of the second coordinate
of a bivariate normal in its correlation and scale (:func:`bivariate_normal_x2_gradients`).

Every function returns Python floats computed in float64, except the last three, which
are elementwise and return arrays (or tensors) for array (or tensor) arguments.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import torch
from scipy import integrate
from scipy.stats import norm as _std_normal

from companion.validation import check_real, check_choice, check_positive_int

__all__ = [
    "GAUSSIAN_TEST_FUNCTIONS",
    "ESTIMATORS",
    "test_function",
    "normal_expectation",
    "gaussian_expectation",
    "gaussian_gradient",
    "gaussian_optimal_baseline",
    "gaussian_estimator_variance",
    "gaussian_variance_standard_error",
    "gaussian_variance_crossover",
    "square_score_moments",
    "exponential_expectation",
    "exponential_gradient",
    "exponential_optimal_baseline",
    "exponential_estimator_variance",
    "exponential_variance_standard_error",
    "exponential_estimator_moments",
    "abs_mean_gradient",
    "step_mean_gradient",
    "bivariate_normal_x2_gradients",
]

#: The Gaussian test functions by name, for :math:`(x-k)^2`, :math:`e^{-kx^2}` and :math:`\cos kx`.
GAUSSIAN_TEST_FUNCTIONS = ("quadratic", "exp", "cos")
#: Names of the two estimators, as in :mod:`companion.estimators`.
ESTIMATORS = ("pathwise", "score_function")

_DEFAULT_NODES = 160


# --------------------------------------------------------------------------- checks
def _name(name) -> str:
    return check_choice("name", name, GAUSSIAN_TEST_FUNCTIONS)


def _estimator(estimator) -> str:
    return check_choice("estimator", estimator, ESTIMATORS)


def _k(name: str, k) -> float:
    k = check_real("k", k)
    if name == "exp" and k < 0:
        raise ValueError(f"k must be >= 0 for exp(-k x^2) (otherwise E[f] is infinite), got {k!r}")
    return k


# --------------------------------------------------------------------------- test functions
def test_function(name: str, k: float) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The test function ``name`` with constant :math:`k`, as a torch function of a batch.

    ``"quadratic"``: :math:`(x-k)^2`; ``"exp"``: :math:`e^{-kx^2}` (:math:`k \ge 0`);
    ``"cos"``: :math:`\cos(kx)`. The returned function maps a tensor of samples to
    a tensor of the same shape, so it can be passed as ``f`` to
    :mod:`companion.estimators` with univariate samples.
    """
    name = _name(name)
    k = _k(name, k)
    if name == "quadratic":
        return lambda x: (x - k) ** 2
    if name == "exp":
        return lambda x: torch.exp(-k * x**2)
    return lambda x: torch.cos(k * x)


test_function.__test__ = False  # not a pytest test, despite its name


def _f_and_df(name: str, k: float):
    """NumPy float64 versions of f and f' for quadrature."""
    if name == "quadratic":
        return (lambda x: (x - k) ** 2), (lambda x: 2.0 * (x - k))
    if name == "exp":
        return (lambda x: np.exp(-k * x**2)), (lambda x: -2.0 * k * x * np.exp(-k * x**2))
    return (lambda x: np.cos(k * x)), (lambda x: -k * np.sin(k * x))


# --------------------------------------------------------------------------- quadrature
def normal_expectation(
    h: Callable[[np.ndarray], np.ndarray],
    mu: float = 0.0,
    sigma: float = 1.0,
    method: str = "adaptive",
    n_nodes: int = _DEFAULT_NODES,
) -> float:
    r""":math:`\mathbb E_{x \sim \mathcal N(\mu,\sigma^2)}[h(x)]` by numerical integration in float64.

    Writing :math:`x = \mu + \sigma\varepsilon`,
    :math:`\mathbb E[h(x)] = \int h(\mu + \sigma\varepsilon)\,\varphi(\varepsilon)\,d\varepsilon`
    with :math:`\varphi` the standard normal density.

    ``method="adaptive"`` (default): adaptive Gauss-Kronrod quadrature
    (``scipy.integrate.quad``, relative tolerance :math:`10^{-12}`, absolute
    :math:`10^{-14}`) over
    :math:`\varepsilon \in [-40, 40]`, outside which :math:`\varphi` underflows to 0,
    with break points at :math:`\varepsilon = 0` and :math:`\varepsilon = -\mu/\sigma`
    (where :math:`x = 0`, the peak of :math:`e^{-kx^2}`). It resolves sharp peaks and
    fast oscillations.

    ``method="gauss_hermite"``: the probabilists' Gauss-Hermite rule with
    ``n_nodes`` nodes :math:`\varepsilon_j` and weights :math:`w_j`,
    :math:`\mathbb E[h(x)] \approx \frac{1}{\sqrt{2\pi}}\sum_j w_j\, h(\mu + \sigma\varepsilon_j)`,
    exact for polynomials of degree below :math:`2n` and fast, but coarse for a
    peak narrower than its node spacing. ``h`` then receives an array of nodes.
    """
    if not callable(h):
        raise TypeError(f"h must be callable, got {h!r} of type {type(h).__name__}")
    mu = check_real("mu", mu)
    sigma = check_real("sigma", sigma, positive=True)
    n_nodes = check_positive_int("n_nodes", n_nodes, minimum=2)
    if method == "gauss_hermite":
        eps, w = np.polynomial.hermite_e.hermegauss(n_nodes)
        values = np.asarray(h(mu + sigma * eps), dtype=np.float64)
        return float(np.dot(w, values) / math.sqrt(2.0 * math.pi))
    if method != "adaptive":
        raise ValueError(f"method must be 'adaptive' or 'gauss_hermite', got {method!r}")
    norm = 1.0 / math.sqrt(2.0 * math.pi)

    def integrand(e: float) -> float:
        return float(h(mu + sigma * e)) * norm * math.exp(-0.5 * e * e)

    points = sorted({0.0, min(max(-mu / sigma, -39.0), 39.0)})
    value, _ = integrate.quad(integrand, -40.0, 40.0, points=points, limit=1000, epsabs=1e-14, epsrel=1e-12)
    return float(value)


def _gaussian_per_sample(name: str, estimator: str, k: float, mu: float, sigma: float, b=(0.0, 0.0)):
    """The two per-sample estimators (d/dmu, d/dsigma) as functions of the noise eps.

    ``b``: the score function's constant baselines, one per coordinate.
    """
    f, df = _f_and_df(name, k)
    if estimator == "pathwise":
        return (lambda e: df(mu + sigma * e)), (lambda e: df(mu + sigma * e) * e)
    b_mu, b_sigma = b
    return (
        (lambda e: (f(mu + sigma * e) - b_mu) * e / sigma),
        (lambda e: (f(mu + sigma * e) - b_sigma) * (e**2 - 1.0) / sigma),
    )


def _baseline(estimator: str, baseline) -> None:
    if baseline is None:
        return
    if baseline != "optimal":
        raise ValueError(f"baseline must be None or 'optimal', got {baseline!r}")
    if estimator != "score_function":
        raise ValueError(f"baseline='optimal' needs estimator='score_function', got estimator={estimator!r}")


def _eps_moment(g, power: int, center: float) -> float:
    """E[(g(eps) - center)^power] for eps ~ N(0, 1), integrated adaptively."""
    return normal_expectation(lambda e: (g(e) - center) ** power, 0.0, 1.0)


# --------------------------------------------------------------------------- Gaussian: values and gradients
def gaussian_expectation(name: str, k: float, mu: float, sigma: float) -> float:
    r""":math:`\mathbb E_{\mathcal N(\mu,\sigma^2)}[f(x)]` in closed form.

    .. math::

        \mathbb E[(x-k)^2] &= (\mu-k)^2 + \sigma^2, \\
        \mathbb E[e^{-kx^2}] &= \frac{1}{\sqrt{r}} \exp\Bigl(-\frac{k\mu^2}{r}\Bigr),\ r = 1 + 2k\sigma^2, \\
        \mathbb E[\cos kx] &= e^{-k^2\sigma^2/2}\cos(k\mu).

    The second completes the square in the Gaussian integral; the third is the real
    part of the characteristic function :math:`\mathbb E[e^{ikx}] = e^{ik\mu - k^2\sigma^2/2}`.
    """
    name = _name(name)
    k, mu, sigma = _k(name, k), check_real("mu", mu), check_real("sigma", sigma, positive=True)
    if name == "quadratic":
        return (mu - k) ** 2 + sigma**2
    if name == "exp":
        r = 1.0 + 2.0 * k * sigma**2
        return math.exp(-k * mu**2 / r) / math.sqrt(r)
    return math.exp(-0.5 * k**2 * sigma**2) * math.cos(k * mu)


def gaussian_gradient(name: str, k: float, mu: float, sigma: float) -> tuple[float, float]:
    r"""The exact gradient :math:`\bigl(\partial_\mu, \partial_\sigma\bigr)\, \mathbb E_{\mathcal N(\mu,\sigma^2)}[f(x)]`.

    Differentiating :func:`gaussian_expectation`, with :math:`r = 1 + 2k\sigma^2`
    and :math:`E = \mathbb E[e^{-kx^2}]`:

    .. math::

        (x-k)^2:&\quad \bigl(2(\mu - k),\; 2\sigma\bigr) \\
        e^{-kx^2}:&\quad \Bigl(-\frac{2k\mu}{r} E,\;
            \Bigl(\frac{4k^2\mu^2\sigma}{r^2} - \frac{2k\sigma}{r}\Bigr) E\Bigr) \\
        \cos kx:&\quad \bigl(-k\, e^{-k^2\sigma^2/2}\sin k\mu,\; -k^2\sigma\, e^{-k^2\sigma^2/2}\cos k\mu\bigr)

    Both estimators are unbiased for these, so this is also the mean of every
    per-sample estimate.
    """
    name = _name(name)
    k, mu, sigma = _k(name, k), check_real("mu", mu), check_real("sigma", sigma, positive=True)
    if name == "quadratic":
        return 2.0 * (mu - k), 2.0 * sigma
    if name == "exp":
        r = 1.0 + 2.0 * k * sigma**2
        e = math.exp(-k * mu**2 / r) / math.sqrt(r)
        return -2.0 * k * mu / r * e, (4.0 * k**2 * mu**2 * sigma / r**2 - 2.0 * k * sigma / r) * e
    damp = math.exp(-0.5 * k**2 * sigma**2)
    return -k * damp * math.sin(k * mu), -(k**2) * sigma * damp * math.cos(k * mu)


def gaussian_optimal_baseline(name: str, k: float, mu: float = 1.0, sigma: float = 1.0) -> tuple[float, float]:
    r"""The optimal constant baselines :math:`(b^\star_\mu, b^\star_\sigma)` of the score function.

    For one coordinate :math:`j` of :math:`\theta = (\mu, \sigma)` with score
    :math:`s_j`, the variance of :math:`(f - b)\,s_j` is
    :math:`\operatorname{Var}[f s_j] - 2b\,\mathbb E[f s_j^2] + b^2\,\mathbb E[s_j^2]`
    (because :math:`\mathbb E[s_j] = 0`), smallest at

    .. math::

        b^\star_j = \frac{\mathbb E[f(x)\,s_j(x)^2]}{\mathbb E[s_j(x)^2]}, \qquad
        s_\mu = \frac{\varepsilon}{\sigma},\ \mathbb E[s_\mu^2] = \frac{1}{\sigma^2},\quad
        s_\sigma = \frac{\varepsilon^2 - 1}{\sigma},\ \mathbb E[s_\sigma^2] = \frac{2}{\sigma^2}.

    For :math:`f = (x - k)^2`, with :math:`c = \mu - k`, this is
    :math:`b^\star_\mu = c^2 + 3\sigma^2` and :math:`b^\star_\sigma = c^2 + 5\sigma^2`;
    for the other functions :math:`\mathbb E[f s_j^2]` is integrated by
    :func:`normal_expectation`.
    """
    name = _name(name)
    k, mu, sigma = _k(name, k), check_real("mu", mu), check_real("sigma", sigma, positive=True)
    if name == "quadratic":
        c = mu - k
        return c**2 + 3.0 * sigma**2, c**2 + 5.0 * sigma**2
    f = _f_and_df(name, k)[0]
    b_mu = normal_expectation(lambda e: f(mu + sigma * e) * e**2, 0.0, 1.0)
    b_sigma = normal_expectation(lambda e: f(mu + sigma * e) * (e**2 - 1.0) ** 2, 0.0, 1.0) / 2.0
    return b_mu, b_sigma


# --------------------------------------------------------------------------- Gaussian: variances
def _quadratic_variance(estimator: str, c: float, s: float, baseline=None) -> tuple[float, float]:
    if estimator == "pathwise":
        return 4.0 * s**2, 4.0 * c**2 + 8.0 * s**2
    if baseline == "optimal":
        return 8.0 * c**2 + 6.0 * s**2, 40.0 * c**2 + 24.0 * s**2
    return c**4 / s**2 + 14.0 * c**2 + 15.0 * s**2, 2.0 * c**4 / s**2 + 60.0 * c**2 + 74.0 * s**2


def gaussian_estimator_variance(
    name: str,
    estimator: str,
    k: float,
    mu: float = 1.0,
    sigma: float = 1.0,
    method: str = "auto",
    baseline: str | None = None,
) -> tuple[float, float]:
    r"""Variance of one sample's estimate of :math:`(\partial_\mu, \partial_\sigma)\,\mathbb E[f(x)]`.

    This is what ``estimates.var(0)`` converges to, for ``estimates`` returned by
    :func:`companion.estimators.pathwise` or :func:`~companion.estimators.score_function`
    with ``Normal(mu, sigma)``. For :math:`f = (x-k)^2`, with :math:`c = \mu - k`,
    expanding the estimators in the Gaussian moments
    :math:`\mathbb E[\varepsilon^{2m}] = 1, 1, 3, 15, 105` gives

    .. math::

        \text{pathwise:}\quad \operatorname{Var}[\hat g_\mu] &= 4\sigma^2, \\
        \operatorname{Var}[\hat g_\sigma] &= 4c^2 + 8\sigma^2, \\
        \text{score function:}\quad \operatorname{Var}[\hat g_\mu] &= \frac{c^4}{\sigma^2} + 14c^2 + 15\sigma^2, \\
        \operatorname{Var}[\hat g_\sigma] &= \frac{2c^4}{\sigma^2} + 60c^2 + 74\sigma^2 .

    For ``"exp"`` and ``"cos"`` the variance
    :math:`\mathbb E[\hat g^2] - (\mathbb E \hat g)^2` is integrated by
    :func:`normal_expectation` (``method="auto"`` or ``"quadrature"``);
    ``method="quadrature"`` also works for the quadratic (exactly, the integrand
    being a polynomial), and ``"closed_form"`` only for the quadratic.

    ``baseline="optimal"`` (score function only): each coordinate uses its own
    optimal constant baseline :func:`gaussian_optimal_baseline`; the variance is
    then :math:`\operatorname{Var}[f s_j] - \mathbb E[f s_j^2]^2/\mathbb E[s_j^2]`, for
    the quadratic

    .. math::

        \operatorname{Var}[\hat g_\mu] = 8c^2 + 6\sigma^2, \qquad
        \operatorname{Var}[\hat g_\sigma] = 40c^2 + 24\sigma^2 .

    Returns:
        ``(variance of the d/dmu estimate, variance of the d/dsigma estimate)``.
    """
    name, estimator = _name(name), _estimator(estimator)
    k, mu, sigma = _k(name, k), check_real("mu", mu), check_real("sigma", sigma, positive=True)
    if method not in ("auto", "closed_form", "quadrature"):
        raise ValueError(f"method must be 'auto', 'closed_form' or 'quadrature', got {method!r}")
    if method == "closed_form" and name != "quadratic":
        raise ValueError(f"method='closed_form' is implemented for name='quadratic' only, got name={name!r}")
    _baseline(estimator, baseline)
    if name == "quadratic" and method != "quadrature":
        return _quadratic_variance(estimator, mu - k, sigma, baseline)
    means = gaussian_gradient(name, k, mu, sigma)
    b = gaussian_optimal_baseline(name, k, mu, sigma) if baseline else (0.0, 0.0)
    g_mu, g_sigma = _gaussian_per_sample(name, estimator, k, mu, sigma, b)
    return _eps_moment(g_mu, 2, means[0]), _eps_moment(g_sigma, 2, means[1])


def gaussian_variance_standard_error(
    name: str,
    estimator: str,
    k: float,
    mu: float = 1.0,
    sigma: float = 1.0,
    n_samples: int = 1,
    baseline: str | None = None,
) -> tuple[float, float]:
    r"""Standard error of the sample variance of ``n_samples`` per-sample estimates.

    For :math:`N` independent copies of :math:`\hat g` with variance :math:`v` and
    fourth central moment :math:`m_4`, the sample variance :math:`s^2` has, to
    leading order in :math:`1/N`,

    .. math::

        \operatorname{SE}(s^2) = \sqrt{\frac{m_4 - v^2}{N}},

    and :math:`m_4` is integrated by :func:`normal_expectation`. This is the
    sampling error against which a measured variance is compared with
    :func:`gaussian_estimator_variance`. ``baseline`` as there.

    Returns:
        ``(SE for the d/dmu estimate, SE for the d/dsigma estimate)``.
    """
    name, estimator = _name(name), _estimator(estimator)
    k, mu, sigma = _k(name, k), check_real("mu", mu), check_real("sigma", sigma, positive=True)
    n = check_positive_int("n_samples", n_samples)
    _baseline(estimator, baseline)
    means = gaussian_gradient(name, k, mu, sigma)
    b = gaussian_optimal_baseline(name, k, mu, sigma) if baseline else (0.0, 0.0)
    out = []
    for g, m in zip(_gaussian_per_sample(name, estimator, k, mu, sigma, b), means):
        v = _eps_moment(g, 2, m)
        m4 = _eps_moment(g, 4, m)
        out.append(math.sqrt(max(m4 - v * v, 0.0) / n))
    return out[0], out[1]


def gaussian_variance_crossover(
    name: str,
    col: int,
    baseline: str | None = None,
    lo: float = 0.1,
    hi: float = 3.0,
    mu: float = 1.0,
    sigma: float = 1.0,
) -> float:
    r"""The :math:`k \in [\text{lo}, \text{hi}]` where the score function and the pathwise estimator are equally noisy.

    Solves :math:`\log \operatorname{Var}_{\text{score}}(k) - \log \operatorname{Var}_{\text{pathwise}}(k) = 0`
    for the coordinate ``col`` (0: :math:`\partial_\mu`, 1: :math:`\partial_\sigma`) with
    Brent's method (``scipy.optimize.brentq``, ``xtol`` :math:`10^{-6}`), the variances from
    :func:`gaussian_estimator_variance` (``baseline`` applies to the score function).

    Raises:
        ValueError: if the two variances do not cross in the bracket (same sign at both ends).
    """
    from scipy.optimize import brentq

    name = _name(name)
    if col not in (0, 1):
        raise ValueError(f"col must be 0 (d/dmu) or 1 (d/dsigma), got {col!r}")
    _baseline("score_function", baseline)
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")

    def log_ratio(k: float) -> float:
        sf = gaussian_estimator_variance(name, "score_function", k, mu, sigma, baseline=baseline)[col]
        return math.log(sf / gaussian_estimator_variance(name, "pathwise", k, mu, sigma)[col])

    a, b = log_ratio(lo), log_ratio(hi)
    if a * b > 0:
        raise ValueError(f"the variances of {name!r} (col={col}) do not cross for k in [{lo}, {hi}]")
    return float(brentq(log_ratio, lo, hi, xtol=1e-6))


def square_score_moments(mu: float, c: float = 0.0) -> tuple[float, float]:
    r"""Variance and fourth central moment of chapter 2's score-function term
    :math:`\hat g = (x^2 + c)(x - \mu)`, :math:`x \sim \mathcal N(\mu, 1)`.

    With :math:`x = \mu + \varepsilon`, :math:`\hat g = \mu^2\varepsilon + 2\mu\varepsilon^2
    + \varepsilon^3 + c\,\varepsilon` has mean :math:`2\mu`; the Gaussian moments
    :math:`\mathbb E[\varepsilon^{2m}] = 1, 1, 3, 15` give

    .. math::

        \operatorname{Var}[\hat g] = \mu^4 + 14\mu^2 + 15 + 2c\,(\mu^2 + 3) + c^2 ,

    a parabola in :math:`c` with its minimum at :math:`c = -(\mu^2 + 3) = -b^\star`. The
    fourth central moment :math:`\mathbb E[(\hat g - 2\mu)^4]`, a polynomial of degree 12 in
    :math:`\varepsilon`, is integrated exactly by a 20-node Gauss-Hermite rule
    (:func:`normal_expectation`); with it, a measured variance's standard error
    (:func:`companion.stats.sample_variance_se`).
    """
    m, c = check_real("mu", mu), check_real("c", c)
    variance = m**4 + 14 * m**2 + 15 + 2 * c * (m**2 + 3) + c**2

    def term(e):
        return ((m + e) ** 2 + c) * e - 2 * m

    m4 = normal_expectation(lambda e: term(e) ** 4, method="gauss_hermite", n_nodes=20)
    return variance, m4


# --------------------------------------------------------------------------- exponential
def exponential_expectation(k: float, rate: float) -> float:
    r""":math:`\mathbb E_{z \sim \operatorname{Exp}(\lambda)}[(z-k)^2] = \frac{2}{\lambda^2} - \frac{2k}{\lambda} + k^2`,

    from :math:`\mathbb E[z] = 1/\lambda` and :math:`\mathbb E[z^2] = 2/\lambda^2`.
    """
    k, rate = check_real("k", k), check_real("rate", rate, positive=True)
    return 2.0 / rate**2 - 2.0 * k / rate + k**2


def exponential_gradient(k: float, rate: float) -> float:
    r""":math:`\frac{\partial}{\partial\lambda}\mathbb E[(z-k)^2] = \frac{2k}{\lambda^2} - \frac{4}{\lambda^3}`."""
    k, rate = check_real("k", k), check_real("rate", rate, positive=True)
    return 2.0 * k / rate**2 - 4.0 / rate**3


def _exp_moment(coefficients: np.ndarray, rate: float) -> float:
    """E[p(z)] for z ~ Exp(rate) and p given by its power-series coefficients: sum c_n n! / rate^n."""
    return float(sum(c * math.factorial(n) / rate**n for n, c in enumerate(coefficients)))


def exponential_optimal_baseline(k: float, rate: float) -> float:
    r"""The score function's optimal constant baseline for :math:`\partial_\lambda \mathbb E[(z-k)^2]`.

    With the score :math:`s = 1/\lambda - z` (so :math:`\mathbb E[s^2] = \operatorname{Var} z = 1/\lambda^2`),
    :math:`b^\star = \mathbb E[f s^2]/\mathbb E[s^2]`; expanding in :math:`\mathbb E[z^n] = n!/\lambda^n`,

    .. math::

        b^\star = k^2 - \frac{6k}{\lambda} + \frac{14}{\lambda^2}.
    """
    k, lam = check_real("k", k), check_real("rate", rate, positive=True)
    return k**2 - 6.0 * k / lam + 14.0 / lam**2


def _exponential_per_sample(estimator: str, k: float, rate: float, b: float = 0.0) -> np.polynomial.Polynomial:
    P = np.polynomial.Polynomial
    z = P([0.0, 1.0])
    f = (z - k) ** 2
    if estimator == "pathwise":
        return f.deriv() * (-z / rate)
    return (f - b) * (1.0 / rate - z)


def exponential_estimator_variance(estimator: str, k: float, rate: float, baseline: str | None = None) -> float:
    r"""Variance of one sample's estimate of :math:`\partial_\lambda \mathbb E[(z-k)^2]`, :math:`z \sim \operatorname{Exp}(\lambda)`.

    With :math:`z = -\log(u)/\lambda`, :math:`\partial z/\partial\lambda = -z/\lambda`, and
    :math:`\partial_\lambda \log p = 1/\lambda - z`, the per-sample estimators are the
    polynomials :math:`-2(z-k)z/\lambda` (pathwise) and :math:`(z-k)^2(1/\lambda - z)`
    (score function). Their second moments follow from :math:`\mathbb E[z^n] = n!/\lambda^n`:

    .. math::

        \operatorname{Var}_{\text{pathwise}} &= \frac{4(k^2\lambda^2 - 8k\lambda + 20)}{\lambda^6}, \\
        \operatorname{Var}_{\text{score}} &= \frac{k^4\lambda^4 - 12k^3\lambda^3 + 80k^2\lambda^2 - 296k\lambda + 488}{\lambda^6}.

    ``baseline="optimal"`` (score function only) subtracts
    :func:`exponential_optimal_baseline`, which gives
    :math:`\operatorname{Var} = \bigl(16(k\lambda - 4)^2 + 36\bigr)/\lambda^6`.
    """
    estimator = _estimator(estimator)
    k, lam = check_real("k", k), check_real("rate", rate, positive=True)
    _baseline(estimator, baseline)
    if estimator == "pathwise":
        return 4.0 * (k**2 * lam**2 - 8.0 * k * lam + 20.0) / lam**6
    if baseline == "optimal":
        return (16.0 * (k * lam - 4.0) ** 2 + 36.0) / lam**6
    return (k**4 * lam**4 - 12.0 * k**3 * lam**3 + 80.0 * k**2 * lam**2 - 296.0 * k * lam + 488.0) / lam**6


def exponential_variance_standard_error(
    estimator: str, k: float, rate: float, n_samples: int = 1, baseline: str | None = None
) -> float:
    r"""Standard error :math:`\sqrt{(m_4 - v^2)/N}` of the sample variance of ``n_samples`` estimates.

    The fourth central moment :math:`m_4 = \mathbb E[(\hat g - \mathbb E\hat g)^4]` of
    the polynomial estimator is exact, from :math:`\mathbb E[z^n] = n!/\lambda^n`.
    ``baseline`` as in :func:`exponential_estimator_variance`.
    """
    estimator = _estimator(estimator)
    k, rate = check_real("k", k), check_real("rate", rate, positive=True)
    n = check_positive_int("n_samples", n_samples)
    _baseline(estimator, baseline)
    _, v, m4 = _exponential_moments(estimator, k, rate, baseline)
    return math.sqrt(max(m4 - v * v, 0.0) / n)


def _exponential_moments(estimator: str, k: float, rate: float, baseline) -> tuple[float, float, float]:
    b = exponential_optimal_baseline(k, rate) if baseline else 0.0
    g = _exponential_per_sample(estimator, k, rate, b)
    mean = _exp_moment(g.coef, rate)
    v = _exp_moment(((g - mean) ** 2).coef, rate)
    m4 = _exp_moment(((g - mean) ** 4).coef, rate)
    return mean, v, m4


def exponential_estimator_moments(
    estimator: str, k: float, rate: float, baseline: str | None = None
) -> tuple[float, float, float]:
    r"""Mean, variance :math:`\operatorname{Var}` and fourth central moment :math:`m_4` of one sample's
    estimate of :math:`\partial_\lambda \mathbb E[(z-k)^2]`, :math:`z \sim \operatorname{Exp}(\lambda)`.

    Exact: the per-sample estimators are polynomials in :math:`z` (see
    :func:`exponential_estimator_variance`) and :math:`\mathbb E[z^n] = n!/\lambda^n`. The
    kurtosis :math:`m_4/\operatorname{Var}^2` (3 for a Gaussian) says how far a sample variance's
    distribution is from normal at a given :math:`N`. ``baseline`` as in
    :func:`exponential_estimator_variance`.
    """
    estimator = _estimator(estimator)
    k, rate = check_real("k", k), check_real("rate", rate, positive=True)
    _baseline(estimator, baseline)
    return _exponential_moments(estimator, k, rate, baseline)


# --------------------------------------------------------------------------- non-smooth f
def _mu_array(mu):
    """``mu`` as float64 values (a scalar or an array of reals)."""
    if isinstance(mu, (bool, np.bool_)) or not isinstance(mu, (numbers.Real, np.ndarray, list, tuple)):
        raise TypeError(f"mu must be a real number or an array of them, got {mu!r}")
    arr = np.asarray(mu, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"mu must be finite, got {mu!r}")
    return arr


def abs_mean_gradient(mu, sigma: float = 1.0):
    r""":math:`\frac{\partial}{\partial\mu}\mathbb E|x| = 2\Phi(\mu/\sigma) - 1`,
    :math:`x \sim \mathcal N(\mu, \sigma^2)`.

    It is :math:`\mathbb E[\operatorname{sign}(x)] = P(x > 0) - P(x < 0)`, the mean of the
    pathwise estimator of chapter 3 for :math:`f(x) = |x|`. ``mu`` may be an array
    (elementwise); a scalar gives a float.
    """
    m, sigma = _mu_array(mu), check_real("sigma", sigma, positive=True)
    out = 2 * _std_normal.cdf(m / sigma) - 1
    return float(out) if out.ndim == 0 else out


def step_mean_gradient(mu, sigma: float = 1.0):
    r""":math:`\frac{\partial}{\partial\mu} P(x > 0) = \varphi(\mu/\sigma)/\sigma`,
    :math:`x \sim \mathcal N(\mu, \sigma^2)`, the gradient of :math:`\mathbb E[\mathbb 1[x > 0]]`
    that the pathwise estimator misses (each of its samples is 0). ``mu`` as in
    :func:`abs_mean_gradient`.
    """
    m, sigma = _mu_array(mu), check_real("sigma", sigma, positive=True)
    out = _std_normal.pdf(m / sigma) / sigma
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- bivariate normal
def bivariate_normal_x2_gradients(z1, z2, rho: float, sigma2: float):
    r"""Per-sample :math:`(\partial x_2/\partial\rho,\ \partial x_2/\partial\sigma_2)` of
    :math:`x_2 = \mu_2 + \sigma_2\bigl(\rho z_1 + \sqrt{1-\rho^2}\,z_2\bigr)`.

    This is the second coordinate of a bivariate normal with correlation :math:`\rho` and
    scales :math:`\sigma_1, \sigma_2`, written with standard normals :math:`z_1, z_2` (the
    Cholesky map, and also the sequential inverse CDF of chapter 4):

    .. math::

        \frac{\partial x_2}{\partial\rho} = \sigma_2\Bigl(z_1 - \frac{\rho z_2}{\sqrt{1-\rho^2}}\Bigr),
        \qquad
        \frac{\partial x_2}{\partial\sigma_2} = \rho z_1 + \sqrt{1-\rho^2}\,z_2 .

    ``z1`` and ``z2`` are numbers, arrays or tensors of the same shape (elementwise).
    """
    rho, sigma2 = check_real("rho", rho), check_real("sigma2", sigma2, positive=True)
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    root = math.sqrt(1 - rho**2)
    return sigma2 * (z1 - rho * z2 / root), rho * z1 + root * z2
