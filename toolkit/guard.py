"""Wrap a trainable so a missing or non-finite objective fails *that trial*, loudly.

Without this, Ray Tune silently keeps a trial that never reports the metric (the searcher
then sees nothing) and NaN losses poison model-based searchers. Raising inside the trial
marks it ERROR with a message naming the problem; the rest of the sweep goes on.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from ray.tune import Trainable
from ray.tune.result import RESULT_DUPLICATE


class MetricNotReported(RuntimeError):
    pass


class NonFiniteMetric(RuntimeError):
    pass


def check_result(result: dict[str, Any], metric: str, trainable_name: str) -> None:
    if metric not in result:
        reported = sorted(k for k in result if not k.startswith(("config", "time_", "timestamp"))
                          and k not in (RESULT_DUPLICATE, "should_checkpoint"))
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


def is_function_trainable(obj: Any) -> bool:
    """A plain Ray Tune function trainable: a Python function callable as `fn(config)`."""
    if not (inspect.isfunction(obj) or isinstance(obj, functools.partial)):
        return False
    try:
        inspect.signature(obj).bind({})
    except TypeError:
        return False
    return True


def trainable_problem(obj: Any) -> str | None:
    """Why `obj` cannot be a trainable, or None: a `ray.tune.Trainable` subclass or a function of `config`."""
    if isinstance(obj, type):
        return None if issubclass(obj, Trainable) else (
            f"{obj.__module__}.{obj.__qualname__} is a class but not a ray.tune.Trainable subclass")
    if is_function_trainable(obj):
        return None
    if inspect.isfunction(obj):
        return f"function {obj.__qualname__}{inspect.signature(obj)} cannot be called with one config argument"
    what = "a built-in function" if inspect.isbuiltin(obj) else type(obj).__name__
    return f"{what} is neither a ray.tune.Trainable subclass nor a function taking a config"


def guard_trainable(trainable: Any, metric: str, max_iterations: int | None = None) -> type:
    """A Trainable class whose every result is checked for `metric`.

    `trainable` is a `ray.tune.Trainable` subclass or a function trainable (`fn(config)`
    reporting with `ray.tune.report`); the latter is wrapped into Ray's own function-trainable
    class first, so Tune treats it exactly as it would the bare function.

    With `max_iterations`, the result of that iteration says `done`: the trial ends itself
    there, so Tune's result buffer (several steps per round trip) never runs it past the limit.
    A reused actor (`reset_config`) starts each trial afresh.
    """
    problem = trainable_problem(trainable)
    if problem is not None:
        raise TypeError(problem)
    if isinstance(trainable, type):
        cls, name = trainable, trainable.__name__
    else:
        from ray.tune.trainable.function_trainable import wrap_function

        name = getattr(trainable, "__name__", "trainable")
        cls = wrap_function(trainable)

    def step(self):  # noqa: ANN001 - Trainable.step signature
        result = cls.step(self)
        if RESULT_DUPLICATE in result and getattr(self, "_tunekit_reported", False):
            # A function trainable returned: Tune repeats its last result, already checked.
            return result
        check_result(result, metric, name)
        self._tunekit_reported = True
        if max_iterations is not None and self.iteration + 1 >= max_iterations:
            result["done"] = True
        # Tune's progress table shows the first few metrics of a result: put the tuned one first.
        return {metric: result[metric], **result}

    # Keep the user's name: Ray names trials after it.
    attrs = {"step": step, "__module__": __name__, "__qualname__": name}
    if cls.reset_config is not Trainable.reset_config:  # only where Tune can reuse the actor at all
        def reset_config(self, new_config: dict) -> bool:  # noqa: ANN001 - Trainable.reset_config signature
            self._tunekit_reported = False  # a new trial: it has not reported yet
            return cls.reset_config(self, new_config)

        attrs["reset_config"] = reset_config
    return type(name, (cls,), attrs)
