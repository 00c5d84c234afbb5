"""Wrap a trainable so a missing or non-finite objective fails *that trial*, loudly.

Without this, Ray Tune silently keeps a trial that never reports the metric (the searcher
then sees nothing) and NaN losses poison model-based searchers. Raising inside the trial
marks it ERROR with a message naming the problem; the rest of the sweep goes on.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Trainable


class MetricNotReported(RuntimeError):
    pass


class NonFiniteMetric(RuntimeError):
    pass


def check_result(result: dict[str, Any], metric: str, trainable_name: str) -> None:
    if metric not in result:
        reported = sorted(k for k in result if not k.startswith(("config", "time_", "timestamp")))
        raise MetricNotReported(
            f"trainable {trainable_name} did not report the metric {metric!r} "
            f"(it reported: {', '.join(reported) or 'nothing'}); fix `metric` in the spec or the trainable"
        )
    value = result[metric]
    try:
        finite = math.isfinite(float(value))
    except (TypeError, ValueError):
        raise NonFiniteMetric(f"metric {metric!r} is not a number: {value!r}") from None
    if not finite:
        raise NonFiniteMetric(
            f"metric {metric!r} is {value} at iteration {result.get('training_iteration', '?')} "
            "(diverged); the trial is failed so the searcher does not learn from it"
        )


def guard_trainable(cls: type, metric: str) -> type:
    """A subclass of the Trainable `cls` whose every result is checked for `metric`."""
    if not (isinstance(cls, type) and issubclass(cls, Trainable)):
        raise TypeError(f"{cls!r} is not a ray.tune.Trainable subclass")

    def step(self):  # noqa: ANN001 - Trainable.step signature
        result = cls.step(self)
        check_result(result, metric, cls.__name__)
        # Tune's progress table shows the first few metrics of a result: put the tuned one first.
        return {metric: result[metric], **result}

    # Keep the user's class name: Ray names trials after it.
    return type(cls.__name__, (cls,), {"step": step, "__module__": __name__, "__qualname__": cls.__name__})
