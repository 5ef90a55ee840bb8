"""The registry of architectures, timm style: ``@register("name")`` on a factory, ``create_model("name", ...)``.

Every factory maps a normalised RGB batch (B, 3, H, W) to the logit of "fake", shape (B,), and its
model carries the ``mean``/``std`` its input must be normalised with. ``pretrained`` and
``weights_file`` choose how it starts: factories that have published weights take them, the
others are trained from scratch and refuse ``pretrained=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from deepfake.errors import ConfigError, ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_factory(arch: str) -> Callable[..., nn.Module]:
    if arch not in _REGISTRY:
        raise ModelError(
            f"model.net.arch={arch!r} is not a known architecture; choose one of {', '.join(list_models())}"
        )
    return _REGISTRY[arch]


# Arguments create_model hands to the factories that take them; the factory's other arguments are its options.
_START = ("image_size", "pretrained", "weights_file")


def arch_options(arch: str) -> list[str]:
    """The options of ``arch`` a config sets under ``model.net``: its factory's arguments but the ones above."""
    return [p for p in inspect.signature(get_factory(arch)).parameters if p not in _START]


def create_model(
    arch: str,
    *,
    image_size: int | None = None,
    pretrained: bool = False,
    weights_file: str | None = None,
    **options,
) -> nn.Module:
    """The network ``arch`` with its ``options`` (the keys of ``model.net`` beside ``arch``).

    ``image_size`` reaches factories that size their layers by it; ``pretrained`` and ``weights_file``
    reach those that can start from published weights. An option the factory does not take is named.
    """
    factory = get_factory(arch)
    params = inspect.signature(factory).parameters
    takes = arch_options(arch)
    if unknown := sorted(set(options) - set(takes) - set(_START)):
        raise ConfigError(
            f"model.net.{unknown[0]} is not an option of arch {arch!r}; its options are {', '.join(takes)}"
        )
    if "image_size" in params and image_size is not None:
        options["image_size"] = image_size
    if "pretrained" in params:
        options.update(pretrained=pretrained, weights_file=weights_file)
    elif pretrained or weights_file:
        raise ModelError(
            f"arch {arch!r} is trained from scratch and has no pretrained weights: set model.pretrained=false"
        )
    return factory(**options)
