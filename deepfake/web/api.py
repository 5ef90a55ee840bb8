"""The JSON routes: /api/v1/predict, /api/v1/openapi.json, /healthz and /readyz."""

from __future__ import annotations

from flask import Blueprint, current_app, g, request

from deepfake.web import openapi
from deepfake.web.config import MAX_FRAMES
from deepfake.web.service import current_service, faces_option, frames_option, spool_dir, uploads_from

bp = Blueprint("api", __name__)


@bp.post("/api/v1/predict")
def predict():
    service = current_service()
    options = {
        "explain": request.args.get("explain") or None,
        "faces": faces_option(request.args.get("faces")),
        "frames": frames_option(request.args.get("frames"), MAX_FRAMES),
    }
    with spool_dir() as spool:
        uploads = uploads_from(request.files, spool, max_image_bytes=service.max_image_bytes)
        results = service.predict(uploads, **options)
    return {"request_id": g.request_id, "model": service.model_name, "results": [r.to_json() for r in results]}


@bp.get("/api/v1/openapi.json")
def openapi_json():
    config = current_app.config
    return openapi.spec(
        config["MAX_CONTENT_LENGTH"],
        config["MAX_PIXELS"],
        config["MAX_FILES"],
        max_image_bytes=config["MAX_IMAGE_BYTES"],
        max_video_seconds=config["MAX_VIDEO_SECONDS"],
        video_frames=config["VIDEO_FRAMES"],
    )


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    service = current_service()
    if service.predictor is None:
        reason = service.unavailable
        error = {"code": "model_unavailable", "message": f"the model is not loaded: {reason}"}
        return {"status": "unavailable", "reason": reason, "error": error}, 503
    return {"status": "ready", "model": service.model_name}
