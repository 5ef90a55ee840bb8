"""The two baseline CNNs of the reference apps, trained from scratch on [0, 1] RGB (configs/model/cnn*.yaml)."""

from __future__ import annotations

from torch import nn

from deepfake.errors import ModelError
from deepfake.models.registry import register

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


class _CNN(nn.Module):
    mean, std = PLAIN["mean"], PLAIN["std"]

    def forward(self, x):
        return self.head(self.features(x)).squeeze(1)


@register("cnn")  # the classes are their own factories: __init__ lists the options (configs/model/cnn*.yaml)
class ReferenceCNN(_CNN):
    """First reference app: conv32-pool-conv64-pool-dense128-dropout-logit (Keras 'valid' convs)."""

    def __init__(self, *, image_size: int, dropout: float):
        super().__init__()
        side = ((image_size - 2) // 2 - 2) // 2
        if side < 1:
            raise ModelError(f"model cnn needs data.image_size of at least 10, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, 1),
        )


@register("cnn_deep")
class DeepCNN(_CNN):
    """Second reference app: four conv-BN-ReLU-pool blocks (32..256), dense 512-256-128 with dropout."""

    def __init__(self, *, image_size: int, dropout: float):
        super().__init__()
        side = image_size // 16
        if side < 1:
            raise ModelError(f"model cnn_deep needs data.image_size of at least 16, got {image_size}")
        blocks, c_in = [], 3
        for c_out in (32, 64, 128, 256):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            blocks.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        dense, width = [nn.Flatten()], 256 * side * side
        for units in (512, 256, 128):
            dense += [nn.Linear(width, units), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = units
        self.head = nn.Sequential(*dense, nn.Linear(width, 1))
