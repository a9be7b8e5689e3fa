r"""Figure data for the measure-valued chapter: exact variance curves, the dimension sweep,
variance reduction measured, and a Rao-Blackwellisation example.

**The Gaussian problems** are Mohamed et al. (2020)'s: :math:`x \sim \mathcal N(\mu, \sigma^2)`,
:math:`f \in \{(x-k)^2,\ e^{-kx^2},\ \cos kx\}`, gradients with respect to :math:`(\mu, \sigma)`.
Every variance here is an integral over the estimator's noise, computed by Gauss-Legendre
quadrature in float64 on a truncated range (the densities are below :math:`10^{-30}` outside
it):

* :math:`\varepsilon \sim \mathcal N(0,1)` on :math:`[-14, 14]`, for the score function
  :math:`(f\,\varepsilon/\sigma,\ f\,(\varepsilon^2-1)/\sigma)` and the pathwise estimator
  :math:`(f'(x),\ f'(x)\varepsilon)`;
* the Rayleigh :math:`R` on :math:`[0, 14]` for the measure-valued mean,
  :math:`c\,(f(\mu+\sigma R) - f(\mu-\sigma R'))`, :math:`c = 1/(\sigma\sqrt{2\pi})`;
* the double-sided Maxwell :math:`M` on :math:`[-14, 14]` and :math:`U` on :math:`[0, 1]`
  for the measure-valued scale, :math:`(f(\mu+\sigma M) - f(\mu+\sigma UM))/\sigma`.

The score function with the **optimal constant baseline**, per coordinate with score
:math:`s`: :math:`b^* = \mathbb E[f s^2]/\mathbb E[s^2]`, variance
:math:`\mathbb E[f^2 s^2] - \mathbb E[f s^2]^2/\mathbb E[s^2] - g^2`. With the
**delta-method control variate** (:mod:`companion.control_variates`): :math:`(f - \tilde f)s`
plus a constant for :math:`\beta = 1`; :math:`(1-\rho^2)\operatorname{Var}[fs]` for the optimal
:math:`\beta^*`, :math:`\rho` the correlation of :math:`fs` and :math:`\tilde f s`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import roots_legendre
from torch.distributions import Categorical, Independent, Normal

from companion import control_variates as cv
from companion.estimators import pathwise, score_function
from companion.experiments.closed_forms import GAUSSIAN_TEST_FUNCTIONS, test_function
from companion.measure_valued import measure_valued
from companion.validation import check_choice, check_positive_int

__all__ = [
    "FUNCTIONS",
    "CURVE_ESTIMATORS",
    "test_functions",
    "weak_derivative_densities",
    "variance_curves",
    "simulated_variances",
    "dimension_sweep",
    "simulated_dimension_variances",
    "toolbox",
    "rqmc_variance",
    "antithetic_variances",
    "rao_blackwell_problem",
    "rao_blackwell_exact",
    "rao_blackwell_simulated",
    "poincare_curves",
]

FUNCTIONS = GAUSSIAN_TEST_FUNCTIONS  # ("quadratic", "exp", "cos"), as chapters 3 and 4 use them
#: The estimators of the variance curves (canonical names, with their variance reduction).
CURVE_ESTIMATORS = (
    "score_function",
    "score_function[baseline=b]",
    "score_function+delta",
    "score_function+delta_optimal",
    "pathwise",
    "measure_valued",
    "measure_valued+uncoupled",
)

_L = 14.0


def _nodes(a: float, b: float, n: int):
    x, w = roots_legendre(n)  # fast for large n (numpy's leggauss is cubic in n)
    return 0.5 * (b - a) * x + 0.5 * (b + a), 0.5 * (b - a) * w


_EPS, _WE = _nodes(-_L, _L, 1200)
_WE = _WE * np.exp(-0.5 * _EPS**2) / math.sqrt(2 * math.pi)
_R, _WR = _nodes(0.0, _L, 800)
_WR = _WR * _R * np.exp(-0.5 * _R**2)
_M, _WM = _nodes(-_L, _L, 1200)
_WM = _WM * _M**2 * np.exp(-0.5 * _M**2) / math.sqrt(2 * math.pi)
_U, _WU = _nodes(0.0, 1.0, 96)


def test_functions(name: str, k: float):
    """NumPy ``(f, f', f'')`` of the test function ``name`` with constant ``k``."""
    check_choice("name", name, FUNCTIONS)
    if name == "quadratic":
        return (lambda x: (x - k) ** 2), (lambda x: 2.0 * (x - k)), (lambda x: 2.0 + 0.0 * x)
    if name == "exp":
        return (
            (lambda x: np.exp(-k * x**2)),
            (lambda x: -2.0 * k * x * np.exp(-k * x**2)),
            (lambda x: (4.0 * k**2 * x**2 - 2.0 * k) * np.exp(-k * x**2)),
        )
    return (lambda x: np.cos(k * x)), (lambda x: -k * np.sin(k * x)), (lambda x: -(k**2) * np.cos(k * x))


test_functions.__test__ = False


def torch_function(name: str, k: float):
    """The same test function as a torch function of a batch (for the estimators):
    :func:`companion.experiments.closed_forms.test_function`, the one definition."""
    return test_function(name, k)


def weak_derivative_densities(x: np.ndarray, mu: float = 0.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""Densities of the weak derivatives of :math:`\mathcal N(\mu, \sigma^2)` on the grid ``x``.

    ``dmu`` :math:`= \partial_\mu p = \frac{x-\mu}{\sigma^2} p`; ``plus_mu``/``minus_mu``, the
    Rayleigh halves :math:`\frac{|x-\mu|}{\sigma^2} e^{-(x-\mu)^2/2\sigma^2}` on either side,
    with ``c_mu`` :math:`= 1/(\sigma\sqrt{2\pi})`; ``dsigma`` :math:`= \partial_\sigma p`,
    ``maxwell`` (:math:`p^+`) and ``normal`` (:math:`p^-`), ``c_sigma`` :math:`= 1/\sigma`.
    """
    z = (x - mu) / sigma
    phi = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    p = phi / sigma
    rayleigh = np.abs(z) * np.exp(-0.5 * z**2) / sigma
    return {
        "normal": p,
        "dmu": z / sigma * p,
        "plus_mu": np.where(z > 0, rayleigh, 0.0),
        "minus_mu": np.where(z < 0, rayleigh, 0.0),
        "c_mu": np.full_like(x, 1.0 / (sigma * math.sqrt(2 * math.pi))),
        "dsigma": (z**2 - 1.0) / sigma * p,
        "maxwell": z**2 * p,
        "c_sigma": np.full_like(x, 1.0 / sigma),
    }


def _var(values: np.ndarray, weights: np.ndarray) -> float:
    mean = float(np.dot(weights, values))
    return float(np.dot(weights, (values - mean) ** 2))


def _variances_at(name: str, k: float, mu: float, sigma: float) -> dict[str, tuple[float, float]]:
    f, df, d2f = test_functions(name, k)
    e, w = _EPS, _WE
    x = mu + sigma * e
    fx, dfx = f(x), df(x)
    out = {}
    s_mu, s_sigma = e / sigma, (e**2 - 1.0) / sigma
    out["score_function"] = (_var(fx * s_mu, w), _var(fx * s_sigma, w))
    row = []
    for s in (s_mu, s_sigma):
        g = float(np.dot(w, fx * s))
        es2 = float(np.dot(w, s * s))
        row.append(float(np.dot(w, fx**2 * s**2)) - float(np.dot(w, fx * s * s)) ** 2 / es2 - g**2)
    out["score_function[baseline=b]"] = tuple(row)
    taylor = f(mu) + df(mu) * sigma * e + 0.5 * d2f(mu) * sigma**2 * e**2
    out["score_function+delta"] = (_var((fx - taylor) * s_mu, w), _var((fx - taylor) * s_sigma, w))
    row = []
    for s in (s_mu, s_sigma):
        a, b = fx * s, taylor * s
        va, vb = _var(a, w), _var(b, w)
        cov = float(np.dot(w, a * b)) - float(np.dot(w, a)) * float(np.dot(w, b))
        row.append(va - cov**2 / vb if vb > 0 else va)
    out["score_function+delta_optimal"] = tuple(row)
    out["pathwise"] = (_var(dfx, w), _var(dfx * e, w))
    c = 1.0 / (sigma * math.sqrt(2 * math.pi))
    fp, fm = f(mu + sigma * _R), f(mu - sigma * _R)
    mv_mu = c**2 * _var(fp - fm, _WR)
    mv_mu_unc = c**2 * (_var(fp, _WR) + _var(fm, _WR))
    fmax = f(mu + sigma * _M)
    grid = fmax[:, None] - f(mu + sigma * _U[None, :] * _M[:, None])
    w2 = _WM[:, None] * _WU[None, :]
    mean2 = float((w2 * grid).sum())
    mv_sigma = float((w2 * (grid - mean2) ** 2).sum()) / sigma**2
    mv_sigma_unc = (_var(fmax, _WM) + _var(fx, w)) / sigma**2
    out["measure_valued"] = (mv_mu, mv_sigma)
    out["measure_valued+uncoupled"] = (mv_mu_unc, mv_sigma_unc)
    return out


def variance_curves(name: str, ks, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""Exact per-sample variances of every estimator in :data:`CURVE_ESTIMATORS`, by quadrature.

    Returns ``{estimator: array of shape (len(ks), 2)}`` with the variances of the
    :math:`\mu` and :math:`\sigma` coordinates.
    """
    check_choice("name", name, FUNCTIONS)
    ks = np.asarray(ks, dtype=np.float64)
    rows = [_variances_at(name, float(k), mu, sigma) for k in ks]
    return {est: np.array([r[est] for r in rows]) for est in CURVE_ESTIMATORS}


def _normal(p):
    return Normal(p[0], p[1])


def simulated_variances(name: str, k: float, n: int, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    """Per-sample variances measured with the companion's estimators (``n`` samples each)."""
    n = check_positive_int("n", n, minimum=2)
    f = torch_function(name, k)
    p = torch.tensor([mu, sigma], dtype=torch.float64)
    runs = {
        "score_function": lambda: score_function(f, _normal, p, n),
        "score_function+delta": lambda: cv.score_function_delta(f, _normal, p, n),
        "pathwise": lambda: pathwise(f, _normal, p, n),
        "measure_valued": lambda: measure_valued(f, _normal, p, n),
        "measure_valued+uncoupled": lambda: measure_valued(f, _normal, p, n, coupling=False),
    }
    return {est: run().var(0).numpy() for est, run in runs.items()}


# --------------------------------------------------------------------------- dimension
def dimension_sweep(dims, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""Exact variance of the :math:`\mu_1` coordinate for :math:`f(x) = \sum_{j=1}^D x_j^2`,
    :math:`x \sim \mathcal N(\mu\mathbf 1, \sigma^2 I)`, and evaluations of ``f`` per full gradient.

    With :math:`a = (\mu + \sigma\varepsilon_1)^2` and :math:`S = \sum_{j \ge 2} x_j^2`
    (independent of :math:`\varepsilon_1`; :math:`\mathbb E S = (D-1)(\mu^2+\sigma^2)`,
    :math:`\operatorname{Var} S = (D-1)(4\mu^2\sigma^2 + 2\sigma^4)`):
    :math:`\mathbb E[a\varepsilon^2] = \mu^2 + 3\sigma^2`,
    :math:`\mathbb E[a^2\varepsilon^2] = \mu^4 + 18\mu^2\sigma^2 + 15\sigma^4`,
    :math:`\mathbb E[f^2\varepsilon_1^2] = \mathbb E[a^2\varepsilon^2] + 2\,\mathbb E[a\varepsilon^2]\,\mathbb E S + \mathbb E S^2`.

    * score function :math:`f\varepsilon_1/\sigma`: :math:`\mathbb E[f^2\varepsilon_1^2]/\sigma^2 - 4\mu^2`;
    * with the optimal baseline :math:`b^* = \mathbb E[f\varepsilon_1^2]`: minus
      :math:`(\mu^2 + 3\sigma^2 + \mathbb E S)^2/\sigma^2`;
    * pathwise :math:`2x_1`: :math:`4\sigma^2`;
    * measure-valued, coupled: :math:`4\mu R/\sqrt{2\pi}` (the other coordinates cancel),
      :math:`8\mu^2(2 - \pi/2)/\pi`.

    Evaluations of ``f`` per sample of the whole gradient (:math:`2D` parameters): 1 for
    the score function and pathwise (which also needs one backward pass), :math:`4D` for
    the measure-valued estimator.
    """
    d = np.asarray(dims, dtype=np.float64)
    es = (d - 1) * (mu**2 + sigma**2)
    vs = (d - 1) * (4 * mu**2 * sigma**2 + 2 * sigma**4)
    ea = mu**2 + 3 * sigma**2
    ea2 = mu**4 + 18 * mu**2 * sigma**2 + 15 * sigma**4
    ef2 = ea2 + 2 * ea * es + vs + es**2
    sf = ef2 / sigma**2 - 4 * mu**2
    sf_b = sf - (ea + es) ** 2 / sigma**2
    return {
        "dims": d,
        "score_function": sf,
        "score_function[baseline=b]": sf_b,
        "pathwise": np.full_like(d, 4 * sigma**2),
        "measure_valued": np.full_like(d, 8 * mu**2 * (2 - math.pi / 2) / math.pi),
        "evaluations": {
            "score_function": np.ones_like(d),
            "score_function[baseline=b]": np.ones_like(d),
            "pathwise": np.ones_like(d),
            "measure_valued": 4 * d,
        },
    }


def simulated_dimension_variances(dim: int, n: int, mu: float = 1.0, sigma: float = 1.0) -> dict[str, float]:
    """The :math:`\\mu_1` coordinate's per-sample variance measured with the estimators."""
    dim = check_positive_int("dim", dim)
    p = torch.stack([torch.full((dim,), mu), torch.full((dim,), sigma)]).double()

    def dist_fn(q):
        return Independent(Normal(q[0], q[1]), 1)

    def f(x):
        return (x**2).sum(-1)

    out = {
        "score_function": score_function(f, dist_fn, p, n),
        "pathwise": pathwise(f, dist_fn, p, n),
        "measure_valued": measure_valued(f, dist_fn, p, n),
    }
    return {est: float(g[:, 0, 0].var()) for est, g in out.items()}


# --------------------------------------------------------------------------- the toolbox
def _pair_var(g: torch.Tensor) -> np.ndarray:
    return g.var(0).numpy()


def toolbox(name: str, k: float, n: int, seeds, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""Each variance reduction against its unreduced estimator, on the same problem, per seed.

    Returns ``{label: array (len(seeds), 2)}`` of per-**evaluation-of-f** variances of the
    :math:`(\mu, \sigma)` coordinates, so that estimators of different cost compare on equal
    footing: a per-sample variance :math:`v` of an estimator that spends :math:`e`
    evaluations of ``f`` per sample counts as :math:`v \cdot e` (the variance of a
    mean over a fixed budget of evaluations, times that budget).

    Labels: ``score_function``, ``score_function+delta`` (:math:`\beta = 1`),
    ``score_function+delta_batch`` (:math:`\hat\beta` from the batch),
    ``score_function+delta_loo``, ``pathwise``, ``pathwise+antithetic`` (2 evaluations per
    pair), ``measure_valued+uncoupled`` and ``measure_valued`` (4 evaluations per sample).
    """
    f = torch_function(name, k)
    p = torch.tensor([mu, sigma], dtype=torch.float64)
    out: dict[str, list] = {}

    def add(label, value):
        out.setdefault(label, []).append(value)

    for seed in seeds:
        torch.manual_seed(int(seed))
        add("score_function", _pair_var(score_function(f, _normal, p, n)))
        add("score_function+delta", _pair_var(cv.score_function_delta(f, _normal, p, n)))
        add("score_function+delta_batch", _pair_var(cv.score_function_delta(f, _normal, p, n, "batch")))
        add("score_function+delta_loo", _pair_var(cv.score_function_delta(f, _normal, p, n, "loo")))
        add("pathwise", _pair_var(pathwise(f, _normal, p, n)))
        add("pathwise+antithetic", 2 * _pair_var(cv.antithetic_pathwise(f, lambda q, e: q[0] + q[1] * e, p, n // 2)))
        add("measure_valued+uncoupled", 4 * _pair_var(measure_valued(f, _normal, p, n // 4, coupling=False)))
        add("measure_valued", 4 * _pair_var(measure_valued(f, _normal, p, n // 4)))
    return {label: np.array(v) for label, v in out.items()}


def antithetic_variances(name: str, k: float, mu: float = 1.0, sigma: float = 1.0) -> np.ndarray:
    r"""Exact variance of one antithetic pair's pathwise estimate, per coordinate
    :math:`(\mu, \sigma)`: :math:`\operatorname{Var}\tfrac12\bigl(\hat g(\varepsilon)
    + \hat g(-\varepsilon)\bigr)` with :math:`\hat g(\varepsilon) = (f'(x),\ f'(x)\varepsilon)`,
    :math:`x = \mu + \sigma\varepsilon`, by the same quadrature as :func:`variance_curves`
    (whose nodes are symmetric about 0). A pair costs two evaluations of ``f``.
    """
    check_choice("name", name, FUNCTIONS)
    _, df, _ = test_functions(name, float(k))
    e, w = _EPS, _WE
    plus, minus = df(mu + sigma * e), df(mu - sigma * e)
    return np.array([_var(0.5 * (plus + minus), w), _var(0.5 * e * (plus - minus), w)])


def rqmc_variance(name: str, k: float, sizes, repeats: int, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""Variance of the **mean** pathwise estimate over ``repeats`` independent runs, for each
    size :math:`n`: plain Monte Carlo (:math:`\propto 1/n`) and scrambled Sobol noise."""
    f = torch_function(name, k)
    p = torch.tensor([mu, sigma], dtype=torch.float64)
    sampler = lambda q, e: q[0] + q[1] * e  # noqa: E731
    mc, qmc = [], []
    for n in sizes:
        mc.append(torch.stack([cv.pathwise_from_noise(f, sampler, p, torch.randn(n, dtype=torch.float64)).mean(0)
                               for _ in range(repeats)]).var(0).numpy())
        qmc.append(torch.stack([cv.qmc_pathwise(f, sampler, p, n).mean(0) for _ in range(repeats)]).var(0).numpy())
    return {"sizes": np.asarray(sizes), "pathwise": np.array(mc), "pathwise+qmc": np.array(qmc)}


# --------------------------------------------------------------------------- Rao-Blackwell
def rao_blackwell_problem():
    r"""A two-stage model: :math:`z \sim \operatorname{Categorical}(\operatorname{softmax}\theta)`,
    :math:`y \mid z \sim \mathcal N(m_z, 1)`, :math:`f(y) = \cos y`; the gradient of
    :math:`\mathbb E[\cos y]` with respect to the logits :math:`\theta`.

    The inner expectation is known: :math:`h(z) = \mathbb E[\cos y \mid z] = e^{-1/2}\cos m_z`,
    and :math:`\mathbb E[\cos^2 y \mid z] = \tfrac12(1 + e^{-2}\cos 2m_z)`.
    Returns ``(theta, m)``.
    """
    theta = torch.tensor([0.5, -0.3, 0.2, 0.0], dtype=torch.float64)
    m = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    return theta, m


def rao_blackwell_exact(theta: torch.Tensor, m: torch.Tensor) -> dict[str, np.ndarray]:
    r"""Exact gradient and per-coordinate variances by enumerating :math:`z`.

    With the softmax score :math:`e_z - \pi`: plain :math:`\hat g = \cos(y)(e_z - \pi)`,
    Rao-Blackwellised :math:`\hat g = h(z)(e_z - \pi)`;
    :math:`\mathbb E[\hat g_j^2] = \sum_z \pi_z\, \mathbb E[f^2 \mid z]\, (\delta_{zj} - \pi_j)^2`
    with :math:`\mathbb E[f^2\mid z]` = :math:`\mathbb E[\cos^2 y \mid z]` or :math:`h(z)^2`.
    """
    pi = torch.softmax(theta, 0).numpy()
    mm = m.numpy()
    h = math.exp(-0.5) * np.cos(mm)
    h2_plain = 0.5 * (1 + math.exp(-2.0) * np.cos(2 * mm))
    score = np.eye(len(pi)) - pi[None, :]  # row z: e_z - pi
    grad = (pi[:, None] * h[:, None] * score).sum(0)
    plain = (pi[:, None] * h2_plain[:, None] * score**2).sum(0) - grad**2
    rb = (pi[:, None] * (h**2)[:, None] * score**2).sum(0) - grad**2
    return {"gradient": grad, "score_function": plain, "score_function+rao_blackwell": rb}


def rao_blackwell_simulated(theta: torch.Tensor, m: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """Per-sample estimates of both estimators from the same ``n`` draws of ``(z, y)``."""
    n = check_positive_int("n", n)
    pi = torch.softmax(theta, 0)
    z = Categorical(probs=pi).sample((n,))
    y = m[z] + torch.randn(n, dtype=torch.float64)
    score = torch.nn.functional.one_hot(z, len(pi)).double() - pi
    return {
        "score_function": torch.cos(y)[:, None] * score,
        "score_function+rao_blackwell": (math.exp(-0.5) * torch.cos(m[z]))[:, None] * score,
    }


# --------------------------------------------------------------------------- theory
def poincare_curves(name: str, ks, mu: float = 1.0, sigma: float = 1.0) -> dict[str, np.ndarray]:
    r"""The pathwise :math:`\mu`-estimator's variance :math:`\operatorname{Var}[f'(x)]` against
    the Gaussian Poincaré bound :math:`\sigma^2\,\mathbb E[f''(x)^2]` and the Lipschitz bound
    :math:`\sigma^2 L^2`, :math:`L = \sup|f''|` the Lipschitz constant of :math:`f'`
    (2 for the quadratic, :math:`2k` for :math:`e^{-kx^2}`, :math:`k^2` for :math:`\cos kx`)."""
    check_choice("name", name, FUNCTIONS)
    ks = np.asarray(ks, dtype=np.float64)
    var, poincare, lips = [], [], []
    for k in ks:
        _, df, d2f = test_functions(name, float(k))
        x = mu + sigma * _EPS
        var.append(_var(df(x), _WE))
        poincare.append(sigma**2 * float(np.dot(_WE, d2f(x) ** 2)))
        lip = {"quadratic": 2.0, "exp": 2.0 * k, "cos": k**2}[name]
        lips.append(sigma**2 * lip**2)
    return {"ks": ks, "variance": np.array(var), "poincare": np.array(poincare), "lipschitz": np.array(lips)}
