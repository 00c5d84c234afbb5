"""Ctrl-C ends a sweep gracefully: running trials stop, finished ones are kept and recorded.

Ray Tune's own SIGINT handling ends `fit()` without telling the caller it was interrupted, so
we take SIGINT ourselves and stop Tune through a `Stopper` whose `stop_all` turns true. A
second Ctrl-C falls through to Python's default handler (KeyboardInterrupt) for impatient users.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ray.tune.stopper import Stopper


class InterruptStopper(Stopper):
    """Stops the whole experiment once `set()` was called.

    A plain bool rather than a threading.Event: Tune pickles its stoppers into the experiment
    state, and locks do not pickle. Only the driver's main thread writes it.
    """

    def __init__(self) -> None:
        self._interrupted = False

    def set(self) -> None:
        self._interrupted = True

    def is_set(self) -> bool:
        return self._interrupted

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._interrupted


@contextmanager
def catch_sigint(stopper: InterruptStopper, log=print) -> Iterator[None]:
    """Route the first SIGINT to `stopper` for the duration of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_handler = signal.getsignal(signal.SIGINT)
    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # keep Ray from replacing our handler

    def on_sigint(signum, frame):  # noqa: ANN001 - signal handler signature
        log("[tunekit] interrupted: stopping running trials and writing the record (Ctrl-C again to abort)")
        stopper.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if previous_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env


class DeferredSigint:
    """Whether a SIGINT arrived while `defer_sigint` held it back."""

    def __init__(self) -> None:
        self.fired = False

    def raise_if_fired(self) -> None:
        if self.fired:
            raise KeyboardInterrupt


@contextmanager
def defer_sigint() -> Iterator[DeferredSigint]:
    """Hold a Ctrl-C back for the block and remember it (main thread only).

    For steps that must not be cut in half, such as reserving a record version and wiring up
    what would clean it up: the caller calls `raise_if_fired()` where the interrupt can be
    handled (and the reserved version removed), instead of leaving an orphan version behind."""
    state = DeferredSigint()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def remember(signum, frame):  # noqa: ANN001 - signal handler signature
        state.fired = True

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
