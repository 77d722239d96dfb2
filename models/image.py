"""The image model: an item's category from its picture.

Images are decoded with Pillow (there is no CPU torchvision here), turned grey and scaled to
28 x 28, the size of Fashion-MNIST's product photos, which the benchmark trains it on. A small CNN:
two blocks of two 3 x 3 convolutions (batch-normalised) and a max-pool, then one hidden layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.classifier import ContentClassifier, GrowingHead
from models.pixels import SIDE, decode_image


class _ImageNet(nn.Module):
    def __init__(self, labels: int, config: dict[str, Any]) -> None:
        super().__init__()
        a, b, hidden = int(config["channels"][0]), int(config["channels"][1]), int(config["hidden"])

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(1, a), block(a, b), nn.Flatten())
        self.hidden = nn.Sequential(
            nn.Linear(b * (SIDE // 4) ** 2, hidden), nn.ReLU(), nn.Dropout(float(config["dropout"]))
        )
        self.head = GrowingHead(hidden, labels)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.hidden(self.features(pixels))
        return self.head(features), features


class ImageClassifier(ContentClassifier):
    """One category of an item from its image (inputs: 28 x 28 uint8 arrays, or image bytes)."""

    name = "image"
    kind: ClassVar[str] = "single"
    defaults: ClassVar[dict[str, Any]] = {
        "channels": [16, 32],
        "hidden": 64,
        "dropout": 0.25,
        "lr": 2e-3,
    }

    def build(self) -> nn.Module:
        return _ImageNet(len(self.labels), self.config)

    def encode(self, inputs: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        pixels = np.stack(
            [x if isinstance(x, np.ndarray) else decode_image(x) for x in inputs]
        ).astype(np.float32)
        # Fashion-MNIST's mean and deviation: the scale the network was designed around.
        return (torch.from_numpy((pixels / 255.0 - 0.286) / 0.353).unsqueeze(1),)
