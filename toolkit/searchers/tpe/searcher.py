"""`TPESearcher`: Tree-structured Parzen Estimator search on tunekit's typed space.

The algorithm (Bergstra et al., 2011), with what hyperopt, Optuna and BOHB learned since:
- start-up: the first `n_startup` suggestions come from the scrambled Sobol design both our
  searchers share (`toolkit.searchers.startup`), its length chosen from the number of
  parameters and the sweep's budget unless set;
- split: the best gamma(n) finished trials are "good": 15% (BOHB's fraction) capped at 25
  (Optuna's cap, so l(x) stays sharp in long runs); Optuna's 10% and hyperopt's 0.25 sqrt(n)
  are options. hyperopt's rule is greedier early and lost on our benchmark. Failed trials and trials still running
  count as "bad": a region that crashes should not attract more trials, and a running trial's
  neighbourhood should not get the next suggestion either (Optuna's "constant liar", here
  with a running trial weighing 0.3 of a finished one, which lost less at 8 in flight);
- estimators: truncated Gaussian kernels in the internal (log) scale with a prior component,
  hyperopt's neighbour-distance bandwidth with Optuna's magic clip, bin masses for discrete
  values (Optuna), categorical kernels with a fixed smoothing (an Aitchison-Aitken kernel,
  as in BOHB's statsmodels KDE, rather than Optuna's fading one) except for a categorical
  that selects conditional branches, whose smoothing fades (Optuna's rule); hyperopt's
  linear forgetting of old observations;
- groups: parameters that are active together (same conditional parent) are modelled jointly
  (multivariate, as in BOHB and Optuna >= 4), each group only from the trials where it was
  active, so a conditional parameter is never modelled from trials that did not use it; a
  branch's good and bad trials are split among the trials that took the branch (unlike the
  paper, hyperopt and Optuna, which split once over all trials and leave a branch without
  globally good trials to its prior; see `conditional_split`);
  `multivariate=False` gives one group per parameter (hyperopt, Optuna's classic TPE);
- proposal: `n_candidates` draws from l(x), the one with the largest l(x) / g(x) wins. On a
  finite space, when that point was tried already, every untried point is scored by l/g and
  the best one is proposed; once every point was tried, the model's favourite is proposed
  again (a repeat, which averages noise), unless `exhaustive`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from toolkit.searchers.base import ENUMERATION_LIMIT, SpaceSearcher
from toolkit.searchers.startup import SobolDesign, default_startup_size
from toolkit.searchers.tpe.budgets import propose_bohb, widened
from toolkit.searchers.tpe.parzen import Dim, ParzenEstimator
from toolkit.searchers.tpe.split import recency_weights, resolve_gamma, split
from toolkit.space.space import Flat, SearchSpace


class TPESearcher(SpaceSearcher):
    """TPE over a `SearchSpace`, a Ray Tune param_space or a hyperopt space.

    Algorithm options (all keyword-only):
        n_startup: suggestions from the start-up design before the model is used (None:
            `default_startup_size`, 5-10 by the number of parameters and at most a quarter
            of the sweep's num_samples).
        startup: "sobol" (scrambled Sobol design) or "random".
        n_candidates: random candidates the acquisition (here l(x) / g(x)) scores per
            proposal, drawn from l(x) (64; hyperopt and Optuna use 24, 64 was better on our
            benchmark and costs little since scoring is vectorised).
        gamma: the fraction of finished trials that is "good", capped at 25 (0.15, BOHB's
            fraction with Optuna's cap; it beat Optuna's 10% on our benchmark), "linear"
            (Optuna: 10%, cap 25), "sqrt" (hyperopt: 0.25 sqrt(n), cap 25) or n -> n_good.
        multivariate: joint kernels per group of co-active parameters (True) or one
            estimator per parameter (False).
        prior_weight: weight of the prior component relative to one observation (1.0).
        bandwidth: "neighbour" (hyperopt / Optuna) or "scott" (shared per dimension).
        categorical_smoothing: the probability beta a categorical kernel spreads over the
            options its observation did not take (0.4), or None for Optuna's smoothing,
            which fades with the number of kernels. A fixed beta keeps re-trying other
            options: with Optuna's rule the joint kernels of the good trials locked onto an
            early category on our mixed problem (chosen on tuning seeds, see the benchmark).
        liar: how in-flight trials enter the model: "bad" (count as bad observations, a
            constant liar with the worst value) or None (ignored).
        liar_weight: the weight of one in-flight trial in g(x) relative to a finished one
            (0.3; Optuna's lies weigh 1). Lighter lies lost less at 8 in flight on our
            benchmark's tuning seeds and still keep pending suggestions apart.
        failed_as_bad: count failed / NaN / inf trials as bad observations (True).
        fit_budget: fit on the results reported at this budget (e.g. training_iteration)
            instead of final results; "largest": BOHB's rule (`toolkit.searchers.tpe.budgets`),
            which our multi-fidelity schedulers switch on when fit_budget is None.
        budget_attr: the result key that names the budget ("training_iteration").
        exhaustive: on a finite space, end the sweep once every point was tried (False:
            propose repeats until num_samples is reached).
        conditional_split: "branch" (a conditional branch's parameters are modelled from
            the best and the other trials among those that took the branch) or "global"
            (from the globally best trials that took it, as in the paper, hyperopt and
            Optuna; a branch without globally good trials is then sampled from its prior).
    """

    def __init__(
        self,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: list[dict] | None = None,
        evaluated_rewards: list[float] | None = None,
        seed: int | None = None,
        *,
        n_startup: int | None = None,
        startup: str = "sobol",
        n_candidates: int = 64,
        gamma: str | float | Callable[[int], int] = 0.15,
        multivariate: bool = True,
        prior_weight: float = 1.0,
        bandwidth: str = "neighbour",
        categorical_smoothing: float | None = 0.4,
        liar: str | None = "bad",
        liar_weight: float = 0.3,
        failed_as_bad: bool = True,
        fit_budget: float | str | None = None,
        budget_attr: str = "training_iteration",
        exhaustive: bool = False,
        conditional_split: str = "branch",
    ) -> None:
        if startup not in ("sobol", "random"):
            raise ValueError(f"startup must be 'sobol' or 'random', got {startup!r}")
        if bandwidth not in ("neighbour", "scott"):
            raise ValueError(f"bandwidth must be 'neighbour' or 'scott', got {bandwidth!r}")
        if conditional_split not in ("branch", "global"):
            raise ValueError(f"conditional_split must be 'branch' or 'global', got {conditional_split!r}")
        if liar not in ("bad", None):
            raise ValueError(f"liar must be 'bad' or None, got {liar!r}")
        if n_candidates < 1 or (n_startup is not None and n_startup < 0) or prior_weight <= 0 or liar_weight <= 0:
            raise ValueError("need n_candidates >= 1, n_startup >= 0, prior_weight > 0 and liar_weight > 0")
        super().__init__(space, metric, mode, points_to_evaluate, evaluated_rewards, seed, budget_attr, exhaustive)
        self.n_startup = None if n_startup is None else int(n_startup)
        self.startup = startup
        self.n_candidates = int(n_candidates)
        self.gamma = resolve_gamma(gamma)
        self.multivariate = bool(multivariate)
        self.prior_weight = float(prior_weight)
        self.bandwidth = bandwidth
        if categorical_smoothing is not None and not 0 < categorical_smoothing < 1:
            raise ValueError(f"categorical_smoothing must be in (0, 1), got {categorical_smoothing}")
        self.categorical_smoothing = categorical_smoothing
        self.liar = liar
        self.liar_weight = float(liar_weight)
        self.failed_as_bad = bool(failed_as_bad)
        self.fit_budget = fit_budget
        self.conditional_split = conditional_split
        self._design = SobolDesign(int(self.rng.integers(2**31 - 1)))
        self._layout: tuple[SearchSpace, list[Dim], list[list[int]]] | None = None
        self._rows = np.empty((0, 0))  # internal-value rows of self.observations (a cache)
        self._losses = np.empty(0)
        self._rows_for: list[Any] = []

    # ------------------------------------------------------------------ state
    def startup_size(self) -> int | None:
        if self.n_startup is not None:
            return self.n_startup
        if self.space is None:
            return None
        return default_startup_size(len(self.space.params), self.num_samples)

    def extra_state(self) -> dict:
        return {"design": self._design.state()}

    def set_extra_state(self, state: dict) -> None:
        self._design = SobolDesign.from_state(state["design"])
        self._layout = None
        self._rows, self._losses, self._rows_for = np.empty((0, 0)), np.empty(0), []

    # ------------------------------------------------------------------ layout
    def _get_layout(self) -> tuple[list[Dim], list[list[int]]]:
        assert self.space is not None
        if self._layout is None or self._layout[0] is not self.space:
            parents = {p.parent[0] for p in self.space.params if p.parent is not None}
            dims = [dataclasses.replace(Dim.of(p.dist), selects_branches=p.key in parents) for p in self.space.params]
            groups: list[list[int]] = []
            if self.multivariate:
                by_parent: dict[Any, list[int]] = {}
                for i, p in enumerate(self.space.params):
                    by_parent.setdefault(p.parent, []).append(i)
                groups = list(by_parent.values())  # first-appearance order: parents first
            else:
                groups = [[i] for i in range(len(self.space.params))]
            self._layout = (self.space, dims, groups)
            self._rows, self._losses, self._rows_for = np.empty((0, 0)), np.empty(0), []
        return self._layout[1], self._layout[2]

    def _row(self, flat: Flat) -> np.ndarray:
        """Internal values in params order; NaN where the parameter is inactive."""
        assert self.space is not None
        row = np.full(len(self.space.params), np.nan)
        for i, p in enumerate(self.space.params):
            if p.key in flat:
                v = flat[p.key]
                row[i] = v if p.is_categorical else p.dist.to_internal(v)
        return row

    def _dataset(self, observations: list) -> tuple[np.ndarray, np.ndarray]:
        """(rows, losses) for `observations`, NaN loss for failed trials.

        Those of `self.observations` are cached, since that list only grows.
        """
        assert self.space is not None
        width = len(self.space.params)

        def losses_of(obs: list) -> np.ndarray:
            return np.array([o.loss if o.loss is not None else np.nan for o in obs], dtype=float)

        if observations is not self.observations:
            rows = np.array([self._row(o.flat) for o in observations]).reshape(len(observations), width)
            return rows, losses_of(observations)
        n = len(self._rows_for)
        if n > len(observations) or (n and self._rows_for[-1] is not observations[n - 1].flat):
            self._rows, self._losses, self._rows_for, n = np.empty((0, width)), np.empty(0), [], 0
        if n < len(observations):
            fresh = observations[n:]
            new = np.array([self._row(o.flat) for o in fresh]).reshape(len(fresh), width)
            self._rows = np.vstack([self._rows, new]) if n else new
            self._losses = np.concatenate([self._losses, losses_of(fresh)]) if n else losses_of(fresh)
            self._rows_for.extend(o.flat for o in fresh)
        return self._rows, self._losses

    # ------------------------------------------------------------------ proposing
    def propose(self, pending: list[Flat]) -> Flat | None:
        assert self.space is not None
        self._get_layout()  # (re)builds the per-space caches if the space changed
        finite = math.isfinite(self.space.cardinality())
        if self.fit_budget == "largest":  # BOHB: fit on the largest budget with enough results
            return propose_bohb(self, pending)
        if self.fit_budget is None:
            observations = self.observations
        else:
            observations = self.observations_at_budget(self.fit_budget)
            reported = {o.trial_id for o in observations}
            pending = [flat for tid, flat in self.live.items() if tid not in reported]
        n_ok = len(observations) and int(np.isfinite(self._dataset(observations)[1]).sum())
        n_startup = self.startup_size() or 0
        if len(observations) + len(pending) < n_startup or n_ok == 0:
            flat = None
            if self.startup == "sobol" and len(self.space.params) and self._design.issued < n_startup:
                flat = self._design.next_point(self.space)
            if flat is None or self.is_seen(flat):
                flat = self.random_point()
            return flat
        flat, score_points = self._model_point(observations, pending)
        if finite and self.is_seen(flat):
            # The model's favourite was tried already: the best untried point by l/g, or the
            # favourite again (a repeat) once nothing is untried.
            return self._best_untried(score_points) or flat
        return flat

    def _best_untried(self, score_points: Callable[[list[Flat]], np.ndarray]) -> Flat | None:
        assert self.space is not None
        if self.space.cardinality() > ENUMERATION_LIMIT:
            return self.random_unseen()
        untried = [f for f in self.space.points() if not self.is_seen(f)]
        if not untried:
            return None
        return untried[int(np.argmax(score_points(untried)))]

    def _model_point(self, observations: list, pending: list[Flat], n_good: int | None = None,
                     sample_bandwidth_factor: float = 1.0) -> tuple[Flat, Callable[[list[Flat]], np.ndarray]]:
        assert self.space is not None
        dims, groups = self._get_layout()
        X, losses = self._dataset(observations)
        ok = np.isfinite(losses)
        n_lies = len(pending) if self.liar == "bad" else 0
        pending_rows = np.array([self._row(f) for f in pending]).reshape(len(pending), len(dims))

        def good_and_bad(rows: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
            """Good and bad rows of X among `rows` (a mask): the best `n` (None: gamma) finite
            results are good, the other finite ones bad, failed trials bad too (failed_as_bad),
            and in-flight trials are the newest "bad" observations (Optuna's constant liar),
            each weighing `liar_weight` of a real one (see _fit_group)."""
            idx = np.flatnonzero(ok & rows)
            g_local, b_local = split(losses[idx], n if n is not None else max(1, self.gamma(len(idx))))
            bad_parts = [idx[b_local]]
            if self.failed_as_bad:
                bad_parts.append(np.flatnonzero(~ok & rows))
            X_bad = X[np.sort(np.concatenate(bad_parts))]
            if n_lies:
                X_bad = np.vstack([X_bad, pending_rows])
            return X[idx[g_local]], X_bad

        X_good, X_bad = good_and_bad(np.ones(len(X), dtype=bool), n_good)

        def branch_split(group: list[int]) -> tuple[np.ndarray, np.ndarray]:
            """Good and bad rows among the trials that took this group's branch.

            A deviation from the paper (and hyperopt / Optuna), which split all trials once:
            while another branch holds every globally good trial, this branch's l(x) is only
            the prior, so the trials that do pick the branch land at random inside it and
            never refine its best region; a branch whose optimum is narrow then never
            overtakes a broad one (our `conditional` problem: 30 of 40 tuning-seed runs stayed
            on the broad branch's floor). Split among the branch's own trials, the branch is
            searched as well as its share of trials allows (with the fading branch selector
            of the estimator, 16 of 40 stay; results/tuning.md, "TPE estimator").
            """
            return good_and_bad(~np.isnan(X[:, group[0]]), None)

        fitted: dict[int, tuple[ParzenEstimator, ParzenEstimator]] = {}

        def estimators(gi: int) -> tuple[ParzenEstimator, ParzenEstimator]:
            if gi not in fitted:
                group = groups[gi]
                if self.conditional_split == "branch" and self.space.params[group[0]].parent is not None:
                    fitted[gi] = self._fit_group(group, dims, *branch_split(group), n_lies)
                else:
                    fitted[gi] = self._fit_group(group, dims, X_good, X_bad, n_lies)
            return fitted[gi]

        chosen: Flat = {}
        for gi, group in enumerate(groups):
            parent = self.space.params[group[0]].parent
            if parent is not None and chosen.get(parent[0]) != parent[1]:
                continue  # the group's branch was not chosen: its parameters stay absent
            l_est, g_est = estimators(gi)
            cands = widened(l_est, sample_bandwidth_factor).sample(self.rng, self.n_candidates)
            score = l_est.log_pdf(cands) - g_est.log_pdf(cands)
            best = cands[int(np.argmax(score))]
            for j, i in enumerate(group):
                p = self.space.params[i]
                v = int(best[j]) if p.is_categorical else p.dist.from_internal(float(best[j]))
                chosen[p.key] = v

        def score_points(points: list[Flat]) -> np.ndarray:
            """log l(x) - log g(x) of whole points: the sum over their active groups."""
            rows = np.array([self._row(f) for f in points]).reshape(len(points), len(dims))
            total = np.zeros(len(points))
            for gi, group in enumerate(groups):
                active = ~np.isnan(rows[:, group[0]])
                if active.any():
                    l_est, g_est = estimators(gi)
                    sub_rows = rows[active][:, group]
                    total[active] += l_est.log_pdf(sub_rows) - g_est.log_pdf(sub_rows)
            return total

        # Re-walk the tree so the point holds exactly the active parameters, in order.
        return self.space.complete(chosen, lambda p: p.dist.sample(self.rng)), score_points

    def _fit_group(self, group: list[int], dims: list[Dim], X_good: np.ndarray, X_bad: np.ndarray,
                   n_lies: int) -> tuple[ParzenEstimator, ParzenEstimator]:
        """l(x) and g(x) of one group of co-active parameters."""
        sub = [dims[i] for i in group]
        lg = X_good[:, group]
        lg = lg[~np.isnan(lg[:, 0])]
        bg = X_bad[:, group]
        keep = ~np.isnan(bg[:, 0])
        bg = bg[keep]
        bw = recency_weights(len(bg))
        if n_lies:
            # The lies are the last rows of X_bad. Running trials sit where l(x) is
            # high, so full-weight lies lift g(x) over the whole good region and push
            # suggestions out of it; lighter lies still keep suggestions off each other
            # (the weight was chosen on tuning seeds: results/tpe.md, "liar weight").
            kept_lies = int(keep[len(keep) - n_lies:].sum())
            if kept_lies:
                bw[len(bw) - kept_lies:] *= self.liar_weight
        opts = dict(prior_weight=self.prior_weight, bandwidth=self.bandwidth,
                    categorical_smoothing=self.categorical_smoothing)
        l_est = ParzenEstimator(sub, lg, recency_weights(len(lg)), **opts)
        g_est = ParzenEstimator(sub, bg, bw, **opts)
        return l_est, g_est
