r"""Wall-clock timing for the chapters' cost comparisons.

On a busy machine other processes only ever add time to a call, so the fastest of
several calls is the least disturbed measurement (:func:`best_time`). Timings vary
from machine to machine and run to run: the book prints them as a number and a unit
(``"12.3 ms"``), which its nbval sanitizer masks, and never quotes them in prose.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from companion.device import synchronize
from companion.validation import check_positive_int

__all__ = ["best_time"]


def best_time(fn: Callable[[], object], repeats: int = 20, device: torch.device | str = "cpu") -> float:
    """The fastest of ``repeats`` calls of ``fn()``, in seconds.

    Work queued on a CUDA ``device`` is waited for before the clock starts and
    before it stops (:func:`companion.device.synchronize`), so GPU kernels are timed,
    not only their launch.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r} of type {type(fn).__name__}")
    repeats = check_positive_int("repeats", repeats)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)
