"""Shared set-up for the companion's tests: the CUDA skip, the seed, and statistics helpers.

Seeds
-----
Statistical tests take the ``seed`` fixture. Its value comes from the environment
variable ``COMPANION_TEST_SEED`` (default 0), so the whole suite can be rerun with
other seeds to check that no test flakes::

    for s in $(seq 1 20); do
        COMPANION_TEST_SEED=$s .venv/bin/python -m pytest tests -q -p no:randomly || echo "seed $s failed"
    done

Tolerances
----------
Every statistical assertion compares an estimate with a closed form to within
``Z = 5`` standard errors (about a 1 in 1.7 million chance of a false alarm for a
normally distributed estimate). The helpers in :class:`Stats` (the ``stats``
fixture) compute those standard errors and word the failure (estimate, target,
standard errors, the difference in standard errors, the failing coordinates):

* a sample mean, :math:`\\mathrm{SE} = s/\\sqrt n`: ``assert_mean`` (equal to a value),
  ``assert_mean_differs`` (some coordinate is not: what a wrong estimator must fail),
  ``assert_mean_at_most`` (an exact inequality, such as a bound, is not contradicted);
* two independent samples' means, SE of the difference
  :math:`\\sqrt{s_a^2/n_a + s_b^2/n_b}`: ``assert_same_mean``, ``assert_mean_greater``,
  ``assert_means_differ`` (for paired samples, ``assert_mean(a - b, 0)``);
* a sample variance, :math:`\\operatorname{Var}[s^2] = \\bigl(\\mu_4 - \\sigma^4 (n-3)/(n-1)\\bigr)/n`,
  with :math:`\\mu_4` the fourth central moment, exact where the test knows it (else
  ``sample_mu4``): ``assert_var``;
* two variances, independent or paired (the same noise gave row i of both):
  ``assert_same_var``, ``assert_var_diff`` (a closed-form difference),
  ``assert_var_greater`` (a variance reduction);
* a proportion, :math:`\\sqrt{p(1-p)/n}`: ``assert_proportions``;
* a distribution: the Kolmogorov-Smirnov test at level ``1e-6``: ``assert_ks``,
  ``assert_ks_2samp``;
* any estimate whose standard error the test computes itself (a closed-form SE, a
  median): ``assert_within``, ``assert_above``, ``assert_at_most``, ``assert_differs``.

Errors
------
Bad input must raise a ``TypeError`` or ``ValueError`` whose message names the
argument and, where it is short, shows the value. The ``raises`` fixture
(:func:`raises_naming`) checks both: ``with raises(ValueError, "sigma", "-1.0"): ...``.
"""

from __future__ import annotations

import math
import os
import random
import re

import numpy as np
import pytest
import torch

Z = 5.0  # tolerance, in standard errors
KS_ALPHA = 1e-6  # smallest p-value a Kolmogorov-Smirnov test may give and pass

_SEED_ENV = "COMPANION_TEST_SEED"


def pytest_configure(config):
    # torch's first forward-mode AD call scripts its jvp decompositions with torch.jit.script,
    # which warns that torch.jit.script is deprecated: torch's own business, not the companion's.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``cuda`` when torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def base_seed() -> int:
    """The seed from ``COMPANION_TEST_SEED`` (default 0)."""
    text = os.environ.get(_SEED_ENV, "0").strip() or "0"
    try:
        value = int(text)
    except ValueError:
        raise pytest.UsageError(f"{_SEED_ENV} must be a non-negative int, got {text!r}") from None
    if value < 0:
        raise pytest.UsageError(f"{_SEED_ENV} must be a non-negative int, got {value}")
    return value


@pytest.fixture
def seed() -> int:
    """Seed torch's CPU generator, NumPy and ``random`` from ``COMPANION_TEST_SEED``; return the seed."""
    value = base_seed()
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
    return value


@pytest.fixture
def generator(seed) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``COMPANION_TEST_SEED``."""
    return torch.Generator().manual_seed(seed)


def _as_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


class Stats:
    """Tolerance-from-standard-error assertions and exact moments of polynomials of noise."""

    Z = Z
    KS_ALPHA = KS_ALPHA

    # -- exact moments -----------------------------------------------------------------
    @staticmethod
    def normal_moment(k: int) -> float:
        """:math:`\\mathbb E[\\varepsilon^k]` for :math:`\\varepsilon \\sim N(0, 1)`: 0 for odd k, (k-1)!! for even k."""
        if k % 2:
            return 0.0
        return float(math.prod(range(k - 1, 0, -2))) if k else 1.0

    @staticmethod
    def exp_moment(k: int) -> float:
        """:math:`\\mathbb E[E^k] = k!` for :math:`E \\sim \\operatorname{Exp}(1)`."""
        return float(math.factorial(k))

    @staticmethod
    def poly_moments(coeffs, raw_moment) -> tuple[float, float, float]:
        """Mean, variance and fourth central moment of :math:`p(\\xi) = \\sum_k c_k \\xi^k`.

        ``raw_moment(k)`` gives :math:`\\mathbb E[\\xi^k]`. Exact: the moments of a
        polynomial of the noise are sums of the noise's raw moments.
        """
        p = np.polynomial.Polynomial(np.asarray(coeffs, dtype=np.float64))

        def expect(q):
            return float(sum(c * raw_moment(k) for k, c in enumerate(q.coef)))

        mean = expect(p)
        centred = p - mean
        return mean, expect(centred**2), expect(centred**4)

    @staticmethod
    def moments_from_pmf(values, probs) -> tuple[float, float, float]:
        """Mean, variance and fourth central moment of a discrete variable."""
        values, probs = _as_np(values), _as_np(probs)
        mean = float((values * probs).sum())
        var = float((((values - mean) ** 2) * probs).sum())
        mu4 = float((((values - mean) ** 4) * probs).sum())
        return mean, var, mu4

    # -- estimates and their standard errors ---------------------------------------------
    @staticmethod
    def mean_se(samples) -> tuple[np.ndarray, np.ndarray]:
        """Each coordinate's sample mean and its standard error :math:`s/\\sqrt n` (draws along dim 0)."""
        s = _as_np(samples)
        return s.mean(0), s.std(0, ddof=1) / math.sqrt(s.shape[0])

    @staticmethod
    def sample_mu4(samples) -> np.ndarray:
        """Each coordinate's sample fourth central moment (for a variance's standard error
        where the closed form's is not known)."""
        s = _as_np(samples)
        return ((s - s.mean(0)) ** 4).mean(0)

    @staticmethod
    def var_se(samples, mu4=None) -> tuple[np.ndarray, np.ndarray]:
        """Each coordinate's sample variance and its standard error
        :math:`\\sqrt{(\\mu_4 - \\sigma^4 (n-3)/(n-1))/n}`, with the given fourth central moment
        (the sample's when ``mu4`` is None) and :math:`\\sigma^2` the sample variance."""
        s = _as_np(samples)
        n = s.shape[0]
        var = s.var(0, ddof=1)
        mu4 = Stats.sample_mu4(s) if mu4 is None else np.broadcast_to(_as_np(mu4), var.shape)
        return var, np.sqrt(np.maximum(mu4 - var**2 * (n - 3) / (n - 1), 0.0) / n)

    @staticmethod
    def var_diff_se(a, b, paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:math:`\\operatorname{Var}[a] - \\operatorname{Var}[b]` per coordinate, and its standard error.

        Independent samples (``paired=False``): each variance's standard error from its
        sample fourth central moment, added in quadrature. Paired samples (the same noise
        gave row i of both): the difference is the mean of
        :math:`d_i = (a_i - \\bar a)^2 - (b_i - \\bar b)^2` (times :math:`n/(n-1)`), and its
        standard error is the sample standard deviation of :math:`d` over :math:`\\sqrt n`,
        which the positive correlation of the pairs makes far smaller.
        """
        a, b = _as_np(a), _as_np(b)
        diff = a.var(0, ddof=1) - b.var(0, ddof=1)
        if paired:
            if a.shape != b.shape:
                raise ValueError(f"paired samples must have the same shape, got {a.shape} and {b.shape}")
            d = (a - a.mean(0)) ** 2 - (b - b.mean(0)) ** 2
            return diff, d.std(0, ddof=1) / math.sqrt(a.shape[0])
        _, se_a = Stats.var_se(a)
        _, se_b = Stats.var_se(b)
        return diff, np.sqrt(se_a**2 + se_b**2)

    # -- assertions on an estimate with a given standard error ---------------------------
    @staticmethod
    def _message(
        what, quantity, estimate, target, se, z, bad, n=None, claim="not within {z} standard errors of {t}"
    ) -> str:
        estimate, target, se = (
            np.broadcast_to(np.asarray(v, dtype=np.float64), bad.shape) for v in (estimate, target, se)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            zscore = (estimate - target) / se
        where = np.argwhere(bad)[:5].tolist() if bad.ndim else []
        lines = [
            f"{what}: {quantity} " + claim.format(z=f"{z:g}", t=target.ravel()[:8])
            + ("" if n is None else f" (n={n})"),
            f"  {quantity}: {estimate.ravel()[:8]}",
            f"  standard errors: {se.ravel()[:8]}",
            f"  difference in standard errors: {np.round(zscore.ravel()[:8], 2)}",
        ]
        if where:
            lines.append(f"  failing coordinates (first 5): {where}")
        return "\n".join(lines)

    @staticmethod
    def assert_within(estimate, expected, se, what: str = "estimate", z: float = Z, n=None) -> None:
        """Each coordinate of ``estimate`` within ``z`` standard errors ``se`` of ``expected``.

        For an estimate whose standard error is known in closed form (or computed by the
        test): ``|estimate - expected| <= z * se + 1e-12``.
        """
        est, exp_, se_ = (_as_np(v) for v in (estimate, expected, se))
        est, exp_, se_ = np.broadcast_arrays(est, exp_, se_)
        bad = ~(np.abs(est - exp_) <= z * se_ + 1e-12)
        assert not bad.any(), Stats._message(what, "estimate", est, exp_, se_, z, bad, n)

    @staticmethod
    def assert_above(estimate, bound, se, what: str = "estimate", z: float = Z, n=None) -> None:
        """Each coordinate of ``estimate`` above ``bound`` by more than ``z`` standard errors ``se``:
        a one-sided test that the true value exceeds the bound."""
        est, b, se_ = np.broadcast_arrays(*(_as_np(v) for v in (estimate, bound, se)))
        bad = ~(est - b > z * se_)
        claim = "not above {t} by more than {z} standard errors"
        assert not bad.any(), Stats._message(what, "estimate", est, b, se_, z, bad, n, claim)

    @staticmethod
    def assert_at_most(estimate, bound, se, what: str = "estimate", z: float = Z, n=None) -> None:
        """Each coordinate of ``estimate`` at most ``z`` standard errors above ``bound``: the
        data do not contradict ``true value <= bound`` (for an exact inequality such as a bound)."""
        est, b, se_ = np.broadcast_arrays(*(_as_np(v) for v in (estimate, bound, se)))
        bad = ~(est <= b + z * se_ + 1e-12)
        claim = "more than {z} standard errors above {t}"
        assert not bad.any(), Stats._message(what, "estimate", est, b, se_, z, bad, n, claim)

    @staticmethod
    def assert_differs(estimate, value, se, what: str = "estimate", z: float = Z, n=None) -> None:
        """Some coordinate of ``estimate`` more than ``z`` standard errors from ``value``: the
        check a wrong (mutated, biased) estimator must fail."""
        est, v, se_ = np.broadcast_arrays(*(_as_np(x) for x in (estimate, value, se)))
        far = np.abs(est - v) > z * se_
        assert far.any(), Stats._message(
            what, "estimate", est, v, se_, z, np.ones_like(far), n,
            "within {z} standard errors of {t} in every coordinate, where a difference was expected",
        )

    # -- assertions on samples ------------------------------------------------------------
    @staticmethod
    def assert_mean(samples, expected, what: str = "mean", z: float = Z) -> None:
        """Each coordinate's sample mean within ``z`` standard errors of ``expected``.

        ``samples`` has the draws along dimension 0; the standard error is the
        sample standard deviation over :math:`\\sqrt n`.
        """
        s = _as_np(samples)
        n = s.shape[0]
        mean, se = Stats.mean_se(s)
        expected = np.broadcast_to(_as_np(expected), mean.shape)
        # A coordinate with zero spread must match exactly (up to float error).
        tol = z * se + 1e-6 * (1.0 + np.abs(expected))
        bad = ~(np.abs(mean - expected) <= tol)
        assert not bad.any(), Stats._message(what, "sample mean", mean, expected, se, z, bad, n)

    @staticmethod
    def assert_mean_differs(samples, value, what: str = "mean", z: float = Z) -> None:
        """Some coordinate's sample mean more than ``z`` standard errors from ``value``
        (a biased or mutated estimator must give this)."""
        s = _as_np(samples)
        mean, se = Stats.mean_se(s)
        Stats.assert_differs(mean, value, se, what, z, n=s.shape[0])

    @staticmethod
    def assert_mean_at_most(samples, bound, what: str = "mean", z: float = Z) -> None:
        """Each coordinate's sample mean at most ``z`` standard errors above ``bound``."""
        s = _as_np(samples)
        mean, se = Stats.mean_se(s)
        Stats.assert_at_most(mean, bound, se, what, z, n=s.shape[0])

    @staticmethod
    def assert_var(samples, expected_var, mu4, what: str = "variance", z: float = Z) -> None:
        """Each coordinate's sample variance within ``z`` standard errors of ``expected_var``.

        :math:`\\operatorname{Var}[s^2] = \\bigl(\\mu_4 - \\sigma^4 (n-3)/(n-1)\\bigr)/n` with
        :math:`\\mu_4` the fourth central moment (the closed form's, where given; else
        pass ``stats.sample_mu4(samples)``).
        """
        s = _as_np(samples)
        n = s.shape[0]
        var = s.var(0, ddof=1)
        expected_var = np.broadcast_to(_as_np(expected_var), var.shape)
        mu4 = np.broadcast_to(_as_np(mu4), var.shape)
        se = np.sqrt(np.maximum(mu4 - expected_var**2 * (n - 3) / (n - 1), 0.0) / n)
        tol = z * se + 1e-6 * (1.0 + np.abs(expected_var))
        bad = ~(np.abs(var - expected_var) <= tol)
        assert not bad.any(), Stats._message(what, "sample variance", var, expected_var, se, z, bad, n)

    @staticmethod
    def assert_proportions(counts, n: int, probs, what: str = "frequencies", z: float = Z) -> None:
        """Each observed frequency within ``z`` binomial standard errors :math:`\\sqrt{p(1-p)/n}` of p."""
        counts, probs = _as_np(counts), _as_np(probs)
        freq = counts / n
        se = np.sqrt(probs * (1 - probs) / n)
        freq, probs, se = np.broadcast_arrays(freq, probs, se)
        bad = ~(np.abs(freq - probs) <= z * se + 1e-12)
        assert not bad.any(), Stats._message(what, "frequency", freq, probs, se, z, bad, n)

    @staticmethod
    def assert_ks(samples, cdf, what: str = "sample") -> None:
        """One-sample Kolmogorov-Smirnov test against ``cdf`` (a callable on a float64 array)."""
        from scipy import stats as st

        x = _as_np(samples).ravel()
        result = st.kstest(x, cdf)
        assert result.pvalue > KS_ALPHA, (
            f"{what}: KS statistic {result.statistic:.4g}, p-value {result.pvalue:.3g} <= {KS_ALPHA:g} (n={x.size})"
        )

    @staticmethod
    def assert_ks_2samp(a, b, what: str = "samples") -> None:
        """Two-sample Kolmogorov-Smirnov test: ``a`` and ``b`` come from the same distribution."""
        from scipy import stats as st

        result = st.ks_2samp(_as_np(a).ravel(), _as_np(b).ravel())
        assert result.pvalue > KS_ALPHA, (
            f"{what}: KS statistic {result.statistic:.4g}, p-value {result.pvalue:.3g} <= {KS_ALPHA:g}"
        )

    # -- assertions comparing two samples ---------------------------------------------------
    @staticmethod
    def _mean_diff_se(a, b):
        a, b = _as_np(a), _as_np(b)
        se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
        return a.mean(0) - b.mean(0), se

    @staticmethod
    def assert_same_mean(a, b, what: str = "means", z: float = Z) -> None:
        """Two independent samples' means agree within ``z`` standard errors of their difference.

        (For paired samples, where row i of both came from the same noise, use
        ``assert_mean(a - b, 0)``.)
        """
        diff, se = Stats._mean_diff_se(a, b)
        Stats.assert_within(diff, 0.0, se, f"{what} (mean of first minus mean of second)", z)

    @staticmethod
    def assert_mean_greater(a, b, what: str = "means", z: float = Z) -> None:
        """Each coordinate's mean of ``a`` above that of ``b`` (independent samples) by more
        than ``z`` standard errors of the difference."""
        diff, se = Stats._mean_diff_se(a, b)
        Stats.assert_above(diff, 0.0, se, f"{what} (mean of first minus mean of second)", z)

    @staticmethod
    def assert_means_differ(a, b, what: str = "means", z: float = Z) -> None:
        """Some coordinate's means of ``a`` and ``b`` (independent samples) differ by more than
        ``z`` standard errors of the difference."""
        diff, se = Stats._mean_diff_se(a, b)
        Stats.assert_differs(diff, 0.0, se, f"{what} (mean of first minus mean of second)", z)

    @staticmethod
    def assert_same_var(a, b, what: str = "variances", z: float = Z) -> None:
        """Two independent samples' variances agree within ``z`` standard errors of their difference.

        Each variance's standard error uses its own sample fourth central moment.
        """
        diff, se = Stats.var_diff_se(a, b)
        Stats.assert_within(diff, 0.0, se, f"{what} (variance of first minus variance of second)", z)

    @staticmethod
    def assert_var_diff(a, b, expected, what: str = "variance difference", z: float = Z, paired: bool = False) -> None:
        """:math:`\\operatorname{Var}[a] - \\operatorname{Var}[b]` within ``z`` standard errors of
        ``expected`` (see :meth:`var_diff_se` for ``paired``)."""
        diff, se = Stats.var_diff_se(a, b, paired)
        Stats.assert_within(diff, expected, se, what, z)

    @staticmethod
    def assert_var_greater(a, b, what: str = "variances", z: float = Z, paired: bool = False) -> None:
        """Each coordinate's variance of ``a`` above that of ``b`` by more than ``z`` standard
        errors of the difference: ``b`` measurably reduces the variance (see
        :meth:`var_diff_se` for ``paired``)."""
        diff, se = Stats.var_diff_se(a, b, paired)
        Stats.assert_above(diff, 0.0, se, f"{what} (variance of first minus variance of second)", z)


def raises_naming(exc, *names):
    """``pytest.raises(exc)`` whose message must contain every string in ``names``.

    Pass the argument's name and, where the message shows it, its value
    (``raises(ValueError, "n_samples", "-1")``): the message must say which argument was
    wrong and what it was. The strings may appear in any order.
    """
    if not names:
        raise ValueError("raises_naming needs at least the argument's name")
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(str(n))})" for n in names))


@pytest.fixture(scope="session")
def raises():
    """:func:`raises_naming`: ``with raises(ValueError, "sigma", "-1.0"): ...``."""
    return raises_naming


@pytest.fixture(scope="session")
def stats() -> type[Stats]:
    """The :class:`Stats` helpers."""
    return Stats


__all__ = ["Stats", "Z", "KS_ALPHA", "base_seed", "raises_naming"]
