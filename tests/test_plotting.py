"""companion.plotting: one colour per estimator, keyed by the canonical vocabulary."""

from __future__ import annotations

import matplotlib.colors as mcolors

from companion import catalogue
from companion.plotting import ESTIMATOR_COLORS, REFERENCE_COLOR


def test_colours_are_keyed_by_catalogue_keys_only():
    """A display name ("score function") as a key would be a second vocabulary."""
    keys = {e.key for e in catalogue.entries()}
    assert set(ESTIMATOR_COLORS) <= keys, sorted(set(ESTIMATOR_COLORS) - keys)


def test_every_catalogued_estimator_has_a_colour():
    """Variants included (``elbo_gradient[dreg]``): a chapter never falls back on C0, C1."""
    missing = [e.key for e in catalogue.entries() if e.key not in ESTIMATOR_COLORS]
    assert not missing, f"no colour for {missing}"


def test_colours_are_valid_and_distinct():
    values = list(ESTIMATOR_COLORS.values()) + [REFERENCE_COLOR]
    assert all(mcolors.is_color_like(v) for v in values)
    assert len({v.lower() for v in values}) == len(values), "two estimators share a colour"
