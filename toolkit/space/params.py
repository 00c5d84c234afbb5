"""Typed parameter distributions: bounds, log scale, quantisation, integers, categoricals.

Every numeric parameter has an *internal* scale (log of the value for log-scale parameters,
the value itself otherwise) on which searchers model densities, and a *unit* scale, [0, 1],
which is the internal scale stretched linearly over the parameter's bounds.

Snapping lives here, once: `snap_values` (vectorised) moves values onto the parameter's
grid (multiples of q, integer steps) and inside its bounds, and every other conversion
(`from_internal`, `from_unit`, `snap_internal`, `snap_unit`) goes through it, so the space,
the GP's encoding and TPE's Parzen dimensions agree on every representable value.
`contains` is grid membership: inside the bounds *and* on the grid.
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


# Relative tolerance for "this value is on the grid" (float noise of k * q and of YAML/Parquet).
_GRID_TOL = 1e-9


class _Numeric:
    """Conversions shared by the numeric distributions, all built on `snap_values`.

    Subclasses define `internal_bounds`, `to_internal`/`internal_to_values` (vectorised),
    `snap_values` and `in_bounds`.
    """

    log: bool = False

    # ---- vectorised
    def internal_to_values(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x) if self.log else np.asarray(x, dtype=float)

    def values_to_internal(self, v: np.ndarray) -> np.ndarray:
        return np.log(v) if self.log else np.asarray(v, dtype=float)

    def snap_internal(self, x: np.ndarray) -> np.ndarray:
        """Internal-scale values moved onto the grid and inside the bounds (internal scale)."""
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        x = np.clip(np.asarray(x, dtype=float), lo, hi)
        return self.values_to_internal(self.snap_values(self.internal_to_values(x)))  # type: ignore[attr-defined]

    def values_from_unit(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        x = lo + np.clip(np.asarray(u, dtype=float), 0.0, 1.0) * (hi - lo)
        return self.snap_values(self.internal_to_values(x))  # type: ignore[attr-defined]

    def unit_from_values(self, v: np.ndarray) -> np.ndarray:
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        return np.clip((self.values_to_internal(v) - lo) / (hi - lo), 0.0, 1.0)

    def snap_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit values moved to the unit value of the representable value they decode to."""
        return self.unit_from_values(self.values_from_unit(u))

    # ---- scalar
    def to_internal(self, value: Any) -> float:
        return math.log(value) if self.log else float(value)

    def from_internal(self, x: float) -> Any:
        lo, hi = self.internal_bounds  # type: ignore[attr-defined]
        x = min(max(float(x), lo), hi)
        return self._python(self.snap_values(self.internal_to_values(np.array([x])))[0])

    def to_unit(self, value: Any) -> float:
        return float(self.unit_from_values(np.array([float(value)]))[0])

    def from_unit(self, u: float) -> Any:
        return self._python(self.values_from_unit(np.array([float(u)]))[0])

    def snap(self, value: Any) -> Any:
        """The representable value nearest to `value` (clipped into the bounds)."""
        return self._python(self.snap_values(np.array([float(value)]))[0])

    def sample(self, rng: np.random.Generator) -> Any:
        return self.from_unit(rng.random())

    def contains(self, value: Any) -> bool:
        """Inside the bounds and on the grid (a multiple of q, an integer step)."""
        if not _is_number(value) or not math.isfinite(float(value)) or not self.in_bounds(value):  # type: ignore[attr-defined]
            return False
        snapped = float(self.snap_values(np.array([float(value)]))[0])  # type: ignore[attr-defined]
        return abs(snapped - float(value)) <= _GRID_TOL * max(1.0, abs(float(value)))

    def _python(self, v: float) -> Any:
        return float(v)


def _pretty(v: float) -> float:
    """Round away float noise so 0.1*3 prints as 0.3, as users expect from a q grid."""
    if not v or not math.isfinite(v):
        return float(v)
    return float(round(v, max(0, 12 - int(math.floor(math.log10(abs(v)))))))


@dataclass(frozen=True)
class Float(_Numeric):
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
        if self.q is not None:
            if not _finite(where, "q", self.q) > 0:
                raise SpaceError(where, f"q must be > 0, got {self.q}")
            if self._grid_k()[0] > self._grid_k()[1]:
                raise SpaceError(where, f"no multiple of q={self.q} lies inside [{self.low}, {self.high}]")

    @property
    def internal_bounds(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low), math.log(self.high)
        return float(self.low), float(self.high)

    @property
    def cardinality(self) -> float:
        if self.q is None:
            return math.inf
        first, last = self._grid_k()
        return max(0, last - first + 1)

    def _grid_k(self) -> tuple[int, int]:
        assert self.q is not None
        return math.ceil(self.low / self.q - 1e-9), math.floor(self.high / self.q + 1e-9)

    def grid(self) -> list[float]:
        """Every representable value when quantised (multiples of q inside the bounds)."""
        first, last = self._grid_k()
        return [_pretty(k * self.q) for k in range(first, last + 1)]  # type: ignore[operator]

    def grid_spec(self) -> tuple[float, float, int] | None:
        """(first value, step, number of values) of a quantised float; None when continuous."""
        if self.q is None:
            return None
        first, last = self._grid_k()
        return first * float(self.q), float(self.q), last - first + 1

    def in_bounds(self, value: Any) -> bool:
        return self.low - 1e-12 * max(1.0, abs(self.low)) <= float(value) <= self.high + 1e-12 * max(1.0, abs(self.high))

    def snap_values(self, v: np.ndarray) -> np.ndarray:
        v = np.clip(np.asarray(v, dtype=float), self.low, self.high)
        if self.q is None:
            return v
        first, last = self._grid_k()
        return np.clip(np.round(v / self.q), first, last) * self.q

    def _python(self, v: float) -> float:
        return _pretty(float(v)) if self.q is not None else float(v)


@dataclass(frozen=True)
class Int(_Numeric):
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

    def grid_spec(self) -> tuple[float, float, int]:
        return float(self.low), float(self.step), self.n_values

    def in_bounds(self, value: Any) -> bool:
        return self.low - 1e-9 <= float(value) <= self.high + 1e-9

    def snap_values(self, v: np.ndarray) -> np.ndarray:
        k = np.clip(np.round((np.asarray(v, dtype=float) - self.low) / self.step), 0, self.n_values - 1)
        return self.low + k * self.step

    def _python(self, v: float) -> int:
        return int(round(float(v)))


@dataclass(frozen=True)
class Normal(_Numeric):
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

    def grid_spec(self) -> tuple[float, float, int] | None:
        """The q grid over the +-6 sd box searchers model (None when not quantised)."""
        if self.q is None:
            return None
        lo, hi = self.internal_bounds
        first = math.ceil(lo / self.q)
        return first * float(self.q), float(self.q), math.floor(hi / self.q) - first + 1

    def in_bounds(self, value: Any) -> bool:
        return True

    def snap_values(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.round(v / self.q) * self.q if self.q is not None else v

    def from_internal(self, x: float) -> float:
        return self._python(self.snap_values(np.array([float(x)]))[0])  # unbounded: no clipping

    def values_from_unit(self, u: np.ndarray) -> np.ndarray:
        u = np.clip(np.asarray(u, dtype=float), 1e-9, 1 - 1e-9)
        return self.snap_values(self.mean + self.sd * ndtri(u))

    def unit_from_values(self, v: np.ndarray) -> np.ndarray:
        return ndtr((np.asarray(v, dtype=float) - self.mean) / self.sd)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_internal(rng.normal(self.mean, self.sd))

    def _python(self, v: float) -> float:
        return _pretty(float(v)) if self.q is not None else float(v)


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

    def index_from_unit(self, u: np.ndarray) -> np.ndarray:
        """Option indices of unit values (vectorised `from_unit`)."""
        return np.clip(np.floor(np.asarray(u, dtype=float) * self.n_options), 0, self.n_options - 1).astype(int)

    def snap_unit(self, u: np.ndarray) -> np.ndarray:
        return (self.index_from_unit(u) + 0.5) / self.n_options

    def to_unit(self, index: int) -> float:
        return (int(index) + 0.5) / self.n_options

    def from_unit(self, u: float) -> int:
        return int(self.index_from_unit(np.array([float(u)]))[0])

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
