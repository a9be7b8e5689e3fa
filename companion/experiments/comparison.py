r"""Every estimator on the same problems: bias, variance and cost per sample (chapter 8).

A gradient estimator is judged by three numbers measured on a problem whose exact
gradient :math:`\nabla_\theta L` is known:

* its **bias** :math:`\lVert \mathbb E[\hat g] - \nabla_\theta L \rVert`, estimated by
  the mean of :math:`N` per-sample estimates, with standard error
  :math:`\sqrt{\operatorname{tr}\Sigma / N}`;
* its **variance** :math:`\operatorname{tr}\Sigma`, the total variance of one
  sample's estimate (see :func:`companion.experiments.categorical.bias_variance`);
* its **time per sample** :math:`t`, the wall-clock time of one call divided by :math:`N`
  (the fastest of a few calls: other processes can only slow a call down).

The product :math:`\operatorname{tr}\Sigma \cdot t` is what an unbiased estimator's
accuracy costs: averaging :math:`N` samples gives a mean with variance
:math:`\operatorname{tr}\Sigma/N` in time :math:`T = N t`, so

.. math::

    \operatorname{tr}\mathbb V[\bar g_N] = \frac{\operatorname{tr}\Sigma \cdot t}{T},

and of two unbiased estimators the one with the smaller variance x time reaches a
given accuracy sooner.

**The problems** (:func:`problems`), each with its exact gradient:

* the Gaussian test functions of chapter 3, :math:`x \sim \mathcal N(\mu, \sigma^2)`,
  :math:`\theta = (\mu, \sigma) = (1, 1)`: :math:`(x-2)^2`, :math:`e^{-x^2}` and
  :math:`\cos 3x` (exact gradients from :mod:`companion.experiments.closed_forms`);
* the exponential of chapter 4, :math:`z \sim \operatorname{Exp}(\lambda)`,
  :math:`\lambda = 1`, :math:`f(z) = (z-1)^2`
  (:func:`companion.experiments.closed_forms.exponential_gradient`);
* a categorical objective of chapter 6, :math:`k \sim \operatorname{softmax}(\theta)`
  over four categories, :math:`h(e_k) = \lVert e_k - t \rVert^2`
  (:func:`companion.experiments.categorical.exact_gradient`);
* a step function, :math:`f(x) = \mathbf 1[x > 0]` with
  :math:`x \sim \mathcal N(\mu, \sigma^2)`, :math:`\theta = (\mu, \sigma) = (0.5, 1)`:
  :math:`\mathbb E[f] = \Phi(\mu/\sigma)`, so

  .. math::

      \partial_\mu \Phi(\mu/\sigma) = \frac{\varphi(\mu/\sigma)}{\sigma}, \qquad
      \partial_\sigma \Phi(\mu/\sigma) = -\frac{\mu\,\varphi(\mu/\sigma)}{\sigma^2} .

**The estimators** (:data:`ESTIMATORS`): the score function alone, with a constant
baseline (the mean of :math:`f` over a separate pilot batch, so it does not depend on
the samples it is subtracted from) and with the leave-one-out baseline; pathwise;
Gumbel-softmax at :math:`\tau = 0.1, 0.5, 1` and straight-through at :math:`\tau = 1`.
:func:`applicability` says which combinations make sense and why the others do not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.distributions import Categorical, Distribution, Exponential, Normal

from companion import estimators
from companion.device import synchronize

from companion.experiments import categorical, closed_forms
from companion.stats import BiasEstimate, bias_estimate
from companion.validation import check_choice, check_positive_int

__all__ = [
    "ESTIMATORS",
    "Problem",
    "Measurement",
    "problems",
    "step_gradient",
    "applicability",
    "estimate",
    "measure",
    "compare_all",
    "SHORT_NAMES",
    "format_table",
    "format_applicability",
    "variance_checks",
    "variance_replications",
    "time_per_sample",
    "time_to_accuracy",
    "format_mse_table",
    "format_time_table",
    "seed_ratio",
    "format_time",
    "lookup",
    "plot_measurements",
]

#: The estimators compared, in the order of every table. Gumbel-softmax and
#: straight-through carry their temperature in the name.
ESTIMATORS = (
    "score function",
    "score function + baseline",
    "score function + LOO baseline",
    "pathwise",
    "Gumbel-softmax τ=0.1",
    "Gumbel-softmax τ=0.5",
    "Gumbel-softmax τ=1",
    "straight-through τ=1",
)

#: Short names for the estimators, so that tables fit an 80-character line.
SHORT_NAMES = {
    "score function": "SF",
    "score function + baseline": "SF+b",
    "score function + LOO baseline": "SF+LOO",
    "pathwise": "PW",
    "Gumbel-softmax τ=0.1": "GS.1",
    "Gumbel-softmax τ=0.5": "GS.5",
    "Gumbel-softmax τ=1": "GS1",
    "straight-through τ=1": "ST1",
}

_TEMPERATURES = {
    "Gumbel-softmax τ=0.1": 0.1,
    "Gumbel-softmax τ=0.5": 0.5,
    "Gumbel-softmax τ=1": 1.0,
    "straight-through τ=1": 1.0,
}

_PILOT_SAMPLES = 1000


@dataclass(frozen=True)
class Problem:
    r"""A gradient problem :math:`\nabla_\theta \mathbb E_{p_\theta}[f(x)]` with its exact answer.

    Its fields:

    * ``key``: a short identifier (``"quadratic"``, ``"exp"``, ``"cos"``, ``"exponential"``,
      ``"categorical"``, ``"step"``); ``label``: how tables and figures name it.
    * ``params``: :math:`\theta`, the tensor the estimators differentiate; ``exact``: the
      exact gradient, of the same shape (float64, on the CPU).
    * ``f``: a batch of samples to one value each (for the categorical problem, the
      objective :math:`h` on the simplex); ``dist_fn``: :math:`\theta \mapsto p_\theta`, a
      ``torch.distributions`` object.
    * ``f_differentiable``: whether :math:`f` has a useful derivative (the step function's
      is zero almost everywhere); ``discrete``: whether :math:`x` is discrete (no ``rsample``).
    """

    key: str
    label: str
    params: torch.Tensor
    exact: torch.Tensor
    f: Callable[[torch.Tensor], torch.Tensor]
    dist_fn: Callable[[torch.Tensor], Distribution]
    f_differentiable: bool
    discrete: bool


@dataclass(frozen=True)
class Measurement:
    r"""One estimator on one problem, over several seeds.

    Attributes:
        problem, estimator: the names.
        applicable: ``False`` when the combination makes no sense (then ``reason`` says
            why and the numbers are NaN).
        reason: why not applicable, or a caveat (``""`` if none).
        known_biased: biased by construction (a relaxation differentiates the relaxed
            objective, pathwise on a step function sees :math:`f' = 0`), whatever the
            samples show.
        stats: the pooled ``companion.stats.BiasEstimate`` over all seeds' samples
            (bias with the noise floor removed, its standard error, variance).
        seed_variances: :math:`\operatorname{tr} S` of each seed's samples.
        seed_bias_sq: each seed's noise-floor-removed squared bias.
        time_per_sample: seconds per sample (the fastest of ``repeats`` timed calls,
            divided by their size).
        n_samples: samples per seed; ``n_seeds`` seeds.
    """

    problem: str
    estimator: str
    applicable: bool
    reason: str
    known_biased: bool
    stats: BiasEstimate | None
    seed_variances: tuple[float, ...]
    seed_bias_sq: tuple[float, ...]
    time_per_sample: float
    n_samples: int
    n_seeds: int

    def _get(self, name: str) -> float:
        return getattr(self.stats, name) if self.stats is not None else float("nan")

    @property
    def bias(self) -> float:
        """The pooled bias, noise floor removed."""
        return self._get("bias")

    @property
    def bias_sq(self) -> float:
        return self._get("bias_sq")

    @property
    def bias_sq_se(self) -> float:
        return self._get("bias_sq_se")

    @property
    def bias_se(self) -> float:
        r"""The noise floor :math:`\sqrt{\operatorname{tr}S/N}` of the pooled samples."""
        return self._get("noise_floor")

    @property
    def relative_bias(self) -> float:
        return self._get("relative_bias")

    @property
    def variance(self) -> float:
        r"""Pooled :math:`\operatorname{tr}S`, one sample's total variance."""
        return self._get("variance")

    @property
    def variance_time(self) -> float:
        """``variance * time_per_sample``: variance-seconds, *not* a time (see :func:`time_to_accuracy`)."""
        return self.variance * self.time_per_sample

    @property
    def resolved(self) -> bool:
        """True when the samples resolve a bias (squared bias above 5 of its standard errors)."""
        return self.stats is not None and self.stats.resolved(5.0)

    @property
    def biased(self) -> bool:
        """Biased by construction, or a bias resolved by the samples."""
        return self.applicable and (self.known_biased or self.resolved)

    def mse(self, batch_size: int) -> float:
        r""":math:`\text{bias}^2 + \operatorname{tr}\Sigma / n`, the mean of a batch of ``n``."""
        return self.stats.mse(batch_size) if self.stats is not None else float("nan")


# --------------------------------------------------------------------------- problems
def step_gradient(mu: float, sigma: float) -> tuple[float, float]:
    r"""Exact :math:`(\partial_\mu, \partial_\sigma)\, \mathbb E_{\mathcal N(\mu,\sigma^2)}\bigl[\mathbf 1[x > 0]\bigr]`.

    :math:`\mathbb E[\mathbf 1[x>0]] = P(\mu + \sigma\varepsilon > 0) = \Phi(\mu/\sigma)`, and the
    chain rule with :math:`\Phi' = \varphi` gives
    :math:`\bigl(\varphi(\mu/\sigma)/\sigma,\; -\mu\,\varphi(\mu/\sigma)/\sigma^2\bigr)`.
    """
    for name, value in (("mu", mu), ("sigma", sigma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, got {value!r}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    z = mu / sigma
    phi = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return phi / sigma, -mu * phi / sigma**2


def _normal(p: torch.Tensor) -> Distribution:
    return Normal(p[0], p[1])


def _exponential(p: torch.Tensor) -> Distribution:
    return Exponential(p[0])


def _categorical(p: torch.Tensor) -> Distribution:
    return Categorical(logits=p)


def _step(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def problems(device: torch.device | str | None = None) -> list[Problem]:
    """The six problems of chapter 8, with ``params`` on ``device`` (default CPU)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    out = []
    mu, sigma = 1.0, 1.0
    theta = torch.tensor([mu, sigma], device=device)
    for key, k, label in (("quadratic", 2.0, "(x-2)^2"), ("exp", 1.0, "exp(-x^2)"), ("cos", 3.0, "cos(3x)")):
        exact = torch.tensor(closed_forms.gaussian_gradient(key, k, mu, sigma), dtype=torch.float64)
        out.append(Problem(key, f"Gaussian, {label}", theta, exact, closed_forms.test_function(key, k),
                           _normal, True, False))
    rate, k = 1.0, 1.0
    out.append(Problem("exponential", "Exponential, (z-1)^2", torch.tensor([rate], device=device),
                       torch.tensor([closed_forms.exponential_gradient(k, rate)], dtype=torch.float64),
                       closed_forms.test_function("quadratic", k), _exponential, True, False))
    logits = torch.tensor([0.0, 0.5, -0.5, 1.0], device=device)
    h = categorical.quadratic(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    out.append(Problem("categorical", "Categorical, |e_k - t|^2", logits,
                       categorical.exact_gradient(h, logits.cpu()).to(torch.float64), h, _categorical,
                       True, True))
    theta_step = torch.tensor([0.5, 1.0], device=device)
    out.append(Problem("step", "Gaussian, step 1[x>0]", theta_step,
                       torch.tensor(step_gradient(0.5, 1.0), dtype=torch.float64), _step, _normal,
                       False, False))
    return out


# --------------------------------------------------------------------------- estimators
def _check_problem(problem) -> Problem:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a companion.experiments.comparison.Problem, got {type(problem).__name__}")
    return problem


def _check_estimator(estimator) -> str:
    return check_choice("estimator", estimator, ESTIMATORS)


def applicability(problem: Problem, estimator: str) -> tuple[bool, str]:
    """Whether ``estimator`` applies to ``problem``, and a reason or caveat.

    The score function applies everywhere (it needs only ``log_prob``). Pathwise needs
    ``rsample`` (not the categorical); on the step function it runs but its
    derivative is zero almost everywhere, so it is applicable *and wrong*, which the
    table shows. Gumbel-softmax and straight-through exist only for categorical ``x``.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    if estimator == "pathwise":
        if problem.discrete:
            return False, "no rsample: x is discrete (has_rsample is False)"
        if not problem.f_differentiable:
            return True, "f' = 0 almost everywhere: pathwise is biased"
        return True, ""
    if estimator in _TEMPERATURES and not problem.discrete:
        return False, "a relaxation of categorical x only"
    if estimator in _TEMPERATURES:
        return True, "biased: gradient of the relaxed objective"
    return True, ""


def _pilot_baseline(problem: Problem) -> float:
    """A constant baseline: the mean of f over a separate pilot batch (independent of the estimate's samples)."""
    with torch.no_grad():
        x = problem.dist_fn(problem.params.detach().cpu()).sample((_PILOT_SAMPLES,))
        if problem.discrete:
            values = categorical.category_values(problem.f, problem.params.detach())[x.to(problem.params.device)]
        else:
            values = problem.f(x.to(problem.params.device))
    return float(values.mean())


def estimate(problem: Problem, estimator: str, n_samples: int) -> torch.Tensor:
    """Per-sample gradient estimates ``(n_samples, *params.shape)`` of ``estimator`` on ``problem``.

    Raises ``ValueError`` for a combination :func:`applicability` rules out.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    ok, reason = applicability(problem, estimator)
    if not ok:
        raise ValueError(f"estimator {estimator!r} does not apply to problem {problem.key!r}: {reason}")
    theta = problem.params
    if estimator.startswith("score function"):
        baseline = {"score function": None, "score function + LOO baseline": "loo"}.get(estimator)
        if estimator == "score function + baseline":
            baseline = _pilot_baseline(problem)
        if problem.discrete:
            return categorical.reinforce(problem.f, theta, n, baseline=baseline)
        return estimators.score_function(problem.f, problem.dist_fn, theta, n, baseline=baseline)
    if estimator == "pathwise":
        return estimators.pathwise(problem.f, problem.dist_fn, theta, n)
    tau = _TEMPERATURES[estimator]
    if estimator.startswith("straight-through"):
        return categorical.straight_through(problem.f, theta, tau, n)
    return categorical.relaxed(problem.f, theta, tau, n)


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        raise TypeError(f"seeds must be a sequence of ints, e.g. range(5), got the int {seeds!r}")
    try:
        out = tuple(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a sequence of ints, got {seeds!r}") from None
    if not out:
        raise ValueError("seeds must hold at least one seed, got an empty sequence")
    return tuple(check_positive_int("seeds", s, minimum=0) for s in out)


def time_per_sample(problem: Problem, estimator: str, n_samples: int = 10_000, repeats: int = 5) -> float:
    """Seconds per sample: the fastest of ``repeats`` calls of ``n_samples``, divided by ``n_samples``.

    On a busy machine other processes only ever add time, so the minimum is the
    least disturbed measurement.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    repeats = check_positive_int("repeats", repeats)
    device = problem.params.device
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        estimate(problem, estimator, n)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times) / n


def measure(problem: Problem, estimator: str, n_samples: int = 100_000, *, seeds=range(5),
            repeats: int = 5, time_samples: int = 10_000) -> Measurement:
    """Bias (noise floor removed) and variance over several seeds, and time per sample.

    For each seed, ``torch.manual_seed(seed)`` and ``n_samples`` per-sample estimates;
    the per-seed variance and squared bias give the seed-to-seed spread, the pooled
    samples (``len(seeds) * n_samples``) give the bias and variance reported
    (``companion.stats.bias_estimate``). Then :func:`time_per_sample` on
    ``time_samples``. An inapplicable combination gives NaNs and the reason.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    seeds = _check_seeds(seeds)
    repeats = check_positive_int("repeats", repeats)
    ok, reason = applicability(problem, estimator)
    if not ok:
        return Measurement(problem.key, estimator, False, reason, False, None, (), (), float("nan"), n, len(seeds))
    exact = problem.exact.reshape(-1)
    chunks, variances, bias_sq = [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        est = estimate(problem, estimator, n).detach().reshape(n, -1).to(torch.float64).cpu()
        one = bias_estimate(est, exact)
        variances.append(one.variance)
        bias_sq.append(one.bias_sq)
        chunks.append(est)
    pooled = bias_estimate(torch.cat(chunks), exact)
    t = time_per_sample(problem, estimator, time_samples, repeats)
    return Measurement(problem.key, estimator, True, reason, bool(reason), pooled, tuple(variances),
                       tuple(bias_sq), t, n, len(seeds))


def compare_all(n_samples: int | dict[str, int] = 100_000, device: torch.device | str | None = None, *,
                seeds=range(5), repeats: int = 5, time_samples: int = 10_000) -> list[Measurement]:
    """:func:`measure` for every problem and every estimator, in a fixed order (problems, then :data:`ESTIMATORS`).

    ``n_samples`` is one number for every problem, or a dict from problem key to number
    (problems it leaves out get 100 000).
    """
    if isinstance(n_samples, dict):
        sizes = dict(n_samples)
        unknown = set(sizes) - {p.key for p in problems()}
        if unknown:
            raise ValueError(f"n_samples names unknown problems {sorted(unknown)}")
    else:
        sizes = {}
        default = check_positive_int("n_samples", n_samples, minimum=2)
    return [measure(p, e, sizes.get(p.key, default if not isinstance(n_samples, dict) else 100_000),
                    seeds=seeds, repeats=repeats, time_samples=time_samples)
            for p in problems(device) for e in ESTIMATORS]


def time_to_accuracy(m: Measurement, relative_rmse: float = 0.1) -> float:
    r"""Seconds to reach a root mean squared error of ``relative_rmse`` times :math:`\lVert\nabla L\rVert`.

    With :math:`\varepsilon = r\lVert\nabla L\rVert`, the mean of :math:`N` samples has
    MSE :math:`\beta^2 + \operatorname{tr}\Sigma/N \le \varepsilon^2` once
    :math:`N \ge \operatorname{tr}\Sigma / (\varepsilon^2 - \beta^2)`, which takes

    .. math::

        T = \frac{\operatorname{tr}\Sigma \cdot t}{\varepsilon^2 - \beta^2}
        \quad\text{seconds, or } \infty \text{ if } \beta \ge \varepsilon .

    A time, in seconds: the cost of an accuracy, unlike the product variance x time.
    """
    if not isinstance(m, Measurement):
        raise TypeError(f"m must be a Measurement, got {type(m).__name__}")
    if isinstance(relative_rmse, bool) or not isinstance(relative_rmse, (int, float)) or not relative_rmse > 0:
        raise ValueError(f"relative_rmse must be a number > 0, got {relative_rmse!r}")
    if not m.applicable:
        return float("nan")
    eps2 = (relative_rmse * m.stats.exact_norm) ** 2
    room = eps2 - max(m.bias_sq, 0.0)
    if room <= 0:
        return math.inf
    return m.variance * m.time_per_sample / room


# --------------------------------------------------------------------------- output
def format_time(seconds: float) -> str:
    """``seconds`` as a number and a unit (``"1.23 µs"``), the form the book's nbval sanitizer masks."""
    if not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _flag(m: Measurement) -> str:
    if m.known_biased:
        return "biased (design)"
    return "biased (measured)" if m.resolved else ""


def format_table(results: list[Measurement]) -> str:
    r"""A plain-text table of measurements, one row each, in the given order.

    Columns: the bias with the noise floor removed, as a number and as a fraction of
    :math:`\lVert\nabla L\rVert`; ``z``, the noise-floor-removed squared bias in its
    standard errors (a bias is *resolved* above 5); the variance of one sample; and a
    flag: ``biased (design)`` for a relaxation or for pathwise on a step,
    ``biased (measured)`` for a resolved bias. Estimators are named by
    :data:`SHORT_NAMES`; every line fits the book's 76 characters.
    """
    head = f"{'problem':11s} {'est.':6s} {'bias':>9s} {'/|grad|':>7s} {'z':>6s} {'variance':>9s}  flag"
    lines = [head, "-" * 72]
    for m in results:
        if not isinstance(m, Measurement):
            raise TypeError(f"results must hold Measurement objects, got {type(m).__name__}")
        name = SHORT_NAMES[m.estimator]
        if not m.applicable:
            lines.append(f"{m.problem:11s} {name:6s} {'n/a':>9s}  {m.reason}")
            continue
        z = m.bias_sq / m.bias_sq_se if m.bias_sq_se > 0 else 0.0
        rel = f"{100 * m.relative_bias:.1f}%"
        lines.append(f"{m.problem:11s} {name:6s} {m.bias:9.3g} {rel:>7s} {z:6.1f} {m.variance:9.3g}  "
                     f"{_flag(m)}".rstrip())
    return "\n".join(lines)


def format_mse_table(results: list[Measurement], problem: str, batch_sizes=(1, 10, 100, 1000),
                     replace: dict[str, list[float]] | None = None) -> str:
    r"""Relative mean squared error :math:`\operatorname{MSE}(n) / \lVert\nabla L\rVert^2` of
    each applicable estimator on ``problem`` at each batch size, with its rank in brackets.

    ``replace`` maps an estimator to its measured MSEs (absolute, one per batch size), for
    an estimator whose batch is not :math:`n` independent draws (the LOO baseline computed
    inside the batch, ``companion.experiments.gumbel_batches.loo_batch_mse``).
    """
    rows = [m for m in results if m.problem == problem and m.applicable]
    if not rows:
        raise ValueError(f"no applicable measurement for problem {problem!r} in results")
    sizes = [check_positive_int("batch_sizes", b) for b in batch_sizes]
    norm2 = rows[0].stats.exact_norm ** 2
    table = {m.estimator: [m.mse(b) / norm2 for b in sizes] for m in rows}
    for est, values in (replace or {}).items():
        if est not in table or len(values) != len(sizes):
            raise ValueError(f"replace[{est!r}] must name an applicable estimator and give {len(sizes)} values")
        table[est] = [float(v) / norm2 for v in values]
    ranks = {}
    for j in range(len(sizes)):
        order = sorted(table, key=lambda e: table[e][j])
        for r, e in enumerate(order):
            ranks[(e, j)] = r + 1
    head = f"{'est.':7s}" + "".join(f"{'n = ' + str(b):>13s}" for b in sizes)
    lines = [head, "-" * len(head)]
    for e, vals in table.items():
        cells = "".join(f"{v:9.3g} ({ranks[(e, j)]})" for j, v in enumerate(vals))
        lines.append(f"{SHORT_NAMES[e]:7s}{cells}")
    return "\n".join(lines)


def seed_ratio(results: list[Measurement], problem: str, numerator: str, denominator: str
               ) -> tuple[float, float, float]:
    """Ratio of two estimators' variances on ``problem``: pooled, and the smallest and
    largest over the seeds (seed ``i`` of one against seed ``i`` of the other)."""
    a, b = lookup(results, problem, numerator), lookup(results, problem, denominator)
    if not (a.applicable and b.applicable):
        raise ValueError(f"{numerator!r} and {denominator!r} must both apply to {problem!r}")
    per_seed = [x / y for x, y in zip(a.seed_variances, b.seed_variances)]
    return a.variance / b.variance, min(per_seed), max(per_seed)


def format_time_table(results: list[Measurement], relative_rmse: float = 0.1) -> str:
    """:func:`time_to_accuracy` and time per sample of every applicable measurement (``never``
    where the bias alone exceeds the target), each a number and a unit, last on the line
    and unpadded so that the book's sanitizer can mask them."""
    head = f"{'problem':11s} {'est.':6s} time to {100 * relative_rmse:g}% RMSE, time per sample"
    lines = [head, "-" * len(head)]
    for m in results:
        if not m.applicable:
            continue
        t = time_to_accuracy(m, relative_rmse)
        shown = "never (bias)" if math.isinf(t) else format_time(t)
        # times last and unpadded: the sanitizer masks them, and their width cannot shift the line
        lines.append(f"{m.problem:11s} {SHORT_NAMES[m.estimator]:6s} {shown}, {format_time(m.time_per_sample)}")
    return "\n".join(lines)


def format_applicability(problem_list: list[Problem]) -> str:
    """A plain-text matrix: one row per problem, one column per estimator (:data:`SHORT_NAMES`).

    ``yes`` where :func:`applicability` allows the combination, ``~`` where it runs but
    is known to be biased, ``-`` where it does not apply.
    """
    head = f"{'':12s}" + "".join(f"{SHORT_NAMES[e]:>7s}" for e in ESTIMATORS)
    lines = [head]
    for p in problem_list:
        marks = []
        for est in ESTIMATORS:
            ok, reason = applicability(p, est)
            marks.append("-" if not ok else ("~" if reason else "yes"))
        lines.append(f"{_check_problem(p).key:12s}" + "".join(f"{m:>7s}" for m in marks))
    return "\n".join(lines)


def variance_checks(results: list[Measurement]) -> list[tuple[str, str, float, float, float]]:
    r"""Measured against exact variances, where chapters 3 and 4 derived them.

    For the Gaussian problems and the exponential, the plain score function's and the
    pathwise estimator's :math:`\operatorname{tr}\Sigma` have closed forms
    (:mod:`companion.experiments.closed_forms`). Returns rows ``(problem, estimator, measured, exact,
    se)``, ``measured`` the pooled variance of all seeds' samples and ``se`` the standard
    error of a sample variance of that many samples, :math:`\sqrt{(m_4 - v^2)/N}` per
    coordinate; for two coordinates the sum of their standard errors, an upper bound on
    the standard error of the sum. (For a heavy-tailed estimator the sample variance is
    far from normal and ``se`` says little about a single run: see
    :func:`variance_replications`.)
    """
    k = {"quadratic": 2.0, "exp": 1.0, "cos": 3.0}
    rows = []
    for key in ("quadratic", "exp", "cos", "exponential"):
        for est, name in (("score function", "score_function"), ("pathwise", "pathwise")):
            m = lookup(results, key, est)
            n = m.n_samples * m.n_seeds
            if key == "exponential":
                exact = closed_forms.exponential_estimator_variance(name, 1.0, 1.0)
                se = closed_forms.exponential_variance_standard_error(name, 1.0, 1.0, n_samples=n)
            else:
                exact = sum(closed_forms.gaussian_estimator_variance(key, name, k[key], 1.0, 1.0))
                se = sum(closed_forms.gaussian_variance_standard_error(key, name, k[key], 1.0, 1.0, n_samples=n))
            rows.append((key, est, m.variance, float(exact), float(se)))
    return rows


def variance_replications(problem: Problem, estimator: str, n_samples: int, replications: int,
                          seed: int = 0) -> torch.Tensor:
    r"""The sample variance :math:`\operatorname{tr}S` of ``replications`` independent runs of
    ``n_samples`` each (one seeded draw of ``replications * n_samples`` estimates, split),
    shape ``(replications,)``, float64: the sampling distribution of a measured variance."""
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    r = check_positive_int("replications", replications)
    torch.manual_seed(check_positive_int("seed", seed, minimum=0))
    est = estimate(problem, estimator, n * r).detach().reshape(r, n, -1).to(torch.float64).cpu()
    return est.var(1).sum(-1)


def lookup(results: list[Measurement], problem: str, estimator: str) -> Measurement:
    """The measurement of ``estimator`` on ``problem`` (by their names) in ``results``."""
    for m in results:
        if m.problem == problem and m.estimator == estimator:
            return m
    raise ValueError(f"no measurement of estimator {estimator!r} on problem {problem!r} in results")


def _color(estimator: str) -> tuple[str, float]:
    """The book's colour for the estimator's family, and an alpha that separates temperatures."""
    from companion.plotting import ESTIMATOR_COLORS

    if estimator.startswith("Gumbel-softmax"):
        return ESTIMATOR_COLORS["Gumbel-softmax"], {0.1: 0.45, 0.5: 0.7, 1.0: 1.0}[_TEMPERATURES[estimator]]
    if estimator.startswith("straight-through"):
        return ESTIMATOR_COLORS["straight-through"], 1.0
    return ESTIMATOR_COLORS[estimator], 1.0


def plot_measurements(results: list[Measurement], quantity: str, ax, batch_size: int = 100) -> None:
    r"""Grouped bars on a log scale: one group per problem, one bar per applicable estimator.

    ``quantity`` is ``"variance"`` (one sample's :math:`\operatorname{tr}\Sigma`, with a
    bar from the smallest to the largest seed's value) or ``"mse"`` (the relative mean
    squared error :math:`\operatorname{MSE}(n)/\lVert\nabla L\rVert^2` of a batch of
    ``batch_size``). Biased estimators (by construction or measured) are hatched; a zero
    (the step function's pathwise variance) is marked by an ``x`` on the axis.
    """
    if quantity not in ("variance", "mse"):
        raise ValueError(f"quantity must be 'variance' or 'mse', got {quantity!r}")
    n = check_positive_int("batch_size", batch_size)

    def value(m: Measurement) -> float:
        return m.variance if quantity == "variance" else m.mse(n) / m.stats.exact_norm ** 2

    keys = list(dict.fromkeys(m.problem for m in results))
    applicable = {k: [m for m in results if m.problem == k and m.applicable] for k in keys}
    width = 0.8 / max(len(v) for v in applicable.values())
    floor = min(value(m) for m in results if m.applicable and value(m) > 0)
    labelled: set[str] = set()
    for i, key in enumerate(keys):
        group = sorted(applicable[key], key=lambda m: ESTIMATORS.index(m.estimator))
        for j, m in enumerate(group):
            color, alpha = _color(m.estimator)
            x = i + (j - (len(group) - 1) / 2) * width
            v = value(m)
            if v > 0:
                ax.bar(x, v, width, color=color, alpha=alpha, hatch="//" if m.biased else None,
                       edgecolor="black" if m.biased else "white", linewidth=0.5,
                       label=None if m.estimator in labelled else m.estimator)
                labelled.add(m.estimator)
                if quantity == "variance" and len(m.seed_variances) > 1:
                    ax.plot([x, x], [min(m.seed_variances), max(m.seed_variances)], color="black", lw=1)
            else:
                ax.plot(x, floor / 3, marker="x", color=color, markersize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=20)
    ax.set_ylabel("variance of one sample" if quantity == "variance"
                  else f"MSE / |grad|², batch of {n}")
