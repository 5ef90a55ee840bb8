"""Detectors by name: ``create_model("cnn")``, ``create_model("timm", backbone="vgg16", pretrained=True)``.

One module per family (cnn.py, hfnet.py, timm_backbone.py, attention.py), each registering its
factories in :mod:`deepfake.models.registry`.
"""

from __future__ import annotations

import inspect

from torch import nn

# The families register themselves when imported.
from deepfake.models import attention, cnn, hfnet, timm_backbone  # noqa: F401
from deepfake.models.registry import arch_options, create_model, get_factory, list_models, register

__all__ = ["arch_options", "create_model", "get_factory", "list_models", "register", "returns_attention"]


def returns_attention(net: nn.Module) -> bool:
    """Whether the network can also return its attention mask: ``forward(x, return_mask=True)`` (attention.py)."""
    return "return_mask" in inspect.signature(net.forward).parameters
