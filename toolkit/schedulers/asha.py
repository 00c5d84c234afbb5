"""`ASHA`: asynchronous successive halving (Li et al., 2020) as a Ray Tune `TrialScheduler`.

Two variants:
- ``variant="stop"``: a trial reaching a rung is compared with the results already there and
  stopped unless it is in the top 1/eta (Ray's `ASHAScheduler` does this, but judges from
  whatever arrived first: here no cut is made before `min_evidence` results are in).
- ``variant="promote"``: a trial reaching a rung pauses there (its checkpoint is saved and its
  CPU/GPU freed); paused trials in the rung's top 1/eta are resumed from their checkpoints,
  promotions before new trials. This halves even with one worker, where the stop variant
  lets every early trial through.

``deterministic=True``: a trial waits (paused) at each rung until every earlier trial (in the
order trials were added) has reported there or ended, then continues if it is in the top
1/eta of those earlier results plus its own (or fewer than `min_evidence` are in), otherwise
stops. Every decision then depends on the trials' metrics only, not on completion order.

Missing / NaN / infinite metrics count as the worst value. The scheduler's state (rungs,
paused trials, trial order) is written next to Ray's experiment state after each change and
read back when Ray restores the experiment (Ray does not save schedulers itself).

It never deadlocks: when nothing runs and nothing is pending while trials are paused, the
search cannot supply new trials (finished, or blocked by a concurrency limit that counts
paused trials), so the evidence it waits for cannot come. It then promotes a paused trial in
its rung's top 1/eta without waiting for `min_evidence`; if there is none, it stops every
paused trial (finished search: none can win a promotion) or the weakest paused trial of the
lowest rung (blocked search: one slot for a new trial).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from toolkit.schedulers.rungs import Rung, SavedState, as_loss, milestones

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController



def searcher_of(tune_controller: Any) -> Any:
    """The innermost `Searcher` behind the controller's search algorithm, or None."""
    alg = getattr(tune_controller, "search_alg", None)
    inner = getattr(alg, "searcher", None)
    while getattr(inner, "searcher", None) is not None:  # ConcurrencyLimiter and friends
        inner = inner.searcher
    return inner


def make_searcher_budget_aware(tune_controller: Any, rung_milestones: Iterable[int] = ()) -> None:
    """A TPE-style searcher with a per-budget mode fits on the rungs' budgets (BOHB's rule)
    instead of mixing final values from trials stopped at different budgets; it is told the
    rung milestones below max_t, the only budgets it fits on (`toolkit.searchers.tpe.budgets`)."""
    inner = searcher_of(tune_controller)
    if inner is None or not hasattr(inner, "fit_budget"):
        return
    if getattr(inner, "fit_budget") is None:
        inner.fit_budget = "largest"
    if getattr(inner, "fit_budget") == "largest" and rung_milestones:
        from toolkit.searchers.tpe.budgets import set_rung_budgets

        set_rung_budgets(inner, rung_milestones)


class ASHA(SavedState, TrialScheduler):
    """Asynchronous successive halving; see the module docstring.

    Args:
        metric, mode: the objective (or from `tune.TuneConfig`).
        max_t: the budget at which a trial ends (stop.max_iterations).
        grace_period: the first rung (eta^0 * grace_period).
        reduction_factor: eta; the top 1/eta of a rung goes on.
        variant: "stop" or "promote".
        min_evidence: results a rung needs before it cuts anyone (default: eta).
        deterministic: decide in trial order (see the module docstring).
        time_attr: the result key that counts budget.
        persist: write the state next to Ray's experiment state (for `Tuner.restore`).
        budget_aware_searcher: switch a searcher with `fit_budget=None` to per-budget fitting.
    """

    def __init__(
        self,
        metric: str | None = None,
        mode: str | None = None,
        *,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3.0,
        variant: str = "stop",
        min_evidence: int | None = None,
        deterministic: bool = False,
        time_attr: str = "training_iteration",
        persist: bool = True,
        budget_aware_searcher: bool = True,
    ) -> None:
        super().__init__()
        if variant not in ("stop", "promote"):
            raise ValueError(f"variant must be 'stop' or 'promote', got {variant!r}")
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric, self._mode = metric, mode
        self.max_t = int(max_t)
        self.eta = float(reduction_factor)
        self.variant = variant
        self.min_evidence = int(math.ceil(self.eta)) if min_evidence is None else max(1, int(min_evidence))
        self.deterministic = bool(deterministic)
        self.time_attr = time_attr
        self.persist = persist
        self.budget_aware_searcher = budget_aware_searcher
        self.rungs = [Rung(m) for m in milestones(int(grace_period), self.eta, self.max_t)]
        self.order: dict[str, int] = {}  # trial id -> position in the order trials were added
        self.level: dict[str, int] = {}  # trial id -> index of the next rung it will reach
        self.paused: dict[str, int] = {}  # trial id -> rung it waits at
        self.ended: set[str] = set()
        self.to_resume: set[str] = set()  # decided to go on, not yet handed to Ray
        self.to_stop: set[str] = set()  # decided to stop while paused, not yet stopped
        self.decisions = 0
        self._state_path: str | None = None
        self._loaded = False
        self._searcher_checked = False

    # ------------------------------------------------------------------ Ray contract
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if self._metric and metric and metric != self._metric:
            return False
        if self._mode and mode and mode != self._mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def on_trial_add(self, tune_controller: "TuneController", trial: Trial) -> None:
        self._maybe_load(trial)
        if not self._searcher_checked and self.budget_aware_searcher:
            self._searcher_checked = True
            make_searcher_budget_aware(tune_controller, [r.milestone for r in self.rungs])
        tid = trial.trial_id
        if tid not in self.order:
            self.order[tid] = len(self.order)
            self.level[tid] = 0
        elif tid in self.paused and trial.status == Trial.PENDING:
            # Ray re-queues a restored paused trial as PENDING; it still waits at its rung.
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: "TuneController", trial: Trial, result: dict) -> str:
        tid = trial.trial_id
        if tid not in self.order:
            self.on_trial_add(tune_controller, trial)
        if tid in self.paused:
            return TrialScheduler.PAUSE  # restored while paused and started anyway: wait again
        t = result.get(self.time_attr)
        if t is None:
            return TrialScheduler.CONTINUE
        if t >= self.max_t:
            self._end(tid)
            return self._stop(tune_controller, trial, result)
        k = self.level[tid]
        if k >= len(self.rungs) or t < self.rungs[k].milestone:
            return TrialScheduler.CONTINUE
        self.decisions += 1
        rung = self.rungs[k]
        rung.record(tid, as_loss(result.get(self._metric), self._mode))
        self.level[tid] = k + 1
        if self.deterministic:
            decision = self._wait_or_decide(tid, k)
            self._settle(tune_controller)
        elif self.variant == "stop":
            decision = self._cut(tid, k)
        elif tid in rung.top(self.eta) and len(rung.losses) >= self.min_evidence:
            rung.promoted.add(tid)
            decision = TrialScheduler.CONTINUE
        else:
            self.paused[tid] = k
            decision = TrialScheduler.PAUSE
        self._save()
        if decision == TrialScheduler.STOP:
            return self._stop(tune_controller, trial, result)
        return decision

    def on_trial_complete(self, tune_controller: "TuneController", trial: Trial, result: dict) -> None:
        self._end(trial.trial_id)
        self._settle(tune_controller)
        self._save()

    def on_trial_error(self, tune_controller: "TuneController", trial: Trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def on_trial_remove(self, tune_controller: "TuneController", trial: Trial) -> None:
        self.on_trial_complete(tune_controller, trial, {})

    def choose_trial_to_run(self, tune_controller: "TuneController") -> Trial | None:
        trials = tune_controller.get_trials()
        by_id = {t.trial_id: t for t in trials} if (self.paused or self.to_stop) else {}
        for tid in sorted(self.to_stop, key=self.order.__getitem__):
            trial = by_id.get(tid)
            self.to_stop.discard(tid)
            if trial is not None and trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)
        promotion = self._next_promotion(by_id)
        if promotion is not None:
            return promotion
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if self.paused and not self.deterministic and not any(t.status == Trial.RUNNING for t in trials):
            return self._unblock(tune_controller, by_id)
        return None

    def debug_string(self) -> str:
        parts = [f"{r.milestone}: {len(r.losses)} in, {len(r.promoted)} on" for r in self.rungs]
        return f"ASHA ({self.variant}{', deterministic' if self.deterministic else ''}): " + "; ".join(parts) + \
            f"; {len(self.paused)} paused"

    # ------------------------------------------------------------------ decisions
    def _cut(self, tid: str, k: int) -> str:
        """Stop variant: go on unless enough results are in and this one is not in the top 1/eta."""
        rung = self.rungs[k]
        if len(rung.losses) < self.min_evidence or tid in rung.top(self.eta):
            rung.promoted.add(tid)
            return TrialScheduler.CONTINUE
        self._end(tid)
        return TrialScheduler.STOP

    def _resolved_before(self, tid: str, k: int) -> bool:
        """Has every trial added before `tid` reported at rung k or ended?"""
        rung, mine = self.rungs[k], self.order[tid]
        return all(j in rung.losses or j in self.ended for j, i in self.order.items() if i < mine)

    def _prefix_decision(self, tid: str, k: int) -> bool:
        """Deterministic rule: top 1/eta among the results of trials added up to `tid`."""
        rung, mine = self.rungs[k], self.order[tid]
        among = [j for j in rung.losses if self.order[j] <= mine]
        if len(among) < self.min_evidence:
            return True
        return tid in rung.top(self.eta, among)

    def _wait_or_decide(self, tid: str, k: int) -> str:
        if not self._resolved_before(tid, k):
            self.paused[tid] = k
            return TrialScheduler.PAUSE
        if self._prefix_decision(tid, k):
            self.rungs[k].promoted.add(tid)
            return TrialScheduler.CONTINUE
        self._end(tid)
        return TrialScheduler.STOP

    def _settle(self, tune_controller: Any) -> None:
        """Deterministic mode: decide waiting trials whose predecessors are all resolved,
        in trial order (a decision can resolve the next one)."""
        if not self.deterministic:
            return
        progress = True
        while progress:
            progress = False
            for tid in sorted(self.paused, key=self.order.__getitem__):
                if tid in self.to_resume:
                    continue
                k = self.paused[tid]
                if not self._resolved_before(tid, k):
                    continue
                progress = True
                if self._prefix_decision(tid, k):
                    self.rungs[k].promoted.add(tid)
                    self.to_resume.add(tid)
                else:
                    del self.paused[tid]
                    self._end(tid)
                    self.to_stop.add(tid)
                break

    def _next_promotion(self, by_id: dict[str, Trial]) -> Trial | None:
        """A paused trial to resume now (promotions go before new trials), or None."""
        if self.deterministic:
            for tid in sorted(self.to_resume, key=self.order.__getitem__):
                trial = by_id.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:
                    return self._resume(tid, trial)
            return None
        for k in range(len(self.rungs) - 1, -1, -1):
            rung = self.rungs[k]
            if len(rung.losses) < self.min_evidence:
                continue
            for tid in rung.top(self.eta):
                if self.paused.get(tid) == k and tid not in rung.promoted:
                    trial = by_id.get(tid)
                    if trial is not None and trial.status == Trial.PAUSED:
                        rung.promoted.add(tid)
                        return self._resume(tid, trial)
        return None

    def _resume(self, tid: str, trial: Trial) -> Trial:
        self.paused.pop(tid, None)
        self.to_resume.discard(tid)
        self.decisions += 1
        self._save()
        return trial

    def _unblock(self, tune_controller: Any, by_id: dict[str, Trial]) -> Trial | None:
        """Nothing runs or waits to start while trials are paused; see the module docstring."""
        paused = [(k, tid) for tid, k in self.paused.items()
                  if tid not in self.to_resume and getattr(by_id.get(tid), "status", None) == Trial.PAUSED]
        if not paused:
            return None
        # A paused trial in its rung's top 1/eta waits only for evidence that cannot come now.
        for k in range(len(self.rungs) - 1, -1, -1):
            rung = self.rungs[k]
            for tid in rung.top(self.eta):
                if (k, tid) in paused and tid not in rung.promoted:
                    rung.promoted.add(tid)
                    return self._resume(tid, by_id[tid])
        alg = getattr(tune_controller, "search_alg", None)
        if alg is None or alg.is_finished():
            doomed = [tid for _, tid in paused]  # none of them can win a promotion any more
        else:  # blocked: free one slot, taken from the weakest trial of the lowest rung
            low = min(k for k, _ in paused)
            doomed = self.rungs[low].ranked([tid for k, tid in paused if k == low])[-1:]
        for tid in doomed:
            del self.paused[tid]
            self._end(tid)
            self.decisions += 1
            tune_controller.stop_trial(by_id[tid])
        self._save()
        return None

    def _end(self, tid: str) -> None:
        self.ended.add(tid)
        self.paused.pop(tid, None)
        self.to_resume.discard(tid)

    def _stop(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        # Ray skips the searcher's on_trial_result when the scheduler says STOP, so a model
        # would never see the rung value a trial was cut at: hand it over here.
        alg = getattr(tune_controller, "search_alg", None)
        if alg is not None and hasattr(alg, "on_trial_result"):
            alg.on_trial_result(trial.trial_id, result)
        return TrialScheduler.STOP

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """The whole decision state as JSON-compatible data (restores exactly)."""
        return {
            "format": "tunekit-asha-state", "version": 1,
            "metric": self._metric, "mode": self._mode,
            "rungs": [{"milestone": r.milestone, "losses": dict(r.losses), "promoted": sorted(r.promoted)}
                      for r in self.rungs],
            "order": dict(self.order), "level": dict(self.level), "paused": dict(self.paused),
            "ended": sorted(self.ended), "to_resume": sorted(self.to_resume), "to_stop": sorted(self.to_stop),
            "decisions": self.decisions,
        }

    def set_state(self, state: dict) -> None:
        if state.get("format") != "tunekit-asha-state":
            raise ValueError("scheduler state: not a tunekit ASHA state")
        self._metric, self._mode = state["metric"], state["mode"]
        self.rungs = [Rung(r["milestone"], dict(r["losses"]), set(r["promoted"])) for r in state["rungs"]]
        self.order, self.level, self.paused = dict(state["order"]), dict(state["level"]), dict(state["paused"])
        self.ended, self.to_resume, self.to_stop = set(state["ended"]), set(state["to_resume"]), set(state["to_stop"])
        self.decisions = state["decisions"]

    def is_fresh(self) -> bool:
        return not self.order
