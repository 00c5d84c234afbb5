"""Tree-structured Parzen Estimator searcher (see `searcher.py` for the algorithm choices)."""

from toolkit.searchers.tpe.searcher import TPESearcher

__all__ = ["TPESearcher"]
