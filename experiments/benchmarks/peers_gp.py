"""GP-only benchmark peers: a standard BoTorch loop and Ray's BayesOptSearch.

Both are benchmark-only (the `bench` extra): `botorch` (pulls gpytorch) and
`bayesian-optimization` (what Ray's `BayesOptSearch` wraps).

The BoTorch peer is the textbook single-task loop: `SingleTaskGP` with BoTorch's default
priors and input/output transforms, `fit_gpytorch_mll`, `LogExpectedImprovement`,
`optimize_acqf` (10 restarts, 512 raw samples), Sobol initial design of max(5, min(10, P+1))
points (the same size as ours). It works on the raw unit cube of our space and rounds
integers / categoricals after optimising (`SearchSpace.decode`), which is what a standard
continuous BoTorch loop does when handed a mixed space. Pending points are passed as
`X_pending` so batch runs are fair.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.benchmarks.problems import Problem


class BoTorchAdapter:
    def __init__(self, problem: Problem, seed: int) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.space = problem.space
        self.d = len(problem.space.params)
        self.seed = seed
        self.n_init = max(5, min(10, self.d + 1))
        from scipy.stats import qmc

        self.init = qmc.Sobol(self.d, scramble=True, rng=np.random.default_rng(seed)).random_base2(4)
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self.pending: dict[int, np.ndarray] = {}
        self.asked = 0

    def _next(self) -> np.ndarray:
        torch = self.torch
        from botorch.acquisition.logei import qLogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        ok = [i for i, v in enumerate(self.y) if np.isfinite(v)]
        if self.asked < self.n_init or len(ok) < 2:
            return self.init[self.asked % len(self.init)]
        X = torch.tensor(np.array([self.X[i] for i in ok]), dtype=torch.double)
        Y = -torch.tensor([self.y[i] for i in ok], dtype=torch.double).unsqueeze(-1)  # BoTorch maximises
        torch.manual_seed(self.seed * 100_003 + self.asked)
        model = SingleTaskGP(X, Y, input_transform=Normalize(self.d, bounds=self._bounds()), outcome_transform=Standardize(1))
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        except Exception:  # noqa: BLE001 - keep going with the unfitted prior as BoTorch users do
            pass
        pend = torch.tensor(np.array(list(self.pending.values())), dtype=torch.double) if self.pending else None
        acq = qLogExpectedImprovement(model, best_f=Y.max(), X_pending=pend)
        cand, _ = optimize_acqf(acq, bounds=self._bounds(), q=1, num_restarts=10, raw_samples=512)
        return cand.detach().numpy()[0]

    def _bounds(self):
        return self.torch.tensor([[0.0] * self.d, [1.0] * self.d], dtype=self.torch.double)

    def ask(self) -> tuple[Any, dict]:
        u = np.clip(self._next(), 0.0, 1.0)
        flat = self.space.decode(u)
        # Store the point the trainable really sees (rounded), as BoTorch users do.
        u = np.where(np.isnan(e := self.space.encode(flat)), u, e)
        token = self.asked
        self.asked += 1
        self.pending[token] = u
        return token, self.space.to_config(flat)

    def tell(self, token: Any, value: float | None) -> None:
        u = self.pending.pop(token)
        self.X.append(u)
        self.y.append(np.nan if value is None else float(value))


def botorch_adapter(problem: Problem, seed: int) -> BoTorchAdapter:
    return BoTorchAdapter(problem, seed)


def bayesopt_adapter(problem: Problem, seed: int):
    """Ray's `BayesOptSearch` (continuous spaces only), driven as Tune drives it."""
    from ray.tune.search.bayesopt import BayesOptSearch

    from experiments.benchmarks.harness import ray_searcher_adapter

    n = len(problem.space.params)
    return ray_searcher_adapter(BayesOptSearch(random_state=seed, random_search_steps=max(5, min(10, n + 1))), problem)
