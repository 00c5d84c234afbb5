"""Ray Tune callbacks that turn trial events into plain rows for `toolkit.results`.

They run in the driver, see every result as it arrives, and hand each finished trial to
the record writer straight away (then flush), so an interrupted or killed sweep still
leaves a record of every trial that finished.

`RecordingCallback` is what `tunekit run` uses (the runner opens the record itself);
`Recorder` is the public one for a plain `tune.Tuner` (re-exported as
`toolkit.results.Recorder`): it opens the record when the sweep starts and publishes it
when the sweep ends, so `tunekit results show/compare`, `report` and `reproduce` work on
sweeps run from Python too.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback

from toolkit.results.objective import best_of

# Ray bookkeeping fields that are not metrics of the model.
_SKIP = {"config", "trial_id", "experiment_id", "date", "hostname", "node_ip", "pid", "experiment_tag",
         "done", "should_checkpoint", "checkpoint_dir_name", "timestamp", "iterations_since_restore",
         "time_since_restore", "timesteps_since_restore", "warmup_time", "timesteps_total",
         "episodes_total"}


# Text a trainable reports that a practitioner reads in the record: where it ran, why it
# stopped itself (early stopping, divergence) and signal warnings (update/weight ratio).
_TEXT_METRICS = ("device", "stop_reason", "warning")


def metric_row(result: dict[str, Any]) -> dict[str, Any]:
    """The numeric metrics of one result (non-finite floats kept as NaN, strings kept)."""
    row: dict[str, Any] = {}
    for key, value in result.items():
        if key in _SKIP or isinstance(value, (dict, list, tuple)):
            continue
        if isinstance(value, bool):
            row[key] = int(value)
        elif isinstance(value, (int, float)):
            row[key] = float(value) if isinstance(value, float) and not math.isfinite(value) else value
        elif isinstance(value, str) and key in _TEXT_METRICS:
            row[key] = value
        elif hasattr(value, "item"):  # numpy / torch scalars
            try:
                row[key] = value.item()
            except (TypeError, ValueError):
                pass
    return row


def trial_error_message(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        # The last line of Ray's error file is "ExceptionType: message".
        return lines[-1] if lines else "trial failed"
    return "trial failed"


class RecordingCallback(Callback):
    """Collects metric history per trial and passes finished trials to a `RecordWriter`."""

    def __init__(self, writer: Any, metric: str, mode: str, max_iterations: int | None) -> None:
        self.writer = writer
        self.metric = metric
        self.mode = mode
        self.max_iterations = max_iterations
        self.histories: dict[str, list[dict]] = {}
        self.started: dict[str, float] = {}
        self.rows: list[dict] = []
        self.suggestions: list[dict] = []
        self.interrupted: Any = None  # toolkit.interrupt.InterruptStopper: is_set() after Ctrl-C
        self._t0 = time.time()

    def time_suggestions(self, searcher: Any) -> None:
        """Record one row per suggestion: when, how long the searcher took, what it knew."""
        suggest = searcher.suggest

        def timed_suggest(trial_id: str):
            t = time.perf_counter()
            config = suggest(trial_id)
            self.suggestions.append({
                "trial_id": trial_id, "time_s": round(time.time() - self._t0, 6),
                "suggest_s": time.perf_counter() - t,
                "n_observed": len(getattr(searcher, "observations", ())),
                "n_pending": len(getattr(searcher, "live", ())),
                "finished": not isinstance(config, dict),
            })
            return config

        searcher.suggest = timed_suggest

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.histories.setdefault(trial.trial_id, []).append(metric_row(result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=trial_error_message(trial))

    def _status(self, iterations: int, error: str | None) -> str:
        """How a trial ended: the one place that decides it."""
        if error is not None:
            return "ERROR"
        short = self.max_iterations is not None and iterations < self.max_iterations
        if self.interrupted is not None and self.interrupted.is_set() and (self.max_iterations is None or short):
            return "INTERRUPTED"  # stopped by Ctrl-C, not by the scheduler
        if short:
            return "EARLY_STOPPED"  # stopped by the scheduler (or the time budget) before max_iterations
        return "TERMINATED"

    def _record(self, trial: Any, history: list[dict], status: str, error: str | None,
                finished: bool = True) -> None:
        """Build the trial's row (the only place that does) and hand it to the writer."""
        values = [h[self.metric] for h in history if isinstance(h.get(self.metric), (int, float))
                  and math.isfinite(h[self.metric])]
        config = trial.config if isinstance(trial.config, dict) else {}
        row = {
            "trial_id": trial.trial_id,
            "config": config,
            "status": status,
            "error": error,
            "iterations": int(history[-1].get("training_iteration", len(history))) if history else 0,
            "run_time_s": float(history[-1].get("time_total_s", 0.0)) if history else 0.0,
            # A trial cut off mid-iteration by an interruption has no final value.
            "final_metric": values[-1] if values and error is None and finished else None,
            "best_metric": best_of(values, self.mode),
            "seed": config.get("seed"),
        }
        self.rows.append(row)
        self._journal(row, history)

    def _journal(self, row: dict, history: list[dict]) -> None:
        """Hand a finished trial to the record writer (a subclass may hold it back)."""
        self.writer.add_trial(row, history)

    def _finish(self, trial: Any, error: str | None) -> None:
        history = self.histories.pop(trial.trial_id, [])
        iterations = int(history[-1].get("training_iteration", len(history))) if history else 0
        self._record(trial, history, self._status(iterations, error), error)
        self.writer.flush()

    def flush_unfinished(self, trials: list) -> None:
        """On interruption: record trials that started but never completed, as INTERRUPTED."""
        done = {r["trial_id"] for r in self.rows}
        for trial in trials:
            if trial.trial_id in done or trial.trial_id not in self.histories:
                continue
            self._record(trial, self.histories.pop(trial.trial_id), "INTERRUPTED", None, finished=False)
        self.writer.flush()

    def best(self) -> dict | None:
        best = best_of(self.rows, self.mode, key=lambda r: r["final_metric"])
        if best is None:
            return None
        return {"trial_id": best["trial_id"], "config": best["config"], "metric": self.metric,
                "value": best["final_metric"], "iterations": best["iterations"], "status": best["status"]}


# --------------------------------------------------------------------------- public callback
def _user_class(cls: Any) -> Any:
    """The user's class behind Ray's wrappers (`tune.with_resources` and friends subclass it)."""
    for c in getattr(cls, "__mro__", ()):
        if c.__module__.split(".")[0] != "ray":
            return c
    return None  # a function trainable: Ray generated every class in the chain


def trainable_path(cls: Any) -> str | None:
    """``"module:Class"`` for a class trainable; a class defined in the script that runs the
    sweep is named by the script's file stem (importable from the script's folder)."""
    user = _user_class(cls)
    if user is None:
        return None
    module = user.__module__
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main_file:
            return None  # an interactive session: nothing to import later
        module = Path(main_file).stem
    return f"{module}:{user.__qualname__}"


def _space_rows(param_space: Any) -> list[dict] | None:
    if param_space is None:
        return None
    if hasattr(param_space, "describe"):
        return param_space.describe()
    from toolkit.space.ray import from_ray
    return from_ray(param_space).describe()


class Recorder(RecordingCallback):
    """Record a plain `tune.Tuner` sweep as a tunekit experiment record.

        tuner = tune.Tuner(MyTrainable, param_space=space,
                           tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20),
                           run_config=tune.RunConfig(callbacks=[Recorder("my-sweep", metric="loss",
                                                                         mode="min", param_space=space)]))

    ``metric``/``mode`` must match the TuneConfig's (Tune does not tell callbacks). Passing
    the ``param_space`` (Ray Tune domains or a `SearchSpace`) records the typed space, so the
    report draws log-scaled parameters on log axes. ``storage`` defaults to
    ``$TUNEKIT_STORAGE`` or ``./tunekit-results``. Nothing is written until the sweep starts;
    the version is published when it ends (``record_path`` and ``version`` then say where)."""

    def __init__(self, name: str, *, metric: str, mode: str = "min", storage: str | os.PathLike | None = None,
                 param_space: Any = None, seed: int | None = None, max_iterations: int | None = None,
                 description: str = "") -> None:
        from toolkit.results.objective import sign
        from toolkit.results.refs import check_name, default_root

        sign(mode)  # refuse anything but "min"/"max" now, not when the first trial ends
        super().__init__(writer=None, metric=metric, mode=mode, max_iterations=max_iterations)
        self.name = check_name(name)
        self.root = Path(default_root(storage)).expanduser().resolve()
        self.space_rows = _space_rows(param_space)
        self.seed = seed
        self.description = description
        self.record_path: Path | None = None
        self.version: int | None = None
        self._num_samples: int | None = None

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        if self.max_iterations is None and isinstance(stop, Mapping) and "training_iteration" in stop:
            self.max_iterations = int(stop["training_iteration"])
        self._num_samples = total_num_samples or num_samples
        self._t0 = time.time()

    def _open(self, trial: Any) -> None:
        from toolkit.results import RecordWriter, collect_environment

        cls = trial.get_trainable_cls()
        path = trainable_path(cls)
        fingerprint = getattr(_user_class(cls), "data_fingerprint", None)
        resources = getattr(trial.placement_group_factory, "required_resources", None) or {}
        manifest = {
            "trainable": path, "metric": self.metric, "mode": self.mode, "seed": self.seed,
            "searcher": None, "scheduler": None, "space": self.space_rows,
            "data": fingerprint() if callable(fingerprint) else None,
            "environment": collect_environment(),
            "started_at": _dt.datetime.fromtimestamp(self._t0, _dt.timezone.utc).isoformat(),
            "resources_per_trial": {"cpu": float(resources.get("CPU", 0.0)), "gpu": float(resources.get("GPU", 0.0))},
            "num_samples": self._num_samples, "max_iterations": self.max_iterations,
            "description": self.description, "recorded_by": "toolkit.results.Recorder (a plain tune.Tuner)",
        }
        self.writer = RecordWriter(self.root, self.name, manifest)
        self.version = self.writer.version

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.writer is None:
            self._open(trial)
        super().on_trial_start(iteration, trials, trial, **info)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.writer is None:
            if not trials:
                return  # no trial ever started: nothing to record
            self._open(trials[0])
        unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
        if unfinished:
            self.flush_unfinished(trials)
        if unfinished:
            status = "interrupted"
        elif self.rows and all(r["status"] == "ERROR" for r in self.rows):
            status = "failed"
        else:
            status = "completed"
        self.record_path = self.writer.finish(status, self.best())
