"""The networks a task can train: a multilayer perceptron and a small CNN.

Both are built from the task spec alone, hold no buffers (no batch norm), and name their
parameters by attribute path (``layers.0.weight``), which is what updates and checkpoints carry.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from swarmchain.node.protocol.task import DataSpec, ModelSpec


class MLP(nn.Module):
    """Fully connected layers with ReLU between them."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        widths = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for inputs ``(batch, ...)``."""
        x = x.flatten(1)  # (batch, in_features)
        # Iterating, not slicing: a slice builds a new ModuleList on every call (~40 us).
        *hidden, last = self.layers
        for layer in hidden:
            x = F.relu(layer(x))
        out: torch.Tensor = last(x)
        return out


class CNN(nn.Module):
    """3x3 convolutions (ReLU, 2x2 max-pool while the map is at least 2x2), then an MLP."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        channels: tuple[int, ...],
        hidden: tuple[int, ...],
        num_classes: int,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        convs = []
        self.pool: list[bool] = []
        for out_c in channels:
            convs.append(nn.Conv2d(c, out_c, kernel_size=3, padding=1))
            pool = h >= 2 and w >= 2
            self.pool.append(pool)
            c, h, w = out_c, (h // 2 if pool else h), (w // 2 if pool else w)
        self.convs = nn.ModuleList(convs)
        self.head = MLP(c * h * w, hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for images ``(batch, C, H, W)``."""
        for conv, pool in zip(self.convs, self.pool, strict=True):
            x = F.relu(conv(x))
            if pool:
                x = F.max_pool2d(x, 2)
        out: torch.Tensor = self.head(x)
        return out


def build_model(model: ModelSpec, data: DataSpec) -> nn.Module:
    """Instantiate the task's network (random weights from torch's current generator).

    Parameters
    ----------
    model
        Architecture and sizes.
    data
        Input shape and number of classes.

    Returns
    -------
    torch.nn.Module
        An `MLP` or a `CNN`.
    """
    if model.arch == "mlp":
        c, h, w = data.input_shape
        return MLP(c * h * w, model.hidden, data.num_classes)
    return CNN(data.input_shape, model.channels, model.hidden, data.num_classes)
