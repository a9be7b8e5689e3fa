r"""Chapter 7's experiment code: the exact ELBO by enumeration, and the estimators on it.

Facts used:

* For independent Bernoulli latents, :math:`q(b \mid x) = \prod_j \sigma(\ell_j)^{b_j}
  \sigma(-\ell_j)^{1-b_j}`, and the ELBO is :math:`\sum_b q(b \mid x)\,[\log p(x \mid b) +
  \log p(b) - \log q(b \mid x)]`, a finite sum over the :math:`2^d` codes; it is at most
  :math:`\log p(x) = \log \sum_b p(b)\,p(x \mid b)`, with equality iff
  :math:`q(b \mid x) = p(b \mid x)`.
* An unbiased estimator's mean over many independent estimates lies within 5 standard
  errors of the exact gradient.
"""

from __future__ import annotations

import math

import pytest
import torch

from companion import catalogue
from companion import stats as stats_module
from companion.experiments import unbiased_discrete as U

torch.set_num_threads(1)

#: The chapter's score function: always with the leave-one-out baseline, so named by that key.
SF_LOO = "score_function[baseline='loo']"


def tiny(d=3, seeds=2, batch=4, seed=0):
    m = U.init_vae(seeds, d, seed=seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 7)
        m.w_enc.add_(0.2 * torch.randn(m.w_enc.shape, generator=g))  # logits of size ~1, no rare events
        m.w_dec.add_(torch.randn(m.w_dec.shape, generator=g))
    x = (torch.rand(batch, 64, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    return m, x


def brute_force_elbo(m, x, s, i):
    """The ELBO of image i under model s, one code at a time (module docstring)."""
    d = m.w_enc.shape[2]
    logits = x[i] @ m.w_enc[s] + m.c_enc[s]
    total = 0.0
    for code in U.all_codes(d):
        log_q = (code * torch.nn.functional.logsigmoid(logits)
                 + (1 - code) * torch.nn.functional.logsigmoid(-logits)).sum()
        a = code @ m.w_dec[s] + m.c_dec[s]
        ll = torch.distributions.Bernoulli(logits=a).log_prob(x[i]).sum()
        total += log_q.exp() * (ll - d * math.log(2) - log_q)
    return total


def log_marginal(m, x, s, i):
    d = m.w_enc.shape[2]
    codes = U.all_codes(d)
    a = codes @ m.w_dec[s] + m.c_dec[s]
    ll = torch.distributions.Bernoulli(logits=a).log_prob(x[i]).sum(-1)
    return torch.logsumexp(ll - d * math.log(2), 0)


def test_exact_elbo_matches_brute_force_and_is_a_bound():
    m, x = tiny()
    with torch.no_grad():
        elbo = U.exact_elbo(m, x)
        assert elbo.shape == (2, 4)
        for s in range(2):
            for i in range(4):
                assert math.isclose(elbo[s, i].item(), brute_force_elbo(m, x, s, i).item(), rel_tol=1e-4)
                assert elbo[s, i].item() <= log_marginal(m, x, s, i).item() + 1e-4


def test_one_batch_per_model_matches_each_model_alone():
    """x of shape (S, B, 64) gives model s the batch x[s] only (as training uses it)."""
    m, _ = tiny()
    xs = (torch.rand(2, 4, 64, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    with torch.no_grad():
        elbo = U.exact_elbo(m, xs)
        for s in range(2):
            assert torch.allclose(elbo[s], U.exact_elbo(m, xs[s])[s], atol=1e-5)
    g3 = U.encoder_gradient("exact", m, xs, 0)
    for s in range(2):
        assert torch.allclose(g3[0, s], U.encoder_gradient("exact", m, xs[s], 0)[0, s], atol=1e-5)


@pytest.mark.parametrize("name", [SF_LOO, "arm", "disarm", "rebar"])
def test_unbiased_encoder_gradient_on_the_vae(name, seed, stats):
    """Mean of 4000 independent estimates within 5 SE of the enumerated encoder gradient."""
    m, _ = tiny()
    x = (torch.rand(2, 4, 64, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    exact = U.encoder_gradient("exact", m, x, 0)
    est = U.encoder_gradient(name, m, x, 2, reps=4000)
    assert est.shape == (4000,) + exact.shape[1:]
    stats.assert_mean(est.reshape(4000, -1), exact.reshape(-1), what=f"{name} on the VAE")


def test_straight_through_is_biased_on_the_vae(seed, stats):
    """Straight-through's mean is measurably off the exact gradient (so the check above has
    teeth): more than 10 standard errors off in some coordinate."""
    m, x = tiny()
    exact = U.encoder_gradient("exact", m, x, 0).reshape(-1)
    est = U.encoder_gradient("straight_through", m, x, 2, reps=4000).reshape(4000, -1)
    stats.assert_mean_differs(est, exact, what="straight-through on the VAE", z=10)


def test_toy_estimators_are_unbiased(seed, stats):
    theta = torch.tensor([-2.0, 0.5, 1.5])
    for name in (SF_LOO, "arm", "disarm"):
        g = U.estimate(name, U.toy_f(0.45), theta, 100_000)
        stats.assert_mean(g, U.toy_exact(theta, 0.45), what=name)


def test_gradient_quality_measures_a_known_bias(seed, stats):
    r"""Estimates :math:`g + (0.5, 0) + 0.01\varepsilon` with :math:`\lVert g\rVert = 5`, n = 10^4:
    relative bias 0.1 (SE of the first coordinate's mean over :math:`\lVert g\rVert`,
    :math:`10^{-4}/5`), noise floor :math:`\sqrt{2\cdot 10^{-4}/n}/5`, relative variance
    :math:`2\cdot 10^{-4}/25` (SE: two sample variances, :math:`10^{-4}\sqrt{2/(n-1)}` each,
    over 25)."""
    n = 10_000
    exact = torch.tensor([[[3.0, 4.0]]])  # norm 5
    est = exact + torch.tensor([0.5, 0.0]) + 0.01 * torch.randn(n, 1, 2)
    q = U.gradient_quality(est, exact)
    stats.assert_within(q.rel_bias.item(), 0.1, 1e-4 / 5, "relative bias", n=n)
    assert q.noise_floor.item() == pytest.approx(math.sqrt(2e-4 / n) / 5, rel=0.05)
    assert q.cosine.item() > 0.99
    stats.assert_within(q.rel_var.item(), 2e-4 / 25, 1e-4 * math.sqrt(4 / (n - 1)) / 25, "relative variance", n=n)


def test_gradient_quality_shares_stats_gradient_error(seed):
    """Noise floor and relative variance are companion.stats.gradient_error's, per seed;
    the raw bias is the corrected one with the floor added back (when not clipped)."""
    exact = torch.randn(1, 3, 5)
    est = exact + 0.2 + 0.3 * torch.randn(50, 3, 5)
    q = U.gradient_quality(est, exact)
    assert q.rel_bias.shape == q.cosine.shape == (3,) and len(q.errors) == 3
    for s in range(3):
        e = stats_module.gradient_error(est[:, s], exact[0, s])
        assert q.errors[s] == e
        assert q.noise_floor[s].item() == pytest.approx(e.noise_floor, rel=1e-12)
        assert q.rel_var[s].item() == pytest.approx(e.relative_variance, rel=1e-12)
        raw = math.sqrt(e.relative_bias**2 + e.noise_floor**2)
        assert q.rel_bias[s].item() == pytest.approx(raw, rel=1e-9)


def test_max_z_counts_standard_errors(seed):
    """Mean exactly 0.3 off in coordinate 1 with SE 0.1: z = 3 there, 0 in coordinate 0."""
    base = torch.randn(400, 2)
    base = (base - base.mean(0)) / base.std(0) * 2.0  # mean 0, sd 2: SE 0.1
    exact = torch.tensor([0.0, -0.3])
    assert U.max_z(base, exact) == pytest.approx(3.0, rel=1e-5)
    assert U.max_z(base, torch.zeros(2)) == pytest.approx(0.0, abs=1e-5)


def test_bad_arguments_are_named(raises):
    m, x = tiny()
    f = U.toy_f(0.4)
    with raises(ValueError, "name", "'nope'"):
        U.n_for_budget("nope", 10)
    with raises(TypeError, "budget", "2.5"):
        U.n_for_budget("arm", 2.5)
    with raises(ValueError, "name", "'nope'"):
        U.train_binary_vae("nope", 10, 6)
    with raises(ValueError, "name", "'relax'"):
        U.train_binary_vae("relax", 10, 6)
    with raises(ValueError, "steps", "0"):
        U.train_binary_vae("arm", 0, 6)
    with raises(ValueError, "lr", "-1.0"):
        U.train_binary_vae("arm", 10, 6, lr=-1.0)
    with raises(ValueError, "seeds", "0"):
        U.init_vae(0)
    with raises(ValueError, "d", "0"):
        U.init_vae(2, d=0)
    with raises(TypeError, "t", "'a'"):
        U.toy_f("a")
    with raises(ValueError, "t", "nan"):
        U.toy_f(float("nan"))
    with raises(ValueError, "d", "0"):
        U.all_codes(0)
    with raises(ValueError, "name", "'nope'"):
        U.encoder_gradient("nope", m, x, 2)
    with raises(TypeError, "m", "tuple"):
        U.encoder_gradient("arm", tuple(m), x, 2)
    with raises(ValueError, "x", "(4, 63)"):
        U.encoder_gradient("arm", m, x[:, :63], 2)
    with raises(ValueError, "n", "0"):
        U.encoder_gradient("arm", m, x, 0)
    with raises(ValueError, "reps", "0"):
        U.encoder_gradient("arm", m, x, 2, reps=0)
    with raises(ValueError, "control", "None"):
        U.encoder_gradient("relax", m, x, 2)
    with raises(ValueError, "control", "None"):
        U.estimate("relax", f, torch.zeros(1), 2)
    with raises(ValueError, "logits", "nan"):
        U.estimate("arm", f, torch.tensor([float("nan")]), 2)
    with raises(ValueError, "x", "NaN"):
        U.exact_elbo(m, x * float("nan"))
    with raises(TypeError, "x", "list"):
        U.exact_elbo(m, x.tolist())
    with raises(TypeError, "logits", "list"):
        U.neg_kl([0.0])
    with raises(ValueError, "logits", "inf"):
        U.neg_kl(torch.tensor([float("inf")]))
    exact = torch.ones(1, 2, 3)
    with raises(ValueError, "estimates", "(2, 3)"):
        U.gradient_quality(torch.ones(2, 3), exact)
    with raises(ValueError, "exact", "(1, 2, 3)"):
        U.gradient_quality(torch.ones(5, 2, 3), torch.ones(2, 3))
    with raises(ValueError, "estimates", "NaN"):
        U.gradient_quality(torch.full((5, 2, 3), float("nan")), exact)
    with raises(ValueError, "exact", "(2,)"):
        U.max_z(torch.ones(5, 3), torch.ones(2))


def test_budget_sets_the_number_of_samples():
    assert [U.n_for_budget(n, 6) for n in (SF_LOO, "arm", "rebar")] == [6, 3, 2]
    with pytest.raises(ValueError, match="too small"):
        U.n_for_budget(SF_LOO, 1)
    with pytest.raises(ValueError, match="name must be one of"):
        U.estimate("nope", U.toy_f(0.4), torch.zeros(1), 2)


def test_estimators_are_named_by_catalogue_keys():
    """One vocabulary: every name is a catalogue key, and the bare "score_function" (no
    baseline) is not one of this chapter's estimators."""
    assert set(U.COST) == set(U.NAMES)
    assert [catalogue.by_key(name).key for name in U.NAMES] == list(U.NAMES)
    assert SF_LOO in U.NAMES and "score_function" not in U.NAMES
    with pytest.raises(ValueError, match="got 'score_function'"):
        U.estimate("score_function", U.toy_f(0.4), torch.zeros(1), 2)


def test_score_function_uses_the_leave_one_out_baseline():
    """With f = 1 everywhere the LOO baseline removes f exactly: every estimate is zero
    (a plain score function would give b - p, not zero)."""
    g = U.estimate(SF_LOO, lambda b: torch.ones_like(b), torch.tensor([0.3, -1.0]), 5)
    assert g.shape == (5, 2) and torch.equal(g, torch.zeros(5, 2))


def test_all_codes_enumerates_every_code_once_in_order():
    codes = U.all_codes(3)
    assert codes.dtype == torch.get_default_dtype() and codes.shape == (8, 3)
    assert codes.tolist()[:3] == [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert len({tuple(c) for c in codes.tolist()}) == 8


def test_training_raises_the_exact_elbo():
    run = U.train_binary_vae("disarm", 40, 6, seeds=2, d=4, batch=16, lr=0.03, eval_every=20)
    assert run.elbo.shape == (3, 2) and run.steps == [0, 20, 40]
    assert (run.elbo[-1] > run.elbo[0] + 1.0).all()


def test_relax_control_training_lowers_the_mean_square(seed):
    theta = torch.tensor([-1.0, 0.0, 2.0])
    control, history = U.train_control(U.toy_f(0.499), theta, steps=60, n=64)
    first, last = sum(history[:10]) / 10, sum(history[-10:]) / 10
    assert last < first
