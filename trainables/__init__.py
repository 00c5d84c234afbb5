"""Ray Tune Trainables for tunekit: PyTorch models on bundled data, and cheap synthetic ones.

    trainables.digits     DigitsMLP, DigitsCNN (scikit-learn digits), evaluate(config, epochs, model)
    trainables.tabular    BreastCancerMLP, WineMLP, DiabetesMLP (regression)
    trainables.sequence   DistantXor: a generated sequence task for a small LSTM or transformer
    trainables.generic    Generic: the user's model/data/loss/metrics by import path, no subclass
    trainables.base       TorchTrainable: the reusable PyTorch Trainable (devices, seeding, AMP, exact
                          checkpoints, early stopping, per-epoch metrics and signals)
    trainables.data_parallel  data_parallel(cls, workers): one trial of a TorchTrainable on several
                          Ray Train workers (DistributedDataParallel, gloo or nccl)
    trainables.optim      optimizer registry;  trainables.schedules  LR-schedule registry (warm-up)
    trainables.step       the training step shared by the trial loop, lr_find and sanity
    trainables.lr_find    LR range test;  trainables.sanity  pre-sweep checks
    trainables.report     report / restore / seeding helpers for plain function trainables
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
    "Generic": "trainables.generic",
    "Quadratic": "trainables.synthetic",
    "run_local": "trainables.local",
    "data_parallel": "trainables.data_parallel",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
