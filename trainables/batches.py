"""Mini-batches for the trial loop: in-memory tensors (the fast path) or any torch DataLoader.

Both yield `(x, y)` already on the training device and know how many batches an epoch has, which
gradient accumulation and per-step LR schedules need.
"""

from __future__ import annotations

from typing import Iterator

import torch


class TensorBatches:
    """Shuffled (or ordered) slices of tensors that already live on the device.

    Shuffling draws from `generator` only, so the order does not depend on how many dropout masks
    were sampled from the global torch RNG; checkpointing the generator restores it exactly.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"data: {len(x)} inputs but {len(y)} targets")
        if len(x) == 0:
            raise ValueError("data: an empty split")
        self.x, self.y, self.batch_size, self.shuffle, self.generator = x, y, batch_size, shuffle, generator
        self.n_samples = len(y)

    def __len__(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = self.n_samples, self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                yield self.x[idx], self.y[idx]
        else:
            for i in range(0, n, bs):
                yield self.x[i:i + bs], self.y[i:i + bs]


class LoaderBatches:
    """A DataLoader's batches moved to the device; a batch is `(x, y, ...)` or `{"x", "y"}`."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device
        try:
            self.n_samples = len(loader.dataset)
        except TypeError:  # an iterable dataset may not know its size
            self.n_samples = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for batch in self.loader:
            if isinstance(batch, dict):
                x, y = batch["x"], batch["y"]
            else:
                x, y = batch[0], batch[1]
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)
