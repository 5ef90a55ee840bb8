"""The preprocessing contract: how decoded pixels become a model input, and how a model file says so.

The face stage (:mod:`deepfake.faces`) comes first when a model was trained on faces; this module
turns an image or a face crop into the model's input and writes or reads both in a model file.

Training, export, the predictor and the web app all call these functions, so they cannot
disagree on colour order, size, scaling, label order or threshold. Decoding lives in
:mod:`deepfake.images`. This module imports numpy and OpenCV only (never torch), so a
torch-free predictor can use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from deepfake.errors import ConfigError, ModelError
from deepfake.faces.detect import FaceStage

# Fixed once for the whole project: the model outputs the logit of "fake".
LABELS = ("real", "fake")
REAL, FAKE = 0, 1
POSITIVE_CLASS = "fake"
# p_fake >= threshold reads "fake". Export writes this one unless told otherwise; a checkpoint, which
# carries no threshold, is judged with it too.
DEFAULT_THRESHOLD = 0.5


def check_threshold(value, name: str = "threshold") -> float:
    """``value`` as a float strictly between 0 and 1, else ConfigError naming ``name``."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{name}={value} must be strictly between 0 and 1")
    return threshold


def check_temperature(value, name: str = "temperature") -> float:
    """``value`` as a finite float above 0, else ConfigError naming ``name``."""
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not 0.0 < temperature < float("inf"):
        raise ConfigError(f"{name}={value} must be a positive number")
    return temperature


_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn decoded RGB pixels into a model input.

    Pixels are resized to ``image_size`` square (``cv2.INTER_AREA`` by default),
    put in ``colour`` order, multiplied by ``scale`` (1/255: [0, 1]), then
    normalised with ``mean``/``std`` (identity for the plain CNNs). Training
    always writes RGB and area; the other values exist so that a model file
    which states them is read as it says, not as this code assumes.
    """

    image_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    colour: str = "RGB"
    scale: float = 1.0 / 255.0
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if int(self.image_size) < 8:
            raise ConfigError(f"data.image_size={self.image_size} must be at least 8 pixels")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std need three values, one per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}")
        if self.colour not in ("RGB", "BGR"):
            raise ConfigError(f"colour order {self.colour!r} is not RGB or BGR")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"resize {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}")
        if not float(self.scale) > 0:
            raise ConfigError(f"pixel scale {self.scale} must be positive")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "scale", float(self.scale))

    def to_dict(self) -> dict:
        return asdict(self)

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """Resize uint8 RGB (H, W, 3) to the model's square input size."""
        if rgb.shape[:2] == (self.image_size, self.image_size):
            return rgb
        size = (self.image_size, self.image_size)
        return cv2.resize(rgb, size, interpolation=_INTERPOLATIONS[self.interpolation])

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) at model size -> float32 (3, H, W)."""
        if self.colour == "BGR":
            rgb = rgb[..., ::-1]
        x = rgb.astype(np.float32) * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.normalise(self.resize(rgb))


# ---------------------------------------------------------------------------
# The contract as ONNX metadata_props: flat string keys, JSON values where structured.
# export.py writes it; the torch-free predictor reads it back and hard-codes nothing.

CONTRACT_VERSION = "1"
INPUT_NAME, OUTPUT_NAME, LOGIT_NAME = "image", "p_fake", "logit"


def contract_metadata(
    preprocess: Preprocess,
    threshold: float = DEFAULT_THRESHOLD,
    faces: FaceStage | None = None,
    *,
    temperature: float | None = None,
    **extra,
) -> dict[str, str]:
    """The strings export.py stores in ``metadata_props``; ``extra`` values are JSON-encoded. ``faces``: the face
    stage the model was trained with (``face_*`` keys); a file without them is read on whole images.
    ``temperature``: the T of the graph's p_fake = sigmoid(logit / T) (temperature scaling); a file without
    the key was exported before calibration and has T = 1."""
    threshold = check_threshold(threshold)
    output = f"{OUTPUT_NAME}: probability of {POSITIVE_CLASS!r}, shape (batch,); {LOGIT_NAME}: its logit"
    if temperature is not None:
        temperature = check_temperature(temperature)
        # The logit output stays the network's own, so the stored T says how the two outputs relate.
        output = (
            f"{OUTPUT_NAME}: probability of {POSITIVE_CLASS!r}, sigmoid({LOGIT_NAME} / temperature), shape (batch,); "
            f"{LOGIT_NAME}: the network's logit, before temperature scaling"
        )
    meta = {
        "deepfake.contract": CONTRACT_VERSION,
        "labels": json.dumps(list(LABELS)),
        "positive_class": POSITIVE_CLASS,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output": output,
        "input_layout": "NCHW",
        "input_size": str(preprocess.image_size),
        "colour_order": preprocess.colour,
        "resize": preprocess.interpolation,
        "scale": repr(preprocess.scale),
        "mean": json.dumps(preprocess.mean),
        "std": json.dumps(preprocess.std),
        "threshold": repr(float(threshold)),
        **(faces.metadata() if faces is not None else {}),
    }
    if temperature is not None:
        meta["temperature"] = repr(temperature)
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


@dataclass(frozen=True)
class Contract:
    preprocess: Preprocess
    labels: tuple[str, str]
    positive_class: str
    threshold: float
    input_name: str
    output_name: str
    faces: FaceStage | None = None  # None: the model reads whole images
    temperature: float = 1.0  # the graph's p_fake is sigmoid(logit / temperature); 1: not calibrated


def parse_contract(meta: dict[str, str]) -> Contract:
    """Read a model file's metadata_props back; ModelError names what is missing or wrong."""
    if meta.get("deepfake.contract") != CONTRACT_VERSION:
        raise ModelError(
            "not a deepfake model file: its metadata lacks the preprocessing contract "
            f"(deepfake.contract={meta.get('deepfake.contract')!r}); export it with export.py"
        )
    try:
        labels = tuple(json.loads(meta["labels"]))
        positive = meta["positive_class"]
        if len(labels) != 2 or positive not in labels:
            raise ValueError(f"labels {labels} with positive class {positive!r}")
        preprocess = Preprocess(
            int(meta["input_size"]),
            tuple(json.loads(meta["mean"])),
            tuple(json.loads(meta["std"])),
            colour=meta["colour_order"],
            scale=float(meta["scale"]),
            interpolation=meta["resize"],
        )
        threshold = check_threshold(meta["threshold"])
        faces = FaceStage.from_metadata(meta)
        temperature = check_temperature(meta.get("temperature", 1.0))
        return Contract(
            preprocess, labels, positive, threshold, meta["input_name"], meta["output_name"], faces, temperature
        )
    except KeyError as exc:
        raise ModelError(f"model metadata lacks {exc.args[0]!r}; re-export the model with export.py") from exc
    except (ValueError, TypeError, ConfigError) as exc:
        raise ModelError(f"model metadata is invalid: {exc}") from exc
