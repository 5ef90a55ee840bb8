"""From a training checkpoint to a self-describing ONNX file, checked against PyTorch.

``export(cfg)`` loads the checkpoint (weights only, never unpickling code), writes ONNX
with a dynamic batch axis and the preprocessing contract in ``metadata_props``, checks
it with ``onnx.checker``, and compares onnxruntime with PyTorch on real and random
inputs: the file is only kept when max |delta p_fake| is within tolerance. Optional fp16
and int8 variants report their accuracy and AUROC drop on an evaluation set.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from omegaconf import OmegaConf
from torch import nn

from deepfake import __version__, bundled_file
from deepfake.data import find_samples
from deepfake.errors import ConfigError, ImageError, ModelError
from deepfake.predictor import ATTENTION_KEY, ATTENTION_NAME, Predictor
from deepfake.preprocess import INPUT_NAME, LOGIT_NAME, OUTPUT_NAME, Preprocess, contract_metadata, read_image
from deepfake.training import build_network

MIN_OPSET = 17
# export.py's options and their defaults; export_config() gives them to callers that export without Hydra.
CONFIG_FILE = bundled_file("configs/export.yaml")


@dataclass
class Detector:
    """A network rebuilt from a checkpoint, with everything export needs to describe it."""

    net: nn.Module
    preprocess: Preprocess
    config: dict  # the model config it was trained with (configs/model/*.yaml, resolved)
    run_dir: Path | None  # the training run the checkpoint came from, when it can be found

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.config.get("arch")))

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


def load_checkpoint(path: str | os.PathLike) -> Detector:
    """Rebuild the network of a Lightning checkpoint written by train.py, in eval mode on CPU.

    ``path`` may also be a run directory: its best checkpoint is used.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise ModelError(f"ckpt={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle that would need code to load
        raise ModelError(
            f"ckpt={path} is corrupt or not a checkpoint written by train.py "
            "(it is read with weights_only=True, which never runs code from the file)"
        ) from exc
    try:
        hparams, state = ckpt["hyper_parameters"], ckpt["state_dict"]
        model_cfg, image_size = dict(hparams["model"]), int(hparams["image_size"])
        preprocess = Preprocess(**ckpt["preprocess"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"ckpt={path} was not written by train.py (missing {exc})") from exc
    net = build_network(model_cfg, image_size)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelError(f"ckpt={path}: weights do not fit model {model_cfg.get('name')}: {exc}") from exc
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return Detector(net.eval(), preprocess, model_cfg, run_dir)


def returns_attention(net: nn.Module) -> bool:
    """Whether the network can return its attention mask: ``forward(x, return_mask=True)`` (models/attention.py)."""
    return "return_mask" in inspect.signature(net.forward).parameters


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


def preprocessed(preprocess: Preprocess, paths: list[str]) -> np.ndarray:
    """Evaluation images through the training preprocessing, as one float32 batch. An image that cannot be read
    stops the export with its path: the run's split.csv may list files that have since moved."""
    batch = []
    for path in paths:
        try:
            batch.append(preprocess(read_image(path)))
        except ImageError as exc:
            raise ImageError(f"evaluation image {path}: {exc} (eval_data=<dataset root> chooses other images)") from exc
    return np.stack(batch).astype(np.float32)


def parity_inputs(preprocess: Preprocess, images: list[str], n_random: int = 8, seed: int = 0) -> np.ndarray:
    """Real images through the training preprocessing, plus uniform random pixels."""
    real = list(preprocessed(preprocess, images)) if images else []
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


def eval_samples(cfg, detector: Detector) -> tuple[list[str], np.ndarray, str]:
    """The evaluation set: ``eval_data`` (any layout, ``eval_split`` or all of it), else the run's test split."""
    root, split = cfg.get("eval_data"), cfg.get("eval_split")
    if not root:
        root, split = detector.run_file("split.csv"), "test"
        if root is None:
            return [], np.zeros(0), "none"
    samples, _ = find_samples(root)
    if split:
        samples = [s for s in samples if s.split == split]
    limit = cfg.get("max_eval_images")
    if limit:
        samples = samples[:: max(1, len(samples) // int(limit))][: int(limit)]
    return [s.path for s in samples], np.array([s.label for s in samples]), f"{root}" + (f" [{split}]" if split else "")


def binary_scores(p_fake: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    from torchmetrics.functional.classification import binary_accuracy, binary_auroc

    p, y = torch.from_numpy(np.asarray(p_fake, np.float32)), torch.from_numpy(labels.astype(np.int64))
    return {"acc": float(binary_accuracy(p, y, threshold=threshold)), "auroc": float(binary_auroc(p, y))}


def _replace(tmp: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def export_config(**values):
    """configs/export.yaml as ``python export.py`` sees it, with ``values`` set: evaluate.py and compare.py
    export checkpoints with the same defaults as the command, not a copy of them."""
    cfg = OmegaConf.load(CONFIG_FILE)
    for key in ("defaults", "hydra"):  # Hydra's own settings, not export options
        cfg.pop(key, None)
    return OmegaConf.merge(cfg, values)


def export(cfg, detector: Detector | None = None) -> dict:
    """Write ``cfg.out`` (and fp16/int8 variants when asked). Returns the figures it printed.

    ``detector``: ``cfg.ckpt`` already loaded, for callers that hold it (compare.py), so it is not read twice.
    """
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        raise ConfigError("ckpt=<path to a .ckpt written by train.py> is required")
    detector = detector or load_checkpoint(cfg.ckpt)
    out = Path(cfg.out)
    tolerance, threshold = float(cfg.tolerance), float(cfg.threshold)
    train_metrics = {}
    if metrics_file := detector.run_file("metrics.json"):
        train_metrics = json.loads(metrics_file.read_text())
    test = {k.removeprefix("test/"): round(v, 4) for k, v in train_metrics.items() if k.startswith("test/")}
    metadata = contract_metadata(
        detector.preprocess,
        threshold,
        model_name=detector.name,
        model_config=detector.config,
        data=train_metrics.get("data", {}),
        test_metrics=test,
        parameters=str(sum(p.numel() for p in detector.net.parameters())),
        producer=f"deepfake {__version__} export.py",
        created=datetime.date.today().isoformat(),
    )

    paths, labels, eval_name = eval_samples(cfg, detector)
    parity_images = paths[:: max(1, len(paths) // 32)][:32]
    batch = parity_inputs(detector.preprocess, parity_images)
    reference = torch_p_fake(detector.net, batch)

    # Work in a temporary file beside the target: a failed check never leaves a bad model behind.
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmpdir:
        tmp = Path(tmpdir) / out.name
        write_onnx(detector.net, detector.preprocess, tmp, metadata, int(cfg.opset))
        predictor = Predictor(tmp, providers=["CPUExecutionProvider"])
        delta = float(np.abs(predictor.p_fake(batch) - reference).max())
        print(
            f"parity: max |delta p_fake| = {delta:.2e} over {len(parity_images)} real and "
            f"{len(batch) - len(parity_images)} random inputs (tolerance {tolerance:.0e})"
        )
        if not delta <= tolerance:
            raise ModelError(f"ONNX output differs from PyTorch by {delta:.2e} > {tolerance:.0e}; {out} not written")
        _replace(tmp, out)
    report = {"out": str(out), "size_mb": out.stat().st_size / 1e6, "max_abs_delta_p_fake": delta}
    print(f"wrote {out} ({report['size_mb']:.2f} MB, model {detector.name}, input {detector.preprocess.image_size} px)")

    variants = [name for name in ("fp16", "int8") if cfg.get(name)]
    if variants:
        report["variants"] = export_variants(cfg, out, variants, detector, paths, labels, eval_name, threshold)
    return report


def export_variants(cfg, out: Path, variants, detector, paths, labels, eval_name, threshold) -> dict:
    """fp16 and int8 files beside ``out``, each scored against fp32 on the evaluation set."""
    if not paths:
        raise ConfigError(
            "fp16/int8 report their accuracy drop on an evaluation set: give eval_data=<dataset root> "
            "(the run's split.csv was not found next to the checkpoint)"
        )
    inputs = preprocessed(detector.preprocess, paths)
    base = binary_scores(Predictor(out, providers=["CPUExecutionProvider"]).p_fake(inputs), labels, threshold)
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
                write_int8(out, tmp, calibration_inputs(detector, paths))
            scores = binary_scores(Predictor(tmp, providers=["CPUExecutionProvider"]).p_fake(inputs), labels, threshold)
            _replace(tmp, target)
        drop = {f"{k}_drop": base[k] - scores[k] for k in base}
        report[name] = {**scores, **drop, "out": str(target), "size_mb": target.stat().st_size / 1e6}
        print(
            f"  {name:5s} acc {scores['acc']:.4f} (drop {drop['acc_drop']:+.4f})  auroc {scores['auroc']:.4f} "
            f"(drop {drop['auroc_drop']:+.4f})  {report[name]['size_mb']:.2f} MB -> {target}"
        )
    return report


def calibration_inputs(detector: Detector, eval_paths: list[str], n: int = 64) -> np.ndarray:
    """int8 calibration images: from the run's training split when known, so the drop is measured on unseen images."""
    paths = eval_paths
    if split := detector.run_file("split.csv"):
        paths = [s.path for s in find_samples(split)[0] if s.split == "train"] or eval_paths
    chosen = paths[:: max(1, len(paths) // n)][:n]
    return preprocessed(detector.preprocess, chosen)


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
