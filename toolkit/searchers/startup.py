"""The start-up design both model-based searchers use before their model has data.

A scrambled Sobol sequence over the space's unit cube (points spread over the space instead
of clumping, as independent random draws do at small budgets), seeded from the searcher's
one RNG so that a seeded searcher is reproducible and a restored one continues the same
sequence. `default_startup_size` picks its length when the user does not: about 1 point per
dimension, 5 to 10 points, and never more than a quarter of the trials the user asked for,
so a 12-trial sweep spends 3 trials on the design, not 10 (see results/startup.md).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from toolkit.space.space import Flat, SearchSpace

# Share of the sweep's trials the design may take when the budget is known, and the floor.
STARTUP_SHARE = 0.25
MIN_STARTUP = 3


def default_startup_size(n_params: int, num_samples: int | None) -> int:
    """Start-up design length for `n_params` parameters and a sweep of `num_samples` trials."""
    size = max(5, min(10, n_params + 1))
    if num_samples is not None and num_samples > 0:
        size = min(size, max(MIN_STARTUP, math.floor(STARTUP_SHARE * num_samples)))
    return size


class SobolDesign:
    """Points of one scrambled Sobol sequence over a space's unit cube, in order."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.issued = 0
        self._cache: tuple[int, int, np.ndarray] | None = None  # (dims, seed, points)

    def unit_point(self, dims: int, i: int) -> np.ndarray:
        """The i-th point (0-based) of the sequence in `dims` dimensions."""
        if self._cache is None or self._cache[0] != dims or self._cache[1] != self.seed or len(self._cache[2]) <= i:
            from scipy.stats import qmc

            m = max(1, math.ceil(math.log2(max(i + 1, 16))))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns about non-power-of-two prefixes
                pts = qmc.Sobol(dims, scramble=True, rng=self.seed).random_base2(m)
            self._cache = (dims, self.seed, pts)
        return self._cache[2][i]

    def next_point(self, space: SearchSpace) -> Flat:
        """The next point of the sequence, decoded onto the space (grids and branches)."""
        u = self.unit_point(len(space.params), self.issued)
        self.issued += 1
        return space.decode(u)

    def state(self) -> dict:
        return {"seed": self.seed, "issued": self.issued}

    @classmethod
    def from_state(cls, state: dict) -> "SobolDesign":
        design = cls(state["seed"])
        design.issued = int(state["issued"])
        return design
