"""Surviving a lost node and a lost driver.

- A trial restored from its last checkpoint (its node died, or the whole sweep was resumed)
  reports some iterations a second time: `RecoveringRecorder` keeps one row per
  (trial, iteration), the latest.
- `tunekit run SPEC --resume`: `find_resumable` picks the incomplete record version the killed
  driver left (same spec, writer gone); the record writer reopens it, Ray's `Tuner.restore`
  brings trials back from their checkpoints and our searcher and scheduler from their saved
  state, and trials already in the record's journal are never recorded again.
- The journal never runs ahead of Ray's experiment snapshot: a finished trial is journalled
  only once the snapshot in storage records it ended. Otherwise a driver killed between the
  two leaves a trial the restored searcher never saw; it proposes the trial again under a new
  id, and the record holds one trial too many (seen with a kill 0.2 s after a trial ended).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from toolkit.recording import RecordingCallback, trial_error_message, metric_row


class RecoveringRecorder(RecordingCallback):
    """A `RecordingCallback` that de-duplicates results by iteration and, in a resumed run,
    knows the trials the record already holds (and their earlier results, from Ray's files)."""

    def __init__(self, *args: Any, recorded_rows: list[dict] | None = None, snapshot_dir: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded = {str(r["trial_id"]) for r in recorded_rows or []}
        self.rows = [dict(r) for r in recorded_rows or []]
        self.resumed = recorded_rows is not None
        self.n_duplicates = 0  # results replaced because their iteration was reported again
        # Where Tune snapshots the experiment; None journals every trial at once.
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.held: list[tuple[dict, list[dict]]] = []  # finished, awaiting the snapshot
        self._next_look = 0.0
        self._reconciled = False  # a resumed run checks the restored trials once

    def _journal(self, row: dict, history: list[dict]) -> None:
        if self.snapshot_dir is None:
            super()._journal(row, history)
        else:
            self.held.append((row, history))

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.resumed and not self._reconciled:
            self._reconciled = True
            self._record_ended_elsewhere(trials)

    def _record_ended_elsewhere(self, trials: list) -> None:
        """Trials the restored snapshot says ended but the journal lacks (the driver died after
        the snapshot, before it journalled them): record them now from Ray's result files."""
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR") or trial.trial_id in self.recorded:
                continue
            self.histories[trial.trial_id] = earlier_results(trial)
            self._finish(trial, error=trial_error_message(trial) if trial.status == "ERROR" else None)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.held or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + 0.5  # reading the snapshot costs; twice a second is enough
        self.release_held(snapshot_ended_trials(self.snapshot_dir))

    def release_held(self, ended: set[str] | None = None) -> None:
        """Journal the held trials the snapshot records as ended (`ended`), or every one when the
        sweep is ending and the record is about to be published (None)."""
        ready = [(row, h) for row, h in self.held if ended is None or row["trial_id"] in ended]
        if not ready:
            return
        self.held = [(row, h) for row, h in self.held if ended is not None and row["trial_id"] not in ended]
        for row, history in ready:
            self.writer.add_trial(row, history)
        self.writer.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.release_held()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        history = self.histories.get(trial.trial_id)
        if history is None:
            history = self.histories[trial.trial_id] = earlier_results(trial) if self.resumed else []
        row = metric_row(result)
        it = row.get("training_iteration")
        if isinstance(it, (int, float)):
            kept = [h for h in history if not (isinstance(h.get("training_iteration"), (int, float))
                                               and h["training_iteration"] >= it)]
            self.n_duplicates += len(history) - len(kept)
            history[:] = kept
        history.append(row)

    def _finish(self, trial: Any, error: str | None) -> None:
        if trial.trial_id in self.recorded:
            self.histories.pop(trial.trial_id, None)  # finished before the driver died: recorded then
            return
        self.recorded.add(trial.trial_id)
        super()._finish(trial, error)


def earlier_results(trial: Any) -> list[dict]:
    """The results Ray logged for `trial` before this driver started (its result.json),
    one row per iteration (the last report wins)."""
    by_iteration: dict[Any, dict] = {}
    for folder in {getattr(trial, "local_path", None), getattr(trial, "path", None)}:
        path = Path(folder) / "result.json" if folder else None
        if path is None or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short when the driver died
            row = metric_row(result)
            by_iteration[row.get("training_iteration", len(by_iteration))] = row
        break
    return [by_iteration[k] for k in sorted(by_iteration, key=lambda k: (k is None, k))]


def snapshot_ended_trials(experiment_dir: Path) -> set[str]:
    """Ids of the trials that the newest experiment snapshot in storage (the file
    `Tuner.restore` would read: Ray takes the greatest name) records as ended."""
    files = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    if not files:
        return set()
    try:
        snapshot = json.loads(files[-1].read_text())
        states = [json.loads(entry[0]) for entry in snapshot.get("trial_data", [])]
    except (OSError, ValueError, TypeError, IndexError):
        return set()  # being copied into storage right now: look again at the next step
    return {str(s.get("trial_id")) for s in states if s.get("status") in ("TERMINATED", "ERROR")}


def tune_experiment_dir(storage: Path, name: str, version: int) -> Path:
    """Where the runner's `tune.Tuner` keeps its experiment state for `name@v<version>`."""
    return Path(storage) / ".ray" / f"{name}-v{version}"


def find_resumable(storage: Path, name: str, given: dict) -> int | None:
    """The newest incomplete version of `name` written from the same spec whose writer is gone."""
    from toolkit.results import store

    root = Path(storage)
    for version in sorted(store.versions(root, name), reverse=True):
        vdir = store.version_dir(root, name, version)
        manifest_path = vdir / store.STAGING / store.MANIFEST
        if store.is_published(vdir) or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("spec") != json.loads(json.dumps(given, default=str)):
            continue
        if store.writer_alive(manifest.get("writer")):
            continue
        return version
    return None


def sigterm_as_interrupt() -> None:
    """Let SIGTERM (how Ray stops a job, and how schedulers stop processes) end a sweep the way
    Ctrl-C does: running trials stop, the record is published marked interrupted."""
    # Call the SIGINT handler in place rather than sending SIGINT: a Ray job's driver runs with
    # SIGINT blocked (Ray's job supervisor blocks it), so a sent SIGINT would never arrive.
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint):
            on_sigint(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:
        pass  # not the main thread: leave SIGTERM alone


def resumable_version(storage: Path, name: str, given: dict, resume: str | None) -> int | None:
    """The version `--resume` continues: None for a fresh run. `resume='yes'` insists on one
    (a `SpecError` when there is none); `'auto'` (what `tunekit submit` runs) starts fresh then."""
    if not resume:
        return None
    version = find_resumable(storage, name, given)
    if version is None and resume == "yes":
        from toolkit.spec import SpecError

        raise SpecError([("--resume", f"no incomplete version of {name!r} from this spec under {storage} "
                                      "(nothing to resume; run without --resume)")])
    return version


def default_max_failures(address: str | None) -> int:
    """Retries per trial when the spec does not say: on a cluster nodes come and go (spot
    instances, evictions), so a trial is restarted from its last checkpoint up to 3 times; on a
    local Ray a failure is the trial's own and is reported at once."""
    return 3 if address else 0


def restore_tuner(path: Path, trainable: Any, callbacks: list, stop: Any, recorder: Any) -> Any:
    """Ray's `Tuner.restore` of the experiment at `path`, wired to this driver's callbacks and
    stoppers (the pickled ones belong to the dead driver). Trials come back from their last
    checkpoints, errored ones included; the searcher from the state Ray saved with the
    experiment; our schedulers reload their own saved state when the first trial arrives."""
    from ray import tune

    tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    internal = tuner._local_tuner
    run_config = internal.get_run_config()
    run_config.callbacks = list(callbacks)
    run_config.stop = stop
    searcher = internal._tune_config.search_alg
    if searcher is not None:
        searcher.__dict__.pop("suggest", None)  # the dead driver's timing wrapper
        recorder.time_suggestions(searcher)
    return tuner


def can_restore(path: Path) -> bool:
    from ray import tune

    return Path(path).is_dir() and tune.Tuner.can_restore(str(path))


# Seconds between Tune's experiment snapshots. `Tuner.restore` resumes from the last snapshot: a
# trial recorded after it would come back under a new id from a searcher that never saw it, so
# `--resume` needs snapshots that are seconds old (Ray's own default is 10 s and up). One
# snapshot per 2 s at most costs a short-trial sweep little (lean.py keeps the rest cheap).
SNAPSHOT_PERIOD_S = 2


def keep_snapshots_fresh(address: str | None = None) -> None:
    """Snapshot the experiment often (for `--resume`) unless the user chose a period
    (TUNE_GLOBAL_CHECKPOINT_S), on a cluster and locally alike."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(SNAPSHOT_PERIOD_S))
