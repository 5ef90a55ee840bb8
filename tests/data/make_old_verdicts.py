"""Today's verdicts of a model file, kept so that later code can be checked to read old files the same way.

Run once, on commit 6e34571 (before deepfake.contract existed), with the code of that time:

    git worktree add /tmp/oldmain 6e34571
    cd /tmp/oldmain && PYTHONPATH=/tmp/oldmain /work/main/.venv/bin/python /work/main/tests/data/make_old_verdicts.py
    git worktree remove /tmp/oldmain

It writes, beside this script:

- ``old_default.onnx``: a copy of that commit's bundled models/default.onnx (a hfnet on dlib_hog face crops,
  calibrated, threshold for 5% false positives; its metadata has no aggregation keys);
- ``old_default_images.npz``: the generated images it judged (drawn faces of deepfake/faces/drawing.py at a few
  sizes and places, one and two faces, real and fake; a blurred random texture without a face), stored as pixels
  so that a later change of the drawing cannot change the test;
- ``old_default_verdicts.json``: the Predictor's verdict on each (label, p_fake, face boxes and their p_fake,
  face_found, note), with the face stage on (as the file says) and, for some, with ``faces=False``.

tests/test_contract.py loads the copy with the current code and asserts the same labels, boxes and p_fake.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

from deepfake.faces.drawing import draw_face, face_photo
from deepfake.predictor import DEFAULT_MODEL, Predictor

HERE = Path(__file__).resolve().parent
MODEL = HERE / "old_default.onnx"
IMAGES = HERE / "old_default_images.npz"
VERDICTS = HERE / "old_default_verdicts.json"


def images() -> dict[str, np.ndarray]:
    """The images judged, by name: deterministic, generated."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8), (0, 0), 3)
    return {
        "one_real_face": face_photo([(40, 20, 200)], shape=(240, 320), seed=0),
        "one_fake_face": face_photo([(100, 60, 120)], shape=(300, 400), seed=2, fake=(0,)),
        "two_faces_one_fake": face_photo([(20, 20, 210), (290, 40, 170)], shape=(260, 480), seed=1, fake=(1,)),
        "two_faces_the_larger_fake": face_photo([(20, 40, 160), (260, 20, 220)], shape=(260, 500), seed=6, fake=(1,)),
        "two_real_faces": face_photo([(40, 40, 200), (340, 60, 200)], shape=(300, 600), seed=5),
        "three_faces": face_photo([(20, 20, 150), (250, 20, 150), (450, 40, 140)], shape=(240, 640), seed=7, fake=(0,)),
        "small_face_in_a_large_image": face_photo([(300, 200, 110)], shape=(480, 640), seed=4, fake=(0,)),
        "tight_crop": draw_face(160, seed=3),
        "texture_without_a_face": texture,
    }


# Images also judged whole (faces=False), as a caller does for images that are already face crops.
WHOLE = ("two_faces_one_fake", "tight_crop", "texture_without_a_face")
LOW_THRESHOLD = 0.45


def as_dict(prediction) -> dict:
    return {
        "label": prediction.label,
        "p_fake": prediction.p_fake,
        "confidence": prediction.confidence,
        "faces": [face.to_dict() for face in prediction.faces],
        "face_found": prediction.face_found,
        "note": prediction.note,
    }


def main() -> None:
    shutil.copyfile(DEFAULT_MODEL, MODEL)
    pictures = images()
    np.savez_compressed(IMAGES, **pictures)
    predictor = Predictor(MODEL, providers=["CPUExecutionProvider"])
    verdicts = {name: as_dict(predictor.predict(rgb)) for name, rgb in pictures.items()}
    whole = {name: as_dict(predictor.predict(pictures[name], faces=False)) for name in WHOLE}
    # The file's threshold calls every one of these real: a lower one given by the caller calls some fake.
    low = Predictor(MODEL, threshold=LOW_THRESHOLD, providers=["CPUExecutionProvider"])
    low_verdicts = {name: as_dict(low.predict(rgb)) for name, rgb in pictures.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path.cwd()).stdout
    record = {
        "commit": commit.strip(),
        "model": MODEL.name,
        "faces": verdicts,
        "whole": whole,
        "low_threshold": LOW_THRESHOLD,
        "faces_at_low_threshold": low_verdicts,
    }
    VERDICTS.write_text(json.dumps(record, indent=1) + "\n")
    low_named = {f"{k} (threshold {LOW_THRESHOLD})": v for k, v in low_verdicts.items()}
    for name, v in {**verdicts, **{f"{k} (whole)": v for k, v in whole.items()}, **low_named}.items():
        print(f"{name:48s} {v['label']:4s} {v['p_fake']:.4f} faces {[f['box'] for f in v['faces']]}")


if __name__ == "__main__":
    main()
