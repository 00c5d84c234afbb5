"""A replay simulator for multi-fidelity schedulers: Ray's scheduler API against N simulated workers.

Learning curves come from a table or a formula (`Task`); each scheduler (ours or Ray's) is
driven through its own Ray Tune API exactly as Ray's `TuneController` drives it:
`on_trial_add`, `on_trial_result` (not called for the result that hits max_t: Ray's stopper
ends the trial first), `on_trial_complete` / `on_trial_remove` through `stop_trial`,
`choose_trial_to_run` first and then the pending trials first-come-first-served, and the
searcher's `on_trial_result` only for results the scheduler did not STOP on. Time is
simulated: a trial's epoch costs `task.epoch_cost(config)` seconds, a paused trial frees its
worker, and a resumed trial is charged only the epochs it has not run yet (it restarts from
its checkpoint).

The simulated trials are plain objects with Ray's status strings; the schedulers, searchers
and Ray's own search-algorithm wrappers are the real ones.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR


class Task(Protocol):
    """A multi-fidelity problem: a search space and a learning curve per configuration."""

    name: str
    max_t: int
    metric: str  # minimised

    def param_space(self) -> dict: ...
    def value(self, config: dict, epoch: int) -> float: ...
    def epoch_cost(self, config: dict) -> float: ...
    def regret(self, config: dict) -> float: ...  # of the fully trained configuration


class SimTrial:
    """What Ray's schedulers read of a trial: id, status, config, last result."""

    _ids = itertools.count()

    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id = trial_id
        self.config = config
        self.evaluated_params = config
        self._counts: dict[str, int] | None = None  # the controller's trials per status, kept in step
        self._status = PENDING
        self.last_result: dict = {}
        self.epochs = 0  # epochs run so far (the checkpoint a resume starts from)
        self.resumes = 0
        self.busy_s = 0.0
        self.is_saving = False  # Ray's HyperBand asks; a simulated pause saves instantly

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, status: str) -> None:
        # Schedulers set statuses directly too; counting here lets the controller know how many
        # trials run or wait without scanning thousands of trials per event.
        if self._counts is not None:
            self._counts[self._status] -= 1
            self._counts[status] = self._counts.get(status, 0) + 1
        self._status = status

    def set_status(self, status: str) -> None:
        self.status = status

    def is_finished(self) -> bool:
        return self.status in (TERMINATED, ERROR)

    def __repr__(self) -> str:
        return f"SimTrial({self.trial_id}, {self.status}, epochs={self.epochs})"


class SimSearchAlg:
    """Ray's `SearchGenerator` contract for a `Searcher`: next trial, results, completion."""

    def __init__(self, searcher: Searcher, num_samples: int, max_concurrent: int | None = None) -> None:
        self.searcher = searcher
        self.num_samples = num_samples
        self.max_concurrent = max_concurrent
        self.created = 0
        self.live: set[str] = set()
        self._finished = False
        self.suggest_s = 0.0

    def next_trial(self) -> SimTrial | None:
        if self._finished or self.created >= self.num_samples:
            self._finished = True
            return None
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        tid = f"t{self.created:05d}"
        start = time.perf_counter()
        config = self.searcher.suggest(tid)
        self.suggest_s += time.perf_counter() - start
        if config == Searcher.FINISHED:
            self._finished = True
            return None
        if config is None:
            return None
        self.created += 1
        self.live.add(tid)
        return SimTrial(tid, config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.live.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self._finished or self.created >= self.num_samples


class _Executor:
    def has_resources_for_trial(self, trial: Any) -> bool:
        return True


@dataclass
class Run:
    """What one simulated sweep produced."""

    results: list[tuple[float, str, int, float]] = field(default_factory=list)  # (time, trial, epoch, value)
    finished: list[tuple[float, str]] = field(default_factory=list)  # (time, trial) reaching max_t
    end_time: float = 0.0
    busy_s: float = 0.0
    epochs: int = 0
    trials: int = 0
    resumes: int = 0
    stalled: bool = False
    scheduler_s: float = 0.0
    scheduler_calls: int = 0
    stops: dict[str, int] = field(default_factory=dict)  # trial -> epoch at which it ended
    configs: dict[str, dict] = field(default_factory=dict)


class SimController:
    """The part of Ray's `TuneController` schedulers and searchers see, over simulated time."""

    def __init__(self, task: Task, scheduler: TrialScheduler, search_alg: SimSearchAlg, n_workers: int,
                 time_budget: float, max_pending: int = 1,
                 order_noise: Callable[[SimTrial, int], float] | None = None,
                 reload_at: float | None = None, fresh_scheduler: Callable[[], TrialScheduler] | None = None) -> None:
        self.task = task
        # At simulated time `reload_at` the scheduler is replaced by `fresh_scheduler()` given
        # the old one's state through JSON, as a restored experiment would be.
        self.reload_at, self.fresh_scheduler = reload_at, fresh_scheduler
        self.scheduler = scheduler
        self.search_alg = search_alg
        self.n_workers = n_workers
        self.time_budget = time_budget
        self.max_pending = max_pending
        self.order_noise = order_noise  # extra time per epoch, to perturb completion order
        self.trial_executor = _Executor()
        self.trials: list[SimTrial] = []
        self.now = 0.0
        self._events: list[tuple[float, int, SimTrial]] = []
        self._seq = itertools.count()
        self._epoch_started: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # trials per status, for the trials added by `_add`
        self.run = Run()

    # ---------------------------------------------------------------- Ray's controller API
    def get_trials(self) -> list[SimTrial]:
        return self.trials

    def get_live_trials(self) -> set[SimTrial]:
        return {t for t in self.trials if not t.is_finished()}

    def _set_trial_status(self, trial: SimTrial, status: str) -> None:
        if trial.status == RUNNING and status != RUNNING:
            self._release(trial)
        trial.status = status

    def pause_trial(self, trial: SimTrial, should_checkpoint: bool = True) -> None:
        if trial.status == RUNNING:
            self._release(trial)
        trial.status = PAUSED

    def stop_trial(self, trial: SimTrial) -> None:
        if trial.status in (TERMINATED, ERROR):
            return
        if trial.status in (PENDING, PAUSED):
            self._timed(self.scheduler.on_trial_remove, self, trial)
            self.search_alg.on_trial_complete(trial.trial_id)
        else:
            self._release(trial)
            self._timed(self.scheduler.on_trial_complete, self, trial, trial.last_result)
            self.search_alg.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status = TERMINATED
        self.run.stops[trial.trial_id] = trial.epochs

    # ---------------------------------------------------------------- the loop
    def _timed(self, fn: Callable, *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.run.scheduler_s += time.perf_counter() - start
        self.run.scheduler_calls += 1
        return out

    def _release(self, trial: SimTrial) -> None:
        started = self._epoch_started.pop(trial.trial_id, None)
        if started is not None:  # an epoch in flight is lost (it was not checkpointed)
            trial.busy_s += self.now - started
            self.run.busy_s += self.now - started

    def _start(self, trial: SimTrial) -> None:
        if trial.status == PAUSED:
            trial.resumes += 1
            self.run.resumes += 1
        trial.status = RUNNING
        self._schedule_epoch(trial)

    def _schedule_epoch(self, trial: SimTrial) -> None:
        cost = self.task.epoch_cost(trial.config)
        if self.order_noise is not None:
            cost += self.order_noise(trial, trial.epochs + 1)
        self._epoch_started[trial.trial_id] = self.now
        heapq.heappush(self._events, (self.now + cost, next(self._seq), trial))

    def _add(self, trial: SimTrial) -> None:
        trial._counts = self._counts
        self._counts[trial.status] = self._counts.get(trial.status, 0) + 1
        self.trials.append(trial)

    def _count(self, status: str) -> int:
        if sum(self._counts.values()) == len(self.trials):
            return self._counts.get(status, 0)
        return sum(1 for t in self.trials if t.status == status)  # trials appended from outside

    def _running(self) -> int:
        return self._count(RUNNING)

    def _fill(self) -> None:
        while True:
            while self._count(PENDING) < self.max_pending:
                trial = self.search_alg.next_trial()
                if trial is None:
                    break
                self._add(trial)
                self.run.trials += 1
                self.run.configs[trial.trial_id] = trial.config
                self._timed(self.scheduler.on_trial_add, self, trial)
            if self._running() >= self.n_workers:
                return
            stops = len(self.run.stops)
            trial = self._timed(self.scheduler.choose_trial_to_run, self)
            if trial is None or trial.status not in (PENDING, PAUSED):
                trial = next((t for t in self.trials if t.status == PENDING), None) if self._count(PENDING) else None
            if trial is None:
                if len(self.run.stops) > stops:
                    continue  # the scheduler freed slots: the search may have new trials now
                return
            self._start(trial)

    def _on_epoch(self, trial: SimTrial) -> None:
        started = self._epoch_started.pop(trial.trial_id)
        trial.busy_s += self.now - started
        self.run.busy_s += self.now - started
        trial.epochs += 1
        self.run.epochs += 1
        value = self.task.value(trial.config, trial.epochs)
        result = {self.task.metric: value, "training_iteration": trial.epochs, "trial_id": trial.trial_id,
                  "time_total_s": trial.busy_s, "done": False}
        trial.last_result = result
        self.run.results.append((self.now, trial.trial_id, trial.epochs, value))
        if trial.epochs >= self.task.max_t:  # Ray's stopper: the scheduler does not see this result
            self.run.finished.append((self.now, trial.trial_id))
            decision = TrialScheduler.STOP
        else:
            decision = self._timed(self.scheduler.on_trial_result, self, trial, result)
        if decision != TrialScheduler.STOP:
            self.search_alg.on_trial_result(trial.trial_id, result)
        if decision == TrialScheduler.STOP:
            result["done"] = True
            self.stop_trial(trial)
        elif decision == TrialScheduler.PAUSE:
            trial.status = PAUSED
        elif trial.status == RUNNING:  # the scheduler may have paused or stopped it itself
            self._schedule_epoch(trial)

    def simulate(self) -> Run:
        self._fill()
        while self._events:
            when, _, trial = heapq.heappop(self._events)
            if trial.status != RUNNING or trial.trial_id not in self._epoch_started:
                continue  # paused or stopped while this epoch was in flight
            if when > self.time_budget:
                self.now = self.time_budget
                break
            self.now = when
            if self.reload_at is not None and when >= self.reload_at and self.fresh_scheduler is not None:
                self.reload_at = None
                fresh = self.fresh_scheduler()
                fresh.set_state(json.loads(json.dumps(self.scheduler.get_state())))
                self.scheduler = fresh
            self._on_epoch(trial)
            self._fill()
        else:
            live = [t for t in self.trials if not t.is_finished()]
            if live:
                self.run.stalled = True  # nothing runs, yet trials wait: a deadlock
        for trial in self.trials:  # close the books on epochs still in flight at the deadline
            started = self._epoch_started.pop(trial.trial_id, None)
            if started is not None:
                self.run.busy_s += self.now - started
        self.run.end_time = self.now
        return self.run


def simulate(task: Task, scheduler: TrialScheduler, searcher: Searcher, n_workers: int, time_budget: float,
             num_samples: int = 100_000, max_concurrent: int | None = None, max_pending: int = 1,
             order_noise: Callable[[SimTrial, int], float] | None = None, reload_at: float | None = None,
             fresh_scheduler: Callable[[], TrialScheduler] | None = None) -> Run:
    """One sweep of `searcher` + `scheduler` on `task` with `n_workers` simulated workers."""
    searcher.set_search_properties(task.metric, "min", task.param_space())
    scheduler.set_search_properties(task.metric, "min", num_samples=num_samples)  # as Tune passes it
    alg = SimSearchAlg(searcher, num_samples, max_concurrent)
    return SimController(task, scheduler, alg, n_workers, time_budget, max_pending, order_noise, reload_at,
                         fresh_scheduler).simulate()


def incumbent_regret(task: Task, run: Run, until: float = math.inf) -> float:
    """Regret of the best fully trained configuration by time `until` (inf if none yet)."""
    best_value, best_config = math.inf, None
    for t, tid, epoch, value in run.results:
        if t > until:
            break
        if epoch >= task.max_t and value < best_value:
            best_value, best_config = value, run.configs[tid]
    return task.regret(best_config) if best_config is not None else math.inf


def time_to_regret(task: Task, run: Run, target: float) -> float:
    """Simulated time at which the incumbent's regret first reaches `target` (inf if never)."""
    best_value = math.inf
    for t, tid, epoch, value in run.results:
        if epoch >= task.max_t and value < best_value:
            best_value = value
            if task.regret(run.configs[tid]) <= target:
                return t
    return math.inf


def utilisation(run: Run, n_workers: int) -> float:
    """Busy worker-seconds / (workers x simulated seconds)."""
    return run.busy_s / (n_workers * run.end_time) if run.end_time > 0 else 0.0
