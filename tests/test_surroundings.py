"""Random surroundings beyond the image's edge in training crops: placed exactly where the crop is black, and only
there, recorded by the crop cache, and drawn the same way for both images of a pseudo-fake pair."""

import json

import numpy as np
import pytest
import torch
from conftest import face_photo
from helpers import augment_config

from deepfake.data.augment import build_surroundings
from deepfake.data.dataset import ImageDataset
from deepfake.errors import ConfigError
from deepfake.faces import Face, FaceStage
from deepfake.faces.dataset import crop_one, read_outline
from deepfake.faces.detect import cut, image_outline
from deepfake.images import encode_image, read_image
from deepfake.preprocess import Preprocess
from deepfake.samples import Sample
from deepfake.surroundings import Surroundings, inside_share

GREY = 200
# A face turned by ~17 degrees near the top-left corner: its aligned crop reaches past two edges at an angle.
TURNED = Face(0, 0, 60, 60, 0.9, ((30.0, 40.0), (70.0, 52.0), (48.0, 62.0), (46.0, 82.0), (10.0, 50.0), (90.0, 70.0)))


@pytest.mark.parametrize(
    "face, stage, blended_edge",
    [(TURNED, FaceStage(), True), (Face(-10, 5, 50, 50, 1.0), FaceStage(detector="dlib_hog", margin=1.5), False)],
    ids=["aligned", "hog_square"],
)
def test_the_outline_marks_exactly_where_the_crop_holds_the_image(face, stage, blended_edge):
    rgb = np.full((120, 160, 3), GREY, np.uint8)
    crop = cut(rgb, face, stage)
    side = crop.shape[0]
    share = inside_share(image_outline(face, stage, 160, 120), side, side)
    assert 0.05 < (share == 0).mean() < 0.9  # the crop does reach outside
    # Within warpAffine's fixed-point rounding of the bilinear edge (a few grey levels).
    assert np.abs(crop[share >= 0.99].astype(int) - GREY).max() <= 3
    assert crop[share <= 0.01].max() <= 3
    # A turned crop's edge is a blend, and the share says how much of it is the image; a HOG square has whole pixels.
    edge = (share > 0.2) & (share < 0.8)
    assert edge.any() == blended_edge
    if blended_edge:
        assert np.abs(crop[edge][:, 0] - GREY * share[edge]).max() < 0.2 * GREY


def test_surroundings_fill_the_outside_and_leave_the_image_alone():
    share = np.ones((32, 32), np.float32)
    share[:, :10] = 0.0
    share[:, 10] = 0.5
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 10] = 60
    image[:, 11:] = 120
    rng = np.random.default_rng(0)
    fill = Surroundings(1.0)
    filled = [fill(image, share, rng) for _ in range(30)]
    for out in filled:
        assert np.array_equal(out[:, 11:], image[:, 11:])
    # Not one fixed fill: the outside varies from crop to crop, and is not left black.
    outsides = np.stack([out[:, :10] for out in filled]).reshape(30, -1).mean(1)
    assert outsides.std() > 5 and (outsides > 0).mean() > 0.9
    never = Surroundings(0.0)
    assert all(np.array_equal(never(image, share, rng), image) for _ in range(10))
    assert np.array_equal(fill(image, np.ones_like(share), rng), image)  # nothing outside: nothing to fill


def test_a_pair_gets_the_same_surroundings():
    share = np.ones((32, 32), np.float32)
    share[:8] = 0.0
    real = np.zeros((2, 32, 32, 3), np.uint8)
    real[:, 8:] = 100
    real[1, 8:] = 150  # the "blend" differs inside the image
    out = Surroundings(1.0)(real, share, np.random.default_rng(3))
    assert np.array_equal(out[0, :8], out[1, :8]) and out[0, :8].any()
    assert np.array_equal(out[:, 8:], real[:, 8:])


def test_outside_p_must_be_a_probability_and_is_off_without_augmentation():
    with pytest.raises(ConfigError, match="outside_p=1.5"):
        build_surroundings(augment_config(outside_p=1.5))
    assert build_surroundings(augment_config(enabled=False, outside_p=0.5)) is None
    assert build_surroundings(augment_config(outside_p=0.0)) is None


def test_the_crop_cache_records_the_outline_and_recuts_entries_made_before_it(tmp_path):
    photo = tmp_path / "tight.png"
    rgb = face_photo([(0, 10, 180)], shape=(190, 180))  # the face fills the image: its crop reaches past it
    photo.write_bytes(encode_image(rgb, ".png"))
    stage = FaceStage()
    first = crop_one(str(photo), stage, tmp_path / "cache")
    outline = read_outline(first.crop)
    assert outline is not None and outline.shape == (4, 2)
    meta_file = next((tmp_path / "cache").rglob("*.json"))
    meta = json.loads(meta_file.read_text())
    del meta["inside"]  # as a cache written before outlines were recorded
    meta_file.write_text(json.dumps(meta))
    assert read_outline(first.crop) is None
    again = crop_one(str(photo), stage, tmp_path / "cache")
    assert again.crop == first.crop and np.allclose(read_outline(again.crop), outline)


def test_training_items_get_surroundings_only_when_asked(tmp_path):
    photo = tmp_path / "tight.png"
    photo.write_bytes(encode_image(face_photo([(0, 10, 180)], shape=(190, 180)), ".png"))
    cropped = crop_one(str(photo), FaceStage(), tmp_path / "cache")
    sample = Sample(str(photo), 0, "train", crop=cropped.crop)
    preprocess = Preprocess(48)
    torch.manual_seed(0)  # the dataset draws its fills from torch's generator, as in a data-loader worker
    plain = ImageDataset([sample], preprocess)[0][0].numpy()
    always = ImageDataset([sample], preprocess, surroundings=Surroundings(1.0))
    side = read_image(cropped.crop).shape[0]
    share = inside_share(read_outline(cropped.crop), side, 48)
    outside = share == 0
    assert outside.any()
    # Black beyond the image, as the predictor sees a tight crop (but for the bilinear edge's last grey levels).
    assert plain[:, outside].max() < 0.05
    filled = np.stack([always[0][0].numpy() for _ in range(5)])
    assert (filled[:, :, outside] > 0.05).any(axis=(1, 2)).all()
    assert np.allclose(filled[:, :, share == 1], plain[:, share == 1])
