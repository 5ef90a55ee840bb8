"""What the web app does with an upload, apart from HTTP: check, decode, predict, explain, keep.

Both the JSON API and the pages call :class:`Service`; it raises :class:`WebError` subclasses that
carry their HTTP status and a stable error code, so the two front ends cannot disagree on them.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from flask import current_app

from deepfake.errors import ConfigError, ImageError, ModelError, UserError
from deepfake.faces import warm_up
from deepfake.images import (
    FORMAT_NAMES,
    IMAGE_FORMAT_SUFFIX,
    ImageTooLargeError,
    decode_image,
    encode_image,
    image_format,
)
from deepfake.predictor import FACES_OPTIONS, Prediction, Predictor, VideoPrediction
from deepfake.video import (
    HEADER_BYTES,
    VIDEO_FORMAT_NAMES,
    VIDEO_FORMAT_SUFFIX,
    NoFramesError,
    VideoError,
    VideoTooLongError,
    video_format,
)

log = logging.getLogger("deepfake.web")

# Longest side of the copies the page shows: the uploaded image and its heatmap overlay.
DISPLAY_SIDE = 512
MB = 1024 * 1024
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
    413: "body, image size, file count, pixel count or video duration over the limit",
    415: "not a decodable image or video, an unsupported format, or a video without a decodable frame",
    500: "unexpected server error (logged with the request id)",
    503: "the model is not loaded",
}


@dataclass
class Upload:
    filename: str
    data: bytes  # an image's bytes; for a video, only its first bytes (the rest stays in ``path``)
    format: str | None = None  # recognised by content (deepfake.images, deepfake.video), once checked
    path: Path | None = None  # a video, spooled to a temporary file that the request deletes

    @property
    def is_video(self) -> bool:
        return self.path is not None


@dataclass
class Result:
    filename: str
    prediction: Prediction
    latency_ms: float
    width: int  # of the image, or of the video's frames: the faces' boxes are in these pixels
    height: int
    heatmap_png: bytes | None = None  # the explanation overlay, when asked for
    preview_jpeg: bytes | None = None  # for the page: a display-sized copy of the image, or the top-scoring frame

    @property
    def kind(self) -> str:
        return "video" if isinstance(self.prediction, VideoPrediction) else "image"

    def to_json(self) -> dict:
        p = self.prediction.to_dict()
        out = {
            "filename": self.filename,
            "kind": self.kind,
            "label": p["label"],
            "p_fake": round(p["p_fake"], 6),
            "confidence": round(p["confidence"], 6),
            "verdict": p["verdict"],
            "latency_ms": round(self.latency_ms, 3),
            "width": self.width,
            "height": self.height,
            "face_found": p["face_found"],
            "faces": _rounded(p["faces"]),
            "note": p["note"],
        }
        if self.kind == "video":
            out["frames"] = [{**frame, "faces": _rounded(frame["faces"])} for frame in p["frames"]]
            for frame in out["frames"]:
                if frame["p_fake"] is not None:
                    frame["p_fake"] = round(frame["p_fake"], 6)
        if self.heatmap_png is not None:
            out["heatmap_png_base64"] = base64.b64encode(self.heatmap_png).decode("ascii")
        return out


def _rounded(faces: list[dict]) -> list[dict]:
    return [{**f, "p_fake": round(f["p_fake"], 6), "confidence": round(f["confidence"], 6)} for f in faces]


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
        max_image_bytes: int | None = None,
        max_video_seconds: float | None = None,
        video_frames: int = 32,
        keep_uploads: str | os.PathLike | None = None,
        ort_threads: int = 0,
        face_detectors: int = 1,
    ):
        self.max_pixels = max_pixels
        self.max_files = max_files
        self.max_image_bytes = max_image_bytes
        self.max_video_seconds = max_video_seconds
        self.video_frames = video_frames
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
        # Loaded now, not by the first requests: the model's detector (a dlib_hog model: one per request thread,
        # each about a second to build), and even for a whole-image model, since ?faces=on turns the stage on.
        stage = self.predictor.stage(True) if self.predictor else None
        warm_up(face_detectors, stage)

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

    def predict(
        self,
        uploads: list[Upload],
        explain: str | None = None,
        preview: bool = False,
        faces: bool | None = None,
        frames: int | None = None,
    ) -> list[Result]:
        """Verdicts in upload order. Every upload is checked before any is decoded, so one bad file fails fast.

        ``faces``: None follows the model, False judges whole images, True finds faces anyway. ``frames``: per
        video (default: the service's).
        """
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
            self.check(upload)
        if explain and any(upload.is_video for upload in uploads):
            raise BadRequest("heatmaps are made for images, not videos", code="unsupported_explanation")
        results = []
        for upload in uploads:
            if upload.is_video:
                results.append(self._video(predictor, upload, preview, faces, frames or self.video_frames))
            else:
                results.append(self._one(predictor, upload, explain, preview, faces))
        return results

    def check(self, upload: Upload) -> None:
        """The checks that need no decoding: a name to echo, not empty, a known format, not over the size limit."""
        upload.filename = clean_filename(upload.filename)
        name = upload.filename or "the upload"
        if not upload.data:
            # A form submitted with no file chosen sends one empty part without a name.
            raise EmptyUpload(f"{upload.filename}: empty file" if upload.filename else "no file chosen: empty upload")
        if upload.is_video:
            return  # recognised by content when it was received
        if self.max_image_bytes and len(upload.data) > self.max_image_bytes:
            raise TooLarge(
                f"{name}: a file that is not a video is over the limit of {self.max_image_bytes / MB:g} MB for images",
                code="too_large",
            )
        upload.format = image_format(upload.data)
        if upload.format is None:
            raise UnsupportedImage(
                f"{name}: not an image or video in a supported format ({FORMAT_NAMES}; {VIDEO_FORMAT_NAMES}; "
                "recognised by content, not by name)"
            )

    def _one(
        self, predictor: Predictor, upload: Upload, explain: str | None, preview: bool, faces: bool | None
    ) -> Result:
        start = time.perf_counter()
        name = upload.filename or "the upload"
        try:
            rgb = decode_image(upload.data, max_pixels=self.max_pixels)
        except ImageTooLargeError as exc:
            raise TooLarge(f"{name}: {exc}", code="too_many_pixels") from exc
        except ImageError as exc:
            raise UnsupportedImage(f"{name}: {exc}") from exc
        prediction = predictor.predict(rgb, faces=faces)
        heatmap = self._explain(predictor, rgb, explain) if explain else None
        height, width = rgb.shape[:2]
        result = Result(upload.filename, prediction, 0.0, width, height, heatmap)
        result.latency_ms = 1e3 * (time.perf_counter() - start)
        if preview:
            result.preview_jpeg = encode_image(display_copy(rgb), ".jpg")
        if self.keep_uploads:
            self.keep(upload)
        return result

    def _video(self, predictor: Predictor, upload: Upload, preview: bool, faces: bool | None, frames: int) -> Result:
        start = time.perf_counter()
        name = upload.filename or "the upload"
        try:
            prediction = predictor.predict_video(
                upload.path,
                frames,
                faces=faces,
                max_pixels=self.max_pixels,
                max_duration_s=self.max_video_seconds,
                keep_best_frame=True,
            )
        except VideoTooLongError as exc:
            raise TooLarge(f"{name}: {exc}", code="too_long") from exc
        except ImageTooLargeError as exc:
            raise TooLarge(f"{name}: {exc}", code="too_many_pixels") from exc
        except NoFramesError as exc:
            raise UnsupportedImage(f"{name}: {exc}", code="no_frames") from exc
        except (VideoError, OSError) as exc:
            raise UnsupportedImage(f"{name}: {exc}", code="unsupported_video") from exc
        best = prediction.best_frame
        height, width = best.shape[:2]
        result = Result(upload.filename, prediction, 1e3 * (time.perf_counter() - start), width, height)
        if preview:
            result.preview_jpeg = encode_image(display_copy(best), ".jpg")
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
        suffix = VIDEO_FORMAT_SUFFIX[upload.format] if upload.is_video else IMAGE_FORMAT_SUFFIX[upload.format]
        path = self.keep_uploads / f"{uuid.uuid4().hex}{suffix}"
        with open(path, "xb") as fh:  # "x": never overwrite, even on a uuid collision
            if upload.is_video:
                with open(upload.path, "rb") as src:
                    shutil.copyfileobj(src, fh)
            else:
                fh.write(upload.data)
        return path


def current_service() -> Service:
    return current_app.extensions["deepfake"]


def uploads_from(
    files, spool: Spool, fields: tuple[str, ...] = ("file",), max_image_bytes: int | None = None
) -> list[Upload]:
    """The uploads in a request's ``files`` multidict, every file of every named field, in order.

    Images are read into memory, at most ``max_image_bytes`` + 1 each: the rest of a larger one is skipped,
    and the service refuses it as too large, so a 100 MB non-video costs no more memory than the limit. A
    video, recognised by its first bytes, is copied to a file in ``spool`` instead, because OpenCV decodes
    from files and a video may be 100 MB.
    """
    uploads = []
    for name in fields:
        for f in files.getlist(name):
            head = f.stream.read(HEADER_BYTES)
            fmt = video_format(head)
            if fmt is None:
                if max_image_bytes is None:
                    data = head + f.stream.read()
                else:
                    data = head + f.stream.read(max(0, max_image_bytes + 1 - len(head)))
                    while f.stream.read(1 << 20):  # the part of a file over the limit: skipped, never kept
                        pass
                uploads.append(Upload(f.filename or "", data))
                continue
            path = spool.folder() / f"{uuid.uuid4().hex}{VIDEO_FORMAT_SUFFIX[fmt]}"
            with open(path, "wb") as out:
                out.write(head)
                shutil.copyfileobj(f.stream, out, 1 << 20)
            uploads.append(Upload(f.filename or "", head, fmt, path))
    return uploads


def faces_option(value: str | None) -> bool | None:
    """``?faces=`` (or the form's field): auto (the model decides), on or off."""
    if value in (None, ""):
        return None
    if value not in FACES_OPTIONS:
        raise BadRequest(f"faces={value!r} must be auto, on or off", code="bad_option")
    return FACES_OPTIONS[value]


def frames_option(value: str | None, most: int) -> int | None:
    """``?frames=N``: frames judged per video, 1 to ``most``."""
    if value in (None, ""):
        return None
    try:
        frames = int(value)
    except ValueError:
        frames = 0
    if not 1 <= frames <= most:
        raise BadRequest(f"frames={value!r} must be a whole number from 1 to {most}", code="bad_option")
    return frames


class Spool:
    """A temporary folder for one request's videos, made when the first video arrives (an image request, the
    common case, touches no disk) and removed when the request ends, whatever happens."""

    def __init__(self) -> None:
        self._folder: tempfile.TemporaryDirectory | None = None

    def folder(self) -> Path:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="deepfake-upload-")
        return Path(self._folder.name)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        if self._folder is not None:
            self._folder.cleanup()


def spool_dir() -> Spool:
    """The spool of one request's videos (:class:`Spool`), as a context manager."""
    return Spool()


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
