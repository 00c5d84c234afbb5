"""`Hyperband`: synchronous Hyperband brackets (Li et al., 2018) that never stall.

Brackets s = s_max, ..., 0 (s_max = floor(log_eta(max_t / grace_period))), then again: bracket s
takes n = ceil((s_max + 1) / (s + 1) * eta^s) trials, runs them to max_t * eta^-s, keeps the
best 1/eta, and so on up to max_t (successive halving). A trial waiting for the rest of its
rung is paused (checkpoint saved, CPU/GPU freed); when the rung is complete, the best are
resumed (before any new trial) and the others stopped. While a bracket waits, new trials
join the next bracket, so workers stay busy.

It never stalls: when nothing runs and nothing is pending while trials are paused, the
search cannot supply the rest of the open bracket (finished, or blocked by a concurrency
limit that counts paused trials), so that bracket is closed with the trials it has and its
rung decided now. Ray's `HyperBandScheduler` waits instead ("There are paused trials, but no
more pending trials", ray#6780). And once the sweep's last trial has joined (Tune passes
`num_samples` to `set_search_properties`), the open bracket is closed at once, so its rung is
decided as soon as its own trials report, not after every other trial has ended (that idle
tail cost a 32-worker replay a quarter of its makespan).

With our `TPESearcher` (switched to its per-budget mode, see `asha.make_searcher_budget_aware`)
this is BOHB (Falkner et al., 2018). Missing / NaN / infinite metrics count as the worst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from toolkit.schedulers.asha import make_searcher_budget_aware
from toolkit.schedulers.rungs import SavedState, as_loss, n_to_promote

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController



def bracket_plan(grace_period: int, reduction_factor: float, max_t: int) -> list[tuple[int, list[int]]]:
    """(trials, rung milestones ending at max_t) per bracket, most aggressive first."""
    eta = reduction_factor
    s_max = int(math.floor(math.log(max_t / grace_period) / math.log(eta) + 1e-9))
    plan = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta**s - 1e-9))
        rungs = [max(1, int(round(max_t * eta ** (i - s)))) for i in range(s + 1)]
        plan.append((n, rungs))
    return plan


@dataclass
class Bracket:
    size: int  # trials it takes
    rungs: list[int]  # milestones; the last is max_t
    members: list[str] = field(default_factory=list)
    stage: int = 0  # the rung its surviving trials are heading for
    results: list[dict[str, float]] = field(default_factory=list)  # per rung: trial -> loss
    alive: list[str] = field(default_factory=list)  # trials still in the race at `stage`
    closed: bool = False  # takes no more trials

    def accepting(self) -> bool:
        return not self.closed and self.stage == 0 and len(self.members) < self.size


class Hyperband(SavedState, TrialScheduler):
    """Synchronous Hyperband that pauses instead of waiting; see the module docstring.

    Args:
        metric, mode: the objective (or from `tune.TuneConfig`).
        max_t: the largest budget (stop.max_iterations).
        grace_period: the smallest budget.
        reduction_factor: eta.
        time_attr: the result key that counts budget.
        persist: keep the state next to Ray's experiment state (for `Tuner.restore`).
        budget_aware_searcher: switch a searcher with `fit_budget=None` to per-budget fitting.
    """

    def __init__(self, metric: str | None = None, mode: str | None = None, *, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3.0, time_attr: str = "training_iteration", persist: bool = True,
                 budget_aware_searcher: bool = True) -> None:
        super().__init__()
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if grace_period < 1 or grace_period > max_t or reduction_factor <= 1:
            raise ValueError("need 1 <= grace_period <= max_t and reduction_factor > 1")
        self._metric, self._mode = metric, mode
        self.max_t, self.eta, self.time_attr = int(max_t), float(reduction_factor), time_attr
        self.plan = bracket_plan(int(grace_period), self.eta, self.max_t)
        self.persist, self.budget_aware_searcher = persist, budget_aware_searcher
        self.brackets: list[Bracket] = []
        self.bracket_of: dict[str, int] = {}
        self.paused: set[str] = set()
        self.ended: set[str] = set()
        self.to_resume: list[str] = []
        self.to_stop: list[str] = []
        self.decisions = 0
        self.num_samples: int | None = None  # trials in the whole sweep, when Tune says
        self._state_path: str | None = None
        self._loaded = False
        self._searcher_checked = False

    # ------------------------------------------------------------------ Ray contract
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric and metric != self._metric) or (self._mode and mode and mode != self._mode):
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        n = spec.get("num_samples")
        self.num_samples = n if isinstance(n, int) and n > 0 else None
        return True

    def on_trial_add(self, tune_controller: "TuneController", trial: Trial) -> None:
        self._maybe_load(trial)
        if not self._searcher_checked and self.budget_aware_searcher:
            self._searcher_checked = True
            # Every bracket's rungs below max_t (max_t ends a trial; see tpe/budgets.py).
            make_searcher_budget_aware(tune_controller, {m for _, rungs in self.plan for m in rungs if m < self.max_t})
        tid = trial.trial_id
        if tid in self.bracket_of:
            if tid in self.paused and trial.status == Trial.PENDING:
                trial.set_status(Trial.PAUSED)  # restored by Ray as PENDING; it still waits
            return
        bracket = next((b for b in self.brackets if b.accepting()), None)
        if bracket is None:
            size, rungs = self.plan[len(self.brackets) % len(self.plan)]
            bracket = Bracket(size, rungs, results=[{} for _ in rungs])
            self.brackets.append(bracket)
        bracket.members.append(tid)
        bracket.alive.append(tid)
        self.bracket_of[tid] = next(i for i, x in enumerate(self.brackets) if x is bracket)
        if self.num_samples is not None and len(self.bracket_of) >= self.num_samples:
            bracket.closed = True  # the sweep's last trial: no one else will fill this bracket
            self._advance(bracket)
        self._save()

    def on_trial_result(self, tune_controller: "TuneController", trial: Trial, result: dict) -> str:
        tid = trial.trial_id
        if tid not in self.bracket_of:
            self.on_trial_add(tune_controller, trial)
        if tid in self.paused:
            return TrialScheduler.PAUSE
        t = result.get(self.time_attr)
        if t is None:
            return TrialScheduler.CONTINUE
        if t >= self.max_t:
            self._end(tid)
            return self._stop(tune_controller, trial, result)
        b = self.brackets[self.bracket_of[tid]]
        if t < b.rungs[b.stage] or tid in b.results[b.stage]:
            return TrialScheduler.CONTINUE
        self.decisions += 1
        b.results[b.stage][tid] = as_loss(result.get(self._metric), self._mode)
        self.paused.add(tid)
        self._advance(b)
        self._save()
        if tid in self.to_resume:  # promoted right away: keep running, no pause
            self.to_resume.remove(tid)
            self.paused.discard(tid)
            return TrialScheduler.CONTINUE
        if tid in self.to_stop:
            self.to_stop.remove(tid)
            self.paused.discard(tid)
            return self._stop(tune_controller, trial, result)
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: "TuneController", trial: Trial, result: dict) -> None:
        tid = trial.trial_id
        self._end(tid)
        if tid in self.bracket_of:
            self._advance(self.brackets[self.bracket_of[tid]])
        self._save()

    def on_trial_error(self, tune_controller: "TuneController", trial: Trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def on_trial_remove(self, tune_controller: "TuneController", trial: Trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def choose_trial_to_run(self, tune_controller: "TuneController") -> Trial | None:
        trials = tune_controller.get_trials()
        by_id = {t.trial_id: t for t in trials}
        self._stop_decided(tune_controller, by_id)
        for tid in list(self.to_resume):
            trial = by_id.get(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                self.to_resume.remove(tid)
                self.paused.discard(tid)
                self._save()
                return trial
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if self.paused and not any(t.status == Trial.RUNNING for t in trials):
            # Idle with paused trials: the search cannot fill the open bracket; close it.
            for b in self.brackets:
                if not b.closed:
                    b.closed = True
                    self._advance(b)
                    if self.to_resume or self.to_stop:
                        break
            self._save()
            self._stop_decided(tune_controller, by_id)
            for tid in list(self.to_resume):
                trial = by_id.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    self.to_resume.remove(tid)
                    self.paused.discard(tid)
                    return trial
        return None

    def debug_string(self) -> str:
        return "Hyperband: " + "; ".join(
            f"[{len(b.members)}/{b.size} at rung {b.rungs[b.stage]}, {len(b.alive)} alive]" for b in self.brackets[-4:])

    # ------------------------------------------------------------------ successive halving
    def _advance(self, b: Bracket) -> None:
        """Decide the bracket's current rung if every trial still in the race reported there."""
        while b.stage < len(b.rungs) - 1:
            if not (b.closed or b.stage > 0 or len(b.members) >= b.size):
                return  # the first rung still takes trials
            here = b.results[b.stage]
            waiting = [t for t in b.alive if t not in here and t not in self.ended]
            if waiting:
                return
            reported = sorted((t for t in b.alive if t in here), key=lambda t: here[t])
            keep = reported[: n_to_promote(len(reported), self.eta)] if reported else []
            for tid in reported:
                if tid in keep:
                    self.to_resume.append(tid)
                else:
                    self._end(tid)
                    self.to_stop.append(tid)
                self.decisions += 1
            b.alive = keep
            b.stage += 1
            b.closed = True
            if not keep:
                return

    def _stop_decided(self, tune_controller: Any, by_id: dict[str, Trial]) -> None:
        while self.to_stop:
            tid = self.to_stop.pop(0)
            trial = by_id.get(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)

    def _end(self, tid: str) -> None:
        self.ended.add(tid)
        self.paused.discard(tid)
        if tid in self.to_resume:
            self.to_resume.remove(tid)

    def _stop(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        alg = getattr(tune_controller, "search_alg", None)  # Ray skips the searcher on STOP
        if alg is not None and hasattr(alg, "on_trial_result"):
            alg.on_trial_result(trial.trial_id, result)
        return TrialScheduler.STOP

    # ------------------------------------------------------------------ state (JSON: never executable)
    def get_state(self) -> dict:
        return {
            "format": "tunekit-hyperband-state", "version": 1, "metric": self._metric, "mode": self._mode,
            "brackets": [{"size": b.size, "rungs": b.rungs, "members": b.members, "stage": b.stage,
                          "results": b.results, "alive": b.alive, "closed": b.closed} for b in self.brackets],
            "bracket_of": self.bracket_of, "paused": sorted(self.paused), "ended": sorted(self.ended),
            "to_resume": self.to_resume, "to_stop": self.to_stop, "decisions": self.decisions,
        }

    def set_state(self, state: dict) -> None:
        if state.get("format") != "tunekit-hyperband-state":
            raise ValueError("scheduler state: not a tunekit Hyperband state")
        self._metric, self._mode = state["metric"], state["mode"]
        self.brackets = [Bracket(**b) for b in state["brackets"]]
        self.bracket_of = dict(state["bracket_of"])
        self.paused, self.ended = set(state["paused"]), set(state["ended"])
        self.to_resume, self.to_stop = list(state["to_resume"]), list(state["to_stop"])
        self.decisions = state["decisions"]

    def is_fresh(self) -> bool:
        return not self.bracket_of
