"""Run an `ExperimentSpec` on Ray Tune and write its experiment record.

`run_experiment` reads as its steps:
1. `build_components`: preflight (storage, warm-start records, resources), space, searcher
   (warm-started), scheduler, guarded trainable. Bad input fails here, before anything is reserved or started.
2. `toolkit.cluster.connect.connect`: the cluster, or an embedded local Ray.
3. `open_record`: reserve the record's version; the callbacks and stoppers of the sweep.
4. `build_tuner`: the `tune.Tuner` (checkpointing in `checkpoint_config`, stopping in `stopper`).
5. `fit`, 6. `finish`: run status (`run_status`, the one place it is decided), publish.
Trial events -> `RecordingCallback` -> `toolkit.results.RecordWriter` (plain data only).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from toolkit.spec import ExperimentSpec, SpecError


@dataclass
class Plan:
    """What a run would do, resolved without starting any trial (`tunekit run --dry-run`)."""

    spec: ExperimentSpec
    space_rows: list[dict]
    searcher: dict[str, Any]
    scheduler: dict[str, Any]
    resources: dict[str, float]
    cluster: dict[str, float]
    concurrency: int
    limits: list[str] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)  # fixed values every trial gets, by dotted path
    startup: int | None = None  # trials the searcher's start-up design takes before its model is used
    points: float = math.inf    # distinct points of the space (finite when every parameter is discrete)

    def warnings(self) -> list[str]:
        s = self.spec
        out = []
        if self.startup is not None and s.num_samples <= self.startup:
            out.append(f"num_samples ({s.num_samples}) is not larger than the searcher's start-up design "
                       f"({self.startup} trials): {s.searcher.type} never uses its model; raise num_samples "
                       f"or lower the start-up design")
        return out

    def render(self) -> str:
        s = self.spec
        lines = [f"experiment {s.name}: {s.trainable}, {s.mode} {s.metric}, {s.num_samples} trials"]
        lines.append("search space:")
        for row in self.space_rows:
            # Every value (0 included); flags only when set.
            desc = {k: v for k, v in row.items() if k not in ("key", "path", "type") and v is not None
                    and v is not False}
            lines.append(f"  {row['key']:<28} {row['type']:<11} {desc}")
        if math.isfinite(self.points):
            exhaustive = bool(getattr(s.searcher, "exhaustive", False))
            lines.append(f"finite space: {int(self.points)} points; " + (
                "the sweep ends once every point was tried (exhaustive)" if exhaustive else
                "once all were tried, the most promising are repeated (searcher.exhaustive: true stops instead)"))
        if self.fixed:
            lines.append("fixed values:")
            lines += [f"  {k} = {v!r}" for k, v in self.fixed.items()]
        lines.append(f"searcher:  {self.searcher}")
        lines.append(f"scheduler: {self.scheduler}")
        lines.append(f"stop:      {s.stop.model_dump(exclude_none=True)}")
        lines.append(f"fail fast: {f'after {s.fail_fast} identical trial failures' if s.fail_fast else 'off'}")
        res = s.resources_per_trial
        if res.data_parallel:  # a Ray Train run per trial (trainables.data_parallel)
            per = f"{{cpu: {res.cpu_per_worker:g}, gpu: {res.gpu_per_worker:g}}}"
            total = res.totals()
            lines.append(f"resources per trial: {res.workers} Ray Train workers x {per} = "
                         f"{{cpu: {total['CPU']:g}, gpu: {total['GPU']:g}}} (the trial's own process reserves "
                         f"no CPU); cluster: {self.cluster}")
        else:
            lines.append(f"resources per trial: {self.resources}; cluster: {self.cluster}")
        lines.append(f"expected concurrency: {self.concurrency} trial(s) at once ({'; '.join(self.limits)})")
        lines.append(f"records:   {Path(s.storage).expanduser().resolve() / s.name}/v<N>")
        lines += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(lines)


def fixed_values(space: Any) -> dict[str, Any]:
    """The values every trial gets as they are (not searched), by dotted path.

    Read off the config of one sampled point: whatever is not a parameter's value (nor inside
    a conditional choice) is fixed.
    """
    import numpy as np

    rows = space.describe()
    searched = {r["path"] for r in rows}  # a choice's path too: its branches are not fixed

    def walk(node: Any, prefix: str) -> dict[str, Any]:
        if prefix in searched:
            return {}
        if isinstance(node, dict) and node:
            out: dict[str, Any] = {}
            for k, v in node.items():
                out.update(walk(v, f"{prefix}.{k}" if prefix else str(k)))
            return out
        return {prefix: node}

    return walk(space.to_config(space.sample(np.random.default_rng(0))), "")


def _local_cluster(spec: ExperimentSpec) -> dict[str, float]:
    cpus = spec.local_ray.num_cpus or os.cpu_count() or 1
    gpus = spec.local_ray.num_gpus
    if gpus is None:
        try:
            import torch

            gpus = torch.cuda.device_count()
        except Exception:  # noqa: BLE001 - no torch/CUDA means no GPUs
            gpus = 0
    return {"CPU": float(cpus), "GPU": float(gpus)}


def _ray_resources() -> dict[str, float]:
    from toolkit.cluster.connect import cluster_resources

    return cluster_resources()


def _concurrency(spec: ExperimentSpec, cluster: dict[str, float]) -> tuple[int, list[str]]:
    need = spec.resources_per_trial.totals()  # a data-parallel trial: all its workers together
    limits = {"num_samples": spec.num_samples}
    if spec.max_concurrent:
        limits["max_concurrent"] = spec.max_concurrent
    if need["CPU"] > 0:
        limits["CPUs"] = int(math.floor(cluster.get("CPU", 0) / need["CPU"] + 1e-9))
    if need["GPU"] > 0:
        # Fractional GPUs pack floor(1 / gpu) trials onto each device.
        limits["GPUs"] = int(math.floor(cluster.get("GPU", 0) / need["GPU"] + 1e-9))
    n = max(0, min(limits.values()))
    return n, [f"{k} allow {v}" for k, v in limits.items()]


def trial_limit(spec: ExperimentSpec) -> int | None:
    """Tune's `max_concurrent_trials`: the spec's; for data-parallel trials, whose workers Ray Train
    reserves outside Tune's view (Tune would start every trial at once, most waiting for workers),
    at most as many as the connected cluster holds now."""
    if not spec.resources_per_trial.data_parallel:
        return spec.max_concurrent
    return max(1, _concurrency(spec, _ray_resources())[0])


def searcher_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """Every option of the searcher in effect, defaults included."""
    return {**spec.searcher.model_dump(mode="json"), "seed": spec.seed}


def scheduler_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """Every option of the scheduler in effect, defaults included (and its horizon)."""
    out = spec.scheduler.model_dump(mode="json")
    if spec.scheduler.needs_max_iterations:
        out.update(time_attr="training_iteration", max_t=spec.stop.max_iterations)
    return out


def plan(spec: ExperimentSpec, cluster: dict[str, float] | None = None, searcher: Any = None) -> Plan:
    """The run's plan; `searcher` (built if not given) says how long its start-up design is."""
    from toolkit.searchers import build_searcher, startup_size

    cluster = cluster or _local_cluster(spec)
    n, limits = _concurrency(spec, cluster)
    res = spec.resources_per_trial
    space = spec.search_space()
    if searcher is None:
        searcher = build_searcher(spec.searcher, space, spec.metric, spec.mode, spec.seed)
    return Plan(spec, space.describe(), searcher_settings(spec), scheduler_settings(spec),
                res.summary(), cluster, n, limits, fixed_values(space), startup_size(searcher),
                space.cardinality())


def make_searcher(spec: ExperimentSpec) -> Any:
    """Our searcher for the spec, holding the typed space (Tune then needs no param_space),
    warm-started from the records `searcher.warm_start` names."""
    from toolkit.results import warm_start_points
    from toolkit.searchers import build_searcher

    searcher = build_searcher(spec.searcher, spec.search_space(), spec.metric, spec.mode, spec.seed)
    for ref in spec.searcher.warm_start:
        searcher.warm_start(warm_start_points(ref, spec.storage, spec.metric, spec.mode))
    return searcher


# --------------------------------------------------------------------------- step 1: build
@dataclass
class Components:
    """Everything a run needs, built before any record version is reserved or Ray is started."""

    space: Any                # toolkit.space.SearchSpace
    searcher: Any             # a ray.tune.search.Searcher
    scheduler: Any            # a ray.tune.schedulers.TrialScheduler
    trainable: Any            # the user's Trainable class or function trainable, as imported
    guarded: type             # the Trainable class Tune runs: metric guard + resources
    is_function: bool         # a function trainable (no checkpoint_at_end)
    storage: Path
    data: dict | None         # the trainable's data fingerprint, if it has one


def build_components(spec: ExperimentSpec, address: str | None = None) -> Components:
    """Preflight checks (storage, warm-start records, resources), then space, searcher (warm
    start included), scheduler and guarded trainable.

    Bad input surfaces here as a `SpecError` naming the field, with nothing written or started.
    """
    import ray
    from ray import tune

    from toolkit.guard import guard_trainable, is_function_trainable
    from toolkit.preflight import preflight
    from toolkit.results import RecordError
    from toolkit.schedulers import build_scheduler

    # Resources are checked only against a local Ray of known size (a cluster may grow).
    local = None if address else (_ray_resources() if ray.is_initialized() else _local_cluster(spec))
    preflight(spec, local, spec.source)
    storage = Path(spec.storage).expanduser().resolve()
    space = spec.search_space()
    trainable = spec.trainable_class()
    res = spec.resources_per_trial
    if res.data_parallel:  # one trial = a Ray Train run on `workers` workers (trainables.data_parallel)
        from trainables.data_parallel import data_parallel

        try:
            trainable = data_parallel(trainable, res.workers, res.cpu_per_worker, res.gpu_per_worker)
        except TypeError as e:
            raise SpecError([("resources_per_trial.workers", f"{spec.trainable}: {e}")]) from None
        short = [f"{need:g} {kind}(s) but the local Ray has {local.get(kind, 0):g}"
                 for kind, need in res.totals().items() if local is not None and need > local.get(kind, 0) + 1e-9]
        if short:
            raise SpecError([("resources_per_trial.workers", f"each trial's {res.workers} workers need "
                              f"{short[0]}: no trial could ever start")])
    try:
        searcher = make_searcher(spec)
    except (RecordError, KeyError) as e:
        raise SpecError([("searcher.warm_start", str(e).strip("'\""))]) from None
    except (ValueError, TypeError) as e:
        raise SpecError([("searcher", str(e))]) from None
    try:
        scheduler = build_scheduler(spec.scheduler, spec.metric, spec.mode, spec.stop.max_iterations)
    except (ValueError, TypeError) as e:
        raise SpecError([("scheduler", str(e))]) from None
    try:
        guarded = guard_trainable(trainable, spec.metric, spec.stop.max_iterations)
    except TypeError as e:
        raise SpecError([("trainable", str(e))]) from None
    if res.data_parallel:
        from trainables.data_parallel import DRIVER_RESOURCES

        guarded = tune.with_resources(guarded, DRIVER_RESOURCES)  # Ray Train reserves the workers itself
    else:
        guarded = tune.with_resources(guarded, {"cpu": res.cpu, "gpu": res.gpu})
    fingerprint = getattr(trainable, "data_fingerprint", None)
    return Components(space, searcher, scheduler, trainable, guarded, is_function_trainable(trainable), storage,
                      fingerprint() if callable(fingerprint) else None)


# --------------------------------------------------------------------------- step 3: open the record
@dataclass
class Sweep:
    """The open record of a run and the callbacks and stoppers that feed and end it."""

    writer: Any               # toolkit.results.RecordWriter
    recorder: Any             # toolkit.recording.RecordingCallback
    interrupt: Any            # toolkit.interrupt.InterruptStopper
    fail_fast: Any            # toolkit.failfast.FailFast
    callbacks: list = field(default_factory=list)  # every Tune callback of the run (recorder first)


def run_manifest(spec: ExperimentSpec, parts: Components, the_plan: Plan) -> dict[str, Any]:
    """What the record says about the run before it starts (plain data for toolkit.results)."""
    from toolkit.results import collect_environment

    return {
        "spec": spec.given,
        "resolved_spec": spec.resolved(),
        "space": parts.space.describe(),
        "seed": spec.seed,
        "searcher": searcher_settings(spec),
        "scheduler": scheduler_settings(spec),
        "trainable": spec.trainable,
        "trainable_search_paths": [str(p) for p in spec.trainable_search_paths()],
        "metric": spec.metric,
        "mode": spec.mode,
        "data": parts.data,
        "environment": collect_environment(),
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "resources_per_trial": the_plan.resources,
        "expected_concurrency": the_plan.concurrency,
    }


def open_record(spec: ExperimentSpec, parts: Components, the_plan: Plan,
                log: Callable[[str], None] = print, resume_version: int | None = None) -> Sweep:
    """Reserve the record's version (or, resuming, reopen the incomplete one) and set up what
    records trials and what ends the sweep."""
    from toolkit.cluster.recovery import RecoveringRecorder, tune_experiment_dir
    from toolkit.failfast import FailFast
    from toolkit.interrupt import InterruptStopper
    from toolkit.results import RecordWriter

    if resume_version is None:
        writer = RecordWriter(parts.storage, spec.name, run_manifest(spec, parts, the_plan))
        recorded = None
    else:
        writer = RecordWriter.reopen(parts.storage, spec.name, resume_version)
        recorded = writer.recorded_rows
    recorder = RecoveringRecorder(writer, spec.metric, spec.mode, spec.stop.max_iterations, recorded_rows=recorded,
                                  snapshot_dir=tune_experiment_dir(parts.storage, spec.name, writer.version))
    interrupt = InterruptStopper()
    recorder.interrupted = interrupt
    recorder.time_suggestions(parts.searcher)
    fail_fast = FailFast(spec.fail_fast, log)
    return Sweep(writer, recorder, interrupt, fail_fast, [recorder, fail_fast])


def discard_unstarted(writer: Any) -> None:
    """Remove a reserved version no trial ever reached: a run that failed before its first
    trial leaves nothing behind (and the version number is free again)."""
    shutil.rmtree(writer.path, ignore_errors=True)
    with contextlib.suppress(OSError):
        writer.path.parent.rmdir()  # the experiment's folder, if this was its only version


# --------------------------------------------------------------------------- step 4: build the tuner
def checkpoint_config(spec: ExperimentSpec, parts: Components, max_failures: int = 0) -> Any:
    """Keep one checkpoint per trial, but save none at the end of every trial: `reproduce` reruns
    from the recorded seed, a pausing scheduler gets its checkpoints from Tune when it pauses,
    and a save at each trial's end (plus the experiment snapshot Tune forces after it) costs a
    short trial more than its training. The best trial's final state is kept by
    `toolkit.lean.CheckpointBest` (see `lean_callbacks`). Function trainables save their own,
    with `ray.tune.report(..., checkpoint=...)`.

    Where trials may be restarted (a cluster loses nodes), a Trainable class is also saved every
    `failure.checkpoint_frequency` iterations (default: each one), so a restarted trial continues
    from where it was instead of from scratch."""
    from ray import tune

    from toolkit.lean import implements_checkpoints

    every = spec.failure.checkpoint_frequency
    if every is None:
        every = 1 if max_failures > 0 else 0
    if parts.is_function or not implements_checkpoints(parts.trainable):
        every = 0  # Tune cannot save these on its own schedule
    return tune.CheckpointConfig(num_to_keep=1, checkpoint_at_end=False, checkpoint_frequency=every)


def lean_callbacks(spec: ExperimentSpec, parts: Components) -> list:
    """Tune's `result.json` logger only, and a checkpoint of each trial that ends best so far
    (class trainables that can save at all); see `toolkit.lean`."""
    from toolkit.lean import CheckpointBest, implements_checkpoints, result_loggers

    keep = [CheckpointBest(spec.metric, spec.mode, spec.stop.max_iterations)]
    return [*result_loggers(), *(keep if implements_checkpoints(parts.trainable) else [])]


def stopper(spec: ExperimentSpec, sweep: Sweep) -> Any:
    """Ctrl-C, fail fast and the iteration limit, as one Tune stopper (toolkit.stopping says
    why not Ray's `MaximumIterationStopper`)."""
    from toolkit.stopping import SweepStopper

    return SweepStopper([sweep.interrupt, sweep.fail_fast.stopper], spec.stop.max_iterations).activate()


def build_tuner(spec: ExperimentSpec, parts: Components, sweep: Sweep, verbose: int = 1,
                max_failures: int = 0) -> Any:
    """The `tune.Tuner` of the run (metric and mode are set on the searcher and the scheduler)."""
    from ray import tune

    from toolkit.lean import supports_reuse

    return tune.Tuner(
        parts.guarded,
        tune_config=tune.TuneConfig(
            search_alg=parts.searcher,
            scheduler=parts.scheduler,
            num_samples=spec.num_samples,
            max_concurrent_trials=trial_limit(spec),
            time_budget_s=spec.stop.time_budget_s,
            # One actor runs trial after trial (reset_config): no new process, no re-import.
            reuse_actors=supports_reuse(parts.trainable),
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-v{sweep.writer.version}",
            storage_path=str(parts.storage / ".ray"),
            stop=stopper(spec, sweep),
            callbacks=sweep.callbacks,
            verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=checkpoint_config(spec, parts, max_failures),
        ),
    )


# --------------------------------------------------------------------------- step 5: fit
@dataclass
class Fitted:
    trials: list              # Ray's Trial objects with their final statuses ([] if fit never returned)
    interrupted: bool         # Ctrl-C


def fit(tuner: Any, sweep: Sweep, log: Callable[[str], None] = print) -> Fitted:
    from toolkit.interrupt import catch_sigint

    try:
        with catch_sigint(sweep.interrupt, log):
            grid = tuner.fit()
    except KeyboardInterrupt:
        return Fitted([], True)
    return Fitted(grid._experiment_analysis.trials, sweep.interrupt.is_set())  # Trials carry final statuses


# --------------------------------------------------------------------------- step 6: finish
@dataclass
class RunOutcome:
    status: str
    best: dict | None
    record_path: Path
    version: int
    n_trials: int
    n_errors: int
    n_early_stopped: int
    error: str | None = None  # why the sweep failed as a whole (fail fast), if it did


def run_status(fitted: Fitted, rows: list[dict], fail_fast_error: str | None) -> str:
    """The one place a run's status is decided."""
    if fail_fast_error is not None:
        return "failed"
    if fitted.interrupted or any(t.status not in ("TERMINATED", "ERROR") for t in fitted.trials):
        return "interrupted"
    if rows and all(r["status"] == "ERROR" for r in rows):
        return "failed"
    return "completed"


def finish(sweep: Sweep, fitted: Fitted) -> RunOutcome:
    """Record unfinished trials and the suggestions, publish the version, sum up the run."""
    recorder, writer = sweep.recorder, sweep.writer
    status = run_status(fitted, recorder.rows, sweep.fail_fast.error)
    if fitted.trials:
        recorder.flush_unfinished(fitted.trials)
    recorder.release_held()  # the record is published next: nothing waits for a snapshot any more
    best = recorder.best()
    writer.add_suggestions(recorder.suggestions)
    error = sweep.fail_fast.error
    extra = {"error": error, "stopped_by": "fail_fast"} if error else None
    path = writer.finish(status, best, extra=extra)
    rows = recorder.rows
    return RunOutcome(status, best, Path(path), writer.version, len(rows),
                      sum(r["status"] == "ERROR" for r in rows),
                      sum(r["status"] == "EARLY_STOPPED" for r in rows), error)


def _fail(sweep: Sweep, err: BaseException) -> None:
    """An unexpected error during the run: publish what finished, or leave nothing if no trial started."""
    writer = sweep.writer
    if not sweep.recorder.started and not sweep.recorder.rows:
        discard_unstarted(writer)
        return
    sweep.recorder.release_held()
    writer.add_suggestions(sweep.recorder.suggestions)
    writer.finish("failed", sweep.recorder.best(), extra={"error": f"{type(err).__name__}: {err}"})


# --------------------------------------------------------------------------- the run
def run_experiment(
    spec: ExperimentSpec,
    address: str | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
    resume: str | None = None,
    callbacks: Sequence[Any] = (),
    on_record: Callable[[Path], Any] | None = None,
    evaluate_first: Sequence[Mapping] = (),
    warm_points: Sequence[tuple[Mapping, float | None]] = (),
) -> RunOutcome:
    """Run the sweep the spec describes and write its record: build every component,
    connect, open the record, build the tuner, fit, finish.

    `resume` ('yes' or 'auto'): continue the incomplete version a killed driver left
    (toolkit.cluster.recovery); 'auto' starts fresh when there is none.
    `callbacks`: more Tune callbacks (e.g. `toolkit.progress.SweepProgress`); `on_record` is
    called with the record's folder once its version is reserved. `warm_points` ((config,
    metric) pairs) warm-start the searcher and `evaluate_first` configs are suggested before
    anything else (`tunekit nightly run` passes the last good night's trials and champions)."""
    from toolkit.cluster import recovery
    from toolkit.cluster.connect import connect, use_cluster_token
    from toolkit.interrupt import defer_sigint

    if address:
        use_cluster_token()  # before Ray is first imported (building the components imports it)
    parts = build_components(spec, address)
    if warm_points:
        parts.searcher.warm_start(warm_points)
    if evaluate_first:
        parts.searcher.evaluate_first(evaluate_first)
    conn = connect(address, num_cpus=spec.local_ray.num_cpus, num_gpus=spec.local_ray.num_gpus,
                   code_paths=spec.trainable_search_paths())
    try:
        # After ray.init, whose own SIGTERM handler exits at once: `tunekit jobs stop` (Ray sends
        # SIGTERM) then ends the sweep like Ctrl-C and the record is published as interrupted.
        recovery.sigterm_as_interrupt()
        if address:
            from toolkit.cluster import jobenv, reach

            jobenv.reenter_working_dir()  # a Ray job's folder can be replaced while its driver connects
            reach.check_storage(parts.storage)  # every node must reach the record storage
        the_plan = plan(spec, conn.resources, parts.searcher)
        log(f"[tunekit] {spec.name}: {spec.num_samples} trials, {the_plan.concurrency} at once on "
            f"{conn.describe()}")
        resume_version = recovery.resumable_version(parts.storage, spec.name, spec.given, resume)
        recovery.keep_snapshots_fresh(address)
        # A Ctrl-C between reserving the version and the `try` below would leave it orphaned:
        # hold it back until `_fail` can remove the version.
        with defer_sigint() as pending:
            sweep = open_record(spec, parts, the_plan, log, resume_version)
            sweep.callbacks += [*lean_callbacks(spec, parts), *callbacks]
            if on_record is not None:
                on_record(sweep.writer.path)
            max_failures = spec.failure.max_failures
            if max_failures is None:
                max_failures = recovery.default_max_failures(address)
            experiment = recovery.tune_experiment_dir(parts.storage, spec.name, sweep.writer.version)
        try:
            pending.raise_if_fired()
            if resume_version is not None and recovery.can_restore(experiment):
                log(f"[tunekit] resuming {spec.name}@v{resume_version}: {len(sweep.recorder.rows)} trial(s) "
                    "already recorded")
                tuner = recovery.restore_tuner(experiment, parts.guarded, sweep.callbacks,
                                               stopper(spec, sweep), sweep.recorder)
            else:
                tuner = build_tuner(spec, parts, sweep, verbose, max_failures)
            from toolkit.lean import implements_checkpoints, lean_tune_env

            with lean_tune_env(parts.scheduler, spec.stop.max_iterations,
                               checkpoints=implements_checkpoints(parts.trainable),
                               concurrency=the_plan.concurrency):
                fitted = fit(tuner, sweep, log)
        except BaseException as e:
            _fail(sweep, e)
            raise
        return finish(sweep, fitted)
    finally:
        conn.close()
