"""The one Tune stopper of a tunekit sweep: Ctrl-C, fail fast and the iteration limit.

Two things about Ray 2.60's stoppers shape it:
- `MaximumIterationStopper` counts the results it has seen per trial rather than reading
  `training_iteration`, so a trial restarted after its node died (or restored on `--resume`)
  is stopped early: 5 results before the restart + 3 after reach a limit of 8 at iteration 3.
  The limit here reads the trial's own iteration count, which restarts and restores keep right.
- Tune saves its controller's stopper inside every experiment snapshot and, on
  `Tuner.restore`, puts the saved copy back in place of the one the new driver passes: a
  resumed sweep would answer a dead driver's Ctrl-C and fail-fast state. A `SweepStopper`
  therefore pickles as a reference to the live stopper of the process that unpickles it.
"""

from __future__ import annotations

from typing import Any

from ray.tune.stopper import Stopper

_live: "SweepStopper | None" = None


class SweepStopper(Stopper):
    """Stops a trial at `max_iterations` (its `training_iteration`), and a trial or the whole
    sweep when any of `stoppers` says so."""

    def __init__(self, stoppers: list[Stopper], max_iterations: int | None = None) -> None:
        self.stoppers = list(stoppers)
        self.max_iterations = max_iterations

    def activate(self) -> "SweepStopper":
        """Make this the stopper a restored experiment snapshot resolves to in this process."""
        global _live
        _live = self
        return self

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Every stopper sees every result (some keep state), as Ray's CombinedStopper does.
        asked = [s(trial_id, result) for s in self.stoppers]
        iteration = result.get("training_iteration")
        at_limit = (self.max_iterations is not None and isinstance(iteration, (int, float))
                    and iteration >= self.max_iterations)
        return any(asked) or at_limit

    def stop_all(self) -> bool:
        return any(s.stop_all() for s in self.stoppers)

    def __reduce__(self) -> tuple:
        return (live_stopper, ())


def live_stopper() -> Stopper:
    """The active sweep's stopper; one that never stops where no sweep is active (a snapshot
    read outside tunekit's runner)."""
    return _live if _live is not None else _Never()


class _Never(Stopper):
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        return (live_stopper, ())
