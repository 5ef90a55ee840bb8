"""Training: the LightningModule, ``train(cfg)`` which turns a composed config into a run, and
``load_checkpoint`` which reads back what a run saved.

A run directory receives ``split.csv``, ``config.yaml`` (resolved), ``checkpoints/`` (best by
val AUROC, ``last.ckpt``, and ``on_exception.ckpt`` after a crash), the logger's ``metrics.csv``,
``curves.png`` after fitting and, after testing, ``metrics.json``. A checkpoint carries the model
config it was trained with and the preprocessing contract, so export, evaluation and explanations
rebuild its network from the checkpoint alone: offline, without pretrained weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from deepfake.data import DataConfig, DeepfakeDataModule, face_stage
from deepfake.samples import dataset_specs, write_split
from deepfake.errors import ConfigError, ModelError
from deepfake.faces import FaceStage
from deepfake.images import encode_image
from deepfake.metrics import metric_collection
from deepfake.models import arch_options, create_model
from deepfake.preprocess import Preprocess
from deepfake.sbi import sample_sheet

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


# The types of train.py's config (configs/train.yaml and its groups hold the values). Registered with Hydra
# by store_config(), so a value of the wrong type is refused when the command line is composed.
@dataclass
class ModelConfig:
    name: str = MISSING  # names the run directory and the exported model
    pretrained: bool = MISSING
    lr: float = MISSING  # what model.optimizer.lr is set to
    mixup: float = MISSING
    net: dict[str, Any] = MISSING  # deepfake.models.create_model(**net)
    optimizer: dict[str, Any] = MISSING  # _target_ + _partial_: called with the parameters
    scheduler: dict[str, Any] | None = None  # _target_ + _partial_: called with the optimiser; none: constant lr
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


class DeepfakeLitModule(L.LightningModule):
    """A real/fake detector in training: BCE on the logit of "fake", optional mixup, and the optimiser and
    learning-rate schedule that ``model.optimizer`` and ``model.scheduler`` name (``_partial_`` config nodes,
    called here with the parameters and the optimiser).

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
        self.loss = nn.BCEWithLogitsLoss()
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
        optimizer = _call_node(self.hparams.model, "optimizer", params=self.parameters())
        if not self.hparams.model.get("scheduler"):  # ~model/scheduler: a constant learning rate
            return optimizer
        scheduler = _call_node(self.hparams.model, "scheduler", optimizer=optimizer)
        # ReduceLROnPlateau steps on this metric; Lightning hands it only to schedulers that take one.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The contract travels with the weights so export needs nothing else.
        checkpoint["preprocess"] = self.preprocess.to_dict()
        checkpoint["faces"] = self.faces.to_dict() if self.faces else None


def check_model_settings(model: Mapping) -> None:
    """A key of ``model`` that is not a model setting is most often a network option put one level too high."""
    settings = {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown := sorted(set(model) - settings):
        raise ConfigError(
            f"model.{unknown[0]} is not a model setting ({', '.join(sorted(settings))}); "
            f"an option of the network goes under model.net: model.net.{unknown[0]}"
        )


def _call_node(model: Mapping, key: str, **arguments):
    """Instantiate ``model.<key>`` (a ``_target_`` node with ``_partial_: true``) and call it with ``arguments``."""
    node = model[key]
    try:
        return instantiate(node)(**arguments)
    except (InstantiationException, TypeError, ValueError) as exc:
        partial = isinstance(node, Mapping) and node.get("_partial_") is True
        target = node.get("_target_") if isinstance(node, Mapping) else node
        hint = "" if partial else "; it must be a _target_ node with _partial_: true"
        raise ConfigError(f"model.{key} ({target}) cannot be used: {_reason(exc)}{hint}") from exc


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
        raise ConfigError(f"{what}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """What Hydra's instantiate error says went wrong, without its framing lines."""
    text = str(exc).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
    lines = [line.strip() for line in text.strip().splitlines()]
    kept = [line for line in lines if line and not line.startswith(("Error in call to target", "full_key:"))]
    return " ".join(kept) or lines[0]


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
    faces = face_stage(cfg.data.faces, OmegaConf.to_container(cfg.data.face, resolve=True))
    root = cfg.data.root
    root = OmegaConf.to_container(root, resolve=True) if OmegaConf.is_config(root) else root
    specs = dataset_specs(
        root,
        manifest=cfg.data.manifest,
        group_by=cfg.data.group_by,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
    )
    module = DeepfakeLitModule(
        model=model_cfg,
        image_size=int(cfg.data.image_size),
        faces=faces.to_dict() if faces else None,
        datasets=[spec.name for spec in specs],
    )
    datamodule = DeepfakeDataModule(
        root,
        module.preprocess,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.seed,
        manifest=cfg.data.manifest,
        group_by=cfg.data.group_by,
        balance=cfg.data.balance,
        augment=OmegaConf.to_container(cfg.data.augment, resolve=True),
        faces=faces,
        face_cache=cfg.data.face_cache,
        no_face=cfg.data.no_face,
        pseudo_fakes=cfg.data.pseudo_fakes,
        pseudo_fakes_ratio=cfg.data.pseudo_fakes_ratio,
        sbi=OmegaConf.to_container(cfg.data.sbi, resolve=True),
        landmark_cache=cfg.data.landmark_cache,
    )
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


# ---------------------------------------------------------------------------
# Reading a checkpoint back


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
