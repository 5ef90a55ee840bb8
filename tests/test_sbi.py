"""Self-blended pseudo-fakes: the blend itself, landmarks and their cache, and pairs in the data pipeline."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from deepfake import data as data_module
from deepfake.data import DeepfakeDataModule, ImageDataset, PseudoFakes, blender, collate_skip_bad
from deepfake.datasets import Sample
from deepfake.errors import ConfigError, DataError
from deepfake.faces import landmarks as landmarks_module
from deepfake.faces.drawing import draw_face
from deepfake.preprocess import Preprocess
from deepfake.sbi import BlendSettings, SelfBlender, sample_sheet
from deepfake.training import train
from tests.conftest import FACES_MINI, compose_train, make_class_folders

HAS_LANDMARK_MODEL = (
    landmarks_module.importlib.util.find_spec("face_recognition_models") is not None  # the sbi extra
)


def face_points(width: int, height: int) -> np.ndarray:
    """68 points in dlib's order on a plausible frontal face filling the middle of a width x height image."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([0.5 + 0.32 * np.cos(t), 0.45 + 0.45 * np.sin(t)], 1)
    brows = np.stack([np.r_[np.linspace(0.25, 0.45, 5), np.linspace(0.55, 0.75, 5)], np.full(10, 0.33)], 1)
    nose = np.r_[np.stack([np.full(4, 0.5), np.linspace(0.4, 0.58, 4)], 1), [[0.44 + 0.03 * i, 0.62] for i in range(5)]]
    ring = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eyes = np.r_[
        np.stack([0.35 + 0.06 * np.cos(ring), 0.42 + 0.02 * np.sin(ring)], 1),
        np.stack([0.65 + 0.06 * np.cos(ring), 0.42 + 0.02 * np.sin(ring)], 1),
    ]
    ring = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    mouth = np.stack([0.5 + 0.12 * np.cos(ring), 0.75 + 0.04 * np.sin(ring)], 1)
    points = np.r_[jaw, brows, nose, eyes, mouth]
    assert points.shape == (68, 2)
    return (points * (width, height)).astype(np.float32)


def fake_landmark_dataset(paths, boxes, cache, **kwargs):
    """Stands in for dlib's landmarks on generated images: the same face layout on every image's frame."""
    out = []
    for path in paths:
        height, width = cv2.imread(str(path)).shape[:2]
        out.append(face_points(width, height))
    return out


@pytest.fixture
def no_dlib_landmarks(monkeypatch):
    monkeypatch.setattr(data_module, "landmark_dataset", fake_landmark_dataset)


def test_a_blend_is_seeded_and_changes_the_face_inside_its_mask_only():
    rgb = draw_face(160, seed=3)
    points = face_points(160, 160)
    blend = SelfBlender()
    fake, mask = blend.blend(rgb, points, np.random.default_rng(7))
    again, mask_again = blend.blend(rgb, points, np.random.default_rng(7))
    other, _ = blend.blend(rgb, points, np.random.default_rng(8))
    assert fake.dtype == np.uint8 and fake.shape == rgb.shape and mask.shape == rgb.shape[:2]
    assert np.array_equal(fake, again) and np.array_equal(mask, mask_again)
    assert not np.array_equal(fake, other)
    assert 0 <= mask.min() and mask.max() <= 1 and mask.max() > 0.2
    # The mask stays near the face: almost all of its weight within the landmarks' hull grown by 15%.
    hull = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    grown = cv2.dilate(hull, np.ones((25, 25), np.uint8))
    assert mask[grown > 0].sum() / mask.sum() > 0.95
    # Where the mask is 0 the image is one copy, where it is 1 the other: the two regions do not both change.
    diff = np.abs(fake.astype(int) - rgb.astype(int)).sum(-1)
    inside, outside = diff[mask > 0.99], diff[mask < 1e-3]
    assert inside.size and outside.size
    assert min(inside.mean(), outside.mean()) < 1.0 < max(inside.mean(), outside.mean())


def test_every_blend_over_many_seeds_is_a_valid_image_with_a_nonempty_mask():
    rgb = draw_face(96, seed=1)
    points = face_points(96, 96)
    blend = SelfBlender()
    for seed in range(60):
        fake, mask = blend.blend(rgb, points, np.random.default_rng(seed))
        assert fake.shape == rgb.shape and np.isfinite(mask).all() and mask.max() > 0


def test_bad_blend_settings_are_named():
    with pytest.raises(ConfigError, match="resample"):
        BlendSettings(resample=(4.0, 2.0))
    with pytest.raises(ConfigError, match="opacity"):
        BlendSettings(opacity=(0.0, 1.0))
    with pytest.raises(ConfigError, match="data.sbi: .*'hue'"):
        blender({"hue": 3})


def test_sample_sheet_lays_out_triplets():
    rgb = draw_face(64)
    sheet = sample_sheet([(rgb, rgb, np.ones((64, 64), np.float32))] * 5, columns=4, min_side=64)
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet.shape[0] > 2 * 64 and sheet.shape[1] > 12 * 64  # 2 rows of 4 triplets


@pytest.mark.skipif(not HAS_LANDMARK_MODEL, reason="needs the sbi extra (face-recognition-models)")
def test_landmarks_are_cached_by_content_and_box(tmp_path, monkeypatch):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(draw_face(200, seed=2), cv2.COLOR_RGB2BGR))
    cache = tmp_path / "cache"
    box = [40, 40, 120, 120]
    first = landmarks_module.landmarks_one(str(image), box, cache)
    assert first.shape == (68, 2)
    assert (first[:, 0] >= 30).all() and (first[:, 0] <= 170).all()  # inside (about) the box
    calls = []
    monkeypatch.setattr(landmarks_module, "landmarks", lambda *a, **k: calls.append(a))
    again = landmarks_module.landmarks_one(str(image), box, cache)
    assert calls == [] and np.allclose(again, first, atol=0.05)
    landmarks_module.landmarks_one(str(image), [50, 50, 100, 100], cache)  # another box: computed anew
    assert len(calls) == 1


def test_a_missing_landmark_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(landmarks_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[sbi\]".*non-commercial'):
        landmarks_module.model_path()


def identity_pairs(samples, count, seed=None) -> PseudoFakes:
    class Copy(SelfBlender):
        def blend(self, rgb, points, rng):
            return rgb.copy(), np.zeros(rgb.shape[:2], np.float32)

    sources = [i for i, s in enumerate(samples) if s.label == 0]
    return PseudoFakes(Copy(), sources, [np.zeros((68, 2))] * len(sources), count, seed)


def test_a_pair_gets_one_augmentation_and_collates_as_two_labelled_images(tmp_path):
    root = make_class_folders(tmp_path / "d", 3, 2)
    samples = [Sample(str(p), int("Fake" in p.parent.name), "train") for p in sorted(root.rglob("*.jpg"))]
    augment = data_module.build_augment(
        {"enabled": True, "crop_scale": [0.5, 1.0], "hflip": 0.5, "rotation": 20, "brightness": 0.3, "contrast": 0.3},
        32,
    )
    dataset = ImageDataset(samples, Preprocess(image_size=32), augment, pseudo_fakes=identity_pairs(samples, 4))
    assert len(dataset) == 5 + 4
    torch.manual_seed(0)
    pair = dataset[5]
    (x_real, y_real, _), (x_fake, y_fake, _) = pair
    # With a blend that changes nothing, the two must come out identical: same crop, flip, rotation and light.
    assert torch.equal(x_real, x_fake) and (y_real.item(), y_fake.item()) == (0.0, 1.0)
    # Two separate draws of the same image do differ under this augmentation: the check above can fail.
    a, b = dataset[0][0], dataset[0][0]
    assert not torch.equal(a, b)
    x, y, _ = collate_skip_bad([dataset[0], pair, None, dataset[6]])
    assert x.shape[0] == 5 and y.tolist() == [samples[0].label, 0.0, 1.0, 0.0, 1.0]


def test_fixed_pairs_are_the_same_on_every_read(tmp_path):
    root = make_class_folders(tmp_path / "d", 3, 0)
    samples = [Sample(str(p), 0, "val") for p in sorted(root.rglob("*.jpg"))]
    sources = list(range(3))
    pseudo = PseudoFakes(SelfBlender(), sources, [face_points(40, 40)] * 3, 3, seed=5, pairs_only=True)
    dataset = ImageDataset(samples, Preprocess(image_size=32), pseudo_fakes=pseudo)
    assert len(dataset) == 3  # the reals appear only in their pairs
    first, second = dataset[1], dataset[1]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))


def datamodule(root, **kwargs) -> DeepfakeDataModule:
    settings = dict(
        batch_size=4,
        num_workers=0,
        val_fraction=0.2,
        test_fraction=0.2,
        seed=1,
        pseudo_fakes="sbi",
        landmark_cache="/nonexistent-unused",
    )
    return DeepfakeDataModule(str(root), Preprocess(image_size=32), **{**settings, **kwargs})


def test_pseudo_fakes_ratio_sets_the_share_of_pseudo_fakes_among_trainings_fakes(tmp_path, no_dlib_landmarks):
    root = make_class_folders(tmp_path / "d", 20, 10)
    half = datamodule(root, pseudo_fakes_ratio=0.5)
    half.setup()
    train_fakes = half.summary()["train"]["fake"]
    assert half.pairs["train"] == train_fakes  # 0.5: as many pseudo-fakes as real ones
    assert half.pairs["val"] == half.pairs["test"] == 0  # they hold real fakes: nothing made up there
    assert len(half.datasets["train"]) == len(half.datasets["train"].samples) + train_fakes
    third = datamodule(root, pseudo_fakes_ratio=0.25)
    third.setup()
    assert third.pairs["train"] == round(train_fakes / 3)
    only = datamodule(root, pseudo_fakes_ratio=1.0)
    only.setup()
    assert only.summary()["train"]["fake"] == 0 and only.dropped_fakes == train_fakes
    reals = only.summary()["train"]["real"]
    assert only.pairs["train"] == reals and len(only.datasets["train"]) == reals  # pairs only: balanced
    assert only.summary()["val"]["fake"] > 0  # validation still judges real fakes
    assert only.describe()["pseudo_fakes"]["real_fakes_left_out_of_training"] == train_fakes


def test_a_folder_of_real_faces_alone_trains_with_pseudo_fakes_and_not_without(tmp_path, no_dlib_landmarks):
    root = make_class_folders(tmp_path / "d", 20, 0)
    with pytest.raises(DataError, match="no fake images; add a Fake/ folder.*data.pseudo_fakes=sbi"):
        datamodule(root, pseudo_fakes="none").setup()
    dm = datamodule(root)
    dm.setup()
    assert all(dm.pairs[split] > 0 for split in ("train", "val", "test"))
    x, y, _ = next(iter(dm.val_dataloader()))
    assert set(y.tolist()) == {0.0, 1.0}


def test_bad_pseudo_fake_settings_are_named(tmp_path):
    root = make_class_folders(tmp_path / "d", 4, 4)
    with pytest.raises(ConfigError, match="data.pseudo_fakes=blend"):
        datamodule(root, pseudo_fakes="blend")
    with pytest.raises(ConfigError, match="data.pseudo_fakes_ratio=1.5"):
        datamodule(root, pseudo_fakes_ratio=1.5)


def test_no_landmarks_at_all_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "landmark_dataset", lambda paths, boxes, cache, **k: [None] * len(paths))
    with pytest.raises(DataError, match="no landmarks found in any of the .* real training images"):
        datamodule(make_class_folders(tmp_path / "d", 10, 10)).setup()


def test_sbi_effb7_att_is_effb7_with_attention_on_sbi_at_380_px_with_amp():
    # One training step of it on CPU: tests/test_models.py::test_every_experiment_config_runs_fast_dev_run.
    cfg = compose_train("experiment=sbi_effb7_att", "data.root=unused")
    assert cfg.data.image_size == 380 and cfg.model.net.arch == "attention" and cfg.model.backbone == "effb7"
    assert cfg.model.pretrained is True and cfg.trainer.precision == "mixed" and cfg.trainer.accelerator == "gpu"
    assert cfg.data.pseudo_fakes == "sbi" and cfg.data.faces == "dlib"


@pytest.mark.skipif(not (FACES_MINI.is_dir() and HAS_LANDMARK_MODEL), reason="needs ../shared and the sbi extra")
def test_sbi_faces_mini_trains_on_real_faces_and_writes_sbi_samples(tmp_path):
    run = tmp_path / "run"
    cfg = compose_train(
        "experiment=sbi_faces_mini",
        f"data.root={FACES_MINI}",
        f"run_dir={run}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=1.0",
        "+trainer.limit_test_batches=2",
        "data.num_workers=0",
        "callbacks.progress_bar=null",
    )
    metrics = train(cfg)
    sheet = cv2.imread(str(run / "sbi_samples.png"))
    assert sheet is not None and sheet.shape[0] >= 4 * 128  # 16 pairs, 4 a row, each at least 128 px
    described = json.loads((run / "metrics.json").read_text())["data"]
    assert described["pseudo_fakes"]["pairs"]["train"] == described["train"]["real"] == 640
    assert described["train"]["fake"] == 0 and described["val"]["fake"] == 80
    assert 0.0 <= metrics["test/auroc"] <= 1.0
