"""export.py's options (:class:`ExportOptions`, the schema Hydra reads for configs/export.yaml) and the threshold
they take: a number or a ``fpr:<rate>`` rule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from deepfake.contract import DEFAULT_FACE_RULE, DEFAULT_FRAME_RULE, check_aggregation
from deepfake.errors import ConfigError
from deepfake.preprocess import DEFAULT_THRESHOLD, check_threshold
from deepfake.samples import SPLITS

MIN_OPSET = 17


FPR_RULE = "fpr:"
FNR_RULE = "fnr:"


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
    # Stored in the file: below it p_fake reads "likely real", from it up to the threshold "uncertain" (the verdict
    # band). fnr:<rate> (fnr:0.05): the highest value below which at most that share of the run's validation fakes
    # score; a number; or null for no uncertain band. Without a validation split, fnr: gives no band (a notice).
    threshold_low: Any = "fnr:0.05"
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
        self.threshold_low = parse_threshold_low(self.threshold_low)
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


def parse_threshold_low(value) -> float | str | None:
    """``threshold_low=`` as given: None (no band), a number strictly between 0 and 1, or ``fnr:<rate>``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    if isinstance(value, str) and value.strip().lower().startswith(FNR_RULE):
        rate = _number(value.strip()[len(FNR_RULE) :])
        if not 0.0 < rate < 1.0:
            raise ConfigError(
                f"threshold_low={value}: the false negative rate of fnr:<rate> must be a number strictly between "
                "0 and 1, as in threshold_low=fnr:0.05"
            )
        return f"{FNR_RULE}{rate:g}"
    if isinstance(value, str) and math.isnan(_number(value)):
        raise ConfigError(f"threshold_low={value} is neither a number strictly between 0 and 1, fnr:<rate> nor null")
    return check_threshold(value, "threshold_low")


def fnr_rate(threshold_low: float | str | None) -> float | None:
    """The false negative rate of a ``fnr:<rate>`` lower threshold; None for a number or no band."""
    return float(threshold_low[len(FNR_RULE) :]) if isinstance(threshold_low, str) else None


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
