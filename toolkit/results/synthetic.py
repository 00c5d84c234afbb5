"""A synthetic sweep with known structure, for benchmarks, demos and tests of the analyses.

The loss depends strongly on ``lr`` (log scale, optimum near 1e-2), moderately on the
optimizer branch and its conditional parameter, and not at all on ``unused``; trials follow
exponential learning curves, and some are stopped early as ASHA would."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np


def trial_loss(config: dict) -> float:
    lr = config["lr"]
    opt = config["optimizer"]
    loss = 0.1 + 0.8 * (math.log10(lr) + 2.0) ** 2
    loss += 0.05 * (1 - opt["momentum"]) if opt["name"] == "sgd" else 0.2 * abs(opt["beta1"] - 0.9)
    return loss + (0.0 if config["width"] >= 64 else 0.1)


def sample_config(rng: np.random.Generator, seed: int) -> dict:
    opt = ({"name": "sgd", "momentum": float(rng.uniform(0, 0.99))} if rng.random() < 0.5
           else {"name": "adam", "beta1": float(rng.uniform(0.8, 0.999))})
    return {"lr": float(10 ** rng.uniform(-4, -0.5)), "optimizer": opt,
            "width": int(rng.choice([32, 64, 128])), "unused": float(rng.uniform(0, 1)),
            "hidden": [int(rng.choice([16, 32])), 8], "seed": seed}


def sweep(n_trials: int, n_iters: int, seed: int = 0, early_stop_fraction: float = 0.5,
          metrics: int = 4) -> Iterator[tuple[dict, list[dict]]]:
    """Yields ``(trial, history)`` pairs in the shape the runner hands to `RecordWriter`."""
    rng = np.random.default_rng(seed)
    t = 0.0
    for i in range(n_trials):
        config = sample_config(rng, seed * 100_000 + i)
        final = trial_loss(config)
        stopped = i >= 4 and rng.random() < early_stop_fraction
        iters = max(1, n_iters // 4) if stopped else n_iters
        k = np.arange(1, iters + 1)
        curve = final + 2.0 * np.exp(-k / (0.15 * n_iters + 1)) + rng.normal(0, 0.01, iters)
        acc = 1 / (1 + curve)
        history = []
        for j in range(iters):
            row = {"training_iteration": int(k[j]), "val_loss": float(curve[j]), "val_acc": float(acc[j]),
                   "time_total_s": float(0.01 * k[j]), "date": "2026-01-01"}
            for m in range(max(0, metrics - 3)):
                row[f"extra_{m}"] = float(curve[j] * (m + 1))
            history.append(row)
        t += 0.01 * iters
        trial = {"trial_id": f"t{i:05d}", "config": config,
                 "status": "EARLY_STOPPED" if stopped else "TERMINATED", "error": None,
                 "iterations": iters, "run_time_s": 0.01 * iters,
                 "final_metric": float(curve[-1]), "best_metric": float(curve.min()),
                 "seed": config["seed"], "completed_s": round(t, 3)}
        yield trial, history


def manifest(name: str = "synthetic", seed: int = 0, environment: dict | None = None) -> dict:
    spec = {"name": name, "trainable": "toolkit.results.synthetic:Nothing", "metric": "val_loss",
            "mode": "min", "seed": seed,
            "param_space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 0.3}}}
    return {"spec": spec, "resolved_spec": dict(spec, num_samples=None), "seed": seed,
            "searcher": {"type": "random", "settings": {"seed": seed}},
            "scheduler": {"type": "asha", "settings": {"grace_period": 1, "reduction_factor": 4}},
            "trainable": spec["trainable"], "metric": "val_loss", "mode": "min",
            "data": {"fingerprint": "sha256:synthetic", "description": "synthetic loss surface"},
            "environment": environment or {}}
