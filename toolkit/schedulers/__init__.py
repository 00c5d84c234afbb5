"""Trial schedulers and their registry.

`SCHEDULER_BUILDERS` maps a type name to a function building that scheduler from its typed
options (`toolkit.schedulers.options.SCHEDULER_OPTIONS[type]`); `build_scheduler` is the one
factory the runner uses. Ray loads on first use, so that the spec can import
`toolkit.schedulers.options` without importing Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from toolkit.schedulers.options import (SCHEDULER_OPTIONS, ASHAOptions, BOHBOptions, FIFOOptions, HyperbandOptions,
                                        RayASHAOptions, SchedulerOptions)

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

__all__ = ["SCHEDULER_BUILDERS", "SCHEDULER_OPTIONS", "build_scheduler"]
# Our schedulers themselves: `from toolkit.schedulers.asha import ASHA`,
# `from toolkit.schedulers.hyperband import Hyperband` (Ray Tune TrialSchedulers).


def _fifo(options: FIFOOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _ray_asha(options: RayASHAOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    from ray.tune.schedulers import ASHAScheduler

    if max_t is None:
        raise ValueError("ASHA needs max_t (stop.max_iterations)")
    return ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                         grace_period=min(options.grace_period, max_t), reduction_factor=options.reduction_factor,
                         brackets=options.brackets)


def _asha(options: ASHAOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    from toolkit.schedulers.asha import ASHA

    if max_t is None:
        raise ValueError("ASHA needs max_t (stop.max_iterations)")
    return ASHA(metric, mode, max_t=max_t, grace_period=min(options.grace_period, max_t),
                reduction_factor=options.reduction_factor, variant=options.mode, min_evidence=options.min_evidence,
                deterministic=options.deterministic)


def _hyperband(options: HyperbandOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    from toolkit.schedulers.hyperband import Hyperband

    if max_t is None:
        raise ValueError("Hyperband needs max_t (stop.max_iterations)")
    return Hyperband(metric, mode, max_t=max_t, grace_period=min(options.grace_period, max_t),
                     reduction_factor=options.reduction_factor)


def _bohb(options: BOHBOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    # The scheduler switches the TPE searcher to its per-budget mode when the trials arrive.
    if options.asynchronous:
        from toolkit.schedulers.asha import ASHA

        if max_t is None:
            raise ValueError("BOHB needs max_t (stop.max_iterations)")
        return ASHA(metric, mode, max_t=max_t, grace_period=min(options.grace_period, max_t),
                    reduction_factor=options.reduction_factor, variant="promote")
    return _hyperband(options, metric, mode, max_t)


# One entry per scheduler type: (options, metric, mode, max_t) -> TrialScheduler.
SCHEDULER_BUILDERS: dict[str, Callable[..., TrialScheduler]] = {
    "fifo": _fifo,
    "asha": _asha,
    "hyperband": _hyperband,
    "bohb": _bohb,
    "ray_asha": _ray_asha,
}


def build_scheduler(options: SchedulerOptions, metric: str, mode: str, max_t: int | None) -> TrialScheduler:
    """The scheduler a spec's `scheduler:` section describes, set for `metric` / `mode`.

    The runner therefore passes no metric/mode to `tune.TuneConfig` (Ray refuses both).
    """
    return SCHEDULER_BUILDERS[options.type](options, metric, mode, max_t)
