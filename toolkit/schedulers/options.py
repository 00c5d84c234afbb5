"""Typed option sections of the spec's `scheduler:`, one pydantic model per scheduler type.

`SCHEDULER_OPTIONS` maps a type name to its model; the spec's `scheduler:` section is a
discriminated union over it. To add a scheduler: one model here and one builder in
`toolkit.schedulers.SCHEDULER_BUILDERS`. A model whose scheduler needs a horizon sets
`needs_max_iterations = True`: the spec then requires `stop.max_iterations` (its max_t).

This module imports neither ray nor torch: the spec imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class SchedulerOptions(BaseModel):
    """Options every scheduler section accepts."""

    # strict: YAML's `yes` or `1e9` is not silently a 1 or a float where an int belongs
    model_config = ConfigDict(extra="forbid", strict=True)
    needs_max_iterations: ClassVar[bool] = False
    type: str

    def constructor_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"type"})

    def pairing_problem(self, searcher: Any) -> str | None:
        """Why this scheduler makes no sense with the spec's `searcher` section, or None."""
        return None


class FIFOOptions(SchedulerOptions):
    """Every trial runs to its stop condition."""

    type: Literal["fifo"] = "fifo"


class ASHAOptions(SchedulerOptions):
    """tunekit's ASHA (`toolkit.schedulers.asha`): `mode: stop` cuts trials at rungs, `mode:
    promote` pauses them there and resumes the best from their checkpoints (halving even on
    one GPU). A rung cuts nobody before `min_evidence` results (default: reduction_factor).
    `deterministic: true` decides in trial order: the same spec gives the same sweep whatever
    the completion order (trials wait, paused, for earlier trials at each rung)."""

    needs_max_iterations: ClassVar[bool] = True
    type: Literal["asha"] = "asha"
    mode: Literal["stop", "promote"] = "stop"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    min_evidence: int | None = Field(None, ge=1)
    deterministic: bool = False

    def pairing_problem(self, searcher: Any) -> str | None:
        if self.deterministic and getattr(searcher, "type", "random") != "random":
            return (f"scheduler.deterministic: needs searcher random; {searcher.type} proposes from the results "
                    "that arrived so far, so its trials depend on completion order")
        return None


class HyperbandOptions(SchedulerOptions):
    """tunekit's synchronous Hyperband (`toolkit.schedulers.hyperband`; Li et al., 2018):
    brackets of successive halving from `grace_period` to stop.max_iterations, paused trials
    instead of waiting ones, never stalled by a search that cannot fill a bracket."""

    needs_max_iterations: ClassVar[bool] = True
    type: Literal["hyperband"] = "hyperband"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


class BOHBOptions(HyperbandOptions):
    """BOHB (Falkner et al., 2018): Hyperband with our TPE fitted per budget (the largest
    budget with more than d good and bad results, 15% good, a third random, 3x wider
    sampling kernels). `asynchronous: true` runs the brackets as promotion ASHA instead
    (asynchronous BOHB, for many workers)."""

    type: Literal["bohb"] = "bohb"  # type: ignore[assignment]
    asynchronous: bool = False

    def pairing_problem(self, searcher: Any) -> str | None:
        kind = getattr(searcher, "type", None)
        if kind != "tpe":
            return (f"scheduler.type: bohb needs searcher tpe (BOHB is TPE fitted per budget), got {kind}; "
                    "use scheduler type hyperband for Hyperband with another searcher")
        fit_budget = getattr(searcher, "fit_budget", None)
        if fit_budget not in (None, "largest"):
            return f"searcher.fit_budget: bohb fits on the largest budget with enough results; remove fit_budget={fit_budget}"
        return None


class RayASHAOptions(SchedulerOptions):
    """Ray Tune's `ASHAScheduler` (asynchronous successive halving, stop only) on `training_iteration`."""

    needs_max_iterations: ClassVar[bool] = True
    type: Literal["ray_asha"] = "ray_asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    brackets: int = Field(1, ge=1)


SCHEDULER_OPTIONS: dict[str, type[SchedulerOptions]] = {
    "fifo": FIFOOptions,
    "asha": ASHAOptions,
    "hyperband": HyperbandOptions,
    "bohb": BOHBOptions,
    "ray_asha": RayASHAOptions,
}
DEFAULT_SCHEDULER = "fifo"
