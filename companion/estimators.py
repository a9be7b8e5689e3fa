r"""Monte Carlo estimators of :math:`\nabla_\theta \mathbb E_{x \sim p_\theta}[f(x)]`.

Both estimators return the **per-sample gradient estimates**, a tensor of shape
``(n_samples, *params.shape)`` whose row :math:`i` is the estimate built from the
single sample :math:`x_i`. So ``.mean(0)`` is the Monte Carlo estimate, and
``.var(0)`` the variance of one sample's estimate (divide by ``n_samples`` for the
variance of the mean).

Conventions shared by both functions:

* ``dist_fn(params)`` returns a ``torch.distributions.Distribution``. It is called
  with ``params`` moved to the **CPU**, where all randomness is drawn (torch's
  global CPU generator, seeded by ``torch.manual_seed``), so that CPU and GPU runs
  of the same seed see the same samples; see :mod:`companion.device`.
* ``f`` maps a batch of samples with leading dimension ``n_samples`` (on
  ``params``' device) to a tensor of ``n_samples`` values, one per sample, each
  depending on its own sample only.
* Per-sample gradients are computed with ``torch.func`` transforms, never a Python
  loop over the samples.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Callable, Union

import torch
from torch.distributions import Distribution
from torch.func import grad, jacfwd, vmap

from companion.validation import check_finite, check_positive_int, check_tensor

__all__ = ["score_function", "pathwise", "Baseline"]

Baseline = Union[None, float, int, str]


@contextlib.contextmanager
def _no_validation():
    """Turn off ``torch.distributions`` argument validation inside ``torch.func`` transforms.

    Validation branches on tensor values (``if not valid.all()``), which ``vmap``
    cannot trace; the companion validates its own inputs up front instead.
    """
    old = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(old)


def _check_common(f, dist_fn, params, n_samples) -> int:
    if not callable(f):
        raise TypeError(f"f must be callable, got {f!r} of type {type(f).__name__}")
    if not callable(dist_fn):
        raise TypeError(f"dist_fn must be callable, got {dist_fn!r} of type {type(dist_fn).__name__}")
    check_tensor("params", params)
    check_finite("params", params)
    return check_positive_int("n_samples", n_samples)


def _make_dist(dist_fn, params_cpu: torch.Tensor) -> Distribution:
    """Call ``dist_fn`` with validation on, so bad parameters fail with a clear message."""
    try:
        dist = dist_fn(params_cpu)
    except ValueError as err:
        raise ValueError(f"dist_fn(params) rejected params={params_cpu.tolist()}: {err}") from err
    if not isinstance(dist, Distribution):
        raise TypeError(
            f"dist_fn must return a torch.distributions.Distribution, got {type(dist).__name__}"
        )
    return dist


def _check_values(values, n_samples: int) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"f must return a torch.Tensor, got {type(values).__name__}")
    if tuple(values.shape) != (n_samples,):
        raise ValueError(
            f"f must map a batch of n_samples={n_samples} samples to a tensor of shape "
            f"({n_samples},), one value per sample; it returned shape {tuple(values.shape)}"
        )
    return values


def _check_baseline(baseline, n_samples: int):
    if baseline is None:
        return None
    if isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(f"baseline must be None, a number or 'loo', got {baseline!r}")
        if n_samples < 2:
            raise ValueError(f"baseline='loo' needs n_samples >= 2, got n_samples={n_samples}")
        return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real):
        raise TypeError(
            f"baseline must be None, a number or 'loo', got {baseline!r} of type {type(baseline).__name__}"
        )
    if baseline != baseline or abs(baseline) == float("inf"):
        raise ValueError(f"baseline must be finite, got {baseline!r}")
    return float(baseline)


def score_function(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    baseline: Baseline = None,
) -> torch.Tensor:
    r"""Per-sample score-function (log-derivative, REINFORCE) gradient estimates.

    With :math:`x_i \sim p_\theta` independent and a baseline :math:`b_i`,

    .. math::

        \hat g_i = \bigl(f(x_i) - b_i\bigr)\, \nabla_\theta \log p_\theta(x_i),
        \qquad
        \nabla_\theta \mathbb E_{p_\theta}[f(x)] \approx \frac1N \sum_{i=1}^N \hat g_i .

    The estimate is unbiased for any baseline that does not depend on
    :math:`x_i`, because :math:`\mathbb E_{p_\theta}[\nabla_\theta \log p_\theta(x)] = 0`.

    Args:
        f: batch of samples ``(n_samples, ...)`` to values ``(n_samples,)``; need not
            be differentiable, and ``x`` may be discrete.
        dist_fn: parameters to a ``torch.distributions.Distribution`` with ``log_prob``.
        params: the floating-point parameter tensor :math:`\theta`.
        n_samples: the number of samples :math:`N \ge 1`.
        baseline: ``None`` (:math:`b_i = 0`); a number :math:`b` (a constant
            control variate); or ``"loo"``, the leave-one-out mean
            :math:`b_i = \frac{1}{N-1}\sum_{j \ne i} f(x_j)`, which is independent of
            :math:`x_i` and so keeps the estimator unbiased.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)`` on ``params``' device.
    """
    n = _check_common(f, dist_fn, params, n_samples)
    baseline = _check_baseline(baseline, n)
    device = params.device
    theta = params.detach().to("cpu")

    with torch.no_grad():
        x = _make_dist(dist_fn, theta).sample((n,))
    values = _check_values(f(x.to(device)), n).detach()

    def log_prob(p, xi):
        # The joint log-density of one sample (sum over independent batch entries).
        return dist_fn(p).log_prob(xi).sum()

    with _no_validation():
        scores = vmap(grad(log_prob), in_dims=(None, 0))(theta, x).to(device)

    if baseline is None:
        weights = values
    elif baseline == "loo":
        weights = values - (values.sum() - values) / (n - 1)
    else:
        weights = values - baseline
    return weights.reshape((n,) + (1,) * params.dim()) * scores


def pathwise(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
) -> torch.Tensor:
    r"""Per-sample pathwise (reparameterization) gradient estimates.

    When :math:`x = g_\theta(\varepsilon)` with :math:`\varepsilon \sim p(\varepsilon)`
    free of :math:`\theta` (``rsample`` in ``torch.distributions``),

    .. math::

        \hat g_i = \nabla_\theta f\bigl(g_\theta(\varepsilon_i)\bigr)
                 = \Bigl(\frac{\partial g_\theta(\varepsilon_i)}{\partial \theta}\Bigr)^{\!\top}
                   \nabla_x f(x)\big|_{x = g_\theta(\varepsilon_i)} .

    Unbiased when :math:`f` is differentiable (almost everywhere is not enough: a
    step function gives :math:`\hat g_i = 0`).

    Forward-mode differentiation (``torch.func.jacfwd``, one pass per parameter)
    computes every sample's gradient at once; for samplers without forward-mode
    support (``Gamma``'s implicit reparameterization) it falls back to reverse mode
    vectorised over samples with ``torch.func.vmap``.

    Raises:
        ValueError: if the distribution has no ``rsample``; use
            :func:`score_function`, or :func:`companion.gumbel.gumbel_softmax` for a
            categorical variable.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)`` on ``params``' device.
    """
    n = _check_common(f, dist_fn, params, n_samples)
    device = params.device
    theta = params.detach().to("cpu")
    dist = _make_dist(dist_fn, theta)
    if not dist.has_rsample:
        raise ValueError(
            f"pathwise needs a reparameterizable distribution, but {type(dist).__name__} has no "
            "rsample (has_rsample is False). Use companion.estimators.score_function, or for a "
            "categorical variable the relaxation companion.gumbel.gumbel_softmax."
        )

    def batch_values(p):
        x = dist_fn(p).rsample((n,))
        return _check_values(f(x.to(device)), n).to("cpu")

    rng_state = torch.get_rng_state()
    try:
        with _no_validation():
            jac = jacfwd(batch_values, randomness="same")(theta)
    except NotImplementedError:
        torch.set_rng_state(rng_state)

        def one_value(p, _index):
            x = dist_fn(p).rsample()
            return f(x.unsqueeze(0).to(device)).reshape(()).to("cpu")

        # Validate the output shape once, outside the transform.
        with torch.no_grad():
            _check_values(f(dist.sample((n,)).to(device)), n)
        torch.set_rng_state(rng_state)
        with _no_validation(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            jac = vmap(grad(one_value), in_dims=(None, 0), randomness="different")(theta, torch.arange(n))
    return jac.to(device)
from companion.multisample import elbo_gradient, iwae_bound  # noqa: E402,F401
