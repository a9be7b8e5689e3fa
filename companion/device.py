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

from companion.validation import check_float_dtype, check_positive_int, check_shape, compute_dtype

__all__ = ["get_device", "setup", "randn", "uniform_open", "synchronize"]

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
    if device.type == "meta":
        raise ValueError(f"{_ENV}={name!r} names torch's data-less 'meta' device; use 'cpu' or 'cuda'")
    if device.type not in ("cpu", "cuda"):
        # mps, xpu, ...: torch knows the name, but this build or machine may not run it.
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError, NotImplementedError) as err:
            raise ValueError(f"{_ENV}={name!r} but this torch cannot use that device: {err}") from err
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
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32 (NumPy's legacy generator takes no more), got {seed}")
    if num_threads is not None:
        torch.set_num_threads(check_positive_int("num_threads", num_threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    return get_device()


def synchronize(device: torch.device | str) -> None:
    """Wait for the queued work on ``device`` (a CUDA device); a no-op on the CPU.

    Timing GPU code needs it: kernels run asynchronously, so a clock read right after a
    call measures only the launch.
    """
    if not isinstance(device, (torch.device, str)):
        raise TypeError(f"device must be a torch.device or a device name, got {device!r} of type {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device ('cpu', 'cuda', 'cuda:0'), got {device!r}") from err
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_generator(generator) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (the companion draws all noise on the CPU), "
            f"got one on {generator.device}"
        )
    return generator


def _check_device(device):
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from err


def _checked(shape, generator, device, dtype):
    return check_shape("shape", shape), _check_generator(generator), _check_device(device), check_float_dtype("dtype", dtype)


def _cast(x: torch.Tensor, dtype, device) -> torch.Tensor:
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    return x if device is None else x.to(device)


def randn(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Standard normal noise :math:`\varepsilon \sim \mathcal N(0, I)` drawn on the CPU, then moved to ``device``.

    For float16 and bfloat16 the draw is made in float32 and rounded (see
    :func:`companion.validation.compute_dtype`); other dtypes draw directly.
    """
    shape, generator, device, dtype = _checked(shape, generator, device, dtype)
    return _randn(shape, generator, device, dtype)


def _randn(shape, generator, device, dtype) -> torch.Tensor:
    draw = None if dtype is None else compute_dtype(dtype)
    eps = torch.randn(shape, generator=generator, dtype=draw)
    return _cast(eps, dtype, device)


def uniform_open(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    r"""Uniform noise on the *open* interval :math:`(0, 1)`, drawn on the CPU, then moved.

    ``torch.rand`` draws from :math:`[0, 1)`, and 0 would make :math:`-\log u`
    infinite. The draw is clamped to :math:`[t, 1 - \epsilon/2]` with :math:`t`
    the smallest normal number and :math:`\epsilon` the machine epsilon of the
    dtype: the largest float below one and the smallest positive one, so the
    logarithms downstream are finite.

    For float16 and bfloat16 the draw is made in float32, rounded, then clamped in
    the target dtype; code that transforms ``u`` (Gumbel, exponential noise) should
    transform the float32 draw instead, as the companion does.
    """
    shape, generator, device, dtype = _checked(shape, generator, device, dtype)
    return _uniform_open(shape, generator, device, dtype)


def _uniform_open(shape, generator, device, dtype) -> torch.Tensor:
    """:func:`uniform_open` without argument checks (for the companion's internal calls)."""
    draw = None if dtype is None else compute_dtype(dtype)
    u = torch.rand(shape, generator=generator, dtype=draw)
    u = _clamp_unit(_cast(u, dtype, None))
    return u if device is None else u.to(device)


def _clamp_unit(u: torch.Tensor) -> torch.Tensor:
    """``u`` clamped into :math:`[t, 1 - \\epsilon/2]` of its dtype (the smallest normal number
    and the largest float below one): the package's one clamp of uniform noise."""
    info = torch.finfo(u.dtype)
    return u.clamp(min=info.tiny, max=1.0 - info.eps / 2)
