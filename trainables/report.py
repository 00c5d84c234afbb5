"""Reporting and checkpoint helpers for plain function trainables (Ray Tune's function API).

A user with an existing training loop keeps it and adds three lines:

    from trainables.report import report, restore, seed_everything

    def train_fn(config):
        seed_everything(config.get("seed", 0))
        model, opt = build(config)
        start = 0
        if (state := restore()) is not None:           # resumed by a scheduler or after a failure
            model.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
            start = state["epoch"]
        for epoch in range(start, config["epochs"]):
            val_loss = train_one_epoch(model, opt)
            report({"val_loss": val_loss},
                   state={"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1})

`state` is saved with `torch.save` and read back with `torch.load(weights_only=True)`: tensors,
state dicts and plain Python values only (`rng_state()` gives the RNG states in that form, so a
resumed trial can continue exactly). Pass `state` only when a checkpoint may be needed (a pausing
scheduler, resume, the best trial at the end): every checkpoint is a file write.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping

import torch
from ray import tune

from trainables.rng import rng_state, seed_everything, set_rng_state

STATE_FILE = "state.pt"

__all__ = ["report", "restore", "seed_everything", "rng_state", "set_rng_state", "STATE_FILE"]


def report(metrics: Mapping[str, Any], state: Mapping[str, Any] | None = None) -> None:
    """`ray.tune.report(metrics)`, with `state` (if given) saved as this result's checkpoint."""
    if state is None:
        tune.report(dict(metrics))
        return
    with tempfile.TemporaryDirectory(prefix="tunekit-state-") as d:
        torch.save(dict(state), os.path.join(d, STATE_FILE))
        # Tune copies the directory into the trial's storage before report() returns.
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(d))


def restore(map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The state passed with the latest checkpointed `report`, or None on a fresh start."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        path = os.path.join(d, STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint {checkpoint.path} has no {STATE_FILE}: it was not written by "
                                    "trainables.report.report")
        return torch.load(path, map_location=map_location, weights_only=True)
