r"""Chapter 10's experiments: multi-sample bounds, their gradients' signal-to-noise, and VAEs.

* The conjugate model :math:`z \sim N(0, 1)`, :math:`x \mid z \sim N(z, 1)`, with
  posterior :math:`N(x/2, 1/2)` and evidence :math:`N(x; 0, 2)`, and the variational
  family :math:`q = N(m, s^2)` with parameters :math:`(m, \log s)`.
* The signal-to-noise ratio of a gradient estimator, coordinate by coordinate,
  :math:`\mathrm{SNR} = |\mathbb E \hat g| / \operatorname{sd}(\hat g)` :cite:p:`rainforth2018`.
* Seed-vectorised VAEs on the binarized digits: every parameter carries a leading
  dimension of size ``S`` (one slice per seed, or per independent copy), so ``S``
  models train, or ``S`` independent gradient estimates are drawn, in one batched pass.
  Adam updates each entry on its own, so the slices never mix.

All noise is drawn on the CPU (torch's global generator, or a seeded ``torch.Generator``)
and moved to the parameters' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Normal

from companion.estimators import loo_baseline
from companion.experiments.vae_models import (
    SCORE_FUNCTION_LOO,
    _categorical_kl,
    _codes,
    _gaussian_parameters,
    _score_surrogate,
    bernoulli_log_likelihood,
)
from companion.experiments.vae_seeds import _mlp
from companion.multisample import elbo_gradient
from companion.validation import check_choice, check_positive_int, check_tensor

__all__ = [
    "CONJUGATE_X",
    "conjugate_log_joint",
    "conjugate_q",
    "conjugate_posterior_params",
    "conjugate_log_evidence",
    "conjugate_elbo",
    "conjugate_elbo_gradient",
    "snr",
    "conjugate_weight_variance",
    "init_gaussian_vae",
    "init_categorical_vae",
    "gaussian_log_weights",
    "gaussian_surrogate",
    "gaussian_iwae",
    "gradient_estimates",
    "CATEGORICAL_GRADIENTS",
    "categorical_surrogate",
    "categorical_log_marginal",
    "categorical_elbo",
    "train",
    "TrainResult",
]

#: The observation of the conjugate model used throughout the chapter.
CONJUGATE_X = 1.4
#: The categorical VAE's gradient estimators, by catalogue key (VIMCO on the k-sample
#: bound, and chapter 9's score function with the leave-one-out baseline on the ELBO).
CATEGORICAL_GRADIENTS = ("elbo_gradient[score]", SCORE_FUNCTION_LOO)
_LOG_2PI = math.log(2 * math.pi)


# -- the conjugate model -------------------------------------------------------------------


def conjugate_log_joint(x: float = CONJUGATE_X):
    r"""``log_joint(z)`` :math:`= \log N(z; 0, 1) + \log N(x; z, 1)`, elementwise in ``z``."""

    def log_joint(z: torch.Tensor) -> torch.Tensor:
        xt = torch.as_tensor(x, dtype=z.dtype, device=z.device)
        return -_LOG_2PI - 0.5 * z.square() - 0.5 * (xt - z).square()

    return log_joint


def conjugate_q(params: torch.Tensor) -> Normal:
    r""":math:`q = N(m, s^2)` from ``params`` :math:`= (m, \log s)`."""
    return Normal(params[0], params[1].exp())


def conjugate_posterior_params(x: float = CONJUGATE_X, dtype=torch.float32) -> torch.Tensor:
    r"""The exact posterior's parameters :math:`(x/2, \tfrac12 \log\tfrac12)`."""
    return torch.tensor([x / 2, 0.5 * math.log(0.5)], dtype=dtype)


def conjugate_log_evidence(x: float = CONJUGATE_X) -> float:
    r""":math:`\log p(x) = \log N(x; 0, 2) = -\tfrac12\log(4\pi) - x^2/4`."""
    return -0.5 * math.log(4 * math.pi) - x * x / 4


def conjugate_elbo(m: float, log_s: float, x: float = CONJUGATE_X) -> float:
    r""":math:`\mathcal L_1 = -\tfrac12\log 2\pi - \tfrac12(m^2+s^2) - \tfrac12((x-m)^2+s^2) + \tfrac12 + \log s`."""
    s2 = math.exp(2 * log_s)
    return -0.5 * _LOG_2PI - 0.5 * (m * m + s2) - 0.5 * ((x - m) ** 2 + s2) + 0.5 + log_s


def conjugate_elbo_gradient(m: float, log_s: float, x: float = CONJUGATE_X) -> tuple[float, float]:
    r""":math:`\nabla_{(m, \log s)}\mathcal L_1 = (x - 2m,\ 1 - 2s^2)`."""
    return x - 2 * m, 1 - 2 * math.exp(2 * log_s)


def snr(estimates: torch.Tensor) -> torch.Tensor:
    r"""Per-coordinate :math:`|\bar g| / s_g` of estimates ``(n, ...)`` (draws along dimension 0).

    A coordinate whose estimates are all equal (:math:`s_g = 0`) gets NaN: its SNR is
    not defined by the sample (an exactly zero gradient, or no noise at all).
    """
    estimates = check_tensor("estimates", estimates)
    if estimates.shape[0] < 2:
        raise ValueError(f"estimates needs at least 2 rows, got shape {tuple(estimates.shape)}")
    sd = estimates.std(0)
    return torch.where(sd > 0, estimates.mean(0).abs() / sd, torch.full_like(sd, float("nan")))


def conjugate_weight_variance(params: torch.Tensor, x: float = CONJUGATE_X) -> float:
    r""":math:`V = \operatorname{Var}_q[w / p(x)] = \int p(z \mid x)^2 / q(z)\, dz - 1` by quadrature.

    By the delta method :math:`\log p(x) - \mathcal L_k \approx V / (2k)` for large
    :math:`k` :cite:p:`rainforth2018`; infinite when :math:`q`'s tails are too light
    (:math:`s^2 \le 1/4`)."""
    from scipy import integrate

    m, s = float(params[0]), math.exp(float(params[1]))
    if s * s <= 0.25:
        return math.inf
    a, va = x / 2, 0.5

    def integrand(z):
        log_post = -0.5 * math.log(2 * math.pi * va) - (z - a) ** 2 / (2 * va)
        log_q = -0.5 * math.log(2 * math.pi * s * s) - (z - m) ** 2 / (2 * s * s)
        return math.exp(2 * log_post - log_q)

    value, _ = integrate.quad(integrand, -math.inf, math.inf)
    return value - 1.0


# -- seed-vectorised VAEs ------------------------------------------------------------------


def _linear_init(s: int, n_in: int, n_out: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # torch.nn.Linear's default: uniform(-1/sqrt(n_in), 1/sqrt(n_in)) for weights and biases.
    bound = 1 / math.sqrt(n_in)
    w = (torch.rand(s, n_in, n_out, generator=g) * 2 - 1) * bound
    b = (torch.rand(s, 1, n_out, generator=g) * 2 - 1) * bound
    return w, b


def _init(seeds, sizes: dict[str, tuple[int, int]], device) -> dict[str, torch.Tensor]:
    params: dict[str, list[torch.Tensor]] = {}
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        for name, (n_in, n_out) in sizes.items():
            w, b = _linear_init(1, n_in, n_out, g)
            params.setdefault(name + ".w", []).append(w)
            params.setdefault(name + ".b", []).append(b)
    return {k: torch.cat(v).to(device).requires_grad_() for k, v in params.items()}


def init_gaussian_vae(seeds, n_latent: int = 4, n_hidden: int = 64, n_pixels: int = 64, device="cpu"):
    r"""Stacked parameters of ``len(seeds)`` Gaussian VAEs (one-hidden-layer tanh MLPs, as chapter 9's).

    Encoder :math:`x \mapsto (\mu, \operatorname{softplus}(\cdot) + 10^{-4})`, decoder
    :math:`z \mapsto` Bernoulli logits; prior :math:`N(0, I)`. Each tensor has leading
    dimension ``S = len(seeds)``; slice ``s`` is initialised from seed ``seeds[s]``. The
    names and layout are :mod:`companion.experiments.vae_seeds`' (``"encoder.0.w"``
    ``(S, n_in, n_out)``, ``"encoder.0.b"`` ``(S, 1, n_out)``, ... ``"decoder.2.b"``), so
    its stacked MLP runs them.
    """
    sizes = {"encoder.0": (n_pixels, n_hidden), "encoder.2": (n_hidden, 2 * n_latent),
             "decoder.0": (n_latent, n_hidden), "decoder.2": (n_hidden, n_pixels)}
    return _init(seeds, sizes, device)


def init_categorical_vae(seeds, n_latents: int = 2, n_categories: int = 8, n_hidden: int = 64,
                         n_pixels: int = 64, device="cpu"):
    """Stacked parameters of ``len(seeds)`` VAEs with ``n_latents`` uniform categorical latents."""
    sizes = {"encoder.0": (n_pixels, n_hidden), "encoder.2": (n_hidden, n_latents * n_categories),
             "decoder.0": (n_latents * n_categories, n_hidden), "decoder.2": (n_hidden, n_pixels)}
    return _init(seeds, sizes, device)


def _encode_gaussian(p: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale ``(S, B, d)`` of every slice's encoder (chapter 9's parameterization)."""
    return _gaussian_parameters(_mlp(p, "encoder", x))


def _gaussian_parts(p: dict, x: torch.Tensor, k: int, generator=None):
    """``log p(x, z)`` ``(S, k, B)``, ``z`` ``(S, k, B, d)``, and the encoder's ``mu, sigma``."""
    s = p["encoder.0.w"].shape[0]
    if x.dim() == 2:
        x = x.expand(s, *x.shape)
    b, d = x.shape[1], p["decoder.0.w"].shape[1]
    mu, sigma = _encode_gaussian(p, x)  # (S, B, d)
    eps = torch.randn(s, k, b, d, generator=generator).to(x.device)
    z = mu.unsqueeze(1) + sigma.unsqueeze(1) * eps  # (S, k, B, d)
    logits = _mlp(p, "decoder", z.reshape(s, k * b, d)).reshape(s, k, b, -1)
    log_p = bernoulli_log_likelihood(logits, x.unsqueeze(1)) - 0.5 * (z.square().sum(-1) + d * _LOG_2PI)
    return log_p, z, mu, sigma


def _gaussian_log_q(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    d = z.shape[-1]
    return (-0.5 * ((z - mu.unsqueeze(1)) / sigma.unsqueeze(1)).square()
            - sigma.unsqueeze(1).log()).sum(-1) - 0.5 * d * _LOG_2PI


def gaussian_log_weights(p: dict, x: torch.Tensor, k: int, stop_q: bool = False, generator=None):
    r"""Log-weights :math:`\log w_j = \log p(x, z_j) - \log q(z_j \mid x)`, ``(S, k, B)``, and the ``z``.

    ``x`` is ``(S, B, 64)`` (each slice its own images) or ``(B, 64)`` (shared);
    :math:`z_j = \mu + \sigma\varepsilon_j` with :math:`\varepsilon` drawn on the CPU
    (from ``generator``, or torch's global generator).
    ``stop_q`` holds :math:`\mu, \sigma` fixed inside :math:`\log q` (the path through
    :math:`z` stays), as sticking the landing and DReG need.
    """
    log_p, z, mu, sigma = _gaussian_parts(p, x, k, generator)
    if stop_q:
        mu, sigma = mu.detach(), sigma.detach()
    return log_p - _gaussian_log_q(z, mu, sigma), z


def _per_slice(name: str, value, s: int, kind) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * s
    if len(values) != s:
        raise ValueError(f"{name} must be one value or one per slice ({s}), got {len(values)}")
    return values


def gaussian_surrogate(p: dict, x: torch.Tensor, k, gradient) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A loss whose gradient is minus the chosen estimate of :math:`\nabla\mathcal L_k`, summed over slices.

    ``k`` and ``gradient`` are one value for every slice, or one per slice (so that
    models trained with different settings share one batched pass; a slice with a
    smaller ``k`` ignores the extra draws).

    ``"reparam"``: minus the batch mean of :math:`\log\frac1k\sum_j w_j`. ``"dreg"``: the
    decoder's gradient is the IWAE one, :math:`\sum_j \tilde w_j \nabla_\theta\log p_\theta(x, z_j)`;
    the encoder's is :math:`\sum_j \tilde w_j^2\,\partial_{z_j}\log w_j\,\partial_\phi z_j`
    with :math:`\log q` held fixed: the surrogate :math:`\sum_j \operatorname{sg}(\tilde w_j)\log w_j`
    gives both weights :math:`\tilde w_j`, and a hook multiplies the gradient reaching
    :math:`z_j` by :math:`\tilde w_j` once more. Returns ``(loss, bound)`` with ``bound``
    the per-slice, per-image bound estimates ``(S, B)`` (detached).
    """
    s = p["encoder.0.w"].shape[0]
    ks = [check_positive_int("k", v) for v in _per_slice("k", k, s, int)]
    grads = [check_choice("gradient", v, ("reparam", "dreg")) for v in _per_slice("gradient", gradient, s, str)]
    k_max = max(ks)
    dev = p["encoder.0.w"].device
    is_dreg = torch.tensor([g == "dreg" for g in grads], device=dev)
    log_p, z, mu, sigma = _gaussian_parts(p, x, k_max)
    log_q_full = _gaussian_log_q(z, mu, sigma)
    log_q_stop = _gaussian_log_q(z, mu.detach(), sigma.detach())
    log_w = log_p - torch.where(is_dreg[:, None, None], log_q_stop, log_q_full)
    keep = torch.arange(k_max, device=dev)[None, :] < torch.tensor(ks, device=dev)[:, None]  # (S, k)
    log_w = log_w.masked_fill(~keep[:, :, None], -math.inf)
    log_k = torch.tensor(ks, dtype=log_w.dtype, device=dev).log()[:, None]
    bound = torch.logsumexp(log_w, 1) - log_k  # (S, B)
    w = torch.softmax(log_w.detach(), 1)  # (S, k, B); zero on ignored draws
    if bool(is_dreg.any()):
        factor = torch.where(is_dreg[:, None, None], w, torch.ones_like(w))
        z.register_hook(lambda g: g * factor.unsqueeze(-1))
    dreg_obj = (w * log_w.masked_fill(~keep[:, :, None], 0.0)).sum(1)
    objective = torch.where(is_dreg[:, None], dreg_obj, bound)
    return -objective.mean(1).sum(), bound.detach()


@torch.no_grad()
def gaussian_iwae(p: dict, x: torch.Tensor, k: int, chunk: int = 50, seed: int = 12345) -> torch.Tensor:
    r"""The :math:`k`-sample bound of every image under every slice, ``(S, B)``: a held-out
    estimate of :math:`\log p_\theta(x)` from below when :math:`k` is large. Noise from a
    CPU generator seeded with ``seed``; the :math:`k` draws are taken ``chunk`` at a time
    and combined with a running ``logsumexp``."""
    k = check_positive_int("k", k)
    g = torch.Generator().manual_seed(seed)
    total = None
    done = 0
    while done < k:
        m = min(chunk, k - done)
        log_w, _ = gaussian_log_weights(p, x, m, generator=g)
        part = torch.logsumexp(log_w, 1)
        total = part if total is None else torch.logaddexp(total, part)
        done += m
    return total - math.log(k)


def gradient_estimates(p: dict, x: torch.Tensor, k: int, gradient: str, n_estimates: int,
                       part: str = "encoder") -> torch.Tensor:
    r"""``n_estimates`` independent estimates of the gradient of :math:`\mathcal L_k` (mean over the
    images ``x``) with respect to the ``part``'s parameters (``"encoder"`` or ``"decoder"``),
    flattened: ``(n_estimates, n_parameters)``.

    ``p`` holds one model (slice 0 is used); it is copied ``n_estimates`` times along the
    slice dimension, so one batched pass draws fresh noise for every copy and the
    gradient of the summed loss with respect to the copies is the stack of the
    per-copy estimates.
    """
    n = check_positive_int("n_estimates", n_estimates)
    check_choice("part", part, ("encoder", "decoder"))
    copies = {name: t[:1].detach().expand(n, *t.shape[1:]).clone().requires_grad_() for name, t in p.items()}
    loss, _ = gaussian_surrogate(copies, x, k, gradient)
    names = [name for name in copies if name.startswith(part + ".")]
    grads = torch.autograd.grad(loss, [copies[name] for name in names])
    return -torch.cat([g.reshape(n, -1) for g in grads], 1)


def _categorical_parts(p: dict, x: torch.Tensor, k: int, n_latents: int, n_categories: int):
    s = p["encoder.0.w"].shape[0]
    if x.dim() == 2:
        x = x.expand(s, *x.shape)
    b = x.shape[1]
    logits = _mlp(p, "encoder", x).reshape(s, b, n_latents, n_categories)
    log_q_all = torch.log_softmax(logits, -1)
    with torch.no_grad():
        u = torch.rand(s, k, b, n_latents, n_categories).clamp_(min=1e-12, max=1 - 1e-7).to(x.device)
        codes = (log_q_all.detach().unsqueeze(1) - (-u.log()).log()).argmax(-1)  # Gumbel-max
    y = F.one_hot(codes, n_categories).to(x.dtype)  # (S, k, B, L, K)
    log_q = (log_q_all.unsqueeze(1) * y).sum((-1, -2))  # (S, k, B)
    dec_logits = _mlp(p, "decoder", y.reshape(s, k * b, n_latents * n_categories)).reshape(s, k, b, -1)
    ll = bernoulli_log_likelihood(dec_logits, x.unsqueeze(1))
    return ll, log_q, log_q_all


def categorical_surrogate(p: dict, x: torch.Tensor, k: int, gradient, n_latents: int = 2,
                          n_categories: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Score-function losses for the categorical VAE (uniform prior :math:`p(z) = K^{-L}`), summed over slices.

    ``gradient`` is one value for every slice or one per slice:

    * ``"elbo_gradient[score]"`` (VIMCO): the :math:`k`-sample bound with VIMCO's
      leave-one-out signal :math:`\hat{\mathcal L}_k - \hat{\mathcal L}_{k,-j}` for
      :math:`\log q(z_j)`, as in :func:`companion.multisample.elbo_gradient` with
      ``gradient="score"``;
    * ``"score_function[baseline='loo']"``: chapter 9's ELBO with :math:`k` draws, exact
      KL to the prior, and the leave-one-out mean of :math:`\log p_\theta(x \mid z)` as
      baseline (chapter 9's ``elbo_surrogate``).

    Both see the same :math:`k` draws per image. Returns ``(loss, bound)``: ``bound`` is
    the per-image estimate of the bound each slice optimises, ``(S, B)``.
    """
    k = check_positive_int("k", k)
    if k < 2:
        raise ValueError(f"k must be >= 2 for a leave-one-out baseline, got {k}")
    s = p["encoder.0.w"].shape[0]
    grads = [check_choice("gradient", v, CATEGORICAL_GRADIENTS) for v in _per_slice("gradient", gradient, s, str)]
    is_vimco = torch.tensor([g == CATEGORICAL_GRADIENTS[0] for g in grads], device=p["encoder.0.w"].device)
    ll, log_q, log_q_all = _categorical_parts(p, x, k, n_latents, n_categories)
    log_prior = -n_latents * math.log(n_categories)
    kl = _categorical_kl(log_q_all)  # (S, B)
    # VIMCO on the k-sample bound.
    log_w = ll + log_prior - log_q
    bound = torch.logsumexp(log_w, 1) - math.log(k)
    lw = log_w.detach()
    others = loo_baseline(lw, 1)  # (S, k, B): the mean of the other log-weights
    # log sum_{l != j} w_l: mask the diagonal of a (S, k, k, B) copy.
    mask = torch.eye(k, dtype=torch.bool, device=lw.device)[None, :, :, None]
    rest = torch.logsumexp(lw.unsqueeze(1).expand(-1, k, -1, -1).masked_fill(mask, -math.inf), 2)
    loo = torch.logaddexp(rest, others) - math.log(k)
    vimco = bound + ((bound.detach().unsqueeze(1) - loo) * log_q).sum(1)
    # Chapter 9's score function with leave-one-out baseline on the ELBO.
    elbo_sur = _score_surrogate(ll, log_q, loo=True, dim=1).mean(1) - kl
    elbo = ll.detach().mean(1) - kl.detach()
    surrogate = torch.where(is_vimco[:, None], vimco, elbo_sur)
    return -surrogate.mean(1).sum(), torch.where(is_vimco[:, None], bound.detach(), elbo)


@torch.no_grad()
def categorical_elbo(p: dict, x: torch.Tensor, n_latents: int = 2, n_categories: int = 8) -> torch.Tensor:
    r"""Exact ELBO :math:`\sum_z q(z \mid x)\log p_\theta(x \mid z) - \mathrm{KL}(q \,\|\, p)` of every image under
    every slice, ``(S, B)``, by enumerating the :math:`K^L` codes."""
    s = p["encoder.0.w"].shape[0]
    ll, codes = _enumerate_ll(p, x, n_latents, n_categories)  # (S, C, B), (C, L)
    log_q_all = torch.log_softmax(_mlp(p, "encoder", x.expand(s, *x.shape)).reshape(s, -1, n_latents, n_categories), -1)
    idx = codes.T.to(x.device)  # (L, C)
    log_q = torch.stack([log_q_all[:, :, l, idx[l]] for l in range(n_latents)]).sum(0)  # (S, B, C)
    return (log_q.exp() * ll.transpose(1, 2)).sum(-1) - _categorical_kl(log_q_all)


def _enumerate_ll(p: dict, x: torch.Tensor, n_latents: int, n_categories: int):
    s = p["encoder.0.w"].shape[0]
    codes = _codes(n_latents, n_categories)
    y = F.one_hot(codes, n_categories).to(x.dtype).reshape(1, -1, n_latents * n_categories).to(x.device)
    logits = _mlp(p, "decoder", y.expand(s, -1, -1))  # (S, C, 64)
    return bernoulli_log_likelihood(logits.unsqueeze(2), x.reshape(1, 1, *x.shape[-2:])), codes  # (S, C, B)


@torch.no_grad()
def categorical_log_marginal(p: dict, x: torch.Tensor, n_latents: int = 2, n_categories: int = 8) -> torch.Tensor:
    r"""Exact :math:`\log p_\theta(x) = \operatorname{logsumexp}_z \log p_\theta(x \mid z) - L\log K` of every image
    under every slice, ``(S, B)``, by enumerating the :math:`K^L` codes."""
    ll, _ = _enumerate_ll(p, x, n_latents, n_categories)
    return torch.logsumexp(ll, 1) - n_latents * math.log(n_categories)


@dataclass
class TrainResult:
    """Stacked trained parameters and the training curve (mean bound estimate per logged step, per slice)."""

    params: dict
    curve: torch.Tensor  # (n_logged, S)


def train(params: dict, x_train: torch.Tensor, loss_fn, n_steps: int, batch_size: int = 64,
          lr: float = 3e-3, seed: int = 0, log_every: int = 50, n_groups: int = 1) -> TrainResult:
    r"""Adam on the stacked parameters; each slice draws its own minibatches.

    ``loss_fn(params, x)`` with ``x`` of shape ``(S, batch_size, 64)`` returns
    ``(loss, bound)``. Minibatch indices come from a CPU generator seeded with ``seed``.
    With ``n_groups > 1`` the ``S`` slices are ``n_groups`` groups of ``S / n_groups``
    seeds, and slice ``s`` of every group sees the same minibatches (paired comparisons).
    """
    n_steps = check_positive_int("n_steps", n_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    n_groups = check_positive_int("n_groups", n_groups)
    s = next(iter(params.values())).shape[0]
    if s % n_groups:
        raise ValueError(f"n_groups={n_groups} must divide the number of slices {s}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(list(params.values()), lr=lr, fused=True)
    curve, running = [], torch.zeros(s)
    for step in range(n_steps):
        idx = torch.randint(0, x_train.shape[0], (s // n_groups, batch_size), generator=g)
        idx = idx.repeat(n_groups, 1).to(x_train.device)
        loss, bound = loss_fn(params, x_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += bound.mean(1).cpu()
        if (step + 1) % log_every == 0:
            curve.append(running / log_every)
            running = torch.zeros(s)
    for t in params.values():
        t.requires_grad_(False)
    return TrainResult(params, torch.stack(curve) if curve else torch.empty(0, s))
