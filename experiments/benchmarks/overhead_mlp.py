"""The small-model problem of the overhead benchmark: an MLP on scikit-learn's breast-cancer data.

One class, `BreastCancerMLP`, serves both arms: Ray Tune runs it as a trial, the Optuna arm
trains it in-process through `trainables.local.run_local` (same model, data and training code).
`PARAM_SPACE` is the search space in spec syntax; `optuna_config` draws the same space from
an Optuna trial.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from torch import nn

from trainables.base import TorchTrainable
from trainables.data import Dataset
from trainables.models import MLP

EPOCHS = 10  # every trial trains this many epochs (FIFO: no early stopping in either arm)

PARAM_SPACE: dict[str, Any] = {
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-1},
    "batch_size": {"type": "choice", "values": [32, 64]},
    "width": {"type": "randint", "low": 16, "high": 129},
    "depth": {"type": "randint", "low": 1, "high": 4},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    # Ray gives a 1-CPU trial one torch thread; the in-process arm gets the same.
    "num_threads": 1,
}


class BreastCancerMLP(TorchTrainable):
    """MLP on the 30 standardised features of the breast-cancer set (455 train / 114 val)."""

    DATASET = "breast_cancer"
    DEFAULTS: ClassVar[dict[str, Any]] = {**TorchTrainable.DEFAULTS, "width": 64, "depth": 2, "dropout": 0.1}

    def build_model(self, cfg: Mapping[str, Any], data: Dataset) -> nn.Module:
        return MLP(data.n_features, data.n_classes, width=int(cfg["width"]), depth=int(cfg["depth"]),
                   dropout=float(cfg["dropout"]))


def optuna_config(trial: Any, seed: int) -> dict[str, Any]:
    """`PARAM_SPACE` drawn from an Optuna trial (randint excludes high, as in the spec)."""
    return {
        "lr": trial.suggest_float("lr", 1.0e-4, 1.0e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
        "width": trial.suggest_int("width", 16, 128),
        "depth": trial.suggest_int("depth", 1, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "num_threads": 1,
        "seed": seed,
    }
