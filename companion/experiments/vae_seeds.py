r"""Chapter 9's VAE experiments, vectorised over seeds: k models trained as one computation.

Every VAE of :mod:`companion.experiments.vae_models` is two one-hidden-layer tanh MLPs. Here the
parameters of ``k`` such models are **stacked** along a leading dimension (weights
``(k, n_in, n_out)``, biases ``(k, 1, n_out)``) and every layer is one batched matrix
product (``torch.baddbmm``) for all ``k`` at once. The loss is the **sum** of the
``k`` models' losses, so its gradient with respect to row ``i`` of the stacked
parameters is model ``i``'s gradient alone; Adam is elementwise, so one Adam over the
stacked tensors is exactly ``k`` independent Adams. Training ``k`` seeds then costs one
training run with ``k`` times wider matrix products, which on a CPU or a GPU is far
less than ``k`` runs one after the other (``benchmarks/run.py`` measures it).

The same trick gives ``R`` independent gradient estimates of **one** model in one
backward pass (:func:`encoder_gradient_samples`): stack ``R`` copies of it.

The gradient sources are the estimators' catalogue keys
``"score_function[baseline='loo']"`` (leave-one-out baseline over the ``n_samples``
draws), ``"gumbel_softmax"``, ``"straight_through"`` and ``"pathwise"`` (Gaussian only),
computed as in :func:`companion.experiments.vae_models.elbo_surrogate`, and ``"exact"``
(the enumerated ELBO's gradient, categorical only). Noise is drawn on the CPU (torch's
global generator) and moved.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from companion.device import randn
from companion.experiments import vae_models as vm
from companion.experiments.vae import temperature_schedule
from companion.gumbel import gumbel_max, gumbel_softmax
from companion.stats import GradientError, gradient_error
from companion.validation import check_positive_int

__all__ = [
    "CATEGORICAL_SOURCES",
    "GAUSSIAN_SOURCES",
    "stack_models",
    "unstack_model",
    "stacked_loss",
    "stacked_exact_terms",
    "stacked_gaussian_elbo",
    "encoder_gradient_samples",
    "gradient_errors",
    "ErrorSummary",
    "summarize_errors",
    "error_table",
    "ranking",
    "StackedHistory",
    "train_stacked",
    "split_validation",
]

#: Gradient sources for stacked categorical models (the exact gradient and three estimators).
CATEGORICAL_SOURCES = ("exact", vm.SCORE_FUNCTION_LOO, "gumbel_softmax", "straight_through")
#: Gradient sources (estimators) for stacked Gaussian models.
GAUSSIAN_SOURCES = ("pathwise", vm.SCORE_FUNCTION_LOO)
_LAYERS = ("encoder.0", "encoder.2", "decoder.0", "decoder.2")


def _architecture(model) -> tuple:
    """``(kind, n_pixels, n_hidden, *latent sizes)`` of a VAE: what a stack must share."""
    if isinstance(model, vm.CategoricalVAE):
        return ("categorical", model.n_pixels, model.n_hidden, model.n_latents, model.n_categories)
    if isinstance(model, vm.GaussianVAE):
        return ("gaussian", model.n_pixels, model.n_hidden, model.n_latent)
    raise TypeError(f"models must be GaussianVAE or CategoricalVAE instances, got {type(model).__name__}")


def stack_models(models) -> dict:
    r"""Stack ``k`` VAEs of one architecture into leaf tensors with a leading seed dimension.

    Linear layer :math:`h \mapsto W h + b` of model :math:`i` becomes row :math:`i` of
    ``W`` ``(k, n_in, n_out)`` (the transpose of ``nn.Linear.weight``) and ``b``
    ``(k, 1, n_out)``. Returns a dict with those tensors (``requires_grad=True``) and the
    architecture under ``"meta"``.
    """
    models = list(models)
    if not models:
        raise ValueError("models must hold at least one model, got an empty sequence")
    arch = _architecture(models[0])
    for m in models:
        other = _architecture(m)
        if other[0] != arch[0]:
            raise TypeError("models must all be of one class")
        if other != arch:
            raise ValueError(f"models must share one architecture, got {arch[1:]} and {other[1:]}")
    params = {}
    for layer in _LAYERS:
        mods = [m.get_submodule(layer) for m in models]
        params[layer + ".w"] = torch.stack([lin.weight.detach().T for lin in mods]).clone().requires_grad_()
        params[layer + ".b"] = torch.stack([lin.bias.detach()[None] for lin in mods]).clone().requires_grad_()
    params["meta"] = arch
    return params


def unstack_model(params: dict, i: int):
    """Model ``i`` of a stack as an ordinary :mod:`companion.experiments.vae_models` module (a copy, on the stack's device)."""
    kind, n_pixels, n_hidden, *rest = params["meta"]
    k = params["encoder.0.w"].shape[0]
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k:
        raise ValueError(f"i must be an int in [0, {k}), got {i!r}")
    if kind == "categorical":
        model = vm.CategoricalVAE(n_pixels, rest[0], rest[1], n_hidden)
    else:
        model = vm.GaussianVAE(n_pixels, rest[0], n_hidden)
    model = model.to(params["encoder.0.w"].device)
    with torch.no_grad():
        for layer in _LAYERS:
            lin = model.get_submodule(layer)
            lin.weight.copy_(params[layer + ".w"][i].T)
            lin.bias.copy_(params[layer + ".b"][i, 0])
    return model


def _mlp(params: dict, net: str, x: torch.Tensor) -> torch.Tensor:
    """``(k, N, n_in) -> (k, N, n_out)``: tanh MLP of every stacked model on its own rows."""
    h = torch.tanh(torch.baddbmm(params[net + ".0.b"], x, params[net + ".0.w"]))
    return torch.baddbmm(params[net + ".2.b"], h, params[net + ".2.w"])


def _decode(params: dict, inputs: torch.Tensor) -> torch.Tensor:
    """Decoder logits for inputs ``(k, *batch, n_in)``."""
    k = inputs.shape[0]
    out = _mlp(params, "decoder", inputs.reshape(k, -1, inputs.shape[-1]))
    return out.reshape(*inputs.shape[:-1], out.shape[-1])


def _gaussian_encode(params: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale ``(k, B, n_latent)`` of every stacked Gaussian encoder."""
    return vm._gaussian_parameters(_mlp(params, "encoder", x))


def stacked_exact_terms(params: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact reconstruction term and KL of every stacked categorical model on images ``x``.

    ``x`` is ``(k, B, n_pixels)`` (each model its own images) or ``(B, n_pixels)``
    (shared). With :math:`c` running over all :math:`K^L` codes,

    .. math::

        R(x) = \sum_c q_\phi(c \mid x) \log p_\theta(x \mid c), \qquad
        \mathrm{KL}(q_\phi(\cdot \mid x) \,\|\, p),

    so the exact ELBO is :math:`R - \mathrm{KL}`, computed as
    :func:`companion.experiments.vae_models.categorical_elbo_exact` computes it
    (differentiable). Returns ``(recon, kl)``, each ``(k, B)``.
    """
    kind, n_pixels, n_hidden, n_latents, n_categories = params["meta"]
    if kind != "categorical":
        raise ValueError(f"params must stack CategoricalVAE models, got {kind!r}")
    k = params["encoder.0.w"].shape[0]
    if x.dim() == 2:
        x = x.expand(k, *x.shape)
    logits = _mlp(params, "encoder", x).unflatten(-1, (n_latents, n_categories))  # (k, B, L, K)
    log_q = torch.log_softmax(logits, -1)
    codes = vm._codes(n_latents, n_categories).to(x.device)
    onehot = F.one_hot(codes, n_categories).to(x.dtype)  # (C, L, K)
    dec = _decode(params, onehot.flatten(-2).expand(k, -1, -1))  # (k, C, n_pixels)
    ll = vm._code_log_likelihoods(dec, x)  # (k, C, B)
    return vm._expected_log_likelihood(log_q, onehot, ll), vm._categorical_kl(log_q)


def stacked_loss(params: dict, x: torch.Tensor, source: str, *, n_samples: int = 4,
                 temperature: float = 1.0) -> torch.Tensor:
    r"""Sum over the ``k`` models of each one's loss (minus its batch-mean ELBO surrogate).

    ``x`` is ``(k, B, n_pixels)``. Row :math:`i`'s gradient is what
    :func:`companion.experiments.vae_models.elbo_surrogate` would give model :math:`i` with the
    same noise (``"exact"``: :func:`companion.experiments.vae_models.categorical_exact_loss`).
    Returns a scalar.
    """
    kind, n_pixels, n_hidden, *rest = params["meta"]
    allowed = CATEGORICAL_SOURCES if kind == "categorical" else GAUSSIAN_SOURCES
    if source not in allowed:
        raise ValueError(f"source for {kind} models must be one of {allowed}, got {source!r}")
    s = vm._check_n_samples(source, n_samples)
    k, b = x.shape[:2]
    if kind == "categorical":
        if source == "exact":
            recon, kl = stacked_exact_terms(params, x)
            return -(recon - kl).mean(1).sum()
        n_latents, n_categories = rest
        logits = _mlp(params, "encoder", x).unflatten(-1, (n_latents, n_categories))  # (k, B, L, K)
        log_q_all = torch.log_softmax(logits, -1)
        kl = vm._categorical_kl(log_q_all)
        expanded = logits[:, None].expand(k, s, b, n_latents, n_categories)
        if source == vm.SCORE_FUNCTION_LOO:
            with torch.no_grad():
                y = F.one_hot(gumbel_max(expanded), n_categories).to(x.dtype)
            ll = vm.bernoulli_log_likelihood(_decode(params, y.flatten(-2)), x[:, None])
            log_q = (log_q_all[:, None] * y).sum((-1, -2))
            objective = vm._score_surrogate(ll, log_q, loo=True, dim=1)
        else:
            y = gumbel_softmax(expanded, temperature, hard=(source == "straight_through"))
            objective = vm.bernoulli_log_likelihood(_decode(params, y.flatten(-2)), x[:, None])
    else:
        (n_latent,) = rest
        mu, sigma = _gaussian_encode(params, x)
        kl = vm.gaussian_kl(mu, sigma)
        eps = randn((k, s, b, n_latent), device=x.device, dtype=x.dtype)
        if source == "pathwise":
            z = mu[:, None] + sigma[:, None] * eps
            objective = vm.bernoulli_log_likelihood(_decode(params, z), x[:, None])
        else:
            z = (mu[:, None] + sigma[:, None] * eps).detach()
            ll = vm.bernoulli_log_likelihood(_decode(params, z), x[:, None])
            log_q = vm._gaussian_log_q(z, mu[:, None], sigma[:, None])
            objective = vm._score_surrogate(ll, log_q, loo=True, dim=1)
    return -(objective.mean(1) - kl).mean(1).sum()


@torch.no_grad()
def stacked_gaussian_elbo(params: dict, x: torch.Tensor, n_samples: int = 100,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Monte Carlo ELBO ``(k, B)`` of every stacked Gaussian model on shared images ``x`` ``(B, n_pixels)``,
    :math:`\frac1S\sum_s \log p_\theta(x \mid z_s) - \mathrm{KL}`, noise from ``generator`` on the CPU."""
    kind, n_pixels, n_hidden, n_latent = params["meta"]
    if kind != "gaussian":
        raise ValueError(f"params must stack GaussianVAE models, got {kind!r}")
    k = params["encoder.0.w"].shape[0]
    s = check_positive_int("n_samples", n_samples)
    xs = x.expand(k, *x.shape)
    mu, sigma = _gaussian_encode(params, xs)
    eps = randn((k, s) + tuple(mu.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
    z = mu[:, None] + sigma[:, None] * eps
    ll = vm.bernoulli_log_likelihood(_decode(params, z), xs[:, None])
    return ll.mean(1) - vm.gaussian_kl(mu, sigma)


def encoder_gradient_samples(model, x: torch.Tensor, source: str, *, n_repeats: int = 100,
                             n_samples: int = 4, temperature: float = 1.0) -> torch.Tensor:
    r"""``n_repeats`` independent estimates of ``model``'s encoder gradient, in one backward pass.

    The vectorised equivalent of :func:`companion.experiments.vae_models.encoder_gradients`:
    ``n_repeats`` copies of ``model`` are stacked, each sees ``x`` with its own noise, and row
    :math:`r` of the result is copy :math:`r`'s gradient of minus the batch-mean ELBO
    surrogate, flattened in the order of ``model.encoder.parameters()``. ``source="exact"``
    gives ``n_repeats`` identical rows equal to
    :func:`companion.experiments.vae_models.exact_encoder_gradient`.

    Returns:
        Tensor ``(n_repeats, n_encoder_parameters)``.
    """
    r = check_positive_int("n_repeats", n_repeats)
    params = stack_models([model] * r)
    xs = x.to(params["encoder.0.w"].device).expand(r, *x.shape)
    loss = stacked_loss(params, xs, source, n_samples=n_samples, temperature=temperature)
    names = ["encoder.0.w", "encoder.0.b", "encoder.2.w", "encoder.2.b"]
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    # back to nn.Linear's layout: weight (out, in), then bias, layer by layer
    w0, b0, w2, b2 = grads
    return torch.cat([w0.transpose(1, 2).reshape(r, -1), b0.reshape(r, -1),
                      w2.transpose(1, 2).reshape(r, -1), b2.reshape(r, -1)], dim=1)


def gradient_errors(models, x: torch.Tensor, probes, *, n_repeats: int = 64,
                    n_samples: int = 4) -> dict:
    r"""Each probe's encoder gradient against the exact one, model by model.

    ``probes`` are estimators with a ``key`` (a categorical source of
    :data:`CATEGORICAL_SOURCES`) and a ``temperature`` (``None`` where it has none), e.g.
    :class:`companion.experiments.comparison.Estimator`. For each model (in order) and each
    probe (in order) :func:`encoder_gradient_samples` draws ``n_repeats`` estimates on ``x``
    and :func:`companion.stats.gradient_error` compares them with
    :func:`companion.experiments.vae_models.exact_encoder_gradient`.

    Returns:
        ``{probe: [GradientError per model]}``, in the order of ``probes``.
    """
    probes = list(probes)
    for p in probes:
        if getattr(p, "key", None) not in CATEGORICAL_SOURCES[1:]:
            raise ValueError(f"probes must have a key in {CATEGORICAL_SOURCES[1:]}, got {p!r}")
    out = {p: [] for p in probes}
    for m in models:
        exact = vm.exact_encoder_gradient(m, x)
        for p in probes:
            tau = 1.0 if p.temperature is None else p.temperature
            est = encoder_gradient_samples(m, x, p.key, n_repeats=n_repeats,
                                           n_samples=n_samples, temperature=tau)
            out[p].append(gradient_error(est, exact))
    return out


class ErrorSummary(NamedTuple):
    """One estimator's :class:`~companion.stats.GradientError` over several models."""

    bias_lo: float  #: smallest relative bias, in % of the exact gradient's norm
    bias_hi: float  #: largest relative bias, in %
    floor: float  #: largest noise floor, in %
    cosine: float  #: smallest cosine with the exact gradient
    variance: float  #: mean relative variance of one estimate
    mse: float  #: mean relative mean squared error of one estimate


def summarize_errors(errors) -> ErrorSummary:
    """The :class:`ErrorSummary` of a non-empty sequence of :class:`~companion.stats.GradientError`."""
    errors = list(errors)
    if not errors or not all(isinstance(e, GradientError) for e in errors):
        raise ValueError(f"errors must be a non-empty sequence of GradientError, got {errors!r}")
    b = [100 * e.relative_bias for e in errors]
    return ErrorSummary(
        bias_lo=min(b), bias_hi=max(b),
        floor=max(100 * e.noise_floor for e in errors),
        cosine=min(e.cosine for e in errors),
        variance=sum(e.relative_variance for e in errors) / len(errors),
        mse=sum(e.relative_mse() for e in errors) / len(errors))


def error_table(errors: dict) -> str:
    """:func:`gradient_errors`' result as a text table, one row per probe (named by its ``label``)."""
    w = max(len(probe.label) for probe in errors)
    lines = [f"{'estimator':>{w}s} {'bias %':>13s} {'floor':>5s} "
             f"{'cosine':>6s} {'variance':>8s} {'mse':>7s}"]
    for probe, errs in errors.items():
        s = summarize_errors(errs)
        lines.append(f"{probe.label:>{w}s} {s.bias_lo:5.1f} to {s.bias_hi:5.1f} "
                     f"{s.floor:5.1f} {s.cosine:6.3f} {s.variance:8.3f} {s.mse:7.3f}")
    return "\n".join(lines)


def ranking(scores: dict, keys) -> tuple[list, int, list[int]]:
    """Rank ``keys`` by their mean score over seeds, and say how many seeds agree.

    Args:
        scores: ``{key: tensor (n_seeds,)}``, higher is better.
        keys: the keys to rank.

    Returns:
        ``(order, agree, wins)``: the keys by decreasing mean score; the number of seeds
        whose own scores give exactly that order; for each neighbouring pair
        ``(order[i], order[i + 1])``, the number of seeds in which the first scores higher.
    """
    keys = list(keys)
    if not keys or any(k not in scores for k in keys):
        raise ValueError(f"keys must be a non-empty list of keys of scores, got {keys!r}")
    n_seeds = len(scores[keys[0]])
    order = sorted(keys, key=lambda e: -float(scores[e].mean()))
    agree = sum(sorted(keys, key=lambda e: -float(scores[e][s])) == order
                for s in range(n_seeds))
    wins = [int((scores[a] > scores[b]).sum()) for a, b in zip(order, order[1:])]
    return order, agree, wins


def split_validation(x: torch.Tensor, fraction: float = 0.2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split training images into (fit, validation) by a seeded CPU permutation; validation gets ``round(n f)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must satisfy 0 < fraction < 1, got {fraction!r}")
    n = x.shape[0]
    n_val = max(1, min(n - 1, round(n * fraction)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    return x[perm[n_val:]], x[perm[:n_val]]


class StackedHistory(NamedTuple):
    """Records of :func:`train_stacked`: ``epochs`` (list of ints) and, per evaluation set name,
    a tensor ``(n_evals, k)`` of the mean ELBO (``elbo[name]``), reconstruction term
    (``recon[name]``) and KL (``kl[name]``); the last two only for categorical models."""

    epochs: list
    elbo: dict
    recon: dict
    kl: dict


@torch.no_grad()
def _evaluate(params, name, x, hist, eval_samples):
    if params["meta"][0] == "categorical":
        recon, kl = [], []
        for start in range(0, x.shape[0], 512):
            r_, k_ = stacked_exact_terms(params, x[start:start + 512])
            recon.append(r_)
            kl.append(k_)
        recon, kl = torch.cat(recon, 1).mean(1), torch.cat(kl, 1).mean(1)
        hist.recon.setdefault(name, []).append(recon.cpu())
        hist.kl.setdefault(name, []).append(kl.cpu())
        hist.elbo.setdefault(name, []).append((recon - kl).cpu())
    else:
        g = torch.Generator().manual_seed(12345)
        hist.elbo.setdefault(name, []).append(stacked_gaussian_elbo(params, x, eval_samples, g).mean(1).cpu())


def train_stacked(params: dict, x_train: torch.Tensor, source: str, *, n_epochs: int = 40,
                  batch_size: int = 128, n_samples: int = 4, lr: float = 3e-3,
                  temperature: tuple = (1.0, 0.5), eval_sets: dict | None = None,
                  eval_every: int = 5, eval_samples: int = 32) -> StackedHistory:
    r"""Train the ``k`` stacked models together with Adam, each on its own minibatch order.

    Each epoch draws one permutation of the training images per model (CPU global
    generator); every model takes the same number of steps of ``batch_size`` images and
    ``n_samples`` latent draws per image. The relaxations' temperature follows
    :func:`companion.experiments.vae.temperature_schedule` from ``temperature[0]`` to ``temperature[1]``.
    After epoch 0 (before training) and every ``eval_every`` epochs (and the last), each
    set in ``eval_sets`` is evaluated: the exact ELBO, reconstruction term and KL for
    categorical models; a Monte Carlo ELBO with ``eval_samples`` draws from a fixed-seed
    generator for Gaussian ones. ``params`` is updated in place.
    """
    n_epochs = check_positive_int("n_epochs", n_epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    eval_every = check_positive_int("eval_every", eval_every)
    eval_sets = dict(eval_sets or {})
    leaves = [v for key, v in params.items() if key != "meta"]
    k = leaves[0].shape[0]
    device = leaves[0].device
    x_train = x_train.to(device)
    n = x_train.shape[0]
    n_steps = n_epochs * math.ceil(n / batch_size)
    optimizer = torch.optim.Adam(leaves, lr=lr)
    hist = StackedHistory([], {}, {}, {})

    def evaluate(epoch):
        hist.epochs.append(epoch)
        for name, x in eval_sets.items():
            _evaluate(params, name, x.to(device), hist, eval_samples)

    evaluate(0)
    step = 0
    for epoch in range(1, n_epochs + 1):
        order = torch.stack([torch.randperm(n) for _ in range(k)]).to(device)
        for start in range(0, n, batch_size):
            tau = temperature_schedule(step, n_steps, *temperature)
            batch = x_train[order[:, start:start + batch_size]]  # (k, b, n_pixels)
            loss = stacked_loss(params, batch, source, n_samples=n_samples, temperature=tau)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        if epoch % eval_every == 0 or epoch == n_epochs:
            evaluate(epoch)
    for d in (hist.elbo, hist.recon, hist.kl):
        for name in d:
            d[name] = torch.stack(d[name])
    return hist
