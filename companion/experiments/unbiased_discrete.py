r"""Chapter 7's experiments: unbiased gradients for binary variables, judged exactly.

Two problems, both with exact gradients:

* the REBAR toy :math:`\mathbb E[(b - t)^2]`, :math:`b \sim \operatorname{Bernoulli}(\sigma(\theta))`,
  whose gradient is :math:`\sigma'(\theta)(1 - 2t)`;
* a small VAE on the binarized 8x8 digits with ``d`` independent binary latents, a linear
  encoder and a linear (sigmoid belief net) decoder. With ``d <= 10`` all :math:`2^d` codes
  can be enumerated, so the ELBO and its encoder gradient are exact.

Estimators are compared at an equal budget of evaluations of :math:`f` per gradient
estimate (:data:`COST`). Estimators are named by their :mod:`companion.catalogue` keys
(:data:`NAMES`); the score function always has the leave-one-out baseline, key
``"score_function[baseline='loo']"``. All models are vectorised over seeds: every parameter carries
a leading seed dimension, and the library estimators treat each seed (and each data
point) as an independent problem.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from companion import discrete
from companion.estimators import loo_baseline
from companion.stats import gradient_error
from companion.validation import (
    check_real,
    check_choice,
    check_finite,
    check_positive_int,
    check_tensor,
)
from companion.experiments.data import load_binary_digits
from companion.experiments.vae_models import SCORE_FUNCTION_LOO, _codes
from companion.gumbel import gumbel_rao, gumbel_softmax

__all__ = [
    "NAMES",
    "COST",
    "toy_f",
    "toy_exact",
    "max_z",
    "estimate",
    "toy_study",
    "ToyStudy",
    "Control",
    "train_control",
    "BinaryVAE",
    "init_vae",
    "exact_elbo",
    "encoder_gradient",
    "gradient_quality",
    "Quality",
    "train_binary_vae",
]

#: The chapter's estimators, by catalogue key (:func:`companion.catalogue.label` names them).
NAMES = (SCORE_FUNCTION_LOO, "straight_through", "gumbel_rao", "arm", "disarm", "rebar", "relax")

#: Per estimate, the pair (evaluations of f, backward passes through f or the control).
COST = {
    SCORE_FUNCTION_LOO: (1, 0),
    "straight_through": (1, 1),
    "gumbel_rao": (1, 1),
    "arm": (2, 0),
    "disarm": (2, 0),
    "rebar": (3, 1),
    "relax": (3, 1),  # f at b and the control eta f(sigma(z/lam)) + r(z) twice
}

TEMPERATURE = 0.5  # straight-through, Gumbel-Rao and REBAR
GR_K = 10


def n_for_budget(name: str, budget: int) -> int:
    """Samples an estimator can afford with ``budget`` evaluations of f (at least 2 for the LOO)."""
    check_choice("name", name, NAMES)
    budget = check_positive_int("budget", budget)
    n = budget // COST[name][0]
    if n < (2 if name == SCORE_FUNCTION_LOO else 1):
        raise ValueError(f"budget={budget} is too small for {name}")
    return n


# --------------------------------------------------------------------------- estimators
def _score_function_loo(f, logits, n):
    """Score function with the leave-one-out baseline, each problem (entry of f's values) alone."""
    p = torch.sigmoid(logits)
    u = torch.rand((n,) + tuple(logits.shape), dtype=logits.dtype).to(logits.device)
    b = (u < p).to(logits.dtype)
    values = f(b)
    values = values.reshape(tuple(values.shape) + (1,) * (b.dim() - values.dim()))
    return (values - loo_baseline(values, 0)) * (b - p)


def _two_class(sampler, f, logits, n):
    """Binary straight-through / Gumbel-Rao: the two-category relaxation with logits (theta, 0)."""
    theta = logits.detach().expand((n,) + tuple(logits.shape)).clone().requires_grad_(True)
    two = torch.stack([theta, torch.zeros_like(theta)], dim=-1)
    b = sampler(two)[..., 0]
    (grad,) = torch.autograd.grad(f(b).sum(), theta)
    return grad


def estimate(name: str, f, logits: torch.Tensor, n: int, control=None) -> torch.Tensor:
    """Per-sample estimates ``(n, *logits.shape)`` of the named estimator; ``control`` for RELAX."""
    check_choice("name", name, NAMES)
    if not callable(f):
        raise TypeError(f"f must be callable, got {f!r}")
    check_finite("logits", check_tensor("logits", logits))
    n = check_positive_int("n", n)
    if name == "relax" and control is None:
        raise ValueError("control must be a trained RELAX control (train_control) for name='relax', got None")
    return _estimate(name, f, logits, n, control)


def _estimate(name, f, logits, n, control=None):
    """:func:`estimate` without the argument checks."""
    if name == SCORE_FUNCTION_LOO:
        return _score_function_loo(f, logits, n)
    if name == "straight_through":
        return _two_class(lambda l2: gumbel_softmax(l2, TEMPERATURE, hard=True), f, logits, n)
    if name == "gumbel_rao":
        return _two_class(lambda l2: gumbel_rao(l2, TEMPERATURE, GR_K), f, logits, n)
    if name == "arm":
        return discrete.arm(f, logits, n)
    if name == "disarm":
        return discrete.disarm(f, logits, n)
    if name == "rebar":
        return discrete.rebar(f, logits, n, temperature=TEMPERATURE, eta=1.0)
    if name == "relax":
        return discrete.relax(f, logits, n, control)
    raise ValueError(f"name must be one of {NAMES}, got {name!r}")


# --------------------------------------------------------------------------- the toy
def _check_t(t) -> float:
    """``t`` as a finite float (TypeError for a non-number, ValueError for NaN/inf)."""
    return check_real("t", t)


def toy_f(t: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """:math:`f(b) = (b - t)^2` elementwise: every entry of the logits is its own problem."""
    _check_t(t)
    return lambda b: (b - t) ** 2


def toy_exact(theta: torch.Tensor, t: float) -> torch.Tensor:
    r""":math:`\sigma'(\theta)(1 - 2t)`."""
    check_tensor("theta", theta)
    _check_t(t)
    return torch.sigmoid(theta) * torch.sigmoid(-theta) * (1 - 2 * t)


def max_z(estimates: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest ``|mean - exact|`` over coordinates, in standard errors of the mean.

    ``estimates`` is ``(n, p)`` (``n >= 2`` independent estimates), ``exact`` is ``(p,)``;
    an unbiased estimator gives a value of a few units at most.
    """
    check_finite("estimates", check_tensor("estimates", estimates))
    check_finite("exact", check_tensor("exact", exact))
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must have shape (n, p) with n >= 2, got shape {tuple(estimates.shape)}")
    if exact.shape != estimates.shape[1:]:
        raise ValueError(f"exact must have shape {tuple(estimates.shape[1:])}, got shape {tuple(exact.shape)}")
    se = estimates.std(0) / estimates.shape[0] ** 0.5
    return ((estimates.mean(0) - exact).abs() / se).max().item()


class Control(torch.nn.Module):
    r"""RELAX's control :math:`c_\phi(z) = \eta f(\sigma(z/\lambda)) + r_\rho(z, \theta)`,
    an elementwise MLP ``r`` of the relaxation variable and the (fixed) logit."""

    def __init__(self, f, theta: torch.Tensor, hidden: int = 16):
        super().__init__()
        self.f = f
        self.theta = theta.detach()
        self.log_lam = torch.nn.Parameter(torch.tensor(math.log(TEMPERATURE)))
        self.eta = torch.nn.Parameter(torch.tensor(1.0))
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        torch.nn.init.zeros_(self.net[2].weight)
        torch.nn.init.zeros_(self.net[2].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        r"""The control's value :math:`c_\phi(z)` at relaxation variables ``z``."""
        relaxed = self.eta * self.f(torch.sigmoid(z / self.log_lam.exp()))
        features = torch.stack([z, self.theta.expand_as(z)], dim=-1)
        return relaxed + self.net(features).squeeze(-1)


def train_control(f, theta: torch.Tensor, steps: int = 300, n: int = 16, lr: float = 0.01) -> tuple[Control, list]:
    r"""RELAX's loop: minimise :math:`\mathbb E[\hat g^2]` (the variance, as the mean is fixed)
    over :math:`\phi = (\lambda, \eta, \rho)`, every entry of ``theta`` a problem.
    Returns the control and the mean square per step."""
    control = Control(f, theta)
    opt = torch.optim.Adam(control.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        g = discrete.relax(f, theta, n, control, create_graph=True)
        loss = (g**2).mean()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return control, history


class ToyStudy(NamedTuple):
    theta: torch.Tensor  # (G,)
    exact: torch.Tensor  # (G,)
    mean: dict  # name -> (S, G): mean over reps of the budget-B estimate, per seed
    var: dict  # name -> (S, G): variance over reps of the budget-B estimate
    snr: dict  # name -> (S, G): |mean| / sd of the budget-B estimate


def toy_study(theta: torch.Tensor, t: float, budget: int, reps: int, seeds, control=None) -> ToyStudy:
    """Each estimator's budget-``budget`` estimate, ``reps`` times per seed, at every theta."""
    check_finite("theta", check_tensor("theta", theta))
    reps = check_positive_int("reps", reps, minimum=2)
    f = toy_f(t)
    out = {k: {} for k in ("mean", "var", "snr")}
    for name in NAMES:
        if name == "relax" and control is None:
            continue
        n = n_for_budget(name, budget)
        rows = {k: [] for k in out}
        for seed in seeds:
            torch.manual_seed(seed)
            logits = theta.expand(reps, len(theta))
            g = estimate(name, f, logits, n, control).detach().mean(0).double()  # (reps, G)
            m, v = g.mean(0), g.var(0)
            rows["mean"].append(m)
            rows["var"].append(v)
            rows["snr"].append(m.abs() / v.sqrt())
        for k in out:
            out[k][name] = torch.stack(rows[k])
    return ToyStudy(theta, toy_exact(theta.double(), t), out["mean"], out["var"], out["snr"])


# --------------------------------------------------------------------------- the binary VAE
class BinaryVAE(NamedTuple):
    """Parameters of S independent models (leading dimension S): encoder logits
    :math:`x W_e + c_e`, decoder logits :math:`b W_d + c_d`, prior Bernoulli(1/2)."""

    w_enc: torch.Tensor  # (S, 64, d)
    c_enc: torch.Tensor  # (S, d)
    w_dec: torch.Tensor  # (S, d, 64)
    c_dec: torch.Tensor  # (S, 64)


def init_vae(seeds: int, d: int = 8, pixels: int = 64, seed: int = 0) -> BinaryVAE:
    """``seeds`` models with ``d`` latent bits: small random weights, zero biases."""
    seeds = check_positive_int("seeds", seeds)
    d = check_positive_int("d", d)
    pixels = check_positive_int("pixels", pixels)
    seed = check_positive_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    return BinaryVAE(
        (0.1 * torch.randn(seeds, pixels, d, generator=g)).requires_grad_(),
        torch.zeros(seeds, d, requires_grad=True),
        (0.1 * torch.randn(seeds, d, pixels, generator=g)).requires_grad_(),
        torch.zeros(seeds, pixels, requires_grad=True),
    )


def all_codes(d: int) -> torch.Tensor:
    """Every binary code of length d, shape (2^d, d), in lexicographic order (floats)."""
    d = check_positive_int("d", d)
    return _codes(d, 2).to(torch.get_default_dtype())


def encoder_logits(m: BinaryVAE, x: torch.Tensor) -> torch.Tensor:
    """(S, B, d) for images x of shape (S, B, 64) (one batch per model) or (B, 64) (shared)."""
    if x.dim() == 2:
        return torch.einsum("bp,spd->sbd", x, m.w_enc) + m.c_enc[:, None]
    return torch.einsum("sbp,spd->sbd", x, m.w_enc) + m.c_enc[:, None]


def log_likelihood(m: BinaryVAE, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p(x \mid b)` for samples b of shape (n, S, B, d) (binary or relaxed): (n, S, B)."""
    a = torch.einsum("nsbd,sdp->nsbp", b, m.w_dec) + m.c_dec[:, None]
    return (x * F.logsigmoid(a) + (1 - x) * F.logsigmoid(-a)).sum(-1)


def neg_kl(logits: torch.Tensor) -> torch.Tensor:
    r""":math:`-\mathrm{KL}(q \,\|\, \operatorname{Bernoulli}(1/2)^d)` per data point, (S, B)."""
    check_finite("logits", check_tensor("logits", logits))
    return _neg_kl(logits)


def _neg_kl(logits):
    q = torch.sigmoid(logits)
    return -(q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits) + math.log(2)).sum(-1)


def exact_elbo(m: BinaryVAE, x: torch.Tensor) -> torch.Tensor:
    r"""The ELBO per data point by enumerating all :math:`2^d` codes, (S, B):
    :math:`\sum_b q(b \mid x) \log p(x \mid b) - \mathrm{KL}`."""
    _check_model_and_x(m, x)
    return _exact_elbo(m, x)


def _check_model_and_x(m, x):
    """TypeError/ValueError unless m is a BinaryVAE and x a finite (B, P) or (S, B, P) batch."""
    if not isinstance(m, BinaryVAE):
        raise TypeError(f"m must be a BinaryVAE, got {type(m).__name__}")
    check_finite("x", check_tensor("x", x))
    seeds, pixels = m.w_enc.shape[0], m.w_enc.shape[1]
    ok = (x.dim() == 2 and x.shape[1] == pixels) or (x.dim() == 3 and x.shape[0] == seeds and x.shape[2] == pixels)
    if not ok:
        raise ValueError(f"x must have shape (B, {pixels}) or ({seeds}, B, {pixels}), got shape {tuple(x.shape)}")


def _exact_elbo(m, x):
    logits = encoder_logits(m, x)
    d = logits.shape[-1]
    codes = all_codes(d).to(logits.device)
    a = torch.einsum("cd,sdp->scp", codes, m.w_dec) + m.c_dec[:, None]  # (S, C, 64)
    xs = x if x.dim() == 3 else x.expand(logits.shape[0], *x.shape)
    ll = torch.einsum("sbp,scp->sbc", xs, F.logsigmoid(a)) + torch.einsum("sbp,scp->sbc", 1 - xs, F.logsigmoid(-a))
    log_q = codes @ F.logsigmoid(logits).transpose(1, 2) + (1 - codes) @ F.logsigmoid(-logits).transpose(1, 2)
    q = log_q.transpose(1, 2).exp()  # (S, B, C)
    return (q * ll).sum(-1) + _neg_kl(logits)


def encoder_gradient(name: str, m: BinaryVAE, x: torch.Tensor, n: int, reps: int = 1, control=None):
    r"""``reps`` independent estimates of the encoder gradient of the batch-mean ELBO, each
    from ``n`` samples per data point: (reps, S, 64 * d + d) (weights then biases).
    ``name="exact"`` gives the enumerated gradient, (1, S, 64 * d + d). The KL term is exact
    in every estimator; only :math:`\nabla \mathbb E_q[\log p(x \mid b)]` is estimated."""
    check_choice("name", name, ("exact",) + NAMES)
    _check_model_and_x(m, x)
    reps = check_positive_int("reps", reps)
    if name != "exact":
        n = check_positive_int("n", n)
    if name == "relax" and control is None:
        raise ValueError("control must be a trained RELAX control for name='relax', got None")
    return _encoder_gradient(name, m, x, n, reps, control)


def _encoder_gradient(name, m, x, n, reps=1, control=None):
    """:func:`encoder_gradient` without the argument checks."""
    x = x.detach()
    logits = encoder_logits(m, x)
    B = logits.shape[1]
    params = [m.w_enc, m.c_enc]
    if name == "exact":
        gw, gc = torch.autograd.grad(_exact_elbo(m, x).mean(1).sum(), params)
        return torch.cat([gw.flatten(1), gc], dim=1)[None]
    dec = BinaryVAE(m.w_enc, m.c_enc, m.w_dec.detach(), m.c_dec.detach())

    def f(b):  # b: (N, reps, S, B, d) -> (N, reps, S, B)
        k = b.shape[0]
        ll = log_likelihood(dec, x, b.reshape(k * reps, *b.shape[2:]))
        return ll.reshape(k, reps, *ll.shape[1:])

    big = logits.detach().expand(reps, *logits.shape)
    g_logits = _estimate(name, f, big, n, control).mean(0)  # (reps, S, B, d)
    (g_kl,) = torch.autograd.grad(_neg_kl(logits).sum(), logits)
    g_logits = (g_logits + g_kl) / B
    xs = x if x.dim() == 3 else x.expand(logits.shape[0], *x.shape)
    gw = torch.einsum("sbp,rsbd->rspd", xs, g_logits)
    return torch.cat([gw.flatten(2), g_logits.sum(2)], dim=2).detach()


class Quality(NamedTuple):
    """Per-seed summaries of :func:`gradient_quality`, each a float64 tensor (S,)."""

    rel_bias: torch.Tensor  #: ||mean - exact|| / ||exact||, the noise floor NOT removed
    noise_floor: torch.Tensor  #: rel_bias's size when unbiased, sqrt(tr Var / reps) / ||exact||
    cosine: torch.Tensor  #: mean over reps of cos(single estimate, exact)
    rel_var: torch.Tensor  #: tr Var / ||exact||^2
    errors: tuple  #: one :class:`companion.stats.GradientError` per seed


def gradient_quality(estimates: torch.Tensor, exact: torch.Tensor) -> Quality:
    r"""Bias, cosine and variance of (reps, S, P) estimates against the exact (1, S, P), per seed.

    A thin per-seed wrapper of :func:`companion.stats.gradient_error`, whose
    ``noise_floor`` and ``relative_variance`` it reports unchanged (``errors`` keeps the
    whole :class:`~companion.stats.GradientError` of each seed). Two fields differ in
    definition from ``gradient_error``'s, on purpose: chapter 7 prints them next to the
    noise floor to show the bias *is* the floor for an unbiased estimator.

    * ``rel_bias`` is the raw :math:`\lVert\bar g - g\rVert / \lVert g\rVert` (its
      ``relative_bias`` subtracts the noise floor first);
    * ``cosine`` is the mean over reps of the cosine of each *single* estimate with
      :math:`g` (a per-step direction quality; its ``cosine`` is that of the *mean*).
    """
    check_finite("estimates", check_tensor("estimates", estimates))
    check_finite("exact", check_tensor("exact", exact))
    if estimates.dim() != 3 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must have shape (reps, S, P) with reps >= 2, got shape {tuple(estimates.shape)}")
    if exact.shape != (1,) + tuple(estimates.shape[1:]):
        raise ValueError(
            f"exact must have shape {(1,) + tuple(estimates.shape[1:])}, got shape {tuple(exact.shape)}"
        )
    e, g = estimates.detach().double().cpu(), exact.detach().double().cpu()[0]
    errors = tuple(gradient_error(e[:, s], g[s]) for s in range(g.shape[0]))
    raw = (e.mean(0) - g).norm(dim=-1) / g.norm(dim=-1)
    cos = F.cosine_similarity(e, g.expand_as(e), dim=-1).mean(0)
    floor = torch.tensor([q.noise_floor for q in errors], dtype=torch.float64)
    rel_var = torch.tensor([q.relative_variance for q in errors], dtype=torch.float64)
    return Quality(raw, floor, cos, rel_var, errors)


class Training(NamedTuple):
    steps: list  # steps at which the held-out ELBO was computed
    elbo: torch.Tensor  # (len(steps), S): exact held-out ELBO per seed
    model: BinaryVAE


def train_binary_vae(
    name: str,
    steps: int,
    budget: int,
    seeds: int = 5,
    d: int = 8,
    batch: int = 50,
    lr: float = 0.01,
    eval_every: int = 25,
    data=None,
) -> Training:
    r"""Train ``seeds`` binary VAEs at once; the encoder's gradient from estimator ``name``
    with ``budget`` evaluations of f per data point, the decoder's exact (enumerated), so the
    runs differ only in the encoder's estimator. Records the exact held-out ELBO.
    ``name`` is ``"exact"`` or one of :data:`NAMES` but ``"relax"`` (no control here)."""
    check_choice("name", name, ("exact",) + tuple(k for k in NAMES if k != "relax"))
    steps = check_positive_int("steps", steps)
    budget = check_positive_int("budget", budget)
    seeds = check_positive_int("seeds", seeds)
    d = check_positive_int("d", d)
    batch = check_positive_int("batch", batch)
    eval_every = check_positive_int("eval_every", eval_every)
    lr = check_real("lr", lr, positive=True)
    data = load_binary_digits() if data is None else data
    x_train, x_test = data.x_train, data.x_test[:200]
    m = init_vae(seeds, d)
    opt = torch.optim.Adam(list(m), lr=lr)
    gen = torch.Generator().manual_seed(1)
    n = None if name == "exact" else n_for_budget(name, budget)
    record_steps, record = [], []
    for step in range(steps + 1):
        if step % eval_every == 0:
            with torch.no_grad():
                record_steps.append(step)
                record.append(_exact_elbo(m, x_test).mean(1))
        if step == steps:
            break
        idx = torch.randint(len(x_train), (seeds, batch), generator=gen)
        x = x_train[idx]  # (S, B, 64)
        opt.zero_grad()
        (g_dw, g_dc) = torch.autograd.grad(-_exact_elbo(m, x).mean(1).sum(), [m.w_dec, m.c_dec])
        g_enc = _encoder_gradient(name, m, x, n)[0] if n else _encoder_gradient("exact", m, x, 0)[0]
        dd = m.w_enc.shape[2]
        m.w_enc.grad = -g_enc[:, : 64 * dd].reshape(m.w_enc.shape)
        m.c_enc.grad = -g_enc[:, 64 * dd :]
        m.w_dec.grad, m.c_dec.grad = g_dw, g_dc
        opt.step()
    return Training(record_steps, torch.stack(record), m)
