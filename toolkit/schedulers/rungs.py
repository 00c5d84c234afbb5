"""Rung bookkeeping shared by our successive-halving schedulers (ASHA, Hyperband).

A rung is a milestone (a value of the time attribute, e.g. training_iteration) and the loss
each trial reported there. Losses are "lower is better" whatever the experiment's mode, and
a missing, NaN or infinite metric is the worst possible loss (+inf): a trial that cannot say
how good it is must never win a promotion nor set a cutoff.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

# Ray does not save schedulers with the experiment (ray#30838): ours keep their state here,
# beside Ray's experiment state, so `Tuner.restore` brings the rungs back.
STATE_FILE = "tunekit-scheduler-state.json"


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
    # (loss, arrival, trial id), kept sorted as results arrive: a decision reads the top of
    # the rung without sorting it again (1,000 live trials cost well under a millisecond).
    _sorted: list[tuple[float, int, str]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._sorted = sorted((loss, i, t) for i, (t, loss) in enumerate(self.losses.items()))

    def record(self, trial_id: str, loss: float) -> None:
        if trial_id not in self.losses:
            self.losses[trial_id] = loss
            bisect.insort(self._sorted, (loss, len(self.losses) - 1, trial_id))

    def ranked(self, among: Iterable[str] | None = None) -> list[str]:
        """Trial ids by loss, ties broken by arrival, optionally only those in `among`."""
        if among is None:
            return [t for _, _, t in self._sorted]
        keep = set(among)
        return [t for _, _, t in self._sorted if t in keep]

    def top(self, reduction_factor: float, among: Iterable[str] | None = None) -> list[str]:
        if among is None:
            k = n_to_promote(len(self._sorted), reduction_factor) if self._sorted else 0
            return [t for _, _, t in self._sorted[:k]]
        ranked = self.ranked(among)
        return ranked[: n_to_promote(len(ranked), reduction_factor)] if ranked else []


class SavedState:
    """JSON save/restore of a scheduler's state beside Ray's experiment state.

    JSON, never pickle: a state file in a shared storage root must not run code when read.
    A subclass provides `get_state`/`set_state`, `is_fresh()` (no trial seen yet) and the
    attributes `persist`, `_state_path` (None) and `_loaded` (False)."""

    persist: bool
    _state_path: str | None
    _loaded: bool

    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...
    def is_fresh(self) -> bool: ...

    def save(self, checkpoint_path: str) -> None:
        tmp = checkpoint_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.get_state(), f, allow_nan=True)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))

    def _maybe_load(self, trial: Any) -> None:
        """On the first trial: find Ray's experiment directory; restore our state if a
        previous run of this experiment left it there (Tuner.restore)."""
        if self._loaded or not self.persist:
            return
        self._loaded = True
        try:
            directory = trial.local_experiment_path if getattr(trial, "storage", None) is not None else None
        except Exception:  # a trial without Ray storage (e.g. driven by a simulator)
            directory = None
        if not directory:
            return
        self._state_path = os.path.join(directory, STATE_FILE)
        if self.is_fresh() and os.path.exists(self._state_path):
            self.restore(self._state_path)

    def _save(self) -> None:
        if self._state_path is not None:
            os.makedirs(os.path.dirname(self._state_path), exist_ok=True)
            self.save(self._state_path)
