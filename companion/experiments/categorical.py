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
variance against it (:func:`companion.stats.bias_estimate`).

The estimators are named by their canonical names (:mod:`companion.catalogue`) and all
return **per-sample gradient estimates**, shape ``(n_samples, K)``, like
:mod:`companion.estimators`:

* :func:`score_function`: unbiased, with or without a baseline (a thin wrapper of
  :func:`companion.estimators.score_function`).
* :func:`gumbel_softmax`: the Gumbel-softmax (Concrete) pathwise gradient of the
  *relaxed* objective :math:`\mathbb E[h(y)]`,
  :math:`y = \operatorname{softmax}((\theta+g)/\tau)`; biased for :math:`\tau > 0`.
* :func:`straight_through`: one-hot forward, soft backward (``hard=True``); biased.

All noise is drawn on the CPU from torch's global generator (seed it with
:func:`companion.device.setup` or ``torch.manual_seed``) and moved to the logits'
device.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Categorical

from companion import estimators
from companion import gumbel as _gumbel
from companion.validation import check_real, check_finite, check_positive_int, check_tensor

__all__ = [
    "quadratic",
    "linear",
    "category_values",
    "objective",
    "expectation_gradient",
    "exact_gradient",
    "inverse_cdf_category",
    "concrete_log_prob",
    "score_function",
    "gumbel_softmax",
    "straight_through",
    "anneal",
]

Objective = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- checks
def _check_logits(logits, *, batched: bool = False) -> torch.Tensor:
    """Finite floating logits over K >= 2 categories: shape ``(K,)``, or ``(..., K)`` if
    ``batched`` (rows of independent problems)."""
    logits = check_tensor("logits", logits)
    if (logits.dim() != 1 and not batched) or logits.dim() < 1 or logits.shape[-1] < 2:
        want = "a tensor (..., K)" if batched else "a 1-d tensor"
        raise ValueError(f"logits must be {want} of K >= 2 categories, got shape {tuple(logits.shape)}")
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


def _check_temperature(temperature, logits: torch.Tensor) -> torch.Tensor:
    """The library's temperature check (:func:`companion.gumbel.check_temperature`), and
    one temperature for all categories: a scalar."""
    tau = _gumbel.check_temperature(temperature, logits)
    if tau.dim() != 0:
        raise ValueError(f"temperature must be a scalar, got shape {tuple(tau.shape)}")
    return tau


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


def expectation_gradient(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    r"""The gradient of :math:`\mathbb E_{k \sim \operatorname{softmax}(\theta)}[v_k]
    = \sum_k p_k v_k` in the logits: with :math:`\partial p_k / \partial \theta_j
    = p_k(\delta_{kj} - p_j)`,

    .. math::

        \frac{\partial}{\partial \theta_j} \sum_k p_k v_k = p_j \bigl(v_j - \textstyle\sum_k p_k v_k\bigr).

    The one implementation of this policy gradient in the package (the toy objective
    here, a bandit's arms in chapter 2).

    Args:
        logits: :math:`\theta`, shape ``(..., K)``: each row an independent problem.
        values: :math:`v`, shape ``(K,)`` or broadcastable to ``logits``.

    Returns:
        Shape ``logits.shape``, no graph.
    """
    logits = _check_logits(logits, batched=True)
    values = check_finite("values", check_tensor("values", values))
    return _expectation_gradient(logits, values)


def _expectation_gradient(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """:func:`expectation_gradient` on checked arguments."""
    with torch.no_grad():
        p = torch.softmax(logits.detach(), -1)
        v = values.detach().to(p)
        return p * (v - (p * v).sum(-1, keepdim=True))


def exact_gradient(h: Objective, logits: torch.Tensor) -> torch.Tensor:
    r"""The exact gradient of :math:`L` by enumeration of the :math:`K` categories:
    :func:`expectation_gradient` of the values :math:`v_k = h(e_k)`,

    .. math::

        \frac{\partial L}{\partial \theta_j} = p_j \bigl(v_j - \textstyle\sum_k p_k v_k\bigr).

    Returns a tensor of shape ``(K,)`` without a graph.
    """
    with torch.no_grad():
        return expectation_gradient(logits, category_values(h, logits))


def inverse_cdf_category(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""The categorical inverse CDF: the category :math:`k` with :math:`F_{k-1} < u \le F_k`.

    :math:`F_k = \sum_{j \le k} p_j` is the cumulative sum of
    :math:`p = \operatorname{softmax}(\theta)`; the result counts the :math:`F_k` below
    :math:`u`, :math:`k(\theta, u) = \#\{k < K-1 : F_k < u\}` (0-based). As a function of
    :math:`\theta` for fixed :math:`u` it is piecewise constant: a deterministic map from
    continuous noise to a category, with zero derivative wherever it is defined. The one
    sampler of a category by inverse CDF in the package (a bandit's arms are drawn the
    same way).

    Args:
        logits: shape ``(K,)``, or ``(..., K)`` for independent rows.
        u: uniform noise in :math:`(0, 1)`: any shape for 1-d ``logits``; for rows,
            shape ``(..., m)`` with ``logits``' leading dimensions (``m`` draws per row).

    Returns:
        Integer categories (``torch.long``) of ``u``'s shape, on ``logits``' device.
    """
    logits = _check_logits(logits, batched=True)
    u = check_finite("u", check_tensor("u", u))
    if bool(((u <= 0) | (u >= 1)).any()):
        raise ValueError(f"u must lie in the open interval (0, 1), got values in [{float(u.min())}, {float(u.max())}]")
    if logits.dim() > 1 and (u.dim() != logits.dim() or u.shape[:-1] != logits.shape[:-1]):
        raise ValueError(f"u must have shape (..., m) with logits' leading shape {tuple(logits.shape[:-1])}, "
                         f"got {tuple(u.shape)}")
    cdf = torch.cumsum(torch.softmax(logits.detach(), -1), -1)[..., :-1]
    u = u.to(device=logits.device, dtype=logits.dtype)
    if logits.dim() == 1:
        return (u.unsqueeze(-1) > cdf).sum(-1)
    return torch.searchsorted(cdf.contiguous(), u.contiguous())  # how many F_k < u


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
def score_function(h: Objective, logits: torch.Tensor, n_samples: int, baseline: estimators.Baseline = None
                   ) -> torch.Tensor:
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
    """Per-sample estimates ``(..., n, K)`` for logits ``(..., K)`` (rows independent)."""
    logits = _check_logits(logits, batched=True)
    h = _check_h(h)
    n = check_positive_int("n_samples", n_samples)
    tau = _check_temperature(temperature, logits)
    return _pathwise(h, logits, tau, n, hard)


def _pathwise(h: Objective, logits: torch.Tensor, tau, n: int, hard: bool) -> torch.Tensor:
    """:func:`gumbel_softmax` (``hard=False``) or :func:`straight_through` on checked
    arguments, logits ``(..., K)`` to estimates ``(..., n, K)``."""
    k = logits.shape[-1]
    shape = tuple(logits.shape[:-1]) + (n, k)
    g = _gumbel.gumbel(shape, dtype=logits.dtype, device=logits.device)
    # One copy of the logits per sample: row i of the gradient is sample i's estimate,
    # because sample i's value depends on row i only. One backward pass for all samples.
    theta = logits.detach().unsqueeze(-2).expand(shape).clone().requires_grad_(True)
    y = _gumbel.gumbel_softmax(theta, tau, hard=hard, g=g)
    (grad,) = torch.autograd.grad(_values(h, y.reshape(-1, k)).sum(), theta)
    return grad


def gumbel_softmax(h: Objective, logits: torch.Tensor, temperature, n_samples: int) -> torch.Tensor:
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

    Biased (Bengio et al., 2013); for a linear :math:`h` it equals :func:`gumbel_softmax`
    sample by sample.

    Returns:
        Tensor ``(n_samples, K)`` on ``logits``' device.
    """
    return _pathwise_through_gumbel_softmax(h, logits, temperature, n_samples, hard=True)


# ----------------------------------------------------------------------------- optimisation
def anneal(step: int, *, start: float = 1.0, end: float = 0.1, rate: float = 0.01) -> float:
    r"""The exponential temperature schedule of Jang et al. (2017):
    :math:`\tau_t = \max\bigl(\tau_{end},\ \tau_{start}\, e^{-r t}\bigr)`."""
    step = check_positive_int("step", step, minimum=0)
    start, end = check_real("start", start, positive=True), check_real("end", end, positive=True)
    rate = check_real("rate", rate, nonnegative=True)
    return max(float(end), float(start) * float(torch.exp(torch.tensor(-float(rate) * step))))
