"""Argument checks shared by the companion's public functions.

Each check raises a ``TypeError`` or ``ValueError`` that names the argument and
shows its value, so that bad input fails at the call, not deep inside torch.

Checks run once, at the public boundary: the companion's internal calls go to
unchecked implementations. The checks that read tensor *values* (finite,
positive, in range, symmetric, positive definite, representable in the dtype, and
the finiteness of what ``f`` returns to the estimators) cost a pass over the data
and a device synchronisation each; :func:`set_validate_args` turns them off for
speed, in the spirit of ``torch.distributions.Distribution.set_default_validate_args``
(on by default). Type and shape checks, which cost nothing measurable, always run.
With value checks off, bad values give wrong results or NaN silently::

    from companion import validation
    validation.set_validate_args(False)      # globally
    with validation.validate_args(False):    # or for a block
        ...
"""

from __future__ import annotations

import contextlib
import math
import numbers

import torch

__all__ = [
    "all_finite",
    "check_positive_int",
    "check_tensor",
    "check_finite",
    "check_positive",
    "as_tensor",
    "check_choice",
    "check_shape",
    "check_float_dtype",
    "check_noise_shape",
    "compute_dtype",
    "set_validate_args",
    "get_validate_args",
    "validate_args",
]

_VALIDATE = True


def set_validate_args(value: bool) -> None:
    """Turn the companion's value checks on (the default) or off, for every public function."""
    global _VALIDATE
    if not isinstance(value, bool):
        raise TypeError(f"value must be a bool, got {_show(value)} of type {type(value).__name__}")
    _VALIDATE = value


def get_validate_args() -> bool:
    """Whether the companion's value checks are on (see :func:`set_validate_args`)."""
    return _VALIDATE


@contextlib.contextmanager
def validate_args(value: bool):
    """Run a block with the value checks on or off, restoring the previous setting after."""
    old = _VALIDATE
    set_validate_args(value)
    try:
        yield
    finally:
        set_validate_args(old)

#: Floating dtypes too coarse to draw noise in: the companion draws and transforms
#: base noise in float32 for these and casts the result.
LOW_PRECISION = (torch.float16, torch.bfloat16)


def _show(value) -> str:
    """A short printable form of ``value`` for an error message."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return repr(value.item())
        if value.numel() <= 6:
            return f"tensor({value.detach().cpu().tolist()})"
        return f"tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_show(value)} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_real(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number (a Python or NumPy number,
    or a one-element tensor; not a ``bool``), ``> 0`` when ``positive``, ``>= 0`` when
    ``nonnegative``. The package's one check of a scalar argument: ``TypeError`` for a
    non-number, ``ValueError`` for NaN, infinity or a value out of range, each naming
    ``name`` and the value."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_show(value)} of type {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not x > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and not x >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


def check_tensor(name: str, value, *, floating: bool = True) -> torch.Tensor:
    """Return ``value`` if it is a tensor (floating point when ``floating``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_show(value)} of type {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def as_tensor(name: str, value, like: torch.Tensor | None = None) -> torch.Tensor:
    """Turn a number or tensor into a floating tensor (on ``like``'s device and dtype)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a number or a torch.Tensor, got {_show(value)} of type {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            value = value.to(like.dtype if like is not None else torch.get_default_dtype())
        return value
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    out = torch.as_tensor(float(value), dtype=dtype, device=like.device if like is not None else None)
    # Check what the caller passed, not what the cast made of it: 1e-8 is not 0.
    x = float(value)
    if _VALIDATE and x == x and abs(x) != float("inf"):
        y = float(out)
        if (y == 0.0 and x != 0.0) or abs(y) == float("inf"):
            raise ValueError(f"{name}={value!r} is not representable in {dtype} (it rounds to {y!r})")
    return out


def all_finite(value: torch.Tensor) -> bool:
    """Whether every entry of a floating tensor is finite (no NaN, no infinity).

    A NaN or an infinity makes the sum NaN or infinite, so a finite sum proves every
    entry finite; the sum costs a few percent of ``torch.isfinite(value).all()`` (which
    allocates a mask). Only when the sum is not finite (a bad entry, or finite entries
    whose sum overflows) are the entries checked one by one.
    """
    value = value.detach()
    if value.numel() == 1:  # one number: read it once, check in Python
        x = value.item()
        return x == x and abs(x) != math.inf
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return True
    return bool(torch.isfinite(value).all())


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if every entry is finite (no NaN, no infinity)."""
    if not _VALIDATE:
        return value
    ok = all_finite(value)
    if not ok:
        raise ValueError(f"{name} must be finite, got {_show(value)} with NaN or infinite entries")
    return value


def check_positive(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if every entry is finite and strictly positive."""
    if not _VALIDATE:
        return value
    check_finite(name, value)
    ok = value.item() > 0 if value.numel() == 1 else bool((value.detach() > 0).all())
    if not ok:
        raise ValueError(f"{name} must be > 0, got {_show(value)}")
    return value


def check_choice(name: str, value, choices):
    """Return ``value`` if it is one of ``choices`` (names of options, estimators...)."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_shape(name: str, shape) -> torch.Size:
    """Return ``shape`` (an int or a sequence of ints, each >= 0) as a ``torch.Size``."""
    if isinstance(shape, bool):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}")
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {_show(shape)} of type {type(shape).__name__}"
        ) from None
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in items):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {_show(shape)}")
    if any(s < 0 for s in items):
        raise ValueError(f"{name} must not have negative sizes, got {tuple(int(s) for s in items)}")
    return torch.Size(int(s) for s in items)


def check_float_dtype(name: str, dtype) -> torch.dtype | None:
    """Return ``dtype`` if it is ``None`` or a floating-point ``torch.dtype``."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype such as torch.float32, got {_show(dtype)}")
    if not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point dtype, got {dtype}")
    return dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    r"""The dtype noise is drawn and transformed in: float32 for float16 and bfloat16, else ``dtype``.

    A float16 or bfloat16 uniform has so few distinct values that transforms of it
    (:math:`-\log u`, :math:`-\log(-\log u)`) get the wrong law; the companion draws
    in float32 and casts the result.
    """
    return torch.float32 if dtype in LOW_PRECISION else dtype


def check_noise_shape(name: str, noise: torch.Tensor, batch_shape, what: str = "the batch shape") -> torch.Tensor:
    """Return ``noise`` if its shape is ``sample_shape + batch_shape`` for some ``sample_shape``.

    Base noise that merely broadcasts (a ``(4, 1)`` noise against a ``(3,)`` mean) would
    reuse one draw across a batch: fully correlated columns, the wrong joint law.
    """
    batch_shape = tuple(batch_shape)
    k = len(batch_shape)
    if noise.dim() < k or tuple(noise.shape[noise.dim() - k:]) != batch_shape:
        raise ValueError(
            f"{name} must have shape sample_shape + {batch_shape} ({what}), got {tuple(noise.shape)}"
        )
    return noise
