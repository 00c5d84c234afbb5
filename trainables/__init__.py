"""Ray Tune Trainables for tunekit: PyTorch models on bundled data, and cheap synthetic ones.

    trainables.digits     DigitsMLP, DigitsCNN (scikit-learn digits), evaluate(config, epochs, model)
    trainables.base       TorchTrainable: the reusable PyTorch Trainable (devices, seeding, optimizers,
                          LR schedules, AMP, exact checkpoints, per-epoch metrics)
    trainables.synthetic  Quadratic: torch-free learning curves with seeded noise and fault injection
    trainables.data       fixed, fingerprinted train/validation splits of bundled datasets
    trainables.models     MLP, SmallCNN
    trainables.local      run_local(cls, config, iterations): a Trainable in-process, no Ray Tune

Every Trainable here declares `METRICS` (the names it reports) and a classmethod
`data_fingerprint()` ({"fingerprint", "description", ...} or None) for experiment records.
This package depends on torch and Ray Tune's Trainable API only, never on `toolkit`; the
names below are imported lazily so `trainables.synthetic` users never import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TorchTrainable": "trainables.base",
    "DigitsMLP": "trainables.digits",
    "DigitsCNN": "trainables.digits",
    "Quadratic": "trainables.synthetic",
    "run_local": "trainables.local",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
