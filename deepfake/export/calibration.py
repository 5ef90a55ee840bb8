"""Calibration and threshold, both on the run's validation split judged as the written file judges images: the
temperature T fitted on per-image logits, and a ``fpr:<rate>`` threshold read off the file's own verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.contract import DEFAULT_FACE_RULE, FIXED_RULE, aggregate_logits, threshold_low_metadata
from deepfake.errors import ConfigError, ModelError
from deepfake.export.inputs import evenly, prepared_images, torch_logits
from deepfake.export.onnx_file import update_metadata
from deepfake.export.options import ExportOptions, fnr_rate, fpr_rate, parse_threshold_low
from deepfake.faces import Face
from deepfake.images import read_image
from deepfake.metrics import ECE_BINS, binary_nll, ece, fit_temperature, rates_at, threshold_at_fnr, threshold_at_fpr
from deepfake.predictor import Predictor
from deepfake.samples import find_samples
from deepfake.training.checkpoint import Checkpoint

# Fewer validation images than this give a temperature (and an ECE) that is mostly noise: T = 1 instead.
MIN_TEMPERATURE_IMAGES = 20


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
    """The temperature to build into the graph and what the file and the report say about it
    (:func:`describe_calibration` says it in a line)."""
    calibration: dict[str, Any] = {"method": "temperature scaling", "fitted": False, "ece_bins": ECE_BINS}
    if not options.calibrate:
        calibration["reason"] = "calibrate=false"
        return 1.0, calibration
    if val is None:
        calibration["reason"] = "no validation split (the run's split.csv was not found next to the checkpoint)"
        return 1.0, calibration
    n, n_fake = len(val.labels), int(val.labels.sum())
    calibration.update(data=val.name, images=n, n_fake=n_fake)
    if n < MIN_TEMPERATURE_IMAGES or n_fake in (0, n):
        calibration["reason"] = (
            f"the validation split has {n} images ({n_fake} fake); fitting needs at least "
            f"{MIN_TEMPERATURE_IMAGES}, real and fake"
        )
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


def choose_threshold_low(
    threshold_low: float | str | None, labels: np.ndarray | None, p_val: np.ndarray | None, threshold: float
) -> tuple[float | None, dict]:
    """The lower threshold of the verdict band (None: no band) and how it was chosen, never above ``threshold``;
    ``threshold_low`` as :func:`~deepfake.export.options.parse_threshold_low` returns it, ``p_val`` the file's own
    p_fake on the validation images of ``labels`` (None: no validation split)."""
    rate = fnr_rate(threshold_low)
    if threshold_low is None:
        return None, {"rule": None, "reason": "threshold_low=null"}
    if rate is None:
        low, info = float(threshold_low), {"rule": FIXED_RULE}
        if low > threshold:
            raise ConfigError(f"threshold_low={low:g} is above the threshold {threshold:g}")
    elif labels is None or p_val is None:
        return None, {"rule": None, "reason": f"threshold_low={threshold_low} needs the run's validation split"}
    else:
        try:
            low = min(threshold_at_fnr(p_val, labels, rate), threshold)
        except ValueError as exc:
            raise ModelError(f"threshold_low={threshold_low}: {exc} on the validation split") from exc
        info = {"rule": threshold_low}
    if labels is not None and p_val is not None:
        below = p_val < low
        info.update(val_fnr=float(below[labels == 1].mean()), val_tnr=float(below[labels == 0].mean()))
    return low, info


def add_verdict_band(
    model: str | Path, split_csv: str | Path, threshold_low: float | str = "fnr:0.05", max_images: int | None = 2000
) -> tuple[float, dict]:
    """Write the verdict band's lower threshold into a model file exported before the band, chosen as export
    chooses it: on the validation rows of its run's ``split_csv``, judged by the file's own Predictor (every
    face, its rule). The graph and every other key stay as they are. Returns the threshold and how it was chosen."""
    predictor = Predictor(model, providers=["CPUExecutionProvider"])
    samples = evenly([s for s in find_samples(split_csv)[0] if s.split == "val"], max_images)
    if not samples:
        raise ConfigError(f"{split_csv}: no validation rows to choose the lower threshold on")
    labels = np.array([s.label for s in samples])
    p_val = np.array([v.p_fake for v in predictor.judge_all([predictor.inputs(read_image(s.path)) for s in samples])])
    rule = parse_threshold_low(threshold_low)
    low, info = choose_threshold_low(rule, labels, p_val, predictor.threshold)
    update_metadata(Path(model), threshold_low_metadata(low, info["rule"], info["val_fnr"], info["val_tnr"]))
    return low, info | {"val_images": len(samples)}


def describe_threshold_low(low: float | None, info: dict, threshold: float) -> str:
    """One line: the verdict band's lower threshold and what it means on validation, or why there is no band."""
    if low is None:
        return f"no uncertain band ({info['reason']}): p_fake below {threshold:g} reads likely real"
    line = f"lower threshold {low:g} ({info['rule']}"
    if "val_fnr" in info:
        line += f"; on validation: {info['val_fnr']:.3f} of fakes and {info['val_tnr']:.3f} of reals below it"
    return line + f"): likely real below it, uncertain up to {threshold:g}, likely fake from there"


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


def describe_calibration(calibration: dict) -> str:
    """One line: the temperature fitted and the calibration error before and after, or why T is 1."""
    if not calibration["fitted"]:
        reason = calibration["reason"]
        why = " (calibrate=false)" if reason == "calibrate=false" else f": {reason};"
        return f"temperature 1{why} p_fake is the uncalibrated sigmoid(logit)"
    return (
        f"temperature {calibration['temperature']:g} fitted on {calibration['images']} validation images "
        f"({calibration['n_fake']} fake): ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}, "
        f"NLL {calibration['nll_before']:.3f} -> {calibration['nll_after']:.3f}"
    )
