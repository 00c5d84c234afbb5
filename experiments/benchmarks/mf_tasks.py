"""Multi-fidelity tasks for the replay simulator (`mf_sim`).

- `Branin`, `Hartmann(3|6)`: the multi-fidelity versions of Kandasamy et al. (2017, "Multi-
  fidelity Bayesian optimisation with continuous approximations", BOCA), written from the
  paper's definitions: the fidelity z in [0, 1] shifts the functions' coefficients, and z = 1
  is the real objective. Here z = epoch / max_t, so an early "epoch" is a cheap, biased view.
  Hartmann is maximised in the paper; we minimise its negation.
- `DigitsTable`: real learning curves of a torch MLP on scikit-learn's bundled digits,
  tabulated once by `mf_tables.py` on a grid of hyperparameters (integer indices, so every
  searcher models them as ordered values).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DIGITS_TABLE = HERE / "results" / "mf_digits_table.json.gz"


class Branin:
    """f(z, x) = a (x2 - b(z) x1^2 + c(z) x1 - r)^2 + s (1 - t(z)) cos x1 + s, x in [-5, 10] x [0, 15],
    b(z) = 5.1 / (4 pi^2) - 0.01 (1 - z), c(z) = 5 / pi - 0.1 (1 - z), t(z) = 1 / (8 pi) + 0.05 (1 - z)."""

    name = "branin"
    metric = "loss"
    optimum = 0.397887357729738

    def __init__(self, max_t: int = 27) -> None:
        self.max_t = max_t

    def param_space(self) -> dict:
        from ray import tune

        return {"x1": tune.uniform(-5.0, 10.0), "x2": tune.uniform(0.0, 15.0)}

    @staticmethod
    def f(x1: float, x2: float, z: float) -> float:
        b = 5.1 / (4 * math.pi**2) - 0.01 * (1 - z)
        c = 5 / math.pi - 0.1 * (1 - z)
        t = 1 / (8 * math.pi) + 0.05 * (1 - z)
        return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * math.cos(x1) + 10.0

    def value(self, config: dict, epoch: int) -> float:
        return self.f(config["x1"], config["x2"], epoch / self.max_t)

    def epoch_cost(self, config: dict) -> float:
        return 1.0

    def regret(self, config: dict) -> float:
        return self.f(config["x1"], config["x2"], 1.0) - self.optimum


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


class Hartmann:
    """-f(z, x), f = sum_i alpha_i(z) exp(-sum_j A_ij (x_j - P_ij)^2), alpha(z) = alpha - 0.1 (1 - z), x in [0, 1]^d."""

    metric = "loss"

    def __init__(self, dim: int = 6, max_t: int = 27) -> None:
        if dim not in (3, 6):
            raise ValueError("Hartmann is defined for 3 or 6 dimensions")
        self.dim, self.max_t = dim, max_t
        self.name = f"hartmann{dim}"
        self.A, self.P = (_H3_A, _H3_P) if dim == 3 else (_H6_A, _H6_P)
        self.optimum = -3.86278214782076 if dim == 3 else -3.32236801141551

    def param_space(self) -> dict:
        from ray import tune

        return {f"x{i}": tune.uniform(0.0, 1.0) for i in range(self.dim)}

    def f(self, x: np.ndarray, z: float) -> float:
        alpha = _H_ALPHA - 0.1 * (1 - z)
        return -float(alpha @ np.exp(-(self.A * (x[None, :] - self.P) ** 2).sum(axis=1)))

    def _x(self, config: dict) -> np.ndarray:
        return np.array([config[f"x{i}"] for i in range(self.dim)])

    def value(self, config: dict, epoch: int) -> float:
        return self.f(self._x(config), epoch / self.max_t)

    def epoch_cost(self, config: dict) -> float:
        return 1.0

    def regret(self, config: dict) -> float:
        return self.f(self._x(config), 1.0) - self.optimum


class DigitsTable:
    """Tabulated validation-loss curves; an epoch costs its measured share of a core (see mf_tables)."""

    name = "digits_mlp"
    metric = "val_loss"

    def __init__(self, path: Path = DIGITS_TABLE) -> None:
        with gzip.open(path, "rt") as f:
            table = json.load(f)
        self.grid: dict[str, list] = table["grid"]
        self.keys = list(self.grid)
        self.curves = np.array(table["val_loss"])  # configs x epochs
        self.costs = np.array(table["epoch_cost"])  # per config, relative to the mean
        self.max_t = self.curves.shape[1]
        self.shape = tuple(len(v) for v in self.grid.values())
        self.optimum = float(self.curves[:, -1].min())
        self.meta = table["meta"]

    def param_space(self) -> dict:
        from ray import tune

        return {f"{k}_i": tune.randint(0, len(v)) for k, v in self.grid.items()}

    def index(self, config: dict) -> int:
        return int(np.ravel_multi_index(tuple(int(config[f"{k}_i"]) for k in self.keys), self.shape))

    def value(self, config: dict, epoch: int) -> float:
        return float(self.curves[self.index(config), epoch - 1])

    def epoch_cost(self, config: dict) -> float:
        return float(self.costs[self.index(config)])

    def regret(self, config: dict) -> float:
        return float(self.curves[self.index(config), -1]) - self.optimum


def tasks(max_t: int = 27) -> list:
    out = [Branin(max_t), Hartmann(3, max_t), Hartmann(6, max_t)]
    if DIGITS_TABLE.exists():
        out.append(DigitsTable())
    return out
