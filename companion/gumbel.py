r"""Gumbel noise, the Gumbel-max trick, and the Gumbel-softmax (Concrete) relaxation.

The standard Gumbel distribution has CDF :math:`F(g) = \exp(-e^{-g})`; inverting
it gives :math:`g = -\log(-\log u)` with :math:`u \sim \mathcal U(0, 1)`.
Noise is drawn on the CPU and moved to the logits' device (see
:mod:`companion.device`), with :math:`u` kept inside the open interval so that
neither logarithm sees 0: a zero there is what has produced NaNs in other
implementations.

Numerical contract of the samplers below:

* Only logit *differences* matter: a row whose maximum exceeds 32 in magnitude is
  shifted by it before the noise is added, so two equal logits of :math:`10^{30}` are
  as fair a coin as two zeros (adding :math:`g \approx 1` to :math:`10^{8}` in float32
  would round it away). Smaller rows are summed directly: there the rounding of
  :math:`\ell + g` is a few ulps of the noise, as is that of the shift.
* A logit of :math:`-\infty` masks its category (probability zero: never sampled,
  zero weight, zero gradient); a row of only :math:`-\infty`, a :math:`+\infty` or a
  NaN is a ``ValueError``.
* Any positive temperature gives a finite sample: when :math:`z/\tau` could
  overflow, the row maximum of :math:`z = \ell + g` is subtracted first.
* float16 and bfloat16 logits are computed in float32 (noise included) and the
  result is cast back: their coarse uniform grids would otherwise bias the law.
"""

from __future__ import annotations

import math

import torch

from companion.device import _checked, _uniform_open
from companion import validation
from companion.validation import _show, as_tensor, check_tensor, compute_dtype

__all__ = ["gumbel", "gumbel_max", "gumbel_softmax", "straight_through", "gumbel_rao", "check_temperature"]


def gumbel(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Standard Gumbel noise :math:`g = -\log(-\log u)`, :math:`u \sim \mathcal U(0, 1)`.

    :math:`u` lies in :math:`[t, 1 - \epsilon/2]` (see :func:`companion.device.uniform_open`),
    so every draw is finite: in float32 :math:`g \in [-4.5, 16.6]`. For float16 and
    bfloat16, :math:`u` and :math:`g` are computed in float32 and :math:`g` is rounded.
    """
    shape, generator, device, dtype = _checked(shape, generator, device, dtype)
    return _gumbel(shape, generator, device, dtype)


def _gumbel(shape, generator, device, dtype) -> torch.Tensor:
    draw = None if dtype is None else compute_dtype(dtype)
    u = _uniform_open(shape, generator, None, draw)
    g = u.log_().neg_().log_().neg_()  # in place: u is a fresh tensor, so no temporaries
    if dtype is not None and g.dtype != dtype:
        g = g.to(dtype)
    return g if device is None else g.to(device)


def _noise_bound(dtype: torch.dtype) -> float:
    """The largest :math:`|g|` :func:`gumbel` can return in ``dtype``."""
    info = torch.finfo(dtype)
    return max(abs(-math.log(-math.log(info.tiny))), -math.log(-math.log1p(-info.eps / 2)))


#: Rows whose largest logit exceeds this in magnitude are shifted by it before the
#: noise is added. Below, ``l + g`` rounds g by at most ulp(64), the same order as
#: rounding ``l - m``, so both ways agree to a few ulps; above, ``l + g`` would round
#: the noise ever more coarsely (to 1/16 at 1e6 in float32, away entirely at 1e8).
_SHIFT_ABOVE = 32.0


def _needs_shift(m: torch.Tensor) -> bool:
    return bool((m.abs() > _SHIFT_ABOVE).any())


def _check_logits(logits) -> tuple[torch.Tensor, bool]:
    """Check ``logits``; return them and whether some entries are -inf (masked)."""
    logits = check_tensor("logits", logits)
    if logits.dim() == 0:
        raise ValueError("logits must have at least one dimension (the categories), got a 0-d tensor")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits must have at least one category in the last dimension, got shape {tuple(logits.shape)}")
    d = logits.detach()
    if validation.all_finite(d):
        return logits, False
    finite = torch.isfinite(d)
    if bool(torch.isnan(d).any()):
        raise ValueError(f"logits must not contain NaN, got {_show(d)}")
    if bool((d == math.inf).any()):
        raise ValueError(
            f"logits must not contain +inf (a category's probability would be 1 with no "
            f"finite weight; use -inf to mask a category), got {_show(d)}"
        )
    if bool((~finite).all(-1).any()):
        raise ValueError(
            f"logits must have a finite entry in every row: a row of -inf masks every "
            f"category, leaving none to sample, got {_show(d)}"
        )
    return logits, True


def _check_noise(g, logits: torch.Tensor) -> torch.Tensor:
    g = check_tensor("g", g)
    if validation._VALIDATE and not validation.all_finite(g.detach()):
        raise ValueError(f"g must be finite, got {_show(g)} with NaN or infinite entries")
    if g.shape != logits.shape:
        raise ValueError(f"g must have the shape of logits {tuple(logits.shape)}, got {tuple(g.shape)}")
    return g


def _check_temperature(temperature, logits: torch.Tensor, ct: torch.dtype) -> tuple[torch.Tensor, float]:
    """Check the temperature the caller passed; return it as a tensor and its smallest entry."""
    like = logits if logits.dtype == ct else torch.empty((), dtype=ct, device=logits.device)
    tau = as_tensor("temperature", temperature, like=like)
    if isinstance(temperature, torch.Tensor):
        if tau.numel() == 0:
            raise ValueError(f"temperature must not be empty, got shape {tuple(tau.shape)}")
        lo, hi = (float(v) for v in torch.aminmax(tau.detach()))
    else:
        lo = hi = float(temperature)
    if not (lo == lo and hi == hi and abs(lo) < math.inf and abs(hi) < math.inf):
        raise ValueError(f"temperature must be finite, got {_show(temperature)} with NaN or infinite entries")
    if not lo > 0:
        raise ValueError(f"temperature must be > 0, got {_show(temperature)}")
    if not _broadcasts(tau, logits) or torch.broadcast_shapes(tau.shape, logits.shape) != logits.shape:
        raise ValueError(
            f"temperature must be a number or a tensor that broadcasts to logits' shape "
            f"{tuple(logits.shape)} without enlarging it, got shape {tuple(tau.shape)}"
        )
    if tau.device != logits.device:
        tau = tau.to(logits.device)
    if tau.dtype in (torch.float16, torch.bfloat16) and ct != tau.dtype:
        tau = tau.to(ct)
    return tau, lo


def check_temperature(temperature, logits: torch.Tensor) -> torch.Tensor:
    """The package's one temperature check, as :func:`gumbel_softmax` applies it: a finite
    number or tensor, every entry > 0, that broadcasts to ``logits``' shape without
    enlarging it. Returns it as a tensor on ``logits``' device (float16 and bfloat16 in
    float32, the compute dtype). For callers that take a temperature for a relaxation.
    """
    logits = check_tensor("logits", logits)
    tau, _ = _check_temperature(temperature, logits, compute_dtype(logits.dtype))
    return tau


def _broadcasts(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        return False
    return True


def gumbel_max(logits: torch.Tensor, *, g=None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Exact categorical samples by the Gumbel-max trick: :math:`k = \arg\max_j (\ell_j + g_j)`.

    With :math:`g_j` independent standard Gumbel,
    :math:`P(k = i) = e^{\ell_i} / \sum_j e^{\ell_j} = \operatorname{softmax}(\ell)_i`:
    :math:`\ell_j + g_j` has CDF :math:`\exp(-e^{\ell_j - t})`, so
    :math:`P(\max_{j \ne i} (\ell_j + g_j) < t) = \exp(-e^{-t} \sum_{j\ne i} e^{\ell_j})`, and
    integrating against the density of :math:`\ell_i + g_i` gives the softmax.

    A row maximum :math:`m` above 32 in magnitude is subtracted first,
    :math:`k = \arg\max_j ((\ell_j - m) + g_j)` (the same law, computed without rounding
    the noise away, for any finite logits); :math:`\ell_j = -\infty` masks category :math:`j`.

    Returns the integer indices, shape ``logits.shape[:-1]``.
    """
    logits, _ = _check_logits(logits)
    if g is not None:
        g = _check_noise(g, logits)
    if generator is not None:
        _checked((), generator, None, None)
    return _gumbel_max(logits, g, generator)


def _gumbel_max(logits: torch.Tensor, g, generator) -> torch.Tensor:
    ct = compute_dtype(logits.dtype)
    logits = logits.detach().to(ct)
    m = logits.amax(-1, keepdim=True)
    z = _gumbel(logits.shape, generator, logits.device, ct) if g is None else g.to(device=logits.device, dtype=ct)
    if _needs_shift(m):
        return torch.argmax((logits - m).add_(z), dim=-1)
    return torch.argmax(z.add_(logits) if g is None else logits + z, dim=-1)


def straight_through(y_soft: torch.Tensor) -> torch.Tensor:
    r"""One-hot in the forward pass, the gradient of ``y_soft`` in the backward pass.

    Returns :math:`y_{hard} - \operatorname{sg}(y_{soft}) + y_{soft}` where
    :math:`\operatorname{sg}` stops gradients: its value is :math:`y_{hard}` (the one-hot of
    :math:`\arg\max y_{soft}`), its Jacobian that of :math:`y_{soft}` (Bengio et al., 2013).
    ``y_soft`` must be finite, with at least one entry in its last dimension.
    """
    y_soft = check_tensor("y_soft", y_soft)
    if y_soft.dim() == 0 or y_soft.shape[-1] < 1:
        raise ValueError(f"y_soft must have at least one entry in a last dimension, got shape {tuple(y_soft.shape)}")
    if validation._VALIDATE and not validation.all_finite(y_soft.detach()):
        raise ValueError(f"y_soft must be finite, got {_show(y_soft)} with NaN or infinite entries")
    return _straight_through(y_soft)


def _straight_through(y_soft: torch.Tensor) -> torch.Tensor:
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

        y = \operatorname{softmax}\bigl((\ell - m + g)/\tau\bigr), \qquad g_j \sim \text{Gumbel}(0, 1),

    with :math:`m = \max_j \ell_j` for rows whose maximum exceeds 32 in magnitude and
    :math:`m = 0` otherwise (softmax is shift-invariant, so this is the usual
    :math:`\operatorname{softmax}((\ell + g)/\tau)`, computed without rounding the noise away).
    As :math:`\tau \to 0`, :math:`y` tends to the one-hot of the Gumbel-max sample; for
    :math:`\tau > 0` it is a differentiable function of :math:`\ell`. With ``hard=True``
    the forward value is that one-hot and the gradient is the soft sample's
    (straight-through, :func:`straight_through`).

    Args:
        logits: unnormalized log-probabilities :math:`\ell`, shape ``(..., K)``; finite,
            or :math:`-\infty` to mask a category (probability 0, zero weight, zero
            gradient), with at least one finite entry per row. Any finite size is fine.
        temperature: :math:`\tau > 0`, a number or a tensor that broadcasts to the
            logits' shape (e.g. ``(..., 1)``). Tiny values stay finite (the one-hot limit).
        hard: return the straight-through one-hot sample.
        g: Gumbel noise of ``logits``' shape; drawn if ``None``.
        generator: optional CPU ``torch.Generator`` for the draw.
    """
    logits, masked = _check_logits(logits)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {hard!r} of type {type(hard).__name__}")
    ct = compute_dtype(logits.dtype)
    tau, tau_min = _check_temperature(temperature, logits, ct)
    bound = _noise_bound(ct)
    if g is not None:
        g = _check_noise(g, logits)
        bound = float(g.detach().abs().max())
    if generator is not None:
        _checked((), generator, None, None)
    # z / tau overflows only if the row maximum of z (within the noise's bound) over tau does.
    small_tau = 2.0 * bound >= tau_min * torch.finfo(ct).max
    return _gumbel_softmax(logits, tau, hard, g, generator, masked, small_tau)


def _gumbel_softmax(logits, tau, hard, g, generator, masked: bool, small_tau: bool) -> torch.Tensor:
    """:func:`gumbel_softmax` on checked arguments (``tau`` a tensor in the compute dtype)."""
    out_dtype = logits.dtype
    ct = compute_dtype(out_dtype)
    if ct != out_dtype:
        logits = logits.to(ct)
    m = logits.detach().amax(-1, keepdim=True)
    noise = _gumbel(logits.shape, generator, logits.device, ct) if g is None else g.to(device=logits.device, dtype=ct)
    if masked:
        mask = torch.isneginf(logits.detach())
        logits = logits.masked_fill(mask, 0.0)  # finite stand-ins; masked again below
    if masked or _needs_shift(m):
        z = (logits - m).add_(noise)  # l - m first, so large logits keep the noise
    elif g is None:
        z = noise.add_(logits)  # fresh noise: add the logits in its memory
    else:
        z = logits + noise  # never write into the caller's g
    if small_tau:
        zd = z.detach()
        top = (zd.masked_fill(mask, -math.inf) if masked else zd).amax(-1, keepdim=True)
        z = z.sub_(top)
    in_place = (
        not tau.requires_grad
        and torch.result_type(z, tau) == z.dtype
        and torch.broadcast_shapes(z.shape, tau.shape) == z.shape
    )
    z = z.div_(tau) if in_place else z / tau
    if masked:
        z = z.masked_fill(mask, -math.inf)
    y = _relax(z, hard)
    return y if y.dtype == out_dtype else y.to(out_dtype)


# --------------------------------------------------------------------------- Gumbel-Rao
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
    logits, _ = _check_logits(logits)
    k = validation.check_positive_int("k", k)
    tau, _ = _check_temperature(temperature, logits, compute_dtype(logits.dtype))
    with torch.no_grad():
        shifted = logits.detach() - logits.detach().amax(dim=-1, keepdim=True)
        index = torch.argmax(shifted + _gumbel(logits.shape, None, logits.device, logits.dtype), dim=-1)
        d_hard = torch.zeros_like(shifted).scatter_(-1, index.unsqueeze(-1), 1.0)
        log_e = _uniform_open((k,) + tuple(logits.shape), None, None, logits.dtype).neg_().log1p_().neg_()
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
def _relax(z: torch.Tensor, hard: bool, straight_through=_straight_through) -> torch.Tensor:
    """The softmax of ``z`` over the last dimension, straight-through one-hot if ``hard`` (unchecked)."""
    y_soft = torch.softmax(z, dim=-1)
    return straight_through(y_soft) if hard else y_soft
