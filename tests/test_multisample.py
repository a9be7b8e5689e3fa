r"""The multi-sample bound and its gradients against exact answers.

The conjugate model. Prior :math:`z \sim N(0, 1)`, likelihood :math:`x \mid z \sim N(z, 1)`.
Completing the square, :math:`\log p(x, z) = -\log 2\pi - z^2/2 - (x - z)^2/2
= -\log 2\pi - x^2/4 - (z - x/2)^2`, so the posterior is :math:`N(x/2, 1/2)` and the
evidence :math:`p(x) = N(x; 0, 2)`.

The variational family :math:`q = N(m, s^2)` with ``params`` :math:`\theta = (m, \log s)`,
and :math:`z = m + s\varepsilon`. With :math:`\mathbb E_q z^2 = m^2 + s^2`,
:math:`\mathbb E_q (x - z)^2 = (x - m)^2 + s^2` and the entropy
:math:`\tfrac12\log(2\pi e s^2)`,

.. math::

    \mathcal L_1(m, s) = -\tfrac12\log 2\pi - \tfrac12(m^2 + s^2) - \tfrac12\bigl((x - m)^2 + s^2\bigr)
      + \tfrac12 + \log s,

so :math:`\partial_m \mathcal L_1 = x - 2m` and :math:`\partial_{\log s}\mathcal L_1 = s\,\partial_s
\mathcal L_1 = 1 - 2s^2`; both vanish at the posterior :math:`m = x/2,\ s^2 = 1/2`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Gamma, Normal, kl_divergence

from companion import estimators
from companion.multisample import GRADIENTS, elbo_gradient, iwae_bound

X = 1.4
N = 100_000
M0, LOG_S0 = 0.2, -0.3  # a q away from the posterior


def log_joint(z):
    """log p(x, z) of the conjugate model, in z's dtype."""
    x = torch.as_tensor(X, dtype=z.dtype)
    return -math.log(2 * math.pi) - 0.5 * z.square() - 0.5 * (x - z).square()


def q_fn(p):
    return Normal(p[0], p[1].exp())


def posterior_params(dtype=torch.float64):
    return torch.tensor([X / 2, 0.5 * math.log(0.5)], dtype=dtype)


def away_params(dtype=torch.float32):
    return torch.tensor([M0, LOG_S0], dtype=dtype)


def log_evidence() -> float:
    return -0.5 * math.log(2 * math.pi * 2) - X**2 / 4


def elbo_closed(m: float, log_s: float) -> float:
    s2 = math.exp(2 * log_s)
    return -0.5 * math.log(2 * math.pi) - 0.5 * (m * m + s2) - 0.5 * ((X - m) ** 2 + s2) + 0.5 + log_s


def elbo_grad_closed(m: float, log_s: float) -> list[float]:
    return [X - 2 * m, 1 - 2 * math.exp(2 * log_s)]


# -- shapes, re-export, determinism ---------------------------------------------------------


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("k", [1, 3])
def test_shape(gradient, k, seed):
    g = elbo_gradient(log_joint, q_fn, away_params(), 7, k=k, gradient=gradient)
    assert g.shape == (7, 2) and g.dtype == torch.float32 and bool(torch.isfinite(g).all())
    b = iwae_bound(log_joint, q_fn, away_params(), 7, k)
    assert b.shape == (7,)


def test_reexported_from_estimators():
    assert estimators.elbo_gradient is elbo_gradient and estimators.iwae_bound is iwae_bound


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_same_seed_same_estimates(gradient):
    torch.manual_seed(3)
    a = elbo_gradient(log_joint, q_fn, away_params(), 50, k=4, gradient=gradient)
    torch.manual_seed(3)
    b = elbo_gradient(log_joint, q_fn, away_params(), 50, k=4, gradient=gradient)
    assert torch.equal(a, b)


# -- sticking the landing and DReG at the exact posterior ------------------------------------


@pytest.mark.parametrize("gradient", ["stl", "dreg"])
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_path_gradients_vanish_at_the_posterior(gradient, k, seed):
    r"""At :math:`q = p(z \mid x)` every STL and DReG estimate is zero, for every k.

    :math:`\log w(z) = \log p(x, z) - \log q_{\theta'}(z) = \log p(x) + \log p(z \mid x) - \log q_{\theta'}(z)`,
    and with :math:`\theta' = \theta` the posterior's parameters the last two terms
    cancel for every :math:`z`: :math:`\nabla_z \log w = -z + (x - z) + (z - m)/s^2
    = x - 2z + 2(z - x/2) = 0` (with :math:`s^2 = 1/2,\ m = x/2`). Both estimators
    multiply this path derivative by :math:`\partial z/\partial\theta` and weights, so
    they are zero up to rounding (float64 here).
    """
    g = elbo_gradient(log_joint, q_fn, posterior_params(), 2000, k=k, gradient=gradient)
    assert float(g.abs().max()) < 1e-10


@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_reparam_variance_at_the_posterior_closed_form(k, seed, stats):
    r"""``"reparam"`` keeps the score term :math:`-\nabla_\theta \log q_\theta(z)`, which is not
    zero, so its variance at the posterior is :math:`2/k` in each coordinate.

    At the posterior every weight equals :math:`p(x)`, so :math:`\tilde w_j = 1/k` and the
    path derivatives vanish (see the test above): the estimate is
    :math:`\frac1k\sum_j s_j` with :math:`s_j` the reparameterized gradient of
    :math:`\log w(m + s\varepsilon_j)`. Along the path :math:`\log q_\theta(m + s\varepsilon)
    = -\tfrac12\log 2\pi - \log s - \varepsilon^2/2`, so :math:`\partial_m = x - 2z =
    -2s\varepsilon = -\sqrt2\,\varepsilon` (variance 2, fourth central moment
    :math:`4 \cdot 3 = 12`) and :math:`\partial_{\log s} = (x - 2z)s\varepsilon + 1 =
    1 - \varepsilon^2` (as :math:`2s^2 = 1`; mean 0, variance :math:`3 - 1 = 2`, fourth
    central moment :math:`\mathbb E(\varepsilon^2 - 1)^4 = 105 - 4\cdot 15 + 6 \cdot 3 - 4 + 1
    = 60`). The mean of :math:`k` independent copies has mean 0, variance :math:`2/k` and
    fourth central moment :math:`(\mu_4 + 3(k-1)\sigma^4)/k^3`: :math:`12/k^2` and
    :math:`(60 + 12(k-1))/k^3`."""
    n = 40_000
    g = elbo_gradient(log_joint, q_fn, posterior_params(), n, k=k, gradient="reparam")
    _, var_logs, mu4_logs = stats.poly_moments([1.0, 0.0, -1.0], stats.normal_moment)
    assert (var_logs, mu4_logs) == (2.0, 60.0)
    stats.assert_mean(g, [0.0, 0.0], f"reparam mean at the posterior, k={k}")
    mu4 = [(12 + 12 * (k - 1)) / k**3, (60 + 12 * (k - 1)) / k**3]
    stats.assert_var(g, [2.0 / k, 2.0 / k], mu4, f"reparam variance at the posterior, k={k}")


# -- unbiasedness -----------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_k1_mean_is_the_closed_form_elbo_gradient(gradient, seed, stats):
    r"""k = 1: ``"reparam"``, ``"stl"``, ``"dreg"`` and ``"score"`` are unbiased for
    :math:`\nabla\mathcal L_1 = (x - 2m,\ 1 - 2s^2)` (module docstring). STL drops
    :math:`-\nabla_\theta\log q_\theta(z)` at fixed :math:`z`, whose mean is zero;
    the score estimate is :math:`(\log w - 1)\nabla_\theta \log q_\theta(z)`, unbiased
    because :math:`\nabla\mathbb E_q[f_\theta] = \mathbb E_q[f_\theta\nabla\log q + \nabla f_\theta]`
    with :math:`\nabla_\theta f_\theta = -\nabla_\theta \log q_\theta`."""
    g = elbo_gradient(log_joint, q_fn, away_params(), N, k=1, gradient=gradient)
    stats.assert_mean(g, elbo_grad_closed(M0, LOG_S0), f"{gradient} k=1")


def test_a_wrong_estimator_fails_the_closed_form(seed, stats):
    """Mutation check: dropping the entropy's gradient (the gradient of E_q[log p] only) is caught."""
    g = elbo_gradient(log_joint, q_fn, away_params(), N, k=1, gradient="reparam")
    wrong = g - torch.tensor([0.0, 1.0])  # d(entropy)/d log s = 1
    with pytest.raises(AssertionError):
        stats.assert_mean(wrong, elbo_grad_closed(M0, LOG_S0), "mutant")


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("gradient", ["dreg", "score"])
def test_k_gt_1_agrees_in_mean_with_reparam(gradient, k, seed, stats):
    r"""k > 1: DReG and VIMCO are unbiased for :math:`\nabla\mathcal L_k`, as is ``"reparam"``.

    ``"reparam"`` differentiates :math:`\log\frac1k\sum_j w_j(g_\theta(\varepsilon_j))` and
    the noise is free of :math:`\theta`, so its mean is :math:`\nabla\mathcal L_k`. DReG
    :cite:p:`tucker2019` rewrites the score part :math:`\mathbb E[\sum_j \tilde w_j
    \nabla_\theta\log q_\theta(z_j)]` by reparameterizing it again, which gives
    :math:`\mathbb E[\sum_j (\tilde w_j - \tilde w_j^2)\,\partial_{z_j}\log w_j\,\partial_\theta z_j]`
    and so the estimate :math:`\sum_j\tilde w_j^2\,\partial_{z_j}\log w_j\,\partial_\theta z_j`.
    VIMCO's baseline for :math:`z_j` does not depend on :math:`z_j`. No closed form of
    :math:`\nabla\mathcal L_k` is needed: independent samples' means must agree.
    """
    a = elbo_gradient(log_joint, q_fn, away_params(), N, k=k, gradient="reparam")
    b = elbo_gradient(log_joint, q_fn, away_params(), N, k=k, gradient=gradient)
    stats.assert_same_mean(a, b, f"reparam vs {gradient}, k={k}")


def test_stl_is_biased_for_k_gt_1(seed, stats):
    r"""Documented limitation: for :math:`k > 1` STL keeps weights :math:`\tilde w_j` where DReG
    has :math:`\tilde w_j^2`, and their means differ (here by far more than 5 standard errors)."""
    a = elbo_gradient(log_joint, q_fn, away_params(), N, k=5, gradient="dreg")
    b = elbo_gradient(log_joint, q_fn, away_params(), N, k=5, gradient="stl")
    stats.assert_means_differ(a, b, "DReG vs STL, k=5")


def _exact_bound_discrete(log_table: torch.Tensor, logits: torch.Tensor, k: int) -> torch.Tensor:
    r""":math:`\mathcal L_k` by enumerating every :math:`(z_1, \dots, z_k)` of a categorical q."""
    log_q = torch.log_softmax(logits, -1)
    total = 0.0
    for combo in itertools.product(range(logits.shape[0]), repeat=k):
        idx = torch.tensor(combo)
        log_w = log_table[idx] - log_q[idx]
        total = total + log_q[idx].sum().exp() * (torch.logsumexp(log_w, 0) - math.log(k))
    return total


@pytest.mark.parametrize("k", [1, 2, 4])
def test_score_and_vimco_unbiased_on_a_discrete_latent(k, seed, stats):
    r"""A three-valued latent: :math:`\mathcal L_k = \sum_{z_{1:k}} \prod_j q(z_j)\,
    \log\frac1k\sum_j w_j` has :math:`3^k` terms; its gradient in the logits, by autograd
    through the enumeration, is exact. The score estimate (VIMCO's baseline for k > 1)
    must match it in mean."""
    log_table = torch.tensor([-1.0, -3.0, -0.5], dtype=torch.float64)
    logits = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    exact_logits = logits.clone().requires_grad_()
    (exact,) = torch.autograd.grad(_exact_bound_discrete(log_table, exact_logits, k), exact_logits)

    def lj(z):
        return log_table[z]

    g = elbo_gradient(lj, lambda p: Categorical(logits=p), logits, 40_000, k=k, gradient="score")
    stats.assert_mean(g, exact.numpy(), f"score/VIMCO k={k}")
    b = iwae_bound(lj, lambda p: Categorical(logits=p), logits, 40_000, k)
    stats.assert_mean(b[:, None], [_exact_bound_discrete(log_table, logits, k).item()], f"bound k={k}")


def _vimco_by_hand(seed: int, n: int, k: int = 4):
    """VIMCO's estimate on a 3-category model and, rebuilt from the same draws (re-seeded),
    the pieces of the k-sample bound: log-weights (n, k), the bound (n,), the scores
    d log q(z_j) / d logits = e_z - softmax (n, k, 3) and the normalised weights (n, k)."""
    log_table = torch.tensor([-1.0, -3.0, -0.5], dtype=torch.float64)
    logits = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    torch.manual_seed(seed)
    g = elbo_gradient(lambda z: log_table[z], lambda p: Categorical(logits=p), logits, n, k=k, gradient="score")
    torch.manual_seed(seed)
    z = Categorical(logits=logits).sample((n, k))
    log_q = torch.log_softmax(logits, -1)
    log_w = log_table[z] - log_q[z]
    bound = torch.logsumexp(log_w, 1) - math.log(k)
    score = torch.nn.functional.one_hot(z, 3).double() - log_q.exp()
    return g, log_w, bound, score, torch.softmax(log_w, 1)


def test_vimco_has_lower_variance_than_no_baseline(seed, stats):
    """VIMCO's leave-one-out baseline must reduce variance against the plain score estimate
    of the same bound. The plain estimate is built from the same draws by hand:
    (L_k) * grad log q(z_j) summed over j plus the fixed-z gradient term. Paired samples:
    the reduction exceeds 5 standard errors of the paired difference of variances."""
    g, log_w, bound, score, w_tilde = _vimco_by_hand(seed, 20_000)
    plain = (bound[:, None, None] * score).sum(1) - (w_tilde[..., None] * score).sum(1)
    stats.assert_var_greater(plain, g, "no baseline vs VIMCO, same draws", paired=True)


def test_gamma_q_uses_the_reverse_mode_fallback(seed, stats):
    r"""Gamma's implicit ``rsample`` has no forward mode; the fallback must give the same
    answers. Model :math:`\log p(x, z) = \log\operatorname{Gamma}(z; 2, 1)` (so :math:`p(x) = 1`
    and the posterior is Gamma(2, 1)) and :math:`q = \operatorname{Gamma}(a, b)`, ``params``
    :math:`(\log a, \log b)`: :math:`\mathcal L_1 = -\mathrm{KL}(q \,\|\, \operatorname{Gamma}(2, 1))`,
    whose gradient torch's closed-form KL gives by autograd. STL vanishes at the posterior."""
    target = Gamma(torch.tensor(2.0), torch.tensor(1.0))

    def qg(p):
        return Gamma(p[0].exp(), p[1].exp())

    p = torch.tensor([math.log(3.0), math.log(1.5)])
    pr = p.clone().requires_grad_()
    (exact,) = torch.autograd.grad(-kl_divergence(qg(pr), target), pr)
    g = elbo_gradient(target.log_prob, qg, p, 40_000, k=1, gradient="reparam")
    stats.assert_mean(g, exact.numpy(), "Gamma reparam k=1")
    post = torch.tensor([math.log(2.0), 0.0])
    g0 = elbo_gradient(target.log_prob, qg, post, 500, k=3, gradient="dreg")
    assert float(g0.abs().max()) < 1e-4


def test_vector_latent_and_batch_shape(seed):
    r"""A latent of three independent coordinates (q's ``batch_shape`` (3,)) is one latent:
    ``log_joint`` sees ``(n, k, 3)`` and returns ``(n, k)``; at the posterior of three
    independent copies of the conjugate model STL is zero, and params of shape (2, 3)
    give gradients of shape (n, 2, 3)."""
    post = torch.stack([posterior_params()] * 3, 1)  # (2, 3)

    def lj(z):
        assert z.shape[-1] == 3
        return log_joint(z).sum(-1)

    g = elbo_gradient(lj, q_fn, post, 300, k=4, gradient="stl")
    assert g.shape == (300, 2, 3) and float(g.abs().max()) < 1e-10
    assert iwae_bound(lj, q_fn, post, 5, 4).shape == (5,)


# -- the bound ---------------------------------------------------------------------------------


def test_bound_is_the_evidence_at_the_posterior(seed):
    r"""At :math:`q = p(z \mid x)` every weight equals :math:`p(x)`, so every estimate of every
    :math:`\mathcal L_k` equals :math:`\log p(x) = \log N(x; 0, 2)` exactly (to rounding)."""
    for k in (1, 3, 50):
        b = iwae_bound(log_joint, q_fn, posterior_params(), 200, k)
        assert float((b - log_evidence()).abs().max()) < 1e-10


def test_bound_increases_with_k_toward_the_evidence(seed, stats):
    r""":math:`\mathcal L_1` is the closed-form ELBO; :math:`\mathcal L_k` increases with
    :math:`k` (:cite:t:`burda2016`: the average of :math:`k` weights is an average of
    averages of :math:`m < k`, and :math:`\log` is concave) and stays below
    :math:`\log p(x)`, to which it converges. Each step up in :math:`k` must be larger
    than 5 standard errors of the difference of independent means."""
    ks = [1, 2, 5, 20, 100]
    n = 20_000
    bounds = [iwae_bound(log_joint, q_fn, away_params(torch.float64), n, k) for k in ks]
    stats.assert_mean(bounds[0], elbo_closed(M0, LOG_S0), "L_1 vs closed-form ELBO")
    for k, lo, hi in zip(ks, bounds, bounds[1:]):
        stats.assert_mean_greater(hi, lo, f"L_k after k={k}")
    for k, b in zip(ks, bounds):
        stats.assert_mean_at_most(b, log_evidence(), f"L_{k} vs log p(x)")
    gaps = np.array([log_evidence() - float(b.mean()) for b in bounds])
    assert gaps[-1] < 0.05 * gaps[0]


def test_extreme_log_joint_stays_finite(seed):
    """Log-joints of -1e4 (every weight underflows to 0 in exp) still give finite bounds and gradients."""

    def lj(z):
        return log_joint(z) - 1e4

    assert bool(torch.isfinite(iwae_bound(lj, q_fn, away_params(), 10, 5)).all())
    for gradient in GRADIENTS:
        assert bool(torch.isfinite(elbo_gradient(lj, q_fn, away_params(), 10, 5, gradient)).all())


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["grad", "bound"])
def test_bad_input(fn, raises):
    def call(lj=log_joint, q=q_fn, p=None, n=4, k=2, **kw):
        p = away_params() if p is None else p
        if fn == "grad":
            return elbo_gradient(lj, q, p, n, k, **kw)
        return iwae_bound(lj, q, p, n, k)

    with raises(TypeError, "log_joint", "3.0"):
        call(lj=3.0)
    with raises(TypeError, "q_fn", "'normal'"):
        call(q="normal")
    with raises(TypeError, "params", "[0.0, 1.0]"):
        call(p=[0.0, 1.0])
    with raises(TypeError, "params", "torch.int64"):
        call(p=torch.tensor([0, 1]))
    with raises(ValueError, "params", "nan"):
        call(p=torch.tensor([float("nan"), 0.0]))
    with raises(ValueError, "n_samples", "got 0"):
        call(n=0)
    with raises(TypeError, "n_samples", "2.0"):
        call(n=2.0)
    with raises(TypeError, "k must be", "True"):
        call(k=True)
    with raises(ValueError, "k must be", "got 0"):
        call(k=0)
    with raises(TypeError, "q_fn", "Distribution", "got Tensor"):
        call(q=lambda p: p)
    with raises(ValueError, "q_fn", "params=[0.2"):
        call(q=lambda p: Normal(p[0], -p[1].exp(), validate_args=True))
    with raises(ValueError, "log_joint", "shape (4, 2)", "returned shape ()"):
        call(lj=lambda z: log_joint(z).sum())
    with raises(ValueError, "log_joint", "returned shape (4, 2, 1)"):
        call(lj=lambda z: log_joint(z)[..., None])
    with raises(TypeError, "log_joint must return a torch.Tensor", "float"):
        call(lj=lambda z: 1.0)
    with raises(ValueError, "log_joint", "NaN"):
        call(lj=lambda z: log_joint(z) * float("nan"))


def test_bad_gradient_choice_and_non_reparameterizable_q(raises):
    with raises(ValueError, "gradient", "'vimco'"):
        elbo_gradient(log_joint, q_fn, away_params(), 4, 2, gradient="vimco")
    for gradient in ("reparam", "stl", "dreg"):
        with raises(ValueError, "rsample", f"gradient={gradient!r}"):
            elbo_gradient(lambda z: z, lambda p: Bernoulli(logits=p), torch.tensor(0.1), 4, 2, gradient)
    with raises(ValueError, "log_joint", "NaN"):
        elbo_gradient(lambda z: log_joint(z) * float("nan"), q_fn, away_params(), 4, 2, gradient="score")


def test_vimco_baseline_is_the_geometric_mean_substitute(seed):
    r"""VIMCO's estimate, rebuilt by hand from the same draws, to rounding.

    :cite:t:`mnih2016` (their eq. 10) replace :math:`\log w_j` in
    :math:`\hat{\mathcal L}_k = \log\frac1k\sum_l w_l` by the mean of the other
    log-weights, i.e. :math:`w_j` by the geometric mean of the others:
    :math:`b_j = \log\frac1k\bigl(\sum_{l\ne j} w_l + \exp\frac1{k-1}\sum_{l\ne j}\log w_l\bigr)`.
    The estimate is :math:`\sum_j(\hat{\mathcal L}_k - b_j)\nabla\log q(z_j)
    - \sum_j\tilde w_j\nabla\log q(z_j)`; for a categorical q with logits :math:`\eta`,
    :math:`\nabla_\eta\log q(z) = e_z - \operatorname{softmax}(\eta)`. Unbiasedness and a
    lower variance (tests above) hold for any baseline free of :math:`z_j`; this pins
    the formula (an arithmetic-mean substitute fails it)."""
    g, log_w, bound, score, w_tilde = _vimco_by_hand(seed, 500)
    n, k = log_w.shape
    b = torch.empty(n, k, dtype=torch.float64)
    for j in range(k):
        others = torch.cat([log_w[:, :j], log_w[:, j + 1 :]], 1)
        b[:, j] = torch.logaddexp(torch.logsumexp(others, 1), others.mean(1)) - math.log(k)
    vimco = ((bound[:, None] - b)[..., None] * score).sum(1) - (w_tilde[..., None] * score).sum(1)
    torch.testing.assert_close(g, vimco, rtol=1e-10, atol=1e-10)
