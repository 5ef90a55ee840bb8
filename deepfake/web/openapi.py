"""The API's OpenAPI 3.1 description, written by hand next to the code it describes (tests keep them in step)."""

from __future__ import annotations

from deepfake import __version__
from deepfake.contract import VERDICTS
from deepfake.web.service import ERROR_STATUSES

# What a person reads; label and confidence (the two-way reading at the threshold) stay for scripts.
VERDICT = {
    "type": "string",
    "enum": list(VERDICTS),
    "description": "likely_fake at or above the model's threshold, likely_real below its lower threshold "
    "(threshold_low), uncertain between them",
}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _errors(*statuses: int) -> dict:
    return {str(status): _error(ERROR_STATUSES[status]) for status in statuses}


def spec(
    max_bytes: int,
    max_pixels: int,
    max_files: int,
    *,
    max_image_bytes: int | None = None,
    max_video_seconds: float | None = None,
    video_frames: int = 32,
) -> dict:
    """The document served at /api/v1/openapi.json, with this server's limits in it."""
    face = {
        "type": "object",
        "required": ["box", "p_fake", "label", "confidence", "verdict"],
        "properties": {
            "box": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 4,
                "maxItems": 4,
                "description": "[x, y, width, height] in pixels of the uploaded image (or video frame)",
            },
            "p_fake": {"type": "number", "minimum": 0, "maximum": 1},
            "label": {"type": "string", "enum": ["real", "fake"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "verdict": VERDICT,
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deepfake",
            "version": __version__,
            "description": (
                "Tells real face images and videos from manipulated or generated ones. With a model trained on "
                "faces, every face is found (dlib HOG) and judged; an image is as fake as its most fake face, a "
                "video scores the mean over its sampled frames that have a face. Uploads are recognised by their "
                "content (images: JPEG, PNG, BMP, WebP, TIFF; videos: MP4, MOV, AVI, WebM, MKV), never by file "
                f"name or Content-Type. Limits: {max_bytes} bytes per request, {max_image_bytes} bytes per image, "
                f"{max_pixels} pixels per image or video frame (read from the header, before decoding), "
                f"{max_video_seconds} seconds per video, {max_files} files per request. Every error answers "
                '{"error": {"code", "message"}}; every answer carries an X-Request-ID header.'
            ),
        },
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "summary": "Real or fake, for one image or several",
                    "operationId": "predict",
                    "parameters": [
                        {
                            "name": "explain",
                            "in": "query",
                            "required": False,
                            "description": (
                                "add a heatmap of where the model finds evidence of 'fake': occlusion (any model) "
                                "or attention (attention-head models); others answer 400"
                            ),
                            "schema": {"type": "string", "enum": ["occlusion", "attention"]},
                        },
                        {
                            "name": "faces",
                            "in": "query",
                            "required": False,
                            "description": (
                                "auto (default): find and judge every face when the model was trained on faces; "
                                "off: judge the whole image (uploads already cropped to the face); on: find faces "
                                "even for a whole-image model"
                            ),
                            "schema": {"type": "string", "enum": ["auto", "on", "off"], "default": "auto"},
                        },
                        {
                            "name": "frames",
                            "in": "query",
                            "required": False,
                            "description": "frames judged per video, evenly spaced",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 128, "default": video_frames},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {
                                            "description": "an image or a video; repeat the field for several",
                                            "oneOf": [
                                                {"type": "string", "format": "binary"},
                                                {"type": "array", "items": {"type": "string", "format": "binary"}},
                                            ],
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "one result per file, in the order sent",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
                        },
                        **_errors(400, 405, 413, 415, 500, 503),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                        **_errors(405),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "operationId": "healthz",
                    "responses": {
                        "200": {
                            "description": "alive",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(405),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The model is loaded",
                    "operationId": "readyz",
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                        },
                        "503": {
                            "description": "the model is missing or cannot be loaded; reason says why",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                        },
                        **_errors(405),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Prediction": {
                    "type": "object",
                    "required": ["request_id", "model", "results"],
                    "properties": {
                        "request_id": {"type": "string", "description": "also in the X-Request-ID header and logs"},
                        "model": {"type": "string", "description": "name of the model that answered"},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                    },
                },
                "Face": face,
                "Frame": {
                    "type": "object",
                    "required": ["index", "time_s", "p_fake", "faces"],
                    "properties": {
                        "index": {"type": "integer", "description": "frame number in the video, from 0"},
                        "time_s": {"type": "number"},
                        "p_fake": {
                            "type": ["number", "null"],
                            "description": "max over the frame's faces; null when none was found in it",
                        },
                        "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
                    },
                },
                "Result": {
                    "type": "object",
                    "required": [
                        "filename",
                        "kind",
                        "label",
                        "p_fake",
                        "confidence",
                        "verdict",
                        "latency_ms",
                        "width",
                        "height",
                        "face_found",
                        "faces",
                        "note",
                    ],
                    "properties": {
                        "filename": {"type": "string", "description": "the client's name, echoed; never stored"},
                        "kind": {"type": "string", "enum": ["image", "video"]},
                        "label": {"type": "string", "enum": ["real", "fake"]},
                        "p_fake": {"type": "number", "minimum": 0, "maximum": 1, "description": "probability of fake"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "of the label"},
                        "verdict": VERDICT,
                        "latency_ms": {"type": "number", "description": "decode, faces, predict (and explain)"},
                        "width": {"type": "integer", "description": "of the image or of the video's frames"},
                        "height": {"type": "integer"},
                        "face_found": {
                            "type": ["boolean", "null"],
                            "description": "null when the face stage was off (a whole-image model, or faces=off)",
                        },
                        "faces": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Face"},
                            "description": "every face found, largest first (for a video: see frames)",
                        },
                        "note": {
                            "type": ["string", "null"],
                            "description": "why the verdict deserves less trust, e.g. no face was found",
                        },
                        "frames": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Frame"},
                            "description": "videos only: every sampled frame",
                        },
                        "heatmap_png_base64": {
                            "type": "string",
                            "contentEncoding": "base64",
                            "contentMediaType": "image/png",
                            "description": "with ?explain=: the image with the heatmap blended on, at most 512 px",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {
                                    "type": "string",
                                    "examples": [
                                        "empty_upload",
                                        "no_file",
                                        "unsupported_explanation",
                                        "too_large",
                                        "too_many_files",
                                        "too_many_pixels",
                                        "too_long",
                                        "unsupported_image",
                                        "unsupported_video",
                                        "no_frames",
                                        "bad_option",
                                        "model_unavailable",
                                        "internal_error",
                                    ],
                                },
                                "message": {"type": "string", "description": "one line for people"},
                            },
                        }
                    },
                },
                "Ready": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ready", "unavailable"]},
                        "model": {"type": "string"},
                        "reason": {"type": "string", "description": "why the model is not loaded"},
                        "error": {"$ref": "#/components/schemas/Error/properties/error"},
                    },
                },
            }
        },
    }
