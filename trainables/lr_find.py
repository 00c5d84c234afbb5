"""LR range test (Smith 2017): train from one configuration while the learning rate grows
exponentially, step by step, and read off the range where the loss falls fastest.

    from trainables.lr_find import lr_range_test
    trainable = DigitsMLP(config={"optimizer": "adam"})
    found = lr_range_test(trainable)
    found.suggestion         # (low, high) for a loguniform `lr` search range
    found.plot("lr.png")

It reuses the trial loop's training step (`trainables.step.TrainStep`: same loss, AMP, clipping)
and ignores the configured LR schedule. The loss curve is an exponential moving average with
bias correction; the sweep stops early once that average exceeds `diverge_factor` times its
minimum (or a loss is non-finite), since everything beyond is divergence.

The suggested range: `high` is the LR at the smoothed loss's minimum divided by
`HIGH_DIVISOR` (at the minimum itself the loss is already about to blow up); `low` is
`high / LOW_SPAN` or the LR where the loss starts falling steeply, whichever is lower, so a search
spans the whole descending stretch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

HIGH_DIVISOR = 2.0
LOW_SPAN = 100.0


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    min_loss_lr: float
    steepest_lr: float
    suggestion: tuple[float, float]
    stopped_early: bool
    notes: list[str] = field(default_factory=list)

    def snippet(self, param: str = "lr") -> str:
        low, high = self.suggestion
        return f"{param}: {{type: loguniform, low: {low:.2e}, high: {high:.2e}}}"

    def plot(self, path: str) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="loss per step")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=1.8, label="smoothed")
        low, high = self.suggestion
        ax.axvspan(low, high, color="C2", alpha=0.15, label=f"suggested [{low:.1e}, {high:.1e}]")
        ax.axvline(self.min_loss_lr, color="C3", ls="--", lw=1, label=f"minimum {self.min_loss_lr:.1e}")
        ax.set_xscale("log")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            # From the starting plateau down; the divergent tail would squash the rest.
            ax.set_ylim(min(finite) * 0.9, min(max(finite), 1.5 * finite[0]) * 1.05)
        ax.set_xlabel("learning rate (log)")
        ax.set_ylabel("training loss")
        ax.set_title("LR range test")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def lr_range_test(trainable: Any, min_lr: float = 1e-6, max_lr: float = 1.0, num_steps: int = 200,
                  beta: float = 0.9, diverge_factor: float = 4.0) -> LRFindResult:
    """Sweep the LR of a set-up `TorchTrainable` (it is trained in place: use a fresh one)."""
    if not 0 < min_lr < max_lr:
        raise ValueError(f"lr range must satisfy 0 < min_lr < max_lr, got {min_lr}, {max_lr}")
    if num_steps < 10:
        raise ValueError(f"num_steps must be >= 10, got {num_steps}")
    step, optimizer = trainable.trainer, trainable.optimizer
    step.model.train()
    batches = chain.from_iterable(iter(trainable.train_batches) for _ in range(10**9))
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    for i in range(num_steps):
        lr = min_lr * (max_lr / min_lr) ** (i / (num_steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(batches)
        _, loss, _ = step.train_batch(x, y)
        value = float(loss.item())
        if not math.isfinite(value):
            stopped = True
            break
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(s)
        best = min(best, s)
        if i > 10 and s > diverge_factor * best:
            stopped = True
            break
    return _suggest(lrs, losses, smoothed, stopped)


def _suggest(lrs: list[float], losses: list[float], smoothed: list[float], stopped: bool) -> LRFindResult:
    notes = []
    if len(lrs) < 5:
        raise ValueError("the LR range test diverged within its first steps; lower min_lr")
    sm = np.asarray(smoothed)
    i_min = int(np.argmin(sm))
    min_lr = lrs[i_min]
    # Steepest descent of the smoothed loss against log(lr), before the minimum.
    log_lr = np.log(np.asarray(lrs[:i_min + 1]))
    if i_min >= 3:
        slope = np.gradient(sm[:i_min + 1], log_lr)
        steepest = lrs[int(np.argmin(slope))]
    else:
        steepest = lrs[0]
        notes.append("the loss was lowest at the start: min_lr may already be too high")
    if i_min == len(lrs) - 1 and not stopped:
        notes.append("the loss was still falling at max_lr: the range may extend higher")
    high = min_lr / HIGH_DIVISOR
    low = min(steepest, high / LOW_SPAN)
    return LRFindResult(lrs, losses, smoothed, min_lr, steepest, (low, high), stopped, notes)
