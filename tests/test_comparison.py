"""Tests of companion.experiments.comparison: the problems' exact gradients, and what measure() reports.

Statistical tests are seeded; their tolerances are 5 standard errors of the quantity
compared (bias: sqrt(tr Sigma / N); variance: sqrt((m4 - v^2)/N) per coordinate, from
companion.experiments.closed_forms).
"""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
import torch
from scipy.stats import norm

from companion.experiments import closed_forms, comparison
from companion.experiments import comparison_report as report

N = 20_000  # per seed
GS01, GS05, GS1 = (comparison.Estimator("gumbel_softmax", t) for t in (0.1, 0.5, 1.0))
ST1 = comparison.Estimator("straight_through", 1.0)
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def problems():
    return {p.key: p for p in comparison.problems()}


@pytest.mark.parametrize("mu,sigma", [(0.5, 1.0), (-1.2, 0.4), (2.0, 3.0)])
def test_step_gradient_matches_finite_differences(mu, sigma):
    """E[1[x > 0]] = P(mu + sigma eps > 0) = Phi(mu/sigma); its central differences (scipy's
    normal CDF, independent of the companion) must match the closed-form derivative
    (phi(mu/sigma)/sigma, -mu phi(mu/sigma)/sigma^2)."""
    h = 1e-6
    d_mu = (norm.cdf((mu + h) / sigma) - norm.cdf((mu - h) / sigma)) / (2 * h)
    d_sigma = (norm.cdf(mu / (sigma + h)) - norm.cdf(mu / (sigma - h))) / (2 * h)
    g = comparison.step_gradient(mu, sigma)
    assert g[0] == pytest.approx(d_mu, rel=1e-6)
    assert g[1] == pytest.approx(d_sigma, rel=1e-6, abs=1e-9)


def test_problems_are_the_chapters_problems(problems):
    assert list(problems) == ["quadratic", "exp", "cos", "exponential", "categorical", "step"]
    for p in problems.values():
        assert p.exact.shape == p.params.shape
        assert p.exact.dtype == torch.float64
    assert problems["categorical"].discrete and not problems["step"].f_differentiable


@pytest.mark.parametrize("key", ["quadratic", "exp", "cos", "exponential", "categorical", "step"])
@pytest.mark.parametrize(
    "estimator", ["score_function", "score_function[baseline=b]", "score_function[baseline='loo']", "pathwise"]
)
def test_unbiased_estimators_have_no_significant_bias(problems, key, estimator, seed, stats):
    """The score function (any baseline independent of the sample) is unbiased everywhere;
    pathwise is unbiased for differentiable f with rsample. So |mean - exact| must stay
    below 5 standard errors sqrt(tr Sigma / N): this checks the problem's exact gradient
    (closed_forms, categorical.exact_gradient, step_gradient) and the estimator together.
    The check is on the noise-corrected squared bias, one-sided (at most 5 of its own
    standard errors above 0)."""
    p = problems[key]
    ok, _ = comparison.applicability(p, estimator)
    if not ok or (estimator == "pathwise" and not p.f_differentiable):
        pytest.skip("not an unbiased estimator on this problem")
    m = comparison.measure(p, estimator, N, repeats=1, seeds=[seed], time_samples=100)
    assert m.applicable
    stats.assert_at_most(m.bias_sq, 0.0, m.bias_sq_se, f"squared bias of {estimator} on {key}")
    assert not m.biased


@pytest.mark.parametrize("key", ["quadratic", "exp", "cos"])
@pytest.mark.parametrize("estimator", ["pathwise", "score_function"])
def test_gaussian_variance_matches_closed_form(problems, key, estimator, seed, stats):
    """tr Sigma = V[g_mu] + V[g_sigma]. The exact per-coordinate variances come from
    closed_forms.gaussian_estimator_variance (for (x-k)^2 expanded in the moments
    E eps^(2m) = 1, 1, 3, 15, 105; otherwise by quadrature of E[g^2] - (E g)^2). The sum of
    two sample variances has standard error at most SE_mu + SE_sigma; allow 5 of them."""
    k = {"quadratic": 2.0, "exp": 1.0, "cos": 3.0}[key]
    name = estimator
    exact = sum(closed_forms.gaussian_estimator_variance(key, name, k, 1.0, 1.0))
    se = sum(closed_forms.gaussian_variance_standard_error(key, name, k, 1.0, 1.0, n_samples=N))
    m = comparison.measure(problems[key], estimator, N, repeats=1, seeds=[seed], time_samples=100)
    stats.assert_within(m.variance, exact, se, f"tr Sigma of {estimator} on {key}")


@pytest.mark.parametrize("estimator", ["pathwise", "score_function"])
def test_exponential_variance_matches_closed_form(problems, estimator, seed, stats):
    """z = -log(u)/lambda, f = (z-1)^2 at lambda = 1: pathwise -2(z-1)z/lambda and score
    (z-1)^2(1/lambda - z) are polynomials in z, so with E z^n = n!/lambda^n their variances
    are exact (closed_forms.exponential_estimator_variance); tolerance 5 standard errors."""
    name = estimator
    exact = closed_forms.exponential_estimator_variance(name, 1.0, 1.0)
    se = closed_forms.exponential_variance_standard_error(name, 1.0, 1.0, n_samples=N)
    m = comparison.measure(problems["exponential"], estimator, N, repeats=1, seeds=[seed], time_samples=100)
    stats.assert_within(m.variance, exact, se, f"variance of {estimator} on the exponential")


def test_pathwise_on_a_step_function_is_zero_and_biased(problems):
    """d/dx 1[x > 0] = 0 wherever it exists, so every pathwise estimate is exactly 0: the
    bias is the whole exact gradient and the variance is 0."""
    p = problems["step"]
    est = comparison.estimate(p, "pathwise", 1000)
    assert torch.count_nonzero(est) == 0
    m = comparison.measure(p, "pathwise", 1000, repeats=1, seeds=[0, 1], time_samples=100)
    assert m.bias == pytest.approx(float(p.exact.norm()), rel=1e-12)
    assert m.variance == 0.0 and m.biased and m.known_biased
    assert m.seed_variances == (0.0, 0.0)
    assert math.isinf(comparison.time_to_accuracy(m, 0.5))


@pytest.mark.parametrize("estimator", [GS1, ST1])
def test_relaxations_are_detectably_biased_at_temperature_one(problems, estimator, seed, stats):
    """At tau = 1 both estimate the gradient of the relaxed objective E[h(softmax((theta+g)/tau))],
    not of sum_k p_k h(e_k): h = |y - t|^2 is not linear, so the bias is well above 5 standard
    errors with N samples (a wrong exact gradient or an unbiased estimator would fail this)."""
    m = comparison.measure(problems["categorical"], estimator, N, repeats=1, seeds=[seed], time_samples=100)
    assert m.applicable and m.biased and m.known_biased
    assert m.resolved
    stats.assert_above(m.bias_sq, 0.0, m.bias_sq_se, f"squared bias of {estimator.label}")


def test_lower_temperature_trades_bias_for_variance(problems, seed, stats):
    """The relaxed gradient's variance grows like 1/tau^2 as tau -> 0 (the softmax Jacobian
    carries 1/tau), so at tau = 0.1 its total variance is well above 5 times that at tau = 1
    (a factor 100 if the 1/tau^2 held exactly; 5 leaves room for the saturating softmax).
    Checked as tr S_cold - 5 tr S_warm > 0 by 5 standard errors, with the SE of each trace
    bounded by the sum of its coordinates' sample-variance SEs (independent draws)."""
    p = problems["categorical"]
    v_cold, se_cold = stats.var_se(comparison.estimate(p, GS01, N))
    v_warm, se_warm = stats.var_se(comparison.estimate(p, GS1, N))
    stats.assert_above(v_cold.sum() - 5 * v_warm.sum(), 0.0, se_cold.sum() + 5 * se_warm.sum(),
                       "tr Var at tau=0.1 minus 5 x tr Var at tau=1", n=N)


def test_inapplicable_combinations(problems, raises):
    cat, quad = problems["categorical"], problems["quadratic"]
    assert comparison.applicability(cat, "pathwise")[0] is False
    assert comparison.applicability(quad, GS05)[0] is False
    with raises(ValueError, "'pathwise' does not apply", "'categorical'"):
        comparison.estimate(cat, "pathwise", 10)
    m = comparison.measure(quad, ST1, 10)
    assert not m.applicable and "categorical" in m.reason
    assert math.isnan(m.variance) and math.isnan(m.time_per_sample)


def test_measurement_fields(problems, seed, stats):
    """The pooled fields are the statistics of all seeds' samples: the variance within 5
    standard errors of the closed form (pathwise on the quadratic), each seed's variance
    within 5 of its own (fewer samples), the bias unresolved; the derived fields are what
    their definitions say."""
    seeds = [seed, seed + 1, seed + 2]
    m = comparison.measure(problems["quadratic"], "pathwise", 500, repeats=2, seeds=seeds, time_samples=200)
    assert m.n_samples == 500 and m.n_seeds == 3 and len(m.seed_variances) == 3
    assert m.stats.n_samples == 1500
    exact = sum(closed_forms.gaussian_estimator_variance("quadratic", "pathwise", 2.0, 1.0, 1.0))
    se = sum(closed_forms.gaussian_variance_standard_error("quadratic", "pathwise", 2.0, 1.0, 1.0,
                                                              n_samples=1500))
    stats.assert_within(m.variance, exact, se, "pooled tr Sigma")
    stats.assert_within(m.seed_variances, exact, se * math.sqrt(3), "each seed's tr Sigma")
    assert not m.resolved and not m.biased and m.bias_se == pytest.approx(math.sqrt(m.variance / 1500))
    assert m.time_per_sample > 0 and math.isfinite(m.time_per_sample)
    assert m.variance_time == pytest.approx(m.variance * m.time_per_sample, rel=1e-12)
    assert m.mse(10) == pytest.approx(max(m.bias_sq, 0) + m.variance / 10)
    assert m.estimator == comparison.Estimator("pathwise")


def test_time_to_accuracy_is_a_time(raises):
    r"""T = tr Sigma * t / (eps^2 - bias^2), eps = r |grad|: for an unbiased estimator with
    variance v, N = v / eps^2 samples reach the target, N * t seconds."""
    p = comparison.problems()[0]
    m = comparison.measure(p, "pathwise", 1000, repeats=1, seeds=[0], time_samples=100)
    eps2 = (0.1 * float(p.exact.norm())) ** 2
    expected = m.variance * m.time_per_sample / (eps2 - max(m.bias_sq, 0))
    assert comparison.time_to_accuracy(m, 0.1) == pytest.approx(expected)
    with raises(ValueError, "relative_rmse", "got 0"):
        comparison.time_to_accuracy(m, 0)


def test_mse_table_and_seed_ratio(raises):
    results = comparison.compare_all(n_samples=200, repeats=1, seeds=[0, 1], time_samples=50)
    text = report.format_mse_table(results, "categorical", (1, 100))
    assert len(text.splitlines()) == 2 + 7 and max(len(x) for x in text.splitlines()) <= 76
    ratio, lo, hi = comparison.seed_ratio(results, "quadratic", "score_function", "pathwise")
    assert lo <= ratio * 1.5 and hi >= ratio / 1.5 and lo <= hi
    with raises(ValueError, "'pathwise' and 'score_function' must both apply", "'categorical'"):
        comparison.seed_ratio(results, "categorical", "pathwise", "score_function")
    times = report.format_time_table(results)
    assert "never (bias)" in times


def test_variance_replications_spread_matches_the_fourth_moment(seed, stats):
    r"""The replications' sample variances tr S have mean tr Sigma (the sample variance
    is unbiased) and, for the pathwise quadratic, a spread equal to the exact one.

    With x = mu + sigma eps, c = mu - k, the per-sample gradient's deviations from
    its mean are polynomials in eps: d_mu = 2 sigma eps and
    d_sigma = 2c eps + 2 sigma (eps^2 - 1). For N draws, the covariance of two
    sample variances is Cov(S_jj, S_kk) = (E[d_j^2 d_k^2] - Sigma_jj Sigma_kk)/N
    + 2 Sigma_jk^2 / (N (N-1)) (for j = k the formula behind ``assert_var``), so
    summed over j, k:

        Var[tr S] = Var[|d|^2] / N + 2 tr(Sigma^2) / (N (N-1)),

    exact moments of polynomials of eps (``stats.poly_moments``). The 300
    replications' sample variance is compared with it within 5 standard errors
    (their fourth moment estimated). The per-coordinate closed-form standard
    errors sqrt(Var[d_j^2]/N) must equal the same moments."""
    n_samples, mu, sigma, k = 2000, 1.0, 1.0, 2.0
    p = comparison.problems()[0]
    assert (p.key, float(p.params[0]), float(p.params[1])) == ("quadratic", mu, sigma)
    reps = comparison.variance_replications(p, "pathwise", n_samples, 300, seed=seed)
    exact = sum(closed_forms.gaussian_estimator_variance("quadratic", "pathwise", k, mu, sigma))
    se = closed_forms.gaussian_variance_standard_error("quadratic", "pathwise", k, mu, sigma,
                                                        n_samples=n_samples)
    c = mu - k
    d = [np.polynomial.Polynomial([0.0, 2 * sigma]),
         np.polynomial.Polynomial([-2 * sigma, 2 * c, 2 * sigma])]

    def moments(poly):
        return stats.poly_moments(poly.coef, stats.normal_moment)

    for dj, sej in zip(d, se):
        assert sej == pytest.approx(math.sqrt(moments(dj**2)[1] / n_samples), rel=1e-6)
    cov = np.array([[moments(di * dj)[0] for dj in d] for di in d])
    trace, var_q, _ = moments(d[0] ** 2 + d[1] ** 2)
    assert trace == pytest.approx(exact, rel=1e-12)
    var_tr = var_q / n_samples + 2 * float((cov**2).sum()) / (n_samples * (n_samples - 1))
    assert reps.shape == (300,)
    stats.assert_mean(reps, exact, "mean of the replications' tr Sigma")
    stats.assert_var(reps, var_tr, stats.sample_mu4(reps), "spread of the replications' tr S")


def test_compare_all_order_and_table():
    results = comparison.compare_all(n_samples=50, repeats=1, seeds=[0], time_samples=50)
    keys = [p.key for p in comparison.problems()]
    assert [(m.problem, m.estimator) for m in results] == [(k, e) for k in keys for e in comparison.ESTIMATORS]
    text = report.format_table(results)
    assert len(text.splitlines()) == 2 + len(results)
    assert text.count("n/a") == sum(not m.applicable for m in results)


def test_format_time_is_masked_by_the_sanitizer():
    """Timings in the notebook must be replaced by nbval's sanitizer, so they must match its regex."""
    cfg = (ROOT / "tests" / "nbval" / "sanitize.cfg").read_text()
    block = cfg.split("[timings]")[1]
    pattern = re.search(r"regex: (.*)", block).group(1)
    for seconds in (3e-9, 4.56e-7, 1.2e-4, 0.05, 2.0):
        text = report.format_time(seconds)
        assert re.fullmatch(pattern, text), text
    assert report.format_time(float("nan")) == "-"


def test_bad_input(problems, raises):
    p = problems["quadratic"]
    with raises(ValueError, "key must be a key of companion.catalogue", "'reinforce'"):
        comparison.measure(p, "reinforce", 100)
    with raises(ValueError, "estimator must be one of", "temperature=0.3"):
        comparison.measure(p, comparison.Estimator("gumbel_softmax", 0.3), 100)
    with raises(ValueError, "temperature must be given", "temperature=None"):
        comparison.measure(p, "gumbel_softmax", 100)
    with raises(ValueError, "temperature must be a finite number > 0", "-1.0"):
        comparison.Estimator("straight_through", -1.0)
    with raises(TypeError, "estimator must be a comparison.Estimator", "('pathwise', None)"):
        comparison.measure(p, ("pathwise", None), 100)
    with raises(ValueError, "n_samples", "1"):
        comparison.estimate(p, "pathwise", 1)
    with raises(TypeError, "n_samples", "10.0"):
        comparison.measure(p, "pathwise", 10.0)
    with raises(TypeError, "problem must be", "str"):
        comparison.measure("quadratic", "pathwise", 100)
    with raises(ValueError, "sigma", "0.0"):
        comparison.step_gradient(0.0, 0.0)
    with raises(TypeError, "mu", "'a'"):
        comparison.step_gradient("a", 1.0)
    with raises(TypeError, "results", "int"):
        report.format_table([1])
    with raises(TypeError, "seeds", "5"):
        comparison.measure(p, "pathwise", 100, seeds=5)
    with raises(ValueError, "seeds", "empty"):
        comparison.measure(p, "pathwise", 100, seeds=[])
    with raises(ValueError, "n_samples names unknown problems", "['nope']"):
        comparison.compare_all({"nope": 10})


def test_tables_fit_the_book_column():
    """The book shows about 80 characters of code output; both tables must fit."""
    results = comparison.compare_all(n_samples=50, repeats=1, seeds=[0], time_samples=50)
    table = report.format_table([m for m in results if m.applicable])
    assert max(len(line) for line in table.splitlines()) <= 76
    matrix = report.format_applicability(comparison.problems())
    lines = matrix.splitlines()
    assert len(lines) == 1 + len(comparison.problems())
    assert max(len(line) for line in lines) <= 80
    assert lines[5].split()[1:] == ["yes", "yes", "yes", "-", "~", "~", "~", "~"]  # categorical


def test_estimators_are_named_by_the_catalogue_and_print_as_before():
    """The comparison's estimators are canonical keys with a temperature apart; their
    display and short names are derived from companion.catalogue, and read as chapter 8
    prints them."""
    shown = [(e.short, e.label) for e in comparison.ESTIMATORS]
    assert shown == [
        ("SF", "score function"), ("SF+b", "score function + baseline"),
        ("SF+LOO", "score function + LOO baseline"), ("PW", "pathwise"),
        ("GS.1", "Gumbel-softmax τ=0.1"), ("GS.5", "Gumbel-softmax τ=0.5"),
        ("GS1", "Gumbel-softmax τ=1"), ("ST1", "straight-through τ=1"),
    ]
    assert comparison.lookup(comparison.compare_all(n_samples=20, repeats=1, seeds=[0], time_samples=20),
                             "step", "score_function[baseline='loo']").estimator.short == "SF+LOO"


def test_the_bar_figure_has_one_bar_per_applicable_measurement():
    """Bars in the canonical colours, labelled by display name; a zero variance (pathwise
    on the step) is a marker, not a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from companion.plotting import ESTIMATOR_COLORS

    results = comparison.compare_all(n_samples=50, repeats=1, seeds=[0, 1], time_samples=20)
    fig, ax = plt.subplots()
    report.plot_measurements(results, "variance", ax)
    bars = ax.patches
    zero = sum(m.applicable and m.variance == 0 for m in results)
    assert len(bars) == sum(m.applicable for m in results) - zero
    labels = set(ax.get_legend_handles_labels()[1])
    assert labels == {e.label for e in comparison.ESTIMATORS}
    colours = {matplotlib.colors.to_hex(b.get_facecolor()[:3]) for b in bars}
    assert colours == {ESTIMATOR_COLORS[e.key] for e in comparison.ESTIMATORS}
    plt.close(fig)
