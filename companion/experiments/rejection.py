r"""Differentiating through a rejection sampler: Marsaglia and Tsang's Gamma sampler.

Chapter 4 samples :math:`z \sim \operatorname{Gamma}(\alpha, 1)`, :math:`\alpha \ge 1`,
by Marsaglia and Tsang's method: draw a normal proposal :math:`\varepsilon`, set

.. math::

    z = h(\varepsilon, \alpha) = d\,(1 + c\,\varepsilon)^3, \qquad
    d = \alpha - \tfrac13,\quad c = \frac{1}{\sqrt{9d}},

and accept it when :math:`(1 + c\varepsilon)^3 > 0` and
:math:`\log u < \varepsilon^2/2 + d - d v + d \log v` for :math:`u \sim \mathcal U(0,1)`,
:math:`v = (1 + c\varepsilon)^3`. The accepted :math:`z` is exactly Gamma.

Holding the accepted proposal fixed and differentiating the transform gives the
per-sample quantity :math:`\partial_\alpha h(\varepsilon, \alpha)`. Its average over
accepted proposals is **biased**: which proposals are accepted depends on
:math:`\alpha`, and that dependence is dropped. The accepted :math:`\varepsilon` has the
density :math:`\pi(\varepsilon; \alpha) = q_\alpha\bigl(h(\varepsilon, \alpha)\bigr)\,
\partial_\varepsilon h(\varepsilon, \alpha)` (the Gamma density :math:`q_\alpha` pulled
back through the increasing map :math:`h`), and differentiating
:math:`\mathbb E_{\pi}[f(h(\varepsilon, \alpha))]` under the integral gives
(Naesseth et al., 2017)

.. math::

    \frac{d}{d\alpha}\mathbb E[f(z)] =
    \mathbb E_{\pi}\bigl[f'(z)\,\partial_\alpha h(\varepsilon, \alpha)\bigr]
    + \mathbb E_{\pi}\bigl[f(z)\,\partial_\alpha \log \pi(\varepsilon; \alpha)\bigr],

a pathwise term and a score-function correction.
"""

from __future__ import annotations

import math

import torch

from companion.validation import check_positive_int, check_real

__all__ = ["transform", "marsaglia_tsang", "rejection_gradients", "fixed_proposal_mean"]


def _alpha(alpha) -> float:
    alpha = check_real("alpha", alpha)
    if alpha < 1.0:
        raise ValueError(f"alpha must be finite and >= 1 (Marsaglia-Tsang without boosting), got {alpha!r}")
    return alpha


def transform(alpha: float, eps):
    r"""Marsaglia and Tsang's map :math:`h(\varepsilon, \alpha) = d(1 + c\varepsilon)^3`,
    :math:`d = \alpha - \frac13`, :math:`c = 1/\sqrt{9d}`, of a proposal (tensor or array)."""
    alpha = _alpha(alpha)
    d = alpha - 1.0 / 3.0
    return d * (1.0 + eps / math.sqrt(9.0 * d)) ** 3


def marsaglia_tsang(alpha: float, n_proposals: int, generator: torch.Generator | None = None):
    r"""Run ``n_proposals`` proposals of Marsaglia and Tsang's sampler for Gamma(alpha, 1).

    Returns ``(eps, accepted)``: the normal proposals :math:`\varepsilon` (float64, CPU)
    and a boolean mask of those accepted. ``d * (1 + c * eps[accepted]) ** 3`` are
    exact Gamma(alpha, 1) draws (see the module docstring for the test).
    """
    alpha = _alpha(alpha)
    n = check_positive_int("n_proposals", n_proposals)
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    v = (1.0 + c * eps) ** 3
    ok = v > 0
    log_v = torch.log(torch.where(ok, v, torch.ones_like(v)))
    accepted = ok & (torch.log(u) < 0.5 * eps**2 + d - d * v + d * log_v)
    return eps, accepted


def rejection_gradients(alpha: float, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""Per-sample gradients in :math:`\alpha` for accepted proposals ``eps``.

    With :math:`z = h(\varepsilon, \alpha)` returns a dict of float64 tensors:

    - ``"z"``: the samples;
    - ``"fixed_proposal"``: :math:`\partial_\alpha h(\varepsilon, \alpha)` at fixed
      :math:`\varepsilon`, which, for :math:`f(z) = z`, is the biased estimate;
    - ``"score_correction"``: :math:`z\,\partial_\alpha \log\pi(\varepsilon; \alpha)`, with
      :math:`\log\pi = (\alpha - 1)\log z - z - \log\Gamma(\alpha) + \log\partial_\varepsilon h`,
      the correction of Naesseth et al. (2017) for :math:`f(z) = z`;
    - ``"corrected"``: their sum, unbiased for :math:`\frac{d}{d\alpha}\mathbb E[z] = 1`.
    """
    alpha = _alpha(alpha)
    if not isinstance(eps, torch.Tensor) or eps.dim() != 1 or eps.numel() == 0:
        raise TypeError(f"eps must be a non-empty 1-d tensor of accepted proposals, got {eps!r}")
    e = eps.detach().to("cpu", torch.float64)
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    dc = -c / (2.0 * d)                      # dc/dalpha
    b = 1.0 + c * e
    if not bool((b > 0).all()):
        raise ValueError("eps must be accepted proposals, with 1 + c * eps > 0")
    z = d * b**3
    db = dc * e                              # db/dalpha at fixed eps
    dz = b**3 + 3.0 * d * b**2 * db          # dh/dalpha at fixed eps
    # log pi = (alpha - 1) log z - z - lgamma(alpha) + log(3 d c b^2),
    # and 3 d c = sqrt(d)
    dlog_pi = (torch.log(z) + (alpha - 1.0) * dz / z - dz - torch.special.digamma(torch.tensor(alpha, dtype=torch.float64))
               + 0.5 / d + 2.0 * db / b)
    correction = z * dlog_pi
    return {"z": z, "fixed_proposal": dz, "score_correction": correction, "corrected": dz + correction}



def fixed_proposal_mean(alpha: float) -> float:
    r"""The exact mean of the fixed-proposal derivative, :math:`\mathbb E_\pi[\partial_\alpha h(\varepsilon, \alpha)]`.

    The accepted proposal is a function of the Gamma sample,
    :math:`\varepsilon = h^{-1}(z) = \bigl((z/d)^{1/3} - 1\bigr)/c` with :math:`z \sim
    \operatorname{Gamma}(\alpha, 1)`, so the mean is one integral against the Gamma
    density :math:`q_\alpha`,

    .. math::

        \int_0^\infty \partial_\alpha h\bigl(h^{-1}(z), \alpha\bigr)\, q_\alpha(z)\, dz,
        \qquad \partial_\alpha h = b^3 + 3 d b^2\, \varepsilon\, \frac{dc}{d\alpha},\quad
        b = 1 + c\varepsilon,\ \frac{dc}{d\alpha} = -\frac{c}{2d},

    computed by adaptive quadrature (``scipy.integrate.quad``). It differs from the true
    :math:`\frac{d}{d\alpha}\mathbb E[z] = 1`: the bias that the score-function
    correction of :func:`rejection_gradients` removes.
    """
    from scipy import integrate, stats

    alpha = _alpha(alpha)
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    dc = -c / (2.0 * d)

    def integrand(z: float) -> float:
        b = (z / d) ** (1.0 / 3.0)
        eps = (b - 1.0) / c
        return (b**3 + 3.0 * d * b**2 * dc * eps) * stats.gamma.pdf(z, alpha)

    mode = alpha - 1.0
    value = 0.0
    for lo, hi in ((0.0, mode), (mode, mode + 40.0 * math.sqrt(alpha)), (mode + 40.0 * math.sqrt(alpha), math.inf)):
        if hi > lo:
            value += integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    return float(value)
