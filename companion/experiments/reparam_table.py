r"""Chapter 4's table of reparameterizations: each row's sampler checked against a closed form.

A row is a sampler :math:`x = g_\theta(\text{noise})`. Two checks:

- **the law**: a two-sample Kolmogorov-Smirnov test of its draws against the
  ``torch.distributions`` sampler of the same distribution (:func:`ks_p`);
- **the gradient**: for a statistic :math:`h` with a closed-form expectation
  :math:`m(\theta) = \mathbb E[h(x)]`, the pathwise per-sample gradients
  :math:`\nabla_\theta h(g_\theta(\text{noise}_i))` must average to :math:`\nabla_\theta m(\theta)`,
  which autograd computes from the closed form (:func:`gradient_check`). Unlike
  "a gradient exists", this can fail: a wrong map, a detached parameter or a wrong
  derivative moves the mean away from :math:`\nabla_\theta m`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from scipy import stats

from companion.validation import check_positive_int

__all__ = ["ks_p", "gradient_check"]


def ks_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov p-value: are ``a`` and ``b`` draws from one law?"""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.numel() < 2:
            raise TypeError(f"{name} must be a tensor with at least 2 draws, got {t!r}")
    a_np, b_np = (t.detach().cpu().double().numpy().ravel() for t in (a, b))
    return float(stats.ks_2samp(a_np, b_np).pvalue)


def gradient_check(
    sample: Callable[..., torch.Tensor],
    exact_mean: Callable[..., torch.Tensor],
    values: Sequence,
    n: int,
    stat: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    r"""Compare the mean pathwise gradient of :math:`\mathbb E[h(x)]` with the closed form's.

    Args:
        sample: ``sample(*params)`` returns ``n`` draws, shape ``(n,)`` or ``(n, d)``,
            where each parameter arrives with one copy per draw (shape ``(n, *shape)``)
            so that autograd returns per-draw gradients.
        exact_mean: ``exact_mean(*params)`` returns :math:`m(\theta) = \mathbb E[h(x)]`
            as a scalar tensor from the parameters (not expanded), differentiably.
        values: the parameter values (numbers or tensors).
        n: the number of draws.
        stat: :math:`h`, applied to the draws; must return shape ``(n,)``.

    Returns:
        For each parameter, ``(mean gradient, its standard error, exact gradient)``,
        float64 tensors of the parameter's shape.
    """
    n = check_positive_int("n", n, minimum=2)
    if not callable(sample) or not callable(exact_mean) or not callable(stat):
        raise TypeError("sample, exact_mean and stat must be callable")
    if len(values) == 0:
        raise ValueError("values must name at least one parameter (a row without one has nothing to check)")
    base = [torch.as_tensor(v, dtype=torch.float64) for v in values]
    copies = [b.expand((n,) + b.shape).clone().requires_grad_(True) for b in base]
    h = stat(sample(*copies))
    if h.shape != (n,):
        raise ValueError(f"stat(sample(...)) must have shape ({n},), got {tuple(h.shape)}")
    per_draw = torch.autograd.grad(h.sum(), copies, allow_unused=True)
    leaves = [b.clone().requires_grad_(True) for b in base]
    exact = torch.autograd.grad(exact_mean(*leaves), leaves, allow_unused=True)
    out = []
    for b, g, e in zip(base, per_draw, exact):
        g = torch.zeros((n,) + b.shape, dtype=torch.float64) if g is None else g.detach()
        e = torch.zeros_like(b) if e is None else e.detach()
        out.append((g.mean(0), g.std(0) / math.sqrt(n), e))
    return out
