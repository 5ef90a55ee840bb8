"""Self-blended pseudo-fakes: the face mesh, landmarks and their cache, the blend, and pairs in the data pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import FACES_MINI, compose_train, make_class_folders
from helpers import augment_config, data_config, face_points, fake_landmark_dataset

from deepfake.data import datamodule as data_module
from deepfake.data.augment import build_augment
from deepfake.data.datamodule import DeepfakeDataModule
from deepfake.data.dataset import ImageDataset, collate_skip_bad
from deepfake.data.pairs import PseudoFakes, blender
from deepfake.errors import ConfigError, DataError, ImageError, ModelError
from deepfake.faces import landmarks as landmarks_module
from deepfake.faces import mesh
from deepfake.faces.drawing import draw_face
from deepfake.preprocess import Preprocess
from deepfake.samples import Sample
from deepfake.sbi import PARTS, BlendSettings, SelfBlender, sample_sheet
from deepfake.training.train import train

DFDC_MINI = FACES_MINI.parent / "dfdc-mini"


@pytest.fixture
def drawn_landmarks(monkeypatch):
    monkeypatch.setattr(data_module, "landmark_dataset", fake_landmark_dataset)


def centre(points: np.ndarray, indices) -> np.ndarray:
    return points[list(indices)].mean(0)


def test_the_named_point_sets_are_meshs_canonical_contours():
    sizes = dict(FACE_OVAL=36, LIPS=40, LEFT_EYE=16, RIGHT_EYE=16, LEFT_BROW=10, RIGHT_BROW=10, NOSE=24)
    for name, size in sizes.items():
        indices = getattr(mesh, name)
        assert len(indices) == len(set(indices)) == size, name
        assert all(0 <= i < mesh.NUM_POINTS for i in indices), name
    assert not set(mesh.LEFT_EYE) & set(mesh.RIGHT_EYE) and not set(mesh.LEFT_BROW) & set(mesh.RIGHT_BROW)
    assert mesh.FACE_OVAL[0] == 10 and 152 in mesh.LOWER_OVAL and set(mesh.LOWER_OVAL) < set(mesh.FACE_OVAL)


def test_the_mesh_puts_eyes_nose_and_mouth_of_the_drawn_face_where_they_are_drawn():
    # deepfake.faces.drawing draws, in a 200 px image: eyes at (75, 90) and (125, 90), the nose line from y 95 to
    # 124, the mouth at y 145-153, the skin an ellipse of x 38-162, y 25-185.
    found = mesh.face_mesh(draw_face(200, seed=4))
    assert found is not None and found.score > 0.9
    assert found.points.shape == (468, 3) and found.points.dtype == np.float32
    p = found.xy
    assert np.allclose(centre(p, mesh.RIGHT_EYE), (75, 90), atol=6)  # the person's right: the image's left
    assert np.allclose(centre(p, mesh.LEFT_EYE), (125, 90), atol=6)
    assert np.allclose(centre(p, mesh.LIPS), (100, 148), atol=6)
    assert 100 < centre(p, mesh.NOSE)[1] < 130
    assert centre(p, mesh.LEFT_BROW)[1] < centre(p, mesh.LEFT_EYE)[1]
    oval = p[list(mesh.FACE_OVAL)]
    assert oval[:, 0].min() > 30 and oval[:, 0].max() < 170 and oval[:, 1].min() > 20 and oval[:, 1].max() < 192


def test_points_come_back_in_the_crops_pixels_at_any_size_and_batched_alike():
    small, large = draw_face(120, seed=2), draw_face(360, seed=2)
    a, b = mesh.face_mesh(small), mesh.face_mesh(large)
    assert np.allclose(a.xy * 3, b.xy, atol=6)  # the same face at 3x: the same points at 3x
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    batched = mesh.face_meshes([small, noise, large], batch_size=2)
    assert batched[1] is None
    assert np.allclose(batched[0].points, a.points, atol=0.05) and np.allclose(batched[2].points, b.points, atol=0.05)


def test_a_crop_without_a_face_has_no_mesh():
    rng = np.random.default_rng(1)
    assert mesh.face_mesh(rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)) is None
    assert mesh.face_mesh(np.full((100, 100, 3), 128, np.uint8)) is None


def test_a_bad_crop_is_an_image_error():
    with pytest.raises(ImageError, match=r"uint8 RGB.*float32"):
        mesh.face_mesh(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageError, match=r"uint8 RGB.*\(64, 64\)"):
        mesh.face_mesh(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        mesh.face_mesh(np.zeros((0, 64, 3), np.uint8))


def test_a_missing_damaged_or_wrong_model_file_is_a_model_error(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="face mesh model is missing"):
        mesh.FaceMesh(tmp_path / "face_landmark.onnx")
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(mesh.MODEL_PATH.read_bytes()[:5000])
    with pytest.raises(ModelError, match="cannot be loaded"):
        mesh.FaceMesh(damaged)
    with pytest.raises(ModelError, match="is not the face mesh model"):
        mesh.FaceMesh(mesh.MODEL_PATH.with_name("face_detection_short_range.onnx"))
    # Landmarks fail before any image is read, with the same message.
    monkeypatch.setattr(mesh, "MODEL_PATH", tmp_path / "gone.onnx")
    with pytest.raises(ModelError, match="face mesh model is missing"):
        landmarks_module.landmark_dataset(["unused.png"], tmp_path / "cache", progress=False)


def test_landmarks_are_cached_by_content(tmp_path, monkeypatch):
    face, blank = tmp_path / "face.png", tmp_path / "blank.png"
    cv2.imwrite(str(face), cv2.cvtColor(draw_face(200, seed=2), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(blank), np.full((80, 80, 3), 90, np.uint8))
    cache = tmp_path / "cache"
    first = landmarks_module.landmarks_one(str(face), cache)
    assert first.shape == (468, 2) and first.dtype == np.float32
    assert landmarks_module.landmarks_one(str(blank), cache) is None
    calls = []
    monkeypatch.setattr(landmarks_module, "landmarks", lambda rgb: calls.append(rgb.shape))
    again = landmarks_module.landmarks_one(str(face), cache)
    assert calls == [] and np.allclose(again, first, atol=0.05)
    assert landmarks_module.landmarks_one(str(blank), cache) is None and calls == []  # "no face" is cached too
    (tmp_path / "copy.png").write_bytes(face.read_bytes())
    landmarks_module.landmarks_one(str(tmp_path / "copy.png"), cache)  # same content, other name: cached
    assert calls == []
    entry = next(e for e in cache.rglob("*.json") if json.loads(e.read_text())["points"] is not None)
    entry.write_text('{"points": [[1, 2]]}')  # damaged (a wrong shape): computed again
    landmarks_module.landmarks_one(str(face), cache)
    assert len(calls) == 1
    assert landmarks_module.landmarks_one(str(tmp_path / "missing.png"), cache) is None


def test_landmark_dataset_keeps_the_input_order(tmp_path):
    paths = []
    for k, size in enumerate((120, 160)):
        paths.append(tmp_path / f"{k}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(draw_face(size, seed=k), cv2.COLOR_RGB2BGR))
    paths.insert(1, tmp_path / "noise.png")
    cv2.imwrite(str(paths[1]), np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8))
    found = landmarks_module.landmark_dataset([str(p) for p in paths], tmp_path / "cache", progress=False)
    assert found[1] is None and found[0].shape == found[2].shape == (468, 2)
    assert found[0][:, 0].max() < 120 < found[2][:, 0].max()


@pytest.mark.skipif(not (FACES_MINI / "Real").is_dir(), reason=f"{FACES_MINI} not found")
@pytest.mark.parametrize("root", [FACES_MINI, DFDC_MINI], ids=["faces-mini", "dfdc-mini"])
def test_on_real_faces_the_mesh_lies_on_the_face_and_the_face_mask_is_a_sensible_share(root: Path):
    if not (root / "Real").is_dir():
        pytest.skip(f"{root} not found")
    files = sorted((root / "Real").glob("*.jpg"))[::97][:6]
    crops = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    whole = SelfBlender(BlendSettings(hull_p=1.0))
    for f, crop, found in zip(files, crops, mesh.face_meshes(crops), strict=True):
        assert found is not None, f
        height, width = crop.shape[:2]
        p = found.xy
        # The crops hold one face with a margin (dfdc-mini's are tight: the chin may touch the border).
        assert (p[:, 0] > -0.05 * width).all() and (p[:, 0] < 1.05 * width).all(), f
        assert (p[:, 1] > -0.05 * height).all() and (p[:, 1] < 1.05 * height).all(), f
        eyes_y = (centre(p, mesh.LEFT_EYE)[1] + centre(p, mesh.RIGHT_EYE)[1]) / 2
        assert eyes_y < centre(p, mesh.NOSE)[1] < centre(p, mesh.LIPS)[1] < p[152, 1], f  # chin: 152
        assert centre(p, mesh.RIGHT_EYE)[0] < centre(p, mesh.LEFT_EYE)[0], f  # upright, not mirrored
        area = whole.hull_mask((height, width), p, np.random.default_rng(0)).mean()
        assert 0.12 < area < 0.7, (f, area)
        for part in PARTS:
            part_mask = np.zeros((height, width), np.float32)
            cv2.fillConvexPoly(part_mask, cv2.convexHull(np.round(p[list(part)]).astype(np.int32)), 1.0)
            assert 0.02 < part_mask.mean() < area, (f, part)


def test_the_whole_face_mask_follows_the_oval_and_parts_are_smaller():
    rgb = draw_face(200, seed=1)
    points = mesh.face_mesh(rgb).xy
    whole = SelfBlender(BlendSettings(hull_p=1.0)).hull_mask((200, 200), points, np.random.default_rng(0))
    skin = np.zeros((200, 200), np.float32)
    cv2.ellipse(skin, (100, 105), (62, 80), 0, 0, 360, 1.0, -1)  # the drawn face's skin
    assert 0.25 < whole.mean() < 0.45
    assert (whole * skin).sum() / whole.sum() > 0.97  # almost all on the face ...
    assert (whole * skin).sum() / skin.sum() > 0.7  # ... and most of it
    parts = SelfBlender(BlendSettings(hull_p=0.0))
    for seed in range(6):
        part = parts.hull_mask((200, 200), points, np.random.default_rng(seed))
        assert 0.03 < part.mean() < whole.mean() and (part * whole).sum() / part.sum() > 0.95


def test_landmarks_of_another_layout_are_a_data_error():
    with pytest.raises(DataError, match=r"face mesh's \(468, 2\) points, got \(68, 2\)"):
        SelfBlender().hull_mask((64, 64), np.zeros((68, 2), np.float32), np.random.default_rng(0))


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


def identity_pairs(samples, count, seed=None) -> PseudoFakes:
    class Copy(SelfBlender):
        def blend(self, rgb, points, rng):
            return rgb.copy(), np.zeros(rgb.shape[:2], np.float32)

    sources = [i for i, s in enumerate(samples) if s.label == 0]
    return PseudoFakes(Copy(), sources, [np.zeros((468, 2))] * len(sources), count, seed)


def test_a_pair_gets_one_augmentation_and_collates_as_two_labelled_images(tmp_path):
    root = make_class_folders(tmp_path / "d", 3, 2)
    samples = [Sample(str(p), int("Fake" in p.parent.name), "train") for p in sorted(root.rglob("*.jpg"))]
    augment = build_augment(
        augment_config(crop_scale=[0.5, 1.0], hflip=0.5, rotation=20, brightness=0.3, contrast=0.3), 32
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
        pseudo_fakes="sbi",
        landmark_cache="/nonexistent-unused",
    )
    return DeepfakeDataModule(data_config(root, **{**settings, **kwargs}), Preprocess(image_size=32), seed=1)


def test_pseudo_fakes_ratio_sets_the_share_of_pseudo_fakes_among_trainings_fakes(tmp_path, drawn_landmarks):
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


def test_a_folder_of_real_faces_alone_trains_with_pseudo_fakes_and_not_without(tmp_path, drawn_landmarks):
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
    monkeypatch.setattr(data_module, "landmark_dataset", lambda paths, cache, **k: [None] * len(paths))
    with pytest.raises(DataError, match="no landmarks found in any of the .* real training images"):
        datamodule(make_class_folders(tmp_path / "d", 10, 10)).setup()


def test_sbi_effb7_att_is_effb7_with_attention_on_sbi_at_380_px_with_amp():
    # One training step of it on CPU: tests/test_models.py::test_every_experiment_config_runs_fast_dev_run.
    cfg = compose_train("experiment=sbi_effb7_att", "data.root=unused")
    assert cfg.data.image_size == 380 and cfg.model.net.arch == "attention" and cfg.model.backbone == "effb7"
    assert cfg.model.pretrained is True and cfg.trainer.precision == "mixed" and cfg.trainer.accelerator == "gpu"
    assert cfg.data.pseudo_fakes == "sbi" and cfg.data.faces == "blazeface"


@pytest.mark.slow
@pytest.mark.skipif(not FACES_MINI.is_dir(), reason=f"{FACES_MINI} not found")
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
