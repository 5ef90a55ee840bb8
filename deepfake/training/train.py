"""``train(cfg)``: a composed config becomes a run: the data module and the LightningModule built from its
``data`` and ``model`` settings, the trainer, callbacks and loggers from their ``_target_`` nodes, and the run's
files.

A run directory receives ``split.csv``, ``config.yaml`` (resolved), ``checkpoints/`` (best by
val AUROC, ``last.ckpt``, and ``on_exception.ckpt`` after a crash), the logger's ``metrics.csv``,
``curves.png`` after fitting and, after testing, ``metrics.json``. A checkpoint carries the model
config it was trained with and the preprocessing contract, so export, evaluation and explanations
rebuild its network from the checkpoint alone (:mod:`deepfake.training.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from deepfake.data.datamodule import DeepfakeDataModule
from deepfake.errors import ConfigError
from deepfake.images import encode_image
from deepfake.samples import write_split
from deepfake.sbi import sample_sheet
from deepfake.training.config import check_model_settings
from deepfake.training.module import DeepfakeLitModule, reason

log = logging.getLogger(__name__)


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


def _instantiate(node, what: str, **kwargs):
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        raise ConfigError(f"{what}: {reason(exc)}") from exc


def _instantiate_all(group: DictConfig | None, what: str) -> list:
    return [
        _instantiate(node, f"{what}.{name}")
        for name, node in (group or {}).items()
        if node is not None and "_target_" in node
    ]


def write_curves(run_dir: Path) -> None:
    """curves.png from the run's metrics.csv; a picture that cannot be drawn never fails the run."""
    from deepfake.curves import plot_curves

    try:
        plot_curves(run_dir)
    except Exception as exc:
        log.warning("could not draw %s: %s", run_dir / "curves.png", exc)


def write_pseudo_fake_samples(datamodule: DeepfakeDataModule, path: Path) -> None:
    """sbi_samples.png: 16 real / pseudo-fake / mask triplets at the model's input size, when pseudo-fakes are on."""
    if datamodule.blender is None:
        return
    datamodule.setup("fit")
    examples = datamodule.pseudo_fake_examples(16)
    if examples:
        path.write_bytes(encode_image(sample_sheet(examples), ".png"))
        log.info("pseudo-fakes: %s shows %d pairs and their masks", path, len(examples))


def train(cfg: DictConfig) -> dict:
    """Fit, test the best checkpoint, and write the run's files. Returns the test metrics."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    check_model_settings(model_cfg)  # named before the data is read: the cheaper mistake to report first
    # The data settings are checked and the datasets found before the network is built.
    datamodule = DeepfakeDataModule(cfg.data, seed=cfg.seed)
    faces = datamodule.faces
    module = DeepfakeLitModule(
        model=model_cfg,
        image_size=datamodule.settings.image_size,
        faces=faces.to_dict() if faces else None,
        datasets=datamodule.names,
    )
    datamodule.preprocess = module.preprocess
    datamodule.collect_samples()
    if rank_zero_only.rank == 0:
        write_split(datamodule.samples, run_dir / "split.csv")
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        write_pseudo_fake_samples(datamodule, run_dir / "sbi_samples.png")

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    # A bad model.optimizer or model.scheduler is named now, not as a crash inside fit that leaves a checkpoint.
    module.configure_optimizers()

    trainer: L.Trainer = _instantiate(
        cfg.trainer,
        "trainer",
        callbacks=_instantiate_all(cfg.get("callbacks"), "callbacks"),
        logger=_instantiate_all(cfg.get("logger"), "logger") or False,
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
    metrics["data"] = datamodule.describe()
    metrics["skipped_files"] = len(datamodule.bad_files)
    if faces is not None:
        metrics["faces"] = {
            "stage": faces.to_dict(),
            "per_class": datamodule.face_counts,
            "no_face": cfg.data.no_face,
            "no_face_files": datamodule.no_face_files,
        }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
