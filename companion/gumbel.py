r"""Gumbel noise, the Gumbel-max trick, and the Gumbel-softmax (Concrete) relaxation.

The standard Gumbel distribution has CDF :math:`F(g) = \exp(-e^{-g})`; inverting
it gives :math:`g = -\log(-\log u)` with :math:`u \sim \mathcal U(0, 1)`.
Noise is drawn on the CPU and moved to the logits' device (see
:mod:`companion.device`), with :math:`u` kept inside the open interval so that
neither logarithm sees 0: a zero there is what has produced NaNs in other
implementations.
"""

from __future__ import annotations

import torch

from companion.device import uniform_open
from companion.validation import as_tensor, check_finite, check_positive, check_tensor

__all__ = ["gumbel", "gumbel_max", "gumbel_softmax", "straight_through"]


def gumbel(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Standard Gumbel noise :math:`g = -\log(-\log u)`, :math:`u \sim \mathcal U(0, 1)`.

    :math:`u` lies in :math:`[t, 1 - \epsilon/2]` (see :func:`companion.device.uniform_open`),
    so every draw is finite: in float32 :math:`g \in [-4.5, 16.6]`.
    """
    u = uniform_open(shape, generator=generator, dtype=dtype)
    g = u.log_().neg_().log_().neg_()  # in place: u is a fresh tensor, so no temporaries
    return g if device is None else g.to(device)


def _check_logits(logits) -> torch.Tensor:
    logits = check_tensor("logits", logits)
    if logits.dim() == 0:
        raise ValueError("logits must have at least one dimension (the categories), got a 0-d tensor")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must have at least one category in the last dimension, got shape {tuple(logits.shape)}")
    return check_finite("logits", logits)


def _noise(logits: torch.Tensor, g, generator) -> torch.Tensor:
    if g is None:
        return gumbel(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    g = check_finite("g", check_tensor("g", g))
    if g.shape != logits.shape:
        raise ValueError(f"g must have the shape of logits {tuple(logits.shape)}, got {tuple(g.shape)}")
    return g.to(device=logits.device, dtype=logits.dtype)


def gumbel_max(logits: torch.Tensor, *, g=None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Exact categorical samples by the Gumbel-max trick: :math:`k = \arg\max_j (\ell_j + g_j)`.

    With :math:`g_j` independent standard Gumbel,
    :math:`P(k = i) = e^{\ell_i} / \sum_j e^{\ell_j} = \operatorname{softmax}(\ell)_i`:
    :math:`\ell_j + g_j` has CDF :math:`\exp(-e^{\ell_j - t})`, so
    :math:`P(\max_{j \ne i} (\ell_j + g_j) < t) = \exp(-e^{-t} \sum_{j\ne i} e^{\ell_j})`, and
    integrating against the density of :math:`\ell_i + g_i` gives the softmax.

    Returns the integer indices, shape ``logits.shape[:-1]``.
    """
    logits = _check_logits(logits)
    return torch.argmax(logits + _noise(logits, g, generator), dim=-1)


def straight_through(y_soft: torch.Tensor) -> torch.Tensor:
    r"""One-hot in the forward pass, the gradient of ``y_soft`` in the backward pass.

    Returns :math:`y_{hard} - \operatorname{sg}(y_{soft}) + y_{soft}` where
    :math:`\operatorname{sg}` stops gradients: its value is :math:`y_{hard}` (the one-hot of
    :math:`\arg\max y_{soft}`), its Jacobian that of :math:`y_{soft}` (Bengio et al., 2013).
    """
    y_soft = check_tensor("y_soft", y_soft)
    index = y_soft.argmax(dim=-1, keepdim=True)
    y_hard = torch.zeros_like(y_soft).scatter_(-1, index, 1.0)
    # y_hard - sg(y_soft) + y_soft, accumulated in y_hard's fresh memory (same values, one allocation).
    return y_hard.sub_(y_soft.detach()).add_(y_soft)


def gumbel_softmax(
    logits: torch.Tensor,
    temperature=1.0,
    hard: bool = False,
    *,
    g=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""A Gumbel-softmax (Concrete) relaxed sample on the simplex over the last dimension.

    .. math::

        y = \operatorname{softmax}\bigl((\ell + g)/\tau\bigr), \qquad g_j \sim \text{Gumbel}(0, 1).

    As :math:`\tau \to 0`, :math:`y` tends to the one-hot of the Gumbel-max sample; for
    :math:`\tau > 0` it is a differentiable function of :math:`\ell`. With ``hard=True``
    the forward value is that one-hot and the gradient is the soft sample's
    (straight-through, :func:`straight_through`).

    Args:
        logits: unnormalized log-probabilities :math:`\ell`, finite, shape ``(..., K)``.
            Extreme values (:math:`\pm 10^4`) are fine: the softmax subtracts the maximum.
        temperature: :math:`\tau > 0`.
        hard: return the straight-through one-hot sample.
        g: Gumbel noise of ``logits``' shape; drawn if ``None``.
        generator: optional CPU ``torch.Generator`` for the draw.
    """
    logits = _check_logits(logits)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {hard!r} of type {type(hard).__name__}")
    tau = as_tensor("temperature", temperature, like=logits)
    check_positive("temperature", tau)
    if g is None:
        # Fresh noise: add the logits and divide by tau in its memory (no temporaries).
        z = gumbel(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device).add_(logits)
    else:
        z = logits + _noise(logits, g, generator)  # never write into the caller's g
    in_place = (
        not tau.requires_grad
        and torch.result_type(z, tau) == z.dtype
        and torch.broadcast_shapes(z.shape, tau.shape) == z.shape
    )
    z = z.div_(tau) if in_place else z / tau
    y_soft = torch.softmax(z, dim=-1)
    return straight_through(y_soft) if hard else y_soft


# --------------------------------------------------------------------------- Gumbel-Rao
def _gumbel_rao_logits(logits) -> torch.Tensor:
    """Checks for :func:`gumbel_rao`: -inf entries are masked categories (never sampled);
    NaN and +inf are errors, and so is a row with every category masked."""
    logits = check_tensor("logits", logits)
    if logits.dim() == 0 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last dimension of at least one category, got shape {tuple(logits.shape)}")
    finite = torch.isfinite(logits.detach())
    if bool((torch.isnan(logits.detach()) | (logits.detach() == float("inf"))).any()):
        raise ValueError("logits must be finite or -inf (a masked category), got NaN or +inf entries")
    if not bool(finite.any(dim=-1).all()):
        raise ValueError("logits has a row whose categories are all masked (-inf): nothing to sample")
    return logits


def gumbel_rao(logits: torch.Tensor, temperature=1.0, k: int = 1) -> torch.Tensor:
    r"""Straight-through Gumbel-softmax, Rao-Blackwellized over the Gumbels (Paulus et al., 2021).

    The forward value is the one-hot :math:`D` of a Gumbel-max sample, as
    ``gumbel_softmax(logits, temperature, hard=True)``. The backward pass uses

    .. math::

        \frac1k \sum_{j=1}^k \operatorname{softmax}\bigl((\ell + G^{(j)})/\tau\bigr),
        \qquad G^{(j)} \sim \text{Gumbel}(0, 1)^K \text{ conditioned on }
        \arg\max(\ell + G^{(j)}) = D,

    with the :math:`G^{(j)}` held fixed when differentiating (as straight-through holds its
    one :math:`G`). By the tower rule the expected gradient equals straight-through's;
    averaging :math:`k` conditional draws only removes variance, so for :math:`k > 1` its
    variance is lower. The conditional draws use :math:`E_j \sim \operatorname{Exp}(1)`:
    the maximum is :math:`z_D = \log \sum_j e^{\ell_j} - \log E_D` (Gumbel, independent of
    the argmax), the others are Gumbels truncated below it,
    :math:`z_i = -\log\bigl(e^{-z_D} + E_i e^{-\ell_i}\bigr)`, computed as a ``logaddexp``
    after subtracting the row maximum, so extreme logits stay finite.

    Args:
        logits: :math:`\ell`, shape ``(..., K)``; ``-inf`` marks a masked category
            (never sampled, zero gradient); NaN and ``+inf`` are errors.
        temperature: :math:`\tau > 0`.
        k: number of conditional Gumbel draws :math:`k \ge 1`.

    Returns:
        The one-hot sample, shape ``logits.shape``, differentiable in ``logits``.
    """
    from companion.validation import check_positive_int  # noqa: PLC0415 (keeps the module's imports untouched)

    logits = _gumbel_rao_logits(logits)
    k = check_positive_int("k", k)
    tau = check_positive("temperature", as_tensor("temperature", temperature, like=logits))
    with torch.no_grad():
        shifted = logits.detach() - logits.detach().amax(dim=-1, keepdim=True)
        index = torch.argmax(shifted + gumbel(logits.shape, dtype=logits.dtype, device=logits.device), dim=-1)
        d_hard = torch.zeros_like(shifted).scatter_(-1, index.unsqueeze(-1), 1.0)
        log_e = uniform_open((k,) + tuple(logits.shape), dtype=logits.dtype).neg_().log1p_().neg_()
        log_e = log_e.log_().to(logits.device)  # log E with E = -log(1 - u) ~ Exp(1)
        log_z = torch.logsumexp(shifted, dim=-1, keepdim=True)
        log_e_d = (log_e * d_hard).sum(dim=-1, keepdim=True)
        z_max = log_z - log_e_d  # the perturbed maximum
        z_other = -torch.logaddexp(-z_max, log_e - shifted)  # truncated Gumbels; -inf where masked
        z = torch.where(d_hard.bool(), z_max, z_other)
    # Gradient of the unconditional map l -> l + G at fixed G: identity on unmasked entries.
    live = torch.isfinite(logits.detach())
    ell = torch.where(live, logits, torch.zeros_like(logits))
    y_soft = torch.softmax((z + (ell - ell.detach())) / tau, dim=-1).mean(dim=0)
    return d_hard - y_soft.detach() + y_soft
