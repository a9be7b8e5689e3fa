r"""ARM, DisARM, REBAR and RELAX against exact gradients computed by enumeration.

Facts used:

* For independent :math:`b_j \sim \operatorname{Bernoulli}(p_j)`, :math:`p_j = \sigma(\theta_j)`,
  :math:`\mathbb E[f(b)] = \sum_{b \in \{0,1\}^d} \prod_j p_j^{b_j}(1 - p_j)^{1 - b_j} f(b)` is
  affine in each :math:`p_j`, so
  :math:`\partial_{\theta_j} \mathbb E[f(b)] = \sigma'(\theta_j)\,\bigl(\mathbb E[f \mid b_j = 1]
  - \mathbb E[f \mid b_j = 0]\bigr)` with :math:`\sigma' = \sigma(1 - \sigma)`; both
  conditional expectations are sums over the :math:`2^{d-1}` other outcomes (:func:`exact_gradient`).
* The REBAR toy :math:`f(b) = (b - t)^2`: :math:`\mathbb E f = p (1 - t)^2 + (1 - p) t^2`, so
  :math:`\nabla_\theta \mathbb E f = \sigma'(\theta)\bigl((1-t)^2 - t^2\bigr) = \sigma'(\theta)(1 - 2t)`.
* DisARM is ARM's estimate averaged over the noise given the pair :math:`(b, \tilde b)`, so with
  the *same* noise :math:`\operatorname{Var}[\text{ARM}] - \operatorname{Var}[\text{DisARM}]
  = \mathbb E[(\text{ARM} - \text{DisARM})^2] \ge 0`.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from companion import discrete as D
from companion import estimators as E

N = 100_000
T_HARD = 0.499


def exact_gradient(f, logits: torch.Tensor) -> torch.Tensor:
    """:math:`\\sigma'(\\theta_j)(\\mathbb E[f|b_j=1] - \\mathbb E[f|b_j=0])` by enumerating every outcome."""
    theta = logits.double()
    d = theta.numel()
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)
    p = torch.sigmoid(theta.reshape(-1))
    values = f(codes.reshape((-1,) + tuple(theta.shape))).double()
    grad = torch.empty(d, dtype=torch.float64)
    for j in range(d):
        others = [i for i in range(d) if i != j]
        w = torch.ones(len(codes), dtype=torch.float64)
        for i in others:
            w = w * torch.where(codes[:, i] > 0.5, p[i], 1 - p[i])
        e1 = (w * values * codes[:, j]).sum()
        e0 = (w * values * (1 - codes[:, j])).sum()
        grad[j] = p[j] * (1 - p[j]) * (e1 - e0)
    return grad.reshape(theta.shape)


def toy(t):
    def f(b):
        return ((b - t) ** 2).reshape(b.shape[0], -1).sum(-1)

    return f


W4 = torch.tensor([1.0, -2.0, 0.5, 1.5])


def nonseparable(b):
    """A function of 4 binary (or relaxed) variables that no sum of one-variable terms equals."""
    return (b @ W4.to(b.dtype) - 1.0) ** 2 + 3.0 * b[:, 1] * b[:, 2] * b[:, 3] - 2.0 * b[:, 0] * b[:, 3]


THETA4 = torch.tensor([0.3, -1.2, 2.0, 0.0])

ESTIMATORS = {
    "arm": D.arm,
    "disarm": D.disarm,
    "rebar": D.rebar,
    "rebar_cold": lambda f, x, n: D.rebar(f, x, n, temperature=0.1, eta=1.0),
    "rebar_hot_eta": lambda f, x, n: D.rebar(f, x, n, temperature=2.0, eta=0.3),
    "rebar_neg_eta": lambda f, x, n: D.rebar(f, x, n, temperature=0.5, eta=-1.5),
    "relax": lambda f, x, n: D.relax(f, x, n, lambda z: 0.7 * f(torch.tanh(z)) + z.reshape(z.shape[0], -1).sum(-1)),
}


def test_exact_gradient_matches_the_toys_closed_form():
    theta = torch.tensor([0.7])
    expected = torch.sigmoid(theta) * torch.sigmoid(-theta) * (1 - 2 * 0.2)
    assert torch.allclose(exact_gradient(toy(0.2), theta).float(), expected, atol=1e-6)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("theta,t", [(0.0, T_HARD), (-1.5, T_HARD), (2.5, 0.2)])
def test_unbiased_on_the_rebar_toy(name, theta, t, seed, stats):
    """Mean of the per-sample estimates = :math:`\\sigma'(\\theta)(1 - 2t)` (see the module docstring)."""
    logits = torch.tensor([theta])
    g = ESTIMATORS[name](toy(t), logits, N)
    assert g.shape == (N, 1)
    exact = torch.sigmoid(logits) * torch.sigmoid(-logits) * (1 - 2 * t)
    stats.assert_mean(g, exact, what=f"{name} on the toy, theta={theta}, t={t}")


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_unbiased_on_a_nonseparable_function_of_four_bits(name, seed, stats):
    """Mean = the gradient from enumerating all 16 outcomes (module docstring)."""
    g = ESTIMATORS[name](nonseparable, THETA4, N)
    assert g.shape == (N, 4)
    stats.assert_mean(g, exact_gradient(nonseparable, THETA4), what=f"{name}, 4 bits")


def test_the_tests_catch_a_wrong_estimator(seed, stats):
    """A mutation (DisARM without its sigma(|theta|) factor) is rejected by the same check."""
    g = D.disarm(nonseparable, THETA4, N) / torch.sigmoid(THETA4.abs())
    stats.assert_mean_differs(g, exact_gradient(nonseparable, THETA4), what="mutant DisARM")


@pytest.mark.parametrize("f,logits", [(nonseparable, THETA4), (toy(T_HARD), torch.tensor([0.0, 1.0, -2.0]))])
def test_disarm_variance_at_most_arms(f, logits, seed, stats):
    """With the same noise, Var[ARM] - Var[DisARM] = E[(ARM - DisARM)^2] >= 0 (module docstring).

    The per-coordinate difference of the two sample variances is the mean of
    :math:`(a_i - \\bar a)^2 - (d_i - \\bar d)^2`; its standard error is that quantity's
    sample standard deviation over :math:`\\sqrt n` (``stats.assert_var_greater`` with
    ``paired=True``). The difference must exceed :math:`+5` standard errors (DisARM is
    strictly better on these problems), which a DisARM equal to ARM would fail.
    """
    state = torch.get_rng_state()
    a = D.arm(f, logits, N).double()
    torch.set_rng_state(state)
    d = D.disarm(f, logits, N).double()
    stats.assert_var_greater(a, d, "ARM vs DisARM, same noise", paired=True)


def test_same_noise_gives_paired_samples():
    """ARM and DisARM draw the same uniforms: where the pair agrees DisARM is exactly 0."""
    torch.manual_seed(3)
    a = D.arm(nonseparable, THETA4, 1000)
    torch.manual_seed(3)
    d = D.disarm(nonseparable, THETA4, 1000)
    assert (a == 0).any()  # some pairs agree, so the check below is not vacuous
    assert ((a == 0) <= (d == 0)).all()  # f(b) = f(b~) makes both vanish


def test_independent_problems_match_separate_runs(seed, stats):
    """f returning (n, S): each of S problems gets its own unbiased gradient, unaffected by the others."""
    logits = torch.stack([THETA4, -THETA4, THETA4 + 1.0])

    def f(b):
        return torch.stack([nonseparable(b[:, s]) for s in range(b.shape[1])], dim=1)

    exact = torch.stack([exact_gradient(nonseparable, row) for row in logits])
    for fn in (D.arm, D.disarm, D.rebar):
        g = fn(f, logits, N)
        assert g.shape == (N, 3, 4)
        stats.assert_mean(g.reshape(N, -1), exact.reshape(-1), what=f"{fn.__name__}, 3 problems")
    # Each problem's variance is that of a run on its own (the others add no noise).
    torch.manual_seed(seed + 1)
    alone = D.disarm(nonseparable, logits[1], N)
    stats.assert_same_var(D.disarm(f, logits, N)[:, 1], alone, what="disarm variance, problem 1")


def test_estimators_module_reexports_them():
    assert E.arm is D.arm and E.disarm is D.disarm and E.rebar is D.rebar


def test_rebar_control_variate_lowers_the_variance(seed, stats):
    """eta = 0 is the plain score function; the relaxation's control variate (eta = 1) lowers
    its variance on a smooth f, in every coordinate: by more than 5 standard errors of the
    paired difference of variances (the same noise), and by at least 10 %."""
    state = torch.get_rng_state()
    plain = D.rebar(nonseparable, THETA4, N, eta=0.0)
    torch.set_rng_state(state)
    cv = D.rebar(nonseparable, THETA4, N, eta=1.0)
    stats.assert_var_greater(plain, cv, "REBAR eta=0 vs eta=1, same noise", paired=True)
    assert (cv.var(0) < 0.9 * plain.var(0)).all(), f"{cv.var(0)} vs {plain.var(0)}"


def test_relax_create_graph_trains_the_control(seed, stats):
    """With create_graph the estimate is differentiable in the control's parameters; a few
    gradient steps on the mean square lower the variance (which is all that depends on phi):
    with the same noise, in every coordinate, by more than 5 standard errors of the paired
    difference of variances."""
    phi = torch.zeros(1, requires_grad=True)

    def control(z):
        return phi * nonseparable(torch.sigmoid(z / 0.5))

    g = D.relax(nonseparable, THETA4, 10, control, create_graph=True)
    (grad_phi,) = torch.autograd.grad((g**2).mean(), phi)
    assert torch.isfinite(grad_phi).all() and grad_phi.abs().item() > 0
    opt = torch.optim.Adam([phi], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        (D.relax(nonseparable, THETA4, 64, control, create_graph=True) ** 2).sum(-1).mean().backward()
        opt.step()
    assert phi.item() > 0.5
    with torch.no_grad():
        state = torch.get_rng_state()
        untrained = D.relax(nonseparable, THETA4, N, lambda z: 0.0 * z.sum(-1))
        torch.set_rng_state(state)
        trained = D.relax(nonseparable, THETA4, N, control)
    stats.assert_var_greater(untrained, trained, "RELAX, zero control vs trained control", paired=True)


@pytest.mark.parametrize("fn", [D.arm, D.disarm, D.rebar])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_any_logits_shape(fn, shape):
    logits = torch.zeros(shape)
    g = fn(lambda b: b.reshape(b.shape[0], -1).sum(-1), logits, 5)
    assert g.shape == (5,) + shape


@pytest.mark.parametrize("fn", [D.arm, D.disarm, D.rebar])
def test_extreme_logits_stay_finite_and_unbiased(fn, seed, stats):
    """Saturated logits (+/-1e4, +/-30) give finite estimates whose mean is still the exact
    gradient: about 0 for the saturated bits, 8 for the free one (module docstring)."""
    logits = torch.tensor([1e4, -1e4, 30.0, -30.0, 0.0])

    def f(b):
        return (b * torch.arange(5.0, dtype=b.dtype)).sum(-1) ** 2

    g = fn(f, logits, 20_000)
    assert torch.isfinite(g).all()
    stats.assert_mean(g, exact_gradient(f, logits), what=f"{fn.__name__} at saturated logits")


def test_conditional_logistic_has_the_right_law(seed, stats):
    """Given b, z~ lies on b's side of 0, and pooling z~ over b ~ Bernoulli(sigma(theta)) gives the
    logistic law of z = theta + logit(u) (Kolmogorov-Smirnov against sigma(x - theta))."""
    from scipy.special import expit

    theta = torch.tensor(0.8, dtype=torch.float64)
    n = 100_000
    b = (torch.rand(n, dtype=torch.float64) < torch.sigmoid(theta)).double()
    z = D.conditional_logistic(theta, b, torch.rand(n, dtype=torch.float64).clamp(1e-12, 1 - 1e-12))
    assert ((z > 0) == (b > 0.5)).all()
    stats.assert_ks(z, lambda x: expit(x - 0.8), what="pooled conditional relaxation")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: D.arm(None, THETA4, 10), "f must be callable"),
        (lambda: D.arm(nonseparable, [0.1, 0.2], 10), "logits must be a torch.Tensor"),
        (lambda: D.disarm(nonseparable, torch.tensor([1, 2, 3, 4]), 10), "logits must be a floating"),
        (lambda: D.disarm(nonseparable, torch.tensor([0.0, float("nan"), 0, 0]), 10), "logits must be finite"),
        (lambda: D.arm(nonseparable, THETA4, 0), "n_samples must be an int >= 1, got 0"),
        (lambda: D.arm(nonseparable, THETA4, 2.5), "n_samples must be an int, got 2.5"),
        (lambda: D.arm(lambda b: b.sum(), THETA4, 10), r"f must map a batch of n_samples=10"),
        (lambda: D.arm(lambda b: b.sum(-1).tolist(), THETA4, 10), "f must return a torch.Tensor"),
        (lambda: D.rebar(nonseparable, THETA4, 10, temperature=0.0), "temperature must be > 0, got 0.0"),
        (lambda: D.rebar(nonseparable, THETA4, 10, temperature="hot"), "temperature must be a number.*, got 'hot'"),
        (lambda: D.rebar(nonseparable, THETA4, 10, eta=float("nan")), "eta must be finite, got nan"),
        (lambda: D.rebar(nonseparable, THETA4, 10, eta="one"), "eta must be a number, got 'one'"),
        (lambda: D.relax(nonseparable, THETA4, 10, None), "control must be callable"),
        (lambda: D.relax(nonseparable, THETA4, 10, lambda z: z.sum()), "control must map a batch"),
        (lambda: D.relax(nonseparable, THETA4, 10, lambda z: z.sum(-1), create_graph=1), "create_graph"),
    ],
)
def test_bad_input_fails_clearly(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


@pytest.mark.cuda
@pytest.mark.parametrize("fn", [D.arm, D.disarm, D.rebar])
def test_same_estimates_on_cuda(fn):
    """Noise is drawn on the CPU, so a CUDA run of the same seed gives the same estimates."""
    f = toy(0.3)
    logits = torch.tensor([0.5, -1.0, 2.0])
    torch.manual_seed(0)
    cpu = fn(f, logits, 1000)
    torch.manual_seed(0)
    gpu = fn(f, logits.cuda(), 1000)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
