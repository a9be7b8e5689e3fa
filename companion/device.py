r"""The one place that decides where the book's tensors live, and how noise is drawn.

Set the environment variable ``COMPANION_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``)
before starting Python or a notebook kernel; without it everything runs on the CPU.

CPU and CUDA produce different random streams from the same seed. So that a
notebook prints the same numbers on either device, **all noise is drawn on the
CPU** (from torch's global CPU generator, or from a ``torch.Generator`` passed in)
and then moved to the device. :func:`setup` also turns off TF32, which would
otherwise change float32 matrix products on recent NVIDIA GPUs.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from companion.validation import check_positive_int

__all__ = ["get_device", "setup", "randn", "uniform_open", "to_device"]

_ENV = "COMPANION_DEVICE"


def get_device() -> torch.device:
    """The device named by ``COMPANION_DEVICE`` (default ``cpu``).

    Raises ``ValueError`` if the name is not a device torch knows, or names CUDA
    on a machine without a usable CUDA GPU (or a CUDA index it does not have).
    """
    name = os.environ.get(_ENV, "cpu").strip() or "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{_ENV} must name a torch device such as 'cpu' or 'cuda', got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{_ENV}={name!r} but torch.cuda.is_available() is False on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{_ENV}={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def setup(seed: int = 0, num_threads: int | None = 1) -> torch.device:
    """Seed every generator the book uses, pin the CPU thread count, turn off TF32,
    and return :func:`get_device`.

    Seeds Python's ``random``, NumPy's legacy global generator and torch's CPU
    generator (where the companion draws all its noise), and CUDA's for good
    measure.

    ``num_threads`` (default 1) is passed to ``torch.set_num_threads``. One thread
    makes CPU reductions sum in the same order on every machine, whatever its core
    count, so printed numbers do not depend on the hardware; and for the book's
    small tensors it is also faster (thread hand-offs cost more than they save,
    badly so on a loaded machine). ``None`` leaves torch's setting alone.
    """
    seed = check_positive_int("seed", seed, minimum=0)
    if num_threads is not None:
        torch.set_num_threads(check_positive_int("num_threads", num_threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return get_device()


def to_device(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Move ``x`` to ``device`` (default :func:`get_device`)."""
    return x.to(get_device() if device is None else device)


def _shape(shape) -> torch.Size:
    if isinstance(shape, int):
        shape = (shape,)
    return torch.Size(shape)


def randn(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Standard normal noise :math:`\varepsilon \sim \mathcal N(0, I)` drawn on the CPU, then moved to ``device``."""
    eps = torch.randn(_shape(shape), generator=generator, dtype=dtype)
    return eps if device is None else eps.to(device)


def uniform_open(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Uniform noise on the *open* interval :math:`(0, 1)`, drawn on the CPU, then moved.

    ``torch.rand`` draws from :math:`[0, 1)`, and 0 would make :math:`-\log u`
    infinite. The draw is clamped to :math:`[t, 1 - \epsilon/2]` with :math:`t`
    the smallest normal number and :math:`\epsilon` the machine epsilon of the
    dtype: the largest float below one and the smallest positive one, so the
    logarithms downstream are finite.
    """
    u = torch.rand(_shape(shape), generator=generator, dtype=dtype)
    info = torch.finfo(u.dtype)
    u = u.clamp_(min=info.tiny, max=1.0 - info.eps / 2)
    return u if device is None else u.to(device)
