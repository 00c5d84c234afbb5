"""Digits classifiers (scikit-learn's bundled 8x8 digits) as Ray Tune Trainables.

    from ray import tune
    from trainables.digits import DigitsCNN
    tuner = tune.Tuner(DigitsCNN, param_space={"lr": tune.loguniform(1e-4, 1e-1),
                                               "optimizer": tune.choice([{"name": "sgd", "momentum": 0.9},
                                                                         {"name": "adam", "beta1": 0.9}])},
                       tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=8),
                       run_config=tune.RunConfig(stop={"training_iteration": 5}))

An empty config `{}` trains a sensible model (see `DEFAULTS`). Model keys on top of the
`TorchTrainable` ones: `width` (MLP hidden units; CNN channels of the first block), `depth`
(MLP hidden layers; CNN conv blocks, 1..3), `dropout`, `activation` (relu, gelu, tanh, silu).

`evaluate(config, epochs, model)` trains one config in-process and returns its final metrics;
`objective(config, epochs, model)` is its final val_loss (a float to minimise) and `PARAM_SPACE`
a search space for it in spec syntax: together, the digits benchmark problem.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

from torch import nn

from trainables.base import TorchTrainable
from trainables.data import Dataset
from trainables.local import run_local
from trainables.models import MLP, SmallCNN

_MODEL_DEFAULTS = {"width": 64, "depth": 2, "dropout": 0.1, "activation": "relu"}


class DigitsMLP(TorchTrainable):
    """MLP on the 64 standardised pixels. Defaults (Adam, lr 1e-2) reach val_acc >= 0.95 in 3 epochs."""

    DATASET = "digits"
    DEFAULTS: ClassVar[dict[str, Any]] = {**TorchTrainable.DEFAULTS, **_MODEL_DEFAULTS, "lr": 1e-2}

    def build_model(self, cfg: Mapping[str, Any], data: Dataset) -> nn.Module:
        return MLP(data.n_features, data.n_classes, width=_int(cfg, "width"), depth=_int(cfg, "depth"),
                   dropout=float(cfg["dropout"]), activation=cfg["activation"])


class DigitsCNN(TorchTrainable):
    """Small VGG-style CNN on the 1x8x8 images. Defaults (Adam, lr 1e-2) reach val_acc >= 0.95 in 3 epochs."""

    DATASET = "digits"
    DEFAULTS: ClassVar[dict[str, Any]] = {**TorchTrainable.DEFAULTS, **_MODEL_DEFAULTS,
                                          "width": 16, "lr": 1e-2}

    def build_model(self, cfg: Mapping[str, Any], data: Dataset) -> nn.Module:
        return SmallCNN(data.image_shape, data.n_classes, width=_int(cfg, "width"), depth=_int(cfg, "depth"),
                        dropout=float(cfg["dropout"]), activation=cfg["activation"])


MODELS: dict[str, type[TorchTrainable]] = {"mlp": DigitsMLP, "cnn": DigitsCNN}

# The benchmark search space for `objective`, written in tunekit's spec syntax as plain data
# (`toolkit.space.parse.parse_space(PARAM_SPACE)` builds the typed space; this package never
# imports toolkit). Mixed, conditional and with a broad lr range, so it has divergent corners.
PARAM_SPACE: dict[str, Any] = {
    "lr": {"type": "loguniform", "low": 1.0e-4, "high": 3.0e-1},
    "batch_size": {"type": "choice", "values": [32, 64, 128]},
    "weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-2},
    "width": {"type": "qrandint", "low": 16, "high": 128, "q": 16},
    "depth": {"type": "randint", "low": 1, "high": 4},
    "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
    "optimizer": {"type": "choice", "values": [
        {"name": "sgd", "momentum": {"type": "uniform", "low": 0.5, "high": 0.99},
         "nesterov": {"type": "choice", "values": [False, True]}},
        {"name": "adam", "beta1": {"type": "uniform", "low": 0.8, "high": 0.99}},
    ]},
    "seed": 0,
}


def evaluate(config: Mapping[str, Any], epochs: int = 5, model: str = "mlp") -> dict:
    """Train `config` for `epochs` epochs in this process; the last epoch's metrics plus
    `best_val_acc` / `best_val_loss` over the run (NaN losses count as never best)."""
    try:
        cls = MODELS[model]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}") from None
    history = run_local(cls, config, iterations=epochs)
    final = {k: history[-1][k] for k in cls.METRICS}
    final["training_iteration"] = history[-1]["training_iteration"]
    losses = [h["val_loss"] for h in history if math.isfinite(h["val_loss"])]
    final["best_val_loss"] = min(losses) if losses else math.nan
    final["best_val_acc"] = max(h["val_acc"] for h in history)
    return final


def objective(config: Mapping[str, Any], epochs: int = 5, model: str = "mlp") -> float:
    """Final validation loss after `epochs` epochs: the value a benchmark minimises.

    NaN when training diverged (a non-finite loss), so callers can count it as a failed trial.
    An invalid config raises ValueError. Deterministic for a given config (seed included).
    """
    return float(evaluate(config, epochs=epochs, model=model)["val_loss"])


def _int(cfg: Mapping[str, Any], key: str) -> int:
    v = cfg[key]
    if isinstance(v, bool) or not float(v).is_integer():
        raise ValueError(f"{key} must be an integer, got {v!r}")
    return int(v)
