"""BOHB's multi-fidelity rule for TPE (Falkner et al., 2018), used with `fit_budget="largest"`.

Observations are kept per budget (the rung values a scheduler lets a trial report). Each
proposal fits l(x) and g(x) on the largest budget that has more than d good and more than d
bad points (d = number of parameters; good = the best max(d + 1, 15%) of that budget's
results); until such a budget exists, and for one proposal in three afterwards, the proposal
is random.

Which budgets count, when our ASHA or Hyperband drives the search (they call
`set_rung_budgets`): only their rung milestones below max_t. Two deviations from the paper,
which fits on any budget it evaluated, max_t included:
- Rungs only: a trial reports every epoch, so "every budget with a result" meant every epoch,
  and the largest one with enough results was often an epoch between rungs that only the few
  promoted trials still running had passed (about 10% of proposals at 32 workers fitted on
  epochs 10-26): a model of the promoted elite alone.
- Not max_t: the largest rung below it sees every bracket's survivors and has about eta times
  as many results, and the low budgets' bias was smaller than the cost of a model from few
  points. On `mf_bench` at 32 workers (tuning seeds 3-8) the median final regret went from
  0.0118 to 0.0003 (Branin, Hyperband), 0.0067 to 0.0009 (Branin, ASHA), 0.148 to 0.095
  (Hartmann6, Hyperband) and 0.183 to 0.151 (Hartmann6, ASHA). Ray's TuneBOHB fits the same
  way, if by accident: Ray never passes the result that ends a trial to the searcher's
  `on_trial_result`, so hpbandster never sees a max_t value.
Without a scheduler's rungs (a user's own loop), every budget counts, as in the paper. Candidates are drawn from l(x) with its bandwidths widened 3x and scored by
l(x) / g(x) at the fitted bandwidths. BOHB's minimum bandwidth of 1e-3 (of the unit range)
needs no code here: our neighbour bandwidths are never below 1% of a parameter's range.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Iterable

import numpy as np

from toolkit.space.space import Flat

if TYPE_CHECKING:
    from toolkit.searchers.tpe.parzen import ParzenEstimator
    from toolkit.searchers.tpe.searcher import TPESearcher

GOOD_FRACTION = 0.15
RANDOM_FRACTION = 1.0 / 3.0
BANDWIDTH_FACTOR = 3.0


def n_good(n: int, d: int) -> int:
    """BOHB's good-set size for n results in d dimensions."""
    return max(d + 1, int(math.floor(GOOD_FRACTION * n)))


def enough(n: int, d: int) -> bool:
    """More than d good and more than d bad points among n results."""
    return n - n_good(n, d) > d


def largest_fit_budget(counts: dict[float, int], d: int) -> float | None:
    """The largest budget whose result count supports a model, or None."""
    usable = [b for b, n in counts.items() if enough(n, d)]
    return max(usable) if usable else None


# Where a scheduler leaves its rung milestones on the searcher. Set from the scheduler side
# (`set_rung_budgets`), so TPESearcher needs no option for it; None: every budget counts.
_RUNG_BUDGETS = "bohb_rung_budgets"


def set_rung_budgets(searcher: object, milestones: Iterable[float]) -> None:
    """Tell a BOHB-mode searcher the budgets its scheduler decides at (rungs below max_t)."""
    setattr(searcher, _RUNG_BUDGETS, tuple(sorted({float(m) for m in milestones})))


def rung_budgets(searcher: object) -> tuple[float, ...] | None:
    """The rung budgets a scheduler set, or None (every budget counts)."""
    return getattr(searcher, _RUNG_BUDGETS, None) or None


def budget_counts(searcher: "TPESearcher") -> dict[float, int]:
    """How many trials (finished or running) reported a finite value at each budget that may
    be fitted on (the scheduler's rungs below max_t, when it said which; see the docstring)."""
    allowed = rung_budgets(searcher)
    counts: dict[float, int] = {}
    histories = [o.history for o in searcher.observations] + [searcher._history.get(t, []) for t in searcher.live]
    for history in histories:
        for b in {b for b, _ in history}:
            if allowed is None or b in allowed:
                counts[b] = counts.get(b, 0) + 1
    return counts


def widened(estimator: "ParzenEstimator", factor: float) -> "ParzenEstimator":
    """A copy of `estimator` to *sample* from, its observation kernels `factor` times wider
    (the prior kernel, the last row, stays as it is). Only `sample` may be called on it."""
    if factor == 1.0 or not estimator.num:
        return estimator
    out = copy.copy(estimator)
    sigma = estimator.sigma.copy()
    width = estimator.hi - estimator.lo
    sigma[:-1] = np.minimum(sigma[:-1] * factor, width)
    out.sigma = sigma
    return out


def propose_bohb(searcher: "TPESearcher", pending: list[Flat]) -> Flat:
    """One BOHB proposal from `searcher`'s per-budget observations."""
    assert searcher.space is not None
    d = len(searcher.space.params)
    budget = largest_fit_budget(budget_counts(searcher), d)
    if budget is None or searcher.rng.random() < RANDOM_FRACTION:
        return searcher.random_point()
    observations = searcher.observations_at_budget(budget)
    reported = {o.trial_id for o in observations}
    pending = [flat for tid, flat in searcher.live.items() if tid not in reported]
    flat, score_points = searcher._model_point(observations, pending, n_good=n_good(len(observations), d),
                                               sample_bandwidth_factor=BANDWIDTH_FACTOR)
    searcher.last_fit_budget = budget
    if math.isfinite(searcher.space.cardinality()) and searcher.is_seen(flat):
        return searcher._best_untried(score_points) or flat
    return flat
