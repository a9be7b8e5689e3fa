r"""The book's real data: scikit-learn's bundled 8x8 handwritten digits, binarized.

``sklearn.datasets.load_digits`` ships its 1797 images inside the scikit-learn
package, so nothing is downloaded. Each image is 8x8 pixels with integer grey
levels :math:`0, \dots, 16`. Chapter 9 models every pixel as a Bernoulli variable,
so the images are **binarized** with a fixed threshold,

.. math::

    x_j = \mathbb 1[\text{grey}_j > t], \qquad j = 1, \dots, 64,

(:math:`t = 8`, half the grey scale, by default). A fixed threshold rather than a
random (dynamic) binarization keeps the data, and so every ELBO printed in the
book, identical from run to run. The split into training and held-out images is a
permutation drawn from a seeded CPU ``torch.Generator``, so it is the same on
every machine and device.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import torch

from companion.validation import check_real, check_positive_int, check_tensor

__all__ = ["Digits", "load_binary_digits", "tile_images"]

#: Grey levels of the raw images run from 0 to this value.
MAX_GREY = 16


class Digits(NamedTuple):
    """A train/held-out split of the binarized digits (all tensors on the CPU).

    ``x_*`` are float32 images flattened to 64 pixels with values in ``{0, 1}``;
    ``y_*`` the digit labels (int64, only for plots); ``index_*`` the rows of
    ``load_digits().data`` each image came from.
    """

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    index_train: torch.Tensor
    index_test: torch.Tensor


def load_binary_digits(threshold: float = 8.0, test_fraction: float = 0.2, seed: int = 0) -> Digits:
    r"""The 8x8 digits binarized at ``threshold`` and split at random into train and held-out sets.

    Args:
        threshold: grey level :math:`t` with :math:`0 \le t < 16`; a pixel is 1 when its
            grey level is strictly above :math:`t`.
        test_fraction: share of the 1797 images held out, :math:`0 < f < 1`; the held-out
            set has :math:`\operatorname{round}(1797 f)` images, at least one in each set.
        seed: seed of the CPU ``torch.Generator`` that draws the permutation.

    Returns:
        :class:`Digits`, with ``x_train`` of shape ``(n_train, 64)`` and ``x_test`` of
        shape ``(n_test, 64)``.
    """
    check_real("threshold", threshold)
    if not 0 <= threshold < MAX_GREY:
        raise ValueError(f"threshold must satisfy 0 <= threshold < {MAX_GREY}, got {threshold!r}")
    check_real("test_fraction", test_fraction)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must satisfy 0 < test_fraction < 1, got {test_fraction!r}")
    seed = check_positive_int("seed", seed, minimum=0)

    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    raw = load_digits()
    pixels = torch.as_tensor(raw.data, dtype=torch.float64)
    labels = torch.as_tensor(raw.target, dtype=torch.int64)
    x = (pixels > threshold).to(torch.float32)

    n = x.shape[0]
    n_test = min(max(round(n * float(test_fraction)), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    index_test, index_train = perm[:n_test].sort().values, perm[n_test:].sort().values
    return Digits(
        x_train=x[index_train],
        x_test=x[index_test],
        y_train=labels[index_train],
        y_test=labels[index_test],
        index_train=index_train,
        index_test=index_test,
    )


def tile_images(images: torch.Tensor, n_cols: int, pad: int = 1, side: int = 8) -> np.ndarray:
    r"""Arrange flattened ``side`` x ``side`` images ``(n, side**2)`` in a grid for one ``imshow``.

    Image :math:`i` goes to row :math:`\lfloor i / c \rfloor`, column :math:`i \bmod c` of a
    grid with :math:`c` = ``n_cols`` columns, cells separated by ``pad`` pixels; padding
    and empty cells are NaN (drawn blank by matplotlib).
    """
    images = check_tensor("images", images)
    n_cols = check_positive_int("n_cols", n_cols)
    pad = check_positive_int("pad", pad, minimum=0)
    side = check_positive_int("side", side)
    if images.dim() != 2 or images.shape[1] != side * side:
        raise ValueError(f"images must have shape (n, {side * side}), got shape {tuple(images.shape)}")
    n = images.shape[0]
    n_rows = max(1, -(-n // n_cols))
    cell = side + pad
    grid = np.full((n_rows * cell - pad, n_cols * cell - pad), np.nan)
    pictures = images.detach().cpu().double().numpy().reshape(n, side, side)
    for i in range(n):
        r, c = divmod(i, n_cols)
        grid[r * cell : r * cell + side, c * cell : c * cell + side] = pictures[i]
    return grid
