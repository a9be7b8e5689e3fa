r"""Gumbel noise, Gumbel-max and Gumbel-softmax against their closed forms and torch's own.

Facts used:

* standard Gumbel :math:`G`: CDF :math:`\exp(-e^{-g})`, mean the Euler-Mascheroni
  constant :math:`\gamma`, variance :math:`\pi^2/6`, excess kurtosis 12/5 (so the fourth
  central moment is :math:`5.4\,(\pi^2/6)^2`);
* the difference of two independent standard Gumbels is standard logistic,
  :math:`P(G_1 - G_2 \le t) = \sigma(t)`;
* :math:`\arg\max_j(\ell_j + G_j) \sim \operatorname{Categorical}(\operatorname{softmax}(\ell))`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special
from scipy import stats as st

from companion import gumbel as G

N = 100_000
EULER_GAMMA = 0.5772156649015329
LOGITS = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])


def draw_rows(logits, n):
    return logits.expand(n, logits.shape[-1])


# ---------------------------------------------------------------------------------------
# Gumbel noise
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_noise_moments_and_ks(dtype, seed, stats):
    r"""Mean :math:`\gamma`, variance :math:`\pi^2/6` (fourth central moment
    :math:`5.4\,(\pi^2/6)^2`), and the CDF :math:`\exp(-e^{-g})` (KS)."""
    g = G.gumbel((2 * N,), dtype=dtype)
    assert g.dtype == dtype and g.shape == (2 * N,)
    var = math.pi**2 / 6
    stats.assert_mean(g, EULER_GAMMA, "Gumbel mean")
    stats.assert_var(g, var, 5.4 * var**2, "Gumbel variance")
    stats.assert_ks(g, st.gumbel_r.cdf, "Gumbel noise")


def test_gumbel_noise_generator_and_device():
    a = G.gumbel((3, 4), generator=torch.Generator().manual_seed(1))
    b = G.gumbel((3, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert G.gumbel(5, device="cpu").shape == (5,)


@pytest.mark.parametrize("dtype,lo,hi", [(torch.float32, -4.48, 16.7), (torch.float64, -6.57, 36.8)])
def test_gumbel_noise_finite_at_extremes(dtype, lo, hi, monkeypatch):
    r"""u exactly 0 and the largest float below 1 (what ``torch.rand`` can return) give finite noise:
    :math:`-\log(-\log t)` with t the smallest normal float is -4.47 (float32) and -6.56
    (float64); :math:`-\log(-\log(1 - \epsilon/2))` is 16.6 and 36.7."""
    real_rand = torch.rand

    def edge_rand(*args, **kwargs):
        out = real_rand(*args, **kwargs)
        out[0::2] = 0.0
        out[1::2] = 1.0 - torch.finfo(out.dtype).eps / 2
        return out

    monkeypatch.setattr(torch, "rand", edge_rand)
    g = G.gumbel((6,), dtype=dtype)
    assert torch.isfinite(g).all(), g
    assert (g >= lo).all() and (g <= hi).all(), g
    assert (g[0::2] < 0).all() and (g[1::2] > 10).all()
    # and the samplers built on it stay finite
    logits = torch.zeros(6, dtype=dtype)
    assert torch.isfinite(G.gumbel_softmax(logits, 0.01)).all()


# ---------------------------------------------------------------------------------------
# Gumbel-max
# ---------------------------------------------------------------------------------------


def test_gumbel_max_frequencies_are_softmax(seed, stats):
    r""":math:`P(\arg\max_j(\ell_j + G_j) = i) = \operatorname{softmax}(\ell)_i`: each category's
    frequency within 5 binomial standard errors :math:`\sqrt{p(1-p)/n}`."""
    k = G.gumbel_max(draw_rows(LOGITS, 4 * N))
    assert k.shape == (4 * N,) and k.dtype == torch.int64
    counts = torch.bincount(k, minlength=len(LOGITS))
    stats.assert_proportions(counts, 4 * N, LOGITS.double().softmax(0), "Gumbel-max")


def test_gumbel_max_is_argmax_of_perturbed_logits():
    g = G.gumbel((7, 5), generator=torch.Generator().manual_seed(0))
    logits = torch.randn(7, 5)
    torch.testing.assert_close(G.gumbel_max(logits, g=g), (logits + g).argmax(-1))
    assert G.gumbel_max(torch.tensor([0.0, 3.0])).shape == ()


def test_gumbel_max_extreme_logits():
    """Logits of +/-1e4: the 1e4 category wins every time (Gumbel noise is at most 16.6)."""
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]]).repeat(500, 1)
    k = G.gumbel_max(logits)
    assert (k[0::2] == 0).all() and (k[1::2] == 2).all()


# ---------------------------------------------------------------------------------------
# Gumbel-softmax
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 5.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_softmax_on_simplex(tau, dtype, seed):
    """Every row is a probability vector: non-negative, summing to 1 (to rounding)."""
    logits = torch.randn(1000, 6, dtype=dtype) * 3
    y = G.gumbel_softmax(logits, tau)
    assert y.shape == logits.shape and y.dtype == dtype
    assert (y >= 0).all() and (y <= 1).all()
    tol = 10 * torch.finfo(dtype).eps * 6
    assert (y.sum(-1) - 1).abs().max() <= tol


def test_gumbel_softmax_tends_to_one_hot_bound():
    r"""Deterministic bound with the noise fixed. With :math:`z = \ell + g` and :math:`\Delta` the gap
    between its two largest entries,

    .. math:: 1 - \max_j y_j = \frac{\sum_{j \ne j^*} e^{-(z_{j^*} - z_j)/\tau}}{1 + \sum_{j \ne j^*} e^{-(z_{j^*} - z_j)/\tau}}
              \le (K-1)\, e^{-\Delta/\tau},

    so y tends to the one-hot of the Gumbel-max sample :math:`j^* = \arg\max z` exponentially
    fast in :math:`1/\tau`, for every temperature keeping :math:`\arg\max y = j^*`.
    """
    K = 5
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, K, dtype=torch.float64, generator=gen)
    g = G.gumbel(logits.shape, generator=gen, dtype=torch.float64)
    z = logits + g
    top2 = z.topk(2, dim=-1).values
    gap = top2[:, 0] - top2[:, 1]
    hard = G.gumbel_max(logits, g=g)
    previous = torch.ones(len(logits), dtype=torch.float64)
    for tau in [2.0, 1.0, 0.5, 0.1, 0.03, 0.01, 0.001]:
        y = G.gumbel_softmax(logits, tau, g=g)
        deficit = 1 - y.max(-1).values
        assert (y.argmax(-1) == hard).all()
        assert (deficit <= (K - 1) * torch.exp(-gap / tau) + 1e-12).all()
        assert (deficit <= previous + 1e-12).all()  # monotone in tau for each row
        previous = deficit
    # at tau = 0.001 every row whose gap exceeds 0.05 is one-hot to within (K-1) e^-50
    wide = gap > 0.05
    assert wide.float().mean() > 0.9
    torch.testing.assert_close(y[wide], F.one_hot(hard[wide], K).double(), rtol=0, atol=1e-15)


def _two_class_deficit(tau: float, delta: float) -> float:
    r""":math:`\mathbb E[1 - \max(y_1, y_2)]` for K = 2, :math:`y_1 = \sigma((\delta + L)/\tau)`,
    :math:`L` standard logistic: :math:`\int \sigma(-|\delta + l|/\tau)\, \sigma(l)(1 - \sigma(l))\, dl`."""

    def integrand(l):
        s = special.expit(l)
        return special.expit(-abs(delta + l) / tau) * s * (1 - s)

    value, _ = integrate.quad(integrand, -60, 60, points=[-delta], limit=200)
    return value


@pytest.mark.parametrize("tau", [2.0, 0.5, 0.1, 0.02])
@pytest.mark.parametrize("delta", [0.0, 1.3])
def test_gumbel_softmax_two_classes_exact_distribution(tau, delta, seed, stats):
    r"""K = 2, logits :math:`(\delta, 0)`: :math:`y_1 = \sigma((\delta + G_1 - G_2)/\tau)` and
    :math:`G_1 - G_2` is standard logistic, so

    .. math:: P(y_1 \le t) = \sigma\bigl(\tau\,\operatorname{logit}(t) - \delta\bigr),

    checked by a KS test for :math:`\tau \ge 0.5` (at smaller :math:`\tau`, :math:`y_1` rounds to
    exactly 0 or 1 in a visible fraction of rows). At every :math:`\tau`, the log-ratio
    :math:`\tau\log(y_1/y_2) - \delta = G_1 - G_2`, computed without that rounding, is checked to
    be standard logistic. The distance to one-hot,
    :math:`\mathbb E[1 - \max_j y_j] = \mathbb E[\sigma(-|\delta + L|/\tau)]`, is compared
    with its numerical integral (5 standard errors); since the logistic density is at most
    1/4, for :math:`\delta = 0` it is at most :math:`2\cdot\frac14\tau\int_0^\infty\sigma(-t)dt
    = \frac{\ln 2}{2}\tau`, and tends to that as :math:`\tau \to 0`: one-hot at rate
    :math:`O(\tau)`.
    """
    logits = torch.tensor([delta, 0.0], dtype=torch.float64)
    y = G.gumbel_softmax(draw_rows(logits, N), tau)

    def cdf(t):
        t = np.clip(t, 1e-300, 1 - 1e-16)
        return 1 / (1 + np.exp(-(tau * np.log(t / (1 - t)) - delta)))

    if tau >= 0.5:
        assert ((y[:, 0] > 0) & (y[:, 0] < 1)).all()
        stats.assert_ks(y[:, 0], cdf, f"y_1 at tau={tau}")
    logistic = tau * (torch.log(y[:, 0]) - torch.log(y[:, 1])) - delta
    stats.assert_ks(logistic, st.logistic.cdf, f"tau log(y_1/y_2) - delta at tau={tau}")
    deficit = 1 - y.max(-1).values
    expected = _two_class_deficit(tau, delta)
    stats.assert_mean(deficit, expected, f"E[1 - max y] at tau={tau}")
    if delta == 0.0:
        assert expected <= math.log(2) / 2 * tau
        if tau <= 0.02:
            assert expected == pytest.approx(math.log(2) / 2 * tau, rel=0.02)


def test_gumbel_softmax_hard_is_one_hot_with_soft_gradient(seed):
    r"""``hard=True``: the value is the one-hot of the Gumbel-max sample; the gradient w.r.t. the
    logits is exactly the soft sample's, for the same noise g (straight-through:
    :math:`y_{hard} - \operatorname{sg}(y_{soft}) + y_{soft}`)."""
    logits = torch.randn(64, 6, requires_grad=True)
    g = G.gumbel(logits.shape)
    w = torch.randn(64, 6)
    for tau in [0.3, 1.0, 3.0]:
        y_hard = G.gumbel_softmax(logits, tau, hard=True, g=g)
        y_soft = G.gumbel_softmax(logits, tau, hard=False, g=g)
        one_hot = F.one_hot(G.gumbel_max(logits.detach(), g=g), 6).float()
        torch.testing.assert_close(y_hard, one_hot, rtol=0, atol=1e-6)
        (g_hard,) = torch.autograd.grad((w * y_hard).sum(), logits)
        (g_soft,) = torch.autograd.grad((w * y_soft).sum(), logits)
        torch.testing.assert_close(g_hard, g_soft, rtol=1e-6, atol=1e-7)
        assert g_soft.abs().sum() > 0


def test_gumbel_softmax_seed_and_noise_agree():
    """Drawing the noise inside with a seed gives the same sample as passing that noise."""
    logits = torch.randn(10, 4)
    torch.manual_seed(5)
    drawn = G.gumbel_softmax(logits, 0.7)
    torch.manual_seed(5)
    g = G.gumbel(logits.shape)
    torch.testing.assert_close(drawn, G.gumbel_softmax(logits, 0.7, g=g))
    torch.testing.assert_close(drawn, torch.softmax((logits + g) / 0.7, -1))


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_gumbel_softmax_equal_in_distribution_to_torch(tau, seed, stats):
    r"""Same distribution as ``torch.nn.functional.gumbel_softmax``: argmax frequencies (both
    equal softmax(logits), and each other within 5 standard errors of a difference of
    independent proportions), and the mean, variance and whole distribution (two-sample KS) of each
    coordinate."""
    logits = LOGITS[:4]
    rows = draw_rows(logits, N)
    ours = G.gumbel_softmax(rows, tau)
    theirs = F.gumbel_softmax(rows, tau=tau)
    p = logits.double().softmax(0)
    for name, y in [("companion", ours), ("torch", theirs)]:
        stats.assert_proportions(torch.bincount(y.argmax(-1), minlength=4), N, p, f"{name} argmax")
    stats.assert_same_mean(F.one_hot(ours.argmax(-1), 4), F.one_hot(theirs.argmax(-1), 4), "argmax frequencies")
    stats.assert_same_mean(ours, theirs, "coordinate means")
    stats.assert_same_var(ours, theirs, "coordinate variances")
    for j in range(4):
        stats.assert_ks_2samp(ours[:, j], theirs[:, j], f"coordinate {j}")
    hard_ours = G.gumbel_softmax(rows, tau, hard=True)
    hard_theirs = F.gumbel_softmax(rows, tau=tau, hard=True)
    stats.assert_same_mean(hard_ours, hard_theirs, "hard one-hot frequencies")


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_softmax_extreme_logits_stay_finite(hard, tau, dtype):
    """Logits of +/-1e4 give finite, one-hot-like samples and finite gradients, soft and hard."""
    base = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    logits = base.repeat(50, 1).requires_grad_()
    y = G.gumbel_softmax(logits, tau, hard=hard)
    assert torch.isfinite(y).all()
    assert (y.sum(-1) - 1).abs().max() < 1e-5
    winners = y[0::4].argmax(-1), y[1::4].argmax(-1)
    assert (winners[0] == 0).all() and (winners[1] == 2).all()
    if tau <= 1.0:
        assert (y[0::4, 0] > 1 - 1e-6).all()
    w = torch.randn_like(y)
    (grad,) = torch.autograd.grad((w * y).sum(), logits)
    assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------
# The numerical contract: large and masked logits, tiny temperatures, low precision
# ---------------------------------------------------------------------------------------


SAMPLERS = {
    "max": lambda l, **kw: F.one_hot(G.gumbel_max(l, **kw), l.shape[-1]).to(l.dtype),
    "hard": lambda l, **kw: G.gumbel_softmax(l, 1.0, hard=True, **kw),
}


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("big", [1e6, 1e8, 1e30, -1e30])
def test_equal_large_logits_are_a_fair_coin(big, sampler, seed, stats):
    r"""Two equal logits give :math:`P = 1/2` whatever their size.

    Only :math:`\ell_1 - \ell_2 = 0` matters. Without the row shift, :math:`\ell + g` in
    float32 rounds the noise to a grid of 1/16 at :math:`10^6` (P = 0.492, 7 SE off at this n),
    of 8 at :math:`10^8` (P = 0.018) and away entirely at :math:`10^{30}` (P = 0).
    """
    n = 200_000
    y = SAMPLERS[sampler](torch.full((n, 2), big))
    stats.assert_proportions(y[:, 0].sum(), n, 0.5, f"P(first) at logits {big:g}")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_large_logits_keep_their_difference(sampler, seed, stats):
    r""":math:`\ell = (2^{24}, 2^{24} - 1)` (both exact in float32): :math:`P(\text{first}) = \sigma(1) = e/(1+e)`."""
    n = 200_000
    logits = torch.tensor([2.0**24, 2.0**24 - 1]).expand(n, 2)
    y = SAMPLERS[sampler](logits)
    stats.assert_proportions(y[:, 0].sum(), n, math.e / (1 + math.e), "P(first)")


def test_soft_sample_of_equal_large_logits_is_symmetric(seed, stats):
    """The relaxed sample's first coordinate has mean 1/2 by symmetry, at any logit size."""
    y = G.gumbel_softmax(torch.full((100_000, 2), 1e8), 0.5)
    stats.assert_mean(y[:, 0], 0.5, "E[y_1] at logits 1e8")


@pytest.mark.parametrize("sampler", ["max", "hard", "soft"])
def test_minus_inf_masks_a_category(sampler, seed, stats):
    r"""A logit of :math:`-\infty` has probability 0; the others keep softmax's law:
    :math:`\ell = (0, -\infty, \log 2)` gives :math:`(1/3, 0, 2/3)`.
    """
    n = 150_000
    logits = torch.tensor([0.0, -math.inf, math.log(2.0)]).expand(n, 3)
    if sampler == "soft":
        y = G.gumbel_softmax(logits, 0.01)
        assert torch.isfinite(y).all() and (y[:, 1] == 0).all()
        y = F.one_hot(y.argmax(-1), 3).float()
    else:
        y = SAMPLERS[sampler](logits)
    assert (y[:, 1] == 0).all()
    stats.assert_proportions(y.sum(0)[[0, 2]], n, torch.tensor([1 / 3, 2 / 3]), "masked frequencies")


@pytest.mark.parametrize("hard", [False, True])
def test_masked_sample_equals_the_sample_without_the_category(hard, generator):
    """With the same noise, masking a category with -inf gives what dropping it gives, and
    finite gradients: zero for the masked logit, the unmasked problem's for the others
    (the temperature's too)."""
    raw = torch.randn(64, 4, generator=generator)
    g = G.gumbel((64, 4), generator=generator)
    keep = [0, 1, 3]
    masked = raw.clone()
    masked[:, 2] = -math.inf
    masked.requires_grad_()
    kept = raw[:, keep].clone().requires_grad_()
    tau_m = torch.tensor(0.7, requires_grad=True)
    tau_k = torch.tensor(0.7, requires_grad=True)
    y_m = G.gumbel_softmax(masked, tau_m, hard=hard, g=g)
    y_k = G.gumbel_softmax(kept, tau_k, hard=hard, g=g[:, keep])
    assert (y_m[:, 2] == 0).all()
    torch.testing.assert_close(y_m[:, keep], y_k)
    w = torch.randn(64, 4, generator=generator)
    gm = torch.autograd.grad((w * y_m).sum(), (masked, tau_m))
    gk = torch.autograd.grad((w[:, keep] * y_k).sum(), (kept, tau_k))
    assert torch.isfinite(gm[0]).all() and (gm[0][:, 2] == 0).all()
    torch.testing.assert_close(gm[0][:, keep], gk[0])
    torch.testing.assert_close(gm[1], gk[1])


@pytest.mark.parametrize(
    "fn", [G.gumbel_max, lambda l: G.gumbel_softmax(l, 1.0), lambda l: G.gumbel_softmax(l, 1.0, hard=True)],
    ids=["max", "soft", "hard"],
)
def test_logits_that_cannot_be_sampled(fn, raises):
    """A row of -inf (nothing to sample), +inf and NaN are ValueErrors that say which."""
    with raises(ValueError, "logits", "row"):
        fn(torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]]))
    with raises(ValueError, "logits", "+inf"):
        fn(torch.tensor([0.0, math.inf]))
    with raises(ValueError, "logits", "NaN"):
        fn(torch.tensor([0.0, math.nan]))


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize(
    "dtype,tau", [(torch.float16, 1e-4), (torch.float16, 1e-8), (torch.float32, 1e-39), (torch.float64, 1e-310)]
)
def test_tiny_temperature_gives_the_gumbel_max_one_hot(dtype, tau, hard, generator):
    r"""As :math:`\tau \to 0^+` the sample is the one-hot of the Gumbel-max sample; a tiny
    positive :math:`\tau` must give it, finite, not NaN (:math:`z/\tau` overflowing).

    The soft sample is exactly :math:`\operatorname{softmax}((z - \max z)/\tau)` with
    :math:`z = \ell + g`, computed here in float64 (finite for any :math:`\tau > 0`): it is
    one-hot to within :math:`(K-1)e^{-\Delta/\tau}` for a gap :math:`\Delta` between the
    two largest :math:`z`, so rows whose gap is a few :math:`\tau` (float16 keeps
    :math:`z` to about :math:`5\cdot 10^{-4}`, the size of :math:`\tau = 10^{-4}`) are not
    one-hot, and must not be. The hard sample is the one-hot in every row."""
    logits = (3 * torch.randn(500, 6, generator=generator)).to(dtype)
    g = G.gumbel((500, 6), generator=generator, dtype=dtype)
    y = G.gumbel_softmax(logits, tau, hard=hard, g=g)
    assert y.dtype == dtype and torch.isfinite(y).all()
    one_hot = F.one_hot(G.gumbel_max(logits, g=g), 6).double()
    z = logits.double() + g.double()
    exact = one_hot if hard else torch.softmax((z - z.max(-1, keepdim=True).values) / tau, -1)
    torch.testing.assert_close(y.double(), exact, rtol=0, atol=4 * torch.finfo(dtype).eps)
    top2 = z.topk(2, dim=-1).values
    wide = top2[:, 0] - top2[:, 1] > 40 * tau
    assert wide.float().mean() > 0.95
    torch.testing.assert_close(y[wide].double(), one_hot[wide], rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_tiny_temperature_with_fresh_noise_is_finite():
    for dtype, tau in [(torch.float16, 1e-4), (torch.float32, 1e-39), (torch.float64, 1e-310)]:
        y = G.gumbel_softmax(torch.randn(2000, 4).to(dtype), tau)
        assert torch.isfinite(y).all(), dtype
        assert ((y.sum(-1) - 1).abs() < 1e-2).all()


def test_temperature_must_not_enlarge_the_logits(raises):
    """A (2, 1, 1) temperature against (3, 4) logits would silently broadcast to (2, 3, 4)."""
    with raises(ValueError, "temperature", "(2, 1, 1)", "(3, 4)"):
        G.gumbel_softmax(torch.zeros(3, 4), torch.ones(2, 1, 1))
    with raises(ValueError, "temperature", "(5,)"):
        G.gumbel_softmax(torch.zeros(3, 4), torch.ones(5))
    y = G.gumbel_softmax(torch.zeros(3, 4), torch.tensor([[0.5], [1.0], [2.0]]))
    assert y.shape == (3, 4)
    with raises(ValueError, "temperature", "1e-50", "float32"):
        G.gumbel_softmax(torch.zeros(3, 4), 1e-50)


def test_straight_through_rejects_non_finite_input(raises):
    with raises(ValueError, "y_soft", "finite"):
        G.straight_through(torch.tensor([0.2, math.nan, 0.8]))
    with raises(ValueError, "y_soft", "finite"):
        G.straight_through(torch.tensor([0.2, math.inf]))
    with raises(ValueError, "y_soft", "shape ()"):
        G.straight_through(torch.tensor(0.5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_gumbel_noise_mean(dtype, seed, stats):
    r"""Low-precision noise is drawn in float32 and rounded: mean :math:`\gamma`.

    Drawn directly in bfloat16, :math:`u` lives on a grid of 1/256 and the mean is 0.5555
    (17 standard errors off at this n)."""
    g = G.gumbel(1_000_000, dtype=dtype)
    assert g.dtype == dtype and torch.isfinite(g).all()
    stats.assert_mean(g.double(), EULER_GAMMA, f"{dtype} Gumbel mean")


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_equal_logits_are_a_fair_coin(dtype, sampler, seed, stats):
    """In bfloat16 ties between rounded ``l + g`` went to the first category (P = 0.4916)."""
    n = 400_000
    y = SAMPLERS[sampler](torch.zeros(n, 2, dtype=dtype))
    assert y.dtype == dtype
    stats.assert_proportions(y[:, 0].double().sum(), n, 0.5, f"{dtype} P(first)")


def test_low_precision_gradients_flow():
    logits = torch.randn(8, 3).to(torch.bfloat16).requires_grad_()
    y = G.gumbel_softmax(logits, torch.tensor(0.5, dtype=torch.bfloat16), hard=True)
    assert y.dtype == torch.bfloat16
    (grad,) = torch.autograd.grad((y * torch.randn(8, 3).to(torch.bfloat16)).sum(), logits)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()


@pytest.mark.parametrize("fn", [G.gumbel, lambda *a, **k: __import__("companion.device").device.randn(*a, **k),
                                lambda *a, **k: __import__("companion.device").device.uniform_open(*a, **k)],
                         ids=["gumbel", "randn", "uniform_open"])
def test_noise_arguments_are_checked(fn, raises):
    with raises(ValueError, "shape", "-1"):
        fn((2, -1))
    with raises(TypeError, "shape", "2.5"):
        fn(2.5)
    with raises(TypeError, "shape", "(2, 1.0)"):
        fn((2, 1.0))
    with raises(TypeError, "dtype", "torch.int64"):
        fn(3, dtype=torch.int64)
    with raises(TypeError, "dtype", "'float32'"):
        fn(3, dtype="float32")
    with raises(TypeError, "generator", "int"):
        fn(3, generator=0)
    with raises(ValueError, "device", "'nonsense'"):
        fn(3, device="nonsense")
    assert fn(torch.Size([2, 0])).shape == (2, 0)


def test_check_temperature_is_gumbel_softmaxs(raises):
    """The public check accepts what gumbel_softmax accepts and refuses what it refuses,
    with the same message."""
    logits = torch.zeros(4, 3)
    assert float(G.check_temperature(0.5, logits)) == 0.5
    assert G.check_temperature(torch.full((4, 1), 2.0), logits).shape == (4, 1)
    for bad, error, shown in ((0.0, ValueError, "got 0.0"),
                              (-1.0, ValueError, "got -1.0"),
                              (math.nan, ValueError, "got nan"),
                              (True, TypeError, "got True"),
                              (torch.ones(2), ValueError, "shape (2,)")):
        with raises(error, "temperature", shown) as mine:
            G.check_temperature(bad, logits)
        with pytest.raises(error) as theirs:
            G.gumbel_softmax(logits, bad)
        assert str(mine.value) == str(theirs.value)
