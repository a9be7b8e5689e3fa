"""Tests of companion.experiments.gumbel_batches: the in-batch LOO gradient and its MSE,
the crossover, and the seeds-at-once optimiser."""

from __future__ import annotations

import itertools

import pytest
import torch

from companion.experiments import categorical as C
from companion.experiments import gumbel_batches as G

LOGITS = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
H = C.quadratic(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))


def test_loo_batch_gradient_is_unbiased(seed, stats):
    """The LOO baseline of each draw uses only the other draws, so the batch gradient's
    mean is the exact gradient (each coordinate within 5 standard errors)."""
    g = G.loo_batch_gradients(H, LOGITS, 3, 100_000)
    stats.assert_mean(g, C.exact_gradient(H, LOGITS), "in-batch LOO gradient, batch of 3")


def test_loo_batch_mse_of_two_draws_matches_enumeration(seed, stats):
    r"""For :math:`n = 2`, :math:`\hat g_2 = \tfrac12 (f_1 - f_2)(s_1 - s_2)` with
    :math:`s_i = e_{k_i} - p` (each draw's baseline is the other's value), so
    :math:`\mathbb E\lVert\hat g_2 - \nabla L\rVert^2 = \sum_{k,l} p_k p_l
    \lVert \tfrac12 (v_k - v_l)(e_k - e_l) - \nabla L\rVert^2`, a sum over the 9 pairs.
    The simulated MSE is within 5 of its standard errors. (A baseline that includes the
    draw itself, the full-batch mean, gives half this gradient and fails.)
    """
    p = torch.softmax(LOGITS, -1)
    v = C.category_values(H, LOGITS)
    exact = C.exact_gradient(H, LOGITS)
    eye = torch.eye(3, dtype=torch.float64)
    mse = sum(float(p[k] * p[l] * ((0.5 * (v[k] - v[l]) * (eye[k] - eye[l]) - exact) ** 2).sum())
              for k, l in itertools.product(range(3), repeat=2))
    got, se = G.loo_batch_mse(H, LOGITS, 2, 200_000)
    stats.assert_within(got, mse, se, "simulated MSE of the LOO gradient, batch of 2")


def test_crossover_picks_the_first_size_from_which_loo_always_wins(raises):
    loo = {2: 1.0, 4: 0.5, 8: 0.1, 16: 0.3, 32: 0.01}
    # relaxation: 0.05 + 0.8 / n -> 0.45, 0.25, 0.15, 0.1, 0.075
    assert G.crossover(loo, 0.05, 0.8) == 32
    assert G.crossover({2: 0.0}, 0.1, 0.0) == 2
    assert G.crossover({2: 1.0}, 0.0, 0.1) is None
    with raises(ValueError, "loo_mse must hold at least one batch size"):  # no value shown
        G.crossover({}, 0.0, 1.0)


def test_over_seeds_pools_and_keeps_each_seed(raises):
    """Pooled variance is near the per-seed ones; the same seeds give the same numbers."""
    exact = C.exact_gradient(H, LOGITS)
    run = G.over_seeds(lambda n: C.score_function(H, LOGITS, n), exact, 2000, seeds=[0, 1, 2])
    again = G.over_seeds(lambda n: C.score_function(H, LOGITS, n), exact, 2000, seeds=[0, 1, 2])
    assert len(run.per_seed) == 3 and run.pooled.n_samples == 6000
    assert run.per_seed[1].variance == again.per_seed[1].variance
    lo, hi = run.spread("variance")
    assert lo <= hi and lo / 2 < run.pooled.variance < 2 * hi
    with raises(TypeError, "sample must be callable", "int"):
        G.over_seeds(3, exact, 10)
    with raises(ValueError, "seeds", "empty"):
        G.over_seeds(lambda n: C.score_function(H, LOGITS, n), exact, 10, seeds=[])


def _adam_on_the_exact_gradient(steps: int, lr: float) -> torch.Tensor:
    """A reference run written out: torch's Adam on autograd of the enumerated objective."""
    theta = LOGITS.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        C.objective(H, theta).backward()
        opt.step()
        losses.append(float(C.objective(H, theta.detach())))
    return torch.tensor(losses, dtype=torch.float64)


def test_minimize_seeds_with_the_exact_gradient_is_adam_on_the_objective():
    """Every row follows Adam on autograd of L (an independent reference), and after 300
    steps L is near min_k h(e_k) = 0.38 (category 3, the largest t_k); the starting
    logits are left untouched."""
    start = LOGITS.clone()
    rows = G.minimize_seeds(H, LOGITS, "exact", steps=300, n_samples=4, n_seeds=3, lr=0.1)
    reference = _adam_on_the_exact_gradient(300, 0.1)
    assert torch.allclose(rows, reference.expand(3, -1), atol=1e-10)
    assert float(rows[0, -1]) < 0.38 + 0.01
    torch.testing.assert_close(LOGITS, start)


def test_the_unbiased_sampled_gradient_averages_to_the_exact_one(seed, stats):
    """The in-batch LOO gradient of the first step, over 20 000 independent rows (runs),
    has the exact gradient as its mean (each coordinate within 5 standard errors)."""
    rows = LOGITS.expand(20_000, -1)
    g = G._batched_gradient(H, rows, "score_function[baseline='loo']", 4, 1.0)
    stats.assert_mean(g, C.exact_gradient(H, LOGITS), "first-step LOO gradient")


@pytest.mark.parametrize("estimator, hard", [("gumbel_softmax", False), ("straight_through", True)])
def test_the_relaxed_gradients_average_to_torchs(seed, stats, estimator, hard):
    """A relaxation's first-step gradient, over 20 000 rows of 4 samples, has the mean of
    the same estimator written with torch.nn.functional.gumbel_softmax and autograd
    (independent draws; means within 5 standard errors of their difference). A wrong
    temperature, or hard and soft swapped, moves the mean by far more (the biases differ)."""
    tau = 0.5
    mine = G._batched_gradient(H, LOGITS.expand(20_000, -1), estimator, 4, tau)
    theta = LOGITS.expand(80_000, -1).clone().requires_grad_(True)
    y = torch.nn.functional.gumbel_softmax(theta, tau=tau, hard=hard)
    (theirs,) = torch.autograd.grad(H(y).sum(), theta)
    stats.assert_same_mean(mine, theirs.reshape(20_000, 4, 3).mean(1), f"{estimator} first step")


@pytest.mark.parametrize("estimator", ["score_function[baseline='loo']", "gumbel_softmax", "straight_through"])
def test_the_sampled_runs_descend_in_expectation(seed, stats, estimator):
    """Independent runs (rows differ) whose mean loss over the last 20 of 150 steps lies
    below the starting L by more than 5 standard errors of the mean over 40 runs."""
    start = float(C.objective(H, LOGITS))
    rows = G.minimize_seeds(H, LOGITS, estimator, steps=150, n_samples=4, n_seeds=40, temperature=0.5)
    assert rows.shape == (40, 150)
    assert not torch.equal(rows[0], rows[1])
    drop, se = stats.mean_se(start - rows[:, -20:].mean(1))
    stats.assert_above(drop, 0.0, se, f"{estimator}: mean drop of L below the start")


def test_minimize_seeds_rejects_bad_input(raises):
    with raises(ValueError, "estimator must be one of", "'reinforce+loo'"):
        G.minimize_seeds(H, LOGITS, "reinforce+loo", steps=1, n_samples=2)
    with raises(ValueError, "n_samples", "1"):
        G.minimize_seeds(H, LOGITS, "gumbel_softmax", steps=1, n_samples=1)
    with raises(ValueError, "lr", "0"):
        G.minimize_seeds(H, LOGITS, "exact", steps=1, n_samples=2, lr=0)
