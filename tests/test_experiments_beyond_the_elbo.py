r"""Chapter 10's experiment code: closed forms, the batched VAEs' estimators, training.

The conjugate model's closed forms are derived in ``tests/test_multisample.py``'s
module docstring: posterior :math:`N(x/2, 1/2)`, evidence :math:`N(x; 0, 2)`,
:math:`\mathcal L_1(m, s)` and its gradient :math:`(x - 2m, 1 - 2s^2)`.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from companion import catalogue
from companion.multisample import elbo_gradient
from companion.experiments import beyond_the_elbo as be
from companion.experiments.vae_models import bernoulli_log_likelihood
from companion.experiments.vae_seeds import _mlp

X = be.CONJUGATE_X
VIMCO, SF_LOO = "elbo_gradient[score]", "score_function[baseline='loo']"


# -- conjugate model ---------------------------------------------------------------------------


def test_elbo_closed_form_gradient_matches_finite_differences():
    m, ls, h = 0.2, -0.3, 1e-6
    gm = (be.conjugate_elbo(m + h, ls) - be.conjugate_elbo(m - h, ls)) / (2 * h)
    gs = (be.conjugate_elbo(m, ls + h) - be.conjugate_elbo(m, ls - h)) / (2 * h)
    assert (gm, gs) == pytest.approx(be.conjugate_elbo_gradient(m, ls), abs=1e-6)


def test_elbo_at_posterior_is_the_evidence():
    r"""At :math:`q = p(z \mid x)` the KL to the posterior is zero, so :math:`\mathcal L_1 = \log p(x)`."""
    post = be.conjugate_posterior_params(dtype=torch.float64)
    assert be.conjugate_elbo(float(post[0]), float(post[1])) == pytest.approx(be.conjugate_log_evidence(), abs=1e-12)
    assert be.conjugate_elbo_gradient(float(post[0]), float(post[1])) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_log_joint_integrates_to_the_evidence():
    """Quadrature of exp(log_joint) over z gives p(x) = N(x; 0, 2)."""
    from scipy import integrate

    lj = be.conjugate_log_joint()
    value, _ = integrate.quad(lambda z: math.exp(float(lj(torch.tensor(z, dtype=torch.float64)))), -30, 30)
    assert math.log(value) == pytest.approx(be.conjugate_log_evidence(), abs=1e-9)


def test_weight_variance(seed, stats):
    r""":math:`V = \operatorname{Var}_q[p(z\mid x)/q(z)]` by quadrature vs a Monte Carlo variance.

    The Monte Carlo variance's standard error uses the sample fourth central moment
    (finite here: :math:`\mathbb E_q r^4 < \infty` needs :math:`s^2 > 3/8`, and :math:`s^2 = e^{-0.6} \approx 0.55`).
    At the posterior :math:`V = 0`."""
    theta = torch.tensor([0.2, -0.3], dtype=torch.float64)
    v = be.conjugate_weight_variance(theta)
    q = be.conjugate_q(theta)
    z = q.sample((400_000,))
    post = torch.distributions.Normal(torch.tensor(X / 2, dtype=torch.float64), math.sqrt(0.5))
    r = (post.log_prob(z) - q.log_prob(z)).exp()
    stats.assert_var(r, v, stats.sample_mu4(r), "weight variance")
    assert be.conjugate_weight_variance(be.conjugate_posterior_params(dtype=torch.float64)) == pytest.approx(0, abs=1e-9)
    assert be.conjugate_weight_variance(torch.tensor([0.0, math.log(0.4)])) == math.inf


def test_snr(raises):
    est = torch.tensor([[1.0, 2.0, 5.0], [3.0, 2.0, -5.0]])
    out = be.snr(est)
    assert out[0] == pytest.approx(2.0 / math.sqrt(2.0))
    assert math.isnan(float(out[1]))
    assert float(out[2]) == pytest.approx(0.0)
    with raises(ValueError, "estimates", "(1, 3)"):
        be.snr(torch.ones(1, 3))
    with raises(TypeError, "estimates", "list"):
        be.snr([[1.0], [2.0]])


def test_snr_of_the_mean_at_k1_on_the_conjugate_model(seed, stats):
    r"""k = 1, :math:`z = m + s\varepsilon`: the reparameterized :math:`\partial_m` estimate is
    :math:`x - 2z = (x - 2m) - 2s\varepsilon`, SNR :math:`|x - 2m|/(2s)`; DReG (STL at k = 1)
    adds the path term :math:`(z - m)/s^2 = \varepsilon/s`, so its SNR is
    :math:`|x - 2m|/|1/s - 2s|`. Both are Gaussian, so the sample SNR has standard error
    :math:`\sqrt{(1 + \mathrm{SNR}^2/2)/n}` (delta method)."""
    m, log_s, n = 0.2, -0.3, 20_000
    s = math.exp(log_s)
    params = torch.tensor([m, log_s], dtype=torch.float64)
    for gradient, exact in [("reparam", abs(X - 2 * m) / (2 * s)), ("dreg", abs(X - 2 * m) / abs(1 / s - 2 * s))]:
        est = elbo_gradient(be.conjugate_log_joint(), be.conjugate_q, params, n, 1, gradient)
        se = math.sqrt((1 + exact**2 / 2) / n)
        stats.assert_within(float(be.snr(est)[0]), exact, se, f"{gradient} SNR of d/dm at k=1", n=n)


# -- Gaussian VAE ------------------------------------------------------------------------------


def _tiny_gaussian(s=2, seed_offset=0):
    return be.init_gaussian_vae([seed_offset + i for i in range(s)], n_latent=2, n_hidden=5, n_pixels=6)


def _images(b=3, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, generator=g) > 0.5).float()


def test_init_is_per_seed():
    p = be.init_gaussian_vae([0, 1, 0], n_hidden=8)
    assert torch.equal(p["encoder.0.w"][0], p["encoder.0.w"][2]) and not torch.equal(p["encoder.0.w"][0], p["encoder.0.w"][1])
    assert p["decoder.2.w"].shape == (3, 8, 64) and p["encoder.2.b"].shape == (3, 1, 8)


def test_params_have_chapter_9s_stacked_layout():
    """Slice s of ``"encoder.0.w"`` is ``(n_in, n_out)`` (a Linear weight transposed), the
    biases ``(1, n_out)``: the stacked MLP of ``vae_seeds`` is ``tanh(x W0 + b0) W2 + b2``."""
    p, x = be.init_categorical_vae([0, 1], n_latents=2, n_categories=3, n_hidden=5), _images(b=4, n=64)
    out = _mlp(p, "encoder", x.expand(2, *x.shape))
    for s in range(2):
        h = torch.tanh(x @ p["encoder.0.w"][s] + p["encoder.0.b"][s])
        torch.testing.assert_close(out[s], h @ p["encoder.2.w"][s] + p["encoder.2.b"][s])
    assert [n for n in p] == [f"{net}.{i}.{t}" for net in ("encoder", "decoder") for i in (0, 2) for t in "wb"]


def test_log_weights_match_torch_distributions():
    r""":math:`\log w = \log\operatorname{Bern}(x; \sigma(\ell(z))) + \log N(z; 0, I) - \log N(z; \mu, \sigma^2)`, term by term."""
    p, x = _tiny_gaussian(1), _images()
    torch.manual_seed(0)
    log_w, z = be.gaussian_log_weights(p, x, 4)
    mu, sigma = be._encode_gaussian(p, x.expand(1, *x.shape))
    logits = _mlp(p, "decoder", z.reshape(1, -1, 2)).reshape(1, 4, 3, 6)
    D = torch.distributions
    ref = (D.Bernoulli(logits=logits).log_prob(x).sum(-1) + D.Normal(0.0, 1.0).log_prob(z).sum(-1)
           - D.Normal(mu.unsqueeze(1), sigma.unsqueeze(1)).log_prob(z).sum(-1))
    torch.testing.assert_close(log_w, ref)


def test_dreg_decoder_gradient_equals_reparam_and_encoder_matches_formula():
    r"""With the same noise, the decoder's gradient is the IWAE one under both estimators,
    :math:`\sum_j \tilde w_j \nabla_\theta \log p_\theta(x, z_j)`; the encoder's under
    ``"dreg"`` equals autograd of :math:`\sum_j \operatorname{sg}(\tilde w_j^2)\log w_j`
    with :math:`\log q`'s parameters stopped (the formula of :cite:t:`tucker2019`)."""
    x, k = _images(), 4
    grads = {}
    for g in ["reparam", "dreg"]:
        p = _tiny_gaussian()
        torch.manual_seed(5)
        loss, _ = be.gaussian_surrogate(p, x, k, g)
        loss.backward()
        grads[g] = {n: t.grad.clone() for n, t in p.items()}
    for n in ["decoder.0.w", "decoder.0.b", "decoder.2.w", "decoder.2.b"]:
        torch.testing.assert_close(grads["dreg"][n], grads["reparam"][n])
    p = _tiny_gaussian()
    torch.manual_seed(5)
    log_w, _ = be.gaussian_log_weights(p, x, k, stop_q=True)
    w = torch.softmax(log_w.detach(), 1)
    ref = -(w.square() * log_w).sum(1).mean(1).sum()
    enc = [p[n] for n in ["encoder.0.w", "encoder.0.b", "encoder.2.w", "encoder.2.b"]]
    expected = torch.autograd.grad(ref, enc)
    for n, e in zip(["encoder.0.w", "encoder.0.b", "encoder.2.w", "encoder.2.b"], expected):
        torch.testing.assert_close(grads["dreg"][n], e)
    assert not torch.allclose(grads["dreg"]["encoder.2.w"], grads["reparam"]["encoder.2.w"])


def test_per_slice_k_uses_the_first_k_draws(raises):
    p, x = _tiny_gaussian(), _images()
    torch.manual_seed(2)
    log_w, _ = be.gaussian_log_weights(p, x, 3)
    torch.manual_seed(2)
    _, bound = be.gaussian_surrogate(p, x, [1, 3], ["reparam", "dreg"])
    torch.testing.assert_close(bound[0], log_w[0, 0])
    torch.testing.assert_close(bound[1], torch.logsumexp(log_w[1], 0) - math.log(3))
    with raises(ValueError, "k must be one value or one per slice", "got 3"):
        be.gaussian_surrogate(p, x, [1, 2, 3], "reparam")
    with raises(ValueError, "gradient", "'stl'"):
        be.gaussian_surrogate(p, x, 2, "stl")


@pytest.mark.parametrize("k", [1, 5])
def test_dreg_and_reparam_encoder_gradients_agree_in_mean(k, seed, stats):
    """Both are unbiased for the encoder's gradient of L_k (k = 1: DReG is STL)."""
    p, x = _tiny_gaussian(1), _images()
    a = be.gradient_estimates(p, x, k, "reparam", 4000)
    b = be.gradient_estimates(p, x, k, "dreg", 4000)
    assert a.shape == b.shape == (4000, 6 * 5 + 5 + 5 * 4 + 4)
    stats.assert_same_mean(a, b, f"encoder gradient k={k}")
    d = be.gradient_estimates(p, x, k, "reparam", 10, part="decoder")
    assert d.shape == (10, 2 * 5 + 5 + 5 * 6 + 6)


def test_iwae_eval_chunks_and_bounds():
    """Chunked evaluation equals one pass with the same noise; L_k rises toward log p(x) with k."""
    p, x = _tiny_gaussian(1), _images(b=4)
    a = be.gaussian_iwae(p, x, 6, chunk=2, seed=3)
    assert a.shape == (1, 4)
    torch.testing.assert_close(a, be.gaussian_iwae(p, x, 6, chunk=6, seed=3))
    l1 = be.gaussian_iwae(p, x, 1, seed=1).mean()
    l200 = be.gaussian_iwae(p, x, 200, seed=1).mean()
    assert float(l200) > float(l1)


# -- categorical VAE ---------------------------------------------------------------------------


def _tiny_cat(s=1):
    """A tiny categorical VAE whose decoder depends strongly on the code and whose q is far from uniform."""
    p = be.init_categorical_vae(list(range(s)), n_latents=1, n_categories=3, n_hidden=5, n_pixels=6)
    with torch.no_grad():
        p["decoder.0.w"].mul_(6.0)
        p["decoder.2.w"].mul_(4.0)
        p["encoder.2.b"].copy_(torch.tensor([1.5, 0.0, -1.0]))
    return p


def _exact_cat(p, x, k):
    r"""Exact :math:`\mathcal L_k` (enumerating :math:`3^k` tuples) and ELBO of one image, differentiable."""
    logits = _mlp(p, "encoder", x.reshape(1, 1, -1)).reshape(3)
    log_q = torch.log_softmax(logits, -1)
    y = F.one_hot(torch.arange(3), 3).float().reshape(1, 3, 3)
    ll = bernoulli_log_likelihood(_mlp(p, "decoder", y), x.reshape(1, 1, -1)).reshape(3)
    log_w = ll - math.log(3) - log_q
    bound = 0.0
    for combo in itertools.product(range(3), repeat=k):
        idx = torch.tensor(combo)
        bound = bound + log_q[idx].sum().exp() * (torch.logsumexp(log_w[idx], 0) - math.log(k))
    elbo = (log_q.exp() * ll).sum() - (log_q.exp() * (log_q + math.log(3))).sum()
    return bound, elbo, torch.logsumexp(ll, 0) - math.log(3)


@pytest.mark.parametrize("gradient", [VIMCO, SF_LOO])
def test_categorical_estimators_unbiased_against_enumeration(gradient, seed, stats):
    r"""VIMCO's mean is :math:`\nabla\mathcal L_k` and the score function's (LOO) is
    :math:`\nabla\mathcal L_1` (exact ELBO), both computed by autograd through the
    enumeration in :func:`_exact_cat`, for every encoder and decoder weight."""
    p, x, k, n = _tiny_cat(), _images(b=1)[0], 3, 6000
    bound, elbo, _ = _exact_cat(p, x, k)
    names = list(p)
    exact = torch.autograd.grad(bound if gradient == VIMCO else elbo, [p[m] for m in names])
    exact = torch.cat([e.reshape(-1) for e in exact])
    copies = {m: t.detach().expand(n, *t.shape[1:]).clone().requires_grad_() for m, t in p.items()}
    loss, _ = be.categorical_surrogate(copies, x[None], k, gradient, n_latents=1, n_categories=3)
    grads = torch.autograd.grad(loss, [copies[m] for m in names])
    est = -torch.cat([g.reshape(n, -1) for g in grads], 1)
    stats.assert_mean(est, exact.detach().numpy(), f"{gradient} vs enumeration")


def test_categorical_exact_quantities(raises):
    p, x = _tiny_cat(), _images(b=2)
    lp = be.categorical_log_marginal(p, x, n_latents=1, n_categories=3)
    el = be.categorical_elbo(p, x, n_latents=1, n_categories=3)
    for i in range(2):
        _, elbo, log_px = _exact_cat(p, x[i], 1)
        assert float(lp[0, i]) == pytest.approx(float(log_px.detach()), abs=1e-5)
        assert float(el[0, i]) == pytest.approx(float(elbo.detach()), abs=1e-5)
    assert bool((lp >= el - 1e-6).all())
    with raises(ValueError, "k must be >= 2", "got 1"):
        be.categorical_surrogate(p, x, 1, VIMCO, n_latents=1, n_categories=3)


def test_categorical_gradients_are_catalogue_keys(raises):
    """One vocabulary: the categorical VAE's estimators are named by catalogue keys, and
    the old private names are refused with the argument named."""
    assert [catalogue.by_key(g).key for g in be.CATEGORICAL_GRADIENTS] == [VIMCO, SF_LOO]
    p, x = _tiny_cat(), _images(b=2)
    for old in ("vimco", "score_function"):
        with raises(ValueError, "gradient", repr(old)):
            be.categorical_surrogate(p, x, 3, old, n_latents=1, n_categories=3)


# -- training ----------------------------------------------------------------------------------


def test_train_pairs_groups_and_is_deterministic(raises):
    """With ``n_groups=2`` slice s of each group sees the same minibatches: a deterministic
    loss then gives identical parameters in both groups; the same seed repeats the run."""
    x = _images(b=20)

    def loss_fn(p, xb):
        target = xb.mean(1)  # (S, 6)
        per = (p["w"] - target).square().sum(-1)
        return per.sum(), -per.unsqueeze(1)

    def run(groups):
        p = {"w": torch.zeros(4, 6, requires_grad=True)}
        return be.train(p, x, loss_fn, 20, batch_size=3, lr=0.1, log_every=5, n_groups=groups)

    r = run(2)
    torch.testing.assert_close(r.params["w"][:2], r.params["w"][2:])
    assert r.curve.shape == (4, 4)
    torch.testing.assert_close(run(2).params["w"], r.params["w"])
    assert not torch.allclose(run(1).params["w"][:2], run(1).params["w"][2:])
    with raises(ValueError, "n_groups=3"):
        run(3)


def test_categorical_vimco_signal_is_the_geometric_mean_substitute(monkeypatch, seed):
    r"""The VAE's VIMCO learning signal, pinned to :cite:t:`mnih2016`'s formula.

    With the parts :math:`(\log p_\theta(x \mid z_j), \log q(z_j))` fixed, the loss is
    :math:`-\frac1B\sum_b[\hat{\mathcal L}_k + \sum_j(\hat{\mathcal L}_k - b_j)\log q(z_j)]`
    with :math:`\hat{\mathcal L}_k` depending on :math:`\log q(z_j)` through
    :math:`\log w_j = \log p_\theta(x\mid z_j) + \log p(z_j) - \log q(z_j)`, so
    :math:`\partial\,\mathrm{loss}/\partial\log q(z_j) = -\frac1B(\hat{\mathcal L}_k
    - b_j - \tilde w_j)`, with
    :math:`b_j = \log\frac1k(\sum_{l\ne j} w_l + \exp\frac1{k-1}\sum_{l\ne j}\log w_l)`.
    Unbiasedness (above) holds for any baseline free of :math:`z_j`; this pins the formula."""
    s, k, b, n_lat, n_cat = 1, 4, 3, 2, 8
    g = torch.Generator().manual_seed(seed)
    ll = -5 * torch.rand(s, k, b, generator=g, dtype=torch.float64)
    log_q = (-3 * torch.rand(s, k, b, generator=g, dtype=torch.float64)).requires_grad_()
    log_q_all = torch.log_softmax(torch.randn(s, b, n_lat, n_cat, generator=g, dtype=torch.float64), -1)
    monkeypatch.setattr(be, "_categorical_parts", lambda *a: (ll, log_q, log_q_all))
    p = {"encoder.0.w": torch.zeros(s, 1, 1)}
    loss, _ = be.categorical_surrogate(p, torch.zeros(b, 64), k, VIMCO, n_lat, n_cat)
    (got,) = torch.autograd.grad(loss, log_q)
    log_w = (ll - n_lat * math.log(n_cat) - log_q).detach()
    bound = torch.logsumexp(log_w, 1) - math.log(k)
    base = torch.empty_like(log_w)
    for j in range(k):
        others = torch.cat([log_w[:, :j], log_w[:, j + 1 :]], 1)
        base[:, j] = torch.logaddexp(torch.logsumexp(others, 1), others.mean(1)) - math.log(k)
    want = -(bound[:, None] - base - torch.softmax(log_w, 1)) / b
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
