r"""Gumbel-Rao (:func:`companion.gumbel.gumbel_rao`) against straight-through and the softmax.

Facts used:

* The forward value is a Gumbel-max one-hot, so its frequencies are
  :math:`\operatorname{softmax}(\ell)` (Gumbel-max trick); a ``-inf`` category has
  probability 0.
* Gumbel-Rao's backward pass is :math:`\mathbb E[\nabla \operatorname{softmax}((\ell + G)/\tau)
  \mid D]` estimated from :math:`k` conditional draws; straight-through uses one
  unconditional :math:`G`. By the tower rule both have the same expected gradient,
  :math:`\mathbb E_D[\mathbb E[\cdot \mid D]]`; for :math:`k = 1` the two per-sample
  gradients even have the same law (a conditional draw given a sampled :math:`D` is an
  unconditional draw), and averaging :math:`k > 1` conditional draws lowers the variance
  by the law of total variance.
"""

from __future__ import annotations

import pytest
import torch

from companion.gumbel import gumbel_rao, gumbel_softmax

N = 100_000
LOGITS = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
WEIGHTS = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])


def per_sample_gradients(sampler, logits=LOGITS, n=N):
    """Row i: the gradient of (w . D_i)^2 with respect to the logits, one sample per row.

    A nonlinear f makes straight-through's gradient, 2 (w . D) w^T dsoftmax/dlogits, depend
    on the sampled D, so a Gumbel-Rao that ignored the conditioning on D would change the
    mean and fail the tests below."""
    rows = logits.expand(n, logits.shape[-1]).clone().requires_grad_(True)
    y = sampler(rows)
    ((y * WEIGHTS).sum(-1) ** 2).sum().backward()
    return y.detach(), rows.grad


def straight_through(tau):
    return lambda rows: gumbel_softmax(rows, tau, hard=True)


def rao(tau, k):
    return lambda rows: gumbel_rao(rows, tau, k)


def test_forward_value_is_a_categorical_one_hot(seed, stats):
    y, _ = per_sample_gradients(rao(0.5, 4))
    assert set(y.unique().tolist()) <= {0.0, 1.0} and (y.sum(-1) == 1).all()
    stats.assert_proportions(y.sum(0), N, torch.softmax(LOGITS, 0), what="Gumbel-Rao one-hot")


@pytest.mark.parametrize("tau", [0.5, 1.0])
@pytest.mark.parametrize("k", [1, 10])
def test_mean_gradient_equals_straight_throughs(tau, k, seed, stats):
    """Same expected gradient (tower rule, module docstring); independent samples, 5 SE."""
    _, g_st = per_sample_gradients(straight_through(tau))
    _, g_gr = per_sample_gradients(rao(tau, k))
    stats.assert_same_mean(g_gr, g_st, what=f"Gumbel-Rao k={k} vs straight-through, tau={tau}")


def test_k1_has_straight_throughs_variance(seed, stats):
    _, g_st = per_sample_gradients(straight_through(0.5))
    _, g_gr = per_sample_gradients(rao(0.5, 1))
    stats.assert_same_var(g_gr, g_st, what="Gumbel-Rao k=1 vs straight-through")


@pytest.mark.parametrize("k", [2, 10])
def test_variance_is_lower_for_k_above_one(k, seed, stats):
    """Var[ST] - Var[GR_k] > 5 standard errors of the difference of two independent sample
    variances (each variance's SE from its sample fourth central moment), in every coordinate."""
    _, g_st = per_sample_gradients(straight_through(0.5))
    _, g_gr = per_sample_gradients(rao(0.5, k))
    stats.assert_var_greater(g_st, g_gr, f"straight-through vs Gumbel-Rao k={k}")


def test_masked_category_is_never_drawn_and_gets_no_gradient(seed):
    logits = torch.tensor([0.5, float("-inf"), 0.0, 1.0])
    rows = logits.expand(20_000, 4).clone().requires_grad_(True)
    y = gumbel_rao(rows, 0.5, 3)
    (y * torch.tensor([1.0, 5.0, -1.0, 2.0])).sum().backward()
    assert (y[:, 1] == 0).all()
    assert torch.isfinite(rows.grad).all() and (rows.grad[:, 1] == 0).all()


def test_extreme_logits_stay_finite(seed):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4 + 1], [30.0, -30.0, 0.0]], requires_grad=True)
    y = gumbel_rao(logits, 0.1, 8)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(logits.grad).all()
    assert y[0].tolist() == [1.0, 0.0, 0.0]


def test_batch_shape_and_device(seed):
    y = gumbel_rao(torch.zeros(2, 3, 4), 1.0, 5)
    assert y.shape == (2, 3, 4) and (y.sum(-1) == 1).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"logits": [0.1, 0.2]}, "logits must be a torch.Tensor"),
        ({"logits": torch.tensor(1.0)}, "logits must have at least one dimension"),
        ({"logits": torch.tensor([0.0, float("nan")])}, "logits must not contain NaN"),
        ({"logits": torch.tensor([0.0, float("inf")])}, r"logits must not contain \+inf"),
        ({"logits": torch.tensor([[0.0, 1.0], [float("-inf"), float("-inf")]])}, "finite entry in every row"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"k": 0}, "k must be an int >= 1, got 0"),
        ({"k": 2.0}, "k must be an int, got 2.0"),
    ],
)
def test_bad_input_fails_clearly(kwargs, match):
    """The message names the argument (and, for scalars, shows the value)."""
    args = {"logits": LOGITS, "temperature": 0.5, "k": 2, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        gumbel_rao(args["logits"], args["temperature"], args["k"])


@pytest.mark.cuda
def test_same_sample_and_gradient_on_cuda():
    """All noise comes from the CPU generator: the CUDA run of a seed matches the CPU run."""
    out = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        rows = LOGITS.to(device).expand(1000, 5).clone().requires_grad_(True)
        y = gumbel_rao(rows, 0.5, 4)
        ((y * WEIGHTS.to(device)).sum(-1) ** 2).sum().backward()
        out.append((y.detach().cpu(), rows.grad.cpu()))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.allclose(out[0][1], out[1][1], atol=1e-5)
