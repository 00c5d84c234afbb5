"""Which value is better: the one place that turns an optimisation ``mode`` into an order.

Every "best" in tunekit (a record's best trial, a summary's best value, the callback's best
so far, a comparison's verdict) goes through `sign`, so "min"/"max" is interpreted once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")
MODES = ("min", "max")


def sign(mode: str) -> float:
    """+1 for "min", -1 for "max": ``sign(mode) * value`` is always to be minimised."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return -1.0 if mode == "max" else 1.0


def usable(value: Any) -> bool:
    """A finite real number (bools, None, NaN and inf are not objective values)."""
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def best_of(items: Iterable[T], mode: str, key: Callable[[T], Any] = lambda x: x) -> T | None:
    """The best item by ``key`` (first one on ties); items whose key is not a finite
    number are skipped; None when nothing is left."""
    s = sign(mode)
    best, best_v = None, math.inf
    for item in items:
        v = key(item)
        if usable(v) and s * float(v) < best_v:
            best, best_v = item, s * float(v)
    return best


def is_better(a: Any, b: Any, mode: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` (a usable value beats an unusable one)."""
    if not usable(a):
        return False
    if not usable(b):
        return True
    return sign(mode) * float(a) < sign(mode) * float(b)
