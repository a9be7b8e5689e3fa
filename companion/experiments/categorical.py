r"""A categorical toy objective, its exact gradient by enumeration, and the gradient
estimators of chapter 6 measured against it.

The objective. Logits :math:`\theta \in \mathbb R^K` define
:math:`p = \operatorname{softmax}(\theta)`; a function :math:`h` of a point of the
simplex (a batch ``(n, K)`` to values ``(n,)``, differentiable with torch operations)
is evaluated at the one-hot vector :math:`e_k` of a category :math:`k \sim p`:

.. math::

    L(\theta) = \mathbb E_{k \sim \operatorname{softmax}(\theta)}\bigl[h(e_k)\bigr]
              = \sum_{k=1}^K p_k\, h(e_k).

With only :math:`K` categories the expectation is a finite sum, so its gradient is
exact (:func:`exact_gradient`), and every estimator can be judged by its bias and
variance against it (:func:`bias_variance`).

The estimators all return **per-sample gradient estimates**, shape
``(n_samples, K)``, like :mod:`companion.estimators`:

* :func:`reinforce`: the score function, unbiased, with or without a baseline.
* :func:`relaxed`: the Gumbel-softmax (Concrete) pathwise gradient of the *relaxed*
  objective :math:`\mathbb E[h(y)]`, :math:`y = \operatorname{softmax}((\theta+g)/\tau)`;
  biased for :math:`\tau > 0`.
* :func:`straight_through`: one-hot forward, soft backward (``hard=True``); biased.

All noise is drawn on the CPU from torch's global generator (seed it with
:func:`companion.device.setup` or ``torch.manual_seed``) and moved to the logits'
device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.distributions import Categorical

from companion import estimators
from companion.gumbel import gumbel, gumbel_softmax
from companion.validation import as_tensor, check_choice, check_finite, check_positive, check_positive_int, check_tensor

__all__ = [
    "quadratic",
    "linear",
    "category_values",
    "objective",
    "exact_gradient",
    "inverse_cdf_category",
    "concrete_log_prob",
    "reinforce",
    "relaxed",
    "straight_through",
    "BiasVariance",
    "bias_variance",
    "anneal",
    "minimize",
]

Objective = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- checks
def _check_logits(logits) -> torch.Tensor:
    logits = check_tensor("logits", logits)
    if logits.dim() != 1 or logits.shape[0] < 2:
        raise ValueError(f"logits must be a 1-d tensor of K >= 2 categories, got shape {tuple(logits.shape)}")
    return check_finite("logits", logits)


def _check_h(h) -> Objective:
    if not callable(h):
        raise TypeError(f"h must be callable (a batch (n, K) of simplex points to values (n,)), got {h!r} of type {type(h).__name__}")
    return h


def _values(h: Objective, y: torch.Tensor) -> torch.Tensor:
    v = h(y)
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"h must return a torch.Tensor, got {type(v).__name__}")
    if tuple(v.shape) != (y.shape[0],):
        raise ValueError(
            f"h must map a batch of shape {tuple(y.shape)} to one value per row, shape ({y.shape[0]},); "
            f"it returned shape {tuple(v.shape)}"
        )
    return v


def _check_temperature(temperature, like: torch.Tensor) -> torch.Tensor:
    tau = as_tensor("temperature", temperature, like=like)
    if tau.dim() != 0:
        raise ValueError(f"temperature must be a scalar, got shape {tuple(tau.shape)}")
    return check_positive("temperature", tau)


# ----------------------------------------------------------------------------- objectives
def linear(values) -> Objective:
    r"""The linear function :math:`h(y) = \sum_k y_k v_k` (so :math:`h(e_k) = v_k`).

    For a linear :math:`h` the relaxed objective is :math:`\mathbb E[y]^\top v`, and the
    straight-through and Gumbel-softmax gradients coincide sample by sample.
    """
    v = check_finite("values", check_tensor("values", values))
    if v.dim() != 1:
        raise ValueError(f"values must be a 1-d tensor of K values, got shape {tuple(v.shape)}")

    def h(y: torch.Tensor) -> torch.Tensor:
        return y @ v.to(device=y.device, dtype=y.dtype)

    return h


def quadratic(target) -> Objective:
    r"""The squared distance to a target point :math:`t`: :math:`h(y) = \lVert y - t \rVert^2`.

    On a one-hot vector :math:`h(e_k) = 1 - 2 t_k + \lVert t \rVert^2`, smallest for the
    category with the largest :math:`t_k`. Inside the simplex it is not linear, so
    straight-through (which evaluates :math:`\nabla h` at the one-hot) and
    Gumbel-softmax (at the soft sample) differ.
    """
    t = check_finite("target", check_tensor("target", target))
    if t.dim() != 1:
        raise ValueError(f"target must be a 1-d tensor of K coordinates, got shape {tuple(t.shape)}")

    def h(y: torch.Tensor) -> torch.Tensor:
        return ((y - t.to(device=y.device, dtype=y.dtype)) ** 2).sum(-1)

    return h


def category_values(h: Objective, logits: torch.Tensor) -> torch.Tensor:
    r"""The values :math:`v_k = h(e_k)` at the :math:`K` vertices of the simplex, shape ``(K,)``."""
    logits = _check_logits(logits)
    h = _check_h(h)
    eye = torch.eye(logits.shape[0], dtype=logits.dtype, device=logits.device)
    return _values(h, eye)


def objective(h: Objective, logits: torch.Tensor) -> torch.Tensor:
    r"""The exact objective by enumeration, :math:`L(\theta) = \sum_k \operatorname{softmax}(\theta)_k\, h(e_k)`.

    Differentiable in ``logits`` (autograd through the finite sum).
    """
    v = category_values(h, logits)
    return (torch.softmax(logits, -1) * v).sum()


def exact_gradient(h: Objective, logits: torch.Tensor) -> torch.Tensor:
    r"""The exact gradient of :math:`L` by enumeration of the :math:`K` categories.

    With :math:`\partial p_k / \partial \theta_j = p_k(\delta_{kj} - p_j)`,

    .. math::

        \frac{\partial L}{\partial \theta_j} = \sum_k v_k\, p_k (\delta_{kj} - p_j)
        = p_j \bigl(v_j - \textstyle\sum_k p_k v_k\bigr), \qquad v_k = h(e_k).

    Returns a tensor of shape ``(K,)`` without a graph.
    """
    with torch.no_grad():
        v = category_values(h, logits)
        p = torch.softmax(logits, -1)
        return p * (v - (p * v).sum())


def inverse_cdf_category(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""The categorical inverse CDF: the category :math:`k` with :math:`F_{k-1} < u \le F_k`.

    :math:`F_k = \sum_{j \le k} p_j` is the cumulative sum of
    :math:`p = \operatorname{softmax}(\theta)`; the result counts the :math:`F_k` below
    :math:`u`, :math:`k(\theta, u) = \#\{k < K-1 : F_k < u\}` (0-based). As a function of
    :math:`\theta` for fixed :math:`u` it is piecewise constant: a deterministic map from
    continuous noise to a category, with zero derivative wherever it is defined.

    Args:
        logits: shape ``(K,)``.
        u: uniform noise in :math:`(0, 1)`, any shape.

    Returns:
        Integer categories (``torch.long``) of ``u``'s shape.
    """
    logits = _check_logits(logits)
    u = check_finite("u", check_tensor("u", u))
    if bool(((u <= 0) | (u >= 1)).any()):
        raise ValueError(f"u must lie in the open interval (0, 1), got values in [{float(u.min())}, {float(u.max())}]")
    cdf = torch.cumsum(torch.softmax(logits.detach(), -1), -1)[:-1]
    u = u.to(device=logits.device, dtype=logits.dtype)
    return (u.unsqueeze(-1) > cdf).sum(-1)


def concrete_log_prob(logits: torch.Tensor, temperature, y: torch.Tensor) -> torch.Tensor:
    r"""Log-density of the Concrete (Gumbel-softmax) distribution (Maddison et al., 2017).

    For :math:`y = \operatorname{softmax}((\theta + g)/\tau)` with :math:`K` categories and
    :math:`\alpha = e^{\theta}`, the density of :math:`(y_1, \dots, y_{K-1})` on the
    simplex (Lebesgue measure; :math:`y_K = 1 - \sum_{k<K} y_k`) is

    .. math::

        p_{\theta,\tau}(y) = (K-1)!\, \tau^{K-1} \prod_{k=1}^K
        \frac{\alpha_k\, y_k^{-\tau-1}}{\sum_{i=1}^K \alpha_i\, y_i^{-\tau}} ,

    computed in log space (a log-sum-exp for the denominator). It equals
    ``torch.distributions.RelaxedOneHotCategorical(tau, logits=theta).log_prob(y)``.

    Args:
        logits: :math:`\theta`, shape ``(K,)``.
        temperature: :math:`\tau > 0`, a scalar.
        y: points of the open simplex, shape ``(..., K)``, entries in :math:`(0, 1)`.

    Returns:
        :math:`\log p_{\theta,\tau}(y)`, shape ``y.shape[:-1]``.
    """
    logits = _check_logits(logits)
    tau = _check_temperature(temperature, logits)
    y = check_finite("y", check_tensor("y", y))
    if y.shape[-1:] != logits.shape:
        raise ValueError(f"y must have last dimension K = {logits.shape[0]}, got shape {tuple(y.shape)}")
    if bool(((y <= 0) | (y >= 1)).any()):
        raise ValueError("y must lie in the open simplex: every entry in (0, 1)")
    k = logits.shape[0]
    log_y = y.log()
    log_alpha = logits.to(y) - torch.logsumexp(logits.to(y), -1)  # normalising alpha cancels
    tau = tau.to(y)
    return (
        math.lgamma(k) + (k - 1) * tau.log()
        + (log_alpha - (tau + 1) * log_y).sum(-1)
        - k * torch.logsumexp(log_alpha - tau * log_y, -1)
    )


# ----------------------------------------------------------------------------- estimators
def reinforce(h: Objective, logits: torch.Tensor, n_samples: int, baseline: estimators.Baseline = None) -> torch.Tensor:
    r"""Per-sample score-function (REINFORCE) estimates of :math:`\nabla_\theta L`.

    With :math:`k_i \sim \operatorname{softmax}(\theta)` and
    :math:`\nabla_\theta \log p_{k} = e_k - p`,

    .. math::

        \hat g_i = \bigl(h(e_{k_i}) - b_i\bigr)\,(e_{k_i} - p).

    Unbiased for every baseline :math:`b_i` independent of :math:`k_i`: ``None``
    (:math:`b_i = 0`), a number, or ``"loo"`` (the mean of the other samples' values).
    A thin wrapper of :func:`companion.estimators.score_function` with
    ``torch.distributions.Categorical``.

    Returns:
        Tensor ``(n_samples, K)`` on ``logits``' device.
    """
    v = category_values(h, logits).detach()
    n = check_positive_int("n_samples", n_samples)
    return estimators.score_function(
        lambda k: v[k], lambda theta: Categorical(logits=theta), logits.detach(), n, baseline=baseline
    )


def _pathwise_through_gumbel_softmax(h, logits, temperature, n_samples, hard: bool) -> torch.Tensor:
    logits = _check_logits(logits)
    h = _check_h(h)
    n = check_positive_int("n_samples", n_samples)
    tau = _check_temperature(temperature, logits)
    g = gumbel((n, logits.shape[0]), dtype=logits.dtype, device=logits.device)
    # One copy of the logits per sample: row i of the gradient is sample i's estimate,
    # because sample i's value depends on row i only. One backward pass for all samples.
    theta = logits.detach().expand(n, -1).clone().requires_grad_(True)
    y = gumbel_softmax(theta, tau, hard=hard, g=g)
    (grad,) = torch.autograd.grad(_values(h, y).sum(), theta)
    return grad


def relaxed(h: Objective, logits: torch.Tensor, temperature, n_samples: int) -> torch.Tensor:
    r"""Per-sample Gumbel-softmax (Concrete) pathwise estimates, at temperature :math:`\tau`.

    .. math::

        y_i = \operatorname{softmax}\bigl((\theta + g_i)/\tau\bigr), \qquad
        \hat g_i = \nabla_\theta\, h(y_i)
                 = \tfrac1\tau\bigl(\operatorname{diag}(y_i) - y_i y_i^\top\bigr)\nabla h(y_i).

    Unbiased for the gradient of the *relaxed* objective :math:`\mathbb E[h(y)]`, and so
    a biased estimate of :math:`\nabla_\theta L` for :math:`\tau > 0`; its variance grows
    as :math:`\tau \to 0`.

    Returns:
        Tensor ``(n_samples, K)`` on ``logits``' device.
    """
    return _pathwise_through_gumbel_softmax(h, logits, temperature, n_samples, hard=False)


def straight_through(h: Objective, logits: torch.Tensor, temperature, n_samples: int) -> torch.Tensor:
    r"""Per-sample straight-through Gumbel-softmax estimates (``hard=True``).

    The forward value is the one-hot :math:`z_i = e_{k_i}`,
    :math:`k_i = \arg\max_j(\theta_j + g_{ij})` (an exact sample), and the backward pass
    uses the soft sample's Jacobian:

    .. math::

        \hat g_i = \tfrac1\tau\bigl(\operatorname{diag}(y_i) - y_i y_i^\top\bigr)\nabla h(z_i).

    Biased (Bengio et al., 2013); for a linear :math:`h` it equals :func:`relaxed`
    sample by sample.

    Returns:
        Tensor ``(n_samples, K)`` on ``logits``' device.
    """
    return _pathwise_through_gumbel_softmax(h, logits, temperature, n_samples, hard=True)


# ----------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class BiasVariance:
    r"""Bias and variance of per-sample gradient estimates against an exact gradient.

    Attributes:
        bias: :math:`\lVert \bar g - \nabla L \rVert`, the Euclidean norm of the mean's error.
        bias_se: standard error of ``bias`` from the Monte Carlo noise,
            :math:`\sqrt{\operatorname{tr}\Sigma / N}` (the size of the error a zero-bias
            estimator would show with these samples).
        variance: :math:`\operatorname{tr}\Sigma`, the total variance of one sample's estimate.
        mse: :math:`\text{bias}^2 + \text{variance}`, one sample's mean squared error.
        cosine: :math:`\cos(\bar g, \nabla L)`, whether the mean estimate points the right way.
        n_samples: :math:`N`.
    """

    bias: float
    bias_se: float
    variance: float
    mse: float
    cosine: float
    n_samples: int


def bias_variance(estimates: torch.Tensor, exact: torch.Tensor) -> BiasVariance:
    r"""Bias, variance and mean squared error of per-sample gradient estimates.

    With rows :math:`\hat g_1, \dots, \hat g_N`, mean :math:`\bar g` and per-coordinate
    sample variances :math:`s_j^2`:

    .. math::

        \text{bias} = \lVert \bar g - \nabla L\rVert, \quad
        \text{variance} = \textstyle\sum_j s_j^2, \quad
        \text{bias\_se} = \sqrt{\text{variance}/N}, \quad
        \text{cosine} = \frac{\bar g^\top \nabla L}{\lVert \bar g\rVert\,\lVert \nabla L\rVert}.

    A bias below a few ``bias_se`` is indistinguishable from zero with these samples.
    """
    estimates = check_finite("estimates", check_tensor("estimates", estimates))
    exact = check_finite("exact", check_tensor("exact", exact))
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must have shape (n_samples >= 2, K), got {tuple(estimates.shape)}")
    if tuple(exact.shape) != tuple(estimates.shape[1:]):
        raise ValueError(f"exact must have shape {tuple(estimates.shape[1:])}, got {tuple(exact.shape)}")
    est = estimates.detach().to(torch.float64)
    n = est.shape[0]
    mean, exact = est.mean(0), exact.detach().to(est)
    bias = float((mean - exact).norm())
    variance = float(est.var(0).sum())
    cosine = float(torch.nn.functional.cosine_similarity(mean, exact, dim=0, eps=1e-30))
    return BiasVariance(
        bias=bias, bias_se=(variance / n) ** 0.5, variance=variance, mse=bias**2 + variance, cosine=cosine, n_samples=n
    )


# ----------------------------------------------------------------------------- optimisation
def anneal(step: int, *, start: float = 1.0, end: float = 0.1, rate: float = 0.01) -> float:
    r"""The exponential temperature schedule of Jang et al. (2017):
    :math:`\tau_t = \max\bigl(\tau_{end},\ \tau_{start}\, e^{-r t}\bigr)`."""
    step = check_positive_int("step", step, minimum=0)
    for name, value in (("start", start), ("end", end), ("rate", rate)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not (start > 0 and end > 0):
        raise ValueError(f"start and end must be > 0, got start={start!r}, end={end!r}")
    if not rate >= 0:
        raise ValueError(f"rate must be >= 0, got {rate!r}")
    return max(float(end), float(start) * float(torch.exp(torch.tensor(-float(rate) * step))))


def minimize(
    h: Objective,
    logits: torch.Tensor,
    estimator: str,
    *,
    steps: int,
    n_samples: int,
    lr: float = 0.1,
    temperature: Callable[[int], float] | float = 1.0,
) -> torch.Tensor:
    r"""Minimise :math:`L(\theta)` with Adam on an estimator's gradient; return the exact
    :math:`L(\theta_t)` after each step, shape ``(steps,)``.

    Args:
        h: the objective on the simplex (see :func:`quadratic`).
        logits: the starting :math:`\theta_0`, shape ``(K,)`` (not modified).
        estimator: ``"exact"``, ``"reinforce"``, ``"reinforce+loo"``, ``"relaxed"`` or
            ``"straight-through"``.
        steps: number of Adam steps.
        n_samples: samples per step; the step uses the mean of the per-sample estimates.
        lr: Adam's learning rate.
        temperature: :math:`\tau` for the Gumbel estimators: a number, or a function of
            the step (e.g. :func:`anneal`).
    """
    logits = _check_logits(logits)
    h = _check_h(h)
    choices = ("exact", "reinforce", "reinforce+loo", "relaxed", "straight-through")
    check_choice("estimator", estimator, choices)
    steps = check_positive_int("steps", steps)
    n = check_positive_int("n_samples", n_samples)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    schedule = temperature if callable(temperature) else (lambda _t: temperature)
    theta = logits.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=float(lr))
    losses = torch.empty(steps, dtype=logits.dtype)
    for t in range(steps):
        if estimator == "exact":
            grad = exact_gradient(h, theta.detach())
        elif estimator.startswith("reinforce"):
            grad = reinforce(h, theta.detach(), n, "loo" if estimator.endswith("loo") else None).mean(0)
        elif estimator == "relaxed":
            grad = relaxed(h, theta.detach(), schedule(t), n).mean(0)
        else:
            grad = straight_through(h, theta.detach(), schedule(t), n).mean(0)
        opt.zero_grad()
        theta.grad = grad.to(theta)
        opt.step()
        with torch.no_grad():
            losses[t] = objective(h, theta.detach()).cpu()
    return losses
