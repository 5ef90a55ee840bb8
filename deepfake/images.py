"""Images in and out, the same way everywhere: recognise, size-check, decode, list and encode.

Pillow reads an image's format and size from its header (it reads no pixel data until asked),
so an oversized image is refused before anything is decoded; OpenCV decodes the pixels, which it
does fastest. Everything returned is uint8 RGB (H, W, 3). numpy, OpenCV and Pillow only: the
torch-free predictor and the web app decode through this module.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from deepfake.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Decoding allocates width x height x 3 bytes before a single pixel is checked, and a few hundred KB of PNG
# can declare 10000 x 10000. Images above this many pixels are refused from their header, before decoding.
MAX_PIXELS = 40_000_000

# Pillow's name of each format OpenCV decodes -> ours, and ours -> the file extension used when one is saved.
# Pillow's JPEG reader calls the multi-picture JPEG that phone cameras write MPO: a JPEG to OpenCV.
_PILLOW_OPENERS = ["JPEG", "PNG", "BMP", "WEBP", "TIFF"]
_PILLOW_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "TIFF": "tiff"}
IMAGE_FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "webp": ".webp", "tiff": ".tif"}
FORMAT_NAMES = "JPEG, PNG, BMP, WebP or TIFF"
# How much of a file's end is read to see that it is complete (end-of-image marker, IEND chunk).
_TAIL_BYTES = 1024


class ImageTooLargeError(ImageError):
    """An image whose header declares more pixels than the limit (a decompression bomb, or just too big)."""


def read_header(source: bytes | BinaryIO) -> tuple[str, int, int]:
    """(format, width, height) from an encoded image's header, read by Pillow without decoding pixels.

    ``format`` is a key of IMAGE_FORMAT_SUFFIX. ImageError when the bytes are not an image OpenCV can decode.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(stream, formats=_PILLOW_OPENERS) as image:
            fmt, (width, height) = _PILLOW_FORMATS[image.format], image.size
    except Image.DecompressionBombError as exc:
        # Pillow's own limit (twice Image.MAX_IMAGE_PIXELS, about 179 megapixels) is far above ours.
        raise ImageTooLargeError(f"image is over Pillow's decompression-bomb limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"not an image, or a damaged one (no readable {FORMAT_NAMES} header)") from exc
    if width <= 0 or height <= 0:
        raise ImageError(f"could not be decoded as an image (its header gives a size of {width}x{height})")
    return fmt, width, height


def image_format(data: bytes) -> str | None:
    """The format of encoded image bytes as recognised by content (never by file name), or None."""
    try:
        return read_header(data)[0]
    except ImageError:
        return None


def check_pixels(width: int, height: int, max_pixels: int | None = MAX_PIXELS) -> None:
    """ImageTooLargeError when width x height is above ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
            f"{max_pixels / 1e6:g} megapixels"
        )


def _truncated(fmt: str, tail: bytes) -> str | None:
    # JPEG entropy data escapes 0xFF, so the end-of-image marker only appears as a marker.
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def decode_image(data: bytes, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to uint8 RGB (H, W, 3).

    Raises ImageError naming the problem: empty, not an image, truncated; ImageTooLargeError
    when the header declares more than ``max_pixels`` (None: no limit), before anything is decoded.
    """
    if not data:
        raise ImageError("empty file")
    fmt, width, height = read_header(data)
    problem = _truncated(fmt, data[-_TAIL_BYTES:])
    if problem:
        raise ImageError(problem)
    check_pixels(width, height, max_pixels)
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
    if isinstance(image, Image.Image):
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


def check_image_file(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> str | None:
    """Why a file cannot be used as an image (empty, not an image, truncated, too large), or None; no decoding.

    Reads the header and the last kilobyte only, so it stays quick on a 190k-image dataset.
    """
    try:
        with open(path, "rb") as fh:
            if not fh.read(1):
                return "empty file"
            fh.seek(0)
            fmt, width, height = read_header(fh)
            check_pixels(width, height, max_pixels)
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _TAIL_BYTES))
            return _truncated(fmt, fh.read())
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    except ImageError as exc:
        return str(exc)


def list_files(folder: str | Path, suffixes: set[str] | None = None) -> Iterator[str]:
    """Every file below ``folder`` (recursively, in sorted order, hidden files and folders skipped); with
    ``suffixes``, only the files whose extension is one of them (case-insensitive)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and (suffixes is None or Path(name).suffix.lower() in suffixes):
                yield os.path.join(dirpath, name)


def encode_image(rgb: np.ndarray, suffix: str = ".png", quality: int | None = None) -> bytes:
    """uint8 RGB (H, W, 3) encoded as ``suffix`` (".png", ".jpg"); ``quality`` for JPEG (OpenCV's default: 95)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if quality is not None else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - OpenCV fails only on impossible shapes
        raise ImageError(f"could not encode a {rgb.shape} image as {suffix}")
    return buf.tobytes()
