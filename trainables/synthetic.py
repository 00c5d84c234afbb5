"""Cheap, torch-free Ray Tune Trainables for fast end-to-end tests of searchers and schedulers.

`Quadratic` scores any config: every numeric leaf of the (possibly nested, conditional) config
adds (value - centre)^2, every string/bool leaf adds a fixed pseudo-random penalty in [0, 1)
derived from its path and value (so categorical choices matter, reproducibly). That is the
asymptote f(config); iteration t (1-based) reports

    loss_t = f(config) + amplitude * exp(-rate * (t - 1)) + noise_sd * N(0, 1)

so learning curves decrease towards f and keep their ranking: early stopping (ASHA) has a
signal to work with. Reported: `loss`, `score` (= -loss), `objective` (= f, noise-free).

    from ray import tune
    from trainables.synthetic import Quadratic
    tune.Tuner(Quadratic, param_space={"x": tune.uniform(-2, 2), "centre": 0.5}, ...)

Reserved top-level keys (not scored): `seed`, `noise_sd` (0), `amplitude` (1.0), `rate` (0.5),
`centre` (0.0: a number, or a mapping from dotted leaf path to its target), `categorical_weight`
(1.0), `sleep_s` (0: seconds to sleep per iteration, to make trials overlap), and fault injection:

    fail_at_iteration: k   -> iteration k raises RuntimeError (the trial errors)
    nan_at_iteration: k    -> from iteration k on, loss and score are NaN

Checkpoints hold the iteration and the noise generator state, so a restored trial reports the
same values an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
from ray import tune

RESERVED = ("seed", "noise_sd", "amplitude", "rate", "centre", "categorical_weight", "sleep_s",
            "fail_at_iteration", "nan_at_iteration")


class InjectedFailure(RuntimeError):
    """Raised by `fail_at_iteration`; a distinct type so tests can tell it from real bugs."""


def leaves(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every non-mapping leaf; lists are indexed as path.i."""
    for k, v in config.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from leaves(v, path + ".")
        elif isinstance(v, (list, tuple)):
            yield from leaves({str(i): x for i, x in enumerate(v)}, path + ".")
        else:
            yield path, v


def category_penalty(path: str, value: Any) -> float:
    """A fixed value in [0, 1) for one categorical leaf: stable across processes and versions
    (sha256, unlike Python's salted `hash`)."""
    digest = hashlib.sha256(f"{path}={value!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def objective(config: Mapping[str, Any]) -> float:
    """f(config), the value `Quadratic`'s curves converge to (reserved keys excluded)."""
    centre = config.get("centre", 0.0)
    weight = float(config.get("categorical_weight", 1.0))
    total = 0.0
    for path, v in leaves({k: v for k, v in config.items() if k not in RESERVED}):
        if isinstance(v, (bool, str)) or v is None:
            total += weight * category_penalty(path, v)
        elif isinstance(v, (int, float, np.number)):
            c = centre.get(path, 0.0) if isinstance(centre, Mapping) else centre
            total += (float(v) - float(c)) ** 2
        else:
            raise ValueError(f"Quadratic cannot score config leaf {path}={v!r}")
    return total


class Quadratic(tune.Trainable):
    """Learning curves towards `objective(config)`, with seeded noise and fault injection."""

    METRICS: ClassVar[tuple[str, ...]] = ("loss", "score", "objective")

    @classmethod
    def data_fingerprint(cls) -> dict | None:
        return None  # no data: the objective is a formula of the config

    def setup(self, config: dict) -> None:
        self.f = objective(config)
        self.amplitude = float(config.get("amplitude", 1.0))
        self.rate = float(config.get("rate", 0.5))
        self.noise_sd = float(config.get("noise_sd", 0.0))
        self.sleep_s = float(config.get("sleep_s", 0.0))
        self.fail_at = config.get("fail_at_iteration")
        self.nan_at = config.get("nan_at_iteration")
        self.rng = np.random.Generator(np.random.PCG64(int(config.get("seed", 0))))
        self.t = 0

    def step(self) -> dict:
        self.t += 1
        if self.sleep_s > 0:
            time.sleep(self.sleep_s)
        if self.fail_at is not None and self.t == int(self.fail_at):
            raise InjectedFailure(f"injected failure at iteration {self.t} (fail_at_iteration)")
        # Draw even when the value is replaced by NaN, so the stream does not depend on it.
        noise = self.noise_sd * self.rng.standard_normal() if self.noise_sd > 0 else 0.0
        loss = self.f + self.amplitude * math.exp(-self.rate * (self.t - 1)) + noise
        if self.nan_at is not None and self.t >= int(self.nan_at):
            loss = math.nan
        return {"loss": loss, "score": -loss, "objective": self.f}

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        return {"t": self.t, "rng": self.rng.bit_generator.state}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.t = checkpoint["t"]
        self.rng.bit_generator.state = checkpoint["rng"]

    def reset_config(self, new_config: dict) -> bool:
        self.setup(new_config)
        return True
