"""Detectors by name: ``create_model("cnn")``, ``create_model("timm", backbone="vgg16")``.

Every model maps a normalised RGB batch (B, 3, H, W) to the logit of "fake", shape (B,),
and carries the ``mean``/``std`` its input must be normalised with.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from deepfake.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_factory(arch: str) -> Callable[..., nn.Module]:
    if arch not in _REGISTRY:
        raise ModelError(f"model.arch={arch!r} is not a known architecture; choose one of {', '.join(list_models())}")
    return _REGISTRY[arch]


def create_model(arch: str, **kwargs) -> nn.Module:
    return get_factory(arch)(**kwargs)


# Imported for their @register side effect.
from deepfake.models import attention, cnn, hfnet, timm_backbone  # noqa: E402, F401
