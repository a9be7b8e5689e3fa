"""companion.plotting: one colour per estimator, keyed by the canonical vocabulary."""

from __future__ import annotations

import matplotlib.colors as mcolors

from companion import catalogue
from companion.plotting import ESTIMATOR_COLORS, REFERENCE_COLOR


def test_colours_are_keyed_by_catalogue_keys_only():
    """A display name ("score function") as a key would be a second vocabulary."""
    keys = {e.key for e in catalogue.entries()}
    assert set(ESTIMATOR_COLORS) <= keys, sorted(set(ESTIMATOR_COLORS) - keys)
    for name in catalogue.names():
        if name != "elbo_gradient":
            assert name in ESTIMATOR_COLORS, f"{name} has no colour"


def test_colours_are_valid_and_distinct():
    values = list(ESTIMATOR_COLORS.values()) + [REFERENCE_COLOR]
    assert all(mcolors.is_color_like(v) for v in values)
    assert len({v.lower() for v in values}) == len(values), "two estimators share a colour"
