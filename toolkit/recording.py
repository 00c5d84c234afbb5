"""A Ray Tune callback that turns trial events into plain rows for `toolkit.results`.

It runs in the driver, sees every result as it arrives, and hands each finished trial to
the record writer straight away (then flushes), so an interrupted or killed sweep still
leaves a record of every trial that finished.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

# Ray bookkeeping fields that are not metrics of the model.
_SKIP = {"config", "trial_id", "experiment_id", "date", "hostname", "node_ip", "pid", "experiment_tag",
         "done", "should_checkpoint", "checkpoint_dir_name", "timestamp", "iterations_since_restore",
         "time_since_restore", "timesteps_since_restore", "warmup_time", "timesteps_total",
         "episodes_total"}


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
        elif isinstance(value, str) and key in ("device",):
            row[key] = value
        elif hasattr(value, "item"):  # numpy / torch scalars
            try:
                row[key] = value.item()
            except (TypeError, ValueError):
                pass
    return row


def _error_message(trial: Any) -> str:
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
        self._finish(trial, error=_error_message(trial))

    def _finish(self, trial: Any, error: str | None) -> None:
        history = self.histories.pop(trial.trial_id, [])
        values = [h[self.metric] for h in history if isinstance(h.get(self.metric), (int, float))
                  and math.isfinite(h[self.metric])]
        iterations = int(history[-1].get("training_iteration", len(history))) if history else 0
        if error is not None:
            status = "ERROR"
        elif self.interrupted is not None and self.interrupted.is_set() and (
                self.max_iterations is None or iterations < self.max_iterations):
            status = "INTERRUPTED"  # stopped by Ctrl-C, not by the scheduler
        elif self.max_iterations is not None and iterations < self.max_iterations:
            status = "EARLY_STOPPED"  # stopped by the scheduler (or the time budget) before max_iterations
        else:
            status = "TERMINATED"
        pick = min if self.mode == "min" else max
        row = {
            "trial_id": trial.trial_id,
            "config": trial.config,
            "status": status,
            "error": error,
            "iterations": iterations,
            "run_time_s": float(history[-1].get("time_total_s", 0.0)) if history else 0.0,
            "final_metric": values[-1] if values and error is None else None,
            "best_metric": pick(values) if values else None,
            "seed": trial.config.get("seed") if isinstance(trial.config, dict) else None,
        }
        self.rows.append(row)
        self.writer.add_trial(row, history)
        self.writer.flush()

    def flush_unfinished(self, trials: list) -> None:
        """On interruption: record trials that started but never completed, as INTERRUPTED."""
        done = {r["trial_id"] for r in self.rows}
        for trial in trials:
            if trial.trial_id in done or trial.trial_id not in self.histories:
                continue
            history = self.histories.pop(trial.trial_id)
            row = {"trial_id": trial.trial_id, "config": trial.config, "status": "INTERRUPTED", "error": None,
                   "iterations": int(history[-1].get("training_iteration", len(history))),
                   "run_time_s": float(history[-1].get("time_total_s", 0.0)), "final_metric": None,
                   "best_metric": None, "seed": trial.config.get("seed")}
            self.rows.append(row)
            self.writer.add_trial(row, history)
        self.writer.flush()

    def best(self) -> dict | None:
        ok = [r for r in self.rows if r["final_metric"] is not None]
        if not ok:
            return None
        pick = min if self.mode == "min" else max
        best = pick(ok, key=lambda r: r["final_metric"])
        return {"trial_id": best["trial_id"], "config": best["config"], "metric": self.metric,
                "value": best["final_metric"], "iterations": best["iterations"], "status": best["status"]}
