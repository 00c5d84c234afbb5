"""Typed parameter distributions: bounds, log scale, quantisation, integers, categoricals.

Every numeric parameter has an *internal* scale (log of the value for log-scale parameters,
the value itself otherwise) on which searchers model densities, and a *unit* scale, [0, 1],
which is the internal scale stretched linearly over the parameter's bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.special import ndtr, ndtri


class SpaceError(ValueError):
    """A search-space definition is invalid; the message names the parameter path."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


def _finite(where: str, name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpaceError(where, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise SpaceError(where, f"{name} must be finite, got {value!r}")
    return out


class _LinearUnit:
    """Unit scale = the internal scale stretched linearly over `internal_bounds`."""

    def to_unit(self, value: Any) -> float:
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        return (self.to_internal(value) - lo) / (hi - lo)  # type: ignore[attr-defined]

    def from_unit(self, u: float) -> Any:
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        return self.from_internal(lo + float(np.clip(u, 0.0, 1.0)) * (hi - lo))  # type: ignore[attr-defined]

    def sample(self, rng: np.random.Generator) -> Any:
        return self.from_unit(rng.random())


@dataclass(frozen=True)
class Float(_LinearUnit):
    """A real in [low, high]; `log` samples uniformly in log space; `q` rounds to multiples of q."""

    low: float
    high: float
    log: bool = False
    q: float | None = None

    def check(self, where: str) -> None:
        low = _finite(where, "low", self.low)
        high = _finite(where, "high", self.high)
        if not low < high:
            raise SpaceError(where, f"low ({self.low}) must be < high ({self.high})")
        if self.log and low <= 0:
            raise SpaceError(where, f"log-scale bounds must be > 0, got low={self.low}")
        if self.q is not None and not _finite(where, "q", self.q) > 0:
            raise SpaceError(where, f"q must be > 0, got {self.q}")

    @property
    def internal_bounds(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low), math.log(self.high)
        return float(self.low), float(self.high)

    @property
    def cardinality(self) -> float:
        if self.q is None:
            return math.inf
        return len(self.grid())

    def grid(self) -> list[float]:
        """Every representable value when quantised (multiples of q inside the bounds)."""
        assert self.q is not None
        first = math.ceil(self.low / self.q - 1e-9)
        last = math.floor(self.high / self.q + 1e-9)
        return [self._round_q(k * self.q) for k in range(first, last + 1)]

    def _round_q(self, v: float) -> float:
        # Round away float noise so 0.1*3 prints as 0.3, as users expect from a q grid.
        return float(round(v, max(0, 12 - int(math.floor(math.log10(abs(v)))) if v else 12)))

    def to_internal(self, value: float) -> float:
        return math.log(value) if self.log else float(value)

    def from_internal(self, x: float) -> float:
        lo, hi = self.internal_bounds
        x = min(max(float(x), lo), hi)
        v = math.exp(x) if self.log else x
        if self.q is not None:
            v = round(v / self.q) * self.q
            # Step back inside the bounds if rounding left them.
            if v > self.high + 1e-12:
                v -= self.q
            if v < self.low - 1e-12:
                v += self.q
            v = self._round_q(v)
        return float(min(max(v, self.low), self.high)) if self.q is None else v

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            return False
        return self.low - 1e-12 <= float(value) <= self.high + 1e-12


@dataclass(frozen=True)
class Int(_LinearUnit):
    """An integer in [low, high] (both inclusive) on a grid low, low+step, ...; `log` for scale."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def check(self, where: str) -> None:
        for name, v in (("low", self.low), ("high", self.high), ("step", self.step)):
            if isinstance(v, bool) or not float(_finite(where, name, v)).is_integer():
                raise SpaceError(where, f"{name} must be an integer, got {v!r}")
        if self.low > self.high:
            raise SpaceError(where, f"low ({self.low}) must be <= high ({self.high})")
        if self.step < 1:
            raise SpaceError(where, f"step must be >= 1, got {self.step}")
        if self.log and self.low < 1:
            raise SpaceError(where, f"log-scale integer bounds must be >= 1, got low={self.low}")
        if self.log and self.step != 1:
            raise SpaceError(where, "log-scale integers cannot also have a step")

    @property
    def n_values(self) -> int:
        return (int(self.high) - int(self.low)) // int(self.step) + 1

    @property
    def internal_bounds(self) -> tuple[float, float]:
        # Half a step of margin each side gives every grid value an equal share of the range.
        half = 0.5 * self.step
        lo, hi = self.low - half, self.low + (self.n_values - 1) * self.step + half
        if self.log:
            return math.log(lo), math.log(hi)
        return float(lo), float(hi)

    @property
    def cardinality(self) -> float:
        return self.n_values

    def grid(self) -> list[int]:
        return [int(self.low) + k * int(self.step) for k in range(self.n_values)]

    def to_internal(self, value: int) -> float:
        return math.log(value) if self.log else float(value)

    def from_internal(self, x: float) -> int:
        v = math.exp(x) if self.log else float(x)
        k = round((v - self.low) / self.step)
        k = min(max(k, 0), self.n_values - 1)
        return int(self.low + k * self.step)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0


@dataclass(frozen=True)
class Normal:
    """An unbounded real drawn from N(mean, sd) (Ray's randn / qrandn); unit scale is its CDF."""

    mean: float
    sd: float
    q: float | None = None

    def check(self, where: str) -> None:
        _finite(where, "mean", self.mean)
        if not _finite(where, "sd", self.sd) > 0:
            raise SpaceError(where, f"sd must be > 0, got {self.sd}")
        if self.q is not None and not _finite(where, "q", self.q) > 0:
            raise SpaceError(where, f"q must be > 0, got {self.q}")

    log = False
    cardinality = math.inf

    @property
    def internal_bounds(self) -> tuple[float, float]:
        # Searchers that need finite bounds see +-6 sd; beyond that has probability ~2e-9.
        return self.mean - 6 * self.sd, self.mean + 6 * self.sd

    def to_internal(self, value: float) -> float:
        return float(value)

    def from_internal(self, x: float) -> float:
        v = float(x)
        return float(round(v / self.q) * self.q) if self.q is not None else v

    def to_unit(self, value: float) -> float:
        return float(ndtr((float(value) - self.mean) / self.sd))

    def from_unit(self, u: float) -> float:
        u = float(np.clip(u, 1e-9, 1 - 1e-9))
        return self.from_internal(self.mean + self.sd * float(ndtri(u)))

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_internal(rng.normal(self.mean, self.sd))

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Categorical:
    """One of `options`. An option that is a mapping is a conditional branch with its own params.

    In the searcher-facing representation a categorical holds the option *index*, so options
    need not be hashable or comparable.
    """

    options: tuple

    def check(self, where: str) -> None:
        if len(self.options) == 0:
            raise SpaceError(where, "choice needs at least one value")

    log = False

    @property
    def n_options(self) -> int:
        return len(self.options)

    @property
    def cardinality(self) -> float:
        return self.n_options

    def index_of(self, value: Any) -> int:
        """Index of a plain option value; matches type-strictly so True != 1 and 1 != 1.0."""
        for i, opt in enumerate(self.options):
            if type(opt) is type(value) and opt == value:
                return i
        for i, opt in enumerate(self.options):
            if _loose_equal(opt, value):
                return i
        raise KeyError(value)

    def to_unit(self, index: int) -> float:
        return (int(index) + 0.5) / self.n_options

    def from_unit(self, u: float) -> int:
        return int(min(max(math.floor(float(u) * self.n_options), 0), self.n_options - 1))

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.n_options))


def _loose_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_loose_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - uncomparable option types simply do not match
        return False


Distribution = Float | Int | Normal | Categorical
NUMERIC = (Float, Int, Normal)


def is_numeric(dist: Distribution) -> bool:
    return isinstance(dist, NUMERIC)


def plain(values: Sequence[Any]) -> tuple:
    return tuple(values)
