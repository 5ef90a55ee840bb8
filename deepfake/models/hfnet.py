"""Small detectors for CPU: global pooling, native resolution, optional high-pass input.

Generated faces give themselves away in high frequencies (up-sampling checkerboards,
smoothed skin texture) more than in what the face looks like. Resizing a 256 px image
to 64 px removes exactly that, so these models read the image at its native size and
downsample early with a learned patch embedding (a strided conv sees every pixel and can
learn high-pass filters). ``highpass=true`` adds fixed residual channels, image minus
its 3x3 local mean, so the network starts from the noise residual that forensics
detectors (SRM filters) use. Global average pooling instead of a dense head keeps the
parameter count low, which is what 1,600 training images can support.
"""

from __future__ import annotations

import torch
from torch import nn

from deepfake.errors import ModelError
from deepfake.models.cnn import PLAIN
from deepfake.models.registry import register


class HighPass(nn.Module):
    """Appends x - box3x3(x) per channel: a fixed, parameter-free noise residual."""

    def __init__(self, channels: int = 3, gain: float = 4.0):
        super().__init__()
        kernel = -torch.ones(channels, 1, 3, 3) / 9.0
        kernel[:, :, 1, 1] += 1.0
        self.register_buffer("kernel", kernel * gain)
        self.channels = channels

    def forward(self, x):
        residual = nn.functional.conv2d(x, self.kernel, padding=1, groups=self.channels)
        return torch.cat([x, residual], dim=1)


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2 if stride == 1 else 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


@register("hfnet")  # the class is its own factory: its __init__ lists the options (configs/model/hfnet.yaml)
class HFNet(nn.Module):
    """Patch-embedding stem, conv-BN-ReLU stages with max-pooling between them, GAP, dropout, logit."""

    mean, std = PLAIN["mean"], PLAIN["std"]

    def __init__(
        self,
        *,
        image_size: int,
        stem_stride: int,
        widths: tuple[int, ...],
        depth: int,
        highpass: bool,
        dropout: float,
        pool_grid: int,
        global_max: bool,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or depth < 1 or stem_stride < 1:
            raise ModelError("model hfnet needs positive widths, depth and stem_stride")
        if pool_grid < 1:
            raise ModelError(f"model.pool_grid={pool_grid} must be at least 1")
        if image_size // stem_stride < 2 ** (len(widths) - 1):
            raise ModelError(
                f"model hfnet: data.image_size={image_size} is too small for stem_stride={stem_stride} "
                f"and {len(widths)} stages"
            )
        layers: list[nn.Module] = [HighPass()] if highpass else []
        # stride 1: an ordinary 3x3 stem; stride s > 1: an s x s patch embedding that sees every pixel once.
        stem_kernel = stem_stride if stem_stride > 1 else 3
        layers += conv_bn(6 if highpass else 3, widths[0], kernel=stem_kernel, stride=stem_stride)
        c_in = widths[0]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(depth):
                layers += conv_bn(c_in, width)
                c_in = width
        self.features = nn.Sequential(*layers)
        # pool_grid=1 is global average pooling; g > 1 keeps a coarse g x g layout, for aligned faces
        # where *where* a colour or texture sits (background, hair, skin) is part of the evidence.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(pool_grid), nn.Flatten())
        # global_max adds the strongest response anywhere: one local artefact (a GAN "droplet")
        # would be averaged away by the mean alone.
        self.max_pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()) if global_max else None
        width = c_in * pool_grid**2 + (c_in if global_max else 0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 1))

    def forward(self, x):
        features = self.features(x)
        pooled = self.pool(features)
        if self.max_pool is not None:
            pooled = torch.cat([pooled, self.max_pool(features)], dim=1)
        return self.head(pooled).squeeze(1)
