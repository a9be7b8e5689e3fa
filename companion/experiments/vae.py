r"""Training chapter 9's VAEs: the temperature schedule, the training loop, held-out evaluation.

The models, their bounds and the encoder-gradient estimators (named by
:mod:`companion.catalogue` keys) are in :mod:`companion.experiments.vae_models`;
:func:`train_vae` trains one model with one of them. The book trains five seeds at once
with :mod:`companion.experiments.vae_seeds`, which follows the same
:func:`temperature_schedule`.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import NamedTuple

import torch
from torch import nn

from companion.experiments.vae_models import (
    GaussianVAE,
    _check_estimator,
    _check_n_samples,
    _images,
    categorical_elbo_exact,
    elbo_surrogate,
    gaussian_elbo,
)
from companion.validation import check_real, check_positive_int

__all__ = ["temperature_schedule", "TrainingHistory", "train_vae"]


def temperature_schedule(step: int, n_steps: int, start: float = 1.0, end: float = 0.5) -> float:
    r"""Geometric annealing :math:`\tau_t = \tau_0 (\tau_1/\tau_0)^{t/(T-1)}`, from ``start`` at step 0 to ``end`` at step :math:`T-1`.

    Exponential decay of the temperature, as in :cite:t:`jang2017`, over a fixed budget.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    step = check_positive_int("step", step, minimum=0)
    if step >= n_steps:
        raise ValueError(f"step must be < n_steps={n_steps}, got {step}")
    start, end = check_real("start", start, positive=True), check_real("end", end, positive=True)
    if n_steps == 1:
        return start
    return start * (end / start) ** (step / (n_steps - 1))


class TrainingHistory(NamedTuple):
    """Per-epoch records of :func:`train_vae` (plain Python floats)."""

    train_elbo: list  #: mean of the minibatch ELBO estimates over the epoch
    test_elbo: list  #: held-out ELBO after each epoch (empty without ``x_test``)
    temperature: list  #: Gumbel-softmax temperature at the epoch's last step


def _held_out_elbo(model, x_test, n_samples, eval_generator) -> float:
    if isinstance(model, GaussianVAE):
        return float(gaussian_elbo(model, x_test, n_samples=n_samples, generator=eval_generator).mean())
    return float(categorical_elbo_exact(model, x_test).mean())


def train_vae(
    model: nn.Module,
    x_train: torch.Tensor,
    estimator: str,
    *,
    x_test: torch.Tensor | None = None,
    n_epochs: int = 20,
    batch_size: int = 128,
    n_samples: int = 4,
    lr: float = 1e-3,
    temperature: tuple[float, float] = (1.0, 0.5),
    eval_samples: int = 16,
    progress: bool = False,
) -> TrainingHistory:
    r"""Train ``model`` with Adam on the ELBO, its encoder gradient from ``estimator``.

    ``estimator`` is a catalogue key of ``vae_models.GAUSSIAN_ESTIMATORS`` or
    ``vae_models.CATEGORICAL_ESTIMATORS``; each step's loss is
    :func:`~companion.experiments.vae_models.elbo_surrogate`'s.

    Each epoch visits the training images once in an order drawn from torch's global
    CPU generator, in minibatches of ``batch_size``; every estimator gets the same
    number of steps and ``n_samples`` draws per image. The Gumbel-softmax temperature
    follows :func:`temperature_schedule` from ``temperature[0]`` to ``temperature[1]``.
    After each epoch the held-out ELBO is recorded (exact for a
    :class:`~companion.experiments.vae_models.CategoricalVAE`, a Monte Carlo estimate with
    ``eval_samples`` draws from a fixed-seed generator for a
    :class:`~companion.experiments.vae_models.GaussianVAE`).

    ``progress=True`` shows a text tqdm bar on stderr (never ``tqdm.notebook``); the
    book's notebooks pass ``False`` so nothing that varies reaches stored outputs.
    """
    estimator = _check_estimator(model, estimator)
    x_train = _images(model, "x_train", x_train)
    if x_test is not None:
        x_test = _images(model, "x_test", x_test)
    n_epochs = check_positive_int("n_epochs", n_epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    n_samples = _check_n_samples(estimator, n_samples)
    eval_samples = check_positive_int("eval_samples", eval_samples)
    lr = check_real("lr", lr, positive=True)
    if not (isinstance(temperature, (tuple, list)) and len(temperature) == 2):
        raise TypeError(f"temperature must be a (start, end) pair, got {temperature!r}")
    tau0, tau1 = (check_real("temperature", t, positive=True) for t in temperature)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {progress!r} of type {type(progress).__name__}")

    from tqdm import tqdm  # the plain text bar, on stderr

    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    n_steps = n_epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=float(lr))
    eval_generator = torch.Generator().manual_seed(12345)
    history = TrainingHistory([], [], [])
    step = 0
    tau = tau0
    model.train()
    for _epoch in tqdm(range(n_epochs), desc=estimator, disable=not progress, file=sys.stderr):
        order = torch.randperm(n).to(x_train.device)  # drawn on the CPU
        total = torch.zeros((), device=x_train.device)
        for start in range(0, n, batch_size):
            tau = temperature_schedule(step, n_steps, tau0, tau1)
            batch = x_train[order[start : start + batch_size]]
            loss, elbo = elbo_surrogate(model, batch, estimator, n_samples=n_samples, temperature=tau)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += elbo.sum()
            step += 1
        history.train_elbo.append(float(total) / n)
        history.temperature.append(tau)
        if x_test is not None:
            history.test_elbo.append(_held_out_elbo(model, x_test, eval_samples, eval_generator))
    model.eval()
    return history
