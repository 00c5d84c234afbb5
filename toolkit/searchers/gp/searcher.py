"""`GPSearcher`: Gaussian-process Bayesian optimisation as a Ray Tune `Searcher`.

Flow of one suggestion: the shared Sobol start-up design (`toolkit.searchers.startup`) until
`n_startup` observations exist; then fit the GP
hyperparameters (warm-started from the previous fit), condition on every observation,
add in-flight trials as *kriging-believer* fantasies (their posterior mean as if it were
observed: the mean surface is unchanged but variance collapses around them, so k workers
get k different points; Ginsbourger et al. 2010), and maximise log-EI over the incumbent,
the lowest posterior mean at a real observation (see `incumbent`). The observation noise is
a fitted hyperparameter (model.py), so on a noisy objective that mean is an average, not
the luckiest draw. When the last few observations only re-measured known points, the next
proposal is a Thompson step instead of EI's favourite (explore.py).

Failed / NaN / inf trials are imputed with the worst successful loss (option
`failed="worst"`, the default): such failures usually mark a region (divergent learning
rate, out-of-memory width) and a model that ignores them proposes the same region again.
`failed="ignore"` drops them instead.

Many observations: hyperparameters are fitted on at most `max_fit_points` points and the
posterior uses at most `max_points` points; beyond a cap the kept set is the best half by
loss plus an evenly spaced (in trial order) selection of the rest - deterministic, keeps
the region that matters for EI exact and a global skeleton elsewhere.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from toolkit.searchers.base import SpaceSearcher
from toolkit.searchers.gp.acquisition import Acquisition
from toolkit.searchers.gp.encoding import Encoding
from toolkit.searchers.gp.explore import repeats_in_a_row, thompson_step
from toolkit.searchers.gp.model import GP, OutputTransform, fit_hyper
from toolkit.searchers.gp.optimize import optimize_acquisition
from toolkit.searchers.startup import SobolDesign, default_startup_size
from toolkit.space.space import Flat


def keep_rule(y: np.ndarray, cap: int) -> np.ndarray:
    """Indices kept when there are more than `cap` points: best half + evenly spaced rest."""
    n = len(y)
    if n <= cap:
        return np.arange(n)
    best = np.argsort(y, kind="stable")[: cap // 2]
    rest = np.setdiff1d(np.arange(n), best)
    pick = rest[np.linspace(0, len(rest) - 1, cap - len(best)).round().astype(int)]
    return np.sort(np.concatenate([best, pick]))


class GPSearcher(SpaceSearcher):
    """GP-BO searcher (Matern-5/2 ARD, MAP hyperparameters, log-EI, kriging believer).

    Options: `n_startup` (start-up design points before the model; None:
    `default_startup_size`, max(5, min(10, P + 1)) for P parameters and at most a quarter of
    the sweep's num_samples), `acquisition` ("logei" or "ucb"), `ucb_beta`,
    `output_transform` ("power", "clip" or "standardize"), `failed` ("worst" or "ignore"),
    `n_candidates` (random candidates the acquisition scores per proposal before local
    optimisation: two thirds Sobol points, one third perturbations of the best points),
    `n_starts`, `max_fit_points`, `max_points`, `min_distance` (in lengthscales: candidates
    closer than this to an evaluated or in-flight point are passed over), `stuck_patience`
    and `stuck_radius` (after `stuck_patience` observations in a row that each lie within
    `stuck_radius` lengthscales of an earlier one, the next proposal is a Thompson step away
    from them; 0 turns the rule off; see explore.py), `budget_attr`, `exhaustive` (finite
    spaces: end the sweep once every point was tried).
    """

    def __init__(
        self,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[Mapping] | None = None,
        evaluated_rewards: Sequence[float] | None = None,
        seed: int | None = None,
        *,
        n_startup: int | None = None,
        acquisition: str = "logei",
        ucb_beta: float = 4.0,
        output_transform: str = "power",
        failed: str = "worst",
        n_candidates: int = 1536,
        n_starts: int = 8,
        max_fit_points: int = 128,
        max_points: int = 600,
        min_distance: float = 1e-3,
        stuck_patience: int = 3,
        stuck_radius: float = 0.1,
        budget_attr: str = "training_iteration",
        exhaustive: bool = False,
    ) -> None:
        if acquisition not in ("logei", "ucb"):
            raise ValueError(f"acquisition must be 'logei' or 'ucb', got {acquisition!r}")
        if failed not in ("worst", "ignore"):
            raise ValueError(f"failed must be 'worst' or 'ignore', got {failed!r}")
        OutputTransform(output_transform)(np.arange(4.0))  # validates the name early
        if n_startup is not None and n_startup < 0:
            raise ValueError(f"n_startup must be >= 0, got {n_startup}")
        if n_candidates < 3:
            raise ValueError(f"n_candidates must be >= 3, got {n_candidates}")
        self.n_startup = None if n_startup is None else int(n_startup)
        self.acquisition = acquisition
        self.ucb_beta = float(ucb_beta)
        self.output_transform = output_transform
        self.failed = failed
        self.n_candidates = int(n_candidates)
        self.n_starts = int(n_starts)
        self.max_fit_points = int(max_fit_points)
        self.max_points = int(max_points)
        self.min_distance = float(min_distance)
        if stuck_patience < 0:
            raise ValueError(f"stuck_patience must be >= 0, got {stuck_patience}")
        self.stuck_patience = int(stuck_patience)
        self.stuck_radius = float(stuck_radius)
        self._theta: np.ndarray | None = None  # last MAP hyperparameters (warm start)
        self._encoding: Encoding | None = None
        super().__init__(space, metric, mode, points_to_evaluate, evaluated_rewards, seed, budget_attr, exhaustive)
        self._design = SobolDesign(int(self.rng.integers(2**31 - 1)))

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict:
        theta = None if self._theta is None else [float(t) for t in self._theta]
        return {"theta": theta, "design": self._design.state()}

    def set_extra_state(self, state: dict) -> None:
        self._theta = None if state.get("theta") is None else np.array(state["theta"], dtype=float)
        self._design = SobolDesign.from_state(state["design"])
        self._encoding = None

    # ------------------------------------------------------------------ proposal
    @property
    def encoding(self) -> Encoding:
        assert self.space is not None
        if self._encoding is None or self._encoding.space is not self.space:
            self._encoding = Encoding(self.space)
        return self._encoding

    def startup_size(self) -> int | None:
        if self.n_startup is not None:
            return self.n_startup
        if self.space is None:
            return None
        return default_startup_size(len(self.space.params), self.num_samples)

    def propose(self, pending: list[Flat]) -> Flat | None:
        assert self.space is not None
        if self.encoding.n_raw == 0:
            return {}
        n_ok = sum(o.ok for o in self.observations)
        if n_ok + len(pending) < (self.startup_size() or 0) or n_ok < 2:
            return self._initial_point()
        return self._model_point(pending)  # BLAS on one thread: see base.single_thread_blas

    def _initial_point(self) -> Flat:
        assert self.space is not None
        for _ in range(64):
            flat = self._design.next_point(self.space)
            if not self.is_seen(flat):
                return flat
        return self.random_point()

    def training_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, raw losses, ok mask) of the observations the model uses."""
        obs = self.observations
        ok = np.array([o.ok for o in obs], dtype=bool)
        losses = np.array([o.loss if o.ok else np.nan for o in obs], dtype=float)
        if self.failed == "worst":
            losses = np.where(ok, losses, np.nanmax(losses))
            use = np.ones(len(obs), dtype=bool)
        else:
            use = ok
        idx = np.flatnonzero(use)
        X = self.encoding.features_of_flats([obs[i].flat for i in idx])
        return X, losses[idx], ok[idx]

    def incumbent(self, observed_means: np.ndarray, pending_means: np.ndarray | None = None) -> float:
        """The value EI improves on: the lowest posterior mean at a successful observation.

        A posterior mean, not the lowest observed loss, so one lucky noisy draw does not set
        the bar. Believed values of in-flight trials are left out: when the model
        extrapolates a dip at a pending point on the space's edge, an incumbent lowered to
        that belief made every other region look hopeless, and with 2 trials in flight runs
        stayed on Branin's x1 = 10 edge for 40 evaluations (results/tuning.md).
        """
        return float(np.min(observed_means))

    def belief(self, pending_means: np.ndarray, incumbent: float) -> np.ndarray:
        """The value an in-flight trial is assumed to return: its posterior mean, but never
        better than the incumbent. A pending point believed to beat the incumbent would leave
        EI in its neighbourhood positive however small the variance, and k workers would
        crowd there; believed no better than the incumbent, its neighbourhood offers no
        improvement until a result says otherwise."""
        return np.maximum(pending_means, incumbent)

    def _model_point(self, pending: list[Flat]) -> Flat | None:
        enc = self.encoding
        X, loss, ok = self.training_data()
        X_in_order = X
        keep = keep_rule(loss, self.max_points)
        X, loss, ok = X[keep], loss[keep], ok[keep]
        y = OutputTransform(self.output_transform)(loss)
        fit = keep_rule(y, self.max_fit_points)
        hyper = fit_hyper(X[fit], y[fit], init=self._theta)
        self._theta = hyper.to_theta()
        gp = GP(X, y, hyper)
        observed_means = gp.fitted_mean()[ok]
        best = self.incumbent(observed_means)
        if pending:
            Xp = enc.features_of_flats(pending)
            mp, _ = gp.predict(Xp)
            best = self.incumbent(observed_means, mp)
            # Fantasies are noise-free: a worker already evaluates that exact point, so the
            # latent variance there (not just the noisy one) should collapse.
            noise = np.concatenate([np.full(len(X), hyper.noise), np.full(len(Xp), 1e-6 * hyper.signal)])
            gp = GP(np.vstack([X, Xp]), np.concatenate([y, self.belief(mp, best)]), hyper, noise)
        acq = Acquisition(gp, best, self.acquisition, self.ucb_beta)
        ok_obs = [o for o in self.observations if o.ok]
        top = sorted(range(len(ok_obs)), key=lambda i: ok_obs[i].loss)[:5]
        anchors = np.stack([enc.raw_from_flat(ok_obs[i].flat) for i in top])
        repeats = repeats_in_a_row(X_in_order, hyper.lengthscales, self.stuck_radius, limit=self.stuck_patience)
        if self.stuck_patience and repeats >= self.stuck_patience:
            u = thompson_step(gp, enc, self.rng, anchors, self.stuck_radius)  # see explore.py
            if u is not None:
                flat = enc.flat_from_raw(u)
                if not self.is_seen(flat):
                    return flat
        ranked, _ = optimize_acquisition(
            acq, enc, self.rng, anchors, n_candidates=self.n_candidates - self.n_candidates // 3,
            n_local=self.n_candidates // 3, n_starts=self.n_starts,
        )
        # Skip candidates within `min_distance` lengthscales of a point already evaluated or
        # in flight: re-measuring (almost) the same point teaches the model nothing, and
        # log-EI can otherwise creep along a ridge in steps of 1e-4 forever.
        seen_z = gp.X / hyper.lengthscales
        Zc = enc.features(ranked) / hyper.lengthscales
        d2 = (Zc * Zc).sum(1)[:, None] + (seen_z * seen_z).sum(1)[None, :] - 2.0 * Zc @ seen_z.T
        far = np.min(d2, axis=1) > self.min_distance**2
        for u, ok_far in zip(ranked, far):
            if not ok_far:
                continue
            flat = enc.flat_from_raw(u)
            if not self.is_seen(flat):
                return flat
        for u in ranked:  # everything left is close to a known point: take the best unseen
            flat = enc.flat_from_raw(u)
            if not self.is_seen(flat):
                return flat
        # A finite space whose candidates were all tried: an untried point if one is left,
        # else the acquisition's favourite again (a repeat sharpens a noisy estimate).
        return self.random_unseen() or enc.flat_from_raw(ranked[0])
