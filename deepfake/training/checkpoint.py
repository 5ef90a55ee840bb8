"""Reading back what a training run saved, without Lightning or Hydra: a checkpoint is read with
``torch.load(weights_only=True)``, its network rebuilt from the model config it carries.

Export, evaluation, comparison, explanations and the command line import this module alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepfake.errors import ModelError
from deepfake.faces import FaceStage
from deepfake.models import arch_options, create_model
from deepfake.preprocess import Preprocess


@dataclass
class Checkpoint:
    """A training checkpoint read back: its network in eval mode on CPU, and what describes it."""

    net: nn.Module
    preprocess: Preprocess
    config: dict  # the model config it was trained with (configs/model/*.yaml, resolved)
    path: Path
    run_dir: Path | None  # the training run it came from, when it can be found
    faces: FaceStage | None = None  # the face stage its data was cropped with; None: whole images

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.config.get("net", {}).get("arch") or self.config.get("arch"))

    def run_file(self, name: str) -> Path | None:
        path = self.run_dir / name if self.run_dir else None
        return path if path and path.is_file() else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or for a run directory its best checkpoint (from metrics.json), else last.ckpt."""
    path = Path(path)
    if not path.is_dir():
        return path
    metrics = path / "metrics.json"
    best = json.loads(metrics.read_text()).get("best_checkpoint") if metrics.is_file() else None
    if best and Path(best).is_file():
        return Path(best)
    if (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt"
    raise ModelError(f"ckpt={path} is a directory without metrics.json's best checkpoint or checkpoints/last.ckpt")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the network of a checkpoint written by train.py (or a run directory's best), in eval mode on CPU.

    The file is read with ``weights_only=True``, which never runs code from it. The network is built
    from the saved config without pretrained weights (the saved state replaces them all), so nothing
    is downloaded and ``model.weights_file`` need not exist any more.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise ModelError(f"ckpt={path}: no such checkpoint file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle that would need code to load
        raise ModelError(
            f"ckpt={path} is corrupt or not a checkpoint written by train.py "
            "(it is read with weights_only=True, which never runs code from the file)"
        ) from exc
    try:
        hparams, state = saved["hyper_parameters"], saved["state_dict"]
        model_cfg, image_size = dict(hparams["model"]), int(hparams["image_size"])
        preprocess = Preprocess(**saved["preprocess"])
        faces = FaceStage.from_dict(saved["faces"]) if saved.get("faces") else None
        net_cfg = net_config(model_cfg)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"ckpt={path} was not written by train.py (missing {exc})") from exc
    net = create_model(**net_cfg, image_size=image_size)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelError(f"ckpt={path}: weights do not fit model {net_cfg['arch']}: {exc}") from exc
    return Checkpoint(net.eval(), preprocess, model_cfg, path, run_of(path), faces)


def run_of(path: str | os.PathLike) -> Path | None:
    """The training run of a run directory (itself) or of a checkpoint in a run's ``checkpoints/`` folder; None
    for a checkpoint anywhere else."""
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else None


def net_config(model_cfg: Mapping) -> dict:
    """The ``net`` node of a saved model config.

    Checkpoints of deepfake 0.1 kept the architecture's options beside the optimiser's in one flat dict;
    there the options are the ones the architecture's factory takes.
    """
    if "net" in model_cfg:
        return dict(model_cfg["net"])
    arch = model_cfg["arch"]
    takes = arch_options(arch)
    return {"arch": arch, **{k: v for k, v in model_cfg.items() if k in takes}}
