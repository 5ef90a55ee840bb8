"""Crop the face of every image of a dataset once, in parallel, into a cache that an interrupted run resumes from.

Training reads each image's largest face from the cache instead of the image. A cache entry is keyed by the
file's content (SHA-256) and the face settings, so renaming or moving a dataset reuses it, and changing any
setting starts a new one. Each entry is written to a temporary name and renamed, so a crash leaves no
half-written crop: the next run redoes only what is missing.

Layout: ``<cache>/<settings key>/<first two hex digits>/<content hash>.json`` (the box found, or none, and the
image's outline in the crop: ``inside``, see :func:`read_outline`), and beside it ``.png`` (the crop, lossless,
at the resolution it was cut).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake.errors import ImageError
from deepfake.faces.detect import FaceStage, face_crops, image_outline
from deepfake.faces.pool import map_images
from deepfake.images import decode_image, encode_image


@dataclass(frozen=True)
class Cropped:
    """What the face stage made of one image: its largest face's crop file, or None when no face was found."""

    path: str  # the image
    crop: str | None
    faces: int  # how many faces were found
    box: list[int] | None  # the largest one's, in pixels of the image
    error: str | None = None  # the image could not be read or decoded


def _crop_entry(cache: Path, digest: str) -> Path:
    return cache / digest[:2] / digest


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def crop_one(path: str, stage: FaceStage, cache: Path) -> Cropped:
    """The cached crop of one image, cutting it first if the cache lacks it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Cropped(path, None, 0, None, f"cannot read file: {exc.strerror or exc}")
    entry = _crop_entry(cache, hashlib.sha256(data).hexdigest())
    meta_file, png = entry.with_suffix(".json"), entry.with_suffix(".png")
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            # An entry from before outlines were recorded is cut again (same crop, and now its outline).
            if meta["faces"] == 0 or (png.is_file() and "inside" in meta):
                return Cropped(path, str(png) if meta["faces"] else None, meta["faces"], meta["box"])
        except (ValueError, KeyError, OSError):
            pass  # a damaged entry is cut again
    try:
        rgb = decode_image(data)
    except ImageError as exc:
        return Cropped(path, None, 0, None, str(exc))
    found = face_crops(rgb, stage)
    entry.parent.mkdir(parents=True, exist_ok=True)
    meta = {"faces": len(found), "box": found[0][0].box if found else None}
    if found:
        _write_atomic(png, encode_image(found[0][1], ".png"))
        outline = image_outline(found[0][0], stage, rgb.shape[1], rgb.shape[0])
        meta["inside"] = [[round(float(x), 2), round(float(y), 2)] for x, y in outline]
    # Written last: its presence marks the entry complete.
    _write_atomic(meta_file, json.dumps(meta).encode())
    return Cropped(path, str(png) if found else None, len(found), meta["box"])


def read_outline(crop: str | os.PathLike) -> np.ndarray | None:
    """The corners of the source image (4, 2) in pixels of a cached crop: the crop is black beyond them. None for
    a file that is not a cached crop, or an entry without an outline."""
    try:
        meta = json.loads(Path(crop).with_suffix(".json").read_text())
        return np.asarray(meta["inside"], np.float64).reshape(4, 2)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def crop_dataset(
    paths: Sequence[str], stage: FaceStage, cache: str | os.PathLike, *, workers: int | None = None, progress=True
) -> list[Cropped]:
    """The largest face of every image, in input order, cut in ``workers`` processes (default: one per core)."""
    cache = Path(cache).expanduser() / stage.key()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "settings.json").write_text(json.dumps(stage.to_dict(), indent=2) + "\n")
    tasks = [(str(p), stage, cache) for p in paths]
    return map_images(crop_one, tasks, desc="Finding faces", workers=workers, progress=progress)
