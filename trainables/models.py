"""Small PyTorch classifiers: an MLP for feature vectors and a CNN for tiny images (8x8 digits).

    >>> MLP(in_features=64, n_classes=10, width=64, depth=2, dropout=0.1)
    >>> SmallCNN(image_shape=(1, 8, 8), n_classes=10, width=32, depth=2, dropout=0.1)

Both take the same knobs (width, depth, dropout) so one search space can drive either.
`depth` is hidden layers for the MLP and conv blocks for the CNN; each CNN block is
two 3x3 convs (VGG style) followed by 2x2 max pooling, so on 8x8 inputs depth is at most 3.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation: unknown {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def _check(width: int, depth: int, dropout: float) -> None:
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class MLP(nn.Module):
    """`depth` hidden layers of `width` units (Linear -> activation -> Dropout), then a linear head."""

    def __init__(self, in_features: int, n_classes: int, width: int = 64, depth: int = 2,
                 dropout: float = 0.1, activation: str = "relu") -> None:
        super().__init__()
        _check(width, depth, dropout)
        act = _activation(activation)
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), act(), nn.Dropout(dropout)]
            d = width
        layers.append(nn.Linear(d, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """`depth` blocks of [conv3x3 -> act -> conv3x3 -> act -> maxpool2]; channels double per block.

    Rows arrive flat (as stored in `data.Dataset`) and are reshaped to `image_shape` here, so
    the trainer feeds the MLP and the CNN identically.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, width: int = 32,
                 depth: int = 2, dropout: float = 0.1, activation: str = "relu") -> None:
        super().__init__()
        _check(width, depth, dropout)
        c, h, w = image_shape
        if depth < 1 or min(h, w) >> depth < 1:
            raise ValueError(f"depth must be in 1..{min(h, w).bit_length() - 1} for {h}x{w} images, got {depth}")
        act = _activation(activation)
        self.image_shape = tuple(image_shape)
        blocks: list[nn.Module] = []
        ch_in = c
        for i in range(depth):
            ch = width * 2 ** i
            blocks += [nn.Conv2d(ch_in, ch, 3, padding=1), act(),
                       nn.Conv2d(ch, ch, 3, padding=1), act(), nn.MaxPool2d(2)]
            ch_in = ch
        self.features = nn.Sequential(*blocks)
        flat = ch_in * (h >> depth) * (w >> depth)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(-1, *self.image_shape)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
