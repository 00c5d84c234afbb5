"""The training step: forward under autocast, loss, scaled backward, clipping, optimizer step.

Shared by the trial loop (`trainables.base`), the LR range test and the sanity check, so all
three train a model the same way (same AMP, clipping and loss).

    step = TrainStep(model, optimizer, loss_fn, device, grad_clip=1.0)
    outputs, loss = step.forward(x, y)
    step.backward(loss)                 # divide the loss yourself to accumulate gradients
    grad_norm = step.apply()            # unscale, measure, clip, step, zero the gradients
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainStep:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 device: torch.device, *, grad_clip: float | None = None, amp: bool = False,
                 amp_dtype: torch.dtype = torch.float16, forward_model: nn.Module | None = None,
                 channels_last: bool = False) -> None:
        self.model, self.optimizer, self.loss_fn, self.device = model, optimizer, loss_fn, device
        # A compiled model shares parameters with `model`; checkpoints use `model`'s plain names.
        self.forward_model = forward_model if forward_model is not None else model
        self.grad_clip, self.amp, self.amp_dtype, self.channels_last = grad_clip, amp, amp_dtype, channels_last
        # bfloat16 has float32's exponent range, so only float16 needs loss scaling.
        self.scaler = torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu",
                                           enabled=amp and amp_dtype == torch.float16)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs in float32, mean loss) for one batch; the model's train/eval mode is the caller's."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            outputs = self.forward_model(x)
        outputs = outputs.float()
        return outputs, self.loss_fn(outputs, y)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def apply(self) -> torch.Tensor:
        """One optimizer step on the accumulated gradients; returns the pre-clip global gradient norm
        (a device tensor: reading it would synchronise a GPU)."""
        self.scaler.unscale_(self.optimizer)  # no-op when disabled; the norm below is the true one
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.grad_clip, norm)
        self.scaler.step(self.optimizer)  # skipped by the scaler when fp16 gradients overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward + backward + apply on one batch: (outputs, loss, grad_norm)."""
        outputs, loss = self.forward(x, y)
        self.backward(loss)
        return outputs, loss, self.apply()
