"""Sanity checks before a sweep: the practitioner's first three minutes, automated.

    from trainables.sanity import sanity_check
    report = sanity_check(DigitsMLP(config={}))
    report.ok, print(report.render())

Checks, each named in the report when it fails:
- `initial_loss`: for classification, the loss at initialisation is close to log(C) for C classes
  (a uniform prediction); far above means a badly scaled initialisation or output layer.
- `gradients`: one backward pass gives every trainable parameter a finite, non-zero gradient; a
  parameter without one is named (not connected to the loss, e.g. a detached head or an unused
  layer; zero, e.g. dead ReLUs; non-finite, e.g. a log of 0).
- `overfit`: a few fixed batches are fitted to near-zero loss (at most OVERFIT_RATIO of the
  starting loss) with the configured optimizer and lr; failing this means the model, the loss or
  the lr cannot learn at all.

It reuses the trial loop's training step, on a freshly set-up trainable that it trains in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

INITIAL_LOSS_TOLERANCE = 0.3  # |loss - log C| <= this * log C (and at least this, for C = 2)
OVERFIT_RATIO = 0.05


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SanityReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def render(self) -> str:
        return "\n".join(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks)


def sanity_check(trainable: Any, n_batches: int = 2, steps: int = 150) -> SanityReport:
    report = SanityReport()
    step = trainable.trainer
    model = step.model
    batches = []
    for xb, yb in trainable.train_batches:
        batches.append((xb, yb))
        if len(batches) == n_batches:
            break
    classify = trainable.task_kind == "classification"

    # 1. initial loss, without dropout noise
    model.eval()
    with torch.no_grad():
        outputs, loss = step.forward(*batches[0])
    initial = float(loss)
    if classify:
        n_classes = outputs.shape[1]
        expected = math.log(n_classes)
        tol = max(INITIAL_LOSS_TOLERANCE * expected, INITIAL_LOSS_TOLERANCE)
        ok = math.isfinite(initial) and abs(initial - expected) <= tol
        report.checks.append(Check("initial_loss", ok, f"{initial:.3f} at initialisation; log({n_classes}) = "
                                   f"{expected:.3f} (tolerance {tol:.2f})" +
                                   ("" if ok else ": check the output layer's scale and the loss")))
    else:
        ok = math.isfinite(initial)
        report.checks.append(Check("initial_loss", ok, f"{initial:.4g} at initialisation (regression: "
                                   "only finiteness is checked)"))

    # 2. gradients of every trainable parameter
    model.train()
    step.optimizer.zero_grad(set_to_none=True)
    _, loss = step.forward(*batches[0])
    loss.backward()
    missing, zero, non_finite = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        elif not bool(torch.isfinite(p.grad).all()):
            non_finite.append(name)
        elif not bool((p.grad != 0).any()):
            zero.append(name)
    step.optimizer.zero_grad(set_to_none=True)
    problems = []
    if missing:
        problems.append(f"no gradient (not connected to the loss: detached or unused?) for {_names(missing)}")
    if non_finite:
        problems.append(f"non-finite gradient for {_names(non_finite)}")
    if zero:
        problems.append(f"zero gradient for {_names(zero)}")
    n_params = sum(1 for p in model.parameters() if p.requires_grad)
    report.checks.append(Check("gradients", not problems,
                               "; ".join(problems) or f"finite and non-zero for all {n_params} parameters"))

    # 3. overfit a few fixed batches
    start = _loss_on(step, batches)
    for i in range(steps):
        step.train_batch(*batches[i % len(batches)])
    final = _loss_on(step, batches)
    limit = OVERFIT_RATIO * start
    ok = math.isfinite(final) and final <= limit
    report.checks.append(Check("overfit", ok, f"loss on {len(batches)} fixed batches {start:.3g} -> {final:.3g} "
                               f"after {steps} steps (needs <= {limit:.3g})" +
                               ("" if ok else ": the model cannot fit even a few batches; check the model, "
                                              "the loss and the lr")))
    return report


@torch.no_grad()
def _loss_on(step: Any, batches: list) -> float:
    step.model.eval()
    total = sum(float(step.forward(x, y)[1]) * len(y) for x, y in batches)
    step.model.train()
    return total / sum(len(y) for _, y in batches)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
