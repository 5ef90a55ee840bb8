"""fp16 and int8 variants of an exported file, each scored against fp32 on the evaluation set."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from deepfake.contract import INPUT_NAME, metadata_of, set_metadata
from deepfake.errors import ConfigError
from deepfake.export.inputs import evenly, prepared_images, preprocessed
from deepfake.export.onnx_file import replace_file
from deepfake.export.options import ExportOptions
from deepfake.metrics import scores
from deepfake.predictor import Predictor
from deepfake.samples import find_samples
from deepfake.training.checkpoint import Checkpoint

CALIBRATION_IMAGES = 64  # int8 calibration (quantisation ranges), not probability calibration


def export_variants(
    options: ExportOptions, out: Path, variants, checkpoint, paths, labels, eval_name, threshold: float | None = None
) -> dict:
    """fp16 and int8 files beside ``out``, each scored against fp32 on the evaluation set (at ``threshold``: the
    stored one; default the options' number)."""
    threshold = float(options.threshold) if threshold is None else threshold
    if not paths:
        raise ConfigError(
            "fp16/int8 report their accuracy drop on an evaluation set: give eval_data=<dataset root> "
            "(the run's split.csv was not found next to the checkpoint)"
        )
    # Every face of each image, combined by the file's rule: the accuracy an app of each file gets.
    prepared = prepared_images(checkpoint.preprocess, paths, checkpoint.faces)

    def scored(path: Path) -> dict:
        verdicts = Predictor(path, providers=["CPUExecutionProvider"]).judge_all(prepared)
        p_fake = np.array([v.p_fake for v in verdicts])
        return {k: v for k, v in scores(p_fake, labels, threshold).items() if k in ("acc", "auroc")}

    base = scored(out)
    base["size_mb"] = out.stat().st_size / 1e6
    report = {"eval_data": eval_name, "eval_images": len(paths), "eval_fakes": int(labels.sum()), "fp32": base}
    for name in variants:
        target = out.with_name(f"{out.stem}.{name}{out.suffix}")
        with tempfile.TemporaryDirectory(dir=out.parent) as tmpdir:
            tmp = Path(tmpdir) / target.name
            if name == "fp16":
                write_fp16(out, tmp)
            else:
                write_int8(out, tmp, calibration_inputs(checkpoint, paths))
            variant = scored(tmp)
            replace_file(tmp, target)
        drop = {f"{k}_drop": base[k] - variant[k] for k in ("acc", "auroc")}
        report[name] = {**variant, **drop, "out": str(target), "size_mb": target.stat().st_size / 1e6}
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
    set_metadata(quantized, metadata_of(onnx.load(src)))
    onnx.save(quantized, dst)


def describe_variants(report: dict) -> str:
    """The fp32 file's and each variant's accuracy and AUROC on the evaluation set, and their drops."""
    base = report["fp32"]
    lines = [
        f"evaluation set: {report['eval_data']}, {report['eval_images']} images ({report['eval_fakes']} fake)",
        f"  fp32  acc {base['acc']:.4f}  auroc {base['auroc']:.4f}  {base['size_mb']:.2f} MB",
    ]
    for name in ("fp16", "int8"):
        if variant := report.get(name):
            lines.append(
                f"  {name:5s} acc {variant['acc']:.4f} (drop {variant['acc_drop']:+.4f})  auroc {variant['auroc']:.4f} "
                f"(drop {variant['auroc_drop']:+.4f})  {variant['size_mb']:.2f} MB -> {variant['out']}"
            )
    return "\n".join(lines)
