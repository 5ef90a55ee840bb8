"""dlib's HOG face detector: the face stage of models exported before BlazeFace (``face_detector=dlib_hog``).

Such model files keep producing exactly the crops they were trained on, so this search is kept as it was:

1. The image is scaled so that its longer side is ``detect_size`` pixels (up or down). HOG's cost grows with
   the pixel count (about 45 ms at 640x480 here), so it runs on this reduced copy and the face is cut from the
   original.
2. Faces scoring at least ``threshold`` are kept. dlib's window is 80 pixels, so the smallest face found is
   about 80/``detect_size`` of the longer side (``upsample=1`` halves that, at 4x the cost). When none does,
   a copy ``second_size`` pixels long (at most the image's own size) is searched the same way.
3. When still none does, the image is most likely a tight crop whose face touches the border, where HOG finds
   nothing (it needs context around the face). The copy is padded by ``pad`` of its longer side on every side
   and searched again, and the single best candidate above ``fallback_threshold`` is taken.

numpy, OpenCV and dlib only (dlib is imported when a search first runs).
"""

from __future__ import annotations

import queue

import cv2
import numpy as np

from deepfake.errors import ModelError

# dlib's HOG face window, in pixels of the image it searches.
HOG_WINDOW = 80


class _Detectors:
    """dlib detectors to lend, one per concurrent caller.

    A detector keeps the image it searches inside itself, so two threads must not share one; building one
    takes about 0.9 s, so they are kept and reused rather than built per call.
    """

    def __init__(self):
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def get(self):
        try:
            return self._free.get_nowait()
        except queue.Empty:
            try:
                import dlib
            except ModuleNotFoundError as exc:
                raise ModelError(
                    "this model's face stage is dlib's HOG detector, which needs dlib: pip install dlib-bin"
                ) from exc
            return dlib.get_frontal_face_detector()

    def put(self, detector) -> None:
        self._free.put(detector)


_DETECTORS = _Detectors()


def warm_up(n: int = 1) -> None:
    """Have ``n`` detectors ready, so the first ``n`` concurrent images do not wait about a second each."""
    ready = [_DETECTORS.get() for _ in range(n)]
    for detector in ready:
        _DETECTORS.put(detector)


def _search(detector, image: np.ndarray, upsample: int, threshold: float):
    rects, scores, _ = detector.run(image, upsample, threshold)
    return list(zip(rects, scores, strict=True))


def _scaled(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Only searched, never judged: linear resizing costs a tenth of area averaging (0.2 vs 1.9 ms at 640x480).
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), scale


def find(
    rgb: np.ndarray,
    *,
    detect_size: int,
    second_size: int,
    upsample: int,
    min_size: int,
    threshold: float,
    pad: float,
    fallback_threshold: float,
) -> list[tuple[int, int, int, int, float]]:
    """(x, y, w, h, score) of every face in uint8 RGB (H, W, 3), in pixels of ``rgb``, in dlib's order."""
    height, width = rgb.shape[:2]
    small, scale = _scaled(rgb, detect_size)
    offset = 0
    detector = _DETECTORS.get()
    try:
        found = _search(detector, small, upsample, threshold)
        second = min(second_size, max(height, width))
        if not found and second > max(small.shape[:2]):
            # Faces too small for the first copy (a face in a larger photo): a larger copy, at up to 4x the cost.
            larger, larger_scale = _scaled(rgb, second)
            found = _search(detector, larger, upsample, threshold)
            scale = larger_scale if found else scale
        if not found and pad > 0:
            offset = round(pad * max(small.shape[:2]))
            padded = cv2.copyMakeBorder(small, offset, offset, offset, offset, cv2.BORDER_CONSTANT, value=0)
            found = sorted(_search(detector, padded, upsample, fallback_threshold), key=lambda f: -f[1])[:1]
    finally:
        _DETECTORS.put(detector)
    faces = []
    for rect, score in found:
        x0 = max(0.0, (rect.left() - offset) / scale)
        y0 = max(0.0, (rect.top() - offset) / scale)
        x1 = min(float(width), (rect.right() + 1 - offset) / scale)
        y1 = min(float(height), (rect.bottom() + 1 - offset) / scale)
        x, y = round(x0), round(y0)
        w, h = round(x1) - x, round(y1) - y
        if min(w, h) >= max(1, min_size):
            faces.append((x, y, w, h, float(score)))
    return faces
