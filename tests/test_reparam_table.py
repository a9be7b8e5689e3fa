"""Tests of companion.experiments.reparam_table: the checks pass a right sampler and fail a wrong one."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Exponential, Normal

from companion.experiments.reparam_table import gradient_check, ks_p


def _normal_row(generator, scale_factor=1.0, detach_sigma=False):
    def sample(mu, sig):
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64)
        s = sig.detach() if detach_sigma else sig
        return mu + scale_factor * s * eps
    return sample


def test_gradient_check_passes_the_normal_map(generator):
    """x = mu + sigma eps, h = x^2: E[h] = mu^2 + sigma^2, gradient (2 mu, 2 sigma).

    The mean of 20000 per-draw gradients (2x, 2x eps) lies within 5 standard errors."""
    res = gradient_check(_normal_row(generator), lambda m, s: m**2 + s**2, [0.3, 1.7], 20_000,
                         stat=lambda x: x**2)
    for mean, se, exact in res:
        assert abs(mean - exact).item() < 5 * se.item()
    assert res[0][2].item() == pytest.approx(0.6) and res[1][2].item() == pytest.approx(3.4)


@pytest.mark.parametrize("mutation", ["wrong scale", "detached sigma"])
def test_gradient_check_catches_a_wrong_map(generator, mutation):
    """A map with the wrong law (2 sigma eps) or a detached sigma misses the closed form by
    far more than 5 standard errors in the sigma gradient."""
    sample = (_normal_row(generator, scale_factor=2.0) if mutation == "wrong scale"
              else _normal_row(generator, detach_sigma=True))
    mean, se, exact = gradient_check(sample, lambda m, s: m**2 + s**2, [0.3, 1.7], 20_000,
                                     stat=lambda x: x**2)[1]
    assert abs(mean - exact).item() > 5 * se.item()


def test_vector_parameter_and_ks(generator):
    """Dirichlet-like: a vector parameter gets a per-entry gradient; and ks_p separates laws."""
    def sample(rate):
        u = torch.rand(rate.shape, generator=generator, dtype=torch.float64)
        return (-torch.log(u) / rate).sum(-1)          # sum of exponentials
    mean, se, exact = gradient_check(sample, lambda r: (1 / r).sum(), [torch.tensor([1.0, 2.0])], 20_000)[0]
    assert mean.shape == (2,)
    assert (abs(mean - exact) < 5 * se).all()
    torch.testing.assert_close(exact, torch.tensor([-1.0, -0.25], dtype=torch.float64))
    a = Exponential(2.0).sample((3000,))
    assert ks_p(a, Exponential(2.0).sample((3000,))) > 1e-4
    assert ks_p(a, Normal(0.5, 0.5).sample((3000,))) < 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one parameter"):
        gradient_check(lambda: torch.zeros(3), lambda: torch.tensor(0.0), [], 3)
    with pytest.raises(ValueError, match="shape"):
        gradient_check(lambda m: m.unsqueeze(-1).expand(-1, 2), lambda m: m, [1.0], 4)
    with pytest.raises(TypeError, match="tensor"):
        ks_p([1.0, 2.0], torch.zeros(3))
    with pytest.raises(ValueError, match="n"):
        gradient_check(lambda m: m, lambda m: m, [1.0], 1)
