r"""Chapter 3's comparison of measured and exact estimator variances, calibrated by simulation.

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
repetition.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from companion.experiments import closed_forms as cf
from companion.validation import check_positive_int

__all__ = ["Case", "per_sample_estimator", "simulate_max_abs_z"]

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
