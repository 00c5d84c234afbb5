"""Rerun one recorded trial in this process and compare it with the record.

The trial's recorded config (which carries its seed) is fed to the trainable class named in
the manifest, for the recorded number of iterations, without Ray Tune: a Ray ``Trainable``
is a plain class whose ``train()`` runs one iteration, so no cluster or scheduler is needed
and nothing but the trainable's own code can change the numbers.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

from toolkit.results.provenance import collect_environment, diff_environments
from toolkit.results.record import Record, load


@dataclass
class ReproduceResult:
    ref: str
    trial_id: str
    metric: str
    mode: str
    iterations: int
    config: dict
    recorded: float | None          # the trial's final metric in the record
    reproduced: float | None        # the rerun's metric at the same iteration
    recorded_history: list = field(default_factory=list)    # metric per iteration
    reproduced_history: list = field(default_factory=list)
    environment_diff: list = field(default_factory=list)    # (field, recorded, now)
    warnings: list = field(default_factory=list)
    threads: int | None = None                              # torch threads used for the rerun

    @property
    def exact(self) -> bool:
        """Bit-identical metric at every recorded iteration."""
        return (bool(self.recorded_history) and len(self.recorded_history) == len(self.reproduced_history)
                and all(_same(a, b) for a, b in zip(self.recorded_history, self.reproduced_history)))

    @property
    def abs_diff(self) -> float | None:
        if self.recorded is None or self.reproduced is None:
            return None
        return abs(self.reproduced - self.recorded)

    def to_text(self) -> str:
        lines = [f"reproduce {self.ref} trial {self.trial_id} ({self.iterations} iterations"
                 + (f", {self.threads} torch thread(s)" if self.threads else "") + ")",
                 f"  {self.metric}: recorded {_fmt(self.recorded)}   reproduced {_fmt(self.reproduced)}"
                 f"   |diff| {_fmt(self.abs_diff)}",
                 f"  every iteration identical: {'yes' if self.exact else 'no'}"]
        if not self.exact and self.recorded_history and self.reproduced_history:
            first = next((i for i, (a, b) in enumerate(zip(self.recorded_history, self.reproduced_history))
                          if not _same(a, b)), None)
            if first is not None:
                lines.append(f"  first difference at iteration {first + 1}: "
                             f"{_fmt(self.recorded_history[first])} vs {_fmt(self.reproduced_history[first])}")
        if self.environment_diff:
            lines.append(f"  environment differs from the record in {len(self.environment_diff)} field(s):")
            for key, a, b in self.environment_diff[:30]:
                lines.append(f"    {key}: {_fmt(a)} -> {_fmt(b)}")
            if len(self.environment_diff) > 30:
                lines.append(f"    ... {len(self.environment_diff) - 30} more")
        else:
            lines.append("  environment: identical to the record")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    s = repr(v)
    return s if len(s) <= 70 else s[:67] + "..."


def import_trainable(path: str) -> type:
    """``"pkg.module:Class"`` (or ``"pkg.module.Class"``) -> the class."""
    mod, sep, attr = path.partition(":")
    if not sep:
        mod, _, attr = path.rpartition(".")
    if not mod or not attr:
        raise ValueError(f"trainable {path!r} is not an import path like 'pkg.module:Class'")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _is_trainable_class(obj: Any) -> bool:
    try:
        from ray.tune import Trainable
    except ImportError:  # pragma: no cover - ray is a base dependency
        return isinstance(obj, type) and hasattr(obj, "train")
    return isinstance(obj, type) and issubclass(obj, Trainable)


def reproduce(record: Record | str, trial: str = "best", *, root: str | os.PathLike | None = None,
              iterations: int | None = None, scope: str = "last",
              threads: int | str | None = "auto") -> ReproduceResult:
    """Rerun ``trial`` ("best" or a trial id) of ``record`` and compare with the record.

    ``threads``: torch intra-op threads for the rerun; "auto" uses the CPUs the record says
    each trial reserved (what Ray gave its worker), None leaves the process setting."""
    rec = record if isinstance(record, Record) else load(record, root)
    metric = rec.metric
    if not metric:
        raise ValueError(f"{rec.ref}: the manifest names no metric")
    if trial == "best":
        top = rec.best(1, scope=scope)
        if top.empty:
            raise ValueError(f"{rec.ref}: no trial has a finite {metric!r} to call best")
        trial_id = str(top["trial_id"].iloc[0])
    else:
        trial_id = str(trial)
    config = rec.config(trial_id)
    row = rec.trials.loc[rec.trials["trial_id"] == trial_id].iloc[0]
    hist = rec.metrics.loc[rec.metrics["trial_id"] == trial_id].sort_values("training_iteration")
    recorded_hist = [float(v) for v in hist[metric]] if metric in hist else []
    n_iter = int(iterations or row.get("iterations") or len(recorded_hist) or 0)
    if n_iter < 1:
        raise ValueError(f"{rec.ref} trial {trial_id}: no recorded iterations to reproduce")
    warnings = list(rec.notes)
    if "seed" not in config:
        warnings.append("the recorded config has no 'seed': the rerun may not be deterministic")
    path = rec.manifest.get("trainable") or (rec.manifest.get("resolved_spec") or {}).get("trainable")
    if not path:
        raise ValueError(f"{rec.ref}: the manifest names no trainable")
    cls = import_trainable(path)
    if not _is_trainable_class(cls):
        raise TypeError(f"{path} is not a ray.tune.Trainable subclass; only class trainables "
                        "can be rerun outside Ray Tune")

    # Ray starts a trial's worker with as many intra-op threads as CPUs it reserved
    # (OMP_NUM_THREADS), and float reductions can depend on the thread count, so rerun
    # with the same count as the recorded trial had.
    threads = _trial_threads(rec) if threads == "auto" else threads
    torch = sys.modules.get("torch")  # already imported by a PyTorch trainable, if any
    old_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None and threads:
        torch.set_num_threads(int(threads))
    reproduced_hist: list[float] = []
    try:
        instance = cls(config=copy.deepcopy(config))
    except BaseException:
        if old_threads:
            torch.set_num_threads(old_threads)
        raise
    try:
        for _ in range(n_iter):
            result = instance.train()
            v = result.get(metric)
            reproduced_hist.append(float(v) if v is not None else float("nan"))
            if result.get("done"):
                break
    finally:
        if old_threads:
            torch.set_num_threads(old_threads)
        instance.stop()
        # Without a Tune storage context the Trainable makes a throwaway log folder.
        logdir = getattr(instance, "logdir", None)
        if logdir and os.path.basename(os.path.dirname(logdir.rstrip("/"))) == "ray_results":
            shutil.rmtree(logdir, ignore_errors=True)

    k = min(len(recorded_hist), len(reproduced_hist)) if recorded_hist else len(reproduced_hist)
    recorded = row.get("final_metric")
    recorded = float(recorded) if recorded is not None and not _isnan(recorded) else (
        recorded_hist[-1] if recorded_hist else None)
    reproduced = reproduced_hist[k - 1] if k else None
    if len(reproduced_hist) != n_iter:
        warnings.append(f"the rerun stopped after {len(reproduced_hist)} of {n_iter} iterations")
    return ReproduceResult(rec.ref, trial_id, metric, rec.mode, n_iter, config, recorded, reproduced,
                           recorded_hist, reproduced_hist,
                           # The rerun uses no Ray cluster, so the cluster section is not compared.
                           diff_environments(rec.environment, collect_environment(), ignore=("ray_cluster",))
                           if rec.environment
                           else [("environment", None, "not recorded")], warnings,
                           threads if torch is not None else None)


def _trial_threads(rec: Record) -> int | None:
    res = rec.manifest.get("resources_per_trial") or (rec.manifest.get("resolved_spec") or {}).get(
        "resources_per_trial") or {}
    cpu = res.get("cpu") if isinstance(res, dict) else None
    try:
        return max(1, int(float(cpu))) if cpu is not None else None
    except (TypeError, ValueError):
        return None


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
