"""Cheap short trials: actor reuse where the trainable allows it, checkpoints only of the best."""

from __future__ import annotations

import os

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

from toolkit.guard import guard_trainable
from toolkit.lean import (MAX_PENDING_TRIALS, CheckpointBest, buffers_results, implements_checkpoints, lean_tune_env,
                          supports_reuse)
from toolkit.schedulers.asha import ASHA
from trainables.local import close
from trainables.synthetic import Quadratic


class NoReset(tune.Trainable):
    def step(self) -> dict:
        return {"loss": 1.0}


def test_reuse_only_for_trainables_that_reset_and_the_guard_keeps_it():
    assert supports_reuse(Quadratic) and supports_reuse(guard_trainable(Quadratic, "loss"))
    assert not supports_reuse(NoReset) and not supports_reuse(guard_trainable(NoReset, "loss"))
    assert implements_checkpoints(Quadratic) and not implements_checkpoints(NoReset)


def test_only_trials_that_end_best_so_far_are_checkpointed():
    keep = CheckpointBest("loss", "min", max_iterations=3)
    finals = [5.0, 3.0, 4.0, float("nan"), 1.0, 2.0]
    flagged = []
    for i, value in enumerate(finals):
        trial = Trial("Quadratic", config={}, trial_id=f"t{i}", stub=True)
        for it in (1, 2, 3):
            result = {"loss": value + 3 - it, "training_iteration": it}
            keep.on_trial_result(0, [], trial, result)
            if result.get("should_checkpoint"):
                flagged.append((trial.trial_id, it))
    assert flagged == [("t0", 3), ("t1", 3), ("t4", 3)]
    # A trial the scheduler stops early ends with done=True: it counts when it is the best.
    trial = Trial("Quadratic", config={}, trial_id="t9", stub=True)
    result = {"loss": 0.5, "training_iteration": 1, "done": True}
    keep.on_trial_result(0, [], trial, result)
    assert result["should_checkpoint"] and keep.saved[-1] == "t9"


def test_guarded_trainable_ends_itself_at_the_iteration_limit():
    cls = guard_trainable(Quadratic, "loss", max_iterations=3)
    trainable = cls(config={"x": 0.5})
    try:
        done = [trainable.train()["done"] for _ in range(3)]
        assert done == [False, False, True]
        assert trainable.reset_config({"x": 0.1}) and not trainable._tunekit_reported
    finally:
        close(trainable)  # also removes the scratch log folder Ray made outside Tune


def test_tune_env_buffers_only_where_the_scheduler_allows_and_user_settings_win(monkeypatch):
    monkeypatch.delenv("TUNE_RESULT_BUFFER_LENGTH", raising=False)
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    with lean_tune_env(ASHAScheduler(max_t=9), max_iterations=9) as applied:
        assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "0" and "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in applied
        assert int(os.environ["TUNE_RESULT_BUFFER_LENGTH"]) > 1
    assert "TUNE_RESULT_BUFFER_LENGTH" not in os.environ
    for pausing in (HyperBandScheduler(max_t=9), ASHA(max_t=9, variant="promote"),
                    ASHA(max_t=9, deterministic=True)):
        with lean_tune_env(pausing, max_iterations=9) as applied:
            assert "TUNE_RESULT_BUFFER_LENGTH" not in applied, pausing
    assert buffers_results(ASHA(max_t=9), 9) and buffers_results(None, 9) and not buffers_results(None, None)
    assert not buffers_results(None, 9, checkpoints=True)  # see buffers_results: a Ray bug


def test_tune_env_lets_a_wave_of_trials_wait_to_start(monkeypatch):
    """Ray keeps one pending trial for any searcher but its own generator, so actors start one
    after another; the runner's `concurrency` (trials that fit at once) lifts that."""
    from ray.tune.execution.tune_controller import _get_max_pending_trials
    from ray.tune.search import SearchGenerator

    from toolkit.searchers import TPESearcher

    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    alg = SearchGenerator(TPESearcher(metric="loss", mode="min", seed=0))
    assert _get_max_pending_trials(alg) == 1
    with lean_tune_env(concurrency=8):
        assert _get_max_pending_trials(alg) == 8
    with lean_tune_env(concurrency=50_000):  # trials that need nothing "fit" by the thousand
        assert _get_max_pending_trials(alg) == MAX_PENDING_TRIALS
    with lean_tune_env(concurrency=1) as applied:
        assert "TUNE_MAX_PENDING_TRIALS_PG" not in applied
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "3")
    with lean_tune_env(concurrency=8):
        assert _get_max_pending_trials(alg) == 3  # the user's setting wins
