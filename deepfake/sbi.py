"""Self-blended pseudo-fakes: a real face blended with a slightly altered copy of itself inside a face mask.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022), written from the paper's
description (its reference code's licence forbids reuse). A detector trained on them learns what blending leaves
behind (a boundary, a colour or sharpness mismatch between inside and outside the mask) instead of one
generator's fingerprint, and it needs only real faces.

One blend (:meth:`SelfBlender.blend`), on uint8 RGB at the resolution the face was cut:

1. a mask from the 468 points of MediaPipe's face mesh (:mod:`deepfake.faces.mesh`): the whole face (its oval
   and inner features), or the convex hull of an inner part of the face (:data:`PARTS`);
2. two copies of the face, one of them (either) altered: a colour shift (RGB, hue and saturation, brightness and
   contrast) and then a blur by resampling (down 2-4x and back up) or a light sharpening;
3. the altered copy and the mask each moved by a small random shift and scale; the mask warped elastically;
4. the mask shrunk and feathered: blurred at a reduced resolution, cut below 1, blurred again, normalised;
5. the mask times an opacity (often 1) composites the altered copy over the other.

The masks once came from dlib's 68 points (a non-commercial model). What changed with the mesh:

* the whole-face mask is the mesh's 36-point oval filled as a polygon, not the convex hull of all points. Its top
  runs across the forehead, well above the brows (about twice the eye-to-brow distance above them on faces-mini,
  at or just under the hairline) where dlib's hull ended at the brow line, so the mask now takes in most of the
  forehead; its sides and chin follow the jaw (on a frontal face close to the hull, the jaw being convex there);
* on a turned face the oval's far side is the far cheek's outline as the mesh models it, which runs behind the
  nose and mouth: the oval alone would leave them out. The whole-face mask is therefore the oval together with
  the hull of the brows, eyes, nose and lips (on a frontal face that adds nothing);
* the inner parts are the same regions as before, now from the mesh's brow, eye, nose and lip contours and the
  lower oval (cheekbones to chin) in place of dlib's jaw points 3-13. The mesh's nose set starts between the
  eyes, as dlib's did, so the nose-mouth-chin part is still a wedge from the bridge of the nose to the jaw.

The unaltered face is the real of the pair. Both then go through the same augmentation (:mod:`deepfake.data.dataset`).
numpy and OpenCV (and the mesh's index sets), no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from deepfake.errors import ConfigError, DataError
from deepfake.faces import mesh

BROWS, EYES = (*mesh.LEFT_BROW, *mesh.RIGHT_BROW), (*mesh.LEFT_EYE, *mesh.RIGHT_EYE)
# Regions a mask may cover besides the whole face, each as the convex hull of its points: the inner face, the
# eyes and nose, the nose, mouth and chin. The first is also filled into every whole-face mask.
PARTS = (
    (*BROWS, *EYES, *mesh.NOSE, *mesh.LIPS),
    (*BROWS, *EYES, *mesh.NOSE),
    (*mesh.NOSE, *mesh.LIPS, *mesh.LOWER_OVAL),
)


@dataclass(frozen=True)
class BlendSettings:
    """How strongly a pseudo-fake is altered; ``data.sbi`` in configs/data/default.yaml holds the values."""

    hull_p: float = 0.5  # the mask is the whole face (oval) with this probability, else one inner part
    rgb_shift: float = 20.0  # per-channel shift, in grey levels, both ways
    hue_shift: float = 3.0  # OpenCV hue units (180 a turn), both ways
    sat_shift: float = 0.1  # saturation factor 1 +- this
    brightness: float = 0.1  # as a share of 255, both ways
    contrast: float = 0.1  # factor 1 +- this
    resample: tuple[float, float] = (2.0, 4.0)  # blur: down by a factor in this range and back up ...
    sharpen_p: float = 0.5  # ... or, with this probability, a light unsharp mask instead:
    sharpen_sigma: tuple[float, float] = (0.8, 1.5)  # the Gaussian blur it subtracts, sigma in pixels
    sharpen_amount: tuple[float, float] = (0.3, 0.8)  # its weights: 1 + a for the image, -b for the blur
    shift: float = 0.03  # jitter of the altered copy and of the mask, as a share of the side
    scale: float = 0.05  # their scale 1 +- this
    elastic: float = 0.03  # elastic warp of the mask: largest displacement, as a share of the side ...
    elastic_grid: int = 5  # ... from a grid of this many control points a side (a few bends)
    feather_scale: tuple[float, float] = (0.2, 0.6)  # feathering: the mask shrunk at this share of its size ...
    feather_shrink: tuple[float, float] = (0.05, 0.15)  # ... blurred by this share of that side, cut below 1 ...
    feather_soften: tuple[float, float] = (0.03, 0.12)  # ... and blurred again by this share of the full side
    opacity: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # drawn uniformly from these

    def __post_init__(self) -> None:
        ranges = ("resample", "sharpen_sigma", "sharpen_amount", "feather_scale", "feather_shrink", "feather_soften")
        for name in (*ranges, "opacity"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        checks = (
            (0 <= self.hull_p <= 1, "hull_p must be in [0, 1]"),
            (0 <= self.sharpen_p <= 1, "sharpen_p must be in [0, 1]"),
            (len(self.resample) == 2 and 1 <= self.resample[0] <= self.resample[1], "resample must be [lo, hi] >= 1"),
            (self.opacity and all(0 < v <= 1 for v in self.opacity), "opacity must list values in (0, 1]"),
            (all(v >= 0 for v in (self.rgb_shift, self.hue_shift, self.sat_shift)), "colour shifts must be >= 0"),
            (all(0 <= v < 1 for v in (self.brightness, self.contrast, self.shift, self.scale)), "ranges in [0, 1)"),
            (0 <= self.elastic < 0.5, "elastic must be in [0, 0.5)"),
            (self.elastic_grid >= 2, "elastic_grid must be at least 2"),
            (all(len(getattr(self, r)) == 2 for r in ranges), f"{', '.join(ranges)} must each be [lo, hi]"),
            (all(0 < v for r in ranges[1:] for v in getattr(self, r)), "sharpen_* and feather_* ranges must be > 0"),
            (all(v <= 1 for r in ranges[3:] for v in getattr(self, r)), "feather_* ranges must be at most 1"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"data.sbi: {message} (got {asdict(self)})")


class SelfBlender:
    """Makes pseudo-fakes from real faces and their landmarks; all randomness comes from the ``rng`` passed in."""

    def __init__(self, settings: BlendSettings | None = None):
        self.settings = settings or BlendSettings()

    def blend(self, rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(pseudo-fake, mask): uint8 RGB of ``rgb``'s size, and the float32 blending mask in [0, 1]."""
        s = self.settings
        height, width = rgb.shape[:2]
        mask = self.hull_mask((height, width), points, rng)
        altered = self.alter(rgb, rng)
        altered = _jitter(altered, rng, s.shift, s.scale, cv2.BORDER_REFLECT_101)
        mask = _jitter(mask, rng, s.shift, s.scale, cv2.BORDER_CONSTANT)
        mask = _elastic(mask, rng, s.elastic, s.elastic_grid)
        mask = _feather(mask, rng, s) * float(rng.choice(s.opacity))
        # Either copy may be the altered one: the model must not learn "the inside is the altered part".
        inside, outside = (altered, rgb) if rng.random() < 0.5 else (rgb, altered)
        m = mask[..., None]
        fake = inside.astype(np.float32) * m + outside.astype(np.float32) * (1 - m)
        return np.clip(fake + 0.5, 0, 255).astype(np.uint8), mask

    def hull_mask(self, shape: tuple[int, int], points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The mask before jitter and feathering, 0 or 1: the whole face (a ``hull_p`` chance) or one part's hull."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[0] != mesh.NUM_POINTS or points.shape[1] < 2:
            raise DataError(
                f"pseudo-fake landmarks must be the face mesh's ({mesh.NUM_POINTS}, 2) points, got {points.shape}"
            )
        mask = np.zeros(shape, np.float32)
        if rng.random() < self.settings.hull_p:
            # The oval as a polygon, plus the inner face: on a turned face the oval's far side passes behind
            # the nose and mouth.
            cv2.fillPoly(mask, [np.round(points[list(mesh.FACE_OVAL), :2]).astype(np.int32)], 1.0)
            part = PARTS[0]
        else:
            part = PARTS[rng.integers(len(PARTS))]
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[list(part), :2]).astype(np.int32)), 1.0)
        return mask

    def alter(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A colour shift, then a blur by resampling or a sharpening."""
        s = self.settings
        img = rgb.astype(np.float32) + rng.uniform(-s.rgb_shift, s.rgb_shift, 3).astype(np.float32)
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-s.hue_shift, s.hue_shift)) % 180
        hsv[..., 1] *= 1 + rng.uniform(-s.sat_shift, s.sat_shift)
        img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        img = (img - 127.5) * (1 + rng.uniform(-s.contrast, s.contrast)) + 127.5
        img += 255 * rng.uniform(-s.brightness, s.brightness)
        img = np.clip(img, 0, 255).astype(np.uint8)
        height, width = img.shape[:2]
        if rng.random() < s.sharpen_p:
            blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(*s.sharpen_sigma))
            return cv2.addWeighted(img, 1 + rng.uniform(*s.sharpen_amount), blurred, -rng.uniform(*s.sharpen_amount), 0)
        factor = rng.uniform(*s.resample)
        small = cv2.resize(img, (max(1, round(width / factor)), max(1, round(height / factor))), cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _jitter(img: np.ndarray, rng: np.random.Generator, shift: float, scale: float, border: int) -> np.ndarray:
    height, width = img.shape[:2]
    factor = 1 + rng.uniform(-scale, scale)
    dx, dy = rng.uniform(-shift, shift, 2) * (width, height)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, factor)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(img, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


def _elastic(mask: np.ndarray, rng: np.random.Generator, amount: float, grid: int) -> np.ndarray:
    """A smooth random displacement of up to ``amount`` of the side: a boundary that no hull would draw."""
    if amount <= 0:
        return mask
    height, width = mask.shape
    side = max(height, width)
    fields = []
    for _ in range(2):
        coarse = rng.uniform(-1, 1, (grid, grid)).astype(np.float32)  # control points: a few bends per side
        fields.append(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * amount * side)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + fields[0], grid_y + fields[1], cv2.INTER_LINEAR, borderValue=0)


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def _feather(mask: np.ndarray, rng: np.random.Generator, s: BlendSettings) -> np.ndarray:
    """Shrink and soften the mask's edge by random amounts; normalised to a peak of 1."""
    height, width = mask.shape
    factor = rng.uniform(*s.feather_scale)
    small = cv2.resize(mask, (max(8, round(width * factor)), max(8, round(height * factor))), cv2.INTER_AREA)
    kernel = _odd(rng.uniform(*s.feather_shrink) * small.shape[1])
    small = cv2.GaussianBlur(small, (kernel, kernel), 0)
    small[small < 1] = 0  # what the blur reached from outside is cut: the mask shrinks
    if not small.any():
        small = cv2.resize(mask, small.shape[::-1], interpolation=cv2.INTER_AREA)  # too small to shrink
    mask = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    kernel = _odd(rng.uniform(*s.feather_soften) * width)
    mask = cv2.GaussianBlur(mask, (kernel, kernel), 0)
    peak = float(mask.max())
    return mask / peak if peak > 0 else mask


def sample_sheet(
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], columns: int = 4, min_side: int = 128
) -> np.ndarray:
    """A uint8 RGB sheet of (real, pseudo-fake, mask) triplets, ``columns`` triplets a row: sbi_samples.png.
    Small inputs are enlarged pixel for pixel (nearest), so what the model sees is shown, not smoothed."""
    if not examples:
        raise ValueError("no examples to draw")
    side = max(min_side, *(max(real.shape[:2]) for real, _, _ in examples))
    gap = max(2, side // 32)
    cells = []
    for real, fake, mask in examples:
        tiles = [
            cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if img.shape[0] > side else cv2.INTER_NEAREST)
            for img in (real, fake, np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, 2))
        ]
        cells.append(
            np.concatenate([np.pad(t, ((0, 0), (0, gap // 2), (0, 0)), constant_values=255) for t in tiles], 1)
        )
    blank = np.full_like(cells[0], 255)
    cells += [blank] * (-len(cells) % columns)
    rows = [np.concatenate(cells[i : i + columns], 1) for i in range(0, len(cells), columns)]
    rows = [np.pad(r, ((0, gap), (0, gap), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, 0)
