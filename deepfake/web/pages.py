"""The HTML routes: the upload page, and the form posts of the reference apps answered with the result page."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from deepfake.contract import verdict_band
from deepfake.web.service import Result, current_service, data_uri, faces_option, spool_dir, uploads_from

bp = Blueprint("pages", __name__)

# The reference apps posted the image as "file" or as "image"; both are read.
FORM_FIELDS = ("file", "image")
# The score timeline of a video: an SVG of this size (its viewBox), scaled to the page's width.
TIMELINE_W, TIMELINE_H = 600, 120
# The verdict bands (deepfake.contract.VERDICTS) in words: the page's headline.
VERDICT_WORDS = {"likely_fake": "Likely fake", "uncertain": "Uncertain", "likely_real": "Likely real"}


def render_page(status: int = 200, **context):
    service = current_service()
    return (
        render_template(
            "index.html",
            model=service.model_name,
            unavailable=service.unavailable,
            explain_methods=service.explain_methods(),
            verdict_words=VERDICT_WORDS,
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
    faces = faces_option(request.form.get("faces"))
    with spool_dir() as spool:
        uploads = uploads_from(request.files, spool, FORM_FIELDS, service.max_image_bytes)
        results = service.predict(uploads, explain=explain, preview=True, faces=faces)
    return render_page(results=[shown(r, explain, scale(service.predictor)) for r in results])


def scale(predictor) -> dict:
    """The gauge's two marks and what they mean on the model's validation split, when its file states it."""
    contract = predictor.contract
    low = predictor.threshold_low
    return {
        "threshold": predictor.threshold,
        "threshold_low": low,
        # The rates hold for the file's own thresholds only, not for one given to the server instead.
        "real_above": contract.threshold_val_fpr if predictor.threshold == contract.threshold else None,
        "fake_below": contract.threshold_low_val_fnr if low == contract.threshold_low else None,
    }


def shown(result: Result, explain: str | None, gauge: dict) -> dict:
    """What the template draws for one result: faces' boxes stay in the upload's pixels, which the picture's
    SVG viewBox uses, so they need no scaling."""
    p = result.prediction
    out = {
        "kind": result.kind,
        "filename": result.filename,
        "label": p.label,
        "verdict": p.verdict,
        "gauge": gauge,
        "p_fake": p.p_fake,
        "confidence": p.confidence,
        "latency_ms": result.latency_ms,
        "face_found": p.face_found,
        "note": p.note,
        "faces": p.faces,
        "width": result.width,
        "height": result.height,
        "preview": data_uri("image/jpeg", result.preview_jpeg),
        "heatmap": data_uri("image/png", result.heatmap_png),
        "explain": explain,
        # A line of text as tall as 1/25 of the picture's longer side, whatever its size.
        "font": max(result.width, result.height) / 25,
    }
    if result.kind == "video":
        best = next((f for f in p.frames if f.index == p.best_index), None)
        out["faces"] = best.faces if best else ()
        out["best"] = best
        out["timeline"] = timeline(p.frames, gauge["threshold"], gauge["threshold_low"])
    return out


def timeline(frames, threshold: float, threshold_low: float | None = None) -> dict:
    """Points of the score timeline in SVG units: x spreads the sampled frames over the width, y is p_fake."""
    last = max(frames[-1].time_s, 1e-6) if frames else 1.0

    def x(t: float) -> float:
        return round(10 + (TIMELINE_W - 20) * t / last, 1)

    def y(p: float) -> float:
        return round(TIMELINE_H - 10 - (TIMELINE_H - 20) * p, 1)

    points = [
        {
            "x": x(f.time_s),
            "y": y(f.p_fake),
            "p": f.p_fake,
            "t": f.time_s,
            "index": f.index,
            "band": verdict_band(f.p_fake, threshold, threshold_low),
        }
        for f in frames
        if f.p_fake is not None
    ]
    missing = [{"x": x(f.time_s), "t": f.time_s, "index": f.index} for f in frames if f.p_fake is None]
    return {
        "width": TIMELINE_W,
        "height": TIMELINE_H,
        "points": points,
        "missing": missing,
        "line": " ".join(f"{pt['x']},{pt['y']}" for pt in points),
        "threshold": threshold,
        "threshold_y": y(threshold),
        "threshold_low": threshold_low,
        "threshold_low_y": None if threshold_low is None or threshold_low >= threshold else y(threshold_low),
        "baseline_y": TIMELINE_H - 10,
        "duration": last,
    }
