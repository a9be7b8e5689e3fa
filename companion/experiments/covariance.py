r"""Chapter 3's multivariate Gaussian: which parameter of the covariance an optimizer may step on.

A step on the entries of :math:`\Sigma` can leave the positive definite cone; a step on
the raw entries of its Cholesky factor :math:`L` can push a diagonal entry through
zero. :func:`random_steps` counts how often each happens for random symmetric
perturbations of a given size, and :func:`not_positive_definite` says which matrices
of a batch have no Cholesky factor.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from companion.validation import check_real, check_finite, check_positive_int, check_tensor

__all__ = ["GradientRow", "StepExits", "not_positive_definite", "quadratic_form_gradients", "random_steps"]


def not_positive_definite(mats: torch.Tensor) -> torch.Tensor:
    """Which matrices of a batch ``(..., d, d)`` have no Cholesky factor (not positive definite).

    Returns a boolean tensor of the batch shape, from ``torch.linalg.cholesky_ex``'s
    ``info`` (nonzero where the factorization fails).
    """
    mats = check_finite("mats", check_tensor("mats", mats))
    if mats.dim() < 2 or mats.shape[-1] != mats.shape[-2]:
        raise ValueError(f"mats must be square matrices (..., d, d), got shape {tuple(mats.shape)}")
    return torch.linalg.cholesky_ex(mats).info.ne(0)


class StepExits(NamedTuple):
    """What :func:`random_steps` returns."""

    sigma_fraction: float  #: share of steps on Sigma that leave the covariances
    cholesky_fraction: float  #: share of steps on the raw L that leave the Cholesky factors
    first_bad: torch.Tensor  #: the first perturbed Sigma that is not positive definite


def random_steps(sigma: torch.Tensor, scale: float, n_steps: int, generator: torch.Generator) -> StepExits:
    r"""Random steps on a 2x2 covariance :math:`\Sigma` and on its raw Cholesky entries.

    Step on :math:`\Sigma`: :math:`\Sigma + (S + S^\top)/2` with :math:`S` a matrix of
    independent :math:`\mathcal N(0, \text{scale}^2)` entries, invalid when not positive
    definite. Step on :math:`L`: the stored entries :math:`(L_{21}, L_{11}, L_{22})` plus
    independent :math:`\mathcal N(0, \text{scale}^2)` noise, invalid when a diagonal entry
    is :math:`\le 0`. Draws the first ``n_steps`` steps on :math:`\Sigma`, then those on
    :math:`L`, from ``generator`` (float64).
    """
    sigma = check_finite("sigma", check_tensor("sigma", sigma))
    if sigma.shape != (2, 2):
        raise ValueError(f"sigma must be a 2x2 covariance, got shape {tuple(sigma.shape)}")
    scale = check_real("scale", scale, positive=True)
    n = check_positive_int("n_steps", n_steps)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {generator!r}")
    sigma = sigma.to(torch.float64)
    chol = torch.linalg.cholesky(sigma)
    steps = scale * torch.randn((n, 2, 2), generator=generator, dtype=torch.float64)
    sigma_new = sigma + (steps + steps.transpose(1, 2)) / 2
    bad_sigma = not_positive_definite(sigma_new)
    raw = torch.stack([chol[1, 0], chol[0, 0], chol[1, 1]])
    raw_new = raw + scale * torch.randn((n, 3), generator=generator, dtype=torch.float64)
    bad_chol = (raw_new[:, 1:] <= 0).any(1)
    if not bool(bad_sigma.any()):
        raise ValueError(f"no step of scale {scale} left the covariances: nothing to show")
    return StepExits(
        sigma_fraction=bad_sigma.double().mean().item(),
        cholesky_fraction=bad_chol.double().mean().item(),
        first_bad=sigma_new[bad_sigma][0],
    )


class GradientRow(NamedTuple):
    """One parameter's pathwise gradient in :func:`quadratic_form_gradients`."""

    estimate: torch.Tensor  #: mean of the per-sample gradients
    exact: torch.Tensor  #: the closed form
    max_abs_z: float  #: largest :math:`|\text{estimate} - \text{exact}|` / standard error over the entries


def quadratic_form_gradients(mu: torch.Tensor, sigma: torch.Tensor, a: torch.Tensor, k: torch.Tensor,
                             z: torch.Tensor) -> dict[str, GradientRow]:
    r"""Pathwise gradients of :math:`\mathbb E[(x-k)^\top A (x-k)]`, :math:`x \sim \mathcal N(\mu, \Sigma)`,
    in :math:`\mu`, :math:`L` (:math:`x = \mu + Lz`) and :math:`\Sigma` (:math:`x = \mu + \Sigma^{1/2}z`),
    against the closed forms

    .. math::

        \nabla_\mu = 2A(\mu - k), \qquad \nabla_L = \operatorname{tril}(2AL), \qquad
        \nabla_\Sigma = A, \qquad \partial_{s_{12}} = 2A_{12},

    for a symmetric :math:`A`, the last for the covariance :math:`s_{12}` stored once (moving
    :math:`\Sigma_{12}` and :math:`\Sigma_{21}` together). Each per-sample gradient is
    computed at every draw of ``z`` (shape ``(n, d)``) by ``torch.func.jacfwd``; the
    entries with no spread (above the diagonal of :math:`L`) count as :math:`z = 0`.

    Returns:
        ``{"mu", "L", "Sigma", "s12"}`` to a :class:`GradientRow`.
    """
    from torch.func import jacfwd

    from companion.reparam import mvn_cholesky, mvn_sqrtm

    for name, t in (("mu", mu), ("sigma", sigma), ("a", a), ("k", k), ("z", z)):
        check_finite(name, check_tensor(name, t))
    d = mu.shape[-1]
    if mu.shape != (d,) or sigma.shape != (d, d) or a.shape != (d, d) or k.shape != (d,):
        raise ValueError(
            f"need mu and k of shape (d,), sigma and a of shape (d, d); got {tuple(mu.shape)}, "
            f"{tuple(k.shape)}, {tuple(sigma.shape)}, {tuple(a.shape)}"
        )
    if z.dim() != 2 or z.shape[1] != d or z.shape[0] < 2:
        raise ValueError(f"z must have shape (n >= 2, {d}), got {tuple(z.shape)}")
    if d != 2:
        raise ValueError(f"the s12 row needs d = 2, got d = {d}")
    if not torch.equal(a, a.T):
        # the closed forms above use A = A^T (for any A, (x-k)^T A (x-k) is the same with (A + A^T)/2)
        raise ValueError(f"a must be symmetric (use (a + a.T) / 2), got {a.tolist()}")
    chol = torch.linalg.cholesky(sigma)

    def f(x):
        return (((x - k) @ a) * (x - k)).sum(-1)

    e12 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=sigma.dtype, device=sigma.device)
    t0 = torch.tensor(0.0, dtype=sigma.dtype, device=sigma.device)
    per_sample = {
        "mu": jacfwd(lambda m: f(mvn_cholesky(m, chol, z=z)))(mu),
        "L": jacfwd(lambda l_: f(mvn_cholesky(mu, l_, z=z)))(chol).tril(),
        "Sigma": jacfwd(lambda s: f(mvn_sqrtm(mu, s, z=z)))(sigma),
        "s12": jacfwd(lambda t: f(mvn_sqrtm(mu, sigma + t * e12, z=z)))(t0),
    }
    exact = {"mu": 2 * a @ (mu - k), "L": (2 * a @ chol).tril(), "Sigma": a, "s12": 2 * a[0, 1]}
    out = {}
    for name, g in per_sample.items():
        est, se = g.mean(0), g.std(0) / math.sqrt(z.shape[0])
        zs = torch.where(se > 0, (est - exact[name]) / se.clamp_min(1e-300), 0.0)
        out[name] = GradientRow(est, exact[name], zs.abs().max().item())
    return out
