"""The API's OpenAPI 3.1 description, written by hand next to the code it describes (tests keep them in step)."""

from __future__ import annotations

from deepfake import __version__
from deepfake.web.service import ERROR_STATUSES


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _errors(*statuses: int) -> dict:
    return {str(status): _error(ERROR_STATUSES[status]) for status in statuses}


def spec(max_bytes: int, max_pixels: int, max_files: int) -> dict:
    """The document served at /api/v1/openapi.json, with this server's limits in it."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deepfake",
            "version": __version__,
            "description": (
                "Tells real face images from generated ones. Images are recognised by their content "
                "(JPEG, PNG, BMP, WebP, TIFF), never by file name or Content-Type. Limits: "
                f"{max_bytes} bytes per request, {max_pixels} pixels per image (read from the header, "
                f"before decoding), {max_files} images per request. Every error answers "
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
                        }
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
                                            "description": "the image; repeat the field for several",
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
                "Result": {
                    "type": "object",
                    "required": ["filename", "label", "p_fake", "confidence", "latency_ms"],
                    "properties": {
                        "filename": {"type": "string", "description": "the client's name, echoed; never stored"},
                        "label": {"type": "string", "enum": ["real", "fake"]},
                        "p_fake": {"type": "number", "minimum": 0, "maximum": 1, "description": "probability of fake"},
                        "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "of the label"},
                        "latency_ms": {"type": "number", "description": "decode, preprocess, predict (and explain)"},
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
                                        "unsupported_image",
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
