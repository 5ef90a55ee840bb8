"""From a training checkpoint to a self-describing ONNX file, checked against PyTorch.

    from deepfake.export import export
    export(ckpt="runs/hfnet/<run>", out="model.onnx", int8=True)     # or: python export.py ckpt=... out=...

:func:`export` reads the checkpoint with :func:`deepfake.training.load_checkpoint` (weights only,
never unpickling code, never fetching pretrained weights), writes ONNX with a dynamic batch axis
and the preprocessing contract in ``metadata_props``, checks it with ``onnx.checker``, and compares
onnxruntime with PyTorch on real and random inputs: the file is only kept when max |delta p_fake|
is within tolerance. Optional fp16 and int8 variants report their accuracy and AUROC drop on an
evaluation set. Its options are :class:`ExportOptions`, which Hydra also reads for export.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from deepfake import __version__
from deepfake.datasets import SPLITS, find_samples
from deepfake.errors import ConfigError, ImageError, ModelError
from deepfake.faces import FaceStage, main_face
from deepfake.images import read_image
from deepfake.metrics import scores
from deepfake.models import returns_attention
from deepfake.predictor import ATTENTION_KEY, ATTENTION_NAME, Predictor
from deepfake.preprocess import (
    DEFAULT_THRESHOLD,
    INPUT_NAME,
    LOGIT_NAME,
    OUTPUT_NAME,
    Preprocess,
    check_threshold,
    contract_metadata,
)
from deepfake.training import Checkpoint, load_checkpoint

MIN_OPSET = 17
PARITY_IMAGES = 32
CALIBRATION_IMAGES = 64
T = TypeVar("T")


@dataclass
class ExportOptions:
    """What export.py and :func:`export` take. Hydra reads this class as the schema of configs/export.yaml,
    so ``python export.py --help`` lists these fields with their defaults."""

    # Checkpoint to export (written by train.py), or a run directory: its best checkpoint (metrics.json).
    ckpt: str = MISSING
    # Where the ONNX file goes; fp16/int8 variants land beside it as <name>.fp16.onnx, <name>.int8.onnx.
    out: str = "model.onnx"
    opset: int = 18
    # Stored in the file: p_fake >= threshold reads as "fake".
    threshold: float = DEFAULT_THRESHOLD
    # The export fails (and writes nothing) when onnxruntime and PyTorch differ by more than this in p_fake.
    tolerance: float = 1.0e-4
    fp16: bool = False
    int8: bool = False
    # Evaluation set for parity images and the fp16/int8 accuracy report: any dataset layout train.py reads.
    # Unset: the test split of the run the checkpoint came from (its split.csv).
    eval_data: str | None = None
    # With eval_data: only this split (train, val, test); unset: the whole folder.
    eval_split: str | None = None
    # Cap on evaluation images (an even sample), to keep big folders quick; null for all.
    max_eval_images: int | None = 2000

    def __post_init__(self) -> None:
        if self.ckpt in (None, "", MISSING):
            raise ConfigError("ckpt=<a .ckpt written by train.py, or its run directory> is required")
        if int(self.opset) < MIN_OPSET:
            raise ConfigError(f"opset={self.opset}: ONNX opset {MIN_OPSET} or later is required")
        self.threshold = check_threshold(self.threshold)
        if not float(self.tolerance) > 0:
            raise ConfigError(f"tolerance={self.tolerance} must be positive")
        if self.eval_split not in (None, *SPLITS):
            raise ConfigError(f"eval_split={self.eval_split} is not one of {', '.join(SPLITS)}")
        if self.max_eval_images is not None and int(self.max_eval_images) < 1:
            raise ConfigError(f"max_eval_images={self.max_eval_images} must be at least 1, or null for all")


def store_config() -> None:
    """Register :class:`ExportOptions` with Hydra as ``export_options``, the schema configs/export.yaml uses."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="export_options", node=ExportOptions)


def options_from(cfg: ExportOptions | DictConfig | None, fields: dict) -> ExportOptions:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_object(cfg) if OmegaConf.get_type(cfg) is ExportOptions else ExportOptions(**cfg)
    if cfg is None:
        return ExportOptions(**fields)
    return dataclasses.replace(cfg, **fields) if fields else cfg


def evenly(items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` items spread evenly over ``items`` (all of them when ``n`` is None)."""
    if n is None or len(items) <= n:
        return list(items)
    return list(items[:: len(items) // n][:n])


class WithProbability(nn.Module):
    """Adds p_fake = sigmoid(logit) to the graph, so apps need no post-processing; and the attention mask, if any."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.attention = returns_attention(net)

    def forward(self, image):
        if self.attention:
            logit, mask = self.net(image, return_mask=True)
            return torch.sigmoid(logit), logit, mask
        logit = self.net(image)
        return torch.sigmoid(logit), logit


def write_onnx(net: nn.Module, preprocess: Preprocess, out: Path, metadata: dict[str, str], opset: int) -> None:
    """Export with a dynamic batch axis, attach metadata, and run onnx.checker."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: ONNX opset {MIN_OPSET} or later is required")
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines narrate graph passes, not results
        logging.getLogger(name).setLevel(logging.WARNING)
    size = preprocess.image_size
    example = torch.rand(2, 3, size, size)
    wrapped = WithProbability(net).eval()
    outputs = [OUTPUT_NAME, LOGIT_NAME]
    if wrapped.attention:
        # A third output, so explanations of an ONNX-only model can show where the head looked.
        outputs.append(ATTENTION_NAME)
        metadata = {
            **metadata,
            ATTENTION_KEY: ATTENTION_NAME,
            "output": metadata.get("output", "")
            + f"; {ATTENTION_NAME}: the attention mask in [0, 1], shape (batch, 1, h, w) at feature resolution",
        }
    with torch.no_grad():
        program = torch.onnx.export(
            wrapped,
            (example,),
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)


def preprocessed(preprocess: Preprocess, paths: list[str], faces: FaceStage | None = None) -> np.ndarray:
    """Evaluation images through the training preprocessing (their largest face with a face stage), as one float32
    batch. An image that cannot be read stops the export with its path: the run's split.csv may list files that
    have since moved."""
    batch = []
    for path in paths:
        try:
            batch.append(preprocess(main_face(read_image(path), faces)))
        except ImageError as exc:
            raise ImageError(f"evaluation image {path}: {exc} (eval_data=<dataset root> chooses other images)") from exc
    return np.stack(batch).astype(np.float32)


def parity_inputs(
    preprocess: Preprocess, images: list[str], n_random: int = 8, seed: int = 0, faces: FaceStage | None = None
) -> np.ndarray:
    """Real images through the training preprocessing, plus uniform random pixels."""
    real = list(preprocessed(preprocess, images, faces)) if images else []
    rng = np.random.default_rng(seed)
    size = preprocess.image_size
    noise = [preprocess(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n_random)]
    return np.stack(real + noise).astype(np.float32)


def torch_p_fake(net: nn.Module, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    with torch.no_grad():
        chunks = [
            torch.sigmoid(net(torch.from_numpy(batch[i : i + batch_size]))) for i in range(0, len(batch), batch_size)
        ]
    return torch.cat(chunks).numpy()


def eval_samples(options: ExportOptions, checkpoint: Checkpoint) -> tuple[list[str], np.ndarray, str]:
    """The evaluation set: ``eval_data`` (any layout, ``eval_split`` or all of it), else the run's test split."""
    root, split = options.eval_data, options.eval_split
    if not root:
        root, split = checkpoint.run_file("split.csv"), "test"
        if root is None:
            return [], np.zeros(0), "none"
    samples, _ = find_samples(root)
    if split:
        samples = [s for s in samples if s.split == split]
    samples = evenly(samples, options.max_eval_images)
    return [s.path for s in samples], np.array([s.label for s in samples]), f"{root}" + (f" [{split}]" if split else "")


def _replace(tmp: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def export(options: ExportOptions | DictConfig | None = None, /, *, checkpoint: Checkpoint | None = None, **fields):
    """Write ``out`` (and fp16/int8 variants when asked). Returns the figures it printed.

    Options come as keywords (``export(ckpt=..., out=...)``), as an :class:`ExportOptions`, or as the config
    export.py composes. ``checkpoint``: ``ckpt`` already loaded, for callers that hold it, so it is not read twice.
    """
    options = options_from(options, fields)
    checkpoint = checkpoint or load_checkpoint(options.ckpt)
    out = Path(options.out)
    train_metrics = {}
    if metrics_file := checkpoint.run_file("metrics.json"):
        train_metrics = json.loads(metrics_file.read_text())
    test = {k.removeprefix("test/"): round(v, 4) for k, v in train_metrics.items() if k.startswith("test/")}
    metadata = contract_metadata(
        checkpoint.preprocess,
        options.threshold,
        checkpoint.faces,
        model_name=checkpoint.name,
        model_config=checkpoint.config,
        data=train_metrics.get("data", {}),
        test_metrics=test,
        parameters=str(sum(p.numel() for p in checkpoint.net.parameters())),
        producer=f"deepfake {__version__} export.py",
        created=datetime.date.today().isoformat(),
    )

    paths, labels, eval_name = eval_samples(options, checkpoint)
    parity_images = evenly(paths, PARITY_IMAGES)
    batch = parity_inputs(checkpoint.preprocess, parity_images, faces=checkpoint.faces)
    reference = torch_p_fake(checkpoint.net, batch)

    # Work in a temporary file beside the target: a failed check never leaves a bad model behind.
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmpdir:
        tmp = Path(tmpdir) / out.name
        write_onnx(checkpoint.net, checkpoint.preprocess, tmp, metadata, int(options.opset))
        predictor = Predictor(tmp, providers=["CPUExecutionProvider"])
        delta = float(np.abs(predictor.p_fake(batch) - reference).max())
        print(
            f"parity: max |delta p_fake| = {delta:.2e} over {len(parity_images)} real and "
            f"{len(batch) - len(parity_images)} random inputs (tolerance {options.tolerance:.0e})"
        )
        if not delta <= options.tolerance:
            raise ModelError(
                f"ONNX output differs from PyTorch by {delta:.2e} > {options.tolerance:.0e}; {out} not written"
            )
        _replace(tmp, out)
    report = {"out": str(out), "size_mb": out.stat().st_size / 1e6, "max_abs_delta_p_fake": delta}
    size = checkpoint.preprocess.image_size
    stage = f", faces: {checkpoint.faces.detector} margin {checkpoint.faces.margin:g}" if checkpoint.faces else ""
    print(f"wrote {out} ({report['size_mb']:.2f} MB, model {checkpoint.name}, input {size} px{stage})")

    variants = [name for name in ("fp16", "int8") if getattr(options, name)]
    if variants:
        report["variants"] = export_variants(options, out, variants, checkpoint, paths, labels, eval_name)
    return report


def export_variants(options: ExportOptions, out: Path, variants, checkpoint, paths, labels, eval_name) -> dict:
    """fp16 and int8 files beside ``out``, each scored against fp32 on the evaluation set."""
    if not paths:
        raise ConfigError(
            "fp16/int8 report their accuracy drop on an evaluation set: give eval_data=<dataset root> "
            "(the run's split.csv was not found next to the checkpoint)"
        )
    inputs = preprocessed(checkpoint.preprocess, paths, checkpoint.faces)

    def scored(path: Path) -> dict:
        p_fake = Predictor(path, providers=["CPUExecutionProvider"]).p_fake(inputs)
        return {k: v for k, v in scores(p_fake, labels, options.threshold).items() if k in ("acc", "auroc")}

    base = scored(out)
    print(f"evaluation set: {eval_name}, {len(paths)} images ({int(labels.sum())} fake)")
    print(f"  fp32  acc {base['acc']:.4f}  auroc {base['auroc']:.4f}  {out.stat().st_size / 1e6:.2f} MB")
    report = {"eval_data": eval_name, "eval_images": len(paths), "fp32": base}
    for name in variants:
        target = out.with_name(f"{out.stem}.{name}{out.suffix}")
        with tempfile.TemporaryDirectory(dir=out.parent) as tmpdir:
            tmp = Path(tmpdir) / target.name
            if name == "fp16":
                write_fp16(out, tmp)
            else:
                write_int8(out, tmp, calibration_inputs(checkpoint, paths))
            variant = scored(tmp)
            _replace(tmp, target)
        drop = {f"{k}_drop": base[k] - variant[k] for k in base}
        report[name] = {**variant, **drop, "out": str(target), "size_mb": target.stat().st_size / 1e6}
        print(
            f"  {name:5s} acc {variant['acc']:.4f} (drop {drop['acc_drop']:+.4f})  auroc {variant['auroc']:.4f} "
            f"(drop {drop['auroc_drop']:+.4f})  {report[name]['size_mb']:.2f} MB -> {target}"
        )
    return report


def calibration_inputs(checkpoint: Checkpoint, eval_paths: list[str]) -> np.ndarray:
    """int8 calibration images: from the run's training split when known, so the drop is measured on unseen images."""
    paths = eval_paths
    if split := checkpoint.run_file("split.csv"):
        paths = [s.path for s in find_samples(split)[0] if s.split == "train"] or eval_paths
    return preprocessed(checkpoint.preprocess, evenly(paths, CALIBRATION_IMAGES), checkpoint.faces)


def write_fp16(src: Path, dst: Path) -> None:
    """Half-precision weights and activations; inputs and outputs stay float32 so callers need no change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(src), keep_io_types=True)
    onnx.save(model, dst)


def write_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on real inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    prepared = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        prepared,
        dst,
        Calibration(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    prepared.unlink()
    # The quantizer rebuilds the graph; carry the contract over explicitly.
    quantized = onnx.load(dst)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(onnx.load(src).metadata_props)
    onnx.save(quantized, dst)
