"""Bad input fails at the call with a TypeError or ValueError that names the argument; extreme
but valid input stays finite.

Each case asserts the exception type and that the message names the offending argument
(and, where it is short, shows its value).
"""

from __future__ import annotations

import math

import pytest
import numpy as np
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    Exponential,
    Gamma,
    MultivariateNormal,
    Normal,
    Poisson,
)

from companion import estimators, gumbel, reparam, validation
from companion.estimators import pathwise, score_function

ESTIMATORS = [pathwise, score_function]
EST_IDS = ["pathwise", "score_function"]


def gauss(p):
    return Normal(p[0], p[1])


def square(x):
    return x**2


GOOD = torch.tensor([0.5, 1.2])


# ---------------------------------------------------------------------------------------
# n_samples
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize("n", [0, -1, -100])
def test_n_samples_below_one(estimator, n, raises):
    with raises(ValueError, "n_samples", str(n)):
        estimator(square, gauss, GOOD, n)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize("n", [2.0, 10.5, True, False, "10", None, torch.tensor(10)])
def test_n_samples_not_an_int(estimator, n, raises):
    """Floats, strings, tensors, and bools (an int subclass, but never a sample count) are TypeErrors."""
    with raises(TypeError, "n_samples", "int"):
        estimator(square, gauss, GOOD, n)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
def test_n_samples_numpy_int_accepted(estimator):
    import numpy as np

    assert estimator(square, gauss, GOOD, np.int64(3)).shape == (3, 2)


# ---------------------------------------------------------------------------------------
# params, f, dist_fn, baseline
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
def test_params_must_be_a_finite_float_tensor(estimator, raises):
    with raises(TypeError, "params", "Tensor"):
        estimator(square, gauss, [0.5, 1.2], 4)
    with raises(TypeError, "params", "floating"):
        estimator(square, gauss, torch.tensor([0, 1]), 4)
    with raises(ValueError, "params", "finite"):
        estimator(square, gauss, torch.tensor([float("nan"), 1.0]), 4)
    with raises(ValueError, "params", "finite"):
        estimator(square, gauss, torch.tensor([0.0, float("inf")]), 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
def test_f_and_dist_fn_must_be_callable(estimator, raises):
    with raises(TypeError, "f", "callable"):
        estimator(3.0, gauss, GOOD, 4)
    with raises(TypeError, "dist_fn", "callable"):
        estimator(square, Normal(0.0, 1.0), GOOD, 4)
    with raises(TypeError, "dist_fn", "Distribution"):
        estimator(square, lambda p: p, GOOD, 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize(
    "f,shape",
    [
        (lambda x: x.unsqueeze(-1) ** 2, "(4, 1)"),
        (lambda x: x[:-1], "(3,)"),
        (lambda x: x.sum(), "()"),
        (lambda x: torch.stack([x, x], 1), "(4, 2)"),
    ],
    ids=["column", "one_short", "scalar", "two_columns"],
)
def test_f_wrong_shape(estimator, f, shape, raises):
    """f must return one value per sample: shape (n_samples,)."""
    with raises(ValueError, "f must", "(4,)", shape):
        estimator(f, gauss, GOOD, 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
def test_f_must_return_a_tensor(estimator, raises):
    with raises(TypeError, "f must return a torch.Tensor", "list"):
        estimator(lambda x: [float(v) for v in x], gauss, GOOD, 4)


@pytest.mark.parametrize("baseline,exc,text", [
    ("mean", ValueError, "'mean'"),
    ("LOO", ValueError, "'LOO'"),
    (True, TypeError, "True"),
    ([1.0], TypeError, "[1.0]"),
    (float("nan"), ValueError, "nan"),
    (float("inf"), ValueError, "inf"),
])
def test_bad_baseline(baseline, exc, text, raises):
    with raises(exc, "baseline", text):
        score_function(square, gauss, GOOD, 4, baseline=baseline)


def test_loo_needs_two_samples(raises):
    with raises(ValueError, "baseline='loo'", "n_samples"):
        score_function(square, gauss, GOOD, 1, baseline="loo")
    assert score_function(square, gauss, GOOD, 1).shape == (1, 2)  # fine without a baseline


# ---------------------------------------------------------------------------------------
# Distribution parameters out of range, through dist_fn
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_sigma_not_positive(estimator, sigma, raises):
    """A Normal scale <= 0 is reported with the params and torch's argument name, not a NaN."""
    with raises(ValueError, "params", "scale", str(sigma)):
        estimator(square, gauss, torch.tensor([0.5, sigma]), 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize("rate", [0.0, -2.0])
def test_rate_not_positive(estimator, rate, raises):
    with raises(ValueError, "params", "rate", str(rate)):
        estimator(lambda x: x, lambda r: Exponential(r), torch.tensor(rate), 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
def test_covariance_not_positive_definite(estimator, raises):
    cov = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with raises(ValueError, "params", "covariance_matrix", "PositiveDefinite"):
        estimator(lambda x: x.sum(-1), lambda c: MultivariateNormal(torch.zeros(2), covariance_matrix=c), cov, 4)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=EST_IDS)
@pytest.mark.parametrize(
    "L", [torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.3, -1.0]])], ids=["upper", "negative_diag"]
)
def test_scale_tril_not_a_cholesky_factor(estimator, L, raises):
    with raises(ValueError, "params", "scale_tril", "LowerCholesky"):
        estimator(lambda x: x.sum(-1), lambda l: MultivariateNormal(torch.zeros(2), scale_tril=l), L, 4)


@pytest.mark.parametrize(
    "dist_fn,params",
    [
        (lambda p: Categorical(logits=p), torch.zeros(3)),
        (lambda p: Bernoulli(logits=p), torch.tensor(0.3)),
        (lambda p: Poisson(p), torch.tensor(2.0)),
    ],
    ids=["Categorical", "Bernoulli", "Poisson"],
)
def test_pathwise_without_rsample_points_elsewhere(dist_fn, params, raises):
    """No rsample: the message says so and points to score_function and Gumbel-softmax."""
    with raises(ValueError, "rsample", "score_function", "gumbel_softmax"):
        pathwise(lambda x: x.float(), dist_fn, params, 4)
    assert score_function(lambda x: x.float(), dist_fn, params, 4).shape == (4, *params.shape)


# ---------------------------------------------------------------------------------------
# reparam
# ---------------------------------------------------------------------------------------


def _shown(value) -> str:
    """How a message shows a bad value: a float as str() does, a tensor by its last entry."""
    if isinstance(value, torch.Tensor):
        return str(float(value.reshape(-1)[-1]))
    return str(value)


@pytest.mark.parametrize("sigma", [0.0, -1.0, torch.tensor([1.0, -0.5]), float("nan"), float("inf")])
def test_gaussian_sigma_not_positive(sigma, raises):
    with raises(ValueError, "sigma", _shown(sigma)):
        reparam.gaussian(0.0, sigma)


def test_gaussian_other_bad_input(raises):
    with raises(ValueError, "sigma", "> 0", "-1.0"):
        reparam.gaussian(0.0, -1.0)
    with raises(ValueError, "mu", "finite"):
        reparam.gaussian(float("nan"), 1.0)
    with raises(TypeError, "sigma", "'big'"):
        reparam.gaussian(0.0, "big")
    with raises(TypeError, "mu", "bool"):
        reparam.gaussian(True, 1.0)
    with raises(TypeError, "eps", "Tensor"):
        reparam.gaussian(0.0, 1.0, eps=[0.1])
    with raises(ValueError, "eps", "finite"):
        reparam.gaussian(0.0, 1.0, eps=torch.tensor([0.1, float("inf")]))
    with raises(ValueError, "sample_shape", "-2"):
        reparam.gaussian(0.0, 1.0, sample_shape=(-2,))
    with raises(TypeError, "sample_shape", "'3'"):
        reparam.gaussian(0.0, 1.0, sample_shape="3")


@pytest.mark.parametrize("rate", [0.0, -1.0, torch.tensor([2.0, 0.0]), float("nan")])
def test_exponential_rate_not_positive(rate, raises):
    with raises(ValueError, "rate", _shown(rate)):
        reparam.exponential(rate)


@pytest.mark.parametrize(
    "u,shown", [(torch.tensor([-0.1, 0.5]), "-0.1"), (torch.tensor([0.5, 1.5]), "1.5"), (torch.tensor([float("nan")]), "nan")]
)
def test_u_outside_unit_interval(u, shown, raises):
    with raises(ValueError, "u", "[0, 1]", shown):
        reparam.exponential(1.0, u=u)
    with raises(ValueError, "u", "[0, 1]", shown):
        reparam.inverse_cdf(Normal(0.0, 1.0), u=u)


def test_scale_tril_checks(raises):
    mu = torch.zeros(2)
    with raises(ValueError, "scale_tril", "lower triangular"):
        reparam.mvn_cholesky(mu, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with raises(ValueError, "scale_tril", "positive diagonal", "-1.0"):
        reparam.mvn_cholesky(mu, torch.tensor([[1.0, 0.0], [0.3, -1.0]]))
    with raises(ValueError, "scale_tril", "positive diagonal", "0.0"):
        reparam.mvn_cholesky(mu, torch.tensor([[1.0, 0.0], [0.3, 0.0]]))
    with raises(ValueError, "scale_tril", "square"):
        reparam.mvn_cholesky(mu, torch.ones(2, 3))
    with raises(ValueError, "scale_tril", "finite"):
        reparam.mvn_cholesky(mu, torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]))
    with raises(TypeError, "scale_tril", "Tensor"):
        reparam.mvn_cholesky(mu, [[1.0, 0.0], [0.0, 1.0]])
    with raises(ValueError, "mu", "3"):
        reparam.mvn_cholesky(torch.zeros(3), torch.eye(2))
    with raises(ValueError, "z", "2"):
        reparam.mvn_cholesky(mu, torch.eye(2), z=torch.zeros(5, 3))


@pytest.mark.parametrize("fn", [lambda c: reparam.mvn_sqrtm(torch.zeros(2), c), reparam.sqrtm_psd], ids=["mvn_sqrtm", "sqrtm_psd"])
def test_covariance_checks(fn, raises):
    with raises(ValueError, "covariance", "positive definite", "-1"):
        fn(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with raises(ValueError, "covariance", "positive definite"):
        fn(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))  # singular: PSD but not PD
    with raises(ValueError, "covariance", "positive definite"):
        fn(-torch.eye(2))
    with raises(ValueError, "covariance", "symmetric"):
        fn(torch.tensor([[2.0, 0.5], [0.0, 2.0]]))
    with raises(ValueError, "covariance", "square"):
        fn(torch.ones(2, 3))
    with raises(ValueError, "covariance", "finite"):
        fn(torch.tensor([[1.0, float("inf")], [float("inf"), 1.0]]))


def test_inverse_cdf_checks(raises):
    with raises(TypeError, "dist", "Distribution"):
        reparam.inverse_cdf(lambda u: u)
    with raises(ValueError, "dist", "univariate"):
        reparam.inverse_cdf(MultivariateNormal(torch.zeros(2), torch.eye(2)))
    with raises(ValueError, "dist", "icdf", "Gamma"):
        reparam.inverse_cdf(Gamma(2.0, 1.0))


# ---------------------------------------------------------------------------------------
# gumbel
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), torch.tensor(-0.5)])
def test_temperature_not_positive(tau, raises):
    with raises(ValueError, "temperature", _shown(tau)):
        gumbel.gumbel_softmax(torch.zeros(3), tau)


def test_temperature_wrong_type(raises):
    with raises(TypeError, "temperature", "'hot'"):
        gumbel.gumbel_softmax(torch.zeros(3), "hot")
    with raises(TypeError, "temperature", "bool"):
        gumbel.gumbel_softmax(torch.zeros(3), True)


@pytest.mark.parametrize("bad,text", [(float("nan"), "NaN"), (float("inf"), "+inf")])
@pytest.mark.parametrize("fn", [gumbel.gumbel_max, lambda l: gumbel.gumbel_softmax(l, 1.0), lambda l: gumbel.gumbel_softmax(l, 1.0, hard=True)], ids=["max", "soft", "hard"])
def test_non_finite_logits(bad, text, fn, raises):
    """NaN and +inf logits are errors; -inf masks a category (tests/test_gumbel.py)."""
    with raises(ValueError, "logits", text):
        fn(torch.tensor([0.0, bad, 1.0]))


def test_other_bad_logits_and_noise(raises):
    with raises(TypeError, "logits", "Tensor"):
        gumbel.gumbel_max([0.0, 1.0])
    with raises(TypeError, "logits", "floating"):
        gumbel.gumbel_softmax(torch.tensor([0, 1]), 1.0)
    with raises(ValueError, "logits", "0-d"):
        gumbel.gumbel_softmax(torch.tensor(1.0), 1.0)
    with raises(ValueError, "logits", "category"):
        gumbel.gumbel_max(torch.zeros(3, 0))
    with raises(TypeError, "hard", "'yes'"):
        gumbel.gumbel_softmax(torch.zeros(3), 1.0, hard="yes")
    with raises(ValueError, "g", "shape"):
        gumbel.gumbel_softmax(torch.zeros(3), 1.0, g=torch.zeros(4))
    with raises(ValueError, "g", "finite"):
        gumbel.gumbel_max(torch.zeros(2), g=torch.tensor([0.0, float("nan")]))


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------


def test_validation_helpers(raises):
    assert validation.check_positive_int("k", 3) == 3
    assert validation.check_positive_int("k", 0, minimum=0) == 0
    with raises(TypeError, "k", "bool"):
        validation.check_positive_int("k", True)
    with raises(ValueError, "k", ">= 1", "0"):
        validation.check_positive_int("k", 0)
    x = torch.ones(2)
    assert validation.check_tensor("x", x) is x
    assert validation.check_finite("x", x) is x
    assert validation.check_positive("x", x) is x
    with raises(ValueError, "x", "> 0", "[1.0, 0.0]"):
        validation.check_positive("x", torch.tensor([1.0, 0.0]))
    with raises(ValueError, "x", "shape (10,)"):
        validation.check_finite("x", torch.full((10,), float("nan")))
    y = validation.as_tensor("y", 2, like=torch.zeros(1, dtype=torch.float64))
    assert y.dtype == torch.float64 and float(y) == 2.0
    assert validation.as_tensor("y", torch.tensor([1, 2])).is_floating_point()
    with raises(TypeError, "y", "None"):
        validation.as_tensor("y", None)


# ---------------------------------------------------------------------------------------
# Extreme but valid input stays finite
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_finite_with_gradients(hard):
    """Logits of +/-1e4 (a hard mask): finite samples and finite gradients at small and large tau."""
    logits = torch.tensor([[1e4, -1e4, 0.0, -1e4]] * 20, requires_grad=True)
    for tau in (1e-3, 1.0, 100.0):
        y = gumbel.gumbel_softmax(logits, tau, hard=hard)
        assert torch.isfinite(y).all() and (y.argmax(-1) == 0).all()
        (grad,) = torch.autograd.grad((y * torch.arange(4.0)).sum(), logits)
        assert torch.isfinite(grad).all()


def test_extreme_logits_in_score_function():
    """The score function of a categorical with logits +/-1e4 stays finite (and is 0: no spread)."""
    logits = torch.tensor([1e4, -1e4, 0.0])
    g = score_function(lambda k: torch.tensor([1.0, 2.0, 3.0])[k], lambda l: Categorical(logits=l), logits, 100)
    assert torch.isfinite(g).all() and g.abs().max() < 1e-3


def test_u_at_edges_finite():
    """u exactly 0 and 1 in exponential and inverse_cdf: no log(0), no infinite icdf."""
    u = torch.tensor([0.0, 1.0])
    x = reparam.exponential(2.0, u=u)
    assert torch.isfinite(x).all()
    assert math.isfinite(float(x[0])) and float(x[0]) > 0
    for dist in (Normal(0.0, 1.0), Exponential(1.0)):
        assert torch.isfinite(reparam.inverse_cdf(dist, u=u)).all()


# ---------------------------------------------------------------------------------------
# Found by probing the public API (each a class of input)
# ---------------------------------------------------------------------------------------


def test_probed_boundary_cases(raises):
    from companion import device, implicit

    with raises(ValueError, "temperature", "empty"):
        gumbel.gumbel_softmax(torch.zeros(3), torch.ones(0))
    with raises(ValueError, "seed", "2**32"):
        device.setup(2**32)
    with raises(TypeError, "sample_shape", "True"):
        reparam.gaussian(0.0, 1.0, sample_shape=True)
    with raises(ValueError, "covariance", "1x1"):
        reparam.sqrtm_psd(torch.zeros(0, 0))
    with raises(ValueError, "scale_tril", "1x1"):
        reparam.mvn_cholesky(torch.zeros(0), torch.zeros(0, 0))
    with raises(ValueError, "z", "alpha", "(3,)", "(2,)"):
        implicit.gamma_sample_grad(np.ones(3), np.ones(2))
    with raises(ValueError, "x", "alpha", "(3,)", "(2,)"):
        implicit.gamma_cdf_grad_alpha(np.ones(3), np.ones(2))
    with raises(ValueError, "z", "a", "b", "(3,)", "(2,)"):
        implicit.beta_sample_grad(np.full(3, 0.5), np.ones(2), 1.0)


# ---------------------------------------------------------------------------------------
# The switch: value checks on (default) or off
# ---------------------------------------------------------------------------------------


def test_validation_switch_defaults_on_and_restores(raises):
    assert validation.get_validate_args() is True
    with validation.validate_args(False):
        assert validation.get_validate_args() is False
        with validation.validate_args(True):
            assert validation.get_validate_args() is True
        assert validation.get_validate_args() is False
    assert validation.get_validate_args() is True
    with raises(TypeError, "value", "bool"):
        validation.set_validate_args(1)
    try:
        validation.set_validate_args(False)
        assert validation.get_validate_args() is False
    finally:
        validation.set_validate_args(True)


def test_value_checks_off_skip_value_checks_only(raises):
    """Off: a negative sigma, NaN f values, a u outside [0, 1] pass unchecked (the caller's
    responsibility); type and shape checks still run."""
    with validation.validate_args(False):
        x = reparam.gaussian(torch.tensor(0.0), -1.0, eps=torch.tensor([1.0]))
        assert x.item() == -1.0
        g = estimators.score_function(lambda x: torch.full_like(x, math.nan), _normal, torch.tensor([0.0, 1.0]), 4)
        assert torch.isnan(g).all()
        reparam.exponential(1.0, u=torch.tensor([2.0]))
        with raises(TypeError, "mu"):
            reparam.gaussian("zero", 1.0)
        with raises(ValueError, "eps"):
            reparam.gaussian(torch.zeros(3), 1.0, eps=torch.randn(4, 1))
    with raises(ValueError, "sigma"):
        reparam.gaussian(torch.tensor(0.0), -1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: reparam.gaussian(torch.tensor([0.3, -1.0]), torch.tensor([1.7, 0.2]), sample_shape=1000),
        lambda: reparam.exponential(torch.tensor(2.0), sample_shape=1000),
        lambda: reparam.mvn_cholesky(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.4, 2.0]]), sample_shape=100),
        lambda: reparam.mvn_sqrtm(torch.zeros(2), torch.tensor([[1.0, 0.4], [0.4, 2.0]]), sample_shape=100),
        lambda: gumbel.gumbel_softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(1)), 0.5, hard=True),
        lambda: estimators.score_function(lambda x: x**2, _normal, torch.tensor([0.5, 1.3]), 1000, baseline="loo"),
        lambda: estimators.pathwise(lambda x: x**2, _normal, torch.tensor([0.5, 1.3]), 1000),
    ],
    ids=["gaussian", "exponential", "mvn_cholesky", "mvn_sqrtm", "gumbel_softmax", "score_function", "pathwise"],
)
def test_checks_off_give_identical_results(call):
    torch.manual_seed(3)
    on = call()
    torch.manual_seed(3)
    with validation.validate_args(False):
        off = call()
    torch.testing.assert_close(off, on, rtol=0, atol=0)


def _normal(p):
    return Normal(p[0], p[1])


def test_all_finite_uses_the_sum_only_as_a_proof():
    """A finite sum proves every entry finite; a non-finite sum is re-checked entry by entry,
    so finite entries whose sum overflows still count as finite, and a single NaN or
    infinity anywhere is found."""
    from companion.validation import all_finite

    big = torch.full((4,), 3e38)  # each finite in float32, the sum overflows to inf
    assert all_finite(big)
    assert all_finite(torch.zeros(10**5))
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.zeros(10**5)
        x[12345] = bad
        assert not all_finite(x)
    assert not all_finite(torch.tensor(float("nan")))
    assert all_finite(torch.tensor([1, 2, 3]))  # integers are always finite


def test_check_real_is_the_one_scalar_check(raises):
    """check_real accepts Python, NumPy and one-element tensor numbers and returns a float;
    it refuses bools and non-numbers (TypeError) and NaN, infinity and values out of the
    asked range (ValueError), naming the argument and the value."""
    assert validation.check_real("x", 2) == 2.0 and isinstance(validation.check_real("x", 2), float)
    assert validation.check_real("x", np.float32(0.5)) == 0.5
    assert validation.check_real("x", torch.tensor([1.5])) == 1.5
    assert validation.check_real("x", 0.0, nonnegative=True) == 0.0
    with raises(TypeError, "lr", "True"):
        validation.check_real("lr", True)
    with raises(TypeError, "lr", "'fast'"):
        validation.check_real("lr", "fast")
    with raises(ValueError, "lr", "nan"):
        validation.check_real("lr", float("nan"))
    with raises(ValueError, "lr", "inf"):
        validation.check_real("lr", float("inf"))
    with raises(ValueError, "lr", "> 0", "0.0"):
        validation.check_real("lr", 0.0, positive=True)
    with raises(ValueError, "rate", ">= 0", "-1"):
        validation.check_real("rate", -1, nonnegative=True)
