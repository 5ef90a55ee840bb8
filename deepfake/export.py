"""From a training checkpoint to a self-describing ONNX file, checked against PyTorch.

    from deepfake.export import export
    export(ckpt="runs/hfnet/<run>", out="model.onnx", int8=True)     # or: python export.py ckpt=... out=...

:func:`export` reads the checkpoint with :func:`deepfake.training.load_checkpoint` (weights only,
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

Both judge each validation image as the written file will: by all its faces, combined by the file's
``aggregate_faces`` rule (:mod:`deepfake.contract`). T is fitted on per-image logits (exact for ``max``,
see :func:`deepfake.contract.aggregate_logits`), and the threshold is read off the written file's own
Predictor verdicts, so the false positive rate it states holds for images with any number of faces.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

from deepfake import __version__
from deepfake.contract import (
    ATTENTION_NAME,
    DEFAULT_FACE_RULE,
    DEFAULT_FRAME_RULE,
    FIXED_RULE,
    INPUT_NAME,
    LOGIT_NAME,
    OUTPUT_NAME,
    aggregate_logits,
    attention_metadata,
    calibration_metadata,
    check_aggregation,
    contract_metadata,
    metadata_of,
    set_metadata,
    threshold_metadata,
)
from deepfake.samples import SPLITS, find_samples
from deepfake.errors import ConfigError, ImageError, ModelError
from deepfake.faces import Face, FaceStage, main_face
from deepfake.images import read_image
from deepfake.metrics import ECE_BINS, binary_nll, ece, fit_temperature, rates_at, scores, threshold_at_fpr
from deepfake.models import returns_attention
from deepfake.predictor import Predictor, prepare
from deepfake.preprocess import DEFAULT_THRESHOLD, Preprocess, check_threshold
from deepfake.training import Checkpoint, load_checkpoint

MIN_OPSET = 17
PARITY_IMAGES = 32
CALIBRATION_IMAGES = 64  # int8 calibration (quantisation ranges), not probability calibration
# Fewer validation images than this give a temperature (and an ECE) that is mostly noise: T = 1 instead.
MIN_TEMPERATURE_IMAGES = 20
FPR_RULE = "fpr:"
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
    # Stored in the file: p_fake >= threshold reads as "fake". A number, or fpr:<rate> (fpr:0.05): the lowest
    # threshold at which at most that share of the run's validation reals is called fake (on calibrated p_fake).
    threshold: Any = DEFAULT_THRESHOLD
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
    # Temperature scaling: fit T on the run's validation split (at most max_eval_images of it) and build it into
    # the graph, so p_fake = sigmoid(logit / T) means what it says. Without a validation split: T = 1, and a notice.
    calibrate: bool = True
    # Stored in the file: how the p_fake of the faces found in one image make the image's (max: as fake as its most
    # fake face; mean), and how the sampled frames of a video make the video's (mean, max, median). The temperature
    # and a fpr: threshold are fitted on validation images judged by the same face rule.
    aggregate_faces: str = DEFAULT_FACE_RULE
    aggregate_frames: str = DEFAULT_FRAME_RULE

    def __post_init__(self) -> None:
        if self.ckpt in (None, "", MISSING):
            raise ConfigError("ckpt=<a .ckpt written by train.py, or its run directory> is required")
        if int(self.opset) < MIN_OPSET:
            raise ConfigError(f"opset={self.opset}: ONNX opset {MIN_OPSET} or later is required")
        self.threshold = parse_threshold(self.threshold)
        if not float(self.tolerance) > 0:
            raise ConfigError(f"tolerance={self.tolerance} must be positive")
        if self.eval_split not in (None, *SPLITS):
            raise ConfigError(f"eval_split={self.eval_split} is not one of {', '.join(SPLITS)}")
        if self.max_eval_images is not None and int(self.max_eval_images) < 1:
            raise ConfigError(f"max_eval_images={self.max_eval_images} must be at least 1, or null for all")
        check_aggregation(self.aggregate_faces, self.aggregate_frames)


def parse_threshold(value) -> float | str:
    """``threshold=`` as given: a float strictly between 0 and 1, or the rule ``fpr:<rate>`` (returned as
    ``"fpr:<rate>"``, rate strictly between 0 and 1). Anything else is a ConfigError naming the value."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith(FPR_RULE):
            rate = _number(text[len(FPR_RULE) :])
            if not 0.0 < rate < 1.0:
                raise ConfigError(
                    f"threshold={value}: the false positive rate of fpr:<rate> must be a number strictly between "
                    "0 and 1, as in threshold=fpr:0.05"
                )
            return f"{FPR_RULE}{rate:g}"
        if math.isnan(_number(text)):
            raise ConfigError(
                f"threshold={value} is neither a number strictly between 0 and 1 nor fpr:<rate> (threshold=fpr:0.05)"
            )
    return check_threshold(value)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def fpr_rate(threshold: float | str) -> float | None:
    """The false positive rate of a ``fpr:<rate>`` threshold (see :func:`parse_threshold`); None for a number."""
    return float(threshold[len(FPR_RULE) :]) if isinstance(threshold, str) else None


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
    """Adds p_fake = sigmoid(logit / temperature) to the graph, so apps need no post-processing; and the attention
    mask, if any. The logit output is the network's own, unscaled: the file's ``temperature`` relates the two."""

    def __init__(self, net: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.net = net
        self.attention = returns_attention(net)
        self.temperature = float(temperature)

    def probability(self, logit):
        # T = 1 adds no node, so an uncalibrated export is the same graph as before calibration existed.
        return torch.sigmoid(logit if self.temperature == 1.0 else logit / self.temperature)

    def forward(self, image):
        if self.attention:
            logit, mask = self.net(image, return_mask=True)
            return self.probability(logit), logit, mask
        logit = self.net(image)
        return self.probability(logit), logit


class Scaled(nn.Module):
    """The network's logit divided by ``temperature``: PyTorch's side of the parity check of a calibrated file."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net, self.temperature = net, float(temperature)

    def forward(self, image):
        return self.net(image) / self.temperature


def write_onnx(
    net: nn.Module,
    preprocess: Preprocess,
    out: Path,
    metadata: dict[str, str],
    opset: int,
    temperature: float = 1.0,
) -> None:
    """Export with a dynamic batch axis (p_fake = sigmoid(logit / temperature)), attach metadata, run onnx.checker."""
    if opset < MIN_OPSET:
        raise ConfigError(f"opset={opset}: ONNX opset {MIN_OPSET} or later is required")
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines narrate graph passes, not results
        logging.getLogger(name).setLevel(logging.WARNING)
    size = preprocess.image_size
    example = torch.rand(2, 3, size, size)
    wrapped = WithProbability(net, temperature).eval()
    outputs = [OUTPUT_NAME, LOGIT_NAME]
    if wrapped.attention:
        # A third output, so explanations of an ONNX-only model can show where the head looked.
        outputs.append(ATTENTION_NAME)
        metadata = attention_metadata(metadata)
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
    set_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)


EVAL_HINT = "eval_data=<dataset root> chooses other images"


def preprocessed(
    preprocess: Preprocess,
    paths: list[str],
    faces: FaceStage | None = None,
    *,
    what: str = "evaluation",
    hint: str = EVAL_HINT,
) -> np.ndarray:
    """Evaluation images through the training preprocessing (their largest face with a face stage), as one float32
    batch. An image that cannot be read stops the export with its path (:func:`_each_image`)."""
    batch = _each_image(paths, lambda rgb: preprocess(main_face(rgb, faces)), what, hint)
    return np.stack(batch).astype(np.float32)


def prepared_images(
    preprocess: Preprocess,
    paths: list[str],
    faces: FaceStage | None = None,
    *,
    what: str = "evaluation",
    hint: str = EVAL_HINT,
) -> list[tuple[list[Face] | None, np.ndarray]]:
    """Each image's faces and a model input per face, as the Predictor judges it (:func:`deepfake.predictor.prepare`);
    an image that cannot be read stops the export with its path (:func:`_each_image`)."""
    return _each_image(paths, lambda rgb: prepare(rgb, preprocess, faces), what, hint)


def _each_image(paths: list[str], make: Callable[[np.ndarray], T], what: str, hint: str) -> list[T]:
    """``make`` of every image, read in order. An image that cannot be read stops the export with its path: the run's
    split.csv may list files that have since moved."""
    made = []
    for path in paths:
        try:
            made.append(make(read_image(path)))
        except ImageError as exc:
            raise ImageError(f"{what} image {path}: {exc} ({hint})") from exc
    return made


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
    return torch.sigmoid(torch.from_numpy(torch_logits(net, batch, batch_size))).numpy()


def torch_logits(net: nn.Module, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    with torch.no_grad():
        chunks = [net(torch.from_numpy(batch[i : i + batch_size])) for i in range(0, len(batch), batch_size)]
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


@dataclass
class Validation:
    """The run's validation split as the written file will judge it: for the temperature and a ``fpr:`` threshold.

    ``prepared``: per image, its faces and a model input per face (:func:`deepfake.predictor.prepare`, what the
    Predictor judges); ``face_logits``: the network's logit of each input, image after image; ``logits``: one per
    image, its faces' combined by the face rule (:func:`deepfake.contract.aggregate_logits`)."""

    name: str
    paths: list[str]
    labels: np.ndarray
    prepared: list[tuple[list[Face] | None, np.ndarray]]
    face_logits: np.ndarray
    rule: str = DEFAULT_FACE_RULE

    @property
    def ends(self) -> np.ndarray:
        return np.cumsum([len(x) for _, x in self.prepared])

    def image_logits(self, temperature: float = 1.0) -> np.ndarray:
        """Each image's logit at ``temperature``: sigmoid of it is the p_fake a file calibrated with that T gives the
        image (exact for both face rules: the rule applied to the faces' sigmoid(logit / T))."""
        scaled = self.face_logits / float(temperature)
        starts = np.concatenate([[0], self.ends[:-1]])
        return np.array([aggregate_logits(scaled[a:b], self.rule) for a, b in zip(starts, self.ends, strict=True)])

    @property
    def logits(self) -> np.ndarray:
        return self.image_logits(1.0)


def validation_set(options: ExportOptions, checkpoint: Checkpoint) -> Validation | None:
    """The val split of the checkpoint's run (its split.csv, at most ``max_eval_images`` of it), each image with
    all its faces through the same preprocessing and face stage as training, as the Predictor reads them, and the
    network's logits; None without a split.csv or val split."""
    split = checkpoint.run_file("split.csv")
    if split is None:
        return None
    samples = evenly([s for s in find_samples(split)[0] if s.split == "val"], options.max_eval_images)
    if not samples:
        return None
    paths = [s.path for s in samples]
    hint = "the run's validation split: calibrate=false and a number as threshold= do without it"
    prepared = prepared_images(checkpoint.preprocess, paths, checkpoint.faces, what="validation", hint=hint)
    batch = np.concatenate([x for _, x in prepared]).astype(np.float32)
    labels = np.array([s.label for s in samples])
    logits = torch_logits(checkpoint.net, batch).astype(np.float64).reshape(-1)
    return Validation(f"{split} [val]", paths, labels, prepared, logits, options.aggregate_faces)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64)))  # no overflow warning for large |z|


def fit_calibration(options: ExportOptions, val: Validation | None) -> tuple[float, dict]:
    """The temperature to build into the graph and what the file and the report say about it; prints one line."""
    calibration: dict[str, Any] = {"method": "temperature scaling", "fitted": False, "ece_bins": ECE_BINS}
    uncalibrated = "p_fake is the uncalibrated sigmoid(logit)"
    if not options.calibrate:
        calibration["reason"] = "calibrate=false"
        print(f"temperature 1 (calibrate=false): {uncalibrated}")
        return 1.0, calibration
    if val is None:
        calibration["reason"] = "no validation split (the run's split.csv was not found next to the checkpoint)"
        print(f"temperature 1: {calibration['reason']}; {uncalibrated}")
        return 1.0, calibration
    n, n_fake = len(val.labels), int(val.labels.sum())
    calibration.update(data=val.name, images=n, n_fake=n_fake)
    if n < MIN_TEMPERATURE_IMAGES or n_fake in (0, n):
        calibration["reason"] = (
            f"the validation split has {n} images ({n_fake} fake); fitting needs at least "
            f"{MIN_TEMPERATURE_IMAGES}, real and fake"
        )
        print(f"temperature 1: {calibration['reason']}; {uncalibrated}")
        return 1.0, calibration
    # Four significant figures: the likelihood is flat there, and the file then states exactly the T in its graph.
    # Fitted on one logit per image, its faces' combined by the file's rule: T calibrates the image's p_fake.
    logits = val.logits
    temperature = float(f"{fit_temperature(logits, val.labels):.4g}")
    # The figures are those of the images' p_fake as the file gives them, before and after T.
    scaled = val.image_logits(temperature)
    calibration.update(
        fitted=True,
        temperature=temperature,
        aggregate_faces=val.rule,
        ece_before=round(ece(sigmoid(logits), val.labels), 4),
        ece_after=round(ece(sigmoid(scaled), val.labels), 4),
        nll_before=round(binary_nll(logits, val.labels), 4),
        nll_after=round(binary_nll(scaled, val.labels), 4),
    )
    print(
        f"temperature {temperature:g} fitted on {n} validation images ({n_fake} fake): "
        f"ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}, "
        f"NLL {calibration['nll_before']:.3f} -> {calibration['nll_after']:.3f}"
    )
    return temperature, calibration


def choose_threshold(options: ExportOptions, val: Validation | None, p_val: np.ndarray | None) -> tuple[float, dict]:
    """The threshold to store and how it was chosen; ``p_val``: the written file's p_fake on ``val``."""
    rate = fpr_rate(options.threshold)
    if rate is None:
        threshold, info = float(options.threshold), {"rule": FIXED_RULE}
    elif val is None or p_val is None:
        raise no_validation_split(options.threshold)
    else:
        try:
            threshold = threshold_at_fpr(p_val, val.labels, rate)
        except ValueError as exc:
            raise ModelError(f"threshold={options.threshold}: {exc} on the validation split") from exc
        info = {"rule": options.threshold}
    if val is not None and p_val is not None:
        fpr, tpr = rates_at(p_val, val.labels, threshold)
        info.update(val_fpr=fpr, val_tpr=tpr, val_images=len(val.labels))
    return threshold, info


def no_validation_split(threshold: str) -> ConfigError:
    return ConfigError(
        f"threshold={threshold} is chosen on the run's validation split, and there is none (the run's split.csv "
        "was not found next to the checkpoint, or has no val rows): give a number, as threshold=0.5"
    )


def describe_threshold(threshold: float, info: dict) -> str:
    line = f"threshold {threshold:g} ({info['rule']}"
    if "val_fpr" in info:
        pairs = (("FPR", info["val_fpr"]), ("TPR", info["val_tpr"]))
        rates = [f"{name} {value:.3f}" for name, value in pairs if value is not None]
        line += (" on validation: " if info["rule"] != FIXED_RULE else "; on validation: ") + ", ".join(rates)
    return line + ")"


def update_metadata(path: Path, updates: dict[str, str]) -> None:
    """Set (or add) metadata keys of an ONNX file in place; the graph is untouched."""
    model = onnx.load(path)
    set_metadata(model, metadata_of(model) | updates)
    onnx.save(model, path)


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
        print(
            f"parity: max |delta p_fake| = {delta:.2e} over {len(parity_images)} real and "
            f"{len(batch) - len(parity_images)} random inputs (tolerance {options.tolerance:.0e})"
        )
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
        print(describe_threshold(threshold, threshold_info))
        _replace(tmp, out)
    report = {
        "out": str(out),
        "size_mb": out.stat().st_size / 1e6,
        "max_abs_delta_p_fake": delta,
        "temperature": temperature,
        "calibration": calibration,
        "threshold": threshold,
        "threshold_rule": threshold_info["rule"],
        "threshold_val": {k.removeprefix("val_"): v for k, v in threshold_info.items() if k.startswith("val_")},
    }
    size = checkpoint.preprocess.image_size
    stage = f", faces: {checkpoint.faces.detector} margin {checkpoint.faces.margin:g}" if checkpoint.faces else ""
    print(f"wrote {out} ({report['size_mb']:.2f} MB, model {checkpoint.name}, input {size} px{stage})")

    variants = [name for name in ("fp16", "int8") if getattr(options, name)]
    if variants:
        report["variants"] = export_variants(options, out, variants, checkpoint, paths, labels, eval_name, threshold)
    return report


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
    set_metadata(quantized, metadata_of(onnx.load(src)))
    onnx.save(quantized, dst)
