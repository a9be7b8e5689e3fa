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


def test_gradient_check_passes_the_normal_map(generator, stats):
    """x = mu + sigma eps, h = x^2: E[h] = mu^2 + sigma^2, gradient (2 mu, 2 sigma).

    The mean of 20000 per-draw gradients (2x, 2x eps) lies within 5 standard errors."""
    res = gradient_check(_normal_row(generator), lambda m, s: m**2 + s**2, [0.3, 1.7], 20_000,
                         stat=lambda x: x**2)
    for (mean, se, exact), name in zip(res, ("mu", "sigma")):
        stats.assert_within(mean, exact, se, f"d/d{name} E[x^2]")
    assert res[0][2].item() == pytest.approx(0.6) and res[1][2].item() == pytest.approx(3.4)


@pytest.mark.parametrize("mutation", ["wrong scale", "detached sigma"])
def test_gradient_check_catches_a_wrong_map(generator, stats, mutation):
    """A map with the wrong law (2 sigma eps) or a detached sigma misses the closed form by
    far more than 5 standard errors in the sigma gradient."""
    sample = (_normal_row(generator, scale_factor=2.0) if mutation == "wrong scale"
              else _normal_row(generator, detach_sigma=True))
    mean, se, exact = gradient_check(sample, lambda m, s: m**2 + s**2, [0.3, 1.7], 20_000,
                                     stat=lambda x: x**2)[1]
    stats.assert_differs(mean, exact, se, f"d/dsigma E[x^2] with a {mutation}")


def test_vector_parameter_and_ks(generator, stats):
    """Dirichlet-like: a vector parameter gets a per-entry gradient; and ks_p separates laws."""
    def sample(rate):
        u = torch.rand(rate.shape, generator=generator, dtype=torch.float64)
        return (-torch.log(u) / rate).sum(-1)          # sum of exponentials
    mean, se, exact = gradient_check(sample, lambda r: (1 / r).sum(), [torch.tensor([1.0, 2.0])], 20_000)[0]
    assert mean.shape == (2,)
    stats.assert_within(mean, exact, se, "d/drate E[sum of exponentials]")
    torch.testing.assert_close(exact, torch.tensor([-1.0, -0.25], dtype=torch.float64))
    a = Exponential(2.0).sample((3000,))
    assert ks_p(a, Exponential(2.0).sample((3000,))) > 1e-4
    assert ks_p(a, Normal(0.5, 0.5).sample((3000,))) < 1e-6


def test_bad_arguments(raises):
    with raises(ValueError, "values must name at least one parameter"):  # no value shown
        gradient_check(lambda: torch.zeros(3), lambda: torch.tensor(0.0), [], 3)
    with raises(ValueError, "stat(sample(...)) must have shape (4,)", "(4, 2)"):
        gradient_check(lambda m: m.unsqueeze(-1).expand(-1, 2), lambda m: m, [1.0], 4)
    with raises(TypeError, "a must be a tensor", "[1.0, 2.0]"):
        ks_p([1.0, 2.0], torch.zeros(3))
    with raises(ValueError, "n must", "got 1"):
        gradient_check(lambda m: m, lambda m: m, [1.0], 1)


def test_every_row_of_the_table_passes_both_checks(seed, stats):
    """Each row of chapter 4's table, with 4000 draws: its map's law agrees with the
    torch.distributions sampler (KS p-value above 1e-6 for every one of the 16 rows) and
    its mean pathwise gradient lies within 5 standard errors of the closed form's
    gradient, parameter entry by entry (15 rows have parameters): check_row reports the
    largest |z| = |mean - exact| / SE, a number of standard errors, so SE = 1 below."""
    from companion.experiments.reparam_table import KINDS, ROWS, check_row

    assert [r.kind for r in ROWS] == sorted((r.kind for r in ROWS), key=KINDS.index)
    checks = [check_row(row, 4000) for row in ROWS]
    assert len(checks) == 16
    assert min(c.ks_p for c in checks) > 1e-6, [(c.name, c.ks_p) for c in checks]
    with_grad = [c for c in checks if c.grad_z is not None]
    assert len(with_grad) == 15
    stats.assert_within([c.grad_z for c in with_grad], 0.0, 1.0, "largest gradient |z| of each row")
    assert checks[0].line().startswith("Normal(0.3, 1.7)          KS p ")


def test_check_row_catches_a_wrong_row(seed, stats):
    """Control: a Laplace map with twice the scale fails both checks (its law and its
    gradient of E[x^2] = mu^2 + 2 b^2)."""
    import dataclasses

    from companion.experiments.reparam_table import ROWS, check_row

    laplace = next(r for r in ROWS if r.name.startswith("Laplace"))
    wrong = dataclasses.replace(laplace, sample=lambda n, m, b: laplace.sample(n, m, 2 * b))
    c = check_row(wrong, 4000)
    assert c.ks_p < 1e-6
    stats.assert_above(c.grad_z, 0.0, 1.0, "largest gradient |z| of the wrong Laplace")


def test_check_row_bad_arguments(raises):
    from companion.experiments.reparam_table import ROWS, check_row

    with raises(TypeError, "row must be a Row", "str"):
        check_row("Normal", 100)
    with raises(ValueError, "n must", "got 1"):
        check_row(ROWS[0], 1)


def _kumaraswamy_expect(h, a, b):
    from scipy import integrate

    return integrate.quad(lambda x: h(x) * a * b * x ** (a - 1) * (1 - x**a) ** (b - 1), 0, 1, epsrel=1e-12)[0]


def _scipy_laws():
    """Each table row's law as SciPy sees it, as a function of the row's parameters:
    a callable h -> E[h(x)] (by SciPy's numerical integration)."""
    from scipy import stats as st

    def law(dist):
        return lambda h: dist.expect(h, epsrel=1e-12, limit=500)

    return {
        "Normal(0.3, 1.7)": lambda m, s: law(st.norm(m, s)),
        "Logistic(0.3, 0.8)": lambda m, s: law(st.logistic(m, s)),
        "Laplace(0.3, 0.9)": lambda m, b: law(st.laplace(m, b)),
        "Cauchy(0.3, 0.6)": lambda m, g: law(st.cauchy(m, g)),
        "StudentT(6, 0.3, 0.9)": lambda nu, m, s: law(st.t(nu, m, s)),
        "Uniform(-0.5, 2)": lambda a, b: law(st.uniform(a, b - a)),
        "Exponential(2)": lambda r: law(st.expon(scale=1 / r)),
        "Weibull(1.5, 0.7)": lambda s, k: law(st.weibull_min(k, scale=s)),
        "Gumbel(1, 2)": lambda m, b: law(st.gumbel_r(m, b)),
        "Pareto(1.2, 3)": lambda xm, a: law(st.pareto(a, scale=xm)),
        "Kumaraswamy(2, 5)": lambda a, b: (lambda h: _kumaraswamy_expect(h, a, b)),
        "LogNormal(0.2, 0.5)": lambda m, s: law(st.lognorm(s, scale=math.exp(m))),
        "Gamma(3, 1.5) = Erlang": lambda r: law(st.gamma(3, scale=1 / r)),
        "Beta(2.5, 0.7) via Gammas": lambda a1, a2: law(st.beta(a1, a2)),
    }


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # Gumbel's far tail
@pytest.mark.parametrize("scale", [1.0, 1.1])
def test_table_closed_forms_match_numerical_integration(scale):
    """Every row's closed form m(theta) = E[h(x)] (the one its gradient check differentiates)
    equals SciPy's numerical expectation of h under the same law, at the row's parameters and
    at parameters scaled by 1.1 (so the formula, not one value, is checked). The Dirichlet's
    first coordinate is Beta(c_1, c_2 + c_3)."""
    from scipy import stats as st

    from companion.experiments.reparam_table import ROWS

    laws = _scipy_laws()
    checked = 0
    for row in ROWS:
        if row.exact_mean is None:
            continue
        values = [scale * torch.as_tensor(v, dtype=torch.float64) for v in row.values]
        exact = float(row.exact_mean(*values))

        def h(x, row=row):
            return float(row.stat(torch.tensor(x, dtype=torch.float64)))

        if row.name.startswith("Dirichlet"):
            c = values[0].tolist()
            numeric = st.beta(c[0], c[1] + c[2]).expect(lambda x: x)
        else:
            numeric = laws[row.name](*[float(v) for v in values])(h)
        assert exact == pytest.approx(numeric, rel=1e-6), row.name
        checked += 1
    assert checked == 15


def _bivariate_args(n, generator, rho=0.8 / math.sqrt(2.0), s2=math.sqrt(2.0)):
    f64 = torch.float64
    u = torch.rand((n, 2), generator=generator, dtype=f64).clamp(1e-12, 1 - 1e-12)
    rho_t = torch.full((n,), rho, dtype=f64, requires_grad=True)
    s2_t = torch.full((n,), s2, dtype=f64, requires_grad=True)
    return torch.tensor([1.0, -0.5], dtype=f64), torch.tensor(1.0, dtype=f64), rho_t, s2_t, u


def test_bivariate_maps_agree_and_have_the_law(generator, stats):
    """The sequential and Cholesky maps give the same x and the same per-sample gradients,
    the closed form's; and x has mean m and covariance [[1, 0.8], [0.8, 2]]."""
    from companion.experiments import closed_forms as cf
    from companion.experiments.reparam_table import bivariate_normal_maps
    n = 20_000
    m, s1, rho, s2, u = _bivariate_args(n, generator)
    x_seq, x_chol, z = bivariate_normal_maps(m, s1, rho, s2, u)
    assert x_seq.shape == x_chol.shape == z.shape == (n, 2)
    assert torch.allclose(x_seq, x_chol, atol=1e-9)
    g_seq = torch.autograd.grad(x_seq[:, 1].sum(), (rho, s2), retain_graph=True)
    g_chol = torch.autograd.grad(x_chol[:, 1].sum(), (rho, s2))
    closed = cf.bivariate_normal_x2_gradients(z[:, 0].detach(), z[:, 1].detach(),
                                              rho[0].item(), s2[0].item())
    for a, b, c in zip(g_seq, g_chol, closed):
        assert torch.allclose(a, b, atol=1e-9)
        assert torch.allclose(a, torch.as_tensor(c, dtype=a.dtype), atol=1e-9)
    x = x_seq.detach()
    stats.assert_mean(x, m, "mean of x")
    stats.assert_mean((x[:, 0] - 1.0) * (x[:, 1] + 0.5), 0.8, "covariance of x1, x2")
    stats.assert_mean((x[:, 1] + 0.5) ** 2, 2.0, "variance of x2")


def test_bivariate_maps_catch_a_wrong_correlation(generator, stats):
    """Fed the wrong rho, the covariance check fails (the test above can fail)."""
    from companion.experiments.reparam_table import bivariate_normal_maps
    m, s1, rho, s2, u = _bivariate_args(20_000, generator, rho=0.3)
    x = bivariate_normal_maps(m, s1, rho, s2, u)[0].detach()
    stats.assert_mean_differs((x[:, 0] - 1.0) * (x[:, 1] + 0.5), 0.8, "covariance")


def test_bivariate_maps_bad_arguments(raises):
    from companion.experiments.reparam_table import bivariate_normal_maps
    f64 = torch.float64
    m, s1 = torch.zeros(2, dtype=f64), torch.tensor(1.0, dtype=f64)
    u = torch.full((4, 2), 0.5, dtype=f64)
    with raises(ValueError, "rho", "1.0"):
        bivariate_normal_maps(m, s1, torch.tensor(1.0, dtype=f64), s1, u)
    with raises(ValueError, "s2", "-1.0"):
        bivariate_normal_maps(m, s1, torch.tensor(0.5, dtype=f64), -s1, u)
    with raises(ValueError, "u", "(4,)"):
        bivariate_normal_maps(m, s1, torch.tensor(0.5, dtype=f64), s1, u[:, 0])
    with raises(TypeError, "rho", "float"):
        bivariate_normal_maps(m, s1, 0.5, s1, u)
