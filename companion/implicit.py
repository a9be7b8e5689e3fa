r"""Implicit reparameterization gradients, computed independently of torch's samplers.

When a distribution's CDF :math:`F(z;\alpha)` has no closed-form inverse (the Gamma,
the Beta), samplers use rejection or other tricks, and :math:`z` is no longer an
explicit differentiable function of :math:`\alpha` and fixed noise. Figurnov, Mohamed
and Mnih (2018) differentiate the identity :math:`F(z;\alpha) = u` instead: holding
the uniform :math:`u` fixed,

.. math::

    \frac{\partial F}{\partial z}\frac{dz}{d\alpha} + \frac{\partial F}{\partial\alpha} = 0
    \quad\Longrightarrow\quad
    \frac{dz}{d\alpha} = -\,\frac{\partial F(z;\alpha)/\partial\alpha}{p(z;\alpha)} ,

which needs only :math:`z` (from any exact sampler), the density, and the CDF's
derivative in the parameter. ``torch.distributions.Gamma.rsample`` implements this
with its own series and asymptotic approximations of :math:`\partial F/\partial\alpha`;
this module computes it a second, independent way, in float64 with SciPy: a
sixth-order central finite difference of the regularized incomplete gamma (or
beta) function *in the parameter*, which is a smooth deterministic function, or
adaptive quadrature of the integral that defines it. (A finite difference of a
*seeded sampler* would be a different and, for rejection samplers, wrong thing.)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from scipy import integrate, special

from companion.validation import check_choice

__all__ = ["gamma_cdf_grad_alpha", "gamma_sample_grad", "beta_sample_grad"]

_METHODS = ("finite_difference", "quadrature")
# Sixth-order central difference: f'(a) ~ sum_j c_j f(a + j h) / h, error O(h^6).
_STENCIL = {1: 45.0 / 60.0, 2: -9.0 / 60.0, 3: 1.0 / 60.0}


def _as_array(name: str, value, positive: bool) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        arr = value.detach().cpu().to(torch.float64).numpy()
    elif isinstance(value, (np.ndarray, numbers.Real)) and not isinstance(value, bool):
        arr = np.asarray(value, dtype=np.float64)
    else:
        raise TypeError(f"{name} must be a number, NumPy array or torch.Tensor, got {type(value).__name__}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {arr.tolist() if arr.size <= 6 else 'an array with entries <= 0'}")
    return arr


def _broadcast(**arrays) -> list[np.ndarray]:
    """Broadcast the named arrays, or say which shapes disagree."""
    try:
        return np.broadcast_arrays(*arrays.values())
    except ValueError:
        listed = ", ".join(f"{k} {np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"the shapes of {', '.join(arrays)} must broadcast together, got {listed}") from None


def _method(method) -> str:
    return check_choice("method", method, _METHODS)


def _step(a: np.ndarray, spread: np.ndarray) -> np.ndarray:
    r"""Finite-difference step :math:`10^{-3}\min(a, 4 s)`: a thousandth of the scale on which
    the CDF changes with the parameter :math:`a`.

    That scale is :math:`a` itself for small :math:`a`, but for large :math:`a` it is the
    window of the distribution's spread :math:`s` in the parameter:
    :math:`P(a, x) \approx \Phi((x - a)/\sqrt a)` changes over a few :math:`\sqrt a`, so a
    step of :math:`10^{-3} a` would be as wide as the feature at :math:`a = 10^6` (and the
    derivative 3% off). (Below :math:`a = 16` the step is :math:`10^{-3} a` as before.)
    """
    return 1e-3 * np.minimum(a, 4.0 * spread)


def _central_difference(fn, a: np.ndarray, h: np.ndarray) -> np.ndarray:
    return sum(c * (fn(a + j * h) - fn(a - j * h)) for j, c in _STENCIL.items()) / h


def _dP_dalpha_quad(alpha: float, x: float) -> float:
    r"""d/dalpha P(alpha, x) by quadrature of d/dalpha of the incomplete gamma integral.

    Lower tail (x <= alpha): dP/da = (1/Gamma(a)) int_0^x t^(a-1) log(t) e^(-t) dt - psi(a) P.
    Upper tail: dP/da = -dQ/da, dQ/da = (1/Gamma(a)) int_x^inf t^(a-1) log(t) e^(-t) dt - psi(a) Q.
    Integrands are taken as exp(a log t - t - lgamma(a)) log t, so nothing overflows.
    """
    lg = math.lgamma(alpha)

    def integrand(t: float) -> float:
        return math.exp((alpha - 1.0) * math.log(t) - t - lg) * math.log(t) if t > 0 else 0.0

    opts = dict(limit=500, epsabs=0.0, epsrel=1e-12)
    if x <= alpha:
        if alpha < 1.0:
            # t = s^(1/alpha) removes the t^(alpha-1) singularity at 0: t^(a-1) dt = ds / a.
            def sub(s: float) -> float:
                if s <= 0:
                    return 0.0
                t = s ** (1.0 / alpha)
                return math.exp(-t - lg) * math.log(t) / alpha

            val, _ = integrate.quad(sub, 0.0, x**alpha, **opts)
        else:
            val, _ = integrate.quad(integrand, 0.0, x, **opts)
        return val - special.digamma(alpha) * special.gammainc(alpha, x)
    val, _ = integrate.quad(integrand, x, np.inf, **opts)
    return -(val - special.digamma(alpha) * special.gammaincc(alpha, x))


def gamma_cdf_grad_alpha(x, alpha, method: str = "finite_difference") -> np.ndarray:
    r""":math:`\partial P(\alpha, x)/\partial\alpha` of the regularized lower incomplete gamma function.

    :math:`P(\alpha, x) = \frac{1}{\Gamma(\alpha)}\int_0^x t^{\alpha-1}e^{-t}\,dt` is the CDF of
    :math:`\operatorname{Gamma}(\alpha, 1)` at :math:`x`.

    ``"finite_difference"``: the sixth-order central difference, step
    :math:`h = 10^{-3}\min(\alpha, 4\sqrt\alpha)` (the scale on which :math:`P` varies in
    :math:`\alpha`: :math:`\alpha` when small, a few spreads :math:`\sqrt\alpha` when large), of ``scipy.special.gammainc`` (for :math:`x \le \alpha`) or of
    :math:`-`\ ``gammaincc`` (the upper tail :math:`Q = 1 - P`, for :math:`x > \alpha`, which keeps
    relative accuracy where :math:`P \approx 1`).

    ``"quadrature"``: differentiating under the integral sign,

    .. math::

        \frac{\partial P}{\partial\alpha} = \frac{1}{\Gamma(\alpha)}\int_0^x t^{\alpha-1}\log t\; e^{-t}\,dt
            - \psi(\alpha)\, P(\alpha, x),

    with :math:`\psi` the digamma function (and the same for :math:`Q` on the upper
    tail), integrated adaptively with ``scipy.integrate.quad``. Slower; element by element.

    Returns a float64 NumPy array of the broadcast shape of ``x`` and ``alpha``.
    """
    x = _as_array("x", x, positive=True)
    alpha = _as_array("alpha", alpha, positive=True)
    method = _method(method)
    x, alpha = _broadcast(x=x, alpha=alpha)
    if method == "quadrature":
        flat = [_dP_dalpha_quad(float(a), float(xx)) for a, xx in zip(alpha.ravel(), x.ravel())]
        return np.asarray(flat, dtype=np.float64).reshape(x.shape)
    h = _step(alpha, np.sqrt(alpha))
    lower = _central_difference(lambda a: special.gammainc(a, x), alpha, h)
    upper = -_central_difference(lambda a: special.gammaincc(a, x), alpha, h)
    return np.where(x <= alpha, lower, upper)


def _to_tensor_like(arr: np.ndarray, like) -> torch.Tensor:
    device = like.device if isinstance(like, torch.Tensor) else "cpu"
    return torch.as_tensor(arr, dtype=torch.float64).to(device)


def gamma_sample_grad(z, alpha, rate=1.0, method: str = "finite_difference") -> torch.Tensor:
    r"""The implicit reparameterization gradient :math:`dz/d\alpha` of :math:`z \sim \operatorname{Gamma}(\alpha, \beta)`.

    With rate :math:`\beta`, :math:`F(z;\alpha) = P(\alpha, \beta z)` and
    :math:`p(z) = \beta^\alpha z^{\alpha-1}e^{-\beta z}/\Gamma(\alpha)`, so

    .. math::

        \frac{dz}{d\alpha} = -\,\frac{\partial_\alpha P(\alpha, \beta z)}{p(z;\alpha,\beta)} .

    The density is evaluated in log space. This is what
    ``Gamma(alpha, rate).rsample()`` backpropagates to ``alpha`` (torch computes it
    with its own approximations); here :math:`\partial_\alpha P` comes from
    :func:`gamma_cdf_grad_alpha`. (The gradient in the rate is explicit,
    :math:`dz/d\beta = -z/\beta`, since :math:`\beta z` is a standard Gamma.)

    Args:
        z: samples, every entry :math:`> 0`.
        alpha: shape :math:`\alpha > 0`, broadcastable with ``z``.
        rate: :math:`\beta > 0`, broadcastable with ``z``.
        method: ``"finite_difference"`` or ``"quadrature"``, see :func:`gamma_cdf_grad_alpha`.

    Returns:
        A float64 tensor of the broadcast shape, on ``z``'s device.
    """
    zz = _as_array("z", z, positive=True)
    a = _as_array("alpha", alpha, positive=True)
    b = _as_array("rate", rate, positive=True)
    zz, a, b = _broadcast(z=zz, alpha=a, rate=b)
    x = b * zz
    dP = gamma_cdf_grad_alpha(x, a, method=method)
    log_p = a * np.log(b) + (a - 1.0) * np.log(zz) - x - special.gammaln(a)
    return _to_tensor_like(-dP / np.exp(log_p), z)


def beta_sample_grad(z, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Implicit reparameterization gradients :math:`(dz/da, dz/db)` of :math:`z \sim \operatorname{Beta}(a, b)`.

    The CDF is the regularized incomplete beta function :math:`I_z(a, b)` (``scipy.special.betainc``),
    :math:`p(z) = z^{a-1}(1-z)^{b-1}/B(a, b)`, and

    .. math::

        \frac{dz}{da} = -\frac{\partial_a I_z(a,b)}{p(z)}, \qquad \frac{dz}{db} = -\frac{\partial_b I_z(a,b)}{p(z)},

    with the parameter derivatives taken by the sixth-order central difference (step
    :math:`10^{-3}\min(a, 4\sqrt{a + a^2/b})` in :math:`a`, the scale on which :math:`I_z` varies
    in :math:`a`, and symmetrically in :math:`b`) of :math:`I_z` when :math:`z \le 1/2` and of
    :math:`-(1 - I_z) = -I_{1-z}(b, a)` otherwise, so each tail keeps its relative accuracy.

    Returns:
        Two float64 tensors of the broadcast shape, on ``z``'s device.
    """
    zz = _as_array("z", z, positive=True)
    if not np.all(zz < 1):
        raise ValueError(f"z must lie in (0, 1), got values up to {float(zz.max())!r}")
    aa = _as_array("a", a, positive=True)
    bb = _as_array("b", b, positive=True)
    zz, aa, bb = _broadcast(z=zz, a=aa, b=bb)
    low = zz <= 0.5
    # The CDF varies in a on the scale min(a, 4 sqrt(a + a^2/b)): the log-odds of z has mean
    # ~log(a/b) and variance ~1/a + 1/b. Symmetrically for b.
    ha = _step(aa, np.sqrt(aa + aa * aa / bb))
    hb = _step(bb, np.sqrt(bb + bb * bb / aa))
    dI_da = np.where(
        low,
        _central_difference(lambda t: special.betainc(t, bb, zz), aa, ha),
        -_central_difference(lambda t: special.betainc(bb, t, 1.0 - zz), aa, ha),
    )
    dI_db = np.where(
        low,
        _central_difference(lambda t: special.betainc(aa, t, zz), bb, hb),
        -_central_difference(lambda t: special.betainc(t, aa, 1.0 - zz), bb, hb),
    )
    log_p = (aa - 1.0) * np.log(zz) + (bb - 1.0) * np.log1p(-zz) - special.betaln(aa, bb)
    p = np.exp(log_p)
    return _to_tensor_like(-dI_da / p, z), _to_tensor_like(-dI_db / p, z)
