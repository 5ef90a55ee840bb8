"""The web app: an upload page and a JSON API over one model per process.

    from deepfake.web import create_app
    app = create_app()                                         # bundled model, limits from DEEPFAKE_* variables
    app = create_app({"MODEL": "m.onnx", "KEEP_UPLOADS": "kept/"})

Production: ``make serve`` (gunicorn -c deepfake/web/gunicorn_conf.py). Development: ``python -m deepfake.web``.
Routes are in ``pages`` (HTML) and ``api`` (JSON); what they do with an upload is in ``service``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from deepfake.web import api, config, pages
from deepfake.web.service import Service, WebError, current_service

log = logging.getLogger("deepfake.web")

# Pages load only their own script, style sheet and images (plus data: for results, blob: for the preview), and
# the script posts uploads to the app itself (connect-src), to show their progress.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

# Error codes for the HTTP errors Flask and Werkzeug raise themselves.
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def create_app(overrides: Mapping | None = None) -> Flask:
    """A configured app with its model loaded. A missing or corrupt model is reported, not raised."""
    app = Flask(__name__)
    app.config.update(config.from_env())
    app.config.update(overrides or {})
    config.check(app.config)
    _log_to_stderr(app.config["LOG_LEVEL"])
    app.extensions["deepfake"] = Service(
        app.config["MODEL"],
        max_pixels=app.config["MAX_PIXELS"],
        max_files=app.config["MAX_FILES"],
        max_image_bytes=app.config["MAX_IMAGE_BYTES"],
        max_video_seconds=app.config["MAX_VIDEO_SECONDS"],
        video_frames=app.config["VIDEO_FRAMES"],
        keep_uploads=app.config["KEEP_UPLOADS"],
        ort_threads=app.config["ORT_THREADS"],
        face_detectors=app.config["FACE_DETECTORS"],
    )
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.before_request(_start)
    app.after_request(_finish)
    app.register_error_handler(WebError, _web_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def _log_to_stderr(level: str) -> None:
    """One line per request at INFO; gunicorn configures only its own loggers, so give ours a handler."""
    log.setLevel(str(level).upper())
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)


def _start() -> None:
    # Our own id, never one a client sends: it names log lines, so it must be unique and safe to print.
    g.request_id = uuid.uuid4().hex
    g.start = time.perf_counter()


def _finish(response):
    request_id = g.get("request_id", "-")
    response.headers["X-Request-ID"] = request_id
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    ms = 1e3 * (time.perf_counter() - g.get("start", time.perf_counter()))
    log.info("%s %s %s %d %.1f ms", request_id, request.method, request.path, response.status_code, ms)
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")


def _error(status: int, code: str, message: str):
    if _wants_json():
        return jsonify(error={"code": code, "message": message}), status
    try:
        service = current_service()
        model, unavailable, methods = service.model_name, service.unavailable, service.explain_methods()
    except Exception:  # the error page must render even when the service is what failed
        model, unavailable, methods = None, None, ()
    page = render_template(
        "index.html", error=message, status=status, model=model, unavailable=unavailable, explain_methods=methods
    )
    return page, status


def _web_error(exc: WebError):
    log.info("%s %s", g.get("request_id", "-"), exc.message)
    return _error(exc.status, exc.code, exc.message)


def _http_error(exc: HTTPException):
    limit = request.max_content_length or 0
    if exc.code == 413 and (request.content_length or 0) > limit:
        message = f"the upload is over the limit of {limit / config.MB:g} MB"
        _drain_refused_body(limit)
    else:
        message = f"{exc.name}: {exc.description}"
    return _error(exc.code or 500, HTTP_CODES.get(exc.code, "http_error"), message)


def _drain_refused_body(limit: int) -> None:
    """Read and drop a body refused for its size, when it is at most twice the limit.

    The 413 goes out before the body is read, and gunicorn then drains only 64 KB before closing:
    a client that sends its whole body before reading the answer (Python's http.client, for one)
    gets a reset connection instead of the 413. Reading the rest, as nginx's lingering close does,
    lets it read the answer; the bound keeps this no costlier than accepting an upload at the limit.
    """
    length = request.content_length
    if not length or not limit or length > 2 * limit:
        return
    stream = request.environ["wsgi.input"]
    while length > 0:
        chunk = stream.read(min(length, 1 << 16))
        if not chunk:
            break
        length -= len(chunk)


def _unexpected(exc: Exception):
    # A worker never dies on input: anything unforeseen becomes a 500, logged with the request id for the operator.
    log.exception("%s unexpected error on %s %s", g.get("request_id", "-"), request.method, request.path)
    return _error(500, "internal_error", f"internal error; quote request id {g.get('request_id', '-')}")
