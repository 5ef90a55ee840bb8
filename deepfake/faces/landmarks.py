"""The face mesh landmarks of the images self-blended pseudo-fakes are made from, computed once and cached.

The points are MediaPipe's 468-point face mesh (:mod:`deepfake.faces.mesh`, Apache-2.0, shipped with the
package), found on the training image itself: a face crop from the face stage, or, with ``data.faces=none``, the
image as it is, which must then already be a face crop (as faces-mini's are). The whole image is taken as the
face region; no box is searched for or needed. An image whose mesh scores under the presence threshold has no
landmarks (None) and makes no pseudo-fakes.

A cache entry is keyed by the image's content and the landmark model's name, and written atomically, like the
face crops'. It holds the (x, y) positions only, rounded to 0.1 pixel.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfake.errors import ImageError
from deepfake.faces import mesh
from deepfake.faces.pool import map_images
from deepfake.images import decode_image

# Part of every cache key: entries of another landmark model (dlib's 68 points once) are never read as these.
CACHE_TAG = b"mediapipe-face-mesh-468\0"


def landmarks(rgb: np.ndarray) -> np.ndarray | None:
    """The mesh's 468 points (x, y) on a uint8 RGB face crop, as float32 (468, 2); None when there is no face."""
    found = mesh.face_mesh(rgb)
    return None if found is None else found.xy.copy()


def _landmark_entry(cache: Path, data: bytes) -> Path:
    digest = hashlib.sha256(CACHE_TAG + data).hexdigest()
    return cache / digest[:2] / f"{digest}.json"


def _read(entry: Path) -> tuple[bool, np.ndarray | None]:
    """(found, points): found is False when the entry is missing or damaged."""
    try:
        points = json.loads(entry.read_text())["points"]
        if points is None:
            return True, None
        points = np.asarray(points, dtype=np.float32)
        return points.shape == (mesh.NUM_POINTS, 2), points
    except (OSError, ValueError, KeyError, TypeError):
        return False, None


def landmarks_one(path: str, cache: Path) -> np.ndarray | None:
    """The cached landmarks of one image file, computing them first if the cache lacks them."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    entry = _landmark_entry(cache, data)
    found, points = _read(entry)
    if found:
        return points
    try:
        points = landmarks(decode_image(data))
    except ImageError:
        return None
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"points": None if points is None else np.round(points, 1).tolist()}))
    os.replace(tmp, entry)
    return points


def landmark_dataset(
    paths: Sequence[str],
    cache: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> list[np.ndarray | None]:
    """Landmarks of every image (None where no face), in input order, in ``workers`` processes."""
    # Fail here, before the pool starts, if the model file is missing or damaged (a throwaway session: a cached
    # one would be copied into every forked worker for nothing).
    mesh.FaceMesh()
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    tasks = [(str(p), cache) for p in paths]
    return map_images(landmarks_one, tasks, desc="Finding landmarks", workers=workers, progress=progress)
