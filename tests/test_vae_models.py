"""Tests of companion.experiments.vae_models: shapes, closed forms, exactness of the enumerated
ELBO, unbiasedness of the gradient estimators, a few training steps, and argument checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Normal, kl_divergence

from companion import catalogue
from companion.experiments import vae_models as vm
from companion.experiments.data import load_binary_digits
from companion.device import setup


@pytest.fixture(scope="module")
def digits():
    return load_binary_digits()


def _binary(n, n_pixels, seed):
    return (torch.rand(n, n_pixels, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


# ---------------------------------------------------------------- shapes

def test_gaussian_vae_shapes():
    model = vm.GaussianVAE(n_pixels=64, n_latent=3, n_hidden=16)
    x = _binary(5, 64, 0)
    mu, sigma = model.encode(x)
    assert mu.shape == sigma.shape == (5, 3) and bool((sigma > 0).all())
    assert model.decode(torch.zeros(7, 5, 3)).shape == (7, 5, 64)
    for est in vm.GAUSSIAN_ESTIMATORS:
        loss, elbo = vm.elbo_surrogate(model, x, est, n_samples=4)
        assert loss.shape == () and elbo.shape == (5,) and not elbo.requires_grad
    assert vm.gaussian_elbo(model, x, n_samples=3).shape == (5,)


def test_categorical_vae_shapes():
    model = vm.CategoricalVAE(n_pixels=64, n_latents=2, n_categories=5, n_hidden=16)
    x = _binary(6, 64, 1)
    assert model.encode(x).shape == (6, 2, 5)
    assert model.decode(torch.zeros(3, 6, 2, 5)).shape == (3, 6, 64)
    for est in vm.CATEGORICAL_ESTIMATORS:
        loss, elbo = vm.elbo_surrogate(model, x, est, n_samples=3, temperature=0.7)
        assert loss.shape == () and elbo.shape == (6,) and not elbo.requires_grad
    elbo, log_px = vm.categorical_elbo_exact(model, x), vm.categorical_log_marginal(model, x)
    assert elbo.shape == log_px.shape == (6,)
    # ELBO = log p(x) - KL(q(z|x) || p(z|x)) <= log p(x), and log p(x) <= 0 for binary x
    assert bool((elbo <= log_px + 1e-5).all()) and bool((log_px <= 0).all())


# ---------------------------------------------------------------- closed forms

def test_bernoulli_log_likelihood_matches_torch_distributions():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(2)) * 5
    x = _binary(4, 10, 3)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(vm.bernoulli_log_likelihood(logits, x), expected)
    huge = vm.bernoulli_log_likelihood(torch.full((1, 3), 1e4), torch.tensor([[0.0, 1.0, 1.0]]))
    assert torch.isfinite(huge).all() and huge.item() == pytest.approx(-1e4)


def test_kl_closed_forms_match_torch_distributions():
    g = torch.Generator().manual_seed(4)
    mu, sigma = torch.randn(5, 3, generator=g), torch.rand(5, 3, generator=g) + 0.1
    expected = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(vm.gaussian_kl(mu, sigma), expected)
    logits = torch.randn(5, 3, 4, generator=g) * 3
    uniform = Categorical(logits=torch.zeros(4))
    expected = kl_divergence(Categorical(logits=logits), uniform).sum(-1)
    torch.testing.assert_close(vm.categorical_kl(logits), expected)


# ---------------------------------------------------------------- exact ELBO by enumeration

def _brute_force(model, x, q_logits):
    """log p(x), and E_q[log p(x|z)] - KL(q || p), by a plain Python loop over every code."""
    L, K = model.n_latents, model.n_categories
    log_q = torch.log_softmax(q_logits, -1)
    terms_joint, terms_elbo = [], []
    for code in itertools.product(range(K), repeat=L):
        y = F.one_hot(torch.tensor(code), K).float()
        ll = vm.bernoulli_log_likelihood(model.decode(y), x)  # (batch,)
        lq = sum(log_q[:, l, c] for l, c in enumerate(code))
        terms_joint.append(ll - L * math.log(K))
        terms_elbo.append(lq.exp() * (ll - L * math.log(K) - lq))
    return torch.logsumexp(torch.stack(terms_joint), 0), torch.stack(terms_elbo).sum(0)


@torch.no_grad()
def test_exact_elbo_matches_a_brute_force_loop_and_lies_below_log_marginal():
    """ELBO = sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)] (the definition, summed by a loop)
    = log p(x) - KL(q(z|x) || p(z|x)) <= log p(x) = logsumexp_z [log p(x|z) + log p(z)]."""
    torch.manual_seed(5)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=2, n_categories=3, n_hidden=8)
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))  # all 64 images
    log_px, elbo_loop = _brute_force(model, x, model.encode(x))
    elbo = vm.categorical_elbo_exact(model, x)
    torch.testing.assert_close(elbo, elbo_loop, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vm.categorical_log_marginal(model, x), log_px, rtol=1e-5, atol=1e-5)
    assert bool((elbo < log_px - 1e-4).all())  # a strict gap: q is not the posterior
    # A proper model sums to one over every possible image.
    assert torch.logsumexp(log_px, 0).item() == pytest.approx(0.0, abs=1e-5)


@torch.no_grad()
def test_exact_elbo_equals_log_marginal_when_q_is_the_posterior():
    """With one latent, p(z|x) is categorical with logits log p(x|z) + log p(z); with q = p(z|x),
    KL(q || p(z|x)) = 0 so the ELBO equals log p(x)."""
    torch.manual_seed(6)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=1, n_categories=4, n_hidden=8)
    x = _binary(10, 6, 7)
    y = F.one_hot(torch.arange(4), 4).float()[:, None, :]  # (K, 1, K)
    ll = vm.bernoulli_log_likelihood(model.decode(y)[:, None, :], x[None])  # (K, batch)
    posterior_logits = ll.T[:, None, :]  # (batch, 1, K); the uniform prior is a constant
    log_px = vm.categorical_log_marginal(model, x)
    torch.testing.assert_close(vm.categorical_elbo_exact(model, x, q_logits=posterior_logits), log_px)
    assert bool((vm.categorical_elbo_exact(model, x) < log_px - 1e-4).all())


# ---------------------------------------------------------------- Gaussian model by quadrature

def _quadrature(model, x, n_grid=4001):
    """For a 1-d latent: E_q[log p(x|z)] and log p(x) by the trapezoid rule on a fine grid.

    E_q[log p(x|z)] = int N(z; mu, sigma^2) log p(x|z) dz over mu +- 12 sigma;
    log p(x) = log int N(z; 0, 1) p(x|z) dz over [-12, 12]. Both are differentiable in the
    encoder's parameters through mu and sigma."""
    mu, sigma = model.encode(x)  # (batch, 1)
    t = torch.linspace(-12.0, 12.0, n_grid, dtype=torch.float64)
    z = (mu.double() + sigma.double() * t).T[..., None]  # (n_grid, batch, 1)
    ll = vm.bernoulli_log_likelihood(model.decode(z.float()).double(), x.double())  # (n_grid, batch)
    density = torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
    expected_ll = torch.trapezoid(density[:, None] * ll, t, dim=0)
    zp = t[:, None, None].expand(-1, x.shape[0], 1)
    llp = vm.bernoulli_log_likelihood(model.decode(zp.float()).double(), x.double())
    log_px = torch.logsumexp(llp + torch.log(density)[:, None], 0) + math.log(t[1] - t[0])
    return expected_ll, log_px


def test_gaussian_monte_carlo_elbo_is_unbiased_and_below_log_marginal(seed, stats):
    """gaussian_elbo averages S draws of log p(x|z) - KL, so its mean over R repeats is within
    5 standard errors of the quadrature value E_q[log p(x|z)] - KL, which lies below log p(x)."""
    setup(seed)
    model = vm.GaussianVAE(n_pixels=8, n_latent=1, n_hidden=8)
    x = _binary(4, 8, 8)
    with torch.no_grad():
        expected_ll, log_px = _quadrature(model, x)
        mu, sigma = model.encode(x)
        exact = expected_ll - vm.gaussian_kl(mu, sigma).double()
        draws = torch.stack([vm.gaussian_elbo(model, x, n_samples=50) for _ in range(40)]).double()
    stats.assert_mean(draws, exact, what="Monte Carlo ELBO")
    assert bool((exact < log_px).all())


def _encoder_grads(model, loss):
    params = list(model.encoder.parameters())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("estimator", vm.GAUSSIAN_ESTIMATORS)
def test_gaussian_encoder_gradient_is_unbiased(estimator, seed, stats):
    """Every estimator is unbiased for grad_phi [E_q log p(x|z) - KL]; the exact gradient is the
    autograd of the quadrature. Mean over R independent estimates within 5 standard errors."""
    setup(seed + 1)
    model = vm.GaussianVAE(n_pixels=8, n_latent=1, n_hidden=4)
    x = _binary(2, 8, 9)
    expected_ll, _ = _quadrature(model, x)
    mu, sigma = model.encode(x)
    exact = _encoder_grads(model, -(expected_ll - vm.gaussian_kl(mu, sigma).double()).mean()).double()
    reps = torch.stack(
        [_encoder_grads(model, vm.elbo_surrogate(model, x, estimator, n_samples=200)[0]) for _ in range(40)]
    ).double()
    stats.assert_mean(reps, exact.detach(), what=f"{estimator} encoder gradient")


def test_score_function_gradient_is_unbiased_for_categorical_latents(seed, stats):
    """For one latent, ELBO = sum_k q_k log p(x|k) - KL(q || uniform) exactly, differentiable in the
    encoder; the REINFORCE-with-LOO-baseline estimate averages to its gradient (5 standard errors),
    and so does the estimate without a baseline."""
    setup(seed + 2)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=1, n_categories=4, n_hidden=5)
    x = _binary(3, 6, 10)
    logits = model.encode(x)
    y = F.one_hot(torch.arange(4), 4).float()[:, None, :]
    ll = vm.bernoulli_log_likelihood(model.decode(y)[:, None, :], x[None])  # (K, batch)
    q = torch.softmax(logits, -1)[:, 0, :].T  # (K, batch)
    exact = _encoder_grads(model, -((q * ll).sum(0) - vm.categorical_kl(logits)).mean())
    for est in (vm.SCORE_FUNCTION_LOO, "score_function"):
        reps = torch.stack(
            [_encoder_grads(model, vm.elbo_surrogate(model, x, est, n_samples=100)[0]) for _ in range(40)]
        )
        stats.assert_mean(reps, exact.detach(), what=f"{est} encoder gradient")


def test_encoder_gradients_rows_are_surrogate_gradients(raises):
    """Row r of encoder_gradients is the autograd of the surrogate loss drawn r-th from the seed."""
    setup(5)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=2, n_categories=3, n_hidden=5)
    x = _binary(3, 6, 13)
    n_params = sum(p.numel() for p in model.encoder.parameters())
    torch.manual_seed(0)
    rows = vm.encoder_gradients(model, x, "straight_through", n_repeats=3, n_samples=2, temperature=0.5)
    assert rows.shape == (3, n_params)
    torch.manual_seed(0)
    for r in range(3):
        loss, _ = vm.elbo_surrogate(model, x, "straight_through", n_samples=2, temperature=0.5)
        torch.testing.assert_close(rows[r], _encoder_grads(model, loss))
    with raises(ValueError, "n_repeats", "0"):
        vm.encoder_gradients(model, x, "straight_through", n_repeats=0)
    with raises(TypeError, "model", "Linear"):
        vm.encoder_gradients(torch.nn.Linear(6, 2), x, "pathwise")


def test_loo_baseline_reduces_the_variance(seed, stats):
    r"""The baseline leaves the mean unchanged (above) and shrinks the spread here,
    where log p(x|z) is far from zero for every z.

    The spread is the total variance tr S of the n = 60 encoder-gradient rows. With
    q_i = |r_i - r_bar|^2 n/(n-1), tr S is the mean of the q_i, so its standard error
    is, to leading order in 1/n (as for any sample variance), std(q)/sqrt(n); the two
    estimators' rows are independent draws, so ``assert_mean_greater`` checks that the
    score function's tr S exceeds the baseline's by more than 5 standard errors of the
    difference."""
    setup(seed + 3)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=1, n_categories=4, n_hidden=5)
    x = _binary(3, 6, 11)
    q = {}
    for est in (vm.SCORE_FUNCTION_LOO, "score_function"):
        reps = torch.stack(
            [_encoder_grads(model, vm.elbo_surrogate(model, x, est, n_samples=8)[0]) for _ in range(60)]
        ).double()
        q[est] = (reps - reps.mean(0)).square().sum(1) * len(reps) / (len(reps) - 1)
    stats.assert_mean_greater(q["score_function"], q[vm.SCORE_FUNCTION_LOO],
                              "total variance tr S: score_function vs with the LOO baseline")


def test_elbo_estimates_are_unbiased_for_the_discrete_elbo(seed, stats):
    """Every categorical estimator reports the ELBO of the discrete model (one-hot samples), so
    its mean over many draws matches the exact enumerated ELBO within 5 standard errors."""
    setup(seed + 4)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=2, n_categories=3, n_hidden=8)
    x = _binary(5, 6, 12)
    exact = vm.categorical_elbo_exact(model, x)
    for est in vm.CATEGORICAL_ESTIMATORS:
        draws = torch.stack([vm.elbo_surrogate(model, x, est, n_samples=50, temperature=2.0)[1] for _ in range(30)])
        stats.assert_mean(draws, exact, what=f"{est} ELBO estimate")


def test_exact_gradient_matches_autograd_of_a_brute_force_loop():
    """The exact ELBO is a finite sum over codes, sum_z q(z|x) [log p(x|z) + log p(z) - log q(z|x)],
    each term differentiable in theta and phi; so the gradient of the loop's sum (the definition)
    must equal the gradient of the vectorised enumeration, encoder and decoder alike."""
    torch.manual_seed(15)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=2, n_categories=3, n_hidden=8)
    x = _binary(7, 6, 16)
    _, elbo_loop = _brute_force(model, x, model.encode(x))
    params = list(model.parameters())
    expected = torch.autograd.grad(-elbo_loop.mean(), params)
    got = torch.autograd.grad(vm.categorical_exact_loss(model, x, chunk=3), params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    flat = torch.cat([g.reshape(-1) for g in expected[: len(list(model.encoder.parameters()))]])
    torch.testing.assert_close(vm.exact_encoder_gradient(model, x), flat, rtol=1e-5, atol=1e-6)
    assert vm.categorical_exact_loss(model, x).item() == pytest.approx(-elbo_loop.mean().item(), abs=1e-5)


def test_exact_gradient_is_the_mean_of_the_score_function_and_not_of_a_relaxation(seed, stats):
    """REINFORCE with the leave-one-out baseline is unbiased: the mean of R independent encoder
    gradients lies within 5 standard errors of the exact gradient in every coordinate. The
    Gumbel-softmax gradient at tau = 1 differentiates a relaxed objective, not the ELBO, so the
    same test must reject it (it is the mutation this test exists to catch)."""
    torch.manual_seed(seed)
    model = vm.CategoricalVAE(n_pixels=6, n_latents=2, n_categories=3, n_hidden=5)
    x = _binary(4, 6, 17 + seed)
    exact = vm.exact_encoder_gradient(model, x).double()
    reps = {est: vm.encoder_gradients(model, x, est, n_repeats=40, n_samples=20, temperature=1.0).double()
            for est in (vm.SCORE_FUNCTION_LOO, "gumbel_softmax")}
    stats.assert_mean(reps[vm.SCORE_FUNCTION_LOO], exact, "score function + LOO encoder gradient")
    stats.assert_mean_differs(reps["gumbel_softmax"], exact, "Gumbel-softmax (tau = 1) encoder gradient")


def test_exact_gradient_bad_inputs(raises):
    model = vm.CategoricalVAE(n_pixels=6, n_latents=1, n_categories=3, n_hidden=4)
    with raises(TypeError, "model must be a CategoricalVAE", "GaussianVAE"):
        vm.exact_encoder_gradient(vm.GaussianVAE(n_pixels=6), _binary(2, 6, 0))
    with raises(ValueError, "x must hold binary pixels"):  # names no offending value
        vm.categorical_exact_loss(model, torch.full((2, 6), 0.5))
    with raises(ValueError, "chunk", "0"):
        vm.categorical_exact_loss(model, _binary(2, 6, 0), chunk=0)

# ---------------------------------------------------------------- vocabulary, baseline, training steps

def test_estimators_are_named_by_catalogue_keys():
    keys = {entry.key for entry in catalogue.ENTRIES}
    for est in vm.GAUSSIAN_ESTIMATORS + vm.CATEGORICAL_ESTIMATORS:
        assert est in keys, est


@pytest.mark.parametrize(
    "make, estimator",
    [(vm.GaussianVAE, e) for e in vm.GAUSSIAN_ESTIMATORS] + [(vm.CategoricalVAE, e) for e in vm.CATEGORICAL_ESTIMATORS],
)
def test_training_steps_lower_the_loss_on_a_fixed_batch(digits, make, estimator):
    """Twenty Adam steps on one batch raise its ELBO, measured without estimator noise: the exact
    enumerated ELBO for categorical latents, common random numbers for Gaussian ones."""
    setup(0)
    model = make(n_hidden=32)
    x = digits.x_train[:64]

    def measured():
        if isinstance(model, vm.GaussianVAE):
            return vm.gaussian_elbo(model, x, 200, generator=torch.Generator().manual_seed(0)).mean().item()
        return vm.categorical_elbo_exact(model, x).mean().item()

    before = measured()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss, _ = vm.elbo_surrogate(model, x, estimator, n_samples=4, temperature=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert measured() > before + 1.0


# ---------------------------------------------------------------- bad input

def test_bad_inputs(digits, raises):
    g, c = vm.GaussianVAE(n_hidden=8), vm.CategoricalVAE(n_hidden=8)
    x = digits.x_train[:4]
    with raises(ValueError, "estimator", "'gumbel_softmax'"):
        vm.elbo_surrogate(g, x, "gumbel_softmax")
    with raises(ValueError, "estimator", "'pathwise'"):
        vm.elbo_surrogate(c, x, "pathwise")
    with raises(TypeError, "model", "Linear"):
        vm.elbo_surrogate(torch.nn.Linear(64, 2), x, "pathwise")
    with raises(ValueError, "x must hold binary pixels"):  # names no offending value
        vm.elbo_surrogate(g, x * 0.5 + 0.25, "pathwise")
    with raises(ValueError, "x must have shape (batch, 64)", "(4, 10)"):
        vm.elbo_surrogate(g, x[:, :10], "pathwise")
    with raises(TypeError, "x must be a torch.Tensor", "ndarray"):
        vm.elbo_surrogate(g, x.numpy(), "pathwise")
    with raises(ValueError, "n_samples", "0"):
        vm.elbo_surrogate(g, x, "pathwise", n_samples=0)
    with raises(ValueError, "estimator", "'score function'"):
        vm.elbo_surrogate(g, x, "score function", n_samples=4)  # a label, not a catalogue key
    with raises(ValueError, "n_samples >= 2", "n_samples=1"):
        vm.elbo_surrogate(c, x, vm.SCORE_FUNCTION_LOO, n_samples=1)
    with raises(ValueError, "temperature", "0.0"):
        vm.elbo_surrogate(c, x, "gumbel_softmax", temperature=0.0)
    with raises(TypeError, "temperature", "'hot'"):
        vm.elbo_surrogate(c, x, "gumbel_softmax", temperature="hot")
    with raises(ValueError, "n_categories**n_latents", "MAX_ENUMERATION", "1000000"):
        vm.categorical_elbo_exact(vm.CategoricalVAE(n_latents=6, n_categories=10, n_hidden=4), x)
    with raises(ValueError, "q_logits", "(4, 3, 9)"):
        vm.categorical_elbo_exact(c, x, q_logits=torch.zeros(4, 3, 9))
    with raises(TypeError, "model must be a GaussianVAE", "CategoricalVAE"):
        vm.gaussian_elbo(c, x)
    with raises(TypeError, "model must be a CategoricalVAE", "GaussianVAE"):
        vm.categorical_log_marginal(g, x)
    with raises(ValueError, "z must end", "(3, 5)"):
        g.decode(torch.zeros(3, 5))
    with raises(ValueError, "y must end", "(3, 3, 9)"):
        c.decode(torch.zeros(3, 3, 9))
    with raises(ValueError, "n_categories", "1"):
        vm.CategoricalVAE(n_categories=1)
    with raises(TypeError, "n_latent", "2.0"):
        vm.GaussianVAE(n_latent=2.0)

