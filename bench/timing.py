"""Timed batches of an in-process call: µs per call, garbage collector paused as `timeit` does."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def calibrate(call: Callable[[], object], target_seconds: float) -> int:
    """How many calls make a batch last about `target_seconds`."""
    count = 1
    while True:
        elapsed = time_batch(call, count) * count / 1e6
        if elapsed >= target_seconds / 4 or count >= 1 << 24:
            return max(1, int(count * target_seconds / max(elapsed, 1e-9)))
        count *= 4


def time_batch(call: Callable[[], object], count: int) -> float:
    """Mean µs per call over one batch of `count` calls."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter_ns()
        for _ in range(count):
            call()
        elapsed = time.perf_counter_ns() - started
    finally:
        if enabled:
            gc.enable()
    return elapsed / count / 1000
