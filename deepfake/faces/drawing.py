"""A drawn frontal face that dlib's HOG detector finds: test, benchmark and demo images without face photos.

Tests must make their own images, and a face photo cannot be drawn from noise; this cartoon (skin, hair,
eyes, brows, nose, mouth) is found by the detector at any size from about 100 px, at any place.
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND = (70, 90, 110)


def draw_face(size: int = 200, seed: int = 0, fake: bool = False) -> np.ndarray:
    """A ``size`` x ``size`` RGB image of a drawn face on a plain background; ``seed`` varies the skin. ``fake`` adds
    mild high-frequency noise inside the face (tests' "fake" class: something a model can learn)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    c, s = size // 2, size / 200
    skin = tuple(int(v) for v in np.array((190, 150, 130)) + rng.integers(-15, 15, 3))

    def pt(dx, dy):
        return int(c + dx * s), int(c + dy * s)

    def ax(a, b):
        return int(a * s), int(b * s)

    cv2.ellipse(img, pt(0, 5), ax(62, 80), 0, 0, 360, skin, -1)
    cv2.ellipse(img, pt(0, -60), ax(66, 40), 0, 180, 360, (40, 30, 20), -1)
    for dx in (-25, 25):
        cv2.ellipse(img, pt(dx, -10), ax(12, 6), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, pt(dx, -10), int(5 * s), (40, 30, 20), -1)
        cv2.line(img, pt(dx - 14, -26), pt(dx + 14, -28), (60, 40, 30), max(1, int(4 * s)))
    cv2.line(img, pt(0, -5), pt(-6, 22), (150, 110, 100), max(1, int(3 * s)))
    cv2.line(img, pt(-6, 22), pt(6, 24), (150, 110, 100), max(1, int(3 * s)))
    cv2.ellipse(img, pt(0, 45), ax(20, 8), 0, 0, 180, (150, 60, 60), max(1, int(4 * s)))
    img = cv2.GaussianBlur(img, (0, 0), 1.5 * s)
    if fake:
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(mask, pt(0, 5), ax(55, 72), 0, 0, 360, 1, -1)
        noise = rng.normal(0, 12, img.shape) * mask[..., None]
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img


def face_photo(faces: list[tuple[int, int, int]], shape=(240, 480), seed: int = 0, fake=()) -> np.ndarray:
    """An RGB image of ``shape`` (h, w) with a drawn face of side ``size`` at each (x, y, size); indices in
    ``fake`` are drawn fake."""
    img = np.full((*shape, 3), BACKGROUND, np.uint8)
    for k, (x, y, size) in enumerate(faces):
        img[y : y + size, x : x + size] = draw_face(size, seed + k, fake=k in fake)
    return img
