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
fixture) compute those standard errors:

* a sample mean: :math:`\\mathrm{SE} = s/\\sqrt n`;
* a sample variance: :math:`\\operatorname{Var}[s^2] = \\bigl(\\mu_4 - \\sigma^4 (n-3)/(n-1)\\bigr)/n`,
  with :math:`\\mu_4` the fourth central moment, exact where the test knows it;
* a proportion: :math:`\\sqrt{p(1-p)/n}`;
* a distribution: the Kolmogorov-Smirnov test at level ``1e-6``.
"""

from __future__ import annotations

import math
import os
import random

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

    # -- assertions --------------------------------------------------------------------
    @staticmethod
    def assert_mean(samples, expected, what: str = "mean", z: float = Z) -> None:
        """Each coordinate's sample mean within ``z`` standard errors of ``expected``.

        ``samples`` has the draws along dimension 0; the standard error is the
        sample standard deviation over :math:`\\sqrt n`.
        """
        s = _as_np(samples)
        n = s.shape[0]
        mean = s.mean(0)
        se = s.std(0, ddof=1) / math.sqrt(n)
        expected = np.broadcast_to(_as_np(expected), mean.shape)
        # A coordinate with zero spread must match exactly (up to float error).
        tol = z * se + 1e-6 * (1.0 + np.abs(expected))
        bad = np.abs(mean - expected) > tol
        assert not bad.any(), (
            f"{what}: sample mean {mean} differs from the closed form {expected} by more than "
            f"{z} standard errors {se} (n={n})"
        )

    @staticmethod
    def assert_var(samples, expected_var, mu4, what: str = "variance", z: float = Z) -> None:
        """Each coordinate's sample variance within ``z`` standard errors of ``expected_var``.

        :math:`\\operatorname{Var}[s^2] = \\bigl(\\mu_4 - \\sigma^4 (n-3)/(n-1)\\bigr)/n` with
        :math:`\\mu_4` the fourth central moment (the closed form's, where given).
        """
        s = _as_np(samples)
        n = s.shape[0]
        var = s.var(0, ddof=1)
        expected_var = np.broadcast_to(_as_np(expected_var), var.shape)
        mu4 = np.broadcast_to(_as_np(mu4), var.shape)
        se = np.sqrt(np.maximum(mu4 - expected_var**2 * (n - 3) / (n - 1), 0.0) / n)
        tol = z * se + 1e-6 * (1.0 + np.abs(expected_var))
        bad = np.abs(var - expected_var) > tol
        assert not bad.any(), (
            f"{what}: sample variance {var} differs from the closed form {expected_var} by more "
            f"than {z} standard errors {se} (n={n})"
        )

    @staticmethod
    def assert_proportions(counts, n: int, probs, what: str = "frequencies", z: float = Z) -> None:
        """Each observed frequency within ``z`` binomial standard errors :math:`\\sqrt{p(1-p)/n}` of p."""
        counts, probs = _as_np(counts), _as_np(probs)
        freq = counts / n
        se = np.sqrt(probs * (1 - probs) / n)
        bad = np.abs(freq - probs) > z * se + 1e-12
        assert not bad.any(), f"{what}: frequencies {freq} differ from {probs} by more than {z} SE {se} (n={n})"

    @staticmethod
    def assert_ks(samples, cdf, what: str = "sample") -> None:
        """One-sample Kolmogorov-Smirnov test against ``cdf`` (a callable on a float64 array)."""
        from scipy import stats as st

        x = _as_np(samples).ravel()
        result = st.kstest(x, cdf)
        assert result.pvalue > KS_ALPHA, f"{what}: KS statistic {result.statistic:.4g}, p-value {result.pvalue:.3g}"

    @staticmethod
    def assert_ks_2samp(a, b, what: str = "samples") -> None:
        """Two-sample Kolmogorov-Smirnov test: ``a`` and ``b`` come from the same distribution."""
        from scipy import stats as st

        result = st.ks_2samp(_as_np(a).ravel(), _as_np(b).ravel())
        assert result.pvalue > KS_ALPHA, f"{what}: KS statistic {result.statistic:.4g}, p-value {result.pvalue:.3g}"

    @staticmethod
    def assert_same_mean(a, b, what: str = "means", z: float = Z) -> None:
        """Two independent samples' means agree within ``z`` standard errors of their difference."""
        a, b = _as_np(a), _as_np(b)
        se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
        diff = a.mean(0) - b.mean(0)
        assert (np.abs(diff) <= z * se + 1e-12).all(), f"{what}: {a.mean(0)} vs {b.mean(0)}, SE {se}"

    @staticmethod
    def assert_same_var(a, b, what: str = "variances", z: float = Z) -> None:
        """Two independent samples' variances agree within ``z`` standard errors of their difference.

        Each variance's standard error uses its own sample fourth central moment.
        """
        a, b = _as_np(a), _as_np(b)

        def var_and_se2(x):
            n = x.shape[0]
            c = x - x.mean(0)
            v = (c**2).sum(0) / (n - 1)
            m4 = (c**4).mean(0)
            return v, np.maximum(m4 - v**2 * (n - 3) / (n - 1), 0.0) / n

        va, sa = var_and_se2(a)
        vb, sb = var_and_se2(b)
        se = np.sqrt(sa + sb)
        assert (np.abs(va - vb) <= z * se + 1e-12).all(), f"{what}: {va} vs {vb}, SE {se}"


@pytest.fixture(scope="session")
def stats() -> type[Stats]:
    """The :class:`Stats` helpers."""
    return Stats


__all__ = ["Stats", "Z", "KS_ALPHA", "base_seed"]
