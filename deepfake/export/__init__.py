"""From a training checkpoint to a self-describing ONNX file, checked against PyTorch.

    from deepfake.export import export
    export(ckpt="runs/hfnet/<run>", out="model.onnx", int8=True)     # or: python export.py ckpt=... out=...

:func:`export` reads the checkpoint with :func:`deepfake.training.checkpoint.load_checkpoint` (weights only,
never unpickling code, never fetching pretrained weights), writes ONNX with a dynamic batch axis
and the preprocessing contract in ``metadata_props``, checks it with ``onnx.checker``, and compares
onnxruntime with PyTorch on real and random inputs: the file is only kept when max |delta p_fake|
is within tolerance. Optional fp16 and int8 variants report their accuracy and AUROC drop on an
evaluation set. Its options are :class:`ExportOptions`, which Hydra also reads for export.py.

Calibration: by default a temperature T is fitted on the run's validation split (temperature scaling:
one parameter, the ranking and so AUROC unchanged) and built into the graph, whose ``p_fake`` output is
sigmoid(logit / T) while ``logit`` stays the network's own; T and the calibration error before and
after are in the metadata. ``threshold=fpr:0.05`` picks the decision threshold on the same split's
calibrated p_fake for a stated false positive rate.

The steps, a module each: :mod:`.options` (what export.py takes), :mod:`.inputs` (images through training's
preprocessing and face stage, and PyTorch's outputs on them), :mod:`.onnx_file` (the graph and its metadata),
:mod:`.calibration` (temperature and threshold) and :mod:`.quantize` (fp16 and int8); :func:`export` runs them
and returns what it found, which :func:`describe_export` puts in words for the command.

Both judge each validation image as the written file will: by all its faces, combined by the file's
``aggregate_faces`` rule (:mod:`deepfake.contract`). T is fitted on per-image logits (exact for ``max``,
see :func:`deepfake.contract.aggregate_logits`), and the threshold is read off the written file's own
Predictor verdicts, so the false positive rate it states holds for images with any number of faces.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deepfake import __version__
from deepfake.contract import (
    FIXED_RULE,
    calibration_metadata,
    contract_metadata,
    threshold_low_metadata,
    threshold_metadata,
)
from deepfake.errors import ModelError
from deepfake.export.calibration import (
    choose_threshold,
    choose_threshold_low,
    describe_calibration,
    describe_threshold,
    describe_threshold_low,
    fit_calibration,
    no_validation_split,
    validation_set,
)
from deepfake.export.inputs import PARITY_IMAGES, eval_samples, evenly, parity_inputs, preprocessed, torch_p_fake
from deepfake.export.onnx_file import Scaled, replace_file, update_metadata, write_onnx
from deepfake.export.options import ExportOptions, fpr_rate, options_from, parse_threshold, store_config
from deepfake.export.quantize import describe_variants, export_variants
from deepfake.predictor import Predictor
from deepfake.preprocess import DEFAULT_THRESHOLD
from deepfake.training.checkpoint import Checkpoint, load_checkpoint

__all__ = [
    "ExportOptions",
    "describe_export",
    "export",
    "export_checkpoint",
    "parse_threshold",
    "preprocessed",
    "store_config",
    "write_onnx",
]


def export(options: ExportOptions | DictConfig | None = None, /, *, checkpoint: Checkpoint | None = None, **fields):
    """Write ``out`` (and fp16/int8 variants when asked). Returns what it found
    (:func:`describe_export` says it in words).

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

    rate = fpr_rate(options.threshold)
    val = validation_set(options, checkpoint) if options.calibrate or rate is not None else None
    if rate is not None and val is None:
        raise no_validation_split(options.threshold)
    temperature, calibration = fit_calibration(options, val)
    metadata = contract_metadata(
        checkpoint.preprocess,
        DEFAULT_THRESHOLD if rate is not None else options.threshold,  # a fpr: rule's is set once the file runs
        checkpoint.faces,
        temperature=temperature,
        aggregate_faces=options.aggregate_faces,
        aggregate_frames=options.aggregate_frames,
        threshold_rule=FIXED_RULE if rate is None else options.threshold,
        model_name=checkpoint.name,
        model_config=checkpoint.config,
        data=train_metrics.get("data", {}),
        test_metrics=test,
        parameters=str(sum(p.numel() for p in checkpoint.net.parameters())),
        producer=f"deepfake {__version__} export.py",
        created=datetime.date.today().isoformat(),
    )
    metadata.update(calibration_metadata(calibration))

    paths, labels, eval_name = eval_samples(options, checkpoint)
    parity_images = evenly(paths, PARITY_IMAGES)
    batch = parity_inputs(checkpoint.preprocess, parity_images, faces=checkpoint.faces)
    # The same T on both sides: the check compares the calibrated p_fake, which is what the file outputs.
    reference = torch_p_fake(Scaled(checkpoint.net, temperature), batch)

    # Work in a temporary file beside the target: a failed check never leaves a bad model behind.
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmpdir:
        tmp = Path(tmpdir) / out.name
        write_onnx(checkpoint.net, checkpoint.preprocess, tmp, metadata, int(options.opset), temperature)
        predictor = Predictor(tmp, providers=["CPUExecutionProvider"])
        delta = float(np.abs(predictor.p_fake(batch) - reference).max())
        if not delta <= options.tolerance:
            raise ModelError(
                f"ONNX output differs from PyTorch by {delta:.2e} > {options.tolerance:.0e}; {out} not written"
            )
        # The threshold is read off the written file's own verdicts (every face of each image, combined by its rule),
        # so its stated FPR holds for every reader of it.
        p_val = np.array([v.p_fake for v in predictor.judge_all(val.prepared)]) if val is not None else None
        threshold, threshold_info = choose_threshold(options, val, p_val)
        if p_val is not None:
            rates = (threshold_info.get("val_fpr"), threshold_info.get("val_tpr"))
            update_metadata(tmp, threshold_metadata(threshold, threshold_info["rule"], *rates))
        # The verdict band's lower threshold, read off the same verdicts: its stated share of fakes below it holds.
        val_labels = val.labels if val is not None else None
        threshold_low, low_info = choose_threshold_low(options.threshold_low, val_labels, p_val, threshold)
        if threshold_low is not None:
            low_rates = (low_info.get("val_fnr"), low_info.get("val_tnr"))
            update_metadata(tmp, threshold_low_metadata(threshold_low, low_info["rule"], *low_rates))
        replace_file(tmp, out)
    report = {
        "out": str(out),
        "size_mb": out.stat().st_size / 1e6,
        "max_abs_delta_p_fake": delta,
        "temperature": temperature,
        "calibration": calibration,
        "threshold": threshold,
        "threshold_rule": threshold_info["rule"],
        "threshold_val": {k.removeprefix("val_"): v for k, v in threshold_info.items() if k.startswith("val_")},
        "threshold_low": threshold_low,
        "threshold_low_rule": low_info["rule"],
        "threshold_low_val": {k.removeprefix("val_"): v for k, v in low_info.items() if k.startswith("val_")},
        "threshold_low_reason": low_info.get("reason"),
    }
    faces = checkpoint.faces
    report.update(
        parity={"real": len(parity_images), "random": len(batch) - len(parity_images), "tolerance": options.tolerance},
        model_name=checkpoint.name,
        input_size=checkpoint.preprocess.image_size,
        faces=f"{faces.detector} margin {faces.margin:g}" if faces else None,
    )

    variants = [name for name in ("fp16", "int8") if getattr(options, name)]
    if variants:
        report["variants"] = export_variants(options, out, variants, checkpoint, paths, labels, eval_name, threshold)
    return report


def export_checkpoint(ckpt: str | Path, out: Path, checkpoint: Checkpoint | None = None) -> Path:
    """Export a checkpoint or run directory to ``out`` with export.py's defaults (parity-checked), for commands that
    score a checkpoint as its export would be scored; ``checkpoint``: ``ckpt`` already loaded, if the caller has it."""
    export(ckpt=str(ckpt), out=str(out), checkpoint=checkpoint)
    return out


def describe_export(report: dict) -> str:
    """What export.py prints: calibration, the parity check, the threshold, the file written, and the variants."""
    parity = report["parity"]
    info = {"rule": report["threshold_rule"], **{f"val_{k}": v for k, v in report["threshold_val"].items()}}
    stage = f", faces: {report['faces']}" if report["faces"] else ""
    lines = [
        describe_calibration(report["calibration"]),
        f"parity: max |delta p_fake| = {report['max_abs_delta_p_fake']:.2e} over {parity['real']} real and "
        f"{parity['random']} random inputs (tolerance {parity['tolerance']:.0e})",
        describe_threshold(report["threshold"], info),
        describe_threshold_low(
            report["threshold_low"],
            {
                "rule": report["threshold_low_rule"],
                "reason": report["threshold_low_reason"],
                **{f"val_{k}": v for k, v in report["threshold_low_val"].items()},
            },
            report["threshold"],
        ),
        f"wrote {report['out']} ({report['size_mb']:.2f} MB, model {report['model_name']}, "
        f"input {report['input_size']} px{stage})",
    ]
    if "variants" in report:
        lines.append(describe_variants(report["variants"]))
    return "\n".join(lines)
