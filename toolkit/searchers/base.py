"""`SpaceSearcher`: the Ray Tune `Searcher` plumbing our searchers share.

Subclasses implement one method, `propose(pending)`, on our typed `SearchSpace`; this base
handles Ray's contract around it: late `set_search_properties`, `points_to_evaluate`,
`evaluated_rewards`, pending (in-flight) trials, failed / NaN / inf results, `mode=max`,
intermediate results per budget, duplicate avoidance on finite spaces, and save/restore.

Internally every objective is a *loss*: the metric for `mode="min"`, its negation for "max".
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from ray.tune.search import Searcher

from toolkit.space.space import Flat, SearchSpace

# Enough random draws to find an unseen point unless the space is nearly exhausted.
_UNSEEN_TRIES = 200


@dataclass
class Observation:
    """One finished trial as the model sees it; `loss` is None for failed / NaN / inf trials."""

    flat: Flat
    loss: float | None
    trial_id: str | None = None
    # (budget, loss) pairs from on_trial_result, for budget-aware models (BOHB).
    history: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.loss is not None


def as_space(space: Any) -> SearchSpace:
    """Accept our `SearchSpace`, a Ray Tune param_space dict, or a hyperopt space."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        from toolkit.space.hyperopt import is_hyperopt_space

        if is_hyperopt_space(space):  # a dict of hp expressions
            from toolkit.space.hyperopt import from_hyperopt

            return from_hyperopt(space)
        from toolkit.space.ray import from_ray

        return from_ray(space)
    try:
        from toolkit.space.hyperopt import from_hyperopt
    except ImportError:  # pragma: no cover - hyperopt is a base dependency
        from_hyperopt = None
    if from_hyperopt is not None:
        return from_hyperopt(space)
    raise TypeError(f"unsupported search space type {type(space).__name__}")


def finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class SpaceSearcher(Searcher):
    """Base for searchers that model a `SearchSpace`; see the module docstring."""

    def __init__(
        self,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[Mapping] | None = None,
        evaluated_rewards: Sequence[float] | None = None,
        seed: int | None = None,
        budget_attr: str = "training_iteration",
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.budget_attr = budget_attr
        self.space: SearchSpace | None = as_space(space) if space is not None else None
        self._to_evaluate: list[Mapping] = list(points_to_evaluate or [])
        self.observations: list[Observation] = []
        self.live: dict[str, Flat] = {}
        self._history: dict[str, list[tuple[float, float]]] = {}
        self._seen: set[tuple] = set()
        self._pending_rewards = evaluated_rewards
        if evaluated_rewards is not None:
            if len(evaluated_rewards) != len(self._to_evaluate):
                raise ValueError(
                    f"evaluated_rewards has {len(evaluated_rewards)} values but points_to_evaluate "
                    f"has {len(self._to_evaluate)} points"
                )
            if self.space is not None and self._metric is not None and self._mode is not None:
                self._absorb_evaluated_rewards()

    # ------------------------------------------------------------------ subclass hook
    def propose(self, pending: list[Flat]) -> Flat | None:
        """Next flat point given finished `self.observations` and in-flight `pending` points.

        Return None when the space is exhausted.
        """
        raise NotImplementedError  # abstract: implemented by each searcher

    # ------------------------------------------------------------------ helpers for subclasses
    def to_loss(self, value: Any) -> float | None:
        v = finite_or_none(value)
        if v is None:
            return None
        return v if self._mode != "max" else -v

    def is_seen(self, flat: Flat) -> bool:
        return SearchSpace.signature(flat) in self._seen

    def random_unseen(self) -> Flat | None:
        """A random point not yet suggested; None if the (finite) space is exhausted."""
        assert self.space is not None
        for _ in range(_UNSEEN_TRIES):
            flat = self.space.sample(self.rng)
            if not self.is_seen(flat):
                return flat
        return None

    @property
    def exhausted(self) -> bool:
        return self.space is not None and len(self._seen) >= self.space.cardinality()

    def observations_at_budget(self, budget: float) -> list[Observation]:
        """Trials that reported at `budget` (finished or not), with their loss at that budget."""
        out = []
        for obs in self.observations:
            for b, loss in obs.history:
                if b == budget:
                    out.append(Observation(obs.flat, loss, obs.trial_id))
                    break
        for trial_id, flat in self.live.items():
            for b, loss in self._history.get(trial_id, []):
                if b == budget:
                    out.append(Observation(flat, loss, trial_id))
                    break
        return out

    # ------------------------------------------------------------------ Ray contract
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        from toolkit.space.ray import has_domains

        if self.space is not None and config and has_domains(config):
            return False  # two spaces given: Ray then reports the conflict to the user
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self.space is None and config:
            self.space = as_space(config)
        if self._pending_rewards is not None and self.space is not None and self._metric and self._mode:
            self._absorb_evaluated_rewards()
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.space is None:
            raise RuntimeError(
                f"{type(self).__name__} has no search space: pass `space=` or a `param_space` to tune.Tuner"
            )
        if self._metric is None or self._mode is None:
            raise RuntimeError(f"{type(self).__name__} needs `metric` and `mode` (here or in tune.TuneConfig)")
        flat: Flat | None
        if self._to_evaluate:
            flat = self.space.from_config(self._to_evaluate.pop(0), fill=lambda p: p.dist.sample(self.rng))
        else:
            if self.exhausted:
                return Searcher.FINISHED
            flat = self.propose(list(self.live.values()))
            if flat is None:
                return Searcher.FINISHED
        flat = self.space.canonical(flat)
        self.live[trial_id] = flat
        self._seen.add(SearchSpace.signature(flat))
        return self.space.to_config(flat)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.live or self._metric not in result:
            return
        loss = self.to_loss(result[self._metric])
        budget = finite_or_none(result.get(self.budget_attr))
        if loss is not None and budget is not None:
            self._history.setdefault(trial_id, []).append((budget, loss))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        flat = self.live.pop(trial_id, None)
        if flat is None:
            return
        loss = None if error or not result else self.to_loss(result.get(self._metric))
        self.observations.append(Observation(flat, loss, trial_id, self._history.pop(trial_id, [])))

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        if self.space is None:
            raise RuntimeError("add_evaluated_point needs the search space to be set first")
        flat = self.space.from_config(parameters)
        loss = None if error else self.to_loss(value)
        history = [(float(i + 1), l) for i, v in enumerate(intermediate_values or []) if (l := self.to_loss(v)) is not None]
        self.observations.append(Observation(flat, loss, None, history))
        self._seen.add(SearchSpace.signature(flat))

    def warm_start(self, points: Iterable[tuple[Mapping, float | None]]) -> int:
        """Add (config, metric value) pairs, e.g. from a previous experiment record.

        Configs that no longer fit the space (changed bounds or parameters) are skipped.
        Returns how many were added.
        """
        from toolkit.space.params import SpaceError

        added = 0
        for config, value in points:
            try:
                self.add_evaluated_point(dict(config), value, error=finite_or_none(value) is None)
            except SpaceError:
                continue
            added += 1
        return added

    def _absorb_evaluated_rewards(self) -> None:
        points, rewards = self._to_evaluate, self._pending_rewards
        self._to_evaluate, self._pending_rewards = [], None
        for config, reward in zip(points, rewards):
            self.add_evaluated_point(dict(config), reward)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        return {
            "version": 1,
            "metric": self._metric,
            "mode": self._mode,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "space": self.space,
            "to_evaluate": self._to_evaluate,
            "pending_rewards": self._pending_rewards,
            "observations": self.observations,
            "live": self.live,
            "history": self._history,
            "seen": self._seen,
            "extra": self.extra_state(),
        }

    def set_state(self, state: dict) -> None:
        self._metric, self._mode, self.seed = state["metric"], state["mode"], state["seed"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.space = state["space"]
        self._to_evaluate = state["to_evaluate"]
        self._pending_rewards = state["pending_rewards"]
        self.observations = state["observations"]
        self.live = state["live"]
        self._history = state["history"]
        self._seen = state["seen"]
        self.set_extra_state(state.get("extra") or {})

    def extra_state(self) -> dict:
        """Subclass state beyond observations and RNG (override when there is any)."""
        return {}

    def set_extra_state(self, state: dict) -> None:
        pass

    # Ray's own searchers pickle their state to the checkpoint file the same way; this file
    # lives in Ray's experiment directory, never in a tunekit record.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
