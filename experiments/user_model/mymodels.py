"""A user's own model and data for `trainables.generic:Generic` (see user_model.yaml beside this).

Nothing here knows about tunekit: a model builder and a data builder, each taking the trial's
config. The spec's folder is on the import path of every trial.
"""

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer


def build(config):
    width = config["width"]
    return torch.nn.Sequential(torch.nn.Linear(30, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def load(config):
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # a fixed split, whatever the trial's seed
    x, y = x[order].astype(np.float32), y[order]
    x = (x - x[:450].mean(0)) / x[:450].std(0)
    return (x[:450], y[:450]), (x[450:], y[450:])


def recall(outputs, targets):
    """An extra validation metric: recall of class 1 (reported as val_recall)."""
    predicted = outputs.argmax(1)
    return float(((predicted == 1) & (targets == 1)).sum() / max(1, int((targets == 1).sum())))
