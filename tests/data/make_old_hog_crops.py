"""The dlib_hog face stage's crops as they were before BlazeFace, kept so that a model file that records that stage
is shown to get exactly the same pixels from later code.

Run once, on commit 6e34571 (the last one with HOG as the only detector), with the code of that time:

    git worktree add /tmp/oldmain 6e34571
    cd /tmp/oldmain && PYTHONPATH=/tmp/oldmain /work/main/.venv/bin/python /work/main/tests/data/make_old_hog_crops.py
    git worktree remove /tmp/oldmain

It reads the images of ``old_default_images.npz`` (see make_old_verdicts.py) and writes ``old_hog_crops.json``: for
each image, the boxes HOG found and the SHA-256 of each crop, with the default settings and with two others.
tests/test_face_detector.py recomputes them with FaceStage(detector="dlib_hog", ...).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from deepfake.faces import FaceStage, face_crops

HERE = Path(__file__).resolve().parent
SETTINGS = {"default": {}, "margin_1.6": {"margin": 1.6}, "detect_size_400": {"detect_size": 400, "pad": 0.1}}


def main() -> None:
    images = dict(np.load(HERE / "old_default_images.npz"))
    out = {"commit": "6e34571", "settings": SETTINGS, "crops": {}}
    for name, settings in SETTINGS.items():
        stage = FaceStage(**settings)
        out["crops"][name] = {
            image: [
                {"box": face.box, "shape": list(crop.shape), "sha256": hashlib.sha256(crop.tobytes()).hexdigest()}
                for face, crop in face_crops(rgb, stage)
            ]
            for image, rgb in images.items()
        }
    (HERE / "old_hog_crops.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
