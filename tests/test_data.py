"""Layout detection, splits, bad files and label order at the data level."""

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import make_class_folders, make_image, make_undecodable_png
from helpers import augment_config, data_config

from deepfake.data.datamodule import DeepfakeDataModule, drop_bad_files
from deepfake.data.dataset import ImageDataset, collate_skip_bad
from deepfake.errors import DataError
from deepfake.preprocess import FAKE, REAL, Preprocess
from deepfake.samples import find_samples


def _counts(samples):
    return Counter((s.split, s.label) for s in samples)


def datamodule(root, **settings) -> DeepfakeDataModule:
    """configs/data/default.yaml's split, small batches, no workers."""
    options = dict(batch_size=4, num_workers=0, val_fraction=0.1, test_fraction=0.1) | settings
    return DeepfakeDataModule(data_config(root, **options), Preprocess(32), seed=42)


def test_class_folders_split_80_10_10_stratified_and_disjoint(tmp_path):
    root = make_class_folders(tmp_path / "d", 40, 20, names=("real", "FAKE"))  # case-insensitive
    samples, layout = find_samples(root, seed=1)
    assert layout == "folders"
    assert _counts(samples) == {
        ("train", REAL): 32, ("val", REAL): 4, ("test", REAL): 4,
        ("train", FAKE): 16, ("val", FAKE): 2, ("test", FAKE): 2,
    }  # fmt: skip
    paths = [s.path for s in samples]
    assert len(paths) == len(set(paths)) == 60
    assert all((s.label == FAKE) == ("/FAKE/" in s.path) for s in samples)


def test_split_is_reproducible_from_the_seed(tmp_path):
    root = make_class_folders(tmp_path / "d", 30, 30)
    a, _ = find_samples(root, seed=7)
    b, _ = find_samples(root, seed=7)
    c, _ = find_samples(root, seed=8)
    assert a == b
    assert {s.path for s in a if s.split == "test"} != {s.path for s in c if s.split == "test"}


def test_a_presplit_tree_without_validation_takes_data_val_fraction_of_train_with_the_seed(tmp_path):
    root = tmp_path / "kaggle"
    make_class_folders(root / "Train", 20, 20)
    make_class_folders(root / "Test", 3, 3, seed=1)
    quarter, _ = find_samples(root, val_fraction=0.25, seed=1)
    assert _counts(quarter) == {
        ("train", REAL): 15, ("val", REAL): 5, ("train", FAKE): 15, ("val", FAKE): 5,
        ("test", REAL): 3, ("test", FAKE): 3,
    }  # fmt: skip
    again, _ = find_samples(root, val_fraction=0.25, seed=1)
    other, _ = find_samples(root, val_fraction=0.25, seed=2)
    val = {s.path for s in quarter if s.split == "val"}
    assert val == {s.path for s in again if s.split == "val"} != {s.path for s in other if s.split == "val"}


@pytest.mark.parametrize(
    ("wrapper", "names"),
    [
        ("", ("Train", "Validation", "Test")),
        ("", ("train", "val", "test")),
        ("Dataset", ("Train", "Validation", "Test")),
    ],
)
def test_presplit_tree_keeps_its_splits(tmp_path, wrapper, names):
    root = tmp_path / "kaggle"
    for i, (name, n) in enumerate(zip(names, (6, 2, 3), strict=True)):
        make_class_folders(root / wrapper / name, n, n, seed=i)
    samples, layout = find_samples(root)
    assert layout == "presplit"
    assert _counts(samples) == {(sp, lb): n for sp, n in (("train", 6), ("val", 2), ("test", 3)) for lb in (REAL, FAKE)}
    for s in samples:
        split_folder = s.path.split("/")[-3].lower()
        assert {"train": "train", "val": "val", "validation": "val", "test": "test"}[split_folder] == s.split


def test_manifest_with_and_without_split(tmp_path):
    for i in range(10):
        make_image(tmp_path / "img" / f"r{i}.png", REAL, seed=i)
        make_image(tmp_path / "img" / f"f{i}.png", FAKE, seed=100 + i)
    with_split = tmp_path / "with.csv"
    rows = [f"img/r{i}.png,real,{'test' if i < 3 else 'train'}" for i in range(10)]
    rows += [f"img/f{i}.png,1,{'val' if i < 2 else 'Train'}" for i in range(10)]
    with_split.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    samples, layout = find_samples(with_split)
    assert layout == "manifest"
    assert _counts(samples) == {("test", REAL): 3, ("train", REAL): 7, ("val", FAKE): 2, ("train", FAKE): 8}

    without = tmp_path / "without.csv"
    without.write_text("path,label\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    samples, _ = find_samples(without)
    assert _counts(samples)[("test", REAL)] == 1 and _counts(samples)[("train", FAKE)] == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,label\na.png,0\n", r"needs columns file \(or path\) and label"),
        ("path,label\na.png,maybe\n", "label 'maybe'"),
    ],
)
def test_bad_manifest_is_named(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        find_samples(tmp_path / "m.csv")


def test_sample_paths_stay_valid_when_the_root_was_given_through_another_folder(tmp_path):
    """split.csv records the paths: "cwd/../data/x.jpg" must not depend on cwd still existing."""
    make_class_folders(tmp_path / "data", 4, 4)
    (tmp_path / "old_cwd").mkdir()
    samples, _ = find_samples(tmp_path / "old_cwd" / ".." / "data")
    (tmp_path / "old_cwd").rmdir()
    assert len(samples) == 8
    assert all(".." not in s.path.split("/") and Path(s.path).is_file() for s in samples)


def test_unknown_layout_and_missing_root_are_explained(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        find_samples(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="Expected Real/ and Fake/"):
        find_samples(tmp_path)


def test_bad_files_are_skipped_and_reported_once(tmp_path, caplog):
    root = make_class_folders(tmp_path / "d", 10, 10)
    (root / "Real" / "empty.jpg").write_bytes(b"")
    (root / "Fake" / "notes.txt").write_text("not an image")
    good = (root / "Fake" / "fake_000.jpg").read_bytes()
    (root / "Fake" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    dm = datamodule(root)
    with caplog.at_level(logging.WARNING):
        dm.collect_samples()
    assert len(dm.samples) == 20
    assert sorted(p.rsplit("/", 1)[1] for p, _ in dm.bad_files) == ["empty.jpg", "notes.txt", "truncated.jpg"]
    warnings = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 3 unusable file(s)" in warnings[0] and "truncated.jpg" in warnings[0]


def test_undecodable_file_is_dropped_from_its_batch_not_the_run(tmp_path):
    root = make_class_folders(tmp_path / "d", 2, 2)
    make_undecodable_png(root / "Fake" / "broken.png")  # looks whole, cannot decode
    samples, _ = find_samples(root, val_fraction=0, test_fraction=0)
    good, bad = drop_bad_files(samples)
    assert not bad  # passes the cheap check ...
    ds = ImageDataset(good, Preprocess(16))
    batch = collate_skip_bad([ds[i] for i in range(len(ds))])  # ... and is dropped at decode time
    x, y, _ = batch
    assert x.shape == (4, 3, 16, 16) and sorted(y.tolist()) == [0.0, 0.0, 1.0, 1.0]
    assert collate_skip_bad([None, None]) is None


def test_augmentation_is_off_by_default_and_changes_pixels_when_on(tmp_path):
    root = make_class_folders(tmp_path / "d", 2, 2)
    samples, _ = find_samples(root, val_fraction=0, test_fraction=0)
    plain = ImageDataset(samples, Preprocess(32))
    assert torch.equal(plain[0][0], plain[0][0])
    from deepfake.data.augment import build_augment

    assert build_augment(augment_config(enabled=False, hflip=1.0), 32) is None
    augment = build_augment(augment_config(hflip=1.0), 32)
    flipped = ImageDataset(samples, Preprocess(32), augment)
    assert torch.allclose(flipped[0][0], plain[0][0].flip(-1))
    full = build_augment(
        augment_config(
            hflip=0.5, rotation=10, brightness=0.2, contrast=0.2, jpeg_p=1.0, blur_p=1.0, crop_scale=[0.5, 0.6]
        ),
        32,
    )
    cropped = ImageDataset(samples, Preprocess(32), full)[0][0]
    assert cropped.shape == (3, 32, 32) and not torch.allclose(cropped, plain[0][0])


def test_bad_data_settings_are_named(tmp_path):
    with pytest.raises(DataError, match="data.batch_size"):
        datamodule(tmp_path, batch_size=0)
    with pytest.raises(DataError, match="data.num_workers"):
        datamodule(tmp_path, num_workers="many")
    with pytest.raises(DataError, match="val_fraction"):
        find_samples(tmp_path, val_fraction=0.6, test_fraction=0.5)


def test_drop_last_leaves_out_trainings_last_smaller_batch_only(tmp_path):
    root = make_class_folders(tmp_path / "d", 11, 10)  # 17 training images: batches of 4, 4, 4, 4 and 1
    for drop, batches in ((False, [4, 4, 4, 4, 1]), (True, [4, 4, 4, 4])):
        dm = datamodule(root, drop_last=drop)
        dm.setup()
        assert sorted((len(y) for _, y, _ in dm.train_dataloader()), reverse=True) == batches
        assert sum(len(y) for _, y, _ in dm.val_dataloader()) == 2
