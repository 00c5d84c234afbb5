"""Trial schedulers: FIFO and ASHA now (Ray's own; no reason to rewrite them), BOHB later."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler


def build_scheduler(kind: str, max_t: int | None, grace_period: int = 1, reduction_factor: float = 3.0,
                    brackets: int = 1, time_attr: str = "training_iteration") -> TrialScheduler:
    """The scheduler a spec names; metric/mode come from `tune.TuneConfig`."""
    if kind == "fifo":
        return FIFOScheduler()
    if kind == "asha":
        if max_t is None:
            raise ValueError("ASHA needs max_t (stop.max_iterations)")
        return ASHAScheduler(time_attr=time_attr, max_t=max_t, grace_period=min(grace_period, max_t),
                             reduction_factor=reduction_factor, brackets=brackets)
    raise ValueError(f"unknown scheduler {kind!r}")


def describe_scheduler(kind: str, **settings: Any) -> dict[str, Any]:
    return {"type": kind, **settings}
