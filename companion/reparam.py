r"""Reparameterized samplers: each a deterministic, differentiable function of the
parameters and of base noise that does not depend on them.

Every function takes the base noise as an optional argument (``eps``, ``z`` or
``u``). Pass it to make the map :math:`\theta \mapsto x = g_\theta(\varepsilon)`
explicit; leave it out and the function draws it on the CPU (see
:mod:`companion.device`) with shape ``sample_shape + batch/event shape``.
Gradients flow to the parameters through ordinary autograd.

Base noise passed in must have shape ``sample_shape + batch_shape``: noise that
merely broadcasts (a ``(4, 1)`` draw against a ``(3,)`` mean) would reuse one draw
across the batch, giving fully correlated coordinates, and is a ``ValueError``.
Parameters in float16 or bfloat16 are computed in float32 (noise included) and the
sample is rounded to their dtype; their coarse grids would otherwise bias the law.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from companion import validation
from companion.device import _clamp_unit, _randn, _uniform_open
from companion.validation import (
    as_tensor,
    check_finite,
    check_noise_shape,
    check_positive,
    check_shape,
    check_tensor,
    compute_dtype,
)

__all__ = ["gaussian", "mvn_cholesky", "mvn_sqrtm", "sqrtm_psd", "exponential", "inverse_cdf"]


def _sample_shape(sample_shape) -> torch.Size:
    return check_shape("sample_shape", sample_shape)


def _noise(name: str, noise, shape: torch.Size, like: torch.Tensor, draw, generator, batch_shape=None) -> torch.Tensor:
    """Draw noise of ``shape``, or check the caller's: finite, shape ``sample_shape + batch_shape``."""
    if noise is None:
        return draw(shape, generator, like.device, like.dtype)
    noise = check_tensor(name, noise)
    check_finite(name, noise)
    batch_shape = shape if batch_shape is None else batch_shape
    check_noise_shape(name, noise, batch_shape)
    return noise.to(device=like.device, dtype=like.dtype)


def _check_generator(generator):
    if generator is not None:
        from companion.device import _check_generator as check

        check(generator)
    return generator


def _batch_shape(**shapes) -> torch.Size:
    """Broadcast the parameters' shapes, or say which disagree."""
    first, *rest = shapes.values()
    if all(s == first for s in rest):
        return torch.Size(first)
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        listed = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"the shapes of {' and '.join(shapes)} must broadcast together, got {listed}") from None


def _at_compute_dtype(x: torch.Tensor) -> torch.Tensor:
    ct = compute_dtype(x.dtype)
    return x if ct == x.dtype else x.to(ct)


def gaussian(mu, sigma, eps=None, sample_shape=(), generator=None) -> torch.Tensor:
    r"""Location-scale Gaussian: :math:`x = \mu + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, 1)`.

    Then :math:`x \sim \mathcal N(\mu, \sigma^2)`, and
    :math:`\partial x / \partial \mu = 1`, :math:`\partial x / \partial \sigma = \varepsilon`.

    Args:
        mu: mean (number or tensor).
        sigma: standard deviation, every entry :math:`> 0`.
        eps: standard normal noise; drawn if ``None``.
        sample_shape: leading shape of the draw when ``eps`` is ``None``.
        generator: optional CPU ``torch.Generator`` for the draw.
    """
    mu = as_tensor("mu", mu)
    check_finite("mu", mu)
    out_dtype = torch.result_type(mu, sigma) if isinstance(sigma, torch.Tensor) else mu.dtype
    mu = _at_compute_dtype(mu)
    sigma = as_tensor("sigma", sigma, like=mu)  # checks the value the caller passed
    check_positive("sigma", sigma)
    sigma = _at_compute_dtype(sigma)
    batch = _batch_shape(mu=mu.shape, sigma=sigma.shape)
    shape = _sample_shape(sample_shape) + batch
    _check_generator(generator)
    if isinstance(eps, torch.Tensor) and shape != batch and eps.shape != shape:
        raise ValueError(f"eps must have shape sample_shape + batch shape = {tuple(shape)}, got {tuple(eps.shape)}")
    eps = _noise("eps", eps, shape, mu, _randn, generator, batch)
    return _rounded(mu + sigma * eps, out_dtype)


def _rounded(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast a float32 result back to the caller's float16/bfloat16 (no-op otherwise)."""
    return x.to(dtype) if dtype != x.dtype and compute_dtype(dtype) != dtype else x


def _check_square(name: str, m: torch.Tensor) -> int:
    if m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"{name} must be a square matrix (at least 1x1), got shape {tuple(m.shape)}")
    return m.shape[0]


def _check_mean(mu, d: int, like: torch.Tensor) -> torch.Tensor:
    mu = as_tensor("mu", mu, like=like)
    check_finite("mu", mu)
    if mu.shape[-1:] != (d,):
        raise ValueError(f"mu must end in dimension {d} to match the {d}x{d} matrix, got shape {tuple(mu.shape)}")
    return mu


def _common_dtype(mu, m: torch.Tensor) -> torch.dtype:
    """The dtype of the result: the matrix's, promoted with a tensor mean's (as torch's arithmetic does)."""
    if isinstance(mu, torch.Tensor) and mu.is_floating_point():
        return torch.promote_types(mu.dtype, m.dtype)
    return m.dtype


def _mvn_noise(z, sample_shape, mu, d, generator):
    shape = _sample_shape(sample_shape) + mu.shape[:-1] + (d,)
    _check_generator(generator)
    if isinstance(z, torch.Tensor) and z.shape[-1:] != (d,):
        raise ValueError(f"z must end in dimension {d}, got shape {tuple(z.shape)}")
    return _noise("z", z, shape, mu, _randn, generator, mu.shape)


def mvn_cholesky(mu, scale_tril, z=None, sample_shape=(), generator=None) -> torch.Tensor:
    r"""Multivariate Gaussian through the Cholesky factor: :math:`x = \mu + L z`, :math:`z \sim \mathcal N(0, I)`.

    With :math:`L` lower triangular with a positive diagonal,
    :math:`\operatorname{Cov}[x] = L\,\mathbb E[z z^\top] L^\top = L L^\top = \Sigma`.
    Any such :math:`L` gives a valid covariance, which is why optimizers
    parameterize :math:`L` rather than :math:`\Sigma`. The Jacobian is simple:
    :math:`\partial x_i / \partial L_{jk} = \delta_{ij} z_k` for :math:`k \le j`.

    Args:
        mu: mean, shape ``(..., d)``.
        scale_tril: :math:`L`, ``(d, d)``, lower triangular, positive diagonal.
        z: standard normal noise ``(..., d)``; drawn if ``None``.
    """
    L = check_tensor("scale_tril", scale_tril)
    d = _check_square("scale_tril", L)
    check_finite("scale_tril", L)
    out_dtype = _common_dtype(mu, L)
    L = L.to(compute_dtype(out_dtype))
    if validation._VALIDATE:
        _check_tril(L)
    mu = _check_mean(mu, d, L).to(L.dtype)
    z = _mvn_noise(z, sample_shape, mu, d, generator)
    return _rounded(mu + z @ L.transpose(-1, -2), out_dtype)


def _check_tril(L: torch.Tensor) -> None:
    if not bool((L.detach().triu(1) == 0).all()):
        raise ValueError("scale_tril must be lower triangular (zeros above the diagonal), got nonzero entries above it")
    if not bool((L.detach().diagonal() > 0).all()):
        raise ValueError(
            f"scale_tril must have a positive diagonal (a Cholesky factor), got diagonal {L.detach().diagonal().tolist()}"
        )


class _SqrtmPSD(torch.autograd.Function):
    r"""Symmetric square root of a symmetric positive-definite matrix, with a stable derivative.

    Forward: :math:`\Sigma = V \Lambda V^\top \Rightarrow S = V \Lambda^{1/2} V^\top`.
    Differentiating :math:`S S = \Sigma` gives the Sylvester equation
    :math:`S\,dS + dS\,S = d\Sigma`; in the eigenbasis it is solved entrywise,
    :math:`(V^\top dS V)_{ij} = (V^\top d\Sigma V)_{ij} / (s_i + s_j)` with
    :math:`s_i = \sqrt{\lambda_i} > 0`. The same map is its own adjoint, so it serves
    as both the forward-mode (jvp) and the reverse-mode (vjp) rule. Unlike
    differentiating through ``eigh``, it stays finite when eigenvalues repeat
    (:math:`\Sigma = I`).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(sigma):
        lam, v = torch.linalg.eigh(sigma)
        s = lam.clamp_min(0).sqrt()
        return (v * s.unsqueeze(-2)) @ v.transpose(-1, -2), v, s

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, v, s = output
        ctx.mark_non_differentiable(v, s)
        ctx.save_for_backward(v, s)
        ctx.save_for_forward(v, s)

    @staticmethod
    def _solve(v, s, d):
        d = 0.5 * (d + d.transpose(-1, -2))
        inner = v.transpose(-1, -2) @ d @ v
        inner = inner / (s.unsqueeze(-1) + s.unsqueeze(-2))
        return v @ inner @ v.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad_s, _grad_v, _grad_lam):
        v, s = ctx.saved_tensors
        return _SqrtmPSD._solve(v, s, grad_s)

    @staticmethod
    def jvp(ctx, d_sigma):
        v, s = ctx.saved_tensors
        return _SqrtmPSD._solve(v, s, d_sigma), None, None


def _check_spd(name: str, sigma: torch.Tensor) -> int:
    d = _check_square(name, sigma)
    if not validation._VALIDATE:
        return d
    check_finite(name, sigma)
    s = sigma.detach()
    scale = s.abs().max().clamp_min(torch.finfo(s.dtype).tiny)
    if not bool(((s - s.transpose(-1, -2)).abs() <= 1e-5 * scale).all()):
        raise ValueError(f"{name} must be symmetric, got {s.tolist() if d <= 4 else 'a non-symmetric matrix'}")
    _, info = torch.linalg.cholesky_ex(s)
    if int(info) != 0:
        raise ValueError(
            f"{name} must be positive definite, got {s.tolist() if d <= 4 else 'a matrix'} "
            f"with smallest eigenvalue {torch.linalg.eigvalsh(s).min().item():.3g}"
        )
    return d


def sqrtm_psd(sigma: torch.Tensor) -> torch.Tensor:
    r"""The symmetric positive-definite square root :math:`\Sigma^{1/2}`, with :math:`\Sigma^{1/2}\Sigma^{1/2} = \Sigma`.

    Computed from the eigendecomposition :math:`\Sigma = V \Lambda V^\top` as
    :math:`V \Lambda^{1/2} V^\top`; its derivative solves
    :math:`\Sigma^{1/2} dS + dS\, \Sigma^{1/2} = d\Sigma` (finite even for repeated eigenvalues).
    """
    sigma = check_tensor("covariance", sigma)
    out_dtype = sigma.dtype
    sigma = _at_compute_dtype(sigma)
    _check_spd("covariance", sigma)
    return _rounded(_SqrtmPSD.apply(sigma)[0], out_dtype)


def mvn_sqrtm(mu, covariance, z=None, sample_shape=(), generator=None) -> torch.Tensor:
    r"""Multivariate Gaussian through the symmetric square root: :math:`x = \mu + \Sigma^{1/2} z`.

    The seed blog post's form. Since :math:`\Sigma^{1/2}` is symmetric,
    :math:`\operatorname{Cov}[x] = \Sigma^{1/2}\Sigma^{1/2} = \Sigma`. It needs an
    eigendecomposition, :math:`O(d^3)` with a larger constant than Cholesky, and the
    parameter :math:`\Sigma` must be kept symmetric positive definite by hand.

    Args:
        mu: mean, shape ``(..., d)``.
        covariance: :math:`\Sigma`, ``(d, d)``, symmetric positive definite.
        z: standard normal noise ``(..., d)``; drawn if ``None``.
    """
    sigma = check_tensor("covariance", covariance)
    out_dtype = _common_dtype(mu, sigma)
    sigma = sigma.to(compute_dtype(out_dtype))  # eigh has no float16 kernel: float32 for half types
    d = _check_spd("covariance", sigma)
    mu = _check_mean(mu, d, sigma).to(sigma.dtype)
    z = _mvn_noise(z, sample_shape, mu, d, generator)
    root = _SqrtmPSD.apply(sigma)[0]
    return _rounded(mu + z @ root, out_dtype)  # root is symmetric, so z @ root == (root @ z^T)^T


def _clamp_unit_symmetric(u: torch.Tensor) -> torch.Tensor:
    r"""Clamp u into :math:`[\epsilon/2, 1 - \epsilon/2]`, symmetric about 1/2.

    An icdf often computes :math:`2u - 1` or :math:`u - 1/2` (Normal, Laplace, Cauchy): a
    u below :math:`\epsilon/2` rounds to the same value as 0 there, giving
    :math:`\pm\infty` (or, for Cauchy, the wrong sign). :math:`\epsilon/2` is the smallest
    positive value ``torch.rand`` returns, so only an exact 0 moves.
    """
    half_eps = torch.finfo(u.dtype).eps / 2
    return u.clamp(min=half_eps, max=1.0 - half_eps)


def _check_unit(u: torch.Tensor) -> torch.Tensor:
    if validation._VALIDATE and not bool(((u.detach() >= 0) & (u.detach() <= 1)).all()):
        raise ValueError(f"u must lie in [0, 1], got values from {u.min().item():.3g} to {u.max().item():.3g}")
    return _clamp_unit(u)


def exponential(rate, u=None, sample_shape=(), generator=None) -> torch.Tensor:
    r"""Exponential by inverting its CDF: :math:`x = -\log(u)/\lambda`, :math:`u \sim \mathcal U(0, 1)`.

    :math:`F(x) = 1 - e^{-\lambda x}`, so :math:`F^{-1}(v) = -\log(1 - v)/\lambda`, and
    :math:`1 - v` is uniform when :math:`v` is. Then
    :math:`\partial x / \partial \lambda = \log(u)/\lambda^2 = -x/\lambda`.
    ``u`` at 0 or 1 is clamped into the open interval, so ``x`` stays finite.

    Args:
        rate: :math:`\lambda > 0`.
        u: uniform noise in :math:`[0, 1]`; drawn on :math:`(0, 1)` if ``None``.
    """
    rate = as_tensor("rate", rate)
    check_positive("rate", rate)
    out_dtype = rate.dtype
    rate = _at_compute_dtype(rate)
    shape = _sample_shape(sample_shape) + rate.shape
    _check_generator(generator)
    if u is None:
        u = _uniform_open(shape, generator, rate.device, rate.dtype)
    else:
        u = check_noise_shape("u", check_tensor("u", u), rate.shape, "rate's shape")
        u = _check_unit(u.to(device=rate.device, dtype=rate.dtype))
    return _rounded(-torch.log(u) / rate, out_dtype)


def _reference_tensor(dist: Distribution) -> torch.Tensor:
    """A floating tensor among the distribution's parameters, for the noise's dtype and device."""
    for value in vars(dist).values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
        if isinstance(value, Distribution):
            return _reference_tensor(value)
    return torch.zeros(())


def inverse_cdf(dist: Distribution, u=None, sample_shape=(), generator=None) -> torch.Tensor:
    r"""Sample any univariate distribution with a differentiable inverse CDF: :math:`x = F_\theta^{-1}(u)`.

    If :math:`u \sim \mathcal U(0,1)` then :math:`P(F^{-1}(u) \le x) = P(u \le F(x)) = F(x)`.
    Differentiating :math:`F_\theta(x) = u` at fixed :math:`u` gives the pathwise derivative
    :math:`\partial x/\partial\theta = -\,\partial_\theta F_\theta(x) / p_\theta(x)`, which autograd
    computes through ``dist.icdf``. ``u`` is clamped into :math:`[\epsilon/2, 1 - \epsilon/2]`
    (:math:`\epsilon` the dtype's machine epsilon), symmetric about 1/2 because icdfs compute
    :math:`2u - 1` or :math:`u - 1/2`, so distributions with unbounded support give finite
    samples even for u exactly 0 or 1.

    Args:
        dist: a ``torch.distributions.Distribution`` implementing ``icdf``
            (``Normal``, ``Laplace``, ``Cauchy``, ``Exponential``, ``Uniform``, and
            ``TransformedDistribution`` s built from them with monotone transforms,
            such as ``Gumbel`` and ``Weibull``).
        u: uniform noise in :math:`[0, 1]` of shape ``sample_shape + dist.batch_shape``.
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
    if dist.event_shape != torch.Size():
        raise ValueError(f"dist must be univariate (event_shape ()), got event_shape {tuple(dist.event_shape)}")
    like = _reference_tensor(dist)
    out_dtype = like.dtype
    ct = compute_dtype(like.dtype)
    _check_generator(generator)
    if u is None:
        shape = _sample_shape(sample_shape) + dist.batch_shape
        u = _uniform_open(shape, generator, like.device, ct)
    else:
        u = check_noise_shape("u", check_tensor("u", u), dist.batch_shape, "dist.batch_shape")
        u = _check_unit(u.to(device=like.device, dtype=ct))
    u = _clamp_unit_symmetric(u)
    try:
        return _rounded(dist.icdf(u), out_dtype)
    except NotImplementedError as err:
        raise ValueError(
            f"dist must implement icdf for inverse_cdf; {type(dist).__name__} does not "
            "(see implicit reparameterization in chapter 4, or use dist.rsample)"
        ) from err
