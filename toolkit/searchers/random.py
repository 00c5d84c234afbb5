"""`RandomSearcher`: independent draws from each parameter's prior, on our typed space.

The baseline every model-based searcher must beat. On a finite space it does not repeat a
point while untried ones remain; once all were tried it draws repeats (or, with
`exhaustive=True`, reports `FINISHED`).
"""

from __future__ import annotations

from toolkit.searchers.base import SpaceSearcher
from toolkit.space.space import Flat


class RandomSearcher(SpaceSearcher):
    """Uniform random search over a `SearchSpace` (conditional branches included)."""

    def propose(self, pending: list[Flat]) -> Flat | None:
        return self.random_point()
