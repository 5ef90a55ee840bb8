"""Random surroundings for face crops in training: beyond the image's edge, a photo is not black.

A face crop cut from a tight image (dfdc-mini's 224 px crops are a third outside the image) is black beyond the
image's edge, and that is what the predictor sees for such an image. The same face inside a photo brings its
real surroundings there instead. A model that only ever saw black there reads the black: the bundled model
scored framed dfdc-mini test faces 0.084 AUROC below their crops, but only 0.002 below when the frame was black
(issue 21). So in training, with probability ``p``, the part of a crop outside its image is filled with one of:

- the crop itself, enlarged about a random point and blurred: a photo's out-of-focus background;
- another training crop seen recently (flipped, maybe blurred): a scene with its own edges and texture;
- a flat random colour with a little noise: a wall, a sky, a studio backdrop.

The fill is blended by each pixel's share inside the image, so the edge is as sharp as a photo's would be after
the same resize. It happens at model size, before the other augmentations, so they move the surroundings with
the face.
"""

from __future__ import annotations

import cv2
import numpy as np

# The outline is drawn this many times finer than the model's pixels, then area-averaged: each pixel's share.
SUPERSAMPLE = 8


def inside_share(outline: np.ndarray, crop_side: int, size: int) -> np.ndarray:
    """float32 (size, size): the share of each pixel of the crop, resized to ``size``, that lies inside the image
    whose corners are ``outline`` (4, 2), in pixels of the crop of side ``crop_side``."""
    fine = size * SUPERSAMPLE
    # Crop pixel i spans [i - 0.5, i + 0.5], so the crop's edge is at -0.5; OpenCV fills the fine pixels whose
    # centres (integers) fall inside, so the fine canvas's edge is at -0.5 too.
    points = (np.asarray(outline, np.float64) + 0.5) * (fine / crop_side) - 0.5
    canvas = np.zeros((fine, fine), np.uint8)
    cv2.fillConvexPoly(canvas, np.round(points * 16).astype(np.int32), 255, lineType=cv2.LINE_8, shift=4)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


class Surroundings:
    """Fills the outside of crops at model size: ``p`` the probability of a fill (else the black stays).

    The ranges the fills are drawn from (``data.augment.outside_*`` in configs/data/default.yaml): ``zoom``, the
    enlargement of the crop and ``zoom_blur`` its blur; ``crop_blur``, the blur of another crop (half the time);
    ``noise``, the standard deviation of a flat colour's noise; ``memory``, the recent crops kept (per data-loader
    worker) as other crops' surroundings. Blurs are in pixels of a 64 px crop, scaled with the crop's size."""

    def __init__(
        self,
        p: float,
        *,
        zoom: tuple[float, float] = (2.0, 3.5),
        zoom_blur: tuple[float, float] = (0.5, 3.0),
        crop_blur: tuple[float, float] = (0.5, 2.0),
        noise: tuple[float, float] = (0.0, 8.0),
        memory: int = 32,
    ):
        from deepfake.errors import ConfigError

        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"data.augment.outside_p={p} must be a probability, between 0 and 1")
        if memory < 1:
            raise ConfigError(f"data.augment.outside_memory={memory} must be at least 1")
        self.p = p
        self.zoom, self.zoom_blur, self.crop_blur, self.noise, self.memory = zoom, zoom_blur, crop_blur, noise, memory
        self.seen: list[np.ndarray] = []

    def remember(self, rgb: np.ndarray) -> None:
        """Keep a crop (uint8 (S, S, 3), at model size) as a later crop's possible surroundings."""
        if len(self.seen) >= self.memory:
            self.seen.pop(0)
        self.seen.append(rgb.copy())

    def fill(self, rgb: np.ndarray, share: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random surroundings image the size of ``rgb`` (uint8 (S, S, 3))."""
        size = rgb.shape[0]
        kind = rng.integers(3) if self.seen else rng.choice([0, 2])
        if kind == 0:  # the crop enlarged about a random point of the image, out of focus
            zoom = rng.uniform(*self.zoom)
            ys, xs = np.nonzero(share >= 1.0)
            pick = rng.integers(len(xs)) if len(xs) else None
            centre = np.array([xs[pick], ys[pick]], float) if pick is not None else np.full(2, size / 2)
            matrix = np.array([[zoom, 0, size / 2 - zoom * centre[0]], [0, zoom, size / 2 - zoom * centre[1]]])
            out = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            return cv2.GaussianBlur(out, (0, 0), rng.uniform(*self.zoom_blur) * size / 64)
        if kind == 1:  # another crop
            other = self.seen[rng.integers(len(self.seen))]
            other = other[:, ::-1] if rng.random() < 0.5 else other
            if rng.random() < 0.5:
                other = cv2.GaussianBlur(np.ascontiguousarray(other), (0, 0), rng.uniform(*self.crop_blur) * size / 64)
            return np.ascontiguousarray(other)
        colour = rng.integers(0, 256, 3).astype(np.float32)
        noisy = colour + rng.normal(0.0, rng.uniform(*self.noise), (size, size, 3)).astype(np.float32)
        return np.clip(noisy, 0, 255).astype(np.uint8)

    def __call__(self, images: np.ndarray, share: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``images`` (S, S, 3), or (N, S, S, 3) that get the same fill, with their outside (``share`` below 1)
        filled, with probability ``p``; the first image is remembered either way."""
        first = images if images.ndim == 3 else images[0]
        out = images
        if share.min() < 1.0 and rng.random() < self.p:
            surroundings = self.fill(first, share, rng).astype(np.float32)
            inside = share[..., None]
            # Outside the image the crop is black, so the crop plus the fill times the share outside is the photo.
            out = np.clip(images.astype(np.float32) + (1.0 - inside) * surroundings, 0, 255).round().astype(np.uint8)
        self.remember(first)
        return out
