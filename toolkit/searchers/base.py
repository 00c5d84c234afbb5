"""`SpaceSearcher`: the Ray Tune `Searcher` plumbing our searchers share.

Subclasses implement one method, `propose(pending)`, on our typed `SearchSpace`; this base
handles Ray's contract around it: late `set_search_properties` (which also tells the
sweep's `num_samples`), `points_to_evaluate`, `evaluated_rewards`, pending (in-flight)
trials, failed / NaN / inf results, `mode=max`, intermediate results per budget, duplicate
avoidance on finite spaces, and save/restore as versioned JSON.

Finite spaces: every trial the user asked for is proposed. Points are not repeated while
untried ones remain; once every point was tried the searcher proposes again (repeats
average out noise) unless `exhaustive=True`, which ends the sweep (`FINISHED`) instead.

Points given from outside (`points_to_evaluate`, `add_evaluated_point`, `warm_start`) are
snapped onto the space's grids; points outside the bounds or choices are refused (an error),
except in `warm_start`, which drops them and logs one line that counts them.

Internally every objective is a *loss*: the metric for `mode="min"`, its negation for "max".
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from ray.tune.search import Searcher

from toolkit.space.params import SpaceError
from toolkit.space.space import Flat, SearchSpace, definition_from_json, definition_to_json

log = logging.getLogger("tunekit.searchers")

# Random draws before listing the untried points of a nearly exhausted finite space.
_UNSEEN_TRIES = 50
# Finite spaces up to this many points may be listed in full (untried points, TPE scoring).
ENUMERATION_LIMIT = 20_000
STATE_FORMAT = "tunekit-searcher-state"
STATE_VERSION = 2


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


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # ships with scikit-learn, a base dependency

    return ThreadpoolController()


def single_thread_blas() -> Any:
    """A context with BLAS on one thread. Multi-threaded BLAS sums in a different order, and
    the last-bit differences grow into different proposals (a GP run on hartmann6 split from
    its single-threaded twin at evaluation 33 with 2 BLAS threads), so a searcher's
    proposals depend only on its seed and the results it was told. The matrices are small:
    more threads only add synchronisation on a busy machine."""
    return _blas_controller().limit(limits=1, user_api="blas")


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
        exhaustive: bool = False,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.budget_attr = budget_attr
        self.exhaustive = bool(exhaustive)
        self.num_samples: int | None = None  # the sweep's trial budget, when Tune tells it
        self.space: SearchSpace | None = as_space(space) if space is not None else None
        self._to_evaluate: list[Mapping] = list(points_to_evaluate or [])
        if self.space is not None:
            self._check_points_to_evaluate()
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

    def startup_size(self) -> int | None:
        """Suggestions from the start-up design before the model is used (None: no model)."""
        return None

    # ------------------------------------------------------------------ helpers for subclasses
    def to_loss(self, value: Any) -> float | None:
        v = finite_or_none(value)
        if v is None:
            return None
        return v if self._mode != "max" else -v

    def is_seen(self, flat: Flat) -> bool:
        return SearchSpace.signature(flat) in self._seen

    def random_unseen(self) -> Flat | None:
        """A random point not yet suggested; None if the (finite) space is exhausted.

        Random draws first; when they keep hitting tried points, the untried points of the
        space are listed and one is drawn uniformly, so a nearly exhausted space still
        yields every remaining point.
        """
        assert self.space is not None
        for _ in range(_UNSEEN_TRIES):
            flat = self.space.sample(self.rng)
            if not self.is_seen(flat):
                return flat
        if self.space.cardinality() > ENUMERATION_LIMIT:
            return None  # too large to list, and 50 draws all hit tried points: give up
        untried = [f for f in self.space.points() if not self.is_seen(f)]
        return untried[int(self.rng.integers(len(untried)))] if untried else None

    def random_point(self) -> Flat:
        """A random untried point, or any random point once none is left (a repeat)."""
        assert self.space is not None
        flat = self.random_unseen() if math.isfinite(self.space.cardinality()) else None
        return flat if flat is not None else self.space.sample(self.rng)

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
        if spec.get("num_samples") is not None and self.num_samples is None:
            self.num_samples = int(spec["num_samples"])
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self.space is None and config:
            self.space = as_space(config)
            self._check_points_to_evaluate()
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
            flat = self.space.from_config(self._to_evaluate.pop(0), fill=lambda p: p.dist.sample(self.rng), snap=True)
        else:
            if self.exhaustive and self.exhausted:
                return Searcher.FINISHED
            with single_thread_blas():
                flat = self.propose(list(self.live.values()))
            if flat is None:  # only a finite space tried in full can leave nothing to propose
                if self.exhaustive:
                    return Searcher.FINISHED
                flat = self.space.sample(self.rng)
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
        history = self._history.pop(trial_id, [])
        if result is None and not error:
            # A scheduler stopped this trial while it was paused or pending (Ray then passes
            # no result): not a failure. Its value is the last one it reported, if any.
            if history:
                self.observations.append(Observation(flat, history[-1][1], trial_id, history))
            return
        loss = None if error or not result else self.to_loss(result.get(self._metric))
        budget = finite_or_none((result or {}).get(self.budget_attr))
        if loss is not None and budget is not None and all(b != budget for b, _ in history):
            history.append((budget, loss))  # Ray skips on_trial_result for a result that stops the trial
        self.observations.append(Observation(flat, loss, trial_id, history))

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
        self._require_mode("add_evaluated_point")
        flat = self.space.from_config(parameters, snap=True)  # SpaceError outside the space
        loss = None if error else self.to_loss(value)
        history = [(float(i + 1), l) for i, v in enumerate(intermediate_values or []) if (l := self.to_loss(v)) is not None]
        self.observations.append(Observation(flat, loss, None, history))
        self._seen.add(SearchSpace.signature(flat))

    def warm_start(self, points: Iterable[tuple[Mapping, float | None]]) -> int:
        """Add (config, metric value) pairs, e.g. from a previous experiment record.

        Values are snapped onto the space's grids; configs that no longer fit the space
        (changed bounds or parameters) are dropped, with one log line counting them.
        Returns how many were added. The metric mode must be known (values are signed by it).
        """
        if self.space is None:
            raise RuntimeError("warm_start needs the search space to be set first")
        self._require_mode("warm_start")
        added, dropped, first_problem = 0, 0, ""
        for config, value in points:
            try:
                self.add_evaluated_point(dict(config), value, error=finite_or_none(value) is None)
            except SpaceError as e:
                dropped += 1
                first_problem = first_problem or str(e)
                continue
            added += 1
        if dropped:
            log.warning("warm start: dropped %d of %d points outside the search space (first: %s)",
                        dropped, added + dropped, first_problem)
        return added

    def evaluate_first(self, configs: Iterable[Mapping]) -> None:
        """Queue configurations to be suggested, in order, before anything else (e.g. the last
        good night's champions, re-evaluated to measure drift)."""
        self._to_evaluate[:0] = [dict(c) for c in configs]
        if self.space is not None:
            self._check_points_to_evaluate()

    def _require_mode(self, what: str) -> None:
        if self._mode is None:
            raise ValueError(
                f"{what}: the metric mode ('min' or 'max') must be set first: metric values are losses "
                "or scores depending on it"
            )

    def _check_points_to_evaluate(self) -> None:
        """Refuse points_to_evaluate outside the space now, not when their turn comes."""
        assert self.space is not None
        probe = np.random.default_rng(0)
        for i, config in enumerate(self._to_evaluate):
            try:
                self.space.from_config(config, fill=lambda p: p.dist.sample(probe), snap=True)
            except SpaceError as e:
                raise SpaceError(f"points_to_evaluate[{i}].{e.where}", e.problem) from None

    def _absorb_evaluated_rewards(self) -> None:
        points, rewards = self._to_evaluate, self._pending_rewards
        self._to_evaluate, self._pending_rewards = [], None
        for config, reward in zip(points, rewards):
            self.add_evaluated_point(dict(config), reward)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The searcher's whole state as JSON-compatible data (exact restore: same proposals)."""
        try:
            space = definition_to_json(self.space.definition) if self.space is not None else None
        except TypeError:
            space = None  # a fixed value JSON cannot hold: the restoring searcher must be given the space
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "searcher": type(self).__name__,
            "metric": self._metric,
            "mode": self._mode,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "space": space,
            "num_samples": self.num_samples,
            "to_evaluate": list(self._to_evaluate),
            "pending_rewards": None if self._pending_rewards is None else list(self._pending_rewards),
            "observations": [
                {"flat": o.flat, "loss": o.loss, "trial_id": o.trial_id, "history": [list(h) for h in o.history]}
                for o in self.observations
            ],
            "live": self.live,
            "history": {k: [list(h) for h in v] for k, v in self._history.items()},
            "extra": self.extra_state(),
        }

    def set_state(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"searcher state: format {state.get('format')!r} version {state.get('version')!r} is not "
                f"{STATE_FORMAT!r} version {STATE_VERSION}"
            )
        if state.get("searcher") not in (None, type(self).__name__):
            raise ValueError(f"searcher state: saved by {state['searcher']}, restored into {type(self).__name__}")
        self._metric, self._mode, self.seed = state["metric"], state["mode"], state["seed"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        if state["space"] is not None:
            self.space = SearchSpace(definition_from_json(state["space"]))
        elif self.space is None:
            raise ValueError("searcher state: the saved space could not be stored as JSON; pass `space=` when restoring")
        self.num_samples = state.get("num_samples")
        self._to_evaluate = list(state["to_evaluate"])
        self._pending_rewards = state["pending_rewards"]
        self.observations = [
            Observation(dict(o["flat"]), o["loss"], o["trial_id"], [tuple(h) for h in o["history"]])
            for o in state["observations"]
        ]
        self.live = {k: dict(v) for k, v in state["live"].items()}
        self._history = {k: [tuple(h) for h in v] for k, v in state["history"].items()}
        self._seen = {SearchSpace.signature(o.flat) for o in self.observations}
        self._seen.update(SearchSpace.signature(f) for f in self.live.values())
        self.set_extra_state(state.get("extra") or {})

    def extra_state(self) -> dict:
        """Subclass state beyond observations and RNG, JSON-compatible (override when there is any)."""
        return {}

    def set_extra_state(self, state: dict) -> None:
        pass

    # Ray calls these with a path in its experiment directory. JSON, never pickle: a state
    # file in a shared storage root must not be able to run code when it is read.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            raw = f.read()
        try:
            state = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"searcher state {checkpoint_path}: not a JSON state file (old pickled states are not read)") from None
        self.set_state(state)
