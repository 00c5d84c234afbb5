"""Search space -> GP input features.

Two representations of a point are used:

* **raw** `u`: one unit-cube entry per `SearchSpace.params` entry (the space's own
  `encode`/`decode` scale: log parameters in log space, a categorical as
  `(index + 0.5) / n`). Every entry is always present, even for inactive conditional
  parameters, so switching a branch on during local search finds a value waiting.
* **features** `z`: what the kernel sees. Numeric parameters keep their (snapped) unit
  value; a categorical becomes a one-hot block so that a 5-way choice has no order and all
  options are equally far apart; an *inactive* conditional parameter is imputed with a
  constant (0.5 for numbers, all-zero one-hot) so that points sharing a branch are not
  pushed apart by values that never reached the trainable, while points on different
  branches already differ through the parent's one-hot block. This follows the simple
  "impute a constant" treatment of conditional spaces (as in Optuna/SMAC) rather than a
  dedicated conditional kernel.

Snapping (integers, quantised floats, categoricals) is the distributions' own vectorised
`snap_unit` (`toolkit.space.params`), the same code `from_unit` runs, so the acquisition
optimiser scores the value the trainable will receive: rounding happens inside the
optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.space.params import Categorical, Float, Int, Normal
from toolkit.space.space import Flat, SearchSpace

# Discrete numeric parameters with more grid values than this are also relaxed to a
# continuous variable for L-BFGS-B; below it, local search simply tries every value.
SMALL_GRID = 16
_IMPUTE = 0.5


@dataclass(frozen=True)
class _Column:
    raw: int  # index into space.params
    kind: str  # "cont", "int", "qfloat", "qnormal", "cat"
    feature: int  # first feature column
    width: int  # number of feature columns (n options for a categorical, else 1)
    parent: tuple[int, int] | None  # (raw index of parent categorical, option) or None
    n_values: float  # grid size (inf for continuous)


class Encoding:
    """Vectorised mapping between flat points, raw unit vectors and kernel features."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        index = {p.key: i for i, p in enumerate(space.params)}
        cols: list[_Column] = []
        f = 0
        for i, p in enumerate(space.params):
            parent = (index[p.parent[0]], p.parent[1]) if p.parent is not None else None
            d = p.dist
            if isinstance(d, Categorical):
                # A single-option choice carries no information: no feature column.
                width = d.n_options if d.n_options > 1 else 0
                cols.append(_Column(i, "cat", f, width, parent, d.n_options))
            else:
                if isinstance(d, Int):
                    kind = "int"
                elif isinstance(d, Float):
                    kind = "cont" if d.q is None else "qfloat"
                elif isinstance(d, Normal):
                    kind = "cont" if d.q is None else "qnormal"
                else:  # pragma: no cover - the space only has these four types
                    raise TypeError(d)
                width = 1
                cols.append(_Column(i, kind, f, width, parent, d.cardinality))
            f += width
        self.columns = cols
        self.n_raw = len(space.params)
        self.n_features = f
        # Raw indices that L-BFGS-B moves: true continuous params and large discrete grids
        # (relaxed, then snapped before scoring).
        self.relaxed = np.array(
            [c.raw for c in cols if c.kind == "cont" or (c.kind != "cat" and c.n_values > SMALL_GRID)], dtype=int
        )
        # Feature column of each relaxed raw index (numeric params have width 1).
        self.relaxed_features = np.array([cols[i].feature for i in self.relaxed], dtype=int)
        self.discrete = [c for c in cols if c.kind != "cont" and not (c.kind == "cat" and c.width == 0)]

    # ------------------------------------------------------------------ flat <-> raw
    def raw_from_flat(self, flat: Flat) -> np.ndarray:
        u = self.space.encode(flat)
        return np.where(np.isnan(u), _IMPUTE, u)

    def flat_from_raw(self, u: np.ndarray) -> Flat:
        return self.space.decode(np.asarray(u, dtype=float))

    # ------------------------------------------------------------------ snapping
    def snap(self, U: np.ndarray) -> np.ndarray:
        """Round every discrete raw entry to the unit value of the grid point it decodes to."""
        U = np.clip(np.array(U, dtype=float, copy=True), 0.0, 1.0)
        for c in self.columns:
            if c.kind != "cont":
                U[..., c.raw] = self.space.params[c.raw].dist.snap_unit(U[..., c.raw])
        return U

    def grid_index(self, c: _Column, x: np.ndarray) -> np.ndarray:
        """Grid position (0..n-1) of snapped raw values of a discrete column."""
        d = self.space.params[c.raw].dist
        if c.kind == "cat":
            return d.index_from_unit(x)
        if c.kind == "qnormal":
            raise ValueError("a quantised normal has no finite grid")
        first, step, _ = d.grid_spec()
        return np.round((d.values_from_unit(x) - first) / step).astype(int)

    def grid_unit(self, c: _Column, k: np.ndarray) -> np.ndarray:
        """Raw unit value of grid position `k` (clipped into the grid)."""
        d = self.space.params[c.raw].dist
        n = int(c.n_values)
        k = np.clip(k, 0, n - 1)
        if c.kind == "cat":
            return (k + 0.5) / n
        first, step, _ = d.grid_spec()
        return d.unit_from_values(d.snap_values(first + k * step))

    # ------------------------------------------------------------------ activity & features
    def active(self, U: np.ndarray) -> np.ndarray:
        """Boolean (..., n_raw): which parameters are active for each raw vector."""
        act = np.ones(U.shape[:-1] + (self.n_raw,), dtype=bool)
        for c in self.columns:  # parents precede children
            if c.parent is not None:
                pi, opt = c.parent
                idx = self.space.params[pi].dist.index_from_unit(U[..., pi])
                act[..., c.raw] = act[..., pi] & (idx == opt)
        return act

    def features(self, U: np.ndarray, snapped: bool = False) -> np.ndarray:
        """Kernel features of raw vectors (snapping first unless `snapped`)."""
        if not snapped:
            U = self.snap(U)
        act = self.active(U)
        Z = np.zeros(U.shape[:-1] + (self.n_features,))
        for c in self.columns:
            if c.width == 0:
                continue
            if c.kind == "cat":
                idx = self.space.params[c.raw].dist.index_from_unit(U[..., c.raw])
                onehot = np.eye(c.width)[idx]
                Z[..., c.feature : c.feature + c.width] = onehot * act[..., c.raw, None]
            else:
                Z[..., c.feature] = np.where(act[..., c.raw], U[..., c.raw], _IMPUTE)
        return Z

    def features_of_flats(self, flats: list[Flat]) -> np.ndarray:
        if not flats:
            return np.zeros((0, self.n_features))
        return self.features(np.stack([self.raw_from_flat(f) for f in flats]))
