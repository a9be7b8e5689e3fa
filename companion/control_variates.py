r"""Variance reduction beyond constant baselines: control variates, antithetics, quasi-Monte Carlo.

**Control variates.** Given per-sample estimates :math:`g_i` of a gradient and a
function :math:`h` whose mean :math:`\bar h = \mathbb E[h(x)]` is known,

.. math::

    \tilde g_i = g_i - \beta\,\bigl(h(x_i) - \bar h\bigr)

has the same mean for any constant :math:`\beta`, and the variance
:math:`\operatorname{Var} g - 2\beta \operatorname{Cov}(g, h) + \beta^2 \operatorname{Var} h`,
smallest at :math:`\beta^* = \operatorname{Cov}(g, h)/\operatorname{Var}(h)`, where it is
:math:`(1 - \rho^2)\operatorname{Var} g` with :math:`\rho` the correlation of
:math:`g` and :math:`h` (coordinate by coordinate). :func:`apply_control_variate`
implements it with a fixed :math:`\beta`, with :math:`\beta^*` estimated from the
batch (biased: :math:`\hat\beta` depends on the very samples it corrects), or
leave-one-out (unbiased: :math:`\hat\beta_{-i}` does not depend on sample :math:`i`).

**The delta method** (Paisley et al. 2012; Mohamed et al. 2020, section 7.4)
builds :math:`h` for a Gaussian :math:`x \sim \mathcal N(\mu, \operatorname{diag}\sigma^2)`
from the second-order Taylor expansion of :math:`f` at the mean :math:`m = \mu`,

.. math::

    \tilde f(x) = f(m) + \nabla f(m)^\top (x - m) + \tfrac12 (x - m)^\top H (x - m),

whose expectation

.. math::

    \mathbb E[\tilde f] = f(m) + \nabla f(m)^\top(\mu - m)
        + \tfrac12 (\mu - m)^\top H (\mu - m) + \tfrac12 \sum_j H_{jj}\sigma_j^2

has the gradient :math:`\nabla_\mu = \nabla f(m)`, :math:`\partial_{\sigma_j} = H_{jj}\sigma_j` at
:math:`\mu = m` (the expansion point is held fixed). :func:`score_function_delta`
uses it with the score-function estimator: :math:`g_i = f(x_i) s_i` and
:math:`h_i = \tilde f(x_i) s_i` with :math:`\bar h = \nabla_\theta \mathbb E[\tilde f]`.
For a quadratic :math:`f`, :math:`\tilde f = f` and :math:`\beta = 1` leaves no variance.

**Antithetic and quasi-Monte Carlo noise** for the pathwise estimator
:math:`\nabla_\theta f(g_\theta(\varepsilon))`: :func:`antithetic_pathwise` pairs every
:math:`\varepsilon` with :math:`-\varepsilon` (or :math:`u` with :math:`1 - u`), and
:func:`qmc_pathwise` takes :math:`\varepsilon` from a scrambled Sobol sequence
(:func:`sobol_noise`), which fills the noise space more evenly than independent
draws; both keep the estimate unbiased.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
from torch.distributions import Distribution, Normal
from torch.func import grad, hessian, jacfwd

from companion.estimators import _check_common, _check_values, _make_dist
from companion.measure_valued import _base, _natural_and_jacobian
from companion.validation import check_choice, check_positive_int, check_tensor

__all__ = [
    "Coefficient",
    "optimal_coefficient",
    "apply_control_variate",
    "score_function_delta",
    "pathwise_from_noise",
    "antithetic_pathwise",
    "sobol_noise",
    "qmc_pathwise",
]

Coefficient = Union[float, int, str, torch.Tensor]
_BASES = ("normal", "uniform")


# --------------------------------------------------------------------------- control variates
def _check_pair(g, h):
    check_tensor("g", g)
    check_tensor("h", h)
    if g.shape != h.shape:
        raise ValueError(f"g and h must have the same shape, got {tuple(g.shape)} and {tuple(h.shape)}")
    if g.dim() < 1:
        raise ValueError(f"g must have a leading sample dimension, got shape {tuple(g.shape)}")


def optimal_coefficient(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r"""The variance-minimising coefficient estimated from a batch, per coordinate:
    :math:`\hat\beta = \sum_i (g_i - \bar g)(h_i - \bar h) / \sum_i (h_i - \bar h)^2`
    (0 where :math:`h` does not vary). ``g`` and ``h`` have the samples along dimension 0.
    """
    _check_pair(g, h)
    if g.shape[0] < 2:
        raise ValueError(f"optimal_coefficient needs at least 2 samples, got {g.shape[0]}")
    gc, hc = g - g.mean(0), h - h.mean(0)
    den = (hc * hc).sum(0)
    return torch.where(den > 0, (gc * hc).sum(0) / torch.where(den > 0, den, 1.0), 0.0)


def _loo_coefficient(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-sample coefficient from the other n - 1 samples, shape ``g.shape``."""
    n = g.shape[0]
    m = n - 1
    sg, sh = g.sum(0) - g, h.sum(0) - h
    sgh, shh = (g * h).sum(0) - g * h, (h * h).sum(0) - h * h
    cov = sgh - sg * sh / m
    var = shh - sh * sh / m
    return torch.where(var > 0, cov / torch.where(var > 0, var, 1.0), 0.0)


def apply_control_variate(
    g: torch.Tensor, h: torch.Tensor, h_mean, coefficient: Coefficient = "batch"
) -> torch.Tensor:
    r"""Per-sample estimates :math:`g_i - \beta (h_i - \bar h)`.

    Args:
        g: per-sample estimates, samples along dimension 0.
        h: the control variate's per-sample values, same shape.
        h_mean: its exact expectation :math:`\bar h` (broadcast against ``h[0]``).
        coefficient: a number or tensor :math:`\beta` (fixed: unbiased); ``"batch"``,
            :math:`\hat\beta` of :func:`optimal_coefficient` from these samples (biased
            at order :math:`1/N`); or ``"loo"``, :math:`\hat\beta_{-i}` from the other
            samples (unbiased, needs :math:`N \ge 3`).
    """
    _check_pair(g, h)
    h_mean = torch.as_tensor(h_mean, dtype=h.dtype, device=h.device)
    centred = h - h_mean
    if isinstance(coefficient, str):
        check_choice("coefficient", coefficient, ("batch", "loo"))
        if coefficient == "batch":
            beta = optimal_coefficient(g, h)
        else:
            if g.shape[0] < 3:
                raise ValueError(f"coefficient='loo' needs n_samples >= 3, got {g.shape[0]}")
            beta = _loo_coefficient(g, h)
    elif isinstance(coefficient, bool) or not isinstance(coefficient, (int, float, torch.Tensor)):
        raise TypeError(f"coefficient must be a number, a tensor, 'batch' or 'loo', got {coefficient!r}")
    else:
        beta = torch.as_tensor(coefficient, dtype=g.dtype, device=g.device)
        if not bool(torch.isfinite(beta).all()):
            raise ValueError(f"coefficient must be finite, got {coefficient!r}")
    return g - beta * centred


def _gaussian_parts(dist: Distribution):
    base = _base(dist)
    if type(base) is not Normal:
        raise ValueError(
            "the delta-method control variate needs a Normal or Independent(Normal) "
            f"distribution, got {type(dist).__name__}"
        )
    return base


def score_function_delta(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    coefficient: Coefficient = 1.0,
) -> torch.Tensor:
    r"""Score-function estimates with the delta-method control variate, for a diagonal Gaussian.

    With :math:`s_i = \nabla_\theta \log p_\theta(x_i)` and :math:`\tilde f` the
    second-order Taylor expansion of :math:`f` at the mean (module docstring),

    .. math::

        \hat g_i = f(x_i)\, s_i - \beta\bigl(\tilde f(x_i)\, s_i - \nabla_\theta \mathbb E[\tilde f]\bigr).

    ``f`` must be twice differentiable by ``torch.func`` at the mean (it is called on
    a batch of one sample). Costs one evaluation of ``f`` per sample plus a gradient
    and a Hessian at the mean, once.

    Args:
        f, dist_fn, params, n_samples: as :func:`companion.estimators.score_function`;
            ``dist_fn`` returns a ``Normal`` or ``Independent(Normal(...), k)``.
        coefficient: :math:`\beta` (default 1), ``"batch"`` or ``"loo"``; see
            :func:`apply_control_variate`.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)``.
    """
    n = _check_common(f, dist_fn, params, n_samples)
    device, dtype = params.device, params.dtype
    theta = params.detach().to("cpu")
    dist = _make_dist(dist_fn, theta)
    base = _gaussian_parts(dist)
    eta, jac = _natural_and_jacobian(dist_fn, theta)  # eta = (loc, scale) stacked
    entries = math.prod(base.batch_shape)
    loc, scale = eta.reshape(2, entries)
    shape = tuple(dist.batch_shape) + tuple(dist.event_shape)

    def f_one(y):  # f at one sample y (flattened), as a scalar
        return f(y.reshape((1,) + shape).to(device)).reshape(()).to("cpu")

    m = loc.detach()
    f_m = f_one(m).detach()
    grad_m = grad(f_one)(m).detach()
    hess_m = hessian(f_one)(m).detach().reshape(entries, entries)

    with torch.no_grad():
        x = dist.sample((n,))
    values = _check_values(f(x.to(device)), n).detach().to("cpu", dtype)
    d = x.reshape(n, entries).to(dtype) - m
    taylor = f_m + d @ grad_m + 0.5 * ((d @ hess_m) * d).sum(-1)
    eps = d / scale
    score = torch.cat([eps / scale, (eps**2 - 1.0) / scale], dim=1) @ jac  # (n, P)
    g = values[:, None] * score
    h = taylor[:, None] * score
    h_mean = torch.cat([grad_m, torch.diagonal(hess_m) * scale]) @ jac
    out = apply_control_variate(g, h, h_mean, coefficient)
    return out.reshape((n,) + tuple(params.shape)).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- noise
def _check_base(base) -> str:
    return check_choice("base", base, _BASES)


def sobol_noise(n: int, dim: int, base: str = "normal", seed: int | None = None) -> torch.Tensor:
    r"""Scrambled Sobol points as base noise, shape ``(n, dim)`` (drawn on the CPU).

    ``base="uniform"``: the points :math:`u \in (0, 1)^{d}` (clamped to the open
    interval); ``"normal"``: :math:`\Phi^{-1}(u)`, standard normal in each
    coordinate. Each scrambling (``seed``; by default drawn from torch's global CPU
    generator, so :func:`companion.device.setup` fixes it) makes every point
    uniformly distributed, so averages stay unbiased; powers of two for ``n`` keep
    the sequence's balance.
    """
    n = check_positive_int("n", n)
    dim = check_positive_int("dim", dim)
    base = _check_base(base)
    if dim > torch.quasirandom.SobolEngine.MAXDIM:
        raise ValueError(f"dim must be <= {torch.quasirandom.SobolEngine.MAXDIM}, got {dim}")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    else:
        seed = check_positive_int("seed", seed, minimum=0)
    engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=seed)
    u = engine.draw(n, dtype=torch.float64)
    tiny = torch.finfo(torch.float32).eps
    u = u.clamp(min=tiny, max=1.0 - tiny)
    if base == "uniform":
        return u.to(torch.get_default_dtype())
    return (math.sqrt(2.0) * torch.special.erfinv(2.0 * u - 1.0)).to(torch.get_default_dtype())


def pathwise_from_noise(
    f: Callable[[torch.Tensor], torch.Tensor],
    sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    r"""Per-sample pathwise estimates :math:`\nabla_\theta f(g_\theta(\varepsilon_i))` for given noise.

    ``sampler(params, noise)`` is the reparameterization :math:`g_\theta`, mapping a
    batch of base noise (leading dimension :math:`N`) to a batch of samples, e.g.
    ``lambda p, e: p[0] + p[1] * e`` or :func:`companion.reparam.gaussian`.
    Forward mode (``torch.func.jacfwd``), one pass per entry of ``params``.

    Returns:
        Tensor of shape ``(N, *params.shape)`` on ``params``' device.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {f!r}")
    if not callable(sampler):
        raise TypeError(f"sampler must be callable, got {sampler!r}")
    check_tensor("params", params)
    check_tensor("noise", noise)
    if noise.dim() < 1:
        raise ValueError(f"noise must have a leading sample dimension, got shape {tuple(noise.shape)}")
    n = noise.shape[0]
    device = params.device
    noise = noise.to(device=device, dtype=params.dtype)

    def batch(p):
        return _check_values(f(sampler(p, noise)), n)

    return jacfwd(batch)(params.detach())


def _draw(n: int, noise_shape, base: str) -> torch.Tensor:
    shape = (n,) + tuple(noise_shape)
    if base == "normal":
        return torch.randn(shape)
    u = torch.rand(shape)
    tiny = torch.finfo(u.dtype).eps
    return u.clamp_(min=tiny, max=1.0 - tiny)


def antithetic_pathwise(
    f: Callable[[torch.Tensor], torch.Tensor],
    sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: torch.Tensor,
    n_pairs: int,
    noise_shape=(),
    base: str = "normal",
) -> torch.Tensor:
    r"""Antithetic pathwise estimates: one per pair, :math:`\tfrac12\bigl(\hat g(\varepsilon_i) + \hat g(\varepsilon_i')\bigr)`.

    :math:`\varepsilon_i' = -\varepsilon_i` for standard normal noise (``base="normal"``),
    :math:`u_i' = 1 - u_i` for uniform noise (``"uniform"``): both have the law of the
    original, so each pair's average is unbiased; its variance is
    :math:`\tfrac12(\operatorname{Var}\hat g + \operatorname{Cov}(\hat g(\varepsilon), \hat g(\varepsilon')))`,
    below two independent samples' whenever the covariance is negative (exactly
    cancelling the odd part of :math:`\hat g`). Two evaluations of ``f`` per pair.

    Returns:
        Tensor of shape ``(n_pairs, *params.shape)``.
    """
    n = check_positive_int("n_pairs", n_pairs)
    base = _check_base(base)
    eps = _draw(n, noise_shape, base)
    mirror = -eps if base == "normal" else 1.0 - eps
    g = pathwise_from_noise(f, sampler, params, torch.cat([eps, mirror]))
    return 0.5 * (g[:n] + g[n:])


def qmc_pathwise(
    f: Callable[[torch.Tensor], torch.Tensor],
    sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: torch.Tensor,
    n_samples: int,
    noise_shape=(),
    base: str = "normal",
    seed: int | None = None,
) -> torch.Tensor:
    r"""Pathwise estimates on randomised quasi-Monte Carlo noise (:func:`sobol_noise`).

    The rows are **not** independent: their mean is the estimate (unbiased over the
    scrambling), but ``.var(0) / n_samples`` is not its variance; measure that over
    independent scramblings (different ``seed``).

    Returns:
        Tensor of shape ``(n_samples, *params.shape)``.
    """
    n = check_positive_int("n_samples", n_samples)
    base = _check_base(base)
    dim = math.prod(noise_shape)
    eps = sobol_noise(n, dim, base=base, seed=seed).reshape((n,) + tuple(noise_shape))
    return pathwise_from_noise(f, sampler, params, eps)

