r"""How far a stochastic gradient estimator is from the exact gradient: bias, cosine, variance.

Given :math:`R` independent estimates :math:`\hat g_1, \dots, \hat g_R \in \mathbb R^p`
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
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from companion.validation import check_positive_int, check_tensor

__all__ = ["GradientError", "gradient_error"]


class GradientError(NamedTuple):
    """Estimator-against-exact summary (plain floats); see :func:`gradient_error`."""

    relative_bias: float  #: noise-floor-corrected norm of the bias over the exact norm
    cosine: float  #: cosine between the estimator's expectation and the exact gradient
    relative_variance: float  #: total variance of one estimate over the exact squared norm
    noise_floor: float  #: sqrt(V / R) / |g|: the relative bias a perfect estimator would show uncorrected
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
