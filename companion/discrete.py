r"""Unbiased, lower-variance gradients for independent Bernoulli variables.

For :math:`b_j \sim \operatorname{Bernoulli}(\sigma(\theta_j))` independent (``logits``
:math:`\theta` of any shape) these functions estimate
:math:`\nabla_\theta \mathbb E[f(b)]` without bias:

* :func:`arm` (Yin and Zhou, 2019) and :func:`disarm` (Dong, Mnih and Tucker, 2020):
  an antithetic pair of samples, two evaluations of :math:`f` per estimate;
* :func:`rebar` (Tucker et al., 2017): the score function with the continuous
  relaxation, evaluated at a relaxed sample drawn *given* the discrete one, as its
  control variate; three evaluations of :math:`f` per estimate;
* :func:`relax` (Grathwohl et al., 2018): the same with any (learned) control
  variate :math:`c(z)` in place of the relaxation of :math:`f`.

They follow the package's per-sample contract (:mod:`companion.estimators`): the
result has shape ``(n_samples, *logits.shape)``, row :math:`i` the estimate from
the :math:`i`-th draw of the noise, ``.mean(0)`` the estimate. All noise is drawn
on the CPU from torch's global generator, then moved to ``logits``' device.

``f`` maps a batch of samples shaped ``(n_samples, *logits.shape)`` to
``n_samples`` values. It may instead return shape
``(n_samples, *logits.shape[:m])`` for some :math:`m \ge 1`: the leading ``m``
dimensions of ``logits`` are then independent problems (for example one per seed
or per data point), value ``[i, s]`` depending only on sample ``i``'s entries
``[i, s]``; each problem's gradient is then estimated as if it were alone.
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch
import torch.nn.functional as F

from companion.device import _uniform_open
from companion.validation import as_tensor, check_finite, check_positive, check_positive_int, check_tensor

__all__ = ["arm", "disarm", "rebar", "relax", "conditional_logistic"]

Objective = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- checks
def _check(f, logits, n_samples) -> tuple[torch.Tensor, int]:
    if not callable(f):
        raise TypeError(f"f must be callable, got {f!r} of type {type(f).__name__}")
    logits = check_finite("logits", check_tensor("logits", logits))
    return logits.detach(), check_positive_int("n_samples", n_samples)


def _values(name: str, values, n: int, logits: torch.Tensor) -> torch.Tensor:
    """Check ``values`` and reshape it to broadcast against ``(n, *logits.shape)``."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(values).__name__}")
    shape = tuple(values.shape)
    allowed = [(n,) + tuple(logits.shape[:m]) for m in range(logits.dim() + 1)]
    if shape not in allowed:
        raise ValueError(
            f"{name} must map a batch of n_samples={n} samples of shape {tuple(logits.shape)} to a "
            f"tensor of shape ({n},) (or ({n}, *logits.shape[:m]) for independent problems); "
            f"it returned shape {shape}"
        )
    if not values.is_floating_point():
        values = values.to(logits.dtype)
    return values.reshape(shape + (1,) * (logits.dim() + 1 - len(shape)))


def _uniform(n: int, logits: torch.Tensor) -> torch.Tensor:
    return _uniform_open((n,) + tuple(logits.shape), None, logits.device, logits.dtype)  # checked by the caller


# --------------------------------------------------------------------------- ARM, DisARM
def _antithetic_pair(logits: torch.Tensor, u: torch.Tensor):
    # b = 1[u < sigma(theta)] and its antithetic partner b~ = 1[1 - u < sigma(theta)];
    # u < sigma(theta)  <=>  logit(u) < theta, compared in logit space (exact at extremes).
    lu = torch.logit(u)
    b = (lu < logits).to(logits.dtype)
    b_tilde = (-lu < logits).to(logits.dtype)
    return b, b_tilde


def _evaluated_pair(f, logits: torch.Tensor, n: int):
    """ARM's antithetic pair from one uniform draw, and f at both: (u, b, b~, f(b), f(b~))."""
    u = _uniform(n, logits)
    b, b_tilde = _antithetic_pair(logits, u)
    with torch.no_grad():
        fb = _values("f", f(b), n, logits)
        fbt = _values("f", f(b_tilde), n, logits)
    return u, b, b_tilde, fb, fbt


def arm(f: Objective, logits: torch.Tensor, n_samples: int) -> torch.Tensor:
    r"""Per-sample ARM (augment-REINFORCE-merge) gradient estimates (Yin and Zhou, 2019).

    With :math:`u \sim \mathcal U(0, 1)^d`, :math:`b = \mathbb 1[u < \sigma(\theta)]` and its
    antithetic partner :math:`\tilde b = \mathbb 1[1 - u < \sigma(\theta)]` (each marginally
    :math:`\operatorname{Bernoulli}(\sigma(\theta))`),

    .. math::

        \hat g_j = \bigl(f(\tilde b) - f(b)\bigr)\,\bigl(u_j - \tfrac12\bigr),
        \qquad \mathbb E[\hat g] = \nabla_\theta \mathbb E_{b}[f(b)] .

    Derivation: augment :math:`b = \mathbb 1[u < \sigma(\theta)]`, write the score function
    in :math:`u` for logistic noise, and average it with its antithetic copy
    (:math:`u \to 1 - u`). Costs two evaluations of :math:`f` per estimate, no derivative of
    :math:`f`.

    Args:
        f: binary samples ``(n_samples, *logits.shape)`` (floats 0/1) to ``(n_samples,)``.
        logits: :math:`\theta`, finite, any shape.
        n_samples: number of estimates :math:`N \ge 1` (:math:`2N` evaluations of ``f``).

    Returns:
        Tensor of shape ``(n_samples, *logits.shape)`` on ``logits``' device.
    """
    logits, n = _check(f, logits, n_samples)
    u, b, b_tilde, fb, fbt = _evaluated_pair(f, logits, n)
    return (fbt - fb) * (u - 0.5)


def disarm(f: Objective, logits: torch.Tensor, n_samples: int) -> torch.Tensor:
    r"""Per-sample DisARM gradient estimates (Dong, Mnih and Tucker, 2020).

    The same antithetic pair as :func:`arm`, with the ARM estimate averaged
    analytically over the noise :math:`u` that gives the same pair :math:`(b, \tilde b)`
    (Rao-Blackwellisation):

    .. math::

        \hat g_j = \tfrac12 \bigl(f(b) - f(\tilde b)\bigr)\,(-1)^{\tilde b_j}\,
                   \mathbb 1[b_j \ne \tilde b_j]\,\sigma(|\theta_j|) .

    Being a conditional expectation of ARM's estimate, its variance is never larger
    than ARM's, and it is zero in every coordinate where the pair agrees. Same cost as
    :func:`arm`: two evaluations of :math:`f`.

    Returns:
        Tensor of shape ``(n_samples, *logits.shape)`` on ``logits``' device.
    """
    logits, n = _check(f, logits, n_samples)
    _, b, b_tilde, fb, fbt = _evaluated_pair(f, logits, n)
    sign = 1.0 - 2.0 * b_tilde
    return 0.5 * (fb - fbt) * sign * (b != b_tilde).to(logits.dtype) * torch.sigmoid(logits.abs())


# --------------------------------------------------------------------------- REBAR, RELAX
def conditional_logistic(logits: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""The relaxation variable :math:`\tilde z \sim p(z \mid b)`, reparameterized by :math:`v`.

    :math:`z = \theta + \log u - \log(1 - u)` with :math:`u \sim \mathcal U(0, 1)` is
    logistic, and :math:`b = \mathbb 1[z > 0] \sim \operatorname{Bernoulli}(\sigma(\theta))`.
    Given :math:`b`, :math:`u` is uniform on :math:`(1 - p, 1)` when :math:`b = 1` and on
    :math:`(0, 1 - p)` when :math:`b = 0` (:math:`p = \sigma(\theta)`). Writing
    :math:`u = 1 - p + v p` or :math:`u = v (1 - p)` with :math:`v \sim \mathcal U(0, 1)`
    and simplifying,

    .. math::

        \tilde z = \begin{cases}
            \operatorname{softplus}\bigl(\operatorname{logit} v + \operatorname{softplus}(\theta)\bigr) & b = 1,\\
            -\operatorname{softplus}\bigl(-\operatorname{logit} v + \operatorname{softplus}(-\theta)\bigr) & b = 0,
        \end{cases}

    a differentiable function of :math:`\theta` for fixed :math:`(b, v)`, finite for any
    finite :math:`\theta`. All three tensors broadcast together.
    """
    lv = torch.logit(v)
    one = F.softplus(lv + F.softplus(logits))
    zero = -F.softplus(-lv + F.softplus(-logits))
    return torch.where(b > 0.5, one, zero)


def _relax(f: Objective, logits: torch.Tensor, n: int, control, create_graph: bool) -> torch.Tensor:
    """The shared REBAR/RELAX estimator (arguments already checked)."""
    u = _uniform(n, logits)
    v = _uniform(n, logits)
    # One copy of theta per sample: sample i depends on row i only, so one backward
    # pass of the summed values gives every sample's own gradient.
    theta = logits.expand((n,) + tuple(logits.shape)).clone().requires_grad_(True)
    with torch.enable_grad():
        z = theta + torch.logit(u)
        b = (z.detach() > 0).to(logits.dtype)
        z_tilde = conditional_logistic(theta, b, v)
        with torch.no_grad():
            fb = _values("f", f(b), n, logits)
        c_z = _values("control", control(z), n, logits)
        c_zt = _values("control", control(z_tilde), n, logits)
        (d_control,) = torch.autograd.grad(
            (c_z - c_zt).sum(), theta, create_graph=create_graph, allow_unused=True
        )
    if d_control is None:  # a control that ignores z
        d_control = torch.zeros_like(theta)
    score = b - torch.sigmoid(logits)  # d/d theta log Bernoulli(b; sigmoid(theta))
    weight = fb - (c_zt if create_graph else c_zt.detach())
    g = weight * score + d_control
    return g if create_graph else g.detach()


def rebar(
    f: Objective,
    logits: torch.Tensor,
    n_samples: int,
    temperature=0.5,
    eta=1.0,
) -> torch.Tensor:
    r"""Per-sample REBAR gradient estimates (Tucker et al., 2017).

    Draw logistic :math:`z = \theta + \operatorname{logit} u`, set :math:`b = \mathbb 1[z > 0]`,
    and draw :math:`\tilde z \sim p(z \mid b)` by :func:`conditional_logistic` (fresh uniform
    :math:`v`). With the relaxed sample :math:`\sigma_\lambda(z) = \sigma(z / \lambda)`,

    .. math::

        \hat g = \bigl[f(b) - \eta f(\sigma_\lambda(\tilde z))\bigr]
                 \nabla_\theta \log p(b \mid \theta)
               + \eta \nabla_\theta f(\sigma_\lambda(z))
               - \eta \nabla_\theta f(\sigma_\lambda(\tilde z)),

    with :math:`\nabla_\theta \log p(b \mid \theta) = b - \sigma(\theta)`. Unbiased for every
    temperature :math:`\lambda > 0` and every :math:`\eta`: the last two terms have the same
    expectation as :math:`\eta\,\nabla_\theta \mathbb E[f(\sigma_\lambda(z))]`, which is what
    the score term's control variate removes (by the tower rule over :math:`b`). Costs three
    evaluations of :math:`f` (one at :math:`b`, two at relaxed samples) and one backward
    pass through :math:`f`.

    Args:
        f: must accept binary samples and relaxed ones in :math:`(0, 1)`, shape
            ``(n_samples, *logits.shape)``, and be differentiable at the relaxed ones.
        logits: :math:`\theta`, finite, any shape.
        n_samples: number of estimates.
        temperature: :math:`\lambda > 0`.
        eta: the control variate's scale :math:`\eta`, any finite number.

    Returns:
        Tensor of shape ``(n_samples, *logits.shape)`` on ``logits``' device.
    """
    logits, n = _check(f, logits, n_samples)
    lam = check_positive("temperature", as_tensor("temperature", temperature, like=logits))
    if isinstance(eta, bool) or not isinstance(eta, (numbers.Real, torch.Tensor)):
        raise TypeError(f"eta must be a number, got {eta!r} of type {type(eta).__name__}")
    eta_t = check_finite("eta", as_tensor("eta", eta, like=logits))

    def control(z):
        return eta_t * f(torch.sigmoid(z / lam))

    return _relax(f, logits, n, control, create_graph=False)


def relax(
    f: Objective,
    logits: torch.Tensor,
    n_samples: int,
    control: Callable[[torch.Tensor], torch.Tensor],
    *,
    create_graph: bool = False,
) -> torch.Tensor:
    r"""Per-sample RELAX gradient estimates (Grathwohl et al., 2018): one step, any control.

    As :func:`rebar` with :math:`\eta f(\sigma_\lambda(\cdot))` replaced by a differentiable
    control variate :math:`c_\phi(z)` of the logistic relaxation variable:

    .. math::

        \hat g = \bigl[f(b) - c_\phi(\tilde z)\bigr] \nabla_\theta \log p(b \mid \theta)
               + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z) .

    Unbiased for every :math:`c_\phi`. RELAX chooses :math:`\phi` to minimise the
    variance, :math:`\nabla_\phi \mathbb E\lVert\hat g\rVert^2 = \mathbb E[2\hat g^\top
    \partial_\phi \hat g]` (the mean does not depend on :math:`\phi`): pass
    ``create_graph=True`` and the returned estimates keep their graph to :math:`\phi`, so
    ``(g.mean(0) ** 2).sum().backward()`` trains the control. Evaluates :math:`f` once (at
    :math:`b`) and :math:`c_\phi` twice.

    Args:
        f: binary samples to values, as in :func:`arm` (need not be differentiable).
        logits: :math:`\theta`, finite, any shape.
        n_samples: number of estimates.
        control: :math:`c_\phi`, maps :math:`z` shaped ``(n_samples, *logits.shape)`` to
            values shaped as ``f``'s, differentiably.
        create_graph: keep the graph to the control's parameters.

    Returns:
        Tensor of shape ``(n_samples, *logits.shape)`` on ``logits``' device.
    """
    logits, n = _check(f, logits, n_samples)
    if not callable(control):
        raise TypeError(f"control must be callable, got {control!r} of type {type(control).__name__}")
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be a bool, got {create_graph!r}")
    return _relax(f, logits, n, control, create_graph=create_graph)
