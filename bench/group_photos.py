"""Face detectors on generated group photos, side by side in one run: recall by face size and false boxes.

    python bench/group_photos.py                                  # blazeface and dlib_hog, 120 photos
    python bench/group_photos.py --detector dlib_hog --save /tmp/group_check

The photos are made here, from ``faces-mini`` and ``dfdc-mini`` under --datasets, the same for a seed
(photo i depends only on the seed and i, so --n 10 gives the first 10 photos of --n 120):

- A photo is 640x480 to 1280x960, a quarter of them portrait, with 1 to 6 faces drawn (3.5 on average);
  placement is by rejection, so a crowded photo may end with fewer faces, and smaller ones.
- Each face is a random crop of either dataset (half each; real and fake mixed), scaled so that its face box
  is the drawn size, log-uniform in 64-320 px (as many faces from 64 to 143 px as from 143 to 320), turned
  by a uniform angle in +-30 degrees, and blended in with a feathered mask (an ellipse around a faces-mini
  face and its hair; a rounded square for dfdc-mini, whose face fills the crop) so no crop edge shows.
- The face box (the truth) is a square fixed per dataset, measured with dlib's 68 landmarks on 80 crops of
  each: faces-mini's jaw spans x 0.21-0.77 of the crop, brows at y 0.38, chin at 0.93, so its box is the
  square of side 0.64 centred at (0.50, 0.58): cheek to cheek, upper forehead to chin. A dfdc-mini face
  fills its crop (jaw 0.03-0.97, chin at 1.01, forehead cut off: tighter than faces-mini, not looser), so
  its box is what the mask leaves of it: the square of side 0.90 centred at (0.50, 0.52). A turned face's
  box is the axis-aligned box of that square's turned corners: up to 37% wider than the face at 30
  degrees, which the matching below allows for.
- Faces do not hide each other: the pastes over a face's box cover at most 10% of it, all added up.
- Backgrounds hold no face: a gradient between two random colours, band-limited noise at 4-256 px (weaker
  the finer), random lines, rectangles and ellipses, and in half the photos a mosaic of 16 px tiles of
  dataset images, each tile turned or flipped at random and blurred into its neighbours: too small and
  shuffled for a face to survive. The photo is then saved and read back as a JPEG of quality 80-95, as
  users' photos are.

Scoring: a detection finds a face when their IoU is at least --min-iou (0.3; greedy, best IoU first, one
detection per face). Detectors box faces differently (dlib boxes brows to chin, others the whole head) and
the truth of a turned face is wider than the face, so a detection that misses that IoU still finds a face
whose box holds the detection's centre and whose side (the square root of the area) is 0.5x-2x the
detection's. A detection that finds no face is a false box. Recall is also given by size and by dataset
(dfdc-mini faces, cut off at the forehead and often soft, dark or turned aside, are the harder ones).

Targets (the issue): faces of 100 px or more 95% found, all faces 80% found, at most 0.05 false boxes per photo.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_DETECTORS = ("blazeface", "dlib_hog")

SIZE_RANGE = (64, 320)  # face box side, in pixels of the photo
MAX_ANGLE = 30.0  # degrees either way
MAX_FACES = 6
MAX_OVERLAP = 0.1  # share of a face's box another paste may cover
PLACE_TRIES = 100  # draws of size, angle and place per face before giving it up
# (height, width); portrait ones are drawn a quarter of the time.
LANDSCAPE = ((480, 640), (600, 800), (768, 1024), (720, 1280), (960, 1280))
PORTRAIT = ((640, 480), (800, 600), (1024, 768), (1280, 960))
TILE = 16  # background mosaic tile, in pixels of a dataset image: smaller than an eye at 256 px
JPEG_QUALITY = (80, 95)

SIZE_BINS = ((64, 100), (100, 160), (160, 240), (240, 320))
BIG_FACE = 100
TARGET_RECALL_100 = 0.95
TARGET_RECALL_ALL = 0.80
TARGET_FALSE_PER_IMAGE = 0.05

Box = tuple[float, float, float, float]  # x, y, w, h


@dataclass(frozen=True)
class Source:
    """Where the face sits in one dataset's crops, as shares of the crop's side, and the mask that pastes it."""

    folder: str
    face_side: float
    face_cx: float
    face_cy: float
    mask_cy: float
    mask_a: float  # half width of the mask
    mask_b: float  # half height
    mask_power: float  # |x/a|^p + |y/b|^p <= 1: 2 an ellipse, 4 a rounded square


SOURCES = (
    Source("faces-mini", 0.64, 0.50, 0.58, mask_cy=0.54, mask_a=0.40, mask_b=0.42, mask_power=2.0),
    Source("dfdc-mini", 0.90, 0.50, 0.52, mask_cy=0.50, mask_a=0.44, mask_b=0.44, mask_power=4.0),
)
FEATHER = 0.025  # the mask's Gaussian blur, as a share of the crop's side


@dataclass
class GroupPhoto:
    """A generated photo (uint8 RGB), its faces' boxes (x, y, w, h in pixels) and each face's drawn size."""

    rgb: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    sizes: list[float]
    sources: list[str] = field(default_factory=list)  # each face's dataset, for recall by source


@dataclass(frozen=True)
class Placement:
    source: Source
    file: Path
    size: float
    angle: float
    cx: float  # the face box's centre in the photo
    cy: float


# ---------------------------------------------------------------- generation


def dataset_files(datasets: Path) -> dict[str, list[Path]]:
    """Each source's images, sorted so that a seed gives the same photos on every machine."""
    files = {}
    for source in SOURCES:
        folder = datasets / source.folder
        found = sorted(folder.glob("Real/*.jpg"), key=str) + sorted(folder.glob("Fake/*.jpg"), key=str)
        if not found:
            raise FileNotFoundError(f"no Real/*.jpg or Fake/*.jpg under {folder}")
        files[source.folder] = found
    return files


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _rotation(angle: float) -> np.ndarray:
    # cv2's own matrix, so that boxes turn exactly as warpAffine turns the pixels.
    return cv2.getRotationMatrix2D((0.0, 0.0), angle, 1.0)[:, :2]


def _turned_rect(left: float, top: float, right: float, bottom: float, place: Placement) -> np.ndarray:
    """Corners of a rectangle given relative to the face centre, turned with the paste, in the photo."""
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    return (corners @ _rotation(place.angle).T + (place.cx, place.cy)).astype(np.float32)


def face_polygon(place: Placement) -> np.ndarray:
    half = place.size / 2
    return _turned_rect(-half, -half, half, half, place)


def paint_polygon(place: Placement) -> np.ndarray:
    """The turned box of the mask's inner part (alpha above one half): what a paste covers."""
    s, side = place.source, place.size / place.source.face_side
    return _turned_rect(
        (0.5 - s.mask_a - s.face_cx) * side,
        (s.mask_cy - s.mask_b - s.face_cy) * side,
        (0.5 + s.mask_a - s.face_cx) * side,
        (s.mask_cy + s.mask_b - s.face_cy) * side,
        place,
    )


def polygon_box(polygon: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _covered(paint: np.ndarray, face: np.ndarray) -> float:
    area, _ = cv2.intersectConvexConvex(paint, face)
    return area / max(cv2.contourArea(face), 1e-6)


def fits(place: Placement, placed: Sequence[Placement], height: int, width: int) -> bool:
    """The face's box inside the photo, and no face's box covered by more than MAX_OVERLAP of it, all pastes summed
    (several small faces on one big one add up)."""
    x, y, w, h = polygon_box(face_polygon(place))
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return False
    everyone = [*placed, place]
    for face in everyone:
        polygon = face_polygon(face)
        if sum(_covered(paint_polygon(other), polygon) for other in everyone if other is not face) > MAX_OVERLAP:
            return False
    return True


def place_faces(rng: np.random.Generator, files: dict[str, list[Path]], height: int, width: int) -> list[Placement]:
    placed: list[Placement] = []
    log_lo, log_hi = math.log(SIZE_RANGE[0]), math.log(SIZE_RANGE[1])
    for _ in range(int(rng.integers(1, MAX_FACES + 1))):
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        names = files[source.folder]
        file = names[int(rng.integers(len(names)))]
        for attempt in range(PLACE_TRIES):
            # A new size only every tenth try: a big face is moved around before it is given up for a smaller one.
            if attempt % 10 == 0:
                size = math.exp(rng.uniform(log_lo, log_hi))
            angle, cx, cy = rng.uniform(-MAX_ANGLE, MAX_ANGLE), rng.uniform(0, width), rng.uniform(0, height)
            place = Placement(source, file, size, angle, cx, cy)
            if fits(place, placed, height, width):
                placed.append(place)
                break
    return placed


_MASKS: dict[tuple[str, int], np.ndarray] = {}


def crop_mask(source: Source, side: int) -> np.ndarray:
    """uint8 alpha of a crop: a superellipse feathered to nothing before the crop's edge."""
    key = (source.folder, side)
    if key not in _MASKS:
        u = (np.arange(side, dtype=np.float32) + 0.5) / side
        dx = np.abs((u[None, :] - 0.5) / source.mask_a)
        dy = np.abs((u[:, None] - source.mask_cy) / source.mask_b)
        hard = ((dx**source.mask_power + dy**source.mask_power) <= 1).astype(np.float32)
        soft = cv2.GaussianBlur(hard, (0, 0), FEATHER * side, borderType=cv2.BORDER_CONSTANT)
        _MASKS[key] = np.round(255 * soft).astype(np.uint8)
    return _MASKS[key]


def paste(photo: np.ndarray, place: Placement) -> None:
    """Blend the crop into ``photo`` (uint8 RGB, in place): scaled, turned about the face centre, feathered."""
    crop = read_rgb(place.file)
    rgba = np.dstack([crop, crop_mask(place.source, crop.shape[0])])
    side = max(2, round(place.size / place.source.face_side))
    shrink = cv2.INTER_AREA if side < crop.shape[0] else cv2.INTER_CUBIC
    rgba = cv2.resize(rgba, (side, side), interpolation=shrink)
    fx, fy = place.source.face_cx * side, place.source.face_cy * side
    matrix = cv2.getRotationMatrix2D((fx, fy), place.angle, 1.0)
    matrix[:, 2] += (place.cx - fx, place.cy - fy)
    corners = np.array([[0, 0, 1], [side, 0, 1], [side, side, 1], [0, side, 1]], dtype=np.float64) @ matrix.T
    height, width = photo.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), (width, height))
    if x1 <= x0 or y1 <= y0:
        return
    matrix[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(rgba, matrix, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
    alpha = warped[..., 3:].astype(np.float32) / 255
    region = photo[y0:y1, x0:x1].astype(np.float32)
    region += alpha * (warped[..., :3].astype(np.float32) - region)
    photo[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)


# Pixels of the photo per noise sample, and the range of its amplitude: fine noise weaker, as in photos, where
# strong pixel-level colour noise (which sets detectors off) is rare.
NOISE_SCALES = {4: (2.0, 10.0), 16: (4.0, 18.0), 64: (6.0, 30.0), 256: (10.0, 40.0)}


def _smooth_base(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A gradient between two random colours plus band-limited noise at several scales.

    Both are made at a quarter of the photo's resolution, where the finest noise is one sample a pixel,
    and enlarged once: the same picture at a sixteenth of the work.
    """
    finest = min(NOISE_SCALES)
    small_h, small_w = -(-height // finest), -(-width // finest)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.add.outer(np.arange(small_h) * math.sin(theta), np.arange(small_w) * math.cos(theta))
    ramp = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)).astype(np.float32)
    start, end = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    base = start + ramp[..., None] * (end - start)
    for scale, (weakest, strongest) in NOISE_SCALES.items():
        if rng.random() < 0.35:
            continue
        step = scale // finest
        channels = 3 if rng.random() < 0.5 else 1
        noise = rng.normal(size=(small_h // step + 2, small_w // step + 2, channels)).astype(np.float32)
        if step > 1:
            noise = cv2.resize(noise, (small_w, small_h), interpolation=cv2.INTER_CUBIC)
        base += (
            rng.uniform(weakest, strongest)
            * noise.reshape(noise.shape[0], noise.shape[1], channels)[:small_h, :small_w]
        )
    small = np.clip(np.round(base), 0, 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _add_shapes(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Random lines, rectangles and ellipses, in layers of their own opacity, over uint8 ``image``."""
    height, width = image.shape[:2]
    canvas = image
    for _ in range(int(rng.integers(1, 4))):  # layers, each seen through at its own opacity
        layer = canvas.copy()
        for _ in range(int(rng.integers(3, 15))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            kind = rng.integers(3)
            p = (int(rng.integers(width)), int(rng.integers(height)))
            q = (int(rng.integers(width)), int(rng.integers(height)))
            thick = -1 if kind and rng.random() < 0.5 else int(rng.integers(1, 12))
            if kind == 0:
                cv2.line(layer, p, q, colour, max(thick, 1), cv2.LINE_AA)
            elif kind == 1:
                cv2.rectangle(layer, p, q, colour, thick, cv2.LINE_AA)
            else:
                axes = (int(rng.integers(5, width // 3)), int(rng.integers(5, height // 3)))
                cv2.ellipse(layer, p, axes, float(rng.uniform(0, 180)), 0, 360, colour, thick, cv2.LINE_AA)
        opacity = float(rng.uniform(0.3, 0.9))
        canvas = cv2.addWeighted(layer, opacity, canvas, 1.0 - opacity, 0.0)
    return canvas


def _mosaic(rng: np.random.Generator, files: dict[str, list[Path]], height: int, width: int) -> np.ndarray:
    """Blurred mosaic of small dataset tiles, each turned or flipped: colours and texture of photos, no faces."""
    tiles = []
    for _ in range(3):
        names = files[SOURCES[int(rng.integers(len(SOURCES)))].folder]
        image = read_rgb(names[int(rng.integers(len(names)))])
        rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
        grid = image[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE, 3).swapaxes(1, 2)
        tiles.append(grid.reshape(-1, TILE, TILE, 3))
    pool = np.concatenate(tiles)
    pool = np.concatenate([np.rot90(pool, k, axes=(1, 2)) for k in range(4)] + [pool[:, ::-1]])
    zoom = rng.uniform(1.0, 3.0)
    rows, cols = math.ceil(height / (TILE * zoom)), math.ceil(width / (TILE * zoom))
    picked = pool[rng.integers(len(pool), size=rows * cols)].reshape(rows, cols, TILE, TILE, 3)
    sheet = picked.swapaxes(1, 2).reshape(rows * TILE, cols * TILE, 3)
    # Blurred over a third of a tile or more, so the tiles' square edges go and their colours run together;
    # before enlarging, where it costs a zoom squared less.
    sheet = cv2.GaussianBlur(sheet, (0, 0), rng.uniform(0.3, 0.5) * TILE)
    sheet = cv2.resize(sheet, (round(cols * TILE * zoom), round(rows * TILE * zoom)), interpolation=cv2.INTER_LINEAR)
    return sheet[:height, :width]


def background(rng: np.random.Generator, files: dict[str, list[Path]], height: int, width: int) -> np.ndarray:
    image = _add_shapes(rng, _smooth_base(rng, height, width))
    if rng.random() < 0.5:
        alpha = rng.uniform(0.4, 0.8)
        image = cv2.addWeighted(_mosaic(rng, files, height, width), alpha, image, 1.0 - alpha, 0.0)
    return image


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_photo(rng: np.random.Generator, files: dict[str, list[Path]]) -> GroupPhoto:
    shapes = PORTRAIT if rng.random() < 0.25 else LANDSCAPE
    height, width = shapes[int(rng.integers(len(shapes)))]
    placed = place_faces(rng, files, height, width)
    photo = background(rng, files, height, width)
    for place in placed:
        paste(photo, place)
    rgb = jpeg_round_trip(photo, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    boxes = [polygon_box(face_polygon(p)) for p in placed]
    return GroupPhoto(rgb, boxes, [p.size for p in placed], [p.source.folder for p in placed])


def make_group_photos(datasets: Path, n: int = 120, seed: int = 0) -> list[GroupPhoto]:
    """``n`` group photos from faces-mini and dfdc-mini under ``datasets``; photo i depends only on seed and i."""
    files = dataset_files(Path(datasets))
    return [make_photo(np.random.default_rng((seed, i)), files) for i in range(n)]


# ---------------------------------------------------------------- scoring


def iou(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def loosely_matches(truth: Box, found: Box) -> bool:
    """The detection's centre in the face's box, and its side within 0.5x-2x of the box's."""
    cx, cy = found[0] + found[2] / 2, found[1] + found[3] / 2
    inside = truth[0] <= cx <= truth[0] + truth[2] and truth[1] <= cy <= truth[1] + truth[3]
    ratio = math.sqrt(max(found[2] * found[3], 1e-9) / max(truth[2] * truth[3], 1e-9))
    return inside and 0.5 <= ratio <= 2.0


def match(truth: Sequence[Box], found: Sequence[Box], min_iou: float) -> tuple[list[int | None], int]:
    """For each face the detection that finds it (or None), and how many were found only loosely."""
    owner: list[int | None] = [None] * len(truth)
    used: set[int] = set()
    overlaps = sorted(
        ((iou(t, d), i, j) for i, t in enumerate(truth) for j, d in enumerate(found)), key=lambda p: -p[0]
    )
    for value, i, j in overlaps:
        if value >= min_iou and owner[i] is None and j not in used:
            owner[i] = j
            used.add(j)
    loose = 0
    for i, t in enumerate(truth):
        if owner[i] is not None:
            continue
        # Nearest centre first, among the detections still free.
        tcx, tcy = t[0] + t[2] / 2, t[1] + t[3] / 2
        free = [j for j, d in enumerate(found) if j not in used and loosely_matches(t, d)]
        if free:
            j = min(
                free, key=lambda j: math.hypot(found[j][0] + found[j][2] / 2 - tcx, found[j][1] + found[j][3] / 2 - tcy)
            )
            owner[i] = j
            used.add(j)
            loose += 1
    return owner, loose


def _ratio(found: int, total: int) -> float | None:
    return found / total if total else None


def size_bin(size: float) -> str | None:
    for lo, hi in SIZE_BINS:
        if lo <= size < hi or (hi == SIZE_BINS[-1][1] and size == hi):
            return f"{lo}-{hi}"
    return None


def _tally(rows: dict[str, dict], key: str, hit: int) -> None:
    row = rows.setdefault(key, {"faces": 0, "found": 0})
    row["faces"] += 1
    row["found"] += hit


def score(
    find: Callable[[np.ndarray], Sequence[Sequence[float]]], photos: Sequence[GroupPhoto], *, min_iou: float = 0.3
) -> dict:
    """Run ``find(rgb) -> boxes (x, y, w, h)`` over the photos; recall overall, for faces >= 100 px and by size."""
    counts = {"faces": 0, "found": 0, "faces_100": 0, "found_100": 0, "false_boxes": 0, "loose": 0}
    bins = {f"{lo}-{hi}": {"faces": 0, "found": 0} for lo, hi in SIZE_BINS}
    by_source = {s.folder: {"faces": 0, "found": 0} for s in SOURCES}
    times, detections = [], []
    for photo in photos:
        start = time.perf_counter()
        found = [tuple(float(v) for v in box[:4]) for box in find(photo.rgb)]
        times.append(1e3 * (time.perf_counter() - start))
        detections.append([[round(v, 1) for v in box] for box in found])
        owner, loose = match([tuple(map(float, b)) for b in photo.boxes], found, min_iou)
        counts["loose"] += loose
        counts["false_boxes"] += len(found) - sum(o is not None for o in owner)
        sources = photo.sources or ["unknown"] * len(photo.sizes)
        for size, source, hit in zip(photo.sizes, sources, owner, strict=True):
            hit = int(hit is not None)
            _tally(by_source, source, hit)
            counts["faces"] += 1
            counts["found"] += hit
            if size >= BIG_FACE:
                counts["faces_100"] += 1
                counts["found_100"] += hit
            label = size_bin(size)
            if label:
                _tally(bins, label, hit)
    for row in (*bins.values(), *by_source.values()):
        row["recall"] = _ratio(row["found"], row["faces"])
    return {
        "photos": len(photos),
        "faces": counts["faces"],
        "found": counts["found"],
        "recall_all": _ratio(counts["found"], counts["faces"]),
        "faces_100": counts["faces_100"],
        "found_100": counts["found_100"],
        "recall_100": _ratio(counts["found_100"], counts["faces_100"]),
        "false_boxes": counts["false_boxes"],
        "false_per_image": counts["false_boxes"] / len(photos) if photos else None,
        "found_loosely": counts["loose"],
        "by_size": bins,
        "by_source": by_source,
        "ms_median": float(np.median(times)) if times else None,
        "ms_p90": float(np.percentile(times, 90)) if times else None,
        "detections": detections,
    }


# ---------------------------------------------------------------- the bench


def detector_finder(name: str) -> Callable[[np.ndarray], list[Box]]:
    """``find`` for the face stage with this detector; raises what FaceStage raises for a name it does not know."""
    from deepfake.faces import FaceStage, find_faces

    stage = FaceStage(detector=name)
    return lambda rgb: [(f.x, f.y, f.w, f.h) for f in find_faces(rgb, stage)]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(results: dict[str, dict]) -> str:
    """One column per detector; the targets, and PASS or FAIL beside each figure that has one."""
    rows: list[tuple[str, str, list[str]]] = []

    def add(label: str, target: str, cell: Callable[[dict], str]) -> None:
        rows.append((label, target, [cell(r) for r in results.values()]))

    add(
        f"recall, faces >= {BIG_FACE} px",
        f">= {TARGET_RECALL_100:.0%}",
        lambda r: f"{_percent(r['recall_100'])} {_verdict((r['recall_100'] or 0) >= TARGET_RECALL_100)}",
    )
    add(
        "recall, all faces",
        f">= {TARGET_RECALL_ALL:.0%}",
        lambda r: f"{_percent(r['recall_all'])} {_verdict((r['recall_all'] or 0) >= TARGET_RECALL_ALL)}",
    )
    add(
        "false boxes per photo",
        f"<= {TARGET_FALSE_PER_IMAGE}",
        lambda r: f"{r['false_per_image']:.3f} {_verdict(r['false_per_image'] <= TARGET_FALSE_PER_IMAGE)}",
    )
    for lo, hi in SIZE_BINS:
        key = f"{lo}-{hi}"
        add(
            f"recall, {key} px",
            "",
            lambda r, key=key: (
                f"{_percent(r['by_size'][key]['recall'])} ({r['by_size'][key]['found']}/{r['by_size'][key]['faces']})"
            ),
        )
    for source in SOURCES:
        add(
            f"recall, {source.folder} faces",
            "",
            lambda r, key=source.folder: (
                f"{_percent(r['by_source'][key]['recall'])} "
                f"({r['by_source'][key]['found']}/{r['by_source'][key]['faces']})"
            ),
        )
    add("found / faces", "", lambda r: f"{r['found']}/{r['faces']}")
    add("  of them by centre, not IoU", "", lambda r: str(r["found_loosely"]))
    add("false boxes", "", lambda r: str(r["false_boxes"]))
    add("ms per photo, median", "", lambda r: f"{r['ms_median']:.1f}")
    add("ms per photo, p90", "", lambda r: f"{r['ms_p90']:.1f}")
    names = list(results)
    widths = [max(len(n), *(len(cells[k]) for _, _, cells in rows)) for k, n in enumerate(names)]
    label_width = max(len(label) for label, _, _ in rows)
    lines = [f"{'':{label_width}}  {'target':8}  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))]
    for label, target, cells in rows:
        lines.append(
            f"{label:{label_width}}  {target:8}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def save(folder: Path, photos: Sequence[GroupPhoto], results: dict[str, dict], settings: dict) -> None:
    """Each detector's photos with the faces' boxes (green) and its detections (red), and results.json."""
    for name, result in results.items():
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        for i, (photo, found) in enumerate(zip(photos, result["detections"], strict=True)):
            bgr = cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2BGR)
            for x, y, w, h in photo.boxes:
                cv2.rectangle(bgr, (x, y), (x + w, y + h), (0, 200, 0), 2)
            for x, y, w, h in found:
                cv2.rectangle(bgr, (round(x), round(y)), (round(x + w), round(y + h)), (0, 0, 255), 2)
            cv2.imwrite(str(out / f"photo_{i:03d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    record = {
        **settings,
        "photos": [
            {
                "shape": list(p.rgb.shape[:2]),
                "boxes": [list(b) for b in p.boxes],
                "sizes": [round(s, 1) for s in p.sizes],
            }
            for p in photos
        ],
        "detectors": results,
    }
    (folder / "results.json").write_text(json.dumps(record, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="How the photos are made and scored: see the module docstring (python -m pydoc bench/group_photos.py).",
    )
    parser.add_argument(
        "--datasets",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DATASETS,
        help="folder holding faces-mini/ and dfdc-mini/ (default: ../shared/datasets beside the repository)",
    )
    parser.add_argument("--n", type=int, default=120, help="photos to generate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the photos (default: %(default)s)")
    parser.add_argument(
        "--detector",
        metavar="NAME",
        action="append",
        help=f"a FaceStage detector to score; repeat for several (default: {' and '.join(DEFAULT_DETECTORS)}); "
        "one the face stage does not accept is reported and skipped",
    )
    parser.add_argument("--min-iou", type=float, default=0.3, help="IoU that finds a face (default: %(default)s)")
    parser.add_argument(
        "--save",
        metavar="DIR",
        type=Path,
        help="write DIR/<detector>/photo_NNN.jpg (faces green, detections red) and DIR/results.json",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [s.folder for s in SOURCES if not (args.datasets / s.folder).is_dir()]
    if missing:
        print(
            f"error: {', '.join(missing)} not found under {args.datasets}; pass --datasets DIR "
            "(the folder holding faces-mini/ and dfdc-mini/, see ../shared/datasets/README.md)",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    photos = make_group_photos(args.datasets, args.n, args.seed)
    faces = sum(len(p.boxes) for p in photos)
    big = sum(s >= BIG_FACE for p in photos for s in p.sizes)
    print(
        f"{len(photos)} group photos, {faces} faces ({big} of {BIG_FACE} px or more), seed {args.seed}, "
        f"made in {time.perf_counter() - start:.1f} s"
    )
    results = {}
    for name in args.detector or DEFAULT_DETECTORS:
        try:
            find = detector_finder(name)
            find(photos[0].rgb)  # untimed: loads the detector
        except Exception as error:  # noqa: BLE001  (a detector that cannot run is reported, the others still run)
            print(f"skipped {name}: {type(error).__name__}: {error}")
            continue
        results[name] = score(find, photos, min_iou=args.min_iou)
    if not results:
        print("error: no detector could run", file=sys.stderr)
        return 1
    print()
    print(table(results))
    if args.save:
        settings = {"datasets": str(args.datasets), "n": args.n, "seed": args.seed, "min_iou": args.min_iou}
        save(args.save, photos, results, settings)
        print(f"\nphotos with boxes and results.json written to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
