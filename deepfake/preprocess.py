"""The preprocessing contract: how an image on disk becomes a model input.

Training, export, the predictor and the web app all call these functions, so
they cannot disagree on colour order, size, scaling or label order. This module
imports numpy and OpenCV only (never torch), so a torch-free predictor can use it.
"""

from __future__ import annotations

import json
import struct
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

# Decoding allocates width x height x 3 bytes before a single pixel is checked, and a few hundred KB of PNG
# can declare 10000 x 10000. Images above this many pixels are refused from their header, before decoding.
MAX_PIXELS = 40_000_000

# File extension for each format the decoder accepts, as recognised from content by image_format().
FORMAT_SUFFIXES = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "webp": ".webp", "tiff": ".tif"}


class ImageTooLargeError(ImageError):
    """An image whose header declares more pixels than the limit (a decompression bomb, or just too big)."""


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


def decode_image(data: bytes, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3).

    Raises ImageError naming the problem: empty, not an image, truncated; ImageTooLargeError
    when the header declares more than ``max_pixels`` (None: no limit), before anything is decoded.
    """
    if not data:
        raise ImageError("empty file")
    problem = sniff(data[:32], data[-1024:])
    if problem:
        raise ImageError(problem)
    if max_pixels is not None:
        check_pixels(data, max_pixels)
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


def image_format(head: bytes) -> str | None:
    """The format named by an image's magic bytes (a key of FORMAT_SUFFIXES), or None. Never the file name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


def sniff(head: bytes, tail: bytes) -> str | None:
    """Recognise an image format by its magic bytes and spot truncated JPEG/PNG files."""
    if not head:
        return "empty file"
    fmt = image_format(head)
    if fmt == "jpeg":
        # JPEG entropy data escapes 0xFF, so the end-of-image marker only appears as a marker.
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if fmt == "png":
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if fmt is not None:
        return None
    return "not an image (unrecognised format; expected JPEG, PNG, BMP, WebP or TIFF)"


# ---------------------------------------------------------------------------
# Image size from the header alone. OpenCV has no header-only read in Python (imdecode decodes
# everything, and its OPENCV_IO_MAX_IMAGE_PIXELS limit is process-wide, read once, and not adjustable
# per caller), so the five formats the decoder accepts are read here: each stores its size at a fixed
# place or, for JPEG, in the first SOF segment. An image whose size cannot be read is refused, since
# the decoder could not read it either.

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI: markers without a length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if length < 7 or i + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(data):
            return None
        tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
        if tag in (256, 257) and n == 1 and kind in (3, 4):  # ImageWidth, ImageLength as SHORT or LONG
            found[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, entry + 8)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by an encoded image's header, without decoding; None when it cannot be read."""
    fmt = image_format(data[:32])
    try:
        if fmt == "jpeg":
            size = _jpeg_size(data)
        elif fmt == "png":
            size = struct.unpack_from(">II", data, 16) if data[12:16] == b"IHDR" else None
        elif fmt == "bmp":
            (header,) = struct.unpack_from("<I", data, 14)
            if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                size = struct.unpack_from("<HH", data, 18)
            else:  # a negative height means rows stored top-down
                width, height = struct.unpack_from("<ii", data, 18)
                size = abs(width), abs(height)
        elif fmt == "webp":
            size = _webp_size(data)
        elif fmt == "tiff":
            size = _tiff_size(data)
        else:
            size = None
    except struct.error:  # the header ends before the size
        return None
    if size is None or min(size) <= 0:
        return None
    return int(size[0]), int(size[1])


def check_pixels(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The header's (width, height); ImageError when unreadable, ImageTooLargeError above ``max_pixels``."""
    size = image_size(data)
    if size is None:
        raise ImageError("could not be decoded as an image (its header gives no readable size)")
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
            f"{max_pixels / 1e6:g} megapixels"
        )
    return size
