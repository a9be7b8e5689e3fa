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

``ROWS`` holds chapter 4's table, one :class:`Row` per distribution with its map
written out, and :func:`check_row` runs both checks on one row.
:func:`bivariate_normal_maps` is the chapter's multivariate example: one bivariate
normal from the same uniforms by sequential inverse CDFs and by a Cholesky factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from scipy import stats
from torch.distributions import (
    Beta, Cauchy, Chi2, Dirichlet, Exponential, Gamma, Gumbel, Kumaraswamy, Laplace, LogNormal, Normal,
    Pareto, StudentT, TransformedDistribution, Uniform, Weibull)
from torch.distributions.transforms import AffineTransform, SigmoidTransform

from companion.device import randn, uniform_open
from companion.reparam import inverse_cdf
from companion.validation import check_choice, check_positive_int

__all__ = ["KINDS", "ROWS", "Row", "RowCheck", "bivariate_normal_maps", "check_row",
           "gradient_check", "ks_p"]


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



def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Row:
    r"""One row of the table: a sampler :math:`x = g_\theta(\text{noise})` and what checks it.

    Attributes:
        kind: ``"location-scale"``, ``"inverse CDF"`` or ``"transformation"``.
        name: the distribution, as the table prints it.
        sample: ``sample(n, *params)`` draws its own noise (float64, torch's global CPU
            generator) and returns ``n`` draws; each parameter arrives with one copy per
            draw, shape ``(n, *shape)``.
        reference: ``reference(n)``: ``n`` draws of the same law from ``torch.distributions``.
        values: the parameter values :math:`\theta` (empty: nothing to differentiate).
        exact_mean: :math:`m(\theta) = \mathbb E[h(x)]` in closed form, differentiable
            (``None`` for a row without parameters).
        stat: the statistic :math:`h` (default the identity).
    """

    kind: str
    name: str
    sample: Callable[..., torch.Tensor]
    reference: Callable[[int], torch.Tensor]
    values: tuple = ()
    exact_mean: Optional[Callable[..., torch.Tensor]] = None
    stat: Callable[[torch.Tensor], torch.Tensor] = _identity


def _u(n: int, *shape: int) -> torch.Tensor:
    """Uniform noise on (0, 1), float64, ``(n, *shape)``."""
    return uniform_open((n,) + shape, dtype=torch.float64)


def _e(n: int, *shape: int) -> torch.Tensor:
    """Standard normal noise, float64, ``(n, *shape)``."""
    return randn((n,) + shape, dtype=torch.float64)


def _square(x: torch.Tensor) -> torch.Tensor:
    return x**2


def _laplace(n, m, b):
    v = _u(n) - 0.5
    return m - b * torch.sign(v) * torch.log1p(-2 * v.abs())


def _student_t(n, nu, m, s):
    return m + s * _e(n) / Gamma(nu / 2, nu / 2).rsample().sqrt()


def _beta_from_gammas(n, a1, a2):
    g1, g2 = Gamma(a1, 1.0).rsample(), Gamma(a2, 1.0).rsample()
    return g1 / (g1 + g2)


def _dirichlet_from_gammas(n, conc):
    g = Gamma(conc, 1.0).rsample()
    return g / g.sum(-1, keepdim=True)


_LOGISTIC = TransformedDistribution(Uniform(0.0, 1.0), [SigmoidTransform().inv, AffineTransform(0.3, 0.8)])
_DIRICHLET = torch.tensor([2.5, 0.7, 1.3])

#: The kinds of row, in the table's order.
KINDS = ("location-scale", "inverse CDF", "transformation")

#: Chapter 4's table: each map, its reference sampler and its closed-form check.
ROWS: tuple[Row, ...] = (
    Row("location-scale", "Normal(0.3, 1.7)", lambda n, m, s: m + s * _e(n),
        lambda n: Normal(0.3, 1.7).sample((n,)), (0.3, 1.7), lambda m, s: m**2 + s**2, _square),
    Row("location-scale", "Logistic(0.3, 0.8)", lambda n, m, s: m + s * torch.logit(_u(n)),
        lambda n: _LOGISTIC.sample((n,)), (0.3, 0.8), lambda m, s: m**2 + s**2 * math.pi**2 / 3, _square),
    Row("location-scale", "Laplace(0.3, 0.9)", _laplace,
        lambda n: Laplace(0.3, 0.9).sample((n,)), (0.3, 0.9), lambda m, b: m**2 + 2 * b**2, _square),
    Row("location-scale", "Cauchy(0.3, 0.6)", lambda n, m, g: m + g * torch.tan(math.pi * (_u(n) - 0.5)),
        lambda n: Cauchy(0.3, 0.6).sample((n,)), (0.3, 0.6),
        lambda m, g: (g + 1) / ((g + 1) ** 2 + m**2), lambda x: 1 / (1 + x**2)),
    Row("location-scale", "StudentT(6, 0.3, 0.9)", _student_t,
        lambda n: StudentT(6.0, 0.3, 0.9).sample((n,)), (6.0, 0.3, 0.9),
        lambda nu, m, s: m**2 + s**2 * nu / (nu - 2), _square),
    Row("location-scale", "Uniform(-0.5, 2)", lambda n, a, b: a + (b - a) * _u(n),
        lambda n: Uniform(-0.5, 2.0).sample((n,)), (-0.5, 2.0), lambda a, b: (a**2 + a * b + b**2) / 3, _square),
    Row("inverse CDF", "Exponential(2)", lambda n, r: -torch.log(_u(n)) / r,
        lambda n: Exponential(2.0).sample((n,)), (2.0,), lambda r: 1 / r),
    Row("inverse CDF", "Weibull(1.5, 0.7)", lambda n, s, k: s * (-torch.log(_u(n))) ** (1 / k),
        lambda n: Weibull(1.5, 0.7).sample((n,)), (1.5, 0.7), lambda s, k: Weibull(s, k).mean),
    Row("inverse CDF", "Gumbel(1, 2)", lambda n, m, b: m - b * torch.log(-torch.log(_u(n))),
        lambda n: Gumbel(1.0, 2.0).sample((n,)), (1.0, 2.0),
        lambda m, b: Gumbel(m, b).variance + Gumbel(m, b).mean ** 2, _square),
    Row("inverse CDF", "Pareto(1.2, 3)", lambda n, xm, a: xm * _u(n) ** (-1 / a),
        lambda n: Pareto(1.2, 3.0).sample((n,)), (1.2, 3.0), lambda xm, a: Pareto(xm, a).mean),
    Row("inverse CDF", "Kumaraswamy(2, 5)", lambda n, a, b: (1 - _u(n) ** (1 / b)) ** (1 / a),
        lambda n: Kumaraswamy(2.0, 5.0).sample((n,)), (2.0, 5.0), lambda a, b: Kumaraswamy(a, b).mean),
    Row("transformation", "LogNormal(0.2, 0.5)", lambda n, m, s: torch.exp(m + s * _e(n)),
        lambda n: LogNormal(0.2, 0.5).sample((n,)), (0.2, 0.5), lambda m, s: LogNormal(m, s).mean),
    Row("transformation", "Chi2(3) = sum of 3 squares", lambda n: (_e(n, 3) ** 2).sum(-1),
        lambda n: Chi2(3.0).sample((n,))),
    Row("transformation", "Gamma(3, 1.5) = Erlang", lambda n, r: -torch.log(_u(n, 3)).sum(-1) / r,
        lambda n: Gamma(3.0, 1.5).sample((n,)), (1.5,), lambda r: 3 / r),
    Row("transformation", "Beta(2.5, 0.7) via Gammas", _beta_from_gammas,
        lambda n: Beta(2.5, 0.7).sample((n,)), (2.5, 0.7), lambda a1, a2: a1 / (a1 + a2)),
    Row("transformation", "Dirichlet(2.5, 0.7, 1.3)", _dirichlet_from_gammas,
        lambda n: Dirichlet(_DIRICHLET).sample((n,))[:, 0], (_DIRICHLET,),
        lambda c: c[0] / c.sum(), lambda x: x[:, 0]),
)


@dataclass(frozen=True)
class RowCheck:
    """The result of :func:`check_row` for one row."""

    kind: str
    name: str
    ks_p: float  #: two-sample KS p-value of the map's draws against the reference's
    grad_z: Optional[float]  #: largest :math:`|\text{mean} - \text{exact}|` / SE over the parameters (None: no parameter)

    def line(self) -> str:
        """One line: the name, the KS p-value and the gradient's largest :math:`|z|`."""
        note = "no parameter" if self.grad_z is None else f"gradient max |z| {self.grad_z:.2f}"
        return f"{self.name:25s} KS p {self.ks_p:.3f}  {note}"


def check_row(row: Row, n: int) -> RowCheck:
    r"""Both checks on one row with ``n`` draws each.

    In this order (which fixes the random stream): ``n`` reference draws; ``n`` draws of
    the map, compared with them by :func:`ks_p` (a vector-valued draw by its first
    coordinate); then, for a row with parameters, :func:`gradient_check` on fresh draws,
    reduced to the largest :math:`|\text{mean} - \text{exact}| / \text{SE}` over the
    parameters' entries.
    """
    if not isinstance(row, Row):
        raise TypeError(f"row must be a Row, got {type(row).__name__}")
    n = check_positive_int("n", n, minimum=2)
    check_choice("row.kind", row.kind, KINDS)
    reference = row.reference(n)
    vals = [torch.as_tensor(v, dtype=torch.float64) for v in row.values]
    x = row.sample(n, *[v.expand((n,) + v.shape) for v in vals]).detach()
    p = ks_p(x[:, 0] if x.dim() > 1 else x, reference)
    z = None
    if row.exact_mean is not None:
        res = gradient_check(lambda *ps: row.sample(n, *ps), row.exact_mean, row.values, n, row.stat)
        z = max(((m - e).abs() / s).max().item() for m, s, e in res)
    return RowCheck(row.kind, row.name, p, z)


def bivariate_normal_maps(m: torch.Tensor, s1: torch.Tensor, rho: torch.Tensor,
                          s2: torch.Tensor, u: torch.Tensor):
    r"""One bivariate normal from the same uniforms ``u``, by two maps; chapter 4's example.

    The law is :math:`\mathcal N(m, \Sigma)` with standard deviations ``s1``, ``s2`` and
    correlation ``rho``. The sequential map inverts one CDF at a time,
    :math:`x_1 = F_1^{-1}(u_1)`, then :math:`x_2 = F^{-1}(u_2 \mid x_1)`, the conditional
    :math:`\mathcal N(m_2 + \rho s_2 (x_1 - m_1)/s_1,\ s_2^2 (1 - \rho^2))`. The Cholesky
    map is :math:`m + L z` with :math:`z = \Phi^{-1}(u)` and :math:`L` the factor of
    :math:`\Sigma`, built per sample so that a per-sample ``rho`` or ``s2`` (shape ``(n,)``,
    one copy per sample) gives per-sample gradients. The two maps agree exactly.

    Args:
        m: the mean, shape ``(2,)``.
        s1: the first standard deviation, a positive scalar tensor.
        rho: the correlation, in (-1, 1): a scalar or shape ``(n,)`` tensor.
        s2: the second standard deviation, positive: a scalar or shape ``(n,)`` tensor.
        u: uniforms in (0, 1), shape ``(n, 2)``.

    Returns:
        ``(x_seq, x_chol, z)``, each of shape ``(n, 2)``.
    """
    for name, t in (("m", m), ("s1", s1), ("rho", rho), ("s2", s2), ("u", u)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if m.shape != (2,):
        raise ValueError(f"m must have shape (2,), got {tuple(m.shape)}")
    if u.dim() != 2 or u.shape[-1] != 2:
        raise ValueError(f"u must have shape (n, 2), got {tuple(u.shape)}")
    if ((u <= 0) | (u >= 1)).any():
        raise ValueError(f"u must lie in (0, 1), got values from {u.min().item()} "
                         f"to {u.max().item()}")
    if (rho.detach().abs() >= 1).any():
        raise ValueError(f"rho must lie in (-1, 1), got {rho.detach().flatten()[:3].tolist()}")
    for name, t in (("s1", s1), ("s2", s2)):
        if (t.detach() <= 0).any():
            raise ValueError(f"{name} must be positive, got {t.detach().flatten()[:3].tolist()}")
    rho, s2 = torch.broadcast_tensors(rho, s2)
    x1 = inverse_cdf(Normal(m[0], s1), u=u[:, 0])
    cond = Normal(m[1] + rho * s2 / s1 * (x1 - m[0]), s2 * (1 - rho**2).sqrt())
    x_seq = torch.stack([x1, inverse_cdf(cond, u=u[:, 1])], -1)
    S = torch.stack([torch.stack([s1**2 + 0 * rho, rho * s1 * s2], -1),
                     torch.stack([rho * s1 * s2, s2**2 + 0 * rho], -1)], -2)
    z = Normal(0.0, 1.0).icdf(u)                         # the same noise, as normals
    L_i = torch.linalg.cholesky(S)                       # one factor per sample
    x_chol = m + (L_i @ z.unsqueeze(-1)).squeeze(-1)     # m + L z
    return x_seq, x_chol, z
