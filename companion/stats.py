r"""Bias, variance and mean squared error of a gradient estimator against an exact gradient.

A gradient estimator returns per-sample estimates :math:`\hat g_1, \dots, \hat g_N`
(rows of a tensor ``(N, D)``) of a gradient :math:`g^\star` that is known exactly (by
enumeration or a closed form). Write :math:`\beta = \mathbb E[\hat g_i] - g^\star` for the
bias and :math:`\Sigma = \operatorname{Cov}[\hat g_i]`. The mean of a batch of :math:`n`
independent estimates has mean squared error

.. math::

    \operatorname{MSE}(n) = \mathbb E\bigl\lVert \bar g_n - g^\star \bigr\rVert^2
    = \lVert\beta\rVert^2 + \frac{\operatorname{tr}\Sigma}{n} .

**The noise floor.** The naive bias estimate :math:`\lVert \bar g_N - g^\star\rVert` is
never zero: even an unbiased estimator shows :math:`\mathbb E\lVert \bar g_N - g^\star
\rVert^2 = \operatorname{tr}\Sigma / N`. Subtracting that floor (with the sample
covariance :math:`S`, unbiased for :math:`\Sigma`) gives an unbiased estimate of the
squared bias,

.. math::

    \widehat{\lVert\beta\rVert^2} = \lVert \bar g_N - g^\star\rVert^2
    - \frac{\operatorname{tr} S}{N},

which is negative about half the time when :math:`\beta = 0`. The reported bias is
:math:`\sqrt{\max(0, \widehat{\lVert\beta\rVert^2})}`. With :math:`d = \bar g_N - g^\star
\approx \mathcal N(\beta, \Sigma/N)`, the squared norm has variance
:math:`4\beta^\top\Sigma\beta/N + 2\operatorname{tr}(\Sigma^2)/N^2`. Since
:math:`\mathbb E[d^\top\Sigma d] = \beta^\top\Sigma\beta + \operatorname{tr}(\Sigma^2)/N`,
the plug-in estimate is

.. math::

    \mathrm{se}^2 = \max\Bigl(\frac{4\, d^\top S d}{N} - \frac{2\operatorname{tr}S^2}{N^2},\
    \frac{2\operatorname{tr}S^2}{N^2}\Bigr),

the standard error used to decide whether a bias is *resolved* (more than ``z``
standard errors above zero).

These functions compute a full :math:`D \times D` covariance: they are meant for the
small parameter vectors of the book's toy problems.

**Relative to the exact gradient** (:func:`gradient_error`). Given :math:`R` independent estimates :math:`\hat g_1, \dots, \hat g_R \in \mathbb R^p`
of a gradient whose exact value :math:`g` is known (by enumeration or a closed form),
with mean :math:`m = \frac1R \sum_r \hat g_r` and total variance
:math:`V = \operatorname{tr} \operatorname{Cov}[\hat g]`, estimated by
:math:`\hat V = \frac{1}{R-1}\sum_r \lVert \hat g_r - m \rVert^2`:

* :math:`\mathbb E \lVert m - g \rVert^2 = \lVert b \rVert^2 + V/R` with :math:`b = \mathbb E[\hat g] - g`,
  so the noise floor :math:`\hat V / R` is subtracted before taking the root: the
  **relative bias** :math:`\sqrt{\max(0, \lVert m - g\rVert^2 - \hat V/R)} / \lVert g \rVert`;
* :math:`\mathbb E\, m^\top g = \mathbb E[\hat g]^\top g` and
  :math:`\mathbb E\bigl[\lVert m \rVert^2 - \hat V / R\bigr] = \lVert \mathbb E \hat g \rVert^2`, so the
  **cosine** between the estimator's expectation and :math:`g` is estimated by
  :math:`m^\top g / \bigl(\lVert g\rVert \sqrt{\max(\epsilon, \lVert m\rVert^2 - \hat V/R)}\bigr)`;
* the **relative variance** of one estimate :math:`\hat V / \lVert g \rVert^2`, and the
  relative mean squared error of the mean of :math:`n` estimates,
  :math:`(\lVert b\rVert^2 + V/n)/\lVert g\rVert^2`.

Each is a ratio to :math:`\lVert g \rVert`, so it reads the same at any scale of the loss.

**Measured variance against an exact one** (:func:`variance_check`). Where a
chapter derives an estimator's variance :math:`V` in closed form, the sample
variance :math:`s^2` of :math:`N` per-sample estimates is compared with it in units
of its standard error, which to leading order in :math:`1/N` is

.. math::

    \operatorname{SE}(s^2) = \sqrt{\frac{m_4 - V^2}{N}}, \qquad
    z = \frac{s^2 - V}{\operatorname{SE}(s^2)},

with :math:`m_4` the estimator's fourth central moment (exact where the chapter
knows it, see :func:`sample_variance_se`). The ratio of two measured variances
:math:`r = s_a^2 / s_b^2` (independent samples) has, by the delta method, the
standard error :math:`r\sqrt{(\operatorname{SE}_a/V_a)^2 + (\operatorname{SE}_b/V_b)^2}`
(:meth:`VarianceCheck.ratio`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from companion.validation import check_real, check_finite, check_positive_int, check_tensor

__all__ = [
    "BiasEstimate",
    "GradientError",
    "VarianceCheck",
    "VarianceRatio",
    "bias_estimate",
    "gradient_error",
    "mean_agreement",
    "mse",
    "paired_difference",
    "sample_variance_se",
    "variance_check",
]


@dataclass(frozen=True)
class BiasEstimate:
    r"""An estimator's bias and variance against an exact gradient, noise floor removed.

    Attributes:
        bias: :math:`\sqrt{\max(0, \widehat{\lVert\beta\rVert^2})}`.
        bias_sq: :math:`\widehat{\lVert\beta\rVert^2}`, unbiased, may be negative.
        bias_sq_se: its standard error (plug-in, see the module docstring).
        raw_bias: :math:`\lVert \bar g_N - g^\star\rVert`, the floor not removed.
        noise_floor: :math:`\sqrt{\operatorname{tr} S / N}`, what ``raw_bias`` shows
            for an unbiased estimator.
        variance: :math:`\operatorname{tr} S`, one sample's total variance.
        exact_norm: :math:`\lVert g^\star \rVert`.
        cosine: :math:`\cos(\bar g_N, g^\star)`.
        n_samples: :math:`N`.
    """

    bias: float
    bias_sq: float
    bias_sq_se: float
    raw_bias: float
    noise_floor: float
    variance: float
    exact_norm: float
    cosine: float
    n_samples: int

    @property
    def relative_bias(self) -> float:
        r""":math:`\text{bias} / \lVert g^\star\rVert` (``inf`` for a zero gradient and a nonzero bias)."""
        if self.exact_norm == 0.0:
            return 0.0 if self.bias == 0.0 else math.inf
        return self.bias / self.exact_norm

    def resolved(self, z: float = 5.0) -> bool:
        r"""Whether the squared bias is more than ``z`` standard errors above zero.

        Without a bias the estimate is a centred, scaled chi-square, skewed to the right,
        so ``z = 5`` is not a normal five-sigma threshold: for isotropic Gaussian noise in
        :math:`D` dimensions the chance of a false flag is about 0.0045 (:math:`D = 1`),
        0.0025 (:math:`D = 2`) and 0.0012 (:math:`D = 4`).
        """
        return self.bias_sq > z * self.bias_sq_se

    def mse(self, batch_size: int) -> float:
        r""":math:`\max(0, \widehat{\lVert\beta\rVert^2}) + \operatorname{tr}S / n` for a batch of ``n``."""
        return mse(max(self.bias_sq, 0.0), self.variance, batch_size)


def mse(bias_sq: float, variance: float, batch_size: int) -> float:
    r"""Mean squared error of the mean of ``batch_size`` independent estimates:
    :math:`\lVert\beta\rVert^2 + \operatorname{tr}\Sigma / n`."""
    n = check_positive_int("batch_size", batch_size)
    bias_sq = check_real("bias_sq", bias_sq, nonnegative=True)
    variance = check_real("variance", variance, nonnegative=True)
    return bias_sq + variance / n


def bias_estimate(estimates: torch.Tensor, exact: torch.Tensor) -> BiasEstimate:
    r"""Bias (noise floor removed), its standard error, and variance of per-sample estimates.

    Args:
        estimates: per-sample estimates, shape ``(N, D)`` with :math:`N \ge 2`.
        exact: the exact gradient, shape ``(D,)``.

    Returns:
        A :class:`BiasEstimate`; see the module docstring for the formulas.
    """
    estimates = check_finite("estimates", check_tensor("estimates", estimates))
    exact = check_finite("exact", check_tensor("exact", exact))
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must have shape (n_samples >= 2, D), got {tuple(estimates.shape)}")
    if tuple(exact.shape) != tuple(estimates.shape[1:]):
        raise ValueError(f"exact must have shape {tuple(estimates.shape[1:])}, got {tuple(exact.shape)}")
    est = estimates.detach().to(torch.float64).cpu()
    exact = exact.detach().to(torch.float64).cpu()
    n = est.shape[0]
    mean = est.mean(0)
    centred = est - mean
    cov = centred.T @ centred / (n - 1)
    variance = float(torch.diagonal(cov).sum())
    d = mean - exact
    raw_sq = float(d @ d)
    bias_sq = raw_sq - variance / n
    tr_s2 = float((cov * cov).sum())
    # E[d^T S d] = beta^T Sigma beta + tr(Sigma^2)/N: subtract the second part
    se_sq = max(4.0 * float(d @ cov @ d) / n - 2.0 * tr_s2 / n**2, 2.0 * tr_s2 / n**2)
    norm = float(exact.norm())
    mean_norm = float(mean.norm())
    cosine = float(mean @ exact) / (mean_norm * norm) if mean_norm > 0 and norm > 0 else float("nan")
    return BiasEstimate(
        bias=math.sqrt(max(bias_sq, 0.0)),
        bias_sq=bias_sq,
        bias_sq_se=math.sqrt(max(se_sq, 0.0)),
        raw_bias=math.sqrt(raw_sq),
        noise_floor=math.sqrt(variance / n),
        variance=variance,
        exact_norm=norm,
        cosine=cosine,
        n_samples=n,
    )


class GradientError(NamedTuple):
    """Estimator-against-exact summary (plain floats); see :func:`gradient_error`."""

    relative_bias: float  #: noise-floor-corrected norm of the bias over the exact norm
    cosine: float  #: cosine between the estimator's expectation and the exact gradient
    relative_variance: float  #: total variance of one estimate over the exact squared norm
    noise_floor: float  #: the relative bias a perfect estimator would show uncorrected, sqrt(V / R) over the norm of g
    n_estimates: int  #: R

    def relative_mse(self, n: int = 1) -> float:
        r"""Mean squared error of the mean of ``n`` estimates over :math:`\lVert g\rVert^2`: :math:`\beta^2 + v/n`."""
        n = check_positive_int("n", n)
        return self.relative_bias**2 + self.relative_variance / n


def gradient_error(estimates: torch.Tensor, exact: torch.Tensor) -> GradientError:
    r"""Bias (noise floor removed), cosine and variance of gradient ``estimates`` against ``exact``.

    Args:
        estimates: ``(R, p)`` independent estimates, :math:`R \ge 2`, finite.
        exact: ``(p,)`` the exact gradient :math:`g`, finite and not zero.

    Returns:
        :class:`GradientError` with the module's formulas, computed in float64.
    """
    estimates = check_tensor("estimates", estimates)
    exact = check_tensor("exact", exact)
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must have shape (R, p) with R >= 2, got shape {tuple(estimates.shape)}")
    if exact.shape != estimates.shape[1:]:
        raise ValueError(
            f"exact must have shape {tuple(estimates.shape[1:])} to match estimates, got shape {tuple(exact.shape)}"
        )
    if not bool(torch.isfinite(estimates).all()):
        raise ValueError("estimates must be finite, got NaN or infinite values")
    if not bool(torch.isfinite(exact).all()):
        raise ValueError("exact must be finite, got NaN or infinite values")
    est = estimates.detach().double().cpu()
    g = exact.detach().double().cpu()
    g2 = float(g.square().sum())
    if g2 == 0.0:
        raise ValueError("exact must not be the zero vector (the ratios divide by its norm)")
    r = est.shape[0]
    m = est.mean(0)
    v = float((est - m).square().sum() / (r - 1))
    floor = v / r
    bias2 = max(0.0, float((m - g).square().sum()) - floor)
    m2 = max(float(m.square().sum()) - floor, 1e-300)
    cosine = float(m @ g) / math.sqrt(g2 * m2)
    return GradientError(
        relative_bias=math.sqrt(bias2 / g2),
        cosine=max(-1.0, min(1.0, cosine)),
        relative_variance=v / g2,
        noise_floor=math.sqrt(floor / g2),
        n_estimates=r,
    )


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    r"""Mean of the per-image differences :math:`d_i = a_i - b_i` and its standard error.

    .. math::

        \bar d = \frac1n \sum_i d_i, \qquad
        \operatorname{SE}(\bar d) = \frac{s_d}{\sqrt n},

    with :math:`s_d` the sample standard deviation of the :math:`d_i`. Comparing two
    models image by image on the same held-out images removes the spread between
    images that both share; the standard error is that of the test set's sampling
    only (it says nothing about how the models would differ under another training seed).
    """
    a = check_tensor("a", a)
    b = check_tensor("b", b)
    if a.dim() != 1 or a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(
            f"a and b must be 1-d of the same length >= 2, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    d = (a - b).double()
    return float(d.mean()), float(d.std() / math.sqrt(d.shape[0]))


def mean_agreement(a: torch.Tensor, b: torch.Tensor, threshold: float = 3.0) -> tuple[float, float]:
    r"""Do two sets of gradient estimates have the same mean, coordinate by coordinate?

    ``a`` and ``b`` are ``(n_a, p)`` and ``(n_b, p)`` independent estimates (rows) of
    ``p`` coordinates. For each coordinate, Welch's statistic

    .. math::

        t_j = \frac{\bar a_j - \bar b_j}{\sqrt{s_{a,j}^2 / n_a + s_{b,j}^2 / n_b}}

    is compared with ``threshold``. Returns the share of coordinates with
    :math:`|t_j| >` ``threshold``, and the share that chance alone would give if both
    means were equal: the average over coordinates of :math:`2\,P(T_{\nu_j} > \text{threshold})`
    for a Student :math:`t` with the Welch-Satterthwaite degrees of freedom

    .. math::

        \nu_j = \frac{(s_{a,j}^2/n_a + s_{b,j}^2/n_b)^2}
                     {\frac{(s_{a,j}^2/n_a)^2}{n_a - 1} + \frac{(s_{b,j}^2/n_b)^2}{n_b - 1}} .

    Coordinates where both samples are constant are left out.
    """
    from scipy import stats as scipy_stats

    a = check_tensor("a", a).double().cpu()
    b = check_tensor("b", b).double().cpu()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(
            f"a and b must be (n, p) with the same p and n >= 2, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    threshold = check_real("threshold", threshold, positive=True)
    va, vb = a.var(0) / a.shape[0], b.var(0) / b.shape[0]
    keep = (va + vb) > 0
    va, vb = va[keep], vb[keep]
    t = (a.mean(0)[keep] - b.mean(0)[keep]) / (va + vb).sqrt()
    nu = (va + vb) ** 2 / (va**2 / (a.shape[0] - 1) + vb**2 / (b.shape[0] - 1))
    expected = 2 * scipy_stats.t.sf(float(threshold), nu.numpy())
    return float((t.abs() > threshold).double().mean()), float(expected.mean())


def _float_array(name: str, value) -> np.ndarray:
    """``value`` (a number, sequence, array or tensor) as a float64 NumPy array, finite."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise TypeError(f"{name} must be numbers (an array, a tensor or a sequence), got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers (an array, a tensor or a sequence), got {value!r}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def sample_variance_se(variance: float, fourth_moment: float, n_samples: int) -> float:
    r"""Standard error of the sample variance of ``n_samples`` independent draws.

    .. math::

        \operatorname{SE}(s^2) = \sqrt{\frac{m_4 - V^2}{N}},

    the leading order in :math:`1/N` of
    :math:`\operatorname{Var}[s^2] = \bigl(m_4 - V^2 (N-3)/(N-1)\bigr)/N`, with
    :math:`V` the variance and :math:`m_4` the fourth central moment of one draw.
    """
    n = check_positive_int("n_samples", n_samples)
    v, m4 = _float_array("variance", variance), _float_array("fourth_moment", fourth_moment)
    if v.ndim or m4.ndim:
        raise ValueError(f"variance and fourth_moment must be single numbers, got shapes {v.shape} and {m4.shape}")
    v, m4 = float(v), float(m4)
    if v < 0:
        raise ValueError(f"variance must be >= 0, got {variance!r}")
    if m4 < v * v * (1 - 1e-12):
        raise ValueError(f"fourth_moment must be at least variance**2 = {v * v!r}, got {fourth_moment!r}")
    return math.sqrt(max(m4 - v * v, 0.0) / n)


class VarianceRatio(NamedTuple):
    """Ratio of two measured variances; see :meth:`VarianceCheck.ratio` (arrays of one shape)."""

    measured: np.ndarray  #: :math:`s_a^2 / s_b^2`
    se: np.ndarray  #: its delta-method standard error
    exact: np.ndarray  #: :math:`V_a / V_b`


@dataclass(frozen=True)
class VarianceCheck:
    r"""Measured variances beside exact ones, with standard errors: :math:`z = (s^2 - V)/\operatorname{SE}`.

    Build it with :func:`variance_check`. The three arrays have one shape (one entry
    per comparison, e.g. ``(len(ks), 2)`` for two coordinates at several ``k``).
    Indexing (``check[i]``) selects entries and returns a :class:`VarianceCheck`.
    """

    measured: np.ndarray
    exact: np.ndarray
    se: np.ndarray

    @property
    def z(self) -> np.ndarray:
        r""":math:`(s^2 - V) / \operatorname{SE}`, entry by entry."""
        return (self.measured - self.exact) / self.se

    @property
    def max_abs_z(self) -> float:
        """The largest :math:`|z|` over all entries."""
        return float(np.abs(self.z).max())

    @property
    def size(self) -> int:
        """The number of comparisons."""
        return int(self.measured.size)

    def __getitem__(self, index) -> "VarianceCheck":
        return VarianceCheck(*(np.asarray(a[index]) for a in (self.measured, self.exact, self.se)))

    def ratio(self, other: "VarianceCheck") -> VarianceRatio:
        r"""This check's variances over ``other``'s, entry by entry, with a standard error.

        For independent measurements, the delta method gives
        :math:`\operatorname{SE}(r) = r\sqrt{(\operatorname{SE}_a/V_a)^2 + (\operatorname{SE}_b/V_b)^2}`,
        with the exact variances :math:`V` in the relative errors.
        """
        if not isinstance(other, VarianceCheck):
            raise TypeError(f"other must be a VarianceCheck, got {type(other).__name__}")
        if other.measured.shape != self.measured.shape:
            raise ValueError(f"other must have shape {self.measured.shape}, got {other.measured.shape}")
        if (self.exact == 0).any() or (other.exact == 0).any() or (other.measured == 0).any():
            raise ValueError(
                f"a ratio needs nonzero exact variances (self.exact={self.exact.tolist()}, "
                f"other.exact={other.exact.tolist()}) and other.measured nonzero, got {other.measured.tolist()}"
            )
        r = self.measured / other.measured
        se = r * np.hypot(self.se / self.exact, other.se / other.exact)
        return VarianceRatio(r, se, self.exact / other.exact)

    @staticmethod
    def concat(checks) -> "VarianceCheck":
        """One flat :class:`VarianceCheck` of every entry of ``checks`` (in order)."""
        checks = list(checks)
        if not checks or not all(isinstance(c, VarianceCheck) for c in checks):
            raise TypeError(f"checks must be a non-empty sequence of VarianceCheck, got {checks!r}")
        return VarianceCheck(
            *(np.concatenate([getattr(c, f).ravel() for c in checks]) for f in ("measured", "exact", "se"))
        )


def variance_check(measured, exact, se) -> VarianceCheck:
    r"""Measured variances against exact ones, in standard errors.

    Args:
        measured: the sample variances :math:`s^2` (numbers, an array or a tensor).
        exact: the exact variances :math:`V`, the same shape.
        se: the standard error of each :math:`s^2`, the same shape, all :math:`> 0`
            (:func:`sample_variance_se`, or a closed form's).

    Returns:
        A :class:`VarianceCheck` (float64 arrays) with :math:`z = (s^2 - V)/\operatorname{SE}`.
    """
    m, e, s = (_float_array(n, v) for n, v in (("measured", measured), ("exact", exact), ("se", se)))
    if e.shape != m.shape or s.shape != m.shape:
        raise ValueError(
            f"measured, exact and se must have one shape, got {m.shape}, {e.shape} and {s.shape}"
        )
    if (m < 0).any() or (e < 0).any():
        raise ValueError(f"variances must be >= 0, got measured={measured!r}, exact={exact!r}")
    if not (s > 0).all():
        raise ValueError(f"se must be > 0, got {se!r}")
    return VarianceCheck(m, e, s)
