"""Our searchers: Ray Tune `Searcher` subclasses over tunekit's typed search space."""

from toolkit.searchers.base import Observation, SpaceSearcher
from toolkit.searchers.random import RandomSearcher

__all__ = ["Observation", "RandomSearcher", "SpaceSearcher"]

try:  # each searcher lands with its own issue
    from toolkit.searchers.tpe import TPESearcher  # noqa: F401

    __all__.append("TPESearcher")
except ImportError:
    pass
try:
    from toolkit.searchers.gp import GPSearcher  # noqa: F401

    __all__.append("GPSearcher")
except ImportError:
    pass
