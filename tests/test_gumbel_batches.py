"""Tests of companion.experiments.gumbel_batches: the in-batch LOO gradient and its MSE,
the crossover, and the seeds-at-once optimiser."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from companion.experiments import categorical as C
from companion.experiments import gumbel_batches as G

LOGITS = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
H = C.quadratic(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
Z = 5.0


def test_loo_batch_gradient_is_unbiased(seed):
    """The LOO baseline of each draw uses only the other draws, so the batch gradient's
    mean is the exact gradient (each coordinate within 5 standard errors)."""
    g = G.loo_batch_gradients(H, LOGITS, 3, 100_000)
    exact = C.exact_gradient(H, LOGITS)
    se = g.std(0) / math.sqrt(g.shape[0])
    assert ((g.mean(0) - exact).abs() < Z * se).all()


def test_loo_batch_mse_of_two_draws_matches_enumeration(seed):
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
    assert abs(got - mse) < Z * se


def test_crossover_picks_the_first_size_from_which_loo_always_wins():
    loo = {2: 1.0, 4: 0.5, 8: 0.1, 16: 0.3, 32: 0.01}
    # relaxation: 0.05 + 0.8 / n -> 0.45, 0.25, 0.15, 0.1, 0.075
    assert G.crossover(loo, 0.05, 0.8) == 32
    assert G.crossover({2: 0.0}, 0.1, 0.0) == 2
    assert G.crossover({2: 1.0}, 0.0, 0.1) is None
    with pytest.raises(ValueError, match="loo_mse"):
        G.crossover({}, 0.0, 1.0)


def test_over_seeds_pools_and_keeps_each_seed():
    """Pooled variance is near the per-seed ones; the same seeds give the same numbers."""
    exact = C.exact_gradient(H, LOGITS)
    run = G.over_seeds(lambda n: C.reinforce(H, LOGITS, n), exact, 2000, seeds=[0, 1, 2])
    again = G.over_seeds(lambda n: C.reinforce(H, LOGITS, n), exact, 2000, seeds=[0, 1, 2])
    assert len(run.per_seed) == 3 and run.pooled.n_samples == 6000
    assert run.per_seed[1].variance == again.per_seed[1].variance
    lo, hi = run.spread("variance")
    assert lo <= hi and lo / 2 < run.pooled.variance < 2 * hi
    with pytest.raises(TypeError, match="sample"):
        G.over_seeds(3, exact, 10)
    with pytest.raises(ValueError, match="seeds"):
        G.over_seeds(lambda n: C.reinforce(H, LOGITS, n), exact, 10, seeds=[])


def test_minimize_seeds_rows_are_independent_runs(seed):
    """With the exact gradient every row follows the single run of ``C.minimize``; with a
    sampled gradient the rows differ (independent draws) and all improve on the start."""
    exact_rows = G.minimize_seeds(H, LOGITS, "exact", steps=30, n_samples=4, n_seeds=3)
    single = C.minimize(H, LOGITS, "exact", steps=30, n_samples=4, lr=0.05)
    assert torch.allclose(exact_rows, single.expand(3, -1).to(exact_rows), atol=1e-12)
    start = float(C.objective(H, LOGITS))
    for est in ("reinforce+loo", "relaxed", "straight-through"):
        rows = G.minimize_seeds(H, LOGITS, est, steps=60, n_samples=4, n_seeds=3, temperature=0.5)
        assert rows.shape == (3, 60)
        assert not torch.equal(rows[0], rows[1])
        assert (rows[:, -1] < start).all()
    with pytest.raises(ValueError, match="estimator"):
        G.minimize_seeds(H, LOGITS, "adam", steps=1, n_samples=2)
    with pytest.raises(ValueError, match="n_samples"):
        G.minimize_seeds(H, LOGITS, "relaxed", steps=1, n_samples=1)
