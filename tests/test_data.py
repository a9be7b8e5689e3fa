"""Tests of companion.experiments.data: the binarized 8x8 digits and their seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from companion.experiments.data import Digits, load_binary_digits, tile_images


def test_shapes_and_split_sizes():
    d = load_binary_digits()
    assert isinstance(d, Digits)
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.y_train.shape == (1438,) and d.y_test.shape == (359,)
    assert d.x_train.dtype == torch.float32


def test_pixels_are_the_thresholded_grey_levels():
    """Every pixel is 1 exactly when sklearn's grey level is above the threshold."""
    raw = load_digits()
    for threshold in (0.0, 8.0, 12.5):
        d = load_binary_digits(threshold=threshold)
        expected = (raw.data > threshold).astype(np.float32)
        assert set(torch.unique(d.x_train).tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(d.x_train.numpy(), expected[d.index_train.numpy()])
        np.testing.assert_array_equal(d.x_test.numpy(), expected[d.index_test.numpy()])
        np.testing.assert_array_equal(d.y_test.numpy(), raw.target[d.index_test.numpy()])


def test_split_is_a_partition_and_seeded():
    d = load_binary_digits(seed=3)
    both = torch.cat([d.index_train, d.index_test]).sort().values
    assert torch.equal(both, torch.arange(1797))
    again = load_binary_digits(seed=3)
    assert torch.equal(again.index_test, d.index_test) and torch.equal(again.x_train, d.x_train)
    other = load_binary_digits(seed=4)
    assert not torch.equal(other.index_test, d.index_test)


def test_test_fraction_sets_the_held_out_size():
    assert load_binary_digits(test_fraction=0.5).x_test.shape[0] == round(1797 * 0.5)
    assert load_binary_digits(test_fraction=1e-6).x_test.shape[0] == 1
    assert load_binary_digits(test_fraction=1 - 1e-6).x_train.shape[0] == 1


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"threshold": -1}, ValueError),
        ({"threshold": 16}, ValueError),
        ({"threshold": "8"}, TypeError),
        ({"threshold": True}, TypeError),
        ({"test_fraction": 0}, ValueError),
        ({"test_fraction": 1.0}, ValueError),
        ({"test_fraction": None}, TypeError),
        ({"seed": -1}, ValueError),
        ({"seed": 1.5}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error, raises):
    """The message names the argument and shows the value."""
    ((name, value),) = kwargs.items()
    with raises(error, name, repr(value) if isinstance(value, str) else str(value)):
        load_binary_digits(**kwargs)


def test_tile_images_places_each_image_in_its_cell():
    x = torch.arange(5 * 64, dtype=torch.float32).reshape(5, 64)
    grid = tile_images(x, n_cols=3, pad=1)
    assert grid.shape == (2 * 9 - 1, 3 * 9 - 1)
    for i in range(5):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8], x[i].reshape(8, 8).numpy())
    assert np.isnan(grid[9:, 18:]).all()  # the empty sixth cell


def test_tile_images_bad_input():
    with pytest.raises(ValueError, match="images"):
        tile_images(torch.zeros(3, 63), n_cols=2)
    with pytest.raises(TypeError, match="n_cols"):
        tile_images(torch.zeros(3, 64), n_cols=2.0)
