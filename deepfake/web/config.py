"""Settings of the web app: defaults, overridable by DEEPFAKE_* environment variables, then by create_app(config)."""

from __future__ import annotations

import os

from deepfake.errors import ConfigError
from deepfake.images import MAX_PIXELS
from deepfake.video import DEFAULT_FRAMES, MAX_DURATION_S

# ?frames= on the API: each frame costs a face search and a model run, so a client may not ask for thousands.
MAX_FRAMES = 128

MB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_MAX_MB = 100  # a request body: room for a video
DEFAULT_MAX_IMAGE_MB = 10  # one image of it
DEFAULT_MAX_FILES = 16

# config key -> (environment variable, type). Flask reads MAX_CONTENT_LENGTH itself and answers 413 above it.
ENV = {
    "MODEL": ("DEEPFAKE_MODEL", str),  # model file; empty: the bundled models/default.onnx
    "MAX_CONTENT_LENGTH": ("DEEPFAKE_MAX_MB", float),  # given in MB, stored in bytes
    "MAX_IMAGE_BYTES": ("DEEPFAKE_MAX_IMAGE_MB", float),  # per image file, given in MB, stored in bytes
    "MAX_PIXELS": ("DEEPFAKE_MAX_PIXELS", int),  # per image or video frame, from its header before decoding
    "MAX_VIDEO_SECONDS": ("DEEPFAKE_MAX_VIDEO_S", float),  # longest video, from its header
    "VIDEO_FRAMES": ("DEEPFAKE_VIDEO_FRAMES", int),  # frames judged per video unless ?frames= says otherwise
    "MAX_FILES": ("DEEPFAKE_MAX_FILES", int),  # images per request
    "KEEP_UPLOADS": ("DEEPFAKE_KEEP_UPLOADS", str),  # folder to save accepted uploads in; empty: keep nothing
    "ORT_THREADS": ("DEEPFAKE_ORT_THREADS", int),  # onnxruntime threads per process; 0: one per core
    # dlib detectors built at start for a dlib_hog model, one per request thread (BlazeFace: one shared session)
    "FACE_DETECTORS": ("DEEPFAKE_FACE_DETECTORS", int),
    "LOG_LEVEL": ("DEEPFAKE_LOG_LEVEL", str),  # INFO: one line per request; WARNING: errors only
}


def from_env(environ=os.environ) -> dict:
    """Defaults, overridden by the DEEPFAKE_* variables that are set; ConfigError names a bad one."""
    config = {
        "MODEL": None,
        "MAX_CONTENT_LENGTH": DEFAULT_MAX_MB * MB,
        "MAX_IMAGE_BYTES": DEFAULT_MAX_IMAGE_MB * MB,
        "MAX_PIXELS": MAX_PIXELS,
        "MAX_VIDEO_SECONDS": MAX_DURATION_S,
        "VIDEO_FRAMES": DEFAULT_FRAMES,
        "MAX_FILES": DEFAULT_MAX_FILES,
        "KEEP_UPLOADS": None,
        "ORT_THREADS": 0,
        "FACE_DETECTORS": 1,
        "LOG_LEVEL": "INFO",
    }
    for key, (name, kind) in ENV.items():
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        config[key] = int(value * MB) if key in ("MAX_CONTENT_LENGTH", "MAX_IMAGE_BYTES") else value
    return config


def check(config) -> None:
    """Refuse settings that cannot work, at start-up rather than on the first request."""
    integers = (("MAX_CONTENT_LENGTH", 1), ("MAX_IMAGE_BYTES", 1), ("MAX_PIXELS", 1), ("MAX_FILES", 1))
    for key, least in (*integers, ("ORT_THREADS", 0), ("VIDEO_FRAMES", 1), ("FACE_DETECTORS", 0)):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{key}={value!r} must be an integer of at least {least}")
    if config["VIDEO_FRAMES"] > MAX_FRAMES:
        raise ConfigError(f"VIDEO_FRAMES={config['VIDEO_FRAMES']} must be at most {MAX_FRAMES}")
    seconds = config.get("MAX_VIDEO_SECONDS")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(f"MAX_VIDEO_SECONDS={seconds!r} must be a positive number")
    if str(config.get("LOG_LEVEL")).upper() not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={config.get('LOG_LEVEL')!r} is not one of {', '.join(LOG_LEVELS)}")
