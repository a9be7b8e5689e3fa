"""Tests of companion.experiments.timing.best_time."""

from __future__ import annotations

import time

from companion.experiments.timing import best_time


def test_best_time_is_the_fastest_call():
    """The first call sleeps 50 ms, the others 1 ms: the fastest, not the mean (>= 13 ms)
    nor the first, is returned; and fn runs exactly `repeats` times."""
    calls = []

    def fn():
        time.sleep(0.05 if not calls else 0.001)
        calls.append(1)

    t = best_time(fn, repeats=4)
    assert len(calls) == 4
    assert 0.001 <= t < 0.01


def test_bad_arguments(raises):
    with raises(TypeError, "fn", "3"):
        best_time(3)
    with raises(ValueError, "repeats", "0"):
        best_time(lambda: None, repeats=0)
