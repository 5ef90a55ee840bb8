"""Any timm model as a one-logit detector, with ImageNet weights fetched on request."""

from __future__ import annotations

import os
import socket
from contextlib import nullcontext
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

from torch import nn

from deepfake.errors import ModelError
from deepfake.models.registry import register

# Short names used by the configs; any other timm model name is passed through as is.
BACKBONE_ALIASES = {
    "vgg16": "vgg16",
    "xception": "legacy_xception",  # the Keras Xception the reference apps used
    "mobilenetv2": "mobilenetv2_100",
    "effb7": "tf_efficientnet_b7",  # the variant with published ImageNet weights
}


def _hub_reachable(timeout: float = 3.0) -> bool:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def create_backbone(backbone: str, *, pretrained: bool, weights_file: str | None, **kwargs) -> nn.Module:
    """``timm.create_model`` with errors a user can act on.

    Without network access huggingface_hub retries for about a minute before giving
    up; we check the hub first and, when it is out of reach, only look in the local
    cache, so a missing download fails in seconds.
    """
    import huggingface_hub.constants
    import timm

    name = BACKBONE_ALIASES.get(backbone, backbone)
    if not timm.is_model(name):
        raise ModelError(f"model.backbone={backbone!r} is not a timm model (see timm.list_models())")
    overlay = {}
    if weights_file:
        if not Path(weights_file).is_file():
            raise ModelError(f"model.weights_file={weights_file}: no such file")
        pretrained, overlay = True, {"pretrained_cfg_overlay": {"file": str(weights_file)}}
    offline = pretrained and not weights_file and not _hub_reachable()
    guard = mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True) if offline else nullcontext()
    try:
        with guard:
            return timm.create_model(name, pretrained=pretrained, **overlay, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        if not pretrained:
            raise
        where = f"from {weights_file}" if weights_file else "from the Hugging Face hub (no connection or not cached)"
        raise ModelError(
            f"could not load ImageNet weights for {name} {where}: {str(exc).splitlines()[0]}\n"
            "Fix: train from scratch with model.pretrained=false, or point model.weights_file=/path/to/"
            f"{name}.safetensors at a local copy of the weights."
        ) from exc


def data_config(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    return tuple(cfg["mean"]), tuple(cfg["std"])


@register("timm")
class TimmNet(nn.Module):
    """A timm model with a one-logit head (``num_classes=1``), normalised as its pretrained weights expect."""

    def __init__(self, *, backbone: str, dropout: float, pretrained: bool, weights_file: str | None):
        super().__init__()
        self.net = create_backbone(
            backbone, pretrained=pretrained, weights_file=weights_file, num_classes=1, drop_rate=dropout
        )
        self.mean, self.std = data_config(self.net)

    def forward(self, x):
        return self.net(x).squeeze(1)
