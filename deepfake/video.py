"""Videos in: recognise a container by content, check its limits, and decode evenly spaced frames with OpenCV.

Only the sampled frames are decoded to pixels and only one is held at a time, so a ten-minute clip costs
no more memory than one frame. numpy and OpenCV only, like :mod:`deepfake.images`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import ImageError
from deepfake.images import MAX_PIXELS, ImageTooLargeError, check_pixels

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv"}
VIDEO_FORMAT_SUFFIX = {"mp4": ".mp4", "mov": ".mov", "avi": ".avi", "webm": ".webm", "mkv": ".mkv"}
VIDEO_FORMAT_NAMES = "MP4, MOV, AVI, WebM or MKV"
DEFAULT_FRAMES = 32
MAX_DURATION_S = 600.0
# How many leading bytes video_format needs.
HEADER_BYTES = 64
# Seek instead of decoding forward when the next sampled frame is further ahead than this.
_SEEK_GAP = 48


class VideoError(ImageError):
    """A video that cannot be used: not a video, corrupt or truncated, or without a decodable frame."""


class VideoTooLongError(VideoError):
    """A video over the duration limit."""


class NoFramesError(VideoError):
    """A video whose header reads but none of whose sampled frames decodes."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class Frame:
    index: int  # in the video, from 0
    time_s: float
    rgb: np.ndarray  # uint8 (H, W, 3)


def video_format(head: bytes) -> str | None:
    """The container of a file from its first bytes (never its name): a key of VIDEO_FORMAT_SUFFIX, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, of which WebM is a profile
        return "webm" if b"webm" in head[:HEADER_BYTES] else "mkv"
    return None


def is_video_file(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as fh:
            return video_format(fh.read(HEADER_BYTES)) is not None
    except OSError:
        return False


def even_indices(total: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``total`` frames, each at the middle of its share."""
    n = min(n, total)
    return sorted({int((i + 0.5) * total / n) for i in range(n)})


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    with open(path, "rb") as fh:  # OSError for a missing or unreadable file, before OpenCV says less
        head = fh.read(HEADER_BYTES)
    if not head:
        raise VideoError("empty file")
    if video_format(head) is None:
        raise VideoError(f"not a video in a supported format ({VIDEO_FORMAT_NAMES}, recognised by content)")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise VideoError("corrupt or truncated video: it cannot be opened")
    return capture


def probe(path: str | os.PathLike) -> VideoInfo:
    capture = _open(path)
    try:
        return _info(capture)
    finally:
        capture.release()


def _info(capture: cv2.VideoCapture) -> VideoInfo:
    return VideoInfo(
        int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
        float(capture.get(cv2.CAP_PROP_FPS)),
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )


def check_video(
    info: VideoInfo, *, max_pixels: int | None = MAX_PIXELS, max_duration_s: float | None = MAX_DURATION_S
) -> None:
    """VideoTooLongError or ImageTooLargeError when the container's header breaks a limit."""
    if info.width <= 0 or info.height <= 0 or info.frames <= 0:
        raise VideoError("corrupt or truncated video: its header gives no frame size or frame count")
    try:
        check_pixels(info.width, info.height, max_pixels)
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"video frames: {exc}") from None
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise VideoTooLongError(
            f"video of {info.duration_s / 60:.1f} minutes is over the limit of {max_duration_s / 60:g} minutes"
        )


def sample_frames(
    path: str | os.PathLike,
    n: int = DEFAULT_FRAMES,
    *,
    max_pixels: int | None = MAX_PIXELS,
    max_duration_s: float | None = MAX_DURATION_S,
) -> Iterator[Frame]:
    """``n`` evenly spaced frames of a video file, one at a time, as uint8 RGB.

    The limits are checked from the header before any frame is decoded. Frames that fail to decode
    are skipped; VideoError when none decodes.
    """
    if n < 1:
        raise VideoError(f"frames={n} must be at least 1")
    capture = _open(path)
    try:
        info = _info(capture)
        check_video(info, max_pixels=max_pixels, max_duration_s=max_duration_s)
        fps = info.fps if info.fps > 0 else 25.0
        position, decoded = 0, 0
        for index in even_indices(info.frames, n):
            if index - position > _SEEK_GAP:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                position = index
            ok = True
            while ok and position < index:  # decode forward to the frame wanted, converting none of them
                ok = capture.grab()
                position += 1
            if not ok or not capture.grab():
                break  # a truncated file ends early: keep what was decoded
            position += 1
            ok, bgr = capture.retrieve()
            if not ok or bgr is None:
                continue
            if bgr.shape[0] * bgr.shape[1] > (max_pixels or bgr.size):  # a header that understated the size
                raise ImageTooLargeError(f"video frames of {bgr.shape[1]}x{bgr.shape[0]} are over the pixel limit")
            decoded += 1
            yield Frame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if decoded == 0:
            raise NoFramesError("corrupt or truncated video: none of its frames could be decoded")
    finally:
        capture.release()


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """RGB frames as an MP4 (mp4v) file: for tests, demos and benchmarks."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():  # pragma: no cover - OpenCV wheels ship the mp4v encoder
        raise VideoError(f"cannot write {path}")
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)
