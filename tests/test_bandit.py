"""Tests of companion.experiments.bandit: the policy-gradient estimates against exact enumeration.

For a softmax policy over K arms, J(theta) = sum_a pi(a) mu_a is a finite sum, so
its gradient and the moments of the REINFORCE estimator can be computed exactly by
enumerating the arms; the Monte Carlo checks compare against those with a
tolerance of 5 standard errors.
"""

from __future__ import annotations

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


def test_pull_gives_bernoulli_rewards_plus_offset(generator, stats):
    """r = c + Bernoulli(q_a): the rewards are c or c + 1, and the share of c + 1 is q_a,
    a binomial proportion with standard error sqrt(q_a (1 - q_a) / n)."""
    bandit = _bandit(offset=-1.0)
    n = 100_000
    for arm in range(4):
        r = bandit.pull(torch.full((n,), arm), generator=generator)
        assert set(r.unique().tolist()) <= {-1.0, 0.0}
        stats.assert_proportions([float((r == 0.0).sum())], n, [float(PROBS[arm])], f"arm {arm} pays")


@pytest.mark.parametrize("baseline", [None, 3.0, "loo"])
def test_reinforce_is_unbiased_for_the_exact_policy_gradient(baseline, seed, stats):
    """E[(r - b)(e_a - pi)] = sum_a pi_a (mu_a - b)(e_a - pi) = pi * (mu - J), because
    E[e_a - pi] = 0 kills any b independent of a. The tolerance is 5 standard errors
    of the mean of the per-sample estimates (the LOO estimates are exchangeable but
    correlated; their mean is still unbiased, and with n large their correlation
    is O(1/n), so the iid standard error is accurate)."""
    bandit = _bandit(offset=2.0)
    n = 200_000
    est = _reinforce_estimates(bandit, n, baseline=baseline, seed=seed)
    assert est.shape == (n, 4)
    stats.assert_mean(est, exact_policy_gradient(LOGITS, bandit), f"REINFORCE, baseline={baseline!r}")


def test_the_unbiasedness_check_has_power(seed, stats):
    """Control for the test above: a wrong score, r e_a (forgetting the -pi term of
    d log softmax), has mean pi * mu instead of pi * (mu - J); with the same n and
    tolerance the check must reject it, and must reject an estimate of zero."""
    bandit = _bandit(offset=2.0)
    n = 200_000
    est = _reinforce_estimates(bandit, n, seed=seed)
    pi = torch.softmax(LOGITS, -1)
    # Redraw the same actions and rewards (same seed, same order as score_function) and
    # build the wrong estimator from them.
    torch.manual_seed(seed)
    a = _policy(LOGITS).sample((n,))
    r = bandit.pull(a)
    torch.testing.assert_close(est, r[:, None] * (torch.nn.functional.one_hot(a, 4) - pi))
    wrong = r[:, None] * torch.nn.functional.one_hot(a, 4).to(torch.float64)
    exact = exact_policy_gradient(LOGITS, bandit)
    stats.assert_mean_differs(wrong, exact, "r e_a (the -pi term forgotten)")
    _, se = stats.mean_se(est)
    stats.assert_differs(exact, 0.0, se, "exact gradient against an estimate of zero")


def test_reinforce_variance_matches_enumeration_and_grows_with_offset(seed, stats):
    """Without a baseline, g_k = r (1[a=k] - pi_k) with r = c + Bernoulli(q_a):
    E[r^j | a] = (1 - q_a) c^j + q_a (c + 1)^j. So the raw moments are
    E[g_k^j] = sum_a pi_a E[r^j|a] (1[a=k] - pi_k)^j, Var = E[g_k^2] - m^2 with
    m = dJ/dtheta_k, and the fourth central moment is
    E[g^4] - 4 m E[g^3] + 6 m^2 E[g^2] - 3 m^4: exact, for the sample variance's
    standard error (stats.assert_var)."""
    n = 200_000
    pi = torch.softmax(LOGITS, -1)
    for offset in (0.0, 5.0):
        bandit = _bandit(offset)
        est = _reinforce_estimates(bandit, n, seed=seed)
        c, q = offset, PROBS
        d = torch.eye(4, dtype=torch.float64) - pi  # d[a, k] = 1[a=k] - pi_k
        raw = {j: (pi[:, None] * ((1 - q) * c**j + q * (c + 1) ** j)[:, None] * d**j).sum(0) for j in (2, 3, 4)}
        m = exact_policy_gradient(LOGITS, bandit)
        var = raw[2] - m**2
        mu4 = raw[4] - 4 * m * raw[3] + 6 * m**2 * raw[2] - 3 * m**4
        stats.assert_var(est, var, mu4, f"REINFORCE variance, offset {offset}")
    assert bool((_var_at(5.0, seed) > 10 * _var_at(0.0, seed)).all())


def _var_at(offset: float, seed: int) -> torch.Tensor:
    return _reinforce_estimates(_bandit(offset), 50_000, seed=seed + 1).var(0)


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


def test_learning_improves_expected_reward_and_baseline_helps_with_offset(seed, stats):
    """From the uniform policy J(0) = mean(mu). With a small step size, gradient ascent
    on J must raise it, averaged over 20 seeded runs. With a large reward offset the
    no-baseline updates are dominated by noise c (e_a - pi), so the running baseline
    must end with a higher average J (paired over seeds, by more than 5 standard
    errors of the mean paired difference)."""
    bandit = _bandit(offset=5.0)
    kw = dict(n_steps=500, lr=0.1, n_runs=40, seed=seed)
    plain = train_reinforce(bandit, baseline=None, **kw)
    based = train_reinforce(bandit, baseline="running", **kw)
    J0 = float(bandit.means().mean())
    assert plain.expected_reward.shape == (40, 501)
    assert abs(float(plain.expected_reward[:, 0].mean()) - J0) < 1e-12
    final = based.expected_reward[:, -1]
    assert float(final.mean()) > J0 + 0.2, float(final.mean())
    gain, se = stats.mean_se(final - plain.expected_reward[:, -1])
    stats.assert_above(gain, 0.0, se, "running baseline's gain in final J (paired)")
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
    """Logits 1e4 apart make the policy one-hot on arm 0 in float64: then J = mu_0 and
    dJ/dtheta_k = pi_k (mu_k - J) is 0 for every k (pi_0 = 1 with mu_0 - J = 0, the
    others pi_k = 0), with no NaN from inf - inf."""
    bandit = _bandit(offset=2.0)
    logits = torch.tensor([1e4, -1e4, 0.0, 5e3], dtype=torch.float64)
    torch.testing.assert_close(exact_policy_gradient(logits, bandit), torch.zeros(4, dtype=torch.float64))
    assert float(expected_reward(logits, bandit)) == pytest.approx(float(PROBS[0]) + 2.0, rel=1e-12)


@pytest.mark.parametrize(
    "call, exc, names",
    [
        (lambda: BernoulliBandit([0.1, 0.2]), TypeError, ("probs", "[0.1, 0.2]")),
        (lambda: BernoulliBandit(torch.tensor([0.1, 1.2])), ValueError, ("probs", "1.2")),
        (lambda: BernoulliBandit(torch.tensor([0.5])), ValueError, ("probs", "(1,)")),
        (lambda: BernoulliBandit(PROBS, offset="1"), TypeError, ("offset", "'1'")),
        (lambda: BernoulliBandit(PROBS, offset=float("nan")), ValueError, ("offset", "nan")),
        (lambda: _bandit().pull(torch.tensor([0, 4])), ValueError, ("actions", "4")),
        (lambda: _bandit().pull(torch.tensor([0.0])), TypeError, ("actions", "torch.float32")),
        (lambda: expected_reward(torch.zeros(3, dtype=torch.float64), _bandit()), ValueError, ("logits", "(3,)")),
        (lambda: expected_reward(LOGITS, "bandit"), TypeError, ("bandit", "str")),
        (lambda: exact_policy_gradient(torch.tensor([0.0, float("inf"), 0.0, 0.0]), _bandit()), ValueError,
         ("logits", "inf")),
        (lambda: _bandit().pull(torch.tensor([0, 1]), generator="g"), TypeError, ("generator", "str")),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline="loo", batch_size=1), ValueError,
         ("baseline='loo'", "batch_size=1")),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline=float("nan")), ValueError, ("baseline", "nan")),
        (lambda: train_reinforce(_bandit(), 10, lr=-1.0), ValueError, ("lr", "-1.0")),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, baseline="mean"), ValueError, ("baseline", "'mean'")),
        (lambda: train_reinforce(_bandit(), 10, lr=0.1, n_runs=0), ValueError, ("n_runs", "0")),
        (lambda: train_reinforce(_bandit(), 10.0, lr=0.1), TypeError, ("n_steps", "10.0")),
    ],
)
def test_bad_input_names_the_argument(call, exc, names, raises):
    with raises(exc, *names):
        call()


def test_commitment_counts_committed_runs_and_favourite_arms(raises):
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
    with raises(ValueError, "level", "1.5"):
        curves.commitment(1.5)
