"""Argument checks shared by the companion's public functions.

Each check raises a ``TypeError`` or ``ValueError`` that names the argument and
shows its value, so that bad input fails at the call, not deep inside torch.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_positive_int",
    "check_tensor",
    "check_finite",
    "check_positive",
    "as_tensor",
    "check_choice",
]


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
    if like is not None:
        return torch.as_tensor(float(value), dtype=like.dtype, device=like.device)
    return torch.as_tensor(float(value), dtype=torch.get_default_dtype())


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if every entry is finite (no NaN, no infinity)."""
    if not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"{name} must be finite, got {_show(value)} with NaN or infinite entries")
    return value


def check_positive(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if every entry is finite and strictly positive."""
    check_finite(name, value)
    if not bool((value.detach() > 0).all()):
        raise ValueError(f"{name} must be > 0, got {_show(value)}")
    return value


def check_choice(name: str, value, choices):
    """Return ``value`` if it is one of ``choices`` (names of options, estimators...)."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
