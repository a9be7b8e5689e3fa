r"""Chapters 3 and 4: measured estimator variances against exact ones, calibrated by simulation.

The estimators are named by their canonical keys (:data:`KEYS`): ``"pathwise"``,
``"score_function"`` and ``"score_function[baseline=b]"``, the score function with the
optimal constant baseline :math:`b^\star` of :mod:`companion.experiments.closed_forms`
(one :math:`b^\star_j` per coordinate). :func:`measure_gaussian` (chapter 3) and
:func:`measure_exponential` (chapter 4) run the library's estimators and return a
:class:`companion.stats.VarianceCheck` (measured, exact, standard error, :math:`z`).

Chapter 3 measures the variance of the pathwise and score-function estimators
(with and without the optimal baseline :math:`b^\star`) on the Gaussian test
problems of :mod:`companion.experiments.closed_forms`, and compares each measured variance
:math:`s^2` of :math:`N` per-sample estimates with the exact :math:`V` in units of
its standard error :math:`\sqrt{(m_4 - V^2)/N}`:

.. math::

    z = \frac{s^2 - V}{\sqrt{(m_4 - V^2)/N}} .

For heavy-tailed estimators (polynomials of :math:`\varepsilon` of degree 3 and
more) the sampling distribution of :math:`s^2` is right-skewed at moderate
:math:`N`, so :math:`z` is not standard normal and "the largest of :math:`m`
normal :math:`|z|`" is the wrong yardstick. :func:`simulate_max_abs_z` gives the
right one: it repeats the whole experiment with the known per-sample estimators
(functions of :math:`\varepsilon`) and returns the largest :math:`|z|` of each
repetition. :func:`simulate_exponential_max_abs_z` does the same for chapter 4's
exponential problem, whose score-function estimator is a cubic in
:math:`z \sim \operatorname{Exp}(\lambda)`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.distributions import Exponential, Normal

from companion.estimators import pathwise, score_function
from companion.experiments import closed_forms as cf
from companion.stats import VarianceCheck, variance_check
from companion.validation import check_choice, check_positive_int, check_real

__all__ = [
    "KEYS",
    "Case",
    "exact_gaussian_variance",
    "exact_exponential_variance",
    "gaussian_cases",
    "gaussian_crossover",
    "measure_exponential",
    "measure_gaussian",
    "per_sample_estimator",
    "simulate_exponential_max_abs_z",
    "simulate_max_abs_z",
]

#: The estimators compared, by canonical key (see :mod:`companion.catalogue`).
KEYS = ("pathwise", "score_function", "score_function[baseline=b]")


def _split(key: str) -> tuple[str, str | None]:
    """A key's library function and its :mod:`~companion.experiments.closed_forms` baseline."""
    key = check_choice("key", key, KEYS)
    return ("score_function", "optimal") if key == "score_function[baseline=b]" else (key, None)

#: One comparison: (test function, estimator, k, coordinate 0 = mu or 1 = sigma, baseline).
Case = tuple  # (name, estimator, k, col, baseline)


def per_sample_estimator(
    name: str, estimator: str, k: float, col: int, mu: float = 1.0, sigma: float = 1.0, baseline: str | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    r"""One coordinate of the per-sample estimator as a NumPy function of the noise :math:`\varepsilon`.

    ``col`` 0 is :math:`\hat g_\mu`, 1 is :math:`\hat g_\sigma`; the formulas are those of
    :mod:`companion.experiments.closed_forms` (pathwise :math:`f'(x)`, :math:`f'(x)\varepsilon`; score
    function :math:`(f(x) - b_j)\,s_j`, with :math:`b_j = b^\star_j` when
    ``baseline="optimal"``, else 0).
    """
    if col not in (0, 1):
        raise ValueError(f"col must be 0 (d/dmu) or 1 (d/dsigma), got {col!r}")
    # the arguments are checked by closed_forms
    cf.gaussian_estimator_variance(name, estimator, k, mu, sigma, method="auto", baseline=baseline)
    b = cf.gaussian_optimal_baseline(name, k, mu, sigma) if baseline else (0.0, 0.0)
    return cf._gaussian_per_sample(name, estimator, float(k), float(mu), float(sigma), b)[col]


def simulate_max_abs_z(
    cases: Sequence[Case],
    n_samples: int,
    n_repeats: int,
    rng: np.random.Generator,
    mu: float = 1.0,
    sigma: float = 1.0,
) -> np.ndarray:
    r"""The largest :math:`|z|` over ``cases`` in each of ``n_repeats`` simulated experiments.

    For each case, ``n_repeats`` independent samples of ``n_samples`` noise draws give
    ``n_repeats`` sample variances (``ddof=1``), each turned into
    :math:`z = (s^2 - V)/\operatorname{SE}` with the exact :math:`V` and SE of
    :mod:`companion.experiments.closed_forms`. Returns an array of shape ``(n_repeats,)``: under the
    null hypothesis that every measurement is correct, the distribution of the largest
    :math:`|z|`, whatever the skewness of the sample variances.
    """
    n = check_positive_int("n_samples", n_samples, minimum=2)
    r = check_positive_int("n_repeats", n_repeats)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {rng!r}")
    if len(cases) == 0:
        raise ValueError("cases must not be empty")
    worst = np.zeros(r)
    for name, estimator, k, col, baseline in cases:
        g = per_sample_estimator(name, estimator, k, col, mu, sigma, baseline)
        v = cf.gaussian_estimator_variance(name, estimator, k, mu, sigma, baseline=baseline)[col]
        se = cf.gaussian_variance_standard_error(name, estimator, k, mu, sigma, n_samples=n, baseline=baseline)[col]
        s2 = g(rng.standard_normal((r, n))).var(axis=1, ddof=1)
        worst = np.maximum(worst, np.abs(s2 - v) / se)
    return worst


def exact_gaussian_variance(name: str, key: str, k: float, mu: float = 1.0,
                            sigma: float = 1.0) -> tuple[float, float]:
    r"""Exact variance of one sample's estimate of :math:`(\partial_\mu, \partial_\sigma)\,\mathbb E[f(x)]`,
    :math:`x \sim \mathcal N(\mu, \sigma^2)`, for the estimator ``key`` (one of :data:`KEYS`):
    :func:`~companion.experiments.closed_forms.gaussian_estimator_variance`."""
    fn, baseline = _split(key)
    return cf.gaussian_estimator_variance(name, fn, k, mu, sigma, baseline=baseline)


def gaussian_crossover(name: str, col: int, key: str = "score_function") -> float:
    r"""The :math:`k \in [0.1, 3]` where the score function ``key`` and the pathwise
    estimator have the same exact variance in coordinate ``col``
    (:func:`~companion.experiments.closed_forms.gaussian_variance_crossover`)."""
    fn, baseline = _split(key)
    if fn != "score_function":
        raise ValueError(f"key must name a score function, got {key!r}")
    return cf.gaussian_variance_crossover(name, col, baseline)


def measure_gaussian(name: str, key: str, ks: Sequence[float], n_samples: int,
                     device: torch.device | str | None = None) -> VarianceCheck:
    r"""Measured against exact variances of the estimator ``key`` on :math:`f` = ``name``.

    For each :math:`k` in ``ks``, ``n_samples`` per-sample estimates of the gradient of
    :math:`\mathbb E_{\mathcal N(1, 1)}[f_k(x)]` in :math:`(\mu, \sigma)` from
    :func:`companion.estimators.pathwise` or :func:`~companion.estimators.score_function`
    (for ``"score_function[baseline=b]"`` one call per coordinate, each with its own
    :math:`b^\star_j`), float64, drawn from torch's global CPU generator in that order.

    Returns:
        A :class:`~companion.stats.VarianceCheck` of shape ``(len(ks), 2)``
        (columns :math:`\partial_\mu`, :math:`\partial_\sigma`), the standard errors from
        :func:`~companion.experiments.closed_forms.gaussian_variance_standard_error`.
    """
    fn, baseline = _split(key)
    cf.test_function(name, 1.0)  # checks the name
    n = check_positive_int("n_samples", n_samples, minimum=2)
    ks = [float(k) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k")
    params = torch.tensor([1.0, 1.0], dtype=torch.float64, device=device)

    def normal(p):
        return Normal(p[0], p[1])

    rows = []
    for k in ks:
        f = cf.test_function(name, k)
        if key == "pathwise":
            v = pathwise(f, normal, params, n).var(0)
        elif key == "score_function":
            v = score_function(f, normal, params, n).var(0)
        else:
            b = cf.gaussian_optimal_baseline(name, k)
            v = torch.stack([score_function(f, normal, params, n, baseline=b[j])[:, j].var()
                             for j in range(2)])
        se = cf.gaussian_variance_standard_error(name, fn, k, n_samples=n, baseline=baseline)
        rows.append((v.cpu().numpy(), exact_gaussian_variance(name, key, k), se))
    return variance_check(*(np.array([r[i] for r in rows]) for i in range(3)))


def gaussian_cases(k_points: dict) -> list[Case]:
    """The :data:`Case` tuples of :func:`simulate_max_abs_z` for every test function in
    ``k_points`` (name to its ``ks``), every key of :data:`KEYS` and both coordinates,
    in the order of a chapter's measurements (name, key, k, coordinate)."""
    if not isinstance(k_points, dict) or not k_points:
        raise TypeError(f"k_points must be a non-empty dict of test-function name to ks, got {k_points!r}")
    cases = []
    for name, ks in k_points.items():
        for key in KEYS:
            fn, baseline = _split(key)
            cases += [(name, fn, float(k), col, baseline) for k in ks for col in (0, 1)]
    return cases


def exact_exponential_variance(key: str, k: float, rate: float = 1.0) -> float:
    r"""Exact variance of one sample's estimate of :math:`\partial_\lambda \mathbb E[(z-k)^2]`,
    :math:`z \sim \operatorname{Exp}(\lambda)`, for the estimator ``key``
    (:func:`~companion.experiments.closed_forms.exponential_estimator_variance`)."""
    fn, baseline = _split(key)
    return cf.exponential_estimator_variance(fn, k, rate, baseline=baseline)


def measure_exponential(key: str, ks: Sequence[float], n_samples: int,
                        device: torch.device | str | None = None) -> VarianceCheck:
    r"""Measured against exact variances of the estimator ``key`` of
    :math:`\partial_\lambda \mathbb E_{\operatorname{Exp}(1)}[(z-k)^2]`, one entry per :math:`k`.

    ``n_samples`` per-sample estimates per :math:`k`, float64, from
    :func:`companion.estimators.pathwise` or :func:`~companion.estimators.score_function`
    (with :math:`b^\star` for ``"score_function[baseline=b]"``); standard errors from
    :func:`~companion.experiments.closed_forms.exponential_variance_standard_error`.
    Returns a :class:`~companion.stats.VarianceCheck` of shape ``(len(ks),)``.
    """
    fn, baseline = _split(key)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    ks = [float(k) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k")
    rate = torch.tensor(1.0, dtype=torch.float64, device=device)
    rows = []
    for k in ks:
        def f(x, k=k):
            return (x - k) ** 2

        if key == "pathwise":
            g = pathwise(f, Exponential, rate, n)
        else:
            b = cf.exponential_optimal_baseline(k, 1.0) if baseline else None
            g = score_function(f, Exponential, rate, n, baseline=b)
        se = cf.exponential_variance_standard_error(fn, k, 1.0, n, baseline=baseline)
        rows.append((g.var().item(), exact_exponential_variance(key, k), se))
    return variance_check(*(np.array([r[i] for r in rows]) for i in range(3)))


def simulate_exponential_max_abs_z(
    ks: Sequence[float],
    n_samples: int,
    n_repeats: int,
    rng: np.random.Generator,
    keys: Sequence[str] = KEYS,
    rate: float = 1.0,
) -> np.ndarray:
    r"""The largest :math:`|z|` over ``keys`` and ``ks`` in each of ``n_repeats`` simulated
    repetitions of :func:`measure_exponential`'s experiment.

    For each key and :math:`k`, ``n_repeats`` independent samples of ``n_samples`` draws
    :math:`z \sim \operatorname{Exp}(\lambda)` give as many sample variances (``ddof=1``) of
    the per-sample estimator (a polynomial in :math:`z`, see
    :func:`~companion.experiments.closed_forms.exponential_estimator_variance`), each turned
    into :math:`z = (s^2 - V)/\operatorname{SE}` with the exact :math:`V` and SE. Returns an
    array of shape ``(n_repeats,)``: the distribution of the largest :math:`|z|` when every
    measurement is correct, whatever the skewness of the sample variances.
    """
    n = check_positive_int("n_samples", n_samples, minimum=2)
    r = check_positive_int("n_repeats", n_repeats)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {rng!r}")
    ks = [float(k) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k")
    if isinstance(keys, str) or len(keys) == 0:
        raise ValueError(f"keys must be a non-empty sequence of keys, got {keys!r}")
    splits = [_split(key) for key in keys]
    lam = check_real("rate", rate, positive=True)
    worst = np.zeros(r)
    chunk = max(1, 2_000_000 // n)  # repeats per batch of draws, about 16 MB
    for fn, baseline in splits:
        for k in ks:
            b = cf.exponential_optimal_baseline(k, lam) if baseline else 0.0
            coef = cf._exponential_per_sample(fn, k, lam, b).coef
            v = cf.exponential_estimator_variance(fn, k, lam, baseline=baseline)
            se = cf.exponential_variance_standard_error(fn, k, lam, n, baseline=baseline)
            for start in range(0, r, chunk):
                z = rng.standard_exponential((min(chunk, r - start), n)) / lam
                s2 = np.polynomial.polynomial.polyval(z, coef).var(axis=1, ddof=1)
                rows = slice(start, start + len(s2))
                worst[rows] = np.maximum(worst[rows], np.abs(s2 - v) / se)
    return worst
