"""BlazeFace and aligned crops: faces found with their keypoints, cut the same way wherever they sit in a photo;
and dlib_hog, the detector of older model files, still cutting exactly the pixels it cut before."""

import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACES_MINI, draw_face, face_photo

from deepfake.errors import ModelError
from deepfake.faces import FaceStage, face_crops, find_faces
from deepfake.faces import blazeface as bf
from deepfake.faces.align import crop_matrix, face_frame, to_crop
from deepfake.images import read_image

DATA = Path(__file__).parent / "data"
STAGE = FaceStage()
needs_faces_mini = pytest.mark.skipif(not FACES_MINI.is_dir(), reason="../shared/datasets/faces-mini is absent")


def test_the_anchors_match_the_models_outputs():
    for name, spec in bf.MODELS.items():
        net = bf.detector(name)
        canvas = np.zeros((spec.size, spec.size, 3), np.uint8)
        regressors, _ = net.session.run(None, {net.input_name: canvas[None].astype(np.float32)})
        assert len(bf.anchors(spec)) == regressors.shape[1] == {"short_range": 896, "full_range": 2304}[name]


def test_keypoints_come_in_the_models_order_and_land_on_the_face():
    [face] = find_faces(draw_face(240), STAGE)
    right_eye, left_eye, nose, mouth = np.array(face.keypoints[:4])
    # Drawn eyes at x = 120 -+ 30, y = 108; mouth at y = 174 (deepfake/faces/drawing.py, scaled by 1.2).
    assert right_eye[0] < nose[0] < left_eye[0]
    assert (
        abs(right_eye[0] - 90) < 10 and abs(left_eye[0] - 150) < 10 and abs((right_eye[1] + left_eye[1]) / 2 - 108) < 10
    )
    assert right_eye[1] < nose[1] < mouth[1] and abs(mouth[1] - 170) < 14


def test_an_aligned_crop_levels_the_eyes_of_a_turned_face():
    face = draw_face(240)
    turned = cv2.warpAffine(face, cv2.getRotationMatrix2D((120, 120), 25, 1.0), (240, 240), borderValue=(70, 90, 110))
    [(found, crop)] = face_crops(turned, STAGE)
    matrix, side = crop_matrix(np.array(found.keypoints), STAGE.margin)
    eyes = to_crop(np.array(found.keypoints[:2]), matrix)
    assert crop.shape == (side, side, 3)
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.01 * side  # level
    assert abs(face_frame(np.array(found.keypoints))[2] + 25) < 6  # turned 25 degrees anticlockwise (a drawn face)


def place(face: np.ndarray, frame: np.ndarray, centre, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``face`` scaled, turned and pasted with its centre at ``centre`` into a copy of ``frame``; and that transform."""
    matrix = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, scale)
    matrix[:, 2] += (centre[0] - face.shape[1] / 2, centre[1] - face.shape[0] / 2)
    height, width = frame.shape[:2]
    warped = cv2.warpAffine(face, matrix, (width, height))
    inside = cv2.warpAffine(np.ones(face.shape[:2], np.uint8), matrix, (width, height)) > 0
    out = frame.copy()
    out[inside] = warped[inside]
    return out, matrix


@pytest.mark.slow
@needs_faces_mini
def test_aligned_crops_put_the_eyes_in_the_same_place_wherever_the_face_is():
    """One face at five places in a 1024x768 photo, at 0.5x to 2x, turned up to 20 degrees either way: its crops put
    the eye centres within 3% of the crop side of their mean (HOG's boxes moved by about 10%)."""
    rng = np.random.default_rng(0)
    frame = cv2.resize(cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 2), (1024, 768))
    places = [(512, 384), (300, 250), (724, 250), (300, 518), (724, 518)]
    for path in (sorted((FACES_MINI / "Real").glob("*.jpg"))[0], sorted((FACES_MINI / "Fake").glob("*.jpg"))[0]):
        face = read_image(path)
        # Where the eyes truly are: found once in the source image, then carried by each placement's transform.
        eyes = np.array(find_faces(face, STAGE)[0].keypoints[:2])
        positions = []
        for centre, scale, angle in itertools.product(places, (0.5, 1.0, 1.5, 2.0), (-20, -10, 0, 10, 20)):
            photo, matrix = place(face, frame, centre, scale, angle)
            true = eyes @ matrix[:, :2].T + matrix[:, 2]
            middle = true.mean(0)
            [found] = [
                f for f in find_faces(photo, STAGE) if f.x <= middle[0] <= f.x + f.w and f.y <= middle[1] <= f.y + f.h
            ]
            to_face, side = crop_matrix(np.array(found.keypoints), STAGE.margin)
            positions.append(to_crop(true, to_face) / side)
        positions = np.array(positions)
        spread = np.linalg.norm(positions - positions.mean(0), axis=2).max()
        assert spread <= 0.03, f"{path.name}: eye centres within {spread:.3f} of the crop side"


@needs_faces_mini
def test_the_two_face_photo_gets_both_faces_judged_and_the_fake_decides():
    """The issue's photo: 900x450, a real face and a StyleGAN face of 300 px side by side. HOG boxed only the real
    one and the page answered "Real". (The two faces are from the bundled model's training and validation splits:
    this is about the stage and the rule, not the model's skill.)"""
    from deepfake.predictor import Predictor

    real, fake = (read_image(sorted((FACES_MINI / cls).glob("*.jpg"))[3]) for cls in ("Real", "Fake"))
    photo = np.full((450, 900, 3), 200, np.uint8)
    photo[75:375, 75:375] = cv2.resize(real, (300, 300), interpolation=cv2.INTER_CUBIC)
    photo[75:375, 525:825] = cv2.resize(fake, (300, 300), interpolation=cv2.INTER_CUBIC)
    predictor = Predictor()
    prediction = predictor.predict(photo)
    assert prediction.face_found and len(prediction.faces) == 2
    left, right = sorted(prediction.faces, key=lambda f: f.box[0])
    assert 75 <= left.box[0] + left.box[2] / 2 <= 375 and 525 <= right.box[0] + right.box[2] / 2 <= 825
    # The image is judged by its most fake face: the StyleGAN one, on the right.
    assert prediction.p_fake == right.p_fake > left.p_fake
    assert prediction.label == right.label


def test_a_low_scoring_face_in_a_tight_crop_is_taken_by_the_fallback():
    face = draw_face(200)
    score = find_faces(face, STAGE)[0].score
    strict = FaceStage(min_score=min(0.99, score + 0.1), fallback_score=0.25)
    assert len(find_faces(face, strict)) == 1
    assert find_faces(face, FaceStage(min_score=0.99, fallback_score=0.99)) == []


def test_small_faces_in_a_large_photo_are_found_in_tiles():
    photo = face_photo([(100, 100, 110), (900, 600, 110)], shape=(960, 1280))
    assert len(find_faces(photo, FaceStage(tile_above=0))) == 0  # 110 px of 1280: too small for the whole image
    found = find_faces(photo, STAGE)
    assert len(found) == 2
    for face, (x, y) in zip(sorted(found, key=lambda f: f.x), ((100, 100), (900, 600)), strict=True):
        assert x <= face.x + face.w / 2 <= x + 110 and y <= face.y + face.h / 2 <= y + 110


def test_texture_that_fools_the_detector_is_not_taken_for_a_face():
    rng = np.random.default_rng(3)
    texture = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (1280, 960), interpolation=cv2.INTER_CUBIC)
    assert find_faces(texture, STAGE) == []


def test_a_missing_or_damaged_detector_file_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "MODEL_DIR", tmp_path)
    with pytest.raises(ModelError, match="missing"):
        bf.BlazeFace("short_range")
    (tmp_path / bf.MODELS["short_range"].file).write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot be loaded"):
        bf.BlazeFace("short_range")


def test_hog_stages_cut_exactly_the_crops_they_cut_before_blazeface():
    """tests/data/make_old_hog_crops.py recorded, on commit 6e34571, the boxes and crop hashes of the dlib_hog stage."""
    recorded = json.loads((DATA / "old_hog_crops.json").read_text())
    images = dict(np.load(DATA / "old_default_images.npz"))
    assert sum(len(v) for v in recorded["crops"]["default"].values()) >= 10
    for name, settings in recorded["settings"].items():
        stage = FaceStage(detector="dlib_hog", **settings)
        for image, faces in recorded["crops"][name].items():
            now = [
                {"box": face.box, "shape": list(crop.shape), "sha256": hashlib.sha256(crop.tobytes()).hexdigest()}
                for face, crop in face_crops(images[image], stage)
            ]
            assert now == faces, f"{name}: {image}"
