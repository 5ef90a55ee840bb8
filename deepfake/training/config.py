"""The types of train.py's config (configs/train.yaml and its groups hold the values). Registered with Hydra by
:func:`store_config`, so a value of the wrong type is refused when the command line is composed. The ``data``
settings are :class:`deepfake.data.config.DataConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from deepfake.data.config import DataConfig
from deepfake.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = MISSING  # names the run directory and the exported model
    pretrained: bool = MISSING
    lr: float = MISSING  # what model.optimizer.lr is set to
    mixup: float = MISSING
    loss: dict[str, Any] = MISSING  # a _target_ node: called with (logits, targets in [0, 1])
    net: dict[str, Any] = MISSING  # deepfake.models.create_model(**net)
    optimizer: dict[str, Any] = MISSING  # _target_ + _partial_: called with the parameters
    # _target_ + _partial_: called with the optimiser, and its monitor (the metric a plateau scheduler steps on);
    # none: a constant lr
    scheduler: dict[str, Any] | None = None
    backbone: str | None = None  # the timm configs: what model.net.backbone follows
    weights_file: str | None = None  # the timm configs: local ImageNet weights instead of the hub


@dataclass
class TrainerConfig:
    """lightning.pytorch.Trainer's arguments that configs/trainer/*.yaml set; add others with +trainer.<name>=."""

    _target_: str = MISSING
    default_root_dir: str = MISSING
    accelerator: str = MISSING
    strategy: str = MISSING
    devices: Any = MISSING  # a count, a list of device ids, or -1 for all
    num_nodes: int = MISSING
    precision: Any = MISSING  # "32-true", "16-mixed", "bf16-mixed", or "mixed": the best the GPU supports
    max_epochs: int = MISSING
    min_epochs: int = MISSING
    log_every_n_steps: int = MISSING
    gradient_clip_val: float | None = MISSING
    deterministic: Any = MISSING  # true, false or "warn"
    benchmark: bool | None = MISSING
    sync_batchnorm: bool = MISSING


@dataclass
class TrainConfig:
    seed: int = MISSING
    run_dir: str = MISSING
    ckpt_path: str | None = MISSING
    test: bool = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)
    logger: dict[str, Any] = field(default_factory=dict)


def store_config() -> None:
    """Register :class:`TrainConfig` with Hydra as ``train_schema``, the schema configs/train.yaml starts from."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def check_model_settings(model: Mapping) -> None:
    """A key of ``model`` that is not a model setting is most often a network option put one level too high."""
    settings = {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown := sorted(set(model) - settings):
        raise ConfigError(
            f"model.{unknown[0]} is not a model setting ({', '.join(sorted(settings))}); "
            f"an option of the network goes under model.net: model.net.{unknown[0]}"
        )
