"""Settings of the web app: defaults, overridable by DEEPFAKE_* environment variables, then by create_app(config)."""

from __future__ import annotations

import os

from deepfake.errors import ConfigError
from deepfake.images import MAX_PIXELS

MB = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_MAX_MB = 10
DEFAULT_MAX_FILES = 16

# config key -> (environment variable, type). Flask reads MAX_CONTENT_LENGTH itself and answers 413 above it.
ENV = {
    "MODEL": ("DEEPFAKE_MODEL", str),  # model file; empty: the bundled models/default.onnx
    "MAX_CONTENT_LENGTH": ("DEEPFAKE_MAX_MB", float),  # given in MB, stored in bytes
    "MAX_PIXELS": ("DEEPFAKE_MAX_PIXELS", int),  # per image, from its header before decoding
    "MAX_FILES": ("DEEPFAKE_MAX_FILES", int),  # images per request
    "KEEP_UPLOADS": ("DEEPFAKE_KEEP_UPLOADS", str),  # folder to save accepted uploads in; empty: keep nothing
    "ORT_THREADS": ("DEEPFAKE_ORT_THREADS", int),  # onnxruntime threads per process; 0: one per core
    "LOG_LEVEL": ("DEEPFAKE_LOG_LEVEL", str),  # INFO: one line per request; WARNING: errors only
}


def from_env(environ=os.environ) -> dict:
    """Defaults, overridden by the DEEPFAKE_* variables that are set; ConfigError names a bad one."""
    config = {
        "MODEL": None,
        "MAX_CONTENT_LENGTH": DEFAULT_MAX_MB * MB,
        "MAX_PIXELS": MAX_PIXELS,
        "MAX_FILES": DEFAULT_MAX_FILES,
        "KEEP_UPLOADS": None,
        "ORT_THREADS": 0,
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
        config[key] = int(value * MB) if key == "MAX_CONTENT_LENGTH" else value
    return config


def check(config) -> None:
    """Refuse settings that cannot work, at start-up rather than on the first request."""
    for key, least in (("MAX_CONTENT_LENGTH", 1), ("MAX_PIXELS", 1), ("MAX_FILES", 1), ("ORT_THREADS", 0)):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{key}={value!r} must be an integer of at least {least}")
    if str(config.get("LOG_LEVEL")).upper() not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={config.get('LOG_LEVEL')!r} is not one of {', '.join(LOG_LEVELS)}")
