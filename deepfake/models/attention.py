"""Attention-GAP head on a timm backbone (EfficientNet-B7 in the ``effb7_att`` config).

A small 1x1-conv branch predicts a spatial mask in [0, 1]. The head pools the feature map
weighted by the mask, normalised by the mask's own total: the pooled vector is a mask-weighted
average of the features (what GAP(features x mask) / GAP(mask) computes), not one shrunk by
sparse masks. The weights are computed as softmax(log mask), which stays exact when the whole
mask is near zero, where the plain ratio would divide one underflowing number by another.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepfake.errors import ModelError
from deepfake.models.registry import register
from deepfake.models.timm_backbone import create_backbone, data_config

# The mask branch's widths before its last 1x1 conv to one channel: model.net.attention in configs/model/effb7_att.yaml;
# this default builds checkpoints saved before it was a setting.
ATTENTION_WIDTHS = (64, 16, 8)


class AttentionGAPHead(nn.Module):
    def __init__(self, channels: int, *, hidden: int, dropout: float, widths: Sequence[int] = ATTENTION_WIDTHS):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ModelError(f"model.net.attention={list(widths)} must list one or more positive widths")
        self.norm = nn.BatchNorm2d(channels)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((channels, *widths[:-1]), widths, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True)]
        self.attention = nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, 1), nn.Sigmoid())
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.norm(features)
        scores = self.attention[:-1](features)  # (B, 1, h, w), the mask before its sigmoid
        mask = torch.sigmoid(scores)
        # Weights mask / sum(mask), computed as softmax(log(mask)): when the whole mask is near 0 (sigmoid of large
        # negative scores, seen on inputs unlike the training data) the plain ratio GAP(f*m) / GAP(m) divides one
        # underflowing value by another, and PyTorch and onnxruntime then disagree by whole units of logit.
        # log(sigmoid(s)) written out: onnxruntime's Sigmoid is 0 below about -18, and log(0) would give NaN.
        log_mask = scores.clamp(max=0) - torch.log1p(torch.exp(-scores.abs()))
        weights = torch.softmax(log_mask.flatten(2), dim=-1)  # (B, 1, h*w), sums to 1
        pooled = (features.flatten(2) * weights).sum(dim=-1)
        return self.classifier(pooled).squeeze(1), mask


@register("attention")
class AttentionNet(nn.Module):
    """timm backbone features -> :class:`AttentionGAPHead`; ``forward(x, return_mask=True)`` also returns the mask."""

    def __init__(
        self,
        *,
        backbone: str,
        dropout: float,
        hidden: int,
        pretrained: bool,
        weights_file: str | None,
        attention: Sequence[int] = ATTENTION_WIDTHS,
    ):
        super().__init__()
        self.backbone = create_backbone(
            backbone, pretrained=pretrained, weights_file=weights_file, num_classes=0, global_pool=""
        )
        self.mean, self.std = data_config(self.backbone)
        self.head = AttentionGAPHead(self.backbone.num_features, hidden=hidden, dropout=dropout, widths=attention)

    def forward(self, x: torch.Tensor, return_mask: bool = False):
        logits, mask = self.head(self.backbone.forward_features(x))
        return (logits, mask) if return_mask else logits
