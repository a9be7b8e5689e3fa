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
* A non-finite value of ``f`` (or of its gradient, or of the score) is a
  ``ValueError`` that says how many samples and shows one, never a silent NaN.
* Memory grows with ``n_samples`` (the result alone holds
  ``n_samples * params.numel()`` numbers): a call that would need more memory than
  the machine has available fails at once and says how much it needs.
  :func:`score_function` computes its scores in chunks of ``chunk_size`` samples,
  with the same result as one chunk.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Callable, Union

import torch
from torch.distributions import Distribution
from torch.func import grad, jacfwd, vmap

from companion import validation
from companion.validation import _show, check_finite, check_positive_int, check_tensor

__all__ = [
    "score_function", "pathwise", "loo_baseline", "check_baseline", "Baseline",
    # re-exported from their own modules (see the end of this file)
    "measure_valued", "arm", "disarm", "rebar", "elbo_gradient", "iwae_bound",
]

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


#: Samples per chunk of :func:`score_function`'s per-sample scores (by default).
DEFAULT_CHUNK_SIZE = 2**20


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_memory(what: str, n: int, bytes_per_sample: float, fixed: float = 0.0) -> None:
    """Fail fast, naming ``n_samples``, if the call would need more memory than is available."""
    need = n * bytes_per_sample + fixed
    if need < 2**30:  # a GiB: not worth reading /proc on every call
        return
    have = _available_bytes()
    if have is not None and need > have:
        raise ValueError(
            f"n_samples={n} would need about {need / 2**30:.1f} GiB for {what} "
            f"({bytes_per_sample:.0f} bytes per sample), but only {have / 2**30:.1f} GiB is available; "
            "use fewer samples per call and average the estimates of several calls"
        )


def _dist_numel(dist: Distribution) -> int:
    return max(1, (dist.batch_shape + dist.event_shape).numel())


def _raise_non_finite_values(values: torch.Tensor, x: torch.Tensor, n: int) -> None:
    if not validation._VALIDATE:
        return
    if validation.all_finite(values):
        return
    bad = ~torch.isfinite(values.detach())
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"f returned a non-finite value (NaN or infinity) for {int(bad.sum())} of n_samples={n} "
            f"samples, e.g. f(x) = {values[i].item()!r} at x = {_show(x[i])}; the gradient estimate "
            "would be NaN. Make f finite on the distribution's support (clamp, or add a small epsilon)."
        )


def _raise_non_finite_rows(out: torch.Tensor, x: torch.Tensor, n: int, what: str) -> None:
    bad = ~torch.isfinite(out.detach()).reshape(n, -1).all(1)
    i = int(bad.nonzero()[0, 0])
    raise ValueError(
        f"{what} is not finite for {int(bad.sum())} of n_samples={n} samples, e.g. at x = "
        f"{_show(x[i].detach())}; the gradient estimate would be NaN or infinite."
    )


def check_baseline(baseline, n_samples: int, named: tuple[str, ...] = ("loo",), samples_name: str = "n_samples"):
    """The one check of a score-function baseline: ``None``, a finite number (returned
    as a float), or one of the ``named`` baselines (``"loo"`` needs ``n_samples >= 2``;
    ``samples_name`` is what the caller calls that count, for the error message).

    Chapter code that offers more named baselines (a running mean, say) passes them in
    ``named``, so every baseline argument of the package is checked the same way.
    """
    if baseline is None:
        return None
    allowed = "None, a number or " + " or ".join(repr(b) for b in named)
    if isinstance(baseline, str):
        if baseline not in named:
            raise ValueError(f"baseline must be {allowed}, got {baseline!r}")
        if baseline == "loo" and n_samples < 2:
            raise ValueError(f"baseline='loo' needs {samples_name} >= 2, got {samples_name}={n_samples}")
        return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real):
        raise TypeError(f"baseline must be {allowed}, got {baseline!r} of type {type(baseline).__name__}")
    if baseline != baseline or abs(baseline) == float("inf"):
        raise ValueError(f"baseline must be finite, got {baseline!r}")
    return float(baseline)


def loo_baseline(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""The leave-one-out baselines :math:`b_i = \frac{1}{n-1}\sum_{j \ne i} f_j` of
    ``values`` along ``dim`` (of size :math:`n \ge 2`), of ``values``' shape.

    :math:`b_i` does not depend on sample :math:`i`, so subtracting it keeps the score
    function unbiased. The one implementation in the package: :func:`score_function`
    with ``baseline="loo"`` and the chapters' batched estimators use it.
    """
    values = check_tensor("values", values)
    n = values.shape[dim] if values.dim() else 0
    if n < 2:
        raise ValueError(f"values must hold n >= 2 samples along dim={dim}, got shape {tuple(values.shape)}")
    return (values.sum(dim, keepdim=True) - values) / (n - 1)


def score_function(
    f: Callable[[torch.Tensor], torch.Tensor],
    dist_fn: Callable[[torch.Tensor], Distribution],
    params: torch.Tensor,
    n_samples: int,
    baseline: Baseline = None,
    *,
    chunk_size: int | None = None,
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
        chunk_size: the scores :math:`\nabla_\theta \log p_\theta(x_i)` are computed this
            many samples at a time (default ``DEFAULT_CHUNK_SIZE``), which bounds the
            memory of the transform; the samples are drawn at once, so the result does
            not depend on it.

    Raises:
        ValueError: if ``f`` returns NaN or infinity for some sample, if a score is not
            finite, or if ``n_samples`` would need more memory than is available.

    Returns:
        Tensor of shape ``(n_samples, *params.shape)`` on ``params``' device.
    """
    n = _check_common(f, dist_fn, params, n_samples)
    baseline = check_baseline(baseline, n)
    chunk = DEFAULT_CHUNK_SIZE if chunk_size is None else check_positive_int("chunk_size", chunk_size)
    device = params.device
    theta = params.detach().to("cpu")

    with torch.no_grad():
        dist = _make_dist(dist_fn, theta)
        p_bytes = params.numel() * params.element_size()
        # samples (8 bytes per entry covers integer samples), values, weights, result
        _check_memory("score_function", n, 8 * _dist_numel(dist) + 16 + 2 * p_bytes, 120.0 * min(n, chunk))
        x = dist.sample((n,))
    values = _check_values(f(x.to(device)), n).detach()
    _raise_non_finite_values(values, x, n)

    def log_prob(p, xi):
        # The joint log-density of one sample (sum over independent batch entries).
        return dist_fn(p).log_prob(xi).sum()

    if baseline is None:
        weights = values
    elif baseline == "loo":
        weights = values - loo_baseline(values, 0)
    else:
        weights = values - baseline
    weights = weights.reshape((n,) + (1,) * params.dim())

    score_fn = vmap(grad(log_prob), in_dims=(None, 0))
    with _no_validation():
        if n <= chunk:
            out = weights * score_fn(theta, x).to(device)
        else:
            parts = [
                weights[i : i + chunk] * score_fn(theta, x[i : i + chunk]).to(device) for i in range(0, n, chunk)
            ]
            out = torch.cat(parts)
    if validation._VALIDATE and not validation.all_finite(out):
        _raise_non_finite_rows(out, x, n, "the score grad log p(x) times (f(x) - baseline)")
    return out


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

    Unbiased when differentiation and expectation commute: for almost every
    :math:`\varepsilon`, :math:`\theta \mapsto f(g_\theta(\varepsilon))` is absolutely
    continuous (for a differentiable :math:`g_\theta`, a Lipschitz :math:`f` suffices, so
    kinks such as :math:`|x|` or ReLU are fine) with a derivative dominated by an
    integrable function of :math:`\varepsilon`. A *jump* breaks it silently: for a step,
    an ``argmax`` or rounding, :math:`f' = 0` almost everywhere and every
    :math:`\hat g_i = 0`, whatever the true gradient.

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
    # forward mode: the samples and their tangents, one per parameter; values, result
    _check_memory(
        "pathwise",
        n,
        params.element_size() * (4 * _dist_numel(dist) * (params.numel() + 1) + 2 * params.numel() + 2),
    )
    if not dist.has_rsample:
        raise ValueError(
            f"pathwise needs a reparameterizable distribution, but {type(dist).__name__} has no "
            "rsample (has_rsample is False). Use companion.estimators.score_function, or for a "
            "categorical variable the relaxation companion.gumbel.gumbel_softmax."
        )

    def batch_values(p):
        x = dist_fn(p).rsample((n,))
        values = _check_values(f(x.to(device)), n).to("cpu")
        return values, (values, x)  # the values and samples come back as an aux output

    rng_state = torch.get_rng_state()
    try:
        with _no_validation():
            jac, (values, x) = jacfwd(batch_values, has_aux=True, randomness="same")(theta)
    except NotImplementedError:
        torch.set_rng_state(rng_state)

        def one_value(p, _index):
            x = dist_fn(p).rsample()
            value = f(x.unsqueeze(0).to(device)).reshape(()).to("cpu")
            return value, (value, x)

        # Validate the output shape once, outside the transform.
        with torch.no_grad():
            _check_values(f(dist.sample((n,)).to(device)), n)
        torch.set_rng_state(rng_state)
        with _no_validation(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            jac, (values, x) = vmap(grad(one_value, has_aux=True), in_dims=(None, 0), randomness="different")(
                theta, torch.arange(n)
            )
    _raise_non_finite_values(values, x, n)
    if validation._VALIDATE and not validation.all_finite(jac):
        _raise_non_finite_rows(jac, x, n, "the derivative of f that autograd computes (f itself is finite there)")
    return jac.to(device)


# Estimators defined in their own modules, exposed here under one namespace.
from companion.measure_valued import measure_valued  # noqa: E402,F401
from companion.discrete import arm, disarm, rebar  # noqa: E402,F401
from companion.multisample import elbo_gradient, iwae_bound  # noqa: E402,F401
