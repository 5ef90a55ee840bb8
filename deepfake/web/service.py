"""What the web app does with an upload, apart from HTTP: check, decode, predict, explain, keep.

Both the JSON API and the pages call :class:`Service`; it raises :class:`WebError` subclasses that
carry their HTTP status and a stable error code, so the two front ends cannot disagree on them.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from flask import current_app

from deepfake.errors import ConfigError, ImageError, ModelError, UserError
from deepfake.images import FORMAT_NAMES, FORMAT_SUFFIXES, ImageTooLargeError, decode_image, encode_image, image_format
from deepfake.predictor import Predictor

log = logging.getLogger("deepfake.web")

# Longest side of the copies the page shows: the uploaded image and its heatmap overlay.
DISPLAY_SIDE = 512
# Client file names are only echoed back, never used as paths; a cap keeps a hostile one from bloating answers.
MAX_FILENAME = 200


class WebError(Exception):
    """An answer other than 200: ``status`` for HTTP, ``code`` for programs, the message for people."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BadRequest(WebError):
    status, code = 400, "bad_request"


class EmptyUpload(WebError):
    status, code = 400, "empty_upload"


class TooLarge(WebError):
    status, code = 413, "too_large"


class UnsupportedImage(WebError):
    status, code = 415, "unsupported_image"


class ModelUnavailable(WebError):
    status, code = 503, "model_unavailable"


# Every status the API can answer, for the OpenAPI document and its test.
ERROR_STATUSES = {
    400: "empty upload, no file, or an option that is not supported",
    404: "no such route",
    405: "method not allowed on this route",
    413: "body, file count or pixel count over the limit",
    415: "not a decodable image, or an unsupported format",
    500: "unexpected server error (logged with the request id)",
    503: "the model is not loaded",
}


@dataclass
class Upload:
    filename: str
    data: bytes
    format: str | None = None  # recognised by content (deepfake.images), once the upload is checked


@dataclass
class Result:
    filename: str
    label: str
    p_fake: float
    confidence: float
    latency_ms: float
    heatmap_png: bytes | None = None  # the explanation overlay, when asked for
    preview_jpeg: bytes | None = None  # a display-sized copy of the upload, for the page

    def to_json(self) -> dict:
        out = {
            "filename": self.filename,
            "label": self.label,
            "p_fake": round(self.p_fake, 6),
            "confidence": round(self.confidence, 6),
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.heatmap_png is not None:
            out["heatmap_png_base64"] = base64.b64encode(self.heatmap_png).decode("ascii")
        return out


def data_uri(mime: str, data: bytes | None) -> str | None:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}" if data else None


class Service:
    """One loaded model and the input limits. Thread-safe: nothing here changes after construction."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        max_pixels: int,
        max_files: int,
        keep_uploads: str | os.PathLike | None = None,
        ort_threads: int = 0,
    ):
        self.max_pixels = max_pixels
        self.max_files = max_files
        self.keep_uploads = Path(keep_uploads) if keep_uploads else None
        if self.keep_uploads:
            try:
                self.keep_uploads.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--keep-uploads {self.keep_uploads}: {exc.strerror or exc}") from exc
        self.predictor: Predictor | None = None
        self.unavailable: str | None = None
        # A missing or corrupt model must not stop the server: it starts, says why on /readyz and the page,
        # and answers predictions with 503, so an operator sees the reason instead of a crash loop.
        try:
            self.predictor = Predictor(model or None, threads=ort_threads)
        except ModelError as exc:
            self.unavailable = str(exc)
            log.error("model not loaded: %s", exc)

    @property
    def model_name(self) -> str | None:
        return self.predictor.model_name if self.predictor else None

    def explain_methods(self) -> tuple[str, ...]:
        if self.predictor is None:
            return ()
        from deepfake.explain import supported_methods

        return supported_methods(self.predictor)

    def require_model(self) -> Predictor:
        if self.predictor is None:
            raise ModelUnavailable(f"the model is not loaded: {self.unavailable}")
        return self.predictor

    def predict(self, uploads: list[Upload], explain: str | None = None, preview: bool = False) -> list[Result]:
        """Verdicts in upload order. Every upload is checked before any is decoded, so one bad file fails fast."""
        predictor = self.require_model()
        if explain and explain not in self.explain_methods():
            raise BadRequest(
                f"explain={explain!r} is not available for model {predictor.model_name}; "
                f"choose one of: {', '.join(self.explain_methods())}",
                code="unsupported_explanation",
            )
        if not uploads:
            raise BadRequest("no image: send it as the multipart/form-data field 'file'", code="no_file")
        if len(uploads) > self.max_files:
            raise TooLarge(f"{len(uploads)} files in one request; the limit is {self.max_files}", code="too_many_files")
        for upload in uploads:
            upload.filename = clean_filename(upload.filename)
            if not upload.data:
                # A form submitted with no file chosen sends one empty part without a name.
                raise EmptyUpload(
                    f"{upload.filename}: empty file" if upload.filename else "no file chosen: empty upload"
                )
            upload.format = image_format(upload.data)
            if upload.format is None:
                raise UnsupportedImage(
                    f"{upload.filename or 'the upload'}: not an image in a supported format "
                    f"({FORMAT_NAMES}, recognised by content, not by name)"
                )
        return [self._one(predictor, upload, explain, preview) for upload in uploads]

    def _one(self, predictor: Predictor, upload: Upload, explain: str | None, preview: bool) -> Result:
        start = time.perf_counter()
        name = upload.filename or "the upload"
        try:
            rgb = decode_image(upload.data, max_pixels=self.max_pixels)
        except ImageTooLargeError as exc:
            raise TooLarge(f"{name}: {exc}", code="too_many_pixels") from exc
        except ImageError as exc:
            raise UnsupportedImage(f"{name}: {exc}") from exc
        verdict = predictor.predict(rgb)
        heatmap = self._explain(predictor, rgb, explain) if explain else None
        result = Result(upload.filename, verdict.label, verdict.p_fake, verdict.confidence, 0.0, heatmap)
        result.latency_ms = 1e3 * (time.perf_counter() - start)
        if preview:
            result.preview_jpeg = encode_image(display_copy(rgb), ".jpg")
        if self.keep_uploads:
            self.keep(upload)
        return result

    def _explain(self, predictor: Predictor, rgb: np.ndarray, method: str) -> bytes:
        from deepfake.explain import explain_onnx

        # The map is drawn at the size of the image it is given, and a 40-megapixel overlay would cost
        # hundreds of MB per request; it is computed on the display-sized copy instead. That copy is
        # resized to the model's input like any image, so for large uploads the heatmap's model input
        # differs from the verdict's by one extra area-averaging step; images up to DISPLAY_SIDE are as-is.
        try:
            explanation = explain_onnx(predictor, display_copy(rgb), method)
        except UserError as exc:
            raise BadRequest(str(exc), code="unsupported_explanation") from exc
        return explanation.png()

    def keep(self, upload: Upload) -> Path:
        """Save an accepted upload under a name the server makes: the client's name never reaches the file system."""
        path = self.keep_uploads / f"{uuid.uuid4().hex}{FORMAT_SUFFIXES[upload.format]}"
        with open(path, "xb") as fh:  # "x": never overwrite, even on a uuid collision
            fh.write(upload.data)
        return path


def current_service() -> Service:
    return current_app.extensions["deepfake"]


def uploads_from(files, fields: tuple[str, ...] = ("file",)) -> list[Upload]:
    """The uploads in a request's ``files`` multidict, every file of every named field, in order."""
    return [Upload(f.filename or "", f.read()) for field in fields for f in files.getlist(field)]


def clean_filename(name: str | None) -> str:
    """The client's file name for display only: printable characters, capped in length."""
    return "".join(ch for ch in (name or "") if ch.isprintable())[:MAX_FILENAME]


def display_copy(rgb: np.ndarray) -> np.ndarray:
    """A copy for people to look at, no larger than DISPLAY_SIDE; never a model input."""
    height, width = rgb.shape[:2]
    scale = DISPLAY_SIDE / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
