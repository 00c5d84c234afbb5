"""Fail fast: stop a sweep whose first trials all fail with the same error.

A mistyped metric name, a missing dependency or a bug in the trainable fails every trial the
same way; running the rest of the sweep only repeats the error. `FailFast` watches the first
`n` trials to end: if they all failed with one and the same error, it stops the sweep (through
its stopper, which Tune asks after every result) and keeps the error for the record. Any
trial that ends well, or a different error among the first `n`, disarms it for the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper


def trial_error(trial: Any) -> str:
    """The one-line error of a failed Ray trial: `ExceptionType: message`, from its error file."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1]  # Ray's error file ends with "ExceptionType: message"
    return "trial failed"


class FailFastStopper(Stopper):
    """Stops the whole experiment once `error` is set (plain data: Tune pickles its stoppers)."""

    def __init__(self) -> None:
        self.error: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.error is not None


class FailFast(Callback):
    """Trips `stopper` when the first `n` trials to end all failed with one error; 0 disables it."""

    def __init__(self, n: int, log: Any = print) -> None:
        self.n = n
        self.stopper = FailFastStopper()
        self.log = log
        self._errors: list[str] = []
        self._armed = n > 0

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the log function may not pickle.
        return {**self.__dict__, "log": None}

    @property
    def error(self) -> str | None:
        return self.stopper.error

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._armed = False

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not self._armed:
            return
        self._errors.append(trial_error(trial))
        if len(set(self._errors)) > 1:
            self._armed = False
        elif len(self._errors) >= self.n:
            self._armed = False
            self.stopper.error = self._errors[0]
            (self.log or print)(f"[tunekit] stopping the sweep: the first {self.n} trials all failed with "
                     f"{self._errors[0]}")
