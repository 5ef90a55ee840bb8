"""The HTML routes: the upload page, and the form posts of the reference apps answered with the result page."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from deepfake.web.service import current_service, data_uri, uploads_from

bp = Blueprint("pages", __name__)

# The reference apps posted the image as "file" or as "image"; both are read.
FORM_FIELDS = ("file", "image")


def render_page(status: int = 200, **context):
    service = current_service()
    return (
        render_template(
            "index.html",
            model=service.model_name,
            unavailable=service.unavailable,
            explain_methods=service.explain_methods(),
            **context,
        ),
        status,
    )


@bp.get("/service")
@bp.get("/")  # registered first, so links to the page point here
def index():
    return render_page()


@bp.post("/upload")
@bp.post("/deepfake")  # registered first: the page's form posts here
def upload():
    service = current_service()
    explain = None
    if request.form.get("heatmap"):  # "show heatmap": the method picked beside it, else the first one there is
        explain = request.form.get("explain") or next(iter(service.explain_methods()), "occlusion")
    results = service.predict(uploads_from(request.files, FORM_FIELDS), explain=explain, preview=True)
    shown = [
        {
            "filename": r.filename,
            "label": r.label,
            "p_fake": r.p_fake,
            "confidence": r.confidence,
            "latency_ms": r.latency_ms,
            "preview": data_uri("image/jpeg", r.preview_jpeg),
            "heatmap": data_uri("image/png", r.heatmap_png),
            "explain": explain,
        }
        for r in results
    ]
    return render_page(results=shown)
