r"""Measure-valued gradient estimates: the third family of Monte Carlo gradients.

The derivative of a density with respect to one of its parameters :math:`\theta`
is a signed measure, and every signed measure is a constant times the
difference of two probability densities (the *weak derivative*, Pflug 1989;
Mohamed et al. 2020, section 6):

.. math::

    \begin{aligned}
    \partial_\theta p_\theta(x)
      &= c_\theta\,\bigl(p^+_\theta(x) - p^-_\theta(x)\bigr), \\
    \partial_\theta \mathbb E_{p_\theta}[f(x)]
      &= c_\theta\,\bigl(\mathbb E_{p^+_\theta}[f]
         - \mathbb E_{p^-_\theta}[f]\bigr).
    \end{aligned}

So one sample from each of :math:`p^+` and :math:`p^-` gives an unbiased
estimate :math:`c_\theta\,(f(x^+) - f(x^-))` that needs neither a differentiable
:math:`f` (unlike the pathwise estimator) nor a score (unlike the score
function). The decompositions used here (Mohamed et al. 2020, Table 1):

* Normal, loc :math:`\mu`: :math:`c = 1/(\sigma\sqrt{2\pi})`,
  :math:`p^+ = \mu + \sigma R`, :math:`p^- = \mu - \sigma R`;
* Normal, scale :math:`\sigma`: :math:`c = 1/\sigma`, :math:`p^+ = \mu + \sigma M`,
  :math:`p^- = \mathcal N(\mu, \sigma^2)`;
* Exponential, rate :math:`\lambda`: :math:`c = 1/\lambda`,
  :math:`p^+ = \operatorname{Exp}(\lambda)`, :math:`p^- = \operatorname{Gamma}(2, \lambda)`;
* Poisson, rate :math:`\lambda`: :math:`c = 1`, :math:`p^+ = 1 + \operatorname{Poisson}(\lambda)`,
  :math:`p^- = \operatorname{Poisson}(\lambda)`;
* Bernoulli, probs :math:`\pi`: :math:`c = 1`, :math:`p^+ = \delta_1`, :math:`p^- = \delta_0`;

with :math:`R` a standard Rayleigh variable (density :math:`r e^{-r^2/2}`, the
Weibull with shape 2 and scale :math:`\sqrt2`) and :math:`M` a standard
double-sided Maxwell variable (density :math:`m^2 \varphi(m)`).

**Coupling** (common random numbers): the positive and negative samples share
their randomness, which leaves the mean unchanged and, for smooth :math:`f`,
usually cuts the variance. Normal loc: the same :math:`R` in both. Normal scale:
:math:`x^+ = \mu + \sigma M` and :math:`x^- = \mu + \sigma U M` with
:math:`U \sim \mathcal U(0, 1)`, since :math:`UM \sim \mathcal N(0, 1)`.
Exponential: :math:`x^+ = E_1/\lambda`, :math:`x^- = (E_1 + E_2)/\lambda`.
Poisson: :math:`x^- = K`, :math:`x^+ = K + 1`. Bernoulli needs no randomness.

**Several coordinates.** For a distribution with several independent entries
(a batched ``Normal``, an ``Independent(Normal(...), 1)``, a vector of
Bernoullis), the derivative with respect to the parameter of entry :math:`j`
changes the law of :math:`x_j` only: :math:`x^\pm` equal one draw
:math:`x \sim p_\theta` except in entry :math:`j`. With ``coupling=True`` the
other entries are shared by :math:`x^+` and :math:`x^-`; with
``coupling=False`` the positive and negative samples are two independent draws.

**Cost.** Every scalar parameter of the distribution (``loc`` and ``scale`` of
each entry, ...) costs two evaluations of ``f`` per sample:
:func:`evaluations_per_sample` counts them. The pathwise and score-function
estimators cost one evaluation (plus a derivative) for the whole gradient.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Bernoulli, Distribution, Exponential, Independent, Normal, Poisson

from companion.estimators import _check_common, _check_values, _make_dist, _no_validation

__all__ = ["measure_valued", "evaluations_per_sample", "SUPPORTED"]

#: The distributions :func:`measure_valued` knows the weak derivative of.
SUPPORTED = ("Normal", "Exponential", "Poisson", "Bernoulli", "Independent")

_PARAMETERS = {Normal: ("loc", "scale"), Exponential: ("rate",), Poisson: ("rate",), Bernoulli: ("probs",)}


def _base(dist: Distribution) -> Distribution:
    """The distribution of the independent entries (``Independent`` only regroups them)."""
    while isinstance(dist, Independent):
        dist = dist.base_dist
    return dist


def _parameter_names(dist: Distribution) -> tuple[str, ...]:
    base = _base(dist)
    for kind, names in _PARAMETERS.items():
        if type(base) is kind:
            return names
    raise ValueError(
        f"measure_valued supports {', '.join(SUPPORTED)} (of Normal, Exponential, Poisson or "
        f"Bernoulli), got {type(dist).__name__}"
        + (f" of {type(base).__name__}" if base is not dist else "")
        + "; use companion.estimators.score_function for other distributions"
    )


def evaluations_per_sample(dist: Distribution) -> int:
    r"""Evaluations of ``f`` that :func:`measure_valued` spends per sample on ``dist``.

    Two (:math:`x^+` and :math:`x^-`) for each scalar parameter of the
    distribution: :math:`2 \times (\text{parameters per entry}) \times (\text{entries})`,
    e.g. :math:`4d` for a diagonal Gaussian in :math:`d` dimensions.
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
    names = _parameter_names(dist)
    entries = math.prod(_base(dist).batch_shape)
    return 2 * len(names) * entries


def _natural(dist_fn, p: torch.Tensor) -> torch.Tensor:
    """The distribution's natural parameters, stacked: shape ``(n_parameters, *batch_shape)``."""
    dist = _base(dist_fn(p))
    names = _PARAMETERS[type(dist)]
    return torch.stack([getattr(dist, name).expand(dist.batch_shape) for name in names])


def _uniform(n: int, dtype) -> torch.Tensor:
    """Uniform on the open interval (0, 1], safe under a logarithm."""
    return torch.rand(n, dtype=dtype).clamp_(min=torch.finfo(dtype).tiny)


def _natural_and_jacobian(dist_fn, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The natural parameters ``(n_natural, *batch_shape)`` and their Jacobian
    ``(n_natural * entries, theta.numel())`` with respect to ``theta``.

    One backward pass per natural parameter (once per call, not per sample).
    """
    q = theta.detach().clone().requires_grad_(True)
    with _no_validation():
        with torch.enable_grad():
            eta = _natural(dist_fn, q)
        flat = eta.reshape(-1)
        rows = []
        for k in range(flat.numel()):
            row = None
            if flat.requires_grad:
                (row,) = torch.autograd.grad(flat[k], q, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros(q.numel(), dtype=q.dtype) if row is None else row.reshape(-1))
    return eta.detach(), torch.stack(rows)


def _rayleigh(n: int, dtype) -> torch.Tensor:
    r"""Standard Rayleigh, :math:`R = \sqrt{-2\log U}` (density :math:`r e^{-r^2/2}`)."""
    return torch.sqrt(-2.0 * torch.log(_uniform(n, dtype)))


def _maxwell(n: int, dtype) -> torch.Tensor:
    r"""Standard double-sided Maxwell (density :math:`m^2\varphi(m)`).

    :math:`|M|` is a chi variable with 3 degrees of freedom,
    :math:`|M|^2 = -2\log U + Z_1^2` (a :math:`\chi^2_2` plus a :math:`\chi^2_1`),
    and its sign is the sign of an independent normal :math:`Z_2`.
    """
    z = torch.randn(2, n, dtype=dtype)
    magnitude = torch.sqrt(-2.0 * torch.log(_uniform(n, dtype)) + z[0] ** 2)
    return torch.where(z[1] < 0, -magnitude, magnitude)


def _exp1(n: int, dtype) -> torch.Tensor:
    return -torch.log(_uniform(n, dtype))


def _entry_draws(kind, name: str, value: torch.Tensor, other: dict, n: int, coupling: bool, dtype):
    """Per-sample weights ``c`` and entry values ``x+``, ``x-`` for one scalar parameter.

    ``value`` is the parameter (a scalar tensor); ``other`` the entry's
    other parameters. Returns ``(c, x_plus, x_minus)`` with ``x_pm`` of shape ``(n,)``.
    """
    if kind is Normal:
        loc, scale = other["loc"], other["scale"]
        if name == "loc":
            r_plus = _rayleigh(n, dtype)
            r_minus = r_plus if coupling else _rayleigh(n, dtype)
            c = 1.0 / (scale * math.sqrt(2.0 * math.pi))
            return c, loc + scale * r_plus, loc - scale * r_minus
        m = _maxwell(n, dtype)
        eps = torch.rand(n, dtype=dtype) * m if coupling else torch.randn(n, dtype=dtype)
        return 1.0 / scale, loc + scale * m, loc + scale * eps
    if kind is Exponential:
        e1 = _exp1(n, dtype)
        first = e1 if coupling else _exp1(n, dtype)
        return 1.0 / value, e1 / value, (first + _exp1(n, dtype)) / value
    if kind is Poisson:
        k_minus = torch.poisson(value.expand(n).clone())
        k_plus = (k_minus if coupling else torch.poisson(value.expand(n).clone())) + 1.0
        return torch.ones((), dtype=dtype), k_plus, k_minus
    # Bernoulli: d/dp p^x (1-p)^(1-x) = delta_1 - delta_0.
    return torch.ones((), dtype=dtype), torch.ones(n, dtype=dtype), torch.zeros(n, dtype=dtype)


def measure_valued(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    coupling: bool = True,
) -> torch.Tensor:
    r"""Per-sample measure-valued gradient estimates of :math:`\nabla_\theta \mathbb E_{p_\theta}[f(x)]`.

    For each scalar parameter :math:`\eta_k` of the distribution (``loc`` and
    ``scale`` of a Normal, ``rate``, ``probs``) with the weak derivative
    :math:`\partial_{\eta_k} p = c_k (p_k^+ - p_k^-)` (table in
    :mod:`companion.measure_valued`),

    .. math::

        \hat g_{i,k} = c_k\,\bigl(f(x^+_{i,k}) - f(x^-_{i,k})\bigr),
        \qquad x^+_{i,k} \sim p_k^+,\; x^-_{i,k} \sim p_k^-,

    and the gradient with respect to ``params`` follows by the chain rule through
    ``dist_fn``: :math:`\hat g_i^{\text{params}} = J^\top \hat g_i` with
    :math:`J = \partial \eta / \partial\,\text{params}` (for example
    ``Normal(p[0], p[1].exp())`` multiplies the scale's entry by
    :math:`\sigma`). ``Bernoulli`` built from ``logits`` is handled the same way,
    through ``probs``.

    Args:
        f: batch of samples ``(n_samples, ...)`` to values ``(n_samples,)``; need not
            be differentiable, and ``x`` may be discrete. Called
            :func:`evaluations_per_sample` / 2 times with ``n_samples`` positive and as
            many times with ``n_samples`` negative samples.
        dist_fn: parameters to a ``Normal``, ``Exponential``, ``Poisson`` or
            ``Bernoulli`` (any batch shape), or an ``Independent`` of one of them.
        params: the floating-point parameter tensor.
        n_samples: the number of samples :math:`N \ge 1`.
        coupling: share the randomness of :math:`x^+` and :math:`x^-` (common random
            numbers, the default) or draw them independently.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)`` on ``params``' device.
    """
    n = _check_common(f, dist_fn, params, n_samples)
    if not isinstance(coupling, bool):
        raise TypeError(f"coupling must be a bool, got {coupling!r} of type {type(coupling).__name__}")
    device, dtype = params.device, params.dtype
    theta = params.detach().to("cpu")
    dist = _make_dist(dist_fn, theta)
    names = _parameter_names(dist)
    base = _base(dist)
    kind = type(base)

    dtype_work = theta.dtype
    eta, jac = _natural_and_jacobian(dist_fn, theta)  # (K, *batch), (K * entries, P)
    batch_shape = base.batch_shape
    entries = math.prod(batch_shape)
    eta = eta.reshape(len(names), entries)

    shape = (n,) + tuple(dist.batch_shape) + tuple(dist.event_shape)  # = (n, *batch_shape)
    sample_dtype = dist.mean.dtype
    flat = None
    if entries > 1:  # the entries that are not perturbed come from one draw of p
        with torch.no_grad():
            flat = dist.sample((n,)).reshape(n, entries).to(dtype_work)
    estimates = torch.empty(n, len(names), entries, dtype=dtype_work)
    for j in range(entries):
        other = {name: eta[a, j] for a, name in enumerate(names)}
        for a, name in enumerate(names):
            c, x_plus, x_minus = _entry_draws(kind, name, eta[a, j], other, n, coupling, dtype_work)
            if flat is None:
                plus, minus = x_plus, x_minus
            else:
                plus = flat.clone()
                plus[:, j] = x_plus
                if coupling:
                    minus = flat.clone()
                else:
                    with torch.no_grad():
                        minus = dist.sample((n,)).reshape(n, entries).to(dtype_work)
                minus[:, j] = x_minus
            plus = plus.to(sample_dtype).reshape(shape)
            minus = minus.to(sample_dtype).reshape(shape)
            f_plus = _check_values(f(plus.to(device)), n)
            f_minus = _check_values(f(minus.to(device)), n)
            diff = f_plus.detach() - f_minus.detach()
            estimates[:, a, j] = c * diff.to("cpu", dtype_work)
    grads = estimates.reshape(n, -1) @ jac
    return grads.reshape((n,) + tuple(params.shape)).to(device=device, dtype=dtype)
