"""Lightning training: the detector module and ``train(cfg)``, which turns a composed config into a run.

A run directory receives ``split.csv``, ``config.yaml`` (resolved), ``checkpoints/``
(best by val AUROC, ``last.ckpt``, and ``on_exception.ckpt`` after a crash),
the logger's ``metrics.csv``, ``curves.png`` after fitting and, after testing, ``metrics.json``.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torchmetrics
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import nn

from deepfake.data import DeepfakeDataModule, write_split
from deepfake.errors import ConfigError
from deepfake.models import create_model, get_factory
from deepfake.preprocess import Preprocess

log = logging.getLogger(__name__)

# Keys of the model config that configure optimisation, not the architecture.
OPTIM_KEYS = ("name", "lr", "weight_decay", "lr_patience", "lr_factor", "mixup")


def metric_collection(prefix: str) -> torchmetrics.MetricCollection:
    """Metrics with "fake" (label 1) as the positive class."""
    from torchmetrics import classification as C

    return torchmetrics.MetricCollection(
        {
            "acc": C.BinaryAccuracy(),
            "precision": C.BinaryPrecision(),
            "recall": C.BinaryRecall(),
            "f1": C.BinaryF1Score(),
            "auroc": C.BinaryAUROC(),
        },
        prefix=prefix,
    )


def build_network(model_cfg: dict, image_size: int) -> nn.Module:
    arch_cfg = {k: v for k, v in model_cfg.items() if k not in OPTIM_KEYS}
    arch = arch_cfg.pop("arch", None)
    params = inspect.signature(get_factory(arch)).parameters
    if arch_cfg.get("pretrained") is False and "pretrained" not in params:
        # True of any model trained from scratch, so one sweep over several models can say it once:
        # python train.py -m model=cnn,mobilenetv2 ++model.pretrained=false
        del arch_cfg["pretrained"]
    unknown = sorted(set(arch_cfg) - set(params))
    if unknown:
        raise ConfigError(
            f"model.{unknown[0]} is not an option of model.arch={arch}; its options are {', '.join(params)}"
        )
    if "image_size" in params:
        arch_cfg["image_size"] = image_size
    return create_model(arch, **arch_cfg)


class LitDetector(L.LightningModule):
    """Binary real/fake detector: BCE on the logit of "fake", Adam, ReduceLROnPlateau on val loss."""

    def __init__(self, model: dict, image_size: int = 128):
        super().__init__()
        self.save_hyperparameters()
        if not float(model.get("lr", 1e-3)) > 0:
            raise ConfigError(f"model.lr={model.get('lr')} must be positive")
        self.net = build_network(model, image_size)
        self.preprocess = Preprocess(image_size, self.net.mean, self.net.std)
        self.loss = nn.BCEWithLogitsLoss()
        # ModuleDict keys must not shadow nn.Module attributes such as .train
        self.metrics = nn.ModuleDict({f"{s}_metrics": metric_collection(f"{s}/") for s in ("train", "val", "test")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str):
        if batch is None:  # every image of the batch failed to decode
            return None
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(torch.sigmoid(logits.detach()), y.int())
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        alpha = float(self.hparams.model.get("mixup", 0.0))
        if alpha > 0 and batch is not None:
            return self._mixup_step(batch, alpha)
        return self._step(batch, "train")

    def _mixup_step(self, batch, alpha: float):
        """Mixup: train on blends of two images with the same blend of their labels, a regulariser
        for small datasets. Training metrics count the label that dominates each blend."""
        x, y = batch
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
        cfg = self.hparams.model
        optimizer = torch.optim.Adam(
            self.parameters(), lr=cfg.get("lr", 1e-3), weight_decay=cfg.get("weight_decay", 0.0)
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.get("lr_factor", 0.5), patience=cfg.get("lr_patience", 2)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The contract travels with the weights so export needs nothing else.
        checkpoint["preprocess"] = self.preprocess.to_dict()


class EpochTimer(L.Callback):
    """Logs ``time/epoch_s``, the wall time of each training epoch (validation excluded)."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("time/epoch_s", time.perf_counter() - self._start, on_epoch=True, sync_dist=True)


def resolve_precision(value) -> str | int:
    """``mixed`` picks bf16 where the GPU supports it (Ampere and later), else fp16 (T4, P100)."""
    if value != "mixed":
        return value
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def write_curves(run_dir: Path) -> None:
    """curves.png from the run's metrics.csv; a picture that cannot be drawn never fails the run."""
    from deepfake.curves import plot_curves

    try:
        plot_curves(run_dir)
    except Exception as exc:
        log.warning("could not draw %s: %s", run_dir / "curves.png", exc)


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, and write the run's files. Returns the test metrics."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = LitDetector(model=model_cfg, image_size=int(cfg.data.image_size))
    datamodule = DeepfakeDataModule(
        cfg.data.root,
        module.preprocess,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.seed,
        augment=OmegaConf.to_container(cfg.data.augment, resolve=True),
    )
    datamodule.prepare()
    if rank_zero_only.rank == 0:
        write_split(datamodule.samples, run_dir / "split.csv")
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file")

    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=_instantiate_all(cfg.get("callbacks")),
        logger=_instantiate_all(cfg.get("logger")) or False,
        precision=resolve_precision(cfg.trainer.get("precision", "32-true")),
    )
    with warnings.catch_warnings():
        # With OnExceptionCheckpoint, Lightning resumes from the newest last/on_exception checkpoint of
        # the run directory when ckpt_path is unset, and warns when there is none: a fresh run.
        warnings.filterwarnings("ignore", message=r".*ckpt_path=(None|\"last\")\)? (was called|is set)")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.is_global_zero:
        write_curves(run_dir)
    if trainer.interrupted:
        log.warning("training interrupted; resume with ckpt_path=%s", run_dir / "checkpoints" / "last.ckpt")
        return {}
    if not cfg.get("test", True):
        return {}

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    metrics["best_checkpoint"] = best
    metrics["data"] = {"root": str(cfg.data.root), "layout": datamodule.layout, **datamodule.summary()}
    metrics["skipped_files"] = len(datamodule.bad_files)
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
