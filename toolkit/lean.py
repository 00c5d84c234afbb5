"""Ray Tune settings that keep short trials cheap, all of them Ray's own knobs.

A trial of a few milliseconds costs Ray Tune about a second with its defaults: a new actor
process per trial (and for torch trainables, importing torch again), a checkpoint at the end of
every trial, an experiment snapshot forced after each of those checkpoints, and one driver
round trip per reported result. tunekit needs none of that by default:

- actor reuse: a trainable that implements `reset_config` runs trial after trial in one process;
- checkpoints only where something can use them: a pausing scheduler asks Tune for them itself,
  the best trial's final state is kept by `CheckpointBest`, and a checkpoint at the end of a
  finished trial serves nobody (`--resume` and node failures restart unfinished trials, from
  a checkpoint only if the trainable saves during the trial, as before);
- experiment snapshots (what `--resume` restores) on Ray's own adaptive period (every 10 s or
  more, under 5% of the time) instead of after every trial, which the checkpoints forced;
- of Tune's per-trial result files, only `result.json` (the record has every row anyway);
- results buffered in the trial process (`BUFFER_RESULTS` results or as many seconds per round
  trip) where no trial is ever paused and an iteration limit is set;
- as many trials waiting to start as fit at once (`TUNE_MAX_PENDING_TRIALS_PG`). Ray keeps one
  pending trial for any searcher but its own random/grid generator, so its actors start one
  after another: a second or more each, with 8 GPUs that idled a third of a 150 s sweep
  (results/multifidelity_real_ray_budget.md). Our searchers count pending trials as in
  flight, as they count running ones; the price is a proposal made up to one wave early.

The record is unaffected: Tune still hands every result to the callbacks, in order, and drops
those a buffer holds after the scheduler stopped the trial (at most `BUFFER_RESULTS - 1` steps,
run for nothing: the price of buffering, small for short steps, none for steps longer than
`BUFFER_RESULTS` seconds, which always come one per round trip).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any, Iterator

from ray.tune import Callback, Trainable
from ray.tune.schedulers import TrialScheduler

# Tune's result buffer: at most this many results per round trip. Tune passes the same number
# as the buffer's time limit in seconds (Ray 2.60 swaps the two arguments of
# `Trainable.train_buffered`; with equal values the swap does not matter), so a trial whose
# steps take seconds still reports after each step or two.
BUFFER_RESULTS = 4
MAX_PENDING_TRIALS = 200


def supports_reuse(trainable: Any) -> bool:
    """Whether Tune can run trial after trial in one actor of `trainable`.

    Tune calls `reset_config(new_config)` on a reused actor and fails the trial when it returns
    False, which the base `Trainable` does; Ray's wrapper for function trainables resets itself.
    """
    if not isinstance(trainable, type) or not issubclass(trainable, Trainable):
        return True  # a function trainable: Tune wraps it in a class that implements reset_config
    return trainable.reset_config is not Trainable.reset_config


def implements_checkpoints(trainable: Any) -> bool:
    if not isinstance(trainable, type) or not issubclass(trainable, Trainable):
        return False  # a function trainable checkpoints only when it reports one itself
    return trainable.save_checkpoint is not Trainable.save_checkpoint


def never_pauses(scheduler: TrialScheduler | None) -> bool:
    """Schedulers that only continue or stop trials (never pause them), so buffered results are
    safe: FIFO, Ray's ASHA and median stopping, tunekit's ASHA in its plain stop mode."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

    if scheduler is None or type(scheduler) in (FIFOScheduler, AsyncHyperBandScheduler, MedianStoppingRule):
        return True
    return (type(scheduler).__module__ == "toolkit.schedulers.asha" and getattr(scheduler, "variant", None) == "stop"
            and not getattr(scheduler, "deterministic", True))


def buffers_results(scheduler: TrialScheduler | None, max_iterations: int | None, checkpoints: bool = False) -> bool:
    """Whether `lean_tune_env` turns Tune's result buffer on for this run.

    Only where no trial is ever paused, and only with an iteration limit: the guarded trainable
    then ends itself at the limit, so a buffer never holds results past it. And not when
    `checkpoints` are requested from results (`CheckpointBest`): Ray 2.60 then acts on the
    CONTINUE of an earlier result of the same buffer after the save, and runs the trial one
    step past its end (seen in a real sweep: a 4th iteration with `max_iterations` 3).
    """
    return max_iterations is not None and not checkpoints and never_pauses(scheduler)


@contextmanager
def lean_tune_env(scheduler: TrialScheduler | None = None, max_iterations: int | None = None,
                  checkpoints: bool = False, concurrency: int | None = None) -> Iterator[dict[str, str]]:
    """Set Tune's result buffer, default loggers and pending-trial limit (`concurrency`: how
    many trials fit at once) for the block, where `Tuner.fit` reads them; use with
    `result_loggers()` in the callbacks.

    A value the user set in the environment wins.
    """
    wanted = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if buffers_results(scheduler, max_iterations, checkpoints):
        wanted.update(TUNE_RESULT_BUFFER_LENGTH=str(BUFFER_RESULTS),
                      TUNE_RESULT_BUFFER_MIN_TIME_S=str(BUFFER_RESULTS))
    if concurrency is not None and concurrency > 1:
        # capped at Ray's own floor for its generator: trials needing no CPU or GPU "fit" by the
        # thousand, and each pending one is a proposal made before its results could count
        wanted["TUNE_MAX_PENDING_TRIALS_PG"] = str(min(int(concurrency), MAX_PENDING_TRIALS))
    applied = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(applied)
    try:
        yield applied
    finally:
        for key in applied:
            os.environ.pop(key, None)


def result_loggers() -> list[Callback]:
    """Of Tune's per-trial result files only `result.json` (what `tunekit run --resume` reads
    back); the CSV and TensorBoard copies of the same rows (the record holds them all) cost
    the driver a file write per result each, and TensorBoard's are the slowest."""
    from ray.tune.logger import JsonLoggerCallback

    return [JsonLoggerCallback()]


class CheckpointBest(Callback):
    """Checkpoint a trial at its last result when that result is the best final one so far.

    Tune lets callbacks set `should_checkpoint` on a result before it decides whether to save,
    and a stopped trial's last result already carries `done`. So only trials that were the
    best when they ended are saved (about ln(n) of n trials in random order), and the trial
    that is best at the end of the sweep always has its final state on disk. Not with Tune's
    result buffer (see `buffers_results`).
    """

    def __init__(self, metric: str, mode: str, max_iterations: int | None = None) -> None:
        self.metric = metric
        self.sign = 1.0 if mode == "min" else -1.0
        self.max_iterations = max_iterations
        self.best: float | None = None
        self.saved: list[str] = []

    def _is_last(self, result: dict) -> bool:
        at_limit = self.max_iterations is not None and result.get("training_iteration", 0) >= self.max_iterations
        return bool(result.get("done")) or at_limit

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if not self._is_last(result):
            return
        try:
            value = self.sign * float(result[self.metric])
        except (KeyError, TypeError, ValueError):
            return
        if math.isfinite(value) and (self.best is None or value < self.best):
            self.best = value
            result["should_checkpoint"] = True
            self.saved.append(trial.trial_id)
