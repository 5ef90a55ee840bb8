"""The preprocessing contract: how an image on disk becomes a model input.

Training, export, the predictor and the web app all call these functions, so
they cannot disagree on colour order, size, scaling or label order. This module
imports numpy and OpenCV only (never torch), so a torch-free predictor can use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import ConfigError, ImageError, ModelError

# Fixed once for the whole project: the model outputs the logit of "fake".
LABELS = ("real", "fake")
REAL, FAKE = 0, 1
POSITIVE_CLASS = "fake"

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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

    image_size: int = 128
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


def contract_metadata(preprocess: Preprocess, threshold: float = 0.5, **extra) -> dict[str, str]:
    """The strings export.py stores in ``metadata_props``; ``extra`` values are JSON-encoded."""
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold={threshold} must be strictly between 0 and 1")
    meta = {
        "deepfake.contract": CONTRACT_VERSION,
        "labels": json.dumps(list(LABELS)),
        "positive_class": POSITIVE_CLASS,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output": f"{OUTPUT_NAME}: probability of {POSITIVE_CLASS!r}, shape (batch,); {LOGIT_NAME}: its logit",
        "input_layout": "NCHW",
        "input_size": str(preprocess.image_size),
        "colour_order": preprocess.colour,
        "resize": preprocess.interpolation,
        "scale": repr(preprocess.scale),
        "mean": json.dumps(preprocess.mean),
        "std": json.dumps(preprocess.std),
        "threshold": repr(float(threshold)),
    }
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
        threshold = float(meta["threshold"])
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold {threshold}")
        return Contract(preprocess, labels, positive, threshold, meta["input_name"], meta["output_name"])
    except KeyError as exc:
        raise ModelError(f"model metadata lacks {exc.args[0]!r}; re-export the model with export.py") from exc
    except (ValueError, TypeError, ConfigError) as exc:
        raise ModelError(f"model metadata is invalid: {exc}") from exc


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


def to_rgb(image) -> np.ndarray:
    """Any supported input as uint8 RGB (H, W, 3).

    Accepts a file path, encoded bytes, a numpy array or a PIL image. Arrays are
    taken as RGB (the order of PIL, matplotlib and torchvision), grey (H, W) or RGBA;
    an OpenCV BGR array must be converted by the caller: ``image[..., ::-1]``.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image))
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image, without importing PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"array of dtype {image.dtype}; expected uint8 pixels (0-255)")
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.ndim == 3 and image.shape[2] == 4:
            return np.ascontiguousarray(image[..., :3])
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        raise ImageError(f"array of shape {image.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    raise ImageError(f"unsupported input type {type(image).__name__}; give a path, bytes, a numpy array or a PIL image")


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
