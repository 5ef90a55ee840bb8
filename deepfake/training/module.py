"""The LightningModule: a real/fake detector in training, built from the resolved ``model`` settings."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from deepfake.errors import ConfigError
from deepfake.faces import FaceStage
from deepfake.metrics import metric_collection
from deepfake.models import create_model
from deepfake.preprocess import Preprocess
from deepfake.training.config import check_model_settings

STAGES = ("train", "val", "test")


class DeepfakeLitModule(L.LightningModule):
    """A real/fake detector in training: the loss ``model.loss`` names (BCE on the logit of "fake"), optional
    mixup, and the optimiser and learning-rate schedule that ``model.optimizer`` and ``model.scheduler`` name
    (``_partial_`` config nodes, called here with the parameters and the optimiser; ``model.scheduler.monitor``
    is the metric a ReduceLROnPlateau steps on).

    ``model`` is the resolved model config (configs/model/*.yaml): ``net`` builds the network, ``pretrained``
    and ``weights_file`` choose its starting weights. It is saved in the checkpoint's hyperparameters, with
    ``faces``, the face stage the data was cropped with (a FaceStage as a dict; None: whole images), and
    ``datasets``, the names of the run's datasets: the test metrics are logged for each as ``test/<name>/auroc``...
    """

    def __init__(
        self, model: Mapping, image_size: int, faces: Mapping | None = None, datasets: list[str] | None = None
    ):
        super().__init__()
        self.save_hyperparameters()
        check_model_settings(model)
        self.net = create_model(
            **model["net"],
            image_size=image_size,
            pretrained=bool(model["pretrained"]),
            weights_file=model.get("weights_file"),  # only the timm configs have one
        )
        self.preprocess = Preprocess(image_size, self.net.mean, self.net.std)
        self.faces = FaceStage.from_dict(dict(faces)) if faces else None
        self.mixup = float(model["mixup"])
        self.loss = build_node(model["loss"], "loss")
        # ModuleDict keys must not shadow nn.Module attributes such as .train
        self.metrics = nn.ModuleDict({f"{s}_metrics": metric_collection(f"{s}/") for s in STAGES})
        # Their states are not saved, so checkpoints of runs with other datasets still load.
        self.dataset_metrics = nn.ModuleList(metric_collection(f"test/{name}/") for name in datasets or [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str):
        if batch is None:  # every image of the batch failed to decode
            return None
        x, y, dataset = batch
        logits = self(x)
        loss = self.loss(logits, y)
        metrics = self.metrics[f"{stage}_metrics"]
        p_fake = torch.sigmoid(logits.detach())
        metrics.update(p_fake, y.int())
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(y))
        if stage == "test":
            for index, per_dataset in enumerate(self.dataset_metrics):
                mine = dataset == index
                if mine.any():
                    per_dataset.update(p_fake[mine], y[mine].int())
        return loss

    def on_test_epoch_end(self) -> None:
        # Computed here, not logged per step: a dataset may be absent from a batch, or from the whole test split.
        for per_dataset in self.dataset_metrics:
            if any(metric.update_called for metric in per_dataset.values()):
                self.log_dict(per_dataset.compute())
            per_dataset.reset()

    def training_step(self, batch, batch_idx):
        if self.mixup > 0 and batch is not None:
            return self._mixup_step(batch, self.mixup)
        return self._step(batch, "train")

    def _mixup_step(self, batch, alpha: float):
        """Mixup: train on blends of two images with the same blend of their labels, a regulariser
        for small datasets. Training metrics count the label that dominates each blend."""
        x, y, _ = batch
        lam = torch.distributions.Beta(alpha, alpha).sample().item()
        perm = torch.randperm(len(y), device=x.device)
        mixed_y = lam * y + (1 - lam) * y[perm]
        logits = self(lam * x + (1 - lam) * x[perm])
        loss = self.loss(logits, mixed_y)
        metrics = self.metrics["train_metrics"]
        metrics.update(torch.sigmoid(logits.detach()), (mixed_y > 0.5).int())
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = call_node(self.hparams.model["optimizer"], "optimizer", params=self.parameters())
        if not self.hparams.model.get("scheduler"):  # ~model/scheduler: a constant learning rate
            return optimizer
        node = dict(self.hparams.model["scheduler"])
        # The metric ReduceLROnPlateau steps on, not an argument of the scheduler; Lightning hands it only to
        # schedulers that take one.
        monitor = node.pop("monitor", None)
        scheduler = call_node(node, "scheduler", optimizer=optimizer)
        if monitor is None and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ConfigError("model.scheduler.monitor: ReduceLROnPlateau steps on a metric; name one, e.g. val/loss")
        settings = {"scheduler": scheduler} | ({"monitor": monitor} if monitor is not None else {})
        return {"optimizer": optimizer, "lr_scheduler": settings}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The contract travels with the weights so export needs nothing else.
        checkpoint["preprocess"] = self.preprocess.to_dict()
        checkpoint["faces"] = self.faces.to_dict() if self.faces else None


def build_node(node: Mapping, key: str):
    """Instantiate ``model.<key>``, a ``_target_`` node."""
    try:
        return instantiate(node)
    except (InstantiationException, TypeError, ValueError) as exc:
        target = node.get("_target_") if isinstance(node, Mapping) else node
        raise ConfigError(f"model.{key} ({target}) cannot be used: {reason(exc)}") from exc


def call_node(node: Mapping, key: str, **arguments):
    """Instantiate ``model.<key>``, ``node`` (a ``_target_`` node with ``_partial_: true``), and call it with
    ``arguments``."""
    try:
        return instantiate(node)(**arguments)
    except (InstantiationException, TypeError, ValueError) as exc:
        partial = isinstance(node, Mapping) and node.get("_partial_") is True
        target = node.get("_target_") if isinstance(node, Mapping) else node
        hint = "" if partial else "; it must be a _target_ node with _partial_: true"
        raise ConfigError(f"model.{key} ({target}) cannot be used: {reason(exc)}{hint}") from exc


def reason(exc: Exception) -> str:
    """What Hydra's instantiate error says went wrong, without its framing lines."""
    text = str(exc).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
    lines = [line.strip() for line in text.strip().splitlines()]
    kept = [line for line in lines if line and not line.startswith(("Error in call to target", "full_key:"))]
    return " ".join(kept) or lines[0]
