r"""Each reparameterized sampler: the map it claims, the distribution it claims, the gradients.

For every sampler :math:`x = g_\theta(\varepsilon)` the tests check

* the map itself, with the base noise passed in;
* that :math:`x` is equal in distribution to ``torch.distributions``' own sampler:
  the first two moments within 5 standard errors, a one-sample Kolmogorov-Smirnov test
  against the exact CDF and a two-sample one against torch's samples;
* that the pathwise gradient through it is unbiased for a closed-form
  :math:`\nabla_\theta \mathbb E[f(x)]`. Per-sample gradients come from giving each
  sample its own copy of the parameters (a leaf of shape ``(n, ...)``), or from
  ``torch.func.jacfwd`` with the noise fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special
from torch.distributions import (
    Cauchy,
    Exponential,
    Gumbel,
    Laplace,
    MultivariateNormal,
    Normal,
    Uniform,
    Weibull,
)
from torch.func import jacfwd

from companion import reparam

N = 100_000


def np_cdf(dist):
    """A float64 NumPy CDF from a torch distribution (for scipy's KS test)."""

    def cdf(x):
        with torch.no_grad():
            return dist.cdf(torch.as_tensor(x, dtype=torch.float64)).numpy()

    return cdf


# ---------------------------------------------------------------------------------------
# Gaussian
# ---------------------------------------------------------------------------------------


def test_gaussian_is_mu_plus_sigma_eps():
    r""":math:`x = \mu + \sigma\varepsilon`, :math:`\partial x/\partial\mu = 1`, :math:`\partial x/\partial\sigma = \varepsilon`."""
    mu = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    sigma = torch.tensor([2.0, 0.3, 1.0], requires_grad=True)
    eps = torch.tensor([0.1, -2.0, 1.5])
    x = reparam.gaussian(mu, sigma, eps=eps)
    torch.testing.assert_close(x, mu.detach() + sigma.detach() * eps, rtol=0, atol=0)
    dmu, dsigma = torch.autograd.grad(x.sum(), (mu, sigma))
    torch.testing.assert_close(dmu, torch.ones(3))
    torch.testing.assert_close(dsigma, eps)


def test_gaussian_shapes_and_generator():
    """``sample_shape`` leads; mu and sigma broadcast; a generator makes the draw reproducible."""
    x = reparam.gaussian(torch.zeros(3), 2.0, sample_shape=(4, 5))
    assert x.shape == (4, 5, 3)
    assert reparam.gaussian(0.0, 1.0, sample_shape=7).shape == (7,)
    assert reparam.gaussian(0.0, 1.0).shape == ()
    a = reparam.gaussian(1.0, 2.0, sample_shape=10, generator=torch.Generator().manual_seed(3))
    b = reparam.gaussian(1.0, 2.0, sample_shape=10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("mu,sigma", [(0.3, 2.5), (-1.0, 0.4)])
def test_gaussian_equal_in_distribution_to_normal(mu, sigma, seed, stats):
    r""":math:`\mu + \sigma\varepsilon \sim N(\mu, \sigma^2)`: mean :math:`\mu`, variance
    :math:`\sigma^2` (fourth central moment :math:`3\sigma^4`), the normal CDF, and torch's
    ``Normal(mu, sigma).sample`` (two-sample KS). A :math:`\sigma \ne 1` distinguishes
    :math:`\sigma` from :math:`\sigma^2`."""
    x = reparam.gaussian(mu, sigma, sample_shape=N)
    ref = Normal(mu, sigma).sample((N,))
    stats.assert_mean(x, mu, "mean")
    stats.assert_var(x, sigma**2, 3 * sigma**4, "variance")
    stats.assert_ks(x, np_cdf(Normal(torch.tensor(mu).double(), torch.tensor(sigma).double())), "gaussian")
    stats.assert_ks_2samp(x, ref, "gaussian vs Normal.sample")


def test_gaussian_pathwise_gradient_unbiased(seed, stats):
    r""":math:`\mathbb E[(x - k)^2] = (\mu - k)^2 + \sigma^2`, so :math:`\nabla = (2(\mu - k), 2\sigma)`.
    Each sample gets its own leaf copy of :math:`(\mu, \sigma)`, so ``.grad`` holds per-sample gradients."""
    mu0, sigma0, k = 0.7, 1.3, -0.2
    mu = torch.full((N,), mu0, requires_grad=True)
    sigma = torch.full((N,), sigma0, requires_grad=True)
    ((reparam.gaussian(mu, sigma) - k) ** 2).sum().backward()
    g = torch.stack([mu.grad, sigma.grad], 1)
    stats.assert_mean(g, [2 * (mu0 - k), 2 * sigma0], "gradient through reparam.gaussian")


# ---------------------------------------------------------------------------------------
# Multivariate Gaussian: Cholesky factor and symmetric square root
# ---------------------------------------------------------------------------------------

D = 3
MU = torch.tensor([0.5, -1.0, 0.25])
L = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.2, 0.6]])
SIGMA = L @ L.T
A = torch.tensor([[1.0, 0.5, -0.3], [0.2, 2.0, 0.4], [-0.6, 0.1, 0.8]])
PROJECTIONS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, -2.0, 0.5], [0.3, 0.3, 0.3]])


def sample_cholesky(n, **kw):
    return reparam.mvn_cholesky(MU, L, sample_shape=n, **kw)


def sample_sqrtm(n, **kw):
    return reparam.mvn_sqrtm(MU, SIGMA, sample_shape=n, **kw)


def test_mvn_cholesky_is_mu_plus_L_z():
    z = torch.randn(6, D)
    torch.testing.assert_close(reparam.mvn_cholesky(MU, L, z=z), MU + (L @ z.T).T)


def test_sqrtm_psd_is_the_symmetric_square_root():
    r""":math:`S = \Sigma^{1/2}` is symmetric, positive definite and :math:`SS = \Sigma`; it
    agrees with ``scipy.linalg.sqrtm``. For a diagonal :math:`\Sigma` it is the entrywise root."""
    from scipy.linalg import sqrtm

    S = reparam.sqrtm_psd(SIGMA.double())
    torch.testing.assert_close(S, S.T)
    torch.testing.assert_close(S @ S, SIGMA.double())
    assert torch.linalg.eigvalsh(S).min() > 0
    np.testing.assert_allclose(S.numpy(), np.real(sqrtm(SIGMA.double().numpy())), atol=1e-10)
    torch.testing.assert_close(reparam.sqrtm_psd(torch.diag(torch.tensor([4.0, 9.0]))), torch.diag(torch.tensor([2.0, 3.0])))


def test_mvn_sqrtm_is_mu_plus_root_z():
    z = torch.randn(6, D)
    root = reparam.sqrtm_psd(SIGMA)
    torch.testing.assert_close(reparam.mvn_sqrtm(MU, SIGMA, z=z), MU + (root @ z.T).T)


def test_sqrtm_derivative():
    r"""Derivative of :math:`\Sigma \mapsto \Sigma^{1/2}`: finite differences (reverse and forward mode),
    and at :math:`\Sigma = I` (every eigenvalue repeated) the exact :math:`dS = d\Sigma/2`,
    from :math:`S\,dS + dS\,S = d\Sigma` with :math:`S = I`."""
    X = torch.randn(D, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(x):
        return reparam.sqrtm_psd(x @ x.T + 0.5 * torch.eye(D, dtype=torch.float64))

    assert torch.autograd.gradcheck(f, (X.requires_grad_(),), check_forward_ad=True)
    dsig = torch.tensor([[1.0, 0.3, -0.2], [0.3, -0.5, 0.7], [-0.2, 0.7, 2.0]], dtype=torch.float64)
    eye = torch.eye(D, dtype=torch.float64)
    _, tangent = torch.func.jvp(reparam.sqrtm_psd, (eye,), (dsig,))
    torch.testing.assert_close(tangent, dsig / 2)
    eye.requires_grad_()
    (grad,) = torch.autograd.grad((reparam.sqrtm_psd(eye) * dsig).sum(), eye)
    torch.testing.assert_close(grad, dsig / 2)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("sampler", [sample_cholesky, sample_sqrtm], ids=["cholesky", "sqrtm"])
def test_mvn_equal_in_distribution(sampler, seed, stats):
    r"""Equal in distribution to ``MultivariateNormal(mu, Sigma)``.

    Mean :math:`\mu`; each covariance entry :math:`\hat\Sigma_{ij}` within 5 standard errors,
    :math:`\operatorname{Var}[(x_i - \mu_i)(x_j - \mu_j)] = \Sigma_{ii}\Sigma_{jj} + \Sigma_{ij}^2`
    (Isserlis); and for a few directions :math:`w`, :math:`w^\top x \sim N(w^\top\mu, w^\top\Sigma w)`
    (one-sample KS) and torch's own samples projected the same way (two-sample KS).
    """
    x = sampler(N)
    assert x.shape == (N, D)
    ref = MultivariateNormal(MU, covariance_matrix=SIGMA).sample((N,))
    stats.assert_mean(x, MU, "mvn mean")
    c = (x - MU).double()
    prods = (c.unsqueeze(2) * c.unsqueeze(1)).reshape(N, -1)
    s = SIGMA.double()
    var_prod = (torch.diagonal(s).unsqueeze(1) * torch.diagonal(s).unsqueeze(0) + s**2).reshape(-1)
    se = torch.sqrt(var_prod / N)  # closed-form standard error of each covariance entry
    stats.assert_within(prods.mean(0), s.reshape(-1), se, "covariance entries (row-major)", n=N)
    for w in PROJECTIONS:
        wx = x.double() @ w.double()
        m = float(w.double() @ MU.double())
        v = float(w.double() @ s @ w.double())
        stats.assert_ks(wx, np_cdf(Normal(torch.tensor(m, dtype=torch.float64), torch.tensor(math.sqrt(v), dtype=torch.float64))), f"w={w.tolist()}")
        stats.assert_ks_2samp(wx, ref.double() @ w.double(), f"vs MultivariateNormal.sample, w={w.tolist()}")


@pytest.mark.parametrize("which", ["cholesky", "sqrtm"])
def test_mvn_gradient_wrt_mean(which, seed, stats):
    r""":math:`\mathbb E[x^\top A x] = \mu^\top A\mu + \operatorname{tr}(A\Sigma)`, so
    :math:`\nabla_\mu = (A + A^\top)\mu`. The per-sample gradient is :math:`(A + A^\top)x`."""
    mu = MU.expand(N, D).clone().requires_grad_()
    x = reparam.mvn_cholesky(mu, L) if which == "cholesky" else reparam.mvn_sqrtm(mu, SIGMA)
    torch.einsum("ni,ij,nj->n", x, A, x).sum().backward()
    stats.assert_mean(mu.grad, (A + A.T) @ MU, f"{which}: gradient w.r.t. mu")


def test_mvn_cholesky_gradient_wrt_L(seed, stats):
    r"""With :math:`x = \mu + Lz`: :math:`\nabla_L \operatorname{tr}(ALL^\top) = (A + A^\top)L`.

    Per sample, :math:`\partial f/\partial L_{jk} = ((A + A^\top)x)_j z_k`, whose mean is
    :math:`((A+A^\top)\mathbb E[xz^\top])_{jk} = ((A+A^\top)L)_{jk}`. ``jacfwd`` over L with z
    fixed gives all N per-sample gradients.
    """
    z = torch.randn(N, D)

    def f(scale_tril):
        x = reparam.mvn_cholesky(MU, scale_tril, z=z)
        return torch.einsum("ni,ij,nj->n", x, A, x)

    g = jacfwd(f)(L)
    stats.assert_mean(g.reshape(N, -1), ((A + A.T) @ L).reshape(-1), "gradient w.r.t. L")


def test_mvn_sqrtm_gradient_wrt_covariance(seed, stats):
    r"""With :math:`x = \mu + \Sigma^{1/2}z`: :math:`\nabla_\Sigma \operatorname{tr}(A\Sigma) = \tfrac12(A + A^\top)`.

    :math:`\Sigma` is symmetric, so only symmetric perturbations :math:`d\Sigma` count and
    :math:`d\operatorname{tr}(A\Sigma) = \langle A, d\Sigma\rangle = \langle \tfrac12(A + A^\top), d\Sigma\rangle`:
    the gradient is the symmetric part of :math:`A` (the companion's square root returns
    that symmetric gradient). Per sample, :math:`dS` solves :math:`S\,dS + dS\,S = d\Sigma` and
    :math:`dx = dS\,z`; ``jacfwd`` with z fixed gives every sample's gradient.
    """
    z = torch.randn(N, D)

    def f(cov):
        x = reparam.mvn_sqrtm(MU, cov, z=z)
        return torch.einsum("ni,ij,nj->n", x, A, x)

    g = jacfwd(f)(SIGMA)
    assert torch.allclose(g, g.transpose(1, 2), atol=1e-5)
    stats.assert_mean(g.reshape(N, -1), (0.5 * (A + A.T)).reshape(-1), "gradient w.r.t. Sigma")


# ---------------------------------------------------------------------------------------
# Exponential
# ---------------------------------------------------------------------------------------

RATE = 1.7


def test_exponential_is_inverse_cdf():
    r""":math:`x = -\log(u)/\lambda` and :math:`\partial x/\partial\lambda = \log(u)/\lambda^2 = -x/\lambda`."""
    u = torch.tensor([0.1, 0.5, 0.99])
    rate = torch.tensor(RATE, requires_grad=True)
    x = reparam.exponential(rate, u=u)
    torch.testing.assert_close(x, -torch.log(u) / RATE)
    (dx,) = torch.autograd.grad(x.sum(), rate)
    torch.testing.assert_close(dx, (-x / RATE).sum().detach())


def test_exponential_equal_in_distribution(seed, stats):
    r""":math:`-\log(u)/\lambda \sim \operatorname{Exp}(\lambda)`: mean :math:`1/\lambda`, variance
    :math:`1/\lambda^2`, fourth central moment :math:`9/\lambda^4`; the CDF
    :math:`1 - e^{-\lambda x}`; torch's ``Exponential.sample`` (two-sample KS)."""
    x = reparam.exponential(RATE, sample_shape=N)
    stats.assert_mean(x, 1 / RATE, "mean")
    stats.assert_var(x, 1 / RATE**2, 9 / RATE**4, "variance")
    stats.assert_ks(x, lambda t: 1 - np.exp(-RATE * np.asarray(t)), "exponential")
    stats.assert_ks_2samp(x, Exponential(RATE).sample((N,)), "exponential vs Exponential.sample")


def test_exponential_gradient_unbiased(seed, stats):
    r""":math:`\mathbb E[x^2] = 2/\lambda^2`, so :math:`\partial_\lambda = -4/\lambda^3`."""
    rate = torch.full((N,), RATE, requires_grad=True)
    (reparam.exponential(rate) ** 2).sum().backward()
    stats.assert_mean(rate.grad, -4 / RATE**3, "gradient through reparam.exponential")


# ---------------------------------------------------------------------------------------
# Generic inverse CDF
# ---------------------------------------------------------------------------------------

# name, constructor from a float64 parameter vector, parameters. All have icdf in torch 2.13.
ICDF_CASES = [
    ("Normal", lambda p: Normal(p[0], p[1]), [0.5, 2.0]),
    ("Laplace", lambda p: Laplace(p[0], p[1]), [-1.0, 0.7]),
    ("Cauchy", lambda p: Cauchy(p[0], p[1]), [0.2, 1.5]),
    ("Gumbel", lambda p: Gumbel(p[0], p[1]), [1.0, 2.0]),
    ("Weibull", lambda p: Weibull(p[0], p[1]), [1.5, 2.5]),
    ("Exponential", lambda p: Exponential(p[0]), [1.7]),
    ("Uniform", lambda p: Uniform(p[0], p[1]), [-1.0, 3.0]),
]
ICDF_IDS = [c[0] for c in ICDF_CASES]
HAS_MOMENTS = {"Normal", "Laplace", "Gumbel", "Weibull", "Exponential", "Uniform"}


@pytest.mark.parametrize("name,make,params", ICDF_CASES, ids=ICDF_IDS)
def test_inverse_cdf_equal_in_distribution(name, make, params, seed, stats):
    r""":math:`F^{-1}(u) \sim F`: one-sample KS against ``dist.cdf``, two-sample KS against
    ``dist.sample``, and, where they exist (not Cauchy), mean and variance against
    ``dist.mean``/``dist.variance`` (the variance's standard error from the sample's fourth
    central moment)."""
    dist = make(torch.tensor(params))
    x = reparam.inverse_cdf(dist, sample_shape=N)
    assert x.shape == (N,) and torch.isfinite(x).all()
    stats.assert_ks(x, np_cdf(make(torch.tensor(params, dtype=torch.float64))), name)
    stats.assert_ks_2samp(x, dist.sample((N,)), f"{name} vs its sample()")
    if name in HAS_MOMENTS:
        stats.assert_mean(x, float(dist.mean), f"{name} mean")
        c = x.double() - x.double().mean()
        stats.assert_var(x, float(dist.variance), float((c**4).mean()), f"{name} variance")
    else:  # Cauchy: no moments; its median is loc, SE 1/(2 f(loc) sqrt(n)) = pi*scale/(2 sqrt(n))
        se = math.pi * params[1] / (2 * math.sqrt(N))
        stats.assert_within(float(x.median()), params[0], se, f"{name} median", n=N)


@pytest.mark.parametrize("name,make,params", ICDF_CASES, ids=ICDF_IDS)
def test_inverse_cdf_gradient_is_implicit_derivative(name, make, params):
    r"""Differentiating :math:`F_\theta(x) = u` at fixed u:
    :math:`\partial x/\partial\theta = -\partial_\theta F_\theta(x)/p_\theta(x)`.
    Autograd through ``inverse_cdf`` must equal this, computed from ``cdf`` and ``log_prob``."""
    u = torch.tensor([0.01, 0.2, 0.43, 0.77, 0.999], dtype=torch.float64)  # not 0.5: Laplace.cdf has a kink for autograd at the median
    theta = torch.tensor(params, dtype=torch.float64, requires_grad=True)
    x = reparam.inverse_cdf(make(theta), u=u)
    jac = torch.stack([torch.autograd.grad(xi, theta, retain_graph=True)[0] for xi in x])
    x0 = x.detach()
    theta2 = torch.tensor(params, dtype=torch.float64, requires_grad=True)
    dist = make(theta2)
    dF = torch.stack([torch.autograd.grad(dist.cdf(xi), theta2, retain_graph=True)[0] for xi in x0])
    density = dist.log_prob(x0).exp().detach()
    torch.testing.assert_close(jac, -dF / density.unsqueeze(1), rtol=1e-7, atol=1e-9)


def test_inverse_cdf_weibull_gradient_unbiased(seed, stats):
    r"""Weibull(scale :math:`\lambda`, concentration :math:`k`): :math:`\mathbb E x = \lambda\Gamma(1 + 1/k)`, so
    :math:`\partial_\lambda = \Gamma(1+1/k)` and
    :math:`\partial_k = -\lambda\Gamma(1+1/k)\,\psi(1+1/k)/k^2`."""
    lam, k = 1.5, 2.5
    scale = torch.full((N,), lam, requires_grad=True)
    conc = torch.full((N,), k, requires_grad=True)
    reparam.inverse_cdf(Weibull(scale, conc)).sum().backward()
    gam = math.gamma(1 + 1 / k)
    expected = [gam, -lam * gam * special.digamma(1 + 1 / k) / k**2]
    stats.assert_mean(torch.stack([scale.grad, conc.grad], 1), expected, "Weibull gradient")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,make,params", ICDF_CASES, ids=ICDF_IDS)
def test_inverse_cdf_finite_and_monotone_at_u_edges(name, make, params, dtype):
    r"""u exactly 0 and 1 give finite samples, still in increasing order (F^{-1} is monotone),
    with finite gradients. (Without a symmetric clamp, Normal and Laplace gave -inf at u = 0
    and Cauchy a huge *positive* value, because :math:`2u - 1` and :math:`u - 1/2` round
    a tiny u away.)"""
    theta = torch.tensor(params, dtype=dtype, requires_grad=True)
    u = torch.tensor([0.0, 1e-30, 1e-4, 0.5, 1 - 1e-4, 1.0], dtype=dtype)
    x = reparam.inverse_cdf(make(theta), u=u)
    assert torch.isfinite(x).all(), f"{name}: {x}"
    assert (x[1:] >= x[:-1]).all(), f"{name}: not increasing in u: {x}"
    (grad,) = torch.autograd.grad(x.sum(), theta)
    assert torch.isfinite(grad).all(), f"{name}: gradient {grad}"


@pytest.mark.parametrize("name,make,params", ICDF_CASES, ids=ICDF_IDS)
def test_inverse_cdf_drawn_u_of_zero_stays_finite(name, make, params, monkeypatch):
    """``torch.rand`` can return exactly 0 (probability 2^-24 per float32 draw); the drawn path must
    stay finite too. Force it to return 0 and the largest float below 1."""
    real_rand = torch.rand

    def edge_rand(*args, **kwargs):
        out = real_rand(*args, **kwargs)
        out[..., 0::2] = 0.0
        out[..., 1::2] = 1.0 - torch.finfo(out.dtype).eps / 2
        return out

    monkeypatch.setattr(torch, "rand", edge_rand)
    x = reparam.inverse_cdf(make(torch.tensor(params)), sample_shape=(4,))
    assert torch.isfinite(x).all(), f"{name}: {x}"
    assert (x[0::2] < x[1::2]).all()


def test_exponential_finite_at_u_edges():
    """u exactly 0 and 1 give finite, positive samples and finite gradients."""
    for dtype in (torch.float32, torch.float64):
        rate = torch.tensor(RATE, dtype=dtype, requires_grad=True)
        x = reparam.exponential(rate, u=torch.tensor([0.0, 1.0], dtype=dtype))
        assert torch.isfinite(x).all() and (x >= 0).all() and x[0] > x[1]
        (grad,) = torch.autograd.grad(x.sum(), rate)
        assert torch.isfinite(grad)


# ---------------------------------------------------------------------------------------
# Low precision, and base noise whose shape does not match the batch
# ---------------------------------------------------------------------------------------


LOW = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_exponential_has_mean_one(dtype, seed, stats):
    r""":math:`-\log u` with :math:`u` drawn in bfloat16 has mean 1.178, not 1: the grid of
    :math:`u` puts mass about 1/500 near 0. Drawn in float32 and rounded, the mean is 1
    (Exp(1): mean 1, variance 1, :math:`\mu_4 = 9`)."""
    x = reparam.exponential(torch.tensor(1.0, dtype=dtype), sample_shape=1_000_000)
    assert x.dtype == dtype and torch.isfinite(x).all()
    stats.assert_mean(x.double(), 1.0, f"{dtype} Exp(1) mean")
    stats.assert_var(x.double(), 1.0, 9.0, f"{dtype} Exp(1) variance")


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_gaussian_and_icdf(dtype, seed, stats):
    """N(0, 1) in low precision: mean 0, variance 1 (mu_4 = 3), by location-scale and by icdf."""
    x = reparam.gaussian(torch.tensor(0.0, dtype=dtype), 1.0, sample_shape=400_000)
    y = reparam.inverse_cdf(Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype)), sample_shape=400_000)
    for name, s in (("gaussian", x), ("inverse_cdf", y)):
        assert s.dtype == dtype
        stats.assert_mean(s.double(), 0.0, f"{dtype} {name} mean")
        stats.assert_var(s.double(), 1.0, 3.0, f"{dtype} {name} variance")


def test_check_what_the_caller_passed(raises):
    """sigma = 1e-8 is valid with a float16 mean (computed in float32, the sample rounds to mu);
    1e-50 cannot be a float32 and says so, instead of 'got 0.0'."""
    x = reparam.gaussian(torch.tensor(1.0, dtype=torch.float16), 1e-8, sample_shape=5)
    assert x.dtype == torch.float16 and (x == 1).all()
    with raises(ValueError, "sigma=1e-50", "float32"):
        reparam.gaussian(torch.tensor(0.0), 1e-50)
    with raises(ValueError, "rate=1e+40", "float32"):
        reparam.exponential(1e40)


def test_mixed_dtypes_are_promoted():
    """float32 and float64 arguments give a float64 sample, as torch's arithmetic would."""
    z = torch.randn(7, 2, dtype=torch.float64)
    L = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    x = reparam.mvn_cholesky(torch.zeros(2, dtype=torch.float64), L, z=z)
    assert x.dtype == torch.float64
    torch.testing.assert_close(x, z @ L.double().T)
    x = reparam.mvn_cholesky(torch.zeros(2), L.double(), z=z.float())
    assert x.dtype == torch.float64
    cov = L @ L.T
    x = reparam.mvn_sqrtm(torch.zeros(2, dtype=torch.float64), cov, z=z)
    assert x.dtype == torch.float64
    torch.testing.assert_close(x, z @ reparam.sqrtm_psd(cov.double()))


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_matrix_roots(dtype):
    """eigh and Cholesky have no float16 kernels: computed in float32 and rounded."""
    cov = torch.tensor([[2.0, 0.3], [0.3, 1.0]])
    z = torch.randn(5, 2)
    x = reparam.mvn_sqrtm(torch.zeros(2, dtype=dtype), cov.to(dtype), z=z.to(dtype))
    assert x.dtype == dtype
    torch.testing.assert_close(x.float(), z.to(dtype).float() @ reparam.sqrtm_psd(cov.to(dtype).float()), atol=2e-2, rtol=2e-2)
    assert reparam.sqrtm_psd(cov.to(dtype)).dtype == dtype
    L = torch.linalg.cholesky(cov).to(dtype)
    assert reparam.mvn_cholesky(torch.zeros(2, dtype=dtype), L, z=z.to(dtype)).dtype == dtype


def test_noise_must_have_the_batch_shape(raises):
    """A (4, 1) eps against a (3,) mean would give 4 rows of one repeated draw."""
    with raises(ValueError, "eps", "(4, 1)", "(3,)"):
        reparam.gaussian(torch.zeros(3), 1.0, eps=torch.randn(4, 1))
    assert reparam.gaussian(torch.zeros(3), 1.0, eps=torch.randn(4, 3)).shape == (4, 3)
    with raises(ValueError, "eps", "(5, 3)"):
        reparam.gaussian(torch.zeros(3), 1.0, eps=torch.randn(4, 3), sample_shape=5)
    with raises(ValueError, "mu", "sigma", "(3,)", "(4,)"):
        reparam.gaussian(torch.zeros(3), torch.ones(4))
    with raises(ValueError, "u", "(5, 1)", "(3,)"):
        reparam.exponential(torch.ones(3), u=torch.rand(5, 1))
    with raises(ValueError, "u", "batch_shape", "(3,)"):
        reparam.inverse_cdf(Normal(torch.zeros(3), 1.0), u=torch.rand(5, 1))
    with raises(ValueError, "z", "(2, 3)"):
        reparam.mvn_cholesky(torch.zeros(2, 3), torch.eye(3), z=torch.randn(4, 1, 3))
    with raises(TypeError, "generator", "str"):
        reparam.gaussian(0.0, 1.0, generator="seed")
