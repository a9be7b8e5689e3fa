"""Tests of companion.experiments.categorical: the toy objective, its exact gradient, and the
estimators' mathematics (unbiasedness, the relaxation's bias, straight-through's Jacobian).

Statistical tests are seeded; their tolerances are 5 standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from companion.experiments import categorical as C
from companion.gumbel import gumbel
from companion.stats import bias_estimate

LOGITS = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
VALUES = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
TARGET = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)


def _softmax_jacobian_vjp(y: torch.Tensor, a: torch.Tensor, tau: float) -> torch.Tensor:
    """Row-wise (1/tau) (diag(y) - y y^T) a = (1/tau) y * (a - y.a)."""
    return y * (a - (y * a).sum(-1, keepdim=True)) / tau


# ----------------------------------------------------------------------------- exact gradient
@pytest.mark.parametrize("k", [2, 3, 6])
@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_exact_gradient_matches_autograd_of_the_enumerated_objective(k, kind):
    """L(theta) = sum_k softmax(theta)_k h(e_k) is a finite sum, so autograd of it is the
    true gradient; the closed form p_j (v_j - p.v) must agree to float64 rounding."""
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(k, generator=g, dtype=torch.float64) * 2
    arg = torch.randn(k, generator=g, dtype=torch.float64)
    h = C.linear(arg) if kind == "linear" else C.quadratic(arg)
    theta = logits.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(C.objective(h, theta), theta)
    torch.testing.assert_close(C.exact_gradient(h, logits), auto, rtol=1e-12, atol=1e-14)


def test_category_values_of_the_quadratic_are_its_closed_form():
    """h(e_k) = ||e_k - t||^2 = 1 - 2 t_k + ||t||^2."""
    v = C.category_values(C.quadratic(TARGET), LOGITS)
    torch.testing.assert_close(v, 1 - 2 * TARGET + (TARGET**2).sum())


# ----------------------------------------------------------------------------- inverse CDF
def test_inverse_cdf_category_samples_softmax_and_is_piecewise_constant(generator, stats):
    """P(k(theta, U) = k) = F_k - F_{k-1} = p_k for U uniform, checked within 5 standard errors
    sqrt(p(1-p)/n); and a small change of theta changes the category only for the few u
    within that distance of a boundary F_k (here < 1% of them)."""
    n = 100_000
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    k = C.inverse_cdf_category(LOGITS, u)
    assert k.dtype == torch.long and k.shape == (n,)
    p = torch.softmax(LOGITS, -1)
    stats.assert_proportions(torch.bincount(k, minlength=3), n, p, "inverse-CDF categories")
    moved = C.inverse_cdf_category(LOGITS + torch.tensor([1e-3, 0.0, 0.0], dtype=torch.float64), u)
    assert 0 < float((moved != k).double().mean()) < 0.01


# ----------------------------------------------------------------------------- REINFORCE
@pytest.mark.parametrize("baseline", [None, "loo", 0.7])
def test_reinforce_is_unbiased(baseline, seed, stats):
    """E[(v_k - b)(e_k - p)] = sum_k p_k v_k (e_k - p) - b sum_k p_k (e_k - p)
    = p*v - p (p.v) - b (p - p) = p (v - p.v), the exact gradient, for any b independent of k.
    The mean of n estimates is within 5 standard errors (sample sd / sqrt(n)) per coordinate."""
    h = C.quadratic(TARGET)
    n = 50_000
    est = C.score_function(h, LOGITS, n, baseline=baseline)
    assert est.shape == (n, 3)
    stats.assert_mean(est, C.exact_gradient(h, LOGITS), f"score function, baseline={baseline!r}")


def test_score_function_loo_baseline_reduces_variance(seed):
    """The leave-one-out baseline removes most of f's mean from the weight: on the quadratic
    (values 0.98, 0.78, 0.38 around a mean near 0.88) the variance drops several-fold."""
    h = C.quadratic(TARGET)
    ex = C.exact_gradient(h, LOGITS)
    plain = bias_estimate(C.score_function(h, LOGITS, 20_000), ex).variance
    loo = bias_estimate(C.score_function(h, LOGITS, 20_000, baseline="loo"), ex).variance
    assert loo < plain / 3


# ----------------------------------------------------------------------------- Gumbel-softmax
@pytest.mark.parametrize("tau", [0.3, 1.0, 3.0])
def test_relaxed_matches_the_softmax_jacobian_closed_form(tau):
    """y = softmax((theta+g)/tau) has Jacobian (1/tau)(diag y - y y^T), so
    grad h(y) = (1/tau) y * (a - y.a) with a = grad_y h = 2 (y - t) for the quadratic.
    Same seed, same Gumbel draw: equal sample by sample."""
    h = C.quadratic(TARGET)
    torch.manual_seed(3)
    g = gumbel((500, 3), dtype=torch.float64)
    torch.manual_seed(3)
    est = C.gumbel_softmax(h, LOGITS, tau, 500)
    y = torch.softmax((LOGITS + g) / tau, -1)
    torch.testing.assert_close(est, _softmax_jacobian_vjp(y, 2 * (y - TARGET), tau))


def test_relaxed_bias_vanishes_as_temperature_goes_to_zero(seed, stats):
    """For a linear h(y) = v.y the relaxed objective is v.E[y_tau], and E[y_tau] -> p as
    tau -> 0 (y_tau tends to the one-hot of the Gumbel-max sample, an exact draw from p);
    so the relaxed gradient's bias shrinks with tau. At tau = 1 the bias is over 20
    standard errors (the mean of a Concrete sample is not p); at tau = 0.05 it is below 5.
    The norm of the mean error ||g_bar - grad L|| is compared with 0 in units of its noise
    floor sqrt(tr S / N) (one-sided: a norm is >= 0).
    A scale error (a missing 1/tau) would leave a bias of order ||grad L|| = 0.17 there."""
    h = C.linear(VALUES)
    ex = C.exact_gradient(h, LOGITS)
    hot = bias_estimate(C.gumbel_softmax(h, LOGITS, 1.0, 200_000), ex)
    cold = bias_estimate(C.gumbel_softmax(h, LOGITS, 0.05, 200_000), ex)
    stats.assert_above(hot.raw_bias, 0.0, hot.noise_floor, "bias norm at tau = 1", z=20)
    stats.assert_at_most(cold.raw_bias, 0.0, cold.noise_floor, "bias norm at tau = 0.05")
    assert cold.variance > 10 * hot.variance  # the price: variance grows as tau -> 0


# ----------------------------------------------------------------------------- straight-through
def test_straight_through_equals_relaxed_for_a_linear_objective():
    """hard=True returns z = y_hard - sg(y_soft) + y_soft: its Jacobian is y_soft's, and a
    linear h has the same gradient v everywhere, so both estimators give J^T v exactly."""
    h = C.linear(VALUES)
    torch.manual_seed(5)
    soft = C.gumbel_softmax(h, LOGITS, 0.5, 1000)
    torch.manual_seed(5)
    hard = C.straight_through(h, LOGITS, 0.5, 1000)
    torch.testing.assert_close(hard, soft)


def test_straight_through_uses_the_soft_jacobian_at_the_hard_sample():
    """For the quadratic, straight-through's estimate is (1/tau)(diag y - y y^T) 2 (z - t) with
    z the one-hot of argmax(theta + g) (the forward value) and y the soft sample."""
    h = C.quadratic(TARGET)
    tau = 0.7
    torch.manual_seed(6)
    g = gumbel((400, 3), dtype=torch.float64)
    torch.manual_seed(6)
    est = C.straight_through(h, LOGITS, tau, 400)
    y = torch.softmax((LOGITS + g) / tau, -1)
    z = torch.nn.functional.one_hot((LOGITS + g).argmax(-1), 3).to(y)
    torch.testing.assert_close(est, _softmax_jacobian_vjp(y, 2 * (z - TARGET), tau))


def test_straight_through_is_biased_on_a_nonlinear_objective(seed, stats):
    """The forward value is an exact sample, but the backward pass is not the gradient of
    anything: at tau = 1 on the quadratic the bias is far beyond 10 standard errors."""
    h = C.quadratic(TARGET)
    bv = bias_estimate(C.straight_through(h, LOGITS, 1.0, 100_000), C.exact_gradient(h, LOGITS))
    stats.assert_above(bv.raw_bias, 0.0, bv.noise_floor, "straight-through bias norm", z=10)


def test_extreme_logits_stay_finite(seed):
    """Logits of +-1e4 saturate the softmax: p is one-hot on category 1, so the exact
    gradient p (v - p.v) is 0; every score-function draw is category 1 with weight times
    (e_1 - p) = 0; and the relaxed sample y is one-hot too (the Gumbel noise cannot close a
    gap of 1e4 / tau), so its softmax Jacobian (diag y - y y^T) / tau, and every relaxed or
    straight-through estimate, is 0: finite, and the closed form."""
    logits = torch.tensor([1e4, 0.0, -1e4])
    h = C.quadratic(torch.tensor([0.2, 0.3, 0.5]))
    for est in (C.gumbel_softmax(h, logits, 0.1, 1000), C.straight_through(h, logits, 0.1, 1000),
                C.score_function(h, logits, 1000)):
        torch.testing.assert_close(est, torch.zeros_like(est))
    torch.testing.assert_close(C.exact_gradient(h, logits), torch.zeros(3))


# ----------------------------------------------------------------------------- policy gradient
def test_expectation_gradient_is_autograd_of_the_expectation_row_by_row():
    """p (v - p.v) for each row of batched logits equals autograd of sum_k p_k v_k."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 5, generator=g, dtype=torch.float64)
    v = torch.randn(5, generator=g, dtype=torch.float64)
    theta = logits.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((torch.softmax(theta, -1) * v).sum(), theta)
    torch.testing.assert_close(C.expectation_gradient(logits, v), auto, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- optimisation
def test_anneal_schedule():
    """tau_t = max(end, start exp(-r t)): start at t = 0, end once start e^{-rt} < end."""
    assert C.anneal(0, start=2.0, end=0.1, rate=0.01) == pytest.approx(2.0)
    assert C.anneal(100, start=2.0, end=0.1, rate=0.01) == pytest.approx(2.0 * math.exp(-1.0))
    assert C.anneal(10_000, start=2.0, end=0.1, rate=0.01) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- bad input
H = C.quadratic(TARGET)


@pytest.mark.parametrize(
    "call, error, names",
    [
        (lambda: C.exact_gradient(H, torch.tensor([1, 2, 3])), TypeError, ("logits", "torch.int64")),
        (lambda: C.exact_gradient(H, torch.zeros(2, 3)), ValueError, ("logits", "(2, 3)")),
        (lambda: C.exact_gradient(H, torch.zeros(1)), ValueError, ("logits", "(1,)")),
        (lambda: C.exact_gradient(H, torch.tensor([0.0, float("nan")])), ValueError, ("logits", "nan")),
        (lambda: C.exact_gradient("h", torch.zeros(3)), TypeError, ("h must be callable", "'h'")),
        (lambda: C.exact_gradient(lambda y: y, torch.zeros(3)), ValueError,
         ("h must map", "one value per row", "(3, 3)")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), 0.0, 10), ValueError, ("temperature", "0.0")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), -1.0, 10), ValueError, ("temperature", "-1.0")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), float("nan"), 10), ValueError, ("temperature", "nan")),
        (lambda: C.straight_through(H, torch.zeros(3), True, 10), TypeError, ("temperature", "True")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), torch.ones(2), 10), ValueError, ("temperature", "(2,)")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), 1.0, 0), ValueError, ("n_samples", "0")),
        (lambda: C.score_function(H, torch.zeros(3), 10.0), TypeError, ("n_samples", "10.0")),
        (lambda: C.score_function(H, torch.zeros(3), 10, baseline="mean"), ValueError, ("baseline", "'mean'")),
        (lambda: C.linear(torch.zeros(2, 2)), ValueError, ("values", "(2, 2)")),
        (lambda: C.quadratic([0.5, 0.5]), TypeError, ("target", "[0.5, 0.5]")),
        (lambda: C.inverse_cdf_category(torch.zeros(3), torch.tensor([0.0, 0.5])), ValueError, ("u must lie", "0.0")),
        (lambda: C.anneal(-1), ValueError, ("step", "-1")),
        (lambda: C.anneal(1, start=0.0), ValueError, ("start", "0.0")),
        (lambda: C.anneal(1, rate="fast"), TypeError, ("rate", "'fast'")),
        (lambda: C.gumbel_softmax(H, torch.zeros(3), torch.ones(3), 10), ValueError,
         ("temperature must be a scalar", "(3,)")),
        (lambda: C.expectation_gradient(torch.zeros(2, 1), torch.zeros(1)), ValueError, ("logits", "(2, 1)")),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, names, raises):
    with raises(error, *names):
        call()


# ----------------------------------------------------------------------------- Concrete density
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_concrete_density_integrates_to_one_for_two_categories(tau):
    r"""For :math:`K = 2` the density of :math:`y_1 \in (0, 1)` must integrate to one.
    Substituting :math:`y_1 = \sigma(u)`, :math:`dy_1 = y_1(1 - y_1)\,du`, turns the
    integrable singularities at the ends into smooth tails; the trapezoid rule on
    :math:`u \in [-36, 36]` (where float64 still resolves :math:`y_1 < 1`; the tails
    beyond hold less than 1e-7 for :math:`\tau \ge 1/2`) is accurate to 1e-6.
    """
    logits = torch.tensor([0.7, -0.4], dtype=torch.float64)
    u = torch.linspace(-36, 36, 400_001, dtype=torch.float64)
    y1, y2 = torch.sigmoid(u), torch.sigmoid(-u)  # y2 = 1 - y1 without cancellation
    dens = C.concrete_log_prob(logits, tau, torch.stack([y1, y2], -1)).exp() * y1 * y2
    assert float(torch.trapezoid(dens, u)) == pytest.approx(1.0, abs=1e-6)


def test_concrete_density_matches_torch_and_the_samples(seed, stats):
    r"""Equal to ``RelaxedOneHotCategorical.log_prob`` (same formula, computed by torch
    through the log-space ExpRelaxedCategorical); and for :math:`K = 2` the probability
    :math:`P(y_1 \le 1/2)` from the density (numerical integral) matches the frequency of
    Gumbel-softmax samples within 5 standard errors :math:`\sqrt{q(1-q)/n}`. A wrong
    exponent (:math:`\tau` for :math:`\tau + 1`) fails both.
    """
    logits = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    y = torch.softmax(torch.randn(50, 3, dtype=torch.float64), -1)
    theirs = torch.distributions.RelaxedOneHotCategorical(torch.tensor(0.7, dtype=torch.float64),
                                                          logits=logits).log_prob(y)
    assert torch.allclose(C.concrete_log_prob(logits, 0.7, y), theirs, atol=1e-10)
    two = torch.tensor([0.3, -0.2], dtype=torch.float64)
    u = torch.linspace(-36, 0, 200_001, dtype=torch.float64)  # y_1 = sigmoid(u) <= 1/2
    y1, y2 = torch.sigmoid(u), torch.sigmoid(-u)
    yy = torch.stack([y1, y2], -1)
    q = float(torch.trapezoid(C.concrete_log_prob(two, 0.5, yy).exp() * y1 * y2, u))
    n = 200_000
    from companion.gumbel import gumbel_softmax
    count = float((gumbel_softmax(two.expand(n, 2), 0.5)[:, 0] <= 0.5).sum())
    stats.assert_proportions([count], n, [q], "share of Gumbel-softmax samples with y_1 <= 1/2")


@pytest.mark.parametrize("tau", [0.7, 1.5])
def test_concrete_density_integrates_to_one_for_three_categories(tau):
    r"""For :math:`K = 3` the density of :math:`(y_1, y_2)` integrates to one over the
    simplex. With :math:`y = \operatorname{softmax}(u_1, u_2, 0)` the Jacobian of
    :math:`(u_1, u_2) \mapsto (y_1, y_2)` is :math:`y_1 y_2 y_3` (the determinant of
    :math:`\operatorname{diag}(y_{1:2}) - y_{1:2} y_{1:2}^\top`), so the integral is
    :math:`\int p(y)\, y_1 y_2 y_3\, du`, a smooth integrand with exponential tails,
    which the 2-D trapezoid rule on :math:`[-30, 30]^2` gets to about 1e-5. A wrong
    factor (:math:`(K-1)!` or :math:`\tau^{K-1}`) is off by 50 % or more.
    """
    logits = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    u = torch.linspace(-30, 30, 1201, dtype=torch.float64)
    u1, u2 = torch.meshgrid(u, u, indexing="ij")
    y = torch.softmax(torch.stack([u1, u2, torch.zeros_like(u1)], -1), -1)
    dens = C.concrete_log_prob(logits, tau, y).exp() * y.prod(-1)
    total = torch.trapezoid(torch.trapezoid(dens, u, dim=-1), u)
    assert float(total) == pytest.approx(1.0, abs=1e-4)


def test_concrete_log_ratio_does_not_depend_on_a_shared_temperature():
    r"""Chapter 6's claim. :math:`y = \operatorname{softmax}((\theta + g)/\tau)` is an
    invertible map of the differences :math:`x_i - x_K` of :math:`x = \theta + g`, so
    :math:`\log q_\tau(y) - \log p_\tau(y)` (posterior and prior at the *same*
    :math:`\tau`) is the log density ratio of those differences, the Jacobian cancelling:
    with the same noise :math:`g` it is the same number at every :math:`\tau`, draw by
    draw, and so is its mean, the Concrete KL. With a different prior temperature the
    Jacobians no longer cancel and the ratio changes.
    """
    from companion.gumbel import gumbel, gumbel_softmax
    torch.manual_seed(0)
    q = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    p = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    g = gumbel((500, 3), dtype=torch.float64)

    def log_ratio(tau_q, tau_p):
        y = gumbel_softmax(q.expand(500, 3), tau_q, g=g)
        return C.concrete_log_prob(q, tau_q, y) - C.concrete_log_prob(p, tau_p, y)

    ref = log_ratio(1.0, 1.0)
    for tau in (0.3, 3.0):
        assert torch.allclose(log_ratio(tau, tau), ref, atol=1e-9)
    assert not torch.allclose(log_ratio(0.5, 1.0), ref, atol=1e-3)


def test_concrete_density_rejects_points_off_the_simplex(raises):
    with raises(ValueError, "y must lie in the open simplex"):  # the message shows no value
        C.concrete_log_prob(torch.zeros(3), 1.0, torch.tensor([0.0, 0.5, 0.5]))
    with raises(ValueError, "y must have last dimension", "(2,)"):
        C.concrete_log_prob(torch.zeros(3), 1.0, torch.tensor([0.5, 0.5]))
    with raises(ValueError, "temperature", "0.0"):
        C.concrete_log_prob(torch.zeros(2), 0.0, torch.tensor([0.5, 0.5]))


def test_inverse_cdf_category_on_rows_is_the_one_row_map_per_row(raises):
    """Batched logits (rows independent) give, row by row, what the 1-d map gives."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=g, dtype=torch.float64)
    u = torch.rand(4, 300, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    rows = C.inverse_cdf_category(logits, u)
    assert rows.shape == (4, 300) and rows.dtype == torch.long
    for i in range(4):
        assert torch.equal(rows[i], C.inverse_cdf_category(logits[i], u[i]))
    with raises(ValueError, "u must have shape", "leading shape (4,)", "(3, 300)"):
        C.inverse_cdf_category(logits, u[:3])
