"""Tabular MLPs on scikit-learn's bundled datasets: two classification tasks and one regression.

    BreastCancerMLP   569 samples, 30 features, 2 classes (an easy, nearly linear boundary)
    WineMLP           178 samples, 13 features, 3 classes (tiny: noisy validation, few steps per epoch)
    DiabetesMLP       442 samples, 10 features, a continuous target (regression: reports val_rmse,
                      val_r2; the target is standardised on the training part, so val_loss is
                      the MSE in units of its standard deviation)

Model keys on top of `TorchTrainable`'s: `width`, `depth`, `dropout`, `activation` (as the
digits MLP).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from torch import nn

from trainables.base import COMMON_METRICS, REGRESSION_METRICS, TorchTrainable
from trainables.config import integer, number
from trainables.data import Dataset
from trainables.models import MLP

_MODEL_DEFAULTS = {"width": 32, "depth": 2, "dropout": 0.1, "activation": "relu"}


class _TabularMLP(TorchTrainable):
    DEFAULTS: ClassVar[dict[str, Any]] = {**TorchTrainable.DEFAULTS, **_MODEL_DEFAULTS, "lr": 3e-3,
                                          "batch_size": 32}

    def build_model(self, cfg: Mapping[str, Any], data: Dataset) -> nn.Module:
        out = data.n_classes if data.task == "classification" else 1
        return MLP(data.n_features, out, width=integer("width", cfg["width"], low=1),
                   depth=integer("depth", cfg["depth"], low=0), dropout=number("dropout", cfg["dropout"]),
                   activation=cfg["activation"])


class BreastCancerMLP(_TabularMLP):
    """Defaults reach val_acc of about 0.95 in 3 epochs."""

    DATASET = "breast_cancer"


class WineMLP(_TabularMLP):
    """Defaults reach val_acc >= 0.9 in 5 epochs."""

    DATASET = "wine"


class DiabetesMLP(_TabularMLP):
    """Regression; defaults reach val_r2 of about 0.4-0.5 within 10 epochs (linear models reach about 0.5)."""

    DATASET = "diabetes"
    METRICS: ClassVar[tuple[str, ...]] = REGRESSION_METRICS + COMMON_METRICS
