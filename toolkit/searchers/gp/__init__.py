"""Gaussian-process Bayesian optimisation: encoding, model, acquisition, optimiser, searcher."""

from toolkit.searchers.gp.searcher import GPSearcher

__all__ = ["GPSearcher"]
