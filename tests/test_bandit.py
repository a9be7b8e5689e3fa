"""Tests of companion.experiments.bandit: the policy-gradient estimates against exact enumeration.

For a softmax policy over K arms, J(theta) = sum_a pi(a) mu_a is a finite sum, so
its gradient and the moments of the REINFORCE estimator can be computed exactly by
enumerating the arms; the Monte Carlo checks compare against those with a
tolerance of 5 standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical

from companion.experiments.bandit import (
    BernoulliBandit,
    _reinforce,
    exact_policy_gradient,
    expected_reward,
    train_reinforce,
)
from companion.estimators import score_function

Z = 5.0
PROBS = torch.tensor([0.1, 0.5, 0.3, 0.9], dtype=torch.float64)
LOGITS = torch.tensor([0.3, -0.2, 1.0, -0.7], dtype=torch.float64)


def _bandit(offset: float = 0.0) -> BernoulliBandit:
    return BernoulliBandit(PROBS, offset=offset)


def _policy(theta: torch.Tensor) -> Categorical:
    return Categorical(logits=theta)


def _reinforce_estimates(bandit, n, baseline=None, seed=0) -> torch.Tensor:
    """REINFORCE on the bandit as chapter 2 runs it: the library's score function, with the
    reward of each pulled arm as f (pull draws its noise from torch's global generator)."""
    torch.manual_seed(seed)
    return score_function(bandit.pull, _policy, LOGITS, n, baseline=baseline)


def test_exact_gradient_matches_autograd_of_enumerated_objective():
    """d J / d theta_k = pi_k (mu_k - J): the chain rule through the softmax,
    d pi_a / d theta_k = pi_a (1[a=k] - pi_k), summed against mu_a. Autograd of the
    enumerated J must agree to rounding."""
    bandit = _bandit(offset=2.5)
    theta = LOGITS.clone().requires_grad_(True)
    J = expected_reward(theta, bandit)
    (auto,) = torch.autograd.grad(J, theta)
    torch.testing.assert_close(exact_policy_gradient(LOGITS, bandit), auto)
    # Shifting all rewards by a constant leaves the gradient unchanged (sum_k pi_k (1 - 1) = 0).
    torch.testing.assert_close(exact_policy_gradient(LOGITS, _bandit(0.0)), auto)


def test_pull_gives_bernoulli_rewards_plus_offset():
    """E[r | a] = c + q_a with standard error sqrt(q_a (1 - q_a) / n)."""
    bandit = _bandit(offset=-1.0)
    n = 100_000
    g = torch.Generator().manual_seed(2)
    for arm in range(4):
        r = bandit.pull(torch.full((n,), arm), generator=g)
        assert set(r.unique().tolist()) <= {-1.0, 0.0}
        q = float(PROBS[arm])
        assert abs(float(r.mean()) - (q - 1.0)) < Z * math.sqrt(q * (1 - q) / n) + 1e-12


@pytest.mark.parametrize("baseline", [None, 3.0, "loo"])
def test_reinforce_is_unbiased_for_the_exact_policy_gradient(baseline):
    """E[(r - b)(e_a - pi)] = sum_a pi_a (mu_a - b)(e_a - pi) = pi * (mu - J), because
    E[e_a - pi] = 0 kills any b independent of a. The tolerance is 5 standard errors
    of the mean of the per-sample estimates (the LOO estimates are exchangeable but
    correlated; their mean is still unbiased, and with n large their correlation
    is O(1/n), so the iid standard error is accurate)."""
    bandit = _bandit(offset=2.0)
    n = 200_000
    est = _reinforce_estimates(bandit, n, baseline=baseline, seed=3)
    assert est.shape == (n, 4)
    exact = exact_policy_gradient(LOGITS, bandit)
    se = est.std(0) / math.sqrt(n)
    assert bool((torch.abs(est.mean(0) - exact) < Z * se).all()), (est.mean(0), exact, se)


def test_the_unbiasedness_check_has_power():
    """Control for the test above: a wrong score, r e_a (forgetting the -pi term of
    d log softmax), has mean pi * mu instead of pi * (mu - J); with the same n and
    tolerance the check must reject it, and must reject an estimate of zero."""
    bandit = _bandit(offset=2.0)
    n = 200_000
    est = _reinforce_estimates(bandit, n, seed=4)
    pi = torch.softmax(LOGITS, -1)
    # Redraw the same actions and rewards (same seed, same order as score_function) and
    # build the wrong estimator from them.
    torch.manual_seed(4)
    a = _policy(LOGITS).sample((n,))
    r = bandit.pull(a)
    torch.testing.assert_close(est, r[:, None] * (torch.nn.functional.one_hot(a, 4) - pi))
    wrong = r[:, None] * torch.nn.functional.one_hot(a, 4).to(torch.float64)
    exact = exact_policy_gradient(LOGITS, bandit)
    se = wrong.std(0) / math.sqrt(n)
    assert bool((torch.abs(wrong.mean(0) - exact) > Z * se).any())
    assert bool((torch.abs(exact) > Z * est.std(0) / math.sqrt(n)).any())


def test_reinforce_variance_matches_enumeration_and_grows_with_offset():
    """Without a baseline, g_k = r (1[a=k] - pi_k) with r = c + Bernoulli(q_a):
    E[r^2 | a] = c^2 + (2c + 1) q_a, E[r^4 | a] = sum over r in {c, c+1}.
    So E[g_k^2] = sum_a pi_a E[r^2|a] (1[a=k] - pi_k)^2, Var = E[g_k^2] - (dJ/dtheta_k)^2.
    The sample variance's standard error is sqrt((E[g^4] - E[g^2]^2) / n) to first order."""
    n = 200_000
    pi = torch.softmax(LOGITS, -1)
    for offset in (0.0, 5.0):
        bandit = _bandit(offset)
        est = _reinforce_estimates(bandit, n, seed=5)
        c, q = offset, PROBS
        r2 = (1 - q) * c**2 + q * (c + 1) ** 2
        r4 = (1 - q) * c**4 + q * (c + 1) ** 4
        d = torch.eye(4, dtype=torch.float64) - pi  # d[a, k] = 1[a=k] - pi_k
        m2 = (pi[:, None] * r2[:, None] * d**2).sum(0)
        m4 = (pi[:, None] * r4[:, None] * d**4).sum(0)
        var = m2 - exact_policy_gradient(LOGITS, bandit) ** 2
        se = torch.sqrt((m4 - m2**2) / n)
        assert bool((torch.abs(est.var(0) - var) < Z * se).all()), (offset, est.var(0), var)
    assert bool((_var_at(5.0) > 10 * _var_at(0.0)).all())


def _var_at(offset: float) -> torch.Tensor:
    return _reinforce_estimates(_bandit(offset), 50_000, seed=6).var(0)


@pytest.mark.parametrize("baseline", [None, 1.5, "loo"])
def test_training_step_is_the_library_score_function(baseline):
    """train_reinforce's step writes the softmax score out, (r_i - b_i)(e_{a_i} - pi), for
    many runs at once: for the same actions and rewards it equals (r_i - b_i) times
    autograd's grad log pi(a_i), with the library's leave-one-out baseline."""
    from companion.estimators import loo_baseline

    g = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 4, generator=g, dtype=torch.float64)        # 3 runs
    actions = torch.randint(0, 4, (3, 5), generator=g)                  # 5 pulls each
    rewards = torch.rand(3, 5, generator=g, dtype=torch.float64) + 2.0
    pi = torch.softmax(logits, -1)
    got = _reinforce(pi, actions, rewards, baseline)
    assert got.shape == (3, 5, 4)
    b = {None: 0.0, 1.5: 1.5, "loo": loo_baseline(rewards, -1)}[baseline]
    for run in range(3):
        for i in range(5):
            th = logits[run].clone().requires_grad_(True)
            (score,) = torch.autograd.grad(_policy(th).log_prob(actions[run, i]), th)
            weight = (rewards - b)[run, i] if baseline is not None else rewards[run, i]
            torch.testing.assert_close(got[run, i], weight * score)


def test_learning_improves_expected_reward_and_baseline_helps_with_offset():
    """From the uniform policy J(0) = mean(mu). With a small step size, gradient ascent
    on J must raise it, averaged over 20 seeded runs. With a large reward offset the
    no-baseline updates are dominated by noise c (e_a - pi), so the running baseline
    must end with a higher average J (paired over seeds, by more than 5 standard
    errors of the mean paired difference)."""
    bandit = _bandit(offset=5.0)
    kw = dict(n_steps=500, lr=0.1, n_runs=40, seed=0)
    plain = train_reinforce(bandit, baseline=None, **kw)
    based = train_reinforce(bandit, baseline="running", **kw)
    J0 = float(bandit.means().mean())
    assert plain.expected_reward.shape == (40, 501)
    assert abs(float(plain.expected_reward[:, 0].mean()) - J0) < 1e-12
    final = based.expected_reward[:, -1]
    assert float(final.mean()) > J0 + 0.2, float(final.mean())
    diff = final - plain.expected_reward[:, -1]
    assert float(diff.mean()) > Z * float(diff.std()) / math.sqrt(40)
    # With loo on batches the best arm is learned too.
    loo = train_reinforce(bandit, baseline="loo", batch_size=4, **kw)
    assert float(loo.best_arm_prob[:, -1].mean()) > 0.5


def test_runs_do_not_depend_on_how_many_runs_are_batched():
    """Run j uses its own generator seeded with seed + j."""
    bandit = _bandit()
    one = train_reinforce(bandit, 50, 0.5, n_runs=1, seed=3)
    many = train_reinforce(bandit, 50, 0.5, n_runs=3, seed=3)
    torch.testing.assert_close(one.expected_reward[0], many.expected_reward[0])


def test_huge_logits_stay_finite():
    bandit = _bandit()
    logits = torch.tensor([1e4, -1e4, 0.0, 5e3], dtype=torch.float64)
    assert bool(torch.isfinite(exact_policy_gradient(logits, bandit)).all())
    assert bool(torch.isfinite(expected_reward(logits, bandit)))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: BernoulliBandit([0.1, 0.2]), TypeError, "probs"),
        (lambda: BernoulliBandit(torch.tensor([0.1, 1.2])), ValueError, "probs"),
        (lambda: BernoulliBandit(torch.tensor([0.5])), ValueError, "probs"),
        (lambda: BernoulliBandit(PROBS, offset="1"), TypeError, "offset"),
        (lambda: BernoulliBandit(PROBS, offset=float("nan")), ValueError, "offset"),
        (lambda: _bandit().pull(torch.tensor([0, 4])), ValueError, "actions"),
        (lambda: _bandit().pull(torch.tensor([0.0])), TypeError, "actions"),
        (lambda: expected_reward(torch.zeros(3, dtype=torch.float64), _bandit()), ValueError, "logits"),
        (lambda: expected_reward(LOGITS, "bandit"), TypeError, "bandit"),
        (lambda: exact_policy_gradient(torch.tensor([0.0, float("inf"), 0.0, 0.0]), _bandit()), ValueError,
         "logits"),
        (lambda: _bandit().pull(torch.tensor([0, 1]), generator="g"), TypeError, "generator"),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline="loo", batch_size=1), ValueError, "loo"),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline=float("nan")), ValueError, "baseline"),
        (lambda: train_reinforce(_bandit(), 10, lr=-1.0), ValueError, "lr"),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline="mean"), ValueError, "baseline"),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, n_runs=0), ValueError, "n_runs"),
        (lambda: train_reinforce(_bandit(), 10.0, lr=0.1), TypeError, "n_steps"),
    ],
)
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_commitment_counts_committed_runs_and_favourite_arms():
    """Three runs: one with 0.95 on arm 2, one with 0.8 on arm 0, one with 0.91 on arm 2.
    At level 0.9 two runs are committed; arm 2 is the favourite of two runs, arm 0 of one."""
    def logits_for(p):
        return torch.log(torch.tensor(p, dtype=torch.float64))

    logits = torch.stack([logits_for([0.02, 0.01, 0.95, 0.02]), logits_for([0.8, 0.1, 0.05, 0.05]),
                          logits_for([0.03, 0.03, 0.91, 0.03])])
    curves = train_reinforce(_bandit(), 1, 0.1, n_runs=3)
    curves.logits = logits
    n, counts = curves.commitment(0.9)
    assert n == 2
    assert counts.tolist() == [1, 0, 2, 0]
    assert curves.commitment(0.5)[0] == 3
    with pytest.raises(ValueError, match="level"):
        curves.commitment(1.5)
