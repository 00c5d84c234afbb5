"""Run a Ray Tune class Trainable in this process, without Tune (and without `ray.init`).

    >>> from trainables.local import run_local
    >>> from trainables.digits import DigitsMLP
    >>> history = run_local(DigitsMLP, {"lr": 3e-3}, iterations=5)
    >>> history[-1]["val_acc"]

The one in-process runner: `tunekit reproduce` reruns recorded trials with it, and it serves
benchmarks (one objective evaluation = one call), debugging a trainable, and tests.
Ray 2.60's `Trainable(config=...)` works without a running Ray: with no StorageContext it only
creates a scratch log directory under ~/ray_results, which `run_local` removes afterwards.
"""

from __future__ import annotations

import shutil
from typing import Any, Mapping

from ray.tune import Trainable


def run_local(cls: type[Trainable], config: Mapping[str, Any], iterations: int,
              stop_on_done: bool = True) -> list[dict]:
    """Results of `iterations` calls to `train()` (fewer if a result says done and `stop_on_done`)."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    try:
        trainable = cls(config=dict(config))  # Trainable pops Tune-internal keys: never mutate the caller's dict
    except Exception as e:
        _remove_orphan_logdir(e, cls)
        raise
    try:
        history = []
        for _ in range(iterations):
            result = trainable.train()
            history.append(result)
            if stop_on_done and result.get("done"):
                break
        return history
    finally:
        close(trainable)


def close(trainable: Trainable) -> None:
    """`stop()` the trainable and delete the scratch log directory Ray made for it.

    Only a trainable built without Tune storage owns a scratch directory; inside Tune the
    logdir is the trial's own directory and is left alone.
    """
    logdir = trainable.logdir if getattr(trainable, "_storage", None) is None else None
    try:
        trainable.stop()
    finally:
        if logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def _remove_orphan_logdir(error: BaseException, cls: type[Trainable]) -> None:
    """Delete the scratch logdir of a trainable whose setup() raised.

    Trainable.__init__ creates the directory before calling setup(), and a failed constructor
    hands back no instance; its frame in the traceback still holds `self`.
    """
    tb = error.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, cls) and getattr(obj, "_storage", None) is None and getattr(obj, "_logdir", None):
            shutil.rmtree(obj._logdir, ignore_errors=True)
            return
        tb = tb.tb_next
