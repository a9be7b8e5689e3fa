r"""Multi-sample bounds and their gradients: IWAE, VIMCO, sticking the landing, DReG.

For a latent-variable model with joint density :math:`p(x, z)` and a variational
distribution :math:`q_\theta(z)` (``q_fn(params)``), draw :math:`z_1, \dots, z_k`
independently from :math:`q_\theta` and form the importance weights
:math:`w_j = p(x, z_j) / q_\theta(z_j)`. The :math:`k`-sample bound
:cite:p:`burda2016` is

.. math::

    \mathcal L_k(\theta) = \mathbb E\Bigl[\log \frac1k \sum_{j=1}^k w_j\Bigr]
    \le \log p(x),

the ELBO when :math:`k = 1`, nondecreasing in :math:`k` and tending to
:math:`\log p(x)` as :math:`k \to \infty` (when the weights have a finite mean).

Conventions:

* ``q_fn(params)`` returns a ``torch.distributions.Distribution``; one *latent* is
  one draw from it, of shape ``batch_shape + event_shape``, and its log-density is
  ``log_prob`` summed over ``batch_shape`` (independent coordinates of one latent).
  It is called with ``params`` on the **CPU**, where all noise is drawn (see
  :mod:`companion.device`); latents are moved to ``params``' device for
  ``log_joint``.
* ``log_joint(z)`` maps a batch of latents, batch dimensions first, then the
  latent's shape, to :math:`\log p(x, z)`, one value per latent (shape: the batch
  dimensions). It must be written with ordinary tensor operations, because
  :func:`elbo_gradient` calls it inside ``torch.func.vmap``: no ``.item()``, no
  branching on tensor values.
* Both functions return ``n_samples`` independent estimates, each from its own
  :math:`k` draws: ``.mean(0)`` is the Monte Carlo estimate, ``.var(0)`` the
  variance of one estimate.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch.distributions import Distribution
from torch.func import grad, jacfwd, vmap

from companion.validation import check_choice, check_finite, check_positive_int, check_tensor

__all__ = ["iwae_bound", "elbo_gradient", "GRADIENTS"]

#: The gradient estimators :func:`elbo_gradient` offers.
GRADIENTS = ("reparam", "stl", "dreg", "score")


def _check_args(log_joint, q_fn, params, n_samples, k) -> tuple[int, int, Distribution]:
    if not callable(log_joint):
        raise TypeError(f"log_joint must be callable, got {log_joint!r} of type {type(log_joint).__name__}")
    if not callable(q_fn):
        raise TypeError(f"q_fn must be callable, got {q_fn!r} of type {type(q_fn).__name__}")
    check_tensor("params", params)
    check_finite("params", params)
    n = check_positive_int("n_samples", n_samples)
    k = check_positive_int("k", k)
    theta = params.detach().to("cpu")
    try:
        q = q_fn(theta)
    except ValueError as err:
        raise ValueError(f"q_fn(params) rejected params={theta.tolist()}: {err}") from err
    if not isinstance(q, Distribution):
        raise TypeError(f"q_fn must return a torch.distributions.Distribution, got {type(q).__name__}")
    return n, k, q


def _latent_log_q(q: Distribution, z: torch.Tensor, n_batch: int) -> torch.Tensor:
    """``log q(z)`` of latents with ``n_batch`` leading batch dimensions, summed over q's batch shape."""
    lq = q.log_prob(z)
    return lq.flatten(n_batch).sum(-1) if lq.dim() > n_batch else lq


def _call_log_joint(log_joint, z: torch.Tensor, batch: tuple[int, ...], device) -> torch.Tensor:
    """``log_joint`` of latents ``z`` (on the CPU), checked to return one value per latent."""
    values = log_joint(z.to(device))
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"log_joint must return a torch.Tensor, got {type(values).__name__}")
    if tuple(values.shape) != batch:
        raise ValueError(
            f"log_joint must map latents of shape {tuple(z.shape)} (batch dimensions {batch} first) "
            f"to one value per latent, shape {batch}; it returned shape {tuple(values.shape)}"
        )
    return values.to("cpu")


def _log_mean_exp(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def _check_log_weights(log_w: torch.Tensor) -> None:
    if bool(torch.isnan(log_w).any()):
        raise ValueError("log_joint returned NaN for some latents: the log-weights log p(x, z) - log q(z) are NaN")
    if bool((log_w == float("inf")).any()):
        raise ValueError("log_joint returned +inf for some latents: the bound is infinite")


def iwae_bound(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    q_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    k: int,
) -> torch.Tensor:
    r"""``n_samples`` independent estimates of the :math:`k`-sample (importance-weighted) bound.

    Estimate :math:`i` draws its own :math:`z_{i1}, \dots, z_{ik} \sim q_\theta` and returns

    .. math::

        \hat{\mathcal L}_{k,i} = \log \frac1k \sum_{j=1}^k
          \exp\bigl(\log p(x, z_{ij}) - \log q_\theta(z_{ij})\bigr),

    computed as ``logsumexp - log k`` (finite even when every weight underflows).
    Its mean is :math:`\mathcal L_k \le \log p(x)`; with :math:`k = 1` it is the
    one-sample ELBO estimate. No gradient is tracked.

    Raises:
        ValueError: bad ``n_samples``/``k``, non-finite ``params``, or a
            ``log_joint`` that returns the wrong shape, NaN or :math:`+\infty`.

    Returns:
        Tensor of shape ``(n_samples,)`` on ``params``' device.
    """
    n, k, q = _check_args(log_joint, q_fn, params, n_samples, k)
    with torch.no_grad():
        z = q.sample((n, k))
        log_w = _call_log_joint(log_joint, z, (n, k), params.device) - _latent_log_q(q, z, 2)
        _check_log_weights(log_w)
        return _log_mean_exp(log_w, -1).to(params.device)


def elbo_gradient(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    q_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    k: int = 1,
    gradient: str = "reparam",
) -> torch.Tensor:
    r"""Per-estimate gradients of the :math:`k`-sample bound :math:`\mathcal L_k` with respect to ``params``.

    Each of the ``n_samples`` estimates uses its own :math:`k` draws. Write
    :math:`\log w_j = \log p(x, z_j) - \log q_\theta(z_j)` and
    :math:`\tilde w_j = w_j / \sum_l w_l` (the normalised weights, treated as
    constants by the gradient), :math:`z_j = g_\theta(\varepsilon_j)` for the pathwise
    variants (``rsample``). Then ``gradient`` selects:

    * ``"reparam"``: autograd through the bound,
      :math:`\hat g = \nabla_\theta \log \frac1k \sum_j w_j
      = \sum_j \tilde w_j \nabla_\theta \log w_j\bigl(g_\theta(\varepsilon_j)\bigr)`;
      unbiased for :math:`\nabla \mathcal L_k`.
    * ``"stl"`` (sticking the landing, :cite:t:`roeder2017`): the same with the
      parameters inside :math:`\log q` held fixed, only the path through
      :math:`z` kept,

      .. math::

          \hat g = \sum_j \tilde w_j\,
          \Bigl(\frac{\partial z_j}{\partial\theta}\Bigr)^{\!\top}
          \nabla_z\bigl[\log p(x, z) - \log q_{\theta'}(z)\bigr]_{z = z_j,\ \theta' = \theta}.

      For :math:`k = 1` it drops the term :math:`-\nabla_\theta \log q_\theta(z)`,
      whose mean is zero, so it stays unbiased; it is **biased** for :math:`k > 1`.
      When :math:`q_\theta` is the exact posterior, :math:`\log p(x, z) - \log q(z)
      = \log p(x)` for every :math:`z`, the bracket's gradient vanishes and every
      estimate is exactly zero.
    * ``"dreg"`` (doubly reparameterized, :cite:t:`tucker2019`): the same path
      derivative with squared weights,

      .. math::

          \hat g = \sum_j \tilde w_j^{\,2}
          \Bigl(\frac{\partial z_j}{\partial\theta}\Bigr)^{\!\top}
          \nabla_z\bigl[\log p(x, z) - \log q_{\theta'}(z)\bigr]_{z = z_j,\ \theta' = \theta},

      unbiased for :math:`\nabla\mathcal L_k` (the score terms are rewritten by a
      second reparameterization); equal to ``"stl"`` when :math:`k = 1`, and zero at
      the exact posterior for every :math:`k`.
    * ``"score"``: the score function, :math:`z_j` drawn without a path (``sample``;
      :math:`z` may be discrete),

      .. math::

          \hat g = \sum_j \bigl(\hat{\mathcal L}_k - b_j\bigr)\nabla_\theta \log q_\theta(z_j)
                 - \sum_j \tilde w_j \nabla_\theta \log q_\theta(z_j),

      with :math:`b_j = 0` when :math:`k = 1` and, when :math:`k > 1`, VIMCO's
      leave-one-out baseline :cite:p:`mnih2016`: :math:`\hat{\mathcal L}_k` with
      :math:`\log w_j` replaced by the mean of the other :math:`k - 1` log-weights,
      :math:`b_j = \log \frac1k\bigl(\sum_{l \ne j} w_l + \exp\frac{1}{k-1}\sum_{l\ne j}\log w_l\bigr)`.
      :math:`b_j` does not depend on :math:`z_j`, so the estimate stays unbiased.

    Only the variational parameters are differentiated: ``log_joint`` is a fixed
    function of :math:`z`.

    Args:
        log_joint: latents ``(..., *latent_shape)`` to :math:`\log p(x, z)` ``(...)``.
        q_fn: ``params`` to the distribution :math:`q_\theta` of one latent; with
            ``rsample`` for ``"reparam"``, ``"stl"`` and ``"dreg"``.
        params: the floating-point tensor :math:`\theta`.
        n_samples: number of independent estimates :math:`\ge 1`.
        k: draws per estimate :math:`\ge 1`.
        gradient: one of ``GRADIENTS``.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)`` on ``params``' device.
    """
    # Imported here: companion.estimators re-exports this module's functions.
    from companion.estimators import _no_validation

    n, k, q = _check_args(log_joint, q_fn, params, n_samples, k)
    check_choice("gradient", gradient, GRADIENTS)
    device = params.device
    theta = params.detach().to("cpu")
    if gradient != "score" and not q.has_rsample:
        raise ValueError(
            f"gradient={gradient!r} needs a reparameterizable q, but {type(q).__name__} has no rsample "
            "(has_rsample is False); use gradient='score'"
        )

    if gradient == "score":
        # imported here: companion.estimators re-exports this module's functions
        from companion.estimators import loo_baseline

        with torch.no_grad():
            z_all = q.sample((n, k))

        def surrogate(p, z):
            log_q = _latent_log_q(q_fn(p), z, 1)
            log_w = _call_log_joint(log_joint, z, (k,), device) - log_q
            bound = _log_mean_exp(log_w)
            lw = log_w.detach()
            if k == 1:
                signal = lw
            else:
                # VIMCO: replace log w_j by the mean of the others' log-weights.
                others = loo_baseline(lw)
                loo = lw.unsqueeze(0).repeat(k, 1) + torch.diag(others - lw)
                signal = bound.detach() - _log_mean_exp(loo, -1)
            return bound + (signal * log_q).sum(), log_w.detach()

        with _no_validation():
            grads, log_w = vmap(grad(surrogate, has_aux=True), in_dims=(None, 0))(theta, z_all)
    else:

        def surrogates(p):
            # The n estimates' surrogates, each from its own k draws; row i of the
            # Jacobian is estimate i's gradient. Forward mode: one pass per entry of p.
            z = q_fn(p).rsample((n, k))
            log_p = _call_log_joint(log_joint, z, (n, k), device)
            q_path = q_fn(p.detach()) if gradient in ("stl", "dreg") else q_fn(p)
            log_w = log_p - _latent_log_q(q_path, z, 2)
            if gradient == "dreg":
                w = torch.softmax(log_w.detach(), -1)
                return (w.square() * log_w).sum(-1), log_w.detach()
            return _log_mean_exp(log_w, -1), log_w.detach()

        rng_state = torch.get_rng_state()
        try:
            with _no_validation():
                grads, log_w = jacfwd(surrogates, has_aux=True, randomness="same")(theta)
        except NotImplementedError:
            # Samplers without forward-mode support (Gamma's implicit reparameterization):
            # reverse mode, vectorised over the estimates, the same draws.
            torch.set_rng_state(rng_state)

            def one(p, _index):
                z = q_fn(p).rsample((k,))
                log_p = _call_log_joint(log_joint, z, (k,), device)
                q_path = q_fn(p.detach()) if gradient in ("stl", "dreg") else q_fn(p)
                log_w = log_p - _latent_log_q(q_path, z, 1)
                if gradient == "dreg":
                    w = torch.softmax(log_w.detach(), 0)
                    return (w.square() * log_w).sum(), log_w.detach()
                return _log_mean_exp(log_w), log_w.detach()

            with _no_validation(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads, log_w = vmap(grad(one, has_aux=True), in_dims=(None, 0), randomness="different")(
                    theta, torch.arange(n)
                )
    _check_log_weights(log_w)
    return grads.to(device)
