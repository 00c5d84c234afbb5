"""Run an `ExperimentSpec` on Ray Tune and write its experiment record.

spec -> (typed space, searcher, scheduler, guarded trainable) -> `tune.Tuner` -> trials;
trial events -> `RecordingCallback` -> `toolkit.results.RecordWriter` (plain data only).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolkit.spec import ExperimentSpec


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

    def render(self) -> str:
        s = self.spec
        lines = [f"experiment {s.name}: {s.trainable}, {s.mode} {s.metric}, {s.num_samples} trials"]
        lines.append("search space:")
        for row in self.space_rows:
            desc = {k: v for k, v in row.items() if k not in ("key", "path", "type") and v not in (None, False)}
            lines.append(f"  {row['key']:<28} {row['type']:<11} {desc}")
        lines.append(f"searcher:  {self.searcher}")
        lines.append(f"scheduler: {self.scheduler}")
        lines.append(f"stop:      {s.stop.model_dump(exclude_none=True)}")
        lines.append(f"resources per trial: {self.resources}; cluster: {self.cluster}")
        lines.append(f"expected concurrency: {self.concurrency} trial(s) at once ({'; '.join(self.limits)})")
        lines.append(f"records:   {Path(s.storage).resolve() / s.name}/v<N>")
        return "\n".join(lines)


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


def _concurrency(spec: ExperimentSpec, cluster: dict[str, float]) -> tuple[int, list[str]]:
    res = spec.resources_per_trial
    limits = {"num_samples": spec.num_samples}
    if spec.max_concurrent:
        limits["max_concurrent"] = spec.max_concurrent
    if res.cpu > 0:
        limits["CPUs"] = int(cluster.get("CPU", 0) // res.cpu)
    if res.gpu > 0:
        # Fractional GPUs pack floor(1 / gpu) trials onto each device.
        limits["GPUs"] = int(math.floor(cluster.get("GPU", 0) / res.gpu + 1e-9))
    n = max(0, min(limits.values()))
    return n, [f"{k} allow {v}" for k, v in limits.items()]


def searcher_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """Every option of the searcher in effect, defaults included."""
    return {**spec.searcher.model_dump(mode="json"), "seed": spec.seed}


def scheduler_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """Every option of the scheduler in effect, defaults included (and its horizon)."""
    out = spec.scheduler.model_dump(mode="json")
    if spec.scheduler.needs_max_iterations:
        out.update(time_attr="training_iteration", max_t=spec.stop.max_iterations)
    return out


def plan(spec: ExperimentSpec, cluster: dict[str, float] | None = None) -> Plan:
    cluster = cluster or _local_cluster(spec)
    n, limits = _concurrency(spec, cluster)
    res = spec.resources_per_trial
    return Plan(spec, spec.search_space().describe(), searcher_settings(spec), scheduler_settings(spec),
                {"cpu": res.cpu, "gpu": res.gpu}, cluster, n, limits)


def make_searcher(spec: ExperimentSpec):
    """Our searcher for the spec, holding the typed space (Tune then needs no param_space)."""
    from toolkit.results import warm_start_points
    from toolkit.searchers import build_searcher

    searcher = build_searcher(spec.searcher, spec.search_space(), spec.metric, spec.mode, spec.seed)
    for ref in spec.searcher.warm_start:
        searcher.warm_start(warm_start_points(ref, spec.storage, spec.metric, spec.mode))
    return searcher


def use_cluster_token() -> None:
    """Present the cluster's auth token when connecting to an existing Ray cluster.

    Ray clusters use token authentication by default, but a client only sends the token when
    RAY_AUTH_MODE=token, and Ray reads that when it is first imported: call this before.
    """
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _init_ray(spec: ExperimentSpec, address: str | None) -> bool:
    """Connect to a cluster or start an embedded one; returns whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        use_cluster_token()
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(num_cpus=spec.local_ray.num_cpus, num_gpus=spec.local_ray.num_gpus,
                 include_dashboard=False, logging_level="WARNING")
    return True


def _cluster_resources() -> dict[str, float]:
    import ray

    res = ray.cluster_resources()
    return {"CPU": float(res.get("CPU", 0)), "GPU": float(res.get("GPU", 0)),
            "nodes": float(len([n for n in ray.nodes() if n.get("Alive")]))}


@dataclass
class RunOutcome:
    status: str
    best: dict | None
    record_path: Path
    version: int
    n_trials: int
    n_errors: int
    n_early_stopped: int


def run_experiment(
    spec: ExperimentSpec,
    address: str | None = None,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    """Run the sweep the spec describes and write its record; see the module docstring."""
    from ray import tune

    from toolkit.guard import guard_trainable
    from toolkit.recording import RecordingCallback
    from toolkit.results import RecordWriter, collect_environment

    storage = Path(spec.storage).expanduser().resolve()
    started_ray = _init_ray(spec, address)
    try:
        cluster = _cluster_resources()
        the_plan = plan(spec, cluster)
        log(f"[tunekit] {spec.name}: {spec.num_samples} trials, {the_plan.concurrency} at once on "
            f"{cluster['CPU']:g} CPU / {cluster['GPU']:g} GPU ({'cluster ' + address if address else 'local Ray'})")
        trainable_cls = spec.trainable_class()
        data = trainable_cls.data_fingerprint() if hasattr(trainable_cls, "data_fingerprint") else None
        manifest = {
            "spec": spec.given,
            "resolved_spec": spec.resolved(),
            "space": spec.search_space().describe(),
            "seed": spec.seed,
            "searcher": searcher_settings(spec),
            "scheduler": scheduler_settings(spec),
            "trainable": spec.trainable,
            "metric": spec.metric,
            "mode": spec.mode,
            "data": data,
            "environment": collect_environment(),
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "resources_per_trial": the_plan.resources,
            "expected_concurrency": the_plan.concurrency,
        }
        writer = RecordWriter(storage, spec.name, manifest)
        recorder = RecordingCallback(writer, spec.metric, spec.mode, spec.stop.max_iterations)

        trainable = tune.with_resources(
            guard_trainable(trainable_cls, spec.metric),
            {"cpu": spec.resources_per_trial.cpu, "gpu": spec.resources_per_trial.gpu},
        )
        from toolkit.schedulers import build_scheduler

        scheduler = build_scheduler(spec.scheduler, spec.metric, spec.mode, spec.stop.max_iterations)
        from ray.tune.stopper import CombinedStopper, MaximumIterationStopper

        from toolkit.interrupt import InterruptStopper, catch_sigint

        interrupt = InterruptStopper()
        recorder.interrupted = interrupt
        stoppers = [interrupt]
        if spec.stop.max_iterations:
            stoppers.append(MaximumIterationStopper(spec.stop.max_iterations))
        searcher = make_searcher(spec)
        recorder.time_suggestions(searcher)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(  # metric and mode are set on the searcher and the scheduler
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=spec.num_samples,
                max_concurrent_trials=spec.max_concurrent,
                time_budget_s=spec.stop.time_budget_s,
            ),
            run_config=tune.RunConfig(
                name=f"{spec.name}-v{writer.version}",
                storage_path=str(storage / ".ray"),
                stop=CombinedStopper(*stoppers),
                callbacks=[recorder],
                verbose=verbose,
                failure_config=tune.FailureConfig(max_failures=0),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_at_end=True),
            ),
        )
        status = "completed"
        try:
            with catch_sigint(interrupt, log):
                grid = tuner.fit()
            trials = grid._experiment_analysis.trials  # Trial objects carry the final statuses
            if interrupt.is_set() or any(t.status not in ("TERMINATED", "ERROR") for t in trials):
                status = "interrupted"
                recorder.flush_unfinished(trials)
        except KeyboardInterrupt:
            status = "interrupted"
            writer.flush()
        except BaseException:
            writer.flush()
            writer.add_suggestions(recorder.suggestions)
            writer.finish("failed", recorder.best())
            raise
        if status == "completed" and recorder.rows and all(r["status"] == "ERROR" for r in recorder.rows):
            status = "failed"
        best = recorder.best()
        writer.add_suggestions(recorder.suggestions)
        path = writer.finish(status, best)
        rows = recorder.rows
        return RunOutcome(status, best, Path(path), writer.version, len(rows),
                          sum(r["status"] == "ERROR" for r in rows),
                          sum(r["status"] == "EARLY_STOPPED" for r in rows))
    finally:
        if started_ray:
            import ray

            ray.shutdown()
