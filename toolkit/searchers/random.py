"""`RandomSearcher`: independent draws from each parameter's prior, on our typed space.

The baseline every model-based searcher must beat; on a finite space it never repeats a
point and reports `FINISHED` once every point has been suggested.
"""

from __future__ import annotations

import math

from toolkit.searchers.base import SpaceSearcher
from toolkit.space.space import Flat


class RandomSearcher(SpaceSearcher):
    """Uniform random search over a `SearchSpace` (conditional branches included)."""

    def propose(self, pending: list[Flat]) -> Flat | None:
        assert self.space is not None
        if math.isfinite(self.space.cardinality()):
            return self.random_unseen()
        return self.space.sample(self.rng)
