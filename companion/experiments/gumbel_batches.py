r"""Experiments of the Gumbel chapter: estimators at a batch size, over several seeds.

Three questions the chapter answers with measurements rather than one run:

* **The leave-one-out baseline inside a real batch** (:func:`loo_batch_gradients`,
  :func:`loo_batch_mse`). With a batch of :math:`n` categories
  :math:`k_1, \dots, k_n \sim \operatorname{softmax}(\theta)`, values
  :math:`f_i = h(e_{k_i})` and scores :math:`s_i = e_{k_i} - p`, the batch's gradient is

  .. math::

      \hat g_n = \frac1n \sum_{i=1}^n \bigl(f_i - b_i\bigr)\, s_i, \qquad
      b_i = \frac1{n-1}\sum_{j \ne i} f_j ,

  unbiased because :math:`b_i` is independent of :math:`k_i`, with a baseline only as
  good as :math:`n - 1` other draws: its mean squared error is not the
  :math:`\operatorname{tr}\Sigma/n` of a perfect baseline.
* **Where the score function overtakes a relaxation** (:func:`crossover`): the smallest
  batch size at which the LOO batch's MSE falls below a relaxation's
  :math:`\beta^2 + \operatorname{tr}\Sigma/n`.
* **Optimisation over seeds** (:func:`minimize_seeds`): chapter 6's Adam runs, all seeds
  at once as one batched computation (Adam is elementwise, so rows of a parameter
  matrix are independent runs).

Noise is drawn on the CPU from torch's global generator and moved to the logits' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from companion.estimators import loo_baseline
from companion.experiments import categorical
from companion.stats import BiasEstimate, bias_estimate
from companion.validation import check_choice, check_positive_int, check_real

__all__ = [
    "SeedStats",
    "over_seeds",
    "loo_batch_gradients",
    "loo_batch_mse",
    "crossover",
    "ESTIMATORS",
    "minimize_seeds",
]

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SeedStats:
    """Bias and variance of one estimator: pooled over seeds, and each seed's own."""

    pooled: BiasEstimate
    per_seed: tuple[BiasEstimate, ...]

    def spread(self, name: str) -> tuple[float, float]:
        """The smallest and largest of a :class:`~companion.stats.BiasEstimate` field over the seeds."""
        values = [getattr(s, name) for s in self.per_seed]
        return min(values), max(values)


def check_seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as a tuple of ints >= 0: a non-empty sequence, not a bare int."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        raise TypeError(f"seeds must be a sequence of ints, e.g. range(5), got the int {seeds!r}")
    try:
        out = tuple(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a sequence of ints, got {seeds!r}") from None
    if not out:
        raise ValueError("seeds must hold at least one seed, got an empty sequence")
    return tuple(check_positive_int("seeds", s, minimum=0) for s in out)


def over_seeds(sample: Callable[[int], torch.Tensor], exact: torch.Tensor, n_samples: int,
               seeds: Sequence[int] = range(5)) -> SeedStats:
    """For each seed, ``torch.manual_seed(seed)`` then ``sample(n_samples)`` (per-sample
    estimates ``(n, D)``); the noise-floor-removed bias and variance of each seed's
    samples and of all of them pooled (:func:`companion.stats.bias_estimate`). Chapter 8's
    :func:`companion.experiments.comparison.measure` measures this way too."""
    if not callable(sample):
        raise TypeError(f"sample must be callable (n -> estimates (n, D)), got {type(sample).__name__}")
    n = check_positive_int("n_samples", n_samples, minimum=2)
    seeds = check_seeds(seeds)
    chunks, per = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        est = sample(n).detach().reshape(n, -1).to(torch.float64).cpu()
        per.append(bias_estimate(est, exact.reshape(-1)))
        chunks.append(est)
    return SeedStats(bias_estimate(torch.cat(chunks), exact.reshape(-1)), tuple(per))


def _loo_batch_gradient(logits: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""The batch gradient :math:`\frac1n\sum_i (f_i - b_i)(e_{k_i} - p)` with the
    leave-one-out baselines, for logits ``(..., K)`` and categories ``(..., n)``."""
    p = torch.softmax(logits, -1)
    f = v[k]                                                   # (..., n)
    score = torch.nn.functional.one_hot(k, logits.shape[-1]).to(logits.dtype) - p.unsqueeze(-2)
    return ((f - loo_baseline(f)).unsqueeze(-1) * score).mean(-2)


def loo_batch_gradients(h: Objective, logits: torch.Tensor, batch_size: int, replications: int) -> torch.Tensor:
    r"""``replications`` independent batch gradients :math:`\hat g_n` of the score function
    with the leave-one-out baseline computed inside each batch of ``batch_size`` (see the
    module docstring), shape ``(replications, K)``, float64 on the CPU."""
    logits = categorical._check_logits(logits)
    n = check_positive_int("batch_size", batch_size, minimum=2)
    r = check_positive_int("replications", replications)
    v = categorical.category_values(h, logits).detach().to(torch.float64).cpu()
    theta = logits.detach().to(torch.float64).cpu()
    k = torch.distributions.Categorical(logits=theta).sample((r, n))
    return _loo_batch_gradient(theta, v, k)


def loo_batch_mse(h: Objective, logits: torch.Tensor, batch_size: int, replications: int) -> tuple[float, float]:
    r"""Mean squared error :math:`\mathbb E\lVert \hat g_n - \nabla L\rVert^2` of the in-batch
    LOO gradient over ``replications`` batches, and its standard error."""
    g = loo_batch_gradients(h, logits, batch_size, replications)
    exact = categorical.exact_gradient(h, logits).to(torch.float64).cpu()
    err = ((g - exact) ** 2).sum(-1)
    return float(err.mean()), float(err.std() / math.sqrt(err.shape[0]))


def crossover(loo_mse: dict[int, float], bias_sq: float, variance: float) -> int | None:
    r"""The smallest batch size :math:`n` in ``loo_mse`` (a dict batch size to LOO MSE) from
    which on the LOO batch beats :math:`\beta^2 + \operatorname{tr}\Sigma/n` at every larger
    size measured; ``None`` if it never does."""
    if not loo_mse:
        raise ValueError("loo_mse must hold at least one batch size")
    sizes = sorted(loo_mse)
    wins = [loo_mse[n] < max(bias_sq, 0.0) + variance / n for n in sizes]
    for i, n in enumerate(sizes):
        if all(wins[i:]):
            return n
    return None


#: The gradients :func:`minimize_seeds` can follow, by canonical name
#: (:mod:`companion.catalogue`); ``"exact"`` is the enumerated gradient, the reference.
ESTIMATORS = ("exact", "score_function[baseline='loo']", "gumbel_softmax", "straight_through")


def _batched_gradient(h, theta: torch.Tensor, estimator: str, n: int, tau: float) -> torch.Tensor:
    """Gradients ``(S, K)`` for ``S`` independent rows of logits ``theta``."""
    if estimator == "exact":
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        return categorical._expectation_gradient(theta, categorical._values(h, eye))
    if estimator == "score_function[baseline='loo']":
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        k = torch.distributions.Categorical(logits=theta.cpu()).sample((n,)).T.to(theta.device)  # (S, n)
        return _loo_batch_gradient(theta, categorical._values(h, eye), k)
    return categorical._pathwise(h, theta, tau, n, hard=estimator == "straight_through").mean(-2)


def minimize_seeds(h: Objective, logits: torch.Tensor, estimator: str, *, steps: int, n_samples: int,
                   n_seeds: int = 5, lr: float = 0.05, temperature: Callable[[int], float] | float = 1.0,
                   ) -> torch.Tensor:
    r"""``n_seeds`` independent Adam runs minimising :math:`L(\theta)` from ``logits``, as one
    batched computation; the exact :math:`L(\theta_t)` of each run after each step, shape
    ``(n_seeds, steps)``.

    Each row of a parameter matrix ``(n_seeds, K)`` is one run: Adam's update is
    elementwise, and each row's gradient uses its own draws, so the rows are independent
    runs (seeded once, by the caller, through torch's global generator). ``estimator`` is
    one of :data:`ESTIMATORS`: ``"exact"`` (the enumerated gradient),
    ``"score_function[baseline='loo']"`` (LOO baseline inside the batch of
    ``n_samples``), ``"gumbel_softmax"`` or ``"straight_through"``; ``temperature`` a
    number or a function of the step (e.g. :func:`companion.experiments.categorical.anneal`).
    """
    logits = categorical._check_logits(logits)
    h = categorical._check_h(h)
    check_choice("estimator", estimator, ESTIMATORS)
    steps = check_positive_int("steps", steps)
    n = check_positive_int("n_samples", n_samples, minimum=2)
    s = check_positive_int("n_seeds", n_seeds)
    lr = check_real("lr", lr, positive=True)
    schedule = temperature if callable(temperature) else (lambda _t: temperature)
    theta = logits.detach().expand(s, -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=float(lr))
    eye = torch.eye(logits.shape[0], dtype=logits.dtype, device=logits.device)
    v = categorical._values(h, eye).detach()
    losses = torch.empty(s, steps, dtype=torch.float64)
    for t in range(steps):
        grad = _batched_gradient(h, theta.detach(), estimator, n, float(schedule(t)))
        opt.zero_grad()
        theta.grad = grad.to(theta)
        opt.step()
        with torch.no_grad():
            losses[:, t] = (torch.softmax(theta, -1) * v).sum(-1).to(torch.float64).cpu()
    return losses

