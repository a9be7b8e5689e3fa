r"""Chapter 9's variational autoencoders: models, bounds and encoder-gradient estimators.

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
sampling distribution, so its gradient is always the ordinary one). Estimators are named
by their :mod:`companion.catalogue` keys:

* ``"pathwise"``: :math:`z = \mu_\phi(x) + \sigma_\phi(x)\,\varepsilon` by
  :func:`companion.reparam.gaussian` (rsample), and autograd through :math:`z`;
* ``"score_function[baseline='loo']"`` and ``"score_function"``:
  :math:`\bigl(\log p_\theta(x \mid z_s) - b_s\bigr)\nabla_\phi \log q_\phi(z_s \mid x)`
  with the leave-one-out baseline :math:`b_s` over the ``n_samples`` draws for the same
  :math:`x`, or with :math:`b_s = 0`;
* ``"gumbel_softmax"``: the decoder is fed the relaxed sample
  :func:`companion.gumbel.gumbel_softmax` at a temperature annealed during training;
* ``"straight_through"``: the one-hot sample forward, the relaxed sample's gradient backward.

For the categorical model the exact ELBO, its gradient and :math:`\log p_\theta(x)` come
from enumerating every latent configuration. The training loop is in
:mod:`companion.experiments.vae`, its seed-stacked form in
:mod:`companion.experiments.vae_seeds`.

Every random number is drawn on the CPU and moved to the model's device (see
:mod:`companion.device`), so CPU and GPU runs of the same seed see the same noise.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from companion.estimators import loo_baseline
from companion.gumbel import gumbel_max, gumbel_softmax
from companion.reparam import gaussian
from companion.validation import check_real, check_finite, check_positive_int, check_tensor

__all__ = [
    "GaussianVAE",
    "CategoricalVAE",
    "SCORE_FUNCTION_LOO",
    "GAUSSIAN_ESTIMATORS",
    "CATEGORICAL_ESTIMATORS",
    "bernoulli_log_likelihood",
    "gaussian_kl",
    "categorical_kl",
    "elbo_surrogate",
    "encoder_gradients",
    "gaussian_elbo",
    "categorical_elbo_exact",
    "categorical_log_marginal",
    "categorical_exact_loss",
    "exact_encoder_gradient",
]

#: The score function with the leave-one-out baseline, by its catalogue key.
SCORE_FUNCTION_LOO = "score_function[baseline='loo']"
#: Encoder-gradient estimators (catalogue keys) for a :class:`GaussianVAE`.
GAUSSIAN_ESTIMATORS = ("pathwise", SCORE_FUNCTION_LOO, "score_function")
#: Encoder-gradient estimators (catalogue keys) for a :class:`CategoricalVAE`.
CATEGORICAL_ESTIMATORS = ("gumbel_softmax", "straight_through", SCORE_FUNCTION_LOO, "score_function")
#: Largest number of joint latent configurations the exact categorical ELBO will enumerate.
MAX_ENUMERATION = 100_000
_LOG_2PI = math.log(2 * math.pi)


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_out))


def _gaussian_parameters(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian encoder's output ``(..., 2 n_latent)`` to its mean and scale."""
    mu, pre = out.chunk(2, dim=-1)
    return mu, F.softplus(pre) + 1e-4


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
        return _gaussian_parameters(self.encoder(_check_images("x", x, self.n_pixels)))

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


def _images(model: nn.Module, name: str, x) -> torch.Tensor:
    """Checked binary images ``(batch, model.n_pixels)`` on the model's device."""
    return _check_binary(name, _check_images(name, x, model.n_pixels)).to(_device(model))


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
    return _categorical_kl(torch.log_softmax(logits, dim=-1))


def _categorical_kl(log_q: torch.Tensor) -> torch.Tensor:
    """:func:`categorical_kl` from the log-probabilities ``(..., L, K)`` (no checks)."""
    n_latents, n_categories = log_q.shape[-2:]
    return (log_q.exp() * log_q).sum((-1, -2)) + n_latents * math.log(n_categories)


def _gaussian_log_q(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \mathcal N(z; \mu, \operatorname{diag}\sigma^2)`, summed over the last dimension."""
    return (-0.5 * ((z - mu) / sigma).square() - sigma.log() - 0.5 * _LOG_2PI).sum(-1)


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


def _check_n_samples(estimator: str, n_samples) -> int:
    n = check_positive_int("n_samples", n_samples)
    if estimator == SCORE_FUNCTION_LOO and n < 2:
        raise ValueError(
            f"estimator {SCORE_FUNCTION_LOO!r} needs n_samples >= 2 (the baseline averages the other "
            f"draws), got n_samples={n}"
        )
    return n


def _score_surrogate(ll: torch.Tensor, log_q: torch.Tensor, loo: bool, dim: int = 0) -> torch.Tensor:
    """``ll + sg(ll - b) log_q``, samples along ``dim``: its value is ``ll``, its encoder gradient
    the score-function estimate (``b`` the leave-one-out baseline if ``loo``, else 0)."""
    signal = ll.detach()
    if loo:
        signal = signal - loo_baseline(signal, dim)
    return ll + signal * log_q - (signal * log_q).detach()


def elbo_surrogate(
    model: nn.Module,
    x: torch.Tensor,
    estimator: str,
    *,
    n_samples: int = 1,
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

    where :math:`z_s` carries no gradient and :math:`\operatorname{sg}` stops gradients
    (:math:`b_s = 0` for ``"score_function"``): its value is the ELBO estimate, its
    :math:`\phi`-gradient

    .. math::

        \frac1S\sum_s \bigl(\log p_\theta(x \mid z_s) - b_s\bigr)\,
        \nabla_\phi\log q_\phi(z_s \mid x) - \nabla_\phi\mathrm{KL}.

    Args:
        model: a :class:`GaussianVAE` or :class:`CategoricalVAE`.
        x: binary images ``(batch, n_pixels)``.
        estimator: a catalogue key in ``GAUSSIAN_ESTIMATORS`` or ``CATEGORICAL_ESTIMATORS``.
        n_samples: draws :math:`S` of :math:`z` per image (at least 2 for the
            leave-one-out baseline).
        temperature: :math:`\tau > 0` of the Gumbel-softmax relaxations.

    Returns:
        ``(loss, elbo)``: the scalar loss (minus the batch mean of the surrogate), and the
        per-image ELBO estimates ``(batch,)`` (detached). For a categorical model the ELBO
        estimate is always that of the **discrete** model, the decoder fed one-hot samples,
        even when the gradient comes from a relaxation.
    """
    estimator = _check_estimator(model, estimator)
    n = _check_n_samples(estimator, n_samples)
    tau = check_real("temperature", temperature, positive=True)
    x = _images(model, "x", x)
    loo = estimator == SCORE_FUNCTION_LOO

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
            objective = _score_surrogate(ll, _gaussian_log_q(z, mu, sigma), loo)
    else:
        logits = model.encode(x)
        kl = categorical_kl(logits)
        expanded = logits.expand((n,) + logits.shape)
        if estimator in (SCORE_FUNCTION_LOO, "score_function"):
            with torch.no_grad():
                k = gumbel_max(expanded)  # exact categorical samples, noise on the CPU
            y = F.one_hot(k, model.n_categories).to(logits.dtype)
            ll = bernoulli_log_likelihood(model.decode(y), x)
            log_q = (torch.log_softmax(logits, -1) * y).sum((-1, -2))
            objective = _score_surrogate(ll, log_q, loo)
        else:
            y = gumbel_softmax(expanded, tau, hard=(estimator == "straight_through"))
            objective = bernoulli_log_likelihood(model.decode(y), x)
            if estimator == "straight_through":
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
    x = _images(model, "x", x)
    mu, sigma = model.encode(x)
    z = gaussian(mu, sigma, sample_shape=(n,), generator=generator)
    return bernoulli_log_likelihood(model.decode(z), x).mean(0) - gaussian_kl(mu, sigma)


def _codes(n_latents: int, n_categories: int) -> torch.Tensor:
    """Every joint latent configuration, ``(n_categories**n_latents, n_latents)``, on the CPU."""
    n_codes = n_categories**n_latents
    if n_codes > MAX_ENUMERATION:
        raise ValueError(
            f"n_categories**n_latents = {n_categories}**{n_latents} = {n_codes} latent "
            f"configurations is more than MAX_ENUMERATION={MAX_ENUMERATION} to enumerate"
        )
    grids = torch.meshgrid(*[torch.arange(n_categories)] * n_latents, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def _code_log_likelihoods(dec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p(x_b \mid c)` for decoder logits ``dec`` ``(..., n_codes, n_pixels)`` and
    images ``x`` ``(..., B, n_pixels)``: ``(..., n_codes, B)``.

    :math:`\log p(x \mid c) = \sum_j [x_j \ell_{cj} - \operatorname{softplus}(\ell_{cj})]`:
    one matrix product for all codes and images.
    """
    return dec @ x.transpose(-1, -2) - F.softplus(dec).sum(-1, keepdim=True)


def _expected_log_likelihood(log_q: torch.Tensor, onehot: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_c q(c \mid x_b) \log p(x_b \mid c)` over every code :math:`c`.

    ``log_q`` ``(..., B, L, K)`` are the encoder's log-probabilities, ``onehot``
    ``(n_codes, L, K)`` the codes' one-hot rows and ``ll`` ``(..., n_codes, B)`` from
    :func:`_code_log_likelihoods`. :math:`\log q(c \mid x) = \sum_l \log q_l(c_l \mid x)` for
    all codes is one matrix product of the one-hot rows with :math:`\log q`. Returns ``(..., B)``.
    """
    log_q_codes = onehot.flatten(-2) @ log_q.flatten(-2).transpose(-1, -2)  # (..., n_codes, B)
    return (log_q_codes.exp() * ll).sum(-2)


def _enumerate(model: CategoricalVAE, x: torch.Tensor, chunk: int):
    """Yield per chunk of images ``(log p(x|c), onehot, start, stop)``: ``log p(x|c)`` of shape
    ``(n_codes, stop - start)`` and the codes' one-hot rows ``(n_codes, L, K)``."""
    codes = _codes(model.n_latents, model.n_categories).to(x.device)
    onehot = F.one_hot(codes, model.n_categories).to(x.dtype)
    dec = model.decode(onehot)  # (n_codes, n_pixels): the decoder does not depend on x
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        yield _code_log_likelihoods(dec, x[start:stop]), onehot, start, stop


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
    recon = [
        _expected_log_likelihood(log_q[start:stop], onehot, ll)
        for ll, onehot, start, stop in _enumerate(model, x, chunk)
    ]
    return torch.cat(recon) - _categorical_kl(log_q)


def _check_exact_args(model, x, chunk):
    if not isinstance(model, CategoricalVAE):
        raise TypeError(f"model must be a CategoricalVAE, got {type(model).__name__}")
    return _images(model, "x", x), check_positive_int("chunk", chunk)


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
    return _flat_encoder_gradient(model, categorical_exact_loss(model, x, chunk))


def _flat_encoder_gradient(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    """``loss``'s gradient in the encoder's parameters, flattened in their order."""
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@torch.no_grad()
def categorical_log_marginal(model: CategoricalVAE, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    r"""Exact :math:`\log p_\theta(x) = \operatorname{logsumexp}_z \bigl[\log p_\theta(x \mid z) + \log p(z)\bigr]`, :math:`\log p(z) = -L \log K`."""
    x, chunk = _check_exact_args(model, x, chunk)
    log_prior = -model.n_latents * math.log(model.n_categories)
    return torch.cat([torch.logsumexp(ll, dim=0) for ll, *_ in _enumerate(model, x, chunk)]) + log_prior


def encoder_gradients(
    model: nn.Module,
    x: torch.Tensor,
    estimator: str,
    *,
    n_repeats: int = 20,
    n_samples: int = 1,
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
    rows = []
    for _ in range(n_repeats):
        loss, _ = elbo_surrogate(model, x, estimator, n_samples=n_samples, temperature=temperature)
        rows.append(_flat_encoder_gradient(model, loss))
    return torch.stack(rows)
