"""A compact live view of a sweep: counts, best so far, time; warnings that matter, once each.

`SweepProgress` is a plain Ray Tune `Callback`, so it works in any `tune.Tuner`:

    progress = SweepProgress("loss", "min", num_samples=40, max_iterations=9)
    tune.Tuner(..., run_config=tune.RunConfig(callbacks=[progress], verbose=0))

On a terminal it keeps one line up to date (a bar); otherwise (CI, a log file) it prints a
plain line now and then, less often as the sweep goes on, so a sweep of any length stays a
few dozen lines. A failed trial, a NaN metric and a trial that finished without reporting
the metric are reported once each, with the trial id and where the full story is.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from ray.tune import Callback

# Plain (non-terminal) lines: the first after FIRST_LINE_S, then each gap GROWTH times the
# last one, capped at MAX_GAP_S: an hour-long sweep prints about 20 lines.
FIRST_LINE_S = 10.0
GROWTH = 1.5
MAX_GAP_S = 300.0
BAR_REFRESH_S = 0.25
BAR_WIDTH = 20


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_value(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def format_config(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in flat_config(config).items())


def first_error_line(trial: Any) -> str:
    """The "ExceptionType: message" line of a failed trial's error file."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, TypeError):
        return "the trial raised an error"
    return lines[-1] if lines else "the trial raised an error"


class SweepProgress(Callback):
    """Counts trials by outcome, tracks the best result, and shows both; see the module docstring.

    `stream` is where lines go (default stdout); `live` forces the one-line bar on or off
    (default: on when `stream` is a terminal). `log_path` is a callable (the log may move) or
    a path naming where Ray's output and tracebacks are. `quiet` keeps only the warnings.
    """

    def __init__(self, metric: str, mode: str, num_samples: int | None = None,
                 max_iterations: int | None = None, stream: TextIO | None = None, live: bool | None = None,
                 log_path: Callable[[], Any] | str | Path | None = None, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        self.metric = metric
        self.mode = mode
        self.num_samples = num_samples
        self.max_iterations = max_iterations
        self.stream = stream if stream is not None else sys.stdout
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self._log_path = log_path
        self.quiet = quiet
        self._clock = clock
        self.t0 = clock()
        self._first_start: float | None = None  # the rate of trials is measured from here
        self.running: set[str] = set()
        self.completed = 0
        self.stopped_early = 0
        self.failed = 0
        # Each trial's latest result: {"value", "trial_id", "config", "iteration"}. The latest,
        # not the trial's best iteration: once the trial ends it is its final metric, which is
        # what the record ranks trials by, so the live "best" agrees with the final summary.
        # A trial that fails leaves it, so "best" is always a trial that may still count.
        self._trial_best: dict[str, dict[str, Any]] = {}
        self._reported: dict[str, bool] = {}  # trial id -> has reported the metric
        self._warned: set[tuple[str, str]] = set()
        self._errors_seen: dict[str, str] = {}  # first line of an error -> first trial id with it
        self._repeats: dict[str, int] = {}
        self._last_line = self.t0
        self._gap = FIRST_LINE_S
        self._last_bar = 0.0
        self._bar_shown = False
        self._closed = False
        self.lines_printed = 0

    # Tune pickles its callbacks with the experiment (for `Tuner.restore`); streams do not pickle.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("stream", "_log_path", "_clock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, stream=sys.stdout, _log_path=None, _clock=time.monotonic)

    # ------------------------------------------------------------------ output
    def log_path(self) -> str | None:
        p = self._log_path() if callable(self._log_path) else self._log_path
        return str(p) if p else None

    def _write_line(self, text: str) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()
        self.lines_printed += 1

    def say(self, text: str) -> None:
        """A line of tunekit's own (above the bar on a terminal)."""
        self._write_line(text)
        if self.live and not self.quiet:
            self._draw_bar(force=True)

    def warn(self, trial_id: str, kind: str, message: str) -> None:
        """Show a warning about a trial once (per trial and kind)."""
        if (trial_id, kind) in self._warned:
            return
        self._warned.add((trial_id, kind))
        where = self.log_path()
        self.say(f"[tunekit] warning: trial {trial_id} {message}" + (f" (details: {where})" if where else ""))

    # ------------------------------------------------------------------ state
    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    @property
    def best(self) -> dict[str, Any] | None:
        best = None
        for entry in self._trial_best.values():
            if best is None or self._better(entry["value"], best["value"]):
                best = entry
        return best

    def finished(self) -> int:
        return self.completed + self.stopped_early + self.failed

    def eta_s(self) -> float | None:
        done = self.finished()
        if not done or not self.num_samples or self.num_samples >= 10**9:
            return None
        since = self._first_start if self._first_start is not None else self.t0
        return (self._clock() - since) / done * max(0, self.num_samples - done)

    def status_line(self) -> str:
        total = f"/{self.num_samples}" if self.num_samples and self.num_samples < 10**9 else ""
        parts = [f"{self.finished()}{total} trials done ({self.stopped_early} stopped early, "
                 f"{self.failed} failed), {len(self.running)} running"]
        best = self.best
        if best is not None:
            parts.append(f"best {self.metric}={format_value(best['value'])} (trial {best['trial_id']}: "
                         f"{format_config(best['config'])})")
        timing = f"{format_duration(self._clock() - self.t0)} elapsed"
        eta = self.eta_s()
        if eta is not None and self.finished() < (self.num_samples or 0):
            timing += f", ~{format_duration(eta)} left"
        parts.append(timing)
        return " | ".join(parts)

    def _draw_bar(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_bar < BAR_REFRESH_S:
            return
        self._last_bar = now
        bar = ""
        if self.num_samples and self.num_samples < 10**9:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * self.finished() / self.num_samples))
            bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "
        width = shutil.get_terminal_size((120, 20)).columns
        text = (bar + self.status_line())[: max(10, width - 1)]
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._bar_shown = True

    def tick(self) -> None:
        """Refresh the bar, or print a plain line when one is due."""
        if self.quiet:
            return
        if self.live:
            self._draw_bar()
            return
        now = self._clock()
        if now - self._last_line >= self._gap:
            self._write_line(f"[tunekit] {self.status_line()}")
            self._last_line = now
            self._gap = min(MAX_GAP_S, self._gap * GROWTH)

    def close(self) -> None:
        """The final state, once: a last bar with its newline, or a last plain line."""
        if self._closed:
            return
        self._closed = True
        if self.quiet:
            return
        if self.live:
            self._draw_bar(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False
        else:
            self._write_line(f"[tunekit] {self.status_line()}")
        repeated = {msg: n for msg, n in self._repeats.items() if n}
        for msg, n in repeated.items():
            self._write_line(f"[tunekit] {n} more trial(s) failed with the error of trial "
                             f"{self._errors_seen[msg]}: {msg}")

    # ------------------------------------------------------------------ Tune callback hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._first_start is None:
            self._first_start = self._clock()  # Ray's start-up is not a trial's cost
        self.running.add(trial.trial_id)
        self._reported.setdefault(trial.trial_id, False)
        self.tick()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if value is None:
            return
        try:
            value = float(value)
        except (TypeError, ValueError):
            return
        self._reported[trial.trial_id] = True
        if not math.isfinite(value):
            self.warn(trial.trial_id, "nan", f"reported {self.metric}={value} at iteration "
                                             f"{result.get('training_iteration', '?')}")
            return
        self._trial_best[trial.trial_id] = {"value": value, "trial_id": trial.trial_id,
                                            "config": dict(trial.config or {}),
                                            "iteration": result.get("training_iteration")}
        self.tick()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        iterations = (trial.last_result or {}).get("training_iteration", 0) or 0
        if self.max_iterations is not None and iterations < self.max_iterations:
            self.stopped_early += 1
        else:
            self.completed += 1
        if not self._reported.get(trial.trial_id, False):
            self.warn(trial.trial_id, "unreported", f"finished without reporting {self.metric!r}")
        self.tick()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self._trial_best.pop(trial.trial_id, None)
        self.failed += 1
        message = first_error_line(trial)
        if message in self._errors_seen:
            # The same error again: counted, and summed up once at the end.
            self._repeats[message] = self._repeats.get(message, 0) + 1
        else:
            self._errors_seen[message] = trial.trial_id
            self._repeats[message] = 0
            self.warn(trial.trial_id, "error", f"failed: {message}")
        self.tick()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.tick()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()
