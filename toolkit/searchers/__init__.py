"""Our searchers: Ray Tune `Searcher` subclasses over tunekit's typed search space.

The registry: `SEARCHER_CLASSES` (type name -> where its class lives; its typed options are
`toolkit.searchers.options.SEARCHER_OPTIONS[type]`) and `build_searcher`, the one factory the
runner uses. The classes load on first use, so that the spec can import
`toolkit.searchers.options` without importing Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toolkit.searchers.options import SEARCHER_OPTIONS, SearcherOptions

if TYPE_CHECKING:
    from toolkit.searchers.base import Observation, SpaceSearcher
    from toolkit.searchers.gp import GPSearcher
    from toolkit.searchers.random import RandomSearcher
    from toolkit.searchers.tpe import TPESearcher

# One entry per searcher type: "module:Class".
SEARCHER_CLASSES: dict[str, str] = {
    "random": "toolkit.searchers.random:RandomSearcher",
    "tpe": "toolkit.searchers.tpe:TPESearcher",
    "gp": "toolkit.searchers.gp:GPSearcher",
}
_PUBLIC = {"Observation": "toolkit.searchers.base:Observation",
           "SpaceSearcher": "toolkit.searchers.base:SpaceSearcher",
           **{path.rpartition(":")[2]: path for path in SEARCHER_CLASSES.values()}}

__all__ = ["SEARCHER_CLASSES", "SEARCHER_OPTIONS", "build_searcher", "searcher_class", "startup_size", *_PUBLIC]


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:  # `from toolkit.searchers import TPESearcher` loads it then
    if name in _PUBLIC:
        return _load(_PUBLIC[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def searcher_class(kind: str) -> type[SpaceSearcher]:
    return _load(SEARCHER_CLASSES[kind])


def build_searcher(options: SearcherOptions, space: Any, metric: str, mode: str, seed: int | None) -> SpaceSearcher:
    """The searcher a spec's `searcher:` section describes (warm starts are the caller's job)."""
    return searcher_class(options.type)(space=space, metric=metric, mode=mode, seed=seed,
                                        **options.constructor_kwargs())


def startup_size(searcher: SpaceSearcher) -> int | None:
    """How many suggestions the searcher's start-up design takes before its model is used.

    None for a searcher without a model (random).
    """
    for name in ("startup_size", "initial_size"):  # GP's depends on the space's encoded dimensions
        method = getattr(searcher, name, None)
        if callable(method):
            n = method()
            return None if n is None else int(n)
    n = getattr(searcher, "n_startup", None)
    return None if n is None else int(n)
