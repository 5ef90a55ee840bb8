"""The preprocessing contract: how an image on disk becomes a model input.

Training, export, the predictor and the web app all call these functions, so
they cannot disagree on colour order, size, scaling or label order. This module
imports numpy and OpenCV only (never torch), so a torch-free predictor can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import ConfigError, ImageError

# Fixed once for the whole project: the model outputs the logit of "fake".
LABELS = ("real", "fake")
REAL, FAKE = 0, 1
POSITIVE_CLASS = "fake"

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn RGB pixels into a model input.

    Colour order is RGB, pixels are resized to ``image_size`` square with
    ``cv2.INTER_AREA``, scaled to [0, 1], then normalised with ``mean``/``std``
    (identity for the plain CNNs).
    """

    image_size: int = 128
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    colour: str = field(default="RGB", init=False)
    scale: float = field(default=1.0 / 255.0, init=False)
    interpolation: str = field(default="area", init=False)

    def __post_init__(self) -> None:
        if int(self.image_size) < 8:
            raise ConfigError(f"data.image_size={self.image_size} must be at least 8 pixels")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("mean and std need three values, one per RGB channel")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "image_size", int(self.image_size))

    def to_dict(self) -> dict:
        return asdict(self)

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """Resize uint8 RGB (H, W, 3) to the model's square input size."""
        if rgb.shape[:2] == (self.image_size, self.image_size):
            return rgb
        return cv2.resize(rgb, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) at model size -> float32 (3, H, W)."""
        x = rgb.astype(np.float32) * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.normalise(self.resize(rgb))


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3).

    Raises ImageError naming the problem: empty, not an image, truncated.
    """
    if not data:
        raise ImageError("empty file")
    problem = sniff(data[:32], data[-1024:])
    if problem:
        raise ImageError(problem)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("could not be decoded as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file to uint8 RGB. Works with non-ASCII paths, unlike cv2.imread."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    return decode_image(data)


def check_image_file(path: str | Path) -> str | None:
    """Cheap validity check from the file's first and last bytes; no decoding.

    Returns None when the file looks like a complete image, else the reason.
    Fast enough to run over a 190k-image dataset before training.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
            if not head:
                return "empty file"
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    return sniff(head, tail)


def sniff(head: bytes, tail: bytes) -> str | None:
    """Recognise an image format by its magic bytes and spot truncated JPEG/PNG files."""
    if not head:
        return "empty file"
    if head.startswith(b"\xff\xd8\xff"):
        # JPEG entropy data escapes 0xFF, so the end-of-image marker only appears as a marker.
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if head.startswith(b"BM") or head[:4] in (b"II*\x00", b"MM\x00*"):
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return None
    return "not an image (unrecognised format; expected JPEG, PNG, BMP, WebP or TIFF)"
