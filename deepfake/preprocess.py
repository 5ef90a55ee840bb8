"""The preprocessing: how decoded pixels become a model input, label order, and the checks of a threshold.

The face stage (:mod:`deepfake.faces`) comes first when a model was trained on faces; this module
turns an image or a face crop into the model's input. How a model file states all of it is
:mod:`deepfake.contract`.

Training, export, the predictor and the web app all call these functions, so they cannot
disagree on colour order, size, scaling, label order or threshold. Decoding lives in
:mod:`deepfake.images`. This module imports numpy and OpenCV only (never torch), so a
torch-free predictor can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from deepfake.errors import ConfigError

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
