"""Typed option sections of the spec's `searcher:`, one pydantic model per searcher type.

`SEARCHER_OPTIONS` maps a type name to its model; the spec's `searcher:` section is a
discriminated union over it, so a mistyped option is refused when the spec loads, before
anything starts. To add a searcher: one model here (every constructor option with its
default) and one class in `toolkit.searchers.SEARCHER_CLASSES`.

This module imports neither ray nor torch: the spec imports it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SearcherOptions(BaseModel):
    """Options every searcher section accepts."""

    # strict: YAML's `yes` or `1e9` is not silently a 1 or a float where an int belongs
    model_config = ConfigDict(extra="forbid", strict=True)
    type: str
    warm_start: list[str] = Field(default_factory=list)  # earlier records the searcher learns from first

    @field_validator("warm_start", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def constructor_kwargs(self) -> dict[str, Any]:
        """The searcher's own keyword options (everything but the section's bookkeeping)."""
        return self.model_dump(exclude={"type", "warm_start"})


class RandomOptions(SearcherOptions):
    type: Literal["random"] = "random"
    exhaustive: bool = False  # finite spaces: stop once every point was tried (else repeats)


class TPEOptions(SearcherOptions):
    """`toolkit.searchers.TPESearcher` (see its docstring for what each option does)."""

    type: Literal["tpe"] = "tpe"
    n_startup: int | None = Field(None, ge=0)  # None: 5-10 by dimensions, at most num_samples / 4
    startup: Literal["sobol", "random"] = "sobol"
    n_candidates: int = Field(64, ge=1)
    gamma: float | Literal["linear", "sqrt"] = 0.15
    multivariate: bool = True
    prior_weight: float = Field(1.0, gt=0)
    bandwidth: Literal["neighbour", "scott"] = "neighbour"
    categorical_smoothing: float | None = Field(0.4, gt=0, lt=1)
    liar: Literal["bad"] | None = "bad"
    liar_weight: float = Field(0.3, gt=0)
    failed_as_bad: bool = True
    fit_budget: float | Literal["largest"] | None = None
    budget_attr: str = "training_iteration"
    exhaustive: bool = False
    conditional_split: Literal["branch", "global"] = "branch"

    @field_validator("gamma")
    @classmethod
    def _fraction(cls, v: float | str) -> float | str:
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"a fractional gamma must be in (0, 1), got {v}")
        return v


class GPOptions(SearcherOptions):
    """`toolkit.searchers.GPSearcher` (see its docstring for what each option does)."""

    type: Literal["gp"] = "gp"
    n_startup: int | None = Field(None, ge=0)  # None: 5-10 by dimensions, at most num_samples / 4
    acquisition: Literal["logei", "ucb"] = "logei"
    ucb_beta: float = Field(4.0, gt=0)
    output_transform: Literal["power", "clip", "standardize"] = "power"
    failed: Literal["worst", "ignore"] = "worst"
    n_candidates: int = Field(1536, ge=3)
    n_starts: int = Field(8, ge=1)
    max_fit_points: int = Field(128, ge=2)
    max_points: int = Field(600, ge=2)
    min_distance: float = Field(1e-3, ge=0)
    stuck_patience: int = Field(3, ge=0)  # repeats in a row before a Thompson step; 0: never
    stuck_radius: float = Field(0.1, gt=0)  # in lengthscales: closer than this is a repeat
    budget_attr: str = "training_iteration"
    exhaustive: bool = False


SEARCHER_OPTIONS: dict[str, type[SearcherOptions]] = {
    "random": RandomOptions,
    "tpe": TPEOptions,
    "gp": GPOptions,
}
DEFAULT_SEARCHER = "random"
