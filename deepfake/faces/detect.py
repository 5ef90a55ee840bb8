"""Find every face in an image and cut a crop of each: the face stage that training and prediction share.

Training (``data.faces=...``), export, evaluate, explanations, the predictor and ``python -m deepfake.faces``
all call :func:`face_crops` with the :class:`FaceStage` a model file records, so a face is cut the same way
everywhere, to the pixel. Two detectors:

- ``blazeface`` (the default): MediaPipe's BlazeFace CNN run by onnxruntime (:mod:`deepfake.faces.blazeface`),
  which also gives eyes, nose and mouth; each crop is aligned on them (:mod:`deepfake.faces.align`): eyes
  level, sized and centred by the face's own geometry, so the same face is cut the same way in every image.
- ``dlib_hog``: dlib's HOG detector (:mod:`deepfake.faces.hog`) and a square of ``margin`` times its box,
  kept unchanged for model files that recorded it.

numpy, OpenCV, onnxruntime and (for ``dlib_hog``) dlib only: the torch-free predictor uses this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from deepfake.errors import ConfigError
from deepfake.faces import blazeface, hog
from deepfake.faces.align import aligned_crop, crop_matrix, to_crop

BLAZEFACE, DLIB_HOG = "blazeface", "dlib_hog"
DETECTOR = BLAZEFACE  # what a new FaceStage uses
DETECTORS = (BLAZEFACE, DLIB_HOG)
# The settings each detector reads; a model file records these and the common ones (detector, margin, min_size).
COMMON_FIELDS = ("detector", "margin", "min_size")
DETECTOR_FIELDS = {
    DLIB_HOG: ("detect_size", "second_size", "upsample", "threshold", "pad", "fallback_threshold"),
    BLAZEFACE: (
        "model",
        "min_score",
        "fallback_score",
        "nms_iou",
        "tile_above",
        "tile_overlap",
        "big_face",
        "sure_score",
        "refine_below",
        "presence",
    ),
}


@dataclass(frozen=True)
class FaceStage:
    """Settings of the face stage; a model file records those of its detector (``face_*`` keys, written and read by
    :mod:`deepfake.contract`)."""

    detector: str = DETECTOR
    margin: float = 1.3  # crop side / face side (the DFDC winner's margin)
    min_size: int = 40  # faces smaller than this many pixels (box side, in the original image) are ignored
    # dlib_hog (see deepfake.faces.hog)
    detect_size: int = 256  # longer side of the copy searched, in pixels
    second_size: int = 512  # nothing found: search a copy this large (at most the image's own size) again
    upsample: int = 0  # dlib's upsampling of that copy: each step finds faces half as small, at 4x the cost
    threshold: float = 0.0  # HOG score a face needs
    pad: float = 0.25  # second search: padding on each side, as a share of the longer side
    fallback_threshold: float = -0.6  # second search: the best candidate needs this score
    # blazeface (see deepfake.faces.blazeface)
    model: str = "short_range"  # the BlazeFace model of the whole-image pass
    min_score: float = 0.5  # detector probability a face needs
    fallback_score: float = 0.25  # no face above min_score: the best candidate above this one is taken
    nms_iou: float = 0.3  # candidates overlapping more than this are one face
    tile_above: float = 2.5  # search tiles too when the longer side exceeds this many model inputs (0: never)
    tile_overlap: float = 0.5  # neighbouring tiles overlap by this share of a tile
    big_face: float = 0.5  # no tiles when the whole-image pass found a face this share of the shorter side ...
    sure_score: float = 0.75  # ... scoring at least this
    refine_below: float = 0.35  # a face narrower than this share of the longer side gets a second look ...
    presence: float = 0.5  # ... and must score this in the face mesh's face-presence output (0: no check)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(f"face detector {self.detector!r} is not one of {', '.join(DETECTORS)}")
        for name in fields(self):
            kind = type(name.default)
            try:
                object.__setattr__(self, name.name, kind(getattr(self, name.name)))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"face {name.name}={getattr(self, name.name)!r} is not a {kind.__name__}") from exc
        checks = [
            (self.margin >= 1.0, f"face margin={self.margin} must be at least 1 (the crop holds the whole face)"),
            (self.min_size >= 0, f"face min_size={self.min_size} must not be negative"),
        ]
        if self.detector == DLIB_HOG:
            checks += [
                (self.detect_size >= hog.HOG_WINDOW, f"face detect_size={self.detect_size} must be at least 80 px"),
                (
                    not self.second_size or self.second_size > self.detect_size,
                    f"face second_size={self.second_size} must be above detect_size={self.detect_size}, "
                    "or 0 (no second search)",
                ),
                (0 <= self.upsample <= 2, f"face upsample={self.upsample} must be 0, 1 or 2"),
                (0.0 <= self.pad <= 1.0, f"face pad={self.pad} must be between 0 and 1"),
                (
                    self.fallback_threshold <= self.threshold,
                    f"face fallback_threshold={self.fallback_threshold} must not be above threshold={self.threshold}",
                ),
            ]
        else:
            checks += [
                (
                    self.model in blazeface.MODELS,
                    f"face model={self.model!r} is not one of {', '.join(blazeface.MODELS)}",
                ),
                (0 < self.min_score < 1, f"face min_score={self.min_score} must be strictly between 0 and 1"),
                (
                    0 < self.fallback_score <= self.min_score,
                    f"face fallback_score={self.fallback_score} must be above 0 and at most min_score={self.min_score}",
                ),
                (0 < self.nms_iou < 1, f"face nms_iou={self.nms_iou} must be strictly between 0 and 1"),
                (self.tile_above == 0 or self.tile_above >= 1, f"face tile_above={self.tile_above} must be 0 or >= 1"),
                (0 <= self.tile_overlap < 1, f"face tile_overlap={self.tile_overlap} must be in [0, 1)"),
                (0 < self.big_face <= 1, f"face big_face={self.big_face} must be in (0, 1]"),
                (0 < self.sure_score <= 1, f"face sure_score={self.sure_score} must be in (0, 1]"),
                (0 <= self.refine_below <= 1, f"face refine_below={self.refine_below} must be in [0, 1]"),
                (0 <= self.presence < 1, f"face presence={self.presence} must be in [0, 1)"),
            ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        """The settings this stage's detector reads: what a model file records and what names a crop cache."""
        values = asdict(self)
        return {name: values[name] for name in (*COMMON_FIELDS, *DETECTOR_FIELDS[self.detector])}

    @classmethod
    def from_dict(cls, values: dict) -> FaceStage:
        """A stage from some of its settings (the others default); an unknown name is a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown face setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def key(self) -> str:
        """A short stable name of these settings, for caches of crops."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Face:
    """A face found in an image: its box in pixels of that image (clipped to it), the detector's score, and, from
    BlazeFace, its keypoints (right eye, left eye, nose, mouth, right ear, left ear) in pixels of that image."""

    x: int
    y: int
    w: int
    h: int
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def box(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def warm_up(n: int = 1, stage: FaceStage | None = None) -> None:
    """Load what the stage's detector needs before the first image: the BlazeFace session, or ``n`` dlib detectors
    (about a second each), so the first requests do not wait for it."""
    stage = stage or FaceStage()
    if stage.detector == DLIB_HOG:
        hog.warm_up(n)
    else:
        blazeface.detector(stage.model)


def _clipped(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, round(float(box[0]))), max(0, round(float(box[1])))
    x1, y1 = min(width, round(float(box[2]))), min(height, round(float(box[3])))
    return x0, y0, x1 - x0, y1 - y0


def find_faces(rgb: np.ndarray, stage: FaceStage) -> list[Face]:
    """Every face in uint8 RGB (H, W, 3), largest first, in pixels of ``rgb``."""
    height, width = rgb.shape[:2]
    if stage.detector == DLIB_HOG:
        settings = {name: getattr(stage, name) for name in (*DETECTOR_FIELDS[DLIB_HOG], "min_size")}
        faces = [Face(*found) for found in hog.find(rgb, **settings)]
    else:
        settings = {name: getattr(stage, name) for name in (*DETECTOR_FIELDS[BLAZEFACE], "min_size")}
        found = blazeface.detect(rgb, **settings)
        faces = []
        for detection in found:
            x, y, w, h = _clipped(detection.box, width, height)
            side = float(detection.box[2] - detection.box[0])
            if w > 0 and h > 0 and side >= max(1, stage.min_size):
                points = tuple((float(px), float(py)) for px, py in detection.keypoints)
                faces.append(Face(x, y, w, h, detection.score, points))
    return sorted(faces, key=lambda f: -f.w * f.h)


def _square_of(face: Face, margin: float) -> tuple[int, int, int]:
    """(left, top, side) of the square of ``margin`` times a HOG box's longer side around its centre."""
    side = max(1, round(margin * max(face.w, face.h)))
    return round(face.x + face.w / 2 - side / 2), round(face.y + face.h / 2 - side / 2), side


def crop_face(rgb: np.ndarray, face: Face, margin: float) -> np.ndarray:
    """The square of ``margin`` times the face box's longer side around its centre, black where it leaves the image:
    how a ``dlib_hog`` face is cut."""
    import cv2

    height, width = rgb.shape[:2]
    left, top, side = _square_of(face, margin)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, width), min(top + side, height)
    inside = rgb[y0:y1, x0:x1]
    if inside.shape[:2] == (side, side):
        return np.ascontiguousarray(inside)
    return cv2.copyMakeBorder(
        inside, y0 - top, top + side - y1, x0 - left, left + side - x1, cv2.BORDER_CONSTANT, value=0
    )


def cut(rgb: np.ndarray, face: Face, stage: FaceStage) -> np.ndarray:
    """The crop of one face as ``stage`` cuts it: aligned on its keypoints, or the square around a HOG box."""
    if face.keypoints:
        return aligned_crop(rgb, np.asarray(face.keypoints), stage.margin)[0]
    return crop_face(rgb, face, stage.margin)


def image_outline(face: Face, stage: FaceStage, width: int, height: int) -> np.ndarray:
    """The corners of the image (``width`` x ``height``) in pixels of the face's crop (4, 2): where the crop holds
    the image, and beyond which :func:`cut` filled it black."""
    if face.keypoints:
        matrix = crop_matrix(np.asarray(face.keypoints), stage.margin)[0]
    else:
        left, top, _ = _square_of(face, stage.margin)
        matrix = np.array([[1.0, 0.0, -left], [0.0, 1.0, -top]])
    # Pixel centres sit on integers, so the image's outer edge is half a pixel beyond them.
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    return to_crop(corners, matrix)


def face_crops(rgb: np.ndarray, stage: FaceStage) -> list[tuple[Face, np.ndarray]]:
    """(face, crop) for every face found, largest first: what training and the predictor both feed the model."""
    return [(face, cut(rgb, face, stage)) for face in find_faces(rgb, stage)]


def main_face(rgb: np.ndarray, stage: FaceStage | None) -> np.ndarray:
    """The crop of the largest face, or the whole image when none is found (or ``stage`` is None): what
    training reads for one image."""
    if stage is None:
        return rgb
    found = face_crops(rgb, stage)
    return found[0][1] if found else rgb
