"""Surviving a lost node and a lost driver.

- A trial restored from its last checkpoint (its node died, or the whole sweep was resumed)
  reports some iterations a second time: `RecoveringRecorder` keeps one row per
  (trial, iteration), the latest.
- `tunekit run SPEC --resume`: `find_resumable` picks the incomplete record version the killed
  driver left (same spec, writer gone); the record writer reopens it, Ray's `Tuner.restore`
  brings trials back from their checkpoints and our searcher and scheduler from their saved
  state, and trials already in the record's journal are never recorded again.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from toolkit.recording import RecordingCallback, metric_row


class RecoveringRecorder(RecordingCallback):
    """A `RecordingCallback` that de-duplicates results by iteration and, in a resumed run,
    knows the trials the record already holds (and their earlier results, from Ray's files)."""

    def __init__(self, *args: Any, recorded_rows: list[dict] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded = {str(r["trial_id"]) for r in recorded_rows or []}
        self.rows = [dict(r) for r in recorded_rows or []]
        self.resumed = recorded_rows is not None
        self.n_duplicates = 0  # results replaced because their iteration was reported again

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
