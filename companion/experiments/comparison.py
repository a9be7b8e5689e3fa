r"""Every estimator on the same problems: bias, variance and cost per sample (chapter 8).

A gradient estimator is judged by three numbers measured on a problem whose exact
gradient :math:`\nabla_\theta L` is known:

* its **bias** :math:`\lVert \mathbb E[\hat g] - \nabla_\theta L \rVert`, estimated by
  the mean of :math:`N` per-sample estimates, with standard error
  :math:`\sqrt{\operatorname{tr}\Sigma / N}`;
* its **variance** :math:`\operatorname{tr}\Sigma`, the total variance of one
  sample's estimate (see :func:`companion.stats.bias_estimate`);
* its **time per sample** :math:`t`, the wall-clock time of one call divided by :math:`N`
  (the fastest of a few calls: other processes can only slow a call down).

The product :math:`\operatorname{tr}\Sigma \cdot t` is what an unbiased estimator's
accuracy costs: averaging :math:`N` samples gives a mean with variance
:math:`\operatorname{tr}\Sigma/N` in time :math:`T = N t`, so

.. math::

    \operatorname{tr}\operatorname{Var}[\bar g_N] = \frac{\operatorname{tr}\Sigma \cdot t}{T},

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

**The estimators** (:data:`ESTIMATORS`, each an :class:`Estimator`: a canonical key of
:mod:`companion.catalogue` and, for a relaxation, its temperature): the score function
alone, with a constant baseline (the mean of :math:`f` over a separate pilot batch, so
it does not depend on the samples it is subtracted from) and with the leave-one-out
baseline; pathwise; Gumbel-softmax at :math:`\tau = 0.1, 0.5, 1` and straight-through
at :math:`\tau = 1`. :func:`applicability` says which combinations make sense and why
the others do not.

This module holds the numerics; the text tables and the figure that show them are in
:mod:`companion.experiments.comparison_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch.distributions import Categorical, Distribution, Exponential, Normal

from companion import catalogue, estimators

from companion.experiments import categorical, closed_forms, gumbel_batches
from companion.experiments.timing import best_time
from companion.stats import BiasEstimate, VarianceCheck, variance_check
from companion.validation import check_real, check_choice, check_positive_int

__all__ = [
    "Estimator",
    "ESTIMATORS",
    "Problem",
    "Measurement",
    "problems",
    "step_gradient",
    "applicability",
    "estimate",
    "measure",
    "compare_all",
    "variance_checks",
    "VarianceChecks",
    "variance_replications",
    "time_per_sample",
    "time_to_accuracy",
    "seed_ratio",
    "lookup",
]

#: The relaxations: defined for categorical ``x`` only, each at a temperature.
_RELAXATIONS = ("gumbel_softmax", "straight_through")


@dataclass(frozen=True)
class Estimator:
    r"""One estimator of the comparison: its canonical key and, for a relaxation, its
    temperature :math:`\tau` (an option, not part of the name).

    Attributes:
        key: the estimator's key in :mod:`companion.catalogue`
            (``"score_function[baseline='loo']"``, ``"gumbel_softmax"``, ...).
        temperature: :math:`\tau` for ``gumbel_softmax`` and ``straight_through``;
            ``None`` for the others.
    """

    key: str
    temperature: float | None = None

    def __post_init__(self):
        try:
            catalogue.by_key(self.key)
        except (KeyError, TypeError) as err:
            raise ValueError(f"key must be a key of companion.catalogue, got {self.key!r}: {err}") from None
        if (self.key in _RELAXATIONS) != (self.temperature is not None):
            raise ValueError(f"temperature must be given for {_RELAXATIONS} and only for them, "
                             f"got key={self.key!r}, temperature={self.temperature!r}")
        if self.temperature is not None and (isinstance(self.temperature, bool) or
                                             not isinstance(self.temperature, (int, float)) or
                                             not 0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")

    @property
    def label(self) -> str:
        """The display name, :func:`companion.catalogue.label` and the temperature
        (``"Gumbel-softmax τ=0.5"``)."""
        text = catalogue.label(self.key)
        return text if self.temperature is None else f"{text} τ={self.temperature:g}"

    @property
    def short(self) -> str:
        """The short name for tables, :func:`companion.catalogue.short_label` and the
        temperature without a leading zero (``"SF+LOO"``, ``"GS.5"``, ``"ST1"``)."""
        text = catalogue.short_label(self.key)
        if self.temperature is None:
            return text
        tau = f"{self.temperature:g}"
        return text + (tau[1:] if tau.startswith("0.") else tau)


#: The estimators compared, in the order of every table.
ESTIMATORS = (
    Estimator("score_function"),
    Estimator("score_function[baseline=b]"),
    Estimator("score_function[baseline='loo']"),
    Estimator("pathwise"),
    Estimator("gumbel_softmax", 0.1),
    Estimator("gumbel_softmax", 0.5),
    Estimator("gumbel_softmax", 1.0),
    Estimator("straight_through", 1.0),
)

#: The score function's baseline for each of its keys (the constant one is fitted on a
#: pilot batch).
_BASELINES = {"score_function": None, "score_function[baseline='loo']": "loo"}

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
        problem: the problem's key; estimator: the :class:`Estimator`.
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
    estimator: Estimator
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
    mu, sigma = check_real("mu", mu), check_real("sigma", sigma, positive=True)
    g_mu = closed_forms.step_mean_gradient(mu, sigma)  # the one formula for phi(mu/sigma)/sigma
    return g_mu, -mu / sigma * g_mu


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


def _check_estimator(estimator) -> Estimator:
    """An :class:`Estimator` of :data:`ESTIMATORS`; a str is a key without a temperature."""
    if isinstance(estimator, str):
        estimator = Estimator(estimator)
    if not isinstance(estimator, Estimator):
        raise TypeError(f"estimator must be a comparison.Estimator or a catalogue key, "
                        f"got {estimator!r} of type {type(estimator).__name__}")
    return check_choice("estimator", estimator, ESTIMATORS)


def applicability(problem: Problem, estimator: Estimator | str) -> tuple[bool, str]:
    """Whether ``estimator`` applies to ``problem``, and a reason or caveat.

    The score function applies everywhere (it needs only ``log_prob``). Pathwise needs
    ``rsample`` (not the categorical); on the step function it runs but its
    derivative is zero almost everywhere, so it is applicable *and wrong*, which the
    table shows. Gumbel-softmax and straight-through exist only for categorical ``x``.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    if estimator.key == "pathwise":
        if problem.discrete:
            return False, "no rsample: x is discrete (has_rsample is False)"
        if not problem.f_differentiable:
            return True, "f' = 0 almost everywhere: pathwise is biased"
        return True, ""
    if estimator.key in _RELAXATIONS and not problem.discrete:
        return False, "a relaxation of categorical x only"
    if estimator.key in _RELAXATIONS:
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


def estimate(problem: Problem, estimator: Estimator | str, n_samples: int) -> torch.Tensor:
    """Per-sample gradient estimates ``(n_samples, *params.shape)`` of ``estimator`` on ``problem``.

    Raises ``ValueError`` for a combination :func:`applicability` rules out.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    ok, reason = applicability(problem, estimator)
    if not ok:
        raise ValueError(f"estimator {estimator.key!r} does not apply to problem {problem.key!r}: {reason}")
    # The value checks stay on below: a Problem's f is the caller's, and the estimators
    # check that its values are finite (the cost is measured in benchmarks/run.py).
    return _dispatch(problem, estimator, n)


def _dispatch(problem: Problem, estimator: Estimator, n: int) -> torch.Tensor:
    theta, key = problem.params, estimator.key
    if catalogue.by_key(key).name == "score_function":
        baseline = _pilot_baseline(problem) if key == "score_function[baseline=b]" else _BASELINES[key]
        if problem.discrete:
            return categorical.score_function(problem.f, theta, n, baseline=baseline)
        return estimators.score_function(problem.f, problem.dist_fn, theta, n, baseline=baseline)
    if key == "pathwise":
        return estimators.pathwise(problem.f, problem.dist_fn, theta, n)
    relaxation = categorical.straight_through if key == "straight_through" else categorical.gumbel_softmax
    return relaxation(problem.f, theta, estimator.temperature, n)


def time_per_sample(problem: Problem, estimator: Estimator | str, n_samples: int = 10_000, repeats: int = 5) -> float:
    """Seconds per sample: the fastest of ``repeats`` calls of ``n_samples``, divided by ``n_samples``.

    On a busy machine other processes only ever add time, so the minimum is the
    least disturbed measurement.
    """
    problem, estimator = _check_problem(problem), _check_estimator(estimator)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    repeats = check_positive_int("repeats", repeats)
    return best_time(lambda: estimate(problem, estimator, n), repeats, problem.params.device) / n


def measure(problem: Problem, estimator: Estimator | str, n_samples: int = 100_000, *, seeds=range(5),
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
    seeds = gumbel_batches.check_seeds(seeds)
    repeats = check_positive_int("repeats", repeats)
    ok, reason = applicability(problem, estimator)
    if not ok:
        return Measurement(problem.key, estimator, False, reason, False, None, (), (), float("nan"), n, len(seeds))
    run = gumbel_batches.over_seeds(lambda k: estimate(problem, estimator, k), problem.exact, n, seeds)
    t = time_per_sample(problem, estimator, time_samples, repeats)
    return Measurement(problem.key, estimator, True, reason, bool(reason), run.pooled,
                       tuple(s.variance for s in run.per_seed), tuple(s.bias_sq for s in run.per_seed),
                       t, n, len(seeds))


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
    relative_rmse = check_real("relative_rmse", relative_rmse, positive=True)
    if not m.applicable:
        return float("nan")
    eps2 = (relative_rmse * m.stats.exact_norm) ** 2
    room = eps2 - max(m.bias_sq, 0.0)
    if room <= 0:
        return math.inf
    return m.variance * m.time_per_sample / room


# --------------------------------------------------------------------------- summaries
def seed_ratio(results: list[Measurement], problem: str, numerator: Estimator | str,
               denominator: Estimator | str) -> tuple[float, float, float]:
    """Ratio of two estimators' variances on ``problem``: pooled, and the smallest and
    largest over the seeds (seed ``i`` of one against seed ``i`` of the other)."""
    a, b = lookup(results, problem, numerator), lookup(results, problem, denominator)
    if not (a.applicable and b.applicable):
        raise ValueError(f"{a.estimator.key!r} and {b.estimator.key!r} must both apply to {problem!r}")
    per_seed = [x / y for x, y in zip(a.seed_variances, b.seed_variances)]
    return a.variance / b.variance, min(per_seed), max(per_seed)


class VarianceChecks(NamedTuple):
    """:func:`variance_checks`' result: which comparison each entry of ``check`` is."""

    rows: list[tuple[str, str]]  #: ``(problem, estimator)``, ``estimator`` its canonical key
    check: VarianceCheck  #: measured against exact variances, with standard errors and z


def variance_checks(results: list[Measurement]) -> VarianceChecks:
    r"""Measured against exact variances, where chapters 3 and 4 derived them.

    For the Gaussian problems and the exponential, the plain score function's and the
    pathwise estimator's :math:`\operatorname{tr}\Sigma` have closed forms
    (:mod:`companion.experiments.closed_forms`). Returns the ``(problem, estimator)`` rows
    and one :class:`companion.stats.VarianceCheck` (the table chapters 3 and 4 print too):
    ``measured`` the pooled variance of all seeds' samples, ``se`` the standard error of a
    sample variance of that many samples, :math:`\sqrt{(m_4 - v^2)/N}` per coordinate; for
    two coordinates the sum of their standard errors, an upper bound on the standard error
    of the sum. (For a heavy-tailed estimator the sample variance is far from normal and
    ``se`` says little about a single run: see :func:`variance_replications`.)
    """
    k = {"quadratic": 2.0, "exp": 1.0, "cos": 3.0}
    rows, measured, exact, se = [], [], [], []
    for key in ("quadratic", "exp", "cos", "exponential"):
        for name in ("score_function", "pathwise"):
            m = lookup(results, key, name)
            n = m.n_samples * m.n_seeds
            if key == "exponential":
                v = closed_forms.exponential_estimator_variance(name, 1.0, 1.0)
                e = closed_forms.exponential_variance_standard_error(name, 1.0, 1.0, n_samples=n)
            else:
                v = sum(closed_forms.gaussian_estimator_variance(key, name, k[key], 1.0, 1.0))
                e = sum(closed_forms.gaussian_variance_standard_error(key, name, k[key], 1.0, 1.0, n_samples=n))
            rows.append((key, name))
            measured.append(m.variance)
            exact.append(float(v))
            se.append(float(e))
    return VarianceChecks(rows, variance_check(measured, exact, se))


def variance_replications(problem: Problem, estimator: Estimator | str, n_samples: int, replications: int,
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


def lookup(results: list[Measurement], problem: str, estimator: Estimator | str) -> Measurement:
    """The measurement of ``estimator`` (an :class:`Estimator`, or a catalogue key for one
    without a temperature) on ``problem`` (its key) in ``results``."""
    estimator = _check_estimator(estimator)
    for m in results:
        if m.problem == problem and m.estimator == estimator:
            return m
    raise ValueError(f"no measurement of estimator {estimator!r} on problem {problem!r} in results")
