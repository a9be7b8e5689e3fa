r"""The measure-valued chapter's figure data: quadrature against closed forms and simulation.

Closed forms for :math:`f(x) = (x - k)^2`, :math:`x = \mu + \sigma\varepsilon`, :math:`a = \mu - k`
(derived in ``test_measure_valued`` with :math:`\mu \to a`, since :math:`f` only sees
:math:`x - k`): measure-valued coupled :math:`(8a^2(2 - \pi/2)/\pi,\ 4a^2 + 4\sigma^2)`,
uncoupled :math:`(\frac4\pi(a^2(2-\pi/2) + \sigma^2),\ 16a^2 + 8\sigma^2)`; pathwise
:math:`(2y, 2y\varepsilon)` with :math:`y = a + \sigma\varepsilon`:
:math:`(4\sigma^2,\ 4a^2 + 8\sigma^2)`; the delta method leaves :math:`(0, 0)`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.experiments import closed_forms as cf
from companion.experiments import measure_valued as E

MU, SIGMA = 1.0, 1.0


@pytest.mark.parametrize("k", [-2.0, 0.5, 3.0])
def test_quadratic_curves_match_closed_forms(k):
    c = E.variance_curves("quadratic", [k], MU, SIGMA)
    a = MU - k
    expected = {
        "measure_valued": (8 * a**2 / math.pi * (2 - math.pi / 2), 4 * a**2 + 4 * SIGMA**2),
        "measure_valued+uncoupled": (4 / math.pi * (a**2 * (2 - math.pi / 2) + SIGMA**2), 16 * a**2 + 8 * SIGMA**2),
        "pathwise": (4 * SIGMA**2, 4 * a**2 + 8 * SIGMA**2),
        "score_function+delta": (0.0, 0.0),
        "score_function+delta_optimal": (0.0, 0.0),
    }
    for est, value in expected.items():
        np.testing.assert_allclose(c[est][0], value, rtol=1e-9, atol=1e-9, err_msg=est)


@pytest.mark.parametrize("name, k", [("exp", 1.0), ("cos", 2.0), ("quadratic", 1.5)])
def test_curves_match_adaptive_quadrature(name, k):
    """The score function and pathwise curves agree with :mod:`companion.experiments.closed_forms`'s
    independent adaptive quadrature, and the reductions never exceed what they reduce."""
    c = E.variance_curves(name, [k], MU, SIGMA)
    for est in ("pathwise", "score_function"):
        np.testing.assert_allclose(c[est][0], cf.gaussian_estimator_variance(name, est, k, MU, SIGMA), rtol=1e-8)
    assert np.all(c["score_function[baseline=b]"][0] <= c["score_function"][0] + 1e-12)
    assert np.all(c["score_function+delta_optimal"][0] <= c["score_function"][0] + 1e-12)


@pytest.mark.parametrize("name, k", [("exp", 1.0), ("cos", 2.0)])
def test_curves_match_simulation(seed, stats, name, k):
    r"""The library's estimators, simulated, have the quadrature's variances (5 standard
    errors of a sample variance, with the fourth moment taken from the sample)."""
    n = 40_000
    c = E.variance_curves(name, [k], MU, SIGMA)
    f = E.torch_function(name, k)
    p = torch.tensor([MU, SIGMA], dtype=torch.float64)
    from companion import control_variates as cv
    from companion.estimators import pathwise, score_function
    from companion.measure_valued import measure_valued

    runs = {
        "score_function": score_function(f, E._normal, p, n),
        "score_function+delta": cv.score_function_delta(f, E._normal, p, n),
        "pathwise": pathwise(f, E._normal, p, n),
        "measure_valued": measure_valued(f, E._normal, p, n),
        "measure_valued+uncoupled": measure_valued(f, E._normal, p, n, coupling=False),
    }
    for est, g in runs.items():
        stats.assert_var(g, c[est][0], stats.sample_mu4(g), what=f"{name} {est}")


def test_dimension_sweep_against_simulation(seed, stats):
    r"""The closed forms of :func:`dimension_sweep` (derived in its docstring) against the estimators.

    :func:`simulated_dimension_variances` returns sample variances only, so their standard
    errors come from the closed forms' fourth central moments: the pathwise estimate of the
    :math:`\mu_1` coordinate is :math:`2x_1`, Gaussian, variance :math:`4\sigma^2`,
    :math:`\mu_4 = 3\cdot 16\sigma^4`; the coupled measure-valued one is :math:`cR` with
    :math:`c = 4\mu/\sqrt{2\pi}` and :math:`R` Rayleigh, whose central moments are
    :math:`2 - \pi/2` and :math:`8 - 3\pi^2/4`."""
    n = 20_000
    d = E.dimension_sweep([1, 3, 8])
    for i, dim in enumerate([1, 3, 8]):
        torch.manual_seed(seed + dim)
        p = torch.stack([torch.full((dim,), MU), torch.full((dim,), SIGMA)]).double()
        from torch.distributions import Independent, Normal

        from companion.estimators import score_function

        g = score_function(lambda x: (x**2).sum(-1), lambda q: Independent(Normal(q[0], q[1]), 1), p, n)[:, 0, 0]
        stats.assert_var(g, d["score_function"][i], stats.sample_mu4(g), what=f"score function D={dim}")
        sim = E.simulated_dimension_variances(dim, n)
        c2 = 16 * MU**2 / (2 * math.pi)
        for est, var, mu4 in [
            ("pathwise", 4 * SIGMA**2, 48 * SIGMA**4),
            ("measure_valued", c2 * (2 - math.pi / 2), c2**2 * (8 - 3 * math.pi**2 / 4)),
        ]:
            assert var == pytest.approx(d[est][i], rel=1e-12)
            se = math.sqrt((mu4 - var**2 * (n - 3) / (n - 1)) / n)
            stats.assert_within(sim[est], var, se, f"simulated {est} variance, D={dim}", n=n)
    assert d["evaluations"]["measure_valued"].tolist() == [4, 12, 32]
    # Pathwise and measure-valued do not grow with D; the score function does.
    assert d["score_function"][2] > 10 * d["score_function"][0]


def test_rao_blackwell_exact_against_simulation(seed, stats):
    r"""Enumeration over :math:`z` (docstring of :func:`rao_blackwell_exact`) against
    200,000 draws; Rao-Blackwellisation lowers every coordinate's variance."""
    theta, m = E.rao_blackwell_problem()
    exact = E.rao_blackwell_exact(theta, m)
    sim = E.rao_blackwell_simulated(theta, m, 200_000)
    for est, g in sim.items():
        stats.assert_mean(g, exact["gradient"], what=est)
        stats.assert_var(g, exact[est], stats.sample_mu4(g), what=est)
    assert np.all(exact["score_function+rao_blackwell"] < exact["score_function"])


def test_poincare_bound_holds_and_is_tight_for_quadratic():
    for name in E.FUNCTIONS:
        c = E.poincare_curves(name, np.linspace(0.2, 3.0, 15))
        assert np.all(c["variance"] <= c["poincare"] * (1 + 1e-9))
        assert np.all(c["poincare"] <= c["lipschitz"] * (1 + 1e-9))
    q = E.poincare_curves("quadratic", [0.0, 2.0])
    np.testing.assert_allclose(q["variance"], q["poincare"], rtol=1e-10)


def test_weak_derivative_densities_match_the_derivatives():
    r""":math:`\partial_\mu p = c_\mu(p^+ - p^-)` and :math:`\partial_\sigma p = c_\sigma(p_M - p)`
    pointwise, and each part integrates to one."""
    x = np.linspace(-9, 11, 20001)
    d = E.weak_derivative_densities(x, 1.0, 1.5)
    np.testing.assert_allclose(d["dmu"], d["c_mu"] * (d["plus_mu"] - d["minus_mu"]), atol=1e-12)
    np.testing.assert_allclose(d["dsigma"], d["c_sigma"] * (d["maxwell"] - d["normal"]), atol=1e-12)
    for part in ("plus_mu", "minus_mu", "maxwell", "normal"):
        assert abs(np.trapezoid(d[part], x) - 1.0) < 1e-6


def test_toolbox_shapes_and_values(seed):
    r"""Per-evaluation variances: the closed-form per-sample variance of
    :func:`variance_curves` times the evaluations of f per sample (1, or 4 for the
    measure-valued estimators). The toolbox returns sample variances only; the measured
    sample kurtosis of these estimates is at most 30, so a sample variance of 5000 or more
    draws has relative standard error :math:`\sqrt{(\kappa - 1)/n} \le 8\%` and 5 of them
    are 40 %: a wrong evaluation count (a factor 4) or a wrong estimator fails. (The delta
    method is left out: its kurtosis is in the hundreds.)"""
    tb = E.toolbox("cos", 1.0, 20_000, seeds=[seed, seed + 1])
    assert all(v.shape == (2, 2) for v in tb.values())
    c = E.variance_curves("cos", [1.0], MU, SIGMA)
    evaluations = {"score_function": 1, "pathwise": 1, "measure_valued": 4, "measure_valued+uncoupled": 4}
    for est, e in evaluations.items():
        np.testing.assert_allclose(tb[est], np.broadcast_to(e * c[est][0], (2, 2)), rtol=0.4, err_msg=est)


def test_rqmc_variance_falls_below_monte_carlo(seed):
    r"""Scrambled Sobol noise beats plain Monte Carlo by a wide margin at 64 points for the
    smooth :math:`\cos x` (measured: 40-200 times); with 50 repeats a sample variance is
    within a factor of about 2.5 of its expectation even at 5 standard errors, so a
    factor of 5 is required."""
    r = E.rqmc_variance("cos", 1.0, [16, 64], repeats=50)
    assert r["pathwise"].shape == (2, 2) and r["pathwise+qmc"].shape == (2, 2)
    assert (r["pathwise+qmc"][1] < r["pathwise"][1] / 5).all(), r


def test_bad_names():
    with pytest.raises(ValueError, match="name must be one of"):
        E.variance_curves("sin", [1.0])
    with pytest.raises(ValueError, match="name must be one of"):
        E.poincare_curves("sin", [1.0])


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0])
def test_antithetic_variances_closed_form(k):
    r"""For :math:`f = \cos kx`, :math:`\hat g_\mu(\varepsilon) = -k\sin(k\mu + k\sigma\varepsilon)`;
    the pair average is the even part, :math:`-k\sin(k\mu)\cos(k\sigma\varepsilon)`, with
    :math:`\operatorname{Var}\cos(a\varepsilon) = \tfrac12(1 + e^{-2a^2}) - e^{-a^2}
    = \tfrac12(1 - e^{-a^2})^2`, so the variance is
    :math:`\tfrac12 k^2\sin^2(k\mu)(1 - e^{-k^2\sigma^2})^2`. For :math:`\sigma`,
    :math:`\hat g_\sigma = \hat g_\mu\varepsilon`, and the pair average is
    :math:`-k\cos(k\mu)\,\varepsilon\sin(k\sigma\varepsilon)`; with
    :math:`\mathbb E[\varepsilon\sin a\varepsilon] = a e^{-a^2/2}` and
    :math:`\mathbb E[\varepsilon^2\sin^2 a\varepsilon] = \tfrac12(1 - (1 - 4a^2)e^{-2a^2})`,
    its variance is :math:`k^2\cos^2(k\mu)\bigl(\tfrac12(1 - (1-4a^2)e^{-2a^2}) - a^2 e^{-a^2}\bigr)`,
    :math:`a = k\sigma`."""
    mu, sigma = 1.0, 0.8
    a = k * sigma
    exact_mu = 0.5 * k**2 * math.sin(k * mu) ** 2 * (1 - math.exp(-(a**2))) ** 2
    exact_sigma = (k * math.cos(k * mu)) ** 2 * (
        0.5 * (1 - (1 - 4 * a**2) * math.exp(-2 * a**2)) - a**2 * math.exp(-(a**2))
    )
    v = E.antithetic_variances("cos", k, mu, sigma)
    np.testing.assert_allclose(v, [exact_mu, exact_sigma], rtol=1e-9)
    # and a pair is never worse than one sample (it averages two equal-law terms)
    plain = E.variance_curves("cos", [k], mu, sigma)["pathwise"][0]
    assert np.all(v <= plain + 1e-12)


def test_every_curve_is_named_by_a_catalogue_key_and_a_technique():
    """Chapter 5 names an estimator combined with a variance-reduction technique
    ``key+technique`` (``pathwise+qmc``, ``measure_valued+uncoupled``): the part before
    ``+`` is the estimator's catalogue key, so colours and labels come from one vocabulary."""
    from companion import catalogue

    keys = {entry.key for entry in catalogue.ENTRIES}
    torch.manual_seed(0)
    theta, m = E.rao_blackwell_problem()
    names = (set(E.CURVE_ESTIMATORS) | set(E.simulated_variances("cos", 1.0, 64))
             | set(E.toolbox("cos", 1.0, 64, seeds=[0])) | set(E.dimension_sweep([1, 2]))
             | set(E.simulated_dimension_variances(2, 64)) | set(E.rqmc_variance("cos", 1.0, [16], 2))
             | set(E.rao_blackwell_exact(theta, m)))
    names -= {"sizes", "gradient", "dims", "evaluations"}  # axes and costs, not estimators
    bad = sorted(n for n in names if n.partition("+")[0] not in keys)
    assert not bad, f"not a catalogue key (before '+'): {bad}"
