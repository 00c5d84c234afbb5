"""Checks for trainable config values: each raises ValueError naming the field and the problem.

Shared by the trial loop, the optimizer and schedule registries and the generic trainable, so
every refusal reads the same way (`optimizer.beta1 must be in [0, 1), got 1.5`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def number(field: str, v: Any, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        raise ValueError(f"{field} must be a number, got {v!r}")
    v = float(v)
    if positive and not v > 0:
        raise ValueError(f"{field} must be > 0, got {v}")
    if nonnegative and not v >= 0:
        raise ValueError(f"{field} must be >= 0, got {v}")
    return v


def unit(field: str, v: Any) -> float:
    """A number in [0, 1)."""
    v = number(field, v, nonnegative=True)
    if not v < 1:
        raise ValueError(f"{field} must be in [0, 1), got {v}")
    return v


def integer(field: str, v: Any, low: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not float(v).is_integer():
        raise ValueError(f"{field} must be an integer, got {v!r}")
    v = int(v)
    if low is not None and v < low:
        raise ValueError(f"{field} must be >= {low}, got {v}")
    return v


def flag(field: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{field} must be true or false, got {v!r}")
    return bool(v)


def branch(field: str, value: Any, allowed: Mapping[str, Mapping[str, Any]],
           extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Normalise "name" or {name: ..., params...} into a mapping with the entry's defaults filled in.

    `allowed` maps each name to its own keys with defaults; `extra_keys` are accepted by every
    name (for example a per-branch `lr`). A key that belongs to another name is refused, so a
    conditional subspace can never set a parameter its branch does not use.
    """
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or "name" not in value:
        raise ValueError(f"{field} must be a name or a mapping with 'name', got {value!r}")
    name = value["name"]
    if name not in allowed:
        raise ValueError(f"{field}: unknown name {name!r}; choose one of {', '.join(allowed)}")
    keys = allowed[name]
    extra = sorted(k for k in value if k != "name" and k not in keys and k not in extra_keys)
    if extra:
        raise ValueError(f"{field} {name!r}: unknown key(s) {', '.join(extra)}; "
                         f"allowed: {', '.join([*keys, *extra_keys]) or 'none'}")
    return {"name": name, **keys, **{k: v for k, v in value.items() if k != "name"}}
