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

    model_config = ConfigDict(extra="forbid")
    needs_max_iterations: ClassVar[bool] = False
    type: str

    def constructor_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"type"})


class FIFOOptions(SchedulerOptions):
    """Every trial runs to its stop condition."""

    type: Literal["fifo"] = "fifo"


class RayASHAOptions(SchedulerOptions):
    """Ray Tune's `ASHAScheduler` (asynchronous successive halving) on `training_iteration`."""

    needs_max_iterations: ClassVar[bool] = True
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    brackets: int = Field(1, ge=1)


SCHEDULER_OPTIONS: dict[str, type[SchedulerOptions]] = {
    "fifo": FIFOOptions,
    "asha": RayASHAOptions,
}
DEFAULT_SCHEDULER = "fifo"
