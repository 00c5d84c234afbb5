"""Splitting observations into "good" and "bad", and weighing them.

TPE models p(x | good) = l(x) and p(x | bad) = g(x) and proposes the candidate with the
largest l(x) / g(x), which Bergstra et al. (2011) show maximises expected improvement.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

# n observations -> number of "good" ones.
GammaRule = Callable[[int], int]


def gamma_linear(n: int) -> int:
    """10% of the observations, at most 25 (Optuna's default)."""
    return min(math.ceil(0.1 * n), 25)


def gamma_sqrt(n: int) -> int:
    """ceil(0.25 * sqrt(n)), at most 25 (hyperopt's default): greedier early on."""
    return min(math.ceil(0.25 * math.sqrt(n)), 25)


def gamma_fraction(fraction: float, cap: int = 25) -> GammaRule:
    """A fixed fraction of the observations, capped (BOHB uses 15%, uncapped)."""
    return lambda n: min(math.ceil(fraction * n), cap)


GAMMAS: dict[str, GammaRule] = {"linear": gamma_linear, "sqrt": gamma_sqrt}


def resolve_gamma(gamma: str | float | GammaRule) -> GammaRule:
    if callable(gamma):
        return gamma
    if isinstance(gamma, str):
        try:
            return GAMMAS[gamma]
        except KeyError:
            raise ValueError(f"gamma must be one of {sorted(GAMMAS)}, a fraction or a callable, got {gamma!r}") from None
    if not 0 < float(gamma) < 1:
        raise ValueError(f"a fractional gamma must be in (0, 1), got {gamma}")
    return gamma_fraction(float(gamma))


def split(losses: np.ndarray, n_good: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `n_good` lowest losses and of the rest, each in observation order.

    A stable sort breaks ties by observation order, so the split is deterministic.
    """
    n_good = max(0, min(n_good, len(losses)))
    order = np.argsort(losses, kind="stable")
    return np.sort(order[:n_good]), np.sort(order[n_good:])


def recency_weights(n: int, flat: int = 25) -> np.ndarray:
    """hyperopt's "linear forgetting" (Optuna's default weights too): the newest `flat`
    observations weigh 1, older ones ramp down linearly to 1/n, so an estimator built from a
    long history keeps tracking where the search is now."""
    if n <= flat:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, num=n - flat), np.ones(flat)])
