r"""Variational autoencoders for chapter 9: models, ELBOs, gradient estimators, training.

A VAE :cite:p:`kingma2014,rezende2014` has a decoder :math:`p_\theta(x \mid z)` and prior
:math:`p(z)`, and an encoder :math:`q_\phi(z \mid x)`. It maximizes the evidence lower bound

.. math::

    \begin{aligned}
    \mathcal L(\theta, \phi; x)
      &= \mathbb E_{q_\phi(z \mid x)}\bigl[\log p_\theta(x \mid z)\bigr]
        - \mathrm{KL}\bigl(q_\phi(z \mid x)\,\|\,p(z)\bigr) \\
      &= \log p_\theta(x) - \mathrm{KL}\bigl(q_\phi(z \mid x)\,\|\,p_\theta(z \mid x)\bigr)
      \le \log p_\theta(x).
    \end{aligned}

Here both KL terms to the prior have closed forms, so only the first expectation is
estimated by Monte Carlo, and the estimators differ only in how they differentiate it
with respect to the encoder's :math:`\phi` (the decoder's :math:`\theta` is not in the
sampling distribution, so its gradient is always the ordinary one):

* ``"pathwise"``: :math:`z = \mu_\phi(x) + \sigma_\phi(x)\,\varepsilon` by
  :func:`companion.reparam.gaussian` (rsample), and autograd through :math:`z`;
* ``"score function"``: :math:`\bigl(\log p_\theta(x \mid z_s) - b_s\bigr)\nabla_\phi \log q_\phi(z_s \mid x)`
  with the leave-one-out baseline :math:`b_s` over the ``n_samples`` draws for the same
  :math:`x` (or none);
* ``"gumbel-softmax"``: the decoder is fed the relaxed sample
  :func:`companion.gumbel.gumbel_softmax` at a temperature annealed during training;
* ``"straight-through"``: the one-hot sample forward, the relaxed sample's gradient backward.

Every random number is drawn on the CPU and moved to the model's device (see
:mod:`companion.device`), so CPU and GPU runs of the same seed see the same noise.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from companion.gumbel import gumbel_max, gumbel_softmax
from companion.reparam import gaussian
from companion.validation import check_finite, check_positive_int, check_tensor

__all__ = [
    "GaussianVAE",
    "CategoricalVAE",
    "GAUSSIAN_ESTIMATORS",
    "CATEGORICAL_ESTIMATORS",
    "bernoulli_log_likelihood",
    "gaussian_kl",
    "categorical_kl",
    "elbo_surrogate",
    "gaussian_elbo",
    "categorical_elbo_exact",
    "categorical_log_marginal",
    "categorical_exact_loss",
    "exact_encoder_gradient",
    "encoder_gradients",
    "temperature_schedule",
    "TrainingHistory",
    "train_vae",
]

GAUSSIAN_ESTIMATORS = ("pathwise", "score function")
CATEGORICAL_ESTIMATORS = ("gumbel-softmax", "straight-through", "score function")
#: Largest number of joint latent configurations the exact categorical ELBO will enumerate.
MAX_ENUMERATION = 100_000
_LOG_2PI = math.log(2 * math.pi)


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_out))


class GaussianVAE(nn.Module):
    r"""A VAE with a Gaussian latent and Bernoulli pixels.

    Prior :math:`p(z) = \mathcal N(0, I_d)`; encoder
    :math:`q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma_\phi(x)^2)`; decoder
    :math:`p_\theta(x \mid z) = \prod_j \operatorname{Bernoulli}(x_j; \operatorname{sigmoid}(\ell_\theta(z)_j))`.
    Encoder and decoder are one-hidden-layer tanh MLPs;
    :math:`\sigma = \operatorname{softplus}(\cdot) + 10^{-4}` keeps the scale positive.
    """

    def __init__(self, n_pixels: int = 64, n_latent: int = 4, n_hidden: int = 128) -> None:
        super().__init__()
        self.n_pixels = check_positive_int("n_pixels", n_pixels)
        self.n_latent = check_positive_int("n_latent", n_latent)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        self.encoder = _mlp(self.n_pixels, self.n_hidden, 2 * self.n_latent)
        self.decoder = _mlp(self.n_latent, self.n_hidden, self.n_pixels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of :math:`q_\\phi(z \\mid x)`, each ``(batch, n_latent)``."""
        x = _check_images("x", x, self.n_pixels)
        mu, pre = self.encoder(x).chunk(2, dim=-1)
        return mu, F.softplus(pre) + 1e-4

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits :math:`\\ell_\\theta(z)`, shape ``(..., n_pixels)``, for latents ``(..., n_latent)``."""
        z = check_tensor("z", z)
        if z.shape[-1:] != (self.n_latent,):
            raise ValueError(f"z must end in dimension n_latent={self.n_latent}, got shape {tuple(z.shape)}")
        return self.decoder(z)


class CategoricalVAE(nn.Module):
    r"""A VAE with ``n_latents`` independent ``n_categories``-way latents and Bernoulli pixels.

    Prior: each latent uniform, :math:`p(z) = K^{-L}`; encoder
    :math:`q_\phi(z \mid x) = \prod_{l=1}^L \operatorname{Categorical}(z_l; \operatorname{softmax}(\ell_{\phi,l}(x)))`;
    the decoder reads the :math:`L` one-hot vectors (or relaxed samples on the simplex)
    concatenated, :math:`L K` inputs.
    """

    def __init__(self, n_pixels: int = 64, n_latents: int = 3, n_categories: int = 10, n_hidden: int = 128) -> None:
        super().__init__()
        self.n_pixels = check_positive_int("n_pixels", n_pixels)
        self.n_latents = check_positive_int("n_latents", n_latents)
        self.n_categories = check_positive_int("n_categories", n_categories, minimum=2)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        self.encoder = _mlp(self.n_pixels, self.n_hidden, self.n_latents * self.n_categories)
        self.decoder = _mlp(self.n_latents * self.n_categories, self.n_hidden, self.n_pixels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of :math:`q_\\phi(z \\mid x)`, shape ``(batch, n_latents, n_categories)``."""
        x = _check_images("x", x, self.n_pixels)
        return self.encoder(x).unflatten(-1, (self.n_latents, self.n_categories))

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(..., n_pixels)`` for one-hot or relaxed latents ``(..., n_latents, n_categories)``."""
        y = check_tensor("y", y)
        shape = (self.n_latents, self.n_categories)
        if y.shape[-2:] != shape:
            raise ValueError(f"y must end in shape {shape} (n_latents, n_categories), got shape {tuple(y.shape)}")
        return self.decoder(y.flatten(-2))


def _check_images(name: str, x, n_pixels: int) -> torch.Tensor:
    x = check_tensor(name, x)
    if x.dim() != 2 or x.shape[-1] != n_pixels:
        raise ValueError(f"{name} must have shape (batch, {n_pixels}), got shape {tuple(x.shape)}")
    return x


def _check_binary(name: str, x: torch.Tensor) -> torch.Tensor:
    check_finite(name, x)
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} must hold binary pixels (0 or 1), got values outside {{0, 1}}")
    return x


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Bernoulli log-likelihood of binary pixels ``x`` given logits :math:`\ell`.

    .. math::

        \log p(x \mid \ell) = \sum_j \bigl[x_j \log \operatorname{sigmoid}(\ell_j)
          + (1 - x_j)\log\bigl(1 - \operatorname{sigmoid}(\ell_j)\bigr)\bigr].

    Summed over the last dimension, broadcasting ``logits`` ``(..., n_pixels)``
    against ``x``; computed stably from the logits (finite for any finite logit).
    """
    logits = check_tensor("logits", logits)
    x = check_tensor("x", x)
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal N(0, I)) = \tfrac12 \sum_i (\mu_i^2 + \sigma_i^2 - 1 - 2\log\sigma_i)`, over the last dimension."""
    mu = check_tensor("mu", mu)
    sigma = check_tensor("sigma", sigma)
    return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * sigma.log()).sum(-1)


def categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(q \,\|\, \text{uniform}) = \sum_l \sum_k q_{lk} \log q_{lk} + L \log K`, with :math:`q_l = \operatorname{softmax}(\ell_l)`.

    ``logits`` has shape ``(..., L, K)``; the result has shape ``(...)``.
    """
    logits = check_tensor("logits", logits)
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (..., n_latents, n_categories), got shape {tuple(logits.shape)}")
    log_q = torch.log_softmax(logits, dim=-1)
    n_latents, n_categories = logits.shape[-2:]
    return (log_q.exp() * log_q).sum((-1, -2)) + n_latents * math.log(n_categories)


def _check_estimator(model: nn.Module, estimator) -> str:
    if isinstance(model, GaussianVAE):
        allowed = GAUSSIAN_ESTIMATORS
    elif isinstance(model, CategoricalVAE):
        allowed = CATEGORICAL_ESTIMATORS
    else:
        raise TypeError(f"model must be a GaussianVAE or a CategoricalVAE, got {type(model).__name__}")
    if estimator not in allowed:
        raise ValueError(f"estimator for a {type(model).__name__} must be one of {allowed}, got {estimator!r}")
    return estimator


def _check_baseline(baseline, n_samples: int):
    if baseline is None:
        return None
    if baseline != "loo":
        raise ValueError(f"baseline must be None or 'loo', got {baseline!r}")
    if n_samples < 2:
        raise ValueError(f"baseline='loo' needs n_samples >= 2, got n_samples={n_samples}")
    return baseline


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number, got {temperature!r} of type {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    return float(temperature)


def _score_surrogate(ll: torch.Tensor, log_q: torch.Tensor, baseline) -> torch.Tensor:
    """``ll + sg(ll - b) log_q``: its value is ``ll``, its encoder gradient the score-function estimate."""
    signal = ll.detach()
    if baseline == "loo":
        n = ll.shape[0]
        signal = signal - (signal.sum(0, keepdim=True) - signal) / (n - 1)
    return ll + signal * log_q - (signal * log_q).detach()


def elbo_surrogate(
    model: nn.Module,
    x: torch.Tensor,
    estimator: str,
    *,
    n_samples: int = 1,
    baseline: str | None = "loo",
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A loss whose gradient is the chosen estimator of :math:`-\nabla \mathcal L`, and the ELBO estimates.

    For each image the expectation :math:`\mathbb E_q[\log p_\theta(x \mid z)]` is
    averaged over ``n_samples`` draws :math:`z_s`, and the closed-form KL subtracted. The
    score-function loss is the *surrogate*

    .. math::

        \begin{aligned}
        &\frac1S \sum_s \Bigl[\log p_\theta(x \mid z_s)
          + \operatorname{sg}\bigl(\log p_\theta(x \mid z_s) - b_s\bigr) \log q_\phi(z_s \mid x)\Bigr]
          - \mathrm{KL}, \\
        &b_s = \frac{1}{S-1}\sum_{t \ne s} \log p_\theta(x \mid z_t),
        \end{aligned}

    where :math:`z_s` carries no gradient and :math:`\operatorname{sg}` stops gradients:
    its value is the ELBO estimate, its :math:`\phi`-gradient

    .. math::

        \frac1S\sum_s \bigl(\log p_\theta(x \mid z_s) - b_s\bigr)\,
        \nabla_\phi\log q_\phi(z_s \mid x) - \nabla_\phi\mathrm{KL}.

    Args:
        model: a :class:`GaussianVAE` or :class:`CategoricalVAE`.
        x: binary images ``(batch, n_pixels)``.
        estimator: one of ``GAUSSIAN_ESTIMATORS`` or ``CATEGORICAL_ESTIMATORS``.
        n_samples: draws :math:`S` of :math:`z` per image.
        baseline: ``"loo"`` or ``None``; used by ``"score function"`` only.
        temperature: :math:`\tau > 0` of the Gumbel-softmax relaxations.

    Returns:
        ``(loss, elbo)``: the scalar loss (minus the batch mean of the surrogate), and the
        per-image ELBO estimates ``(batch,)`` (detached). For a categorical model the ELBO
        estimate is always that of the **discrete** model, the decoder fed one-hot samples,
        even when the gradient comes from a relaxation.
    """
    estimator = _check_estimator(model, estimator)
    n = check_positive_int("n_samples", n_samples)
    baseline = _check_baseline(baseline, n) if estimator == "score function" else None
    tau = _check_temperature(temperature)
    x = _check_binary("x", _check_images("x", x, model.n_pixels)).to(_device(model))

    if isinstance(model, GaussianVAE):
        mu, sigma = model.encode(x)
        kl = gaussian_kl(mu, sigma)
        if estimator == "pathwise":
            z = gaussian(mu, sigma, sample_shape=(n,))  # eps ~ N(0, I) drawn on the CPU
            ll = bernoulli_log_likelihood(model.decode(z), x)
            objective = ll
        else:
            with torch.no_grad():
                z = gaussian(mu, sigma, sample_shape=(n,))
            ll = bernoulli_log_likelihood(model.decode(z), x)
            log_q = (-0.5 * ((z - mu) / sigma).square() - sigma.log() - 0.5 * _LOG_2PI).sum(-1)
            objective = _score_surrogate(ll, log_q, baseline)
    else:
        logits = model.encode(x)
        kl = categorical_kl(logits)
        expanded = logits.expand((n,) + logits.shape)
        if estimator == "score function":
            with torch.no_grad():
                k = gumbel_max(expanded)  # exact categorical samples, noise on the CPU
            y = F.one_hot(k, model.n_categories).to(logits.dtype)
            ll = bernoulli_log_likelihood(model.decode(y), x)
            log_q = (torch.log_softmax(logits, -1) * y).sum((-1, -2))
            objective = _score_surrogate(ll, log_q, baseline)
        else:
            y = gumbel_softmax(expanded, tau, hard=(estimator == "straight-through"))
            objective = bernoulli_log_likelihood(model.decode(y), x)
            if estimator == "straight-through":
                ll = objective  # the forward value is the one-hot sample's
            else:
                with torch.no_grad():  # the discrete sample argmax(y) is the Gumbel-max sample
                    hard = F.one_hot(y.argmax(-1), model.n_categories).to(y.dtype)
                    ll = bernoulli_log_likelihood(model.decode(hard), x)
    loss = -(objective.mean(0) - kl).mean()
    elbo = (ll.detach().mean(0) - kl.detach())
    return loss, elbo


@torch.no_grad()
def gaussian_elbo(
    model: GaussianVAE, x: torch.Tensor, n_samples: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Monte Carlo ELBO of each image, :math:`\frac1S\sum_s \log p_\theta(x \mid z_s) - \mathrm{KL}`, :math:`z_s \sim q_\phi(z \mid x)`.

    Noise from ``generator`` (a CPU ``torch.Generator``) or torch's global CPU generator.
    Returns a tensor ``(batch,)``; unbiased for the ELBO of each image.
    """
    if not isinstance(model, GaussianVAE):
        raise TypeError(f"model must be a GaussianVAE, got {type(model).__name__}")
    n = check_positive_int("n_samples", n_samples)
    x = _check_binary("x", _check_images("x", x, model.n_pixels)).to(_device(model))
    mu, sigma = model.encode(x)
    z = gaussian(mu, sigma, sample_shape=(n,), generator=generator)
    return bernoulli_log_likelihood(model.decode(z), x).mean(0) - gaussian_kl(mu, sigma)


def _all_codes(model: CategoricalVAE) -> torch.Tensor:
    n_codes = model.n_categories**model.n_latents
    if n_codes > MAX_ENUMERATION:
        raise ValueError(
            f"n_categories**n_latents = {model.n_categories}**{model.n_latents} = {n_codes} latent "
            f"configurations is more than MAX_ENUMERATION={MAX_ENUMERATION} to enumerate"
        )
    grids = torch.meshgrid(*[torch.arange(model.n_categories)] * model.n_latents, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)  # (n_codes, n_latents)


def _enumerate(model: CategoricalVAE, x: torch.Tensor, chunk: int):
    """Yield per-chunk ``(log p(x|z), codes)`` with ``log p(x|z)`` of shape ``(n_codes, chunk)``."""
    codes = _all_codes(model).to(x.device)
    y = F.one_hot(codes, model.n_categories).to(x.dtype)
    dec = model.decode(y)  # (n_codes, n_pixels): the decoder does not depend on x
    # log p(x|z) = sum_j [x_j l_j - softplus(l_j)]: one matrix product for all codes and images.
    normalizer = F.softplus(dec).sum(-1, keepdim=True)  # (n_codes, 1)
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk]
        yield dec @ xb.T - normalizer, codes, xb


def _check_chunk(chunk) -> int:
    return check_positive_int("chunk", chunk)


def _check_q_logits(model: CategoricalVAE, x: torch.Tensor, q_logits) -> torch.Tensor:
    if q_logits is None:
        return model.encode(x)
    q_logits = check_finite("q_logits", check_tensor("q_logits", q_logits)).to(x.device)
    expected = (x.shape[0], model.n_latents, model.n_categories)
    if tuple(q_logits.shape) != expected:
        raise ValueError(f"q_logits must have shape {expected}, got {tuple(q_logits.shape)}")
    return q_logits


def _exact_elbo(model: CategoricalVAE, x: torch.Tensor, q_logits: torch.Tensor, chunk: int) -> torch.Tensor:
    """The enumerated ELBO of each image, differentiable (no argument checks)."""
    log_q = torch.log_softmax(q_logits, dim=-1)
    out = []
    for i, (ll, codes, xb) in enumerate(_enumerate(model, x, chunk)):
        lq = log_q[i * chunk : i * chunk + xb.shape[0]]  # (b, L, K)
        # log q(code | x) = sum_l log q_l(code_l | x): gather each latent's category.
        idx = codes.T[None].expand(lq.shape[0], -1, -1)  # (b, L, n_codes)
        log_q_codes = lq.gather(-1, idx).sum(1).T  # (n_codes, b)
        out.append((log_q_codes.exp() * ll).sum(0))
    return torch.cat(out) - categorical_kl(q_logits)


def _check_exact_args(model, x, chunk):
    if not isinstance(model, CategoricalVAE):
        raise TypeError(f"model must be a CategoricalVAE, got {type(model).__name__}")
    chunk = _check_chunk(chunk)
    x = _check_binary("x", _check_images("x", x, model.n_pixels)).to(_device(model))
    return x, chunk


@torch.no_grad()
def categorical_elbo_exact(
    model: CategoricalVAE, x: torch.Tensor, q_logits: torch.Tensor | None = None, chunk: int = 128
) -> torch.Tensor:
    r"""The exact ELBO of each image, by enumerating all :math:`K^L` latent configurations.

    .. math::

        \begin{aligned}
        \mathcal L(x) &= \sum_{z} q(z \mid x) \log p_\theta(x \mid z)
          - \mathrm{KL}(q(z \mid x) \,\|\, p(z)), \\
        q(z \mid x) &= \prod_l q_l(z_l \mid x).
        \end{aligned}

    Args:
        model: a :class:`CategoricalVAE` with at most ``MAX_ENUMERATION`` configurations.
        x: binary images ``(batch, n_pixels)``.
        q_logits: logits ``(batch, n_latents, n_categories)`` of another factorized
            :math:`q`; default the encoder's.
        chunk: images per enumeration pass (memory ``n_codes * chunk * n_pixels``).

    Computed without gradients; :func:`categorical_exact_loss` is the same sum with them.
    """
    x, chunk = _check_exact_args(model, x, chunk)
    return _exact_elbo(model, x, _check_q_logits(model, x, q_logits), chunk)


def categorical_exact_loss(model: CategoricalVAE, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    r"""Minus the batch mean of the exact ELBO, with its autograd graph: the exact gradient's loss.

    .. math::

        \begin{aligned}
        \ell(\theta, \phi) &= -\frac1B \sum_{i=1}^B \mathcal L(x_i), \\
        \mathcal L(x) &= \sum_{z} q_\phi(z \mid x) \log p_\theta(x \mid z) \\
          &\quad - \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z)).
        \end{aligned}

    Every term is a finite sum over the :math:`K^L` codes of differentiable functions of
    :math:`\theta` and :math:`\phi`, so ``loss.backward()`` gives the exact gradient
    :math:`-\nabla \frac1B\sum_i \mathcal L(x_i)` in both the decoder and the encoder,
    with no sampling at all. Its value is the same as
    ``-categorical_elbo_exact(model, x).mean()``, and its gradient is what every gradient
    estimator of :func:`elbo_surrogate` (same ``x``) tries to estimate.
    """
    x, chunk = _check_exact_args(model, x, chunk)
    return -_exact_elbo(model, x, model.encode(x), chunk).mean()


def exact_encoder_gradient(model: CategoricalVAE, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    r"""The exact encoder gradient of :func:`categorical_exact_loss`, flattened like :func:`encoder_gradients`' rows.

    .. math::

        \begin{aligned}
        g &= \nabla_\phi \Bigl(-\frac1B \sum_i \mathcal L(x_i)\Bigr) \\
          &= -\frac1B \sum_i \Bigl[\sum_z \log p_\theta(x_i \mid z)\,
            \nabla_\phi q_\phi(z \mid x_i) \\
          &\qquad - \nabla_\phi \mathrm{KL}\bigl(q_\phi(z \mid x_i)
            \,\|\, p(z)\bigr)\Bigr].
        \end{aligned}

    The sign and the parameter order match :func:`encoder_gradients`, so
    ``encoder_gradients(model, x, est).mean(0) - exact_encoder_gradient(model, x)``
    estimates the bias of the estimator ``est``. The model is left unchanged.

    Returns:
        Tensor ``(n_encoder_parameters,)`` on the model's device.
    """
    loss = categorical_exact_loss(model, x, chunk)
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@torch.no_grad()
def categorical_log_marginal(model: CategoricalVAE, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    r"""Exact :math:`\log p_\theta(x) = \operatorname{logsumexp}_z \bigl[\log p_\theta(x \mid z) + \log p(z)\bigr]`, :math:`\log p(z) = -L \log K`."""
    if not isinstance(model, CategoricalVAE):
        raise TypeError(f"model must be a CategoricalVAE, got {type(model).__name__}")
    chunk = _check_chunk(chunk)
    x = _check_binary("x", _check_images("x", x, model.n_pixels)).to(_device(model))
    log_prior = -model.n_latents * math.log(model.n_categories)
    return torch.cat([torch.logsumexp(ll, dim=0) for ll, _, _ in _enumerate(model, x, chunk)]) + log_prior


def encoder_gradients(
    model: nn.Module,
    x: torch.Tensor,
    estimator: str,
    *,
    n_repeats: int = 20,
    n_samples: int = 1,
    baseline: str | None = "loo",
    temperature: float = 1.0,
) -> torch.Tensor:
    r"""``n_repeats`` independent estimates of the encoder gradient :math:`-\nabla_\phi` loss, flattened.

    Row :math:`r` is :math:`\nabla_\phi` of :func:`elbo_surrogate`'s loss (batch mean of minus
    the surrogate) with fresh noise; ``.mean(0)`` estimates the gradient, ``.var(0)`` the
    variance of one estimate, coordinate by coordinate. The model is left unchanged.

    Returns:
        Tensor ``(n_repeats, n_encoder_parameters)`` on the model's device.
    """
    n_repeats = check_positive_int("n_repeats", n_repeats)
    params = list(model.encoder.parameters()) if isinstance(model, (GaussianVAE, CategoricalVAE)) else None
    rows = []
    for _ in range(n_repeats):
        loss, _ = elbo_surrogate(
            model, x, estimator, n_samples=n_samples, baseline=baseline, temperature=temperature
        )
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def temperature_schedule(step: int, n_steps: int, start: float = 1.0, end: float = 0.5) -> float:
    r"""Geometric annealing :math:`\tau_t = \tau_0 (\tau_1/\tau_0)^{t/(T-1)}`, from ``start`` at step 0 to ``end`` at step :math:`T-1`.

    Exponential decay of the temperature, as in :cite:t:`jang2017`, over a fixed budget.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    step = check_positive_int("step", step, minimum=0)
    if step >= n_steps:
        raise ValueError(f"step must be < n_steps={n_steps}, got {step}")
    start, end = _check_temperature(start), _check_temperature(end)
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
    baseline: str | None = "loo",
    temperature: tuple[float, float] = (1.0, 0.5),
    eval_samples: int = 16,
    progress: bool = False,
) -> TrainingHistory:
    r"""Train ``model`` with Adam on the ELBO, its encoder gradient from ``estimator``.

    Each epoch visits the training images once in an order drawn from torch's global
    CPU generator, in minibatches of ``batch_size``; every estimator gets the same
    number of steps and ``n_samples`` draws per image. The Gumbel-softmax temperature
    follows :func:`temperature_schedule` from ``temperature[0]`` to ``temperature[1]``.
    After each epoch the held-out ELBO is recorded (exact for a :class:`CategoricalVAE`,
    a Monte Carlo estimate with ``eval_samples`` draws from a fixed-seed generator for a
    :class:`GaussianVAE`).

    ``progress=True`` shows a text tqdm bar on stderr (never ``tqdm.notebook``); the
    book's notebooks pass ``False`` so nothing that varies reaches stored outputs.
    """
    estimator = _check_estimator(model, estimator)
    x_train = _check_binary("x_train", _check_images("x_train", x_train, model.n_pixels)).to(_device(model))
    if x_test is not None:
        x_test = _check_binary("x_test", _check_images("x_test", x_test, model.n_pixels)).to(_device(model))
    n_epochs = check_positive_int("n_epochs", n_epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    n_samples = check_positive_int("n_samples", n_samples)
    eval_samples = check_positive_int("eval_samples", eval_samples)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if estimator == "score function":
        _check_baseline(baseline, n_samples)
    if not (isinstance(temperature, (tuple, list)) and len(temperature) == 2):
        raise TypeError(f"temperature must be a (start, end) pair, got {temperature!r}")
    tau0, tau1 = (_check_temperature(t) for t in temperature)
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
            loss, elbo = elbo_surrogate(
                model, batch, estimator, n_samples=n_samples, baseline=baseline, temperature=tau
            )
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
