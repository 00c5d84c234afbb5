"""Rung bookkeeping shared by our successive-halving schedulers (ASHA, Hyperband).

A rung is a milestone (a value of the time attribute, e.g. training_iteration) and the loss
each trial reported there. Losses are "lower is better" whatever the experiment's mode, and
a missing, NaN or infinite metric is the worst possible loss (+inf): a trial that cannot say
how good it is must never win a promotion nor set a cutoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable


def as_loss(value: Any, mode: str | None) -> float:
    """The value as a loss to minimise; None / NaN / +-inf / non-numbers become +inf (worst)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.inf
    if not math.isfinite(v):
        return math.inf
    return -v if mode == "max" else v


def milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Rung milestones grace * eta^k below max_t (max_t itself ends a trial, it is no rung)."""
    if grace_period < 1 or reduction_factor <= 1 or max_t < 1:
        raise ValueError("need grace_period >= 1, reduction_factor > 1 and max_t >= 1")
    out: list[int] = []
    k = 0
    while True:
        m = int(round(grace_period * reduction_factor**k))
        if m >= max_t:
            return out
        if not out or m > out[-1]:
            out.append(m)
        k += 1


def n_to_promote(n: int, reduction_factor: float) -> int:
    """How many of `n` results at a rung go on: the top 1/eta, at least one."""
    return max(1, int(n // reduction_factor))


@dataclass
class Rung:
    """One milestone: losses in arrival order and the trials that went on from it."""

    milestone: int
    losses: dict[str, float] = field(default_factory=dict)
    promoted: set[str] = field(default_factory=set)

    def record(self, trial_id: str, loss: float) -> None:
        self.losses.setdefault(trial_id, loss)

    def ranked(self, among: Iterable[str] | None = None) -> list[str]:
        """Trial ids by loss, ties broken by arrival (stable), optionally only `among`."""
        ids = list(self.losses) if among is None else [t for t in self.losses if t in set(among)]
        return sorted(ids, key=lambda t: self.losses[t])

    def top(self, reduction_factor: float, among: Iterable[str] | None = None) -> list[str]:
        ranked = self.ranked(among)
        return ranked[: n_to_promote(len(ranked), reduction_factor)] if ranked else []
